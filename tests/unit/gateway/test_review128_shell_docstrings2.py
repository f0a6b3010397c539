"""Review 128, part 2 (see ``test_review128_shell_docstrings.py`` for the convention and the
disagreements): ``restart.py``'s helpers and ``order_memory.py``; the REST side's memory
(``order_ends.py``, ``unfiled_orders.py``, ``recent_elsewhere.py``, ``ended_elsewhere.py``,
``row_orders.py``, ``completing_rows.py``, ``live_trades.py``), ``instruments.py``,
``commission.py``, ``grouped.py``, ``notional_note.py``, ``api_errors.py``, and the matcher's
process shell (``procs/matcher/main.py``: recovery, marks, snapshots, stop) over real rings
with ``tests/unit/matcher/test_process.py``'s rig. Every claim here was found right.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import msgspec
import pytest

from config.schema import AssetConfig, SymbolConfig
from procs.common.records import AdminCommand, Heartbeat, MassCancel, OrderDone, Record, Trade
from procs.common.snapshots import SnapshotStore
from procs.common.topology import RECOVERED_SOURCE, REPLAY_SOURCE, snapshot_dir
from procs.common.types import AdminAction, DoneReason, OrdType, Side
from procs.core.engine import Matcher
from procs.core.resting import RestingOrder
from procs.core.symbols import symbol_specs
from procs.gateway import (
    api_errors,
    commission,
    completing_rows,
    ended_elsewhere,
    grouped,
    instruments,
    live_trades,
    notional_note,
    order_ends,
    order_memory,
    recent_elsewhere,
    row_orders,
    unfiled_orders,
)
from procs.gateway.api_errors import ApiError, throttle
from procs.gateway.commission import Commissions
from procs.gateway.completing_rows import CompletingRowOrders
from procs.gateway.ended_elsewhere import EndedElsewhere
from procs.gateway.grouped import GroupedDict
from procs.gateway.instruments import Instruments, price_ticks, qty_lots, to_units
from procs.gateway.limits import RateLimiter
from procs.gateway.live_trades import LiveTrades
from procs.gateway.order_ends import OrderEnds
from procs.gateway.order_log import COMMAND, Recovered
from procs.gateway.order_state import Request
from procs.gateway.orders import OrderEntry
from procs.gateway.recent_elsewhere import RecentElsewhere
from procs.gateway.rest_order_state import LiveOrder
from procs.gateway.restart import GatewayRestart
from procs.gateway.row_orders import RowOrders
from procs.gateway.unfiled_orders import UnfiledOrders
from procs.matcher import main as matcher_main
from procs.matcher.main import MatcherShell, published_part, published_position, routed_upto
from tests.unit.gateway.test_review123_session_docstrings import _says
from tests.unit.gateway.test_review128_shell_docstrings import (
    CODEC,
    SYM,
    _entry_with,
    _order,
    _values,
)
from tests.unit.matcher.test_process import config as m_config
from tests.unit.matcher.test_process import make_rings, run_shell
from tests.unit.matcher.test_process import order as m_order

# -- restart.py --------------------------------------------------------------------------------


def test_own_layout_passes_over_a_command_of_another_builds_schema() -> None:
    """``_own_layout``: "The logged commands, less those of another build's layout ... They
    go from ``recovered`` too"."""
    _says(GatewayRestart._own_layout, "less those of another build's layout")
    image = CODEC.encode_slot(m_order(1, 1, 1))
    r = Recovered()
    r.apply([COMMAND, 1, 9, image, CODEC.journal_schema_id])
    r.apply([COMMAND, 2, 9, image, 0x1234])
    shell = cast(GatewayRestart, SimpleNamespace(codec=CODEC))
    assert list(GatewayRestart._own_layout(shell, r)) == [1] and list(r.commands) == [1]


def test_journaled_after_takes_the_commands_matcher_and_every_ones_oldest_for_a_mass_cancel() -> (
    None
):
    """``_journaled_after``: "the newest its matcher's ring was handled through, or every
    matcher's oldest for a mass cancel"; "no matcher's symbol: ... it bounds nothing"."""
    _says(GatewayRestart._journaled_after, "or every matcher's oldest for a mass cancel")
    shell = cast(GatewayRestart, SimpleNamespace(_handled={"m1": 50, "m2": 20, "r": 90}))
    rings = {1: "m1", 2: "m2"}
    assert GatewayRestart._journaled_after(shell, m_order(1, 2, 1), rings) == 20
    assert GatewayRestart._journaled_after(shell, m_order(1, 1, 1), rings) == 50
    assert GatewayRestart._journaled_after(shell, MassCancel(1, 0, 1, 3, 4, 7, 0), rings) == 20
    assert GatewayRestart._journaled_after(shell, m_order(1, 8, 1), rings) == 90


