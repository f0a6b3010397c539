"""Review 313: the operator's error messages name the value and the limit.

Reviewed: ``procs/cli.py``, ``procs/admin/commands.py``, ``procs/admin/client.py``,
``procs/admin/args.py``, ``procs/admin/users.py``, ``procs/admin/keys.py``,
``procs/shm_commands.py``, ``config/loader.py``, ``config/schema.py``,
``config/refused_value.py``; README's Configure and Operate.

Rig: ``procs.cli.main`` in-process (review 197's ``_cli``) against review 203's rig: a
router and a matcher over the instance's real rings, stepped in a thread (``_run``,
``_Pump``; ``--profile x`` loads the rig's config): review 155's ``ex``, account 7 with
100.0000 USD. Config files are real TOML files under ``tmp_path`` loaded by ``ringex status
--config FILE``.

Faults found (each fixed; its test says what it was):
1. ``admin create-account --account 7`` of an account that exists is a refusal (exit 1) whose one
   line, "account 7: ACCOUNT_EXISTS", goes to stdout; stderr is empty
   (``procs/admin/commands.py:190``: only a refused transfer is printed on stderr, a refused
   create-account falls through to the success print at ``commands.py:207``). A script that logs
   stderr (``2>>errors.log``) records nothing of the refusal, where every other admin refusal is on
   stderr (review 155 moved the transfers'). Fixed: a refused create-account is on stderr too
   ("ringex admin: account 7: ACCOUNT_EXISTS: create-account refused, the account is open"), stdout
   empty (review 45's test reads it there now).
2. A deposit refused ``BALANCE_LIMIT`` says "free balance 100.0000", the account's own free
   balance, which is not what refused it: the limit is the asset's total over every account (2^63-1
   minor units, 922337203685477.5807 USD at 4 decimals) and neither it nor the room left is named
   (``procs/admin/commands.py:197``: ``_free_balance`` is appended to every refusal but
   UNKNOWN_ACCOUNT; an INVALID_AMOUNT of "0" likewise gets the free balance, not "must be more than
   0"). Fixed: each code names the limit that refused it: BALANCE_LIMIT "the USD of every account
   would pass 922337203685477.5807 in all", INVALID_AMOUNT "a transfer moves more than 0".
3. A withdrawal beyond the free balance of an account whose funds are held by an open order names
   the free balance only ("free balance 49.9000"): not what is held, so the operator cannot tell a
   short account from one whose money is locked in orders (cancel-all first) without a second
   command (``procs/admin/commands.py:197,211``: the reply carries the free balance only). Fixed:
   on INSUFFICIENT_BALANCE, read the account's balance of the asset (``client.balances``, as
   ``balances`` does, before the client closes) and say "free 49.9000, held by open orders
   50.1000".
4. ``--profile NAME`` and ``--config FILE`` of a long value (a script's runaway variable) echo it
   whole: 5,000 characters of profile name are a 5 kB line, a 5,000-character path a 10 kB one (the
   path twice, OSError's text holds it again) with "File name too long" lost in it
   (``config/loader.py:42`` and ``:60``), where every other refusal cuts a long value to 80
   characters (``cut_values``, README Configure; review 155 cut amounts). Fixed: pass both messages
   through ``cut_values`` (and drop OSError's repeat of the path: use ``exc.strerror``).
5. An empty config file (``--config /dev/null``, a deploy that truncated the file) loaded as the
   schema's defaults: instance ``dev``, so ``ringex stop --config prod.toml`` of a truncated
   prod.toml acted on the dev instance (exit 0 "instance dev is not running")
   (``config/loader.py``, ``tomllib.loads`` of no key). Fixed: a file that holds no setting is
   refused, naming it.

Sound: config refusals (a wrong type, a non-power-of-two ring, a tick or lot of 0, a fee past
1,000 bps, a value of a fixed set, an unknown key, a session end that is no time, a missing
file, a directory) are exit 2, one line naming the key and the value (and the bound or the
allowed set); ``set-user``'s seconds and on/off options name the value and the range; deposit
refusals of an unknown asset, too many decimals, a value past int64, a key of 0, a signed
amount name the value and the limit and move nothing; a withdrawal past the free balance
with nothing held is exit 1 naming the amount and the free balance, nothing moved.

Leads not shown:
- A config saved with a UTF-8 BOM (Notepad) was "Invalid statement (at line 1, column 1)":
  it named no BOM, which the operator cannot see (fixed: the mark is passed over).
- ``[[gateways]] port = 0`` loads (the OS picks a port no client knows); not run here.
- ``admin keys --comp-id ""`` was exit 0 "no API keys of " (fixed: ``named`` is applied, as
  to ``--profile``); ``shm rm --instance a/b`` (no instance can have that name) is exit 0
  "0 segment(s) removed".
"""

