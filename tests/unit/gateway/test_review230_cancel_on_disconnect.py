"""Review 230: cancel on disconnect (COD) as a trading firm relies on it.

Reviewed: ``procs/gateway/disconnect_cancels.py`` (``cancel_session_orders``: acknowledged
orders cancelled at once, the others marked and cancelled at their ``Accepted``),
``orders.py`` (``on_disconnect``, ``_accepted``), ``restart.py`` (a restart cancels the
orders its log holds of every session that cancels on disconnect), ``session.py``
(``_close``, ``connection_lost``: when the application hears of a session's end),
``connection.py`` (the close of a transport with output unsent), ``procs/common/tls.py``
(``SHUTDOWN_S``), against README ("A user's own settings": "whether its open orders are
cancelled when its connection ends: a Logout, a lost connection, a gateway restart that finds
it gone"; cancel rejects and reports parked for a logged-off session). Rig: ``harness.py``'s
in-process exchange over real TCP (and TLS), the pipeline paused to hold commands in flight,
``test_gateway_restart.crash`` for what SIGKILL leaves.

Fault found (fixed: its test says "Was (fixed)"):

1. ``procs/gateway/session.py:334-336`` (``_close`` releases the session's ``live`` entry and
   its instance-wide logon lock, so a new Logon for the session is taken at once) with
   ``:257-263`` (``app.on_disconnect`` is called only at ``connection_lost``, when the
   transport is gone) and ``procs/gateway/orders.py:166-167`` (an end that comes after the
   user logged on again is taken for "an old connection's late end": nothing cancelled).
   A transport outlives its session whenever its close waits: over TLS for the peer's
   close_notify (``tls.SHUTDOWN_S``, 1 s), over plain TCP for output the client has not read
   (until ``check_stalled`` aborts it, two heartbeat intervals; reproduced during the review
   with small socket buffers, not kept here). A COD client that hangs (a GC pause, a stalled
   link), is timed out by its unanswered TestRequest and reconnects at once, as an engine's
   watchdog does, finds the orders of the dead connection still resting, no cancel ever
   sent for them; a second later, or with nothing unsent, the same events cancel them all.
   A firm that re-quotes after a reconnect, trusting COD, doubles its exposure. Fix: tell
   the application when the session ends, not when its socket does: in ``Session._close``,
   where ``live`` is released and ``_was_live`` set, call ``app.on_disconnect`` (and clear
   ``_was_live`` so ``connection_lost`` does not call it again), so the cancels are made
   before any new Logon can be taken; ``on_disconnect``'s early return then only guards
   against a stale call. Test: ``test_a_session_timed_out_and_back_at_once_has_its_old_orders_
   cancelled``.

Found sound (plain tests): a Logout cancels a resting limit, a stop limit, a stop market and an
iceberg, each report fetched by a ResendRequest after the next Logon (PossDup); an order in
flight to the router at an RST is cancelled at its ack while an order placed on the new
connection meanwhile rests, its reports written on the new connection; a replace and a cancel
in flight at the disconnect end with nothing resting, the replaced order's cancel reported
under its new ClOrdID; a mass cancel in flight: its report and the cancels sent anew after a
ResetSeqNumFlag Logon; a gateway crash (SIGKILL) with one order resting and one in flight:
after the restart both are cancelled and reported; a silent client's unanswered TestRequest
cancels within a few heartbeats; a MsgSeqNum too low (Logout by the gateway) cancels; a second
Logon refused ("already logged on") leaves the logged-on session's orders; of two sessions of
one account only the COD session's orders are cancelled.

Not reviewed here: a hung gateway (SIGSTOP; README's stuck detection needs records waiting)
and a failover (the promoted gateway runs the restart's path over the order logs shipped).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.unit.gateway.harness import (
    OPEN,
    Client,
    Harness,
    run_scenario,
    settled,
    small_ring_exchange,
    utc,
)
from tests.unit.gateway.test_adversarial_fix import order
from tests.unit.gateway.test_gateway_restart import crash
from tests.unit.gateway.test_gateway_restart import run as run_restart
from tests.unit.gateway.test_review99_tls import _reads
from tests.unit.gateway.test_review201_fix_wire import _rst
from tests.unit.gateway.test_tls import CERT, KEY, trusting

ALICE = 7


def cod(instance: str, tmp_path: Path, tls: bool = False) -> Harness:
    """ALICE (account 7) and BOB (8), under a gateway that cancels on disconnect (over TLS:
    ``tls``)."""
    return small_ring_exchange(
        instance, tmp_path, 4096, users=("ALICE", "BOB"), cancel_on_disconnect=True,
        tls_cert=CERT if tls else "", tls_key=KEY if tls else "",
    )  # fmt: skip


def opened(h: Harness, account: int = ALICE) -> int:
    return h.router.sequencer.accounts.open_orders(account)


async def on(port: int, comp: str = "ALICE", hb: int = 30) -> Client:
    c = Client(comp)
    await c.connect(port)
    await c.logon(hb=hb)
    return c


async def acked(
    c: Client, cl: str, *pairs: tuple[int, object], price: str | None = "90.00", kind: str = "2"
) -> None:
    """A buy of 0.10 at ``price`` (``kind``: OrdType), acknowledged."""
    await c.send("D", *order(cl, "1", "0.10", price, kind, *pairs))
    msg = await c.expect("8")
    assert msg.get(150) == b"0", msg


async def drain(c: Client, quiet_s: float = 0.5) -> list[Any]:
    """What comes until ``quiet_s`` of silence."""
    out = []
    while (m := await c.recv(quiet_s)) is not None:
        out.append(m)
    return out


def reports(messages: list[Any]) -> list[tuple[bytes, bytes]]:
    """(ClOrdID, ExecType) of each ExecutionReport."""
    return [(m.get(11), m.get(150)) for m in messages if m.get(35) == b"8"]


async def fetched(port: int, old: Client) -> list[Any]:
    """``old``'s session logged on again, its numbers kept, and what a ResendRequest from
    the last message ``old`` read on brings."""
    last = int(old.received[-1].get(34))
    c = Client(old.comp_id)
    c.seq = old.seq
    await c.connect(port)
    await c.logon()
    await c.send("2", (7, last + 1), (16, 0))
    return await drain(c)


def dropped(c: Client) -> None:
    """The client's connection reset (RST), as a host that vanished or a killed process."""
    _rst(c)
    OPEN.remove(c)


