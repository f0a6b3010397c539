"""Counter pages: a writer that comes back keeps its counts, other names replace the page,
and a reader refuses a segment that is not a counter page."""

from __future__ import annotations

import pytest

from shm import Ring, ShmError, StructCodec
from shm.counters import Counters


def test_counts_survive_a_reopen_and_other_names_replace_the_page(instance: str) -> None:
    page = Counters.open(instance, "stats-x", ["a", "b"])
    page.values[page.index("b")] = 7
    page.close()
    again = Counters.open(instance, "stats-x", ["a", "b"])
    assert again.read() == {"a": 0, "b": 7}
    reader = Counters.attach(instance, "stats-x")
    again.values[0] = 3
    assert reader.read() == {"a": 3, "b": 7}  # shared, not copied
    reader.close()
    again.close()
    other = Counters.open(instance, "stats-x", ["c"])
    assert other.read() == {"c": 0}
    with pytest.raises(ShmError, match="no counter 'a'"):
        other.index("a")
    other.region.unlink()
    other.close()


def test_a_ring_is_not_a_counter_page_and_names_have_a_limit(instance: str) -> None:
    ring = Ring.create(instance, "r", StructCodec("q"), capacity=4, consumers=["c"])
    try:
        with pytest.raises(ShmError, match="is not a counter page"):
            Counters.attach(instance, "r")
    finally:
        ring.close()
    with pytest.raises(ValueError, match=r"is not 1\.\.32 bytes"):
        Counters.open(instance, "stats-y", ["x" * 33])
