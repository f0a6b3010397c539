"""A gateway with many sessions logged on writes, after a batch of events, only the
connections whose session got something to say: a pass that visited every connection cost
each order ~0.6 us per session logged on (300 idle sessions: 345 -> 520 us of gateway CPU per
order at 1k orders/s), so 1,000 sessions would have capped a gateway near 1.5k orders/s."""

from __future__ import annotations

from pathlib import Path

from procs.gateway.connection import Connection
from tests.unit.gateway.harness import Client, Harness, config

from .test_gateway import logged_on, order, run

IDLE = 20


def test_a_batch_of_events_writes_only_the_sessions_it_concerns(
    instance: str, tmp_path: Path
) -> None:
    h = Harness(config(instance, tmp_path, max_sessions=IDLE + 2))
    h.add_user("ALICE", "secret", 7)
    h.fund(7)
    for k in range(IDLE):
        h.add_user(f"IDLE{k}", "secret", 100 + k)
    writes: list[Connection] = []  # by a pass of the poll loop (the timers write all)
    pumping = [False]
    original = Connection.write

    def counted(conn: Connection) -> None:
        if pumping[0]:
            writes.append(conn)
        original(conn)

    async def scenario(h: Harness, port: int) -> None:
        idle = [await logged_on(port, f"IDLE{k}") for k in range(IDLE)]
        alice = await logged_on(port)
        gateway = h.gateway
        assert gateway is not None
        pump = gateway.pump

        def pump_counted() -> int:
            pumping[0] = True
            try:
                return pump()
            finally:
                pumping[0] = False

        gateway.pump = pump_counted  # type: ignore[method-assign]
        Connection.write = counted  # type: ignore[method-assign, assignment]
        try:
            await alice.send("D", *order("o1", "1", "1.00", "100.00"))
            ack = await alice.expect("8")
            assert ack.get(150) == b"0"  # written by a pass of the poll loop
        finally:
            Connection.write = original  # type: ignore[method-assign]
        written = {c.session.comp_id for c in writes if c.session is not None}
        assert written == {"ALICE"}, written
        # and an idle session still gets what is its own: a heartbeat it asks for
        await idle[0].send("1", (112, b"ping"))
        beat = await idle[0].expect("0")
        assert beat.get(112) == b"ping"
        assert all(isinstance(c, Client) for c in idle)

    try:
        run(h, scenario)
    finally:
        h.close()