# -- fault ------------------------------------------------------------------------------------


def test_a_session_timed_out_and_back_at_once_has_its_old_orders_cancelled(
    instance: str, tmp_path: Path
) -> None:
    """Scenario: ALICE (COD, TLS, HeartBtInt 1) has an order resting, then hangs (reads
    nothing, answers nothing); the gateway's TestRequest goes unanswered and it ends the
    session; ALICE's engine reconnects at once on a new socket and logs on. Expected: the
    order of the connection that ended is cancelled (its session ended: cancel on
    disconnect), whatever the new connection does. Was (fixed): the old TLS transport's close
    waited up to a second for a close_notify; the new Logon was taken meanwhile, and the old
    connection's end, when it came, was taken for a late one: the order rested for good."""
    h = cod(instance, tmp_path, tls=True)

    async def scenario(h: Harness, port: int) -> None:
        gw = h.gateway
        assert gw is not None
        hung = Client("ALICE")
        await hung.connect(port, tls=trusting())
        await hung.logon(hb=1)
        await acked(hung, "a1")
        (conn,) = gw.connections
        _reads(hung, False)
        await settled(lambda: "ALICE" not in gw.live, 8)
        assert "ALICE" not in gw.live, "no TestRequest timeout"
        back = Client("ALICE")
        back.seq = hung.seq
        await back.connect(port, tls=trusting())
        await back.logon()
        await settled(lambda: conn not in gw.connections, 5)
        assert conn not in gw.connections
        assert hung.writer is not None
        hung.writer.transport.abort()
        OPEN.remove(hung)
        await settled(lambda: opened(h) == 0, 3)
        assert opened(h) == 0, "the hung connection's order still rests"

    run_scenario(h, scenario)


# -- sound ------------------------------------------------------------------------------------


def test_a_logout_cancels_every_kind_of_order_and_each_report_is_fetched(
    instance: str, tmp_path: Path
) -> None:
    """Scenario: ALICE (COD) rests a limit, a stop limit, a stop market and an iceberg, then
    logs out; it logs on again keeping its numbers and sends a ResendRequest. Expected: all
    four cancelled, a Canceled report for each, PossDup. Now: so."""
    h = cod(instance, tmp_path)

    async def scenario(h: Harness, port: int) -> None:
        c = await on(port)
        await acked(c, "lim")
        await acked(c, "stp", (99, "120.00"), price="121.00", kind="4")
        await acked(c, "smk", (99, "125.00"), price=None, kind="3")
        await acked(c, "ice", (111, "0.02"), price="89.00")
        assert opened(h) == 4
        await c.send("5")
        await c.expect("5")
        await settled(lambda: opened(h) == 0, 5)
        assert opened(h) == 0
        await c.aclose()
        got = [m for m in await fetched(port, c) if m.get(35) == b"8"]
        assert reports(got) == [(cl, b"4") for cl in (b"lim", b"stp", b"smk", b"ice")]
        assert {m.get(43) for m in got} == {b"Y"}

    run_scenario(h, scenario)


