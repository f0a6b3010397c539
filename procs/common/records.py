"""The records that cross ringex's rings: frozen, array-like ``msgspec.Struct``s, each with an
integer tag, in tag order (``RECORD_TYPES``), and the commands of them the router journals
(``JOURNALED_TYPES``). How a record is stored in a slot, and why MessagePack, is
``procs/common/record_codec.py``'s.
"""

from __future__ import annotations

from typing import Final, Union, get_args

import msgspec

from procs.common.result_codes import ResultCode
from procs.common.types import (
    I64,
    U8,
    U16,
    U32,
    U64,
    AccountId,
    AdminAction,
    AssetId,
    ClientOrderId,
    DoneReason,
    GatewayId,
    OrderId,
    OrdType,
    Price,
    Qty,
    SessionId,
    Side,
    StpMode,
    SymbolId,
    TimeInForce,
    TimestampNs,
    TradingStatus,
)


class Record(
    msgspec.Struct,
    frozen=True,
    array_like=True,
    tag_field="type",
    gc=False,
    forbid_unknown_fields=True,  # a longer array is an error, never a record cut short
):
    """Base of every ring record. ``seq`` is the router's global sequence (0 before it)."""


class OrderRecord(Record, frozen=True):
    """The routing header every order-scoped record starts with: where it came from (gateway,
    session, the client's reference), whose it is, and which order (0 before the router
    assigns an id, or when a reject came before one was given)."""

    seq: U64
    ts_ns: TimestampNs
    gateway: GatewayId
    session: SessionId
    client_ref: U64  # the gateway's handle for the client's order id (FIX ClOrdID)
    account: AccountId
    symbol: SymbolId
    order_id: OrderId


# -- commands: gateway -> router -> matcher ------------------------------------------------


class NewOrder(OrderRecord, tag=1, frozen=True):
    side: Side
    ord_type: OrdType
    tif: TimeInForce
    flags: U8  # OrderFlag bits
    stp: StpMode
    price: Price  # limit price in ticks (0 for market)
    qty: Qty  # lots
    stop_price: Price  # trigger for STOP / STOP_LIMIT, else 0
    display_qty: Qty  # iceberg slice size, 0 = show all
    #: the client's order id (REST newClientOrderId, FIX ClOrdID: ``types.client_id_of``) for
    #: the history; b"" where none is kept, and in the entries of builds before it (a trailing
    #: default: their shorter arrays decode as this record)
    client_id: ClientOrderId = b""


class CancelOrder(OrderRecord, tag=2, frozen=True):
    """Cancel ``order_id`` (the header says whose and where from)."""


class ReplaceOrder(OrderRecord, tag=3, frozen=True):
    """Cancel-replace: a smaller qty keeps priority; a new price or larger qty loses it.

    ``order_qty`` is the order's new total, fills included (FIX OrderQty): the matcher
    makes its open quantity ``order_qty`` minus what has filled when the replace executes,
    so a fill racing the replace is never added to (nothing left: ``Replaced`` with qty 0,
    then ``OrderDone`` FILLED, as FIX answers a replace that fills overtook)."""

    price: Price
    order_qty: Qty
    #: the order's client id once replaced (FIX: the G's ClOrdID); b"": unchanged (a REST
    #: amend) or not kept (a longer ClOrdID): the history keeps the one it had
    client_id: ClientOrderId = b""


class MassCancel(Record, tag=4, frozen=True):
    """Cancel every order of ``account`` (0: any) on ``symbol`` (0: every symbol)."""

    seq: U64
    ts_ns: TimestampNs
    gateway: GatewayId
    session: SessionId
    client_ref: U64
    account: AccountId
    symbol: SymbolId


class AdminCommand(Record, tag=5, frozen=True):
    seq: U64
    ts_ns: TimestampNs
    action: AdminAction
    symbol: SymbolId  # 0: all symbols
    arg: I64  # the admin client's reference (unique, ns): a restarted router's dedup key


class Heartbeat(Record, tag=6, frozen=True):
    """Liveness through a ring when nothing else flows; ``source`` is a process id of ours."""

    ts_ns: TimestampNs
    source: U16
    counter: U64


