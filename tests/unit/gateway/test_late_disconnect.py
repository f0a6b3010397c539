"""An old connection's end that comes after its user logged on again (its transport closed
late) does not cancel the orders of the new connection, whatever cancel on disconnect says."""

from __future__ import annotations

from typing import cast

from config.schema import SymbolConfig
from procs.common.records import CancelOrder
from procs.gateway.fix import FixMessage
from procs.gateway.instruments import Instruments
from procs.gateway.orders import OrderEntry
from procs.gateway.session import Session

SYM = SymbolConfig(name="BTC-USD", id=1, price_decimals=2, qty_decimals=2, base="BTC")


class _Connection:
    session_id = 5
    account = 7
    user = None

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes]] = []

    def send(self, msg_type: bytes, body: bytes, now_ns: int) -> None:
        self.sent.append((msg_type, body))


def _order(cl_ord_id: bytes) -> FixMessage:
    tags = [35, 11, 55, 54, 60, 40, 38, 44, 59]
    values = [b"D", cl_ord_id, b"BTC-USD", b"1", b"20260101-00:00:00", b"2", b"1", b"100", b"1"]
    return FixMessage.of(b"", tags, values)


def test_a_late_end_of_an_old_connection_leaves_the_new_ones_orders() -> None:
    entry = OrderEntry(3, Instruments([SYM]), cancel_on_disconnect=True)
    old, new = _Connection(), _Connection()
    entry.on_logon(cast(Session, old), 1)
    entry.on_logon(cast(Session, new), 2)  # logged on again before the old one's end came
    entry.on_message(cast(Session, new), _order(b"o1"), 3)
    (order,) = entry.live.values()
    order.order_id = 11  # acknowledged: a cancel would go out at once
    entry.on_disconnect(cast(Session, old), 4)
    assert not [c for c in entry.outgoing if isinstance(c, CancelOrder)]
    assert entry.sessions[5] is cast(Session, new)
    entry.on_disconnect(cast(Session, new), 5)  # its own end still cancels
    assert [c.order_id for c in entry.outgoing if isinstance(c, CancelOrder)] == [11]
