"""Review 166: where a task's cancel or a shutdown can be lost, swallowed or wedged.

Commit 83087b1 replaced ``asyncio.wait_for`` (Python 3.11 loses a cancel that lands as the
inner awaitable completes, gh-86296). These tests hunt the same class of fault elsewhere:
a ``suppress(CancelledError)`` around ``await task`` that eats the caller's own cancel, a
child task a cancelled caller leaves running, a task cancelled and not awaited before what
it uses is closed. Each cancel is placed at an exact moment (the same loop iteration as a
completion, or while the caller awaits an inner task), and every wait is bounded, so a
fault found ends as a strict xfail within a second, never a hang.

Faults found, all fixed since: ``MarketDataServer.stop`` swallowed its own caller's cancel
(each task awaited under ``suppress(CancelledError)``; now one gather); a best-effort open
orders listing cancelled left its database read running, holding a pool connection; a
stopping standby process closed its standby before the follow task had ended, so a frame in
flight was applied after the close.
"""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from config.edges import MarketDataConfig
from config.schema import RingexConfig, SymbolConfig
from procs.common import gc_policy
from procs.gateway.history import History
from procs.gateway.rest_open_orders import OpenOrderViews
from procs.gateway.rest_public import MarketStatuses
from procs.marketdata.server import MarketDataServer
from procs.replica import main as replica_main
from procs.replica.wire import Ack, Heartbeat, receive, send
from tests.unit.replica.test_review108_readme_failover2 import _Writer  # wire.send's

ROOT = Path(__file__).resolve().parents[2]
BOUND_S = 1.0  # every wait of these tests: a fault shows as an xfail, never a hang


async def _turns(n: int = 5) -> None:
    """Let the loop run ``n`` iterations (the tasks started get to their awaits)."""
    for _ in range(n):
        await asyncio.sleep(0)


async def _reap() -> None:
    """Cancel and await what a test left running (a pending task is an error at teardown)."""
    me = asyncio.current_task()
    left = [t for t in asyncio.all_tasks() if t is not me]
    for task in left:
        task.cancel()
    async with asyncio.timeout(BOUND_S):
        await asyncio.gather(*left, return_exceptions=True)


async def _frame(message: Any) -> bytes:
    writer = _Writer()
    await send(cast(asyncio.StreamWriter, writer), message)
    return bytes(writer.data)


# -- the fix of 83087b1 holds ------------------------------------------------------------------


@pytest.mark.parametrize("split", [False, True], ids=["whole-frame", "body-after-length"])
def test_a_replication_read_cancelled_as_its_frame_arrives_ends_cancelled(split: bool) -> None:
    """The standby's read (``wire._read`` under ``asyncio.timeout``): a frame fed and the
    cancel given in the same loop iteration ends the read cancelled, not with the frame
    (what ``wait_for`` did on 3.11). ``split``: the cancel lands as the body completes,
    the length read before it."""

    async def main() -> None:
        frame = await _frame(Ack(7))
        reader = asyncio.StreamReader()
        reading = asyncio.create_task(receive(reader, silence_s=5.0))
        if split:
            reader.feed_data(frame[:4])
        await _turns()
        assert not reading.done()
        reader.feed_data(frame[4:] if split else frame)  # the read's waiter completes ...
        reading.cancel()  # ... and the cancel comes in the same iteration
        async with asyncio.timeout(BOUND_S):
            await asyncio.gather(reading, return_exceptions=True)
        assert reading.cancelled(), f"the cancel was lost: the read returned {reading.result()}"

    asyncio.run(main())


def test_a_replication_read_times_out_on_silence_and_not_on_a_cancel() -> None:
    """Silence past ``silence_s`` is ``TimeoutError`` (the standby reconnects on it); a
    cancel during the same read stays a cancel (the standby's loop must not take it for a
    silent primary and go on)."""

    async def main() -> None:
        reader = asyncio.StreamReader()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(BOUND_S):
                await receive(reader, silence_s=0.02)
        reading = asyncio.create_task(receive(reader, silence_s=0.02))
        await _turns()
        reading.cancel()
        async with asyncio.timeout(BOUND_S):
            await asyncio.gather(reading, return_exceptions=True)
        assert reading.cancelled()
        reader.feed_data(await _frame(Heartbeat()))
        async with asyncio.timeout(BOUND_S):
            assert isinstance(await receive(reader, silence_s=1.0), Heartbeat)

    asyncio.run(main())


