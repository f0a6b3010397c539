"""Review 45: a hostile review of the operator's money and account commands (`ringex admin`
-> admin ring -> router -> reply; the users and API-key files). Each test but the last
failed on the code as reviewed, for the fault it names, and passes since its fix (the same
commit); the last pins a contract no other test holds."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from procs.admin.client import AdminClient, _take_turn
from procs.common.record_codec import RecordCodec
from procs.common.records import Record, Transfer
from procs.common.topology import (
    ADMIN_GATEWAY,
    ROUTER,
    apikeys_path,
    gateway_commands,
    users_path,
)
from procs.common.users import UsersFileError, UserStore
from procs.core.recovery import recover, write_snapshot
from shm import Ring
from tests.unit.router.test_router import USD, Exchange, config
from tests.unit.test_review_admin_bugs import _cli, _Pump, _use_config

ROOT = Path(__file__).parents[2]


@pytest.fixture
def ex(instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Exchange]:
    """Every ring of an instance (the admin ring included), a router and a matcher shell;
    `ringex admin --profile x` loads its config. USD has 4 decimals."""
    exchange = Exchange(config(instance, tmp_path))
    _use_config(monkeypatch, exchange.cfg)
    yield exchange
    exchange.stop()


def _admin(*argv: str) -> int:
    return _cli(["admin", argv[0], "--profile", "x", *argv[1:]])


def _funded(ex: Exchange, account: int, usd: str) -> None:
    """``account`` opened and holding ``usd`` USD, through the CLI (a pump must run)."""
    assert _admin("create-account", "--account", str(account)) == 0
    assert _admin("deposit", "--account", str(account), "--asset", "USD", "--amount", usd) == 0


def _waiting_for_its_turn(thread: threading.Thread) -> bool:
    """Whether ``thread`` waits on the admin lock (``_take_turn``) now."""
    frame = sys._current_frames().get(thread.ident or -1)
    while frame is not None:
        if frame.f_code.co_name == "_take_turn":
            return True
        frame = frame.f_back
    return False


# -- the users and API-key files ----------------------------------------------------------------


def test_two_add_users_of_one_comp_id_at_once_never_move_it_off_its_funded_account(
    ex: Exchange, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """README: "A comp id names its account for good: `add-user` of one that exists is
    refused". ``add_user`` asks ``store.get(comp_id)`` before it connects (the admin lock,
    the create-account and deposit round trips), and ``UserStore.add`` is "create or
    replace". Two operators (or a script run twice) adding ALICE at once both pass the
    check; the first opens account 100 and deposits 1000 USD, the second opens 101 and
    rebinds ALICE to it with its own password: exit 0 twice, ALICE logs on to an empty
    account and her 1000 USD sit in an account no user names."""
    monkeypatch.setattr(AdminClient.__init__, "__defaults__", (60.0,))  # a loaded host
    codes: dict[str, int] = {}

    def add(name: str, *deposit: str) -> None:
        argv = ["add-user", "--username", "ALICE", "--password", f"pw-{name}", *deposit]
        codes[name] = _admin(*argv)

    with _Pump(ex):
        turn = _take_turn(ex.cfg, 0)  # another admin command's turn: both wait behind it
        threads = [
            threading.Thread(target=add, args=("first", "--deposit", "USD=1000")),
            threading.Thread(target=add, args=("second",)),
        ]
        try:
            for thread in threads:  # each past its checks, waiting for the admin ring
                thread.start()
                deadline = time.monotonic() + 30
                while not _waiting_for_its_turn(thread):
                    assert thread.is_alive() and time.monotonic() < deadline, codes
                    time.sleep(0.01)
        finally:
            os.close(turn)
        for thread in threads:
            thread.join(60)
    said = capsys.readouterr()
    user = UserStore(users_path(ex.cfg)).get("ALICE")
    assert user is not None
    accounts = ex.router.sequencer.accounts
    assert list(codes.values()).count(0) == 1, f"{codes}: {said.out}"
    held = accounts.balance(user.account, USD)[0]  # no trades: every USD is a deposit
    assert held == accounts.totals(USD), f"ALICE is on account {user.account}: {said.out}"


def test_add_user_with_an_unreadable_users_file_says_so_in_one_line(
    instance: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """README: "A users file that cannot be read is one line naming it (exit 1)". `users`
    and `remove-user` go through ``open_users``; ``add_user`` builds ``UserStore`` itself,
    so a damaged ``users.json`` ends `ringex admin add-user` in a UsersFileError traceback
    (nothing is opened: it fails first)."""
    cfg = config(instance, tmp_path)
    _use_config(monkeypatch, cfg)
    path = users_path(cfg)
    path.parent.mkdir(parents=True)
    path.write_text("{damaged")
    try:
        code = _admin("add-user", "--username", "bob", "--password", "pw")
    except UsersFileError as exc:
        pytest.fail(f"a traceback: {exc!r}")
    err = capsys.readouterr().err
    assert code == 1 and str(path) in err and len(err.strip().splitlines()) == 1, err


def test_remove_user_with_a_damaged_api_key_file_removes_nothing_and_says_why(
    instance: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``remove_user`` takes the user out of ``users.json`` and only then opens
    ``ApiKeyStore``, whose decode error is not caught: the operator sees a msgspec
    traceback; the user is gone (a second `remove-user` says "no user"), its API keys are
    not revoked (README: "its API keys are revoked, so its REST requests get 401"), and
    with --cancel-orders its orders are never cancelled. As with --cancel-orders and the
    instance down, nothing should be removed until it can all be done: exit 1, one line
    naming the file."""
    cfg = config(instance, tmp_path)
    _use_config(monkeypatch, cfg)
    UserStore(users_path(cfg)).add("BOB", "pw", 7, n=2)
    keys = apikeys_path(cfg)
    keys.write_text("{damaged")
    try:
        code = _admin("remove-user", "--comp-id", "BOB")
    except msgspec.MsgspecError as exc:
        pytest.fail(f"a traceback, BOB removed: {UserStore(users_path(cfg)).get('BOB')}: {exc!r}")
    err = capsys.readouterr().err
    assert code == 1 and str(keys) in err and len(err.strip().splitlines()) == 1, err
    assert UserStore(users_path(cfg)).get("BOB") is not None  # run it again once fixed


