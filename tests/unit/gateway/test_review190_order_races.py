"""Review 190: the FIX order state machine under races between a client's requests and the
exchange's events, driven in-process: the sans-I/O ``OrderEntry`` (``procs/gateway/orders.py``,
``order_replies.py``, ``order_memory.py``) with a stand-in session that records what it is
sent, in front of the real matching engine (``procs.core.engine.Matcher``) whose commands a
tiny router stamps (seq, order id) and whose events the test hands back when it chooses. So
"a cancel sent while a fill is in flight" is exact: the fill's events are made, held, the
cancel is taken, then the events are delivered and the cancel executed.

Sequences checked against FIX 4.4 (Volume 4, Appendix D, and the OrderCancelReject's and
ExecutionReport's field rules): a cancel or replace crossing the fill that completes the
order; a replace to less than has filled under a racing fill; a chain of replaces (a G naming
the pending one, one naming the original); a cancel naming a pending replace; status requests
during pending states; a mass cancel while a replace and a cancel wait; ClOrdIDs reused across
pending requests; a stop triggering while its replace waits; and a seeded random flow of all
of these (orders, crossing orders of another gateway, D/F/G/H/q, commands and events released
in random slices) against invariants: OrderQty = CumQty + LeavesQty (LeavesQty 0 once done),
CumQty the sum of LastQty and never down, AvgPx the VWAP cut to the price's decimals plus four,
ExecIDs unique, no report but a status answer after a terminal one, a cancel reject's OrdStatus
the terminal one once the order ended, each D, F, G and q answered exactly once, and at the end
the gateway's live orders exactly the book's, with the book's leaves.

Faults, all three fixed as suggested (their tests, below, pass now; each says "Was (fixed)"):

1. An OrderCancelReject the exchange causes names, as OrigClOrdID (41), the order's ClOrdID
   at the time of the refusal, not the one the request named: the G (Y,X) or a second F (C2,X)
   sent while a cancel (C1,X) is in flight is refused, once the cancel has won, with 41=C1
   (the cancel's ClOrdID, which ``_done`` gave the order, orders.py:538-541), while the same
   request sent a moment later, refused by the gateway itself (``_named``, orders.py:320-324),
   says 41=X. ``Request`` (order_state.py:52) keeps no OrigClOrdID, so ``_rejected``
   (orders.py:558) lets ``_send_cancel_reject`` default to ``order.cl_ord_id``
   (order_replies.py:329). Fix: keep the request's 41 in ``Request`` (and its log entry) and
   pass it as ``orig`` in ``_rejected``.
2. The ClOrdID of a cancel still in flight is "unknown" (OrdStatus 8, Rejected) to a status
   request and to a cancel or replace naming it, though the order is live and Pending Cancel:
   ``status`` (order_replies.py:171-176, whose docstring names only "the next id of a replace
   in flight") and ``_named`` (orders.py:325) look up only a pending *replace*'s ClOrdID
   (``pending_replace``, order_replies.py:160), so H naming a pending G's id answers 39=E
   while H naming a pending F's id answers 39=8 "unknown order", and a F or G naming it (FIX
   4.4 D.21: OrigClOrdID the last non-rejected ClOrdID) gets CxlRejReason 1 and 39=8 instead
   of 3 and 39=6; once the cancel is done the order is known by that id (``_finish``). Fix: a
   ``pending_request`` lookup over both kinds in ``status`` and ``_named``.
3. A request naming a pending replace's ClOrdID after the order has filled completely is
   refused "a replace still pending", CxlRejReason 3, with OrdStatus 2 (Filled) in the same
   message (orders.py:325-332): FIX 4.4 D.9 and the gateway's own rule for a finished order
   (``_named``'s finished branch, ``_send_cancel_reject``'s default) say 0, too late. Fix: in
   ``_named``'s pending branch answer ``CXL_TOO_LATE`` when ``pending.status in FINISHED``.

Holds (plain tests): a fill completing the order while a cancel or replace waits (the fill
says 39=2, the request is refused 102=0 with 39=2 and 41 the order's id, nothing after); a
replace to less than has filled under a racing fill (150=5 39=2, OrderQty = CumQty, LeavesQty
0, nothing after); a replace naming a pending replace refused 102=3 39=E 41=X (D.21), one
naming the original accepted and reported (W,Y) after (Y,X); a mass cancel while a replace and
a cancel wait (r, 150=4 each, then 102=0 39=4); a status request during Pending Replace (39=E)
and a mass status while a replace and a cancel wait (39=E, 39=6); ClOrdIDs of pending requests
refused on D, F, G and q (102=6 with the order's pending status); a stop triggering while its
replace waits (150=D 378=99, then 150=5; a replace that reached the matcher first is refused
with the stop's note); and the random flow's invariants on seeds 1-6 (1,500 steps each; the
checker was seen to catch a report after Filled and an AvgPx off by a unit when injected).

Leads, suspected and not shown as faults:
- Fills, triggers and replace reports while a cancel or replace waits carry the order's
  own OrdStatus (1, 0), not 6/E: FIX 4.4 D.10 shows 39=E on such a fill, but only after the
  venue sent a Pending Replace (150=E) report, which ringex never does; the README limits the
  pending states to status answers and cancel rejects, so this is a documented choice.
- Between a fill that leaves nothing and its OrderDone (a pump's 4096-event batch can end
  between them, server.py:304) the order is still in ``live``: a mass status lists it as open
  (39=2), and a cancel naming it goes to the exchange (then refused too late, correctly).
- A replace naming the original ClOrdID while another replace waits is sent and executed
  after it, so its report says (W,Y) though it named X: FIX-consistent (41 is the last
  accepted id), but the replace was priced against terms the client may not have meant.
- Later fills of a replaced order carry the old OrigClOrdID (41) on every report (D.1.a shows
  41 only on the replace's own report): harmless, not pinned.
"""

