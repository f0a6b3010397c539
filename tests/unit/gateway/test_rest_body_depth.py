"""A JSON body nested deep inside an object's value, on every path that reads one (the
fast lane's order, aiohttp's routes, a batch, the login, a public route): a 400 {code, msg},
never a 500. Real HTTP in front of real rings (``rest_rig.py``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from procs.gateway.rest import RestApi
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import client, rest_exchange, run


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


def test_a_json_object_whose_value_nests_deep_is_a_400_on_every_path(harness: Harness) -> None:
    """Holds since 2026-12-03: ``{"a": [[[...]]]}`` (the nesting inside a value, 2 KB deep
    at 1,000) was a 500 on every route that reads a JSON body, the fast lane's order, the
    login and the public routes included (``rest_body._out_of_range`` decoded it again and
    let msgspec's RecursionError out), and a batch whose key repeats with such a value was
    one at the depths msgspec passes and Python's json does not (``json_repeats``)."""

    async def answer(c: Any, url: str, path: str, body: bytes, signed: bool) -> tuple[int, str]:
        method = "GET" if path == "/api/v1/ping" else "POST"
        headers = c.headers(method, path, "", body) if signed else {}
        headers["Content-Type"] = "application/json"
        async with c.session.request(method, f"{url}{path}", data=body, headers=headers) as r:
            return r.status, await r.text()

    async def scenario(api: RestApi, url: str) -> None:
        fast = await client(url, "ALICE", "alice-pw")
        handed = await client(url, "ALICE", "alice-pw")
        try:
            sends = [
                (fast, "/api/v1/order", b'{"a":%s}', True),  # never handed to aiohttp
                (handed, "/api/v1/apiKey", b'{"a":%s}', False),  # the login: the first
                (handed, "/api/v1/order", b'{"a":%s}', True),
                (handed, "/api/v1/batchOrders", b'{"batchOrders":"x","batchOrders":%s}', True),
                (handed, "/api/v1/ping", b'{"a":%s}', False),
            ]
            for c, path, body, signed in sends:
                fine = range(600, 1200, 10) if signed else range(100, 3000, 300)
                for depth in sorted({*fine, 3_000}):
                    nested = b"[" * depth + b"]" * depth
                    status, text = await answer(c, url, path, body % nested, signed)
                    assert status == 400 and set(json.loads(text)) == {"code", "msg"}, (
                        path, depth, status, text[:200],
                    )  # fmt: skip
            assert await fast.call("GET", "/api/v1/openOrders") == []
        finally:
            await fast.close()
            await handed.close()

    run(harness, scenario)
