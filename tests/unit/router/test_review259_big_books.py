"""Review 259: pathological but legal load on the cores and the router's shell: big books.

Reviewed: ``procs/core/engine.py``, ``book.py`` (``_mass_cancel``, ``_remove_all``,
``_replace``), ``fast_book.py`` (``_fast_replace``, ``_sweep``), ``book_side.py`` (empty
levels kept, ``sweep``), ``account_orders.py`` (the lazy index), ``sequencer.py`` (``settle``,
``_client_ids``/``_by_order``, snapshot), ``procs/matcher/main.py`` (``step``,
``save_snapshot``: in line, not forked), ``shm/producer.py`` (``publish_batch`` in
ring-sized chunks), ``procs/router/applied.py`` (``settle``), README's matcher and router
sections. Pure cores for counts and timings.

Figures on the 2-core VM (printed by the tests, run with ``-s``; another helper's tests
sharing the cores):

- 200,000 resting orders over 100,000 levels, one symbol, fast book: built in ~0.7 s
  (3.5 us an order); the matcher's snapshot ~0.35 s and 6.8 MB, its restore ~1.0 s.
- Mass cancel by symbol of all of them: one command, 300,000 events (an ``OrderDone`` an order,
  a ``BookLevel`` a level), ~0.2 s of the matcher; by account (half of them): ~0.2 s.
  Through the router's core (40,000 orders, two accounts; 20,000 cancelled): 0.05-0.15 s,
  every hold released.
- A limit IOC sweeping 10,000 levels: one command, 30,002 events, a few tens of ms; nothing
  bounds one command's burst but the order's size (``max_qty``), the band for a market order
  and ``iceberg_parts`` for an iceberg (README documents those, no more).
- A replace storm of one order (100,000 cancel-replaces, price and size moving, through the
  router's core and the matcher): ~8 us each; nothing grows: the router's and matcher's
  snapshots, the account index, the levels listed, the client order id maps are the same size
  after 20,000 and after 100,000.
- The snapshot is taken in the matcher's own loop (``MatcherShell.save_snapshot``): at 200k
  orders a pause of ~0.35 s (encode) plus the write, every ``snapshot_every`` commands
  (1,000,000 by default). README forks only the router's snapshot replay and promises the
  matcher no bound on this pause, so it is a figure, not a fault: ~1.7 s a million orders.
- A mass cancel whose events are about 6 times the rings' capacity, through real rings with the
  matcher, the router and the other readers stepped in threads: every event arrived once, in
  order, the router settled them all and released every hold (its test was left out: with the
  shells stepped in threads of one process, a matcher waiting for room it alone could not
  make hung a loaded ``make test``; the pipeline's end-to-end tests run the burst's path in
  processes).

Faults: none reproduced. Each question of the brief came out sound at these sizes (below).
Journal segment rollover under this load was not exercised here (a mass cancel is one journal
entry whatever it cancels; the journal's own tests cover rollover).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from procs.common.records import (
    BookLevel,
    CreateAccount,
    MassCancel,
    NewOrder,
    OrderDone,
    Record,
    ReplaceOrder,
    Trade,
    Transfer,
)
from procs.common.types import DoneReason, OrdType, Side, StpMode, TimeInForce
from procs.core.accounts import Accounts
from procs.core.engine import Matcher
from procs.core.fast_book import FastBook
from procs.core.sequencer import Sequencer
from procs.core.symbols import SymbolSpec, symbol_specs
from tests.unit.router.core_rig import BTC, BTCUSD, USD, exchange_config

BUY, SELL = Side.BUY, Side.SELL
GTC, IOC = TimeInForce.GTC, TimeInForce.IOC
MID = 1_000_000
SPEC = SymbolSpec(symbol=1, band_bps=10_000)  # the widest band: sweeps limited by size alone


def order(
    *,
    ref: int,
    account: int,
    side: Side,
    price: int,
    qty: int = 1,
    tif: TimeInForce = GTC,
    seq: int = 0,
) -> NewOrder:
    """A plain limit order of symbol 1 from gateway 1, session 1 (``seq`` 0: for the router)."""
    return NewOrder(
        seq=seq, ts_ns=0, gateway=1, session=1, client_ref=ref, account=account, symbol=1,
        order_id=seq, side=side, ord_type=OrdType.LIMIT, tif=tif, flags=0, stp=StpMode.NONE,
        price=price, qty=qty, stop_price=0, display_qty=0,
    )  # fmt: skip


def new(
    seq: int, account: int, side: Side, price: int, qty: int = 1, tif: TimeInForce = GTC
) -> NewOrder:
    """``order`` as the matcher gets it: sequenced, its id its seq."""
    return order(ref=seq, account=account, side=side, price=price, qty=qty, tif=tif, seq=seq)


def deep_book(orders: int, levels: int, spec: SymbolSpec = SPEC) -> tuple[Matcher, int]:
    """A fast-book matcher with ``orders`` resting over ``levels`` prices (half bids below
    ``MID``, half asks above), accounts 7 and 8 alternating by level; returns it and its last
    seq."""
    matcher = Matcher([spec])
    half = levels // 2
    for i in range(orders):
        level = i % levels
        side = BUY if level < half else SELL
        price = MID - (half - level) if side is BUY else MID + (level - half) + 1
        events = matcher.execute(new(i + 1, 7 + level % 2, side, price))
        assert len(events) == 2, events  # Accepted, BookLevel: it rests
    return matcher, orders


def timed(what: str, call: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    out = call()
    took = time.perf_counter() - start
    print(f"review 259: {what}: {took * 1e3:.0f} ms")
    return out, took


# -- the matcher's core ----------------------------------------------------------------------


def test_200k_orders_snapshot_restore_and_mass_cancel_by_symbol() -> None:
    """Scenario: 200,000 orders resting over 100,000 levels of one symbol; the matcher
    snapshots and restores; then one mass cancel of the symbol (account 0).
    Expected: the restore has the same state hash; the mass cancel answers one ``OrderDone
    (MASS_CANCELLED)`` an order and one ``BookLevel`` (qty 0) a level, leaves the book empty
    and valid, in well under the seconds a stall would take.
    Now: so (figures in the module docstring)."""
    matcher, seq = deep_book(200_000, 100_000)
    snap, _ = timed("snapshot of 200k orders", matcher.snapshot)
    assert isinstance(snap, bytes)
    print(f"review 259: snapshot size {len(snap):,} bytes")
    restored, _ = timed("restore", lambda: Matcher.restore([SPEC], snap))
    assert isinstance(restored, Matcher) and restored.state_hash() == matcher.state_hash()
    events, took = timed(
        "mass cancel by symbol", lambda: matcher.execute(MassCancel(seq + 1, 0, 1, 1, 1, 0, 1))
    )
    assert isinstance(events, list)
    done = [e for e in events if isinstance(e, OrderDone)]
    levels = [e for e in events if isinstance(e, BookLevel)]
    print(f"review 259: mass cancel events {len(events):,}")
    assert len(done) == 200_000 and {d.reason for d in done} == {DoneReason.MASS_CANCELLED}
    assert len({d.order_id for d in done}) == 200_000
    assert len(levels) == 100_000 and all(lv.qty == 0 and lv.count == 0 for lv in levels)
    book = matcher.books[1]
    assert not book.orders and book.levels() == {}
    book.validate_internal_state()
    assert took < 5.0


def test_mass_cancel_by_account_takes_only_its_orders() -> None:
    """Scenario: 200,000 orders over 100,000 levels, accounts 7 and 8 on alternate levels;
    account 7 mass cancels the symbol, then account 7 again (nothing left).
    Expected: exactly account 7's 100,000 orders go, in priority order (bids best first,
    then asks), one ``BookLevel`` per level emptied; account 8's all rest; the second answers
    nothing and is quick.
    Now: so."""
    matcher, seq = deep_book(200_000, 100_000)
    events, took = timed(
        "mass cancel by account", lambda: matcher.execute(MassCancel(seq + 1, 0, 1, 1, 1, 7, 1))
    )
    assert isinstance(events, list)
    done = [e for e in events if isinstance(e, OrderDone)]
    assert len(done) == 100_000 and {d.account for d in done} == {7}
    book = matcher.books[1]
    assert len(book.orders) == 100_000 and {o.account for o in book.orders.values()} == {8}
    assert len({d.order_id for d in done}) == 100_000
    book.validate_internal_state()
    again, took2 = timed(
        "second mass cancel", lambda: matcher.execute(MassCancel(seq + 2, 0, 1, 1, 2, 7, 1))
    )
    assert again == [] and took < 5.0 and took2 < 0.5


def test_sweep_of_10k_levels_is_one_burst_with_every_fill() -> None:
    """Scenario: 10,000 asks one lot each on 10,000 levels; one IOC buy for 10,000 lots
    priced through them all.
    Expected: ``Accepted``, then per maker a ``Trade`` and its ``OrderDone(FILLED)``, one
    ``BookLevel`` per level, then the taker's ``OrderDone(FILLED)``: 30,002 events, trade ids
    gapless from 1; the asks' side empty.
    Now: so (nothing bounds one command's burst but its size: README documents max_qty,
    the band and iceberg_parts, and the burst fits them)."""
    matcher = Matcher([SPEC])
    for i in range(10_000):
        matcher.execute(new(i + 1, 8, SELL, MID + i))
    taker = new(10_001, 7, BUY, MID + 10_000, qty=10_000, tif=IOC)
    events, took = timed("sweep of 10k levels", lambda: matcher.execute(taker))
    assert isinstance(events, list)
    print(f"review 259: sweep events {len(events):,}")
    trades = [e for e in events if isinstance(e, Trade)]
    assert len(events) == 30_002
    assert [t.trade_id for t in trades] == list(range(1, 10_001))
    assert sum(t.qty for t in trades) == 10_000
    assert isinstance(events[-1], OrderDone) and events[-1].reason == DoneReason.FILLED
    assert matcher.books[1].levels() == {} and took < 5.0


# -- the router's core in front of the matcher -------------------------------------------------


class Core:
    """The router's ``Sequencer`` in front of one fast-book matcher, events settled at once."""

    def __init__(self) -> None:
        self.cfg = exchange_config(max_open=1_000_000, max_notional=10**15)
        self.seq = Sequencer(self.cfg, Accounts(self.cfg))
        self.matcher = Matcher(symbol_specs(self.cfg, "m1"))
        for record in self.seq.rules_changes(0):
            for name in self.seq.matchers_for(record):
                if name == "m1":
                    self.matcher.execute(record)
        self.ref = 0
        for account in (7, 8):
            self.submit(CreateAccount(0, 0, 1, 1, self.next_ref(), account))
            for asset in (USD, BTC):
                ref = self.next_ref()
                self.submit(Transfer(0, 0, 1, 1, ref, account, asset, 10**17, ref))

    def next_ref(self) -> int:
        self.ref += 1
        return self.ref

    def submit(self, command: Record) -> tuple[Record | None, list[Record]]:
        decision = self.seq.submit(command, 0)
        events: list[Record] = []
        if decision.command is not None and "m1" in decision.matchers:
            events = self.matcher.execute(decision.command)
            self.seq.settle(events)
        return decision.command, events

    def order(self, account: int, side: Side, price: int, qty: int = 1) -> Record | None:
        ref = self.next_ref()
        return self.submit(order(ref=ref, account=account, side=side, price=price, qty=qty))[0]


