"""Review 323: candles, klines and the 24h ticker, end to end.

Reviewed: ``procs/core/market/candles.py`` (``CandleSeries.trade``, ``advance``, ``history``),
``procs/core/market/ticker.py`` (``RollingTicker``, ``Ticker.change_bps_x100``),
``procs/core/market/state.py`` (``SymbolMarket.trade``'s clock, ``MarketState.flush``),
``procs/marketdata/messages.py`` (``candle_data``, ``_ticker_data``, ``_vwap``),
``procs/marketdata/web.py`` (``/api/klines``, ``/api/ticker``), ``procs/marketdata/hub.py``
(a kline stream's first message, a closed candle's ``final``), ``procs/marketdata/feed.py``
(the lagged wall clock), ``procs/dbwriter/projection.py`` (``add_candle``,
``Batch.candle_rows``), ``procs/dbwriter/store.py`` (the candles' upsert),
``procs/gateway/history.py`` (``klines``, ``_flat_filled``, ``_between``),
``procs/gateway/rest_public.py`` (``klines``' checks, the ticker proxy),
``procs/gateway/rest_market_rows.py`` (``rest_ticker``), ``procs/gateway/rest_params.py``
(``time_span``, ``integer``).

Rig: the real router and matchers' journal (``tests/unit/dbwriter/journal_gen``) filed by the
real writer into the session's PostgreSQL and read as the gateway reads it
(``query_history``), beside a ``MarketState`` fed the same trades (what the WebSocket
``@kline_<i>`` stream and ``/api/klines`` render); the REST gateway harness (``public``) with
the market-data ``Site`` behind it (``market_data``) for ``GET /api/v1/ticker/24hr``.

Faults found: none. Every scenario below held; the ones the brief named that earlier reviews
already pin (review 249: boundary trades at UTC midnight and a 4h edge in the feed and the
database at every interval, the 24h window's expiry by the minute, a restart mid-candle;
review 196: ``limit`` 0 and 1001 refused naming 1..1000, ``startTime`` > ``endTime`` -1023)
were not written again.

Sound:

- the database's 1m and 1h klines over an idle gap equal the feed's candles field for field
  (flat at the previous close, volume, quote volume and count 0), with a ``startTime`` inside
  the gap (the next whole minute on, ``limit`` counted from it), with ``startTime`` and
  ``endTime`` both (each bound's kline in), with only ``endTime`` and a ``limit`` (the newest
  ``limit`` up to it), and with a ``startTime`` an hour before the first trade (from the first
  trade on); another symbol's trade (its own trade ids, from 1) does not reach them;
- ``GET /api/v1/ticker/24hr`` through the real gateway: open, high, low, last, lastQty,
  volume, quoteVolume, priceChange, priceChangePercent (hundredths, half away from zero),
  weightedAvgPrice (quote volume / volume, half up), firstId, lastId, count, openTime (the
  window's first minute) and closeTime (the ticker's clock) equal a hand computation over the
  trades, a trade stamped exactly on a minute boundary counted once;
- a trade at ``boundary - 1 ns`` and one at ``boundary`` split between two candles of every
  interval the feed keeps (1m, 5m, 15m, 1h, 4h, 1d), each aligned to the UTC epoch, the
  later one opening its candle (open = high = low = its price, not the previous close).

Leads not shown:

- REST ``klines`` rows have Binance's first nine fields only (no taker buy volumes nor the
  ignored twelfth): a Binance client that reads ``row[9]`` fails; the OpenAPI document says
  nine (``procs/gateway/openapi.py`` ``Kline``), so this is a documented difference, not filed
  (since answered with Binance's twelve: review 327, fault 3);
- ``priceChangePercent`` has two decimals where Binance's has three: README does not say how
  many, so not filed;
- ``klines``' newest kline is cut at the gateway host's clock (``history.py`` ``now_ms``):
  a router host whose clock runs ahead files a trade in a bucket the gateway does not list
  yet; needs two hosts' clocks, not reproduced here;
- a market-data state file lost after its rings were committed leaves the feed's candles and
  ticker without the trades between (books are reseeded, candles not); README's failover
  paragraph names the like for a failover, but not for a lost state file on one host.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from procs.common.records import Trade
from procs.common.types import Side
from procs.core.market.candles import INTERVALS, CandleSeries
from procs.core.market.state import MarketState, build_state
from procs.core.market.symbols import MarketSymbol
from procs.core.market.ticker import BUCKET_NS, WINDOW_BUCKETS
from procs.gateway.history import History
from procs.gateway.rest import RestApi
from procs.marketdata import messages
from tests.unit.dbwriter.history_query import query_history
from tests.unit.dbwriter.journal_gen import JournalBuilder, fund, limit_order, make_cfg, write_all
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import run
from tests.unit.gateway.test_review47_rest_public import _get, market_data, public

__all__ = ["public"]  # the fixture a test takes, imported

NS = 1_000_000_000
MIN = 60 * NS
HOUR = 60 * MIN
STEP = 7 * NS  # ``JournalBuilder.submit``'s clock step before each command
KLINE_KEYS = "tohlcvTqn"  # the feed's names of the REST kline's nine fields, in its order


def _feed_rows(s: MarketSymbol, state: MarketState, interval: str) -> dict[int, list[Any]]:
    """The feed's candles of ``interval`` as REST kline rows, by open time (ms)."""
    series = state.symbols[s.id].candles[interval]
    rows = [
        [messages.candle_data(s, interval, c)[k] for k in KLINE_KEYS] for c in series.history(1000)
    ]
    return {row[0]: row for row in rows}


