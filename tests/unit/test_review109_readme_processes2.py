"""Review 109, second part: README.md's "## The processes" rows router, replica-source /
standby and dbwriter, held to the code mechanically (the supervisor and matcher rows and the
rings paragraph, the convention and the list of disagreements are in
``test_review109_readme_processes.py``).

Convention as there: a quote anchors each claim; right is a plain test, a disagreement a
strict xfail asserting the README (the three found are fixed). The router's rules run on small
stand-ins of
``RouterShell``'s state and, for a crash, on review 8's in-process rig; the standby on
``test_standby``'s rig; the writer's tables against its migrations' SQL, and one short run
against the session's private PostgreSQL.
"""

from __future__ import annotations

import collections
import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import psycopg
import pytest

from config.schema import DatabaseConfig, JournalConfig, RingexConfig
from procs.common.embedded_postgres import EmbeddedPostgres
from procs.common.journal_writer import JournalWriter
from procs.common.record_codec import RecordCodec
from procs.common.records import (
    AccountReply,
    CreateAccount,
    Record,
    Rejected,
    Transfer,
)
from procs.common.replication_ack import FENCED
from procs.common.result_codes import ResultCode
from procs.common.topology import journal_dir, matcher_input, postgres_dir, rings
from procs.common.types import Side
from procs.core.recovery import journal_reader, recover
from procs.core.sequencer import Decision
from procs.dbwriter import main as dbwriter_main
from procs.dbwriter import store
from procs.dbwriter.projection import ACCOUNTS, ORDERS, TRADES
from procs.dbwriter.replay import Follower
from procs.dbwriter.users import UserSync
from procs.dbwriter.writer import DbWriter, WriterOptions
from procs.replica import source as replica_source
from procs.replica.files import shipped_files
from procs.replica.tail import JournalTail
from procs.replica.wire import Entries, History
from procs.router.commits import RingCommits
from procs.router.held import Batch, HeldBatches
from procs.router.intake import GatewayIntake
from procs.router.main import RouterShell
from procs.supervisor.plan import plan
from shm import Ring
from tests.readme_text import ROOT, claim, folded, section
from tests.unit.dbwriter.journal_gen import build, make_cfg
from tests.unit.replica.test_standby import standby
from tests.unit.router.test_review8_owed_replies import (
    EXPECTED,
    RING,
    batch,
    crash_then_restart,
    funded,
    kill_router,
    settled,
    told,
)
from tests.unit.router.test_review_crash_points_bugs import Crash, crash_after
from tests.unit.router.test_router import Exchange, order
from tests.unit.router.test_router import config as router_config
from tests.unit.test_review109_readme_processes import full_config

PROCESSES = section("The processes")
CODEC = RecordCodec()

# -- router: the loop ---------------------------------------------------------------------------


def test_the_router_journals_a_batch_durably_before_it_routes_or_answers_it(
    instance: str, tmp_path: Path
) -> None:
    """README: router "sequencer, risk and balances, journal (group commit before routing),
    replies to gateways". Under ``fsync = "interval"`` a ``RouterShell`` step journals the
    batch (an order, and a refusal of an unknown account) and holds it: nothing reaches the
    matcher's input ring and no reply the gateway's reply ring until the fsync; then the
    order is routed and the refusal sent."""
    claim("sequencer, risk and balances, journal (group commit before routing), replies to "
          "gateways.", PROCESSES)  # fmt: skip
    ex = funded(router_config(instance, tmp_path))
    try:
        ex.router.close()
        ex.cfg = msgspec.structs.replace(
            ex.cfg, journal=JournalConfig(fsync="interval", fsync_interval_ms=10_000)
        )
        ex.router = RouterShell(ex.cfg)
        assert ex.router.inputs[-1][0] == 0  # the admin ring, its ready ring, attached last
        books = Ring.attach(instance, matcher_input("m1"), CODEC)
        before, journaled = books.cursor(), ex.router.journal.next_seq
        ex.gateways[1].publish_batch(
            [order(50, 7, Side.BUY, 1000, 1), order(51, 99, Side.BUY, 1000, 1)]
        )
        ex.router.step(timeout_s=0.001)
        assert ex.router.journal.next_seq == journaled + 1  # the order journaled, held
        assert books.cursor() == before and ex.replies_of(1) == []
        ex.router.journal.sync()
        ex.router.step(timeout_s=0.001)
        assert books.cursor() == before + 1
        [refused] = ex.replies_of(1)
        assert isinstance(refused, Rejected) and refused.client_ref == 51
        assert refused.code != ResultCode.OK  # the risk check's refusal
        books.close()
    finally:
        ex.stop()


