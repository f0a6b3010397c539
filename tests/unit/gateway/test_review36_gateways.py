"""Review 36: several gateways side by side, each with its own rings into the router, all
reading the matchers' outputs, over real TCP (FIX and REST) in one loop: what a venue running
N gateways must get right across them (keys, cancels, mass cancels, streams, restarts)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from config.edges import GatewayConfig, RestConfig
from config.schema import DatabaseConfig
from procs.gateway.rest_client import RestClient
from procs.gateway.server import GatewayServer
from tests.unit.gateway.harness import Client, Harness, close_all, config, settled
from tests.unit.gateway.rest_rig import ALICE, BOB, LIMIT, client, stream_messages, until_closed
from tests.unit.gateway.test_gateway import order


def rest_config(**kw: Any) -> RestConfig:
    base: dict[str, Any] = dict(
        port=0, key_rate_per_s=1_000, key_burst=1_000, login_rate_per_s=100, login_burst=100
    )
    return RestConfig(**(base | kw))


class Pair:
    """The harness's exchange with two gateways, gw1 and gw2, each with FIX and REST."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.gw2: GatewayServer | None = None

    @property
    def gw1(self) -> GatewayServer:
        assert self.h.gateway is not None
        return self.h.gateway

    def url(self, gw: GatewayServer | None) -> str:
        assert gw is not None and gw.api is not None
        return f"http://127.0.0.1:{gw.api.port}"

    async def start_gw2(self) -> GatewayServer:
        self.gw2 = GatewayServer(self.h.cfg, "gw2")
        await self.gw2.start()
        return self.gw2

    async def stop_gw2(self) -> None:
        if self.gw2 is not None:
            await self.gw2.shutdown(grace_s=0.2)
            self.gw2 = None


def alice_at_two(instance: str, tmp_path: Path, rest: RestConfig) -> Harness:
    """The harness's exchange with a second gateway, gw2, both serving REST with ``rest``,
    no database, and ALICE as a user."""
    cfg = config(instance, tmp_path, rest=rest)
    gws = [cfg.gateways[0], GatewayConfig(name="gw2", id=2, port=0, rest=rest)]
    cfg = msgspec.structs.replace(cfg, gateways=gws, database=DatabaseConfig(enabled=False))
    h = Harness(cfg)
    h.add_user("ALICE", "alice-pw", ALICE)
    return h


@pytest.fixture
def pair(instance: str, tmp_path: Path) -> Any:
    h = alice_at_two(instance, tmp_path, rest_config())
    h.add_user("BOB", "bob-pw", BOB)
    h.fund(ALICE, usd=1_000_000 * 10**6, btc=10 * 10**6)
    h.fund(BOB, usd=1_000_000 * 10**6, btc=10 * 10**6)
    yield Pair(h)
    h.close()


def run(p: Pair, scenario: Callable[[Pair], Awaitable[None]]) -> None:
    async def main() -> None:
        await p.h.start()
        await p.start_gw2()
        try:
            await asyncio.wait_for(scenario(p), 30)
        finally:
            await close_all()
            await p.stop_gw2()
            await p.h.stop()

    asyncio.run(main())


@asynccontextmanager
async def alice_at_both(p: Pair) -> AsyncIterator[tuple[RestClient, RestClient]]:
    """ALICE logged in over REST at gw1, and a client at gw2 signing with her key (gw1's
    first); both closed on exit, gw1's first."""
    at1 = await client(p.url(p.gw1), "ALICE", "alice-pw")
    at2 = same_key(at1, p.url(p.gw2))
    try:
        yield at1, at2
    finally:
        await at1.close()
        await at2.close()


def run_then_close(p: Pair, scenario: Callable[[Pair], Awaitable[None]]) -> None:
    """``run``, then the harness closed: for a ``Pair`` a test built without the fixture."""
    try:
        run(p, scenario)
    finally:
        p.h.close()


def same_key(c: RestClient, url: str) -> RestClient:
    """A client at ``url`` signing with ``c``'s key."""
    other = RestClient(url)
    other.api_key, other.secret, other.account = c.api_key, c.secret, c.account
    return other


