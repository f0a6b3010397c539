"""Review 105: README.md's "## Operate" (with its REST subsection), "## Production with
systemd", "## Two commands (and a variant)" and "## Layout" held to the code mechanically,
both ways where that makes sense: every ``ringex`` command line the README shows parses with
``procs.cli.build_parser()`` and every subcommand and flag that parser has is shown or named
somewhere; every ``make`` target named is the Makefile's, and every target of its .PHONY is
named; every path Layout names exists and every module under shm/, procs/, config/ and
scripts/ is named there; every Prometheus metric listed is one the supervisor's collector
(``procs/supervisor/metrics.py``) exports, with its labels, and every one exported is listed;
every ``scripts/*.py`` command line shown parses with its script's own parser; and the keys
``ringex status --json`` is said to print are the keys it prints.

Convention (review 104's): the README is read as it is when the test runs, and each claim is
found in it by a quote (whitespace folded), so a claim that is reworded fails here, loudly,
rather than being checked no longer. A claim checked and found right is a plain test. Nothing
here starts a server or a process: parsers are built and fed, the collector is asked for its
families, ``ringex status``, ``stop`` and a few ``admin`` refusals run in-process against a
config of a temporary directory whose instance never ran, and the scripts' ``main`` runs only
up to its ``parse_args``. Two disagreements were found, both the README's to mend: Layout did
not name three of config/'s modules, and Operate named most keys of ``status --json`` nowhere.
Each was pinned as a strict xfail and mended in the same change."""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import json
import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

import procs.cli
from config import load_profile
from config.schema import RingexConfig
from procs.admin.client import AdminClient, _take_turn
from procs.common.run_files import run_dir, status_path
from procs.common.stats import LATENCY_BUCKETS_US, REJECT_REASONS, ROUTER_STATES
from procs.common.users import MAX_PASSWORD_CHARS
from procs.supervisor import metrics as metrics_module
from procs.supervisor.draining import STOP_SLACK_S, stop_bound_s
from procs.supervisor.main import Supervisor
from procs.supervisor.metrics import ProcessSample, RingexCollector
from procs.supervisor.plan import plan
from shm.liveness import process_start
from tests.scripts_loader import load_script

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()
MAKEFILE = (ROOT / "Makefile").read_text()


def _folded(text: str) -> str:
    """``text`` with its whitespace folded, and a comment's continuation lines joined."""
    return " ".join(re.sub(r"\n\s*#(?!#)", " ", text).split())


def _claim(quote: str) -> None:
    """The README still says ``quote`` (whitespace folded): the anchor of a claim checked."""
    assert _folded(quote) in _folded(README), f"README no longer says {quote!r}"


def _section(title: str) -> str:
    """The text of README section ``## title``, up to the next ``## ``."""
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else len(README)]


def _sh_lines() -> list[str]:
    """Every line of the README's ```sh blocks, its comment cut."""
    return [
        re.sub(r"(^|\s)#.*$", "", line).rstrip()
        for block in re.findall(r"```sh\n(.*?)```", README, re.S)
        for line in block.splitlines()
    ]


def _spans() -> list[str]:
    """Every inline code span of the README (not a fence), whitespace folded."""
    return [" ".join(s.split()) for s in re.findall(r"(?<!`)`([^`]+)`(?!`)", README)]


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


@pytest.fixture
def stopped(tmp_path: Path, instance: str) -> Path:
    """A config of an instance that never ran, its var_dir in ``tmp_path``."""
    path = tmp_path / "rv105.toml"
    path.write_text(f'instance = "{instance}"\nvar_dir = "{tmp_path / "var"}"\n')
    return path


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


# == 2. make ======================================================================================


def _make_variables() -> dict[str, str]:
    return dict(re.findall(r"^([A-Z_]+)\s*[:?]?=\s*(.*?)\s*$", MAKEFILE, re.M))


def _expand(text: str) -> str:
    """``text`` with the Makefile's plain variables (``$(PY)``, ``$(VENV)``) put in."""
    plain = {k: v for k, v in _make_variables().items() if "$(shell" not in v}
    for _ in range(3):
        text = re.sub(r"\$\(([A-Z_]+)\)", lambda m: plain.get(m[1], m[0]), text)
    return text


def _make_rules() -> dict[str, tuple[list[str], str]]:
    """Each Makefile target: (its prerequisites, its recipe)."""
    rules: dict[str, tuple[list[str], str]] = {}
    lines = MAKEFILE.splitlines()
    for i, line in enumerate(lines):
        rule = re.match(r"^([$()A-Za-z][\w$().-]*)\s*:(?!=)\s*(.*)$", line)
        if rule is None or rule[1] == ".PHONY":
            continue
        recipe = []
        for body in lines[i + 1 :]:
            if not body.startswith("\t"):
                break
            recipe.append(body.strip())
        rules[rule[1]] = (rule[2].split(), "\n".join(recipe))
    return rules


