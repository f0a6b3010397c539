"""CORS on the REST port, on the fast lane's order route and aiohttp's routes alike: an
allowed Origin is answered with ``Access-Control-Allow-Origin`` (``*`` when any is), an
Origin not listed without it, a preflight ``OPTIONS`` with the methods and headers a page
may use; and, with a list of origins, every answer says ``Vary: Origin``, so a shared cache
never serves one origin's answer to another (or to a request with none)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from config.edges import RestConfig
from config.schema import DatabaseConfig
from procs.gateway.rest import RestApi
from procs.gateway.signing import API_KEY, SIGNATURE, TIMESTAMP
from tests.unit.gateway.harness import Harness, config
from tests.unit.gateway.rest_rig import ALICE, exchange, request, run, statuses

PAGE = "https://page.example"
BODY = b"symbol=BTC-USD&side=BUY&type=LIMIT&price=100.00&quantity=0.10"
ROUTES = {  # the fast lane's, and aiohttp's
    "order": (b"POST /api/v1/order HTTP/1.1", b"Content-Length: %d" % len(BODY), BODY),
    "ping": (b"GET /api/v1/ping HTTP/1.1", b"X-None: 0", b""),
}


def _harness(instance: str, tmp_path: Path, origins: list[str]) -> Iterator[Harness]:
    rest = RestConfig(port=0, cors_origins=origins)
    cfg = config(instance, tmp_path, rest=rest)
    h = Harness(msgspec.structs.replace(cfg, database=DatabaseConfig(enabled=False)))
    h.add_user("ALICE", "alice-pw", ALICE)
    yield h
    h.close()


@pytest.fixture
def listed(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from _harness(instance, tmp_path, [PAGE])


@pytest.fixture
def anyone(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from _harness(instance, tmp_path, ["*"])


def _headers(raw: bytes) -> dict[str, str]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    return {k.lower(): v for k, _, v in (line.partition(": ") for line in head.split("\r\n")[1:])}


async def _ask(api: RestApi, route: str, *extra: bytes) -> tuple[int, dict[str, str]]:
    line, header, body = ROUTES[route]
    raw = await exchange(api.port, request(line, header, b"Connection: close", *extra, body=body))
    return statuses(raw)[0], _headers(raw)


@pytest.mark.parametrize("route", ROUTES)
def test_a_listed_origin_is_allowed_and_every_answer_varies_by_origin(
    listed: Harness, route: str
) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        _, mine = await _ask(api, route, f"Origin: {PAGE}".encode())
        assert mine["access-control-allow-origin"] == PAGE
        assert mine["vary"] == "Origin"
        _, other = await _ask(api, route, b"Origin: https://elsewhere.example")
        assert "access-control-allow-origin" not in other and other["vary"] == "Origin"
        _, none = await _ask(api, route)
        assert "access-control-allow-origin" not in none and none["vary"] == "Origin"

    run(listed, scenario)


@pytest.mark.parametrize("route", ROUTES)
def test_any_origin_is_answered_with_a_star_that_does_not_vary(anyone: Harness, route: str) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        _, answer = await _ask(api, route, f"Origin: {PAGE}".encode())
        assert answer["access-control-allow-origin"] == "*"
        assert "vary" not in answer
        assert "Retry-After" in answer["access-control-expose-headers"]

    run(anyone, scenario)


def test_a_preflight_is_answered_with_what_a_page_may_send(listed: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        raw = await exchange(
            api.port,
            request(
                b"OPTIONS /api/v1/order HTTP/1.1",
                f"Origin: {PAGE}".encode(),
                b"Access-Control-Request-Method: DELETE",
                b"Connection: close",
            ),
        )
        assert statuses(raw) == [204], raw
        answer = _headers(raw)
        assert answer["access-control-allow-origin"] == PAGE
        assert "DELETE" in answer["access-control-allow-methods"]
        allowed = {h.strip().lower() for h in answer["access-control-allow-headers"].split(",")}
        assert {API_KEY.lower(), SIGNATURE.lower(), TIMESTAMP.lower()} <= allowed
        assert answer["vary"] == "Origin"

    run(listed, scenario)
