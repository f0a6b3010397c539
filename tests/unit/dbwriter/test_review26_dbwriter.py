"""Review 26 of the database writer (``procs/dbwriter``).

Tests that fail show a bug in the product; each docstring says what is wrong, why it matters
and where. The others pin behaviour this review checked and found right. Every test runs the
real writer (or its parts) into a real PostgreSQL (``tests/unit/conftest.py``'s cluster, a
database per test) over a journal made through the real sequencer and matchers
(``journal_gen``).
"""

from __future__ import annotations

import datetime as dt
import random
import shutil
import subprocess
from pathlib import Path

import msgspec
import psycopg
import pytest

from config.schema import RingexConfig
from procs.common.embedded_postgres import find_bin_dir
from procs.common.journal import JournalError
from procs.common.records import AdminCommand, CancelOrder, MassCancel, NewOrder, ReplaceOrder
from procs.common.topology import journal_dir
from procs.common.types import AdminAction, OrdType, Side, StpMode, TimeInForce
from procs.common.users import UsersFile, UserStore
from procs.dbwriter.projection import ORDERS
from procs.dbwriter.replay import Follower, snapshot_store
from procs.dbwriter.writer import Backoff, DbWriter, WriterOptions
from tests.unit.dbwriter.journal_gen import (
    ACCOUNTS,
    JournalBuilder,
    build,
    fund,
    limit_order,
    make_cfg,
    write_all,
)
from tests.unit.dbwriter.reconcile import reconcile

_DAY_NS = 86_400 * 10**9


def _trade(b: JournalBuilder, qty: int = 5) -> None:
    """One trade on BTC-USD between accounts 10 (maker, sells) and 11 (taker, buys)."""
    limit_order(b, 10, 1, Side.SELL, 100_000, qty)
    limit_order(b, 11, 1, Side.BUY, 100_000, qty)


# -- users ------------------------------------------------------------------------------------


def test_a_user_with_a_session_id_past_int4_is_mirrored(tmp_path: Path, dsn: str) -> None:
    """``users.id`` is ``bigint`` (migrations/0001_core.sql) and a session id is a ``U32``
    in every record (``procs/common/types.py``: ``SessionId``), so a user whose session id is
    2**31 or more is a valid user the gateways serve. ``UserSync.sync`` casts the ids to
    ``int[]`` (int4) in its DELETE (``procs/dbwriter/users.py:46``,
    ``unnest(%s::text[], %s::int[])``): PostgreSQL raises ``NumericValueOutOfRange``, a
    ``DataError``, which ``DbWriter._housekeeping`` (``writer.py:296``) does not catch (it
    takes only ``OperationalError``/``InterfaceError``). The history writer dies, and dies
    again at every start (``start`` forgets the digest and syncs again): trades, orders and
    balances stop being written because of a side mirror that "is not part of the
    exactly-once stream" (users.py docstring). Such an id comes from a users file restored
    or edited by hand (``UserStore.add`` counts up from ``last_session``, which such a file
    sets). Expected: the user mirrored (``::bigint[]``), and the batches written."""
    cfg = make_cfg(tmp_path)
    users = tmp_path / "users.json"
    UserStore(users).add("ALICE", "pw", 10, n=2)
    doc = msgspec.json.decode(users.read_bytes(), type=UsersFile)
    users.write_bytes(msgspec.json.encode(UsersFile(doc.users, last_session=2**31 - 1)))
    bob = UserStore(users).add("BOB", "pw", 11, n=2)  # the next id the store gives
    assert bob.session == 2**31
    b = JournalBuilder(cfg)
    fund(b, 10, {1: 10**15, 2: 10**15})
    fund(b, 11, {1: 10**15, 2: 10**15})
    _trade(b)
    b.close()
    writer = DbWriter(cfg, dsn, WriterOptions(batch_rows=200, batch_ms=10**6, users_path=users))
    try:
        assert writer.run(to_end=True) == b.last_seq
    finally:
        writer.close()
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT id, sender_comp_id FROM users ORDER BY id").fetchall()
    assert rows == [(1, "ALICE"), (2**31, "BOB")]


# -- a backup restored into the live database ----------------------------------------------------


