"""Hostile review 210, part two: the REST amend (``PUT /api/v1/order``) against the book, the
private stream and a FIX replace of the same order. Helpers: ``test_review210_replace.py``.

Fault (fixed): a REST amend that omits a field took it from the gateway's view while a FIX
replace of the same order was in flight (``rest_amend.py`` looked only at REST amends), so
the FIX size cut was undone; it is refused now while a FIX cancel or replace of this
gateway's waits. One sent through another gateway cannot be seen here: a documented limit
(README, REST)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from procs.gateway.rest import RestApi
from procs.gateway.rest_client import RestClient
from tests.unit.gateway.harness import Harness, settled
from tests.unit.gateway.rest_rig import ALICE, LIMIT, client, fix_user, reports, rest_exchange, run
from tests.unit.gateway.test_review210_replace import (
    BUY,
    _holds_agree,
    _place,
    _published,
    _resting,
    _sell,
    _send_g,
)

ORDER = "/api/v1/order"


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


def _amends(api: RestApi) -> int:
    return sum(r.kind == "amend" for r in api.core.requests.values())


async def _amend_published(api: RestApi, n: int) -> None:
    await settled(lambda: _amends(api) == n and not api.core.outgoing, 5.0)
    assert _amends(api) == n and not api.core.outgoing


async def _bid(alice: RestClient, price: str, qty: str) -> dict[str, Any]:
    return await alice.call("POST", ORDER, **LIMIT, price=price, quantity=qty)  # type: ignore[no-any-return]


def _view(o: dict[str, Any]) -> tuple[Any, ...]:
    return o["price"], o["origQty"], o["executedQty"], o["status"]


def test_checked_rest_amend_of_a_partly_filled_order_agrees_everywhere(harness: Harness) -> None:
    """Scenario: ALICE's API bid 0.50 at 100.00 fills 0.20 (BOB's FIX sell); she amends it to
    a total of 0.40, then to 0.20 (what has filled). Expected: the answer, ``GET order`` and
    the stream's REPLACED report agree: 0.40 / 0.20 executed / PARTIALLY_FILLED, the book
    0.20 open; then FILLED with 0.20 executed, nothing resting, no hold. Found so."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await fix_user(harness, "BOB", "bob-pw")
        try:
            ws = await alice.stream()
            oid = (await _bid(alice, "100.00", "0.50"))["orderId"]
            await _sell(bob, "S1", "0.20")
            await bob.expect("8")
            ref = {"symbol": "BTC-USD", "orderId": oid}
            await settled(lambda: _resting(harness).get(oid, (0, 0, 0))[1] == 30)
            amended = await alice.call("PUT", ORDER, **ref, quantity="0.40")
            want = ("100.00", "0.40", "0.20", "PARTIALLY_FILLED")
            assert _view(amended) == want
            assert _view(await alice.call("GET", ORDER, **ref)) == want
            assert _resting(harness)[oid] == (10_000, 20, 0)
            _holds_agree(harness)
            ended = await alice.call("PUT", ORDER, **ref, quantity="0.20")
            assert _view(ended) == ("100.00", "0.20", "0.20", "FILLED")
            assert _view(await alice.call("GET", ORDER, **ref)) == _view(ended)
            assert _resting(harness) == {}
            _holds_agree(harness)
            seen = [r for r in await reports(ws, 1.0) if r.get("executionType") == "REPLACED"]
            assert [_view(r) for r in seen][:1] == [want], seen
            await ws.close()
        finally:
            await alice.close()

    run(harness, scenario)


