"""Which order a REST request names (``orderId``, ``origClientOrderId`` or both), as this
gateway knows it or, once it has forgotten the order (or never followed it), as the database
files it: the orders table keeps each order's client id (``NewOrder.client_id``), so an id
this gateway no longer remembers still names its order, one placed over FIX included.

A mixin of ``RestApi`` (``rest.py``), which owns the state it names.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from procs.common.result_codes import ResultCode
from procs.common.types import client_id_of
from procs.gateway import api_errors as codes
from procs.gateway import rest_params as rp
from procs.gateway.api_errors import bad_request
from procs.gateway.history import History
from procs.gateway.rest_order_state import LiveOrder
from procs.gateway.rest_orders import RestOrders

_ROW_CLIENT_ID = 18  # a ``History`` order row's client_order_id


def _filable(client_id: str) -> bool:
    """Whether ``client_id`` is one the database may file (``types.client_id_of``): no other
    is looked for there (a NUL, say, which PostgreSQL refuses as text: review 87)."""
    return client_id.isascii() and client_id_of(client_id.encode()) == client_id.encode()


class NamedOrders:
    core: RestOrders
    history: History | None

    db: Callable[[Awaitable[Any]], Awaitable[Any]]

    async def named_order(
        self, account: int, params: dict[str, str], symbol: int
    ) -> tuple[int | None, LiveOrder | None]:
        """The ``orderId`` a request names, and the order of ``account`` it names as known
        here. Both ids sent must name the same order (the venue rule): ``orderId`` is looked
        up first and ``origClientOrderId`` checked against it (against its row where this
        gateway knows no id for it). An ``origClientOrderId`` this gateway does not know
        names the newest order on ``symbol`` under it that the writer has not filed yet,
        else the newest the database files (its ``orderId``; the order not known here:
        None), if any."""
        oid = rp.order_id(params)
        if oid is None:
            client_id = params.get("origClientOrderId", "")
            if not client_id:  # either id names an order: the message says so (review 91)
                raise bad_request(
                    codes.MANDATORY_PARAM,
                    "mandatory parameter 'orderId' or 'origClientOrderId' was not sent",
                )
            known = self.core.order(account, None, client_id, symbol)
            if known is not None or self.history is None:
                return None, known
            known = self.core.unfiled.named(account, symbol, client_id)  # newer than its rows
            if known is None and _filable(client_id):
                row = await self.db(self.history.order_by_client_id(account, symbol, client_id))
                if row is not None:
                    return int(row[0]), None
            return None, known
        # past ``keep_done``, the unfiled index still has an order the writer lags on (review
        # 222: GET order by orderId said NEW, or "does not exist", where allOrders said FILLED)
        known = self.core.order(account, oid) or self.core.unfiled.get(account, oid)
        client_id = params.get("origClientOrderId", "")
        if not client_id or (known is not None and known.client_order_id == client_id):
            return oid, known
        if (known is None or not known.client_order_id) and self.history is not None:
            row = await self.db(self.history.order(account, oid))  # what was filed of it
            if row is not None and row[_ROW_CLIENT_ID] == client_id:
                return oid, known
        raise bad_request(
            codes.ILLEGAL_PARAM,
            f"orderId {oid} and origClientOrderId {client_id!r} do not name the same order",
        )

    def refuse_if_ended(self, account: int, oid: int, code: ResultCode, what: str) -> None:
        """When ``what`` (a cancel or an amend) of ``account``'s order ``oid`` was refused as
        unknown because the order ended (a fill, say) while the request was on its way,
        refuse it saying so, as FIX says "too late", rather than "unknown order" (review
        47)."""
        if code not in codes.NOT_YOURS:
            return
        order = self.core.order(account, oid)
        if order is not None and order.order_id and not order.open:
            raise bad_request(
                codes.CANCEL_REJECTED,
                f"{what} rejected: orderId={oid} is {order.status}: too late to {what}",
            )
