"""Review 339: the PostgreSQL database as a back office reads it.

Reviewed: README (the database writer's row in the process table, ``[database]``, trade fees,
``client_order_id``, units, the host's clock), ``procs/dbwriter/migrations/*.sql`` (every
table, column comment and view), ``procs/dbwriter/projection.py``, ``store.py`` (the upserts,
the candles' merge, the lanes), ``users.py``, ``writer.py`` (``WriterOptions``, the
housekeeping), ``procs/core/sequencer.py`` (``_stamp``, ``_account``), ``procs/core/money.py``
(``fees``), ``procs/admin/client.py`` (``transfer``'s key).

Rig: ``tests/unit/dbwriter/journal_gen.py``'s ``JournalBuilder`` (the real sequencer, accounts
and matchers make a real journal; the router's ``FeeSchedule`` records journaled as a starting
router does, as ``test_trade_fees``), kept as the exchange's own view: its matchers' books, its
router's accounts, the events it saw and the transfers it sequenced. The real ``DbWriter``
files the journal into a database of its own in the session's private PostgreSQL
(``tests/unit/conftest.py``'s ``dsn``), crashed mid-batch between its lanes' commit and its own
through ``PgStore.before_commit`` (as ``test_review84_lane_rewind``), and ``_ledger_problems``
reconciles the tables with the exchange and with each other, as a back office would, in SQL.

Faults found (1 documented as a limit, 2 fixed in README):

1. After the router's wall clock steps back (an NTP step, a VM resumed: README's "The host's
   clock" expects steps and handles them in the gateways and the transfer keys), the database
   files an order updated before it was created and a trade made before the orders that made
   it: ``orders.updated < orders.created``, ``trades.ts < orders.created`` of its maker and
   taker. A back office that checks an order's life or reports fills by time calls that
   wrong. Cause: ``procs/core/sequencer.py:261`` (``_stamp``) stamps each command with the
   raw ``time.time_ns()`` that ``procs/router/intake.py:76`` passes, so time goes back along
   the seqs, and ``procs/dbwriter/projection.py:288`` files each row's times from its
   command's stamp. Fix: stamp monotonically in the sequencer (``ts_ns = max(now_ns,
   last_ts_ns)``, kept in its state so a replay and a restart keep it), as the journal's seq
   order is the exchange's order of events; at the least the projection should file
   ``updated = max(updated, created)``. Documented (README, The host's clock) as a limit,
   its test a strict xfail: a monotonic stamp is router state a restart must recover, and
   the README already asks for an NTP that slews.
2. The schema says prices are "ticks" and sizes "lots" (``0001_core.sql:2``, ``:65``, ``:67``,
   ``:103``-``:108``; ``0002_trades.sql:13``-``:14``; ``0014_candle_taker_buy.sql:1``; and
   README's "Prices are integer ticks, quantities integer lots"), beside a ``symbols`` table
   with ``tick`` and ``lot`` columns; but the columns hold price units (10^-price_decimals)
   and size units (10^-qty_decimals), of which a tick and a lot are multiples. For a symbol
   with ``tick = 5`` and ``lot = 10`` a back office following the schema reads a trade at
   1000.05 x 0.0030 as 100,005 ticks (5,000.25) of 30 lots (0.03). The ``*_decimal`` views
   are right. Cause: the comments, ``procs/dbwriter/migrations/0001_core.sql:2`` and
   ``0002_trades.sql:13-14``. Fix: a migration that sets ``COMMENT ON COLUMN`` for every
   price, size and volume column (and fixes the SQL comments) to "price units of
   10^-symbols.price_decimals (a multiple of symbols.tick)" and "size units of
   10^-symbols.qty_decimals (a multiple of symbols.lot)", and the same words in README.
   Fixed in README (the Database section and the records' paragraph name the units, with an
   example); the comments of applied migrations keep their words (each file's checksum is
   recorded by the databases that applied it).

Sound: after a scripted day (deposits, resting orders, a partial fill, an amend, a cancel, a
market buy, a stop triggered, an iceberg's slices, a self-trade prevented, a withdrawal by a
user and by the fee account) and a random workload of 1,500 commands on two symbols (limit
GTC/IOC/FOK/DAY, post-only, market with and without a worst price, stop and stop-limit,
icebergs, every STP mode, cancels, replaces, mass cancels, halts, resumes, session ends,
deposits and withdrawals), written by a writer crashed four times mid-batch and restarted with
its own snapshots and other batch sizes: each order's filled equals the sum of its trades,
``size = filled + remaining`` while open, an open order's ``remaining`` is its book leaves
plus an iceberg's hidden reserve, an ended order has no remaining and its status says why
(filled ones filled to their size, rejected ones a reject code, the others none), each
trade's fees are floor(notional x bps / 10,000) under the configured maker/taker fees, the
fee account's balance is every fee less its withdrawals, ``balances`` equals the router's
accounts (free and reserved) at the checkpoint, each of three checkpoints along the journal,
``transfers`` holds each sequenced transfer once with its amount in asset units and its key,
and every 1m/1h/1d candle equals what its trades make (OHLC by trade id, volume, quote
volume, count, first and last id, taker buy volumes), nothing filed twice; the trades
partitions are UTC days, with the BRIN index on ``ts``; ``users`` mirrors the users file
(comp id, session id, account, scrypt string) through a removal and a swap of session ids.

Leads not shown: a market buy sent with a worst price above its cap is filed with price 0,
which the schema's "as sent" contradicts (README documents it for the live views and the
history alike, so not reported). TimescaleDB is not installed here, so the hypertable path
(chunks, ``rewind_lanes``' delete on it) was not run. ``symbols.tick``/``lot`` are upserted
from the writer's config at each start, while the rules are journaled state: a writer started
under an older config than the router's would show the older rules (not driven). The
``orders_decimal`` view lists neither ``flags``, ``display`` nor ``client_order_id`` (added
later), so a back office reading it cannot tell a LIMIT_MAKER or an iceberg (style, not a
mismatch).
"""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest

