"""Review 120: the database writer's docstrings held to what its code does. This file covers
``projection.py``, sans I/O: which rows each journal record makes, their values and encodings,
balances sealed per batch, candle arithmetic, rows that do not depend on the batch bounds,
and the comments of ``migrations/0001_core.sql``, ``0006``, ``0007`` and ``0013`` about the
columns it fills. The journal is made by the real sequencer and matchers
(``journal_gen.JournalBuilder``) and replayed by a ``Follower``, as the writer does.
``test_review120_writer_docstrings2.py`` goes on with ``copy.py``, ``committer.py``,
``replay.py``, ``store.py`` against a real PostgreSQL (``tests/unit/conftest.py``'s ``dsn``),
``writer.py`` (its loop over a recording store), ``migrate.py`` and ``main.py``.

Convention: each claim is anchored by a short verbatim quote of the docstring or comment it
checks (whitespace folded, ``says``), so a reworded docstring fails here, naming the quote. A
claim checked and found right is a plain test; a disagreement (the docstring says X, the code
does Y) is a strict xfail asserting what the docstring says, its reason naming the side to fix.

Disagreements found (both files; all fixed since in the comments and docstrings): 0001's
``orders.price`` comment says a market buy's row
holds its cap, but the projection files 0 for a router-capped buy; 0001's ``orders.size``
comment says "filled + remaining", which a cancelled or expired order's row is not;
``replay.py`` says a snapshot above the checkpoint leaves the follower to start "from the
beginning of the journal", but ``Follower.restore`` starts from an older snapshot at or below
it; ``Batch`` says its rows are "written in one transaction", but its trades commit in their
lanes' own transactions before the batch's; ``migrate.py`` says each migration "runs in its
own transaction", but ``migrate`` runs them all in one (a later failure undoes the earlier).
No row is written twice or lost, no balance, candle or status disagrees with the journal in
what was tried here (adversarial journals: a fee schedule and fee account changed mid-batch,
a clock stepped back, refused replaces, every order kind, cut into batches of every size).
"""

from __future__ import annotations

import datetime as dt
import inspect
import random
import re
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest

from config.schema import RingexConfig
from procs.common.record_codec import RecordCodec
from procs.common.records import (
    CancelOrder,
    CreateAccount,
    FeeSchedule,
    NewOrder,
    OrderDone,
    Record,
    Rejected,
    ReplaceOrder,
    Trade,
    Transfer,
)
from procs.common.types import DoneReason, OrderFlag, OrdType, Side, StpMode, TimeInForce
from procs.core import fees
from procs.core.recovery import journal_reader
from procs.dbwriter import committer as committer_module
from procs.dbwriter import copy as copy_module
from procs.dbwriter import projection as projection_module
from procs.dbwriter import replay as replay_module
from procs.dbwriter.copy import (
    pg_micros,
)
from procs.dbwriter.projection import (
    ACCOUNTS,
    DONE_STATUS,
    ORDERS,
    TRADES,
    Batch,
    OrderRow,
    Projection,
    add_candle,
    to_datetime,
)
from procs.dbwriter.replay import Follower
from tests.unit.dbwriter.journal_gen import JournalBuilder, make_cfg
from tests.unit.dbwriter.test_review26_dbwriter import _every_kind

MIGRATIONS = Path(projection_module.__file__).with_name("migrations")
PROJECTION_DOC = projection_module.__doc__
COPY_DOC = copy_module.__doc__
COMMITTER_DOC = committer_module.__doc__
REPLAY_DOC = replay_module.__doc__
BUY, SELL = Side.BUY, Side.SELL
PRICE = 100_000


def says(doc: str | None, quote: str) -> None:
    """``doc`` still says ``quote`` (whitespace folded): the anchor of a claim checked."""
    assert " ".join(quote.split()) in " ".join((doc or "").split()), f"docstring lost {quote!r}"


def inspect_source(fn: Callable[..., object]) -> str:
    """``fn``'s source: its ``#:`` comments are what ``says`` anchors in."""
    return inspect.getsource(fn)