# -- what the operator is told ------------------------------------------------------------------


def test_a_deposit_answer_shows_the_free_balance_in_the_assets_decimals(
    ex: Exchange, capsys: pytest.CaptureFixture[str]
) -> None:
    """The operator types `--amount 250.50` and reads back "free balance 2505000": ten
    thousand times the money, where `balances` of the same account says 250.5000. Amounts
    are integers inside, in the asset's decimals at the edge (README: `deposit --amount
    250.50`); ``run_admin`` prints ``AccountReply.balance`` raw."""
    with _Pump(ex):
        _funded(ex, 7, "250.50")
        assert _admin("withdraw", "--account", "7", "--asset", "USD", "--amount", "0.5") == 0
    out = capsys.readouterr().out.splitlines()
    assert "free balance 250.5000" in out[1], out
    assert "free balance 250.0000" in out[2], out


def test_create_account_of_a_funded_account_does_not_say_it_holds_nothing(
    ex: Exchange, capsys: pytest.CaptureFixture[str]
) -> None:
    """`create-account --account 7` of an account holding 250.50 USD prints "account 7:
    ACCOUNT_EXISTS, free balance 0": the router's ``AccountReply`` for a ``CreateAccount``
    carries balance 0 ("0 for CreateAccount"), and ``run_admin`` prints it as the
    account's free balance, a false statement about someone's money."""
    with _Pump(ex):
        _funded(ex, 7, "250.50")
        capsys.readouterr()
        assert _admin("create-account", "--account", "7") == 1
    err = capsys.readouterr().err  # (a refusal, on stderr: review 313)
    assert "ACCOUNT_EXISTS" in err and "free balance 0" not in err, err


def test_the_kill_switch_for_an_account_that_does_not_exist_is_refused(
    ex: Exchange, capsys: pytest.CaptureFixture[str]
) -> None:
    """An operator stopping account 7 types 71: "cancel-all account 71, every symbol: done
    (orders end)", exit 0, and account 7 trades on. ``Sequencer._mass_cancel`` checks the
    symbol and the rate, never that the account exists, though a deposit to it is refused
    UNKNOWN_ACCOUNT. Bad input should get a clear error naming the value: exit 1 (README:
    "exits 1 when the router refuses ..., saying so")."""
    with _Pump(ex):
        _funded(ex, 7, "100")
        capsys.readouterr()
        code = _admin("cancel-all", "--account", "71")
    out, err = capsys.readouterr()
    assert code == 1 and "71" in err, (code, out, err)


