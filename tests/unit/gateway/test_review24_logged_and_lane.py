"""Review 24: finished orders logged encoded and copied by compactions (a751cf4): a compacted
log replays to the log's own state; and the REST fast lane's one task per connection
(bd64a15), driven over a fake transport that behaves as asyncio's selector transport
(``pause_writing`` inside ``write``, ``connection_lost`` a loop pass after ``close``): every
request answered in order, the task ending with the connection however it ends."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest
from aiohttp import web

from procs.common.records import Accepted, NewOrder, OrderDone, Rejected
from procs.common.result_codes import ResultCode
from procs.common.types import DoneReason, Side
from procs.gateway import order_log as order_log_module
from procs.gateway import order_memory as order_memory_module
from procs.gateway.fix import FixMessage
from procs.gateway.instruments import Instruments
from procs.gateway.order_log import API_ORDER, FINISHED
from procs.gateway.orders import OrderEntry
from procs.gateway.rest_fast import KEEPALIVE_S, FastHandler, FastLane
from procs.gateway.rest_order_state import OPEN_STATUSES
from procs.gateway.rest_orders import RestOrders
from procs.gateway.rest_params import new_order
from procs.gateway.rest_request import RestRequest
from procs.gateway.session import Session
from tests.unit.gateway.test_rest_orders import ALICE, accepted, core, limit
from tests.unit.gateway.test_rest_orders import GW as REST_GW
from tests.unit.gateway.test_rest_orders import SYM as REST_SYM
from tests.unit.gateway.test_review_order_log_steps import (
    ACCOUNT,
    GW,
    SESSION,
    SYM,
    _Connection,
    _Logged,
    _new_order,
)

# -- the order log ---------------------------------------------------------------------------


def _same(logged: _Logged) -> None:
    """The file (compacted or not) replays to the reference, and in the order that decides
    which finished orders go first (F; A's finished ones: ``restore`` keeps them so)."""
    logged.log.close()
    reloaded = logged.reloaded()
    assert reloaded == logged.reference
    assert list(reloaded.finished) == list(logged.reference.finished)
    finished = [  # entry()[12]: the status
        [k for k, v in state.api_orders.items() if v[12] not in OPEN_STATUSES]
        for state in (reloaded, logged.reference)
    ]
    assert finished[0] == finished[1]


class _Fix:
    """A FIX order entry with one session, its orders accepted as placed."""

    def __init__(self, logged: _Logged) -> None:
        self.entry = OrderEntry(GW, Instruments([SYM]), cancel_on_disconnect=False)
        self.conn = cast(Session, _Connection())
        self.entry.on_logon(self.conn, 1)
        self.logged, self.seq = logged, 0
        self.ids: dict[bytes, int] = {}  # ClOrdID -> order id

    def flush(self) -> None:
        self.logged.write(self.entry.take_changes())

    def place(self, *names: bytes) -> None:
        for name in names:
            self.entry.on_message(self.conn, _new_order(name), 1)
            ref = max(self.entry.orders)
            self.seq += 1
            self.ids[name] = 1000 + self.seq
            self.entry.process(Accepted(self.seq, 0, GW, SESSION, ref, ACCOUNT, SYM.id,
                                        self.ids[name], Side.BUY, 10_000, 100))  # fmt: skip
        self.flush()

    def cancel(self, name: bytes, new_cl: bytes | None = None) -> None:
        """Done: by a cancel under ``new_cl`` (finished under both ClOrdIDs), or unasked."""
        ref = 0
        if new_cl is not None:
            tags = [35, 11, 41, 55, 54, 60]
            values = [b"F", new_cl, name, b"BTC-USD", b"1", b"20260101-00:00:00"]
            self.entry.on_message(self.conn, FixMessage.of(b"", tags, values), 2)
            ref = max(self.entry.requests)
        self.seq += 1
        self.entry.process(OrderDone(self.seq, 0, GW, SESSION, ref, ACCOUNT, SYM.id,
                                     self.ids[name], DoneReason.CANCELLED, 0, 100))  # fmt: skip
        self.flush()


def test_fix_orders_finishing_between_steps_under_two_clordids_and_pushed_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finished orders copied as logged, and between the steps more finishing, some by a
    cancel with a ClOrdID of its own (finished twice, under two keys), pushing the oldest
    out of ``FINISHED_KEPT``: the compacted log replays to the log's state, in its order."""
    for module in (order_log_module, order_memory_module):
        monkeypatch.setattr(module, "FINISHED_KEPT", 4)
    logged = _Logged(tmp_path / "orders.log")
    fix = _Fix(logged)
    fix.place(*(b"o%d" % i for i in range(10)))
    fix.cancel(b"o0")
    fix.cancel(b"o1")
    fix.cancel(b"o2")
    oldest = next(iter(fix.entry.finished.values()))
    assert next(fix.entry.dump_lazily()) is oldest.logged is not None  # copied, not made
    assert all(type(e) is tuple for e in fix.entry.dump())  # decoded for readers
    logged.log.begin_compaction(fix.entry.dump_lazily())
    assert not logged.log.step_compaction(2)  # o0 and o1 as logged
    fix.cancel(b"o3", b"c3")  # under o3 and c3
    assert not logged.log.step_compaction(2)
    fix.cancel(b"o4", b"c4")
    fix.cancel(b"o5")
    while not logged.log.step_compaction(2):
        fix.flush()
    _same(logged)


def _three_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, o1_cancel: bytes | None
) -> tuple[_Logged, _Fix]:
    """``FINISHED_KEPT`` 3; o0..o3 placed, o0 cancelled under c0 (a ClOrdID of its own),
    o1 by a cancel under ``o1_cancel`` (None: done unasked), o2 done; o3 stays open."""
    for module in (order_log_module, order_memory_module):
        monkeypatch.setattr(module, "FINISHED_KEPT", 3)
    logged = _Logged(tmp_path / "orders.log")
    fix = _Fix(logged)
    fix.place(b"o0", b"o1", b"o2", b"o3")
    fix.cancel(b"o0", b"c0")
    fix.cancel(b"o1", o1_cancel)
    fix.cancel(b"o2")
    return logged, fix


