"""Review 131, second file: ``stopping``, ``ring_waker``, ``embedded_postgres``,
``exec_ids``, ``stats``, ``token_bucket`` and ``apikeys`` (the convention and the
disagreements found are in ``test_review131_common_docstrings.py``)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pwd
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import psycopg
import pytest

from config.schema import RingexConfig
from procs.common import apikeys
from procs.common import embedded_postgres as emb
from procs.common import exec_ids as xid
from procs.common.apikeys import ApiKeyStore
from procs.common.ring_waker import RingWaker, nap_for
from procs.common.stats import (
    GATEWAY_COUNTERS,
    REJECT_REASONS,
    ROUTER_COUNTERS,
    ROUTER_STATES,
    LatencyHistogram,
    gateway_page,
    matcher_counters,
    matcher_page,
    reject_slot,
)
from procs.common.stopping import stop_on_signals
from procs.common.token_bucket import TokenBucket
from procs.common.users import User
from shm import Ring
from tests.unit.common.test_review131_common_docstrings import said
from tests.unit.common.test_ring_waker import CODEC
from tests.unit.signals_rig import STOPS, as_a_terminal_starts

S = 1_000_000_000

# -- stopping.py ----------------------------------------------------------------------------


def test_term_int_and_hup_each_ask_for_a_stop() -> None:
    """stopping.py: "SIGTERM (the supervisor, systemd) and SIGINT (Ctrl-C) set a flag that its
    loop polls"; ``stop_on_signals``: "SIGTERM, SIGINT and SIGHUP"; "the returned function
    says whether a stop was asked for"."""
    said("stopping")
    with as_a_terminal_starts():
        for sig in STOPS:
            asked = stop_on_signals()
            assert not asked()
            os.kill(os.getpid(), sig)
            for _ in range(100):
                if asked():
                    break
                time.sleep(0.001)
            assert asked(), sig


# -- ring_waker.py --------------------------------------------------------------------------


def test_a_nap_runs_out_or_ends_on_the_next_round_for_a_record_already_there(
    instance: str,
) -> None:
    """``nap_for``: "Await ``nap`` (which the caller's own wake-ups settle) for ``timeout_s``
    at most"; ``arm``: "a record or the room already there ends it at once"; "settled on the
    loop's next round, not here"; ring_waker.py: "``wakeups`` counts the naps a ring actually
    ended"; ``close``: "a nap still armed is disarmed"."""
    said("ring_waker")
    ring: Ring[Any] = Ring.create(instance, "r", CODEC, capacity=16, consumers=["c"])
    consumer, producer = ring.consumer("c"), ring.producer()
    waker = RingWaker([consumer])

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        began = time.monotonic()
        await nap_for(loop.create_future(), 0.05, waker)
        assert 0.04 < time.monotonic() - began < 1.0 and waker.wakeups == 0
        assert not waker.armed
        producer.publish((1, 2))
        nap: asyncio.Future[None] = loop.create_future()
        waker.arm(nap)
        assert waker.armed and not nap.done()
        await asyncio.wait_for(nap, 1.0)
        assert waker.wakeups == 1
        waker.close()
        assert not waker.armed

    try:
        asyncio.run(scenario())
    finally:
        waker.close()
        producer.close()
        consumer.close()
        ring.close()


def test_room_in_the_output_ring_ends_a_nap_armed_for_it(instance: str) -> None:
    """ring_waker.py: "arms its nap with ``room_for``, the records it must fit: the producer's
    flag is raised the same way, and a consumer's commit, which makes the room, writes the
    producer's FIFO"; ``RingWaker``: "or ``producer``'s ring the room the nap was armed
    for"."""
    said("ring_waker")
    ring: Ring[Any] = Ring.create(instance, "out", CODEC, capacity=4, consumers=["c"])
    consumer, producer = ring.consumer("c"), ring.producer()
    for i in range(4):
        producer.publish((i, i))
    waker = RingWaker([], park_s=30.0, producer=producer)  # no periodic look: the FIFO's post

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, consumer.read)  # the commit that makes room
        began = time.monotonic()
        await nap_for(loop.create_future(), 10.0, waker, room_for=2)
        return time.monotonic() - began

    try:
        assert not producer.has_room(1)
        assert asyncio.run(scenario()) < 2.0 and waker.wakeups == 1
    finally:
        waker.close()
        producer.close()
        consumer.close()
        ring.close()


