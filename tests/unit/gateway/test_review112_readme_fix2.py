"""Review 112, part 2: README.md's ``gateway`` row of "## The processes", order entry, against
the code: OrdRejReason 1, 2, 3, 6, 11, 13, 15, else 99; fields an order may not carry (110, 126,
groups 78 ... 864, an option's or future's, CFICode O ... R); Account, Currency, TimeInForce,
ExecInst, StopPx, MaxFloor; replaces; PossDup; mass cancels; CxlRejReason 2; 39=6/E; mass status
(150=I, 584, 911, 912); 150=D 378=99; TransactTime; ExecIDs, ``exec-ids``; commissions; and the
reports' throttle debt, ``logged-on/``, ``orders.log`` (10,000 finished), the ClOrdID windows.
Convention as ``..._fix.py``: ``claim(...)``, then ``OrderEntry`` run in-process with a stand-in
session recording what it is sent (as ``test_late_disconnect``). Disagreements: none here.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import msgspec
import pytest

from config.schema import AssetConfig, SymbolConfig
from procs.common import exec_ids, topology
from procs.common.records import Accepted, MassCancel, NewOrder, Rejected, Replaced, Trade
from procs.common.result_codes import ResultCode
from procs.common.token_bucket import TokenBucket
from procs.common.types import Side, TimeInForce
from procs.gateway import clordids, order_fields
from procs.gateway.clordids import Generations
from procs.gateway.fix import FixMessage, Timestamps
from procs.gateway.instruments import Instruments
from procs.gateway.live_sessions import LiveSessions
from procs.gateway.order_fields import ORD_REJ_REASON
from procs.gateway.orders import OrderEntry
from procs.gateway.session import Session
from tests.readme_text import claim

NOW = time.time_ns()
SYM = SymbolConfig(name="BTC-USD", id=1, base="BTC", price_decimals=2, qty_decimals=2)
SYM = msgspec.structs.replace(SYM, min_qty=100, max_qty=100_000)
ASSETS = [AssetConfig(name="USD", id=1, decimals=6), AssetConfig(name="BTC", id=2, decimals=6)]
GATEWAY = 3
Pairs = tuple[tuple[int, object], ...]


def source(module: str) -> str:
    """The text of ``procs/<module>.py`` (``gateway/server`` say)."""
    return (Path(__file__).parents[3] / "procs" / f"{module}.py").read_text()


class _Session:
    """What order entry asks of a session: its ids, its throttle, and a record of what it
    is sent (each message's fields, by tag)."""

    def __init__(self, session_id: int = 5, account: int = 7) -> None:
        self.session_id, self.account = session_id, account
        self.user, self.closed = None, False
        self.throttle = TokenBucket(10_000, NOW)
        self.sent: list[dict[int, bytes]] = []

    def send(self, msg_type: bytes, body: bytes, now_ns: int) -> None:
        fields = {35: msg_type}
        for part in body.split(b"\x01")[:-1]:
            tag, _, value = part.partition(b"=")
            fields[int(tag)] = value
        self.sent.append(fields)


def message(kind: str, *pairs: tuple[int, object]) -> FixMessage:
    tags = [35, *(t for t, _ in pairs)]
    values = [kind.encode(), *(str(v).encode() for _, v in pairs)]
    return FixMessage.of(b"", tags, values)


def order(cl: str, *extra: tuple[int, object], tif: int | None = 1) -> Pairs:
    """A limit buy of 1.00 at 100.00, GTC unless ``tif``."""
    pairs: list[tuple[int, object]] = [(11, cl), (55, "BTC-USD"), (54, 1)]
    pairs += [(60, "20260101-00:00:00"), (38, "1"), (40, 2), (44, "100")]
    if tif is not None:
        pairs.append((59, tif))
    return (*pairs, *extra)


class Rig:
    def __init__(self, directory: Path | None = None) -> None:
        self.entry = OrderEntry(GATEWAY, Instruments([SYM]), False, ASSETS, directory)
        self.session = _Session()
        self.entry.on_logon(cast(Session, self.session), NOW)
        self.seq, self.order_id = 100, 500

    def send(self, kind: str, *pairs: tuple[int, object], **header: str) -> list[dict[int, bytes]]:
        before = len(self.session.sent)
        extra = tuple((43 if k == "poss_dup" else 97, v) for k, v in header.items())
        msg = message(kind, *extra, *pairs)
        self.entry.on_message(cast(Session, self.session), msg, time.time_ns())
        return self.session.sent[before:]

    def event(self, record: Any) -> list[dict[int, bytes]]:
        before = len(self.session.sent)
        self.entry.process(record)
        return self.session.sent[before:]

    def new(self, *pairs: tuple[int, object]) -> NewOrder:
        """Send a D; its NewOrder, the entry's last outgoing command."""
        assert self.send("D", *pairs) == []
        new = self.entry.outgoing[-1]
        assert isinstance(new, NewOrder)
        return new

    def acked(self, *pairs: tuple[int, object], ts_ns: int = NOW) -> tuple[NewOrder, int]:
        """A D accepted by the exchange: its NewOrder and its OrderID."""
        new = self.new(*pairs)
        self.seq += 1
        self.order_id += 1
        header = (self.seq, ts_ns, GATEWAY, new.session, new.client_ref, 7, 1, self.order_id)
        self.event(Accepted(*header, side=new.side, price=new.price, qty=new.qty,
                            ord_type=new.ord_type, tif=new.tif, flags=new.flags,
                            stop_price=new.stop_price, display_qty=new.display_qty))  # fmt: skip
        return new, self.order_id

    def rejected(self, new: NewOrder, code: ResultCode) -> dict[int, bytes]:
        self.seq += 1
        header = (self.seq, NOW, GATEWAY, new.session, new.client_ref, 7, 1, 0)
        (report,) = self.event(Rejected(*header, code=code))
        return report


def refusal(pairs: Pairs) -> dict[int, bytes]:
    """The gateway's own answer to a D with ``pairs``: one Rejected ExecutionReport."""
    rig = Rig()
    (report,) = rig.send("D", *pairs)
    assert (report[35], report[150], report[39]) == (b"8", b"8", b"8"), report
    assert not rig.entry.outgoing
    return report


# -- OrdRejReason ----------------------------------------------------------------------------


_R = ResultCode
_REASONS = [
    (_R.UNKNOWN_SYMBOL, 1), (_R.SYMBOL_HALTED, 2), (_R.INSUFFICIENT_BALANCE, 3),
    (_R.TOO_MANY_OPEN_ORDERS, 3), (_R.NOTIONAL_TOO_LARGE, 3), (_R.DUPLICATE_CLIENT_ORDER_ID, 6),
    (_R.INVALID_QTY, 13), (_R.QTY_OUT_OF_RANGE, 13), (_R.UNKNOWN_ACCOUNT, 15),
    (_R.PRICE_OUT_OF_BAND, 99), (_R.POST_ONLY_WOULD_TAKE, 99),
]  # fmt: skip


@pytest.mark.parametrize(("code", "reason"), _REASONS)
def test_the_exchanges_refusal_carries_fix44s_ord_rej_reason(code: ResultCode, reason: int) -> None:
    """README: "(1 unknown symbol, 2 exchange closed for a halted symbol, 3 order exceeds limit
    for balance and risk limits, 6 duplicate order ..., 13 incorrect quantity, 15 unknown
    account; else 99, Other)". order_fields.py ``ORD_REJ_REASON``, orders.py ``_rejected``."""
    claim("(1 unknown symbol, 2 exchange closed for a halted symbol, 3 order exceeds limit")
    claim("13 incorrect quantity, 15 unknown account; else 99, Other)")
    claim("is reported Rejected with the OrdRejReason (103) FIX 4.4 has for the cause")
    claim("else 99, Other) and the result code's name in Text (58)")
    assert ORD_REJ_REASON.get(code, 99) == reason
    rig = Rig()
    report = rig.rejected(rig.new(*order("x1")), code)
    assert (report[150], report[39], report[103]) == (b"8", b"8", b"%d" % reason)
    assert report[58].startswith(code.name.encode())


def test_the_gateways_own_refusals_1_6_13_15() -> None:
    """README's reasons as the gateway gives them itself: an unknown symbol 1, a ClOrdID used
    before 6, OrderQty outside ``min_qty``..``max_qty`` 13 "naming both", an Account not the
    session's 15. orders.py ``_new``, order_fields.py ``amounts`` and ``foreign``."""
    claim("is refused by the gateway itself, 13, naming both")
    claim("must be the session's account number (else OrdRejReason 15")
    unknown = [(55, "ETH-USD") if t == 55 else (t, v) for t, v in order("a")]
    assert refusal(tuple(unknown))[103] == b"1"
    big = refusal(tuple((38, "1000.01") if t == 38 else (t, v) for t, v in order("b")))
    assert big[103] == b"13" and b"min 1" in big[58] and b"max 1000" in big[58]
    assert refusal(order("c", (1, "9")))[103] == b"15"
    rig = Rig()
    rig.new(*order("d"))
    (dup,) = rig.send("D", *order("d"))
    assert (dup[150], dup[103]) == (b"8", b"6")


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (((18, "1"),), b"ExecInst 1"),  # an ExecInst other than 6
        (((18, "6"), (59, 3)), b"post-only"),  # post-only on an IOC: cannot rest
        (((110, "1"),), b"MinQty (110)"),
        (((126, "20300101-00:00:00"),), b"ExpireTime (126)"),
        (((78, 1), (79, "A"), (80, "1")), b"NoAllocs (78)"),
        (((386, 1), (336, "DAY")), b"NoTradingSessions (386)"),
        (((232, 1), (233, "MINQTY"), (234, "1")), b"NoStipulations (232)"),
        (((711, 1), (311, "BTC")), b"NoUnderlyings (711)"),
        (((864, 1), (865, "1")), b"NoEvents (864)"),
    ],
    ids=["18=1", "post-only-ioc", "110", "126", "78", "386", "232", "711", "864"],
)
def test_unsupported_order_characteristics_are_11_naming_them(extra: Pairs, named: bytes) -> None:
    """README: "such as MinQty 110 or ExpireTime 126, refuses the order, OrdRejReason 11 ...
    naming it", the groups "(NoAllocs 78, ... NoEvents 864)" and "11 ... for an ExecInst other
    than 6 or a post-only order that cannot rest". orders.py ``_new``."""
    claim("such as MinQty 110 or ExpireTime 126, refuses the order, OrdRejReason 11")
    claim("NoStipulations 232, NoUnderlyings 711, NoEvents 864)")
    claim("11 unsupported order characteristic for an ExecInst other than 6")
    pairs = order("u", *(p for p in extra if p[0] != 59), tif=3 if (59, 3) in extra else 1)
    report = refusal(pairs)
    assert report[103] == b"11" and named in report[58]


