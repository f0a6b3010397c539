"""Review 130 (continued; the convention and the list of disagreements are in
``test_review130_bench_docstrings.py``): bench_pipeline with ``fix_load`` and ``soak``,
bench_rest with ``rest_load``, bench_ws with ``ws_clients``, bench_db, bench_failover and
``cpu_watch``, their docstrings held to the code, no benchmark run.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import itertools
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.bench import (
    bench_db,
    bench_failover,
    bench_pipeline,
    bench_rest,
    bench_ws,
    cpu_watch,
    fix_load,
    rest_load,
    rest_report,
    soak,
)
from tests.bench.ws_clients import BUCKET_NS, FeedClient
from tests.unit.marketdata.test_bench_client import FRAME
from tests.unit.test_bench_ws_delivery import clients
from tests.unit.test_review111_readme_bench import options_of
from tests.unit.test_review111_readme_bench2 import _accepted_close_codes
from tests.unit.test_review130_bench_docstrings import run_main, said

# -- bench_pipeline, fix_load, soak ----------------------------------------------------------


def test_pipeline_judge_lists_a_target_not_judged_and_misses_the_rest() -> None:
    """``judge``: "a target not judged is listed, never met"; "Targets (issue 8 ...): >= 50k
    orders/s sustained; at 10k orders/s order->ack p50 <= 200 us and p99 <= 2 ms"."""
    said("a target not judged is listed, never met", bench_pipeline.judge)
    said(
        ">= 50k orders/s sustained; at 10k orders/s order->ack p50 <= 200 us and p99 <= 2 ms",
        bench_pipeline,
    )
    lat = {"ack_p50_us": 150, "ack_p99_us": 1_900}
    kept_up = {"ops_per_s": 19_500.0, "offered_rate": 20_000}
    assert ["not judged" in p for p in bench_pipeline.judge(lat, kept_up, 2_000)] == [True, True]
    fast = {"ops_per_s": 55_000.0, "offered_rate": 60_000}
    assert bench_pipeline.judge(lat, fast, 10_000) == []
    short = {"ops_per_s": 40_000.0, "offered_rate": 60_000}
    slow = {"ack_p50_us": 250, "ack_p99_us": 2_500}
    missed = bench_pipeline.judge(slow, short, 10_000)
    assert [p.split()[0] for p in missed] == ["sustained", "ack", "ack"]


def _watch(series: list[int], baseline: int = 0) -> soak.RssWatch:
    watch = soak.RssWatch({"me": os.getpid()})
    watch.samples = [(5.0 * k, {"me": v}) for k, v in enumerate(series)]
    watch.baseline = baseline
    return watch


def test_soak_growth_is_judged_by_the_least_squares_trend() -> None:
    """ "Growth is judged by the least-squares line through every sample after the baseline:
    its rise over that span, in % of the mean"; fewer than 3 samples: "``judged`` False, and
    not within the target". ``RssWatch.growth``, ``_trend_pct``."""
    said(
        "Growth is judged by the least-squares line through every sample after the baseline: "
        "its rise over that span, in % of the mean.",
        soak,
    )
    said("draw no line: ``judged`` False, and not within the target", soak.RssWatch.growth)
    mib = soak.MIB
    jitter = [100 * mib + d for d in (0, 4 * mib, -4 * mib, 4 * mib, -4 * mib, 0)]
    (row,) = _watch([50 * mib, *jitter], baseline=1).growth(5.0)
    assert row["judged"] and row["within_target"] and abs(row["trend_pct"]) < 5
    assert row["baseline_mib"] == 100.0  # the median of the first 3 after the baseline
    (leak,) = _watch([100 * mib + k * 2 * mib for k in range(6)]).growth(5.0)
    assert leak["trend_pct"] == pytest.approx(100 * 10 / 105, abs=0.01)
    assert leak["judged"] and not leak["within_target"]
    (short,) = _watch([100 * mib, 100 * mib, 100 * mib], baseline=1).growth(5.0)
    assert (short["judged"], short["within_target"]) == (False, False)


