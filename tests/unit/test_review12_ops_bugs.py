"""Hostile review of the day's operator-facing changes: `ringex admin balances`, `cancel-all`,
`users` and `remove-user`, a gateway logging out a removed user's sessions, the config
loader's BASE-QUOTE pairing and users.json written private and durable. Seven tests failed on
the code as reviewed and pass since their fixes; the others pin what held under attack."""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from config.loader import load_profile
from config.schema import RiskConfig
from procs.admin.client import AdminClient
from procs.common.records import AccountReply
from procs.common.result_codes import ResultCode
from procs.common.topology import users_path
from procs.common.types import Side
from procs.common.users import UserStore
from procs.gateway.session_interface import State
from procs.replica.files import SHIPPABLE
from tests.unit.gateway.test_review_fix_session_bugs import (
    _close_stores,  # noqa: F401  (autouse: the sessions' message stores are closed)
    logged_on,
    order,
    replies,
)
from tests.unit.router.test_router import Exchange, config, fund
from tests.unit.router.test_router import order as new_order
from tests.unit.test_review_admin_bugs import _cli, _Pump, _use_config

_S = 1_000_000_000


# -- a removed user's FIX sessions (procs/gateway/session.py on_timer) -------------------------


def test_a_user_removed_and_added_again_with_its_account_loses_its_old_session(
    tmp_path: Path,
) -> None:
    """procs/gateway/session.py:253-254: the timer logs a session out only when its user is
    gone or names another account. `remove-user ALICE` then `add-user ALICE --account 7`
    (README: "once removed, a comp id may be added again"; a credential rotation, run back to
    back in well under the timer's second) leaves the session that logged on with the OLD
    password ACTIVE for good, with the old session id, and the new user's logon is refused as
    "already logged on". Right: a session whose user is not the one it logged on as (another
    salt/digest or session id: compare ``user != self.user``) is logged out as removed."""
    now = time.time_ns()
    session, _ = logged_on(tmp_path, now)
    store = UserStore(tmp_path / "users.json")
    store.add("BOB", "bob-pw", 8, n=16)
    assert store.remove("ALICE")
    store.add("ALICE", "a-new-password", 7, n=16)  # its old password no longer opens it
    session.on_timer(now + _S)
    assert session.state is not State.ACTIVE, "the old credential's session is still trading"


def test_a_session_logged_out_for_removal_hands_on_no_more_orders(tmp_path: Path) -> None:
    """procs/gateway/session.py:253-256 and ``logout``: the removal sends a Logout and moves
    to LOGGING_OUT, in which ``_active`` still hands application messages to the gateway's
    order entry, so a client that ignores the Logout keeps trading as a removed user until
    ``logout_timeout_s`` (2 s) closes it. (A gateway's own shutdown closes intake first; a
    removal does not.) Right: once a session is logged out because its user was removed, an
    order it sends is not handed on (refused, or the connection closed at once)."""
    now = time.time_ns()
    session, app = logged_on(tmp_path, now)
    UserStore(tmp_path / "users.json").remove("ALICE")
    session.on_timer(now + _S)
    assert [m.msg_type for m in replies(session)] == [b"5"]  # the removal's Logout
    session.data_received(order(2, now + _S + 1), now + _S + 1)
    assert app.messages == [], "a removed user's NewOrderSingle reached the order entry"


def test_a_damaged_users_file_does_not_end_the_gateways_timers(tmp_path: Path) -> None:
    """procs/gateway/session.py:253 calls ``users.get`` at every timer pass, and
    procs/common/users.py:71 raises on a users file it cannot decode (a hand edit; or one it
    cannot read: since today's users.json is 0600, one written by `sudo ringex admin ...`
    is unreadable to a gateway run as another user). The exception leaves ``_timers``
    (procs/gateway/server.py:447), which ``run`` treats as a failed task: the gateway stops,
    logging every session out, and its restart fails the same way. Before today a running
    gateway only refused logons then. Right: the timer keeps the last users it read (log the
    error naming the file) and the session goes on."""
    now = time.time_ns()
    session, _ = logged_on(tmp_path, now)
    (tmp_path / "users.json").write_text('[{"comp_id": "ALICE"')  # a hand edit, cut short
    try:
        session.on_timer(now + _S)
    except (msgspec.DecodeError, OSError) as exc:
        pytest.fail(f"the session timer raised {exc!r}: the gateway's timers task ends")
    assert session.state is State.ACTIVE


# -- users and remove-user (procs/admin/users.py) ----------------------------------------------


