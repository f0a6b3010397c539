"""Review 301: self-trade prevention on every surface.

Reviewed: ``procs/core/book.py`` (``_fillable``, ``_enter``, ``_done_resting``),
``fast_book.py`` / ``reference_book.py`` (``_match``, ``_self_trade``), ``procs/gateway/
orders.py`` (FIX: the D's NewOrder, ``_done``'s report), ``rest_params.py`` (``STP``),
``rest_orders.py`` (``_done``: TRADE_PREVENTION), ``rest_order_state.py`` (``DONE_STATUS``),
``procs/dbwriter/projection.py`` (``DONE_STATUS``: 6 self_trade_cancelled), ``history.py``
(``STATUS_NAMES``), README's matcher, FIX and REST sections.

Rig: review 214's exchange (``rest_rig``'s harness: real HTTP and FIX over TCP, in-process
router and matcher on real rings; ALICE, BOB and CAROL holding both assets) with the unit
tests' PostgreSQL behind the history and the real database writer run to the journal's end
(``unfiled_rig.file_all``); market data is the real ``Site`` over the state the matcher's
output ring builds (review 47's ``market_data``); holds are checked against the books
(``holds_agree``) and balances against the printed trades (``settled_as_readme``).

Faults found (each fixed; its test says what it was):

1. A FIX client cannot have self-trade prevention at all. README (matcher section) offers
   "self-trade prevention per account (cancel newest, oldest or both)", and the REST API
   selects it per order (``selfTradePreventionMode``), but the FIX gateway builds every
   NewOrder with ``stp=StpMode.NONE`` (``procs/gateway/orders.py:313``): no tag (ExecInst
   other than 6 is refused, a user-defined tag is 373=3), no session or user setting. A
   FIX-only market maker whose bid crosses its own ask trades with itself (a wash trade
   printed on the tape, both fees charged); the FIX section of README never says so.
   Fixed: a D takes SelfTradePreventionMode (25001, Binance's FIX API's tag and values:
   1 none, its absence; 2 cancel the newest, 3 the oldest, 4 both; ``order_fields.STP_MODES``,
   the dictionary's ``_READ``); a replace keeps its order's mode (a G's 25001 is taken and
   not read); README's FIX section says so. A second test runs mode 2.

Sound (the ``test_sound_`` tests): a REST EXPIRE_TAKER taker that fills from another
account first, then meets its own FIX ask, keeps its fill and ends EXPIRED_IN_MATCH in the
answer, ``GET order``, the stream (NEW, TRADE, TRADE_PREVENTION) and the filed row (status
6, filled 0.10), the FIX ask untouched; EXPIRE_MAKER against the account's own FIX iceberg
(one slice filled by another account before) cancels the whole iceberg (150=4 39=4
CumQty 0.05 LeavesQty 0, Text "self-trade prevention"; EXPIRED_IN_MATCH over REST; row 6)
after filling from the next account's order ahead of its refreshed slice; EXPIRE_BOTH
ends both REST orders, nothing printed, no level left; a market buy without a price under
EXPIRE_TAKER meeting its own ask ends
EXPIRED_IN_MATCH with the router's cap hold released; a stop-limit triggered by other
accounts' trade into its own ask ends EXPIRED_IN_MATCH after TRIGGERED, its hold released
; an amend (PUT) moving an EXPIRE_BOTH bid across its own ask ends both
with no trade; a FOK under EXPIRE_TAKER / EXPIRE_BOTH that could fill only through its own
order expires with nothing traded, under EXPIRE_MAKER it fills from the others around it.
In every scenario no trade printed has maker and taker of one account (save fault 1), the
public depth shows only what rests, the router's holds equal what the books need and the
balances equal the printed trades settled.

Leads not shown:
1. ``DELETE openOrders`` / a FIX mass cancel racing an STP cancel of the same order (which
   reason wins in each view) was not driven in the time box.
2. A FIX order replaced (G) so that it crosses its own order trades with itself: part of
   fault 1 (its stp stays NONE), not tested separately.
3. Gateway restart between an STP cancel and the writer filing it (the order log's
   EXPIRED_IN_MATCH across the restart) was not tried.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest

from config.edges import RestConfig
from config.schema import DatabaseConfig
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import RestClient
from tests.unit.gateway.harness import Client, Harness, config
from tests.unit.gateway.rest_rig import run
from tests.unit.gateway.test_review47_rest_public import _get, market_data
from tests.unit.gateway.test_review214_views_of_fills import (
    ACCOUNTS,
    PW,
    acked,
    balances,
    ended,
    fix_order,
    fix_until,
    holds_agree,
    open_stream,
    public_state,
    ring_trades,
    settled_as_readme,
    stream_until,
    users,
)
from tests.unit.gateway.unfiled_rig import file_all

ALICE, BOB, CAROL = ACCOUNTS[:3]
ORDER = "/api/v1/order"
SYM: dict[str, Any] = {"symbol": "BTC-USD"}
BUY, SELL = "1", "2"


@pytest.fixture
def ex(instance: str, tmp_path: Path, dsn: str) -> Iterator[Harness]:
    """review 214's exchange: ALICE, BOB and CAROL with both assets, the history in ``dsn``."""
    rest = RestConfig(
        port=0, key_rate_per_s=1_000, key_burst=1_000, login_rate_per_s=100, login_burst=100,
        max_streams=4, stream_queue=512,
    )  # fmt: skip
    cfg = config(instance, tmp_path, rest=rest)
    cfg = msgspec.structs.replace(cfg, database=DatabaseConfig(dsn=dsn))
    h = Harness(cfg)
    for name, account in (("ALICE", ALICE), ("BOB", BOB), ("CAROL", CAROL)):
        h.add_user(name, PW[name], account)
        h.fund(account, usd=1_000_000 * 10**6, btc=10 * 10**6)
    yield h
    h.close()