def _pg_tool(name: str) -> str:
    """``name`` beside the cluster's ``pg_ctl`` (where PATH holds links, beside its target)."""
    bin_dir = find_bin_dir()
    assert bin_dir is not None
    for directory in (bin_dir, (bin_dir / "pg_ctl").resolve().parent):
        if (directory / name).exists():
            return str(directory / name)
    pytest.skip(f"no {name} beside {bin_dir / 'pg_ctl'}")


def test_a_backup_restored_into_the_live_database_is_written_again(
    tmp_path: Path, dsn: str
) -> None:
    """The writer's contract (``writer.py`` docstring): a checkpoint *behind* the batch ("a
    restored backup") restarts the writer from it. ``DbWriter.run`` does so on the
    connection it has (``writer.py:168``: only ``follower`` is reset), and ``PgStore``
    keeps ``_days``, the trade partitions it made, per connection (``store.py:187``, cleared
    only where ``open`` makes a new one, ``store.py:202``; ``ensure_partitions`` trusts it,
    ``store.py:226``). A backup restored into the database the writer is connected to (the
    schema dropped and the dump loaded with ``pg_restore``, a usual way to restore a logical
    backup; the writer's idle sessions are not ended) loses the day partitions made after
    the backup. Replaying from the restored checkpoint, the writer believes those days
    exist, COPYs their trades into no partition and gets ``CheckViolation`` ("no partition
    of relation trades found for row"), which it does not retry: the process dies instead
    of restarting from the checkpoint as documented (the supervisor's restart, on a new
    connection, then gets through). ``PgStore.layout`` (the lanes ``trade_lanes`` was laid
    out for) is kept the same way. Expected: the restored database written again to the
    journal's end by the running writer; fix: ``store.close()`` (or clearing ``_days`` and
    laying the lanes out again) when a checkpoint behind restarts the writer."""
    cfg = make_cfg(tmp_path)
    b = JournalBuilder(cfg)
    fund(b, 10, {1: 10**15, 2: 10**15})
    fund(b, 11, {1: 10**15, 2: 10**15})
    _trade(b)
    writer = DbWriter(cfg, dsn, WriterOptions(batch_rows=200, batch_ms=10**6))
    dump = tmp_path / "backup.dump"
    try:
        assert writer.run(to_end=True) == b.last_seq
        subprocess.run([_pg_tool("pg_dump"), "-Fc", "-f", str(dump), "-d", dsn], check=True)
        b.clock += 2 * _DAY_NS  # two days on: trades in a day partition the backup lacks
        _trade(b)
        assert writer.run(to_end=True) == b.last_seq
        with psycopg.connect(dsn, autocommit=True) as conn:  # the restore: the dump's
            conn.execute("DROP SCHEMA public CASCADE")  # objects and nothing else
            conn.execute("CREATE SCHEMA public")
        subprocess.run([_pg_tool("pg_restore"), "-d", dsn, str(dump)], check=True)
        _trade(b)  # the exchange goes on: the next batch finds the checkpoint behind
        b.close()
        assert writer.run(to_end=True) == b.last_seq
    finally:
        writer.close()
    with psycopg.connect(dsn) as conn:
        (trades,) = conn.execute("SELECT count(*) FROM trades").fetchone() or (0,)
    assert trades == len(b.trades) == 3


# -- a journal that lost its tail ----------------------------------------------------------------