def test_users_and_remove_user_name_a_damaged_users_file_in_one_line(
    instance: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """procs/admin/users.py:27 and :45 open the store unguarded: a users.json that does not
    decode is a msgspec traceback ("Input data was truncated") that names no file. Right
    (README's rules, STYLE 12): one line on stderr naming the file and what is wrong, exit 1."""
    cfg = config(instance, tmp_path)
    _use_config(monkeypatch, cfg)
    path = users_path(cfg)
    UserStore(path).add("ALICE", "pw", 7, n=2)
    path.write_text('[{"comp_id": "ALICE"')
    for argv in (["users"], ["remove-user", "--comp-id", "ALICE"]):
        try:
            code = _cli(["admin", *argv, "--profile", "x"])
        except msgspec.DecodeError as exc:
            pytest.fail(f"`ringex admin {argv[0]}`: a traceback, {exc!r}, naming no file")
        assert code == 1 and str(path) in capsys.readouterr().err


def test_remove_user_cancel_orders_on_a_stopped_instance_says_the_orders_stay(
    instance: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """procs/admin/users.py:52-60: the user is removed (and "its sessions are logged out"
    printed) before the admin rings are tried; with the instance down, all that follows is
    "instance ... is not running", exit 1. Nothing says the open orders were NOT cancelled,
    and running the same command again (what an operator does once it runs) is "no user" exit
    1: remove-user can no longer cancel them and nothing names the account. Right: either
    try the admin rings first and remove nothing when --cancel-orders cannot be sent, or say
    "account 7's open orders were not cancelled: `ringex admin cancel-all --account 7`"."""
    cfg = config(instance, tmp_path)  # no rings: the instance is not running
    _use_config(monkeypatch, cfg)
    UserStore(users_path(cfg)).add("SEVEN", "pw", 7, n=2)
    argv = ["admin", "remove-user", "--profile", "x", "--comp-id", "SEVEN", "--cancel-orders"]
    assert _cli(argv) == 1
    err = capsys.readouterr().err
    still_there = UserStore(users_path(cfg)).get("SEVEN") is not None
    assert still_there or "cancel-all --account 7" in err, err


def test_remove_user_of_a_stopped_instance_without_cancel_orders_is_done(
    instance: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Holds: the users file needs no running exchange; the other user stays."""
    cfg = config(instance, tmp_path)
    _use_config(monkeypatch, cfg)
    store = UserStore(users_path(cfg))
    store.add("SEVEN", "pw", 7, n=2)
    store.add("EIGHT", "pw", 8, n=2)
    assert _cli(["admin", "remove-user", "--profile", "x", "--comp-id", "SEVEN"]) == 0
    assert "user SEVEN removed (account 7 stays)" in capsys.readouterr().out
    assert [u.comp_id for u in UserStore(users_path(cfg)).users()] == ["EIGHT"]


# -- balances and cancel-all through the router -------------------------------------------------


@pytest.fixture
def slow(instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Exchange]:
    """An exchange whose accounts may send one command a second (risk.max_commands_per_s)."""
    cfg = config(instance, tmp_path)
    risk = RiskConfig(max_open_orders=50, max_commands_per_s=1, fee_account=99)
    exchange = Exchange(msgspec.structs.replace(cfg, risk=risk))
    _use_config(monkeypatch, exchange.cfg)
    fund(exchange, 7, usd=10_000_000, btc=0)  # account commands draw on no rate
    yield exchange
    exchange.stop()


class _Runaway(_Pump):
    """The router and matcher stepped as in ``_Pump``, while account 7's algorithm, gone
    wrong, sends a buy on gateway 1 at every step (what the kill switch is for)."""

    def __init__(self, ex: Exchange) -> None:
        super().__init__(ex)
        self.refused = 0
        self._thread = threading.Thread(target=self._flood, daemon=True)

    def __enter__(self) -> _Runaway:
        self._thread.start()
        return self

    def _flood(self) -> None:
        ex, ref = self.ex, 10_000
        while not self._stop.is_set():
            ref += 1
            ex.gateways[1].try_publish(new_order(ref, 7, Side.BUY, 100, 1))
            ex.router.step(timeout_s=0.001)
            ex.matcher.step(timeout_s=0.001)
            for tap in ex.taps:
                tap.read(4096)
            for reply in ex.replies_of(1):
                if getattr(reply, "code", None) == ResultCode.ACCOUNT_RATE_LIMITED:
                    self.refused += 1


def test_the_kill_switch_is_not_refused_by_the_rate_of_the_account_it_stops(
    slow: Exchange, capsys: pytest.CaptureFixture[str]
) -> None:
    """procs/core/sequencer.py:163-172: a ``MassCancel`` draws on its account's command
    bucket whoever sends it, so `ringex admin cancel-all --account 7` (README: "a kill
    switch") is ACCOUNT_RATE_LIMITED, exit 1, for exactly as long as account 7 floods: the
    case it exists for. (README's "through the router's checks" covers the symbol check;
    the operator's stop must not queue behind the runaway it stops.) Right: a mass cancel
    from the admin gateway (ADMIN_GATEWAY) is not charged to the account's bucket; and a
    refusal's message names the account ("cancel-all refused: ACCOUNT_RATE_LIMITED" does
    not)."""
    with _Runaway(slow) as runaway:
        deadline = time.monotonic() + 5
        while runaway.refused < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert runaway.refused >= 3  # the account is over its rate: the runaway is on
        code = _cli(["admin", "cancel-all", "--profile", "x", "--account", "7"])
    assert code == 0, capsys.readouterr().err


def test_balances_leave_no_watch_behind_and_the_next_command_reads_its_own_reply(
    slow: Exchange,
) -> None:
    """Holds: the 1 ms watch is dropped once its snapshot is read (no push for account 7
    then waits in the admin reply ring), and a deposit right after is answered with its own
    ``AccountReply``, the balance it made."""
    with _Pump(slow):
        client = AdminClient(slow.cfg)
        try:
            balances = client.balances(7, timeout_s=5)
            reply = client.transfer(7, "USD", "1", timeout_s=5)
        finally:
            client.close()
        deadline = time.monotonic() + 5  # the drop (or the lease) is taken by the router
        while slow.router.watches.watchers(7) and time.monotonic() < deadline:
            time.sleep(0.01)
    assert [(b.asset, b.free) for b in balances] == [(1, 10_000_000)]
    assert isinstance(reply, AccountReply) and reply.code == ResultCode.OK
    assert reply.balance == 10_010_000
    assert slow.router.watches.watchers(7) == ()


# -- the config loader's BASE-QUOTE pairing (config/loader.py _pair_assets) ---------------------

_SYMBOL = """
[[assets]]
name = "USD"
id = 1
decimals = 6
[[assets]]
name = "BTC"
id = 2
decimals = 8
[[assets]]
name = "SOL"
id = 4
decimals = 6
[[symbols]]
name = "%s"
id = 3
%s
[[matchers]]
name = "m1"
symbols = ["%s"]
"""


def _load(tmp_path: Path, name: str, extra: str = "") -> tuple[str, str]:
    path = tmp_path / "symbols.toml"
    path.write_text(_SYMBOL % (name, extra, name))
    sym = load_profile(str(path)).symbol(name)
    return sym.base, sym.quote


def test_a_base_quote_symbol_that_sets_only_its_quote_does_not_trade_btc(tmp_path: Path) -> None:
    """config/loader.py:52: a symbol that sets either key is skipped, so "SOL-USD" with only
    `quote = "USD"` loads as BTC against USD: the schema's silent default the change set out
    to end ("Never the schema's defaults (BTC and USD) in silence"), under a name that says
    SOL. Right: the unset one comes from a BASE-QUOTE name (SOL), or the symbol is refused,
    naming it (README: "a name that is not BASE-QUOTE must set both")."""
    try:
        pair = _load(tmp_path, "SOL-USD", 'quote = "USD"')
    except ValueError:
        return  # refused: also right
    assert pair == ("SOL", "USD")


def test_names_that_pair_no_configured_assets_are_refused_naming_them(tmp_path: Path) -> None:
    """Holds: a name of three parts, another separator or an asset not configured is refused
    with the symbol (and the asset) named; BASE-QUOTE pairs."""
    assert _load(tmp_path, "SOL-USD") == ("SOL", "USD")
    for name, said in (("SOL-USD-PERP", "'SOL-USD-PERP' does not set both"),
                       ("SOL/USD", "'SOL/USD' does not set both"),
                       ("FOO-USD", "base asset 'FOO' is not in [[assets]]")):  # fmt: skip
        with pytest.raises(ValueError, match=said.replace("[", r"\[").replace("]", r"\]")):
            _load(tmp_path, name)


# -- users.json: private and durable (procs/common/users.py, durable.py) ------------------------


def test_users_file_is_private_over_an_older_file_and_a_leftover_temp_file(tmp_path: Path) -> None:
    """Holds: a users.json written 0644 by an older version and a 0644 temp file a crash left
    (O_CREAT keeps an existing file's mode) give a 0600 users.json, at the first change
    and at a compaction; a temp file a crash left under another name is no user to a reader
    and is not shipped to a standby."""
    path = tmp_path / "gateway" / "users.json"
    path.parent.mkdir()
    path.write_bytes(b"[]")
    os.chmod(path, 0o644)
    UserStore(path).add("ALICE", "pw", 7, n=2)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    os.chmod(path, 0o644)
    mine = path.with_name("users.json.tmp")
    mine.write_bytes(b"half a file")
    os.chmod(mine, 0o644)
    crashed = path.with_suffix(".tmp.99999999")
    crashed.write_bytes(b'[{"comp_id": "GHOST"')  # cut short by the crash
    store = UserStore(path)
    store.add("BOB", "pw", 8, n=2)
    store.compact()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(u.comp_id for u in UserStore(path).users()) == ["ALICE", "BOB"]
    assert not mine.exists()  # renamed into place
    assert not SHIPPABLE.fullmatch(crashed.name) and SHIPPABLE.fullmatch(path.name)