#: A reply that waits for room in its gateway's reply ring.
REFUSAL = Rejected(0, 0, 2, 1, 1, 99, 1, 0, ResultCode.UNKNOWN_ACCOUNT)


class Commits(RingCommits):
    """``RingCommits``' state, the journal and the consumers stood in for."""

    def __init__(self, window: int = 16) -> None:
        self.journal = SimpleNamespace(next_seq=1, sync=lambda: None)  # type: ignore[assignment]
        self.commits: list[tuple[int, int | None]] = []
        self.inputs = [(g, self._consumer(g)) for g in (1, 2)]
        self.pending_replies = {1: collections.deque(), 2: collections.deque()}
        self._owed = {}
        self._held = HeldBatches()
        self._tail_window = window
        self._waiting_since = {}
        self._routed_upto = {}
        self._commit_floor = {}
        self._watch_requests = []

    def _consumer(self, gateway: int) -> Any:
        return SimpleNamespace(commit=lambda upto: self.commits.append((gateway, upto)), sequence=9)

    def _route_durable(self) -> None:
        pass


def test_a_gateway_whose_replies_wait_gives_no_more_commands() -> None:
    """README: "one whose replies wait for room gives no more commands meanwhile".
    ``GatewayIntake._readable`` leaves out a gateway with replies pending, and ``_take``
    reads only those."""
    claim("(one whose replies wait for room gives no more commands meanwhile;", PROCESSES)
    shell: Any = SimpleNamespace(
        inputs=[(1, "ring 1"), (2, "ring 2")],
        pending_replies={1: collections.deque([REFUSAL]), 2: collections.deque()},
    )
    readable: list[Any] = GatewayIntake._readable(shell)
    assert readable == [(2, "ring 2")]


def test_a_gateways_ring_is_committed_once_its_replies_are_out() -> None:
    """README: "A gateway's ring is committed once its replies are out".
    ``RingCommits._commit_answered``: gateway 1, answered, is committed wholly; gateway 2,
    a reply waiting for room, is not (shortly after it began to wait)."""
    claim("A gateway's ring is committed once its replies are out", PROCESSES)
    rig = Commits()
    rig.pending_replies[2].append(REFUSAL)
    rig._commit_answered()
    assert rig.commits == [(1, None)]
    rig.pending_replies[2].clear()  # its replies went out
    rig._commit_answered()
    assert rig.commits[1:] == [(1, None), (2, None)]


def test_with_a_batch_held_a_ring_is_committed_up_to_its_newest_routed_batch() -> None:
    """README: "with a batch held for its fsync, up to its newest routed batch".
    ``_commit_answered``: a gateway with a command in a held batch, its routed batches
    answered, is committed up to the ring position after the newest routed one."""
    claim("with a batch held for its fsync, up to its newest routed batch;", PROCESSES)
    rig = Commits()
    rig._held.hold(Batch(last_seq=5, decisions=[Decision(None)], origins=[1], watch_requests=[]))
    rig._routed_upto[1] = 4
    rig._commit_answered()
    assert rig.commits == [(1, 4), (2, None)]


def test_a_ring_whose_replies_wait_too_long_is_committed_regardless() -> None:
    """README: "a gateway that leaves its replies unread while half the commands a restart
    looks back over are journaled has its ring committed regardless, with a warning" (review
    109: the README said only "once its replies are out"). Gateway 2's reply waits: its ring
    stays uncommitted until more than half of ``_tail_window`` commands are journaled, then
    ``RingCommits._commit_answered`` commits it."""
    claim("a gateway that leaves its replies unread while half the commands a restart looks "
          "back over are journaled has its ring committed regardless, with a warning",
          PROCESSES)  # fmt: skip
    rig = Commits(window=16)
    rig.pending_replies[2].append(REFUSAL)
    rig._commit_answered()  # gateway 2 begins to wait at seq 1
    assert [g for g, _upto in rig.commits if g == 2] == []
    rig.journal.next_seq = 1 + 16 // 2  # type: ignore[misc]
    rig._commit_answered()
    assert [g for g, _upto in rig.commits if g == 2] == []  # half: not past it yet
    rig.journal.next_seq = 1 + 16 // 2 + 1  # type: ignore[misc]
    rig._commit_answered()
    assert [g for g, _upto in rig.commits if g == 2] == [2]