# -- embedded_postgres.py -------------------------------------------------------------------


def fake_bin(d: Path) -> Path:
    """``initdb`` that writes a postgresql.conf and counts its runs; ``pg_ctl`` that notes
    its calls."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "initdb").write_text(
        '#!/bin/sh\nmkdir -p "$2" && echo "# theirs" > "$2/postgresql.conf"\n'
        'echo "$@" >> "$(dirname "$2")/initdb.runs"\n'
    )
    (d / "pg_ctl").write_text(f'#!/bin/sh\necho "$@" >> {d}/pg_ctl.calls\nexit 3\n')
    for tool in ("initdb", "pg_ctl"):
        (d / tool).chmod(0o755)
    return d


def test_find_bin_dir_takes_path_first_then_the_newest_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``find_bin_dir``: "PATH first, then the newest /usr/lib/postgresql/<version>/bin; None
    when PostgreSQL is not installed"."""
    said("embedded_postgres")
    on_path = fake_bin(tmp_path / "bin")
    monkeypatch.setattr(emb, "shutil", SimpleNamespace(which=lambda tool: str(on_path / tool)))
    assert emb.find_bin_dir() == on_path
    monkeypatch.setattr(emb, "shutil", SimpleNamespace(which=lambda tool: None))
    found = [f"/usr/lib/postgresql/{v}/bin/initdb" for v in ("9", "16", "9.6", "12")]
    monkeypatch.setattr(emb, "glob", SimpleNamespace(glob=lambda pattern: found))
    assert emb.find_bin_dir() == Path("/usr/lib/postgresql/16/bin")
    monkeypatch.setattr(emb, "glob", SimpleNamespace(glob=lambda pattern: []))
    assert emb.find_bin_dir() is None


