"""exchangeInfo's per-symbol ``status``: the market-data process's (``/api/symbols``), and
``UNKNOWN`` rather than a guess when that process is disabled, hangs or answers nonsense
(``rest_rig.py``: real HTTP in front of real rings; a stand-in market-data server)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from procs.gateway import rest_public
from procs.gateway.rest import RestApi
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import rest_exchange, run


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


async def statuses(url: str) -> dict[str, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{url}/api/v1/exchangeInfo") as reply,
    ):
        assert reply.status == 200, await reply.text()
        return {s["symbol"]: s["status"] for s in (await reply.json())["symbols"]}


@asynccontextmanager
async def market_data(
    api: RestApi, answer: bytes, release: asyncio.Event | None = None, hits: list[int] | None = None
) -> AsyncIterator[None]:
    """A stand-in market-data process, the gateway's for the block, answering every request
    with ``answer`` (once ``release`` is set, when one is given), counting them in ``hits``."""

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            if hits is not None:
                hits.append(1)
            if release is not None:
                await release.wait()
            head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(answer)}\r\n"
            writer.write(head.encode() + b"Content-Type: application/json\r\n\r\n" + answer)
            await writer.drain()
        except ConnectionError:
            pass  # the gateway gave up waiting
        finally:
            writer.close()

    server = await asyncio.start_server(reply, "127.0.0.1", 0)
    api.market_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield
    finally:
        if release is not None:
            release.set()
        server.close()
        await asyncio.sleep(0.05)  # a released handler writes into the closed socket, closes


def test_a_halted_symbol_says_halt(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        body = b'[{"symbol": "BTC-USD", "stream": "btcusd", "status": "HALT"}]'
        async with market_data(api, body):
            assert await statuses(url) == {"BTC-USD": "HALT"}

    run(harness, scenario)


def test_without_market_data_the_status_is_unknown(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        api.market_url = None  # disabled
        assert await statuses(url) == {"BTC-USD": "UNKNOWN"}
        async with market_data(api, b"<html>not json</html>"):
            assert await statuses(url) == {"BTC-USD": "UNKNOWN"}

    run(harness, scenario)


def test_a_hung_market_data_process_delays_exchange_info_a_second_at_most(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rest_public, "STATUS_TIMEOUT_S", 0.3)

    async def scenario(api: RestApi, url: str) -> None:
        async with market_data(api, b"[]", asyncio.Event()):
            start = time.monotonic()
            assert await statuses(url) == {"BTC-USD": "UNKNOWN"}
            assert time.monotonic() - start < 5

    run(harness, scenario)


def test_callers_share_one_fetch_and_its_answer_for_a_moment(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twenty exchangeInfo calls at once ask market data once; a halt shows once the
    answer's STATUS_TTL_S has passed (a second: the next call, a request of its own, comes
    within it on a loaded machine too)."""
    monkeypatch.setattr(rest_public, "STATUS_TTL_S", 1.0)

    async def scenario(api: RestApi, url: str) -> None:
        hits: list[int] = []
        trading = b'[{"symbol": "BTC-USD", "stream": "btcusd", "status": "TRADING"}]'
        release = asyncio.Event()
        async with market_data(api, trading, release, hits):
            calls = [asyncio.ensure_future(statuses(url)) for _ in range(20)]
            await asyncio.sleep(0.2)  # every call waits on the one fetch
            release.set()
            assert await asyncio.gather(*calls) == [{"BTC-USD": "TRADING"}] * 20
            assert await statuses(url) == {"BTC-USD": "TRADING"}  # the answer, again
            assert len(hits) == 1
        halted = b'[{"symbol": "BTC-USD", "stream": "btcusd", "status": "HALT"}]'
        async with market_data(api, halted, None, hits):
            await asyncio.sleep(1.05)
            assert await statuses(url) == {"BTC-USD": "HALT"}
            assert len(hits) == 2

    run(harness, scenario)


def test_an_unreachable_market_data_is_not_waited_on_again_at_once(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a fetch timed out, exchangeInfo says UNKNOWN at once for STATUS_RETRY_S, then
    asks again (at once: well inside the fetch's timeout, which a wait would have taken)."""
    monkeypatch.setattr(rest_public, "STATUS_TIMEOUT_S", 1.0)
    monkeypatch.setattr(rest_public, "STATUS_RETRY_S", 2.0)

    async def scenario(api: RestApi, url: str) -> None:
        hits: list[int] = []
        async with market_data(api, b"[]", asyncio.Event(), hits):  # never answers
            assert await statuses(url) == {"BTC-USD": "UNKNOWN"}
            start = time.monotonic()
            assert await statuses(url) == {"BTC-USD": "UNKNOWN"}
            assert time.monotonic() - start < 0.8 and len(hits) == 1
        body = b'[{"symbol": "BTC-USD", "stream": "btcusd", "status": "TRADING"}]'
        async with market_data(api, body, None, hits):
            await asyncio.sleep(2.0)
            assert await statuses(url) == {"BTC-USD": "TRADING"}
            assert len(hits) == 2

    run(harness, scenario)
