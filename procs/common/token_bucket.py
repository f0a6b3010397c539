"""A token bucket read with nanosecond clock readings: ``rate`` tokens a second, at most a
second's worth held (more only by ``credit``, until spent). A FIX session's message throttle
and the router's per-account command rate are each one; the REST API's per-key limits
(``procs.gateway.limits``) add what HTTP needs, a Retry-After hint and a bounded table of
keys.

The readings are the caller's: wall-clock ones for FIX and the router (``time.time_ns()``,
which stamps records too), monotonic ones for the WebSocket limits. NTP may step a
wall clock back. A reading earlier than the last refills nothing and
counts on from itself: kept at the old reading, a bucket out of tokens would refuse
everything, cancels included, for the whole step. Counting on may refill the time between
the two readings twice, which the cap bounds to one bucket. Sans-I/O: the caller reads the
clock.
"""

from __future__ import annotations


class TokenBucket:
    __slots__ = ("at_ns", "rate", "tokens")

    def __init__(self, rate: float, now_ns: int) -> None:
        self.rate = float(rate)
        self.tokens = self.rate  # full: a second's worth
        self.at_ns = now_ns

    def allow(self, now_ns: int, cost: int = 1) -> bool:
        """Spend ``cost`` tokens if there are that many now; whether it did."""
        if now_ns > self.at_ns:
            tokens = self.tokens
            refilled = min(self.rate, tokens + (now_ns - self.at_ns) * self.rate / 1e9)
            self.tokens = refilled if refilled > tokens else tokens  # a credit is kept
        self.at_ns = now_ns
        if self.tokens < cost:
            return False
        self.tokens -= cost
        return True

    def credit(self, seconds: float, now_ns: int) -> None:
        """``seconds`` of the rate given back beyond the cap, until spent: what a caller
        held back (a gateway that did not read a client's socket while the exchange was
        behind) is not counted as a burst when it is let through."""
        self.allow(now_ns, 0)  # refilled to now
        self.tokens += seconds * self.rate  # a debt (``charge``) is repaid from it first

    def charge(self, count: int, now_ns: int) -> None:
        """``count`` tokens spent after the fact (an answer of many messages): a debt, of a
        second's worth at most, that holds what comes next back until it is repaid."""
        self.allow(now_ns, 0)  # refilled to now
        self.tokens = max(self.tokens - count, -self.rate)
