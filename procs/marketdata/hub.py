"""Who is subscribed to what, and the fan-out of updates to them.

Sans-I/O and synchronous: the server calls ``subscribe`` when a request arrives and
``publish`` after each batch of events, both on the event loop's one thread, so a depth
snapshot handed to a new subscriber and the diffs published after it are in order on its
queue: the diffs continue the snapshot without a race, over the same connection. An update
nobody subscribed to is not even rendered; one that is, is rendered once for everyone.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from procs.common.records import Trade
from procs.marketdata import messages
from procs.marketdata.book import DepthDiff
from procs.marketdata.market import CandleUpdate, MarketState, SymbolMarket, Update
from procs.marketdata.requests import ErrorCode, RequestError
from procs.marketdata.streams import Kind, Stream
from procs.marketdata.ticker import Ticker


class Subscriber(Protocol):
    """A connection as the hub sees it (the server's ``Client``). Called on the loop thread."""

    #: Stream names subscribed; the hub keeps it.
    streams: set[str]

    def deliver(self, kind: Kind, stream: str, payload: bytes) -> None:
        """Send or queue ``payload`` (the client applies its slow-consumer policy)."""

    def deliver_snapshot(self, stream: str, payload: bytes) -> None:
        """Send or queue a depth snapshot, restarting ``stream``'s diffs from it."""


class Hub:
    def __init__(self, state: MarketState, *, depth_levels: int, max_subscriptions: int) -> None:
        self.state = state
        self.depth_levels = depth_levels
        self.max_subscriptions = max_subscriptions
        self.symbols = frozenset(state.by_stream)
        self._subs: dict[str, dict[Subscriber, None]] = {}
        self._snapshots: dict[str, tuple[int, bytes]] = {}  # stream -> (update id, message)
        self.published = 0  # messages rendered
        self.delivered = 0  # messages handed to subscribers

    # -- subscriptions -------------------------------------------------------------------

    def check_subscribe(self, client: Subscriber, streams: Iterable[Stream]) -> list[Stream]:
        """The streams of ``streams`` that ``client`` lacks; raises ``RequestError`` when
        they would take it over ``max_subscriptions``."""
        new = [s for s in dict.fromkeys(streams) if s.name not in client.streams]
        total = len(client.streams) + len(new)
        if total > self.max_subscriptions:
            raise RequestError(
                ErrorCode.TOO_MANY_SUBSCRIPTIONS,
                f"{total} subscriptions requested, at most {self.max_subscriptions} per connection",
            )
        return new

    def subscribe(self, client: Subscriber, streams: Iterable[Stream]) -> None:
        """Add ``streams`` (already subscribed ones are kept as they are; raises like
        ``check_subscribe``). A depth stream starts with a snapshot; ticker and kline
        streams with their latest value."""
        for stream in self.check_subscribe(client, streams):
            client.streams.add(stream.name)
            self._subs.setdefault(stream.name, {})[client] = None
            self._initial(client, stream)

    def _initial(self, client: Subscriber, stream: Stream) -> None:
        market = self.state.by_stream[stream.symbol]
        if stream.kind is Kind.DEPTH:
            client.deliver_snapshot(stream.name, self.depth_snapshot(stream.name))
        elif stream.kind is Kind.TICKER:
            ticker = market.ticker.ticker()
            if ticker is not None:
                client.deliver(Kind.TICKER, stream.name, messages.ticker(market.symbol, ticker)[1])
        elif stream.kind is Kind.KLINE:
            candle = market.candles[stream.interval].current
            if candle is not None:
                update = CandleUpdate(market.symbol.id, stream.interval, candle)
                payload = messages.kline(market.symbol, update, self.state.now_ns)[1]
                client.deliver(Kind.KLINE, stream.name, payload)

    def unsubscribe(self, client: Subscriber, streams: Iterable[Stream]) -> None:
        for stream in streams:
            client.streams.discard(stream.name)
            subs = self._subs.get(stream.name)
            if subs is not None:
                subs.pop(client, None)
                if not subs:
                    del self._subs[stream.name]

    def remove(self, client: Subscriber) -> None:
        for name in client.streams:
            subs = self._subs.get(name)
            if subs is not None:
                subs.pop(client, None)
                if not subs:
                    del self._subs[name]
        client.streams.clear()

    def subscribers(self, stream: str) -> int:
        return len(self._subs.get(stream, ()))

    # -- fan-out --------------------------------------------------------------------------

    def depth_snapshot(self, stream: str) -> bytes:
        """The snapshot message of depth stream ``stream`` as of the diffs published so far
        (cached per update id: a burst of subscribers or resnapshots renders it once)."""
        market = self.state.by_stream[stream.partition("@")[0]]
        book = market.book
        cached = self._snapshots.get(stream)
        if cached is not None and cached[0] == book.last_update_id:
            return cached[1]
        payload = messages.depth_snapshot(market.symbol, book.snapshot(self.depth_levels))
        self._snapshots[stream] = (book.last_update_id, payload)
        return payload

    def publish(self, updates: Iterable[Update]) -> None:
        symbols = self.state.symbols
        subs_of = self._subs.get
        for update in updates:
            market = symbols[update.symbol]
            kind, name = _stream_of(market, update)
            subs = subs_of(name)
            if not subs:
                continue
            _, payload = messages.render(market.symbol, update, self.state.now_ns)
            self.published += 1
            self.delivered += len(subs)
            for client in list(subs):  # a delivery may close the client and unsubscribe it
                client.deliver(kind, name, payload)


def _stream_of(market: SymbolMarket, update: Update) -> tuple[Kind, str]:
    prefix = market.symbol.stream
    if isinstance(update, Trade):
        return Kind.TRADE, f"{prefix}@trade"
    if isinstance(update, DepthDiff):
        return Kind.DEPTH, f"{prefix}@depth"
    if isinstance(update, Ticker):
        return Kind.TICKER, f"{prefix}@ticker"
    return Kind.KLINE, f"{prefix}@kline_{update.interval}"