def test_fix_finished_orders_pushed_out_before_the_compaction_are_kept_as_the_log_keeps_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found (older than a751cf4), fixed: the log keeps the newest ``FINISHED_KEPT``
    finished *orders* (F is keyed by ref), the order entry's memory kept the newest
    ``FINISHED_KEPT`` *keys* (session, ClOrdID), and an order done by a cancel with a
    ClOrdID of its own takes two. With 3 kept, o0 and o1 cancelled that way and o2 done:
    the log holds o0, o1, o2; the memory pushed o0 out, so a compaction (of the memory)
    dropped o0, which the uncompacted log still has after a restart. The memory now counts
    orders (``finished_orders``)."""
    logged, fix = _three_finished(tmp_path, monkeypatch, b"c1")
    assert len(logged.reference.finished) == 3
    logged.log.compact(fix.entry.dump_lazily())
    _same(logged)


def test_a_restored_fix_entry_compacts_its_finished_orders_in_the_log_s_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found (older than a751cf4), fixed: ``restore`` put each finished order under its
    ClOrdID, then, after all of them, under its OrigClOrdID, and a compaction took
    ``finished``'s values in that order, so o0 (cancelled under c0) came out newest although
    it finished first; the next order to finish then pushed o1 out of the compacted log
    where the uncompacted one pushes o0 out, and a restart answered for a different order.
    A compaction now takes ``finished_orders``, in the log's order. A restored finished
    order carries the bytes the log holds of it (not made again at each compaction)."""
    logged, _ = _three_finished(tmp_path, monkeypatch, None)
    state = logged.reloaded()
    restarted = _Fix(logged)
    restarted.seq = 100  # order ids of its own
    restarted.entry.restore(state.orders, state.requests, state.finished, state.mass_cancels)
    for ref, values in state.finished.items():  # the bytes the log holds, not made anew
        (order, _keys) = restarted.entry.finished_orders[ref]
        assert order.logged is not None
        assert msgspec.msgpack.decode(order.logged) == [FINISHED, ref, *values]
    logged.log.compact(restarted.entry.dump_lazily())
    restarted.place(b"n0")
    restarted.cancel(b"n0")
    _same(logged)


