"""Epochs of a journal: the history's rules, where an old primary's journal must be cut to
follow the promoted one, the fence a router refuses, and the file's round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from procs.common.epochs import FILE, Epochs, EpochsError, JournalFencedError


def test_a_journal_without_a_file_is_in_epoch_1_from_seq_1(tmp_path: Path) -> None:
    epochs = Epochs.load(tmp_path)
    assert epochs.history == ((1, 1),) and epochs.current == 1 and epochs.fence is None
    epochs.check_open(tmp_path)  # not fenced: no error


def test_a_promotion_starts_a_newer_epoch_and_the_file_keeps_it(tmp_path: Path) -> None:
    promoted = Epochs().promoted(2, 8)
    promoted.save(tmp_path)
    assert Epochs.load(tmp_path) == promoted
    assert promoted.history == ((1, 1), (2, 8)) and promoted.current == 2
    with pytest.raises(EpochsError, match="promotion to epoch 2: the journal is at 2"):
        promoted.promoted(2, 9)
    with pytest.raises(EpochsError, match="epoch 3 from seq 5 cannot follow epoch 2 from seq 8"):
        Epochs(((1, 1), (2, 8), (3, 5)))


def test_a_fenced_journal_cannot_be_opened_and_says_what_to_do(tmp_path: Path) -> None:
    fenced = Epochs().fenced(2, "standby-a")
    fenced.save(tmp_path)
    loaded = Epochs.load(tmp_path)
    assert loaded.fence is not None and loaded.fence.epoch == 2 and loaded.fence.by == "standby-a"
    with pytest.raises(JournalFencedError, match=r"'standby-a' was promoted to epoch 2.*demote"):
        loaded.check_open(tmp_path)
    with pytest.raises(EpochsError, match="newer than this journal's 1"):
        Epochs().fenced(1, "x")


@pytest.mark.parametrize(
    ("old", "new", "keep"),
    [
        (((1, 1),), ((1, 1), (2, 8)), 7),  # the old primary's epoch 1 ends before seq 8
        (((1, 1), (2, 8)), ((1, 1), (2, 8), (3, 15)), 14),  # a second failover
        (((1, 1), (2, 8)), ((1, 1), (3, 8)), 7),  # the old one's epoch 2 was never followed
        (((1, 1),), ((1, 1),), None),  # the same epoch: nothing to cut by epochs
    ],
)
def test_keep_before_is_where_the_primary_s_next_epoch_began(
    old: tuple[tuple[int, int], ...], new: tuple[tuple[int, int], ...], keep: int | None
) -> None:
    assert Epochs(old).keep_before(Epochs(new)) == keep


def test_histories_that_disagree_before_the_cut_are_refused() -> None:
    with pytest.raises(EpochsError, match="epoch histories disagree"):
        Epochs(((1, 1), (2, 9))).keep_before(Epochs(((1, 1), (2, 8), (3, 12))))


def test_a_malformed_file_names_itself(tmp_path: Path) -> None:
    (tmp_path / FILE).write_text('{"epochs": [[1]]}')
    with pytest.raises(EpochsError, match=f"{FILE}: malformed epochs file"):
        Epochs.load(tmp_path)
    (tmp_path / FILE).write_text("{")
    with pytest.raises(EpochsError, match="cannot read the epochs"):
        Epochs.load(tmp_path)
