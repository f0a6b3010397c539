"""Review 175: wall-clock steps (NTP or an operator steps the host clock back by seconds or
hours, or forward by hours).

Every ``time.time()``, ``time.time_ns()`` and ``datetime.now()`` in ``procs/`` and ``shm/``
was read and judged: a monotonic clock needed (timeouts, rate limits, heartbeats, deadlines,
expiry, stall detection) or a wall clock right (stamps shown to clients, SendingTime, candle
boundaries, created_ms), and then whether a step breaks a guarantee. Faults are shown by
feeding the code the readings ``time.time_ns()`` would give across a step (the sans-I/O cores
take the caller's reading) or by monkeypatching the module's ``time``; never the real clock.

Faults found, all fixed (each test says "Was (fixed)"):

- ``gateway/server.py:400`` passed ``time.time_ns()`` to ``Session.on_timer``
  (``session.py:235``): a step forward closed a connection that connected a second ago
  with "no Logon within 10 s" (``test_forward_step_does_not_time_out_a_fresh_logon``, and
  through a running gateway
  ``test_a_running_gateway_keeps_a_fresh_connection_across_a_forward_step``).
- the same reading, ``session.py:252``: after a step back the gateway sent no Heartbeat
  (and no TestRequest, ``session.py:249``) for the length of the step: a silent peer was
  not detected for an hour (``test_backward_step_does_not_stop_heartbeats``).
- ``gateway/connection.py:202`` (``check_stalled``, fed the same wall reading): a step
  forward aborted a client whose output paused a second ago
  (``test_forward_step_does_not_abort_a_briefly_paused_client``).
  The three: ``procs/common/wall_clock.py`` reads the wall clock for the gateway's FIX
  paths and tells a step from time passed by the monotonic clock; the server moves every
  connection's and session's marks by the step (``clock_stepped``); and a mark later than
  a reading is taken as the reading (a mark set from another reading in between).
- ``gateway/signing.py:263`` (``Verifier._expire`` with ``rest.py:438``'s wall reading):
  one signed request during a forward step forgot every remembered signature; once the
  clock was stepped back a request captured before was accepted again: a replay
  (``test_replay_memory_survives_a_forward_then_backward_step``); a bucket now goes once
  both the wall clock and the monotonic one passed its end.
- ``common/snapshots.py:143`` (``_remove_stale``): a step forward made another writer's
  temp file, written a second ago, look older than ``STALE_TMP_S``; it was unlinked under
  the save (review 98's guarantee) (``test_forward_step_keeps_a_fresh_temp_file``);
  ``replace_durably`` now holds its temp file's flock, and one held is spared.

Uses judged correct, pinned by a test: the token bucket's backward-step rule
(``common/token_bucket.py``), candles and the 24h ticker never moving backwards
(``core/market/candles.py``, ``ticker.py``), the REST client's strictly increasing
timestamps (``gateway/rest_client.py:78``).

Judged correct without a test: SendingTime / TransactTime / serverTime / heartbeat stamps
shown to clients (``order_replies.py``, ``rest_public.py``, ``stream_subscriber.py:130``,
``marketdata/server.py:321``), the API keys' ``created_ms`` (``apikeys.py:265``, ``max``
with the last + 1), records' ``ts_ns`` (``rest_*``, ``connections.py``,
``router/intake.py``), the journal header stamp (``journal_writer.py:447``), status files'
``updated_ns``, the ``Date`` header (``fast_request.py:122``), the supervisor's session end
(wall-clock by design; ``journaled_ends.py`` handles a step), ``_snapshot_age_s`` (compares
with a file mtime, clamped at 0), the ExecID start (``exec_ids.py:70``: ``max`` with the
durable mark), latency histograms (a step gives one odd sample), the marketdata feed's
clock (``feed.py:140``: paced by ``time.monotonic``, candles never go back), every interval
already on ``time.monotonic`` (REST limits, caches, compaction retry, supervisor duties).

Leads not shown: ``gateway/orders.py:143`` starts client refs at ``time.time_ns()``; a
restart after a step back relies on ``order_memory.py:233`` recovering the highest ref used;
the router's balance-watch leases (``router/main.py:500``, ``core/watches.py``) expire at
once after a forward step (healed by the gateway's renewal within 10 s, pushes missed
meanwhile); a forward step later undone leaves candles in the future (trades pile into the
open candle, by design "a closed candle never changes"); ``Verifier.not_before_ms``
(``rest.py:134``) taken while the clock was ahead refuses every request after the
correction for the size of the step.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from procs.common import snapshots as snapshots_module
from procs.common import wall_clock
from procs.common.token_bucket import TokenBucket
from procs.common.users import UserStore
from procs.core.market.candles import CandleSeries
from procs.core.market.ticker import RollingTicker
from procs.gateway import rest_client as rest_client_module
from procs.gateway.connection import STALL_HEARTBEATS, Connection
from procs.gateway.session import Session
from procs.gateway.session_interface import SessionSettings, State
from procs.gateway.signing import REPLAYED, AuthError, Verifier, sign
from procs.gateway.store import MessageStore
from tests.unit.gateway.harness import Client, Harness, config, run_scenario
from tests.unit.gateway.test_review4_fix_bugs import (  # its fixture closes the stores
    App,
    _close_stores,  # noqa: F401
    msg,
    replies,
    session,
)

_S = 1_000_000_000
_HOUR = 3600 * _S
T0 = 1_750_000_000 * _S  # a wall reading before the step


@pytest.fixture
def stores() -> Iterator[list[MessageStore]]:
    made: list[MessageStore] = []
    yield made
    for store in made:
        store.close()


# -- FIX session timers (server.py:400 feeds Session.on_timer the wall clock) -----------------


def test_forward_step_does_not_time_out_a_fresh_logon(
    tmp_path: Path, stores: list[MessageStore]
) -> None:
    """Was (fixed: ``wall_clock.now_ns`` tells a step from time passed, and the sessions'
    marks move with it: ``Session.clock_stepped``). ``server.py:400`` read
    ``time.time_ns()`` once a second and handed it to ``Session.on_timer``, whose logon
    timeout (``session.py:235``) is ``now_ns - _connected_ns > logon_timeout_s``. A
    connection made one real second before the clock was stepped forward by two hours was
    closed at the next tick, "no Logon within 10 s". Shown: a session made at T0,
    ``on_timer`` at T0 + 1 s, the step told, ``on_timer`` at T0 + 2 s + 2 h: still
    waiting for its Logon; at T0 + 12 s + 2 h (ten real seconds on) it times out."""
    users = UserStore(tmp_path / "users.json")
    users.add("ALICE", "pw", 7, n=1 << 4)

    def store(comp: str) -> MessageStore:
        made = MessageStore(tmp_path / "sessions" / comp)
        stores.append(made)
        return made

    s = Session(SessionSettings(comp_id="RINGEX"), users, store, App(), {}, T0)
    assert s.state is State.AWAIT_LOGON
    s.on_timer(T0 + _S)  # one real second later, no step: still waiting, rightly
    assert s.state is State.AWAIT_LOGON
    s.clock_stepped(2 * _HOUR)  # (what ``wall_clock`` tells the gateway at the step)
    s.on_timer(T0 + 2 * _S + 2 * _HOUR)  # one more real second; the clock stepped 2 h ahead
    assert s.state is State.AWAIT_LOGON, s.close_reason
    s.on_timer(T0 + 12 * _S + 2 * _HOUR)
    assert s.closed and "no Logon" in s.close_reason


def test_the_wall_clock_tells_a_step_from_time_passed(monkeypatch: pytest.MonkeyPatch) -> None:
    """``wall_clock.WallClock``: a reading whose wall clock moved a second or more against the
    monotonic one tells its followers the step first, once; time passing is no step."""
    wall, mono = [T0], [10 * _S]
    monkeypatch.setattr(time, "time_ns", lambda: wall[0])
    monkeypatch.setattr(time, "monotonic_ns", lambda: mono[0])
    steps: list[int] = []

    class Follower:
        def clock_stepped(self, step_ns: int) -> None:
            steps.append(step_ns)

    clock, follower = wall_clock.WallClock(), Follower()
    clock.follow(follower)
    assert clock.now_ns() == T0
    wall[0] += 5 * _S
    mono[0] += 5 * _S
    assert clock.now_ns() == T0 + 5 * _S and steps == []  # time passed
    wall[0] += 2 * _HOUR
    assert clock.now_ns() == T0 + 5 * _S + 2 * _HOUR and steps == [2 * _HOUR]
    assert clock.now_ns() == wall[0] and steps == [2 * _HOUR]  # told once
    wall[0] -= 3 * _HOUR
    mono[0] += _S // 2
    clock.now_ns()
    assert steps == [2 * _HOUR, -3 * _HOUR - _S // 2]  # the step: what passed taken out


def test_backward_step_does_not_stop_heartbeats(tmp_path: Path) -> None:
    """Was (fixed: ``on_timer`` takes a mark later than its reading as the reading).
    ``session.py:252`` sends a Heartbeat when ``now_ns - _last_out_ns >= hb``, and
    ``session.py:249`` a TestRequest when ``now_ns - _last_in_ns > 1.2 hb``, with the wall
    reading of ``server.py:400``. After a step back of an hour both differences were
    negative for an hour: the gateway sent no Heartbeat (the client's own TestRequest was
    then all that kept the session up) and never tested a silent peer, which held its
    session, its orders and its cancel-on-disconnect for an hour. Shown: a logged-on
    session (HeartBtInt 30, its Logon reply at T0), the clock stepped back an hour, the
    client's Heartbeat at 35 real seconds: no Heartbeat at the step's tick (40 s: the marks
    are taken as now), one an interval later, then the silent peer's TestRequest."""
    s, _ = session(tmp_path, T0)
    back = T0 - _HOUR
    s.data_received(msg("0", 2, now_ns=back + 35 * _S), back + 35 * _S)
    assert s.state is State.ACTIVE and not replies(s)
    s.on_timer(back + 40 * _S)
    assert [m.msg_type for m in replies(s)] == []
    s.on_timer(back + 71 * _S)
    assert [m.msg_type for m in replies(s)] == [b"0"]  # within an interval, not an hour
    s.on_timer(back + 80 * _S)
    assert [m.msg_type for m in replies(s)] == [b"1"]  # the silent peer is tested


