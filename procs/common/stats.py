"""What the gateways and matchers count for the metrics, and where (``shm.counters`` pages).

Nothing here runs per scrape in the counting process: a gateway stores its counters once per
batch of events it handles, a matcher once per batch of commands; the supervisor's collector
reads the pages when scraped (``procs/supervisor/metrics.py``).

- gateway ``stats-gw<id>``: FIX orders received, acks (New reports), fill reports, rejects
  reported (by the gateway's checks, the router's risk or the matcher; in all, and by their
  OrdRejReason), and the order -> ack latency histogram: receipt of the NewOrderSingle to
  its New report, in the gateway.
- matcher ``stats-<name>``: the seq of the last command it executed, and trades per symbol
  (the gapless trade id: exact across restarts, since it is book state).
"""

from __future__ import annotations

from bisect import bisect_left

from config.schema import RingexConfig

#: Upper bounds of the ack latency buckets, microseconds (then +Inf).
ACK_BUCKETS_US = (
    50,
    100,
    200,
    500,
    1_000,
    2_000,
    5_000,
    10_000,
    20_000,
    50_000,
    100_000,
    1_000_000,
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
    "ack_sum_ns",
    *(f"ack_le_{b}us" for b in ACK_BUCKETS_US),
    "ack_le_inf",
    *(f"rejects_{name}" for name in REJECT_REASONS.values()),
)


def reject_slot(reason: int) -> int:
    """The index among ``REJECT_REASONS``' counters of OrdRejReason ``reason``."""
    return _REJECT_SLOTS.get(reason, _REJECT_SLOTS[99])


_REJECT_SLOTS = {reason: i for i, reason in enumerate(REJECT_REASONS)}


def gateway_page(gateway: int) -> str:
    return f"stats-gw{gateway}"


def matcher_page(matcher: str) -> str:
    return f"stats-{matcher}"


def matcher_counters(cfg: RingexConfig, matcher: str) -> tuple[str, ...]:
    """``last_seq`` then ``trades_<symbol id>`` for each symbol the matcher owns."""
    ids = sorted(cfg.symbol(s).id for s in cfg.matcher(matcher).symbols)
    return ("last_seq", *(f"trades_{i}" for i in ids))


class LatencyHistogram:
    """Counts per bucket (not cumulative) and the sum, in ns."""

    __slots__ = ("bounds_ns", "counts", "sum_ns")

    def __init__(self, bounds_us: tuple[int, ...] = ACK_BUCKETS_US) -> None:
        self.bounds_ns = [b * 1_000 for b in bounds_us]
        self.counts = [0] * (len(bounds_us) + 1)
        self.sum_ns = 0

    def record(self, ns: int) -> None:
        self.counts[bisect_left(self.bounds_ns, ns)] += 1
        self.sum_ns += max(0, ns)

    @property
    def count(self) -> int:
        return sum(self.counts)