RULES = _make_rules()
PHONY = re.search(r"^\.PHONY:(.*)$", MAKEFILE, re.M)[1].split()  # type: ignore[index]


def _readme_make_commands() -> list[str]:
    """``make ...`` as the README writes it: inline spans and ```sh lines."""
    return [s for s in _spans() if re.match(r"make [a-z]", s)] + [
        line for line in _sh_lines() if line.startswith("make ")
    ]


MAKE_COMMANDS = _readme_make_commands()


def test_every_make_target_the_readme_names_exists() -> None:
    """README passim (Two commands, Operate's shm block, Benchmarks): each ``make TARGET
    [VAR=value]`` it shows names a target of the Makefile, and each VAR is one the Makefile
    reads."""
    assert len(MAKE_COMMANDS) >= 20
    wrong = []
    for command in MAKE_COMMANDS:
        target, *assignments = command.split()[1:]
        if target not in RULES:
            wrong.append(command)
        for assignment in assignments:
            name = assignment.split("=")[0]
            if f"$({name})" not in MAKEFILE:
                wrong.append(f"{command}: {name}")
    assert wrong == []


def test_every_phony_target_is_named_in_the_readme() -> None:
    """Makefile .PHONY: each target (every one is a user's: the steps of ``make test``, the
    runs, the benchmarks, the cleaning) is named in the README as ``make TARGET``."""
    named = {command.split()[1] for command in MAKE_COMMANDS}
    assert sorted(set(PHONY) - named) == []
    assert sorted(set(PHONY) - set(RULES)) == []


def _recipe(target: str) -> str:
    return _expand(RULES[target][1])


#: (README quote, what the Makefile must hold for it: a target's recipe or prerequisites).
MAKE_CLAIMS: list[tuple[str, str, str, str]] = [
    (
        "make clean-shm # = ringex shm rm --stale",
        "clean-shm",
        "recipe",
        ".venv/bin/ringex shm rm --stale",
    ),
    ("make run MM=1 # ... and a demo market maker", "run", "recipe", "$(if $(MM),--market-maker)"),
    ("`make run PROFILE=my.toml` runs another profile", "run", "recipe", "--profile $(PROFILE)"),
    ("make run # the exchange with the dev profile", "run", "recipe", "scripts/run_demo.py"),
    (
        "`make run` too creates `.venv` with the dev extra and runs the apt step",
        "run",
        "prereqs",
        "$(STAMP) system-deps",
    ),
    (
        "`make lint`, `make typecheck` and `make pytest` are `make test`'s steps",
        "test",
        "prereqs",
        "lint typecheck pytest",
    ),
    ("runs ruff,", "lint", "recipe", ".venv/bin/ruff check ."),
    ("mypy and pytest", "typecheck", "recipe", ".venv/bin/mypy"),
    ("mypy and pytest", "pytest", "recipe", ".venv/bin/python -m pytest"),
    ("`make test PYTEST_WORKERS=0` runs one process", "pytest", "recipe", "-n $(PYTEST_WORKERS)"),
    ("each taking whole test files", "pytest", "recipe", "--dist loadfile"),
    ("`make venv` only installs", "venv", "prereqs", "$(STAMP)"),
    ("`make system-deps` only runs the apt step", "system-deps", "recipe", "apt-get install"),
    ("`make clean` removes `.venv` **and `var/`**", "clean", "recipe", "rm -rf .venv var"),
    (
        "`make ring-demo` runs the substrate alone",
        "ring-demo",
        "recipe",
        ".venv/bin/python scripts/ring_demo.py",
    ),
    (
        "`make bench-records` (`.venv/bin/python -m tests.bench.bench_records`, part of "
        "`make bench`)",
        "bench-records",
        "recipe",
        ".venv/bin/python -m tests.bench.bench_records",
    ),
    ("part of `make bench`)", "bench", "prereqs", "bench-records"),
    (
        "`make bench-failover` (`tests/bench/bench_failover.py`)",
        "bench-failover",
        "recipe",
        "-m tests.bench.bench_failover",
    ),
]


@pytest.mark.parametrize(
    ("quote", "target", "where", "holds"),
    MAKE_CLAIMS,
    ids=[f"{c[1]}-{i}" for i, c in enumerate(MAKE_CLAIMS)],
)
def test_make_targets_do_what_the_readme_says(
    quote: str, target: str, where: str, holds: str
) -> None:
    """README Two commands, Operate and Benchmarks: what it says a target runs is in that
    target's recipe (Makefile variables put in) or prerequisites."""
    _claim(quote)
    prereqs, recipe = RULES[target]
    if where == "prereqs":
        assert holds in " ".join(prereqs)
    else:
        assert holds in recipe or holds in _expand(recipe)


