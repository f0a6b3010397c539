"""Directories made for durable files are themselves named durably in their parents."""

from __future__ import annotations

from pathlib import Path

import pytest

from procs.common import durable
from procs.common.journal_writer import JournalWriter


def _record_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    synced: list[Path] = []
    real = durable.fsync_dir

    def spy(directory: Path) -> None:
        synced.append(Path(directory))
        real(directory)

    monkeypatch.setattr(durable, "fsync_dir", spy)
    return synced


def test_make_dirs_fsyncs_the_parent_of_every_directory_it_creates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced = _record_fsyncs(monkeypatch)
    target = tmp_path / "a" / "b" / "c"
    durable.make_dirs(target)
    assert target.is_dir()
    assert synced == [tmp_path, tmp_path / "a", tmp_path / "a" / "b"]
    synced.clear()
    durable.make_dirs(target)  # already there: nothing to make durable
    assert synced == []


def test_a_new_journal_directory_is_named_durably(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced = _record_fsyncs(monkeypatch)
    JournalWriter(tmp_path / "var" / "journal", slot_size=64, schema_id=5).close()
    assert tmp_path in synced and tmp_path / "var" in synced
