"""A napping gateway is woken by a record on its input rings: parked after ``park_after_ms``
idle, and in the short naps before it, it still reports at once a fill that no client of its
own caused (the event on the matcher's ring wakes it, not the nap's timer)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from procs.common.records import NewOrder
from procs.common.types import OrdType, Side, StpMode, TimeInForce
from procs.gateway import server
from tests.unit.gateway.harness import FUNDER, Client, Harness, close_all, config
from tests.unit.gateway.test_gateway import order


@pytest.mark.parametrize(
    ("park_after_ms", "nap"),
    [(20, "PARKED_NAP_S"), (3_600_000, "IDLE_NAP_S")],
    ids=["parked", "short-naps"],
)
def test_a_napping_gateway_wakes_for_a_fill_from_elsewhere(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, park_after_ms: int, nap: str
) -> None:
    """Before the short naps waited for their 1 ms timer: an answer later than the spin
    window went out up to a millisecond late (``IDLE_NAP_S`` stretched to 30 s shows it)."""
    monkeypatch.setattr(server, nap, 30.0)  # only the ring can end the nap in time
    h = Harness(config(instance, tmp_path, park_after_ms=park_after_ms))
    h.add_user("ALICE", "secret", 7)
    h.fund(7)
    h.fund(8)

    async def main() -> None:
        port = await h.start()
        alice = Client("ALICE")
        try:
            await alice.connect(port)
            await alice.logon()
            await alice.send("D", *order("s1", "2", "1.00", "100.00"))
            assert (await alice.expect("8")).get(150) == b"0"  # New, resting
            gateway = h.gateway
            assert gateway is not None and gateway._waker is not None
            # nothing happens: the poll loop naps; past park_after_ms the naps are parked
            # ones (a short nap seen earlier may end by its 1 ms timer, not by the ring)
            await asyncio.sleep(0.1)
            deadline = time.monotonic() + 5.0
            while not gateway._waker.armed:
                assert time.monotonic() < deadline, "the gateway did not nap"
                await asyncio.sleep(0.05)
            woken = gateway._waker.wakeups
            # account 8 buys through another gateway (the admin ring here): only the matcher's
            # output ring tells this gateway about ALICE's fill
            h.funder.publish(
                NewOrder(
                    *(0, time.time_ns(), FUNDER, 1, 1, 8, 1, 0, Side.BUY, OrdType.LIMIT),
                    *(TimeInForce.IOC, 0, StpMode.NONE, 20_000, 100, 0, 0),
                )
            )
            sent = time.monotonic()
            fill = await alice.expect("8", timeout=10.0)
            assert (fill.get(150), fill.get(39), fill.get(14)) == (b"F", b"2", b"1.00")
            assert time.monotonic() - sent < 5.0  # not left to the parked nap's end
            assert gateway._waker.wakeups > woken
        finally:
            await close_all()
            await h.stop()
            h.close()

    asyncio.run(asyncio.wait_for(main(), 20))
