"""Bugs a fifth hostile review of the market-data feed found (``procs/marketdata`` and the
state it publishes), one failing test each; each passes once its bug is fixed:

- ``main._reseed`` reads the seq of a ring's last committed record with
  ``getattr(last, "seq", 0)``: when that record is a matcher's mark (a ``Heartbeat``,
  whose seq is its ``counter``), the seq is 0 and the books are not reseeded;
- ``main.resume`` reseeds a ring committed past the saved state only when the ring is the
  one the state names: a recreated ring (a full restart) committed past a failed save is
  read on from its committed position with the books of the older state;
- ``MarketDataServer._on_message`` subscribes a client whose SUBSCRIBE answer just closed
  it as slow: the closing client is back in the hub.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import pytest

from procs.common.market_snapshots import MarketSnapshots, Positions
from procs.common.records import Heartbeat
from procs.common.snapshots import SnapshotStore
from procs.common.topology import (
    MARKETDATA,
    RECOVERED_SOURCE,
    REPLAY_SOURCE,
    matcher_output,
    snapshot_dir,
)
from procs.core.engine import Matcher
from procs.core.market.state import MarketState
from procs.core.symbols import symbol_specs
from procs.marketdata.streams import Kind
from shm import Ring

from .rig import CODEC, Rig, close_process, config, drain_feed, event_time_process
from .test_adversarial_ws import run
from .test_server import random_orders


def test_a_torn_state_after_a_matcher_restart_still_reseeds_the_books(
    instance: str, tmp_path: Path
) -> None:
    """``main.resume`` reseeds the books of a ring committed past the saved state from the
    matcher's state "at the last seq committed" (README, *Market data after a failover*;
    ``main._reseed``). It takes that seq as ``getattr(last, "seq", 0)`` of the ring's last
    committed record. After a matcher restart with no trading since, that record is the
    matcher's ``Heartbeat`` (its RECOVERED mark, ``counter`` = its last seq), which has no
    ``seq``: the seq is read as 0, ``Reseeder`` returns nothing, and the process starts with
    empty books although the matcher holds resting orders. Expected: the book equals the
    matcher's at seq 200 (a mark's seq is its ``counter``, as ``Feed.pump`` reads it)."""
    cfg = config(instance, str(tmp_path), snapshot_every_s=3600)
    ring = Ring.create(
        instance, matcher_output("m1"), CODEC, capacity=1 << 14, consumers=[MARKETDATA]
    )
    producer = ring.producer()
    matcher = Matcher(symbol_specs(cfg, "m1"))
    try:
        process = event_time_process(cfg)
        producer.publish_batch(matcher.execute_all(random_orders(random.Random(12), 1, 200)))
        SnapshotStore(snapshot_dir(cfg, "matcher-m1")).save(200, matcher.snapshot())
        # the matcher restarts from that snapshot: its replay mark, nothing to replay, then
        # its recovered mark; nobody trades afterwards
        now = time.time_ns()
        producer.publish_batch([Heartbeat(now, REPLAY_SOURCE, 200)])
        producer.publish_batch([Heartbeat(now, RECOVERED_SOURCE, 200)])
        drain_feed(process)
        process.feed.checkpoint()
        expected = matcher.books[1].levels()
        assert expected  # the matcher has resting orders
        assert process.state.symbols[1].book.levels() == expected
        close_process(process)

        path = process.snapshots.path
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])  # torn (or lost, or of another version)

        again = event_time_process(cfg)
        drain_feed(again)
        book = again.state.symbols[1].book
        got = (book.levels(), book.last_update_id)
        close_process(again)
        assert got == (expected, 200)
    finally:
        producer.close()
        ring.close()


def test_a_failed_save_on_a_recreated_ring_still_reseeds_at_the_restart(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full restart recreates the rings; the market data reads the new one from its start
    (the state on disk still names the old ring). Its saves then fail for a while (a full
    disk): ``Feed.checkpoint`` commits the new ring all the same. At the next restart
    ``main.resume`` sees the ring's ``created_ns`` differ from the saved one and only logs
    it: the ring is read on from its committed position, the events before it (seq
    201..300, applied by the previous run, never saved) are not in the state and nothing
    reseeds the books, although the branch ``upto < consumer.sequence`` does exactly that
    for the same situation on an old ring. Expected: the book equals the matcher's at seq
    300 (its snapshot is on disk); actual: the book of seq 200."""
    cfg = config(instance, str(tmp_path), snapshot_every_s=3600)
    matcher = Matcher(symbol_specs(cfg, "m1"))
    rng = random.Random(21)
    store = SnapshotStore(snapshot_dir(cfg, "matcher-m1"))

    def new_ring() -> tuple[Ring[Any], Any]:
        ring = Ring.create(
            instance, matcher_output("m1"), CODEC, capacity=1 << 14, consumers=[MARKETDATA]
        )
        return ring, ring.producer()

    ring, producer = new_ring()
    try:
        process = event_time_process(cfg)
        producer.publish_batch(matcher.execute_all(random_orders(rng, 1, 200)))
        store.save(200, matcher.snapshot())
        drain_feed(process)
        process.feed.checkpoint()  # saved: the old ring, seq 200
        close_process(process)
    finally:
        producer.close()
        ring.close()
        ring.unlink()

    time.sleep(0.001)  # another created_ns
    ring, producer = new_ring()  # the full restart: the matcher starts from seq 200
    try:
        producer.publish_batch([Heartbeat(time.time_ns(), REPLAY_SOURCE, 200)])
        producer.publish_batch(matcher.execute_all(random_orders(rng, 201, 100)))
        process = event_time_process(cfg)
        drain_feed(process)
        store.save(300, matcher.snapshot())
        assert process.state.symbols[1].book.levels() == matcher.books[1].levels()

        def full_disk(self: MarketSnapshots, state: MarketState, positions: Positions) -> int:
            raise OSError(28, "No space left on device")

        with monkeypatch.context() as patched:
            patched.setattr(MarketSnapshots, "save", full_disk)
            process.feed.checkpoint()  # not saved, committed all the same
        close_process(process)

        again = event_time_process(cfg)
        drain_feed(again)
        book = again.state.symbols[1].book
        got = (book.levels(), book.last_update_id)
        close_process(again)
        assert got == (matcher.books[1].levels(), 300)
    finally:
        producer.close()
        ring.close()


