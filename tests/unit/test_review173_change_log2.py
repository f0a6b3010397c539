"""Review 173, the second part: the faults it found in ``procs/common/change_log.py`` and its
stores, each now fixed ("Was (fixed)"), with the damage helpers they use (the first part,
``test_review173_change_log.py``, holds the module's summary and what was pinned as correct).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from procs.common import change_log
from procs.common.apikeys import ApiKeyStore
from procs.common.change_log import ChangeLogError
from procs.common.crc_frames import HEADER
from procs.common.users import User, UsersFileError, UserStore
from tests.unit.test_review173_change_log import ALICE, KV, _fds, _keys, _ship


def _damage_header(log_path: Path) -> None:
    data = bytearray(log_path.read_bytes())
    data[len(change_log.MAGIC) + HEADER.size] ^= 0x01  # the header frame's body
    log_path.write_bytes(bytes(data))


def test_damaged_log_at_reload_raises_change_log_error_holding_nothing(tmp_path: Path) -> None:
    """(A double close here, ``_open`` holding the fd its caller then closed, was fixed
    during this review: pinned.)"""
    path = tmp_path / "apikeys.json"
    ApiKeyStore(path).create(ALICE, ["read"])
    _damage_header(path.with_suffix(".log"))
    before = _fds(tmp_path)
    with pytest.raises(ChangeLogError, match=r"apikeys\.log: its header frame"):
        ApiKeyStore(path)
    assert _fds(tmp_path) == before


def test_user_store_keeps_users_when_its_log_is_replaced_damaged(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    writer = UserStore(path, compact_min=100)
    writer.add("A", "pw", 1, n=2)
    reader = UserStore(path)
    damaged = tmp_path / "damaged"
    shutil.copy(reader.log_path, damaged)
    _damage_header(damaged)
    os.replace(damaged, reader.log_path)  # a new inode: not followed, read again
    assert reader.get("A") is not None  # kept, error logged
    assert reader._files._fd == -1  # nothing held
    with open(reader.log_path, "ab") as f:
        f.write(b"x")  # the files change: the store looks again, still kept
    assert reader.get("A") is not None and reader._files._fd == -1


def test_apikeys_get_fails_closed_on_oserror(tmp_path: Path) -> None:
    """Was (fixed: ``_refresh`` fails closed on OSError too). apikeys.py:176 ``except ValueError``:
    an OSError from the files escapes ``get``/``find`` into the gateway's request handler.
    Shown: the snapshot replaced by a directory (IsADirectoryError from ``_reload``). Fix:
    catch ``(OSError, ValueError)`` as UserStore does, failing closed."""
    path = tmp_path / "apikeys.json"
    writer = ApiKeyStore(path)
    key = writer.create(ALICE, ["read"])
    reader = ApiKeyStore(path, recheck_s=0)
    assert reader.get(key.key) == key
    os.replace(path, tmp_path / "moved")
    path.mkdir()
    assert reader.get(key.key) is None
    assert reader.find("other") is None


def test_fsync_failure_leaves_no_ghost_in_readers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was (fixed: a whole frame whose fsync fails stays, applied by the writer too, and the
    OSError says the change is made but may not be durable). change_log.py:339-340
    (``LoggedSnapshot.append``, ``except OSError: ftruncate``): an ``fsync`` raising after
    ``write_all`` wrote the whole frame truncated it back off, but another process may have
    read it in between. Shown: a reader refreshing during the failing fsync served a key the
    writer did not hold; once the writer's next (longer) append landed under the reader's
    offset, the reader read mid-frame, reported bogus damage ("claims N bytes") and failed
    closed: no API key was valid until the files changed again. Now reader and writer agree
    on the change, and the next one reads."""
    path = tmp_path / "apikeys.json"
    writer = ApiKeyStore(path, compact_min=1000)
    first = writer.create(ALICE, ["read"])
    reader = ApiKeyStore(path, recheck_s=0, compact_min=1000)
    real = os.fsync

    def failing(fd: int) -> None:
        reader.refresh()  # another gateway looks while the frame is whole in the page cache
        raise OSError(errno.EIO, "fsync failed")

    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(OSError, match="the change is made, but its fsync failed"):
        writer.create(ALICE, ["read"], label="ghost")
    monkeypatch.setattr(os, "fsync", real)
    assert _keys(reader) == _keys(writer) and len(_keys(writer)) == 2
    second = writer.create(ALICE, ["read", "trade"], label="x" * 60)
    reader.refresh()
    assert _keys(reader) == _keys(writer) and {first.key, second.key} <= _keys(writer)


