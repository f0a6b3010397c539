"""Review 140: a hostile review of the hot-standby link, fed garbled, truncated, replayed,
reordered and malicious byte streams on both ends.

Sound (plain tests): ``wire.receive`` bounds a frame before its body (0, the limit, +1,
2**32 - 1), naming both; any body (hypothesis: raw bytes, tagged arrays of random values) is a
message or a ``FrameError``; a stream split at every byte or many frames in one read decode
the same. The primary (a real source on 127.0.0.1) drops a first frame that is no Hello
(garbage, over 4 KiB, cut short, another message), refuses Hellos at their bounds by name,
drops a standby whose ack is past what it was sent or garbled, and keeps a real standby
acknowledged while hostile peers hang on its port. The standby refuses a garbled frame, an
over-limit length, a wrong digest, a gap, a replay and a message out of place, unacknowledged
and unwritten; acks each of many frames in one read; times out a primary silent mid-frame;
meets any epoch history (hypothesis) with a refusal at worst; refuses state-file names
outside its kinds (``../x``, ``/etc/passwd``, NUL, 10,000 characters) writing nothing, and
drops the link naming it.

Faults found (strict xfails when written; all five fixed since, the same session: the
standby decodes every image before it writes, a shipped piece must start where its file
ends, a peer's first message must come whole within ``FIRST_WORD_SILENCES`` silences, and
anything but an Ack after the Hello drops the peer):

1. ``standby.py:137-160`` ``persist`` checks no image against the slot: images of other sizes
   summing to whole slots, or an undecodable slot (with a digest matching them), are
   journaled, fsynced and acked, then ``apply`` raises ``RecordDecodeError`` out of
   ``_connect_loop`` (the process dies; each restart's recovery fails on the entry); a short
   image raises a bare ``ValueError``. Fix: check each image's length and decode it before the
   append, refusing the frame with its seq.
2. ``files.py:175-178`` a chunk that is no reset is pwritten at any offset: past the end, a
   hole of zeros (2**30: a 1 GiB sparse ``users.json``); a reset chunk at a non-zero offset
   with no assembly under way lands in the live copy. Fix: refuse an offset that is not the
   copy's end, naming both.
3. ``files.py:173-185`` a piece of a file sent whole is written at its offset whatever came
   before: out of order, zeros between, and the copy replaced by that. Fix: the same check
   against the aside file.
4. ``source.py:238`` the Hello's wait bounds only the silence between bytes: a byte every
   ``SILENCE_S`` - epsilon holds the link (4 KiB: two hours), against "whatever connects
   cannot hold this side". Fix: one ``asyncio.timeout`` around the whole first receive.
5. ``source.py:346-347`` after the Hello any message but an Ack (a Hello, a StateFile, an
   Entries) counts as heard and the link stays. Fix: drop the peer, naming the type.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from procs.common.record_codec import RecordCodec
from procs.common.replication_ack import CONNECTED
from procs.replica import source as source_module
from procs.replica import standby as standby_module
from procs.replica.files import FileReceiver
from procs.replica.source import ReplicationSource
from procs.replica.standby import Standby, StandbyRefusedError
from procs.replica.wire import (
    GENESIS,
    MAX_FRAME,
    MAX_PEER_FRAME,
    Ack,
    AskDigests,
    Entries,
    EpochHistory,
    FrameError,
    Heartbeat,
    Hello,
    History,
    Message,
    Refused,
    StateFile,
    receive,
)
from tests.unit.replica.test_review33_failover import CODEC_RECORDS
from tests.unit.replica.test_review_replica_bugs import append, following, pair, until
from tests.unit.replica.test_standby import COMMANDS, frame
from tests.unit.replica.test_standby import standby as make_standby

CODEC = RecordCodec()
SLOT = CODEC.slot_size
_ENC = msgspec.msgpack.Encoder()
EPOCHS = EpochHistory([(1, 1)], *CODEC_RECORDS)


def _framed(body: bytes, length: int | None = None) -> bytes:
    return (len(body) if length is None else length).to_bytes(4, "little") + body


def _wire(*messages: Message) -> bytes:
    return b"".join(_framed(_ENC.encode(m)) for m in messages)


def _entries(first: int, images: list[bytes]) -> Entries:
    """Entries whose digest matches ``images``, whatever they hold (images no history can
    hash, not whole slots: any digest, the standby refusing them before it hashes)."""
    history = History()
    with contextlib.suppress(ValueError):
        history.update(b"".join(images))
    return Entries(first, images, history.digest())


async def _read_all(data: bytes, limit: int, chunks: list[int] | None = None) -> list[object]:
    """Every message of ``data`` fed in pieces of ``chunks`` (or whole), then the error that
    ended the stream, by type (an IncompleteReadError at a clean end: "EOF")."""
    reader = asyncio.StreamReader()
    pos = 0
    for size in chunks or []:
        reader.feed_data(data[pos : pos + size])
        pos += size
    reader.feed_data(data[pos:])
    reader.feed_eof()
    out: list[object] = []
    while True:
        try:
            out.append(await receive(reader, limit))
        except asyncio.IncompleteReadError as exc:
            out.append("EOF" if not exc.partial else "cut")
            return out
        except FrameError as exc:
            out.append(exc)
            return out


def _decode_one(body: bytes, limit: int = MAX_FRAME) -> object:
    return asyncio.run(_read_all(_framed(body), limit))[0]


# -- wire.receive -------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [MAX_PEER_FRAME, MAX_FRAME])
@pytest.mark.parametrize("over", [1, 2, None])
def test_a_length_past_the_limit_is_refused_before_its_body(limit: int, over: int | None) -> None:
    length = 2**32 - 1 if over is None else limit + over
    got = asyncio.run(_read_all(_framed(b"", length), limit))  # no body follows: not awaited
    assert isinstance(got[0], FrameError)
    assert f"{length} bytes, the limit is {limit}" in str(got[0])


def test_lengths_zero_and_the_limit_read_the_body() -> None:
    assert isinstance(_decode_one(b""), FrameError)
    body = _ENC.encode(Hello(1, b"x" * 300))
    hello = Hello(1, b"x" * (300 + MAX_PEER_FRAME - len(body)))
    assert len(_ENC.encode(hello)) == MAX_PEER_FRAME  # exactly the limit: read
    assert _decode_one(_ENC.encode(hello), MAX_PEER_FRAME) == hello
    got = _decode_one(_ENC.encode(hello) + b"\x00", MAX_PEER_FRAME + 1)  # trailing bytes
    assert isinstance(got, FrameError) and "does not decode" in str(got)


@pytest.mark.parametrize(
    "value",
    [
        [1, -1, b""], [1, 2**63, b""], [1, 2**64 - 1, b""], [3, -(2**63)], [99, 1],
        [1, 1, b"", 1, 0, 0, 0, "c" * 65], [9, list(range(1, 66))], [9, [0]],
        [5, "users.json", -5, b"", False], [2, 1, [b"x"] * 2, "not bytes"], {"next_seq": 1},
    ],
)  # fmt: skip
def test_hostile_bodies_do_not_decode(value: object) -> None:
    got = _decode_one(_ENC.encode(value))
    assert isinstance(got, FrameError) and "does not decode" in str(got), got


STREAM = _wire(EPOCHS, frame(1, COMMANDS), Heartbeat(), StateFile("users.json", 0, b"[]", True))


def test_a_stream_split_at_every_byte_or_in_one_read_decodes_the_same() -> None:
    whole = asyncio.run(_read_all(STREAM, MAX_FRAME))
    assert len(whole) == 5 and whole[-1] == "EOF"
    for cut in range(1, len(STREAM)):
        assert asyncio.run(_read_all(STREAM, MAX_FRAME, [cut])) == whole, cut
    assert asyncio.run(_read_all(STREAM, MAX_FRAME, [1] * len(STREAM))) == whole
    for cut in range(0, len(STREAM), 7):  # a stream cut short: its whole frames, then "cut"
        got = asyncio.run(_read_all(STREAM[:cut], MAX_FRAME))
        assert got[-1] in ("EOF", "cut") and got[:-1] == whole[: len(got) - 1]


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.binary(max_size=200))
def test_any_bytes_are_messages_or_a_frame_error(data: bytes) -> None:
    got = asyncio.run(_read_all(data, MAX_PEER_FRAME))
    assert all(isinstance(m, Message) for m in got[:-1])
    assert got[-1] in ("EOF", "cut") or isinstance(got[-1], FrameError)


_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.binary(max_size=8)
    | st.text(), lambda inner: st.lists(inner, max_size=4), max_leaves=12,
)  # fmt: skip


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.integers(0, 12), st.lists(_VALUES, max_size=8))
def test_any_tagged_array_is_a_message_or_a_frame_error(tag: int, values: list[object]) -> None:
    got = _decode_one(_ENC.encode([tag, *values]))
    assert isinstance(got, Message | FrameError), got


# -- the primary, on a real socket --------------------------------------------------------------

T = TypeVar("T")
HELLO_1 = Hello(1, GENESIS, 1, *CODEC_RECORDS)


def _served(tmp_path: Path, body: Callable[[ReplicationSource, int], Awaitable[T]]) -> T:
    """``body(source, port)`` against a real source of seqs 1..3 on 127.0.0.1."""
    primary, _ = pair(tmp_path)
    append(primary, 1, 3)

    async def scenario() -> T:
        source = ReplicationSource(primary)
        serving = asyncio.create_task(source.run())
        try:
            await asyncio.sleep(0.05)  # listening
            got = await body(source, primary.replication.listen_port)
            assert not serving.done(), serving  # no peer ended the server
            return got
        finally:
            source.stopping.set()
            await serving
            source.close()

    return asyncio.run(scenario())


Reply = Callable[[Message], bytes | None]


def _on_entries(answer: bytes) -> Reply:
    return lambda m: answer if isinstance(m, Entries) else None


async def _talk(
    port: int, raw: bytes, wait_s: float = 1.5, reply: Reply | None = None
) -> list[object]:
    """What the source at ``port`` sends a peer that sent ``raw``: each message, then "EOF"
    (closed) or "open" (still open after ``wait_s``); ``reply`` answers each message."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    got: list[object] = []
    try:
        writer.write(raw)
        deadline = loop.time() + wait_s
        while True:
            try:
                message = await asyncio.wait_for(receive(reader), max(0.0, deadline - loop.time()))
            except TimeoutError:
                return [*got, "open"]
            except (asyncio.IncompleteReadError, ConnectionError):
                return [*got, "EOF"]
            got.append(message)
            writer.write((reply and reply(message)) or b"")
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def test_hostile_first_frames_close_the_link_and_the_source_serves_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(source_module, "SILENCE_S", 0.3)
    dropped = [  # (\xc1: never a msgpack byte; the last two cut short, silence ends them)
        _framed(b"", 0), _framed(b"", MAX_PEER_FRAME + 1), _framed(b"", 2**32 - 1),
        _framed(b"\xc1" * 16), b"GET / HTTP/1.1\r\n\r\n", _wire(HELLO_1)[:9], b"\x05\x00",
    ]  # fmt: skip
    refused: list[Message] = [
        Ack(3), Heartbeat(), Refused("x"), frame(1, COMMANDS), StateFile("a", 0, b"", True)
    ]  # fmt: skip

    async def body(source: ReplicationSource, port: int) -> list[object]:
        for raw in dropped:
            assert await _talk(port, raw) == ["EOF"], raw
        for message in refused:
            got = await _talk(port, _wire(message))
            assert isinstance(got[0], Refused) and got[1:] == ["EOF"], got
            assert f"expected Hello, got {type(message).__name__}" in got[0].reason
        assert source.block.words[CONNECTED] == 0
        return await _talk(port, _wire(HELLO_1), wait_s=0.4)

    got = _served(tmp_path, body)
    assert isinstance(got[0], EpochHistory) and isinstance(got[1], Entries), got
    assert got[1].first_seq == 1 and len(got[1].images) == 3
    assert f"the limit is {MAX_PEER_FRAME}" in caplog.text and "does not decode" in caplog.text