def test_a_database_past_a_journal_that_lost_its_tail_is_not_resumed_silently(
    tmp_path: Path, dsn: str
) -> None:
    """Under ``journal.fsync = "none"`` (or ``"interval"``) a host crash can take the journal's
    tail, and the router then gives those seqs to other commands (``snapshots.py``:
    "a journal tail lost ... which its seqs will name again with other commands";
    ``recovery.py`` refuses an exchange snapshot past the journal's end for this reason).
    The writer reads entries as soon as they are written, before any fsync, so its database
    (on another host, or one whose WAL reached disk) can hold seqs the journal lost.
    ``DbWriter.start`` checks only the journal's *length* against the checkpoint
    (``writer.py:137-141``: "is this the right instance?"): while the new history is shorter it
    crash-loops, and once it passes the checkpoint the writer replays the new commands up
    to the checkpoint without writing and carries on. The rows of the lost commands stay
    (trades, orders, balances, candles) and those of the new commands up to the checkpoint
    are never written, so trade ids go missing, or are filed twice at two times (the key
    holds ``ts``) where the lost tail traded less. Nothing says so. Expected: the writer
    notices that the journal at its checkpoint is not what it wrote (e.g. the checkpoint
    row keeps the CRC of the entry at ``last_seq``, compared by ``start``) and refuses, or
    writes the new history; actual: a database that is not a replay of the journal,
    silently."""
    cfg = make_cfg(tmp_path)
    lost = build(cfg, 300, seed=5)  # what the database got: 1..R, then a tail ...
    kept = lost.last_seq
    lost.random_commands(200)
    lost.close()
    assert write_all(cfg, dsn) == lost.last_seq
    shutil.rmtree(journal_dir(cfg))  # ... that the journal lost: what is left is 1..R,
    live = build(cfg, 300, seed=5)  # (the same commands again, made the same way)
    assert live.last_seq == kept
    live.rng = random.Random(6)  # then the router sequences other commands after it
    live.random_commands(400)
    live.close()
    assert live.last_seq > lost.last_seq
    writer = DbWriter(cfg, dsn, WriterOptions(batch_rows=200, batch_ms=10**6))
    try:
        writer.run(to_end=True)
    except (RuntimeError, JournalError):
        return  # refused, naming the problem: what this test asks at least
    finally:
        writer.close()
    with psycopg.connect(dsn) as conn:
        filed = conn.execute("SELECT symbol_id, trade_id, seq FROM trades ORDER BY 1, 2, 3")
        rows = [tuple(r) for r in filed.fetchall()]
    made = sorted((t.symbol, t.trade_id, t.seq) for t in live.trades)
    assert rows == made, (
        f"{len(set(rows) - set(made))} trades filed that the journal does not hold, "
        f"{len(set(made) - set(rows))} of the journal's missing"
    )
    reconcile(dsn, live)


# -- the watchdog ----------------------------------------------------------------------------------


