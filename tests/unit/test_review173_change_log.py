"""Review 173: a hostile review of ``procs/common/change_log.py`` and its users.

Reviewed as the working tree stood at 12:35:58 (the generation in the snapshot; a double
close in ``_reload``, seen first, was fixed then and is pinned below). Faults shown, all
fixed since (each test says "Was (fixed: ...)"):

- change_log.py: an ``fsync`` failing after ``write_all`` truncated a whole frame that
  other readers may have applied: they served the unacknowledged change, then read the next
  append mid-frame and failed closed on bogus damage (now the frame stays, applied by all);
- change_log.py: a compaction failing after the change was durable made ``append``
  (``create``/``revoke``/``add``) raise for a change every gateway already served;
- change_log.py: the header's damage named the file but no byte;
- apikeys.py: ``_refresh`` caught ValueError only: an OSError escaped ``get``/``find``;
- apikeys.py: ``_locked`` reset ``_broken`` before a refresh that failed: the keys the
  failed reload left (the snapshot's: a revoked key) stayed valid until the next recheck,
  and the damage was logged again after every failed write (one error line per login);
- users.py: ``_locked`` did not restore the users read before when its refresh failed: the
  bare snapshot's users were served (a removed user back), and called "kept";
- users.py: ``users``/``get`` read ``_users`` outside ``_reading`` while another thread's
  reload replayed the log into the dict already swapped in: a half state was seen;
- apikeys.py / users.py with files.py: ``compact()`` compacts twice; a shipper reading the
  old snapshot and then the new log left a standby pair that refused to load (each log is
  shipped before its snapshot now).

Pinned as correct: writers and lagging readers across many compactions (compact_min 2),
following a compaction without reading the snapshot, partial frames, torn tails and an append
after one, a crash at every write/fsync/truncate/rename (each copy reads the state before or
after the change in flight, and a writer goes on from it), both pairs across one compaction,
a shipper racing one compaction, a standby following shipped files, a hand-replaced
snapshot, damage named by file and byte, fail-closed and keep-users handling logged once,
descriptors after reloads, follows, compactions and errors, and the RLock serialising reads.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from procs.common import change_log
from procs.common.apikeys import ApiKey, ApiKeyStore
from procs.common.change_log import ChangeLogError, LoggedSnapshot
from procs.common.crc_frames import frame
from procs.common.users import User, UserStore
from procs.replica import files as replica_files
from procs.replica.files import FileReceiver, FileShipper, shipped_files

ALICE = User("ALICE", account=7, session=3, salt="00", digest="00")


class KV:
    """A minimal store over ``LoggedSnapshot``: a dict of str -> int, changes put/drop."""

    def __init__(self, directory: Path, compact_min: int = 2) -> None:
        self.state: dict[str, int] = {}
        self.loads = 0
        self.files = LoggedSnapshot(
            directory / "kv.json",
            directory / "kv.lock",
            load=self._load,
            apply=self._apply,
            dump=lambda g: json.dumps({"g": g, "s": self.state}, sort_keys=True).encode(),
            size=lambda: len(self.state),
            compact_min=compact_min,
        )
        self.files.reload()

    def _load(self, data: bytes | None) -> int:
        self.loads += 1
        doc: dict[str, Any] = {} if data is None else json.loads(data)
        self.state = dict(doc.get("s", {}))
        return int(doc.get("g", 0))

    def _apply(self, body: bytes) -> None:
        change: dict[str, Any] = json.loads(body)
        for key in change.get("drop", []):
            self.state.pop(key, None)
        self.state.update(change.get("put", {}))

    def put(self, key: str, value: int) -> None:
        with self.files.locked():
            self.files.append(json.dumps({"put": {key: value}}).encode())

    def drop(self, key: str) -> None:
        with self.files.locked():
            self.files.append(json.dumps({"drop": [key]}).encode())

    def look(self) -> dict[str, int]:
        self.files.refresh()
        return dict(self.state)


def _fds(under: Path) -> int:
    """This process's descriptors open on files under ``under``: the test's own (a count of
    all of them moved with what other tests of the same worker left closing meanwhile)."""
    held = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # (one closed while listed)
            held += os.readlink(f"/proc/self/fd/{fd}").startswith(f"{under}/")
    return held


def _fresh(directory: Path) -> dict[str, int]:
    kv = KV(directory)
    try:
        return kv.state
    finally:
        kv.files.close()


def _keys(store: ApiKeyStore) -> set[str]:
    return {k.key for k in store.all_keys()}


def _copy(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True)
    for p in src.iterdir():
        if p.is_file() and p.suffix in (".json", ".log"):
            shutil.copy2(p, dst / p.name)


# -- pinned: correct behaviour ------------------------------------------------------------------


def test_many_writers_and_lagging_readers_across_compactions(tmp_path: Path) -> None:
    """Three writers interleaved over 60 changes with compact_min 2 (a compaction every few
    changes); a reader looking after every change, one every 7 (several generations behind),
    one never until the end: all agree with the truth and with a fresh store."""
    writers = [KV(tmp_path) for _ in range(3)]
    eager, lazy, sleepy = KV(tmp_path), KV(tmp_path), KV(tmp_path)
    truth: dict[str, int] = {}
    for i in range(60):
        w = writers[i % 3]
        key = f"k{i % 5}"
        if i % 4 == 3:
            w.drop(key)
            truth.pop(key, None)
        else:
            w.put(key, i)
            truth[key] = i
        assert eager.look() == truth
        if i % 7 == 0:
            assert lazy.look() == truth
    assert sleepy.look() == truth
    assert lazy.look() == truth
    assert _fresh(tmp_path) == truth
    assert all(w.look() == truth for w in writers)


def test_reader_follows_one_compaction_without_reading_the_snapshot(tmp_path: Path) -> None:
    writer, reader = KV(tmp_path, compact_min=2), KV(tmp_path)
    writer.put("a", 1)
    assert reader.look() == {"a": 1}
    loads = reader.loads
    gen = reader.files._generation
    for i in range(3):  # past compact_min and the store's size: one compaction
        writer.put("b", i)
    assert writer.files._generation == gen + 1
    assert reader.look() == writer.state
    assert reader.loads == loads  # followed, not reloaded
    for i in range(12):  # several more compactions while the reader sleeps
        writer.put(f"c{i % 2}", i)
    assert writer.files._generation >= gen + 3
    assert reader.look() == writer.state == _fresh(tmp_path)


def test_partial_frame_waits_then_applies(tmp_path: Path) -> None:
    writer, reader = KV(tmp_path, compact_min=100), KV(tmp_path)
    writer.put("a", 1)
    assert reader.look() == {"a": 1}
    whole = frame(json.dumps({"put": {"b": 2}}).encode())
    with open(writer.files.path, "ab") as f:  # a writer mid-way: part of its frame visible
        for cut in range(1, len(whole)):
            f.write(whole[cut - 1 : cut])
            f.flush()
            assert reader.look() == {"a": 1}
        f.write(whole[-1:])
    assert reader.look() == {"a": 1, "b": 2}


def test_torn_tail_is_cut_and_an_append_after_it_reads(tmp_path: Path) -> None:
    writer = KV(tmp_path, compact_min=100)
    writer.put("a", 1)
    whole = frame(json.dumps({"put": {"torn": 9}}).encode())
    for cut in range(1, len(whole)):
        d = tmp_path / f"c{cut}"
        _copy(tmp_path, d)
        with open(d / "kv.log", "ab") as f:
            f.write(whole[:cut])
        assert _fresh(d) == {"a": 1}
        other = KV(d, compact_min=100)
        other.put("b", 2)
        other.files.close()
        assert _fresh(d) == {"a": 1, "b": 2}


def test_crash_at_every_step_reads_acknowledged_and_nothing_half(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The directory copied before every write, fsync, truncate and rename of a run of
    changes (with compactions): each copy opens to the state before the change in flight or
    after it, never anything else."""
    live = tmp_path / "live"
    live.mkdir()
    copies: list[tuple[Path, dict[str, int], dict[str, int]]] = []
    phase: dict[str, dict[str, int]] = {"before": {}, "after": {}}

    def snap() -> None:
        d = tmp_path / f"copy{len(copies)}"
        _copy(live, d)
        copies.append((d, dict(phase["before"]), dict(phase["after"])))

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        def inner(*args: Any, **kw: Any) -> Any:
            snap()
            return fn(*args, **kw)

        return inner

    for name in ("write_all", "replace_durably"):
        monkeypatch.setattr(change_log, name, wrap(getattr(change_log, name)))
    for name in ("replace", "fsync", "ftruncate"):
        monkeypatch.setattr(os, name, wrap(getattr(os, name)))
    writer = KV(live, compact_min=2)
    truth: dict[str, int] = {}
    for i in range(12):
        phase["before"] = dict(truth)
        if i % 5 == 4:
            truth.pop(f"k{i % 3}", None)
            phase["after"] = dict(truth)
            writer.drop(f"k{i % 3}")
        else:
            truth[f"k{i % 3}"] = i
            phase["after"] = dict(truth)
            writer.put(f"k{i % 3}", i)
    monkeypatch.undo()
    assert len(copies) > 40
    for d, before, after in copies:
        got = _fresh(d)
        assert got in (before, after), d
        recovered = KV(d, compact_min=2)  # a writer goes on from the crash's files
        recovered.put("post", 1)
        recovered.files.close()
        assert _fresh(d) == {**got, "post": 1}, d


