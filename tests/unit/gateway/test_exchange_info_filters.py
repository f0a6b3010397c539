"""``exchangeInfo``'s Binance filters describe what the exchange takes: a client that rounds
an order by ``PRICE_FILTER``, ``LOT_SIZE`` and ``NOTIONAL`` before it sends it is never
refused for its price or size, and one at the far side of a bound is (real HTTP in front of
real rings: ``rest_rig.py``; BTC-USD with tick 0.05, lot 0.10, sizes 0.15 to 10.05 and a
largest notional of 100 dollars)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema_rs
import msgspec
import pytest

from config.schema import RingexConfig
from procs.gateway.exchange_info import FILTER_TYPES
from procs.gateway.instruments import MAX_INT64
from procs.gateway.openapi import document
from procs.gateway.rest import RestApi
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import LIMIT, client, rest_exchange, run
from tests.unit.gateway.test_review47_rest_public import _get

ORDER = "/api/v1/order"


def _bounded(cfg: RingexConfig) -> RingexConfig:
    btc = msgspec.structs.replace(cfg.symbols[0], lot=10, min_qty=15, max_qty=1005)
    risk = msgspec.structs.replace(cfg.risk, max_order_notional=100 * 10**6)  # $100
    return msgspec.structs.replace(cfg, symbols=[btc], risk=risk)


@pytest.fixture
def bounded(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path, reshape=_bounded)


def test_the_filters_name_the_symbols_bounds_under_binances_names(bounded: Harness) -> None:
    schema = jsonschema_rs.validator_for(
        {**document(bounded.cfg), "$ref": "#/components/schemas/ExchangeInfo"}
    )

    async def scenario(api: RestApi, url: str) -> None:
        status, body = await _get(url, "/api/v1/exchangeInfo")
        assert status == 200, body
        schema.validate(body)
        assert body["exchangeFilters"] == [
            {"filterType": "EXCHANGE_MAX_NUM_ORDERS", "maxNumOrders": 100}
        ]
        (btc,) = body["symbols"]
        filters = {f["filterType"]: f for f in btc["filters"]}
        assert sorted(filters) == sorted(FILTER_TYPES)
        top = MAX_INT64 // 5 * 5
        assert filters["PRICE_FILTER"] == {
            "filterType": "PRICE_FILTER",
            "minPrice": "0.05",
            "maxPrice": f"{top // 100}.{top % 100:02d}",
            "tickSize": "0.05",
        }
        lot = {"minQty": "0.20", "maxQty": "10.00", "stepSize": "0.10"}  # multiples of the lot
        assert filters["LOT_SIZE"] == {"filterType": "LOT_SIZE", **lot}
        assert filters["MARKET_LOT_SIZE"] == {"filterType": "MARKET_LOT_SIZE", **lot}
        assert filters["ICEBERG_PARTS"] == {"filterType": "ICEBERG_PARTS", "limit": 100}
        assert filters["NOTIONAL"]["maxNotional"] == "100.000000"  # the quote's decimals
        assert (btc["baseAssetPrecision"], btc["quoteAssetPrecision"]) == (6, 6)
        assert btc["icebergAllowed"] and not (btc["cancelReplaceAllowed"] or btc["ocoAllowed"])
        assert btc["allowedSelfTradePreventionModes"] == [
            "EXPIRE_BOTH", "EXPIRE_MAKER", "EXPIRE_TAKER", "NONE"
        ]  # fmt: skip

    run(bounded, scenario)


def test_an_order_inside_the_filters_is_taken_and_one_past_them_refused(
    bounded: Harness,
) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        status, body = await _get(url, "/api/v1/exchangeInfo")
        filters = {f["filterType"]: f for f in body["symbols"][0]["filters"]}
        lot, notional = filters["LOT_SIZE"], Decimal(filters["NOTIONAL"]["maxNotional"])
        step, least, most = (Decimal(lot[k]) for k in ("stepSize", "minQty", "maxQty"))
        alice = await client(url, "ALICE", "alice-pw")

        async def place(price: Decimal, qty: Decimal) -> tuple[int, Any]:
            return await alice.request(
                "POST", ORDER, **LIMIT, price=str(price), quantity=str(qty), timeInForce="IOC"
            )

        try:
            for price, qty in ((Decimal("1.00"), least), (Decimal("1.00"), most),
                               (notional / most, most)):  # fmt: skip
                status, answer = await place(price, qty)
                assert status == 200, (price, qty, answer)
            tick = Decimal(filters["PRICE_FILTER"]["tickSize"])
            refused = [
                (Decimal("1.00") + tick / 5, least),  # off the tick
                (Decimal("1.00"), least - step),  # below minQty
                (Decimal("1.00"), most + step),  # above maxQty
                (notional / most + tick, most),  # above maxNotional
            ]
            for price, qty in refused:
                status, answer = await place(price, qty)
                assert status == 400 and answer["code"] in (-1013, -1111, -2010), (
                    price, qty, answer
                )  # fmt: skip
        finally:
            await alice.close()

    run(bounded, scenario)
