"""Review 342: REST request limits and timing as a Binance client reads them.

Reviewed: README ("Limits", the error codes, the signed requests' headers and window),
``procs/gateway/rest.py`` (``_middleware``'s address limit, ``signed``, ``charge``,
``charge_batch``), ``procs/gateway/limits.py`` (``RateLimiter``: "refused ... spending
nothing, so a client that backs off as told gets through on its next try"),
``procs/gateway/api_errors.py`` (``throttle``, ``order_refused``, ``Retry-After`` in whole
seconds rounded up), ``procs/gateway/signing.py`` (``Verifier.check``: window, timestamp,
replay memory), ``procs/gateway/rest_new_orders.py`` and ``rest_cancels.py`` (the batches),
``procs/core/sequencer.py`` (``_allow``: the account's command rate), the openapi 429
("retry after the seconds in Retry-After"), against Binance spot's rate-limit contract
(429 ``-1003`` with ``Retry-After`` in seconds; ``-1015`` for orders; ``-1021`` a timestamp
outside ``recvWindow`` or more than 1000 ms ahead; ``recvWindow`` at most 60000) as
python-binance (re-signs each call) and ccxt read it, and urllib3's
``Retry(status_forcelist=[429], respect_retry_after_header=True)`` (resends the request
byte for byte after the hinted wait).

Rig: ``tests/unit/gateway/rest_rig.py`` (real HTTP in front of real rings, router and
matcher stepped in process; ALICE 601 with dollars, BOB 602 with bitcoin); the key's and
the address's buckets swapped for real ``RateLimiter`` s of a small rate and burst
(``api.key_limits``, ``api.ip_limits``, as review 156 does) so a limit is reached in a few
requests and a hint is at most a second or two; ``risk.max_commands_per_s`` 2 by the rig's
``reshape``; requests signed with chosen timestamps and windows (``signing.sign``).

Faults found:
1. A batch refused by the key's rate, retried after its ``Retry-After``, is refused again.
   With the key at 1 request/s and a burst of 3: a read (2 tokens left), then ``POST
   batchOrders`` of 3 orders is 429 ``-1003`` ``Retry-After: 1``; the client waits 1 s,
   signs the same batch anew and gets 429 again (and again ``Retry-After: 1``). The refused
   batch spent its request's token, and the hint counted only the other orders' share, so a
   client that backs off exactly as told is locked out one token longer than it was told
   (at the default 2000/s the whole-second rounding hides it; at a rate of a few a second it
   shows every time). Cause: ``procs/gateway/rest.py:445`` (``signed`` charges the request
   one token before the batch's size is known) then ``rest.py:470`` (``charge_batch`` takes
   ``orders - 1`` more; its 429 leaves the first spent and hints for ``orders - 1`` only);
   ``DELETE batchOrders`` takes the same path (``rest_cancels.py:73``). Fix: charge a batch
   once, all ``orders`` tokens in one ``take`` (``signed`` told the cost, or its token given
   back with ``RateLimiter.refund`` when ``charge_batch`` refuses), so the refusal spends
   nothing and the hint covers the whole batch.
   Was (fixed): 429 after the hinted wait
   (``test_a_batch_refused_for_the_key_rate_passes_after_its_retry_after``).
   Fixed: ``charge_batch`` (``limits.take_batch``) gives ``signed``'s token back and takes
   all ``orders`` in one ``take``, so a 429 spends nothing and hints the whole batch's wait.
2. A batch of ``key_burst + 1`` orders, which the gateway's own 400 says fits, can never
   pass. With a burst of 3 a batch of 5 is refused 400 "... so 4 orders a batch at most"; a
   batch of 4 costs 1 (``signed``) + 3 (``charge_batch``) tokens of a bucket that never holds
   more than 3: 429 with ``Retry-After: 1`` forever, however long the client waits, where
   limits.py's rule is that a request which could never pass gets no hint (``take`` raises).
   Only reachable where ``key_burst`` is below ``MAX_BATCH_ORDERS`` (10), but then always.
   Cause: ``procs/gateway/rest.py:462`` (``orders - 1 > burst``: off by the request's own
   token, spent already). Fix: with fault 1's single charge, ``orders > burst`` is the 400
   and its msg says ``burst`` orders at most.
   Was (fixed): 429 every time (``test_a_batch_the_burst_admits_can_pass``).
   Fixed: with that single charge ``take_batch`` refuses 400 a batch of ``orders > burst``,
   its msg saying ``burst`` orders a batch at most.
3. A batch refused 429 by the key's rate, sent again as is, is refused as replayed. README:
   "The memory keeps only the requests the key's rate limit took (refused ones cannot fill
   it)"; review 267 made the same promise for the stream ("a URL refused for a limit may be
   sent again within its window"). A client (urllib3 ``Retry`` honouring ``Retry-After``)
   resending the identical batch within its window after the hinted wait gets 401 ``-1025``
   "request replayed: this signature was accepted already", for a request that placed
   nothing; a client that maps 401 to bad credentials stops trading. Cause:
   ``procs/gateway/rest.py:446`` (``signed`` remembers the signature once ``charge`` took
   its one token) before ``rest.py:470`` refuses the batch's share; same for ``DELETE
   batchOrders``. Fix: remember the signature only after the batch's whole charge (split
   ``signed`` into check/charge/remember, or remember in ``charge_batch``'s success path).
   Was (fixed): 401 -1025
   (``test_a_batch_refused_for_the_key_rate_may_be_sent_again_as_is``).
   Fixed: ``charge_batch``'s 429 forgets the signature ``signed`` remembered
   (``Verifier.forget``), so it stays remembered only once the whole batch's charge is taken.

Sound (``test_sound_*``): the key's 429 is ``{"code": -1003, "msg"}`` only, the msg naming
the limit ("1/s"), ``Retry-After`` an integer of seconds; a request refused 429 spends
nothing (the next at once hears the same wait) and one refused 401 ``-1022`` spends none of
the key's tokens; waited out, the next request passes. The key's limit is per key: a spent
key of ALICE's leaves her second key and BOB's served. The address's 429 names the address
and the limit and its ``Retry-After`` holds. The order rate (``risk.max_commands_per_s`` 2):
the third order at once is 429 ``-1015`` "Too many new orders ... 2 orders per SECOND",
``Retry-After: 1``, nothing held or left waiting, and after 1 s the next order is placed
(three open). ``recvWindow`` 60001, 0, ``abc``, -5, 5000.5 and empty are each ``-1131``
naming the value and "1..60000"; 60000 is taken. A timestamp 500 ms ahead is taken, 3 s
ahead ``-1021`` naming server time and the range accepted; 6 s old is ``-1021`` under the
default 5000 window and taken under 10000 (the gateway's start set a minute back: a request
signed before it is refused, README). (Review 306 probed the window's bounds too.)

Leads not shown:

- Binance refuses a timestamp at ``serverTime + 1000`` exactly (its rule is ``timestamp <
  serverTime + 1000``); ``signing.py:270`` takes ``ts <= now + MAX_AHEAD_MS``. A millisecond
  at the edge, not pinnable over HTTP with a moving clock; cosmetic.
- ``-1021``, ``-1022``, ``-1131`` and ``-1025`` are HTTP 401 here (``rest.py:444``, every
  ``AuthError``); Binance answers them 400. Clients branch on the body's code (ccxt's
  ``exceptions``, python-binance's ``BinanceAPIException.code``), so nothing breaks; and a
  401 carries no ``WWW-Authenticate`` (RFC 9110 15.5.2). Cosmetic.
- An order, amend or mass cancel refused 429 ``-1015`` by the router was taken by the key's
  limit, so its signature is remembered: resent as is after its ``Retry-After`` (urllib3's
  ``Retry``) it is 401 ``-1025``. Consistent with README's replay rule (a signature is
  accepted once), but the 429 invites exactly that retry; worth a line in README's 429.
- A private stream refused 429 for the streams held per key or account carries
  ``Retry-After: 1`` (``private_stream.py:115``), a count not a rate: honoured, it is 429
  again until a stream closes. Not a lie by the letter (a stream may close), not pinned.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from procs.gateway import api_errors as codes
from procs.gateway.limits import RateLimiter
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import RestClient
from procs.gateway.signing import API_KEY, RECV_WINDOW, SIGNATURE, TIMESTAMP, sign
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import client, rest_exchange, run

BATCH = "/api/v1/batchOrders"
OPEN = "/api/v1/openOrders"
BID: dict[str, str] = {"symbol": "BTC-USD", "side": "BUY", "type": "LIMIT", "quantity": "0.10"}

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


@pytest.fixture
def slow_orders(instance: str, tmp_path: Path) -> Iterator[Harness]:
    """The rig with ``risk.max_commands_per_s`` 2: the third order in a second is refused."""

    def reshape(cfg: Any) -> Any:
        return msgspec.structs.replace(
            cfg, risk=msgspec.structs.replace(cfg.risk, max_commands_per_s=2)
        )

    yield from rest_exchange(instance, tmp_path, reshape=reshape)


Answer = tuple[int, dict[str, str], Any]


async def _get(c: RestClient, url: str, path: str = OPEN, **headers: str) -> Answer:
    """A signed GET of ``path`` (no query) as ``c`` signs it, ``headers`` over its own:
    (status, headers, decoded body)."""
    sent = c.headers("GET", path, "", b"") | headers
    async with c.session.get(f"{url}{path}", headers=sent) as r:
        return r.status, dict(r.headers), await r.json()


async def _signed_at(c: RestClient, url: str, ts: int, window: str | None) -> Answer:
    """``GET openOrders`` signed by ``c``'s key with timestamp ``ts`` and the window header
    ``window`` (None: not sent, the server's default 5000 signed)."""
    signature = sign(c.secret, ts, window or 5_000, "GET", OPEN, "", b"")  # type: ignore[arg-type]
    headers = {API_KEY: c.api_key, TIMESTAMP: str(ts), SIGNATURE: signature}
    if window is not None:
        headers[RECV_WINDOW] = window
    async with c.session.get(f"{url}{OPEN}", headers=headers) as r:
        return r.status, dict(r.headers), await r.json()


def _batch_body(n: int, price: str = "100.00") -> bytes:
    return msgspec.json.encode({"batchOrders": [{**BID, "price": price}] * n})


async def _post_batch(c: RestClient, url: str, body: bytes, signed: dict[str, str]) -> Answer:
    headers = signed | {"Content-Type": "application/json"}
    async with c.session.post(f"{url}{BATCH}", data=body, headers=headers) as r:
        return r.status, dict(r.headers), await r.json()


async def _batch(c: RestClient, url: str, n: int) -> Answer:
    """``POST batchOrders`` of ``n`` bids at 100.00 (a JSON body), freshly signed."""
    body = _batch_body(n)
    return await _post_batch(c, url, body, c.headers("POST", BATCH, "", body))


async def _place(c: RestClient) -> tuple[int, Any]:
    """``POST order``: a bid of 0.10 at 100.00 (a form body)."""
    return await c.request(
        "POST", "/api/v1/order", symbol="BTC-USD", side="BUY", type="LIMIT", quantity="0.10",
        price="100.00",
    )  # fmt: skip


def _retry_after(headers: dict[str, str]) -> int:
    """The 429's hint as python-binance and ccxt read it: an integer number of seconds."""
    value = headers["Retry-After"]
    assert value.isdigit() and int(value) >= 1, value
    return int(value)


# -- faults ----------------------------------------------------------------------------------


def test_a_batch_refused_for_the_key_rate_passes_after_its_retry_after(harness: Harness) -> None:
    """One request a second, three at once. A read spends one (two left); a batch of three
    orders needs three: 429 with a Retry-After. Waited out, the same batch (signed anew) must
    pass: the refusal spent nothing (limits.py: "refused ... spending nothing, so a client
    that backs off as told gets through on its next try"), and the hint covered the whole
    batch. Was (fixed): the refused batch spent its request's token in ``signed`` and the
    hint counted only the other two orders: 429 again."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            api.key_limits = RateLimiter(1.0, 3)
            status, _, body = await _get(alice, url)
            assert status == 200, body
            status, headers, body = await _batch(alice, url, 3)
            assert status == 429 and body["code"] == codes.TOO_MANY_REQUESTS, body
            await asyncio.sleep(_retry_after(headers))  # as told
            status, headers, body = await _batch(alice, url, 3)
            assert status == 200, (status, headers.get("Retry-After"), body)
            assert [a.get("status") for a in body] == ["NEW"] * 3, body
        finally:
            await alice.close()

    run(harness, scenario)


def test_a_batch_the_burst_admits_can_pass(harness: Harness) -> None:
    """A key's burst of 3: the gateway's own 400 to a batch of 5 says "so 4 orders a batch at
    most". A batch of as many as it says must then pass once the bucket is full, or be
    refused 400 as one that can never pass. Was (fixed): it cost 4 tokens of a bucket that
    holds 3: a 429 whose Retry-After, however long it is waited, is followed by another 429,
    forever."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            api.key_limits = RateLimiter(100.0, 3)  # refills in 30 ms
            status, _, body = await _batch(alice, url, 5)
            said = re.search(r"so (\d+) orders a batch at most", body["msg"])
            assert status == 400 and said, body
            most = int(said[1])  # 4 now
            await asyncio.sleep(0.1)  # the bucket full again
            for _ in range(2):
                status, headers, body = await _batch(alice, url, most)
                if status != 429:
                    break
                await asyncio.sleep(_retry_after(headers))
            assert status == 200 or (status == 400 and "at most" in body["msg"]), (status, body)
        finally:
            await alice.close()

    run(harness, scenario)


def test_a_batch_refused_for_the_key_rate_may_be_sent_again_as_is(harness: Harness) -> None:
    """README: "The memory keeps only the requests the key's rate limit took (refused ones
    cannot fill it)". A batch refused 429 by the key's limit, sent again byte for byte
    within its window after its Retry-After (what urllib3's ``Retry(status_forcelist=[429],
    respect_retry_after_header=True)`` does), must be judged afresh: placed. Was (fixed): ``signed``
    remembered its signature before ``charge_batch`` refused it: 401 -1025 "request
    replayed", for a request that placed nothing."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            api.key_limits = RateLimiter(2.0, 2)  # one read, then a batch of two is over
            status, _, body = await _get(alice, url)
            assert status == 200, body
            raw = _batch_body(2)
            signed = alice.headers("POST", BATCH, "", raw)
            status, headers, body = await _post_batch(alice, url, raw, signed)
            assert status == 429 and body["code"] == codes.TOO_MANY_REQUESTS, body
            assert not api.core.requests  # nothing placed
            await asyncio.sleep(_retry_after(headers))
            status, _, body = await _post_batch(alice, url, raw, signed)
            assert status == 200, body
        finally:
            await alice.close()

    run(harness, scenario)


# -- sound -----------------------------------------------------------------------------------


def test_sound_the_key_rate_429_parses_and_its_retry_after_lets_the_next_through(
    harness: Harness,
) -> None:
    """Two at once, one a second: the third read is 429 ``{"code": -1003, "msg"}`` naming the
    limit, an integer ``Retry-After``; a fourth at once is refused too (and the first refusal
    spent nothing: it says the same wait); a request refused 401 for its signature spends no
    token of the key; waited out, the next read passes."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            api.key_limits = RateLimiter(1.0, 2)
            for _ in range(2):
                status, _, body = await _get(alice, url)
                assert status == 200, body
            status, headers, body = await _get(alice, url)
            assert status == 429 and set(body) == {"code", "msg"}, body
            assert body["code"] == codes.TOO_MANY_REQUESTS and "1/s" in body["msg"], body
            wait = _retry_after(headers)
            assert wait == 1, headers
            status, headers, _ = await _get(alice, url)
            assert status == 429 and _retry_after(headers) == 1
            status, _, body = await _get(alice, url, **{SIGNATURE: "0" * 64})
            assert status == 401 and body["code"] == -1022, body
            await asyncio.sleep(wait)
            status, _, body = await _get(alice, url)
            assert status == 200, body
        finally:
            await alice.close()

    run(harness, scenario)


def test_sound_the_key_rate_is_per_key_not_per_account(harness: Harness) -> None:
    """ALICE's first key spent; her second key, and BOB's, are served."""

    async def scenario(api: RestApi, url: str) -> None:
        first = await client(url, "ALICE", "alice-pw")
        second = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        try:
            api.key_limits = RateLimiter(0.01, 1)
            assert (await _get(first, url))[0] == 200
            status, headers, body = await _get(first, url)
            assert status == 429 and _retry_after(headers) >= 99, (headers, body)
            for other in (second, bob):
                status, _, body = await _get(other, url)
                assert status == 200, body
        finally:
            for c in (first, second, bob):
                await c.close()

    run(harness, scenario)


def test_sound_the_address_rate_429_names_it_and_its_retry_after_holds(harness: Harness) -> None:
    """The address's limit (2 at once, 1 a second): a public ping past it is 429 -1003
    naming the address and the limit, an integer Retry-After; waited out, served again."""

    async def scenario(api: RestApi, url: str) -> None:
        async with RestClient(url) as anon:
            api.ip_limits = RateLimiter(1.0, 2)
            for _ in range(2):
                assert (await anon.request("GET", "/api/v1/ping", signed=False))[0] == 200
            async with anon.session.get(f"{url}/api/v1/ping") as r:
                status, headers, body = r.status, dict(r.headers), await r.json()
            assert status == 429 and body["code"] == codes.TOO_MANY_REQUESTS, body
            assert "127.0.0.1" in body["msg"] and "1/s" in body["msg"], body
            await asyncio.sleep(_retry_after(headers))
            assert (await anon.request("GET", "/api/v1/ping", signed=False))[0] == 200

    run(harness, scenario)


def test_sound_the_order_rate_429_and_its_retry_after(slow_orders: Harness) -> None:
    """``risk.max_commands_per_s`` 2: exchangeInfo's ``rateLimits`` says so (``ORDERS``,
    per account, a burst of 2); the third order at once is 429 -1015 "Too many new
    orders" naming the limit, ``Retry-After: 1`` (1 / 2 rounded up); after it, an order is
    placed. Nothing was held for the refused one."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            async with alice.session.get(f"{url}/api/v1/exchangeInfo") as r:
                limits = (await r.json())["rateLimits"]
            orders = [x for x in limits if x["rateLimitType"] == "ORDERS"]
            assert orders == [{"rateLimitType": "ORDERS", "interval": "SECOND",
                               "intervalNum": 1, "perAccount": True, "limit": 2,
                               "burst": 2}], limits  # fmt: skip
            order = {**BID, "price": "100.00"}
            for _ in range(2):
                status, body = await _place(alice)
                assert status == 200, body
            async with alice.session.post(
                f"{url}/api/v1/order",
                data=(form := "&".join(f"{k}={v}" for k, v in order.items())).encode(),
                headers=alice.headers("POST", "/api/v1/order", "", form.encode())
                | {"Content-Type": "application/x-www-form-urlencoded"},
            ) as r:
                status, headers, body = r.status, dict(r.headers), await r.json()
            assert status == 429 and body["code"] == codes.TOO_MANY_ORDERS, body
            assert "2 orders per SECOND" in body["msg"], body
            assert _retry_after(headers) == 1
            held = api.core.requests
            assert not held, held
            await asyncio.sleep(1)
            status, body = await _place(alice)
            assert status == 200 and body["status"] == "NEW", body
            assert len(await alice.call("GET", OPEN, symbol="BTC-USD")) == 3
        finally:
            await alice.close()

    run(slow_orders, scenario)


@pytest.mark.parametrize("window", ["60001", "0", "abc", "-5", "5000.5", ""])
def test_sound_a_bad_recv_window_is_refused_naming_value_and_limit(
    harness: Harness, window: str
) -> None:
    """-1131, the msg naming the value sent and 1..60000 ms."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            now = time.time_ns() // 1_000_000
            status, _, body = await _signed_at(alice, url, now, window)
            assert status in (400, 401) and body["code"] == -1131, body
            assert repr(window) in body["msg"] and "1..60000" in body["msg"], body
        finally:
            await alice.close()

    run(harness, scenario)


def test_sound_the_receive_window_as_binance_bounds_it(harness: Harness) -> None:
    """A timestamp 500 ms ahead is taken, 3 s ahead refused -1021 naming server time and
    the range accepted; 6 s old refused with the default window (5000) and taken with
    ``recvWindow`` 10000; 60000, the maximum, is taken."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            now = time.time_ns() // 1_000_000
            assert (await _signed_at(alice, url, now + 500, None))[0] == 200
            status, _, body = await _signed_at(alice, url, now + 3_000, None)
            assert status in (400, 401) and body["code"] == -1021, body
            assert "server time" in body["msg"] and "accepted" in body["msg"], body
            # a gateway started a minute ago (one signed before its start is refused: README)
            api.verifier.not_before_ms, api.verifier.not_before_mono_ms = now - 60_000, None
            status, _, body = await _signed_at(alice, url, now - 6_000, None)
            assert body["code"] == -1021 and "recvWindow 5000" in body["msg"], body
            status, _, body = await _signed_at(alice, url, now - 6_000, "10000")
            assert status == 200, body
            assert (await _signed_at(alice, url, now + 1, "60000"))[0] == 200
        finally:
            await alice.close()

    run(harness, scenario)
