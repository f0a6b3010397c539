"""Review 105: README.md's "## Layout", and the ``make`` targets it names passim, held to
the repository mechanically, both ways: every ``make`` target named is the Makefile's, and
every target of its .PHONY is named; what it says a target runs is in its recipe; every path
Layout names exists and every module under shm/, procs/, config/ and scripts/ is named there;
the paths Operate and Production with systemd name exist, and the constants the REST
subsection names hold what it says.

Convention (review 104's, shared helpers in ``readme_operate_claims``): the README is read as
it is when the test runs, and each claim is found in it by a quote (whitespace folded), so a
claim that is reworded fails here, loudly, rather than being checked no longer. A claim checked
and found right is a plain test. Nothing here starts a process. One disagreement was found, the
README's to mend: Layout did not name three of config/'s modules. It was pinned as a strict
xfail and mended in the same change.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from config import load_profile
from config.schema import RingexConfig
from procs.supervisor.plan import plan
from tests.unit.readme_operate_claims import (
    MAKEFILE,
    README,
    ROOT,
    RULES,
    _claim,
    _expand,
    _make_variables,
    _section,
    _sh_lines,
    _spans,
)

# == 2. make ======================================================================================


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
    _claim("pytest runs in a pytest-xdist worker more than there are CPUs (at most four)")
    assert "print(min(n + 1, 4) if n > 1 else 0)" in variables["PYTEST_WORKERS"]
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