def sql(name: str) -> str:
    """A migration's text, its ``--`` comment marks dropped (a comment reads on over lines)."""
    lines = (MIGRATIONS / name).read_text().split("\n")
    return "\n".join(re.sub(r"^\s*-- ?", "", line) for line in lines)


class Rig:
    """A live journal (``JournalBuilder``) and the writer's replay of it (a ``Follower``),
    each command's rows going into ``batch`` as the writer's loop puts them."""

    def __init__(self, tmp_path: Path) -> None:
        self.cfg = make_cfg(tmp_path)
        self.b = JournalBuilder(self.cfg)
        self.f = Follower(self.cfg)
        self.batch = Batch(first_seq=1)

    def send(self, cmd: Record) -> tuple[Any, list[Record]]:
        stamped = self.b.submit(cmd)
        assert stamped is not None, f"the router refused {cmd!r}"
        return stamped, self._replay(stamped)

    def _replay(self, stamped: Any) -> list[Record]:
        events = self.f.step(stamped.seq, stamped)
        self.f.projection.process(stamped.seq, stamped, events, self.batch)
        return events

    def fund(self, *accounts: int) -> None:
        for account in accounts:
            self.send(CreateAccount(0, 0, 1, 1, self.b._next(), account))
            for asset in (1, 2, 3):
                self.send(Transfer(0, 0, 1, 1, self.b._next(), account, asset, 10**15, self.b.ref))

    def new(
        self, account: int, side: Side, price: int, qty: int, *, symbol: int = 1,
        kind: OrdType = OrdType.LIMIT, tif: TimeInForce = TimeInForce.GTC, flags: int = 0,
        stop: int = 0, client_id: bytes = b"",
    ) -> tuple[NewOrder, list[Record]]:  # fmt: skip
        return self.send(
            NewOrder(
                0, 0, 1, 1, self.b._next(), account, symbol, 0, side, kind, tif, flags,
                StpMode.NONE, price, qty, stop, 0, client_id,
            )
        )  # fmt: skip

    def cancel(self, account: int, oid: int, symbol: int = 1) -> list[Record]:
        return self.send(CancelOrder(0, 0, 1, 1, self.b._next(), account, symbol, oid))[1]

    def replace(
        self, account: int, oid: int, price: int, total: int, client_id: bytes = b""
    ) -> list[Record]:
        cmd = ReplaceOrder(0, 0, 1, 1, self.b._next(), account, 1, oid, price, total, client_id)
        return self.send(cmd)[1]

    def fee_schedule(
        self, symbol: int, maker: int, taker: int, account: int, *, replay: bool = True
    ) -> FeeSchedule:
        """A ``FeeSchedule`` journaled as a starting router journals one (``replay``: and
        replayed by ``f`` into ``batch``)."""
        b = self.b
        b.clock += 1_000_000_000
        record = b.sequencer._stamp(FeeSchedule(0, 0, symbol, maker, taker, account), b.clock)
        fees.apply(b.sequencer.accounts, record)
        b.writer.append(record.seq, b.codec.encode_slot(record), 1)
        b.last_seq = record.seq
        if replay:
            self._replay(record)
        return record

    def cut(self) -> Batch:
        """Seal the batch as ``DbWriter._flush`` does, and start the next one."""
        batch, p = self.batch, self.f.projection
        batch.seal(self.f.sequencer.accounts, p.decimals, p.assets_of)
        self.batch = Batch(first_seq=self.f.seq + 1)
        return batch


def trades_of(batch: Batch) -> list[tuple[int, ...]]:
    """The batch's trade rows, unpacked (the values, without the COPY lengths)."""
    return [
        tuple(r[2::2])
        for buf, _ in batch.trades.groups.values()
        for r in TRADES.row.iter_unpack(buf)
    ]


def accounts_of(batch: Batch) -> list[tuple[int, ...]]:
    return [tuple(r[2::2]) for r in ACCOUNTS.row.iter_unpack(bytes(batch.accounts.buf))]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    r.fund(10, 11)
    yield r
    r.b.close()


# -- projection: which rows a command makes ------------------------------------------------------


