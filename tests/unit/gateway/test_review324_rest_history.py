"""Review 324: the REST history endpoints as a bot's reconciliation uses them.

Reviewed: README ("The REST API and the private stream": allOrders, myTrades, openOrders,
GET order, trades; what comes from PostgreSQL and what from the live views; the documented
differences from Binance), ``procs/gateway/rest_history.py``, ``history.py`` (``orders``,
``trades``, ``order_json``, ``whole_trades``), ``unfiled_orders.py`` and ``live_trades.py``
(``merged``, ``forget_filed``), ``rest_open_orders.py``, ``rest_named.py``, ``rest.py``
(``query_order``, ``need_history``), ``rest_order_log.py`` (``restore``), ``rest_public.py``
(``proxy``: trades, depth), ``openapi.py`` (the Order and AccountTrade schemas).

Rig: ``unfiled_rig`` (real HTTP in front of real rings, router and matcher in process, the
session's private PostgreSQL, the database writer run by hand: ``file_all``); ALICE (601)
with dollars, BOB (602) with bitcoin. A gateway restart is the process's own
``GatewayServer.shutdown`` and a new ``GatewayServer`` over the same rings and files
(``Harness.start``), the pipeline kept.

Faults found:

1. After a clean gateway restart (a deploy: ``shutdown``, not a crash) while the database
   writer lags, ``allOrders`` and ``GET order`` say ALICE's bid is FILLED 0.10 (the order log
   brought it back, review 158), but ``myTrades`` (with or without its ``orderId``) is empty
   until the writer files the trade. README: "``myTrades`` lists a fill as soon as the live
   views do"; its only exception is "after its crash, a fill it had seen is missing until the
   writer files it". A bot reconciling after the deploy sees a FILLED order without a fill
   (no price, no fee) and either books nothing or re-queries forever. Cause:
   ``procs/gateway/rest_order_log.py:92-93`` (``restore`` hands a finished order back to the
   unfiled index with its seq, so allOrders lists it) with ``procs/gateway/live_trades.py``
   (``LiveTrades`` is memory only, made empty at ``rest_orders.py:94``): nothing brings back
   the fills of the orders restored. Fixed: each fill of an order placed through the API is
   written to the order log once, with its order's change, as an ``API_FILL`` entry (trade
   id, maker, journal seq, price, qty, time, buyer: ``rest_order_log.fill_entry``); replay
   keeps it with its order (``order_log.ApiOrderValues``), an order's ``GONE`` takes it
   along, a compaction keeps those still in ``LiveTrades`` of the orders it keeps, and
   ``restore`` gives them back to ``LiveTrades`` (``forget_filed`` drops the filed ones).
   The fills of orders placed over FIX or elsewhere stay memory only, as README now says.
   Test:
   ``test_after_a_clean_restart_my_trades_has_the_fill_all_orders_shows``.

Sound (``test_sound_*``): one order in each end state (FOK expired, IOC partly filled then
EXPIRED, partly filled then amended down and cancelled, amended to its filled quantity:
FILLED, ended by self-trade prevention: EXPIRED_IN_MATCH, cancelled by ``DELETE
openOrders``, a triggered STOP_LOSS_LIMIT, an iceberg) reads the same in allOrders live, in
allOrders once filed, and as the database's rows alone say (``order_json``): every field
but ``cummulativeQuoteQty`` (documented null from the database) and a triggered stop's
``isWorking`` (documented); a LIMIT_MAKER refused is in none of them; their fills read the
same live and filed (id, order, price, qty, quoteQty, time, isBuyer, isMaker, commission,
commissionAsset). BOB never sees ALICE's orders or fills (his allOrders, his myTrades, his
myTrades with her orderId, his GET order of her id: -2013). ``limit`` 1001 on allOrders,
myTrades and trades is -1100 naming 1..1000; a startTime after the endTime is -1023.

Leads not shown:
- A database row's ``cummulativeQuoteQty`` is null even where ``executedQty`` is 0 (a FOK
  expired, a cancel with nothing filled), where the quote quantity is known to be 0;
  ``/openapi.json`` documents null "when only the history database knows the order", so
  not reported. It could be summed from the trades by the orders' indexes (0011).
- allOrders and myTrades take a startTime-endTime window over 24 h (Binance refuses it,
  -1127); lenient, so no client breaks, but undocumented.
- ``GET /api/v1/historicalTrades`` is a 404 (-1000); README does not claim it.
- The writer replays the journal and may file a fill before the gateway reads it: then
  ``GET order`` (live view first, ``rest.py:527``) can say NEW while allOrders (row newer)
  says FILLED for a moment. Not produced in the rig (one loop steps both).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from procs.common.records import NewOrder, OrderDone, Trade
from procs.common.types import DoneReason, Side
from procs.gateway.history import order_json
from procs.gateway.order_log import API_FILL, GONE, OrderLog, plain
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import RestClient
from procs.gateway.rest_orders import RestOrders
from procs.gateway.rest_params import new_order
from tests.unit.gateway import unfiled_rig
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import ALICE, LIMIT, run
from tests.unit.gateway.test_gateway_restart import crash
from tests.unit.gateway.test_rest_orders import ALICE as ALICE_ID
from tests.unit.gateway.test_rest_orders import BOB as BOB_ID
from tests.unit.gateway.test_rest_orders import GW, OTHER_GW, accepted, core, limit
from tests.unit.gateway.test_rest_orders import SYM as SYM_CFG
from tests.unit.gateway.unfiled_rig import SELL, harness

__all__ = ["harness"]  # the fixture these tests take, imported

ORDER, ALL, TRADES = "/api/v1/order", "/api/v1/allOrders", "/api/v1/myTrades"
SYM: dict[str, Any] = {"symbol": "BTC-USD"}


async def filled_bid(alice: RestClient, bob: RestClient) -> dict[str, Any]:
    """ALICE's bid of 0.10 at 30000.00 filled whole by BOB's IOC sell: her order's answer."""
    bid: dict[str, Any] = await alice.call(
        "POST", ORDER, **LIMIT, price="30000.00", quantity="0.10"
    )
    await bob.call("POST", ORDER, **SELL, price="30000.00", quantity="0.10", timeInForce="IOC")
    return bid


