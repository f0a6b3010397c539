"""A hostile review of the REST API (the 70th review) from the side of a script written for
Binance's spot REST API and pointed at ringex: ``rest.py``, ``rest_params.py``,
``rest_public.py``, ``rest_history.py``, ``history.py``, ``signing.py``, ``api_errors.py``,
and the matcher's order checks behind them (``procs/core/order_checks.py``). Issue 10 asks for
"the conventions of the most used venue APIs"; such a user expects what they know to work the
same or to fail loudly, never to mean something else in silence.

Compared with Binance's documented spot conventions, what holds (the last test pins the core
of it): a Binance-signed request (``X-MBX-APIKEY``, ``timestamp`` and ``signature`` in the
query or body) is refused, 401 -2014 naming ``X-RINGEX-APIKEY``, and places nothing; ringex's
own scheme binds method, path, query and body, refuses a timestamp more than 1 s ahead or
older than the window (-1021), a window over 60 s (-1131), and a signature seen before, so it
accepts nothing Binance would refuse as a replay. A parameter Binance scripts send that
ringex does not read (``newOrderRespType``, ``quoteOrderQty``, ``recvWindow``,
``timestamp``) is refused (-1104) naming it; an off-tick or off-lot size, a float in JSON, an
empty value are refused naming the value. ``side``, ``type`` (LIMIT, MARKET, STOP_LOSS,
STOP_LOSS_LIMIT, LIMIT_MAKER), ``timeInForce``, ``icebergQty`` and the STP modes mean what
Binance's do (EXPIRE_TAKER/MAKER/BOTH as the taker's mode decides); IOC and FOK leftovers
are ``EXPIRED``, a crossing LIMIT_MAKER is -2010, a self-trade prevented is
``EXPIRED_IN_MATCH``. Order answers use Binance's names in Binance's units (``origQty``,
``executedQty``, ``cummulativeQuoteQty`` in quote units, times in ms, ``transactTime``,
``fills`` with ``tradeId``/``commission``/``commissionAsset``); balances' ``free`` and
``locked`` add up as Binance's (the hold, fee included, is locked); ``myTrades`` ``id``,
``isBuyer``, ``isMaker``, ``quoteQty`` and ``allOrders``/``myTrades`` ``orderId``/``fromId``
(inclusive, oldest first, newest ``limit`` when neither is given) mean what Binance's do;
klines are Binance's first nine columns; depth's ``lastUpdateId`` syncs with the diff stream
by Binance's rule; -1003 comes with 429 and an integer ``Retry-After``; -1007 (504) means
"may still execute" as Binance's does. A cancel or query naming the wrong symbol finds
nothing (-2011 / -2013).

Faults (each test below failed on the code it was written against; the first two are
documented differences now, README (REST), strict xfails; the third is fixed: the orders
table keeps each order's client id since 2026-11-27, ``NewOrder.client_id``, and an id the
gateway has forgotten is looked up there, ``rest_named.py``):

1. Self-trade prevention's default is ``NONE`` (``rest_params.new_order``:
   ``choice(params, "selfTradePreventionMode", STP, "NONE")``); Binance has applied
   ``EXPIRE_MAKER`` to every spot order sent without the parameter since 2023-10-26, and
   exchangeInfo does not say ringex's default. A Binance script whose orders cross its own
   trades with itself and pays both fees.
2. A stop whose ``stopPrice`` the last trade has already reached is executed on arrival
   (``order_checks._reached``, ``book.py``: "enters at once"); Binance refuses it, -2010
   "Order would trigger immediately". A protective stop placed after the market moved
   through it sells at once instead of being refused.
3. Once a finished order leaves the gateway's memory (``RestOrders.keep_done``, 10,000
   finished orders gateway-wide: about a second at the bench's rate), ``GET order`` by
   ``origClientOrderId`` answers -2013 "order does not exist" (``rest.py`` ``query_order``)
   and ``allOrders`` shows its ``clientOrderId`` as "" (``history.order_json``): the database
   keeps no client id. To a Binance client, -2013 on a status query means the order never
   reached the exchange, the signal to send it again: here it was filled.

Rigs: ``rest_rig.py`` (real HTTP in front of real rings, router and matcher in process;
ALICE 601 holds dollars, BOB 602 bitcoin; BTC-USD prices 2 decimals, tick 0.05, sizes 2
decimals); the third fault's test adds the database tests' private PostgreSQL and runs the
writer by hand (``unfiled_rig.file_all``).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from config.schema import DatabaseConfig
from procs.gateway.rest import RestApi
from tests.unit.gateway import unfiled_rig
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import LIMIT, client, rest_exchange, run

ORDER = "/api/v1/order"
SELL = {**LIMIT, "side": "SELL"}


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


@pytest.fixture
def with_history(instance: str, tmp_path: Path, dsn: str) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path, DatabaseConfig(dsn=dsn))


@pytest.mark.xfail(
    strict=True,
    reason="a documented difference (README, REST): selfTradePreventionMode defaults to NONE, "
    "Binance's to EXPIRE_MAKER",
)
def test_a_self_trade_without_a_mode_is_prevented_as_on_binance(harness: Harness) -> None:
    """What is wrong: an order sent without ``selfTradePreventionMode`` gets ``NONE``
    (``rest_params.new_order``), so an account's crossing order trades with its own resting
    one: both sides filled, both fees charged, a trade on the tape that no one else made.
    exchangeInfo lists no default mode, so nothing tells a client. Binance: since 2023-10-26
    every spot order without the parameter gets ``EXPIRE_MAKER`` (exchangeInfo's
    ``defaultSelfTradePreventionMode``): the resting order expires ``EXPIRED_IN_MATCH`` and
    the taker goes on, as ringex does when the mode is sent. A grid or market-making script
    written for Binance relies on that. Expected: without the parameter, what
    ``EXPIRE_MAKER`` gives. Actual: both orders ``FILLED`` against each other, a fill with a
    commission in the taker's answer."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        try:
            await alice.call("POST", ORDER, **LIMIT, price="300.00", quantity="0.10")
            await bob.call("POST", ORDER, **SELL, price="300.00", quantity="0.10")  # ALICE: BTC
            maker = await alice.call("POST", ORDER, **SELL, price="290.00", quantity="0.05")
            taker = await alice.call("POST", ORDER, **LIMIT, price="290.00", quantity="0.05")
            ended = await alice.call("GET", ORDER, symbol="BTC-USD", orderId=maker["orderId"])
        finally:
            await alice.close()
            await bob.close()
        assert (taker["status"], taker["fills"]) == ("NEW", []), taker
        assert ended["status"] == "EXPIRED_IN_MATCH", ended

    run(harness, scenario)


