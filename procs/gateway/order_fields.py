"""FIX order entry's vocabulary: the code tables of OrdType and TimeInForce, the
OrdRejReason, CxlRejReason and OrdStatus values it answers with, and the checks and reports
of single requests that need no state, a request's amounts among them (``orders.py`` holds
the state)."""

from __future__ import annotations

from typing import Final, NamedTuple, Protocol

from config.schema import RiskConfig, SymbolConfig
from procs.common.result_codes import ResultCode
from procs.common.types import OrdType, Side, StpMode, TimeInForce
from procs.core.order_checks import RESTS
from procs.gateway.commission import Commissions
from procs.gateway.dictionary import (
    FIELDS,
    HEADER,
    UNSUPPORTED_ORDER_FIELDS,
    UNSUPPORTED_ORDER_GROUPS,
)
from procs.gateway.fix import FixMessage, field, shown
from procs.gateway.instruments import format_units, price_ticks, qty_lots, to_units
from procs.gateway.notional_note import cap_note, notional_note
from procs.gateway.order_state import Order

#: The exchange's refusals of a new order as FIX 4.4 OrdRejReason (103) has them; others
#: are 99 (Other) with the code's name in Text (58). FIX 4.4 has no value for a price off
#: the tick (18, Invalid price increment, came with FIX 5.0).
ORD_REJ_REASON: dict[ResultCode, int] = {
    ResultCode.UNKNOWN_SYMBOL: 1,
    ResultCode.SYMBOL_HALTED: 2,  # Exchange closed
    ResultCode.INSUFFICIENT_BALANCE: 3,  # Order exceeds limit
    ResultCode.TOO_MANY_OPEN_ORDERS: 3,
    ResultCode.NOTIONAL_TOO_LARGE: 3,
    ResultCode.DUPLICATE_CLIENT_ORDER_ID: 6,
    ResultCode.INVALID_QTY: 13,  # Incorrect quantity
    ResultCode.QTY_NOT_ON_LOT: 13,
    ResultCode.QTY_OUT_OF_RANGE: 13,
    ResultCode.UNKNOWN_ACCOUNT: 15,
}


class Fault(NamedTuple):
    """Why an order's fields do not make an order: the text, and the OrdRejReason (103) a
    new order's refusal carries (99, Other, unless FIX 4.4 has a value for it)."""

    text: str
    reason: int = 99


ORD_TYPES = {
    b"1": OrdType.MARKET,
    b"2": OrdType.LIMIT,
    b"3": OrdType.STOP,
    b"4": OrdType.STOP_LIMIT,
}
FIX_ORD_TYPE = {v: k for k, v in ORD_TYPES.items()}
#: SelfTradePreventionMode (25001, as Binance's FIX API spells it, with REST's modes): 1
#: none (its absence), 2 cancel the newest (EXPIRE_TAKER), 3 the oldest, 4 both (review 301).
STP_MODES = {
    b"1": StpMode.NONE,
    b"2": StpMode.CANCEL_NEWEST,
    b"3": StpMode.CANCEL_OLDEST,
    b"4": StpMode.CANCEL_BOTH,
}
TIFS = {b"0": TimeInForce.DAY, b"1": TimeInForce.GTC, b"3": TimeInForce.IOC, b"4": TimeInForce.FOK}
FIX_TIF = {v: k for k, v in TIFS.items()}
#: An ExecutionReport's body after the header: 37 11 [41] 17 150 39 55 54 40 59 38 [44] [99]
#: [18] [111] 151 14 6 60, then the extra fields. TransactTime (60) is the time of the event
#: reported (the sequencer's stamp, so a report sent again after a crash repeats it), or the
#: gateway's clock for a report no event makes. ExecInst and MaxFloor where the order has them:
#: a replace must restate both (``differs``), so a client rebuilding its orders from the
#: reports (a status or mass status answer) must read them there (review 46).
REPORT = (
    b"37=%s\x0111=%s\x01%s17=%d-%s\x01150=%s\x0139=%s\x0155=%s\x0154=%d\x0140=%s\x01"
    b"59=%s\x0138=%s\x01%s%s%s%s151=%s\x0114=%s\x016=%s\x0160=%s\x01%s"
)
#: CxlRejReason (102) values.
CXL_TOO_LATE, CXL_UNKNOWN, CXL_EXCHANGE, CXL_PENDING, CXL_DUPLICATE, CXL_OTHER = 0, 1, 2, 3, 6, 99
#: OrdStatus of an order that is over: filled, cancelled, rejected, expired.
FINISHED = frozenset((b"2", b"4", b"8", b"C"))


