"""Review 264 (a helper, hostile): the benchmarks as contracts: each prints its figures,
compares itself with a peer in the same run, checks its own answers and writes its JSON with
its targets judged. Each bench's functions are called in-process on the smallest inputs, the
checked thing made wrong; nothing here starts an exchange or a database.

Reviewed: ``tests/bench/bench_matcher.py`` (main's answer checks, peers, JSON), ``report.py``
(``conclude``: the exit code), ``bench_gateway.py`` (``codec``, ``Counter``, ``client_load``),
``bench_rest.py`` and ``rest_report.py`` (``finish``: ``target_met``, the missed targets),
``bench_pipeline.py`` (``soak``, ``SoakRun.report``, ``judge``) and ``soak.py``
(``RssWatch``); the Makefile's ``bench-*`` targets and README's "## Benchmarks".

Faults (each fixed; its test says what it was):

1. ``tests/bench/bench_gateway.py:348`` (``client_load.session``): a session reads until it
   has ``per_session`` Filled reports, whatever else came. A gateway that rejects an order
   (150=8) never fills it, so the bench waits out ``wait_for(..., 300)`` (line 356) and dies
   with a ``TimeoutError``: five minutes, then a traceback, no ``gateway.json``, and the check
   "one New and one Filled report per order, no rejects" is never written as failed. Fix:
   end a session once every order has its final answer (``new + rejects >= per_session``
   and ``filled + rejects >= per_session``), so the check reads the rejects and fails.
2. ``tests/bench/bench_gateway.py:216`` (``codec``): the row "ringex parse, all 50k
   messages kept" keeps that name whatever ``--codec-messages`` says: a run of 1,000
   messages prints and writes "all 50k messages kept". Fix: name the row after ``n``
   (``f"ringex parse, all {n:,} messages kept"``).
3. ``tests/bench/rest_report.py:105`` (``finish``): with ``--paths fix`` (or no REST
   throughput row) issue 10's target is not judged, yet nothing says so: ``targets_missed``
   is empty and the run prints "targets: all met". bench-pipeline and bench-matcher list a
   target not judged as such (review 33: "a target not judged is listed, never met"). Fix:
   when ``rest is None``, append "REST >= 10,000 orders/s: not judged, no REST throughput
   phase (--paths ...)" to ``missed`` and write ``"target_met": None``.
4. ``tests/bench/bench_matcher.py:423,449`` (``main``): FastBook's events are checked only
   against ``liquibook+listener``'s fills; ReferenceBook's events are never compared with
   FastBook's (only their state hashes, which a dropped or mispriced Trade does not move).
   Where liquibook does not import (a build without it), a FastBook that returns no Trade at
   all passes every check and the bench exits 0 with its figures. Fix: check
   ``trades_of(records)`` (or every event) against ReferenceBook's events over the same
   records, in ``main`` beside the state hash check.

Found sound (plain tests): a peer whose book disagrees with the generator's fails
bench-matcher's checks and its exit code (1), as does a FastBook dropping trades while
liquibook+listener runs; ``conclude`` exits 0 on a missed target and 1 on a wrong answer,
both in the JSON; bench-gateway's ``Counter`` counts a reject and a duplicate report, and a
right gateway's answers pass; bench-rest's missed target is ``target_met`` False, "NOT met",
exit 0; bench-pipeline's ``judge`` says a missed latency target at 10k/s as a miss (no
crash); the soak, with stand-in sessions, samples every process of the table, reports each
with a judged trend, and a process gone mid-soak fails its check.

Not run here: bench-db's row checks (a PostgreSQL cluster) and a real ``--soak`` end to end
(``ringex run --detach``; its ``main`` clears ``var/bench/pipeline`` of any run beside it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from procs.common.records import Record, Trade
from procs.core.fast_book import FastBook
from tests.bench import bench_gateway, bench_matcher, bench_pipeline, rest_report
from tests.bench.fix_load import Session
from tests.bench.matcher_peers import LiquibookEventsPeer
from tests.bench.report import conclude

# -- bench-matcher ----------------------------------------------------------------------------

PIPED = {
    "throughput_events": 1, "throughput_events_expected": 1, "paced_events": 1,
    "paced_events_expected": 1, "ops_per_s": 400_000.0, "paced_rate": 10_000,
    "p50_us": 10.0, "p99_us": 20.0, "sent_late_p50_us": 1.0, "sent_late_p99_us": 2.0,
}  # fmt: skip
MEM = {"orders": 1_000, "rss_growth": 300_000, "bytes_per_order": 300.0,
       "ops_per_s": 1e6, "max_gc_pause_ms": 1.0, "gc_share": 0.01}  # fmt: skip


def run_matcher(monkeypatch: pytest.MonkeyPatch, out: Path, peers: list[Any]) -> int:
    """bench_matcher.main on 600 commands a mix, one round; pipeline and memory stand-ins
    (review 65's form), ``peers`` in place of the importable ones."""
    monkeypatch.setattr(bench_matcher, "available_peers", lambda: peers)
    monkeypatch.setattr(bench_matcher, "pipeline", lambda *_a: dict(PIPED))
    monkeypatch.setattr(bench_matcher, "memory", lambda *_a: dict(MEM))
    argv = ["bench_matcher", "--ops", "600", "--rounds", "1", "--wait", "yield"]
    monkeypatch.setattr(sys, "argv", [*argv, "--out", str(out)])
    return bench_matcher.main()


def drop_trades(monkeypatch: pytest.MonkeyPatch) -> None:
    """FastBook keeps its state right but returns no Trade: the answer a user reads is
    wrong, its book (and so its state hash) is not."""
    execute = FastBook.execute

    def dropping(self: FastBook, command: Record) -> list[Record]:
        return [e for e in execute(self, command) if type(e) is not Trade]

    monkeypatch.setattr(FastBook, "execute", dropping)


class WrongPeer:
    """A pure-Python peer whose book ends empty: it disagrees with the generator."""

    name = "lightmatchingengine"

    @staticmethod
    def version() -> str:
        return "0-wrong"

    def run(self, ops: list[tuple[int, ...]]) -> None:
        pass

    def levels(self) -> dict[str, list[tuple[int, int]]]:
        return {"bids": [], "asks": []}


def test_a_peer_that_disagrees_fails_the_matcher_bench(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scenario: a peer's final book differs from the generator's shadow book. Expected: its
    check is False in matcher.json and the run exits 1. Now: so."""
    out = tmp_path / "matcher.json"
    assert run_matcher(monkeypatch, out, [WrongPeer]) == 1
    checks = json.loads(out.read_text())["checks"]
    assert checks["simple: lightmatchingengine book == shadow"] is False
    assert checks["simple: ringex FastBook book == shadow"] is True


@pytest.mark.skipif(not LiquibookEventsPeer.available(), reason="liquibook does not import")
def test_dropped_trades_fail_the_matcher_bench_where_liquibook_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scenario: FastBook returns no Trade events (its book state kept right); liquibook and
    its listener run as peers. Expected: "liquibook+listener fills == FastBook trades" fails
    and the run exits 1. Now: so."""
    drop_trades(monkeypatch)
    out = tmp_path / "matcher.json"
    assert run_matcher(monkeypatch, out, [LiquibookEventsPeer]) == 1
    checks = json.loads(out.read_text())["checks"]
    # 600 commands of the exchange-core mix make no trade; the simple mix's make 104
    assert checks["simple: liquibook+listener fills == FastBook trades"] is False


def test_dropped_trades_fail_the_matcher_bench_without_liquibook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scenario: FastBook returns no Trade events (its state right), on a host where no peer
    imports (liquibook not built). Expected: an answer check fails (FastBook's trades against
    ReferenceBook's, which the bench runs over the same records) and the run exits 1. Was (fixed):
    every check passes (state hashes and levels only) and it exits 0 with its figures."""
    drop_trades(monkeypatch)
    out = tmp_path / "matcher.json"
    code = run_matcher(monkeypatch, out, [])
    checks = json.loads(out.read_text())["checks"]
    assert code == 1 and not all(checks.values()), checks


# -- report.conclude: the exit code -------------------------------------------------------------


def test_a_missed_target_exits_0_and_a_wrong_answer_exits_1(tmp_path: Path) -> None:
    """Scenario: conclude with a missed target only, then with a failed check. Expected: 0
    then 1 (report.py's contract: a missed target is a figure), both written to the JSON.
    Now: so."""
    out = tmp_path / "x.json"
    assert conclude(out, {"results": []}, {"ok": True}, ["a < b"]) == 0
    assert json.loads(out.read_text())["targets_missed"] == ["a < b"]
    assert conclude(out, {"results": []}, {"ok": False}, []) == 1
    assert json.loads(out.read_text())["checks"] == {"ok": False}


# -- bench-gateway ------------------------------------------------------------------------------

LOGON_ACK = b"8=FIX.4.4\x019=5\x0135=A\x0110=000\x01"


def report(cl_ord_id: bytes, exec_type: bytes, status: bytes) -> bytes:
    body = b"35=8\x0149=RINGEX\x0111=%s\x01150=%s\x0139=%s\x01" % (cl_ord_id, exec_type, status)
    return b"8=FIX.4.4\x019=%d\x01%s10=000\x01" % (len(body), body)


async def fake_gateway(answer: Any, writers: list[asyncio.StreamWriter]) -> asyncio.Server:
    """A FIX acceptor on a free port: Logon answered, each D answered by ``answer(clordid)``;
    its connections' writers go to ``writers``."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        pending = b""
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                pending += data
                while (end := pending.find(b"\x0110=")) >= 0 and len(pending) >= end + 8:
                    msg, pending = pending[: end + 8], pending[end + 8 :]
                    if b"\x0135=A\x01" in msg:
                        writer.write(LOGON_ACK)
                    elif b"\x0135=D\x01" in msg:
                        cl_ord_id = msg.split(b"\x0111=", 1)[1].split(b"\x01", 1)[0]
                        writer.write(answer(cl_ord_id))
                await writer.drain()
        writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


def load_through(answer: Any, per_session: int, hang_up_s: float = 60.0) -> tuple[float, list[Any]]:
    """bench_gateway.client_load (2 sessions) against a fake gateway that hangs up after
    ``hang_up_s`` (a real one never does: client_load would wait out its 300 s): its elapsed
    time and counters."""

    async def go() -> tuple[float, list[Any]]:
        writers: list[asyncio.StreamWriter] = []
        server = await fake_gateway(answer, writers)
        port = server.sockets[0].getsockname()[1]

        def close_all() -> None:
            for writer in writers:
                writer.close()

        hang_up = asyncio.get_running_loop().call_later(hang_up_s, close_all)
        try:
            return await bench_gateway.client_load(port, 2, per_session)
        finally:
            hang_up.cancel()
            server.close()
            for writer in writers:
                writer.close()
            await asyncio.sleep(0)  # the handlers see their connections closed

    return asyncio.run(go())


def right_check(counters: list[Any], per_session: int) -> bool:
    """bench_gateway.pipeline's check, as it computes it."""
    return all(
        (c.new, c.filled, c.reports, c.rejects) == (per_session, per_session, 2 * per_session, 0)
        for c in counters
    )


def test_a_right_gateway_passes_the_gateway_check() -> None:
    """Scenario: each order answered New then Filled. Expected: client_load ends and the
    check holds. Now: so."""
    _, counters = load_through(lambda c: report(c, b"0", b"0") + report(c, b"F", b"2"), 5)
    assert right_check(counters, 5)


def test_a_duplicate_report_fails_the_gateway_check() -> None:
    """Scenario: each order answered New twice, then Filled. Expected: the check fails.
    Now: so."""

    def twice_new(c: bytes) -> bytes:
        return report(c, b"0", b"0") * 2 + report(c, b"F", b"2")

    _, counters = load_through(twice_new, 5)
    assert not right_check(counters, 5)


def test_a_rejecting_gateway_fails_the_check_rather_than_hang() -> None:
    """Scenario: the gateway answers each of 2 x 5 orders with a reject (150=8, 39=8).
    Expected: client_load ends once every order has its answer, the rejects counted, so the
    check fails and gateway.json says so. Was (fixed): each session waits for Filled reports that
    never come, until the connection closes: here the fake gateway hangs up after 12 s; a
    real one never does, and the bench's wait_for ends it at 300 s with a TimeoutError."""
    elapsed, counters = load_through(lambda c: report(c, b"8", b"8"), 5, hang_up_s=12)
    assert [c.rejects for c in counters] == [5, 5]
    assert not right_check(counters, 5)
    assert elapsed < 8, f"client_load took {elapsed:.1f} s for 10 answered orders"


def test_the_codec_rows_name_the_messages_parsed() -> None:
    """Scenario: ``--codec-messages 200``. Expected: no row claims another count of messages
    than the 200 it parsed. Was (fixed): "ringex parse, all 50k messages kept"."""
    checks: dict[str, bool] = {}
    rows = bench_gateway.codec(200, 1, checks)
    assert all(checks.values()), checks
    assert not [r["name"] for r in rows if "50k" in r["name"]]


# -- bench-rest -----------------------------------------------------------------------------


def rest_args(out: Path, paths: str) -> argparse.Namespace:
    return argparse.Namespace(
        mix="orders", batch=1, rate=1000.0, seconds=1.0, rounds=1, client="raw",
        latency_seconds=1.0, fsync="batch", gateways=1, profile_gateway="", out=str(out),
        paths=paths,
    )  # fmt: skip


def throughput_row(path: str, new: int) -> dict[str, Any]:
    return {"name": f"{path} throughput", "path": path, "phase": "throughput", "new": new,
            "elapsed_s": 1.0, "per_s": new * 1.5, "requests": int(new * 1.5),
            "gateway_cpu_us_per_request": 100.0}  # fmt: skip


def test_a_missed_rest_target_is_said_missed_not_a_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Scenario: REST made 7,000 new orders/s (10,500 requests/s with the cancels).
    Expected: ``target_met`` False, "NOT met" printed, listed missed, exit 0. Now: so."""
    out = tmp_path / "rest.json"
    rows = [throughput_row("rest", 7_000), throughput_row("fix", 9_000)]
    assert rest_report.finish(rest_args(out, "rest,fix"), rows, {"ok": True}, 2, 2, {}) == 0
    doc = json.loads(out.read_text())
    assert doc["summary"]["target_met"] is False
    assert doc["summary"]["rest_orders_per_s"] == 7_000
    assert doc["targets_missed"] and "NOT met" in capsys.readouterr().out


def test_a_rest_target_not_judged_is_listed_not_met(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Scenario: ``--paths fix``: no REST phase ran. Expected: issue 10's target listed as
    not judged (never met), as bench-pipeline and bench-matcher list theirs. Was (fixed):
    ``targets_missed`` is empty and the run prints "targets: all met"."""
    out = tmp_path / "rest.json"
    rest_report.finish(rest_args(out, "fix"), [throughput_row("fix", 9_000)], {}, 2, 2, {})
    assert "all met" not in capsys.readouterr().out
    assert json.loads(out.read_text())["targets_missed"]


# -- bench-pipeline: judge and the soak ---------------------------------------------------------


def test_a_missed_latency_target_at_10k_is_said_missed() -> None:
    """Scenario: judge at --rate 10000, ack p50 900 us, p99 5 ms, 60k acks/s at 70k offered.
    Expected: both latency targets listed missed with their figures, the throughput met.
    Now: so."""
    latency = {"ack_p50_us": 900, "ack_p99_us": 5_000}
    throughput = {"ops_per_s": 60_000.0, "offered_rate": 70_000}
    problems = bench_pipeline.judge(latency, throughput, 10_000)
    assert problems == ["ack p50 900 us > 200 (at 10000/s)", "ack p99 5000 us > 2000 (at 10000/s)"]


def soak_args() -> argparse.Namespace:
    return argparse.Namespace(
        soak=1.5, soak_rate=400, soak_window=64, soak_sample=0.15, soak_warmup=0.3
    )


@pytest.fixture
def soaked(monkeypatch: pytest.MonkeyPatch) -> Any:
    """bench_pipeline.soak with stand-in sessions (each order acked as sent) over a process
    table of this process and a child; ``soaked(kill_child=True)`` ends the child mid-soak."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])

    def send(session: Session, ref: bytes, side: bytes, planned_ns: int) -> None:
        session.acks += 1

    async def never(session: Session, rec: Any) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(bench_pipeline, "send_order", send)
    monkeypatch.setattr(bench_pipeline, "read_reports", never)
    table = {"supervisor": os.getpid(), "gateway": child.pid}
    monkeypatch.setattr(bench_pipeline, "process_table", lambda _cfg: dict(table))

    def run(kill_child: bool = False) -> tuple[bench_pipeline.SoakRun, dict[str, Any]]:
        async def go() -> bench_pipeline.SoakRun:
            sessions = [Session("S0", 0), Session("S1", 0)]
            task = asyncio.ensure_future(bench_pipeline.soak(sessions, None, soak_args()))  # type: ignore[arg-type]
            if kill_child:
                await asyncio.sleep(0.6)
                child.kill()
                child.wait(30)  # reaped, as the supervisor reaps its children
            return await task

        done = asyncio.run(go())
        return done, done.report(400, 64)

    yield run
    child.kill()
    child.wait(30)


def test_the_soak_reports_every_process_with_a_judged_trend(soaked: Any) -> None:
    """Scenario: a 1.5 s soak, RSS every 0.15 s after a 0.3 s warm-up, over two processes.
    Expected: every order acked once, one RSS row per process, each judged (>= 3 samples
    after the baseline) with its start and end, the series per process, pids unchanged.
    Now: so."""
    done, doc = soaked()
    assert done.orders > 0 and done.acks == done.orders and done.duplicate_acks == 0
    assert {r["process"] for r in doc["rss"]} == {"supervisor", "gateway"}
    for r in doc["rss"]:
        assert r["judged"] and r["samples_judged"] >= 3, r
        assert r["start_mib"] > 0 and r["end_mib"] > 0
    assert set(doc["rss_mib"]) == {"t_s", "supervisor", "gateway"}
    assert done.pids_after == done.watch.pids and not done.watch.gone
    assert doc["achieved_rate"] > 0 and doc["windows"]


def test_a_process_gone_mid_soak_is_reported_gone(soaked: Any) -> None:
    """Scenario: the gateway's process ends 0.6 s into the soak. Expected: its row says
    gone and not within target, so main's "no process exited or restarted" check fails.
    Now: so."""
    started = time.monotonic()
    done, doc = soaked(kill_child=True)
    assert time.monotonic() - started < 45
    rows = {r["process"]: r for r in doc["rss"]}
    assert rows["gateway"] == {"process": "gateway", "gone": True, "within_target": False}
    assert rows["supervisor"]["judged"]
    assert done.watch.gone == {"gateway"}
