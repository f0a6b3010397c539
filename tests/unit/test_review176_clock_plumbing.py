"""Review 176 (a helper, hostile): the plumbing of review 175's wall clock (9069f49, aa7a578).

``procs/common/wall_clock.py`` reads the wall clock for the gateway's FIX paths and, at a step
(the wall moved a second or more against the monotonic clock), tells its followers (the
``GatewayServer``: every connection, every session) to shift the marks they measure
intervals from. Judged: every reading that sets a session's or a connection's mark, the marks
moved and not moved, the clock itself, and the REST Verifier's new expiry rule. All shown with
the sans-I/O session fed the readings ``wall_clock`` would give, or a ``WallClock`` whose
``time.time_ns`` / ``time.monotonic_ns`` are patched; never the real clock.

Faults, all fixed (each test says "Was (fixed)"):

- ``gateway/session.py:523`` (with ``gap_recovery.py:129``, ``session.py:549``,
  ``gap_recovery.py:216``): ``_resend_at``, the mark a stale gap is asked again from (review
  51: a heartbeat interval without an answer moving the gap on), is an interval mark on the
  wall clock that ``Session.clock_stepped`` (``session.py:266``) does not move and
  ``on_timer`` does not clamp. After a step back of an hour a gap whose resend was garbled is
  not asked again for an hour: every message the client sends meanwhile is past the gap and
  is dropped (``test_backward_step_still_asks_again_for_a_stale_gap``).
- ``gateway/session.py:278``: ``clock_stepped`` moves the arrival of the messages held while
  the password is checked, but that arrival is used for one thing only, their SendingTime
  check (``session.py:214`` ``_held_for_ns``, ``session.py:492``), a wall stamp the docstring
  itself says is kept (as the Logon's ``_logon_ns`` is). A Logon accepted across a step is
  followed by a Reject and a Logout for the message the client sent a millisecond after it,
  with the same SendingTime
  (``test_a_message_held_behind_the_logon_is_judged_by_its_arrival_across_a_step``).
- ``common/wall_clock.py:62`` (latent: no follower in the tree raises today): the offset is
  moved before the followers are told, in a loop with no guard. A follower that raises makes
  ``now_ns`` raise to whichever caller read the clock (the server's ``_timers`` task, a
  ``data_received``), and the followers after it are never told the step: it is taken as
  consumed (``test_a_follower_that_raises_neither_breaks_the_reading_nor_hides_the_step``).

Checked and found right (pinned below where cheap): every reading that sets a FIX session's
or connection's mark in ``procs/gateway`` now comes from ``wall_clock.now_ns()``: Session
construction, ``data_received``, ``take_output``, ``authenticated``, ``refused``,
``connection_lost``, the timers, shutdown's ``logout``, the held-socket credit, order entry
reports (``order_replies._deliver``/``_report``, ``orders.py`` through ``on_message``'s
reading), mass status, security list/status, UserRequest answers; the ``time.time_ns()``
left in ``rest_*.py`` stamp records and REST responses, never a FIX session's mark, and no
executor thread reads ``wall_clock``. ``_logon_ns`` and ``_resend_ns`` are wall stamps
(SendingTime), rightly kept. The connection's ``_stalled_ns``/``_held_ns`` and the
session's token buckets move. ``WallClock``: the first reading tells no one; a collected
follower (a stopped test server) drops out of the WeakSet; a drift under ``STEP_NS`` is no
step. The Verifier (``signing.py:296``): memory stays bounded by ``replay_capacity``
across steps (``remember`` drops the soonest buckets when full) and distinct valid requests
are not refused after steps either way (a bucket not yet expirable only delays the expiry
of the buckets behind it, by at most its window).

Leads not shown: ``wall_clock.now_ns`` has no lock: two threads reading across a step would
both tell the followers (a double shift); only the event loop reads it in a gateway today,
but the harness may run two gateways in one process, and the process-wide ``CLOCK`` tells
each server from the other's thread. A step under ``STEP_NS`` is not told but stays in the
offset's difference: a later one that crosses ``STEP_NS`` shifts marks set after the first
part by the whole sum (error under a second). A reading taken before a step and used after
another reading told it (the ``_timers`` loop's ``now`` held across the sessions) would be
clamped in by ``on_timer`` and undo the shift (a fresh connection timed out after a forward
step): nothing inside that loop reads the clock today. The docstring's slewing paragraph
is off: Linux's ``CLOCK_MONOTONIC`` is slewed with the wall clock, so slewing never adds up
to a step; a suspend of the host (``CLOCK_MONOTONIC`` stops) is taken for a step.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from procs.common import wall_clock
from procs.common.users import UserStore
from procs.gateway.session import Session
from procs.gateway.session_interface import SessionSettings, State
from procs.gateway.signing import Verifier, sign
from procs.gateway.store import MessageStore
from tests.unit.gateway.test_review4_fix_bugs import (  # its fixture closes the stores
    App,
    _close_stores,  # noqa: F401
    msg,
    replies,
    session,
)
from tests.unit.test_review175_clock_steps import _HOUR, _S, T0


@pytest.fixture
def stores() -> Iterator[list[MessageStore]]:
    made: list[MessageStore] = []
    yield made
    for store in made:
        store.close()


# -- a stale gap's second ResendRequest (session.py:523, ``_resend_at``) -----------------------


def _gap_then(tmp_path: Path, step_ns: int) -> list[bytes]:
    """A logged-on session (HeartBtInt 30) sees seq 3 for 2 at T0 + 1 s (its ResendRequest),
    the wall clock steps by ``step_ns``, and seq 4 (not PossDup) comes 40 real seconds
    after the request, no answer having moved the gap on: the messages sent for seq 4."""
    s, _ = session(tmp_path, T0)
    at = T0 + _S
    s.data_received(msg("0", 3, now_ns=at), at)
    assert [m.msg_type for m in replies(s)] == [b"2"]
    s.clock_stepped(step_ns)  # (what ``wall_clock`` tells the server at the step)
    later = T0 + 41 * _S + step_ns
    s.on_timer(later)  # (the timers' tick: the client's silence is no matter here)
    replies(s)
    s.data_received(msg("0", 4, now_ns=later), later)
    return [m.msg_type for m in replies(s)]


def test_a_stale_gap_is_asked_again_without_a_step(tmp_path: Path) -> None:
    """Pin (review 51): a heartbeat interval without an answer moving the gap on, the next
    message past it asks again."""
    assert _gap_then(tmp_path, 0) == [b"2"]


def test_backward_step_still_asks_again_for_a_stale_gap(tmp_path: Path) -> None:
    """Was (fixed: ``clock_stepped`` moves ``_resend_at``, and a mark past the reading is taken as
    the reading). ``session.py:523`` asks again for a gap when ``now_ns - self._resend_at >=
    heartbeat_ns``; ``_resend_at`` (set at ``gap_recovery.py:129``, ``:216``,
    ``session.py:549``) is a mark on the wall clock like ``_last_in_ns``, but
    ``Session.clock_stepped`` (``session.py:266``) does not move it, nor does ``on_timer``
    clamp it. After a step back of an hour the difference stays negative for an hour: a gap
    whose resend was garbled is not asked again, and every message the client sends
    meanwhile lies past the gap and is dropped (its orders never reach the exchange) until
    the wall clock makes the hour up. (A step forward asks again at once: one redundant
    ResendRequest, the kind review 153 took out.) Shown: the stale gap of the pin above,
    with a step back of an hour between: no ResendRequest. Fix: in ``clock_stepped``, ``if
    self._resend_at: self._resend_at += step_ns`` (and ``min`` it with the reading where the
    other marks are clamped)."""
    assert _gap_then(tmp_path, -_HOUR) == [b"2"]


# -- held messages' arrival: a SendingTime stamp moved (session.py:278) ------------------------


def _deferred(tmp_path: Path, stores: list[MessageStore]) -> tuple[Session, UserStore]:
    users = UserStore(tmp_path / "users.json")
    users.add("ALICE", "pw", 7, n=1 << 4)

    def store(comp: str) -> MessageStore:
        made = MessageStore(tmp_path / "sessions" / comp)
        stores.append(made)
        return made

    settings = SessionSettings(comp_id="RINGEX", defer_auth=True)
    return Session(settings, users, store, App(), {}, T0), users


def _held_across(tmp_path: Path, stores: list[MessageStore], step_ns: int) -> list[bytes]:
    """A Logon at T0 (SendingTime T0), its password checked by the shell; a TestRequest sent
    a millisecond later arrives while it is (held); the clock steps by ``step_ns``; the
    check answers 20 real ms on: the messages sent."""
    s, users = _deferred(tmp_path, stores)
    logon = msg("A", 1, (98, 0), (108, 30), (554, "pw"), now_ns=T0)
    s.data_received(logon, T0)
    assert s.state is State.AUTHENTICATING
    s.data_received(msg("1", 2, (112, "T2"), now_ns=T0 + 1_000_000), T0 + 10_000_000)
    s.clock_stepped(step_ns)
    s.authenticated(users.verify("ALICE", "pw"), T0 + 20_000_000 + step_ns)
    return [m.msg_type for m in replies(s)]


def test_a_held_message_is_answered_without_a_step(
    tmp_path: Path, stores: list[MessageStore]
) -> None:
    """Pin: the Logon's reply, then the held TestRequest's Heartbeat."""
    assert _held_across(tmp_path, stores, 0) == [b"A", b"0"]


def test_a_message_held_behind_the_logon_is_judged_by_its_arrival_across_a_step(
    tmp_path: Path, stores: list[MessageStore]
) -> None:
    """Was (fixed: the held arrivals are wall stamps, kept). ``Session.clock_stepped``
    (``session.py:278``) moved the arrival of each message held while the password is
    checked, but that arrival is used only to judge its SendingTime (``authenticated``:
    ``_held_for_ns = now_ns - arrived``, ``session.py:214``; ``_active``:
    ``sending_time(msg, ..., now_ns - self._held_for_ns)``, ``session.py:492``), a wall
    stamp, which the same docstring says is kept, as the Logon's ``_logon_ns`` is (judged at
    ``after_password`` by its true arrival). Across a step of two hours during the check,
    the Logon is accepted and the message the client sent a millisecond after it, same
    clock, is refused: Reject (3, 373=10) and Logout (5), session over. Shown: the pin above
    with a step of +2 h between: ``[A, 3, 5]``, not ``[A, 0]``. Fix: keep ``_held`` as it is
    in ``clock_stepped`` (nothing measures an interval from it)."""
    assert _held_across(tmp_path, stores, 2 * _HOUR) == [b"A", b"0"]


def test_the_logon_is_judged_by_its_true_arrival_across_a_step(
    tmp_path: Path, stores: list[MessageStore]
) -> None:
    """Pin: ``_logon_ns`` is not moved by a step: the Logon (SendingTime T0) checked after a
    step of two hours is still accepted (``after_password`` judges its arrival)."""
    assert _held_across(tmp_path, stores, 2 * _HOUR)[0] == b"A"


# -- the clock itself (wall_clock.py) ----------------------------------------------------------


class _Follower:
    def __init__(self) -> None:
        self.steps: list[int] = []

    def clock_stepped(self, step_ns: int) -> None:
        self.steps.append(step_ns)


class _Raising:
    def clock_stepped(self, step_ns: int) -> None:
        raise RuntimeError("a follower's fault")


def _patched(monkeypatch: pytest.MonkeyPatch) -> tuple[list[int], list[int]]:
    wall, mono = [T0], [10 * _S]
    monkeypatch.setattr(time, "time_ns", lambda: wall[0])
    monkeypatch.setattr(time, "monotonic_ns", lambda: mono[0])
    return wall, mono


def test_a_follower_that_raises_neither_breaks_the_reading_nor_hides_the_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Was (fixed: each follower is told under a guard that logs its fault). Latent (no follower in
    the tree raises today): ``WallClock.now_ns`` (``wall_clock.py:59``-``63``) moves
    ``_offset`` first, then calls each follower's ``clock_stepped`` unguarded. One that
    raises makes the reading raise to whoever took it (the server's ``_timers`` task: no
    more heartbeats nor timeouts; a ``data_received``), and the followers after it are never
    told: the step counts as told, so their marks stay on the old clock for good. Shown: a
    raising follower and a recording one (the set's order is not fixed: both orders tried),
    a step of +2 h: the reading raises, or the other never hears of it. Fix: call each
    follower in a ``try``, log its exception and go on."""
    wall, _ = _patched(monkeypatch)
    clock = wall_clock.WallClock()
    raising, told = _Raising(), _Follower()
    clock.follow(raising)
    clock.follow(told)
    assert clock.now_ns() == T0
    wall[0] += 2 * _HOUR
    assert clock.now_ns() == wall[0]
    assert told.steps == [2 * _HOUR]


