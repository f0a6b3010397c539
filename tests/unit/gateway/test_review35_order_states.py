"""Review 35: the FIX order state machine as a client sees it, report by report, against the
FIX 4.4 order state change matrices (Volume 4, Appendix D), every sequence through the real
router and matcher of ``harness.py`` and a simplefix client.

The first tests each FAIL on the code they were written against because of the fault their
docstring names (matrix, what came, what was expected). The tests after them (marked
"Holds") pin sequences checked against the matrices and found right. What earlier reviews
pinned (``test_review29_exec_reports.py``, ``test_review_fix_orders*_bugs.py``, ...) is not
repeated."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from tests.unit.gateway.harness import Client, Harness, utc
from tests.unit.gateway.test_gateway import cancel, logged_on, order, run, status_request
from tests.unit.gateway.test_gateway_restart import back_on, crash
from tests.unit.gateway.test_review29_exec_reports import drain, tags
from tests.unit.gateway.test_review_fix_orders2_bugs import end_of_session


def consistent(report: Any) -> None:
    """FIX 4.4: on a report of a working order OrderQty = CumQty + LeavesQty; once it is
    done (filled, cancelled, expired, rejected) LeavesQty is 0."""
    qty, cum, leaves = (Decimal(report.get(t).decode()) for t in (38, 14, 151))
    if report.get(39) in (b"2", b"4", b"C", b"8"):
        assert leaves == 0, report
    else:
        assert qty == cum + leaves, report


async def cancel_waiting(h: Harness, port: int) -> Client:
    """ALICE's order X acknowledged, then her cancel (C1,X) sent while the router takes
    nothing (``Harness.pause``): the cancel waits in the ring."""
    alice = await logged_on(port)
    await alice.send("D", *order("X", "1", "1.00", "90.00"))
    assert (await alice.expect("8")).get(150) == b"0"
    h.pause()
    await alice.send("F", *cancel("X", "C1", "1"))
    return alice


# -- faults -----------------------------------------------------------------------------------


def test_a_replace_of_a_pending_replace_is_refused_with_ord_status_pending_replace(
    harness: Harness,
) -> None:
    """Matrix D "one cancel/replace request is issued followed immediately by another --
    broker rejects the second as order is pending replace": New(X), Replace(Y,X), then
    Replace(Z,Y) before Y is answered: Cancel Reject (Z) with CxlRejReason 3 and OrdStatus
    **Pending Replace** (E), then Replace (Y,X) 150=5.

    The gateway refuses Z with 102=3 but OrdStatus the order's plain state (0), while its own
    OrderStatusRequest answer, asked at the same moment, says 39=E (``pending_status``):
    ``_send_cancel_reject`` (order_replies.py) writes ``order.status`` and never looks at
    the requests in flight. A client's order manager then moves the order back from
    Pending Replace to New while the replace is still outstanding."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("X", "1", "1.00", "90.00"))
        assert tags(await alice.expect("8"), 150, 39) == (b"0", b"0")
        h.pause()  # Y waits in the ring: the order is pending replace
        await alice.send("G", (41, "X"), *order("Y", "1", "0.80", "90.00"))
        await asyncio.sleep(0.05)
        await alice.send("G", (41, "Y"), *order("Z", "1", "0.70", "90.00"))
        reject = await alice.expect("9")
        await alice.send("H", *status_request("X", "1"))
        status = await alice.expect("8")
        h.resume()
        replaced = await alice.expect("8")
        assert tags(reject, 11, 434, 102) == (b"Z", b"2", b"3"), reject
        assert tags(status, 150, 39) == (b"I", b"E"), status
        assert reject.get(39) == b"E", reject
        assert tags(replaced, 150, 39, 11, 41, 38, 151) == (
            b"5", b"0", b"Y", b"X", b"0.80", b"0.80",
        )  # fmt: skip

    run(harness, scenario)


