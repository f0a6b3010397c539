"""A supervisor's verdicts: idle, working, waiting, stuck, dead, unattached, detached."""

from __future__ import annotations

import multiprocessing as mp
import time

from shm import Ring, StructCodec
from shm import header as h
from shm.health import Health, classify

CODEC = StructCodec("2q")


def _attach_and_die(instance: str) -> None:
    Ring.attach(instance, "r", CODEC).consumer("dead")


def test_verdicts(instance: str) -> None:
    ring = Ring.create(
        instance, "r", CODEC, capacity=64, consumers=["busy", "stuck", "dead", "later", "gone"]
    )
    producer = ring.producer()
    busy = ring.consumer("busy", commit_every=1)  # each poll visible in the header at once
    stuck = ring.consumer("stuck")
    child = mp.get_context("fork").Process(target=_attach_and_die, args=(instance,))
    child.start()
    child.join(10)
    ring.detach_consumer(ring.consumer_index("gone"))

    def verdicts(stale_after_s: float = 0.05) -> dict[str, Health]:
        earlier = {c.name: c for c in ring.info().consumers}
        for _ in range(3):
            busy.poll()  # works through its backlog
        later = {c.name: c for c in ring.info().consumers}
        return {n: classify(earlier[n], later[n], stale_after_s=stale_after_s) for n in later}

    assert verdicts()["busy"] is Health.IDLE  # nothing published yet
    for i in range(10):
        producer.publish((i, 0))
    stuck.heartbeat()
    got = verdicts(stale_after_s=10)
    assert got["stuck"] is Health.WAITING  # pending, but it showed life a moment ago
    time.sleep(0.1)
    got = verdicts(stale_after_s=0.05)
    assert got["busy"] is Health.WORKING
    assert got["stuck"] is Health.STUCK
    assert got["dead"] is Health.DEAD
    assert got["later"] is Health.UNATTACHED
    assert got["gone"] is Health.DETACHED
    assert ring.words[h.consumer_word(ring.consumer_index("dead"), h.C_STATE)] == h.STATE_ACTIVE