def test_a_mass_cancel_whose_verdict_went_with_the_ring_is_answered_from_the_journal() -> None:
    """``_answer_mass_cancels``: "One the journal holds was taken ...; one the journal cannot
    tell of is refused, for its client to send again"; one the journal lacks is not answered
    here (sent again)."""
    _says(GatewayRestart._answer_mass_cancels, "one the journal cannot tell of is refused")
    told: list[tuple[int, str | None]] = []
    entry = SimpleNamespace(answer_mass_cancel=lambda ref, why: told.append((ref, why)))
    shell = cast(GatewayRestart, SimpleNamespace(entry=entry))
    cancels: list[Record] = [MassCancel(0, 0, 1, 3, ref, 7, 0) for ref in (4, 5)]
    GatewayRestart._answer_mass_cancels(shell, [*cancels, m_order(1, 1, 6)], {4})
    assert told == [(4, None)]
    GatewayRestart._answer_mass_cancels(shell, cancels, None)
    assert [ref for ref, why in told[1:] if why and "send it again" in why] == [4, 5]


def test_skip_handled_passes_over_what_the_log_has_on_the_same_ring_only() -> None:
    """``_skip_handled``: "Pass over events the order log says were handled before a
    restart (a crash after the log's write and before the cursors' commit)"."""
    _says(GatewayRestart._skip_handled, "Pass over events the order log says were handled")
    skipped: list[tuple[str, int]] = []

    def consumer(name: str, created: int, at: int) -> SimpleNamespace:
        ring = SimpleNamespace(name=name, created_ns=created)
        return SimpleNamespace(ring=ring, sequence=at, skip_to=lambda n: skipped.append((name, n)))

    inputs = [consumer("a", 1, 3), consumer("b", 2, 3), consumer("c", 3, 9)]
    positions = {"a": (1, 8), "b": (5, 8), "c": (3, 8)}
    shell = cast(GatewayRestart, SimpleNamespace(inputs=inputs, _positions=positions))
    GatewayRestart._skip_handled(shell)
    assert skipped == [("a", 8)]  # b: another ring now; c: past it already


# -- order_memory.py ---------------------------------------------------------------------------


def test_reconcile_forgets_takes_the_books_word_and_keeps_the_unacknowledged() -> None:
    """``reconcile``: "an acknowledged order not in a book finished meanwhile and is
    forgotten; one in a book takes its id, fills and what is left (fills it missed are priced
    at its limit ...). One not acknowledged yet and not in a book is kept ... Requests in
    flight on those symbols are dropped. Returns the orders whose fills or terms changed ...
    and how many were forgotten"."""
    _says(order_memory, "One not acknowledged yet and not in a book is kept")
    gone, kept, waiting = _order(1, b"g", 11), _order(2, b"k", 12, cum=1), _order(3, b"w")
    entry = _entry_with(gone, kept, waiting)
    entry.requests[9] = Request(b"F", 3, b"c", entry.orders[2])
    book = RestingOrder(12, 7, Side.BUY, 100, 1, 3, 1, 1, 3, 2)  # 3 filled, 1 left
    changed, forgotten = entry.reconcile({2: book}, {SYM.id})
    assert forgotten == 1 and [o.ref for o in changed] == [2]
    assert sorted(entry.orders) == [2, 3] and (3, b"g") in entry.finished
    o = entry.orders[2]
    assert (o.cum, o.leaves, o.qty, o.notional, o.status) == (3, 1, 4, 300, b"1")
    assert entry.requests == {}