TRADE_FIELDS = (
    "id", "orderId", "price", "qty", "quoteQty", "time", "isBuyer", "isMaker", "commission",
    "commissionAsset",
)  # fmt: skip


def test_after_a_clean_restart_my_trades_has_the_fill_all_orders_shows(
    harness: Harness,
) -> None:
    """Scenario: ALICE's bid of 0.10 is filled by BOB; the writer has not filed it; the
    gateway is shut down cleanly and started again; ALICE reconciles. Expected (README:
    myTrades lists a fill as soon as the live views do; only a crash is named as losing
    one): allOrders and GET order say FILLED 0.10 and myTrades has the 0.10 fill, with and
    without orderId. Was (fixed): the order is FILLED, myTrades is [] until the writer files
    it."""
    h = harness
    seen: dict[str, Any] = {}

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, bob):
            bid = await filled_bid(alice, bob)
            before = await alice.call("GET", TRADES, **SYM)
            assert [t["orderId"] for t in before] == [bid["orderId"]]
        assert h.gateway is not None
        await h.gateway.shutdown(grace_s=0.2)  # a deploy: the process stops cleanly
        h.pause()
        await h.start()
        assert h.gateway is not None and h.gateway.api is not None
        again = f"http://127.0.0.1:{h.gateway.api.port}"
        async with unfiled_rig.users(again) as (alice, _bob):
            orders = await alice.call("GET", ALL, **SYM)
            status = await alice.call("GET", ORDER, **SYM, orderId=bid["orderId"])
            seen["all"] = [(o["orderId"], o["status"], o["executedQty"]) for o in orders]
            seen["get"] = (status["status"], status["executedQty"])
            seen["trades"] = await alice.call("GET", TRADES, **SYM)
            seen["of_order"] = await alice.call("GET", TRADES, **SYM, orderId=bid["orderId"])
            seen["oid"] = bid["orderId"]

    run(h, scenario)
    assert seen["all"] == [(seen["oid"], "FILLED", "0.10")]  # the order log's view
    assert seen["get"] == ("FILLED", "0.10")
    for rows in (seen["trades"], seen["of_order"]):
        assert [(t["orderId"], t["qty"]) for t in rows] == [(seen["oid"], "0.10")], seen


