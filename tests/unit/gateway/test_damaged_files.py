"""Damage to a gateway's files is told from a crash's torn tail (review 138's faults 5, 6, 8
and 9): a frame whose length overruns the file but is one bit off, or is followed by a whole
frame, is refused, never cut with what follows; a stored FIX message carries a CRC; a
``seqnums`` file of another size or with a zero number is refused; a session whose store is
refused fails its logon over TCP, and the gateway goes on for everyone else."""

from __future__ import annotations

import asyncio
import struct
import zlib
from pathlib import Path

import pytest

from procs.common.crc_frames import HEADER, frame, tail_damage
from procs.gateway.order_log import ORDER, OrderLog, OrderLogError, Recovered
from procs.gateway.store import MAGIC, MessageStore, MessageStoreError
from tests.unit.gateway.harness import Client, Harness, close_all
from tests.unit.gateway.test_gateway import logged_on
from tests.unit.test_review138_feed_and_files_fuzz2 import MESSAGES, _reopened, _stored

# -- crc_frames ----------------------------------------------------------------------------------

BODIES = [b"first body", b"the second, longer body", b"3"]
FRAMES = b"".join(frame(body) for body in BODIES)


def test_a_frame_is_its_length_crc_and_body() -> None:
    assert frame(b"abc") == struct.pack("<II", 3, zlib.crc32(b"abc")) + b"abc"


@pytest.mark.parametrize("cut", range(len(FRAMES)))
def test_every_torn_tail_reads_as_torn(cut: int) -> None:
    """Cut anywhere inside a frame's body, the frame overruns and nothing whole follows."""
    data = FRAMES[:cut]
    at = 0
    while at + HEADER.size <= len(data):
        length = HEADER.unpack_from(data, at)[0]
        if at + HEADER.size + length > len(data):
            assert tail_damage(data, at, 1 << 20) == ""
            return
        at += HEADER.size + length


@pytest.mark.parametrize("bit", range(8, 32))  # a flip that makes the first frame overrun
def test_a_length_one_bit_off_is_damage_in_any_frame(bit: int) -> None:
    for index in range(len(BODIES)):
        at = sum(HEADER.size + len(b) for b in BODIES[:index])
        data = bytearray(FRAMES)
        struct.pack_into("<I", data, at, len(BODIES[index]) ^ (1 << bit))
        why = tail_damage(bytes(data), at, 1 << 20, base=100)
        assert f"is {len(BODIES[index])} with one bit flipped" in why


def test_a_whole_frame_after_a_garbled_length_is_damage() -> None:
    data = bytearray(FRAMES)
    struct.pack_into("<I", data, 0, 0x00FF_FFFF)  # many bits off
    assert tail_damage(bytes(data), 0, 1 << 20, base=100) == (
        f"a whole frame follows it at byte {100 + HEADER.size + len(BODIES[0])}"
    )


# -- the order log ---------------------------------------------------------------------------


def _log(path: Path) -> bytes:
    log = OrderLog(path)
    log.load()
    for n in range(3):
        log.write([(ORDER, n, f"order {n}")])
    log.close()
    return path.read_bytes()


def _load(path: Path) -> Recovered:
    log = OrderLog(path)
    try:
        return log.load()
    finally:
        log.close()