def test_soak_report_puts_the_achieved_rate_beside_the_offered() -> None:
    """ "The achieved rate is reported beside the offered one; not reaching it is a figure of
    the machine, not a failure". ``SoakRun.report``; ``main``'s soak checks and problems."""
    said(
        "The achieved rate is reported beside the offered one; not reaching it is a figure of "
        "the machine, not a failure.",
        bench_pipeline,
    )
    run = bench_pipeline.SoakRun(_watch([soak.MIB] * 4), warmup_s=10.0)
    run.acks, run.orders, run.elapsed_s, run.warm_acks, run.warm_t_s = 8_000, 8_000, 2.0, 2_000, 1.0
    doc = run.report(10_000, 1_024)
    assert (doc["offered_rate"], doc["achieved_rate"], doc["offered_rate_reached"]) == (
        10_000,
        4_000,
        False,
    )
    assert doc["achieved_rate_after_warmup"] == 6_000 and doc["rss_target_pct"] == 5.0
    assert doc["rss_mib"]["me"] == [1.0] * 4
    main = Path(bench_pipeline.__file__).read_text().split("def main")[1]
    assert "offered_rate_reached" not in main  # reported only: neither checked nor judged


def test_histograms_clamp_past_their_range_and_summarise_every_percentile() -> None:
    """``HIGHEST_US``: "1 us .. 60 s, 3 significant digits"; ``record_clamped``: "a value past
    the range as the range's top"; ``summary``: "``ack_p50_us`` .. ``ack_max_us`` and the same
    for ``fill`` and ``send``"."""
    said("The histograms' range in microseconds: 1 us .. 60 s, 3 significant digits", fix_load)
    said("a value past the range as the range's top", fix_load.record_clamped)
    lat = fix_load.Latencies()
    lat.ack_us.extend([100, 90_000_000])
    summary = lat.summary()
    assert summary["ack_max_us"] == pytest.approx(60_000_000, rel=1e-3)
    assert lat.ack.total_count == 2
    assert set(summary) == {
        f"{k}_{p}_us" for k in ("ack", "fill", "send") for p in ("p50", "p90", "p99", "p999", "max")
    }


def test_phases_of_several_load_processes_merge_their_histograms() -> None:
    """ "--workers W W load processes (each offering its share of the rate, starting each
    phase together; their HDR histograms are merged)". ``Phase.encode``/``decode``/``merge``."""
    said("their HDR histograms are merged", bench_pipeline)
    phases = []
    for k in range(2):
        lat = fix_load.Latencies()
        lat.ack_us.extend([100 * (k + 1)] * 10)
        phases.append(fix_load.Phase(500, 10, 10, 5, 1.0 + k, lat, (1.0 + k, 2.0 + k), k))
    merged = fix_load.Phase(1_000)
    for phase in phases:
        merged.merge(fix_load.Phase.decode(phase.encode()))
    row = merged.row()
    assert (row["orders"], row["acks"], row["duplicate_acks"]) == (20, 20, 1)
    assert row["ops_per_s"] == 10.0 and merged.window == (1.0, 3.0)  # over the longest: 2 s
    assert merged.lat.ack.total_count == 20 and row["ack_max_us"] == pytest.approx(200, rel=1e-2)


def _report(ref: bytes, exec_type: bytes) -> bytes:
    return b"8=FIX.4.4\x019=9\x0135=8\x01150=%s\x0111=%s\x0110=000\x01" % (exec_type, ref)


