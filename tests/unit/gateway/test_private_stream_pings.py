"""A private stream's pings: answered with their pongs, and counted with the client's other
frames (``MAX_CLIENT_FRAMES_PER_S``). Before, aiohttp answered them inside its receive
(``autoping``), uncounted: a client could have the gateway's loop answer pings without a
bound while its data frames were limited."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from procs.gateway import private_stream
from procs.gateway.private_stream import MAX_CLIENT_FRAMES_PER_S
from procs.gateway.rest import RestApi
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import client, rest_exchange, run

#: Pings a client sends in a burst: past the limit however fast the gateway reads them (its
#: bucket refills 5,000 a second while it reads; it reads many times faster).
FLOOD = 4 * MAX_CLIENT_FRAMES_PER_S


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


async def _pongs_and_close(
    ws: aiohttp.ClientWebSocketResponse, timeout_s: float
) -> tuple[list[bytes], tuple[int, str] | None]:
    """The pongs the stream sent within ``timeout_s``, until its close, and that close's
    (code, reason), or None when it stayed open (its text messages are skipped)."""
    pongs: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            msg = await ws.receive(timeout=left)
        except TimeoutError:
            break
        if msg.type is aiohttp.WSMsgType.PONG:
            pongs.append(msg.data)
        elif msg.type is aiohttp.WSMsgType.CLOSE:
            return pongs, (int(msg.data), str(msg.extra))
        elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            return pongs, (ws.close_code or 0, "")
    return pongs, None


def test_a_few_pings_get_their_pongs(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            ws = await alice.session.ws_connect(alice.stream_url(), autoping=False)
            for n in range(3):
                await ws.ping(b"ping %d" % n)
            pongs, closed = await _pongs_and_close(ws, 1.0)
            assert pongs == [b"ping 0", b"ping 1", b"ping 2"] and closed is None, closed
            await ws.close()
        finally:
            await alice.close()

    run(harness, scenario)


class _FrozenNs:
    """``time`` for ``private_stream`` with ``monotonic_ns`` stopped at its first reading
    (the stream's signature check, after the gateway started: its start is judged on that
    clock, review 282): the frame budget never refills, so the flood passes it however
    slowly a loaded machine reads it."""

    def __init__(self) -> None:
        self.ns = 0

    def monotonic_ns(self) -> int:
        self.ns = self.ns or time.monotonic_ns()
        return self.ns

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)


def test_a_flood_of_pings_is_closed_naming_the_limit(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(private_stream, "time", _FrozenNs())

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            ws = await alice.session.ws_connect(alice.stream_url(), autoping=False)
            with contextlib.suppress(ConnectionError):  # closed while they are sent
                for _ in range(FLOOD):
                    await ws.ping()
            pongs, closed = await _pongs_and_close(ws, 10.0)
            assert closed is not None, f"{FLOOD} pings, {len(pongs)} pongs: still open"
            code, reason = closed
            assert code == 1008, closed
            assert f"the limit is {MAX_CLIENT_FRAMES_PER_S}/s" in reason, reason
            assert "pings included" in reason, reason
            assert MAX_CLIENT_FRAMES_PER_S <= len(pongs) < FLOOD, len(pongs)
        finally:
            await alice.close()

    run(harness, scenario)
