"""``RestOrderLog.reconcile``: after a restart over new rings whose missed events cannot be
made again, the API's open orders are corrected from the matcher's books, as the FIX ones
are: one in a book takes its fills, what is left and its price; one no longer there is
forgotten (its clientOrderId free again) and left to the database; an amend in flight,
whose answer went with the rings, is dropped."""

from __future__ import annotations

from procs.common.records import NewOrder
from procs.common.types import Side
from procs.core.resting import RestingOrder
from procs.gateway.rest_params import new_order
from tests.unit.gateway.test_rest_orders import ALICE, SYM, accepted, core, limit


def test_the_books_correct_the_apis_open_orders() -> None:
    c, out = core()
    placed = []
    for k, qty in enumerate(("2", "1")):
        c.new_order(new_order(limit("BUY", "100.00", qty), c.instruments), ALICE, 1, 5)
        cmd = out[-1]
        assert isinstance(cmd, NewOrder)
        c.process(accepted(cmd, order_id=7 + k, seq=40 + k))
        placed.append(cmd.client_ref)
    c.end_of_batch()
    first = c.order(ALICE, 7)
    assert first is not None
    c.amend(ALICE, 1, first, 9_950, 200)  # its answer will go with the rings
    assert c.amending(7)
    resting = {
        placed[0]: RestingOrder(
            order_id=7,
            account=ALICE,
            side=Side.BUY,
            price=9_950,
            leaves=120,
            filled=80,
            arrival=1,
            gateway=3,
            session=1,
            client_ref=placed[0],
        ),
    }  # fmt: skip; the second is no longer in the book
    assert c.reconcile(resting, {SYM.id}) == (1, 1)
    assert not c.amending(7)  # the books have its effect: the next amend is taken
    assert (first.cum, first.leaves, first.qty, first.price, first.status) == (
        80, 120, 200, 9_950, "PARTIALLY_FILLED",
    )  # fmt: skip
    assert first.json()["cummulativeQuoteQty"] is None  # its missed fills' prices unknown
    assert c.order(ALICE, 8) is None
    assert [o.order_id for o in c.open_orders(ALICE, None)] == [7]
    assert c.in_use(ALICE, "r100") is first
    assert c.in_use(ALICE, "r101") is None  # the forgotten one's clientOrderId is free
