"""Review 247: an operator's commands interrupted half-way: SIGTERM, SIGHUP (the terminal
closed), Ctrl-C (SIGINT) and SIGKILL sent to the ``ringex`` command itself while it works.

Reviewed: ``procs/cli.py`` (``_run`` and its new SIGTERM/SIGHUP handler, ``_wait_started``,
``_end_start``, ``_stop``, ``_replay``, ``main``), ``procs/admin/client.py`` (``transfer``,
the admin lock), ``procs/admin/commands.py``, ``procs/admin/add_user.py``,
``procs/admin/users.py`` (``remove_user``), ``procs/supervisor/exit_reason.py``,
``procs/common/stopping.py``, ``procs/common/journal_archive.py``, against README's Operate.

Method: one real instance for the module (review 239's small exchange: a matcher, the
router, a FIX gateway; ``ringex run --detach``), the commands run as a shell runs them and
signalled at a point found by reading the code: a router held by SIGSTOP keeps a deposit
waiting for its answer; the users file losing the user marks remove-user's settle; a tiny
wrapper holds ``ringex run --detach`` in its status print. A fresh instance per start/stop.

Faults (fixed: for a ``ringex`` command's run SIGTERM and SIGHUP raise ``Interrupted``, a
KeyboardInterrupt, ``procs/admin/interrupts.py``: remove-user names the cancel-all left to
run, a transfer its key (exit 1, as at Ctrl-C), and the detached start prints "running"
only once its wait, the one place a signal gives the start up, is over):
1. ``remove-user --cancel-orders`` interrupted (Ctrl-C, SIGTERM) after the removal, in its
   settle (``procs/admin/users.py:291``, ``time.sleep(SETTLE_S)``, then the session wait):
   the user is gone from the file, its orders are never cancelled, and the command says only
   "ringex: interrupted" (SIGTERM: nothing at all); a rerun says "no user", so the kill
   switch the operator asked for is lost with no word of it. Fix: in ``remove_user``, wrap
   what follows ``store.remove`` in a handler of KeyboardInterrupt (and SIGTERM/SIGHUP turned
   into it, as ``cli._run`` now does) that sends the cancel-all at once (better early than
   never) or at least says "its orders were NOT cancelled: run `ringex admin cancel-all
   --account N`", exit 130 / 128+signal.
2. A transfer (``deposit``, ``withdraw``; ``add-user``'s deposits take the same call, not
   forced here) given SIGTERM or SIGHUP while it waits for the router's answer
   (``procs/admin/client.py:240-251``: only KeyboardInterrupt is turned into "retry with
   --key K") dies silently (exit -15, nothing on stderr), the transfer already in the
   admin ring and applied later; the key was fresh and never shown, so the rerun an
   operator (or a ``timeout 10 ringex admin deposit`` script) makes credits it twice. Fix:
   install SIGTERM/SIGHUP handlers raising KeyboardInterrupt (or a ``_GivenUpError`` as
   ``cli._run`` does) around ``_call`` in ``AdminClient.transfer``, so they print the key
   as Ctrl-C does; exit 128+signal.
3. ``ringex run --detach``'s new SIGTERM/SIGHUP handler stays installed after the start
   succeeded (``procs/cli.py:173-175``: the ``try`` covers ``_wait_started``'s
   ``_print_status``, ``procs/cli.py:214-215``, after "instance X running" is printed): a
   SIGTERM then stops the instance that was just reported running, saying "SIGTERM while
   instance X was starting: the start is given up". Fix: restore the previous handlers
   (or set a flag the handler checks) in ``_wait_started`` before it prints "running" and
   calls ``_print_status``.

Sound: a Ctrl-C while a deposit waits names ``--key K``, and the rerun with it is applied
once; ``ringex run --detach`` SIGKILLed while its supervisor starts: the instance comes up
anyway, a second ``ringex run`` is refused naming its supervisor, ``status --wait-ready``
sees it and ``stop`` stops it, no segment left; ``ringex stop`` SIGKILLed after its SIGTERM
went out: the instance stops all the same, a second stop finishes, a ``run`` after it
starts cleanly. Read, not forced: ``archive_segments_before`` (a kill leaves a segment in
both places, taken as moved at the rerun), the users file's change log (one fsynced frame).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from config import load_profile
from procs.common.record_codec import RecordCodec
from procs.common.run_files import read_status, supervisor_running
from procs.common.topology import ADMIN_GATEWAY, gateway_commands, users_path
from procs.common.users import UserStore
from shm import Ring
from shm.inspect import list_segments
from shm.liveness import pid_alive
from tests.unit.gateway.harness import Client, utc
from tests.unit.supervisor.test_supervisor import wait_for
from tests.unit.test_review239_operator_races import (
    ROOT,
    Venue,
    _profile,
    _ringex,
    _start,
    _supervisors,
)


@pytest.fixture(scope="module")
def venue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venue]:
    instance = f"r247x{os.getpid()}"
    v = Venue(_profile(tmp_path_factory.mktemp("r247") / "venue.toml", instance))
    try:
        code, _, err = _ringex("run", *v.c, "--detach", "--timeout", "60")
        assert code == 0, err
        yield v
    finally:
        _ringex("stop", *v.c, "--timeout", "60")


def _usd(venue: Venue, account: int) -> tuple[str, str]:
    """Free and locked USD of ``account``, from the router."""
    code, out, err = _ringex(*venue.admin("balances", "--account", str(account), "--json"))
    assert code == 0, err
    usd = json.loads(out)["balances"].get("USD", {"free": "0", "locked": "0"})
    return usd["free"], usd["locked"]


def _add_user(venue: Venue, name: str, deposit: str = "USD=1000") -> int:
    code, _, err = _ringex(*venue.admin("add-user", "--username", name, "--password", "pw",
                                        "--deposit", deposit))  # fmt: skip
    assert code == 0, err
    user = UserStore(users_path(venue.cfg)).get(name)
    assert user is not None
    return user.account


def _rest_a_bid(venue: Venue, name: str) -> None:
    """A GTC bid of ``name``'s, 0.01 BTC at 100.00, acknowledged and resting (no asks)."""

    async def place() -> None:
        client = Client(name)
        await client.connect(venue.cfg.gateways[0].port)
        await client.logon("pw", reset=True)
        await client.send("D", (11, "b1"), (55, "BTC-USD"), (54, "1"), (60, utc()),
                          (38, "0.01"), (40, "2"), (44, "100.00"), (59, "1"))  # fmt: skip
        report = await client.expect("8", timeout=10)
        assert report.get(39) == b"0", report  # New
        await client.aclose()

    asyncio.run(place())