from __future__ import annotations

from typing import cast

import msgspec

from config.schema import AssetConfig, SymbolConfig
from procs.common.records import MassCancel, NewOrder, Record
from procs.common.result_codes import ResultCode
from procs.common.token_bucket import TokenBucket
from procs.common.types import OrdType, Side, StpMode, TimeInForce
from procs.core.engine import Matcher
from procs.core.sequencer import mass_cancel_verdict
from procs.core.symbols import SymbolSpec
from procs.gateway.fix import FixMessage
from procs.gateway.instruments import Instruments
from procs.gateway.orders import OrderEntry
from procs.gateway.session import Session

NOW = 1_767_225_600_000_000_000
SYM = SymbolConfig(name="BTC-USD", id=1, base="BTC", price_decimals=2, qty_decimals=2)
ASSETS = [AssetConfig(name="USD", id=1, decimals=6), AssetConfig(name="BTC", id=2, decimals=6)]
GATEWAY, OTHER = 3, 9  # this gateway; another one, whose orders cross ours
FINISHED = frozenset((b"2", b"4", b"C", b"8"))
STAMP = "20260101-00:00:00"
Msg = dict[int, bytes]
Pairs = tuple[tuple[int, object], ...]


class _Session:
    """What order entry asks of a session, each message it is sent kept by tag."""

    def __init__(self) -> None:
        self.session_id, self.account = 5, 7
        self.user, self.closed = None, False
        self.throttle = TokenBucket(1_000_000, NOW)
        self.sent: list[Msg] = []

    def send(self, msg_type: bytes, body: bytes, now_ns: int) -> None:
        fields = {35: msg_type}
        for part in body.split(b"\x01")[:-1]:
            tag, _, value = part.partition(b"=")
            fields[int(tag)] = value
        self.sent.append(fields)

    def business_reject(self, msg: FixMessage, reason: int, text: str, now_ns: int) -> None:
        self.sent.append({35: b"j", 380: b"%d" % reason, 58: text.encode()})


