"""A FIX session's marks on the wall clock, across its steps (reviews 175 and 176).

A session measures its intervals (the logon timeout, the Logout's, heartbeats, the test of a
silent peer, the ask again for a gap, its throttles) from marks it takes on the readings its
caller hands it: the wall clock's, as SendingTime is stamped with them. A step of that clock
would be taken for time passed (forward: a fresh logon timed out) or make the marks later
than every reading for the step's length (back: an hour without a Heartbeat). So the shell
tells the session each step (``clock_stepped``, from ``procs/common/wall_clock.py``), and
the marks move with it; a mark still later than a reading (set from one taken in between)
is taken as the reading (``not_after``). Stamps kept for SendingTime (the Logon's arrival
and the messages held behind it, a resend's) are the wall's, and do not move.

A mixin of ``Session`` (``session.py``), which owns the state it names.
"""

from __future__ import annotations

from procs.common.token_bucket import TokenBucket
from procs.gateway.inbound_limits import InboundLimits


class ClockMarks:
    _connected_ns: int
    _last_in_ns: int
    _last_out_ns: int
    _logout_ns: int  # 0: no Logout sent
    _test_request_ns: int  # 0: none open
    _resend_at: int  # 0: no ResendRequest of ours sent
    throttle: TokenBucket
    inbound: InboundLimits

    def clock_stepped(self, step_ns: int) -> None:
        """The wall clock stepped by ``step_ns``: the marks move with it, so a timeout, a
        heartbeat, the test of a silent peer or the ask again for a gap comes after the time
        that passed, not the step."""
        self._connected_ns += step_ns
        self._last_in_ns += step_ns
        self._last_out_ns += step_ns
        if self._logout_ns:
            self._logout_ns += step_ns
        if self._test_request_ns:
            self._test_request_ns += step_ns
        if self._resend_at:
            self._resend_at += step_ns
        for bucket in (self.throttle, *self.inbound.buckets):
            bucket.at_ns += step_ns

    def not_after(self, now_ns: int) -> None:
        """Marks later than ``now_ns`` (the clock stepped back, and a mark was set from a
        reading taken before the step was told) are taken as ``now_ns``: the session's
        heartbeats and its test of a silent peer go on within an interval, not once the
        clock has made the step up again."""
        self._last_in_ns = min(self._last_in_ns, now_ns)
        self._last_out_ns = min(self._last_out_ns, now_ns)
        self._connected_ns = min(self._connected_ns, now_ns)
        self._logout_ns = min(self._logout_ns, now_ns)
        self._test_request_ns = min(self._test_request_ns, now_ns)
        self._resend_at = min(self._resend_at, now_ns)
