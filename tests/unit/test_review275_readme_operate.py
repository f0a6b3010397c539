"""Review 275: README.md's "## Operate" and "## Configure" followed literally by a newcomer,
on an instance of the reviewer's own.

Reviewed: ``procs/cli.py`` (``_profile``, ``_run``, ``_stop``, ``_status``, ``_print_status``,
``_running_elsewhere``, ``_replay``, ``profile_args``, ``build_parser``),
``procs/admin/commands.py`` (``add_admin``, ``run_admin``, ``_admin_args_refused``),
``procs/admin/add_user.py``, ``procs/admin/users.py`` (``set_user``, ``set_password``,
``no_user``), ``procs/admin/keys.py``, ``procs/admin/args.py`` (``Once``), ``config/loader.py``
(``load_profile``).

Rig: walked by hand first with the real CLI (``.venv/bin/ringex``) against a private instance
(``instance = "r275w"``, an absolute ``var_dir`` under /tmp, free FIX, REST and metrics ports,
``[database] enabled = false``, ``[marketdata] enabled = false``): ``run --config F
--detach``, ``run`` again, ``status`` (text, ``--json``, ``--wait-ready --timeout 60`` and
``0``), every admin line of Operate's block, the metrics page, ``stop`` (twice), ``status``
once stopped, ``replay`` in its five forms on a never-run instance, and a second config of
the same instance with another ``var_dir`` (``status``, ``stop``, ``run --detach``). Here,
in-process and fast: ``procs.cli.main`` over tests/unit/test_review197_readme_walk.py's
``_cli``, a config file of the test's own instance (``instance`` fixture), and a ring this
process creates standing for an instance that runs (as tests/unit/test_review57_operate.py's
``held_rings``); ``load_profile`` replaced by a spy where the default ``dev`` instance would
otherwise be read.

Faults found (each fixed; its test says what it was):

1. procs/cli.py:141-143 (``_profile``): ``if args.config:`` and ``args.profile or "dev"``
   take an empty ``--config ""`` or ``--profile ""`` for no option at all, so the command
   runs on the ``dev`` instance. README Configure: "`--config FILE` takes any path ...; a
   profile or file that does not load is one line on stderr and exit status 2". A script's
   ``ringex stop --config "$CONFIG"`` (or ``admin cancel-all --every-account --config
   "$CONFIG"``) with ``$CONFIG`` unset stops (or empties the books of) the dev exchange,
   exit 0. Fixed: ``--profile`` and ``--config`` take ``args.named``, which refuses ""
   (a usage error, exit 2), and ``_profile`` tests ``is not None``.
   (``test_an_empty_config_or_profile_is_refused_not_the_dev_instance``)
2. procs/cli.py:342 (``_running_elsewhere``): where the instance's shared memory is in use
   and no status file is in this ``var_dir``, ``status``, ``stop`` and ``status
   --wait-ready`` say "it was started with another var_dir ('/srv/x' is relative to the
   working directory): run this where it was started" whatever the ``var_dir``: an absolute
   one (every config a newcomer writes per README's advice for a second instance, and
   ``systemd_units.py``'s) is called relative, and the advice to change directory cannot
   help. Seen live: config w2.toml naming r275w with ``var_dir = "/tmp/r275/other"``.
   Fixed: the relative wording only for a relative ``var_dir``; otherwise "it was started
   from a config with another var_dir than {cfg.var_dir!r}: run this with that one".
   (``test_an_absolute_var_dir_is_not_said_to_be_relative``)
3. procs/admin/commands.py:277 (``cancel-all --symbol``) and procs/cli.py:523 (``shm rm
   --instance``) have no ``action=Once``: given twice, the last wins in silence. README
   Operate: "an option given twice is a usage error (review 155)"; review 183 gave ``Once``
   to every other valued option but these two. ``cancel-all --account 7 --symbol ETH-USD
   --symbol BTC-USD`` (an edited command line) cancels BTC-USD only and says done;
   ``shm rm --instance dev --instance prod --force`` removes prod's segments under a live
   exchange. Fixed: ``action=Once`` on both.
   (``test_the_kill_switch_and_shm_rm_refuse_an_option_given_twice``)

Sound: ``run --detach`` answers within 3 s with the status; ``run`` of a running instance is
exit 1 naming the supervisor's pid, and a second config of the same instance with another
``var_dir`` is refused by its supervisor naming the rings in use (the running one untouched);
every admin line of Operate's block exits 0 and prints what README says (``add-user``'s
SenderCompID, account and deposits; ``deposit``/``withdraw``'s free balance in the asset's
decimals, a ``--key`` retry answered as the first; "sent" for halt, resume, end-session and
snapshot; ``balances --json``; ``users --json`` with its eight keys; ``keys --json``);
``balances`` of an account never opened is exit 1 naming UNKNOWN_ACCOUNT; ``set-user`` out of
1..86,400 is exit 2, an unknown comp id exit 1 naming the users; ``set-password`` empty or
with SOH exit 2; ``add-user`` of the fee account, of ``--deposit USD=0`` or an unknown asset,
of a comp id with a space, exit 2; ``status --json`` holds every key README lists and each
process the nine it lists; the metrics page holds every family README lists (the database's
aside, off); ``stop`` exits 0 and leaves no segment, a second ``stop`` says not running
(exit 0), ``status`` then reads stopped (exit 0); a config that is a directory, not UTF-8,
names a table twice or is missing is one line, exit 2; the three shipped profiles are what
Configure says; ``replay`` (plain, ``--snapshot``, ``--archive``, ``--from-start``) on a
never-run instance answers seq 0.

Found beside (fixed): ``replay --to-db`` under ``[database] enabled = false`` created and ran
an embedded cluster in the var_dir all the same (README: false is "no database writer (and
no PostgreSQL needed)"); it is refused, naming the key, before the replay.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import procs.cli
from config.loader import ConfigError
from config.schema import RingexConfig
from procs.common.record_codec import RecordCodec
from shm import Ring
from tests.unit.test_review197_readme_walk import _cli

RELATIVE = "is relative to the working directory"
#: Both of the default config's symbols, the second given after the first
TWO_SYMBOLS = ["--symbol", "ETH-USD", "--symbol", "BTC-USD"]


@pytest.fixture
def never_ran(instance: str, tmp_path: Path) -> Path:
    """A config file of the test's own instance, never started, its var_dir absolute."""
    path = tmp_path / "r275.toml"
    path.write_text(f'instance = "{instance}"\nvar_dir = "{tmp_path / "var"}"\n')
    return path


