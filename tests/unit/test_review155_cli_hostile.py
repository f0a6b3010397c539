"""Review 155: the operator CLI (``procs/cli.py``) and the admin ring path (``procs/admin/``)
held against hostile arguments and awkward sequences.

Method: ``procs.cli.main`` run in-process, its config the in-process exchange's (a router and
a matcher stepped in a thread, ``tests/unit/test_review_admin_bugs._Pump``) or bare admin rings
nobody answers (``admin_rings``); every argument of ``deposit``, ``withdraw``,
``create-account``, ``balances``, ``halt``, ``snapshot`` and the lifecycle commands' ``--timeout``
given empty, signed, huge (past int64 once scaled to minor units), exponent, 3000-digit,
underscore, non-ASCII-digit, NUL and newline values and duplicated flags; transfers to an
account that does not exist and beyond the free balance; two admin clients at once and a
command whose answer never comes; the admin rings of another user (``posix_ipc``'s
``PermissionsError``, as a process of uid 65534 gets on root's rings: checked once with
``setpriv`` by hand, here by raising it on attach) and a ``var/<instance>/run`` that is no
directory.

Sound: a signed amount is exit 2, and NaN, Infinity, 0x10, 1_000, Arabic-Indic digits, an
exponent past Decimal's range, one minor unit past int64 and a sixth decimal place are exit 1,
each one line naming the value and its limit, before anything is attached; an unknown asset or
symbol (empty, NUL, newline, other case) is named in repr; an account past int64 names its
range; an instance that never ran is "not running" (exit 1); a second client waits its time
and names the pid and lock holding the ring; a transfer never answered names the router and
the ``--key`` to retry with; replies to another client's reference are not taken as one's own.

Faults (each a strict xfail when written; all fixed since, the same session):
1. A transfer to an account that does not exist prints "free balance 0.0000" of it
   (``procs/admin/commands.py:165,173``: every transfer reply's balance is shown, as
   create-account's was before review 45).
2. A refused transfer (INSUFFICIENT_BALANCE, INVALID_AMOUNT, UNKNOWN_ACCOUNT) exits 1 with
   stderr empty: the refusal is printed on stdout (``procs/admin/commands.py:166``) and names
   not the amount asked.
3. ``--account``, ``--key`` are ``type=int``
   (``procs/admin/commands.py:205,208,211,224,230,254``): "1_0" is account 10 and
   Arabic-Indic "\\u0667" account 7 (a deposit goes in), though an amount refuses both
   ("ASCII digits", ``client.py:59-61``, README).
4. A flag given twice is taken in silence, the last one winning: ``--amount 5 --amount 50``
   deposits 50 (``procs/admin/commands.py:210``), ``--profile a --profile b`` loads b
   (``procs/cli.py:498``, whose comment says "never one in silence").
5. A refused amount is echoed whole: a 3000-digit amount is a 3 kB line
   (``procs/admin/client.py:89,92``), where config refusals cut a shown value to 80 characters.
6. ``--timeout abc`` says "invalid _seconds value" (``procs/cli.py:68`` lets float's
   ValueError reach argparse, which names the private function): no limit, no meaning.
7. Rings of another user: ``Region.attach`` (``shm/region.py:87-89``) turns only
   ``ExistentialError`` into ``ShmError``, so ``posix_ipc.PermissionsError`` escapes
   ``admin_client`` (``procs/admin/commands.py:49-52``) and ``ringex status``
   (``procs/cli.py:433-435``) as a traceback.
8. ``var/<instance>/run`` unusable (not a directory, another user's): ``_take_turn``'s mkdir
   and open (``procs/admin/client.py:126-128``) raise OSError, which ``admin_client`` does not
   catch: a traceback instead of a line naming the lock's path.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import posix_ipc
import pytest

import procs.cli
from config.loader import ConfigError
from config.schema import RingexConfig
from procs.admin.client import AdminBusyError, AdminClient, AdminError
from procs.common.records import AccountReply
from procs.common.result_codes import ResultCode
from procs.common.topology import ADMIN_GATEWAY, gateway_replies
from shm import Ring
from tests.unit.router.test_router import CODEC, Exchange, config, fund
from tests.unit.test_review_admin_bugs import _cli, _Pump, _use_config

MOVE = ["--profile", "x", "--account", "7", "--asset", "USD"]


@pytest.fixture
def ex(instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Exchange]:
    """Account 7 with 100.0000 USD, the router and matcher stepped by a ``_Pump``."""
    exchange = Exchange(config(instance, tmp_path))
    _use_config(monkeypatch, exchange.cfg)
    fund(exchange, 7, usd=1_000_000, btc=0)
    yield exchange
    exchange.stop()


@pytest.fixture
def rings_cfg(admin_rings: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RingexConfig:
    """The config of an instance whose admin rings exist and nobody answers on."""
    cfg = config(admin_rings, tmp_path)
    _use_config(monkeypatch, cfg)
    return cfg


def _run(ex: Exchange, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with _Pump(ex):
        code = _cli(argv)
    got = capsys.readouterr()
    return code, got.out, got.err


def _one_line(err: str) -> str:
    assert err.endswith("\n") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


# -- sound: hostile values refused before anything is attached ---------------------------------


@pytest.mark.parametrize(
    ("amount", "code", "said"),
    [
        ("-5", 2, "must be positive"),
        ("+-5", 2, "must be positive"),
        ("-0", 2, "must be positive"),
        ("NaN", 1, "is not a decimal number"),
        ("Infinity", 1, "is not a decimal number"),
        ("0x10", 1, "is not a decimal number"),
        ("1_000", 1, "is not a decimal number"),
        ("\u0661\u0660", 1, "is not a decimal number"),
        ("", 1, "is not a decimal number"),
        ("5\x00", 1, "is not a decimal number"),
        ("1e99999999999999999999", 1, "out of range"),
        ("922337203685477.5808", 1, "beyond the limit of 9223372036854775807"),
        ("1e15", 1, "beyond the limit of 9223372036854775807"),
        ("0.00001", 1, "more than USD's 4 decimal places"),
    ],
)
def test_a_hostile_amount_is_one_line_before_anything_is_attached(
    amount: str, code: int, said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    _use_config(monkeypatch, config("r155never", tmp_path))  # never ran: no ring to attach
    for command in ("deposit", "withdraw"):
        assert _cli(["admin", command, *MOVE, "--amount", amount]) == code
        err = _one_line(capsys.readouterr().err)
        assert said in err and "not running" not in err


@pytest.mark.parametrize("asset", ["", "usd", "US\nD", "USD\x00", "\u00dcSD"])
def test_an_unknown_asset_is_named(
    asset: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _use_config(monkeypatch, config("r155never", tmp_path))
    argv = ["admin", "deposit", "--profile", "x", "--account", "7", "--asset", asset]
    assert _cli([*argv, "--amount", "5"]) == 1
    assert f"asset {asset!r} is not configured" in _one_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    ("argv", "code", "said"),
    [
        (["halt", "BTC-USD\x00"], 2, "symbol 'BTC-USD\\x00' is not configured"),
        (["snapshot", ""], 2, "symbol '' is not configured"),
        (["create-account", "--account", str(2**63)], 1, f"{2**63} is outside 1..{2**63 - 1}"),
        (["balances", "--account", "-1"], 1, "account -1 is outside 1.."),
        (["deposit", *MOVE[2:], "--amount", "1", "--key", "0"], 1, "key 0 is outside 1.."),
        (["deposit", *MOVE[2:], "--amount", "1", "--key", str(2**63)], 1, "is outside 1.."),
    ],
)
def test_hostile_symbols_accounts_and_keys_are_named(
    argv: list[str], code: int, said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    _use_config(monkeypatch, config("r155never", tmp_path))
    assert _cli(["admin", argv[0], "--profile", "x", *argv[1:]]) == code
    assert said in _one_line(capsys.readouterr().err)


def test_an_instance_that_never_ran_is_not_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _use_config(monkeypatch, config("r155never", tmp_path))
    assert _cli(["admin", "deposit", *MOVE, "--amount", "5"]) == 1
    assert "instance r155never is not running" in _one_line(capsys.readouterr().err)


# -- sound: two clients, an answer that never comes, another client's reply ----------------------


def test_a_second_client_waits_then_names_the_holder(rings_cfg: RingexConfig) -> None:
    first = AdminClient(rings_cfg)
    try:
        started = time.monotonic()
        with pytest.raises(AdminBusyError, match=r"pid \d+, .*admin\.lock\) and was not let go"):
            AdminClient(rings_cfg, wait_s=0.2)
        assert 0.2 <= time.monotonic() - started < 2
    finally:
        first.close()
    AdminClient(rings_cfg, wait_s=0).close()  # its turn ended with its close


def test_a_client_waiting_gets_the_ring_once_the_first_lets_go(rings_cfg: RingexConfig) -> None:
    first = AdminClient(rings_cfg)
    got: list[AdminClient] = []
    waiter = threading.Thread(target=lambda: got.append(AdminClient(rings_cfg, wait_s=5)))
    waiter.start()
    time.sleep(0.2)
    assert not got
    first.close()
    waiter.join(5)
    assert len(got) == 1
    got[0].close()


def test_an_unanswered_transfer_names_the_router_and_its_retry_key(
    rings_cfg: RingexConfig,
) -> None:
    client = AdminClient(rings_cfg)
    try:
        with pytest.raises(AdminError) as caught:
            client.transfer(7, "USD", "5", key=4242, timeout_s=0.3)
        with pytest.raises(AdminError, match=r"no answer from the router within 0\.3 s"):
            client.balances(7, timeout_s=0.3)
    finally:
        client.close()
    said = str(caught.value)
    assert "no answer from the router within 0.3 s (is it running?)" in said
    assert "retry with --key 4242" in said


def test_a_reply_to_another_reference_is_not_taken(rings_cfg: RingexConfig) -> None:
    """A reply left by an earlier client (a ref it gave up on) is not this call's answer."""
    client = AdminClient(rings_cfg)
    replies = Ring.attach(rings_cfg.instance, gateway_replies(ADMIN_GATEWAY), CODEC)
    writer = replies.producer(rings_cfg.wait.build())
    try:
        stale = AccountReply(9, 0, ADMIN_GATEWAY, 0, 1, 7, 1, ResultCode.OK, 5)
        assert writer.try_publish(stale)
        with pytest.raises(AdminError, match="no answer from the router"):
            client.create_account(7, timeout_s=0.3)
    finally:
        writer.close()
        replies.close()
        client.close()


