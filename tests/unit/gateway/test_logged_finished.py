"""A finished order's order-log entry is written encoded and kept so (``LiveOrder.logged``,
``Order.logged``): a compaction copies those bytes instead of making and encoding the entry
again. What the compacted log replays to must not change: the bytes are the entry's, the
same object goes into each compaction, and a change after all makes the entry anew."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import msgspec

from procs.common.records import Accepted, NewOrder, OrderDone
from procs.common.types import DoneReason, Side
from procs.gateway.instruments import Instruments
from procs.gateway.order_log import API_ORDER, FINISHED, OrderLog
from procs.gateway.orders import OrderEntry
from procs.gateway.rest_params import new_order
from procs.gateway.session import Session
from tests.unit.gateway.test_rest_orders import ALICE, GW, SYM, accepted, core, limit
from tests.unit.gateway.test_review_order_log_steps import (
    ACCOUNT,
    SESSION,
    _Connection,
    _new_order,
)
from tests.unit.gateway.test_review_order_log_steps import GW as FIX_GW
from tests.unit.gateway.test_review_order_log_steps import SYM as FIX_SYM


def _plain(entry: object) -> list[object]:
    """An entry as the log reads it back."""
    return cast(list[object], msgspec.msgpack.decode(msgspec.msgpack.encode(entry)))


def test_a_finished_api_order_is_logged_encoded_and_compacted_from_those_bytes(
    tmp_path: Path,
) -> None:
    c, out = core()
    c.new_order(new_order(limit("BUY", "100.00", "1"), c.instruments), ALICE, 1, 5)
    cmd = out.pop()
    assert isinstance(cmd, NewOrder)
    c.process(accepted(cmd, order_id=7, seq=40))
    c.end_of_batch()
    (open_entry,) = c.take_changes()
    assert isinstance(open_entry, tuple)  # open: it changes again, nothing kept
    c.process(OrderDone(41, 0, GW, 1, 0, ALICE, SYM.id, 7, DoneReason.CANCELLED, 0, 100))
    c.end_of_batch()
    (finished,) = c.take_changes()
    order = c.order(ALICE, 7)
    assert order is not None and order.status == "CANCELED"
    assert isinstance(finished, msgspec.Raw) and order.logged is finished
    assert _plain(finished) == [API_ORDER, cmd.client_ref, *order.entry()]
    (dumped,) = c.dump_lazily()
    assert dumped is finished  # copied, not made again
    assert c.dump() == [(API_ORDER, cmd.client_ref, *order.entry())]  # decoded for readers

    log = OrderLog(tmp_path / "orders.log", compact_bytes=1)
    log.load()
    log.write([open_entry, finished])
    log.compact(c.dump_lazily())
    log.close()
    again = OrderLog(tmp_path / "orders.log")
    assert again.load().api_orders == {cmd.client_ref: order.entry()}
    again.close()

    order.update_ms += 1  # a change after all (none is known today): logged anew
    c._touched(order)
    assert order.logged is None
    (changed,) = c.take_changes()
    assert _plain(changed)[2:] == order.entry() and order.logged is changed


def test_a_finished_fix_order_is_logged_encoded_and_compacted_from_those_bytes() -> None:
    entry = OrderEntry(FIX_GW, Instruments([FIX_SYM]), cancel_on_disconnect=False)
    conn = _Connection()
    entry.on_logon(cast(Session, conn), 1)
    entry.on_message(cast(Session, conn), _new_order(b"o1"), 10)
    (ref,) = entry.orders
    entry.process(Accepted(1, 0, FIX_GW, SESSION, ref, ACCOUNT, FIX_SYM.id, 100, Side.BUY,
                           10_000, 100))  # fmt: skip
    entry.take_changes()
    entry.process(
        OrderDone(2, 0, FIX_GW, SESSION, 0, ACCOUNT, FIX_SYM.id, 100, DoneReason.CANCELLED, 0, 100)
    )
    changes = entry.take_changes()
    (finished,) = [e for e in changes if isinstance(e, msgspec.Raw)]
    (order,) = entry.finished.values()
    assert order.logged is finished and _plain(finished)[:2] == [FINISHED, ref]
    assert next(iter(entry.dump_lazily())) is finished
    assert entry.dump()[0] == tuple(_plain(finished))