def test_after_a_crash_my_trades_has_the_fill_the_order_log_kept(harness: Harness) -> None:
    """The fault's scenario with a crash (no shutdown): the batch of the fill was logged, so
    its events are not read again; the order log's fill is listed, and once the writer files
    the trade it is listed once."""
    h = harness
    seen: dict[str, Any] = {}

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, bob):
            bid = await filled_bid(alice, bob)
            assert len(await alice.call("GET", TRADES, **SYM)) == 1
        await crash(h)
        await h.start()
        assert h.gateway is not None and h.gateway.api is not None
        again = f"http://127.0.0.1:{h.gateway.api.port}"
        async with unfiled_rig.users(again) as (alice, _bob):
            seen["live"] = await alice.call("GET", TRADES, **SYM, orderId=bid["orderId"])
            await unfiled_rig.file_all(h)
            seen["filed"] = await alice.call("GET", TRADES, **SYM)
            seen["oid"] = bid["orderId"]

    run(h, scenario)
    for rows in (seen["live"], seen["filed"]):
        assert [(t["orderId"], t["qty"]) for t in rows] == [(seen["oid"], "0.10")], seen


def _filled_core() -> tuple[RestOrders, int]:
    """A REST core whose ALICE bid (order 7, seq 40) BOB filled (trade 1, seq 41)."""
    c, out = core()
    ref = c.new_order(new_order(limit("BUY", "100.00", "1"), c.instruments), ALICE_ID, 1, 5)
    (cmd,) = out
    assert isinstance(cmd, NewOrder)
    c.process(accepted(cmd, order_id=7, seq=40))
    c.process(Trade(41, 0, 1, SYM_CFG.id, 10_000, 100, Side.SELL, 7, ALICE_ID, GW, 0, 9, BOB_ID,
                    OTHER_GW, 0))  # fmt: skip
    c.process(OrderDone(41, 0, GW, 1, ref, ALICE_ID, SYM_CFG.id, 7, DoneReason.FILLED, 100, 0))
    c.end_of_batch()
    return c, ref


def _restored(path: Path) -> RestOrders:
    log = OrderLog(path)
    recovered = log.load()
    log.close()
    c, _ = core()
    c.restore(recovered.api_orders)
    return c


def _fills(c: RestOrders) -> list[tuple[int, str]]:
    rows = c.trades.merged([], ALICE_ID, SYM_CFG, from_id=None, start_ms=None, end_ms=None,
                           limit=10)  # fmt: skip
    return [(t["orderId"], t["qty"]) for t in rows]


def test_an_api_fill_is_kept_by_a_compaction_until_filed_and_goes_with_its_order(
    tmp_path: Path,
) -> None:
    """The fill written with its order comes back after a compaction too; one the writer's
    checkpoint passed is not compacted; an order's GONE takes its fills along."""
    c, ref = _filled_core()
    log = OrderLog(tmp_path / "orders.log")
    log.load()
    entries = c.take_changes()
    assert [e[0] for e in plain(entries)] == ["A", "L"]
    log.write(entries)
    assert _fills(_restored(tmp_path / "orders.log")) == [(7, "1.00")]
    log.compact(c.dump_lazily())
    assert _fills(_restored(tmp_path / "orders.log")) == [(7, "1.00")]
    c.trades.forget_filed(41)  # the writer filed it
    log.compact(c.dump_lazily())
    restored = _restored(tmp_path / "orders.log")
    assert restored.known(7) is not None and _fills(restored) == []
    log.write([(API_FILL, ref, 1, False, 41, 10_000, 100, 1, True), (GONE, ref)])
    log.close()
    again = _restored(tmp_path / "orders.log")
    assert again.known(7) is None and _fills(again) == []


