"""What the router owes a gateway, sent as that gateway's reply ring takes it.

A gateway that stops reading (or reads slowly) must cost the router neither its other
gateways nor unbounded memory. Its replies go out in chunks that fit the ring, so a queue
longer than the ring still drains once the gateway reads again. While they wait, the balance
pushes among them are merged: a push carries absolute values, so only the newest of an
account's asset matters.
"""

from __future__ import annotations

import itertools
from collections import deque
from typing import TypeGuard

from procs.common.records import Balance, Heartbeat, Record
from procs.common.topology import ROUTER_STARTED_SOURCE
from shm import Producer

#: A chunk is this fraction of the ring: small enough to fit as soon as the gateway reads.
CHUNK_OF_CAPACITY = 4


def started_queues(
    replies: dict[int, Producer[Record]], seq: int, ts_ns: int
) -> dict[int, deque[Record]]:
    """Each gateway's queue of replies, empty but where the mark of this router's start
    (``ROUTER_STARTED_SOURCE``, put first on every reply ring of a router that recovered a
    journal) did not fit at once: what the gateway holds of a balance watch is to be renewed."""
    queues: dict[int, deque[Record]] = {g: deque() for g in replies}
    if seq:  # nothing journaled: no balance the gateway holds can be stale
        for g, producer in replies.items():
            mark = Heartbeat(ts_ns, ROUTER_STARTED_SOURCE, seq)
            if not producer.try_publish(mark):
                queues[g].append(mark)  # sent before any reply, once the gateway reads
    return queues


def send_pending(queue: deque[Record], producer: Producer[Record]) -> None:
    """Publish from the front of ``queue`` what fits, a chunk at a time."""
    chunk = _chunk(producer)
    while queue:
        batch = list(itertools.islice(queue, chunk))
        if not producer.try_publish_batch(batch):
            break
        for _ in batch:
            queue.popleft()
    if len(queue) > producer.ring.capacity:
        merge_pushes(queue)


def can_send(queue: deque[Record], producer: Producer[Record]) -> bool:
    """Whether ``send_pending`` would publish now: the first chunk of ``queue`` fits (room
    for less publishes nothing, so a wait must not end on it)."""
    return producer.has_room(min(len(queue), _chunk(producer)))


def _chunk(producer: Producer[Record]) -> int:
    return max(1, producer.ring.capacity // CHUNK_OF_CAPACITY)


def _push(record: Record) -> TypeGuard[Balance]:
    return type(record) is Balance and not record.client_ref


def merge_pushes(queue: deque[Record]) -> None:
    """Keep of the balance pushes in ``queue`` only the newest per (account, asset)."""
    newest: dict[tuple[int, int], int] = {}
    for k, record in enumerate(queue):
        if _push(record):
            newest[(record.account, record.asset)] = k
    kept = [
        record
        for k, record in enumerate(queue)
        if not _push(record) or newest[(record.account, record.asset)] == k
    ]
    queue.clear()
    queue.extend(kept)
