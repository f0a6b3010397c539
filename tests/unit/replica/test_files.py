"""Shipping the gateways' state files: growth is sent from where the copy ends, a replaced
file whole, and the standby writes only paths of the shipped kinds."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from config.edges import GatewayConfig
from config.schema import RingexConfig
from procs.common import durable
from procs.common.exec_ids import FILE_NAME as EXEC_IDS
from procs.common.exec_ids import ExecIdBlocks
from procs.replica import files
from procs.replica.files import FileReceiver, FileShipper, shipped_files
from procs.replica.wire import StateFile


def sync(shipper: FileShipper, receiver: FileReceiver, budget: int = 1 << 20) -> int:
    sent = shipper.changes(budget)
    for message in sent:
        receiver.apply(message)
    return len(sent)


def test_growth_replacement_and_small_budgets_reach_the_copy(tmp_path: Path) -> None:
    primary, standby = tmp_path / "p", tmp_path / "s"
    (primary / "gw1").mkdir(parents=True)
    names = ["users.json", "apikeys.json", "gw1/orders.log"]
    shipper, receiver = FileShipper(primary, names), FileReceiver(standby)
    log, users = primary / "gw1" / "orders.log", primary / "users.json"
    log.write_bytes(b"frame-1|")
    users.write_text('[{"comp_id": "A"}]')
    assert sync(shipper, receiver) == 2  # apikeys.json does not exist: nothing to send
    assert sync(shipper, receiver) == 0  # nothing new
    with log.open("ab") as f:
        f.write(b"frame-2|" * 10)
    while sync(shipper, receiver, budget=7):  # a few bytes at a time
        pass
    assert (standby / "gw1" / "orders.log").read_bytes() == log.read_bytes()
    aside = primary / "gw1" / "orders.compact"  # a compaction: a new file renamed over
    aside.write_bytes(b"live|")
    os.replace(aside, log)
    users.write_text('[{"comp_id": "B"}]')
    sync(shipper, receiver)
    assert (standby / "gw1" / "orders.log").read_bytes() == b"live|"
    assert (standby / "users.json").read_text() == '[{"comp_id": "B"}]'
    assert (standby / "users.json").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("path", ["../etc/passwd", "gw1/../../x", "gw1/sessions/x", "/abs"])
def test_the_standby_refuses_other_paths(tmp_path: Path, path: str) -> None:
    with pytest.raises(ValueError, match="not a gateway state file"):
        FileReceiver(tmp_path).apply(StateFile(path, 0, b"x", True))


def test_a_file_rewritten_on_the_same_inode_is_sent_whole(tmp_path: Path) -> None:
    """Inode numbers are reused: a file replaced twice between two looks can come back with
    the copy's inode and a larger size. Only a log whose sent bytes are unchanged grows."""
    primary, standby = tmp_path / "p", tmp_path / "s"
    (primary / "gw1").mkdir(parents=True)
    shipper = FileShipper(primary, ["users.json", "gw1/orders.log"])
    receiver = FileReceiver(standby)
    users, log = primary / "users.json", primary / "gw1" / "orders.log"
    users.write_text('[{"comp_id": "B"}]')
    log.write_bytes(b"A" * 100)
    sync(shipper, receiver)
    with users.open("r+b") as f:  # same inode, longer, another beginning
        f.write(b'[{"comp_id": "A"}, {"comp_id": "B"}]')
    with log.open("r+b") as f:
        f.write(b"B" * 150)
    sent = shipper.changes()
    assert [(m.path, m.offset, m.reset) for m in sent] == [
        ("users.json", 0, True),
        ("gw1/orders.log", 0, True),
    ]
    for message in sent:
        receiver.apply(message)
    with log.open("ab") as f:  # a true append goes from where the copy ends
        f.write(b"C" * 10)
    (grown,) = shipper.changes()
    assert (grown.offset, grown.reset, grown.data) == (150, False, b"C" * 10)
    receiver.apply(grown)
    receiver.sync()
    assert (standby / "users.json").read_bytes() == users.read_bytes()
    assert (standby / "gw1" / "orders.log").read_bytes() == log.read_bytes()


