"""The finished-ClOrdID memory keeps the newest size..2 x size values, in bounded sets."""

from __future__ import annotations

from procs.gateway.clordids import Generations


def test_the_newest_values_are_remembered_and_the_oldest_generation_goes_whole() -> None:
    seen = Generations(3)
    for value in range(1, 8):
        seen.add(value)
    assert [v in seen for v in range(1, 8)] == [False, False, False, True, True, True, True]
    assert len(seen) == 4  # 4..6 (full) and 7 (filling)
    for value in (8, 9):
        seen.add(value)
    assert 4 in seen and 9 in seen and len(seen) == 6
    seen.add(10)  # the generation 7..9 is full: 4..6 go
    assert 4 not in seen and 7 in seen and 10 in seen
