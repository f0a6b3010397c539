"""Bugs a hostile review of the page's trading panels (``procs/marketdata/static/trading.js``)
found, one test each; each failed on the page as reviewed and passes since its fix. The
real page runs in headless Chromium against a scripted fake of the market-data server and of
the gateway's REST API and private stream (aiohttp, one port: ``/api/config`` names the same
origin), so that each test can put an answer exactly where the race is:

- logging out while the fills history is loading lets the old user's fills land after the
  reset, and the next user who logs in on the page sees them;
- one transient 503 from ``myTrades`` (the database did not answer) turns the fills history off
  for the page's life: fills made while the private stream was down are never shown;
- a double submit of the login form creates two API keys; logging out revokes one, and the
  other key and its private stream stay open;
- a session restored on reload whose private-stream snapshot comes before the page's symbol
  list loads no fills history: the fills table stays empty.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import WSCloseCode, web

from procs.marketdata.web import STATIC_DIR

from .chromium import DevTools, needs_chromium
from .fake_site import Route, evaluate, run, served

pytestmark = needs_chromium

SYMBOLS = ("BTC-USD", "ETH-USD")

PAGE_STATE = """JSON.stringify({
  loggedIn: !document.getElementById("account").hidden,
  who: document.getElementById("who").textContent,
  stream: document.getElementById("stream-status").textContent,
  fills: [...document.querySelectorAll("#fills tbody tr")].map(r => r.dataset.tradeId),
  options: document.getElementById("symbol").options.length,
  trading: !document.getElementById("trading").hidden,
})"""


def fill(symbol: str, trade_id: int, order_id: int) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "id": trade_id,
        "orderId": order_id,
        "price": "100.00",
        "qty": "0.1000",
        "quoteQty": "10.000000",
        "time": 1_700_000_000_000 + trade_id,
        "isBuyer": True,
        "isMaker": False,
    }


class Fake:
    """The market-data server and the gateway's REST API as the page sees them."""

    def __init__(self) -> None:
        self.port = 0
        self.created: list[str] = []  # API keys handed out, in order
        self.revoked: list[str] = []
        self.users: dict[str, str] = {}  # API key -> username
        self.trades: dict[str, list[dict[str, Any]]] = {}  # username -> its fills (history)
        self.history_delay: dict[str, float] = {}  # username -> seconds myTrades takes
        self.history_503 = 0  # this many myTrades answers are 503 (the database is down)
        self.history_asked: list[tuple[str, str]] = []  # (username, symbol)
        self.login_delay = 0.0
        self.symbols_delay = 0.0
        self.streams: list[tuple[str, web.WebSocketResponse]] = []  # (API key, socket)

    # -- the market-data server ---------------------------------------------------------------

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info.get("name") or "index.html"
        path = STATIC_DIR / name
        if not path.is_file():
            raise web.HTTPNotFound()
        types = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
        return web.Response(body=path.read_bytes(), content_type=types[path.suffix])

    async def config(self, request: web.Request) -> web.Response:
        return web.json_response({"rest": {"host": "127.0.0.1", "port": self.port}})

    async def symbols(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.symbols_delay)
        return web.json_response(
            [
                {"symbol": s, "stream": s.lower(), "priceDecimals": 2, "qtyDecimals": 4}
                for s in SYMBOLS
            ]
        )

    async def empty(self, request: web.Request) -> web.Response:
        return web.json_response([])

    async def market_ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            req = json.loads(msg.data)
            await ws.send_str(json.dumps({"id": req["id"], "result": None}))
        return ws

    # -- the REST API --------------------------------------------------------------------------

    def user(self, request: web.Request) -> str | None:
        key = request.headers.get("X-RINGEX-APIKEY") or request.query.get("apiKey", "")
        return None if key in self.revoked else self.users.get(key)

    @staticmethod
    def unknown_key() -> web.Response:
        return web.json_response({"code": -2014, "msg": "unknown API key"}, status=401)

    async def create_key(self, request: web.Request) -> web.Response:
        form = await request.post()
        await asyncio.sleep(self.login_delay)  # the password hash takes its time
        key = f"KEY{len(self.created) + 1}"
        self.created.append(key)
        self.users[key] = str(form["username"])
        return web.json_response(
            {
                "apiKey": key,
                "secretKey": f"secret-{key}",
                "scopes": ["read", "trade"],
                "accountId": 100 + len(self.created),
                "username": form["username"],
            }
        )

    async def revoke_key(self, request: web.Request) -> web.Response:
        key = request.headers.get("X-RINGEX-APIKEY", "")
        if self.user(request) is None:
            return self.unknown_key()
        self.revoked.append(key)
        for owner, ws in self.streams:
            if owner == key:
                await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"API key revoked")
        return web.json_response({"apiKey": key, "revoked": True})

    async def time(self, request: web.Request) -> web.Response:
        return web.json_response({"serverTime": int(time.time() * 1000)})

    async def account(self, request: web.Request) -> web.Response:
        if self.user(request) is None:
            return self.unknown_key()
        return web.json_response({"balances": []})

    async def my_trades(self, request: web.Request) -> web.Response:
        user = self.user(request)
        if user is None:
            return self.unknown_key()
        symbol = request.query["symbol"]
        self.history_asked.append((user, symbol))
        await asyncio.sleep(self.history_delay.get(user, 0))
        if self.history_503:
            self.history_503 -= 1
            msg = "the history database did not answer: pool timeout"
            return web.json_response({"code": -1001, "msg": msg}, status=503)
        return web.json_response([t for t in self.trades.get(user, []) if t["symbol"] == symbol])

    async def stream(self, request: web.Request) -> web.StreamResponse:
        key = request.query.get("apiKey", "")
        if self.user(request) is None:
            return self.unknown_key()
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.streams.append((key, ws))
        snapshot: dict[str, list[Any]] = {"balances": [], "openOrders": []}
        await ws.send_str(json.dumps({"event": "snapshot", "seq": 1, "data": snapshot}))
        async for _msg in ws:
            pass
        return ws

    def open_streams(self) -> list[str]:
        return [key for key, ws in self.streams if not ws.closed]