@pytest.mark.parametrize(
    ("seq", "digest", "says"),
    [
        (0, GENESIS, "next seq 0: seqs start at 1"),
        (2**63 - 1, GENESIS, f"standby is at seq {2**63 - 2}"),
        (5, GENESIS, "standby is at seq 4, the primary at 3"),
        (2, GENESIS, "history differs before seq 2"),
        (2, b"", "a build before 2026-11-27"),
        (4, b"\xff" * 4000, "a build before 2026-11-27"),
    ],
)
def test_a_hello_at_its_bounds_is_refused_by_name(
    tmp_path: Path, seq: int, digest: bytes, says: str
) -> None:
    async def body(source: ReplicationSource, port: int) -> list[object]:
        got = await _talk(port, _wire(Hello(seq, digest, 1, *CODEC_RECORDS)))
        assert source.block.words[CONNECTED] == 0 and source.acked == 0
        return got

    got = _served(tmp_path, body)
    assert isinstance(got[0], EpochHistory) and isinstance(got[1], Refused), got
    assert says in got[1].reason and got[2:] == ["EOF"]


@pytest.mark.parametrize(
    "answer",
    [_wire(Ack(99)), _wire(Ack(2**63 - 1)), b"\xff\xff\xff\xff", _framed(b"\xc1"), b"\x01"],
)
def test_a_broken_ack_drops_the_standby(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answer: bytes
) -> None:
    monkeypatch.setattr(source_module, "STANDBY_SILENCE_S", 0.5)  # (b"\x01": cut short)

    async def body(source: ReplicationSource, port: int) -> list[object]:
        got = await _talk(port, _wire(HELLO_1), 2.0, _on_entries(answer))
        await until(lambda: source.block.words[CONNECTED] == 0)
        assert source.acked == 0  # never the broken ack
        return got

    assert _served(tmp_path, body)[-1] == "EOF"