from __future__ import annotations

from pathlib import Path

import pytest

from procs.common.types import Side
from tests.unit.router.test_router import USD, Exchange, order
from tests.unit.test_review155_cli_hostile import ex
from tests.unit.test_review197_readme_walk import _cli
from tests.unit.test_review203_admin_cli import _run
from tests.unit.test_review_admin_bugs import _Pump

__all__ = ["ex"]  # the fixture, review 155's: account 7 with 100.0000 USD

MOVE7 = ["--account", "7", "--asset", "USD", "--amount"]
#: 2**63 - 1 minor units of USD at the rig's 4 decimals: the asset total's limit
USD_LIMIT = "922337203685477.5807"


def _usd(ex: Exchange, account: int) -> tuple[int, int]:
    """(free, held) of ``account``'s USD in minor units, as the router holds them."""
    return ex.router.sequencer.accounts.balance(account, USD)


def _one_line(err: str) -> str:
    assert err.count("\n") == 1 and err.endswith("\n") and "Traceback" not in err, err
    return err


# -- fault 1: create-account's refusal ---------------------------------------------------------


def test_create_account_of_an_open_account_is_refused_on_stderr(
    ex: Exchange, capsys: pytest.CaptureFixture[str]
) -> None:
    """Scenario: ``ringex admin create-account --account 7``, account 7 open and funded.
    Expected: exit 1, stdout empty, one line on stderr naming account 7 and ACCOUNT_EXISTS
    (as a refused deposit is said). Was (fixed): exit 1, "account 7: ACCOUNT_EXISTS" on stdout and
    stderr empty."""
    code, out, err = _run(ex, ["create-account", "--account", "7"], capsys)
    assert code == 1, (code, out, err)
    assert out == "" and "ACCOUNT_EXISTS" in err and "account 7" in _one_line(err), (out, err)


# -- fault 2: BALANCE_LIMIT names no limit -----------------------------------------------------


def test_a_deposit_past_the_asset_total_names_the_limit(
    ex: Exchange, capsys: pytest.CaptureFixture[str]
) -> None:
    """Scenario: ``deposit --account 7 --asset USD --amount 922337203685477.5000``, the USD
    total 100.0000 before (account 7's). Expected: exit 1, one line naming the amount and
    the limit that refused it, the USD total's 922337203685477.5807, nothing moved. Was (fixed):
    "BALANCE_LIMIT: deposit of 922337203685477.5000 USD refused, free balance 100.0000":
    the account's free balance, no limit."""
    code, out, err = _run(ex, ["deposit", *MOVE7, "922337203685477.5000"], capsys)
    assert code == 1 and out == "" and "BALANCE_LIMIT" in _one_line(err), (code, out, err)
    assert _usd(ex, 7) == (1_000_000, 0)
    assert "922337203685477.5000" in err and USD_LIMIT in err, err


# -- fault 3: a withdrawal refused while funds are held ----------------------------------------


def test_a_withdrawal_past_free_funds_names_what_is_held(
    ex: Exchange, capsys: pytest.CaptureFixture[str]
) -> None:
    """Scenario: account 7 (100.0000 USD) rests a buy of 5.00 BTC at 10.00 (50.00 USD and
    its fee held), then ``withdraw --account 7 --asset USD --amount 80``. Expected: exit 1,
    one line naming the amount, the free balance and what open orders hold, nothing moved.
    Was (fixed): "INSUFFICIENT_BALANCE: withdraw of 80 USD refused, free balance 49.9000": the held
    50.1000 is not said."""
    ex.send(1, order(1, 7, Side.BUY, 1000, 500))
    free, held = _usd(ex, 7)
    assert held > 0 and free < 800_000 < free + held, (free, held)
    code, out, err = _run(ex, ["withdraw", *MOVE7, "80"], capsys)
    assert code == 1 and out == "" and "INSUFFICIENT_BALANCE" in _one_line(err), err
    assert _usd(ex, 7) == (free, held)
    assert f"{free / 10_000:.4f}" in err, err  # the free balance: named today
    assert f"{held / 10_000:.4f}" in err, err  # what is held: not


# -- fault 4: a long profile name or config path, echoed whole ---------------------------------


