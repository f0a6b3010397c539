"""Review 85: a hostile review of 09602e6 (the history hash chained in blocks, ``history.chain``).

Reviewed: ``procs/common/journal_history.py`` (``History``, ``fork``/``take_marks``/``marks``,
``hashes_before``, ``older_peer``, ``HistoryChain``: ``history_before``, ``hashes_before``,
``keep``, ``truncate``, ``_sound_keys``/``_borne_out``), its users (``ReplicationSource.
_history_before``/``_digests``/``_stream``, ``Standby.__init__``/``persist``, ``rebuild.
_own_digests``/``agreed_seq``, ``cut_after``, ``failover.py journal_state``) and README.md's
journal/archive and failover sections.

Faults, each pinned by a test that failed on 09602e6; all three pass since their fixes (the
same session): ``keep`` keeps the keys of durable blocks only (the journal's durable mark) and
reads the file's last record alone, a lookup one record; a key hashes records, not slots (the
tests of fault 1 set the durable mark where a router under ``interval`` leaves it):

1. A key that no hash ever checked is trusted once its block's last entry is archived away
   (``journal_history.py:240``, ``_borne_out``: ``JournalArchivedError`` -> True). The source
   keeps keys of entries it ships before the router's fsync (``source.py:401``), so a host
   crash that loses a tail across a block's end leaves a stale key in the primary's chain,
   and ``keep`` passes over the right key made later (``journal_history.py:194``). Once the
   segments up to that block's end go to cold storage (README: "up to the start of the block
   the standby is in"), the stale key is "borne out" and the hash before ``k * BLOCK + 1`` is
   the lost history's: a standby holding that lost history is accepted and takes the
   primary's other entries on top of it (a false agree).
   ``test_a_stale_key_whose_block_end_was_archived_away_is_trusted``,
   ``test_a_standby_of_the_lost_history_is_accepted_once_the_block_end_is_archived``.
2. A key does not record the slot size its images were hashed in: keys taken by a build of
   another slot size (a field added to an event grows every slot; the journal re-frames the
   older segments' images) are checked by the CRC of a re-framed image, which never matches,
   so every key is taken again from seq 1 (a full-journal pass, needing the whole archive), and
   where the block's end is archived away the old key is trusted as is. The same history then
   hashes differently on a primary whose archive went (as README allows) and on a standby
   whose archive is whole: the standby is refused ("history differs: rebuild the standby").
   ``test_the_same_history_hashes_alike_after_a_slot_size_upgrade``.
3. ``HistoryChain.keep`` (``journal_history.py:193``) reads and CRC-checks the whole chain
   file on every block a source ships or a standby persists, on the source's event loop and
   between a standby's fsync and its ack: linear in the journal's length (a year at 10k/s is
   480k records, about 0.2 s a block here), and ``keys()`` likewise on every ``history_before``
   (each seq of an operator's digests question, each Hello).
   ``test_keeping_a_key_does_not_read_the_whole_chain``.

Checked and found sound (the unmarked tests pin some of it): the chain math at ``k * BLOCK``,
``k * BLOCK + 1`` and ``k * BLOCK + 2`` (a hash from the chain equals one from seq 1, in the
module and through the source's ``_hashed`` cache across blocks: the same-block condition means
a cached fork never completes a block); ``History.fork`` begins with no marks, so a frame the
standby refuses keeps no key, and the standby keeps its marks only after the journal's sync;
``cut_after`` keeps the key of a block ending exactly at the cut (``seq // BLOCK``) and drops
the next; a torn append ends the file at the torn record and is written again; ``keep`` refuses
a record not contiguous with those kept; ``hashes_before`` leaves out seqs past the journal's
end + 1; a standby starts on an empty or absent journal; an older peer's 16-byte digest is
refused on every path (Hello, Entries, demote's Digests). Older stale keys behind a sound newest
one need the block's last image to match after a divergence, which with ``seq`` and ``ts_ns``
in every image takes a CRC-32 collision. Noted, not faults: ``source.py`` and
``journal_writer.py`` imported ``BLOCK`` at import time (they read ``journal_history.BLOCK``
at a call since); ``HistoryChain.hashes_before`` read up to a block per seq even for seqs in
one block (it goes on from the last since); a first start after this commit hashes from seq 1
once.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import msgspec
import pytest

from config.schema import JournalConfig, RingexConfig
from procs.common import journal_history
from procs.common.journal import HEADER_SIZE, EntryLayout, JournalArchivedError, JournalReader
from procs.common.journal_archive import archive_segments_before
from procs.common.journal_durable import DurableMark
from procs.common.journal_history import BLOCK, History, HistoryChain
from procs.common.journal_writer import JournalWriter, cut_after
from procs.common.record_codec import reframe_slot
from procs.common.records import Record
from procs.common.topology import journal_archive_dir, journal_dir
from procs.replica.source import ReplicationSource
from procs.replica.standby import Standby, StandbyRefusedError
from procs.replica.wire import Entries
from tests.unit.replica.history_reference import hashes_before
from tests.unit.replica.test_archived_replication import _closed, _follow
from tests.unit.replica.test_review_replica2_bugs import pair, serve_in_a_thread
from tests.unit.replica.test_source import CODEC, commands

SLOT = CODEC.slot_size
PER_SEGMENT = 8_192  # entries a segment: a block's end is a segment's end (BLOCK = 8 of them)
OLD_SLOT = 64  # an "older build's" slot size: the commands here fit it


def _archiving(cfg: RingexConfig, tmp_path: Path) -> RingexConfig:
    where = tmp_path / f"archive-{cfg.instance}"
    return msgspec.structs.replace(cfg, journal=JournalConfig(archive_dir=str(where)))


def _append(cfg: RingexConfig, first: int, records: list[Record], slot: int = SLOT) -> None:
    images = [CODEC.encode_slot(r) for r in records]
    if slot != SLOT:
        images = [reframe_slot(image, slot) or b"" for image in images]
    with JournalWriter(
        journal_dir(cfg),
        slot_size=slot,
        schema_id=CODEC.journal_schema_id,
        segment_bytes=HEADER_SIZE + PER_SEGMENT * EntryLayout(slot).size,
        fsync="none",
    ) as journal:
        journal.append(first, b"".join(images), len(images))


def _reader(cfg: RingexConfig, slot: int = SLOT) -> JournalReader:
    return JournalReader(
        journal_dir(cfg),
        slot_size=slot,
        schema_id=CODEC.journal_schema_id,
        archive=journal_archive_dir(cfg),
    )


def _whole(cfg: RingexConfig, seqs: list[int]) -> dict[int, bytes]:
    """The hashes by one pass from seq 1 (no key kept)."""
    return hashes_before(_reader(cfg).entries(1), seqs)


def _others(first: int, n: int) -> list[Record]:
    """Other commands at the same seqs (what a primary sequences after losing its tail)."""
    return [msgspec.structs.replace(c, amount=101) for c in commands(first, n)]


def _lose_tail(cfg: RingexConfig, after: int, tmp_path: Path) -> None:
    """A host crash under fsync interval: the journal loses its entries after ``after``,
    the history chain (fsynced when the source kept the keys of what it shipped) does not."""
    chain = HistoryChain(journal_dir(cfg))
    kept = chain.path.read_bytes() if chain.path.exists() else None  # (none: nothing durable)
    aside = tmp_path / f"lost-{cfg.instance}"
    cut_after(journal_dir(cfg), after, aside, slot_size=SLOT, schema_id=CODEC.journal_schema_id)
    if kept is not None:
        chain.path.write_bytes(kept)


def _durable_to(cfg: RingexConfig, seq: int) -> None:
    """The journal's durable mark at ``seq``, as a router under ``fsync = "interval"`` leaves
    it with later entries written and not yet fsynced (``journal_durable.py``)."""
    DurableMark(journal_dir(cfg), seq).close()


def _to_cold_storage(cfg: RingexConfig, before: int) -> None:
    """Archive the segments before ``before`` and ship the archive away."""
    assert archive_segments_before(journal_dir(cfg), before, journal_archive_dir(cfg))
    shutil.rmtree(journal_archive_dir(cfg))


def test_a_stale_key_whose_block_end_was_archived_away_is_trusted(tmp_path: Path) -> None:
    """Fault 1, on the chain alone. ``journal_history.py:240``: ``_borne_out`` takes a block
    end gone from the journal and its archive for proof that the key stands for it, though
    nothing ever compared that key with this journal. A primary's chain holds the key after
    block 0 of a history it then lost (from seq BLOCK - 99: a host crash), it sequences other
    commands there, archives up to seq BLOCK and ships the archive away. Expected: the hash
    before BLOCK + 1 is this journal's, or none (``JournalArchivedError``: nothing here can
    prove it). What happens: the lost history's hash is returned."""
    primary, _ = pair(tmp_path)
    primary = _archiving(primary, tmp_path)
    _append(primary, 1, commands(1, BLOCK))
    _durable_to(primary, BLOCK - 100)  # (the fix: a key of what is not durable is not kept)
    chain = HistoryChain(journal_dir(primary))
    lost = chain.history_before(_reader(primary), BLOCK + 1).digest()
    _lose_tail(primary, BLOCK - 100, tmp_path)
    _append(primary, BLOCK - 99, _others(BLOCK - 99, 600))
    truth = _whole(primary, [BLOCK + 1])[BLOCK + 1]
    assert truth != lost
    _to_cold_storage(primary, BLOCK + 1)
    try:
        digest = chain.history_before(_reader(primary), BLOCK + 1).digest()
    except JournalArchivedError:
        return  # refused: acceptable
    assert digest == truth, "the hash of a history this journal does not hold"


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_a_standby_of_the_lost_history_is_accepted_once_the_block_end_is_archived(
    tmp_path: Path,
) -> None:
    """Fault 1, end to end (``journal_history.py:240``, ``source.py:401``). The standby
    follows the primary to seq BLOCK (both keep the key after block 0). The primary's host
    crashes and its journal loses seqs BLOCK - 99 .. BLOCK (the source shipped them before the
    router's fsync; the chain, fsynced, keeps their key); it sequences 600 other commands from
    BLOCK - 99, archives the segments before BLOCK + 1 (the start of the block its standby is
    in) and ships them to cold storage, as README allows. The standby comes back at BLOCK + 1.
    Expected: refused (its seqs BLOCK - 99 .. BLOCK are not the primary's). What happens: the
    primary hashes from the stale key, agrees, and streams its entries BLOCK + 1 .. onto a
    journal that diverged 100 entries earlier."""
    primary, secondary = pair(tmp_path)
    primary = _archiving(primary, tmp_path)
    _append(primary, 1, commands(1, BLOCK))
    _durable_to(primary, BLOCK - 100)  # (the fix: a key of what is not durable is not kept)
    stop_source = serve_in_a_thread(ReplicationSource(primary))
    standby = Standby(secondary)
    try:
        _follow(standby, BLOCK)
    finally:
        stop_source()
        _closed(standby)
    assert standby.next_seq == BLOCK + 1
    assert HistoryChain(journal_dir(primary)).keys() == []  # shipped, not durable: not kept

    _lose_tail(primary, BLOCK - 100, tmp_path)
    _append(primary, BLOCK - 99, _others(BLOCK - 99, 600))
    _to_cold_storage(primary, BLOCK + 1)

    stop_source = serve_in_a_thread(ReplicationSource(primary))
    standby = Standby(secondary)
    try:
        with pytest.raises(StandbyRefusedError):
            _follow(standby, BLOCK + 500)
    finally:
        stop_source()
        _closed(standby)
    assert standby.next_seq == BLOCK + 1


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_the_same_history_hashes_alike_after_a_slot_size_upgrade(tmp_path: Path) -> None:
    """Fault 2 (``journal_history.py:94`` and ``:239``: a key and its CRC are of images in the
    reader's slot size, and the file says nothing of it). A primary and its standby hold the
    same journal, written by a build of 64-byte slots, and both chains hold that build's key
    after block 0. They are upgraded together to this build (128-byte slots: the journal
    re-frames the older images). The primary's archive went to cold storage up to the block
    its standby is in (README). Expected: the standby follows on. What happens: the standby's
    start finds its key's CRC wrong (a re-framed image) and hashes its journal again from
    seq 1; the primary's key has its block end gone, so it is trusted as the older build took
    it; the two hashes of one history differ and the standby is refused ("history
    differs ... rebuild the standby")."""
    primary, secondary = pair(tmp_path)
    primary = _archiving(primary, tmp_path)
    n = BLOCK + 300
    _append(primary, 1, commands(1, n), OLD_SLOT)
    shutil.copytree(journal_dir(primary), journal_dir(secondary))
    for cfg in (primary, secondary):  # what the older build's source and standby kept
        HistoryChain(journal_dir(cfg)).history_before(_reader(cfg, OLD_SLOT), n + 1)
        assert len(HistoryChain(journal_dir(cfg)).keys()) == 1
    _to_cold_storage(primary, BLOCK + 1)
    _append(primary, n + 1, commands(n + 1, 10))  # this build's first entries

    stop_source = serve_in_a_thread(ReplicationSource(primary))
    standby = Standby(secondary)
    try:
        _follow(standby, n + 10)
    finally:
        stop_source()
        _closed(standby)
    assert standby.next_seq == n + 11