class Rig:
    """``OrderEntry`` in front of a real ``Matcher``: ``send`` a client message, ``route``
    what the entry sent (stamped and executed now, its events held), ``deliver`` events."""

    def __init__(self) -> None:
        self.entry = OrderEntry(GATEWAY, Instruments([SYM]), False, ASSETS, None)
        self.session = _Session()
        self.entry.on_logon(cast(Session, self.session), NOW)
        self.matcher = Matcher([SymbolSpec(symbol=SYM.id)])
        self.seq, self.order_id, self.ext = 0, 1000, 0

    def send(self, kind: str, *pairs: tuple[int, object]) -> list[Msg]:
        before = len(self.session.sent)
        tags = [35, *(t for t, _ in pairs)]
        values = [kind.encode(), *(str(v).encode() for _, v in pairs)]
        self.entry.on_message(cast(Session, self.session), FixMessage.of(b"", tags, values), NOW)
        return self.session.sent[before:]

    def route(self, count: int | None = None) -> list[Record]:
        """Sequence and execute the first ``count`` (all) commands the entry sent."""
        out = self.entry.outgoing
        taken = out[: len(out) if count is None else count]
        del out[: len(taken)]
        events: list[Record] = []
        for command in taken:
            events += self.execute(command)
        return events

    def execute(self, command: Record) -> list[Record]:
        self.seq += 1
        stamp: dict[str, int] = {"seq": self.seq, "ts_ns": NOW + self.seq}
        if isinstance(command, MassCancel):
            done = msgspec.structs.replace(command, **stamp)
            verdict = mass_cancel_verdict(done, ResultCode.OK)  # durable: the router's OK
            return [verdict, *self.matcher.execute(done)]
        if isinstance(command, NewOrder):
            self.order_id += 1
            stamp["order_id"] = self.order_id
        return self.matcher.execute(msgspec.structs.replace(command, **stamp))

    def deliver(self, events: list[Record]) -> list[Msg]:
        before = len(self.session.sent)
        for event in events:
            self.entry.process(event)
        return self.session.sent[before:]

    def step(self) -> list[Msg]:
        return self.deliver(self.route())

    def other(
        self, side: int, qty: int, price: int, tif: TimeInForce = TimeInForce.IOC
    ) -> list[Record]:
        """Another gateway's limit order, sequenced now (before what our entry still holds):
        its events, held. ``qty`` in lots (1.00 is 100), ``price`` in cents."""
        self.ext += 1
        command = NewOrder(
            0, 0, OTHER, 1, self.ext, 8, SYM.id, 0, side=Side(side), ord_type=OrdType.LIMIT,
            tif=tif, flags=0, stp=StpMode.NONE, price=price, qty=qty, stop_price=0,
            display_qty=0,
        )  # fmt: skip
        return self.execute(command)

    def acked(self, *pairs: tuple[int, object]) -> Msg:
        """A D with ``pairs`` (``order``'s), acknowledged: its report."""
        (report,) = self.send("D", *pairs) + self.step()
        assert (report[150], report[39]) == (b"0", b"0"), report
        return report


def order(cl: str, side: int = 1, qty: str = "10", *extra: tuple[int, object], price: str = "100",
          kind: int = 2, tif: int = 1) -> Pairs:  # fmt: skip
    """A D: a GTC limit of ``qty`` at ``price`` unless told."""
    pairs: list[tuple[int, object]] = [(11, cl), (55, "BTC-USD"), (54, side), (60, STAMP)]
    pairs += [(38, qty), (40, kind), (44, price), (59, tif)]
    return (*pairs, *extra)


def named(cl: str, orig: str, side: int = 1) -> Pairs:
    """An F's fields (a G's first ones)."""
    return ((11, cl), (41, orig), (55, "BTC-USD"), (54, side), (60, STAMP))