@pytest.mark.parametrize("option", ["--profile", "--config"])
def test_a_long_profile_or_config_path_is_cut_in_its_refusal(
    option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Scenario: ``ringex status --profile <5,000 x>`` (or ``--config`` a path of 5,000
    characters). Expected: exit 2, one line with the name cut (as ``cut_values`` cuts every
    other long value, to 80 characters) and why: under 500 characters. Was (fixed): the whole name,
    a 5 kB line (``--config``: 10 kB, the path twice)."""
    value = "x" * 5000 if option == "--profile" else str(tmp_path / ("y" * 5000))
    code, out, err = _cli(["status", option, value], capsys)
    assert code == 2 and out == "" and "Traceback" not in err, (code, out, err[:200])
    assert len(_one_line(err)) < 500, len(err)


# -- fault 5 (a lead, shown once fixed): an empty config file ------------------------------------


@pytest.mark.parametrize("text", ["", "\n# nothing set\n"])
def test_an_empty_config_file_is_refused(
    text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Scenario: ``ringex status --config prod.toml`` of a file a deploy truncated (empty, or
    comments alone). Expected: exit 2, one line naming the file and that it holds no
    setting. Was (fixed): it loads as the schema's defaults, instance "dev", and the command acts
    on that instance."""
    path = tmp_path / "prod.toml"
    path.write_text(text)
    code, out, err = _cli(["status", "--config", str(path)], capsys)
    assert (code, out) == (2, "") and "holds no setting" in _one_line(err), (code, out, err)
    assert str(path) in err, err


# -- leads, fixed: a byte order mark, an empty --comp-id ------------------------------------------


def test_a_config_saved_with_a_byte_order_mark_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A config an editor saved with a UTF-8 byte order mark (Notepad's) loads as without it:
    it was "Invalid statement (at line 1, column 1)", naming nothing the operator can see."""
    path = tmp_path / "bom.toml"
    path.write_text("\ufeff" + _BASE.format(var=tmp_path / "var"), encoding="utf-8")
    code, out, err = _cli(["status", "--config", str(path)], capsys)
    assert "Invalid statement" not in err and "r313cfg" in out + err, (code, out, err)


def test_admin_keys_of_an_empty_comp_id_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``ringex admin keys --comp-id ""`` (an unset variable) is exit 2 naming it, as
    ``--profile ""`` is; it was exit 0 "no API keys of "."""
    code, out, err = _cli(["admin", "keys", "--profile", "test", "--comp-id", ""], capsys)
    assert (code, out) == (2, "") and "names nothing" in err, (code, out, err)


# -- sound ---------------------------------------------------------------------------------------

_BASE = """instance = "r313cfg"
var_dir = "{var}"

[ring]
capacity = 1024

[wait]
strategy = "blocking"
"""
_SYMBOL = '\n[[symbols]]\nname = "BTC-USD"\nid = 1\n{line}\n[[matchers]]\nname = "m1"\n'
_SYMBOL += 'symbols = ["BTC-USD"]\n'


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (("capacity = 1024", 'capacity = "x"'), "ring.capacity = 'x'"),
        (("capacity = 1024", "capacity = 1000"), "ring.capacity 1000 is not a power of two"),
        (("capacity = 1024", "capacity = true"), "Expected `int`, got `bool`"),
        (("capacity = 1024", "capacity = 1024\ncapacty = 2"), "unknown field `capacty`"),
        (('"blocking"', '"fast"'), "'fast'; one of 'busy-spin', 'yield', 'sleep', 'blocking'"),
        (("", _SYMBOL.format(line="tick = 0")), ">= 1 - at `$.symbols[0].tick`"),
        (("", _SYMBOL.format(line="lot = -3")), "symbols[0].lot = -3 (symbol 'BTC-USD')"),
        (("", _SYMBOL.format(line="taker_fee_bps = 20000")), "<= 1000"),
        (("", _SYMBOL.format(line="maker_fee_bps = 2.5")), "maker_fee_bps = 2.5"),
        (("", "\n[supervisor]\nsession_end_utc = '9:00'\n"), "'9:00' is not a time HH:MM"),
    ],
    ids=["str", "pow2", "bool", "unknown", "enum", "tick0", "lot", "fee", "fee-float", "time"],
)
def test_sound_config_refusals_name_the_key_the_value_and_the_bound(
    change: tuple[str, str], said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each bad config: exit 2, one line on stderr naming the file, the key and the value
    (and the bound or the values allowed), no traceback."""
    old, new = change
    text = _BASE.format(var=tmp_path / "var")
    text = text.replace(old, new) if old else text + new
    path = tmp_path / "bad.toml"
    path.write_text(text)
    code, out, err = _cli(["status", "--config", str(path)], capsys)
    assert (code, out) == (2, "") and said in _one_line(err), err
    assert str(path) in err


def test_sound_a_missing_config_or_a_directory_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--config`` of a file that is not there, or of a directory: exit 2, one line naming
    the path and why."""
    for path, why in ((tmp_path / "nope.toml", "No such file"), (tmp_path, "Is a directory")):
        code, out, err = _cli(["status", "--config", str(path)], capsys)
        assert (code, out) == (2, "") and why in _one_line(err) and str(path) in err, err


def test_sound_transfer_refusals_name_value_and_limit_and_move_nothing(
    ex: Exchange, capsys: pytest.CaptureFixture[str]
) -> None:
    """deposit/withdraw refusals: one line on stderr naming the value and the limit (or the
    set allowed), the exit status README gives, account 7's USD unchanged."""
    cases: list[tuple[list[str], int, str]] = [
        (["deposit", "--account", "7", "--asset", "XYZ", "--amount", "1"], 1, "['USD', 'BTC']"),
        (["deposit", *MOVE7, "0.00001"], 1, "0.00001 has more than USD's 4 decimal places"),
        (["deposit", *MOVE7, "1e400"], 1, "limit of 9223372036854775807 minor units"),
        (["deposit", *MOVE7, "5", "--key", "0"], 1, "key 0 is outside 1..9223372036854775807"),
        (["deposit", *MOVE7, "-5"], 2, "amount -5 must be positive"),
        (["withdraw", *MOVE7, "1000"], 1, "withdraw of 1000 USD refused, free balance 100.0000"),
        (["balances", "--account", "-1"], 1, "account -1 is outside 1..9223372036854775807"),
    ]
    for argv, status, said in cases:
        code, out, err = _run(ex, argv, capsys)
        assert (code, out) == (status, "") and said in _one_line(err), (argv, code, err)
    assert _usd(ex, 7) == (1_000_000, 0)


@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        ("--min-heartbeat-s", "0", "'0' is not 1..86400 seconds or gateway"),
        ("--max-heartbeat-s", "86401", "'86401' is not 1..86400 seconds or gateway"),
        ("--sending-time-tolerance-s", "nan", "'nan' is not 1..86400 seconds or gateway"),
        ("--cancel-on-disconnect", "yes", "'yes' is not on, off or gateway"),
    ],
)
def test_sound_set_user_options_name_the_value_and_the_range(
    option: str, value: str, said: str, ex: Exchange, capsys: pytest.CaptureFixture[str]
) -> None:
    """``set-user --comp-id C OPTION VALUE`` of a value out of range: a usage error (exit 2)
    whose last line names the value and the range, no traceback."""
    with _Pump(ex):
        code, out, err = _cli(["admin", "set-user", "--profile", "x", "--comp-id", "c", option,
                               value], capsys)  # fmt: skip
    assert (code, out) == (2, "") and "Traceback" not in err, err
    assert said in err.splitlines()[-1], err