@asynccontextmanager
async def page(fake: Fake, profile: Path) -> AsyncIterator[DevTools]:
    routes: list[Route] = [
        ("GET", "/api/config", fake.config),
        ("GET", "/api/symbols", fake.symbols),
        ("GET", "/api/klines", fake.empty),
        ("GET", "/api/trades", fake.empty),
        ("GET", "/ws", fake.market_ws),
        ("POST", "/api/v1/apiKey", fake.create_key),
        ("DELETE", "/api/v1/apiKey", fake.revoke_key),
        ("GET", "/api/v1/time", fake.time),
        ("GET", "/api/v1/account", fake.account),
        ("GET", "/api/v1/myTrades", fake.my_trades),
        ("GET", "/api/v1/stream", fake.stream),
        ("GET", "/", fake.static),
        ("GET", "/{name}", fake.static),
    ]
    try:
        async with served(
            routes, profile, PAGE_STATE, lambda port: setattr(fake, "port", port)
        ) as tools:
            await tools.wait_for("the symbols", lambda s: s["options"] == len(SYMBOLS))
            # the login form works once trading.js has its config (a hidden form before)
            await tools.wait_for("the trading panel", lambda s: s["trading"])
            yield tools
    finally:
        for _, ws in fake.streams:
            await ws.close()


async def log_in(tools: DevTools, username: str, submits: int = 1) -> None:
    await evaluate(
        tools,
        f'document.getElementById("login-user").value = {json.dumps(username)};'
        'document.getElementById("login-password").value = "pw";'
        + 'document.getElementById("login").requestSubmit();'
        * submits,
    )


async def log_out(tools: DevTools) -> None:
    await evaluate(tools, 'document.getElementById("logout").click()')
    await tools.wait_for("the login box", lambda s: not s["loggedIn"])