class FeeSchedule(Record, tag=7, frozen=True):
    """The fees in force from ``seq`` on: ``symbol``'s maker and taker basis points (symbol
    0: none changes) and the account fees are credited to. Journaled by a starting router
    whose config differs from what its state holds, so a replay settles every trade under
    the fees it was made under, whatever the config says at the time of the replay. Goes to
    no matcher."""

    seq: U64
    ts_ns: TimestampNs
    symbol: SymbolId
    maker_bps: U16
    taker_bps: U16
    fee_account: AccountId


class SymbolRules(Record, tag=8, frozen=True):
    """``symbol``'s trading rules in force from ``seq`` on (``procs.core.symbols.SymbolSpec``'s
    fields). Journaled by a starting router for each configured symbol whose rules differ
    from those its state journaled last, or that has none yet (every symbol of a new
    journal), and routed to that symbol's matcher: a replay executes every order under the
    rules it met live, whatever the config says at the time of the replay
    (``procs/core/symbol_rules.py``)."""

    seq: U64
    ts_ns: TimestampNs
    symbol: SymbolId
    tick: U64
    lot: U64
    min_qty: Qty
    max_qty: Qty
    iceberg_parts: U16
    band_bps: U16
    limit_band_bps: U16


# -- events: matcher -> gateways, router, marketdata (the writer replays the journal) ------


class Accepted(OrderRecord, tag=10, frozen=True):
    """A new order taken, with its terms as sent: every gateway follows its account's orders
    from it, those placed through another gateway too (review 59: a stream there reported
    one without its type, time in force, stop or iceberg, and a capped buy at its cap)."""

    side: Side
    price: Price
    qty: Qty  # leaves quantity on the book
    ord_type: OrdType = OrdType.LIMIT
    tif: TimeInForce = TimeInForce.GTC
    flags: U8 = 0  # OrderFlag bits (CAPPED: ``price`` is the router's cap, not the client's)
    stop_price: Price = 0
    display_qty: Qty = 0


class Rejected(OrderRecord, tag=11, frozen=True):
    """A command's refusal, with why. One exception: the router acknowledges an accepted
    ``MassCancel`` to its gateway with code OK (seq 0), once it is durable."""

    code: ResultCode


class Trade(Record, tag=12, frozen=True):
    seq: U64
    ts_ns: TimestampNs
    trade_id: U64
    symbol: SymbolId
    price: Price
    qty: Qty
    aggressor: Side
    maker_order_id: OrderId
    maker_account: AccountId
    maker_gateway: GatewayId
    maker_leaves: Qty
    taker_order_id: OrderId
    taker_account: AccountId
    taker_gateway: GatewayId
    taker_leaves: Qty


class OrderDone(OrderRecord, tag=13, frozen=True):
    reason: DoneReason
    filled_qty: Qty  # cumulative
    leaves_qty: Qty  # what was removed unfilled


class Replaced(OrderRecord, tag=14, frozen=True):
    price: Price
    qty: Qty  # new leaves quantity


class BookLevel(Record, tag=15, frozen=True):
    """An L2 change: the level's total ``qty`` and order ``count`` after it (0: level gone)."""

    seq: U64
    ts_ns: TimestampNs
    symbol: SymbolId
    side: Side
    price: Price
    qty: Qty
    count: U32


class Triggered(OrderRecord, tag=16, frozen=True):
    """A stop order's trigger was reached: it enters the book now as a market (STOP) or limit
    (STOP_LIMIT) order. The header is the stop order's own, for its owner's gateway."""

    stop_price: Price
    price: Price  # the limit it enters with; 0 for a stop-market order


class SymbolStatus(Record, tag=17, frozen=True):
    """A symbol's trading status after an admin command (halt, resume, end of session)."""

    seq: U64
    ts_ns: TimestampNs
    symbol: SymbolId
    action: AdminAction
    status: TradingStatus


# -- account commands: admin gateway -> router (sequenced and journaled like orders) ----------


class CreateAccount(Record, tag=20, frozen=True):
    """Open ``account`` (an id the operator chooses; the fee account is made at startup)."""

    seq: U64
    ts_ns: TimestampNs
    gateway: GatewayId
    session: SessionId
    client_ref: U64
    account: AccountId