def test_unanswered_restore_and_refs_above_the_log() -> None:
    """``unanswered``: "a new order not acknowledged, or a cancel or replace request in
    flight"; ``restore``: "returns how many orders (one on a symbol no longer configured is
    dropped, with a log line)"; "A clock stepped back ... must not hand out a ref still in
    use"."""
    _says(order_memory.OrderMemory.restore, "one on a symbol no longer configured is")
    big = 2**62
    lost = _order(big, b"lost", 5)
    lost.symbol = SymbolConfig(name="GONE-USD", id=42, base="BTC")
    entry = OrderEntry(1, Instruments([SYM]), False)
    count = entry.restore({1: _values(_order(1, b"a")), big: _values(lost)}, {})
    assert count == 1 and entry.next_ref() > big
    assert entry.unanswered(1) and not entry.unanswered(big)
    entry.requests[7] = Request(b"F", 3, b"c", entry.orders[1])
    assert entry.unanswered(7) and not entry.unanswered(8)


def test_finished_orders_are_kept_by_order_and_logged_encoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``finished_orders``: "the newest ``FINISHED_KEPT`` orders, in the order of their last
    finish"; ``_keep_finished``: "counted in orders, not keys"; ``take_changes``: "a
    finished order's encoded"."""
    _says(order_memory.OrderMemory._keep_finished, "counted in orders, not keys, as the log")
    monkeypatch.setattr(order_memory, "FINISHED_KEPT", 2)
    entry = _entry_with(*(_order(k, b"o%d" % k, 10 + k) for k in (1, 2, 3)))
    entry.take_changes()
    for ref in (1, 2, 3):
        entry._forget(entry.orders[ref])
    assert list(entry.finished_orders) == [2, 3]
    assert set(entry.finished) == {(3, b"o2"), (3, b"o3")}
    changes = entry.take_changes()
    assert [type(c) for c in changes] == [tuple] * 3 + [msgspec.Raw] * 3
    assert entry.take_changes() == []


# -- order_ends.py -----------------------------------------------------------------------------


def test_order_ends_answers_a_ref_once_every_order_ended_and_collects_unfollowed_ends() -> None:
    """``watch``: "False when there is nothing to wait for (no ids)"; ``take``: "The refs
    whose orders have all ended since the last call"; ``collected``: "which stops (once every
    ``collect`` of it has its ``collected``)"; ``abandon``: "Nobody waits under ``ref``"."""
    _says(order_ends, "``collected`` hands them over and stops")
    ends = OrderEnds()
    assert not ends.watch(1, []) and len(ends) == 0
    assert ends.watch(1, [10, 11]) and ends.watch(2, [11]) and ends.watch(3, [12])
    ends.finished(11)
    assert ends.take() == [2]
    ends.abandon(3)
    ends.finished(12)
    ends.finished(10)
    assert ends.take() == [1] and ends.take() == [] and len(ends) == 0
    done = OrderDone(5, 0, 2, 0, 0, 7, 1, 20, DoneReason.CANCELLED, 0, 1)
    ends.unfollowed(done)  # nobody collects: not kept
    ends.collect(7)
    ends.collect(7)
    ends.unfollowed(done)
    assert ends.collected(7) == {20: done} and ends.seen(7) == {20: done}
    assert ends.collected(7) == {20: done} and ends.seen(7) == {}


# -- unfiled_orders.py / ended_elsewhere.py / recent_elsewhere.py ------------------------------


def _live(oid: int, seq: int = 0, account: int = 7) -> LiveOrder:
    return LiveOrder(oid, account, SYM, 1, "LIMIT", 1, 100, 0, 4, 4, status="NEW", seq=seq,
                     time_ms=oid)  # fmt: skip


def _row(oid: int, updated_seq: int, account: int = 7, status: int = 1) -> tuple[Any, ...]:
    limit = int(OrdType.LIMIT)
    return (oid, account, 1, 1, limit, 1, 105, 0, 4, 4, 0, status, 0, oid, oid, 0, updated_seq,
            0, "row")  # fmt: skip


def test_unfiled_orders_keep_the_newest_seq_drop_the_oldest_and_forget_to_the_checkpoint() -> None:
    """``changed``: "an event read again leaves its seq as it was"; the class: "bounded by
    ``limit``"; ``forget_filed``: "from the one changed longest ago up to the first one above
    it"."""
    _says(UnfiledOrders.changed, "an event read again leaves its seq as it was")
    _says(UnfiledOrders.forget_filed, "from the one changed longest ago up to the first one")
    u = UnfiledOrders(limit=3)
    a, b, c, d = (_live(k) for k in (1, 2, 3, 4))
    u.changed(a, 9)
    u.changed(a, 5)
    assert a.seq == 9
    for order, seq in ((b, 4), (c, 12), (d, 6)):
        u.changed(order, seq)
    assert len(u) == 3 and u.named(7, 1, "") is d  # a, changed longest ago, went
    u.forget_filed(10)
    assert len(u) == 2 and u.named(7, 1, "") is d  # b went; c (12) stops it, d waits
    u.forget_filed(12)
    assert len(u) == 0


