"""Review 82: a hostile reread of 6dad043 (``RestConnections._fit_connections``: n connections
take n + 2 min(n, max_streams) descriptors, fitted; ``DbWriter._durable_now``: a torn tail
cut under the journal's lock before the fsync and the last seq).

What holds (looked at; pinned where said): the fit's arithmetic is right at its boundaries:
room exactly 3 x ``max_streams`` gives ``max_streams`` connections by either branch, one
less gives ``room // 3``; ``max_streams`` above ``max_connections`` only ever takes the
``room // 3`` branch, which is ``max_connections`` when every descriptor asked for is
granted; ``connections_room`` under RLIM_INFINITY returns what was asked, so the port keeps
its configured limit; room below 3 (or below the FIX sessions' 4 each) gives the documented
``max(1, ...)`` (pinned). ``PrivateStreams._admit``'s per-gateway ``max_streams`` check
agrees with the fit: a stream is a connection of the port (the fast lane hands an upgrade to
aiohttp, which counts it), so where fewer connections than ``max_streams`` fit the streams
are bounded by the connections, and where more fit the 2 x ``max_streams`` locks were set
aside. ``_durable_now``'s ``_repair`` runs on ``self.reader`` (``rules=None``, so a last
segment of other rules is looked at, never refused, as the router's own open does; another
schema id is yielded; another slot size is refused, as a router's open refuses it), with
the archive: ``_tail`` looks only at the live directory's last segment (an archive run never
moves the last one, ``cut_after`` keeps the first), so no archived segment is cut (pinned).
Damage that is not a torn tail raises ``JournalCorruptError`` as ``last_seq()`` did before
6dad043 (the same ``_tail``), nothing is truncated, the lock is given back by ``with``
(pinned), and ``ringex replay --to-db`` prints ``ringex: <segment>: offset N: ...`` and
exits 1 (``cli.main``'s ``JournalError`` branch; ``recover`` before it usually refuses
first). The README's ``--to-db`` lines (fsyncs "under its lock, for that moment only, and
reads to its end"; "a torn last entry is truncated with a log line") stay true.

Faults, each pinned by a test that failed on the code it was written against; it passes
since its fix (the same session's next commit: ``_fit_connections`` says its own warning):

1. ``open_files.connections_room`` (``procs/common/open_files.py``) logs the figures it was
   given as if they were the port's: ``_fit_connections`` asks it for every descriptor the
   gateway may hold (FIX sessions' 4 each, the connections, two slot locks a stream), so the
   warning an operator reads with the default config on 5,500 free descriptors says
   "max_connections 8000 does not fit ... at most 5500 connections, the others answered
   503", where the configured ``max_connections`` is 2,000 and the port takes 500 (6dad043
   adds the streams' locks to both figures; since review 38 the FIX sessions' were in them).
"""

from __future__ import annotations

import logging
import resource
from pathlib import Path
from types import SimpleNamespace

import pytest

from config.edges import RestConfig
from procs.common import open_files
from procs.common.journal import (
    HEADER_SIZE,
    DirectoryLock,
    EntryLayout,
    JournalCorruptError,
    JournalReader,
    list_segments,
)
from procs.common.journal_archive import archive_segments_before
from procs.common.journal_writer import JournalWriter
from procs.common.rules_version import RULES_VERSION
from procs.dbwriter.writer import DbWriter
from procs.gateway import rest_connections
from procs.gateway.rest_connections import RestConnections
from procs.gateway.session_stores import SPARE, fix_descriptors

SLOT = 8
ENTRY = EntryLayout(SLOT).size

# -- 1. the descriptor warning names the gateway's descriptors as its connections -------------