def test_a_group_of_no_entry_is_taken() -> None:
    """README: "a group of no entry, NoAllocs 0 say, asks for nothing and is taken".
    order_fields.py ``unsupported_field``'s ``_none``."""
    claim("a group of no entry, NoAllocs 0 say, asks for nothing and is taken")
    rig = Rig()
    rig.new(*order("z", (78, 0)))


_DERIVATIVE = [
    ((201, 1),), ((202, "100"),), ((200, "203012"),), ((541, "20301231"),), ((206, "L"),),
    ((231, "10"),), ((167, "OPT"),), ((167, "FUT"),), *(((461, f"{c}XXXXX"),) for c in "OFSHJKLR"),
]  # fmt: skip


@pytest.mark.parametrize("extra", _DERIVATIVE)
def test_an_options_or_a_futures_fields_refuse_the_order(extra: Pairs) -> None:
    """README: "an option's or a future's (PutOrCall 201, ... ContractMultiplier 231, a
    SecurityType such as OPT or FUT, or a CFICode 461 whose ISO 10962 category is a derivative's:
    O, F, S, H, J, K, L or R) refuses the order". order_fields.py ``unsupported_field``."""
    claim("(PutOrCall 201, StrikePrice 202, MaturityMonthYear 200, MaturityDate 541")
    claim("OptAttribute 206, ContractMultiplier 231, a SecurityType such as OPT or FUT")
    claim("category is a derivative's: O, F, S, H, J, K, L or R) refuses the order")
    assert frozenset(b"O F S H J K L R".split()) == order_fields.CFI_DERIVATIVES
    report = refusal(order("o", *extra))
    assert b"(%d)" % extra[0][0] in report[58]