def test_read_reports_counts_a_second_ack_apart_even_after_the_fill() -> None:
    """``read_reports``: "a second ack of it is counted apart, as ``duplicate_acks``"; "an
    ack after it is counted as well: a duplicate if the order had been acked"; the answer
    check: "every order sent got exactly one ack, no order two"."""
    said("a second ack of it is counted apart, as ``duplicate_acks``", fix_load.read_reports)
    said("every order sent got exactly one ack, no order two", bench_pipeline)

    async def main() -> fix_load.Session:
        session = fix_load.Session("S0", 0)
        session.reader = reader = asyncio.StreamReader()
        session.planned = {b"latency-S0-0": 1, b"latency-S0-1": 1}
        stream = b"".join(
            [
                _report(b"latency-S0-0", b"0"),
                _report(b"latency-S0-0", b"0"),
                _report(b"latency-S0-0", b"F"),
                _report(b"latency-S0-0", b"0"),
                _report(b"latency-S0-1", b"0"),
            ]
        )
        reader.feed_data(stream[:40])
        reader.feed_data(stream[40:])
        reader.feed_eof()
        await fix_load.read_reports(session, fix_load.Recorder())
        return session

    session = asyncio.run(main())
    assert (session.acks, session.fills, session.duplicate_acks) == (2, 1, 2)
    check = 'r["acks"] == r["orders"]\n        and r["duplicate_acks"] == 0'
    assert check in Path(bench_pipeline.__file__).read_text()


# -- bench_rest, rest_load -------------------------------------------------------------------


class _Rest(rest_load.RestLane):
    def __init__(self, user: int, answer: tuple[int, Any]) -> None:
        super().__init__(user, "t")
        self.answer = answer

    async def call(
        self, method: str, query: str, body: bytes, path: str = "", kind: str = ""
    ) -> tuple[int, Any]:
        return self.answer


def _doc(status: str, executed: str, *fills: tuple[str, bool]) -> dict[str, Any]:
    return {
        "orderId": 7,
        "status": status,
        "executedQty": executed,
        "fills": [{"qty": q, "isMaker": m} for q, m in fills],
    }


def test_rest_answer_checks_take_only_right_answers() -> None:
    """ "REST: 200 and NEW/PARTIALLY_FILLED/FILLED, NEW for a passive order, CANCELED for a
    cancel, executedQty >= the sum of its fills". ``RestLane.order``/``cancel``."""
    said(
        "REST: 200 and NEW/PARTIALLY_FILLED/FILLED, NEW for a passive order, CANCELED for a "
        "cancel, executedQty >= the sum of its fills",
        bench_rest,
    )

    def order(passive: bool, status: int, doc: Any) -> rest_load.Answer:
        return asyncio.run(_Rest(0, (status, doc)).order(passive))

    taker = order(False, 200, _doc("FILLED", "0.0100", ("0.0100", False)))
    assert taker.ok and taker.taker_lots == 100
    assert order(False, 200, _doc("PARTIALLY_FILLED", "0.0300", ("0.0100", True))).ahead
    assert not order(True, 200, _doc("PARTIALLY_FILLED", "0.0100", ("0.0100", False))).ok
    assert not order(False, 200, _doc("FILLED", "0.0100", ("0.0200", False))).ok
    assert not order(False, 200, _doc("REJECTED", "0")).ok
    assert not order(False, 429, {"code": -1003}).ok
    assert asyncio.run(_Rest(0, (200, {"status": "CANCELED"})).cancel(7)).ok
    assert not asyncio.run(_Rest(0, (200, {"status": "NEW"})).cancel(7)).ok


class _Transport:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.sent.append(data)


def test_fix_answer_checks_refuse_a_reject_and_a_second_ack() -> None:
    """ "FIX: ack or cancel, no reject, no second ack of an order, whenever it comes";
    ``FixSession``: "a second ack of a ClOrdID is a problem ... whenever it comes".
    ``FixLane.order`` and ``FixSession.message``."""
    said("FIX: ack or cancel, no reject, no second ack of an order, whenever it comes", bench_rest)

    async def main() -> tuple[list[bool], list[str]]:
        session = rest_load.FixSession("F0", 0)
        session.transport = _Transport()  # type: ignore[assignment]
        lane = rest_load.FixLane(session, "t")
        got = []
        for exec_type, passive in ((b"8", False), (b"0", True), (b"F", True), (b"F", False)):
            task = asyncio.ensure_future(lane.order(passive))
            await asyncio.sleep(0)
            ref = b"t-%d" % lane.n
            session.message(
                {b"35": b"8", b"150": exec_type, b"11": ref, b"54": b"1", b"32": b"0.0100"}
            )
            got.append((await task).ok)
        session.message({b"35": b"8", b"150": b"0", b"11": b"t-2"})  # acked again, later
        return got, session.problems

    oks, problems = asyncio.run(main())
    assert oks == [False, True, False, True]
    assert problems == ["a second ack of ClOrdID t-2"]


