"""Review 289: replication over a hostile network.

Reviewed: ``procs/replica/source.py`` (serve, _acks, _stream, _let_go), ``standby.py``
(_connect_loop, _follow, persist), ``main.py`` (the standby's exits), ``wire.py`` (framing,
silences), ``procs/common/replication_ack.py`` (AckBlock, SyncGate), ``epochs.py``,
``procs/replica/cluster.py``; README "Hot standby and failover". Reviews 140 (garbled
streams fed directly), 152 (a seeded relay: delays, splits, read stalls, cuts, half-closes),
167 (deadlines) and 215 (long outages) were read first: none damages bytes *in transit*
between two real peers, over plain TCP or TLS, nor holds a link open both ways (no FIN) while
a sync router waits.

Rig: a real ``ReplicationSource`` and ``Standby`` in one event loop (review 3's ``pair`` and
``append``), the standby reaching the source through ``Proxy``, an in-process asyncio TCP
proxy whose faults the test switches (flip a byte of an Entries frame, flip the n-th byte of
a TLS stream, hold the links open now both ways, reset after n bytes); review 95's test
certificate for mutual TLS; the router's side of sync mode as its ``SyncGate`` over its own
mapping of the block; ``begin_epoch`` as a promotion calls it. Journals are compared entry
for entry (segment headers keep their creation time).

Faults found (each fixed; its test says what it was):

1. A frame damaged in transit stops the standby as if the primary's history were wrong.
   Over plain TCP (TLS is optional, README), one flipped byte in an Entries frame reaches
   ``Standby.persist``: an image that no longer decodes raises StandbyRefusedError "the
   primary's seq 1501 is no entry" (``procs/replica/standby.py:179``), one that still decodes
   "hash mismatch after seq N: the primary's history differs" (``:185``); a flipped length
   or tag is a FrameError that ``_connect_loop`` turns into a refusal "another version of
   ringex?" (``:306-310``). Each ends ``Standby.run``: the process exits 2, the code
   ``replica/main.py`` documents for "a gap or a different history", and its log blames a
   primary whose journal is sound (a new connection ships the same seqs whole; the
   handshake has already proved the build and the history). Under ``ringex run`` its
   supervisor restarts it with a whole recovery (a sync primary degrades meanwhile), and
   ``restart_limit`` such exits stop the instance (read in ``supervisor/main.py``
   ``_restart``, not run here). Fixed: ``persist`` raises ``DamagedFrameError`` (a
   ``StandbyRefusedError``) for an image that is no record or a digest mismatch, and
   ``_connect_loop`` takes it, and a FrameError, as damage on the way: the connection is
   dropped and the seqs asked for again, nothing of the frame written; the same seq
   unreadable again on a new connection is refused as before (``_damaged``).
   ``test_a_byte_flipped_in_a_frame_in_transit_is_a_link_fault_not_a_refusal``.
2. With mutual TLS (the README's recommended link) a damaged record crashes the standby.
   TLS's MAC catches the flipped byte and the read raises ``ssl.SSLError``
   (DECRYPTION_FAILED_OR_BAD_RECORD_MAC; an OSError, not a ConnectionError, under asyncio
   and uvloop alike), which none of ``_connect_loop``'s clauses
   (``procs/replica/standby.py:293``, ``:304``, ``:306``) takes: it ends ``Standby.run``,
   and ``replica/main.py:82`` catches only StandbyRefusedError, so the process dies of a
   traceback (exit 1) instead of reconnecting. Fixed: ``_connect_loop`` takes
   ``ssl.SSLError`` with the connection errors ("primary connection lost (...);
   reconnecting"), and the source's ``serve`` logs it as a standby gone.
   ``test_a_byte_flipped_under_mutual_tls_reconnects``.

Sound (test_sound_*): the same seq's frame unreadable on two connections is refused, as
before the fix; a link reset in the middle of a frame, twice, leaves nothing of the
cut frame and ends byte-identical; a link held open both ways with no FIN while a sync
router waits: the router goes on degraded after its ``sync_timeout_ms`` (1 s, measured
0.9-1.5 s), the standby reconnects within 2 s + backoff, catches up, the router returns to
sync by itself, and the source drops the dead connection within 10 s (README's numbers); a
standby of another cluster at a newer epoch is refused by id and fences nobody; a fenced
standby journal does not start; a standby stopped mid catch-up (three frames behind) holds
a byte-identical prefix, has applied every entry it made durable, and its new epoch begins
right after them.

Leads not shown:
- ``AckBlock.acknowledged`` stores whichever connection acked last (``source.py:387-390``): a
  second standby, or a reconnecting one's Hello, moves ``ACKED_SEQ`` down (safe) and a
  lagging second standby's acks alternate with the first's, so a sync router may degrade
  while its real standby is current (README: "Not yet: several standbys").
- The stalled connection is counted in ``CONNECTED`` until its 10 s silence ends (two
  standbys connected in ``replication.json`` meanwhile). Cosmetic.
- Acks carry no check of their own: over plain TCP a flipped ack seq that stays at or
  below what was *sent* (not what is durable) passes ``_acks``' bound and would let a sync
  router publish seqs the standby lacks. Not demonstrated (needs a corruption TCP's own
  checksum misses); TLS closes it.
- A link that resets more often than one frame (4096 entries, ~600 KiB) takes never lets a
  far-behind standby progress (each connection ships the state files whole first, then the
  frame is cut again). Not pinned: no README number says what a link must carry.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from config.schema import RingexConfig
from procs.common.epochs import Epochs
from procs.common.journal import HEADER_SIZE, list_segments
from procs.common.replication_ack import (
    CONNECTED,
    DEGRADED,
    FENCED,
    AckBlock,
    SyncGate,
    ack_dir,
)
from procs.common.topology import journal_dir
from procs.replica import cluster
from procs.replica.source import ReplicationSource
from procs.replica.standby import Standby, StandbyRefusedError
from procs.supervisor.promotion import begin_epoch
from tests.free_ports import free_port
from tests.unit.gateway.test_tls import CERT, KEY
from tests.unit.replica.test_review_replica_bugs import append, pair, until

_LEN = struct.Struct("<I")


class Proxy:
    """An in-process TCP proxy between the standby and the source; the test switches its
    faults: ``flip_entries`` flips a byte in the middle of the next Entries frame sent down
    (plain TCP: frames are parsed), ``flip_at`` flips the down stream's byte at that offset
    (TLS: the records cannot be parsed), ``stall`` holds both directions of the links open
    now without closing anything (a half-open link: no FIN, no data), ``cut_after`` aborts
    both sides once that many bytes went down (a frame cut in the middle, then a reset)."""

    def __init__(self, target: int) -> None:
        self.port, self.target = free_port(), target
        self.flip_entries = 0  # how many Entries frames to damage still
        self.flip_at = -1
        self.cut_after = -1
        self.stalled: set[int] = set()  # links held (``stall``); new ones flow
        self.connections = 0
        self.links: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Proxy:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()
        self.abort_all()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def abort_all(self) -> None:
        for sw, pw in self.links:
            sw.transport.abort()
            pw.transport.abort()
        self.links.clear()

    async def _accept(self, sr: asyncio.StreamReader, sw: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            pr, pw = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            sw.transport.abort()
            return
        self.links.append((sw, pw))
        link = self.connections
        for coro in (self._up(sr, pw, link), self._down(pr, sw, link)):
            task = asyncio.create_task(coro)
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def stall(self) -> None:
        """Hold every link open now: no byte, no FIN either way, for as long as the test."""
        self.stalled.update(range(1, self.connections + 1))

    async def _hold(self, link: int) -> None:
        while link in self.stalled:
            await asyncio.sleep(0.01)

    async def _up(self, r: asyncio.StreamReader, w: asyncio.StreamWriter, link: int) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            while data := await r.read(1 << 16):
                await self._hold(link)
                w.write(data)
                await w.drain()
            await self._hold(link)  # a stalled link forwards no FIN either
            w.write_eof()

    async def _down(self, r: asyncio.StreamReader, w: asyncio.StreamWriter, link: int) -> None:
        went = 0
        pending = b""
        with contextlib.suppress(OSError, RuntimeError):
            while data := await r.read(1 << 16):
                await self._hold(link)
                if self.flip_at >= 0 and went <= self.flip_at < went + len(data):
                    at = self.flip_at - went
                    data = data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1 :]
                    self.flip_at = -1
                if self.flip_entries:
                    pending, data = self._damage(pending + data)
                if 0 <= self.cut_after < went + len(data):
                    w.write(data[: self.cut_after - went])
                    await w.drain()
                    self.cut_after = -1
                    self.abort_all()
                    return
                went += len(data)
                w.write(data)
                await w.drain()
            await self._hold(link)
            w.write_eof()

    def _damage(self, data: bytes) -> tuple[bytes, bytes]:
        """Whole frames of ``data`` (the first Entries one damaged) and what is left."""
        out, at = bytearray(), 0
        while len(data) - at >= _LEN.size:
            (length,) = _LEN.unpack_from(data, at)
            end = at + _LEN.size + length
            if end > len(data):
                break
            body = bytearray(data[at + _LEN.size : end])
            if self.flip_entries and body[:2] == b"\x94\x02":  # [2, first_seq, ...]: Entries
                body[len(body) // 2] ^= 0x10
                self.flip_entries -= 1
            out += data[at : at + _LEN.size] + body
            at = end
        if not self.flip_entries:  # done damaging: the rest goes as it came
            return b"", bytes(out) + data[at:]
        return data[at:], bytes(out)


def via(secondary: RingexConfig, proxy: Proxy) -> RingexConfig:
    rep = msgspec.structs.replace(secondary.replication, primary=f"127.0.0.1:{proxy.port}")
    return msgspec.structs.replace(secondary, replication=rep)


def mutual(cfg: RingexConfig) -> RingexConfig:
    rep = msgspec.structs.replace(cfg.replication, tls_cert=CERT, tls_key=KEY, tls_ca=CERT)
    return msgspec.structs.replace(cfg, replication=rep)


def journal_bytes(cfg: RingexConfig) -> bytes:
    """Every entry of the journal, in seq order, byte for byte (each segment's header keeps
    its own creation time, so headers are left out)."""
    return b"".join(p.read_bytes()[HEADER_SIZE:] for _, p in list_segments(journal_dir(cfg)))


@contextlib.asynccontextmanager
async def linked(
    primary: RingexConfig, secondary: RingexConfig
) -> AsyncIterator[tuple[ReplicationSource, Standby, asyncio.Task[None], Proxy]]:
    """The primary's source, a proxy in front of it, and the standby following through it."""
    source = ReplicationSource(primary)
    serving = asyncio.create_task(source.run())
    async with Proxy(primary.replication.listen_port) as proxy:
        standby = Standby(via(secondary, proxy))
        task = asyncio.create_task(standby.run())
        try:
            yield source, standby, task, proxy
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            standby.journal.close()
            source.stopping.set()
            await serving
            source.close()


