"""A fifth hostile review of the FIX 4.4 gateway (session layer and order entry) against the
FIX 4.4 session rules as QuickFIX implements them and the order-handling rules of Volume 4.
Each test failed on the code it was written against: its docstring says what is wrong and what
a correct venue does. Both go end to end through the harness (real TCP, router and matcher,
a simplefix client)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.unit.gateway.harness import Client, Harness, config, settled
from tests.unit.gateway.test_gateway import logged_on, order, run, status_request


async def drain_for(client: Client, timeout: float = 0.5) -> list[Any]:
    """Every message that comes within ``timeout`` of the last one."""
    got = []
    while (msg := await client.recv(timeout)) is not None:
        got.append(msg)
    return got


# -- order entry -------------------------------------------------------------------------------


def test_a_status_of_a_pending_new_order_says_its_leaves_qty(harness: Harness) -> None:
    """ALICE sends a D and, before the exchange has acknowledged it (the pipeline is held),
    an OrderStatusRequest (H). The gateway answers from its own state (orders.py ``_status``
    -> ``_report``) with ExecType I, OrdStatus A (Pending New), OrderQty 1.00 and LeavesQty
    ``order.leaves``, which is 0 until ``Accepted`` sets it. FIX 4.4 Vol 4, LeavesQty (151):
    "If the OrdStatus is Canceled, DoneForTheDay, Expired, Calculated, or Rejected (in which
    case the order is no longer active) then LeavesQty could be 0, otherwise LeavesQty =
    OrderQty - CumQty" (the order state matrices show the Pending New report with LeavesQty =
    OrderQty). Expected 151=1.00 (38 - 14); actual 151=0.00, an active order reported as if it
    had nothing left to execute."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        h.pause()
        await alice.send("D", *order("p1", "1", "1.00", "100.00"))
        await asyncio.sleep(0.05)  # the gateway takes the D; nothing answers it yet
        await alice.send("H", *status_request("p1", "1"))
        status = await alice.expect("8")
        assert (status.get(150), status.get(39)) == (b"I", b"A")
        qty, cum, leaves = (float(status.get(t)) for t in (38, 14, 151))
        assert leaves == qty - cum, (
            f"OrdStatus A with OrderQty {qty} CumQty {cum} LeavesQty {leaves}"
        )
        h.resume()
        assert (await alice.expect("8")).get(150) == b"0"

    run(harness, scenario)


# -- reports for a session that is going away -------------------------------------------------


@pytest.fixture
def quiet(instance: str, tmp_path: Path) -> Iterator[Harness]:
    """The usual exchange, with a gateway whose poll loop naps on a plain 1 ms timer (no
    busy spin, no ring waker), so what runs in which pass of the event loop is fixed."""
    h = Harness(config(instance, tmp_path, idle_spin_us=0, park_after_ms=0))
    h.add_user("ALICE", "secret", 7)
    h.add_user("BOB", "secret", 8)
    h.fund(7)
    h.fund(8)
    yield h
    h.close()


def test_a_fill_that_meets_a_logout_is_kept_for_a_resetting_logon(quiet: Harness) -> None:
    """ALICE's bid rests; BOB's crossing sell reaches the exchange in the same moment as
    ALICE's Logout. The session answers the Logout and ends (``_logout_reply`` -> ``_close``)
    and the shell closes the socket, but the order entry forgets the session only in
    ``on_disconnect``, when asyncio calls ``connection_lost`` one pass later; the poll task,
    woken by the Logout's ``submit``, runs first and reads the fill. ``_deliver`` finds the
    session in ``entry.sessions`` and ``send``s to it: the report is numbered and stored as
    sent, its bytes go to a transport already closed and are dropped, and it is not parked.
    ALICE comes back with ResetSeqNumFlag: ``MessageStore.unsent`` knows only what ``park``
    stored, the reset truncates the store, and the fill she never saw is gone (README: a
    logon with ResetSeqNumFlag gets what was parked while the client was away "sent anew,
    under the new numbers, after its Logon"; store.py: "a reset discards what the client has
    seen, never what it has not"). Expected: the fill after the new Logon, as
    ``test_reset_logon`` gets it when the fill comes a moment later. Actual: nothing.
    Fix: ``_deliver`` (and ``_report``) park for a session that is ``closed``."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("s1", "1", "1.00", "100.00"))
        assert (await alice.expect("8")).get(150) == b"0"
        bob = await logged_on(port, "BOB")
        h.pause()
        assert h.gateway is not None and alice.writer is not None
        gw, published = h.gateway, h.gateway.producer.sequence
        await bob.send("D", *order("b1", "2", "1.00", "100.00"))
        await settled(lambda: gw.producer.sequence > published, 10.0)  # in the ring, not matched
        gone = h.gateway.live["ALICE"]
        alice.writer.write(alice.message("5").encode())
        while not gone.closed:  # one pass of the loop at a time, until the Logout is read
            await asyncio.sleep(0)
        # the session has ended; the order entry learns it at once (review 230: it learned
        # it when connection_lost came, and the fill below found the session still there)
        assert h.gateway.entry.sessions.get(gone.session_id) is None
        h.step_pipeline()  # BOB's sell fills ALICE's bid now: the fill is in the ring
        logout = await alice.expect("5")
        assert logout is not None and await alice.closed()
        h.resume()
        assert (await bob.expect("8")).get(150) == b"0"
        assert (await bob.expect("8")).get(39) == b"2"
        await asyncio.sleep(0.2)
        back = Client("ALICE")
        await back.connect(port)
        assert (await back.logon(reset=True)).get(141) == b"Y"
        got = [(m.get(35), m.get(11), m.get(39)) for m in await drain_for(back)]
        assert (b"8", b"s1", b"2") in got, f"after the reset logon ALICE got {got}"

    run(quiet, scenario)
