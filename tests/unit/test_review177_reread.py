"""Review 177 (a helper, hostile): a reread of the whole day's change (``git diff
49b4d75..HEAD -- procs shm config scripts``) for what reviews 172-176 missed.

Faults shown, all fixed since (each test says "Was (fixed)"), and the false docs and the
leads below mended with them:

- ``procs/common/durable.py:68-75`` (``replace_durably``): the temp file's ``flock`` is let
  go when ``os.fdopen``'s file closes, *before* ``os.replace``. A cleaner of crashed saves
  (``snapshots._remove_stale``) whose clock reads the temp file as old (a step forward,
  review 175's case) finds it unlocked in that gap and unlinks it: the save then fails
  (``FileNotFoundError`` from the rename)
  (``test_a_cleaner_between_write_and_rename_spares_the_temp_file``).
- ``procs/common/durable.py:67-69``: ``fcntl.flock`` runs between ``os.open`` and
  ``os.fdopen``, outside anything that closes ``fd``: a flock that raises (``ENOLCK`` on a
  filesystem without locks, a signal's exception during a blocked wait) leaks the descriptor
  at every save (``test_a_failed_flock_leaks_no_descriptor``).
- ``procs/common/snapshots.py:150,157-163`` (``_held``): it opens the leftover for reading and
  lets every error but ``FileNotFoundError`` out. A leftover this process cannot open (another
  user's 0600 temp file, a tool run as root; EACCES) or a flock refused (ENOLCK) now fails
  every ``SnapshotStore.save`` for ever, where the unlink (the directory's permission) used
  to remove it (``test_a_leftover_that_cannot_be_opened_does_not_fail_every_save``).
- ``procs/common/apikeys.py:253,277-278`` (``create``): ``evicted`` is reset before the
  write and set after it, so a change made whose fsync failed (``ChangeMadeError``: the key
  made *and* the oldest revoked) leaves ``evicted`` None: the store's "``evicted`` says which
  key went" is false, and the 503 of ``rest_keys.py:66-68`` cannot tell the client its
  ``revokedApiKey`` (``test_evicted_names_the_key_gone_when_the_fsync_failed``).

False docs / dead code (no test):

- ``procs/common/change_log.py:39-41`` and ``:287-288`` say a following reader "checks that
  the new log's bridge is what it read past the old one's"; ``_follow`` (``:300-301``)
  compares its *length* (``header.bridge != held``) and the generation only, never bytes.
- ``procs/common/durable.py:62-64``: "The temp file is held under an exclusive flock while
  it is written": true, but not through the rename that follows (first fault above), which
  is what ``snapshots._remove_stale`` relies on.

Leads not shown (all mended but the one on ``change_log.py:217-218``, a rare second read
left as a cost: ``_started_ns`` moves with a step; ``rest_keys`` answers a 503 for a key
file it cannot read or write, ``KeysFileError`` told from a client's ValueError; the fsync
failure path raises ``ChangeMadeError`` whatever ``_more`` says):

- ``procs/gateway/server.py:166,282``: ``_started_ns`` is now a ``wall_clock`` reading but
  not a mark ``clock_stepped`` moves; after a step back every command's ``ts_ns`` is below it
  and the to-ring latency histogram records nothing for the step's length.
- ``procs/gateway/rest_keys.py:69-71``: ``api.keys.revoke(key.key)`` (password changed while
  the key was made) is not guarded: an OSError (a full disk) or ``ValueError`` (files misread)
  is a 500 and the key it meant to take back stays valid; ``:88`` (DELETE) is a 500 for a key
  revoked whose fsync failed (``ChangeMadeError``).
- ``procs/gateway/rest_keys.py:64-65``: ``create``'s ``ValueError`` includes ``_locked``'s
  damaged-file errors (``ChangeLogError`` is one): a login then gets a 400 ILLEGAL_PARAM that
  names the server's file path and byte.
- ``procs/common/change_log.py:217-218``: a reader's refresh between a compaction's two
  renames sees the snapshot changed under the old log and reads everything again (twice:
  the new log then differs from ``_log_seen``), the whole read following meant to avoid.
- ``procs/common/change_log.py:365-366``: the ``_more()`` in the fsync failure path can
  raise ``ChangeLogError`` (a ValueError) instead of ``ChangeMadeError``; the callers then say
  "not changed" / 400 for a change made.

Checked and found right (pinned below, a few): the flock does hold a temp file against the
cleaner while it is written; ``replace_durably`` leaves no lock or temp file behind; an
fsync that fails after a whole frame makes the key and drops the evicted one, raising a
``ChangeMadeError`` that names the log and keeps the errno. Also read and judged right:
``journal_writer._reap`` (``wait`` then ``result``), ``dbwriter._abandon`` (reset per
``_run``; ``Committer.close`` does not raise, so the main thread's error is what surfaces),
``Verifier``'s ``_kept_until`` kept in step with ``_buckets`` by ``_drop``/``remember``, the
replica's log-before-snapshot order and ``SHIPPABLE``, ``user_requests._changes_store``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from procs.common import durable
from procs.common import snapshots as snapshots_module
from procs.common.apikeys import ApiKeyStore
from procs.common.change_log import ChangeMadeError
from procs.common.snapshots import SnapshotStore
from procs.common.users import User

_DAY_S = 86_400.0


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _clean_stepped_forward(directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another saver's ``_remove_stale`` now, its wall clock stepped a day forward."""
    real = time.time
    with monkeypatch.context() as m:
        m.setattr(time, "time", lambda: real() + _DAY_S)
        snapshots_module._remove_stale(directory)


