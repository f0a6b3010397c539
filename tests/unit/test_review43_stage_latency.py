"""Review 43 (hostile): the stage latency histograms of 1de0f58 and d4b4862.

The gateway counts ``ack`` (received -> New report), ``to_router`` (received -> the
router's stamp), ``router_to_ack`` (stamp -> New report) for its FIX orders, and ``to_ring``
(received -> published into the router ring) for every new order; the matcher counts
``queue`` (stamp -> read, each batch's oldest command). The supervisor serves them as
Prometheus histograms (``Carried`` keeps them from going down over a restart), and
bench-pipeline's ``StageWatch`` reads percentiles off the pages.

Found, and fixed (the gateway now counts only commands received since its start, as the
matcher does):

- ``to_ring`` timed commands a restart publishes again from their first receipt: the
  matcher skips commands stamped before its start (``_started_ns``: "recovery, not
  queueing") and the gateway's ack histograms skip restored orders (``received_ns`` 0), but
  ``GatewayServer.publish`` records every ``NewOrder`` it publishes. A full restart's resend
  of a command the old ring took along is a second sample of one order; a command held over
  a crash is a sample of the downtime, with no ``to_router`` sample beside it.

Holds: the gateway's page is written in ``GATEWAY_COUNTERS``' order and ``to_router`` plus
``router_to_ack`` is exactly ``ack``; a matcher owning two symbols keeps its trades words and
counts ``queue`` after them, skipping commands stamped before its start; the collector's
histograms are cumulative with +Inf = count, never go down over a matcher's restart, and an
older matcher page (no ``queue``) scrapes; ``StageWatch`` counts a restarted page from zero.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from pathlib import Path
from typing import Any

import pytest

from config.schema import MatcherConfig, RingConfig, RingexConfig, SymbolConfig, WaitConfig
from procs.common.record_codec import RecordCodec
from procs.common.records import NewOrder
from procs.common.stats import (
    GATEWAY_COUNTERS,
    LATENCY_BUCKETS_US,
    LatencyHistogram,
    histogram_counters,
    matcher_counters,
    matcher_page,
)
from procs.common.topology import matcher_input, matcher_output
from procs.common.types import OrdType, Side, StpMode, TimeInForce
from procs.matcher.main import INPUT_CONSUMER, MatcherShell
from procs.supervisor.metrics import RingexCollector
from shm import Ring
from shm.counters import Counters
from shm.inspect import remove_instance
from tests.bench.stage_watch import StageWatch, percentile
from tests.unit.gateway.harness import Harness, close_all, config, settled
from tests.unit.gateway.test_gateway import logged_on, order
from tests.unit.gateway.test_gateway_restart import crash

CODEC = RecordCodec()
ALICE, BOB = 7, 8


def exchange(instance: str, tmp_path: Path) -> Harness:
    h = Harness(config(instance, tmp_path))
    h.add_user("ALICE", "secret", ALICE)
    h.fund(ALICE)
    h.fund(BOB)
    return h


def run_loop(body: Any, limit_s: float = 20.0) -> None:
    async def main() -> None:
        try:
            await asyncio.wait_for(body(), limit_s)
        finally:
            await close_all()

    asyncio.run(main())


class FaultError(AssertionError):
    """The fault itself (a failed precondition raises a plain AssertionError)."""


def found(holds: bool, why: str) -> None:
    if not holds:
        raise FaultError(why)


def count(values: dict[str, int], prefix: str) -> int:
    return sum(values[name] for name in histogram_counters(prefix)[1:])


# == found and fixed: to_ring timed a command published again by a restart ===================


def test_a_full_restart_does_not_count_a_resent_order_into_to_ring_again(
    instance: str, tmp_path: Path
) -> None:
    """s2 goes into the router ring (to_ring counts it), the router never takes it, the whole
    exchange restarts (new rings): the gateway sends s2 again (``_lost_commands``)."""
    first = exchange(instance, tmp_path)
    counted: list[int] = []

    async def place() -> None:
        alice = await logged_on(await first.start())
        gw = first.gateway
        assert gw is not None
        first.pause()
        await alice.send("D", *order("s2", "2", "1.00", "101.00"))
        await settled(lambda: gw.producer.sequence == 1 and not gw.entry.outgoing)
        counted.append(gw.to_ring.count)
        await crash(first)

    run_loop(place)
    first.close()
    remove_instance(instance)
    again = Harness(first.cfg)

    async def restarted() -> None:
        await again.start()
        again.pause()
        gw = again.gateway
        assert gw is not None
        await settled(lambda: gw.producer.sequence == 1)  # s2, sent again
        counted.append(gw.to_ring.count)
        await crash(again)

    try:
        run_loop(restarted)
    finally:
        again.close()
    assert counted[0] == 1  # its one sample, in the first gateway
    found(counted[1] == 0, "s2's second publish is a second to_ring sample of one order")


def test_a_command_held_over_a_crash_is_not_timed_across_the_downtime(
    instance: str, tmp_path: Path
) -> None:
    h = exchange(instance, tmp_path)
    seen: dict[str, int] = {}

    async def scenario() -> None:
        port = await h.start()
        alice = await logged_on(port)
        gw = h.gateway
        assert gw is not None
        gw.producer.try_publish_slots = lambda images, count: False  # type: ignore[method-assign]
        await alice.send("D", *order("held", "2", "1.00", "100.00"))
        await settled(lambda: bool(gw._unpublished))
        await crash(h)
        await asyncio.sleep(0.3)
        await h.start()
        again = h.gateway
        assert again is not None
        await settled(lambda: again.entry.acks == 1)  # published at the restart, acked
        seen["acks"] = again.entry.acks
        seen["to_ring"], seen["to_ring_sum_ns"] = again.to_ring.count, again.to_ring.sum_ns
        seen["to_router"] = again.entry.to_router.count
        await h.stop()

    try:
        run_loop(scenario)
    finally:
        h.close()
    assert seen["acks"] == 1 and seen["to_router"] == 0  # restored: no received_ns, no ack sample
    found(seen["to_ring"] == 0, f"to_ring timed it across the crash: {seen}")


# == holds ==================================================================================


def test_the_gateway_page_is_the_counters_in_order_and_the_stages_add_up(
    instance: str, tmp_path: Path
) -> None:
    """One FIX order acked: one sample in each of the gateway's four histograms, at the
    names ``GATEWAY_COUNTERS`` gives them; received -> stamp plus stamp -> ack is exactly
    received -> ack, and the gateway's own part of the first stage is within it."""
    h = exchange(instance, tmp_path)
    pages: list[dict[str, int]] = []

    async def scenario() -> None:
        alice = await logged_on(await h.start())
        gw = h.gateway
        assert gw is not None
        await alice.send("D", *order("s1", "2", "1.00", "101.00"))
        assert (await alice.expect("8")).get(150) == b"0"
        await settled(lambda: gw.stats.read()["acks"] == 1)
        pages.append(gw.stats.read())
        assert list(pages[0]) == list(GATEWAY_COUNTERS)
        assert gw.stats.values.tolist() == [*gw.entry.counters(), *gw.to_ring.values()]
        await h.stop()

    try:
        run_loop(scenario)
    finally:
        h.close()
    page = pages[0]
    assert [count(page, p) for p in ("ack", "to_router", "router_to_ack", "to_ring")] == [1] * 4
    sums = {p: page[f"{p}_sum_ns"] for p in ("ack", "to_router", "router_to_ack", "to_ring")}
    assert sums["to_router"] + sums["router_to_ack"] == sums["ack"] > 0
    assert 0 < sums["to_ring"] <= sums["to_router"]


