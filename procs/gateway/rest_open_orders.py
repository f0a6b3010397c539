"""The REST API's open orders: ``GET /api/v1/openOrders`` and the views it shares with the
private stream's snapshot and ``DELETE openOrders``: the database's open orders of an
account, overlaid with (and completed by) the live view, which is fresher.

A mixin of ``RestApi`` (``rest.py``), which owns the state it names.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from config.schema import RingexConfig, SymbolConfig
from procs.common.apikeys import ApiKey
from procs.gateway import rest_params as rp
from procs.gateway.api_errors import ApiError
from procs.gateway.history import History, order_json
from procs.gateway.instruments import Instruments
from procs.gateway.private_stream import PrivateStreams
from procs.gateway.rest_orders import RestOrders
from procs.gateway.rest_public import json_response
from procs.gateway.rest_request import RestRequest
from procs.gateway.stream_subscriber import quietly

#: The longest a best-effort read of the database's open orders waits (the private stream's
#: snapshot, ``DELETE openOrders``' listing); then the live view goes on without the rest.
LISTING_WAIT_S = 2.0


class OpenOrderViews:
    cfg: RingexConfig
    core: RestOrders
    history: History | None
    instruments: Instruments
    streams: PrivateStreams

    signed: Callable[[RestRequest, str], Awaitable[ApiKey]]
    params: Callable[[RestRequest, frozenset[str]], Awaitable[dict[str, str]]]
    db: Callable[[Awaitable[Any]], Awaitable[Any]]

    async def open_orders(self, request: web.Request) -> web.Response:
        key = await self.signed(request, "read")
        params = await self.params(request, rp.OPEN_ORDERS_PARAMS)
        syms = [rp.symbol(params, self.instruments)] if "symbol" in params else self.cfg.symbols
        views = await self.open_order_views(key.account, syms)
        # placed here and not answered yet (orderId 0; a 504's): open, as GET says (review
        # 42). Not in the private stream's snapshot: its NEW or REJECTED report follows
        ids = {s.id for s in syms}
        views += [o.json() for o in self.core.pending_orders(key.account) if o.symbol.id in ids]
        return json_response(views)

    async def open_order_views(
        self, account: int, symbols: list[SymbolConfig], *, best_effort: bool = False
    ) -> list[dict[str, Any]]:
        """``account``'s open orders: the database's, overlaid with (and completed by) the
        live view, which is fresher. ``best_effort``: a database that does not answer leaves
        the live view alone instead of refusing (the private stream's snapshot)."""
        rows = await self.open_order_rows(account, symbols, best_effort=best_effort)
        return self.open_orders_over(rows, account, symbols)

    async def open_order_rows(
        self, account: int, symbols: list[SymbolConfig], *, best_effort: bool = False
    ) -> dict[int, list[Any]]:
        """The database's open orders of ``account`` on ``symbols``, by symbol id.
        ``best_effort``: a symbol whose read fails is left out, and the reads stop at
        ``LISTING_WAIT_S`` (a database that hangs: a lock, a dead link), keeping those done
        (review 44: the private stream's snapshot waited for a hung database without end)."""
        rows: dict[int, list[Any]] = {}
        history = self.history
        if history is None:
            return rows

        async def read() -> None:
            for sym in symbols:
                try:
                    found = await self.db(history.orders(account, sym.id, open_only=True))
                    rows[sym.id] = list(found)
                except ApiError:
                    if not best_effort:
                        raise

        if not best_effort:
            await read()
            return rows
        # a task, cancelled and not waited for at the bound: psycopg takes the cancel of a
        # query only once its own cancel request is through or timed out, 10 s on a dead
        # link (reread 44: the snapshot came after 12 s)
        reading = asyncio.ensure_future(read())
        reading.add_done_callback(quietly)  # however the wait below ends
        try:
            await asyncio.wait({reading}, timeout=LISTING_WAIT_S)
        except asyncio.CancelledError:  # the client left, the gateway stops: the read too
            reading.cancel()  # (review 166: it held its pool connection)
            raise
        if reading.done():
            reading.result()  # a fault of its own (not the database's) is raised
            return rows
        reading.cancel()
        return dict(rows)  # those read in time: the task may still add one

    def open_orders_over(
        self, rows: dict[int, list[Any]], account: int, symbols: list[SymbolConfig]
    ) -> list[dict[str, Any]]:
        """The database's ``rows`` overlaid with the live view as of now (no await)."""
        self.core.rows.remember(account, rows, self.core.known)  # their events: the stream's
        if self.core.follow_kept(account):  # events of those orders that came before
            # their reports, now: a stream whose snapshot is being made holds them behind it
            # (this view shows them), the account's other streams take them
            self.streams.deliver(self.core.events)
            self.core.events.clear()
        out: dict[int, dict[str, Any]] = {}
        for sym in symbols:
            for row in rows.get(sym.id, ()):
                known = self.core.known(row[0])
                if known is None:
                    out[row[0]] = order_json(row, sym)
                elif known.open:
                    out[row[0]] = known.json()
            for order in self.core.open_orders(account, sym.id):
                out[order.order_id] = order.json()
        return [out[k] for k in sorted(out)]
