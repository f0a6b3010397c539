"""Bugs a sixth hostile review of the market-data process found, one failing test each; each
passes once its bug is fixed:

- ``Outbox`` conflates ``<symbol>@status`` like a ticker: a client that is a single message
  behind when a halt and its resume come never learns of the halt, where a client that keeps
  up gets both (README: "the status at subscription, then each halt and resume"; issue 6 lets
  only ticker and candles conflate).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from procs.common.records import SymbolStatus
from procs.common.types import AdminAction, TradingStatus
from procs.core.market.state import MarketState, Update
from procs.marketdata.hub import Hub, Message
from procs.marketdata.outbox import Outbox
from procs.marketdata.streams import parse_stream

from .events import OTHER, SYMBOL, trade


class QueuedClient:
    """A subscriber whose socket is behind: what the server's ``Client`` does once its
    outbox holds something (every message goes through the outbox), then what the client
    reads when its socket drains."""

    def __init__(self, hub: Hub, limit: int = 1000) -> None:
        self.streams: set[str] = set()
        self.outbox = Outbox(limit, hub.depth_snapshot)

    def deliver(self, messages: Sequence[Message], frames: bytes) -> None:
        for m in messages:
            assert self.outbox.push(m.kind, m.stream, m.payload, m.final) is None

    def deliver_snapshot(self, stream: str, payload: bytes) -> None:
        self.outbox.push_snapshot(stream, payload)

    def read_all(self) -> list[dict[str, Any]]:
        out = []
        while (payload := self.outbox.pop()) is not None:
            out.append(json.loads(payload))
        return out


def _publish(state: MarketState, hub: Hub, events: list[object]) -> None:
    updates: list[Update] = []
    for event in events:
        state.process(event, updates)  # type: ignore[arg-type]
    hub.publish(updates + state.flush())


def test_a_client_behind_by_one_message_still_sees_a_halt_and_its_resume() -> None:
    """README (market data): ``<symbol>@status`` gives "the status at subscription, then
    each halt and resume"; issue 6 lists what a slow client's queue may conflate: "ticker and
    candles conflate to the latest value" (the outbox's own docstring: ticker, kline and
    heartbeats). A status is not a value to conflate: a client that is one trade behind when
    a halt and its resume come gets only "TRADING" (the halt, replaced in place), while one
    that keeps up gets "HALT" then "TRADING" (``test_server``'s status test): whether a
    client learns that trading was halted depends on its socket's speed.
    Expected: the queued client reads HALT (u=7) then TRADING (u=9), as a fast one does."""
    state = MarketState([SYMBOL, OTHER])
    hub = Hub(state, depth_levels=100, max_subscriptions=10)
    client = QueuedClient(hub)
    streams = [parse_stream(n, hub.symbols) for n in ("btc-usd@trade", "btc-usd@status")]
    hub.subscribe(client, streams)
    assert [m["data"]["S"] for m in client.read_all()] == ["TRADING"]  # read: all caught up
    now = time.time_ns()
    _publish(state, hub, [trade(5, 1, 10_000, 1, ts=now)])  # the client is one message behind
    _publish(
        state,
        hub,
        [
            SymbolStatus(7, now, 1, AdminAction.HALT, TradingStatus.HALTED),
            SymbolStatus(9, now, 1, AdminAction.RESUME, TradingStatus.OPEN),
        ],
    )
    got = [
        (m["data"]["S"], m["data"]["u"])
        for m in client.read_all()
        if m["stream"] == "btc-usd@status"
    ]
    assert got == [("HALT", 7), ("TRADING", 9)]
