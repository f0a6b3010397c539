"""A hostile review (the 30th) of the REST views of orders placed through another gateway:
the ends of orders the gateway does not follow, kept until the writer files them
(``ended_elsewhere.py``), and a followed order completed from its database row
(``LiveOrder.complete``, ``completing_rows.py``), as ``GET order``, ``openOrders``,
``allOrders``, ``DELETE openOrders`` and the private stream show them.

The rig is ``unfiled_rig.py``'s (real HTTP and WebSocket, real rings, the router and matcher
in process, a private PostgreSQL, the writer run by hand with ``file_all``); commands "from
another gateway" go through gateway 0's ring (the funder's), as in
``test_review29_rest_views.py``.

Under "Bugs" each test failed on the code as reviewed and passes with its fix; its docstring
says what was wrong, why, and the fix. Under "Checked", what was found to hold.

BTC-USD: prices 2 decimals, sizes 2. ALICE (601) holds dollars, BOB (602) bitcoin.
"""

from __future__ import annotations

import itertools
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from procs.common.records import (
    Accepted,
    CancelOrder,
    OrderDone,
    Record,
    Replaced,
    Trade,
    Triggered,
)
from procs.common.types import DoneReason, OrdType, Side, TimeInForce
from procs.gateway.ended_elsewhere import EndedElsewhere
from procs.gateway.history import order_json
from procs.gateway.instruments import Instruments
from procs.gateway.recent_elsewhere import RecentElsewhere
from procs.gateway.rest import RestApi
from procs.gateway.rest_order_state import from_done
from procs.gateway.rest_orders import RestOrders
from procs.gateway.unfiled_orders import UnfiledOrders
from tests.unit.gateway import unfiled_rig
from tests.unit.gateway.harness import FUNDER, Harness
from tests.unit.gateway.harness import config as harness_config
from tests.unit.gateway.rest_rig import ALICE, BOB, run, stream_messages
from tests.unit.gateway.test_review29_rest_views import TICKS, _elsewhere, _publish, _snapshot

harness = unfiled_rig.harness
PRICE, SELL = unfiled_rig.PRICE, unfiled_rig.SELL
ORDER, OPEN, ALL = "/api/v1/order", "/api/v1/openOrders", "/api/v1/allOrders"


def _cancel_elsewhere(ref: int, order_id: int, account: int = ALICE) -> CancelOrder:
    return CancelOrder(0, time.time_ns(), FUNDER, 1, ref, account, 1, order_id)


def _held_open(snapshot: dict[str, Any], messages: list[dict[str, Any]]) -> list[int]:
    """The open orders a client holds that applies the snapshot and then each event."""
    held = {o["orderId"] for o in snapshot["openOrders"]}
    for m in messages:
        if m["event"] == "executionReport":
            data = m["data"]
            if data["status"] in ("NEW", "PARTIALLY_FILLED"):
                held.add(data["orderId"])
            else:
                held.discard(data["orderId"])
    return sorted(held)


def _fields(*views: dict[str, Any]) -> list[dict[str, Any]]:
    """What every view of an order shows alike (the stream's reports too)."""
    keys = ("orderId", "status", "side", "price", "origQty", "executedQty", "time")
    return [{k: v[k] for k in keys} for v in views]


def _row(order_id: int, price: int, updated_seq: int, status: int = 1) -> tuple[Any, ...]:
    """ALICE's BTC-USD limit buy of 0.10 as ``History.orders`` returns its row."""
    return (
        order_id, ALICE, 1, Side.BUY, OrdType.LIMIT, TimeInForce.GTC, price, 0, 10, 10, 0,
        status, 0, 1_000, 1_000 + updated_seq, 0, updated_seq, 0, "",
    )  # fmt: skip


class _Followed:
    def __init__(self, unfiled: UnfiledOrders) -> None:
        self.unfiled = unfiled

    def known(self, order_id: int) -> Any:
        return self.unfiled.ended.get(order_id)

    def open_orders(self, account: int, symbol: int | None) -> list[Any]:
        return []


# -- Bugs ---------------------------------------------------------------------------------------