def test_both_pairs_across_one_compaction_hold_every_change(tmp_path: Path) -> None:
    live = tmp_path / "live"
    live.mkdir()
    writer = KV(live, compact_min=2)
    for i in range(3):
        writer.put(f"a{i}", i)
    old_snap, old_log = (live / "kv.json").read_bytes(), (live / "kv.log").read_bytes()
    gen = writer.files._generation
    writer.put("z", 9)
    writer.drop("a0")
    while writer.files._generation == gen:
        writer.put("y", writer.state.get("y", 0) + 1)
    assert writer.files._generation == gen + 1
    writer.put("w", 5)  # an own change of the new log
    new_snap, new_log = (live / "kv.json").read_bytes(), (live / "kv.log").read_bytes()
    for name, snap, lg in (("old-new", old_snap, new_log), ("new-old", new_snap, old_log)):
        d = tmp_path / name
        d.mkdir()
        (d / "kv.json").write_bytes(snap)
        (d / "kv.log").write_bytes(lg)
        got = _fresh(d)
        if name == "old-new":
            assert got == writer.state
        else:  # the old log with the newer snapshot: all but the new log's own change
            assert got == {k: v for k, v in writer.state.items() if k != "w"}


def _ship(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, between: Callable[[ApiKeyStore], None]
) -> tuple[ApiKeyStore, ApiKeyStore]:
    """A shipper reads apikeys.log, then ``between`` runs, then it reads apikeys.json (the
    order ``shipped_files`` gives: each log before its snapshot)."""
    root, standby = tmp_path / "primary", tmp_path / "standby"
    writer = ApiKeyStore(root / "apikeys.json", compact_min=1000)
    for _ in range(3):
        writer.create(ALICE, ["read"])
    no_gateways: Any = SimpleNamespace(gateways=[])
    names = [n for n in shipped_files(no_gateways) if n.startswith("apikeys.")]
    assert names == ["apikeys.log", "apikeys.json"]
    shipper = FileShipper(root, names)
    receiver = FileReceiver(standby)
    for m in shipper.changes():
        receiver.apply(m)
    for _ in range(3):
        writer.create(ALICE, ["read"])
    place = replica_files._place

    def racing(r: Path, name: str) -> Path:
        if name == "apikeys.json":
            between(writer)
        return place(r, name)

    monkeypatch.setattr(replica_files, "_place", racing)
    for m in shipper.changes():
        receiver.apply(m)
    monkeypatch.setattr(replica_files, "_place", place)
    return writer, ApiKeyStore(standby / "apikeys.json")


