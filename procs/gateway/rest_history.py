"""The REST API's history routes: ``allOrders`` and ``myTrades``, read from PostgreSQL and
completed with what this gateway saw that the database writer has not filed yet. A window
asked for is at most 24 hours, as Binance's (review 332)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from procs.gateway import rest_params as rp
from procs.gateway.api_errors import bad_request
from procs.gateway.rest_public import json_response

if TYPE_CHECKING:
    from procs.gateway.rest import RestApi

#: Binance's code for a startTime..endTime window past its limit (LOOKUP_INTERVAL_TOO_BIG)
LOOKUP_INTERVAL_TOO_BIG = -1127
#: The longest startTime..endTime window allOrders and myTrades take, as Binance's (ms)
MAX_WINDOW_MS = 24 * 3_600_000


def within_a_day(start: int | None, end: int | None) -> None:
    """``rp.time_span``'s bounds (a start after the end is -1023 there), when both are given,
    no more than ``MAX_WINDOW_MS`` apart: else -1127, Binance's sentence and the values."""
    if start is not None and end is not None and end - start > MAX_WINDOW_MS:
        raise bad_request(
            LOOKUP_INTERVAL_TOO_BIG,
            f"More than 24 hours between startTime and endTime. (startTime {start}, "
            f"endTime {end}: {end - start} ms apart, at most {MAX_WINDOW_MS})",
        )


class HistoryRoutes:
    def __init__(self, api: RestApi) -> None:
        self.api = api

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get("/api/v1/allOrders", self.all_orders, allow_head=False)
        router.add_get("/api/v1/myTrades", self.my_trades, allow_head=False)

    async def all_orders(self, request: web.Request) -> web.Response:
        api = self.api
        key = await api.signed(request, "read")
        params = await api.params(request, rp.ALL_ORDERS_PARAMS)
        sym = rp.symbol(params, api.instruments)
        limit = rp.integer(params, "limit", 500, 1, 1000)
        from_id = rp.opt_integer(params, "orderId", 0, 2**63 - 1)
        start, end = rp.time_span(params)
        within_a_day(start, end)
        # with the orders followed here whose last change the writer has not filed yet
        history, unfiled = api.need_history(), api.core.unfiled
        unfiled.forget_filed(await api.db(history.filed_seq()))
        rows = await api.db(history.orders(
            key.account, sym.id, from_id=from_id, start_ms=start, end_ms=end, limit=limit
        ))  # fmt: skip
        return json_response(unfiled.merged(
            rows, key.account, sym, api.core,
            from_id=from_id, start_ms=start, end_ms=end, limit=limit,
        ))  # fmt: skip

    async def my_trades(self, request: web.Request) -> web.Response:
        api = self.api
        key = await api.signed(request, "read")
        params = await api.params(request, rp.MY_TRADES_PARAMS)
        sym = rp.symbol(params, api.instruments)
        from_id = rp.opt_integer(params, "fromId", 0, 2**63 - 1)
        order_id = rp.opt_integer(params, "orderId", 0, 2**63 - 1)  # only that order's
        start, end = rp.time_span(params)
        within_a_day(start, end)
        limit = rp.integer(params, "limit", 500, 1, 1000)
        history = api.need_history()  # after the parameters: a bad one is a 400 either way
        # with the fills seen here that the writer has not filed yet (read your fills)
        api.core.trades.forget_filed(await api.db(history.filed_seq()))
        rows = await api.db(history.trades(
            key.account, sym, from_id=from_id, start_ms=start, end_ms=end, limit=limit,
            order_id=order_id,
        ))  # fmt: skip
        return json_response(api.core.trades.merged(
            rows, key.account, sym, from_id=from_id, start_ms=start, end_ms=end, limit=limit,
            order_id=order_id,
        ))  # fmt: skip
