"""Cancel on disconnect: the orders of a session that is gone are cancelled by the gateway
itself, each with a cancel of its own making (no ClOrdID, no client to answer).

The router counts those cancels against the account's command rate like any other. One it
refuses for that rate (``ACCOUNT_RATE_LIMITED``: a trader with more open orders than the
rate takes in a second, or a gateway restart cancelling every such session at once) is
sent again by the timers' next pass, once a second, while its order is live (review 48:
refused, they were dropped, and the orders of a session gone stayed in the book).

A mixin of ``OrderEntry`` (``orders.py``), which owns the state it names.
"""

from __future__ import annotations

from collections.abc import Callable

from procs.common.records import CancelOrder, Record
from procs.gateway.grouped import GroupedDict
from procs.gateway.order_state import MassCancelRequest, Order, Request


class DisconnectCancels:
    gateway: int
    live: GroupedDict[tuple[int, bytes], Order, int]
    by_id: dict[int, Order]
    requests: dict[int, Request]
    touched: dict[int, Order | Request | MassCancelRequest | None]
    outgoing: list[Record]
    next_ref: Callable[[], int]
    #: Orders whose cancel the router refused for the account's rate: sent again.
    _cancels_refused: list[Order]

    def cancel_session_orders(self, session_id: int, account: int, now_ns: int) -> int:
        """Cancel the session's orders (one not yet acknowledged once it is); how many."""
        mine = self.live.of(session_id)
        for order in mine:
            if order.order_id:
                self._cancel_record(order, account, now_ns)
            else:
                order.cancel_account = account
        return len(mine)

    def _cancel_record(self, order: Order, account: int, now_ns: int) -> None:
        order.cancel_account = account  # (a refused one is sent again for it)
        ref = self.next_ref()
        self.requests[ref] = self.touched[ref] = Request(b"F", order.session, b"", order)
        self.outgoing.append(
            CancelOrder(
                0, now_ns, self.gateway, order.session, ref, account, order.symbol.id,
                order.order_id,
            )
        )  # fmt: skip

    def cancel_refused(self, order: Order) -> None:
        """The router refused a cancel of the gateway's own for the account's rate."""
        self._cancels_refused.append(order)

    def cancel_again(self, now_ns: int) -> int:
        """Send again the refused cancels whose orders are live (the timers' pass); how many."""
        refused, self._cancels_refused = self._cancels_refused, []
        again = 0
        for order in refused:
            if self.by_id.get(order.order_id) is order and order.cancel_account:
                self._cancel_record(order, order.cancel_account, now_ns)
                again += 1
        return again
