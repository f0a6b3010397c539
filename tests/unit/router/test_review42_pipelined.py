"""Review 42: ``fsync = "pipelined"`` against the batch promise: nothing is routed, answered or
committed before its journal entry is durable.

Rig: ``test_router``'s exchange stepped by hand, ``router_batch=3`` (a step takes one command
from each of gw1, gw2 and the admin ring). ``Disk`` is ``os.fsync`` (the writer calls it by
name): a gate, EIO on demand, a delay, and per inode the size its last good fsync made
durable; a power loss cuts each segment to it. An EIO is Linux's since 4.13: reported once,
the pages marked clean, a later fsync returns 0 and makes them durable never.

Faults, each fixed (its test failed before):

- A failed writer goes on making entries "durable" (procs/common/journal_writer.py
  ``sync``, ``_sync_behind``): ``sync`` neither refuses once ``_failed`` is set nor sets
  it when its own fsync raises, and ``maybe_sync``/``wait_durable`` start a new fsync on
  the thread after one failed. After the thread's fsync fails, ``step`` raises
  ``JournalError`` (right), but ``main()``'s ``finally: shell.close()`` (procs/router/main.py
  ``close``) calls ``journal.sync()``, whose fsync returns 0, and ``_route_durable``
  answers the held batch: a client told OK for a command a host crash then loses. Under
  ``"batch"`` the failed batch is never held, so close answers nothing (the control test).
- ``_abandon`` (main.py) under sync replication answers a refusal at once while an earlier
  batch of the same gateway is still held for its fsync: the gateway's replies overtake.

The fixes: once a write or an fsync failed, the writer takes nothing more as durable
(``sync``, ``maybe_sync`` and ``wait_durable`` raise "failed earlier"; a failed inline
fsync marks it failed too), and the router's close routes nothing held then; ``_abandon``
answers no refusal of a gateway with a held batch (it is decided again after the restart).

Verified right (plain tests): an EIO on the thread ends ``run`` with nothing routed or
answered; a fenced router routes no held batch, even at close; a process kill with an fsync
in flight answers the held commands after the restart, once each; a standby's
acknowledgement releases no batch the local fsync has not covered (but the source is told of
it, and tails it, before that fsync); no gateway ring slot is freed before its command is
durable, with the forced commit path running; a host crash at several steps of a run on a
slow disk, segments rolling every four entries under a running fsync, loses no answered
command (the admin ring's included), and the cut journal recovers.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import msgspec
import pytest

from config.schema import JournalConfig, RingexConfig
from procs.common.journal import JournalError, JournalReader, list_segments
from procs.common.records import (
    AccountReply,
    CreateAccount,
    MassCancel,
    Record,
    Rejected,
    Transfer,
)
from procs.common.replication_ack import FENCED
from procs.common.result_codes import ResultCode
from procs.common.topology import (
    ADMIN_GATEWAY,
    journal_dir,
)
from procs.core.recovery import recover
from procs.router.main import RouterShell
from tests.unit.router.test_journal import images, writer
from tests.unit.router.test_router import CODEC, USD, Exchange, config, fund

REAL_FSYNC = os.fsync
#: the ring of the accounts' and the money's commands: the admin ring alone carries them
#: (review 343); a trading gateway's command answered once durable is a mass cancel
ADMIN = ADMIN_GATEWAY


class Disk:
    """``os.fsync`` as a disk: a gate that holds calls, EIO for the next ``fail`` calls, and
    per inode the size its last good fsync made durable (none after an EIO on it)."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.opened.set()
        self.entered = threading.Event()
        self.fail = 0
        self.slow_s = 0.0  # what each fsync takes
        self.crashed = False
        self.durable: dict[int, int] = {}
        self.lost: set[int] = set()  # inodes whose writeback failed: pages marked clean

    def __call__(self, fd: int) -> None:
        self.entered.set()
        assert self.opened.wait(5), "the test never opened the fsync gate"
        time.sleep(self.slow_s)
        if self.crashed:
            return  # the power is off: nothing more reaches the disk
        st = os.fstat(fd)
        if self.fail:
            self.fail -= 1
            self.lost.add(st.st_ino)
            raise OSError(errno.EIO, "Input/output error")
        REAL_FSYNC(fd)
        if st.st_ino not in self.lost:  # Linux: 0 now, but the failed pages are gone
            self.durable[st.st_ino] = st.st_size

    def shut(self) -> None:
        self.entered.clear()
        self.opened.clear()


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[Disk]:
    d = Disk()
    monkeypatch.setattr(os, "fsync", d)
    yield d
    d.opened.set()