def test_failed_compaction_does_not_fail_a_durable_append(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was (fixed: a failed compaction is logged and tried again at the next change).
    change_log.py:345-346: ``LoggedSnapshot.append`` compacts after the frame is fsynced and
    applied; a compaction that fails (a full disk writing the snapshot) raises out of
    ``append`` and ``revoke``/``create``: the caller reports a failure (``create``: no
    secret returned, evictions not reported) for a change every gateway already serves; the
    docstring says an OSError means nothing applied. Shown: ENOSPC from replace_durably at
    the compaction a revoke triggers. Fix: log the compaction's OSError in ``append`` and
    return (the log stays sound; the next append retries), or compact before appending."""
    path = tmp_path / "apikeys.json"
    writer = ApiKeyStore(path, compact_min=1000)
    keys = [writer.create(ALICE, ["read"]) for _ in range(3)]
    writer._files.compact_min = 0  # the next change past the store's size compacts

    def full(*args: Any, **kw: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(change_log, "replace_durably", full)
    try:
        assert writer.revoke(keys[0].key) is True
    finally:
        monkeypatch.undo()
        assert keys[0].key not in _keys(ApiKeyStore(path))  # made, whatever it said


def _damage_frame_of(log_path: Path, marker: bytes) -> None:
    """A copy of the log with a bit flipped in the frame holding ``marker`` put in its place
    (a restore, a standby's copy replaced whole: a new inode, so a reader reads it again)."""
    data = bytearray(log_path.read_bytes())
    data[data.index(marker)] ^= 0x20
    aside = log_path.with_name("aside")
    aside.write_bytes(bytes(data))
    os.replace(aside, log_path)


def test_user_store_failed_write_keeps_the_users_read_before(tmp_path: Path) -> None:
    """Was (fixed: ``_locked`` puts back the users read before, as a read does). users.py:450-454
    (``UserStore._locked``): the refresh under the lock fails on a log damaged mid-way (put
    in place whole: read again), and the reload it ran left ``_users`` as the bare snapshot
    (``_take`` raises before applying any frame); unlike ``_load_now`` nothing restores the
    users read before, and later reads keep the snapshot's (``_load_now`` then "keeps"
    those). Shown: A removed in the log, BBBB and C added; a middle frame damaged; a write
    on the reader fails (right), then ``get("A")`` returns the removed user (who can log
    on). Fix: keep and restore ``(_users, _last_session)`` in ``_locked`` on failure, as
    ``_load_now`` does."""
    path = tmp_path / "users.json"
    writer = UserStore(path, compact_min=100)
    writer.add("A", "pw", 1, n=2)
    writer.compact()  # A in the snapshot
    writer.remove("A")
    writer.add("BBBB", "pw", 2, n=2)
    writer.add("C", "pw", 3, n=2)
    reader = UserStore(path)
    assert reader.get("A") is None and reader.get("BBBB") is not None
    _damage_frame_of(reader.log_path, b"BBBB")
    with pytest.raises(UsersFileError):
        reader.remove("C")
    assert reader.get("A") is None
    assert reader.get("BBBB") is not None


def test_apikeys_failed_write_fails_closed(tmp_path: Path) -> None:
    """Was (fixed: ``_locked`` fails closed as a read does). apikeys.py:300-304
    (``ApiKeyStore._locked``): a ``create`` on a log damaged mid-way (put in place whole)
    raises (right), but the reload under the lock left ``_keys`` as the snapshot's and
    ``_broken`` None, so ``get`` serves a key revoked in the log until the next recheck (0.5
    s by default) instead of failing closed. Shown with recheck_s 60. Fix: on a failure
    under ``_locked`` clear the keys and set ``_broken`` (as ``_refresh`` does)."""
    path = tmp_path / "apikeys.json"
    writer = ApiKeyStore(path, compact_min=1000)
    old = writer.create(ALICE, ["read"])
    writer.compact()
    writer.revoke(old.key)
    writer.create(ALICE, ["read"], label="MARKER")
    writer.create(ALICE, ["read"])
    reader = ApiKeyStore(path, recheck_s=60, compact_min=1000)
    assert reader.get(old.key) is None
    _damage_frame_of(reader.log_path, b"MARKER")
    with pytest.raises(ValueError):
        reader.create(ALICE, ["read"])
    assert reader.get(old.key) is None


def test_shipper_racing_store_compact_leaves_a_sound_pair(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was (fixed: ``shipped_files`` sends each log before its snapshot). apikeys.py:298
    (users.py:444 alike): ``compact`` compacts twice, so the log it leaves is two
    generations past the snapshot before, breaking change_log's promise that any pair of the
    files reads. The shipper (files.py ``changes``: ``*.json`` before ``*.log``) reads the
    old snapshot, then the new log: the standby's copy then refuses to load ("changes
    between are missing"): a failover at that moment starts with no keys. Shown by running
    ``compact()`` between the shipper's two reads. Fix: ship each store's log before its
    snapshot (old log with a new snapshot always reads), and/or keep one compaction in
    ``compact()``."""
    writer, copy = _ship(tmp_path, monkeypatch, lambda w: w.compact())
    assert _keys(copy) == _keys(writer)


def test_damaged_header_error_names_the_byte(tmp_path: Path) -> None:
    """Was (fixed: "at byte 8"). change_log.py:239 (``LoggedSnapshot._header``) says "its header
    frame fails its check ..." (or "is cut short" for a flipped bit in a log without
    changes) without the byte, where the module docstring says damage is named by file and
    byte. Fix: "the header frame at byte 8 ..."."""
    kv = KV(tmp_path)
    kv.put("a", 1)
    _damage_header(kv.files.path)
    with pytest.raises(ChangeLogError, match=r"kv\.log.*byte 8"):
        kv.files.reload()


def test_user_store_reader_never_sees_a_half_reload(tmp_path: Path) -> None:
    """Was (fixed: ``get`` and ``users`` look up under ``_reading``, which a reload holds
    throughout). users.py:324/328: ``UserStore.get``/``users`` read ``self._users`` after
    ``_load`` released ``_reading``, while a reload on another thread had already swapped in
    the snapshot's dict (``_load_snapshot``) and replayed the log into it in place: a reader
    saw a state that never was the files' (a user removed in the log back; with a bridge
    replayed, an older password). Shown now: thread T's ``get("A")`` started while the main
    thread's reload is about to apply the log's "remove A" waits for that reload, and
    answers None."""
    path = tmp_path / "users.json"
    writer = UserStore(path, compact_min=100)
    writer.add("A", "pw", 1, n=2)
    writer.compact()  # A in the snapshot
    writer.remove("A")
    reader = UserStore(path)
    assert reader.get("A") is None
    raw = json.loads(path.read_bytes())
    raw.pop("crc32")  # a hand edit (not checked), generation kept: read whole again
    edit = tmp_path / "edit"
    edit.write_bytes(json.dumps(raw).encode())
    real_apply = reader._files._apply
    seen: list[User | None] = []
    t = threading.Thread(target=lambda: seen.append(reader.get("A")))
    started = False

    def apply(body: bytes) -> None:
        nonlocal started
        if not started:  # the main thread's reload, before its first change: T looks now
            started = True
            t.start()
            t.join(0.2)
            assert t.is_alive() and not seen, "a lookup ran beside a reload under way"
        real_apply(body)

    reader._files._apply = apply
    os.replace(edit, path)
    assert reader.get("B") is None  # reloads (the snapshot replaced)
    t.join(2)
    assert started and seen == [None]
    assert reader.get("A") is None


def test_apikeys_damage_logged_once_despite_failed_writes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Was (fixed: ``_broken`` is cleared only by a read that succeeds). apikeys.py:303
    (``ApiKeyStore._locked``) sets ``_broken = None`` before the refresh that fails, so
    after each failed ``create`` (each REST login while the log is damaged) the next ``get``
    reads the unchanged files again and logs the same error again: one error line per login,
    not one per change of the files. Fix: reset ``_broken`` only once the refresh under the
    lock succeeded (as ``UserStore._locked`` does)."""
    path = tmp_path / "apikeys.json"
    writer = ApiKeyStore(path, compact_min=1000)
    key = writer.create(ALICE, ["read"], label="MARKER")
    writer.create(ALICE, ["read"])
    reader = ApiKeyStore(path, recheck_s=0, compact_min=1000)
    _damage_frame_of(path.with_suffix(".log"), b"MARKER")
    with caplog.at_level(logging.ERROR):
        for _ in range(5):
            assert reader.get(key.key) is None
            with pytest.raises(ValueError):
                reader.create(ALICE, ["read"])
    assert len([r for r in caplog.records if "no API key is valid" in r.getMessage()]) == 1