def test_init_appends_a_socket_only_setup_and_resumes_or_redoes_a_start_that_died(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """embedded_postgres.py: "a socket-only server (``listen_addresses = ''``, the socket in the
    data directory)"; "``fast=True`` (tests, benchmarks) turns off fsync and friends";
    "Not synchronous_commit = off"; ``init``: "Create the cluster (idempotent: an existing one
    is kept). Its last step writes ``MADE``: a start that died before it is finished by the
    next (settings appended again, which later lines override) or, died inside initdb, made
    again"."""
    said("embedded_postgres")
    monkeypatch.setattr(emb, "_run_as", lambda: None)
    cluster = emb.EmbeddedPostgres(tmp_path / "pg", fast=True, bin_dir=fake_bin(tmp_path / "b"))
    runs, conf = tmp_path / "pg" / "initdb.runs", cluster.data / "postgresql.conf"
    cluster.init()
    text = conf.read_text()
    assert "listen_addresses = ''" in text
    assert f"unix_socket_directories = '\"{cluster.data}\"'" in text
    assert "fsync = off" in text and "synchronous_commit" not in text
    assert "--no-sync" in runs.read_text() and (cluster.data / emb.MADE).exists()
    assert (tmp_path / "pg").stat().st_mode & 0o777 == 0o700
    cluster.init()
    assert len(runs.read_text().splitlines()) == 1 and conf.read_text() == text
    (cluster.data / emb.MADE).unlink()  # died after the settings: finished, not made again
    cluster.init()
    assert len(runs.read_text().splitlines()) == 1 and conf.read_text().count(emb._MARK) == 2
    (cluster.data / emb.MADE).unlink()
    conf.write_text("# half\n")  # died inside initdb: made again
    cluster.init()
    assert len(runs.read_text().splitlines()) == 2 and conf.read_text().count(emb._MARK) == 1


def test_a_socket_path_past_sun_path_is_refused_and_stop_waits_for_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``EmbeddedPostgres``: "use a shorter var_dir"; ``stop``: "nothing when it is down. Under
    the start's lock: a start waits for a stop under way to end"; ``_turn``: "only this user
    may"; ``lock_path``: "Beside the cluster's directory"."""
    said("embedded_postgres")
    monkeypatch.setattr(emb, "_run_as", lambda: None)
    bins = fake_bin(tmp_path / "b")
    with pytest.raises(emb.EmbeddedError, match="use a shorter var_dir"):
        emb.EmbeddedPostgres(tmp_path / ("x" * 100) / "pg", bin_dir=bins)
    cluster = emb.EmbeddedPostgres(tmp_path / "pg", bin_dir=bins)
    assert cluster.lock_path == tmp_path / "pg.lock"
    cluster.stop()
    assert not (bins / "pg_ctl.calls").exists()  # down: no pg_ctl at all
    assert cluster.lock_path.stat().st_mode & 0o777 == 0o600
    with open(cluster.lock_path, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        stopper = threading.Thread(target=cluster.stop)
        stopper.start()
        stopper.join(0.2)
        assert stopper.is_alive()  # waits for the holder
    stopper.join(5)
    assert not stopper.is_alive()


def test_the_real_cluster_listens_on_its_socket_only_and_a_second_start_is_a_no_op(
    pg: emb.EmbeddedPostgres,
) -> None:
    """embedded_postgres.py: "nothing listens on the network"; "under root the server runs as
    the ``postgres`` user (none: refused, naming the remedies) and owns its directory";
    ``EmbeddedPostgres``:
    "``start`` creates it when missing and is a no-op when it runs"; ``start``: "make the
    database; return the DSN"."""
    said("embedded_postgres")
    again = type(pg)(pg.root, fast=True)
    assert again.start() == pg.dsn and not again.started_here
    with psycopg.connect(pg.dsn) as conn:
        shown = {
            name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
            for name in ("listen_addresses", "unix_socket_directories", "fsync",
                         "synchronous_commit")
        }  # fmt: skip
        assert conn.execute("SELECT current_database()").fetchone() == ("ringex",)
    assert shown == {
        "listen_addresses": "", "unix_socket_directories": f'"{pg.data}"', "fsync": "off",
        "synchronous_commit": "on",
    }  # fmt: skip
    assert (pg.data / f".s.PGSQL.{emb.PORT}").is_socket()
    if os.geteuid() == 0:
        assert pg.data.stat().st_uid == pwd.getpwnam("postgres").pw_uid


def pg_module_port() -> int:
    return pg_port


pg_port = emb.PORT


# -- exec_ids.py ----------------------------------------------------------------------------


def test_blocks_are_reserved_durably_and_a_restart_starts_a_block_above_the_mark(
    tmp_path: Path,
) -> None:
    """exec_ids.py: "a restart starts above N"; "A counter therefore starts a block above the
    mark (``counter_start``)"; ``start``: "not below the clock in ns (a gateway that never
    wrote the file ... starts as the counter always did)"; ``reserve``: "Reserve the ids after
    ``last`` up to the returned end: written durably first"; ``BLOCK``: "Ids reserved by one
    durable write"; "4,096 blocks"."""
    said("exec_ids")
    assert xid.BLOCK == 1 << 20 and xid.PROMOTION_SKIP == 4096 * xid.BLOCK
    path = tmp_path / "gw" / xid.FILE_NAME
    blocks = xid.ExecIdBlocks(path, block=100)
    before = time.time_ns()
    assert before <= blocks.start() <= time.time_ns()
    ahead = time.time_ns() + 10**15  # a clock since stepped back by a long way
    end = blocks.reserve(ahead)
    assert end == ahead + 100 and path.read_bytes() == xid.mark_text(end)
    assert path.stat().st_mode & 0o777 == 0o600
    restarted = xid.ExecIdBlocks(path, block=100)
    assert restarted.start() == end and restarted.counter_start() == end + 100
    memory = xid.ExecIdBlocks(None, block=100)
    assert memory.reserve(5) == 105 and time.time_ns() - memory.start() < 10**9


def test_start_is_not_below_the_mark_and_the_counter_above_it(tmp_path: Path) -> None:
    """``start``: "Not below the file's mark (... the gateway counts from the block above it,
    ``counter_start``)" (review 131: it said above every id reserved)."""
    said("exec_ids")
    blocks = xid.ExecIdBlocks(tmp_path / xid.FILE_NAME, block=100)
    end = blocks.reserve(time.time_ns() + 10**15)  # ids up to ``end`` may have been used
    assert blocks.start() == end and blocks.counter_start() > end


def test_a_bad_mark_or_block_is_refused_and_a_promotion_skips_past_the_copy(
    tmp_path: Path,
) -> None:
    """``start``'s refusal: "remove the file to start the ExecIDs at the clock";
    ``skip_at_promotion``: "The mark moves ``skip`` past the copy (or the clock), durably,
    before the promoted gateway starts; returns the new mark"."""
    said("exec_ids")
    path = tmp_path / xid.FILE_NAME
    with pytest.raises(ValueError, match="at least 1"):
        xid.ExecIdBlocks(path, block=0)
    path.write_bytes(b"12x")
    with pytest.raises(ValueError, match=f"{path}.*remove the file"):
        xid.ExecIdBlocks(path).start()
    copy = time.time_ns() + 10**15
    path.write_bytes(b"%d\n" % copy)
    assert (
        xid.skip_at_promotion(path)
        == copy + xid.PROMOTION_SKIP
        == xid.parse_mark(path.read_bytes())
    )


# -- stats.py -------------------------------------------------------------------------------


def test_pages_and_counter_layouts() -> None:
    """stats.py: "gateway ``stats-gw<id>``"; "router ``stats-router``"; "matcher
    ``stats-<name>``: the seq of the last command it executed, the events it published";
    ``reject_slot``: "The index among ``REJECT_REASONS``' counters"; ``matcher_counters``:
    "``last_seq``, ``events`` (the events it published" ... "``trades_<symbol id>`` for each
    symbol the matcher owns, then the queue's latency histogram"."""
    said("stats")
    assert (gateway_page(3), matcher_page("m1")) == ("stats-gw3", "stats-m1")
    assert ("commands", "events", *(f"{s}_ns" for s in ROUTER_STATES)) == ROUTER_COUNTERS
    first = GATEWAY_COUNTERS.index("rejects_unknown_symbol")
    for reason, name in REJECT_REASONS.items():
        assert GATEWAY_COUNTERS[first + reject_slot(reason)] == f"rejects_{name}"
    assert GATEWAY_COUNTERS[:4] == ("orders", "acks", "fills", "rejects")
    cfg = RingexConfig()
    symbols = [msgspec.structs.replace(s, id=9 - i * 7) for i, s in enumerate(cfg.symbols)]
    cfg = msgspec.structs.replace(cfg, symbols=symbols)
    names = matcher_counters(cfg, cfg.matchers[0].name)
    assert names[:4] == ("last_seq", "events", "trades_2", "trades_9")  # (review 305)
    assert names[4] == "queue_sum_ns"
    h = LatencyHistogram((10, 20))
    for ns in (10_000, 20_000, 20_001):
        h.record(ns)
    assert h.values() == [50_001, 1, 1, 1]  # a bound is its bucket's upper end, "le"


# -- token_bucket.py ------------------------------------------------------------------------


def test_a_bucket_lets_through_no_more_than_its_rate_and_a_second_full() -> None:
    """token_bucket.py: "``rate`` tokens a second, at most a second's worth held"; "Counting on
    may refill the time between the two readings twice, which the cap bounds to one
    bucket"."""
    said("token_bucket")
    bucket, let = TokenBucket(100, 0), 0
    for ms in range(10_000):  # 10 s of one try a ms, 1000 a second
        let += bucket.allow(ms * 1_000_000)
    assert 1000 <= let <= 100 * 11
    bucket = TokenBucket(10, 0)
    assert bucket.tokens == 10  # "full: a second's worth"
    assert all(bucket.allow(S) for _ in range(10)) and not bucket.allow(S)
    bucket.allow(S // 2, 0)  # NTP stepped back half a second
    let = sum(bucket.allow(S + k * S // 1000) for k in range(1000))
    assert let <= 10 + 10  # the half second twice, capped: a bucket at most


def test_a_credit_is_kept_over_time_and_pays_a_debt_first() -> None:
    """``credit``: "``seconds`` of the rate given back beyond the cap, until spent"; "a debt
    (``charge``) is repaid from it first"; ``charge``: "holds what comes next back until it is
    repaid"."""
    said("token_bucket")
    bucket = TokenBucket(10, 0)
    bucket.credit(3.0, 0)
    assert bucket.tokens == 40
    bucket.allow(100 * S, 0)
    assert bucket.tokens == 40  # not cut back to the cap by time passing
    bucket.charge(45, 100 * S)
    assert bucket.tokens == -5 and not bucket.allow(100 * S)
    bucket.credit(1.0, 100 * S)
    assert bucket.tokens == 5 and bucket.allow(100 * S, 5)


# -- apikeys.py -----------------------------------------------------------------------------

ALICE = User("alice", 7, 1, "00", "00")


def test_a_revoke_elsewhere_is_refused_here_at_once_and_a_new_key_found_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """apikeys.py: "``get`` runs on every request: an ``fstat`` of the log, read on when it
    grew"; "A key revoked in another process is thus refused here at once (before review
    229 it still verified for up to ``recheck_s``, 0.5 s); one made there verifies through
    ``get`` at once too"."""
    said("apikeys")
    now = [1000.0]
    clock = SimpleNamespace(monotonic=lambda: now[0], time_ns=time.time_ns)
    monkeypatch.setattr(apikeys, "time", clock)
    path = tmp_path / "apikeys.json"
    here, there = ApiKeyStore(path), ApiKeyStore(path)
    key = there.create(ALICE, "read")
    assert here.get(key.key) == key == here.find(key.key)  # the log grew: read by either
    there.revoke(key.key)
    assert here.get(key.key) is None  # the clock not moved: the log grew


def test_two_writers_keep_each_others_keys_and_a_refused_write_leaves_no_lock(
    tmp_path: Path,
) -> None:
    """apikeys.py: "read what changed under it (another process may have written since)";
    change_log.py: "a writer that dies mid-way leaves no lock behind"; ``revoke``: "False when
    there was no such key"; ``revoke_user``: "how many"; ``keys_of``: "by created_ms, then
    key id"."""
    said("apikeys", "change_log")
    path = tmp_path / "apikeys.json"
    one, two = ApiKeyStore(path, 1), ApiKeyStore(path, 1)
    a = one.create(ALICE, "read")
    b = two.create(User("bob", 8, 2, "00", "00"), ["trade"])
    with pytest.raises(ValueError, match="the limit is 1"):
        two.create(ALICE, "read")
    with open(tmp_path / "apikeys.json.lock", "rb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again
    assert {k.key for k in ApiKeyStore(path).keys_of("alice")} == {a.key}
    assert two.keys_of("bob") == [b] and one.keys_of("alice") == [a]
    assert one.revoke("nope") is False and two.revoke_user("alice") == 1
    assert one.keys_of("alice") == [] and not (tmp_path / "apikeys.json.tmp").exists()


def test_evicted_is_the_newest_key_revoked_to_make_room(tmp_path: Path) -> None:
    """``evicted``: "The newest key the last ``create(evict_oldest=True)`` revoked to make room,
    if any"; ``add``: "down to one below the limit (a lowered limit: more than one), oldest
    first"."""
    said("apikeys")
    path = tmp_path / "apikeys.json"
    made = [ApiKeyStore(path, 5).create(ALICE, "read") for _ in range(4)]
    made.sort(key=lambda k: (k.created_ms, k.key))
    store = ApiKeyStore(path, 2)
    newest = store.create(ALICE, "read", evict_oldest=True)
    assert store.evicted == made[2]  # the two left: made[3] and the new one (one ms may hold
    assert {k.key for k in store.keys_of("alice")} == {made[3].key, newest.key}  # both)
    store.revoke(made[3].key)
    store.create(ALICE, "read", evict_oldest=True)
    assert store.evicted is None


def test_an_unprintable_label_is_refused_saying_so(tmp_path: Path) -> None:
    """``create``: "raises ValueError for ... a label over MAX_LABEL characters or with
    unprintable characters" (review 131: it said control characters, for the same refusal)."""
    said("apikeys")
    store = ApiKeyStore(tmp_path / "apikeys.json")
    assert store.create(ALICE, "read", "desk bot").label == "desk bot"
    with pytest.raises(ValueError, match="has unprintable characters"):
        store.create(ALICE, "read", "desk\u00a0bot")  # a no-break space