def test_an_order_ended_just_before_its_account_used_the_api_stays_open_in_the_stream(
    harness: Harness,
) -> None:
    """Was: ALICE's bid, placed through another gateway, is filed open; it is cancelled
    there, and ALICE, who has not used the API for a while (or ever), opens her private
    stream before the writer files the cancel. The snapshot lists the bid NEW; no event
    ever ends it, so a client applying the snapshot and the events holds it open for as
    long as the stream lives, while ``openOrders`` (once filed) lists nothing.
    Why: ``RestOrders._done`` kept the end of an unfollowed order only for an account
    already of interest (``done.account in self.interest``); the snapshot's rows were
    overlaid with nothing. ``ended_elsewhere.py`` fixed this for ends after the account's
    interest began; the writer's lag before it is the same window. A trading bot that
    cancels over FIX and a screen that then opens the stream hit it.
    Fix: the recent ends of accounts not of interest are kept as records, and an account
    whose interest begins (``touch``) keeps its own as ends (since the fix below, among all
    its recent events: ``RestOrders._follow_recent``). A side effect: an amend that is the
    account's first request, of an order ended so (its row not filed yet), is refused here
    as ``orderId=N is FILLED`` (or CANCELED), as for an end kept since its interest, not by
    the matcher as "unknown order" (``test_review11_amend_cancel_all`` allows both)."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        await _publish(_elsewhere(1), h=h)
        await unfiled_rig.file_all(h)
        await _publish(_cancel_elsewhere(2, 1), h=h)  # ALICE not of interest: not followed
        async with unfiled_rig.users(url) as (alice, _bob):
            ws = await alice.stream()
            snapshot = await _snapshot(ws)
            messages = await stream_messages(ws, 0.5)
            await unfiled_rig.file_all(h)
            messages += await stream_messages(ws, 0.5)
            await ws.close()
            listed = await alice.call("GET", OPEN, symbol="BTC-USD")
            held = _held_open(snapshot, messages)
            assert held == [o["orderId"] for o in listed] == [], (snapshot, messages, listed)

    run(h, scenario)


def test_the_recent_ends_an_interest_takes_go_before_the_ends_kept(tmp_path: Path) -> None:
    """The fix above, bounded: the ends of accounts not of interest are kept as records, the
    last ``limit`` of them (``RecentElsewhere``); an account whose interest begins takes its
    own, oldest first, before every end kept, so that the bound (and the checkpoint) lets
    them go first and a busy account's mostly filed ends never push out another account's
    unfiled one."""
    sym = harness_config("review30", tmp_path).symbols[0]
    ended, recent = EndedElsewhere(limit=3), RecentElsewhere(limit=4)

    def done(order_id: int, seq: int, account: int = ALICE) -> OrderDone:
        return OrderDone(
            seq, 1_700_000_000_000_000_000 + seq, 0, 1, 7, account, 1, order_id,
            reason=DoneReason.CANCELLED, filled_qty=0, leaves_qty=10,
        )  # fmt: skip

    for oid in range(1, 7):  # ALICE's 1, 3, 5 and BOB's 2, 4, 6; the first two replaced
        recent.passed(done(oid, 10 + oid, ALICE if oid % 2 else BOB))
    taken = [d for d in recent.take(ALICE) if isinstance(d, OrderDone)]
    assert [d.order_id for d in taken] == [3, 5] and len(recent) == 2  # BOB's 4 and 6 stay
    assert recent.take(ALICE) == []  # taken once: an interest after a lapse takes the news
    ended.add(from_done(done(9, 30, BOB), sym))  # BOB's, kept while he is of interest
    for d in reversed(taken):
        ended.add(from_done(d, sym), older=True)
    assert [ended.get(oid) is not None for oid in (3, 5, 9)] == [True, True, True]
    ended.add(from_done(done(10, 31, BOB), sym))  # past the bound: ALICE's oldest goes
    assert [ended.get(oid) is not None for oid in (3, 5, 9, 10)] == [False, True, True, True]
    ended.forget_filed(20)
    assert len(ended) == 2 and ended.get(5) is None


def test_get_order_fails_while_the_database_is_down_for_an_order_followed_from_elsewhere(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was: ALICE uses the API; a bid of hers placed through another gateway is followed
    from its ``Accepted``. With the history database down, ``GET order`` of it answers 503
    (-1001 "the history database did not answer"), though the gateway follows the order
    and answered it from its live view before review 29's change; with the database
    hanging, it waits for the pool's 5 s first. Every GET of such an order asks the
    database until a row has completed it.
    Why: ``RestApi.query_order`` awaited ``self.db(history.order(...))`` for a ``partial``
    view, which raises ``ApiError`` 503 on any database error.
    Fix: the row is asked for at most ``COMPLETING_WAIT_S``; a database that fails or is
    slow leaves the live view as the answer (as before the writer files the order)."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, _bob):
            await alice.call("GET", "/api/v1/account")  # of interest from now on
            await _publish(_elsewhere(1), h=h)
            assert api.history is not None

            async def down(*_args: Any) -> Any:
                raise OSError("connection refused")

            monkeypatch.setattr(api.history, "order", down)
            status, body = await alice.request("GET", ORDER, symbol="BTC-USD", orderId=1)
            assert status == 200, body
            assert (body["orderId"], body["status"], body["side"]) == (1, "NEW", "BUY"), body

    run(h, scenario)


def test_a_stop_market_buy_placed_elsewhere_shows_the_routers_cap_as_its_price(
    harness: Harness,
) -> None:
    """Was: ALICE uses the API; a stop-market buy of hers (stop 40000.00, no price) is placed
    through another gateway and filed. ``openOrders``, ``allOrders`` and ``GET order`` show
    its price as 42000.00, the cap the router gave it, where its row and the same order
    placed through the API (or over FIX) show 0.00.
    Why: the order is followed from its ``Accepted``, whose price is the router's cap
    (``accounts.py``, ``OrderFlag.CAPPED``: "the history shows 0 for it as the live views
    do"); ``LiveOrder.complete`` filled the type, tif and stop price in from the row but kept
    the event's price, and the live view wins over the row.
    Fix: ``complete`` takes the row's price (0) when the row's flags say CAPPED."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, bob):
            await bob.call("POST", ORDER, **SELL, price=PRICE, quantity="0.10")
            # a last price, the cap's reference
            await alice.call("POST", ORDER, **{**SELL, "side": "BUY"}, price=PRICE, quantity="0.05")
            stop = _elsewhere(1, ord_type=OrdType.STOP, price=0, stop=4_000_000)
            await _publish(stop, h=h)
            await unfiled_rig.file_all(h)
            assert api.history is not None
            (row,) = await api.history.orders(ALICE, 1, open_only=True)
            oid = row[0]
            filed = order_json(row, h.cfg.symbols[0])
            alone = await alice.call("GET", ORDER, symbol="BTC-USD", orderId=oid)
            (listed,) = await alice.call("GET", OPEN, symbol="BTC-USD")
            history = await alice.call("GET", ALL, symbol="BTC-USD")
            (shown,) = [o for o in history if o["orderId"] == oid]
            prices = [o["price"] for o in (filed, alone, listed, shown)]
            assert prices == ["0.00"] * 4, (filed, alone, listed, shown)
            assert (listed["type"], listed["stopPrice"]) == ("STOP_LOSS", "40000.00"), listed

    run(h, scenario)


def test_an_end_completed_from_an_older_row_keeps_its_price_over_a_newer_row(
    tmp_path: Path,
) -> None:
    """Was: an order not followed here (ALICE's bid at 30000.00, filed at seq 40) is
    repriced to 31000.00 through another gateway (seq 45) and cancelled (seq 50); the
    gateway keeps the end. ``allOrders`` read while the row is at seq 40 shows the end at
    30000.00, the best it knows; once the writer has filed the replace (row at seq 45) but
    not the cancel, it still shows 30000.00 (so does ``GET order``), the database 31000.00.
    Why: the first row completed the end (side, price, time) in place, and ``complete``
    then returns at once for a view no longer ``partial``: an older row's price wins over
    a newer one for as long as the end is kept (until the writer's checkpoint).
    Fix: a completed end remembers the ``updated_seq`` of the row its price came from
    (``LiveOrder.row_seq``); a newer row gives it its price."""
    sym = harness_config("review30", tmp_path).symbols[0]
    unfiled = UnfiledOrders()
    done = OrderDone(
        50, 1_700_000_000_000_000_000, 0, 1, 7, ALICE, 1, 1,
        reason=DoneReason.CANCELLED, filled_qty=0, leaves_qty=10,
    )  # fmt: skip
    unfiled.ended.add(from_done(done, sym))
    followed = _Followed(unfiled)

    def price(row: tuple[Any, ...]) -> str:
        (shown,) = unfiled.merged(
            [row], ALICE, sym, followed, from_id=None, start_ms=None, end_ms=None, limit=10
        )
        assert shown["status"] == "CANCELED", shown
        return str(shown["price"])

    assert price(_row(1, TICKS, 40)) == "30000.00"
    assert price(_row(1, 3_100_000, 45)) == "31000.00"
    assert price(_row(1, TICKS, 40)) == "31000.00"  # an older row read late changes nothing


def test_a_cancel_all_lists_an_order_that_had_ended_elsewhere_before_it(
    harness: Harness,
) -> None:
    """Was: ALICE uses the API; her bid placed through another gateway (filed open) is
    cancelled there. ``openOrders`` then lists nothing (the kept end hides the stale row),
    but ``DELETE openOrders`` right after answers ``[bid CANCELED]``, as if this cancel-all
    had found it open and cancelled it.
    Why: ``MassCancelRoute`` lists every row the database shows open (``listed.setdefault``)
    and shows each as ``core.known`` has it: since review 29 that finds the kept end, so the
    row is shown ended, not left out as ``openOrders`` leaves it out.
    Fix: a row whose end was kept before the request (not among the ends collected while it
    runs, ``OrderEnds.seen``) is not listed."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        await _publish(_elsewhere(1), h=h)
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, _bob):
            await alice.call("GET", "/api/v1/account")  # of interest from now on
            await _publish(_cancel_elsewhere(2, 1), h=h)
            listed = await alice.call("GET", OPEN, symbol="BTC-USD")
            cancelled = await alice.call("DELETE", OPEN, symbol="BTC-USD")
            assert listed == cancelled == [], (listed, cancelled)

    run(h, scenario)


def test_an_order_placed_just_before_its_account_used_the_api_is_missing_from_the_stream(
    harness: Harness,
) -> None:
    """Found (review 30), fixed: ALICE's bid is placed through another gateway; before the
    writer files it she opens her stream (her interest begins). The snapshot lacked the bid
    (no row yet, not followed: its ``Accepted`` came before her interest), and once filed,
    BOB's IOC filled 0.04 of it: no executionReport came (``RestOrders._fill`` followed an
    unfollowed order only from a row a snapshot or ``openOrders`` remembered). A client
    holding the snapshot and the events lacked an open order that ``openOrders`` listed;
    ``GET order``, ``allOrders`` and ``myTrades`` lacked it until the writer filed it.
    Now every event the core drops because its account is not of interest (``Accepted``,
    ``Trade``, ``Replaced``, ``Triggered``, ``OrderDone``) is kept, the last
    ``RECENT_EVENTS`` (``recent_elsewhere.py``: a ``deque.append`` of the record decoded
    already), and an account whose interest begins follows the orders accepted among them
    as if it had been of interest then (``RestOrders._follow_recent``): the snapshot lists
    the bid NEW, its fill is reported, and ``openOrders``, ``GET order``, ``allOrders`` and
    the report agree (the report's type is empty: no row had completed the order yet, as
    for any order placed elsewhere, ``completing_rows.py``). The end of an order placed
    elsewhere and followed is kept as an end too (``ended_elsewhere.py``): ``DELETE
    openOrders`` leaves its row out, not filed yet, as ``test_a_cancel_all_...`` asks of an
    order this fix follows now (the same fault had been there for any such order)."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        await _publish(_elsewhere(1, price=TICKS), h=h)  # ALICE not of interest
        async with unfiled_rig.users(url) as (alice, bob):
            ws = await alice.stream()
            snapshot = await _snapshot(ws)
            await unfiled_rig.file_all(h)
            await bob.call("POST", ORDER, **SELL, price=PRICE, quantity="0.04", timeInForce="IOC")
            messages = await stream_messages(ws, 0.5)
            await ws.close()
            listed = await alice.call("GET", OPEN, symbol="BTC-USD")
            held = _held_open(snapshot, messages)
            assert held == [o["orderId"] for o in listed] == [1], (snapshot, messages, listed)
            (first,) = snapshot["openOrders"]
            assert (first["status"], first["executedQty"]) == ("NEW", "0.00"), first
            (report,) = [m["data"] for m in messages if m["event"] == "executionReport"]
            shown = await alice.call("GET", ORDER, symbol="BTC-USD", orderId=1)
            (every,) = await alice.call("GET", ALL, symbol="BTC-USD")
            views = _fields(report, listed[0], shown, every)
            assert views[0] == _fields(first)[0] | {
                "status": "PARTIALLY_FILLED",
                "executedQty": "0.04",
            }
            assert all(v == views[0] for v in views) and listed[0] == shown == every, views

    run(h, scenario)