@pytest.fixture
def rig(instance: str, tmp_path: Path) -> Iterator[Exchange]:
    """Review 8's exchange: account 7 funded, its replies read."""
    ex = funded(router_config(instance, tmp_path))
    yield ex
    ex.stop()


def test_after_a_crash_a_journaled_command_is_not_sequenced_again(
    rig: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README: "after a crash, what it reads again is not decided twice: a command the
    journal has is not sequenced again (its owed OK is sent in the command's place: a gateway
    reads the router's replies in its commands' order, each once, ...)". Killed after the
    batch's journal write (review 8's, on the admin ring: it opens an account and deposits,
    review 343): the restart (``reread.py``) journals nothing twice and answers the six
    commands in order, the owed OKs among the refusals decided again."""
    claim("after a crash, what it reads again is not decided twice: a command the journal has "
          "is not sequenced again (its owed OK is sent in the command's place: a gateway reads "
          "the router's replies in its commands' order, each once, wherever a crash cut a "
          "step;", PROCESSES)  # fmt: skip
    crash_after(rig.router.journal, "append", monkeypatch)
    rig.gateways[RING].publish_batch(batch())
    crash_then_restart(rig, monkeypatch)
    assert settled(rig) == EXPECTED  # and each journaled command there once


def test_after_a_crash_a_command_whose_reply_is_out_is_not_decided_again(
    rig: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README: "one whose reply is in the gateway's reply ring is not decided again".
    Killed once every reply of the batch (review 8's, on the admin ring) was out, before its
    ring's commit: the restart reads the batch again and answers none of it a second time."""
    claim("one whose reply is in the gateway's reply ring is not decided again", PROCESSES)
    crash_after(rig.router, "_flush_replies", monkeypatch)
    rig.gateways[RING].publish_batch(batch())
    with pytest.raises(Crash):
        for _ in range(5):
            rig.router.step(timeout_s=0.001)
    first = told(rig)
    kill_router(rig, monkeypatch)
    rig.pump()
    assert first == EXPECTED and told(rig) == []


class Owed:
    """``RouterShell``'s owed-answer state, with its methods, a sync standby stood in for."""

    _answer: Any = RouterShell._answer
    _standby_holds: Any = RouterShell._standby_holds
    _pay_owed: Any = RouterShell._pay_owed
    _abandon: Any = RouterShell._abandon

    def __init__(self) -> None:
        self._owed: dict[int, Any] = {}
        self.pending_replies: dict[int, collections.deque[Record]] = {
            1: collections.deque(),
            2: collections.deque(),
        }
        self.gate = SimpleNamespace(degraded=False, block=SimpleNamespace(acked_seq=5))
        self._held = HeldBatches()
        self.acks = SimpleNamespace(words={FENCED: 0})
        self.journal = SimpleNamespace(next_seq=11)

    def _send_pending(self) -> None:
        pass


def _reply(ref: int, code: ResultCode = ResultCode.OK) -> AccountReply:
    return AccountReply(0, 0, 1, 1, ref, 7, 0, code, 0)


def test_in_sync_mode_an_owed_ok_waits_for_the_standby_and_later_replies_behind_it() -> None:
    """README: "in sync mode an owed OK waits until the standby holds its command, and that
    gateway's later replies wait behind it". ``RouterShell._answer``: an OK owed to seq 10,
    the standby holding 5, is parked, and so is a later refusal of that gateway; another
    gateway's reply goes; once the standby holds 10, ``_pay_owed`` queues both in order."""
    claim("in sync mode an owed OK waits until the standby holds its command, and that "
          "gateway's later replies wait behind it;", PROCESSES)  # fmt: skip
    shell = Owed()
    owed, later, other = _reply(1), _reply(2, ResultCode.UNKNOWN_ACCOUNT), _reply(3)
    shell._answer(1, owed, 10)
    shell._answer(1, later)
    shell._answer(2, other)
    assert list(shell.pending_replies[1]) == [] and list(shell.pending_replies[2]) == [other]
    shell.gate.block.acked_seq = 10
    shell._pay_owed()
    assert list(shell.pending_replies[1]) == [owed, later] and shell._owed == {}