@pytest.mark.parametrize("wrong", [HELLO_1, StateFile("users.json", 0, b"", True), frame(1, [])])
def test_a_message_out_of_place_after_the_hello_ends_the_link(
    tmp_path: Path, wrong: Message
) -> None:
    async def body(source: ReplicationSource, port: int) -> list[object]:
        return await _talk(port, _wire(HELLO_1), 1.5, _on_entries(_wire(wrong)))

    got = _served(tmp_path, body)
    assert got[-1] == "EOF", got


def test_a_drip_fed_hello_is_cut_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source_module, "SILENCE_S", 0.3)

    async def drip(source: ReplicationSource, port: int) -> float | None:
        """A byte every 0.1 s: when the source closed the link, or None (open after 2.5 s)."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for byte in _framed(b"\x00" * MAX_PEER_FRAME):
                if loop.time() - began > 2.5:
                    return None
                writer.write(bytes([byte]))
                with contextlib.suppress(TimeoutError):
                    if not await asyncio.wait_for(reader.read(1), 0.1):
                        return loop.time() - began
            return None
        finally:
            writer.close()

    took = _served(tmp_path, drip)
    assert took is not None, "still open after 2.5 s, 8 x SILENCE_S"


def test_hostile_peers_on_the_port_do_not_hold_up_a_standby(tmp_path: Path) -> None:
    primary, secondary = pair(tmp_path)
    append(primary, 1, 3)
    port = primary.replication.listen_port

    async def scenario() -> None:
        async with following(primary, secondary) as (source, follower, task):
            await until(lambda: follower.next_seq == 4 and source.acked == 3)
            loop = asyncio.get_running_loop()
            raws = (_framed(b"", MAX_PEER_FRAME), _wire(HELLO_1), _wire(AskDigests([1])), b"\0")
            hostile = [loop.create_task(_talk(port, raw, 1.5)) for raw in raws]
            for first in range(4, 40, 4):
                append(primary, first, 4)
                await asyncio.sleep(0.02)
            await until(lambda: source.acked == 39 or task.done())
            assert not task.done() and follower.next_seq == 40
            await asyncio.gather(*hostile)

    asyncio.run(scenario())


# -- the standby --------------------------------------------------------------------------------


@pytest.fixture
def standby(tmp_path: Path) -> Iterator[Standby]:
    made = make_standby(tmp_path)
    yield made
    made.journal.close()


async def _fed(standby: Standby, raw: bytes, hold_s: float = 0.3) -> tuple[list[Message], object]:
    """What ``standby._follow`` sends a fake primary answering with ``raw``; what ended it."""
    got: list[Message] = []

    async def primary(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            got.append(await receive(reader))
            writer.write(raw)
            with contextlib.suppress(Exception):
                while True:
                    got.append(await receive(reader, silence_s=hold_s))
        finally:
            writer.close()

    server = await asyncio.start_server(primary, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
    ended: object = None
    try:
        await asyncio.wait_for(standby._follow(reader, writer), 10)
    except Exception as exc:
        ended = exc
    finally:
        writer.close()
        server.close()
        await server.wait_closed()
    return got, ended


@pytest.mark.parametrize(
    ("tail", "ended", "says"),
    [
        (_framed(b"\xc1" * 40), FrameError, "does not decode"),
        (_framed(b"", MAX_FRAME + 1), FrameError, f"the limit is {MAX_FRAME}"),
        (_framed(b"", 2**32 - 1), FrameError, "4294967295 bytes"),
        (_wire(Entries(1, frame(1, COMMANDS).images, GENESIS)), StandbyRefusedError, "hash"),
        (_wire(frame(2, COMMANDS[1:])), StandbyRefusedError, "gap: the primary sent seq 2"),
        (_wire(Entries(0, [], GENESIS)), StandbyRefusedError, "gap: the primary sent seq 0"),
        (_wire(HELLO_1), StandbyRefusedError, "unexpected Hello"),
        (_wire(Ack(1)), StandbyRefusedError, "unexpected Ack"),
        (_wire(EPOCHS), StandbyRefusedError, "unexpected EpochHistory"),
        (_wire(Refused("go away")), StandbyRefusedError, "go away"),
    ],
)
def test_a_garbled_frame_after_the_epochs_is_refused_unacknowledged(
    standby: Standby, tail: bytes, ended: type, says: str
) -> None:
    got, end = asyncio.run(_fed(standby, _wire(EPOCHS) + tail))
    assert isinstance(end, ended) and says in str(end), end
    assert [type(m) for m in got] == [Hello]  # nothing acknowledged
    assert standby.next_seq == 1 and standby.history.digest() == GENESIS


def test_frames_in_one_read_are_each_acked_and_a_replay_refused(standby: Standby) -> None:
    raw = _wire(EPOCHS, frame(1, COMMANDS[:1]), Heartbeat(), frame(2, COMMANDS[1:]))
    got, end = asyncio.run(_fed(standby, raw + _wire(frame(2, COMMANDS[1:]))))
    assert isinstance(end, StandbyRefusedError) and "gap: the primary sent seq 2" in str(end)
    assert got[1:] == [Ack(1), Ack(1), Ack(2)] and standby.next_seq == 3
    assert standby.state.sequencer.accounts.balance(7, 1)[0] == 100  # applied once


def test_a_primary_silent_mid_frame_times_out(
    standby: Standby, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(standby_module, "SILENCE_S", 0.3)
    cut = _wire(frame(1, COMMANDS))
    got, end = asyncio.run(_fed(standby, _wire(EPOCHS) + cut[: len(cut) // 2], hold_s=2.0))
    assert isinstance(end, TimeoutError) and got[1:] == [] and standby.next_seq == 1


_GOOD = CODEC.encode_slot(COMMANDS[0])


@pytest.mark.parametrize(
    "images",
    [[_GOOD + b"\x00", _GOOD[:-1]], [b"\xff" * SLOT], [_GOOD[:-1]]],
    ids=["misaligned", "undecodable", "short"],
)
def test_entries_that_are_not_this_builds_slots_are_refused_unwritten(
    standby: Standby, images: list[bytes]
) -> None:
    raw = _wire(EPOCHS, _entries(1, images))
    got, end = asyncio.run(_fed(standby, raw))
    assert isinstance(end, StandbyRefusedError), repr(end)
    assert [type(m) for m in got] == [Hello] and standby.next_seq == 1


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    st.lists(st.tuples(st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1)), max_size=5)
    | st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), max_size=5)
)
def test_any_epoch_history_is_followed_or_refused(epochs: list[tuple[int, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        standby = make_standby(Path(tmp))
        try:
            standby.receive_entries(frame(1, COMMANDS))
            with contextlib.suppress(StandbyRefusedError):
                standby.follow_epochs(EpochHistory(epochs, *CODEC_RECORDS))
            assert standby.next_seq == 3
        finally:
            standby.journal.close()


# -- the standby's state files ------------------------------------------------------------------


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    "name",
    [
        "../x", "../users.json", "/etc/passwd", "gw1/../../x", "../journal/units.json",
        "gw1/../users.json", "./users.json", "..", "", "gw1//orders.log", "gw1/orders.log\n",
        "gw1/orders.log\x00", "a\x00b/orders.log", "users.json/", "gw1/sub/orders.log",
        "gw1/session.store", "x" * 10_000, "x" * 65 + "/orders.log", "\\..\\x",
        "gw1/orders.log/../../../x", "USERS.JSON", "users.json.shipping",
    ],
)  # fmt: skip
def test_a_state_file_outside_the_shipped_kinds_is_refused_and_writes_nothing(
    tmp_path: Path, name: str
) -> None:
    before = _files(tmp_path)
    with pytest.raises(ValueError, match="not a gateway state file") as caught:
        FileReceiver(tmp_path / "v" / "gateway").apply(StateFile(name, 0, b"pwned", True, 5))
    assert repr(name)[:40] in str(caught.value)
    assert _files(tmp_path) == before and not (tmp_path / "x").exists()


def test_a_bad_state_file_on_the_wire_drops_the_link_unacknowledged(
    standby: Standby, caplog: pytest.LogCaptureFixture
) -> None:
    raw = _wire(EPOCHS, StateFile("../../etc/x", 0, b"pwned", True, 5))
    got, end = asyncio.run(_fed(standby, raw))
    assert isinstance(end, ConnectionResetError) and "'../../etc/x'" in str(end), end
    assert [type(m) for m in got] == [Hello]
    assert "'../../etc/x' not written" in caplog.text
    files = _files(Path(standby.cfg.var_dir))
    assert files and not any("pwned" in p.read_text(errors="replace") for p in files)


def test_a_replayed_reset_chunk_starts_the_assembly_again(tmp_path: Path) -> None:
    receiver = FileReceiver(tmp_path / "gateway")
    receiver.apply(StateFile("users.json", 0, b"old", True, 3))
    for _ in range(2):  # a connection lost mid-way: the next sends it whole again
        receiver.apply(StateFile("users.json", 0, b"new-", True, 8))
        assert (tmp_path / "gateway/users.json").read_bytes() == b"old"
    receiver.apply(StateFile("users.json", 4, b"copy", False))
    assert (tmp_path / "gateway/users.json").read_bytes() == b"new-copy"


@pytest.mark.parametrize(
    "chunk",
    [StateFile("gw1/orders.log", 1 << 30, b"x", False), StateFile("gw1/orders.log", 2, b"Z", True)],
    ids=["past-the-end", "reset-mid-copy"],
)
def test_a_chunk_not_at_the_copys_end_is_refused(tmp_path: Path, chunk: StateFile) -> None:
    receiver = FileReceiver(tmp_path / "gateway")
    receiver.apply(StateFile("gw1/orders.log", 0, b"abcd", True, 4))
    with pytest.raises(ValueError):
        receiver.apply(chunk)
    assert (tmp_path / "gateway/gw1/orders.log").read_bytes() == b"abcd"


def test_pieces_out_of_order_never_replace_the_copy(tmp_path: Path) -> None:
    receiver = FileReceiver(tmp_path / "gateway")
    receiver.apply(StateFile("users.json", 0, b"[1]", True, 3))
    receiver.apply(StateFile("users.json", 0, b"[2,", True, 6))
    with contextlib.suppress(ValueError):
        receiver.apply(StateFile("users.json", 5, b"]", False))  # "3" never came
    assert (tmp_path / "gateway/users.json").read_bytes() == b"[1]"
