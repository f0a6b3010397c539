"""Review 111: README.md's "## Benchmarks" (to the end of the file) held to the code,
mechanically, without running a benchmark. Here: the ``make bench*`` block against the
Makefile, the "Where ringex stands against the issues' targets" table (its targets are issues
3, 5, 8 and 10's and the benches' ``TARGETS``; its "met" column follows its own figures), the
peers against pyproject's dev extra, bench-matcher and bench-gateway. ``..._bench2.py``: the
other benches and the production constants the section quotes.

Convention (reviews 104-107's, helper ``tests/readme_text.py``): each claim is found in the
README as it is by a quote (whitespace folded), so a reworded claim fails loudly. A claim
found right is a plain test; a disagreement a strict xfail asserting the README, its reason
naming the code and the side to fix. Measured figures are history, never re-measured; flags
and defaults are read off each bench's ``ArgumentParser`` (stopped at ``parse_args``).

Disagreements found, all fixed since: 1. the table's "x the fastest pure-Python PyPI book" is
cython-orderbook, which ``bench_matcher.PURE_PYTHON`` counts, a compiled extension (its
``orderbook.cpython-*.so``): the README now says so (the issue lists it among the three);
2. (_bench2) ``make bench-records`` crashed (``struct.error`` on NewOrder's bytes
``client_id``) before writing records.json: its layout holds the id now; 3. (_bench2)
bench-ws accepts close code 1011 beside the README's 1008, and 4. (_bench2) bench-db's
executemany gets the first 50k of the 200k trades, not "the same trades": README reworded.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import inspect
import json
import re
import sys
import tomllib
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import msgspec
import pytest

from procs.gateway import fix
from tests.bench import (
    bench_db,
    bench_failover,
    bench_gateway,
    bench_journal,
    bench_matcher,
    bench_pipeline,
    bench_records,
    bench_rest,
    bench_ring,
    bench_ws,
    matcher_mixes,
    matcher_peers,
    rest_report,
)
from tests.readme_text import ROOT, claim, section

BENCH = section("Benchmarks")
WHERE = "README ## Benchmarks"
MAKEFILE = (ROOT / "Makefile").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def said(quote: str) -> None:
    """The Benchmarks section still says ``quote``."""
    claim(quote, BENCH, where=WHERE)


class _ParsedError(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__("parsed")
        self.parser = parser


def options_of(module: ModuleType) -> dict[str, argparse.Action]:
    """``module.main()``'s options by flag: its parser, stopped at ``parse_args``."""

    def stop(self: argparse.ArgumentParser, *_args: object, **_kwargs: object) -> NoReturn:
        raise _ParsedError(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_args", stop)
        try:
            module.main()
        except _ParsedError as parsed:
            return {flag: a for a in parsed.parser._actions for flag in a.option_strings}
    raise AssertionError(f"{module.__name__}.main() parsed no arguments")


def default(module: ModuleType, flag: str) -> Any:
    return options_of(module)[flag].default


# -- the make targets ----------------------------------------------------------------------------

LISTED = dict(re.findall(r"^make (bench(?:-[a-z]+)?) +# (.+)$", BENCH, re.M))
MAKE_BENCH = set(re.findall(r"^(bench(?:-[a-z]+)?):", MAKEFILE, re.M))


def recipe(target: str) -> str:
    found = re.search(rf"^{target}:[^\n]*\n((?:\t[^\n]*\n)+)", MAKEFILE, re.M)
    assert found, f"Makefile has no recipe for {target}"
    return found.group(1).strip()


def test_every_make_bench_target_is_listed_and_exists() -> None:
    """README's ``make bench*`` block: the targets it lists are exactly the Makefile's bench
    targets, none missing and none extra."""
    said("make bench        # every benchmark but bench-soak")
    assert len(LISTED) == 12
    assert set(LISTED) == MAKE_BENCH


def test_make_bench_is_every_benchmark_but_the_soak() -> None:
    """README: "make bench        # every benchmark but bench-soak". Makefile: ``bench``'s
    prerequisites."""
    said("make bench        # every benchmark but bench-soak")
    found = re.search(r"^bench:(.*)$", MAKEFILE, re.M)
    assert found
    assert set(found.group(1).split()) == MAKE_BENCH - {"bench", "bench-soak"}


@pytest.mark.parametrize("target", sorted(set(LISTED) - {"bench", "bench-soak"}))
def test_each_bench_target_runs_its_module(target: str) -> None:
    """README's block: ``make bench-<name>``. Makefile: ``$(PY) -m tests.bench.bench_<name>``,
    no argument, a module with a ``main``."""
    name = target.removeprefix("bench-")
    assert recipe(target) == f"$(PY) -m tests.bench.bench_{name}"
    module = importlib.import_module(f"tests.bench.bench_{name}")
    assert callable(module.main)


def test_bench_soak_is_bench_pipeline_then_2_minutes_at_10k() -> None:
    """README: "bench-pipeline, then 2 minutes at up to 10k orders/s watching RSS"; "`make
    bench-soak SOAK=600`; the target defaults to 2 minutes". Makefile ``SOAK ?= 120``, the
    recipe; bench_pipeline's ``--soak-rate``."""
    said("make bench-soak     # bench-pipeline, then 2 minutes at up to 10k orders/s watching RSS")
    said("`make bench-soak SOAK=600`; the target defaults to 2 minutes so that it stays out of")
    assert re.search(r"^SOAK \?= 120$", MAKEFILE, re.M)
    assert recipe("bench-soak") == "$(PY) -m tests.bench.bench_pipeline --soak $(SOAK)"
    assert default(bench_pipeline, "--soak-rate") == 10_000
    assert default(bench_pipeline, "--soak") == 0  # bench-pipeline alone: no soak


def test_bench_records_is_its_module_and_part_of_make_bench() -> None:
    """README: "`make bench-records` (`.venv/bin/python -m tests.bench.bench_records`, part of
    `make bench`)". Makefile: ``PY``, ``VENV``, the recipe, ``bench``'s prerequisites."""
    said("`make bench-records` (`.venv/bin/python -m tests.bench.bench_records`, part of")
    assert re.search(r"^VENV +:= \.venv$", MAKEFILE, re.M)
    assert re.search(r"^PY +:= \$\(VENV\)/bin/python$", MAKEFILE, re.M)
    assert recipe("bench-records") == "$(PY) -m tests.bench.bench_records"
    assert "bench-records" in re.findall(r"^bench:(.*)$", MAKEFILE, re.M)[0].split()


OUTS = [
    (bench_matcher, "Results go to `var/bench/matcher.json`", "var/bench/matcher.json"),
    (bench_gateway, "Results go to `var/bench/gateway.json`", "var/bench/gateway.json"),
    (bench_rest, "and writes `var/bench/rest.json`", "var/bench/rest.json"),
    (bench_db, "Results go to `var/bench/db.json`", "var/bench/db.json"),
    (bench_ws, "Results go to `var/bench/ws.json`", "var/bench/ws.json"),
    (bench_ring, "Results go to `var/bench/ring.json`", "var/bench/ring.json"),
    (bench_records, "results in `var/bench/records.json`", "var/bench/records.json"),
    (bench_pipeline, "It writes `var/bench/pipeline.json` and", "var/bench/pipeline.json"),
]


@pytest.mark.parametrize(("module", "quote", "path"), OUTS, ids=[o[2] for o in OUTS])
def test_each_bench_writes_the_json_the_readme_names(
    module: ModuleType, quote: str, path: str
) -> None:
    """README: "Results go to `var/bench/<name>.json`" (or "writes"): each module's ``--out``."""
    said(quote)
    out = Path(default(module, "--out"))
    assert (out.relative_to(ROOT) if out.is_absolute() else out) == Path(path)


def test_bench_pipeline_writes_its_png_beside_the_json() -> None:
    """README: "It writes `var/bench/pipeline.json` and `var/bench/pipeline.png`".
    bench_pipeline.main: the PNG beside ``--out``."""
    said("It writes `var/bench/pipeline.json` and `var/bench/pipeline.png`")
    source = inspect.getsource(bench_pipeline.main)
    assert 'png = Path(args.out).with_suffix(".png")' in source
    assert 'write_plot(png, latency, doc.get("soak"))' in source


def test_journal_and_failover_do_what_the_block_says() -> None:
    """README: "journal appends (fsync per batch and none), replay and restart, vs sqlite";
    "replication off / async / sync, and the time to fail over". bench_journal, bench_failover."""
    said("make bench-journal  # journal appends (fsync per batch and none), replay and restart")
    said("make bench-failover # replication off / async / sync, and the time to fail over")
    source = inspect.getsource(bench_journal)
    assert 'for fsync in ("batch", "none"):' in source
    assert "import sqlite3" in source and "def replay_sqlite" in source
    assert "restart" in source and "recover" in source
    assert default(bench_failover, "--modes") == "off,async,sync"
    assert bench_failover.TARGETS["failover s"] == 2.0


# -- the peers and pyproject -----------------------------------------------------------------


def dev_requirements() -> dict[str, str]:
    """pyproject's dev extra: distribution name (lower case) -> the whole requirement."""
    out = {}
    for req in PYPROJECT["project"]["optional-dependencies"]["dev"]:
        name = re.match(r"[A-Za-z0-9_.-]+", req)
        assert name
        out[name.group(0).lower()] = req
    return out


NEEDS_312 = "`matching-engine` needs Python 3.12"
BOOKS = "(`lightmatchingengine`, `cython-orderbook`, `liquibook`;"
PEERS = [  # (README quote naming the peer, distribution, module a bench imports, where)
    ("`multiprocessing.Queue` (one record a put, and 64), and pyzmq", "pyzmq", "zmq", bench_ring),
    ("FIX codec vs simplefix", "simplefix", "simplefix", bench_gateway),
    (BOOKS, "lightmatchingengine", "lightmatchingengine.lightmatchingengine", matcher_peers),
    (BOOKS, "cython-orderbook", "cython_orderbook", matcher_peers),
    (BOOKS, "liquibook", "liquibook", matcher_peers),
    (NEEDS_312, "matching-engine", "matching_engine.engine", matcher_peers),
    ("(HDR histograms; no coordinated omission)", "hdrhistogram", "hdrh", None),
    ("drawn with matplotlib", "matplotlib", "matplotlib", None),
]


@pytest.mark.parametrize(("quote", "dist", "module", "bench"), PEERS, ids=[p[1] for p in PEERS])
def test_each_peer_is_a_dev_dependency_the_bench_imports(
    quote: str, dist: str, module: str, bench: ModuleType | None
) -> None:
    """README names each peer a benchmark compares with (and its measuring tools): pyproject's
    dev extra (``make`` installs ``.[dev]``) requires it and the bench imports its module."""
    said(quote)
    assert "-e '.[dev]'" in MAKEFILE
    assert dist in dev_requirements(), f"{dist} is not in pyproject's dev extra"
    if bench is not None:
        source = inspect.getsource(bench)
        assert f"import {module}" in source or f'"{module}"' in source


def test_matching_engine_needs_312_and_is_skipped_before() -> None:
    """README: "`matching-engine` needs Python 3.12". pyproject's marker; the adapter skips it."""
    said("`matching-engine` needs Python 3.12")
    assert "python_version >= '3.12'" in dev_requirements()["matching-engine"]
    if sys.version_info < (3, 12):
        assert not matcher_peers.MatchingEnginePeer.available()


def test_mypy_is_a_dev_dependency() -> None:
    """README: "with mypyc (mypy's compiler, already a dev dependency)". pyproject's dev extra."""
    said("Compiling the hot modules with mypyc (mypy's compiler, already a dev dependency)")
    assert "mypy" in dev_requirements()


# -- the targets table -----------------------------------------------------------------------


def table() -> list[list[str]]:
    start = BENCH.index("| issue | benchmark: figure | target | measured | met |")
    rows = []
    for line in BENCH[start:].split("\n")[2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def num(text: str) -> float:
    """``674k`` -> 674000, ``x2.11`` -> 2.11, ``-2.8`` -> -2.8."""
    found = re.fullmatch(r"x?([-+]?\d+(?:\.\d+)?)(k|M)?", text)
    assert found, text
    return float(found.group(1)) * {"k": 1e3, "M": 1e6, None: 1}[found.group(2)]


#: (issue, figure cell, target cell, the issue's target(s), the code's constant(s))
ISSUE_TARGETS: list[tuple[str, str, str, tuple[float, ...], Callable[[], tuple[float, ...]]]] = [
    ("3", "bench-matcher: core, exchange-core mix", ">= 600k ops/s", (600_000,),
     lambda: (bench_matcher.TARGETS["core exchange-core ops/s"],)),
    ("3", "core, simple mix", ">= 500k ops/s", (500_000,),
     lambda: (bench_matcher.TARGETS["core simple ops/s"],)),
    ("3", "x the fastest pure-Python PyPI book", ">= 2x", (2.0,),
     lambda: (bench_matcher.TARGETS["x fastest pure-Python peer"],)),
    ("3", "x liquibook (C++, no listener)", ">= 1x", (1.0,),
     lambda: (bench_matcher.TARGETS["x liquibook"],)),
    ("3", "ring -> matcher -> ring, `yield` waits", ">= 350k ops/s, p99 <= 50 us", (350_000, 50),
     lambda: (bench_matcher.TARGETS["pipeline ops/s"], bench_matcher.TARGETS["pipeline p99 us"])),
    ("3", "bytes per resting order (1M over 10k levels)", "<= 400", (400,),
     lambda: (bench_matcher.TARGETS["bytes per resting order"],)),
    ("5", "bench-gateway: FIX parse", ">= 250k msgs/s", (250_000,),
     lambda: (bench_gateway.TARGETS["codec parse msgs/s"],)),
    ("5", "orders in, two reports out, per gateway CPU second", ">= 50k", (50_000,),
     lambda: (bench_gateway.TARGETS["pipeline orders/s per gateway core"],)),
    ("8", "bench-pipeline: sustained, with the database", ">= 50k orders/s", (50_000,),
     lambda: (bench_pipeline.TARGETS["orders/s"],)),
    ("8", "ack p50 / p99 at 10k orders/s", "<= 200 us / <= 2 ms", (10_000, 200, 2_000),
     lambda: tuple(bench_pipeline.TARGETS[k] for k in ("latency at", "ack p50 us", "ack p99 us"))),
    ("8", "RSS growth over a 10-minute soak at 10k/s", "<= 5%", (5.0,),
     lambda: (bench_pipeline.TARGETS["soak rss growth %"],)),
    ("10", "bench-rest: new orders a second", ">= 10k", (10_000,),
     lambda: (rest_report.TARGET_REST_PER_S,)),
]  # fmt: skip


def test_the_table_lists_every_target_once() -> None:
    """README: "**Where ringex stands against the issues' targets**": issue 3's six targets,
    issue 5's two, issue 8's three and issue 10's one, in order."""
    said("**Where ringex stands against the issues' targets**, in one place")
    assert [(r[0], r[1]) for r in table()] == [(t[0], t[1]) for t in ISSUE_TARGETS]


@pytest.mark.parametrize("row", range(len(ISSUE_TARGETS)), ids=[t[1] for t in ISSUE_TARGETS])
def test_each_table_target_is_the_issues_and_the_codes(row: int) -> None:
    """README's table, "target": each is the issue's (3: 600k, 500k, 2x pure Python, 1x
    liquibook, 350k at p99 50 us, 400 bytes; 5: 250k, 50k; 8: 50k, 200 us / 2 ms at 10k/s,
    5%; 10: 10k) and the bench's ``TARGETS`` constant judging it."""
    issue, figure, target, wanted, code = ISSUE_TARGETS[row]
    cells = table()[row]
    assert cells[:3] == [issue, figure, target]
    assert code() == wanted


def _met(row: int, measured: str) -> str:
    """What the "met" cell must say, from the measured cell's own figures."""
    figures = [num(f) for f in re.findall(r"(?<![\w.])x?[-+]?\d+(?:\.\d+)?[kM]?", measured)]
    target = ISSUE_TARGETS[row][3][0]
    if row in (0, 1, 6, 7, 8, 11):  # at least the target: the first figure is the run's
        return "yes" if figures[0] >= target else "no"
    if row == 2:  # "exchange-core x2.11 (...); simple x1.11 (...)"
        ec, simple = figures
        return {(True, True): "yes", (True, False): "exchange-core only"}.get(
            (ec >= 2, simple >= 2), "no"
        )
    if row == 3:  # "x0.38 and x0.34"
        return "yes" if min(figures) >= 1 else "no"
    if row == 4:  # "357k ops/s, p99 57 us (both met in some earlier runs)"
        found = re.match(r"(\S+) ops/s, p99 (\S+) us", measured)
        assert found, measured
        ops, p99 = num(found.group(1)), num(found.group(2))
        verdicts = {(True, True): "yes", (True, False): "ops/s only"}
        return verdicts.get((ops >= 350e3, p99 <= 50), "no")
    if row == 5:
        return "yes" if figures[0] <= target else "no"
    if row == 9:  # "at 2k/s here: 2.5 / 7.1 ms (16-core host at 10k/s: 0.4 / 0.75 ms, ...)"
        pairs = re.findall(r"(\d+(?:\.\d+)?) / (\d+(?:\.\d+)?) ms", measured)
        assert len(pairs) == 2, measured
        return "yes" if any(float(a) <= 0.2 and float(b) <= 2 for a, b in pairs) else "no"
    assert row == 10  # "gateway -2.8 to 0%, others within 0.1%, writer's trend +2.8%"
    return "yes" if max(figures) <= target else "no"


@pytest.mark.parametrize("row", range(len(ISSUE_TARGETS)), ids=[t[1] for t in ISSUE_TARGETS])
def test_the_met_column_follows_the_measured_and_target_figures(row: int) -> None:
    """README's table, "met": what its own measured figure makes of its target ("exchange-core
    only", "ops/s only" where one part of two met). Only the table's figures are read."""
    cells = table()[row]
    assert cells[4] == _met(row, cells[3]), cells


def test_a_ratio_is_ringex_over_the_peer() -> None:
    """README: "a ratio is ringex's figure over the peer's." bench_matcher's printed ratio,
    bench_gateway's ``x_simplefix``."""
    said("Peers are measured in the same run; a ratio is ringex's figure over the peer's.")
    assert "x{like_ops / value:5.2f}" in inspect.getsource(bench_matcher.main)
    assert '"x_simplefix": handled_ours / handled_theirs' in inspect.getsource(bench_gateway)


def _extension_in(module: str) -> list[str]:
    spec = importlib.util.find_spec(module.partition(".")[0])
    assert spec is not None and spec.submodule_search_locations
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    places = [Path(where) for where in spec.submodule_search_locations]
    return [p.name for where in places for p in where.rglob("*") if p.name.endswith(suffixes)]


def test_the_pure_python_peers_are_the_issues_three() -> None:
    """README: "The pure-Python peers are the issue's three (`matching-engine`,
    `lightmatchingengine`, `cython-orderbook`), though `cython-orderbook` is Cython-compiled"
    (review 111: the table called it pure-Python unsaid). ``bench_matcher.PURE_PYTHON`` is
    the issue's list, and ``cython-orderbook`` alone of them holds a compiled module."""
    said("| 3 | x the fastest pure-Python PyPI book | >= 2x | exchange-core x2.18")
    said("The pure-Python peers are the issue's three (`matching-engine`, `lightmatchingengine`,")
    said("`cython-orderbook`), though `cython-orderbook` is Cython-compiled: a stricter rival")
    issue = {"matching-engine", "lightmatchingengine", "cython-orderbook"}
    assert issue == bench_matcher.PURE_PYTHON
    compiled = {
        peer.name
        for peer in matcher_peers.PEERS
        if peer.name in bench_matcher.PURE_PYTHON
        and peer.available()
        and _extension_in(peer.module)
    }
    assert compiled <= {"cython-orderbook"}


# -- bench-matcher ---------------------------------------------------------------------------


def _kinds(ops: list[tuple[int, ...]]) -> Counter[str]:
    names = {matcher_mixes.CANCEL: "cancel", matcher_mixes.MOVE: "move"}
    return Counter(
        ("ioc" if op[5] else "gtc") if op[0] == matcher_mixes.NEW else names[op[0]] for op in ops
    )


def test_exchange_core_mix_is_its_published_load() -> None:
    """README: "exchange-core's mix (9% GTC, 3% IOC, 6% cancel, 82% move; ~1k resting orders
    over ~750 levels)". ``matcher_mixes.exchange_core_mix``, 20k ops past its warm-up."""
    said("feeds exchange-core's mix (9% GTC, 3% IOC, 6% cancel, 82% move; ~1k resting orders")
    said("over ~750 levels)")
    ops = matcher_mixes.exchange_core_mix(21_000, 1)
    kinds = _kinds(ops[matcher_mixes.EC_TARGET :])
    for kind, pct in (("gtc", 9), ("ioc", 3), ("cancel", 6), ("move", 82)):
        assert abs(100 * kinds[kind] / 20_000 - pct) < 1, (kind, kinds)
    book = matcher_mixes.ShadowBook()
    book.run(ops)
    levels = book.levels()
    assert 800 <= len(book) <= 1_200
    assert 600 <= len(levels["bids"]) + len(levels["asks"]) <= 900


def test_simple_mix_is_60_30_10() -> None:
    """README: "a simple mix (60% new near the touch, 30% cancel, 10% marketable)".
    ``matcher_mixes.simple_mix``, 20k ops."""
    said("a simple mix (60% new near the touch, 30% cancel, 10% marketable)")
    kinds = _kinds(matcher_mixes.simple_mix(20_000, 1))
    for kind, pct in (("gtc", 60), ("cancel", 30), ("ioc", 10)):
        assert abs(100 * kinds[kind] / 20_000 - pct) < 1.5, (kind, kinds)
    assert set(kinds) == {"gtc", "cancel", "ioc"}


def test_the_peers_are_the_named_books_liquibook_twice() -> None:
    """README: the PyPI books "(`lightmatchingengine`, `cython-orderbook`, `liquibook`;
    `matching-engine`...)", liquibook "timed twice". ``matcher_peers.PEERS``."""
    said("(`lightmatchingengine`, `cython-orderbook`, `liquibook`; `matching-engine` needs")
    said("Liquibook is timed twice too: alone, where no order event reaches Python")
    said("and as `liquibook+listener`, its `OrderListener` called back into Python")
    names = {peer.name for peer in matcher_peers.PEERS}
    assert names == {
        "lightmatchingengine", "cython-orderbook", "liquibook", "liquibook+listener",
        "matching-engine",
    }  # fmt: skip
    assert issubclass(matcher_peers.LiquibookEventsPeer, matcher_peers.LiquibookPeer)


def test_matcher_flags_and_defaults() -> None:
    """README: "`--wait`, default `yield` and `blocking`", "paced at 10k/s", "rests 1M orders
    over 10k levels". bench_matcher's parser."""
    said("once per wait strategy (`--wait`, default `yield` and `blocking`; the target holds")
    said("(throughput with the stream queued, and latency paced at 10k/s)")
    said("and rests 1M orders over 10k levels to report bytes per order")
    opts = options_of(bench_matcher)
    assert opts["--wait"].default == ["yield", "blocking"]
    assert opts["--paced-rate"].default == 10_000
    assert opts["--memory-orders"].default == 1_000_000


@pytest.fixture(scope="module")
def matcher_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """bench_matcher.main on 600 commands a mix, every importable peer for real; the pipeline
    (yield meets both targets, blocking neither) and the memory phase (300 bytes an order
    under the policy, 500 without) stand-ins that record how they were called."""
    calls: dict[str, list[Any]] = {"pipeline": [], "memory": []}

    def pipeline(records: list[Any], paced_rate: int, wait: str) -> dict[str, float]:
        calls["pipeline"].append((paced_rate, wait))
        fast = wait == "yield"
        return {
            "throughput_events": 1, "throughput_events_expected": 1, "paced_events": 1,
            "paced_events_expected": 1, "ops_per_s": 360_000.0 if fast else 200_000.0,
            "paced_rate": paced_rate, "p50_us": 10.0, "p99_us": 40.0 if fast else 250.0,
            "sent_late_p50_us": 1.0, "sent_late_p99_us": 2.0,
        }  # fmt: skip

    def memory(orders: int, levels: int, policy: bool) -> dict[str, float]:
        calls["memory"].append((orders, levels, policy))
        return {"orders": 1_000, "rss_growth": 0, "bytes_per_order": 300.0 if policy else 500.0,
                "ops_per_s": 1e6, "max_gc_pause_ms": 1.0, "gc_share": 0.0}  # fmt: skip

    out = tmp_path_factory.mktemp("matcher") / "matcher.json"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bench_matcher, "pipeline", pipeline)
        patch.setattr(bench_matcher, "memory", memory)
        argv = ["bench_matcher", "--ops", "600", "--rounds", "1", "--out", str(out)]
        patch.setattr(sys, "argv", argv)
        code = bench_matcher.main()
    yield {"code": code, "doc": json.loads(out.read_text()), "calls": calls}


def test_matcher_answer_checks_are_the_readmes(matcher_run: dict[str, Any]) -> None:
    """README: "Every book's final levels must equal the generator's, the two ringex books'
    state hashes each other's ..., `liquibook+listener`'s fills ... `FastBook`'s trades, and
    each pipeline run's events ...". matcher.json's ``checks``, all passing for real."""
    said("Every book's final levels must equal the generator's, the two ringex books' state")
    said("`liquibook+listener`'s fills (count, quantity, notional) `FastBook`'s trades, and each")
    checks = matcher_run["doc"]["checks"]
    assert matcher_run["code"] == 0 and all(checks.values()), checks
    for mix in ("exchange-core", "simple"):
        assert checks[f"{mix}: FastBook state hash == ReferenceBook"]
        assert checks[f"{mix}: FastBook from ops state hash == from records"]
        for book in ("ringex FastBook", "ringex ReferenceBook"):
            assert f"{mix}: {book} book == shadow" in checks
        for peer in matcher_peers.available_peers():
            assert f"{mix}: {peer.name} book == shadow" in checks
        if matcher_peers.LiquibookEventsPeer.available():
            assert f"{mix}: liquibook+listener fills == FastBook trades" in checks
    for wait in ("yield", "blocking"):
        assert f"pipeline {wait} throughput: events == FastBook's" in checks


def test_matcher_times_fastbook_twice_and_each_command(matcher_run: dict[str, Any]) -> None:
    """README: "`FastBook` is timed twice" (core targets on the first figure, "the peers'
    ratios and targets are that second figure's"); "It also times each command (p50/p99)".
    matcher.json's rows; main's judgements."""
    said("`FastBook` is timed twice: executing commands made beforehand (the core targets'")
    said("the peers' ratios and targets are that second figure's")
    said("It also times each command (p50/p99)")
    rows = {(r["name"], r["mix"]): r for r in matcher_run["doc"]["results"]}
    for mix in ("exchange-core", "simple"):
        assert rows[("ringex FastBook", mix)]["p50_us"] is not None
        assert rows[("ringex FastBook", mix)]["p99_us"] is not None
        assert ("ringex FastBook from ops", mix) in rows
    source = inspect.getsource(bench_matcher.main)
    assert "if fast_ops < target:" in source
    assert "problems += peer_problems(mix, like_ops, rows)" in source


def test_matcher_pipeline_per_wait_and_memory_phases(matcher_run: dict[str, Any]) -> None:
    """README: the pipeline "once per wait strategy ... the target holds if one meets it"; the
    memory phase "under the `[gc]` policy and under CPython's defaults". The stand-ins' calls;
    yield meeting both targets leaves no pipeline miss; the no-policy row is not judged."""
    said("under the `[gc]` policy and under CPython's defaults")
    calls, doc = matcher_run["calls"], matcher_run["doc"]
    assert calls["pipeline"] == [(10_000, "yield"), (10_000, "blocking")]
    assert calls["memory"] == [(1_000_000, 10_000, True), (1_000_000, 10_000, False)]
    missed = doc["targets_missed"]
    assert not [m for m in missed if m.startswith(("pipeline", "memory"))], missed


# -- bench-gateway ---------------------------------------------------------------------------


def test_gateway_flags_and_defaults() -> None:
    """README: "parses 50k NewOrderSingles in 64 KiB reads"; "the default is now 100k
    (`--orders`)". bench_gateway: ``--codec-messages``, ``CHUNK``, ``--orders``."""
    said("`make bench-gateway` parses 50k NewOrderSingles in 64 KiB reads")
    said("so the default is now 100k (`--orders`)")
    opts = options_of(bench_gateway)
    assert opts["--codec-messages"].default == 50_000
    assert bench_gateway.CHUNK == 64 * 1024
    assert opts["--orders"].default == 100_000


def test_gateway_codec_rows_against_simplefix() -> None:
    """README: each read's messages "looked at and dropped ... against simplefix on the same
    reads", "all of them kept", encodes "against simplefix". ``bench_gateway.codec`` on 300
    messages: those rows, ``x_simplefix`` ours over theirs, every answer check passing."""
    said("each read's messages looked at and dropped as the gateway does, against simplefix on")
    said("all of them kept in a list, where CPython's collector walks the growing heap")
    said("encodes ExecutionReports against simplefix")
    checks: dict[str, bool] = {}
    rows = bench_gateway.codec(300, 1, checks)
    assert checks and all(checks.values()), checks
    names = [r["name"] for r in rows]
    assert names[0] == "ringex parse, each read's messages dropped"  # the target's figure
    assert "simplefix parse, each read's messages dropped" in names
    assert "ringex parse, all 300 messages kept" in names  # (its count: review 264)
    assert "ringex parse + validation, dropped" in names
    assert "ringex encode ExecutionReport" in names
    ours, theirs = rows[0], rows[names.index("simplefix parse, each read's messages dropped")]
    assert rows[0]["x_simplefix"] == pytest.approx(ours["ops_per_s"] / theirs["ops_per_s"])
    assert 'parse_rate = results[0]["ops_per_s"]' in inspect.getsource(bench_gateway.main)


def test_gateway_pipeline_counts_the_gateways_cpu_and_two_reports() -> None:
    """README: "counting the gateway's CPU"; the table's "orders in, two reports out, per
    gateway CPU second". ``bench_gateway.pipeline``'s row, judged in ``main``."""
    said("runs orders through a gateway process between router and matcher processes,")
    said("counting the gateway's CPU")
    source = inspect.getsource(bench_gateway.pipeline)
    assert '"orders_per_gateway_cpu_s": total / gw_cpu if gw_cpu else 0.0' in source
    assert '"reports_per_s": 2 * total / elapsed' in source
    assert 'per_core = piped["orders_per_gateway_cpu_s"]' in inspect.getsource(bench_gateway.main)


def test_the_parser_the_gateway_paragraph_names() -> None:
    """README: "(`fix._parse_run`), and `FixMessage` a msgspec Struct the collector does not
    walk". procs/gateway/fix.py: ``_parse_run``, ``FixMessage(msgspec.Struct, gc=False)``."""
    said("(`fix._parse_run`), and `FixMessage` a msgspec Struct the collector does not walk")
    assert callable(fix._parse_run)
    assert issubclass(fix.FixMessage, msgspec.Struct)
    assert fix.FixMessage.__struct_config__.gc is False