def test_the_first_reading_tells_no_one_and_a_drift_under_a_second_is_no_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pin: the first reading sets the offset only; 0.9 s of drift against the monotonic
    clock is not a step (nor told); a reading is the wall clock's, unaltered."""
    wall, mono = _patched(monkeypatch)
    clock, follower = wall_clock.WallClock(), _Follower()
    clock.follow(follower)
    wall[0] -= 5 * _HOUR  # (whatever the wall says at first is the base)
    assert clock.now_ns() == T0 - 5 * _HOUR and follower.steps == []
    wall[0] += 900_000_000
    mono[0] += 1
    assert clock.now_ns() == wall[0] and follower.steps == []


def test_a_collected_follower_drops_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pin: followers are held weakly (a stopped test gateway is not told forever), and the
    step is told to the live ones."""
    wall, _ = _patched(monkeypatch)
    clock, kept, gone = wall_clock.WallClock(), _Follower(), _Follower()
    clock.follow(kept)
    clock.follow(gone)
    clock.now_ns()
    del gone
    gc.collect()
    wall[0] += 3 * _S
    clock.now_ns()
    assert kept.steps == [3 * _S] and len(clock._followers) == 1


def test_a_step_moves_the_sessions_buckets_and_timers(tmp_path: Path) -> None:
    """Pin: after a step forward of two hours told by ``clock_stepped``, one real second on,
    a logged-on session sends nothing (no Heartbeat, no TestRequest) and its throttle's and
    inbound buckets' marks moved with the step."""
    s, _ = session(tmp_path, T0)
    s.clock_stepped(2 * _HOUR)
    assert all(b.at_ns == T0 + 2 * _HOUR for b in (s.throttle, *s.inbound.buckets))
    s.on_timer(T0 + _S + 2 * _HOUR)
    assert replies(s) == []