def mass_report(f: dict[int, bytes], response: bytes, transact: bytes) -> bytes:
    """An OrderMassCancelReport's body; ``transact``: its TransactTime (60) field."""
    body = field(37, b"MC-" + f[11]) + field(11, f[11]) + field(530, f[530]) + field(531, response)
    return body + transact + (field(55, f[55]) if 55 in f else b"")


def mass_refused(f: dict[int, bytes], reason: int, text: str, transact: bytes) -> bytes:
    """An OrderMassCancelReport's body refusing the request: 531=0, MassCancelRejectReason
    (532) ``reason`` and ``text``."""
    return mass_report(f, b"0", transact) + field(532, reason) + field(58, text)


def differs(msg: FixMessage, order: Order, account: int) -> str | None:
    """Why a cancel or replace does not fit its order, or None: it must repeat the order's
    Symbol and Side, and a replace its OrdType (a replace changes only price and size); an
    Account or Currency it gives must be the session's and the symbol's (``foreign``)."""
    f = msg.fields
    if (fault := foreign(f, order.symbol, account)) is not None:
        return fault.text
    if f[55] != order.symbol.name.encode():
        return f"Symbol {shown(f[55])} is not the order's symbol {order.symbol.name}"
    if f[54] != b"%d" % order.side:
        return f"Side {shown(f[54])} is not the order's side {int(order.side)}"
    if msg.msg_type == b"G" and ORD_TYPES.get(f[40]) != order.ord_type:
        return (
            f"OrdType {shown(f[40])} is not the order's OrdType "
            f"{FIX_ORD_TYPE[order.ord_type].decode()}: a replace changes only price and size"
        )
    if msg.msg_type == b"G":  # a replace restates the order's instructions: post-only or none
        instructions = f.get(18, b"").split()
        if instructions != ([b"6"] if order.post_only else []):
            said = shown(f[18]) if 18 in f else "none"
            return (
                f"ExecInst {said} is not the order's ExecInst "
                f"{'6 (post-only)' if order.post_only else '(none)'}: a replace changes only "
                "price and size"
            )
    # a replace restates the order: no TimeInForce is Day (FIX 4.4), as on a D
    if msg.msg_type == b"G" and TIFS.get(f.get(59, b"0")) != order.tif:
        return (
            f"TimeInForce {shown(f.get(59, b'0 (none: Day)'))} is not the order's TimeInForce "
            f"{FIX_TIF[order.tif].decode()}: a replace changes only price and size"
        )
    return None


def unsupported_field(msg: FixMessage) -> str | None:
    """Why an order (D or G) with a field FIX 4.4 defines for it that changes how it executes
    and that ringex does not act on (MinQty, ExpireTime, a peg, a group such as NoAllocs) is
    refused, or None: a client that sent one expects it kept, so it is refused, never
    dropped in silence."""
    f = msg.fields
    if UNSUPPORTED_ORDER_FIELDS.isdisjoint(f):
        kind = f.get(167)  # SecurityType: the symbol itself, or a derivative of it
        if kind is not None and kind in DERIVATIVES:
            return f"SecurityType (167) {shown(kind)}: ringex trades the symbol itself"
        cfi = f.get(461, b"")  # CFICode, which FIX 4.4 recommends over SecurityType
        if cfi[:1] in CFI_DERIVATIVES:
            return (
                f"CFICode (461) {shown(cfi)} names a derivative (ISO 10962 category "
                f"{cfi[:1].decode()}): ringex trades the symbol itself"
            )
        return None
    tag = next((t for t in msg.tags if t in UNSUPPORTED_ORDER_FIELDS and not _none(f, t)), None)
    if tag is None:  # only groups of no entry (NoAllocs 0): nothing asked for
        return None
    return f"{FIELDS[tag][0]} ({tag}) is not supported"


