"""``OrderMemory.reconcile`` after a restart over new rings: an order the books show with
another price, quantity or stop price than the gateway last knew (a replace it never read:
sent through another gateway's REST API, or its own request in flight) takes the books'
terms and is restated to its client, as a missed fill is; one the books show as it was is
not."""

from __future__ import annotations

from collections import OrderedDict

from config.schema import SymbolConfig
from procs.common.types import OrdType, Side, TimeInForce
from procs.core.resting import RestingOrder
from procs.gateway.grouped import GroupedDict
from procs.gateway.order_memory import OrderMemory
from procs.gateway.order_state import Order
from procs.gateway.orders import _session_of

SYM = SymbolConfig(name="BTC-USD", id=1, price_decimals=2, qty_decimals=2, base="BTC")


class Memory(OrderMemory):
    def __init__(self) -> None:
        self.orders = {}
        self.by_id = {}
        self.requests = {}
        self.mass_cancels = {}
        self.live = GroupedDict(_session_of)
        self.touched = {}
        self.finished = {}
        self.finished_orders = OrderedDict()
        self.finished_changes = []
        self._next_ref = 0


def order(ref: int, ord_type: OrdType = OrdType.LIMIT, stop: int = 0) -> Order:
    return Order(
        ref=ref, session=3, cl_ord_id=b"c%d" % ref, orig_cl_ord_id=b"", symbol=SYM,
        side=Side.BUY, ord_type=ord_type, tif=TimeInForce.GTC, price=10_000,
        stop_price=stop, qty=200, order_id=ref + 100, leaves=200, status=b"0",
    )  # fmt: skip


def resting(ref: int, price: int, leaves: int, filled: int = 0, stop: int = 0) -> RestingOrder:
    return RestingOrder(
        order_id=ref + 100, account=7, side=Side.BUY, price=price, leaves=leaves,
        filled=filled, arrival=ref, gateway=1, session=3, client_ref=ref, stop_price=stop,
    )  # fmt: skip


def test_a_replace_the_gateway_missed_is_taken_and_restated() -> None:
    memory = Memory()
    same, repriced, resized, filled, restopped = (
        order(1), order(2), order(3), order(4), order(5, OrdType.STOP_LIMIT, stop=9_000)
    )  # fmt: skip
    for o in (same, repriced, resized, filled, restopped):
        memory.orders[o.ref] = o
    books = {
        1: resting(1, 10_000, 200),
        2: resting(2, 9_950, 200),
        3: resting(3, 10_000, 150),
        4: resting(4, 10_000, 150, filled=50),
        5: resting(5, 10_000, 200, stop=9_100),
    }
    changed, forgotten = memory.reconcile(books, {SYM.id})
    assert forgotten == 0
    assert [o.ref for o in changed] == [2, 3, 4, 5]
    assert (repriced.price, repriced.qty) == (9_950, 200)
    assert (resized.qty, resized.leaves) == (150, 150)
    assert (filled.cum, filled.qty, filled.notional) == (50, 200, 50 * 10_000)
    assert restopped.stop_price == 9_100
    assert (same.price, same.qty, same.cum) == (10_000, 200, 0)
