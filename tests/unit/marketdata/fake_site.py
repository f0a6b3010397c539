"""Serving the real page's files beside scripted handlers, for tests that put an answer
exactly where a race is (the page reviews' fakes): an aiohttp site on a free port, the page
opened in headless Chromium, and the small helpers those tests share."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web

from tests.unit.marketdata.chromium import DevTools, browser

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Route = tuple[str, str, Handler]  # method, path, handler


@asynccontextmanager
async def served(
    routes: list[Route], profile: Path, state_js: str, port_to: Callable[[int], None]
) -> AsyncIterator[DevTools]:
    """The ``routes`` on 127.0.0.1 (their port told to ``port_to`` before the page loads),
    and the page at ``/`` in Chromium; everything closed after."""
    app = web.Application()
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    port_to(port)
    try:
        async with browser(profile, state_js) as tools:
            await tools.call("Page.navigate", url=f"http://127.0.0.1:{port}/")
            yield tools
    finally:
        await runner.cleanup()


async def evaluate(tools: DevTools, expression: str) -> None:
    out = await tools.call("Runtime.evaluate", expression=expression)
    assert "exceptionDetails" not in out, out


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 40))
