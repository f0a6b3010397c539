"""Review 29: FIX order entry semantics, ExecutionReport by ExecutionReport, against FIX 4.4
as a QuickFIX client sees it (``orders.py``, ``order_replies.py``, ``order_fields.py`` and how
``session.py`` feeds them), every sequence through the real router and matcher of
``harness.py``.

The first tests each FAIL on the current code because of the bug their docstring names.
The tests after them (marked "Holds") pin behaviour checked and found right, so that a fix of
the others does not break it. What earlier reviews found (``test_review_fix_orders*_bugs.py``,
``test_review4..8_fix*``, ``test_review13_mass_status.py``, ...) is not repeated."""

from __future__ import annotations

from typing import Any

from tests.unit.gateway.harness import Client, Harness, utc
from tests.unit.gateway.test_gateway import cancel, logged_on, order, run, status_request

#: ExecType (150) values of FIX 4.4 as published (QuickFIX's spec/FIX44.xml has exactly
#: these): J, K and L came with later extension packs (L, "Triggered or Activated by
#: System", with EP 22) and are not FIX 4.4 values.
FIX44_EXEC_TYPES = frozenset(b"0 3 4 5 6 7 8 9 A B C D E F G H I".split())


async def drain(client: Client, timeout: float = 0.4) -> list[Any]:
    """Every message but heartbeats that comes within ``timeout`` of the last one."""
    got = []
    while (msg := await client.recv(timeout)) is not None:
        if msg.get(35) != b"0":
            got.append(msg)
    return got


def tags(msg: Any, *numbers: int) -> tuple[bytes | None, ...]:
    return tuple(msg.get(n) for n in numbers)


# -- bugs -------------------------------------------------------------------------------------


