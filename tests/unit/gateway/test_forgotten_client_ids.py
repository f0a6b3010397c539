"""A query by ``origClientOrderId`` whose order this gateway no longer remembers (past its
newest ``keep_done`` finished orders) answers "status unknown here" (504, -1007), not -2013
"does not exist", which a script takes for "never reached the exchange: send it again"
(review 70); an id never used here is -2013 as ever."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from procs.gateway.rest import RestApi
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import LIMIT, client, rest_exchange, run

ORDER = "/api/v1/order"


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


def test_a_forgotten_orders_client_id_is_unknown_here_not_absent(harness: Harness) -> None:
    answers: dict[str, tuple[int, dict[str, object]]] = {}

    async def scenario(api: RestApi, url: str) -> None:
        api.core.keep_done = 1  # what a busy gateway reaches in a second
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        try:
            sell = {**LIMIT, "side": "SELL"}
            await bob.call("POST", ORDER, **sell, price="300.00", quantity="0.30")
            mine = await alice.call(
                "POST", ORDER, **LIMIT, price="300.00", quantity="0.10", newClientOrderId="mine-1"
            )
            assert mine["status"] == "FILLED", mine
            for _ in range(2):  # finished after it: it is forgotten
                await alice.call(
                    "POST", ORDER, **LIMIT, price="300.00", quantity="0.10", timeInForce="IOC"
                )
            for name in ("mine-1", "never-used"):
                answers[name] = await alice.request(
                    "GET", ORDER, symbol="BTC-USD", origClientOrderId=name
                )
            # BOB never used ALICE's id: absent for him
            answers["bob"] = await bob.request(
                "GET", ORDER, symbol="BTC-USD", origClientOrderId="mine-1"
            )
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)
    status, body = answers["mine-1"]
    assert (status, body["code"]) == (504, -1007), body
    assert "status is unknown here" in str(body["msg"]), body
    for name in ("never-used", "bob"):
        status, body = answers[name]
        assert (status, body["code"]) == (400, -2013), (name, body)