def test_make_run_defaults_to_dev_and_the_soak_to_2_minutes_outside_bench() -> None:
    """README Two commands ("`make run` the exchange with the dev profile") and Benchmarks
    ("`make bench-soak SOAK=600`; the target defaults to 2 minutes so that it stays out of
    `make bench`"): ``PROFILE ?= dev``, ``SOAK ?= 120``, and ``bench`` does not run
    ``bench-soak``; the benchmark modules the targets run exist."""
    _claim("the target defaults to 2 minutes so that it stays out of `make bench`")
    variables = _make_variables()
    assert variables["PROFILE"] == "dev" and variables["SOAK"] == "120"
    _claim("pytest runs in two pytest-xdist workers where there are two CPUs or more")
    assert "print(min(2, n) if n > 1 else 0)" in variables["PYTEST_WORKERS"]
    assert "bench-soak" not in RULES["bench"][0]
    for target, (_, recipe) in RULES.items():
        for module in re.findall(r"-m (tests\.bench\.\w+)", recipe):
            assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), target


def test_ci_runs_make_test() -> None:
    """README Two commands: "CI runs `.ci/run`, which is `make test`"."""
    _claim("CI runs `.ci/run`, which is `make test`")
    lines = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if not ln.startswith("#")]
    assert lines[-1].strip() == "make test"


# == 3. Layout ====================================================================================

LAYOUT = re.search(r"\n## Layout\n+```\n(.*?)```", README, re.S)[1]  # type: ignore[index]


def _layout_blocks() -> dict[str, str]:
    """Layout's text by what it describes: ``shm``, ``config``, ``procs`` (its own line),
    ``procs/<package>`` and ``procs/cli.py``, ``scripts``, ``tests``, ``var``."""
    blocks: dict[str, list[str]] = {}
    key = ""
    for line in LAYOUT.splitlines():
        top = re.match(r"^(\w+)/(\s|$)", line)
        inner = re.match(r"^  (\w+/?|\w+\.py)\s", line)
        if top:
            key = top[1]
        elif inner and key.split("/")[0] == "procs":
            key = f"procs/{inner[1].rstrip('/')}"
        blocks.setdefault(key, []).append(line)
    return {k: "\n".join(v) for k, v in blocks.items()}


BLOCKS = _layout_blocks()
#: Names Layout gives that are not repository paths: files a running instance writes
#: (``var/<instance>/run/status.json``, the journal's ``units.json``), and the ``main.py``
#: of "one package per process (each a thin main.py ...)".
RUNTIME_NAMES = {"status.json", "units.json", "main.py"}


def _layout_names() -> Iterator[tuple[str, str]]:
    """(block, a file or directory name Layout gives in it), ``{a,b}`` expanded."""
    for key, text in BLOCKS.items():
        files = re.findall(
            r"(?<![\w/.{])((?:\w+/)*(?:\w+|\w*\{[\w,]+\})\.(?:py|json|toml))\b", text
        )
        dirs = re.findall(r"(?<![\w/<>.])((?:\w+/)+)(?=[\s),]|$)", text)
        for name in files + dirs:
            braces = re.match(r"(.*)\{([\w,]+)\}(.*)", name)
            for one in (
                [braces[1] + b + braces[3] for b in braces[2].split(",")] if braces else [name]
            ):
                yield key, one


def _resolve(key: str, name: str) -> Path | None:
    """Where ``name`` given in block ``key`` is: in that package, under procs/ or config/,
    among the scripts, or from the root."""
    base = ROOT / key if (ROOT / key).is_dir() else ROOT / key.partition("/")[0]
    for candidate in (
        base / name,
        ROOT / name,
        ROOT / "procs" / name,
        ROOT / "config" / name,
        ROOT / "scripts" / name,
        ROOT / "tests" / name,
    ):
        if candidate.exists():
            return candidate
    return None


def test_every_path_layout_names_exists() -> None:
    """README Layout: each module, script, config file and directory it names
    (``record_codec.py``, ``profiles/{dev,test,latency}.toml``, ``static/``,
    ``common/market_snapshots.py``, ``tests/scripts_loader.py``, ...) is in the repository
    where its block puts it; ``var/`` is the git-ignored runtime directory it says."""
    names = list(_layout_names())
    assert len(names) >= 200
    missing = [
        f"{key}: {name}"
        for key, name in names
        if name not in RUNTIME_NAMES and name != "var/" and _resolve(key, name) is None
    ]
    assert missing == []
    assert "var/" in (ROOT / ".gitignore").read_text().split()


