"""A mass cancel (q) the router had not answered when its gateway stopped is answered (r)
after the gateway's restart: its request is in the order log, and the verdict comes from
the reply ring read again, or, when the rings are new, from the journal."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from procs.gateway import restart
from procs.gateway.order_log import OrderLog
from shm.inspect import remove_instance
from tests.unit.gateway.harness import Client, Harness, close_all, config, settled, utc
from tests.unit.gateway.test_gateway import logged_on, order
from tests.unit.gateway.test_gateway_restart import back_on, crash, drain, run, run_harness


def reports(messages: list[Any]) -> list[tuple[bytes, bytes, bytes | None]]:
    """(ClOrdID, MassCancelResponse, MassCancelRejectReason) of each r."""
    return [(m.get(11), m.get(531), m.get(532)) for m in messages if m.get(35) == b"r"]


def cancelled(messages: list[Any]) -> list[bytes]:
    return [m.get(11) for m in messages if m.get(35) == b"8" and m.get(150) == b"4"]


def test_a_mass_cancel_the_router_answers_after_the_gateway_crashed(harness: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("s1", "2", "1.00", "100.00"))
        assert (await alice.expect("8")).get(150) == b"0"
        h.pause()  # the router takes the mass cancel only after the gateway's crash
        await alice.send("q", (11, "mc"), (530, "7"), (60, utc()))
        gw = h.gateway
        assert gw is not None

        def published() -> bool:
            return bool(gw.entry.mass_cancels) and not gw.entry.outgoing and not gw._unpublished

        await settled(published)
        assert published() and not reports(alice.received)
        await crash(h)
        await alice.aclose()
        port = await h.start()  # the router runs again and answers the restarted gateway

        alice = await back_on(port, "ALICE", alice.seq)
        await alice.send("2", (7, 1), (16, 0))  # what was parked for her while she was away
        told = await drain(alice)
        assert reports(told) == [(b"mc", b"7", None)]
        assert cancelled(told) == [b"s1"]

    run(harness, scenario)


@pytest.mark.parametrize("journal", ["readable", "cannot tell"])
def test_a_journaled_mass_cancel_is_answered_after_a_full_restart(
    instance: str, tmp_path: Path, journal: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exchange restarts whole (new rings) after the router took the mass cancel and
    before the gateway read its verdict: the journal holds it, so it was accepted. Where the
    journal cannot tell (archived, or too far behind), it is refused for the client to send
    again, never left unanswered."""
    if journal == "cannot tell":
        monkeypatch.setattr(restart, "journaled_refs", lambda *_: None)
    cfg = config(instance, tmp_path)
    first = Harness(cfg)
    first.add_user("ALICE", "secret", 7)
    first.fund(7)
    seq = 1

    async def place() -> None:
        nonlocal seq
        port = await first.start()
        alice = await logged_on(port)
        await alice.send("D", *order("s1", "2", "1.00", "100.00"))
        assert (await alice.expect("8")).get(150) == b"0"
        gw = first.gateway
        assert gw is not None
        for consumer in gw.inputs:  # the verdict stays unread in the reply ring
            consumer.read = lambda max_batch=256: []  # type: ignore[method-assign]
        await alice.send("q", (11, "mc"), (530, "7"), (60, utc()))
        await settled(lambda: not first.router.sequencer.accounts.open_orders(7))
        assert list(gw.entry.mass_cancels)
        seq = alice.seq
        await crash(first)
        await close_all()

    asyncio.run(place())
    first.close()
    remove_instance(instance)  # the rings go, the verdict with them

    again = Harness(cfg)

    async def check() -> None:
        port = await again.start()
        alice = Client("ALICE")
        alice.seq = seq
        await alice.connect(port)
        await alice.logon()
        await alice.send("2", (7, 1), (16, 0))
        told = await drain(alice)
        expected = (b"mc", b"7", None) if journal == "readable" else (b"mc", b"0", b"99")
        assert reports(told) == [expected]
        gw = again.gateway
        assert gw is not None and not gw.entry.mass_cancels

    try:
        asyncio.run(run_harness(again, check))
    finally:
        again.close()


def test_the_order_log_keeps_a_mass_cancel_until_it_is_answered(tmp_path: Path) -> None:
    log = OrderLog(tmp_path / "orders.log")
    log.load()
    log.write([("M", 5, 3, [(11, b"mc"), (530, b"7")]), ("M", 6, 3, [(11, b"other")])])
    log.write([("X", 5)])
    log.close()
    again = OrderLog(tmp_path / "orders.log")
    assert again.load().mass_cancels == {6: [3, [[11, b"other"]]]}
    again.close()
