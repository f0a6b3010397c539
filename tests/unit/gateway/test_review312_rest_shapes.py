"""Review 312: REST answers as a Binance client library reads them.

Reviewed: README (The REST API and the private stream: "the keys the most used venue APIs
give them", the code list, the documented differences of review 70), ``/openapi.json``
(``procs/gateway/openapi.py``), ``procs/gateway/rest_public.py`` (the market-data proxy,
exchangeInfo, klines), ``rest_new_orders.py`` (``placed``), ``api_errors.py``,
``rest_params.py`` (``refusal``), ``procs/core/sequencer.py`` (the account's command rate),
``procs/marketdata/web.py`` and ``messages.py`` (what the proxy passes through); earlier
reviews' Binance pins (70, 196, 306) are not reported again.

Rig: ``tests/unit/gateway/rest_rig.py`` (real HTTP in front of real rings, router and matcher
in process; ALICE 601 with dollars, BOB 602 with bitcoin; BTC-USD prices 2 decimals, tick
0.05, sizes 2 decimals); review 47's stand-in market-data port (``market_data``: the real
``Site`` over a ``MarketState`` fed trades); the database tests' private PostgreSQL with the
writer run by hand (``unfiled_rig.file_all``) for the history routes.

Faults found (each fixed; its test says what it was):

1. ``GET /api/v1/ticker/24hr`` answers the market-data stream's payload (``{"e":
   "24hrTicker", "s", "p", "P", "w", "o", "h", "l", "c", "Q", "v", "q", "O", "C", "F", "L",
   "n"}``), not Binance's REST ticker (``symbol``, ``priceChange``, ``priceChangePercent``,
   ``weightedAvgPrice``, ``lastPrice``, ``lastQty``, ``openPrice``, ``highPrice``,
   ``lowPrice``, ``volume``, ``quoteVolume``, ``openTime``, ``closeTime``, ``firstId``,
   ``lastId``, ``count``). README says the six market-data routes answer "the keys the most
   used venue APIs give them", and its neighbours ``ticker/price``, ``ticker/bookTicker`` and
   ``avgPrice`` do carry Binance's REST keys; README's list of differences does not name this
   one. A python-binance script reading ``get_ticker(...)["lastPrice"]`` gets a KeyError, and
   ccxt's ``parse_ticker`` (which reads ``symbol``, ``lastPrice``, ``highPrice``,
   ``closeTime``...) builds a ticker of Nones in silence. Cause:
   ``procs/gateway/rest_public.py:138`` (``proxy("/api/ticker", ...)`` passes the market-data
   body through unchanged, ``:260``). Fixed: the proxy's ``shape`` renames the ticker
   (``procs/gateway/rest_market_rows.py``, ``rest_ticker``) to Binance's REST names and JSON
   types (decimals strings, times, ids and count integers), its one or every symbol's; the
   stream's ``e`` and ``E`` are dropped, and what ringex does not keep (``prevClosePrice``,
   the bid and ask, which ``ticker/bookTicker`` has) is left out, said in README and in
   ``openapi.py``'s ``Ticker``. The WebSocket feed and market data's own ``/api/ticker`` keep
   their compact keys.
2. ``GET /api/v1/trades`` likewise answers the trade stream's events (``{"e": "trade", "E",
   "s", "t", "p", "q", "T", "m", "u"}``), not Binance's REST rows (``id``, ``price``,
   ``qty``, ``quoteQty``, ``time``, ``isBuyerMaker``, ``isBestMatch``): a script reading
   ``row["price"]`` or ``row["id"]`` (python-binance's ``get_recent_trades`` returns the rows
   raw) fails; README's claim and list as in 1. Cause: ``procs/gateway/rest_public.py:137``
   (proxied unchanged). Fixed: as in 1 (``rest_trade``): ``id`` = ``t``, ``price`` = ``p``,
   ``qty`` = ``q``, ``quoteQty`` = price x qty in integers at the notional's decimals (as
   ``myTrades``'s), ``time`` = ``T``, ``isBuyerMaker`` = ``m``, ``isBestMatch`` true;
   ``openapi.py``'s ``MarketTrade`` says so.
3. An order refused for the account's command rate (``risk.max_commands_per_s``) is answered
   ``400`` ``-2010`` ("order rejected: ACCOUNT_RATE_LIMITED"), the code of an order the
   exchange refused for good, with no ``Retry-After``. Binance answers an order over its
   order-rate limit ``429`` with ``-1015`` (TOO_MANY_ORDERS); README says the codes follow
   that numbering and that too many requests is ``429``. A client built for Binance (ccxt
   maps 429 and -1015 to RateLimitExceeded and backs off; -2010 to InvalidOrder, which it
   does not retry) drops an order it only had to send a moment later, and its rate control
   never hears it is too fast. Cause: ``procs/gateway/rest_new_orders.py:163`` (``placed``:
   every refusal code is ``bad_request(NEW_ORDER_REJECTED, ...)``), fed by
   ``procs/core/sequencer.py:143``. Fixed: ``api_errors.order_refused`` answers
   ``ResultCode.ACCOUNT_RATE_LIMITED`` as 429 ``TOO_MANY_ORDERS`` (-1015, "Too many new
   orders; current limit is N orders per SECOND (risk.max_commands_per_s ...)" and the
   refusal's values) with ``Retry-After`` = 1 / ``max_commands_per_s`` rounded up, a second at
   least: from ``placed`` (a single order; a batch's entry carries ``{"code": -1015, "msg"}``)
   and from ``PUT order`` (was -2011); -1015 is in ``api_errors.py``, README's code list and
   ``openapi_intro.ERRORS[429]``.

Sound (``test_sound_*``): order answers from ``POST``, ``GET``, ``PUT`` and ``DELETE order``,
``openOrders`` and ``DELETE openOrders`` carry Binance's names with its JSON types (ids and
times integers, decimals strings at the symbol's decimals), its status, type, side and
timeInForce spellings (also in exchangeInfo's lists), ``executedQty`` at most ``origQty`` and
equal to it once ``FILLED`` (an amend below the filled size included), ``fills`` summing to
``executedQty`` and ``cummulativeQuoteQty`` for a taker's answer (a two-level sweep through an
iceberg), ``updateTime`` at or after ``time``, ``transactTime`` the answer's time; a stop is
``NEW`` with ``isWorking`` false until triggered; errors are ``{"code": int, "msg": str}``
(404, 405 with ``Allow``, -2013 400), a 429 for wrong passwords carries an integer
``Retry-After``; ``ticker/price``, ``ticker/bookTicker``, ``avgPrice`` and ``depth`` carry
Binance's REST keys; ``myTrades``, ``allOrders``, ``klines`` and ``account`` carry Binance's
names and types (a kline's 9 columns: ints for the times and count, strings for the prices).
The known lead (no ``orderListId``, ``workingTime``, ``selfTradePreventionMode`` in order
answers): python-binance returns answers raw and ccxt's ``parse_order`` reads ``workingTime``
and ``orderListId`` with ``safe_*`` getters (None when absent), so neither library fails;
only a script indexing them fails, loudly.

Leads not shown:
- No ``X-MBX-USED-WEIGHT-*`` (nor a ringex equivalent) header on any answer: a client cannot
  see how near it is to the per-key limit before the 429. README claims none; not a fault.
- A STOP_LOSS (stop-market) order is shown ``timeInForce`` ``IOC``; Binance shows ``GTC``
  for its stop orders, as far as its docs' examples go (not confirmed here).
- ``TOO_MANY_OPEN_ORDERS`` is ``-2010`` too; Binance's is ``-2010`` "has too many open
  orders" or a ``-1013`` MAX_NUM_ORDERS filter failure depending on the limit: unclear.
- Insufficient balance is "order rejected: INSUFFICIENT_FUNDS": ccxt tells Binance's
  "Account has insufficient balance" (-2010) apart by its message text, so it reads this as
  InvalidOrder rather than InsufficientFunds (wording only; not verified with ccxt here).
- exchangeInfo's ``rateLimits`` have no ``intervalNum`` and symbols no ``filters`` array
  (README documents the fields it does give); ccxt derives precision and limits from
  ``filters``, so its markets would lack them (not verified with ccxt here).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import msgspec
import pytest
from yarl import URL

from config.schema import DatabaseConfig, RingexConfig
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import RestClient
from procs.marketdata.web import Site
from tests.unit.gateway import unfiled_rig
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import LIMIT, client, rest_exchange, run
from tests.unit.gateway.test_review47_rest_public import _get, _trades, market_data

ORDER = "/api/v1/order"
SELL: dict[str, Any] = {**LIMIT, "side": "SELL"}
PRICE = re.compile(r"^\d+\.\d{2}$")  # BTC-USD: 2 price decimals, 2 size decimals
STATUSES = {
    "NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "PENDING_NEW", "PENDING_CANCEL",
    "REJECTED", "EXPIRED", "EXPIRED_IN_MATCH",
}  # fmt: skip
TYPES = {"LIMIT", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "LIMIT_MAKER"}
TIFS = {"GTC", "IOC", "FOK", "DAY"}


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


def _one_command_a_second(cfg: RingexConfig) -> RingexConfig:
    risk = msgspec.structs.replace(cfg.risk, max_commands_per_s=1)
    return msgspec.structs.replace(cfg, risk=risk)


@pytest.fixture
def slow_account(instance: str, tmp_path: Path) -> Iterator[Harness]:
    """The rig with ``risk.max_commands_per_s`` 1: a bucket one command deep."""
    yield from rest_exchange(instance, tmp_path, reshape=_one_command_a_second)


@pytest.fixture
def with_history(instance: str, tmp_path: Path, dsn: str) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path, DatabaseConfig(dsn=dsn))


async def _answer(
    c: RestClient, method: str, path: str, **params: Any
) -> tuple[int, dict[str, str], Any]:
    """A signed request as ``RestClient.request`` sends it: (status, headers, decoded JSON)."""
    text = urlencode({k: str(v) for k, v in params.items()})
    query, body = ("", text.encode()) if method == "POST" else (text, b"")
    headers = c.headers(method, path, query, body)
    if body:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    url = URL(f"{c.base_url}{path}" + (f"?{query}" if query else ""), encoded=True)
    async with c.session.request(method, url, data=body or None, headers=headers) as r:
        return r.status, dict(r.headers), await r.json()


def _check_order(o: dict[str, Any]) -> None:
    """An order answer as a Binance client parses it: names, JSON types, enum spellings and
    the invariants between its numbers."""
    for key in ("orderId", "time", "updateTime"):
        assert type(o[key]) is int, (key, o)
    for key in ("price", "origQty", "executedQty", "stopPrice", "icebergQty"):
        assert isinstance(o[key], str) and PRICE.match(o[key]), (key, o)
    assert isinstance(o["cummulativeQuoteQty"], str), o
    assert isinstance(o["clientOrderId"], str) and isinstance(o["isWorking"], bool), o
    assert o["symbol"] == "BTC-USD" and o["side"] in ("BUY", "SELL"), o
    assert o["status"] in STATUSES and o["type"] in TYPES and o["timeInForce"] in TIFS, o
    executed, orig = Decimal(o["executedQty"]), Decimal(o["origQty"])
    assert executed <= orig, o
    assert (o["status"] == "FILLED") == (executed == orig), o
    assert o["updateTime"] >= o["time"], o
    if "transactTime" in o:
        assert type(o["transactTime"]) is int and o["transactTime"] >= o["time"], o


def _check_taker_answer(o: dict[str, Any]) -> None:
    """A new order's answer whose command made all of its fills: they add up."""
    _check_order(o)
    fills = o["fills"]
    for f in fills:
        assert type(f["tradeId"]) is int, f
        assert all(isinstance(f[k], str) for k in ("price", "qty", "commission")), f
    assert sum(Decimal(f["qty"]) for f in fills) == Decimal(o["executedQty"]), o
    quote = sum(Decimal(f["price"]) * Decimal(f["qty"]) for f in fills)
    assert quote == Decimal(o["cummulativeQuoteQty"]), o


