"""Review 127, continued (convention, findings: ``test_review127_tools_docstrings.py``):
``procs/admin/*`` on the test's own admin rings (nobody answering, or a router and a matcher
stepped in a thread); ``systemd_units.py``, ``run_demo.py``, ``market_maker.py``."""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest

from config import load_profile
from config.schema import RingexConfig
from procs.admin import add_user as add_user_module
from procs.admin import client as client_module
from procs.admin import commands, users
from procs.admin.client import AdminBusyError, AdminClient, AdminError, to_minor_units
from procs.common.apikeys import ApiKeyStore
from procs.common.records import AccountReply, AdminCommand, MassCancel, Transfer, WatchBalances
from procs.common.result_codes import ResultCode
from procs.common.run_files import instance_lock
from procs.common.topology import apikeys_path, snapshot_dir, users_path
from procs.common.types import AdminAction
from procs.common.users import UserStore
from procs.supervisor.main import Supervisor
from procs.supervisor.plan import plan
from shm import ShmError
from shm.inspect import list_segments
from tests.readme_text import ROOT
from tests.scripts_loader import load_script
from tests.unit.readme_operate_claims import fixture_stopped  # noqa: F401  (``stopped``)
from tests.unit.router.test_router import Exchange, config
from tests.unit.supervisor.test_systemd_units import lines, option, props
from tests.unit.test_market_maker import BTC
from tests.unit.test_review105_cli import PARSER
from tests.unit.test_review127_tools_docstrings import (
    dead_rings,
    helps,
    ringex,
    said,
)
from tests.unit.test_review_admin_bugs import _published, _Pump, _use_config

units = load_script("systemd_units", "rv127")
demo = load_script("run_demo", "rv127")
mm = load_script("market_maker", "rv127")


class _ParsedError(Exception):
    """Raised in place of ``parse_args``: the parser a script's ``main`` built."""


