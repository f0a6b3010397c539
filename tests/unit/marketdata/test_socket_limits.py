"""One address's silent sockets: counted from their accept against its own share, so a peer
that opens connections and never sends a handshake cannot hold every socket of the feed
until websockets' ``open_timeout`` (the total's limit alone let one address take them all)."""

from __future__ import annotations

import asyncio
import contextlib

from .rig import running


def test_one_address_holds_its_share_of_sockets_and_a_margin(instance: str) -> None:
    async def body() -> None:
        async with running(instance, max_connections=8) as rig:
            server = rig.process.server
            assert (server.per_address, server.max_sockets_per_address) == (2, 3)
            assert server.max_sockets == 10
            writers = []
            for _ in range(8):  # silent: no handshake sent
                _, writer = await asyncio.open_connection("127.0.0.1", rig.port)
                writers.append(writer)
            await asyncio.sleep(0.2)
            try:
                assert server.sockets == 3 and server.by_address == {"127.0.0.1": 3}
                assert server.refused == 5
            finally:
                for writer in writers:
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()

    asyncio.run(body())
