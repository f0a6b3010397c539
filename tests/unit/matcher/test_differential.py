"""The fast book against the reference: identical events for a seeded random stream."""

from __future__ import annotations

from procs.core.fast_book import FastBook
from procs.core.reference_book import ReferenceBook
from tests.unit.matcher.differential import SPEC, compare


def test_fast_book_matches_the_reference_event_for_event() -> None:
    events = compare([ReferenceBook(SPEC), FastBook(SPEC)], seed=1, count=20_000)
    assert events > 35_000  # it really trades, rests and cancels (39.7k since review 51)