def _named_in_layout(module: Path) -> bool:
    """Layout names ``module`` (a path under the root): as ``name.py`` in its package's
    block, as ``<package>/name.py`` anywhere, as a directory its package's block names
    (``market/``), or as words in its block (``records``, ``result codes``, ``loader``)."""
    parts = module.relative_to(ROOT).parts
    key = "/".join(parts[:2]) if parts[0] == "procs" else parts[0]
    text = BLOCKS.get(key, "")
    if len(parts) > (3 if parts[0] == "procs" else 2):  # in a subpackage: named as a whole
        return re.search(rf"(?<![\w/]){re.escape(parts[-2])}/", text) is not None
    if re.search(rf"(?<![\w/]){re.escape(module.name)}", text):
        return True
    if re.search(rf"(?<![\w/]){re.escape('/'.join(parts[1:]))}", LAYOUT):
        return True
    return re.search(rf"\b{module.stem.replace('_', '[ _]')}\b", text) is not None


def _modules(top: str) -> list[Path]:
    return sorted(
        p
        for p in (ROOT / top).rglob("*.py")
        if p.name != "__init__.py" and "__pycache__" not in p.parts
    )


@pytest.mark.parametrize(
    "top",
    [
        "shm",
        "procs",
        "config",
        "scripts",
    ],
)
def test_every_module_is_named_in_layout(top: str) -> None:
    """README Layout, the other way: every module under shm/, procs/ (procs/cli.py and each
    package's), config/ and scripts/ is named in its block (``__init__.py`` aside; a
    subpackage's modules by the subpackage, ``core/market/``)."""
    modules = _modules(top)
    assert modules
    assert [str(m.relative_to(ROOT)) for m in modules if not _named_in_layout(m)] == []


def test_each_process_package_is_a_main_py() -> None:
    """README Layout: "procs/ one package per process (each a thin main.py around pure
    logic)": every process the supervisor plans runs ``procs.<package>.main``, a file that
    exists (the dev profile, and a standby's)."""
    _claim("one package per process (each a thin main.py around pure logic)")
    dev = load_profile("dev")
    standby = RingexConfig(replication=type(dev.replication)(primary="primary:9900"))
    modules = {spec.module for cfg in (dev, standby) for spec in plan(cfg)}
    modules.add("procs.supervisor.main")
    assert len(modules) >= 6
    for module in modules:
        assert re.fullmatch(r"procs\.\w+\.main", module), module
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), module


def test_the_paths_operate_and_systemd_name_exist() -> None:
    """README Two commands, Operate (its REST subsection too) and Production with systemd:
    each backticked repository path they name (``procs/supervisor/metrics.py``,
    ``procs/common/sd_notify.py``, ``config/profiles/latency.toml``,
    ``tests/unit/test_review70_binance.py``, ...) exists."""
    text = "".join(
        _section(t) for t in ("Two commands (and a variant)", "Operate", "Production with systemd")
    )
    paths = set(re.findall(r"`((?:procs|shm|config|scripts|tests)/[^`\s]*)`", text))
    assert len(paths) >= 15
    assert sorted(p for p in paths if not (ROOT / p).exists()) == []


#: (README quote, module, constant, value): a bound the REST subsection names by its
#: constant and states.
CONSTANT_CLAIMS: list[tuple[str, str, str, object]] = [
    (
        "at most 20,000 are kept (`MAX_LIVE_FILLS` in `procs/gateway/live_trades.py`",
        "procs.gateway.live_trades",
        "MAX_LIVE_FILLS",
        20_000,
    ),
    (
        "at most 20,000 such orders are indexed (`MAX_UNFILED_ORDERS` in "
        "`procs/gateway/unfiled_orders.py`)",
        "procs.gateway.unfiled_orders",
        "MAX_UNFILED_ORDERS",
        20_000,
    ),
    (
        "the last 30,000 events of accounts not using the API are kept for that, "
        "`RECENT_EVENTS` in `procs/gateway/recent_elsewhere.py`",
        "procs.gateway.recent_elsewhere",
        "RECENT_EVENTS",
        30_000,
    ),
    (
        "dropped 10 s after its close frame was queued (`CLOSE_GRACE_S` in "
        "`procs/gateway/stream_subscriber.py`",
        "procs.gateway.stream_subscriber",
        "CLOSE_GRACE_S",
        10.0,
    ),
]


@pytest.mark.parametrize(
    ("quote", "module", "name", "value"), CONSTANT_CLAIMS, ids=[c[2] for c in CONSTANT_CLAIMS]
)
def test_the_constants_the_rest_subsection_names_hold_what_it_says(
    quote: str, module: str, name: str, value: object
) -> None:
    """README Operate, The REST API and the private stream: each bound named by its
    constant and file is that constant, with the value stated."""
    _claim(quote)
    assert getattr(importlib.import_module(module), name) == value


# == 4. metrics ===================================================================================


def _expand_braces(template: str) -> list[str]:
    """``a_{b, c}_d`` -> ``a_b_d``, ``a_c_d`` (one group)."""
    group = re.search(r"\{([^}]*)\}", template)
    if group is None:
        return [template]
    return [
        template[: group.start()] + alt.strip() + template[group.end() :]
        for alt in group[1].split(",")
    ]