def test_merged_shows_the_newer_view_adds_what_rows_lack_and_cuts_as_the_database() -> None:
    """``merged``: "the row's ``updated_seq`` ... at or below the order's seq, or the order's
    seq not known (0 ...). On a tie the live view wins ... A row newer than the live view
    ... stays as it is"; "adds the orders kept here ... each once (by order id)"."""
    _says(unfiled_orders, "On a tie the live view wins")
    u = UnfiledOrders()
    tie, older, unknown, extra = _live(1, 5), _live(2, 3), _live(3, 0), _live(4, 8)
    for o in (tie, older, extra):
        u.changed(o, o.seq)
    known = {3: unknown}
    followed = SimpleNamespace(known=known.get, open_orders=lambda account, symbol: [extra])
    rows = [_row(1, 5), _row(2, 4), _row(3, 7)]
    got = u.merged(rows, 7, SYM, cast(Any, followed), from_id=None, start_ms=None, end_ms=None,
                   limit=10)  # fmt: skip
    assert [(o["orderId"], o["price"]) for o in got] == [
        (1, "1.00"), (2, "1.05"), (3, "1.00"), (4, "1.00")
    ]  # fmt: skip
    assert len(u) == 1  # the rows held 1 and 2's last changes: they went; 4 stays
    cut = u.merged([], 7, SYM, cast(Any, followed), from_id=None, start_ms=None, end_ms=None,
                   limit=1)  # fmt: skip
    assert [o["orderId"] for o in cut] == [4]


def test_ended_elsewhere_keeps_ends_oldest_first_older_ones_first_to_go() -> None:
    """``add``: "``older``: before every end kept ..., so it goes first, to the checkpoint or
    to the bound"; ``filed``: "its end goes if the row has it"; ``forget_filed``: "oldest
    first up to the first above it"."""
    _says(EndedElsewhere.add, "so it goes first, to the checkpoint or")
    _says(ended_elsewhere, "at most ``MAX_ENDED_ELSEWHERE`` of them, the oldest dropped first")
    e = EndedElsewhere(limit=2)
    e.add(_live(1, 5))
    e.add(_live(2, 3))
    e.add(_live(3, 1), older=True)  # over the bound: the older one goes at once
    assert e.get(3) is None and len(e) == 2
    e.add(_live(4, 9))
    assert e.get(1) is None and e.get(2) is not None
    e.filed(2, 2)
    assert e.get(2) is not None
    e.filed(2, 3)
    assert e.get(2) is None
    e.add(_live(5, 20))
    e.forget_filed(10)
    assert (e.get(4), e.get(5) is not None) == (None, True)


def test_recent_elsewhere_hands_an_account_its_own_and_keeps_the_other_side() -> None:
    """``take``: "``account``'s events among those kept, oldest first ... Those only of it
    leave ...; a trade with another account stays, for that one's side"; the class: "The
    last ``limit`` events passed"."""
    _says(recent_elsewhere, "a trade with another account stays, for that one's side")
    r = RecentElsewhere(limit=4)
    done7 = OrderDone(1, 0, 2, 0, 0, 7, 1, 20, DoneReason.CANCELLED, 0, 1)
    cross = Trade(2, 0, 1, 1, 100, 1, Side.BUY, 20, 7, 2, 0, 21, 8, 2, 0)
    own = Trade(3, 0, 2, 1, 100, 1, Side.BUY, 22, 7, 2, 0, 23, 7, 2, 0)
    old = OrderDone(0, 0, 2, 0, 0, 7, 1, 19, DoneReason.CANCELLED, 0, 1)
    for event in (
        old,
        done7,
        cross,
        own,
        OrderDone(4, 0, 2, 0, 0, 9, 1, 30, DoneReason.CANCELLED, 0, 1),
    ):
        r.passed(event)
    assert r.take(7) == [done7, cross, own]  # old went past the limit
    assert len(r) == 2 and r.take(8) == [cross] and r.take(7) == [cross]  # stays for 8


