"""One client's bounded queue of outgoing messages and the slow-consumer policy.

Sans-I/O: the server pushes what a client should get and pops what its socket can take.
Why not simply drop a slow client, or let it slow the feed (websockets'
``docs/topics/broadcast.rst`` weighs both): a client that falls behind for a moment should
recover with the least loss, and only one that cannot keep up with the trade tape is cut off.
So, once ``limit`` messages wait:

- partial depth, bookTicker, ticker and kline streams (and heartbeats) conflate: a queued
  message of the same stream is replaced in place by the newer one (the queue holds at
  most one per such stream), but a final one (a candle's close) is never replaced: the
  next value queues behind it, and past ``limit`` it is held as a trade is (below);
- a depth diff drops that stream's queued diffs and owes a fresh snapshot instead, which
  the next diffs continue (the client sees ``lastUpdateId`` jump and starts over from it);
- a trade cannot be dropped without lying about the tape: first every depth stream with
  more than one message queued is compacted to one owed snapshot (``_make_room``); if
  that frees no room, ``push`` returns an overflow reason and the server closes the
  connection (1008, policy violation) with it;
- a symbol's status (a halt, its resume) is few and each one matters: queued whole, never
  conflated nor refused;
- nor can an answer to a request: a client that sends requests and reads no answers is
  closed the same way (``push_reply``), after the same compaction.

Conflation applies at any queue length: a stale ticker is never worth sending.

An owed snapshot is rendered and queued by ``settle``, which the server calls once it has
pushed a batch: a snapshot shows the book after the whole batch, so it goes after the
batch's trades too (rendered at once, it went before the trades it already held). A diff of
a stream that owes one is dropped: the snapshot will hold it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Set

from procs.marketdata.streams import Kind

_CONFLATED = frozenset(
    (Kind.PARTIAL_DEPTH, Kind.BOOK_TICKER, Kind.TICKER, Kind.KLINE, Kind.HEARTBEAT)
)


class _Entry:
    """A queued message; mutable so that conflation replaces its payload in place."""

    __slots__ = ("kind", "payload", "stream")

    def __init__(self, kind: Kind | None, stream: str, payload: bytes) -> None:
        self.kind = kind
        self.stream = stream
        self.payload = payload


class Outbox:
    def __init__(self, limit: int, snapshot: Callable[[str], bytes]) -> None:
        """``snapshot(stream)`` renders a depth stream's snapshot continuing its diffs."""
        if limit < 1:
            raise ValueError(f"outbox limit {limit} must be at least 1")
        self.limit = limit
        self._snapshot = snapshot
        self._queue: deque[_Entry] = deque()
        self._conflated: dict[str, _Entry] = {}
        self._owed: dict[str, None] = {}  # depth streams owed a snapshot, in order
        self.conflated = 0  # messages replaced by a newer one
        self.resnapshots = 0  # depth streams restarted from a snapshot

    def __len__(self) -> int:
        """Messages queued, an owed snapshot counted as the message it will be."""
        return len(self._queue) + len(self._owed)

    def push(self, kind: Kind, stream: str, payload: bytes, final: bool = False) -> str | None:
        """Queue ``payload``; returns None, or why the client must be disconnected.
        ``final``: a conflated stream's value that no later one may replace."""
        if kind in _CONFLATED:
            queued = self._conflated.get(stream)
            if queued is not None:
                queued.payload = payload
                self.conflated += 1
            else:
                # a final, never dropped, counts as a trade does: past the limit, room is
                # made or the client is closed (finals queued without end: review 205)
                if final and len(self) >= self.limit and not self._make_room():
                    return (
                        f"slow consumer: {len(self)} messages queued, limit {self.limit}; "
                        f"closed candles of {stream} cannot be conflated"
                    )
                queued = _Entry(kind, stream, payload)
                self._conflated[stream] = queued
                self._queue.append(queued)
            if final:  # it stays as it is: the next value gets an entry of its own
                del self._conflated[stream]
            return None
        if kind is Kind.DEPTH and stream in self._owed:
            return None  # the snapshot owed will hold it
        if len(self) >= self.limit and kind is not Kind.STATUS:
            if kind is Kind.DEPTH:
                self._restart_depth(stream)
                return None
            if self._make_room():
                self._queue.append(_Entry(kind, stream, payload))
                return None
            return (
                f"slow consumer: {len(self)} messages queued, limit {self.limit}; "
                f"trade stream {stream} cannot be conflated"
            )
        self._queue.append(_Entry(kind, stream, payload))
        return None

    def settle(self) -> None:
        """Queue the snapshots owed, rendered now: after everything pushed before."""
        owed, self._owed = self._owed, {}
        for stream in owed:
            self._queue.append(_Entry(Kind.DEPTH, stream, self._snapshot(stream)))

    def push_snapshot(self, stream: str, payload: bytes) -> None:
        """Queue a depth snapshot (on subscribe): never refused, it restarts the stream."""
        self._drop_depth(stream)
        self._owed.pop(stream, None)  # this one is newer than any owed
        self._queue.append(_Entry(Kind.DEPTH, stream, payload))

    def push_reply(self, payload: bytes) -> str | None:
        """Queue an answer to a request, never conflated; returns None, or why the client
        must be disconnected: a client can send requests without reading the answers, and
        those must not queue past ``limit`` any more than trades do."""
        if len(self) >= self.limit and not self._make_room():
            return (
                f"slow consumer: {len(self)} messages queued, limit {self.limit}; "
                f"it sends requests and does not read the answers"
            )
        self._queue.append(_Entry(None, "", payload))
        self.settle()
        return None

    def _make_room(self) -> bool:
        """Compact each depth stream that has more than one message queued to one owed
        snapshot; whether the queue is below ``limit`` then."""
        counts: dict[str, int] = {}
        for e in self._queue:
            if e.kind is Kind.DEPTH:
                counts[e.stream] = counts.get(e.stream, 0) + 1
        for stream, count in counts.items():
            if count > 1:
                self._restart_depth(stream)
        return len(self) < self.limit

    def _restart_depth(self, stream: str) -> None:
        """Drop ``stream``'s queued diffs; ``settle`` queues the snapshot they give way to."""
        self.resnapshots += 1
        self._drop_depth(stream)
        self._owed[stream] = None

    def _drop_depth(self, stream: str) -> None:
        self._queue = deque(
            e for e in self._queue if not (e.kind is Kind.DEPTH and e.stream == stream)
        )

    def pop(self) -> bytes | None:
        if self._owed:
            self.settle()
        if not self._queue:
            return None
        entry = self._queue.popleft()
        if entry.kind in _CONFLATED and self._conflated.get(entry.stream) is entry:
            del self._conflated[entry.stream]
        return entry.payload

    def discard(self, stream: str) -> None:
        """Forget what is queued for ``stream`` (it was unsubscribed)."""
        self.discard_all({stream})

    def discard_all(self, streams: Set[str]) -> None:
        """Forget what is queued for each of ``streams``, in one pass over the queue (review
        262: an UNSUBSCRIBE of 28 names rebuilt a slow client's queue 28 times)."""
        if not streams:
            return
        self._queue = deque(e for e in self._queue if e.stream not in streams)
        for stream in streams:
            self._conflated.pop(stream, None)
            self._owed.pop(stream, None)