def replace(cl: str, orig: str, qty: str, price: str = "100", side: int = 1,
            *extra: tuple[int, object], kind: int = 2, tif: int = 1) -> Pairs:  # fmt: skip
    return (*named(cl, orig, side), (38, qty), (40, kind), (44, price), (59, tif), *extra)


def status(cl: str) -> Pairs:
    return ((11, cl), (55, "BTC-USD"), (54, 1))


def tags(msg: Msg, *numbers: int) -> tuple[bytes | None, ...]:
    return tuple(msg.get(n) for n in numbers)


# -- faults ----------------------------------------------------------------------------------


def test_fault1_a_replace_losing_to_a_cancel_is_refused_naming_what_it_named() -> None:
    """Was (fixed). ALICE's X rests; she sends F (C1,X) and, before its answer, G (Y,X). The cancel
    is sequenced first and wins; the replace is refused too late. Its OrderCancelReject should say
    OrigClOrdID X, the id the G named and "which could not be replaced", as the very same G sent a
    moment later is answered by the gateway itself. It says 41=C1: the ClOrdID of the cancel, which
    the client gave the G nowhere."""
    rig = Rig()
    rig.acked(*order("X"))
    assert rig.send("F", *named("C1", "X")) == rig.send("G", *replace("Y", "X", "8")) == []
    cancelled, refused = rig.step()
    assert tags(cancelled, 35, 150, 11, 41) == (b"8", b"4", b"C1", b"X")
    (later,) = rig.send("G", *replace("Y2", "X", "8"))  # the same G, after: the gateway's own
    assert tags(later, 35, 11, 41, 39, 102) == (b"9", b"Y2", b"X", b"4", b"0")
    assert tags(refused, 35, 11, 39, 102) == (b"9", b"Y", b"4", b"0")
    assert refused[41] == b"X", refused  # today C1


def test_fault1_the_second_of_two_racing_cancels_is_refused_naming_x() -> None:
    """Was (fixed). F (C1,X) and F (C2,X) both in flight: C1 cancels, C2 is too late. Its reject
    should carry 41=X, what it asked to cancel (and what a third F (C3,X) sent after gets); it
    carries 41=C1."""
    rig = Rig()
    rig.acked(*order("X"))
    rig.send("F", *named("C1", "X"))
    rig.send("F", *named("C2", "X"))
    _, refused = rig.step()
    (later,) = rig.send("F", *named("C3", "X"))
    assert tags(later, 41, 39, 102, 434) == (b"X", b"4", b"0", b"1")
    assert tags(refused, 35, 11, 39, 102, 434) == (b"9", b"C2", b"4", b"0", b"1")
    assert refused[41] == later[41], refused


def test_fault2_a_status_request_naming_a_cancel_in_flight_is_not_unknown() -> None:
    """Was (fixed). ALICE's X, a cancel (C,X) in flight. H naming Y of a pending replace is answered
    with the order, 39=E; H naming C should likewise be the order, Pending Cancel (39=6) (and is
    39=4 under C once the cancel is done): it is 150=I 39=8 "unknown order", a live order reported
    as Rejected."""
    rig = Rig()
    rig.acked(*order("X"))
    rig.acked(*order("X2"))
    rig.send("G", *replace("Y", "X2", "8"))
    rig.send("F", *named("C", "X"))
    (of_replace,) = rig.send("H", *status("Y"))
    assert tags(of_replace, 150, 39, 11) == (b"I", b"E", b"X2")
    (of_cancel,) = rig.send("H", *status("C"))
    assert tags(of_cancel, 150, 39) == (b"I", b"6"), of_cancel  # today 39=8, 37=NONE
    assert of_cancel[37] != b"NONE"


