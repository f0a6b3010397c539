"""Review 197: README.md walked as a newcomer follows it, every command it shows run.

Walked by hand first, against a private instance (its own ``instance``, ``var_dir`` under
/tmp and free ports, ``[database] enabled = false``; stopped at the end, nothing of it left
in ``ps`` or ``/dev/shm``): ``ringex run --config F --detach``, ``status`` (text, ``--json``,
``--wait-ready --timeout 60`` and ``0``), every line of Operate's block (``add-user`` with
deposits, ``--cancel-on-disconnect``, ``--password-stdin``; ``create-account``, ``deposit`` with
``--key`` twice, ``withdraw``, ``halt``/``resume``, ``end-session``, ``snapshot``,
``balances`` (``--json``, an account never opened), ``cancel-all`` (``--account``,
``--every-account``, neither, an unknown symbol), ``users`` (``--json``), ``remove-user
--cancel-orders``, ``set-password`` (``--password-stdin --revoke-keys``, ``--password``, an
unknown user, an empty password), ``set-user`` (each setting, nothing to set, bounds crossing),
``keys`` (``--json``), ``revoke-key`` (twice, an id beginning with ``-``)), ``POST
/api/v1/apiKey`` with curl (form and JSON bodies), ``ping``/``time``, the README's
``RestClient`` script (an order, ``account``, ``openOrders``), a FIX 4.4 Logon (Password 554,
141=Y) and NewOrderSingle over a raw socket, the metrics page's families, ``replay`` (plain,
``--snapshot``, ``--archive``, ``--from-start``), ``shm ls`` (text, ``--instance --json``),
``scripts/failover.py status`` (read only, a standby config never started), ``stop`` (twice),
``make ring-demo``; the argument refusals of Operate's paragraphs (exit 1 and 2) and
``--config`` / ``--profile`` with a file without a suffix.

Here, in-process and fast: ``procs.cli.main`` over review 155's rig (a router and a matcher
stepped in a thread on the test's own instance, ``tests/unit/test_review_admin_bugs._Pump``),
and status files written as a supervisor writes them.

Faults found:

1. README 1588-1612 (Operate's command block): read as the walk it looks like, in its order,
   three of its lines fail. ``remove-user --comp-id alice`` comes before ``set-password
   --comp-id alice`` and ``set-user --comp-id alice`` (both then exit 1, "no user 'alice'"),
   and ``set-user --comp-id rig1`` names a user no line adds (exit 1). Fix (README): move
   ``remove-user`` to the block's end and add rig1 (or name carol or bob). Was (fixed so,
   carol named). Test: ``test_the_operate_block_run_in_its_order_says_what_readme_says``.
2. README 61-63 (Two commands): "Its SenderCompID is the username unless `--comp-id` says
   ... The same username and password log in over FIX (Password 554) and to the REST API
   (`POST /api/v1/apiKey`)". With ``--comp-id`` the username is printed and dropped
   (``procs/admin/add_user.py``: the user is stored by its comp id alone): ``POST apiKey``
   with that username is refused (``UserStore.verify`` finds no such user) and a FIX Logon
   whose Username (553) is not its SenderCompID is refused (``procs/gateway/logon.py``): the
   username logs in nowhere, the comp id everywhere. Fix (README): "the comp id (the username
   unless `--comp-id` says) and the password log in over FIX ... and to the REST API", or
   (code) refuse ``--comp-id`` differing from ``--username``. Was (fixed in the README so).
   Test: ``test_a_user_added_with_a_comp_id_logs_in_with_its_comp_id``.
3. README 1760-1761 (Stopping): "`ringex status` shows ... each process `up`, `recovering`
   (...) or `down` with its heartbeat's age". ``_print_status`` (``procs/cli.py``) prints
   the heartbeat only for a process alive: a down one shows none, though ``status.json``
   holds its last age. Fix (README): "each process `up` or `recovering` with its
   heartbeat's age, or `down`" (or print the last age for a down one). Was (fixed in the
   README so). Test: ``test_status_shows_a_live_processs_heartbeat_age_and_a_down_ones_state``.

Found sound (the walk's checks, plain tests here where no other test pins them): every line
of the Operate block exits 0 once the users it names exist and ``remove-user`` runs last, and
each says what the README says: ``add-user`` names the SenderCompID, the next free account
and what it deposited; ``deposit`` and ``withdraw`` answer with the free balance in the
asset's decimals, as ``balances`` shows it, and a retry with the same ``--key`` is answered
as the first; ``halt``/``end-session`` say "sent"; ``balances --json``; ``users --json`` holds
compId, account, session and the five settings (null for the gateway's); ``keys --json``
never a secret; ``revoke-key`` of a key gone is exit 1, one line. ``balances`` of an account
never opened is exit 1 naming ``UNKNOWN_ACCOUNT``; ``cancel-all`` without ``--account`` or
``--every-account`` is exit 2, an unknown symbol exit 2. ``stop`` of an instance not running
is exit 0; ``status`` of a stopped one exit 0 with its first line the state and role;
``shm ls`` shows geometry, cursor and live pids. By hand (not repeated here, each pinned
elsewhere or needing real processes): ``run --detach`` prints the status; ``status --json``
holds every key Operate lists, each process with the seven it lists; the endpoints;
``--wait-ready --timeout 0`` looks once and exits 1 naming "not running"; a stop leaves no
process and no segment; every metric family Operate lists was on the page; ``replay``'s four
forms; ``POST apiKey`` answers ``apiKey`` and ``secretKey`` (form and JSON bodies); FIX with
TargetCompID RINGEX, Password 554 and 141=Y logs on and its order is answered; the README's
``RestClient`` script; ``make ring-demo`` (3 s, the dev profile's strategy); ``--config``
takes a file without a suffix, ``--profile`` a name or a path with a suffix; files of
``var/<instance>/gateway`` and ``run/admin.lock`` mode 0600. Leads, not README claims: the
``snapshot`` command printed ``var/<instance>/snapshots`` with the placeholder unfilled
(fixed: the instance's directory); a password beginning with ``-`` cannot be given as
``--password -x`` (argparse: exit 2), only as ``--password=-x`` or on stdin, though
``revoke-key`` takes such values; ``status`` of a
stopped instance still lists its endpoints, the metrics URL included (``metrics_url`` is
empty).
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import procs.cli
from config.schema import RingexConfig
from procs.common.apikeys import ApiKeyStore
from procs.common.run_files import status_path
from procs.common.topology import apikeys_path, users_path
from procs.common.users import UserStore
from shm.liveness import process_start
from tests.readme_text import README, claim, section
from tests.unit.router.test_router import Exchange, config
from tests.unit.test_review_admin_bugs import _Pump, _use_config

OPERATE = section("Operate")
BLOCK = OPERATE[OPERATE.index("```sh\n") + 6 : OPERATE.index("```", OPERATE.index("```sh\n") + 6)]
CLI = ".venv/bin/ringex "


@pytest.fixture
def ex(instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Exchange]:
    """The test's own instance: its rings, a router and a matcher stepped in a thread while a
    command runs; ``--profile x`` loads its config."""
    exchange = Exchange(config(instance, tmp_path))
    _use_config(monkeypatch, exchange.cfg)
    yield exchange
    exchange.stop()


def _cli(
    argv: list[str], capsys: pytest.CaptureFixture[str], stdin: str = ""
) -> tuple[int, str, str]:
    """``ringex ARGV`` in-process: exit status (argparse's included), stdout, stderr."""
    capsys.readouterr()
    old = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        code = procs.cli.main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.stdin = old
    out, err = capsys.readouterr()
    return code, out, err


def _admin_lines() -> list[tuple[str, list[str], str]]:
    """Operate's block as a newcomer runs it: each ``ringex admin`` command (a ``;`` splits
    two), its comment gone, ``[optional]`` parts given, ``a|b|c`` its first choice, with
    ``--profile x`` (the rig's config): (the README's line, argv, stdin)."""
    lines = []
    for line in BLOCK.splitlines():
        stdin = ""
        text = line.split("  #")[0].strip()
        if text.startswith("printf"):
            text, stdin = text.split(" | ", 1)[1], "pw\n"  # "$PW"
        for command in text.split(" ; "):
            if not command.startswith(CLI + "admin "):
                continue
            words = shlex.split(re.sub(r"[\[\]]", "", command[len(CLI) :]))
            words = [w.split("|")[0] for w in words]
            lines.append((command, [*words[:2], "--profile", "x", *words[2:]], stdin))
    return lines


def _walk(
    lines: list[tuple[str, list[str], str]], capsys: pytest.CaptureFixture[str], ex: Exchange
) -> dict[str, tuple[int, str, str]]:
    """Each line run in turn (a key made for bob stands for KEYID): what each gave."""
    got: dict[str, tuple[int, str, str]] = {}
    for line, shown, stdin in lines:
        argv = shown
        if "KEYID" in shown:
            user = UserStore(users_path(ex.cfg)).get("bob")
            assert user is not None
            key = ApiKeyStore(apikeys_path(ex.cfg)).create(user, ["read"])
            argv = [key.key if a == "KEYID" else a for a in shown]
        with _Pump(ex):
            got[line] = _cli(argv, capsys, stdin)
    return got


# -- fault 1: the block, in its order ----------------------------------------------------------


def test_the_operate_block_run_in_its_order_says_what_readme_says(
    ex: Exchange, capsys: pytest.CaptureFixture[str]
) -> None:
    """README's Operate block: its admin lines, run in the order shown, each exit 0 and say
    what Operate says of them. Was (fixed in the README: ``remove-user`` of alice came before
    her ``set-password`` and ``set-user``, and ``set-user`` named rig1, whom no line adds)."""
    claim(".venv/bin/ringex admin remove-user --comp-id alice [--cancel-orders]", BLOCK)
    claim(".venv/bin/ringex admin set-user --comp-id carol --reset-on-logon on", BLOCK)
    lines = _admin_lines()
    assert len(lines) == 21 and "remove-user" in lines[-1][1]
    got = _walk(lines, capsys, ex)
    assert {line: err.strip() for line, (code, _, err) in got.items() if code} == {}
    by = {line.removeprefix(CLI): o for line, (_, o, _) in got.items()}

    def said(prefix: str) -> str:
        return next(v for k, v in by.items() if k.startswith(prefix))

    # add-user: "Its SenderCompID is the username ... its account the next free one"
    assert said("admin add-user --username alice").strip() == (
        "user alice: SenderCompID alice, account 100, deposited USD 1000, BTC 1"
    )
    claim("`deposit` and `withdraw` answer with the asset's free balance after them, in its "
          "decimals, as `balances` shows it")  # fmt: skip
    assert said("admin deposit").strip().endswith("free balance 250.5000")
    assert said("admin withdraw").strip().endswith("free balance 240.5000")
    assert "240.5000" in said("admin balances --account 7")
    assert said("admin halt").strip() == "halt BTC-USD: sent"
    claim('like `halt` it says "sent" once the command is in the admin ring')
    assert "sent" in said("admin end-session")
    users = json.loads(said("admin users"))
    claim("(`--json`: `cancelOnDisconnect`, `resetOnLogon`, `minHeartbeatS`, `maxHeartbeatS`, "
          "`sendingTimeToleranceS`, `null` for the gateway's)")  # fmt: skip
    assert {tuple(u) for u in users} == {(
        "compId", "account", "session", "cancelOnDisconnect", "resetOnLogon", "minHeartbeatS",
        "maxHeartbeatS", "sendingTimeToleranceS",
    )}  # fmt: skip
    carol = next(u for u in users if u["compId"] == "carol")
    assert carol["cancelOnDisconnect"] is True and carol["resetOnLogon"] is None  # not yet
    keys = json.loads(said("admin keys"))
    assert "secret" not in json.dumps(keys).lower()
    stored = UserStore(users_path(ex.cfg))
    assert stored.get("alice") is None  # removed, last
    assert stored.verify("bob", "pw2") is not None  # set-password --password pw2
    settled = stored.get("carol")
    assert settled is not None and settled.reset_on_logon is True


def test_a_retried_deposit_key_is_answered_as_the_first(
    ex: Exchange, capsys: pytest.CaptureFixture[str]
) -> None:
    """Operate: "a retry within the week is applied once, answered as the first", through the
    command as shown (``deposit ... --amount 250.50 [--key 42]``), twice."""
    claim("a retry within the week is applied once, answered as the first")
    claim(".venv/bin/ringex admin deposit --account 7 --asset USD --amount 250.50 [--key 42]")
    with _Pump(ex):
        assert _cli(["admin", "create-account", "--profile", "x", "--account", "7"], capsys)[0] == 0
        move = ["admin", "deposit", "--profile", "x", "--account", "7", "--asset", "USD"]
        first = _cli([*move, "--amount", "250.50", "--key", "42"], capsys)
        again = _cli([*move, "--amount", "250.50", "--key", "42"], capsys)
        code, out, _ = _cli(["admin", "balances", "--profile", "x", "--account", "7"], capsys)
    assert first[0] == again[0] == code == 0
    assert first[1] == again[1] and first[1].strip().endswith("free balance 250.5000")
    assert "250.5000" in out


def test_the_refusals_the_walk_met_exit_as_operate_says(
    ex: Exchange, capsys: pytest.CaptureFixture[str]
) -> None:
    """Operate: ``balances`` of an account never opened: "UNKNOWN_ACCOUNT, exit 1";
    ``cancel-all``: "An unknown symbol is exit 2; `--account` or `--every-account` must be
    said"; ``revoke-key`` of a key not there: "exit 1, one line naming it"."""
    claim("(one never opened: UNKNOWN_ACCOUNT, exit 1)", BLOCK, comments=True)
    claim("An unknown symbol is exit 2; `--account` or `--every-account` must be said.")
    claim("A key id that is not there, or a key file that cannot be read or written, is exit "
          "1, one line naming it.")  # fmt: skip
    with _Pump(ex):
        code, _, err = _cli(["admin", "balances", "--profile", "x", "--account", "98"], capsys)
        assert (code, "UNKNOWN_ACCOUNT" in err) == (1, True)
        cancel = ["admin", "cancel-all", "--profile", "x"]
        assert _cli([*cancel, "--symbol", "BTC-USD"], capsys)[0] == 2
        assert _cli([*cancel, "--account", "7", "--symbol", "NOPE-USD"], capsys)[0] == 2
        code, _, err = _cli(["admin", "revoke-key", "--profile", "x", "--api-key", "-gone"],
                            capsys)  # fmt: skip
    assert code == 1 and err.count("\n") == 1 and "'-gone'" in err


# -- fault 2: the username and the comp id -----------------------------------------------------


def test_a_user_added_with_a_comp_id_logs_in_with_its_comp_id(
    ex: Exchange, capsys: pytest.CaptureFixture[str]
) -> None:
    """README, Two commands: ``add-user --username dave --comp-id DAVE1``: its SenderCompID
    is DAVE1, and "The SenderCompID (the username, then) and the password log in ... to the
    REST API" (``UserStore.verify``, what ``POST /api/v1/apiKey`` asks): "a user is stored by
    its SenderCompID alone". Was (fixed in the README: it said the username logs in)."""
    claim("Its SenderCompID is the username unless `--comp-id` says")
    claim("The SenderCompID (the username, then) and the password log in over FIX (Password "
          "554) and to the REST API (`POST /api/v1/apiKey`, its `username`)")  # fmt: skip
    add = ["admin", "add-user", "--profile", "x", "--username", "dave", "--comp-id", "DAVE1",
           "--password", "pw"]  # fmt: skip
    with _Pump(ex):
        code, out, _ = _cli(add, capsys)
    assert code == 0 and "SenderCompID DAVE1" in out
    store = UserStore(users_path(ex.cfg))
    assert store.verify("DAVE1", "pw") is not None  # the comp id logs in
    assert store.get("dave") is None  # the username is not stored


# -- fault 3: status's down process ------------------------------------------------------------


def _status_file(cfg: RingexConfig, alive_pid: int, gone_pid: int) -> None:
    """A running instance's status as the supervisor (this live test process) writes it:
    one process up, one whose pid has ended, its heartbeat last seen 2.5 s before."""

    def proc(name: str, pid: int) -> dict[str, object]:
        return {"name": name, "pid": pid, "started": process_start(pid), "alive": True,
                "ready": True, "cpus": [], "restarts": 0, "heartbeat_age_s": 2.5,
                "uptime_s": 9.0}  # fmt: skip

    doc = {
        "instance": cfg.instance, "profile": "x", "supervisor_pid": os.getpid(),
        "supervisor_started": process_start(os.getpid()), "state": "running",
        "role": "primary", "prestarted": False, "reason": "", "updated_ns": time.time_ns(),
        "metrics_url": "", "processes": [proc("router", alive_pid), proc("matcher-m1", gone_pid)],
    }  # fmt: skip
    path = status_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


@pytest.fixture
def gone_pid() -> int:
    """The pid of a process that ran and was reaped."""
    done = subprocess.Popen(["true"])
    done.wait()
    return done.pid


def test_status_shows_a_live_processs_heartbeat_age_and_a_down_ones_state(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], gone_pid: int,
) -> None:  # fmt: skip
    """README, Stopping: "each process `up` or `recovering` (...) with its heartbeat's age,
    or `down`". Was (fixed in the README: it gave a down one its heartbeat's age)."""
    claim("each process `up` or `recovering` (alive, not ready yet: a restart replaying) "
          "with its heartbeat's age, or `down`")  # fmt: skip
    cfg = config(instance, tmp_path)
    _use_config(monkeypatch, cfg)
    _status_file(cfg, os.getpid(), gone_pid)
    code, out, _ = _cli(["status", "--profile", "x"], capsys)
    assert code == 0
    up = next(line for line in out.splitlines() if "router" in line)
    assert " up " in up and "heartbeat 2.5 s ago" in up
    down = next(line for line in out.splitlines() if "matcher-m1" in line)
    assert " down " in down and "heartbeat" not in down