async def caught_up(standby: Standby, task: asyncio.Task[None], last: int, timeout: float) -> None:
    """Until the standby holds ``last``; its task's own end (a refusal) is raised."""
    deadline = time.monotonic() + timeout
    while standby.next_seq <= last:
        if task.done():
            task.result()
            raise AssertionError("the standby stopped")
        assert time.monotonic() < deadline, f"standby at {standby.next_seq - 1}, not {last}"
        await asyncio.sleep(0.01)


N = 3000  # entries the primary holds (152-byte slots: one frame of ~450 KiB)


def test_a_byte_flipped_in_a_frame_in_transit_is_a_link_fault_not_a_refusal(
    tmp_path: Path,
) -> None:
    """Scenario: plain TCP (README: TLS optional); a middlebox flips one byte in the middle of
    the first Entries frame. Expected: the standby drops that connection and asks again from
    its durable seq (the primary's journal is sound: a new connection ships the same seqs
    whole), then holds the primary's journal byte for byte. Was (fixed): ``persist`` raises
    StandbyRefusedError ("hash mismatch after seq ...: the primary's history differs" or "seq
    N is no entry"), which ends ``Standby.run`` (``replica/main.py``: exit 2)."""
    primary, secondary = pair(tmp_path)
    append(primary, 1, N)

    async def scenario() -> None:
        async with linked(primary, secondary) as (_, standby, task, proxy):
            proxy.flip_entries = 1
            await caught_up(standby, task, N, 15.0)

    asyncio.run(scenario())
    assert journal_bytes(secondary) == journal_bytes(primary)


