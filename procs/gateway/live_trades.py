"""The fills this gateway saw on the matchers' output rings that the database writer may not
have filed yet, so that ``myTrades`` lists a trade as soon as the private stream and the
order's status show it, not a writer's batch later (read your fills).

The writer follows the journal and commits in batches; its checkpoint (``History.filed_seq``)
is the last journal seq whose rows are all in, every trade lane's included. A fill of a
trade at or below it is in the database, and its live copy goes (``forget_filed``); so does
one the database's answer holds. The others are merged into that answer
(``merged``), each once: a live fill is keyed like a database row, by (trade id, maker or
taker side), so both sides of a self-trade stay, and it is filtered, ordered and cut under
the request's own ``fromId``, ``startTime``, ``endTime`` and ``limit``.

Only fills of the orders ``RestOrders`` follows are kept (the orders placed through the API,
and those of the accounts that use it): the same ones its live views report. Those of the
orders placed through the API are in the gateway's order log too, with their orders, and a
restart gives them back (``restore``, from ``rest_order_log``); the others are memory only,
lost with the process until the writer files them. At most
``MAX_LIVE_FILLS`` are kept; past it the oldest go first (myTrades lists them again once the
writer has filed them). A live fill's commission is computed once, when the gateway sees
the fill, under its configured fees then (``commission.py``), and kept with it, in the order
log too: a fee change deployed before the writer files it (router and gateway restarted)
does not change it (review 331). A filed one's is the journal's: equal while both started
from the same config, as the live views' are.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import msgspec

from config.schema import SymbolConfig
from procs.common.records import Trade
from procs.common.types import Side
from procs.gateway.commission import Commissions
from procs.gateway.history import newest_first, trade_json, whole_trades

#: Most fills kept for myTrades, all accounts together (about 500 bytes each: ~10 MB). The
#: writer lags by its batch time (tens of ms), so this covers a writer stopped or behind for
#: many seconds at the rate the API's accounts trade; beyond it the oldest are dropped.
MAX_LIVE_FILLS = 20_000

#: (account, symbol id, trade id, maker side)
Key = tuple[int, int, int, bool]


class LiveFill(msgspec.Struct, frozen=True):
    """One side of a trade, as the matcher's ``Trade`` event told it (a msgspec Struct:
    one is made per fill, ~10x cheaper than a frozen dataclass)."""

    seq: int  # the journal seq of the command that made the trade
    trade_id: int
    order_id: int
    maker: bool
    buyer: bool
    price: int  # ticks
    qty: int  # lots
    time_ms: int
    #: its commission in the quote asset's minor units, as computed when it was seen (or,
    #: restored from a log entry without it, at the restore); None: the symbol's assets are
    #: not configured
    fee: int | None


class LiveTrades:
    """The live fills, oldest first, bounded by ``limit``. Called on the gateway's event loop
    only: ``add`` from the poll loop, the others from the myTrades handler."""

    def __init__(self, commissions: Commissions, limit: int = MAX_LIVE_FILLS) -> None:
        self.commissions = commissions
        self.limit = limit
        self._fills: OrderedDict[Key, LiveFill] = OrderedDict()  # in arrival order
        #: (account, symbol id) -> (trade id, maker) -> its fills (the same objects)
        self._by_account: dict[tuple[int, int], dict[tuple[int, bool], LiveFill]] = {}

    def __len__(self) -> int:
        return len(self._fills)

    def add(
        self, trade: Trade, account: int, order_id: int, maker: bool, fee: int | None = None
    ) -> LiveFill | None:
        """``account``'s side of ``trade`` (its maker side or its taker side), by ``order_id``,
        with its ``fee`` (None: computed here, under the configured fees); a side already kept
        (an event read again) is kept once. Returns the fill kept, None when it was kept
        already."""
        key = (account, trade.symbol, trade.trade_id, maker)
        if key in self._fills:
            return None
        if fee is None:
            fee = self.commissions.fee(trade.symbol, trade.price, trade.qty, maker)
        fill = LiveFill(
            trade.seq, trade.trade_id, order_id, maker, (trade.aggressor == Side.BUY) != maker,
            trade.price, trade.qty, trade.ts_ns // 1_000_000, fee,
        )  # fmt: skip
        self._put(key, fill)
        return fill

    def restore(self, account: int, symbol: int, fill: LiveFill) -> None:
        """A fill the order log kept (``rest_order_log.restore``), as ``add`` keeps one; one
        logged without its fee (before review 331) gets it under the configured fees."""
        key = (account, symbol, fill.trade_id, fill.maker)
        if key not in self._fills:
            if fill.fee is None:
                fee = self.commissions.fee(symbol, fill.price, fill.qty, fill.maker)
                fill = msgspec.structs.replace(fill, fee=fee)
            self._put(key, fill)

    def _put(self, key: Key, fill: LiveFill) -> None:
        self._fills[key] = fill
        self._by_account.setdefault((key[0], key[1]), {})[key[2], key[3]] = fill
        if len(self._fills) > self.limit:
            self._drop(next(iter(self._fills)))

    def kept(self) -> list[tuple[Key, LiveFill]]:
        """The fills kept now, oldest first (a copy: a compaction takes it in steps)."""
        return list(self._fills.items())

    def _drop(self, key: Key) -> None:
        del self._fills[key]
        account_symbol = key[0], key[1]
        mine = self._by_account[account_symbol]
        del mine[key[2], key[3]]
        if not mine:
            del self._by_account[account_symbol]

    def forget_filed(self, filed_seq: int) -> None:
        """Drop the fills of trades at or below the writer's checkpoint ``filed_seq``, from the
        oldest up to the first one above it (fills from several matchers arrive a little out
        of seq order: one left behind is dropped once a database answer shows it, or later)."""
        fills = self._fills
        while fills:
            key = next(iter(fills))
            if fills[key].seq > filed_seq:
                return
            self._drop(key)

    def merged(
        self,
        rows: list[dict[str, Any]],
        account: int,
        sym: SymbolConfig,
        *,
        from_id: int | None,
        start_ms: int | None,
        end_ms: int | None,
        limit: int,
        order_id: int | None = None,
    ) -> list[dict[str, Any]]:
        """The database's myTrades ``rows`` (asked with these parameters) with ``account``'s
        live fills on ``sym`` that they lack and the parameters take, ordered as the database
        orders them (trade id, then taker before maker) and cut to ``limit`` the same way:
        the first ones from ``from_id`` or ``start_ms``, else the newest, never between a
        trade's two sides (``whole_trades``). The rows had the first (or newest) ``limit`` of
        the database's, whole trades too, so the cut of the union is exact."""
        mine = self._by_account.get((account, sym.id))
        if not mine:
            return rows
        for row in rows:  # the database has these: their live copies are no longer needed
            if (row["id"], row["isMaker"]) in mine:
                self._drop((account, sym.id, row["id"], row["isMaker"]))
        first = from_id or 0
        extra = [
            self._json(f, sym)
            for f in mine.values()
            if f.trade_id >= first
            and (start_ms is None or f.time_ms >= start_ms)
            and (end_ms is None or f.time_ms <= end_ms)
            and (order_id is None or f.order_id == order_id)
        ]
        if not extra:
            return rows
        out = sorted(rows + extra, key=lambda t: (t["id"], t["isMaker"]))
        return whole_trades(out, limit, newest_first(from_id, start_ms), lambda t: int(t["id"]))

    def _json(self, f: LiveFill, sym: SymbolConfig) -> dict[str, Any]:
        shown = None if f.fee is None else self.commissions.formatted(sym.id, f.fee)
        return trade_json(
            sym, f.trade_id, f.order_id, f.price, f.qty, f.time_ms, f.buyer, f.maker,
            None if shown is None else shown[0],
        )  # fmt: skip