def test_the_writer_pets_the_watchdog_while_it_replays_after_a_restore(
    tmp_path: Path, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review 5 made the writer pet systemd's watchdog (``WatchdogSec=30s``) once a batch
    while it works through a backlog (``DbWriter.pet``). A checkpoint found *behind* (a
    restored backup, a server that lost commits) restarts the writer in-process, long after
    READY=1, through ``start`` (``writer.py:168`` -> ``_run`` -> ``start``, whose loop at
    ``writer.py:130-136`` calls no ``pet``),
    which replays the journal from the newest writer snapshot at or below the restored
    checkpoint, else from seq 1, without writing and without a single ``pet``. The writer
    keeps two snapshots, 300 s apart, so a backup older than about ten minutes means a
    replay from seq 1 of the whole journal: past 30 s of it, systemd kills a healthy
    writer as hung (SIGABRT) and restarts it (then, before READY, the replay is allowed).
    Expected: ``pet`` called while that replay runs, as while batches are written; actual:
    none (here the backup's 2000-odd commands replayed in-process, no ``pet`` among them)."""
    cfg = make_cfg(tmp_path)
    # the writer runs on as a live one does, not to an end (which leaves a snapshot there)
    monkeypatch.setattr(DbWriter, "_snapshot_below", lambda self, seq: False)
    b = JournalBuilder(cfg)
    b.setup()
    b.random_commands(2000)
    pets: list[int] = []
    writer = DbWriter(
        cfg,
        dsn,
        WriterOptions(batch_rows=200, batch_ms=10**6, backoff=Backoff(0.01, 0.05)),
        pet=lambda: pets.append(0),
    )
    starts: list[tuple[int, int]] = []  # (commands replayed without writing, pets meanwhile)
    start = writer.start

    def counted_start() -> Follower:
        before, checkpoint = len(pets), writer.store.checkpoint()
        follower = start()
        starts.append((checkpoint, len(pets) - before))
        return follower

    writer.start = counted_start  # type: ignore[method-assign]
    name = dsn.split("dbname=")[1].split(maxsplit=1)[0]
    admin = dsn.replace(f"dbname={name}", "dbname=postgres")
    backup = f"{name}b"
    try:
        assert writer.run(to_end=True) == b.last_seq
        writer.store.close()  # the backup, taken here
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {backup} TEMPLATE {name}")
        b.random_commands(100)
        assert writer.run(to_end=True) == b.last_seq
        with psycopg.connect(admin, autocommit=True) as conn:  # ... restored here
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {backup}")
        fund(b, 20, {1: 10**15, 2: 10**15})  # the exchange goes on
        b.close()
        assert writer.run(to_end=True) == b.last_seq
    finally:
        writer.close()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {backup} WITH (FORCE)")
    assert snapshot_store(cfg).latest() is None  # so every restart replayed from seq 1
    replayed, pinged = starts[-1]
    assert replayed > 2000, starts  # the restart replayed the backup's 2000+ commands
    assert pinged > 0, f"{replayed} commands replayed after READY without a watchdog ping"


# -- checked and found right -------------------------------------------------------------------


def _every_kind(b: JournalBuilder, n: int, rng: random.Random) -> None:
    """``n`` commands of every kind the book knows: limit (GTC, DAY, IOC, FOK, post-only,
    iceberg), market and stop-market (with and without a cap), stop-limit, each STP mode,
    cancels and replaces (of stops too: refused), mass cancels, halts and session ends."""
    for _ in range(n):
        account, symbol = rng.choice(ACCOUNTS), rng.choice((1, 2))
        book = b.matchers[b.owner[symbol]].books[symbol]
        mine = [
            o
            for o in (*book.orders, *book.stops)
            if (book.orders.get(o) or book.stops[o]).account == account
        ]
        header = b._header(account, symbol)
        roll = rng.random()
        if mine and roll < 0.10:
            b.submit(CancelOrder(*header, rng.choice(mine)))
        elif mine and roll < 0.20:  # some to a total below what filled, some of stops
            price = 100_000 + rng.randint(-20, 20)
            b.submit(ReplaceOrder(*header, rng.choice(mine), price, rng.randint(1, 80)))
        elif roll < 0.22:
            b.submit(
                MassCancel(0, 0, 1, 1, b._next(), rng.choice((0, account)), rng.choice((0, symbol)))
            )
        elif roll < 0.24:
            b.submit(
                AdminCommand(0, 0, AdminAction.END_OF_SESSION, rng.choice((0, symbol)), b._next())
            )
        elif roll < 0.25:
            b.submit(AdminCommand(0, 0, AdminAction.HALT, symbol, b._next()))
            b.submit(AdminCommand(0, 0, AdminAction.RESUME, symbol, b._next()))
        else:
            kind = rng.choices(list(OrdType), [70, 10, 10, 10])[0]
            side = rng.choice((Side.BUY, Side.SELL))
            tif = rng.choice(list(TimeInForce))
            price = 100_000 + rng.randint(-20, 20)
            stop = (
                100_000 + rng.randint(-20, 20) if kind in (OrdType.STOP, OrdType.STOP_LIMIT) else 0
            )
            if kind in (OrdType.MARKET, OrdType.STOP):
                tif = TimeInForce.IOC if kind == OrdType.MARKET else TimeInForce.GTC
                price = price if side == Side.BUY and rng.random() < 0.3 else 0  # 0: capped
            qty = rng.randint(1, 60)
            rests = kind == OrdType.LIMIT and tif in (TimeInForce.GTC, TimeInForce.DAY)
            display = rng.randint(1, 10) if rests and rng.random() < 0.25 else 0
            flags = 1 if rests and rng.random() < 0.05 else 0
            gw, session, ref, acc = header[2:6]
            b.submit(
                NewOrder(
                    seq=0, ts_ns=0, gateway=gw, session=session, client_ref=ref, account=acc,
                    symbol=symbol, order_id=0, side=side, ord_type=kind, tif=tif, flags=flags,
                    stp=rng.choice(list(StpMode)), price=price, qty=qty, stop_price=stop,
                    display_qty=display if display and -(-qty // display) <= 100 else 0,
                )
            )  # fmt: skip
    for symbol, name in b.owner.items():  # no stop left pending: ``reconcile`` knows none
        book = b.matchers[name].books[symbol]
        for oid, pending in list(book.stops.items()):
            b.submit(CancelOrder(*b._header(pending.account, symbol), oid))


def _table(dsn: str, table: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return [tuple(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2, 3")]


def test_every_order_kind_is_filed_as_the_books_have_it_whatever_the_batches(
    tmp_path: Path, dsn: str
) -> None:
    """Checked: icebergs (leaves + reserve), stops (triggered, capped stop-market buys at
    price 0), STP cancels of either side, FOK/IOC/market remainders, DAY orders expired by
    a session end, mass cancels, replaces (kept place, re-entered, to filled, refused on a
    stop), halts: every order's row has the status, filled, remaining and size the books
    and their events give, balances, trades, fees and candles reconcile with the live state,
    and a database written in pieces (restarts from the writer's snapshots, tiny batches)
    holds exactly the rows of one written in a single batch."""
    cfg = make_cfg(tmp_path)
    rng = random.Random(26)
    b = JournalBuilder(cfg, seed=26)
    b.setup()
    pieces = dsn
    for _ in range(3):  # the writer stops and starts again from its snapshot each time
        _every_kind(b, 400, rng)
        opts = WriterOptions(batch_rows=rng.randint(3, 40), batch_ms=10**6, snapshot_every=97)
        writer = DbWriter(cfg, pieces, opts)
        try:
            assert writer.run(to_end=True) == b.last_seq
        finally:
            writer.close()
    assert snapshot_store(cfg).latest() is not None
    reconcile(pieces, b)
    name = dsn.split("dbname=")[1].split(maxsplit=1)[0]
    admin = dsn.replace(f"dbname={name}", "dbname=postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}w")
    whole = dsn.replace(f"dbname={name}", f"dbname={name}w")
    try:
        shutil.rmtree(snapshot_store(cfg).directory)
        assert write_all(cfg, whole, batch_rows=10**9) == b.last_seq
        for table in ("trades", "orders", "balances", "candles", "accounts", "transfers"):
            assert _table(whole, table) == _table(pieces, table), table
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name}w WITH (FORCE)")
    rows = _table(pieces, "orders")
    assert {r[4] for r in rows} == {1, 2, 3, 4}  # every order type made rows ...
    assert {r[11] for r in rows} >= {1, 3, 4, 5, 6, 7, 8}  # ... and every end
    # an iceberg resting with its reserve, a stop waiting: ``reconcile`` checks neither
    iceberg = b.submit(_order(b, 12, Side.BUY, 99_000, 50, display=5))
    stop = b.submit(_order(b, 13, Side.BUY, 0, 7, kind=OrdType.STOP, stop=101_000))
    b.close()
    assert write_all(cfg, pieces) == b.last_seq
    filed = {r[0]: r for r in _table(pieces, "orders")}
    assert isinstance(iceberg, NewOrder) and isinstance(stop, NewOrder)
    # (price, stop_price, size, remaining, filled, status, display)
    assert filed[iceberg.order_id][6:12] == (99_000, 0, 50, 50, 0, 1)
    assert filed[iceberg.order_id][ORDERS.names.index("display")] == 5
    assert filed[stop.order_id][6:12] == (0, 101_000, 7, 7, 0, 1)  # its cap is not shown


def _order(
    b: JournalBuilder,
    account: int,
    side: Side,
    price: int,
    qty: int,
    *,
    kind: OrdType = OrdType.LIMIT,
    stop: int = 0,
    display: int = 0,
) -> NewOrder:
    gw, session, ref, acc, symbol = b._header(account, 1)[2:7]
    return NewOrder(
        seq=0, ts_ns=0, gateway=gw, session=session, client_ref=ref, account=acc, symbol=symbol,
        order_id=0, side=side, ord_type=kind, tif=TimeInForce.GTC, flags=0, stp=StpMode.NONE,
        price=price, qty=qty, stop_price=stop, display_qty=display,
    )  # fmt: skip


def test_trades_either_side_of_midnight_fall_in_their_own_candles_and_partitions(
    tmp_path: Path, dsn: str
) -> None:
    """Checked: a trade one nanosecond before UTC midnight and one exactly at it (each its
    own batch) go to the candles that end and start there, at 1m, 1h and 1d, and to the
    two days' trade partitions; the one before keeps its microsecond (truncated, not
    rounded into the next day)."""
    cfg = make_cfg(tmp_path)
    b = JournalBuilder(cfg)
    fund(b, 10, {1: 10**15, 2: 10**15})
    fund(b, 11, {1: 10**15, 2: 10**15})
    midnight = (b.clock // _DAY_NS + 1) * _DAY_NS
    for ts, price in ((midnight - 1, 100_000), (midnight, 100_010)):
        limit_order(b, 10, 1, Side.SELL, price, 3)
        b.clock = ts - 7_000_000_000  # the next command is stamped 7 s on: at ``ts``
        limit_order(b, 11, 1, Side.BUY, price, 3)
    b.close()
    assert [t.ts_ns for t in b.trades] == [midnight - 1, midnight]
    assert write_all(cfg, dsn, batch_rows=1) == b.last_seq
    with psycopg.connect(dsn) as conn:
        candles = conn.execute(
            "SELECT interval_s, (extract(epoch FROM bucket) * 1e9)::bigint, open, close, "
            "volume, trades FROM candles ORDER BY 1, 2"
        ).fetchall()
        trades = conn.execute(
            "SELECT tableoid::regclass::text, (extract(epoch FROM ts) * 1e6)::bigint "
            "FROM trades ORDER BY ts"
        ).fetchall()
    expect = []
    for interval in (60, 3_600, 86_400):
        length = interval * 10**9
        expect += [
            (interval, midnight - length, 100_000, 100_000, 3, 1),
            (interval, midnight, 100_010, 100_010, 3, 1),
        ]
    assert candles == expect
    day = dt.datetime.fromtimestamp(midnight // 10**9, dt.UTC)
    before = (day - dt.timedelta(days=1)).strftime("trades_%Y%m%d")
    assert trades == [
        (before, midnight // 1000 - 1),
        (day.strftime("trades_%Y%m%d"), midnight // 1000),
    ]


def test_a_restored_database_below_the_writers_snapshots_is_written_from_one_below_it(
    tmp_path: Path, dsn: str
) -> None:
    """Checked, with today's ``SnapshotStore.save`` (it removes the snapshots above the seq
    it writes): after a backup restored from before the writer's snapshots, a new writer
    restores from none above the database's checkpoint (``Follower.restore``:
    ``at_or_before``), writes the journal again from there, and its first snapshot below
    the old ones removes them (they were of this same journal: only work lost, nothing
    wrong); the database then equals the live state."""
    cfg = make_cfg(tmp_path)
    b = build(cfg, 300)
    name = dsn.split("dbname=")[1].split(maxsplit=1)[0]
    admin = dsn.replace(f"dbname={name}", "dbname=postgres")
    backup = f"{name}b"
    assert write_all(cfg, dsn) == b.last_seq  # the backup is taken here ...
    restored_at = b.last_seq
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {backup} TEMPLATE {name}")
    try:
        b.random_commands(600)  # ... the exchange goes on, the writer snapshots as it writes
        often = WriterOptions(batch_rows=50, batch_ms=10**6, snapshot_every=100)
        writer = DbWriter(cfg, dsn, often)
        assert writer.run(to_end=True) == b.last_seq
        writer.close()
        above = [seq for seq in _snapshot_seqs(cfg) if seq > restored_at]
        assert len(above) == 2  # the two kept, both past what the backup holds
        with psycopg.connect(admin, autocommit=True) as conn:  # the backup restored
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {backup}")
        b.random_commands(200)
        b.close()
        writer = DbWriter(cfg, dsn, often)
        try:
            follower = writer.start()
            assert follower.seq == restored_at  # replayed from seq 1, no snapshot above used
            assert writer.run(to_end=True) == b.last_seq
        finally:
            writer.close()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {backup} WITH (FORCE)")
    kept = _snapshot_seqs(cfg)
    assert len(kept) == 2 and not set(kept) & set(above) and max(kept) <= b.last_seq
    reconcile(dsn, b)


def _snapshot_seqs(cfg: RingexConfig) -> list[int]:
    return sorted(int(p.stem) for p in snapshot_store(cfg).directory.glob("*.snap"))
