"""Review 32 of the market-data feed (``procs/marketdata``, ``procs/core/market``) against what
a client of a venue's feed expects.

Failing tests, one per fault; each passes once its fault is fixed:

- the depth diffs carry each level that rises into the top ``depth_levels`` without a
  change of its own (review 28), judged against the top the book held at the last diff
  (``L2Book._top_bids``). ``Hub`` sets the book's ``top`` to ``depth_levels`` but keeps
  that remembered top, made at the old size: a state made elsewhere (a standby's hot state,
  the ``L2Book`` default of 100) or saved under another ``depth_levels`` remembers levels
  the client's snapshot never held, so when the best bid goes the fourth level of a
  3-level subscription is "already known" and never sent: the client's book is wrong;
- the wall clock the feed gives the state closes a candle the moment the minute ends, but a
  trade is stamped by the router before the journal's fsync, the matcher and the ring
  bring it here: one stamped 3 ms before the minute's end and read after the clock's tick
  lands in the next minute's candle (late, "counted in the candle open at the clock"). The
  closed candle the kline stream called final misses it, and the history in PostgreSQL
  (``dbwriter.projection.add_candle``: the trade's own minute) has it: the REST klines and
  the WebSocket's disagree;
- the page's HTTP API answers an unknown symbol, an unknown interval or a missing page with
  the whole value the client sent (kilobytes), where the requests' errors cut it to
  ``SHOWN_CHARS`` with its length.

Checked and found right (no test here: earlier reviews pin them): diffs contiguous through
same-seq resets and late subscribers (a random walk of levels against a 3-level snapshot),
candles at every interval against trades grouped by their own time, the 24h ticker against
its window recomputed per step, the request and stream limits' errors.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from procs.common.records import Trade
from procs.common.types import Side
from procs.core.market.state import MarketState
from procs.dbwriter.projection import add_candle
from procs.marketdata import feed as feed_module
from procs.marketdata.feed import Feed
from procs.marketdata.requests import SHOWN_CHARS
from procs.marketdata.web import Site
from procs.replica.market import HotMarket

from .events import MIN, OTHER, SYMBOL, T0, level, trade
from .feed_fakes import ListConsumer, NullHub
from .rig import Rig, config
from .test_adversarial_ws import run as _run
from .test_review28_feed import _apply

# -- faults -------------------------------------------------------------------------------


def test_a_standby_state_served_at_three_levels_sends_the_level_that_rises(
    instance: str, tmp_path: Path
) -> None:
    """A promoted standby's market state (``HotMarket``: no hub, so its books remember a
    top of 100 levels) served with ``depth_levels = 3``: the best bid goes, and the diff
    must carry the level that rises into the client's three."""
    cfg = config(instance, str(tmp_path), depth_levels=3)
    hot = HotMarket(cfg)
    for k in range(6):  # bids 100.00 .. 95.00, one command each
        hot.observe([level(k + 1, Side.BUY, 10_000 - 100 * k, 10 + k)])
    hot.observe([level(7, Side.SELL, 10_100, 5)])
    hot.save()

    async def body(rig: Rig) -> None:
        async with rig.client("/ws/btc-usd@depth") as client:
            snap = (await client.recv())["data"]
            assert snap["e"] == "depthSnapshot" and snap["lastUpdateId"] == 7
            book = {"b": dict(snap["bids"]), "a": dict(snap["asks"])}
            assert list(book["b"]) == ["100.00", "99.00", "98.00"]
            rig.publish([level(8, Side.BUY, 10_000, 0)])  # the best bid is taken away
            diff = (await client.recv())["data"]
            assert (diff["U"], diff["u"]) == (8, 8)
            _apply(book, diff)
            top = sorted(book["b"], key=float, reverse=True)[:3]
            assert top == ["99.00", "98.00", "97.00"], f"the client's top 3 bids: {top}"
            assert book["b"]["97.00"] == "0.0013"

    _run(instance, body, var_dir=str(tmp_path), depth_levels=3)


def _fake_wall(monkeypatch: pytest.MonkeyPatch, wall: list[int]) -> None:
    """The feed's wall clock is ``wall[0]`` (its monotonic clocks stay real)."""
    fake = SimpleNamespace(
        time_ns=lambda: wall[0], monotonic=time.monotonic, perf_counter=time.perf_counter
    )
    monkeypatch.setattr(feed_module, "time", fake)


def test_a_trade_stamped_before_the_minute_and_read_after_its_tick_stays_in_its_minute(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The router stamps at 11:59:59.997; the feed's clock ticks at 12:00:00.002 with the
    trade still on its way (the journal's fsync, the matcher); it is read next. Its minute is
    11:59, as the trades table and the PostgreSQL candles have it."""
    boundary = T0 + 12 * 60 * MIN
    wall = [boundary - 20 * 1_000_000_000]
    _fake_wall(monkeypatch, wall)
    ring = ListConsumer([trade(1, 1, 10_000, 1, ts=boundary - 30 * 1_000_000_000)])
    state = MarketState([SYMBOL, OTHER])
    feed = Feed(state, cast(Any, NullHub()), cast(Any, [ring]), clock_s=0.0)
    feed.pump()
    wall[0] = boundary + 2_000_000  # the tick, with the next trade in flight
    feed.pump()
    late = trade(2, 2, 10_100, 2, ts=boundary - 3_000_000)
    ring.events.append(late)
    feed.pump()

    history: dict[tuple[int, int], list[int]] = {}
    for t in ring.events:
        assert isinstance(t, Trade)
        add_candle(history, t)  # the dbwriter's candle: the trade's own minute
    assert list(history) == [(1, (boundary - MIN) // MIN)]
    series = state.symbols[1].candles["1m"]
    minute = [c for c in series.history(10) if c.open_ns == boundary - MIN]
    assert minute, "no candle for 11:59"
    c = minute[0]
    assert (c.volume, c.trades, c.close, c.last_trade_id) == (3, 2, 10_100, 2), (
        f"11:59's candle holds {c.trades} trade(s), volume {c.volume}: the trade stamped "
        "11:59:59.997 went to 12:00's"
    )
    wall[0] = boundary + 1_500_000_000  # the minute is over for good: it closes on time
    feed.pump()
    assert series.current is not None and series.current.open_ns == boundary
    assert series.closed[-1].open_ns == boundary - MIN and series.closed[-1].volume == 3


@pytest.mark.parametrize(
    "target",
    [
        "/api/klines?symbol=" + "x" * 6_000,
        "/api/klines?symbol=btc-usd&interval=" + "y" * 6_000,
        "/" + "z" * 5_999,
    ],
)
def test_the_page_api_names_a_bad_value_without_reflecting_kilobytes(target: str) -> None:
    """``requests.py`` cuts a client's value in an error to ``SHOWN_CHARS`` with its length,
    and ``web.py`` its ``limit`` to 40; but an unknown symbol, an unknown interval and a
    missing page were answered with the whole value (up to the request line's 8 KiB)."""
    answer = Site(MarketState([SYMBOL, OTHER])).get(target)
    assert answer.status_code in (400, 404)
    body = answer.body.decode()
    assert "6000 characters" in body, body[:200]
    assert len(body) < SHOWN_CHARS + 120, len(body)
