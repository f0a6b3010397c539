"""One producer, three consumers, 10^6 records across real processes.

```
producer ──► ring ──┬─► consumer a   (reads everything, checks order and bodies)
                    ├─► consumer b   (same)
                    └─► victim       (slow; SIGKILLed mid-stream, then detached)
```

The victim's death must not stall the pipeline once the supervisor (the test) detaches it,
and a and b must still see every record exactly once, in order, with intact bodies.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from typing import Any

import pytest

from shm import Ring, StructCodec, wait_strategy

N = 1_000_000
CODEC = StructCodec("3q")


def body(seq: int) -> tuple[int, int, int]:
    return (seq, seq * 7919 % 1_000_003, -seq)


def produce(instance: str) -> None:
    ring = Ring.attach(instance, "stress", CODEC)
    producer = ring.producer(wait_strategy("sleep", max_sleep_s=0.001))
    for lo in range(0, N, 256):
        producer.publish_batch([body(i) for i in range(lo, min(N, lo + 256))])
    producer.close()


def consume(instance: str, name: str, out: Any) -> None:
    ring = Ring.attach(instance, "stress", CODEC)
    consumer = ring.consumer(name, wait_strategy("sleep", max_sleep_s=0.001))
    expect, bad = 0, 0
    while expect < N:
        for item in consumer.take(512, timeout_s=30):
            if item != body(expect):
                bad += 1
            expect += 1
    out.put((name, expect, bad, consumer.poll() is None))


def consume_slowly(instance: str) -> None:
    ring = Ring.attach(instance, "stress", CODEC)
    consumer = ring.consumer("victim", wait_strategy("sleep"))
    while True:
        consumer.take(64, timeout_s=30)
        time.sleep(0.0005)


@pytest.mark.stress
def test_three_consumers_one_killed_and_detached(instance: str) -> None:
    ring = Ring.create(instance, "stress", CODEC, capacity=4096, consumers=["a", "b", "victim"])
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    victim = ctx.Process(target=consume_slowly, args=(instance,))
    procs = [
        ctx.Process(target=consume, args=(instance, "a", out)),
        ctx.Process(target=consume, args=(instance, "b", out)),
        victim,
        ctx.Process(target=produce, args=(instance,)),
    ]
    for p in procs:
        p.start()
    try:
        victim_index = ring.consumer_index("victim")
        deadline = time.monotonic() + 60
        while ring.info().consumers[victim_index].sequence < 20_000:
            assert time.monotonic() < deadline, "victim made no progress"
            time.sleep(0.01)
        os.kill(victim.pid or 0, signal.SIGKILL)
        victim.join(10)
        # The supervisor's view: pid gone, records pending, so detach it.
        info = ring.info().consumers[victim_index]
        assert not info.pid_alive and info.lag > 0
        ring.detach_consumer(victim_index)

        results = sorted(out.get(timeout=240) for _ in range(2))
        assert results == [("a", N, 0, True), ("b", N, 0, True)]
        assert ring.cursor() == N
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
            p.join(10)
