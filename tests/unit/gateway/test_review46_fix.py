"""Review 46: the FIX 4.4 gateway's application messages as a trading client receives them
(ExecutionReport 8, OrderCancelReject 9, OrderMassCancelReport r), through the real gateway
over TCP, the in-process router and matcher of ``harness.py`` and a simplefix client.

Each test failed on the code it was written against, for the fault it names (the docstring
says what came and what FIX 4.4 or the README asks for), and passes since its fix (the same
commit). What earlier reviews pinned is not repeated."""

from __future__ import annotations

import asyncio

from tests.unit.gateway.harness import Harness, settled
from tests.unit.gateway.test_gateway import cancel, logged_on, order, run, status_request
from tests.unit.gateway.test_gateway_restart import back_on, crash
from tests.unit.gateway.test_review29_exec_reports import drain, tags
from tests.unit.gateway.test_review30_durability import has_cursors, kill_at


def test_an_exchange_rejection_reported_again_after_a_crash_keeps_its_exec_id(
    harness: Harness,
) -> None:
    """README: "a report made from an exchange event carries an ExecID derived from it, so one
    re-sent after a crash is recognisable; one no event makes, a status answer, a Restated
    report or the gateway's own refusal, takes the next of a counter". The router's refusal
    of ALICE's buy (INSUFFICIENT_BALANCE, a ``Rejected`` event) is reported with a counter
    ExecID (``orders.py`` ``_rejected``: ``self._report(order, b"8", ...)`` without
    ``exec_id``). SIGKILL after that report went out and before its batch's frame: the
    restart reads the event again and reports the rejection again under a new ExecID, so a
    client that drops reports by ExecID takes it for a second, different report."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        gw = h.gateway
        assert gw is not None
        h.pause()  # the order is logged (pending new) before the router answers it
        await alice.send("D", *order("big", "1", "10000000.00", "100.00"))
        await asyncio.sleep(0.1)
        dead = kill_at(gw, has_cursors, written=False)
        h.resume()
        first = await alice.expect("8")
        assert tags(first, 11, 150, 39, 103) == (b"big", b"8", b"8", b"3"), first
        await settled(lambda: bool(dead))
        assert dead
        await crash(h)
        await alice.aclose()
        port = await h.start()
        alice = await back_on(port, "ALICE", alice.seq)
        await alice.send("2", (7, 1), (16, 0))
        again = [m for m in await drain(alice, 0.5) if m.get(35) == b"8" and m.get(11) == b"big"]
        assert again, "the rejection was not reported again: the scenario did not happen"
        ids = {m.get(17) for m in again}
        assert ids == {first.get(17)}, (first.get(17), ids)

    run(harness, scenario)


def test_a_replace_refused_while_stopping_is_not_unknown_for_a_known_order(
    harness: Harness,
) -> None:
    """While the gateway stops (``closing``), ``on_message`` refuses a G after looking its
    OrigClOrdID up in ``self.live`` only (orders.py:202): an order that is finished, or one
    named by the ClOrdID of its replace still pending, is None there, so the refusal says
    OrderID NONE, OrdStatus 8 (Rejected), CxlRejReason 1 (unknown order). The same moment's
    F for the same ClOrdIDs goes the usual way (``_cancel_replace``) and is answered as FIX
    4.4 asks: the order's OrderID with OrdStatus 2 (Filled) and CxlRejReason 0 (too late),
    or OrdStatus E (Pending Replace) and CxlRejReason 3. A client's order manager reading
    39=8 marks a filled order, or a working one, rejected."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        bob = await logged_on(port, "BOB")
        await alice.send("D", *order("o1", "2", "1.00", "100.00"))
        filled = await alice.expect("8")
        await bob.send("D", *order("b1", "1", "1.00", "100.00"))
        assert tags(await alice.expect("8"), 150, 39) == (b"F", b"2")
        await alice.send("D", *order("p1", "1", "1.00", "90.00"))
        working = await alice.expect("8")
        h.pause()  # the replace p1 -> p2 waits in the router's ring: pending
        assert h.gateway is not None
        gw, published = h.gateway, h.gateway.producer.sequence
        await alice.send("G", (41, "p1"), *order("p2", "1", "2.00", "90.00"))
        await settled(lambda: gw.producer.sequence > published)  # a loaded host: later
        h.gateway.entry.closing = True  # what ``GatewayServer.stop`` sets first
        got = []
        for orig, known, status, reason in (
            ("o1", filled, b"2", b"0"),
            ("p2", working, b"E", b"3"),
        ):
            await alice.send("F", *cancel(orig, f"c-{orig}", "2" if orig == "o1" else "1"))
            control = await alice.expect("9")
            assert tags(control, 37, 39, 102) == (known.get(37), status, reason), control
            side = "2" if orig == "o1" else "1"
            await alice.send("G", (41, orig), *order(f"g-{orig}", side, "3.00", "100.00"))
            refused = await alice.expect("9")
            accepted = "p1" if orig == "p2" else orig  # 41: the last accepted (review 51)
            assert tags(refused, 11, 41, 434) == (f"g-{orig}".encode(), accepted.encode(), b"2")
            got.append((tags(refused, 37, 39, 102), (known.get(37), status, reason)))
        assert all(seen == wanted for seen, wanted in got), got

    run(harness, scenario)