def test_an_order_placed_and_filled_just_before_its_account_used_the_api_reads_the_same(
    harness: Harness,
) -> None:
    """The fix above, the order filled before the interest began and ended after, the writer
    filing nothing: ALICE's bid placed elsewhere takes 0.04 of BOB's IOC before she opens
    her stream. The snapshot shows it PARTIALLY_FILLED 0.04, her ``myTrades`` the fill (and
    BOB's his, once: his order is followed here). Cancelled elsewhere, it is reported
    CANCELED; ``openOrders`` lists nothing, ``GET order`` and ``allOrders`` show it CANCELED
    with 0.04 executed, as they do once the writer has filed it all."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, bob):
            await _publish(_elsewhere(1, price=TICKS), h=h)  # ALICE not of interest
            await bob.call("POST", ORDER, **SELL, price=PRICE, quantity="0.04", timeInForce="IOC")
            ws = await alice.stream()
            (first,) = (await _snapshot(ws))["openOrders"]
            assert (first["status"], first["executedQty"]) == ("PARTIALLY_FILLED", "0.04"), first
            for user, maker in ((alice, True), (bob, False)):
                trades = await user.call("GET", "/api/v1/myTrades", symbol="BTC-USD")
                assert [(t["qty"], t["isMaker"]) for t in trades] == [("0.04", maker)], trades
            await _publish(_cancel_elsewhere(2, 1), h=h)
            messages = await stream_messages(ws, 0.5)
            await ws.close()
            (report,) = [m["data"] for m in messages if m["event"] == "executionReport"]
            assert await alice.call("GET", OPEN, symbol="BTC-USD") == []

            async def views() -> list[dict[str, Any]]:
                shown = await alice.call("GET", ORDER, symbol="BTC-USD", orderId=1)
                (every,) = await alice.call("GET", ALL, symbol="BTC-USD")
                return _fields(report, shown, every)

            before = await views()
            assert (before[0]["status"], before[0]["executedQty"]) == ("CANCELED", "0.04")
            assert all(v == before[0] for v in before), before
            await unfiled_rig.file_all(h)
            api.core.unfiled.forget_filed(2**62)
            assert await views() == before

    run(h, scenario)


def test_the_recent_events_kept_are_bounded_and_followed_as_if_of_interest(
    tmp_path: Path,
) -> None:
    """The fix above, sans I/O and bounded. Two cores see the same events of ALICE's orders
    placed elsewhere (accepted, traded with BOB, replaced, triggered, cancelled), BOB of
    interest in both, ALICE in one from the start, in the other only after them: the second
    shows her orders as the first does (``openOrders``, ``GET order``, ``allOrders``,
    ``myTrades``), BOB's side of the trade counted once. 10,000 more orders of an account
    not of interest leave ``limit`` events kept, nothing else grown and the memory traced
    flat; her interest then follows her orders accepted in the window; one that begins
    again after a lapse takes only the events since (an ``Accepted`` taken twice would
    follow an order without the fills of the first interest)."""
    cfg = harness_config("review30", tmp_path)
    sym, carol, limit = cfg.symbols[0], 603, 300

    def core() -> RestOrders:
        refs = itertools.count(100)
        return RestOrders(
            1, Instruments([sym]), cfg.assets, [], lambda: next(refs), recent_events=limit
        )

    def head(
        seq: int, oid: int, account: int = ALICE
    ) -> tuple[int, int, int, int, int, int, int, int]:
        return (seq, 1_700_000_000_000_000_000 + seq * 1_000_000, 0, 1, seq, account, 1, oid)

    def trade(seq: int, maker: int, taker: int, qty: int, accounts: tuple[int, int]) -> Trade:
        return Trade(seq, head(seq, 0)[1], seq, 1, TICKS, qty, Side.SELL, maker, accounts[0], 0,
                     10 - qty, taker, accounts[1], 0, 0)  # fmt: skip

    events: list[Record] = [
        Accepted(*head(1, 1), Side.BUY, TICKS, 10), Accepted(*head(2, 2), Side.BUY, TICKS, 10),
        Accepted(*head(3, 3, BOB), Side.SELL, TICKS, 3), trade(3, 1, 3, 3, (ALICE, BOB)),
        OrderDone(*head(3, 3, BOB), DoneReason.FILLED, 3, 0), Replaced(*head(4, 2), 2_950_000, 6),
        Accepted(*head(5, 4), Side.BUY, 3_100_000, 5), Triggered(*head(6, 4), 3_100_000, 3_100_000),
        OrderDone(*head(7, 2), DoneReason.CANCELLED, 0, 6),
    ]  # fmt: skip
    always, late = core(), core()
    always.touch(ALICE, 1, now_s=0.0)
    for c in (always, late):
        c.touch(BOB, 2, now_s=0.0)
        for event in events:
            c.process(event)
    assert len(late.recent) == len(events) - 2  # all but BOB's order's Accepted and end
    late.touch(ALICE, 1, now_s=1.0)
    assert len(late.recent) == 1  # the trade stays for BOB's side (followed: never taken)

    def views(c: RestOrders, account: int) -> list[Any]:
        every = dict(from_id=None, start_ms=None, end_ms=None, limit=100)
        return [
            [o.json() for o in c.open_orders(account, None)],
            [(o.json() if (o := c.order(account, oid)) else None) for oid in range(1, 5)],
            c.unfiled.merged([], account, sym, c, **every),  # type: ignore[arg-type]
            c.trades.merged([], account, sym, **every),  # type: ignore[arg-type]
        ]

    assert views(late, ALICE) == views(always, ALICE) and views(late, BOB) == views(always, BOB)
    shown = views(late, ALICE)
    got = [(o["orderId"], o["status"], o["executedQty"], o["isWorking"]) for o in shown[0]]
    assert got == [(1, "PARTIALLY_FILLED", "0.03", True), (4, "NEW", "0.00", True)], got
    assert (shown[1][1]["status"], shown[1][1]["price"]) == ("CANCELED", "29500.00")

    def burst(start: int, n: int) -> int:  # CAROL's orders, each accepted, traded, ended
        for seq in range(start, start + 3 * n, 3):
            late.process(Accepted(*head(seq, 1_000 + seq, carol), Side.BUY, TICKS, 10))
            late.process(trade(seq + 1, 1_000 + seq, 0, 4, (carol, carol + 1)))
            late.process(OrderDone(*head(seq + 2, 1_000 + seq, carol), DoneReason.CANCELLED, 4, 6))
        return start + 3 * n

    def sizes() -> tuple[int, ...]:
        kept = (late.live, late.done, late.unfiled, late.trades, late.unfiled.ended)
        return tuple(len(k) for k in kept)

    assert sizes() == (2, 2, 4, 2, 2)  # ALICE's 1 and 4 open; her 2 and BOB's 3 ended
    tracemalloc.start()  # before the window fills: its records traced (~70 kB)
    try:
        seq = burst(100, limit)
        before = tracemalloc.get_traced_memory()[0]
        seq = burst(seq, 10_000)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(late.recent) == limit and sizes() == (2, 2, 4, 2, 2)
    assert grown < 16_000, f"{grown} bytes kept after 30,000 events (bound: {limit} events)"
    late.touch(carol, 3, now_s=2.0)  # her last 100 orders' Accepted, trade and end
    n = limit // 3  # each ended, kept as an end too; the trades stay for their takers' side
    assert sizes() == (2, 2 + n, 4 + n, 2 + n, 2 + n) and len(late.recent) == n
    late.tick(now_s=10_000.0)  # every interest lapses: the accounts' orders let go
    late.process(OrderDone(*head(seq, 1_100, carol), DoneReason.CANCELLED, 4, 6))
    late.touch(carol, 3, now_s=10_001.0)  # her one end since, alone, and nothing else
    assert sizes() == (0, 0, 4 + n, 2 + n, 3 + n) and late.known(1_100) is not None


# -- Checked ------------------------------------------------------------------------------------


def test_checked_an_end_kept_reads_the_same_before_and_after_the_writer_files_it(
    harness: Harness,
) -> None:
    """Checked: ALICE's bid placed elsewhere (filed open) trades 0.04 with BOB's IOC and is
    cancelled elsewhere, ALICE of interest, unfollowed. Before the writer files the fill and
    the cancel, ``GET order`` and ``allOrders`` show it as the database shows it after:
    CANCELED, 0.04 executed, its side, type, price, placing time and the cancel's time;
    ``openOrders`` lists nothing; all but ``cummulativeQuoteQty``, which the database sums
    from its trades (review 332) and the end seen alone does not know. (Its ``Accepted``
    older than the recent events kept: followed from it, the order would read so too,
    test_an_order_placed_and_filled_...)"""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        api.core.recent = RecentElsewhere(0)  # the bid's Accepted left the window
        await _publish(_elsewhere(1, price=TICKS), h=h)
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, bob):
            await alice.call("GET", "/api/v1/account")
            await bob.call("POST", ORDER, **SELL, price=PRICE, quantity="0.04", timeInForce="IOC")
            await _publish(_cancel_elsewhere(2, 1), h=h)
            before = [
                await alice.call("GET", ORDER, symbol="BTC-USD", orderId=1),
                await alice.call("GET", ALL, symbol="BTC-USD"),
            ]
            assert await alice.call("GET", OPEN, symbol="BTC-USD") == []
            await unfiled_rig.file_all(h)
            api.core.unfiled.forget_filed(2**62)  # the database's answer alone
            after = [
                await alice.call("GET", ORDER, symbol="BTC-USD", orderId=1),
                await alice.call("GET", ALL, symbol="BTC-USD"),
            ]
            # but cummulativeQuoteQty (review 332): the database sums it from its trades; the
            # end seen alone, its fill not in its row yet, does not know it (null)
            quote = [v["cummulativeQuoteQty"] for v in (before[0], *before[1], after[0])]
            assert quote == [None, None, "1200.0000"], quote
            for view in (*before, *after):
                for o in view if isinstance(view, list) else [view]:
                    o.pop("cummulativeQuoteQty")
            assert before == after, (before, after)
            shown = after[0]
            got = (shown["status"], shown["executedQty"], shown["side"], shown["type"])
            assert got == ("CANCELED", "0.04", "BUY", "LIMIT"), shown

    run(h, scenario)


def test_checked_another_accounts_kept_end_is_never_shown(harness: Harness) -> None:
    """Checked: BOB's ask placed elsewhere (filed open) is cancelled elsewhere while BOB uses
    the API, so the gateway keeps its end. ALICE asking for that order id gets -2013 from
    ``GET order`` (as for any order not hers), and her ``allOrders`` and ``openOrders`` do
    not list it; BOB's ``GET order`` shows it CANCELED."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        ask = _elsewhere(1, BOB, side=Side.SELL, price=4_000_000)
        await _publish(ask, h=h)
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, bob):
            await bob.call("GET", "/api/v1/account")
            await _publish(_cancel_elsewhere(2, 1, BOB), h=h)
            assert api.core.unfiled.ended.get(1) is not None
            status, body = await alice.request("GET", ORDER, symbol="BTC-USD", orderId=1)
            assert status == 400 and body["code"] == -2013, (status, body)
            assert await alice.call("GET", ALL, symbol="BTC-USD") == []
            assert await alice.call("GET", OPEN, symbol="BTC-USD") == []
            mine = await bob.call("GET", ORDER, symbol="BTC-USD", orderId=1)
            assert (mine["status"], mine["side"]) == ("CANCELED", "SELL"), mine

    run(h, scenario)


