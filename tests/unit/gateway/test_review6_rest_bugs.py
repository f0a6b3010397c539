"""Bugs a sixth hostile review of the REST API and its OpenAPI document found (``rest_rig.py``:
real HTTP in front of real rings; databases off, except where a test puts the database tests'
private PostgreSQL behind the gateway's history and the database writer in front of it). Each
test fails until its bug is fixed; none repeats what ``test_rest_found_bugs.py``,
``test_review_rest_bugs.py``, ``test_review_rest_auth_bugs.py``, ``test_review4_rest_bugs.py``,
``test_review5_rest_bugs.py`` or ``test_adversarial_rest.py`` already hold."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from config.edges import RestConfig
from config.schema import DatabaseConfig
from procs.dbwriter.writer import DbWriter, WriterOptions
from procs.gateway.rest import RestApi
from tests.unit.gateway.harness import Harness, close_all, config
from tests.unit.gateway.rest_rig import ALICE, LIMIT, client, rest_exchange, run


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    """ALICE (601) with dollars, BOB (602) with bitcoin; REST on, databases off."""
    yield from rest_exchange(instance, tmp_path)


# -- allOrders: the history and the live view ---------------------------------------------------


def _history_exchange(instance: str, tmp_path: Path, dsn: str) -> Harness:
    """The rest_rig exchange with the gateway's history reading ``dsn``."""
    rest = RestConfig(
        port=0, key_rate_per_s=1_000, key_burst=1_000, login_rate_per_s=100, login_burst=100
    )
    cfg = config(instance, tmp_path, rest=rest)
    cfg = msgspec.structs.replace(cfg, database=DatabaseConfig(enabled=True, dsn=dsn))
    h = Harness(cfg)
    h.add_user("ALICE", "alice-pw", ALICE)
    h.fund(ALICE, usd=1_000_000 * 10**6, btc=0)
    return h


def _gateway_run(h: Harness, scenario: Callable[[str], Awaitable[Any]]) -> Any:
    """``scenario(url)`` against a gateway started for it (the router, matcher and rings stay
    up across runs, as when one gateway restarts)."""

    async def main() -> Any:
        await h.start()
        try:
            assert h.gateway is not None and h.gateway.api is not None
            return await asyncio.wait_for(scenario(f"http://127.0.0.1:{h.gateway.api.port}"), 20)
        finally:
            await close_all()
            await h.stop()

    return asyncio.run(main())


def test_all_orders_without_a_start_shows_the_newest_order_placed_a_moment_ago(
    instance: str, tmp_path: Path, dsn: str
) -> None:
    """What is wrong: ``HistoryRoutes.all_orders`` (rest_history.py) without ``orderId`` or
    ``startTime`` asks the database for the newest ``limit`` orders, then adds the open orders
    "accepted since the writer's last batch" only ``if len(out) < limit``. When the database
    already has ``limit`` older orders, an order placed a moment ago (not yet written: the
    writer lags by its batch time) is left out and the answer's newest ``limit`` are older
    orders.
    Spec (README, REST): "allOrders ... answer oldest first: from orderId / fromId or
    startTime when given, else the newest ``limit``"; the live view is merged so a client
    reads its own writes (the handler's own comment).
    Expected: ``allOrders?limit=1`` right after placing an order is that order.
    Actual: the newest order the database writer had written before it."""
    h = _history_exchange(instance, tmp_path, dsn)
    try:

        async def before(url: str) -> int:
            alice = await client(url, "ALICE", "alice-pw")
            try:
                old = await alice.call(
                    "POST", "/api/v1/order", **LIMIT, price="90.00", quantity="0.10"
                )
                return int(old["orderId"])
            finally:
                await alice.close()

        old_id = _gateway_run(h, before)
        writer = DbWriter(h.cfg, dsn, WriterOptions(batch_rows=100, batch_ms=10))
        writer.run(to_end=True)  # the history has the old order, not the next one
        writer.close()

        async def after(url: str) -> tuple[int, list[dict[str, Any]], list[dict[str, Any]]]:
            alice = await client(url, "ALICE", "alice-pw")
            try:
                new = await alice.call(
                    "POST", "/api/v1/order", **LIMIT, price="95.00", quantity="0.10"
                )
                every = await alice.call("GET", "/api/v1/allOrders", symbol="BTC-USD")
                newest = await alice.call("GET", "/api/v1/allOrders", symbol="BTC-USD", limit=1)
                return int(new["orderId"]), every, newest
            finally:
                await alice.close()

        new_id, every, newest = _gateway_run(h, after)
        assert [o["orderId"] for o in every] == [old_id, new_id]  # both are known
        assert [o["orderId"] for o in newest] == [new_id], (
            f"allOrders?limit=1 answered order {[o['orderId'] for o in newest]}, "
            f"not the newest order {new_id}"
        )
    finally:
        h.close()


# -- cancels --------------------------------------------------------------------------------------


