"""Review 156: a hostile review of ``POST /api/v1/batchOrders`` (``rest_new_orders.py``) over
real HTTP, against the real gateway, router and matcher of ``rest_rig``.

Faults found (each a strict xfail when written, asserting the correct behaviour; all six
fixed since, the same session; lines as the review found them, the function named in each
holds them should they move):

1. procs/gateway/rest_new_orders.py:56 (``_text``): a JSON body whose ``batchOrders`` array
   holds a byte that is not UTF-8 inside a string is a 500 (msgspec's ``Raw`` keeps the
   bytes unchecked, ``raw.decode()`` raises ``UnicodeDecodeError``), where ``POST order``'s
   JSON body gets a 400 "body is not UTF-8".
2. procs/gateway/rest_new_orders.py:133 (``batch_params``): a JSON body nested deeper than
   the recursion limit (``{"batchOrders": [[[[...]]]]}``, 4 KB) is a 500: msgspec raises
   ``RecursionError``, and only ``msgspec.DecodeError`` is caught.
3. procs/gateway/rest_new_orders.py:175 (``batch``): the same for the array as text (form or
   query ``batchOrders=[[[[...]]]]``, within the 8192-character limit): a 500, not a 400.
4. procs/gateway/rest_new_orders.py:129 (``batch_params``): a JSON body that starts with
   whitespace (``\\n{"batchOrders": [...]}``, what a pretty-printer or a heredoc sends) is
   not read as one: ``body.startswith(b"{")`` sends it to ``params``, whose scalar-only
   decoder refuses the array (400 "body is not a JSON object") that the same JSON without
   the newline places.
5. procs/gateway/rest_new_orders.py:119-122 (``batch_orders``' ``finally``): a batch handler
   cancelled while it waits cancels the futures of the orders not answered yet but leaves
   them in ``api.waiters`` and ``api.deadlines`` (``settle``'s own ``finally`` pops only the
   one being awaited), where the single route leaves nothing behind.
6. procs/gateway/openapi.py:432 (``BatchOrdersRequest``): ``batchOrders`` is documented as a
   string only (``type: string``, ``maxLength 8192``), but the server takes, and
   ``RestClient.batch_orders`` and the README recommend, the array itself in a JSON body: a
   client validating against the document cannot send the recommended form.

Probed and held: elements that are arrays, strings or numbers, with nested values, duplicate
keys, unknown parameters, JSON floats, NaN tokens, integers past int64 (each a per-order 400
while the others go); an oversized body (413); ``batchOrders`` null or an object;
newClientOrderIds colliding with an open order, with one another (pending), or reused after a
refusal by the checks; a stopping gateway (503, nothing placed); the key's rate limit (a 429
places nothing and leaves no request in flight); the signature covers body and query; a
read-only key (403); ``batchOrders`` in the query and the body (sent twice); orders that
together overdraw are refused by the router from the first that does not fit, and no balance
goes negative; the pipeline paused (each order a 504 naming its origClientOrderId, then placed
once it resumes, nothing left in waiters, deadlines or requests); a client that disconnects
mid-wait on either lane (its orders are placed, nothing leaks); the fast lane, ``Expect:
100-continue`` (aiohttp) and a chunked body give the same answers; the private stream reports
each placed order; ``openOrders`` and ``GET order`` agree with the batch's answers
(``allOrders`` needs the database, off here).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import msgspec
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from procs.gateway import api_errors as codes
from procs.gateway.fast_request import FastRequest
from procs.gateway.limits import RateLimiter
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import RestClient
from tests.unit.gateway.harness import Harness, settled
from tests.unit.gateway.rest_rig import (
    client,
    exchange,
    request,
    rest_exchange,
    run,
    statuses,
    stream_messages,
)

BATCH = "/api/v1/batchOrders"
BID: dict[str, str] = {"symbol": "BTC-USD", "side": "BUY", "type": "LIMIT", "quantity": "0.10"}


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


def _bid(price: str, cid: str = "", **more: str) -> dict[str, Any]:
    return {**BID, "price": price, **({"newClientOrderId": cid} if cid else {}), **more}


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def _raw(
    c: RestClient,
    url: str,
    body: bytes,
    *extra: bytes,
    content_type: str = "application/json",
    query: str = "",
    chunked: bool = False,
    timeout_s: float = 5.0,
) -> tuple[int, Any, bytes]:
    """A signed POST of ``body`` on a connection of its own: (last status, decoded JSON
    answer or None, the raw answer). ``extra`` headers go as given (``Expect`` say)."""
    signed = c.headers("POST", BATCH, query, body)
    head = [f"{k}: {v}".encode() for k, v in signed.items()]
    head += [f"Content-Type: {content_type}".encode(), b"Connection: close", *extra]
    if chunked:
        head.append(b"Transfer-Encoding: chunked")
        half = len(body) // 2
        wire = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:half], body[half:]) if p)
        wire += b"0\r\n\r\n"
    else:
        head.append(b"Content-Length: %d" % len(body))
        wire = body
    target = BATCH + (f"?{query}" if query else "")
    raw = await exchange(
        _port(url), request(f"POST {target} HTTP/1.1".encode(), *head, body=wire), timeout_s
    )
    codes_seen = statuses(raw)
    payload = raw.rsplit(b"\r\n\r\n", 1)[-1] if codes_seen else b""
    try:
        answer = json.loads(payload) if payload else None
    except ValueError:
        answer = None
    return (codes_seen[-1] if codes_seen else 0), answer, raw


def _json(orders: Any) -> bytes:
    return json.dumps({"batchOrders": orders}).encode()


async def _open(c: RestClient) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = await c.call("GET", "/api/v1/openOrders", symbol="BTC-USD")
    return got


def _quiet(api: RestApi) -> bool:
    return not api.waiters and not len(api.deadlines) and not api.core.requests


# -- hostile bodies ---------------------------------------------------------------------------


def test_hostile_elements_are_refused_one_by_one_while_the_others_go(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            good = json.dumps(_bid("100.00", "ok1"))
            text = (
                f'[[{good}], "{{}}", 7, {{"symbol":"BTC-USD","x":{{"a":1}}}},'
                '{"symbol":"BTC-USD","symbol":"BTC-USD"},'
                '{"symbol":"BTC-USD","side":"BUY","type":"LIMIT","quantity":"0.1",'
                '"price":"1","evil":"1"},'
                '{"symbol":"BTC-USD","side":"BUY","type":"LIMIT","quantity":1.0e400,"price":"1"},'
                f'{{"symbol":"BTC-USD","quantity":{"9" * 4000}}}, true, {good}]'
            )
            answers = await alice.call("POST", BATCH, batchOrders=text)
            assert [a.get("code") for a in answers[:9]] == [
                codes.ILLEGAL_PARAM, codes.ILLEGAL_PARAM, codes.ILLEGAL_PARAM,
                codes.ILLEGAL_PARAM, codes.ILLEGAL_PARAM, codes.UNKNOWN_PARAM,
                codes.ILLEGAL_PARAM, codes.ILLEGAL_PARAM, codes.ILLEGAL_PARAM,
            ], answers  # fmt: skip
            assert answers[0]["msg"].startswith("batchOrders[0] is not a JSON object: [{")
            assert "'symbol' is sent twice" in answers[4]["msg"], answers[4]
            assert "'quantity' is 4000 characters" in answers[7]["msg"], answers[7]
            assert answers[9]["status"] == "NEW" and answers[9]["clientOrderId"] == "ok1"
            for body in (
                b'{"batchOrders": [{"symbol": "BTC-USD", "quantity": NaN}]}',
                b'{"batchOrders": null}',
                b'{"batchOrders": {"symbol": "BTC-USD"}}',
            ):
                status, refused, _ = await _raw(alice, url, body)
                assert status == 400 and refused["code"] == codes.ILLEGAL_PARAM, (body, refused)
            huge = _json([_bid("100.00")] * 300)
            status, too_big, _ = await _raw(alice, url, huge)
            assert status == 413 and "larger than the limit" in too_big["msg"], too_big
            assert [o["clientOrderId"] for o in await _open(alice)] == ["ok1"]
            assert _quiet(api)
        finally:
            await alice.close()

    run(harness, scenario)


async def _never_500(api: RestApi, url: str, body: bytes, content_type: str) -> None:
    alice = await client(url, "ALICE", "alice-pw")
    try:
        status, answer, raw = await _raw(alice, url, body, content_type=content_type)
        assert status == 400, raw[:300]
        assert answer["code"] == codes.ILLEGAL_PARAM, answer
        assert await _open(alice) == []
    finally:
        await alice.close()


def test_a_json_body_array_that_is_not_utf8_is_a_400(harness: Harness) -> None:
    body = b'{"batchOrders": [{"symbol": "BTC-USD", "side": "B\xffUY"}]}'
    run(harness, lambda api, url: _never_500(api, url, body, "application/json"))


def test_a_deeply_nested_json_body_is_a_400(harness: Harness) -> None:
    body = b'{"batchOrders": [' + b"[" * 2000 + b"]" * 2000 + b"]}"
    run(harness, lambda api, url: _never_500(api, url, body, "application/json"))


def test_a_deeply_nested_text_array_is_a_400(harness: Harness) -> None:
    body = b"batchOrders=" + b"[" * 2000 + b"]" * 2000
    run(harness, lambda api, url: _never_500(api, url, body, "application/x-www-form-urlencoded"))


def test_a_json_body_with_leading_whitespace_is_read_as_json(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            status, answer, _ = await _raw(alice, url, b"\n" + _json([_bid("100.00")]))
            assert status == 200 and answer[0]["status"] == "NEW", answer
        finally:
            await alice.close()

    run(harness, scenario)


# -- ids, closing, rate limit, signature --------------------------------------------------------


def test_client_order_ids_colliding_with_open_orders_and_one_another(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            await alice.call("POST", "/api/v1/order", **_bid("100.00", "open1"))
            answers = await alice.batch_orders(
                [
                    _bid("100.00", "open1"),  # an open order's
                    _bid("100.01", "z"),  # off the tick: refused by the checks, not placed
                    _bid("100.00", "z"),  # so z is free
                    _bid("100.00", "z"),  # z pending now
                    _bid("100.00", "w"),
                ]
            )
            assert [a.get("code", a.get("status")) for a in answers] == [
                codes.NEW_ORDER_REJECTED, codes.FILTER_FAILURE, "NEW",
                codes.NEW_ORDER_REJECTED, "NEW",
            ], answers  # fmt: skip
            assert "newClientOrderId=open1 is in use by open order" in answers[0]["msg"]
            assert "newClientOrderId=z is in use by open order (pending)" in answers[3]["msg"]
            mine = sorted(o["clientOrderId"] for o in await _open(alice))
            assert mine == ["open1", "w", "z"]
            assert _quiet(api)
        finally:
            await alice.close()

    run(harness, scenario)


def test_a_stopping_gateway_refuses_a_batch_whole(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            api.closing = True
            status, answer, _ = await _raw(alice, url, _json([_bid("100.00")] * 3))
            assert status == 503 and answer["code"] == codes.DISCONNECTED, answer
            assert "no new orders" in answer["msg"]
            assert not api.core.requests and not api.core.client_ids
            api.closing = False
            assert await _open(alice) == []
        finally:
            await alice.close()

    run(harness, scenario)


def test_a_429_places_nothing(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            limits = api.key_limits
            api.key_limits = RateLimiter(0.001, 4)
            await _open(alice)  # a read takes one: three left for a batch of four
            status, answer, raw = await _raw(alice, url, _json([_bid("100.00", "r1")] * 4))
            assert status == 429 and answer["code"] == codes.TOO_MANY_REQUESTS, answer
            assert b"Retry-After:" in raw
            assert not api.core.requests and not api.core.client_ids and _quiet(api)
            api.key_limits = limits
            assert await _open(alice) == []
        finally:
            await alice.close()

    run(harness, scenario)


def test_the_signature_covers_the_body_and_the_query(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            signed, sent = _json([_bid("100.00")]), _json([_bid("100.00")] * 2)
            headers = alice.headers("POST", BATCH, "", signed) | {
                "Content-Type": "application/json"
            }
            async with alice.session.post(f"{url}{BATCH}", data=sent, headers=headers) as r:
                assert r.status == 401, await r.text()
            text = json.dumps([_bid("100.00")])
            headers = alice.headers("POST", BATCH, "", b"")
            async with alice.session.post(
                f"{url}{BATCH}", params={"batchOrders": text}, headers=headers
            ) as r:
                assert r.status == 401, await r.text()
            reader = await client(url, "ALICE", "alice-pw", "read")
            try:
                status, answer, _ = await _raw(reader, url, _json([_bid("100.00")]))
                assert status == 403 and "'trade' is needed" in answer["msg"], answer
            finally:
                await reader.close()
            query = "batchOrders=" + json.dumps([_bid("100.00")]).replace(" ", "")
            status, answer, _ = await _raw(alice, url, _json([_bid("100.00")]), query=query)
            assert status == 400 and "'batchOrders' is sent twice" in answer["msg"], answer
            assert await _open(alice) == [] and _quiet(api)
        finally:
            await alice.close()

    run(harness, scenario)


# -- balances, stream, views --------------------------------------------------------------------


def test_orders_that_together_overdraw_are_refused_from_the_first_that_does_not_fit(
    harness: Harness,
) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")  # 1,000,000 USD
        try:
            big = {**BID, "quantity": "10.00", "price": "40000.00"}  # 400,000 USD each
            answers = await alice.batch_orders([big, big, big, _bid("100.00")])
            assert [a.get("status") for a in answers] == ["NEW", "NEW", None, "NEW"], answers
            assert answers[2]["code"] == codes.NEW_ORDER_REJECTED, answers[2]
            account = await alice.call("GET", "/api/v1/account")
            usd = next(b for b in account["balances"] if b["asset"] == "USD")
            free, locked = float(usd["free"]), float(usd["locked"])
            assert free >= 0 and locked >= 800_010 and free + locked == 1_000_000, usd
            assert len(await _open(alice)) == 3 and _quiet(api)
        finally:
            await alice.close()

    run(harness, scenario)


def test_the_private_stream_and_the_views_see_each_placed_order(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            async with alice.session.ws_connect(alice.stream_url()) as ws:
                await stream_messages(ws, 0.3)  # the snapshot
                answers = await alice.batch_orders(
                    [_bid("100.00", "s1"), _bid("1.01", "s2"), _bid("101.00"), _bid("102.00")]
                )
                events = await stream_messages(ws, 0.5)
            placed = [a for a in answers if "orderId" in a]
            assert len(placed) == 3 and answers[1]["code"] == codes.FILTER_FAILURE
            reported = [e["data"] for e in events if e["event"] == "executionReport"]
            assert sorted(r["orderId"] for r in reported) == sorted(a["orderId"] for a in placed)
            assert {r["status"] for r in reported} == {"NEW"}
            assert "s2" not in {r["clientOrderId"] for r in reported}
            views = {o["orderId"]: o for o in await _open(alice)}
            for a in placed:
                one = await alice.call(
                    "GET", "/api/v1/order", symbol="BTC-USD", orderId=a["orderId"]
                )
                for view in (views[a["orderId"]], one):
                    for field in ("clientOrderId", "price", "origQty", "status", "side", "type"):
                        assert view[field] == a[field], (field, view, a)
            assert len(views) == 3
        finally:
            await alice.close()

    run(harness, scenario)


# -- a pipeline that does not answer, a client that goes away -----------------------------------


def test_a_paused_exchange_gives_a_504_per_order_then_places_them(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            api.rest = msgspec.structs.replace(api.rest, order_timeout_s=0.3)
            harness.pause()
            answers = await alice.batch_orders(
                [_bid("100.00", "t1"), _bid("1.01", "t2"), _bid("101.00", "t3")]
            )
            assert [a["code"] for a in answers] == [
                codes.TIMEOUT, codes.FILTER_FAILURE, codes.TIMEOUT
            ], answers  # fmt: skip
            assert "(origClientOrderId=t1)" in answers[0]["msg"], answers[0]
            assert "(origClientOrderId=t3)" in answers[2]["msg"], answers[2]
            assert not api.waiters and not len(api.deadlines) and len(api.core.requests) == 2
            harness.resume()
            await settled(lambda: not api.core.requests)
            assert sorted(o["clientOrderId"] for o in await _open(alice)) == ["t1", "t3"]
            assert _quiet(api)
        finally:
            await alice.close()

    run(harness, scenario)


def test_a_client_gone_mid_wait_leaks_nothing_on_either_lane(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            harness.pause()
            for lane, extra in (("f", ()), ("a", (b"Expect: 100-continue",))):
                orders = [_bid("100.00", f"{lane}{k}") for k in range(3)]
                # a second to be read and published: the 10 s order timeout is far off
                status, _, _ = await _raw(alice, url, _json(orders), *extra, timeout_s=1.0)
                assert status in (0, 100)  # no answer yet: the client hangs up
            await settled(lambda: len(api.waiters) == 6)  # read (late on a loaded host)
            assert len(api.waiters) == 6
            harness.resume()
            await settled(lambda: _quiet(api))
            assert _quiet(api), (api.waiters, len(api.deadlines), api.core.requests)
            mine = sorted(o["clientOrderId"] for o in await _open(alice))
            assert mine == ["a0", "a1", "a2", "f0", "f1", "f2"]
        finally:
            await alice.close()

    run(harness, scenario)


def test_a_cancelled_batch_leaves_no_waiters_behind(harness: Harness) -> None:
    """The handler cancelled while it waits (a shutdown's cleanup cancels handlers): what
    it registered goes with it, as the single route's ``settle`` leaves nothing. Neither
    lane cancels a handler when its client goes (the test above), so the running gateway's
    handler is driven here with a signed ``FastRequest`` of its own, and its task cancelled."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            harness.pause()
            body = _json([_bid("100.00", f"c{k}") for k in range(3)])
            headers = alice.headers("POST", BATCH, "", body) | {
                "Content-Type": "application/json", "Content-Length": str(len(body)),
            }  # fmt: skip
            req = FastRequest(
                "POST", BATCH, CIMultiDictProxy(CIMultiDict(headers)), body, "127.0.0.1", True
            )
            task = asyncio.get_running_loop().create_task(api.batch_orders(req))
            await settled(lambda: len(api.waiters) == 3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            left = (len(api.waiters), len(api.deadlines))
            harness.resume()
            await settled(lambda: not api.core.requests)
            assert left == (0, 0)
        finally:
            await alice.close()

    run(harness, scenario)


# -- the lanes agree ----------------------------------------------------------------------------


def test_the_fast_lane_and_aiohttp_give_the_same_answers(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            seen: dict[str, list[Any]] = {}
            lanes = {
                "fast": ((), False),
                "aiohttp": ((b"Expect: 100-continue",), False),
                "chunked": ((), True),
            }
            for name, (extra, chunked) in lanes.items():
                orders = [
                    _bid("100.00", f"{name}1"), _bid("1.01"), {**BID, "sid": "BUY"},
                    _bid("100.00", f"{name}1"), _bid("101.00", f"{name}2"),
                ]  # fmt: skip
                status, answers, raw = await _raw(
                    alice, url, _json(orders), *extra, chunked=chunked
                )
                assert status == 200, raw[:300]
                assert (b"aiohttp" in raw) == (name == "aiohttp"), raw[:300]
                seen[name] = [
                    a.get("status") or (a["code"], a["msg"].replace(name, "")) for a in answers
                ]
                status, empty, _ = await _raw(alice, url, b'{"batchOrders": []}', *extra)
                seen[name].append((status, empty))
            assert seen["fast"] == seen["aiohttp"] == seen["chunked"], seen
            assert len(await _open(alice)) == 6 and _quiet(api)
        finally:
            await alice.close()

    run(harness, scenario)


# -- the OpenAPI document -----------------------------------------------------------------------


async def _documented(alice: RestClient) -> tuple[Any, dict[str, Any]]:
    """A validator of ``BatchOrdersRequest`` as ``GET /openapi.json`` has it, and its
    example."""
    doc: dict[str, Any] = await alice.call("GET", "/openapi.json", signed=False)
    schema = doc["components"]["schemas"]["BatchOrdersRequest"]
    validator = jsonschema_rs.validator_for(
        {**doc, "$ref": "#/components/schemas/BatchOrdersRequest"}
    )
    return validator, schema["examples"][0]


def test_the_documented_text_form_and_example_are_taken(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            validator, example = await _documented(alice)
            assert validator.is_valid(example)
            for answer in await alice.call("POST", BATCH, **example):  # as a form
                assert answer.get("code", codes.NEW_ORDER_REJECTED) == codes.NEW_ORDER_REJECTED
            await alice.call("DELETE", "/api/v1/openOrders", symbol="BTC-USD")
            status, answers, _ = await _raw(alice, url, json.dumps(example).encode())
            assert status == 200 and len(answers) == len(json.loads(example["batchOrders"]))
            assert not validator.is_valid({"batchOrders": "[]", "symbol": "BTC-USD"})
        finally:
            await alice.close()

    run(harness, scenario)


def test_the_document_takes_the_array_in_a_json_body(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            validator, _ = await _documented(alice)
            body = {"batchOrders": [_bid("100.00", "doc1")]}
            status, answers, _ = await _raw(alice, url, json.dumps(body).encode())
            assert status == 200 and answers[0]["status"] == "NEW"  # the server takes it
            assert validator.is_valid(body), "the document refuses what the server takes"
        finally:
            await alice.close()

    run(harness, scenario)
