"""The FIX load's duplicate acks (tests/bench/fix_load.py, read_reports): a second New for an
order that comes after the order's fill is counted too. Before, the fill forgot the order
(``planned.pop``) and the duplicate was passed over as a report of an unknown ClOrdID."""

from __future__ import annotations

import asyncio
import time

import pytest

from procs.gateway.fix import frame
from tests.bench.fix_load import FilledOrders, Recorder, Session, read_reports

ACK, FILL = b"0", b"F"


def report(seq: int, ref: bytes, exec_type: bytes) -> bytes:
    return frame(
        b"35=8\x0149=RINGEX\x0156=S0\x0134=%d\x0152=20261125-23:00:00.000\x0137=%d\x01"
        b"11=%s\x0117=e%d\x01150=%s\x0139=0\x0155=BTC-USD\x01" % (seq, seq, ref, seq, exec_type)
    )


class Reader:
    def __init__(self, reads: list[bytes]) -> None:
        self.reads = reads

    async def read(self, _n: int) -> bytes:
        return self.reads.pop(0) if self.reads else b""


def read(
    reports: list[tuple[bytes, bytes]], sent: list[bytes], cut: int = 0
) -> tuple[Session, Recorder]:
    """``reports`` (ClOrdID, ExecType) read by a session that sent the orders ``sent``, in
    reads of ``cut`` bytes (0: all in one)."""
    stream = b"".join(report(k + 1, ref, kind) for k, (ref, kind) in enumerate(reports))
    reads = [stream[k : k + cut] for k in range(0, len(stream), cut)] if cut else [stream]
    session = Session("S0", 0, reader=Reader(reads))  # type: ignore[arg-type]
    session.planned.update(dict.fromkeys(sent, time.perf_counter_ns()))
    rec = Recorder()
    asyncio.run(read_reports(session, rec))
    return session, rec


@pytest.mark.parametrize("cut", [0, 1, 33])
def test_an_ack_after_the_fill_of_an_acked_order_is_a_duplicate(cut: int) -> None:
    reports = [(b"t-S0-0", ACK), (b"t-S0-0", FILL), (b"t-S0-0", ACK), (b"t-S0-1", ACK)]
    session, rec = read(reports, [b"t-S0-0", b"t-S0-1"], cut)
    assert (session.acks, session.fills, session.duplicate_acks) == (2, 1, 1)
    assert len(rec.lat.ack_us) == 2  # the duplicate is not timed as an ack
    assert session.planned.keys() == {b"t-S0-1"}


def test_duplicates_before_and_after_the_fill_are_both_counted() -> None:
    reports = [(b"t-S0-0", ACK), (b"t-S0-0", ACK), (b"t-S0-0", FILL), (b"t-S0-0", ACK)]
    session, _ = read(reports, [b"t-S0-0"])
    assert (session.acks, session.fills, session.duplicate_acks) == (1, 1, 2)


def test_an_ack_after_a_fill_with_none_before_is_late_not_a_duplicate() -> None:
    """Its first ack, after its fill: not an ack (acks < orders tells the order was never
    acked in time), nor a duplicate; a New after that one is."""
    reports = [(b"t-S0-0", FILL), (b"t-S0-0", ACK)]
    session, _ = read(reports, [b"t-S0-0"])
    assert (session.acks, session.fills, session.duplicate_acks) == (0, 1, 0)
    session, _ = read([*reports, (b"t-S0-0", ACK)], [b"t-S0-0"])
    assert (session.acks, session.fills, session.duplicate_acks) == (0, 1, 1)


def test_acks_of_orders_this_phase_did_not_send_are_passed_over() -> None:
    """An earlier phase's order (another text before the number, same number) and one of
    another session are no duplicate of this phase's order 0, nor is a number never sent."""
    reports = [(b"t-S0-0", ACK), (b"t-S0-0", FILL)]
    reports += [(b"lat-S0-0", ACK), (b"t-S1-0", ACK), (b"t-S0-7", ACK), (b"stranger", ACK)]
    session, _ = read(reports, [b"t-S0-0"])
    assert (session.acks, session.fills, session.duplicate_acks) == (1, 1, 0)


def test_the_filled_orders_window_slides_so_memory_stays_a_bit_an_order_in_flight() -> None:
    """100k orders acked and filled (one still resting): the window keeps the orders from
    the oldest unfilled one on, not 100k; a duplicate of an old order is still told."""
    n = 100_000
    refs = [b"t-S0-%d" % k for k in range(n)]
    reports = [(ref, kind) for ref in refs for kind in (ACK, FILL)]
    reports = [r for r in reports if r != (refs[n - 5], FILL)]  # resting: not filled yet
    reports += [(refs[3], ACK), (refs[n - 2], ACK), (refs[n - 5], ACK)]
    session, rec = read(reports, refs, cut=1 << 16)
    assert (session.acks, session.fills) == (n, n - 1)
    assert session.duplicate_acks == 3  # order n-5 in flight, 3 and n-2 filled
    assert rec.filled.base == (n - 5) // 8 * 8 and len(rec.filled.bits) == 1
    assert session.planned.keys() == {refs[n - 5]}


def test_filled_orders_in_any_order() -> None:
    filled = FilledOrders()
    for number in (9, 3, 0, 1, 2, 4, 5, 6):
        filled.add(number, acked=True)
    assert filled.base == 0 and filled.acked(6) and filled.acked(9)
    assert not filled.acked(7) and not filled.acked(8)
    filled.add(7, acked=False)  # filled before any ack
    assert filled.base == 8 and not filled.acked(7) and filled.acked(0)
    filled.ack_late(7)
    assert filled.acked(7) and filled.unacked == set()
    filled.add(FilledOrders.MAX_SPAN + 8, acked=True)  # past the window's reach: not kept
    assert not filled.acked(FilledOrders.MAX_SPAN + 8) and len(filled.bits) == 1
