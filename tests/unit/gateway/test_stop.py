"""A gateway's stop: intake closes first, what is in flight is answered, then the sessions
are logged out (``GatewayServer.stop``); a second signal, or the grace running out, stops
at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from procs.gateway.rest import RestApi
from tests.unit.gateway.harness import Harness, settled
from tests.unit.gateway.rest_rig import LIMIT, client, rest_exchange
from tests.unit.gateway.rest_rig import run as run_rest
from tests.unit.gateway.test_gateway import cancel, logged_on, order, run


def test_stop_answers_what_is_in_flight_then_logs_out(harness: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        gw = h.gateway
        assert gw is not None
        c = await logged_on(port)
        await c.send("D", *order("rest", "1", "1.00", "100.00"))
        assert (await c.expect("8")).get(150) == b"0"
        h.pause()
        await c.send("D", *order("o1", "1", "1.00", "100.00"))
        await settled(lambda: gw.in_flight() == 1)
        gw.stop()
        await c.send("D", *order("o2", "1", "1.00", "100.00"))
        refused = await c.expect("8")
        assert (refused.get(11), refused.get(39), refused.get(103)) == (b"o2", b"8", b"2")
        assert b"stopping" in refused.get(58)
        await c.send("G", *cancel("rest", "r1", "1"), (38, "2.00"), (40, "2"), (44, "100.00"))
        assert b"stopping" in (await c.expect("9")).get(58)
        await c.send("F", *cancel("rest", "c1", "1"))  # cancels are still taken
        with pytest.raises(OSError):  # no new connections
            await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(0.05)
        assert not gw._stop.is_set(), "stopped with requests in flight"
        h.resume()
        answers = {(m.get(11), m.get(150)) for m in [await c.expect("8"), await c.expect("8")]}
        assert answers == {(b"o1", b"0"), (b"c1", b"4")}
        await settled(gw._stop.is_set)
        await gw.shutdown(grace_s=1.0)
        assert b"shutting down" in (await c.expect("5")).get(58)

    run(harness, scenario)


class _CountedWalks(dict):  # type: ignore[type-arg]
    """The order entry's orders, counting the walks over all of them."""

    walks = 0

    def items(self):  # type: ignore[no-untyped-def]
        self.walks += 1
        return super().items()

    def values(self):  # type: ignore[no-untyped-def]
        self.walks += 1
        return super().values()


def test_a_stopping_gateway_walks_its_orders_once_not_every_pass(harness: Harness) -> None:
    """The wait for what is in flight looked at every order each 5 ms (a million live
    orders: 50 ms a walk). No new order comes once intake closes, so it walks them once and
    then follows the orders that were waiting then."""

    async def scenario(h: Harness, port: int) -> None:
        gw = h.gateway
        assert gw is not None
        c = await logged_on(port)
        for k in range(20):  # resting orders: the walk's bulk
            await c.send("D", *order(f"rest{k}", "1", "0.10", "100.00"))
            assert (await c.expect("8")).get(150) == b"0"
        h.pause()
        await c.send("D", *order("o1", "1", "1.00", "100.00"))
        await settled(lambda: gw.in_flight() == 1)
        counted = gw.entry.orders = _CountedWalks(gw.entry.orders)
        gw.stop()
        await asyncio.sleep(0.15)  # about 30 passes of the wait
        assert not gw._stop.is_set()
        h.resume()
        assert (await c.expect("8")).get(11) == b"o1"
        await settled(gw._stop.is_set)
        assert counted.walks <= 2, f"the orders were walked {counted.walks} times"
        await gw.shutdown(grace_s=1.0)

    run(harness, scenario)


@pytest.fixture
def slow_harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    from tests.unit.gateway.harness import config  # noqa: PLC0415

    h = Harness(config(instance, tmp_path, stop_grace_s=0.3))
    h.add_user("ALICE", "secret", 7)
    h.fund(7)
    yield h
    h.close()