# -- remove-user --cancel-orders --------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_remove_user_cancel_orders_interrupted_after_the_removal_cancels_or_says_so(
    venue: Venue, signum: signal.Signals
) -> None:
    """Scenario: a user with a resting bid; ``remove-user --cancel-orders``; once the user is
    gone from the users file (the command in its 1.5 s settle), ``signum`` (Ctrl-C, or a
    SIGTERM) reaches the command.
    Expected: its orders cancelled anyway, or the command says they were not and names the
    ``cancel-all --account N`` to run (a rerun can no longer: the user is gone).
    Was (fixed): the bid rests, the command says "ringex: interrupted" (SIGINT) or nothing
    (SIGTERM), and the rerun says "no user"."""
    name = f"rm{signum.value}"
    account = _add_user(venue, name)
    _rest_a_bid(venue, name)
    assert _usd(venue, account)[1] != "0.000000"  # the bid holds USD
    remove = _start(*venue.admin("remove-user", "--comp-id", name, "--cancel-orders"))
    wait_for(lambda: UserStore(users_path(venue.cfg)).get(name) is None, 30)
    remove.send_signal(signum)
    _, err = remove.communicate(timeout=60)
    rerun = _ringex(*venue.admin("remove-user", "--comp-id", name, "--cancel-orders"))
    assert rerun[0] == 1 and "no user" in rerun[2], rerun  # the rerun cannot finish the job
    said = f"cancel-all --account {account}" in err
    assert said or _cancelled_soon(venue, account), (remove.returncode, err)


def _cancelled_soon(venue: Venue, account: int) -> bool:
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        if _usd(venue, account)[1] == "0.000000":
            return True
        time.sleep(0.2)
    return False