# -- helpers ------------------------------------------------------------------------------------


async def first_trade(bob: Client, carol: Client) -> None:
    """BOB sells CAROL 0.10 at 100.00: the last price the bands and stops read."""
    await fix_order(bob, "B0", SELL, "0.10", (40, "2"), (44, "100.00"), (59, "1"))
    await fix_until(bob, acked("B0"))
    await fix_order(carol, "C0", BUY, "0.10", (40, "2"), (44, "100.00"), (59, "3"))
    await fix_until(carol, ended("C0"))
    await fix_until(bob, ended("B0"))


async def rest_order(api: RestClient, side: str, **params: Any) -> dict[str, Any]:
    out: dict[str, Any] = await api.call("POST", ORDER, **SYM, side=side, **params)
    return out


async def rows(h: Harness, *oids: int) -> dict[int, tuple[int, int, int]]:
    """(status, filled, remaining) of each order as the writer filed it, once it caught up."""
    await file_all(h)
    with psycopg.connect(h.cfg.database.dsn) as conn:
        got = conn.execute(
            "SELECT id, status, filled, remaining FROM orders WHERE id = ANY(%s)", (list(oids),)
        ).fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in got}


async def depth(api: RestApi, url: str, h: Harness) -> Any:
    async with market_data(api, public_state(h)):
        _, book = await _get(url, "/api/v1/depth", **SYM)
    return book


def prints(h: Harness) -> list[tuple[int, int, int, int]]:
    """(price, qty, maker account, taker account) of every trade the matcher printed."""
    return [(t.price, t.qty, t.maker_account, t.taker_account) for t in ring_trades(h)]


def no_self_print(h: Harness) -> None:
    assert all(maker != taker for _p, _q, maker, taker in prints(h)), prints(h)


async def get(api: RestClient, oid: int) -> tuple[str, str]:
    view = await api.call("GET", ORDER, **SYM, orderId=oid)
    return view["status"], view["executedQty"]


# -- scenarios ----------------------------------------------------------------------------------