# -- faults -----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["deposit", "withdraw"])
def test_a_transfer_to_no_account_shows_no_balance(
    command: str, ex: Exchange, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["admin", command, "--profile", "x", "--account", "999", "--asset", "USD"]
    code, out, err = _run(ex, [*argv, "--amount", "5"], capsys)
    assert code == 1 and "UNKNOWN_ACCOUNT" in out + err
    assert "free balance" not in out + err  # 999 has none: it is not open


@pytest.mark.parametrize(
    ("argv", "refusal"),
    [
        (["withdraw", *MOVE[2:], "--amount", "1000"], "INSUFFICIENT_BALANCE"),
        (["deposit", *MOVE[2:], "--amount", "0"], "INVALID_AMOUNT"),
    ],
)
def test_a_refused_transfer_is_said_on_stderr_naming_the_amount(
    argv: list[str], refusal: str, ex: Exchange, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = _run(ex, ["admin", argv[0], "--profile", "x", *argv[1:]], capsys)
    assert code == 1
    assert refusal in err and argv[-1] in _one_line(err)


@pytest.mark.parametrize("account", ["\u0667", "0_7", "\uff17"])
def test_an_account_is_ascii_digits_as_an_amount_is(
    account: str, ex: Exchange, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["admin", "deposit", "--profile", "x", "--account", account, "--asset", "USD"]
    code, out, err = _run(ex, [*argv, "--amount", "5"], capsys)
    assert ex.router.sequencer.accounts.balance(7, 1)[0] == 1_000_000, out  # nothing went in
    assert code in (1, 2) and "account" in err


def test_a_key_is_ascii_digits(ex: Exchange, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, _err = _run(
        ex, ["admin", "deposit", *MOVE, "--amount", "5", "--key", "4_2"], capsys
    )
    assert code in (1, 2)


def test_an_amount_given_twice_is_a_usage_error(
    ex: Exchange, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, _err = _run(
        ex, ["admin", "deposit", *MOVE, "--amount", "5", "--amount", "50"], capsys
    )
    assert ex.router.sequencer.accounts.balance(7, 1)[0] == 1_000_000  # neither went in
    assert code == 2


def test_a_profile_given_twice_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded: list[str] = []

    def load(name: str) -> Any:
        loaded.append(name)
        raise ConfigError("stop here")

    monkeypatch.setattr(procs.cli, "load_profile", load)
    assert _cli(["status", "--profile", "test", "--profile", "dev"]) == 2
    assert not loaded  # refused by the parser, as --profile with --config is


def test_a_long_amount_is_shown_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _use_config(monkeypatch, config("r155never", tmp_path))
    for amount in ("0." + "0" * 3000 + "1", "9" * 3000):
        assert _cli(["admin", "deposit", *MOVE, "--amount", amount]) == 1
        assert len(_one_line(capsys.readouterr().err)) < 400


@pytest.mark.parametrize("command", ["stop", "status", "run"])
def test_a_timeout_that_is_no_number_names_what_it_must_be(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli([command, "--timeout", "abc"]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert "_seconds" not in err and "'abc' is not a number of seconds >= 0" in err


@pytest.mark.parametrize("command", ["ls", "rm"])
@pytest.mark.parametrize("name", ["a/b", "", "x" * 49, "dev prod"])
def test_an_instance_that_no_config_could_name_is_a_usage_error(
    command: str, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``shm rm --instance a/b`` removed "0" segments and said so, exit 0: a typo looked
    like a clean host (review 314)."""
    assert _cli(["shm", command, "--instance", name]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert f"{name!r} is not an instance name: 1 to 48 of A-Z, a-z, 0-9" in err


def _foreign_rings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Attaching any segment fails as it does on rings another user made (mode 0600)."""
    made = posix_ipc.SharedMemory

    def shared_memory(name: str, *args: Any, **kwargs: Any) -> Any:
        if not args and not kwargs:  # an attach, not a create
            raise posix_ipc.PermissionsError("No permission to access this segment")
        return made(name, *args, **kwargs)

    monkeypatch.setattr(posix_ipc, "SharedMemory", shared_memory)


@pytest.mark.parametrize("argv", [["admin", "halt", "BTC-USD"], ["status"]])
def test_another_users_rings_are_one_line(
    argv: list[str], rings_cfg: RingexConfig, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    _foreign_rings(monkeypatch)
    try:
        code = _cli([*argv[:2], "--profile", "x", *argv[2:]])
    except posix_ipc.PermissionsError as exc:
        pytest.fail(f"traceback: {exc!r}")
    assert code == 1 and "permission" in _one_line(capsys.readouterr().err).lower()


def test_an_unusable_lock_directory_is_one_line(
    rings_cfg: RingexConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    run = Path(rings_cfg.var_dir) / rings_cfg.instance / "run"
    run.parent.mkdir(parents=True, exist_ok=True)
    run.write_text("not a directory\n")
    try:
        code = _cli(["admin", "halt", "--profile", "x", "BTC-USD"])
    except OSError as exc:
        pytest.fail(f"traceback: {exc!r}")
    assert code == 1 and "admin.lock" in _one_line(capsys.readouterr().err)