def test_a_stop_while_a_batch_waits_answers_only_the_refusals_before_a_first_command() -> None:
    """README: "a stop while a batch waits for the standby answers only the refusals before a
    gateway's first command in it". ``RouterShell._abandon``: gateway 1's refusal before its
    command is answered, the one after it is not; gateway 2's refusal (no command) is."""
    claim("a stop while a batch waits for the standby answers only the refusals before a "
          "gateway's first command in it)", PROCESSES)  # fmt: skip
    shell = Owed()
    before, after, other = _reply(1, ResultCode.UNKNOWN_ACCOUNT), _reply(3), _reply(4)
    command = CreateAccount(10, 0, 1, 1, 2, 8)
    decisions = [Decision(None, reply=before), Decision(command), Decision(None, reply=after),
                 Decision(None, reply=other)]  # fmt: skip
    shell._abandon(decisions, [1, 1, 1, 2])
    assert list(shell.pending_replies[1]) == [before]
    assert list(shell.pending_replies[2]) == [other]


# -- replica-source / standby ---------------------------------------------------------------


def test_the_source_tails_the_journal(tmp_path: Path) -> None:
    """README: the source "tails the journal". ``ReplicationSource`` reads with
    ``JournalTail``, which returns the entries a live writer appended, and then the ones
    appended since."""
    claim("tails the journal and ships it", PROCESSES)
    assert vars(replica_source)["JournalTail"] is JournalTail
    cfg = RingexConfig(var_dir=str(tmp_path))
    writer = JournalWriter(journal_dir(cfg), slot_size=CODEC.slot_size,
                           schema_id=CODEC.journal_schema_id, fsync="none")  # fmt: skip
    first = [CreateAccount(1, 1, 0, 0, 1, 7), CreateAccount(2, 1, 0, 0, 2, 8)]
    writer.append(1, CODEC.encode_slots(first), 2)
    tail = JournalTail(journal_reader(cfg, CODEC))
    assert [CODEC.decode_slot(i) for i in tail.read(1, 10)] == first
    more = CreateAccount(3, 1, 0, 0, 3, 9)
    writer.append(3, CODEC.encode_slots([more]), 1)
    assert [CODEC.decode_slot(i) for i in tail.read(3, 10)] == [more]
    tail.close()
    writer.close()


def test_the_source_ships_the_gateways_files() -> None:
    """README: the source ships the journal "(and the gateways' files)". ``shipped_files``:
    the users and API keys, and each gateway's order log, ClOrdIDs, REST ids and ExecID
    blocks."""
    claim("ships it (and the gateways' files) to a standby", PROCESSES)
    shipped = set(shipped_files(full_config()))
    assert {"users.json", "apikeys.json"} <= shipped
    assert {
        f"gw1/{n}" for n in ("orders.log", "clordids.log", "api_ids.log", "exec-ids")
    } <= shipped


def test_the_standby_follows_fsyncs_acknowledges_and_keeps_state_hot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README: the standby "follows, fsyncs, acknowledges and keeps router and matcher state
    hot". ``Standby.persist`` appends a frame and fsyncs it before it returns the seq to
    acknowledge (whatever the journal policy); ``apply`` then runs it through the router's
    and the matchers' state: the deposit shows in the balance, the order rests in its book."""
    claim("it follows, fsyncs, acknowledges and keeps router and matcher state hot (see Hot "
          "standby and failover)", PROCESSES)  # fmt: skip
    assert section("Hot standby and failover")
    s = standby(tmp_path)
    steps: list[str] = []

    def noted(name: str, real: Any) -> Any:
        def call(*args: Any) -> Any:
            steps.append(name)
            return real(*args)

        return call

    for name in ("append", "sync"):
        monkeypatch.setattr(s.journal, name, noted(name, getattr(s.journal, name)))
    monkeypatch.setattr(s, "apply", noted("apply", s.apply))
    buy = msgspec.structs.replace(order(3, 7, Side.BUY, 100, 1), seq=3, ts_ns=7, order_id=1)
    records = [CreateAccount(1, 5, 0, 0, 1, 7), Transfer(2, 6, 0, 0, 2, 7, 1, 10**9, 9), buy]
    images = [CODEC.encode_slot(r) for r in records]
    history = History()
    for image in images:
        history.update(image)
    assert s.receive_entries(Entries(1, images, history.digest())) == 3
    assert steps[0] == "append" and steps[-2:] == ["sync", "apply"]  # fsynced, then applied
    assert s.state.sequencer.accounts.balance(7, 1)[0] < 10**9  # the order's reservation
    assert 1 in s.state.matchers["m1"].books[1].orders
    s.close()


