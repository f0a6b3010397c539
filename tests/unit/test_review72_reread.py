"""A hostile review (the 72nd) of ``b327602..fa7d419``: the mending of the private stream's
refusal, ``TransferKeys.restore`` and ``cluster.py`` (ba47e3d), the disk work (44c69a8, and
54c94de's ``journal.archive_dir``), the REST differences from Binance documented (a17dbd2)
and, most of all, fa7d419: the FIX store's ``unsent_from`` watermark (``store.py``: a 4th
u64 in ``seqnums``; set by ``park``, set to 1 by a ``reset`` that carried parked messages,
advanced by ``outbound(..., taken=True)`` from ``gap_recovery.py``'s resend chunks; a trim
never cuts from ``min(parked_from, unsent_from, next_out)``), the trim's error handling and
the audit log's reopen kept on the old file.

What holds: a refusal of the private stream asked as a close is the middleware's alone
(``rest.py`` returns ``refuse_in_band``'s WebSocketResponse as is); ``TransferKeys.restore``
builds the same keys in the same order (a duplicate key is kept once, as ``_used`` kept it);
a damaged cluster file reads as its characters and is then refused as another id. An older
``seqnums`` (16 or 24 bytes) reads as before, a parked one as unsent too; an older build
reads the first 24 bytes of a 32-byte file (``pread`` of its own size), so a downgrade
works, and nothing but ``store.py`` reads ``seqnums``. A crash after a reset (``carried``)
parks again under ``unsent_from`` 1. ``journal.archive_dir`` is refused relative, is used by
``ringex replay --archive``, the database writer and the session-end search alike
(``topology.journal_archive_dir``), and a move across file systems is a durable copy, then
the unlink (an interrupted run finishes when run again). A ResendRequest from a later seq
than ``unsent_from`` never advances it: conservative (nothing cut). The README's Binance
paragraph matches the code (``keep_done`` 10,000, STP ``NONE``), and ``store_max_mb``'s
default (0) is what the README and the sample config say.

Not pinned: a chunk counts as sent once taken (``unsent_from`` saved before the socket has
it), so a drop or crash right after loses it as it would a live message, to a trim only
past half the cap of newer ones; ``store.py``'s module docstring still calls ``seqnums`` 24
bytes.

Faults, each found on the code reviewed (its docstring says what is wrong and what a
correct exchange does). The store's (1 to 6 and 8) went with the trim, withdrawn for them
(README, Disk: a store grows until its session resets its numbers); the tests of 7, 9 and
10 below failed on the code reviewed and pass since their fixes (the same session's
commits: the descriptor closed, ``<archive_dir>/<instance>`` and the journal's own
directory refused, the help's text):

1. ``outbound(..., taken=True)`` advances ``unsent_from`` *before* its ``flush``: with a
   message stored since the last flush (a Heartbeat, a fill, during a resend), that flush
   trims up to the block of the new ``unsent_from``, cutting the chunk being read; it goes
   out as a GapFill, never delivered (``store.py:214-217``).
2. ``unsent_from`` stops at ``end + 1`` when a resend's last chunk is not the newest
   message (anything sent while the resend was under way, or an explicit EndSeqNo): that
   message went live, never through a chunk, so the mark never moves again and a store with
   ``store_max_mb`` grows without bound until a reset (``store.py:214-215``).
3. A resetting logon that carried parked messages sets ``unsent_from`` to 1, the Logon's
   own seq; the carried ones are queued from 2, so ``begin <= unsent_from`` never holds and
   the store is never trimmed again until a reset with nothing parked (``store.py:252``).
4. A reconnect during the resend of what was parked, then a logon with ResetSeqNumFlag:
   ``unsent()`` carries only ``parked_from`` (cleared by the first logon), so the messages
   ``unsent_from`` still marks as never sent are truncated with the rest
   (``store.py:207-209``).
5. A trim that fails after its rename (``fsync_dir``; or ``open`` of the new file) leaves
   the store writing the unlinked old inode with the old index: every later message,
   parked ones included, is lost to resends and restarts (``store.py:266-271, 307-314``).
6. A trim failing on a full disk logs an error at every flush (a loop pass), while the
   audit log says so once (``store.py:270``).
7. An audit reopen that fails after ``os.open`` (``fchmod`` EPERM on a file of another
   owner; the torn-line check) leaks the descriptor, once a flush (``audit.py:86-91``).
8. A downgrade, then the upgrade again: the older build rewrites 24 bytes and leaves a
   stale ``unsent_from`` 0 beside a new ``parked_from``; the next logon clears the parked
   mark and the trim cuts what was parked (``store.py:95-99``).
9. ``journal.archive_dir`` is used as is, not per instance: two instances given the same
   path (the README's second instance on one host "every path is under var/<instance>/")
   collide (``FileExistsError``), and an ``archive_dir`` naming the journal itself deletes
   segments (``journal_writer.py:439-443``).
10. ``ringex replay --help`` still says the segments go to ``var/<instance>/journal-archive``
    (``cli.py:535``).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
from pathlib import Path

import msgspec
import pytest

from config.schema import JournalConfig
from procs.cli import build_parser
from procs.common.journal import list_segments
from procs.common.journal_archive import archive_segments_before
from procs.common.topology import journal_archive_dir, journal_dir
from procs.gateway.audit import AuditLog
from tests.unit.test_review69_disk import _cfg, _journal
from tests.unit.test_review173_change_log import _fds

# -- faults -------------------------------------------------------------------------------------


def test_an_audit_reopen_that_fails_leaks_no_descriptor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """logrotate renames ``audit.log`` and creates a new one it owns (``create 0660 root
    ringex``: the gateway may write it, not chmod it). Each ``flush`` sees a new inode and
    calls ``_open``: ``os.open`` succeeds, ``os.fchmod`` fails with EPERM, and the raw
    descriptor is never closed (``audit.py:86-91``); the handler keeps the old file, and the
    next flush (a loop pass) does it again. 20 flushes, 20 descriptors: at the default
    limit the gateway is out of them within seconds (no accept, no store, no journal read).
    The torn-line check (``_torn``) and its newline write leak the same way.

    A correct ``_open`` closes what it opened when anything after the open fails. Expected:
    no descriptor more after 20 failing flushes; actual 20."""
    path = tmp_path / "gw" / "audit.log"
    audit = AuditLog(path)
    try:
        audit.record(1, True, "ALICE", b"8=FIX.4.4\x0135=0\x01")
        audit.flush()
        path.rename(path.with_name("audit.log.1"))
        path.write_bytes(b"")  # logrotate's create

        def denied(fd: int, mode: int) -> None:
            raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))

        before = _fds(tmp_path)  # the test's own: another of the worker's may close meanwhile
        with monkeypatch.context() as m:
            m.setattr(os, "fchmod", denied)
            for k in range(20):
                audit.record(2 + k, True, "ALICE", b"8=FIX.4.4\x0135=0\x01")
                audit.flush()
        after = _fds(tmp_path)
        assert after == before, f"{after - before} descriptors leaked"
    finally:
        with contextlib.suppress(OSError):
            audit.close()


def test_two_instances_may_share_an_archive_volume(tmp_path: Path) -> None:
    """``journal.archive_dir`` is "an absolute path: another volume" (README, Disk), and
    ``topology.journal_archive_dir`` returns it as is, while the default is per instance
    (``var/<instance>/journal-archive``). A second instance on the host (README, Hot
    standby: "with its own instance ... every path is under var/<instance>/") or any two
    instances given the same archive volume archive into one directory: segment names are
    their first seq, so the second one's ``ringex replay --archive`` stops on
    ``FileExistsError`` (``journal_writer.py:439-445``); where names differ, each one's
    database writer and session-end search read the other's segments as their own history.

    A correct exchange keeps each instance's archive apart (``<archive_dir>/<instance>``)
    or refuses a shared one. Expected: both archive; actual the second raises."""
    shared = str(tmp_path / "archive-volume")
    cfgs = []
    for name in ("a", "b"):
        base = msgspec.structs.replace(_cfg(tmp_path / name), instance=f"r72{name}")
        cfg = msgspec.structs.replace(base, journal=JournalConfig(archive_dir=shared))
        _journal(cfg, 50)
        cfgs.append(cfg)
    for cfg in cfgs:
        moved = archive_segments_before(journal_dir(cfg), 31, journal_archive_dir(cfg))
        assert len(moved) == 3


def test_an_archive_dir_naming_the_journal_deletes_nothing(tmp_path: Path) -> None:
    """``journal.archive_dir`` is checked only for a leading "/". Set to the journal's own
    directory (an absolute path to ``var/<instance>/journal``, or a link to it),
    ``archive_segments_before`` finds each ``target`` existing and equal to itself
    (``filecmp.cmp(path, path)``: the branch for "a run killed before its unlink") and
    unlinks it (``journal_writer.py:439-443``): the segments are gone from disk, not
    archived, and ``replay --archive`` prints "archived 3 segment(s)".

    A correct exchange refuses an archive directory that is the journal's (``samefile``),
    at load or before moving anything. Expected: every entry still on disk; actual 30 of
    50 gone."""
    cfg = _cfg(tmp_path)
    _journal(cfg, 50)
    directory = journal_dir(cfg)
    cfg = msgspec.structs.replace(cfg, journal=JournalConfig(archive_dir=str(directory.resolve())))
    before = len(list_segments(directory))
    with pytest.raises(ValueError, match="the journal's own directory"):  # the function's guard
        archive_segments_before(directory, 31, directory)
    assert len(list_segments(directory)) == before
    # since the fix the config's path takes the instance's name under it: moved, not lost
    archive = journal_archive_dir(cfg)
    assert archive == directory.resolve() / cfg.instance
    archive_segments_before(directory, 31, archive)
    assert len(list_segments(directory)) + len(list_segments(archive)) == before


def test_replay_help_names_the_archive_dir() -> None:
    """54c94de made the archive's place ``journal.archive_dir``; ``ringex replay --help``
    (``cli.py:535``) still says the segments go "to var/<instance>/journal-archive". An
    operator who set the key reads that it is ignored. Expected: the help names
    ``journal.archive_dir``."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert "archive_dir" in sub.choices["replay"].format_help()