def unsupported_value(f: dict[int, bytes]) -> str | None:
    """Why a new order whose OrdType (40) or TimeInForce (59) is one FIX 4.4 defines and
    ringex does not support is refused (OrdRejReason 11), or None."""
    if f[40] not in ORD_TYPES:
        said = "1, 2, 3 or 4: market, limit, stop, stop limit"
        return f"OrdType (40) {shown(f[40])} is not supported ({said})"
    if (tif := f.get(59, b"0")) not in TIFS:
        said = "0, 1, 3 or 4: Day, GTC, IOC, FOK"
        return f"TimeInForce (59) {shown(tif)} is not supported ({said})"
    return None


def _none(f: dict[int, bytes], tag: int) -> bool:
    """Whether ``tag`` is the count of a group with no entry."""
    return tag in UNSUPPORTED_ORDER_GROUPS and f[tag] == b"0"


def order_fault(msg: FixMessage, symbol: SymbolConfig, account: int) -> Fault | None:
    """Why a new order's fields refuse it before its amounts are read, or None: a field
    ringex does not act on (OrdRejReason 11), an OrdType or TimeInForce it does not support
    (``unsupported_value``), another account or currency (``foreign``)."""
    if (why := unsupported_value(msg.fields) or unsupported_field(msg)) is not None:
        return Fault(why, 11)  # unsupported order characteristic
    return foreign(msg.fields, symbol, account)


def other_account(f: dict[int, bytes], account: int) -> str | None:
    """Why a request's Account (1), if it gives one, is not the session's account number,
    or None (review 54; review 56 for status requests)."""
    if 1 in f and f[1] != b"%d" % account:
        return f"Account (1) {shown(f[1])} is not this session's account {account}"
    return None


def foreign(f: dict[int, bytes], symbol: SymbolConfig, account: int) -> Fault | None:
    """Why an order, cancel or replace for another account than its session's, or priced in
    another currency than its symbol's quote asset, is refused, or None (review 54: both
    were taken and ignored, so client B's order filled in the session's account, and a
    price in euros was read as one in dollars). Account (1) is the account number the
    exchange gave the session; Currency (15) is "the currency used for price"."""
    if (why := other_account(f, account)) is not None:
        return Fault(why, 15)
    if 15 in f and f[15] != symbol.quote.encode():
        return Fault(
            f"Currency (15) {shown(f[15])} is not {symbol.name}'s quote currency "
            f"{symbol.quote}, which its prices are in",
            11,
        )
    return None


#: What an OrderMassCancelRequest (q) may carry that ringex reads, the header aside. Any
#: other field FIX 4.4 defines for it narrows what it cancels (Side, TradingSessionID, the
#: instrument's type or ids, an underlying): refused rather than done too widely (review 54).
_MASS_CANCEL_READ: Final = frozenset((11, 526, 530, 55, 60, 58, 1))  # 526: the client's id


def mass_refusal(msg: FixMessage, account: int) -> tuple[int, str] | None:
    """Why a mass cancel is refused before it goes out, as MassCancelRejectReason (532) and a
    Text: a MassCancelRequestType FIX 4.4 defines and ringex does not act on (2 to 6: 0, not
    supported), or ``mass_narrowed``'s fault (99); None if neither."""
    kind = msg.fields[530]
    if kind not in (b"1", b"7"):  # by Symbol, or every order of the session's account
        return 0, f"MassCancelRequestType {msg.text(530)} is not supported: 1 (a Symbol) or 7"
    narrowed = mass_narrowed(msg, account)
    return None if narrowed is None else (99, narrowed)