# -- found sound: lifecycle and shm as the walk met them ---------------------------------------


def test_stop_and_status_of_an_instance_not_running_exit_0(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """Operate: "Exit status: 0 done (`stop` of an instance that is not running, and `status`
    of a stopped one, are 0)"; "its first line says the state and the role"; ``--json``
    "says `serves_clients: false`" while it does not run."""
    claim("`stop` of an instance that is not running, and `status` of a stopped one, are 0")
    claim("its first line says the state and the role")
    cfg = config(instance, tmp_path)
    _use_config(monkeypatch, cfg)
    code, out, _ = _cli(["stop", "--profile", "x"], capsys)
    assert code == 0 and "not running" in out
    code, out, _ = _cli(["status", "--profile", "x"], capsys)
    assert code == 0 and out.splitlines()[0] == f"instance {instance}: stopped (primary)"
    code, out, _ = _cli(["status", "--profile", "x", "--json"], capsys)
    assert code == 0 and json.loads(out)["serves_clients"] is False


def test_shm_ls_shows_geometry_cursor_and_live_pids(
    ex: Exchange, capsys: pytest.CaptureFixture[str]
) -> None:
    """ "`.venv/bin/ringex shm ls # segments, geometry, cursor, live pids`", and the rings'
    "`capacity x 152` bytes each (plus a header)": each ring of the instance is listed with
    its bytes, slots, slot size and cursor, and the live pids holding it (this process)."""
    claim(".venv/bin/ringex shm ls # segments, geometry, cursor, live pids", README)
    code, out, _ = _cli(["shm", "ls", "--instance", ex.cfg.instance], capsys)
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["instance", "name", "bytes", "slots", "slot", "cursor", "state"]
    row = next(r.split() for r in rows if r.split()[1] == "m1-in")
    capacity = ex.cfg.ring.capacity
    assert int(row[3]) == capacity and int(row[4]) == 152 and int(row[2]) > capacity * 152
    assert row[6:8] == ["live", "pids"] and str(os.getpid()) in row[8].split(",")
