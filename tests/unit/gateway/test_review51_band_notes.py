"""The refusals review 51's matcher rules brought, as a client meets them: a stop-market
whose stop the market has passed by more than the price band, and a stop-limit's limit
collared around its stop while it waits. The REST answer names the value and the rule, as
review 47 made every refusal do."""

from __future__ import annotations

from typing import Any

from procs.gateway import api_errors as codes
from procs.gateway.rest import RestApi
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import LIMIT, client, run
from tests.unit.gateway.test_review47_rest_orders import ORDER, SELL, strict

__all__ = ["strict"]  # review 47's fixture: BTC-USD with a 10 % limit collar


def test_stop_refusals_name_the_band_and_the_price_they_are_judged_around(
    strict: Harness,
) -> None:
    """After a trade at 100.00, a bid resting at 90.00 (band_bps 500, limit_band_bps
    1000): a sell STOP_LOSS at 150.00 triggers on arrival, protected at 142.50, and the best
    bid is below that (it could not trade); a waiting sell
    STOP_LOSS_LIMIT with stopPrice 80.00 and price 60.00 is 25 % from its stop. A waiting
    stop-limit 15 % below the market but within 10 % of its stop is taken."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        try:
            await alice.call("POST", ORDER, **LIMIT, price="100.00", quantity="0.10")
            await bob.call("POST", ORDER, **SELL, price="100.00", quantity="0.10")
            await alice.call("POST", ORDER, **LIMIT, price="90.00", quantity="0.10")  # rests
            stop: dict[str, Any] = {"symbol": "BTC-USD", "side": "SELL", "quantity": "0.10"}
            status, body = await bob.request(
                "POST", ORDER, **stop, type="STOP_LOSS", stopPrice="150.00"
            )
            assert (status, body["code"]) == (400, codes.NEW_ORDER_REJECTED), body
            assert "PRICE_OUT_OF_BAND" in body["msg"] and "bandBps 500" in body["msg"], body
            limit = {**stop, "type": "STOP_LOSS_LIMIT", "timeInForce": "GTC"}
            status, body = await bob.request(
                "POST", ORDER, **limit, stopPrice="80.00", price="60.00"
            )
            assert (status, body["code"]) == (400, codes.NEW_ORDER_REJECTED), body
            assert "limitBandBps 1000" in body["msg"] and "stopPrice" in body["msg"], body
            taken = await bob.call("POST", ORDER, **limit, stopPrice="85.00", price="80.00")
            assert taken["status"] == "NEW", taken
        finally:
            await alice.close()
            await bob.close()

    run(strict, scenario)