@pytest.mark.parametrize("extra", [((167, "CS"),), ((461, "ESXXXX"),), ((48, "X1"), (22, "8"))])
def test_a_field_that_only_describes_is_taken(extra: Pairs) -> None:
    """README: "one that only describes, such as SecurityType 167, is taken and ignored"."""
    claim("one that only describes, such as SecurityType 167, is taken and ignored")
    Rig().new(*order("s", *extra))


def test_a_currency_other_than_the_quote_asset_is_refused() -> None:
    """README: "and a Currency (15) the symbol's quote asset, which prices are in".
    order_fields.py ``foreign``."""
    claim("and a Currency (15) the symbol's quote asset, which prices are in")
    report = refusal(order("e", (15, "EUR")))
    assert b"Currency (15)" in report[58]
    Rig().new(*order("f", (15, "USD")))


def test_a_d_without_time_in_force_is_a_day_order() -> None:
    """README: "a D without TimeInForce is a Day order, as FIX 4.4 says". orders.py
    ``_new``: ``TIFS[f.get(59, b"0")]``."""
    claim("a D without TimeInForce is a Day order, as FIX 4.4 says")
    assert Rig().new(*order("t", tif=None)).tif == TimeInForce.DAY


@pytest.mark.parametrize(
    ("extra", "tif", "named"),
    [(((99, "90"),), 1, b"StopPx (99)"), (((111, "1"),), 3, b"MaxFloor (111)")],
    ids=["stop-px", "max-floor-ioc"],
)
def test_a_stop_px_off_a_stop_and_a_max_floor_that_cannot_rest_are_refused(
    extra: Pairs, tif: int, named: bytes
) -> None:
    """README: "and so are a StopPx on an order that is not a stop, a MaxFloor or post-only
    on one that cannot rest ..., each named". order_fields.py ``amounts``."""
    claim("a StopPx on an order that is not a stop, a MaxFloor or post-only")
    assert named in refusal(order("m", *extra, tif=tif))[58]


