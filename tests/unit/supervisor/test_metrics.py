"""The metrics collector over real rings and a real journal, scraped over HTTP: names, labels
and values of what the rings, the journal and the process table hold."""

from __future__ import annotations

import os
import socket
import time
import urllib.error
import urllib.request
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from config import load_profile
from config.schema import RingexConfig
from procs.common.journal_writer import JournalWriter
from procs.common.record_codec import RecordCodec
from procs.common.records import Heartbeat, Record
from procs.common.stats import (
    GATEWAY_COUNTERS,
    REJECT_REASONS,
    LatencyHistogram,
    gateway_page,
    matcher_counters,
    matcher_page,
    reject_slot,
)
from procs.common.topology import create_rings, journal_dir
from procs.supervisor import metrics
from procs.supervisor.metrics import (
    MetricsServer,
    ProcessSample,
    RingexCollector,
    journal_last_seq,
    oldest_unread_age_s,
)
from procs.supervisor.scrape_handler import ScrapeHandler
from shm import Ring
from shm.counters import Counters

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def cfg(instance: str, tmp_path: Path) -> RingexConfig:
    profile = tmp_path / "p.toml"
    profile.write_text(
        f'instance = "{instance}"\nvar_dir = "{tmp_path / "var"}"\n'
        "[marketdata]\nenabled = false\n[database]\nenabled = false\n"
        "[ring]\ncapacity = 1024\n"
        '[[gateways]]\nname = "gw1"\nid = 1\n'
    )
    return load_profile(str(profile))


@pytest.fixture
def rings(cfg: RingexConfig) -> Iterator[dict[str, Ring[Record]]]:
    made = create_rings(cfg, RecordCodec())
    yield made
    for ring in made.values():
        ring.close()


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def beats(count: int, ts_ns: int) -> list[Record]:
    return [Heartbeat(ts_ns, 1, n) for n in range(count)]


def test_scrape_reports_rings_roles_journal_and_processes(
    cfg: RingexConfig, rings: dict[str, Ring[Record]]
) -> None:
    two_s_ago = time.time_ns() - 2_000_000_000
    gateway, matcher = rings["gw1-cmd"].producer(), rings["m1-out"].producer()
    router = rings["gw1-cmd"].consumer("router", auto_commit=False)
    gateway.publish_batch(beats(3, two_s_ago))
    assert len(router.read(1)) == 1
    router.commit()  # read 1 of 3: lag 2, and record 1 (two seconds old) is the oldest unread
    matcher.publish_batch(beats(5, time.time_ns()))
    # the matcher's own count of its events: the ring's records hold its marks too (296)
    page = Counters.open(cfg.instance, matcher_page("m1"), matcher_counters(cfg, "m1"))
    page.values[page.index("events")] = 3
    writer = JournalWriter(
        journal_dir(cfg),
        slot_size=RecordCodec().slot_size,
        schema_id=RecordCodec().journal_schema_id,
    )
    codec = RecordCodec()
    writer.append(1, b"".join(codec.encode_slot(b) for b in beats(4, 1)), 4)
    writer.close()
    state = "running"
    processes = [
        ProcessSample("router", os.getpid(), True, True, 2, 1_700_000_000.0),
        ProcessSample("matcher-m1", 0, False, False, 0, 0.0),
    ]
    collector = RingexCollector(cfg, "test", rings, lambda: processes, lambda: state)
    server = MetricsServer(collector, "127.0.0.1", 0)
    try:
        assert server.url == f"http://127.0.0.1:{server.port}/metrics"
        got = scrape(server.url)
    finally:
        server.close()
        for role in (gateway, matcher, router):
            role.close()
        page.close()

    assert value(got, "ringex_info", ringex_instance=cfg.instance, profile="test") == 1
    assert value(got, "ringex_supervisor_state", ringex_supervisor_state="running") == 1
    assert value(got, "ringex_supervisor_state", ringex_supervisor_state="stopping") == 0
    assert value(got, "ringex_router_sequenced_total") == 4

    assert value(got, "ringex_ring_capacity", ring="gw1-cmd") == 1024
    assert value(got, "ringex_ring_records_total", ring="gw1-cmd") == 3
    assert value(got, "ringex_ring_records_total", ring="m1-out") == 5
    assert value(got, "ringex_ring_records_total", ring="m1-in") == 0
    assert value(got, "ringex_ring_producer_up", ring="gw1-cmd") == 1  # this process
    assert value(got, "ringex_ring_producer_up", ring="m1-in") == 0
    cmd = {"ring": "gw1-cmd", "consumer": "router"}
    assert value(got, "ringex_ring_consumer_records_total", **cmd) == 1
    assert value(got, "ringex_ring_consumer_lag", **cmd) == 2
    assert value(got, "ringex_ring_consumer_up", **cmd) == 1
    assert 2.0 <= value(got, "ringex_ring_consumer_oldest_unread_age_seconds", **cmd) < 60
    out = {"ring": "m1-out", "consumer": "gw1"}
    assert value(got, "ringex_ring_consumer_lag", **out) == 5
    assert value(got, "ringex_ring_consumer_up", **out) == 0  # declared, never attached
    assert 0 <= value(got, "ringex_ring_consumer_oldest_unread_age_seconds", **out) < 2
    idle = {"ring": "m1-in", "consumer": "matcher"}
    assert value(got, "ringex_ring_consumer_oldest_unread_age_seconds", **idle) == 0

    assert value(got, "ringex_gateway_commands_total", gateway="gw1") == 3
    assert value(got, "ringex_gateway_commands_total", gateway="admin") == 0
    assert value(got, "ringex_router_replies_total", gateway="gw1") == 0
    assert value(got, "ringex_matcher_commands_total", matcher="m1") == 0
    assert value(got, "ringex_matcher_events_total", matcher="m1") == 3  # (records: 5)

    assert value(got, "ringex_process_up", process="router") == 1
    assert value(got, "ringex_process_up", process="matcher-m1") == 0
    assert value(got, "ringex_process_ready", process="router") == 1
    assert value(got, "ringex_process_restarts_total", process="router") == 2
    assert value(got, "ringex_process_pid", process="router") == os.getpid()
    assert value(got, "ringex_process_start_time_seconds", process="router") == 1.7e9
    assert value(got, "ringex_process_cpu_seconds_total", process="router") > 0
    assert value(got, "ringex_process_resident_memory_bytes", process="router") > 1 << 20
    assert ("ringex_process_pid", frozenset({("process", "matcher-m1")})) not in got


