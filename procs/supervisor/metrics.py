"""Prometheus metrics of an instance, read from shared memory when scraped.

The supervisor serves them at ``http://<metrics_host>:<metrics_port>/metrics``. Nothing in
the router, matchers or gateways runs per scrape: a scrape reads what is already there
(ring headers: cursors, consumer sequences, pids; the journal's last segment's size;
``/proc/<pid>/stat``; the supervisor's process table; the counter pages below) and between
scrapes nothing runs for it.
So each number is named after what it really counts:

- a ring's cursor counts the records its producer published, a consumer's sequence those it
  has read; commands a gateway submitted are its ``gwN-cmd`` ring's records, commands routed
  to a matcher its ``<m>-in`` ring's, the router's answers to a gateway (its rejects, account
  replies, balance pushes) the ``gwN-rep`` ring's; the journal's last seq counts the commands
  the router sequenced (accepted), across restarts;
- the queueing delay is the age of the oldest record a consumer has not read yet (now minus
  the record's ``ts_ns``: the gateway's receive time for commands, the router's sequencing
  time for routed commands and events), from one slot read per lagging consumer.

What the rings cannot tell is counted by the processes themselves into ``shm.counters``
pages (``procs/common/stats.py``), stored once per batch, never per event: each matcher's
events (acks, trades, rejects, book levels together: its ``<m>-out`` ring's records but its
marks, review 296), trades per symbol (its books' gapless trade ids) and the queue latency
of each batch's oldest command, and each gateway's FIX orders, acks, fills, rejects and
latency histograms (order -> ack, in stages at the router's stamp, and a new order's way
into the router's ring). A page a process has not made yet is skipped, and so is one
without the counters this collector reads (another version's): never a failed scrape.
A counter never goes down while the supervisor runs, though a gateway's page and a process's
CPU time start over when it restarts (``carried.py``).

Rejected: ``Counter``/``Gauge`` objects kept current by a thread (work between scrapes, values
older than the scrape); a store per event in the hot processes.
"""

from __future__ import annotations

import logging
import os
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
    StateSetMetricFamily,
)

from config.schema import RingexConfig
from procs.common.endpoints import url_host
from procs.common.journal import ENTRY_SIZE_AT, HEADER_SIZE, U32, EntryLayout, list_segments
from procs.common.record_codec import RecordCodec
from procs.common.stats import (
    DBWRITER_PAGE,
    GATEWAY_COUNTERS,
    LATENCY_BUCKETS_US,
    REJECT_REASONS,
    ROUTER_COUNTERS,
    ROUTER_PAGE,
    ROUTER_STATES,
    gateway_page,
    histogram_counters,
    matcher_page,
)
from procs.common.topology import (
    ADMIN_GATEWAY,
    gateway_commands,
    gateway_replies,
    journal_dir,
    matcher_input,
    matcher_output,
)
from procs.supervisor.carried import Carried
from procs.supervisor.scrape_handler import HeadDeadlines, ScrapeHandler
from shm import Ring
from shm.counters import Counters
from shm.errors import RingError, ShmError
from shm.header import STATE_ACTIVE, STATE_NAMES

log = logging.getLogger("ringex.metrics")

STATES = ("starting", "running", "stopping", "stopped")

#: Counters named after the role whose work a ring's records count: (label, help).
ROLES = {
    "gateway_commands": ("gateway", "Commands a gateway submitted (its gwN-cmd ring's records)."),
    "router_replies": (
        "gateway",
        "What the router sent a gateway: its rejects, account replies, balances (gwN-rep).",
    ),
    "matcher_commands": ("matcher", "Sequenced commands routed to a matcher (<m>-in records)."),
    "matcher_events": (
        "matcher",
        "Events a matcher published: acks, trades, rejects, done, book levels (<m>-out's "
        "records but the matcher's marks).",
    ),
}

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True, slots=True)
class ProcessSample:
    """One supervised process as the supervisor sees it at scrape time."""

    name: str
    pid: int  # 0: never started
    up: bool
    ready: bool  # alive, and holds its ready ring since its last start
    restarts: int  # since the supervisor started (not the restart_limit window)
    start_time_s: float  # Unix time of its last start (its release); 0 while held


