"""Review 334: the 24hrTicker's fields and the request errors' codes against Binance's
documented stream payloads ("WebSocket Streams": ``<symbol>@ticker``, "Error Messages").

Rig: ``rig.running`` through ``test_adversarial_ws.run`` (the market-data process in this one
over a real matcher output ring, real ``websockets`` clients over TCP), events built with
``events.level`` and ``events.trade``.

Faults found:
1. The 24hrTicker had no ``b``, ``B``, ``a``, ``A`` (Binance's best bid and ask, price and
   quantity as decimal strings): ccxt's ``watchTicker`` reads its bid and ask from them (None
   here), and a parser mapping every documented key fails. Fixed: the ticker carries the
   book's best levels (``"0.00"``-style zeros for an empty side, as Binance sends them), and is
   sent again when a batch moved them, so they are never stale while the trades are quiet.
2. The request errors' codes were not Binance's: invalid JSON (and a binary frame) was 1,
   Binance's "invalid value type"; an unknown stream 3, Binance's invalid JSON; too many
   subscriptions 4, a code Binance has not. Binance answers invalid JSON 3 and every invalid
   request 2 (an unknown method, a bad id, an unknown stream: "Invalid request: invalid
   stream"). Fixed: the codes are Binance's, the messages still naming the value and limit.

3. The 24hrTicker had no ``x`` (the price of the trade before the window's first, Binance's
   previous close; REST ``prevClosePrice``): the rolling ticker dropped the close of the
   minute leaving its window. Fixed: ``RollingTicker`` keeps it (``prev_close``), the stream
   sends it as ``x`` and the REST ticker as ``prevClosePrice`` (zeros until the window first
   drops a trade, as Binance's before any).

Left: ``F``, ``L`` of 0 for an empty window (Binance: -1) is README's documented choice.
"""

from __future__ import annotations

import json
import time
from typing import Any

from procs.common.records import Record
from procs.common.types import Side
from procs.core.market.symbols import MarketSymbol
from procs.core.market.ticker import BUCKET_NS, WINDOW_BUCKETS, RollingTicker
from procs.marketdata import messages

from .events import level, trade
from .rig import Client, Rig
from .test_adversarial_ws import run


def now_trade(seq: int, trade_id: int, price: int, qty: int) -> Record:
    return trade(seq, trade_id, price, qty, ts=time.time_ns(), aggressor=Side.BUY)


def now_level(seq: int, side: Side, price: int, qty: int) -> Record:
    return level(seq, side, price, qty, ts=time.time_ns())


async def ticker_where(c: Client, match: Any) -> dict[str, Any]:
    msg = await c.until(lambda m: m.get("stream") == "btc-usd@ticker" and match(m["data"]))
    data: dict[str, Any] = msg["data"]
    return data


async def error_of(c: Client, raw: str | bytes) -> dict[str, Any]:
    await c.ws.send(raw)
    msg = await c.until(lambda m: "error" in m)
    err: dict[str, Any] = msg["error"]
    return err


# -- 1. the ticker's best bid and ask ---------------------------------------------------------


def test_the_ticker_carries_the_best_bid_and_ask(instance: str) -> None:
    """Scenario: a book of bid 99.00 x 2 and ask 101.00 x 3, a trade at 100.00, a client on
    ``btc-usd@ticker``. Expected: the 24hrTicker has ``b`` "99.00", ``B`` "2.0000", ``a``
    "101.00", ``A`` "3.0000" (decimal strings, as Binance's). Was (fixed): no ``b``, ``B``,
    ``a``, ``A`` at all."""

    async def body(rig: Rig) -> None:
        async with rig.client("/stream?streams=btc-usd@ticker") as c:
            rig.publish(
                [now_level(1, Side.BUY, 9_900, 20_000), now_level(1, Side.SELL, 10_100, 30_000)]
            )
            rig.publish([now_trade(2, 1, 10_000, 1)])
            t = await ticker_where(c, lambda d: d["n"] == 1)
            assert (t.get("b"), t.get("B"), t.get("a"), t.get("A")) == (
                "99.00", "2.0000", "101.00", "3.0000",
            )  # fmt: skip
        async with rig.client("/stream?streams=btc-usd@ticker") as late:  # its first message
            t = await ticker_where(late, lambda d: True)
            assert (t["b"], t["a"]) == ("99.00", "101.00")

    run(instance, body)


def test_the_ticker_follows_the_top_between_trades(instance: str) -> None:
    """Scenario: after a trade, a batch raises the best bid to 99.50 and nobody trades.
    Expected: a 24hrTicker with ``b`` "99.50" (Binance's ticker shows the bid as it is now),
    its trade counts unchanged. Was (fixed): no ticker until the next trade, so a ticker's
    bid and ask would be stale for as long as the market is quiet."""

    async def body(rig: Rig) -> None:
        async with rig.client("/stream?streams=btc-usd@ticker") as c:
            rig.publish([now_level(1, Side.BUY, 9_900, 20_000), now_trade(2, 1, 10_000, 1)])
            await ticker_where(c, lambda d: d["n"] == 1)
            rig.publish([now_level(3, Side.BUY, 9_950, 10_000)])
            t = await ticker_where(c, lambda d: d.get("b") == "99.50")
            assert (t["B"], t["n"], t["L"], t["c"]) == ("1.0000", 1, 1, "100.00")

    run(instance, body)