from config.schema import RingexConfig
from procs.common.records import (
    AdminCommand,
    CancelOrder,
    MassCancel,
    Record,
    ReplaceOrder,
    Transfer,
)
from procs.common.types import AdminAction, OrdType, Side, StpMode, TimeInForce
from procs.common.users import UserStore
from procs.dbwriter.projection import CANDLE_INTERVALS_S, Batch
from procs.dbwriter.writer import DbWriter, WriterOptions
from tests.unit.dbwriter.journal_gen import FEE_ACCOUNT, JournalBuilder, fund, make_cfg, write_all

USD, BTC, ETH = 1, 2, 3
ROOT = Path(__file__).parents[3]
MIGRATIONS = ROOT / "procs" / "dbwriter" / "migrations"


class _CrashError(Exception):
    """The writer dies between its lanes' commit and its batch's."""


class _Tap(JournalBuilder):
    """The builder, keeping also the transfers it sequenced (the admin commands' record)."""

    def __init__(self, cfg: RingexConfig, seed: int = 1) -> None:
        super().__init__(cfg, seed)
        self.transfers: list[Transfer] = []
        b = self
        for record in b.sequencer.fee_changes(b.clock):  # as a starting router does
            b.writer.append(record.seq, b.codec.encode_slot(record), 1)
            b.last_seq = record.seq

    def took(self, stamped: Record, events: list[Record]) -> None:
        super().took(stamped, events)
        if isinstance(stamped, Transfer):
            self.transfers.append(stamped)


def _transfer(b: JournalBuilder, account: int, asset: int, amount: int, key: int) -> None:
    assert b.submit(Transfer(0, 0, 1, 1, b._next(), account, asset, amount, key))


def _write(cfg: RingexConfig, dsn: str, crash_at: tuple[int, ...] = ()) -> None:
    """A writer per entry of ``crash_at``, each dying before its n-th batch's commit (its
    lanes committed), with snapshots of its own every 150 commands; then one to the end."""
    opts = WriterOptions(batch_rows=97, batch_ms=10**6, snapshot_every=150)
    for k in crash_at:
        writer = DbWriter(cfg, dsn, opts)
        batches = [0]

        def crash(_conn: Any, _batch: Batch, batches: list[int] = batches, k: int = k) -> None:
            batches[0] += 1
            if batches[0] == k:
                raise _CrashError

        writer.store.before_commit.append(crash)
        try:
            with pytest.raises(_CrashError):
                writer.run(to_end=True)
        finally:
            writer.close()
    write_all(cfg, dsn, batch_rows=53)