class RingexCollector:
    """A prometheus_client collector: ``collect()`` runs in the HTTP server's thread, once per
    scrape, and only reads. ``close()`` waits for a scrape in progress and makes later ones
    return nothing: call it before unmapping the rings."""

    def __init__(
        self,
        cfg: RingexConfig,
        profile: str,
        rings: Mapping[str, Ring[Any]],
        processes: Callable[[], Sequence[ProcessSample]],
        state: Callable[[], str],
    ) -> None:
        self.cfg = cfg
        self.profile = profile
        self._rings = dict(rings)
        self._processes = processes
        self._state = state
        self._lock = threading.Lock()
        self._closed = False
        self._entry_size = EntryLayout(RecordCodec().slot_size).size  # journal: ring slots
        gateways = {ADMIN_GATEWAY: "admin", **{g.id: g.name for g in cfg.gateways}}
        #: ring name -> (role, label value): the rings that count a role's work
        self._roles: dict[str, tuple[str, str]] = {}
        for gid, name in gateways.items():
            self._roles[gateway_commands(gid)] = ("gateway_commands", name)
            self._roles[gateway_replies(gid)] = ("router_replies", name)
        for m in cfg.matchers:
            self._roles[matcher_input(m.name)] = ("matcher_commands", m.name)
            self._roles[matcher_output(m.name)] = ("matcher_events", m.name)

        self._pages: dict[str, Counters] = {}
        self._carried_pages = Carried()  # a restarted gateway's page starts from zero
        self._carried_cpu = Carried()  # and so does a restarted process's CPU time

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._rings = {}
            for page in self._pages.values():
                page.close()
            self._pages = {}

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if self._closed:
                return iter(())
            return iter(
                [
                    *self._instance(),
                    *self._ring_metrics(),
                    *self._counted(),
                    *self._router_time(),
                    *self._process_metrics(),
                ]
            )

    # -- families -------------------------------------------------------------------------------

    def _instance(self) -> list[Metric]:
        info = InfoMetricFamily("ringex", "The instance this supervisor runs.")
        info.add_metric([], {"ringex_instance": self.cfg.instance, "profile": self.profile})
        state = self._state()
        states = StateSetMetricFamily(
            "ringex_supervisor_state", "The supervisor's state.", {s: s == state for s in STATES}
        )
        sequenced = CounterMetricFamily(
            "ringex_router_sequenced",
            "Commands the router sequenced (accepted and journaled): the journal's last seq.",
        )
        last = journal_last_seq(journal_dir(self.cfg), self._entry_size)
        if last is not None:
            sequenced.add_metric([], last)
        return [info, states, sequenced, *self._writer(last)]

    def _writer(self, last: int | None) -> list[Metric]:
        """The database writer's checkpoint and how far it is behind the journal's last seq
        ``last`` (a writer reads no ring: nothing else shows it behind, nor stuck)."""
        if not self.cfg.database.enabled:
            return []
        committed = CounterMetricFamily(
            "ringex_dbwriter_committed",
            "Commands the database writer has committed to PostgreSQL: its checkpoint's seq.",
        )
        lag = GaugeMetricFamily(
            "ringex_dbwriter_lag",
            "Commands journaled and not yet in PostgreSQL: the journal's last seq less the "
            "writer's checkpoint (it grows while PostgreSQL is away or the writer is stuck).",
        )
        page = self._page(DBWRITER_PAGE)
        if page is not None and page.get("known"):
            committed.add_metric([], page["committed"])
            if last is not None:
                lag.add_metric([], max(0, last - page["committed"]))
        return [committed, lag]

    def _page(self, name: str) -> dict[str, int] | None:
        """The counters of page ``name``, or None while its process has not made it."""
        page = self._pages.get(name)
        if page is None:
            try:
                page = Counters.attach(self.cfg.instance, name)
            except ShmError:
                return None
            if not all(page.names):  # caught while its writer names it: look again later
                page.close()
                return None
            self._pages[name] = page
        values = page.read()
        for _ in range(3):  # read again until two agree: not a batch's store half done
            again = page.read()
            if again == values:
                break
            values = again
        return values

    def _counted(self) -> list[Metric]:
        trades = CounterMetricFamily(
            "ringex_trades", "Trades, per symbol (the matcher's trade ids).", labels=["symbol"]
        )
        queue = HistogramMetricFamily(
            "ringex_matcher_queue_latency_seconds",
            "Sequenced (the router's stamp) -> read by the matcher: each batch's oldest command.",
            labels=["matcher"],
        )
        symbols = {s.id: s.name for s in self.cfg.symbols}
        for m in self.cfg.matchers:
            values = self._page(matcher_page(m.name))
            for key, value in (values or {}).items():
                if key.startswith("trades_") and key[7:].isdigit():
                    trades.add_metric([symbols.get(int(key[7:]), key[7:])], value)
            names = histogram_counters("queue")  # counts from zero when the matcher restarts
            if values is not None and all(name in values for name in names):
                queued = {name: values[name] for name in names}
                carried = self._carried_pages.page((matcher_page(m.name), "queue"), queued)
                _add_histogram(queue, [m.name], carried, "queue")
        gw = ["gateway"]
        families = {
            "orders": CounterMetricFamily(
                "ringex_fix_orders", "NewOrderSingles a gateway took.", labels=gw
            ),
            "acks": CounterMetricFamily(
                "ringex_fix_acks", "New execution reports (orders acknowledged).", labels=gw
            ),
            "fills": CounterMetricFamily("ringex_fix_fills", "Fill reports.", labels=gw),
            "rejects": CounterMetricFamily(
                "ringex_fix_rejects",
                "Orders rejected: by the gateway's checks, the router's risk or a matcher.",
                labels=gw,
            ),
        }
        by_reason = CounterMetricFamily(
            "ringex_fix_rejects_by_reason",
            f"Orders rejected, by FIX OrdRejReason (103): {', '.join(REJECT_REASONS.values())}.",
            labels=["gateway", "reason"],
        )
        latency = HistogramMetricFamily(
            "ringex_fix_order_ack_latency_seconds",
            "NewOrderSingle received -> its New report written, in the gateway.",
            labels=gw,
        )
        to_router = HistogramMetricFamily(
            "ringex_fix_order_to_router_latency_seconds",
            "NewOrderSingle received -> sequenced (the router's stamp), for the orders acked.",
            labels=gw,
        )
        router_to_ack = HistogramMetricFamily(
            "ringex_fix_order_router_to_ack_latency_seconds",
            "Sequenced (the router's stamp) -> the order's New report written, in the gateway.",
            labels=gw,
        )
        to_ring = HistogramMetricFamily(
            "ringex_gateway_order_to_ring_latency_seconds",
            "A new order (FIX or REST) received -> published into the router's ring.",
            labels=gw,
        )
        for g in self.cfg.gateways:
            page = self._page(gateway_page(g.id))
            if page is None or not all(name in page for name in GATEWAY_COUNTERS):
                continue  # not made yet, or another version's counters
            counts = self._carried_pages.page(gateway_page(g.id), page)
            for key, family in families.items():
                family.add_metric([g.name], counts[key])
            _add_histogram(latency, [g.name], counts, "ack")
            _add_histogram(to_router, [g.name], counts, "to_router")
            _add_histogram(router_to_ack, [g.name], counts, "router_to_ack")
            _add_histogram(to_ring, [g.name], counts, "to_ring")
            for reason in REJECT_REASONS.values():
                by_reason.add_metric([g.name, reason], counts[f"rejects_{reason}"])
        stages = [to_router, router_to_ack, to_ring, queue]
        return [trades, *families.values(), by_reason, latency, *stages]

    def _router_time(self) -> list[Metric]:
        """The router's counts and where its time went (``procs/router/time_use.py``)."""
        commands = CounterMetricFamily(
            "ringex_router_commands",
            "Commands the router took from the gateways' rings and decided.",
        )
        events = CounterMetricFamily("ringex_router_events", "Matchers' events the router settled.")
        time_by_state = CounterMetricFamily(
            "ringex_router_time_seconds",
            "The router's time by state: busy; idle (nothing to take); behind (intake paused "
            "on a matcher's backlog); full (a matcher's input ring full); fsync (the "
            "journal's fsync); standby (sync replication's acknowledgement).",
            labels=["state"],
        )
        page = self._page(ROUTER_PAGE)
        if page is not None and all(name in page for name in ROUTER_COUNTERS):
            counts = self._carried_pages.page(ROUTER_PAGE, page)
            commands.add_metric([], counts["commands"])
            events.add_metric([], counts["events"])
            for state in ROUTER_STATES:
                time_by_state.add_metric([state], counts[f"{state}_ns"] / 1e9)
        return [commands, events, time_by_state]

    def _ring_metrics(self) -> list[Metric]:
        ring_labels, consumer_labels = ["ring"], ["ring", "consumer"]
        capacity = GaugeMetricFamily(
            "ringex_ring_capacity", "Slots in the ring.", labels=ring_labels
        )
        records = CounterMetricFamily(
            "ringex_ring_records",
            "Records published into the ring (its cursor).",
            labels=ring_labels,
        )
        producer_up = GaugeMetricFamily(
            "ringex_ring_producer_up",
            "1 if the ring's producer process is attached and alive.",
            labels=ring_labels,
        )
        consumed = CounterMetricFamily(
            "ringex_ring_consumer_records",
            "Records the consumer has read (its sequence).",
            labels=consumer_labels,
        )
        lag = GaugeMetricFamily(
            "ringex_ring_consumer_lag",
            "Records published that the consumer has not read yet.",
            labels=consumer_labels,
        )
        consumer_up = GaugeMetricFamily(
            "ringex_ring_consumer_up",
            "1 if the consumer line is active and its process alive.",
            labels=consumer_labels,
        )
        oldest = GaugeMetricFamily(
            "ringex_ring_consumer_oldest_unread_age_seconds",
            "Age of the oldest record the consumer has not read (now - its ts_ns); 0 if none.",
            labels=consumer_labels,
        )
        by_role = {
            role: CounterMetricFamily(f"ringex_{role}", text, labels=[label])
            for role, (label, text) in ROLES.items()
        }
        now_ns = time.time_ns()
        for name, ring in self._rings.items():
            info = ring.info()
            capacity.add_metric([name], info.capacity)
            records.add_metric([name], info.cursor)
            producer_up.add_metric([name], float(info.producer_alive))
            if name in self._roles:
                role, value = self._roles[name]
                count = info.cursor
                if role == "matcher_events":  # its own count: not its marks (review 296)
                    count = (self._page(matcher_page(value)) or {}).get("events", 0)
                by_role[role].add_metric([value], count)  # (no page: no matcher ran yet)
            for c in info.consumers:
                labels = [name, c.name]
                consumed.add_metric(labels, c.sequence)
                lag.add_metric(labels, c.lag)
                active = STATE_NAMES[STATE_ACTIVE] == c.state
                consumer_up.add_metric(labels, float(active and c.pid_alive))
                age = 0.0 if c.lag == 0 else oldest_unread_age_s(ring, c.sequence, now_ns)
                if age is not None:
                    oldest.add_metric(labels, age)
        return [
            capacity,
            records,
            producer_up,
            consumed,
            lag,
            consumer_up,
            oldest,
            *by_role.values(),
        ]

    def _process_metrics(self) -> list[Metric]:
        labels = ["process"]
        up = GaugeMetricFamily("ringex_process_up", "1 if the process runs.", labels=labels)
        ready = GaugeMetricFamily(
            "ringex_process_ready", "1 if it holds its ready ring.", labels=labels
        )
        restarts = CounterMetricFamily(
            "ringex_process_restarts", "Restarts since the supervisor started.", labels=labels
        )
        pid = GaugeMetricFamily("ringex_process_pid", "Its process id.", labels=labels)
        started = GaugeMetricFamily(
            "ringex_process_start_time_seconds", "Unix time of its last start.", labels=labels
        )
        cpu = CounterMetricFamily(
            "ringex_process_cpu_seconds", "User and system CPU time it used.", labels=labels
        )
        rss = GaugeMetricFamily(
            "ringex_process_resident_memory_bytes", "Its resident memory.", labels=labels
        )
        for p in self._processes():
            up.add_metric([p.name], float(p.up))
            ready.add_metric([p.name], float(p.ready))
            restarts.add_metric([p.name], p.restarts)
            if not p.pid:
                continue
            pid.add_metric([p.name], p.pid)
            if p.start_time_s:  # held (review 154: up, "started" in 1970)
                started.add_metric([p.name], p.start_time_s)
            usage = proc_stat(p.pid) if p.up else None
            if usage is not None:
                cpu.add_metric([p.name], self._carried_cpu.incarnation(p.name, p.pid, usage[0]))
                rss.add_metric([p.name], usage[1])
            elif (total := self._carried_cpu.total(p.name)) is not None:
                cpu.add_metric([p.name], total)  # down: what it used, kept
        return [up, ready, restarts, pid, started, cpu, rss]