@pytest.mark.xfail(
    strict=True,
    reason="a documented difference (README, REST): a stop already reached is taken and "
    "triggers at once; Binance refuses it (-2010)",
)
def test_a_stop_whose_price_is_already_reached_is_refused_not_executed(harness: Harness) -> None:
    """What is wrong: a ``STOP_LOSS`` or ``STOP_LOSS_LIMIT`` SELL whose ``stopPrice`` is at or
    above the last trade (a BUY's at or below) triggers the moment it arrives
    (``order_checks._reached``; ``book.py``: "A stop whose trigger is already reached when it
    arrives enters at once"): the answer is 200, ``FILLED``, sold at the bid. Binance refuses
    such a stop: -2010 "Order would trigger immediately." (its STOP_LOSS triggers only when
    the price moves to the stop; a stop already passed is the script's mistake, or the market
    moved while it was sent, and it is told so). A script that places its protective stop
    just under the entry, after the market dropped through it, is used to that refusal and
    decides itself; here it has sold. Expected: 400 -2010 naming the stop and the last
    price, nothing traded. Actual: 200 ``FILLED`` at 295.00 for both types."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        answers = []
        try:
            await alice.call("POST", ORDER, **LIMIT, price="300.00", quantity="0.10")
            await bob.call("POST", ORDER, **SELL, price="300.00", quantity="0.10")  # last 300
            await alice.call("POST", ORDER, **LIMIT, price="295.00", quantity="0.20")  # a bid
            stop: dict[str, Any] = {
                "symbol": "BTC-USD", "side": "SELL", "quantity": "0.05", "stopPrice": "310.00"
            }  # fmt: skip
            extras: tuple[dict[str, Any], ...] = (
                {"type": "STOP_LOSS_LIMIT", "price": "295.00", "timeInForce": "GTC"},
                {"type": "STOP_LOSS"},
            )
            for extra in extras:
                answers.append(await bob.request("POST", ORDER, **stop, **extra))
        finally:
            await alice.close()
            await bob.close()
        for status, body in answers:
            assert (status, body.get("code")) == (400, -2010), body
            assert "310.00" in body["msg"], body

    run(harness, scenario)


def test_a_filled_orders_client_order_id_names_it_once_the_gateway_forgot_it(
    with_history: Harness,
) -> None:
    """What is wrong: ``GET /api/v1/order`` by ``origClientOrderId`` looks only in the
    gateway's memory (``RestOrders.order``: open orders, then the last ``keep_done`` finished
    ones, 10,000 gateway-wide, about one second of the bench's 10k orders/s), then answers
    -2013 "order does not exist" (``rest.py`` ``query_order``): the database row has no
    client id, and ``allOrders`` shows the order with ``clientOrderId`` "" (``history.
    order_json``). Binance answers a query by ``origClientOrderId`` from its order history
    and keeps the id in ``allOrders``; its -2013 means the order does not exist, which is
    how a client learns that an order whose answer it lost (a -1007 timeout, a dropped
    connection) never reached the exchange, and sends it again: here that order filled,
    and the script buys twice. Forced here by a ``keep_done`` of 1 (what a busy gateway
    reaches in a second). Expected: the order found by its id, ``FILLED``, and ``allOrders``
    naming its ``clientOrderId``; at the least not -2013. Actual: 400 -2013 "order does not
    exist: origClientOrderId=mine-1", and ``clientOrderId`` "" in ``allOrders``."""
    h = with_history

    async def scenario(api: RestApi, url: str) -> None:
        api.core.keep_done = 1
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        try:
            await bob.call("POST", ORDER, **SELL, price="300.00", quantity="0.30")
            mine = await alice.call(
                "POST", ORDER, **LIMIT, price="300.00", quantity="0.10", newClientOrderId="mine-1"
            )
            assert mine["status"] == "FILLED", mine
            for _ in range(2):  # other orders finish after it (any account's would do)
                await alice.call(
                    "POST", ORDER, **LIMIT, price="300.00", quantity="0.10", timeInForce="IOC"
                )
            await unfiled_rig.file_all(h)
            status, found = await alice.request(
                "GET", ORDER, symbol="BTC-USD", origClientOrderId="mine-1"
            )
            listed = await alice.call("GET", "/api/v1/allOrders", symbol="BTC-USD")
        finally:
            await alice.close()
            await bob.close()
        assert found.get("code") != -2013, found
        assert (status, found["orderId"], found["status"]) == (200, mine["orderId"], "FILLED")
        (row,) = [o for o in listed if o["orderId"] == mine["orderId"]]
        assert row["clientOrderId"] == "mine-1", row

    run(h, scenario)


