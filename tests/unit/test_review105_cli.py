"""Review 105: README.md's "## Operate" and "## Two commands (and a variant)" held to the
``ringex`` CLI mechanically, both ways: every ``ringex`` command line the README shows parses
with ``procs.cli.build_parser()`` and every subcommand and flag that parser has is shown or
named somewhere; what it says may be left out may be, what it calls a usage error exits 2, and
the exit statuses it states are the ones the commands return.

Convention (review 104's, shared helpers in ``readme_operate_claims``): the README is read as
it is when the test runs, and each claim is found in it by a quote (whitespace folded), so a
claim that is reworded fails here, loudly, rather than being checked no longer. A claim checked
and found right is a plain test. Nothing here starts a server or a process: the parser is built
and fed, and ``ringex status``, ``stop`` and a few ``admin`` refusals run in-process against a
config of a temporary directory whose instance never ran.
"""

from __future__ import annotations

import argparse
import inspect
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

import procs.cli
from procs.admin.client import AdminClient, _take_turn
from procs.common.users import MAX_PASSWORD_CHARS
from procs.supervisor.draining import STOP_SLACK_S, stop_bound_s
from procs.supervisor.main import Supervisor
from tests.unit.readme_operate_claims import (
    _claim,
    _sh_lines,
    _spans,
    fixture_stopped,  # noqa: F401  (the fixture stopped)
)

# == 1. the `ringex` CLI ==========================================================================