# -- transfers ------------------------------------------------------------------------------


def test_ctrl_c_while_a_deposit_waits_names_its_key_and_the_rerun_applies_it_once(
    venue: Venue,
) -> None:
    """Scenario: the router frozen, a ``deposit --amount 5`` sent and Ctrl-C'd while it
    waits for the answer; the router thawed; the deposit run again with the key it named.
    Expected (README: "an interrupted one (Ctrl-C) says ... which --key retries it once"):
    exit 1 naming ``--key K``; the rerun OK; 5 applied once. Now: so."""
    account = _add_user(venue, "cc", "USD=1")
    deposit = venue.admin("deposit", "--account", str(account), "--asset", "USD", "--amount", "5")
    with _sent_unanswered(venue, *deposit) as sent:
        sent.send_signal(signal.SIGINT)
        _, err = sent.communicate(timeout=60)
    assert sent.returncode != 0 and "retry with --key " in err, err
    key = err.split("retry with --key ", 1)[1].split()[0]
    code, _, err = _ringex(*deposit, "--key", key)
    assert code == 0, err
    assert _usd(venue, account)[0] == "6.000000"


@contextlib.contextmanager
def _sent_unanswered(venue: Venue, *args: str) -> Iterator[subprocess.Popen[str]]:
    """``ringex`` ``args`` started with the router frozen (SIGSTOP), yielded once its command
    is in the admin ring, unread: it waits for the answer. The router thaws after the block."""
    ring = Ring.attach(venue.cfg.instance, gateway_commands(ADMIN_GATEWAY), RecordCodec())
    router = venue.pid("router")
    os.kill(router, signal.SIGSTOP)
    try:
        before = ring.info().cursor
        sent = _start(*args)
        wait_for(lambda: ring.info().cursor > before, 30)
        yield sent
    finally:
        ring.close()
        os.kill(router, signal.SIGCONT)


@pytest.mark.parametrize(
    ("command", "signum"), [("deposit", signal.SIGTERM), ("withdraw", signal.SIGHUP)]
)
def test_a_transfer_given_sigterm_or_sighup_names_the_key_that_retries_it(
    venue: Venue, command: str, signum: signal.Signals
) -> None:
    """Scenario: the router frozen; ``command`` of 5 USD sent; while it waits for the answer,
    ``signum`` (a ``timeout`` around the command, the terminal closed) reaches it; the router
    thawed.
    Expected: as at Ctrl-C, it says which ``--key`` retries the transfer once (it is in the
    ring, and is applied), exit 1 as at Ctrl-C.
    Was (fixed): it dies of the signal, nothing said; the transfer is applied, and the rerun an
    operator makes without the key applies it twice."""
    name = f"t{command[:3]}{signum.value}"
    account = _add_user(venue, name, "USD=10")
    move = venue.admin(command, "--account", str(account), "--asset", "USD", "--amount", "5")
    with _sent_unanswered(venue, *move) as sent:
        sent.send_signal(signum)
        _, err = sent.communicate(timeout=60)
    wait_for(lambda: _usd(venue, account)[0] != "10.000000", 10)  # it was applied
    assert sent.returncode == 1 and "--key " in err, (sent.returncode, err)  # as Ctrl-C


# -- run --detach ----------------------------------------------------------------------------

_HOLD_PRINT = """
import sys, time
from pathlib import Path
import procs.cli as cli
mark = Path(sys.argv[1])
shown = cli._print_status
def held(cfg, *, as_json):
    mark.touch()  # "instance ... running" printed: held here, as a slow status read may be
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return shown(cfg, as_json=as_json)
cli._print_status = held
sys.exit(cli.main(sys.argv[2:]))
"""


