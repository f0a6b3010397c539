"""The hub finds the groups a batch concerns through its stream index (``_groups_of``), not by
looking at every group: whatever clients subscribe, unsubscribe and leave, each client gets
exactly the batch's messages of its streams, in the batch's order, and the index names
exactly the groups there are."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from procs.core.market.state import MarketState, Update
from procs.marketdata.hub import Hub, Message, _stream_of
from procs.marketdata.streams import parse_stream

from .events import OTHER, SYMBOL, trade

STREAMS = ["btc-usd@trade", "eth-usd@trade", "btc-usd@ticker", "eth-usd@kline_1m"]


class Recorder:
    def __init__(self) -> None:
        self.streams: set[str] = set()
        self.got: list[str] = []

    def deliver(self, messages: Sequence[Message], frames: bytes) -> None:
        assert frames == b"".join(m.frame for m in messages)
        self.got += [m.stream for m in messages]

    def deliver_snapshot(self, stream: str, payload: bytes) -> None:
        self.got.append(stream)


OPS = st.lists(
    st.tuples(
        st.sampled_from(["subscribe", "unsubscribe", "remove", "publish"]),
        st.integers(0, 5),  # which client
        st.sets(st.sampled_from(STREAMS), min_size=1),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(OPS)
def test_each_client_gets_its_streams_of_each_batch(ops: list[tuple[str, int, set[str]]]) -> None:
    state = MarketState([SYMBOL, OTHER])
    hub = Hub(state, depth_levels=10, max_subscriptions=10)
    clients = [Recorder() for _ in range(6)]
    seq = 0
    for op, k, names in ops:
        client = clients[k]
        streams = [parse_stream(n, hub.symbols) for n in sorted(names)]
        if op == "subscribe":
            hub.subscribe(client, streams)
        elif op == "unsubscribe":
            hub.unsubscribe(client, streams)
        elif op == "remove":
            hub.remove(client)
        else:
            for c in clients:
                c.got.clear()
            updates: list[Update] = []
            for symbol in (1, 2):
                seq += 1
                state.process(trade(seq, seq, 10_000, 1, symbol=symbol), updates)
            updates += state.flush()
            hub.publish(updates)
            batch = [_stream_of(state.symbols[u.symbol], u)[1] for u in updates]
            for c in clients:
                assert c.got == [name for name in batch if name in c.streams]
        groups = {frozenset(c.streams) for c in clients if c.streams}
        assert set(hub._groups) == groups
        index = {(name, key) for name, keys in hub._groups_of.items() for key in keys}
        assert index == {(name, key) for key in groups for name in key}
