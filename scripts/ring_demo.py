"""`make ring-demo`: the shm substrate on its own, a three-process pipeline over rings.

```
gateway-like producer ──orders──► relay (decode NewOrder, encode Accepted) ──events──► sink
```

It creates the rings under the profile's instance prefix, runs for ``--seconds``, prints
records per second and what ``ringex shm ls`` would show, then removes its segments.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from typing import Any

from config import load_profile
from config.schema import RingexConfig
from procs.common.record_codec import RecordCodec
from procs.common.records import Accepted, NewOrder
from procs.common.types import OrdType, Side, StpMode, TimeInForce
from shm import Ring
from shm.inspect import remove_instance

CODEC = RecordCodec()


def gateway(cfg: RingexConfig, stop: Any) -> None:
    ring = Ring.attach(cfg.instance, "orders", CODEC)
    producer = ring.producer(cfg.wait.build())
    n = 0
    while not stop.is_set():
        batch = [
            NewOrder(
                seq=0,
                ts_ns=time.time_ns(),
                gateway=1,
                session=1,
                client_ref=n + k,
                account=1 + k % 7,
                symbol=1,
                order_id=0,
                side=Side.BUY if k % 2 else Side.SELL,
                ord_type=OrdType.LIMIT,
                tif=TimeInForce.GTC,
                flags=0,
                stp=StpMode.NONE,
                price=10_000 + k % 50,
                qty=1 + k % 9,
                stop_price=0,
                display_qty=0,
            )
            for k in range(64)
        ]
        producer.publish_batch(batch)
        n += len(batch)
    producer.close()


def relay(cfg: RingexConfig, stop: Any) -> None:
    inbound = Ring.attach(cfg.instance, "orders", CODEC).consumer("relay", cfg.wait.build())
    outbound = Ring.attach(cfg.instance, "events", CODEC).producer(cfg.wait.build())
    seq = 0
    while not stop.is_set():
        events = []
        for order in inbound.take(256, timeout_s=0.1):
            assert isinstance(order, NewOrder)
            seq += 1
            events.append(
                Accepted(
                    seq=seq,
                    ts_ns=time.time_ns(),
                    gateway=order.gateway,
                    session=order.session,
                    client_ref=order.client_ref,
                    account=order.account,
                    symbol=order.symbol,
                    order_id=seq,
                    side=order.side,
                    price=order.price,
                    qty=order.qty,
                )
            )
        if events:
            outbound.publish_batch(events)


def sink(cfg: RingexConfig, stop: Any, out: Any) -> None:
    consumer = Ring.attach(cfg.instance, "events", CODEC).consumer("sink", cfg.wait.build())
    count = 0
    while not stop.is_set():
        count += len(consumer.take(1024, timeout_s=0.1))
    out.put(count)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="dev")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    cfg = load_profile(args.profile)
    cfg = RingexConfig(instance=f"{cfg.instance}demo{os.getpid()}", ring=cfg.ring, wait=cfg.wait)
    rings = [
        Ring.create(cfg.instance, name, CODEC, capacity=cfg.ring.capacity, consumers=[consumer])
        for name, consumer in (("orders", "relay"), ("events", "sink"))
    ]
    ctx = mp.get_context("fork")
    stop, out = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=sink, args=(cfg, stop, out), name="sink"),
        ctx.Process(target=relay, args=(cfg, stop), name="relay"),
        ctx.Process(target=gateway, args=(cfg, stop), name="gateway"),
    ]
    print(
        f"instance {cfg.instance}: 3 processes, rings of {cfg.ring.capacity} x "
        f"{CODEC.slot_size}-byte slots, wait strategy {cfg.wait.strategy!r}"
    )
    try:
        for p in procs:
            p.start()
        time.sleep(args.seconds)
        for ring in rings:
            info = ring.info()
            lags = ", ".join(f"{c.name} lag {c.lag}" for c in info.consumers)
            print(f"  ring {info.name}: {info.cursor:,} records published; {lags}")
        stop.set()
        delivered = out.get(timeout=10)
        print(f"delivered {delivered:,} records end to end: {delivered / args.seconds:,.0f}/s")
    finally:
        stop.set()
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
        remove_instance(cfg.instance)
    return 0


if __name__ == "__main__":
    sys.exit(main())