_CANDLES_FROM_TRADES = """
WITH t AS (
    SELECT symbol_id, date_bin(make_interval(secs => %(iv)s), ts, 'epoch') AS bucket, trade_id,
           price, size, aggressor FROM trades
), made AS (
    SELECT symbol_id, bucket, (array_agg(price ORDER BY trade_id))[1] AS open,
           max(price) AS high, min(price) AS low,
           (array_agg(price ORDER BY trade_id DESC))[1] AS close,
           sum(size)::numeric AS volume, sum(price::numeric * size) AS quote_volume,
           count(*) AS trades, min(trade_id) AS first_id, max(trade_id) AS last_id,
           coalesce(sum(size) FILTER (WHERE aggressor = 1), 0)::numeric AS tb_volume,
           coalesce(sum(price::numeric * size) FILTER (WHERE aggressor = 1), 0) AS tb_quote
    FROM t GROUP BY 1, 2
)
SELECT made.*, c.* FROM made FULL JOIN (SELECT * FROM candles WHERE interval_s = %(iv)s) c
    ON c.symbol_id = made.symbol_id AND c.bucket = made.bucket
WHERE (made.open, made.high, made.low, made.close, made.volume, made.quote_volume,
       made.trades, made.first_id, made.last_id, made.tb_volume, made.tb_quote)
   IS DISTINCT FROM (c.open, c.high, c.low, c.close, c.volume, c.quote_volume, c.trades,
       c.first_trade_id, c.last_trade_id, c.taker_buy_volume, c.taker_buy_quote_volume)
"""


def _balances_problems(conn: psycopg.Connection[Any], b: JournalBuilder) -> list[object]:
    decimals = {a.id: a.decimals for a in b.cfg.assets}
    want = {(a, s): (f, r) for a, s, f, r in b.sequencer.accounts.state().balances}
    rows = conn.execute("SELECT account_id, asset_id, free, reserved FROM balances").fetchall()
    got = {(a, s): (int(f.scaleb(decimals[s])), int(r.scaleb(decimals[s]))) for a, s, f, r in rows}
    got = {k: v for k, v in got.items() if v != (0, 0)}
    return [] if got == want else [("balances", sorted(got.items()), sorted(want.items()))]


def _ledger_problems(dsn: str, b: _Tap) -> list[object]:
    """Every disagreement between the tables, and with the exchange's own view."""
    problems: list[object] = []
    resting: dict[int, Any] = {}
    for matcher in b.matchers.values():
        for book in matcher.books.values():
            resting |= dict(book.orders)
    with psycopg.connect(dsn) as conn:
        (checkpoint,) = conn.execute("SELECT last_seq FROM checkpoint").fetchone() or (0,)
        if checkpoint != b.last_seq:
            problems.append(("checkpoint", checkpoint, b.last_seq))
        trades = conn.execute(
            "SELECT symbol_id, trade_id, price, size, maker_order_id, taker_order_id, "
            "maker_fee, taker_fee FROM trades"
        ).fetchall()
        if sorted((t[0], t[1]) for t in trades) != sorted((t.symbol, t.trade_id) for t in b.trades):
            problems.append(("trades", len(trades), len(b.trades)))
        fills: dict[int, int] = {}
        for symbol, trade_id, price, size, maker, taker, maker_fee, taker_fee in trades:
            fills[maker] = fills.get(maker, 0) + size
            fills[taker] = fills.get(taker, 0) + size
            if (maker_fee, taker_fee) != b.sequencer.accounts.markets[symbol].fees(price, size):
                problems.append(("fee", symbol, trade_id, maker_fee, taker_fee))
        orders = conn.execute(
            "SELECT id, size, remaining, filled, status, reject_code, created_seq, "
            "updated_seq FROM orders"
        ).fetchall()
        if sorted(o[0] for o in orders) != sorted(b.order_ids):
            problems.append(("orders", len(orders), len(b.order_ids)))
        for oid, size, remaining, filled, status, code, created_seq, updated_seq in orders:
            row = (oid, size, remaining, filled, status, code)
            if fills.get(oid, 0) != filled:
                problems.append(("filled is not the sum of its trades", row, fills.get(oid)))
            if created_seq > updated_seq:
                problems.append(("updated_seq before created_seq", row))
            if status in (1, 2) and size != filled + remaining:
                problems.append(("open size", row))
            if status not in (0, 1, 2) and remaining:
                problems.append(("ended with remaining", row))
            if status == 3 and filled != size:
                problems.append(("filled short of size", row))
            if (status == 8) != (code != 0):
                problems.append(("reject code", row))
            if oid in resting and remaining != resting[oid].leaves + resting[oid].reserve:
                problems.append(("remaining is not the book's", row, resting[oid]))
            if oid in b.done and filled != b.done[oid].filled_qty:
                problems.append(("filled is not the OrderDone's", row, b.done[oid]))
        problems += _balances_problems(conn, b)
        transfers = conn.execute(
            "SELECT t.seq, t.account_id, t.asset_id, t.amount * power(10::numeric, a.decimals),"
            " t.key FROM transfers t JOIN assets a ON a.id = t.asset_id ORDER BY t.seq"
        ).fetchall()
        sent = [(t.seq, t.account, t.asset, t.amount, t.key) for t in b.transfers]
        if [(s, a, x, int(v), k) for s, a, x, v, k in transfers] != sent:
            problems.append(("transfers", transfers, sent))
        for interval in CANDLE_INTERVALS_S:
            bad = conn.execute(_CANDLES_FROM_TRADES, {"iv": interval}).fetchall()
            if bad:
                problems.append(("candles", interval, bad[:3]))
    return problems


