"""Review 303: stop orders on every surface.

Reviewed: procs/core/book.py (``_new``, ``_take``, ``_trigger_stops``, snapshot/restore),
procs/core/order_checks.py (a stop's checks), procs/gateway/orders.py (the FIX trigger
report), procs/gateway/order_fields.py (``rested``, the StopPx refusal of a G),
procs/gateway/rest_orders.py (``_triggered``), procs/gateway/rest_params.py (STOP_LOSS,
STOP_LOSS_LIMIT); README "## The matcher" (Orders, Commands) and the FIX and REST sections
on stops.

Rig: the core ``Rig`` of ``tests/unit/readme_core_claims.py`` (both books, commands fed by
hand); the REST rig of ``tests/unit/gateway/rest_rig.py`` (real router and matcher cores
stepped in the gateway's loop, real HTTP, a simplefix FIX client) with the FIX helpers of
review 253.

Faults found: none demonstrated within the time box (see Leads).

Sound:
1. A waiting stop is in no ``BookLevel`` (market data); its ``Accepted`` is all it makes.
2. A trade exactly at a sell stop's price triggers it; a sweep through two stops triggers
   both, the second by the first one's own fills, in arrival order (both books).
3. A matcher restored from a snapshot taken while stops wait (a stop-limit DAY among them)
   makes byte-identical events for the next trade and the end of session (both books).
4. REST: a STOP_LOSS buy is NEW, ``isWorking`` false, listed in ``openOrders`` with its
   ``stopPrice`` and type; its quote is held (cap: the band above its stop, with the fee);
   on trigger the private stream says TRIGGERED then TRADE, GET order FILLED, the hold
   released. A FIX stop-market beside it triggers after it (arrival order) and is told
   Restated 150=D 378=99 "stop triggered" then its fill, OrdType 3 and StopPx echoed.
5. FIX: a G changing StopPx is refused (CxlRejReason 2, naming StopPx) before and after
   the trigger; a G of the triggered stop-limit's price is taken, StopPx kept; an H reports
   it; a triggered stop-market with nothing within its band is told 150=4 39=4.
6. A stop that has already triggered on arrival (REST and FIX) answers with its fills.

Leads not shown:
- A REST STOP_LOSS sent without ``timeInForce`` is filed and shown as IOC, while FIX
  restates a D without TimeInForce as Day; README says neither for REST stops, so an end
  of session treats the same order differently by the way it came. Not a stated claim.
- The private stream's ``executionType`` TRIGGERED is not among Binance's values and
  README does not name it (the OpenAPI document may); a client that switches on the
  documented values meets an unknown one.
- A triggered stop-market that the band keeps from trading is told FIX text "expired" only,
  without the band and price the REST arrival refusal names.
- Not reached in the time box: PostgreSQL rows of stops after the dbwriter catches up
  (README: the history keeps no trigger), a halt racing a trigger (no trade can happen in a
  halted book, so none was constructed), and a matcher process restart between a trigger
  and its fills (they are one command's events; the snapshot replay above stands in).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from procs.common.records import Accepted, BookLevel, Record, Trade, Triggered
from procs.common.types import AdminAction
from procs.core.book import Book
from procs.core.fast_book import FastBook
from procs.core.reference_book import ReferenceBook
from procs.gateway.rest import RestApi
from tests.unit.gateway.harness import Harness, utc
from tests.unit.gateway.rest_rig import client, fix_user, reports, rest_exchange, run
from tests.unit.gateway.test_review253_fix_rest_parity import _ack, _drain, _send_d, subscribed
from tests.unit.readme_core_claims import BUY, DAY, SELL, SPEC, STOP, STOP_LIMIT, Rig

ORDER = "/api/v1/order"
BOOKS = pytest.mark.parametrize("book_cls", [FastBook, ReferenceBook], ids=["fast", "ref"])


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


# -- the core ----------------------------------------------------------------------------------


@BOOKS
def test_sound_a_waiting_stop_is_not_in_market_data(book_cls: type[Book]) -> None:
    """Scenario: after a trade at 10.00, a sell stop-limit and a buy stop-market arrive, not
    reached. Expected: each makes its Accepted alone; the L2 view is unchanged."""
    rig = Rig(book_cls)
    rig.trade_at(1000)
    before = rig.book.levels()
    for side, kind, price, stop in ((SELL, STOP_LIMIT, 980, 990), (BUY, STOP, 0, 1010)):
        _, events = rig.new(side, price, 5, kind=kind, stop=stop, account=2)
        assert [type(e) for e in events] == [Accepted], events
        assert not [e for e in events if isinstance(e, BookLevel)]
    assert rig.book.levels() == before


@BOOKS
def test_sound_a_cascade_at_and_through_stops_in_arrival_order(book_cls: type[Book]) -> None:
    """Scenario: sell stops at 9.90 (first) and 9.80; bids 5 at 9.90, 5 at 9.80, 5 at 9.70; a
    sell of 1 at 9.90 trades exactly at the first stop. Expected: the first triggers, its
    fills reach 9.80 and trigger the second, which sweeps on to 9.70."""
    rig = Rig(book_cls)
    rig.trade_at(1000)
    first, _ = rig.new(SELL, 0, 5, kind=STOP, stop=990, account=2)
    second, _ = rig.new(SELL, 0, 5, kind=STOP, stop=980, account=3)
    for price, account in ((990, 4), (980, 5), (970, 6)):
        rig.new(BUY, price, 5, account=account)
    _, events = rig.new(SELL, 990, 1, account=7)
    told = [(type(e).__name__, getattr(e, "order_id", 0), getattr(e, "price", 0)) for e in events
            if isinstance(e, Trade | Triggered)]  # fmt: skip
    assert told == [
        ("Trade", 0, 990),
        ("Triggered", first, 0),
        ("Trade", 0, 990),
        ("Trade", 0, 980),
        ("Triggered", second, 0),
        ("Trade", 0, 980),
        ("Trade", 0, 970),
    ]


def _stops_then_trade(rig: Rig, restart: bool) -> list[Record]:
    rig.trade_at(1000)
    rig.new(SELL, 0, 5, kind=STOP, stop=990, account=2)
    rig.new(SELL, 985, 5, kind=STOP_LIMIT, stop=990, account=3, tif=DAY)
    rig.new(SELL, 0, 5, kind=STOP, stop=995, account=4)
    rig.new(BUY, 990, 3, account=5)
    rig.new(BUY, 985, 20, account=6)
    if restart:
        rig.book = type(rig.book).restore(SPEC, rig.book.snapshot())
    return rig.new(SELL, 990, 1, account=7)[1] + rig.admin(AdminAction.END_OF_SESSION)


@BOOKS
def test_sound_a_restored_matcher_triggers_as_the_one_that_ran_on(book_cls: type[Book]) -> None:
    """Scenario: three stops wait (a DAY stop-limit among them); the book is snapshot and
    restored (a matcher's restart), then a trade reaches all three and the session ends.
    Expected: the same events and state hash as the book that was never restarted."""
    ran, restarted = Rig(book_cls), Rig(book_cls)
    assert _stops_then_trade(ran, False) == _stops_then_trade(restarted, True)
    assert ran.book.state_hash() == restarted.book.state_hash()


# -- REST and FIX ------------------------------------------------------------------------------


def _locked_usd(account: dict[str, Any]) -> str:
    return next(str(b["locked"]) for b in account["balances"] if b["asset"] == "USD")


def test_sound_a_rest_and_a_fix_stop_market_buy_before_and_after_the_trigger(
    harness: Harness,
) -> None:
    """Scenario: after a trade at 100.00, ALICE places a STOP_LOSS buy (stop 101.00, 0.20) over
    REST and a stop-market buy (99=101.00, 0.10) over FIX; BOB offers 1.00 at 101.00 and
    ALICE's IOC buy trades there. Expected: the REST stop NEW, not working, in openOrders,
    its quote held; then TRIGGERED and TRADE on the stream, FILLED, the hold gone; the FIX
    stop triggers second, told Restated (150=D, 378=99) then filled, OrdType and StopPx
    echoed."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        fix = await fix_user(harness, "ALICE", "alice-pw")
        try:
            await bob.call("POST", ORDER, symbol="BTC-USD", side="SELL", type="LIMIT",
                           price="100.00", quantity="0.10")  # fmt: skip
            await alice.call("POST", ORDER, symbol="BTC-USD", side="BUY", type="LIMIT",
                             price="100.00", quantity="0.10")  # fmt: skip
            ws = await subscribed(alice)
            stop = await alice.call(
                "POST",
                ORDER,
                symbol="BTC-USD",
                side="BUY",
                type="STOP_LOSS",
                stopPrice="101.00",
                quantity="0.20",
            )
            oid = stop["orderId"]
            assert float(_locked_usd(await alice.call("GET", "/api/v1/account"))) > 20.2
            fix_oid = await _ack(fix, "FS1", (54, "1"), (40, "3"), (99, "101.00"), (38, "0.10"))
            view = await alice.call("GET", ORDER, symbol="BTC-USD", orderId=oid)
            assert (view["status"], view["isWorking"], view["type"], view["stopPrice"]) == (
                "NEW", False, "STOP_LOSS", "101.00",
            )  # fmt: skip
            listed = await alice.call("GET", "/api/v1/openOrders", symbol="BTC-USD")
            assert [o["orderId"] for o in listed] == [oid, fix_oid]
            await bob.call("POST", ORDER, symbol="BTC-USD", side="SELL", type="LIMIT",
                           price="101.00", quantity="1.00")  # fmt: skip
            await alice.call("POST", ORDER, symbol="BTC-USD", side="BUY", type="LIMIT",
                             price="101.00", quantity="0.10", timeInForce="IOC")  # fmt: skip
            told = await _drain(fix)
            assert [(m[150], m[39], m[40], m[99], m.get(58)) for m in told] == [
                (b"D", b"0", b"3", b"101.00", b"stop triggered"),
                (b"F", b"2", b"3", b"101.00", None),
            ]
            view = await alice.call("GET", ORDER, symbol="BTC-USD", orderId=oid)
            assert (view["status"], view["executedQty"]) == ("FILLED", "0.20")
            stream = [(r["orderId"], r["executionType"], r["status"]) for r in
                      await reports(ws, 0.5) if r["orderId"] in (oid, fix_oid)]  # fmt: skip
            assert stream == [
                (oid, "NEW", "NEW"), (fix_oid, "NEW", "NEW"),
                (oid, "TRIGGERED", "NEW"), (oid, "TRADE", "FILLED"),
                (fix_oid, "TRIGGERED", "NEW"), (fix_oid, "TRADE", "FILLED"),
            ]  # fmt: skip
            assert float(_locked_usd(await alice.call("GET", "/api/v1/account"))) == 0
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)


