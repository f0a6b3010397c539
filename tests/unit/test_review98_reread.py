"""Review 98: a hostile reread of the session's changes since 8ba4248 outside the gateway:
``shm/wait.py own()``, the files' modes (``durable.PRIVATE``, ``replace_durably``'s default,
``SnapshotStore.save``'s removal of ``*.tmp``), the replication link's mutual TLS.

Each fault, fixed since, is a test asserting the right behaviour; what was checked
and found correct stays below as passing guards.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import msgspec
import posix_ipc
import pytest

from config.schema import RingexConfig
from procs.common import durable
from procs.common.record_codec import RecordCodec
from procs.common.snapshots import SnapshotStore
from procs.common.topology import gateway_commands
from procs.supervisor import promotion
from procs.supervisor.draining import detach_gone
from shm import Ring
from shm.errors import ShmError
from shm.wait import Parker, sem_path
from tests.unit.gateway.test_tls import CERT, KEY
from tests.unit.replica.test_review_replica_bugs import append, following, pair, until

CODEC = RecordCodec()
NOBODY = 65534
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="playing another user needs root")


def _as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    """``argv`` run as uid/gid 65534 (the systemd units' ``--uid`` user, here)."""
    return subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.fixture
def nobodys_dir() -> Iterator[Path]:
    """A directory in /tmp (which 65534 can reach) that 65534 owns, as ``start --uid``'s
    ``chown_instance_dirs`` leaves ``var/<instance>/``."""
    top = Path(tempfile.mkdtemp(prefix="ringex-r98-"))
    top.chmod(0o755)
    os.chown(top, NOBODY, NOBODY)
    try:
        yield top
    finally:
        shutil.rmtree(top, ignore_errors=True)


# -- faults ------------------------------------------------------------------------------------


@as_root
def test_a_root_stop_detaches_a_stopped_gateways_line_on_the_unit_users_rings(
    instance: str,
) -> None:
    """README (Production with systemd): ``systemd_units.py start --uid ringex`` (root)
    creates the rings and hands them and their semaphores to the unit user; ``stop`` (root)
    stops the gateways, then drains (``draining.drain`` -> ``detach_gone``), detaching the
    stopped gateways' lines. ``Ring.detach_consumer`` posts the line's semaphore, which its
    unit (uid 65534 here) made when it parked; ``post`` now calls ``own()``, which refuses any
    semaphore not of the caller's euid, so root's drain raises ``ShmError``, and the stop
    ends with a traceback after the gateways, the router, matchers and writer left running
    and the rings kept. (``ringex admin`` run as root on such an instance: the same refusal,
    its producer posting the router's semaphore.) Should: a waker posts whatever semaphore
    the ring's owner made (compare the semaphore's owner with the segment's, not euid)."""
    ring = Ring.create(instance, gateway_commands(1), CODEC, capacity=64, consumers=["gw1"])
    name = ring.consumer_sem_name(0)
    try:
        # the unit's Parker made it (0600, its user's); the segment was chowned at start
        posix_ipc.Semaphore(name, posix_ipc.O_CREX, mode=0o600).close()
        os.chown(sem_path(name), NOBODY, NOBODY)
        os.chown(f"/dev/shm/{ring.region.posix_name.lstrip('/')}", NOBODY, NOBODY)
        assert detach_gone([ring]) == [f"{ring.name}:gw1"]
        assert ring.info().consumers[0].state == "detached"
    finally:
        ring.unlink()
        ring.close()


@as_root
@pytest.mark.parametrize("what", ["promote.json", "promoted profile"])
def test_a_promotion_root_asks_reaches_a_supervisor_of_another_user(
    nobodys_dir: Path, what: str
) -> None:
    """``failover.py promote`` signals the standby's supervisor (SIGUSR1): for a supervisor of
    another user (``ringex run`` as ``ringex``), only root can, so root runs it. It writes
    ``<standby>.promoted.toml`` (``promotion.write_promoted_profile``) and
    ``run/promote.json`` (``promotion.request``) with ``replace_durably``, whose default mode
    is now ``PRIVATE`` (0600, durable.py:62): root's files, which the supervisor cannot read;
    before, 0644 under the umask. ``requested()`` then raises ``PermissionError`` (read_json
    catches FileNotFoundError only), after the old primary was fenced: no primary at all.
    Should: files of no secret (a request, a profile the processes load) keep the umask's
    mode, or are made the directory owner's."""
    cfg = RingexConfig(instance="r98", var_dir=str(nobodys_dir / "var"))
    profile = nobodys_dir / "standby.toml"
    profile.write_text('instance = "r98"\n')
    os.chown(profile, NOBODY, NOBODY)
    if what == "promote.json":
        run = nobodys_dir / "var" / "r98" / "run"
        run.mkdir(parents=True)
        for d in (run.parent.parent, run.parent, run):
            os.chown(d, NOBODY, NOBODY)
        promotion.request(cfg, 4242, 2)
        written = run / promotion.REQUEST
    else:
        written = promotion.write_promoted_profile(str(profile))
    done = _as_nobody("cat", str(written))
    assert done.returncode == 0, done.stderr


def test_two_snapshot_writers_in_one_directory_both_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exchange's snapshots have two writers: the router's forked snapshot job and
    ``ringex replay --snapshot`` (which syncs a running router's journal first, to run
    beside it). ``save`` now unlinks every ``*.tmp`` of the directory before it writes
    (snapshots.py:69, review 96), another writer's temp file too, which it is still writing:
    that writer's ``os.replace`` then fails (FileNotFoundError) and its snapshot is lost.
    Before, each writer had its own ``<seq>.tmp``. Here writer A (seq 20) is held inside its
    fsync while B saves seq 10. Should: only remove a temp file no writer holds (say, take a
    ``flock`` on it while writing and skip locked ones), or one of this writer's own name."""
    store = SnapshotStore(tmp_path / "exchange", keep=3)
    paused, go = threading.Event(), threading.Event()
    failures: list[BaseException] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        held = os.readlink(f"/proc/self/fd/{fd}").endswith(".tmp")  # (not a directory's)
        if held and threading.current_thread().name == "writer-a" and not paused.is_set():
            paused.set()
            go.wait(30)
        real(fd)

    def writer_a() -> None:
        try:
            store.save(20, b"\x90")
        except BaseException as exc:  # (reported by the assertion below)
            failures.append(exc)

    monkeypatch.setattr(os, "fsync", fsync)  # (durable.py calls os.fsync)
    a = threading.Thread(target=writer_a, name="writer-a")
    a.start()
    try:
        assert paused.wait(30)
        SnapshotStore(tmp_path / "exchange", keep=3).save(10, b"\x90")
    finally:
        go.set()
        a.join(30)
    assert failures == []
    assert store.newest_seq() == 20


# -- checked and found correct -----------------------------------------------------------------


@as_root
def test_checked_a_parker_refused_another_users_semaphore_leaks_nothing(instance: str) -> None:
    """``Parker`` refusing a semaphore of another user closes what it opened (no fence
    semaphore made yet, no descriptor left) and names uid and mode."""
    name = f"/ringex.{instance}.r98.c0"
    posix_ipc.Semaphore(name, posix_ipc.O_CREX, mode=0o600).close()
    os.chown(sem_path(name), NOBODY, NOBODY)
    before = len(os.listdir("/proc/self/fd"))
    try:
        words = memoryview(bytearray(64)).cast("Q")
        with pytest.raises(ShmError, match=rf"belongs to uid {NOBODY} \(mode 0600\)"):
            Parker(words, 0, name)
        assert len(os.listdir("/proc/self/fd")) == before
    finally:
        posix_ipc.unlink_semaphore(name)


def test_checked_a_failed_replace_durably_leaves_no_temp_file(tmp_path: Path) -> None:
    """A write that fails (here: the target is a directory, so the rename fails) removes its
    temp file and raises."""
    target = tmp_path / "x.snap"
    target.mkdir()
    (target / "inside").write_text("")
    with pytest.raises(OSError):
        durable.replace_durably(target, b"data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.snap"]


def test_checked_a_standby_whose_certificate_the_source_refuses_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TLS 1.3: the client's handshake ends before the source checks its certificate, and
    the refusal comes as an alert on the first read. The standby (a self-signed certificate
    of another CA) does not crash on it: it reconnects, and is shipped nothing."""
    other = tmp_path / "other"
    other.mkdir()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=other", "-keyout", str(other / "k.pem"), "-out", str(other / "c.pem")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    primary, secondary = pair(tmp_path)
    rep = msgspec.structs.replace
    primary = rep(primary, replication=rep(primary.replication, tls_cert=CERT, tls_key=KEY,
                                           tls_ca=CERT))  # fmt: skip
    secondary = rep(secondary, replication=rep(
        secondary.replication, tls_cert=str(other / "c.pem"), tls_key=str(other / "k.pem"),
        tls_ca=CERT))  # fmt: skip
    append(primary, 1, 3)
    tries: list[int] = []
    real = asyncio.open_connection

    async def counted(*args: object, **kwargs: object) -> object:
        tries.append(1)
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    async def scenario() -> None:
        async with following(primary, secondary) as (_, standby, task):
            await until(lambda: len(tries) >= 3 or task.done(), 30.0)
            assert not task.done(), task.exception()
            assert standby.next_seq == 1

    monkeypatch.setattr(asyncio, "open_connection", counted)
    asyncio.run(scenario())
