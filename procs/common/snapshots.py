"""Snapshots on disk: ``<dir>/<seq:020d>.snap``, written atomically, the newest few kept.

A snapshot is the state after executing every command up to ``seq``; recovery loads the
newest and replays the journal from ``seq + 1``. A write goes to a temporary file that is
fsynced and renamed, so a crash leaves the previous snapshot or the new one, never half.

Each file is ``RXS1``, the CRC-32 of the body (4 bytes, little-endian), then the body, so
rot or a copy cut short is caught, as the journal's entries are: a damaged snapshot is
logged with its path and passed over for the one before it (the journal holds what follows
that). A file without the prefix (written before it existed: msgpack, an array or a map
first) is taken as it is; anything else without it is damaged.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Final

from procs.common.durable import PRIVATE, fsync_dir, make_dirs, replace_durably

log = logging.getLogger("ringex.snapshots")
MAGIC: Final = b"RXS1"
_CRC: Final = struct.Struct("<I")


def framed(data: bytes, magic: bytes = MAGIC) -> bytes:
    """``data`` behind ``magic`` and its CRC-32: what ``unframed`` checks."""
    return magic + _CRC.pack(zlib.crc32(data)) + data


def unframed(raw: bytes, magic: bytes = MAGIC) -> bytes:
    """The body of ``raw`` (which starts with ``magic``), its CRC checked; ``ValueError``
    saying what is wrong where it is damaged."""
    head = len(magic) + _CRC.size
    if len(raw) < head:
        raise ValueError(f"{len(raw)} bytes, shorter than its header")
    (crc,) = _CRC.unpack_from(raw, len(magic))
    if zlib.crc32(raw[head:]) != crc:
        raise ValueError("CRC mismatch")
    return raw[head:]


def _body(path: Path, raw: bytes) -> bytes | None:
    """The body of a snapshot file, or None (logged) when it is damaged."""
    if not raw.startswith(MAGIC):
        older = raw and (0x80 <= raw[0] <= 0x9F or 0xDC <= raw[0] <= 0xDF)
        if older and raw[1 : len(MAGIC)] != MAGIC[1:]:  # not a header with its first byte hit
            return raw  # an older file, without a check (msgpack: it opens an array or map)
        log.warning("snapshot %s is damaged: no header (%d bytes): passed over", path, len(raw))
        return None
    try:
        return unframed(raw)
    except ValueError as exc:
        log.warning("snapshot %s is damaged (%s): passed over", path, exc)
        return None


class SnapshotStore:
    def __init__(self, directory: Path, keep: int = 3) -> None:
        if keep < 1:
            raise ValueError(f"keep={keep}: a store keeps at least one snapshot")
        self.directory = directory
        self.keep = keep

    def save(
        self, seq: int, data: bytes, history_end: Callable[[], int | None] | None = None
    ) -> Path:
        """Write the state at ``seq``; keep it and the ``keep - 1`` newest before it.

        The one written is the newest from now on: a snapshot above ``seq`` is of a history
        that was rewound (a journal tail lost under ``fsync = "interval"``, a database
        restored from a backup), which its seqs will name again with other commands, so it
        is removed rather than ever restored, or kept in its place. Where another writer
        snapshots the same history (the router's job and ``ringex replay --snapshot`` of a
        running instance), its end, ``history_end()``, read once the snapshots are listed,
        bounds what is rewound: one up to there is kept (reviews 239, 242: the newer of the
        two was removed as a rewound history, whichever wrote it)."""
        make_dirs(self.directory)
        path = self.path(seq)
        _remove_stale(self.directory)
        replace_durably(path, framed(data), mode=PRIVATE)  # every account's balances
        paths = self._paths()
        end = max(seq, history_end() or 0) if history_end is not None else seq
        self._discard(
            [old for old in paths if int(old.stem) > end], f"the one just written (seq {seq})"
        )
        before = [p for p in paths if int(p.stem) < seq]
        for old in before[: max(0, len(before) - (self.keep - 1))]:
            old.unlink(missing_ok=True)
        return path

    def discard_after(self, end: int) -> None:
        """Remove the snapshots past ``end``, the journal's last seq: of a history it lost
        (a tail taken by a power loss under ``fsync = "none"``), whose seqs the router
        names again with other commands (review 273: a restart once the new history passed
        one restored it)."""
        self._discard([p for p in self._paths() if int(p.stem) > end], f"seq {end}")

    def _discard(self, rewound: list[Path], past: str) -> None:
        for old in rewound:
            log.warning("snapshot %s is past %s: a history that was rewound, removed",
                        old, past)  # fmt: skip
            old.unlink(missing_ok=True)
        if rewound:  # durably gone: a host crash must not bring one back to be restored
            fsync_dir(self.directory)

    def path(self, seq: int) -> Path:
        return self.directory / f"{seq:020d}.snap"

    def latest(self) -> tuple[int, bytes] | None:
        """The newest snapshot that is whole (a damaged one is passed over), or None."""
        return self._newest(lambda _seq: True)

    def at_or_before(self, seq: int) -> tuple[int, bytes] | None:
        """The newest whole snapshot at or before ``seq``, or None."""
        return self._newest(lambda at: at <= seq)

    def oldest_seq(self) -> int | None:
        """The seq of the oldest snapshot kept (whole or not), or None: the furthest back a
        reader that passes over damaged ones may start."""
        paths = self._paths()
        return int(paths[0].stem) if paths else None

    def newest_seq(self) -> int | None:
        """The seq of the newest snapshot kept (whole or not), or None."""
        paths = self._paths()
        return int(paths[-1].stem) if paths else None

    def _newest(self, wanted: Callable[[int], bool]) -> tuple[int, bytes] | None:
        for path in reversed(self._paths()):
            at = int(path.stem)
            if not wanted(at):
                continue
            try:
                raw = path.read_bytes()
            except FileNotFoundError:  # pruned by a save in another process meanwhile
                continue
            body = _body(path, raw)
            if body is not None:
                return at, body
        return None

    def _paths(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.glob("*.snap") if p.stem.isdigit())


#: A temp file older than this is a save a crash cut short; a younger one may be another
#: writer's, under way (the router's snapshot job beside ``ringex replay --snapshot``).
STALE_TMP_S = 600.0


def _remove_stale(directory: Path) -> None:
    """Remove the temp files of saves a crash cut short, which held the room the journal on
    the same disk needs (review 96); not another writer's in progress (review 98): one
    whose ``flock`` a writer holds (``replace_durably``) is under way, whatever its age says
    (a wall clock stepped forward made a temp file of a second ago look hours old, and it
    went under its writer, review 175)."""
    now = time.time()
    for stale in directory.glob("*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            if now - stale.stat().st_mtime > STALE_TMP_S and not _held(stale):
                stale.unlink(missing_ok=True)


def _held(path: Path) -> bool:
    """Whether a writer holds ``path``'s ``flock`` now (one that cannot be opened or locked,
    another user's say, is no writer's of ours: review 177, it failed every save after)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False