@pytest.mark.parametrize(
    "command",
    [
        ["set-password", "--comp-id", "LONG", "--password", "pw"],
        ["set-user", "--comp-id", "LONG", "--cancel-on-disconnect", "on"],
        ["remove-user", "--comp-id", "LONG"],
        ["keys", "--comp-id", "LONG"],
        ["halt", "LONG"],
        ["cancel-all", "--every-account", "--symbol", "LONG"],
    ],
    ids=lambda command: command[0],
)
def test_a_long_comp_id_or_symbol_is_cut_in_its_answer(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A comp id or symbol of 10,000 characters (a runaway script's variable) is named cut
    to 80, as review 194 cut add-user's: it was echoed whole, a 10 kB line (``no_user``,
    ``symbol_id_of``, ``keys``; a review, 2026-12-03)."""
    path = tmp_path / "r313.toml"
    path.write_text(_BASE.format(var=tmp_path / "var"))
    long = "L" * 10_000
    argv = ["admin", *(long if word == "LONG" else word for word in command)]
    code, out, err = _cli([*argv, "--config", str(path)], capsys)
    assert code != 0 or "no API keys of" in out, (code, out[:200], err[:200])
    assert "L" * 80 + "..." in out + err and len(out + err) < 500, (out[:200], err[:200])