def _readme_metrics() -> dict[str, tuple[str, ...]]:
    """The metrics README Operate lists: name (as scraped: ``_total`` on counters) -> labels."""
    listed: dict[str, tuple[str, ...]] = {}
    for written in re.findall(r"`(ringex_[^`]*)`", README):
        span = "".join(written.split())
        labels: tuple[str, ...] = ()
        if span.endswith("}"):
            start = span.rindex("{")
            labels, span = tuple(span[start + 1 : -1].split(",")), span[:start]
        for name in _expand_braces(span):
            listed[name] = labels
    return listed


@pytest.fixture(scope="module")
def exported() -> dict[str, tuple[str, str, tuple[str, ...]]]:
    """The families the collector exports, by the name a scrape shows (a counter's with
    ``_total``, the info's with ``_info``, a histogram's base name): (type, help, labels).
    Built as tests/unit/supervisor/test_metrics.py builds it, without rings or pages: each
    family is there, empty where nothing feeds it."""
    cfg = load_profile("test")
    processes = [ProcessSample("router", 0, False, False, 0, 0.0)]
    collector = RingexCollector(cfg, "test", {}, lambda: processes, lambda: "running")
    families = {}
    for family in collector.collect():
        suffix = {"counter": "_total", "info": "_info"}.get(family.type, "")
        if family.type == "info":
            labels = tuple(family.samples[0].labels)
        else:  # a state set's one label is its own name, by convention: none listed
            labels = tuple(getattr(family, "_labelnames", ()))
        families[family.name + suffix] = (family.type, family.documentation, labels)
    collector.close()
    return families


def test_every_metric_the_readme_lists_is_exported_with_its_labels(
    exported: dict[str, tuple[str, str, tuple[str, ...]]],
) -> None:
    """README Operate, Metrics: each name it lists (``ringex_ring_{capacity, ...}{ring}``
    expanded) is a family procs/supervisor/metrics.py RingexCollector exports under that
    name, with exactly the labels listed; the latency ones are histograms."""
    listed = _readme_metrics()
    assert len(listed) >= 35
    wrong = {
        name: (labels, exported.get(name))
        for name, labels in listed.items()
        if name not in exported or exported[name][2] != labels
    }
    assert wrong == {}
    assert all(exported[n][0] == "histogram" for n in listed if n.endswith("_latency_seconds"))


def test_every_exported_metric_is_listed_in_the_readme(
    exported: dict[str, tuple[str, str, tuple[str, ...]]],
) -> None:
    """procs/supervisor/metrics.py, the other way: every family the collector exports is
    listed in README Operate's Metrics paragraph."""
    assert sorted(set(exported) - set(_readme_metrics())) == []


def test_the_label_values_and_buckets_the_readme_lists() -> None:
    """README Operate, Metrics: the ``reason`` values of ``ringex_fix_rejects_by_reason_total``
    (procs/common/stats.py REJECT_REASONS), the ``state`` values of
    ``ringex_router_time_seconds_total`` (ROUTER_STATES), the buckets "from 10 us to 1 s"
    (LATENCY_BUCKETS_US) and the server's "16 connections at once, each closed after 10 s
    without a request" (metrics.py MAX_SCRAPES, _Quiet.timeout)."""
    _claim(
        "(the OrdRejReason sent: `unknown_symbol`, `exchange_closed`, `exceeds_limit`, "
        "`duplicate_order`, `unsupported`, `incorrect_quantity`, `unknown_account`, and "
        "`other` for 99 and any other value)"
    )
    assert list(REJECT_REASONS.values()) == [
        "unknown_symbol", "exchange_closed", "exceeds_limit", "duplicate_order",
        "unsupported", "incorrect_quantity", "unknown_account", "other",
    ]  # fmt: skip
    assert REJECT_REASONS[99] == "other"
    metrics = _folded(_section("Operate"))
    states = re.findall(r"`(\w+)`", metrics[metrics.index("where the sequencer's time") :])[:6]
    assert tuple(states) == ROUTER_STATES
    _claim("Their buckets run from 10 us to 1 s")
    assert LATENCY_BUCKETS_US[0] == 10 and LATENCY_BUCKETS_US[-1] == 1_000_000
    _claim("it serves 16 connections at once, each closed after 10 s without a request")
    assert metrics_module.MAX_SCRAPES == 16 and metrics_module._Quiet.timeout == 10.0


# == 5. scripts ===================================================================================


#: argparse's own ``parse_args``, which the patched one below calls (a second patch in one
#: test must not call the first).
_PARSE_ARGS = argparse.ArgumentParser.parse_args


