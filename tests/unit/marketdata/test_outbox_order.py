"""A slow client's queue keeps the tape and the book in step: the snapshot a full queue owes
(its depth diffs dropped for it) shows the book after the batch it was pushed in, so it is
queued after that batch's trades, not before the trades it already holds."""

from __future__ import annotations

import time
from collections.abc import Sequence

from procs.common.types import Side
from procs.core.market.state import MarketState
from procs.marketdata.hub import Hub, Message
from procs.marketdata.outbox import Outbox
from procs.marketdata.streams import Kind, parse_stream

from .events import OTHER, SYMBOL, level, trade
from .test_review6_md_bugs import QueuedClient, _publish


class SlowClient(QueuedClient):
    """What the server's ``Client`` does with a batch while its socket is behind: every
    message through the outbox, then ``settle``; an overflow closes it."""

    closed: str | None = None

    def deliver(self, messages: Sequence[Message], frames: bytes) -> None:
        for m in messages:
            reason = self.outbox.push(m.kind, m.stream, m.payload, m.final)
            if reason is not None:
                self.closed = reason
                return
        self.outbox.settle()


def test_the_snapshot_a_full_queue_owes_follows_the_trades_it_shows() -> None:
    state = MarketState([SYMBOL, OTHER])
    hub = Hub(state, depth_levels=100, max_subscriptions=10)
    client = SlowClient(hub, limit=6)
    hub.subscribe(
        client, [parse_stream(n, hub.symbols) for n in ("btc-usd@depth", "btc-usd@trade")]
    )
    client.read_all()  # the subscription's snapshot: caught up
    now = time.time_ns()
    # resting asks from 101.00 up, one diff a batch: the queue fills with diffs
    for seq in range(1, 7):
        _publish(state, hub, [level(seq, Side.SELL, 10_000 + 100 * seq, 5, ts=now)])
    assert len(client.outbox) == 6
    # one batch: two trades take the ask at 101.00, which leaves the book; the first trade
    # finds the queue full, and the diffs give way to a snapshot
    _publish(
        state,
        hub,
        [
            trade(7, 1, 10_100, 2, ts=now),
            trade(8, 2, 10_100, 3, ts=now),
            level(9, Side.SELL, 10_100, 0, ts=now),
        ],
    )
    assert client.closed is None
    got = client.read_all()
    kinds = ["trade" if m["stream"].endswith("@trade") else "depth" for m in got]
    snapshot_at = next(k for k, m in enumerate(got) if "lastUpdateId" in m["data"])
    # both trades before the snapshot that shows the 101.00 ask gone; no diff after it
    assert kinds[snapshot_at - 2 : snapshot_at] == ["trade", "trade"]
    asks = [price for price, _ in got[snapshot_at]["data"]["asks"]]
    assert "101.00" not in asks and "102.00" in asks
    assert all(k == "trade" for k in kinds[snapshot_at + 1 :])


def test_a_diff_of_a_stream_owing_a_snapshot_is_left_to_it_and_a_subscribe_snapshot_pays_it() -> (
    None
):
    rendered: list[str] = []

    def snapshot(stream: str) -> bytes:
        rendered.append(stream)
        return b"fresh"

    box = Outbox(2, snapshot)
    box.push(Kind.DEPTH, "a@depth", b"d1")
    box.push(Kind.DEPTH, "a@depth", b"d2")
    assert box.push(Kind.DEPTH, "a@depth", b"d3") is None  # full: the diffs owe a snapshot
    assert box.push(Kind.DEPTH, "a@depth", b"d4") is None  # the owed snapshot holds it
    assert len(box) == 1 and rendered == []
    box.push_snapshot("a@depth", b"subscribed")  # newer than the one owed: nothing is owed
    box.settle()
    assert rendered == [] and box.pop() == b"subscribed" and box.pop() is None
    box.push(Kind.DEPTH, "b@depth", b"e1")
    box.push(Kind.DEPTH, "b@depth", b"e2")
    box.push(Kind.DEPTH, "b@depth", b"e3")
    box.discard("b@depth")  # unsubscribed: no snapshot is owed any more
    assert len(box) == 0 and box.pop() is None and rendered == []


def test_an_unsubscribe_of_several_streams_forgets_each_in_one_pass() -> None:
    """``discard_all``: what is queued or owed for each of the names goes, the rest stays in
    its order (review 262: an UNSUBSCRIBE rebuilt the queue once a name, held or not)."""
    box = Outbox(10, lambda stream: b"fresh")
    for stream, data in (("a@trade", b"a1"), ("b@trade", b"b1"), ("c@trade", b"c1"),
                         ("a@trade", b"a2"), ("c@trade", b"c2")):  # fmt: skip
        box.push(Kind.TRADE, stream, data)
    box.discard_all({"a@trade", "c@trade"})
    assert box.pop() == b"b1" and box.pop() is None