# -- repeats, mass cancels ------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["poss_dup", "poss_resend"])
def test_a_poss_dup_repeat_of_a_d_is_not_acted_on_again(flag: str) -> None:
    """README: "a PossDup or PossResend repeat of a D, F, G or q already taken is not acted on
    again". orders.py ``_duplicate``: no second NewOrder, no answer."""
    claim("a PossDup or PossResend repeat of a D, F, G or q already taken is not acted on again")
    rig = Rig()
    rig.new(*order("p"))
    assert rig.send("D", *order("p"), **{flag: "Y"}) == []
    assert len(rig.entry.outgoing) == 1


def test_a_qs_clordid_is_unique_like_the_others() -> None:
    """README: "and a q's ClOrdID is unique like the others". orders.py ``_mass_cancel``."""
    claim("and a q's ClOrdID is unique like the others")
    rig = Rig()
    rig.new(*order("q1"))
    (report,) = rig.send("q", (11, "q1"), (530, 7), (60, "20260101-00:00:00"))
    assert (report[35], report[531]) == (b"r", b"0") and b"duplicate ClOrdID" in report[58]


@pytest.mark.parametrize(
    ("extra", "named"),
    [((54, 1), b"Side"), ((336, "X"), b"TradingSessionID"), ((48, "X1"), b"SecurityID")],
)
def test_a_mass_cancel_narrowed_past_what_ringex_acts_on_is_refused(
    extra: tuple[int, object], named: bytes
) -> None:
    """README: "a mass cancel carrying a field that would narrow it past what ringex acts on,
    Side, TradingSessionID or any of the instrument's fields but Symbol, is refused naming
    it". order_fields.py ``mass_narrowed``."""
    claim("any of the instrument's fields but Symbol, is refused naming it")
    rig = Rig()
    base = ((11, "mc"), (530, 1), (55, "BTC-USD"), (60, "20260101-00:00:00"))
    (report,) = rig.send("q", *base, extra)
    assert report[531] == b"0" and named in report[58] and not rig.entry.outgoing