def test_stop_waits_no_longer_than_its_grace_and_a_second_stop_not_at_all(
    slow_harness: Harness,
) -> None:
    async def scenario(h: Harness, port: int) -> None:
        gw = h.gateway
        assert gw is not None
        c = await logged_on(port)
        h.pause()  # nothing will answer
        await c.send("D", *order("o1", "1", "1.00", "100.00"))
        await settled(lambda: gw.in_flight() == 1)
        began = time.monotonic()
        gw.stop()
        gw.stop()  # its echo (a parent-death signal comes once per thread of the parent)
        assert not gw._stop.is_set()  # ignored: the grace goes on
        await settled(gw._stop.is_set)
        assert 0.25 <= time.monotonic() - began < 2.0
        gw._stop.clear()  # as if it were still closing: a second signal ends the wait
        await asyncio.sleep(max(0.0, 0.55 - (time.monotonic() - began)))  # not an echo
        gw.stop()
        assert gw._stop.is_set()
        h.resume()

    run(slow_harness, scenario)


@pytest.fixture
def rest_harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


def test_rest_refuses_new_orders_while_stopping_and_takes_cancels(rest_harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        gw = rest_harness.gateway
        assert gw is not None
        alice = await client(url, "ALICE", "alice-pw")
        try:
            placed = await alice.call("POST", "/api/v1/order", **LIMIT, price="100.00",
                                      quantity="0.10")  # fmt: skip
            rest_harness.pause()
            pending = asyncio.ensure_future(
                alice.call("POST", "/api/v1/order", **LIMIT, price="99.00", quantity="0.10")
            )
            await settled(lambda: gw.in_flight() == 1)
            gw.stop()
            status, body = await alice.request(
                "POST", "/api/v1/order", **LIMIT, price="100.00", quantity="0.10"
            )
            assert status == 503 and "stopping" in body["msg"], body
            cancelled = asyncio.ensure_future(
                alice.call("DELETE", "/api/v1/order", symbol="BTC-USD", orderId=placed["orderId"])
            )
            await settled(lambda: gw.in_flight() == 2)
            assert not gw._stop.is_set()
            rest_harness.resume()
            assert (await pending)["status"] == "NEW"
            assert (await cancelled)["status"] == "CANCELED"
            await settled(gw._stop.is_set)
        finally:
            await alice.close()

    run_rest(rest_harness, scenario)


def test_a_rest_request_unanswered_at_the_stop_gets_504_not_a_hung_stop(
    rest_harness: Harness,
) -> None:
    """The poll that answers REST requests ends with the stop; aiohttp's cleanup then
    waited on a handler awaiting its answer, until ``kill_when_orphaned`` or the
    supervisor's 20 s SIGKILL (review of the flaky run-again test). It gets 504 now: it may
    still execute (review 66)."""

    async def scenario(api: RestApi, url: str) -> None:
        gw = rest_harness.gateway
        assert gw is not None
        alice = await client(url, "ALICE", "alice-pw")
        try:
            rest_harness.pause()  # nothing will answer
            pending = asyncio.ensure_future(
                alice.request("POST", "/api/v1/order", **LIMIT, price="99.00", quantity="0.10")
            )
            await settled(lambda: gw.in_flight() == 1)
            gw.stop()
            await settled(gw._stop.is_set, 10)  # the grace ran out: what ``run`` does next
            began = time.monotonic()
            stopping = asyncio.ensure_future(gw.shutdown(grace_s=0.2))
            status, body = await asyncio.wait_for(pending, 15)
            assert status == 504 and "may still execute" in body["msg"], body
            await asyncio.wait_for(stopping, 15)
            assert time.monotonic() - began < 5  # not aiohttp's wait on the handler
            rest_harness.gateway = None  # shut down here
        finally:
            rest_harness.resume()
            await alice.close()

    run_rest(rest_harness, scenario)