# -- dbwriter -----------------------------------------------------------------------------------


def test_the_writer_follows_the_journal_never_a_ring() -> None:
    """README: dbwriter "follows the journal (never a ring, so it cannot slow the pipeline)".
    No ring of ``topology.rings`` has the writer among its readers; its process waits on no
    ring to be ready and is stopped last (it reads the journal to its end)."""
    claim("follows the journal (never a ring, so it cannot slow the pipeline)", PROCESSES)
    cfg = full_config()
    readers = {c for spec in rings(cfg) for c in spec.consumers}
    assert not any("db" in r for r in readers)
    [writer] = [s for s in plan(cfg) if s.name == "dbwriter"]
    assert (writer.module, writer.ready_ring, writer.stop_last) == ("procs.dbwriter.main", "", True)


def test_the_writer_replays_the_journal_as_recovery_does(tmp_path: Path) -> None:
    """README: the writer "replays it as recovery does". ``Follower.step`` over a journal
    ends in the state ``recovery.recover`` rebuilds from it: the router's and every
    matcher's state hash the same."""
    claim("replays it as recovery does", PROCESSES)
    cfg = make_cfg(tmp_path)
    build(cfg, 300).close()
    follower = Follower(cfg)
    for seq, image in journal_reader(cfg, CODEC).entries(1):
        follower.step(seq, CODEC.decode_slot(image))
    recovered = recover(cfg, codec=CODEC)
    assert follower.seq == recovered.last_seq > 300
    assert follower.sequencer.accounts.state_hash() == recovered.sequencer.accounts.state_hash()
    for name, matcher in recovered.matchers.items():
        assert follower.matchers[name].state_hash() == matcher.state_hash()


def _migrations() -> str:
    return "\n".join(
        p.read_text() for p in sorted((ROOT / "procs/dbwriter/migrations").glob("*.sql"))
    )


def _columns(sql: str) -> dict[str, list[str]]:
    """Each table's columns in order, as the migrations create and extend it."""
    out: dict[str, list[str]] = {}
    bodies = re.findall(r"CREATE TABLE IF NOT EXISTS (\w+) \((.*?)\n\);", sql, re.S)
    trades = re.search(r"columns constant text := '(.*?)';", sql, re.S)
    assert trades is not None
    for table, body in [*bodies, ("trades", trades[1])]:
        names = [line.split()[0] for line in body.splitlines() if line.strip()]
        out[table] = [n for n in names if n.upper() not in ("PRIMARY", "UNIQUE", "CHECK", "--")]
    for table, body in re.findall(r"ALTER TABLE (\w+)(.*?);", sql, re.S):
        out[table] += re.findall(r"ADD COLUMN (?:IF NOT EXISTS )?(\w+)", body)
    return out


README_TABLES = ("accounts", "orders", "trades", "transfers", "balances", "candles")
#: The tables a batch's rows go to by binary COPY (``store.py``: the layouts it copies, the
#: tables ``_write_rest`` copies by ``write_row``).
COPIED = {ACCOUNTS.table, ORDERS.table, TRADES.table, *store._TYPES}