# -- the REST Verifier across steps (signing.py) -----------------------------------------------


def _request(secret: str, ts_ms: int, n: int) -> dict[str, Any]:
    body = b'{"n":%d}' % n
    return {
        "secret": secret,
        "timestamp": str(ts_ms),
        "recv_window": "5000",
        "signature": sign(secret, ts_ms, 5_000, "POST", "/api/v1/order", "", body),
        "method": "POST",
        "path": "/api/v1/order",
        "query": "",
        "body": body,
    }


def test_the_replay_memory_stays_bounded_and_accepts_fresh_requests_across_steps() -> None:
    """Pin (point 4): steps back and forward of an hour, 50 distinct valid requests at 10 a
    real second against a memory of 20: every one accepted (none refused as REPLAYED or
    outside its window), and the memory never holds more than its capacity."""
    verifier = Verifier(60_000, 5_000, replay_capacity=20)
    wall0, mono = T0 // 1_000_000, 1_000_000
    steps = [0, 3_600_000, 3_600_000, -3_600_000, -3_600_000, 0]
    for n in range(50):
        offset = steps[n // 10]
        now_ms = wall0 + n * 100 + offset
        verifier.verify(**_request("s", now_ms, n), now_ms=now_ms, mono_ms=mono + n * 100)
        assert len(verifier) <= 20