def test_a_cancel_reject_while_a_cancel_is_pending_says_pending_cancel(harness: Harness) -> None:
    """OrdStatus (39) on an OrderCancelReject is "the current status of the order" and FIX
    4.4 Appendix D ranks Pending Cancel above New and Partially Filled. ALICE's cancel of X
    waits at the exchange; a replace of X that does not fit the order (another Side) is
    refused by the gateway at once: CxlRejReason 99 with OrdStatus Pending Cancel (6), as the
    gateway's own status answer says then. Actual: 39=0."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await cancel_waiting(h, port)
        await asyncio.sleep(0.05)
        await alice.send("G", (41, "X"), *order("Y", "2", "1.00", "90.00"))
        reject = await alice.expect("9")
        h.resume()
        done = await alice.expect("8")
        assert tags(reject, 11, 41, 434, 102) == (b"Y", b"X", b"2", b"99"), reject
        assert reject.get(39) == b"6", reject
        assert tags(done, 150, 39, 11, 41) == (b"4", b"4", b"C1", b"X"), done

    run(harness, scenario)


def test_a_status_while_a_cancel_and_a_replace_wait_says_pending_cancel(harness: Harness) -> None:
    """FIX 4.4 Appendix D ranks OrdStatus by precedence: Pending Cancel (12) above Pending
    Replace (11). ALICE cancels X (C1,X) and, before either is answered, replaces it
    (Y,X); her OrderStatusRequest then says 39=E: ``pending_status`` (order_replies.py)
    keeps whichever request came last. Expected 39=6; then the cancel wins at the exchange
    (150=4 under C1) and the replace is too late (35=9, 102=0, 39=4)."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await cancel_waiting(h, port)
        await alice.send("G", (41, "X"), *order("Y", "1", "0.50", "90.00"))
        await asyncio.sleep(0.05)
        await alice.send("H", *status_request("X", "1"))
        status = await alice.expect("8")
        h.resume()
        done = await alice.expect("8")
        reject = await alice.expect("9")
        assert tags(status, 150, 39) == (b"I", b"6"), status
        assert tags(done, 150, 39, 11, 41) == (b"4", b"4", b"C1", b"X"), done
        assert tags(reject, 11, 434, 102, 39) == (b"Y", b"2", b"0", b"4"), reject

    run(harness, scenario)


# -- checked and found right --------------------------------------------------------------------