def _scripted_day(b: _Tap) -> dict[str, int]:
    """A back office's day: every kind of event once; returns the interesting order ids."""
    fund(b, 10, {USD: 10**12, BTC: 10**10})  # 1,000,000 USD, 100 BTC
    fund(b, 11, {USD: 10**12, BTC: 10**10})
    ice = b.new_order(10, Side.SELL, 100_000, 30, display=10)
    rest = b.new_order(10, Side.SELL, 100_020, 20)
    assert ice and rest
    b.new_order(11, Side.BUY, 100_000, 15)  # the iceberg's first slice and 5 of the next
    amended = b.submit(ReplaceOrder(*b._header(10, 1), rest.order_id, 100_010, 25))
    assert amended
    stop = b.new_order(11, Side.BUY, 0, 5, ord_type=OrdType.STOP, stop=100_010)
    market = b.new_order(11, Side.BUY, 0, 20, ord_type=OrdType.MARKET, tif=TimeInForce.IOC)
    bid = b.new_order(10, Side.BUY, 99_000, 4, stp=StpMode.CANCEL_NEWEST)
    stp = b.new_order(10, Side.SELL, 99_000, 4, stp=StpMode.CANCEL_NEWEST)
    assert stop and market and bid and stp
    assert b.submit(CancelOrder(*b._header(10, 1), bid.order_id))
    _transfer(b, 11, USD, -(10**6), 777)  # a withdrawal of 1 USD
    _transfer(b, FEE_ACCOUNT, USD, -1, 778)  # the fee account's first micro-dollar out
    b.close()
    return {
        "iceberg": ice.order_id, "amended": rest.order_id, "stop": stop.order_id,
        "market": market.order_id, "cancelled": bid.order_id, "stp": stp.order_id,
    }  # fmt: skip


