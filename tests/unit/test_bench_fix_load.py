"""The FIX load generator's shortcuts (tests/bench/fix_load.py) say what the long way says."""

from __future__ import annotations

import asyncio
import time

import pytest

from procs.gateway.fix import frame
from tests.bench import fix_load
from tests.bench.fix_load import (
    Latencies,
    Phase,
    Recorder,
    Session,
    read_reports,
    send_order,
    utc_now,
)


class _Writer:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)


def test_send_order_writes_what_message_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fix_load, "utc_now", lambda: b"20261125-21:00:00.123")
    fast, slow = Session("S7", 0, seq=41), Session("S7", 0, seq=41)
    writer = _Writer()
    fast.writer = writer  # type: ignore[assignment]
    send_order(fast, b"lat-S7-3", b"2", 5)
    expected = slow.message(
        b"D",
        *((11, b"lat-S7-3"), (55, "BTC-USD"), (54, b"2"), (60, b"20261125-21:00:00.123")),
        *((38, "1"), (40, "2"), (44, "100.00"), (59, "1")),
    )
    assert writer.written == [expected]
    assert (fast.seq, fast.planned) == (42, {b"lat-S7-3": 5})


def test_utc_now_is_the_clock_in_fix_format() -> None:
    before = time.strftime("%Y%m%d-%H:%M:%S", time.gmtime()).encode()
    now = utc_now()
    after = time.strftime("%Y%m%d-%H:%M:%S", time.gmtime()).encode()
    assert before <= now[:17] <= after
    assert len(now) == 21 and now[17:18] == b"." and now[18:].isdigit()


def test_latencies_recorded_as_arrays_reach_the_histograms_and_survive_the_wire() -> None:
    lat = Latencies()
    lat.ack_us.extend([100, 200, 300])
    lat.fill_us.append(5_000)
    lat.send_us.extend([1, 2])
    assert lat.summary()["ack_max_us"] in range(300, 302)  # 3 significant digits
    lat.ack_us.append(10_000)  # recorded after a first look: still counted
    phase = Phase(1_000, 4, 4, 1, 1.0, lat)
    back = Phase.decode(phase.encode())
    summary = back.lat.summary()
    assert back.lat.ack.get_total_count() == 4
    assert summary["fill_p50_us"] in range(4_995, 5_006)
    assert back.lat.send.get_total_count() == 2
    merged = Latencies()
    merged.ack_us.append(7)
    merged.add(back.lat)
    assert merged.ack.get_total_count() == 5


def test_reports_cut_anywhere_are_each_timed_once() -> None:
    """Acks and fills of planned orders are timed however the reads cut them; other reports
    (an unplanned ClOrdID, a message that is not an ExecutionReport) are passed over."""

    def report(seq: int, ref: bytes, exec_type: bytes) -> bytes:
        return frame(
            b"35=8\x0149=RINGEX\x0156=S0\x0134=%d\x0152=20261125-23:00:00.000\x0137=%d\x01"
            b"11=%s\x0117=e%d\x01150=%s\x0139=0\x0155=BTC-USD\x01" % (seq, seq, ref, seq, exec_type)
        )

    heartbeat = frame(b"35=0\x0149=RINGEX\x0156=S0\x0134=2\x01")
    stream = b"".join([
        report(1, b"o-1", b"0"), heartbeat, report(3, b"o-2", b"0"), report(4, b"o-1", b"F"),
        report(5, b"stranger", b"0"), report(6, b"o-2", b"F"),
    ])  # fmt: skip

    class Reader:
        def __init__(self, reads: list[bytes]) -> None:
            self.reads = reads

        async def read(self, _n: int) -> bytes:
            return self.reads.pop(0) if self.reads else b""

    for cut in (1, 7, 50, len(stream)):
        reads = [stream[k : k + cut] for k in range(0, len(stream), cut)]
        session = Session("S0", 0, reader=Reader(reads))  # type: ignore[arg-type]
        session.planned.update({b"o-1": 1, b"o-2": 1})
        rec = Recorder()
        asyncio.run(read_reports(session, rec))
        assert (session.acks, session.fills, session.planned) == (2, 2, {})
        assert len(rec.lat.ack_us) == len(rec.lat.fill_us) == 2
