"""The REST API's open orders by order id, indexed by account as well.

``openOrders``, a cancel-all and forgetting an account read one account's orders. Scanning
every order the gateway follows for them cost each such request time in proportion to all
the accounts' orders (100k open orders: about 5 ms a request, on the one event loop); the
index makes it one account's.
"""

from __future__ import annotations

from typing import Any

from procs.gateway.rest_order_state import LiveOrder

_MISSING: Any = object()


class LiveOrders(dict[int, LiveOrder]):
    """A dict of order id -> ``LiveOrder`` whose writes (``[]=``, ``del``, ``pop``, ``clear``,
    the only ones its users make) keep ``by_account`` in step."""

    def __init__(self) -> None:
        super().__init__()
        self.by_account: dict[int, dict[int, LiveOrder]] = {}

    def of(self, account: int) -> list[LiveOrder]:
        """``account``'s orders, oldest entry first."""
        return list(self.by_account.get(account, {}).values())

    def __setitem__(self, order_id: int, order: LiveOrder) -> None:
        old = self.get(order_id)
        if old is not None and old.account != order.account:
            self._unindex(order_id, old)
        super().__setitem__(order_id, order)
        self.by_account.setdefault(order.account, {})[order_id] = order

    def __delitem__(self, order_id: int) -> None:
        order = self[order_id]
        super().__delitem__(order_id)
        self._unindex(order_id, order)

    def pop(self, order_id: int, default: Any = _MISSING) -> Any:
        order = super().pop(order_id, _MISSING)
        if order is _MISSING:
            if default is _MISSING:
                raise KeyError(order_id)
            return default
        self._unindex(order_id, order)
        return order

    def clear(self) -> None:
        super().clear()
        self.by_account.clear()

    def _unindex(self, order_id: int, order: LiveOrder) -> None:
        mine = self.by_account.get(order.account)
        if mine is not None:
            mine.pop(order_id, None)
            if not mine:
                del self.by_account[order.account]

    def setdefault(self, *_: object) -> LiveOrder:
        raise NotImplementedError("LiveOrders keeps an index: set items one at a time")

    def update(self, *_: object, **__: object) -> None:
        raise NotImplementedError("LiveOrders keeps an index: set items one at a time")

    def popitem(self) -> tuple[int, LiveOrder]:
        raise NotImplementedError("LiveOrders keeps an index: pop by order id")
