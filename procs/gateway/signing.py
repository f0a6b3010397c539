"""Signed REST requests: the string a client signs, and the server's check of it.

A request carries its API key, a timestamp (ms since the epoch), optionally a receive window
(ms) and ``hex(HMAC-SHA256(secret, payload))`` over::

    f"{timestamp}\\n{recv_window}\\n{METHOD}\\n{path}\\n{query}\\n" + body

(each as sent: ``query`` without the '?'; ``recv_window`` the server's default when the
header is absent). Signing method, path, query and body binds the signature to this one request; the
timestamp and window bound how long a captured request stays usable, as at the big venues.

Unlike them the verifier also refuses a signature it has seen already (REPLAYED), so a captured
request cannot be re-sent within its window either. Two consequences: a client sending two
byte-identical requests in the same millisecond gets the second refused (a retry carries a new
timestamp, so it is fine), and the memory of seen signatures is per process, so with several
gateway processes a request replayed to a *different* process is still accepted once there
(TLS is what keeps requests from being captured; this is defence in depth).

The check is sans-I/O (headers, request line, body and the clock in; AuthError out) so it is
tested without a server. Sans the HMAC it costs about a microsecond.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection
from functools import lru_cache
from heapq import heappop, heappush

API_KEY = "X-RINGEX-APIKEY"
TIMESTAMP = "X-RINGEX-TIMESTAMP"  # ms since the epoch
RECV_WINDOW = "X-RINGEX-RECV-WINDOW"  # ms, optional
SIGNATURE = "X-RINGEX-SIGNATURE"  # lower-case hex HMAC-SHA256
#: What a refusal calls them (``Verifier.check``'s ``names``)
HEADERS = (f"header {SIGNATURE}", f"header {TIMESTAMP}", RECV_WINDOW)

#: Result codes of AuthError (Binance-compatible numbers, so existing client code maps them).
UNAUTHORIZED = -2014  # missing or unknown key, missing/malformed timestamp or signature
BAD_SIGNATURE = -1022
OUTSIDE_WINDOW = -1021
REPLAYED = -1025
BAD_WINDOW = -1131
FORBIDDEN_SCOPE = -2015

#: How far a timestamp may be ahead of the server's clock (client clocks run fast too).
MAX_AHEAD_MS = 1_000
#: Replay memory granularity: seen signatures are kept in buckets by expiry, this wide (ms).
_BUCKET_MS = 100
#: Longest timestamp/window header parsed (a 13-digit ms timestamp fits with room to spare).
_MAX_DIGITS = 16
_LOWER_HEX = frozenset("0123456789abcdef")


class AuthError(Exception):
    """A refused request: ``code`` (one of the constants above) and ``msg`` for the client."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


def payload(
    timestamp_ms: int | str,
    recv_window_ms: int | str,
    method: str,
    path: str,
    query: str,
    body: bytes,
) -> bytes:
    """The bytes signed for one request (see the module docstring): the timestamp and
    window as the client sent them (review 284: ``05000`` was signed as ``5000``)."""
    return f"{timestamp_ms}\n{recv_window_ms}\n{method.upper()}\n{path}\n{query}\n".encode() + body


def sign(
    secret: str,
    timestamp_ms: int,
    recv_window_ms: int,
    method: str,
    path: str,
    query: str,
    body: bytes,
) -> str:
    """The signature header value: lower-case hex HMAC-SHA256 keyed with ``secret``'s bytes."""
    data = payload(timestamp_ms, recv_window_ms, method, path, query, body)
    return hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


@lru_cache(maxsize=4096)
def _keyed(secret: str) -> hmac.HMAC:
    """An HMAC-SHA256 keyed with ``secret`` and fed nothing: a copy of it is one request's
    HMAC without hashing the key's two pads again (1.2 us a request here, against 1.9 for
    ``hmac.new``). Never updated itself; a revoked key's entry ages out of the cache."""
    return hmac.new(secret.encode(), digestmod=hashlib.sha256)


def require_scope(scopes: Collection[str], needed: str) -> None:
    """Raise FORBIDDEN_SCOPE unless ``needed`` is in the key's ``scopes``."""
    if needed not in scopes:
        raise AuthError(
            FORBIDDEN_SCOPE,
            f"API key lacks scope {needed!r} (it has {', '.join(sorted(scopes)) or 'none'})",
        )


def _show(value: str) -> str:
    """A header value echoed in a message, cut short: never reflect kilobytes back."""
    return repr(value if len(value) <= 32 else value[:32] + "...")


#: What ``Verifier.check`` returns and ``remember`` keeps: the signature's hash, the 100 ms
#: bucket its window ends in, and the monotonic ms until which it is kept at least.
Seen = tuple[int, int, int]


