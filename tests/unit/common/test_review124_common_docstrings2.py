"""Review 124, part 2: ``procs/common/`` docstrings held against the code (the history chain,
the record codec, and the modules beside the journal). Convention and the disagreements
found: ``test_review124_common_docstrings.py``'s module docstring; ``said`` is its helper."""

from __future__ import annotations

import json
import logging
import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import msgspec
import pytest

from config.loader import load_profile
from config.schema import RingexConfig
from procs.common import replication_ack as ack
from procs.common import run_files as rf
from procs.common import topology as topo
from procs.common import units as un
from procs.common.apikeys import ApiKeyStore
from procs.common.durable import PRIVATE, replace_durably
from procs.common.epochs import Epochs, EpochsError, JournalFencedError
from procs.common.file_locks import try_lock
from procs.common.journal import HEADER_SIZE, JournalError
from procs.common.journal_durable import FILE
from procs.common.journal_history import HistoryChain, record_bytes
from procs.common.market_snapshots import MarketSnapshots
from procs.common.quiet_log import QuietFilter
from procs.common.record_codec import SLOT_FRAMING, RecordDecodeError, reframe_slot
from procs.common.record_layout import max_encoded_size, schema_id
from procs.common.records import JOURNALED_TYPES, RECORD_TYPES, NewOrder
from procs.common.replication_ack import AckBlock, Doorbell, SyncGate
from procs.common.snapshots import SnapshotStore, _body
from procs.common.stats import (
    REJECT_REASONS,
    SUM_CAP_NS,
    LatencyHistogram,
    histogram_counters,
    reject_slot,
)
from procs.common.token_bucket import TokenBucket
from procs.common.types import U64, OrderFlag, client_id_of
from procs.common.users import User, UserStore, comp_id_refused
from procs.core.market.state import MarketState
from shm.errors import EncodeError
from shm.liveness import process_start
from tests.unit.common.test_records import order, slot_with_body
from tests.unit.common.test_review124_common_docstrings import said, segments
from tests.unit.marketdata.events import OTHER, SYMBOL
from tests.unit.router.test_journal import CODEC, ENTRY, fill, images, reader


