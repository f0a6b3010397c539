"""The REST API's view of one order (``LiveOrder``): what its answers and private-stream
events show, a request in flight (``PendingRequest``) and the exchange's answer to it
(``Outcome``), the form the gateway's order log keeps of the orders placed through the API
(so that a restarted gateway still knows them by their clientOrderId), and the small
renderings beside them (``balance_json``, ``generated_id``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from config.schema import AssetConfig, SymbolConfig
from procs.common.records import Accepted, OrderDone
from procs.common.result_codes import ResultCode
from procs.common.types import DoneReason, OrderFlag
from procs.gateway.history import STATUS_NAMES, row_notional, row_type
from procs.gateway.instruments import Instruments, format_units
from procs.gateway.order_state import Order
from procs.gateway.rest_params import SIDE_NAMES, TIF_NAMES, TYPE_NAMES

log = logging.getLogger("ringex.gateway")

#: Status names, as the venue APIs spell them.
DONE_STATUS = {
    DoneReason.FILLED: "FILLED",
    DoneReason.CANCELLED: "CANCELED",
    DoneReason.EXPIRED: "EXPIRED",
    DoneReason.SELF_TRADE: "EXPIRED_IN_MATCH",
    DoneReason.MASS_CANCELLED: "CANCELED",
}
OPEN_STATUSES = frozenset({"PENDING_NEW", "NEW", "PARTIALLY_FILLED"})


def ms(ns: int) -> int:
    return ns // 1_000_000


@dataclass(slots=True)
class LiveOrder:
    order_id: int
    account: int
    symbol: SymbolConfig
    side: int  # 0: not known (only its end was seen: ``from_done``)
    #: "" when only the matchers' events showed it (placed elsewhere): then its tif, stop
    #: price and iceberg qty are not known either, until a database row says them (``complete``)
    type_name: str
    tif: int  # 0: not known
    price: int
    stop_price: int
    qty: int
    leaves: int
    cum: int = 0
    notional: int = 0  # sum of price x qty of its fills
    status: str = "PENDING_NEW"
    client_order_id: str = ""
    time_ms: int = 0
    update_ms: int = 0
    reject: str = ""
    ref: int = 0  # the request that placed it here while it waits for its answer
    #: the ref it was placed under through this API (its key in the order log), 0: placed
    #: elsewhere, only followed here
    placed: int = 0
    #: the journal seq of the last event about it seen here (0: none since it was restored or
    #: followed from FIX): ``allOrders`` shows it over an older database row (``unfiled_orders``)
    seq: int = 0
    #: False where its fills are not all known here, so ``cummulativeQuoteQty`` is null: an
    #: end seen alone (``from_done``), a fill or a restart's correction that shows fills
    #: missed (``RestOrders._fill``, ``rest_order_log``), a row whose trades do not add up
    #: (``history.row_notional``); a row that says it (``complete``) makes it known again
    notional_known: bool = True
    display: int = 0  # an iceberg's shown slice in lots (icebergQty), 0: not an iceberg
    amend_ref: int = 0  # the ref of an amend of it sent from here and not answered yet
    cancel_ref: int = 0  # the same of a cancel of it (the latest: one is enough)
    triggered: bool = False  # a stop whose trigger came (before it: not on the book)
    #: an end seen alone (``from_done``), completed: the ``updated_seq`` of the newest row its
    #: price came from (a newer row may say a price replaced since); 0 for any other view
    row_seq: int = 0
    #: finished: its order-log entry as last written, encoded (``rest_order_log``)
    logged: msgspec.Raw | None = field(default=None, repr=False, compare=False)

    @property
    def open(self) -> bool:
        return self.status in OPEN_STATUSES

    def json(self) -> dict[str, Any]:
        s = self.symbol
        pd, qd = s.price_decimals, s.qty_decimals
        return {
            "symbol": s.name,
            "orderId": self.order_id,
            "clientOrderId": self.client_order_id,
            "price": format_units(self.price, pd).decode(),
            "origQty": format_units(self.qty, qd).decode(),
            "executedQty": format_units(self.cum, qd).decode(),
            "cummulativeQuoteQty": format_units(self.notional, pd + qd).decode()
            if self.notional_known
            else None,
            "status": self.status,
            "timeInForce": TIF_NAMES.get(self.tif, "") if self.tif else "",
            "type": self.type_name,
            "side": SIDE_NAMES.get(self.side, ""),  # "": a cancel of an order not followed here
            "stopPrice": format_units(self.stop_price, pd).decode(),
            "icebergQty": format_units(self.display, qd).decode(),
            "time": self.time_ms,
            "updateTime": self.update_ms,
            # on the book: a stop is not until its trigger
            "isWorking": self.open and (self.triggered or not self.stop_price),
        }

    @property
    def partial(self) -> bool:
        """Whether the events that made this view left out what its row says (``complete``)."""
        return not (self.type_name and self.side)

    def complete(self, row: tuple[Any, ...]) -> None:
        """Fill in what the events that made this view did not say from the order's database
        row (a ``History.orders`` row): type, time in force, stop price, iceberg qty, side,
        price and placing time when only its end was seen (``from_done``: ``type_name`` "",
        ``side`` 0; an ``Accepted`` says them all since review 59). All but the price stay as
        placed for an order's life, so a row of any age says them right; an end's price is
        the one the newest row it was handed says (``row_seq``). A market or stop-market
        buy's row says its price 0, the client's, as every other view shows it (not the
        router's cap). What the view knows stays."""
        if self.row_seq and row[16] > self.row_seq:  # a replace filed since the row it took
            self.price, self.row_seq = row[6], row[16]
        if not self.client_order_id:  # followed from its events alone: the row's, if kept
            self.client_order_id = row[18]
        notional = row_notional(row)
        if not self.notional_known and notional is not None and row[10] == self.cum:
            # the row counts the same fills (a count only grows): its notional is theirs
            self.notional, self.notional_known = notional, True
        if not self.partial:
            return
        if not self.side:
            self.side, self.price, self.time_ms = row[3], row[6], row[13]
            self.row_seq = max(row[16], 1)
        if not self.type_name:
            self.type_name = row_type(row[4], row[15])
            self.tif, self.stop_price, self.display = row[5], row[7], row[17]
            if row[15] & OrderFlag.CAPPED:  # the row's 0, not the router's cap
                self.price = row[6]
            # a stop that traded was triggered (as ``from_row``); its Triggered, if seen, said so
            self.triggered = self.triggered or bool(self.stop_price and self.cum)

    def report_json(
        self, exec_type: str, ts_ns: int, fill: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Its private-stream ``executionReport``: the order, what happened, and the fill."""
        data = self.json()
        data["executionType"] = exec_type
        data["eventTime"] = ms(ts_ns)
        if fill is not None:
            data["lastQty"], data["lastPrice"] = fill["qty"], fill["price"]
            data["tradeId"], data["isMaker"] = fill["tradeId"], fill["isMaker"]
            if "commission" in fill:
                data["commission"] = fill["commission"]
                data["commissionAsset"] = fill["commissionAsset"]
        if self.reject:
            data["rejectReason"] = self.reject
        return data

    def entry(self) -> list[Any]:
        """Its fields as the order log keeps them (``restore`` takes them back)."""
        return [
            self.order_id, self.account, self.symbol.id, self.side, self.type_name, self.tif,
            self.price, self.stop_price, self.qty, self.leaves, self.cum, self.notional,
            self.status, self.client_order_id, self.time_ms, self.update_ms, self.reject,
            self.ref, self.display, self.amend_ref, self.triggered, self.cancel_ref, self.seq,
            self.notional_known,
        ]  # fmt: skip

    @staticmethod
    def waiting_refs(values: list[Any]) -> list[int]:
        """The refs of the new order, amend and cancel an ``entry`` says wait for an answer
        (a restart sends them again where the ring they went in is gone: review 158); a
        cancel's only while the order is open (a finished one's cancel, answered after the
        order ended, may stay in its entry: review 160)."""
        refs = [values[k] for k in (17, 19) if len(values) > k and values[k]]
        if len(values) > 21 and values[21] and values[12] in OPEN_STATUSES:
            refs.append(values[21])
        return refs

    @classmethod
    def restore(cls, placed: int, values: list[Any], instruments: Instruments) -> LiveOrder | None:
        """The order an ``entry`` describes; None when its symbol is no longer configured."""
        symbol = instruments.by_id.get(values[2])
        if symbol is None:
            log.warning("order log: API order %d is on symbol %d, no longer configured: "
                        "dropped", values[0], values[2])  # fmt: skip
            return None
        order = cls(values[0], values[1], symbol, *values[3:17])
        order.ref, order.placed = values[17], placed
        order.display = values[18] if len(values) > 18 else 0  # logs from before it: 0
        order.amend_ref = values[19] if len(values) > 19 else 0
        order.triggered = bool(values[20]) if len(values) > 20 else False
        order.cancel_ref = values[21] if len(values) > 21 else 0
        order.seq = values[22] if len(values) > 22 else 0  # (0: not known, review 158)
        # a notional found unknown stays so across a second restart (was taken as known)
        order.notional_known = bool(values[23]) if len(values) > 23 else True
        return order


def from_fix(o: Order, account: int) -> LiveOrder:
    """The API's view of an order placed over FIX on this gateway, named by the ClOrdID it was
    placed or last replaced with (not a cancel's: the order's clientOrderId, as filed)."""
    type_name = "LIMIT_MAKER" if o.post_only else TYPE_NAMES.get(o.ord_type, "")
    placed = o.time_ns or o.received_ns
    return LiveOrder(
        o.order_id, account, o.symbol, int(o.side), type_name, int(o.tif), o.price,
        o.stop_price, o.qty, o.leaves, o.cum, o.notional, "PARTIALLY_FILLED" if o.cum else "NEW",
        (o.name or o.cl_ord_id).decode("latin-1"), ms(placed), ms(max(o.updated_ns, placed)),
        display=o.display, triggered=o.triggered,
    )  # fmt: skip


def from_accepted(a: Accepted, sym: SymbolConfig) -> LiveOrder:
    """The API's view of an order placed through another gateway, as its ``Accepted`` shows
    it: its terms as sent, a market or stop-market buy's price 0 (the client's, as its row
    and every other view show it; the ``Accepted``'s is the router's cap), no clientOrderId
    until a row completes it (review 59)."""
    price = 0 if a.flags & OrderFlag.CAPPED else a.price
    return LiveOrder(
        a.order_id, a.account, sym, int(a.side), row_type(int(a.ord_type), a.flags), int(a.tif),
        price, a.stop_price, a.qty, a.qty, time_ms=ms(a.ts_ns), display=a.display_qty,
    )  # fmt: skip


def from_row(row: tuple[Any, ...], sym: SymbolConfig) -> LiveOrder:
    """The API's view of an order as a database row (``History.orders``) shows it: placed
    elsewhere, or before its account was followed here. Its clientOrderId is the row's ('':
    not kept); its seq is the row's ``updated_seq``, the journal seq of its last change filed;
    its notional the row's, summed from its trades (unknown where they do not add up)."""
    (oid, account, _sym, side, ord_type, tif, price, stop, size, remaining, filled, status,
     _code, created_ms, updated_ms, flags, updated_seq, display, client_id) = row[:19]  # fmt: skip
    notional = row_notional(row)
    return LiveOrder(
        oid, account, sym, side, row_type(ord_type, flags), tif, price, stop, size, remaining,
        filled, notional or 0, status=STATUS_NAMES.get(status, str(status)), time_ms=created_ms,
        update_ms=updated_ms, seq=updated_seq, notional_known=notional is not None,
        display=display,
        triggered=bool(stop and filled),  # a stop that traded was triggered (as order_json)
        client_order_id=client_id,
    )  # fmt: skip