def mass_narrowed(msg: FixMessage, account: int) -> str | None:
    """Why a mass cancel is refused for a field that narrows it past what ringex acts on
    (the exchange cancels both sides of a symbol, or all), or names another account."""
    f = msg.fields
    if 54 in f:
        return f"Side (54) {shown(f[54])} on a mass cancel is not supported: both sides go"
    if (why := other_account(f, account)) is not None:
        return why
    tag = next((t for t in msg.tags if t not in _MASS_CANCEL_READ and t not in HEADER), None)
    if tag is None:
        return None
    return (
        f"{FIELDS[tag][0]} ({tag}) narrows the mass cancel and is not supported: refused "
        "rather than done too widely"
    )


#: SecurityType (167) values naming a derivative of the Symbol (55), not the symbol: an order
#: for one is refused, never booked on the symbol itself (the reread of review 51).
DERIVATIVES: Final = frozenset((b"OPT", b"FUT", b"MLEG", b"WAR", b"FORWARD", b"REPO"))  # FIX 4.4
#: CFICode (461) categories, its first letter (ISO 10962), of a derivative or a claim on the
#: symbol rather than the symbol: options, futures, swaps, non-listed options, forwards,
#: strategies, financing, entitlements (review 54).
CFI_DERIVATIVES: Final = frozenset(b"O F S H J K L R".split())


def replace_fault(msg: FixMessage, order: Order, stop: int, display: int) -> str | None:
    """Why a replace of ``order`` with this StopPx and MaxFloor is refused, or None: a replace
    changes only price and size, so a StopPx or MaxFloor that differs from the order's is
    refused, never dropped in silence."""
    f = msg.fields
    if (unsupported := unsupported_field(msg)) is not None:
        return unsupported
    if display != order.display:
        return (
            f"MaxFloor (111) {shown(f.get(111, b'absent'))} is not the order's: a replace "
            "changes only price and size"
        )
    if stop != order.stop_price:
        kept = format_units(order.stop_price, order.symbol.price_decimals).decode()
        return (
            f"StopPx (99) {shown(f.get(99, b'absent'))} is not the order's {kept}: a replace "
            "changes only price and size"
        )
    return None


def refusal_text(
    kind: bytes, order: Order, code: ResultCode, risk: RiskConfig, price: int = 0,
    amounts: Commissions | None = None,
) -> str:  # fmt: skip
    """The Text (58) of the exchange's refusal of a ``kind`` command (D, F or G) of
    ``order``: its code and ``refusal_note``'s why. A cancel or replace refused as
    UNKNOWN_ORDER of an order that finished meanwhile (another cancel, the REST API's, or a
    fill came first) is too late, as one naming a finished order is told at once (review
    253: the order was known)."""
    if kind != b"D" and code == ResultCode.UNKNOWN_ORDER and order.status in FINISHED:
        return "too late: the order is finished"
    limit, most = risk.max_order_notional, risk.max_open_orders
    note = refusal_note(kind, order, code, limit, price, most, amounts)
    return f"{code.name} ({int(code)}){note}"


def refusal_note(
    kind: bytes, order: Order, code: ResultCode, max_notional: int = 0, price: int = 0,
    max_open: int = 0, amounts: Commissions | None = None,
) -> str:  # fmt: skip
    """What the Text (58) of the exchange's refusal of a ``kind`` command (D, F or G) of
    ``order`` adds to its code: why, where the code alone does not say ("" elsewhere). Said
    after the refusal only, so an order whose trigger this gateway has not seen yet is
    never refused on a guess. ``max_notional`` and ``max_open``: the risk config's
    ``max_order_notional`` and ``max_open_orders``; ``price``: a replace's new price."""
    if code == ResultCode.TOO_MANY_OPEN_ORDERS:
        return f": an account may have at most {max_open} open orders"
    if code == ResultCode.NOTIONAL_TOO_LARGE:  # a replace is judged at its new price
        at = price if kind == b"G" else order.price
        return notional_note(max_notional, order.symbol, order.side, order.ord_type, at, amounts)
    if (
        kind == b"G"
        and code == ResultCode.INVALID_ORDER
        and order.ord_type in (OrdType.STOP, OrdType.STOP_LIMIT)
        and not order.triggered
    ):
        return ": a stop not triggered yet is not on the book; cancel it and send a new one"
    if (
        code == ResultCode.INVALID_PRICE
        and kind == b"D"
        and (order.side == Side.BUY and order.ord_type == OrdType.STOP and not order.price)
    ):
        return cap_note(order.symbol, "StopPx")
    if code == ResultCode.PRICE_OUT_OF_BAND:  # a replace's new price: a limit's collar
        note = OUT_OF_BAND_NOTES.get(order.ord_type if kind == b"D" else OrdType.LIMIT, "")
        sym = order.symbol
        lower = " (lower than its Price (44))" if order.price else ""  # a capped market buy
        note = note.format(limit_band_bps=sym.limit_band_bps, band_bps=sym.band_bps, lower=lower)
        if kind == b"D" and order.ord_type == OrdType.STOP and order.price:
            note += ", or past its Price (44), the worst it may trade at"
        return note
    return ""


