"""``cut_after``: an old primary's journal loses the tail it wrote after the promotion, which
becomes a journal of its own beginning right after the cut; the kept part is continued by a
writer at the next seq."""

from __future__ import annotations

from pathlib import Path

import pytest

from procs.common.journal import JournalError, list_segments
from procs.common.journal_archive import archive_segments_before
from procs.common.journal_writer import cut_after
from tests.unit.router.test_journal import (
    SCHEMA,
    SLOT,
    SMALL,
    assert_contiguous,
    fill,
    images,
    reader,
    writer,
)


def cut(journal: Path, seq: int, aside: Path) -> int:
    return cut_after(journal, seq, aside, slot_size=SLOT, schema_id=SCHEMA)


@pytest.mark.parametrize("keep", [0, 9, 10, 11, 17, 24])
def test_the_tail_moves_to_a_journal_of_its_own(tmp_path: Path, keep: int) -> None:
    journal, aside = tmp_path / "j", tmp_path / "aside"
    fill(journal, 25, segment_bytes=SMALL)  # segments from 1, 11, 21
    assert cut(journal, keep, aside) == 25 - keep
    assert reader(journal).last_seq() == keep
    assert_contiguous(journal, 1, keep)
    assert_contiguous(aside, keep + 1, 25)
    with writer(journal, segment_bytes=SMALL) as w:  # the kept part goes on at keep + 1
        assert w.next_seq == keep + 1
        w.append(keep + 1, images(keep + 1, 3), 3)
    assert_contiguous(journal, 1, keep + 3)


def test_nothing_after_the_seq_cuts_nothing(tmp_path: Path) -> None:
    fill(tmp_path / "j", 5)
    assert cut(tmp_path / "j", 5, tmp_path / "aside") == 0
    assert not (tmp_path / "aside").exists()
    assert_contiguous(tmp_path / "j", 1, 5)


def test_a_cut_into_archived_segments_is_refused(tmp_path: Path) -> None:
    journal = tmp_path / "j"
    fill(journal, 25, segment_bytes=SMALL)
    archive_segments_before(journal, 21, tmp_path / "archive")
    with pytest.raises(JournalError, match="its oldest segment begins at 21"):
        cut(journal, 15, tmp_path / "aside")
    assert [first for first, _ in list_segments(journal)] == [21]