def parser_of(main: Callable[..., object], *args: object) -> argparse.ArgumentParser:
    """The parser ``main(*args)`` builds, stopped at its ``parse_args``."""

    def stop(self: argparse.ArgumentParser, *_: object, **__: object) -> None:
        raise _ParsedError(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(argparse.ArgumentParser, "parse_args", stop)
        with pytest.raises(_ParsedError) as parsed:
            main(*args)
    return parsed.value.args[0]  # type: ignore[no-any-return]


def _cfg(config: Path) -> RingexConfig:
    return load_profile(str(config))


def test_amounts_are_decimals_in_the_assets_precision() -> None:
    """client.py to_minor_units: "a precision the asset does not have is refused, naming
    both"; _AMOUNT: "``Decimal`` alone would also take "1_000" and any script's digits";
    "zero, however written"; "1.50 is 1.5"; MAX_UNITS: "signed 64-bit integers"."""
    said("a precision the asset does not have is refused, naming both", to_minor_units)
    said('would also take "1_000" and any script\'s digits', client_module)
    said("1.50 is 1.5", to_minor_units)
    cfg = RingexConfig()  # USD: 6 decimals, id 1
    assert to_minor_units(cfg, "USD", "1.500000000") == (1, 1_500_000)
    assert to_minor_units(cfg, "USD", "-0.000e5") == (1, 0)
    with pytest.raises(AdminError, match=r"amount 1\.0000001 has more than USD's 6 decimal places"):
        to_minor_units(cfg, "USD", "1.0000001")
    for typed in ("1_000", "\u0661\u0660", "Infinity", "0x10"):
        with pytest.raises(AdminError, match="is not a decimal number"):
            to_minor_units(cfg, "USD", typed)
    assert client_module.MAX_UNITS == 2**63 - 1
    assert to_minor_units(cfg, "USD", "9223372036854.775807")[1] == 2**63 - 1
    with pytest.raises(AdminError, match="beyond the limit of 9223372036854775807"):
        to_minor_units(cfg, "USD", "9223372036854.775808")


def test_admin_clients_take_turns_on_the_lock(stopped: Path, admin_rings: str) -> None:
    """client.py: "clients take turns on a lock (``var/<instance>/run/admin.lock``, an
    ``flock``"; _take_turn: "(0: one try)"; AdminBusyError: "Another admin client held the
    admin ring for as long as this one would wait"; close: "Give up both roles"."""
    said("clients take turns on a lock (``var/<instance>/run/admin.lock``, an ``flock``",
         client_module)  # fmt: skip
    said("(0: one try)", client_module._take_turn)
    said("held the admin ring for as long as this one would wait", AdminBusyError)
    cfg = _cfg(stopped)
    first = AdminClient(cfg)
    lock = Path(cfg.var_dir, cfg.instance, "run", "admin.lock")
    with pytest.raises(AdminBusyError, match=rf"\(pid {os.getpid()}, {lock}\).*within 0 s"):
        AdminClient(cfg, wait_s=0)
    first.close()
    AdminClient(cfg, wait_s=0).close()


def test_an_admin_client_of_an_instance_not_running_is_a_shm_error(stopped: Path) -> None:
    """client.py AdminClient: "``ShmError``: the instance is not running": no rings, or "a
    dead instance's rings, not removed yet"."""
    said("``ShmError``: the instance is not running", AdminClient.__init__)
    said("a dead instance's rings, not removed yet", AdminClient.__init__)
    with pytest.raises(ShmError):
        AdminClient(_cfg(stopped))
    dead_rings(stopped)
    with pytest.raises(ShmError, match="every process it names is gone"):
        AdminClient(_cfg(stopped))


def test_a_full_admin_ring_times_out_it_does_not_hang(stopped: Path, admin_rings: str) -> None:
    """client.py _send: "a router that is down leaves the ring full: the call times out, it
    does not hang"; end_session: "Waits at most ``timeout_s`` for room in the ring (0: one
    try, for a caller that must not block)"."""
    said("the call times out, it does not hang", AdminClient._send)
    said("(0: one try, for a caller that must not block)", AdminClient.end_session)
    client = AdminClient(_cfg(stopped))
    try:
        for _ in range(64):
            client.end_session(timeout_s=0)
        with pytest.raises(AdminError, match="stayed full for 0 s: is the router running"):
            client.end_session(timeout_s=0)
    finally:
        client.close()


def test_symbol_commands_are_admin_commands_symbol_0_every_matcher(
    stopped: Path, admin_rings: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """client.py: "Halt, resume and end of session are ``AdminCommand``s the router sequences
    and routes to the symbol's matcher (symbol 0: every matcher)"; snapshot: "or for every
    matcher (None)"; help: halt "halt trading in a symbol", snapshot's symbol "only its
    matcher's (default: every matcher)"; run_admin prints each "sent"."""
    said("(symbol 0: every matcher)", client_module)
    said("halt trading in a symbol", helps(PARSER, "admin", "halt"))
    said(
        "only its matcher's (default: every matcher)", helps(PARSER, "admin", "snapshot", "symbol")
    )
    said(
        "only this symbol (default: every symbol)", helps(PARSER, "admin", "end-session", "symbol")
    )
    base = ["--config", str(stopped)]
    for argv in (["halt", "ETH-USD"], ["resume", "BTC-USD"], ["end-session"], ["snapshot"]):
        assert ringex("admin", *argv, *base) == 0
    sent = [(r.action, r.symbol) for r in _published(admin_rings) if isinstance(r, AdminCommand)]
    assert sent == [(AdminAction.HALT, 2), (AdminAction.RESUME, 1),
                    (AdminAction.END_OF_SESSION, 0), (AdminAction.SNAPSHOT, 0)]  # fmt: skip
    assert capsys.readouterr().out.splitlines() == [
        "halt ETH-USD: sent", "resume BTC-USD: sent",
        "end-session every symbol: sent (DAY orders expire)",
        f"snapshot: sent (every matcher writes one, {snapshot_dir(_cfg(stopped), '*')})",
    ]  # fmt: skip


def test_unanswered_transfers_balances_and_cancels_say_what_may_still_happen(
    stopped: Path, admin_rings: str
) -> None:
    """client.py transfer: "default: a fresh one, said on a timeout so the retry can use it";
    balances: "A watch with the shortest lease, dropped once its snapshot is here";
    cancel_all: "(0: of every account) on ``symbol`` (None: every symbol), in one
    ``MassCancel``"; ``AdminError`` "when it refuses or does not answer"."""
    said("said on a timeout so the retry can use it", AdminClient.transfer)
    said("A watch with the shortest lease, dropped once its snapshot is here", AdminClient.balances)
    said("(None: every symbol), in one ``MassCancel``", AdminClient.cancel_all)
    client = AdminClient(_cfg(stopped))
    try:
        with pytest.raises(AdminError, match=r"within 0.1 s .*retry with --key (\d+)") as late:
            client.transfer(7, "USD", "1.5", timeout_s=0.1)
        with pytest.raises(AdminError, match=r"no answer from the router within 0\.1 s"):
            client.balances(7, timeout_s=0.1)
        with pytest.raises(AdminError, match="the cancel may still be applied"):
            client.cancel_all(0, None, timeout_s=0.1)
    finally:
        client.close()
    transfer, watch, drop, cancel = _published(admin_rings)
    assert isinstance(transfer, Transfer) and f"--key {transfer.key} " in str(late.value)
    assert (transfer.account, transfer.amount) == (7, 1_500_000)
    assert isinstance(watch, WatchBalances) and isinstance(drop, WatchBalances)
    assert (watch.lease_ms, drop.lease_ms) == (1, 0)
    assert isinstance(cancel, MassCancel) and (cancel.account, cancel.symbol) == (0, 0)


@pytest.mark.parametrize(("argv", "code", "says"), [
    (["create-account", "--account", "1"], 2, "account 1 is the exchange's fee account"),
    (["deposit", "--account", "7", "--asset", "USD", "--amount", "+-5"], 2, "must be positive"),
    (["cancel-all", "--every-account", "--symbol", ""], 2, "symbol '' is not configured"),
    (["balances", "--account", "0"], 1, "account 0 is outside 1.."),
    (["withdraw", "--account", "7", "--asset", "USD", "--amount", "1e-7"], 1, "decimal places"),
    (["deposit", "--account", "7", "--asset", "USD", "--amount", "1", "--key", "0"], 1,
     "idempotency key 0 is outside"),
    (["deposit", "--account", "7", "--asset", "XYZ", "--amount", "1"], 1, "XYZ"),
])  # fmt: skip
def test_arguments_are_checked_before_anything_is_attached(
    stopped: Path, argv: list[str], code: int, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """commands.py: "Arguments are checked before anything is attached, so a typo is not an
    instance that is down"; _admin_args_refused: "2 for a symbol not configured, the fee
    account, a signed amount (usage); 1 for a value the records cannot carry"."""
    said("a typo is not an instance that is down", commands)
    said("2 for a symbol not configured, the fee account, a signed amount (usage); 1 for a "
         "value the records cannot carry", commands._admin_args_refused)  # fmt: skip
    assert commands._signed("+-5") and commands._signed("- 5") and not commands._signed("+5")
    assert ringex("admin", *argv, "--config", str(stopped)) == code
    err = capsys.readouterr().err
    assert says in err and "not running" not in err


def test_account_commands_answered_by_the_router(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """commands.py: create-account prints its seq; _free_balance: "A transfer reply's free
    balance in the asset's decimals, as ``balances`` shows it"; a refusal exits 1;
    _print_balances: "One line per asset (free, then held by open orders)"; help deposit
    "deposit a decimal amount of an asset", --amount "decimal, e.g. 1000.50"."""
    said("in the asset's decimals, as ``balances`` shows it", commands._free_balance)
    said("One line per asset (free, then held by open orders)", commands._print_balances)
    said("deposit a decimal amount of an asset", helps(PARSER, "admin", "deposit"))
    said("decimal, e.g. 1000.50", helps(PARSER, "admin", "withdraw", "--amount"))
    ex = Exchange(config(instance, tmp_path))
    _use_config(monkeypatch, ex.cfg)
    admin = ["admin", "--profile", "x"]
    try:
        with _Pump(ex):
            assert ringex(*admin[:1], "create-account", *admin[1:], "--account", "7") == 0
            assert ringex("admin", "balances", "--profile", "x", "--account", "7") == 0
            move = ["--profile", "x", "--account", "7", "--asset", "USD", "--amount"]
            assert ringex("admin", "deposit", *move, "1000.50") == 0
            assert ringex("admin", "withdraw", *move, "2000") == 1
            assert ringex("admin", "balances", "--profile", "x", "--account", "7") == 0
    finally:
        ex.stop()
    printed = capsys.readouterr()
    out = printed.out.splitlines()
    assert out[0].startswith("account 7: OK (seq ") and "balance" not in out[0]
    assert out[1] == "account 7: no balances"
    assert out[2].startswith("account 7: OK (seq ") and out[2].endswith("free balance 1000.5000")
    assert printed.err == (  # a refusal on stderr, naming the amount (review 155)
        "ringex admin: account 7: INSUFFICIENT_BALANCE: withdraw of 2000 USD refused, "
        "free balance 1000.5000, held by open orders 0.0000\n"  # (what is held: review 313)
    )
    assert out[3].split() == ["account", "7", "USD", "free", "1000.5000", "locked", "0.0000"]


def test_add_user_password_from_stdins_first_line(
    stopped: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """commands.py add-user --password-stdin help: "read the password from stdin's first
    line"; --password "its FIX password (`ps` shows it: prefer --password-stdin)"."""
    said("read the password from stdin's first line", helps(PARSER, "admin", "add-user",
                                                             "--password-stdin"))  # fmt: skip
    said("`ps` shows it: prefer --password-stdin", helps(PARSER, "admin", "add-user", "--password"))
    got: list[str] = []
    monkeypatch.setattr(commands, "add_user", lambda cfg, args, connect: got.append(args.password))
    argv = ["admin", "add-user", "--config", str(stopped), "--username", "al", "--password-stdin"]
    for stdin in ("s3cret\r\nsecond line\n", "\n"):
        monkeypatch.setattr(sys, "stdin", __import__("io").StringIO(stdin))
        ringex(*argv)
    assert got == ["s3cret"]
    assert "no password on stdin" in capsys.readouterr().err


class _Client:
    """An admin client stood in for; each call recorded with the users stored then."""

    def __init__(self, cfg: RingexConfig, exists: Sequence[int] = (), refuse: str = "") -> None:
        self.cfg, self.exists, self.refuse = cfg, set(exists), refuse
        self.calls: list[tuple[Any, ...]] = []

    def _reply(self, account: int, code: ResultCode) -> AccountReply:
        return AccountReply(5, 0, 0, 0, 0, account, 0, code, 0)

    def create_account(self, account: int) -> AccountReply:
        self.calls.append(("open", account))
        code = ResultCode.ACCOUNT_EXISTS if account in self.exists else ResultCode.OK
        self.exists.add(account)
        return self._reply(account, code)

    def transfer(self, account: int, asset: str, amount: str, key: int | None = None) -> Any:
        stored = UserStore(users_path(self.cfg)).users()
        self.calls.append(("deposit", account, asset, amount, key, len(stored)))
        refused = asset == self.refuse
        return self._reply(account, ResultCode.INSUFFICIENT_BALANCE if refused else ResultCode.OK)

    def close(self) -> None:
        self.calls.append(("close",))


def _add_user(cfg: RingexConfig, client: _Client | None, *argv: str) -> int:
    given = [] if "--password" in argv else ["--password", "pw"]  # (once: review 183)
    args = PARSER.parse_args(["admin", "add-user", "--username", "alice", *given, *argv])
    connect = cast(Callable[[], AdminClient | None], lambda: client)  # a stand-in
    return int(add_user_module.add_user(cfg, args, connect))


def test_add_user_checks_every_argument_before_anything_is_opened(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """add_user.py: "every argument is checked before anything is opened"; add_user:
    "``connect``: the admin client of the running instance (None: it is not, said)";
    _credentials_refused: "The password itself is never shown"."""
    said("every argument is checked before anything is opened", add_user_module)
    said("The password itself is never shown", add_user_module._credentials_refused)
    cfg = RingexConfig(var_dir=str(tmp_path))
    client = _Client(cfg)
    refused = [["--account", "1"], ["--account", "0"], ["--deposit", "USD"]]
    refused += [["--deposit", "USD=-1"], ["--deposit", "DOGE=1"], ["--comp-id", "a b"]]
    for argv in refused:
        assert _add_user(cfg, client, *argv) == 2
    secret = "x\x01" + "y" * 2000
    for password in (secret, secret[:3]):
        assert _add_user(cfg, client, "--password", password) == 2
    assert client.calls == [] and "yyy" not in capsys.readouterr().err
    assert _add_user(cfg, None) == 1  # not running: connect said so


def test_add_user_opens_stores_then_deposits_one_at_a_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """add_user.py: "the user is stored as soon as its account is open, then the deposits go
    in one at a time"; --account help "its account (default: the next free one)"; open_account:
    "for a default one the next that did not exist"; deposit_in_turn: "one after another
    until one is not made"; --comp-id help "(default: the username)"."""
    said("the user is stored as soon as its account is open, then the deposits go in one at a "
         "time", add_user_module)  # fmt: skip
    said("(default: the next free one)", helps(PARSER, "admin", "add-user", "--account"))
    said("for a default one the next that did not exist", add_user_module.open_account)
    said("one after another until one is not made", add_user_module.deposit_in_turn)
    said(
        "its SenderCompID (default: the username)", helps(PARSER, "admin", "add-user", "--comp-id")
    )
    cfg = RingexConfig(var_dir=str(tmp_path))
    client = _Client(cfg, exists=[100, 101], refuse="BTC")
    deposits = ["--deposit", "USD=5", "--deposit", "BTC=1", "--deposit", "ETH=2"]
    assert _add_user(cfg, client, *deposits) == 1
    assert client.calls == [("open", 100), ("open", 101), ("open", 102),
                            ("deposit", 102, "USD", "5", None, 1),
                            ("deposit", 102, "BTC", "1", None, 1), ("close",)]  # fmt: skip
    user = UserStore(users_path(cfg)).get("alice")
    assert user is not None and user.account == 102
    out = capsys.readouterr()
    assert out.out == "user alice: SenderCompID alice, account 102, deposited USD 5\n"
    assert "deposit BTC 1: INSUFFICIENT_BALANCE; not sent: ETH 2" in out.err
    assert _add_user(cfg, client) == 2  # its comp id is a user's now
    assert "comp id alice is a user already (account 102)" in capsys.readouterr().err


def test_users_lists_and_remove_user_takes_one_off(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """users.py: "``users`` lists the FIX users (comp id, account, session id; never a
    digest)"; remove_user: "1: no such user, ... or --cancel-orders for an instance that is
    not running: then nothing is removed"; "its API keys are revoked"; "Its account and
    balances stay"; open_users: "one line naming the file and its fault"."""
    said("``users`` lists the FIX users (comp id, account, session id; never a digest)", users)
    said("or --cancel-orders for an instance that is not running: then nothing is removed",
         users.remove_user)  # fmt: skip
    said("its API keys are revoked", users)
    said("one line naming the file and its fault", users.open_users)
    cfg = RingexConfig(var_dir=str(tmp_path))
    user = UserStore(users_path(cfg)).add("BOB", "pw", 7, n=2)
    ApiKeyStore(apikeys_path(cfg)).create(user, ["trade"])
    assert users.list_users(cfg, as_json=True) == 0
    (bob,) = json.loads(capsys.readouterr().out)
    assert bob["compId"] == "BOB" and (bob["account"], bob["session"]) == (7, 1)

    def remove(comp_id: str, *flags: str) -> int:
        args = PARSER.parse_args(["admin", "remove-user", "--comp-id", comp_id, *flags])
        return users.remove_user(cfg, args, lambda: None)

    assert remove("ALICE") == 1 and remove("BOB", "--cancel-orders") == 1
    assert "no user 'ALICE' (users: BOB)" in capsys.readouterr().err
    assert remove("BOB") == 0
    assert capsys.readouterr().out == (
        "user BOB removed (account 7 stays); 1 API key(s) revoked; its sessions are logged out\n"
    )
    users_path(cfg).write_text("[")
    assert users.list_users(cfg, as_json=False) == 1
    assert f"users file {users_path(cfg)} cannot be read" in capsys.readouterr().err


class _Shell(units.Shell):  # type: ignore[misc,name-defined]
    """systemctl, systemd-run stood in for: each command recorded with the lock and rings then."""

    def __init__(
        self,
        cfg: RingexConfig,
        fails: Callable[[str], bool] = lambda cmd: False,
        active: bool = False,
    ) -> None:
        super().__init__(dry_run=False)
        self.cfg, self.fails, self.active = cfg, fails, active
        self.ran: list[tuple[str, bool, int]] = []

    def __call__(self, cmd: Sequence[str], *, quiet: bool = False) -> int:
        try:
            with instance_lock(self.cfg):
                locked = False
        except Exception:
            locked = True
        self.ran.append((shlex.join(cmd), locked, len(list_segments(self.cfg.instance))))
        if "is-active" in cmd:
            return 0 if self.active else 3
        return 5 if self.fails(shlex.join(cmd)) else 0


def test_start_creates_the_rings_under_the_lock_then_the_units_in_plan_order(
    stopped: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """systemd_units.py: "the instance's rings are created first, by the supervisor's own
    code", "the whole start holds the instance's lock", "each process of ``plan(cfg)``, in its
    order, becomes ``ringex-<instance>-<name>.service`` in ``ringex-<instance>.slice``"; logs
    "(``journalctl _SYSTEMD_SLICE=<the instance's slice>``)"; no metrics served."""
    said("the instance's rings are created first, by the supervisor's own code", units)
    said("the whole start holds the instance's lock (``run_files.instance_lock``)", units)
    said("in its order, becomes ``ringex-<instance>-<name>.service`` in", units)
    cfg = _cfg(stopped)
    sh = _Shell(cfg)
    assert units.start(cfg, units.Options(str(stopped), Path.cwd()), sh) == 0
    runs = [(shlex.split(c), locked, rings) for c, locked, rings in sh.ran if "systemd-run" in c]
    assert [option(c, "unit") for c, _, _ in runs] == [units.unit_name(cfg, s) for s in plan(cfg)]
    assert all(locked and rings > 0 for _, locked, rings in runs)
    assert sh.ran[0][0].startswith("systemctl is-active") and sh.ran[0][2] == 0
    out = capsys.readouterr().out
    assert f"logs: journalctl _SYSTEMD_SLICE=ringex-{cfg.instance}.slice -f" in out
    assert "the Prometheus metrics (supervisor.metrics_port 0) are not served" in out


def test_start_refusals_leave_nothing_behind(
    stopped: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """systemd_units.start: "1 where it is refused (it runs, or starts under a supervisor"; a
    ``--uid`` typo: "before anything is created: a typo leaves nothing behind"; a unit that
    does not start: "stopping what started"."""
    said("1 where it is refused (it runs, or starts under a supervisor", units.start)
    said("before anything is created: a typo leaves nothing behind", units)
    cfg = _cfg(stopped)
    opts = units.Options(str(stopped), Path.cwd())
    assert units.start(cfg, opts, _Shell(cfg, active=True)) == 1
    with instance_lock(cfg):
        assert units.start(cfg, opts, _Shell(cfg)) == 1
    typo = units.Options(str(stopped), Path.cwd(), uid="no-such-user-rv127")
    assert units.start(cfg, typo, _Shell(cfg)) == 1
    err = capsys.readouterr().err
    assert f"is active: instance {cfg.instance} runs" in err and "holds" in err
    assert "no user 'no-such-user-rv127' on this host" in err and not list_segments(cfg.instance)
    router = units.unit_name(cfg, plan(cfg)[1])
    failing = _Shell(cfg, lambda cmd: cmd.startswith("systemd-run") and router in cmd)
    assert units.start(cfg, opts, failing) == 1
    assert f"{router} did not start; see systemctl status {router}" in capsys.readouterr().err
    assert any(c.startswith("systemctl stop") for c, _, _ in failing.ran)


def test_stop_removes_the_segments_no_live_process_holds_and_names_units_not_stopped(
    stopped: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """systemd_units.stop: "Stop the units in order and remove the segments no live process
    holds; 1 (naming them) when a unit did not stop"."""
    said("remove the segments no live process holds; 1 (naming them) when a unit did not stop",
         units.stop)  # fmt: skip
    cfg = _cfg(stopped)
    dead_rings(stopped)
    router = units.unit_name(cfg, plan(cfg)[1])
    sh = _Shell(cfg, lambda cmd: cmd.endswith(router))
    assert units.stop(cfg, units.Options(str(stopped), Path.cwd()), sh) == 1
    err = capsys.readouterr().err
    assert (
        f"units not stopped: ['{router}']; segments still held by live processes (kept): none"
        in err
    )
    assert list_segments(cfg.instance) == []


def test_the_units_properties(stopped: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """systemd_units.py: "niced with ``Nice=``"; STOP_TIMEOUT_S "As the supervisor"; uid "the
    system manager runs the processes as this user"; watchdog_s "for the database writer at
    least twice ``database.retry_max_s``"; exec_arg "a ``$`` in a path ... is written ``$$``";
    passed_environment "by name"; _span "never with an exponent"; slice_name "``\\x2d``"."""
    said("As the supervisor: a process gets this long to stop cleanly", units)
    said("for the database writer at least twice ``database.retry_max_s``", units.watchdog_s)
    said("systemd-run takes the value from its own environment", units.passed_environment)
    base = _cfg(stopped)
    slow = msgspec.structs.replace(base.database, retry_max_s=40.5)
    cfg = msgspec.structs.replace(base, instance="prod-a", database=slow)
    monkeypatch.setenv("PGPASSWORD", "hush")
    opts = units.Options("p", Path("/w"), python="/v$x/python", uid="ringex")
    dbwriter = next(s for s in plan(cfg) if s.name == "dbwriter")
    cmd = units.run_command(cfg, dbwriter, opts)
    p = props(cmd)
    assert (p["Nice"], p["WatchdogSec"], p["KillMode"]) == ("10", "81s", "mixed")
    assert p["TimeoutStopSec"] == f"{Supervisor.STOP_GRACE_S:g}s"
    assert option(cmd, "uid") == "ringex" and option(cmd, "slice") == "ringex-prod\\x2da.slice"
    assert "--setenv=PGPASSWORD" in cmd and "hush" not in " ".join(cmd)
    assert cmd[cmd.index("--") + 1] == "/v$$x/python"
    user = units.run_command(cfg, dbwriter, units.Options("p", Path("/w"), user=True, uid="x"))
    assert option(user, "uid") is None and user[1] == "--user"
    assert [units._span(v) for v in (1e6, float("inf"), 1.5)] == ["1000000s", "infinity", "1500ms"]
    assert units._span(0.0001) == "1ms"  # not 0ms, which systemd reads as no timeout at all


def test_usage_dry_run_and_refusals(
    stopped: Path, admin_rings: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """systemd_units.py: "``--dry-run`` prints the commands anywhere without running them"
    (help "print the commands, run nothing"); _seconds: "whole seconds, 0 or more"; a config
    that does not load: "one line, exit 2"."""
    said("``--dry-run`` prints the commands anywhere without running them", units)
    parser = parser_of(units.main, ["start"])
    said("print the commands, run nothing", helps(parser, "--dry-run"))
    said("WatchdogSec (0: off)", helps(parser, "--watchdog-sec"))
    for watchdog in ("-5", "1.5"):
        with pytest.raises(SystemExit, match="2"):
            units.main(["start", "--watchdog-sec", watchdog])
    for action in ("start", "stop"):
        assert units.main([action, "--profile", str(stopped), "--dry-run"]) == 0
    assert len(list_segments(admin_rings)) == 2  # the stop removed none
    assert lines(capsys.readouterr().out, "systemd-run")
    assert units.main(["stop", "--profile", "/nonexistent/p.toml"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    for spec in plan(load_profile(str(ROOT / "config/profiles/dev.toml"))):
        assert spec.module in units.NOTIFYING  # each sends READY=1 (sd_notify)


def test_run_demo_stops_the_market_maker_then_the_exchange(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run_demo.py: "It trades as two users of its own (MM1, MM2), never as the printed ones";
    "Ctrl-C stops the exchange cleanly (`ringex stop`)"; "It cancels its orders before the
    exchange stops" (stop_market_maker: "SIGTERM: it cancels its orders")."""
    said("It trades as two users of its own (MM1, MM2), never as the printed ones", demo)
    said("It cancels its orders before the exchange stops", demo)
    assert {u[0] for u in demo.MARKET_MAKER_USERS} == {"MM1", "MM2"}
    assert not {u[2] for u in demo.DEMO_USERS} & {u[2] for u in demo.MARKET_MAKER_USERS}
    done: list[str] = []
    bot = type("Bot", (), {"poll": lambda s: None, "terminate": lambda s: done.append("TERM"),
                           "wait": lambda s, t=None: 0})()  # fmt: skip
    steps = {"start_exchange": lambda p: 0, "add_users": lambda cfg, us: {u[0]: 1 for u in us},
             "start_market_maker": lambda *_: bot, "ringex": lambda *a: done.append(a[0]),
             "ignore_interrupts": lambda: None}  # fmt: skip
    for name, stand_in in steps.items():
        monkeypatch.setattr(demo, name, stand_in)
    monkeypatch.setattr(demo.signal, "signal", lambda *a: None)
    monkeypatch.setattr(demo.time, "sleep", lambda s: (_ for _ in ()).throw(KeyboardInterrupt))
    config = tmp_path / "rest.toml"
    config.write_text(
        f'var_dir = "{tmp_path}"\n[[gateways]]\nname = "g"\nid = 1\n[gateways.rest]\n'
    )
    monkeypatch.setattr(sys, "argv", ["run_demo", "--profile", str(config), "--market-maker"])
    demo.main()
    assert done == ["TERM", "stop"]
    said("run the demo market maker (MM1, MM2)", helps(parser_of(demo.main), "--market-maker"))


def test_the_market_makers_quoting(monkeypatch: pytest.MonkeyPatch) -> None:
    """market_maker.py: "rests ``--levels`` bids and asks per symbol"; taker_order: "at
    +max_inventory it buys with probability 0.1, at -max_inventory 0.9"; "about 5 to 15
    orders a second" (a cycle every 0.4 s, its placements and the taker's IOCs)."""
    said("at +max_inventory it buys with probability 0.1, at -max_inventory 0.9", mm.taker_order)
    said("a cycle every ``--interval`` seconds: about 5 to 15 orders a second", mm)
    rng = random.Random(1)
    grid = mm.Grid.around(BTC, 3_000_000, levels=4)
    walk = mm.MidWalk(3_000_000, BTC.tick, rng, vol_ticks=grid.step / BTC.tick)
    wanted = mm.ladder(grid, walk.mid)
    assert [sum(s == side for s, _ in wanted) for side in (mm.BUY, mm.SELL)] == [4, 4]
    buys = [mm.taker_order(wanted, grid, k, 10, rng)[0] == mm.BUY for k in (10, -10) * 2000]
    assert abs(sum(buys[::2]) / 2000 - 0.1) < 0.03 and abs(sum(buys[1::2]) / 2000 - 0.9) < 0.03
    resting: list[Any] = []
    sent = 0
    for n in range(400):
        cancel, place = mm.plan(mm.ladder(grid, walk.step()), resting, rng)
        resting = [o for o in resting if o.order_id not in cancel]
        resting += [mm.Resting(n * 100 + k, *p) for k, p in enumerate(place)]
        sent += len(place) + (rng.random() < 0.4)
    assert 5 <= sent / 400 / 0.4 <= 15


def test_the_market_makers_profile_says_where_the_rest_api_is(tmp_path: Path) -> None:
    """market_maker.py --profile help: "where the REST API is (or --url)" (default_url; review
    127: an IPv6 host was written unbracketed)."""
    said("where the REST API is (or --url)", helps(parser_of(mm.main, []), "--profile"))
    config = tmp_path / "v6.toml"
    config.write_text('[[gateways]]\nname = "g"\nid = 1\n[gateways.rest]\nhost = "::1"\n')
    assert mm.default_url(str(config)) == "http://[::1]:8080"