#: Why PRICE_OUT_OF_BAND, by order type, the symbol's bands filled in (the REST API says
#: the same, ``rest_params``; review 253: the Text named the setting, not its value).
OUT_OF_BAND_NOTES: Final = {
    OrdType.LIMIT: (
        ": a limit price may be at most limit_band_bps {limit_band_bps} bps from the last trade"
    ),
    OrdType.STOP_LIMIT: (
        ": a stop-limit's limit may be at most limit_band_bps {limit_band_bps} bps from its "
        "stop price while it waits (from the last trade once the market is past its stop)"
    ),
    OrdType.MARKET: (
        ": its cap, the last trade plus band_bps {band_bps} bps{lower}, is below the best ask: "
        "capped, it could not trade"
    ),
    OrdType.STOP: (
        ": the best opposite price is past its stop price by more than band_bps {band_bps} "
        "bps: banded from its stop, it could not trade"
    ),
}


def rested(order: Order) -> bool:
    """Whether an order that the matcher expired had rested (or waited as a stop): a Day
    order at the end of the session is Expired (150=C). A market order, or a triggered
    stop-market, has its unfilled rest cancelled in the instant it trades (150=4), as an
    IOC's or FOK's is."""
    if order.tif != TimeInForce.DAY or order.ord_type == OrdType.MARKET:
        return False
    return not (order.ord_type == OrdType.STOP and order.triggered)


def cannot_rest(f: dict[int, bytes], ord_type: OrdType) -> str | None:
    """Why an order with fields ``f`` never rests on the book, or None: an iceberg (MaxFloor)
    and a post-only order (ExecInst 6) must be able to, which the matcher otherwise refuses
    as a bare INVALID_ORDER."""
    if ord_type not in (OrdType.LIMIT, OrdType.STOP_LIMIT):
        return f"OrdType {f[40].decode()} does not rest (a limit, 2, or stop-limit, 4, does)"
    if TIFS[f.get(59, b"0")] not in RESTS:
        return f"TimeInForce {f[59].decode()} does not rest (Day, 0, or GTC, 1, does)"
    return None


def cannot_post(f: dict[int, bytes], ord_type: OrdType) -> str | None:
    """Why an order with fields ``f`` cannot be post-only (ExecInst 6), or None."""
    if ord_type == OrdType.STOP_LIMIT:
        return "applies to a limit order (OrdType 2), not a stop-limit (4)"
    why = cannot_rest(f, ord_type)
    return None if why is None else f"needs an order that rests: {why}"


class Placed(Protocol):
    """An order as an edge knows it: a FIX ``Order``, a REST ``LiveOrder``."""

    price: int
    qty: int  # the total, fills included


def cut_in_place(order: Placed | None, price: int, qty: int) -> bool:
    """A replace (G) or amend (PUT order) of ``order`` to ``price`` and ``qty`` that makes it
    no larger where it is: no more slices than it has, whatever ``iceberg_parts`` is now (the
    matcher's rule, ``Book._replace``: review 227)."""
    return order is not None and price == order.price and qty <= order.qty