async def fix_at(gw: GatewayServer, comp_id: str, password: str) -> Client:
    fix = Client(comp_id)
    await fix.connect(gw.port)
    await fix.logon(password)
    return fix


async def reports_for(fix: Client, timeout: float) -> list[Any]:
    """The ExecutionReports that come within ``timeout`` of the last message."""
    got = []
    while (msg := await fix.recv(timeout)) is not None:
        if msg.get(35) == b"8":
            got.append(msg)
    return got


# -- API keys ------------------------------------------------------------------------------


def test_a_key_made_at_one_gateway_signs_at_another_at_once(pair: Pair) -> None:
    """Gateways sharing a REST port (``reuse_port``) hand a client's next connection to any
    of them: the key a login just returned must sign there. ``ApiKeyStore.get`` re-read the
    shared file at most every 0.5 s, so a key made at gw1 was 401 at gw2 until then
    (fixed: a key it does not hold makes it look at the file at once)."""

    async def scenario(p: Pair) -> None:
        url2 = p.url(p.gw2)
        async with RestClient(url2) as probe:  # gw2 has just looked at the file
            probe.api_key, probe.secret = "x" * 32, "0" * 64
            assert (await probe.request("GET", "/api/v1/openOrders"))[0] == 401
        async with alice_at_both(p) as (_alice, at2):
            status, body = await at2.request("GET", "/api/v1/openOrders")
            assert status == 200, body

    run(pair, scenario)


def test_a_revoke_at_one_gateway_closes_the_streams_of_another(pair: Pair) -> None:
    """README: DELETE apiKey closes the key's streams "within a second when another gateway
    ... revoked it"; its requests at the other gateway are refused from then on too."""

    async def scenario(p: Pair) -> None:
        async with alice_at_both(p) as (alice, at2):
            ws = await alice.stream()
            assert (await stream_messages(ws, 0.3))[0]["event"] == "snapshot"
            await at2.call("DELETE", "/api/v1/apiKey")
            t0 = time.monotonic()
            assert await until_closed(ws, 2.5) == 1008
            assert time.monotonic() - t0 < 1.6  # a second, and the store's recheck
            status, _ = await alice.request("GET", "/api/v1/openOrders")
            assert status == 401

    run(pair, scenario)


# -- orders across gateways ------------------------------------------------------------------


def test_a_fix_order_cancelled_over_rest_at_another_gateway_is_reported_once(
    pair: Pair,
) -> None:
    """ALICE's FIX order at gw1, cancelled by orderId through gw2's REST API: the cancel is
    answered CANCELED and her FIX session hears 150=4 for it, exactly once."""

    async def scenario(p: Pair) -> None:
        fix = await fix_at(p.gw1, "ALICE", "alice-pw")
        await fix.send("D", *order("f1", "1", "1.00", "90.00"))
        ack = await fix.expect("8")
        assert ack.get(150) == b"0"
        oid = int(ack.get(37))
        rest = await client(p.url(p.gw2), "ALICE", "alice-pw")
        try:
            done = await rest.call("DELETE", "/api/v1/order", symbol="BTC-USD", orderId=oid)
            assert done["status"] == "CANCELED", done
            reports = await reports_for(fix, 0.6)
            got = [(m.get(11), m.get(150), m.get(39)) for m in reports]
            assert got == [(b"f1", b"4", b"4")], got
            # ExecIDs name the gateway that sent them: unique across gateways
            assert all(m.get(17).startswith(b"1-") for m in [ack, *reports])
        finally:
            await rest.close()

    run(pair, scenario)