def test_every_flipped_length_bit_of_every_frame_is_refused(tmp_path: Path) -> None:
    """A flip that makes a frame shorter fails its CRC with frames after it; one that makes
    it longer overruns, one bit off: refused either way, naming the frame's byte."""
    path = tmp_path / "orders.log"
    raw = _log(path)
    starts, at = [], 0
    while at < len(raw):
        starts.append(at)
        at += HEADER.size + HEADER.unpack_from(raw, at)[0]
    for start in starts:
        for bit in range(32):
            data = bytearray(raw)
            data[start + bit // 8] ^= 1 << bit % 8
            path.write_bytes(bytes(data))
            with pytest.raises(OrderLogError, match=f"{path}: frame at byte {start} "):
                _load(path)


def test_a_torn_last_frame_is_still_cut(tmp_path: Path) -> None:
    path = tmp_path / "orders.log"
    raw = _log(path)
    path.write_bytes(raw[:-3])
    assert _load(path).orders == {0: ["order 0"], 1: ["order 1"]}
    assert path.stat().st_size < len(raw) - 3


# -- the message store -----------------------------------------------------------------------

# ``MESSAGES``, ``_stored`` and ``_reopened``: review 138's, three messages through the store


def test_every_flipped_bit_is_refused_or_only_the_last_message_cut(tmp_path: Path) -> None:
    """A flip anywhere in ``messages`` (header, lengths, CRCs, seqs, bodies): refused naming
    the file, or every message resent as written but the last, cut as a torn write would be;
    a sent MsgSeqNum is never given again."""
    raw = _stored(tmp_path)
    last_at = len(raw) - (16 + len(MESSAGES[-1][1]))  # a u64 seq since review 225
    for at in range(len(raw)):
        for bit in (0, 3, 7):
            (tmp_path / "messages").write_bytes(
                raw[:at] + bytes([raw[at] ^ 1 << bit]) + raw[at + 1 :]
            )
            try:
                got = _reopened(tmp_path)
            except MessageStoreError as exc:
                assert str(tmp_path / "messages") in str(exc)
                continue
            assert at >= last_at, (at, bit, got)
            assert got == (MESSAGES[:2], 4)


def test_an_older_builds_messages_are_converted_and_a_torn_tail_cut(tmp_path: Path) -> None:
    older = b"".join(struct.pack("<II", len(raw), seq) + raw for seq, raw in MESSAGES)
    (tmp_path / "messages").write_bytes(older + b"\x40\x00\x00\x00\x04\x00")
    assert _reopened(tmp_path) == (MESSAGES, 4)
    data = (tmp_path / "messages").read_bytes()
    assert data.startswith(MAGIC) and len(data) == len(older) + 8 + 8 * len(MESSAGES)


def test_a_version_2_file_is_rewritten_with_u64_seqs_and_a_torn_tail_cut(tmp_path: Path) -> None:
    """Version 2 (a u32 seq, review 225) is rewritten as 3 at the open, every message kept
    with its seq, a torn tail cut; one whose entries are not version 2's is refused."""
    v2 = b"RXMS\x02\x00\x00\x00"
    entries = b"".join(frame(struct.pack("<I", seq) + raw) for seq, raw in MESSAGES)
    (tmp_path / "messages").write_bytes(v2 + entries + b"\x40\x00\x00\x00\x04\x00")
    assert _reopened(tmp_path) == (MESSAGES, 4)
    data = (tmp_path / "messages").read_bytes()
    assert data == MAGIC + b"".join(frame(struct.pack("<Q", s) + raw) for s, raw in MESSAGES)
    (tmp_path / "messages").write_bytes(v2 + data[8:])  # version 3's entries, a flipped bit
    with pytest.raises(MessageStoreError, match="is damaged: its entries are not version 2's"):
        _reopened(tmp_path)


def test_a_file_a_crash_cut_inside_its_header_starts_anew(tmp_path: Path) -> None:
    for head in (MAGIC[:5], bytes(8), bytes(40)):
        (tmp_path / "messages").write_bytes(head)
        assert _reopened(tmp_path) == ([], 1)
        assert (tmp_path / "messages").read_bytes() == MAGIC


def test_a_zeroed_header_with_messages_after_it_is_refused(tmp_path: Path) -> None:
    raw = _stored(tmp_path)
    (tmp_path / "messages").write_bytes(bytes(8) + raw[8:])
    with pytest.raises(MessageStoreError, match="its header"):
        _reopened(tmp_path)


@pytest.mark.parametrize(
    "seqnums",
    [bytes(24), struct.pack("<QQQ", 0, 4, 0), struct.pack("<QQQ", 9, 0, 0), bytes(7), bytes(25)],
)
def test_a_damaged_seqnums_file_names_itself_and_its_mend(tmp_path: Path, seqnums: bytes) -> None:
    _stored(tmp_path)
    (tmp_path / "seqnums").write_bytes(seqnums)
    with pytest.raises(MessageStoreError, match="to start the session's numbers at 1, remove"):
        MessageStore(tmp_path)


def test_a_reset_keeps_the_header_and_carries_parked_messages_with_crcs(tmp_path: Path) -> None:
    store = MessageStore(tmp_path)
    store.park(1, MESSAGES[0][1])
    store.flush()
    carried_seen: list[bytes] = []
    store.before_save = lambda: carried_seen.append((tmp_path / "carried").read_bytes())
    store.reset()
    store.before_save = None
    assert (tmp_path / "messages").read_bytes() == MAGIC
    assert carried_seen[0] == MAGIC + frame(struct.pack("<Q", 1) + MESSAGES[0][1])
    store.close()


# -- a gateway whose session store is damaged --------------------------------------------------


def test_a_damaged_store_fails_that_logon_and_no_other(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """ALICE's ``seqnums`` zeroed: her logon is closed unanswered, a report for her is not
    parked (counted), and BOB logs on and is answered as usual."""

    async def scenario(h: Harness, port: int) -> None:
        gw = h.gateway
        assert gw is not None
        alice_dir = gw.directory / "sessions" / "ALICE"
        alice_dir.mkdir(parents=True, exist_ok=True)
        (alice_dir / "seqnums").write_bytes(bytes(24))
        alice = Client("ALICE")
        await alice.connect(port)
        await alice.send("A", (98, 0), (108, 30), (554, "secret"))
        assert await alice.closed(timeout=5.0)
        user = h.users.get("ALICE")
        assert user is not None
        assert gw.park(user.session, b"8", b"58=x\x01", 0) is False
        bob = await logged_on(port, "BOB")
        await bob.send("1", (112, "ping"))
        assert (await bob.expect("0")).get(112) == b"ping"

    async def main() -> None:
        port = await harness.start()
        try:
            await asyncio.wait_for(scenario(harness, port), 20)
        finally:
            await close_all()
            await harness.stop()

    asyncio.run(main())
    said = caplog.text
    assert "the logon of ALICE failed" in said and "next inbound 0, next outbound 0" in said
    assert "a report to ALICE is not parked" in said
