"""What FIX order entry knows of an order, of a cancel or replace in flight, and of a mass
cancel waiting for the router's verdict."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from config.schema import SymbolConfig
from procs.common.types import OrdType, Side, TimeInForce


@dataclass(slots=True)
class Order:
    ref: int
    session: int
    cl_ord_id: bytes
    orig_cl_ord_id: bytes
    symbol: SymbolConfig
    side: Side
    ord_type: OrdType
    tif: TimeInForce
    price: int
    stop_price: int
    qty: int  # total order quantity in lots (cum + leaves)
    order_id: int = 0
    cum: int = 0
    notional: int = 0  # sum of price x qty of fills
    leaves: int = 0
    status: bytes = b"A"  # OrdStatus: pending new until Accepted
    received_ns: int = 0  # when its NewOrderSingle came in (0: restored after a restart)
    time_ns: int = 0  # the exchange's time of its new order (its Accepted's): kept in the log
    #: the exchange's time of its last fill, replace or trigger (0: none seen since it was
    #: restored): the REST view's ``updateTime`` of an order placed over FIX
    updated_ns: int = 0
    #: Its session went away (cancel on disconnect) before it was acknowledged: the account
    #: whose cancel goes out as soon as it is.
    cancel_account: int = 0
    display: int = 0  # MaxFloor (111) in lots, 0: not an iceberg
    triggered: bool = False  # a stop whose trigger came (``Triggered``)
    post_only: bool = False  # ExecInst (18) 6: a replace must restate it
    #: the ClOrdID it was placed or last replaced with, once a cancel's has taken
    #: ``cl_ord_id`` (b"": ``cl_ord_id`` is it): its name over REST and in the history (the
    #: order log's FINISHED entry says so: known by its OrigClOrdID too, ``_BY_ORIG``)
    name: bytes = b""
    #: finished: its FINISHED entry as the order log last wrote it, encoded (``order_memory``)
    logged: msgspec.Raw | None = field(default=None, repr=False, compare=False)


@dataclass(slots=True)
class Request:
    """A cancel or replace in flight: ``order`` is its target."""

    kind: bytes  # b"F" or b"G"
    session: int
    cl_ord_id: bytes
    order: Order
    price: int = 0
    qty: int = 0
    #: the OrigClOrdID (41) it named: what an exchange's refusal of it says (the order's own
    #: ClOrdID may have moved on meanwhile, a racing cancel's say: review 190)
    orig_cl_ord_id: bytes = b""


@dataclass(slots=True)
class MassCancelRequest:
    """An OrderMassCancelRequest (q) the router has not answered yet: answered (r) with the
    fields it echoes when the verdict comes, also after a gateway restart (``order_log``)."""

    session: int
    fields: dict[int, bytes]  # ClOrdID (11), MassCancelRequestType (530), Symbol (55)
