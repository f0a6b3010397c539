"""The daily session-end schedule (``session_clock``): which end is due, given the time and
the last end sent. Pure functions, so every case is a table row."""

from __future__ import annotations

import calendar

import pytest

from procs.supervisor.session_clock import DAY_NS, MINUTE_NS, due_end, latest_end, next_end

S = 10**9


def utc(text: str) -> int:
    """ns of "YYYY-MM-DD HH:MM[:SS]" UTC."""
    date, clock = text.split()
    parts = [*map(int, date.split("-")), *map(int, clock.split(":"))]
    return calendar.timegm((*parts, *[0] * (6 - len(parts)), 0, 0, 0)) * S


AT_17 = 17 * 60
AT_0030 = 30
AT_2359 = 23 * 60 + 59


@pytest.mark.parametrize(
    ("now", "minute", "latest", "following"),
    [
        ("2026-03-10 16:59:59", AT_17, "2026-03-09 17:00", "2026-03-10 17:00"),
        ("2026-03-10 17:00", AT_17, "2026-03-10 17:00", "2026-03-11 17:00"),  # exactly: come
        ("2026-03-10 17:00:01", AT_17, "2026-03-10 17:00", "2026-03-11 17:00"),
        # midnight wrap: just after midnight, the end due is last night's
        ("2026-03-11 00:10", AT_2359, "2026-03-10 23:59", "2026-03-11 23:59"),
        ("2026-03-10 23:59:30", AT_0030, "2026-03-10 00:30", "2026-03-11 00:30"),
        ("2026-03-11 00:00", 0, "2026-03-11 00:00", "2026-03-12 00:00"),
        # month and year ends are only days
        ("2026-12-31 23:00", AT_17, "2026-12-31 17:00", "2027-01-01 17:00"),
        ("2028-03-01 01:00", AT_17, "2028-02-29 17:00", "2028-03-01 17:00"),  # leap day
    ],
)
def test_latest_and_next_end(now: str, minute: int, latest: str, following: str) -> None:
    assert latest_end(utc(now), minute) == utc(latest)
    assert next_end(utc(now), minute) == utc(following)
    assert next_end(utc(now), minute) - latest_end(utc(now), minute) == DAY_NS


def test_an_end_is_due_once_it_comes_and_not_again() -> None:
    sent = utc("2026-03-09 17:00")
    assert due_end(utc("2026-03-10 16:59:59"), AT_17, sent) is None
    assert due_end(utc("2026-03-10 17:00"), AT_17, sent) == utc("2026-03-10 17:00")
    sent = utc("2026-03-10 17:00")  # it went
    for later in ("2026-03-10 17:00", "2026-03-10 17:00:01", "2026-03-11 16:59"):
        assert due_end(utc(later), AT_17, sent) is None, later


def test_a_restart_just_after_the_end_does_not_send_it_again() -> None:
    """The last end sent outlives the supervisor: one restarted a second after today's end
    finds it sent, whatever time the send itself took."""
    remembered = utc("2026-03-10 17:00")
    assert due_end(utc("2026-03-10 17:00:01"), AT_17, remembered) is None
    assert due_end(utc("2026-03-10 17:05"), AT_17, remembered) is None


def test_days_of_downtime_send_one_end_not_one_per_day() -> None:
    """Down from before Monday's end until Thursday noon: Wednesday's end is due, once; after
    it, none until Thursday's."""
    sent = utc("2026-03-08 17:00")  # Sunday's, the last before the downtime
    now = utc("2026-03-12 12:00")
    end = due_end(now, AT_17, sent)
    assert end == utc("2026-03-11 17:00")
    assert due_end(now + MINUTE_NS, AT_17, end) is None
    assert due_end(utc("2026-03-12 17:00"), AT_17, end) == utc("2026-03-12 17:00")


def test_down_across_an_end_sends_it_when_back() -> None:
    """Stopped at 16:55, started at 17:20: today's end did not happen; it is due at once."""
    sent = utc("2026-03-09 17:00")
    assert due_end(utc("2026-03-10 17:20"), AT_17, sent) == utc("2026-03-10 17:00")


def test_a_clock_set_back_sends_nothing_twice() -> None:
    sent = utc("2026-03-10 17:00")
    assert due_end(utc("2026-03-10 16:00"), AT_17, sent) is None  # yesterday's: older
    assert due_end(utc("2026-03-09 17:30"), AT_17, sent) is None


def test_a_new_time_of_day_counts_from_its_next_end() -> None:
    """Moved from 17:00 to 18:00 after today's 17:00 went: 18:00 today is an end too (the
    schedule in force says so); moved to 16:00, the next is tomorrow's."""
    sent = utc("2026-03-10 17:00")
    assert due_end(utc("2026-03-10 18:00"), 18 * 60, sent) == utc("2026-03-10 18:00")
    assert due_end(utc("2026-03-10 17:30"), 16 * 60, sent) is None
    assert due_end(utc("2026-03-11 16:00"), 16 * 60, sent) == utc("2026-03-11 16:00")
