"""What the gateways and matchers count for the metrics, and where (``shm.counters`` pages).

Nothing here runs per scrape in the counting process: a gateway stores its counters once per
batch of events it handles, a matcher once per batch of commands; the supervisor's collector
reads the pages when scraped (``procs/supervisor/metrics.py``).

- gateway ``stats-gw<id>``: FIX orders received, acks (New reports), fill reports, rejects
  reported (by the gateway's checks, the router's risk or the matcher; in all, and by their
  OrdRejReason), and the order -> ack latency histogram: receipt of the NewOrderSingle to
  its New report, in the gateway; and the same latency in two, at the router's stamp (the
  ``ts_ns`` it sequences a command with, which its events carry back): received -> sequenced
  and sequenced -> acknowledged, with received -> published into the router's ring (every
  new order, REST ones too). The clocks are one host's ``time.time_ns``.
- router ``stats-router``: commands it took, matchers' events it settled, and where its
  time went, in ns: ``busy`` (taking, deciding, journaling, routing, settling), ``idle``
  (nothing to take), ``behind`` (intake paused: a matcher's input past an eighth of its
  ring), ``full`` (a matcher's input ring full), ``fsync`` (the journal's fsyncs run
  inline, or waited for) and ``standby`` (sync replication: the router waits for the
  standby's acknowledgement, settling events meanwhile); a fenced router's naps are idle.
  The sequencer is one process: these say whether it is the stage a pipeline waits on
  (busy near 100%) or waits itself, and on what.
- matcher ``stats-<name>``: the seq of the last command it executed, the events it
  published (the page outlives the process, so the count goes on across a restart), trades
  per symbol (the gapless trade id: exact across restarts, since it is book state), and how
  long the oldest command of each batch waited, sequenced -> read by the matcher. With the
  gateway's two, they say where an order's time goes: to the router, on to the matcher,
  back out.
"""

from __future__ import annotations

from bisect import bisect_left

from config.schema import RingexConfig

#: Upper bounds of the latency histograms' buckets, microseconds (then +Inf): fine below a
#: millisecond, where issue 8's targets are (order -> ack p50 200 us, p99 2 ms).
LATENCY_BUCKETS_US = (
    10,
    20,
    30,
    50,
    75,
    100,
    150,
    200,
    300,
    500,
    750,
    1_000,
    2_000,
    5_000,
    10_000,
    20_000,
    50_000,
    100_000,
    1_000_000,
)


def histogram_counters(prefix: str) -> tuple[str, ...]:
    """A ``LatencyHistogram``'s counters on a page, in ``LatencyHistogram.values()``' order."""
    return (
        f"{prefix}_sum_ns",
        *(f"{prefix}_le_{b}us" for b in LATENCY_BUCKETS_US),
        f"{prefix}_le_inf",
    )


#: The reasons rejects are counted by: FIX 4.4's OrdRejReason (103) values the gateway sends,
#: named for the metric's ``reason`` label (any other value counts as "other"). A bounded set:
#: never a client's value.
REJECT_REASONS: dict[int, str] = {
    1: "unknown_symbol",
    2: "exchange_closed",
    3: "exceeds_limit",
    6: "duplicate_order",
    11: "unsupported",
    13: "incorrect_quantity",
    15: "unknown_account",
    99: "other",
}

GATEWAY_COUNTERS = (
    "orders",
    "acks",
    "fills",
    "rejects",
    *histogram_counters("ack"),
    *(f"rejects_{name}" for name in REJECT_REASONS.values()),
    # the order -> ack latency in two: received -> sequenced (the router's stamp), then
    # sequenced -> acknowledged (appended: the layout before them is kept)
    *histogram_counters("to_router"),
    *histogram_counters("router_to_ack"),
    # the first stage's own part: a new order (FIX or REST) received -> published into the
    # router's ring (the rest of ``to_router`` is the ring and the router's intake)
    *histogram_counters("to_ring"),
)


#: The database writer's page: its checkpoint (the last seq committed to PostgreSQL) and 1
#: once it has said one (``procs/dbwriter/main.py``; the supervisor's metrics: its lag); 1
#: once it has reached the database or found it away (``DbWriter.ready``: the supervisor's
#: start waits for it).
DBWRITER_PAGE = "stats-dbwriter"
DBWRITER_COUNTERS = ("committed", "known", "ready")

#: The router's page (``procs/router/time_use.py`` writes it): counts, then ns by state.
ROUTER_PAGE = "stats-router"
ROUTER_STATES = ("busy", "idle", "behind", "full", "fsync", "standby")
ROUTER_COUNTERS = ("commands", "events", *(f"{state}_ns" for state in ROUTER_STATES))


def reject_slot(reason: int) -> int:
    """The index among ``REJECT_REASONS``' counters of OrdRejReason ``reason``."""
    return _REJECT_SLOTS.get(reason, _REJECT_SLOTS[99])


_REJECT_SLOTS = {reason: i for i, reason in enumerate(REJECT_REASONS)}


def gateway_page(gateway: int) -> str:
    return f"stats-gw{gateway}"


def matcher_page(matcher: str) -> str:
    return f"stats-{matcher}"


def matcher_counters(cfg: RingexConfig, matcher: str) -> tuple[str, ...]:
    """``last_seq``, ``events`` (the events it published: its output ring's records but its
    ``Heartbeat`` marks; the page outlives the process, as the ring does, so the count goes
    on across a restart), ``trades_<symbol id>`` for each symbol the matcher owns, then the
    queue's latency histogram (``queue``: sequenced by the router -> read by the matcher,
    the oldest command of each batch)."""
    ids = sorted(cfg.symbol(s).id for s in cfg.matcher(matcher).symbols)
    return ("last_seq", "events", *(f"trades_{i}" for i in ids), *histogram_counters("queue"))


#: The most one sample adds to a histogram's sum: a minute.
SUM_CAP_NS = 60 * 10**9


class LatencyHistogram:
    """Counts per bucket (not cumulative) and the sum, in ns."""

    __slots__ = ("bounds_ns", "counts", "sum_ns")

    def __init__(self, bounds_us: tuple[int, ...] = LATENCY_BUCKETS_US) -> None:
        self.bounds_ns = [b * 1_000 for b in bounds_us]
        self.counts = [0] * (len(bounds_us) + 1)
        self.sum_ns = 0

    def record(self, ns: int) -> None:
        """One sample; the sum takes it within [0, ``SUM_CAP_NS``], so that it stays a word
        (clocks that step, a wait across a restart)."""
        self.counts[bisect_left(self.bounds_ns, ns)] += 1
        # comparisons, not min(max()): two builtin calls were half of this on the gateway's
        # per-order path (170 of 340 ns; three or four samples an order)
        self.sum_ns += ns if 0 <= ns <= SUM_CAP_NS else (0 if ns < 0 else SUM_CAP_NS)

    @property
    def count(self) -> int:
        return sum(self.counts)

    def values(self) -> list[int]:
        """The sum, then the counts: the page's ``histogram_counters`` words."""
        return [self.sum_ns, *self.counts]
