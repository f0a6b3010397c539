"""A hostile review (96) of what the processes do when the disk fails under them: a disk
full (ENOSPC, for real: a small tmpfs filled up) or an fsync that reports EIO, on the
journal, the snapshot stores and a FIX session's store.

Faults, fixed since (each test's docstring says what was wrong and what a correct exchange
does):

1. ``MessageStore.flush`` (``procs/gateway/store.py:251-254``) writes the pending entries
   through a buffered file and keeps them pending when the write fails; a disk that fills
   up mid-write leaves the entries' first bytes in ``messages``, and the next flush (the
   gateway goes on: a failure in a connection's callback closes that connection only, and
   the store stays cached for the session's next logon) appends them whole after that torn
   part. Every entry from there on is read back shifted: a resend serves a garbled message
   and stops short, and a restart's ``_load`` indexes the same garbage.
2. ``replace_durably`` (``procs/common/durable.py:62-69``) leaves its temporary file behind
   when the write fails. A ``SnapshotStore`` names it after the snapshot's seq
   (``<seq>.tmp``), which nothing removes: a snapshot that does not fit the disk keeps the
   space it took, and the router's journal, on the same disk, then has none left.

Checked and found correct (the passing tests below): the journal writer on a disk that
fills mid-batch refuses every later append, and a reopen cuts the torn entry and goes on
at the next seq of the whole ones; an fsync that reports EIO is never retried and trusted
(``durable_seq`` stays, ``sync`` raises from then on, the close syncs nothing).
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from procs.common.journal import JournalError, JournalReader
from procs.common.journal_writer import FsyncPolicy, JournalWriter
from procs.common.snapshots import SnapshotStore
from procs.gateway.store import MessageStore

SLOT = 152
SCHEMA = 7


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted at ``tmp_path / "disk"`` (root only), unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill ``disk`` up, then give ``leave`` bytes (whole pages of them) back."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 65536)
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 512)
        os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave))
    finally:
        os.close(fd)
    return filler


def free_bytes(disk: Path) -> int:
    st = os.statvfs(disk)
    return st.f_bavail * st.f_frsize


def fix_message(seq: int, text_len: int) -> bytes:
    return (
        b"8=FIX.4.4\x019=5\x0135=8\x0149=EX\x0156=ALICE\x0134=%d\x0152=20260101-00:00:00\x01"
        b"58=%s\x0110=000\x01" % (seq, b"r" * text_len)
    )


# -- 1. a FIX store's flush that met a full disk, tried again ------------------------------


def test_a_store_flush_cut_short_by_a_full_disk_and_tried_again_keeps_every_message(
    small_disk: Path,
) -> None:
    """A session's store has three messages; the disk fills, with a few KB left; four
    reports of 3 KB each are stored and flushed: the write stops short (ENOSPC) after the
    first ones' bytes reached ``messages``. The gateway goes on: ``Connection.write`` raised
    inside ``data_received`` (uvloop closes that transport and logs it), or a logon's
    ``OSError`` is caught (``connections.py:207``), and ``GatewayServer.store`` keeps the
    store object cached for the next logon, with the four entries still pending. Room comes
    back and the next flush writes the four again, after the torn bytes. Seen: ``outbound``
    (a ResendRequest's answer) gives seqs 1-6, not 7, seq 6's raw being 3 KB of the torn
    copy glued onto the retried entries' first bytes (a garbled message sent as PossDup),
    and a restart's store (``_load``) indexes the same. Expected: every message 1-7 as it
    was stored. Fix: write the entries with ``write_all`` on a raw descriptor and, when it
    fails, cut the file back to its size before the write (``os.ftruncate(fd, size)``)
    before keeping them pending, as ``SeenLog.append`` and ``OrderLog.write`` do."""
    directory = small_disk / "sessions" / "ALICE"
    store = MessageStore(directory)
    sent = {seq: fix_message(seq, 100) for seq in (1, 2, 3)}
    for seq, raw in sent.items():
        store.add_outbound(seq, raw)
    store.flush()
    before = (directory / "messages").stat().st_size
    filler = fill(small_disk, leave=6000)
    for seq in (4, 5, 6, 7):
        sent[seq] = fix_message(seq, 3000)
        store.add_outbound(seq, sent[seq])
    with pytest.raises(OSError) as failed:
        store.flush()
    assert failed.value.errno == errno.ENOSPC
    assert (directory / "messages").stat().st_size == before, "the torn part is cut back"
    filler.unlink()  # room again (a log rotated away, say)
    store.flush()  # the session's next output
    live = dict(store.outbound(1, 7))
    store.close()
    again = MessageStore(directory)
    restarted = dict(again.outbound(1, 7))
    again.close()
    assert sorted(live) == sorted(sent), f"the live store serves seqs {sorted(live)}"
    assert sorted(restarted) == sorted(sent), f"after a restart: seqs {sorted(restarted)}"
    assert all(restarted[seq] == raw for seq, raw in sent.items()), "a garbled message"


# -- 2. a snapshot that does not fit keeps the space it took -------------------------------


def test_a_snapshot_that_does_not_fit_leaves_the_journal_its_room(small_disk: Path) -> None:
    """The journal and the snapshots share a disk (``var/<instance>/``, the default). The
    router's snapshot child (``recovery.py:501``) or a matcher (``matcher/main.py:214``)
    saves a snapshot larger than the space left: ``replace_durably`` raises ENOSPC after
    filling the disk with ``<seq>.tmp``, and neither it nor ``SnapshotStore`` (whose
    ``_paths`` reads only ``*.snap``) ever removes it; the next snapshot, at another seq,
    makes another. Seen: the snapshot directory keeps ``00000000000000000020.tmp`` and the
    disk has 0 bytes free, so the journal, which had room for 1,000 more commands before
    the snapshot was tried, takes none: ENOSPC, and the router stops (a failed snapshot,
    an optimisation, stopped the exchange). Expected: the failed save removes its temp file
    (the space it took is free again) and the journal appends. Fix: in ``replace_durably``,
    ``tmp.unlink(missing_ok=True)`` on any failure before the rename (as ``_roll`` does for
    a segment); and have ``SnapshotStore.save`` remove stale ``*.tmp`` files."""
    journal = JournalWriter(small_disk / "journal", slot_size=SLOT, schema_id=SCHEMA)
    journal.append(1, bytes(SLOT), 1)
    store = SnapshotStore(small_disk / "snapshots")
    store.save(1, b"\x91\x01")
    fill(small_disk, leave=256 * 1024)
    assert free_bytes(small_disk) >= 1000 * (SLOT + 16), "precondition: room for the journal"
    with pytest.raises(OSError) as failed:
        store.save(20, os.urandom(400 * 1024))  # larger than what is left
    assert failed.value.errno == errno.ENOSPC
    assert store.latest() == (1, b"\x91\x01")  # (the one before stands)
    leftovers = sorted(p.name for p in store.directory.iterdir() if not p.name.endswith(".snap"))
    try:
        journal.append(2, bytes(SLOT * 1000), 1000)
        appended = True
    except OSError:
        appended = False
    finally:
        journal.close()
    assert leftovers == [], f"left in {store.directory}: {leftovers}"
    assert appended, "the journal had no room left after a snapshot that did not fit"


# -- checked and found correct --------------------------------------------------------------


def test_checked_a_journal_batch_cut_by_a_full_disk_is_refused_and_cut_at_the_reopen(
    small_disk: Path,
) -> None:
    """The disk fills in the middle of a batch's one write: ``append`` raises ENOSPC and
    ``durable_seq`` stays at the last fsynced seq; every later append is refused (the writer
    is unusable, ``failed`` says why), and so is ``sync``. The reopen (the restart, room
    back) cuts the torn entry and goes on at the seq after the whole ones, each of which
    reads back with its image."""
    directory = small_disk / "journal"
    with JournalWriter(directory, slot_size=SLOT, schema_id=SCHEMA) as writer:
        writer.append(1, bytes(range(SLOT)) * 10, 10)
        filler = fill(small_disk, leave=20_000)
        images = b"".join(bytes([k % 251]) * SLOT for k in range(2000))
        with pytest.raises(OSError) as failed:
            writer.append(11, images, 2000)
        assert failed.value.errno == errno.ENOSPC
        assert writer.durable_seq == 10
        assert writer.failed is failed.value
        with pytest.raises(JournalError):
            writer.append(writer.next_seq, bytes(SLOT), 1)
        with pytest.raises(JournalError):
            writer.sync()
    filler.unlink()
    with JournalWriter(directory, slot_size=SLOT, schema_id=SCHEMA) as reopened:
        last = reopened.next_seq - 1
        assert 10 <= last < 2010
        reopened.append(last + 1, bytes(SLOT), 1)
    reader = JournalReader(directory, slot_size=SLOT, schema_id=SCHEMA)
    entries = list(reader.entries(11))
    assert [seq for seq, _ in entries] == list(range(11, last + 2))
    for seq, image in entries[:-1]:
        assert bytes(image) == images[(seq - 11) * SLOT : (seq - 10) * SLOT]


@pytest.mark.parametrize("fsync", ["batch", "interval"])
def test_checked_a_failed_fsync_is_never_retried_and_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsync: FsyncPolicy
) -> None:
    """``os.fsync`` reports EIO once (Linux then marks the pages clean: a second fsync
    returns 0 without writing them). The writer takes nothing more as durable: the failing
    call raises, ``durable_seq`` stays, and ``sync``, ``maybe_sync`` and ``append`` raise
    from then on, whatever the next fsync would say; its close syncs nothing."""
    ticks = [0]
    writer = JournalWriter(
        tmp_path / "journal",
        slot_size=SLOT,
        schema_id=SCHEMA,
        fsync=fsync,
        fsync_interval_ms=1,
        clock=lambda: ticks[0],
    )
    writer.append(1, bytes(SLOT), 1)
    writer.sync()
    real, calls = os.fsync, []

    def eio_once(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(fd)

    monkeypatch.setattr(os, "fsync", eio_once)
    ticks[0] = 10**9
    with pytest.raises(OSError):
        writer.append(2, bytes(SLOT), 1)  # "batch": its fsync; "interval": the one due
    assert writer.durable_seq == 1
    for call in (writer.sync, writer.maybe_sync, lambda: writer.append(3, bytes(SLOT), 1)):
        with pytest.raises(JournalError):
            call()
    writer.close()
    assert len(calls) == 1, "the close fsynced again and could take the lost pages as durable"