class Verifier:
    """Checks signed requests and remembers the signatures it accepted.

    Seen signatures are kept until ``timestamp + recv_window`` passes (after that the request
    is refused as outside its window anyway), in buckets of 100 ms of expiry: a signature is
    looked up only in its own bucket (the signature fixes timestamp and window), and expiry
    drops whole buckets. At most ``replay_capacity`` are kept; when full, the buckets expiring
    first are dropped early. That is the trade-off: a burst past capacity re-opens the replay
    of the requests whose windows end first, rather than refusing every new request (which
    would let one flooding client lock everybody out) or growing without bound. What fills it
    is bounded by the rate limits: the gateway remembers a request only once its key's limit
    took it (``check``, the limit, then ``remember``; review 44: requests refused with 429 had
    filled it, so one key could push out the others' live signatures). Size it as peak
    accepted requests/s times the windows in use (default: 1M, ~100 MB worst case; one key at
    the default 2,000/s with 60 s windows keeps 120k).

    A bucket goes once the wall clock has passed its end and the monotonic clock has passed
    the time its window then had left (``check``'s ``mono_ms``): a wall clock stepped
    forward, then back, emptied the memory, and a request captured before the steps was
    taken again within its window (review 175); stepped back, the wall clock alone keeps a
    request until its window ends again, as it may then be sent again.

    ``not_before_ms`` (the process's start) refuses a request signed before it: the memory
    starts empty, so without it a request captured before a restart could be sent again for
    what is left of its window (review 44). With ``not_before_mono_ms``, the monotonic clock
    then, that start is where the wall clock puts it now: a start read with the clock an hour
    ahead refused every request for the hour after a step back set it right (review 282).

    Entries are ``hash(signature)``: 64 bits, keyed per process (SipHash with a random seed),
    so a client cannot aim a collision, and a false REPLAYED among a million live entries has
    odds of about 1 in 10**13.
    """

    def __init__(
        self,
        max_recv_window_ms: int,
        default_recv_window_ms: int,
        replay_capacity: int = 1_000_000,
        not_before_ms: int = 0,
        not_before_mono_ms: int | None = None,
    ) -> None:
        if not 1 <= default_recv_window_ms <= max_recv_window_ms:
            raise ValueError(
                f"default recv window {default_recv_window_ms} ms must be in "
                f"1..{max_recv_window_ms} ms (the maximum)"
            )
        if replay_capacity < 1:
            raise ValueError(f"replay_capacity {replay_capacity} must be at least 1")
        self.max_recv_window_ms = max_recv_window_ms
        self.default_recv_window_ms = default_recv_window_ms
        self.replay_capacity = replay_capacity
        self.not_before_ms = not_before_ms
        self.not_before_mono_ms = not_before_mono_ms
        self._buckets: dict[int, set[int]] = {}  # expiry // _BUCKET_MS -> signature hashes
        self._order: list[int] = []  # heap of the bucket ids in _buckets
        self._kept_until: dict[int, int] = {}  # bucket id -> monotonic ms it is kept until
        self._count = 0

    def __len__(self) -> int:
        """Signatures remembered now."""
        return self._count

    def verify(
        self,
        secret: str,
        timestamp: str | None,
        recv_window: str | None,
        signature: str | None,
        method: str,
        path: str,
        query: str,
        body: bytes,
        now_ms: int,
        mono_ms: int | None = None,
    ) -> None:
        """``check``, then ``remember``: accept the request or raise AuthError."""
        self.remember(
            self.check(
                secret,
                timestamp,
                recv_window,
                signature,
                method,
                path,
                query,
                body,
                now_ms,
                mono_ms,
            )
        )

    def check(
        self,
        secret: str,
        timestamp: str | None,
        recv_window: str | None,
        signature: str | None,
        method: str,
        path: str,
        query: str,
        body: bytes,
        now_ms: int,
        mono_ms: int | None = None,
        names: tuple[str, str, str] = HEADERS,
    ) -> Seen:
        """The request's entry for ``remember`` if it may be accepted, else AuthError; the
        caller remembers it once it takes the request (after its rate limit), with nothing
        awaited between the two. ``now_ms``: the wall clock's reading; ``mono_ms`` the
        monotonic clock's in ms (None: ``now_ms``, a clock that never steps).

        ``timestamp``, ``recv_window`` and ``signature`` are the raw header values (None when
        absent); checked in order: presence and format (UNAUTHORIZED, BAD_WINDOW), time
        window (OUTSIDE_WINDOW: cheap, before the HMAC), signature (BAD_SIGNATURE; or
        UNAUTHORIZED when it is not lower-case hex), replay (REPLAYED). Only a request
        that passed the HMAC can be remembered, so unsigned junk cannot fill the replay memory.
        ``names``: what the refusals call the signature, timestamp and window (a private
        stream's are query parameters: review 267).
        """
        sig_name, ts_name, window_name = names
        if signature is None or len(signature) != 64 or not signature.isascii():
            raise AuthError(
                UNAUTHORIZED,
                f"{sig_name} must be 64 lower-case hex characters, got "
                f"{'none' if signature is None else _show(signature)}",
            )
        if (
            timestamp is None
            or not timestamp.isascii()
            or not timestamp.isdigit()
            or len(timestamp) > _MAX_DIGITS
        ):
            raise AuthError(
                UNAUTHORIZED,
                f"{ts_name} must be an integer (ms since the epoch), got "
                f"{'none' if timestamp is None else _show(timestamp)}",
            )
        ts = int(timestamp)
        limit = self.max_recv_window_ms
        if recv_window is None:
            window = self.default_recv_window_ms
        elif (
            recv_window.isascii()
            and recv_window.isdigit()
            and len(recv_window) <= _MAX_DIGITS
            and 1 <= (window := int(recv_window)) <= limit
        ):
            pass
        else:
            raise AuthError(
                BAD_WINDOW,
                f"{window_name} {_show(recv_window)} must be an integer in 1..{limit} ms",
            )
        if not now_ms - window <= ts <= now_ms + MAX_AHEAD_MS:
            raise AuthError(
                OUTSIDE_WINDOW,
                f"timestamp {ts} is outside the receive window: server time {now_ms}, "
                f"recvWindow {window} ms, accepted {now_ms - window}..{now_ms + MAX_AHEAD_MS}",
            )
        started = self.not_before_ms
        if self.not_before_mono_ms is not None and mono_ms is not None:  # as the clock reads now
            started = now_ms - (mono_ms - self.not_before_mono_ms)
        if ts < started:
            raise AuthError(
                OUTSIDE_WINDOW,
                f"timestamp {ts} is before this gateway started ({started}; server "
                f"time {now_ms}): a request signed before a restart is refused; sign it again, "
                "with a clock that is not behind the server's",
            )
        data = payload(timestamp, window if recv_window is None else recv_window, method, path,
                       query, body)  # fmt: skip
        mac = _keyed(secret).copy()
        mac.update(data)
        expected = mac.hexdigest()
        if not hmac.compare_digest(expected, signature):
            if not _LOWER_HEX.issuperset(signature):  # told apart here, off the happy path
                raise AuthError(
                    UNAUTHORIZED,
                    f"{sig_name} must be 64 lower-case hex characters, got {_show(signature)}",
                )
            raise AuthError(
                BAD_SIGNATURE,
                "signature does not match: expected lower-case hex HMAC-SHA256 of "
                "'timestamp\\nrecvWindow\\nMETHOD\\npath\\nquery\\n' + body",
            )
        mono = now_ms if mono_ms is None else mono_ms
        bucket_id = (ts + window) // _BUCKET_MS
        seen = (hash(signature), bucket_id, mono + (bucket_id + 1) * _BUCKET_MS - now_ms)
        self._expire(now_ms // _BUCKET_MS, mono)
        self._refuse_seen(seen)
        return seen

    def _expire(self, now_bucket: int, mono_ms: int) -> None:
        order, kept_until = self._order, self._kept_until
        # expired: every entry's window has passed by the wall clock, and by the time it had
        # left when it came (a later bucket still held waits behind it: kept a little longer)
        while order and order[0] < now_bucket and kept_until[order[0]] <= mono_ms:
            self._drop(heappop(order))

    def _drop(self, bucket_id: int) -> None:
        self._count -= len(self._buckets.pop(bucket_id))
        del self._kept_until[bucket_id]

    def _refuse_seen(self, seen: Seen) -> None:
        entry, bucket_id, _ = seen
        bucket = self._buckets.get(bucket_id)
        if bucket is not None and entry in bucket:
            raise AuthError(REPLAYED, "request replayed: this signature was accepted already")

    def remember(self, seen: Seen) -> None:
        """Keep ``check``'s entry for a request taken (REPLAYED if it is kept already)."""
        self._refuse_seen(seen)
        entry, bucket_id, until = seen
        order = self._order
        bucket = self._buckets.get(bucket_id)
        while self._count >= self.replay_capacity:  # full: forget the soonest to expire
            self._drop(heappop(order))
            bucket = self._buckets.get(bucket_id)  # None if it was the one dropped
        if bucket is None:
            bucket = self._buckets[bucket_id] = set()
            heappush(order, bucket_id)
            self._kept_until[bucket_id] = until
        elif until > self._kept_until[bucket_id]:
            self._kept_until[bucket_id] = until
        bucket.add(entry)
        self._count += 1

    def forget(self, seen: Seen) -> None:
        """Drop ``remember``'s entry again: a request refused after all, as a batch whose
        orders the key's rate limit did not take (review 342), may be sent again as is."""
        entry, bucket_id, _ = seen
        bucket = self._buckets.get(bucket_id)
        if bucket is not None and entry in bucket:
            bucket.remove(entry)
            self._count -= 1
