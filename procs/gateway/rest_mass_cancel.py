"""``DELETE /api/v1/openOrders``: cancel every open order of the key's account, on one symbol
or on all of them, in one command (the venues' "cancel all", FIX's OrderMassCancelRequest).

The exchange takes it as one ``MassCancel``, sent as soon as the request is checked: the
router's verdict (refused only for an unknown symbol or the account's command rate) is the
request's; then the matchers end the orders. The answer lists the orders that were open
when the request came: those this gateway follows, and those the database lists open (read
while the cancel is on its way, for at most ``LISTING_WAIT_S``; its first 500 a symbol, as
``openOrders``; not one whose end this gateway saw before the request, which the database
has not filed yet: ``ended_elsewhere.py``), each as it stands once it has ended: normally
``CANCELED``, or ``FILLED`` where a fill came first. The end of an order only the database
listed is caught while the request runs (``OrderEnds.collect``). One not seen to end within
``ENDS_WAIT_S`` (the database still listed it open after it had ended) is shown as it was
listed. A database that fails or hangs leaves only the orders this gateway follows in the
answer, never the cancel behind. An order placed here whose answer had not come (a 504's,
a POST still waiting) is listed too, once the exchange took it (review 341), as
``openOrders`` lists it. An order placed while the request was on its way may be cancelled
without being listed; ``openOrders`` says what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from config.schema import SymbolConfig
from procs.common.records import OrderDone
from procs.common.result_codes import ResultCode
from procs.gateway import api_errors as codes
from procs.gateway import rest_params as rp
from procs.gateway.api_errors import ApiError
from procs.gateway.history import order_json
from procs.gateway.instruments import format_units
from procs.gateway.rest_order_state import DONE_STATUS, LiveOrder, Outcome, as_cancelled, ms
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
        account, symbol_id = key.account, sym.id if sym is not None else 0
        # what this gateway follows, then the cancel at once: the database's listing (the
        # orders it does not follow) must never hold a kill switch back
        following = core.open_orders(account, sym.id if sym is not None else None)
        listed = {o.order_id: (o.json(), o.symbol) for o in following}
        # placed here, not answered yet (a 504's, a POST still waiting): sent before the
        # cancel, so answered before its verdict, and open as ``openOrders`` says (review 341)
        pending = [o for o in core.pending_orders(account) if sym is None or o.symbol.id == sym.id]
        rows: list[tuple[tuple[Any, ...], SymbolConfig]] = []
        core.ends.collect(account)  # how the orders only the database lists end, meanwhile
        verdict: asyncio.Future[Outcome] | None = None
        try:
            ref = core.mass_cancel(account, key.session, symbol_id, time.time_ns())
            verdict = asyncio.ensure_future(api.wait(ref))
            rows = await self._rows(account, [sym] if sym is not None else api.cfg.symbols)
            outcome = await verdict
            if outcome.code != ResultCode.OK:  # over the account's command rate: 429
                raise codes.order_refused(
                    outcome.code,
                    codes.CANCEL_REJECTED,
                    f"cancel of open orders rejected: {outcome.code.name} "
                    f"({int(outcome.code)}) symbol={sym.name if sym is not None else '(all)'}",
                    api.cfg.risk.max_commands_per_s,
                )
            seen = core.ends.seen(account)
            for o in pending:  # those the exchange took (a refused one has no orderId)
                if o.order_id:
                    listed.setdefault(o.order_id, (o.json(), o.symbol))
            for row, spec in rows:
                # not one known here to have ended before the request (its row not filed
                # with its end yet, wherever it was placed): it was not open then, and
                # ``openOrders`` left it out
                known = core.known(row[0])
                if known is None or known.open or row[0] in seen:
                    listed.setdefault(row[0], (order_json(row, spec), spec))
            ends = core.next_ref()
            waiting = [oid for oid in listed if oid not in seen and _still_open(core.known(oid))]
            if core.ends.watch(ends, waiting):
                with contextlib.suppress(ApiError):  # not seen to end in time: as they are
                    await api.wait(ends, ENDS_WAIT_S)
        finally:
            if verdict is not None and not verdict.done():  # the handler cancelled, or its
                verdict.cancel()  # listing failed: no waiter left behind (review 166)
            unfollowed = core.ends.collected(account)
        for row, _spec in rows:  # a view followed from events alone lacks what its row says
            order = core.known(row[0])
            if order is not None:
                order.complete(row)
        views = [
            as_cancelled(_view(core.known(oid), *listed[oid], unfollowed.get(oid)))
            for oid in sorted(listed)
        ]
        return json_response(views)

    async def _rows(
        self, account: int, symbols: list[SymbolConfig]
    ) -> list[tuple[tuple[Any, ...], SymbolConfig]]:
        """The database's open orders of ``account`` on ``symbols``, within ``LISTING_WAIT_S``
        (``open_order_rows``: none from a database that fails or hangs, those read from one
        that hangs midway; the cancel is out already)."""
        found = await self.api.open_order_rows(account, symbols, best_effort=True)
        by_id = {s.id: s for s in symbols}
        return [(row, by_id[sid]) for sid, rows in found.items() for row in rows]


def _still_open(order: LiveOrder | None) -> bool:
    """Whether an order listed open may still end: one not followed here (from the database)
    ends through ``OrderEnds.unfollowed``."""
    return order is None or order.open


def _view(
    order: LiveOrder | None, listed: dict[str, Any], sym: SymbolConfig, end: OrderDone | None
) -> dict[str, Any]:
    """An order as it ended: known here (followed, or its end kept: ``ended_elsewhere.py``),
    its view; else its listing, with its end if seen."""
    if order is not None:
        return order.json()
    if end is None:
        return listed
    return listed | {
        "status": DONE_STATUS.get(end.reason, "CANCELED"),
        "executedQty": format_units(end.filled_qty, sym.qty_decimals).decode(),
        "updateTime": ms(end.ts_ns),
        "isWorking": False,
    }