class _Parsed(Exception):  # noqa: N818 (a signal, not an error)
    """What a script's ``parse_args`` made of the argv given, raised to stop its ``main``."""

    def __init__(self, parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
        super().__init__()
        self.parser, self.namespace = parser, args


def _script_parse(
    name: str, argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """``scripts/<name>.py argv`` through the script's own parser: its ``main`` runs up to
    ``parse_args`` and no further."""
    module = load_script(name, "rv105")

    def parse(self: argparse.ArgumentParser, args: Any = None, namespace: Any = None) -> NoReturn:
        try:
            parsed = _PARSE_ARGS(self, argv)
        except SystemExit as exc:
            raise AssertionError(f"scripts/{name}.py {shlex.join(argv)}: exit {exc.code}") from exc
        raise _Parsed(self, parsed)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse)
    with pytest.raises(_Parsed) as parsed:
        module.main()
    return parsed.value.parser, parsed.value.namespace


def _readme_script_lines() -> list[tuple[str, list[str]]]:
    """(script, argv) of every script command line the README shows: ```sh lines, inline
    spans with arguments (``failover.py demote``), and what ``make run MM=1`` runs."""
    found = []
    pattern = r"(?:\.venv/bin/python )?(?:scripts/)?(\w+)\.py((?:\s+[^\s`#]+)+)"
    for text in [*_sh_lines(), *_spans()]:
        for m in re.finditer(pattern, text):
            if (ROOT / "scripts" / f"{m[1]}.py").is_file():
                found.append((m[1], shlex.split(m[2])))
    run = (
        _recipe("run")
        .replace("$(PROFILE)", "dev")
        .replace("$(if $(MM),--market-maker)", "--market-maker")
    )
    found.append(("run_demo", shlex.split(run.split("scripts/run_demo.py")[1])))
    return found


SCRIPT_LINES = _readme_script_lines()


def test_the_readme_shows_script_command_lines() -> None:
    """README Two commands, Hot standby, Production with systemd: the lines checked below
    were found (failover's three, systemd_units' four, ring_demo's, run_demo's)."""
    assert {s for s, _ in SCRIPT_LINES} == {"failover", "systemd_units", "ring_demo", "run_demo"}
    assert len(SCRIPT_LINES) >= 10


@pytest.mark.parametrize(
    ("script", "argv"), SCRIPT_LINES, ids=[f"{s}:{' '.join(a)}" for s, a in SCRIPT_LINES]
)
def test_every_script_command_line_the_readme_shows_parses(
    script: str, argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """README: each ``scripts/<name>.py ...`` line it shows (and the Makefile's ``run``
    recipe, which ``make run MM=1`` is said to be) is taken by that script's argparse
    parser."""
    _script_parse(script, argv, monkeypatch)


#: (script, option, README quote) for a script option named in prose.
SCRIPT_PROSE: list[tuple[str, str, str]] = [
    ("failover", "--force", "(`--force` promotes anyway, but never the last)"),
    ("failover", "--new-address", "(`--new-address host:port` on two hosts)"),
    ("systemd_units", "--watchdog-sec", "`WatchdogSec=30s` (`--watchdog-sec`, 0 turns it off"),
    ("systemd_units", "--uid", "`--uid ringex` runs the processes as that user"),
    ("systemd_units", "--user", "`--user` uses your own manager"),
    ("run_demo", "--profile", "`make run PROFILE=my.toml` runs another profile"),
]


@pytest.mark.parametrize("script", ["failover", "systemd_units", "ring_demo", "run_demo"])
def test_every_operator_script_option_is_documented(
    script: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator scripts' parsers, the other way: each option and choice they show in
    ``--help`` (``supervise`` and failover's suppressed options are promote's own step) is
    given in a README command line or named in prose."""
    argv = next(a for s, a in SCRIPT_LINES if s == script)
    parser, _ = _script_parse(script, argv, monkeypatch)
    documented = {w for s, a in SCRIPT_LINES if s == script for w in a}
    for name, option, quote in SCRIPT_PROSE:
        if name == script:
            _claim(quote)
            documented.add(option)
    shown: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        if action.option_strings:
            shown.append(action.option_strings[-1])
        else:
            shown += [c for c in action.choices or () if c != "supervise"]
    assert [o for o in shown if o not in documented] == []


def test_the_script_defaults_the_readme_states(monkeypatch: pytest.MonkeyPatch) -> None:
    """README Two commands: "`make ring-demo` runs ... for 3 s with the dev profile's wait
    strategy" (ring_demo's defaults; the recipe passes none), the market maker "quotes five
    levels a side" as MM1 and MM2, from the accounts 201 and 202 run_demo gives them, logging
    to ``var/dev/run/market-maker.log``; Production with systemd: ``WatchdogSec=30s``."""
    _claim(
        "`make ring-demo` runs the substrate alone: three processes over two rings, for 3 s "
        "with the dev profile's wait strategy"
    )
    _, ring = _script_parse("ring_demo", [], monkeypatch)
    assert (ring.profile, ring.seconds) == ("dev", 3.0)
    assert _recipe("ring-demo").endswith("scripts/ring_demo.py")
    _claim("MM1 (account 201 where it is new;")
    _claim("quotes five levels a side per symbol")
    _claim("MM2 (account 202)")
    _, maker = _script_parse("market_maker", [], monkeypatch)
    assert (maker.levels, maker.maker.split(":")[0], maker.taker.split(":")[0]) == (5, "MM1", "MM2")
    demo = load_script("run_demo", "rv105")
    assert [(u[0], u[2]) for u in demo.MARKET_MAKER_USERS] == [("MM1", 201), ("MM2", 202)]
    _claim("log in `var/dev/run/market-maker.log`")
    assert run_dir(load_profile("dev")) == Path("var/dev/run")
    assert '"market-maker.log"' in inspect.getsource(demo.main)
    _claim("`WatchdogSec=30s` (`--watchdog-sec`, 0 turns it off")
    _, units = _script_parse("systemd_units", ["start"], monkeypatch)
    assert units.watchdog_sec == 30


def test_the_units_systemd_section_names() -> None:
    """README Production with systemd: with the shipped latency profile (instance ``prod``),
    one unit per process of ``plan(cfg)`` named ``ringex-prod-<process>.service``, all in
    ``ringex-prod.slice`` (a dash escaped, ``ringex-prod\\x2da.slice``), the logs line
    ``journalctl _SYSTEMD_SLICE=ringex-prod.slice -f``; each ``Type=notify`` (the
    database writer's too) with ``Restart=on-failure``, ``KillMode=mixed``, 20 s to stop,
    ``StartLimitBurst``/``StartLimitIntervalSec`` from restart_limit and restart_window_s,
    ``WatchdogSec`` at least twice ``database.retry_max_s`` for the writer, and a ``$`` in a
    path written ``$$`` (scripts/systemd_units.py)."""
    _claim(
        "`prod.toml` below is your production profile (a copy of "
        "`config/profiles/latency.toml`, whose `instance` is `prod`"
    )
    _claim(
        "(`ringex-prod-matcher-m1`, `ringex-prod-router`, `ringex-prod-dbwriter`, "
        "`ringex-prod-marketdata`, `ringex-prod-gateway-gw1`)"
    )
    _claim(r"`ringex-prod\x2da.slice`")
    _claim("journalctl _SYSTEMD_SLICE=ringex-prod.slice -f")
    _claim("and 20 s to stop cleanly, as under the supervisor")
    units = load_script("systemd_units", "rv105")
    cfg = load_profile("latency")
    assert cfg.instance == "prod"
    names = [units.unit_name(cfg, spec) for spec in plan(cfg)]
    assert names == [
        f"ringex-prod-{p}.service"
        for p in ("matcher-m1", "router", "dbwriter", "marketdata", "gateway-gw1")
    ]
    assert units.slice_name(cfg) == "ringex-prod.slice"
    assert units.slice_name(RingexConfig(instance="prod-a")) == "ringex-prod\\x2da.slice"
    assert units.logs_command(cfg, False) == "journalctl _SYSTEMD_SLICE=ringex-prod.slice -f"
    opts = units.Options(profile="/srv/$x/prod.toml", workdir=Path("/srv"))
    sup = cfg.supervisor
    for spec in plan(cfg):
        line = units.run_command(cfg, spec, opts)
        props = {
            line[i + 1].split("=")[0]: line[i + 1].split("=", 1)[1]
            for i, w in enumerate(line)
            if w == "-p"
        }
        assert props["Type"] == "notify" and props["Restart"] == "on-failure"
        assert props["KillMode"] == "mixed" and props["TimeoutStopSec"] == "20s"
        assert props["StartLimitBurst"] == str(sup.restart_limit + 1)  # more than the limit
        assert props["StartLimitIntervalSec"] == units._span(sup.restart_window_s)
        watchdog = int(props["WatchdogSec"].removesuffix("s"))
        assert watchdog >= (2 * cfg.database.retry_max_s if spec.name == "dbwriter" else 30)
        command = line[line.index("--") + 1 :]
        assert command[1:5] == ["-m", spec.module, "--profile", "/srv/$$x/prod.toml"]


# == 6. `ringex status --json` ===================================================================


def _dict_keys(node: ast.AST) -> list[str]:
    assert isinstance(node, ast.Dict)
    return [k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)]


def _function(path: str, name: str) -> ast.FunctionDef:
    tree = ast.parse((ROOT / path).read_text())
    return next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name)


def _supervisor_keys() -> tuple[list[str], list[str]]:
    """The keys procs/supervisor/main.py ``write_status`` writes: the document's, and each
    process's (read from its source)."""
    doc = next(
        n.value
        for n in ast.walk(_function("procs/supervisor/main.py", "write_status"))
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Dict)
    )
    assert isinstance(doc, ast.Dict)
    processes = doc.values[_dict_keys(doc).index("processes")]
    assert isinstance(processes, ast.ListComp)
    return _dict_keys(doc), _dict_keys(processes.elt)


def _printed(stopped: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """What ``ringex status --json`` prints of ``stopped``'s instance, whose status file
    holds what a supervisor writes while it stops: one process, down (this process's pid is
    alive, but the file says the process is not), ``uptime_s`` 7 as of its last write."""
    cfg = load_profile(str(stopped))
    top, per_process = _supervisor_keys()
    values: dict[str, Any] = {
        "instance": cfg.instance, "profile": str(stopped), "supervisor_pid": None,
        "supervisor_started": None, "state": "stopping", "role": "primary",
        "prestarted": False, "reason": "", "updated_ns": 1, "metrics_url": "",
        "name": "router", "pid": os.getpid(), "started": process_start(os.getpid()),
        "alive": False, "ready": True, "cpus": [1], "restarts": 2,
        "heartbeat_age_s": None, "uptime_s": 7.0,
    }  # fmt: skip
    status = {k: values[k] for k in top if k != "processes"}
    status["processes"] = [{k: values[k] for k in per_process}]
    status_path(cfg).parent.mkdir(parents=True)
    status_path(cfg).write_text(json.dumps(status))
    capsys.readouterr()
    assert procs.cli.main(["status", "--json", "--config", str(stopped)]) == 0
    printed: dict[str, Any] = json.loads(capsys.readouterr().out)
    return printed


def _readme_process_keys() -> list[str]:
    """The keys README Operate's sentence "Per process `status --json` shows ..." lists."""
    operate = _folded(_section("Operate"))
    listed = re.search(r"Per process `status --json` shows (.*?)\. ", operate)
    assert listed is not None
    return [w for w in re.findall(r"\w+", re.sub(r"\([^()]*\)", "", listed[1])) if w != "and"]


def _documented_status_keys() -> set[str]:
    """The ``status --json`` keys README Operate names: that sentence's, and any written as
    a key in code (`` `serves_clients: false` ``, `` `reason:` ``)."""
    operate = _folded(_section("Operate"))
    return set(_readme_process_keys()) | set(re.findall(r"`(\w+)(?::[^`]*)?`", operate))


README_TOP_KEYS = ["serves_clients"]


def test_the_status_json_keys_the_readme_names_are_printed(
    stopped: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """README Operate: "Per process `status --json` shows pid, alive, ready, cpus,
    `restarts` ..., `uptime_s` (0 while down) and `heartbeat_age_s` (...; `null` for one that
    reads none)" and "`--json` says `serves_clients: false`" (for a standby, or while an
    instance starts or stops): procs/cli.py _print_status prints those keys, with the
    supervisor's per-process record (procs/supervisor/main.py write_status)."""
    _claim(
        "Per process `status --json` shows pid, alive, ready, cpus, `restarts` (since the "
        "supervisor started; the exit that stopped the instance is not one), `uptime_s` (0 "
        "while down) and `heartbeat_age_s`"
    )
    _claim("`null` for one that reads none)")
    _claim(
        "and `--json` says `serves_clients: false`, as it does while an instance starts or stops)"
    )
    printed = _printed(stopped, capsys)
    process = printed["processes"][0]
    assert _readme_process_keys() == [
        "pid", "alive", "ready", "cpus", "restarts", "uptime_s", "heartbeat_age_s",
    ]  # fmt: skip
    assert [k for k in _readme_process_keys() if k not in process] == []
    assert [k for k in README_TOP_KEYS if k not in printed] == []
    assert process["uptime_s"] == 0 and process["alive"] is False  # down: 0
    assert process["heartbeat_age_s"] is None
    assert printed["serves_clients"] is False  # stopping


def test_a_never_run_instance_prints_the_keys_a_supervisor_writes(
    stopped: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """procs/cli.py _print_status: an instance that never ran prints the same document
    (its stand-in holds "the keys the supervisor writes, all there") plus what status adds
    (``rings``, ``endpoints``, ``serves_clients``); its first line in text says the state
    and the role, as README Operate says ("its first line says the state and the role")."""
    _claim("its first line says the state and the role")
    top, _ = _supervisor_keys()
    assert procs.cli.main(["status", "--json", "--config", str(stopped)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert list(printed) == [*top, "rings", "endpoints", "serves_clients"]
    assert procs.cli.main(["status", "--config", str(stopped)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == f"instance {load_profile(str(stopped)).instance}: stopped (primary)"


def test_every_status_json_key_is_documented(
    stopped: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """procs/cli.py _print_status and procs/supervisor/main.py write_status, the other way:
    every key ``ringex status --json`` prints (what a monitoring script reads) is named in
    README Operate, in its sentence of a process's keys or written as a key (`` `state` ``),
    so a script's author need not read the code for the keys."""
    printed = _printed(stopped, capsys)
    documented = _documented_status_keys()
    undocumented = [k for k in printed if k not in documented]
    undocumented += [k for k in printed["processes"][0] if k not in documented]
    assert undocumented == []