def test_rest_verdict_names_a_saturated_process_or_the_machine() -> None:
    """``verdict``: "a process at >= 85% of a core (each gateway on its own), or the machine
    at >= 90%"."""
    said(
        "a process at >= 85% of a core (each gateway on its own), or the machine at >= 90%",
        bench_rest.verdict,
    )
    assert bench_rest.verdict({"gateway": 84.0, "client": 20.0}, 100.0, 2) == "none"
    assert bench_rest.verdict({"gateway": 90.0, "client": 85.0}, 100.0, 2) == (
        "gateway 90%, client 85%"
    )
    assert bench_rest.verdict({"gateway": 170.0, "client": 1.0}, 100.0, 4, [90.0, 80.0]) == (
        "gateway1 90%"
    )
    assert bench_rest.verdict({"gateway": 50.0, "client": 1.0}, 180.0, 2).startswith("machine")


def test_rest_median_round_of_an_even_count_is_the_lower_middle() -> None:
    """``median_round``: "The round of median requests/s (the lower middle one of an even
    count), with every round's figure beside it"."""
    said("the lower middle one of an even count", rest_report.median_round)
    rows: list[dict[str, Any]] = [
        {"per_s": v, "gateway_cpu_us_per_request": 1.0, "cpu_pct": {}} for v in (4, 1, 3, 2)
    ]
    row = rest_report.median_round(rows)
    assert row["per_s"] == 2 and row["rounds_per_s"] == [4, 1, 3, 2]


def _finish_args(out: Path) -> argparse.Namespace:
    return argparse.Namespace(
        mix="orders",
        batch=1,
        rate=1_000.0,
        out=str(out),
        client="raw",
        seconds=1.0,
        rounds=1,
        latency_seconds=1.0,
        fsync="batch",
        gateways=1,
        profile_gateway="",
    )


def test_rest_target_is_new_orders_and_a_wrong_answer_fails(tmp_path: Path) -> None:
    """ ">= 10k new orders/s through REST (the cancels not counted)"; a missed target exits 0,
    a wrong answer 1. ``rest_report.finish``."""
    said(">= 10k new orders/s through REST (the cancels not counted)", bench_rest)
    row = {
        "name": "rest throughput",
        "path": "rest",
        "new": 9_000,
        "elapsed_s": 1.0,
        "per_s": 13_500.0,
        "gateway_cpu_us_per_request": 90.0,
    }
    out = tmp_path / "rest.json"
    args = _finish_args(out)
    assert rest_report.finish(args, [row], {"right": True}, 64, 4, {}) == 0
    doc = json.loads(out.read_text())
    assert doc["summary"]["rest_orders_per_s"] == 9_000 and not doc["summary"]["target_met"]
    assert doc["targets_missed"] == ["REST 9,000 orders/s < 10,000"]
    assert rest_report.finish(args, [row | {"new": 10_000}], {"right": False}, 64, 4, {}) == 1
    assert json.loads(out.read_text())["summary"]["target_met"] is True


