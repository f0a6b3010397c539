"""Review 125: the replication code's docstrings held against what it does, part 1 of 2.

Here: the wire protocol (``wire.py``: frames, bounds, checks, the Hello/ack exchange, the
operators' questions, heartbeats, silence), ``cluster.py``, the gateways' state files
(``files.py``), ``tail.py``, ``market.py`` and ``main.py``. Part 2: the source, the standby,
``rebuild.py``, the link's TLS and ``scripts/failover.py``. Small in-process objects (a source,
a standby, a fake peer) over local TCP, with tests/unit/replica/'s helpers.

Convention: a test's docstring quotes its claims in double quotes ("..." an elision) and names
the code; ``said(file, ...)`` asserts each quote is in those files, whitespace folded. A claim
found right is a plain test; a disagreement is a strict xfail asserting what the docstring
says, its reason naming the side to fix. Disagreements found (both files; all fixed since):

- ``files.py``: "A log that grew with those bytes unchanged is sent from there ...; any other
  change sends the file again whole", but ``_grew`` (files.py:92) takes an unchanged mtime
  before the tail bytes: a log rewritten in one mtime tick has its end appended. Code side.
- ``source.py`` ``fence``: "then mark the journal fenced", but ``self.epochs`` is taken as
  fenced before its save (source.py:318): after one failed write no later fence writes the
  journal's, and a restarted router opens it. Code side: keep it only once saved.
- ``wire.py``: ``Digests`` holds "one for each seq at most last_seq + 1", but ``_digests``
  (source.py:181) drops a seq 0 an ``AskDigests`` may name. Code side: seqs >= 1.
- ``source.py``: "every answer to a standby begins with this journal's epoch history", but
  ``serve`` (source.py:255) refuses other records, another cluster, a newer epoch or a fenced
  primary with a bare ``Refused``. Docstring side.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import msgspec
import pytest

from config.schema import RingexConfig
from procs.common import gc_policy, sd_notify
from procs.common.journal import JournalCorruptError, list_segments
from procs.common.market_snapshots import MarketSnapshots
from procs.common.record_codec import RecordCodec
from procs.common.replication_ack import FENCED
from procs.common.topology import gateway_root, journal_dir, market_state_path
from procs.replica import cluster, wire
from procs.replica import main as replica_main
from procs.replica.files import FileReceiver, FileShipper
from procs.replica.market import FLUSH_EVERY, HotMarket
from procs.replica.source import ReplicationSource
from procs.replica.standby import Standby, StandbyRefusedError
from procs.replica.wire import (
    GENESIS,
    MAX_DIGESTS,
    MAX_PEER_FRAME,
    Ack,
    AskDigests,
    Digests,
    EpochHistory,
    FrameError,
    Heartbeat,
    Hello,
    Message,
    Refused,
    StateFile,
    receive,
    records_differ,
    send,
)
from tests.scripts_loader import ROOT
from tests.unit.replica.test_review33_failover import CODEC_RECORDS
from tests.unit.replica.test_review_replica_bugs import append, pair
from tests.unit.replica.test_standby import COMMANDS, frame
from tests.unit.replica.test_tail import images, open_journal

CODEC = RecordCodec()
FILES = {
    "failover": "scripts/failover.py",
    "promotion_checks": "procs/supervisor/promotion_checks.py",
}


@functools.cache
def _folded(name: str) -> str:
    text = (ROOT / FILES.get(name, f"procs/replica/{name}.py")).read_text()
    return " ".join(re.sub(r"(?m)^\s*#:?", " ", text).split())


def said(*names: str) -> None:
    """Each quote of the caller's docstring is in one of the files ``names``, folded."""
    caller = sys._getframe(1)
    doc = caller.f_globals[caller.f_code.co_name].__doc__
    quotes = re.findall(r'"(.+?)"', " ".join(doc.split()))
    assert quotes
    for quote in quotes:
        for part in filter(None, (p.strip() for p in quote.split("..."))):
            assert any(part in _folded(name) for name in names), (part, names)


def _framed(body: bytes) -> bytes:
    return len(body).to_bytes(4, "little") + body


def _decode(body: bytes) -> Message:
    async def go() -> Message:
        reader = asyncio.StreamReader()
        reader.feed_data(_framed(body))
        reader.feed_eof()
        return await receive(reader)

    return asyncio.run(go())


