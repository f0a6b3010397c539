"""The counter ExecIDs' durable blocks (``procs/common/exec_ids.py``)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from procs.common.exec_ids import ExecIdBlocks, mark_text


def test_a_restart_starts_above_the_reserved_block_whatever_the_clock(tmp_path: Path) -> None:
    path = tmp_path / "gw1" / "exec-ids"  # its directory made on the first reserve
    ahead = time.time_ns() + 10**15
    first = ExecIdBlocks(path, block=10)
    assert first.reserve(ahead) == ahead + 10
    assert path.read_bytes() == mark_text(ahead + 10)
    assert path.stat().st_mode & 0o777 == 0o600  # the gateway's files: its user's (review 112)
    assert ExecIdBlocks(path, block=10).start() == ahead + 10  # the clock is behind it


def test_without_a_file_the_counter_starts_at_the_clock(tmp_path: Path) -> None:
    before = time.time_ns()
    assert ExecIdBlocks(tmp_path / "exec-ids").start() >= before
    assert ExecIdBlocks(None).start() >= before
    assert ExecIdBlocks(None, block=5).reserve(7) == 12  # in memory: nothing written


def test_a_mark_older_than_the_clock_gives_way_to_it(tmp_path: Path) -> None:
    path = tmp_path / "exec-ids"
    path.write_bytes(b"12345\n")
    assert ExecIdBlocks(path).start() > 12345


def test_a_file_that_is_not_a_mark_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "exec-ids"
    path.write_bytes(b"not a number")
    with pytest.raises(ValueError, match=r"exec-ids: b'not a number' is not an ExecID mark"):
        ExecIdBlocks(path).start()


def test_an_empty_block_is_refused() -> None:
    with pytest.raises(ValueError, match="an ExecID block of 0 ids: at least 1"):
        ExecIdBlocks(None, block=0)
