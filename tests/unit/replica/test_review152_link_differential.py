"""Review 152: replication checked against the primary's journal under seeded random flow with
random faults on the link, the standby and the primary.

Method: a real ``ReplicationSource`` and ``Standby`` in one event loop, the standby reaching
the source through ``Relay`` (an asyncio TCP relay in the test) whose faults a seeded
scheduler draws: delay each piece, split every write into 1-7 byte pieces, stall the
standby's reads (backpressure; past ``SILENCE_S`` the standby reconnects), cut both sides,
half-close the standby's side while the primary's stays open (a second connection of the same
standby while the first still counts), kill the standby and start it from its files (its
journal cut to what its fsyncs made durable first: a power cut), restart the source, and
archive the primary's journal segments (1 MiB segments, so they roll mid-stream). A router
stand-in journals batches of 1-400 commands, grows a gateway's order log first and rewrites
``users.json`` (``os.replace``, as the gateways do) between batches; in sync mode it waits
for each batch's acknowledgement before the next. ``os.fsync`` is a recorder (the size each
fsync made durable, per inode), so "on the standby's disk" means fsynced there. Checked at
every acknowledgement the source publishes: the standby's fsynced journal holds every seq up
to it, each entry's bytes the primary's, and its order log the primary's up to that batch;
at every frame the standby persists: it starts at the standby's end (no duplicate, no
reorder, no gap); after each fault: its hot state's hashes equal a replay of the primary's
journal to the same seq; at each power cut: a recovery of what the standby's disk kept
holds every seq acknowledged to a client (a promotion then loses nothing); at the end: every
entry, every segment's entries byte for byte, the state hashes, ``users.json`` and the order
log equal the primary's.

Sound: every check above held for every seed, in sync and async mode: no acknowledgement
ever named a seq the standby had not fsynced (the Hello's, after a restart, included), no
frame was duplicated, reordered or refused, the standby caught up from 4096-entry frames
behind archived segments, across segment rolls, restarts of either side and half-open links
(the old connection's late acknowledgements name only seqs the standby holds), and the
shipped files converged. A primary that lost a shipped tail and sequenced other commands is
refused by its standby, which keeps its journal (``test_a_diverged_primary_is_refused``).

Looked at and found sound, not faults: the old connection of a half-closed link is dropped
after ``STANDBY_SILENCE_S`` and its late Acks name only seqs the standby holds (``ACKED_SEQ``
may step back, never past the standby's disk); the source's ``sent`` bound is set before a
frame's Ack can be read (one loop); a standby task cancelled while ``wire._read``'s
``wait_for`` completes may swallow the cancel on 3.11 (``replica/main.py`` also sets
``stopping``, which ends the loop within a heartbeat). Two standbys: README's "Not yet".

Faults (each a strict xfail when written): none demonstrated.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from config.edges import GatewayConfig
from config.schema import JournalConfig, ReplicationConfig, RingexConfig
from procs.common.journal import HEADER_SIZE, EntryLayout, JournalReader, list_segments
from procs.common.journal_archive import archive_segments_before
from procs.common.journal_writer import JournalWriter
from procs.common.replication_ack import AckBlock, ack_dir
from procs.common.topology import gateway_root, journal_archive_dir, journal_dir
from procs.core.recovery import recover
from procs.replica.source import ReplicationSource
from procs.replica.standby import Standby, StandbyRefusedError
from procs.replica.wire import Entries
from tests.free_ports import free_port
from tests.unit.replica.test_source import CODEC, commands

LAYOUT = EntryLayout(CODEC.slot_size)
#: (kind, the bound of its draw): each batch draws one fault or none
FAULTS = [
    ("cut", 0.05), ("half-close", 0.08), ("delay/split", 0.14), ("stall", 0.17),
    ("standby restart", 0.23), ("source restart", 0.27), ("archive", 0.30), ("catch-up", 0.34),
]  # fmt: skip
SEGMENT = 1 << 20  # journal.segment_mb = 1: a segment of about 6,000 entries


class Disk:
    """``os.fsync`` recorded, not done: the size each inode's last fsync made durable."""

    def __init__(self) -> None:
        self.durable: dict[int, int] = {}

    def __call__(self, fd: int) -> None:
        st = os.fstat(fd)
        self.durable[st.st_ino] = max(self.durable.get(st.st_ino, 0), st.st_size)

    def kept(self, path: Path) -> bytes:
        """What a power cut leaves of ``path``."""
        with path.open("rb") as f:
            return f.read(self.durable.get(os.fstat(f.fileno()).st_ino, 0))


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[Disk]:
    d = Disk()
    monkeypatch.setattr(os, "fsync", d)
    yield d