def from_done(done: OrderDone, sym: SymbolConfig) -> LiveOrder:
    """An order not followed here as its end alone shows it: status, quantity filled and
    time of the end, at the end's seq. Side, price, type and the rest are not known until a
    row completes them (``complete``), nor is its notional (null until a row of as many fills
    says it; 0 where nothing filled)."""
    return LiveOrder(
        done.order_id, done.account, sym, 0, "", 0, 0, 0, done.filled_qty + done.leaves_qty, 0,
        done.filled_qty, status=DONE_STATUS.get(done.reason, "CANCELED"),
        update_ms=ms(done.ts_ns), seq=done.seq, notional_known=not done.filled_qty,
    )  # fmt: skip


def balance_json(
    assets: Mapping[int, AssetConfig], asset: int, balances: Mapping[int, tuple[int, int]]
) -> dict[str, str]:
    """One asset's balance as the API shows it: free and locked, decimal strings."""
    cfg = assets.get(asset)
    free, reserved = balances.get(asset, (0, 0))
    name, decimals = (cfg.name, cfg.decimals) if cfg else (str(asset), 0)
    return {
        "asset": name,
        "free": format_units(free, decimals).decode(),
        "locked": format_units(reserved, decimals).decode(),
    }


def generated_id(taken: Callable[[str], bool], ref: int) -> str:
    """``r<ref>`` for an order sent without a clientOrderId, unless an open order of the
    account holds that very name (``taken``: over the API or over FIX, review 49): then
    ``r<ref>.<k>``, the first one free."""
    name, k = f"r{ref}", 0
    while taken(name):
        k += 1
        name = f"r{ref}.{k}"
    return name