def test_a_mass_cancel_at_one_gateway_ends_orders_placed_at_the_other(pair: Pair) -> None:
    """DELETE openOrders at gw2 cancels ALICE's FIX order and her REST order at gw1 (one
    command for the account, whatever gateway placed them); the FIX session hears 150=4
    once, gw1's REST view says CANCELED, and BOB's order stays."""

    async def scenario(p: Pair) -> None:
        fix = await fix_at(p.gw1, "ALICE", "alice-pw")
        await fix.send("D", *order("f1", "1", "1.00", "90.00"))
        assert (await fix.expect("8")).get(150) == b"0"
        at1 = await client(p.url(p.gw1), "ALICE", "alice-pw")
        bob = await client(p.url(p.gw1), "BOB", "bob-pw")
        at2 = same_key(at1, p.url(p.gw2))
        try:
            placed = await at1.call("POST", "/api/v1/order", **LIMIT, price="91.00", quantity="1")
            kept = await bob.call("POST", "/api/v1/order", **LIMIT, price="89.00", quantity="1")
            await at2.call("DELETE", "/api/v1/openOrders", symbol="BTC-USD")
            got = [(m.get(11), m.get(150)) for m in await reports_for(fix, 0.6)]
            assert got == [(b"f1", b"4")], got
            view = await at1.call(
                "GET", "/api/v1/order", symbol="BTC-USD", orderId=placed["orderId"]
            )
            assert view["status"] == "CANCELED", view
            assert await at1.call("GET", "/api/v1/openOrders") == []
            still = await bob.call("GET", "/api/v1/openOrders")
            assert [o["orderId"] for o in still] == [kept["orderId"]]
        finally:
            for c in (at1, bob, at2):
                await c.close()

    run(pair, scenario)


def test_a_fix_mass_cancel_ends_the_rest_orders_of_another_gateway(pair: Pair) -> None:
    """ALICE's OrderMassCancelRequest (q) at gw1 ends her REST order placed at gw2: gw2's
    view says CANCELED, its stream reports it once, and the FIX session's report says 531=7
    without an ExecutionReport for an order it never placed."""

    async def scenario(p: Pair) -> None:
        at2 = await client(p.url(p.gw2), "ALICE", "alice-pw")
        try:
            placed = await at2.call("POST", "/api/v1/order", **LIMIT, price="91.00", quantity="1")
            ws = await at2.stream()
            assert (await stream_messages(ws, 0.3))[0]["event"] == "snapshot"
            fix = await fix_at(p.gw1, "ALICE", "alice-pw")
            await fix.send("q", (11, "m1"), (530, "7"), (60, "20240101-00:00:00"))
            got = []
            while (msg := await fix.recv(0.6)) is not None:
                got.append((msg.get(35), msg.get(531)))
            assert got == [(b"r", b"7")], got
            statuses = [
                e["data"]["status"]
                for e in await stream_messages(ws, 0.5)
                if e["event"] == "executionReport"
            ]
            assert statuses == ["CANCELED"], statuses
            view = await at2.call(
                "GET", "/api/v1/order", symbol="BTC-USD", orderId=placed["orderId"]
            )
            assert view["status"] == "CANCELED", view
        finally:
            await at2.close()

    run(pair, scenario)


def test_the_stream_at_one_gateway_reports_orders_placed_at_the_other(pair: Pair) -> None:
    """README: "Every order of the user is reported, whichever gateway placed it": ALICE's
    stream at gw2 hears her REST order and her FIX order placed at gw1, and their cancels."""

    async def scenario(p: Pair) -> None:
        at2 = await client(p.url(p.gw2), "ALICE", "alice-pw")
        at1 = same_key(at2, p.url(p.gw1))
        try:
            ws = await at2.stream()
            assert (await stream_messages(ws, 0.3))[0]["event"] == "snapshot"
            fix = await fix_at(p.gw1, "ALICE", "alice-pw")
            await fix.send("D", *order("f1", "1", "1.00", "90.00"))
            fix_oid = int((await fix.expect("8")).get(37))
            placed = await at1.call("POST", "/api/v1/order", **LIMIT, price="91.00", quantity="1")
            await at1.call("DELETE", "/api/v1/openOrders")
            seen: dict[int, list[str]] = {}
            for e in await stream_messages(ws, 0.8):
                if e["event"] == "executionReport":
                    d = e["data"]
                    seen.setdefault(d["orderId"], []).append(d["status"])
            assert seen.get(placed["orderId"]) == ["NEW", "CANCELED"], seen
            assert seen.get(fix_oid) == ["NEW", "CANCELED"], seen
        finally:
            await at1.close()
            await at2.close()

    run(pair, scenario)


