"""Faults a forty-seventh hostile review found in the REST API's signed order entry: what a
trading client gets when it places, amends and cancels orders (``POST``, ``PUT`` and ``DELETE
/api/v1/order``). Each test failed on the code it was written against, for the fault it
names (its docstring says what was wrong and what came: "Actual"), and passes since its fix
(the same commit).

Rigs: ``rest_rig.py`` (real HTTP in front of real rings, an in-process router and matcher,
FIX clients from ``harness.py`` on the same gateway); races are forced with the harness'
paused pipeline, so that commands wait in the gateway's ring in a known order and their
events reach the gateway in one pass. BTC-USD: prices 2 decimals (tick 0.05), sizes 2
decimals. ALICE (601) holds dollars, BOB (602) bitcoin.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from config.edges import RestConfig
from config.schema import DatabaseConfig
from procs.gateway import api_errors as codes
from procs.gateway.rest import RestApi
from tests.unit.gateway.harness import Harness, config, settled
from tests.unit.gateway.rest_rig import (
    ALICE,
    BOB,
    LIMIT,
    client,
    fix_user,
    rest_exchange,
    run,
)
from tests.unit.gateway.test_review17_outcomes import fix_order

ORDER = "/api/v1/order"
SELL = {**LIMIT, "side": "SELL"}
MAKER = {**LIMIT, "type": "LIMIT_MAKER"}


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


#: BTC-USD's rules in ``strict``: a limit collar of 10 % around the last trade, orders of at
#: least 0.10, and at most 7 open orders an account.
BAND_BPS, MIN_QTY, MAX_OPEN = 1_000, 10, 7


@pytest.fixture
def strict(instance: str, tmp_path: Path) -> Iterator[Harness]:
    """``rest_exchange``'s accounts on a BTC-USD with a limit collar, a minimum size above
    one lot and a small open-order limit."""
    rest = RestConfig(
        port=0, key_rate_per_s=1_000, key_burst=1_000, login_rate_per_s=100, login_burst=100,
    )  # fmt: skip
    cfg = config(instance, tmp_path, rest=rest)
    btc = msgspec.structs.replace(cfg.symbols[0], limit_band_bps=BAND_BPS, min_qty=MIN_QTY)
    risk = msgspec.structs.replace(cfg.risk, max_open_orders=MAX_OPEN)
    cfg = msgspec.structs.replace(
        cfg, symbols=[btc], risk=risk, database=DatabaseConfig(enabled=False)
    )
    h = Harness(cfg)
    h.add_user("ALICE", "alice-pw", ALICE)
    h.add_user("BOB", "bob-pw", BOB)
    h.fund(ALICE, usd=1_000_000 * 10**6, btc=0)
    h.fund(BOB, usd=0, btc=10 * 10**6)
    yield h
    h.close()


# -- refusals that must name the value and the limit ----------------------------------------------


def test_an_iceberg_slice_below_the_minimum_size_is_refused_naming_it(strict: Harness) -> None:
    """What is wrong: README and ``openapi.py`` ("the message names the value and the rule");
    review 31 made ``rest_params.new_order`` refuse at the edge, naming ``icebergQty``, every
    iceberg the matcher would refuse (one that cannot rest, one cut into more than
    ``ICEBERG_PARTS`` slices) rather than let its bare code through. The matcher also refuses
    a slice below the symbol's ``min_qty`` (``order_checks._check_order``: ``QTY_OUT_OF_RANGE``),
    and ``new_order`` does not check that one. ALICE sends 1.00 in slices of 0.05 on a symbol
    whose minQty is 0.10.
    Expected: 400 -1013 naming icebergQty 0.05 and minQty 0.10.
    Actual: -2010 "order rejected: QTY_OUT_OF_RANGE (3012) symbol=BTC-USD side=BUY
    type=LIMIT": neither the parameter, its value nor the limit (quantity 1.00 is in range),
    and the order took an exchange order id to be rejected."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            status, body = await alice.request(
                "POST", ORDER, **LIMIT, price="90.00", quantity="1.00", icebergQty="0.05"
            )
            assert (status, body["code"]) == (400, codes.FILTER_FAILURE), body
            assert all(w in body["msg"] for w in ("icebergQty", "0.05", "0.10")), body
        finally:
            await alice.close()

    run(strict, scenario)


