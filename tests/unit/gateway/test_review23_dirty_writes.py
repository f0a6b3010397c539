"""Review 23: the poll loop writes only the connections whose session has output
(``GatewayServer._dirty``), the open orders indexed by group (``GroupedDict``), the snapshot a
slow client's full queue owes (``Outbox.settle``) and the hub's stream -> groups index.

The gateway scenarios stop the timers task first: it writes every connection once a second,
so output the dirty set forgot would still arrive, a second late. With it stopped, what is not
written by the path under test never arrives, and ``expect`` fails."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from procs.core.market.state import MarketState, Update
from procs.gateway.grouped import GroupedDict
from procs.gateway.rest import RestApi
from procs.gateway.server import GatewayServer
from procs.marketdata.hub import Hub, Message
from procs.marketdata.outbox import Outbox
from procs.marketdata.streams import Kind, parse_stream
from tests.unit.gateway.harness import Client, Harness, config, settled
from tests.unit.gateway.rest_rig import client, rest_exchange
from tests.unit.gateway.rest_rig import run as rest_run
from tests.unit.gateway.test_gateway import logged_on, order, run
from tests.unit.gateway.test_review4_rest_bugs import fix_bob, fix_sell
from tests.unit.marketdata.events import OTHER, SYMBOL, trade


def timers_off(h: Harness) -> GatewayServer:
    gw = h.gateway
    assert gw is not None
    next(t for t in gw._tasks if t.get_name() == "timers").cancel()
    return gw


def exchange(instance: str, tmp_path: Path) -> Harness:
    h = Harness(config(instance, tmp_path, cancel_on_disconnect=True))
    h.add_user("ALICE", "secret", 7)
    h.add_user("BOB", "secret", 8)
    h.fund(7)
    h.fund(8)
    return h


# -- the dirty set: what must still be written --------------------------------------------------


def test_without_the_timers_every_path_of_output_still_reaches_its_client(
    instance: str, tmp_path: Path
) -> None:
    """Must hold: the deferred Logon (written by the password check's callback), a maker's fill
    (its session sent nothing: only the pump writes it), an answer deferred to
    ``_publish_soon`` (``_writes_due``), a fill emitted while a resend is under way (``_behind``)
    and the cancel-on-disconnect report of a user logged on again all arrive with no timer."""

    async def scenario(h: Harness, port: int) -> None:
        gw = timers_off(h)
        alice = await logged_on(port)  # the executor's callback wrote this Logon
        bob = await logged_on(port, "BOB")
        await alice.send("D", *order("a1", "2", "1.00", "100.00"))
        assert (await alice.expect("8")).get(150) == b"0"
        await bob.send("D", *order("b1", "1", "0.40", "100.00"))
        await bob.expect("8")
        await bob.expect("8")
        assert (await alice.expect("8")).get(150) == b"F"  # the maker: written by the pump

        # an order and a TestRequest in one write: the Heartbeat waits for the order's log
        both = alice.message("D", *order("a2", "2", "1.00", "101.00")).encode()
        both += alice.message("1", (112, "same-read")).encode()
        await alice.send_raw(both)
        got = [await alice.recv(), await alice.recv()]
        assert sorted((m.get(35), m.get(112) or m.get(11)) for m in got if m is not None) == [
            (b"0", b"same-read"),
            (b"8", b"a2"),
        ]

        # the FIX index by session after a replace: in the order the plain filter gives
        await alice.send("G", (41, "a1"), *order("a1b", "2", "0.60", "102.00"))
        assert (await alice.expect("8")).get(150) == b"5"
        await alice.send("D", *order("a3", "2", "1.00", "103.00"))
        await alice.expect("8")
        mine = next(s for s in gw.entry.sessions.values() if s.comp_id == "ALICE")
        live = gw.entry.live
        filtered = [o for o in live.values() if o.session == mine.session_id]
        assert live.of(mine.session_id) == filtered and len(filtered) == 3
        await alice.send("AF", (584, "all"), (585, 7))
        status = [await alice.expect("8") for _ in range(3)]
        assert [m.get(11) for m in status] == [o.cl_ord_id for o in filtered]

        # a resend under way (the socket taken for full): BOB's fill of ALICE waits behind it
        conn = next(c for c in gw.connections if c.session is mine)
        conn.writing_paused = True
        await alice.send("2", (7, 1), (16, 0))
        await settled(lambda: mine.resending)
        await bob.send("D", *order("b2", "1", "0.10", "101.00"))
        await bob.expect("8")
        await bob.expect("8")
        await settled(lambda: mine.behind_bytes > 0)
        assert mine.behind_bytes > 0 and conn not in gw._dirty  # the pump took it: nothing out
        conn.resume_writing()
        resent: list[bytes] = []
        while True:
            m = await alice.recv()
            assert m is not None, "the fill behind the resend never came"
            if m.get(43) != b"Y":
                break
            resent.append(m.get(34))
        assert (m.get(35), m.get(150), m.get(11)) == (b"8", b"F", b"a2")
        assert int(m.get(34)) > max(int(s) for s in resent)

        # cancel on disconnect, answered while ALICE is logged on again: her new session
        h.pause()
        await alice.aclose()
        await settled(lambda: len(gw.connections) == 1)
        again = Client("ALICE")
        again.seq = alice.seq
        await again.connect(port)
        await again.logon()
        h.resume()
        cancelled = {(await again.expect("8")).get(150) for _ in range(3)}
        assert cancelled == {b"4"}

    h = exchange(instance, tmp_path)
    try:
        run(h, scenario)
    finally:
        h.close()


def test_a_dropped_connection_does_not_stay_in_the_dirty_set(instance: str, tmp_path: Path) -> None:
    """Must hold: a connection gone is in neither ``connections`` nor ``_dirty`` (probes that
    connect and drop, clients that drop while logged on, on a gateway with no events)."""

    async def scenario(h: Harness, port: int) -> None:
        gw = h.gateway  # the timers run: they visit ``connections`` only
        assert gw is not None
        alice = await logged_on(port)
        probes = [Client("PROBE") for _ in range(5)]
        for p in probes:
            await p.connect(port)
        await settled(lambda: len(gw.connections) == 6)
        for c in (alice, *probes):
            await c.aclose()
        await settled(lambda: not gw.connections)
        await asyncio.sleep(0.05)  # passes of the poll loop, no event to move
        assert not gw.connections
        assert gw._dirty <= gw.connections, f"{len(gw._dirty)} lost connections held"

    h = exchange(instance, tmp_path)
    try:
        run(h, scenario)
    finally:
        h.close()


@pytest.fixture
def rest_harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


def test_a_rest_cancel_of_a_fix_order_is_written_to_its_session(rest_harness: Harness) -> None:
    """Must hold: an order placed over FIX and cancelled through the REST API is reported to
    its FIX session by the pump (no input of that session, no timer)."""
    h = rest_harness

    async def scenario(api: RestApi, url: str) -> None:
        timers_off(h)
        bob = await client(url, "BOB", "bob-pw")
        fix = await fix_bob(h)
        try:
            await fix_sell(fix, "fix-1")
            (placed,) = await bob.call("GET", "/api/v1/openOrders")
            await bob.call("DELETE", "/api/v1/order", symbol="BTC-USD", orderId=placed["orderId"])
            report = await fix.expect("8")
            assert (report.get(150), report.get(11)) == (b"4", b"fix-1")
        finally:
            fix.close()
            await bob.close()

    rest_run(h, scenario)


# -- GroupedDict ---------------------------------------------------------------------------------


def test_a_fix_replace_keeps_the_session_index_in_the_order_of_the_dict() -> None:
    """Must hold: pop + set under the new ClOrdID (a replace) and deletes leave ``of(session)``
    equal to filtering the dict, in its order (mass status, cancel on disconnect)."""
    live: GroupedDict[tuple[int, bytes], str, int] = GroupedDict(lambda k, _v: k[0])
    for k in range(6):
        live[(k % 2, b"c%d" % k)] = f"o{k}"
    live[(0, b"r0")] = live.pop((0, b"c0"))  # replaced: to the end, in both
    del live[(1, b"c3")]
    live[(0, b"c2")] = "o2-again"  # set again: keeps its place, in both
    for s in (0, 1):
        assert live.of(s) == [v for k, v in live.items() if k[0] == s]
    assert live.of(0) == ["o2-again", "o4", "o0"]
    assert type(copy.copy(dict(live))) is dict  # a plain copy: no index to keep


def test_an_in_place_union_is_refused_or_indexed() -> None:
    live: GroupedDict[int, str, int] = GroupedDict(lambda k, _v: k % 2)
    try:
        live |= {1: "one"}
    except NotImplementedError:
        return
    assert live.of(1) == ["one"]


# -- the outbox's owed snapshot -------------------------------------------------------------------

_STREAMS = ("a@depth", "b@depth")
_PUSH = st.one_of(
    st.tuples(st.just("diff"), st.sampled_from(_STREAMS)),
    st.tuples(st.sampled_from(["trade", "ticker", "status"]), st.just("")),
)
#: between batches, as the server does them: the sender's pops, then a request's answers
_BETWEEN = st.tuples(st.integers(0, 4), st.integers(0, 2))


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 5), st.lists(st.tuples(_BETWEEN, st.lists(_PUSH, max_size=8)), max_size=12))
def test_the_owed_snapshot_keeps_each_depth_stream_continuous(
    limit: int, batches: list[tuple[tuple[int, int], list[tuple[str, str]]]]
) -> None:
    """Must hold, whatever the batches: each depth stream the client reads continues (a diff
    follows the diff or snapshot before it, a snapshot holds every diff before it); no trade is
    lost unless the client is closed; nothing stays owed after a batch; ``len`` is the queue;
    a snapshot comes after every trade pushed before it was rendered."""
    pushed = dict.fromkeys(_STREAMS, 0)  # diffs pushed per stream (their ids: 1, 2, ...)
    trades = [0]  # trades queued
    box = Outbox(limit, lambda s: b"S %s %d %d" % (s.encode(), pushed[s], trades[0]))
    read: list[bytes] = []
    closed = False
    for (pops, replies), batch in batches:
        read += [p for p in (box.pop() for _ in range(pops)) if p is not None]
        for _ in range(replies):
            closed = closed or box.push_reply(b"R") is not None
        for kind, stream in batch:
            if closed:
                break
            reason = None
            if kind == "diff":
                pushed[stream] += 1
                reason = box.push(
                    Kind.DEPTH, stream, b"D %s %d" % (stream.encode(), pushed[stream])
                )
            elif kind == "trade":
                reason = box.push(Kind.TRADE, "t", b"T %d" % (trades[0] + 1))
                trades[0] += reason is None
            else:
                reason = box.push(Kind.TICKER if kind == "ticker" else Kind.STATUS, kind, b"K")
            closed = reason is not None
        if closed:
            break
        box.settle()
        assert not box._owed and len(box) == len(box._queue)
    while (p := box.pop()) is not None:
        read.append(p)
    at = dict.fromkeys(_STREAMS, 0)
    seen_trades = 0
    for p in read:
        word = p.split()
        if word[0] == b"T":
            assert int(word[1]) == seen_trades + 1, "a trade lost or out of order"
            seen_trades += 1
        elif word[0] == b"D":
            s = word[1].decode()
            assert int(word[2]) == at[s] + 1, f"{s}: a diff missed or repeated: {read}"
            at[s] += 1
        elif word[0] == b"S":
            s = word[1].decode()
            assert int(word[2]) >= at[s] and int(word[3]) == seen_trades, read
            at[s] = int(word[2])
    if not closed:
        assert seen_trades == trades[0]
        assert at == pushed, read  # each stream's reader holds every diff pushed


def test_a_client_closed_mid_batch_renders_its_owed_snapshot_once() -> None:
    """Must hold: a batch that overflows (the client is closed as slow) after a diff was owed
    leaves the debt; the next pop renders it once, and a second pop does not again."""
    rendered: list[str] = []

    def snapshot(stream: str) -> bytes:
        rendered.append(stream)
        return b"snap"

    box = Outbox(2, snapshot)
    box.push(Kind.TRADE, "t", b"t1")
    box.push(Kind.TRADE, "t", b"t2")
    assert box.push(Kind.DEPTH, "a@depth", b"d") is None and len(box) == 3  # owed, counted
    assert box.push(Kind.TRADE, "t", b"t3") is not None  # no room: closed, not settled
    assert [box.pop(), box.pop(), box.pop(), box.pop()] == [b"t1", b"t2", b"snap", None]
    assert rendered == ["a@depth"]


# -- the hub's index ----------------------------------------------------------------------------


class _Closer:
    def __init__(self, hub: Hub, victim: _Closer | None = None) -> None:
        self.hub, self.victim = hub, victim
        self.streams: set[str] = set()
        self.got: list[str] = []

    def deliver(self, messages: Sequence[Message], frames: bytes) -> None:
        self.got += [m.stream for m in messages]
        if self.victim is not None:
            self.hub.remove(self.victim)  # closed as slow by a delivery before its own

    def deliver_snapshot(self, stream: str, payload: bytes) -> None:
        pass


def test_a_group_emptied_by_a_delivery_is_skipped_and_the_index_stays_exact() -> None:
    """Must hold: a delivery that removes another client (its group emptied) mid-publish does
    not deliver to it, the others get their streams, and ``_groups_of`` names exactly the
    groups left."""
    state = MarketState([SYMBOL, OTHER])
    hub = Hub(state, depth_levels=10, max_subscriptions=10)
    btc, eth = (parse_stream(n, hub.symbols) for n in ("btc-usd@trade", "eth-usd@trade"))
    victim = _Closer(hub)
    first = _Closer(hub, victim)  # its group ({btc}) is visited first: btc's trade is first
    other = _Closer(hub)
    hub.subscribe(first, [btc])
    hub.subscribe(victim, [eth, btc])
    hub.subscribe(other, [eth])
    updates: list[Update] = []
    state.process(trade(1, 1, 10_000, 1, symbol=1), updates)
    state.process(trade(2, 2, 10_000, 1, symbol=2), updates)
    hub.publish(updates + state.flush())
    assert (first.got, victim.got, other.got) == ([btc.name], [], [eth.name])
    assert victim.streams == set() and frozenset({btc.name, eth.name}) not in hub._groups
    index = {(name, key) for name, keys in hub._groups_of.items() for key in keys}
    assert index == {(name, key) for key in hub._groups for name in key}