def test_a_stop_trigger_report_uses_an_exec_type_fix_4_4_defines(harness: Harness) -> None:
    """What is wrong: when a stop order's trigger is reached the gateway sends an
    ExecutionReport with ExecType (150) ``L`` (orders.py:465-466, ``process``, the
    ``Triggered`` branch: ``self._report(stop, b"L", ...)``). ``L`` ("Triggered or Activated
    by System") is not a FIX 4.4 value: it came with extension pack 22 after 4.4, and the
    FIX 4.4 dictionary QuickFIX ships (spec/FIX44.xml) lists only 0 3 4 5 6 7 8 9 A B C D E F
    G H I for tag 150. The gateway speaks FIX.4.4 only (BeginString checked in session.py).

    Why it matters: a QuickFIX (C++, J, /n, go) client validates field values against its
    data dictionary by default (``DataDictionary::checkValue`` -> IncorrectTagValue): it
    answers the report with a session Reject (35=3, 373=5, "Value is incorrect (out of
    range) for this tag") and the application never sees it, so every stop trigger costs a
    Reject and is lost to the client's order manager.

    Expected: every ExecutionReport's 150 is a FIX 4.4 value (a trigger reported, if at all,
    as e.g. Restated 150=D with ExecRestatementReason 378, or not reported: OrdStatus does
    not change). Actual: 150=L on the stop's trigger report."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        bob = await logged_on(port, "BOB")
        await bob.send("D", *order("ask", "2", "0.10", "100.00"))
        assert (await bob.expect("8")).get(150) == b"0"
        # a buy stop-limit at 100.00: no trade yet, so it waits off the book
        await alice.send("D", *order("stop", "1", "0.05", "100.00", "4", (99, "100.00")))
        assert tags(await alice.expect("8"), 150, 39) == (b"0", b"0")
        await alice.send("D", *order("spark", "1", "0.01", "100.00"))  # trades at 100.00
        got = [m for m in await drain(alice) if m.get(35) == b"8"]
        of_stop = [m.get(150) for m in got if m.get(11) == b"stop"]
        assert b"F" in of_stop, of_stop  # triggered and filled: the scenario happened
        foreign = [(m.get(11), m.get(150)) for m in got if m.get(150) not in FIX44_EXEC_TYPES]
        assert foreign == [], foreign

    run(harness, scenario)


def test_a_replace_of_a_partly_filled_iceberg_counts_slices_on_what_is_left(
    harness: Harness,
) -> None:
    """What is wrong: the gateway refuses a FIX replace of a partly filled iceberg by
    counting its slices on the new *total* OrderQty, fills included: ``_cancel_replace``
    runs the new order's checks ``_amounts`` (orders.py:343) whose slice check
    (orders.py:295, ``-(-qty // display) > sym.iceberg_parts``) takes ``qty`` = OrderQty (38).
    The exchange's rule for a replace counts what is left to show: the matcher takes
    ``leaves = order_qty - filled`` and refuses only when ``ceil(leaves / display)`` passes
    ``iceberg_parts`` (core/book.py:344-346, "an iceberg grown past its slices"). The limit
    bounds how many trades one taker can make against the order's open part; what already
    filled will never trade again.

    Why it matters: FIX 4.4 OrderQty on a G is the order's total including CumQty, so a
    client topping up a partly filled iceberg (1.00 shown 0.01 a slice, 0.05 filled,
    raised to 1.03: 0.98 open, 98 slices of the allowed 100) is told 35=9 "cuts OrderQty
    1.03 into 103 parts" for a replace the exchange takes (checked: with the gateway's check
    lifted the matcher answers Replaced; the REST amend path, rest_amend.py, makes no such
    check and leaves the count to the matcher).

    Expected: 150=5, 38=1.03, 14=0.05, 151=0.98. Actual: OrderCancelReject 102=99."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        bob = await logged_on(port, "BOB")
        await alice.send("D", *order("ice", "2", "1.00", "110.00", "2", (111, "0.01")))
        assert tags(await alice.expect("8"), 150, 151) == (b"0", b"1.00")
        await bob.send("D", *order("take", "1", "0.05", "110.00", "2", (59, "3")))
        fills = [m for m in await drain(alice) if m.get(150) == b"F"]
        assert tags(fills[-1], 14, 151) == (b"0.05", b"0.95"), fills[-1]
        await alice.send(
            "G", (41, "ice"), *order("ice2", "2", "1.03", "110.00", "2", (111, "0.01"))
        )
        answer = await alice.recv(1.0)
        assert answer is not None
        got = tags(answer, 35, 150, 38, 14, 151, 58)
        assert got[:5] == (b"8", b"5", b"1.03", b"0.05", b"0.98"), got

    run(harness, scenario)


def test_a_poss_resend_while_stopping_is_not_answered_as_a_rejection(harness: Harness) -> None:
    """What is wrong: while the gateway stops (``closing``) ``on_message`` refuses every D and
    G before anything else (orders.py:162-168), ahead of the checks that a PossResend
    (97=Y) of a request already taken is not acted on again (``_duplicate`` at
    orders.py:223 for a D, ``_resent_again`` at orders.py:305 for a G). So a client that
    re-sends, with PossResend, its NewOrderSingle o1 (live, acknowledged) and its replace
    k1 -> k2 (applied) during the shutdown's grace gets an ExecutionReport 150=8 39=8 for
    ClOrdID o1 and an OrderCancelReject 11=k2 39=8 102=1 (unknown order).

    Why it matters: FIX 4.4 PossResend asks the receiver to check whether it has the message
    already and not to act on it twice; README promises "a PossDup or PossResend repeat of a
    D, F, G or q already taken is not acted on again". An order manager that reads
    39=8 for o1 marks the live order rejected, and 9/39=8 for k2 marks the replaced order
    dead, while both rest on the book and can still fill (a gateway stop cancels nothing
    unless cancel on disconnect is set). The window is narrow: ``closing`` holds from the
    first SIGTERM (server.py ``_close_intake``) until what is in flight is answered or its
    grace passes, with the sessions still logged on. The same order of checks makes a plain
    duplicate ClOrdID during a stop say 103=2 (exchange closed) instead of 6.

    Expected: nothing for either resend (as when not stopping), the orders still open.
    Actual: 35=8 11=o1 39=8 103=2 and 35=9 11=k2 39=8 102=1."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("o1", "1", "1.00", "90.00"))
        assert (await alice.expect("8")).get(150) == b"0"
        await alice.send("D", *order("k1", "1", "1.00", "91.00"))
        assert (await alice.expect("8")).get(150) == b"0"
        await alice.send("G", (41, "k1"), *order("k2", "1", "2.00", "91.00"))
        assert tags(await alice.expect("8"), 150, 11) == (b"5", b"k2")
        # control: not stopping, the same resends get no answer at all
        await alice.send("D", *order("o1", "1", "1.00", "90.00"), poss_resend=True)
        await alice.send("G", (41, "k1"), *order("k2", "1", "2.00", "91.00"), poss_resend=True)
        assert await drain(alice, 0.3) == []
        assert h.gateway is not None
        h.gateway.entry.closing = True  # what ``GatewayServer.stop`` sets first
        await alice.send("D", *order("o1", "1", "1.00", "90.00"), poss_resend=True)
        await alice.send("G", (41, "k1"), *order("k2", "1", "2.00", "91.00"), poss_resend=True)
        got = [tags(m, 35, 11, 39, 103, 102) for m in await drain(alice, 0.5)]
        assert h.router.sequencer.accounts.open_orders(7) == 2  # both still rest
        assert got == [], got

    run(harness, scenario)


# -- checked and found right --------------------------------------------------------------------


def test_holds_partial_fill_replaces_below_cum_and_a_cancel_too_late(harness: Harness) -> None:
    """Holds: new -> partial fill (LastPx/LastQty, CumQty, LeavesQty, AvgPx) -> replace up and
    to a new price (150=5, 11/41, OrderQty the total, CumQty kept) -> a fill at the new price
    (AvgPx the exact volume-weighted 100.025) -> replace below CumQty (150=5 39=2, OrderQty
    amended to CumQty, LeavesQty 0: FIX 4.4 Appendix D's "amended to cum qty") -> cancel: too
    late, 35=9 with 39=2, 102=0, 434=1 and the OrderID; every ExecID unique."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        bob = await logged_on(port, "BOB")
        await alice.send("D", *order("o1", "1", "1.00", "100.00"))
        new = await alice.expect("8")
        assert tags(new, 150, 39, 38, 151, 14, 6) == (
            b"0", b"0", b"1.00", b"1.00", b"0.00", b"0.000000",
        )  # fmt: skip
        await bob.send("D", *order("s1", "2", "0.40", "100.00"))
        fill = await alice.expect("8")
        assert tags(fill, 150, 39, 31, 32, 14, 151, 6) == (
            b"F", b"1", b"100.00", b"0.40", b"0.40", b"0.60", b"100.000000",
        )  # fmt: skip
        await alice.send("G", (41, "o1"), *order("o2", "1", "1.50", "100.05"))
        rep = await alice.expect("8")
        assert tags(rep, 150, 39, 11, 41, 38, 44, 14, 151, 37) == (
            b"5", b"1", b"o2", b"o1", b"1.50", b"100.05", b"0.40", b"1.10", new.get(37),
        )  # fmt: skip
        await bob.send("D", *order("s2", "2", "0.40", "100.05"))
        fill2 = await alice.expect("8")
        assert tags(fill2, 150, 39, 11, 31, 32, 14, 151, 6) == (
            b"F", b"1", b"o2", b"100.05", b"0.40", b"0.80", b"0.70", b"100.025000",
        )  # fmt: skip
        await alice.send("G", (41, "o2"), *order("o3", "1", "0.50", "100.05"))
        down = await alice.expect("8")
        assert tags(down, 150, 39, 11, 41, 38, 14, 151) == (
            b"5", b"2", b"o3", b"o2", b"0.80", b"0.80", b"0.00",
        )  # fmt: skip
        await alice.send("F", *cancel("o3", "c1", "1"))
        rej = await alice.expect("9")
        assert tags(rej, 11, 41, 37, 39, 434, 102) == (
            b"c1", b"o3", new.get(37), b"2", b"1", b"0",
        )  # fmt: skip
        reports = [m for m in alice.received if m.get(35) == b"8"]
        assert len({m.get(17) for m in reports}) == len(reports) == 5

    run(harness, scenario)


def test_holds_iceberg_leaves_count_the_hidden_part_and_status_requests(
    harness: Harness,
) -> None:
    """Holds: an iceberg (MaxFloor 0.20 of 1.00) hit for 0.30 reports LeavesQty 0.80 then
    0.70 (the hidden reserve counted, LeavesQty = OrderQty - CumQty); OrderStatusRequests
    answer 150=I with the current OrdStatus: 1 for the open iceberg, 2 for the taker that
    filled, 8 for an unknown ClOrdID."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        bob = await logged_on(port, "BOB")
        await alice.send("D", *order("i1", "2", "1.00", "101.00", "2", (111, "0.20")))
        assert tags(await alice.expect("8"), 150, 151) == (b"0", b"1.00")
        await bob.send("D", *order("ib", "1", "0.30", "101.00", "2", (59, "3")))
        fills = [tags(await alice.expect("8"), 150, 32, 14, 151) for _ in range(2)]
        assert fills == [
            (b"F", b"0.20", b"0.20", b"0.80"), (b"F", b"0.10", b"0.30", b"0.70"),
        ], fills  # fmt: skip
        await alice.send("H", *status_request("i1", "2"))
        assert tags(await alice.expect("8"), 150, 39, 38, 14, 151, 6) == (
            b"I", b"1", b"1.00", b"0.30", b"0.70", b"101.000000",
        )  # fmt: skip
        await drain(bob, 0.3)
        await bob.send("H", *status_request("ib", "1"))
        assert tags(await bob.expect("8"), 150, 39, 14, 151) == (b"I", b"2", b"0.30", b"0.00")
        await alice.send("H", *status_request("nope", "2"))
        assert tags(await alice.expect("8"), 150, 39, 37) == (b"I", b"8", b"NONE")

    run(harness, scenario)


def test_holds_ioc_fok_and_a_protected_market_order(harness: Harness) -> None:
    """Holds: an IOC partly filled: 150=0, 150=F 39=1, then its rest Canceled 150=4 39=4
    (CumQty kept, LeavesQty 0); a FOK the book cannot fill: 150=0 then 150=4 39=4 with
    nothing filled; a market buy takes what is within the band and its rest is Canceled
    (150=4), the ask beyond the band left alone."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        bob = await logged_on(port, "BOB")
        for cl, price in (("a1", "100.00"), ("a2", "150.00")):  # 150: beyond the 5% band
            await bob.send("D", *order(cl, "2", "0.10", price))
            await bob.expect("8")
        await alice.send("D", *order("ioc", "1", "0.30", "100.00", "2", (59, "3")))
        got = [tags(await alice.expect("8"), 150, 39, 14, 151) for _ in range(3)]
        assert got == [
            (b"0", b"0", b"0.00", b"0.30"), (b"F", b"1", b"0.10", b"0.20"),
            (b"4", b"4", b"0.10", b"0.00"),
        ], got  # fmt: skip
        await alice.send("D", *order("fok", "1", "0.50", "150.00", "2", (59, "4")))
        got = [tags(await alice.expect("8"), 150, 39, 14, 151) for _ in range(2)]
        assert got == [(b"0", b"0", b"0.00", b"0.50"), (b"4", b"4", b"0.00", b"0.00")], got
        await bob.send("D", *order("a3", "2", "0.10", "100.00"))
        await drain(bob, 0.3)
        await alice.send("D", *order("mkt", "1", "1.00", None, "1"))
        got = [tags(await alice.expect("8"), 150, 39, 14, 151) for _ in range(3)]
        assert got == [
            (b"0", b"0", b"0.00", b"1.00"), (b"F", b"1", b"0.10", b"0.90"),
            (b"4", b"4", b"0.10", b"0.00"),
        ], got  # fmt: skip
        assert [m.get(11) for m in await drain(bob, 0.3) if m.get(150) == b"F"] == [b"a3"]

    run(harness, scenario)


def test_holds_duplicate_clordid_and_poss_resend_not_executed_twice(harness: Harness) -> None:
    """Holds: a second D with the ClOrdID of an open order is refused (150=8, 39=8, 103=6
    "duplicate ClOrdID", OrderID NONE); the same D with PossResend (97=Y) gets no answer and
    is not executed again: one order on the book."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("d1", "1", "0.10", "90.00"))
        assert (await alice.expect("8")).get(150) == b"0"
        await alice.send("D", *order("d1", "1", "0.10", "90.00"))
        dup = await alice.expect("8")
        assert tags(dup, 150, 39, 103, 37) == (b"8", b"8", b"6", b"NONE")
        assert b"duplicate ClOrdID" in dup.get(58)
        await alice.send("D", *order("d1", "1", "0.10", "90.00"), poss_resend=True)
        await alice.send("1", (112, "sync"))
        assert (await alice.expect("0")).get(112) == b"sync"  # nothing came before it
        assert h.router.sequencer.accounts.open_orders(7) == 1

    run(harness, scenario)


def test_holds_mass_cancel_report_and_each_orders_cancel(harness: Harness) -> None:
    """Holds: OrderMassCancelRequest 530=7 is answered r 531=7 echoing its ClOrdID, and
    every open order of the account, a pending stop included, gets 150=4 39=4 under its own
    ClOrdID (TotalAffectedOrders 533 is optional in FIX 4.4 and not sent)."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("m1", "1", "0.10", "90.00"))
        await alice.send("D", *order("m2", "2", "0.10", "110.00"))
        await alice.send("D", *order("m3", "1", "0.10", "121.00", "4", (99, "120.00")))
        assert [(await alice.expect("8")).get(150) for _ in range(3)] == [b"0"] * 3
        await alice.send("q", (11, "mc"), (530, "7"), (60, utc()))
        report = await alice.expect("r")
        assert tags(report, 11, 530, 531) == (b"mc", b"7", b"7")
        done = [tags(await alice.expect("8"), 11, 150, 39, 151) for _ in range(3)]
        assert sorted(done) == [
            (b"m1", b"4", b"4", b"0.00"), (b"m2", b"4", b"4", b"0.00"),
            (b"m3", b"4", b"4", b"0.00"),
        ], done  # fmt: skip

    run(harness, scenario)


def test_holds_self_trade_and_post_only(harness: Harness) -> None:
    """Holds: ALICE's bid crossing her own ask trades (FIX orders carry no self-trade
    prevention: StpMode NONE) and both sides get their fill, with distinct ExecIDs; a
    post-only bid that would take is Rejected (150=8, 39=8, OrderID NONE)."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("x1", "2", "0.50", "100.00"))
        await alice.expect("8")
        await alice.send("D", *order("x2", "1", "0.20", "100.00"))
        got = [await alice.expect("8") for _ in range(3)]
        fills = {m.get(11): tags(m, 150, 39, 32, 151) for m in got if m.get(150) == b"F"}
        assert fills == {
            b"x1": (b"F", b"1", b"0.20", b"0.30"), b"x2": (b"F", b"2", b"0.20", b"0.00"),
        }, fills  # fmt: skip
        assert len({m.get(17) for m in got}) == 3
        await alice.send("D", *order("po", "1", "0.10", "100.00", "2", (18, "6")))
        rej = await alice.expect("8")
        assert tags(rej, 150, 39, 37) == (b"8", b"8", b"NONE")

    run(harness, scenario)