def test_a_mass_cancel_report_comes_once_the_router_has_it_durable() -> None:
    """README: "an OrderMassCancelReport comes once the router has the mass cancel durable,
    or refused". orders.py ``_rejected``: the router's OK answers it, not the request."""
    claim("an OrderMassCancelReport comes once the router has the mass cancel durable, or refused")
    rig = Rig()
    assert rig.send("q", (11, "mc"), (530, 1), (55, "BTC-USD"), (60, "20260101-00:00:00")) == []
    (mass,) = rig.entry.outgoing
    assert isinstance(mass, MassCancel)
    header = (0, NOW, GATEWAY, mass.session, mass.client_ref, 7, 1, 0)
    (report,) = rig.event(Rejected(*header, code=ResultCode.OK))
    assert (report[35], report[531], report[530]) == (b"r", b"1", b"1")


# -- cancels and replaces --------------------------------------------------------------------


def test_a_cancel_of_an_order_not_acknowledged_is_cxl_rej_reason_2_not_3() -> None:
    """README: "a cancel or replace of an order not acknowledged yet is refused with
    CxlRejReason 2, exchange option, not 3". orders.py ``_named``: ``CXL_EXCHANGE``."""
    claim("is refused with CxlRejReason 2, exchange option, not 3")
    assert (order_fields.CXL_EXCHANGE, order_fields.CXL_PENDING) == (2, 3)
    rig = Rig()
    rig.new(*order("n1"))
    for kind, extra in (("F", ()), ("G", ((38, "1"), (40, 2), (44, "101"), (59, 1)))):
        base = ((41, "n1"), (11, f"n-{kind}"), (55, "BTC-USD"), (54, 1), (60, "20260101-00:00:00"))
        (reject,) = rig.send(kind, *base, *extra)
        assert (reject[35], reject[102]) == (b"9", b"2")


def _replace(cl: str, orig: str, *extra: tuple[int, object], tif: int | None = 1) -> Pairs:
    pairs = [(41, orig), *((t, v) for t, v in order(cl, tif=tif) if t != 44), (44, "101")]
    return (*pairs, *extra)


def _changed(pairs: Pairs, **values: object) -> Pairs:
    """``pairs`` with the values of tags ``t<tag>`` replaced (and added where absent)."""
    wanted = {int(k[1:]): v for k, v in values.items()}
    kept = [(t, wanted.pop(t, v)) for t, v in pairs]
    return (*kept, *wanted.items())


@pytest.mark.parametrize(
    ("first", "replace", "named"),
    [
        ({"t38": "2", "t111": "1"}, {"t38": "2", "t111": "2"}, b"MaxFloor (111) 2 is not the"),
        ({"t40": 4, "t99": "90"}, {"t40": 4, "t99": "95"}, b"StopPx (99) 95 is not the order's"),
        ({}, {"t59": None}, b"TimeInForce 0 (none: Day) is not the order's"),
    ],
    ids=["max-floor", "stop-px", "tif-restated-as-day"],
)
def test_a_replace_cannot_change_max_floor_or_stop_px_and_no_tif_is_day(
    first: dict[str, object], replace: dict[str, object], named: bytes
) -> None:
    """README: "a G cannot change MaxFloor or StopPx, and one without TimeInForce restates it
    as Day": an iceberg's replace with another MaxFloor, a stop-limit's with another StopPx,
    a GTC order's without 59, each refused naming it. order_fields.py ``replace_fault`` and
    ``differs``."""
    claim("a G cannot change MaxFloor or StopPx, and one without TimeInForce restates it as Day")
    rig = Rig()
    rig.acked(*_changed(order("r1"), **first))
    pairs = _changed(_replace("r2", "r1"), **replace)
    (reject,) = rig.send("G", *((t, v) for t, v in pairs if v is not None))
    assert reject[35] == b"9" and named in reject[58], reject[58]


def _status(rig: Rig, cl: str) -> dict[int, bytes]:
    (report,) = rig.send("H", (11, cl), (55, "BTC-USD"), (54, 1))
    return report