# -- row_orders.py / completing_rows.py --------------------------------------------------------


def test_row_orders_remember_per_symbol_and_are_taken_only_by_a_newer_event() -> None:
    """``remember``: "less those ``known`` follows already; replaces what was remembered of
    those symbols (the others' stay ...)"; ``take``: "None if none, or if its row holds that
    event already (``seq`` 0: any event ...)"; ``forget``."""
    _says(row_orders, "An event the row already holds (its seq at or below the row's")
    other = SymbolConfig(name="ETH-USD", id=2, base="BTC")
    rows = RowOrders(Instruments([SYM, other]))
    rows.remember(7, {1: [_row(1, 5), _row(2, 5), _row(9, 5, account=8)]}, {2: _live(2)}.get)
    rows.remember(7, {2: [(*_row(3, 5)[:2], 2, *_row(3, 5)[3:])]}, lambda oid: None)
    assert rows.take(7, 2, 9) is None and rows.take(7, 9, 9) is None
    assert rows.take(7, 1, 5) is None  # the row holds it
    taken = rows.take(7, 1, 6)
    assert taken is not None and taken.price == 105 and rows.take(7, 1, 7) is None
    rows.remember(7, {1: []}, lambda oid: None)
    assert rows.take(7, 3, 0) is not None  # symbol 2's stayed; seq 0: any event
    rows.add(_live(4))
    rows.forget(7)
    assert rows.take(7, 4, 0) is None


def test_completing_rows_fill_in_the_followed_orders_of_that_account() -> None:
    """completing_rows.py: "this fills those fields in on the followed order itself
    (``LiveOrder.complete``)"; ``remember``: "after completing each order ``known``
    follows"."""
    _says(completing_rows, "this fills those fields in on the followed order itself")
    mine, theirs = _live(1), _live(2, account=8)
    mine.type_name = theirs.type_name = ""
    rows = CompletingRowOrders(Instruments([SYM]))
    rows.remember(7, {1: [_row(1, 5), _row(2, 5)]}, {1: mine, 2: theirs}.get)
    assert (mine.type_name, theirs.type_name) == ("LIMIT", "")
    assert rows.take(7, 1, 9) is None  # followed already: not remembered


# -- live_trades.py / commission.py ------------------------------------------------------------

USD = AssetConfig(name="USD", id=1, decimals=6)
BTC = AssetConfig(name="BTC", id=2, decimals=6)
FEES = msgspec.structs.replace(SYM, maker_fee_bps=3, taker_fee_bps=7)


def _trade(trade_id: int, seq: int, maker: int = 7, taker: int = 8) -> Trade:
    return Trade(seq, 5 * 10**6, trade_id, 1, 100, 3, Side.BUY, 20, maker, 1, 0, 21, taker, 1,
                 0)  # fmt: skip


def test_commission_is_floor_of_notional_times_bps_in_quote_minor_units() -> None:
    """commission.py: "The router charges each side floor(notional x bps / 10_000) in the
    quote asset's minor units"; the class: "A symbol whose assets are not among ``assets``
    has none (``fee`` returns None)"."""
    _says(commission, "floor(notional x bps / 10_000) in the quote asset's minor units")
    c = Commissions([FEES], [USD, BTC])
    notional = 12345 * 7 * 10 ** (6 - 2 - 2)  # 123.45 x 0.07 in USD minor units
    assert c.fee(1, 12345, 7, True) == notional * 3 // 10_000 == 2592
    assert c.fee(1, 12345, 7, False) == notional * 7 // 10_000 == 6049
    assert c.shown(1, 12345, 7, False) == (b"0.006049", "USD")
    assert Commissions([FEES], [USD]).fee(1, 1, 1, True) is None
    assert Commissions([FEES], [USD]).shown(1, 1, 1, True) is None


