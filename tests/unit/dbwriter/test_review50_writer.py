"""Review 50 of the database writer (``procs/dbwriter``), by a hostile reviewer.

Each test but one failed on the code it was written against, for a fault in what lands in
PostgreSQL (its docstring says what the README or the schema asks, what the code did, and
where), and passes since its fix (the same commit). The one passing test pins what
this review checked and found right. Everything runs the real writer into the session's real
PostgreSQL (``tests/unit/conftest.py``, a database per test) over journals made by the real
sequencer and matchers (``journal_gen``).
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest

from procs.common.embedded_postgres import PORT, EmbeddedPostgres
from procs.common.journal import JournalReader
from procs.common.record_codec import RecordCodec
from procs.common.records import AdminCommand, ReplaceOrder
from procs.common.topology import journal_dir
from procs.common.types import AdminAction, Side
from procs.dbwriter.projection import Batch
from procs.dbwriter.replay import Follower
from procs.dbwriter.store import prepare
from procs.dbwriter.users import UserSync
from procs.dbwriter.writer import DbWriter, WriterOptions
from tests.unit.dbwriter.history_query import query_history
from tests.unit.dbwriter.journal_gen import (
    JournalBuilder,
    build,
    fund,
    limit_order,
    make_cfg,
    write_all,
)
from tests.unit.dbwriter.reconcile import reconcile
from tests.unit.dbwriter.test_review26_dbwriter import _every_kind
from tests.unit.dbwriter.test_review40_writer_faults import _QUICK, CrashError, _Proxy, _Running


@pytest.fixture
def proxy(pg: EmbeddedPostgres) -> Iterator[tuple[_Proxy, Callable[[str], str]]]:
    """A socket in front of the cluster that can cut its clients off while their server
    sessions live on (review 40's ``_Proxy``), and what turns a dsn into one through it."""
    directory = Path(tempfile.mkdtemp(prefix="rgx50-"))  # short: a socket path is <108 bytes
    cut = _Proxy(pg.data / f".s.PGSQL.{PORT}", directory)
    try:
        yield cut, lambda dsn: dsn.replace(f"host={pg.data}", f"host={directory}")
    finally:
        cut.close()
        shutil.rmtree(directory, ignore_errors=True)


# -- checked and found right -------------------------------------------------------------------


def test_checked_balances_and_open_orders_equal_the_replay_after_every_batch(
    tmp_path: Path, dsn: str
) -> None:
    """Checked: inside each batch's transaction, just before its commit, the ``balances``
    table (every non-zero row) equals the router's accounts replayed to the batch's last
    seq, and the open orders' rows equal the books' resting orders and pending stops
    (remaining = visible + reserve), for a journal of every order kind (icebergs, stops,
    STP, FOK/IOC/market, replaces, mass cancels, session ends, halts) cut into batches of
    seven rows: no balance change is left unmarked until a later batch."""
    cfg = make_cfg(tmp_path)
    rng = random.Random(50)
    b = JournalBuilder(cfg, seed=50)
    b.setup()
    _every_kind(b, 800, rng)
    b.close()
    codec = RecordCodec()
    reader = JournalReader(
        journal_dir(cfg), slot_size=codec.slot_size, schema_id=codec.journal_schema_id
    )
    shadow = Follower(cfg)
    decimals = {a.id: a.decimals for a in cfg.assets}
    wrong: list[tuple[int, str]] = []

    def check(conn: psycopg.Connection[Any], batch: Batch) -> None:
        for seq, image in reader.entries(shadow.seq + 1):
            command = codec.decode_slot(image)
            shadow.projection.process(seq, command, shadow.step(seq, command), None)
            if seq == batch.last_seq:
                break
        want = {
            (a, s): (Decimal(f).scaleb(-decimals[s]), Decimal(r).scaleb(-decimals[s]))
            for a, s, f, r in shadow.sequencer.accounts.state().balances
        }
        rows = conn.execute("SELECT account_id, asset_id, free, reserved FROM balances")
        got = {(a, s): (f, r) for a, s, f, r in rows if (f, r) != (0, 0)}
        if got != want:
            wrong.append((batch.last_seq, "balances"))
        resting: dict[int, int] = {}
        for matcher in shadow.matchers.values():
            for book in matcher.books.values():
                for oid, o in (*book.orders.items(), *book.stops.items()):
                    resting[oid] = o.leaves + o.reserve
        filed = dict(conn.execute("SELECT id, remaining FROM orders WHERE status IN (0, 1, 2)"))
        if filed != resting:
            wrong.append((batch.last_seq, "open orders"))

    writer = DbWriter(cfg, dsn, WriterOptions(batch_rows=7, batch_ms=10**6))
    writer.store.before_commit.append(check)
    try:
        assert writer.run(to_end=True) == b.last_seq
    finally:
        writer.close()
    assert not wrong, wrong[:5]
    reconcile(dsn, b)


# -- faults -------------------------------------------------------------------------------------


def test_a_refused_replace_is_not_the_orders_last_change(tmp_path: Path, dsn: str) -> None:
    """README (REST, allOrders): "``updateTime`` is the time of the order's last change: a
    fill, a replace, a stop's trigger, its end", and ``allOrders`` shows a filed row over
    the gateway's live view when its ``updated_seq`` is newer (``history.py``: the row's
    ``updated_seq`` is "the journal seq of its last change"). ``Projection._event``
    (``projection.py``, the ``Rejected`` branch) puts the order into ``touched`` for every
    ``Rejected`` of a command about it (``# a replace's hold went back``), so
    ``Projection.process`` writes a new version of the row stamped with the refused
    command's seq and time though nothing of the order changed (the balances, which the
    ``ReplaceOrder`` branch marks already, were the reason). The live view
    (``RestOrders``) leaves ``update_ms`` alone on a refused amend; the database then
    contradicts it, and wins (its ``updated_seq`` is newer).

    Here account 10's sell of 10 is filled 4 (the last change), the symbol is halted, and
    its replace is refused by the matcher (``SYMBOL_HALTED``: journaled, the router leaves it
    to the matcher). Expected: the row's ``updated_seq`` and ``updateTime`` are the
    fill's. Actual: the refused replace's. Fix: in the ``Rejected`` branch, mark the
    order's balances (``_mark``) instead of touching the row, unless the order itself was
    refused."""
    cfg = make_cfg(tmp_path)
    b = JournalBuilder(cfg)
    fund(b, 10, {1: 10**12, 2: 10**12})
    fund(b, 11, {1: 10**12, 2: 10**12})
    oid = limit_order(b, 10, 1, Side.SELL, 100_000, 10)
    limit_order(b, 11, 1, Side.BUY, 100_000, 4)
    fill_seq, fill_ms = b.trades[-1].seq, b.trades[-1].ts_ns // 10**6
    assert b.submit(AdminCommand(0, 0, AdminAction.HALT, 1, b._next()))
    refused = b.submit(ReplaceOrder(*b._header(10, 1), oid, 100_000, 8))
    assert refused is not None  # journaled: the matcher refuses it
    b.close()
    assert write_all(cfg, dsn) == b.last_seq
    (order,) = query_history(dsn, lambda h: h.orders(10, 1))
    assert order[:12] == (oid, 10, 1, 2, 1, 1, 100_000, 0, 10, 6, 4, 2)  # as the fill left it
    assert (order[16], order[14]) == (fill_seq, fill_ms)


def test_a_user_nobody_changed_keeps_its_updated_time(tmp_path: Path, dsn: str) -> None:
    """``users.updated`` (``0001_core.sql``) sits beside ``created`` as the time the row
    last changed: an auditor reads it to find when a user's password or account moved.
    ``UserSync.sync`` (``users.py``) upserts *every* user of the file whenever its digest
    differs from the last one written, with ``updated = now()`` whether or not that user
    changed; the digest is forgotten at every writer start and every new main connection
    (``DbWriter.start``, ``_housekeeping``), so each restart, each reconnect after a blip,
    and each user another admin adds stamps every user as changed now.

    Here ALICE is mirrored, then BOB is added. Expected: ALICE's ``updated`` as it was.
    Actual: the time BOB was added. Fix: ``DO UPDATE ... WHERE (users.id, users.username,
    users.password_hash, users.account_id) IS DISTINCT FROM (excluded.id, ...)``."""
    cfg = make_cfg(tmp_path)
    sync = UserSync(tmp_path / "users.json")
    with psycopg.connect(dsn, autocommit=True) as conn:
        prepare(conn, cfg)
        sync.store.add("ALICE", "pw", 10, n=2)
        assert sync.sync(conn)
        (before,) = conn.execute("SELECT updated FROM users WHERE username = 'ALICE'").fetchone()  # type: ignore[misc]
        time.sleep(0.01)
        sync.store.add("BOB", "pw", 11, n=2)
        assert sync.sync(conn)
        (after,) = conn.execute("SELECT updated FROM users WHERE username = 'ALICE'").fetchone()  # type: ignore[misc]
    assert after == before


def test_a_restarted_writer_is_not_held_by_the_orphan_of_the_one_before(
    tmp_path: Path, dsn: str, proxy: tuple[_Proxy, Callable[[str], str]]
) -> None:
    """Review 40 found a writer waiting on its own orphan: a network outage mid-batch leaves
    the server session idle in its transaction, holding the checkpoint row's lock (``FOR
    UPDATE``) until the server's TCP keepalive gives up (two hours and more by the OS
    defaults). The fix, ``PgStore._end_orphans`` (``store.py``), ends the sessions of the
    connections *this* ``PgStore`` closed, known from its memory (``_closed_sessions``).
    A writer process that dies or is restarted meanwhile (the operator's ``systemctl
    restart`` during the incident, the supervisor's restart after a crash, a failover to
    another host) forgets them: the new process's first ``open`` lays the lanes out under
    ``SELECT .. FROM checkpoint FOR UPDATE`` (``_lay_out``) and waits there, before READY
    and without a log line, with no ``lock_timeout`` and no
    ``idle_in_transaction_session_timeout`` on the writer's sessions (``connect``).

    Here the outage cuts the writer's connections inside its third batch's transaction
    (lanes committed, COMMIT not sent) and the process dies (an exception out of ``run``);
    a new ``DbWriter`` then starts over the same journal. Expected: it is through the
    journal within a few seconds. Actual: it waits until the orphan ends (here, when the
    test lets it). Fix: ``idle_in_transaction_session_timeout`` (say 2 s: the
    writer's transactions are idle only while its lanes write) in ``connect``'s options,
    or a ``lock_timeout`` on the checkpoint lock whose expiry ends the holder if it is an
    idle ringex writer session (``pg_stat_activity.state``)."""
    cut, via = proxy
    cfg = make_cfg(tmp_path)
    live = build(cfg, 600)
    live.close()
    first = DbWriter(cfg, via(dsn), WriterOptions(batch_rows=100, batch_ms=10**6, backoff=_QUICK))
    batches = 0

    def outage_then_death(_conn: psycopg.Connection[Any], _batch: Batch) -> None:
        nonlocal batches
        batches += 1
        if batches == 3:
            cut.cut()
            raise CrashError

    first.store.before_commit.append(outage_then_death)
    with pytest.raises((CrashError, psycopg.Error)):
        first.run(to_end=True)
    first.close()
    second = DbWriter(cfg, dsn, WriterOptions(batch_rows=100, batch_ms=10**6, backoff=_QUICK))
    running = _Running(second, to_end=True)
    try:
        in_time = running.done.wait(5)
    finally:
        cut.heal()  # the server notices at last: the orphan ends, the writer goes on
        running.done.wait(30)
        running.stop()
    assert not running.errors, running.errors
    reconcile(dsn, live)
    assert in_time, "the restarted writer waited on the orphan of the one before"


def _app_role(dsn: str) -> str:
    """``dsn`` as a role that owns its database and is no superuser: what an operator gives
    the writer on a PostgreSQL of their own (``database.dsn``)."""
    name = dsn.split("dbname=")[1].split(maxsplit=1)[0]
    role = f"rgx50_{name}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"ALTER DATABASE {name} OWNER TO {role}")
    return " ".join(p for p in dsn.split() if not p.startswith("user=")) + f" user={role}"


def test_a_writer_that_is_no_superuser_migrates_where_timescaledb_is_installed(
    tmp_path: Path, dsn: str
) -> None:
    """README: the writer files trades in "day partitions, BRIN; a hypertable under
    TimescaleDB", with ``database.dsn`` any PostgreSQL; nothing asks for a superuser (the
    writer needs none: as the owner of its database it migrates, makes its partitions and
    ends its own orphaned sessions). ``0002_trades.sql`` picks the hypertable with
    ``EXISTS (.. pg_available_extensions WHERE name = 'timescaledb') AND
    current_setting('shared_preload_libraries') LIKE '%timescaledb%'``. That setting is
    ``GUC_SUPERUSER_ONLY``: for any other role (without ``pg_read_all_settings``)
    ``current_setting`` raises "must be superuser or have privileges of
    pg_read_all_settings". Where the extension's package is not installed the ``AND``
    stops before it; where it is (a server with the package, preloaded or not: the
    "extension missing" from ``shared_preload_libraries``), the migration fails,
    ``PgStore.open`` raises ``InsufficientPrivilege``, which ``DbWriter._retry`` does not
    retry: the writer dies at every start and the history is never written.

    TimescaleDB's package cannot be installed here: its control file, which is all that
    lists it in ``pg_available_extensions``, is stood in for by a view of that name ahead
    of ``pg_catalog`` on the database's ``search_path``. Expected: the writer files the
    journal (the plain path: the extension is not preloaded). Actual:
    ``InsufficientPrivilege`` out of the migration. Fix: ``current_setting(..)`` inside a
    ``BEGIN .. EXCEPTION WHEN insufficient_privilege`` (or ``pg_settings``, which hides the
    value instead of raising); 0002 is applied in every existing database, so the changed
    file needs ``migrate`` to accept its old checksum too."""
    cfg = make_cfg(tmp_path)
    b = JournalBuilder(cfg)
    fund(b, 10, {1: 10**12, 2: 10**12})
    fund(b, 11, {1: 10**12, 2: 10**12})
    limit_order(b, 10, 1, Side.SELL, 100_000, 3)
    limit_order(b, 11, 1, Side.BUY, 100_000, 3)
    b.close()
    app = _app_role(dsn)
    name = dsn.split("dbname=")[1].split(maxsplit=1)[0]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {name} SET search_path = public, pg_catalog")
    with psycopg.connect(app, autocommit=True) as conn:  # the package's control file
        conn.execute(
            "CREATE VIEW public.pg_available_extensions AS SELECT * FROM "
            "pg_catalog.pg_available_extensions UNION ALL "
            "SELECT 'timescaledb', '2.17.2', NULL, 'Enables scalable inserts and complex queries'"
        )
    assert write_all(cfg, app) == b.last_seq
    reconcile(dsn, b)


def test_the_fee_account_a_fee_schedule_opens_is_filed_as_an_account(
    tmp_path: Path, dsn: str
) -> None:
    """README: the writer "writes accounts, users, orders, trades, balances and candles",
    and the database is a replay of the journal. The fee account is journaled state: a new
    journal starts with a ``FeeSchedule`` per symbol naming it, and a changed
    ``risk.fee_account`` is journaled as another (``fees.set_fee_account``: "creating it if
    need be"); every trade credits it both fees. ``Projection.process`` (``projection.py``)
    files an ``accounts`` row only for ``CreateAccount`` and ignores ``FeeSchedule``, while
    ``Batch.seal`` files the fee account's balances. So the account that holds every fee
    the exchange ever charged is in ``balances`` and nowhere in ``accounts``: an auditor's
    ``balances LEFT JOIN accounts`` finds money held by no account, and a foreign key from
    balances to accounts cannot be added. (``reconcile`` says "the fee account is made, not
    journaled": no longer so since fees became journaled state.)

    Here the router journals its fee schedule (fee account 99), two accounts trade, then
    the operator moves the fee account to 98 (journaled at the router's restart).
    Expected: 98 and 99 in ``accounts``, with the seq that opened them. Actual: neither.
    Fix: in ``Projection.process``, a ``FeeSchedule`` adds ``(fee_account, seq, ts)`` to
    ``batch.accounts`` (``ON CONFLICT DO NOTHING`` keeps the first)."""
    cfg = make_cfg(tmp_path)
    b = JournalBuilder(cfg)

    def journal_fee_changes() -> None:  # what a starting router does
        for record in b.sequencer.fee_changes(b.clock):
            b.writer.append(record.seq, b.codec.encode_slot(record), 1)
            b.last_seq = record.seq

    journal_fee_changes()
    fund(b, 10, {1: 10**12, 2: 10**12})
    fund(b, 11, {1: 10**12, 2: 10**12})
    limit_order(b, 10, 1, Side.SELL, 100_000, 10)
    limit_order(b, 11, 1, Side.BUY, 100_000, 10)
    b.sequencer.cfg = cfg = msgspec.structs.replace(
        cfg, risk=msgspec.structs.replace(cfg.risk, fee_account=98)
    )
    journal_fee_changes()
    limit_order(b, 10, 1, Side.SELL, 100_000, 10)
    limit_order(b, 11, 1, Side.BUY, 100_000, 10)
    b.close()
    assert write_all(cfg, dsn) == b.last_seq
    with psycopg.connect(dsn) as conn:
        held = {a for (a,) in conn.execute("SELECT DISTINCT account_id FROM balances")}
        filed = {a for (a,) in conn.execute("SELECT id FROM accounts")}
    assert {98, 99} <= held  # each collected fees
    assert held - filed == set()


def test_trades_decimal_shows_the_fees_of_an_eighteen_decimal_quote_asset(
    tmp_path: Path, dsn: str
) -> None:
    """README: each trade row carries ``maker_fee`` and ``taker_fee`` in minor units of the
    quote asset, "``trades_decimal`` shows them in asset units, with ``fee_asset``"; an
    asset may have up to 18 decimals (``AssetConfig.decimals``, as ETH and most ERC-20
    tokens have). ``0007_trade_fees.sql`` computes ``t.maker_fee * power(10::numeric,
    -q.decimals)``. PostgreSQL's numeric ``power`` with a negative exponent answers at most
    16 decimal places: ``power(10::numeric, -18)`` is ``0.0000000000000000``, so for a
    quote asset of 17 or 18 decimals the view shows every fee as 0 (those of 16 and fewer
    are exact; the table's integers, the REST answers and the balances are right).

    Here USD has 18 decimals; BTC-USD trades 10 lots at 1,000.00: 1 USD of notional, fees of
    0.001 (maker, 10 bps) and 0.002 USD (taker, 20 bps). Expected: the view shows them.
    Actual: 0 and 0. Fix: a new migration that makes the view again with an exact scale
    (``t.maker_fee * ('1e-' || q.decimals)::numeric``, or a division by ``10::numeric ^
    q.decimals``); the same for any view that scales by ``power``."""
    base = make_cfg(tmp_path)
    assets = [msgspec.structs.replace(a, decimals=18) if a.id == 1 else a for a in base.assets]
    cfg = msgspec.structs.replace(base, assets=assets)
    b = JournalBuilder(cfg)
    fund(b, 10, {1: 4 * 10**18, 2: 10**12})
    fund(b, 11, {1: 4 * 10**18, 2: 10**12})
    limit_order(b, 10, 1, Side.SELL, 100_000, 10)
    limit_order(b, 11, 1, Side.BUY, 100_000, 10)
    b.close()
    assert write_all(cfg, dsn) == b.last_seq
    with psycopg.connect(dsn) as conn:
        raw = conn.execute("SELECT maker_fee, taker_fee FROM trades").fetchall()
        shown = conn.execute(
            "SELECT maker_fee, taker_fee, fee_asset FROM trades_decimal"
        ).fetchall()
    assert raw == [(10**15, 2 * 10**15)]  # the table's integers are right
    assert shown == [(Decimal("0.001"), Decimal("0.002"), "USD")]
