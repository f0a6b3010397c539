"""``QuietFilter``: a few records a period, each cut short, with a count of those dropped."""

from __future__ import annotations

import logging

import pytest

from procs.common import quiet_log
from procs.common.quiet_log import QuietFilter, quieten


def _record(msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("x" * 5_000)
        except ValueError as error:
            exc_info = (type(error), error, error.__traceback__)
    return logging.LogRecord("t", logging.ERROR, __file__, 1, msg, args or None, exc_info)


class _Clock:
    """Stands for the ``time`` module in ``quiet_log``: a monotonic clock the test moves."""

    def __init__(self, now: list[float]) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now[0]


def test_a_burst_a_period_then_a_count_of_those_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(quiet_log, "time", _Clock(now))
    f = QuietFilter(burst=2, period_s=60.0)
    passed = [f.filter(_record("bad request %d", k)) for k in range(5)]
    assert passed == [True, True, False, False, False] and f.dropped == 3
    now[0] += 60.0  # the next period
    again = _record("bad request %d", 5)
    assert f.filter(again) and again.getMessage() == "bad request 5 (3 more like it dropped)"
    assert f.dropped == 0


def test_a_record_and_its_traceback_are_cut_short() -> None:
    f = QuietFilter(max_chars=100)
    record = _record("header %s", "h" * 8_000, exc=True)
    assert f.filter(record)
    assert len(record.getMessage()) <= 100 and record.getMessage().endswith("(8007 chars)")
    assert record.exc_info is None and record.exc_text is not None
    assert len(record.exc_text) <= 300
    assert len(logging.Formatter().format(record)) <= 100 + 1 + 300


def test_quieten_puts_one_filter_on_a_logger() -> None:
    logger = logging.getLogger("ringex.test.quiet")
    try:
        quieten(logger)
        quieten(logger)
        assert sum(isinstance(f, QuietFilter) for f in logger.filters) == 1
    finally:
        for f in list(logger.filters):
            logger.removeFilter(f)


def test_nonsense_settings_are_refused_naming_them() -> None:
    with pytest.raises(ValueError, match="burst=0"):
        QuietFilter(burst=0)