def test_pending_cancel_and_pending_replace_cancel_first() -> None:
    """README: "an order a cancel or replace waits for is reported Pending Cancel 39=6 or
    Pending Replace 39=E, Pending Cancel first when both wait, here, in an
    OrderStatusRequest's answer and in an OrderCancelReject". order_replies.py
    ``pending_status`` through ``status`` and ``_send_cancel_reject``."""
    claim("Pending Cancel 39=6 or Pending Replace 39=E, Pending Cancel first when both wait")
    rig = Rig()
    rig.acked(*order("w1"))
    assert rig.send("G", *_replace("w2", "w1")) == []
    assert _status(rig, "w1")[39] == b"E"
    (reject,) = rig.send("G", *_replace("w3", "w1", (18, "1")))  # does not fit: refused
    assert (reject[35], reject[39]) == (b"9", b"E")
    cancel = ((41, "w1"), (11, "w4"), (55, "BTC-USD"), (54, 1), (60, "20260101-00:00:00"))
    assert rig.send("F", *cancel) == []
    assert _status(rig, "w1")[39] == b"6"


def test_a_replace_while_stopping_is_refused_as_at_any_time() -> None:
    """README: "while the gateway stops, a replace is refused with the same OrdStatus and
    CxlRejReason as at any time for a finished, pending or unknown order". orders.py
    ``on_message`` (``closing``) hands it to ``_named``; an unknown order's here."""
    claim("a replace is refused with the same OrdStatus and CxlRejReason as at any time")
    answers = []
    for closing in (False, True):
        rig = Rig()
        rig.entry.closing = closing
        (reject,) = rig.send("G", *_replace("k2", "k1"))
        answers.append((reject[35], reject[39], reject[102]))
    assert answers[0] == answers[1] == (b"9", b"8", b"1")


def test_mass_status_reports_each_open_order_then_912_y_on_the_last() -> None:
    """README: "an OrderMassStatusRequest AF (MassStatusReqType 7, all the session's open
    orders, or 1, those on its Symbol; Side narrows either) answered with an ExecutionReport
    150=I per order carrying MassStatusReqID 584, TotNumReports 911 and LastRptRequested
    912=Y on the last". order_replies.py ``mass_status``."""
    claim("150=I per order carrying MassStatusReqID 584, TotNumReports 911")
    rig = Rig()
    rig.acked(*order("a1"))
    rig.acked(*((54, 2) if t == 54 else (t, v) for t, v in order("a2")))
    every = rig.send("AF", (584, "S1"), (585, 7))
    assert [(m[150], m[584], m[911], m[912]) for m in every] == [
        (b"I", b"S1", b"2", b"N"), (b"I", b"S1", b"2", b"Y"),
    ]  # fmt: skip
    sells = rig.send("AF", (584, "S2"), (585, 1), (55, "BTC-USD"), (54, 2))
    assert [(m[11], m[911], m[912]) for m in sells] == [(b"a2", b"1", b"Y")]


def test_mass_status_with_none_is_one_report_orderid_none_911_0() -> None:
    """README: "or one with OrderID NONE and 911=0 when none matches"."""
    claim("or one with OrderID NONE and 911=0 when none matches")
    (report,) = Rig().send("AF", (584, "S3"), (585, 7))
    assert (report[37], report[150], report[911], report[912]) == (b"NONE", b"I", b"0", b"Y")


def test_a_status_request_for_another_account_finds_no_order() -> None:
    """README: "a status request (H, AF) for another account finds no order".
    order_replies.py ``status`` and ``mass_status`` (``other_account``)."""
    claim("a status request (H, AF) for another account finds no order")
    rig = Rig()
    rig.acked(*order("h1"))
    (h,) = rig.send("H", (11, "h1"), (55, "BTC-USD"), (54, 1), (1, "9"))
    assert (h[37], h[150], h[39]) == (b"NONE", b"I", b"8")
    (af,) = rig.send("AF", (584, "S4"), (585, 7), (1, "9"))
    assert (af[37], af[911]) == (b"NONE", b"0")


def test_each_mass_status_report_draws_on_the_sessions_throttle() -> None:
    """README: "each report draws on the session's message throttle". ``mass_status``:
    ``session.throttle.charge(len(found), now)``."""
    claim("each report draws on the session's message throttle")
    rig = Rig()
    for k in range(3):
        rig.acked(*order(f"t{k}"))
    rig.session.throttle = TokenBucket(2, NOW)
    rig.send("AF", (584, "S5"), (585, 7))
    assert rig.session.throttle.tokens < 0


