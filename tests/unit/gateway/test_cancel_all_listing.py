"""``DELETE openOrders`` lists what ``openOrders`` would have listed before it, as cancelled
by it: never an order that had ended before the request, however it ended and wherever it
was placed, whether or not the database writer has filed that end yet.

The rig is ``unfiled_rig.py``'s (real HTTP, real rings, the router and matcher in process, a
private PostgreSQL, the writer run by hand with ``file_all``).
"""

from __future__ import annotations

from procs.gateway.rest import RestApi
from tests.unit.gateway import unfiled_rig
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import LIMIT, run

harness = unfiled_rig.harness
ORDER, OPEN = "/api/v1/order", "/api/v1/openOrders"


def test_an_order_of_this_api_cancelled_before_a_cancel_all_is_not_listed_by_it(
    harness: Harness,
) -> None:
    """Found (review 30): ALICE's bid, placed through this API and filed open, is cancelled
    through it; before the writer files the cancel, ``openOrders`` lists nothing but
    ``DELETE openOrders`` listed ``[bid CANCELED]``: the listing took every row the
    database shows open unless its end was kept as an order placed elsewhere, so a followed
    order's stale row got in. Now a row is listed only when its order is not known here, is
    still open, or ended while the request ran."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, _bob):
            placed = await alice.call("POST", ORDER, **LIMIT, price="290.00", quantity="0.10")
            await unfiled_rig.file_all(h)  # filed open
            oid = placed["orderId"]
            done = await alice.call("DELETE", ORDER, symbol="BTC-USD", orderId=oid)
            assert done["status"] == "CANCELED", done
            listed = await alice.call("GET", OPEN, symbol="BTC-USD")
            cancelled = await alice.call("DELETE", OPEN, symbol="BTC-USD")
            assert listed == cancelled == [], (listed, cancelled)

    run(h, scenario)


def test_an_order_open_at_a_cancel_all_is_listed_cancelled(harness: Harness) -> None:
    """The other side: an order open when the cancel-all comes is listed, CANCELED."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, _bob):
            placed = await alice.call("POST", ORDER, **LIMIT, price="290.00", quantity="0.10")
            await unfiled_rig.file_all(h)
            cancelled = await alice.call("DELETE", OPEN, symbol="BTC-USD")
            shown = [(o["orderId"], o["status"]) for o in cancelled]
            assert shown == [(placed["orderId"], "CANCELED")], cancelled

    run(h, scenario)