def test_checked_rest_amend_racing_a_fill(harness: Harness) -> None:
    """Scenario: ALICE's API bid 0.50 at 100.00; with the pipeline paused BOB's FIX sell of
    0.20 is published, then her amend to a total of 0.30. Expected: the fill lands first;
    the amend's answer is 0.30 total, 0.20 executed, PARTIALLY_FILLED, 0.10 resting; holds
    agree. Found so."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await fix_user(harness, "BOB", "bob-pw")
        try:
            oid = (await _bid(alice, "100.00", "0.50"))["orderId"]
            harness.pause()
            await _sell(bob, "S1", "0.20")
            await _published(harness, new=1)
            put = asyncio.create_task(
                alice.call("PUT", ORDER, symbol="BTC-USD", orderId=oid, quantity="0.30")
            )
            await _amend_published(api, 1)
            harness.resume()
            assert _view(await put) == ("100.00", "0.30", "0.20", "PARTIALLY_FILLED")
            assert _resting(harness)[oid] == (10_000, 10, 0)
            _holds_agree(harness)
        finally:
            await alice.close()

    run(harness, scenario)


def test_checked_rest_amend_of_a_waiting_stop_and_a_crossing_maker(harness: Harness) -> None:
    """Scenario: ALICE's API stop-limit bid (stop 110.00, limit 110.00) and LIMIT_MAKER bid at
    100.00 with BOB asking 101.00; the stop amended to 109.00, the maker to 101.00.
    Expected: both refused (-2011: a stop not triggered yet; POST_ONLY_WOULD_TAKE), both
    orders and their holds as they were, no trade. Found so."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await fix_user(harness, "BOB", "bob-pw")
        try:
            await _sell(bob, "S1", "0.10", "101.00")
            await bob.expect("8")
            stop = await alice.call(
                "POST", ORDER, symbol="BTC-USD", side="BUY", type="STOP_LOSS_LIMIT",
                price="110.00", stopPrice="110.00", quantity="0.10", timeInForce="GTC",
            )  # fmt: skip
            maker = await alice.call(
                "POST", ORDER, symbol="BTC-USD", side="BUY", type="LIMIT_MAKER", price="100.00",
                quantity="0.10",
            )  # fmt: skip
            status, body = await alice.request(
                "PUT", ORDER, symbol="BTC-USD", orderId=stop["orderId"], price="109.00"
            )
            assert status == 400 and body["code"] == -2011 and "not triggered" in body["msg"]
            status, body = await alice.request(
                "PUT", ORDER, symbol="BTC-USD", orderId=maker["orderId"], price="101.00"
            )
            assert status == 400 and "POST_ONLY_WOULD_TAKE" in body["msg"], body
            assert _resting(harness)[maker["orderId"]] == (10_000, 10, 0)
            (waiting,) = harness.matcher.matcher.books[1].stops.values()
            assert (waiting.price, waiting.leaves) == (11_000, 10)
            _holds_agree(harness)
        finally:
            await alice.close()

    run(harness, scenario)


def test_a_rest_price_amend_behind_a_fix_size_cut_keeps_the_cut(harness: Harness) -> None:
    """Scenario: ALICE's FIX bid A1 0.50 at 100.00, followed by her REST key; with the
    pipeline paused her FIX G cuts it to 0.20 (published), then her REST amend names only
    ``price=99.00``. Expected (as review 11 fixed for two REST amends): the REST amend is
    refused while the FIX replace waits for its answer, or applied on top of it; the order
    ends 0.20 at most, never larger than the last size the owner asked for. Was (fixed): the
    REST amend sent ReplaceOrder(99.00, 0.50), the total from the gateway's stale view; the
    matcher applies both in turn and the order rests 0.50 at 99.00, the cut undone (more
    exposure than asked, its hold back up), and the FIX session is told so only by a
    Restated report."""

    async def scenario(api: RestApi, url: str) -> None:
        alice_api = await client(url, "ALICE", "alice-pw")
        alice = await fix_user(harness, "ALICE", "alice-pw")
        try:
            await alice_api.call("GET", "/api/v1/openOrders")  # ALICE uses the API: followed
            ack = await _place(alice, "A1", BUY, "0.50", "100.00")
            oid = int(ack.get(37))
            await settled(lambda: api.core.order(ALICE, oid) is not None)
            harness.pause()
            await _send_g(alice, "A1", "R1", BUY, "0.20", "100.00")
            await _published(harness, requests=1)
            put = asyncio.create_task(
                alice_api.request("PUT", ORDER, symbol="BTC-USD", orderId=oid, price="99.00")
            )
            await settled(lambda: _amends(api) == 1 and not api.core.outgoing, 2.0)
            harness.resume()
            status, body = await put
            rep = await alice.expect("8", 5.0)
            assert (rep.get(150), rep.get(38)) == (b"5", b"0.20")
            await settled(lambda: _amends(api) == 0)
            price, open_qty, _ = _resting(harness)[oid]
            assert open_qty <= 20, (
                f"the FIX cut to 0.20 was undone: {open_qty / 100:.2f} open at {price / 100:.2f}"
                f" (REST answered {status} {body})"
            )
            _holds_agree(harness)
        finally:
            await alice_api.close()

    run(harness, scenario)
