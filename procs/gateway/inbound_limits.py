"""What a logged-on FIX session may send in all, past the message throttle (review 38).

The throttle (``Session.throttle``, ``max_messages_per_s``) counts valid application
messages and refuses each one past it with a BusinessMessageReject, for as long as the
client goes on. Everything else a session sends, Heartbeats, TestRequests, rejected and
garbled messages, was journaled (and answered, where it is answered) without a count: 10-280
MB of audit journal a second from one client. Here every message a logged-on session sends
counts against ``max_inbound_per_s``, charged once per read, and garbled bytes (unframed, a
wrong CheckSum or field order) against ``MAX_JUNK_BYTES_PER_S`` or two of the largest
messages, whichever is more: past either, the session logs the client out naming the limit
and closes. The tier a venue calls disconnect, above the throttle's reject (FIX 5.0SP2
EP116).
"""

from __future__ import annotations

from procs.common.token_bucket import TokenBucket

#: Garbled bytes a second a logged-on session may send, at least (``InboundLimits.junk_per_s``).
MAX_JUNK_BYTES_PER_S = 64 << 10


class InboundLimits:
    """A logged-on session's two inbound budgets; each check returns why the session must
    end (a Logout's text), or None."""

    def __init__(self, max_inbound_per_s: int, max_message_bytes: int, now_ns: int) -> None:
        self.per_s = max_inbound_per_s
        self.junk_per_s = max(MAX_JUNK_BYTES_PER_S, 2 * max_message_bytes)
        self._messages = TokenBucket(self.per_s, now_ns)
        self._junk = TokenBucket(self.junk_per_s, now_ns)

    @property
    def buckets(self) -> tuple[TokenBucket, TokenBucket]:
        """Both buckets (their marks move with a step of the wall clock)."""
        return self._messages, self._junk

    def read(self, count: int, now_ns: int) -> str | None:
        """A read of ``count`` messages (garbled ones too)."""
        if self._messages.allow(now_ns, count):
            return None
        return (
            f"more than {self.per_s} messages in a second (heartbeats, rejected and garbled "
            f"ones counted): the limit is {self.per_s}/s"
        )

    def garbled(self, size: int, now_ns: int) -> str | None:
        """``size`` bytes that framed as no message of this FIX version."""
        if self._junk.allow(now_ns, size):
            return None
        return (
            f"more than {self.junk_per_s} garbled bytes in a second ({size} at once): the "
            f"limit is {self.junk_per_s} bytes/s"
        )

    def credit(self, seconds: float, now_ns: int) -> None:
        """``seconds`` the gateway held the socket unread (the exchange's pace): what waited
        there is read as one burst, which the client did not send as one."""
        self._messages.credit(seconds, now_ns)
