"""When the trading session ends: the daily END_OF_SESSION schedule as pure functions of the
time (no clock read, no I/O), so each case is a unit test; ``session_end.py`` is its shell.

The session ends every day ``minute`` minutes after midnight UTC (``supervisor.
session_end_utc``). The rules, and why:

- An end is *due* when the latest scheduled end at or before now is later than the last end
  sent. Only that latest one: after days of downtime the DAY orders are expired once, not
  once per missed day (the second END_OF_SESSION would find no DAY order to expire; N of
  them would only be noise in the journal).
- The last end sent is what was *scheduled*, not when it went (a send delayed by a busy
  admin ring still counts for its day), and it outlives the supervisor (``session_end.py``
  keeps it in the run directory, and takes an end the journal holds as sent): a supervisor
  restarted just after an end does not send it again, and one that was down across an end
  sends it once it runs again. A promoted standby goes on from the record its supervisor
  kept of its primary's ends, so an end its primary straddled is due, and sent, once.
- With nothing remembered (a first start, or the schedule just configured) the end that
  already passed is taken as sent: a schedule starts with its next end, so turning it on
  never expires an instance's DAY orders at once.
- A manual ``ringex admin end-session`` before an end does not move the schedule; one for
  every symbol at or after it is that day's end (``journaled_ends.py``).
- A clock set back less than a day after an end sends nothing twice: the remembered end is
  the clock's next one, which is then taken as sent. A remembered end past the clock's next
  end (the clock set back more than a day, or set right after it jumped days ahead and an
  end went for its day) cannot be this clock's: it would leave every session until the
  clock caught up with it without an end, so the schedule starts again as a first start
  does, from the clock's next end (``behind``). Ends sequenced before that are not the
  schedule's after it (``journaled_ends.py``). A clock that jumps days ahead sends one end,
  the latest, like downtime; that it is early nothing here can tell.

Integer nanoseconds since the epoch, UTC (``time.time_ns()``).
"""

from __future__ import annotations

MINUTE_NS = 60 * 10**9
DAY_NS = 1_440 * MINUTE_NS


def latest_end(now_ns: int, minute: int) -> int:
    """The scheduled end at or before ``now_ns``: today's (``minute`` minutes after midnight
    UTC) once it has come, else yesterday's. An end exactly at ``now_ns`` has come."""
    today = now_ns - now_ns % DAY_NS + minute * MINUTE_NS
    return today if today <= now_ns else today - DAY_NS


def next_end(now_ns: int, minute: int) -> int:
    """The first scheduled end after ``now_ns`` (tomorrow's when today's has come)."""
    return latest_end(now_ns, minute) + DAY_NS


def due_end(now_ns: int, minute: int, last_sent_ns: int) -> int | None:
    """The scheduled end to send now, or None: the latest end at or before ``now_ns`` when it
    is later than ``last_sent_ns`` (the scheduled time of the last end sent). However many
    ends were missed, one is due."""
    end = latest_end(now_ns, minute)
    return end if end > last_sent_ns else None


def behind(now_ns: int, minute: int, last_sent_ns: int) -> bool:
    """Whether the clock reads ``now_ns`` more than a day before ``last_sent_ns``, the end
    last sent: past the clock's next end, so it was sent by a clock since set back."""
    return last_sent_ns > next_end(now_ns, minute)