def test_router_core_mass_cancel_of_40k_releases_every_hold() -> None:
    """Scenario: through the router's core, 40,000 orders of accounts 7 and 8 over 20,000
    levels of BTC-USD; account 7 mass cancels every symbol.
    Expected: 20,000 ``OrderDone``s plus the levels, settled; account 7's held USD and BTC
    back to 0, free back to the deposit; its client order ids freed; 8's untouched.
    Now: so."""
    core = Core()

    def build() -> None:
        for i in range(40_000):
            level = i % 20_000
            side = BUY if level < 10_000 else SELL
            price = 5 * (100_000 - (10_000 - level) if side is BUY else 100_000 + level - 9_999)
            assert core.order(7 + i % 2, side, price) is not None

    timed("router core: 40k orders", build)
    result, took = timed(
        "router core mass cancel of 20k",
        lambda: core.submit(MassCancel(0, 0, 1, 1, core.next_ref(), 7, 0)),
    )
    assert isinstance(result, tuple)
    events = result[1]
    assert sum(isinstance(e, OrderDone) for e in events) == 20_000
    accounts = core.seq.accounts
    assert accounts.balance(7, USD) == (10**17, 0) and accounts.balance(7, BTC) == (10**17, 0)
    assert accounts.balance(8, USD)[1] > 0 and accounts.balance(8, BTC)[1] > 0
    assert len(core.seq._client_ids) == 20_000  # only 8's left
    accounts.validate_internal_state()
    assert took < 5.0


