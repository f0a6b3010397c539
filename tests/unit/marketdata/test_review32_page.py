"""Review 32 of the browser page (``procs/marketdata/static``), as a user of a real venue's web
page sees it; one test each fault, each failed on the page as reviewed and passes since its
fix. The real page runs in headless Chromium against a scripted fake of the market-data server
and of the gateway's REST API and private stream (the trading review's fake, with a feed that
sends books and tickers), so that each test puts a message or an answer where the fault is:

- a stop order (``isWorking`` false until its trigger, but open) vanishes from the open
  orders as soon as the private stream reports it: it cannot be seen or cancelled;
- a price or size finer than the symbol's tick or lot is sent to the API, not refused on the
  page with a message naming the tick or lot;
- switching to a symbol without trades keeps the previous symbol's ticker on show;
- the chart's price axis is printed at 2 decimals whatever the symbol's precision;
- a logout waits for the API key's revocation: while the API does not answer, the page stays
  logged in and its private stream open;
- the book sorts its levels as floats: prices of 12 decimals that one double cannot tell
  apart show in the wrong order, with a wrong spread;
- a history request (candles, trades) that fails drops the depth snapshot held behind it: the
  book never shows.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from .chromium import DevTools, needs_chromium
from .fake_site import Route, evaluate, run, served
from .test_review_trading_page_bugs import Fake as TradingFake
from .test_review_trading_page_bugs import log_in
from .test_trading_page import act

pytestmark = needs_chromium

PAGE_STATE = """JSON.stringify({
  options: document.getElementById("symbol").options.length,
  trading: !document.getElementById("trading").hidden,
  loggedIn: !document.getElementById("account").hidden,
  stream: document.getElementById("stream-status").textContent,
  last: document.getElementById("t-last").textContent,
  bookId: document.getElementById("book-id").textContent,
  asks: [...document.querySelectorAll("#asks tbody tr")].map(r => r.cells[0].textContent),
  bids: [...document.querySelectorAll("#bids tbody tr")].map(r => r.cells[0].textContent),
  spread: document.getElementById("spread").textContent,
  orders: [...document.querySelectorAll("#open-orders tbody tr")].map(r => r.dataset.orderId),
  result: document.getElementById("order-result").textContent,
  resultClass: document.getElementById("order-result").className,
  labels: window.axisLabels || [],
  candles: typeof candles === "undefined" ? 0 : candles.length,
})"""

#: Records the chart's axis labels (the canvas's texts) in ``window.axisLabels``, and redraws.
CAPTURE_LABELS = """(() => {
  window.axisLabels = [];
  const draw = CanvasRenderingContext2D.prototype.fillText;
  CanvasRenderingContext2D.prototype.fillText = function (text, ...rest) {
    window.axisLabels.push(text);
    return draw.call(this, text, ...rest);
  };
  drawChart();
})()"""


def symbol(name: str, price_decimals: int = 2, qty_decimals: int = 4) -> dict[str, Any]:
    return {
        "symbol": name,
        "stream": name.lower(),
        "priceDecimals": price_decimals,
        "qtyDecimals": qty_decimals,
        "status": "TRADING",
    }


def snapshot(update_id: int, bids: list[list[str]], asks: list[list[str]]) -> dict[str, Any]:
    return {"e": "depthSnapshot", "lastUpdateId": update_id, "bids": bids, "asks": asks}


def ticker(last: str) -> dict[str, Any]:
    return {
        "e": "24hrTicker",
        "p": "1.00",
        "P": "1.00",
        "o": last,
        "h": last,
        "l": last,
        "c": last,
        "v": "1.0000",
        "q": last,
    }


class Fake(TradingFake):
    """The trading review's fake, with a feed that answers a SUBSCRIBE as the server does (a
    depth stream starts with its snapshot, a ticker stream with the ticker if there is one),
    candles, exchangeInfo and an order endpoint."""

    def __init__(self, symbols: list[dict[str, Any]]) -> None:
        super().__init__()
        self.listed = symbols
        self.books: dict[str, dict[str, Any]] = {}  # stream prefix -> its depth snapshot
        self.tickers: dict[str, dict[str, Any]] = {}
        self.candles: dict[str, list[dict[str, Any]]] = {}
        self.history_failures = 0  # this many /api/klines answers are 503
        self.rules: dict[str, tuple[str, str]] = {}  # symbol -> (tickSize, stepSize)
        self.orders: list[dict[str, str]] = []  # POST /api/v1/order bodies
        self.revoke_hangs = False
        self.revokes_asked = 0
        self.feeds: list[tuple[web.WebSocketResponse, set[str]]] = []

    async def symbols(self, request: web.Request) -> web.Response:
        return web.json_response(self.listed)

    async def klines(self, request: web.Request) -> web.Response:
        if self.history_failures:
            self.history_failures -= 1
            return web.Response(status=503, text="the history is not available")
        return web.json_response(self.candles.get(request.query["symbol"], []))

    async def market_ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        subs: set[str] = set()
        self.feeds.append((ws, subs))
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            req = json.loads(msg.data)
            if req["method"] == "UNSUBSCRIBE":
                subs.difference_update(req["params"])
            else:
                subs.update(req["params"])
            await ws.send_str(json.dumps({"id": req["id"], "result": None}))
            for name in req["params"] if req["method"] == "SUBSCRIBE" else ():
                prefix, _, kind = name.partition("@")
                first = {"depth": self.books, "ticker": self.tickers}.get(kind, {}).get(prefix)
                if first is not None:
                    await ws.send_str(json.dumps({"stream": name, "data": first}))
        return ws

    async def publish(self, stream: str, data: dict[str, Any]) -> None:
        for ws, subs in self.feeds:
            if stream in subs and not ws.closed:
                await ws.send_str(json.dumps({"stream": stream, "data": data}))

    async def exchange_info(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "symbols": [
                    {
                        "symbol": s["symbol"],
                        "pricePrecision": s["priceDecimals"],
                        "quantityPrecision": s["qtyDecimals"],
                        "tickSize": self.rules[s["symbol"]][0],
                        "stepSize": self.rules[s["symbol"]][1],
                    }
                    for s in self.listed
                    if s["symbol"] in self.rules
                ]
            }
        )

    async def new_order(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.orders.append(form)
        return web.json_response(
            {
                "orderId": len(self.orders),
                "side": form["side"],
                "type": form["type"],
                "status": "NEW",
                "executedQty": "0.0000",
                "origQty": form["quantity"],
                "fills": [],
            }
        )

    async def revoke_key(self, request: web.Request) -> web.Response:
        self.revokes_asked += 1
        while self.revoke_hangs:  # the API does not answer
            await asyncio.sleep(0.05)
        return await super().revoke_key(request)

    async def push(self, seq: int, event: str, data: dict[str, Any]) -> None:
        """A private-stream event on the newest stream."""
        _, ws = self.streams[-1]
        await ws.send_str(json.dumps({"event": event, "seq": seq, "data": data}))


@asynccontextmanager
async def page(fake: Fake, profile: Path) -> AsyncIterator[DevTools]:
    routes: list[Route] = [
        ("GET", "/api/config", fake.config),
        ("GET", "/api/symbols", fake.symbols),
        ("GET", "/api/klines", fake.klines),
        ("GET", "/api/trades", fake.empty),
        ("GET", "/ws", fake.market_ws),
        ("POST", "/api/v1/apiKey", fake.create_key),
        ("DELETE", "/api/v1/apiKey", fake.revoke_key),
        ("GET", "/api/v1/time", fake.time),
        ("GET", "/api/v1/account", fake.account),
        ("GET", "/api/v1/myTrades", fake.my_trades),
        ("GET", "/api/v1/exchangeInfo", fake.exchange_info),
        ("POST", "/api/v1/order", fake.new_order),
        ("GET", "/api/v1/stream", fake.stream),
        ("GET", "/", fake.static),
        ("GET", "/{name}", fake.static),
    ]
    try:
        async with served(
            routes, profile, PAGE_STATE, lambda port: setattr(fake, "port", port)
        ) as tools:
            await tools.wait_for("the symbols", lambda s: s["options"] == len(fake.listed))
            await tools.wait_for("the trading panel", lambda s: s["trading"])
            yield tools
    finally:
        fake.revoke_hangs = False
        for _, ws in fake.streams:
            await ws.close()
        for ws, _ in fake.feeds:
            await ws.close()


async def logged_in(tools: DevTools) -> None:
    await log_in(tools, "ALICE")
    await tools.wait_for("the private stream", lambda s: s["stream"] == "live")


def pick(stream: str) -> str:
    return (
        f'document.getElementById("symbol").value = {json.dumps(stream)};'
        'document.getElementById("symbol").dispatchEvent(new Event("change"));'
    )


# -- open orders ---------------------------------------------------------------------------------


def stop_order(status: str, exec_type: str) -> dict[str, Any]:
    return {
        "symbol": "BTC-USD",
        "orderId": 41,
        "clientOrderId": "stop-1",
        "price": "95.00",
        "origQty": "0.1000",
        "executedQty": "0.0000",
        "status": status,
        "timeInForce": "GTC",
        "type": "STOP_LOSS_LIMIT",
        "side": "SELL",
        "stopPrice": "96.00",
        "time": 1_700_000_000_000,
        "isWorking": False,  # not on the book until its trigger
        "executionType": exec_type,
        "eventTime": 1_700_000_000_000,
    }


def test_a_stop_order_stays_in_the_open_orders_until_it_ends(tmp_path: Path) -> None:
    async def body() -> None:
        fake = Fake([symbol("BTC-USD")])
        async with page(fake, tmp_path / "chromium") as tools:
            await logged_in(tools)
            await fake.push(2, "executionReport", stop_order("NEW", "NEW"))
            await tools.wait_for("the stop order", lambda s: s["orders"] == ["41"], timeout=3)
            await fake.push(3, "executionReport", stop_order("CANCELED", "CANCELED"))
            await tools.wait_for("the stop order gone", lambda s: s["orders"] == [], timeout=3)

    run(body())


# -- the order form ------------------------------------------------------------------------------


def test_a_price_or_size_finer_than_tick_or_lot_is_refused_before_sending(
    tmp_path: Path,
) -> None:
    async def body() -> None:
        fake = Fake([symbol("BTC-USD")])
        fake.rules["BTC-USD"] = ("0.05", "0.0010")
        async with page(fake, tmp_path / "chromium") as tools:
            await logged_in(tools)
            limit = {"side": "BUY", "type": "LIMIT", "timeInForce": "GTC"}
            for fields, why in (
                ({"price": "100.005", "quantity": "0.1000"}, "price 100.005 is not a multiple "
                 "of tick 0.05 (symbol=BTC-USD)"),
                ({"price": "100.07", "quantity": "0.1000"}, "price 100.07 is not a multiple "
                 "of tick 0.05 (symbol=BTC-USD)"),
                ({"price": "100.05", "quantity": "0.12345"}, "quantity 0.12345 is not a "
                 "multiple of lot 0.0010 (symbol=BTC-USD)"),
                ({"price": "100.05", "quantity": "0.1235"}, "quantity 0.1235 is not a "
                 "multiple of lot 0.0010 (symbol=BTC-USD)"),
            ):  # fmt: skip
                await evaluate(tools, 'document.getElementById("order-result").textContent = ""')
                await act(tools, {**limit, **fields}, "#order-submit")
                state = await tools.wait_for("an answer", answered, timeout=3)
                assert (state["result"], state["resultClass"]) == (why, "msg error")
            assert fake.orders == [], f"sent to the API: {fake.orders}"
            await act(tools, {**limit, "price": "100.05", "quantity": "0.1230"}, "#order-submit")
            await tools.wait_for("the order sent", lambda s: "#1" in s["result"], timeout=3)
            assert [(o["price"], o["quantity"]) for o in fake.orders] == [("100.05", "0.1230")]

    run(body())


def answered(state: dict[str, Any]) -> bool:
    return state["result"] not in ("", "sending...")


# -- the ticker and the chart --------------------------------------------------------------------


def test_a_symbol_without_trades_shows_no_ticker(tmp_path: Path) -> None:
    async def body() -> None:
        fake = Fake([symbol("BTC-USD"), symbol("ETH-USD")])
        fake.books = {"btc-usd": snapshot(5, [], []), "eth-usd": snapshot(7, [], [])}
        fake.tickers["btc-usd"] = ticker("100.00")  # ETH has not traded yet: no ticker
        async with page(fake, tmp_path / "chromium") as tools:
            await tools.wait_for("btc's ticker", lambda s: s["last"] == "100.00")
            await evaluate(tools, pick("eth-usd"))
            state = await tools.wait_for("eth's book", lambda s: s["bookId"] == "#7")
            assert state["last"] == "-", f"ETH-USD shows BTC-USD's last price {state['last']}"

    run(body())


def candle(t: int, o: str, h: str, low: str, c: str) -> dict[str, Any]:
    return {"t": t, "T": t + 59_999, "i": "1m", "o": o, "h": h, "l": low, "c": c, "v": "1"}


def test_the_chart_axis_shows_the_symbols_precision(tmp_path: Path) -> None:
    async def body() -> None:
        fake = Fake([symbol("ETH-BTC", price_decimals=5, qty_decimals=3)])
        t0 = 1_700_000_040_000
        fake.candles["eth-btc"] = [
            candle(t0, "0.05230", "0.05250", "0.05200", "0.05240"),
            candle(t0 + 60_000, "0.05240", "0.05280", "0.05220", "0.05250"),
        ]
        async with page(fake, tmp_path / "chromium") as tools:
            await tools.wait_for("the candles", lambda s: s["candles"] == 2)
            await evaluate(tools, CAPTURE_LABELS)
            state = await tools.wait_for("the axis", lambda s: len(s["labels"]) == 5)
            assert state["labels"] == ["0.05200", "0.05220", "0.05240", "0.05260", "0.05280"]

    run(body())


# -- log out -------------------------------------------------------------------------------------


def test_a_logout_stops_the_private_stream_while_the_api_does_not_answer(tmp_path: Path) -> None:
    async def body() -> None:
        fake = Fake([symbol("BTC-USD")])
        async with page(fake, tmp_path / "chromium") as tools:
            await logged_in(tools)
            fake.revoke_hangs = True  # the REST API is stuck (a slow database, a GC pause)
            await evaluate(tools, 'document.getElementById("logout").click()')
            await tools.wait_for("logged out", lambda s: not s["loggedIn"], timeout=3)
            for _ in range(40):
                if not fake.open_streams():
                    break
                await asyncio.sleep(0.05)
            assert fake.open_streams() == [], "the private stream is still open"
            for _ in range(40):  # the key is still revoked, in the background: the page may
                if fake.revokes_asked:  # close the stream before its revoke reaches us
                    break
                await asyncio.sleep(0.05)
            assert fake.revokes_asked == 1
            fake.revoke_hangs = False
            for _ in range(100):  # the hung revoke answers (up to 5 s on a loaded host)
                if fake.revoked == fake.created:
                    break
                await asyncio.sleep(0.05)
            assert fake.revoked == fake.created

    run(body())


# -- the book ------------------------------------------------------------------------------------


def test_the_book_orders_prices_a_double_cannot_tell_apart(tmp_path: Path) -> None:
    async def body() -> None:
        fake = Fake([symbol("ETH-WEI", price_decimals=12, qty_decimals=0)])
        fake.books["eth-wei"] = snapshot(10, [], [])
        p = "100000.00000000000"  # 1e17 price units: one double spans about 15 of them
        async with page(fake, tmp_path / "chromium") as tools:
            await tools.wait_for("the empty book", lambda s: s["bookId"] == "#10")
            for k, (bids, asks) in enumerate(
                (
                    ([[f"{p}1", "1"]], [[f"{p}8", "1"]]),
                    ([[f"{p}3", "2"]], [[f"{p}5", "1"]]),
                    ([[f"{p}2", "3"]], [[f"{p}9", "1"], [f"{p}8", "0"]]),
                ),
                start=11,
            ):
                diff = {"e": "depthUpdate", "U": k, "u": k, "b": bids, "a": asks}
                await fake.publish("eth-wei@depth", diff)
            state = await tools.wait_for("the diffs", lambda s: s["bookId"] == "#13")
            assert state["bids"] == [f"{p}3", f"{p}2", f"{p}1"]
            assert state["asks"] == [f"{p}9", f"{p}5"]  # the best ask just above the spread
            assert state["spread"] == "spread 0.000000000002"

    run(body())


def test_the_book_shows_when_the_history_does_not_load(tmp_path: Path) -> None:
    async def body() -> None:
        fake = Fake([symbol("BTC-USD")])
        fake.books["btc-usd"] = snapshot(20, [["99.00", "1.0000"]], [["101.00", "2.0000"]])
        fake.history_failures = 1  # the candles' request fails once (a restart, a proxy)
        async with page(fake, tmp_path / "chromium") as tools:
            state = await tools.wait_for("the book", lambda s: s["bookId"] == "#20", timeout=5)
            assert (state["bids"], state["asks"]) == (["99.00"], ["101.00"])
            diff = {"e": "depthUpdate", "U": 21, "u": 21, "b": [["99.50", "1.0000"]], "a": []}
            await fake.publish("btc-usd@depth", diff)
            state = await tools.wait_for("the diff", lambda s: s["bookId"] == "#21", timeout=3)
            assert state["bids"] == ["99.50", "99.00"] and state["spread"] == "spread 1.50"

    run(body())