def configs(tmp_path: Path, relay_port: int, mode: str) -> tuple[RingexConfig, RingexConfig]:
    port = free_port()
    gateways = [GatewayConfig(name="gw1", id=1)]
    journal = JournalConfig(segment_mb=1)
    primary = RingexConfig(
        instance="rp", var_dir=str(tmp_path / "p"), gateways=gateways, journal=journal,
        replication=ReplicationConfig(listen_port=port, mode=mode),  # type: ignore[arg-type]
    )  # fmt: skip
    secondary = RingexConfig(
        instance="rs", var_dir=str(tmp_path / "s"), gateways=gateways, journal=journal,
        replication=ReplicationConfig(primary=f"127.0.0.1:{relay_port}"),
    )  # fmt: skip
    return primary, secondary


class Relay:
    """A TCP relay from ``port`` to the source's port, with faults switched on by the test."""

    def __init__(self, port: int, target: int, rng: random.Random) -> None:
        self.port, self.target, self.rng = port, target, rng
        self.delay = self.split = False
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.links: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self.every: list[asyncio.StreamWriter] = []  # aborted at the close
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> asyncio.Server:
        return await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _accept(self, sr: asyncio.StreamReader, sw: asyncio.StreamWriter) -> None:
        try:
            pr, pw = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            sw.transport.abort()
            return
        self.links.append((sw, pw))
        self.every += [sw, pw]
        for task in (self._pump(sr, pw, False), self._pump(pr, sw, True)):
            t = asyncio.create_task(task)
            self.tasks.add(t)
            t.add_done_callback(self.tasks.discard)

    async def _pump(self, r: asyncio.StreamReader, w: asyncio.StreamWriter, down: bool) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            while data := await r.read(1 << 16):
                if down:
                    await self.flowing.wait()  # stalled: the standby reads nothing
                if self.delay:
                    await asyncio.sleep(self.rng.random() * 0.01)
                if self.split:  # every write in pieces of 1-7 bytes
                    at = 0
                    while at < len(data):
                        step = self.rng.randint(1, 7)
                        w.write(data[at : at + step])
                        await w.drain()
                        at += step
                    continue
                w.write(data)
                await w.drain()

    def cut(self) -> None:
        for sw, pw in self.links:
            sw.transport.abort()
            pw.transport.abort()
        self.links.clear()

    def half_close(self) -> None:
        """The standby's side ends; the primary's stays open, its bytes relayed to nothing."""
        for sw, _pw in self.links:
            with contextlib.suppress(OSError, RuntimeError):
                sw.write_eof()
        self.links.clear()

    async def close(self, server: asyncio.Server) -> None:
        self.flowing.set()
        server.close()
        for w in self.every:
            w.transport.abort()
        for t in list(self.tasks):
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def entry_at(data: bytes, first: int, seq: int) -> bytes:
    at = HEADER_SIZE + (seq - first) * LAYOUT.size
    return data[at : at + LAYOUT.size]


class Checker:
    """The differential checks against the primary's journal."""

    def __init__(self, primary: RingexConfig, secondary: RingexConfig, disk: Disk) -> None:
        self.primary, self.secondary, self.disk = primary, secondary, disk
        self.told = 0  # the newest seq acknowledged to a client (sync mode)
        self.log_at: dict[int, int] = {}  # a batch's last seq -> the order log's size then
        self.failures: list[str] = []
        self.faults: dict[str, int] = {}  # the faults drawn, by kind

    def primary_entry(self, seq: int) -> bytes:
        for d in (journal_dir(self.primary), journal_archive_dir(self.primary)):
            segments = list_segments(d) if d.exists() else []
            for (first, path), nxt in zip(segments, [*segments[1:], (None, None)], strict=True):
                if seq >= first and (nxt[0] is None or seq < nxt[0]):
                    got = entry_at(path.read_bytes(), first, seq)
                    if got:
                        return got
        raise AssertionError(f"seq {seq} not in the primary's journal")

    def standby_durable_entry(self, seq: int) -> bytes:
        segments = list_segments(journal_dir(self.secondary))
        for first, path in reversed(segments):
            if seq >= first:
                return entry_at(self.disk.kept(path), first, seq)
        return b""

    def acknowledged(self, seq: int) -> None:
        """The source publishes ``seq``: the standby's disk must hold it, as the primary's."""
        if seq <= 0:
            return
        if self.standby_durable_entry(seq) != self.primary_entry(seq):
            self.failures.append(f"seq {seq} acknowledged, not fsynced on the standby as sent")
        log = gateway_root(self.secondary) / "gw1" / "orders.log"
        need = max((n for last, n in self.log_at.items() if last <= seq), default=0)
        have = len(log.read_bytes()) if log.exists() else 0
        if have < need:
            self.failures.append(f"seq {seq} acknowledged, order log {have} < {need} bytes")

    def persisted(self, standby: Standby, entries: Entries) -> None:
        if entries.first_seq != standby.next_seq:
            self.failures.append(f"frame at {entries.first_seq}, standby at {standby.next_seq}")

    def state_agrees(self, standby: Standby) -> None:
        at = standby.state.last_seq
        replay = recover(self.primary, upto=at, use_snapshot=False)
        if replay.last_seq != at or replay.state_hashes() != standby.state.state_hashes():
            self.failures.append(f"standby state at seq {at} differs from the primary's replay")


