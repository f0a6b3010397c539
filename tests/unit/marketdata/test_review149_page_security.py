"""Review 149: the browser page (``procs/marketdata/static``) and the HTTP surfaces it trades
through, held against hostile values and a hostile neighbour in the same browser.

Method: the real page in headless Chromium (``chromium.py``), served by a scripted fake of the
market-data port (aiohttp, no security headers: the page's own code is what is tested) and
either a scripted fake of the REST API and private stream, or the real REST gateway
(``rest_rig.rest_exchange``: real HTTP in front of real rings, an in-process router and
matcher). Payloads (``<img src=x onerror=...>``, ``<svg onload=...>``, quotes) put in every
string the page renders: symbol names, feed prices, sizes and ticker fields, a login's refusal,
the username, open orders, balances, fills, an order's refusal and a private stream's close
reason; a window flag says whether any ran. The real market-data process (``rig.running``)
framed by a page of another origin. The feed sending ``null``, arrays, binary frames, messages
without data, 5,000 levels a side at 20-digit prices, then dropping the connection. The page's
own signed ``GET /api/v1/account`` (the private stream's reconnect) against the real gateway,
then a logout, then a page of another origin on the same site reading that URL unsigned.

Sound: every value reaches the DOM as text (``textContent``, ``new Option``, ``fillText``;
``innerHTML`` only ever set to ""): no payload runs, each is shown literally. Symbol and asset
names are restricted by the schema anyway (``config/schema.py:100``, ``config/fields.py:20``),
usernames are not, and are shown as text. The market-data port is not framed by another origin
(``X-Frame-Options: DENY``, ``frame-ancestors 'none'``, web.py:59-69). Malformed feed messages
cost one event each: later trades and depth still show, 5,000 levels a side show the 15 best
with an exact spread, and a dropped feed is reconnected and subscribed again. The REST API
sets no cookie, so its private stream has no ambient credential a foreign page could ride
(cross-site WebSocket hijacking): an unsigned upgrade from a foreign Origin is refused. The
real gateway takes the page's signed requests and stream URL. Read, not asserted: the secret
stays in sessionStorage and memory (only HMACs go out), and a logout clears both
(``trading.js:164-189``).

Faults (each a strict xfail when written; all fixed since, the same session: every REST answer
says ``Cache-Control: no-store``, the symbol list is asked until it comes, and an order whose
cancel is on its way is drawn with its button disabled):
1. No answer of the REST API says ``Cache-Control: no-store`` (no Cache-Control anywhere in
   ``procs/gateway``; ``rest.py:346-358``, ``_cors``, is the last step every aiohttp answer
   takes): Chromium keeps the page's signed ``GET /api/v1/account`` (``trading.js:238``) in
   its HTTP cache, and after the user logs out a page of another origin on the same site
   fetches that URL unsigned with ``cache: "force-cache"`` and reads her balances (the
   answer's ``Access-Control-Allow-Origin: *`` lets it).
2. The symbol list is fetched once at load (``app.js:17``) and ``start`` (``app.js:236-237``)
   awaits it with no retry: one failed ``/api/symbols`` (a proxy's 503 while the process
   restarts) leaves the page dead for good, "connecting", no symbol, no feed, while
   ``exchangeInfo`` beside it is asked again after a failure (``trading.js:408``).
3. A cancel's guard is lost on a redraw: ``drawOrders`` (``trading.js:474-495``) rebuilds
   every row with a fresh, enabled cancel button, so an execution report of any order that
   comes while a cancel is on its way lets a second click send a second ``DELETE`` of the
   same order, whose refusal then replaces the first one's answer.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSCloseCode, web

from procs.marketdata.web import STATIC_DIR
from tests.unit.gateway.harness import Harness, close_all
from tests.unit.gateway.rest_rig import rest_exchange

from .chromium import DevTools, browser, needs_chromium
from .rig import running

pytestmark = needs_chromium

FLAG = "window.pwned=(window.pwned||[]).concat"


def payload(where: str) -> str:
    """Markup that, parsed as HTML, records ``where`` in ``window.pwned``."""
    return f"<img src=x onerror=\"{FLAG}('{where}')\"><svg onload={FLAG}('{where}')>'\""


STATE = """JSON.stringify({
  options: document.getElementById("symbol").options.length,
  trading: !document.getElementById("trading").hidden,
  loggedIn: !document.getElementById("account").hidden,
  status: document.getElementById("status").textContent,
  stream: document.getElementById("stream-status").textContent,
  trades: [...document.querySelectorAll("#trades tbody tr")].map(r => r.dataset.tradeId),
  asks: document.querySelectorAll("#asks tbody tr").length,
  bids: document.querySelectorAll("#bids tbody tr").length,
  spread: document.getElementById("spread").textContent,
  result: document.getElementById("order-result").textContent,
  orders: [...document.querySelectorAll("#open-orders tbody tr")].map(r => r.dataset.orderId),
  fills: document.querySelectorAll("#fills tbody tr").length,
  text: document.body.innerText,
  pwned: window.pwned || [],
})"""


def run(coro: Coroutine[Any, Any, None], timeout_s: float = 40) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout_s))


async def evaluate(tools: DevTools, expression: str) -> Any:
    out = await tools.call(
        "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
    )
    assert "exceptionDetails" not in out, out
    return out["result"].get("value")


@asynccontextmanager
async def site(routes: list[tuple[str, str, Any]]) -> AsyncIterator[int]:
    """``routes`` on 127.0.0.1; yields the port."""
    app = web.Application()
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def static(request: web.Request) -> web.StreamResponse:
    path = STATIC_DIR / (request.match_info.get("name") or "index.html")
    if not path.is_file():
        raise web.HTTPNotFound()
    kind = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}[path.suffix]
    return web.Response(body=path.read_bytes(), content_type=kind)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_of(value: Any) -> Handler:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.json_response(value)

    return answer


class Feed:
    """The market-data WebSocket: answers requests, and ``push`` sends to every socket."""

    def __init__(self) -> None:
        self.sockets: list[web.WebSocketResponse] = []
        self.subscribed: list[list[str]] = []  # each SUBSCRIBE's params

    async def handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.append(ws)
        async for msg in ws:
            req = json.loads(msg.data)
            if req.get("method") == "SUBSCRIBE":
                self.subscribed.append(req["params"])
            await ws.send_str(json.dumps({"id": req["id"], "result": None}))
        return ws

    async def push(self, *messages: str | bytes) -> None:
        for ws in [s for s in self.sockets if not s.closed]:
            for m in messages:
                await (ws.send_bytes(m) if isinstance(m, bytes) else ws.send_str(m))


def market_routes(feed: Feed, symbol: str, rest_port: int | None, **extra: Any) -> list[Any]:
    rest = {"host": "127.0.0.1", "port": rest_port} if rest_port else None
    symbols = [{"symbol": symbol, "stream": "btc-usd", "priceDecimals": 2, "qtyDecimals": 2}]
    return [
        ("GET", "/api/config", extra.get("config", json_of({"rest": rest}))),
        ("GET", "/api/symbols", extra.get("symbols", json_of(symbols))),
        ("GET", "/api/klines", json_of([])),
        ("GET", "/api/trades", json_of([])),
        ("GET", "/ws", feed.handler),
        ("GET", "/", static),
        ("GET", "/{name}", static),
    ]


@asynccontextmanager
async def page(profile: Path, url: str, before: str = "") -> AsyncIterator[DevTools]:
    """Chromium at ``url``; ``before`` runs in every document before its own scripts."""
    async with browser(profile, STATE) as tools:
        if before:
            await tools.call("Page.enable")
            await tools.call("Page.addScriptToEvaluateOnNewDocument", source=before)
        await tools.call("Page.navigate", url=url)
        yield tools


async def log_in(tools: DevTools, user: str, password: str) -> None:
    await evaluate(
        tools,
        f'document.getElementById("login-user").value = {json.dumps(user)};'
        f'document.getElementById("login-password").value = {json.dumps(password)};'
        'document.getElementById("login").requestSubmit()',
    )


def trade(trade_id: int, price: str = "100.00", qty: str = "1.00") -> str:
    data = {"e": "trade", "t": trade_id, "p": price, "q": qty, "T": 1_700_000_000_000, "m": 0}
    return json.dumps({"stream": "btc-usd@trade", "data": data})


# -- faults --------------------------------------------------------------------------------------


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


#: Every WebSocket the page opens, kept where the test can close it (the private stream's).
SOCKETS = """(() => {
  const Real = window.WebSocket;
  window.sockets = [];
  window.WebSocket = function (url, protocols) {
    const ws = new Real(url, protocols);
    window.sockets.push(ws);
    return ws;
  };
  window.WebSocket.prototype = Real.prototype;
  Object.assign(window.WebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
})()"""


def test_a_logged_out_users_account_is_not_read_from_the_browser_cache(
    harness: Harness, tmp_path: Path
) -> None:
    """ALICE logs in on the page (the real gateway), her private stream drops and the page
    reconnects, asking ``GET /api/v1/account`` signed as it does (trading.js:238); she logs
    out. A page of another origin on the same site (another port of 127.0.0.1, as
    ``blog.example.com`` beside ``exchange.example.com``) fetches that URL with no key and
    ``cache: "force-cache"``: it must get the gateway's 401, not her account. Fix:
    ``Cache-Control: no-store`` on every answer of a signed route (``_cors`` in rest.py and
    the fast lane's answers)."""

    async def body() -> None:
        await harness.start()
        assert harness.gateway is not None and harness.gateway.api is not None
        rest_port = harness.gateway.api.port
        feed = Feed()
        neighbour = [("GET", "/", json_of({"page": "another origin"}))]
        try:
            async with (
                site(market_routes(feed, "BTC-USD", rest_port)) as port,
                site(neighbour) as other,
                page(tmp_path / "chromium", f"http://127.0.0.1:{port}/", SOCKETS) as tools,
            ):
                await tools.wait_for("the trading panel", lambda s: s["trading"])
                await log_in(tools, "ALICE", "alice-pw")
                await tools.wait_for("live", lambda s: s["stream"] == "live")
                await evaluate(
                    tools,
                    'window.sockets.filter(s => s.url.includes("/api/v1/stream"))'
                    ".forEach(s => s.close())",
                )
                await tools.wait_for("disconnected", lambda s: s["stream"] != "live", 5)
                await tools.wait_for("live again", lambda s: s["stream"] == "live")
                await evaluate(tools, 'document.getElementById("logout").click()')
                await tools.wait_for("logged out", lambda s: not s["loggedIn"])
                await tools.call("Page.navigate", url=f"http://127.0.0.1:{other}/")
                await asyncio.sleep(0.5)
                read = await evaluate(
                    tools,
                    f'fetch("http://127.0.0.1:{rest_port}/api/v1/account",'
                    ' {cache: "force-cache"}).then(async r => `${r.status} ${await r.text()}`)',
                )
        finally:
            await close_all()
            await harness.stop()
        assert read.startswith("401"), f"another origin read ALICE's account: {read}"

    run(body())


async def _refuse_first(
    state: dict[str, int], answer: Handler, request: web.Request
) -> web.StreamResponse:
    """The first request refused (a proxy's 503 while the process restarts), the next
    answered. (An aborted socket is no test: Chromium sends a GET again by itself when a
    reused connection resets.)"""
    state["asked"] = state.get("asked", 0) + 1
    if state["asked"] == 1:
        return web.Response(status=503, text="market data restarting")
    return await answer(request)


def test_a_symbol_list_that_failed_at_load_is_asked_again(tmp_path: Path) -> None:
    """The first ``/api/symbols`` is refused; the page should ask again, as it does for
    exchangeInfo, and come up: symbols listed, the feed live. It stays "connecting" with an
    empty picker until the user reloads. Fix: retry ``symbolList`` with a backoff in
    ``start`` (app.js) and let trading.js await the settled list."""
    feed = Feed()
    asked: dict[str, int] = {}
    listing = json_of([{"symbol": "BTC-USD", "stream": "btc-usd", "priceDecimals": 2}])

    async def symbols(request: web.Request) -> web.StreamResponse:
        return await _refuse_first(asked, listing, request)

    async def body() -> None:
        routes = market_routes(feed, "BTC-USD", None, symbols=symbols)
        async with (
            site(routes) as port,
            page(tmp_path / "chromium", f"http://127.0.0.1:{port}/") as tools,
        ):
            state = await tools.wait_for("the page", lambda s: True)
            deadline = time.monotonic() + 6
            while time.monotonic() < deadline and not (state["options"] and feed.subscribed):
                await asyncio.sleep(0.2)
                state = await tools.wait_for("the page", lambda s: True)
            assert state["options"] == 1 and state["status"] == "live", state

    run(body())


class FakeRest:
    """The REST API and private stream as the page sees them, scripted."""

    def __init__(self) -> None:
        self.deletes: list[str] = []  # DELETE /api/v1/order's orderId, in order
        self.delete_delay = 0.0
        self.streams: list[web.WebSocketResponse] = []
        self.snapshot: dict[str, Any] = {"balances": [], "openOrders": []}
        self.logins = 0
        self.username = "ALICE"

    def routes(self) -> list[Any]:
        def cors(handler: Handler) -> Handler:
            async def answer(request: web.Request) -> web.StreamResponse:
                response = await handler(request)
                if not isinstance(response, web.WebSocketResponse):
                    response.headers["Access-Control-Allow-Origin"] = "*"
                    response.headers["Access-Control-Allow-Headers"] = "*"
                    response.headers["Access-Control-Allow-Methods"] = "GET, POST, DELETE"
                return response

            return answer

        return [
            (method, path, cors(handler))
            for method, path, handler in (
                ("POST", "/api/v1/apiKey", self.create_key),
                ("DELETE", "/api/v1/apiKey", json_of({"revoked": True})),
                ("GET", "/api/v1/time", self.time),
                ("GET", "/api/v1/account", json_of({"balances": []})),
                ("GET", "/api/v1/myTrades", json_of([])),
                ("POST", "/api/v1/order", self.refuse_order),
                ("DELETE", "/api/v1/order", self.cancel),
                ("GET", "/api/v1/stream", self.stream),
                ("OPTIONS", "/{tail:.*}", json_of(None)),
            )
        ]

    async def time(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"serverTime": int(time.time() * 1000)})

    async def create_key(self, request: web.Request) -> web.StreamResponse:
        self.logins += 1
        if self.logins == 1:  # the first refused, echoing what was sent
            msg = {"code": -2014, "msg": f"wrong password for {payload('login refusal')}"}
            return web.json_response(msg, status=401)
        key = {"apiKey": "K", "secretKey": "S", "accountId": 7, "username": self.username}
        return web.json_response(key)

    async def refuse_order(self, request: web.Request) -> web.StreamResponse:
        symbol = (await request.post())["symbol"]
        assert isinstance(symbol, str)
        msg = {"code": -1121, "msg": f"symbol {symbol} is unknown"}
        return web.json_response(msg, status=400)

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        self.deletes.append(request.query["orderId"])
        again = self.deletes.count(request.query["orderId"]) > 1
        await asyncio.sleep(self.delete_delay)
        if again:
            msg = {"code": -2011, "msg": "order is CANCELED: too late to cancel"}
            return web.json_response(msg, status=400)
        oid = int(request.query["orderId"])
        return web.json_response({"orderId": oid, "status": "CANCELED"})

    async def stream(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.streams.append(ws)
        await self.send({"event": "snapshot", "seq": 1, "data": self.snapshot})
        async for _ in ws:
            pass
        return ws

    async def send(self, message: dict[str, Any]) -> None:
        await self.streams[-1].send_str(json.dumps(message))


def order(oid: int, text: str = "", status: str = "NEW") -> dict[str, Any]:
    return {
        "orderId": oid, "symbol": text or "BTC-USD", "side": text or "BUY",
        "type": text or "LIMIT", "price": text or "1.00", "stopPrice": text or "0",
        "origQty": text or "1.00", "executedQty": text or "0", "status": status,
        "time": 1_700_000_000_000,
    }  # fmt: skip


@asynccontextmanager
async def trading_page(
    tmp_path: Path, rest: FakeRest, feed: Feed, symbol: str = "BTC-USD"
) -> AsyncIterator[DevTools]:
    async with (
        site(rest.routes()) as rest_port,
        site(market_routes(feed, symbol, rest_port)) as port,
        page(tmp_path / "chromium", f"http://127.0.0.1:{port}/") as tools,
    ):
        await tools.wait_for("the trading panel", lambda s: s["trading"] and s["options"])
        try:
            yield tools
        finally:
            for ws in rest.streams:
                await ws.close()


def test_a_second_click_on_cancel_after_a_redraw_sends_nothing(tmp_path: Path) -> None:
    """Order 1's cancel is clicked over a slow network; order 2's report comes meanwhile
    (any fill, any new order); a second click on order 1's cancel must send nothing, as the
    first click's disabled button promised. It sends a second DELETE, refused "too late",
    and that refusal is what the page shows last. Fix: keep the orders whose cancel is in
    flight (a Set of ids) and draw their buttons disabled."""
    rest, feed = FakeRest(), Feed()
    rest.snapshot["openOrders"] = [order(1)]
    rest.delete_delay = 1.0

    async def body() -> None:
        async with trading_page(tmp_path, rest, feed) as tools:
            await log_in(tools, "ALICE", "pw")  # refused: FakeRest's first login is
            await tools.wait_for("the refusal", lambda s: "login refusal" in s["text"])
            await log_in(tools, "ALICE", "pw")
            await tools.wait_for("order 1", lambda s: s["orders"] == ["1"])
            click = 'document.querySelector("#open-orders [data-order-id=\\"1\\"] button").click()'
            await evaluate(tools, click)
            report = order(2) | {"executionType": "NEW"}
            await rest.send({"event": "executionReport", "seq": 2, "data": report})
            await tools.wait_for("order 2", lambda s: "2" in s["orders"])
            await evaluate(tools, click)
            await tools.wait_for("the answers", lambda s: "1" not in s["orders"], 5)
            await asyncio.sleep(1.2)
            state = await tools.wait_for("the page", lambda s: True)
            assert rest.deletes == ["1"], f"{rest.deletes}; the page says {state['result']!r}"

    run(body())


# -- sound ---------------------------------------------------------------------------------------


def test_no_value_the_page_shows_runs_as_script(tmp_path: Path) -> None:
    """Markup in every string the page renders (no CSP here: the page's own sinks) is shown
    as text, and none of it runs."""
    rest, feed = FakeRest(), Feed()
    rest.username = payload("username")
    rest.snapshot = {
        "openOrders": [order(5, payload("open order"))],
        "balances": [{"asset": payload("asset"), "free": payload("free"), "locked": "0"}],
    }
    fill = order(6, payload("fill"), "FILLED") | {
        "executionType": "TRADE", "tradeId": 9, "isMaker": False, "lastPrice": payload("price"),
        "lastQty": "1", "eventTime": 1_700_000_000_000, "commission": "0",
        "commissionAsset": payload("fee asset"),
    }  # fmt: skip
    depth = {"e": "depthSnapshot", "lastUpdateId": 3, "bids": [[payload("bid"), "1"]], "asks": []}
    ticker = {"e": "24hrTicker"} | {k: payload(f"ticker {k}") for k in "cpPohlvq"}

    async def body() -> None:
        async with trading_page(tmp_path, rest, feed, payload("symbol")) as tools:
            await tools.wait_for("the feed", lambda s: feed.subscribed)
            await feed.push(
                trade(1, payload("trade price"), payload("trade size")),
                json.dumps({"stream": "btc-usd@depth", "data": depth}),
                json.dumps({"stream": "btc-usd@ticker", "data": ticker}),
            )
            await log_in(tools, "ALICE", "pw")
            await tools.wait_for("the refusal", lambda s: "login refusal" in s["text"])
            await log_in(tools, "ALICE", "pw")
            await tools.wait_for("live", lambda s: s["stream"] == "live")
            await rest.send({"event": "executionReport", "seq": 2, "data": fill})
            await tools.wait_for("the fill", lambda s: s["fills"] == 1)
            fields = 'const f = document.getElementById("order-form").elements;'
            await evaluate(tools, f'{fields} f.price.value = "1.00"; f.quantity.value = "1.00";')
            await evaluate(tools, 'document.getElementById("order-submit").click()')
            await tools.wait_for("the order refusal", lambda s: "is unknown" in s["result"])
            reason = "<img src=x onerror=pwned=['close']>'\""  # a close reason's 123 bytes
            await rest.streams[-1].close(code=WSCloseCode.POLICY_VIOLATION, message=reason.encode())
            state = await tools.wait_for("the close", lambda s: reason in s["text"], 5)
            await asyncio.sleep(0.5)  # any onerror has fired by now
            state = await tools.wait_for("the page", lambda s: True)
        assert state["pwned"] == [], state["pwned"]
        for where in ("username", "open order", "asset", "fill", "fee asset", "trade price"):
            assert payload(where) in state["text"], f"{where} not shown as text"

    run(body())


def test_the_market_data_page_is_not_framed_by_another_origin(
    instance: str, tmp_path: Path
) -> None:
    """A page of another origin frames the real market-data port's page (order entry under
    its own overlay, clickjacking): Chromium refuses to render it in the frame."""

    async def body() -> None:
        async with running(instance) as rig:
            frame = f'<iframe src="http://127.0.0.1:{rig.port}/"></iframe>'

            async def framing(request: web.Request) -> web.Response:
                return web.Response(text=frame, content_type="text/html")

            async with (
                site([("GET", "/", framing)]) as other,
                page(tmp_path / "chromium", f"http://127.0.0.1:{other}/") as tools,
            ):
                await asyncio.sleep(1.5)
                tree = (await tools.call("Page.getFrameTree"))["frameTree"]
        children = [c["frame"] for c in tree.get("childFrames", [])]
        assert len(children) == 1, tree
        # Chromium's error page in its place, the page named as what it could not show
        assert children[0]["url"].startswith("chrome-error:"), children
        assert children[0].get("unreachableUrl", "").startswith(f"http://127.0.0.1:{rig.port}")

    run(body())


def test_malformed_feed_messages_many_levels_and_a_drop_do_not_stop_the_page(
    tmp_path: Path,
) -> None:
    """Junk on the feed costs one event each; 5,000 levels a side at 20-digit prices show
    the 15 best and an exact spread; a dropped feed is reconnected and subscribed again."""
    feed = Feed()
    big = "12345678901234567890"
    bids = [[f"{int(big) - i}.99", "1.00"] for i in range(5000)]
    asks = [[f"{int(big) + 1 + i}.00", "1.00"] for i in range(5000)]
    depth = {"e": "depthSnapshot", "lastUpdateId": 10, "bids": bids, "asks": asks}

    async def body() -> None:
        async with (
            site(market_routes(feed, "BTC-USD", None)) as port,
            page(tmp_path / "chromium", f"http://127.0.0.1:{port}/") as tools,
        ):
            await tools.wait_for("subscribed", lambda s: feed.subscribed and s["status"] == "live")
            await feed.push(trade(1))
            await tools.wait_for("trade 1", lambda s: s["trades"] == ["1"])
            await feed.push(
                "null", "[]", "42", '"text"', b"\x00\xff binary", "{", '{"stream": 7}',
                '{"stream": "btc-usd@trade"}', '{"stream": "btc-usd@kline_1m", "data": {}}',
                '{"stream": "btc-usd@ticker", "data": {"e": "24hrTicker"}}',
                '{"stream": "btc-usd@depth", "data": {"e": "depthUpdate", "U": 1e308}}',
                trade(2), json.dumps({"stream": "btc-usd@depth", "data": depth}),
            )  # fmt: skip
            state = await tools.wait_for("trade 2 and the book", lambda s: s["bids"] == 15)
            assert state["trades"] == ["2", "1"] and state["asks"] == 15, state
            assert state["spread"] == "spread 0.01", state["spread"]
            for ws in feed.sockets:
                await ws.close()
            await tools.wait_for("resubscribed", lambda s: len(feed.subscribed) >= 2, 8)
            await tools.wait_for("live again", lambda s: s["status"] == "live")
            await feed.push(trade(3))
            await tools.wait_for("trade 3", lambda s: s["trades"][:1] == ["3"])

    run(body())


def test_the_private_stream_has_no_ambient_credential_for_a_foreign_page(
    harness: Harness,
) -> None:
    """A login sets no cookie; an upgrade from a foreign Origin without a signed URL is
    refused, so another site cannot open a user's private stream from her browser."""

    async def body() -> None:
        await harness.start()
        assert harness.gateway is not None and harness.gateway.api is not None
        url = f"http://127.0.0.1:{harness.gateway.api.port}"
        try:
            async with aiohttp.ClientSession() as http:
                form = {"username": "ALICE", "password": "alice-pw"}
                async with http.post(f"{url}/api/v1/apiKey", data=form) as answer:
                    assert answer.status == 200 and "Set-Cookie" not in answer.headers
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await http.ws_connect(
                        f"{url}/api/v1/stream", headers={"Origin": "https://evil.example"}
                    )
                assert refused.value.status in (400, 401)
        finally:
            await close_all()
            await harness.stop()

    run(body())