async def primary_says(
    standby: Standby, messages: list[Message]
) -> tuple[list[Message], Exception | None]:
    """What the standby sent a fake primary that sent it ``messages`` (it closes after 0.3 s
    of quiet), and what ended ``standby._follow``."""
    got: list[Message] = []
    closed = asyncio.Event()

    async def primary(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            got.append(await receive(reader, silence_s=5))
            for message in messages:
                await send(writer, message)
            with contextlib.suppress(Exception):
                while True:
                    got.append(await receive(reader, silence_s=0.3))
        finally:
            writer.close()
            closed.set()

    server = await asyncio.start_server(primary, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
    ended: Exception | None = None
    try:
        await asyncio.wait_for(standby._follow(reader, writer), 10)
    except Exception as exc:
        ended = exc
    finally:
        writer.close()
        await closed.wait()
        server.close()
    return got, ended


def _standby(tmp_path: Path) -> Standby:
    return Standby(pair(tmp_path)[1])


# -- wire.py ------------------------------------------------------------------------------------


@pytest.mark.parametrize("seq", [2**63, -1])
def test_a_number_past_int64_does_not_decode(seq: int) -> None:
    """ "A frame with one past int64 (what the journal, the epochs file and the shared words
    hold) does not decode: a FrameError." ``wire.I64``, ``receive``."""
    said("wire")
    assert isinstance(_decode(msgspec.msgpack.encode([1, 5, GENESIS])), Hello)
    with pytest.raises(FrameError, match="does not decode"):
        _decode(msgspec.msgpack.encode([1, seq, GENESIS]))


def test_receive_bounds_a_frame_and_a_silence_not_a_slow_frame() -> None:
    """ "With ``silence_s``, ``TimeoutError`` when no byte comes for that long: a silent peer
    is noticed, one still sending a long frame over a slow link is not cut off"; "at most
    ``limit`` bytes (... a hostile peer cannot make this side buffer 64 MiB)". ``receive`` fed
    a Heartbeat a byte at a time, 0.05 s apart, with a silence of 0.2 s; a 64 MiB length."""
    said("wire")
    data = _framed(msgspec.msgpack.encode([8]))

    async def go() -> None:
        reader = asyncio.StreamReader()

        async def trickle() -> None:
            for byte in data:
                await asyncio.sleep(0.05)
                reader.feed_data(bytes((byte,)))

        feeding = asyncio.create_task(trickle())
        assert await receive(reader, silence_s=0.2) == Heartbeat()  # over 0.2 s in all
        await feeding
        with pytest.raises(TimeoutError):
            await receive(reader, silence_s=0.2)
        reader.feed_data((64 << 20).to_bytes(4, "little"))  # no body ever comes
        with pytest.raises(FrameError, match="limit is 4096"):
            await asyncio.wait_for(receive(reader, MAX_PEER_FRAME), 2)

    asyncio.run(go())


def test_a_standbys_largest_messages_fit_its_small_limit() -> None:
    """ "What a standby sends (a Hello, an AskEpochs, an Ack) is a few dozen bytes"; "The most
    seqs one AskDigests names (its frame stays under ``MAX_PEER_FRAME``)"; "Longest id a peer
    may say". Encoded at their bounds, and one past them refused by decoding."""
    said("wire", "cluster")
    top = 2**63 - 1
    hello = Hello(top, GENESIS, top, top, top, top, "f" * cluster.MAX_ID_CHARS)
    assert len(msgspec.msgpack.encode(hello)) < 200
    assert len(msgspec.msgpack.encode(AskDigests([top] * MAX_DIGESTS))) < MAX_PEER_FRAME
    with pytest.raises(FrameError):
        _decode(msgspec.msgpack.encode([9, [1] * (MAX_DIGESTS + 1)]))
    with pytest.raises(FrameError):
        _decode(msgspec.msgpack.encode([1, 1, GENESIS, 1, 0, 0, 0, "f" * 65]))


def test_records_differ_refuses_another_build_and_one_that_hides_its_rules() -> None:
    """ "or not said (schema 0, an older peer ...)"; "A peer that says its records but not its
    rules (0) is refused"; "``peer`` and ``own`` name each side's in the reason".
    ``records_differ``."""
    said("wire")
    mine = CODEC_RECORDS
    assert records_differ("p", mine, "o", mine) is None
    assert records_differ("p", (0, 0, 0), "o", mine) is None
    assert records_differ("p", (mine[0], mine[1], 0), "o", mine) is not None
    why = records_differ("the primary's", (mine[0], mine[1] * 2, mine[2]), "this one's", mine)
    assert why is not None and why.startswith("the primary's records") and "this one's" in why


def test_the_standby_refuses_a_primary_of_other_records(tmp_path: Path) -> None:
    """ "Both sides refuse a peer built with other journaled records (the journal's schema id
    ... and the slot size)": the standby's side (``Standby._follow``); the source's is review
    33's. Nothing is acknowledged to it."""
    said("wire")
    standby = _standby(tmp_path)
    other = EpochHistory([(1, 1)], CODEC_RECORDS[0], CODEC.slot_size * 2, CODEC_RECORDS[2])
    got, ended = asyncio.run(primary_says(standby, [other, frame(1, COMMANDS)]))
    standby.close()
    assert isinstance(ended, StandbyRefusedError) and "records" in str(ended)
    assert [type(m) for m in got] == [Hello] and standby.next_seq == 1


def test_a_peer_of_a_build_before_the_chain_is_refused_saying_so(tmp_path: Path) -> None:
    """ "A peer of a build before the chain sends a 16-byte digest (``older_peer``) and is
    refused, saying so." The source (``_history_refusal``) and the standby (``persist``)."""
    said("wire")
    standby = _standby(tmp_path / "s")
    old = frame(1, COMMANDS)
    old.digest = bytes(16)
    with pytest.raises(StandbyRefusedError, match="build before 2026-11-27"):
        standby.persist(old)
    standby.close()
    got = _talk_to_source(tmp_path / "p2", Hello(1, bytes(16), 1, *CODEC_RECORDS))
    assert isinstance(got[1], Refused) and "build before 2026-11-27" in got[1].reason


def _talk_to_source(
    tmp_path: Path,
    first: Message,
    quiet_s: float = 1.0,
    block_fenced: int = 0,
    reply: Callable[[Message], Message | None] = lambda message: None,
) -> list[object]:
    """What a source of seqs 1..3 answers a peer's ``first`` message: every message until it
    closes ("EOF") or is quiet for ``quiet_s`` ("quiet"); ``reply`` says what the peer sends
    back to each (None: nothing)."""
    primary, _ = pair(tmp_path)
    append(primary, 1, 3)
    port = primary.replication.listen_port

    async def scenario() -> list[object]:
        source = ReplicationSource(primary)
        source.block.words[FENCED] = block_fenced
        serving = asyncio.create_task(source.run())
        got: list[object] = []
        try:
            await asyncio.sleep(0.05)  # listening
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await send(writer, first)
            while True:
                try:
                    got.append(message := await receive(reader, silence_s=quiet_s))
                    if (answer := reply(message)) is not None:
                        await send(writer, answer)
                except (asyncio.IncompleteReadError, ConnectionError, TimeoutError) as exc:
                    got.append("quiet" if isinstance(exc, TimeoutError) else "EOF")
                    break
            writer.close()
        finally:
            source.stopping.set()
            await serving
            source.close()
        return got

    return asyncio.run(scenario())


def test_ask_digests_gets_one_for_each_seq_up_to_last_plus_one_then_the_close(
    tmp_path: Path,
) -> None:
    """ "Digests(last_seq, digests) (one for each seq at most last_seq + 1), then the
    connection closes". ``ReplicationSource._digests`` on a journal of seqs 1..3."""
    said("wire")
    got = _talk_to_source(tmp_path, AskDigests([4, 1, 9, 2]))
    answer = got[0]
    assert isinstance(answer, Digests) and got[1:] == ["EOF"]
    assert answer.last_seq == 3 and len(answer.digests) == 3 and answer.digests[1] == GENESIS


def test_ask_digests_of_seq_zero_is_answered_in_line_or_refused(tmp_path: Path) -> None:
    """ "(one for each seq at most last_seq + 1)", "for each seq asked, in its order, up to
    last_seq + 1": ``AskDigests([0, 2])`` of a journal at seq 3 gets two digests in line, or
    the frame is refused (``FrameError``, the connection closed)."""
    said("wire")
    got = _talk_to_source(tmp_path, AskDigests([0, 2]))
    answer = got[0]
    assert got == ["EOF"] or (isinstance(answer, Digests) and len(answer.digests) == 2), got


def test_a_refused_standby_and_an_operators_epochs_end_with_the_close(tmp_path: Path) -> None:
    """ "primary -> standby Refused(reason) and the connection closes": a standby whose
    history differs gets the epochs, the refusal naming the seq, then the close; "AskEpochs()
    only the EpochHistory, then the connection closes"."""
    said("wire")
    got = _talk_to_source(tmp_path / "ask", wire.AskEpochs())
    assert [type(m) for m in got[:1]] == [EpochHistory] and got[1:] == ["EOF"]
    got = _talk_to_source(tmp_path, Hello(3, GENESIS, 1, *CODEC_RECORDS))
    assert isinstance(got[0], EpochHistory) and isinstance(got[1], Refused)
    assert "history differs before seq 3" in got[1].reason and got[2:] == ["EOF"]


def test_the_standby_acks_every_entries_heartbeat_and_state_file(tmp_path: Path) -> None:
    """ "Ack(seq) entries up to seq are durable here: after every Entries, Heartbeat and
    StateFile"; "its Ack says only "heard"" (what is durable, not the file's bytes).
    ``Standby._follow``."""
    said("wire")
    standby = _standby(tmp_path)
    users = StateFile("users.json", 0, b"[]", True, 2)
    messages: list[Message] = [EpochHistory([(1, 1)], *CODEC_RECORDS)]
    messages += [users, Heartbeat(), frame(1, COMMANDS), Heartbeat()]
    got, ended = asyncio.run(primary_says(standby, messages))
    standby.close()
    assert isinstance(ended, asyncio.IncompleteReadError), ended
    assert got[1:] == [Ack(0), Ack(0), Ack(2), Ack(2)]
    assert (gateway_root(pair(tmp_path)[1]) / "users.json").read_bytes() == b"[]"


# -- cluster.py ---------------------------------------------------------------------------------


def test_a_standby_takes_no_id_from_a_primary_that_refuses_its_history(tmp_path: Path) -> None:
    """ "a standby writes its primary's once the primary has checked its history (the first
    message after the epochs that is no refusal), not at the handshake: a primary whose
    history turns out not to fit leaves it none." ``Standby._follow``."""
    said("cluster")
    standby = _standby(tmp_path)
    said_epochs = EpochHistory([(1, 1)], *CODEC_RECORDS, "c" * 32)
    _, ended = asyncio.run(primary_says(standby, [said_epochs, Refused("history differs")]))
    standby.close()
    assert isinstance(ended, StandbyRefusedError)
    assert cluster.load(journal_dir(pair(tmp_path)[1])) == ""


def test_a_standby_refuses_a_primary_of_another_id(tmp_path: Path) -> None:
    """ "a standby refuses a primary of another id". ``Standby._follow`` with ``cluster.differ``:
    nothing of it is taken."""
    said("cluster")
    cfg = pair(tmp_path)[1]
    cluster.keep(journal_dir(cfg), "a" * 32)
    standby = Standby(cfg)
    other = EpochHistory([(1, 1)], *CODEC_RECORDS, "b" * 32)
    got, ended = asyncio.run(primary_says(standby, [other, frame(1, COMMANDS)]))
    standby.close()
    assert isinstance(ended, StandbyRefusedError) and "another replicated history" in str(ended)
    assert len(got) == 1 and standby.next_seq == 1 and cluster.load(journal_dir(cfg)) == "a" * 32


# -- files.py -----------------------------------------------------------------------------------


def _shipped(tmp_path: Path, name: str, data: bytes) -> tuple[Path, FileShipper, FileReceiver]:
    path = tmp_path / "p" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    shipper, receiver = FileShipper(tmp_path / "p", [name]), FileReceiver(tmp_path / "s")
    for change in shipper.changes():
        receiver.apply(change)
    return path, shipper, receiver


def test_a_log_that_grew_goes_from_its_end_and_any_other_change_whole(tmp_path: Path) -> None:
    """ "A log that grew with those bytes unchanged is sent from there (the logs only grow);
    any other change sends the file again whole (``reset``): a log replaced (a compaction),
    shrunk or rewritten, and the users' and keys' snapshots ... files, which are rewritten
    whole".
    ``FileShipper.changes``."""
    said("files")
    log, shipper, _ = _shipped(tmp_path, "gw1/orders.log", b"a" * 100)
    with log.open("ab") as f:
        f.write(b"b" * 10)
    [grew] = shipper.changes()
    assert (grew.reset, grew.offset, grew.data) == (False, 100, b"b" * 10)
    log.write_bytes(b"c" * 50)  # shrunk
    [shrunk] = shipper.changes()
    assert (shrunk.reset, shrunk.offset, shrunk.size) == (True, 0, 50)
    log.write_bytes(b"d" * 20 + b"c" * 40)  # rewritten, larger, its last bytes moved
    assert shipper.changes()[0].reset
    users, shipper, _ = _shipped(tmp_path / "u", "users.json", b"[1]")
    users.write_bytes(b"[1, 2]")  # grew, but a users file is rewritten whole
    assert shipper.changes()[0].reset


def test_a_log_rewritten_within_one_mtime_tick_is_sent_whole(tmp_path: Path) -> None:
    """ "A file is followed by inode, size and mtime, and for the logs by the bytes just before
    where the copy ends"; "appending its end to the copy would corrupt it". A log rewritten
    larger on its inode with its mtime what it was (a rewrite in the same timestamp tick, as
    a coarse-clock kernel stamps it): ``FileShipper.changes`` appends its end."""
    said("files")
    log, shipper, receiver = _shipped(tmp_path, "gw1/orders.log", b"a" * 100)
    mtime = log.stat().st_mtime_ns
    log.write_bytes(b"z" * 150)  # same inode (truncated and written), other bytes
    os.utime(log, ns=(mtime, mtime))
    changes = shipper.changes()
    for change in changes:
        receiver.apply(change)
    receiver.sync()
    assert (tmp_path / "s" / "gw1" / "orders.log").read_bytes() == b"z" * 150


def test_a_file_sent_whole_in_pieces_replaces_the_copy_only_once_complete(tmp_path: Path) -> None:
    """ "A file sent whole in several pieces is made aside and replaces the standby's copy once
    complete, so a connection lost mid-way (every new one sends every file whole) never leaves
    a copy cut short." ``FileShipper.changes(budget)``, ``FileReceiver.apply``."""
    said("files")
    log, _, _ = _shipped(tmp_path, "gw1/orders.log", b"old|" * 5)
    copy = tmp_path / "s" / "gw1" / "orders.log"
    log.write_bytes(b"new|" * 10)  # replaced: 40 bytes, shipped 16 at a time
    shipper, receiver = (
        FileShipper(tmp_path / "p", ["gw1/orders.log"]),
        FileReceiver(copy.parents[1]),
    )
    first = shipper.changes(16)
    receiver.apply(first[0])
    assert first[0].reset and copy.read_bytes() == b"old|" * 5  # the connection drops here
    shipper, receiver = (
        FileShipper(tmp_path / "p", ["gw1/orders.log"]),
        FileReceiver(copy.parents[1]),
    )
    while changes := shipper.changes(16):
        for change in changes:
            receiver.apply(change)
            assert copy.read_bytes() in (b"old|" * 5, b"new|" * 10)
    assert copy.read_bytes() == b"new|" * 10


def test_the_receiver_writes_only_shipped_kinds_and_syncs_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "writes what arrives, only to paths of the shipped kinds, and makes it durable when
    asked (``sync``"; "fsync the files written since the last call (a replaced one: its
    directory too)". ``FileReceiver``."""
    said("files")
    from procs.replica import files  # noqa: PLC0415

    synced: list[str] = []
    monkeypatch.setattr(files, "fsync_file", lambda p: synced.append(f"file {Path(p).name}"))
    monkeypatch.setattr(files, "fsync_dir", lambda p: synced.append(f"dir {Path(p).name}"))
    receiver = FileReceiver(tmp_path / "gateway")
    for bad in ("../users.json", "gw1/notes.txt", "gw1/../../x.log", "a/b/orders.log"):
        with pytest.raises(ValueError, match="not a gateway state file"):
            receiver.apply(StateFile(bad, 0, b"x", True))
    receiver.apply(StateFile("gw1/orders.log", 0, b"ab", True, 2))  # whole: aside, fsynced
    assert synced == ["file orders.log.shipping"]
    receiver.apply(StateFile("gw1/orders.log", 2, b"cd", False))
    receiver.sync()
    assert synced[1:] == ["file orders.log", "dir gw1"]
    receiver.sync()
    assert len(synced) == 3 and not list(tmp_path.rglob("x.log"))


# -- tail.py, market.py, main.py -------------------------------------------------------------


def test_the_tail_returns_only_verified_entries_and_corruption_raises(tmp_path: Path) -> None:
    """ "Every entry it returns is verified (seq, CRC) as the reader does; anything else (...
    a bad entry with nothing good before it) goes to ``JournalReader.entries``, which ...
    raises on the latter." ``JournalTail.read`` with entry 4 of 5 damaged, good ones after."""
    said("tail")
    writer, tail = open_journal(tmp_path)
    written = images(1, 5)
    writer.append(1, b"".join(written[:2]), 2)
    assert tail.read(1, 10) == written[:2]
    writer.append(3, b"".join(written[2:]), 3)
    writer.close()
    (_, path) = list_segments(tmp_path)[-1]
    size = tail.layout.size
    with path.open("r+b") as f:  # a byte of entry 4's image
        f.seek(path.stat().st_size - 2 * size + 20)
        f.write(b"\xee")
    assert tail.read(3, 10) == written[2:3]
    with pytest.raises(JournalCorruptError):
        tail.read(4, 10)
    tail.close()


def test_the_hot_market_flushes_every_flush_every_commands_and_saves_no_positions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "The state is flushed ... every ``FLUSH_EVERY`` commands or second of event time";
    "Write the state for the promoted marketdata process (no ring positions". ``HotMarket``."""
    said("market")
    cfg = pair(tmp_path)[1]
    market = HotMarket(cfg)
    flushes = mock.Mock(wraps=market.state.flush)
    monkeypatch.setattr(market.state, "flush", flushes)
    for _ in range(FLUSH_EVERY * 2 - 1):
        market.observe([])  # a command with no events, no event time passing
    assert flushes.call_count == 1
    monkeypatch.undo()  # (a patched state does not pickle)
    market.save()
    loaded = MarketSnapshots(market_state_path(cfg)).load(HotMarket(cfg).state)
    assert loaded is not None and loaded.positions == {}


@pytest.fixture
def quiet_process(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``main``'s process-wide steps made local: the collector left alone, READY recorded."""
    told: list[str] = []
    monkeypatch.setattr(gc_policy, "settle", lambda policy: None)
    monkeypatch.setattr(sd_notify, "ready", lambda: told.append("READY=1"))
    monkeypatch.setattr(sd_notify, "stopping", lambda: told.append("STOPPING=1"))
    return told


async def _standby_process(
    cfg: RingexConfig, messages: list[Message], then: str
) -> tuple[int, list[Message]]:
    """``main._standby`` against a fake primary sending ``messages``; SIGTERM once acked."""
    host, port = cfg.replication.primary_address()
    got: list[Message] = []

    async def primary(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            got.append(await receive(reader, silence_s=5))
            for message in messages:
                await send(writer, message)
            got.append(await receive(reader, silence_s=5))
            if then == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.sleep(5)
        except Exception:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(primary, host, port)
    try:
        code = await asyncio.wait_for(replica_main._standby(cfg), 10)
    finally:
        server.close()
    return code, got


def test_a_standby_that_finds_another_history_exits_2_saying_which(
    tmp_path: Path, quiet_process: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    """ "a standby that finds a gap or a different history exits 2, saying which"; "READY=1 ...
    once the standby has recovered its own state". ``main._standby``."""
    said("main")
    cfg = pair(tmp_path)[1]
    forged = frame(1, COMMANDS)
    forged.digest = GENESIS
    epochs = EpochHistory([(1, 1)], *CODEC_RECORDS)
    with caplog.at_level(logging.ERROR, logger="ringex.replica"):
        code, _ = asyncio.run(_standby_process(cfg, [epochs, forged], "wait"))
    assert code == 2 and quiet_process == ["READY=1"]
    assert any("hash mismatch after seq 2" in r.getMessage() for r in caplog.records)


def test_sigterm_stops_a_standby_cleanly_with_snapshots_first(
    tmp_path: Path, quiet_process: list[str]
) -> None:
    """ "SIGTERM stops either cleanly (exit 0; a standby writes snapshots of its hot state
    first)"; "STOPPING=1 at a stop". ``main._standby``, ``_stop_on_signals``."""
    said("main")
    cfg = pair(tmp_path)[1]
    epochs = EpochHistory([(1, 1)], *CODEC_RECORDS)
    code, got = asyncio.run(_standby_process(cfg, [epochs, frame(1, COMMANDS)], "sigterm"))
    assert code == 0 and got[1:] == [Ack(2)] and quiet_process == ["READY=1", "STOPPING=1"]
    again = Standby(cfg)
    again.close()
    assert (again.state.snapshot_seq, again.state.last_seq) == (2, 2)