def _descriptors(monkeypatch: pytest.MonkeyPatch, free: int, *, unlimited: bool = False) -> None:
    """A process with 10 descriptors open whose soft and hard RLIMIT_NOFILE leave ``free``
    besides them and ``FD_MARGIN`` (``unlimited``: RLIM_INFINITY); the soft limit cannot be
    raised."""
    limit = resource.RLIM_INFINITY if unlimited else 10 + open_files.FD_MARGIN + free

    def setrlimit(_which: int, _limits: tuple[int, int]) -> None:
        raise ValueError("not above the hard limit")

    monkeypatch.setattr(
        open_files,
        "resource",
        SimpleNamespace(
            RLIMIT_NOFILE=resource.RLIMIT_NOFILE,
            RLIM_INFINITY=resource.RLIM_INFINITY,
            getrlimit=lambda _which: (limit, limit),
            setrlimit=setrlimit,
        ),
    )
    monkeypatch.setattr(open_files, "os", SimpleNamespace(listdir=lambda _path: ["fd"] * 10))


def _fit(rest: RestConfig, sessions: int) -> int:
    gateway = SimpleNamespace(gw=SimpleNamespace(max_sessions=sessions), rest=rest)
    RestConnections._fit_connections(gateway)  # type: ignore[arg-type]
    fitted: int = gateway.max_connections
    return fitted


