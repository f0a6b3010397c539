"""The browser page in headless Chromium against the running market-data process: the book,
trades and ticker appear, and later trades and book changes show up live.

Needs Debian's ``chromium`` (``apt-get install -y chromium``); skipped when it is missing.
Chromium is driven over its DevTools protocol with the websockets client we already have."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import uvloop
from websockets.asyncio.client import ClientConnection, connect

from procs.common.types import Side

from .events import level, trade
from .test_process import marketdata_process

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium: apt-get install -y chromium"
)

#: What the test reads from the page, as one JSON value.
PAGE_STATE = """JSON.stringify({
  status: document.getElementById("status").textContent,
  last: document.getElementById("t-last").textContent,
  trades: [...document.querySelectorAll("#trades tbody tr")].map(r => r.dataset.tradeId),
  asks: [...document.querySelectorAll("#asks tbody tr")].map(r => r.cells[0].textContent),
  bids: [...document.querySelectorAll("#bids tbody tr")].map(r => r.cells[0].textContent),
})"""


class DevTools:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._id = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        await self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
            if msg.get("id") == self._id:
                assert "error" not in msg, msg
                result: dict[str, Any] = msg["result"]
                return result

    async def state(self) -> dict[str, Any] | None:
        """The page's state, or None while it is still loading (the script throws)."""
        out = await self.call("Runtime.evaluate", expression=PAGE_STATE, returnByValue=True)
        if "exceptionDetails" in out or "value" not in out["result"]:
            return None
        value: dict[str, Any] = json.loads(out["result"]["value"])
        return value

    async def wait_for(self, what: str, check: Any, timeout: float = 15) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            state = await self.state()
            if state is not None and check(state):
                return state
            assert time.monotonic() < deadline, f"page never showed {what}: {state}"
            await asyncio.sleep(0.1)


def test_page_shows_book_trades_and_live_changes(instance: str, tmp_path: Path) -> None:
    assert CHROMIUM is not None
    profile_dir = tmp_path / "chromium"
    browser = subprocess.Popen(
        [
            CHROMIUM,
            "--headless=new",
            "--no-sandbox",  # tests run as root
            "--disable-gpu",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile_dir}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with marketdata_process(instance, tmp_path) as (port, producer):
            now = time.time_ns()
            producer.publish_batch(
                [
                    level(1, Side.SELL, 10_000, 50_000, ts=now),
                    level(2, Side.BUY, 9_900, 30_000, ts=now),
                    trade(3, 1, 10_000, 1_000, ts=now),
                ]
            )
            uvloop.run(drive(profile_dir, port, producer))
    finally:
        browser.terminate()
        browser.wait(10)


async def drive(profile_dir: Path, port: int, producer: Any) -> None:
    active = profile_dir / "DevToolsActivePort"
    deadline = time.monotonic() + 20
    while not active.exists() or not active.read_text().strip():
        assert time.monotonic() < deadline, "chromium did not open its DevTools port"
        await asyncio.sleep(0.05)
    cdp_port = int(active.read_text().split()[0])
    with urllib.request.urlopen(f"http://127.0.0.1:{cdp_port}/json/list") as r:
        pages = [t for t in json.loads(r.read()) if t["type"] == "page"]
    async with connect(pages[0]["webSocketDebuggerUrl"], max_size=None) as ws:
        tools = DevTools(ws)
        await tools.call("Page.navigate", url=f"http://127.0.0.1:{port}/")
        state = await tools.wait_for(
            "the book, the tape and the ticker",
            lambda s: (
                s["status"] == "live"
                and s["asks"]
                and s["bids"]
                and s["trades"]
                and s["last"] == "100.00"
            ),
        )
        assert state["asks"] == ["100.00"] and state["bids"] == ["99.00"]
        assert state["trades"] == ["1"]
        now = time.time_ns()
        producer.publish_batch(
            [
                trade(4, 2, 10_100, 2_000, ts=now),
                level(4, Side.SELL, 10_200, 7_000, ts=now),
                level(5, Side.BUY, 9_900, 0, ts=now),
            ]
        )
        state = await tools.wait_for(
            "the new trade and the book change",
            lambda s: s["trades"][:1] == ["2"] and "102.00" in s["asks"] and not s["bids"],
        )
        assert state["last"] == "101.00"
