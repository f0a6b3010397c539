"""A private stream's upgrade refused: an HTTP error by default (scripts read its body), the
close of a taken upgrade with ``closeOnRefusal=true`` (a browser reads the close's reason,
never a refused handshake's body), over real HTTP in front of real rings."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import msgspec
import pytest

from procs.gateway.rest import RestApi
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import client, rest_exchange, run


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


def test_a_refused_upgrade_is_a_close_naming_why_when_asked(harness: Harness) -> None:
    run(harness, _refusals)


async def _refusals(api: RestApi, url: str) -> None:
    alice = await client(url, "ALICE", "alice-pw")
    api.streams.max_per_key = 1
    try:
        first = await alice.stream()
        assert msgspec.json.decode((await first.receive(timeout=5)).data)["event"] == "snapshot"
        # by default, the HTTP error a script reads, as before
        async with alice.session.get(alice.stream_url()) as r:
            body = await r.json()
            assert r.status == 429 and r.headers["Retry-After"], body
            assert "holds 1 private streams, the limit is 1" in body["msg"], body
        # asked, a limit is the close 1013 (try again later) with the code and the message
        ws = await alice.session.ws_connect(alice.stream_url() + "&closeOnRefusal=true")
        msg = await ws.receive(timeout=5)
        assert msg.type is aiohttp.WSMsgType.CLOSE, msg
        assert ws.close_code == 1013, ws.close_code
        assert msg.extra == "-1003 this API key holds 1 private streams, the limit is 1"
        assert api.streams.count == 1  # the refused one never held a slot
        # a refusal of the credentials is 1008 (policy), naming the field
        bad = alice.stream_url().replace("apiKey=", "apiKey=x") + "&closeOnRefusal=true"
        ws = await alice.session.ws_connect(bad)
        msg = await ws.receive(timeout=5)
        assert ws.close_code == 1008 and "apiKey" in str(msg.extra), (ws.close_code, msg.extra)
        # a request that is no upgrade gets the HTTP error all the same
        async with alice.session.get(alice.stream_url() + "&closeOnRefusal=true") as r:
            assert r.status == 429 and (await r.json())["code"] == -1003
        await first.close()
        for _ in range(300):  # its slot given back
            if not api.streams.count:
                break
            await asyncio.sleep(0.01)
        # the stream is taken as ever once under the limit, the parameter changing nothing
        again = await alice.session.ws_connect(alice.stream_url() + "&closeOnRefusal=true")
        assert msgspec.json.decode((await again.receive(timeout=5)).data)["seq"] == 1
        await again.close()
    finally:
        await alice.close()
