"""Bugs a fifth hostile review of the REST API, its signing client and the private stream
found (``rest_rig.py``: real HTTP in front of real rings, databases off). Each test fails until
its bug is fixed; none repeats what ``test_rest_found_bugs.py``, ``test_review_rest_bugs.py``,
``test_review_rest_auth_bugs.py``, ``test_review4_rest_bugs.py`` or
``test_adversarial_rest.py`` already hold."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from procs.gateway import rest_client
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import RestClient
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import BOB, LIMIT, client, rest_exchange, run


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


async def post_form(c: RestClient, url: str, body: bytes) -> tuple[int, dict[str, object]]:
    """A signed ``POST /api/v1/order`` with exactly these form bytes."""
    headers = c.headers("POST", "/api/v1/order", "", body)
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    async with c.session.post(f"{url}/api/v1/order", data=body, headers=headers) as r:
        return r.status, await r.json()


# -- parameters an endpoint does not take ---------------------------------------------------------


def test_revoking_names_no_other_key_and_never_revokes_the_wrong_one(harness: Harness) -> None:
    """What is wrong: ``RestApi.revoke_key`` (rest.py) never reads the request's parameters
    (no ``self.params(...)``), so ``DELETE /api/v1/apiKey?apiKey=<an old key>``, signed with
    the current key (how a client cleans up a leaked or stale key, the way the venues'
    ``DELETE ...?listenKey=`` calls read), silently revokes the key that *signed* it and
    answers 200; the old key the client named stays valid and the client is logged out.
    Spec (README, Limits): "A parameter an endpoint does not take ... is refused (-1104,
    naming it and those it takes) ... never a default taken in silence."
    Expected: the signing key still valid, and either 400 / -1104 naming 'apiKey' or the named
    key revoked. Actual: 200, the signing key revoked, the named one alive."""

    async def scenario(api: RestApi, url: str) -> None:
        old = await client(url, "ALICE", "alice-pw")
        current = await client(url, "ALICE", "alice-pw")
        try:
            status, body = await current.request("DELETE", "/api/v1/apiKey", apiKey=old.api_key)
            still, _ = await current.request("GET", "/api/v1/openOrders")
            named, _ = await old.request("GET", "/api/v1/openOrders")
            assert still == 200, f"the signing key was revoked in place of the one named: {body}"
            refused = (status, body.get("code")) == (400, -1104) and "apiKey" in body["msg"]
            assert refused or (status == 200 and named == 401), (status, body, named)
        finally:
            await old.close()
            await current.close()

    run(harness, scenario)


def test_the_account_endpoint_refuses_a_parameter_it_does_not_take(harness: Harness) -> None:
    """What is wrong: ``RestApi.account`` never reads the parameters, so
    ``GET /api/v1/account?asset=BTC`` (a filter a client may expect) answers 200 with every
    balance, the parameter ignored in silence; every other private endpoint refuses it.
    Spec (README, Limits): a parameter an endpoint does not take is refused (-1104).
    Expected: 400 / -1104 naming 'asset'. Actual: 200."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            status, body = await alice.request("GET", "/api/v1/account", asset="BTC")
            assert (status, body.get("code")) == (400, -1104) and "asset" in body["msg"], body
        finally:
            await alice.close()

    run(harness, scenario)


