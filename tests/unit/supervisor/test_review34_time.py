"""Review 34: the daily session end against a wall clock that misbehaves, and a remembered
end that a power loss left unreadable (``session_end.py``, ``session_clock.py``,
``journaled_ends.py``).

The schedule reads the wall clock (``time.time_ns()``, each poll's argument here) and
remembers the last end sent. A clock that jumped days ahead and was set right, or one set
back days, must not leave the sessions of those days without an end (DAY orders would rest
for days), and a step back of under a day must still send nothing twice. A remembered end
that a crash left unreadable is not a first start: the end that passed is due unless the
journal holds it.

Rigs: ``Host`` and ``Watch`` (a profile with the 17:00 schedule, its journal, its
supervisors polled at given times) and the ``sends`` fixture of
test_review8_session_end_failover; ``utc`` of test_session_clock; the matcher's scenario
builders. Nothing sleeps and no process starts.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from procs.common.run_files import read_json
from procs.common.types import AdminAction, TradingStatus
from procs.core.book import Book
from procs.supervisor.session_end import session_end_path
from tests.unit.matcher.scenarios import (
    BUY,
    DAY,
    EXPIRED,
    SELL,
    SPEC,
    admin,
    done,
    ids,
    level,
    new,
    setup,
    status,
    stop,
    stop_ids,
)
from tests.unit.matcher.test_books import BOOKS, run
from tests.unit.supervisor.test_review8_session_end_failover import Host, Watch, sends
from tests.unit.supervisor.test_session_clock import utc
from tests.unit.supervisor.test_session_end import Sends

__all__ = ["sends"]  # review 8's fixture (the admin ring, counted), used by name

# -- a clock that jumped ahead, then was set right -------------------------------------------


def test_a_clock_that_jumped_days_ahead_fires_one_end_and_misses_none_once_set_right(
    tmp_path: Path, instance: str, sends: Sends
) -> None:
    """At 03-10 10:00 the clock jumps to 03-13 10:00 for a moment: one end goes (the latest,
    03-12's: not three). Set right, the sessions of 03-10, 03-11, 03-12 and 03-13 each end at
    their 17:00, once, though the remembered end and an END_OF_SESSION in the journal
    (stamped 03-13 10:00) speak of days to come, across restarts of the supervisor too."""
    host = Host(tmp_path, instance, standby=False)
    assert host.supervise(host.cfg, "2026-03-09 12:00") == [None]  # first start
    host.orders("2026-03-09 12:00", "2026-03-10 10:00", 3600)
    assert host.supervise(host.cfg, "2026-03-13 10:00:00") == [utc("2026-03-12 17:00")]
    host.journal(("end", "2026-03-13 10:00:00"))  # the router read the same clock
    assert sends.count == 1
    for day in ("10", "11", "12", "13"):  # each day a new supervisor: it must remember
        host.orders(f"2026-03-{day} 10:00:05", f"2026-03-{day} 16:59", 3600)
        polls = [f"2026-03-{day} 10:00:05", f"2026-03-{day} 16:59:59"]
        polls += [f"2026-03-{day} 17:00:00", f"2026-03-{day} 17:00:01"]
        sent = host.supervise(host.cfg, *polls)
        assert sent == [None, None, utc(f"2026-03-{day} 17:00"), None], day
        host.journal(("end", f"2026-03-{day} 17:00:00"))
    assert sends.count == 5


def test_an_end_stamped_by_a_clock_days_ahead_is_not_an_earlier_days_end(
    tmp_path: Path, instance: str, sends: Sends
) -> None:
    """The supervisor was down while the clock read 03-13 and an operator ended the session
    by hand (stamped 03-13 10:00); the clock was set right before it came back at 03-10
    17:20. That END_OF_SESSION is not the 03-10 end, which is sent."""
    host = Host(tmp_path, instance, standby=False)
    host.supervise(host.cfg, "2026-03-09 12:00")
    host.orders("2026-03-09 12:00", "2026-03-10 09:00", 3600)
    host.journal(("end", "2026-03-13 10:00"))  # the last entry: quiet since
    assert host.supervise(host.cfg, "2026-03-10 17:20", "2026-03-10 17:21") == [
        utc("2026-03-10 17:00"),
        None,
    ]
    assert sends.count == 1


def test_a_clock_set_back_days_after_an_end_goes_on_ending_a_session_a_day(
    tmp_path: Path, instance: str, sends: Sends, caplog: pytest.LogCaptureFixture
) -> None:
    """The 03-10 end went at 17:00:00; at 18:00 the clock is set back two days (03-08
    18:00). The remembered end and the journaled one lie ahead of the clock: the schedule
    starts again from the clock's day, as a first start does (the next end at the clock's
    03-09 17:00, a day after the last one), says so, and goes on a day at a time."""
    host = Host(tmp_path, instance, standby=False)
    watch = Watch(host.cfg)
    assert watch.at("2026-03-10 12:00", "2026-03-10 17:00:00") == [None, utc("2026-03-10 17:00")]
    host.journal(("end", "2026-03-10 17:00:00"), ("order", "2026-03-10 18:00"))
    with caplog.at_level(logging.WARNING, logger="ringex.supervisor"):
        assert watch.at("2026-03-08 18:00", "2026-03-09 16:59:59") == [None, None]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "2026-03-10T17:00Z" in warned[0], warned
    host.orders("2026-03-08 18:00", "2026-03-09 16:59", 3600)
    assert watch.at("2026-03-09 17:00:00", "2026-03-09 17:00:01") == [
        utc("2026-03-09 17:00"),
        None,
    ]
    host.journal(("end", "2026-03-09 17:00:00"))
    host.orders("2026-03-09 18:00", "2026-03-10 16:59", 3600)
    restarted = Watch(host.cfg)  # the journal's 03-10 end (before the step) is not this one
    assert restarted.at("2026-03-10 16:59:59", "2026-03-10 17:00:00") == [
        None,
        utc("2026-03-10 17:00"),
    ]
    assert sends.count == 3


def test_a_clock_stepped_back_under_a_day_sends_no_end_twice(
    tmp_path: Path, instance: str, sends: Sends
) -> None:
    """An NTP step of a second, a minute, an hour or most of a day back, just after the end
    went: the end is not sent again when the clock passes 17:00 a second time."""
    host = Host(tmp_path, instance, standby=False)
    watch = Watch(host.cfg)
    assert watch.at("2026-03-10 12:00", "2026-03-10 17:00:01") == [None, utc("2026-03-10 17:00")]
    host.journal(("end", "2026-03-10 17:00:01"))
    back = ["2026-03-10 17:00:00", "2026-03-10 16:59", "2026-03-10 16:00", "2026-03-09 17:01"]
    again = ["2026-03-10 17:00:00", "2026-03-10 17:00:02", "2026-03-11 16:59:59"]
    assert watch.at(*back, *again) == [None] * 7
    assert Watch(host.cfg).at(*back, *again) == [None] * 7  # nor after a restart
    assert sends.count == 1


# -- a remembered end that a crash left unreadable ----------------------------------------------


@pytest.mark.parametrize(
    "left",
    [b"", b"\0" * 96, b'{"end_ns": 17', b"\xff\xfe{garbage", b'{"end_ns": "1"}'],
    ids=["empty", "zeroed", "cut-short", "not-utf8", "not-a-number"],
)
def test_an_unreadable_remembered_end_is_not_a_first_start(
    tmp_path: Path, instance: str, sends: Sends, left: bytes
) -> None:
    """A power loss just after the file was written can leave it empty, zeroed or cut short.
    That is not a first start (which takes the end that passed as sent): the instance was
    down across the 03-10 end and the journal lacks it, so it is sent once, and the poll
    does not crash on bytes that are not UTF-8."""
    host = Host(tmp_path, instance, standby=False)
    host.supervise(host.cfg, "2026-03-09 12:00")
    host.orders("2026-03-09 12:00", "2026-03-10 16:00", 3600)
    session_end_path(host.cfg).write_bytes(left)
    assert host.supervise(host.cfg, "2026-03-10 17:20", "2026-03-10 17:20:01") == [
        utc("2026-03-10 17:00"),
        None,
    ]
    assert sends.count == 1
    doc = read_json(session_end_path(host.cfg))
    assert doc is not None and doc["end_ns"] == utc("2026-03-10 17:00")


def test_an_unreadable_remembered_end_does_not_resend_one_the_journal_holds(
    tmp_path: Path, instance: str, sends: Sends
) -> None:
    """Power lost just after the end went (the router journaled it) and the file was
    written: the file reads empty, the journal says the end went: it is not sent again."""
    host = Host(tmp_path, instance, standby=False)
    assert host.supervise(host.cfg, "2026-03-10 12:00", "2026-03-10 17:00:00") == [
        None,
        utc("2026-03-10 17:00"),
    ]
    host.journal(("end", "2026-03-10 17:00:00"))
    session_end_path(host.cfg).write_bytes(b"")
    assert host.supervise(host.cfg, "2026-03-10 17:02", "2026-03-11 16:59") == [None, None]
    assert sends.count == 1


def test_the_remembered_end_is_on_disk_before_it_replaces_the_old_one(
    tmp_path: Path, instance: str, sends: Sends, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new record is flushed to the disk before it is renamed over the old one (else a
    power loss can leave an empty file where either record would have been safe)."""
    host = Host(tmp_path, instance, standby=False)
    synced: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        assert str(src) in synced, f"{src} renamed before it was synced: {synced}"
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    assert host.supervise(host.cfg, "2026-03-10 12:00", "2026-03-10 17:00:00") == [
        None,
        utc("2026-03-10 17:00"),
    ]


