"""A hostile review of the REST API's public endpoints and signed history (the 47th review):
``exchangeInfo``, ``depth``, ``trades``, ``ticker/24hr``, ``klines`` (``rest_public.py``,
``history.py``), ``myTrades``, ``allOrders`` and ``GET order`` (``rest_history.py``,
``rest.py``), and the OpenAPI document's account of them (``openapi.py``).

The rig is ``rest_rig.py``'s: real HTTP in front of real rings with the router and matcher in
process. Where a test needs the market-data process, a stand-in serves the real market-data
answers: ``procs.marketdata.web.Site`` over a ``MarketState`` fed trades, exactly what the
market-data port answers the gateway's proxy; where it needs the history, the database tests'
private PostgreSQL (``tests/unit/conftest.py``) with the writer run by hand
(``unfiled_rig.file_all``).

Each test but the last failed on the code it was written against, for the fault it names (the
docstring says what the README or the venue convention asks, what the code did instead and
where, and what came: "Actual"), and passes since its fix (the same commit). The last test
pins what was checked and found right.

BTC-USD: prices 2 decimals (tick 0.05), sizes 2; ALICE (601) holds dollars, BOB (602) bitcoin.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema_rs
import msgspec
import pytest

from config.schema import DatabaseConfig, RingexConfig
from procs.common.records import Trade
from procs.common.types import Side
from procs.core.market.state import MarketState, build_state
from procs.gateway.openapi import document
from procs.gateway.rest import RestApi
from procs.marketdata.web import Site
from tests.unit.gateway import rest_rig, unfiled_rig
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.harness import config as plain_config
from tests.unit.gateway.rest_rig import LIMIT, client, rest_exchange, run

SELL = {**LIMIT, "side": "SELL"}


@pytest.fixture
def public(instance: str, tmp_path: Path) -> Iterator[Harness]:
    """REST on; market data and the database off (a test may put a stand-in market data
    behind the gateway)."""
    yield from rest_exchange(instance, tmp_path)


@pytest.fixture
def ruled(instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    """``public`` with BTC-USD under rules the config allows but the defaults do not show:
    lot 0.10 with min_qty 0.15 and max_qty 10.05 (the least order is 0.20, the largest
    10.00: ``SymbolConfig.__post_init__`` takes min_qty and max_qty that are not multiples
    of the lot), and a limit-price collar of 1% around the last trade."""

    def config(*args: Any, **kw: Any) -> RingexConfig:
        cfg = plain_config(*args, **kw)
        sym = msgspec.structs.replace(
            cfg.symbols[0], lot=10, min_qty=15, max_qty=1005, limit_band_bps=100
        )
        return msgspec.structs.replace(cfg, symbols=[sym])

    monkeypatch.setattr(rest_rig, "config", config)
    yield from rest_exchange(instance, tmp_path)


@pytest.fixture
def with_history(instance: str, tmp_path: Path, dsn: str) -> Iterator[Harness]:
    """``public`` with the history in ``dsn``."""
    yield from rest_exchange(instance, tmp_path, DatabaseConfig(dsn=dsn))


async def _get(url: str, path: str, **query: Any) -> tuple[int, Any]:
    """An unsigned GET: (status, decoded JSON)."""
    async with aiohttp.ClientSession() as s, s.get(url + path, params=query) as r:
        return r.status, await r.json()


def _trades(cfg: RingexConfig, n: int) -> MarketState:
    """A market-data state that has seen ``n`` trades on BTC-USD (ids 1..n, this second)."""
    state = build_state(cfg)
    now = time.time_ns()
    for i in range(1, n + 1):
        trade = Trade(
            *(i, now + i, i, 1), price=3_000_000 + 5 * (i % 7), qty=10, aggressor=Side.BUY,
            maker_order_id=2 * i, maker_account=602, maker_gateway=1, maker_leaves=0,
            taker_order_id=2 * i + 1, taker_account=601, taker_gateway=1, taker_leaves=0,
        )  # fmt: skip
        state.process(trade, [])
    return state


@contextlib.asynccontextmanager
async def market_data(api: RestApi, state: MarketState | None) -> AsyncIterator[None]:
    """A stand-in market-data port, the gateway's for the block: each request answered as the
    market-data process's ``Site`` answers it over ``state``, or never (``state`` None: a
    market-data process that hangs)."""
    site = Site(state) if state is not None else None
    release = asyncio.Event()

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            if site is None:
                await release.wait()
                return
            r = site.get(head.split(b" ", 2)[1].decode())
            lines = [f"HTTP/1.1 {r.status_code} {r.reason_phrase}"]
            lines += [f"{name}: {value}" for name, value in r.headers.raw_items()]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + r.body)
            await writer.drain()
        except ConnectionError:
            pass  # the gateway gave up
        finally:
            writer.close()

    server = await asyncio.start_server(reply, "127.0.0.1", 0)
    api.market_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield
    finally:
        release.set()
        server.close()
        await asyncio.sleep(0.05)  # a released handler closes its socket


# -- klines ---------------------------------------------------------------------------------------


def test_klines_without_an_interval_is_a_missing_mandatory_parameter(public: Harness) -> None:
    """``interval`` is mandatory for ``GET /api/v1/klines`` (the OpenAPI document marks it
    required). Every other mandatory parameter that is left out is refused with
    ``MANDATORY_PARAM`` (-1102, "mandatory parameter 'symbol' was not sent": ``rest_params.
    required``), as the venue API does for a kline request without an interval. But
    ``PublicRoutes.klines`` (``rest_public.py``) reads ``params.get("interval", "")`` and
    refuses the absent parameter as a bad value, ``BAD_INTERVAL``, quoting an empty string the
    client never sent: a client that branches on -1102 to find its own missing fields does
    not see this one. Actual: 400 ``{"code": -1120, "msg": "interval '' is not one of 1m,
    3m, ..."}``."""

    async def scenario(api: RestApi, url: str) -> None:
        status, body = await _get(url, "/api/v1/klines", symbol="BTC-USD")
        assert (status, body["code"]) == (400, -1102), body
        assert "interval" in body["msg"] and "''" not in body["msg"], body

    run(public, scenario)


def test_klines_parameters_are_checked_before_the_database_is_needed(public: Harness) -> None:
    """A malformed or out-of-range parameter is the client's error, a 400 naming the value
    and the rule, whatever state the server is in: ``allOrders`` and ``myTrades`` check
    theirs before asking for the history (``rest_history.py``: "after the parameters: a bad
    one is a 400 either way", held by ``test_adversarial_rest.py`` with no database). In
    ``PublicRoutes.klines`` (``rest_public.py``) the call is written
    ``self.api.need_history().klines(sym, interval, start_ms=rp.opt_ms(...), ...,
    limit=rp.integer(...))``: Python evaluates ``need_history()`` before the arguments, so on
    an exchange without a history database ``limit=0``, ``limit=5000``, ``startTime=abc`` or
    ``endTime=-1`` are never checked: the client is told to retry later (503) a request that
    can never succeed, and nothing names the bad value. Actual: 503 ``{"code": -1001, "msg":
    "history needs the database, which is not enabled here"}`` for each."""

    async def scenario(api: RestApi, url: str) -> None:
        for name, value in (
            ("limit", "0"), ("limit", "5000"), ("startTime", "abc"), ("endTime", "-1"),
        ):  # fmt: skip
            status, body = await _get(
                url, "/api/v1/klines", symbol="BTC-USD", interval="1m", **{name: value}
            )
            assert (status, body["code"]) == (400, -1100), (name, value, body)
            assert name in body["msg"] and value in body["msg"], (name, value, body)

    run(public, scenario)


# -- the market-data proxies ----------------------------------------------------------------------


def test_the_ticker_refuses_a_limit_it_does_not_read(public: Harness) -> None:
    """README: "A parameter an endpoint does not take (...) is refused (-1104, naming it and
    those it takes) (...): never a default taken in silence." A 24-hour ticker has one row
    per symbol and no limit (the venue API's ``ticker/24hr`` takes none), and the market-data
    process's ``/api/ticker`` never reads one (``procs/marketdata/web.py``). Yet
    ``PublicRoutes.register`` (``rest_public.py``) serves ``ticker/24hr`` with the same
    ``proxy`` as ``depth`` and ``trades``, whose parameters are ``rest_params.MARKET_PARAMS``
    (``symbol``, ``limit``): ``limit=1`` and ``limit=1000`` are taken and give the same
    answer, ``limit=0`` is refused as "outside 1..1000" for an endpoint with no rows, and the
    OpenAPI document (``openapi._paths``) lists ``limit`` ("Most rows returned") for it.
    Actual: 200 with the ticker for ``limit=1``, and the document lists ``limit``."""

    async def scenario(api: RestApi, url: str) -> None:
        async with market_data(api, _trades(public.cfg, 3)):
            status, body = await _get(url, "/api/v1/ticker/24hr", symbol="BTC-USD", limit="1")
        doc = document(public.cfg)["paths"]["/api/v1/ticker/24hr"]["get"]
        named = [p["name"] for p in doc["parameters"]]
        assert (status, body.get("code")) == (400, -1104) and "limit" in body["msg"], body
        assert named == ["symbol"], named

    run(public, scenario)


def test_recent_trades_answer_the_limit_taken_or_refuse_it(public: Harness) -> None:
    """``GET /api/v1/trades`` takes ``limit`` 1..1000 (``rest_params.integer(params,
    "limit", 100, 1, 1000)`` in ``PublicRoutes.proxy``, and the OpenAPI document's
    ``maximum: 1000``), as the venue's recent-trades endpoint does, which answers that many
    when that many trades exist. The market-data process keeps the last 200 trades of a
    symbol (``TradeTape(size=200)``, ``procs/core/market/tape.py``; the page needs no more)
    and answers ``min(limit, 200)`` without a word: a client that asks for 500 of the 300
    trades made gets 200 and cannot tell the answer was cut (it looks like the whole tape of a
    quiet market). Either the tape keeps what the API promises, or the gateway refuses a
    limit past what it can answer, naming the most (README: errors name the value and the
    limit). Actual: 200 with the newest 200 trades (ids 101..300) for ``limit=500``."""

    async def scenario(api: RestApi, url: str) -> None:
        async with market_data(api, _trades(public.cfg, 300)):
            status, body = await _get(url, "/api/v1/trades", symbol="BTC-USD", limit="500")
        refused = status == 400 and "500" in body["msg"] and "200" in body["msg"]
        answered = status == 200 and [t["id"] for t in body] == list(range(1, 301))
        assert refused or answered, (status, len(body), body[0] if body else body)

    run(public, scenario)


def test_a_market_data_process_that_hangs_is_named_as_such(public: Harness) -> None:
    """README: "errors are {"code": ..., "msg": ...} naming the value", and STYLE.md: "errors
    state the numbers". The market-data proxy (``PublicRoutes.proxy``, ``rest_public.py``)
    waits for the market-data process at most the gateway client's 5 s
    (``ClientTimeout(total=5)``, ``RestApi.start``), then answers 503 with
    ``f"market data at {url} is unreachable: {exc}"``. aiohttp's total timeout raises a bare
    ``TimeoutError``, whose text is empty, so the client of a market-data process that
    accepts connections but stalls (a backlog, a GC pause) is told it is "unreachable", with
    nothing after the colon: not that it was reached and did not answer, nor within what
    limit. (``exchangeInfo``'s status fetch, by contrast, has its own 1 s limit.) Actual: 503
    ``{"code": -1001, "msg": "market data at http://127.0.0.1:N is unreachable: "}`` after
    5 s."""

    async def scenario(api: RestApi, url: str) -> None:
        async with market_data(api, None):
            status, body = await _get(url, "/api/v1/depth", symbol="BTC-USD")
        assert (status, body["code"]) == (503, -1001), body
        assert not body["msg"].endswith(": "), body
        assert re.search(r"\b5(\.0)? ?s\b", body["msg"]), body

    run(public, scenario)


# -- exchangeInfo ---------------------------------------------------------------------------------


def test_exchange_info_min_and_max_qty_are_sizes_an_order_may_have(ruled: Harness) -> None:
    """A venue's lot-size rule is read as: a quantity from ``minQty`` to ``maxQty`` in steps
    of ``stepSize``; the clients built for it place ``minQty`` as the smallest order and round
    down to ``maxQty``. ringex's rule is another one (``rest_params._order_qty``,
    ``instruments.qty_lots``): a multiple of the lot, within [min_qty, max_qty]; and the
    config allows a ``min_qty`` and ``max_qty`` that are not multiples of the lot
    (``SymbolConfig.__post_init__`` only checks that some size fits, "the least size an order
    may have" being ``ceil(min_qty / lot) * lot``). ``PublicRoutes.exchange_info``
    (``rest_public.py``) publishes the raw config values, so with lot 0.10, min_qty 0.15 and
    max_qty 10.05 it says ``minQty`` "0.15" and ``maxQty`` "10.05": an order of either is
    refused, and ``minQty + k * stepSize`` (0.25, 0.35, ...) is never a valid size. The repo's
    own client reads it so: ``scripts/market_maker.py`` sizes an order ``max(min_qty, raw -
    raw % lot, lot)``, 0.15 here. It should publish the least and the largest size an order
    may have (0.20 and 10.00), and the size refusal name them likewise. Actual:
    minQty "0.15", maxQty "10.05", and each as a quantity: 400 -1013 "quantity 0.15 is not a
    multiple of lot 0.10"."""

    async def scenario(api: RestApi, url: str) -> None:
        _, info = await _get(url, "/api/v1/exchangeInfo")
        (sym,) = info["symbols"]
        alice = await client(url, "ALICE", "alice-pw")
        try:
            answers = [
                await alice.request(
                    "POST", "/api/v1/order", **LIMIT, price="300.00", quantity=sym[name]
                )
                for name in ("minQty", "maxQty")
            ]
        finally:
            await alice.close()
        assert [status for status, _ in answers] == [200, 200], (sym, answers)

    run(ruled, scenario)


def test_exchange_info_shows_the_price_bands_an_order_is_refused_by(ruled: Harness) -> None:
    """README (the router and the journal): a symbol's trading rules are ``tick``, ``lot``,
    ``min_qty``, ``max_qty``, ``band_bps`` (how far past the best opposite price a market
    order trades), ``limit_band_bps`` (the collar for limit prices around the last trade) and
    ``iceberg_parts``. ``PublicRoutes.exchange_info`` (``rest_public.py``) shows five of them
    (tickSize, stepSize, minQty, maxQty, icebergParts) but neither band, and the OpenAPI
    ``ExchangeInfo`` schema has no field for them. With a 1% collar a client that read every
    rule exchangeInfo gives places a limit buy 3.3% above the last trade, on the tick, on the
    lot, within the sizes, and is refused ``-2010 order rejected: PRICE_OUT_OF_BAND (3004)``,
    a message that names neither its price nor the band: nothing it can read tells it where
    the band lies (the venue API publishes its price bands as ``PERCENT_PRICE`` filters).
    Expected: each symbol shows ``bandBps`` (500) and ``limitBandBps`` (100), named as its
    ``makerFeeBps``. Actual: neither field, and the order refused as above."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        try:
            await alice.call("POST", "/api/v1/order", **LIMIT, price="300.00", quantity="0.20")
            await bob.call("POST", "/api/v1/order", **SELL, price="300.00", quantity="0.20")
            status, refused = await alice.request(
                "POST", "/api/v1/order", **LIMIT, price="310.00", quantity="0.20"
            )
        finally:
            await alice.close()
            await bob.close()
        assert (status, refused["code"]) == (400, -2010), refused  # the collar holds
        _, info = await _get(url, "/api/v1/exchangeInfo")
        (sym,) = info["symbols"]
        shown = (sym.get("bandBps"), sym.get("limitBandBps"))
        assert shown == (500, 100), (sorted(sym), refused)

    run(ruled, scenario)


# -- checked --------------------------------------------------------------------------------------


def _schema_errors(doc: dict[str, Any], path: str, value: Any) -> list[str]:
    """Where ``value`` does not fit the 200 answer the document gives ``GET path``."""
    ok = doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
    root = {**ok["schema"], "components": doc["components"]}
    return [str(e) for e in jsonschema_rs.Draft202012Validator(root).iter_errors(value)]


def test_checked_real_market_and_history_answers_fit_the_document(with_history: Harness) -> None:
    """Checked: ``test_openapi.py`` holds the server to its document with market data and
    the database off, so the 200 answers of ``depth``, ``trades``, ``ticker/24hr``,
    ``klines``, ``myTrades``, ``allOrders`` and ``GET order`` are never checked there. Here
    they come from the market-data process's own rendering and from filed and unfiled history
    (three fills, an iceberg still open), asked with the symbol in lower case: each fits its
    schema, names the symbol as configured, and the klines and the fills agree on the volume."""
    h = with_history

    async def scenario(api: RestApi, url: str) -> None:
        doc = document(h.cfg)
        async with unfiled_rig.users(url) as (alice, bob):
            for price, qty in (("30000.00", "0.10"), ("30010.00", "0.05"), ("29990.00", "0.20")):
                await alice.call("POST", "/api/v1/order", **LIMIT, price=price, quantity=qty)
                await bob.call(
                    "POST", "/api/v1/order", **SELL, price=price, quantity=qty, timeInForce="IOC"
                )
            await unfiled_rig.file_all(h)
            iceberg = await alice.call(
                "POST", "/api/v1/order", **LIMIT, price="100.00", quantity="0.10",
                icebergQty="0.05",
            )  # fmt: skip
            async with market_data(api, _trades(h.cfg, 3)):
                public = {
                    path: await _get(url, path, symbol="btc-usd", **query)
                    for path, query in (
                        ("/api/v1/depth", {}), ("/api/v1/trades", {}),
                        ("/api/v1/ticker/24hr", {}), ("/api/v1/klines", {"interval": "1m"}),
                    )
                }  # fmt: skip
            signed = {
                path: await alice.call("GET", path, symbol="btc-usd", **query)
                for path, query in (
                    ("/api/v1/myTrades", {}), ("/api/v1/allOrders", {}),
                    ("/api/v1/order", {"orderId": iceberg["orderId"]}),
                )
            }  # fmt: skip
        for path, (status, body) in public.items():
            assert status == 200, (path, body)
            assert _schema_errors(doc, path, body) == [], (path, body)
        for path, body in signed.items():
            assert _schema_errors(doc, path, body) == [], (path, body)
        trades, orders = signed["/api/v1/myTrades"], signed["/api/v1/allOrders"]
        assert {t["symbol"] for t in trades} | {o["symbol"] for o in orders} == {"BTC-USD"}
        assert signed["/api/v1/order"]["icebergQty"] == "0.05"
        volume = sum(Decimal(k[5]) for k in public["/api/v1/klines"][1])  # flat ones: 0
        assert volume == sum(Decimal(t["qty"]) for t in trades) == Decimal("0.35")

    run(h, scenario)
