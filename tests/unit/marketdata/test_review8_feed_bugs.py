"""Bugs an eighth hostile review of the market-data feed found, each against what a client
of a Binance-style feed reads, over a real matcher output ring and a real WebSocket client;
each test failed before its fix:

- the 24h ticker had no ``w`` (weighted average price: quote volume / volume) and no ``Q``
  (the last trade's quantity): a client reading them got a ``KeyError``;
- a kline had no ``f`` and ``L`` (its first and last trade ids): a client cannot tell which
  trades a candle holds, nor match it to the trade stream;
- a 24h window that rolled past its last trade still said ``L`` = that trade (beside ``F``
  0 and ``n`` 0): a trade outside the window.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import uvloop

from procs.common.records import Record
from procs.common.types import Side

from .events import MIN, level, trade
from .rig import Client, Rig, running


def run(instance: str, body: Any) -> None:
    async def main() -> None:
        async with running(instance) as rig:
            await asyncio.wait_for(body(rig), 20)

    uvloop.run(main())


def now_trade(seq: int, trade_id: int, price: int, qty: int) -> Record:
    return trade(seq, trade_id, price, qty, ts=time.time_ns())


async def data_of(c: Client, stream: str, match: Any) -> dict[str, Any]:
    msg = await c.until(lambda m: m.get("stream") == stream and match(m["data"]))
    data: dict[str, Any] = msg["data"]
    return data


def test_the_ticker_has_the_weighted_average_price_and_the_last_quantity(instance: str) -> None:
    """100.00 x 0.0001 then 110.00 x 0.0003: ``w`` = 0.043 / 0.0004 = 107.5 (at a
    notional's decimals, as ``q``), ``Q`` = "0.0003"; Binance's 24hrTicker has both."""

    async def body(rig: Rig) -> None:
        async with rig.client("/ws/btc-usd@ticker") as c:
            rig.publish([now_trade(1, 1, 10_000, 1), now_trade(2, 2, 11_000, 3)])
            t = await data_of(c, "btc-usd@ticker", lambda d: d["n"] == 2)
            assert (t["q"], t["v"], t["c"]) == ("0.043000", "0.0004", "110.00")
            assert t.get("w") == "107.500000"
            assert t.get("Q") == "0.0003"

    run(instance, body)


def test_a_kline_names_its_first_and_last_trade(instance: str) -> None:
    """Trades 7 and 8 in one minute, 9 in the next: the closed candle says ``f`` 7, ``L``
    8, the open one ``f`` 9, ``L`` 9; a flat candle (no trade yet) says 0 and 0, as the
    ticker's ``F`` does for an empty window. Event time alone drives the candles here,
    minutes ahead of the wall clock."""

    async def body(rig: Rig) -> None:
        rig.process.feed._next_clock = float("inf")  # no wall clock: the events' time only
        t0 = (time.time_ns() // MIN + 10) * MIN  # ahead of the wall clock it may have seen
        stream = "btc-usd@kline_1m"
        async with rig.client(f"/ws/{stream}") as c:
            rig.publish(
                [
                    trade(1, 7, 10_000, 1, ts=t0 + 1_000_000_000),
                    trade(2, 8, 10_100, 1, ts=t0 + 2_000_000_000),
                ]
            )
            k = (await data_of(c, stream, lambda d: d["k"]["n"] == 2))["k"]
            assert (k.get("f"), k.get("L"), k["x"]) == (7, 8, False)
            rig.publish([trade(3, 9, 10_200, 1, ts=t0 + MIN + 1_000_000_000)])
            closed = (await data_of(c, stream, lambda d: d["k"]["x"]))["k"]
            assert (closed.get("f"), closed.get("L"), closed["n"]) == (7, 8, 2)
            k = (await data_of(c, stream, lambda d: d["k"]["n"] == 1))["k"]
            assert (k.get("f"), k.get("L"), k["t"]) == (9, 9, (t0 + MIN) // 1_000_000)
            # a book change two minutes on moves the symbol's clock: a flat candle opens
            rig.publish([level(4, Side.BUY, 9_000, 1, ts=t0 + 3 * MIN)])
            k = (await data_of(c, stream, lambda d: d["k"]["t"] == (t0 + 3 * MIN) // 10**6))["k"]
            assert (k["n"], k.get("f"), k.get("L")) == (0, 0, 0)
        async with rig.client(f"/ws/{stream}") as c:  # the latest candle at subscription
            k = (await data_of(c, stream, lambda d: True))["k"]
            assert (k["t"], k["n"], k.get("f"), k.get("L")) == ((t0 + 3 * MIN) // 10**6, 0, 0, 0)

    run(instance, body)


def test_a_24h_window_that_empties_names_no_trade(instance: str) -> None:
    """Trades 1 (100.00) and 2 (120.00) ten minutes apart; a day later the window rolls
    past trade 1 (``o`` 120.00, ``F`` = ``L`` = 2, ``n`` 1), then past trade 2: it holds no
    trade, so ``F``, ``L`` and ``n`` are 0 (``L`` used to stay 2, a trade outside the
    window, with ``F`` 0 and ``n`` 0 beside it); ``c`` and ``Q`` still say the last trade.
    The symbol's clock is moved by book changes alone, minutes ahead of the wall clock."""

    async def body(rig: Rig) -> None:
        rig.process.feed._next_clock = float("inf")
        t0 = (time.time_ns() // MIN + 10) * MIN
        stream = "btc-usd@ticker"
        async with rig.client(f"/ws/{stream}") as c:
            rig.publish([trade(1, 1, 10_000, 2, ts=t0), trade(2, 2, 12_000, 1, ts=t0 + 10 * MIN)])
            await data_of(c, stream, lambda d: d["n"] == 2)
            rig.publish([level(3, Side.BUY, 9_000, 1, ts=t0 + 1440 * MIN)])
            t = await data_of(c, stream, lambda d: d["n"] == 1)
            assert (t["o"], t["h"], t["l"], t["c"], t["F"], t["L"]) == (
                *("120.00", "120.00", "120.00", "120.00"),
                *(2, 2),
            )
            assert (t["v"], t["q"], t["w"], t["Q"]) == (
                "0.0001",
                "0.012000",
                "120.000000",
                "0.0001",
            )
            rig.publish([level(4, Side.BUY, 9_000, 2, ts=t0 + 1450 * MIN)])
            t = await data_of(c, stream, lambda d: d["n"] == 0)
            assert (t["F"], t["L"], t["v"], t["w"]) == (0, 0, "0.0000", "0.000000")
            assert (t["o"], t["c"], t["p"], t["Q"]) == ("120.00", "120.00", "0.00", "0.0001")

    run(instance, body)