def power_cut(cfg: RingexConfig, disk: Disk) -> None:
    for _first, path in list_segments(journal_dir(cfg)):
        os.truncate(path, max(HEADER_SIZE, len(disk.kept(path))))


def write_users(cfg: RingexConfig, version: int) -> bytes:
    path = gateway_root(cfg) / "users.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = msgspec.json.encode({"version": version, "pad": "x" * (version % 97)})
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return data


async def until(condition: object, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():  # type: ignore[operator]
        assert loop.time() < deadline, f"timed out: {what}"
        await asyncio.sleep(0.005)


async def flow(tmp_path: Path, disk: Disk, mode: str, seed: int, total: int) -> Checker:
    rng = random.Random(seed)
    relay_port = free_port()
    primary, secondary = configs(tmp_path, relay_port, mode)
    check = Checker(primary, secondary, disk)
    journal = JournalWriter(
        journal_dir(primary), slot_size=CODEC.slot_size,
        schema_id=CODEC.journal_schema_id, segment_bytes=SEGMENT,
    )  # fmt: skip
    router = AckBlock(ack_dir(primary.var_dir, primary.instance))
    order_log = gateway_root(primary) / "gw1" / "orders.log"
    order_log.parent.mkdir(parents=True)
    real_ack, real_persist = ReplicationSource._acknowledged, Standby.persist

    def acknowledged(source: ReplicationSource, peer: str, seq: int) -> None:
        check.acknowledged(seq)
        real_ack(source, peer, seq)

    def persist(standby: Standby, entries: Entries) -> int:
        check.persisted(standby, entries)
        return real_persist(standby, entries)

    source = ReplicationSource(primary)
    relay = Relay(relay_port, primary.replication.listen_port, random.Random(-seed))
    server = await relay.start()
    serving = asyncio.create_task(source.run())
    standby = Standby(secondary)
    following = asyncio.create_task(standby.run())
    users = write_users(primary, 0)

    async def stop_standby(clean: bool) -> None:
        standby.stopping.set()  # (a cancel alone can be swallowed by 3.11's wait_for)
        while not following.done():
            following.cancel()
            await asyncio.wait({following}, timeout=1.0)
        with contextlib.suppress(asyncio.CancelledError):
            following.exception()
        if clean:
            standby.close()
        else:
            standby.journal.close()

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ReplicationSource, "_acknowledged", acknowledged)
        mp.setattr(Standby, "persist", persist)
        seq = 0
        while seq < total:
            n = rng.choice([1, 3, 40, 200]) if rng.random() < 0.97 else 4500
            with order_log.open("ab") as f:  # a gateway logs its commands before the router
                f.write(b"".join(b"order %d\n" % s for s in range(seq + 1, seq + n + 1)))
            batch = b"".join(map(CODEC.encode_slot, commands(seq + 1, n)))
            journal.append(seq + 1, batch, n)
            seq += n
            check.log_at[seq] = order_log.stat().st_size
            router.appended(seq)
            if rng.random() < 0.3:
                users = write_users(primary, seq)
            fault = rng.random()
            kind = next((k for k, p in FAULTS if fault < p), "none")
            check.faults[kind] = check.faults.get(kind, 0) + 1
            if fault < FAULTS[0][1]:
                relay.cut()
            elif fault < FAULTS[1][1]:
                relay.half_close()
            elif fault < FAULTS[2][1]:
                relay.delay, relay.split = rng.random() < 0.5, rng.random() < 0.5
            elif fault < FAULTS[3][1]:
                relay.flowing.clear()
                asyncio.get_running_loop().call_later(rng.uniform(0.05, 2.5), relay.flowing.set)
            elif fault < FAULTS[4][1]:  # killed (maybe after a power cut) or stopped, started again
                hard = rng.random() < 0.6
                await stop_standby(clean=not hard)
                if not hard:
                    check.state_agrees(standby)
                if hard and rng.random() < 0.5:
                    power_cut(secondary, disk)
                    promoted = recover(secondary)  # what a promotion now would start from
                    if promoted.last_seq < check.told:
                        check.failures.append(
                            f"power cut: standby holds {promoted.last_seq} < told {check.told}"
                        )
                standby = Standby(secondary)
                following = asyncio.create_task(standby.run())
            elif fault < FAULTS[5][1]:
                source.stopping.set()
                await serving
                source.close()
                source = ReplicationSource(primary)
                serving = asyncio.create_task(source.run())
            elif fault < FAULTS[6][1]:
                archive_segments_before(
                    journal_dir(primary), journal.next_seq, journal_archive_dir(primary)
                )
            elif fault < FAULTS[7][1]:
                relay.delay = relay.split = False
                await until(lambda s=standby, q=seq: s.state.last_seq == q, 15, "catch-up")
                check.state_agrees(standby)
            if following.done():
                following.result()  # a standby that stopped: its reason
            if mode == "sync":  # the router's SyncGate with sync_timeout_ms = 0
                await until(lambda q=seq: router.acked_seq >= q, 15, f"ack of {seq}")
                check.told = seq
            else:
                await asyncio.sleep(rng.random() * 0.01)
        relay.delay = relay.split = False
        relay.flowing.set()
        await until(lambda: standby.state.last_seq == seq, 20, "the final catch-up")
        copy = gateway_root(secondary) / "users.json"
        log = gateway_root(secondary) / "gw1" / "orders.log"
        await until(lambda: copy.exists() and copy.read_bytes() == users, 5, "users.json")
        await until(lambda: log.read_bytes() == order_log.read_bytes(), 5, "orders.log")
        check.state_agrees(standby)
        await stop_standby(clean=True)
        source.stopping.set()
        await serving
        source.close()
        await relay.close(server)
    journal.close()
    router.close()
    same_journals(primary, secondary)
    return check


