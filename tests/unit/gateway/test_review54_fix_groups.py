"""Review 54: the FIX 4.4 gateway's dictionary (``dictionary.py``) and order-field rules
(``order_fields.py``) held against messages a firm's QuickFIX-based engine builds by the
FIX 4.4 specification: its repeating groups, the header's, and the order fields that say
which instrument, account, currency or trading session the order or cancel is for.

Each test failed on the code it was written against, for the fault its docstring names
(what FIX 4.4, QuickFIX or the README asks, what the code did instead, where), and passes
since its fix (the same session's commits). Session rules drive the sans-I/O ``Session``
with hand-framed bytes (``test_review4_fix_bugs``' helpers); order flows go end to end
through ``harness.py`` (real TCP, router and matcher, a simplefix client). Not repeated:
Parties on a replace (``test_review4_fix_bugs``), a NoPartyIDs count that does not match
(``test_review32``, ``test_review31``), SecurityType OPT/FUT on an order and the data
fields (review 51)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import simplefix

from tests.unit.gateway.harness import Client, Harness, utc
from tests.unit.gateway.test_gateway import logged_on, order, run
from tests.unit.gateway.test_review4_fix_bugs import (  # its fixture closes the stores
    _close_stores,  # noqa: F401
    msg,
    replies,
    session,
    stamp,
)


async def answers(c: Client, timeout: float = 0.5) -> list[simplefix.FixMessage]:
    """What the gateway sends until ``timeout`` of silence, heartbeats left out."""
    out: list[simplefix.FixMessage] = []
    while (m := await c.recv(timeout)) is not None:
        if m.get(35) != b"0":
            out.append(m)
    return out


def shown(msgs: list[simplefix.FixMessage]) -> list[tuple[bytes | None, ...]]:
    return [(m.get(35), m.get(150), m.get(103), m.get(373), m.get(371), m.get(58)) for m in msgs]


# -- repeating groups FIX 4.4 defines ---------------------------------------------------------

_NOW = time.time_ns()
_D = ((11, "g1"), (55, "BTC-USD"), (54, 1), (60, stamp(_NOW)), (38, "1"), (40, 2), (44, "100"))


@pytest.mark.parametrize(
    ("kind", "pairs", "header"),
    [
        ("D", [*_D, (386, 1), (336, "DAY")], ""),  # NoTradingSessions
        ("D", [*_D, (78, 1), (79, "FUND-A"), (80, "1")], ""),  # NoAllocs
        ("D", [*_D, (232, 1), (233, "MINQTY"), (234, "1")], ""),  # NoStipulations
        ("D", [*_D, (454, 1), (455, "US0000000001"), (456, "4")], ""),  # NoSecurityAltID
        ("D", [*_D, (711, 1), (311, "BTC")], ""),  # NoUnderlyings
        ("D", [*_D, (864, 1), (865, "1"), (866, "20300101")], ""),  # NoEvents
        # NoPartySubIDs nested in the NoPartyIDs ringex takes
        ("D", [*_D, (453, 1), (448, "T1"), (447, "D"), (452, 12), (802, 1), (523, "desk")], ""),
        ("1", [(112, "via-hub")], "627=1|628=HUB|629={t}|"),  # the header's NoHops
    ],
    ids=["386", "78", "232", "454", "711", "864", "453/802", "627-header"],
)
def test_a_group_fix44_defines_for_the_message_is_not_a_session_reject(
    tmp_path: Path, kind: str, pairs: list[tuple[int, object]], header: str
) -> None:
    """README (gateway): "a field the specification defines for a message is never a session
    Reject"; FIX 4.4 Vol 1: Reject (3) is for session-level rule violations, 373=2 "Tag not
    defined for this message type". QuickFIX validating with its own FIX44.xml passes every
    one of these messages to the application. ``scripts/fix44_dictionary.py`` keeps "the
    fields ... outside repeating groups" only (``flat`` skips ``<group>``), so no group count
    tag FIX 4.4 defines for D (NoTradingSessions 386, NoAllocs 78, NoStipulations 232,
    NoSecurityAltID 454 and NoEvents 864 of Instrument, NoUnderlyings 711), the nested
    NoPartySubIDs 802 of the Parties ringex takes, or the header's NoHops 627 (which a hub
    adds to every message it forwards, a Logon too) is in ``MESSAGES``: each is Reject
    373=2 with a Text that is false ("tag 386 (NoTradingSessions) is not defined for
    NewOrderSingle"). A firm's engine reads that as a broken message, not as "ringex does
    not support trading sessions", and the order has no business answer at all (no
    ExecutionReport: its OMS keeps it pending new). Expected: no Reject; the order is then
    either taken (a purely descriptive group) or refused by order entry naming the group
    (the next test). Fix: keep the groups in ``fix44.json`` (count tag, delimiter, members,
    nested groups) and validate them as groups (``_check_group`` per group, recursively);
    let ``order_fields`` refuse the ones that change execution."""
    header = header.format(t=stamp(_NOW))
    s, app = session(tmp_path, _NOW)
    s.data_received(msg(kind, 2, *pairs, now_ns=_NOW, header=header), _NOW)
    answered = replies(s)
    rejects = [(m.get(373), m.get(371), m.get(58)) for m in answered if m.msg_type == b"3"]
    assert rejects == [], rejects
    if kind == "1":  # a TestRequest is the session's: its Heartbeat answers it
        assert [(m.msg_type, m.get(112)) for m in answered] == [(b"0", b"via-hub")]
    else:
        assert [m.msg_type for m in app.messages] == [kind.encode()]


@pytest.mark.parametrize(
    ("pairs", "name"),
    [
        ([(386, 1), (336, "PRE-OPEN")], b"NoTradingSessions"),
        ([(78, 2), (79, "FUND-A"), (80, "0.60"), (79, "FUND-B"), (80, "0.40")], b"NoAllocs"),
        ([(232, 1), (233, "MINQTY"), (234, "0.50")], b"NoStipulations"),
    ],
    ids=["386", "78", "232"],
)
def test_an_order_with_a_group_that_changes_execution_is_refused_naming_it(
    harness: Harness, pairs: list[tuple[int, object]], name: bytes
) -> None:
    """The README: "an order field that changes how it executes and that ringex does not
    act on ... refuses the order, OrdRejReason 11 ..., naming it" (``order_fields.py``
    ``unsupported_field``, from ``UNSUPPORTED_ORDER_FIELDS``). A NewOrderSingle with
    NoTradingSessions (the session it may trade in), NoAllocs (the accounts its fills are
    booked to) or NoStipulations (conditions on the fill) asks for something ringex does not
    do. ``UNSUPPORTED_ORDER_FIELDS`` is built from ``MESSAGES[D].optional``, where no group
    count tag is (``fix44.json`` keeps no group), so today these get Reject 373=2; and once
    the groups are taken (the fix of the test above) nothing would refuse them: the order
    would be booked in ALICE's own account, in any session, unconditioned, the worst
    outcome. Expected: ExecutionReport 150=8, OrdRejReason 11, the group named in Text.
    Fix: add each group count tag FIX 4.4 defines for D and G and that ringex does not act
    on to ``UNSUPPORTED_ORDER_FIELDS`` (only Parties taken; NoSecurityAltID may be taken as
    descriptive)."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("grp", "1", "1.00", "100.00"), *pairs)
        got = await answers(alice)
        assert [(m.get(35), m.get(150), m.get(103)) for m in got] == [(b"8", b"8", b"11")], shown(
            got
        )
        assert name in got[0].get(58), shown(got)

    run(harness, scenario)