def test_rest_open_loop_cancels_the_oldest_passive_order_of_the_user() -> None:
    """Latency phase: "a cancel takes the oldest acknowledged passive order of its lane's
    user"; request k "planned at start + k/rate". ``open_loop`` on stand-in lanes."""
    said("a cancel takes the oldest acknowledged passive order of its lane's user", bench_rest)
    log: list[tuple[int, str, int]] = []

    class Fake(rest_load.Lane):
        def __init__(self, user: int) -> None:
            self.user = self.home = user
            self.n = 0

        async def order(self, passive: bool) -> rest_load.Answer:
            self.n += 1
            log.append((self.user, "passive" if passive else "cross", self.n))
            return rest_load.Answer(True, "NEW", self.n, 0)

        async def cancel(self, ref: Any) -> rest_load.Answer:
            log.append((self.user, "cancel", ref))
            return rest_load.Answer(True, "CANCELED", ref, 0)

    stats = rest_load.Stats()
    missing = asyncio.run(rest_load.open_loop([Fake(0), Fake(1)], 2_000, 0.03, stats))
    assert missing == 0 and sum(stats.ops.values()) == 60
    for user in (0, 1):
        mine = [(kind, n) for u, kind, n in log if u == user]
        assert [k for k, _ in mine[:6]] == ["cross", "passive", "cancel"] * 2
        assert [n for k, n in mine if k == "cancel"] == [n for k, n in mine if k == "passive"][:10]


# -- bench_ws, ws_clients --------------------------------------------------------------------


def test_ws_defaults_are_issue_6s_targets_and_the_sampling() -> None:
    """ "Defaults are the targets of issue 6 (1000 clients, 1000 trades/s, 15 s per phase";
    "one in ten, ``--verify-every``"; "for every 16th trade of each client"; "in 10 us
    buckets". ``bench_ws.main``'s parser, ``FeedClient``, ``BUCKET_NS``."""
    said(
        "Defaults are the targets of issue 6 (1000 clients, 1000 trades/s, 15 s per phase", bench_ws
    )
    said("in 10 us buckets, for every 16th trade of each client", bench_ws)
    said("(one in ten, ``--verify-every``, reads each id", bench_ws)
    opts = options_of(bench_ws)
    assert (opts["--clients"].default, opts["--rate"].default, opts["--seconds"].default) == (
        1000,
        1000,
        15.0,
    )
    assert opts["--verify-every"].default == FeedClient.FULL_EVERY == 10
    assert (FeedClient.SAMPLE, BUCKET_NS) == (16, 10_000)


def test_ws_percentile_is_read_off_the_buckets() -> None:
    """Latency "in 10 us buckets": ``percentile_ms`` gives the bucket's upper edge in ms,
    NaN with no sample."""
    said("to the client's read, in 10 us buckets", bench_ws)
    hist = [0, 50, 0, 49, 1]
    assert bench_ws.percentile_ms(hist, 0.5) == 0.02
    assert bench_ws.percentile_ms(hist, 0.99) == 0.04
    assert bench_ws.percentile_ms(hist, 1.0) == 0.05
    assert bench_ws.percentile_ms([0, 0], 0.5) != bench_ws.percentile_ms([0, 0], 0.5)


def test_ws_slow_client_is_expected_closed_with_1008_or_1011() -> None:
    """ "The slow client ... is expected to be closed with 1008 (or 1011, its pings unanswered;
    neither judged before 10,000 trades)" (review 130: it said 1008 alone).
    ``bench_ws.main``'s close-code check (review 111's ``_accepted_close_codes``)."""
    said("is expected to be closed with 1008 (or 1011, its pings unanswered;", bench_ws)
    assert _accepted_close_codes() == {1008, 1011}


def test_ws_count_and_span_check_catches_a_gap_across_reads_not_a_reorder_inside() -> None:
    """``FeedClient``: the cheap check "catches a gap, a repeat and a reorder across reads, but
    not a reorder inside one read"; a full client "reads every trade id". ``clients`` of
    ``test_bench_ws_delivery``: client 0 full, client 1 cheap."""
    said(
        "That catches a gap, a repeat and a reorder across reads, but not a reorder inside "
        "one read",
        FeedClient,
    )
    gap = [b"".join(FRAME % t for t in (10, 11, 12)), b"".join(FRAME % t for t in (14, 15))]
    assert [c.stats.out_of_order for c in clients(2, gap)] == [1, 1]
    inside = [b"".join(FRAME % t for t in (10, 12, 11, 13))]
    full, cheap = clients(2, inside)
    assert (full.stats.out_of_order, cheap.stats.out_of_order) == (1, 0)
    assert cheap.stats.trades == 4