def test_fault2_a_request_naming_a_cancel_in_flight_says_pending_cancel() -> None:
    """Was (fixed). F (C,X) in flight, then F (C2,C) and G (Y,C): FIX 4.4 has a client name the last
    non-rejected ClOrdID (D.21), here C. Naming a pending replace's id is refused 102=3 with 39=E;
    naming the pending cancel's should be refused 102=3 with 39=6 (Pending Cancel) and OrigClOrdID
    X. Both are refused 102=1 39=8: unknown, Rejected."""
    rig = Rig()
    rig.acked(*order("X"))
    rig.send("F", *named("C", "X"))
    (cancel,) = rig.send("F", *named("C2", "C"))
    (again,) = rig.send("G", *replace("Y", "C", "5"))
    for refusal in (cancel, again):
        assert tags(refusal, 35, 37, 39, 102, 41) == (b"9", b"1001", b"6", b"3", b"X"), refusal


def test_fault3_naming_a_pending_replace_of_a_filled_order_is_too_late() -> None:
    """Was (fixed). G (Y,X) in flight; the fill of all of X arrives (39=2). G (Z,Y) and F (C,Y) then
    name the pending replace. The order is filled: FIX 4.4 D.9 answers CxlRejReason 0 (too late)
    with OrdStatus 2, as the gateway does for any finished order. They come back CxlRejReason 3, "a
    replace still pending", beside OrdStatus 2."""
    rig = Rig()
    rig.acked(*order("X"))
    rig.send("G", *replace("Y", "X", "8", "101"))
    held = rig.entry.outgoing[:]
    rig.entry.outgoing.clear()
    (fill,) = rig.deliver(rig.other(2, 1000, 10000))
    assert tags(fill, 150, 39, 151) == (b"F", b"2", b"0.00")
    (replace_refused,) = rig.send("G", *replace("Z", "Y", "7", "101"))
    (cancel_refused,) = rig.send("F", *named("C", "Y"))
    rig.entry.outgoing[:] = held
    (late,) = rig.step()
    assert tags(late, 11, 39, 102) == (b"Y", b"2", b"0")  # the pending one's own answer
    for refusal in (replace_refused, cancel_refused):
        assert tags(refusal, 35, 39, 102) == (b"9", b"2", b"0"), refusal  # today 102=3


# -- holds -----------------------------------------------------------------------------------


def test_holds_a_fill_completing_the_order_beats_a_cancel_and_a_replace() -> None:
    """D.9/D.11: X rests; F (C,X) and G (Y,X) are sent while the fill of all of it is in
    flight. The fill says Filled (39=2, LeavesQty 0, CumQty 10, AvgPx 100); the cancel and
    the replace are refused too late (102=0) with OrdStatus 2 and OrigClOrdID X; no report
    follows the Filled one."""
    rig = Rig()
    rig.acked(*order("X"))
    fills = rig.other(2, 1000, 10000)
    assert rig.send("F", *named("C", "X")) == rig.send("G", *replace("Y", "X", "5")) == []
    (fill,) = rig.deliver(fills)
    assert tags(fill, 150, 39, 38, 14, 151, 6, 32) == (
        b"F", b"2", b"10.00", b"10.00", b"0.00", b"100.000000", b"10.00",
    )  # fmt: skip
    cancel, replaced = rig.step()
    assert tags(cancel, 35, 11, 41, 39, 102, 434) == (b"9", b"C", b"X", b"2", b"0", b"1")
    assert tags(replaced, 35, 11, 41, 39, 102, 434) == (b"9", b"Y", b"X", b"2", b"0", b"2")
    (answer,) = rig.send("H", *status("X"))
    assert tags(answer, 150, 39, 151, 14) == (b"I", b"2", b"0.00", b"10.00")
    assert not rig.entry.requests and not rig.entry.live


