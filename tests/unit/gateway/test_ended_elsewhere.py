"""``EndedElsewhere`` and ``LiveOrder.complete`` alone (review 29's two REST-view faults; the
HTTP scenarios are in ``test_review29_rest_views.py``): the ends of orders the gateway does
not follow are kept, bounded, until the writer has filed them, and a live view that lacks
what its row says is completed from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from config.schema import SymbolConfig
from procs.common.records import OrderDone
from procs.common.types import DoneReason, OrdType, Side, TimeInForce
from procs.gateway.ended_elsewhere import MAX_ENDED_ELSEWHERE, EndedElsewhere
from procs.gateway.history import order_json
from procs.gateway.rest_order_state import LiveOrder, from_done
from procs.gateway.unfiled_orders import UnfiledOrders
from tests.unit.gateway.harness import config
from tests.unit.gateway.rest_rig import ALICE


def _done(order_id: int, seq: int, filled: int = 0) -> OrderDone:
    return OrderDone(
        seq, 1_700_000_000_000_000_000 + seq, 0, 1, 7, ALICE, 1, order_id,
        reason=DoneReason.CANCELLED, filled_qty=filled, leaves_qty=10 - filled,
    )  # fmt: skip


def _row(
    order_id: int, status: int, filled: int, updated_seq: int, *, ord_type: int = OrdType.LIMIT,
    stop: int = 0,
) -> tuple[Any, ...]:  # fmt: skip
    return (
        order_id, ALICE, 1, Side.BUY, ord_type, TimeInForce.GTC, 3_000_000, stop, 10,
        10 - filled, filled, status, 0, 1_000 + order_id, 1_000 + order_id, 0, updated_seq, 0, "",
    )  # fmt: skip


class _Followed:
    def __init__(self, ended: EndedElsewhere) -> None:
        self.ended = ended

    def known(self, order_id: int) -> LiveOrder | None:
        return self.ended.get(order_id)

    def open_orders(self, account: int, symbol: int | None) -> list[LiveOrder]:
        return []


def _symbol(tmp_path: Path) -> SymbolConfig:
    return config("ended", tmp_path).symbols[0]


def test_the_ends_kept_are_bounded_oldest_first_and_go_once_filed(tmp_path: Path) -> None:
    """``MAX_ENDED_ELSEWHERE`` bounds the memory (here a limit of 3): past it the oldest end
    goes; those at or below the writer's checkpoint go, and so does one a row shows."""
    assert MAX_ENDED_ELSEWHERE > 0
    sym = _symbol(tmp_path)
    ended = EndedElsewhere(limit=3)
    for n in range(1, 6):
        ended.add(from_done(_done(n, 100 + n), sym))
    assert len(ended) == 3 and ended.get(2) is None and ended.get(3) is not None
    ended.forget_filed(103)
    assert len(ended) == 2 and ended.get(3) is None
    ended.filed(5, 104)  # a row older than the end: kept
    assert ended.get(5) is not None
    ended.filed(5, 105)
    assert ended.get(5) is None and len(ended) == 1


def test_an_end_is_shown_over_an_unfiled_row_completed_from_it(tmp_path: Path) -> None:
    """An order not followed, filed open, ends (seq 50): ``allOrders`` shows it ended with
    the row's side, price, type and time; once a row has the end, the row itself."""
    sym = _symbol(tmp_path)
    unfiled = UnfiledOrders()
    unfiled.ended.add(from_done(_done(1, 50, filled=4), sym))
    followed = _Followed(unfiled.ended)

    def listed(row: tuple[Any, ...]) -> dict[str, Any]:
        (shown,) = unfiled.merged(
            [row], ALICE, sym, followed, from_id=None, start_ms=None, end_ms=None, limit=10
        )
        return shown

    stale = _row(1, 2, 4, 40)  # filed PARTIALLY_FILLED, before its end
    shown = listed(stale)
    filed = _row(1, 4, 4, 50)  # the end filed: CANCELED
    assert shown == order_json(filed, sym) | {"updateTime": shown["updateTime"]}
    assert len(unfiled.ended) == 1
    assert listed(filed) == order_json(filed, sym) and len(unfiled.ended) == 0


def test_a_stop_followed_from_its_accepted_takes_what_its_row_says(tmp_path: Path) -> None:
    """A stop-limit placed elsewhere, followed from its ``Accepted`` (no type, tif, stop):
    its row completes it, a pending stop, not working; what the view knows stays."""
    sym = _symbol(tmp_path)
    order = LiveOrder(1, ALICE, sym, int(Side.BUY), "", 0, 4_000_000, 0, 10, 10, status="NEW")
    order.seq = 60
    assert order.json()["isWorking"] is True
    order.complete(_row(1, 1, 0, 55, ord_type=OrdType.STOP_LIMIT, stop=4_000_000))
    shown = order.json()
    got = (shown["type"], shown["timeInForce"], shown["stopPrice"], shown["isWorking"])
    assert got == ("STOP_LOSS_LIMIT", "GTC", "40000.00", False)
    assert (order.price, order.seq, order.status) == (4_000_000, 60, "NEW")
