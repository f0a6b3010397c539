"""Review 227's fault at the gateways: once ``iceberg_parts`` is lowered, an iceberg resting
with more slices than the new limit could not be cut at its price: the matcher refused it
(``Book._replace``, ``tests/unit/matcher/test_review227_hidden_liquidity.py``) and so did the
gateways' copies of its check, a FIX G (``order_fields.amounts``) and a REST amend
(``rest_amend.py``). Both edges now ask ``order_fields.cut_in_place``: a replace no larger
where the order is (its price, its total or less) is taken whatever the parts; a larger one,
or one at another price, is judged as a new order is.
"""

from __future__ import annotations

import msgspec
import pytest

from procs.common.types import OrdType, Side, TimeInForce
from procs.gateway import order_fields as of
from procs.gateway.fix import FixMessage
from procs.gateway.order_state import Order
from tests.unit.gateway.test_review112_readme_fix2 import SYM, message, order

PARTS = 10
LOWERED = msgspec.structs.replace(SYM, iceberg_parts=PARTS)  # as an operator's change makes it


def resting(qty: int, display: int, price: int = 10_000, cum: int = 0) -> Order:
    """A FIX iceberg at ``price`` (100.00) with total ``qty`` and slice ``display`` (lots)."""
    return Order(
        1, 5, b"o", b"", SYM, Side.BUY, OrdType.LIMIT, TimeInForce.GTC, price, 0, qty,
        order_id=9, cum=cum, leaves=qty - cum, display=display, status=b"0",
    )  # fmt: skip


def g(qty: str, price: str = "100") -> FixMessage:
    """A G of the iceberg above: its MaxFloor (1.00), ``qty`` and ``price``."""
    pairs = [(t, v) for t, v in order("n") if t not in (38, 44)]
    return message("G", (41, "o"), *pairs, (38, qty), (44, price), (111, "1"))


def test_a_cut_in_place_is_no_larger_at_the_same_price() -> None:
    """``cut_in_place``: the same price and a total at most the order's; not a larger one,
    nor one at another price (it enters the book anew)."""
    was = resting(qty=5_000, display=100)
    assert of.cut_in_place(was, 10_000, 4_000) and of.cut_in_place(was, 10_000, 5_000)
    assert not of.cut_in_place(was, 10_000, 5_100)
    assert not of.cut_in_place(was, 9_900, 4_000)
    assert not of.cut_in_place(None, 10_000, 4_000)  # a new order: judged as one


def test_a_g_cuts_an_iceberg_past_lowered_parts_at_its_price() -> None:
    """Scenario: an iceberg of 50.00 showing 1.00 (50 slices) rests; ``iceberg_parts`` is
    lowered to 10. Expected: a G to 40.00 at its price is taken (40 slices, fewer than it
    had); to 60.00, or to 40.00 at another price, is refused naming the parts.
    Was (fixed): every G of it was refused, the cut too."""
    was = resting(qty=5_000, display=100)
    taken = of.amounts(g("40"), LOWERED, OrdType.LIMIT, filled=0, replacing=was)
    assert taken == (10_000, 0, 4_000, 100)
    for qty, price in (("60", "100"), ("40", "99")):
        refused = of.amounts(g(qty, price), LOWERED, OrdType.LIMIT, filled=0, replacing=was)
        assert isinstance(refused, of.Fault), (qty, price)
        assert f"at most {PARTS}" in refused.text


@pytest.mark.parametrize("cum", [0, 1_000])
def test_a_d_is_judged_by_the_parts_as_ever(cum: int) -> None:
    """A new order (no ``replacing``) of 40 slices is refused at 10 parts, whatever it
    would have filled."""
    d = message("D", *[(t, v) for t, v in order("n") if t != 38], (38, "40"), (111, "1"))
    refused = of.amounts(d, LOWERED, OrdType.LIMIT, filled=cum)
    assert isinstance(refused, of.Fault) and f"at most {PARTS}" in refused.text