def test_keeping_a_key_does_not_read_the_whole_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault 3 (``journal_history.py:193``). A year at 10k commands/s is 480k blocks, an
    11.5 MB chain. Each block the source ships (on its event loop, ``source.py:401``) and each
    the standby persists (between its fsync and its ack, ``standby.py:162``) calls ``keep``,
    which reads every record and checks its CRC: about 0.2 s here, every 6.5 s, a stall of the
    sync round trip that grows with the journal. Expected: a key appended at the chain's end
    reads a bounded part of it. What happens: all 11.5 MB are parsed."""
    chain = HistoryChain(tmp_path)
    blocks = 480_000
    chain.path.write_bytes(
        b"".join(journal_history._pack(k.to_bytes(16, "little"), k) for k in range(blocks))
    )
    parsed: list[int] = []
    sound = journal_history._sound_records

    def counting(data: bytes) -> list[tuple[bytes, int]]:
        parsed.append(len(data))
        return sound(data)

    monkeypatch.setattr(journal_history, "_sound_records", counting)
    history = History()
    history.marks = [(blocks + 1, bytes(16), 7)]
    chain.keep(history)
    monkeypatch.undo()
    assert len(chain.keys()) == blocks + 1
    assert sum(parsed) < 1 << 20, f"{sum(parsed)} bytes of the chain parsed to append one key"


# ---- pinned: checked and found sound ------------------------------------------------------

SMALL = 64  # a block, shrunk: every module that reads it is patched (source, cut_after)


@pytest.fixture
def small_block(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(journal_history, "BLOCK", SMALL)  # (every module reads it at a call)
    return SMALL


def test_the_chain_agrees_with_one_pass_at_every_block_boundary(
    tmp_path: Path, small_block: int
) -> None:
    primary, _ = pair(tmp_path)
    n = 5 * small_block + 3
    _append(primary, 1, commands(1, n))
    seqs = [
        s for k in range(6) for s in (k * small_block, k * small_block + 1, k * small_block + 2)
    ]
    seqs = [s for s in seqs if 1 <= s <= n + 1] + [n + 1]
    whole = _whole(primary, seqs)
    chain = HistoryChain(journal_dir(primary))
    for seq in reversed(seqs):  # newest first: the keys are made, then read back
        assert chain.history_before(_reader(primary), seq).digest() == whole[seq], seq
    assert len(chain.keys()) == 5
    assert chain.hashes_before(_reader(primary), [*seqs, n + 2]) == whole


def test_the_sources_cache_agrees_across_blocks(tmp_path: Path, small_block: int) -> None:
    primary, _ = pair(tmp_path)
    n = 4 * small_block + 5
    _append(primary, 1, commands(1, n))
    seqs = [1, 2, small_block, small_block + 1, small_block + 2, 2 * small_block,
            2 * small_block + 1, 2 * small_block - 1, 3 * small_block + 1, n + 1, 5]  # fmt: skip
    whole = _whole(primary, seqs)
    source = ReplicationSource(primary)
    try:
        for seq in seqs:
            assert source._history_before(seq).digest() == whole[seq], seq
        assert source._digests(seqs).digests == [whole[s] for s in seqs]
    finally:
        source.close()


def test_a_cut_keeps_the_key_of_a_block_ending_at_it(tmp_path: Path, small_block: int) -> None:
    primary, _ = pair(tmp_path)
    _append(primary, 1, commands(1, 4 * small_block))
    chain = HistoryChain(journal_dir(primary))
    chain.history_before(_reader(primary), 4 * small_block + 1)
    assert len(chain.keys()) == 4
    schema = CODEC.journal_schema_id
    cut_after(
        journal_dir(primary), 3 * small_block, tmp_path / "a1", slot_size=SLOT, schema_id=schema
    )
    assert len(chain.keys()) == 3
    cut_after(
        journal_dir(primary), 2 * small_block - 1, tmp_path / "a2", slot_size=SLOT, schema_id=schema
    )
    assert len(chain.keys()) == 1
    seq = 2 * small_block
    assert chain.history_before(_reader(primary), seq).digest() == _whole(primary, [seq])[seq]


def test_a_refused_frame_keeps_no_key(tmp_path: Path, small_block: int) -> None:
    """``persist`` hashes a fork: a frame whose hash is wrong leaves neither marks nor keys."""
    _, secondary = pair(tmp_path)
    standby = Standby(secondary)
    try:
        images = [CODEC.encode_slot(c) for c in commands(1, small_block + 3)]
        wrong = History()
        wrong.update(b"".join(images[1:]) + images[0])
        with pytest.raises(StandbyRefusedError, match="hash mismatch"):
            standby.persist(Entries(1, images, wrong.digest()))
        assert HistoryChain(journal_dir(secondary)).keys() == []
        assert standby.history.marks == [] and standby.next_seq == 1
        right = History()
        right.update(b"".join(images))
        standby.persist(Entries(1, images, right.digest()))
        assert len(HistoryChain(journal_dir(secondary)).keys()) == 1
    finally:
        _closed(standby)


def _marked(*marks: tuple[int, bytes, int]) -> History:
    """A ``History`` whose ``marks`` are ``marks`` (what ``keep`` takes)."""
    history = History()
    history.marks = list(marks)
    return history


def test_a_key_not_contiguous_with_those_kept_is_not_appended(tmp_path: Path) -> None:
    chain = HistoryChain(tmp_path)
    chain.keep(_marked((2, bytes(16), 1)))
    assert chain.keys() == []
    chain.keep(_marked((1, b"a" * 16, 1), (2, b"b" * 16, 2)))
    chain.keep(_marked((2, b"c" * 16, 3), (3, b"d" * 16, 4)))  # block 2 kept: passed over
    assert chain.keys() == [(b"a" * 16, 1), (b"b" * 16, 2), (b"d" * 16, 4)]