def journal_last_seq(directory: Path, entry_size: int) -> int | None:
    """The seq of the last entry written to the journal, from its last segment's size and
    the entry size its header says (``entry_size`` where it says none: an older build's
    segment has its own; no CRC check: a torn tail counts as written); None without a
    journal."""
    try:
        segments = list_segments(directory)
        if not segments:
            return 0
        first, path = segments[-1]
        with open(path, "rb") as f:
            size, head = os.fstat(f.fileno()).st_size, f.read(ENTRY_SIZE_AT + U32.size)
    except OSError:  # no journal yet, or a segment archived in between: the next scrape sees
        return None
    if len(head) == ENTRY_SIZE_AT + U32.size:
        entry_size = U32.unpack_from(head, ENTRY_SIZE_AT)[0] or entry_size
    return first - 1 + max(0, size - HEADER_SIZE) // entry_size


def oldest_unread_age_s(ring: Ring[Any], sequence: int, now_ns: int) -> float | None:
    """Seconds since ``ts_ns`` of record ``sequence``: the oldest one its consumer has not
    read. None if the record has no timestamp or its slot was overwritten while being read
    (a detached consumer can be lapped: the slot's stamp is checked before and after)."""
    word, expected = ring.stamp_word(sequence), ring.stamp_of(sequence)
    if ring.words[word] != expected:
        return None
    try:
        record = ring.codec.decode_from(ring.region.buf, ring.slot_offset(sequence))
    except (ValueError, RingError):
        return None
    if ring.words[word] != expected:
        return None
    ts_ns = getattr(record, "ts_ns", 0)
    return max(0.0, (now_ns - ts_ns) / 1e9) if ts_ns else None