def _leaves(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Each command of the parser that takes no further subcommand: (its words, its parser)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for name, sub in subs[0].choices.items():
        yield from _leaves(sub, (*path, name))


PARSER = procs.cli.build_parser()
CLI = dict(_leaves(PARSER))


def _arguments(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """A command's arguments by how the README writes them: ``--flag``, or the metavar of a
    positional (``SYMBOL``); help left out."""
    return {
        (a.option_strings[-1] if a.option_strings else str(a.metavar or a.dest).upper()): a
        for a in parser._actions
        if not isinstance(a, argparse._HelpAction)
    }


def _command_path(words: list[str]) -> tuple[tuple[str, ...], list[str]]:
    """The subcommand words at the head of ``words`` (``admin deposit``), and the rest."""
    parser = PARSER
    path: tuple[str, ...] = ()
    while True:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or not words or words[0] not in subs[0].choices:
            return path, words
        parser = subs[0].choices[words[0]]
        path, words = (*path, words[0]), words[1:]


def _readme_command_lines() -> list[str]:
    """The ``ringex`` command lines of the README's ```sh blocks, from ``ringex`` on (one
    line may hold two, ``;`` or ``|`` between)."""
    found = []
    for line in _sh_lines():
        for piece in re.split(r"[;|]", line):
            words = piece.split()
            if words and words[0].endswith("bin/ringex"):
                found.append("ringex " + " ".join(words[1:]))
    return found


def _variants(line: str) -> list[list[str]]:
    """A usage line's argv (after ``ringex``) with every ``[optional]`` part given, and with
    none of them."""
    given = shlex.split(line.replace("[", " ").replace("]", " "))[1:]
    bare = shlex.split(re.sub(r"\[[^\]]*\]", " ", line))[1:]
    return [given] if given == bare else [given, bare]


COMMAND_LINES = _readme_command_lines()
COMMAND_SPANS = [
    s.removeprefix(".venv/bin/") for s in _spans() if re.match(r"(\.venv/bin/)?ringex ", s)
]


def _parse(argv: list[str]) -> argparse.Namespace:
    """``ringex argv`` through the real parser; a usage error fails the test, naming it."""
    try:
        return PARSER.parse_args(argv)
    except SystemExit as exc:
        raise AssertionError(f"`ringex {shlex.join(argv)}` is refused (exit {exc.code})") from exc


def test_the_readme_shows_the_operate_commands() -> None:
    """README passim: the extraction below found the command lines it checks (the Operate
    block alone holds 20), so the tests that follow check something."""
    assert len(COMMAND_LINES) >= 25 and len(COMMAND_SPANS) >= 10


@pytest.mark.parametrize("line", COMMAND_LINES)
def test_every_ringex_command_line_the_readme_shows_parses(line: str) -> None:
    """README ```sh blocks (Two commands, Operate, the journal's replay block): each
    ``.venv/bin/ringex ...`` line, with its ``[optional]`` parts given and left out, is a
    command ``procs/cli.py build_parser()`` takes (subcommands of procs/admin/commands.py
    ``add_admin`` included)."""
    for argv in _variants(line):
        _parse(argv)


@pytest.mark.parametrize("span", sorted(set(COMMAND_SPANS)))
def test_every_ringex_command_named_inline_exists(span: str) -> None:
    """README prose: an inline ``ringex <subcommand> [--flag ...]`` names a command of the
    parser (or a group of them, ``ringex admin``) and only flags that command has."""
    path, rest = _command_path(span.split()[1:])
    assert path, f"{span!r} names no ringex subcommand"
    assert any(leaf[: len(path)] == path for leaf in CLI)
    flags = [w for w in rest if w.startswith("--")]
    if flags:
        assert path in CLI, f"{span!r}: flags after a group of commands"
        assert [f for f in flags if f not in _arguments(CLI[path])] == []


#: What the README says of a command's argument in prose rather than in a command line:
#: (command, argument, the quote).
PROSE_ARGUMENTS: list[tuple[tuple[str, ...], str, str]] = [
    (("replay",), "--quiet", "`replay --quiet` shows no progress bar"),
    (("run",), "--timeout", "`ringex run --detach` that gives up waiting (`--timeout`) stops"),
    (("stop",), "--timeout", "and 30 s for the embedded database and the rest; `--timeout S`"),
    (("admin", "withdraw"), "--key", "as one that timed out does, which `--key` retries it"),
    (("admin", "add-user"), "--comp-id", "Its SenderCompID is the username unless `--comp-id`"),
    (("admin", "add-user"), "--account", "its account the next free one unless `--account` says"),
]
#: The one sentence that names --profile and --config for every command but ``shm``.
PROFILE_QUOTE = (
    "Every `ringex` command but `shm` (which takes `--instance`) takes `--config FILE` in "
    "place of `--profile NAME` (both at once are a usage error, exit 2; neither: `dev`)"
)


def _shown_arguments() -> set[tuple[tuple[str, ...], str]]:
    """(command, argument) for every argument a README command line or inline span gives."""
    shown: set[tuple[tuple[str, ...], str]] = set()
    for line in COMMAND_LINES:
        argv = _variants(line)[0]
        path, _ = _command_path(argv)
        args = _parse(argv)
        for name, action in _arguments(CLI[path]).items():
            given = name in argv if action.option_strings else None
            if given or (given is None and getattr(args, action.dest) != action.default):
                shown.add((path, name))
    for span in COMMAND_SPANS:
        path, rest = _command_path(span.split()[1:])
        shown |= {(path, w) for w in rest if w.startswith("--")}
    return shown


def test_every_cli_subcommand_and_argument_is_documented() -> None:
    """procs/cli.py ``build_parser()`` and procs/admin/commands.py ``add_admin``: each
    subcommand and each of its arguments is given in a README command line, or named in
    prose (``PROSE_ARGUMENTS``; ``--profile`` and ``--config`` of every command but ``shm``
    by Configure's one sentence), so an operator reading the README meets every one."""
    _claim(PROFILE_QUOTE)
    documented = _shown_arguments()
    for path, name, quote in PROSE_ARGUMENTS:
        _claim(quote)
        documented.add((path, name))
    documented |= {(p, f) for p in CLI if p[0] != "shm" for f in ("--profile", "--config")}
    missing = [
        f"ringex {' '.join(path)} {name}"
        for path, parser in CLI.items()
        for name in _arguments(parser)
        if (path, name) not in documented
    ]
    assert missing == []


def test_profile_and_config_are_every_command_s_but_shm_s_and_default_to_dev() -> None:
    """README Configure (the sentence Operate relies on): every command but ``shm`` takes
    ``--config FILE`` or ``--profile NAME``, not both (usage, exit 2), neither meaning
    ``dev`` (procs/cli.py profile_args, _profile); ``shm`` takes ``--instance``."""
    _claim(PROFILE_QUOTE)
    for path, parser in CLI.items():
        names = set(_arguments(parser))
        if path[0] == "shm":
            assert "--instance" in names and "--profile" not in names
        else:
            assert {"--profile", "--config"} <= names, path
    with pytest.raises(SystemExit) as refused:
        PARSER.parse_args(["status", "--profile", "dev", "--config", "x.toml"])
    assert refused.value.code == 2
    assert procs.cli._profile(argparse.Namespace(config=None, profile=None)) == "dev"


def test_stop_waits_by_default_as_long_as_a_stop_may_take() -> None:
    """README Operate, Stopping: "`ringex stop` waits as long as that may take (3 x 20 s of
    grace, `drain_timeout_s` and 30 s for the embedded database and the rest; `--timeout S`
    to wait less)" (procs/cli.py _stop, procs/supervisor/draining.py stop_bound_s)."""
    _claim(
        "`ringex stop` waits as long as that may take (3 x 20 s of grace, `drain_timeout_s` "
        "and 30 s for the embedded database and the rest; `--timeout S` to wait less)"
    )
    assert _arguments(CLI[("stop",)])["--timeout"].default is None  # None: the bound below
    assert Supervisor.STOP_GRACE_S == 20.0 and STOP_SLACK_S == 30.0
    assert stop_bound_s(7.0, Supervisor.STOP_GRACE_S) == 3 * 20 + 7 + 30


#: (README quote, command, argument) of an argument the README says may be left out, and
#: what that then means: no value given (None), so the command takes every symbol, the next
#: free account, the username.
OPTIONAL_CLAIMS: list[tuple[str, tuple[str, ...], str]] = [
    ("expire DAY orders (no symbol: every symbol)", ("admin", "end-session"), "SYMBOL"),
    ("its matcher (no symbol: every one) writes a", ("admin", "snapshot"), "SYMBOL"),
    ("cancel-all --account 7 [--symbol BTC-USD]", ("admin", "cancel-all"), "--symbol"),
    ("deposit --account 7 --asset USD --amount 250.50 [--key 42]", ("admin", "deposit"), "--key"),
    (
        "Its SenderCompID is the username unless `--comp-id` says",
        ("admin", "add-user"),
        "--comp-id",
    ),
    ("its account the next free one unless `--account` says", ("admin", "add-user"), "--account"),
]


@pytest.mark.parametrize(
    ("quote", "path", "name"), OPTIONAL_CLAIMS, ids=[c[0][:30] for c in OPTIONAL_CLAIMS]
)
def test_what_the_readme_says_may_be_left_out_may_be(
    quote: str, path: tuple[str, ...], name: str
) -> None:
    """README Operate's block and Two commands: an argument shown ``[in brackets]`` or
    said to have a default is optional in the parser, its default None (the command then
    takes every symbol, a fresh key, the username, the next free account)."""
    _claim(quote)
    action = _arguments(CLI[path])[name]
    assert not action.required and action.default is None
    if not action.option_strings:
        assert action.nargs == "?"


#: (id, README quote, argv) the README calls usage errors (argparse: exit 2).
USAGE_ERRORS: list[tuple[str, str, list[str]]] = [
    ("both-profiles", PROFILE_QUOTE, ["run", "--profile", "dev", "--config", "x.toml"]),
    (
        "cancel-all-whose",
        "`--account` or `--every-account` must be said",
        ["admin", "cancel-all", "--symbol", "BTC-USD"],
    ),
    (
        "cancel-all-both",
        "`--account` or `--every-account` must be said",
        ["admin", "cancel-all", "--account", "7", "--every-account"],
    ),
    (
        "password-both",
        "2 usage (arguments, a config that does not load)",
        ["admin", "add-user", "--username", "a", "--password", "p", "--password-stdin"],
    ),
    (
        "timeout-negative",
        "2 usage (arguments, a config that does not load)",
        ["stop", "--timeout", "-1"],
    ),
]


@pytest.mark.parametrize(
    ("quote", "argv"), [u[1:] for u in USAGE_ERRORS], ids=[u[0] for u in USAGE_ERRORS]
)
def test_the_usage_errors_the_readme_names_exit_2(
    quote: str, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """README Operate ("Exit status: ... 2 usage (arguments, ...)") and Configure: each
    argument combination it calls a usage error is refused by the parser, exit 2."""
    _claim(quote)
    with pytest.raises(SystemExit) as refused:
        PARSER.parse_args(argv)
    assert refused.value.code == 2
    capsys.readouterr()


#: (id, README quote, argv before --config, exit status, what stdout or stderr says).
EXITS: list[tuple[str, str, list[str], int, str]] = [
    (
        "stop-stopped",
        "0 done (`stop` of an instance that is not running",
        ["stop"],
        0,
        "is not running",
    ),
    (
        "status-stopped",
        "and `status` of a stopped one, are 0)",
        ["status"],
        0,
        ": stopped (primary)",
    ),
    (
        "wait-ready-0",
        "or with `--wait-ready --timeout 0`, looks once",
        ["status", "--wait-ready", "--timeout", "0"],
        1,
        "not ready within 0.0 s",
    ),
    (
        "halt-unknown-symbol",
        "an unknown symbol (`halt`, `resume`, `end-session`, `cancel-all --symbol`)",
        ["admin", "halt", "NOPE"],
        2,
        "(symbols: BTC-USD, ETH-USD)",
    ),
    (
        "deposit-signed",
        "a signed `--amount` (`deposit` and `withdraw` say which way)",
        ["admin", "deposit", "--account", "7", "--asset", "USD", "--amount", "-5"],
        2,
        "must be positive",
    ),
    (
        "admin-not-running",
        "1 not running, busy",
        ["admin", "resume", "BTC-USD"],
        1,
        "is not running",
    ),
]


@pytest.mark.parametrize(
    ("quote", "argv", "code", "says"), [e[1:] for e in EXITS], ids=[e[0] for e in EXITS]
)
def test_the_exit_statuses_the_readme_states(
    stopped: Path,
    quote: str,
    argv: list[str],
    code: int,
    says: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """README Operate, "Exit status: 0 done (`stop` of an instance that is not running, and
    `status` of a stopped one, are 0); 1 not running, ...; 2 usage", and the refusals checked
    before anything is attached (procs/cli.py main, _stop, _status; procs/admin/commands.py
    _admin_args_refused, admin_client): each on an instance that never ran."""
    _claim(quote)
    assert procs.cli.main([*argv, "--config", str(stopped)]) == code
    out = capsys.readouterr()
    assert says in out.out + out.err


def test_admin_commands_take_turns_waiting_10_s() -> None:
    """README Operate: "Admin commands take turns on `var/<instance>/run/admin.lock`: a
    second one waits up to 10 s for the first" (procs/admin/client.py AdminClient,
    _take_turn)."""
    _claim(
        "Admin commands take turns on `var/<instance>/run/admin.lock`: a second one waits "
        "up to 10 s"
    )
    assert inspect.signature(AdminClient).parameters["wait_s"].default == 10.0
    assert '"run" / "admin.lock"' in inspect.getsource(_take_turn)


def test_a_password_is_at_most_the_rest_login_s_1024_characters() -> None:
    """README Operate: `add-user` refuses "a password that ... is past the REST login's 1024
    characters" (procs/common/users.py MAX_PASSWORD_CHARS)."""
    _claim("is past the REST login's 1024 characters")
    assert MAX_PASSWORD_CHARS == 1024
