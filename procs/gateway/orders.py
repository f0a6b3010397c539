"""Order entry: FIX application messages -> ring commands, matcher events -> FIX reports.

``OrderEntry`` is the session layer's ``Application``. It turns D/F/G/q into ``NewOrder``,
``CancelOrder``, ``ReplaceOrder``, ``MassCancel`` records (``outgoing``: the shell publishes),
answers H, AF (from what it holds) and x (``security_list.py``), hands BE, e to the shell;
``process`` makes ExecutionReports (8), OrderCancelRejects (9), OrderMassCancelReports (r).

Every command gets a fresh ``client_ref``, the gateway's handle for one request: a NewOrder's
ref names the order, a cancel's or replace's ref names that request (the matcher answers a
cancel under the cancel's header). Refs start at the wall clock in ns and count up, so they
never repeat across restarts (the router refuses a live duplicate). Orders are found again by
``order_id`` once ``Accepted`` gives it (trades carry only order ids).

A ClOrdID already seen on the session is refused, unless the message is a possible
duplicate (PossDupFlag/PossResend): then it was received before and is not executed twice.

Every order and request it creates, changes or forgets is noted in ``touched``; the server
writes ``take_changes()`` to the order log (``order_log.py``) and a restarted gateway gets its
orders back with ``restore``, so fills and cancels of orders placed before the restart are
reported and accepted as if nothing had happened.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

from config.schema import AssetConfig, RiskConfig
from procs.common import wall_clock
from procs.common.exec_ids import FILE_NAME as EXEC_IDS
from procs.common.exec_ids import ExecIdBlocks
from procs.common.records import (
    Accepted,
    CancelOrder,
    MassCancel,
    NewOrder,
    OrderDone,
    Record,
    Rejected,
    Replaced,
    ReplaceOrder,
    SymbolStatus,
    Trade,
    Triggered,
)
from procs.common.result_codes import ResultCode
from procs.common.stats import REJECT_REASONS, LatencyHistogram, reject_slot
from procs.common.types import DoneReason, OrderFlag, Side, client_id_of
from procs.gateway import security_list
from procs.gateway.clordid_holders import ClOrdIdHolders
from procs.gateway.clordids import Generations
from procs.gateway.clordids import digest as clordid_digest
from procs.gateway.commission import Commissions
from procs.gateway.disconnect_cancels import DisconnectCancels
from procs.gateway.fix import FixMessage, Timestamps, field, shown
from procs.gateway.grouped import GroupedDict
from procs.gateway.instruments import Instruments, format_units
from procs.gateway.order_fields import (
    CXL_DUPLICATE,
    CXL_EXCHANGE,
    CXL_PENDING,
    CXL_TOO_LATE,
    CXL_UNKNOWN,
    FINISHED,
    ORD_REJ_REASON,
    ORD_TYPES,
    STP_MODES,
    TIFS,
    Fault,
    amounts,
    cannot_post,
    differs,
    mass_refusal,
    mass_refused,
    order_fault,
    refusal_text,
    replace_fault,
    rested,
)
from procs.gateway.order_id_check import other_order_id
from procs.gateway.order_memory import OrderMemory
from procs.gateway.order_replies import OrderReplies, event_exec_id
from procs.gateway.order_state import MassCancelRequest, Order, Request
from procs.gateway.session import Session

#: ClOrdIDs of finished orders remembered per gateway to refuse a reuse (live ones always are),
#: as hashes in two generations of sets, each half of this, the older dropped whole when the
#: newer fills: between 100k and 200k of the newest are known. (An OrderedDict with popitem,
#: ~220 bytes an entry, doubled its table twice at its cap: 8 and 20 MB steps in the soak.)
_SEEN_CLORDIDS = 200_000
log = logging.getLogger("ringex.gateway")
_MASS_CANCELS_WAITING = 10_000  # waiting for the router's verdict, at most (oldest forgotten)


class OrderEntry(OrderReplies, OrderMemory, DisconnectCancels, ClOrdIdHolders):
    def __init__(
        self,
        gateway: int,
        instruments: Instruments,
        cancel_on_disconnect: bool,
        assets: Sequence[AssetConfig] = (),
        directory: Path | None = None,
    ) -> None:
        """``assets``: the configured ones; a fill's report carries its commission in the
        symbol's quote asset when among them (``commission.py``). ``directory``: where the
        counter ExecIDs' reservations are kept (``exec_ids.py``); None: in memory only."""
        self.gateway = gateway
        self.instruments = instruments
        self.commissions = Commissions(instruments.by_id.values(), assets)
        self.cancel_on_disconnect = cancel_on_disconnect
        self.risk = RiskConfig()  # the limits a refusal names (the shell sets the config's)
        self.outgoing: list[Record] = []
        self.sessions: dict[int, Session] = {}  # session id -> its logged-on session
        self.orders: dict[int, Order] = {}  # NewOrder client_ref -> order
        self.by_id: dict[int, Order] = {}
        self.requests: dict[int, Request] = {}
        #: MassCancel ref -> its request: answered (r) when the router's verdict comes
        #: (``_rejected``), never before; kept in the order log across a restart.
        self.mass_cancels: dict[int, MassCancelRequest] = {}
        self.closing = False  # stopping: new orders and replaces are refused, cancels still go
        self.live: GroupedDict[tuple[int, bytes], Order, int] = GroupedDict(_session_of)
        self.finished: dict[tuple[int, bytes], Order] = {}
        self.finished_orders: OrderedDict[int, tuple[Order, list[tuple[int, bytes]]]] = (
            OrderedDict()
        )
        self.finished_ids: dict[int, int] = {}  # order id -> its ref in ``finished_orders``
        self.finished_changes: list[Order] = []  # finished since ``take_changes``
        self.seen = Generations(_SEEN_CLORDIDS // 2)  # clordids.digest(session, ClOrdID)
        #: ref -> the order or request that changed since ``take_changes``, None: forgotten
        self.touched: dict[int, Order | Request | MassCancelRequest | None] = {}
        #: Where a report for a session that is not logged on goes: ``park(session id,
        #: msg type, body, now_ns)`` stores it in that session's outbound store, and the
        #: client's ResendRequest after its next logon delivers it. None: counted and dropped.
        self.park: Callable[[int, bytes, bytes, int], bool] | None = None
        #: Whether an open order the REST API placed for the account holds a ClOrdID (the
        #: shell sets it where the gateway serves the API)
        self.api_holds: Callable[[int, bytes], bool] = lambda account, cl_ord_id: False
        self.account_of: Callable[[int], int | None] = lambda session_id: None  # (holders)
        #: requests the shell answers: BE (``user_requests.py``), e (``security_status.py``)
        self.shell_requests: dict[bytes, Callable[[Session, FixMessage, int], None]] = {}
        self.shell_events: Callable[[Record], None] = lambda _: None  # SymbolStatus: the same
        self._init_holders()
        self.undeliverable = 0  # reports that could not even be parked
        self._next_ref = wall_clock.now_ns()
        self._exec_blocks = ExecIdBlocks(None if directory is None else directory / EXEC_IDS)
        self._next_exec = self._exec_limit = self._exec_blocks.counter_start()  # none reserved
        self._times = Timestamps()
        # for the metrics (``procs.common.stats``): counted here, stored by the shell
        self._symbol_names = {s.id: s.name.encode() for s in instruments.by_id.values()}
        self.orders_in = self.acks = self.fills = self.rejects = 0
        self.reject_reasons = [0] * len(REJECT_REASONS)  # by ``reject_slot``
        self.ack_latency = LatencyHistogram()
        self.to_router = LatencyHistogram()  # received -> sequenced (the router's stamp)
        self.router_to_ack = LatencyHistogram()  # sequenced -> acknowledged

    # -- Application ------------------------------------------------------------------------

    def on_logon(self, session: Session, now_ns: int) -> None:
        self.sessions[session.session_id] = session
        self._know(session.session_id, session.account)

    def on_disconnect(self, session: Session, now_ns: int) -> None:
        current = self.sessions.get(session.session_id)
        if current is session:
            del self.sessions[session.session_id]
        elif current is not None:
            return  # an old connection's late end: the user is logged on again, orders stay
        wanted = session.user.cancel_on_disconnect if session.user else None
        if wanted if wanted is not None else self.cancel_on_disconnect:
            self.cancel_session_orders(session.session_id, session.account, now_ns)

    def in_flight(self, pending: list[int] | None = None) -> int:
        """Commands not yet answered (new, cancel, replace) or published. With ``pending``
        (``pending_new``'s, once ``closing``), only those refs are looked at for new orders."""
        waiting = len(self.pending_new(pending))
        return waiting + len(self.requests) + len(self.outgoing) + len(self.mass_cancels)

    def pending_new(self, among: list[int] | None = None) -> list[int]:
        """The refs of the new orders sent and not yet accepted or refused: of every order,
        or of ``among`` only. Once ``closing``, no new order is taken, so a stopping gateway
        walks its orders once (a million of them took 50 ms a walk, every 5 ms) and then
        only those that were pending then."""
        orders = self.orders
        if among is None:
            return [ref for ref, o in orders.items() if not o.order_id and o.status == b"A"]
        return [
            ref
            for ref in among
            if (o := orders.get(ref)) is not None and not o.order_id and o.status == b"A"
        ]

    def on_message(self, session: Session, msg: FixMessage, now_ns: int) -> None:
        kind = msg.msg_type
        if self.closing and kind in (b"D", b"G"):
            cl_ord_id = msg.fields.get(11, b"")  # a resend of one taken: not answered again;
            if self._resent_again(session, msg, cl_ord_id) or (  # a reuse: a duplicate
                kind == b"D" and self._duplicate(session, msg, cl_ord_id)
            ):
                return
            text = "the exchange is stopping: no new orders or replaces (cancels are taken)"
            if kind == b"D":
                self.orders_in += 1  # answered: among the orders, as its reject is counted
                self._reject_new(session, msg, text, 2)  # OrdRejReason 2: exchange closed
            elif (order := self._named(session, msg)) is not None:  # else refused as any
                self._cancel_reject(session, msg, order, text)  # (review 46: 'unknown')
            return
        if kind == b"D":
            self._new(session, msg, now_ns)
        elif kind in (b"F", b"G"):
            self._cancel_replace(session, msg, now_ns)
        elif kind == b"H":
            self.status(session, msg, now_ns)
        elif kind == b"q":
            self._mass_cancel(session, msg, now_ns)
        elif kind == b"AF":
            self.mass_status(session, msg, now_ns)
        elif kind == b"x":  # a SecurityListRequest: answered from the config
            response_id = b"%d-%d" % (self.gateway, self.next_ref())
            security_list.answer(session, msg, self.instruments, response_id, now_ns)
        elif (shell := self.shell_requests.get(kind)) is not None:  # BE, e: the shell's
            shell(session, msg, now_ns)
        # j: the client refuses one of our messages; the audit log has it

    # -- commands ---------------------------------------------------------------------------

    def next_ref(self) -> int:
        """A fresh client_ref, unique in this gateway (the REST API draws from it too)."""
        self._next_ref += 1
        return self._next_ref

    def _duplicate(
        self, session: Session, msg: FixMessage, cl_ord_id: bytes, order: Order | None = None
    ) -> bool:
        """True when the message must not go on: a resend we already took, or a reuse."""
        if not self._taken(session.session_id, cl_ord_id):
            return False
        if msg.get(43) == b"Y" or msg.get(97) == b"Y":
            return True  # received before: not executed twice
        text = f"duplicate ClOrdID {shown(cl_ord_id)}"
        if msg.msg_type == b"D":
            self.orders_in += 1  # refused, as counted among the rejects (review 272)
            self._reject_new(session, msg, text, 6)
        else:
            self._cancel_reject(session, msg, order, text, CXL_DUPLICATE)
        return True

    def _taken(self, session_id: int, cl_ord_id: bytes) -> bool:
        """Whether the session used ``cl_ord_id`` already; if not, it is taken now. An order
        still answered for (open, or finished and kept) holds its ClOrdID past the window of
        ``seen`` (review 222: a PossDup of a kept finished order's D executed again)."""
        key = (session_id, cl_ord_id)
        digest = clordid_digest(*key)
        if digest not in self.seen and key not in self.live and key not in self.finished:
            self.seen.add(digest)
            return False
        return True

    def _resent_again(self, session: Session, msg: FixMessage, cl_ord_id: bytes) -> bool:
        """A PossDup or PossResend of a request already taken (its ClOrdID seen): not acted
        on again (FIX 4.4), before any check that its first taking changed the answer of."""
        if msg.get(43) != b"Y" and msg.get(97) != b"Y":
            return False
        return clordid_digest(session.session_id, cl_ord_id) in self.seen

    def _new(self, session: Session, msg: FixMessage, now_ns: int) -> None:
        f = msg.fields
        cl_ord_id = f[11]
        if self._duplicate(session, msg, cl_ord_id):
            return
        self.orders_in += 1
        if held := self.held_elsewhere(session.session_id, session.account, cl_ord_id):
            self._reject_new(session, msg, held, 6)  # another's open order's id (49, 195)
            return
        sym = self.instruments.by_name.get(f[55])
        if sym is None:
            self._reject_new(session, msg, f"unknown symbol {shown(f[55])}", 1)
            return
        if (fault := order_fault(msg, sym, session.account)) is not None:
            self._reject_new(session, msg, fault.text, fault.reason)
            return
        ord_type = ORD_TYPES[f[40]]
        tif = TIFS[f.get(59, b"0")]  # FIX 4.4: "Absence of this field indicates Day order"
        instructions = f.get(18, b"").split()
        unsupported = [i for i in instructions if i != b"6"]
        if unsupported:
            text = f"ExecInst {shown(unsupported[0])} is not supported (only 6, post-only)"
            self._reject_new(session, msg, text, 11)  # unsupported order characteristic
            return
        if instructions and (why := cannot_post(f, ord_type)):
            self._reject_new(session, msg, f"ExecInst 6 (post-only) {why}", 11)
            return
        parsed = amounts(msg, sym, ord_type)
        if isinstance(parsed, Fault):
            self._reject_new(session, msg, parsed.text, parsed.reason)
            return
        price, stop, qty, display = parsed
        flags = OrderFlag.POST_ONLY if instructions else 0
        ref = self.next_ref()
        side = Side(int(f[54]))
        order = Order(
            ref, session.session_id, cl_ord_id, b"", sym, side, ord_type, tif, price, stop, qty
        )
        order.received_ns, order.post_only = now_ns, bool(flags)
        order.display = display
        order.leaves = qty  # pending new is active: LeavesQty = OrderQty - CumQty
        self.orders[ref] = order
        self.live[(session.session_id, cl_ord_id)] = order
        self.touched[ref] = order
        new = NewOrder(  # the header listed, not unpacked: a call with * costs ~100 ns
            0, now_ns, self.gateway, session.session_id, ref, session.account, sym.id, 0,
            side=side, ord_type=ord_type, tif=tif, flags=flags, stp=STP_MODES[f.get(25001, b"1")],
            price=price, qty=qty, stop_price=stop, display_qty=display,
            client_id=client_id_of(cl_ord_id),
        )  # fmt: skip
        self.outgoing.append(new)

    def _named(self, session: Session, msg: FixMessage) -> Order | None:
        """The live, acknowledged order a cancel or replace names (OrigClOrdID), or None once
        refused: too late (finished), a replace pending, unknown, not acked, 37 another's."""
        f = msg.fields
        key = (session.session_id, f[41])
        order = self.live.get(key)
        if order is None:
            request = self.pending_request(session.session_id, f[41])  # a cancel's, a replace's
            done = self.finished.get(key) or (request.order if request else None)  # ended?
            if done is not None and (request is None or done.status in FINISHED):
                text = f"too late: the order of OrigClOrdID {shown(f[41])} is finished"
                self._cancel_reject(session, msg, done, text, CXL_TOO_LATE)
                return None
            if request is not None:  # OrigClOrdID (41): the last accepted one (FIX 4.4)
                what, pending = "replace" if request.kind == b"G" else "cancel", request.order
                text = f"OrigClOrdID {shown(f[41])} is a {what} still pending"
                self._send_cancel_reject(session.session_id, msg.msg_type, f[11], pending, text,
                                         pending.cl_ord_id, CXL_PENDING)  # fmt: skip
                return None
        if order is None or not order.order_id:
            why = "unknown order" if order is None else "order not yet acknowledged"
            reason = CXL_UNKNOWN if order is None else CXL_EXCHANGE  # not pending cancel (46)
            self._cancel_reject(session, msg, order, f"{why} OrigClOrdID {shown(f[41])}", reason)
            return None
        if (other := other_order_id(msg, order.order_id)) is not None:  # acted on for neither
            self._cancel_reject(session, msg, None, other, CXL_UNKNOWN)  # 37 NONE, 39=8
            return None
        return order

    def _cancel_replace(self, session: Session, msg: FixMessage, now_ns: int) -> None:
        f = msg.fields
        if self._resent_again(session, msg, f[11]):
            return
        order = self._named(session, msg)
        if order is None or self._duplicate(session, msg, f[11], order):
            return
        g = msg.msg_type == b"G"
        if g and (held := self.held_elsewhere(session.session_id, session.account, f[11])):
            self._cancel_reject(session, msg, order, held, CXL_DUPLICATE)
            return
        if (unfit := differs(msg, order, session.account)) is not None:
            self._cancel_reject(session, msg, order, unfit)
            return
        ref = self.next_ref()
        sym = order.symbol
        request = Request(msg.msg_type, session.session_id, f[11], order, orig_cl_ord_id=f[41])
        if msg.msg_type == b"F":
            self.requests[ref] = self.touched[ref] = request
            self.outgoing.append(
                CancelOrder(
                    0, now_ns, self.gateway, session.session_id, ref, session.account,
                    sym.id, order.order_id,
                )
            )  # fmt: skip
            return
        parsed = amounts(msg, sym, ORD_TYPES[f[40]], replacing=order)
        if isinstance(parsed, Fault):
            self._cancel_reject(session, msg, order, parsed.text)
            return
        price, stop, qty, display = parsed
        if (unfit := replace_fault(msg, order, stop, display)) is not None:
            self._cancel_reject(session, msg, order, unfit)
            return
        request.price, request.qty = price, qty  # qty: the total, racing fills not added
        self.requests[ref] = self.touched[ref] = request
        replace = ReplaceOrder(
            0, now_ns, self.gateway, session.session_id, ref, session.account, sym.id,
            order.order_id, price=price, order_qty=qty, client_id=client_id_of(f[11]),
        )  # fmt: skip
        self.outgoing.append(replace)

    def _mass_cancel(self, session: Session, msg: FixMessage, now_ns: int) -> None:
        f = msg.fields
        kind = f[530]
        if self._resent_again(session, msg, f[11]):
            return  # repeated, it would cancel orders placed after the first
        transact = self._transact(now_ns)
        if self._taken(session.session_id, f[11]):
            text = f"duplicate ClOrdID {shown(f[11])}"
            session.send(b"r", mass_refused(f, 99, text, transact), now_ns)
            return
        symbol = 0
        if (refusal := mass_refusal(msg, session.account)) is not None:  # 532 and a Text
            session.send(b"r", mass_refused(f, *refusal, transact), now_ns)
            return
        if kind == b"1":
            sym = self.instruments.by_name.get(f.get(55, b""))
            if sym is None:
                text = f"unknown symbol {msg.text(55)}"
                session.send(b"r", mass_refused(f, 1, text, transact), now_ns)
                return
            symbol = sym.id
        ref = self.next_ref()
        if len(self.mass_cancels) >= _MASS_CANCELS_WAITING:  # a router that never answers
            oldest = next(iter(self.mass_cancels))
            del self.mass_cancels[oldest]
            self.touched[oldest] = None
        fields: dict[int, bytes] = {t: f[t] for t in (11, 530, 55) if t in f}
        self.mass_cancels[ref] = self.touched[ref] = MassCancelRequest(session.session_id, fields)
        self.outgoing.append(
            MassCancel(
                *(0, now_ns, self.gateway, session.session_id, ref),
                *(session.account, symbol),
            )
        )

    # -- events -----------------------------------------------------------------------------

    def process(self, event: Record) -> None:
        """One event from a matcher output ring or the router's reply ring."""
        kind = type(event)
        if kind is Trade:
            trade: Trade = event  # type: ignore[assignment]
            if trade.maker_gateway == self.gateway:
                self._fill(trade.maker_order_id, trade, trade.maker_leaves, True)
            if trade.taker_gateway == self.gateway:
                self._fill(trade.taker_order_id, trade, trade.taker_leaves, False)
            return
        if getattr(event, "gateway", None) != self.gateway:
            # its account cancelled one of this gateway's orders through another (REST, FIX
            # by OrderID): the order's session is told all the same
            if kind is OrderDone and event.order_id in self.by_id:  # type: ignore[attr-defined]
                self._done(event, mine=False)  # type: ignore[arg-type]
            elif kind is Replaced:  # and amended one (REST), as a FIX replace is reported
                self._replaced(event)  # type: ignore[arg-type]
            elif kind is SymbolStatus:  # a halt or a resume
                self.shell_events(event)
            return
        if kind is Accepted:
            self._accepted(event)  # type: ignore[arg-type]
        elif kind is OrderDone:
            self._done(event)  # type: ignore[arg-type]
        elif kind is Rejected:
            self._rejected(event)  # type: ignore[arg-type]
        elif kind is Replaced:
            self._replaced(event)  # type: ignore[arg-type]
        elif kind is Triggered:
            triggered: Triggered = event  # type: ignore[assignment]
            stop = self.by_id.get(triggered.order_id)
            if stop is not None:
                stop.triggered, stop.updated_ns = True, triggered.ts_ns
                self.touched[stop.ref] = stop
                # Restated: FIX 4.4 has no ExecType for a trigger (L came later)
                exec_id = event_exec_id(b"L", triggered.seq, stop.order_id)
                extra = field(378, 99) + field(58, "stop triggered")
                self._report(stop, b"D", extra, exec_id=exec_id, at_ns=triggered.ts_ns)

    def _replaced(self, replaced: Replaced) -> None:
        mine = replaced.gateway == self.gateway
        request = self._pop_request(replaced.client_ref) if mine else None
        extra, exec_type = b"", b"5"
        if request is not None:
            order = request.order
            self.live.pop((order.session, order.cl_ord_id), None)
            order.orig_cl_ord_id, order.cl_ord_id = order.cl_ord_id, request.cl_ord_id
            self.live[(order.session, order.cl_ord_id)] = order
        elif (found := self.by_id.get(replaced.order_id)) is not None:  # unsolicited here:
            order, exec_type = found, b"D"  # Restated, as FIX 4.4 reports such a change
            extra = field(378, 99) + field(58, "amended through the REST API")
        else:
            return
        self.touched[order.ref] = order
        order.price, order.leaves = replaced.price, replaced.qty
        order.qty, order.updated_ns = order.cum + replaced.qty, replaced.ts_ns
        # a total at or below what filled: the balance is cancelled, the order filled
        order.status = (b"1" if replaced.qty else b"2") if order.cum else b"0"
        exec_id = event_exec_id(b"R", replaced.seq, order.order_id)
        self._report(order, exec_type, extra, exec_id, at_ns=replaced.ts_ns)

    def _fill(self, order_id: int, trade: Trade, leaves: int, maker: bool) -> None:
        order = self.by_id.get(order_id)
        if order is None:
            return
        order.cum += trade.qty
        order.notional += trade.price * trade.qty
        order.leaves, order.status = leaves, b"2" if leaves == 0 else b"1"
        order.updated_ns = trade.ts_ns
        self.touched[order.ref] = order
        self.fills += 1
        sym = order.symbol
        last = field(31, format_units(trade.price, sym.price_decimals))
        last += field(32, format_units(trade.qty, sym.qty_decimals))
        last += self._commission(sym.id, trade, maker)
        exec_id = event_exec_id(b"T", trade.trade_id, order_id)
        self._report(order, b"F", last, exec_id, at_ns=trade.ts_ns)

    def _accepted(self, accepted: Accepted) -> None:
        order = self.orders.get(accepted.client_ref)
        if order is None:
            return
        order.order_id = accepted.order_id
        order.leaves, order.status = accepted.qty, b"0"
        order.time_ns = accepted.ts_ns
        self.by_id[order.order_id] = order
        self.touched[order.ref] = order
        self.acks += 1
        if order.received_ns:
            now = wall_clock.now_ns()
            self.ack_latency.record(now - order.received_ns)
            self.to_router.record(accepted.ts_ns - order.received_ns)
            self.router_to_ack.record(now - accepted.ts_ns)
        exec_id = event_exec_id(b"A", accepted.seq, order.order_id)
        self._report(order, b"0", exec_id=exec_id, at_ns=accepted.ts_ns)
        if order.cancel_account:  # its session cancels on disconnect, and is gone
            self._cancel_record(order, order.cancel_account, wall_clock.now_ns())

    def _done(self, done: OrderDone, mine: bool = True) -> None:
        """``mine``: the done answers a command of this gateway (a request of ours, maybe)."""
        order = self.by_id.get(done.order_id)
        request = self._pop_request(done.client_ref) if mine else None
        if order is None:
            return
        self._forget(order)
        order.leaves = 0
        if done.reason == DoneReason.FILLED:
            return  # the fill's report already said Filled
        text = {
            DoneReason.EXPIRED: b"expired",
            DoneReason.SELF_TRADE: b"self-trade prevention",
            DoneReason.MASS_CANCELLED: b"mass cancel",
        }.get(done.reason, b"")
        exec_type = b"C" if done.reason == DoneReason.EXPIRED and rested(order) else b"4"
        order.status = exec_type
        extra = field(58, text) if text else b""
        if request is not None and request.cl_ord_id:
            order.name = order.orig_cl_ord_id = order.cl_ord_id
            order.cl_ord_id = request.cl_ord_id
            self._finish(order)  # the cancel's ClOrdID names it too
        exec_id = event_exec_id(b"D", done.seq, order.order_id)
        self._report(order, exec_type, extra, exec_id, at_ns=done.ts_ns)

    def _rejected(self, rejected: Rejected) -> None:
        text = f"{rejected.code.name} ({int(rejected.code)})"
        if rejected.client_ref in self.mass_cancels:  # the router's verdict: OK once durable
            verdict = None if rejected.code == ResultCode.OK else text
            self.answer_mass_cancel(rejected.client_ref, verdict, rejected.ts_ns)
            return
        request = self._pop_request(rejected.client_ref)
        if request is not None:
            if request.cl_ord_id:
                text = refusal_text(
                    request.kind, request.order, rejected.code, self.risk, request.price,
                    self.commissions,
                )  # fmt: skip
                self._send_cancel_reject(
                    request.session, request.kind, request.cl_ord_id, request.order, text,
                    request.orig_cl_ord_id or None, at_ns=rejected.ts_ns,
                )  # fmt: skip
            return
        order = self.orders.get(rejected.client_ref)
        if order is None:
            return
        if order.order_id:  # acknowledged: a refusal under its ref is of some other command
            log.warning("a reject (%s) of order %d's ref after its ack: ignored",
                        text, order.order_id)  # fmt: skip
            return
        self._forget(order)
        order.status, order.leaves = b"8", 0
        text = refusal_text(b"D", order, rejected.code, self.risk, amounts=self.commissions)
        reason = ORD_REJ_REASON.get(rejected.code, 99)
        self.rejects += 1
        self.reject_reasons[reject_slot(reason)] += 1
        # from the event, as every report of one (review 46): the same ExecID when sent again
        self._report(
            order,
            b"8",
            field(103, reason) + field(58, text),
            event_exec_id(b"J", rejected.client_ref, order.ref),
            at_ns=rejected.ts_ns,
        )

    def counters(self) -> list[int]:
        """``procs.common.stats.GATEWAY_COUNTERS``' values but the server's ``to_ring``."""
        return [
            *(self.orders_in, self.acks, self.fills, self.rejects),
            *(*self.ack_latency.values(), *self.reject_reasons),
            *(*self.to_router.values(), *self.router_to_ack.values()),
        ]


def _session_of(key: tuple[int, bytes], _order: Order) -> int:
    return key[0]