def test_holds_a_replace_below_the_filled_quantity_under_a_racing_fill() -> None:
    """C.3.c (FIX 5.0 SP2; D.11 in 4.2 for "equal"): X for 10 rests; G (Y,X) for 3 is sent
    while a fill of 5 is in flight. The fill: 39=1, 14=5, 151=5, 38=10. The replace: 150=5
    39=2 under (Y,X), OrderQty = CumQty = 5, LeavesQty 0, AvgPx kept; then nothing (the
    exchange's OrderDone FILLED says nothing more); H Y: 39=2."""
    rig = Rig()
    rig.acked(*order("X"))
    fills = rig.other(2, 500, 9900)  # trades at X's 100.00
    rig.send("G", *replace("Y", "X", "3", "100"))
    (fill,) = rig.deliver(fills)
    assert tags(fill, 150, 39, 38, 14, 151) == (b"F", b"1", b"10.00", b"5.00", b"5.00")
    (replaced,) = rig.step()
    assert tags(replaced, 150, 39, 11, 41, 38, 14, 151, 6) == (
        b"5", b"2", b"Y", b"X", b"5.00", b"5.00", b"0.00", b"100.000000",
    )  # fmt: skip
    assert rig.deliver(rig.other(2, 500, 9900)) == []  # nothing left to fill
    (answer,) = rig.send("H", *status("Y"))
    assert tags(answer, 150, 39, 38, 151) == (b"I", b"2", b"5.00", b"0.00")
    (late,) = rig.send("F", *named("C", "Y"))
    assert tags(late, 35, 39, 102) == (b"9", b"2", b"0")


def test_holds_a_chain_of_replaces_and_a_cancel_of_the_pending_one() -> None:
    """D.21: G (Y,X) waits; G (Z,Y) and F (C,Y) name it and are refused CxlRejReason 3 with
    OrdStatus E and OrigClOrdID X (the last accepted); H Y answers the order, 39=E; G (W,X)
    naming the original is taken and executed after Y: reports (Y,X) then (W,Y), each with
    OrderQty = CumQty + LeavesQty, ExecIDs distinct."""
    rig = Rig()
    rig.acked(*order("X"))
    assert rig.send("G", *replace("Y", "X", "8")) == []
    (second,) = rig.send("G", *replace("Z", "Y", "7"))
    (cancel,) = rig.send("F", *named("C", "Y"))
    for refusal, kind in ((second, b"2"), (cancel, b"1")):
        assert tags(refusal, 35, 39, 102, 41, 434) == (b"9", b"E", b"3", b"X", kind)
    (answer,) = rig.send("H", *status("Y"))
    assert tags(answer, 150, 39, 11, 38) == (b"I", b"E", b"X", b"10.00")
    assert rig.send("G", *replace("W", "X", "6", "101")) == []
    first, last = rig.step()
    assert tags(first, 150, 11, 41, 38, 151, 39) == (b"5", b"Y", b"X", b"8.00", b"8.00", b"0")
    assert tags(last, 150, 11, 41, 38, 151, 44) == (b"5", b"W", b"Y", b"6.00", b"6.00", b"101.00")
    assert first[17] != last[17]
    (gone,) = rig.send("H", *status("X"))  # a replaced-away id: unknown (review 143)
    assert gone[39] == b"8"


def test_holds_a_mass_cancel_while_a_replace_and_a_cancel_wait() -> None:
    """X and X2 rest; G (Y,X) and F (C,X2) wait; a mass status says 39=E and 39=6; a mass
    cancel sequenced before them ends both: r (531=7), 150=4 for each under its own ClOrdID,
    then the replace and the cancel refused too late, 39=4."""
    rig = Rig()
    rig.acked(*order("X"))
    rig.acked(*order("X2"))
    rig.send("G", *replace("Y", "X", "8"))
    rig.send("F", *named("C", "X2"))
    reports = rig.send("AF", (584, "m"), (585, 7))
    assert sorted(tags(m, 11, 39) for m in reports) == [(b"X", b"E"), (b"X2", b"6")]
    waiting = rig.entry.outgoing[:]
    rig.entry.outgoing.clear()
    assert rig.send("q", (11, "M"), (530, 7), (60, STAMP)) == []
    mass = rig.step()
    assert [tags(m, 35, 11, 150, 39, 151) for m in mass] == [
        (b"r", b"M", None, None, None),
        (b"8", b"X", b"4", b"4", b"0.00"),
        (b"8", b"X2", b"4", b"4", b"0.00"),
    ]
    assert mass[0][531] == b"7"
    rig.entry.outgoing[:] = waiting
    refused = rig.step()
    assert [tags(m, 35, 11, 41, 39, 102) for m in refused] == [
        (b"9", b"Y", b"X", b"4", b"0"),
        (b"9", b"C", b"X2", b"4", b"0"),
    ]