def _timer_output(tmp_path: Path, step_ns: int) -> list[bytes]:
    """The messages a logged-on session (HeartBtInt 30, its last output at T0) sends at a
    timer 40 real seconds later, the client's Heartbeat having come at 35 s, with the wall
    clock stepped by ``step_ns`` before both."""
    s, _ = session(tmp_path, T0)
    s.data_received(msg("0", 2, now_ns=T0 + 35 * _S + step_ns), T0 + 35 * _S + step_ns)
    assert s.state is State.ACTIVE and not replies(s)
    s.on_timer(T0 + 40 * _S + step_ns)
    return [m.msg_type for m in replies(s)]


def test_session_timers_without_a_step(tmp_path: Path) -> None:
    """Pin: without a step, 40 s after its last output the gateway sends a Heartbeat (the
    client's own came 5 s ago: no TestRequest), so the xfail above fails for the step."""
    assert _timer_output(tmp_path, 0) == [b"0"]


# -- stall detection (connection.py:202, fed the timers' wall reading) ------------------------


class _Transport:
    def __init__(self) -> None:
        self.size = 100_000
        self.aborted = False

    def get_write_buffer_size(self) -> int:
        return self.size

    def is_closing(self) -> bool:
        return False

    def abort(self) -> None:
        self.aborted = True