def test_a_client_order_id_is_per_gateway_as_the_readme_says(pair: Pair) -> None:
    """README: a ``newClientOrderId`` an open order placed "through this gateway" holds is
    refused: the scope is the gateway. The same id at gw2 is a second order, and gw2's
    ``origClientOrderId`` names its own, never gw1's."""

    async def scenario(p: Pair) -> None:
        async with alice_at_both(p) as (at1, at2):
            first = await at1.call(
                "POST", "/api/v1/order", **LIMIT, price="90.00", quantity="1",
                newClientOrderId="dup-1",
            )  # fmt: skip
            again, body = await at1.request(
                "POST", "/api/v1/order", **LIMIT, price="90.00", quantity="1",
                newClientOrderId="dup-1",
            )  # fmt: skip
            assert again == 400 and body["code"] == -2010, body
            second = await at2.call(
                "POST", "/api/v1/order", **LIMIT, price="90.00", quantity="1",
                newClientOrderId="dup-1",
            )  # fmt: skip
            assert second["orderId"] != first["orderId"]
            gone = await at2.call(
                "DELETE", "/api/v1/order", symbol="BTC-USD", origClientOrderId="dup-1"
            )
            assert gone["orderId"] == second["orderId"]
            view = await at1.call(
                "GET", "/api/v1/order", symbol="BTC-USD", orderId=first["orderId"]
            )
            assert view["status"] == "NEW"

    run(pair, scenario)


# -- limits ----------------------------------------------------------------------------------


def test_a_keys_rate_limit_is_counted_per_gateway(instance: str, tmp_path: Path) -> None:
    """What the README now says: each gateway counts a key's (and an address's) requests
    itself, so a key spent at gw1 is still served at gw2 (the router's per-account command
    rate, ``risk.max_commands_per_s``, is the one that holds across gateways)."""
    p = Pair(alice_at_two(instance, tmp_path, rest_config(key_rate_per_s=0.1, key_burst=3)))

    async def scenario(p: Pair) -> None:
        async with alice_at_both(p) as (at1, at2):
            codes1 = [(await at1.request("GET", "/api/v1/openOrders"))[0] for _ in range(4)]
            assert codes1 == [200, 200, 200, 429]
            assert (await at2.request("GET", "/api/v1/openOrders"))[0] == 200

    run_then_close(p, scenario)


def test_a_keys_stream_limit_holds_across_gateways(instance: str, tmp_path: Path) -> None:
    """README: "One key holds at most ``max_streams_per_key`` streams (then 429)". With the
    limit at 1, a stream at gw1 and a second at gw2: the second must be refused.

    A documented limit until each stream held a slot of its key and account, a lock in a
    directory the gateways share (``stream_slots.py``)."""
    p = Pair(alice_at_two(instance, tmp_path, rest_config(max_streams_per_key=1)))

    async def scenario(p: Pair) -> None:
        async with alice_at_both(p) as (at1, at2):
            ws1 = await at1.stream()
            assert (await stream_messages(ws1, 0.3))[0]["event"] == "snapshot"
            second, third = 0, 0
            try:
                ws2 = await at2.stream()
                await ws2.close()
            except aiohttp.WSServerHandshakeError as exc:
                second = exc.status
            try:  # the control: the limit holds within one gateway
                ws3 = await at1.stream()
                await ws3.close()
            except aiohttp.WSServerHandshakeError as exc:
                third = exc.status
            assert third == 429
            await ws1.close()
            assert second == 429

    run_then_close(p, scenario)


# -- restarts --------------------------------------------------------------------------------