def proc_stat(pid: int) -> tuple[float, int] | None:
    """(CPU seconds, resident bytes) of ``pid`` from ``/proc/<pid>/stat``; None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # after "pid (comm)": field 3 (state) is index 0, utime/stime are 14/15, rss is 24
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS, int(fields[21]) * _PAGE_SIZE


#: Connections served at once; one past it is closed at once (a scraper asks one at a time).
MAX_SCRAPES = 16


#: How often the server's thread looks for ``close``: ``shutdown`` waits up to this long
#: (prometheus_client's ``start_http_server`` polls every 0.5 s, which every stop of an
#: instance paid, and a failover with it: the promoted supervisor waits for the old one).
POLL_S = 0.05


class MetricsServer:
    """``/metrics`` over HTTP in a daemon thread, backed by a ``RingexCollector``."""

    def __init__(self, collector: RingexCollector, host: str, port: int) -> None:
        self.collector = collector
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)
        try:
            # "" is the config's wildcard (every address), which getaddrinfo spells None
            found = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)
            family = found[0][0]

            class Server(socketserver.ThreadingMixIn, WSGIServer):
                address_family = family
                daemon_threads = True
                slots = threading.BoundedSemaphore(MAX_SCRAPES)
                #: the listen backlog: socketserver's 5 made a burst of connections wait out
                #: SYN retransmits (120 took 17 s), each past the slots then closed at once
                request_queue_size = 128
                #: the heads still to come, cut at their deadline by this loop (its polls)
                heads = HeadDeadlines()

                def service_actions(self) -> None:
                    self.heads.cut_late(time.monotonic())

                def handle_error(self, request: Any, client_address: Any) -> None:
                    """A connection that timed out or broke is the peer's doing: no traceback
                    on the supervisor's stderr for it (anyone local could fill a disk so)."""
                    if not isinstance(sys.exc_info()[1], OSError):
                        log.exception("metrics request from %s failed", client_address)

                def verify_request(self, request: Any, client_address: Any) -> bool:
                    return self.slots.acquire(blocking=False)  # False: closed, unserved

                def process_request_thread(self, request: Any, client_address: Any) -> None:
                    try:
                        super().process_request_thread(request, client_address)
                    finally:
                        self.slots.release()

            self._httpd = make_server(host, port, make_wsgi_app(registry), Server, ScrapeHandler)
        except OSError as exc:
            raise OSError(
                f"cannot serve metrics on {host}:{port} (supervisor.metrics_host, "
                f"metrics_port): {exc.strerror or exc}"
            ) from exc
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(POLL_S,), name="metrics", daemon=True
        )
        self._thread.start()
        self.port = int(self._httpd.server_address[1])
        self.url = f"http://{url_host(host)}:{self.port}/metrics"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()
        self.collector.close()


def _add_histogram(
    family: HistogramMetricFamily, labels: list[str], counts: Mapping[str, float], prefix: str
) -> None:
    """A ``LatencyHistogram`` stored as ``histogram_counters(prefix)``: per-bucket counts
    made cumulative, ns made seconds."""
    sum_name, *bucket_names = histogram_counters(prefix)
    bounds = [*(str(bound / 1e6) for bound in LATENCY_BUCKETS_US), "+Inf"]
    buckets: list[tuple[str, float]] = []
    total = 0.0
    for bound, name in zip(bounds, bucket_names, strict=True):
        total += counts[name]
        buckets.append((bound, total))
    family.add_metric(labels, buckets, counts[sum_name] / 1e9)