def test_a_trade_row_per_trade_with_each_sides_fee(rig: Rig) -> None:
    """ "a trade row per ``Trade``" and "A trade row carries each side's fee (quote minor
    units)"; 0007: "floor(notional x bps / 10000) under the maker's and the taker's fees":
    ``Projection.add_trade`` files every ``Trade`` event once, its columns in ``TRADES``
    order, ts as ``pg_micros``, and the fees 10 and 20 bps of price x qty (rounded down)."""
    says(PROJECTION_DOC, "a trade row per ``Trade``")
    says(PROJECTION_DOC, "A trade row carries each side's fee (quote minor units)")
    says(sql("0007_trade_fees.sql"), "floor(notional x bps / 10000) under the maker's and the")
    maker, _ = rig.new(10, SELL, PRICE, 7)
    taker, events = rig.new(11, BUY, PRICE + 5, 3)
    (trade,) = [e for e in events if isinstance(e, Trade)]
    scale = rig.f.sequencer.accounts.markets[1].quote_scale
    notional = PRICE * 3 * scale
    assert trades_of(rig.batch) == [
        (
            1, trade.trade_id, taker.seq, pg_micros(taker.ts_ns), PRICE, 3, int(BUY),
            maker.order_id, 10, taker.order_id, 11, notional * 10 // 10_000,
            notional * 20 // 10_000,
        )
    ]  # fmt: skip