# -- checked ----------------------------------------------------------------------------------


def _binance_signed(secret: str, params: dict[str, str]) -> str:
    """A form body signed as python-binance signs one: HMAC-SHA256 of the url-encoded
    parameters with ``timestamp`` and ``recvWindow``, ``signature`` appended."""
    stamped = {**params, "recvWindow": "5000", "timestamp": str(time.time_ns() // 1_000_000)}
    text = urlencode(stamped)
    return (
        text + "&signature=" + hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()
    )


def test_checked_binance_shaped_requests_fail_loudly_or_mean_the_same(harness: Harness) -> None:
    """Checked: a Binance-signed order is refused and places nothing; the parameters Binance
    scripts send that ringex does not read are refused naming them; time in force, post-only
    and balances mean what they mean on Binance; a wrong symbol finds no order."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        try:
            order: dict[str, Any] = {
                **LIMIT,
                "price": "100.00",
                "quantity": "0.10",
                "timeInForce": "GTC",
            }
            async with aiohttp.ClientSession() as s:
                headers = {
                    "X-MBX-APIKEY": alice.api_key,
                    "Content-Type": "application/x-www-form-urlencoded",
                }
                body = _binance_signed(alice.secret, order)
                async with s.post(url + ORDER, data=body, headers=headers) as r:
                    refused = (r.status, await r.json())
                query = _binance_signed(alice.secret, {"symbol": "BTC-USD"})
                async with s.get(f"{url}/api/v1/openOrders?{query}", headers=headers) as r:
                    refused_get = (r.status, await r.json())
            assert refused[0] == 401 and refused[1]["code"] == -2014, refused
            assert "X-RINGEX-APIKEY" in refused[1]["msg"], refused
            assert refused_get[0] == 401, refused_get
            assert await alice.call("GET", "/api/v1/openOrders") == []
            for name, value in (("newOrderRespType", "FULL"), ("quoteOrderQty", "30.00")):
                unread: dict[str, Any] = {name: value}
                status, body = await alice.request("POST", ORDER, **order, **unread)
                assert (status, body["code"]) == (400, -1104) and name in body["msg"], body
            await bob.call("POST", ORDER, **SELL, price="300.00", quantity="0.10")
            status, maker = await alice.request(
                "POST", ORDER, symbol="BTC-USD", side="BUY", type="LIMIT_MAKER",
                price="300.00", quantity="0.10",
            )  # fmt: skip
            assert (status, maker["code"]) == (400, -2010), maker
            ioc = await alice.call(
                "POST", ORDER, **LIMIT, price="300.00", quantity="0.20", timeInForce="IOC"
            )
            assert (ioc["status"], ioc["executedQty"]) == ("EXPIRED", "0.10"), ioc
            assert ioc["cummulativeQuoteQty"] == "30.0000" and ioc["fills"][0]["tradeId"], ioc
            fok = await alice.call(
                "POST", ORDER, **LIMIT, price="300.00", quantity="0.10", timeInForce="FOK"
            )
            assert (fok["status"], fok["executedQty"]) == ("EXPIRED", "0.00"), fok
            before = await alice.call("GET", "/api/v1/account")
            rest = await alice.call("POST", ORDER, **order)
            after = await alice.call("GET", "/api/v1/account")
            (usd0,) = [b for b in before["balances"] if b["asset"] == "USD"]
            (usd1,) = [b for b in after["balances"] if b["asset"] == "USD"]
            total = float(usd0["free"]) + float(usd0["locked"])
            assert float(usd1["free"]) + float(usd1["locked"]) == pytest.approx(total)
            assert float(usd1["locked"]) >= 10.0, usd1  # price x quantity (and the fee) locked
            status, body = await alice.request(
                "DELETE", ORDER, symbol="ETH-USD", orderId=rest["orderId"]
            )
            assert (status, body["code"]) == (400, -1121), body  # no such symbol here
            status, body = await alice.request("DELETE", ORDER, symbol="BTC-USD", orderId=999)
            assert (status, body["code"]) == (400, -2011), body
            gone = await alice.call("DELETE", ORDER, symbol="BTC-USD", orderId=rest["orderId"])
            assert gone["status"] == "CANCELED", gone
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)
