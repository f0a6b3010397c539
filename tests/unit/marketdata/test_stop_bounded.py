"""A stop (SIGTERM, a test's teardown) ends within ``STOP_GRACE_S`` though a client stopped
reading.

websockets closes each connection of a closing server with 1001 and waits for it to close;
behind a full socket that took 5 s here (its ``close_timeout`` is 2 s), and the server's
``wait_closed`` has no deadline of its own. ``MarketDataServer.stop`` gives the connections
``STOP_GRACE_S`` to take their close frames, then aborts what is left.
"""

from __future__ import annotations

import asyncio
import time

import uvloop

from procs.marketdata.server import STOP_GRACE_S

from .rig import running
from .test_adversarial_ws import TIGHT, fill_socket
from .test_review4_ws_bugs import raw_ws


def test_a_stop_ends_though_a_client_never_reads(instance: str) -> None:
    took: list[float] = []

    async def main() -> None:
        # no keepalive: nothing but the stop can end the stalled connection
        async with running(instance, server={**TIGHT, "ping_interval_s": None}) as rig:
            server = rig.process.server
            sock = await raw_ws(rig.port, "/ws/btc-usd@trade")
            try:
                (client,) = server.clients
                await fill_socket(rig, client.conn.transport)
                started = time.monotonic()
                await asyncio.wait_for(server.stop(), 10 * STOP_GRACE_S)
                took.append(time.monotonic() - started)
                assert not server.clients
            finally:
                sock.close()

    uvloop.run(main())
    assert took and took[0] < STOP_GRACE_S + 1.0, took
