"""The FIX 4.4 dictionary, and the validation that maps a message's faults onto
SessionRejectReason (373) and RefTagID (371).

Every field FIX 4.4 defines, and the fields it defines for the header and each message type
ringex takes, come from QuickFIX's ``FIX44.xml`` (``fix44.json``, written by
``scripts/fix44_dictionary.py``): a message a firm's engine builds by the specification is
not refused for a field the specification allows (review 51). ringex's own table narrows
what it reads (the enumerated values it supports: another is VALUE_OUT_OF_RANGE); an order
field it does not act on is refused by order entry with a reason naming it
(``UNSUPPORTED_ORDER_FIELDS``), or ignored where it only describes (the instrument's ids, the
account's capacity). A tag FIX 4.4 does not define is an invalid tag number (373=0), one from
5000 up (the user-defined range and past it) an undefined tag (373=3).

Checks run in the order QuickFIX runs them, so a message with several faults is rejected for
the one a FIX engineer expects: a repeated MsgType (373=13 naming the first, the message's
type: ``repeated_msg_type``), header order, invalid/undefined tags, empty values, tags not
defined for the message type, repeated tags, data formats, enum values, required tags, then
repeating groups (``fix_groups.py``: every group FIX 4.4 defines for the message and the
header's NoHops, taken as groups and their values ignored; order entry refuses an order with
one that would change it). Data fields and a third party's routing (OnBehalfOf*,
DeliverTo*) are not taken.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, Final

from procs.gateway.field_formats import (
    BOOL,
    CHAR,
    FLOAT,
    IDS,
    INT,
    MAX_ID_CHARS,
    MAX_NUMBER_CHARS,
    MAX_SEQNUM,
    NOT_NEGATIVE,
    SAFE_SEQNUM_DIGITS,
    SEQNUM,
    STRING,
    TIMESTAMP,
    Format,
    out_of_range,
)
from procs.gateway.fix import (
    INVALID_TAG,
    MAX_SHAPES,
    SOH,
    FixMessage,
    is_tag_number,
    shown,
)
from procs.gateway.fix_groups import Group, check_group

#: Formats and ranges read here, at home in ``field_formats.py`` (and the names below).
__all__ = ["FLOAT", "MAX_NUMBER_CHARS", "MAX_SEQNUM", "SEQNUM", "out_of_range"]


class RejectReason(IntEnum):
    """SessionRejectReason (373)."""

    INVALID_TAG_NUMBER = 0
    REQUIRED_TAG_MISSING = 1
    TAG_NOT_DEFINED_FOR_MESSAGE = 2
    UNDEFINED_TAG = 3
    TAG_WITHOUT_VALUE = 4
    VALUE_OUT_OF_RANGE = 5
    INCORRECT_DATA_FORMAT = 6
    COMPID_PROBLEM = 9
    SENDING_TIME_ACCURACY = 10
    INVALID_MSGTYPE = 11
    TAG_APPEARS_MORE_THAN_ONCE = 13
    TAG_OUT_OF_ORDER = 14
    GROUP_FIELDS_OUT_OF_ORDER = 15
    INCORRECT_NUMINGROUP = 16
    OTHER = 99


@dataclass(frozen=True, slots=True)
class Fault:
    reason: RejectReason
    tag: int  # RefTagID; 0 when no single tag is at fault
    text: str


#: tag -> (name, format, allowed values or None): the fields ringex reads or writes, with
#: the values it supports (narrower than FIX 4.4's where it supports fewer). Not OrdType (40)
#: and TimeInForce (59): an order whose type or time in force FIX 4.4 defines and ringex
#: does not support is an order's refusal, OrdRejReason 11 (``order_fields.unsupported_value``;
#: review 297: 59=6 was a session Reject, and the order was never answered); so is a mass
#: cancel's MassCancelRequestType 2 to 6: an OrderMassCancelReport 532=0, not supported
_READ: Final[dict[int, tuple[str, Format, frozenset[bytes] | None]]] = {
    1: ("Account", STRING, None),
    6: ("AvgPx", FLOAT, None),
    7: ("BeginSeqNo", SEQNUM, None),
    8: ("BeginString", STRING, None),
    9: ("BodyLength", SEQNUM, None),
    10: ("CheckSum", STRING, None),
    11: ("ClOrdID", STRING, None),
    12: ("Commission", FLOAT, None),
    13: ("CommType", CHAR, None),
    14: ("CumQty", FLOAT, None),
    16: ("EndSeqNo", SEQNUM, None),
    17: ("ExecID", STRING, None),
    18: ("ExecInst", STRING, None),
    21: ("HandlInst", CHAR, frozenset(b"123"[i : i + 1] for i in range(3))),
    31: ("LastPx", FLOAT, None),
    32: ("LastQty", FLOAT, None),
    34: ("MsgSeqNum", SEQNUM, None),
    35: ("MsgType", STRING, None),
    36: ("NewSeqNo", SEQNUM, None),
    37: ("OrderID", STRING, None),
    38: ("OrderQty", FLOAT, None),
    39: ("OrdStatus", CHAR, None),
    41: ("OrigClOrdID", STRING, None),
    43: ("PossDupFlag", BOOL, None),
    44: ("Price", FLOAT, None),
    45: ("RefSeqNum", SEQNUM, None),
    49: ("SenderCompID", STRING, None),
    50: ("SenderSubID", STRING, None),
    52: ("SendingTime", TIMESTAMP, None),
    54: ("Side", CHAR, frozenset((b"1", b"2"))),
    55: ("Symbol", STRING, None),
    56: ("TargetCompID", STRING, None),
    57: ("TargetSubID", STRING, None),
    58: ("Text", STRING, None),
    60: ("TransactTime", TIMESTAMP, None),
    97: ("PossResend", BOOL, None),
    98: ("EncryptMethod", INT, frozenset((b"0",))),
    # not FIX 4.4's: Binance's FIX API's self-trade prevention on an order (order_fields)
    25001: ("SelfTradePreventionMode", CHAR, frozenset((b"1", b"2", b"3", b"4"))),
    99: ("StopPx", FLOAT, None),
    103: ("OrdRejReason", INT, None),
    108: ("HeartBtInt", INT, None),  # 0 and up (``field_formats.NOT_NEGATIVE``)
    102: ("CxlRejReason", INT, None),
    111: ("MaxFloor", FLOAT, None),
    112: ("TestReqID", STRING, None),
    122: ("OrigSendingTime", TIMESTAMP, None),
    123: ("GapFillFlag", BOOL, None),
    141: ("ResetSeqNumFlag", BOOL, None),
    150: ("ExecType", CHAR, None),
    151: ("LeavesQty", FLOAT, None),
    369: ("LastMsgSeqNumProcessed", SEQNUM, None),
    371: ("RefTagID", SEQNUM, None),
    372: ("RefMsgType", STRING, None),
    373: ("SessionRejectReason", INT, None),
    379: ("BusinessRejectRefID", STRING, None),
    380: ("BusinessRejectReason", INT, None),
    383: ("MaxMessageSize", SEQNUM, None),
    434: ("CxlRejResponseTo", CHAR, None),
    447: ("PartyIDSource", CHAR, None),
    448: ("PartyID", STRING, None),
    452: ("PartyRole", INT, None),
    453: ("NoPartyIDs", SEQNUM, None),
    479: ("CommCurrency", STRING, None),
    526: ("SecondaryClOrdID", STRING, None),
    530: ("MassCancelRequestType", CHAR, frozenset(b"%d" % n for n in range(1, 8))),
    531: ("MassCancelResponse", CHAR, None),
    532: ("MassCancelRejectReason", INT, None),
    533: ("TotalAffectedOrders", INT, None),
    553: ("Username", STRING, None),
    464: ("TestMessageIndicator", BOOL, frozenset((b"N",))),  # Y: a test session, not here
    554: ("Password", STRING, None),
    789: ("NextExpectedMsgSeqNum", SEQNUM, None),
    790: ("OrdStatusReqID", STRING, None),
    378: ("ExecRestatementReason", INT, None),
    584: ("MassStatusReqID", STRING, None),
    585: ("MassStatusReqType", INT, frozenset((b"1", b"7"))),
    911: ("TotNumReports", INT, None),
    912: ("LastRptRequested", BOOL, None),
    969: ("MinPriceIncrement", FLOAT, None),  # FIX 5.0's, in a SecurityList (security_list.py)
}

_SPEC: Final = json.loads((Path(__file__).parent / "fix44.json").read_text())
_FORMATS: Final[dict[str, Format]] = {
    **dict.fromkeys(("INT", "LENGTH", "NUMINGROUP", "DAYOFMONTH"), INT),
    **dict.fromkeys(("FLOAT", "PRICE", "QTY", "AMT", "PRICEOFFSET", "PERCENTAGE"), FLOAT),
    "SEQNUM": SEQNUM, "CHAR": CHAR, "BOOLEAN": BOOL, "UTCTIMESTAMP": TIMESTAMP,
}  # fmt: skip


def _spec_field(name: str, kind: str, values: list[str] | None) -> tuple[str, Format, Any]:
    fmt = _FORMATS.get(kind, STRING)  # dates, currencies, codes: strings, as QuickFIX reads
    several = kind == "MULTIPLEVALUESTRING"  # space-separated values: not one of the enums
    return name, fmt, None if several or not values else frozenset(v.encode() for v in values)


#: tag -> (name, format, allowed values or None): FIX 4.4's, ringex's own where it has one
FIELDS: Final[dict[int, tuple[str, Format, frozenset[bytes] | None]]] = {
    **{int(tag): _spec_field(*info) for tag, info in _SPEC["fields"].items()},
    **_READ,
}
USER_DEFINED_FROM: Final = 5000  # 5000-9999: user-defined tags (undefined here)
#: Data fields (any bytes, SOH too) and the lengths framing them (EncodedText 355, RawData
#: 96, ...): the codec splits values at SOH, so they are not taken (review 51's reread).
DATA_FIELDS: Final = frozenset(
    int(tag) for tag, (_, kind, _) in _SPEC["fields"].items() if kind in ("DATA", "LENGTH")
) - set(_READ)  # BodyLength and MaxMessageSize are LENGTHs framing nothing

#: OnBehalfOf*, DeliverTo*: a third party's routing, which ringex does not do: a message
#: carrying one (an order, a cancel, a mass cancel, a status request) would act on the
#: sender's own orders, so none is taken (the reread of review 51).
THIRD_PARTY: Final = frozenset((115, 116, 144, 128, 129, 145))

#: The header's repeating groups (NoHops, which a hub adds to what it forwards).
HEADER_GROUPS: Final = tuple(Group.from_spec(g) for g in _SPEC["groups"]["header"])
HEADER: Final = (
    frozenset((8, 9, 35, 49, 56, 34, 52, 43, 97, 122, 50, 57, 369, *_SPEC["header"]))
    - DATA_FIELDS
    - THIRD_PARTY
) | {t for g in HEADER_GROUPS for t in (g.count_tag, *g.tags)}
HEADER_REQUIRED: Final = (49, 56, 34, 52)
TRAILER: Final = frozenset((10,))
#: BeginString, BodyLength, CheckSum: the frame's own fields, each once at its place; one
#: inside the body (past the frame) is out of order.
FRAMING: Final = frozenset((8, 9, 10))


@dataclass(frozen=True, slots=True)
class MessageSpec:
    name: str
    required: tuple[int, ...]
    optional: tuple[int, ...] = ()
    groups: tuple[Group, ...] = ()
    admin: bool = False

    def allowed(self) -> frozenset[int]:
        return frozenset({*self.required, *self.optional, *(HEADER - FRAMING), *self.group_tags()})

    def group_tags(self) -> frozenset[int]:
        """The count tags and members of its groups: the tags that may repeat."""
        return frozenset(t for g in self.groups for t in (g.count_tag, *g.tags))


_ORDER = (1, 18, 21, 38, 44, 58, 59, 99, 111, 526, 25001)
#: Fields FIX 4.4 defines for an order that only describe (the instrument's other ids, the
#: account's capacity and type, dates, free text): taken and not acted on.
_DESCRIPTIVE: Final = frozenset(
    (15, 22, 48, 65, 75, 81, 106, 107, 140, 167, 205, 207, 223, 224, 225, 226, 227, 228, 229,
     239, 240, 255, 376, 377, 460, 461, 470, 471, 472, 480, 481, 494, 513, 528, 529, 543, 581,
     582, 583, 660, 667, 691, 762, 100, 875, 876, 873, 874, 947, 965, 966, 969, 970, 971, 996,
     997)
)  # fmt: skip
MESSAGES: Final[dict[bytes, MessageSpec]] = {
    b"0": MessageSpec("Heartbeat", (), (112,), admin=True),
    b"1": MessageSpec("TestRequest", (112,), admin=True),
    b"2": MessageSpec("ResendRequest", (7, 16), admin=True),
    b"3": MessageSpec("Reject", (45,), (371, 372, 373, 58), admin=True),
    b"4": MessageSpec("SequenceReset", (36,), (123,), admin=True),
    b"5": MessageSpec("Logout", (), (58,), admin=True),
    b"A": MessageSpec("Logon", (98, 108), (141, 789, 553, 554, 383, 464), admin=True),
    b"D": MessageSpec("NewOrderSingle", (11, 55, 54, 60, 40), _ORDER),
    b"F": MessageSpec("OrderCancelRequest", (41, 11, 55, 54, 60), (1, 37, 38, 58)),
    b"G": MessageSpec("OrderCancelReplaceRequest", (41, 11, 55, 54, 60, 40), (37, *_ORDER)),
    b"H": MessageSpec("OrderStatusRequest", (11, 55, 54), (1, 37, 790)),
    b"q": MessageSpec("OrderMassCancelRequest", (11, 530, 60), (1, 55, 54, 58)),
    b"AF": MessageSpec("OrderMassStatusRequest", (584, 585), (1, 55, 54)),
    b"j": MessageSpec("BusinessMessageReject", (45, 372, 380), (379, 58)),
    b"BE": MessageSpec("UserRequest", (923, 924, 553), (554, 925)),
    b"BF": MessageSpec("UserResponse", (923, 553), (926, 927)),
    b"x": MessageSpec("SecurityListRequest", (320, 559), (55, 263)),
    b"y": MessageSpec(
        "SecurityList", (320, 322, 560), (393, 893), (Group(146, (55, 969, 15, 561, 562)),)
    ),
    b"e": MessageSpec("SecurityStatusRequest", (324, 55, 263)),
    b"f": MessageSpec("SecurityStatus", (55,), (324, 325, 326, 60, 58)),
    b"8": MessageSpec(
        "ExecutionReport",
        (37, 17, 150, 39, 55, 54, 151, 14, 6),
        (
            *(11, 41, 1, 38, 40, 44, 99, 59, 18, 111, 31, 32, 12, 13, 479, 58, 60, 790),
            *(103, 378, 584, 911, 912),  # a reject's, a restatement's, a mass status's
        ),
    ),
    b"9": MessageSpec("OrderCancelReject", (37, 11, 41, 39, 434), (1, 58, 60, 102)),
    b"r": MessageSpec("OrderMassCancelReport", (37, 530, 531), (11, 532, 533, 55, 58, 60)),
}
#: Messages a client may send: session messages, and the application messages ringex takes.
ADMIN: Final = frozenset(k for k, v in MESSAGES.items() if v.admin)
INBOUND_APP: Final = frozenset((b"D", b"F", b"G", b"H", b"q", b"AF", b"BE", b"x", b"e", b"j"))


def _by_the_spec(kind: bytes, spec: MessageSpec) -> MessageSpec:
    """``spec`` taking every field and repeating group FIX 4.4 defines for its type."""
    defined = _SPEC["messages"].get(kind.decode(), [spec.name, []])[1]
    extra = tuple(
        t
        for t in defined
        if t not in spec.required and t not in spec.optional and t not in DATA_FIELDS
    )
    groups = tuple(Group.from_spec(g) for g in _SPEC["groups"].get(kind.decode(), []))
    return dataclasses.replace(spec, optional=(*spec.optional, *extra), groups=groups)


# As a client may send each: a type ringex only sends (8, 9, r) included, so that one with a
# field FIX 4.4 defines for it is business-rejected, not a session Reject (review 316), and
# one with a header fault still a session Reject (review 320); such a type's groups take
# the members ringex writes beside the spec's (reviews 320, 322)
for _kind, _own in MESSAGES.items():
    MESSAGES[_kind] = _by_the_spec(_kind, _own)
    if _own.groups and _kind not in ADMIN and _kind not in INBOUND_APP:
        _ours = {g.count_tag: g for g in _own.groups}
        _merged = [g.merged(_ours.pop(g.count_tag)) if g.count_tag in _ours else g
                   for g in MESSAGES[_kind].groups]  # fmt: skip
        _groups = (*_merged, *_ours.values())
        MESSAGES[_kind] = dataclasses.replace(MESSAGES[_kind], groups=_groups)
#: Groups of an order taken and not acted on: its parties, its instrument's other ids.
_DESCRIPTIVE_GROUPS: Final = frozenset((453, 454))
#: The count tags of an order's other groups (allocations, trading sessions, ...): refused
#: with one entry or more (``UNSUPPORTED_ORDER_FIELDS``), taken with none
UNSUPPORTED_ORDER_GROUPS: Final = (
    frozenset(g.count_tag for k in (b"D", b"G") for g in MESSAGES[k].groups) - _DESCRIPTIVE_GROUPS
)
#: Fields FIX 4.4 defines for a NewOrderSingle or OrderCancelReplaceRequest that change how
#: an order executes and that ringex does not act on (MinQty, ExpireTime, pegs, and groups:
#: allocations, trading sessions, stipulations, underlyings, ...): order entry refuses such
#: an order naming the field (OrdRejReason 11), rather than ignore it (review 54).
UNSUPPORTED_ORDER_FIELDS: Final = (
    frozenset(
        t
        for kind in (b"D", b"G")
        for t in MESSAGES[kind].optional
        if t not in _ORDER and t not in _DESCRIPTIVE and t not in (37, 41, 60) and t not in HEADER
    )
    | UNSUPPORTED_ORDER_GROUPS
)

_ALLOWED: Final = {k: v.allowed() for k, v in MESSAGES.items()}
_HEADER_GROUP_TAGS: Final = frozenset(t for g in HEADER_GROUPS for t in (g.count_tag, *g.tags))
#: By message type, the tags its own groups repeat (a Logon's 372 repeats in no Reject): their
#: members and nested count tags; a group's own count tag twice is a repeated tag (373=13).
_GROUP_MEMBERS: Final = {
    k: frozenset(t for g in (*HEADER_GROUPS, *v.groups) for t in g.tags)
    for k, v in MESSAGES.items()
}
#: Standard FIX 4.4 message types ringex does not support: BusinessMessageReject, not Reject.
_STANDARD_TYPES: Final = (
    "0 1 2 3 4 5 6 7 8 9 A B C D E F G H J K L M N P Q R S T U V W X Y Z a b c d e f g h i j k l "
    "m n o p q r s t u v w x y z AA AB AC AD AE AF AG AH AI AJ AK AL AM AN AO AP AQ AR AS AT AU "
    "AV AW AX AY AZ BA BB BC BD BE BF BG BH"
)
KNOWN_TYPES: Final = frozenset(t.encode() for t in _STANDARD_TYPES.split(" "))


#: A numeric format and its range in one C call, for the fast path: a compiled pattern's
#: ``fullmatch`` (truthy: a match), about a third of a Python check's cost. Each accepts
#: only what the format and ``out_of_range`` accept (``test_fast_paths`` compares them);
#: the lookahead caps the length. A value one refuses goes to ``first_fault``, which says
#: why, or finds it right after all (a sequence number of 19 digits below 2**63).
_IN_RANGE: Final[dict[Format, Callable[[bytes], object]]] = {
    INT: re.compile(rb"(?=.{1,%d}\Z)-?[0-9]+" % MAX_NUMBER_CHARS, re.DOTALL).fullmatch,
    FLOAT: re.compile(
        rb"(?=.{1,%d}\Z)-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)" % MAX_NUMBER_CHARS, re.DOTALL
    ).fullmatch,
    SEQNUM: re.compile(rb"[0-9]{1,%d}" % SAFE_SEQNUM_DIGITS).fullmatch,
}


def _fast_check(tag: int) -> Callable[[bytes], object] | None:
    """What the fast path checks a value with (truthy: right): membership of its allowed
    values when they imply the format, else its format (a number's with its range); None
    for a string (any non-empty value is right)."""
    _, fmt, values = FIELDS[tag]
    if values is not None:
        if all(fmt(v) for v in values):
            return values.__contains__
        allowed = values
        return lambda v: fmt(v) and v in allowed
    if fmt is BOOL:
        return frozenset((b"Y", b"N")).__contains__
    if tag in NOT_NEGATIVE:  # digits in a SEQNUM's range (a minus: ``first_fault`` says)
        return _IN_RANGE[SEQNUM]
    if tag in IDS:  # a string of at most MAX_ID_CHARS
        return lambda v: len(v) <= MAX_ID_CHARS and fmt(v)
    return _IN_RANGE.get(fmt) or (None if fmt is STRING else fmt)


class _Plan:
    """Per message type, what ``validate``'s fast path needs, precomputed."""

    __slots__ = ("allowed", "checks", "group_tags", "required")

    def __init__(self, spec: MessageSpec) -> None:
        self.allowed = spec.allowed()
        self.required = frozenset((*HEADER_REQUIRED, *spec.required))
        self.group_tags = spec.group_tags() | _HEADER_GROUP_TAGS
        self.checks = {
            t: c for t in self.allowed if t in FIELDS and (c := _fast_check(t)) is not None
        }


_PLANS: Final = {k: _Plan(v) for k, v in MESSAGES.items()}
assert all(t in FIELDS for p in _PLANS.values() for t in p.allowed), "allowed tags need formats"


#: A message shape's value checks, by (MsgType, tags): a client sends the same few shapes
#: again and again, and everything ``validate``'s fast path proves but the values depends on
#: the shape alone. Bounded: cleared when full (a client inventing shapes gains nothing).
_SHAPES: Final[
    dict[tuple[bytes, tuple[int, ...]], tuple[tuple[int, Callable[[bytes], object]], ...]]
] = {}


def validate(msg: FixMessage) -> Fault | None:
    """The first fault of a framed message against the dictionary, or None.

    A fast path proves a message clean with set operations and checks only the values that
    have a format; any doubt (a repeated tag, a group, a failed check) hands the message to
    ``first_fault``, the readable rule-by-rule walk that names the fault. Both agree on every
    message (``test_fix`` checks them against each other). A shape proved clean once
    (``_SHAPES``) is not proved again: only its values are checked."""
    key = (msg.msg_type, tuple(msg.tags))
    checks = _SHAPES.get(key)
    if checks is None:
        checks = _shape_checks(msg)
        if checks is None:
            return first_fault(msg)
        if len(_SHAPES) >= MAX_SHAPES:
            _SHAPES.clear()
        _SHAPES[key] = checks
    values = msg.values
    if b"" in values:
        return first_fault(msg)
    for index, check in checks:
        if not check(values[index]):
            return first_fault(msg)
    return None


def _shape_checks(msg: FixMessage) -> tuple[tuple[int, Callable[[bytes], object]], ...] | None:
    """What the values of a message of this shape need checked, by position; None when the
    shape itself is in doubt (``first_fault`` decides)."""
    tags = msg.tags
    plan = _PLANS.get(msg.msg_type)
    if plan is None or not tags or tags[0] != 35:
        return None
    present = set(tags)
    if (
        len(present) != len(tags)
        or not present <= plan.allowed
        or not plan.required <= present
        or (plan.group_tags and not plan.group_tags.isdisjoint(present))
    ):
        return None
    in_header = len(present & HEADER)
    if not HEADER.issuperset(tags[:in_header]):
        return None
    checks = plan.checks
    return tuple((k, checks[tag]) for k, tag in enumerate(tags) if tag in checks)


def first_fault(msg: FixMessage) -> Fault | None:
    """The first fault of a framed message, rule by rule in QuickFIX's order, or None."""
    pairs = msg.pairs
    if len(pairs) < 1 or pairs[0][0] != 35:
        return Fault(RejectReason.TAG_OUT_OF_ORDER, 35, "MsgType (35) must be the third field")
    if (again := repeated_msg_type(msg)) is not None:
        return again
    spec = MESSAGES.get(msg.msg_type)
    if spec is None:
        return Fault(RejectReason.INVALID_MSGTYPE, 35, f"MsgType {msg.text(35)!r} is not valid")
    allowed = _ALLOWED[msg.msg_type]
    seen: set[int] = set()
    in_header = True
    for tag, value in pairs:
        if tag == INVALID_TAG or tag <= 0:
            return Fault(
                RejectReason.INVALID_TAG_NUMBER,
                0,
                f"tag {shown(_invalid_tag(msg.raw))!r} is not a positive integer",
            )
        info = FIELDS.get(tag)
        if info is None and tag < USER_DEFINED_FROM:
            text = f"tag {tag} is not defined by FIX 4.4"
            return Fault(RejectReason.INVALID_TAG_NUMBER, tag, text)
        if info is None:
            return Fault(RejectReason.UNDEFINED_TAG, tag, f"tag {tag} is not defined")
        if tag in FRAMING:
            return Fault(
                RejectReason.TAG_OUT_OF_ORDER, tag, f"{info[0]} ({tag}) inside the message body"
            )
        if not value:
            return Fault(RejectReason.TAG_WITHOUT_VALUE, tag, f"tag {tag} has no value")
        if tag in HEADER:
            if not in_header:
                return Fault(RejectReason.TAG_OUT_OF_ORDER, tag, f"header tag {tag} after the body")
        else:
            in_header = False
        if tag not in allowed:
            what = (
                "a data field, not taken"
                if tag in DATA_FIELDS
                else "a third party's routing, not taken"
                if tag in THIRD_PARTY
                else "not defined"
            )
            return Fault(
                RejectReason.TAG_NOT_DEFINED_FOR_MESSAGE,
                tag,
                f"tag {tag} ({info[0]}) is {what} for {spec.name}",
            )
        if tag in seen and tag not in _GROUP_MEMBERS[msg.msg_type]:
            return Fault(
                RejectReason.TAG_APPEARS_MORE_THAN_ONCE, tag, f"tag {tag} appears more than once"
            )
        seen.add(tag)
        name, fmt, values = info
        if not fmt(value):
            return Fault(
                RejectReason.INCORRECT_DATA_FORMAT,
                tag,
                f"{name} ({tag}) {shown(value)!r} has the wrong format",
            )
        why = out_of_range(fmt, value, tag)
        if why is not None:
            return Fault(RejectReason.VALUE_OUT_OF_RANGE, tag, f"{name} ({tag}) {why}")
        if values is not None and value not in values:
            return Fault(
                RejectReason.VALUE_OUT_OF_RANGE,
                tag,
                f"{name} ({tag}) {shown(value)!r} is not one of "
                f"{sorted(v.decode() for v in values)}",
            )
    for tag in (*HEADER_REQUIRED, *spec.required):
        if tag not in seen:
            return Fault(
                RejectReason.REQUIRED_TAG_MISSING,
                tag,
                f"required tag {tag} ({FIELDS[tag][0]}) is missing",
            )
    for group in (*HEADER_GROUPS, *spec.groups):
        fault = check_group(pairs, group)
        if fault is not None:
            return Fault(RejectReason(fault.reason), fault.tag, fault.text)
    return None


def repeated_msg_type(msg: FixMessage) -> Fault | None:
    """The fault of a message whose MsgType (35) comes more than once, or None. Its type is
    the first, the third field (``FixMessage.msg_type``): the Reject names that one, as
    RefMsgType, and a second anywhere is a repeated tag (373=13), not a header tag out of
    order (review 333: the last was taken for the message's type)."""
    tags = msg.tags
    if tags.count(35) < 2:
        return None
    second = msg.values[tags.index(35, 1)]
    text = f"MsgType (35) appears more than once: {shown(msg.msg_type)!r}, then {shown(second)!r}"
    return Fault(RejectReason.TAG_APPEARS_MORE_THAN_ONCE, 35, text)


def unsupported(msg: FixMessage) -> bool:
    """Whether ``msg`` is of a standard FIX 4.4 type ringex does not take (a
    BusinessMessageReject 380=3), rather than a session Reject's (a repeated MsgType)."""
    kind = msg.msg_type
    return kind not in MESSAGES and kind in KNOWN_TYPES and repeated_msg_type(msg) is None


def _invalid_tag(raw: bytes) -> bytes:
    """The first field of ``raw`` whose tag is not a positive integer (its tag, or the whole
    field when it has no ``=``)."""
    for part in raw.split(SOH):
        tag, eq, _ = part.partition(b"=")
        if part and not (eq and is_tag_number(tag)):
            return tag if eq else part
    return b""
