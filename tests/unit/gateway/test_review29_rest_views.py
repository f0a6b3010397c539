"""A hostile review of what the REST API and the private stream show a user (the 29th review):
``allOrders`` / ``myTrades`` around the database writer's handover, ``openOrders``, the
private stream's snapshot and events, orders placed over FIX or through another gateway.

The rig is ``unfiled_rig.py``'s: real HTTP and WebSocket in front of real rings with the
router and matcher in process, the database tests' private PostgreSQL behind the history,
and the database writer run by hand (``file_all`` files the journal up to its end, so what
happens after it is what the writer has not filed yet). Commands "from another gateway" are
published on gateway 0's ring (the funder's), as another gateway's client would send them.

The tests under "Bugs" fail on the code as reviewed; their docstrings say what is wrong,
why it matters and where. The tests under "Checked" pin what was found to hold.

BTC-USD: prices 2 decimals, sizes 2, USD 6 decimals; fees 10 bps maker, 20 bps taker.
ALICE (601) holds dollars, BOB (602) bitcoin.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from config.schema import DatabaseConfig
from procs.common.records import CancelOrder, NewOrder, Record
from procs.common.types import OrdType, Side, StpMode, TimeInForce
from procs.gateway.instruments import format_units
from procs.gateway.rest import RestApi
from tests.unit.gateway import rest_rig, unfiled_rig
from tests.unit.gateway.harness import BTC, FUNDER, USD, Harness, settled, utc
from tests.unit.gateway.harness import config as harness_config
from tests.unit.gateway.rest_rig import ALICE, LIMIT, fix_user, run, stream_messages

harness = unfiled_rig.harness
PRICE, SELL = unfiled_rig.PRICE, unfiled_rig.SELL
ORDER, OPEN, ALL = "/api/v1/order", "/api/v1/openOrders", "/api/v1/allOrders"
TICKS = 3_000_000  # 30000.00
AWAY = 2_900_000  # 29000.00: out of BOB's reach
CAROL = 603  # a third account, trading only through gateway 0


@pytest.fixture
def two_symbols(
    instance: str, tmp_path: Path, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Harness]:
    """``unfiled_rig.harness`` with a second symbol, XBT-USD (id 2, the same rules), on the
    same matcher."""
    plain = harness_config  # what rest_rig.rest_exchange calls

    def config(*args: Any, **kw: Any) -> Any:
        cfg = plain(*args, **kw)
        xbt = msgspec.structs.replace(cfg.symbols[0], name="XBT-USD", id=2)
        m1 = msgspec.structs.replace(cfg.matchers[0], symbols=["BTC-USD", "XBT-USD"])
        return msgspec.structs.replace(cfg, symbols=[cfg.symbols[0], xbt], matchers=[m1])

    monkeypatch.setattr(rest_rig, "config", config)
    yield from rest_rig.rest_exchange(instance, tmp_path, DatabaseConfig(dsn=dsn))


def _elsewhere(
    ref: int, account: int = ALICE, *, symbol: int = 1, side: Side = Side.BUY,
    ord_type: OrdType = OrdType.LIMIT, tif: TimeInForce = TimeInForce.GTC,
    price: int = AWAY, qty: int = 10, stop: int = 0,
) -> NewOrder:  # fmt: skip
    """An order placed through gateway 0 (another gateway, as far as the REST one knows)."""
    return NewOrder(
        *(0, time.time_ns(), FUNDER, 1, ref, account, symbol, 0), side=side, ord_type=ord_type,
        tif=tif, flags=0, stp=StpMode.NONE, price=price, qty=qty, stop_price=stop,
        display_qty=0,
    )  # fmt: skip


async def _publish(*commands: Record, h: Harness) -> None:
    """Commands through gateway 0; returns once the router has read them and the REST
    gateway has read their events (10 s at most: a loaded host is slow). The harness steps
    the router and matcher together in this loop, so once the router has read every ring it
    reads, the matcher has acted too and its events wait only for the gateway."""
    h.funder.publish_batch(list(commands))
    await settled(h.caught_up, 10.0)


async def _snapshot(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    first = json.loads((await ws.receive(timeout=5.0)).data)
    assert first["event"] == "snapshot" and first["seq"] == 1, first
    data: dict[str, Any] = first["data"]
    return data


def _reports(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m["data"] for m in messages if m["event"] == "executionReport"]


def _shown(o: dict[str, Any]) -> tuple[Any, ...]:
    return (o["clientOrderId"], o["type"], o["timeInForce"], o["stopPrice"], o["isWorking"])


class StreamHolder:
    """What a stream client holds: a snapshot, then each event applied in ``seq`` order."""

    def __init__(self, snapshot: dict[str, Any]) -> None:
        self.seq = 1
        self.balances = {b["asset"]: (b["free"], b["locked"]) for b in snapshot["balances"]}
        self.orders = {o["orderId"]: o for o in snapshot["openOrders"]}

    def apply(self, message: dict[str, Any]) -> None:
        assert message["seq"] == self.seq + 1, f"seq {message['seq']} after {self.seq}"
        self.seq = message["seq"]
        data = message["data"]
        if message["event"] == "balance":
            self.balances[data["asset"]] = (data["free"], data["locked"])
        elif data["status"] in ("NEW", "PARTIALLY_FILLED", "PENDING_NEW"):
            self.orders[data["orderId"]] = data
        else:
            self.orders.pop(data["orderId"], None)

    def views(self) -> list[dict[str, Any]]:
        """The open orders as ``openOrders`` shows them (a report's own fields left out)."""
        report = {
            *("executionType", "eventTime", "lastQty", "lastPrice", "tradeId", "isMaker"),
            *("commission", "commissionAsset", "rejectReason"),
        }
        return [
            {k: v for k, v in o.items() if k not in report} for _, o in sorted(self.orders.items())
        ]

    def open(self) -> list[tuple[int, str, str, str]]:
        return [
            (o["orderId"], o["status"], o["origQty"], o["executedQty"])
            for _, o in sorted(self.orders.items())
        ]


# -- Bugs ---------------------------------------------------------------------------------------


def test_a_fix_order_filled_on_arrival_loses_its_clordid_type_and_tif_in_every_rest_view(
    harness: Harness,
) -> None:
    """What is wrong: ALICE uses the API (her stream is open) and sends, over FIX on the same
    gateway, an IOC buy that fills at once against BOB's ask. Its stream reports (NEW, TRADE)
    and ``allOrders`` show ``clientOrderId: ""``, ``type: ""`` and ``timeInForce: ""``, even
    after the writer has filed it (the live view wins the tie with the row), though the
    gateway's FIX order entry knew all three. The same order resting (not filled on arrival)
    is shown with its ClOrdID (test_review4_rest_bugs).
    Why: ``GatewayServer.pump`` (server.py:325-334) gives a batch's events to the FIX order
    entry first; its ``_done`` of the fill's ``OrderDone(FILLED)`` forgets the order
    (``OrderMemory._forget``, order_memory.py:63-65: ``by_id.pop``) before the REST core
    handles the same batch's ``Accepted``: ``RestOrders._fix_order_of`` (rest_orders.py:334-336,
    ``core.fix_order = self.entry.by_id.get``, server.py:162) finds nothing, and
    ``_accepted`` builds the bare ``LiveOrder(..., "", 0, ...)`` of an order placed elsewhere
    (rest_orders.py:379-382). Any FIX order that ends in its own command's batch (IOC, FOK,
    market, a taker filled in full) is affected.
    Why it matters: a client matches its fills to its orders by clientOrderId; these fills
    arrive under an empty one, and the history hides the type and time in force the
    database holds.
    Expected: clientOrderId "fix-ioc", type LIMIT, timeInForce IOC in the reports and in
    allOrders. Actual: "", "", ""."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, bob):
            await bob.call("POST", ORDER, **SELL, price=PRICE, quantity="0.10")
            ws = await alice.stream()
            await _snapshot(ws)
            fix = await fix_user(h, "ALICE", "alice-pw")
            try:
                await fix.send(
                    "D", (11, "fix-ioc"), (55, "BTC-USD"), (54, "1"), (60, utc()),
                    (38, "0.10"), (40, "2"), (44, PRICE), (59, "3"),
                )  # fmt: skip
                ack = await fix.expect("8")
                assert ack.get(37) is not None, ack
                reports = _reports(await stream_messages(ws, 1.0))
                await unfiled_rig.file_all(h)
                (listed,) = await alice.call("GET", ALL, symbol="BTC-USD")
            finally:
                fix.close()
                await ws.close()
            assert [r["executionType"] for r in reports] == ["NEW", "TRADE"], reports
            want = ("fix-ioc", "LIMIT", "IOC")
            seen = [(r["clientOrderId"], r["type"], r["timeInForce"]) for r in reports]
            assert seen == [want, want], f"stream reports show {seen}"
            shown = (listed["clientOrderId"], listed["type"], listed["timeInForce"])
            assert shown == want, f"allOrders shows {shown}: {listed}"

    run(h, scenario)


def test_open_orders_of_one_symbol_stops_the_stream_reporting_the_others(
    two_symbols: Harness,
) -> None:
    """What is wrong: ALICE has an open bid on BTC-USD and one on XBT-USD, placed through
    another gateway and filed. Her stream's snapshot lists both and remembers their rows
    (``RowOrders.remember``), so that their next event is reported (test_review9). She then
    asks ``GET openOrders?symbol=BTC-USD``, as a page showing one market does; the XBT-USD
    bid is then cancelled through the other gateway: the stream sends no executionReport.
    Why: ``RestApi.open_orders_over`` (rest.py:508) calls ``rows.remember(account, rows,
    ...)`` with the rows of the symbols this request asked for (rest.py:476, one symbol),
    and ``RowOrders.remember`` *replaces* everything remembered for the account
    (row_orders.py:51, ``self._by_account[account] = {...}``): the other symbols' rows are
    forgotten, and ``RestOrders._done`` / ``_fill`` (rest_orders.py:396, 432) no longer take
    those orders.
    Why it matters: a client applying the snapshot then each event keeps the cancelled
    XBT-USD bid open, and misses its fills, for as long as the stream lives.
    Expected: a CANCELED report for the XBT-USD bid (it comes without the openOrders call).
    Actual: none."""
    h = two_symbols

    async def scenario(api: RestApi, url: str) -> None:
        await _publish(_elsewhere(1, symbol=1), _elsewhere(2, symbol=2), h=h)
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, _bob):
            ws = await alice.stream()
            snapshot = await _snapshot(ws)
            held = {o["symbol"]: o["orderId"] for o in snapshot["openOrders"]}
            assert set(held) == {"BTC-USD", "XBT-USD"}, snapshot
            await alice.call("GET", OPEN, symbol="BTC-USD")
            xbt = held["XBT-USD"]
            h.funder.publish_batch([CancelOrder(0, time.time_ns(), FUNDER, 1, 3, ALICE, 2, xbt)])
            reports = _reports(await stream_messages(ws, 1.5))
            await ws.close()
            ends = [(r["orderId"], r["status"]) for r in reports]
            assert ends == [(xbt, "CANCELED")], f"the stream reported {ends}"

    run(h, scenario)


def test_a_snapshot_shows_open_an_order_the_gateway_saw_cancelled(harness: Harness) -> None:
    """Fixed (review 29): ALICE's bid, placed through another gateway, is filed open.
    ALICE uses the API (``GET account``: her account is of interest), then the bid is
    cancelled through the other gateway; the REST gateway reads that ``OrderDone``. Before
    the writer files the cancel she opens her stream: the snapshot leaves the bid out (so
    does ``openOrders``), and a client applying the snapshot and then each event holds no
    cancelled order open.
    Was: listed NEW and never ended. The snapshot's open orders are the database's rows
    overlaid with what the gateway follows, and ``RestOrders._done`` kept nothing of the end
    of an order it did not follow (``OrderEnds.unfollowed`` only while a cancel-all
    collects), so the stale row was shown, and remembered with an ``updated_seq`` its end
    had already passed.
    Now: the end is kept (``ended_elsewhere.py``, bounded) until the writer's checkpoint
    passes it or a row shows it; ``RestOrders.known`` finds it, so the row is left out and
    not followed."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        await _publish(_elsewhere(1), h=h)
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, _bob):
            await alice.call("GET", "/api/v1/account")  # of interest from now on
            assert api.history is not None
            oid = 1  # the exchange's first order
            row = await api.history.order(ALICE, oid)
            assert row is not None and row[11] == 1, row  # filed NEW
            await _publish(CancelOrder(0, time.time_ns(), FUNDER, 1, 2, ALICE, 1, oid), h=h)
            ws = await alice.stream()
            holder = StreamHolder(await _snapshot(ws))
            for message in await stream_messages(ws, 1.0):
                holder.apply(message)
            await ws.close()
            assert holder.open() == [], f"a cancelled order held open: {holder.open()}"
            status = await alice.call("GET", ORDER, symbol="BTC-USD", orderId=oid)
            assert status["status"] == "CANCELED", status  # GET order shows the end too

    run(h, scenario)


