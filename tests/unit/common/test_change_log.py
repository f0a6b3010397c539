"""The change log beside a store's snapshot (``procs/common/change_log.py``): what it reads,
when, and that every pair of files a crash or a standby can hold gives the same records."""

from __future__ import annotations

import itertools
import os
import random
import shutil
from pathlib import Path

import msgspec
import pytest

from procs.common.apikeys import ApiKey, ApiKeyStore
from procs.common.change_log import MAGIC, ChangeLogError, LoggedSnapshot
from procs.common.users import User

ALICE = User("ALICE", 7, 1, "00", "00")


class Model:
    """A store of str -> int on a LoggedSnapshot, counting its whole reads."""

    def __init__(self, path: Path, compact_min: int = 2) -> None:
        self.records: dict[str, int] = {}
        self.loads = 0
        self.files = LoggedSnapshot(
            path,
            path.with_name(path.name + ".lock"),
            load=self._load,
            apply=self._apply,
            dump=lambda generation: msgspec.json.encode((self.records, generation)),
            size=lambda: len(self.records),
            compact_min=compact_min,
        )
        self.files.reload()

    def _load(self, data: bytes | None) -> int:
        self.loads += 1
        if data is None:
            self.records = {}
            return 0
        self.records, generation = msgspec.json.decode(data, type=tuple[dict[str, int], int])
        return generation

    def _apply(self, body: bytes) -> None:
        put, drop = msgspec.json.decode(body, type=tuple[dict[str, int], list[str]])
        for key in drop:
            self.records.pop(key, None)
        self.records.update(put)

    def put(self, key: str, value: int) -> None:
        with self.files.locked():
            self.files.append(msgspec.json.encode(({key: value}, [])))

    def drop(self, key: str) -> None:
        with self.files.locked():
            self.files.append(msgspec.json.encode(({}, [key])))


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "records.json"


def test_a_reader_reads_what_the_log_gained_and_follows_compactions(path: Path) -> None:
    """Appends and compactions elsewhere are read from the log: the snapshot is read once, at
    the start, however many compactions pass (one look after each)."""
    writer = Model(path)
    writer.put("a", 0)
    reader = Model(path)
    for i in range(40):
        writer.put(f"k{i % 7}", i)
        if i % 3 == 0:
            writer.drop(f"k{(i + 2) % 7}")
        reader.files.refresh()
        assert reader.records == writer.records
    assert reader.loads == 1
    assert reader.files._generation > 5  # it followed that many compactions


def test_a_reader_that_missed_a_generation_reads_everything_again(path: Path) -> None:
    writer, reader = Model(path), Model(path)
    writer.put("a", 1)
    reader.files.refresh()
    for i in range(20):  # several compactions between two looks
        writer.put(f"k{i}", i)
    reader.files.refresh()
    assert reader.records == writer.records and reader.loads == 2


def test_every_pair_of_files_a_crash_or_a_standby_holds_has_every_change(
    path: Path, tmp_path: Path
) -> None:
    """The snapshot and the log as they stood before and after each change: any of the four
    pairs reads as the newer state or the older (a pair across one compaction: the newer)."""
    rng = random.Random(7)
    writer = Model(path, compact_min=3)
    states: list[tuple[bytes, bytes, dict[str, int]]] = []
    for i in range(60):
        if rng.random() < 0.3 and writer.records:
            writer.drop(rng.choice(sorted(writer.records)))
        else:
            writer.put(f"k{rng.randrange(12)}", i)
        states.append(
            (path.read_bytes(), path.with_suffix(".log").read_bytes(), dict(writer.records))
        )
    copy = tmp_path / "copy" / "records.json"
    copy.parent.mkdir()

    def read(snap: bytes, log: bytes) -> dict[str, int]:
        copy.write_bytes(snap)
        copy.with_suffix(".log").write_bytes(log)
        return Model(copy).records

    compactions = 0
    for (snap0, log0, was), (snap1, log1, now) in itertools.pairwise(states):
        compacted = snap0 != snap1
        compactions += compacted
        assert read(snap1, log1) == now
        assert read(snap0, log1) == now  # the bridge: the old log's changes
        assert read(snap1, log0) == (now if compacted else was)
    assert compactions > 5


