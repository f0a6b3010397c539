"""Intake pacing: a gateway stops reading its clients while the exchange is behind."""

from __future__ import annotations

from procs.gateway.intake import IntakePacing


def test_it_pauses_past_the_high_marks_and_reads_again_below_the_low_ones() -> None:
    pacing = IntakePacing(16_384)  # events: pause past 4096, read below 1024
    assert pacing.update(False, 4096, 0) is None  # at the mark: still reading
    assert pacing.update(False, 4097, 0) is True
    assert pacing.update(False, 2000, 0) is None  # between the marks: stays paused
    assert pacing.update(False, 1024, 0) is False
    assert pacing.update(False, 0, 8193) is True  # commands for the router: past half a ring
    assert pacing.update(False, 0, 2049) is None
    assert pacing.update(False, 0, 2048) is False


def test_commands_the_router_ring_had_no_room_for_always_pause() -> None:
    pacing = IntakePacing(16_384)
    assert pacing.update(True, 0, 0) is True
    assert pacing.paused
    assert pacing.update(False, 0, 0) is False
    assert not pacing.paused