# -- the matcher's end of session: what the schedule relies on (both books) ------------------


@BOOKS
def test_day_stops_expire_triggered_or_not_and_a_day_order_after_the_end_is_the_next_sessions(
    book_cls: type[Book],
) -> None:
    """A DAY stop-limit that triggered and rests expires with the plain DAY orders, a
    pending DAY stop too; a DAY order that arrives after the END_OF_SESSION rests until the
    next one."""
    book = book_cls(SPEC)
    setup(book, new(1, SELL, 100, 1, account=2), new(2, BUY, 100, 1, account=3))  # last 100
    triggered = stop(3, BUY, 105, 2, limit=100, account=4, tif=DAY)
    pending = stop(4, SELL, 80, 1, account=5, tif=DAY)
    setup(book, triggered, pending)
    setup(book, new(5, SELL, 105, 1, account=2), new(6, BUY, 105, 1, account=3))  # 105: trigger
    assert ids(book, BUY) == [3] and stop_ids(book) == [4]
    end = admin(AdminAction.END_OF_SESSION)
    assert run(book, end) == [
        done(end, triggered, EXPIRED, 0, 2),
        done(end, pending, EXPIRED, 0, 1),
        level(end, BUY, 100, 0, 0),
        status(end, TradingStatus.OPEN),
    ]
    after = new(7, BUY, 95, 1, account=6, tif=DAY)
    setup(book, after)
    assert ids(book, BUY) == [7]
    second = admin(AdminAction.END_OF_SESSION, symbol=0)
    assert run(book, second)[0] == done(second, after, EXPIRED, 0, 1)
    assert ids(book, BUY) == []