def test_the_one_wait_for_left_is_a_top_level_asyncio_run() -> None:
    """``procs/replica/rebuild.py`` ``ask_primary``: ``asyncio.run(asyncio.wait_for(...))``.
    Nothing can cancel that task but ``wait_for``'s own deadline (a Ctrl-C interrupts
    ``asyncio.run`` itself), so gh-86296 has no cancel there to lose. Every other
    ``wait_for`` in procs/ and scripts/ is gone."""
    found: list[tuple[str, int, bool]] = []
    for path in sorted(
        [*ROOT.joinpath("procs").rglob("*.py"), *ROOT.joinpath("scripts").glob("*.py")]
    ):
        tree = ast.parse(path.read_text(), str(path))
        top_level = {
            id(arg)
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and ast.unparse(node.func) in ("asyncio.run", "uvloop.run")
            for arg in node.args
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("wait_for"):
                found.append((str(path.relative_to(ROOT)), node.lineno, id(node) in top_level))
    assert [(p, top) for p, _, top in found] == [("procs/replica/rebuild.py", True)], found


def test_a_status_fetch_shared_by_callers_keeps_each_callers_cancel() -> None:
    """``MarketStatuses.statuses`` shields the fetch it shares: a caller cancelled in the
    iteration the fetch's answer comes ends cancelled (its cancel is not lost to the
    answer), the other caller gets the answer, and the fetch is not cancelled by the one
    gone (rest_public.py:91)."""

    async def main() -> None:
        answer: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()
        fetched: list[bool] = []

        async def fetch() -> dict[str, str]:
            try:
                return await answer
            finally:
                fetched.append(not answer.cancelled())

        statuses = MarketStatuses(lambda: ("http://md.invalid", cast(Any, object())), "test")
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(statuses, "_fetch", fetch)
            gone = asyncio.create_task(statuses.statuses())
            stays = asyncio.create_task(statuses.statuses())
            await _turns()
            answer.set_result({"BTC-USD": "TRADING"})
            gone.cancel()
            async with asyncio.timeout(BOUND_S):
                await asyncio.gather(gone, stays, return_exceptions=True)
        assert gone.cancelled()
        assert stays.result() == {"BTC-USD": "TRADING"}
        assert fetched == [True]

    asyncio.run(main())


# -- faults ------------------------------------------------------------------------------------


def _md_server() -> MarketDataServer:
    """A server never started (``stop`` then only ends its tasks): what ``stop`` reads."""
    cfg = cast(MarketDataConfig, SimpleNamespace(max_connections=8))
    return MarketDataServer(cast(Any, None), cast(Any, None), cfg)


def test_a_market_data_stop_cancelled_while_a_task_ends_ends_cancelled() -> None:
    """Expected: ``stop()`` cancelled while it awaits one of its tasks (a ``_close_within``
    still closing) raises CancelledError, as any coroutine cancelled does, so a bound put
    on a stop (``asyncio.timeout``) or a task cancelled at teardown holds.
    Was (fixed): the cancel reaches the awaited task, whose CancelledError is suppressed
    (``contextlib.suppress(asyncio.CancelledError)`` around ``await task``); stop goes on
    and returns normally: the caller's cancel is lost, and a timeout around it is overrun
    silently (it sees no CancelledError, so raises no TimeoutError).
    procs/marketdata/server.py:308-310 (the same pattern at :412 and
    procs/gateway/private_stream.py:277, at a handler's end)."""

    async def main() -> None:
        server = _md_server()

        async def closing() -> None:  # a close that takes a moment after its cancel
            try:
                await asyncio.Event().wait()
            finally:
                await asyncio.sleep(0.5)

        server.spawn(closing())
        stopping = asyncio.create_task(server.stop())
        await _turns()  # stop has cancelled the task and awaits it
        assert not stopping.done()
        stopping.cancel()
        try:
            async with asyncio.timeout(BOUND_S):
                await asyncio.gather(stopping, return_exceptions=True)
            assert stopping.cancelled(), "stop() returned normally: its cancel was swallowed"
        finally:
            await _reap()

    asyncio.run(main())


class _Views(OpenOrderViews):
    """The mixin as ``RestApi`` has it: ``history`` and ``db`` are all the read uses."""

    def __init__(self, history: object) -> None:
        self.history = cast(History, history)

    async def db(self, query: Any) -> Any:  # (an attribute of RestApi there)
        return await query


def test_a_best_effort_listing_cancelled_cancels_its_database_read() -> None:
    """Expected: a private stream's snapshot (or ``DELETE openOrders``) cancelled while
    ``open_order_rows(best_effort=True)`` waits (the client gone, the gateway stopping)
    cancels the read task it started, as its own bound does.
    Was (fixed): ``await asyncio.wait({reading}, timeout=...)`` raises the caller's
    CancelledError and leaves ``reading`` running: the query holds its pool connection
    until the database answers or psycopg gives up (10 s on a dead link, reread 44), and a
    stop has such reads outliving the handlers.
    procs/gateway/rest_open_orders.py:91-93. Fix: ``try: await asyncio.wait(...)
    except asyncio.CancelledError: reading.cancel(); raise``."""

    async def main() -> None:
        ended: list[str] = []

        async def hung_query() -> list[Any]:
            try:
                await asyncio.Event().wait()  # a database that never answers
            except asyncio.CancelledError:
                ended.append("cancelled")
                raise
            return []

        history = SimpleNamespace(orders=lambda account, symbol, open_only: hung_query())
        symbols = [cast(SymbolConfig, SimpleNamespace(id=1))]
        caller = asyncio.create_task(_Views(history).open_order_rows(7, symbols, best_effort=True))
        await _turns()
        caller.cancel()
        try:
            async with asyncio.timeout(BOUND_S):
                await asyncio.gather(caller, return_exceptions=True)
                await _turns()
            assert caller.cancelled()
            assert ended == ["cancelled"], "the read goes on after its caller was cancelled"
        finally:
            await _reap()

    asyncio.run(main())


class _Standby:
    """What ``replica.main._standby`` uses of a Standby. ``run`` is suspended where the real
    one is most of the time: a frame persisted, its Ack being sent, ``apply`` in the
    ``finally`` (standby.py:343-346)."""

    def __init__(self, cfg: object, events: list[str]) -> None:
        self.stopping = asyncio.Event()
        self.events = events

    async def run(self) -> None:
        try:
            await asyncio.Event().wait()  # ``await send(writer, Ack(seq))``
        finally:
            self.events.append("frame applied")  # ``self.apply(message)``

    def close(self) -> None:
        self.events.append("closed")  # write_status, journal.close, save_snapshots


def test_a_standby_stopped_closes_after_its_follow_task_has_ended(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Expected: at a stop, ``_standby`` cancels the follow task and waits (bounded) for it
    to end before ``standby.close()`` closes the journal and saves the snapshots, so the
    snapshots hold every frame applied and nothing touches the standby after its close.
    Was (fixed): ``task.cancel()`` then ``return 0`` runs the ``finally: standby.close()`` at
    once; the task takes its cancel only at the loop's teardown, after the close: a frame
    persisted and not yet applied (its Ack in flight) is applied to the hot state after
    the snapshots were saved, and ``_connect_loop``'s ``finally`` writes the status after
    the journal closed. procs/replica/main.py:75-83. Fix: after ``task.cancel()``,
    ``await asyncio.wait({task}, timeout=...)`` before the close."""
    events: list[str] = []
    made: list[_Standby] = []

    def standby_of(cfg: object) -> _Standby:
        made.append(_Standby(cfg, events))
        return made[-1]

    monkeypatch.setattr(replica_main, "Standby", standby_of)
    monkeypatch.setattr(replica_main, "_stop_on_signals", lambda stopping: None)
    monkeypatch.setattr(gc_policy, "settle", lambda policy: None)
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)

    async def main() -> None:
        cfg = cast(RingexConfig, SimpleNamespace(gc=None))
        stopped = asyncio.create_task(replica_main._standby(cfg))
        try:
            await _turns()
            assert not stopped.done()
            made[0].stopping.set()  # SIGTERM
            async with asyncio.timeout(BOUND_S):
                assert await stopped == 0
            assert events[:2] == ["frame applied", "closed"], events
        finally:
            await _reap()

    asyncio.run(main())
