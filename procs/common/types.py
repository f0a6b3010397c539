"""Integer types and enumerations used inside the pipeline.

Prices are integer ticks, quantities integer lots, times integer nanoseconds; decimals exist
only at the edges (FIX, REST, the web page). The ``Annotated`` bounds are enforced by msgspec
whenever a record is decoded, and size each field's worst-case encoding.
"""

from __future__ import annotations

import re
from enum import IntEnum
from typing import Annotated, Final

import msgspec

I64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
U64 = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]  # ids: non-negative, fit an int64
U32 = Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)]
U16 = Annotated[int, msgspec.Meta(ge=0, le=2**16 - 1)]
U8 = Annotated[int, msgspec.Meta(ge=0, le=255)]

Price = I64  # ticks; may be negative for spreads
Qty = U64  # lots
TimestampNs = U64  # time.time_ns() at the edge that made the record
OrderId = U64  # assigned by the router; 0 before sequencing
AccountId = U64
AssetId = U32
SymbolId = U32
GatewayId = U16
SessionId = U32

#: The longest client order id a record carries, in bytes: the REST API's ``newClientOrderId``
#: (1..36 of A-Z a-z 0-9 . _ : / -, as Binance's) and a FIX ClOrdID that is as short and
#: printable (``client_id_of``); a longer ClOrdID is carried as none (b"").
MAX_CLIENT_ID: Final = 36
#: A client order id as the records carry it: ASCII bytes, b"" where none is kept.
ClientOrderId = Annotated[bytes, msgspec.Meta(max_length=MAX_CLIENT_ID)]


def client_id_of(value: bytes) -> bytes:
    """``value`` (a FIX ClOrdID) as a record carries it: itself where it is at most
    ``MAX_CLIENT_ID`` bytes of printable ASCII, else b"" (not kept: the database then shows the
    order without one, rather than a cut or garbled id)."""
    return value if _KEPT_CLIENT_ID(value) is not None else b""


_KEPT_CLIENT_ID: Final = re.compile(rb"[\x20-\x7e]{1,%d}" % MAX_CLIENT_ID).fullmatch


class Side(IntEnum):
    BUY = 1
    SELL = 2


class OrdType(IntEnum):
    LIMIT = 1
    MARKET = 2
    STOP = 3  # stop-market, triggered by the last trade price
    STOP_LIMIT = 4


class TimeInForce(IntEnum):
    GTC = 1
    IOC = 2
    FOK = 3
    DAY = 4  # expired by an end-of-session admin command


class StpMode(IntEnum):
    """Self-trade prevention, per account."""

    NONE = 0
    CANCEL_NEWEST = 1
    CANCEL_OLDEST = 2
    CANCEL_BOTH = 3


class DoneReason(IntEnum):
    """Why an order left the book (or never rested)."""

    FILLED = 1
    CANCELLED = 2  # by its owner
    EXPIRED = 3  # DAY at end of session, or the IOC / market remainder
    SELF_TRADE = 4  # removed by self-trade prevention
    MASS_CANCELLED = 5
    # 6: unused (was REJECTED; a refusal is a Rejected record, never an OrderDone)


class AdminAction(IntEnum):
    HALT = 1
    RESUME = 2
    END_OF_SESSION = 3
    SNAPSHOT = 4
    SHUTDOWN = 5


class TradingStatus(IntEnum):
    OPEN = 1
    HALTED = 2


class OrderFlag:
    """Bits of ``NewOrder.flags``."""

    POST_ONLY: Final = 1
    #: Set by the router, when it gives a market or stop-market buy sent without a price its
    #: cap (``accounts.py``; gateways never set it): the price is the router's, not the
    #: client's, and the history shows 0 for it as the live views do.
    CAPPED: Final = 2
    ALL: Final = 3
