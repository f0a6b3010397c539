"""Review 274: trading from the browser page as a user does: the order form, the open orders,
fills and balances, and the market panels beside them over a symbol switch.

Reviewed: procs/marketdata/static/app.js (``select``, ``onMessage``, ``drawBook``,
``drawChart``, the book's click-to-price), procs/marketdata/static/trading.js (``sendOrder``,
``placeOrder``, ``onTypeChange``, ``cancelOrder``, ``cancelAll``, ``onPrivate``, ``login``,
``end``, ``reconnect``), procs/marketdata/static/amounts.js (``toUnits``, ``rulesOf``,
``amountProblem``); README's page rows and "The REST API and the private stream".

Rig: the real page's files in headless Chromium (``chromium.py``), served by
``fake_site.served`` beside a scripted market-data feed (two symbols; one symbol's history
slow to come, as a loaded market-data process answers), so that a test looks at the page
exactly while a symbol switch loads.

Faults found (each fixed; its test says what it was):

1. app.js:50-55 (``select``): a symbol switch sets ``book = null`` but leaves the book's
   tables, spread and ``#book-id`` drawn; ``drawBook`` runs again only once the new symbol's
   snapshot is replayed, after its history (klines, trades) has come. Meanwhile the page
   shows the previous symbol's bids and asks under the new symbol's name (the tape and the
   ticker beside it are cleared at once), and a click on a level (trading.js:557-561) puts
   the old symbol's price into the order form, next to a button that now says "buy
   ETH-USD". Fixed: in ``select``'s ``if (!sameSymbol)`` branch, empty
   ``$("asks").tBodies[0]`` and ``$("bids").tBodies[0]`` and set ``$("spread")`` to "-" and
   ``$("book-id")`` to "" (a ``clearBook()`` beside ``clearTicker()``).
2. app.js:49 and :68-72 (``select``): ``candles = []`` is set at once but ``drawChart`` runs
   only after the new history is in: the previous symbol's (or interval's) candles stay on
   the canvas, at their prices, under the new symbol for as long as its klines take. Fixed:
   call ``drawChart()`` right after ``candles = []`` in ``select`` (it paints the empty
   background), as the tape and ticker are cleared.

Sound (run: the passing tests): amounts.js refuses, on the page and naming the value,
symbol and tick/lot in the gateway's words, sizes with a comma, an exponent or a sign, and
prices and sizes finer than the tick/lot; BigInt units, so a 20-digit size is checked
exactly; zero and trailing zeros go to the API as typed (its refusal, ``must be positive``,
is then shown as is). The tape and ticker are cleared at a symbol switch. Sound (read, and
pinned by earlier reviews): ``sendOrder`` trims outer spaces and sends the typed strings,
never floats. A type switch resets time in force to one the type takes and disables the
stop price (not sent); LIMIT_MAKER sends no timeInForce (GTC by default). Open orders show
origQty and executedQty from each report, a stop stays listed until it ends, a cancel of an
order that filled meanwhile shows the API's "too late to cancel" and the row goes with the
FILLED report. A logout clears orders, fills, balances and the last answer, and answers to
an older session are dropped by ``sessionEpoch`` (read, pinned by earlier reviews). The
tape and ticker are cleared on a symbol switch and the old symbol's messages are filtered
by stream name (pinned below: the same switch as the faults).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from procs.marketdata.web import STATIC_DIR

from .chromium import DevTools, needs_chromium
from .fake_site import Route, evaluate, run, served

pytestmark = needs_chromium

SYMBOLS = [
    {"symbol": "BTC-USD", "stream": "btc-usd", "priceDecimals": 2, "qtyDecimals": 2},
    {"symbol": "ETH-USD", "stream": "eth-usd", "priceDecimals": 2, "qtyDecimals": 2},
]

STATE = """JSON.stringify({
  options: document.getElementById("symbol").options.length,
  symbol: document.getElementById("symbol").value,
  asks: [...document.querySelectorAll("#asks tbody tr")].map(r => r.cells[0].textContent),
  bids: [...document.querySelectorAll("#bids tbody tr")].map(r => r.cells[0].textContent),
  spread: document.getElementById("spread").textContent,
  bookId: document.getElementById("book-id").textContent,
  trades: [...document.querySelectorAll("#trades tbody tr")].map(r => r.cells[0].textContent),
  last: document.getElementById("t-last").textContent,
  price: document.querySelector('[name="price"]').value,
  button: document.getElementById("order-submit").textContent,
  candlePixels: (() => {
    const c = document.getElementById("chart"), g = c.getContext("2d");
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) {
      const [r, gr, b] = [d[i], d[i + 1], d[i + 2]];
      const green = r === 0x3f && gr === 0xb9 && b === 0x50;
      if (green || (r === 0xf8 && gr === 0x51 && b === 0x49)) n++;
    }
    return n;
  })(),
})"""

BTC_BOOK = {
    "e": "depthSnapshot",
    "lastUpdateId": 7,
    "bids": [["30000.00", "1.00"], ["29999.50", "2.00"]],
    "asks": [["30001.00", "1.50"]],
}
BTC_KLINES = [
    {"t": 1_700_000_000_000 + 60_000 * i, "o": "30000.00", "h": "30010.00",
     "l": "29990.00", "c": "30005.00", "v": "1.00", "i": "1m"}
    for i in range(10)
]  # fmt: skip
BTC_TRADE = {"e": "trade", "t": 1, "p": "30001.00", "q": "0.10", "T": 1_700_000_000_000, "m": 0}


class Market:
    """The market-data server as the page sees it: BTC-USD has a book, a trade and candles;
    ETH-USD's history takes ``eth_delay_s`` to come (a loaded server)."""

    def __init__(self) -> None:
        self.sockets: list[web.WebSocketResponse] = []
        self.subscribed: list[str] = []
        self.eth_delay_s = 4.0
        self.port = 0  # the site's: /api/config names it as the REST API's (trading.js on)

    async def static(self, request: web.Request) -> web.StreamResponse:
        path = STATIC_DIR / (request.match_info.get("name") or "index.html")
        if not path.is_file():
            raise web.HTTPNotFound()
        kind = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}[path.suffix]
        return web.Response(body=path.read_bytes(), content_type=kind)

    async def config(self, request: web.Request) -> web.Response:
        return web.json_response({"rest": {"host": "127.0.0.1", "port": self.port}})

    async def symbols(self, request: web.Request) -> web.Response:
        return web.json_response(SYMBOLS)

    async def klines(self, request: web.Request) -> web.Response:
        if request.query["symbol"] == "eth-usd":
            await asyncio.sleep(self.eth_delay_s)
            return web.json_response([])
        return web.json_response(BTC_KLINES)

    async def trades(self, request: web.Request) -> web.Response:
        if request.query["symbol"] == "eth-usd":
            await asyncio.sleep(self.eth_delay_s)
            return web.json_response([])
        return web.json_response([BTC_TRADE])

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.append(ws)
        async for msg in ws:
            req = json.loads(msg.data)
            await ws.send_str(json.dumps({"id": req["id"], "result": None}))
            if req.get("method") != "SUBSCRIBE":
                continue
            self.subscribed += req["params"]
            for stream in req["params"]:
                if stream == "btc-usd@depth":
                    await ws.send_str(json.dumps({"stream": stream, "data": BTC_BOOK}))
                elif stream == "btc-usd@ticker":
                    ticker = {"e": "24hrTicker", "c": "30001.00", "p": "1.00", "P": "0.01",
                              "o": "30000.00", "h": "30010.00", "l": "29990.00",
                              "v": "1.00", "q": "30000.00"}  # fmt: skip
                    await ws.send_str(json.dumps({"stream": stream, "data": ticker}))
                elif stream == "eth-usd@depth":  # its snapshot comes at once, as the feed's
                    book = {"e": "depthSnapshot", "lastUpdateId": 3, "bids": [], "asks": []}
                    await ws.send_str(json.dumps({"stream": stream, "data": book}))
        return ws

    def routes(self) -> list[Route]:
        return [
            ("GET", "/api/config", self.config),
            ("GET", "/api/symbols", self.symbols),
            ("GET", "/api/klines", self.klines),
            ("GET", "/api/trades", self.trades),
            ("GET", "/ws", self.ws),
            ("GET", "/", self.static),
            ("GET", "/{name}", self.static),
        ]