def test_the_tables_named_are_the_migrations_and_their_rows_the_layouts() -> None:
    """README: the writer "writes accounts, orders, trades (...), transfers, balances and
    candles to PostgreSQL". Each is a table of the migrations (``procs/dbwriter/migrations``), and
    the rows the writer copies match their columns, in order (``projection.py``'s layouts,
    ``store._TYPES``)."""
    claim(
        "writes accounts, orders, trades (day partitions, BRIN; a hypertable under "
        "TimescaleDB), transfers, balances and candles to PostgreSQL with binary COPY",
        PROCESSES,
    )
    columns = _columns(_migrations())
    assert set(README_TABLES) <= set(columns)
    for layout in (ACCOUNTS, ORDERS, TRADES):
        assert tuple(columns[layout.table]) == layout.names, layout.table
    for table, types in store._TYPES.items():
        assert len(columns[table]) == len(types), table
    assert {"lane", "last_seq"} <= set(columns["trade_lanes"])
    assert {"last_seq", "last_crc"} <= set(columns["checkpoint"])


def test_trades_are_day_partitions_with_brin_or_a_hypertable() -> None:
    """README: "trades (day partitions, BRIN; a hypertable under TimescaleDB)". 0002: a
    TimescaleDB hypertable of 1-day chunks when the extension is preloaded, else range
    partitions by ``ts``, made a UTC day each by ``ringex_trade_partitions``; a BRIN index on
    ``ts`` either way."""
    claim("trades (day partitions, BRIN; a hypertable under TimescaleDB)", PROCESSES)
    sql = folded(_migrations())
    assert "create_hypertable('trades', 'ts', chunk_time_interval => interval '1 day')" in sql
    assert "') PARTITION BY RANGE (ts)'" in sql
    assert "CREATE INDEX trades_ts_brin ON trades USING brin (ts);" in sql
    assert "FOR VALUES FROM (%L) TO (%L)', part, d::timestamp AT TIME ZONE 'UTC', (d + 1)" in sql


def test_the_batchs_rows_go_by_binary_copy_with_the_checkpoint() -> None:
    """README: "with binary COPY, exactly once (the checkpoint commits with the rows ...)".
    ``PgStore.write``: one transaction that COPYs (``FORMAT BINARY``) accounts, orders,
    balances and candles and moves the checkpoint; each lane's trades by binary COPY."""
    claim("with binary COPY, exactly once (the checkpoint commits with the rows;", PROCESSES)
    assert "FORMAT BINARY" in inspect.getsource(store._copy_binary)
    assert "FORMAT BINARY" in inspect.getsource(store.PgStore._write_rest)
    write = inspect.getsource(store.PgStore.write)
    assert "with conn.transaction()" in write and "UPDATE checkpoint SET last_seq" in write
    assert set(README_TABLES) <= COPIED


def test_users_are_mirrored_from_the_users_file() -> None:
    """README: the writer "mirrors the FIX users file into `users` (`procs/dbwriter/users.py`:
    upserted and deleted, in a transaction of its own, when the file changes and at each
    start)" (review 109: the README had users among the binary COPY with the checkpoint).
    ``UserSync.sync`` upserts and deletes; no batch copies ``users``."""
    claim("mirrors the FIX users file into `users` (`procs/dbwriter/users.py`: upserted and "
          "deleted, in a transaction of its own", PROCESSES)  # fmt: skip
    source = inspect.getsource(UserSync.sync)
    assert "ON CONFLICT" in source and "DELETE" in source and "transaction()" in source
    assert "users" not in COPIED


def test_every_table_the_writer_copies_is_named() -> None:
    """README: "writes accounts, orders, trades (...), transfers, balances and candles"
    (review 109: transfers were not named): exactly the tables a batch's rows are copied to."""
    claim("transfers, balances and candles to PostgreSQL with binary COPY", PROCESSES)
    assert set(README_TABLES) == COPIED


def test_trade_lanes_are_connections_by_symbol_each_with_its_own_checkpoint() -> None:
    """README: "the trades go over `trade_lanes` connections side by side, each lane with its
    own checkpoint". ``database.trade_lanes`` (2 by default, 1..16); ``PgStore._start_lanes``
    gives lane ``k`` the symbols whose id modulo the lane count is ``k``, each lane a
    ``_write_lane`` of its own (its transaction moves its ``trade_lanes`` row)."""
    claim("the trades go over `trade_lanes` connections side by side, each lane with its own "
          "checkpoint)", PROCESSES)  # fmt: skip
    assert DatabaseConfig().trade_lanes == 2
    for bad in (0, 17):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert({"trade_lanes": bad}, DatabaseConfig)
    lanes: list[tuple[int, list[int]]] = []
    shell = SimpleNamespace(
        layout=3, _pool=None, _write_lane=lambda k, mine, b: lanes.append((k, mine))
    )
    batch = SimpleNamespace(trades=SimpleNamespace(count=5, groups={1: 0, 2: 0, 4: 0, 5: 0, 9: 0}))
    for future in store.PgStore._start_lanes(shell, batch):  # type: ignore[arg-type]
        future.result()
    shell._pool.shutdown()
    assert sorted(lanes) == [(0, [9]), (1, [1, 4]), (2, [2, 5])]
    assert "UPDATE trade_lanes SET last_seq" in inspect.getsource(store.PgStore._write_lane)