def test_sound_expire_taker_after_a_fill_keeps_the_fill_and_the_own_fix_ask(ex: Harness) -> None:
    """Scenario: after a first trade at 100.00, ALICE's FIX ask A1 0.10 at 100.50 and BOB's
    0.10 at 100.00 rest; ALICE's REST bid 0.30 at 101.00 GTC with EXPIRE_TAKER. Expected: it
    buys BOB's 0.10, then meets A1 and ends: EXPIRED_IN_MATCH with executedQty 0.10 in the
    answer, ``GET order``, the stream (NEW, TRADE, TRADE_PREVENTION) and the filed row
    (6, filled 10, remaining 0); A1 stays open (row 1); depth shows only A1; holds and
    balances agree with the trades. Now: so."""

    async def scenario(api: RestApi, url: str) -> None:
        alice_api, bob_api, alice, bob, carol = await users(ex, url)
        start = balances(ex)
        await first_trade(bob, carol)
        ws = await open_stream(alice_api)
        await fix_order(alice, "A1", SELL, "0.10", (40, "2"), (44, "100.50"), (59, "1"))
        await fix_order(bob, "B1", SELL, "0.10", (40, "2"), (44, "100.00"), (59, "1"))
        a1 = int((await fix_until(alice, acked("A1")))[0].get(37))
        await fix_until(bob, acked("B1"))
        bid = await rest_order(
            alice_api, "BUY", type="LIMIT", price="101.00", quantity="0.30",
            timeInForce="GTC", selfTradePreventionMode="EXPIRE_TAKER",
        )  # fmt: skip
        assert (bid["status"], bid["executedQty"], len(bid["fills"])) == (
            "EXPIRED_IN_MATCH", "0.10", 1,
        )  # fmt: skip
        seen = await stream_until(
            ws, lambda r: any(x["executionType"] == "TRADE_PREVENTION" for x in r)
        )
        mine = [(x["executionType"], x["status"]) for x in seen if x["orderId"] == bid["orderId"]]
        assert mine == [
            ("NEW", "NEW"), ("TRADE", "PARTIALLY_FILLED"),
            ("TRADE_PREVENTION", "EXPIRED_IN_MATCH"),
        ]  # fmt: skip
        assert await get(alice_api, bid["orderId"]) == ("EXPIRED_IN_MATCH", "0.10")
        assert await rows(ex, bid["orderId"], a1) == {bid["orderId"]: (6, 10, 0), a1: (1, 0, 10)}
        book = await depth(api, url, ex)
        assert (book["bids"], book["asks"]) == ([], [["100.50", "0.10"]])
        assert prints(ex) == [(10_000, 10, BOB, CAROL), (10_000, 10, BOB, ALICE)]
        holds_agree(ex)
        assert balances(ex) == settled_as_readme(ring_trades(ex), start)
        await ws.close()
        for c in (alice_api, bob_api):
            await c.close()

    run(ex, scenario)


def test_sound_expire_maker_cancels_an_own_fix_iceberg_and_fills_from_the_next(
    ex: Harness,
) -> None:
    """Scenario: ALICE's FIX iceberg ask I1 0.20 (slices 0.05) at 100.00, BOB's 0.10 behind;
    CAROL buys 0.05 (I1's first slice; its next goes behind BOB); ALICE's REST IOC bid 0.15
    at 100.00 with EXPIRE_MAKER. Expected: the bid fills 0.10 from BOB, then I1 ends whole
    (reserve included): 150=4 39=4 CumQty 0.05 LeavesQty 0.00 Text "self-trade
    prevention"; EXPIRED_IN_MATCH over REST; row (6, 5, 0); the bid's rest expires (IOC);
    no level left; holds and balances agree. Now: so."""

    async def scenario(api: RestApi, url: str) -> None:
        alice_api, bob_api, alice, bob, carol = await users(ex, url)
        start = balances(ex)
        await first_trade(bob, carol)
        await fix_order(alice, "I1", SELL, "0.20", (40, "2"), (44, "100.00"), (59, "1"),
                        (111, "0.05"))  # fmt: skip
        reports = await fix_until(alice, acked("I1"))
        i1 = int(reports[0].get(37))
        await fix_order(bob, "B1", SELL, "0.10", (40, "2"), (44, "100.00"), (59, "1"))
        await fix_until(bob, acked("B1"))
        await fix_order(carol, "C1", BUY, "0.05", (40, "2"), (44, "100.00"), (59, "3"))
        await fix_until(carol, ended("C1"))
        bid = await rest_order(
            alice_api, "BUY", type="LIMIT", price="100.00", quantity="0.15",
            timeInForce="IOC", selfTradePreventionMode="EXPIRE_MAKER",
        )  # fmt: skip
        assert (bid["status"], bid["executedQty"]) == ("EXPIRED", "0.10")
        end = (await fix_until(alice, ended("I1")))[-1]
        assert tuple(end.get(t) for t in (150, 39, 14, 151, 58)) == (
            b"4", b"4", b"0.05", b"0.00", b"self-trade prevention",
        )  # fmt: skip
        assert await get(alice_api, i1) == ("EXPIRED_IN_MATCH", "0.05")
        assert (await rows(ex, i1))[i1] == (6, 5, 0)
        book = await depth(api, url, ex)
        assert (book["bids"], book["asks"]) == ([], [])
        assert prints(ex)[1:] == [(10_000, 5, ALICE, CAROL), (10_000, 10, BOB, ALICE)]
        holds_agree(ex)
        assert balances(ex) == settled_as_readme(ring_trades(ex), start)
        for c in (alice_api, bob_api):
            await c.close()

    run(ex, scenario)