def test_an_order_amended_through_the_rest_api_is_restated() -> None:
    """README: "an order amended through the REST API is reported to its session as Restated
    (150=D, 378=99)". orders.py ``_replaced`` of another gateway's Replaced."""
    claim("is reported to its session as Restated (150=D, 378=99)")
    rig = Rig()
    _, order_id = rig.acked(*order("ra"))
    (report,) = rig.event(Replaced(900, NOW, GATEWAY + 1, 0, 1, 7, 1, order_id, 10_100, 100))
    assert (report[150], report[378], report[39]) == (b"D", b"99", b"0")


def test_reports_carry_transact_time_the_events_time() -> None:
    """README: "every ExecutionReport, OrderCancelReject and OrderMassCancelReport carries
    TransactTime (60): the time the exchange event it reports carries ... or the gateway's
    clock for an answer no event makes". An ack at a set time; refusals of each kind."""
    claim("OrderMassCancelReport carries TransactTime (60)")
    rig = Rig()
    at = NOW - 3_600 * 1_000_000_000
    rig.acked(*order("x1"), ts_ns=at)
    (ack,) = rig.session.sent
    assert ack[60] == Timestamps().format(at)
    rig.send("F", (41, "zz"), (11, "x2"), (55, "BTC-USD"), (54, 1), (60, "20260101-00:00:00"))
    rig.send("q", (11, "x1"), (530, 7), (60, "20260101-00:00:00"))
    rig.send("D", *order("x3", (110, "1")))
    assert [m[35] for m in rig.session.sent] == [b"8", b"9", b"r", b"8"]
    assert all(60 in m for m in rig.session.sent)


def test_report_exec_ids_derive_from_the_event() -> None:
    """README: "a report made from an exchange event carries an ExecID derived from it, a
    refusal of the router's included, so one re-sent after a crash is recognisable": two
    entries given the same Accepted event give the same ExecID. orders.py
    ``event_exec_id``."""
    claim("carries an ExecID derived from it, a refusal of the router's included")
    ids = []
    for _ in range(2):
        rig = Rig()
        rig.acked(*order("e1"))
        ids.append(rig.session.sent[-1][17])
    assert ids[0] == ids[1] and b"-A" in ids[0]
    rig = Rig()
    report = rig.rejected(rig.new(*order("e2")), ResultCode.INSUFFICIENT_BALANCE)
    assert b"-J" in report[17]


def test_reports_carry_exec_inst_6_and_max_floor() -> None:
    """README: "each carries ExecInst (18) 6 and MaxFloor (111) where its order has them".
    order_fields.py ``REPORT``."""
    claim("each carries ExecInst (18) 6 and MaxFloor (111) where its order has them")
    rig = Rig()
    two = [p for p in order("i1", (18, "6"), (111, "1")) if p[0] != 38] + [(38, "2")]
    rig.acked(*two)  # (MaxFloor below OrderQty, as a new order's must be: review 335)
    ack = rig.session.sent[-1]
    assert (ack[150], ack[18], ack[111]) == (b"0", b"6", b"1.00")
    rig.acked(*order("i2"))
    assert 18 not in rig.session.sent[-1] and 111 not in rig.session.sent[-1]


def test_counter_exec_ids_are_reserved_in_exec_ids(tmp_path: Path) -> None:
    """README: "one no event makes, a status answer, a Restated report or the gateway's own
    refusal, takes the next of a counter whose ids are reserved in durable blocks (`exec-ids`
    in the gateway's directory), so none repeats after a restart". ``exec_ids.FILE_NAME``;
    a second entry over the same directory starts above the first's ids."""
    claim("reserved in durable blocks (`exec-ids` in the gateway's directory)")
    assert exec_ids.FILE_NAME == "exec-ids"
    first = Rig(tmp_path)
    (a,) = first.send("D", *order("c1", (110, "1")))
    assert (tmp_path / "exec-ids").is_file()
    second = Rig(tmp_path)
    (b,) = second.send("D", *order("c1", (110, "1")))
    assert int(b[17].split(b"-")[1]) > int(a[17].split(b"-")[1])