def test_closed_server_refuses_and_collector_reports_nothing(
    cfg: RingexConfig, rings: dict[str, Ring[Record]]
) -> None:
    collector = RingexCollector(cfg, "test", rings, list, lambda: "stopping")
    server = MetricsServer(collector, "127.0.0.1", 0)
    assert value(scrape(server.url), "ringex_ring_records_total", ring="m1-in") == 0
    server.close()
    assert list(collector.collect()) == []
    with pytest.raises(urllib.error.URLError):
        scrape(server.url)


def test_port_in_use_names_the_setting(cfg: RingexConfig, rings: dict[str, Ring[Any]]) -> None:
    collector = RingexCollector(cfg, "test", rings, list, lambda: "starting")
    first = MetricsServer(collector, "127.0.0.1", 0)
    try:
        with pytest.raises(OSError, match=rf"127\.0\.0\.1:{first.port} .*metrics_port"):
            MetricsServer(collector, "127.0.0.1", first.port)
    finally:
        first.close()


def test_oldest_unread_age_is_none_for_a_lapped_slot(instance: str) -> None:
    ring = Ring.create(instance, "small", RecordCodec(), capacity=8)
    producer = ring.producer()
    try:
        producer.publish_batch(beats(10, time.time_ns() - 1_000_000_000))
        now = time.time_ns()
        assert oldest_unread_age_s(ring, 0, now) is None  # slot 0 holds record 8 now
        age = oldest_unread_age_s(ring, 9, now)
        assert age is not None and 1.0 <= age < 60
    finally:
        producer.close()
        ring.close()


def test_journal_last_seq(tmp_path: Path) -> None:
    size = 144
    assert journal_last_seq(tmp_path / "none", size) is None
    assert journal_last_seq(tmp_path, size) == 0
    writer = JournalWriter(tmp_path, slot_size=128, schema_id=7, segment_bytes=64 + 3 * size)
    writer.append(1, bytes(128 * 5), 5)  # segments from seq 1 (3 entries) and 4 (2 entries)
    writer.close()
    assert journal_last_seq(tmp_path, size) == 5


