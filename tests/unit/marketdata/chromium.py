"""Headless Chromium for the page tests, driven over its DevTools protocol with the websockets
client we already have. Needs Debian's ``chromium`` (``apt-get install -y chromium``); the
tests that use it are skipped when it is missing (``needs_chromium``)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium: apt-get install -y chromium"
)


class DevTools:
    """One tab: ``call`` a DevTools method, read the page's state with ``state_js`` (a
    JavaScript expression that returns one JSON string), wait until it shows something."""

    def __init__(self, ws: ClientConnection, state_js: str = "null") -> None:
        self.ws = ws
        self.state_js = state_js
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
        out = await self.call("Runtime.evaluate", expression=self.state_js, returnByValue=True)
        if "exceptionDetails" in out or "value" not in out["result"]:
            return None
        value: dict[str, Any] = json.loads(out["result"]["value"])
        return value

    async def wait_for(
        self, what: str, check: Callable[[dict[str, Any]], Any], timeout: float = 15
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            state = await self.state()
            if state is not None and check(state):
                return state
            assert time.monotonic() < deadline, f"the page never showed {what}: {state}"
            await asyncio.sleep(0.1)


@asynccontextmanager
async def browser(profile_dir: Path, state_js: str) -> AsyncIterator[DevTools]:
    """Headless Chromium; yields its first tab's DevTools connection."""
    assert CHROMIUM is not None
    proc = subprocess.Popen(
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
        active = profile_dir / "DevToolsActivePort"
        # 60 s: a make test on the 2-core VM once saw none within 20 s (three workers busy)
        deadline = time.monotonic() + 60
        while not active.exists() or not active.read_text().strip():
            assert proc.poll() is None, f"chromium exited with {proc.returncode} at its start"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            await asyncio.sleep(0.05)
        cdp_port = int(active.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{cdp_port}/json/list") as r:
            pages = [t for t in json.loads(r.read()) if t["type"] == "page"]
        async with connect(pages[0]["webSocketDebuggerUrl"], max_size=None) as ws:
            yield DevTools(ws, state_js)
    finally:
        proc.terminate()
        proc.wait(10)
