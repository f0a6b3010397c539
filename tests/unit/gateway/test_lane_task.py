"""A fast-lane connection has one task (``FastLane._answer``) for all its requests, not one
per request; it ends when the connection closes or goes to aiohttp, and never lingers. And
the answers' header lines, made once per header set, stay right past the sets kept."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from procs.gateway import fast_request
from procs.gateway.rest import RestApi
from procs.gateway.rest_public import json_response
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import client, request, rest_exchange, run, statuses
from tests.unit.gateway.test_rest_fast_lane import BODY, _order_request


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


def _lane_tasks() -> list[asyncio.Task[object]]:
    return [
        t
        for t in asyncio.all_tasks()
        if getattr(t.get_coro(), "__qualname__", "") == "FastLane._answer" and not t.done()
    ]


async def _settled() -> None:
    for _ in range(20):  # a close reaches the protocol a loop pass or two later
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("end", ["the client closes", "a route for aiohttp"])
def test_one_task_answers_every_request_of_a_connection_and_ends_with_it(
    harness: Harness, end: str
) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            before = set(_lane_tasks())  # the client's own connections' tasks
            reader, writer = await asyncio.open_connection("127.0.0.1", api.port)

            async def answer() -> bytes:
                head = await reader.readuntil(b"\r\n\r\n")
                assert statuses(head) == [200], head
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                return await reader.readexactly(length)

            tasks = []
            for n in range(4):
                body = BODY.format(f"task{n}").encode()
                writer.write(_order_request(alice.headers("POST", "/api/v1/order", "", body), body))
                assert json.loads(await answer())["clientOrderId"] == f"task{n}"
                tasks.append(set(_lane_tasks()))
            (mine,) = tasks[0] - before  # the connection's task, waiting for more
            assert all(t == tasks[0] for t in tasks)  # the same one for each request
            if end == "the client closes":
                writer.close()
            else:
                writer.write(request(b"GET /api/v1/ping HTTP/1.1"))
                assert json.loads(await answer()) == {}
            await _settled()
            assert mine.done() and not mine.cancelled()  # ended, not left waiting
            writer.close()
        finally:
            await alice.close()

    run(harness, scenario)


def test_header_sets_past_the_cache_are_written_right_and_not_kept() -> None:
    """``response_bytes`` keeps the header lines of up to ``MAX_HEADER_SETS`` header sets;
    an answer with a set past that (a Retry-After of its own) is written the same way."""
    fast_request._header_lines.clear()
    for n in range(fast_request.MAX_HEADER_SETS + 5):
        response = json_response({"code": -1003, "msg": "slow down"}, 429)
        response.headers["Retry-After"] = str(n)
        raw = fast_request.response_bytes(response, keep_alive=n % 2 == 0)
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert lines[0] == b"HTTP/1.1 429 Too Many Requests"
        assert b"Retry-After: %d" % n in lines and b"Content-Type: application/json" in lines
        assert (b"Connection: close" in lines) == (n % 2 == 1)
        assert json.loads(body) == {"code": -1003, "msg": "slow down"}
    assert len(fast_request._header_lines) == fast_request.MAX_HEADER_SETS