def test_an_order_log_written_before_fills_were_logged_restores_without_them(
    tmp_path: Path,
) -> None:
    """An API order's entry as a build before this fix wrote it (no ``L`` entries), and an
    ``L`` entry of an order the log no longer has: the order comes back FILLED, no fill, no
    error."""
    c, ref = _filled_core()
    old = [e for e in plain(c.take_changes()) if e[0] != API_FILL]
    log = OrderLog(tmp_path / "orders.log")
    log.load()
    log.write([(API_FILL, ref + 1, 2, True, 50, 10_000, 100, 1, False), *old])
    log.close()
    restored = _restored(tmp_path / "orders.log")
    order = restored.known(7)
    assert order is not None and (order.status, order.cum) == ("FILLED", 100)
    assert _fills(restored) == [] and len(restored.trades) == 0


def _diff(a: dict[str, Any], b: dict[str, Any], skip: tuple[str, ...]) -> dict[str, Any]:
    return {k: (a[k], b.get(k)) for k in a if k not in skip and a[k] != b.get(k)}


def test_sound_every_end_state_reads_the_same_live_filed_and_from_rows(harness: Harness) -> None:
    """Orders in each end state and their fills, read live, once filed, and as the database
    rows alone say: the same fields (but the documented null cummulativeQuoteQty and a
    triggered stop's isWorking); a refused LIMIT_MAKER in none."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, bob):
            buy: dict[str, Any] = {"symbol": "BTC-USD", "side": "BUY"}
            await bob.call("POST", ORDER, **SELL, price="30000.00", quantity="0.10")
            await alice.call("POST", ORDER, **LIMIT, price="30000.00", quantity="0.10")
            fok = await alice.call("POST", ORDER, **LIMIT, price="29000.00", quantity="0.10",
                                   timeInForce="FOK")  # fmt: skip
            assert fok["status"] == "EXPIRED"
            await bob.call("POST", ORDER, **SELL, price="30000.00", quantity="0.10")
            status, refused = await alice.request(
                "POST", ORDER, **buy, type="LIMIT_MAKER", price="30000.00", quantity="0.05"
            )
            assert (status, refused["code"]) == (400, -2010)
            ioc = await alice.call("POST", ORDER, **LIMIT, price="30000.00", quantity="0.20",
                                   timeInForce="IOC")  # fmt: skip
            assert (ioc["status"], ioc["executedQty"]) == ("EXPIRED", "0.10")
            b = await alice.call("POST", ORDER, **LIMIT, price="29000.00", quantity="0.30")
            await bob.call("POST", ORDER, **SELL, price="29000.00", quantity="0.10",
                           timeInForce="IOC")  # fmt: skip
            await alice.call("PUT", ORDER, **SYM, orderId=b["orderId"], quantity="0.20")
            await alice.call("PUT", ORDER, **SYM, orderId=b["orderId"], price="28000.00")
            await alice.call("DELETE", ORDER, **SYM, orderId=b["orderId"])
            ask = await alice.call("POST", ORDER, **SELL, price="30500.00", quantity="0.05")
            await alice.call("POST", ORDER, **LIMIT, price="30500.00", quantity="0.05",
                             selfTradePreventionMode="EXPIRE_MAKER")  # fmt: skip
            m = await alice.call("POST", ORDER, **LIMIT, price="20000.00", quantity="0.05")
            await alice.call("DELETE", "/api/v1/openOrders", **SYM)
            f = await alice.call("POST", ORDER, **LIMIT, price="29500.00", quantity="0.30")
            await bob.call("POST", ORDER, **SELL, price="29500.00", quantity="0.10",
                           timeInForce="IOC")  # fmt: skip
            filled = await alice.call("PUT", ORDER, **SYM, orderId=f["orderId"], quantity="0.10")
            assert filled["status"] == "FILLED"
            stop = await alice.call(
                "POST", ORDER, **buy, type="STOP_LOSS_LIMIT", price="30100.00",
                stopPrice="30050.00", quantity="0.05", timeInForce="GTC",
            )  # fmt: skip
            await bob.call("POST", ORDER, **SELL, price="30050.00", quantity="0.01")
            await alice.call("POST", ORDER, **LIMIT, price="30050.00", quantity="0.01")
            await alice.call("POST", ORDER, **LIMIT, price="25000.00", quantity="0.50",
                             icebergQty="0.10")  # fmt: skip
            live = await alice.call("GET", ALL, **SYM, limit=1000)
            live_fills = await alice.call("GET", TRADES, **SYM, limit=1000)
            by_id = {o["orderId"]: o for o in live}
            assert by_id[ask["orderId"]]["status"] == "EXPIRED_IN_MATCH"
            assert by_id[m["orderId"]]["status"] == "CANCELED"
            assert by_id[b["orderId"]]["status"] == "CANCELED"
            assert by_id[b["orderId"]]["executedQty"] == "0.10"
            assert by_id[stop["orderId"]]["isWorking"]  # triggered, resting
            await unfiled_rig.file_all(h)
            filed = await alice.call("GET", ALL, **SYM, limit=1000)
            rows = await api.need_history().orders(ALICE, 1, from_id=0, limit=1000)
            from_rows = [order_json(r, h.cfg.symbols[0]) for r in rows]
            for view in (filed, from_rows):
                assert [o["orderId"] for o in view] == [o["orderId"] for o in live]
                for was, now in zip(live, view, strict=True):
                    skip: tuple[str, ...] = ("cummulativeQuoteQty",)
                    if was["orderId"] == stop["orderId"]:
                        skip += ("isWorking",)  # README: the history keeps no trigger
                    assert not _diff(was, now, skip), (was["orderId"], _diff(was, now, skip))
            api.core.trades.forget_filed(2**62)  # the database's fills alone
            db_fills = await alice.call("GET", TRADES, **SYM, limit=1000)
            assert len(live_fills) == len(db_fills) == 5
            for was, now in zip(live_fills, db_fills, strict=True):
                assert {k: was[k] for k in TRADE_FIELDS} == {k: now[k] for k in TRADE_FIELDS}

    run(h, scenario)


def test_sound_another_accounts_orders_and_fills_never_show(harness: Harness) -> None:
    """BOB, who traded with ALICE, sees only his own orders and fills, live and filed; her
    orderId in his myTrades is [], in his GET order -2013."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, bob):
            hers = await alice.call("POST", ORDER, **LIMIT, price="30000.00", quantity="0.10")
            his = await bob.call("POST", ORDER, **SELL, price="30000.00", quantity="0.10")
            for _ in range(2):
                orders = await bob.call("GET", ALL, **SYM)
                assert [o["orderId"] for o in orders] == [his["orderId"]]
                fills = await bob.call("GET", TRADES, **SYM)
                assert [(t["orderId"], t["isBuyer"]) for t in fills] == [(his["orderId"], False)]
                assert await bob.call("GET", TRADES, **SYM, orderId=hers["orderId"]) == []
                assert await bob.call("GET", ALL, **SYM, orderId=hers["orderId"]) == [
                    o for o in orders if o["orderId"] >= hers["orderId"]
                ]
                status, body = await bob.request("GET", ORDER, **SYM, orderId=hers["orderId"])
                assert (status, body["code"]) == (400, -2013), body
                await unfiled_rig.file_all(h)

    run(h, scenario)


def test_sound_limits_and_windows_are_refused_naming_them(harness: Harness) -> None:
    """limit 1001 on allOrders, myTrades and trades: -1100 naming 1..1000; a startTime
    after the endTime: -1023 naming both."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, _bob):
            for path in (ALL, TRADES, "/api/v1/trades"):
                status, body = await alice.request("GET", path, **SYM, limit=1001)
                assert (status, body["code"]) == (400, -1100), (path, body)
                assert "limit 1001" in body["msg"] and "1..1000" in body["msg"], body
            for path in (ALL, TRADES):
                status, body = await alice.request("GET", path, **SYM, startTime=9, endTime=8)
                assert (status, body["code"]) == (400, -1023), (path, body)
                assert "startTime 9" in body["msg"] and "endTime 8" in body["msg"], body

    run(h, scenario)