def test_an_order_in_flight_is_cancelled_and_the_new_connections_order_rests(
    instance: str, tmp_path: Path
) -> None:
    """Scenario: ALICE (COD) rests a1, sends o1 while the router is held, is reset (RST),
    logs on again on a new connection and sends o2; then the router goes on. Expected: a1
    and o1 (the old connection's, o1 at its ack) cancelled, o2 rests; the new connection is
    told each. Now: so."""
    h = cod(instance, tmp_path)

    async def scenario(h: Harness, port: int) -> None:
        gw = h.gateway
        assert gw is not None
        c = await on(port)
        await acked(c, "a1")
        h.pause()
        await c.send("D", *order("o1", "1", "0.10", "91.00"))
        await settled(lambda: any(o.cl_ord_id == b"o1" for o in gw.entry.live.values()))
        dropped(c)
        await settled(lambda: not gw.connections)
        again = Client("ALICE")
        again.seq = c.seq
        await again.connect(port)
        await again.logon()
        await again.send("D", *order("o2", "1", "0.10", "92.00"))
        await settled(lambda: any(o.cl_ord_id == b"o2" for o in gw.entry.live.values()))
        h.resume()
        await settled(lambda: len(reports(again.received)) >= 4, 5)
        await drain(again, 0.3)
        assert sorted(reports(again.received)) == sorted(
            [(b"o1", b"0"), (b"a1", b"4"), (b"o2", b"0"), (b"o1", b"4")]
        )
        assert opened(h) == 1
        assert [o.cl_ord_id for o in gw.entry.live.values()] == [b"o2"]

    run_scenario(h, scenario)


def test_a_replace_and_a_cancel_in_flight_end_with_nothing_resting(
    instance: str, tmp_path: Path
) -> None:
    """Scenario: ALICE (COD) rests a1 and b1; with the router held it replaces a1 (a2, a new
    price and size) and cancels b1 (b2), then is reset. Expected: nothing rests; the reports
    fetched after the next Logon: a2 Replaced, b2 Canceled (its own cancel), a2 Canceled
    (the disconnect's). Now: so."""
    h = cod(instance, tmp_path)

    async def scenario(h: Harness, port: int) -> None:
        gw = h.gateway
        assert gw is not None
        c = await on(port)
        await acked(c, "a1")
        await acked(c, "b1", price="80.00")
        h.pause()
        head = [(55, "BTC-USD"), (54, "1"), (60, utc())]
        await c.send("G", (41, "a1"), (11, "a2"), *head, (38, "0.20"), (40, "2"), (44, "95.00"))
        await c.send("F", (41, "b1"), (11, "b2"), *head, (38, "0.10"))
        await settled(lambda: len(gw.entry.requests) == 2)
        dropped(c)
        await settled(lambda: not gw.connections)
        h.resume()
        await settled(lambda: opened(h) == 0, 5)
        assert opened(h) == 0
        got = reports(await fetched(port, c))
        assert got == [(b"a2", b"5"), (b"b2", b"4"), (b"a2", b"4")]

    run_scenario(h, scenario)


def test_a_mass_cancel_in_flight_is_answered_after_a_reset_logon(
    instance: str, tmp_path: Path
) -> None:
    """Scenario: ALICE (COD) rests a1 and b1, sends an OrderMassCancelRequest (all orders)
    with the router held, is reset; later it logs on with ResetSeqNumFlag. Expected: nothing
    rests; its mass cancel's report and the two Canceled reports are sent anew after the
    Logon. Now: so."""
    h = cod(instance, tmp_path)

    async def scenario(h: Harness, port: int) -> None:
        gw = h.gateway
        assert gw is not None
        c = await on(port)
        await acked(c, "a1")
        await acked(c, "b1", price="80.00")
        h.pause()
        await c.send("q", (11, "m1"), (530, "7"), (60, utc()))
        await settled(lambda: bool(gw.entry.mass_cancels))
        dropped(c)
        await settled(lambda: not gw.connections)
        h.resume()
        await settled(lambda: opened(h) == 0 and not gw.entry.in_flight(), 5)
        assert opened(h) == 0
        again = Client("ALICE")
        await again.connect(port)
        await again.logon(reset=True)
        got = await drain(again)
        assert [(m.get(35), m.get(11)) for m in got if m.get(35) == b"r"] == [(b"r", b"m1")]
        assert sorted(reports(got)) == [(b"a1", b"4"), (b"b1", b"4")]

    run_scenario(h, scenario)


