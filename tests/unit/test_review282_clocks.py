"""Review 282: time and clocks.

Reviewed: ``procs/common/wall_clock.py``, ``procs/gateway/signing.py`` (with ``rest.py:134``
and ``rest.py:445``, where the REST API builds and calls it), ``procs/gateway/fix.py``
(``parse_utc_timestamp``, ``Timestamps``), ``procs/gateway/logon.py`` (SendingTime),
``procs/supervisor/session_clock.py``, ``session_end.py``, ``journaled_ends.py``,
``procs/core/market/ticker.py``, ``candles.py``, ``procs/marketdata/feed.py``,
``web.py`` (``avgPrice``), ``procs/gateway/history.py`` (``klines``' range),
``procs/router/intake.py`` (the sequencing stamp).

Rig: the sans-I/O cores fed the readings the clocks would give (never the real clock),
as reviews 175 and 176 did: the ``Verifier`` built and called with the arguments
``rest.py`` gives it; review 8's and 221's ``Host`` / ``Watch`` / ``sends`` rig (a profile
with the 17:00 schedule, its real journal written by ``JournalWriter``, supervisors' schedules
polled at given times, the admin ring counted); ``RollingTicker``, ``CandleSeries`` and
``parse_utc_timestamp`` directly.

Faults found (each fixed; its test says what it was):

1. ``procs/gateway/signing.py:271`` with ``procs/gateway/rest.py:135``: ``not_before_ms``
   is the wall clock's reading at the gateway's start and is compared with the request's
   wall-clock timestamp as it stands. A gateway (re)started while the host's clock was
   ahead (a VM resumed, a wrong RTC, an operator's slip) and then stepped back by NTP
   refuses every signed REST request, and every private-stream connection (same
   ``Verifier``), with -1021 "before this gateway started", for the whole size of the step
   (an hour's step: an hour without REST trading), while FIX goes on (README, "The host's
   clock": a step while it runs is told from time passed by the monotonic clock). Fixed:
   ``Verifier(not_before_mono_ms=...)``, given by ``rest.py`` with the start's wall reading,
   judges ``ts`` against the start as the current clock reads it (``now_ms - (mono_ms -
   not_before_mono_ms)``); a request captured before the restart is then ahead of the
   stepped-back clock by the step and still refused by the window. (Review 175's lead.)
2. ``procs/supervisor/session_end.py:196`` (``_journaled``) with
   ``procs/supervisor/journaled_ends.py:97``: the search for an end the journal holds asks
   for one stamped at or after the end's time, with no margin, while ``_sent_found``
   (``session_end.py:182``, review 223) allows ``STEP_MARGIN_NS`` before it for a router
   clock stepped back between the send and the stamp. README (Operate, Session end): "The
   journal is searched from two minutes before the end's time, so a router clock stepped
   back (NTP) by less does not hide an end it stamped" and "one the primary journaled is
   never sent again". A primary end stamped 16:59:59 for the 17:00 end (NTP stepped the
   clock back 2 s as it went) is never recorded by the standby's supervisor, and once
   promoted the instance sends the end again, expiring every DAY order the new session
   took since; likewise a primary's supervisor that died between the send and its record
   sends it twice. Fixed: ``_journaled`` searches from ``end - STEP_MARGIN_NS`` (the day
   before's end, a day earlier, stays out by the ``< since + DAY_NS`` bound); README now says
   that an operator's end for every symbol in those two minutes counts as the day's end.

Sound: the Verifier's window bounds (recvWindow 0, above the maximum, leading junk; a
timestamp more than ``MAX_AHEAD_MS`` ahead; the exact edges accepted); the leap second
``23:59:60`` and 9-digit fractions in a SendingTime; the 24h ticker's window edge (a bucket
1440 minutes old leaves, 1439 stays) and its late stamps joining the newest bucket; 1d
candles aligned to midnight UTC whatever the clock, a trade at exactly a boundary opening
the next candle; the session schedule at 00:00 (an end exactly at midnight is that day's,
``latest_end`` at the instant of an end is that end) and a clock stepped back minutes past
midnight sends nothing twice.

Leads not shown: ``procs/marketdata/web.py:140`` (``avgPrice``) filters the 1m candles by
the wall clock while the candles are at least the newest trade's time: after a forward
step later undone, the candles stay ahead of the clock (review 175's lead) and ``avgPrice``
averages whatever the five newest candles hold, not the last five minutes (not shown as
wrong against the README's words). ``supervisor.session_end_utc`` changed from 21:00 to
23:00 and restarted between them sends a second end that day (defensible: the new schedule
ends then). ``procs/router/intake.py:76`` stamps each command with ``time.time_ns()``: a
step back makes the journal's stamps fall; ``journaled_ends`` bisects on them (review 221
fixed the case it found); an order's REST ``time`` can then be earlier than an order
sequenced before it (not shown wrong: the README only says the time is its sequencing's).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from procs.common.journal_writer import JournalWriter
from procs.common.records import AdminCommand
from procs.common.topology import journal_dir
from procs.common.types import AdminAction
from procs.core.market.candles import INTERVALS, CandleSeries
from procs.core.market.ticker import BUCKET_NS, WINDOW_BUCKETS, RollingTicker
from procs.gateway.fix import parse_utc_timestamp
from procs.gateway.signing import (
    BAD_WINDOW,
    MAX_AHEAD_MS,
    OUTSIDE_WINDOW,
    AuthError,
    Verifier,
    sign,
)
from procs.supervisor.session_clock import DAY_NS, due_end, latest_end
from procs.supervisor.session_end import session_end_path
from tests.unit.supervisor.test_review8_session_end_failover import (
    CODEC,
    SEGMENT_BYTES,
    Host,
    Watch,
    sends,
)
from tests.unit.supervisor.test_session_clock import S, utc
from tests.unit.supervisor.test_session_end import Sends

__all__ = ["sends"]  # review 8's fixture (the admin ring, counted), used by name

SECRET = "s3cret"
HOUR_MS = 3_600_000


def _signed(verifier: Verifier, ts: int, now_ms: int, mono_ms: int, window: str | None) -> None:
    """One signed GET as ``rest.py:445`` checks it: the wall and the monotonic reading."""
    win = int(window) if window is not None and window.isdigit() else 5_000
    signature = sign(SECRET, ts, win, "GET", "/api/v1/account", "", b"")
    seen = verifier.check(
        SECRET, str(ts), window, signature, "GET", "/api/v1/account", "", b"", now_ms, mono_ms
    )
    verifier.remember(seen)


# -- 1. the REST API's start across a step back ---------------------------------------------------


def test_a_step_back_after_a_start_with_the_clock_ahead_does_not_lock_out_rest() -> None:
    """Scenario: the gateway starts while the host's clock is an hour ahead (a VM resumed
    before chrony stepped it; a wrong RTC); ``rest.py:135`` takes ``not_before_ms`` from
    that reading. Ten seconds later NTP steps the clock back the hour. A client with a
    right clock signs a request now (timestamp = the server's clock).
    Expected: accepted (the monotonic clock says the gateway started 10 s ago; a request
    captured before the start is still refused, ahead of the clock by the hour).
    Was (fixed): -1021 "before this gateway started", for every request and private stream, for
    the hour the step undid."""
    mono_start = 5_000_000
    true_start = 1_773_000_000_000  # ms: what the clock should have read at the start
    verifier = Verifier(  # as rest.py makes it: the start's wall and monotonic readings
        60_000, 5_000, not_before_ms=true_start + HOUR_MS, not_before_mono_ms=mono_start
    )
    later, mono = true_start + 10_000, mono_start + 10_000  # stepped back: right again
    try:
        _signed(verifier, later, later, mono, None)
    except AuthError as refused:
        pytest.fail(f"refused {refused.code}: {refused.msg}")
    with pytest.raises(AuthError) as captured:  # signed before the start, by the clock then
        _signed(verifier, true_start + HOUR_MS - 500, later, mono, None)
    assert captured.value.code == OUTSIDE_WINDOW


def test_sound_the_receive_window_bounds() -> None:
    """recvWindow 0, above 60,000 or with junk is -1131; a timestamp more than 1 s ahead or
    older than the window is -1021; the edges themselves are accepted."""
    now = 1_773_000_000_000
    verifier = Verifier(60_000, 5_000)
    for window in ("0", "60001", "+5000", " 5000", "5e3", "99999999999999999"):
        with pytest.raises(AuthError) as bad:
            _signed(verifier, now, now, now, window)
        assert bad.value.code == BAD_WINDOW, window
    for ts in (now + MAX_AHEAD_MS + 1, now - 5_001, now + 10**12):
        with pytest.raises(AuthError) as outside:
            _signed(verifier, ts, now, now, None)
        assert outside.value.code == OUTSIDE_WINDOW, ts
    _signed(verifier, now + MAX_AHEAD_MS, now, now, None)
    _signed(verifier, now - 5_000, now, now, None)
    _signed(verifier, now - 60_000, now, now, "60000")


# -- 2. the session end stamped just before its time ----------------------------------------------


def _end_stamped_before_its_time(host: Host) -> None:
    """The 03-10 end: the supervisor sent it at 17:00:00 by its clock; chrony stepped the
    clock back 2 s as the router sequenced it, so the journal says 16:59:58; the day goes
    on, a command a second."""
    host.orders("2026-03-10 09:00", "2026-03-10 16:50", 600)
    host.seq += 1  # its ``arg`` the supervisor's clock at the send, as ``AdminClient`` sends it
    end = AdminCommand(host.seq, utc("2026-03-10 16:59:58"), AdminAction.END_OF_SESSION, 0,
                       utc("2026-03-10 17:00:00"))  # fmt: skip
    with JournalWriter(
        journal_dir(host.cfg),
        slot_size=CODEC.slot_size,
        schema_id=CODEC.journal_schema_id,
        segment_bytes=SEGMENT_BYTES,
    ) as writer:
        writer.append(writer.next_seq, CODEC.encode_slot(end), 1)  # fmt: skip
    host.orders("2026-03-10 16:59:59", "2026-03-10 17:02:00", 1)


def test_a_promoted_standby_does_not_resend_an_end_stamped_just_before_its_time(
    tmp_path: Path, instance: str, sends: Sends
) -> None:
    """Scenario: a standby's supervisor follows its primary's journal; the primary's 03-10
    end is sequenced with a stamp 2 s before 17:00 (its clock stepped back meanwhile); the
    primary dies at 17:02 and the standby is promoted.
    Expected: the standby remembers the end its primary journaled (README: "searched from two
    minutes before the end's time, so a router clock stepped back (NTP) by less does not
    hide an end it stamped"; "one the primary journaled is never sent again"): no send.
    Was (fixed): never remembered; the promoted instance sends the 03-10 end again, expiring the
    DAY orders taken since."""
    host = Host(tmp_path, instance, standby=True)
    standby = Watch(host.cfg)
    assert standby.at("2026-03-10 12:00", "2026-03-10 16:59:50") == [None, None]
    _end_stamped_before_its_time(host)
    assert standby.at("2026-03-10 17:00:01", "2026-03-10 17:02:01") == [None, None]
    promoted = host.promote()
    assert host.supervise(promoted, "2026-03-10 17:02:05", "2026-03-10 18:00") == [None, None]
    assert sends.count == 0


def test_a_restarted_primary_does_not_resend_its_end_stamped_just_before_its_time(
    tmp_path: Path, instance: str, sends: Sends
) -> None:
    """Scenario: the primary's supervisor sends the 03-10 end at 17:00:00; the router stamps
    it 16:59:58 (NTP stepped the clock back 2 s); the supervisor dies before its record
    says so (as review 8's restart test, with the step).
    Expected: restarted, it finds the end in the journal and sends nothing (review 223 made
    ``_sent_found`` allow the margin for exactly this stamp).
    Was (fixed): sent a second time at the restart."""
    host = Host(tmp_path, instance, standby=False)
    host.supervise(host.cfg, "2026-03-10 12:00")  # first start: from the next end
    remembered = session_end_path(host.cfg).read_bytes()
    assert host.supervise(host.cfg, "2026-03-10 17:00:00") == [utc("2026-03-10 17:00")]
    _end_stamped_before_its_time(host)
    session_end_path(host.cfg).write_bytes(remembered)  # the crash: the record never written
    assert host.supervise(host.cfg, "2026-03-10 17:02:05", "2026-03-10 18:00") == [None, None]
    assert sends.count == 1


def test_sound_a_standby_remembers_an_end_stamped_after_its_time(
    tmp_path: Path, instance: str, sends: Sends
) -> None:
    """The same day with the end stamped 17:00:02: remembered, and never sent again."""
    host = Host(tmp_path, instance, standby=True)
    standby = Watch(host.cfg)
    assert standby.at("2026-03-10 12:00", "2026-03-10 16:59:50") == [None, None]
    host.orders("2026-03-10 09:00", "2026-03-10 16:50", 600)
    host.journal(("end", "2026-03-10 17:00:02"))
    assert standby.at("2026-03-10 17:00:03") == [None]
    promoted = host.promote()
    assert host.supervise(promoted, "2026-03-10 17:02:05", "2026-03-10 18:00") == [None, None]
    assert sends.count == 0


# -- sound: the schedule at midnight -------------------------------------------------------------


def test_sound_a_midnight_schedule() -> None:
    """00:00: the end at the instant of midnight is that day's, due once; a clock stepped
    back 3 minutes past it (to 23:57) sends nothing twice."""
    midnight = utc("2026-03-11 00:00")
    assert latest_end(midnight, 0) == midnight
    assert latest_end(midnight - 1, 0) == midnight - DAY_NS
    assert due_end(midnight, 0, midnight - DAY_NS) == midnight
    for now in (midnight + 1, midnight - 180 * S, midnight + 59 * S):
        assert due_end(now, 0, midnight) is None


# -- sound: FIX timestamps, the ticker, the candles ----------------------------------------------


def test_sound_sending_time_leap_second_and_fractions() -> None:
    """``23:59:60`` (a leap second, which FIX's UTCTimestamp allows) is read as the next
    midnight; 3, 6 and 9 fraction digits are read; 24:00:00 and 2 digits are not."""
    midnight = utc("2026-07-01 00:00")
    assert parse_utc_timestamp(b"20260630-23:59:60") == midnight
    assert parse_utc_timestamp(b"20260630-23:59:59.999999999") == midnight - 1
    assert parse_utc_timestamp(b"20260630-23:59:59.5") is None
    assert parse_utc_timestamp(b"20260630-24:00:00") is None
    assert parse_utc_timestamp(b"20260701-00:00:00.000001") == midnight + 1_000


def test_sound_the_24h_window_edge() -> None:
    """A trade's bucket stays while it is one of the newest 1440 minutes and leaves after;
    a trade stamped before the window's end joins the newest bucket."""
    ticker = RollingTicker(1)
    t0 = utc("2026-03-10 00:00")
    ticker.trade(t0, 1, 100, 1)
    ticker.trade(t0 + 30 * S, 2, 200, 1)
    ticker.advance(t0 + (WINDOW_BUCKETS - 1) * BUCKET_NS + 59 * S)
    got = ticker.ticker()
    assert got is not None and (got.trades, got.open, got.high) == (2, 100, 200)
    ticker.advance(t0 + WINDOW_BUCKETS * BUCKET_NS)
    got = ticker.ticker()
    assert got is not None and (got.trades, got.volume, got.last, got.first_trade_id) == (
        0,
        0,
        200,
        0,
    )
    ticker.trade(t0, 3, 50, 2)  # a late stamp: joins the open minute, the window's
    got = ticker.ticker()
    assert got is not None and (got.trades, got.open, got.low, got.high) == (1, 50, 50, 50)


def test_sound_day_candles_are_aligned_to_midnight_utc() -> None:
    """A 1d candle opens at midnight UTC; a trade at exactly midnight is the next day's;
    an idle day is one flat candle at the close."""
    day = INTERVALS["1d"]
    series = CandleSeries("1d")
    noon = utc("2026-03-10 12:00")
    series.trade(noon, 100, 1, 1)
    assert series.current is not None and series.current.open_ns == utc("2026-03-10 00:00")
    series.trade(utc("2026-03-12 00:00"), 90, 1, 2)
    candles = series.history(10)
    assert [c.open_ns for c in candles] == [utc("2026-03-10 00:00") + k * day for k in range(3)]
    assert (candles[1].open, candles[1].volume, candles[1].closed) == (100, 0, True)
    assert (candles[2].open, candles[2].trades) == (90, 1)
