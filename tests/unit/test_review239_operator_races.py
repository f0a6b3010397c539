"""Review 239: operators and their tools acting at the same time: two ``ringex`` commands at
once, and the command line against a running instance.

Reviewed: ``procs/cli.py`` (``_run``, ``_wait_started``, ``_stop``, ``_stop_starts``,
``_replay``), ``procs/common/pending_runs.py``, ``procs/admin/`` (``add_user.py``,
``users.py``, ``keys.py``, ``client.py``, ``commands.py``), ``procs/common/users.py``,
``procs/common/apikeys.py``, ``procs/common/change_log.py``, ``procs/common/snapshots.py``,
``procs/core/accounts.py`` (transfer keys), ``procs/router/reread.py``.

Method: one real instance for the module (``ringex run --detach`` of review 50's small
exchange: a matcher, the router, a FIX gateway; the router snapshotting every 4 commands),
the commands run as a shell runs them, several started together; a second instance per
start/stop race. Forced interleavings hold a process where a loaded host could leave it (SIGSTOP,
or a wrapper around one step of an in-process command), never a sleep.

Faults:
1. ``ringex stop`` of a start under way stops the ``ringex run --detach`` it found, not the
   supervisor that run spawned after ``pending_runs`` (``procs/common/pending_runs.py:32-59``)
   read ``/proc``: ``stop_pending_runs`` (``pending_runs.py:62-74``) SIGTERMs the run alone,
   which has no SIGTERM handler (``procs/cli.py:162-173``: only Ctrl-C ends its child, by
   ``_end_start``), so it dies and its supervisor (its own session) starts the instance. The
   stop said "stopped (its start was under way)", exit 0, and the instance runs. Fix: in
   ``_run``, before the ``Popen``, turn SIGTERM (and SIGHUP) into the ``KeyboardInterrupt``
   path that calls ``_end_start``; and in ``_stop_starts`` look again (``pending_runs`` and
   ``supervisor_running``) once the starts signalled have ended, until none is left.
2. ``ringex replay --snapshot`` beside a running router: ``SnapshotStore.save``
   (``procs/common/snapshots.py:82-88``) takes any snapshot past the one it writes for "a
   history that was rewound" and deletes it. The replay's recovery takes its time; the
   router's snapshot job writes a newer snapshot meanwhile, and the replay's save then deletes
   it, logging a rewind that never happened (the reverse order deletes the snapshot the replay
   said it wrote). Nothing is lost (the journal holds it), but the restart replays more and
   the log lies. Fix: take an ``flock`` on the snapshot directory around ``save``, and delete
   a newer snapshot only when the journal's last seq is below it (a real rewind), not when it
   is only newer than this writer's ``upto``.

Sound: two ``add-user`` of one comp id at once (one stored, the other exit 2 naming the comp
id and the account it took); four ``add-user`` of different comp ids at once (all kept, each
its own account and session); ``set-password``, ``set-user`` and ``add-user`` at once (every
change kept); ``revoke-key`` while other processes make keys (the key gone, every key made
kept); two deposits with one key at once (applied once, both OK), and with one key and other
amounts (one applied, the other DUPLICATE_TRANSFER, exit 1); a deposit sent to a router frozen
then killed (applied once, after the supervisor's restart, OK); ``ringex admin snapshot``
three at once (each sent, every one written). Not repeated: two ``ringex run`` at once
(``tests/unit/supervisor/test_instance_lock.py``, review 103), ``ringex run &`` then ``stop``
(``tests/unit/test_pending_runs.py``).

Leads, not faults: DUPLICATE_TRANSFER said neither the key nor the transfer it was used for
(``procs/admin/commands.py:193-199``); it names the key now.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import procs.cli
from config import load_profile
from config.schema import RingexConfig
from procs.admin.client import AdminClient
from procs.common.apikeys import ApiKeyStore
from procs.common.pending_runs import pending_runs
from procs.common.record_codec import RecordCodec
from procs.common.run_files import read_status, supervisor_running
from procs.common.topology import (
    ADMIN_GATEWAY,
    apikeys_path,
    gateway_commands,
    snapshot_dir,
    users_path,
)
from procs.common.users import UserStore, password_matches
from procs.core.recovery import write_snapshot
from shm import Ring
from tests.free_ports import free_port
from tests.unit.supervisor.test_supervisor import wait_for

ROOT = Path(__file__).parents[2]
CLI = [sys.executable, "-m", "procs.cli"]


def _profile(path: Path, instance: str) -> Path:
    """Review 50's small exchange, its router snapshotting every 4 commands."""
    path.write_text(
        f'instance = "{instance}"\nvar_dir = "{path.parent / "var"}"\n'
        "[marketdata]\nenabled = false\n[database]\nenabled = false\n"
        "[ring]\ncapacity = 1024\n"
        '[wait]\nstrategy = "blocking"\npark_timeout_s = 0.01\n'
        "[journal]\nsnapshot_every = 4\nsnapshot_every_s = 0\n"
        "[supervisor]\nmetrics = false\n"
        f'[[gateways]]\nname = "gw1"\nid = 1\nport = {free_port()}\n'
    )
    return path


