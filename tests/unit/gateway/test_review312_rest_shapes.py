from __future__ import annotations

import json
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


def test_dump(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        out = {}
        async def raw(c, method, path, signed=True, **p):
            headers = {}
            import urllib.parse
            q = urllib.parse.urlencode(p)
            if signed:
                headers = c.headers(method, path, q, b"")
            async with c.session.request(method, f"{url}{path}" + (f"?{q}" if q else ""), headers=headers) as r:
                return r.status, dict(r.headers), await r.text()
        s1 = await bob.call("POST", ORDER, **{**LIMIT, "side": "SELL"}, price="300.00", quantity="0.20")
        out["sell"] = s1
        out["buy"] = await alice.call("POST", ORDER, **LIMIT, price="300.00", quantity="0.30")
        oid = out["buy"]["orderId"]
        out["get"] = await alice.call("GET", ORDER, symbol="BTC-USD", orderId=oid)
        out["open"] = await alice.call("GET", "/api/v1/openOrders", symbol="BTC-USD")
        out["amend"] = await alice.call("PUT", ORDER, symbol="BTC-USD", orderId=oid, quantity="0.25")
        out["cancel"] = await alice.call("DELETE", ORDER, symbol="BTC-USD", orderId=oid)
        out["all"] = await raw(alice, "GET", "/api/v1/allOrders", symbol="BTC-USD")
        out["trades"] = await raw(alice, "GET", "/api/v1/myTrades", symbol="BTC-USD")
        out["account"] = await raw(alice, "GET", "/api/v1/account")
        out["info"] = await raw(alice, "GET", "/api/v1/exchangeInfo", signed=False)
        out["depth"] = await raw(alice, "GET", "/api/v1/depth", signed=False, symbol="BTC-USD")
        out["klines"] = await raw(alice, "GET", "/api/v1/klines", signed=False, symbol="BTC-USD", interval="1m")
        out["time"] = await raw(alice, "GET", "/api/v1/time", signed=False)
        out["err"] = await raw(alice, "GET", ORDER, symbol="BTC-USD", orderId=99999)
        out["masscancel"] = await raw(alice, "DELETE", "/api/v1/openOrders", symbol="BTC-USD")
        Path("/tmp/r312/dump.json").write_text(json.dumps(out, indent=1, default=str))
        await alice.close()
        await bob.close()

    run(harness, scenario)
