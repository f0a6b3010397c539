"""The history hash chained in blocks (``procs/common/journal_history.py``): each side keeps
the key after every block of ``BLOCK`` entries beside its journal, so a hash before any seq
reads one block of entries at most, and a replicated primary may let its archive go up to
the block its standby is in. Until this change the hash ran over every image from seq 1:
a standby's start and each Hello read the whole journal, and the archive was kept whole
(a documented limit, a strict xfail in ``test_archived_replication.py``). The journals here
are a block and a little long (about 70k entries, 10 MB)."""

from __future__ import annotations

import asyncio
import shutil
import zlib
from pathlib import Path

import msgspec
import pytest

from config.schema import RingexConfig
from procs.common.journal import (
    HEADER_SIZE,
    EntryLayout,
    JournalArchivedError,
    JournalReader,
    list_segments,
)
from procs.common.journal_archive import archive_segments_before
from procs.common.journal_history import (
    BLOCK,
    CHAIN_FILE,
    GENESIS,
    History,
    HistoryChain,
    older_peer,
)
from procs.common.journal_writer import JournalWriter, cut_after
from procs.common.topology import journal_archive_dir, journal_dir
from procs.replica.source import ReplicationSource
from procs.replica.standby import Standby
from procs.replica.wire import Hello, Refused, receive, send
from tests.unit.replica.history_reference import hashes_before
from tests.unit.replica.test_archived_replication import _archiving, _closed, _follow
from tests.unit.replica.test_review_replica2_bugs import pair, serve_in_a_thread
from tests.unit.replica.test_source import CODEC, commands

SLOT = CODEC.slot_size
LONG = BLOCK + 4_000  # a block and some
PER_SEGMENT = 8_192  # entries a segment


def _append(cfg: RingexConfig, first: int, n: int) -> None:
    with JournalWriter(
        journal_dir(cfg),
        slot_size=SLOT,
        schema_id=CODEC.journal_schema_id,
        segment_bytes=HEADER_SIZE + PER_SEGMENT * EntryLayout(SLOT).size,
        fsync="none",
    ) as journal:
        journal.append(first, b"".join(map(CODEC.encode_slot, commands(first, n))), n)


def _reader(cfg: RingexConfig) -> JournalReader:
    return JournalReader(
        journal_dir(cfg),
        slot_size=SLOT,
        schema_id=CODEC.journal_schema_id,
        archive=journal_archive_dir(cfg),
    )


def _whole(cfg: RingexConfig, seqs: list[int]) -> dict[int, bytes]:
    """The hashes by one pass from seq 1 (no key kept)."""
    return hashes_before(_reader(cfg).entries(1), seqs)


def test_the_chained_hash_does_not_depend_on_how_the_images_come() -> None:
    images = [CODEC.encode_slot(c) for c in commands(1, 40)]
    one_by_one, joined = History(), History()
    for image in images:
        one_by_one.update(image)
    joined.update(b"".join(images[:7]))
    joined.update(b"".join(images[7:]))
    assert one_by_one.digest() == joined.digest() and len(GENESIS) == 17
    assert not older_peer(GENESIS) and older_peer(bytes(16))
    with pytest.raises(ValueError, match="not whole 152-byte slot images"):
        History().update(images[0][:-1])


def test_a_hash_from_the_chains_key_equals_one_from_seq_1(tmp_path: Path) -> None:
    primary, _ = pair(tmp_path)
    _append(primary, 1, LONG)
    seqs = [1, 2, BLOCK, BLOCK + 1, BLOCK + 2, LONG, LONG + 1]
    whole = _whole(primary, seqs)
    chain = HistoryChain(journal_dir(primary))
    assert chain.hashes_before(_reader(primary), seqs) == whole
    assert len(chain.keys()) == 1  # block 1's key, kept on the way
    assert chain.hashes_before(_reader(primary), seqs) == whole  # and from it


