"""Bugs a ninth hostile review found where the market-data feed disagrees with the matcher's
own events; one failing test each, passing once its bug is fixed:

- the books a replay mark reseeds (``procs/marketdata/reseed.py``) are stamped with the
  mark's time, the wall clock when the matcher restarted, and ``MarketState`` takes that as
  event time: the replayed trades that follow the mark, which happened before it, are counted
  in the candle of the restart instead of their own;
- ``<symbol>@status`` publishes a message for every ``SymbolStatus`` the matcher answers,
  so an end of session (which halts nothing and resumes nothing) reaches subscribers as a
  "TRADING" update, a resume that never happened.
"""

from __future__ import annotations

import tempfile

from procs.common.record_codec import RecordCodec
from procs.common.records import AdminCommand, Heartbeat, NewOrder, Record, Trade
from procs.common.snapshots import SnapshotStore
from procs.common.topology import REPLAY_SOURCE, snapshot_dir
from procs.common.types import AdminAction, OrdType, Side, StpMode, TimeInForce
from procs.core.engine import Matcher
from procs.core.market.state import CandleUpdate, MarketState, StatusUpdate, Update
from procs.core.market.symbols import MarketSymbol
from procs.core.symbols import SymbolSpec, symbol_specs
from procs.marketdata.feed import Feed
from procs.marketdata.reseed import Reseeder

from .events import MIN, T0
from .feed_fakes import ListConsumer, NullHub
from .rig import config


def _order(seq: int, ts: int, order_id: int, side: Side, price: int, qty: int) -> NewOrder:
    account = 1 if side == Side.BUY else 2
    return NewOrder(
        *(seq, ts, 1, account, seq, account, 1, order_id),
        side=side,
        ord_type=OrdType.LIMIT,
        tif=TimeInForce.GTC,
        flags=0,
        stp=StpMode.NONE,
        price=price,
        qty=qty,
        stop_price=0,
        display_qty=0,
    )


class _Collecting(NullHub):
    def __init__(self) -> None:
        self.updates: list[Update] = []

    def publish(self, updates: list[Update]) -> None:
        self.updates += updates


def test_replayed_trades_after_a_reseed_stay_in_their_own_candle() -> None:
    """A matcher restarts two hours after its last commands (a crash that took the rings;
    the market data missed the commands up to its snapshot, seq 2). Its ring: the replay
    mark (seq 2, stamped with the restart's wall clock), then the events of the journaled
    commands 3 and 4, made at ``T0 + 10 s`` and ``T0 + 20 s``; command 4 trades. The mark
    reseeds the book the market data missed (a bid, an ask: ``BookLevel`` events stamped
    with the mark's time), and ``MarketState`` moves the symbol's clock to it, so trade 1,
    of ``T0 + 20 s``, is counted in the 1m candle of the restart, two hours later. Expected
    (candles.py: "the clock a trade sees is the newest event time before it in the
    exchange's order"; README: the books are reseeded, the candles go on): the trade is in
    the candle of its own minute, ``T0``; a reseed sets levels, it says nothing of time."""
    cfg = config("review9-unused", tempfile.mkdtemp(prefix="ringex-md-"))
    matcher = Matcher(symbol_specs(cfg, "m1"))
    missed: list[Record] = [
        _order(1, T0, 1, Side.BUY, 9_900, 5),
        _order(2, T0 + 1, 2, Side.SELL, 10_100, 5),
    ]
    matcher.execute_all(missed)  # never published: the market data never saw them
    SnapshotStore(snapshot_dir(cfg, "matcher-m1")).save(2, matcher.snapshot())
    restart_ns = T0 + 120 * MIN + 7_000_000_000
    replayed = matcher.execute_all(
        [
            _order(3, T0 + 10_000_000_000, 3, Side.BUY, 9_950, 2),
            _order(4, T0 + 20_000_000_000, 4, Side.SELL, 9_950, 1),  # trades at 99.50
        ]
    )
    assert [type(e) for e in replayed].count(Trade) == 1
    ring: list[Record] = [Heartbeat(restart_ns, REPLAY_SOURCE, 2), *replayed]
    state = MarketState([MarketSymbol.from_config(s) for s in cfg.symbols])
    hub = _Collecting()
    feed = Feed(state, hub, [ListConsumer(ring)], reseed=Reseeder(cfg, RecordCodec()))  # type: ignore[arg-type, list-item]
    feed._next_clock = float("inf")  # event time alone
    feed.pump()
    assert state.symbols[1].book.levels() == matcher.books[1].levels()  # the reseed worked
    candles = [
        u.candle
        for u in hub.updates
        if isinstance(u, CandleUpdate) and u.interval == "1m" and u.candle.trades
    ]
    assert candles, "the trade made a candle"
    assert [(c.open_ns, c.first_trade_id) for c in candles] == [(T0, 1)], (
        f"trade 1 of {T0 + 20_000_000_000} counted in the candle opening at "
        f"{candles[-1].open_ns} ({(candles[-1].open_ns - T0) // MIN} minutes later)"
    )


def test_an_end_of_session_is_not_published_as_a_resume_on_the_status_stream() -> None:
    """README (marketdata): ``<symbol>@status`` gives "the status at subscription, then each
    halt and resume". The matcher answers an END_OF_SESSION with a ``SymbolStatus`` too (the
    status unchanged: OPEN), and ``MarketState.process`` turns every ``SymbolStatus`` with a
    newer seq into a ``StatusUpdate``: a trading symbol's subscribers get ``{"S": "TRADING",
    "u": <the session end's seq>}``, a resume that never happened (a client that reacts to a
    resume, e.g. resyncs or logs the symbol reopened, does so at every session end). Expected:
    no status update when the status did not change (only HALT and RESUME move it)."""
    matcher = Matcher([SymbolSpec(symbol=1)])
    state = MarketState([MarketSymbol(1, "BTC-USD", "btc-usd", 2, 4)])
    out: list[Update] = []
    for event in matcher.execute(_order(1, T0, 1, Side.BUY, 9_900, 5)):
        state.process(event, out)
    for event in matcher.execute(AdminCommand(2, T0 + 1, AdminAction.END_OF_SESSION, 0, 0)):
        state.process(event, out)
    assert [u for u in out if isinstance(u, StatusUpdate)] == []
