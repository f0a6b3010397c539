"""Cancel on disconnect: the orders of a session that is gone are cancelled by the gateway
itself, each with a cancel of its own making (no ClOrdID, no client to answer). The router
never holds a cancel back for the account's command rate (review 48: refused past it, such
cancels were dropped, and the gone session's orders stayed in the book).

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
    requests: dict[int, Request]
    touched: dict[int, Order | Request | MassCancelRequest | None]
    outgoing: list[Record]
    next_ref: Callable[[], int]

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
        ref = self.next_ref()
        self.requests[ref] = self.touched[ref] = Request(b"F", order.session, b"", order)
        self.outgoing.append(
            CancelOrder(
                0, now_ns, self.gateway, order.session, ref, account, order.symbol.id,
                order.order_id,
            )
        )  # fmt: skip