def test_counter_pages_give_trades_fix_counts_and_the_ack_latency_histogram(
    cfg: RingexConfig, rings: dict[str, Ring[Record]]
) -> None:
    collector = RingexCollector(cfg, "test", rings, lambda: [], lambda: "running")
    server = MetricsServer(collector, "127.0.0.1", 0)
    try:
        before = scrape(server.url)  # no page made yet: those families are empty
        assert not any(name == "ringex_trades_total" for name, _ in before)
        matcher = Counters.open(cfg.instance, matcher_page("m1"), matcher_counters(cfg, "m1"))
        gateway = Counters.open(cfg.instance, gateway_page(1), GATEWAY_COUNTERS)
        matcher.values[matcher.index("trades_1")] = 42
        histogram = LatencyHistogram()
        for ns in (30_000, 150_000, 150_000, 3_000_000_000):
            histogram.record(ns)
        reasons = [0] * len(REJECT_REASONS)
        reasons[reject_slot(13)] = 1  # its one reject: an incorrect quantity
        to_router, router_to_ack, queue = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
        to_router.record(20_000)  # the ack's 30 us in two: 20 to the router, 10 back
        router_to_ack.record(10_000)
        queue.record(5_000)
        to_ring = LatencyHistogram()
        to_ring.record(5_000)  # of the 20 to the router, 5 in the gateway
        stages = [*to_router.values(), *router_to_ack.values(), *to_ring.values()]
        gateway.values[:] = array("Q", [5, 4, 2, 1, *histogram.values(), *reasons, *stages])
        at = matcher.index("queue_sum_ns")
        matcher.values[at : at + len(queue.values())] = array("Q", queue.values())
        got = scrape(server.url)
        matcher.close()
        gateway.close()
    finally:
        server.close()
    symbol = cfg.symbols[0].name
    assert value(got, "ringex_trades_total", symbol=symbol) == 42
    assert value(got, "ringex_fix_orders_total", gateway="gw1") == 5
    assert value(got, "ringex_fix_acks_total", gateway="gw1") == 4
    assert value(got, "ringex_fix_fills_total", gateway="gw1") == 2
    assert value(got, "ringex_fix_rejects_total", gateway="gw1") == 1
    why = "ringex_fix_rejects_by_reason_total"
    assert value(got, why, gateway="gw1", reason="incorrect_quantity") == 1
    assert value(got, why, gateway="gw1", reason="other") == 0
    name = "ringex_fix_order_ack_latency_seconds"
    assert value(got, name + "_bucket", gateway="gw1", le="5e-05") == 1
    assert value(got, name + "_bucket", gateway="gw1", le="0.0002") == 3  # cumulative
    assert value(got, name + "_bucket", gateway="gw1", le="1.0") == 3
    assert value(got, name + "_bucket", gateway="gw1", le="+Inf") == 4
    assert value(got, name + "_count", gateway="gw1") == 4
    assert value(got, name + "_sum", gateway="gw1") == pytest.approx(3.00033)
    # the same latency in stages: to the router, back to the ack; the matcher's queue
    stage = "ringex_fix_order_to_router_latency_seconds"
    assert value(got, stage + "_bucket", gateway="gw1", le="1e-05") == 0
    assert value(got, stage + "_bucket", gateway="gw1", le="2e-05") == 1
    assert value(got, stage + "_sum", gateway="gw1") == pytest.approx(20e-6)
    stage = "ringex_fix_order_router_to_ack_latency_seconds"
    assert value(got, stage + "_bucket", gateway="gw1", le="1e-05") == 1
    stage = "ringex_gateway_order_to_ring_latency_seconds"
    assert value(got, stage + "_bucket", gateway="gw1", le="1e-05") == 1
    stage = "ringex_matcher_queue_latency_seconds"
    assert value(got, stage + "_bucket", matcher="m1", le="1e-05") == 1
    assert value(got, stage + "_count", matcher="m1") == 1


def test_an_idle_connection_timed_out_writes_no_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """A connection that sends nothing is closed after ``ScrapeHandler.timeout``, quietly: the
    socketserver default printed a traceback per idle connection on the supervisor's stderr,
    which any local user could fill; a burst of 40 connections is accepted at once (the
    listen backlog of 5 made them wait out SYN retransmits, seconds each)."""
    monkeypatch.setattr(ScrapeHandler, "timeout", 0.2)
    cfg = RingexConfig(instance="tmidle", var_dir=str(tmp_path / "var"))
    server = metrics.MetricsServer(
        metrics.RingexCollector(cfg, "test", {}, lambda: [], lambda: "running"), "127.0.0.1", 0
    )
    idle: list[socket.socket] = []
    try:
        began = time.monotonic()
        for _ in range(40):
            idle.append(socket.create_connection(("127.0.0.1", server.port)))
        assert time.monotonic() - began < 2.0
        time.sleep(0.6)  # past the timeout: the served ones are closed by the server
        assert idle[0].recv(1) == b""
        with urllib.request.urlopen(server.url, timeout=5) as answer:
            assert answer.status == 200
    finally:
        for s in idle:
            s.close()
        server.close()
    assert "Traceback" not in capfd.readouterr().err