def test_a_refused_amend_makes_all_orders_drop_the_client_order_id(harness: Harness) -> None:
    """What is wrong: ALICE's stop-limit buy (``newClientOrderId=mine``) waits for its
    trigger; she amends its price and the matcher refuses (pending stops cannot be
    replaced, -2011 INVALID_ORDER): the order is unchanged. Once the writer has filed the
    refusal, ``allOrders`` shows it with ``clientOrderId: ""``, ``cummulativeQuoteQty: null``
    and the refusal's time as ``updateTime``, while ``GET order`` still shows "mine",
    "0.0000" and its real last change.
    Why: the writer re-files an open order's row for a ``Rejected`` replace (projection.py:333,
    "a replace's hold went back"), so the row's ``updated_seq`` passes the seq of the last
    event the gateway stamped on the order; ``RestOrders._rejected`` (rest_orders.py:464-471)
    does not stamp the refusal's seq on the followed order, and ``UnfiledOrders.merged``
    takes the row as newer (unfiled_orders.py:138, ``0 < live.seq < filed``).
    Why it matters: the same order reads differently in ``GET order`` and ``allOrders``; a
    client reconciling its history by clientOrderId loses it (and, for a partly filled
    order, its quote quantity) after any refused amend. A halted symbol's refusals do it too.
    Expected: allOrders' entry equal to GET order's. Actual: clientOrderId "", quote qty null."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, _bob):
            placed = await alice.call(
                "POST", ORDER, symbol="BTC-USD", side="BUY", type="STOP_LOSS_LIMIT",
                price="40000.00", stopPrice="40000.00", quantity="0.10", timeInForce="GTC",
                newClientOrderId="mine",
            )  # fmt: skip
            oid = placed["orderId"]
            await unfiled_rig.file_all(h)
            status, body = await alice.request(
                "PUT", ORDER, symbol="BTC-USD", orderId=oid, price="41000.00"
            )
            assert status == 400 and "INVALID_ORDER" in body["msg"], body
            await unfiled_rig.file_all(h)
            queried = await alice.call("GET", ORDER, symbol="BTC-USD", orderId=oid)
            (listed,) = await alice.call("GET", ALL, symbol="BTC-USD")
            assert queried["clientOrderId"] == "mine", queried
            assert listed == queried, f"allOrders: {listed}\nGET order: {queried}"

    run(h, scenario)


def test_a_rejected_order_appears_in_all_orders_only_once_the_writer_files_it(
    harness: Harness,
) -> None:
    """What is wrong: ALICE's LIMIT_MAKER bid would take BOB's ask: the matcher rejects it
    (POST_ONLY_WOULD_TAKE) after the router gave it an order id, which her stream's REJECTED
    report carries. ``allOrders`` does not list it; once the writer has filed the journal,
    the same query lists it, status REJECTED (and ``GET order`` by its id turns from -2013
    into REJECTED).
    Why: the writer files the order's row and its rejection (projection.py:241-246,
    329-332) and ``History.orders`` lists every status; ``RestOrders._rejected``
    (rest_orders.py:464-483) keeps the rejected order neither in ``done`` nor in the
    unfiled index (no ``unfiled.changed``), so the live merge never adds it.
    Why it matters: README and unfiled_orders.py promise that allOrders before the writer
    files an order answers what the database alone answers after (no order missed, none
    appearing later, the ``limit`` cut the same). Whichever answer is meant (the venues do
    not list a rejected order), the two must agree.
    Expected: the same list before and after filing. Actual: [] before, [REJECTED] after."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, bob):
            await bob.call("POST", ORDER, **SELL, price=PRICE, quantity="0.10")
            status, body = await alice.request(
                "POST", ORDER, **{**LIMIT, "type": "LIMIT_MAKER"}, price=PRICE, quantity="0.10"
            )
            assert status == 400 and "POST_ONLY_WOULD_TAKE" in body["msg"], body
            before = await alice.call("GET", ALL, symbol="BTC-USD")
            await unfiled_rig.file_all(h)
            after = await alice.call("GET", ALL, symbol="BTC-USD")
            seen = [[(o["orderId"], o["status"]) for o in x] for x in (before, after)]
            assert seen[0] == seen[1], f"before filing {seen[0]}, after {seen[1]}"

    run(h, scenario)