def test_holds_avg_px_is_the_exact_volume_weighted_price_over_several_levels(
    harness: Harness,
) -> None:
    """Holds: a bid sweeping three asks (0.03 at 100.00, 0.01 at 100.05, 0.02 at 100.15)
    reports after each fill AvgPx as the volume-weighted price in decimal, to the price's
    decimals plus four, cut not rounded, never a float artefact: 100.000000, 100.012500,
    100.058333 (600.35 / 6); LastPx/LastQty each fill's; every report keeps OrderQty = CumQty +
    LeavesQty; a fourth fill makes 900.80 / 9, 100.088888 (cut)."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        bob = await logged_on(port, "BOB")
        for cl, qty, price in (("a1", "0.03", "100.00"), ("a2", "0.01", "100.05")):
            await bob.send("D", *order(cl, "2", qty, price))
            await bob.expect("8")
        await bob.send("D", *order("a3", "2", "0.02", "100.15"))
        await bob.expect("8")
        await alice.send("D", *order("b", "1", "0.10", "100.15"))
        got = [await alice.expect("8") for _ in range(4)]
        for m in got:
            consistent(m)
        assert [tags(m, 150, 39, 31, 32, 14, 151, 6) for m in got] == [
            (b"0", b"0", None, None, b"0.00", b"0.10", b"0.000000"),
            (b"F", b"1", b"100.00", b"0.03", b"0.03", b"0.07", b"100.000000"),
            (b"F", b"1", b"100.05", b"0.01", b"0.04", b"0.06", b"100.012500"),
            (b"F", b"1", b"100.15", b"0.02", b"0.06", b"0.04", b"100.058333"),
        ]
        await bob.send("D", *order("a4", "2", "0.03", "100.10"))
        fill = await alice.expect("8")
        # the ask takes the resting rest of the bid: the trade is at the bid's 100.15
        exact = (Decimal("300") + Decimal("100.05") + Decimal("200.30") + Decimal("300.45")) / 9
        assert tags(fill, 150, 39, 31, 14, 151) == (b"F", b"1", b"100.15", b"0.09", b"0.01")
        shown = Decimal(fill.get(6).decode())
        assert shown == exact.quantize(Decimal("0.000001"), rounding="ROUND_DOWN"), shown

    run(harness, scenario)


def test_holds_a_partly_filled_day_order_expires_with_its_cum_qty(harness: Harness) -> None:
    """Holds: at the end of the session a partly filled Day order is Expired (150=C, 39=C),
    CumQty and AvgPx kept, LeavesQty 0; a Day stop never triggered expires too (150=C); a
    GTC order stays, and a status request after says 39=C for the expired one."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        bob = await logged_on(port, "BOB")
        await alice.send("D", *order("day", "1", "1.00", "100.00", "2", (59, "0")))
        await alice.send("D", *order("stp", "1", "0.10", "120.00", "4", (59, "0"), (99, "119.00")))
        await alice.send("D", *order("gtc", "1", "0.10", "95.00", "2", (59, "1")))
        assert [(await alice.expect("8")).get(150) for _ in range(3)] == [b"0"] * 3
        await bob.send("D", *order("s", "2", "0.25", "100.00"))
        fill = await alice.expect("8")
        assert tags(fill, 11, 150, 39, 14, 151) == (b"day", b"F", b"1", b"0.25", b"0.75")
        h.funder.publish_batch([end_of_session()])
        ends = {m.get(11): m for m in await drain(alice) if m.get(35) == b"8"}
        assert sorted(ends) == [b"day", b"stp"], sorted(ends)
        assert tags(ends[b"day"], 150, 39, 38, 14, 151, 6) == (
            b"C", b"C", b"1.00", b"0.25", b"0.00", b"100.000000",
        )  # fmt: skip
        assert tags(ends[b"stp"], 150, 39, 14, 151) == (b"C", b"C", b"0.00", b"0.00")
        await alice.send("H", *status_request("day", "1"))
        assert tags(await alice.expect("8"), 150, 39, 14) == (b"I", b"C", b"0.25")
        await alice.send("F", *cancel("day", "c9", "1"))
        assert tags(await alice.expect("9"), 39, 102, 434) == (b"C", b"0", b"1")

    run(harness, scenario)


