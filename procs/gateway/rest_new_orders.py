"""New orders over REST: ``POST /api/v1/order`` (one), ``POST /api/v1/batchOrders`` (up to
``MAX_BATCH_ORDERS`` (``rest_params``) in one signed request, the venues' batch order
entry) and ``POST /api/v1/order/test`` (one checked as ``order`` checks it, not sent).

A batch's ``batchOrders`` parameter is a JSON array of order objects, each with the
parameters of ``POST /api/v1/order`` (string values, as there): the array itself in a JSON
body (``{"batchOrders": [{"symbol": "BTC-USD", ...}, ...]}``, the cheap way: a form body's
percent-escapes cost the gateway about a fifth of its time per order), or as text like every
other parameter (``batchOrders=[...]`` in the query or a form body, a string in a JSON
body). Each order is checked and placed exactly as the single route places it, in the
array's order, and all of them go to the exchange in one ring publish, so a market maker's
quotes reach the book back to back. The answer (200) is an array, one entry per order in the
same order: the order as the single route answers it, or ``{"code", "msg"}`` where that
order was refused (by the checks here or by the exchange; one over the account's command
rate is -1015, the code a single order's 429 carries), the others placed all the same.
What refuses the whole request: its signature, scope, a ``batchOrders`` missing, not an
array of objects, empty or past the limit, the key's rate limit, which a batch spends once
per order (its request, then one more for each order past the first), and a gateway that is
stopping.

A mixin of ``RestApi`` (``rest.py``), which owns the state it uses.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from config.schema import RingexConfig
from procs.common.apikeys import ApiKey
from procs.common.result_codes import ResultCode
from procs.core.money import Market
from procs.gateway import api_errors as codes
from procs.gateway import rest_params as rp
from procs.gateway.api_errors import ApiError, bad_request
from procs.gateway.instruments import Instruments
from procs.gateway.rest_body import body_pairs, checked_params, json_repeats, read_body
from procs.gateway.rest_order_state import Outcome
from procs.gateway.rest_orders import RestOrders
from procs.gateway.rest_public import json_response
from procs.gateway.rest_request import RestRequest

if TYPE_CHECKING:
    from procs.gateway.rest import Sent

BATCH_PARAMS = frozenset(("batchOrders",))
_ARRAY = msgspec.json.Decoder(list[msgspec.Raw])
_OBJECT = msgspec.json.Decoder(dict[str, msgspec.Raw])
_STRING = msgspec.json.Decoder(str)


def _text(value: msgspec.Raw) -> str:
    """A JSON body's value as parameter text: a string's, else its JSON as sent."""
    raw = bytes(value)
    return _STRING.decode(raw) if raw.startswith(b'"') else raw.decode()


class NewOrders:
    cfg: RingexConfig
    core: RestOrders
    instruments: Instruments
    charge_batch: Callable[[ApiKey, int], None]
    body_timeout_s: float
    signed: Callable[[RestRequest, str], Awaitable[ApiKey]]
    require_open: Callable[[str], None]
    params: Callable[[RestRequest, frozenset[str]], Awaitable[dict[str, str]]]
    wait: Callable[..., Awaitable[Outcome]]
    expect: Callable[[int], asyncio.Future[Outcome]]
    answers: Callable[[list[Sent | ApiError]], Awaitable[list[dict[str, Any]]]]

    async def new_order(self, request: RestRequest) -> web.Response:
        key, req = await self._order_of(request)
        ref, name = self.place(key, req)
        return json_response(self.placed(await self.wait(ref, what=name), req=req))

    async def test_order(self, request: RestRequest) -> web.Response:
        """``POST order/test``: the order checked as ``POST order`` checks it here (the
        signature and trade scope, every field against the symbol's rules, a
        ``newClientOrderId`` an open order holds, a stop buy's cap, a priced limit or stop
        order's notional: ``rest_params.router_refusal``) and not sent:
        ``{}``, or the 400 the order would get. What only the exchange checks (balance, price
        band, open orders, a notional judged at the last trade) is not asked."""
        key, req = await self._order_of(request)
        self.check_free(key, req)
        market = Market.all(self.cfg)[req.symbol.id]
        rp.router_refusal(req, market, self.cfg.risk, self.core.commissions)
        return json_response({})

    async def _order_of(self, request: RestRequest) -> tuple[ApiKey, rp.OrderRequest]:
        """The key that signed ``request`` (trade scope) and the order it asks for, checked;
        503 while the gateway is stopping."""
        key = await self.signed(request, "trade")
        self.require_open("new orders")
        req = rp.new_order(await self.params(request, rp.NEW_ORDER_PARAMS), self.instruments)
        return key, req

    async def batch_orders(self, request: RestRequest) -> web.Response:
        key = await self.signed(request, "trade")
        self.require_open("new orders")
        orders = batch(await self.array_params(request, BATCH_PARAMS))
        self.charge_batch(key, len(orders))
        sent: list[Sent | ApiError] = []
        for i, raw in enumerate(orders):
            try:
                if not raw.startswith(b"{"):
                    sent_as = raw[:40].decode(errors="replace")
                    raise bad_request(
                        codes.ILLEGAL_PARAM, f"batchOrders[{i}] is not a JSON object: {sent_as}"
                    )
                pairs = body_pairs(raw, "application/json")
                req = rp.new_order(checked_params(pairs, rp.NEW_ORDER_PARAMS), self.instruments)
                ref, name = self.place(key, req)
                sent.append((ref, self.expect(ref), name, functools.partial(self.placed, req=req)))
            except ApiError as refused:
                sent.append(refused)
        return json_response(await self.answers(sent))

    async def array_params(self, request: RestRequest, accepted: frozenset[str]) -> dict[str, str]:
        """The request's parameters, each one of ``accepted``, where a JSON body's values
        may be arrays (a batch's orders or ids: taken as their JSON text); any other body as
        ``params`` reads it."""
        body = await read_body(request, self.body_timeout_s)
        if not (request.content_type or "").endswith("json") or not body.lstrip().startswith(b"{"):
            return await self.params(request, accepted)
        try:
            body.decode()  # its strings' bytes, which ``Raw`` does not look at (review 156)
            fields = _OBJECT.decode(body)
        except (msgspec.DecodeError, UnicodeDecodeError):  # its fault named as for any body
            return await self.params(request, accepted)
        except RecursionError:
            raise bad_request(codes.ILLEGAL_PARAM, "body is nested too deeply") from None
        pairs = [*request.query.items(), *((k, _text(v)) for k, v in fields.items())]
        # maybe a key twice: the colons outside the values kept (a repeat's value's are not
        # subtracted; a key's own count too) say whether to look, not every order's
        if len(fields) < body.count(b":") - sum(bytes(v).count(b":") for v in fields.values()):
            pairs += json_repeats(body, fields)
        return checked_params(pairs, accepted)

    def place(self, key: ApiKey, req: rp.OrderRequest) -> tuple[int, str]:
        """``req`` placed for ``key``'s account (to go out at the next publish): its request
        ref, and the id to ask its status by, generated where the client gave none (review
        42). 400 while its ``newClientOrderId`` names an open order."""
        self.check_free(key, req)
        ref = self.core.new_order(req, key.account, key.session, time.time_ns())
        placed = self.core.requests[ref].order
        return ref, f"origClientOrderId={placed.client_order_id}" if placed is not None else ""

    def check_free(self, key: ApiKey, req: rp.OrderRequest) -> None:
        """A 400 while ``req``'s ``newClientOrderId`` names an open order of the account."""
        in_use = self.core.in_use(key.account, req.client_order_id)
        if in_use is not None:
            raise bad_request(
                codes.NEW_ORDER_REJECTED,
                f"duplicate order: newClientOrderId={req.client_order_id} is in use by open "
                f"order {in_use.order_id or '(pending)'} ({in_use.status})",
            )

    def placed(self, outcome: Outcome, *, req: rp.OrderRequest) -> dict[str, Any]:
        """The answer to new order ``req``: the order with the fills its command made, or the
        exchange's refusal (400; 429 for the account's command rate, to be sent again)."""
        order = outcome.order
        if outcome.code != ResultCode.OK or order is None:
            refused = rp.refusal(outcome.code, req, self.cfg.risk, self.core.commissions)
            rate = self.cfg.risk.max_commands_per_s
            raise codes.order_refused(outcome.code, codes.NEW_ORDER_REJECTED, refused, rate)
        body = outcome.view or order.json()
        body["transactTime"] = body["updateTime"]  # the answer's (a frozen view's) own time
        body["fills"] = outcome.fills
        return body


def batch(params: dict[str, str]) -> list[bytes]:
    """The order objects of a ``batchOrders`` parameter, each as its JSON (each is checked
    as a JSON body is, on its own), or a 400 naming what is wrong with the array."""
    text = rp.required(params, "batchOrders")
    try:
        orders = [bytes(raw) for raw in _ARRAY.decode(text)]
    except (msgspec.DecodeError, RecursionError) as exc:  # (nested too deeply: review 156)
        raise bad_request(
            codes.ILLEGAL_PARAM,
            f"parameter 'batchOrders' is not a JSON array of orders: {exc or 'nested too deeply'}",
        ) from None
    rp.batch_size("batchOrders", len(orders))
    return orders