def test_a_pending_stop_placed_elsewhere_shows_working_with_no_type_after_it_is_filed(
    harness: Harness,
) -> None:
    """Fixed (review 29): ALICE uses the API; a stop-limit buy of hers (stop 40000.00, far
    above the market) is placed through another gateway. Once the writer has filed it,
    ``openOrders`` and ``allOrders`` show it as the database row says: STOP_LOSS_LIMIT, GTC,
    stop 40000.00, not working (it waits off the book).
    Was: ``type: ""``, ``timeInForce: ""``, ``stopPrice: "0.00"``, ``isWorking: true``,
    filed or not. The gateway follows the order from its ``Accepted``, which carries
    neither type, time in force nor stop price, and ``LiveOrder.json`` takes a stop price
    of 0 as "not a stop"; the overlays preferred that emptier live view whole to the row.
    Now: every row read over a followed order fills in what its events did not say
    (``LiveOrder.complete``: ``openOrders`` and the stream's snapshot through
    ``CompletingRowOrders.remember``, ``allOrders`` in ``UnfiledOrders.merged``, ``GET order``
    in ``RestApi.query_order``), on the
    order itself, so its later views and stream events keep them. Before the writer has
    filed it, no view knows them."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, _bob):
            await alice.call("GET", "/api/v1/account")  # of interest from now on
            stop = _elsewhere(1, ord_type=OrdType.STOP_LIMIT, price=4_000_000, stop=4_000_000)
            await _publish(stop, h=h)
            await unfiled_rig.file_all(h)
            want = ("", "STOP_LOSS_LIMIT", "GTC", "40000.00", False)
            alone = await alice.call("GET", ORDER, symbol="BTC-USD", orderId=1)  # read first
            assert _shown(alone) == want, alone
            (listed,) = await alice.call("GET", OPEN, symbol="BTC-USD")
            (history,) = await alice.call("GET", ALL, symbol="BTC-USD")
            assert (_shown(listed), _shown(history)) == (want, want), (listed, history)

    run(h, scenario)


def test_a_triggered_stop_followed_from_its_row_is_reported_not_working(harness: Harness) -> None:
    """What is wrong: ALICE's stop-limit buy of 0.30 (stop and limit 30000.00), placed
    through another gateway before she used the API, triggered and bought 0.15; it rests
    for the other 0.15, and the writer has filed that. Her stream's snapshot lists it
    PARTIALLY_FILLED with ``isWorking: true`` (from the row: a stop that has filled has
    triggered, history.py:100-101). BOB's sell then fills 0.05 more: the TRADE report says
    ``isWorking: false`` for the order still on the book, and ``openOrders`` says so from
    then on.
    Why: ``from_row`` (rest_order_state.py:165-175) builds the followed order with
    ``triggered`` False whatever the row's fills, and ``LiveOrder.json`` takes a stop not
    triggered as off the book (rest_order_state.py:103). ``reconcile``
    (rest_order_log.py:139) applies the rule ``from_row`` misses ("a stop that traded").
    Why it matters: the first event after the snapshot contradicts it about the same state
    of the order; a client shows a resting order as a pending stop.
    Expected: isWorking true in the TRADE report. Actual: false."""
    h = harness
    h.fund(CAROL)

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, bob):
            stop = _elsewhere(1, ord_type=OrdType.STOP_LIMIT, price=TICKS, qty=30, stop=TICKS)
            await _publish(stop, h=h)
            await bob.call("POST", ORDER, **SELL, price=PRICE, quantity="0.20")
            # CAROL's buy trades at 30000.00 with BOB: the stop triggers and takes 0.15
            hit = _elsewhere(2, CAROL, tif=TimeInForce.IOC, price=TICKS, qty=5)
            await _publish(hit, h=h)
            await unfiled_rig.file_all(h)
            ws = await alice.stream()
            (shown,) = (await _snapshot(ws))["openOrders"]
            seen = (shown["status"], shown["executedQty"], shown["isWorking"])
            assert seen == ("PARTIALLY_FILLED", "0.15", True), shown
            await bob.call("POST", ORDER, **SELL, price=PRICE, quantity="0.05", timeInForce="IOC")
            reports = _reports(await stream_messages(ws, 1.0))
            await ws.close()
            got = [(r["executionType"], r["status"], r["isWorking"]) for r in reports]
            assert got == [("TRADE", "PARTIALLY_FILLED", True)], reports

    run(h, scenario)


# -- Checked ------------------------------------------------------------------------------------


def test_the_stream_rebuilds_the_routers_balances_and_the_open_orders_across_a_reconnect(
    harness: Harness,
) -> None:
    """Checked: a client applying the snapshot then each event in ``seq`` order (contiguous
    from 1 on each connection) holds the router's balances (fees included) and the open
    orders ``openOrders`` lists, through fills as maker and taker, an amend and a cancel;
    ``GET account`` says the same; a second connection starts again at seq 1 with a
    snapshot equal to what the first client holds."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, bob):
            ws = await alice.stream()
            holder = StreamHolder(await _snapshot(ws))
            bid = await alice.call("POST", ORDER, **LIMIT, price=PRICE, quantity="0.30")
            away = await alice.call("POST", ORDER, **LIMIT, price="29000.00", quantity="0.10")
            await bob.call("POST", ORDER, **SELL, price=PRICE, quantity="0.10", timeInForce="IOC")
            await alice.call(
                "PUT", ORDER, symbol="BTC-USD", orderId=bid["orderId"], quantity="0.25"
            )
            await bob.call("POST", ORDER, **SELL, price="31000.00", quantity="0.05")
            await alice.call("POST", ORDER, **LIMIT, price="31000.00", quantity="0.05")
            await alice.call("DELETE", ORDER, symbol="BTC-USD", orderId=away["orderId"])
            await bob.call("POST", ORDER, **SELL, price=PRICE, quantity="0.05", timeInForce="IOC")
            for message in await stream_messages(ws, 1.0):
                holder.apply(message)
            await ws.close()
            accounts = h.router.sequencer.accounts
            router = {
                name: tuple(format_units(v, 6).decode() for v in accounts.balance(ALICE, asset))
                for name, asset in (("USD", USD), ("BTC", BTC))
            }
            assert holder.balances == router
            account = await alice.call("GET", "/api/v1/account")
            assert {b["asset"]: (b["free"], b["locked"]) for b in account["balances"]} == router
            assert holder.open() == [(bid["orderId"], "PARTIALLY_FILLED", "0.25", "0.15")]
            listed = await alice.call("GET", OPEN, symbol="BTC-USD")
            assert holder.views() == listed
            again = await alice.stream()
            fresh = StreamHolder(await _snapshot(again))
            await again.close()
            assert (fresh.balances, fresh.views()) == (holder.balances, holder.views())

    run(h, scenario)