def test_cancelling_ones_own_filled_order_says_it_is_filled_not_unknown(harness: Harness) -> None:
    """What is wrong: ``RestApi.cancel_order`` (rest.py) sends the cancel of an order the
    gateway knows to be the caller's and FILLED (``RestOrders.done``: ``GET order`` answers
    it FILLED) to the exchange, and maps the matcher's UNKNOWN_ORDER to "cancel rejected:
    unknown order orderId=N" (``_NOT_YOURS``, meant to hide *another user's* order). The
    client is told its own order does not exist, contradicting the order query, and cannot
    tell "too late, it filled" from "wrong id". The FIX side answers the same cancel with
    CxlRejReason 0 "too late: the order ... is finished" (orders.py ``_cancel_replace``).
    Expected: -2011 whose message says the order is finished (FILLED / too late), not
    "unknown order", whether named by orderId or origClientOrderId.
    Actual: "cancel rejected: unknown order orderId=1" for both."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        try:
            ask = await bob.call(
                "POST", "/api/v1/order", symbol="BTC-USD", side="SELL", type="LIMIT",
                price="100.00", quantity="0.10", newClientOrderId="bob-ask",
            )  # fmt: skip
            await alice.call("POST", "/api/v1/order", **LIMIT, price="100.00", quantity="0.10")
            known = await bob.call("GET", "/api/v1/order", symbol="BTC-USD", orderId=ask["orderId"])
            assert known["status"] == "FILLED", known
            for ref in ({"orderId": ask["orderId"]}, {"origClientOrderId": "bob-ask"}):
                status, body = await bob.request("DELETE", "/api/v1/order", symbol="BTC-USD", **ref)
                assert status == 400 and body["code"] == -2011, (ref, body)
                msg = body["msg"].lower()
                assert "unknown order" not in msg, (ref, body)
                assert any(w in msg for w in ("filled", "finished", "too late")), (ref, body)
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)


def test_a_cancel_naming_two_different_orders_cancels_neither(harness: Harness) -> None:
    """What is wrong: ``RestApi.cancel_order`` (rest.py) reads ``origClientOrderId`` only
    when ``orderId`` is absent; a request that sends both, naming two *different* open
    orders (``orderId`` of one, ``origClientOrderId`` of the other: a client that mixed up
    its ids), silently cancels the ``orderId`` one. The venue rule (the most used venue API's
    DELETE order: "If both orderId and origClientOrderId are provided, the orderId is
    searched first, then the origClientOrderId from that result is checked against that
    order. If both conditions are not met the request will be rejected"), and the README's
    "never a default taken in silence" / "origClientOrderId always names one order".
    Expected: 400 (-2011 or -1100/-2013) and both orders still open.
    Actual: 200, the order named by orderId cancelled."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            one = await alice.call(
                "POST", "/api/v1/order", **LIMIT, price="90.00", quantity="0.10",
                newClientOrderId="one",
            )  # fmt: skip
            await alice.call(
                "POST", "/api/v1/order", **LIMIT, price="91.00", quantity="0.10",
                newClientOrderId="two",
            )  # fmt: skip
            status, body = await alice.request(
                "DELETE", "/api/v1/order", symbol="BTC-USD", orderId=one["orderId"],
                origClientOrderId="two",
            )  # fmt: skip
            still = sorted(
                o["clientOrderId"] for o in await alice.call("GET", "/api/v1/openOrders")
            )
            assert status == 400, (status, body)
            assert still == ["one", "two"], still
        finally:
            await alice.close()

    run(harness, scenario)


# -- parameters an endpoint does not take ---------------------------------------------------------


def test_public_endpoints_refuse_parameters_they_do_not_take(harness: Harness) -> None:
    """What is wrong: ``PublicRoutes.ping``, ``server_time`` and ``exchange_info``
    (rest_public.py) never read the request's parameters, so
    ``GET /api/v1/exchangeInfo?symbol=ETH-USD`` (a filter the most used venue API takes)
    answers 200 with every symbol of the exchange, BTC-USD included, and ETH-USD, which
    does not exist here, is not even questioned; ``ping?x=1`` and ``time?x=1`` answer 200
    too. Every other endpoint refuses such a parameter.
    Spec (README, REST, Limits): "A parameter an endpoint does not take ... is refused
    (-1104, naming it and those it takes) ... never a default taken in silence."
    Expected: 400 (-1104 naming the parameter; for exchangeInfo a symbol filter that refuses
    the unknown symbol, -1121, would do too). Actual: 200 for all three."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            cases = (
                ("/api/v1/exchangeInfo", "symbol", "ETH-USD"),
                ("/api/v1/ping", "x", "1"),
                ("/api/v1/time", "x", "1"),
            )
            answers = {}
            for path, name, value in cases:
                answers[path] = await alice.request("GET", path, signed=False, **{name: value})
            for path, name, value in cases:
                status, body = answers[path]
                assert status == 400, (path, status, str(body)[:200])
                assert body["code"] in (-1104, -1121), (path, body)
                assert name in body["msg"] or value in body["msg"], (path, body)
        finally:
            await alice.close()

    run(harness, scenario)


# -- the OpenAPI document -------------------------------------------------------------------------


def test_the_document_lists_the_400_of_endpoints_without_parameters(harness: Harness) -> None:
    """What is wrong: ``RestApi.account`` and ``RestApi.revoke_key`` (rest.py) refuse any
    parameter with 400 / -1104 (``self.params(request, frozenset())``), but openapi.py
    ``_operation`` adds 400 only to operations that list parameters or a body, so the
    document gives ``GET /api/v1/account`` 200, 401, 403, 413, 429, 504 and
    ``DELETE /api/v1/apiKey`` 200, 401, 413, 429: no 400. The document's own rule
    (openapi.py, test_openapi.py): every status an operation answers is listed.
    Expected: "400" among both operations' responses. Actual: absent."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            doc = await alice.call("GET", "/openapi.json", signed=False)
            account = await alice.request("GET", "/api/v1/account", asset="BTC")
            revoke = await alice.request("DELETE", "/api/v1/apiKey", label="x")
            for (path, method), (status, body) in (
                (("/api/v1/account", "get"), account),
                (("/api/v1/apiKey", "delete"), revoke),
            ):
                assert status == 400, (path, body)  # what the server answers
                listed = sorted(doc["paths"][path][method]["responses"])
                assert str(status) in listed, (method, path, listed)
        finally:
            await alice.close()

    run(harness, scenario)