# -- fills ---------------------------------------------------------------------------------------


def test_the_next_user_does_not_see_the_previous_users_fills(tmp_path: Path) -> None:
    async def body() -> None:
        fake = Fake()
        fake.trades["ALICE"] = [fill("BTC-USD", 7, 70)]
        fake.history_delay["ALICE"] = 1.0  # her history is slow to come
        async with page(fake, tmp_path / "chromium") as tools:
            await log_in(tools, "ALICE")
            await tools.wait_for("alice live", lambda s: s["stream"] == "live")
            while ("ALICE", "BTC-USD") not in fake.history_asked:
                await asyncio.sleep(0.02)
            await log_out(tools)  # Alice leaves the shared computer
            await asyncio.sleep(1.3)  # her history's answer has come in by now
            await log_in(tools, "BOB")
            await tools.wait_for("bob live", lambda s: s["stream"] == "live" and "BOB" in s["who"])
            while [u for u, _ in fake.history_asked].count("BOB") < len(SYMBOLS):
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)
            state = await tools.wait_for("the page", lambda s: True)
            assert state["fills"] == [], f"Bob is shown Alice's fills: {state['fills']}"

    run(body())


def test_a_transient_history_error_does_not_lose_later_fills(tmp_path: Path) -> None:
    async def body() -> None:
        fake = Fake()
        fake.history_503 = 1  # the database misses one query (a pool timeout)
        async with page(fake, tmp_path / "chromium") as tools:
            await log_in(tools, "ALICE")
            await tools.wait_for("live", lambda s: s["stream"] == "live")
            while not fake.history_asked or fake.history_503:
                await asyncio.sleep(0.02)
            # the stream drops (a slow consumer, a restart) and she trades meanwhile
            fake.trades["ALICE"] = [fill("BTC-USD", 8, 80)]
            ((_, ws),) = fake.streams
            await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"slow consumer")
            await tools.wait_for("reconnected", lambda s: len(fake.streams) == 2, timeout=5)
            await tools.wait_for("live again", lambda s: s["stream"] == "live")
            state = await tools.wait_for("fill 8", lambda s: "8" in s["fills"], timeout=3)
            assert state["fills"] == ["8"]

    run(body())


def test_a_reload_shows_the_fills_history(tmp_path: Path) -> None:
    async def body() -> None:
        fake = Fake()
        fake.trades["ALICE"] = [fill("ETH-USD", 9, 90)]
        async with page(fake, tmp_path / "chromium") as tools:
            await log_in(tools, "ALICE")
            await tools.wait_for("her fill", lambda s: s["fills"] == ["9"])
            fake.symbols_delay = 1.0  # the market-data server is slow to list its symbols
            await tools.call("Page.reload")  # the session is kept in sessionStorage
            await tools.wait_for("the symbols", lambda s: s["options"] == len(SYMBOLS))
            await tools.wait_for("live", lambda s: s["stream"] == "live")
            state = await tools.wait_for("her fill", lambda s: s["fills"] == ["9"], timeout=3)
            assert state["loggedIn"]

    run(body())


# -- the API key ---------------------------------------------------------------------------------


def test_logout_after_a_double_login_leaves_no_key(tmp_path: Path) -> None:
    async def body() -> None:
        fake = Fake()
        fake.login_delay = 0.2  # the password hash: the button can be pressed again meanwhile
        async with page(fake, tmp_path / "chromium") as tools:
            await log_in(tools, "ALICE", submits=2)
            await tools.wait_for("live", lambda s: s["stream"] == "live")
            await asyncio.sleep(0.5)
            await log_out(tools)
            deadline = time.monotonic() + 10  # the page's revokes and closes (a loaded host)
            while sorted(fake.revoked) != sorted(fake.created) or fake.open_streams():
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            assert sorted(fake.revoked) == sorted(fake.created), (fake.created, fake.revoked)
            assert fake.open_streams() == []

    run(body())
