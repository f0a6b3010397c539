"""The router settles up to a whole ring of a matcher's events per step, not one read.

A step takes up to ``router_batch`` commands and each makes several events, so a step that
settled one read (``SETTLE_BATCH``) fell behind under load: on a 16-core host the router's
lag on the matcher's output ring sat near its capacity, the matcher stopped on the full
ring, and the pipeline fell from 70k orders/s to 40k with no process busy.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from config.schema import RingConfig
from procs.common.types import Side
from procs.router.applied import SETTLE_BATCH
from tests.unit.router.test_router import Exchange, config, fund, order


def test_one_settle_takes_every_event_a_full_ring_holds(instance: str, tmp_path: Path) -> None:
    base = config(instance, tmp_path)
    cfg = msgspec.structs.replace(
        base,
        ring=RingConfig(capacity=4 * SETTLE_BATCH),
        risk=msgspec.structs.replace(base.risk, max_open_orders=100_000),
        router_batch=3 * SETTLE_BATCH,  # a third of it for each of three gateway rings
    )
    ex = Exchange(cfg)
    try:
        fund(ex, 7, usd=10**12, btc=0)
        orders = SETTLE_BATCH * 3 // 4  # within the matcher's limit: taken in one step
        ex.gateways[1].publish_batch(
            [order(10_000 + k, 7, Side.BUY, 100 + k, 1) for k in range(orders)]
        )
        assert ex.router.step(timeout_s=0.001) == orders
        while ex.matcher.step(timeout_s=0.001):  # the matcher alone: nothing settled yet
            for tap in ex.taps:
                tap.read(4096)
        source = ex.router.from_matchers[0]
        waiting = source.ring.cursor() - source.sequence
        assert waiting > SETTLE_BATCH  # an accept and a level change an order
        assert ex.router.settle() == waiting
        assert source.ring.cursor() == source.sequence
        assert ex.router.sequencer.accounts.open_orders(7) == orders
    finally:
        ex.stop()