def test_the_descriptor_warning_names_the_ports_limit(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Invariant (``open_files.py``: ``connections_room`` "says what fits", its warning "at
    most N connections, the others answered 503"): the line an operator reads when the
    descriptors run short names the port's configured ``max_connections`` and the
    connections the port then takes.

    The default config: 1,000 FIX sessions, 2,000 connections, 1,000 streams; 5,500
    descriptors free. Expected: the port takes 500 (pinned in review 81) and the warning
    says ``max_connections 2000`` ... ``at most 500 connections``.

    What happens: ``_fit_connections`` asks ``connections_room`` for 4,000 + 2,000 + 2,000
    descriptors and fits the port itself, so the warning says "max_connections 8000 does
    not fit 5574 open files ...: at most 5500 connections, the others answered 503": a
    limit nobody configured, and eleven times the connections the port takes."""
    _descriptors(monkeypatch, 5_500 + 2 * SPARE)  # (the spare stores' too: review 256)
    rest = RestConfig()
    assert (rest.max_connections, rest.max_streams) == (2_000, 1_000)
    with caplog.at_level(logging.WARNING):
        assert _fit(rest, 1_000) == 500
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert said, "no warning that the port was fitted down"
    assert any("max_connections 2000" in s and "at most 500 connections" in s for s in said), said


def test_the_fit_at_its_boundaries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pinned (6dad043): the most connections n with n + 2 min(n, max_streams) descriptors in
    the room after the FIX sessions' 4 each (and the spare stores'), at least 1; the whole
    configured limit where the room is unlimited (RLIM_INFINITY: ``connections_room`` grants
    what is asked)."""
    fix = fix_descriptors(10)

    def fitted(room: int, connections: int, streams: int) -> int:
        monkeypatch.setattr(
            rest_connections, "connections_room", lambda wanted, **_: min(wanted, room)
        )
        return _fit(RestConfig(max_connections=connections, max_streams=streams), 10)

    def best(room: int, connections: int, streams: int) -> int:
        fits = [n for n in range(connections + 1) if fix + n + 2 * min(n, streams) <= room]
        return max(1, max(fits, default=0))

    for connections, streams in ((300, 100), (300, 300), (100, 300), (1, 1), (5, 1)):
        for room in (*range(1, fix + 3 * connections + 2 * streams + 3), 10**9):
            got, want = fitted(room, connections, streams), best(room, connections, streams)
            assert got == want, (room, connections, streams, got, want)
    # RLIM_INFINITY: connections_room returns what it was asked
    _descriptors(monkeypatch, 0, unlimited=True)
    assert _fit(RestConfig(max_connections=2_000, max_streams=1_000), 1_000) == 2_000


# -- pinned: _durable_now's repair ------------------------------------------------------------


def _journal(directory: Path, entries: int, *, rules: int | None = None) -> None:
    """Seqs 1..``entries``, two a segment (each sealed segment fsynced)."""
    with JournalWriter(
        directory,
        slot_size=SLOT,
        schema_id=1,
        segment_bytes=HEADER_SIZE + 2 * ENTRY,
        rules=RULES_VERSION if rules is None else rules,
    ) as out:
        out.append(1, bytes(SLOT * entries), entries)


def _reader(directory: Path, archive: Path | None = None) -> JournalReader:
    return JournalReader(directory, slot_size=SLOT, schema_id=1, archive=archive)


def _durable_now(reader: JournalReader) -> int:
    writer = SimpleNamespace(reader=reader)
    seq: int = DbWriter._durable_now(writer)  # type: ignore[arg-type]
    return seq


def _free(directory: Path) -> bool:
    try:
        DirectoryLock(directory).close()
    except Exception:
        return False
    return True


def test_a_torn_tail_is_cut_in_the_live_segment_not_in_the_archive(tmp_path: Path) -> None:
    """Pinned: with the segments before 5 archived and a whole entry's worth of torn bytes
    after 5, ``_durable_now`` cuts the live last segment's tail, leaves every archived
    segment byte for byte, returns 5 and gives the lock back; a router opening afterwards
    continues at 6 without cutting anything."""
    directory, archive = tmp_path / "journal", tmp_path / "archive"
    _journal(directory, 5)
    archive_segments_before(directory, 5, archive)
    archived = {p.name: p.read_bytes() for _, p in list_segments(archive)}
    assert sorted(archived) and [f for f, _ in list_segments(directory)] == [5]
    (_first, last), *_ = list_segments(directory)
    sound = last.stat().st_size
    with open(last, "ab") as f:
        f.write(b"\x5a" * ENTRY)
    assert _durable_now(_reader(directory, archive)) == 5
    assert last.stat().st_size == sound
    assert {p.name: p.read_bytes() for _, p in list_segments(archive)} == archived
    assert _free(directory)
    with JournalWriter(directory, slot_size=SLOT, schema_id=1) as router:
        assert router.next_seq == 6
    assert last.stat().st_size == sound


def test_damage_that_is_no_torn_tail_is_refused_and_the_lock_given_back(tmp_path: Path) -> None:
    """Pinned: a bad entry followed by data in the last segment raises
    ``JournalCorruptError`` naming the segment (what ``ringex replay --to-db`` prints after
    "ringex: "), truncates nothing, and the journal's lock is free again."""
    directory = tmp_path / "journal"
    _journal(directory, 6)
    (_first, last), *_ = reversed(list_segments(directory))
    data = bytearray(last.read_bytes())
    data[HEADER_SIZE + 8] ^= 0xFF  # entry 5's image: its CRC fails, entry 6 follows
    data += b"\x5a" * (ENTRY // 2)  # and the last entry is cut short (no fast path)
    last.write_bytes(bytes(data))
    with pytest.raises(JournalCorruptError, match="not a torn tail") as raised:
        _durable_now(_reader(directory))
    assert str(last) in str(raised.value)
    assert last.read_bytes() == bytes(data)
    assert _free(directory)


def test_a_torn_tail_of_a_segment_of_other_rules_is_cut_as_a_router_would(tmp_path: Path) -> None:
    """Pinned: the last segment was written under other rules (an older build) and has a
    partial entry after 3: ``_durable_now`` cuts it (its reader refuses no rules), returns
    3, and a router of this build's rules opening afterwards continues at 4 in a segment of
    its own."""
    directory = tmp_path / "journal"
    _journal(directory, 3, rules=1)
    (_first, last), *_ = reversed(list_segments(directory))
    sound = last.stat().st_size
    with open(last, "ab") as f:
        f.write(b"\x5a" * 5)
    assert _durable_now(_reader(directory)) == 3
    assert last.stat().st_size == sound
    with JournalWriter(directory, slot_size=SLOT, schema_id=1, rules=2) as router:
        assert router.next_seq == 4
        router.append(4, bytes(SLOT), 1)
    assert [f for f, _ in list_segments(directory)] == [1, 3, 4]
    assert [seq for seq, _ in _reader(directory).entries(1, foreign="yield")] == [1, 2, 3, 4]