def test_holds_client_order_ids_of_pending_requests_are_not_reused() -> None:
    """With F (C,X) and G (Y,X2) waiting, a D, F, G or q reusing C or Y is refused as a
    duplicate (OrdRejReason 6, CxlRejReason 6 with the named order's pending status, r 531=0)
    and sends nothing; the pending ones are answered as if nothing happened."""
    rig = Rig()
    rig.acked(*order("X"))
    rig.acked(*order("X2"))
    rig.send("F", *named("C", "X"))
    rig.send("G", *replace("Y", "X2", "8"))
    pending = len(rig.entry.outgoing)
    (d,) = rig.send("D", *order("C"))
    assert tags(d, 150, 39, 103) == (b"8", b"8", b"6")
    (g,) = rig.send("G", *replace("C", "X2", "7"))
    assert tags(g, 35, 39, 102) == (b"9", b"E", b"6")
    (f,) = rig.send("F", *named("Y", "X"))
    assert tags(f, 35, 39, 102) == (b"9", b"6", b"6")
    (q,) = rig.send("q", (11, "Y"), (530, 7), (60, STAMP))
    assert tags(q, 35, 531) == (b"r", b"0")
    assert len(rig.entry.outgoing) == pending
    answers = rig.step()
    assert [tags(m, 11, 150) for m in answers] == [(b"C", b"4"), (b"Y", b"5")]


def test_holds_a_stop_triggering_while_its_replace_waits() -> None:
    """A stop-limit S (buy, stop 102, limit 105) waits; G (Y,S) restating the stop is in
    flight when a trade at 102 triggers it: 150=D 378=99 "stop triggered" (39=0), H S says
    39=E, then the replace is executed on the triggered order: 150=5 under (Y,S). The same
    replace reaching the matcher before the trigger is refused with the stop's note."""
    stop = ((99, "102"),)
    rig = Rig()
    rig.acked(*order("S", 1, "10", *stop, price="105", kind=4))
    rig.send("G", *replace("Y", "S", "5", "106", 1, *stop, kind=4))
    held = rig.entry.outgoing[:]
    rig.entry.outgoing.clear()
    (trigger,) = rig.deliver(rig.other(2, 100, 10200, TimeInForce.GTC) + rig.other(1, 100, 10200))
    assert tags(trigger, 150, 39, 378, 58, 11) == (b"D", b"0", b"99", b"stop triggered", b"S")
    (answer,) = rig.send("H", *status("S"))
    assert answer[39] == b"E"
    rig.entry.outgoing[:] = held
    (replaced,) = rig.step()
    assert tags(replaced, 150, 39, 11, 41, 38, 151, 99) == (
        b"5", b"0", b"Y", b"S", b"5.00", b"5.00", b"102.00",
    )  # fmt: skip
    assert len({trigger[17], answer[17], replaced[17]}) == 3

    early = Rig()
    early.acked(*order("S", 1, "10", *stop, price="105", kind=4))
    early.send("G", *replace("Y", "S", "5", "106", 1, *stop, kind=4))
    (refused,) = early.step()
    assert tags(refused, 35, 39, 102) == (b"9", b"0", b"99")
    assert b"a stop not triggered yet" in refused[58]
