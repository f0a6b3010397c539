"""``PUT /api/v1/order``: amend an open order's price and/or total quantity in place, as FIX's
OrderCancelReplaceRequest does (one ``ReplaceOrder`` through the router's risk checks).

The order is named as for a cancel (``orderId`` or ``origClientOrderId``, with its
``symbol``). ``quantity`` is the new total, fills included (FIX's OrderQty): a smaller one at
the same price keeps the order's place in its queue; a new price or a larger quantity sends it
to the back, and a new price that crosses trades at once, like a new order. A total at or
below what has filled ends the order (``FILLED``). The answer is the order as it stands once
the exchange has amended it (fills a crossing price made are in its ``executedQty``, on the
private stream and in ``myTrades``); the private stream reports it as ``REPLACED``.

An order this gateway does not follow yet (placed through another gateway, or before its
account used this one) is looked up in the database, and followed once the exchange's answer
confirms it (the row may be behind: ``row_orders.py``). Its ``clientOrderId`` stays as it
is. The order's FIX session, if it was placed over FIX, is sent an ExecutionReport Restated
(150=D, 378=99) that says so. An amend leaves out what it does not change, which is taken
from the order as this gateway knows it: so a second amend of an order is refused while the
first waits for its answer (its omitted fields would undo the first).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from config.schema import SymbolConfig
from procs.common.result_codes import ResultCode
from procs.common.types import OrdType, Side
from procs.gateway import api_errors as codes
from procs.gateway import order_fields as of
from procs.gateway import rest_params as rp
from procs.gateway.api_errors import bad_request
from procs.gateway.instruments import format_units
from procs.gateway.notional_note import notional_note
from procs.gateway.rest_order_state import LiveOrder, from_row
from procs.gateway.rest_public import json_response

if TYPE_CHECKING:
    from procs.gateway.rest import RestApi

#: The refusals of an amend of a stop not triggered yet: the matcher's, or the router's of a
#: buy stop-market's price, 0 (it has none), refused before the matcher could say why
_STOP_REFUSALS = (ResultCode.INVALID_ORDER, ResultCode.INVALID_PRICE)


class AmendRoute:
    def __init__(self, api: RestApi) -> None:
        self.api = api

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_put("/api/v1/order", self.amend_order)

    async def amend_order(self, request: web.Request) -> web.Response:
        api = self.api
        key = await api.signed(request, "trade")
        api.require_open("amends")
        params = await api.params(request, rp.AMEND_PARAMS)
        sym = rp.symbol(params, api.instruments)
        price, qty = rp.amendment(params, sym)
        oid, order = await api.named_order(key.account, params, sym.id)
        if order is None and oid is not None:
            order = await self._from_history(key.account, oid, sym)
        if order is None or order.symbol.id != sym.id:
            client_id = params.get("origClientOrderId")
            if oid is None and client_id and order is None:
                raise api.core.unknown(key.account, client_id, sym.name)
            named = f"orderId={oid}" if oid is not None else f"origClientOrderId={client_id}"
            raise rp.not_found(f"{named} (symbol={sym.name})")
        if not order.order_id or not order.open:
            state = order.status if order.order_id else "not acknowledged yet"
            raise bad_request(
                codes.CANCEL_REJECTED,
                f"amend rejected: orderId={order.order_id or '(pending)'} is {state}",
            )
        # its omitted fields would be the ones a change in flight replaces: a REST amend's,
        # or a FIX cancel's or replace's of this gateway (review 210: a cut undone)
        if api.core.amending(order.order_id) or api.core.fix_pending(order.order_id):
            raise bad_request(
                codes.CANCEL_REJECTED,
                f"amend rejected: an amend, cancel or replace of orderId={order.order_id} "
                "waits for its answer; send this one once it is answered",
            )
        if price is not None and price != order.price and price % sym.tick:
            rp.on_tick(params, sym)  # (its own price, off a tick raised since, is kept)
        new_price = order.price if price is None else price
        new_qty = order.qty if qty is None else qty
        parts = -(-(new_qty - order.cum) // order.display) if order.display else 0
        if parts > sym.iceberg_parts and not of.cut_in_place(order, new_price, new_qty):
            # as a new order's (rest_params); a cut in place is taken, as the matcher takes it
            qd = sym.qty_decimals
            raise bad_request(
                codes.FILTER_FAILURE,
                f"quantity {format_units(new_qty, qd).decode()} leaves {parts} parts of "
                f"icebergQty {format_units(order.display, qd).decode()} open, at most "
                f"{sym.iceberg_parts} (ICEBERG_PARTS)",
            )
        ref = api.core.amend(key.account, key.session, order, new_price, new_qty)
        outcome = await api.wait(ref)
        if outcome.code != ResultCode.OK or outcome.order is None:
            code = outcome.code
            api.refuse_if_ended(key.account, order.order_id, code, "amend")
            why = "unknown order" if code in codes.NOT_YOURS else f"{code.name} ({int(code)})"
            # (a buy stop-market's own price is 0, which the router refuses before the matcher)
            if code in _STOP_REFUSALS and order.stop_price and not order.triggered:
                why += " (a stop not triggered yet is not on the book: cancel it, place a new one)"
            if code == ResultCode.NOTIONAL_TOO_LARGE and order.side:  # judged at its new price
                kind = rp.TYPES.get(order.type_name, OrdType.LIMIT)
                limit = api.cfg.risk.max_order_notional
                why += notional_note(
                    limit, sym, Side(order.side), kind, new_price, api.core.commissions
                )
            shown = f"price={format_units(new_price, sym.price_decimals).decode()} quantity="
            shown += format_units(new_qty, sym.qty_decimals).decode()
            refused = f"amend rejected: {why} orderId={order.order_id} {shown}"
            rate = api.cfg.risk.max_commands_per_s  # (over it: 429, review 312)
            raise codes.order_refused(code, codes.CANCEL_REJECTED, refused, rate)
        return json_response(outcome.view or outcome.order.json())

    async def _from_history(self, account: int, oid: int, sym: SymbolConfig) -> LiveOrder | None:
        """``account``'s order ``oid`` as the database shows it; an open one is remembered, to
        be followed once an event confirms it (the row may be behind: ``row_orders.py``)."""
        history = self.api.history
        if history is None:
            return None
        row = await self.api.db(history.order(account, oid))
        if row is None or row[2] != sym.id:
            return None
        order = self.api.core.known(oid) or from_row(row, sym)
        if order.open and not self.api.core.known(oid):  # followed once an event confirms it
            self.api.core.rows.add(order)
        return order