# -- durable.replace_durably: the flock -------------------------------------------------------


def test_a_cleaner_between_write_and_rename_spares_the_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was (fixed: the rename, under the lock). ``durable.py:68-75``: the flock is held by the fd
    that ``os.fdopen``'s ``with`` closes, so between that close and ``os.replace`` the temp
    file is unlocked; a cleaner (``snapshots.py:149-152``) with a clock stepped forward
    takes it for a crashed save and unlinks it, and the rename fails: the snapshot is not
    written (review 175's guarantee, through the gap). Shown by running that cleaner at the
    rename (``os.replace`` wrapped). Fix: ``os.replace`` (and the directory fsync) inside
    the ``with``, while the fd is open, or ``fcntl.flock`` on a descriptor kept until after
    the rename."""
    store = SnapshotStore(tmp_path)
    real_replace = os.replace

    def cleaner_then_replace(src: Any, dst: Any) -> None:
        _clean_stepped_forward(tmp_path, monkeypatch)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", cleaner_then_replace)
    store.save(5, b"balances")
    monkeypatch.setattr(os, "replace", real_replace)
    assert store.latest() == (5, b"balances")


def test_a_cleaner_during_the_write_spares_the_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pinned: while the data is written and fsynced the flock holds, even in one process
    (flock is per open file description): the cleaner spares the temp file."""
    store = SnapshotStore(tmp_path)
    real_fsync = os.fsync
    cleaned: list[bool] = []

    def cleaner_then_fsync(fd: int) -> None:
        if not cleaned:
            cleaned.append(True)
            _clean_stepped_forward(tmp_path, monkeypatch)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", cleaner_then_fsync)
    store.save(5, b"balances")
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert cleaned and store.latest() == (5, b"balances")


def test_replace_durably_leaves_no_lock_nor_temp_file(tmp_path: Path) -> None:
    """Pinned: after a save the target can be locked at once, and no ``.tmp`` is left."""
    target = tmp_path / "f.json"
    durable.replace_durably(target, b"{}", mode=durable.PRIVATE)
    fd = os.open(target, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]
    assert target.stat().st_mode & 0o777 == durable.PRIVATE


def test_a_failed_flock_leaks_no_descriptor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was (fixed: the file object owns the descriptor first). ``durable.py:67-69``: ``fd`` is
    closed only by ``os.fdopen``'s file, made after ``fcntl.flock``; a flock that raises
    (``ENOLCK``: a filesystem without locks; an exception from a signal handler while it
    waits) goes to the ``except`` that unlinks the temp file but never closes ``fd``: one
    descriptor lost per failed save. Shown by a flock that raises ``ENOLCK``, counting
    ``/proc/self/fd``. Fix: ``os.fdopen`` first (then ``fcntl.flock(f.fileno(), ...)``), or
    ``os.close(fd)`` in that path."""

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    target = tmp_path / "f.json"
    before = _fds()
    monkeypatch.setattr(fcntl, "flock", no_locks)
    for _ in range(3):
        with pytest.raises(OSError):
            durable.replace_durably(target, b"{}", mode=durable.PRIVATE)
    monkeypatch.undo()
    assert not (tmp_path / "f.tmp").exists()
    assert _fds() == before


# -- snapshots._remove_stale: a leftover it cannot open ----------------------------------------


def test_a_leftover_that_cannot_be_opened_does_not_fail_every_save(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was (fixed: one that cannot be opened or locked is no writer's).
    ``snapshots.py:150,157-163`` (``_held``, new today) opens a leftover temp file O_RDONLY
    to try its flock, and ``_remove_stale`` suppresses only ``FileNotFoundError``. A day-old
    leftover this process may not open (another user's 0600 file: a tool run as root that
    crashed mid-save; EACCES), or a flock the filesystem refuses (ENOLCK), raises out of
    every ``SnapshotStore.save`` from then on: no snapshot is ever written again, where
    before the unlink (the directory's permission, not the file's) removed it. Shown with
    ``os.open`` answering EACCES for that one file, as the kernel does for a non-root reader
    (the test runs as root, which opens anything). Fix: take an ``OSError`` from the open or
    the flock as "not held" (the age already says crashed), or skip that file with a
    warning."""
    leftover = tmp_path / f"{7:020d}.tmp"
    leftover.write_bytes(b"half a save")
    old = time.time() - _DAY_S
    os.utime(leftover, (old, old))
    real_open: Callable[..., int] = os.open

    def refusing_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if Path(path) == leftover:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    store = SnapshotStore(tmp_path)
    store.save(9, b"balances")
    monkeypatch.undo()
    assert store.latest() == (9, b"balances")


# -- apikeys.create: a change made whose fsync failed -------------------------------------------


def _user() -> User:
    return User("ALICE", 1, 1, "00" * 16, "00" * 32)


def _fsync_fails_once(monkeypatch: pytest.MonkeyPatch) -> None:
    real_fsync = os.fsync
    failed: list[bool] = []

    def fsync(fd: int) -> None:
        if not failed:
            failed.append(True)
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_a_key_made_whose_fsync_failed_is_made_and_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pinned: at the limit with ``evict_oldest``, an append whose fsync fails raises
    ``ChangeMadeError`` (an OSError keeping the errno, naming the log), and the change is
    made whole here and for another store: the oldest key gone, one new key there."""
    path = tmp_path / "apikeys.json"
    store = ApiKeyStore(path, max_keys_per_user=1)
    first = store.create(_user(), ["read"])
    _fsync_fails_once(monkeypatch)
    with pytest.raises(ChangeMadeError) as caught:
        store.create(_user(), ["read"], evict_oldest=True)
    monkeypatch.undo()
    assert caught.value.errno == errno.EIO and str(store.log_path) in str(caught.value)
    for seen in (store, ApiKeyStore(path, max_keys_per_user=1)):
        keys = seen.keys_of("ALICE")
        assert len(keys) == 1 and keys[0].key != first.key
        assert seen.get(first.key) is None


def test_evicted_names_the_key_gone_when_the_fsync_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was (fixed: set before the write, cleared only for a change not made). ``apikeys.py:253``
    sets ``evicted = None`` and ``:278`` sets it only after ``_write`` returns;
    ``ChangeMadeError`` (the change made: the key made, the oldest revoked,
    ``change_log.append``) skips ``:278``, so ``evicted`` says no key went while one did:
    the docstring's "``evicted`` says which key went" is false, and ``rest_keys.py``'s 503
    for it cannot name ``revokedApiKey``. Shown with one fsync failing (``os.fsync``
    patched) at the limit of one key. Fix: set ``self.evicted`` before ``self._write`` (and
    back to None where ``_write`` raises a plain OSError, nothing made)."""
    store = ApiKeyStore(tmp_path / "apikeys.json", max_keys_per_user=1)
    first = store.create(_user(), ["read"])
    _fsync_fails_once(monkeypatch)
    with pytest.raises(ChangeMadeError):
        store.create(_user(), ["read"], evict_oldest=True)
    monkeypatch.undo()
    assert store.get(first.key) is None  # it went
    assert store.evicted is not None and store.evicted.key == first.key