def test_a_blank_form_value_is_refused_whether_or_not_the_form_escapes(harness: Harness) -> None:
    """What is wrong: ``rest_body._form`` splits a form by hand when nothing in it is escaped,
    keeping ``timeInForce=`` as an empty value (refused: "timeInForce '' is not one of ..."),
    but hands a form containing any '%' or '+' to ``parse_qsl`` without
    ``keep_blank_values=True``, which drops the blank pair: the very same order, only with
    ``newClientOrderId=a%3Ab`` escaped, is placed with the default timeInForce GTC.
    Spec (README, Limits): never a default taken in silence; the answer cannot depend on
    how the client escaped an unrelated value.
    Expected: 400 / -1100 naming timeInForce for both bodies. Actual: 400 for the plain one,
    200 (a GTC order placed) for the escaped one."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            base = b"symbol=BTC-USD&side=BUY&type=LIMIT&price=100.00&quantity=0.10&timeInForce="
            plain = await post_form(alice, url, base + b"&newClientOrderId=ab")
            escaped = await post_form(alice, url, base + b"&newClientOrderId=a%3Ab")
            assert plain[0] == 400 and "timeInForce" in str(plain[1]["msg"]), plain
            assert escaped[0] == 400 and "timeInForce" in str(escaped[1]["msg"]), escaped
        finally:
            await alice.close()

    run(harness, scenario)


# -- the signing client ---------------------------------------------------------------------------


def test_the_client_can_name_an_order_by_any_client_id_the_api_allows(harness: Harness) -> None:
    """What is wrong: ``RestClient.request`` (rest_client.py) signs the query as
    ``urlencode`` wrote it (``origClientOrderId=a%3Ab``) but hands aiohttp a plain URL string,
    which yarl re-normalises before sending (``a:b``: ':' and '/' need no escape in a query);
    the server checks the signature over the query *as sent* (the README's rule), so every
    GET or DELETE naming a clientOrderId with ':' or '/' (both allowed: rest_params
    ``CLIENT_ORDER_ID``) fails with -1022 "signature does not match".
    Expected: the order placed as "desk:1/a" is found and cancelled by that id (200, 200).
    Actual: 401 / -1022 for both."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            placed = await alice.call(
                "POST", "/api/v1/order", **LIMIT, price="100.00", quantity="0.10",
                newClientOrderId="desk:1/a",
            )  # fmt: skip
            ref: dict[str, Any] = {"symbol": "BTC-USD", "origClientOrderId": "desk:1/a"}
            found = await alice.request("GET", "/api/v1/order", **ref)
            cancelled = await alice.request("DELETE", "/api/v1/order", **ref)
            assert found[0] == 200 and found[1]["orderId"] == placed["orderId"], found
            assert cancelled[0] == 200 and cancelled[1]["status"] == "CANCELED", cancelled
        finally:
            await alice.close()

    run(harness, scenario)