def test_a_gateway_crash_cancels_the_orders_resting_and_in_flight(
    instance: str, tmp_path: Path
) -> None:
    """Scenario: ALICE (COD) rests a1 and sends o1 with the router held; the gateway dies as
    SIGKILL leaves it, and is started again; then the router goes on. Expected: a1 and o1
    cancelled (the restart finds the session gone), every report fetched after ALICE's next
    Logon. Now: so."""
    h = cod(instance, tmp_path)

    async def scenario(h: Harness, port: int) -> None:
        c = await on(port)
        await acked(c, "a1")
        h.pause()
        await c.send("D", *order("o1", "1", "0.10", "91.00"))
        gw = h.gateway
        assert gw is not None
        await settled(lambda: any(o.cl_ord_id == b"o1" for o in gw.entry.live.values()))
        await asyncio.sleep(0.05)  # the poll loop's pass publishes it to the router's ring
        await crash(h)
        await c.aclose()
        port = await h.start()
        h.resume()
        await settled(lambda: opened(h) == 0, 5)
        assert opened(h) == 0
        got = reports(await fetched(port, c))
        assert got == [(b"o1", b"0"), (b"a1", b"4"), (b"o1", b"4")]

    try:
        run_restart(h, scenario)
    finally:
        h.close()


def test_an_unanswered_test_request_cancels_within_a_few_heartbeats(
    instance: str, tmp_path: Path
) -> None:
    """Scenario: ALICE (COD, HeartBtInt 1) rests an order and goes silent, its socket open.
    Expected: cancelled once its TestRequest goes unanswered, within a few seconds. Now:
    so."""
    h = cod(instance, tmp_path)

    async def scenario(h: Harness, port: int) -> None:
        c = await on(port, hb=1)
        await acked(c, "a1")
        await settled(lambda: opened(h) == 0, 8)
        assert opened(h) == 0

    run_scenario(h, scenario)


def test_a_logout_for_a_sequence_number_too_low_cancels(instance: str, tmp_path: Path) -> None:
    """Scenario: ALICE (COD) rests an order, then sends a Heartbeat numbered 1. Expected: the
    gateway's Logout says why, and the order is cancelled. Now: so."""
    h = cod(instance, tmp_path)

    async def scenario(h: Harness, port: int) -> None:
        c = await on(port)
        await acked(c, "a1")
        await c.send("0", seq=1)
        assert b"MsgSeqNum too low" in (await c.expect("5")).get(58)
        await settled(lambda: opened(h) == 0, 5)
        assert opened(h) == 0

    run_scenario(h, scenario)


def test_a_second_logon_refused_leaves_the_sessions_orders(instance: str, tmp_path: Path) -> None:
    """Scenario: ALICE (COD) rests a1; a second connection sends a Logon as ALICE. Expected:
    that Logon refused, ALICE's session and a1 untouched, ALICE trades on. Now: so."""
    h = cod(instance, tmp_path)

    async def scenario(h: Harness, port: int) -> None:
        c = await on(port)
        await acked(c, "a1")
        other = Client("ALICE")
        other.seq = 50
        await other.connect(port)
        await other.send("A", (98, 0), (108, 30), (554, "secret"))
        assert b"already logged on" in (await other.expect("5")).get(58)
        assert await other.closed()
        await acked(c, "a2")
        assert opened(h) == 2

    run_scenario(h, scenario)


def test_only_the_cod_session_of_a_shared_account_is_cancelled(
    instance: str, tmp_path: Path
) -> None:
    """Scenario: account 7 has two sessions: ALICE (the gateway's setting: off) and BOB (his
    own: on); each rests an order, then BOB disconnects. Expected: BOB's order cancelled,
    ALICE's rests. Now: so."""
    h = small_ring_exchange(instance, tmp_path, 4096, users=("ALICE",))
    h.add_user("BOB", "secret", ALICE, cancel_on_disconnect=True)

    async def scenario(h: Harness, port: int) -> None:
        gw = h.gateway
        assert gw is not None
        a = await on(port)
        b = await on(port, "BOB")
        await acked(a, "a1")
        await acked(b, "b1")
        await b.aclose()
        await settled(lambda: opened(h) == 1 and not gw.entry.in_flight(), 5)
        assert opened(h) == 1
        assert [o.cl_ord_id for o in gw.entry.live.values()] == [b"a1"]

    run_scenario(h, scenario)