def test_the_execid_mark_reaches_the_standby_and_a_promoted_counter_starts_above_it(
    tmp_path: Path,
) -> None:
    """A promoted gateway's counter ExecIDs start above every id the primary reserved, even
    with the standby's clock behind the primary's (``procs/common/exec_ids.py``)."""
    cfg = RingexConfig(
        instance="x", var_dir=str(tmp_path), gateways=[GatewayConfig(name="gw1", id=1)]
    )
    assert "gw1/exec-ids" in shipped_files(cfg)
    primary, standby = tmp_path / "p", tmp_path / "s"
    blocks = ExecIdBlocks(primary / "gw1" / EXEC_IDS, block=1000)
    far_ahead = time.time_ns() + 10**15  # the primary's clock, a few days ahead
    blocks.reserve(far_ahead)
    shipper, receiver = FileShipper(primary, shipped_files(cfg)), FileReceiver(standby)
    sync(shipper, receiver)
    assert ExecIdBlocks(standby / "gw1" / EXEC_IDS).start() == far_ahead + 1000
    blocks.reserve(far_ahead + 1000)  # rewritten whole (a rename): sent whole again
    sync(shipper, receiver)
    assert ExecIdBlocks(standby / "gw1" / EXEC_IDS).start() == far_ahead + 2000


def test_a_piece_written_in_part_is_written_whole_or_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``pwrite`` may write less than asked (a disk or a quota filling up) and say so only in
    its count: the receiver wrote once and took a file sent whole as complete, replacing the
    standby's good copy with a cut one (a review, 2026-12-03). It writes on until whole; one
    that writes nothing is an ``OSError`` (the reconnect path), the old copy kept."""
    (tmp_path / "users.json").write_bytes(b"old whole copy")
    receiver = FileReceiver(tmp_path)
    real = os.pwrite
    monkeypatch.setattr(os, "pwrite", lambda fd, data, at: real(fd, bytes(data[:100]), at))
    new = b"N" * 4000 + b"END"
    receiver.apply(StateFile("users.json", 0, new, True, len(new)))
    assert (tmp_path / "users.json").read_bytes() == new
    monkeypatch.setattr(os, "pwrite", lambda fd, data, at: 0)
    with pytest.raises(OSError, match="wrote none"):
        receiver.apply(StateFile("users.json", 0, b"cut", True, 3))
    assert (tmp_path / "users.json").read_bytes() == new


def test_growth_of_a_held_log_is_synced_once_it_is_released(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A users log shipped two generations past the standby's snapshot is held aside
    (``users.log.held``, review 182) and grows there; when its snapshot comes it is renamed
    into place. ``sync`` then fsynced the held name, gone, and never the log: the frame was
    acknowledged with the growth in the page cache alone (a review, 2026-12-03)."""
    past = {"now": True}
    monkeypatch.setattr(files, "log_past_snapshot", lambda log, snapshot: past["now"])
    synced: list[str] = []
    real_fsync = durable.fsync_file

    def fsync_file(path: Path) -> None:
        synced.append(path.name)
        real_fsync(path)

    monkeypatch.setattr(files, "fsync_file", fsync_file)
    (tmp_path / "users.json").write_bytes(b"SNAPSHOT-G")
    (tmp_path / "users.log").write_bytes(b"LOG-G\n")
    receiver = FileReceiver(tmp_path)
    log = b"LOG-G+2 first\n"
    receiver.apply(StateFile("users.log", 0, log, True, len(log)))  # held aside
    grown = b"LOG-G+2 user added\n"
    receiver.apply(StateFile("users.log", len(log), grown, False, 0))  # grows where held
    past["now"] = False
    receiver.apply(StateFile("users.json", 0, b"SNAPSHOT-G+2", True, 12))  # releases it
    assert (tmp_path / "users.log").read_bytes() == log + grown
    synced.clear()
    receiver.sync()  # what the standby does before it acknowledges a frame
    assert "users.log" in synced, synced
