"""Review 242: a hostile reread of reviews 237 and 239's changes (commits 32259ec, 7d3da99).

Reviewed: ``procs/common/users.py`` (``fee_account_refused``), ``procs/gateway/server.py``
(its refusal in ``GatewayServer.__init__``), ``procs/supervisor/preflight.py``
(``fee_account_user``), ``procs/supervisor/main.py`` (``refuse_cpus_missing``, ``_restart``),
``procs/supervisor/held_promotion.py``, ``scripts/run_demo.py``, ``procs/admin/add_user.py``
and the bench rigs' users (``tests/bench/``); ``procs/common/pending_runs.py``
(``stop_pending_runs`` and its rescan), ``procs/cli.py`` (``_stop_starts``, ``_replay``);
``procs/common/snapshots.py`` (``SnapshotStore.save`` with ``history_end``),
``procs/core/recovery.py`` (``write_snapshot``, ``snapshot_job``, ``journal_end``).
Driven through review 239's small instance (``ringex run --detach`` of a profile file),
review 206's ``Rig`` (the router and matcher shells over the instance's real journal) and
``stop_pending_runs`` over real child processes.

Faults:
1. A gateway restarted after ``risk.fee_account`` was edited onto a user's account in the
   profile (a move meant for the next run, or a typo) is refused by its own start
   (``procs/gateway/server.py:146``), again at each restart, until ``restart_limit`` stops
   the whole instance; ``ringex status`` then says only "gateway-gw1 exited 2 times within 60
   s (last code 1), more than restart_limit": the cause is in the gateway's log alone. Before
   review 237 the gateway came back (the running router keeps the fee account it started
   with). ``Supervisor._restart`` (``procs/supervisor/main.py:332``) checks the profile it
   loads again for units (``units_differ_now``: this very crash loop, review 206) but not for
   this. Fix: a ``fee_account_user_now(profile)`` in ``preflight.py`` beside
   ``units_differ_now`` (load the profile, ``fee_account_user``), checked in ``_restart``
   for a gateway child, raising ``SupervisorError(f"{name} not restarted: {refused}")``.
2. Review 239's rewind fix covers one order only: ``snapshot_job`` (``procs/core/recovery.py:
   544-546``) still saves without ``history_end``, so the router's snapshot child that
   recovered through its ``upto`` before ``ringex replay --snapshot`` saved a newer snapshot
   (the replay is pipelined over two processes, the child is not: it is overtaken) deletes
   the replay's snapshot on its save (``procs/common/snapshots.py:90-91``), logging "a history
   that was rewound", though the journal reaches past it. The replay printed "snapshot
   written: <path>"; the file is gone. Fix: ``snapshot_job`` passes ``beside=True`` too (a
   running router never has a snapshot past the journal's end: ``recover`` refuses to start
   on one), or ``save`` reads the journal's end for every writer.

Sound: the start's preflight refuses the fee account on a user's account and leaves an
unreadable users file to the gateway, whose refusal names the file (the ``ringex run`` line
points to its log); the demo's planned accounts (101, 102, 201, 202), ``add-user``'s default
first account (100) and the bench rigs' (100 up) are never the dev profile's fee account (1);
``stop_pending_runs`` keeps one deadline across its rescans (a start found anew at every scan
ends it at the deadline, not later), returns a start found by a rescan that ignores SIGTERM
at the deadline, stops rescanning once a scan finds none, and with ``timeout_s = 0`` signals
and returns the pids at once, no rescan (as before review 239); ``ringex replay --from-start
--snapshot`` (``beside``) still removes a snapshot past the journal's end (a lost tail), and
the router's job removes it as before; a journal that fails to read at the save (its end) is
one line from ``ringex`` (a ``JournalError``), every snapshot there before kept.

Leads, not faults: with ``journal_end`` failing, ``save`` fails after the snapshot was written
(the file stays, whole, though "snapshot written" is never printed). A ``ringex run --detach``
killed by SIGTERM (by the rescan of a ``ringex stop`` begun before it, or ``timeout``) dies
without a word (no SIGTERM handler: review 239's first suggested fix was not taken).
``run_standby`` (``held_promotion.py:35``) checks the promotion's CPUs and TLS at the
standby's start, not its fee account: a users file shipped later refuses the promotion then.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from config import load_profile
from config.schema import RingexConfig
from procs.common.journal import JournalError
from procs.common.journal_format import segment_name
from procs.common.pending_runs import stop_pending_runs
from procs.common.run_files import read_status
from procs.common.topology import journal_dir, users_path
from procs.common.users import UsersFileError, UserStore
from procs.core import recovery
from procs.core.recovery import journal_end, recover, snapshot_store, write_snapshot
from procs.gateway.server import GatewayServer
from procs.supervisor.preflight import fee_account_user
from shm.liveness import pid_alive
from tests.scripts_loader import load_script
from tests.unit.supervisor.test_review206_config_change import config, funded
from tests.unit.supervisor.test_supervisor import wait_for
from tests.unit.test_review239_operator_races import _profile, _ringex

ALICE = 601


# -- the fee account on a user's account ----------------------------------------------------------


@pytest.fixture
def small(tmp_path: Path) -> Iterator[tuple[Path, RingexConfig]]:
    """Review 239's small instance (a matcher, the router, gateway gw1), ALICE a user on
    account 601, one restart allowed (``restart_limit = 1``), running."""
    path = _profile(tmp_path / "venue.toml", f"r242g{os.getpid()}")
    path.write_text(
        path.read_text().replace("metrics = false\n", "metrics = false\nrestart_limit = 1\n")
    )
    cfg = load_profile(str(path))
    UserStore(users_path(cfg)).add("ALICE", "alice-pw", ALICE, n=16)
    try:
        code, _, err = _ringex("run", "--config", str(path), "--detach", "--timeout", "60")
        assert code == 0, err
        yield path, cfg
    finally:
        _ringex("stop", "--config", str(path), "--timeout", "60")


def test_a_gateway_restarted_on_an_edited_fee_account_names_why(
    small: tuple[Path, RingexConfig],
) -> None:
    """Scenario: a running instance; the operator edits the profile, ``risk.fee_account =
    601`` (ALICE's account: a typo, or a move meant for the next run), and the gateway is
    killed (an OOM kill, a crash): the supervisor restarts it, and it loads the profile anew.
    Expected: the gateway comes back (the running router keeps its fee account), or the
    instance stops with a reason that names ``risk.fee_account`` (as ``units_differ_now``
    names units changed under a restart).
    Was (fixed): the gateway refuses at each restart, ``restart_limit`` stops the whole
    instance, and
    ``ringex status`` says "gateway-gw1 exited 2 times within 60 s (last code 1), more than
    restart_limit=1": the cause only in the gateway's log."""
    path, cfg = small
    path.write_text(path.read_text() + f"[risk]\nfee_account = {ALICE}\n")
    status = read_status(cfg) or {}
    (gw,) = [p for p in status["processes"] if p["name"] == "gateway-gw1"]
    os.kill(gw["pid"], signal.SIGKILL)

    def settled() -> dict[str, Any] | None:
        now = read_status(cfg) or {}
        (proc,) = [p for p in now.get("processes", []) if p["name"] == "gateway-gw1"]
        back = proc["pid"] != gw["pid"] and proc["ready"] and proc["alive"]
        return now if back or now.get("state") not in ("running", "starting") else None

    now = wait_for(settled, 60)
    assert now["state"] == "running" or "risk.fee_account" in now["reason"], now["reason"]


def test_the_preflight_leaves_an_unreadable_users_file_to_the_gateway_which_names_it(
    instance: str, tmp_path: Path
) -> None:
    """Scenario: the users file is damaged (not JSON) and ``risk.fee_account`` is as
    configured. Expected: the preflight does not guess (""), and the gateway's start refuses
    naming the users file (``ringex run`` points to its log). Now: so."""
    cfg = config(instance, tmp_path / "var")
    UserStore(users_path(cfg)).add("ALICE", "alice-pw", ALICE, n=16)
    moved = msgspec.structs.replace(cfg, risk=msgspec.structs.replace(cfg.risk, fee_account=ALICE))
    assert "risk.fee_account = 601" in fee_account_user(moved)
    users_path(cfg).write_bytes(b"{not json")
    assert fee_account_user(cfg) == ""
    with pytest.raises(UsersFileError, match=str(users_path(cfg))):
        GatewayServer(cfg, cfg.gateways[0].name)


def test_no_demo_bench_or_default_user_account_is_the_dev_fee_account() -> None:
    """Scenario: ``make run`` (the dev profile), its market maker, ``add-user`` without
    ``--account`` on an empty users file, and the bench rigs' users (100 + k; 101, 102, 201,
    202). Expected: none is the dev profile's ``risk.fee_account``, so review 237's refusal
    never stops them. Now: so."""
    fee = load_profile("dev").risk.fee_account
    demo = load_script("run_demo", "r242")
    planned = [u[2] for u in demo.DEMO_USERS + demo.MARKET_MAKER_USERS]
    first_default = max((), default=99) + 1  # ``add_user``: the highest user's next
    bench = [100 + k for k in range(64)] + [101, 102, 201, 202]
    assert fee not in [*planned, first_default, *bench], fee


# -- stop_pending_runs: the rescan ----------------------------------------------------------------

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
DEAF = [
    sys.executable,
    "-c",
    "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(60)",
]


class Starts:
    """Child processes standing in for starts; each ``again`` may spawn one more."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        self.scans = 0

    def spawn(self, argv: list[str]) -> int:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        self.procs.append(proc)
        if argv is DEAF:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        return proc.pid

    def reap(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


@pytest.fixture
def starts() -> Iterator[Starts]:
    made = Starts()
    try:
        yield made
    finally:
        made.reap()


def _reaped(starts: Starts) -> None:
    """Our children reaped as they end (a zombie is gone to ``pid_alive``: as a shell's)."""
    for proc in starts.procs:
        proc.poll()


def test_a_start_found_at_every_rescan_ends_the_stop_at_its_deadline(starts: Starts) -> None:
    """Scenario: each rescan finds a new start (one started after the stop began, again and
    again), each ends at its SIGTERM. Expected: the deadline holds across rescans: the stop
    returns within its timeout (plus one scan), naming the starts found last. Now: so."""

    def again() -> list[int]:
        starts.scans += 1
        _reaped(starts)
        return [starts.spawn(SLEEPER)]

    began = time.monotonic()
    left = stop_pending_runs([starts.spawn(SLEEPER)], 1.5, again)
    took = time.monotonic() - began
    assert took < 1.5 + 2.0, took
    assert starts.scans >= 2 and left == [starts.procs[-1].pid], (starts.scans, left)


def test_a_start_a_rescan_finds_that_ignores_sigterm_is_returned_at_the_deadline(
    starts: Starts,
) -> None:
    """Scenario: the start ends at its SIGTERM; the rescan finds its supervisor, which ignores
    SIGTERM (still importing past its handlers, say). Expected: returned as still running
    once the one deadline passes; the rescan is not repeated. Now: so."""
    deaf: list[int] = []

    def again() -> list[int]:
        starts.scans += 1
        _reaped(starts)
        if not deaf:
            deaf.append(starts.spawn(DEAF))
        return list(deaf)

    began = time.monotonic()
    left = stop_pending_runs([starts.spawn(SLEEPER)], 1.5, again)
    assert left == deaf and starts.scans == 1 and pid_alive(deaf[0])
    assert 1.0 < time.monotonic() - began < 1.5 + 2.0


def test_the_rescan_ends_once_a_scan_finds_none(starts: Starts) -> None:
    """Scenario: the start, then the supervisor it spawned (found by the rescan), both end at
    SIGTERM; the next scan finds none. Expected: [] (stopped), each signalled. Now: so."""
    found = [[starts.spawn(SLEEPER)], []]

    def again() -> list[int]:
        starts.scans += 1
        _reaped(starts)
        return found.pop(0)

    assert stop_pending_runs([starts.spawn(SLEEPER)], 20, again) == []
    assert starts.scans == 2
    assert all(p.wait(10) == -signal.SIGTERM for p in starts.procs)


def test_timeout_zero_signals_and_returns_at_once_as_before(starts: Starts) -> None:
    """Scenario: ``ringex stop --timeout 0`` of a start under way. Expected: as before review
    239: each found is signalled and returned at once (the stop says "still running", exit
    1), no rescan. Now: so."""
    pids = [starts.spawn(SLEEPER), starts.spawn(SLEEPER)]

    def again() -> list[int]:
        starts.scans += 1
        return []

    began = time.monotonic()
    assert stop_pending_runs(pids, 0, again) == pids
    assert time.monotonic() - began < 1.0 and starts.scans == 0
    assert all(p.wait(10) == -signal.SIGTERM for p in starts.procs)


# -- SnapshotStore.save beside the router ---------------------------------------------------------


@pytest.fixture
def journaled(instance: str, tmp_path: Path) -> RingexConfig:
    """Review 206's exchange stopped after ten journaled commands; no snapshot of its own."""
    cfg = config(instance, tmp_path / "var")
    funded(cfg).stop()
    assert journal_end(cfg) == 10
    return cfg


def _rewound(cfg: RingexConfig, seq: int) -> None:
    """A snapshot at ``seq`` past the journal's end: a history whose tail was lost."""
    state = msgspec.structs.replace(recover(cfg, use_snapshot=False).snapshot(), seq=seq)
    snapshot_store(cfg).save(seq, msgspec.msgpack.encode(state))


def _snaps(cfg: RingexConfig) -> list[int]:
    return sorted(int(p.stem) for p in snapshot_store(cfg).directory.glob("*.snap"))


def test_the_routers_snapshot_job_keeps_a_newer_replay_snapshot(
    journaled: RingexConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scenario: the router's snapshot child recovers through its ``upto`` (8, durable at its
    fork); meanwhile ``ringex replay --snapshot`` (pipelined: faster than the child) replays
    to the journal's end (10) and writes its snapshot there; then the child saves at 8.
    Expected: the replay's snapshot at 10 kept: the journal reaches 10, nothing was rewound
    (review 239's fix, for the other order).
    Was (fixed): the child's save deletes it, logging "a history that was rewound"; the replay had
    printed "snapshot written: .../00000000000000000010.snap"."""
    cfg = journaled
    real = recover
    written: list[Path] = []

    def overtaken(c: RingexConfig, **kw: Any) -> Any:
        out = real(c, **kw)  # the child's replay, done; its save is next
        written.append(write_snapshot(cfg, real(cfg)))  # ``_replay``'s
        return out

    monkeypatch.setattr(recovery, "recover", overtaken)
    recovery.snapshot_job(cfg, 8)
    assert [int(p.stem) for p in written] == [10]
    assert _snaps(cfg) == [8, 10]


def test_replay_from_start_snapshot_still_removes_a_snapshot_past_the_journal(
    journaled: RingexConfig,
) -> None:
    """Scenario: a snapshot at 15 past the journal's end (10): a tail lost under ``fsync =
    "interval"``; ``recover`` refuses to start on it, so the operator runs ``ringex replay
    --from-start --snapshot`` (``beside``). Expected: the snapshot at 10 written, the one at 15
    removed (a rewound history). Now: so."""
    cfg = journaled
    store = snapshot_store(cfg)
    _rewound(cfg, 15)
    with pytest.raises(ValueError, match="past the journal's last entry 10"):
        recover(cfg)
    recovered = recover(cfg, use_snapshot=False)
    assert write_snapshot(cfg, recovered) == store.path(10)
    assert _snaps(cfg) == [10]


def test_the_routers_job_still_removes_a_rewound_newer_snapshot(
    journaled: RingexConfig,
) -> None:
    """Scenario: a snapshot at 15 past the journal's end (10); the router's snapshot job
    saves at 10. Expected: as before review 239: the one at 15 removed. Now: so."""
    cfg = journaled
    _rewound(cfg, 15)
    write_snapshot(cfg, recover(cfg, use_snapshot=False))
    assert _snaps(cfg) == [10]


def test_a_journal_unreadable_at_the_save_is_one_line_and_keeps_every_snapshot(
    journaled: RingexConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scenario: ``ringex replay --snapshot`` beside a running router: the replay's state at 10
    is ready, and the journal's end cannot be read when its save asks for it (a damaged
    segment's header appears: a stand-in for a disk that fails there). Expected: a
    ``JournalError`` (``ringex`` says it in one line, exit 1), the snapshots there before
    kept, the one written whole (nothing lost). Now: so (the written file stays: a lead)."""
    cfg = journaled
    write_snapshot(cfg, recover(cfg, upto=6))
    assert _snaps(cfg) == [6]
    recovered = recover(cfg)
    (journal_dir(cfg) / segment_name(11)).write_bytes(b"RXJ-damaged")
    with pytest.raises(JournalError):
        write_snapshot(cfg, recovered)
    assert _snaps(cfg) == [6, 10]
    latest = snapshot_store(cfg).latest()
    assert latest is not None and latest[0] == 10
