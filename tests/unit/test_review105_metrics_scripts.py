"""Review 105: README.md's "## Operate" (its Metrics), "## Two commands (and a variant)" and
"## Production with systemd" held to the supervisor's metrics and the operator scripts
mechanically, both ways: every Prometheus metric listed is one the supervisor's collector
(``procs/supervisor/metrics.py``) exports, with its labels, and every one exported is listed;
every ``scripts/*.py`` command line shown parses with its script's own parser, every option
those parsers show is documented, and the defaults and systemd units stated are the scripts'.

Convention (review 104's, shared helpers in ``readme_operate_claims``): the README is read as
it is when the test runs, and each claim is found in it by a quote (whitespace folded), so a
claim that is reworded fails here, loudly, rather than being checked no longer. A claim checked
and found right is a plain test. Nothing here starts a server or a process: the collector is
asked for its families, and the scripts' ``main`` runs only up to its ``parse_args``.
"""

from __future__ import annotations

import argparse
import inspect
import re
import shlex
from pathlib import Path
from typing import Any, NoReturn

import pytest

from config import load_profile
from config.schema import RingexConfig
from procs.common.run_files import run_dir
from procs.common.stats import LATENCY_BUCKETS_US, REJECT_REASONS, ROUTER_STATES
from procs.supervisor import metrics as metrics_module
from procs.supervisor.metrics import ProcessSample, RingexCollector
from procs.supervisor.plan import plan
from procs.supervisor.scrape_handler import ScrapeHandler
from tests.scripts_loader import load_script
from tests.unit.readme_operate_claims import (
    README,
    ROOT,
    _claim,
    _folded,
    _recipe,
    _section,
    _sh_lines,
    _spans,
)

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
    without a request" (metrics.py MAX_SCRAPES, scrape_handler.py ScrapeHandler.timeout)."""
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
    assert metrics_module.MAX_SCRAPES == 16 and ScrapeHandler.timeout == 10.0


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
