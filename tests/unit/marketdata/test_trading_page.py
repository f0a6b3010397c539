"""The page's trading panels in headless Chromium against the whole exchange, as `ringex run`
starts it (the supervisor; router, matcher, market data and a gateway with its REST API as
real processes over shm): a user logs in on the page, buys against another user's resting
sell, sees the fill, the trade and the new balances, then places a resting order and cancels
it from the open-orders table, and two more, cancelled together by "cancel all".

The browser test needs Debian's ``chromium`` (``apt-get install -y chromium``) and is skipped
without it; Chromium is driven over its DevTools protocol, as in ``test_page.py``."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from config.edges import GatewayConfig, RestConfig
from config.schema import RingexConfig
from procs.admin.client import AdminClient
from procs.common.result_codes import ResultCode
from procs.common.topology import users_path
from procs.common.users import UserStore
from procs.core.market.state import MarketState
from procs.gateway.rest_client import RestClient
from procs.marketdata.web import Site, page_config
from tests.free_ports import free_port

from .chromium import DevTools, browser, needs_chromium
from .supervised import supervised

MAKER, TAKER = ("MAKER", "maker-pw", 201), ("TAKER", "taker-pw", 202)

#: What the test reads from the page, as one JSON value.
PAGE_STATE = """JSON.stringify({
  trading: !document.getElementById("trading").hidden,
  stream: document.getElementById("stream-status").textContent,
  login: document.getElementById("login-msg").textContent,
  result: document.getElementById("order-result").textContent,
  balances: Object.fromEntries([...document.querySelectorAll("#balances tbody tr")]
    .map(r => [r.cells[0].textContent, [r.cells[1].textContent, r.cells[2].textContent]])),
  fills: [...document.querySelectorAll("#fills tbody tr")]
    .map(r => [...r.cells].slice(1).map(c => c.textContent)),
  orders: Object.fromEntries([...document.querySelectorAll("#open-orders tbody tr")]
    .map(r => [r.dataset.orderId, [...r.cells].slice(1, 9).map(c => c.textContent)])),
  trades: [...document.querySelectorAll("#trades tbody tr")].map(r => r.cells[0].textContent),
})"""

#: Fills a form's fields by name (a "change" event each, as a user's edit makes) and clicks.
FILL_AND_CLICK = """((fields, button) => {
  for (const [name, value] of Object.entries(fields)) {
    const el = document.querySelector(`[name="${name}"]`);
    el.value = value;
    el.dispatchEvent(new Event("change"));
  }
  document.querySelector(button).click();
})(%s, %s)"""


def page_profile(instance: str, var_dir: Path, rest_extra: str = "") -> str:
    """A profile for the page's tests: one gateway with REST (``rest_extra``: more lines of
    its ``[gateways.rest]``), market data, no database, small rings, blocking waits."""
    return (
        f'instance = "{instance}"\nvar_dir = "{var_dir}"\n'
        "[ring]\ncapacity = 4096\n"
        '[wait]\nstrategy = "blocking"\npark_timeout_s = 0.005\n'
        "[risk]\nfee_account = 1\n"
        "[database]\nenabled = false\n"
        f"[marketdata]\nport = {free_port()}\n"
        f'[[gateways]]\nname = "gw1"\nid = 1\nport = {free_port()}\n'
        f"[gateways.rest]\nport = {free_port()}\n{rest_extra}"
    )


@pytest.fixture
def exchange(instance: str, tmp_path: Path) -> Iterator[RingexConfig]:
    """The exchange run by the supervisor, with the two users funded; yields its config."""
    profile = tmp_path / "trading.toml"
    profile.write_text(page_profile(instance, tmp_path / "var"))
    with supervised(profile) as cfg:
        add_users(cfg)
        yield cfg


def add_users(cfg: RingexConfig) -> None:
    """Both users as `ringex admin add-user` makes them: the maker holds BTC, the taker USD."""
    store = UserStore(users_path(cfg))
    admin = AdminClient(cfg)
    try:
        for (name, password, account), (asset, amount) in (
            (MAKER, ("BTC", "10")),
            (TAKER, ("USD", "100000")),
        ):
            assert admin.create_account(account).code == ResultCode.OK
            assert admin.transfer(account, asset, amount).code == ResultCode.OK
            store.add(name, password, account, n=1 << 4)  # a cheap hash: logins are quick
    finally:
        admin.close()


def test_config_tells_the_page_where_the_rest_api_is() -> None:
    fix_only = GatewayConfig(name="gw1", id=1)
    anywhere = GatewayConfig(
        name="gw2", id=2, port=9879, rest=RestConfig(host="0.0.0.0", port=8081)
    )
    local = GatewayConfig(name="gw3", id=3, port=9880, rest=RestConfig(port=8082))
    cfg = RingexConfig(gateways=[fix_only, anywhere, local])
    assert page_config(cfg) == {"rest": {"host": None, "port": 8081}}  # the page's own host
    cfg = RingexConfig(gateways=[fix_only, local])
    reply = Site(MarketState([]), config=page_config(cfg)).get("/api/config")
    assert reply.status_code == 200 and reply.headers["Content-Type"] == "application/json"
    assert json.loads(reply.body) == {"rest": {"host": "127.0.0.1", "port": 8082}}
    assert Site(MarketState([])).get("/api/config").body == b'{"rest":null}'
    assert page_config(RingexConfig(gateways=[fix_only])) == {"rest": None}


@needs_chromium
def test_log_in_trade_see_fills_and_balances_cancel(exchange: RingexConfig, tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(scenario(exchange, tmp_path / "chromium"), 50))


async def scenario(cfg: RingexConfig, profile_dir: Path) -> None:
    rest = cfg.gateways[0].rest
    assert rest is not None
    rest_url = f"http://127.0.0.1:{rest.port}"
    async with RestClient(rest_url) as maker:
        await until_up(f"{rest_url}/api/v1/ping")
        await maker.login(MAKER[0], MAKER[1])
        ask = await maker.call(
            "POST", "/api/v1/order", symbol="BTC-USD", side="SELL", type="LIMIT",
            price="100.00", quantity="0.5",
        )  # fmt: skip
        assert ask["status"] == "NEW"
        async with browser(profile_dir, PAGE_STATE) as page:
            await page.call("Page.navigate", url=f"http://127.0.0.1:{cfg.marketdata.port}/")
            await page.wait_for("the login box", lambda s: s["trading"])
            # 1. log in: the private stream's snapshot shows the taker's money
            await act(page, {"username": TAKER[0], "password": TAKER[1]}, "#login-button")
            state = await page.wait_for(
                "the balances", lambda s: s["stream"] == "live" and s["balances"]
            )
            assert state["balances"] == {"USD": ["100000.000000", "0.000000"]}
            assert state["orders"] == {} and state["fills"] == []
            # 2. buy against the resting sell: the fill, the trade and the balances follow
            order = {"side": "BUY", "type": "LIMIT", "price": "100.00", "quantity": "0.2"}
            await act(page, order, "#order-submit")
            state = await page.wait_for(
                "the fill and the new balances",
                lambda s: (
                    s["fills"]
                    and s["trades"]
                    and "FILLED" in s["result"]
                    and len(s["balances"]) == 2
                    and s["balances"]["USD"][0] != "100000.000000"
                ),
            )
            # the row shows its commission: the 20 bps taker fee, in the quote asset
            assert state["fills"] == [
                ["BTC-USD", "BUY", "100.00", "0.2000", "taker", "0.040000 USD"]
            ]
            assert state["balances"] == {
                "BTC": ["0.20000000", "0.00000000"],
                "USD": ["99979.960000", "0.000000"],  # 20.00 and the 20 bps taker fee
            }
            assert "FILLED: filled 0.2000 of 0.2000 at 100.00" in state["result"]
            assert state["trades"] == ["100.00"] and state["orders"] == {}
            # 3. a resting bid, cancelled from the open-orders table
            order = {"type": "LIMIT", "timeInForce": "GTC", "price": "90.00", "quantity": "0.1"}
            await act(page, order, "#order-submit")
            state = await page.wait_for("the open order", lambda s: s["orders"])
            ((oid, row),) = state["orders"].items()
            assert row == ["BTC-USD", "BUY", "LIMIT", "90.00", "-", "0.1000", "0.0000", "NEW"]
            await page.wait_for("USD locked", lambda s: s["balances"]["USD"][1] != "0.000000")
            await act(page, {}, f'#open-orders tr[data-order-id="{oid}"] button')
            state = await page.wait_for(
                "the order gone and the USD unlocked",
                lambda s: (
                    not s["orders"]
                    and s["balances"]["USD"][1] == "0.000000"
                    and "CANCELED" in s["result"]
                ),
            )
            assert state["result"] == f"#{oid} CANCELED"
            assert state["balances"]["USD"][0] == "99979.960000"
            # 4. two resting bids, both gone with one "cancel all" (DELETE openOrders)
            for count, price in enumerate(("80.00", "85.00"), start=1):
                await act(page, {**order, "price": price}, "#order-submit")
                await page.wait_for(f"{count} open", partial(has_orders, count))
                # and its answer shown: the stream may show the order before the REST answer
                # frees the form for the next one (a loaded machine's order of the two)
                await page.wait_for(f"order {count} answered", answered)
            await act(page, {}, "#cancel-all")
            state = await page.wait_for(
                "no open order and the USD unlocked",
                lambda s: (
                    not s["orders"]
                    and s["balances"]["USD"][1] == "0.000000"
                    and "cancelled" in s["result"]
                ),
            )
            assert state["result"] == "2 open orders cancelled"
        # the maker's side of it, from the API
        (mine,) = await maker.call("GET", "/api/v1/openOrders", symbol="BTC-USD")
        assert mine["orderId"] == ask["orderId"] and mine["executedQty"] == "0.2000"


def has_orders(count: int, state: dict[str, Any]) -> bool:
    return len(state["orders"]) == count


def answered(state: dict[str, Any]) -> bool:
    """The result line answers the newest open order (the form takes the next order)."""
    newest = max(state["orders"], key=int, default="")
    return bool(newest) and state["result"].startswith(f"#{newest} ")


async def until_up(url: str) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            await asyncio.to_thread(urllib.request.urlopen, url, timeout=1)
            return
        except OSError:
            assert time.monotonic() < deadline, f"{url} did not answer in 20 s"
            await asyncio.sleep(0.05)


async def act(page: DevTools, fields: dict[str, str], button: str) -> None:
    expression = FILL_AND_CLICK % (json.dumps(fields), json.dumps(button))
    out = await page.call("Runtime.evaluate", expression=expression)
    assert "exceptionDetails" not in out, out
