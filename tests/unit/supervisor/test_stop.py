"""A stopping instance detaches the ring lines of consumers that have stopped, so a stopped
gateway's unread events do not hold the matcher (and the stop) up."""

from __future__ import annotations

import subprocess

from procs.supervisor.draining import detach_gone
from shm import Ring, StructCodec
from shm import header as h

CODEC = StructCodec("2q")


def test_the_lines_of_stopped_consumers_stop_gating(instance: str) -> None:
    ring = Ring.create(instance, "m1-out", CODEC, capacity=4, consumers=["gw1", "md"])
    producer = ring.producer()
    md = ring.consumer("md")
    ring.consumer("gw1")
    exited = subprocess.Popen(["true"])
    exited.wait()
    ring.words[h.consumer_word(ring.consumer_index("gw1"), h.C_PID)] = exited.pid
    for i in range(4):
        producer.publish((i, 0))
    assert [x[0] for x in md.read(8)] == [0, 1, 2, 3]
    assert not producer.try_publish((4, 0))  # the stopped gateway's line still gates
    assert detach_gone([ring]) == ["m1-out:gw1"]
    assert producer.try_publish((4, 0))  # no longer
    assert [x[0] for x in md.read(8)] == [4]
    assert detach_gone([ring]) == []  # md is alive, gw1 already detached