def _random_commands(b: _Tap, n: int, rng: random.Random, first_key: int) -> None:
    accounts = (10, 11, 12, 13)
    for _ in range(n):
        a, symbol = rng.choice(accounts), rng.choice((1, 2))
        side = rng.choice((Side.BUY, Side.SELL))
        book = b.matchers[b.owner[symbol]].books[symbol]
        mine = [oid for oid, o in book.orders.items() if o.account == a]
        roll, px = rng.random(), 100_000 + rng.randint(-30, 30)
        stp = rng.choice(list(StpMode))
        if mine and roll < 0.1:
            b.submit(CancelOrder(*b._header(a, symbol), rng.choice(mine)))
        elif mine and roll < 0.2:
            replace = (rng.choice(mine), px, rng.randint(1, 80))
            b.submit(ReplaceOrder(*b._header(a, symbol), *replace))
        elif roll < 0.3:
            worst = 0 if rng.random() < 0.5 else px + (50 if side == Side.BUY else -50)
            qty = rng.randint(1, 40)
            market, ioc = OrdType.MARKET, TimeInForce.IOC
            b.new_order(a, side, worst, qty, symbol=symbol, stp=stp, ord_type=market, tif=ioc)
        elif roll < 0.4:
            qty = rng.randint(5, 80)
            b.new_order(a, side, px, qty, symbol=symbol, stp=stp, display=rng.randint(1, qty))
        elif roll < 0.47:
            at = px + (10 if side == Side.BUY else -10)
            limit = 0 if rng.random() < 0.5 else at
            kind = OrdType.STOP_LIMIT if limit else OrdType.STOP
            b.new_order(a, side, limit, rng.randint(1, 30), symbol=symbol, ord_type=kind, stop=at)
        elif roll < 0.485:
            actions = (AdminAction.END_OF_SESSION, AdminAction.HALT, AdminAction.RESUME)
            action = rng.choice((*actions, AdminAction.RESUME))
            b.submit(AdminCommand(0, 0, action, rng.choice((0, symbol)), b._next()))
        elif roll < 0.49:
            b.submit(MassCancel(0, 0, 1, 1, b._next(), a, symbol))
        elif roll < 0.52:
            amount = rng.choice((1, -1)) * rng.randint(1, 10**6)
            b.submit(Transfer(0, 0, 1, 1, b._next(), a, rng.choice((1, 2, 3)), amount, first_key))
            first_key += 1
        elif roll < 0.53:
            amount = -rng.randint(1, 100)
            b.submit(Transfer(0, 0, 1, 1, b._next(), FEE_ACCOUNT, USD, amount, first_key))
            first_key += 1
        else:
            tifs = (TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.DAY)
            tif = rng.choice((TimeInForce.GTC, *tifs))
            flags = 1 if rng.random() < 0.1 else 0
            b.new_order(
                a, side, px, rng.randint(1, 50), symbol=symbol, tif=tif, stp=stp, flags=flags
            )


# -- faults -------------------------------------------------------------------------------------


@pytest.mark.xfail(
    strict=True,
    reason="a documented limit (README, The host's clock; review 339): the router stamps "
    "commands with the wall clock as read, so a step back files an order updated before it "
    "was created, and its trade before it (sequencer.py _stamp); a slewing NTP never steps",
)
def test_a_router_clock_stepped_back_files_no_order_updated_before_it_was_created(
    tmp_path: Path, dsn: str
) -> None:
    """Scenario: a seller rests 5 BTC at 1000.00; the router's wall clock then steps back 30 s
    (an NTP step, a VM resumed: README's "The host's clock" says steps happen and are handled),
    and a buyer takes the 5. The journal's seqs say the order came first, then its fill.
    Expected: the back office's checks hold: ``orders.created <= orders.updated`` for both
    orders, and the trade is not made before either order was placed (``trades.ts >=
    orders.created`` of its maker and taker). Now: the sell's row is updated 23 s before it
    was created, and the trade is filed 23 s before the sell it filled existed; each row's
    time is its command's raw ``time.time_ns()`` stamp (``Sequencer._stamp``)."""
    cfg = make_cfg(tmp_path)
    b = _Tap(cfg)
    fund(b, 10, {USD: 10**12, BTC: 10**10})
    fund(b, 11, {USD: 10**12, BTC: 10**10})
    sell = b.new_order(10, Side.SELL, 100_000, 5)
    assert sell
    b.clock -= 30_000_000_000  # the router's clock stepped back 30 s (submit adds its 7 s)
    buy = b.new_order(11, Side.BUY, 100_000, 5)
    assert buy and len(b.trades) == 1
    b.close()
    write_all(cfg, dsn)
    with psycopg.connect(dsn) as conn:
        backwards = conn.execute(
            "SELECT id, created, updated FROM orders WHERE updated < created ORDER BY id"
        ).fetchall()
        early = conn.execute(
            "SELECT t.trade_id, o.id FROM trades t JOIN orders o "
            "ON o.id IN (t.maker_order_id, t.taker_order_id) WHERE t.ts < o.created"
        ).fetchall()
    assert (backwards, early) == ([], [])