def test_sound_expire_both_and_a_market_buy_release_everything(ex: Harness) -> None:
    """Scenario: ALICE's REST ask 0.10 at 100.50, then her REST bid at 100.50 with
    EXPIRE_BOTH; then her ask 0.10 at 100.00 and a REST market buy 0.10 (no price) with
    EXPIRE_TAKER. Expected: both of the first pair EXPIRED_IN_MATCH (rows 6), nothing
    printed; the market buy EXPIRED_IN_MATCH with nothing filled, the router's cap hold
    released; holds equal the one ask left. Now: so."""

    async def scenario(api: RestApi, url: str) -> None:
        alice_api, bob_api, _alice, bob, carol = await users(ex, url)
        start = balances(ex)
        await first_trade(bob, carol)
        limit = {"type": "LIMIT", "quantity": "0.10", "timeInForce": "GTC"}
        ask = await rest_order(alice_api, "SELL", price="100.50", **limit)
        bid = await rest_order(
            alice_api, "BUY", price="100.50", selfTradePreventionMode="EXPIRE_BOTH", **limit
        )
        assert (bid["status"], bid["fills"]) == ("EXPIRED_IN_MATCH", [])
        assert await get(alice_api, ask["orderId"]) == ("EXPIRED_IN_MATCH", "0.00")
        holds_agree(ex)
        ask2 = await rest_order(alice_api, "SELL", price="100.00", **limit)
        mkt = await rest_order(
            alice_api, "BUY", type="MARKET", quantity="0.10",
            selfTradePreventionMode="EXPIRE_TAKER",
        )  # fmt: skip
        assert (mkt["status"], mkt["executedQty"]) == ("EXPIRED_IN_MATCH", "0.00")
        holds_agree(ex)
        assert await rows(ex, ask["orderId"], bid["orderId"], mkt["orderId"], ask2["orderId"]) == {
            ask["orderId"]: (6, 0, 0), bid["orderId"]: (6, 0, 0), mkt["orderId"]: (6, 0, 0),
            ask2["orderId"]: (1, 0, 10),
        }  # fmt: skip
        book = await depth(api, url, ex)
        assert (book["bids"], book["asks"]) == ([], [["100.00", "0.10"]])
        assert len(prints(ex)) == 1
        assert balances(ex) == settled_as_readme(ring_trades(ex), start)
        for c in (alice_api, bob_api):
            await c.close()

    run(ex, scenario)


def test_sound_a_triggered_stop_an_amend_and_fok_under_prevention(ex: Harness) -> None:
    """Scenario: ALICE's ask 0.10 at 100.50; her stop-limit buy (stop 100.20, limit 100.50,
    EXPIRE_TAKER) triggered by BOB selling CAROL at 100.25; then her bid at 99.00 with
    EXPIRE_BOTH amended to 100.50 (a new ask of hers there); then FOK buys 0.20 at 101.00
    with BOB, ALICE, BOB resting 0.10 each there, under each mode. Expected: the stop is
    TRIGGERED then TRADE_PREVENTION (EXPIRED_IN_MATCH, row 6), its hold released;
    the amend ends both orders with no trade; FOK under EXPIRE_TAKER and EXPIRE_BOTH expires
    with nothing traded, under EXPIRE_MAKER fills 0.20 from BOB and ends ALICE's ask. Now:
    so."""

    async def scenario(api: RestApi, url: str) -> None:
        alice_api, bob_api, _alice, bob, carol = await users(ex, url)
        start = balances(ex)
        await first_trade(bob, carol)
        ws = await open_stream(alice_api)
        limit = {"type": "LIMIT", "quantity": "0.10", "timeInForce": "GTC"}
        await rest_order(alice_api, "SELL", price="100.50", **limit)
        stop = await rest_order(
            alice_api, "BUY", type="STOP_LOSS_LIMIT", stopPrice="100.20", price="100.50",
            quantity="0.10", timeInForce="GTC", selfTradePreventionMode="EXPIRE_TAKER",
        )  # fmt: skip
        await fix_order(bob, "B1", SELL, "0.10", (40, "2"), (44, "100.25"), (59, "1"))
        await fix_until(bob, acked("B1"))
        await fix_order(carol, "C1", BUY, "0.10", (40, "2"), (44, "100.25"), (59, "3"))
        await fix_until(carol, ended("C1"))
        seen = await stream_until(ws, lambda r: any(x["status"] == "EXPIRED_IN_MATCH" for x in r))
        kinds = [x["executionType"] for x in seen if x["orderId"] == stop["orderId"]]
        assert kinds == ["NEW", "TRIGGERED", "TRADE_PREVENTION"], kinds
        assert (await rows(ex, stop["orderId"]))[stop["orderId"]] == (6, 0, 0)
        holds_agree(ex)
        bid = await rest_order(
            alice_api, "BUY", price="99.00", selfTradePreventionMode="EXPIRE_BOTH", **limit
        )
        amended = await alice_api.call(
            "PUT", ORDER, **SYM, orderId=bid["orderId"], price="100.50", quantity="0.10"
        )
        assert amended["status"] == "EXPIRED_IN_MATCH"
        holds_agree(ex)
        for cl in ("B2", "B3"):
            await fix_order(bob, cl, SELL, "0.10", (40, "2"), (44, "101.00"), (59, "1"))
            await fix_until(bob, acked(cl))
            if cl == "B2":
                own = await rest_order(alice_api, "SELL", price="101.00", **limit)
        before = len(prints(ex))
        got = []
        for mode in ("EXPIRE_TAKER", "EXPIRE_BOTH", "EXPIRE_MAKER"):
            fok = await rest_order(
                alice_api, "BUY", type="LIMIT", price="101.00", quantity="0.20",
                timeInForce="FOK", selfTradePreventionMode=mode,
            )  # fmt: skip
            got.append((fok["status"], fok["executedQty"]))
        assert got == [("EXPIRED", "0.00"), ("EXPIRED", "0.00"), ("FILLED", "0.20")]
        assert prints(ex)[before:] == [(10_100, 10, BOB, ALICE)] * 2
        assert await get(alice_api, own["orderId"]) == ("EXPIRED_IN_MATCH", "0.00")
        no_self_print(ex)
        holds_agree(ex)
        assert balances(ex) == settled_as_readme(ring_trades(ex), start)
        await ws.close()
        for c in (alice_api, bob_api):
            await c.close()

    run(ex, scenario)