def two_symbol_config(instance: str, var: Path) -> RingexConfig:
    """A matcher owning two symbols, listed against their ids' order."""
    return RingexConfig(
        instance=instance,
        ring=RingConfig(capacity=1024),
        wait=WaitConfig(strategy="blocking", park_timeout_s=0.01),
        symbols=[SymbolConfig(name="ZZZ", id=9), SymbolConfig(name="AAA", id=3)],
        matchers=[MatcherConfig(name="m1", symbols=["ZZZ", "AAA"], snapshot_every=0)],
        var_dir=str(var),
    )


def new_order(seq: int, ts_ns: int, symbol: int, side: Side, account: int) -> NewOrder:
    return NewOrder(
        *(seq, ts_ns, 1, 1, seq, account, symbol, seq),
        side=side, ord_type=OrdType.LIMIT, tif=TimeInForce.GTC, flags=0, stp=StpMode.NONE,
        price=100, qty=1, stop_price=0, display_qty=0,
    )  # fmt: skip


def test_a_matcher_of_two_symbols_counts_queue_after_its_trades_words(
    instance: str, tmp_path: Path
) -> None:
    cfg = two_symbol_config(instance, tmp_path)
    inbound = Ring.create(
        instance, matcher_input("m1"), CODEC, capacity=1024, consumers=[INPUT_CONSUMER]
    )
    outbound = Ring.create(
        instance, matcher_output("m1"), CODEC, capacity=1 << 12, consumers=["tap"]
    )
    shell = MatcherShell(cfg, "m1")
    try:
        assert shell.stats.names == matcher_counters(cfg, "m1")
        assert shell.stats.names[:4] == ("last_seq", "events", "trades_3", "trades_9")
        producer = inbound.producer()
        # stamped before the matcher started: recovery, not queueing (not counted)
        producer.publish_batch([new_order(1, 1, 9, Side.BUY, ALICE)])
        assert shell.step(timeout_s=0.1) == 1
        assert count(shell.stats.read(), "queue") == 0
        now = time.time_ns()
        producer.publish_batch([new_order(2, now, 9, Side.SELL, BOB)])
        assert shell.step(timeout_s=0.1) == 1
        producer.publish_batch([new_order(3, time.time_ns(), 3, Side.SELL, BOB)])
        assert shell.step(timeout_s=0.1) == 1
        page = shell.stats.read()
        producer.close()
    finally:
        shell.close()
        inbound.close()
        outbound.close()
    assert (page["last_seq"], page["trades_9"], page["trades_3"]) == (3, 1, 0)
    assert count(page, "queue") == 2 and 0 < page["queue_sum_ns"] < 10**9


