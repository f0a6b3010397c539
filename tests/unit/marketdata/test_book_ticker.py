"""``<symbol>@bookTicker`` and ``<symbol>@depth5`` (10, 20): the best bid and ask, and the
best levels a side whole, over the feed, as the most used venue APIs stream them: the value
at subscription, then one message each time a batch changed it, never one that repeats the
last. Over a real WebSocket client against the market-data process fed by a real matcher,
held to the book the same connection's depth stream builds (snapshot then diffs, in the
same order on the socket)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from procs.common.types import Side
from procs.core.engine import Matcher
from procs.core.symbols import SymbolSpec
from procs.marketdata.streams import PARTIAL_LEVELS, Kind, StreamError, parse_stream

from .rig import Client, Rig
from .test_server import RandomFlow, apply, order, run

STREAMS = "/stream?streams=btc-usd@depth/btc-usd@bookTicker"


def best(book: dict[str, dict[str, str]]) -> tuple[Any, ...]:
    """(b, B, a, A) of a book of decimal strings, None for an empty side."""
    bid = max(book["b"].items(), key=lambda kv: float(kv[0]), default=(None, None))
    ask = min(book["a"].items(), key=lambda kv: float(kv[0]), default=(None, None))
    return (*bid, *ask)


async def beside_depth(
    c: Client, book: dict[str, dict[str, str]], last: int, until: int
) -> AsyncIterator[tuple[dict[str, Any], int]]:
    """Until the depth stream's diffs reach update ``until`` (every command changes the book:
    the last diff ends there): each applied to ``book``, and each message of the other
    stream yielded with the depth's update id as of it."""
    while last < until:
        msg = await c.recv()
        data = msg["data"]
        if msg["stream"].endswith("@depth"):
            apply(book, data["b"], data["a"])
            last = data["u"]
        else:
            yield data, last


def test_the_top_at_subscription_then_each_change_of_it(instance: str) -> None:
    flow = RandomFlow(11)
    feed = flow.feed

    async def body(rig: Rig) -> None:
        feed(rig, 200)  # a book exists before the subscriber arrives
        await asyncio.sleep(0.1)
        async with rig.client(STREAMS) as c:
            snap = (await c.recv())["data"]
            book = {"b": dict(map(tuple, snap["bids"])), "a": dict(map(tuple, snap["asks"]))}
            top = (await c.recv())["data"]
            assert top["e"] == "bookTicker" and top["s"] == "BTC-USD", top
            assert top["u"] <= snap["lastUpdateId"], (top, snap["lastUpdateId"])
            shown = (top["b"], top["B"], top["a"], top["A"])
            assert shown == best(book), (shown, best(book))
            for _ in range(40):  # batches apart: a top each that moved it
                feed(rig, 10)
                await asyncio.sleep(0.01)
            tops = 0
            async for data, last in beside_depth(c, book, snap["lastUpdateId"], flow.seq - 1):
                now = (data["b"], data["B"], data["a"], data["A"])
                assert now != shown, f"a bookTicker that repeats the last: {data}"
                assert now == best(book) and data["u"] == last, (data, best(book), last)
                shown, tops = now, tops + 1
            with contextlib.suppress(TimeoutError):  # the last batch's top follows its diff
                data = (await c.recv(timeout=0.5))["data"]
                assert data["e"] == "bookTicker", data
                shown = (data["b"], data["B"], data["a"], data["A"])
            assert shown == best(book), (shown, best(book))
            assert tops > 5, tops  # the touch moved in many of the 40 batches

    run(instance, body, depth_levels=1_000)


def test_an_empty_side_is_null(instance: str) -> None:
    matcher = Matcher([SymbolSpec(symbol=1)])

    async def body(rig: Rig) -> None:
        async with rig.client("/ws/btc-usd@bookTicker") as c:
            empty = (await c.recv())["data"]
            assert (empty["b"], empty["B"], empty["a"], empty["A"]) == (None,) * 4, empty
            rig.publish(matcher.execute_all([order(1, Side.BUY, 9_950, 30)]))
            bid = (await c.recv())["data"]
            assert (bid["b"], bid["B"], bid["a"], bid["A"]) == ("99.50", "0.0030", None, None)
            assert bid["u"] == 1, bid

    run(instance, body)


def test_a_partial_depth_stream_is_its_best_levels_whole_each_time_they_change(
    instance: str,
) -> None:
    """``<symbol>@depth5`` (10, 20): the best N levels a side, whole, at subscription and
    then each time a batch changed them (never a repeat), each the top N of the book the
    same connection's depth stream builds at that ``lastUpdateId``."""
    flow = RandomFlow(12)

    async def body(rig: Rig) -> None:
        flow.feed(rig, 200)
        await asyncio.sleep(0.1)
        async with rig.client("/stream?streams=btc-usd@depth/btc-usd@depth5") as c:
            snap = (await c.recv())["data"]
            book = {"b": dict(map(tuple, snap["bids"])), "a": dict(map(tuple, snap["asks"]))}
            first = (await c.recv())["data"]
            assert first["e"] == "depthPartial" and first["lastUpdateId"] == snap["lastUpdateId"]
            assert (first["bids"], first["asks"]) == top(book, 5), first
            partials, shown = 0, (first["bids"], first["asks"])
            for _ in range(40):
                flow.feed(rig, 10)
                await asyncio.sleep(0.01)
            async for data, last in beside_depth(c, book, snap["lastUpdateId"], flow.seq - 1):
                assert data["e"] == "depthPartial" and data["lastUpdateId"] == last, data
                assert (data["bids"], data["asks"]) != shown, f"a repeat: {data}"
                shown, partials = (data["bids"], data["asks"]), partials + 1
                assert shown == top(book, 5), (shown, top(book, 5))
            assert partials > 5, partials

    run(instance, body, depth_levels=1_000)


def top(book: dict[str, dict[str, str]], n: int) -> tuple[list[list[str]], list[list[str]]]:
    """The best ``n`` levels a side of a book of decimal strings, best first."""
    bids = sorted(book["b"].items(), key=lambda kv: -float(kv[0]))[:n]
    asks = sorted(book["a"].items(), key=lambda kv: float(kv[0]))[:n]
    return [list(kv) for kv in bids], [list(kv) for kv in asks]


def test_partial_depth_names_are_depth5_depth10_and_depth20_only() -> None:
    symbols = frozenset({"btc-usd"})
    for levels in PARTIAL_LEVELS:
        stream = parse_stream(f"btc-usd@depth{levels}", symbols)
        assert (stream.kind, stream.levels, stream.name) == (
            Kind.PARTIAL_DEPTH, levels, f"btc-usd@depth{levels}"
        )  # fmt: skip
    assert parse_stream("btc-usd@depth", symbols).kind is Kind.DEPTH  # the diffs
    for kind in ("depth7", "depth05", "depth<levels>"):
        with pytest.raises(StreamError, match=r"unknown kind|depth5, depth10 or depth20"):
            parse_stream(f"btc-usd@{kind}", symbols)
