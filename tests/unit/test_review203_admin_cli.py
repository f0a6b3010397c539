"""Review 203: the operator's command line (``procs/cli.py``, ``procs/admin/``,
``procs/shm_commands.py``, README's Operate) held against hostile ``admin`` arguments and
``status`` of an instance in each state.

Method: ``procs.cli.main`` in-process against review 197's rig (a router and a matcher over
the instance's real rings, stepped in a thread by ``_Pump``; ``--profile x`` loads its
config), against no instance at all, and against status files written as the supervisor
writes them; one real instance (``ringex run --detach`` of review 50's small exchange, a FIX
gateway on a free port) whose supervisor is then SIGKILLed, every command run as a shell
runs it.

Sound (``test_checked_...``): ``add-user`` refuses, exit 2, one line naming the value and its
limit, before anything is opened (no user stored, no account opened): a ``--deposit`` that is
zero, negative, malformed, of an unknown asset, past the asset's decimals or int64 in minor
units; a comp id empty or past 32 characters; a comp id or username that is a user already;
an empty password; account 0; the fee account. ``deposit``/``withdraw`` refused by the router
(overdraft, a balance past int64, zero, no such account) are exit 1, one line naming the
amount asked, the balance unchanged; ``halt``/``resume`` twice are "sent" twice, an unknown
symbol exit 2 naming the configured ones; against an instance never started every command is
exit 1 "not running" and ``add-user`` stores nothing. ``status`` is exit 0 in every state;
``--json`` holds exactly the keys Operate lists (and each process its nine); a stopped or
killed instance's ``--json`` says ``state: stopped``, ``serves_clients: false``; a killed
supervisor is named in ``reason``; ``--wait-ready --timeout 0`` says "not running" (exit 1);
admin commands refuse the rings it left ("not running", exit 1); ``stop`` is exit 0; ``shm rm
--stale`` clears what it left.

Faults (each fixed; its test says what it was):
1. ``add-user --comp-id C --username U`` never checks U (``procs/admin/add_user.py:32``: only
   the comp id goes to ``comp_id_refused``): "", "a\\nb", 5,000 characters, an escape sequence
   are taken, the user stored and the account opened, U echoed whole into the result line
   (``add_user.py:84``), which then reads as two lines, or clears the operator's terminal.
2. The same U as argv bytes that are not UTF-8 (``\\udcff`` by surrogateescape): the user is
   stored, the account opened, the deposits made, then ``print`` (``add_user.py:84``) raises
   ``UnicodeEncodeError`` under a strict UTF-8 stdout (a UTF-8 locale, ``PYTHONIOENCODING``,
   a pipe into a logger): a traceback and exit 1 after every change was made, where every
   other refusal comes before anything is opened.
3. ``status`` (text) of an instance that is not running (never started, stopped, its
   supervisor killed) lists its endpoints as plain lines, as a running one does
   (``procs/cli.py:446-449``): only a standby's are headed "a standby serves no client";
   ``--json`` says ``serves_clients: false``, the text nothing.
4. ``status`` of a running instance whose every gateway is down says ``serves_clients: true``
   (``procs/cli.py:419``: the state and role alone decide), its FIX endpoint listed as served.

Leads, not shown as faults: ``add-user --account N`` binds a new user to an account another
user holds, in silence (two comp ids trade one account's money; "an explicit one may exist",
``add_user.py:116``, by design for accounts opened by ``create-account``). Was (fixed, later):
``shm rm --instance I`` of a running instance skipped every live segment and exited 0 ("0
segment(s) removed"), where Operate's other refusals exit 1; it exits 1 now, naming the pids.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config.schema import RingexConfig
from procs.common.run_files import status_path
from procs.common.topology import users_path
from procs.common.users import UserStore
from shm.inspect import list_segments
from shm.liveness import pid_alive, process_start
from tests.readme_text import claim
from tests.unit.router.test_router import USD, Exchange, config, fund
from tests.unit.supervisor.test_review50_ops import exchange_profile, ringex
from tests.unit.supervisor.test_review183_operations_hostile import _gone_pid, _process
from tests.unit.supervisor.test_supervisor import wait_for
from tests.unit.test_review197_readme_walk import _cli
from tests.unit.test_review_admin_bugs import _Pump, _use_config

X = ["--profile", "x"]  # the rig's config (``_use_config``)

#: Operate: "`status --json` holds the `instance`, its `profile`, `state` and `role`, ..."
STATUS_KEYS = {
    "instance", "profile", "state", "role", "prestarted", "supervisor_pid",
    "supervisor_started", "reason", "updated_ns", "metrics_url", "processes", "rings",
    "endpoints", "serves_clients",
}  # fmt: skip
#: Operate: "each with its `name` and `started`" and "pid, alive, ready, cpus, `restarts`,
#: `uptime_s` ... and `heartbeat_age_s`"
PROCESS_KEYS = {
    "name", "started", "pid", "alive", "ready", "cpus", "restarts", "uptime_s",
    "heartbeat_age_s",
}  # fmt: skip


@pytest.fixture
def ex(instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Exchange]:
    """Account 7 with 100.0000 USD; users file empty; the fee account is 99."""
    exchange = Exchange(config(instance, tmp_path))
    _use_config(monkeypatch, exchange.cfg)
    fund(exchange, 7, usd=1_000_000, btc=0)
    yield exchange
    exchange.stop()


@pytest.fixture
def idle_cfg(instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RingexConfig:
    """The rig's config with nothing of its instance running (never started)."""
    cfg = config(instance, tmp_path)
    _use_config(monkeypatch, cfg)
    return cfg


