"""Archiving the journal's old segments, and bringing them back.

``archive_segments_before`` moves the segments no reader needs any more (``ringex replay
--archive``, below ``archive_bound.archivable_before``) to ``journal.archive_dir``; readers given
the archive (``JournalReader(archive=...)``) read them there where the journal no longer has
them. ``unarchive_after`` moves back those that hold entries after a seq, for a cut there
(``cut_after``, demote). Both move a segment by a rename, or across volumes by a copy that
is fsynced before the original goes, so a kill leaves it in one place or in both, never in
neither; a segment found in both, byte for byte, is taken as moved.
"""

from __future__ import annotations

import errno
import filecmp
import itertools
import logging
import os
import shutil
from pathlib import Path

from procs.common.durable import PRIVATE, fsync_dir, make_dirs
from procs.common.journal import list_segments

log = logging.getLogger("ringex.journal")


def archive_segments_before(directory: Path, seq: int, archive_dir: Path) -> list[Path]:
    """Move the segments of ``directory`` whose entries are all ``< seq`` to ``archive_dir``
    (after a snapshot at ``seq - 1``); return their new paths. The last segment always stays:
    it is the one being appended to, and it tells a reopened writer where to continue."""
    if archive_dir.exists() and os.path.samefile(archive_dir, directory):
        raise ValueError(f"the archive {archive_dir} is the journal's own directory")
    segments = list_segments(directory)
    moved: list[Path] = []
    for (_, path), (next_first, _) in itertools.pairwise(segments):
        if next_first > seq:  # this segment holds next_first - 1 >= seq
            break
        if not moved:
            make_dirs(archive_dir)
        target = archive_dir / path.name
        if target.exists():
            if filecmp.cmp(path, target, shallow=False):  # a run killed before its unlink
                path.unlink()
                moved.append(target)
                continue
            raise FileExistsError(
                f"{target} exists already and differs from {path}: another journal archives "
                f"into {archive_dir} (instances sharing journal.archive_dir need names of "
                "their own, a primary and its standby on two hosts too, or an archive_dir "
                "each); not replacing it"
            )
        _move(path, target)
        moved.append(target)
    if moved:
        fsync_dir(archive_dir)
        fsync_dir(directory)
    return moved


def _move(path: Path, target: Path) -> None:
    """``path`` to ``target``: a rename, or across volumes a copy made durable (the file and
    its name) before the original goes, so a kill leaves it in one place or both."""
    try:
        os.rename(path, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        tmp = target.with_name(target.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE)
        with open(path, "rb") as src, open(fd, "wb") as dst:
            os.fchmod(dst.fileno(), PRIVATE)  # a leftover tmp's mode, or the umask's: neither
            shutil.copyfileobj(src, dst)  # (every account's orders: the owner's alone, 124)
            dst.flush()
            os.fsync(dst.fileno())
        os.rename(tmp, target)
        fsync_dir(target.parent)
        path.unlink()


def unarchive_after(directory: Path, archive: Path, seq: int) -> None:
    """Move back into the journal ``directory`` the archived segments that hold an entry
    after ``seq``, the newest first (the journal stays one run of segments throughout), so a
    cut there finds its whole tail: an old primary archived past where the promoted epoch
    began (demote)."""
    live = list_segments(directory)
    end = live[0][0] if live else None
    changed = False  # the archive's directory: fsynced before the cut (review 78)
    for first, path in reversed(list_segments(archive) if archive.is_dir() else []):
        if end is None or first >= end:  # a copy of a segment the journal holds (a move
            twin = directory / path.name  # killed before its unlink): dropped where equal,
            if twin.exists() and filecmp.cmp(path, twin, shallow=False):  # or it would stay
                path.unlink()  # in the archive past the cut (review 77)
                changed = True
            continue
        if end - 1 <= seq:
            break
        target = directory / path.name
        _move(path, target)
        fsync_dir(directory)
        changed = True
        log.warning("journal segment %s moved back from the archive to cut after seq %d",
                    target, seq)  # fmt: skip
        end = first
    if changed:  # else a power loss after the cut could bring an archived copy back
        fsync_dir(archive)