def collected(collector: RingexCollector, name: str) -> dict[tuple[str, str], float]:
    return {
        (s.name, s.labels.get("le", "")): s.value
        for family in collector.collect()
        if family.name == name
        for s in family.samples
    }


def test_the_queue_histogram_is_cumulative_and_never_goes_down_over_a_matcher_restart(
    instance: str, tmp_path: Path
) -> None:
    cfg = two_symbol_config(instance, tmp_path)
    collector = RingexCollector(cfg, "test", {}, lambda: [], lambda: "running")
    page = Counters.open(instance, matcher_page("m1"), matcher_counters(cfg, "m1"))
    at = page.index("queue_sum_ns")
    name = "ringex_matcher_queue_latency_seconds"
    try:
        first = LatencyHistogram()
        for ns in (5_000, 40_000, 2 * 10**9):
            first.record(ns)
        page.values[at : at + len(first.values())] = array("Q", first.values())
        before = collected(collector, name)
        restarted = LatencyHistogram()  # a new matcher: from zero, over the same page
        restarted.record(5_000)
        page.values[at : at + len(restarted.values())] = array("Q", restarted.values())
        after = collected(collector, name)
    finally:
        page.close()
        collector.close()
    assert before[(name + "_count", "")] == before[(name + "_bucket", "+Inf")] == 3
    assert after[(name + "_count", "")] == after[(name + "_bucket", "+Inf")] == 4
    assert after[(name + "_bucket", "1e-05")] == 2  # one from each incarnation
    assert after[(name + "_bucket", "5e-05")] == 3  # cumulative
    assert after[(name + "_sum", "")] == pytest.approx(2.000050)
    buckets = [v for (n, _), v in after.items() if n == name + "_bucket"]
    assert len(buckets) == len(LATENCY_BUCKETS_US) + 1 and buckets == sorted(buckets)


def test_an_older_matcher_page_without_queue_scrapes(instance: str, tmp_path: Path) -> None:
    cfg = two_symbol_config(instance, tmp_path)
    page = Counters.open(instance, matcher_page("m1"), ("last_seq", "trades_3", "trades_9"))
    page.values[2] = 5
    collector = RingexCollector(cfg, "test", {}, lambda: [], lambda: "running")
    try:
        trades = collected(collector, "ringex_trades")
        queue = collected(collector, "ringex_matcher_queue_latency_seconds")
    finally:
        collector.close()
        page.close()
    assert trades[("ringex_trades_total", "")] == 5 and not queue


def test_stage_watch_counts_a_restarted_page_from_zero(instance: str, tmp_path: Path) -> None:
    cfg = config(instance, tmp_path)
    watch = StageWatch(cfg)  # not started: its samples set by hand
    name = "stats-gw1"

    def sample(*samples_us: int) -> dict[str, dict[str, int]]:
        histogram = LatencyHistogram()
        for us in samples_us:
            histogram.record(us * 1_000)
        return {name: dict(zip(histogram_counters("to_ring"), histogram.values(), strict=True))}

    watch._times = [1.0, 2.0, 3.0]
    watch._samples = [sample(120, 120), sample(120, 120, 130), sample(5)]  # restarted
    stages = watch.stages(1.5, 3.5)
    assert stages == {"to_ring": {"count": 1, "p50_us": 5, "p99_us": 10}}
    assert percentile([0, 0, 0, 0, 0, 0, 4, *[0] * 14], 0.5) == pytest.approx(125)