@pytest.fixture
def ex(instance: str, tmp_path: Path, disk: Disk) -> Iterator[Exchange]:
    cfg = config(instance, tmp_path)
    rig = Exchange(
        msgspec.structs.replace(
            cfg, journal=JournalConfig(fsync="pipelined", pipeline_behind=1), router_batch=3
        )
    )
    fund(rig, 7, usd=10**9, btc=0)  # seqs 3, 4: answered, durable (inline fsyncs)
    told = rig.replies_of(ADMIN)
    assert [r.code for r in told] == [ResultCode.OK] * 2  # type: ignore[attr-defined]
    yield rig
    disk.opened.set()
    if not getattr(rig, "stopped", False):
        rig.stop()


def stop(ex: Exchange) -> None:
    """The router's close as ``main()``'s ``finally`` runs it, and the matcher's."""
    ex.stopped = True  # type: ignore[attr-defined]
    ex.stop()


def deposit(ref: int, gateway: int = 1, account: int = 7) -> Transfer:
    return Transfer(0, 0, gateway, 1, ref, account, USD, 100, ref)


def cancel(ref: int, gateway: int = 1, account: int = 7) -> MassCancel:
    """A trading gateway's command the router answers once durable (``Rejected`` OK)."""
    return MassCancel(0, 0, gateway, 1, ref, account, 1)


def acknowledged_in_journal(told: list[Record], entries: dict[int, Record]) -> list[str]:
    """Every mass cancel a gateway was told accepted (``Rejected`` OK, seq 0) is one the
    journal holds: the misses."""
    held = {(c.gateway, c.client_ref) for c in entries.values() if isinstance(c, MassCancel)}
    return [
        f"ref {r.client_ref} of gw{r.gateway} acknowledged, not journaled"
        for r in told
        if isinstance(r, Rejected)
        and r.code == ResultCode.OK
        and (r.gateway, r.client_ref) not in held
    ]


def step(ex: Exchange, n: int = 1) -> None:
    for _ in range(n):
        ex.router.step(timeout_s=0.001)


def backlog(ex: Exchange) -> int:
    return ex.router.to_matchers["m1"].backlog()


def journaled(cfg: RingexConfig) -> dict[int, Record]:
    reader = JournalReader(
        journal_dir(cfg), slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id
    )
    return {seq: CODEC.decode_slot(image) for seq, image in reader.entries(1)}


def host_crash(ex: Exchange, disk: Disk, monkeypatch: pytest.MonkeyPatch) -> None:
    """The power goes: the router dies where it is (no reply, no route, no sync more)."""
    dead = ex.router
    disk.crashed = True
    disk.opened.set()
    monkeypatch.setattr(dead, "_send_pending", lambda: None)
    monkeypatch.setattr(dead, "_route_durable", lambda: None)
    stop(ex)
    power_loss(ex, disk)


def power_loss(ex: Exchange, disk: Disk) -> None:
    """Each segment keeps what its fsyncs made durable."""
    disk.crashed = True
    for _first, path in list_segments(journal_dir(ex.cfg)):
        os.truncate(path, disk.durable.get(path.stat().st_ino, 0))


def answered_in_journal(told: list[Record], entries: dict[int, Record]) -> list[str]:
    """Every sequenced answer a gateway got names a command the journal holds: the misses."""
    return [
        f"ref {r.client_ref} answered at seq {r.seq}, journal holds {entries.get(r.seq)!r}"
        for r in told
        if isinstance(r, AccountReply)
        and r.seq
        and getattr(entries.get(r.seq), "client_ref", None) != r.client_ref
    ]


