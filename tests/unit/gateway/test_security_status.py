"""A FIX client asks whether a symbol trades, and follows its halts and resumes:
SecurityStatusRequest (e) -> SecurityStatus (f), over real TCP with a simplefix client; the
halts are the operator's (an AdminCommand through the router, as ``ringex admin halt``
sends), the snapshot before any is seen market data's (a real HTTP server here)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import simplefix  # ships no type information
from aiohttp import web

from procs.common.records import AdminCommand
from procs.common.types import AdminAction
from procs.gateway import security_status
from tests.unit.gateway.harness import Client, Harness, run_scenario, small_ring_exchange

READY, HALT, UNKNOWN = (
    str(v).encode()
    for v in (security_status.READY_TO_TRADE, security_status.TRADING_HALT, security_status.UNKNOWN)
)


@pytest.fixture
def h(instance: str, tmp_path: Path) -> Iterator[Harness]:
    """ALICE (account 7) and BOB (8), password "secret"; one symbol, BTC-USD (id 1)."""
    yield small_ring_exchange(instance, tmp_path, 4096, users=("ALICE", "BOB"))


def admin(h: Harness, action: AdminAction) -> None:
    h.funder.publish_batch([AdminCommand(0, 0, action, 1, time.time_ns())])


async def logged_on(port: int, comp: str = "ALICE") -> Client:
    client = Client(comp)
    await client.connect(port)
    await client.logon("secret", reset=True)
    return client


async def asked(client: Client, ref: str, kind: int, symbol: str = "BTC-USD") -> None:
    await client.send("e", (324, ref), (55, symbol), (263, kind))


def status(f: simplefix.FixMessage) -> tuple[bytes | None, ...]:
    """SecurityStatusReqID, Symbol, UnsolicitedIndicator, SecurityTradingStatus."""
    return f.get(324), f.get(55), f.get(325), f.get(326)


async def nothing_more(client: Client) -> None:
    """Nothing came before the answer to a TestRequest sent now."""
    await client.send("1", (112, "sync"))
    assert (await client.expect("0", timeout=5.0)).get(112) == b"sync"


def test_a_follower_hears_each_halt_and_resume(h: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await asked(alice, "follow", 1)  # before any halt, with no market data: unknown
        first = await alice.expect("f", timeout=5.0)
        assert status(first) == (b"follow", b"BTC-USD", b"N", UNKNOWN)
        assert b"market data is disabled" in first.get(58)
        admin(h, AdminAction.HALT)
        halted = await alice.expect("f", timeout=5.0)
        assert status(halted) == (b"follow", b"BTC-USD", b"Y", HALT) and halted.get(60)
        admin(h, AdminAction.HALT)  # a halt of a halted symbol changes nothing
        admin(h, AdminAction.RESUME)
        resumed = await alice.expect("f", timeout=5.0)
        assert status(resumed) == (b"follow", b"BTC-USD", b"Y", READY)
        # a snapshot now is the newest event's, with its time
        await asked(alice, "snap", 0)
        snap = await alice.expect("f", timeout=5.0)
        assert status(snap) == (b"snap", b"BTC-USD", b"N", READY)
        assert snap.get(60) == resumed.get(60) and snap.get(58) is None
        await asked(alice, "follow", 2)  # unsubscribed: answered with nothing
        await nothing_more(alice)
        admin(h, AdminAction.HALT)
        await asyncio.sleep(0.3)
        await nothing_more(alice)  # no push after the unsubscribe
        await alice.aclose()

    run_scenario(h, scenario)


def test_a_subscription_ends_with_its_connection(h: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        bob = await logged_on(port, "BOB")
        await asked(bob, "b1", 1)
        await bob.expect("f", timeout=5.0)
        await bob.aclose()
        await asyncio.sleep(0.2)
        bob = await logged_on(port, "BOB")  # the same user, a new connection: not following
        alice = await logged_on(port)
        await asked(alice, "a1", 1)
        await alice.expect("f", timeout=5.0)
        admin(h, AdminAction.HALT)
        assert status(await alice.expect("f", timeout=5.0))[3] == HALT
        await nothing_more(bob)
        gw = h.gateway
        assert gw is not None
        (alice_id,) = (sid for sid, s in gw.entry.sessions.items() if s.comp_id == "ALICE")
        assert list(gw.security_statuses.followers[b"BTC-USD"]) == [alice_id]
        await alice.aclose()
        await bob.aclose()

    run_scenario(h, scenario)


def test_requests_it_cannot_answer_say_so(h: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await asked(alice, "u1", 0, "DOGE-USD")
        j = await alice.expect("j", timeout=5.0)
        assert (j.get(372), j.get(380)) == (b"e", b"2")  # unknown security
        assert b"DOGE-USD" in j.get(58) and b"BTC-USD" in j.get(58)
        await alice.send("e", (324, "no-kind"), (55, "BTC-USD"))  # 263 is required
        reject = await alice.expect("3", timeout=5.0)
        assert (reject.get(371), reject.get(373)) == (b"263", b"1")
        await alice.send("e", (324, "bad"), (55, "BTC-USD"), (263, 7))
        reject = await alice.expect("3", timeout=5.0)
        assert (reject.get(371), reject.get(373)) == (b"263", b"5")
        await nothing_more(alice)
        await alice.aclose()

    run_scenario(h, scenario)


def test_before_any_event_the_snapshot_is_market_datas(h: Harness) -> None:
    """No halt or resume read since the gateway started: market data's status (HALT here,
    as a restarted gateway would find a symbol halted before it) answers."""
    asks: list[str] = []

    async def symbols(request: web.Request) -> web.Response:
        asks.append(request.path)
        return web.json_response([{"symbol": "BTC-USD", "status": "HALT"}])

    async def scenario(h: Harness, port: int) -> None:
        app = web.Application()
        app.router.add_get("/api/symbols", symbols)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        gw = h.gateway
        assert gw is not None
        md_port = runner.addresses[0][1]
        gw.security_statuses._market_url = f"http://127.0.0.1:{md_port}"
        try:
            alice = await logged_on(port)
            await asked(alice, "m1", 0)
            f = await alice.expect("f", timeout=5.0)
            assert status(f) == (b"m1", b"BTC-USD", b"N", HALT) and f.get(58) is None
            assert asks == ["/api/symbols"]
            admin(h, AdminAction.RESUME)  # read from the ring: the event answers from now on
            await asyncio.sleep(0.3)
            await asked(alice, "m2", 0)
            assert status(await alice.expect("f", timeout=5.0))[3] == READY
            assert asks == ["/api/symbols"]
            await alice.aclose()
        finally:
            await runner.cleanup()

    run_scenario(h, scenario)
