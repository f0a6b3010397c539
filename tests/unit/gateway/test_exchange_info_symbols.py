"""``GET /api/v1/exchangeInfo?symbol=`` or ``?symbols=["A","B"]``: the symbols named, as the
most used venue APIs narrow it; every symbol without either (real HTTP in front of real
rings, two symbols: ``rest_rig.py``, ``test_rest_tickers.py``'s XBT-USD)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import jsonschema_rs
import pytest

from procs.gateway import api_errors as codes
from procs.gateway.openapi import document
from procs.gateway.rest import RestApi
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import rest_exchange, run
from tests.unit.gateway.test_rest_tickers import _with_xbt
from tests.unit.gateway.test_review47_rest_public import _get

INFO = "/api/v1/exchangeInfo"


@pytest.fixture
def two(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path, reshape=_with_xbt)


def names(body: dict[str, list[dict[str, str]]]) -> list[str]:
    return [s["symbol"] for s in body["symbols"]]


def test_exchange_info_narrows_to_the_symbols_named(two: Harness) -> None:
    schema = jsonschema_rs.validator_for(
        {**document(two.cfg), "$ref": "#/components/schemas/ExchangeInfo"}
    )

    async def scenario(api: RestApi, url: str) -> None:
        status, every = await _get(url, INFO)
        assert status == 200 and names(every) == ["BTC-USD", "XBT-USD"]
        status, one = await _get(url, INFO, symbol="xbt-usd")  # case does not matter
        assert status == 200 and names(one) == ["XBT-USD"]
        assert one["symbols"][0] == every["symbols"][1] and one["assets"] == every["assets"]
        listed = json.dumps(["XBT-USD", "BTC-USD", "XBT-USD"])  # in its order, each once
        status, some = await _get(url, INFO, symbols=listed)
        assert status == 200 and names(some) == ["XBT-USD", "BTC-USD"]
        for body in (every, one, some):
            schema.validate(body)

    run(two, scenario)


def test_a_wrong_symbol_list_is_a_400_naming_it(two: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        cases = [
            ({"symbol": "DOGE-USD"}, codes.BAD_SYMBOL, "unknown symbol 'DOGE-USD'"),
            ({"symbols": '["BTC-USD","DOGE-USD"]'}, codes.BAD_SYMBOL, "'DOGE-USD'"),
            ({"symbols": "BTC-USD"}, codes.ILLEGAL_PARAM, "not a JSON array of symbol names"),
            ({"symbols": "[1]"}, codes.ILLEGAL_PARAM, "not a JSON array of symbol names"),
            ({"symbols": "[]"}, codes.ILLEGAL_PARAM, "names no symbol"),
            ({"symbol": "BTC-USD", "symbols": '["BTC-USD"]'}, codes.ILLEGAL_PARAM, "together"),
            ({"symbols": json.dumps(["BTC-USD"] * 60)}, codes.ILLEGAL_PARAM, "symbols"),  # > 640
            ({"limit": "5"}, codes.UNKNOWN_PARAM, "limit"),
        ]
        for query, code, text in cases:
            status, body = await _get(url, INFO, **query)
            assert (status, body["code"]) == (400, code), (query, body)
            assert text in body["msg"], (query, body)

    run(two, scenario)
