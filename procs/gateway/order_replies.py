"""What FIX order entry tells a client: ExecutionReports (8), OrderCancelRejects (9) and
OrderMassCancelReports (r), delivered to the session now, or parked for its next logon; and
the reports an OrderStatusRequest (H) or OrderMassStatusRequest (AF) asks for. Each carries
TransactTime (60): the time of the event it reports, or the gateway's clock.

A mixin of ``OrderEntry`` (``orders.py``), which decides *when* to answer; this module says
*how*. Every answer about an order reaches its session even when the client is logged off:
``park`` puts it in the session's outbound store, and the client's ResendRequest after its
next logon delivers it (FIX recovers application messages; none is dropped).

A fill's report (150=F) carries its side's Commission (12) with CommType (13) 3, absolute, in
CommCurrency (479), the symbol's quote asset: under the gateway's configured fees
(``commission.py`` says when those can differ from what the router charged).

ExecID (17): a report made from an exchange event carries an id derived from that event
(``event_exec_id``: its kind, sequence or trade id, and the order), so a gateway that
crashed after sending a report and reads the event again after its restart sends the same
ExecID, and the client recognises a fill it already counted. Reports that no event makes
(a status answer, a restatement, a refusal by the gateway itself) take a counter whose ids
are reserved in durable blocks (``exec_ids.py``): a restart starts above every id the last
run could have used, so those never repeat across restarts either, whatever the clock did.
"""

from __future__ import annotations

from collections.abc import Callable

from procs.common import wall_clock
from procs.common.exec_ids import ExecIdBlocks
from procs.common.records import Trade
from procs.common.stats import reject_slot
from procs.gateway.commission import Commissions
from procs.gateway.fix import FixMessage, Timestamps, field
from procs.gateway.grouped import GroupedDict
from procs.gateway.instruments import Instruments, format_units
from procs.gateway.order_fields import (
    CXL_OTHER,
    CXL_TOO_LATE,
    CXL_UNKNOWN,
    FINISHED,
    FIX_ORD_TYPE,
    FIX_TIF,
    REPORT,
    mass_refused,
    mass_report,
    other_account,
)
from procs.gateway.order_id_check import other_order_id
from procs.gateway.order_state import MassCancelRequest, Order, Request
from procs.gateway.session import Session


def event_exec_id(kind: bytes, number: int, order_id: int) -> bytes:
    """The ExecID part of a report made from an event: ``kind`` (A accepted, T trade, D done,
    R replaced, L triggered), the event's sequence (a trade's id), the order: letters keep
    them apart from the counter's plain numbers."""
    return b"%s%d.%d" % (kind, number, order_id)