async def switch_to_eth(tools: DevTools, market: Market) -> dict[str, Any]:
    """BTC-USD's book, tape, ticker and candles shown, then ETH-USD picked; the page as it is
    half a second later (ETH-USD's history still on its way)."""
    await tools.wait_for(
        "BTC-USD's market",
        lambda s: s["asks"] and s["trades"] and s["last"] != "-" and s["candlePixels"] > 0,
    )
    await evaluate(
        tools,
        'const p = document.getElementById("symbol"); p.value = "eth-usd";'
        'p.dispatchEvent(new Event("change"))',
    )
    while "eth-usd@depth" not in market.subscribed:
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.5)
    state = await tools.wait_for("the page", lambda s: True)
    assert state["symbol"] == "eth-usd", state
    return state


# -- sound ---------------------------------------------------------------------------------------


def test_a_symbol_switch_clears_the_tape_and_ticker_at_once(tmp_path: Path) -> None:
    """Scenario: BTC-USD's tape and ticker shown; ETH-USD picked while its history loads.
    Expected and now: no BTC-USD trade nor last price shown under ETH-USD."""

    async def body() -> None:
        market = Market()
        async with served(market.routes(), tmp_path / "chromium", STATE, to(market)) as t:
            state = await switch_to_eth(t, market)
            assert state["trades"] == [] and state["last"] == "-", state

    run(body())