def test_holds_a_cancel_racing_the_fill_that_ends_the_order_is_too_late(
    harness: Harness,
) -> None:
    """Holds (matrix D "cancel request issued for a filled order" in flight): ALICE's cancel
    of X leaves before the fill that completes X reaches her; the exchange takes the fill
    first. She gets 150=F 39=2 then OrderCancelReject 102=0 (too late), 434=1, 39=2, with
    her cancel's ClOrdID and X's OrderID; a status request for the cancel's ClOrdID, which
    named no order, is the unknown-order answer (150=I, 39=8, OrderID NONE)."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        bob = await logged_on(port, "BOB")
        await alice.send("D", *order("X", "2", "0.50", "101.00"))
        new = await alice.expect("8")
        h.pause()
        await bob.send("D", *order("b", "1", "0.50", "101.00"))
        await asyncio.sleep(0.05)
        await alice.send("F", *cancel("X", "C", "2"))
        await asyncio.sleep(0.05)
        h.resume()
        fill = await alice.expect("8")
        reject = await alice.expect("9")
        assert tags(fill, 150, 39, 14, 151) == (b"F", b"2", b"0.50", b"0.00")
        assert tags(reject, 11, 41, 37, 39, 434, 102) == (
            b"C", b"X", new.get(37), b"2", b"1", b"0",
        )  # fmt: skip
        await alice.send("H", *status_request("C", "2"))
        assert tags(await alice.expect("8"), 150, 39, 37) == (b"I", b"8", b"NONE")

    run(harness, scenario)


def test_holds_a_mass_cancel_ends_a_partly_filled_order_keeping_its_cum_qty(
    harness: Harness,
) -> None:
    """Holds: OrderMassCancelRequest (q, 530=1 on the symbol) is answered r 531=1, then each
    order is Canceled (150=4, 39=4) under its own ClOrdID: a partly filled one keeps CumQty
    and AvgPx with LeavesQty 0; a second q with the same ClOrdID is refused (531=0)."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        bob = await logged_on(port, "BOB")
        await alice.send("D", *order("p", "1", "1.00", "100.00"))
        await alice.send("D", *order("q", "1", "1.00", "99.00"))
        assert [(await alice.expect("8")).get(150) for _ in range(2)] == [b"0", b"0"]
        await bob.send("D", *order("s", "2", "0.30", "100.00"))
        assert tags(await alice.expect("8"), 150, 14) == (b"F", b"0.30")
        await alice.send("q", (11, "mc"), (530, "1"), (55, "BTC-USD"), (60, utc()))
        assert tags(await alice.expect("r"), 11, 530, 531) == (b"mc", b"1", b"1")
        done = {m.get(11): m for m in [await alice.expect("8") for _ in range(2)]}
        assert tags(done[b"p"], 150, 39, 38, 14, 151, 6) == (
            b"4", b"4", b"1.00", b"0.30", b"0.00", b"100.000000",
        )  # fmt: skip
        assert tags(done[b"q"], 150, 39, 14, 151) == (b"4", b"4", b"0.00", b"0.00")
        await alice.send("q", (11, "mc"), (530, "1"), (55, "BTC-USD"), (60, utc()))
        assert (await alice.expect("r")).get(531) == b"0"

    run(harness, scenario)


def test_a_mass_cancel_of_a_kind_fix_defines_and_ringex_does_not_is_answered_not_supported(
    harness: Harness,
) -> None:
    """FIX 4.4: an OrderMassCancelRequest the venue does not support is answered by an
    OrderMassCancelReport, 531=0 with MassCancelRejectReason 0 (not supported), as an
    OrdType or TimeInForce it does not support is an order's refusal (review 297). Until
    2026-12-03 MassCancelRequestType 2 to 6 was a session Reject (373=5), and the request
    was never answered; ALICE's order stays, and a 530=7 then cancels it."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("X", "1", "1.00", "90.00"))
        assert tags(await alice.expect("8"), 150) == (b"0",)
        for kind, extra in (("2", (311, "BTC")), ("3", (460, "4")), ("6", (336, "1"))):
            await alice.send("q", (11, "m" + kind), (530, kind), extra, (60, utc()))
            report = await alice.expect("r")
            said = (f"m{kind}".encode(), kind.encode(), b"0", b"0")
            assert tags(report, 11, 530, 531, 532) == said, report
            assert f"MassCancelRequestType {kind} is not supported" in report.get(58).decode()
        await alice.send("q", (11, "m7"), (530, "7"), (60, utc()))
        assert tags(await alice.expect("r"), 531) == (b"7",)
        assert tags(await alice.expect("8"), 150, 11) == (b"4", b"X")

    run(harness, scenario)


def test_holds_a_replace_lowering_qty_under_a_racing_partial_fill(harness: Harness) -> None:
    """Holds (matrix D "cancel/replace request sent whilst execution is being reported"):
    X for 1.00; ALICE lowers it to 0.70 (Y,X) while a fill of 0.40 is on its way. The
    exchange fills first, then replaces: 150=F 39=1 14=0.40 151=0.60 under X, then 150=5
    39=1 38=0.70 14=0.40 151=0.30 under (Y,X); a later fill of 0.50 fills only 0.30 (39=2)."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        bob = await logged_on(port, "BOB")
        await alice.send("D", *order("X", "1", "1.00", "100.00"))
        await alice.expect("8")
        h.pause()
        await bob.send("D", *order("s1", "2", "0.40", "100.00"))
        await asyncio.sleep(0.05)
        await alice.send("G", (41, "X"), *order("Y", "1", "0.70", "100.00"))
        await asyncio.sleep(0.05)
        h.resume()
        got = [await alice.expect("8") for _ in range(2)]
        for m in got:
            consistent(m)
        assert [tags(m, 150, 39, 11, 41, 38, 14, 151) for m in got] == [
            (b"F", b"1", b"X", None, b"1.00", b"0.40", b"0.60"),
            (b"5", b"1", b"Y", b"X", b"0.70", b"0.40", b"0.30"),
        ]
        await bob.send("D", *order("s2", "2", "0.50", "100.00"))
        last = await alice.expect("8")
        assert tags(last, 150, 39, 11, 38, 14, 151, 32) == (
            b"F", b"2", b"Y", b"0.70", b"0.70", b"0.00", b"0.30",
        )  # fmt: skip

    run(harness, scenario)