def _noted(into: list[Any], value: Any, result: Any) -> Any:
    into.append(value)
    return result


def test_without_a_dsn_the_writer_runs_a_private_cluster_under_var_pg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README: "with no `database.dsn` it runs a private socket-only cluster under
    `var/<instance>/pg`". ``dbwriter.main.run``: no DSN starts ``EmbeddedPostgres`` at
    ``postgres_dir(cfg)`` and writes through its DSN; a DSN starts none."""
    claim("with no `database.dsn` it runs a private socket-only cluster under "
          "`var/<instance>/pg`", PROCESSES)  # fmt: skip
    made: list[Path] = []
    given: list[str] = []
    cluster = SimpleNamespace(started_here=False, start=lambda: "host=/private")
    writer = SimpleNamespace(run=lambda to_end: 0, close=lambda: None)
    monkeypatch.setattr(dbwriter_main, "EmbeddedPostgres", lambda root: _noted(made, root, cluster))
    monkeypatch.setattr(
        dbwriter_main, "DbWriter", lambda c, dsn, *a, **k: _noted(given, dsn, writer)
    )
    monkeypatch.setattr("procs.common.gc_policy.settle", lambda policy: None)
    cfg = RingexConfig(instance="r109", var_dir=str(tmp_path))
    assert dbwriter_main.run(cfg, to_end=True) == 0
    assert made == [tmp_path / "r109" / "pg"] == [postgres_dir(cfg)] and given == ["host=/private"]
    external = msgspec.structs.replace(cfg, database=DatabaseConfig(dsn="host=db"))
    dbwriter_main.run(external, to_end=True)
    assert len(made) == 1 and given[-1] == "host=db"


def test_a_run_against_postgresql_commits_the_checkpoint_and_each_lanes_with_the_rows(
    tmp_path: Path, dsn: str, pg: EmbeddedPostgres
) -> None:
    """README (the dbwriter row, against a real server): a writer run to the journal's end
    leaves the checkpoint at its last seq and each of the ``trade_lanes`` lanes' checkpoints
    there too, every trade in a daily partition with the BRIN index, and the rows of
    accounts, orders, balances and candles; the private cluster listens on no address (its
    socket in its data directory)."""
    claim("exactly once (the checkpoint commits with the rows;", PROCESSES)
    cfg = make_cfg(tmp_path)
    live = build(cfg, 400)
    live.close()
    writer = DbWriter(cfg, dsn, WriterOptions(batch_rows=200, batch_ms=10**6))
    try:
        assert writer.run(to_end=True) == live.last_seq
    finally:
        writer.close()
    with psycopg.connect(dsn) as conn:

        def one(sql: str) -> Any:
            row = conn.execute(sql).fetchone()
            assert row is not None
            return row[0]

        assert one("SELECT last_seq FROM checkpoint") == live.last_seq
        lanes: dict[int, int] = dict(conn.execute("SELECT lane, last_seq FROM trade_lanes"))
        assert lanes == {k: live.last_seq for k in range(cfg.database.trade_lanes)}
        assert one("SELECT count(*) FROM trades") == len(live.trades) > 0
        assert one("SELECT count(*) FROM pg_inherits WHERE inhparent = 'trades'::regclass") >= 1
        brin = one("SELECT indexdef FROM pg_indexes WHERE indexname = 'trades_ts_brin'")
        assert "USING brin (ts)" in brin
        for table in ("accounts", "orders", "balances", "candles"):
            assert one(f"SELECT count(*) FROM {table}") > 0, table
    conf = (pg.data / "postgresql.conf").read_text()
    assert "listen_addresses = ''" in conf
    assert f"unix_socket_directories = '\"{pg.data}\"'" in conf
