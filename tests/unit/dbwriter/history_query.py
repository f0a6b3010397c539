"""The REST API's history queries, run as the gateway runs them, for the writer's tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from config.schema import AssetConfig
from procs.gateway.history import History

T = TypeVar("T")


def query_history(
    dsn: str, make: Callable[[History], Awaitable[T]], assets: Sequence[AssetConfig] = ()
) -> T:
    """``make(history)`` on a fresh ``History`` over ``dsn`` (one connection), its answer;
    with ``assets``, as ``rest.py`` makes it (commissions shown in their asset's units)."""

    async def run() -> T:
        history = History(dsn, max_connections=1, assets=assets)
        await history.pool.open(wait=True)
        try:
            return await make(history)
        finally:
            await history.close()

    return asyncio.run(run())