def test_a_byte_flipped_under_mutual_tls_reconnects(tmp_path: Path) -> None:
    """Scenario: the README's link (mutual TLS); a byte of the primary's stream, well past the
    handshake, is flipped on the way. Expected: TLS's MAC catches it, the connection ends, the
    standby reconnects (as for a reset) and catches up byte for byte. Was (fixed): the read raises
    ``ssl.SSLError`` (an OSError, not a ConnectionError), which no clause of
    ``_connect_loop`` takes: it ends ``Standby.run``, and ``replica/main.py`` (which catches
    only StandbyRefusedError) dies of the traceback."""
    primary, secondary = (mutual(cfg) for cfg in pair(tmp_path))
    append(primary, 1, N)

    async def scenario() -> None:
        async with linked(primary, secondary) as (_, standby, task, proxy):
            proxy.flip_at = 200_000  # inside the Entries frame's records
            await caught_up(standby, task, N, 15.0)

    asyncio.run(scenario())
    assert journal_bytes(secondary) == journal_bytes(primary)


def test_sound_a_frame_unreadable_twice_at_one_seq_is_refused(tmp_path: Path) -> None:
    """The bound of fault 1: the frame from the same seq arrives damaged on a new
    connection too: not the link; refused as before, naming the seq (and nothing of it kept)."""
    primary, secondary = pair(tmp_path)
    append(primary, 1, N)

    async def scenario() -> None:
        async with linked(primary, secondary) as (_, standby, task, proxy):
            proxy.flip_entries = 2
            with pytest.raises(StandbyRefusedError) as refused:
                await caught_up(standby, task, N, 15.0)
            assert standby.next_seq == 1, standby.next_seq
            said = str(refused.value)
            assert "hash mismatch" in said or "is no entry" in said, said

    asyncio.run(scenario())