def test_live_trades_keep_each_side_once_forget_to_the_checkpoint_and_merge_in_order() -> None:
    """``add``: "a side already kept (an event read again) is kept once"; the module: "both
    sides of a self-trade stay"; ``forget_filed``: "from the oldest up to the first one
    above it"; ``merged``: "(trade id, then taker before maker)"."""
    _says(live_trades, "so both sides of a self-trade stay")
    _says(LiveTrades.merged, "ordered as the database orders them (trade id, then taker before")
    t = LiveTrades(Commissions([FEES], [USD, BTC]), limit=10)
    self_trade = _trade(5, 3, maker=7, taker=7)
    t.add(self_trade, 7, 20, True)
    t.add(self_trade, 7, 21, False)
    t.add(self_trade, 7, 21, False)  # read again
    t.add(_trade(6, 9), 7, 22, True)
    t.add(_trade(4, 2), 7, 23, True)
    assert len(t) == 4
    got = t.merged([], 7, FEES, from_id=None, start_ms=None, end_ms=None, limit=10)
    assert [(r["id"], r["isMaker"]) for r in got] == [(4, True), (5, False), (5, True),
                                                        (6, True)]  # fmt: skip
    assert got[2]["isBuyer"] is False and got[1]["isBuyer"] is True
    t.forget_filed(3)
    assert len(t) == 2  # 5's two sides went; 6 (seq 9) stopped it, 4 waits behind it
    row = {"id": 6, "isMaker": True}
    got = t.merged([row], 7, FEES, from_id=None, start_ms=None, end_ms=None, limit=10)
    assert [r["id"] for r in got] == [4, 6] and got[1] is row and len(t) == 1


def test_live_trades_drop_the_oldest_past_the_bound() -> None:
    """live_trades.py: "At most ``MAX_LIVE_FILLS`` are kept; past it the oldest go first"."""
    _says(live_trades, "At most ``MAX_LIVE_FILLS`` are kept; past it the oldest go first")
    t = LiveTrades(Commissions([FEES], [USD, BTC]), limit=2)
    for k in (1, 2, 3):
        t.add(_trade(k, k), 7, k, True)
    got = t.merged([], 7, FEES, from_id=None, start_ms=None, end_ms=None, limit=10)
    assert [r["id"] for r in got] == [2, 3] and live_trades.MAX_LIVE_FILLS == 20_000


# -- instruments.py / notional_note.py / api_errors.py / grouped.py ----------------------------


def test_prices_and_sizes_scale_and_a_value_off_its_step_is_named_with_the_step() -> None:
    """instruments.py: "A FIX price ``30123.45`` on a symbol with ``price_decimals = 2`` is
    3012345 price units, and must be a multiple of ``tick``"; "refused with a message that
    names it and the step"; ``to_units``: "None when it has more (non-zero) decimals"."""
    _says(instruments, "A FIX price ``30123.45`` on a symbol with ``price_decimals = 2`` is")
    assert price_ticks(b"30123.45", SYM) == 3012345
    assert to_units(b"1.2300", 2) == 123 and to_units(b"1.234", 2) is None
    assert price_ticks(b"30123.46", SYM) == (
        "price 30123.46 is not a multiple of tick 0.05 (symbol=BTC-USD)"
    )
    lot = msgspec.structs.replace(SYM, lot=10)
    assert qty_lots(b"0.05", lot) == "quantity 0.05 is not a multiple of lot 0.10 (symbol=BTC-USD)"
    assert "must be positive" in str(qty_lots(b"0", SYM))


def test_notional_note_says_the_limit_and_the_price_it_was_judged_at() -> None:
    """``notional_note``: "``": its notional may be at most ..."``, or "" where no limit is
    set (0)"; ``judged_at``: "At what price the router judges an order's notional"."""
    _says(notional_note, 'or "" where no limit is set (0)')
    assert notional_note.notional_note(0, SYM, Side.BUY, OrdType.LIMIT, 100) == ""
    note = notional_note.notional_note(500, SYM, Side.BUY, OrdType.MARKET, 0)
    assert note == (
        ": its notional may be at most 500 minor units of USD, judged at its cap: the last "
        f"trade plus bandBps {SYM.band_bps}"
    )
    assert notional_note.judged_at(SYM, Side.SELL, OrdType.STOP, 0).endswith("its stopPrice")