def test_trade_prices_and_sizes_are_in_the_units_readme_names(tmp_path: Path, dsn: str) -> None:
    """Scenario: BTC-USD trades with ``tick = 5`` and ``lot = 10`` (README: "a price is a
    multiple of tick price units of 10^-price_decimals"); a seller rests 0.0030 BTC at
    1000.05 and a buyer takes it. A back office reads ``trades`` as its schema documents it:
    ``price bigint -- ticks``, ``size bigint -- lots`` (``0002_trades.sql``; ``0001_core.sql``:
    "Prices are integer ticks and sizes integer lots"; README: "Prices are integer ticks,
    quantities integer lots"), with the symbol's ``tick`` and ``lot`` in ``symbols``.
    Expected: the columns hold what the comments name (20,001 ticks of 5, 3 lots of 10),
    or name what they hold. Was (fixed in README): they hold 100,005 price units and 30 size
    units, so the documented reading, price x tick x 10^-2, gave 5,000.25 USD where
    ``trades_decimal`` (right) says 1000.05; README's Database section now names the units
    (the schema's comments, in applied migrations, keep the words ticks and lots)."""
    symbols = [
        msgspec.structs.replace(s, tick=5, lot=10, min_qty=10) if s.id == 1 else s
        for s in make_cfg(tmp_path).symbols
    ]
    cfg = msgspec.structs.replace(make_cfg(tmp_path), symbols=symbols)
    b = _Tap(cfg)
    fund(b, 10, {USD: 10**12, BTC: 10**10})
    fund(b, 11, {USD: 10**12, BTC: 10**10})
    assert b.new_order(10, Side.SELL, 100_005, 30)
    assert b.new_order(11, Side.BUY, 100_005, 30)
    b.close()
    write_all(cfg, dsn)
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT t.price, t.size, s.tick, s.lot, d.price, d.size FROM trades t "
            "JOIN symbols s ON s.id = t.symbol_id JOIN trades_decimal d "
            "ON d.trade_id = t.trade_id AND d.symbol = s.name"
        ).fetchone()
    assert row is not None
    price, size, tick, lot, price_decimal, size_decimal = row
    assert (tick, lot, price_decimal, size_decimal) == (5, 10, Decimal("1000.05"), Decimal("0.003"))
    said = " ".join((ROOT / "README.md").read_text().split())
    assert "price units of 10^-price_decimals and size units of 10^-qty_decimals" in said
    assert "`1000.05` at a tick of 5 is 100005, not 20001" in said
    assert (price, size) == (price_decimal * 100, size_decimal * 10_000)


# -- sound --------------------------------------------------------------------------------------


def test_sound_a_scripted_day_reconciles_across_the_tables(tmp_path: Path, dsn: str) -> None:
    """Deposits, resting orders, a partial fill, an amend, a cancel, a market buy, a stop
    triggered, an iceberg's slices, a self-trade prevented, withdrawals: every table agrees
    with the exchange and with the others, and the notable rows say what happened."""
    cfg = make_cfg(tmp_path)
    b = _Tap(cfg)
    ids = _scripted_day(b)
    write_all(cfg, dsn)
    assert _ledger_problems(dsn, b) == []
    with psycopg.connect(dsn) as conn:
        rows = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT id, status, price, size, filled, remaining, display FROM orders"
            )
        }
        (fees,) = conn.execute("SELECT sum(maker_fee + taker_fee) FROM trades").fetchone() or (0,)
        (fee_balance,) = conn.execute(
            "SELECT free FROM balances WHERE account_id = %s AND asset_id = %s",
            (FEE_ACCOUNT, USD),
        ).fetchone() or (0,)
        (accounts,) = conn.execute("SELECT array_agg(id ORDER BY id) FROM accounts").fetchone() or (
            [],
        )
    assert rows[ids["iceberg"]] == (3, 100_000, 30, 30, 0, 10)  # filled, its slice size kept
    assert rows[ids["amended"]] == (2, 100_010, 25, 10, 15, 0)  # amended, then partly filled
    assert rows[ids["stop"]] == (3, 0, 5, 5, 0, 0)  # triggered and filled; the cap not shown
    assert rows[ids["market"]] == (3, 0, 20, 20, 0, 0)
    assert rows[ids["cancelled"]][0] == 4 and rows[ids["stp"]][0] == 6
    assert fee_balance == (Decimal(fees) - 1).scaleb(-6)  # every fee, less the 1 withdrawn
    assert accounts == [10, 11, FEE_ACCOUNT]