def test_an_amend_growing_an_iceberg_past_its_slices_names_the_limit(harness: Harness) -> None:
    """What is wrong: README (the matcher: "at most ``iceberg_parts`` slices ... a replace
    included"; errors name the value) and ``openapi.py`` ("the message names the value and the
    rule"). A new order cut into too many slices is refused by ``rest_params.new_order``
    with "icebergQty 0.01 cuts quantity 2.00 into 200 parts, at most 100 (ICEBERG_PARTS)";
    an amend of a resting iceberg to the same total is not checked by
    ``AmendRoute.amend_order`` (rest_amend.py), which passes the matcher's refusal
    (``Book._replace``: ``INVALID_QTY``) through as its code name. ALICE rests 1.00 in
    slices of 0.01 (100 parts, the limit) and amends it to 2.00.
    Expected: a 400 that names the parts (200) and the limit (100 / ICEBERG_PARTS).
    Actual: -2011 "amend rejected: INVALID_QTY (3007) orderId=1 price=90.00
    quantity=2.00": a client cannot tell what was invalid about 2.00."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            placed = await alice.call(
                "POST", ORDER, **LIMIT, price="90.00", quantity="1.00", icebergQty="0.01"
            )
            status, body = await alice.request(
                "PUT", ORDER, symbol="BTC-USD", orderId=placed["orderId"], quantity="2.00"
            )
            assert status == 400, body
            msg = body["msg"]
            assert "part" in msg.lower() and re.search(r"\b100\b", msg), body
        finally:
            await alice.close()

    run(harness, scenario)


@pytest.mark.parametrize("refusal", ["band", "open_orders"])
def test_an_order_the_exchange_refuses_is_told_the_value_and_the_limit(
    strict: Harness, refusal: str
) -> None:
    """What is wrong: README ("errors are {code, msg} naming the value"), ``openapi.py``'s
    400 ("The message names the value and the rule") and STYLE habit 12 ("price 10.005 is
    not a multiple of tick 0.01"). ``RestApi.new_order`` (rest.py) builds the message of a
    refusal by the router or matcher from the result code's name, the symbol, side and type
    only, although it holds the order's price and quantity and the config holds the limits
    (``limit_band_bps``, ``risk.max_open_orders``); an amend's refusal names at least the
    price and quantity. Cases: ``band``: after a trade at 100.00, a bid at 150.00 outside
    the 10 % collar; ``open_orders``: an eighth open order past ``max_open_orders`` 7.
    Expected: the price refused and the band (1000 bps, or the range it allows); the
    count or limit of open orders (7).
    Actual: "order rejected: PRICE_OUT_OF_BAND (3004) symbol=BTC-USD side=BUY type=LIMIT",
    "order rejected: TOO_MANY_OPEN_ORDERS (2007) symbol=BTC-USD side=BUY type=LIMIT"."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        try:
            if refusal == "band":
                await alice.call("POST", ORDER, **LIMIT, price="100.00", quantity="0.10")
                await bob.call("POST", ORDER, **SELL, price="100.00", quantity="0.10")
                status, body = await alice.request(
                    "POST", ORDER, **LIMIT, price="150.00", quantity="0.10"
                )
                assert (status, body["code"]) == (400, codes.NEW_ORDER_REJECTED), body
                msg = body["msg"]
                assert "150.00" in msg and ("1000" in msg or "110.00" in msg), body
            else:
                for _ in range(MAX_OPEN):
                    await alice.call("POST", ORDER, **LIMIT, price="80.00", quantity="0.10")
                status, body = await alice.request(
                    "POST", ORDER, **LIMIT, price="80.00", quantity="0.10"
                )
                assert (status, body["code"]) == (400, codes.NEW_ORDER_REJECTED), body
                assert re.search(rf"\b{MAX_OPEN}\b", body["msg"]), body
        finally:
            await alice.close()
            await bob.close()

    run(strict, scenario)


# -- cancels and amends -------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["DELETE", "PUT"])
def test_a_cancel_or_amend_overtaken_by_a_fill_says_filled_not_unknown(
    harness: Harness, method: str
) -> None:
    """What is wrong: review 6 made a cancel of one's own FILLED order say so ("too late")
    rather than "unknown order", but only where the gateway knew the order finished before
    the cancel was sent (the check before ``core.cancel`` in ``RestApi.cancel_order``). The
    common case is a race: the cancel (or amend) is on its way when a taker fills the order;
    the matcher then refuses it with ``UNKNOWN_ORDER``, and ``cancel_order`` (rest.py) and
    ``AmendRoute.amend_order`` (rest_amend.py) answer it "unknown order" (``NOT_YOURS``)
    although the same batch told the gateway the order is the caller's and FILLED
    (``GET order`` says so a moment later). The FIX side answers the very same race with an
    OrderCancelReject 102=0 (too late) and 39=2 (``_send_cancel_reject``: the order is
    finished). A client told "unknown order" for its own order suspects a wrong id or a
    lost order and reconciles, rather than book the fill.
    Here ALICE's bid rests; with the pipeline held, BOB's crossing sell and then ALICE's
    cancel (or amend to 0.05) wait in the ring; both execute in that order.
    Expected: -2011 whose message says the order is FILLED / too late.
    Actual: "cancel rejected: unknown order orderId=1", "amend rejected: unknown order
    orderId=1 price=100.00 quantity=0.05"."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        try:
            bid = await alice.call("POST", ORDER, **LIMIT, price="100.00", quantity="0.10")
            named: dict[str, Any] = {"symbol": "BTC-USD", "orderId": bid["orderId"]}
            if method == "PUT":
                named["quantity"] = "0.05"
            harness.pause()
            take = asyncio.create_task(
                bob.request("POST", ORDER, **SELL, price="100.00", quantity="0.10")
            )
            await settled(lambda: len(api.core.requests) == 1)
            late = asyncio.create_task(alice.request(method, ORDER, **named))
            await settled(lambda: len(api.core.requests) == 2)
            harness.resume()
            assert (await take)[1]["status"] == "FILLED"
            status, body = await late
            now = await alice.call("GET", ORDER, symbol="BTC-USD", orderId=bid["orderId"])
            assert now["status"] == "FILLED", now
            assert (status, body["code"]) == (400, codes.CANCEL_REJECTED), body
            msg = body["msg"].lower()
            assert "unknown order" not in msg, body
            assert "filled" in msg or "too late" in msg, body
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)


# -- client order ids -----------------------------------------------------------------------------


def test_a_client_order_id_an_open_fix_order_holds_is_refused(harness: Harness) -> None:
    """What is wrong: README: "A ``newClientOrderId`` that an open order of the account
    placed through this gateway still holds is refused (``-2010``), so
    ``origClientOrderId`` always names one order"; ``openapi.py``: "Refused (-2010) while an
    open order of the account has it". An order ALICE placed over FIX on this gateway is
    followed by the API under its ClOrdID as ``clientOrderId`` (``from_fix``; ``openOrders``
    lists it so, and ``GET order`` finds it by ``origClientOrderId``), but
    ``RestApi.new_order`` asks ``RestOrders.in_use`` (rest_orders.py), which looks only in
    ``client_ids``, the orders placed through the API ("other gateways' and FIX's are not in
    this namespace"). ALICE rests bid ``dup1`` over FIX, then POSTs another with
    ``newClientOrderId=dup1``.
    Expected: 400 -2010 "duplicate order", one open order named dup1.
    Actual: accepted; ``openOrders`` lists orders 1 and 2 both as ``dup1``, and
    ``origClientOrderId=dup1`` names the API's one only, so the FIX one can no longer be
    cancelled or queried by the id the API shows for it."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        fix = await fix_user(harness, "ALICE", "alice-pw")
        try:
            assert await alice.call("GET", "/api/v1/openOrders") == []  # ALICE uses the API
            await fix.send("D", *fix_order("dup1", "1", "0.10", "90.00"))
            ack = await fix.expect("8")
            assert ack.get(150) == b"0", ack
            listed = await alice.call("GET", "/api/v1/openOrders")
            assert [o["clientOrderId"] for o in listed] == ["dup1"], listed
            status, body = await alice.request(
                "POST", ORDER, **LIMIT, price="95.00", quantity="0.20", newClientOrderId="dup1"
            )
            listed = await alice.call("GET", "/api/v1/openOrders")
            named = [o["orderId"] for o in listed if o["clientOrderId"] == "dup1"]
            assert (status, body.get("code")) == (400, codes.NEW_ORDER_REJECTED), (body, named)
            assert len(named) == 1, listed
        finally:
            await alice.close()

    run(harness, scenario)


# -- order types and answers ----------------------------------------------------------------------


def test_a_day_post_only_order_can_be_placed_as_over_fix(harness: Harness) -> None:
    """What is wrong: README (the matcher: "limit (GTC, DAY, IOC, FOK, post-only)"), the
    matcher (``order_checks._check_order``: post-only needs a time in force that rests, GTC
    or DAY) and the FIX order entry (``order_fields.cannot_post``: "Day, 0, or GTC, 1,
    does") all take a post-only DAY order, and the API shows one placed over FIX as type
    ``LIMIT_MAKER`` with ``timeInForce`` ``DAY``. ``rest_params.new_order`` refuses
    ``type=LIMIT_MAKER`` with ``timeInForce=DAY``: "LIMIT_MAKER rests: timeInForce must be
    GTC", a reason that is false (DAY rests: the same function's iceberg check says "GTC and
    DAY do") and a message that does not name the value refused. A market maker that quotes
    for the session only cannot do it over REST.
    Expected: 200, type LIMIT_MAKER, timeInForce DAY, resting (and refused only if it would
    take).
    Actual: 400 -1100 "LIMIT_MAKER rests: timeInForce must be GTC"."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            status, body = await alice.request(
                "POST", ORDER, **MAKER, price="90.00", quantity="0.10", timeInForce="DAY"
            )
            assert status == 200, body
            assert (body["type"], body["timeInForce"], body["status"]) == (
                "LIMIT_MAKER", "DAY", "NEW",
            ), body  # fmt: skip
        finally:
            await alice.close()

    run(harness, scenario)


def test_a_new_orders_answer_lists_only_the_fills_its_own_command_made(harness: Harness) -> None:
    """What is wrong: rest_orders.py's docstring: "so a new order's answer carries the fills
    its own command made" (``Outcome``: "the fills its own command made"); in the venue API
    the REST API follows, an order's ``fills`` are those of its placement, taken as the
    taker. ``RestOrders._fill`` appends a fill to the pending answer of any order whose
    ``ref`` is still set, and ``ref`` is cleared only at ``end_of_batch``: when another
    client's command fills the new order as a maker in the same pass of the gateway over
    the rings, that fill goes into the new order's answer. FIX answers the same with a New
    (150=0, CumQty 0) and then a separate fill report. Here ALICE's bid (resting) and then
    BOB's sell of 0.04 at its price wait in the ring; both execute before the gateway reads.
    Expected: ALICE's answer ``fills`` [] and ``executedQty`` what those fills sum to
    (0.00); BOB's fill reaches her as a TRADE report and in ``GET order``.
    Actual: ``fills`` [{qty 0.04, tradeId 1, isMaker true}] and executedQty 0.04
    (PARTIALLY_FILLED): a client that books its order's placement fills as taker trades
    books BOB's trade as one of its own takes, at the taker fee the answer does not show."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        try:
            harness.pause()
            bid = asyncio.create_task(
                alice.request("POST", ORDER, **LIMIT, price="100.00", quantity="0.10")
            )
            await settled(lambda: len(api.core.requests) == 1)
            ask = asyncio.create_task(
                bob.request("POST", ORDER, **SELL, price="100.00", quantity="0.04")
            )
            await settled(lambda: len(api.core.requests) == 2)
            harness.resume()
            (status, placed), (_, took) = await bid, await ask
            assert status == 200 and took["status"] == "FILLED", (placed, took)
            assert [f["isMaker"] for f in placed["fills"]] == [], placed
            assert placed["executedQty"] == "0.00", placed
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)