def test_fees_are_those_in_force_when_the_command_was_replayed(rig: Rig) -> None:
    """ "under the fees in force in the replay's accounts when its command was replayed: a
    ``FeeSchedule`` changes them between commands only"; ``Projection.accounts``: "their
    markets hold the fees in force and their fee account the one trades credit": a trade
    before a mid-batch ``FeeSchedule`` keeps the old fees, one after it the new ones, and
    the new fee account is opened (an ``accounts`` row) and its balances marked."""
    says(PROJECTION_DOC, "a ``FeeSchedule`` changes them between commands only")
    says(inspect_source(Projection.__init__), "never the config of the day")
    rig.new(10, SELL, PRICE, 20)
    rig.new(11, BUY, PRICE, 4)
    schedule = rig.fee_schedule(1, 20, 5, 77)
    rig.new(11, BUY, PRICE, 4)
    first, second = trades_of(rig.batch)
    assert first[-2:] == (PRICE * 4 * 10 // 10_000, PRICE * 4 * 20 // 10_000)
    assert second[-2:] == (PRICE * 4 * 20 // 10_000, PRICE * 4 * 5 // 10_000)
    assert (77, schedule.seq, pg_micros(schedule.ts_ns)) in accounts_of(rig.batch)
    batch = rig.cut()
    fee_rows = {(a, s): (f, r) for a, s, f, r, _, _ in batch.balances if a == 77}
    assert fee_rows[77, 1] == (Decimal(PRICE * 4 * 25 // 10_000).scaleb(-6), Decimal(0))


def test_one_row_per_order_per_batch_its_latest_version(rig: Rig) -> None:
    """ "the latest version of every order touched (one row per order per batch)": an order
    placed, partly filled and replaced in one batch has one row, as the last command left it
    (``updated_seq`` that command's seq); 0001: "size ... (a replace changes it)"."""
    says(PROJECTION_DOC, "the latest version of every order touched (one row per order per")
    says(sql("0001_core.sql"), "(a replace changes it)")
    order, _ = rig.new(10, SELL, PRICE, 10)
    rig.new(11, BUY, PRICE, 4)
    rig.replace(10, order.order_id, PRICE + 1, 8)
    replace_seq = rig.f.seq
    rows = [r for oid, r in rig.batch.orders.items() if oid == order.order_id]
    assert len(rows) == 1
    row = dict(zip(ORDERS.names, rows[0], strict=True))
    assert (row["price"], row["size"], row["filled"], row["remaining"]) == (PRICE + 1, 8, 4, 4)
    assert (row["status"], row["updated_seq"], row["created_seq"]) == (2, replace_seq, order.seq)


def test_accounts_rows_from_create_account(rig: Rig) -> None:
    """Module: rows for "accounts": a ``CreateAccount`` makes an ``accounts`` row (id, its
    seq, its time as ``pg_micros``) in ``ACCOUNTS`` order."""
    says(PROJECTION_DOC, "accounts, transfers, 1m/1h/1d candles merged in the batch")
    rig.batch = Batch(first_seq=rig.f.seq + 1)
    created, _ = rig.send(CreateAccount(0, 0, 1, 1, rig.b._next(), 42))
    assert accounts_of(rig.batch) == [(42, created.seq, pg_micros(created.ts_ns))]
    assert ACCOUNTS.names == ("id", "created_seq", "created")


def test_transfers_rows_in_asset_units_and_their_balance_marked(rig: Rig) -> None:
    """0001: "Balances and transfers are exact numerics in asset units" and "amount ...
    asset units: > 0 deposit, < 0 withdrawal": a ``Transfer`` row is (seq, time, account,
    asset, amount / 10^decimals, key), and marks (account, asset) with its seq and time."""
    says(sql("0001_core.sql"), "Balances and transfers are exact numerics in asset units")
    says(sql("0001_core.sql"), "asset units: > 0 deposit, < 0 withdrawal")
    rig.batch = Batch(first_seq=rig.f.seq + 1)
    out, _ = rig.send(Transfer(0, 0, 1, 1, rig.b._next(), 10, 2, -123_456_789, 555))
    assert rig.batch.transfers == [
        (out.seq, to_datetime(out.ts_ns), 10, 2, Decimal("-1.23456789"), 555)
    ]
    assert rig.batch.dirty == {(10, 2): (out.seq, out.ts_ns)}


def test_balances_marked_with_the_last_command_that_marked_them(rig: Rig) -> None:
    """ "the (account, asset) pairs whose balance may have changed, each with the seq and
    time of the last command that marked it"; "any order event marks its account's base and
    quote of the symbol": a trade marks both parties' and the fee account's base and quote
    (at the seal), a later order of one party marks its pairs again with the later stamp."""
    says(PROJECTION_DOC, "each with the seq and time of the last command that marked it")
    says(PROJECTION_DOC, "any order event marks its account's base and quote of the symbol")
    rig.batch = Batch(first_seq=rig.f.seq + 1)
    rig.new(10, SELL, PRICE, 5)
    taker, _ = rig.new(11, BUY, PRICE, 2)
    later, _ = rig.new(10, SELL, PRICE + 9, 1, symbol=2)
    batch = rig.cut()
    stamps = {(a, s): seq for a, s, _, _, seq, _ in batch.balances}
    assert stamps == {
        (10, 2): taker.seq, (11, 2): taker.seq, (11, 1): taker.seq, (99, 2): taker.seq,
        (99, 1): taker.seq, (10, 1): later.seq, (10, 3): later.seq,
    }  # fmt: skip
    when = {(a, s): t for a, s, _, _, _, t in batch.balances}
    assert when[10, 3] == to_datetime(later.ts_ns)


def _db(batches: list[Batch]) -> dict[str, dict[Any, Any]]:
    """The tables the store's upserts (``store._UPSERTS``) leave, applied in Python."""
    db: dict[str, dict[Any, Any]] = {k: {} for k in ("trades", "orders", "bal", "tr", "acc", "c")}
    for batch in batches:
        for row in trades_of(batch):
            assert (row[0], row[1]) not in db["trades"], "a trade filed twice"
            db["trades"][row[0], row[1]] = row
        for oid, o in batch.orders.items():
            if oid not in db["orders"] or db["orders"][oid][15] <= o[15]:
                db["orders"][oid] = o[:14] + db["orders"].get(oid, o)[14:15] + o[15:]
        for b in batch.balances:
            if b[:2] not in db["bal"] or db["bal"][b[:2]][4] <= b[4]:
                db["bal"][b[:2]] = b
        for t in batch.transfers:
            db["tr"].setdefault(t[0], t)
        for a in accounts_of(batch):
            db["acc"].setdefault(a[0], a)
        for c in batch.candle_rows():
            old = db["c"].get(c[:3])
            if old is None:
                db["c"][c[:3]] = c
                continue
            first = old[3] if old[10] < c[10] else c[3]
            close = c[6] if c[11] > old[11] else old[6]
            db["c"][c[:3]] = (
                *c[:3], first, max(old[4], c[4]), min(old[5], c[5]), close, old[7] + c[7],
                old[8] + c[8], old[9] + c[9], min(old[10], c[10]), max(old[11], c[11]),
                old[12] + c[12], old[13] + c[13],
            )  # fmt: skip
    return db


def _replayed(cfg: RingexConfig, bounds: Callable[[int], bool]) -> list[Batch]:
    """The journal replayed by a fresh ``Follower``, cut after each seq ``bounds`` picks."""
    codec = RecordCodec()
    f = Follower(cfg)
    p = f.projection
    batches: list[Batch] = []
    batch: Batch | None = None
    for seq, image in journal_reader(cfg, codec).entries(1):
        command = codec.decode_slot(image)
        if batch is None:
            batch = Batch(first_seq=seq)
        p.process(seq, command, f.step(seq, command), batch)
        if bounds(seq):
            batch.seal(f.sequencer.accounts, p.decimals, p.assets_of)
            batches.append(batch)
            batch = None
    if batch is not None:
        batch.seal(f.sequencer.accounts, p.decimals, p.assets_of)
        batches.append(batch)
    return batches


def test_rows_do_not_depend_on_the_batch_bounds(rig: Rig) -> None:
    """ "``Batch.seal(accounts)`` reads those balances once, at the batch's last seq; a
    balance not marked after its stamp has not changed since, so the row (value,
    ``updated_seq``, ``updated``) is the same whatever the batch sizes: a rebuild equals the
    live database": a journal of every order kind with a fee schedule and fee account
    changed midway and the clock stepped back two hours, cut into one batch, a batch per
    command and batches of 7 and 31 commands, leaves the same tables once upserted as the
    store does (trades each once, orders, balances, transfers, accounts, candles)."""
    says(PROJECTION_DOC, "the same whatever the batch sizes: a rebuild equals the live database")
    rig.fund(12, 13, 14, 15)
    rng = random.Random(120)
    _every_kind(rig.b, 200, rng)
    rig.fee_schedule(1, 20, 4, 77, replay=False)
    rig.b.clock -= 2 * 3_600_000_000_000
    _every_kind(rig.b, 200, rng)
    rig.b.close()
    whole = _db(_replayed(rig.cfg, lambda seq: False))
    for bounds in (lambda s: True, lambda s: s % 7 == 0, lambda s: s % 31 == 3):
        assert _db(_replayed(rig.cfg, bounds)) == whole
    assert len(whole["trades"]) > 50 and 77 in whole["acc"]
    state = rig.b.sequencer.accounts.state()
    live = {(a, s): (f, r) for a, s, f, r in state.balances}
    decimals = {a.id: a.decimals for a in rig.cfg.assets}
    filed = {
        k: (v[2].scaleb(decimals[k[1]]), v[3].scaleb(decimals[k[1]]))
        for k, v in whole["bal"].items()
    }
    assert {k: v for k, v in filed.items() if v != (0, 0)} == live


def test_without_a_batch_only_the_open_orders_are_kept(rig: Rig) -> None:
    """ "With ``batch`` None it only keeps its orders up to date (replaying up to the
    checkpoint after a restart)": a replay with no batch ends with the same open orders (the
    same snapshot bytes) as one that made rows."""
    says(PROJECTION_DOC, "With ``batch`` None it only keeps its orders up to date")
    _every_kind(rig.b, 150, random.Random(7))
    rig.b.close()
    codec = RecordCodec()
    with_rows, without = Follower(rig.cfg), Follower(rig.cfg)
    batch = Batch(first_seq=1)
    for seq, image in journal_reader(rig.cfg, codec).entries(1):
        command = codec.decode_slot(image)
        with_rows.projection.process(seq, command, with_rows.step(seq, command), batch)
        without.projection.process(seq, command, without.step(seq, command), None)
    assert without.projection.orders and batch.orders
    assert without.projection.snapshot() == with_rows.projection.snapshot()


def test_the_flags_column_is_new_orders_flags(rig: Rig) -> None:
    """0006: "An order's flags (NewOrder.flags: 1 = post-only)": a post-only order's row has
    flags 1, a router-capped market buy's the ``CAPPED`` bit the router set."""
    says(sql("0006_order_flags.sql"), "An order's flags (NewOrder.flags: 1 = post-only)")
    post, _ = rig.new(10, SELL, PRICE + 50, 2, flags=OrderFlag.POST_ONLY)
    rig.new(10, SELL, PRICE, 5)
    rig.new(11, BUY, PRICE, 1)
    capped, _ = rig.new(11, BUY, 0, 2, kind=OrdType.MARKET, tif=TimeInForce.IOC)
    assert capped.flags == OrderFlag.CAPPED
    flags = ORDERS.names.index("flags")
    assert rig.batch.orders[post.order_id][flags] == 1
    assert rig.batch.orders[capped.order_id][flags] == OrderFlag.CAPPED


def test_a_capped_market_buys_row_holds_its_price_as_sent(rig: Rig) -> None:
    """0001: "price bigint NOT NULL, -- ticks, as sent (0: none; not the cap the router set)"
    (review 120: it said a market buy's row holds its cap): a market buy sent without a
    price, capped by the router, has 0 in its row (``Projection.process``, ``CAPPED``)."""
    says(sql("0001_core.sql"), "ticks, as sent (0: none; not the cap the router set)")
    rig.new(10, SELL, PRICE, 5)
    rig.new(11, BUY, PRICE, 1)  # a last price: the cap's reference
    capped, _ = rig.new(11, BUY, 0, 2, kind=OrdType.MARKET, tif=TimeInForce.IOC)
    assert capped.price > 0
    assert rig.batch.orders[capped.order_id][ORDERS.names.index("price")] == 0


def test_an_orders_size_is_filled_plus_remaining_while_open(rig: Rig) -> None:
    """0001: "size bigint NOT NULL, -- lots: filled + remaining while open" (review 120: "while
    open" was unsaid): an order of 10 filled 3 is 3 + 7; cancelled, size 10, filled 3,
    remaining 0."""
    says(sql("0001_core.sql"), "size bigint NOT NULL, -- lots: filled + remaining while open")
    order, _ = rig.new(10, SELL, PRICE, 10)
    rig.new(11, BUY, PRICE, 3)
    row: dict[str, Any] = dict(zip(ORDERS.names, rig.batch.orders[order.order_id], strict=True))
    assert (row["size"], row["filled"], row["remaining"]) == (10, 3, 7)
    (done,) = [e for e in rig.cancel(10, order.order_id) if isinstance(e, OrderDone)]
    assert done.reason == DoneReason.CANCELLED
    row = dict(zip(ORDERS.names, rig.batch.orders[order.order_id], strict=True))
    assert row["status"] == DONE_STATUS[DoneReason.CANCELLED]
    assert (row["size"], row["filled"], row["remaining"]) == (10, 3, 0)


def test_a_rejected_order_has_its_code_and_nothing_left(rig: Rig) -> None:
    """0001: "reject_code integer NOT NULL, -- procs.common.result_codes, 0 unless
    rejected": a post-only order that would take is rejected by its matcher: its row is
    status 8 (rejected), the ``Rejected`` code, remaining 0; an accepted order's code is 0."""
    says(sql("0001_core.sql"), "procs.common.result_codes, 0 unless rejected")
    resting, _ = rig.new(10, SELL, PRICE, 5)
    post, events = rig.new(11, BUY, PRICE, 2, flags=OrderFlag.POST_ONLY)
    (rejected,) = events
    assert isinstance(rejected, Rejected)
    row = dict(zip(ORDERS.names, rig.batch.orders[post.order_id], strict=True))
    assert (row["status"], row["reject_code"], row["remaining"]) == (8, int(rejected.code), 0)
    assert rig.batch.orders[resting.order_id][ORDERS.names.index("reject_code")] == 0


def test_a_refused_replace_marks_the_balances_and_files_no_order_row(rig: Rig) -> None:
    """ "the (account, asset) pairs whose balance may have changed": a replace of a pending
    stop, refused by its matcher (``Rejected``), marks the owner's base and quote with its
    stamp and files no new version of the order."""
    says(PROJECTION_DOC, "the (account, asset) pairs whose balance may have changed")
    rig.new(10, SELL, PRICE, 5)
    rig.new(11, BUY, PRICE, 1)
    stop, _ = rig.new(11, BUY, PRICE + 10, 2, kind=OrdType.STOP_LIMIT, stop=PRICE + 5)
    rig.batch = Batch(first_seq=rig.f.seq + 1)
    events = rig.replace(11, stop.order_id, PRICE + 11, 3)
    assert [type(e) for e in events] == [Rejected]
    assert rig.batch.orders == {}
    assert rig.batch.dirty == {(11, 2): (rig.f.seq, rig.b.clock), (11, 1): (rig.f.seq, rig.b.clock)}


def test_client_order_id_is_new_orders_or_a_replaces(rig: Rig) -> None:
    """0013: "The client's order id (NewOrder.client_id ...)" and "orders whose id was not
    kept (a longer ClOrdID), have ''"; ``OrderRow.client_id``: the last ``Replaced``'s
    ``ReplaceOrder``'s: a replace with an id renames the row, one with b"" keeps it."""
    text = sql("0013_order_client_id.sql")
    says(text, "The client's order id (NewOrder.client_id")
    says(text, "orders whose id was not kept (a longer ClOrdID), have ''")
    order, _ = rig.new(10, SELL, PRICE, 5, client_id=b"first")
    plain, _ = rig.new(10, SELL, PRICE + 3, 5)
    column = ORDERS.names.index("client_order_id")
    assert rig.batch.orders[order.order_id][column] == b"first"
    assert rig.batch.orders[plain.order_id][column] == b""
    rig.replace(10, order.order_id, PRICE + 1, 5, b"second")
    assert rig.batch.orders[order.order_id][column] == b"second"
    rig.replace(10, order.order_id, PRICE + 2, 4)
    assert rig.batch.orders[order.order_id][column] == b"second"


def test_rows_counts_every_kind_of_row(rig: Rig) -> None:
    """``Batch.rows``: "Rows so far (what ``batch_rows`` bounds)": trades, accounts, orders,
    transfers, marked balances and candles, counted as they come."""
    says(Batch.rows.__doc__, "Rows so far (what ``batch_rows`` bounds)")
    rig.batch = Batch(first_seq=rig.f.seq + 1)
    rig.new(10, SELL, PRICE, 5)  # an order, 2 balances
    rig.new(11, BUY, PRICE, 2)  # an order, a trade, a candle, 2 balances
    rig.send(Transfer(0, 0, 1, 1, rig.b._next(), 11, 3, 5, 777))  # a transfer, a balance
    assert rig.batch.rows() == 2 + 1 + 1 + 1 + 5


def test_seal_freezes_the_batch(rig: Rig) -> None:
    """``Batch.seal``: "Freeze the batch at ``last_seq``: pack the orders, read the marked
    balances": a second seal, after the accounts moved on, changes nothing."""
    says(Batch.seal.__doc__, "Freeze the batch at ``last_seq``: pack the orders, read the marked")
    rig.new(10, SELL, PRICE, 5)
    batch = rig.cut()
    balances, orders = list(batch.balances), bytes(batch.order_rows.buf)
    rig.new(10, SELL, PRICE, 5)
    batch.seal(rig.f.sequencer.accounts, rig.f.projection.decimals, rig.f.projection.assets_of)
    assert batch.balances == balances and bytes(batch.order_rows.buf) == orders
    assert batch.order_rows.count == len(batch.orders)


def test_order_row_fields_are_the_orders_columns() -> None:
    """``OrderRow``: "field order = ``ORDERS``, less ``updated_seq`` and ``updated``, which
    come before ``flags``, ``display`` and ``client_id`` there"."""
    says(OrderRow.__doc__, "less ``updated_seq`` and ``updated``, which come before ``flags``")
    fields = OrderRow.__struct_fields__
    names = list(ORDERS.names)
    assert len(fields) == len(names) - 2
    assert names[15:17] == ["updated_seq", "updated"]
    assert names[17:] == ["flags", "display", "client_order_id"]
    assert fields[-3:] == ("flags", "display", "client_id")


def _trade(tid: int, price: int, qty: int, minute: int) -> Trade:
    ts = (1_000_000 + minute) * 60_000_000_000 + 1
    return Trade(tid, ts, tid, 1, price, qty, Side.BUY, 1, 1, 1, 0, 2, 2, 1, 0)


def test_a_1m_candle_is_open_high_low_close_volumes_count_and_ids() -> None:
    """``add_candle``: "[open, high, low, close, volume, quote volume, trades, first trade
    id, last trade id, taker buy volume, taker buy quote volume]" of the trade's symbol and
    minute (every trade here bought by its aggressor but trade 6, sold)."""
    says(add_candle.__doc__, "[open, high, low, close, volume, quote volume, trades, first trade")
    candles: dict[tuple[int, int], list[int]] = {}
    sold = msgspec.structs.replace(_trade(6, 90, 1, 0), aggressor=Side.SELL)
    for t in (_trade(5, 100, 2, 0), sold, _trade(7, 120, 3, 0), _trade(8, 95, 1, 0)):
        add_candle(candles, t)
    bought = 200 + 360 + 95
    assert candles == {(1, 1_000_000): [100, 120, 90, 95, 7, bought + 90, 4, 5, 8, 6, bought]}


def test_longer_candles_merge_the_1m_ones_open_and_close_by_trade_id() -> None:
    """``Batch.candle_rows``: "(symbol, interval_s, bucket, open, high, low, close, volume,
    quote_volume, trades, first_trade_id, last_trade_id, taker_buy_volume,
    taker_buy_quote_volume) per candle the batch touched: its 1m candles, and the longer ones
    merged from them": with the clock stepped back (trade 3 in
    an earlier minute than trades 1 and 2), the day's open is trade 1's and its close trade
    3's, by id, not by minute; buckets are UTC minute, hour and day starts."""
    says(Batch.candle_rows.__doc__, "its 1m candles, and the longer ones merged from them")
    batch = Batch(first_seq=1)
    for t in (_trade(1, 100, 1, 30), _trade(2, 110, 2, 31), _trade(3, 90, 4, 29)):
        add_candle(batch.candles, t)
    rows = {(r[1], r[2]): r[3:] for r in batch.candle_rows()}
    minute = (1_000_000 + 29) * 60
    hour, day = minute - minute % 3600, minute - minute % 86_400
    at = dt.datetime.fromtimestamp
    assert rows[60, at(minute, dt.UTC)] == (90, 90, 90, 90, 4, Decimal(360), 1, 3, 3, 4, 360)
    whole = (100, 110, 90, 90, 7, Decimal(100 + 220 + 360), 3, 1, 3, 7, 100 + 220 + 360)
    if hour == (minute + 120) - (minute + 120) % 3600:  # the three minutes share an hour
        assert rows[3600, at(hour, dt.UTC)] == whole
    assert rows[86_400, at(day, dt.UTC)] == whole
    assert len(rows) == 3 + 1 + 1


def test_status_codes_are_the_order_statuses_table() -> None:
    """Projection: "order_statuses codes (migrations/0001_core.sql)": each code the
    projection writes names the status 0001 inserts for it."""
    says(inspect.getsource(projection_module), "# order_statuses codes (migrations/0001_core.sql)")
    text = sql("0001_core.sql")
    expect = {
        "PENDING": "pending", "NEW": "new", "PARTIALLY_FILLED": "partially_filled",
        "FILLED": "filled", "CANCELLED": "cancelled", "EXPIRED": "expired",
        "SELF_TRADE": "self_trade_cancelled", "MASS_CANCELLED": "mass_cancelled",
        "REJECTED": "rejected",
    }  # fmt: skip
    for constant, name in expect.items():
        says(text, f"({getattr(projection_module, constant)}, '{name}')")
    assert {DONE_STATUS[r] for r in DoneReason} == {3, 4, 5, 6, 7}