def test_a_sigterm_after_the_detached_start_succeeded_leaves_the_instance_running(
    tmp_path: Path,
) -> None:
    """Scenario: ``ringex run --detach``; its supervisor says running, the command prints
    "instance X running" and is held in its status print; a SIGTERM reaches it then.
    Expected: the instance, reported running, stays running (the start was not given up:
    it was done). Was (fixed): the command's give-up handler is still installed: it stops the
    supervisor and says "SIGTERM while instance X was starting: the start is given up"."""
    profile = _profile(tmp_path / "done.toml", f"r247d{os.getpid()}")
    cfg = load_profile(str(profile))
    mark = tmp_path / "printing"
    run = subprocess.Popen(
        [sys.executable, "-c", _HOLD_PRINT, str(mark), "run", "--config", str(profile),
         "--detach", "--timeout", "60"],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        wait_for(mark.exists, 60)
        supervisor = supervisor_running(read_status(cfg))
        assert supervisor is not None and (read_status(cfg) or {})["state"] == "running"
        run.send_signal(signal.SIGTERM)
        out, err = run.communicate(timeout=90)
        assert f"instance {cfg.instance} running" in out
        assert pid_alive(supervisor) and supervisor_running(read_status(cfg)) == supervisor, err
    finally:
        run.kill()
        run.communicate()
        _ringex("stop", "--config", str(profile), "--timeout", "60")


def test_run_detach_sigkilled_while_starting_comes_up_and_is_seen_refused_and_stopped(
    tmp_path: Path,
) -> None:
    """Scenario: ``ringex run --detach`` SIGKILLed once its supervisor wrote "starting"
    (nothing can be handled); at once a second ``ringex run --detach``; then ``status
    --wait-ready`` and ``stop``.
    Expected: the instance comes up anyway (its supervisor is in a session of its own); the
    second run is refused, naming the running supervisor, and starts nothing; status sees it
    ready; stop stops it and leaves no segment. Now: so."""
    profile = _profile(tmp_path / "kill.toml", f"r247k{os.getpid()}")
    c = ["--config", str(profile)]
    cfg = load_profile(str(profile))
    run = _start("run", *c, "--detach", "--timeout", "60")
    try:
        supervisor = wait_for(lambda: supervisor_running(read_status(cfg)), 60)
        run.kill()
        run.communicate(timeout=30)
        code, _, err = _ringex("run", *c, "--detach", "--timeout", "60")
        assert code == 1 and f"supervisor pid {supervisor}" in err, err
        code, out, err = _ringex("status", *c, "--wait-ready", "--timeout", "60")
        assert code == 0 and "running" in out, err
        assert _supervisors(profile) == [supervisor]
        code, out, err = _ringex("stop", *c, "--timeout", "60")
        assert code == 0 and "stopped" in out, err
        assert not pid_alive(supervisor) and not list_segments(cfg.instance)
    finally:
        run.kill()
        run.communicate()
        _ringex("stop", *c, "--timeout", "60")


def test_stop_sigkilled_after_its_sigterm_then_a_second_stop_and_a_clean_run(
    tmp_path: Path,
) -> None:
    """Scenario: a running instance; ``ringex stop`` SIGKILLed once the supervisor says
    "stopping"; a second ``ringex stop``; ``ringex run --detach`` again.
    Expected: the instance stops all the same (no half-stopped state: the supervisor did the
    stop, not the command); the second stop exits 0 saying stopped or not running; the new
    run starts (exit 0, every process up) over no leftover segment. Now: so."""
    profile = _profile(tmp_path / "stop.toml", f"r247s{os.getpid()}")
    c = ["--config", str(profile)]
    cfg = load_profile(str(profile))
    try:
        code, _, err = _ringex("run", *c, "--detach", "--timeout", "60")
        assert code == 0, err
        first = supervisor_running(read_status(cfg))
        assert first is not None
        stop = _start("stop", *c, "--timeout", "60")
        wait_for(lambda: (read_status(cfg) or {}).get("state") in ("stopping", "stopped"), 30)
        stop.kill()
        stop.communicate(timeout=30)
        code, out, err = _ringex("stop", *c, "--timeout", "60")
        assert code == 0 and ("stopped" in out or "not running" in out), (out, err)
        assert not pid_alive(first) and not list_segments(cfg.instance)
        code, out, err = _ringex("run", *c, "--detach", "--timeout", "60")
        assert code == 0 and "running" in out, err
        status = read_status(cfg) or {}
        assert all(p["ready"] for p in status["processes"]), status
    finally:
        _ringex("stop", *c, "--timeout", "60")