def _start(*args: str, stdin: str | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, *args],
        cwd=ROOT,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _together(*commands: list[str]) -> list[tuple[int, str, str]]:
    """Every command started before any is waited for: (exit, out, err) each."""
    procs = [_start(*c) for c in commands]
    done = []
    for p in procs:
        out, err = p.communicate(timeout=90)
        done.append((p.returncode, out, err))
    return done


def _ringex(*args: str) -> tuple[int, str, str]:
    return _together(list(args))[0]


class Venue:
    def __init__(self, profile: Path) -> None:
        self.profile = profile
        self.cfg: RingexConfig = load_profile(str(profile))
        self.c = ["--config", str(profile)]
        self.accounts = iter(range(500, 600))

    def admin(self, command: str, *args: str) -> list[str]:
        return ["admin", command, *self.c, *args]

    def balance(self, account: int) -> str:
        code, out, err = _ringex(*self.admin("balances", "--account", str(account), "--json"))
        assert code == 0, err
        return str(json.loads(out)["balances"].get("USD", {}).get("free", "0"))

    def account(self) -> int:
        account = next(self.accounts)
        code, _, err = _ringex(*self.admin("create-account", "--account", str(account)))
        assert code == 0, err
        return account

    def pid(self, name: str) -> int:
        status = read_status(self.cfg) or {}
        return int(next(p["pid"] for p in status["processes"] if p["name"] == name))


@pytest.fixture(scope="module")
def venue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venue]:
    instance = f"r239x{os.getpid()}"
    profile = _profile(tmp_path_factory.mktemp("r239") / "venue.toml", instance)
    v = Venue(profile)
    try:
        code, _, err = _ringex("run", *v.c, "--detach", "--timeout", "60")
        assert code == 0, err
        yield v
    finally:
        _ringex("stop", *v.c, "--timeout", "60")


# -- the stores: users and API keys ----------------------------------------------------------


def test_two_add_user_of_one_comp_id_at_once_store_one_and_refuse_the_other(
    venue: Venue,
) -> None:
    """Scenario: two ``add-user --username ann`` started together, other passwords.
    Expected: one stored (exit 0), the other exit 2 naming ann and the account it holds.
    Now: so."""
    runs = _together(
        venue.admin("add-user", "--username", "ann", "--password", "pw1", "--deposit", "USD=1"),
        venue.admin("add-user", "--username", "ann", "--password", "pw2", "--deposit", "USD=1"),
    )
    codes = sorted(code for code, _, _ in runs)
    assert codes == [0, 2], runs
    user = UserStore(users_path(venue.cfg)).get("ann")
    assert user is not None
    refused = next(err for code, _, err in runs if code == 2)
    assert "ann" in refused and f"account {user.account}" in refused, refused
    assert venue.balance(user.account) == "1.000000"


def test_add_users_of_other_comp_ids_at_once_keep_every_one(venue: Venue) -> None:
    """Scenario: four ``add-user`` of four comp ids started together.
    Expected: each exit 0, each stored with its own account and session id, funded.
    Now: so."""
    names = ["bo", "cy", "di", "ed"]
    runs = _together(
        *(
            venue.admin("add-user", "--username", n, "--password", "pw", "--deposit", "USD=2")
            for n in names
        )
    )
    assert [code for code, _, _ in runs] == [0] * 4, runs
    users = {u.comp_id: u for u in UserStore(users_path(venue.cfg)).users()}
    kept = [users[n] for n in names]
    assert len({u.account for u in kept}) == 4 and len({u.session for u in kept}) == 4
    assert all(venue.balance(u.account) == "2.000000" for u in kept)


def test_set_password_set_user_and_add_user_at_once_keep_every_change(venue: Venue) -> None:
    """Scenario: ``set-password`` of fay, ``set-user --cancel-on-disconnect on`` of fay and
    ``add-user gus`` started together.
    Expected: fay logs on with the new password only and holds cancel on disconnect; gus is
    stored. Now: so."""
    code, _, err = _ringex(*venue.admin("add-user", "--username", "fay", "--password", "old"))
    assert code == 0, err
    runs = _together(
        venue.admin("set-password", "--comp-id", "fay", "--password", "new"),
        venue.admin("set-user", "--comp-id", "fay", "--cancel-on-disconnect", "on"),
        venue.admin("add-user", "--username", "gus", "--password", "pw"),
    )
    assert [code for code, _, _ in runs] == [0, 0, 0], runs
    store = UserStore(users_path(venue.cfg))
    fay = store.get("fay")
    assert fay is not None and fay.cancel_on_disconnect is True
    assert password_matches(fay, "new") and not password_matches(fay, "old")
    assert store.get("gus") is not None