def amounts(
    msg: FixMessage,
    sym: SymbolConfig,
    ord_type: OrdType,
    *,
    filled: int = 0,
    replacing: Order | None = None,
) -> tuple[int, int, int, int] | Fault:
    """Price, stop price, quantity and display quantity in units, or why not (with the
    OrdRejReason a new order's refusal carries: 13 for OrderQty's own faults; ``filled``:
    what filled of the order, ``replacing``'s own where given). A G
    ``replacing`` an order (whose MaxFloor must be the order's) may cut an iceberg below its
    slice, as the REST amend may: the book shows what is left (review 217); and may cut it
    at its price past a lowered ``iceberg_parts``, as the matcher takes it (review 227)."""
    f = msg.fields
    replace = replacing is not None
    filled = replacing.cum if replacing is not None else filled  # a G's: what is left
    if 38 not in f:
        return Fault("OrderQty (38) is required", 13)
    qty = qty_lots(f[38], sym)
    if isinstance(qty, str):
        return Fault(qty, 13)
    if not sym.min_qty <= qty <= sym.max_qty:  # as the REST API says it (review 62)
        return Fault(
            f"OrderQty (38) {shown(f[38])} is outside the symbol's limits (min "
            f"{format_units(sym.least_qty, sym.qty_decimals).decode()}, max "
            f"{format_units(sym.most_qty, sym.qty_decimals).decode()}, symbol={sym.name})",
            13,
        )
    price: int | str = 0
    if ord_type in (OrdType.LIMIT, OrdType.STOP_LIMIT):
        if 44 not in f:
            return Fault(f"Price (44) is required for OrdType {f[40].decode()}")
        if replacing is not None and to_units(f[44], sym.price_decimals) == replacing.price:
            price = replacing.price  # its own, off a tick raised since it rested: the
            # matcher keeps it in place (review 278)
        else:
            price = price_ticks(f[44], sym)
    elif 44 in f:  # a market order's worst price
        price = price_ticks(f[44], sym)
    if isinstance(price, str):
        return Fault(price)
    stop: int | str = 0
    if ord_type in (OrdType.STOP, OrdType.STOP_LIMIT):
        if 99 not in f:
            return Fault(f"StopPx (99) is required for OrdType {f[40].decode()}")
        if replacing is not None and to_units(f[99], sym.price_decimals) == replacing.stop_price:
            stop = replacing.stop_price  # its own, as the price above (a triggered stop-limit
        else:  # rests as a limit; replace_fault refuses any other StopPx)
            stop = price_ticks(f[99], sym)
        if isinstance(stop, str):
            return Fault(stop.replace("price", "StopPx", 1))
    elif 99 in f:  # taken in silence, the order would trade as what the client did not mean
        return Fault(
            f"StopPx (99) {shown(f[99])} applies to OrdType 3 or 4 (stops), not OrdType "
            f"{f[40].decode()}"
        )
    display = qty_lots(f[111], sym) if 111 in f else 0
    if isinstance(display, str):
        return Fault(display.replace("quantity", "MaxFloor", 1))
    if display and display < sym.min_qty:  # a slice is an order's size too, as REST says
        least = format_units(sym.least_qty, sym.qty_decimals).decode()
        return Fault(f"MaxFloor (111) {shown(f[111])} is below the symbol's min {least}", 13)
    if display >= qty and not replace:  # an equal one too, as REST refuses it (review 335)
        if display > qty:
            return Fault(f"MaxFloor {shown(f[111])} is above OrderQty {shown(f[38])}")
        return Fault(f"MaxFloor (111) {shown(f[111])} must be below OrderQty (38) {shown(f[38])}")
    if display:
        if why := cannot_rest(f, ord_type):
            return Fault(f"MaxFloor (111) {shown(f[111])} needs an order that rests: {why}")
        parts = -(-(qty - filled) // display)  # a replace's: the slices of what is left
        if parts > sym.iceberg_parts and not cut_in_place(replacing, price, qty):
            return Fault(
                f"MaxFloor {shown(f[111])} cuts OrderQty {shown(f[38])} "
                f"{'less its fills ' if filled else ''}into {parts} parts, "
                f"at most {sym.iceberg_parts}"
            )
    assert isinstance(stop, int)
    return price, stop, qty, display