def test_sound_fix_replace_of_a_stop_keeps_its_stop_price(harness: Harness) -> None:
    """Scenario: BOB's FIX stop-limit sell (stop 99.00, limit 98.00) and stop-market sell
    (stop 99.00) wait; a G changing the StopPx is sent; a trade at 99.00 triggers both with
    0.01 bid at 99.00 and the rest at 80.00. Expected: the G refused naming StopPx; the
    stop-limit told triggered then partly filled; the stop-market triggered then cancelled
    (nothing within its band); a G changing StopPx refused again; one of the price taken,
    StopPx kept, and REST shows it working at its new price."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        bfix = await fix_user(harness, "BOB", "bob-pw")

        async def replace(cl: str, stop_px: str, price: str) -> list[dict[int, bytes]]:
            await bfix.send(
                "G",
                (11, cl),
                (41, "SL1"),
                (55, "BTC-USD"),
                (54, "2"),
                (60, utc()),
                (40, "4"),
                (99, stop_px),
                (44, price),
                (38, "0.10"),
                (59, "1"),
            )
            return await _drain(bfix)

        try:
            await bob.call("POST", ORDER, symbol="BTC-USD", side="SELL", type="LIMIT",
                           price="100.00", quantity="0.10")  # fmt: skip
            await alice.call("POST", ORDER, symbol="BTC-USD", side="BUY", type="LIMIT",
                             price="100.00", quantity="0.10")  # fmt: skip
            sl = await _ack(bfix, "SL1", (54, "2"), (40, "4"), (99, "99.00"), (44, "98.00"),
                            (38, "0.10"), (59, "1"))  # fmt: skip
            await _send_d(bfix, "SM1", (54, "2"), (40, "3"), (99, "99.00"), (38, "0.10"), (59, "1"))
            assert (await bfix.expect("8", 5.0)).get(150) == b"0"
            refused = await replace("SL1b", "98.00", "98.00")
            assert [(m[35], m[39], m[434], m[102]) for m in refused] == [(b"9", b"0", b"2", b"99")]
            assert b"StopPx" in refused[0][58]
            for price, qty in (("99.00", "0.06"), ("80.00", "1.00")):
                await alice.call("POST", ORDER, symbol="BTC-USD", side="BUY", type="LIMIT",
                                 price=price, quantity=qty)  # fmt: skip
            await bob.call("POST", ORDER, symbol="BTC-USD", side="SELL", type="LIMIT",
                           price="99.00", quantity="0.05", timeInForce="IOC")  # fmt: skip
            told = await _drain(bfix)
            assert [(m[11], m[150], m[39]) for m in told] == [
                (b"SL1", b"D", b"0"), (b"SL1", b"F", b"1"), (b"SM1", b"D", b"0"),
                (b"SM1", b"4", b"4"),
            ]  # fmt: skip
            refused = await replace("SL1c", "97.00", "98.00")
            assert [(m[35], m[39], m[102]) for m in refused] == [(b"9", b"1", b"99")]
            taken = await replace("SL1d", "99.00", "97.00")
            assert [(m[150], m[39], m[44], m[99]) for m in taken] == [
                (b"5", b"1", b"97.00", b"99.00")
            ]
            view = await bob.call("GET", ORDER, symbol="BTC-USD", orderId=sl)
            assert (view["price"], view["stopPrice"], view["isWorking"], view["status"]) == (
                "97.00", "99.00", True, "PARTIALLY_FILLED",
            )  # fmt: skip
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)


def test_sound_a_stop_reached_on_arrival_answers_with_its_fills(harness: Harness) -> None:
    """Scenario: after a trade at 100.00 with 0.90 offered there, ALICE sends a STOP_LOSS buy
    at stop 100.00 (exactly the last trade) and a STOP_LOSS_LIMIT buy at stop 99.00 limit
    100.00 for more than is left; then a FIX stop-market buy at 100.00 with 100.50 offered.
    Expected: the first answered FILLED with its fill; the second PARTIALLY_FILLED and
    working; the FIX one New, triggered, filled at 100.50."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        fix = await fix_user(harness, "ALICE", "alice-pw")
        try:
            await bob.call("POST", ORDER, symbol="BTC-USD", side="SELL", type="LIMIT",
                           price="100.00", quantity="1.00")  # fmt: skip
            await alice.call("POST", ORDER, symbol="BTC-USD", side="BUY", type="LIMIT",
                             price="100.00", quantity="0.10")  # fmt: skip
            market = await alice.call(
                "POST",
                ORDER,
                symbol="BTC-USD",
                side="BUY",
                type="STOP_LOSS",
                stopPrice="100.00",
                quantity="0.20",
            )
            assert (market["status"], [f["qty"] for f in market["fills"]]) == ("FILLED", ["0.20"])
            limit = await alice.call("POST", ORDER, symbol="BTC-USD", side="BUY",
                                     type="STOP_LOSS_LIMIT", stopPrice="99.00", price="100.00",
                                     quantity="0.90", timeInForce="GTC")  # fmt: skip
            assert (limit["status"], limit["executedQty"], limit["isWorking"]) == (
                "PARTIALLY_FILLED", "0.70", True,
            )  # fmt: skip
            await bob.call("POST", ORDER, symbol="BTC-USD", side="SELL", type="LIMIT",
                           price="100.50", quantity="1.00")  # fmt: skip
            await _send_d(fix, "F1", (54, "1"), (40, "3"), (99, "100.00"), (38, "0.10"))
            told = await _drain(fix)
            assert [(m[150], m[39], m.get(31)) for m in told] == [
                (b"0", b"0", None), (b"D", b"0", None), (b"F", b"2", b"100.50"),
            ]  # fmt: skip
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)
