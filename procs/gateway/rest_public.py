"""The REST API's public endpoints: no key, only the client address's rate limit.

``ping``, ``time``, ``exchangeInfo`` (from the config, each symbol's trading status from the
market-data process), ``depth``, ``trades``, ``ticker/24hr``, ``ticker/price``,
``ticker/bookTicker`` and ``avgPrice`` (answered by the market-data process, which holds the
live book, tape, ticker and candles; its ticker and trades renamed as Binance's REST answers
name them, ``rest_market_rows.py``), ``klines`` (PostgreSQL) and the OpenAPI document.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec
from aiohttp import ClientError, ClientSession, ClientTimeout, web

from config.schema import SymbolConfig
from procs.core.market.tape import TRADES_KEPT
from procs.gateway import api_errors as codes
from procs.gateway import exchange_info
from procs.gateway import rest_params as rp
from procs.gateway.api_errors import ApiError, bad_request
from procs.gateway.history import KLINES
from procs.gateway.openapi import document
from procs.gateway.rest_market_rows import ticker_body, trades_body

if TYPE_CHECKING:
    from procs.gateway.rest import Handler, RestApi


_encode = msgspec.json.Encoder().encode
log = logging.getLogger("ringex.rest")
#: How long exchangeInfo waits for the market-data process's statuses.
STATUS_TIMEOUT_S = 1.0
#: The most depth levels or trades a request may ask for: the tape keeps as many trades.
MARKET_LIMIT = TRADES_KEPT
#: How long a proxied market-data request (depth, trades, ticker) waits for its answer.
MARKET_TIMEOUT_S = 5.0
#: How long statuses fetched are answered again without asking: one fetch however many
#: clients ask, and a halt shows within this much of market data's own view.
STATUS_TTL_S = 0.5
#: After a fetch failed, how long exchangeInfo says UNKNOWN at once rather than wait again:
#: an unreachable market data does not hold every caller for STATUS_TIMEOUT_S.
STATUS_RETRY_S = 2.0


class _Statuses(msgspec.Struct):
    symbol: str
    status: str


def json_response(value: object, status: int = 200) -> web.Response:
    """Every answer of the API, errors included: msgspec's JSON (fast, exact integers)."""
    return web.Response(body=_encode(value), status=status, content_type="application/json")


class MarketStatuses:
    """The symbols' trading statuses as the market-data process holds them, fetched at the
    URL with the client ``link()`` gives (None for either: none). ``who`` asks, as its log
    lines say: exchangeInfo, or the FIX gateway's SecurityStatus (``security_status.py``)."""

    def __init__(
        self, link: Callable[[], tuple[str | None, ClientSession | None]], who: str
    ) -> None:
        self._link, self._who = link, who
        self._warn_after = 0.0  # when it may log an unreachable market data again
        self._statuses: dict[str, str] = {}  # the last fetch's (empty: it failed)
        self._statuses_until = 0.0  # monotonic time until which they are answered again
        self._fetching: asyncio.Future[dict[str, str]] | None = None  # the fetch in flight

    async def statuses(self) -> dict[str, str]:
        """Each symbol's trading status ("TRADING", "HALT") as the market-data process holds
        it (it follows the matchers' halts and resumes, and is reseeded from their state after
        a restart); empty when it is disabled or does not answer within STATUS_TIMEOUT_S.
        Callers share one fetch, and its answer for STATUS_TTL_S (a failure's for
        STATUS_RETRY_S)."""
        url, client = self._link()
        if url is None or client is None:
            return {}
        if time.monotonic() < self._statuses_until:
            return self._statuses
        fetching = self._fetching
        if fetching is None:
            fetching = self._fetching = asyncio.ensure_future(self._fetch())
            fetching.add_done_callback(self._fetched)
        return await asyncio.shield(fetching)  # a caller gone does not cancel the others'

    def _fetched(self, fetching: asyncio.Future[dict[str, str]]) -> None:
        if self._fetching is fetching:
            self._fetching = None
        if not fetching.cancelled():
            # read here: when every caller went away, shield's outer futures no longer do,
            # and an unexpected error would be logged as never retrieved (the callers still
            # waiting get it from shield)
            fetching.exception()

    async def _fetch(self) -> dict[str, str]:
        url, client = self._link()
        assert client is not None
        statuses: dict[str, str] = {}
        try:
            async with client.get(
                f"{url}/api/symbols",
                timeout=ClientTimeout(total=STATUS_TIMEOUT_S),
            ) as reply:
                if reply.status != 200:
                    raise ClientError(f"HTTP {reply.status}")
                rows = msgspec.json.decode(await reply.read(), type=list[_Statuses])
            statuses = {row.symbol: row.status for row in rows}
            ttl = STATUS_TTL_S
        except (OSError, TimeoutError, ClientError, msgspec.DecodeError) as exc:
            ttl = STATUS_RETRY_S
            now = time.monotonic()
            if now >= self._warn_after:  # once a minute at most
                self._warn_after = now + 60.0
                log.warning("%s: market data at %s: %s", self._who, url, exc)
        self._statuses, self._statuses_until = statuses, time.monotonic() + ttl
        return statuses