def _run(ex: Exchange, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``ringex admin ARGV --profile x`` with the rig stepped: exit status, out, err; an
    exception escaping ``main`` is a traceback: exit 1, its repr on err."""
    with _Pump(ex):
        try:
            return _cli(["admin", argv[0], *X, *argv[1:]], capsys)
        except Exception as exc:  # what a shell would show as a traceback
            out, err = capsys.readouterr()
            return 1, out, f"{err}Traceback: {exc!r}\n"


def _one_line(err: str) -> str:
    assert err.count("\n") == 1 and err.endswith("\n") and "Traceback" not in err, err
    return err


def _comp_ids(cfg: RingexConfig) -> set[str]:
    return {u.comp_id for u in UserStore(users_path(cfg)).users()}


def _usd(ex: Exchange, account: int) -> tuple[int, int]:
    return ex.router.sequencer.accounts.balance(account, USD)


def _opened(ex: Exchange) -> set[int]:
    """The accounts (1..199) the router knows: opened, funded or not."""
    accounts = ex.router.sequencer.accounts
    return {a for a in range(1, 200) if accounts.known(a)}


# -- faults 1, 2: add-user's --username beside --comp-id -----------------------------------------


@pytest.mark.parametrize(
    "username", ["", "a\nb", "x" * 5000, "\x1b[2J"], ids=["empty", "newline", "5000", "escape"]
)
def test_add_user_holds_a_username_beside_a_comp_id_to_the_comp_id_rules(
    username: str, ex: Exchange, capsys: pytest.CaptureFixture[str]
) -> None:
    """``add-user --username U --comp-id alice``, U empty, two lines, 5,000 characters or a
    terminal escape. Expected: refused as the same U without ``--comp-id`` is (exit 2, one
    line naming it and "1..32 of A-Z a-z 0-9"), nothing stored or opened. Was (fixed): exit 0, alice
    stored with account 100, and U printed whole in "user U: SenderCompID alice ..."."""
    code, out, err = _run(
        ex, ["add-user", "--username", username, "--comp-id", "alice", "--password", "pw"], capsys
    )
    assert code == 2 and "1..32 of A-Z a-z 0-9" in _one_line(err), (code, out[:200], err)
    assert _comp_ids(ex.cfg) == set() and 100 not in _opened(ex)


def test_a_username_not_utf8_is_refused_before_anything_is_opened(
    ex: Exchange, capsys: pytest.CaptureFixture[str]
) -> None:
    """``add-user --username $'\\xff' --comp-id zed --password pw --deposit USD=5`` (argv's
    byte 0xff reaches Python as ``\\udcff``), stdout strict UTF-8 (capsys's, a UTF-8
    locale's). Expected: exit 2, one line, before anything is opened (as a password not UTF-8
    is). Was (fixed): zed is stored with account 100, 5 USD deposited, then a UnicodeEncodeError
    traceback (seen also as a real process under ``PYTHONIOENCODING=utf-8``)."""
    argv = ["add-user", "--username", os.fsdecode(b"\xff"), "--comp-id", "zed"]
    code, _, err = _run(ex, [*argv, "--password", "pw", "--deposit", "USD=5"], capsys)
    assert code == 2 and "Traceback" not in err, err
    assert "zed" not in _comp_ids(ex.cfg) and 100 not in _opened(ex)


# -- sound: add-user's other refusals ------------------------------------------------------------


def test_checked_add_user_refusals_change_nothing_and_name_the_value(
    ex: Exchange, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each refusal of ``add-user``: exit 2, one line on stderr naming the value (and its
    limit), no traceback; no user stored and no account opened (100, the next free one, is
    not). bob and alice exist first (a comp id and a username that is a user are refused)."""
    claim("`add-user`'s\nown checks")
    assert _run(ex, ["add-user", "--username", "bob", "--password", "pw"], capsys)[0] == 0
    before_users, before_accounts = _comp_ids(ex.cfg), _opened(ex)
    assert before_users == {"bob"} and 100 in before_accounts
    base = ["add-user", "--username", "carol", "--password", "pw"]
    cases: list[tuple[list[str], str]] = [
        ([*base, "--deposit", "USD=0"], "deposit USD=0 must be more than 0"),
        ([*base, "--deposit", "USD=-1"], "deposit USD=-1 must be more than 0"),
        ([*base, "--deposit", "USD"], "--deposit takes ASSET=AMOUNT"),
        ([*base, "--deposit", "USD=1=2"], "'1=2' is not a decimal number"),
        ([*base, "--deposit", "USD=NaN"], "'NaN' is not a decimal number"),
        ([*base, "--deposit", "=5"], "asset '' is not configured"),
        ([*base, "--deposit", "usd=5"], "asset 'usd' is not configured"),
        ([*base, "--deposit", "USD=0.00001"], "more than USD's 4 decimal places"),
        ([*base, "--deposit", "USD=1e15"], "beyond the limit of 9223372036854775807"),
        ([*base, "--deposit", "USD=5", "--deposit", "BTC=0"], "deposit BTC=0 must be more"),
        ([*base, "--account", "0"], "account 0 is outside 1..9223372036854775807"),
        ([*base, "--account", "99"], "account 99 is the exchange's fee account"),
        ([*base[:3], "--password", ""], "the password must not be empty"),
        (["add-user", "--username", "d" * 33, "--password", "pw"], "'" + "d" * 33 + "' must be"),
        ([*base, "--comp-id", ""], "comp id '' must be 1..32"),
        ([*base, "--comp-id", "bob"], "comp id bob is a user already (account 100)"),
        (["add-user", "--username", "bob", "--password", "pw"], "comp id bob is a user already"),
    ]
    for argv, said in cases:
        code, out, err = _run(ex, argv, capsys)
        assert (code, out) == (2, "") and said in _one_line(err), (argv, err)
    assert _comp_ids(ex.cfg) == before_users and _opened(ex) == before_accounts


def test_checked_add_user_against_no_instance_stores_nothing(
    idle_cfg: RingexConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    """``add-user`` of an instance never started: exit 1, one line "not running", and no user
    stored (the users file is written only once the account is open)."""
    argv = ["admin", "add-user", *X, "--username", "erin", "--password", "pw"]
    code, _, err = _cli([*argv, "--deposit", "USD=5"], capsys)
    assert code == 1 and "is not running" in _one_line(err)
    assert _comp_ids(idle_cfg) == set()


# -- sound: deposit, withdraw, halt, resume ------------------------------------------------------


def test_checked_refused_transfers_name_the_amount_and_change_nothing(
    ex: Exchange, capsys: pytest.CaptureFixture[str]
) -> None:
    """Account 7 holds 100 USD. Refused by the router, each exit 1, one line on stderr naming
    the amount asked and why (README: "a refused one ... is one line on stderr naming the
    amount asked, exit 1"), the balance still 100 USD: an overdraft, a deposit that would take
    the balance past int64, a zero amount each way, an account never opened."""
    claim("is one line on stderr naming the amount asked, exit 1")
    move = ["--account", "7", "--asset", "USD", "--amount"]
    cases = [
        (["withdraw", *move, "100.0001"], "INSUFFICIENT_BALANCE: withdraw of 100.0001 USD"),
        (["withdraw", "--account", "7", "--asset", "BTC", "--amount", "1"], "INSUFFICIENT_BAL"),
        (["deposit", *move, "922337203685477.5807"], "BALANCE_LIMIT: deposit of 9223372036"),
        (["deposit", *move, "0"], "INVALID_AMOUNT: deposit of 0 USD"),
        (["withdraw", *move, "0.0000"], "INVALID_AMOUNT: withdraw of 0.0000 USD"),
        (["deposit", "--account", "8", "--asset", "USD", "--amount", "1"], "UNKNOWN_ACCOUNT"),
    ]
    for argv, said in cases:
        code, out, err = _run(ex, argv, capsys)
        assert (code, out) == (1, "") and said in _one_line(err), (argv, err)
    assert _usd(ex, 7) == (1_000_000, 0) and 8 not in _opened(ex)
    code, out, _ = _run(ex, ["withdraw", *move, "100"], capsys)  # the whole of it: allowed
    assert code == 0 and out.strip().endswith("free balance 0.0000")


def test_checked_halt_and_resume_twice_and_an_unknown_symbol(
    ex: Exchange, capsys: pytest.CaptureFixture[str]
) -> None:
    """``halt`` twice, ``resume`` twice: each exit 0 "sent" (Operate: "sent" once in the admin
    ring); an unknown symbol (another case, empty, NUL) is exit 2, one line naming it and the
    configured ones, whether the rig runs or not."""
    for argv in (["halt", "BTC-USD"], ["halt", "BTC-USD"], ["resume", "BTC-USD"]) * 2:
        assert _run(ex, argv, capsys)[:2] == (0, f"{argv[0]} BTC-USD: sent\n")
    for symbol in ("ETH-USD", "btc-usd", "", "BTC-USD\x00"):
        for command in ("halt", "resume"):
            code, out, err = _run(ex, [command, symbol], capsys)
            assert (code, out) == (
                2,
                "",
            ) and f"{symbol!r} is not configured (symbols: BTC-USD)" in (_one_line(err))


@pytest.mark.parametrize(
    "argv",
    [
        ["deposit", "--account", "7", "--asset", "USD", "--amount", "1"],
        ["withdraw", "--account", "7", "--asset", "USD", "--amount", "1"],
        ["halt", "BTC-USD"],
        ["resume", "BTC-USD"],
        ["balances", "--account", "7"],
    ],
    ids=["deposit", "withdraw", "halt", "resume", "balances"],
)
def test_checked_admin_against_no_instance_is_not_running(
    argv: list[str], idle_cfg: RingexConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    """Against an instance never started: exit 1, one line "instance ... is not running"."""
    code, out, err = _cli(["admin", argv[0], *X, *argv[1:]], capsys)
    assert (code, out) == (1, "") and f"instance {idle_cfg.instance} is not running" in (
        _one_line(err)
    )


# -- status of an instance in each state ---------------------------------------------------------


def _status_file(cfg: RingexConfig, state: str, supervisor: int, processes: list[Any]) -> None:
    """``status.json`` as the supervisor writes it, its supervisor pid ``supervisor``."""
    doc = {
        "instance": cfg.instance, "profile": "p.toml", "supervisor_pid": supervisor,
        "supervisor_started": process_start(supervisor) if pid_alive(supervisor) else 1,
        "state": state, "role": "primary", "prestarted": False, "reason": "",
        "updated_ns": time.time_ns(), "metrics_url": "", "processes": processes,
    }  # fmt: skip
    path = status_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def _written(cfg: RingexConfig, state: str) -> None:
    """The status file of ``state``: "never" (none), "stopped" (a clean stop), "killed" (a
    supervisor gone while running, its processes with it)."""
    gone = [_process(n, _gone_pid(), 1) for n in ("router", "matcher-m1", "gateway-gw1")]
    if state == "stopped":
        _status_file(cfg, "stopped", _gone_pid(), gone)
    elif state == "killed":
        _status_file(cfg, "running", _gone_pid(), gone)


STATES = ["never", "stopped", "killed"]


@pytest.mark.parametrize("state", STATES)
def test_checked_status_json_of_an_instance_not_running(
    state: str, idle_cfg: RingexConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    """``status --json`` of an instance never started, stopped, or whose supervisor was
    killed: exit 0; exactly Operate's keys; ``state: stopped``, ``serves_clients: false``;
    every process down, not ready, uptime 0; a killed supervisor named in ``reason``."""
    claim("`status --json` holds the `instance`, its `profile`, `state` and `role`")
    claim("and `status` of a stopped one, are 0)")
    _written(idle_cfg, state)
    code, out, err = _cli(["status", *X, "--json"], capsys)
    doc = json.loads(out)
    assert (code, err) == (0, "") and set(doc) == STATUS_KEYS
    assert doc["state"] == "stopped" and doc["serves_clients"] is False
    for p in doc["processes"]:
        assert set(p) == PROCESS_KEYS
        assert (p["alive"], p["ready"], p["uptime_s"]) == (False, False, 0.0)
    assert ("ended while running" in doc["reason"]) == (state == "killed")
    code, _, err = _cli(["status", *X, "--wait-ready", "--timeout", "0"], capsys)
    assert code == 1 and "not running" in _one_line(err)


@pytest.mark.parametrize("state", STATES)
def test_status_text_of_an_instance_not_running_says_its_endpoints_serve_no_client(
    state: str, idle_cfg: RingexConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    """``status`` (text) of an instance never started, stopped, or whose supervisor was
    killed. Expected: its endpoints under a line saying no client is served now (as a
    standby's are headed "a standby serves no client"), as ``--json``'s ``serves_clients:
    false`` says. Was (fixed): "fix gw1  0.0.0.0:9878 CompID RINGEX" and the REST lines, plain, as
    while it runs."""
    _written(idle_cfg, state)
    code, out, _ = _cli(["status", *X], capsys)
    assert code == 0 and out.splitlines()[0].endswith(": stopped (primary)")
    lines = out.splitlines()
    first = next(i for i, line in enumerate(lines) if line.strip().startswith("fix gw1"))
    assert any("serve" in line for line in lines[:first]), out


def test_status_of_a_running_instance_whose_gateways_are_down_serves_no_client(
    idle_cfg: RingexConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    """A running instance (its supervisor this live test process) whose router and matcher
    are up and both gateways' pids gone. Expected: ``serves_clients: false`` (no FIX or REST
    endpoint answers). Was (fixed): ``serves_clients: true``, the gateways shown down beside it."""
    me = process_start(os.getpid())
    up = [_process(n, os.getpid(), me) for n in ("router", "matcher-m1")]
    down = [_process(n, _gone_pid(), 1) for n in ("gateway-gw1", "gateway-gw2")]
    _status_file(idle_cfg, "running", os.getpid(), up + down)
    code, out, _ = _cli(["status", *X, "--json"], capsys)
    doc = json.loads(out)
    assert code == 0 and doc["state"] == "running"
    assert [p["alive"] for p in doc["processes"]] == [True, True, False, False]
    assert doc["serves_clients"] is False


# -- a real instance, its supervisor killed ------------------------------------------------------


def test_checked_a_real_instance_running_then_its_supervisor_killed(
    instance: str, tmp_path: Path
) -> None:
    """``run --detach`` of a small exchange (router, matcher, FIX gateway); ``status --json``
    says running, ``serves_clients: true``, Operate's keys. SIGKILL to the supervisor: its
    processes die with it; ``status`` exit 0 "stopped" naming the supervisor that ended while
    running, ``--json`` ``serves_clients: false``; ``deposit`` and ``halt`` exit 1 "not
    running" (Operate: "refuse an instance whose rings only a killed supervisor left");
    ``stop`` exit 0; ``shm rm --stale --instance`` removes the rings it left."""
    claim("The\nadmin commands refuse an instance whose rings only a killed supervisor left")
    profile = exchange_profile(tmp_path / "p.toml", instance, var_dir=str(tmp_path / "var"))
    conf = ["--config", str(profile)]
    started = ringex("run", *conf, "--detach", "--timeout", "60")
    pids: list[int] = []
    try:
        assert started.returncode == 0, started.stderr
        shown = ringex("status", *conf, "--json")
        doc = json.loads(shown.stdout)
        assert shown.returncode == 0 and set(doc) == STATUS_KEYS
        assert doc["state"] == "running" and doc["serves_clients"] is True
        assert doc["endpoints"]["fix gw1"].endswith("CompID RINGEX")
        pids = [doc["supervisor_pid"], *(p["pid"] for p in doc["processes"])]
        os.kill(pids[0], signal.SIGKILL)
        wait_for(lambda: not any(pid_alive(p) for p in pids), timeout=60)
        text = ringex("status", *conf)
        assert text.returncode == 0 and text.stdout.splitlines()[0].endswith(": stopped (primary)")
        assert f"the supervisor (pid {pids[0]}) ended while running" in text.stdout
        after = json.loads(ringex("status", *conf, "--json").stdout)
        assert (after["state"], after["serves_clients"]) == ("stopped", False)
        for argv in (["deposit", "--account", "7", "--asset", "USD", "--amount", "1"],
                     ["halt", "BTC-USD"]):  # fmt: skip
            refused = ringex("admin", argv[0], *conf, *argv[1:])
            assert refused.returncode == 1 and "is not running" in _one_line(refused.stderr)
        assert ringex("stop", *conf, "--timeout", "60").returncode == 0
        assert list_segments(instance)  # the rings a killed supervisor leaves
        cleared = ringex("shm", "rm", "--stale", "--instance", instance)
        assert cleared.returncode == 0 and list_segments(instance) == []
    finally:
        if pids and pid_alive(pids[0]):
            ringex("stop", *conf, "--timeout", "60")


def test_checked_status_of_a_config_that_does_not_load_is_usage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``status --config`` of a file with an unknown key: exit 2, one line naming it."""
    bad = tmp_path / "bad.toml"
    bad.write_text('instance = "rv203"\nbogus = 1\n')
    code, _, err = _cli(["status", "--config", str(bad)], capsys)
    assert code == 2 and "bogus" in _one_line(err)
