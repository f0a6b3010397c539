"""Cancels over REST: ``DELETE /api/v1/order`` (one) and ``DELETE /api/v1/batchOrders`` (up to
``MAX_BATCH_ORDERS`` (``rest_params``) of one symbol in one signed request, the venues' batch
cancel).

A batch names its orders on ``symbol`` by ``orderIdList`` (a JSON array of order ids,
``[12,13]``) or by ``origClientOrderIdList`` (a JSON array of client order ids), one of the
two: as text like every parameter (the query string, a form body, a JSON string), or the
array itself in a JSON body. Each is checked as the single route checks it, in the array's
order (naming an order may ask the database); then all the cancels go, with no await
between them, in one ring publish (review 157). The answer (200) is an array with an entry
per order in the same order: the order as the single route answers it (``CANCELED``), or
``{"code", "msg"}`` where that cancel was refused (unknown, another account's, too late:
filled meanwhile), the others cancelled all the same. A batch spends the key's rate limit
once per order, as ``batchOrders`` does.

A mixin of ``RestApi`` (``rest.py``), which owns the state it uses; it names orders as
``NamedOrders`` does.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from config.schema import SymbolConfig
from procs.common.apikeys import ApiKey
from procs.common.result_codes import ResultCode
from procs.gateway import api_errors as codes
from procs.gateway import rest_params as rp
from procs.gateway.api_errors import ApiError, bad_request
from procs.gateway.instruments import Instruments
from procs.gateway.rest_named import NamedOrders
from procs.gateway.rest_order_state import Outcome, as_cancelled
from procs.gateway.rest_public import json_response
from procs.gateway.rest_request import RestRequest

if TYPE_CHECKING:
    from procs.gateway.rest import Sent

_IDS = msgspec.json.Decoder(list[int])
_CLIENT_IDS = msgspec.json.Decoder(list[str])


class Cancels(NamedOrders):
    instruments: Instruments
    signed: Callable[[RestRequest, str], Awaitable[ApiKey]]
    params: Callable[[RestRequest, frozenset[str]], Awaitable[dict[str, str]]]
    array_params: Callable[[RestRequest, frozenset[str]], Awaitable[dict[str, str]]]
    charge_batch: Callable[[ApiKey, int], None]
    expect: Callable[[int], asyncio.Future[Outcome]]
    answers: Callable[[list[Sent | ApiError]], Awaitable[list[dict[str, Any]]]]
    wait: Callable[..., Awaitable[Outcome]]

    async def cancel_order(self, request: RestRequest) -> web.Response:
        key = await self.signed(request, "trade")
        params = await self.params(request, rp.ORDER_PARAMS)
        sym = rp.symbol(params, self.instruments)
        oid = await self.cancellable(key, params, sym)
        ref = self.core.cancel(key.account, key.session, sym.id, oid, time.time_ns())
        return json_response(self.cancelled(key, oid, await self.wait(ref)))

    async def batch_cancel(self, request: RestRequest) -> web.Response:
        key = await self.signed(request, "trade")
        params = await self.array_params(request, rp.BATCH_CANCEL_PARAMS)
        sym = rp.symbol(params, self.instruments)
        named = _named(params)
        self.charge_batch(key, len(named))
        found: list[int | ApiError] = []  # every order named first (a database may be asked)
        for name in named:
            try:
                rp.check_params(name)  # as a single cancel's: not empty, not too long
                found.append(await self.cancellable(key, {"symbol": sym.name, **name}, sym))
            except ApiError as refused:
                found.append(refused)
        sent: list[Sent | ApiError] = []  # then their cancels, with no await between them:
        for oid in found:  # one publish, and a client gone leaves none waiting (review 157)
            if isinstance(oid, ApiError):
                sent.append(oid)
                continue
            ref = self.core.cancel(key.account, key.session, sym.id, oid, time.time_ns())
            answer = functools.partial(self.cancelled, key, oid)
            sent.append((ref, self.expect(ref), f"orderId={oid}", answer))
        return json_response(await self.answers(sent))

    async def cancellable(self, key: ApiKey, params: dict[str, str], sym: SymbolConfig) -> int:
        """The id of the order ``params`` name on ``sym``, to cancel; 400 where no cancel can
        be sent for it (unknown, unanswered, ended)."""
        oid, known = await self.named_order(key.account, params, sym.id)
        if oid is None:
            if known is None:
                raise self.core.unknown(key.account, params["origClientOrderId"], sym.name)
            if not known.order_id:  # placed, not answered yet (a 504's): it may well rest
                raise bad_request(
                    codes.CANCEL_REJECTED,
                    f"cancel rejected: origClientOrderId={known.client_order_id} is "
                    f"{known.status}: the exchange has not answered it yet, cancel it once "
                    f"it has",
                )
            oid = known.order_id
        if known is not None and known.order_id and not known.open:
            raise bad_request(
                codes.CANCEL_REJECTED,
                f"cancel rejected: orderId={oid} is {known.status}: too late to cancel",
            )
        return oid

    def cancelled(self, key: ApiKey, oid: int, outcome: Outcome) -> dict[str, Any]:
        """The answer to the cancel of ``oid``: the order as it ended (``as_cancelled``), or
        the refusal (400)."""
        if outcome.code != ResultCode.OK or outcome.order is None:
            self.refuse_if_ended(key.account, oid, outcome.code, "cancel")
            why = "unknown order" if outcome.code in codes.NOT_YOURS else outcome.code.name
            raise bad_request(codes.CANCEL_REJECTED, f"cancel rejected: {why} orderId={oid}")
        return as_cancelled(outcome.view or outcome.order.json())


def _named(params: dict[str, str]) -> list[dict[str, str]]:
    """The orders a batch cancel names, each as a single cancel's parameters would, or a 400
    naming what is wrong with the list."""
    lists = [n for n in ("orderIdList", "origClientOrderIdList") if n in params]
    if len(lists) != 1:
        raise bad_request(
            codes.MANDATORY_PARAM,
            "one of 'orderIdList' and 'origClientOrderIdList' is needed, not "
            f"{'both' if lists else 'neither'}",
        )
    name = lists[0]
    by_id = name == "orderIdList"
    try:
        items: list[Any] = (_IDS if by_id else _CLIENT_IDS).decode(params[name])
    except msgspec.DecodeError as exc:
        what = "order ids" if by_id else "client order ids"
        raise bad_request(
            codes.ILLEGAL_PARAM, f"parameter {name!r} is not a JSON array of {what}: {exc}"
        ) from None
    rp.batch_size(name, len(items))
    key = "orderId" if by_id else "origClientOrderId"
    return [{key: str(item)} for item in items]
