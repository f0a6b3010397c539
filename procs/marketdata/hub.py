"""Who is subscribed to what, and the fan-out of updates to them.

Sans-I/O and synchronous: the server calls ``subscribe`` when a request arrives and
``publish`` after each batch of events, both on the event loop's one thread, so a depth
snapshot handed to a new subscriber and the diffs published after it are in order on its
queue: the diffs continue the snapshot without a race, over the same connection. An update
nobody subscribed to is not even rendered; one that is, is rendered once for everyone, JSON
and WebSocket frame alike. Subscribers are grouped by the set of streams they follow, and a
batch of updates is joined once per group into the bytes each member gets: the cost per
subscriber is one call and one socket write per batch, not one per message (at 1000
clients x 1000 trades/s that is the difference between 1M Python calls a second and a few
hundred thousand).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from websockets.frames import Frame, Opcode

from procs.common.records import Trade
from procs.core.market.book import BookTop, DepthDiff, DepthSnapshot, Levels
from procs.core.market.state import (
    CandleUpdate,
    MarketState,
    StatusUpdate,
    SymbolMarket,
    Update,
)
from procs.core.market.ticker import Ticker
from procs.marketdata import messages
from procs.marketdata.requests import ErrorCode, RequestError
from procs.marketdata.streams import PARTIAL_LEVELS, Kind, Stream


class Message:
    """One rendered update: its JSON and the server's WebSocket text frame of it (unmasked,
    no extension), both made once for all subscribers. Never changed once made."""

    __slots__ = ("final", "frame", "kind", "payload", "stream")

    def __init__(self, kind: Kind, stream: str, payload: bytes, final: bool = False) -> None:
        self.kind = kind
        self.stream = stream
        self.payload = payload
        #: A value that must reach the client even when a newer one of its stream follows
        #: (a candle's close): conflation never replaces it.
        self.final = final
        self.frame = Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=())


class Subscriber(Protocol):
    """A connection as the hub sees it (the server's ``Client``). Called on the loop thread."""

    #: Stream names subscribed; the hub keeps it.
    streams: set[str]

    def deliver(self, messages: Sequence[Message], frames: bytes) -> None:
        """Send ``frames`` (the messages' frames joined, in order) or queue ``messages``
        (the client applies its slow-consumer policy). May close the client and remove it
        from the hub."""

    def deliver_snapshot(self, stream: str, payload: bytes) -> None:
        """Send or queue a depth snapshot, restarting ``stream``'s diffs from it."""


class Hub:
    def __init__(self, state: MarketState, *, depth_levels: int, max_subscriptions: int) -> None:
        self.state = state
        self.depth_levels = depth_levels
        for market in state.by_stream.values():  # its diffs carry what rises into a snapshot
            market.book.set_top(depth_levels)
        self.max_subscriptions = max_subscriptions
        self.symbols = frozenset(state.by_stream)
        #: Symbol stream prefix -> its partial depth streams, (levels, name) each.
        self._partial_names = {
            stream: [(n, f"{stream}@depth{n}") for n in PARTIAL_LEVELS] for stream in self.symbols
        }
        self._subs: dict[str, dict[Subscriber, None]] = {}
        #: Subscribers by the set of streams they follow (insertion-ordered sets).
        self._groups: dict[frozenset[str], dict[Subscriber, None]] = {}
        #: Stream -> the groups that follow it: a batch visits the groups it concerns, not
        #: every group (3,000 groups of 3 streams each: 440 us a batch more, looking).
        self._groups_of: dict[str, dict[frozenset[str], None]] = {}
        self._snapshots: dict[str, tuple[int, bytes]] = {}  # stream -> (version, message)
        #: Partial depth stream -> the levels its last message showed (one is sent only
        #: when a diff changed them).
        self._partials_shown: dict[str, tuple[Levels, Levels]] = {}
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
        streams with their latest value, a status stream with the symbol's status, a
        bookTicker stream with the best bid and ask (even of an empty book: nulls), a
        partial depth stream with its levels."""
        new = self.check_subscribe(client, streams)
        if not new:
            return
        self._leave_group(client)
        for stream in new:
            client.streams.add(stream.name)
            self._subs.setdefault(stream.name, {})[client] = None
        self._join_group(client)
        for stream in new:
            self._initial(client, stream)

    def _leave_group(self, client: Subscriber) -> None:
        key = frozenset(client.streams)
        group = self._groups.get(key)
        if group is not None:
            group.pop(client, None)
            if not group:
                del self._groups[key]
                for name in key:
                    groups = self._groups_of[name]
                    del groups[key]
                    if not groups:
                        del self._groups_of[name]

    def _join_group(self, client: Subscriber) -> None:
        if not client.streams:
            return
        key = frozenset(client.streams)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = {}
            for name in key:
                self._groups_of.setdefault(name, {})[key] = None
        group[client] = None

    def _initial(self, client: Subscriber, stream: Stream) -> None:
        market = self.state.by_stream[stream.symbol]
        if stream.kind is Kind.DEPTH:
            client.deliver_snapshot(stream.name, self.depth_snapshot(stream.name))
        elif stream.kind is Kind.PARTIAL_DEPTH:
            snap = market.book.snapshot(stream.levels)
            self._deliver_one(client, self._partial(market, stream.name, snap))
        elif stream.kind is Kind.BOOK_TICKER:
            payload = messages.book_ticker(market.symbol, market.book.last_top())[1]
            self._deliver_one(client, Message(Kind.BOOK_TICKER, stream.name, payload))
        elif stream.kind is Kind.TICKER:
            ticker = market.ticker.ticker()
            if ticker is not None:
                payload = messages.ticker(market.symbol, ticker, market.book.last_top())[1]
                self._deliver_one(client, Message(Kind.TICKER, stream.name, payload))
        elif stream.kind is Kind.STATUS:
            payload = messages.status(market.symbol, market.status)[1]
            self._deliver_one(client, Message(Kind.STATUS, stream.name, payload))
        elif stream.kind is Kind.KLINE:
            candle = market.candles[stream.interval].current
            if candle is not None:
                update = CandleUpdate(market.symbol.id, stream.interval, candle)
                payload = messages.kline(market.symbol, update, self._now(market))[1]
                self._deliver_one(client, Message(Kind.KLINE, stream.name, payload))

    def _now(self, market: SymbolMarket) -> int:
        """A kline's event time: the feed's clock, or the symbol's own where that is ahead
        (another symbol's ring behind holds the feed's clock back while this one's candles
        close: a close stamped before its end, review 145)."""
        return max(self.state.now_ns, market.clock_ns)

    @staticmethod
    def _deliver_one(client: Subscriber, message: Message) -> None:
        client.deliver((message,), message.frame)

    def unsubscribe(self, client: Subscriber, streams: Iterable[Stream]) -> None:
        self._leave_group(client)
        for stream in streams:
            client.streams.discard(stream.name)
            subs = self._subs.get(stream.name)
            if subs is not None:
                subs.pop(client, None)
                if not subs:
                    del self._subs[stream.name]
        self._join_group(client)

    def remove(self, client: Subscriber) -> None:
        self._leave_group(client)
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
        (cached per book version: a burst of subscribers or resnapshots renders it once)."""
        market = self.state.by_stream[stream.partition("@")[0]]
        book = market.book
        cached = self._snapshots.get(stream)
        if cached is not None and cached[0] == book.version:
            return cached[1]
        payload = messages.depth_snapshot(market.symbol, book.snapshot(self.depth_levels))
        self._snapshots[stream] = (book.version, payload)
        return payload

    def publish(self, updates: Iterable[Update]) -> None:
        """Render each update someone subscribed to once, then hand every group of
        subscribers its messages of the batch, joined once for the group."""
        symbols = self.state.symbols
        subs_of = self._subs.get
        batch: list[Message] = []
        resets: list[str] = []
        #: the symbols whose best bid or ask moved, without a ticker in the batch (yet)
        moved: dict[int, SymbolMarket] = {}
        for update in updates:
            market = symbols[update.symbol]
            kind, name = _stream_of(market, update)
            if kind is Kind.BOOK_TICKER:
                moved[update.symbol] = market
            elif kind is Kind.TICKER:
                moved.pop(update.symbol, None)
            subs = subs_of(name)
            if not subs:
                pass
            elif kind is Kind.DEPTH and update.reset:  # type: ignore[union-attr]
                resets.append(name)
            else:
                top = market.book.last_top() if kind is Kind.TICKER else None
                _, payload = messages.render(market.symbol, update, self._now(market), top)
                final = kind is Kind.KLINE and update.candle.closed  # type: ignore[union-attr]
                batch.append(Message(kind, name, payload, final))
                self.delivered += len(subs)
            if kind is Kind.DEPTH:  # after its diff (a reset's too: the book after it)
                self._partial_depths(market, batch)
        for market in moved.values():
            self._moved_ticker(market, batch)
        if batch:
            self.published += len(batch)
            names = dict.fromkeys(m.stream for m in batch)  # in order: so are the groups
            groups_of = self._groups_of
            keys: dict[frozenset[str], None] = {}
            for name in names:
                keys.update(groups_of.get(name, {}))
            for key in keys:
                group = self._groups.get(key)
                if group is None:  # emptied by a delivery before (a client closed)
                    continue
                mine = batch if key >= names.keys() else [m for m in batch if m.stream in key]
                frames = b"".join([m.frame for m in mine])
                for client in list(group):  # a delivery may close the client and remove it
                    client.deliver(mine, frames)
        for name in resets:  # a snapshot, which the next diffs continue
            payload = self.depth_snapshot(name)
            for client in list(subs_of(name, ())):
                client.deliver_snapshot(name, payload)

    def _moved_ticker(self, market: SymbolMarket, batch: list[Message]) -> None:
        """To ``batch``: ``market``'s 24hrTicker, where someone follows it, for a best bid or
        ask a batch moved without a trade: its ``b``, ``B``, ``a``, ``A`` are the book's now,
        as Binance's are (review 334: stale until the next trade)."""
        name = f"{market.symbol.stream}@ticker"
        subs = self._subs.get(name)
        ticker = market.ticker.ticker() if subs else None
        if subs and ticker is not None:
            payload = messages.ticker(market.symbol, ticker, market.book.last_top())[1]
            batch.append(Message(Kind.TICKER, name, payload))
            self.delivered += len(subs)

    def _partial_depths(self, market: SymbolMarket, batch: list[Message]) -> None:
        """To ``batch``: the partial depth streams of ``market`` that someone follows and
        whose levels its diff changed (a diff deeper in the book sends none)."""
        for levels, name in self._partial_names[market.symbol.stream]:
            subs = self._subs.get(name)
            if subs:
                snap = market.book.snapshot(levels)
                if self._partials_shown.get(name) != (snap.bids, snap.asks):
                    batch.append(self._partial(market, name, snap))
                    self.delivered += len(subs)

    def _partial(self, market: SymbolMarket, name: str, snap: DepthSnapshot) -> Message:
        """Partial depth stream ``name``'s message of ``snap`` (its levels kept as shown)."""
        self._partials_shown[name] = (snap.bids, snap.asks)
        payload = messages.depth_partial(name, market.symbol, snap)
        return Message(Kind.PARTIAL_DEPTH, name, payload)

    def fan_out(self, clients: Iterable[Subscriber], message: Message) -> None:
        """``message`` to each of ``clients`` (the server's heartbeats)."""
        for client in clients:
            client.deliver((message,), message.frame)


def _stream_of(market: SymbolMarket, update: Update) -> tuple[Kind, str]:
    prefix = market.symbol.stream
    if isinstance(update, Trade):
        return Kind.TRADE, f"{prefix}@trade"
    if isinstance(update, DepthDiff):
        return Kind.DEPTH, f"{prefix}@depth"
    if isinstance(update, BookTop):
        return Kind.BOOK_TICKER, f"{prefix}@bookTicker"
    if isinstance(update, Ticker):
        return Kind.TICKER, f"{prefix}@ticker"
    if isinstance(update, StatusUpdate):
        return Kind.STATUS, f"{prefix}@status"
    return Kind.KLINE, f"{prefix}@kline_{update.interval}"