class OrderReplies:
    #: The events at hand are read again after a crash (``GatewayRestart.read_again``): their
    #: reports carry PossResend (97) Y, in the header (the first field after SendingTime).
    replaying = False
    gateway: int
    live: GroupedDict[tuple[int, bytes], Order, int]
    finished: dict[tuple[int, bytes], Order]  # ``OrderMemory``'s
    requests: dict[int, Request]
    instruments: Instruments
    sessions: dict[int, Session]
    park: Callable[[int, bytes, bytes, int], bool] | None
    undeliverable: int
    rejects: int
    reject_reasons: list[int]  # by ``procs.common.stats.reject_slot``
    _next_exec: int  # the last counter ExecID handed out (or where the counter starts)
    _exec_limit: int  # the end of the block reserved: ids up to it may be used
    _exec_blocks: ExecIdBlocks
    _symbol_names: dict[int, bytes]
    commissions: Commissions
    mass_cancels: dict[int, MassCancelRequest]
    touched: dict[int, Order | Request | MassCancelRequest | None]
    _times: Timestamps

    def _transact(self, ns: int = 0) -> bytes:
        """TransactTime (60) of a report: the event's time ``ns``, or now (0: no event)."""
        return b"60=%s\x01" % self._times.format(ns or wall_clock.now_ns())

    def answer_mass_cancel(self, ref: int, refused: str | None, at_ns: int = 0) -> None:
        """Mass cancel ``ref``'s report (r): accepted (``refused`` None) or refused with that
        text, at the time of the router's verdict ``at_ns`` (0: now). It is forgotten then."""
        mass = self.mass_cancels.pop(ref)
        self.touched[ref] = None
        f = mass.fields
        transact = self._transact(at_ns)
        if refused is None:
            body = mass_report(f, f[530], transact)
        else:
            body = mass_refused(f, 99, refused, transact)
        self._deliver(mass.session, b"r", body)

    def restate(self, order: Order) -> None:
        """An ExecutionReport Restated (150=D) of what the books say of ``order`` after a
        restart that lost some of its events (``OrderMemory.reconcile``)."""
        why = b"restated from the books after a restart: fills or a replace since the last report"
        self._report(order, b"D", extra=field(378, 99) + field(58, why))

    def mass_status(self, session: Session, msg: FixMessage, now: int) -> None:
        """OrderMassStatusRequest (AF): an ExecutionReport Order Status (150=I) for each open
        order of ``session`` (MassStatusReqType 585=7), or of those on Symbol (55) for 585=1
        (then required), narrowed by Side (54) when given; each with MassStatusReqID (584),
        TotNumReports (911) and LastRptRequested (912) Y on the last. None to report: one
        report says so (OrderID and ClOrdID NONE, OrdStatus Rejected, 911=0, 912=Y), as a
        client waiting for its last report must get one."""
        f = msg.fields
        req_id = field(584, f[584])
        symbol = None
        if f[585] == b"1":
            symbol = self.instruments.by_name.get(f.get(55, b""))
            if symbol is None:
                why = f"MassStatusReqType 1 needs a known Symbol (55), not {msg.text(55)!r}"
                session.business_reject(msg, 5 if 55 not in f else 2, why, now)
                return
        side = f.get(54)
        found = [
            o
            for o in self.live.of(session.session_id)
            if (symbol is None or o.symbol is symbol) and (side is None or b"%d" % o.side == side)
        ]
        if other_account(f, session.account):  # another account's: the session has none
            found = []
        session.throttle.charge(len(found), now)  # its reports draw on the throttle too
        pending = self.pending_status()
        for k, order in enumerate(found, start=1):
            last = b"Y" if k == len(found) else b"N"
            extra = req_id + b"911=%d\x01912=%s\x01" % (len(found), last)
            self._report(order, b"I", extra, status=pending.get(id(order)))
        if not found:
            body = b"37=NONE\x0111=NONE\x0117=%d-%s\x01150=I\x0139=8\x01" % (
                self.gateway,
                self._exec_id(),
            )
            body += field(55, f.get(55, b"NONE")) + field(54, side or b"1")
            body += b"151=0\x0114=0\x016=0\x01" + self._transact(now) + req_id
            body += b"911=0\x01912=Y\x01"
            session.send(b"8", body + field(58, "no open order matches the request"), now)

    def pending_status(self) -> dict[int, bytes]:
        """OrdStatus Pending Cancel (6) or Pending Replace (E) of the orders a cancel or replace
        waits for, by ``id(order)``: what a status report says of them (FIX 4.4 Appendix D:
        a pending state outranks New and Partially Filled, and only those: an order filled or
        cancelled while a request for it is in flight says so, review 143)."""
        found: dict[int, bytes] = {}
        for r in self.requests.values():  # a cancel outranks a replace (FIX 4.4's precedence)
            if r.order.status in FINISHED:
                continue
            if r.kind == b"F" or id(r.order) not in found:
                found[id(r.order)] = b"6" if r.kind == b"F" else b"E"
        return found

    def pending_of(self, order: Order) -> bytes | None:
        """``pending_status`` of one order: 6, E, or None when no request waits for it (or
        it is finished)."""
        return self.pending_status().get(id(order))

    def pending_request(self, session: int, cl_ord_id: bytes) -> Request | None:
        """The cancel or replace in flight whose ClOrdID is ``cl_ord_id``, if any: the id
        its order goes by once it is done, which a client may name meanwhile (review 190:
        a cancel's was taken for unknown)."""
        for r in self.requests.values():
            if r.session == session and r.cl_ord_id == cl_ord_id and r.kind in (b"F", b"G"):
                return r
        return None

    def status(self, session: Session, msg: FixMessage, now_ns: int) -> None:
        """OrderStatusRequest (H): an ExecutionReport Order Status (150=I) of the order its
        ClOrdID names (live, finished, or the next id of a cancel or replace in flight), or a
        Rejected one saying it is unknown, also when its OrderID (37) is another order's
        (``order_id_check``: as an F or G is judged, review 333)."""
        key = (session.session_id, msg.fields[11])
        pending = self.pending_request(session.session_id, msg.fields[11])  # its next id
        order = self.live.get(key) or self.finished.get(key)
        if order is None and pending is not None:
            order = pending.order
        if other_account(msg.fields, session.account):  # another account's order: not this
            order = None
        extra = field(790, msg.fields[790]) if 790 in msg.fields else b""
        other = None if order is None else other_order_id(msg, order.order_id, 11)
        if order is None or other is not None:
            text = other or f"unknown order ClOrdID {msg.text(11)}"
            self._reject_new(session, msg, text, 5, b"I", extra)
            return
        self._report(order, b"I", extra=extra, status=self.pending_status().get(id(order)))

    def _exec_id(self) -> bytes:
        self._next_exec += 1
        if self._next_exec > self._exec_limit:  # durable before it is used
            self._exec_limit = self._exec_blocks.reserve(self._next_exec - 1)
        return b"%d" % self._next_exec

    def _commission(self, symbol: int, trade: Trade, maker: bool) -> bytes:
        """Commission (12), CommType (13) and CommCurrency (479) of one side of ``trade``, or
        nothing for a symbol whose quote asset is not configured."""
        shown = self.commissions.shown(symbol, trade.price, trade.qty, maker)
        if shown is None:
            return b""
        return b"12=%s\x0113=3\x01479=%s\x01" % (shown[0], shown[1].encode())

    def _deliver(self, session_id: int, msg_type: bytes, body: bytes) -> None:
        """To the logged-on session, else parked for its next logon, else counted lost. A
        session that has closed (a Logout, say) and is not forgotten yet (its connection's
        end comes a loop pass later) is not logged on: what it would send goes nowhere."""
        session = self.sessions.get(session_id)
        now = wall_clock.now_ns()
        if self.replaying:  # made again after a crash: may repeat what was sent (review 292)
            body = b"97=Y\x01" + body
        if session is not None and not session.closed:
            session.send(msg_type, body, now)
        elif self.park is None or not self.park(session_id, msg_type, body, now):
            self.undeliverable += 1

    def _report(
        self,
        order: Order,
        exec_type: bytes,
        extra: bytes = b"",
        exec_id: bytes | None = None,
        status: bytes | None = None,
        at_ns: int = 0,
    ) -> None:
        """An ExecutionReport about ``order``; ``status`` in place of its OrdStatus (a status
        report's pending cancel or replace); ``at_ns`` the event's time, its TransactTime
        (0: now, a report no event makes)."""
        if order.session not in self.sessions and self.park is None:
            self.undeliverable += 1
            return
        sym = order.symbol
        pd, qd = sym.price_decimals, sym.qty_decimals
        avg = order.notional * 10_000 // order.cum if order.cum else 0
        # one formatting pass (a report is the gateway's most frequent output): the same
        # fields, in the same order, as field() by field()
        body = REPORT % (
            b"%d" % order.order_id if order.order_id else b"NONE",
            order.cl_ord_id,
            b"41=%s\x01" % order.orig_cl_ord_id if order.orig_cl_ord_id else b"",
            self.gateway,
            self._exec_id() if exec_id is None else exec_id,
            exec_type,
            status or order.status,
            self._symbol_names[sym.id],
            order.side,
            FIX_ORD_TYPE[order.ord_type],
            FIX_TIF[order.tif],
            format_units(order.qty, qd),
            b"44=%s\x01" % format_units(order.price, pd) if order.price else b"",
            b"99=%s\x01" % format_units(order.stop_price, pd) if order.stop_price else b"",
            b"18=6\x01" if order.post_only else b"",
            b"111=%s\x01" % format_units(order.display, qd) if order.display else b"",
            format_units(order.leaves, qd),
            format_units(order.cum, qd),
            format_units(avg, pd + 4),
            self._times.format(at_ns or wall_clock.now_ns()),
            extra,
        )
        self._deliver(order.session, b"8", body)

    def _reject_new(
        self,
        session: Session,
        msg: FixMessage,
        text: str,
        reason: int,
        exec_type: bytes = b"8",
        extra: bytes = b"",
    ) -> None:
        f = msg.fields
        if exec_type == b"8":
            self.rejects += 1
            self.reject_reasons[reject_slot(reason)] += 1
        body = b"".join(
            (
                field(37, "NONE"),
                field(11, f[11]),
                b"17=%d-%s\x01" % (self.gateway, self._exec_id()),
                field(150, exec_type),
                field(39, "8"),
                field(55, f.get(55, b"?")),
                field(54, f.get(54, b"1")),
                field(151, 0),
                field(14, 0),
                field(6, 0),
                self._transact(),
                field(103, reason) if exec_type == b"8" else b"",
                field(58, text),
                extra,
            )
        )
        session.send(b"8", body, wall_clock.now_ns())

    def _cancel_reject(
        self,
        session: Session,
        msg: FixMessage,
        order: Order | None,
        text: str,
        reason: int | None = None,
    ) -> None:
        self._send_cancel_reject(
            session.session_id, msg.msg_type, msg.fields[11], order, text, msg.fields[41], reason
        )

    def _send_cancel_reject(
        self,
        session_id: int,
        kind: bytes,
        cl_ord_id: bytes,
        order: Order | None,
        text: str,
        orig: bytes | None = None,
        reason: int | None = None,
        at_ns: int = 0,
    ) -> None:
        """An OrderCancelReject. CxlRejReason (102): ``reason``, or by default 1 (unknown
        order) without an order, 0 (too late) for a finished one, 99 (other) for a live one
        the request does not fit. OrdStatus (39) is the order's current one, a cancel or
        replace still in flight for it included (Pending Cancel 6, Pending Replace E), as a
        status request would answer then (FIX 4.4 Appendix D: a second replace refused for
        the first is "Cancel Reject, OrdStatus Pending Replace, CxlRejReason 3"). TransactTime:
        ``at_ns``, the exchange's refusal's time (0: now, the gateway's own refusal)."""
        if reason is None:
            if order is None:
                reason = CXL_UNKNOWN
            else:
                reason = CXL_TOO_LATE if order.status in FINISHED else CXL_OTHER
        status = b"8" if order is None else self.pending_of(order) or order.status
        body = b"".join(
            (
                field(37, order.order_id if order and order.order_id else "NONE"),
                field(11, cl_ord_id),
                field(41, orig if orig is not None else (order.cl_ord_id if order else b"NONE")),
                field(39, status),
                field(434, "1" if kind == b"F" else "2"),
                field(102, reason),
                self._transact(at_ns),
                field(58, text),
            )
        )
        self._deliver(session_id, b"9", body)