def _api_orders(logged: _Logged, n: int) -> tuple[RestOrders, list[int]]:
    """A REST core with ``n`` API orders accepted (ids 10, 11, ...), logged."""
    c, out = core()
    for i in range(n):
        c.new_order(new_order(limit("BUY", "100.00", "1"), c.instruments), ALICE, 1, 5)
        cmd = out.pop()
        assert isinstance(cmd, NewOrder)
        c.process(accepted(cmd, order_id=10 + i, seq=i + 1))
    c.end_of_batch()
    logged.write(c.take_changes())
    return c, [o.placed for o in c.client_ids.values()]


def _api_done(logged: _Logged, c: RestOrders, i: int) -> None:
    c.process(OrderDone(50 + i, 0, REST_GW, 1, 0, ALICE, REST_SYM.id, 10 + i,
                        DoneReason.CANCELLED, 0, 100))  # fmt: skip
    c.end_of_batch()
    logged.write(c.take_changes())


def test_api_orders_finishing_changing_and_pushed_out_between_steps(tmp_path: Path) -> None:
    """API orders 0 and 1 finished and logged encoded before the start (copied by the
    compaction); before its first step order 2 finishes with an amend in flight, pushing 0
    past ``keep_done`` (X, then 0's stale bytes written aside); after two steps the amend's
    answer changes 2 after it finished (its bytes dropped, its entry made anew), and 3
    finishes, pushing 1 (already written aside) out. The compacted log replays to the log's
    state, its finished ones in the log's order; ``dump`` stays plain tuples."""
    logged = _Logged(tmp_path / "orders.log")
    c, refs = _api_orders(logged, 4)
    c.keep_done = 2
    _api_done(logged, c, 0)
    _api_done(logged, c, 1)
    first = c.order(ALICE, 10)
    assert first is not None and first.logged is not None
    assert next(c.dump_lazily()) is first.logged  # copied, not made again
    assert all(type(e) is tuple for e in c.dump())  # decoded for readers
    assert c.dump()[0] == tuple(msgspec.msgpack.decode(first.logged))
    logged.log.begin_compaction(c.dump_lazily())
    third = c.order(ALICE, 12)
    assert third is not None
    amend_ref = c.amend(ALICE, 1, third, 10_100, 100)
    logged.write(c.take_changes())
    _api_done(logged, c, 2)  # pushes order 0 out: X
    assert c.order(ALICE, 10) is None and third.logged is not None and third.amend_ref
    assert not logged.log.step_compaction(2)  # 0 (stale) and 1, as logged
    c.process(Rejected(90, 0, REST_GW, 1, amend_ref, ALICE, REST_SYM.id, 12,
                       ResultCode.UNKNOWN_ORDER))  # fmt: skip
    c.end_of_batch()  # the amend answered: the finished order changes
    assert third.amend_ref == 0 and third.logged is None
    logged.write(c.take_changes())
    _api_done(logged, c, 3)
    while not logged.log.step_compaction(1):
        logged.write(c.take_changes())
    assert list(logged.reference.api_orders) == refs[2:]
    _same(logged)


def test_restored_api_orders_compact_to_the_log_s_state(tmp_path: Path) -> None:
    """A restarted gateway's finished API orders carry the bytes the log holds of them, its
    open ones finish after the restart (logged encoded then): compactions before and in
    steps after give the log's state."""
    logged = _Logged(tmp_path / "orders.log")
    c, _refs = _api_orders(logged, 3)
    _api_done(logged, c, 0)
    again, _ = core()
    restored = logged.reloaded().api_orders
    assert again.restore(restored) == 2
    for o in again.done.values():
        assert o.logged is not None
        assert msgspec.msgpack.decode(o.logged) == [API_ORDER, o.placed, *restored[o.placed]]
    logged.log.compact(again.dump_lazily())
    logged.log.begin_compaction(again.dump_lazily())
    assert not logged.log.step_compaction(1)
    _api_done(logged, again, 2)
    logged.log.finish_compaction()
    _same(logged)