def test_an_empty_side_of_the_ticker_is_a_zero_string(instance: str) -> None:
    """Scenario: a trade with nothing resting on either side. Expected: ``b``, ``B``, ``a``,
    ``A`` are "0.00" / "0.0000" (Binance's zeros for an empty side: always a string, never
    null). Was (fixed): absent."""

    async def body(rig: Rig) -> None:
        async with rig.client("/stream?streams=btc-usd@ticker") as c:
            rig.publish([now_trade(1, 1, 10_000, 1)])
            t = await ticker_where(c, lambda d: d["n"] == 1)
            assert (t.get("b"), t.get("B"), t.get("a"), t.get("A")) == (
                "0.00", "0.0000", "0.00", "0.0000",
            )  # fmt: skip

    run(instance, body)


# -- 2. the request errors' codes ---------------------------------------------------------------


def test_invalid_json_is_code_3(instance: str) -> None:
    """Scenario: a client sends ``{`` and then a binary frame. Expected: ``{"error": {"code":
    3, ...}}`` both (Binance's "Invalid JSON"), the message saying what is wrong. Was (fixed):
    code 1, Binance's "Invalid value type"."""

    async def body(rig: Rig) -> None:
        async with rig.client("/stream") as c:
            err = await error_of(c, "{")
            assert err["code"] == 3 and "invalid JSON" in err["msg"], err
            err = await error_of(c, b'{"method": "LIST_SUBSCRIPTIONS"}')
            assert err["code"] == 3 and "binary" in err["msg"], err

    run(instance, body)


def test_an_unknown_stream_is_code_2(instance: str) -> None:
    """Scenario: SUBSCRIBE ``btc-usd@nope`` and ``xxx@trade``. Expected: code 2, Binance's
    "Invalid request: invalid stream", with the request's id and the name refused. Was
    (fixed): code 3, which Binance's clients read as invalid JSON."""

    async def body(rig: Rig) -> None:
        async with rig.client("/stream") as c:
            for name, said in (("btc-usd@nope", "'nope'"), ("xxx@trade", "'xxx'")):
                sent = {"method": "SUBSCRIBE", "params": [name], "id": 9}
                await c.ws.send(json.dumps(sent))
                msg = await c.until(lambda m: m.get("id") == 9)
                assert msg["error"]["code"] == 2 and said in msg["error"]["msg"], msg

    run(instance, body)


def test_bad_requests_are_code_2(instance: str) -> None:
    """Scenario: an unknown method, a float id, params not a list, an unknown field.
    Expected: code 2 each (Binance's "Invalid request"). Was: 2 already (kept)."""

    async def body(rig: Rig) -> None:
        async with rig.client("/stream") as c:
            for raw in (
                '{"method": "SET_PROPERTY", "params": ["combined", true], "id": 1}',
                '{"method": "SUBSCRIBE", "params": [], "id": 1.5}',
                '{"method": "SUBSCRIBE", "params": "btc-usd@trade", "id": 2}',
                '{"method": "SUBSCRIBE", "params": ["btc-usd@trade"], "x": 1}',
            ):
                err = await error_of(c, raw)
                assert err["code"] == 2, (raw, err)

    run(instance, body)


def test_too_many_subscriptions_is_code_2(instance: str) -> None:
    """Scenario: ``max_subscriptions`` 1, a connection on ``btc-usd@trade`` subscribes
    ``btc-usd@depth``. Expected: code 2 (an invalid request: Binance has no code of its own
    for it), the message naming 2 requested and the limit 1. Was (fixed): code 4, outside
    Binance's table."""

    async def body(rig: Rig) -> None:
        async with rig.client("/ws/btc-usd@trade") as c:
            answer = await c.request("SUBSCRIBE", ["btc-usd@depth"])
            err = answer["error"]
            assert err["code"] == 2 and "2 subscriptions" in err["msg"], err
            assert "at most 1 per connection" in err["msg"], err

    run(instance, body, max_subscriptions=1)


def test_the_ticker_keeps_the_close_before_its_window_as_x() -> None:
    """Scenario: trades at 100 then 105 in one minute, 110 an hour later; the window then
    rolls past the first minute, then past the second trade's hour too. Expected: ``x`` (and
    ``Ticker.prev_close``) "0.00" while no trade left the window, then 105 (the close of the
    minute that left), then 110 with the window empty (c still 110). Was (fixed): no ``x``;
    the rolling ticker kept no previous close."""
    sym = MarketSymbol(1, "BTC-USD", "btc-usd", 2, 4)
    t = RollingTicker(1)
    t.trade(0, 1, 100, 1)
    t.trade(1, 2, 105, 1)
    t.trade(60 * BUCKET_NS, 3, 110, 1)

    def x() -> str:
        ticker = t.ticker()
        assert ticker is not None
        _, raw = messages.ticker(sym, ticker)
        data: dict[str, Any] = json.loads(raw)["data"]
        assert data["x"] == sym.price(ticker.prev_close)
        return str(data["x"])

    assert x() == "0.00"
    t.advance(WINDOW_BUCKETS * BUCKET_NS)  # the first minute leaves
    assert x() == "1.05"
    t.advance((WINDOW_BUCKETS + 61) * BUCKET_NS)  # and the hour's too: nothing in the window
    assert x() == "1.10"