@dataclass(slots=True)
class Outcome:
    """What the exchange said of one request: the order (new, cancel), the fills its own
    command made, or why not (``code`` not OK), or an account's balances."""

    order: LiveOrder | None = None
    fills: list[dict[str, Any]] = field(default_factory=list)
    code: ResultCode = ResultCode.OK
    balances: dict[int, tuple[int, int]] | None = None
    #: The order as it stood when the answer was decided (later fills do not leak into an
    #: answer whose ``fills`` list ends here).
    view: dict[str, Any] | None = None


@dataclass(slots=True)
class PendingRequest:
    """A request sent to the exchange and not answered yet, under its ``client_ref``."""

    kind: str  # "new", "cancel", "amend", "mass", "balances"
    account: int
    order: LiveOrder | None = None
    outcome: Outcome = field(default_factory=Outcome)
    #: A new order's command's seq, from its acceptance: the events of that command are its
    #: answer's; a later command's (a maker fill in the same read) are not (review 47).
    seq: int = 0


def as_cancelled(order: dict[str, Any]) -> dict[str, Any]:
    """An order's view as a cancel answers it (single, batch, all open): its client order id
    also as ``origClientOrderId``, Binance's name there (where ccxt and python-binance read
    it)."""
    return order | {"origClientOrderId": order["clientOrderId"]}
