"""The journal's durable mark (``journal_durable.py``): how far the readers beside a live
writer (the database writer) may read. Never past what was fsynced; the last seq after a
clean close; each append's under ``fsync = "none"``; what a killed writer fsynced until the
next writer's open makes the rest durable. Always a seq: "all" only without the file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from procs.common.journal import JournalError
from procs.common.journal_durable import ALL, FILE, durable_upto
from procs.common.journal_writer import JournalWriter
from procs.common.record_codec import RecordCodec

CODEC = RecordCodec()
IMAGE = bytes(CODEC.slot_size)


def _writer(directory: Path, fsync: str = "batch") -> JournalWriter:
    return JournalWriter(
        directory,
        slot_size=CODEC.slot_size,
        schema_id=CODEC.journal_schema_id,
        fsync=fsync,  # type: ignore[arg-type]
    )


def test_batch_marks_each_append_and_a_clean_close_marks_its_last(tmp_path: Path) -> None:
    assert durable_upto(tmp_path) == ALL  # no mark: no bound (a journal of an older build)
    with _writer(tmp_path) as w:
        assert durable_upto(tmp_path) == 0
        w.append(1, IMAGE * 3, 3)
        assert durable_upto(tmp_path) == 3
    assert durable_upto(tmp_path) == 3  # a seq, not "all" (review 79)


def test_pipelined_marks_what_its_fsyncs_made_durable(tmp_path: Path) -> None:
    w = _writer(tmp_path, "pipelined")
    try:
        w.append(1, IMAGE * 4, 4)
        assert durable_upto(tmp_path) == 0  # appended, no fsync yet
        assert w.wait_durable(5.0)
        assert durable_upto(tmp_path) == w.durable_seq == 4
    finally:
        w.close()


def test_a_killed_writer_leaves_its_last_mark_until_the_next_open(tmp_path: Path) -> None:
    """A SIGKILL runs no close: the entries past the last fsync wait for the next writer,
    whose open fsyncs them and marks them all."""
    w = _writer(tmp_path, "interval")
    w.append(1, IMAGE * 2, 2)
    w.sync()
    w.append(3, IMAGE * 2, 2)  # within the interval: not fsynced
    assert durable_upto(tmp_path) == 2
    os.close(w._fd)  # what the kill leaves: the descriptors go, nothing more runs
    w._lock.close()
    assert durable_upto(tmp_path) == 2
    with _writer(tmp_path, "interval") as again:
        assert again.next_seq == 5
        assert durable_upto(tmp_path) == 4


def test_none_promises_nothing_and_marks_what_is_written(tmp_path: Path) -> None:
    with _writer(tmp_path, "none") as w:
        w.append(1, IMAGE, 1)
        assert durable_upto(tmp_path) == 1
        w.append(2, IMAGE * 2, 2)
        assert durable_upto(tmp_path) == 3


def test_a_failed_fsync_keeps_the_mark_where_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = _writer(tmp_path)
    w.append(1, IMAGE, 1)

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(OSError):
        w.append(2, IMAGE, 1)
    assert durable_upto(tmp_path) == 1
    monkeypatch.undo()
    w.close()  # not a clean close: seq 2 is not known durable
    assert durable_upto(tmp_path) == 1
    with pytest.raises(JournalError):
        w.append(3, IMAGE, 1)


def test_a_mark_a_crash_left_short_says_nothing_is_durable_yet(tmp_path: Path) -> None:
    (tmp_path / FILE).write_bytes(b"\x01\x02")
    assert durable_upto(tmp_path) == 0