def test_the_chain_file_keeps_durable_keys_and_drops_those_the_journal_no_longer_bears(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """journal_history.py: "a 24-byte record a block: the key, the CRC-32 of the block's last
    record (the entry at ``k * BLOCK``) and the CRC-32 of the two"; "only for blocks the
    journal holds durable"; "dropped with those after it where that entry differs or the
    journal ends before it"."""
    said("journal_history")
    monkeypatch.setattr("procs.common.journal_history.BLOCK", 4)
    fill(tmp_path, 10)
    chain = HistoryChain(tmp_path)
    full = chain.history_before(reader(tmp_path), 11).digest()
    data = chain.path.read_bytes()
    assert len(data) == 48 and len(chain.keys()) == 2
    assert chain.keys()[0][1] == zlib.crc32(record_bytes(images(4, 1)))
    key, crc, check = struct.unpack("<16sII", data[:24])
    assert check == zlib.crc32(key + crc.to_bytes(4, "little"))
    chain.path.unlink()
    (tmp_path / FILE).write_bytes((7).to_bytes(8, "little"))
    assert chain.history_before(reader(tmp_path), 11).digest() == full
    assert len(chain.keys()) == 1  # block 2 ends at seq 8, past the mark
    (tmp_path / FILE).write_bytes((10).to_bytes(8, "little"))
    chain.history_before(reader(tmp_path), 11)
    assert len(chain.keys()) == 2
    with open(segments(tmp_path)[0], "r+b") as f:
        f.truncate(HEADER_SIZE + 6 * ENTRY)
    with pytest.raises(JournalError, match="ends before seq 8"):
        chain.history_before(reader(tmp_path), 9)
    assert len(chain.keys()) == 1


# -- record_codec.py, record_layout.py, records.py --------------------------------------


def test_the_journal_path_refuses_a_field_of_2_63_naming_it() -> None:
    """``encode_slots``: "refuses a field of 2**63 or more (naming it; one scan of the whole
    batch) rather than journal a slot no reader decodes"."""
    said("record_codec")
    with pytest.raises(EncodeError, match=r"NewOrder.qty=9223372036854775808 is outside"):
        CODEC.encode_slots([order(), order(qty=2**63)])
    with pytest.raises(EncodeError, match=r"NewOrder.price=.* is outside"):
        CODEC.encode_slots([order(price=2**64 - 1)])
    assert CODEC.decode_slot(CODEC.encode_slots([order(qty=2**63 - 1)])) == order(qty=2**63 - 1)


def test_decode_refuses_slots_of_another_length_or_bad_length_fields() -> None:
    """``decode_slot``: "Decode one whole slot image (a byte buffer), refusing any other
    length."; record_codec.py: "A short, oversized or garbage slot therefore becomes
    ``RecordDecodeError`` naming the field and value"."""
    said("record_codec")
    image = CODEC.encode_slot(order())
    with pytest.raises(RecordDecodeError, match="expected exactly 152"):
        CODEC.decode_slot(image + b"\0")
    fields = list(msgspec.structs.astuple(order()))
    fields[5] = -1
    with pytest.raises(RecordDecodeError, match=r"NewOrder.account=-1"):
        CODEC.decode_slot(slot_with_body(msgspec.msgpack.encode([1, *fields])))


def test_reframe_slot() -> None:
    """``reframe_slot``: "its length and record kept, zero padding and a zero stamp after
    them"; "None when its record does not fit a ``slot_size`` slot, or its length says more
    than it holds."."""
    said("record_codec")
    image = CODEC.encode_slot(order())
    length = image[0] | image[1] << 8
    assert reframe_slot(image, 2 + length + 8) == image[: 2 + length] + bytes(8)
    assert reframe_slot(image, 2 + length + 7) is None
    assert reframe_slot(b"\x40\x00" + bytes(20), 128) is None  # says 64, holds 20
    assert reframe_slot(bytes(16), 32) is None  # no record


def test_slot_sizes_worst_cases_and_schema_ids() -> None:
    """``RecordCodec``: "``slot_size`` defaults to the smallest multiple of 8 that holds the
    length prefix, the largest record's worst case and the stamp."; records.py: "``NewOrder``'s
    142 + 10 of 152 since it carries a client id"; record_codec.py: "an ``int`` field takes at
    most 9 bytes"; ``schema_id``: "marks a records schema"; ``max_encoded_size`` refuses a
    field with "no fixed worst-case size"."""
    said("record_codec", "record_layout", "records")
    largest = max(map(max_encoded_size, RECORD_TYPES))
    assert largest == max_encoded_size(NewOrder) == 142
    assert CODEC.slot_size == -(-(largest + SLOT_FRAMING) // 8) * 8 == 152

    class Wide(msgspec.Struct, array_like=True, tag=1):
        a: int
        b: Any

    with pytest.raises(TypeError, match="no fixed worst-case size"):
        max_encoded_size(Wide)
    assert max(len(msgspec.msgpack.encode(v)) for v in (2**64 - 1, -(2**63))) == 9
    for kinds in (RECORD_TYPES, JOURNALED_TYPES):
        assert schema_id(kinds) >> 32 == 0x5245


def test_records_are_in_tag_order_and_trailing_defaults_decode() -> None:
    """records.py: "Every record type, in tag order"; "a longer array is an error, never a
    record cut short"; ``NewOrder.client_id``: "(a trailing default: their shorter arrays
    decode as this record)"."""
    said("records")
    tags = [int(t.__struct_config__.tag) for t in RECORD_TYPES]  # type: ignore[arg-type]
    assert tags == sorted(tags) and len(set(tags)) == len(tags)
    fields = list(msgspec.structs.astuple(order(client_id=b"")))
    assert CODEC.decode_slot(slot_with_body(msgspec.msgpack.encode([1, *fields[:-1]]))) == order()
    with pytest.raises(RecordDecodeError):
        CODEC.decode_slot(slot_with_body(msgspec.msgpack.encode([1, *fields, 5])))


# -- snapshots.py, market_snapshots.py, durable.py -------------------------------------------------


def test_snapshot_files_retention_and_damage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """snapshots.py: "Each file is ``RXS1``, the CRC-32 of the body (4 bytes, little-endian),
    then the body"; ``save``: "keep it and the ``keep - 1`` newest before it"; "a snapshot
    above ``seq`` is of a history that was rewound"; "a damaged snapshot is logged with its
    path and passed over for the one before it"; ``oldest_seq``: "(whole or not)"; "A file
    without the prefix (written before it existed: msgpack, an array or a map first) is taken
    as it is; anything else without it is damaged."."""
    said("snapshots")
    for first, taken in ((0x91, True), (0x85, True), (0xDC, True), (0x00, False), (0x52, False)):
        assert (_body(Path("x"), bytes([first, 1])) == bytes([first, 1])) is taken
    store = SnapshotStore(tmp_path, keep=2)
    for seq in (10, 20, 30):
        store.save(seq, b"state %d" % seq)
    raw = store.path(30).read_bytes()
    assert raw == b"RXS1" + struct.pack("<I", zlib.crc32(b"state 30")) + b"state 30"
    assert store.path(30).stat().st_mode & 0o777 == PRIVATE
    assert sorted(p.name for p in tmp_path.iterdir()) == [store.path(20).name, store.path(30).name]
    store.save(25, b"state 25")
    assert [store.oldest_seq(), store.newest_seq()] == [20, 25]
    data = bytearray(store.path(25).read_bytes())
    data[-1] ^= 1
    store.path(25).write_bytes(data)
    caplog.set_level(logging.WARNING, "ringex.snapshots")
    assert store.latest() == (20, b"state 20") and str(store.path(25)) in caplog.text
    assert store.at_or_before(19) is None and store.oldest_seq() == 20


def test_market_state_is_loaded_for_the_symbols_still_listed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """market_snapshots.py: "One of another symbol set keeps the symbols the config still
    lists as they were"; "one listed anew ... starts empty" (review 226: the file was ignored
    whole); ``load``: "or None (with the reason)"."""
    said("market_snapshots")
    saved = MarketSnapshots(tmp_path / "md" / "state.pickle")
    saved.save(MarketState([SYMBOL]), {"m1-out": (5, 10)})
    loaded = saved.load(MarketState([SYMBOL]))
    assert loaded is not None and loaded.positions == {"m1-out": (5, 10)}
    wider = saved.load(MarketState([SYMBOL, OTHER]))  # OTHER listed since: SYMBOL kept
    assert wider is not None and list(wider.state.symbols) == [SYMBOL.id, OTHER.id]
    assert "listed anew or with new rules, starting empty" in caplog.text
    saved.path.write_bytes(saved.path.read_bytes()[:100])
    assert saved.load(MarketState([SYMBOL])) is None and "not loadable" in caplog.text


def test_replace_durably_mode_and_a_failed_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``replace_durably``: "``mode`` ... is the file's whatever the umask or a leftover temp
    file says"; "a full disk: the part written goes"."""
    said("durable")
    path = tmp_path / "f.bin"
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(b"leftover")
    tmp.chmod(0o644)
    replace_durably(path, b"one", mode=PRIVATE)
    assert path.read_bytes() == b"one" and path.stat().st_mode & 0o777 == 0o600

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space"):
        replace_durably(path, b"two" * 1000, mode=PRIVATE)
    assert path.read_bytes() == b"one" and not tmp.exists()


def config(tmp_path: Path, **changes: Any) -> RingexConfig:
    return msgspec.structs.replace(load_profile("test"), var_dir=str(tmp_path), **changes)


def test_units_are_pinned_and_a_reused_id_is_refused(tmp_path: Path) -> None:
    """units.py: "a start whose config says otherwise is refused, naming each difference";
    "one removed from it stays pinned (its id may not come back naming something else)"."""
    said("units")
    cfg = config(tmp_path)
    path = un.units_path(cfg)
    assert path == tmp_path / cfg.instance / "journal" / "units.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"assets": {"OLD": {"id": 99, "decimals": 1}}, "symbols": {}}))
    un.pin_units(cfg)
    pinned = json.loads(path.read_text())
    assert pinned["assets"]["OLD"] == {"id": 99, "decimals": 1} and "USD" in pinned["assets"]
    assert un.units_refused(cfg) == ""
    pinned["assets"]["USD"]["decimals"] = 2
    pinned["assets"]["GONE"] = pinned["assets"].pop("BTC")
    path.write_text(json.dumps(pinned))
    refused = un.units_refused(cfg)
    assert "asset USD decimals: 6 in the config, 2 in the journal" in refused
    assert "asset id 2 names 'BTC' in the config and 'GONE' in the journal" in refused
    path.write_text("[1]")
    assert "not the units JSON the router writes" in un.units_differ(cfg)


def test_epochs_default_file_fence_and_promotions(tmp_path: Path) -> None:
    """epochs.py: "A journal without one is in epoch 1 from seq 1."; "A router refuses to
    open a fenced journal"; ``Epochs.known``: "never begun here again"."""
    said("epochs")
    assert Epochs.load(tmp_path) == Epochs(((1, 1),)) and Epochs.load(tmp_path).current == 1
    fenced = Epochs(((1, 1), (3, 40)), known=4).fenced(5, "b")
    fenced.save(tmp_path)
    assert Epochs.load(tmp_path) == fenced
    with pytest.raises(JournalFencedError, match="instance 'b' was promoted to epoch 5"):
        Epochs.load(tmp_path).check_open(tmp_path)
    with pytest.raises(EpochsError, match="pick a newer one"):
        fenced.promoted(4, 50)
    assert fenced.promoted(6, 50) == Epochs(((1, 1), (3, 40), (6, 50)), known=4)
    (tmp_path / "epochs.json").write_text('{"epochs": [[1, Infinity]]}')
    with pytest.raises(EpochsError, match="malformed epochs file"):
        Epochs.load(tmp_path)


def test_keep_before_cuts_at_the_first_epoch_the_primary_did_not_continue() -> None:
    """``keep_before``: "the last seq it may keep (every later one was written in an epoch the
    primary did not continue"; "Raises ``EpochsError`` when the histories disagree"."""
    said("epochs")
    mine = Epochs(((1, 1), (2, 50)))
    assert mine.keep_before(Epochs(((1, 1), (3, 40)))) == 39
    assert mine.keep_before(Epochs(((1, 1), (2, 50), (3, 60)))) == 59
    assert mine.keep_before(Epochs(((1, 1), (2, 50)))) is None
    with pytest.raises(EpochsError, match="disagree"):
        mine.keep_before(Epochs(((1, 1), (2, 45))))


def test_first_seqs_of_epochs_never_decrease() -> None:
    """``Epochs.history``: "``(epoch, first_seq)``: epochs strictly increasing, first seqs
    never decreasing (a promotion that wrote nothing is followed by the next at the same
    seq)" (review 124: it said both strictly increasing)."""
    said("epochs")
    Epochs(((1, 1), (2, 1)))
    with pytest.raises(EpochsError):
        Epochs(((1, 5), (2, 4)))


def test_the_ack_block_layout(tmp_path: Path) -> None:
    """replication_ack.py: "Each word is an aligned int64 ..., and each side writes only its
    own 128-byte line."; ``AckBlock``: "``ACKED_SEQ`` is 0 until a standby has said where it
    is"."""
    said("replication_ack")
    r = ack
    block = AckBlock(tmp_path)
    try:
        assert block.acked_seq == 0 and block.words[0] == r.LAYOUT
        assert os.path.getsize(block.path) == r.SIZE and block.path.stat().st_mode & 0o777 == 0o600
        router = (r.JOURNAL_SEQ, r.DEGRADED, r.DEGRADED_TOTAL, r.DEGRADED_SINCE_NS)
        source = (r.ACKED_SEQ, r.CONNECTED, r.SOURCE_PARKED, r.FENCED)
        assert {w * 8 // 128 for w in router} == {1} and {w * 8 // 128 for w in source} == {2}
        block.appended(9)
        block.acknowledged(4)
        assert block.status()["lag"] == 5
    finally:
        block.close()
    (tmp_path / r.BLOCK_FILE).write_bytes(b"X" * r.SIZE)
    with pytest.raises(ValueError, match="layout tag"):
        AckBlock(tmp_path)


def test_a_doorbell_never_blocks_and_wakes_once(tmp_path: Path) -> None:
    """``Doorbell``: "``ring`` never blocks, ``wait`` sleeps until rung or timed out"; "both
    open the FIFO read-write"."""
    said("replication_ack")
    bell = Doorbell(tmp_path / "bell")
    try:
        for _ in range(70_000):  # past a pipe's 64 KiB
            bell.ring()
        assert bell.wait(0.0) and not bell.wait(0.001)
    finally:
        bell.close()


def test_a_sync_gate_degrades_resumes_and_stops_when_fenced(tmp_path: Path) -> None:
    """``SyncGate``: "Without that acknowledgement for ``timeout_ms`` ... it returns True
    *degraded*"; "sets the ``DEGRADED`` word"; "returns to sync at the first batch before which
    the standby has acknowledged everything journaled"; "It returns False when ``stop()`` turns
    true first, or the primary is fenced"."""
    said("replication_ack")
    block = AckBlock(tmp_path)
    now = [0.0]

    def drain() -> int:
        now[0] += 0.004
        return 0

    def ack_and_count(seq: int) -> int:  # the standby acknowledges while the router drains
        return block.acknowledged(seq) or 1  # type: ignore[func-returns-value]

    try:
        gate = SyncGate(block, 10, spin=True, clock=lambda: now[0])
        assert gate.wait(5, drain) and gate.degraded
        assert block.words[ack.DEGRADED] == 1
        assert gate.wait(6, drain) and gate.degraded  # still behind: async
        block.acknowledged(6)
        assert gate.wait(7, lambda: ack_and_count(7), before=6) and not gate.degraded
        assert block.words[ack.DEGRADED] == 0
        assert not gate.wait(99, drain, stop=lambda: True)
        block.words[ack.FENCED] = 2
        assert not gate.wait(6, drain)
    finally:
        block.close()


def test_token_bucket_arithmetic() -> None:
    """token_bucket.py: "``rate`` tokens a second, at most a second's worth held (more only by
    ``credit``, until spent)"; "A reading earlier than the last refills nothing and counts on
    from itself"; ``charge``: "a debt, of a second's worth at most"."""
    said("token_bucket")
    s = 1_000_000_000
    bucket = TokenBucket(10, 0)
    assert all(bucket.allow(0) for _ in range(10)) and not bucket.allow(0)
    assert bucket.allow(s // 2, 5) and not bucket.allow(s // 2)
    assert not bucket.allow(100 * s, 11) and bucket.allow(100 * s, 10)
    assert not bucket.allow(50 * s) and bucket.at_ns == 50 * s  # refilled nothing
    assert bucket.allow(50 * s + s // 10)  # one token from the earlier reading on
    bucket.credit(2.0, 60 * s)
    assert bucket.tokens == pytest.approx(30) and bucket.allow(60 * s, 30)
    bucket.charge(1_000, 60 * s)
    assert bucket.tokens == -10 and not bucket.allow(61 * s) and bucket.allow(62 * s)


def test_latency_histogram_buckets_and_sum() -> None:
    """``LatencyHistogram``: "Counts per bucket (not cumulative) and the sum, in ns";
    ``record``: "the sum takes it within [0, ``SUM_CAP_NS``]"; ``histogram_counters``: "in
    ``LatencyHistogram.values()``' order"; ``REJECT_REASONS``: "(any other value counts as"
    other)."""
    said("stats")
    h = LatencyHistogram()
    for ns in (10_000, 10_001, -5, 10**13):
        h.record(ns)
    assert h.counts[0] == 2 and h.counts[1] == 1 and h.counts[-1] == 1 and h.count == 4
    assert h.sum_ns == 20_001 + SUM_CAP_NS
    names = histogram_counters("ack")
    assert len(names) == len(h.values()) and names[0] == "ack_sum_ns"
    assert names[1] == "ack_le_10us" and names[-1] == "ack_le_inf" and h.values()[0] == h.sum_ns
    assert reject_slot(12_345) == reject_slot(99) == list(REJECT_REASONS).index(99)


def _rec(msg: str, exc: Any = None) -> logging.LogRecord:
    return logging.LogRecord("x", logging.ERROR, "p", 1, msg, None, exc)


def test_quiet_filter_lets_a_burst_through_per_period(monkeypatch: pytest.MonkeyPatch) -> None:
    """``QuietFilter``: "At most ``burst`` records per ``period_s`` (monotonic), each cut
    short; a count of those dropped goes with the next one let through."; quiet_log.py: "(its
    traceback to three times that)"."""
    said("quiet_log")
    now = [100.0]
    monkeypatch.setattr("procs.common.quiet_log.time.monotonic", lambda: now[0])
    quiet = QuietFilter(burst=2, period_s=60, max_chars=40)
    try:
        raise ValueError("x" * 500)
    except ValueError:
        exc = sys.exc_info()
    first = _rec("a" * 100, exc)
    assert quiet.filter(first) and len(first.getMessage()) <= 40
    assert first.exc_info is None and len(first.exc_text or "") <= 120
    assert quiet.filter(_rec("b")) and not quiet.filter(_rec("c")) and not quiet.filter(_rec("d"))
    now[0] += 60
    later = _rec("e")
    assert quiet.filter(later) and later.getMessage() == "e (2 more like it dropped)"


def test_a_record_let_through_after_drops_is_cut_to_max_chars(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """quiet_log.py: "lets ``burst`` records through per ``period_s``, each cut to
    ``max_chars``"."""
    said("quiet_log")
    now = [100.0]
    monkeypatch.setattr("procs.common.quiet_log.time.monotonic", lambda: now[0])
    quiet = QuietFilter(burst=1, period_s=60, max_chars=40)
    assert quiet.filter(_rec("a")) and not quiet.filter(_rec("b"))
    now[0] += 60
    record = _rec("c" * 100)
    assert quiet.filter(record) and len(record.getMessage()) <= 40, record.getMessage()


def test_users_file_comp_ids_sessions_and_mode(tmp_path: Path) -> None:
    """users.py: "letters, digits and ``._:-``, a letter or digit first, 1..32 of them"; "a
    removed user's id, which the gateways route reports by, is never given to another user";
    ``add``: "keeps its session id when it exists"; ``verify``: "None for a wrong password or
    unknown user"; the file: "salts and digests: the owner's alone"."""
    said("users")
    assert comp_id_refused("A" * 32) == "" and comp_id_refused("a.b_c:d-e") == ""
    for bad in ("", ".", "..", "-a", "a/b", "a=b", "A" * 33, None):
        assert comp_id_refused(bad)
    store = UserStore(tmp_path / "users.json")
    alice = store.add("alice", "pw", 7, n=16)
    assert store.add("alice", "pw2", 8, n=16).session == alice.session == 1
    assert store.remove("alice") and store.add("bob", "pw", 9, n=16).session == 2
    assert store.verify("bob", "pw") and not store.verify("bob", "pX")
    assert store.verify("nobody", "pw") is None
    assert (tmp_path / "users.json").stat().st_mode & 0o777 == 0o600
    assert UserStore(tmp_path / "users.json").get("bob") == store.get("bob")


def test_api_keys_file_mode_shapes_and_mtimes(tmp_path: Path) -> None:
    """apikeys.py: "created with mode 0600"; "32 url-safe characters"; "64 hex characters";
    "sorted, a subset of SCOPES"; change_log.py: "no snapshot: no records, the log not read"
    (deleted: no key is valid any more)."""
    said("apikeys", "change_log")
    path = tmp_path / "apikeys.json"
    store = ApiKeyStore(path, recheck_s=0)
    user = User("alice", 7, 1, "00", "00")
    key = store.create(user, ["trade", "read"], "bot")
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", key.key) and re.fullmatch("[0-9a-f]{64}", key.secret)
    assert key.scopes == ["read", "trade"]
    assert path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "apikeys.json.lock").stat().st_mode & 0o777 == 0o600
    log_size = (tmp_path / "apikeys.log").stat().st_size
    assert store.revoke("nope") is False
    assert (tmp_path / "apikeys.log").stat().st_size == log_size  # nothing written
    store.create(user, "read")
    assert (tmp_path / "apikeys.log").stat().st_size > log_size
    for bad, label in ((["write"], ""), ([], ""), (["read"], "x" * 65), (["read"], "a\nb")):
        with pytest.raises(ValueError):
            store.create(user, bad, label)
    path.unlink()
    assert store.get(key.key) is None


def test_api_keys_limit_eviction_and_find(tmp_path: Path) -> None:
    """``create``: "a user who already has ``max_keys_per_user`` keys, unless
    ``evict_oldest``: then that user's oldest key is revoked"; ``find``: "a key another
    gateway just made"."""
    said("apikeys")
    path = tmp_path / "apikeys.json"
    store, other = ApiKeyStore(path, 2), ApiKeyStore(path, 2, recheck_s=3600)
    user = User("alice", 7, 1, "00", "00")
    made = [store.create(user, "read") for _ in range(2)]
    with pytest.raises(ValueError, match="has 2 API keys, the limit is 2"):
        store.create(user, "read")
    third = store.create(user, "read", evict_oldest=True)
    assert store.evicted == min(made, key=lambda k: (k.created_ms, k.key))
    assert other.find(third.key) == third == other.get(third.key)  # get: the log grew


def test_try_lock_is_exclusive_and_dies_with_its_holder(tmp_path: Path) -> None:
    """file_locks.py: "given back by closing it, and by the kernel when its process dies (a
    SIGKILL included)"; ``try_lock``: "(made, mode 0600, where missing)", "or None while
    another descriptor holds it (another process, or this one)"."""
    said("file_locks")
    path = tmp_path / "claim"
    fd = try_lock(path)
    assert fd is not None and path.stat().st_mode & 0o777 == 0o600
    assert try_lock(path) is None
    os.close(fd)
    code = "import sys,time;from procs.common.file_locks import try_lock as t;"
    code += f"print(t(__import__('pathlib').Path({str(path)!r})),flush=True);time.sleep(60)"
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE) as child:
        assert child.stdout is not None and child.stdout.readline().strip() != b"None"
        assert try_lock(path) is None
        child.kill()
    fd = try_lock(path)
    assert fd is not None
    os.close(fd)


def test_the_instance_lock_and_status_reads(tmp_path: Path) -> None:
    """``instance_lock``: "an exclusive ``flock`` on ``run/supervisor.lock``"; "the file
    holds the holder's pid, for the refusal to name it";
    ``read_json``: "or None while there is none"; ``supervisor_running``: "(its pid alive
    *and* started when the file says"."""
    said("run_files")
    cfg = config(tmp_path)
    lock = tmp_path / cfg.instance / "run" / "supervisor.lock"
    with rf.instance_lock(cfg):
        assert lock.read_text() == f"{os.getpid()}\n" and lock.stat().st_mode & 0o777 == 0o600
        with (
            pytest.raises(rf.InstanceBusyError, match=f"supervisor pid {os.getpid()}"),
            rf.instance_lock(cfg),
        ):
            pass
    for text in ("[1]", "{bad", ""):
        (tmp_path / "s.json").write_text(text)
        assert rf.read_json(tmp_path / "s.json") is None
    started = process_start(os.getpid())
    status = {"state": "running", "supervisor_pid": os.getpid(), "supervisor_started": started}
    assert rf.supervisor_running(status) == os.getpid()
    assert rf.supervisor_running({**status, "supervisor_started": (started or 0) + 1}) is None
    assert rf.supervisor_running({**status, "state": "stopped"}) is None


def test_the_paths_and_ring_names(tmp_path: Path) -> None:
    """topology.py: "ring names are 1..48 of ``[A-Za-z0-9_-]``"; ``journal_archive_dir``:
    "(``journal.archive_dir``, by default beside the journal)"; ``rings``: "a process that is
    off (``enabled = false``) has no consumer lines"."""
    said("topology")
    cfg = config(tmp_path)
    root = tmp_path / cfg.instance
    assert topo.journal_dir(cfg) == root / "journal"
    assert topo.journal_archive_dir(cfg) == root / "journal-archive"
    shared = msgspec.structs.replace(cfg.journal, archive_dir="/vol/a")
    assert topo.journal_archive_dir(config(tmp_path, journal=shared)) == Path(
        "/vol/a", cfg.instance
    )
    assert topo.users_path(cfg) == topo.apikeys_path(cfg).with_name("users.json")
    specs = topo.rings(cfg)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,48}", s.name) for s in specs)
    assert any(topo.MARKETDATA in s.consumers for s in specs)
    off = msgspec.structs.replace(cfg.marketdata, enabled=False)
    assert not any(
        topo.MARKETDATA in s.consumers for s in topo.rings(config(tmp_path, marketdata=off))
    )


def test_types_bounds_and_client_ids() -> None:
    """types.py: "ids: non-negative, fit an int64"; ``client_id_of``: "itself where it is at
    most ``MAX_CLIENT_ID`` bytes of printable ASCII", else empty."""
    said("types")
    assert [msgspec.convert(v, U64) for v in (0, 2**63 - 1)] == [0, 2**63 - 1]
    for bad in (-1, 2**63):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(bad, U64)
    assert client_id_of(b"a" * 36) == b"a" * 36 and client_id_of(b"a" * 37) == b""
    assert client_id_of(b"ab\x01") == b"" and client_id_of(b"\xe9") == b""
    assert OrderFlag.ALL == OrderFlag.POST_ONLY | OrderFlag.CAPPED