def test_a_primary_serves_its_standby_with_its_archive_gone(tmp_path: Path) -> None:
    """The standby follows to a block and a little; the primary archives the segments
    before the block its standby is in, and the archive goes to cold storage; the standby
    restarts (its start hashes from its own key) and follows the primary on."""
    primary, secondary = pair(tmp_path)
    primary = _archiving(primary, tmp_path)
    _append(primary, 1, LONG)
    stop_source = serve_in_a_thread(ReplicationSource(primary))
    standby = Standby(secondary)
    try:
        _follow(standby, LONG)
    finally:
        stop_source()
        _closed(standby)
    assert standby.next_seq == LONG + 1
    expected = _whole(primary, [LONG + 1])[LONG + 1]
    assert standby.digest == expected
    assert len(HistoryChain(journal_dir(secondary)).keys()) == 1  # kept as it followed
    assert len(HistoryChain(journal_dir(primary)).keys()) == 1  # and as the source shipped

    moved = archive_segments_before(journal_dir(primary), BLOCK + 1, journal_archive_dir(primary))
    assert moved and list_segments(journal_dir(primary))[0][0] <= BLOCK + 1
    shutil.rmtree(journal_archive_dir(primary))  # to cold storage
    with pytest.raises(JournalArchivedError):
        list(_reader(primary).entries(1))
    _append(primary, LONG + 1, 10)

    stop_source = serve_in_a_thread(ReplicationSource(primary))
    standby = Standby(secondary)
    try:
        _follow(standby, LONG + 10)
    finally:
        stop_source()
        _closed(standby)
    assert standby.next_seq == LONG + 11
    source = ReplicationSource(primary)  # an operator's question, with the archive gone
    try:
        assert source._digests([BLOCK + 1, LONG + 11]).digests[1] == standby.digest
    finally:
        source.close()


def test_a_key_the_journal_no_longer_bears_out_is_taken_again(tmp_path: Path) -> None:
    """A journal cut before a block's end and written on with other commands (``demote``,
    or a tail lost in a host crash): the key of that block is dropped and made anew."""
    primary, _ = pair(tmp_path)
    _append(primary, 1, LONG)
    chain = HistoryChain(journal_dir(primary))
    chain.history_before(_reader(primary), LONG + 1)
    old_key = chain.keys()[0]
    kept = BLOCK - 100
    aside = tmp_path / "aside"
    cut_after(journal_dir(primary), kept, aside, slot_size=SLOT, schema_id=CODEC.journal_schema_id)
    assert chain.keys() == []  # the cut drops the keys of the blocks it cut into
    chain.path.write_bytes(_record_file(old_key))  # as if the cut had not: a stale key
    others = [msgspec.structs.replace(c, amount=101) for c in commands(kept + 1, 200)]
    with JournalWriter(
        journal_dir(primary), slot_size=SLOT, schema_id=CODEC.journal_schema_id
    ) as journal:
        journal.append(kept + 1, b"".join(map(CODEC.encode_slot, others)), 200)
    seq = kept + 201
    assert chain.history_before(_reader(primary), seq).digest() == _whole(primary, [seq])[seq]
    assert chain.keys()[0] != old_key  # dropped, and taken again from this journal


def _record_file(key: tuple[bytes, int]) -> bytes:
    """A chain file of one record, ``key``'s (``journal_history._pack``)."""
    head = key[0] + key[1].to_bytes(4, "little")
    return head + zlib.crc32(head).to_bytes(4, "little")


def test_a_torn_key_is_passed_over_and_written_again(tmp_path: Path) -> None:
    primary, _ = pair(tmp_path)
    _append(primary, 1, LONG)
    chain = HistoryChain(journal_dir(primary))
    digest = chain.history_before(_reader(primary), LONG + 1).digest()
    path = journal_dir(primary) / CHAIN_FILE
    path.write_bytes(path.read_bytes()[:-3])  # a torn append
    assert chain.keys() == []
    assert chain.history_before(_reader(primary), LONG + 1).digest() == digest
    assert len(chain.keys()) == 1


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_a_standby_of_an_older_build_is_refused_saying_so(tmp_path: Path) -> None:
    primary, _ = pair(tmp_path)
    _append(primary, 1, 5)
    source = ReplicationSource(primary)

    async def scenario() -> object:
        server = await asyncio.start_server(source.serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            slot, schema = CODEC.slot_size, CODEC.journal_schema_id
            await send(writer, Hello(6, bytes(16), 1, schema, slot, source.records[2]))
            answer = await receive(reader)  # the EpochHistory, then the refusal
            answer = await receive(reader)
            writer.close()
            return answer
        finally:
            server.close()
            await server.wait_closed()

    try:
        answer = asyncio.run(scenario())
    finally:
        source.close()
    assert isinstance(answer, Refused)
    assert "as a build before 2026-11-27 did" in answer.reason
