"""The browser page in headless Chromium against the running market-data process: the book,
trades and ticker appear, and later trades and book changes show up live.

Needs Debian's ``chromium`` (``apt-get install -y chromium``); skipped when it is missing.
Chromium is driven over its DevTools protocol with the websockets client we already have."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import uvloop

from procs.common.types import Side

from .chromium import browser, needs_chromium
from .events import level, trade
from .test_process import marketdata_process

pytestmark = needs_chromium

#: What the test reads from the page, as one JSON value.
PAGE_STATE = """JSON.stringify({
  status: document.getElementById("status").textContent,
  last: document.getElementById("t-last").textContent,
  trades: [...document.querySelectorAll("#trades tbody tr")].map(r => r.dataset.tradeId),
  asks: [...document.querySelectorAll("#asks tbody tr")].map(r => r.cells[0].textContent),
  bids: [...document.querySelectorAll("#bids tbody tr")].map(r => r.cells[0].textContent),
})"""


def test_page_shows_book_trades_and_live_changes(instance: str, tmp_path: Path) -> None:
    with marketdata_process(instance, tmp_path) as (port, producer):
        now = time.time_ns()
        producer.publish_batch(
            [
                level(1, Side.SELL, 10_000, 50_000, ts=now),
                level(2, Side.BUY, 9_900, 30_000, ts=now),
                trade(3, 1, 10_000, 1_000, ts=now),
            ]
        )
        uvloop.run(drive(tmp_path / "chromium", port, producer))


async def drive(profile_dir: Path, port: int, producer: Any) -> None:
    async with browser(profile_dir, PAGE_STATE) as tools:
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
        state = await tools.wait_for(  # each stream's message lands when it lands: wait for all
            "the new trade, the book change and the ticker",
            lambda s: (
                s["trades"][:1] == ["2"]
                and "102.00" in s["asks"]
                and not s["bids"]
                and s["last"] == "101.00"
            ),
        )