# -- bench_db --------------------------------------------------------------------------------


def _days(trades: list[Any]) -> set[dt.date]:
    return {dt.datetime.fromtimestamp(t.ts_ns / 1e9, dt.UTC).date() for t in trades}


def test_db_trades_two_symbols_twenty_accounts_100_ms_apart() -> None:
    """``trades``: "``n`` trades over two symbols, 20 accounts, 100 ms apart"."""
    said("``n`` trades over two symbols, 20 accounts, 100 ms apart", bench_db.trades)
    made = bench_db.trades(100)
    assert {t.symbol for t in made} == {1, 2}
    assert len({t.maker_account for t in made} | {t.taker_account for t in made}) == 20
    assert {b.ts_ns - a.ts_ns for a, b in itertools.pairwise(made)} == {100_000_000}
    assert [t.seq for t in made] == list(range(1, 101))


def test_db_default_trades_span_one_day_partition() -> None:
    """``trades``: "(one day partition for 200k: 5.6 hours)" (review 130: it said two): the
    trades table is partitioned "by UTC day" (migration 0002). ``trades(200_000)``'s days."""
    said("(one day partition for 200k:", bench_db.trades)
    assert options_of(bench_db)["--trades"].default == 200_000
    assert len(_days(bench_db.trades(200_000))) == 1


def test_db_answer_check_holds_in_every_round() -> None:
    """ "after every round the table holds exactly the trades sent": a wrong round that is not
    the median one still fails the check. ``bench_db.median_round``."""
    said("The answer check: after every round the table holds exactly the trades sent", bench_db)
    rounds = iter(
        [
            {"trades_per_s": 3.0, "ok": True},
            {"trades_per_s": 1.0, "ok": False},
            {"trades_per_s": 2.0, "ok": True},
        ]
    )
    row = bench_db.median_round(3, lambda: next(rounds))
    assert row["trades_per_s"] == 2.0 and row["ok"] is False
    assert row["rounds_trades_per_s"] == [1, 2, 3]


# -- bench_failover --------------------------------------------------------------------------


def _rows(orders_per_s: float) -> dict[str, dict[str, Any]]:
    return {
        "latency": {"ops_per_s": 900.0, "ack_p50_us": 100, "ack_p99_us": 400},
        "throughput": {"ops_per_s": orders_per_s, "ack_p50_us": 900, "ack_p99_us": 5000},
    }


def test_failover_runs_for_every_replicated_pair(monkeypatch: pytest.MonkeyPatch) -> None:
    """``run_mode``: "One fresh deployment under the load; failover too where it is a
    replicated pair (async or sync)" (review 130: it said the sync pair).
    ``run_mode("async")`` with its deployment and load stood in for."""
    said("failover too where it is a replicated pair (async", bench_failover.run_mode)
    failed_over: list[str] = []

    class Deployment:
        def __init__(self, mode: str, names: list[str]) -> None:
            self.mode, self.port, self.standby, self.primary = mode, 0, Path("s"), Path("p")

        def start(self) -> None: ...

        def stop(self) -> None: ...

    async def load(*_args: Any) -> list[dict[str, Any]]:
        rows = _rows(1.0)
        return [
            rows["latency"] | {"acks": 1, "orders": 1, "duplicate_acks": 0},
            rows["throughput"] | {"acks": 1, "orders": 1, "duplicate_acks": 0},
        ]

    monkeypatch.setattr(bench_failover, "Deployment", Deployment)
    monkeypatch.setattr(bench_failover, "load", load)
    monkeypatch.setattr(bench_failover, "load_profile", lambda path: path)
    monkeypatch.setattr(bench_failover, "wait_caught_up", lambda *a: True)
    printed = (
        "failover_s",
        "promote_script_s",
        "first_order_s",
        "acked_orders_lost",
        "orders_acked_before_the_crash",
        "lag_at_crash",
    )

    def failover(deploy: Any, checks: Any) -> dict[str, float]:
        failed_over.append(deploy.mode)
        return dict.fromkeys(printed, 0.0)

    monkeypatch.setattr(bench_failover, "failover", failover)
    checks: collections.defaultdict[str, bool] = collections.defaultdict(lambda: True)
    phases = [("latency", 1, 1.0), ("throughput", 1, 1.0)]
    bench_failover.run_mode("async", ["S0"], phases, checks)
    assert failed_over == ["async"]


