"""``RowOrders`` that also completes the orders the REST core follows from the rows it is
handed, so that ``openOrders`` and the private stream's snapshot, which show a followed order
over its row, show what the row knows and the events did not say.

An order placed through another gateway is followed from its ``Accepted``, which carries
no type, time in force, stop price or iceberg qty: its live view shows them empty, and a
pending stop as a working limit order, though its filed row has them. Every read of an
account's open orders hands its rows to ``remember`` before the views are made
(``RestApi.open_orders_over``); this fills those fields in on the followed order itself
(``LiveOrder.complete``), so its later views and stream events keep them. ``allOrders``
does the same in ``UnfiledOrders.merged``. No memory of its own: it changes orders kept
elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from procs.gateway.rest_order_state import LiveOrder
from procs.gateway.row_orders import RowOrders


class CompletingRowOrders(RowOrders):
    """Called on the gateway's event loop only, as ``RowOrders``."""

    def remember(
        self,
        account: int,
        rows: dict[int, list[Any]],
        known: Callable[[int], LiveOrder | None],
    ) -> None:
        """``RowOrders.remember``, after completing each order ``known`` follows (or whose
        end it kept) from its row."""
        for found in rows.values():
            for row in found:
                order = known(row[0])
                if order is not None and order.account == account:
                    order.complete(row)
        super().remember(account, rows, known)