def test_sound_a_frame_cut_in_the_middle_then_reset_resumes_without_duplicate(
    tmp_path: Path,
) -> None:
    """The link reset in the middle of the first Entries frame (and again in the next
    connection's): the standby keeps nothing of a cut frame, asks again from its durable
    seq, and ends byte-identical to the primary (no entry twice, none missing)."""
    primary, secondary = pair(tmp_path)
    append(primary, 1, N)

    async def scenario() -> int:
        async with linked(primary, secondary) as (_, standby, task, proxy):
            proxy.cut_after = 100_000
            await until(lambda: proxy.connections >= 2, 10.0)
            assert standby.next_seq == 1  # nothing of the cut frame
            proxy.cut_after = 300_000
            await until(lambda: proxy.connections >= 3, 10.0)
            await caught_up(standby, task, N, 15.0)
            return proxy.connections

    assert asyncio.run(scenario()) >= 3
    assert journal_bytes(secondary) == journal_bytes(primary)


def test_sound_a_half_open_link_is_left_within_the_readmes_numbers_and_sync_degrades(
    tmp_path: Path,
) -> None:
    """A link that stalls both ways with no FIN (a host gone, a firewall's dropped state)
    while a sync router waits: the router goes on without the standby after its
    ``sync_timeout_ms`` (1000), the standby reconnects after 2 s of silence (README) and
    catches up, the router returns to sync by itself, and the source drops the dead
    connection within 10 s (README), leaving one standby counted."""
    primary, secondary = pair(tmp_path)
    rep = msgspec.structs.replace(primary.replication, mode="sync", sync_timeout_ms=1000)
    primary = msgspec.structs.replace(primary, replication=rep)
    append(primary, 1, 10)
    router = AckBlock(ack_dir(primary.var_dir, primary.instance))  # the router's mapping
    gate = SyncGate(router, 1000)

    async def scenario() -> dict[str, float]:
        async with linked(primary, secondary) as (source, standby, task, proxy):
            await caught_up(standby, task, 10, 10.0)
            await until(lambda: source.block.acked_seq == 10, 5.0)
            proxy.stall()
            began = time.monotonic()
            append(primary, 11, 5)
            router.appended(15)
            waited = time.monotonic()
            assert await asyncio.to_thread(gate.wait, 15)  # goes on, degraded
            waited = time.monotonic() - waited
            assert router.words[DEGRADED] == 1
            await until(lambda: proxy.connections >= 2, 5.0)
            reconnected = time.monotonic() - began
            await caught_up(standby, task, 15, 5.0)
            await until(lambda: source.block.acked_seq == 15, 5.0)
            assert gate.poll(15) and router.words[DEGRADED] == 0  # back to sync
            await until(lambda: source.block.words[CONNECTED] == 1, 15.0)
            dropped = time.monotonic() - began
            return {"waited": waited, "reconnected": reconnected, "dropped": dropped}

    try:
        took = asyncio.run(scenario())
    finally:
        router.close()
    assert 0.9 < took["waited"] < 1.5, took
    assert took["reconnected"] < 2.0 + 1.0, took  # SILENCE_S, then the backoff's first step
    assert took["dropped"] < 10.0 + 1.5, took  # STANDBY_SILENCE_S
    assert journal_bytes(secondary) == journal_bytes(primary)


