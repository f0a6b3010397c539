"""``DELETE /api/v1/openOrders``: cancel every open order of the key's account, on one symbol
or on all of them, in one command (the venues' "cancel all", FIX's OrderMassCancelRequest).

The exchange takes it as one ``MassCancel``: the router's verdict (refused only for an
unknown symbol or the account's command rate) is the request's; then the matchers end the
orders. The answer lists the orders that were open when the request came, as known here (the
live view over the database's open orders), each as it stands once it has ended: normally
``CANCELED``, or ``FILLED`` where a fill came first. One that has not been seen to end within
``ENDS_WAIT_S`` (the database listed it open, but it had ended before this gateway followed
its account) is shown as it was listed. An order placed while the request was on its way may
be cancelled without being listed; ``openOrders`` says what is left.

The listing never stops the cancel: a database that does not answer leaves only the orders
this gateway follows in the answer, and the cancel goes out all the same.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from procs.common.result_codes import ResultCode
from procs.gateway import api_errors as codes
from procs.gateway import rest_params as rp
from procs.gateway.api_errors import ApiError, bad_request
from procs.gateway.rest_order_state import LiveOrder
from procs.gateway.rest_public import json_response

if TYPE_CHECKING:
    from procs.gateway.rest import RestApi

#: The longest the answer waits, after the verdict, for the listed orders to end.
ENDS_WAIT_S = 2.0


class MassCancelRoute:
    def __init__(self, api: RestApi) -> None:
        self.api = api

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_delete("/api/v1/openOrders", self.cancel_open_orders)

    async def cancel_open_orders(self, request: web.Request) -> web.Response:
        api, core = self.api, self.api.core
        key = await api.signed(request, "trade")
        params = await api.params(request, rp.OPEN_ORDERS_PARAMS)
        sym = rp.symbol(params, api.instruments) if "symbol" in params else None
        symbols = [sym] if sym is not None else api.cfg.symbols
        listed = await api.open_order_views(key.account, symbols, best_effort=True)
        symbol_id = sym.id if sym is not None else 0
        ref = core.mass_cancel(key.account, key.session, symbol_id, time.time_ns())
        outcome = await api.wait(ref)
        if outcome.code != ResultCode.OK:
            raise bad_request(
                codes.CANCEL_REJECTED,
                f"cancel of open orders rejected: {outcome.code.name} ({int(outcome.code)}) "
                f"symbol={sym.name if sym is not None else '(all)'}",
            )
        open_now = [v["orderId"] for v in listed if _still_open(core.known(v["orderId"]))]
        ends = core.next_ref()
        if core.ends.watch(ends, open_now):
            with contextlib.suppress(ApiError):  # not seen to end in time: shown as they are
                await api.wait(ends, ENDS_WAIT_S)
        return json_response([_view(core.known(v["orderId"]), v) for v in listed])


def _still_open(order: LiveOrder | None) -> bool:
    """Whether an order listed open may still end: one not followed here (from the database)
    is followed once its end comes (``RowOrders``)."""
    return order is None or order.open


def _view(order: LiveOrder | None, listed: dict[str, Any]) -> dict[str, Any]:
    return listed if order is None else order.json()