def test_a_fills_report_carries_commission_commtype_3_and_the_quote_asset() -> None:
    """README: "a fill's carries its side's Commission (12), CommType (13) 3, absolute, and
    CommCurrency (479), the quote asset". order_replies.py ``_commission``."""
    claim("CommType (13) 3, absolute, and CommCurrency (479), the quote asset")
    rig = Rig()
    _, order_id = rig.acked(*order("f1"))
    trade = Trade(
        950, NOW, 1, 1, 10_000, 100, Side.SELL, order_id, 7, GATEWAY, 0, 77, 8, GATEWAY + 1, 0
    )
    (fill,) = rig.event(trade)
    assert (fill[150], fill[13], fill[479]) == (b"F", b"3", b"USD") and 12 in fill
    assert float(fill[12]) == pytest.approx(100.0 * 10 / 10_000)  # maker 10 bps of 100.00


# -- the reports' debt, the logon lock, the order log and the windows ------------------------


def test_a_sessions_reports_debt_is_at_most_a_seconds_worth() -> None:
    """README: "the session's next messages, its cancels included, wait until that debt, at
    most a second's worth, is repaid". ``TokenBucket.charge``, which mass status calls."""
    claim("wait until that debt, at most a second's worth, is repaid")
    bucket = TokenBucket(10, NOW)
    bucket.charge(1_000, NOW)
    assert bucket.tokens == -10  # then 2 s to repay and refill: 1 s later, still nothing
    assert not bucket.allow(NOW + 10**9) and bucket.allow(NOW + 21 * 10**8)


def test_a_session_is_logged_on_once_across_the_instances_gateways(tmp_path: Path) -> None:
    """README: "a lock per CompID under `var/<instance>/gateway/logged-on/`". server.py's
    ``LiveSessions(self.directory.parent / "logged-on")`` (``gateway_dir``'s parent is
    ``var/<instance>/gateway``); two tables over one directory, as two gateways."""
    claim("a lock per CompID under `var/<instance>/gateway/logged-on/`")
    assert 'LiveSessions(self.directory.parent / "logged-on")' in source("gateway/server")
    first, second = LiveSessions(tmp_path / "logged-on"), LiveSessions(tmp_path / "logged-on")
    assert first.claim("ALICE") and not second.claim("ALICE") and second.claim("BOB")
    first.release("ALICE")
    assert second.claim("ALICE")
    second.release_all()


def test_clordids_log_keeps_the_newest_100k_to_200k(tmp_path: Path) -> None:
    """README: "`clordids.log` the newest 100k-200k ClOrdIDs used (the REST API's ids have a
    window of their own, `api_ids.log`)". orders.py ``_SEEN_CLORDIDS``, server.py, clordids.py."""
    claim("`clordids.log` the newest 100k-200k ClOrdIDs used")
    assert "_SEEN_CLORDIDS = 200_000" in source("gateway/orders")
    assert "Generations(_SEEN_CLORDIDS // 2)" in source("gateway/orders")
    assert 'SeenLog(self.directory / "clordids.log")' in source("gateway/server")
    window = Generations(100_000)
    for value in range(200_000):
        window.add(value)
    assert len(window) == 200_000 and 0 in window
    window.add(200_000)
    assert len(window) == 100_001 and 0 not in window and 100_000 in window
    claim("(the REST API's ids have a window of their own, `api_ids.log`)")
    assert clordids.API_IDS == "api_ids.log"
    assert "self.api_seen_log = SeenLog(self.directory / API_IDS)" in source("gateway/server")


def test_the_order_log_is_var_instance_gateway_name_orders_log() -> None:
    """README: "an order log (`var/<instance>/gateway/<name>/orders.log`) keeps ... its newest
    10,000 finished ones". topology.py ``gateway_dir``, server.py, ``FINISHED_KEPT``."""
    claim("an order log (`var/<instance>/gateway/<name>/orders.log`)")
    cfg = cast(Any, SimpleNamespace(var_dir="var", instance="inst"))
    assert topology.gateway_dir(cfg, "gw1") == Path("var/inst/gateway/gw1")
    assert 'OrderLog(self.directory / "orders.log"' in source("gateway/server")
    claim("and its newest 10,000 finished ones")
    assert "FINISHED_KEPT = 10_000" in source("gateway/order_log")