def test_sound_a_random_day_reconciles_at_each_checkpoint_through_writer_crashes(
    tmp_path: Path, dsn: str
) -> None:
    """1,500 random commands of every kind, filed in three parts as the journal grows, each
    by writers that die mid-batch (lanes committed, batch not) and restart from their own
    snapshots: at each checkpoint every table agrees with the exchange at that seq, and
    nothing is filed twice."""
    cfg = make_cfg(tmp_path)
    b = _Tap(cfg, seed=3)
    rng = random.Random(5)
    for account in (10, 11, 12, 13):
        fund(b, account, {USD: 10**13, BTC: 10**11, ETH: 10**11})
    for symbol in (1, 2):  # a reference price for the market buys
        b.new_order(10, Side.SELL, 100_000, 5, symbol=symbol)
        b.new_order(11, Side.BUY, 100_000, 5, symbol=symbol)
    for part, crashes in enumerate(((3, 7), (2,), (4, 2))):
        _random_commands(b, 500, rng, first_key=10**6 * (part + 1))
        b.writer.sync()
        _write(cfg, dsn, crashes)
        assert _ledger_problems(dsn, b) == []
    b.close()
    with psycopg.connect(dsn) as conn:
        kinds = conn.execute("SELECT count(DISTINCT (status, ord_type)) FROM orders").fetchone()
        (trades,) = conn.execute("SELECT count(*) FROM trades").fetchone() or (0,)
    assert kinds is not None and kinds[0] >= 15 and trades > 300  # the workload was varied


def test_sound_trades_are_in_utc_day_partitions_with_a_brin_index(tmp_path: Path, dsn: str) -> None:
    """README: trades in day partitions with BRIN (no TimescaleDB here): each trade sits in
    the partition named for its UTC day, whose bounds are that day."""
    cfg = make_cfg(tmp_path)
    b = _Tap(cfg)
    fund(b, 10, {USD: 10**12, BTC: 10**10})
    fund(b, 11, {USD: 10**12, BTC: 10**10})
    for _ in range(3):
        assert b.new_order(10, Side.SELL, 100_000, 1)
        assert b.new_order(11, Side.BUY, 100_000, 1)
        b.clock += 86_400 * 10**9  # the next day
    b.close()
    write_all(cfg, dsn)
    with psycopg.connect(dsn) as conn:
        placed = conn.execute(
            "SELECT tableoid::regclass::text, to_char(ts AT TIME ZONE 'UTC', 'YYYYMMDD') "
            "FROM trades ORDER BY trade_id"
        ).fetchall()
        brin = conn.execute(
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'trades' AND indexdef LIKE "
            "'%%USING brin (ts)%%'"
        ).fetchone()
    assert len(placed) == 3 and all(part == f"trades_{day}" for part, day in placed)
    assert len({day for _, day in placed}) == 3
    assert brin == (1,)


def test_sound_users_mirror_the_users_file_through_a_removal_and_a_swap(
    tmp_path: Path, dsn: str
) -> None:
    """The ``users`` table is the users file: comp id, session id, account and the scrypt
    string, after users are added, one removed and two re-added in swapped order (each
    taking the other's session id)."""
    cfg = make_cfg(tmp_path)
    b = _Tap(cfg)
    fund(b, 10, {USD: 1})
    b.close()
    path = tmp_path / "users.json"
    store = UserStore(path)
    for name, account in (("ALICE", 10), ("BOB", 11), ("CAROL", 12)):
        store.add(name, "pw", account, n=2)
    opts = WriterOptions(batch_rows=50, batch_ms=10**6, users_path=path)

    def mirrored() -> list[tuple[Any, ...]]:
        writer = DbWriter(cfg, dsn, opts)
        try:
            writer.run(to_end=True)
        finally:
            writer.close()
        with psycopg.connect(dsn) as conn:
            return conn.execute(
                "SELECT sender_comp_id, username, id, account_id, password_hash FROM users "
                "ORDER BY 1"
            ).fetchall()

    def in_file() -> list[tuple[Any, ...]]:
        return sorted(
            (u.comp_id, u.comp_id, u.session, u.account, f"scrypt${u.n}${u.r}${u.p}${u.salt}"
             f"${u.digest}")
            for u in UserStore(path).users()
        )  # fmt: skip

    assert mirrored() == in_file()
    store.remove("BOB")
    store.remove("ALICE")
    store.remove("CAROL")
    store.add("CAROL", "pw2", 13, n=2)
    store.add("ALICE", "pw", 10, n=2)
    assert mirrored() == in_file()
    assert [row[0] for row in mirrored()] == ["ALICE", "CAROL"]
