"""PostgreSQL side of the writer: one batch, its checkpoint, its trades in lanes.

``write(batch)``, on the main connection, in one transaction:

1. lock the checkpoint row and check it is ``batch.first_seq - 1``; when it already equals
   ``batch.last_seq`` the batch was committed before (a commit whose answer was lost when the
   connection broke) and nothing is written; anything else raises ``CheckpointMismatchError``
   (another writer, or a database restored from elsewhere);
2. hand the batch's trades to the lanes (below), which run meanwhile;
3. binary COPY the other tables' rows into their temp tables (``ON COMMIT DELETE ROWS``) and
   ``INSERT .. SELECT`` them into the real tables: accounts and transfers ``ON CONFLICT DO
   NOTHING`` (keyed by seq), orders and balances upserted keeping the newest version
   (``updated_seq``), candles merged (high, low, close, volume: the checkpoint check in step 1
   makes that merge happen once per trade);
4. wait for every lane to commit; ``checkpoint = batch.last_seq``; commit.

The trades are most of the server's work (a row, its primary key, BRIN and two account
indexes: ~6 us a row here, one backend on one core), so ``database.trade_lanes`` connections
write them side by side: lane k takes the symbols whose id modulo the lane count is k, and in
one transaction of its own locks its row of ``trade_lanes``, binary COPYs its symbols' trades
made after that row's seq straight into the day-partitioned table, and moves the row to
``batch.last_seq``. Each lane's checkpoint is thus written with its rows, as the batch's is
with the rest; a crash between a lane's commit and the batch's leaves the lane ahead: a
retry of the batch sends it only the trades after it, and a writer's start rewinds it
(``rewind_lanes``: its trades past the checkpoint deleted, written again from the journal,
which may have lost that tail since). No
conflict handling is needed on the trades (``ON CONFLICT DO NOTHING`` halved the rate: 84k vs
154k trades/s measured on the 2-core VM); should a duplicate ever arrive anyway, the primary
key aborts the batch, loudly. On 2 cores two lanes took a bare COPY of bench-db's trades from
165k to 278k rows/s, and the writer's path from 147k to 194k. A reader may see a batch's
trades a moment before its candles and balances; the checkpoint row says how far everything
is in.

The lane count is laid out in ``trade_lanes``; a different configured count takes effect at
the first moment no lane is ahead of the checkpoint (else a lane's symbols would change
under its checkpoint).

Daily trade partitions are made outside those transactions (DDL locks the parent), for the
days the batch touches (waited for: its rows go there) and ``days_ahead`` days after today
(under a short ``lock_timeout``; a refusal, a reader of ``trades`` holding the lock off,
is tried again a minute later), each day once per connection.

A connection given up on (a network outage) may leave its server session idle in its
transaction, holding the checkpoint row's lock: the next main connection ends those
sessions (``_end_orphans``) before it lays the lanes out.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, Final

import psycopg

from config.schema import RingexConfig
from procs.dbwriter.copy import PG_EPOCH_US, GroupedRows, RowLayout
from procs.dbwriter.migrate import LOCK as MIGRATIONS_LOCK
from procs.dbwriter.migrate import migrate
from procs.dbwriter.projection import ORDERS, TRADES, Batch

log = logging.getLogger("ringex.dbwriter.store")
#: How long the writer waits for the lock that a partition for a day ahead takes (ms).
AHEAD_LOCK_TIMEOUT_MS: Final = 100
#: ... and how long after a refusal before it tries again (s).
AHEAD_RETRY_S: Final = 60

_DAY_US: Final = 86_400 * 1_000_000
#: A batch's trades spanning more days than this make partitions for their own days only.
_SPAN_DAYS: Final = 3


class CheckpointMismatchError(RuntimeError):
    """The database's checkpoint (``at``) is not where this writer's batch starts."""

    def __init__(self, at: int, batch: Batch) -> None:
        self._set(
            f"database checkpoint is seq {at}; this batch holds seqs "
            f"{batch.first_seq}..{batch.last_seq}",
            at,
            at < batch.first_seq - 1,
        )

    def _set(self, message: str, at: int, behind: bool) -> None:
        """The message and the attributes, for subclasses that build them otherwise."""
        RuntimeError.__init__(self, message)
        self.at = at
        self.behind = behind


class OtherHistoryError(CheckpointMismatchError):
    """The checkpoint is at this writer's seq, but the journal entry it was written from is
    not the one this writer read there: another writer, following another journal (a
    failover's old primary and new one), wrote it. Not ``behind``: the writer stops."""

    def __init__(self, at: int, batch: Batch, crc: int, mine: int) -> None:
        super().__init__(at, batch)
        self.args = (
            f"database checkpoint is seq {at}, written from a journal entry with CRC-32 "
            f"{crc:#010x}; this writer's entry there has {mine:#010x}: another writer, "
            f"following another journal, writes this database (batch seqs "
            f"{batch.first_seq}..{batch.last_seq} not written)",
        )
        self.behind = False


_ORDER_UPDATE = ", ".join(
    f"{c} = excluded.{c}" for c in ORDERS.names if c not in ("id", "created_seq", "created")
)
_UPSERTS: Final = {
    "trades": "INSERT INTO trades SELECT * FROM tmp_trades",
    "trades-on-conflict": "INSERT INTO trades SELECT * FROM tmp_trades ON CONFLICT DO NOTHING",
    "accounts": "INSERT INTO accounts SELECT * FROM tmp_accounts ON CONFLICT DO NOTHING",
    "orders": (
        f"INSERT INTO orders SELECT * FROM tmp_orders ON CONFLICT (id) DO UPDATE SET "
        f"{_ORDER_UPDATE} WHERE orders.updated_seq <= excluded.updated_seq"
    ),
    "transfers": "INSERT INTO transfers SELECT * FROM tmp_transfers ON CONFLICT DO NOTHING",
    "balances": (
        "INSERT INTO balances SELECT * FROM tmp_balances ON CONFLICT (account_id, asset_id) "
        "DO UPDATE SET free = excluded.free, reserved = excluded.reserved, "
        "updated_seq = excluded.updated_seq, updated = excluded.updated "
        "WHERE balances.updated_seq <= excluded.updated_seq"
    ),
    "candles": (
        "INSERT INTO candles AS c SELECT * FROM tmp_candles "
        "ON CONFLICT (symbol_id, interval_s, bucket) DO UPDATE SET "
        "high = greatest(c.high, excluded.high), low = least(c.low, excluded.low), "
        # open and close by trade id, not by which batch came first: a clock stepped back
        # puts a later trade in an earlier minute, and the rows must not depend on batching
        "open = CASE WHEN excluded.first_trade_id < c.first_trade_id THEN excluded.open "
        "ELSE c.open END, "
        "close = CASE WHEN excluded.last_trade_id > c.last_trade_id THEN excluded.close "
        "ELSE c.close END, "
        "volume = c.volume + excluded.volume, "
        "quote_volume = c.quote_volume + excluded.quote_volume, "
        "trades = c.trades + excluded.trades, "
        "first_trade_id = least(c.first_trade_id, excluded.first_trade_id), "
        "last_trade_id = greatest(c.last_trade_id, excluded.last_trade_id), "
        "taker_buy_volume = c.taker_buy_volume + excluded.taker_buy_volume, "
        "taker_buy_quote_volume = c.taker_buy_quote_volume + excluded.taker_buy_quote_volume"
    ),
}
_TYPES: Final = {
    "transfers": ["int8", "timestamptz", "int8", "int4", "numeric", "int8"],
    "balances": ["int8", "int4", "numeric", "numeric", "int8", "timestamptz"],
    "candles": [
        *("int4", "int4", "timestamptz", "int8", "int8", "int8", "int8", "numeric", "numeric"),
        *("int8", "int8", "int8", "numeric", "numeric"),
    ],
}


#: The writer's sessions' application_name (``pg_stat_activity``).
APPLICATION: Final = "ringex-dbwriter"
#: A writer's session idle this long in a transaction on the checkpoint is an orphan, and
#: how long a writer laying its lanes out waits for the checkpoint's lock before it looks.
ORPHAN_IDLE_S: Final = 2.0


def connect(dsn: str) -> psycopg.Connection[Any]:
    """The writer's session. ``synchronous_commit = off``: a commit returns before its WAL is
    flushed. Safe here because the journal, not the database, is the record: a crash loses at
    most the last few commits whole (the checkpoint row goes with its rows), and the writer
    writes them again from the journal. It takes the database's fsyncs off the writer's path,
    and off the disk the router's journal fsyncs share."""
    return psycopg.connect(
        dsn,
        autocommit=True,
        connect_timeout=5,
        options="-c synchronous_commit=off",
        application_name=APPLICATION,  # how a writer starting knows another's orphans
        # a server that takes no writes (a standby during a failover, a demoted primary)
        # fails the connection (OperationalError: retried with backoff), not the first write
        target_session_attrs="read-write",
        # over TCP, a server host gone without a reset is noticed within a minute or so
        # rather than the OS's hours (libpq ignores these on a Unix socket)
        keepalives=1,
        keepalives_idle=30,
        keepalives_interval=10,
        keepalives_count=3,
        tcp_user_timeout=60_000,
    )


def prepare(conn: psycopg.Connection[Any], cfg: RingexConfig) -> None:
    """Migrate, and upsert the configured assets and symbols (reference data)."""
    migrate(conn)
    with conn.transaction():
        # two writers at once: one after the other (the upsert's arbiter is the id, so a
        # name inserted by the other's uncommitted row was a unique violation: seen once in
        # the test suite)
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATIONS_LOCK,))
        for a in cfg.assets:
            conn.execute(
                "INSERT INTO assets (id, name, decimals) VALUES (%s, %s, %s) ON CONFLICT (id) "
                "DO UPDATE SET name = excluded.name, decimals = excluded.decimals",
                (a.id, a.name, a.decimals),
            )
        for s in cfg.symbols:
            conn.execute(
                "INSERT INTO symbols VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) "
                "DO UPDATE SET name = excluded.name, base_asset_id = excluded.base_asset_id, "
                "quote_asset_id = excluded.quote_asset_id, "
                "price_decimals = excluded.price_decimals, qty_decimals = excluded.qty_decimals, "
                "tick = excluded.tick, lot = excluded.lot",
                (
                    *(s.id, s.name, cfg.asset(s.base).id, cfg.asset(s.quote).id),
                    *(s.price_decimals, s.qty_decimals, s.tick, s.lot),
                ),
            )


