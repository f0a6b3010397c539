"""Review 238 (a helper, hostile): self-trade prevention (STP) per account, in its three modes
(CANCEL_NEWEST, CANCEL_OLDEST, CANCEL_BOTH; the REST API's EXPIRE_TAKER, EXPIRE_MAKER,
EXPIRE_BOTH), from the books through the router's holds to what a REST client is told.

Reviewed: ``procs/core/book.py`` (``_take``, ``_fillable``, ``_enter``, ``_replace``,
``_trigger_stops``, ``_report``), ``fast_book.py`` (``_fast_new``, ``_fast_replace``,
``_sweep``, ``_match``, ``_self_trade``, ``_crossing_levels``), ``book_side.py``
(``Level.rests``, ``CountedOrders``), ``reference_book.py`` (``_match``,
``_crossing_levels``), ``order_checks.py`` (``_check_order``, ``_protection``,
``_dead_on_arrival``), ``settlement.py`` (``_done``, ``_end``, ``_replaced``),
``procs/gateway/rest_params.py`` (``STP``), ``rest_orders.py`` (``_done``, ``_replaced``,
``end_of_batch``), ``rest_order_state.py`` (``DONE_STATUS``), ``rest_amend.py``; against
README's "Orders" (lines 425-441), "Events" and the REST section (``EXPIRED_IN_MATCH``,
``TRADE_PREVENTION``). Earlier reviews' STP tests (9, 28, 32, 36, 106, 115, 186, 214, 227,
``test_iceberg_stp.py``, ``test_fok_walk.py``) are not repeated.

Faults found: none reproduced. Each question of the brief was put to the code with the
tests below (both books on every command, with equal events, bytes, state hashes and valid
internal state after each one; the router's holds checked against the books after every
step), and each came out as README says.

Found sound (plain tests):

- a stop triggered by another account's trade into its own account's resting order: each
  mode as for a new taker, the reports under the stop's own routing header
  (``test_a_stop_triggered_into_its_own_bid_...``);
- a market order meeting its own level between others' levels: CANCEL_NEWEST ends it there
  with its fills kept, CANCEL_OLDEST removes the own level and sweeps on to the band,
  CANCEL_BOTH both (``test_a_market_order_meets_its_own_level_...``);
- FOK under every mode, against icebergs (own and others') spread over levels: a seeded
  property that a FOK fills exactly when the same order sent IOC fills completely (with the
  same events), and is otherwise killed with the book unchanged, no own order cancelled
  (``test_a_fok_fills_exactly_when_the_ioc_would_...``; README 438-441; while reviewing,
  a ``_fillable`` patched to ignore the mode failed it at its first case);
- a replace that moves an order across its own resting orders, on the fast book's inline
  path (a plain order) and on the general path (an iceberg), in each mode
  (``test_a_replace_across_its_own_orders_...``);
- the router's holds through a session of STP ends (an own iceberg cancelled whole by a
  CANCEL_BOTH taker after a partial fill, a replace across an own ask under CANCEL_OLDEST, a
  market buy ended by CANCEL_NEWEST): after every step each account's reserved balances are
  exactly what its resting orders need, and the totals are the deposits; a replay of the
  journal on fresh matchers gives the same events and state (``test_holds_...``);
- REST: an EXPIRE_TAKER order ended after a partial fill answers ``EXPIRED_IN_MATCH`` with
  its fill and ``executedQty``; an amend across an own ask under EXPIRE_BOTH answers
  ``EXPIRED_IN_MATCH``; the private stream reports ``TRADE_PREVENTION`` with status
  ``EXPIRED_IN_MATCH`` for the taker and the maker; the router frees every hold
  (``test_rest_...``).

Noted, not a fault by README's letter: a market order, or a stop-market arriving reached,
is judged (``NO_LIQUIDITY``, its band, ``_dead_on_arrival``) against the best opposite
price even when that is the sender's own order which its STP mode will cancel rather than
trade with; README places the band at "the best opposite price", and such an order ends as
STP says (SELF_TRADE, or EXPIRED after cancelling its own orders).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from procs.common.records import (
    Accepted,
    BookLevel,
    CancelOrder,
    NewOrder,
    OrderDone,
    Record,
    Replaced,
    ReplaceOrder,
    SymbolRules,
    Trade,
    Triggered,
)
from procs.common.types import DoneReason, StpMode
from procs.core.engine import Matcher
from procs.core.fast_book import FastBook
from procs.core.reference_book import ReferenceBook
from procs.core.symbols import SymbolSpec, symbol_specs
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import client, rest_exchange, run
from tests.unit.matcher.sweep_rig import BUY, FOK, IOC, LIMIT, MARKET, SELL, STOP, Feed
from tests.unit.matcher.sweep_rig import run as both_books
from tests.unit.router.core_rig import (
    BTC,
    BTCUSD,
    CODEC,
    USD,
    Exchange,
    exchange_config,
    funded,
    new_order,
)

NEWEST, OLDEST, BOTH = StpMode.CANCEL_NEWEST, StpMode.CANCEL_OLDEST, StpMode.CANCEL_BOTH
FILLED, EXPIRED, SELF = DoneReason.FILLED, DoneReason.EXPIRED, DoneReason.SELF_TRADE
SPEC = SymbolSpec(symbol=5, max_qty=1000, band_bps=300, iceberg_parts=6)
MODES = [NEWEST, OLDEST, BOTH]


def _trades(events: list[Record]) -> list[tuple[int, int, int, int]]:
    """(maker, taker, price, qty) of each trade."""
    return [
        (e.maker_order_id, e.taker_order_id, e.price, e.qty) for e in events if type(e) is Trade
    ]


def _dones(events: list[Record]) -> list[tuple[int, DoneReason, int, int]]:
    """(order, reason, filled, left) of each end."""
    return [
        (e.order_id, e.reason, e.filled_qty, e.leaves_qty) for e in events if type(e) is OrderDone
    ]


# -- the books ---------------------------------------------------------------------------------


@pytest.mark.parametrize("stp", MODES)
def test_a_stop_triggered_into_its_own_bid_applies_its_mode_under_its_own_header(
    stp: StpMode,
) -> None:
    """Scenario: account 1 bids 5 at 99, account 3 bids 5 at 98; account 1's sell stop-market
    of 4 stopped at 100 under ``stp`` waits; account 2 sells 1 at 100 to account 3, which
    triggers it (its band: 97). Expected: CANCEL_NEWEST: the stop ends SELF_TRADE with 4
    left, both bids stay; CANCEL_OLDEST: the own bid at 99 ends SELF_TRADE (5 left) and the
    stop sells 4 at 98; CANCEL_BOTH: the own bid and the stop end, no trade at 98. Every
    report about the stop carries its own header (session 31, ref 1003), not the trigger's.
    Now: so."""
    f = Feed(SPEC.symbol)
    out, book = both_books(
        SPEC,
        [
            f.new(1, BUY, 99, 5),
            f.new(2, BUY, 98, 5, account=3),
            f.new(3, SELL, 0, 4, ord_type=STOP, tif=IOC, stop=100, stp=stp),
            f.new(4, SELL, 100, 1, account=2),
            f.new(5, BUY, 100, 1, account=3),
        ],
    )
    events = out[-1]
    after = events[next(i for i, e in enumerate(events) if type(e) is Triggered) :]
    want = {
        NEWEST: ([], [(3, SELF, 0, 4)], {(BUY, 99): (5, 1), (BUY, 98): (5, 1)}),
        OLDEST: ([(2, 3, 98, 4)], [(1, SELF, 0, 5), (3, FILLED, 4, 0)], {(BUY, 98): (1, 1)}),
        BOTH: ([], [(1, SELF, 0, 5), (3, SELF, 0, 4)], {(BUY, 98): (5, 1)}),
    }[stp]
    assert (_trades(after), _dones(after), book.levels()) == want
    stop_done = next(e for e in after if type(e) is OrderDone and e.order_id == 3)
    assert (stop_done.session, stop_done.client_ref) == (31, 1003)


@pytest.mark.parametrize("stp", MODES)
def test_a_market_order_meets_its_own_level_between_others_levels(stp: StpMode) -> None:
    """Scenario: asks: account 2's 5 at 100, account 1's 5 at 101, account 2's 5 at 102 and
    5 at 104 (past the 3% band: 103); account 1 sends a market buy of 12 under ``stp``.
    Expected: 5 at 100 always; CANCEL_NEWEST: the market order ends SELF_TRADE with 7 left,
    its ask stays; CANCEL_OLDEST: its ask ends SELF_TRADE, 5 more at 102, 2 expire (104 is
    past the band); CANCEL_BOTH: its ask and the order end, 102 untouched. Now: so."""
    f = Feed(SPEC.symbol)
    out, book = both_books(
        SPEC,
        [
            f.new(1, SELL, 100, 5, account=2),
            f.new(2, SELL, 101, 5),
            f.new(3, SELL, 102, 5, account=2),
            f.new(4, SELL, 104, 5, account=2),
            f.new(5, BUY, 0, 12, ord_type=MARKET, tif=IOC, stp=stp),
        ],
    )
    events = out[-1]
    first = (1, 5, 100, 5)
    want = {
        NEWEST: ([first], [(1, FILLED, 5, 0), (5, SELF, 5, 7)], [101, 102, 104]),
        OLDEST: (
            [first, (3, 5, 102, 5)],
            [(1, FILLED, 5, 0), (2, SELF, 0, 5), (3, FILLED, 5, 0), (5, EXPIRED, 10, 2)],
            [104],
        ),
        BOTH: ([first], [(1, FILLED, 5, 0), (2, SELF, 0, 5), (5, SELF, 5, 7)], [102, 104]),
    }[stp]
    assert (_trades(events), _dones(events), sorted(p for _, p in book.levels())) == want


def _fok_case(rng: random.Random) -> tuple[list[NewOrder], StpMode, int, int]:
    """A book of up to 9 asks over 100..103 from accounts 1 (the taker's), 2 and 3, some of
    them icebergs, and a buy's mode, price and size."""
    f = Feed(SPEC.symbol)
    asks = []
    for oid in range(1, rng.randint(2, 10)):
        qty = rng.randint(1, 8)
        display = rng.choice([0, 0, 1, 2]) if qty > 1 else 0
        asks.append(
            f.new(oid, SELL, rng.randint(100, 103), qty, account=rng.choice([1, 2, 3]),
                  display=display)
        )  # fmt: skip
    return asks, rng.choice([StpMode.NONE, *MODES]), rng.randint(100, 104), rng.randint(1, 25)


def test_a_fok_fills_exactly_when_the_ioc_would_fill_completely_under_every_mode() -> None:
    """Scenario: 1,500 seeded books (own and others' asks, icebergs among them, on four
    levels) and a buy of account 1 under a random mode, sent once as IOC and once as FOK to
    copies of the same book, on both books. Expected (README: "A FOK counts what the sweep
    will really take (an iceberg's reserve, not the orders self-trade prevention removes)"):
    where the IOC fills completely, the FOK gives the same events (same trades, same STP
    cancels); otherwise the FOK is Accepted then EXPIRED with nothing filled, and the book is
    as it was (no own order cancelled). Now: so."""
    rng = random.Random(238)
    for case in range(1_500):
        asks, stp, price, qty = _fok_case(rng)
        for book_cls in (ReferenceBook, FastBook):
            book = book_cls(SPEC)
            for ask in asks:
                book.execute(ask)
            before = book.state_hash()

            def taker(tif: Any, stp: StpMode = stp, price: int = price, qty: int = qty) -> NewOrder:
                return NewOrder(99, 990, 2, 31, 1099, 1, SPEC.symbol, 99, BUY, LIMIT, tif, 0,
                                stp, price, qty, 0, 0)  # fmt: skip

            ioc = copy.deepcopy(book).execute(taker(IOC))
            fok = book.execute(taker(FOK))
            book.validate_internal_state()
            label = f"case {case} {book_cls.__name__} {stp.name} {price} {qty}"
            if _dones(ioc)[-1][1] == FILLED:
                assert [(type(e), getattr(e, "order_id", 0)) for e in fok] == [
                    (type(e), getattr(e, "order_id", 0)) for e in ioc
                ], label
                assert _trades(fok) == _trades(ioc) and _dones(fok) == _dones(ioc), label
            else:
                assert _dones(fok) == [(99, EXPIRED, 0, qty)] and len(fok) == 2, label
                assert book.state_hash() == before, label


@pytest.mark.parametrize("iceberg", [False, True], ids=["plain", "iceberg"])
@pytest.mark.parametrize("stp", MODES)
def test_a_replace_across_its_own_orders_applies_the_orders_mode(
    stp: StpMode, iceberg: bool
) -> None:
    """Scenario: asks: account 2's 2 at 101, account 1's 3 at 102, account 2's 4 at 103;
    account 1's bid of 6 at 99 (under ``stp``; an iceberg showing 2 on the second run, which
    takes the books' general replace path, the plain bid their inline one) is replaced to
    103. Expected: ``Replaced`` (6 open), the level it left, 2 at 101; then CANCEL_NEWEST:
    the bid ends SELF_TRADE with 4 left, its ask stays; CANCEL_OLDEST: its ask ends
    SELF_TRADE and the bid takes 4 at 103 (filled); CANCEL_BOTH: its ask and the bid end.
    Now: so."""
    f = Feed(SPEC.symbol)
    out, book = both_books(
        SPEC,
        [
            f.new(1, SELL, 101, 2, account=2),
            f.new(2, SELL, 102, 3),
            f.new(3, SELL, 103, 4, account=2),
            f.new(4, BUY, 99, 6, stp=stp, display=2 if iceberg else 0),
            f.replace(4, 103, 6),
        ],
    )
    events = out[-1]
    assert isinstance(events[0], Replaced) and events[0].qty == 6
    assert isinstance(events[1], BookLevel) and (events[1].price, events[1].qty) == (99, 0)
    first = (1, 4, 101, 2)
    want = {
        NEWEST: ([first], [(1, FILLED, 2, 0), (4, SELF, 2, 4)], [102, 103]),
        OLDEST: (
            [first, (3, 4, 103, 4)],
            [(1, FILLED, 2, 0), (2, SELF, 0, 3), (3, FILLED, 4, 0), (4, FILLED, 6, 0)],
            [],
        ),
        BOTH: ([first], [(1, FILLED, 2, 0), (2, SELF, 0, 3), (4, SELF, 2, 4)], [103]),
    }[stp]
    assert (_trades(events), _dones(events), sorted(p for _, p in book.levels())) == want


# -- the router's holds, and a replay ----------------------------------------------------------


def _holds_match_the_books(ex: Exchange) -> None:
    """Each trader's reserved USD and BTC are exactly what its resting BTC-USD orders need
    (the router's hold of each at its limit, for all it has left: an iceberg's reserve too)."""
    ex.check()
    market = ex.accounts.markets[BTCUSD]
    book = ex.fast["m1"].books[BTCUSD]
    for account in (1, 2, 3):
        mine = [o for o in book.orders.values() if o.account == account]
        usd = sum(market.hold(o.side, o.price, o.leaves + o.reserve) for o in mine if o.side == BUY)
        btc = sum(
            market.hold(o.side, o.price, o.leaves + o.reserve) for o in mine if o.side == SELL
        )
        assert ex.accounts.balance(account, USD)[1] == usd, account
        assert ex.accounts.balance(account, BTC)[1] == btc, account


def _step(ex: Exchange, command: Record) -> list[Record]:
    """Sequence ``command``, settle every event, check the holds; the events."""
    assert ex.submit(command) is not None, command
    events = ex.settle()
    _holds_match_the_books(ex)
    return events


def _matcher_events(images: list[bytes]) -> list[Record]:
    kinds = (Accepted, Trade, OrderDone, Replaced, Triggered, BookLevel)
    return [r for r in map(CODEC.decode_slot, images) if isinstance(r, kinds)]


def test_holds_follow_every_self_trade_end_and_a_replay_gives_the_same_events() -> None:
    """Scenario (BTC-USD through the router's sequencer and both books): account 1 offers an
    iceberg of 12 showing 3 at 100.00; account 2 offers 4 at 99.95 and 5 at 100.05; account 1
    bids 20 at 100.05 under CANCEL_BOTH; then bids 5 at 99.90 (CANCEL_OLDEST), offers 3 at
    100.10 and replaces the bid to 8 at 100.10; cancels the bid; offers 2 at 100.10, account 2
    4 at 100.20, and account 1 sends a market buy of 6 under CANCEL_NEWEST. Expected: the
    CANCEL_BOTH bid fills 4 at 99.95, then the iceberg ends whole (12) and the bid with 16
    left; the replace takes 5 at 100.05, cancels its own offer and rests 3; the market buy
    meets its own offer first and ends with nothing filled. After every step the reserved
    balances are exactly what the resting orders need, the totals the deposits; a replay of
    the journal on a fresh fast and reference matcher gives the same events and state hash.
    Now: so."""
    ex = funded(exchange_config(max_open=10))
    iceberg = new_order(1, SELL, 10_000, 12, display=3, ref=1)
    _step(ex, iceberg)
    _step(ex, new_order(2, SELL, 9_995, 4, ref=2))
    _step(ex, new_order(2, SELL, 10_005, 5, ref=3))
    events = _step(ex, new_order(1, BUY, 10_005, 20, stp=BOTH, ref=4))
    assert [d[1:] for d in _dones(events)] == [(FILLED, 4, 0), (SELF, 0, 12), (SELF, 4, 16)]
    bid = _step(ex, new_order(1, BUY, 9_990, 5, stp=OLDEST, ref=5))
    bid_id = next(e.order_id for e in bid if type(e) is Accepted)
    _step(ex, new_order(1, SELL, 10_010, 3, ref=6))
    events = _step(ex, ReplaceOrder(0, 0, 1, 1, 7, 1, BTCUSD, bid_id, 10_010, 8))
    assert [d[1:] for d in _dones(events)] == [(FILLED, 5, 0), (SELF, 0, 3)]
    assert ex.fast["m1"].books[BTCUSD].orders[bid_id].leaves == 3
    _step(ex, CancelOrder(0, 0, 1, 1, 8, 1, BTCUSD, bid_id))
    _step(ex, new_order(1, SELL, 10_010, 2, ref=9))
    _step(ex, new_order(2, SELL, 10_020, 4, ref=10))
    market = new_order(1, BUY, 0, 6, kind=MARKET, tif=IOC, stp=NEWEST, ref=11)
    events = _step(ex, market)
    assert [d[1:] for d in _dones(events)] == [(SELF, 0, 6)]
    specs = symbol_specs(ex.cfg, "m1")
    fresh, reference = Matcher(specs), Matcher(specs, ReferenceBook)
    replayed: list[Record] = []
    for command in ex.journal:
        if isinstance(command, (NewOrder, ReplaceOrder, CancelOrder, SymbolRules)) and (
            command.symbol == BTCUSD
        ):
            got = fresh.execute(command)
            assert reference.execute(command) == got, command
            replayed += got
    ran = [e for e in _matcher_events(ex.out) if getattr(e, "symbol", 0) == BTCUSD]
    assert len(ran) > 30 and replayed == ran
    assert fresh.state_hash() == reference.state_hash() == ex.fast["m1"].state_hash()


# -- REST -------------------------------------------------------------------------------------

CAROL = 603
ORDER = "/api/v1/order"
SYM: dict[str, Any] = {"symbol": "BTC-USD"}


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    """The REST rig, with CAROL holding both dollars and bitcoin (she can trade with
    herself)."""
    for h in rest_exchange(instance, tmp_path):
        h.add_user("CAROL", "carol-pw", CAROL)
        h.fund(CAROL)
        yield h


def test_rest_stp_ends_answer_and_stream_expired_in_match_and_free_every_hold(
    harness: Harness,
) -> None:
    """Scenario: CAROL offers 0.10 at 100.00 and BOB 0.05 at 99.00; CAROL, her private stream
    open, bids 0.20 at 100.00 with EXPIRE_TAKER; then bids 0.10 at 98.00 with EXPIRE_BOTH and
    amends it to 100.00 (across her own offer). Expected: the first bid answers
    ``EXPIRED_IN_MATCH``, executedQty 0.05, one fill at 99.00, and her offer stays open; the
    amend answers ``EXPIRED_IN_MATCH``; ``GET order`` of the offer says ``EXPIRED_IN_MATCH``;
    the stream's reports: the first bid NEW, TRADE, TRADE_PREVENTION; the second NEW,
    REPLACED; then TRADE_PREVENTION for the offer and the second bid, each with status
    ``EXPIRED_IN_MATCH``; nothing left locked at the router. Now: so."""

    async def scenario(_api: Any, url: str) -> None:
        carol = await client(url, "CAROL", "carol-pw")
        bob = await client(url, "BOB", "bob-pw")
        limit: dict[str, Any] = {**SYM, "type": "LIMIT", "timeInForce": "GTC"}
        ask = await carol.call("POST", ORDER, **limit, side="SELL", price="100.00", quantity="0.10")
        await bob.call("POST", ORDER, **limit, side="SELL", price="99.00", quantity="0.05")
        ws = await carol.stream()
        first = await ws.receive_json(timeout=5.0)
        assert first["event"] == "snapshot", first
        bid = await carol.call(
            "POST", ORDER, **limit, side="BUY", price="100.00", quantity="0.20",
            selfTradePreventionMode="EXPIRE_TAKER",
        )  # fmt: skip
        assert (bid["status"], bid["executedQty"]) == ("EXPIRED_IN_MATCH", "0.05"), bid
        assert [(f["price"], f["qty"]) for f in bid["fills"]] == [("99.00", "0.05")], bid
        assert (await carol.call("GET", ORDER, **SYM, orderId=ask["orderId"]))["status"] == "NEW"
        bid2 = await carol.call(
            "POST", ORDER, **limit, side="BUY", price="98.00", quantity="0.10",
            selfTradePreventionMode="EXPIRE_BOTH",
        )  # fmt: skip
        amended = await carol.call("PUT", ORDER, **SYM, orderId=bid2["orderId"], price="100.00")
        assert amended["status"] == "EXPIRED_IN_MATCH", amended
        seen = await carol.call("GET", ORDER, **SYM, orderId=ask["orderId"])
        assert seen["status"] == "EXPIRED_IN_MATCH", seen
        told: list[tuple[int, str, str]] = []
        want = [
            (bid["orderId"], "NEW", "NEW"),
            (bid["orderId"], "TRADE", "PARTIALLY_FILLED"),
            (bid["orderId"], "TRADE_PREVENTION", "EXPIRED_IN_MATCH"),
            (bid2["orderId"], "NEW", "NEW"),
            (bid2["orderId"], "REPLACED", "NEW"),
            (ask["orderId"], "TRADE_PREVENTION", "EXPIRED_IN_MATCH"),
            (bid2["orderId"], "TRADE_PREVENTION", "EXPIRED_IN_MATCH"),
        ]
        while len(told) < len(want):
            message = await ws.receive_json(timeout=5.0)
            if message["event"] == "executionReport":
                d = message["data"]
                told.append((d["orderId"], d["executionType"], d["status"]))
        assert told == want
        accounts = harness.router.sequencer.accounts
        assert [accounts.balance(CAROL, asset)[1] for asset in (USD, BTC)] == [0, 0]
        await ws.close()
        for c in (carol, bob):
            await c.close()

    run(harness, scenario)