def _paused_connection() -> tuple[Connection, _Transport]:
    conn = Connection(SimpleNamespace(pacing=None))  # (an Owner protocol: any object)
    transport = _Transport()
    conn.transport = transport  # type: ignore[assignment]  # the calls check_stalled makes
    fake_session: Any = SimpleNamespace(heartbeat_ns=30 * _S, comp_id="ALICE", store=None)
    conn.session = fake_session  # what check_stalled reads of a session
    conn.writing_paused = True  # (set directly: pause_writing would sync the reading)
    return conn, transport


def test_forward_step_does_not_abort_a_briefly_paused_client() -> None:
    """Was (fixed: ``Connection.clock_stepped`` moves its stall mark with the step).
    ``connection.py:202`` aborts when ``now_ns - _stalled_ns`` passes ``STALL_HEARTBEATS``
    heartbeat intervals (60 s), with ``server.py:400``'s reading. A client whose output
    paused one real second ago (a normal moment of back-pressure) was disconnected at the
    next tick after a forward step of two hours, its orders cancelled on disconnect. Shown:
    ``check_stalled`` at T0, the step told, one real second later with the clock 2 h
    ahead: not aborted."""
    conn, transport = _paused_connection()
    conn.check_stalled(T0)
    conn.session = None  # (the fake session has no marks to move: the connection's own)
    conn.clock_stepped(2 * _HOUR)
    conn.session = SimpleNamespace(heartbeat_ns=30 * _S, comp_id="ALICE", store=None)  # type: ignore[assignment]
    conn.check_stalled(T0 + _S + 2 * _HOUR)
    assert not transport.aborted


