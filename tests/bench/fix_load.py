"""The FIX load of the pipeline benchmarks: sessions that send NewOrderSingles on a planned
schedule and time their execution reports (HDR histograms), in one process or several.

``drive`` runs one open-loop phase over logged-on sessions and returns a ``Phase``, whose
figures merge across load processes (``load_processes``). bench-pipeline and bench-failover
use it.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import socket
import time
from array import array
from dataclasses import dataclass, field
from typing import Any

import uvloop
from hdrh.histogram import HdrHistogram

from procs.gateway.fix import Timestamps, fields, frame
from tests.bench.pacer import Pacer

SOH = b"\x01"
PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9))

#: A phase ends unfinished (its answer check fails) after this long without an ack.
STALL_S = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_TIMES = Timestamps()  # the gateway's own: the second's text formatted once a second


def utc_now() -> bytes:
    """UTCTimestamp with milliseconds."""
    return _TIMES.format(time.time_ns())


@dataclass
class Session:
    comp_id: str
    port: int
    seq: int = 1
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    planned: dict[bytes, int] = field(default_factory=dict)  # ClOrdID -> planned send ns
    acks: int = 0  # orders acknowledged: each order's first ack
    fills: int = 0
    duplicate_acks: int = 0  # acks of an order already acknowledged: a wrong answer

    @property
    def order_head(self) -> bytes:
        return b"35=D\x0149=%s\x01" % self.comp_id.encode()

    def message(self, msg_type: bytes, *pairs: tuple[int, bytes | str | int]) -> bytes:
        body = fields(
            (35, msg_type), (49, self.comp_id), (56, "RINGEX"), (34, self.seq),
            (52, utc_now()), *pairs,
        )  # fmt: skip
        self.seq += 1
        return frame(body)

    async def logon(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(self.message(b"A", (98, 0), (108, 30), (141, "Y"), (554, "pw")))
        await self.writer.drain()
        await self.reader.readuntil(b"\x0110=")
        await self.reader.readuntil(SOH)


#: The histograms' range in microseconds: 1 us .. 60 s, 3 significant digits.
HIGHEST_US = 60_000_000


def new_histogram() -> HdrHistogram:
    return HdrHistogram(1, HIGHEST_US, 3)


def record_clamped(hist: HdrHistogram, micros: int) -> None:
    """Record ``micros``, a value past the range as the range's top: HdrHistogram's
    ``record_value`` drops it (returns False), and a backlog's slowest answers would leave
    the p99 and the max without a word."""
    hist.record_value(micros if micros <= HIGHEST_US else HIGHEST_US)


class Latencies:
    """Order -> ack and order -> fill, in microseconds, and how late the load generator
    itself wrote each order (its own clock's error, counted in the other two as well).

    The readers append to ``ack_us``, ``fill_us`` and ``send_us`` (arrays: ~50 ns a value);
    the HDR histograms (``ack``, ``fill``, ``send``) take them when first looked at, after
    the phase: recording into one costs ~2 us of pure Python a value, which on a 2-core
    machine was CPU taken from the exchange while it was being measured."""

    def __init__(
        self,
        ack: HdrHistogram | None = None,
        fill: HdrHistogram | None = None,
        send: HdrHistogram | None = None,
    ) -> None:
        self.ack_us, self.fill_us, self.send_us = array("q"), array("q"), array("q")
        self._hists = {
            "ack": (ack or new_histogram(), self.ack_us),
            "fill": (fill or new_histogram(), self.fill_us),
            "send": (send or new_histogram(), self.send_us),
        }

    def _hist(self, kind: str) -> HdrHistogram:
        hist, raw = self._hists[kind]
        for micros in raw:
            record_clamped(hist, micros)
        del raw[:]
        return hist

    @property
    def ack(self) -> HdrHistogram:
        return self._hist("ack")

    @property
    def fill(self) -> HdrHistogram:
        return self._hist("fill")

    @property
    def send(self) -> HdrHistogram:
        return self._hist("send")

    def add(self, other: Latencies) -> None:
        self.ack.add(other.ack)
        self.fill.add(other.fill)
        self.send.add(other.send)

    def summary(self) -> dict[str, int]:
        """``ack_p50_us`` .. ``ack_max_us`` and the same for ``fill`` and ``send`` (lateness)."""
        out: dict[str, int] = {}
        for kind, hist in (("ack", self.ack), ("fill", self.fill), ("send", self.send)):
            for label, pct in PERCENTILES:
                out[f"{kind}_{label}_us"] = hist.get_value_at_percentile(pct)
            out[f"{kind}_max_us"] = hist.get_max_value()
        return out


class FilledOrders:
    """The orders of one phase that were filled, and whether each was acked first, so that
    an ack coming after its order's fill is still told apart (a duplicate, or an order's
    first ack, late) once the order is gone from ``Session.planned``.

    An order is known by the number its ClOrdID ends with: ``drive`` and the soak number
    their orders 0, 1, 2... with one counter over all sessions. Each is a bit in a window that
    starts at the oldest order not yet filled and slides on as the orders below it fill, so
    memory is a bit per order in flight, not one per order sent (a soak sends millions); an
    order filled with no ack before is kept apart, in a set (a wrong answer, and rare). An
    order that never fills holds the window's start, and the window grows a bit per order
    after it, up to ``MAX_SPAN`` bits (8 MiB); an order numbered past that is not kept."""

    MAX_SPAN = 1 << 26

    def __init__(self) -> None:
        self.base = 0  # every order numbered below it was filled
        self.bits = bytearray()  # bit k: order base + k was filled
        self.unacked: set[int] = set()  # filled with no ack before

    def add(self, number: int, acked: bool) -> None:
        """Order ``number`` was filled (``acked``: after its ack)."""
        k = number - self.base
        bits, at = self.bits, k >> 3
        if not 0 <= at < len(bits):
            if not 0 <= k < self.MAX_SPAN:
                return
            bits.extend(bytes(at + 1 - len(bits)))
        bits[at] |= 1 << (k & 7)
        if not acked:
            self.unacked.add(number)
        if at == 0 and bits[0] == 0xFF:  # the window's first 8 orders are filled: slide on
            full = 1
            while full < len(bits) and bits[full] == 0xFF:
                full += 1
            del bits[:full]
            self.base += full << 3

    def acked(self, number: int) -> bool:
        """Whether order ``number`` was filled and had been acked: a New for it now is a
        duplicate. An order filled unacked counts as acked from its first (late) New on:
        ``ack_late``."""
        if number in self.unacked:
            return False
        k = number - self.base
        if k < 0:
            return True
        return k >> 3 < len(self.bits) and bool(self.bits[k >> 3] >> (k & 7) & 1)

    def ack_late(self, number: int) -> None:
        """Order ``number``'s first New came after its fill: a New after this one is a
        duplicate. (Not counted in ``acks``: its fill came first, a wrong answer already.)"""
        self.unacked.discard(number)


@dataclass
class Recorder:
    """Where the report readers record; the soak swaps ``lat`` to get one window at a time.
    One recorder serves one phase's sessions (``filled``: their orders, numbered as one)."""

    lat: Latencies = field(default_factory=Latencies)
    filled: FilledOrders = field(default_factory=FilledOrders)