def same_journals(primary: RingexConfig, secondary: RingexConfig) -> None:
    """Every entry equal, and each segment's entries byte for byte (headers hold a time)."""
    readers = [
        JournalReader(
            journal_dir(c),
            slot_size=CODEC.slot_size,
            schema_id=CODEC.journal_schema_id,
            archive=journal_archive_dir(c),
        )
        for c in (primary, secondary)
    ]
    p, s = ([(q, bytes(i)) for q, i in r.entries(1)] for r in readers)
    assert [q for q, _ in s] == list(range(1, len(p) + 1))
    assert p == s
    mine = {f: path for f, path in list_segments(journal_dir(secondary))}
    for d in (journal_dir(primary), journal_archive_dir(primary)):
        for first, path in list_segments(d) if d.exists() else []:
            if first in mine:
                assert path.read_bytes()[HEADER_SIZE:] == mine[first].read_bytes()[HEADER_SIZE:]


@pytest.mark.parametrize(("mode", "seed"), [("sync", 1), ("async", 3)])  # and sync 2 when written
def test_the_standby_follows_the_primary_through_link_faults(
    tmp_path: Path, disk: Disk, mode: str, seed: int
) -> None:
    check = asyncio.run(flow(tmp_path, disk, mode, seed, 20_000))
    assert check.failures == []
    assert len(check.faults) >= 6, check.faults  # most kinds met in each run


def test_a_diverged_primary_is_refused(tmp_path: Path, disk: Disk) -> None:
    """A primary that lost a shipped tail and sequenced other commands is refused; the
    standby keeps its journal."""
    relay_port = free_port()
    primary, secondary = configs(tmp_path, relay_port, "async")

    def put(first: int, n: int, amount: int) -> None:
        with JournalWriter(
            journal_dir(primary), slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id
        ) as w:
            cmds = [
                msgspec.structs.replace(c, amount=amount) if first > 1 else c
                for c in commands(first, n)
            ]
            w.append(first, b"".join(map(CODEC.encode_slot, cmds)), n)

    async def run() -> None:
        put(1, 50, 100)
        relay = Relay(relay_port, primary.replication.listen_port, random.Random(0))
        server = await relay.start()
        source = ReplicationSource(primary)
        serving = asyncio.create_task(source.run())
        standby = Standby(secondary)
        following = asyncio.create_task(standby.run())
        await until(lambda: standby.next_seq == 51, 10, "catch-up")
        source.stopping.set()
        await serving
        source.close()
        (path,) = (p for _f, p in list_segments(journal_dir(primary)))
        os.truncate(path, HEADER_SIZE + 40 * LAYOUT.size)  # the tail from 41 lost
        put(41, 20, 7)  # other commands at 41..60
        source = ReplicationSource(primary)
        serving = asyncio.create_task(source.run())
        with pytest.raises(StandbyRefusedError, match=r"differs|diverge|mismatch"):
            await asyncio.wait_for(following, 10)
        assert standby.next_seq == 51
        standby.journal.close()
        source.stopping.set()
        await serving
        source.close()
        await relay.close(server)

    asyncio.run(run())
