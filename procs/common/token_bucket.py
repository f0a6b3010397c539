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

import math

_NANO = 1_000_000_000  # nano-tokens a token: counted in integers, never rounded


class TokenBucket:
    """The tokens are counted in nano-tokens, integers: with a whole ``rate`` a refill is
    ``elapsed_ns * rate`` exactly, so a client exactly at its rate is never refused for a
    float's rounding (review 188: three requests at 0, 1 ns and 0.5 s at 2 a second found
    0.9999999999999999 tokens). The cap is a second's worth, or one token where the rate is
    below one a second (else no request would ever pass)."""

    __slots__ = ("_cap", "_nanos", "_per_ns", "at_ns", "rate")

    def __init__(self, rate: float, now_ns: int) -> None:
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"token bucket rate {rate!r} must be a finite number above 0 a second")
        self.rate = float(rate)
        # nano-tokens a nanosecond: the rate itself (an int where it is whole: exact)
        self._per_ns: int | None = int(rate) if self.rate.is_integer() else None
        self._cap = round(max(self.rate, 1.0) * _NANO)
        self._nanos = self._cap  # full: a second's worth
        self.at_ns = now_ns

    @property
    def tokens(self) -> float:
        """The tokens held now (as of the last reading): negative while a debt is repaid."""
        return self._nanos / _NANO

    def allow(self, now_ns: int, cost: int = 1) -> bool:
        """Spend ``cost`` tokens if there are that many now; whether it did."""
        if now_ns > self.at_ns:
            held, elapsed, per_ns = self._nanos, now_ns - self.at_ns, self._per_ns
            gained = elapsed * per_ns if per_ns is not None else int(elapsed * self.rate)
            refilled = min(self._cap, held + gained)
            self._nanos = refilled if refilled > held else held  # a credit is kept
        self.at_ns = now_ns
        need = cost * _NANO
        if self._nanos < need:
            return False
        self._nanos -= need
        return True

    def credit(self, seconds: float, now_ns: int) -> None:
        """``seconds`` of the rate given back beyond the cap, until spent: what a caller
        held back (a gateway that did not read a client's socket while the exchange was
        behind) is not counted as a burst when it is let through."""
        self.allow(now_ns, 0)  # refilled to now
        # a debt (``charge``) is repaid from it first
        self._nanos += round(seconds * self.rate * _NANO)

    def charge(self, count: int, now_ns: int) -> None:
        """``count`` tokens spent after the fact (an answer of many messages): a debt, of a
        second's worth at most, that holds what comes next back until it is repaid."""
        self.allow(now_ns, 0)  # refilled to now
        self._nanos = max(self._nanos - count * _NANO, -round(self.rate * _NANO))