_MAKE_KEYS = """
import sys
from pathlib import Path
from procs.common.apikeys import ApiKeyStore
from procs.common.users import UserStore
users = UserStore(Path(sys.argv[1]))
keys = ApiKeyStore(Path(sys.argv[2]))
for _ in range(5):
    print(keys.create(users.get(sys.argv[3]), ["read"]).key, flush=True)
"""


def test_revoke_key_while_other_processes_make_keys_keeps_both(venue: Venue) -> None:
    """Scenario: a key of hal's; ``revoke-key`` of it while two processes make five keys
    each (as gateways do at a REST login), all started together.
    Expected: the key revoked (exit 0), the ten keys made all in the file.
    Now: so."""
    code, _, err = _ringex(*venue.admin("add-user", "--username", "hal", "--password", "pw"))
    assert code == 0, err
    users, keys = users_path(venue.cfg), apikeys_path(venue.cfg)
    hal = UserStore(users).get("hal")
    assert hal is not None
    old = ApiKeyStore(keys).create(hal, ["read"]).key
    makers = [
        subprocess.Popen(
            [sys.executable, "-c", _MAKE_KEYS, str(users), str(keys), "hal"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    code, _, err = _ringex(*venue.admin("revoke-key", "--api-key", old))
    made = [k for m in makers for k in m.communicate(timeout=60)[0].split()]
    assert code == 0, err
    held = {k.key for k in ApiKeyStore(keys).keys_of("hal")}
    assert len(made) == 10 and held == set(made)


# -- transfers -------------------------------------------------------------------------------


def test_two_deposits_of_one_key_at_once_are_applied_once(venue: Venue) -> None:
    """Scenario: two ``deposit --amount 3 --key K`` started together.
    Expected: both exit 0 (the retry of one transfer is answered OK again), 3 deposited once.
    Now: so."""
    account = venue.account()
    deposit = venue.admin("deposit", "--account", str(account), "--asset", "USD")
    runs = _together(
        [*deposit, "--amount", "3", "--key", "4242"], [*deposit, "--amount", "3", "--key", "4242"]
    )
    assert [code for code, _, _ in runs] == [0, 0], runs
    assert venue.balance(account) == "3.000000"


def test_deposits_of_one_key_and_other_amounts_at_once_apply_one(venue: Venue) -> None:
    """Scenario: ``deposit --amount 3 --key K`` and ``--amount 4 --key K`` started together.
    Expected: one applied (exit 0), the other exit 1 DUPLICATE_TRANSFER; the balance is the
    one applied. Now: so."""
    account = venue.account()
    deposit = venue.admin("deposit", "--account", str(account), "--asset", "USD")
    runs = _together(
        [*deposit, "--amount", "3", "--key", "4343"], [*deposit, "--amount", "4", "--key", "4343"]
    )
    assert sorted(code for code, _, _ in runs) == [0, 1], runs
    refused = next(err for code, _, err in runs if code == 1)
    assert "DUPLICATE_TRANSFER" in refused
    assert "key 4343 was used by another transfer" in refused  # (the lead, mended)
    won = next(i for i, (code, _, _) in enumerate(runs) if code == 0)
    assert venue.balance(account) == ("3.000000", "4.000000")[won]


def test_a_deposit_sent_to_a_router_frozen_then_killed_is_applied_once(venue: Venue) -> None:
    """Scenario: the router stopped (SIGSTOP), a deposit sent, the router killed: the
    supervisor restarts it while the command waits in the admin ring.
    Expected: the deposit answered OK (exit 0) and applied once, or refused naming its key.
    Now: so: applied once."""
    account = venue.account()
    router = venue.pid("router")
    ring = Ring.attach(venue.cfg.instance, gateway_commands(ADMIN_GATEWAY), RecordCodec())
    os.kill(router, signal.SIGSTOP)
    try:
        before = ring.info().cursor
        sent = _start(
            *venue.admin("deposit", "--account", str(account), "--asset", "USD", "--amount", "5")
        )
        wait_for(lambda: ring.info().cursor > before, 30)  # in the ring, unread
    finally:
        ring.close()
        os.kill(router, signal.SIGKILL)
        os.kill(router, signal.SIGCONT)
    out, err = sent.communicate(timeout=60)
    assert sent.returncode == 0 or "--key" in err, (out, err)
    wait_for(lambda: venue.pid("router") != router and _up(venue.cfg, "router"), 30)
    assert venue.balance(account) == ("5.000000" if sent.returncode == 0 else "0")


def _up(cfg: RingexConfig, name: str) -> bool:
    status = read_status(cfg) or {}
    return any(p["name"] == name and p.get("ready") for p in status.get("processes", []))


# -- snapshots -------------------------------------------------------------------------------


def test_admin_snapshot_three_at_once_each_sent_and_written(venue: Venue) -> None:
    """Scenario: three ``ringex admin snapshot`` started together.
    Expected: each exit 0; the matcher writes a snapshot after each batch that holds one of
    them, so every request is covered by a snapshot at or past its seq: one to three new
    files, the newest at least three seqs past the newest before (each request took a seq).
    Now: so. (Asserted three files until a CI run under load took the three in one batch.)"""
    where = snapshot_dir(venue.cfg, "matcher-m1")
    before = set(where.glob("*.snap"))
    newest_before = max((int(p.stem) for p in before), default=0)
    runs = _together(*(venue.admin("snapshot") for _ in range(3)))
    assert [code for code, _, _ in runs] == [0, 0, 0], runs

    def new_seqs() -> list[int]:
        return sorted(int(p.stem) for p in set(where.glob("*.snap")) - before)

    wait_for(lambda: new_seqs() and new_seqs()[-1] >= newest_before + 3, 20)
    assert 1 <= len(new_seqs()) <= 3, new_seqs()


def test_replay_snapshot_beside_the_router_keeps_its_newer_snapshot(
    venue: Venue, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Scenario: ``ringex replay --snapshot`` of the running instance; while it replays (held
    there: a long journal's replay) four deposits come and the router's snapshot job writes
    the snapshot of a later seq; then the replay saves its own.
    Expected: the router's newer snapshot kept (nothing was rewound) beside the replay's.
    Was (fixed): ``SnapshotStore.save`` deletes it as "a history that was rewound"."""
    account = venue.account()
    exchange = snapshot_dir(venue.cfg, "exchange")
    newer: list[Path] = []
    save = write_snapshot

    def replayed_then_saved(cfg: RingexConfig, recovered: Any) -> Path:
        client = AdminClient(cfg)
        try:
            for _ in range(4):
                assert client.transfer(account, "USD", "1").code == 0
        finally:
            client.close()
        seen = wait_for(
            lambda: [p for p in exchange.glob("*.snap") if int(p.stem) > recovered.last_seq], 20
        )
        newer.extend(seen)
        return save(cfg, recovered)

    monkeypatch.setattr(procs.cli, "write_snapshot", replayed_then_saved)
    assert procs.cli.main(["replay", *venue.c, "--snapshot", "--quiet"]) == 0
    capsys.readouterr()
    assert newer and all(p.exists() for p in newer), newer


# -- start and stop --------------------------------------------------------------------------


def _supervisors(profile: Path) -> list[int]:
    """Pids of the supervisors running ``profile``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"procs.supervisor.main" in argv and str(profile).encode() in argv:
            found.append(int(entry))
    return found


def test_stop_of_a_start_stops_the_supervisor_it_spawned_after_the_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Scenario: ``ringex run --detach`` started, and ``ringex stop`` at once: the stop reads
    ``/proc`` while the run is still importing (held by SIGSTOP, as a loaded host may), finds
    it, and the run spawns its supervisor before the stop's SIGTERM reaches it.
    Expected: the stop says stopped and nothing of the instance runs after.
    Was (fixed): the run dies of the SIGTERM, its supervisor (its own session) starts the instance;
    the stop said "stopped (its start was under way)", exit 0."""
    profile = _profile(tmp_path / "start.toml", f"r239s{os.getpid()}")
    cfg = load_profile(str(profile))
    run = _start("run", "--config", str(profile), "--detach", "--timeout", "60")
    os.kill(run.pid, signal.SIGSTOP)
    scan = pending_runs

    scans: list[list[int]] = []

    def scanned_then_spawned(*args: Any) -> list[int]:
        scans.append(found := scan(*args))
        if len(scans) == 1:  # the stop's first look; a later one (review 239's fix) as it is
            os.kill(run.pid, signal.SIGCONT)
            wait_for(lambda: _supervisors(profile), 30)  # spawned after the scan read /proc
        return found

    monkeypatch.setattr(procs.cli, "pending_runs", scanned_then_spawned)
    monkeypatch.chdir(ROOT)
    try:
        assert procs.cli.main(["stop", "--config", str(profile), "--timeout", "30"]) == 0
        assert "stopped" in capsys.readouterr().out
        run.communicate(timeout=30)
        # a supervisor left behind either ends or says it runs
        wait_for(lambda: not _supervisors(profile) or supervisor_running(read_status(cfg)), 30)
        assert not _supervisors(profile) and supervisor_running(read_status(cfg)) is None
    finally:
        run.kill()
        run.communicate()
        _ringex("stop", "--config", str(profile), "--timeout", "60")