def test_a_real_stall_still_aborts() -> None:
    """Pin: without a step, output standing still past the limit is aborted."""
    conn, transport = _paused_connection()
    conn.check_stalled(T0)
    conn.check_stalled(T0 + STALL_HEARTBEATS * 30 * _S + _S)
    assert transport.aborted


# -- the REST replay memory (signing.py, fed rest.py:438's wall reading) ----------------------


def _signed(secret: str, ts_ms: int) -> dict[str, Any]:
    signature = sign(secret, ts_ms, 5_000, "POST", "/api/v1/order", "", b"{}")
    return {
        "secret": secret,
        "timestamp": str(ts_ms),
        "recv_window": "5000",
        "signature": signature,
        "method": "POST",
        "path": "/api/v1/order",
        "query": "",
        "body": b"{}",
    }


def test_replay_memory_survives_a_forward_then_backward_step() -> None:
    """Was (fixed: a bucket goes once the wall clock and the monotonic one both passed its
    end, ``check``'s ``mono_ms``). ``Verifier.check`` dropped every remembered signature
    whose window ended before ``now_ms`` (``signing.py:263``, ``_expire``), ``now_ms`` being
    ``rest.py:438``'s ``time.time_ns()``. One valid request while the clock was stepped ahead
    (a client that takes its offset from ``serverTime``, as ``trading.js`` does, signs one)
    emptied the memory; when the clock was stepped back, a request captured before the step
    was still inside its window and was accepted a second time: an order placed twice.
    Shown: request A at T accepted; request B signed at T + 1 h checked at T + 1 h; A sent
    again at T + 1 s (clock back), one real second after A: REPLAYED now. And a step back
    alone keeps A until the wall clock passes its window again."""
    secret = "s3cret"
    now_ms, mono = T0 // 1_000_000, 5_000_000
    verifier = Verifier(60_000, 5_000)
    a = _signed(secret, now_ms)
    verifier.verify(**a, now_ms=now_ms, mono_ms=mono)
    ahead = now_ms + 3_600_000
    verifier.verify(**_signed(secret, ahead), now_ms=ahead, mono_ms=mono + 500)  # stepped on
    with pytest.raises(AuthError) as err:  # stepped back: A is replayed within its window
        verifier.verify(**a, now_ms=now_ms + 1_000, mono_ms=mono + 1_000)
    assert err.value.code == REPLAYED
    behind = now_ms - 3_600_000  # a step back an hour: real time passes, the wall catches up
    verifier.verify(**_signed(secret, behind), now_ms=behind, mono_ms=mono + 7_200_000)
    with pytest.raises(AuthError) as err:
        verifier.verify(**a, now_ms=now_ms + 2_000, mono_ms=mono + 7_201_000)
    assert err.value.code == REPLAYED
    verifier.verify(
        **_signed(secret, now_ms + 9_000), now_ms=now_ms + 9_000, mono_ms=mono + 7_210_000
    )
    assert len(verifier) == 2  # A's went, both clocks past its end; B's waits for the wall


def test_replay_refused_without_a_step() -> None:
    """Pin: without a step, the same request sent twice within its window is REPLAYED."""
    secret = "s3cret"
    now_ms = T0 // 1_000_000
    verifier = Verifier(60_000, 5_000)
    a = _signed(secret, now_ms)
    verifier.verify(**a, now_ms=now_ms)
    with pytest.raises(AuthError) as err:
        verifier.verify(**a, now_ms=now_ms + 1_000)
    assert err.value.code == REPLAYED


# -- stale temp files (common/snapshots.py:143) -----------------------------------------------