def test_sound_a_peer_of_another_history_or_a_fenced_journal_fences_nobody(
    tmp_path: Path,
) -> None:
    """Through the proxy: a standby of another instance's history (another cluster id) at a
    newer epoch is refused by id before its epoch counts, and the primary stays unfenced;
    a standby whose own journal is fenced does not start at all."""
    primary, secondary = pair(tmp_path)
    append(primary, 1, 10)
    append(secondary, 1, 10)
    begin_epoch(secondary, 7)  # a promoted instance of its own
    cluster.keep(journal_dir(secondary), "another-exchange")

    async def scenario() -> str:
        async with linked(primary, secondary) as (source, _, task, _):
            with pytest.raises(StandbyRefusedError) as refused:
                await asyncio.wait_for(task, 10.0)
            assert source.block.words[FENCED] == 0
            return str(refused.value)

    why = asyncio.run(scenario())
    assert "another-exchange" in why, why
    assert Epochs.load(journal_dir(primary)).fence is None
    fenced = tmp_path / "f"
    cfg = msgspec.structs.replace(secondary, var_dir=str(fenced), instance="rf")
    append(cfg, 1, 3)
    Epochs.load(journal_dir(cfg)).fenced(2, "a test").save(journal_dir(cfg))
    with pytest.raises(StandbyRefusedError, match="fenced"):
        Standby(cfg)


def test_sound_a_standby_stopped_mid_catch_up_holds_a_whole_prefix_to_promote(
    tmp_path: Path,
) -> None:
    """A standby far behind (three frames) stopped as a promotion stops it, after its first
    frame and while the next are on the way: its journal is the primary's prefix byte for
    byte, its hot state applied every entry it made durable, and its new epoch begins right
    after them."""
    primary, secondary = pair(tmp_path)
    total = 3 * 4096
    append(primary, 1, total)

    async def scenario() -> tuple[int, int]:
        async with linked(primary, secondary) as (_, standby, task, _):
            await until(lambda: standby.next_seq > 4096, 15.0)
            task.cancel()  # what replica/main.py does at a stop
            await asyncio.gather(task, return_exceptions=True)
            return standby.next_seq - 1, standby.state.last_seq

    held, applied = asyncio.run(scenario())
    assert 4096 <= held <= total and applied == held
    assert journal_bytes(primary).startswith(journal_bytes(secondary))
    assert len(journal_bytes(secondary)) == held * len(journal_bytes(primary)) // total
    assert begin_epoch(secondary, 2) == held + 1