async def read_reports(session: Session, rec: Recorder) -> None:
    """Times the acks (150=0) and fills (150=F) of the orders ``session.planned`` holds.
    A read's reports are found by position, not sliced off the buffer one at a time (which
    copied the rest of a 64 KiB read once per report). An order's first ack marks it acked
    (its planned time stored as ``~planned``), so a second ack of it is counted apart, as
    ``duplicate_acks``, rather than standing in for another order's missing one. A fill
    forgets the order and notes it in ``rec.filled``, so that an ack after it is counted
    as well: a duplicate if the order had been acked. A report of a ClOrdID this session's
    phase did not send (its text before the number is not that of this phase's orders: a
    late report of an earlier phase, say) is passed over."""
    assert session.reader is not None
    buf = b""
    planned, filled = session.planned, rec.filled
    stem: bytes | None = None  # this phase's ClOrdIDs' text before their number
    while True:
        data = await session.reader.read(1 << 16)
        if not data:
            return
        now = time.perf_counter_ns()
        acks, fills = rec.lat.ack_us, rec.lat.fill_us  # the soak swaps ``rec.lat``
        buf = buf + data if buf else data
        pos = 0
        while (end := buf.find(b"\x0110=", pos)) >= 0 and (stop := buf.find(SOH, end + 4)) >= 0:
            start, pos = pos, stop + 1
            if buf.find(b"\x0135=8\x01", start, end) < 0:
                continue
            at = buf.find(b"\x01150=", start, end) + 5
            exec_type = buf[at : at + 1]
            at = buf.find(b"\x0111=", start, end) + 4
            ref = buf[at : buf.find(SOH, at)]
            # an order of 1 lot fills once, after its ack: forget it then (a soak sends millions)
            sent = planned.pop(ref, None) if exec_type == b"F" else planned.get(ref)
            if sent is None:
                if exec_type == b"0" and stem is not None:
                    late_ack(session, filled, stem, ref)
                continue
            if exec_type == b"0":
                if sent < 0:  # acked before
                    session.duplicate_acks += 1
                    continue
                planned[ref] = ~sent
                session.acks += 1
                acks.append(max(1, (now - sent) // 1000))
            elif exec_type == b"F":
                session.fills += 1
                fills.append(max(1, (now - (~sent if sent < 0 else sent)) // 1000))
                head, _, tail = ref.rpartition(b"-")
                if stem is None:
                    stem = head
                try:
                    number = int(tail)
                except ValueError:
                    number = -1  # not kept: no number to know the order by
                filled.add(number, sent < 0)
        buf = buf[pos:]


def late_ack(session: Session, filled: FilledOrders, stem: bytes, ref: bytes) -> None:
    """An ack of ``ref``, an order not in flight: a duplicate if it is one of this phase's
    (``stem``), filled after an ack; its first ack, late, if filled with none."""
    head, _, tail = ref.rpartition(b"-")
    if head != stem or not tail.isdigit():
        return
    if filled.acked(number := int(tail)):
        session.duplicate_acks += 1
    else:
        filled.ack_late(number)


#: A NewOrderSingle's body after the header's CompID: what ``Session.message`` writes for
#: it, in one formatting pass (``test_bench_fix_load`` checks they are equal).
_ORDER = (
    b"56=RINGEX\x0134=%d\x0152=%s\x0111=%s\x0155=BTC-USD\x0154=%s\x0160=%s\x01"
    b"38=1\x0140=2\x0144=100.00\x0159=1\x01"
)


def order(session: Session, ref: bytes, side: bytes, planned_ns: int) -> bytes:
    """One limit order for 1 lot at 100.00, latency to be measured from ``planned_ns``: the
    message, its MsgSeqNum taken, for the caller to write."""
    session.planned[ref] = planned_ns
    now = utc_now()
    body = session.order_head + _ORDER % (session.seq, now, ref, side, now)
    session.seq += 1
    return frame(body)


def send_order(session: Session, ref: bytes, side: bytes, planned_ns: int) -> None:
    """``order``, written at once."""
    assert session.writer is not None
    session.writer.write(order(session, ref, side, planned_ns))


@dataclass
class Phase:
    """What one phase measured, in one load process or merged over several."""

    offered_rate: int
    orders: int = 0
    acks: int = 0
    fills: int = 0
    elapsed_s: float = 0.0
    lat: Latencies = field(default_factory=Latencies)
    #: When the phase ran, on the host's monotonic clock (time.monotonic, the same in every
    #: process): the window of each process's CPU share (cpu_watch.py).
    window: tuple[float, float] = (float("inf"), 0.0)
    duplicate_acks: int = 0  # second acks of an order (``acks`` counts each order once)

    def merge(self, other: Phase) -> None:
        """Another load process's share of the same phase (started at the same moment)."""
        self.orders += other.orders
        self.acks += other.acks
        self.fills += other.fills
        self.duplicate_acks += other.duplicate_acks
        self.elapsed_s = max(self.elapsed_s, other.elapsed_s)
        self.lat.add(other.lat)
        self.window = (min(self.window[0], other.window[0]), max(self.window[1], other.window[1]))

    def row(self) -> dict[str, Any]:
        return {
            "offered_rate": self.offered_rate,
            "orders": self.orders,
            "acks": self.acks,
            "fills": self.fills,
            "duplicate_acks": self.duplicate_acks,
            "ops_per_s": self.acks / self.elapsed_s,
            **self.lat.summary(),
        }

    def encode(self) -> tuple[Any, ...]:
        """Picklable, for a load process to send home (histograms as HdrHistogram's codec)."""
        counts = (self.offered_rate, self.orders, self.acks, self.fills, self.elapsed_s)
        hists = (self.lat.ack, self.lat.fill, self.lat.send)
        return (*counts, self.window, *(h.encode() for h in hists), self.duplicate_acks)

    @classmethod
    def decode(cls, wire: tuple[Any, ...]) -> Phase:
        rate, orders, acks, fills, elapsed, window, ack, fill, send, duplicates = wire
        lat = Latencies(*(HdrHistogram.decode(h) for h in (ack, fill, send)))
        return cls(rate, orders, acks, fills, elapsed, lat, window, duplicates)


async def drive(sessions: list[Session], rate: int, seconds: float, phase: str) -> Phase:
    rec = Recorder()
    readers = [asyncio.create_task(read_reports(s, rec)) for s in sessions]
    total = int(rate * seconds)
    interval_ns = 1e9 / rate
    start = time.perf_counter_ns() + 10_000_000
    began = time.monotonic() + 0.01
    sent = 0
    k = 0
    pacer = Pacer()  # asyncio.sleep would send up to a millisecond late (pacer.py)
    try:
        while sent < total:
            now = time.perf_counter_ns()
            due = min(total, int((now - start) / interval_ns) + 1)
            batches: dict[int, list[bytes]] = {}  # session index -> what is due: one write
            planned_due: list[int] = []
            while sent < due:  # everything due goes now: a late start is measured, not hidden
                k_session = sent % len(sessions)
                session = sessions[k_session]
                ref = b"%s-%s-%d" % (phase.encode(), session.comp_id.encode(), sent)  # unique
                side = b"1" if (sent // len(sessions)) % 2 == 0 else b"2"
                planned = start + int(sent * interval_ns)
                planned_due.append(planned)
                batches.setdefault(k_session, []).append(order(session, ref, side, planned))
                sent += 1
            for k_session, batch in batches.items():
                writer = sessions[k_session].writer
                assert writer is not None
                writer.write(b"".join(batch))
            written = time.perf_counter_ns()
            rec.lat.send_us.extend(max(1, (written - p) // 1000) for p in planned_due)
            k += 1
            if k % 8 == 0 and any(  # a writer with bytes the kernel did not take: back off
                s.writer and s.writer.transport.get_write_buffer_size() for s in sessions
            ):
                await asyncio.gather(*(s.writer.drain() for s in sessions if s.writer))
            await pacer.until(start + int(sent * interval_ns))
    finally:
        pacer.close()
    # Offered above capacity, the backlog drains at the sustained rate (100k orders at 4k/s:
    # 25 s): wait while acks still come, and give up only after STALL_S without one.
    acked, last_progress = -1, time.monotonic()
    while (now_acked := sum(s.acks for s in sessions)) < total:
        if now_acked != acked:
            acked, last_progress = now_acked, time.monotonic()
        elif time.monotonic() - last_progress > STALL_S:
            break
        await asyncio.sleep(0.01)
    elapsed = (time.perf_counter_ns() - start) / 1e9
    for task in readers:
        task.cancel()
    acks = sum(s.acks for s in sessions)
    fills = sum(s.fills for s in sessions)
    duplicates = sum(s.duplicate_acks for s in sessions)
    for s in sessions:
        s.planned.clear()
        s.acks = s.fills = s.duplicate_acks = 0
    window = (began, time.monotonic())
    return Phase(rate, total, acks, fills, elapsed, rec.lat, window, duplicates)


def load_processes(
    args: argparse.Namespace,
    names: list[str],
    homes: list[int],
    phases: tuple[tuple[str, int], ...],
    cpus: list[int],
) -> list[Phase]:
    """--workers processes, each with every --workers-th session, offering its share of each
    phase's rate; they start each phase together, and their figures are merged per phase."""
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(args.workers), ctx.Queue()
    procs = []
    for w in range(args.workers):
        mine = list(range(w, len(names), args.workers))
        share = tuple((phase, rate // args.workers) for phase, rate in phases)
        cpu = cpus[w] if cpus else None
        work = ([names[k] for k in mine], [homes[k] for k in mine], share, args.seconds, cpu)
        procs.append(ctx.Process(target=load_process, args=(*work, barrier, out)))
    for proc in procs:
        proc.start()
    merged = [Phase(rate) for _, rate in phases]
    for _ in range(args.workers * len(phases)):
        index, wire = out.get(timeout=STALL_S * 10 + args.seconds * 4)
        merged[index].merge(Phase.decode(wire))
    for proc in procs:
        proc.join(30)
    return merged


def load_process(
    names: list[str],
    homes: list[int],
    phases: tuple[tuple[str, int], ...],
    seconds: float,
    cpu: int | None,
    barrier: Any,
    out: Any,
) -> None:
    """One load process of ``load_processes``: its sessions, each phase after the barrier."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})

    async def run() -> None:
        sessions = [Session(name, home) for name, home in zip(names, homes, strict=True)]
        await asyncio.gather(*(s.logon() for s in sessions))
        for index, (phase, rate) in enumerate(phases):
            barrier.wait()  # nothing else runs on this loop between phases
            out.put((index, (await drive(sessions, rate, seconds, phase)).encode()))
        for s in sessions:
            if s.writer is not None:
                s.writer.close()

    uvloop.run(run())