def test_group_members_out_of_the_specified_order_are_rejected_15(tmp_path: Path) -> None:
    """FIX 4.4 Vol 1, message format rule 4: "Fields within repeating data groups must be
    specified in the order that the fields are specified in the message definition"; the
    Parties entry is PartyID 448, PartyIDSource 447, PartyRole 452. QuickFIX/J (whose
    ValidateUnorderedGroupFields is on by default) rejects an entry 448, 452, 447 with 373=15
    (Repeating group fields out of order), RefTagID 447. ``dictionary.py`` ``_check_group``
    checks only that each entry starts with its delimiter and repeats no member; the order
    after it is free, so this message is taken. Low harm on its own (the values are ignored)
    but the brief of ``_check_group`` is QuickFIX's check, and a Group that knew its members'
    order would carry it (the fix of the first test needs it for nested groups anyway).
    Expected: Reject 373=15, 371=447. Fix: ``Group.members`` as a tuple in FIX44.xml's order;
    a member at or before the previous one's index in the same entry is 15."""
    s, app = session(tmp_path, _NOW)
    parties = ((453, 1), (448, "T1"), (452, 12), (447, "D"))
    s.data_received(msg("D", 2, *_D, *parties, now_ns=_NOW), _NOW)
    got = [(m.msg_type, m.get(373), m.get(371)) for m in replies(s)]
    assert got == [(b"3", b"15", b"447")] and app.messages == [], got


