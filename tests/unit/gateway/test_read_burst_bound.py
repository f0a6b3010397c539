"""A client far ahead of the exchange is not read faster than the gateway paces it.

A read's commands were published at the end of the event loop's pass (``submit``), and only
that publish paced the intake; but libuv reads a readable socket again and again (up to 32
times) before the pass goes on. A client whose kernel buffers were full (it was paced while
it kept sending) was read megabytes at a time: at 40k orders/s offered, 300k orders in one
pass, one order log frame of 79 MB, over the log's 64 MiB, and the gateway stopped. Now once
``burst_limit`` commands wait, a read publishes at once and the pacing stops the reads in
progress (``connections.py``).

The router is stopped (``Harness.pause``) so the ring fills and the commands stay waiting.
The reads are made as libuv makes them from a socket whose kernel buffer holds megabytes (a
test's loopback socket never gets its window that large): one after another in one pass,
while each fills the loop's buffer and the socket is still read. Each read (``after_input``)
notes how many commands waited before it and how many it added.
"""

from __future__ import annotations

from pathlib import Path

from tests.unit.gateway.harness import Harness, run_scenario, settled, small_ring_exchange
from tests.unit.gateway.test_adversarial_fix import logged_on, order

CAPACITY = 256  # burst_limit: a quarter of it
ORDERS = 6_000  # ~0.9 MB sent at once: many reads' worth
READ_BYTES = 256 * 1024  # uvloop's read buffer


def test_reads_stop_once_a_burst_of_commands_waits(instance: str, tmp_path: Path) -> None:
    h = small_ring_exchange(instance, tmp_path, CAPACITY, max_open_orders=10 * ORDERS)

    async def scenario(h: Harness, port: int) -> None:
        gw = h.gateway
        assert gw is not None
        alice = await logged_on(port, "ALICE")
        reads: list[tuple[int, int]] = []  # (commands waiting before the read, after it)
        after_input = gw.after_input
        outgoing = gw.entry.outgoing
        last = 0

        def noted(conn: object) -> None:
            nonlocal last
            reads.append((last, len(outgoing)))
            after_input(conn)  # type: ignore[arg-type]
            last = len(outgoing)

        gw.after_input = noted  # type: ignore[method-assign]  # a spy on the instance
        h.pause()  # the router takes nothing: the ring fills, the commands wait
        burst = b"".join(
            bytes(alice.message("D", *order(f"b{k}".encode(), "1", "0.01", "1.00")).encode())
            for k in range(ORDERS)
        )
        (conn,) = gw.connections
        transport = conn.transport
        assert transport is not None
        # libuv's reads of one readable socket in one pass of the loop, as it makes them: the
        # next while the last filled the loop's buffer and the socket is still being read
        for at in range(0, len(burst), READ_BYTES):
            if not transport.is_reading():
                break
            conn.data_received(burst[at : at + READ_BYTES])
        await settled(lambda: gw.pacing.paused)
        most_read = max(after - before for before, after in reads)
        most_waiting = max(after for _, after in reads)
        assert most_waiting <= gw.burst_limit + most_read, (
            f"{most_waiting} commands waited at once, over burst_limit {gw.burst_limit} + "
            f"one read's {most_read}: reads went on past the pacing ({len(reads)} reads)"
        )
        # (not drained: the in-loop router and matcher would wait on each other's rings)

    run_scenario(h, scenario, 30)