def test_odd_amounts_are_refused_on_the_page_naming_value_and_step(tmp_path: Path) -> None:
    """Scenario: amounts.js's check, as ``sendOrder`` calls it, on values typed oddly, for
    BTC-USD with exchangeInfo's tick 0.05 and lot 0.01. Expected and now: each refusal names
    the value, the tick or lot and the symbol; zero and a 20-digit size go to the API (its
    refusal is shown as is); trailing zeros beyond the decimals are the same value."""
    cases = {
        "1,5": "quantity 1,5 is not a decimal number (symbol=BTC-USD)",
        "1e3": "quantity 1e3 is not a decimal number (symbol=BTC-USD)",
        "-1": "quantity -1 is not a decimal number (symbol=BTC-USD)",
        "0.001": "quantity 0.001 is not a multiple of lot 0.01 (symbol=BTC-USD)",
        "12345678901234567890.011": (
            "quantity 12345678901234567890.011 is not a multiple of lot 0.01 (symbol=BTC-USD)"
        ),
        "12345678901234567890.01": None,
        "0": None,
        "1.000000": None,
    }
    check = """import("/amounts.js").then(m => {
      const rules = m.rulesOf({symbols: [{symbol: "BTC-USD", tickSize: "0.05",
        stepSize: "0.01", pricePrecision: 2, quantityPrecision: 2}]}, []);
      const out = {};
      for (const q of QUANTITIES) out[q] = m.amountProblem(
        {symbol: "BTC-USD", price: "100.05", quantity: q}, rules.get("BTC-USD"));
      out.price = m.amountProblem({symbol: "BTC-USD", price: "100.03", quantity: "1"},
        rules.get("BTC-USD"));
      return JSON.stringify(out);
    })""".replace("QUANTITIES", json.dumps(list(cases)))

    async def body() -> None:
        market = Market()
        async with served(market.routes(), tmp_path / "chromium", STATE, to(market)) as t:
            await t.wait_for("the symbols", lambda s: s["options"] == 2)
            out = await t.call(
                "Runtime.evaluate", expression=check, awaitPromise=True, returnByValue=True
            )
            got = json.loads(out["result"]["value"])
            price = got.pop("price")
            assert got == cases
            assert price == "price 100.03 is not a multiple of tick 0.05 (symbol=BTC-USD)"

    run(body())


def to(market: Market) -> Callable[[int], None]:
    return lambda port: setattr(market, "port", port)


# -- faults --------------------------------------------------------------------------------------


def test_a_symbol_switch_does_not_show_the_previous_symbols_book(tmp_path: Path) -> None:
    """Scenario: BTC-USD's book (bids 30000.00 / 29999.50, ask 30001.00) on the page; the
    user picks ETH-USD, whose klines and trades take 4 s to come, and clicks the top ask
    level to take its price, as the page invites. Expected: the book is emptied at the
    switch (as the tape and ticker are), so no BTC-USD level is shown under ETH-USD and
    the order form's price stays empty. Was (fixed): the BTC-USD levels, spread and book id stay
    drawn under ETH-USD for the whole load, and the click puts BTC-USD's 30001.00 into the
    price of an order whose button says "buy ETH-USD"."""

    async def body() -> None:
        market = Market()
        async with served(market.routes(), tmp_path / "chromium", STATE, to(market)) as t:
            await switch_to_eth(t, market)
            await evaluate(t, 'document.querySelector("#asks tbody tr")?.cells[0].click()')
            state = await t.wait_for("the page", lambda s: True)
            shown = (state["asks"], state["bids"], state["spread"], state["bookId"])
            took = (state["price"], state["button"])
            assert (shown, took[0]) == (([], [], "-", ""), ""), (
                f"BTC-USD's book under ETH-USD: {shown}; a click on it took {took}"
            )

    run(body())


def test_a_symbol_switch_does_not_show_the_previous_symbols_candles(tmp_path: Path) -> None:
    """Scenario: BTC-USD's ten candles on the chart; the user picks ETH-USD, whose klines
    take 4 s to come. Expected: the chart is cleared at the switch (no candle of another
    symbol drawn under ETH-USD). Was (fixed): BTC-USD's candles stay on the canvas, green and red
    pixels and all, until ETH-USD's klines answer."""

    async def body() -> None:
        market = Market()
        async with served(market.routes(), tmp_path / "chromium", STATE, to(market)) as t:
            state = await switch_to_eth(t, market)
            assert state["candlePixels"] == 0, (
                f"{state['candlePixels']} candle pixels of BTC-USD under ETH-USD"
            )

    run(body())
