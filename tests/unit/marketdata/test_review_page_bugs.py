"""Bugs a hostile review of the browser page (``procs/marketdata/static``) found, one test each,
each failed on the page as reviewed and passes since its fix. The page runs in headless
Chromium against a scripted fake of the market-data server (aiohttp: the page's files,
``/api/*`` and ``/ws``), so that each test can put a message or a slow answer exactly where
the race is:

- changing the candle interval re-subscribes the trade stream and clears the tape, and a trade
  already on the wire lands in the cleared table and again from the history: shown twice;
- the tape is loaded from ``/api/trades`` before the trade stream is subscribed: a trade in
  between is never shown;
- a symbol change while the previous symbol's history is still loading lets that history land
  on the new symbol's tape, and subscribes the previous symbol's streams after the new ones;
- a connection whose heartbeats stop is labelled "disconnected" but never replaced: the page
  keeps its stale book and tape for good.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from procs.marketdata.web import STATIC_DIR

from .chromium import DevTools, needs_chromium
from .fake_site import Route, evaluate, run, served

pytestmark = needs_chromium

SYMBOLS = ("btc-usd", "eth-usd")

PAGE_STATE = """JSON.stringify({
  status: document.getElementById("status").textContent,
  options: document.getElementById("symbol").options.length,
  trades: [...document.querySelectorAll("#trades tbody tr")].map(r => r.dataset.tradeId),
})"""


def trade(stream: str, trade_id: int) -> dict[str, Any]:
    return {
        "e": "trade",
        "E": 1_700_000_000_000,
        "s": stream.upper(),
        "t": trade_id,
        "p": "100.00",
        "q": "1.0000",
        "T": 1_700_000_000_000,
        "m": False,
        "u": trade_id,
    }


class Fake:
    """The market-data server as the page sees it, with hooks where the races are."""

    def __init__(self) -> None:
        self.tape: dict[str, list[dict[str, Any]]] = {s: [] for s in SYMBOLS}
        self.sockets: list[tuple[web.WebSocketResponse, set[str]]] = []
        self.requests: list[tuple[int, dict[str, Any]]] = []  # (connection, request)
        self.trades_served: list[str] = []
        self.trades_delay: dict[str, float] = {}
        self.heartbeats = True
        #: Called with the symbol after /api/trades answered (the answer is already sent).
        self.after_trades: Callable[[str], Awaitable[None]] | None = None
        #: Called with (socket, request) before an UNSUBSCRIBE is handled.
        self.before_unsubscribe: Callable[[web.WebSocketResponse], Awaitable[None]] | None = None
        self.port = 0

    def add_trade(self, symbol: str, trade_id: int) -> dict[str, Any]:
        t = trade(symbol, trade_id)
        self.tape[symbol].append(t)
        return t

    async def broadcast(self, symbol: str, data: dict[str, Any]) -> None:
        stream = f"{symbol}@trade"
        for ws, subs in self.sockets:
            if stream in subs and not ws.closed:
                await ws.send_str(json.dumps({"stream": stream, "data": data}))

    def subscriptions(self) -> set[str]:
        """The streams of the newest connection."""
        return set(self.sockets[-1][1]) if self.sockets else set()

    # -- handlers -----------------------------------------------------------------------------

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info.get("name") or "index.html"
        path = STATIC_DIR / name
        if not path.is_file():
            raise web.HTTPNotFound()
        types = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
        return web.Response(body=path.read_bytes(), content_type=types[path.suffix])

    async def config(self, request: web.Request) -> web.Response:
        return web.json_response({"rest": None})

    async def symbols(self, request: web.Request) -> web.Response:
        return web.json_response(
            [
                {"symbol": s.upper(), "stream": s, "priceDecimals": 2, "qtyDecimals": 4}
                for s in SYMBOLS
            ]
        )

    async def klines(self, request: web.Request) -> web.Response:
        return web.json_response([])

    async def trades(self, request: web.Request) -> web.StreamResponse:
        symbol = request.query["symbol"]
        self.trades_served.append(symbol)
        await asyncio.sleep(self.trades_delay.get(symbol, 0))
        limit = int(request.query.get("limit", "500"))
        resp = web.json_response(self.tape[symbol][-limit:])
        await resp.prepare(request)
        await resp.write_eof()
        if self.after_trades is not None:
            await self.after_trades(symbol)
        return resp

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        subs: set[str] = set()
        self.sockets.append((ws, subs))
        conn = len(self.sockets)
        beat = asyncio.create_task(self._beat(ws))
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                req = json.loads(msg.data)
                self.requests.append((conn, req))
                if req["method"] == "UNSUBSCRIBE":
                    if self.before_unsubscribe is not None:
                        await self.before_unsubscribe(ws)
                    subs.difference_update(req["params"])
                else:
                    subs.update(req["params"])
                await ws.send_str(json.dumps({"id": req["id"], "result": None}))
                for name in req["params"] if req["method"] == "SUBSCRIBE" else ():
                    if name.endswith("@depth"):
                        snapshot = {"e": "depthSnapshot", "lastUpdateId": 1, "bids": [], "asks": []}
                        await ws.send_str(json.dumps({"stream": name, "data": snapshot}))
        finally:
            beat.cancel()
        return ws

    async def _beat(self, ws: web.WebSocketResponse) -> None:
        while not ws.closed:
            if self.heartbeats:
                data = {"e": "heartbeat", "E": 0}
                await ws.send_str(json.dumps({"stream": "heartbeat", "data": data}))
            await asyncio.sleep(0.3)


@asynccontextmanager
async def page(fake: Fake, profile: Path) -> AsyncIterator[DevTools]:
    routes: list[Route] = [
        ("GET", "/api/config", fake.config),
        ("GET", "/api/symbols", fake.symbols),
        ("GET", "/api/klines", fake.klines),
        ("GET", "/api/trades", fake.trades),
        ("GET", "/ws", fake.ws),
        ("GET", "/", fake.static),
        ("GET", "/{name}", fake.static),
    ]
    try:
        async with served(
            routes, profile, PAGE_STATE, lambda port: setattr(fake, "port", port)
        ) as tools:
            yield tools
    finally:
        for ws, _ in fake.sockets:
            await ws.close()


def subscribed(fake: Fake, symbol: str) -> bool:
    return f"{symbol}@trade" in fake.subscriptions()


# -- the trade tape ----------------------------------------------------------------------------


def test_an_interval_change_does_not_show_a_trade_twice(tmp_path: Path) -> None:
    async def body() -> None:
        fake = Fake()
        for k in (1, 2):
            fake.add_trade("btc-usd", k)
        async with page(fake, tmp_path / "chromium") as tools:
            await tools.wait_for("the tape", lambda s: s["trades"] == ["2", "1"])
            while not subscribed(fake, "btc-usd"):
                await asyncio.sleep(0.05)

            async def in_flight(ws: web.WebSocketResponse) -> None:
                # trade 3 happened and went out just before the server read the UNSUBSCRIBE
                fake.before_unsubscribe = None
                await fake.broadcast("btc-usd", fake.add_trade("btc-usd", 3))

            fake.before_unsubscribe = in_flight
            fake.trades_delay["btc-usd"] = 0.3  # the history answers after the frame lands
            await evaluate(
                tools,
                'document.getElementById("interval").value = "5m";'
                'document.getElementById("interval").dispatchEvent(new Event("change"));',
            )
            await asyncio.sleep(1.0)
            state = await tools.wait_for("trade 3", lambda s: "3" in s["trades"])
            assert state["trades"] == ["3", "2", "1"], state["trades"]

    run(body())


def test_a_trade_between_the_history_and_the_subscription_is_shown(tmp_path: Path) -> None:
    async def body() -> None:
        fake = Fake()
        for k in (1, 2):
            fake.add_trade("btc-usd", k)

        async def trade_3(symbol: str) -> None:
            # the tape moves on right after the history answered; subscribers get it live
            fake.after_trades = None
            await fake.broadcast(symbol, fake.add_trade(symbol, 3))

        fake.after_trades = trade_3
        async with page(fake, tmp_path / "chromium") as tools:
            await tools.wait_for("the tape", lambda s: s["trades"][-2:] == ["2", "1"])
            while not subscribed(fake, "btc-usd"):
                await asyncio.sleep(0.05)
            await fake.broadcast("btc-usd", fake.add_trade("btc-usd", 4))
            state = await tools.wait_for("trade 4", lambda s: "4" in s["trades"])
            assert state["trades"] == ["4", "3", "2", "1"], state["trades"]

    run(body())


def test_a_symbol_change_during_loading_shows_only_the_new_symbol(tmp_path: Path) -> None:
    async def body() -> None:
        fake = Fake()
        for k in (1, 2):
            fake.add_trade("btc-usd", k)
        for k in (101, 102):
            fake.add_trade("eth-usd", k)
        fake.trades_delay["btc-usd"] = 1.0  # the first symbol's history is slow
        async with page(fake, tmp_path / "chromium") as tools:
            while "btc-usd" not in fake.trades_served:
                await asyncio.sleep(0.02)
            await evaluate(  # the user picks the other symbol meanwhile
                tools,
                'document.getElementById("symbol").value = "eth-usd";'
                'document.getElementById("symbol").dispatchEvent(new Event("change"));',
            )
            await tools.wait_for("eth's tape", lambda s: "102" in s["trades"])
            await asyncio.sleep(1.5)  # btc's history has come in by now
            state = await tools.wait_for("the page", lambda s: True)
            assert state["trades"] == ["102", "101"], state["trades"]
            assert not subscribed(fake, "btc-usd"), fake.subscriptions()

    run(body())


# -- the connection ----------------------------------------------------------------------------


def test_a_connection_whose_heartbeats_stop_is_replaced(tmp_path: Path) -> None:
    async def body() -> None:
        fake = Fake()
        fake.add_trade("btc-usd", 1)
        async with page(fake, tmp_path / "chromium") as tools:
            await tools.wait_for("live", lambda s: s["status"] == "live" and s["trades"])
            while not subscribed(fake, "btc-usd"):
                await asyncio.sleep(0.05)
            fake.heartbeats = False  # the connection stalls (a half-open TCP connection)
            await asyncio.sleep(0.5)
            # 16 s of silence, without the wait: the page checks every 5 s
            await evaluate(tools, "lastBeat = Date.now() - 16000")
            await tools.wait_for(  # replaced on the page's next look (every 5 s)
                "a new connection", lambda s: len(fake.sockets) >= 2, timeout=8
            )
            fake.heartbeats = True
            await tools.wait_for("live again", lambda s: s["status"] == "live")

    run(body())