def test_failover_targets_best_of_rounds_and_worst_failover(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """ "sync keeps >= 70% of the throughput without replication; failover <= 2 s (the worst of
    the rounds)"; "Best of the rounds per mode"; a failed answer check exits 1.
    ``bench_failover.main`` with ``run_mode`` stood in for."""
    said(
        "sync keeps >= 70% of the throughput without replication; failover <= 2 s (the worst "
        "of the rounds)",
        bench_failover,
    )
    said("Best of the rounds per mode.", bench_failover)
    rates = {"off": iter([9_000.0, 10_000.0]), "sync": iter([6_000.0, 5_000.0])}
    took = iter([2.5, 1.0])
    wrong: list[bool] = []

    def run_mode(mode: str, names: list[str], phases: Any, checks: Any) -> Any:
        checks[f"{mode}: every order acked once"] &= not wrong
        fo = None if mode == "off" else {"failover_s": next(took)}
        return _rows(next(rates[mode])), fo

    monkeypatch.setattr(bench_failover, "run_mode", run_mode)
    out = tmp_path / "failover.json"
    argv = ("--trips", "0", "--modes", "off,sync", "--out", str(out))
    assert run_main(bench_failover, monkeypatch, *argv) == 0
    doc = json.loads(out.read_text())
    assert doc["summary"]["best"]["off"]["orders_per_s"] == 10_000.0
    assert doc["summary"]["sync / off orders/s"] == 0.6
    assert doc["summary"]["failover_worst_s"] == 2.5
    assert [m.split()[0] for m in doc["targets_missed"]] == ["sync", "failover"]
    rates = {"off": iter([9_000.0, 10_000.0]), "sync": iter([6_000.0, 5_000.0])}
    took, wrong[:] = iter([1.0, 1.0]), [True]
    assert run_main(bench_failover, monkeypatch, *argv) == 1


# -- cpu_watch -------------------------------------------------------------------------------


def test_cpu_describe_busiest_first_and_the_load_saturated_only_all_of_it() -> None:
    """``describe``: "the busiest first. The load's share is the sum over its
    ``load_processes`` processes, saturated only when all of them are"; ``SATURATED_PCT``."""
    said(
        "The load's share is the sum over its ``load_processes`` processes, saturated only "
        "when all of them are",
        cpu_watch.describe,
    )
    text = cpu_watch.describe({"matcher": 12.0, "router": 97.0, "load": 150.0}, 2)
    assert text == "CPU, % of a core: load x2 150%, router 97% (saturated), matcher 12%"
    assert "load 90% (saturated)" in cpu_watch.describe({"load": 90.0})
    assert cpu_watch.describe({}) == "CPU: no samples in the window"


def test_cpu_share_over_a_window_from_the_samples_inside_it() -> None:
    """``share``: "Each process's CPU in % of one core over [start, end] ..., from the samples
    nearest inside the window; empty when the window held fewer than two"."""
    said(
        "from the samples nearest inside the window; empty when the window held fewer than two",
        cpu_watch.CpuWatch.share,
    )
    watch = cpu_watch.CpuWatch({})
    watch._times = [0.0, 1.0, 2.0, 3.0]
    watch._samples = [{"a": 0.0}, {"a": 0.5}, {"a": 1.5}, {"a": 1.6, "b": 1.0}]
    assert watch.share(0.5, 2.5) == {"a": 100.0}
    assert watch.share(0.5, 1.5) == {}