def test_checked_a_stop_completed_by_get_order_keeps_its_type_in_later_stream_events(
    harness: Harness,
) -> None:
    """Checked: ALICE streams; a stop-limit buy of hers is placed elsewhere (followed from its
    ``Accepted``: NEW report with no type) and filed; ``GET order`` completes it from the
    row, and its CANCELED report (cancelled elsewhere) carries STOP_LOSS_LIMIT, GTC and the
    stop price: what a row completes stays on the order."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, _bob):
            ws = await alice.stream()
            await _snapshot(ws)
            stop = _elsewhere(1, ord_type=OrdType.STOP_LIMIT, price=4_000_000, stop=4_000_000)
            await _publish(stop, h=h)
            await unfiled_rig.file_all(h)
            shown = await alice.call("GET", ORDER, symbol="BTC-USD", orderId=1)
            assert shown["type"] == "STOP_LOSS_LIMIT", shown
            await _publish(_cancel_elsewhere(2, 1), h=h)
            messages = await stream_messages(ws, 0.5)
            reports = [m["data"] for m in messages if m["event"] == "executionReport"]
            await ws.close()
            got = [
                (r["executionType"], r["type"], r["timeInForce"], r["stopPrice"]) for r in reports
            ]
            assert got[-1] == ("CANCELED", "STOP_LOSS_LIMIT", "GTC", "40000.00"), reports

    run(h, scenario)