# -- order fields read wrongly ----------------------------------------------------------------


@pytest.mark.parametrize("cfi", ["FFICSX", "OCEFPS"], ids=["future", "call-option"])
def test_an_order_whose_cfi_code_names_a_derivative_is_not_booked_on_the_symbol(
    harness: Harness, cfi: str
) -> None:
    """README: "an option's or a future's (PutOrCall 201, ... or a SecurityType such as OPT
    or FUT) refuses the order: ringex trades the symbol itself". FIX 4.4 defines CFICode
    (461, ISO 10962) for the same purpose and recommends it: "It is recommended that CFICode
    be used instead of SecurityType for non-Fixed Income instruments", so an engine built by
    the specification says "BTC-USD future" as 55=BTC-USD 461=FFICSX (first letter F:
    futures; O: options), no SecurityType. ``dictionary.py`` lists 461 in ``_DESCRIPTIVE``
    and ``order_fields.unsupported_field`` looks only at SecurityType (167) against
    ``DERIVATIVES``: the order is booked on the spot book, a future or option order filled
    as spot. Expected: ExecutionReport 150=8, OrdRejReason 11, CFICode named. Fix: refuse a
    CFICode whose category (first letter) is not the symbol's own (ISO 10962: F futures,
    O options, and the like), as ``DERIVATIVES`` does for 167."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("cfi", "1", "1.00", "100.00"), (461, cfi))
        got = await answers(alice)
        assert [(m.get(35), m.get(150)) for m in got] == [(b"8", b"8")], shown(got)
        assert b"CFICode" in got[0].get(58), shown(got)

    run(harness, scenario)


def test_an_order_for_another_account_is_not_booked_in_the_sessions_own(
    harness: Harness,
) -> None:
    """FIX 4.4 Account (1): "Account mnemonic as agreed between buy and sell sides", the
    account the order is for; a firm's engine that carries several clients over one session
    sends it on every order, and the ExecutionReport must give it back ("Required for
    executions against electronically submitted orders which were assigned an account").
    ringex maps a session to one account (README: "its account the next free one unless
    --account says") and has OrdRejReason 15 (Unknown account) in ``ORD_REJ_REASON``. But
    no code reads tag 1 (it is in ``_ORDER``, so neither descriptive nor unsupported, and
    ``orders.py`` ``_new`` uses ``session.account``): an order for account "CLIENT-B" is
    booked and filled in ALICE's account 7, and its report carries no Account to show it.
    The dictionary's docstring lists only "the account's capacity" as descriptive.
    Expected: ExecutionReport 150=8 naming Account (OrdRejReason 15 or 11) for an Account
    that is not the session's. Fix: in ``_new`` (and ``_cancel_replace``, ``_mass_cancel``,
    ``status``) refuse an Account other than ``str(session.account)``; echo it on reports."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("acct", "1", "1.00", "100.00"), (1, "CLIENT-B"))
        got = await answers(alice)
        assert [(m.get(35), m.get(150)) for m in got] == [(b"8", b"8")], shown(got)
        assert got[0].get(103) in (b"11", b"15") and b"Account" in got[0].get(58), shown(got)

    run(harness, scenario)


def test_an_order_priced_in_another_currency_is_not_booked_in_the_quote_currency(
    harness: Harness,
) -> None:
    """FIX 4.4 Currency (15): "Identifies currency used for price". 55=BTC-USD 15=EUR
    44=100.00 is a limit of 100 euros; ringex books it as a limit of 100 dollars, the
    price read as another value. The README calls Currency descriptive ("one that only
    describes, such as SecurityType 167 or Currency 15, is taken and ignored"), but that is
    true only where it equals the symbol's quote asset (``SymbolConfig.quote``): a Currency
    that differs changes the price, and the project refuses SecurityType OPT/FUT for the
    same reason (it changes what the order means). Expected: ExecutionReport 150=8,
    Currency named; 15=USD taken. Fix: move 15 out of ``_DESCRIPTIVE`` and refuse it in
    ``unsupported_field`` unless it equals the symbol's quote asset."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("usd", "1", "1.00", "100.00"), (15, "USD"))
        assert (await alice.expect("8")).get(150) == b"0"  # the quote currency: fine
        await alice.send("D", *order("eur", "1", "1.00", "100.00"), (15, "EUR"))
        got = await answers(alice)
        assert [(m.get(35), m.get(150)) for m in got] == [(b"8", b"8")], shown(got)
        assert b"Currency" in got[0].get(58), shown(got)

    run(harness, scenario)


# -- mass cancel ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "narrowing",
    [(336, "PRE-OPEN"), (167, "FUT")],
    ids=["TradingSessionID", "SecurityType-FUT"],
)
def test_a_mass_cancel_narrowed_by_a_field_ringex_ignores_does_not_cancel_wider(
    harness: Harness, narrowing: tuple[int, object]
) -> None:
    """FIX 4.4 OrderMassCancelRequest (q) defines TradingSessionID (336, "Trading Session in
    which orders are to be canceled") and the Instrument block (SecurityType 167) to narrow
    what 530=1 (cancel by security) cancels. ``orders.py`` ``_mass_cancel`` refuses a Side
    (54) because "the exchange cancels both sides: refused rather than done too widely", but
    any other narrowing field FIX 4.4 defines for q is taken and ignored (the dictionary
    makes them optional, nothing reads them): 530=1 55=BTC-USD 336=PRE-OPEN, or 167=FUT
    (BTC-USD futures, which ringex refuses on a D: "ringex trades the symbol itself"),
    cancels ALICE's resting spot order, which the request did not name. Expected: an
    OrderMassCancelReport 531=0 (refused, Text naming the field) and the order left resting.
    Fix: refuse in ``_mass_cancel`` every q field that narrows (TradingSessionID,
    TradingSessionSubID, the Instrument and UnderlyingInstrument fields other than Symbol, a
    derivative SecurityType or CFICode) as Side is refused."""
    field, value = narrowing

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("rest", "1", "1.00", "100.00"))
        assert (await alice.expect("8")).get(150) == b"0"
        mass = [(11, "mc"), (530, 1), (55, "BTC-USD"), (field, value), (60, utc())]
        await alice.send("q", *mass)
        got = await answers(alice)
        kinds = [(m.get(35), m.get(531) or m.get(150)) for m in got]
        assert kinds == [(b"r", b"0")], shown(got)

    run(harness, scenario)


def test_a_group_count_tag_given_twice_is_a_repeated_tag_13(tmp_path: Path) -> None:
    """The fix above let every tag of a group repeat, its own count tag too, so a second
    NoPartyIDs (453) was judged by the group check, 373=15, where FIX 4.4 and QuickFIX say
    373=13 (tag appears more than once), as before the fix. Members and nested count tags
    repeat per entry; a group's own count tag does not."""
    s, app = session(tmp_path, _NOW)
    parties = ((453, 1), (448, "T1"), (447, "D"), (452, 12), (453, 1), (448, "T2"))
    s.data_received(msg("D", 2, *_D, *parties, now_ns=_NOW), _NOW)
    got = [(m.msg_type, m.get(373), m.get(371)) for m in replies(s)]
    assert got == [(b"3", b"13", b"453")] and app.messages == [], got
