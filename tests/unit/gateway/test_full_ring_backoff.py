"""While the router's ring has no room for the gateway's commands, the poll loop waits for the
router instead of looking again at once: on two cores, a loop that spun there (``sleep(0)``
while ``OrderEntry.outgoing`` held commands) took the core of the router, the one process
that frees the room. The commands it holds all go out, in order, once the router takes them;
the busy-spin strategy still spins.

The router is stopped by ``Harness.pause`` (it runs in the test's loop), so nothing but the
gateway's poll task runs while the ring is full: its passes and the process's CPU time over
a window are the loop's own. The bounds are loose (a pass a millisecond, half a core) against
what was measured here (about 100 passes and 3% of a core; spinning, 11-17 thousand passes).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from config.schema import WaitConfig
from procs.common.records import Record
from procs.gateway.server import IDLE_NAP_S, held_nap_s
from tests.unit.gateway.harness import Client, Harness, run_scenario, settled, small_ring_exchange
from tests.unit.gateway.test_adversarial_fix import logged_on, order

CAPACITY = 256
ORDERS = 400  # more than the ring holds: the rest wait in ``outgoing``
WINDOW_S = 0.5
#: passes of a loop that naps (at most one per 1 ms tick, far fewer once parked) and of one
#: that spins (a pass is tens of microseconds)
MOST_NAPPING, LEAST_SPINNING = int(WINDOW_S * 1000), 2_500


async def _first_reports(c: Client, count: int, timeout_s: float = 10.0) -> list[bytes]:
    """The ClOrdIDs of ``c``'s ExecutionReports in the order each first appears."""
    seen: dict[bytes, None] = {}
    deadline = time.monotonic() + timeout_s
    while len(seen) < count and time.monotonic() < deadline:
        msg = await c.recv(max(0.01, deadline - time.monotonic()))
        if msg is None:
            break
        if msg.get(35) == b"8":
            seen.setdefault(msg.get(11))
    return list(seen)


@pytest.mark.parametrize(
    ("wait", "spins"),
    [(WaitConfig(), False), (WaitConfig(strategy="busy-spin"), True)],
    ids=["blocking-naps", "busy-spin-spins"],
)
def test_a_full_router_ring_is_waited_for_and_its_commands_go_out_in_order(
    instance: str, tmp_path: Path, wait: WaitConfig, spins: bool
) -> None:
    h = small_ring_exchange(
        instance,
        tmp_path,
        CAPACITY,
        wait=wait,
        max_open_orders=10 * ORDERS,  # all accepted
    )

    async def scenario(h: Harness, port: int) -> None:
        gw = h.gateway
        assert gw is not None
        alice = await logged_on(port, "ALICE")
        published: list[tuple[int, list[int]]] = []  # (first ring sequence, client refs)
        record_sent = gw.sent.published

        def sent(
            base: int, created: int, commands: Sequence[Record], images: dict[int, bytes]
        ) -> None:
            published.append((base, [getattr(c, "client_ref", 0) for c in commands]))
            record_sent(base, created, commands, images)

        passes = 0
        pump = gw.pump

        def counted() -> int:
            nonlocal passes
            passes += 1
            return pump()

        gw.sent.published = sent  # type: ignore[method-assign]  # a spy on the instance
        gw.pump = counted  # type: ignore[method-assign]
        h.pause()  # the router takes nothing: its ring fills and stays full
        refs = [f"a{k}".encode() for k in range(ORDERS)]
        ioc = [(59, 3)]  # nobody sells: each is accepted, then cancelled
        await alice.send_raw(
            b"".join(
                bytes(alice.message("D", *order(r, "1", "0.01", "100.00", "2", *ioc)).encode())
                for r in refs
            )
        )
        await settled(lambda: bool(gw.entry.outgoing))
        assert gw.entry.outgoing, "the router's ring never filled"
        ring_at = gw.producer.sequence
        passes, cpu, wall = 0, time.process_time(), time.perf_counter()
        await asyncio.sleep(WINDOW_S)
        passes_in_window = passes
        cpu_share = (time.process_time() - cpu) / (time.perf_counter() - wall)
        assert gw.entry.outgoing and gw.producer.sequence == ring_at, "the ring had room"
        if spins:
            assert passes_in_window >= LEAST_SPINNING, f"busy-spin: {passes_in_window} passes"
        else:
            assert passes_in_window <= MOST_NAPPING, (
                f"{passes_in_window} passes in {WINDOW_S} s while the ring was full"
            )
            assert cpu_share < 0.5, f"{cpu_share:.0%} of a core while the ring was full"

        h.resume_paced()  # the router takes the ring's commands: every held one follows
        assert await _first_reports(alice, ORDERS) == refs
        await settled(lambda: not gw.entry.outgoing and not gw.pacing.paused)
        assert not gw.entry.outgoing
        sequences = [base + i for base, chunk in published for i in range(len(chunk))]
        assert sequences == list(range(sequences[0], sequences[0] + ORDERS))
        client_refs = [ref for _, chunk in published for ref in chunk]
        assert client_refs == sorted(client_refs) and len(set(client_refs)) == ORDERS

    run_scenario(h, scenario, 30)


def test_a_stopped_router_is_waited_for_by_the_strategys_own_bound() -> None:
    """Past ``park_after_ms`` with nothing moving, a nap lasts what the strategy bounds a
    wait by, never less than the loop's 1 ms tick."""
    assert held_nap_s(WaitConfig()) == WaitConfig().park_timeout_s
    assert held_nap_s(WaitConfig(strategy="blocking", park_timeout_s=1e-4)) == IDLE_NAP_S
    assert held_nap_s(WaitConfig(strategy="sleep", max_sleep_s=4e-3)) == 4e-3
    assert held_nap_s(WaitConfig(strategy="yield")) == IDLE_NAP_S