def test_a_fix_client_can_have_self_trade_prevention(ex: Harness) -> None:
    """Scenario: ALICE, a FIX-only market maker, rests an ask 0.10 at 100.00 over FIX; her
    own FIX IOC bid 0.10 at 100.00 crosses it. README offers self-trade prevention per
    account (cancel newest, oldest or both), and FIX has no tag (ExecInst other than 6 is
    refused, a user-defined tag is 373=3) nor session setting to select it. Expected: the
    account can keep its orders from trading with each other over FIX, as over REST; no
    trade of ALICE with ALICE is printed (the D says so: 25001=4, cancel both). Was (fixed):
    the trade printed (maker and taker ALICE), both fees charged: the D was sent with
    ``stp=StpMode.NONE`` whatever the session."""

    async def scenario(api: RestApi, url: str) -> None:
        alice_api, bob_api, alice, bob, carol = await users(ex, url)
        await first_trade(bob, carol)
        await fix_order(alice, "A1", SELL, "0.10", (40, "2"), (44, "100.00"), (59, "1"))
        await fix_until(alice, acked("A1"))
        # SelfTradePreventionMode (25001) 4: cancel both (Binance's FIX API's tag and values)
        await fix_order(
            alice, "X1", BUY, "0.10", (40, "2"), (44, "100.00"), (59, "3"), (25001, "4")
        )
        await fix_until(alice, lambda r: ended("X1")(r) and ended("A1")(r))
        for c in (alice_api, bob_api):
            await c.close()
        assert prints(ex)[1:] == []  # (was: [(10_000, 10, ALICE, ALICE)])
        no_self_print(ex)

    run(ex, scenario)


def test_a_fix_client_cancelling_its_newest_keeps_its_resting_order(ex: Harness) -> None:
    """The fix of the fault above, its other mode: 25001=2 (cancel the newest, REST's
    EXPIRE_TAKER) on the taking D ends it and leaves her resting ask; nothing prints."""

    async def scenario(api: RestApi, url: str) -> None:
        alice_api, bob_api, alice, bob, carol = await users(ex, url)
        await first_trade(bob, carol)
        await fix_order(alice, "A1", SELL, "0.10", (40, "2"), (44, "100.00"), (59, "1"))
        await fix_until(alice, acked("A1"))
        await fix_order(
            alice, "X1", BUY, "0.10", (40, "2"), (44, "100.00"), (59, "3"), (25001, "2")
        )
        await fix_until(alice, ended("X1"))
        status = await alice_api.call("GET", "/api/v1/openOrders", symbol="BTC-USD")
        for c in (alice_api, bob_api):
            await c.close()
        assert prints(ex)[1:] == []
        assert [o["clientOrderId"] for o in status] == ["A1"], status

    run(ex, scenario)