def test_an_api_error_is_its_code_and_message_and_a_throttle_a_429_with_retry_after() -> None:
    """``ApiError``: "Answered as ``{"code": code, "msg": msg}`` with HTTP ``status``;
    ``retry_after_s`` adds a ``Retry-After`` header (429)"; ``throttle``: "429 with the
    seconds until ``key`` may go on"."""
    _says(api_errors.ApiError, 'Answered as ``{"code": code, "msg": msg}`` with HTTP')
    assert api_errors.bad_request(-1100, "bad").body() == {"code": -1100, "msg": "bad"}
    limiter = RateLimiter(1.0, 1)
    throttle(limiter, "k", "orders")
    with pytest.raises(ApiError) as raised:
        throttle(limiter, "k", "orders")
    err = raised.value
    assert (err.status, err.code) == (429, api_errors.TOO_MANY_REQUESTS)
    assert err.retry_after_s is not None and 0 < err.retry_after_s <= 1.0
    assert err.msg == "too many orders: the limit is 1/s"


def test_grouped_dict_keeps_groups_in_step_and_refuses_the_other_writes() -> None:
    """``GroupedDict``: "(``update``, ``setdefault``, ``popitem`` and ``|=`` raise) keep
    ``groups`` in step ... each group in the order its keys were first set"."""
    _says(grouped, "``update``, ``setdefault``, ``popitem`` and ``|=`` raise")
    d: GroupedDict[str, int, int] = GroupedDict(lambda key, value: value % 2)
    d["a"], d["b"], d["c"] = 1, 3, 2
    d["a"] = 5  # set again, same group: its place stays
    assert d.of(1) == [5, 3] and d.of(0) == [2]
    d["b"] = 4  # another group now
    assert d.of(1) == [5] and d.of(0) == [2, 4]
    del d["c"]
    assert d.pop("a") == 5 and d.pop("x", None) is None and d.groups == {0: {"b": 4}}
    for write in (d.update, lambda: d.setdefault("z"), d.popitem):
        with pytest.raises(NotImplementedError):
            write()
    with pytest.raises(NotImplementedError):
        d |= {"z": 1}
    d.clear()
    assert d.groups == {} and d.of(0) == []


# -- procs/matcher/main.py ---------------------------------------------------------------------


def test_published_position_walks_back_past_replay_marks_and_stops_at_recovered_ones(
    instance: str, tmp_path: Path
) -> None:
    """``published_position``: "A mark that a replay started (``REPLAY_SOURCE`` ...) says
    nothing of what went out, so the walk goes back past it, except on a ring that holds
    nothing before it"; "The ``RECOVERED_SOURCE`` mark says 'executed and published through
    its counter'"; an empty ring: (0, None)."""
    _says(published_position, "so the walk goes back past it, except on a ring that holds")
    _, out = make_rings(m_config(instance, tmp_path))
    producer = out.producer()
    assert published_position(out) == (0, None)
    producer.publish_batch([Heartbeat(0, REPLAY_SOURCE, 40)])
    assert published_position(out) == (40, None)
    engine = Matcher(symbol_specs(m_config(instance, tmp_path), "m1"))
    made = [*engine.execute(m_order(41, 9, 1)), *engine.execute(m_order(42, 9, 2))]
    producer.publish_batch([*made, Heartbeat(0, REPLAY_SOURCE, 30)])
    assert published_position(out) == (42, 2)  # Accepted + BookLevel of seq 42
    producer.publish_batch([Heartbeat(0, RECOVERED_SOURCE, 42), made[-1]])
    assert published_position(out) == (42, 1)
    producer.close()


def test_published_part_finds_the_held_run_or_counts_what_the_ring_shows() -> None:
    """``published_part``: "the end of the first run of them equal to ``held`` ... if none
    is, the count held"; ``routed_upto``: "None: a new input ring"."""
    _says(published_part, "if none is, the count held (what the ring shows, at least)")
    a, b, c = (Heartbeat(0, 1, k) for k in range(3))
    made = [SimpleNamespace(seq=5, v=v) for v in (a, b, c, b)]
    events = cast(list[Record], made)
    assert published_part(events, 5, cast(list[Record], [made[1]])) == 2
    assert published_part(events, 5, cast(list[Record], [made[2], made[3]])) == 4
    assert published_part(events, 5, cast(list[Record], [SimpleNamespace(seq=5)])) == 1
    empty = cast(Any, SimpleNamespace(last_published=lambda: None))
    assert routed_upto(empty) is None