def fail_the_thread_fsync(ex: Exchange, disk: Disk) -> None:
    """The admin ring sends two commands; the first's batch goes to the thread (the second
    waits), whose fsync fails with EIO: ``run`` ends with it, as the process's loop does."""
    disk.shut()
    disk.fail = 1
    ex.gateways[ADMIN].publish_batch([CreateAccount(0, 0, ADMIN, 1, 8000, 8), deposit(8001, 0)])
    threading.Timer(0.05, disk.opened.set).start()
    with pytest.raises(JournalError, match=r"fsync of .* failed"):
        ex.router.run(lambda: False)


# -- an fsync that fails on the journal's thread ------------------------------------------------


def test_an_eio_on_the_thread_stops_the_router_answering_nothing(ex: Exchange, disk: Disk) -> None:
    fail_the_thread_fsync(ex, disk)
    assert backlog(ex) == 0 and ex.replies_of(ADMIN) == [] and ex.router._held


def test_a_host_crash_after_a_failed_fsync_loses_no_answered_command(
    ex: Exchange, disk: Disk, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_the_thread_fsync(ex, disk)
    stop(ex)  # main()'s finally: the process ends through here
    told = ex.replies_of(ADMIN)
    power_loss(ex, disk)
    assert answered_in_journal(told, journaled(ex.cfg)) == [], f"admin told {told}"


def test_under_batch_close_after_a_failed_fsync_answers_nothing(
    instance: str, tmp_path: Path, disk: Disk
) -> None:
    """The control: under ``"batch"`` the failed batch is never held, so close has nothing
    to route (its ``sync`` still fsyncs a failed writer, harmlessly here)."""
    ex = Exchange(msgspec.structs.replace(config(instance, tmp_path), router_batch=3))
    try:
        fund(ex, 7, usd=10**9, btc=0)
        ex.replies_of(ADMIN)
        disk.fail = 1
        ex.gateways[ADMIN].publish_batch(
            [CreateAccount(0, 0, ADMIN, 1, 8000, 8), deposit(8001, ADMIN)]
        )
        with pytest.raises(OSError, match="Input/output"):
            step(ex)
        ex.router.close()
        assert ex.replies_of(ADMIN) == [] and backlog(ex) == 0
    finally:
        ex.stop()


@pytest.mark.parametrize("after", ["sync", "maybe_sync", "wait_durable", "inline"])
def test_a_failed_writer_makes_nothing_more_durable(tmp_path: Path, disk: Disk, after: str) -> None:
    """The thread's fsync of 2..3 fails, then the writer's caller goes on (the router's close
    calls ``sync``); or ``inline``: ``sync`` itself fails (``_pipelined_sync``'s path)."""
    w = writer(tmp_path, fsync="pipelined")
    try:
        w.append(1, images(1, 1), 1)
        w.sync()
        disk.fail = 1
        w.append(2, images(2, 2), 2)
        if after == "inline":
            with pytest.raises(OSError, match="Input/output"):
                w.sync()
            with pytest.raises(JournalError, match="failed earlier"):
                w.append(4, images(4, 1), 1)  # the writer does not go on
            after = "sync"
        else:
            w.maybe_sync()
            with pytest.raises(JournalError):
                w.wait_durable(5.0)
        for _ in range(2):
            with contextlib.suppress(JournalError):
                getattr(w, after)(*([5.0] if after == "wait_durable" else []))
            if w._flight is not None:  # maybe_sync's new fsync: let it end, the next reaps
                w._flight[0].exception(5.0)
    finally:
        durable = w.durable_seq
        w.close()
    assert durable == 1, f"durable_seq={durable} after the fsync of 2..3 failed"


# -- held until durable --------------------------------------------------------------------------


def test_a_fenced_router_routes_no_held_batch_even_at_close(ex: Exchange, disk: Disk) -> None:
    disk.shut()
    ex.gateways[ADMIN].publish_batch([deposit(500, ADMIN), deposit(501, ADMIN)])
    step(ex)
    assert disk.entered.wait(5)
    ex.router.acks = SimpleNamespace(  # type: ignore[assignment]
        words={FENCED: 2}, appended=lambda seq: None, close=lambda: None
    )
    disk.opened.set()
    step(ex, 5)
    assert backlog(ex) == 0
    stop(ex)
    assert ex.replies_of(ADMIN) == []


def test_a_process_kill_with_its_fsync_in_flight_answers_after_restart(
    ex: Exchange, disk: Disk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page cache keeps what was written: the restart finds the held commands
    journaled, does not sequence them again, and answers them (their ring uncommitted)."""
    disk.shut()
    ex.gateways[ADMIN].publish_batch([deposit(600 + k, ADMIN) for k in range(3)])
    step(ex, 2)
    assert disk.entered.wait(5) and ex.router._held
    assert ex.replies_of(ADMIN) == []
    dead = ex.router
    monkeypatch.setattr(dead, "_send_pending", lambda: None)
    monkeypatch.setattr(dead, "_route_durable", lambda: None)
    disk.opened.set()
    dead.close()
    monkeypatch.undo()
    ex.router = RouterShell(ex.cfg)
    ex.pump()
    told = [(r.client_ref, r.code) for r in ex.replies_of(ADMIN)]  # type: ignore[attr-defined]
    assert told == [(600, ResultCode.OK), (601, ResultCode.OK), (602, ResultCode.OK)]
    refs = [getattr(c, "client_ref", None) for c in journaled(ex.cfg).values()]
    assert [refs.count(r) for r in (600, 601, 602)] == [1, 1, 1]


# -- a host crash at each point of a run ---------------------------------------------------------


def run_then_crash(
    ex: Exchange, disk: Disk, monkeypatch: pytest.MonkeyPatch, crash_at: int
) -> tuple[list[Record], dict[int, Record]]:
    """Steps with a slow disk (an fsync takes 4 ms, a step about 1) and segments rolling
    every four entries; a host crash after step ``crash_at``: what the gateways were told, and
    the journal the disk kept. gw1 and gw2 send mass cancels (a trading gateway's command
    answered once durable), the admin ring deposits (review 343: only it carries them)."""
    ex.router.journal._capacity = 4  # a roll every 4 entries, with an fsync in flight
    disk.slow_s = 0.004
    told: list[Record] = []
    for k in range(crash_at):
        ex.gateways[1].publish_batch([cancel(1000 + 3 * k), cancel(1001 + 3 * k)])
        ex.gateways[2].publish_batch([cancel(1002 + 3 * k, 2)])
        ex.gateways[ADMIN].publish_batch([deposit(5000 + k, ADMIN)])
        ex.router.step(timeout_s=0.001)
        ex.matcher.step(timeout_s=0.001)
        told += ex.replies_of(1) + ex.replies_of(2) + ex.replies_of(ADMIN)
    host_crash(ex, disk, monkeypatch)
    return told, journaled(ex.cfg)


@pytest.mark.parametrize("crash_at", [1, 2, 4, 7, 12])
def test_a_host_crash_loses_no_answered_command(
    ex: Exchange, disk: Disk, monkeypatch: pytest.MonkeyPatch, crash_at: int
) -> None:
    told, entries = run_then_crash(ex, disk, monkeypatch, crash_at)
    assert recover(ex.cfg).last_seq == len(entries)  # the cut journal recovers
    assert answered_in_journal(told, entries) == []
    assert acknowledged_in_journal(told, entries) == []
    assert sorted(entries) == list(range(1, len(entries) + 1))  # contiguous after the cut


# -- ring commits, the standby, a stop while the standby is awaited --------------------------------


def test_no_gateway_ring_slot_is_freed_before_its_command_is_durable(
    ex: Exchange, disk: Disk
) -> None:
    """With a slow disk and a tiny look-back (``_tail_window`` 6: the forced commit path of
    ``_commit_answered`` runs often), every commit of the admin ring (its deposits: review
    343) frees only commands whose journal entries were durable when it ran."""
    router = ex.router
    router._tail_window = 6
    disk.slow_s = 0.003
    consumer = dict(router.inputs)[ADMIN]
    base = consumer.sequence
    commits: list[tuple[int, int]] = []  # (ring position freed up to, durable_seq then)
    real_commit = consumer.commit

    def commit(upto: int | None = None) -> None:
        commits.append((consumer.sequence if upto is None else upto, router.journal.durable_seq))
        real_commit(upto)

    consumer.commit = commit  # type: ignore[method-assign,assignment]
    refs = list(range(2000, 2060))
    for k in range(0, len(refs), 3):
        ex.gateways[ADMIN].publish_batch([deposit(r, ADMIN) for r in refs[k : k + 3]])
        step(ex)
    for _ in range(200):
        step(ex)
        if not router._held and ex.gateways[ADMIN].backlog() == 0:
            break
    seq_of = {getattr(c, "client_ref", None): q for q, c in journaled(ex.cfg).items()}
    early = [
        (refs[upto - base - 1], seq_of[refs[upto - base - 1]], durable)
        for upto, durable in commits
        if upto > base and seq_of[refs[upto - base - 1]] > durable
    ]
    assert commits and early == [], f"(ref, its seq, durable_seq) freed early: {early}"


def standby(ex: Exchange, answers: list[bool]) -> list[tuple[int, int]]:
    """Sync replication's gate and block, faked: the standby acknowledges at once (``wait``
    True) or a stop comes while the router waits (False, in ``answers``' order); returns
    what the router said it appended, as (seq, durable_seq then)."""
    appended: list[tuple[int, int]] = []
    ex.router.acks = ex.router.gate = SimpleNamespace(  # type: ignore[assignment]
        wait=lambda *_: answers.pop(0) if answers else True,
        appended=lambda seq: appended.append((seq, ex.router.journal.durable_seq)),
        degraded=False, catching_up=False, block=SimpleNamespace(acked_seq=10**9),
        words={FENCED: 0},
        poll=lambda seq: None, close=lambda: None,
    )  # fmt: skip
    return appended


def test_sync_mode_a_standby_ack_does_not_release_a_batch_not_durable_here(
    ex: Exchange, disk: Disk
) -> None:
    """The batch waits for the local fsync as well as the standby. The replication source is
    told (and tails the file) before the local fsync: the standby may hold entries a host
    crash of the primary loses (the schema's comment names only the database writer)."""
    appended = standby(ex, [])
    disk.shut()
    ex.gateways[ADMIN].publish_batch([deposit(800 + k, ADMIN) for k in range(3)])
    step(ex)
    assert disk.entered.wait(5)
    assert appended == [(5, 4)]  # seq 5 offered to the standby, durable through 4
    step(ex)  # acknowledged at once by the standby, held behind the fsync in flight
    assert ex.replies_of(ADMIN) == [] and backlog(ex) == 0
    disk.opened.set()
    step(ex, 5)
    told = ex.replies_of(ADMIN)
    assert [r.client_ref for r in told] == [800, 801, 802]  # type: ignore[attr-defined]


def test_a_stop_waiting_for_the_standby_keeps_the_gateways_reply_order(
    ex: Exchange, disk: Disk
) -> None:
    """The admin ring's deposits (review 343: only it carries them) beside gw2's mass
    cancels, journaled too."""
    standby(ex, [True, False])  # 900's batch acknowledged; a stop during the next
    disk.shut()
    ex.gateways[ADMIN].publish_batch([deposit(900, ADMIN)])
    ex.gateways[2].publish_batch([cancel(950 + k, 2) for k in range(5)])  # never dry
    step(ex)  # 900 and 950 journaled, held, their fsync on the thread
    assert disk.entered.wait(5) and ex.router._held
    ex.gateways[ADMIN].publish_batch([deposit(901, ADMIN, account=55), deposit(902, ADMIN)])
    step(ex)  # 901 (refused) and 951 wait for the standby: a stop, _abandon
    disk.opened.set()
    stop(ex)
    told = [r.client_ref for r in ex.replies_of(ADMIN)]  # type: ignore[attr-defined]
    # 901 is left to be decided again after the restart, in its place (``_abandon``)
    assert 900 in told and (901 not in told or told.index(900) < told.index(901)), told