def test_a_gateway_restarted_beside_another_keeps_its_own_and_leaves_the_others(
    pair: Pair,
) -> None:
    """gw2 stops and starts again while gw1 serves ALICE over FIX: gw2 still names its own
    REST order by clientOrderId, gw1's session and order are untouched (no report, no
    Logout), and a fill of gw1's order by BOB at the new gw2 reaches ALICE once."""

    async def scenario(p: Pair) -> None:
        fix = await fix_at(p.gw1, "ALICE", "alice-pw")
        await fix.send("D", *order("f1", "1", "1.00", "90.00"))
        assert (await fix.expect("8")).get(150) == b"0"
        at2 = await client(p.url(p.gw2), "ALICE", "alice-pw")
        try:
            placed = await at2.call(
                "POST", "/api/v1/order", **LIMIT, price="80.00", quantity="1",
                newClientOrderId="keep-1",
            )  # fmt: skip
        finally:
            await at2.close()
        await p.stop_gw2()
        await p.start_gw2()
        assert await reports_for(fix, 0.3) == []
        at2 = same_key(at2, p.url(p.gw2))
        bob = await client(p.url(p.gw2), "BOB", "bob-pw")
        try:
            view = await at2.call(
                "GET", "/api/v1/order", symbol="BTC-USD", origClientOrderId="keep-1"
            )
            assert view["orderId"] == placed["orderId"] and view["status"] == "NEW", view
            await bob.call(
                "POST", "/api/v1/order", symbol="BTC-USD", side="SELL", type="LIMIT",
                price="90.00", quantity="1", timeInForce="IOC",
            )  # fmt: skip
            got = [(m.get(11), m.get(150), m.get(39)) for m in await reports_for(fix, 0.6)]
            assert got == [(b"f1", b"F", b"2")], got
            await settled(lambda: not fix.reader or not fix.reader.at_eof(), 0.1)
        finally:
            await at2.close()
            await bob.close()

    run(pair, scenario)


# -- a gateway process killed -------------------------------------------------------------


def two_gateways(instance: str, var: Path) -> Any:
    cfg = config(instance, var)
    gws = [cfg.gateways[0], GatewayConfig(name="gw2", id=2, port=0)]
    return msgspec.structs.replace(cfg, gateways=gws)


def serve_gw2(instance: str, var: str, port_file: str) -> None:
    """gw2 in a process of its own (spawned): it writes its FIX port, then serves."""

    async def main() -> None:
        gw = GatewayServer(two_gateways(instance, Path(var)), "gw2")
        await gw.start()
        written = Path(port_file + ".new")  # renamed whole: the test never reads it half written
        written.write_text(str(gw.port))
        written.replace(port_file)
        await asyncio.Event().wait()

    asyncio.run(main())


def test_a_session_on_a_killed_gateway_logs_on_at_another(instance: str, tmp_path: Path) -> None:
    """ALICE logged on at gw2 (a process) is refused at gw1; gw2 SIGKILLed, the kernel drops
    its lock and gw1 takes her logon at once. Her numbers stay gw2's (README: "its sequence
    numbers and orders live in the gateway it logged on through"): gw1 answers from its own
    store, 34=1, and asks for the messages it never saw."""
    h = Harness(two_gateways(instance, tmp_path))
    h.add_user("ALICE", "secret", 7)
    port_file = tmp_path / "gw2.port"
    child = multiprocessing.get_context("spawn").Process(
        target=serve_gw2, args=(instance, str(tmp_path), str(port_file)), daemon=True
    )

    async def main() -> None:
        port1 = await h.start()
        child.start()
        try:
            await settled(port_file.exists, 20.0)
            assert port_file.exists(), "gw2 did not start"
            first = Client("ALICE")
            await first.connect(int(port_file.read_text()))
            await first.logon()
            await first.send("0")
            refused = Client("ALICE")
            await refused.connect(port1)
            await refused.send("A", (98, 0), (108, 30), (554, "secret"))
            out = await refused.expect("5")
            assert b"already logged on" in out.get(58), out
            assert child.pid is not None
            os.kill(child.pid, signal.SIGKILL)
            await asyncio.get_running_loop().run_in_executor(None, child.join, 5)
            again = Client("ALICE")
            again.seq = first.seq  # the client's own numbers go on
            await again.connect(port1)
            logon = await again.logon()
            assert logon.get(34) == b"1"
            resend = await again.expect("2")
            assert (resend.get(7), resend.get(16)) == (b"1", b"0")
        finally:
            await close_all()
            await h.stop()
            if child.is_alive():
                child.kill()
            child.join(5)

    try:
        asyncio.run(main())
    finally:
        h.close()