def test_holds_report_ids_and_states_across_a_crash_and_restart(harness: Harness) -> None:
    """Holds: ALICE's bid X is partly filled at 100.00 and replaced to 100.05 (Y,X); the
    gateway is killed (no flush, no logout) and started again; after her logon (sequence
    numbers kept) a status request for Y answers the same state as before the crash (39=1,
    OrderQty, CumQty, LeavesQty, AvgPx) under a new ExecID, a fill at 100.05 completes it
    (39=2, AvgPx the exact 100.03 over both prices), a cancel of it is too late (102=0,
    39=2), and no ExecID she received on either side of the restart repeats."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        bob = await logged_on(port, "BOB")
        await alice.send("D", *order("X", "1", "0.50", "100.00"))
        assert (await alice.expect("8")).get(150) == b"0"
        await bob.send("D", *order("s1", "2", "0.20", "100.00"))
        assert tags(await alice.expect("8"), 150, 14) == (b"F", b"0.20")
        await alice.send("G", (41, "X"), *order("Y", "1", "0.50", "100.05"))
        assert tags(await alice.expect("8"), 150, 11, 41) == (b"5", b"Y", b"X")
        await alice.send("H", *status_request("Y", "1"))
        before = await alice.expect("8")
        assert tags(before, 150, 39, 14, 151, 6) == (
            b"I", b"1", b"0.20", b"0.30", b"100.000000",
        )  # fmt: skip
        await drain(bob, 0.2)
        old = list(alice.received)
        await crash(h)
        await alice.aclose()
        await bob.aclose()
        port = await h.start()
        alice = await back_on(port, "ALICE", alice.seq)
        bob = await back_on(port, "BOB", bob.seq)
        await drain(alice, 0.3)
        await alice.send("H", *status_request("Y", "1"))
        after = await alice.expect("8")
        assert tags(after, 11, 41, 150, 39, 38, 44, 14, 151, 6) == tags(
            before, 11, 41, 150, 39, 38, 44, 14, 151, 6
        )
        await bob.send("D", *order("s3", "2", "0.30", "100.05"))
        fill = await alice.expect("8")
        assert tags(fill, 11, 150, 39, 31, 32, 14, 151, 6) == (
            b"Y", b"F", b"2", b"100.05", b"0.30", b"0.50", b"0.00", b"100.030000",
        )  # fmt: skip
        await alice.send("F", *cancel("Y", "C", "1"))
        assert tags(await alice.expect("9"), 39, 102, 434) == (b"2", b"0", b"1")
        ids = [m.get(17) for m in old + alice.received if m.get(35) == b"8"]
        assert len(ids) == len(set(ids)), ids

    run(harness, scenario)
