"""Files that survive a crash of the machine: written aside, fsynced, renamed over, and the
directory fsynced, so a reader finds the old content or the new one, never half of either."""

from __future__ import annotations

import errno
import fcntl
import io
import os
from pathlib import Path

#: The mode of the venue's files: the owner's alone. The journal (every account's orders and
#: transfers), snapshots (every balance), a FIX session's messages (its execution reports)
#: are no other local user's to read (review 93: they were 0644, beside a 0600 audit log).
PRIVATE = 0o600


def fsync_dir(directory: Path) -> None:
    """Make the names in ``directory`` (a rename, a new or removed file) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(directory: Path) -> None:
    """``mkdir -p`` whose new directories survive a crash of the machine: each one created
    is named durably in its parent (a file fsynced into a directory whose own entry was never
    fsynced can vanish with it)."""
    missing = []
    probe = directory
    while not probe.is_dir():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    if not missing:
        return
    directory.mkdir(parents=True, exist_ok=True)
    for made in reversed(missing):
        fsync_dir(made.parent)


def fsync_file(path: Path) -> None:
    """Make ``path``'s content durable (nothing if it is gone)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(
    path: Path, data: bytes, *, mode: int | None = None, tmp: Path | None = None
) -> None:
    """``path`` becomes ``data``: written to ``tmp`` (default ``<path>.tmp``), fsynced,
    renamed over it, the directory fsynced. ``mode`` (``PRIVATE`` for what holds accounts'
    data: snapshots, a session's messages) is the file's whatever the umask or a leftover temp
    file says; None: the umask's (a file another user's process must read, as a promotion's
    request that root writes for the supervisor's user: review 98). The temp file is held
    under an exclusive ``flock`` from before it is written until after its rename, so a
    cleaner of crashed saves tells one under way from one left (``procs/common/snapshots.py``,
    reviews 175 and 177: the lock once went with the file's close, before the rename)."""
    tmp = tmp or path.with_suffix(".tmp")
    f = _locked_temp(tmp, 0o666 if mode is None else mode)
    fd = f.fileno()
    with f:
        try:
            if mode is not None:
                os.fchmod(fd, mode)  # a leftover temp file keeps its old mode through O_CREAT
            os.ftruncate(fd, 0)  # under the lock: another save's bytes are never cut
            f.write(data)
            f.flush()
            os.fsync(fd)
            os.replace(tmp, path)
        except BaseException:  # a full disk: the part written goes, or it holds the room the
            tmp.unlink(missing_ok=True)  # journal needs next (review 96: a failed snapshot's)
            raise
    fsync_dir(path.parent)


def _locked_temp(tmp: Path, mode: int) -> io.BufferedWriter:
    """``tmp`` opened for writing under an exclusive ``flock``, still the file of that name.
    Opened without ``O_TRUNC``, which would empty another save's temp file between its write
    and its fsync (two saves of one snapshot seq at once: its rename then put an empty file
    in place, review 179); a file renamed away or removed while this one waited for the
    lock is another save's, done: the name is opened again."""
    while True:
        f = os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT, mode), "wb")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                if os.path.samestat(os.fstat(f.fileno()), os.stat(tmp)):
                    return f
            except FileNotFoundError:
                pass
        except BaseException:  # no lock to be had (ENOLCK): the file goes, as a failed
            f.close()  # save's does
            tmp.unlink(missing_ok=True)
            raise
        f.close()


def write_all(fd: int, data: bytes | memoryview) -> None:
    """``data`` whole: ``os.write`` may write less (a disk filling up mid-frame) and says so;
    one that writes nothing of a non-empty buffer (a file system's answer, not a regular
    Linux file's) is an ``OSError``, not a loop for ever."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if not written:
            raise OSError(errno.EIO, f"write of {len(view)} bytes to fd {fd} wrote none")
        view = view[written:]