# -- faults -----------------------------------------------------------------------------------


def test_ticker_24hr_answers_binances_rest_keys(harness: Harness) -> None:
    """Scenario: five trades on BTC-USD; ``GET /api/v1/ticker/24hr?symbol=BTC-USD``.
    Expected: Binance's REST ticker keys (README: these routes answer "the keys the most used
    venue APIs give them", as ``ticker/price`` and ``avgPrice`` do): ``symbol``,
    ``lastPrice``, ``priceChange``, ``priceChangePercent``, ``weightedAvgPrice``,
    ``openPrice``, ``highPrice``, ``lowPrice``, ``lastQty``, ``volume``, ``quoteVolume``,
    ``openTime``, ``closeTime``, ``firstId``, ``lastId``, ``count``.
    Was (fixed): ``{"e": "24hrTicker", "E", "s", "p", "P", "w", "o", "h", "l", "c", "Q", "v",
    "q", "O", "C", "F", "L", "n"}``, the WebSocket stream's payload: ``lastPrice`` was missing.
    Also: Binance's JSON types (decimals strings, times, ids and count integers), no stream
    keys left, every symbol's array alike, and the WebSocket's ticker keeps its compact keys."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        state = _trades(h.cfg, 5)
        async with market_data(api, state):
            status, ticker = await _get(url, "/api/v1/ticker/24hr", symbol="BTC-USD")
            every_status, every = await _get(url, "/api/v1/ticker/24hr")
        assert status == 200 and every_status == 200, (ticker, every)
        decimals = {
            "priceChange", "priceChangePercent", "weightedAvgPrice", "lastPrice", "lastQty",
            "openPrice", "highPrice", "lowPrice", "volume", "quoteVolume",
            "prevClosePrice",  # (review 334)
        }  # fmt: skip
        integers = {"openTime", "closeTime", "firstId", "lastId", "count"}
        assert ticker.keys() == {"symbol"} | decimals | integers, sorted(ticker)
        assert all(isinstance(ticker[k], str) for k in decimals), ticker
        assert all(type(ticker[k]) is int for k in integers), ticker
        assert (ticker["symbol"], ticker["lastPrice"], ticker["lastQty"]) == (
            "BTC-USD", "30000.25", "0.10"
        ), ticker  # fmt: skip
        assert (ticker["firstId"], ticker["lastId"], ticker["count"]) == (1, 5, 5), ticker
        assert ticker in every and all("symbol" in t and "s" not in t for t in every), every
        feed = msgspec.json.decode(Site(state).get("/api/ticker?symbol=btc-usd").body)
        assert (feed["e"], feed["c"]) == ("24hrTicker", "30000.25"), feed  # market data's own

    run(h, scenario)


def test_recent_trades_answer_binances_rest_keys(harness: Harness) -> None:
    """Scenario: five trades on BTC-USD; ``GET /api/v1/trades?symbol=BTC-USD``.
    Expected: each row with Binance's REST names: ``id``, ``price``, ``qty``, ``quoteQty``,
    ``time``, ``isBuyerMaker`` (README's claim, as for the ticker).
    Was (fixed): ``{"e": "trade", "E", "s", "t", "p", "q", "T", "m", "u"}``: no ``price``, no
    ``id``. Also: Binance's JSON types, ``quoteQty`` exact at the notional's decimals (as
    ``myTrades``'s), ``isBestMatch`` true, no stream keys left."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        async with market_data(api, _trades(h.cfg, 5)):
            status, rows = await _get(url, "/api/v1/trades", symbol="BTC-USD")
        assert status == 200 and len(rows) == 5, rows
        binance = {"id", "price", "qty", "quoteQty", "time", "isBuyerMaker", "isBestMatch"}
        assert all(row.keys() == binance for row in rows), rows
        assert rows[0] == {
            "id": 1, "price": "30000.05", "qty": "0.10", "quoteQty": "3000.0050",
            "time": rows[0]["time"], "isBuyerMaker": False, "isBestMatch": True,
        }, rows[0]  # fmt: skip
        assert [r["id"] for r in rows] == [1, 2, 3, 4, 5], rows
        for r in rows:
            assert type(r["time"]) is int and r["time"] > 0, r
            assert Decimal(r["quoteQty"]) == Decimal(r["price"]) * Decimal(r["qty"]), r

    run(h, scenario)


def test_an_order_over_the_accounts_command_rate_is_429_too_many_orders(
    slow_account: Harness,
) -> None:
    """Scenario: ``risk.max_commands_per_s`` 1; ALICE sends two orders back to back.
    Expected: the second refused as Binance refuses an order over its order rate: HTTP 429,
    code -1015, with a ``Retry-After`` (README: the codes follow that numbering; too many
    requests is a 429 with ``Retry-After``): a client backs off and sends it again.
    Was (fixed): 400 -2010 "order rejected: ACCOUNT_RATE_LIMITED", the answer of an order the
    exchange refused for good, no ``Retry-After``. Also: an amend over the rate (it was 400
    -2011) is the same 429, and a batch's entries over it carry -1015 (the batch a 200)."""
    h = slow_account

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            first = await alice.call("POST", ORDER, **LIMIT, price="100.00", quantity="0.10")
            assert first["status"] == "NEW", first
            order = await _answer(alice, "POST", ORDER, **LIMIT, price="100.00", quantity="0.10")
            amend = await _answer(
                alice, "PUT", ORDER, symbol="BTC-USD", orderId=first["orderId"], price="101.00"
            )
            entries = await alice.batch_orders(
                [{**LIMIT, "price": "99.00", "quantity": "0.10"}] * 2
            )
        finally:
            await alice.close()
        for status, headers, body in (order, amend):
            assert "ACCOUNT_RATE_LIMITED" in body["msg"], body  # the refusal under test
            assert (status, body["code"]) == (429, -1015), (status, body)
            assert "max_commands_per_s" in body["msg"] and headers["Retry-After"] == "1", headers
        assert order[2]["msg"].startswith("Too many new orders"), order
        limited = [e for e in entries if e.get("code") == -1015]  # a token may come back
        assert len(limited) >= 1 and all("ACCOUNT_RATE_LIMITED" in e["msg"] for e in limited)

    run(h, scenario)


# -- sound ------------------------------------------------------------------------------------


def test_sound_order_answers_have_binances_types_and_invariants(harness: Harness) -> None:
    """A sweep through an iceberg and a level, a market buy that runs out, a FOK that expires,
    a stop, an amend below the filled size, a cancel and a mass cancel: every order answer
    and view has Binance's names, types, spellings and consistent numbers."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        try:
            seen: list[dict[str, Any]] = []
            ice = await bob.call(
                "POST", ORDER, **SELL, price="300.00", quantity="1.00", icebergQty="0.20"
            )
            seen.append(await bob.call("POST", ORDER, **SELL, price="305.00", quantity="0.30"))
            sweep = await alice.call("POST", ORDER, **LIMIT, price="305.00", quantity="1.10")
            _check_taker_answer(sweep)
            assert [f["price"] for f in sweep["fills"]][-1] == "305.00", sweep
            assert sweep["status"] == "FILLED", sweep
            part = await alice.call("POST", ORDER, **LIMIT, price="305.00", quantity="0.50")
            _check_taker_answer(part)
            assert part["status"] == "PARTIALLY_FILLED", part
            amended = await alice.call(
                "PUT", ORDER, symbol="BTC-USD", orderId=part["orderId"], quantity="0.10"
            )
            filled = (amended["status"], amended["origQty"], amended["executedQty"])
            assert filled == ("FILLED", "0.20", "0.20"), amended  # the total cut to the filled
            seen += [
                amended,
                await bob.call("GET", ORDER, symbol="BTC-USD", orderId=ice["orderId"]),
            ]
            fok = await alice.call(
                "POST", ORDER, **LIMIT, price="100.00", quantity="0.50", timeInForce="FOK"
            )
            _check_taker_answer(fok)
            assert fok["status"] == "EXPIRED", fok
            await bob.call("POST", ORDER, **SELL, price="310.00", quantity="0.10")
            market = await alice.call(
                "POST", ORDER, symbol="BTC-USD", side="BUY", type="MARKET", quantity="0.50"
            )
            _check_taker_answer(market)
            assert (market["status"], market["executedQty"]) == ("EXPIRED", "0.10"), market
            stop = await bob.call(
                "POST", ORDER, symbol="BTC-USD", side="SELL", type="STOP_LOSS_LIMIT",
                price="250.00", stopPrice="260.00", quantity="0.10", timeInForce="GTC",
            )  # fmt: skip
            _check_taker_answer(stop)
            assert (stop["status"], stop["isWorking"]) == ("NEW", False), stop
            await alice.call("POST", ORDER, **LIMIT, price="200.00", quantity="0.20")
            seen += await alice.call("GET", "/api/v1/openOrders", symbol="BTC-USD")
            seen.append(await bob.call("DELETE", ORDER, symbol="BTC-USD", orderId=stop["orderId"]))
            seen += await alice.call("DELETE", "/api/v1/openOrders", symbol="BTC-USD")
            seen += await bob.call("DELETE", "/api/v1/openOrders")
            info = await alice.call("GET", "/api/v1/exchangeInfo", signed=False)
        finally:
            await alice.close()
            await bob.close()
        for o in seen:
            _check_order(o)
        assert {o["status"] for o in seen} >= {"NEW", "CANCELED", "FILLED"}, seen
        (sym,) = info["symbols"]
        assert set(sym["orderTypes"]) <= TYPES and set(sym["timeInForce"]) <= TIFS, sym

    run(h, scenario)


def test_sound_error_bodies_statuses_and_retry_after(harness: Harness) -> None:
    """404 and 405 (with ``Allow``) and an unknown order are ``{"code": int, "msg": str}``;
    a username's wrong passwords past the limit get 429 -1003 with an integer
    ``Retry-After``, as Binance clients read it."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            status, body = await alice.request("GET", ORDER, symbol="BTC-USD", orderId=999)
            assert (status, body["code"]) == (400, -2013), body
            async with aiohttp.ClientSession() as s:
                async with s.get(f"{url}/api/v1/nothing") as r:
                    assert (r.status, (await r.json())["code"]) == (404, -1000)
                async with s.patch(f"{url}{ORDER}") as r:
                    error = await r.json()
                    assert (r.status, error["code"]) == (405, -1000), error
                    assert "GET" in r.headers["Allow"], r.headers
                    assert isinstance(error["msg"], str), error
                refusals: list[tuple[int, str | None, Any]] = []
                for _ in range(12):
                    form = {"username": "ALICE", "password": "wrong", "scopes": "read"}
                    async with s.post(f"{url}/api/v1/apiKey", data=form) as r:
                        refusals.append((r.status, r.headers.get("Retry-After"), await r.json()))
        finally:
            await alice.close()
        limited = [(ra, b) for st, ra, b in refusals if st == 429]
        assert limited, refusals
        retry_after, body = limited[0]
        assert retry_after is not None and retry_after.isdigit() and int(retry_after) >= 1
        assert body["code"] == -1003 and isinstance(body["msg"], str), body
        assert {st for st, _, _ in refusals} <= {401, 429}, refusals

    run(h, scenario)


def test_sound_public_and_history_answers_have_binances_shapes(with_history: Harness) -> None:
    """``ticker/price``, ``ticker/bookTicker``, ``avgPrice`` and ``depth`` carry Binance's
    REST keys; ``myTrades``, ``allOrders``, ``klines`` and ``account`` its names and types."""
    h = with_history

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        try:
            async with market_data(api, _trades(h.cfg, 5)):
                got = {
                    p: await _get(url, f"/api/v1/{p}", symbol="BTC-USD")
                    for p in ("ticker/price", "ticker/bookTicker", "avgPrice", "depth")
                }
            await bob.call("POST", ORDER, **SELL, price="300.00", quantity="0.20")
            await alice.call("POST", ORDER, **LIMIT, price="300.00", quantity="0.30")
            await unfiled_rig.file_all(h)
            trades = await alice.call("GET", "/api/v1/myTrades", symbol="BTC-USD")
            orders = await alice.call("GET", "/api/v1/allOrders", symbol="BTC-USD")
            klines = await alice.call(
                "GET", "/api/v1/klines", signed=False, symbol="BTC-USD", interval="1m"
            )
            account = await alice.call("GET", "/api/v1/account")
        finally:
            await alice.close()
            await bob.close()
        assert all(status == 200 for status, _ in got.values()), got
        assert got["ticker/price"][1] == {"symbol": "BTC-USD", "price": "30000.25"}, got
        assert {"symbol", "bidPrice", "bidQty", "askPrice", "askQty"} <= got["ticker/bookTicker"][
            1
        ].keys(), got
        assert {"mins", "price", "closeTime"} <= got["avgPrice"][1].keys(), got
        assert {"lastUpdateId", "bids", "asks"} <= got["depth"][1].keys(), got
        (fill,) = trades
        for key in ("id", "orderId", "time"):
            assert type(fill[key]) is int, fill
        for key in ("price", "qty", "quoteQty", "commission", "commissionAsset"):
            assert isinstance(fill[key], str), fill
        assert (fill["isBuyer"], fill["isMaker"], fill["quoteQty"]) == (True, False, "60.0000")
        (order,) = orders
        _check_order(order)
        # the fill's minute opens the list; a minute that turned since is flat, 0 volume
        kline, *flat = klines
        assert kline[0] == fill["time"] // 60_000 * 60_000 and kline[8] == 1, klines
        assert all(k[8] == 0 and Decimal(k[5]) == 0 for k in flat), klines
        assert [type(v) for v in kline] == [int, *[str] * 5, int, str, int, str, str, str], kline
        assert kline[6] == kline[0] + 59_999, kline
        assert type(account["updateTime"]) is int and account["canTrade"] is True, account
        for b in account["balances"]:
            assert isinstance(b["free"], str) and isinstance(b["locked"], str), b

    run(h, scenario)