def test_a_subscribe_whose_answer_closes_the_client_does_not_subscribe_it(instance: str) -> None:
    """``_on_message`` answers a SUBSCRIBE first and subscribes after (``server.py``,
    "the answer first, then the snapshots"). When the answer cannot be queued (the
    client's queue is at its limit with trades, nothing to compact) ``Client.reply`` closes
    the client as slow (``close_slow``: removed from the hub, 1008 under way), and then
    ``hub.subscribe`` puts the closing client back into the hub's subscriptions and
    groups: every batch of the new stream is rendered and fanned out to a connection that
    is going away (for up to ``slow_close_s``), and a depth snapshot is rendered for it.
    Expected (as for any request of a closing client): no stream has it as a subscriber."""

    async def body(rig: Rig) -> None:
        server, hub = rig.process.server, rig.process.hub
        async with rig.client("/ws/btc-usd@trade") as c:
            assert (await c.request("LIST_SUBSCRIPTIONS"))["result"] == ["btc-usd@trade"]
            (client,) = server.clients
            # its queue at the limit with trades (the sender is idle: nothing wakes it)
            for k in range(client.outbox.limit):
                client.outbox.push(Kind.TRADE, "btc-usd@trade", b'{"k":%d}' % k)
            c.ws.transport.pause_reading()  # it reads nothing more: the close takes its time
            await c.ws.send('{"method":"SUBSCRIBE","params":["eth-usd@depth"],"id":9}')
            deadline = time.monotonic() + 5
            while not client.closing and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            assert client.closing and server.slow_closed == 1
            subscribed = hub.subscribers("eth-usd@depth"), sorted(client.streams)
            c.ws.transport.abort()
            assert subscribed == (0, []), f"closed client back in the hub: {subscribed}"

    run(instance, body, client_queue=16)