def test_the_client_can_send_the_same_request_twice_in_one_millisecond(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What is wrong: ``RestClient.headers`` (rest_client.py) stamps every request with the
    wall clock's millisecond and nothing else; the server refuses a signature it has seen
    (signing.py: "a client sending two byte-identical requests in the same millisecond gets
    the second refused"), so the project's own client, polling ``openOrders`` in a loop or
    sending two identical requests at once, gets -1025 "request replayed" for requests it
    never replayed (on this machine a plain loop of 300 polls lost more than half of them).
    The client must make each request it signs distinct (e.g. a timestamp that never
    repeats: the last one + 1 ms when the clock has not moved; the server takes up to
    1000 ms ahead).
    Expected: three polls signed within one millisecond all answer 200. Actual: the second
    and third are refused 401 / -1025. (The client's clock is held still to make "within one
    millisecond" certain; the server's clock runs.)"""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        frozen = time.time_ns()
        monkeypatch.setattr(rest_client, "time", SimpleNamespace(time_ns=lambda: frozen))
        try:
            answers = [
                await alice.request("GET", "/api/v1/openOrders", symbol="BTC-USD") for _ in range(3)
            ]
            assert [status for status, _ in answers] == [200, 200, 200], answers
        finally:
            await alice.close()

    run(harness, scenario)


# -- rate limits ----------------------------------------------------------------------------------


def test_a_429_for_too_many_streams_of_a_key_carries_retry_after(harness: Harness) -> None:
    """What is wrong: ``PrivateStreams.handle`` (private_stream.py) refuses a key's stream
    past ``max_streams_per_key`` with ``ApiError(429, -1003, ...)`` and no ``retry_after_s``,
    so the 429 has no Retry-After header; openapi.py's TooManyRequests response (used by the
    stream's 429) declares Retry-After *required*, and issue 10 asks for "429 and a retry
    hint".
    Expected: the 429 carries Retry-After (an integer >= 1). Actual: no such header."""

    async def scenario(api: RestApi, url: str) -> None:
        api.streams.max_per_key = 1
        bob = await client(url, "BOB", "bob-pw")
        try:
            ws = await bob.stream()
            await ws.receive(timeout=5)  # the snapshot
            async with bob.session.get(bob.stream_url()) as r:
                status, retry = r.status, r.headers.get("Retry-After")
            await ws.close()
            assert status == 429, status
            assert retry is not None and retry.isdigit() and int(retry) >= 1, retry
        finally:
            await bob.close()

    run(harness, scenario)


# -- the private stream ---------------------------------------------------------------------------


def test_a_stream_whose_client_vanishes_with_a_backlog_gives_its_slot_back(
    harness: Harness,
) -> None:
    """What is wrong: when a stream's client drops its connection while the sender task is
    writing a backlog (a client on a slow link, paused in the transport's drain), the
    ``_send`` task ends with the connection error; ``PrivateStreams.handle``'s ``finally``
    then does ``sender.cancel(); await sender`` suppressing only ``CancelledError``, so the
    error escapes before ``self.count -= 1`` and the ``by_account``/``core.streaming``
    clean-up: the slot is never given back, the dead subscriber stays registered (and keeps
    queueing the account's events), and once ``max_streams`` such drops happened every
    user's stream is refused 503.
    Expected: the count back to 0, the account no longer streaming, and BOB can open a new
    stream. Actual: count 1, the dead subscriber kept.
    (The backlog is put in with ``streams.deliver``, the call the gateway's poll loop makes
    with the exchange's events; big messages fill the socket buffers quickly.)"""

    async def scenario(api: RestApi, url: str) -> None:
        api.streams.queue_limit = 10**6  # a deep backlog, not a slow-consumer cut
        bob = await client(url, "BOB", "bob-pw")
        try:
            ws = await bob.stream()
            await ws.receive(timeout=5)  # the snapshot; then BOB reads nothing more
            pad = "x" * 65_536
            for _ in range(400):  # ~26 MB: more than the loopback socket buffers hold
                api.streams.deliver([(BOB, "executionReport", {"pad": pad})])
                await asyncio.sleep(0)
            await asyncio.sleep(0.3)
            assert ws._response is not None and ws._response.connection is not None
            transport = ws._response.connection.transport
            assert transport is not None
            transport.abort()  # the client is gone (RST)
            deadline = time.monotonic() + 3
            while api.streams.count and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert api.streams.count == 0, f"{api.streams.count} stream slot(s) still held"
            assert BOB not in api.streams.by_account and BOB not in api.core.streaming
        finally:
            await bob.close()

    run(harness, scenario)


# -- the OpenAPI document -------------------------------------------------------------------------


def test_the_document_takes_the_passwords_the_server_takes(harness: Harness) -> None:
    """What is wrong: the server takes a password of up to 1024 characters at
    ``POST /api/v1/apiKey`` (rest_params ``LONG_VALUES``: a FIX user's password may be any
    length), but openapi.py's ``ApiKeyRequest`` still gives ``password`` ``maxLength`` 64
    (the generic ``name`` schema), and the info text says "each value at most 64
    characters": a client validated against the document refuses a login the server
    accepts. Issue 10: the OpenAPI document is kept true.
    Expected: the document's password maxLength admits CAROL's 80-character password, with
    which the server gives her a key. Actual: maxLength 64."""
    harness.add_user("CAROL", "p" * 80, 603)

    async def scenario(api: RestApi, url: str) -> None:
        async with RestClient(url) as carol:
            await carol.login("CAROL", "p" * 80)  # the server takes it
            doc = await carol.call("GET", "/openapi.json", signed=False)
            schema = doc["components"]["schemas"]["ApiKeyRequest"]["properties"]["password"]
            assert schema.get("maxLength", 10**9) >= 80, schema

    run(harness, scenario)
