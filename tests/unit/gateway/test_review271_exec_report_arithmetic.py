"""Review 271: the FIX gateway's ExecutionReport (35=8) arithmetic and fields over whole order
lifecycles, as a FIX 4.4 client checks them.

Reviewed: ``procs/gateway/order_replies.py`` (``_report``: OrderQty 38, LeavesQty 151,
CumQty 14, AvgPx 6 as ``notional * 10_000 // cum`` at the price's decimals plus four,
``status``, ``_send_cancel_reject``), ``procs/gateway/orders.py`` (``_fill``: LastPx 31,
LastQty 32, Commission 12; ``_replaced``; ``_done``; the trigger's Restated report),
``order_memory.py`` (``restore``, what a crash restart takes back), against the book's
event contract (``procs/core/book.py``: a maker's leaves include an iceberg's reserve) and
FIX 4.4's order state change matrices.

Rig: ``harness.py``'s exchange (real rings, an in-process router and matcher, a real gateway
over TCP), ALICE (7) and BOB (8) as ``simplefix`` clients (``conftest.harness``); a crash
restart is ``test_gateway_restart.crash`` (no logout, no flush, no order log commit).

Faults found (xfail, strict): none. Every probe below, and the ones listed under "Sound",
gave the numbers a FIX 4.4 client computes from LastPx and LastQty.

Sound:
1. An iceberg resting as maker (MaxFloor 0.30 of 1.00), filled across four refreshed
   slices by two IOC takers: LeavesQty counts the hidden reserve (1.00 - CumQty at each
   fill, never the visible slice), 39=1 until the end, CumQty is the sum of LastQty, and
   each fill's Commission is the maker's 10 bps of LastPx x LastQty. A status request (H)
   in the middle says the same. A replace (G) down to 0.95 with 0.90 filled: 150=5 39=1
   OrderQty 0.95 LeavesQty 0.05 (OrderQty the new total, LeavesQty = OrderQty - CumQty).
2. A market buy swept across two prices inside the protection band (500 bps) and stopped
   at its edge: LastPx per level, AvgPx the VWAP (102.000000), the rest cancelled 150=4
   39=4 LeavesQty 0 with CumQty and AvgPx kept, the resting order beyond the band untouched.
3. A stop-limit triggered by a trade: Restated 150=D 378=99 39=0, then fills at its limit
   with LeavesQty down to 0, 39=2; its status after the end 150=I 39=2.
4. An iceberg buy taking two price levels on arrival then resting, a crash restart, fills
   after it: AvgPx across the restart the VWAP of every LastPx (cut, not rounded, to six
   places: 100.016666 for 100.0166..., as review 143 pinned), CumQty continues, no
   report repeated or lost, every ExecID unique across the restart; IOC and FOK with
   nothing to fill: 150=0 then 150=4 39=4 CumQty 0.
5. Replace chain o1 -> o2 while partly filled: 150=5 11=o2 41=o1 OrderQty 2.00 LeavesQty
   1.70; a second G naming o2 before its 150=5 is refused 102=3 39=E; fills after carry 41=o1;
   a mass cancel's report keeps CumQty and AvgPx.

Leads, not faults (already noted by reviews 143 and 192): a status request or cancel
naming a replaced order's older ClOrdID is answered unknown (FIX 4.4 asks for the last
accepted one); a replace to no more than has filled reports OrderQty = CumQty, and the
order's old Price.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tests.unit.gateway.harness import Client, Harness, utc
from tests.unit.gateway.test_gateway import logged_on, order, run, status_request
from tests.unit.gateway.test_gateway_restart import back_on, crash
from tests.unit.gateway.test_review192_exec_reports import quiet


def row(m: Any, *tags: int) -> tuple[str | None, ...]:
    """The values of ``tags`` in ``m`` as text (None where absent)."""
    return tuple(None if (v := m.get(t)) is None else v.decode() for t in tags)


async def reports(c: Client, at_least: int = 1) -> list[Any]:
    """The ExecutionReports ``c`` receives until it is quiet, once it has ``at_least``
    messages (``quiet`` waits up to 10 s for them: make test once read a status request's
    answer as nothing on a loaded host)."""
    return [m for m in await quiet(c, at_least=at_least) if m.get(35) == b"8"]


def vwap(fills: list[Any]) -> Decimal:
    """The volume-weighted LastPx of ``fills``, cut to six places as AvgPx is."""
    qty = sum((Decimal(m.get(32).decode()) for m in fills), Decimal(0))
    notional = sum(
        (Decimal(m.get(31).decode()) * Decimal(m.get(32).decode()) for m in fills), Decimal(0)
    )
    return (notional / qty).quantize(Decimal("0.000001"), rounding="ROUND_FLOOR")


def test_an_iceberg_maker_filled_across_slices_counts_its_reserve(harness: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        a, b = await logged_on(port), await logged_on(port, "BOB")
        await a.send("D", *order("ice", "2", "1.00", "100.00", "2", (111, "0.30"), (59, "1")))
        assert [row(m, 150, 151) for m in await reports(a)] == [("0", "1.00")]
        await b.send("D", *order("t1", "1", "0.50", "100.00", "2", (59, "3")))
        await b.send("D", *order("t2", "1", "0.40", "100.00", "2", (59, "3")))
        await quiet(b)
        fills = await reports(a)
        assert [row(m, 150, 39, 32, 151, 14, 12) for m in fills] == [
            ("F", "1", "0.30", "0.70", "0.30", "0.030000"),
            ("F", "1", "0.20", "0.50", "0.50", "0.020000"),
            ("F", "1", "0.10", "0.40", "0.60", "0.010000"),
            ("F", "1", "0.30", "0.10", "0.90", "0.030000"),
        ]
        await a.send("H", *status_request("ice", "2"))
        (st,) = await reports(a)
        assert row(st, 150, 39, 38, 151, 14, 6, 111) == (
            "I", "1", "1.00", "0.10", "0.90", "100.000000", "0.30",
        )  # fmt: skip
        await a.send(
            "G", (41, "ice"), *order("ice2", "2", "0.95", "100.00", "2", (111, "0.30"), (59, "1"))
        )
        (rep,) = await reports(a)
        assert row(rep, 150, 39, 11, 41, 38, 151, 14) == (
            "5", "1", "ice2", "ice", "0.95", "0.05", "0.90",
        )  # fmt: skip

    run(harness, scenario)


def test_a_market_order_stopped_by_its_band_reports_the_vwap(harness: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        a, b = await logged_on(port), await logged_on(port, "BOB")
        await a.send("D", *order("s0", "2", "0.01", "100.00"))  # a last trade: a market
        await b.send("D", *order("b0", "1", "0.01", "100.00"))  # buy's reference price
        await quiet(b)
        for cl, px in (("s1", "100.00"), ("s2", "104.00"), ("s3", "110.00")):
            await a.send("D", *order(cl, "2", "0.10", px))
        await quiet(a)
        await b.send("D", *order("m1", "1", "0.50", None, "1"))
        got = await reports(b)
        fills = [m for m in got if m.get(150) == b"F"]
        assert [row(m, 31, 32, 151, 14) for m in fills] == [
            ("100.00", "0.10", "0.40", "0.10"),
            ("104.00", "0.10", "0.30", "0.20"),
        ]
        assert fills[-1].get(6).decode() == str(vwap(fills)) == "102.000000"
        end = got[-1]
        assert row(end, 150, 39, 151, 14, 6) == ("4", "4", "0.00", "0.20", "102.000000")
        await a.send("H", *status_request("s3", "2"))  # beyond the band: untouched
        assert row((await reports(a))[-1], 39, 151) == ("0", "0.10")

    run(harness, scenario)


def test_a_stop_limit_triggered_then_filled(harness: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        a, b = await logged_on(port), await logged_on(port, "BOB")
        await a.send("D", *order("s4", "2", "0.20", "110.00"))
        await a.send("D", *order("s3", "2", "0.10", "110.00"))
        await b.send("D", *order("st", "1", "0.30", "110.00", "4", (99, "109.00")))
        assert [row(m, 150, 39) for m in await reports(b)] == [("0", "0")]
        await a.send("D", *order("s5", "2", "0.05", "109.00"))
        await b.send("D", *order("x", "1", "0.05", "109.00"))
        got = [m for m in await reports(b) if m.get(11) == b"st"]
        assert [row(m, 150, 39, 151, 14, 31) for m in got] == [
            ("D", "0", "0.30", "0.00", None),
            ("F", "1", "0.10", "0.20", "110.00"),
            ("F", "2", "0.00", "0.30", "110.00"),
        ]
        assert got[0].get(378) == b"99"
        await b.send("H", *status_request("st", "1"))
        assert row((await reports(b))[-1], 150, 39, 14, 6) == ("I", "2", "0.30", "110.000000")

    run(harness, scenario)


def test_avg_px_and_exec_ids_across_a_crash_restart(harness: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        a, b = await logged_on(port), await logged_on(port, "BOB")
        for cl, qty, px in (("s1", "0.20", "100.00"), ("s2", "0.10", "100.05")):
            await b.send("D", *order(cl, "2", qty, px, "2", (59, "1")))
        await quiet(b)
        await a.send("D", *order("ice", "1", "1.00", "100.05", "2", (111, "0.30"), (59, "1")))
        before = await reports(a)
        await crash(h)
        await a.aclose()
        await b.aclose()
        port = await h.start()
        a = await back_on(port, "ALICE", a.seq)
        b = await back_on(port, "BOB", b.seq)
        assert await reports(a, 0) == []  # nothing sent twice, nothing lost
        await b.send("D", *order("s4", "2", "0.50", "100.05", "2", (59, "3")))
        after = await reports(a)
        fills = [m for m in before + after if m.get(150) == b"F"]
        assert sum(Decimal(m.get(32).decode()) for m in fills) == Decimal("0.80")
        assert row(after[-1], 39, 151, 14) == ("1", "0.20", "0.80")
        assert after[-1].get(6).decode() == str(vwap(fills)) == "100.037500"
        assert before[2].get(6) == b"100.016666"  # 100.01666...: cut, not rounded
        for tif in ("4", "3"):  # FOK and IOC with nothing to take
            await a.send("D", *order(f"k{tif}", "1", "5.00", "99.00", "2", (59, tif)))
        kills = await reports(a)
        assert [row(m, 150, 39, 14) for m in kills] == [("0", "0", "0.00"), ("4", "4", "0.00")] * 2
        await a.send("H", *status_request("ice", "1"))
        every = before + after + kills + await reports(a)
        assert len({m.get(17) for m in every}) == len(every)

    run(harness, scenario)


def test_a_replace_chain_and_a_mass_cancel_keep_the_quantities(harness: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        a, b = await logged_on(port), await logged_on(port, "BOB")
        await a.send("D", *order("o1", "2", "1.00", "100.00", "2", (59, "1")))
        await b.send("D", *order("t1", "1", "0.30", "100.00", "2", (59, "3")))
        await quiet(b)
        assert [row(m, 150, 151, 14) for m in await reports(a)] == [
            ("0", "1.00", "0.00"), ("F", "0.70", "0.30"),
        ]  # fmt: skip
        h.pause()
        await a.send("G", (41, "o1"), *order("o2", "2", "2.00", "100.00", "2", (59, "1")))
        await a.send("G", (41, "o2"), *order("o3", "2", "1.50", "101.00", "2", (59, "1")))
        rej = await a.expect("9")
        assert row(rej, 11, 39, 102, 434) == ("o3", "E", "3", "2")
        h.resume()
        (rep,) = await reports(a)
        assert row(rep, 150, 39, 11, 41, 38, 151, 14) == (
            "5", "1", "o2", "o1", "2.00", "1.70", "0.30",
        )  # fmt: skip
        await b.send("D", *order("t2", "1", "0.80", "100.00", "2", (59, "3")))
        (fill,) = await reports(a)
        assert row(fill, 11, 41, 151, 14, 6) == ("o2", "o1", "0.90", "1.10", "100.000000")
        await a.send("q", (11, "mc"), (530, "7"), (60, utc()))
        got = await quiet(a)
        done = [m for m in got if m.get(35) == b"8"]
        assert [row(m, 150, 39, 11, 151, 14, 6) for m in done] == [
            ("4", "4", "o2", "0.00", "1.10", "100.000000")
        ]

    run(harness, scenario)