class PgStore:
    """The main connection and the lanes' connections, and the writer's transactions on them.
    Not thread-safe: one thread calls it (the lanes are its own threads, which add their
    connections' sessions under ``_sessions_lock``)."""

    def __init__(
        self,
        dsn: str,
        cfg: RingexConfig,
        *,
        days_ahead: int = 3,
        trades_on_conflict: bool = False,
        lanes: int | None = None,
    ) -> None:
        self.dsn = dsn
        self.trades_on_conflict = trades_on_conflict
        self.trades_sql = _UPSERTS["trades-on-conflict" if trades_on_conflict else "trades"]
        self.cfg = cfg
        self.days_ahead = days_ahead
        self.lanes = cfg.database.trade_lanes if lanes is None else lanes
        self.layout = self.lanes  # the lanes ``trade_lanes`` is laid out for (at open)
        self.conn: psycopg.Connection[Any] | None = None
        self._lane_conns: dict[int, psycopg.Connection[Any]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._days: set[int] = set()  # UTC days (since 2000-01-01) with a trade partition
        self.before_commit: list[Any] = []  # test hooks: called inside the transaction
        self.connections = 0  # main connections made so far (a new one: a new session)
        #: the server sessions (pid, backend_start) of the connections open now, and of those
        #: closed since the last open: ended by the next open (``_end_orphans``)
        self._sessions: set[tuple[int, Any]] = set()
        self._closed_sessions: set[tuple[int, Any]] = set()
        self._sessions_lock = threading.Lock()
        self._ahead_after = 0.0  # days ahead refused their lock: not tried before then

    def open(self) -> psycopg.Connection[Any]:
        if self.conn is None or self.conn.closed:
            conn = self._connect()
            try:
                self._end_orphans(conn)
                prepare(conn, self.cfg)
                for table in ("trades", "accounts", "orders", "transfers", "balances", "candles"):
                    conn.execute(
                        f"CREATE TEMP TABLE IF NOT EXISTS tmp_{table} (LIKE {table}) "
                        f"ON COMMIT DELETE ROWS"
                    )
            except BaseException:  # not left for the collector to find open
                conn.close()
                raise
            self.conn = conn
            self.connections += 1
            self._days.clear()
            self.layout = self._lay_out(conn)
        return self.conn

    def _connect(self) -> psycopg.Connection[Any]:
        conn = connect(self.dsn)
        try:
            row = conn.execute(
                "SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()"
            ).fetchone()
        except BaseException:  # closed now, not left to the collector (review 168)
            conn.close()
            raise
        if row is not None:
            with self._sessions_lock:
                self._sessions.add((int(row[0]), row[1]))
        return conn

    def _end_orphans(self, conn: psycopg.Connection[Any]) -> None:
        """End the server sessions of the connections closed since the last open that are
        still there. A connection the writer gave up on (a network outage mid-batch) leaves
        its session idle in its transaction, holding the checkpoint row's lock, until the
        server's TCP keepalive gives up (hours by the OS's defaults): the retry waited behind
        it (review 40). A session is known by its pid and start time: a pid reused since is
        another session, left alone."""
        gone = self._closed_sessions
        if not gone:
            return
        pids, starts = zip(*gone, strict=True)
        ended = conn.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(a.pid)) FROM pg_stat_activity a "
            "JOIN unnest(%s::int[], %s::timestamptz[]) AS g(pid, started) "
            "ON a.pid = g.pid AND a.backend_start = g.started",
            (list(pids), list(starts)),
        ).fetchone()
        self._closed_sessions = set()  # only once ended: a failure tries them again
        if ended and ended[0]:
            log.warning("ended %d server sessions of connections given up on", ended[0])

    def _end_stale_holders(self, conn: psycopg.Connection[Any]) -> None:
        """End the writer sessions that hold the checkpoint table in a transaction left idle
        for ``ORPHAN_IDLE_S`` or more: a connection an earlier writer process gave up on (an
        outage cut it) leaves one, holding the checkpoint row's lock until the server's TCP
        keepalive gives up, hours by default; a writer restarted meanwhile waited behind it
        (review 50: ``_end_orphans`` knows only this process's). A live writer's transaction
        is never idle that long (it waits only for its lanes' commits)."""
        ended = conn.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(a.pid)) "
            "FROM pg_stat_activity a WHERE a.datname = current_database() "
            "AND a.application_name = %s AND a.pid <> pg_backend_pid() "
            "AND a.state LIKE 'idle in transaction%%' "
            "AND a.state_change < now() - make_interval(secs => %s) "
            "AND a.pid IN (SELECT pid FROM pg_locks WHERE relation = 'checkpoint'::regclass)",
            (APPLICATION, ORPHAN_IDLE_S),
        ).fetchone()
        if ended and ended[0]:
            log.warning(
                "ended %d writer sessions idle in a transaction on the checkpoint", ended[0]
            )

    def close(self) -> None:
        with self._sessions_lock:
            self._closed_sessions |= self._sessions
            self._sessions = set()
        for conn in (self.conn, *self._lane_conns.values()):
            if conn is not None:
                conn.close()
        self.conn = None
        self._lane_conns.clear()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def checkpoint(self) -> int:
        return self.checkpoint_entry()[0]

    def checkpoint_entry(self) -> tuple[int, int | None]:
        """The checkpoint's seq and the CRC-32 of its journal image (None: not kept)."""
        row = self.open().execute("SELECT last_seq, last_crc FROM checkpoint").fetchone()
        assert row is not None, "the checkpoint row is missing (migration 0001 inserts it)"
        return int(row[0]), None if row[1] is None else int(row[1])

    def ensure_partitions(
        self, first_us: int, last_us: int, trades: GroupedRows | None = None
    ) -> None:
        """Daily partitions for [first_us, last_us] (pg micros) and the days ahead of today.
        With ``trades`` (those rows' trades) a span wider than ``_SPAN_DAYS`` makes only the
        days they fall on: a clock stepped years ahead or back within one batch must not
        make a partition for every day between (thousands of tables in one transaction ran
        out of lock slots, an error retried for ever)."""
        today = (int(dt.datetime.now(dt.UTC).timestamp() * 1_000_000) - PG_EPOCH_US) // _DAY_US
        first, last = first_us // _DAY_US, last_us // _DAY_US
        if trades is not None and last - first > _SPAN_DAYS:
            days = _trade_days(trades)
        else:
            days = set(range(first, last + 1))
        ahead = set(range(today, today + self.days_ahead + 1)) - days
        if time.monotonic() < self._ahead_after:  # refused a moment ago: not every batch
            ahead = set()  # waits its lock_timeout while a dump runs
        needed, wanted = sorted(days - self._days), sorted(ahead - self._days)
        if not needed and not wanted:
            return
        conn = self.open()
        for lo, hi in _runs(needed):  # the batch's rows go there: waited for, if need be
            self._partitions(conn, lo, hi)
            self._days.update(range(lo, hi + 1))
        # Days ahead are not needed yet: made only where the lock comes at once. A partition
        # takes an ACCESS EXCLUSIVE lock on trades, which any open reader of it holds off (a
        # nightly pg_dump); waiting for it stopped the writer, and every new read of trades
        # queued behind the request (review 40). A later batch tries again.
        for lo, hi in _runs(wanted):
            try:
                with conn.transaction():
                    conn.execute(f"SET LOCAL lock_timeout = {AHEAD_LOCK_TIMEOUT_MS}")
                    self._partitions(conn, lo, hi)
            except psycopg.errors.LockNotAvailable:
                log.info("trade partitions ahead (days %d-%d from 2000-01-01) wait for a "
                         "reader of trades: again in %d s", lo, hi, AHEAD_RETRY_S)  # fmt: skip
                self._ahead_after = time.monotonic() + AHEAD_RETRY_S
                break
            self._days.update(range(lo, hi + 1))

    @staticmethod
    def _partitions(conn: psycopg.Connection[Any], lo: int, hi: int) -> None:
        epoch = dt.date(2000, 1, 1)
        conn.execute(
            "SELECT ringex_trade_partitions(%s, %s)",
            (epoch + dt.timedelta(days=lo), epoch + dt.timedelta(days=hi)),
        )

    def write(self, batch: Batch) -> bool:
        """Commit ``batch`` with its checkpoint; False when it was committed already."""
        conn = self.open()
        if batch.trades.count:
            self.ensure_partitions(batch.ts_min_us, batch.ts_max_us, batch.trades)
        with conn.transaction():
            row = conn.execute("SELECT last_seq, last_crc FROM checkpoint FOR UPDATE").fetchone()
            assert row is not None
            at, crc = int(row[0]), row[1]
            if at == batch.last_seq:
                if crc is not None and batch.last_crc is not None and crc != batch.last_crc:
                    raise OtherHistoryError(at, batch, int(crc), batch.last_crc)
                return False
            if at != batch.first_seq - 1:
                raise CheckpointMismatchError(at, batch)
            if crc is not None and batch.prev_crc is not None and crc != batch.prev_crc:
                raise OtherHistoryError(at, batch, int(crc), batch.prev_crc)
            lanes = self._start_lanes(batch)
            try:
                self._write_rest(conn.cursor(), batch)
            finally:
                wait(lanes)  # their connections are free again before anyone retries or closes
            for lane in lanes:
                lane.result()  # a lane that failed fails the batch (this transaction)
            conn.execute(
                "UPDATE checkpoint SET last_seq = %s, last_crc = %s, updated = now()",
                (batch.last_seq, batch.last_crc),
            )
            for hook in self.before_commit:
                hook(conn, batch)
        if self.layout != self.lanes:
            self.layout = self._lay_out(conn)
        return True

    def _write_rest(self, cur: psycopg.Cursor[Any], batch: Batch) -> None:
        """Every row of the batch but its trades, into its temp table and merged from there."""
        for rows in (batch.accounts, batch.order_rows):
            if rows.count:
                _copy_binary(cur, rows.layout, rows.payload())
                cur.execute(_UPSERTS[rows.layout.table])
        for table, values in (
            ("transfers", batch.transfers),
            ("balances", batch.balances),
            ("candles", batch.candle_rows()),
        ):
            if values:
                with cur.copy(f"COPY tmp_{table} FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(_TYPES[table])
                    for value in values:
                        copy.write_row(value)
                cur.execute(_UPSERTS[table])

    # -- lanes ------------------------------------------------------------------------------

    def _start_lanes(self, batch: Batch) -> list[Future[None]]:
        """The batch's trades, each lane's symbols on the lane's connection and thread."""
        if not batch.trades.count:
            return []
        symbols: dict[int, list[int]] = {}
        for symbol in batch.trades.groups:
            symbols.setdefault(symbol % self.layout, []).append(symbol)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(16, thread_name_prefix="ringex-db-lane")
        return [
            self._pool.submit(self._write_lane, lane, mine, batch)
            for lane, mine in sorted(symbols.items())
        ]

    def _write_lane(self, lane: int, symbols: list[int], batch: Batch) -> None:
        """One lane's transaction: its trades after its checkpoint, and the checkpoint."""
        conn = self._lane_conns.get(lane)
        if conn is None or conn.closed:
            conn = self._lane_conns[lane] = self._connect()
            if self.trades_on_conflict:
                conn.execute(
                    "CREATE TEMP TABLE IF NOT EXISTS tmp_trades (LIKE trades) ON COMMIT DELETE ROWS"
                )
        with conn.transaction():
            row = conn.execute(
                "SELECT last_seq FROM trade_lanes WHERE lane = %s FOR UPDATE", (lane,)
            ).fetchone()
            if row is None:
                raise RuntimeError(f"trade lane {lane} has no row in trade_lanes ({self.layout})")
            done = int(row[0])
            if done >= batch.last_seq:
                return  # its commit made it, the batch's did not: written again
            payload, count = batch.trades.payload(symbols, done)
            if count:
                cur = conn.cursor()
                if self.trades_on_conflict:
                    _copy_binary(cur, TRADES, payload)
                    cur.execute(self.trades_sql)
                else:
                    _copy_binary(cur, TRADES, payload, into="trades")
            conn.execute(
                "UPDATE trade_lanes SET last_seq = %s WHERE lane = %s", (batch.last_seq, lane)
            )

    def rewind_lanes(self, checkpoint: int, next_trade_ids: Mapping[int, int]) -> list[int]:
        """Bring every lane ahead of the ``checkpoint`` back to it, at a writer's start: its
        symbols' trades from ``next_trade_ids`` on (each symbol's first trade id past the
        checkpoint, from the replay state there) deleted and its row at the checkpoint, so
        the next batch writes them again from the journal. A lane is ahead only after a
        crash between its commit and its batch's; the journal it was written from may have
        lost that tail since (a host crash under ``fsync = "none"``, or a failover to a
        standby without it), and a lane that skipped its trades up to its row kept the lost
        history's and never filed the new one's (review 40). Returns the lanes rewound: none
        where the checkpoint is no longer ``checkpoint`` (a database that lost commits since
        the start read it, or another writer's: the first batch's check raises, and a writer
        started again from a lower checkpoint rewinds from there; review 84)."""
        conn = self.open()
        with conn.transaction():
            row = conn.execute("SELECT last_seq FROM checkpoint FOR UPDATE").fetchone()
            assert row is not None, "the checkpoint row is missing (migration 0001 inserts it)"
            if int(row[0]) != checkpoint:  # moved since the start read it: the first
                return []  # batch's check says how (lost commits: the writer starts again)
            seqs = dict(conn.execute("SELECT lane, last_seq FROM trade_lanes FOR UPDATE"))
            ahead = sorted(lane for lane, seq in seqs.items() if seq > checkpoint)
            if not ahead:
                return []
            lanes = len(seqs)
            with conn.cursor() as cur:
                cur.executemany(
                    "DELETE FROM trades WHERE symbol_id = %s AND trade_id >= %s",
                    [(s, first) for s, first in next_trade_ids.items() if s % lanes in ahead],
                )
            conn.execute(
                "UPDATE trade_lanes SET last_seq = %s WHERE last_seq > %s", (checkpoint, checkpoint)
            )
        log.warning(
            "trade lanes %s were ahead of the checkpoint (seq %d): their trades past it are "
            "written again from the journal", ahead, checkpoint,
        )  # fmt: skip
        if self.layout != self.lanes:
            self.layout = self._lay_out(conn)
        return ahead

    def _lay_out(self, conn: psycopg.Connection[Any]) -> int:
        """Lay ``trade_lanes`` out for ``self.lanes`` lanes at the checkpoint, unless a lane
        is ahead of it (its trades of the next batch are in, the batch is not): then keep
        the lanes as they are until that batch is in. Returns the lane count in effect."""
        while True:
            try:
                return self._lay_out_locked(conn)
            except psycopg.errors.LockNotAvailable:  # held: by an orphan, it is ended
                self._end_stale_holders(conn)

    def _lay_out_locked(self, conn: psycopg.Connection[Any]) -> int:
        with conn.transaction():
            conn.execute(f"SET LOCAL lock_timeout = '{int(ORPHAN_IDLE_S * 1000)}ms'")
            row = conn.execute("SELECT last_seq FROM checkpoint FOR UPDATE").fetchone()
            assert row is not None, "the checkpoint row is missing (migration 0001 inserts it)"
            at = int(row[0])
            seqs = dict(conn.execute("SELECT lane, last_seq FROM trade_lanes FOR UPDATE"))
            if sorted(seqs) == list(range(self.lanes)):
                return self.lanes
            if any(seq > at for seq in seqs.values()):
                log.warning(
                    "trade lanes stay %d (configured: %d) until the batch after seq %d is in: "
                    "lanes %s wrote theirs before a crash", len(seqs), self.lanes, at,
                    sorted(lane for lane, seq in seqs.items() if seq > at),
                )  # fmt: skip
                return len(seqs)
            conn.execute("DELETE FROM trade_lanes")
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO trade_lanes VALUES (%s, %s)", [(k, at) for k in range(self.lanes)]
                )
            return self.lanes


def _copy_binary(
    cur: psycopg.Cursor[Any], layout: RowLayout, payload: bytes, into: str = ""
) -> None:
    """COPY ``payload`` into ``layout``'s temp table, or straight ``into`` a real one."""
    table = into or f"tmp_{layout.table}"
    with cur.copy(f"COPY {table} ({layout.column_list}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(payload)


def _runs(days: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for d in days:
        if runs and runs[-1][1] == d - 1:
            runs[-1] = (runs[-1][0], d)
        else:
            runs.append((d, d))
    return runs


def _trade_days(trades: GroupedRows) -> set[int]:
    """The UTC days (since 2000-01-01) of every trade in ``trades`` (their packed ts)."""
    at = trades.layout.names.index("ts") * 2 + 2  # (count, then length, value per field)
    days: set[int] = set()
    for buf, _ in trades.groups.values():
        for row in trades.layout.row.iter_unpack(buf):
            days.add(row[at] // _DAY_US)
    return days