class Transfer(Record, tag=21, frozen=True):
    """A deposit (``amount`` > 0) or withdrawal (< 0) of ``asset`` in its minor units. ``key``
    makes it idempotent: a second transfer with a key already applied is refused."""

    seq: U64
    ts_ns: TimestampNs
    gateway: GatewayId
    session: SessionId
    client_ref: U64
    account: AccountId
    asset: AssetId
    amount: I64
    key: U64


class AccountReply(Record, tag=22, frozen=True):
    """The router's answer to ``CreateAccount`` or ``Transfer``: ``code`` OK or why not, and
    the account's free balance of ``asset`` after it (0 for ``CreateAccount``)."""

    seq: U64  # 0 when refused (nothing was sequenced)
    ts_ns: TimestampNs
    gateway: GatewayId
    session: SessionId
    client_ref: U64
    account: AccountId
    asset: AssetId
    code: ResultCode
    balance: I64


# -- balance watches: gateway <-> router (read-only: never sequenced, never journaled) ----------


class WatchBalances(Record, tag=23, frozen=True):
    """A gateway asks for ``account``'s balances: the router answers with a snapshot (one
    ``Balance`` per asset, the last one flagged) and then pushes a ``Balance`` whenever one of
    the account's balances changes, for ``lease_ms``; the gateway renews the lease while it
    still wants them. ``lease_ms`` 0 ends the watch (no answer)."""

    seq: U64  # 0: a watch is never sequenced
    ts_ns: TimestampNs
    gateway: GatewayId
    session: SessionId
    client_ref: U64
    account: AccountId
    lease_ms: U32


class Balance(Record, tag=24, frozen=True):
    """One asset of one account as the router holds it: ``free`` and ``reserved`` (held by open
    orders) in the asset's minor units. ``client_ref`` is the watch's for a snapshot, 0 for a
    pushed change; ``last`` is 1 on the final record of a snapshot (an account without
    balances gets one record with ``asset`` 0; an account not open, ``NOT_OPEN``). ``seq``
    is the router's applied label when it was sent: every event of every command through it
    is in the values (a gateway answers a balance request once a label reaches the newest
    event it read of the account)."""

    seq: U64
    ts_ns: TimestampNs
    gateway: GatewayId
    session: SessionId
    client_ref: U64
    account: AccountId
    asset: AssetId
    free: I64
    reserved: I64
    last: U8


#: ``Balance.last`` of the one record that answers a watch of an account never opened (or
#: closed): the last of its snapshot, and not an open account without funds (review 50).
NOT_OPEN: Final = 2


AnyRecord = Union[  # noqa: UP007  (msgspec needs a runtime Union of the tagged types)
    NewOrder,
    CancelOrder,
    ReplaceOrder,
    MassCancel,
    AdminCommand,
    Heartbeat,
    FeeSchedule,
    SymbolRules,
    Accepted,
    Rejected,
    Trade,
    OrderDone,
    Replaced,
    BookLevel,
    Triggered,
    SymbolStatus,
    CreateAccount,
    Transfer,
    AccountReply,
    WatchBalances,
    Balance,
]

#: Every record type, in tag order; a ring carries any of them.
RECORD_TYPES: Final[tuple[type[Record], ...]] = get_args(AnyRecord)

#: The record types the router sequences and journals: the commands. A journal's schema id
#: (``RecordCodec.journal_schema_id``) is theirs alone, so a build that changes an event
#: (``Accepted``, ``BookLevel``, ...) still replays the journals of the builds before it (a
#: segment of another slot size is re-framed as it is read: ``record_codec.reframe_slot``).
#: The slot is the largest record's worst case and framing, rounded up to 8 bytes:
#: ``NewOrder``'s 142 + 10 of 152 since it carries a client id (``Trade``'s of 128 before).
JOURNALED_TYPES: Final[tuple[type[Record], ...]] = (
    NewOrder,
    CancelOrder,
    ReplaceOrder,
    MassCancel,
    AdminCommand,
    FeeSchedule,
    SymbolRules,
    CreateAccount,
    Transfer,
)