@pytest.fixture
def held_elsewhere(never_ran: Path, instance: str) -> Iterator[Path]:
    """``never_ran``'s instance with its shared memory in use (a ring this process holds, as
    a supervisor started from another config would), no status file in its var_dir."""
    ring = Ring.create(instance, "gw0-cmd", RecordCodec(), capacity=16, consumers=["router"])
    try:
        yield never_ran
    finally:
        ring.close()
        ring.unlink()


# -- fault 1: an empty --config or --profile is the dev instance ------------------------------


@pytest.mark.parametrize("option", ["--config", "--profile"])
@pytest.mark.parametrize("command", [["stop"], ["admin", "cancel-all", "--every-account"]])
def test_an_empty_config_or_profile_is_refused_not_the_dev_instance(
    option: str,
    command: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Scenario: a script runs ``ringex stop --config "$CONFIG"`` (or ``ringex admin
    cancel-all --every-account --config "$CONFIG"``) with ``$CONFIG`` unset, so the option's
    value is "" (``--profile ""`` alike). ``load_profile`` is a spy here that records the
    name and refuses it, so the real dev instance is never read.
    Expected: README Configure: "`--config FILE` takes any path ...; a profile or file that
    does not load is one line on stderr and exit status 2": "" names no file and no profile
    (exit 2), and the dev profile is never loaded, as it would be were the option left out.
    Was (fixed): ``_profile`` tests ``if args.config:`` and returns ``args.profile or
    "dev"``, so the empty value is dropped and the command loads ``dev``: the stop or the
    whole-book cancel goes to the default instance."""
    seen: list[str] = []

    def spy(name: str) -> RingexConfig:
        seen.append(name)
        raise ConfigError(f"spy: {name!r} not loaded")

    monkeypatch.setattr(procs.cli, "load_profile", spy)
    code, _, _ = _cli([*command, option, ""], capsys)
    assert code == 2
    assert "dev" not in seen, f"the empty {option} loaded the dev profile"


# -- fault 2: an absolute var_dir is said to be relative -----------------------------------------


@pytest.mark.parametrize(
    "argv",
    [["status"], ["stop"], ["status", "--wait-ready", "--timeout", "0"]],
    ids=["status", "stop", "wait-ready"],
)
def test_an_absolute_var_dir_is_not_said_to_be_relative(
    argv: list[str], held_elsewhere: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Scenario: an instance runs from one config; a second config names the same instance
    with another, absolute, ``var_dir`` (a copy edited; an old one after a move), and the
    operator asks ``ringex status`` / ``stop`` / ``status --wait-ready`` with it.
    Expected: README Operate ties the "relative to the working directory" explanation to a
    relative ``var_dir`` ("`var_dir` is relative to the working directory: `stop` and
    `status` from another one find no status file"); for an absolute one the message names
    the pids (it does) and does not call the path relative nor send the operator to another
    directory, where the same absolute path would be read again.
    Was (fixed): "it was started with another var_dir ('/tmp/.../var' is relative to the working
    directory): run this where it was started" for any var_dir."""
    _, out, err = _cli([*argv, "--config", str(held_elsewhere)], capsys)
    said = out + err
    assert "shared memory is in use" in said, said  # the guard: the case is met
    assert RELATIVE not in said, said


# -- fault 3: options given twice, the last winning in silence ---------------------------------


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["admin", "cancel-all", "--account", "7", *TWO_SYMBOLS], "--symbol"),
        (["shm", "rm", "--instance", "r275none1", "--instance", "r275none2"], "--instance"),
    ],
    ids=["cancel-all", "shm-rm"],
)
def test_the_kill_switch_and_shm_rm_refuse_an_option_given_twice(
    argv: list[str], flag: str, never_ran: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Scenario: an operator edits a command line and leaves the old value in: ``ringex
    admin cancel-all --account 7 --symbol ETH-USD --symbol BTC-USD``, or ``ringex shm rm
    --instance A --instance B`` (instances with no segments here, so nothing is removed).
    Expected: README Operate: "an option given twice is a usage error (review 155)": exit 2,
    naming the option ("--symbol is given twice"), as ``--account``, ``--amount``,
    ``--comp-id``, ``--timeout`` and every other valued option of ``ringex`` are.
    Was (fixed): argparse's plain ``store`` keeps the last in silence: the cancel-all goes on to the
    instance (here: not running, exit 1) for BTC-USD alone, and ``shm rm`` removes B's
    segments (here: none, exit 0)."""
    where = ["--config", str(never_ran)] if argv[0] == "admin" else []
    code, _, err = _cli([*argv, *where], capsys)
    assert code == 2 and f"{flag} is given twice" in err, err[-400:]


# -- sound: pinned where nothing else pins it ---------------------------------------------------


def test_a_relative_var_dir_is_still_explained(
    instance: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """README Operate: "`var_dir` is relative to the working directory: `stop` and `status`
    from another one find no status file, and where the instance's shared memory is in use
    they say so rather than "not running"": with a relative var_dir the explanation is right
    (the guard for fault 2's fix), and ``stop`` exits 1."""
    path = tmp_path / "rel.toml"
    path.write_text(f'instance = "{instance}"\nvar_dir = "var"\n')
    ring = Ring.create(instance, "gw0-cmd", RecordCodec(), capacity=16, consumers=["router"])
    try:
        code, _, err = _cli(["stop", "--config", str(path)], capsys)
    finally:
        ring.close()
        ring.unlink()
    assert code == 1
    assert "shared memory is in use" in err and RELATIVE in err, err


def test_replay_to_db_of_a_config_without_a_database_is_refused(
    never_ran: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Scenario: ``ringex replay --to-db`` with a config whose ``[database] enabled = false``.
    Expected: refused (exit 1) naming the key, no PostgreSQL made or run, no replay.
    Was (fixed): an embedded cluster initialised and started under the var_dir, the journal
    written into it."""
    never_ran.write_text(never_ran.read_text() + "[database]\nenabled = false\n")
    code, out, err = _cli(["replay", "--to-db", "--quiet", "--config", str(never_ran)], capsys)
    assert code == 1 and "[database] enabled = false" in err, (code, out, err)
    assert "state at seq" not in out
    assert not any(never_ran.parent.glob("var/**/PG_VERSION"))