def test_history_edges_answer_the_same_before_and_after_the_writer_files(
    harness: Harness,
) -> None:
    """Checked: filed and unfiled fills and orders mixed, ``myTrades`` and ``allOrders`` at
    their edges (``limit=1``, ``fromId`` / ``orderId`` at the last one and past it,
    ``startTime`` = ``endTime`` = one fill's millisecond, an ``endTime`` one ms before the
    first) answer before the writer files everything what the database alone answers
    after, each fill and order once."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, bob):
            for n, qty in enumerate(("0.10", "0.05", "0.05")):
                await alice.call("POST", ORDER, **LIMIT, price=PRICE, quantity=qty)
                await bob.call("POST", ORDER, **SELL, price=PRICE, quantity=qty, timeInForce="IOC")
                if n == 0:
                    await unfiled_rig.file_all(h)  # the first trade filed, the others not
            trades = await alice.call("GET", "/api/v1/myTrades", symbol="BTC-USD")
            orders = await alice.call("GET", ALL, symbol="BTC-USD")
            assert [t["id"] for t in trades] == [1, 2, 3]
            last, middle = trades[-1], trades[1]
            oids = [o["orderId"] for o in orders]
            queries: list[tuple[str, dict[str, Any]]] = [
                ("/api/v1/myTrades", {"limit": 1}),
                ("/api/v1/myTrades", {"fromId": last["id"]}),
                ("/api/v1/myTrades", {"fromId": last["id"] + 1}),
                ("/api/v1/myTrades", {"fromId": 0, "limit": 2}),
                ("/api/v1/myTrades", {"startTime": middle["time"], "endTime": middle["time"]}),
                ("/api/v1/myTrades", {"endTime": trades[0]["time"] - 1}),
                (ALL, {"limit": 1}),
                (ALL, {"orderId": oids[-1]}),
                (ALL, {"orderId": oids[-1] + 1}),
                (ALL, {"orderId": 0, "limit": 2}),
                (ALL, {"startTime": orders[1]["time"], "endTime": orders[1]["time"]}),
            ]
            before = [await alice.call("GET", path, symbol="BTC-USD", **q) for path, q in queries]
            await unfiled_rig.file_all(h)
            api.core.trades.forget_filed(2**62)
            api.core.unfiled.forget_filed(2**62)
            after = [await alice.call("GET", path, symbol="BTC-USD", **q) for path, q in queries]
            for (path, q), b, a in zip(queries, before, after, strict=True):
                assert b == a, (path, q, b, a)
            assert [t["id"] for t in before[0]] == [3] and before[2] == [] and before[5] == []

    run(h, scenario)