def test_the_shell_passes_over_a_non_command_snapshots_on_asking_and_marks_when_idle(
    instance: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """matcher main.py: "A record that is not a command is logged and passed over"; "The
    first idle step after a batch marks the output 'published through' its last command";
    "``AdminCommand(SNAPSHOT)`` writes a snapshot after its batch"; step 4: "a command that
    step 3 already executed is skipped by its sequence number"."""
    _says(matcher_main, "A record that is not a command is")
    _says(matcher_main, "``AdminCommand(SNAPSHOT)`` writes a snapshot after its batch")
    cfg = m_config(instance, tmp_path, snapshot_every=0, batch=64)
    inbound, out = make_rings(cfg)
    tap = out.consumer("tap")
    shell = MatcherShell(cfg, "m1")
    tap.read(16)  # the start's two marks
    with caplog.at_level(logging.ERROR):
        run_shell(shell, inbound, [Heartbeat(0, 1, 1), m_order(1, 9, 1), m_order(1, 9, 2)])
    assert "not a command" in caplog.text
    got = tap.read(64)
    assert [type(e).__name__ for e in got] == ["Accepted", "BookLevel", "Heartbeat"]
    assert (got[2].source, got[2].counter) == (RECOVERED_SOURCE, 1)  # type: ignore[attr-defined]
    store = SnapshotStore(snapshot_dir(cfg, "matcher-m1"))
    assert store.latest() is None
    run_shell(shell, inbound, [AdminCommand(2, 0, AdminAction.SNAPSHOT, 0, 1)])
    snap = store.latest()
    assert snap is not None and snap[0] == 2
    shell.step(timeout_s=0)  # idle: marked at the snapshot already, no second mark
    marks = [(e.source, e.counter) for e in tap.read(64) if isinstance(e, Heartbeat)]
    assert marks == [(RECOVERED_SOURCE, 2)]
    run_shell(shell, inbound, [m_order(3, 9, 3)])
    shell.step(timeout_s=0)
    shell.step(timeout_s=0)
    marks = [(e.source, e.counter) for e in tap.read(64) if isinstance(e, Heartbeat)]
    assert marks == [(RECOVERED_SOURCE, 3)]
    shell.close()


def test_snapshot_every_and_a_shutdown_command_snapshot_and_stop(
    instance: str, tmp_path: Path
) -> None:
    """matcher main.py: "as does every ``snapshot_every`` commands and a clean stop
    (SIGTERM, SIGINT or ``AdminCommand(SHUTDOWN)``)"; ``run`` saves one as it ends."""
    _says(matcher_main, "as does every ``snapshot_every`` commands and a clean stop")
    cfg = m_config(instance, tmp_path, snapshot_every=3, batch=2)
    inbound, _ = make_rings(cfg)
    store = SnapshotStore(snapshot_dir(cfg, "matcher-m1"))
    shell = MatcherShell(cfg, "m1")
    run_shell(shell, inbound, [m_order(k, 9, k) for k in (1, 2, 3)])
    first = store.latest()
    assert first is not None and first[0] == 3  # 2 + 1 commands: past 3 after the second
    run_shell(shell, inbound, [AdminCommand(4, 0, AdminAction.SHUTDOWN, 0, 1)])
    assert shell.stopping and (store.latest() or (0,))[0] == 4
    shell.run()  # stops at once, with a snapshot
    shell.close()


def test_a_crash_between_publish_and_commit_replays_without_duplicate_events(
    instance: str, tmp_path: Path
) -> None:
    """matcher main.py: "A crash between publish and commit re-executes the batch after
    recovery, and step 3's rule drops the duplicate events"."""
    _says(matcher_main, "and step 3's rule drops the duplicate events")
    cfg = m_config(instance, tmp_path, snapshot_every=0, batch=64)
    inbound, out = make_rings(cfg)
    journal: list[Record] = [m_order(k, 9, k) for k in range(1, 6)]
    shell = MatcherShell(cfg, "m1")
    run_shell(shell, inbound, journal[:3])
    shell.consumer._publish_sequence = lambda upto: None  # type: ignore[method-assign]
    run_shell(shell, inbound, journal[3:])  # published, never committed
    shell.producer.close()
    again = MatcherShell(cfg, "m1", replay=journal)
    tap = out.consumer("tap")
    events = [e for e in tap.read(256) if not isinstance(e, Heartbeat)]
    assert [e.seq for e in events] == [s for s in range(1, 6) for _ in range(2)]  # type: ignore[attr-defined]
    assert again.matcher.last_seq == 5
    again.close()