def test_shipper_racing_one_compaction_leaves_a_sound_pair(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def once(w: ApiKeyStore) -> None:
        with w._files.locked():
            w._files.compact()

    writer, copy = _ship(tmp_path, monkeypatch, once)
    assert _keys(copy) == _keys(writer)


def test_standby_follows_shipped_files_across_compactions(tmp_path: Path) -> None:
    """Every step shipped (logs incrementally, compacted files whole): a standby reader that
    stays open and a fresh one both hold the primary's keys each time."""
    root, standby = tmp_path / "primary", tmp_path / "standby"
    writer = ApiKeyStore(root / "apikeys.json", compact_min=2)
    shipper = FileShipper(root, ["apikeys.json", "apikeys.log"])
    receiver = FileReceiver(standby)
    follower: ApiKeyStore | None = None
    made: list[ApiKey] = []
    for i in range(24):
        if i % 3 == 2:
            writer.revoke(made.pop(0).key)
        else:
            made.append(writer.create(ALICE, ["read"]))
        for m in shipper.changes(budget=300):  # small pieces: files sent whole in parts
            receiver.apply(m)
        while receiver.assembling:
            for m in shipper.changes(budget=300):
                receiver.apply(m)
        if follower is None:
            follower = ApiKeyStore(standby / "apikeys.json", recheck_s=0)
        assert _keys(follower) == _keys(writer) == _keys(ApiKeyStore(standby / "apikeys.json"))
    assert writer._files._generation > 3


def test_snapshot_replaced_by_hand_is_read_whole(tmp_path: Path) -> None:
    writer, reader = KV(tmp_path, compact_min=100), KV(tmp_path)
    writer.put("a", 1)
    assert reader.look() == {"a": 1}
    snap = tmp_path / "kv.json"
    tmp = tmp_path / "edit"
    tmp.write_text(json.dumps({"g": json.loads(snap.read_bytes())["g"], "s": {"hand": 3}}))
    os.replace(tmp, snap)
    assert reader.look() == {"hand": 3, "a": 1}  # the edit, the log's changes over it


def test_damage_while_following_names_file_and_byte(tmp_path: Path) -> None:
    writer, reader = KV(tmp_path, compact_min=100), KV(tmp_path)
    writer.put("a", 1)
    assert reader.look() == {"a": 1}
    at = writer.files.path.stat().st_size
    writer.put("b", 2)
    writer.put("c", 3)
    data = bytearray(writer.files.path.read_bytes())
    data[at + 10] ^= 0x20  # the body of the frame of "b", with "c" after it
    writer.files.path.write_bytes(bytes(data))
    before = _fds(writer.files.path.parent)
    with pytest.raises(ChangeLogError, match=rf"kv\.log: the frame at byte {at} "):
        reader.files.refresh()
    assert reader.files._fd == -1
    assert _fds(writer.files.path.parent) == before - 1


def test_apikeys_fail_closed_on_a_bad_snapshot_crc_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "apikeys.json"
    writer = ApiKeyStore(path, compact_min=2)
    keys = [writer.create(ALICE, ["read"]) for _ in range(4)]
    writer.compact()  # the keys in the snapshot
    reader = ApiKeyStore(path, recheck_s=0)
    assert reader.get(keys[0].key) == keys[0]
    good = path.read_bytes()
    path.write_bytes(good.replace(b'"account":7', b'"account":6', 1))
    with caplog.at_level(logging.ERROR):
        for _ in range(20):
            assert all(reader.find(k.key) is None for k in keys)
    assert len([r for r in caplog.records if "crc32" in r.getMessage()]) == 1
    assert "apikeys.json" in caplog.records[0].getMessage()
    path.write_bytes(good)
    assert reader.get(keys[0].key) == keys[0]


def test_users_kept_on_a_bad_snapshot_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "users.json"
    writer = UserStore(path, compact_min=2)
    for i in range(4):
        writer.add(f"U{i}", "pw", i, n=2)
    writer.compact()  # the users in the snapshot
    reader = UserStore(path)
    assert {u.comp_id for u in reader.users()} == {"U0", "U1", "U2", "U3"}
    data = path.read_bytes()
    path.write_bytes(data.replace(b'"account":1', b'"account":5', 1))
    with caplog.at_level(logging.ERROR):
        for _ in range(10):
            user = reader.get("U1")
            assert user is not None and user.account == 1
    assert len([r for r in caplog.records if "users.json" in r.getMessage()]) == 1


def test_descriptors_after_reloads_follows_compactions_and_errors(tmp_path: Path) -> None:
    before = _fds(tmp_path)
    stores = [KV(tmp_path, compact_min=2) for _ in range(3)]
    for i in range(40):
        stores[i % 3].put(f"k{i % 4}", i)
        for s in stores:
            s.look()
    assert _fds(tmp_path) == before + 3  # each holds its log, nothing else
    snap = tmp_path / "kv.json"
    good = snap.read_bytes()
    snap.write_bytes(b"{not json")
    for s in stores:
        with pytest.raises(ValueError):
            s.files.refresh()
        with pytest.raises(ValueError):
            s.files.refresh()
    assert _fds(tmp_path) == before
    snap.write_bytes(good)
    for s in stores:
        s.look()
        s.files.close()
    assert _fds(tmp_path) == before


def test_user_store_readers_serialise_on_the_rlock(tmp_path: Path) -> None:
    """A thread mid-way in ``_load`` (inside an apply) holds ``_reading``: the loop's read and
    a writer wait for it, and see its result."""
    path = tmp_path / "users.json"
    writer = UserStore(path, compact_min=100)
    writer.add("A", "pw", 1, n=2)
    reader = UserStore(path)
    writer.add("B", "pw", 2, n=2)
    inside, go = threading.Event(), threading.Event()
    applied = reader._files._apply

    def slow(body: bytes) -> None:
        inside.set()
        assert go.wait(2)
        applied(body)

    reader._files._apply = slow
    t = threading.Thread(target=reader.get, args=("B",))
    t.start()
    assert inside.wait(2)
    assert not reader._reading.acquire(blocking=False)
    go.set()
    t.join(2)
    reader._files._apply = applied
    assert reader._reading.acquire(blocking=False)
    reader._reading.release()
    assert reader.get("B") is not None


# -- faults -------------------------------------------------------------------------------------