def test_withdraw_takes_a_plus_and_space_amount_as_deposit_does(
    ex: Exchange, capsys: pytest.CaptureFixture[str]
) -> None:
    """Review 5 made `withdraw --amount +10` work; "+ 10" still passes
    ``_admin_args_refused`` (it strips, removes the "+", and ``to_minor_units`` strips
    again), but ``run_admin`` sends "-" + " 10", which is not a decimal: "amount '- 10' is
    not a decimal number", exit 1, found only after attaching (with the instance down it
    would say "not running"). Both commands should read the amount alike."""
    with _Pump(ex):
        _funded(ex, 7, "100")
        argv = ["--account", "7", "--asset", "USD", "--amount", "+ 10"]
        deposited = _admin("deposit", *argv)
        withdrawn = _admin("withdraw", *argv)
    err = capsys.readouterr().err
    assert "- 10" not in err and withdrawn == deposited, (deposited, withdrawn, err)


def test_an_interrupted_deposit_names_the_key_to_retry_it_with(
    admin_rings: str, tmp_path: Path
) -> None:
    """A router that is slow or restarting: the operator waits, presses Ctrl-C. The
    ``Transfer`` is in the admin ring and will be applied, but ``AdminClient.transfer``
    only says "retry with --key K" on an ``AdminError``: the interrupt ends in a
    KeyboardInterrupt traceback without the key, and the natural retry, without --key,
    deposits a second time. Expected: like a timeout, the message names the key."""
    profile = tmp_path / "ringex.toml"
    profile.write_text(f'instance = "{admin_rings}"\nvar_dir = "{tmp_path}"\n')
    ring = Ring.attach(admin_rings, gateway_commands(ADMIN_GATEWAY), RecordCodec())
    router = ring.consumer(ROUTER)  # a router that reads and does not answer (yet)
    argv = ["--account", "7", "--asset", "USD", "--amount", "5", "--config", str(profile)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "procs.cli", "admin", "deposit", *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        sent: list[Record] = []
        deadline = time.monotonic() + 30
        while not sent:  # published: it waits for its answer now
            assert proc.poll() is None and time.monotonic() < deadline, proc.poll()
            sent = [r for r in router.read(8) if isinstance(r, Transfer)]
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        router.close()
        ring.close()
    key = sent[0].key  # type: ignore[attr-defined]
    assert "Traceback" not in err and f"--key {key}" in err, err[-600:]


# -- pinned -------------------------------------------------------------------------------------


def test_pinned_a_keyed_withdrawal_retried_after_a_restart_from_a_snapshot_is_applied_once(
    ex: Exchange, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pinned. A withdrawal answered OK, the router and matcher restarted from a snapshot
    (`ringex replay --snapshot`), the withdrawal retried with its key through the CLI: the
    same OK and seq, exit 0, applied once; the key with another amount is
    DUPLICATE_TRANSFER, exit 1, nothing moved. The same amount written otherwise (30 vs
    30.0000) is the same transfer."""
    argv = ["--account", "7", "--asset", "USD", "--key", "4242"]
    with _Pump(ex):
        _funded(ex, 7, "100")
        assert _admin("withdraw", *argv, "--amount", "30") == 0
    first = capsys.readouterr().out.splitlines()[-1]
    seq = re.search(r"\(seq (\d+)\)", first)
    assert seq is not None, first
    ex.stop()
    write_snapshot(ex.cfg, recover(ex.cfg))
    ex.start()
    assert ex.router.sequencer.accounts.balance(7, USD) == (700_000, 0)
    with _Pump(ex):
        assert _admin("withdraw", *argv, "--amount", "30.0000") == 0
        again = capsys.readouterr().out
        assert _admin("withdraw", *argv, "--amount", "31") == 1
        other = capsys.readouterr().err  # a refusal goes to stderr (review 155)
    assert f"account 7: OK (seq {seq.group(1)})" in again, again
    assert "DUPLICATE_TRANSFER" in other, other
    assert ex.router.sequencer.accounts.balance(7, USD) == (700_000, 0)