def test_forward_step_keeps_a_fresh_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was (fixed: ``replace_durably`` holds its temp file's ``flock`` while it writes, and
    ``_remove_stale`` spares one held). ``_remove_stale`` (``snapshots.py:143``) unlinked a
    ``*.tmp`` whose mtime was more than ``STALE_TMP_S`` (600 s) behind ``time.time()``:
    review 98 meant it to spare another writer's save in progress (the router's snapshot
    job beside ``ringex replay --snapshot``). After a forward step of two hours a temp file
    written a second ago looked two hours old and was removed under its writer, whose
    rename then failed. Shown: a temp file with mtime now, held as a writer holds it,
    ``snapshots.time.time`` patched to now + 2 h: kept; let go (its writer crashed): gone."""
    tmp = tmp_path / "00000042.snap.tmp"
    tmp.write_bytes(b"half a snapshot")
    written = time.time()
    os.utime(tmp, (written, written))
    monkeypatch.setattr("procs.common.snapshots.time.time", lambda: written + 1 + 7_200)
    writer = os.open(tmp, os.O_WRONLY)
    try:
        fcntl.flock(writer, fcntl.LOCK_EX)  # as ``replace_durably`` holds it
        snapshots_module._remove_stale(tmp_path)
        assert tmp.exists()
    finally:
        os.close(writer)
    snapshots_module._remove_stale(tmp_path)
    assert not tmp.exists()


def test_a_crashed_save_is_still_removed(tmp_path: Path) -> None:
    """Pin: a temp file really older than ``STALE_TMP_S`` is removed (no step)."""
    tmp = tmp_path / "00000042.snap.tmp"
    tmp.write_bytes(b"half a snapshot")
    old = time.time() - snapshots_module.STALE_TMP_S - 60
    os.utime(tmp, (old, old))
    snapshots_module._remove_stale(tmp_path)
    assert not tmp.exists()


# -- uses found right -------------------------------------------------------------------------


def test_token_bucket_keeps_allowing_after_a_backward_step() -> None:
    """``token_bucket.py``: a reading earlier than the last counts on from itself, so a
    bucket emptied just before a step back of an hour refills in a second of real time,
    not an hour later."""
    bucket = TokenBucket(10, T0)
    while bucket.allow(T0):
        pass
    back = T0 - _HOUR
    assert not bucket.allow(back)  # the step itself refills nothing
    assert bucket.allow(back + _S)  # one real second later: refilled


def test_token_bucket_forward_step_refills_one_bucket_only() -> None:
    """A forward step refills at most the cap (a second's worth), never hours of it."""
    bucket = TokenBucket(10, T0)
    assert sum(bucket.allow(T0 + 2 * _HOUR) for _ in range(100)) == 10


def test_candles_neither_close_nor_reopen_on_a_backward_step() -> None:
    """``candles.py``: ``advance`` to an earlier time does nothing; a trade stamped before
    the step back joins the open candle (``MarketState.trade`` passes ``max(ts, clock)``)."""
    series = CandleSeries("1m")
    start = T0 - T0 % (60 * _S)
    series.trade(start + 30 * _S, 100, 1, 1)
    series.take_changed()
    series.advance(start + 30 * _S - _HOUR)
    assert series.current is not None and series.current.open_ns == start
    assert not series.closed and series.take_changed() == []


def test_ticker_window_never_moves_back() -> None:
    """``ticker.py``: the 24h window's end moves forward only; a step back keeps it."""
    ticker = RollingTicker(1)
    ticker.trade(T0, 1, 100, 2)
    ticker.advance(T0 - _HOUR)
    shown = ticker.ticker()
    assert shown is not None and shown.ts_ns == T0 and shown.volume == 2


def test_rest_client_timestamps_increase_across_a_backward_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``rest_client.py:78``: a timestamp is ``max(clock, last + 1)``, so a step back never
    repeats one (a repeated one would sign a request the server refuses as REPLAYED)."""
    readings = iter([T0, T0 - _HOUR, T0 - _HOUR])
    monkeypatch.setattr("procs.gateway.rest_client.time.time_ns", lambda: next(readings))
    client = object.__new__(rest_client_module.RestClient)
    client._last_ms = 0
    stamps = [client._timestamp() for _ in range(3)]
    assert stamps == sorted(set(stamps)) and len(stamps) == 3


def test_a_running_gateway_keeps_a_fresh_connection_across_a_forward_step(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole path: a gateway's connection awaiting its Logon, the host's clock stepped
    two hours ahead, the gateway's timer ticks: ``wall_clock`` tells the server, which moves
    every session's marks, so the connection is not timed out for a Logon it had seconds
    left to send, and logs on."""
    h = Harness(config(instance, tmp_path))
    h.add_user("ALICE", "pw", 7)
    real = time.time_ns

    async def scenario(h: Harness, port: int) -> None:
        alice = Client("ALICE")
        await alice.connect(port)
        await asyncio.sleep(0.2)
        monkeypatch.setattr(time, "time_ns", lambda: real() + 2 * _HOUR)
        await asyncio.sleep(1.5)  # a timer tick or two past the step
        assert not await alice.closed(0.1), "a fresh connection timed out by the step"
        await alice.logon("pw")
        monkeypatch.setattr(time, "time_ns", real)  # (back, before the harness stops)

    run_scenario(h, scenario)