# -- the fast lane's task ----------------------------------------------------------------------


class _Transport(asyncio.Transport):
    """What the lane uses of asyncio's selector socket transport, as it behaves."""

    def __init__(self, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self.protocol: asyncio.BaseProtocol = protocol
        self.out = bytearray()
        self.closed = False
        self.reading = True
        self.fill_at_write = 0  # the nth write from now fills the buffer: pause_writing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40_000) if name == "peername" else default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.out += data
        self.fill_at_write -= 1
        if self.fill_at_write == 0:
            cast(asyncio.Protocol, self.protocol).pause_writing()

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol


class _Aiohttp(asyncio.Protocol):
    """What the lane hands a connection to: the bytes it gets."""

    def __init__(self) -> None:
        self.got = b""

    def data_received(self, data: bytes) -> None:
        self.got += data


class _Lane:
    """A ``FastLane`` on a ``_Transport``, its route answering the request's target."""

    def __init__(self, body_timeout_s: float = 5.0) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.aiohttp = _Aiohttp()
        self.lanes: set[FastLane] = set()
        routes: dict[tuple[str, str], FastHandler] = {("GET", "/api/v1/order"): self._handle}

        async def middleware(request: RestRequest, handler: FastHandler) -> web.StreamResponse:
            return await handler(request)

        self.lane = FastLane(routes, middleware, lambda: self.aiohttp, self.lanes, 1024,
                             body_timeout_s)  # fmt: skip
        self.transport = _Transport(self.lane)
        self.lane.connection_made(self.transport)

    async def _handle(self, request: RestRequest) -> web.StreamResponse:
        await self.gate.wait()
        if "boom" in request.raw_path:
            raise RuntimeError("a handler's bug")
        return web.Response(body=request.raw_path.encode(), content_type="text/plain")

    def send(self, *names: str, version: str = "1.1") -> None:
        """One read holding a GET of each name (pipelined)."""
        self.lane.data_received(b"".join(
            b"GET /api/v1/order?%s HTTP/%s\r\nHost: x\r\n\r\n" % (n.encode(), version.encode())
            for n in names
        ))  # fmt: skip

    def answers(self) -> list[tuple[int, str]]:
        """Each answer's status and body, in the order written."""
        found, data = [], bytes(self.transport.out)
        while data:
            head, _, data = data.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            found.append((int(head.split()[1]), data[:length].decode().split("?")[-1]))
            data = data[length:]
        return found


def _tasks() -> set[asyncio.Task[Any]]:
    return {
        t
        for t in asyncio.all_tasks()
        if getattr(t.get_coro(), "__qualname__", "") == "FastLane._answer"
    }


async def _settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def _ended(task: asyncio.Task[Any]) -> bool:
    return task.done() and not task.cancelled() and task.exception() is None


def test_requests_in_one_read_and_in_later_reads_are_answered_in_order_by_one_task() -> None:
    """Pipelined requests, reads while the task waits and while it works (woken, not yet
    run; a handler still waiting): every request answered, in order, by one task."""

    async def scenario() -> None:
        rig = _Lane()
        rig.send("a", "b", "c")
        (task,) = _tasks()
        await _settle()
        rig.send("d")  # the task waits for requests: woken
        rig.send("e", "f")  # woken, not yet run: queued behind d
        await _settle()
        rig.gate.clear()
        rig.send("g")
        await _settle()  # g's handler waits
        rig.send("h")
        rig.gate.set()
        await _settle()
        assert rig.answers() == [(200, n) for n in "abcdefgh"]
        assert _tasks() == {task} and not task.done()  # waiting for more
        rig.lane.connection_lost(None)
        await _settle()
        assert _ended(task)

    asyncio.run(scenario())


@pytest.mark.parametrize("when", ["idle", "woken, not yet run", "answering"])
def test_a_hand_over_to_aiohttp_ends_the_task_after_the_answers_ahead(when: str) -> None:
    """A request for aiohttp while the task waits, after it was woken and before it ran,
    or while a handler works: the lane's answers first, the bytes to aiohttp, the task
    ends."""

    async def scenario() -> None:
        rig = _Lane()
        rig.send("a")
        (task,) = _tasks()
        await _settle()
        if when == "answering":
            rig.gate.clear()
        if when != "idle":
            rig.send("b")
        if when == "answering":
            await _settle()
        ping = b"GET /api/v1/ping HTTP/1.1\r\nHost: x\r\n\r\n"
        rig.lane.data_received(ping)
        rig.gate.set()
        await _settle()
        assert rig.answers() == [(200, "a")] + ([(200, "b")] if when != "idle" else [])
        assert rig.transport.protocol is rig.aiohttp and rig.aiohttp.got == ping
        assert _ended(task) and not rig.lanes

    asyncio.run(scenario())


@pytest.mark.parametrize("end", ["408", "400 pipelined", "500", "HTTP/1.0", "sweep"])
def test_the_task_ends_when_the_lane_ends_the_connection(end: str) -> None:
    """The lane closes the connection itself, its task waiting or working: a request too
    slow to arrive (408), one for aiohttp pipelined behind an earlier read's (400), a
    handler's bug (500: what was pipelined behind it is not answered), an HTTP/1.0 request
    without keep-alive, an idle connection swept. The task ends with the connection."""

    async def scenario() -> None:
        rig = _Lane(body_timeout_s=0.05)
        rig.send("a")
        (task,) = _tasks()
        await _settle()
        expected = [(200, "a")]
        if end == "408":
            rig.lane.data_received(b"GET /api/v1/order HTTP/1.1\r\nHo")
            await asyncio.sleep(0.2)
            expected.append((408, ""))
        elif end == "400 pipelined":
            rig.lane.data_received(b"GET /api/v1/order?b HTTP/1.1\r\nHost: x\r\n\r\nGET /api/v1/pi")
            rig.lane.data_received(b"ng HTTP/1.1\r\nHost: x\r\n\r\n")
            expected += [(200, "b"), (400, "")]
        elif end == "500":
            rig.send("boom", "c")
            expected.append((500, ""))
        elif end == "HTTP/1.0":
            rig.send("b", version="1.0")
            expected.append((200, "b"))
        else:
            rig.lane.sweep(time.monotonic() + 1)
            assert not rig.transport.closed  # not idle long enough
            rig.lane.sweep(time.monotonic() + KEEPALIVE_S + 1)
        await _settle()
        assert [(s, b if s == 200 else "") for s, b in rig.answers()] == expected
        assert rig.transport.closed and _ended(task) and not rig.lanes

    asyncio.run(scenario())


def test_a_connection_lost_while_the_task_waits_for_the_drain_ends_it() -> None:
    """The client reads slower than it asks (``pause_writing`` from a write): the task
    waits for the drain, reading pauses; a drain lets it go on, the next wait for the
    drain ends with the connection."""

    async def scenario() -> None:
        rig = _Lane()
        rig.transport.fill_at_write = 1
        rig.send("a", "b")
        (task,) = _tasks()
        await _settle()
        assert rig.answers() == [(200, "a")] and not rig.transport.reading
        rig.lane.resume_writing()
        await _settle()
        assert rig.answers() == [(200, "a"), (200, "b")] and rig.transport.reading
        rig.transport.fill_at_write = 1
        rig.send("c", "d")
        await _settle()
        assert rig.answers()[-1] == (200, "c") and not task.done()
        rig.lane.connection_lost(None)
        await _settle()
        assert len(rig.answers()) == 3 and _ended(task)

    asyncio.run(scenario())