def test_replace_storm_of_one_order_grows_nothing() -> None:
    """Scenario: a book of 2,000 orders of account 8; one order of account 7 replaced 100,000
    times through the router's core and the matcher, its price walking over 7 prices and
    its size over 3, never crossing.
    Expected: each replace answers ``Replaced`` and its levels; nothing grows between the
    20,000th and the 100,000th: the router's and the matcher's snapshots, the account index,
    the levels listed, the router's client order id maps; order ids do not advance.
    Now: so."""
    core = Core()
    for i in range(2_000):
        level = i % 1_000
        side = BUY if level < 500 else SELL
        core.order(8, side, 5 * (100_000 - 500 + level if side is BUY else 100_000 + level))
    first = core.order(7, BUY, 5 * 90_000, 5)
    assert isinstance(first, NewOrder)
    oid, book, seq = first.order_id, core.matcher.books[BTCUSD], core.seq
    assert isinstance(book, FastBook)

    def sizes() -> tuple[int, ...]:
        index = sum(len(ids) for ids in book.by_account.ids.values())
        return (len(seq.snapshot()), len(core.matcher.snapshot()), index,
                len(book.bids.levels), len(seq._client_ids), len(seq._by_order),
                seq.next_order_id)  # fmt: skip

    def storm(count: int) -> None:
        for k in range(count):
            price = 5 * (90_000 - k % 7)
            ref, qty = core.next_ref(), 5 + k % 3
            replace = ReplaceOrder(0, 0, 1, 1, ref, 7, BTCUSD, oid, price, qty)
            command, events = core.submit(replace)
            assert command is not None and type(events[0]).__name__ == "Replaced", events

    timed("replace storm, first 20k", lambda: storm(20_000))
    at_20k = sizes()
    timed("replace storm, next 80k", lambda: storm(80_000))
    at_100k = sizes()
    print(f"review 259: sizes at 20k {at_20k}, at 100k {at_100k}")
    # the snapshots may differ by a few bytes (varint widths of seq and arrival counters)
    assert abs(at_100k[0] - at_20k[0]) < 64 and abs(at_100k[1] - at_20k[1]) < 64
    assert at_100k[2:] == at_20k[2:]
    book.validate_internal_state()