def test_a_torn_tail_is_cut_by_the_next_writer_and_damage_is_named(path: Path) -> None:
    writer = Model(path, compact_min=100)
    writer.put("a", 1)
    log = path.with_suffix(".log")
    whole = log.stat().st_size
    with log.open("ab") as f:
        f.write(b"\x40\x00\x00\x00\x01\x02")  # a crash mid-append: part of a header
    assert Model(path).records == {"a": 1}  # read as torn: cut
    writer.put("b", 2)
    writer.put("c", 3)
    data = log.read_bytes()
    assert data[whole : whole + 6] != b"\x40\x00\x00\x00\x01\x02"
    assert Model(path).records == {"a": 1, "b": 2, "c": 3}
    flipped = bytearray(data)
    flipped[whole + 10] ^= 0x01  # inside b's body: fails its CRC, with c after it
    log.write_bytes(bytes(flipped))
    with pytest.raises(ChangeLogError, match=rf"{log}: the frame at byte {whole}"):
        Model(path)


def test_a_log_that_is_not_one_is_refused_naming_it(path: Path) -> None:
    Model(path).put("a", 1)
    log = path.with_suffix(".log")
    log.write_bytes(b"{}" + log.read_bytes()[len(MAGIC) :])
    with pytest.raises(ChangeLogError, match=f"{log}: not a change log"):
        Model(path)


def test_a_write_that_fails_applies_nothing_and_leaves_the_log_as_it_was(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = Model(path, compact_min=100)
    writer.put("a", 1)
    log = path.with_suffix(".log")
    before = log.read_bytes()
    real = os.write

    def short(fd: int, data: bytes | memoryview) -> int:
        real(fd, bytes(data)[:3])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", short)
    with pytest.raises(OSError, match="No space"):
        writer.put("b", 2)
    monkeypatch.undo()
    assert writer.records == {"a": 1} and log.read_bytes() == before
    writer.put("c", 3)
    assert Model(path).records == {"a": 1, "c": 3}


def test_no_snapshot_means_no_records_and_the_log_is_not_read(path: Path) -> None:
    """A store always writes its snapshot before its first log; one removed was meant to
    hold nothing (apikeys.json removed: no key is valid)."""
    writer, reader = Model(path), Model(path)
    writer.put("a", 1)
    reader.files.refresh()
    path.unlink()
    reader.files.refresh()
    assert reader.records == {}
    writer.put("b", 2)  # a writer starts again from nothing
    reader.files.refresh()
    assert reader.records == {"b": 2} == Model(path).records


def test_descriptors_are_not_left_behind(path: Path) -> None:
    fds = len(os.listdir("/proc/self/fd"))
    writer, reader = Model(path), Model(path)
    for i in range(30):
        writer.put(f"k{i % 5}", i)
        reader.files.refresh()
    reader.files.close()
    writer.files.close()
    assert len(os.listdir("/proc/self/fd")) == fds


def test_api_keys_through_many_compactions_and_an_older_copy(path: Path, tmp_path: Path) -> None:
    """Keys made and revoked by two stores (two gateways) through compactions; a reader and
    a copy of the files taken midway (a standby) agree with the writers."""
    one, two = ApiKeyStore(path, 100, compact_min=2), ApiKeyStore(path, 100, compact_min=2)
    reader = ApiKeyStore(path, recheck_s=0.0)
    made: dict[str, ApiKey] = {}
    for i in range(30):
        key = (one if i % 2 else two).create(ALICE, "read", label=str(i))
        made[key.key] = key
        if i % 4 == 3:
            gone = sorted(made)[0]
            assert two.revoke(gone)
            del made[gone]
        if i == 15:
            shutil.copytree(path.parent, tmp_path / "standby")
            held = dict(made)
    assert {k.key: k for k in reader.all_keys()} == made
    assert {k.key: k for k in ApiKeyStore(tmp_path / "standby" / path.name).all_keys()} == held
    labels = [int(k.label) for k in one.keys_of("ALICE")]
    assert labels == sorted(labels)  # oldest first, in the order made