class PublicRoutes(MarketStatuses):
    def __init__(self, api: RestApi) -> None:
        super().__init__(lambda: (api.market_url, api.client), "exchangeInfo")
        self.api = api

    def register(self, router: web.UrlDispatcher) -> None:
        get, v1 = functools.partial(router.add_get, allow_head=False), "/api/v1"  # no HEAD
        get(f"{v1}/ping", self.ping)
        get(f"{v1}/time", self.server_time)
        get(f"{v1}/exchangeInfo", self.exchange_info)
        get(f"{v1}/depth", self.proxy("/api/depth"))
        # Binance's default limit (review 196) and REST names (review 312), as the ticker's
        get(f"{v1}/trades", self.proxy("/api/trades", default_limit=500, shape=trades_body))
        ticker = self.proxy("/api/ticker", rp.TICKER_PARAMS, every=True, shape=ticker_body)
        get(f"{v1}/ticker/24hr", ticker)
        get(f"{v1}/ticker/price", self.proxy("/api/price", rp.TICKER_PARAMS, every=True))
        get(f"{v1}/ticker/bookTicker", self.proxy("/api/bookTicker", rp.TICKER_PARAMS, every=True))
        get(f"{v1}/avgPrice", self.proxy("/api/avgPrice", rp.TICKER_PARAMS))
        get(f"{v1}/klines", self.klines)
        get("/openapi.json", self.openapi)

    async def ping(self, request: web.Request) -> web.Response:
        await self.api.params(request, frozenset())  # none taken: any is refused
        return json_response({})

    async def server_time(self, request: web.Request) -> web.Response:
        await self.api.params(request, frozenset())  # none taken: any is refused
        return json_response({"serverTime": time.time_ns() // 1_000_000})

    async def openapi(self, request: web.Request) -> web.Response:
        await self.api.params(request, frozenset())  # none taken: any is refused
        return json_response(document(self.api.cfg))

    async def exchange_info(self, request: web.Request) -> web.Response:
        """Every symbol, or those ``symbol`` or ``symbols`` (a JSON array) name."""
        params = await self.api.params(request, rp.EXCHANGE_INFO_PARAMS)
        chosen = rp.symbols(params, self.api.instruments) if params else self.api.cfg.symbols
        statuses = await self.statuses()
        return json_response(exchange_info.body(self.api.cfg, self.api.rest, chosen, statuses))

    def proxy(
        self,
        path: str,
        accepted: frozenset[str] = rp.MARKET_PARAMS,
        *,
        every: bool = False,
        default_limit: int = 100,
        shape: Callable[[bytes, SymbolConfig | None], bytes] | None = None,
    ) -> Handler:
        """A public market-data endpoint answered by the market-data process, which holds the
        live book, tape and ticker; ``accepted``: its parameters (a ``limit`` or none). A
        ``symbol`` is required but where ``every`` (the tickers): without one, every
        symbol's, an array. ``shape`` renames its answer (of that symbol, else None) for
        REST; an answer it cannot read is a 502."""

        async def handler(request: web.Request) -> web.Response:
            params = await self.api.params(request, accepted)
            sym: SymbolConfig | None = None
            if "symbol" in params or not every:
                sym = rp.symbol(params, self.api.instruments)
                url = f"{self.api.market_url}{path}?symbol={sym.name.lower()}"
            else:  # a ticker of every symbol: an array, in the config's order
                url = f"{self.api.market_url}{path}"
            if "limit" in accepted:
                url += f"&limit={rp.integer(params, 'limit', default_limit, 1, MARKET_LIMIT)}"
            if self.api.market_url is None or self.api.client is None:
                raise ApiError(
                    503, codes.DISCONNECTED, "market data is not enabled on this exchange"
                )
            try:
                async with self.api.client.get(
                    url, timeout=ClientTimeout(total=MARKET_TIMEOUT_S)
                ) as reply:
                    body = await reply.read()
                    if reply.status != 200:
                        raise ApiError(
                            502, codes.DISCONNECTED, body.decode(errors="replace").strip()
                        )
            except TimeoutError:  # reached, but no answer (a backlog, a pause): its text is ""
                raise ApiError(
                    503,
                    codes.DISCONNECTED,
                    f"market data at {self.api.market_url} did not answer within "
                    f"{MARKET_TIMEOUT_S:g} s",
                ) from None
            except (OSError, ClientError) as exc:  # hung up, cut short, ...
                raise ApiError(
                    503,
                    codes.DISCONNECTED,
                    f"market data at {self.api.market_url} is unreachable: "
                    f"{exc or type(exc).__name__}",
                ) from None
            if shape is not None:
                try:
                    body = shape(body, sym)
                except (msgspec.DecodeError, KeyError, TypeError, ValueError) as exc:
                    raise ApiError(
                        502,
                        codes.DISCONNECTED,
                        f"market data at {self.api.market_url} answered {path} with what "
                        f"is not its {path[5:]} ({type(exc).__name__}: {exc})",
                    ) from None
            return web.Response(body=body, content_type="application/json")

        return handler

    async def klines(self, request: web.Request) -> web.Response:
        params = await self.api.params(request, rp.KLINES_PARAMS)
        sym = rp.symbol(params, self.api.instruments)
        interval = rp.required(params, "interval")
        if interval not in KLINES:
            raise bad_request(
                codes.BAD_INTERVAL, f"interval {interval!r} is not one of {', '.join(KLINES)}"
            )
        start_ms, end_ms = rp.time_span(params)
        limit = rp.integer(params, "limit", 500, 1, 1000)
        # every argument checked before the database is asked for: a bad one is a 400
        query = self.api.need_history().klines(
            sym, interval, start_ms=start_ms, end_ms=end_ms, limit=limit
        )
        rows = await self.api.db(query)
        return json_response(rows)