def test_sound_database_klines_over_an_idle_gap_equal_the_feeds_candles(
    tmp_path: Path, dsn: str
) -> None:
    """Scenario: BTC-USD trades at minute 0, twice in minute 1 (up then down), nothing for ten
    minutes, then at minutes 12 and 13; ETH-USD trades once in minute 12; the real writer
    files the journal; klines asked as the gateway asks them at 14:05, with a ``startTime``
    1 ms into the gap and ``limit`` 3, with ``startTime`` and ``endTime`` both, with only
    ``endTime`` and ``limit`` 2, with a ``startTime`` an hour before the first trade and
    ``limit`` 2, and at 1h.
    Expected: each kline equals the feed's candle of the same open time field for field (the
    gap's flat at minute 1's close with nothing traded), the bounds as Binance's (whole klines
    opening in [start, end]), ETH-USD's trade in none. Now: so."""
    cfg = make_cfg(tmp_path)
    b = JournalBuilder(cfg)
    for account in (10, 11):
        fund(b, account, {1: 10**15, 2: 10**15, 3: 10**15})
    base = (b.clock // HOUR + 2) * HOUR

    def cross(at: int, price: int, symbol: int = 1) -> None:
        limit_order(b, 10, symbol, Side.SELL, price, 3)
        b.clock = at - STEP  # the taker is stamped at ``at`` exactly
        limit_order(b, 11, symbol, Side.BUY, price, 3)

    for at, price, symbol in (
        (base + 10 * NS, 100_000, 1),
        (base + MIN + 10 * NS, 100_100, 1),
        (base + MIN + 30 * NS, 99_900, 1),
        (base + 12 * MIN, 100_500, 1),
        (base + 12 * MIN + 20 * NS, 5_000, 2),
        (base + 13 * MIN, 100_600, 1),
    ):
        cross(at, price, symbol)
    b.close()
    write_all(cfg, dsn)
    sym = next(s for s in cfg.symbols if s.id == 1)
    s = MarketSymbol.from_config(sym)
    ids = [(t.symbol, t.trade_id) for t in b.trades]
    assert ids == [(1, 1), (1, 2), (1, 3), (1, 4), (2, 1), (1, 5)]  # ids by symbol
    now_ns = base + 14 * MIN + 5 * NS
    state = MarketState([s])
    for t in b.trades:
        state.process(t, [])
    state.advance(now_ns)
    state.flush()
    now_ms, bm = now_ns // 10**6, base // 10**6
    m = 60_000

    async def ask(h: History) -> dict[str, Any]:
        return {
            "gap": await h.klines(sym, "1m", start_ms=bm + 5 * m + 1, limit=3, now_ms=now_ms),
            "both": await h.klines(
                sym, "1m", start_ms=bm + 5 * m, end_ms=bm + 13 * m, now_ms=now_ms
            ),
            "end": await h.klines(sym, "1m", end_ms=bm + 12 * m, limit=2, now_ms=now_ms),
            "early": await h.klines(sym, "1m", start_ms=bm - 60 * m, limit=2, now_ms=now_ms),
            "all": await h.klines(sym, "1m", now_ms=now_ms),
            "hour": await h.klines(sym, "1h", now_ms=now_ms),
        }

    got = query_history(dsn, ask)
    # every taker here buys: a kline's taker buy volumes are its volumes (Binance's twelve
    # fields, review 323's lead); the feed's candles have the first nine
    assert all(k[9:] == [k[5], k[7], "0"] for rows in got.values() for k in rows)
    got = {key: [k[:9] for k in rows] for key, rows in got.items()}
    feed = _feed_rows(s, state, "1m")
    assert len(feed) == 15  # minutes 0..14, the open one last
    assert got["all"] == list(feed.values())
    assert got["gap"] == [feed[bm + k * m] for k in (6, 7, 8)]
    assert got["gap"][0][1:6] == [s.price(99_900)] * 4 + [s.qty(0)]
    assert got["gap"][0][7:] == [s.notional(0), 0]
    assert got["both"] == [feed[bm + k * m] for k in range(5, 14)]
    assert got["end"] == [feed[bm + 11 * m], feed[bm + 12 * m]]
    assert got["early"] == [feed[bm], feed[bm + m]]
    assert got["hour"] == list(_feed_rows(s, state, "1h").values())
    assert got["hour"][0][8] == 5  # BTC-USD's five trades, not ETH-USD's


def _trade(trade_id: int, ts_ns: int, price: int, qty: int) -> Trade:
    return Trade(
        *(trade_id, ts_ns, trade_id, 1), price=price, qty=qty, aggressor=Side.SELL,
        maker_order_id=2 * trade_id, maker_account=602, maker_gateway=1, maker_leaves=0,
        taker_order_id=2 * trade_id + 1, taker_account=601, taker_gateway=1, taker_leaves=0,
    )  # fmt: skip


def test_sound_rest_ticker_24hr_equals_a_hand_computation(public: Harness) -> None:
    """Scenario: four BTC-USD trades (one at a minute's last ns, one exactly on the next
    minute, then a lower one and, two hours on, the last); the market data's clock 2 h 10 s
    after the minute; ``GET /api/v1/ticker/24hr?symbol=BTC-USD`` through the gateway.
    Expected: Binance's names with openPrice the first trade's, highPrice, lowPrice,
    lastPrice, lastQty the last's, volume and quoteVolume the sums, priceChange last - open,
    priceChangePercent its hundredths rounded half away from zero, weightedAvgPrice quote
    volume / volume half up at a notional's decimals, firstId 1, lastId 4, count 4,
    openTime the window's first minute, closeTime the clock. Now: so."""
    cfg = public.cfg
    sym = next(x for x in cfg.symbols if x.name == "BTC-USD")
    s = MarketSymbol.from_config(sym)
    minute = 1_700_000_040 * NS  # a minute boundary (UTC)
    assert minute % BUCKET_NS == 0
    fills = [
        (minute - 1, 3_000_000, 10),
        (minute, 3_100_000, 20),
        (minute + 30 * NS, 2_900_000, 5),
        (minute + 2 * HOUR, 2_950_000, 7),
    ]
    state = build_state(cfg)
    for k, (at, price, qty) in enumerate(fills, 1):
        state.process(_trade(k, at, price, qty), [])
    clock = minute + 2 * HOUR + 10 * NS
    state.advance(clock)
    state.flush()
    opened, last = fills[0][1], fills[-1][1]
    volume = sum(q for _, _, q in fills)
    quote = sum(p * q for _, p, q in fills)
    change = last - opened
    q, r = divmod(abs(change) * 10_000, opened)
    pct = q + (2 * r >= opened)
    vwap = (2 * quote * 10**s.qty_decimals + volume) // (2 * volume)
    window_start = clock - clock % BUCKET_NS - (WINDOW_BUCKETS - 1) * BUCKET_NS
    want = {
        "symbol": "BTC-USD",
        "priceChange": s.price(change),
        "priceChangePercent": f"{'-' if change < 0 else ''}{pct // 100}.{pct % 100:02d}",
        "weightedAvgPrice": s.notional(vwap),
        "prevClosePrice": s.price(0),  # no trade has left the window (review 334)
        "lastPrice": s.price(last),
        "lastQty": s.qty(7),
        "openPrice": s.price(opened),
        "highPrice": s.price(3_100_000),
        "lowPrice": s.price(2_900_000),
        "volume": s.qty(volume),
        "quoteVolume": s.notional(quote),
        "openTime": window_start // 10**6,
        "closeTime": clock // 10**6,
        "firstId": 1,
        "lastId": 4,
        "count": 4,
    }
    assert want["priceChangePercent"] == "-1.67"  # -50,000 / 3,000,000 = -1.666...%

    async def scenario(api: RestApi, url: str) -> None:
        async with market_data(api, state):
            status, body = await _get(url, "/api/v1/ticker/24hr", symbol="BTC-USD")
        assert status == 200, body
        assert body == want

    run(public, scenario)


def test_sound_a_boundary_trade_opens_the_candle_of_every_interval() -> None:
    """Scenario: for each interval the feed keeps, a trade at 100 stamped 1 ns before a UTC
    boundary of it (2023-11-14 00:00, a boundary of every one), then a trade at 90 stamped on
    the boundary. Expected: two candles, the first closed at the boundary with the first
    trade, the second opening at the boundary (its open, high and low 90, not the previous
    close), each one interval wide. Now: so."""
    day = 1_699_920_000 * NS  # 2023-11-14 00:00 UTC
    for interval, width in INTERVALS.items():
        series = CandleSeries(interval)
        series.trade(day - 1, 100, 1, 1)
        series.trade(day, 90, 2, 2)
        first, second = series.history(10)
        assert (first.open_ns, first.close_ns, first.closed) == (day - width, day, True), interval
        assert (first.open, first.close, first.trades) == (100, 100, 1), interval
        assert (second.open_ns, second.close_ns, second.closed) == (day, day + width, False)
        assert (second.open, second.high, second.low, second.close) == (90, 90, 90, 90)
        assert (second.volume, second.trades, second.first_trade_id) == (2, 1, 2), interval