def test_a_cancel_of_an_order_not_yet_acknowledged_is_not_called_pending_cancel(
    harness: Harness,
) -> None:
    """The FIX order state matrices (Appendix D, "cancel request issued for an order that has
    not yet been acknowledged", the ack and the cancel crossing): the cancel is carried out
    once the order is acknowledged (Pending Cancel, then Canceled). The gateway refuses it at
    once (``orders.py`` ``_cancel_replace``: "order not yet acknowledged" with CXL_PENDING),
    with CxlRejReason 3,
    "Order already in Pending Cancel or Pending Replace status", though no cancel or replace
    of the order is pending: a client that waits for the pending request 3 names before it
    tries again waits for nothing, and the order it wanted gone rests. The gateway already
    holds a cancel for an unacknowledged order until its ack (``cancel_account``, cancel on
    disconnect). Expected: the order cancelled (150=4 under c1) once acknowledged, or at
    least a refusal that does not claim a pending request (102 other than 3). Before the fix: 35=9
    102=3 39=A at once, and the order rests."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        h.pause()  # the new order waits in the router's ring: not acknowledged
        await alice.send("D", *order("o1", "1", "1.00", "90.00"))
        await asyncio.sleep(0.05)
        await alice.send("F", *cancel("o1", "c1", "1"))
        await asyncio.sleep(0.05)
        h.resume()
        got = [tags(m, 35, 11, 150, 39, 102) for m in await drain(alice, 0.5)]
        assert (b"8", b"o1", b"0", b"0", None) in got, got  # the scenario happened
        cancelled = (b"8", b"c1", b"4", b"4", None) in got
        refused = [t for t in got if t[0] == b"9"]
        assert cancelled or (refused and refused[0][4] != b"3"), got

    run(harness, scenario)


def test_a_status_report_of_an_iceberg_post_only_order_says_what_a_replace_must_restate(
    harness: Harness,
) -> None:
    """A replace must restate the order's MaxFloor (111) and ExecInst (18) exactly or it is
    refused (``order_fields.py`` ``replace_fault`` and ``differs``), yet no ExecutionReport
    carries either (``REPORT`` in order_fields.py has neither; the dictionary lists both as
    fields of an 8). A client that re-syncs from the gateway after its own restart (README:
    the OrderMassStatusRequest "the way a client re-syncs after a reconnect", or an
    OrderStatusRequest) cannot learn that its order is an iceberg or post-only, and its next
    price change is refused ("ExecInst none is not the order's ExecInst 6 (post-only)", and
    with 18=6, "MaxFloor (111) absent is not the order's")."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        extra = ((111, "0.50"), (18, "6"))
        await alice.send("D", *order("o1", "2", "2.00", "101.00", "2", *extra))
        new = await alice.expect("8")
        assert tags(new, 150, 39) == (b"0", b"0"), new
        await alice.send("H", *status_request("o1", "2"))
        status = await alice.expect("8")
        await alice.send("AF", (584, "m1"), (585, "7"))
        mass = await alice.expect("8")
        # what a client that knows only the reports sends to change the price: refused
        await alice.send("G", (41, "o1"), *order("o2", "2", "2.00", "101.50"))
        refused = await alice.expect("9")
        assert b"ExecInst none is not the order's" in refused.get(58), refused
        for report in (new, status, mass):
            assert tags(report, 111, 18) == (b"0.50", b"6"), report

    run(harness, scenario)
