"""The REST API's sans-I/O core: order requests -> ring commands, exchange events -> answers,
live orders, balances and private-stream events of the accounts the API serves.

``RestOrders`` sits beside the FIX ``OrderEntry`` in the gateway and draws its ``client_ref``s
from it, so the two never collide and every event reaches both: each takes what is its own.
Requests become records in the shared ``outgoing`` list; answers leave as ``completed``
(client_ref, outcome) pairs that the shell hands to the waiting HTTP requests after each
batch of events, so a new order's answer carries the fills its own command made.

Which orders it knows: those placed through this API, and every order of an account that
uses the API (a request or a private stream in the last ``interest_s``) seen on the matchers'
output rings, whichever gateway or protocol placed it (those placed just before its first
use too, from the recent events kept of the others: ``recent_elsewhere.py``); the open
orders its user placed over FIX on this gateway before that (``fix_orders``), and those the
database showed it open (``rows``) once an event names them; older ones are in PostgreSQL,
which ``trades`` and ``unfiled`` complete with what the writer has not filed yet (the end of
an order placed elsewhere too: ``ended_elsewhere.py``), and whose rows complete what an
order's events did not say (its type when placed elsewhere: ``completing_rows.py``). An
account's balances come from the router (``WatchBalances``: a snapshot, then every change),
watched while the account is of interest.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from config.schema import AssetConfig
from procs.common.records import (
    Accepted,
    Balance,
    CancelOrder,
    Heartbeat,
    MassCancel,
    NewOrder,
    OrderDone,
    Record,
    Rejected,
    Replaced,
    ReplaceOrder,
    Trade,
    Triggered,
)
from procs.common.topology import ROUTER_STARTED_SOURCE
from procs.common.types import DoneReason, client_id_of
from procs.gateway.clordids import Generations
from procs.gateway.commission import Commissions
from procs.gateway.completing_rows import CompletingRowOrders
from procs.gateway.grouped import GroupedDict
from procs.gateway.instruments import Instruments, format_units
from procs.gateway.live_trades import LiveTrades
from procs.gateway.order_ends import OrderEnds
from procs.gateway.order_state import Order
from procs.gateway.recent_elsewhere import RECENT_EVENTS, RecentElsewhere
from procs.gateway.rest_balances import RestBalances
from procs.gateway.rest_catch_up import RestCatchUp, UnfollowedEvents
from procs.gateway.rest_client_ids import RestClientIds
from procs.gateway.rest_interest import RestInterest
from procs.gateway.rest_order_log import RestOrderLog
from procs.gateway.rest_order_state import (
    DONE_STATUS,
    LiveOrder,
    Outcome,
    PendingRequest,
    from_accepted,
    from_done,
    from_fix,
    generated_id,
    ms,
)
from procs.gateway.rest_params import OrderRequest
from procs.gateway.unfiled_orders import UnfiledOrders


class RestOrders(RestOrderLog, RestBalances, RestCatchUp, RestInterest, RestClientIds):
    def __init__(
        self,
        gateway: int,
        instruments: Instruments,
        assets: list[AssetConfig],
        outgoing: list[Record],
        next_ref: Callable[[], int],
        *,
        interest_s: float = 600.0,
        keep_done: int = 10_000,
        recent_events: int = RECENT_EVENTS,
    ) -> None:
        self.gateway = gateway
        self.instruments = instruments
        self.assets = {a.id: a for a in assets}
        #: a fill's commission, under the configured fees (``commission.py`` says why)
        self.commissions = Commissions(instruments.by_id.values(), assets)
        #: the fills of the orders followed here, for myTrades until the writer files them
        self.trades = LiveTrades(self.commissions)
        #: the orders followed here whose last change the writer may not have filed (allOrders)
        self.unfiled = UnfiledOrders()
        #: open orders the database showed, not followed (the followed ones, completed)
        self.rows = CompletingRowOrders(instruments)
        #: the last events of accounts not of interest, for when an interest begins
        self.recent = RecentElsewhere(recent_events)
        #: events of accounts of interest about orders not followed (``rest_catch_up.py``)
        self.unfollowed = UnfollowedEvents()
        self.outgoing = outgoing
        self.next_ref = next_ref
        self.interest_s = interest_s
        self.keep_done = keep_done
        self.interest: dict[int, float] = {}  # account -> monotonic time its interest ends
        self.sessions: dict[int, int] = {}  # account -> a session id it uses (watch headers)
        #: order id -> open order of an account of interest, grouped by account
        self.live: GroupedDict[int, LiveOrder, int] = GroupedDict(_account_of)
        #: (account, clientOrderId) -> the order placed here under it, until it is finished:
        #: a new order may not reuse one in use (``in_use``).
        self.client_ids: dict[tuple[int, str], LiveOrder] = {}
        #: the clientOrderIds used here, as digests (``clordids.api_digest``), the newest
        #: 100k-200k, a window of their own (kept in ``api_ids.log``: review 73, REST load
        #: rolled the FIX ClOrdIDs' window); None: none kept
        self.seen: Generations | None = None
        self.done: OrderedDict[int, LiveOrder] = OrderedDict()  # recently finished
        self.requests: dict[int, PendingRequest] = {}  # client_ref -> request in flight
        self.ends = OrderEnds()  # mass cancels waiting for the orders they listed to end
        self.balances: dict[int, dict[int, tuple[int, int]]] = {}  # account -> asset -> (f, r)
        self._snapshot: dict[int, dict[int, tuple[int, int]]] = {}  # ref -> partial snapshot
        self._watched: dict[int, float] = {}  # account -> monotonic time of the last renewal
        #: account -> when its balances last moved as the router's word said (ms; GET account's
        #: ``updateTime``: the snapshot's time for the first, review 338)
        self.updated_ms: dict[int, int] = {}
        #: Read-your-writes for balances: the newest event seen here that moves an account's
        #: balances, and the newest the router's pushes include (``Balance.seq``). A balance
        #: request waits (briefly) until the second reaches the first.
        self._need: dict[int, int] = {}
        self._have: dict[int, int] = {}
        self._stale: dict[int, list[int]] = {}  # account -> refs waiting for fresh balances
        self._renewing: dict[int, int] = {}  # account -> the ref of its renewal in flight
        self._unconfirmed: set[int] = set()  # held balances a started router has not sent
        #: Streaming account -> the assets whose pushed change waits for ``has_seen``.
        self._unstreamed: dict[int, set[int]] = {}
        #: Streaming account -> the event seq its balances lacked at the last tick.
        self._behind: dict[int, int] = {}
        self.completed: list[tuple[int, Outcome]] = []
        self._answered: list[int] = []  # refs whose decisive event came in this batch
        #: Accounts with a private stream open: only theirs become events.
        self.streaming: set[int] = set()
        #: Private-stream events: (account, event name, data), drained by the shell.
        self.events: list[tuple[int, str, dict[str, Any]]] = []
        #: The batch's balance events, delivered after its reports (``after_batch``): a
        #: balance a fill or a cancel moved comes after the report that moved it, as a
        #: Binance account update follows its executionReport (review 202).
        self.balance_events: list[tuple[int, str, dict[str, Any]]] = []
        #: This gateway's FIX orders of a session (the shell sets it): an account that starts
        #: using the API follows the orders its user placed over FIX here before that.
        self.fix_orders: Callable[[int], Iterable[Order]] = lambda session: ()
        #: the FIX order entry's order of an exchange order id (placed over FIX here), or None
        #: the FIX order entry's order by (order id, its command's client_ref): live, or
        #: finished (one that ended in the batch of its own acceptance: the FIX side took
        #: the batch first)
        self.fix_order: Callable[[int, int], Order | None] = lambda order_id, ref: None
        #: whether a FIX cancel or replace of this gateway's waits for its answer, by order id
        self.fix_pending: Callable[[int], bool] = lambda order_id: False
        #: the FIX order entry's unfinished order of an account by its ClOrdID (or the one
        #: a replace in flight names so), or None
        self.fix_live: Callable[[int, str], Order | None] = lambda account, cl_ord_id: None
        #: whether the API used an id here under a build before 2026-11-27, which kept the
        #: API's ids in the FIX ClOrdIDs' window (``clordids.log``; the shell's)
        self.legacy_used: Callable[[int, str], bool] = lambda account, client_id: False
        #: orders placed through this API that changed since ``take_changes`` (by ``placed``),
        #: and those no longer kept (finished and past ``keep_done``)
        self._changed: dict[int, LiveOrder] = {}
        self._gone: list[int] = []
        self._fills_to_log = []

    # -- requests -----------------------------------------------------------------------------

    def new_order(self, req: OrderRequest, account: int, session: int, now_ns: int) -> int:
        ref = self.next_ref()
        client_id = req.client_order_id or generated_id(
            lambda name: self.in_use(account, name) is not None, ref
        )
        order = LiveOrder(
            0, account, req.symbol, int(req.side), req.type_name, int(req.tif), req.price,
            req.stop_price, req.qty, req.qty, client_order_id=client_id,
            time_ms=ms(now_ns), update_ms=ms(now_ns), display=req.display_qty,
        )  # fmt: skip
        order.ref = order.placed = ref
        self._touched(order)
        self.requests[ref] = PendingRequest("new", account, order)
        self.client_ids[account, order.client_order_id] = order
        new = NewOrder(  # the header listed, not unpacked: a call with * costs ~100 ns
            0, now_ns, self.gateway, session, ref, account, req.symbol.id, 0,
            side=req.side, ord_type=req.ord_type, tif=req.tif, flags=req.flags, stp=req.stp,
            price=req.price, qty=req.qty, stop_price=req.stop_price, display_qty=req.display_qty,
            client_id=client_id_of(client_id.encode("latin-1")),
        )  # fmt: skip
        self.outgoing.append(new)
        return ref

    def cancel(self, account: int, session: int, symbol: int, order_id: int, now_ns: int) -> int:
        """Cancel ``order_id``; the matcher refuses it unless ``account`` owns the order."""
        ref = self.next_ref()
        order = self.live.get(order_id)
        self.requests[ref] = PendingRequest("cancel", account, order)
        # logged: a full restart sends it again; another account's, which the matcher
        # refuses, leaves the owner's logged (review 160)
        if order is not None and order.placed and order.account == account:
            order.cancel_ref = ref
            self._touched(order)
        self.outgoing.append(
            CancelOrder(0, now_ns, self.gateway, session, ref, account, symbol, order_id)
        )
        return ref

    def amend(self, account: int, session: int, order: LiveOrder, price: int, qty: int) -> int:
        """``order``'s new ``price`` and total ``qty`` (fills included); ``Replaced`` answers."""
        ref = self.next_ref()
        self.requests[ref] = PendingRequest("amend", account, order)
        order.amend_ref = ref  # logged: a restarted gateway still refuses a second amend
        self._touched(order)
        amend = ReplaceOrder(
            0, time.time_ns(), self.gateway, session, ref, account, order.symbol.id,
            order.order_id, price, qty,  # no client_id: the filed one stays (this view's may
        )  # fmt: skip  # be stale: an order replaced elsewhere, review 87)
        self.outgoing.append(amend)
        return ref

    def amending(self, order_id: int) -> bool:
        """Whether an amend of order ``order_id`` sent from here waits for its answer."""
        amends = (r.order for r in self.requests.values() if r.kind == "amend")
        return any(o is not None and o.order_id == order_id for o in amends)

    def mass_cancel(self, account: int, session: int, symbol: int, now_ns: int) -> int:
        """Cancel every open order of ``account`` on ``symbol`` (0: every symbol). The
        answer is the router's verdict (the matchers then end the orders)."""
        if account <= 0:  # account 0 would name every account's orders
            raise ValueError(f"mass cancel: account {account} must be positive")
        ref = self.next_ref()
        self.requests[ref] = PendingRequest("mass", account)
        self.outgoing.append(MassCancel(0, now_ns, self.gateway, session, ref, account, symbol))
        return ref

    def abandon(self, ref: int) -> None:
        """The HTTP request gave up waiting (timeout). A new order, cancel, amend or mass
        cancel stays in ``requests``: its answer still comes (a new order's must still turn
        the order placed under its clientOrderId into the exchange's, an orderId, NEW or
        REJECTED); nobody waits for it any more. A balance request goes, from the refs
        waiting on its account's next push too (an account no push comes for again would
        keep every one that timed out)."""
        request = self.requests.get(ref)
        if request is not None and request.kind == "balances":
            del self.requests[ref]
            self._stop_waiting(request.account, ref)
        self.ends.abandon(ref)

    # -- queries ------------------------------------------------------------------------------

    def open_orders(self, account: int, symbol: int | None) -> list[LiveOrder]:
        mine = self.live.of(account)
        return mine if symbol is None else [o for o in mine if o.symbol.id == symbol]

    def pending_orders(self, account: int) -> list[LiveOrder]:
        """``account``'s new orders placed here whose answer has not come (no orderId yet),
        in the order they were placed."""
        return [
            r.order
            for _ref, r in sorted(self.requests.items())
            if r.kind == "new" and r.account == account and r.order is not None
            and not r.order.order_id
        ]  # fmt: skip

    def known(self, order_id: int) -> LiveOrder | None:
        """Any order this core follows (for merging with the database's view), or the end of
        one it does not follow that the writer may not have filed (``ended_elsewhere.py``)."""
        return (
            self.live.get(order_id) or self.done.get(order_id) or self.unfiled.ended.get(order_id)
        )

    # -- events -------------------------------------------------------------------------------

    def process(self, event: Record) -> None:
        kind = type(event)
        if kind is Trade:
            trade: Trade = event  # type: ignore[assignment]
            # an order placed here is followed past its account's interest (``live``)
            maker = self._fill(
                trade.maker_order_id, trade.maker_account, trade, trade.maker_leaves, True
            )
            taker = self._fill(
                trade.taker_order_id, trade.taker_account, trade, trade.taker_leaves, False
            )
            if not (maker and taker):  # a side not followed, of an account not of interest
                self.recent.passed(trade)
            if self.interest:  # the newest seq read, kept: the rings are read in turn
                need = self._need  # (an older seq of another matcher's ring may follow)
                for account in (trade.maker_account, trade.taker_account):
                    if account in self.interest and need.get(account, 0) < trade.seq:
                        need[account] = trade.seq
            return
        if kind is OrderDone or kind is Replaced or kind is Rejected or kind is Accepted:
            moved: OrderDone = event  # type: ignore[assignment]
            account, seq = moved.account, moved.seq  # the router settles it too
            if seq and account in self.interest and self._need.get(account, 0) < seq:
                self._need[account] = seq
        if kind is Accepted:
            self._accepted(event)  # type: ignore[arg-type]
        elif kind is OrderDone:
            self._done(event)  # type: ignore[arg-type]
        elif kind is Rejected:
            self._rejected(event)  # type: ignore[arg-type]
        elif kind is Balance:
            self._balance(event)  # type: ignore[arg-type]
        elif kind is Replaced:
            self._replaced(event)  # type: ignore[arg-type]
        elif kind is Triggered:
            self._triggered(event)  # type: ignore[arg-type]
        elif kind is Heartbeat and event.source == ROUTER_STARTED_SOURCE:  # type: ignore[attr-defined]
            self.router_started()

    def _own_answer(self, order: LiveOrder, seq: int) -> PendingRequest | None:
        """The new-order request ``order`` is still to answer, when the event of ``seq`` is
        of its own command; None otherwise, the answer then frozen as the order stood before
        this event: another command's fill, cancel, trigger or replace in the same read is
        not the new order's answer (review 47)."""
        request = self.requests.get(order.ref) if order.ref else None
        if request is None or seq == request.seq:
            return request
        if request.outcome.view is None and request.outcome.order is not None:
            request.outcome.view = order.json()
        return None

    def _triggered(self, triggered: Triggered) -> None:
        oid = triggered.order_id
        # an order followed from its database row too, as the other events take it (review
        # 44: a stop known from its row alone lost its trigger, and read as not working),
        # whatever the row's seq: a row keeps no trigger (seq 0), and the writer may have
        # filed this one before this gateway read it, as ``follow_kept`` takes it
        order = self.live.get(oid) or self.rows.take(triggered.account, oid, 0)
        if order is not None:
            self._own_answer(order, triggered.seq)
            self.live[oid] = order
            order.triggered = True
            order.update_ms = ms(triggered.ts_ns)  # as the writer stamps the row
            self.unfiled.changed(order, triggered.seq)
            self._touched(order)
            self._report(order, "TRIGGERED", triggered.ts_ns)
        elif triggered.account not in self.interest:
            self.recent.passed(triggered)
        else:
            self.unfollowed.keep(triggered.account, triggered)

    def _replaced(self, replaced: Replaced) -> None:
        oid = replaced.order_id
        order = self.live.get(oid) or self.rows.take(replaced.account, oid, replaced.seq)
        if order is not None:
            self._own_answer(order, replaced.seq)
            self.live[oid] = order
            if (fix := self._fix_order_of(replaced)) is not None:  # a FIX replace renames it
                order.client_order_id = (fix.name or fix.cl_ord_id).decode("latin-1")
            elif replaced.gateway != self.gateway and not order.placed:  # renamed there, maybe:
                order.client_order_id = ""  # its row says (``complete``, review 87)
            order.price, order.leaves = replaced.price, replaced.qty
            order.qty = order.cum + replaced.qty
            if not replaced.qty:  # a total at or below what filled: the order is filled
                order.status = "FILLED"
            order.update_ms = ms(replaced.ts_ns)
            self.unfiled.changed(order, replaced.seq)
            self._touched(order)
            self._report(order, "REPLACED", replaced.ts_ns)
        elif replaced.account not in self.interest:
            self.recent.passed(replaced)
        else:
            self.unfollowed.keep(replaced.account, replaced)
        request = self.requests.get(replaced.client_ref)
        if replaced.gateway == self.gateway and request is not None and request.kind == "amend":
            request.order = request.outcome.order = order or request.order
            self._answered.append(replaced.client_ref)

    def _fix_order_of(self, event: Accepted | Replaced) -> Order | None:
        """The FIX order entry's order an event of this gateway is about, if placed over FIX."""
        if event.gateway != self.gateway:
            return None
        return self.fix_order(event.order_id, event.client_ref)

    def end_of_batch(self) -> None:
        """The batch's events are in: answer the requests whose decisive event came."""
        for ref in self._answered:
            request = self.requests.pop(ref, None)
            if request is None:
                continue
            outcome = request.outcome
            if outcome.order is not None and outcome.view is None:  # (or frozen at ``_fill``)
                outcome.view = outcome.order.json()
            self.completed.append((ref, outcome))
            if request.order is not None and request.order.ref == ref:
                request.order.ref = 0
                self._touched(request.order)
            if request.order is not None and request.order.amend_ref == ref:
                request.order.amend_ref = 0
                self._touched(request.order)
            if request.order is not None and request.order.cancel_ref == ref:
                request.order.cancel_ref = 0
                self._touched(request.order)
        self._answered.clear()
        self.completed += [(ref, Outcome()) for ref in self.ends.take()]

    def _accepted(self, accepted: Accepted) -> None:
        request = (
            self.requests.get(accepted.client_ref) if accepted.gateway == self.gateway else None
        )
        if request is not None and request.kind == "new" and request.order is not None:
            order = request.order
            order.order_id = accepted.order_id
            self.note_used(order.account, order.client_order_id)  # taken: no refused one
            # the exchange's time, as the database keeps it (not this gateway's at arrival)
            order.time_ms = order.update_ms = ms(accepted.ts_ns)
            self._answered.append(accepted.client_ref)
            request.outcome.order = order
            request.seq = accepted.seq
        elif accepted.account in self.interest:
            sym = self.instruments.by_id.get(accepted.symbol)
            if sym is None:
                return
            fix = self._fix_order_of(accepted)
            if fix is not None:  # placed over FIX here: its ClOrdID, type and tif are known
                order = from_fix(fix, accepted.account)
                # as of its acceptance: the FIX side may have taken this batch's fills of it
                # already, and they come here next (counted once)
                order.cum = order.notional = 0
            else:
                order = from_accepted(accepted, sym)
        else:  # in case its account's interest begins before the writer files it
            self.recent.passed(accepted)
            return
        order.leaves = accepted.qty
        order.status = "NEW"
        order.update_ms = ms(accepted.ts_ns)
        self.live[order.order_id] = order
        self.unfiled.changed(order, accepted.seq)
        self._touched(order)
        self._report(order, "NEW", accepted.ts_ns)

    def _fill(self, order_id: int, account: int, trade: Trade, leaves: int, maker: bool) -> bool:
        """One side of ``trade``. False: its order is not followed, its account not of
        interest (``process`` keeps the trade in ``recent``)."""
        order = self.live.get(order_id)
        if order is None:
            if (order := self.rows.take(account, order_id, trade.seq)) is None:
                if account not in self.interest:
                    return False
                self.unfollowed.keep(account, trade, maker)
                return True
            self.live[order_id] = order
        # An order followed from a database row the writer had not brought up to date may
        # have missed a fill or a replace in between, which the trade's leaves cannot tell
        # apart (either leaves qty - leaves above the count): the count goes on from the
        # row, the notional is unknown, and its end brings the matcher's count.
        request = self._own_answer(order, trade.seq)
        if order.qty - leaves != order.cum + trade.qty:
            order.notional_known = False
        order.cum += trade.qty
        order.notional += trade.price * trade.qty
        order.leaves = leaves
        if order.stop_price:  # a stop that trades was triggered, whatever was missed
            order.triggered = True
        order.status = "FILLED" if leaves == 0 else "PARTIALLY_FILLED"
        order.update_ms = ms(trade.ts_ns)
        self._touched(order)
        self.unfiled.changed(order, trade.seq)
        s = order.symbol
        fee = self.commissions.fee(s.id, trade.price, trade.qty, maker)  # myTrades' too
        kept = self.trades.add(trade, order.account, order_id, maker, fee)
        if kept is not None and order.placed:  # into the order log with it (rest_order_log)
            self._fills_to_log.append((order.placed, kept))
        fill = {
            "price": format_units(trade.price, s.price_decimals).decode(),
            "qty": format_units(trade.qty, s.qty_decimals).decode(),
            "tradeId": trade.trade_id,
            "isMaker": maker,
        }
        commission = None if fee is None else self.commissions.formatted(s.id, fee)
        if commission is not None:
            fill["commission"], fill["commissionAsset"] = commission[0].decode(), commission[1]
        if request is not None:  # its own command's fills go into the answer
            request.outcome.fills.append(fill)
        self._report(order, "TRADE", trade.ts_ns, fill)
        return True

    def _done(self, done: OrderDone) -> None:
        mine = done.gateway == self.gateway
        request = self.requests.get(done.client_ref) if mine else None
        oid = done.order_id
        order = self.live.pop(oid, None) or self.rows.take(done.account, oid, done.seq)
        if order is not None:
            self._own_answer(order, done.seq)
            self._finished(order)
            order.cum, order.leaves = done.filled_qty, 0  # the matcher's count, as the writer's
            order.status = DONE_STATUS.get(done.reason, "CANCELED")
            order.update_ms = ms(done.ts_ns)
            self.done[order.order_id] = order
            self.unfiled.changed(order, done.seq)
            if not order.placed:  # placed elsewhere: ``ended_elsewhere.py`` says why
                self.unfiled.ended.add(order)
            self._touched(order)
            while len(self.done) > self.keep_done:
                _, old = self.done.popitem(last=False)
                if old.placed:
                    self._changed.pop(old.placed, None)
                    self._gone.append(old.placed)
            if done.reason == DoneReason.SELF_TRADE:  # the venue's execution type for it
                self._report(order, "TRADE_PREVENTION", done.ts_ns)
            elif done.reason != DoneReason.FILLED:
                self._report(order, order.status, done.ts_ns)
        else:
            self.ends.unfollowed(done)
            if done.account in self.interest:  # its row may show it open until filed
                sym = self.instruments.by_id.get(done.symbol)
                if sym is not None:
                    self.unfiled.ended.add(from_done(done, sym))
                self.unfollowed.keep(done.account, done)
            else:  # in case its interest begins before the writer files it
                self.recent.passed(done)
        if request is not None and request.kind == "cancel":
            request.order = request.outcome.order = order or request.order
            if request.outcome.order is None:  # not followed here: what the event says
                sym = self.instruments.by_id.get(done.symbol)
                if sym is not None:  # its fills' notional not known here (0 if none)
                    request.outcome.order = LiveOrder(
                        done.order_id, done.account, sym, 0, "", 0, 0, 0,
                        done.filled_qty + done.leaves_qty, 0, done.filled_qty,
                        status=DONE_STATUS.get(done.reason, "CANCELED"),
                        notional_known=not done.filled_qty,
                    )  # fmt: skip
            self._answered.append(done.client_ref)

    def _rejected(self, rejected: Rejected) -> None:
        if rejected.gateway != self.gateway:
            return
        request = self.requests.get(rejected.client_ref)
        if request is None:
            return
        request.outcome.code = rejected.code
        self._answered.append(rejected.client_ref)
        order = request.order
        if request.kind == "new" and order is not None:
            order.status = "REJECTED"
            order.order_id = rejected.order_id
            order.reject = f"{rejected.code.name} ({int(rejected.code)})"
            if rejected.ts_ns:  # the exchange's time, as its row and an accepted order's
                order.time_ms = order.update_ms = ms(rejected.ts_ns)
            request.outcome.order = order
            self.live.pop(order.order_id, None)
            self._finished(order)
            if order.placed:  # never kept as a finished order (its id may be 0): out of the log
                self._changed.pop(order.placed, None)
                self._gone.append(order.placed)
            self._report(order, "REJECTED", rejected.ts_ns)
        elif request.kind == "amend" and order is not None and order.order_id:
            # the writer files the refused replace too (the row's seq moves, nothing else):
            # the live view stays as new as the row, so allOrders keeps showing it
            self.unfiled.changed(order, rejected.seq)

    def _finished(self, order: LiveOrder) -> None:
        """``order`` is no longer open: its clientOrderId is free again."""
        key = (order.account, order.client_order_id)
        if self.client_ids.get(key) is order:
            del self.client_ids[key]
        if self.ends:
            self.ends.finished(order.order_id)

    def _report(
        self, order: LiveOrder, exec_type: str, ts_ns: int, fill: dict[str, Any] | None = None
    ) -> None:
        if order.account in self.streaming:
            data = order.report_json(exec_type, ts_ns, fill)
            self.events.append((order.account, "executionReport", data))


def _account_of(_order_id: int, order: LiveOrder) -> int:
    return order.account
