"""Review 42: a REST order's deadline (``rest.py`` ``wait``, ``deadlines.py``) against what the
exchange did with the order: its answer behind other gateways' events in the gateway's
input ring, its command held back by a full router ring, an exchange that has not answered
yet. What a 504 says, and what the client can do after it (ask for the order, list the open
orders, cancel, send it again), each checked against what the order then does.

The exchange is the harness's, stepped by the test: ``h.pause()`` holds every command
unanswered (a stalled exchange: each request reaches its deadline), ``h.step_pipeline()``
runs the router and matcher once, synchronously (nothing of the gateway runs meanwhile).

Faults found, each fixed (its test failed before):

- the deadline fired while the order's answer waited unread behind another gateway's 16,000
  events (the timer runs between passes of ``EVENTS_PER_PASS``): a 504 for an order the
  exchange had accepted in time; now a deadline waits until the rings are read through
  what they held then (``Deadlines.behind``, ``GatewayServer._unread``);
- a cancel by the ``origClientOrderId`` of an order not answered yet (orderId 0) was told
  the order does not exist (-2013); now -2011, naming its state;
- ``openOrders`` left out an order GET called open (PENDING_NEW); now listed after the
  answered ones;
- a 504 for an order sent without ``newClientOrderId`` named no id to ask its status by;
  now it names the generated ``origClientOrderId``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import uvloop

from config.edges import RestConfig
from config.schema import DatabaseConfig, RingConfig
from procs.common.records import NewOrder, Record
from procs.common.types import OrdType, Side, StpMode, TimeInForce
from procs.gateway import api_errors as codes
from procs.gateway.deadlines import RESOLUTION_S, Deadlines
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import RestClient
from procs.gateway.server import EVENTS_PER_PASS
from tests.unit.gateway.harness import FUNDER, Harness, config
from tests.unit.gateway.rest_rig import ALICE, BOB, client, reports, run

#: The order timeout of these exchanges (s): short, so that a test waits for it.
TIMEOUT_S = 0.2
BID: dict[str, Any] = {
    "symbol": "BTC-USD", "side": "BUY", "type": "LIMIT", "price": "100.00", "quantity": "0.01"
}  # fmt: skip


def exchange(instance: str, tmp_path: Path, capacity: int) -> Harness:
    """ALICE with dollars, BOB with bitcoin; REST orders time out after ``TIMEOUT_S``;
    rings of ``capacity``; no open-order limit in the way of thousands of IOCs in flight."""
    rest = RestConfig(
        port=0, key_rate_per_s=1_000, key_burst=1_000, login_rate_per_s=100, login_burst=100,
        order_timeout_s=TIMEOUT_S,
    )  # fmt: skip
    cfg = config(instance, tmp_path, rest=rest)
    risk = msgspec.structs.replace(cfg.risk, max_open_orders=1_000_000)
    matchers = [msgspec.structs.replace(m, batch=16) for m in cfg.matchers]
    cfg = msgspec.structs.replace(
        cfg, ring=RingConfig(capacity=capacity), risk=risk, matchers=matchers,
        database=DatabaseConfig(enabled=False),
    )  # fmt: skip
    h = Harness(cfg)
    h.add_user("ALICE", "alice-pw", ALICE)
    h.add_user("BOB", "bob-pw", BOB)
    h.fund(ALICE, usd=10**12, btc=0)
    h.fund(BOB, usd=0, btc=10**12)
    return h


@pytest.fixture
def wide(instance: str, tmp_path: Path) -> Iterator[Harness]:
    """Rings of 32k: room for 16k events of another gateway ahead of ALICE's."""
    h = exchange(instance, tmp_path, 1 << 15)
    yield h
    h.close()


@pytest.fixture
def narrow(instance: str, tmp_path: Path) -> Iterator[Harness]:
    """Rings of 64: a few dozen orders fill the gateway's command ring."""
    h = exchange(instance, tmp_path, 64)
    yield h
    h.close()


def foreign_iocs(n: int) -> list[Record]:
    """``n`` IOC sells of BOB through another gateway (the admin's), at a price nothing
    meets: an Accepted and an OrderDone each in the matcher's output ring, none ALICE's."""
    return [foreign_ioc(1_000_000 + k) for k in range(n)]


def foreign_ioc(ref: int) -> NewOrder:
    return NewOrder(
        *(0, time.time_ns(), FUNDER, 1, ref, BOB, 1, 0), side=Side.SELL, ord_type=OrdType.LIMIT,
        tif=TimeInForce.IOC, flags=0, stp=StpMode.NONE, price=20_000, qty=1, stop_price=0,
        display_qty=0,
    )  # fmt: skip


async def deadline_passed(api: RestApi, n: int = 1) -> None:
    """Until ``n`` requests wait, then until every one of them is past its deadline."""
    while len(api.deadlines) < n:
        await asyncio.sleep(0.001)
    await asyncio.sleep(TIMEOUT_S + 2 * RESOLUTION_S)


async def alice(url: str) -> RestClient:
    c = await client(url, "ALICE", "alice-pw")
    await c.call("GET", "/api/v1/openOrders")  # of interest from here on
    return c


async def order_by_cid(c: RestClient, cid: str) -> tuple[int, Any]:
    return await c.request("GET", "/api/v1/order", symbol="BTC-USD", origClientOrderId=cid)


async def answered(c: RestClient, cid: str) -> dict[str, Any]:
    """The order ``cid`` once the exchange's answer to it is read (at most 3 s: an idle
    gateway may nap a while before the ring's record wakes it)."""
    deadline = time.monotonic() + 3
    while True:
        _, body = await order_by_cid(c, cid)
        if body.get("status") != "PENDING_NEW" or time.monotonic() > deadline:
            return body  # type: ignore[no-any-return]
        await asyncio.sleep(0.02)


async def settled_open(c: RestClient, n: int) -> list[dict[str, Any]]:
    """ALICE's open orders once there are ``n`` the exchange has answered (at most 3 s; the
    list holds those not answered yet too, PENDING_NEW)."""
    deadline = time.monotonic() + 3
    while True:
        opened: list[dict[str, Any]] = await c.call("GET", "/api/v1/openOrders", symbol="BTC-USD")
        answered = [o for o in opened if o["status"] != "PENDING_NEW"]
        if len(answered) >= n or time.monotonic() > deadline:
            return opened
        await asyncio.sleep(0.02)


def answer_behind(h: Harness, foreign: int) -> tuple[int, Any, dict[str, float]]:
    """ALICE's order, its Accepted put in the gateway's matcher ring behind ``foreign``
    IOCs of another gateway (twice as many events) while the gateway reads nothing; then
    the gateway reads again, its first pass taking until past the order's deadline (a pass
    slow for whatever reason: the deadline falls while events wait). Its answer, and the
    clock: when the gateway could read again, the order's deadline, the ring's lag then."""
    got: list[tuple[int, Any]] = []
    seen: dict[str, float] = {}

    async def scenario(api: RestApi, url: str) -> None:
        gw = h.gateway
        assert gw is not None
        c = await alice(url)
        h.pause()
        inputs, gw.inputs = gw.inputs, []  # the gateway reads nothing for now
        h.funder.publish_batch(foreign_iocs(foreign))
        h.step_pipeline()
        h.funder_replies.read(1 << 16)
        loop = asyncio.get_running_loop()
        post = asyncio.create_task(c.request("POST", "/api/v1/order", newClientOrderId="b1", **BID))
        while not api.waiters or gw.entry.outgoing:
            await asyncio.sleep(0)
        h.step_pipeline()  # ALICE's Accepted now in the ring, behind the foreign events
        due = max(api.deadlines._due.values())
        core, process = api.core, api.core.process
        slept = False

        def slow_first(event: Record) -> None:
            nonlocal slept
            if not slept:
                slept = True
                core.process = process  # type: ignore[method-assign]
                time.sleep(max(0.0, due - loop.time()) + 2 * RESOLUTION_S)
            process(event)

        core.process = slow_first  # type: ignore[method-assign]
        seen.update(at=loop.time(), due=due)
        seen["lag"] = max(i.ring.cursor() - i.sequence for i in inputs)
        gw.inputs = inputs
        got.append(await post)
        h.resume()
        got.append((200, await answered(c, "b1")))
        await c.close()

    run(h, scenario)
    (status, body), (_, later) = got
    return status, (body, later), seen


def test_an_answer_behind_foreign_events_in_the_ring_is_not_timed_out(wide: Harness) -> None:
    status, (body, later), seen = answer_behind(wide, 8_000)
    assert seen["at"] < seen["due"]  # it could read the answer before the deadline
    assert seen["lag"] > 2 * EVENTS_PER_PASS  # more than two passes ahead of it
    assert later["status"] == "NEW" and later["orderId"] > 0  # the exchange took it
    assert (status, body["status"] if status == 200 else body) == (200, "NEW")


def test_an_answer_read_in_the_pass_the_deadline_falls_in_wins(wide: Harness) -> None:
    """Right: the answer read in the same pass as the deadline passes is the answer (the
    timer cannot run inside a pass, and finds the future done)."""
    status, (body, later), seen = answer_behind(wide, 1_000)
    assert seen["at"] < seen["due"] and seen["lag"] < EVENTS_PER_PASS
    assert status == 200 and body["orderId"] == later["orderId"] > 0


Scenario = Callable[[RestApi, str, RestClient], Awaitable[None]]


def stalled(h: Harness, scenario: Scenario) -> None:
    """``scenario`` with ALICE logged in and the exchange answering nothing until it calls
    ``h.resume()``."""

    async def main(api: RestApi, url: str) -> None:
        c = await alice(url)
        h.pause()
        try:
            await scenario(api, url, c)
        finally:
            await c.close()

    run(h, main)


def test_after_a_504_the_order_is_found_by_its_client_id_and_not_sent_twice(
    wide: Harness,
) -> None:
    """Right: the 504 comes no sooner than the timeout and says the order may still execute;
    meanwhile GET by clientOrderId finds it PENDING_NEW and a resend under the same id is
    refused (-2010); once the exchange answers, GET, the stream and openOrders agree on one
    NEW order with its orderId."""

    async def scenario(api: RestApi, url: str) -> None:
        c = await alice(url)
        ws = await c.stream()
        assert (await ws.receive_json(timeout=2))["event"] == "snapshot"
        wide.pause()
        start = time.monotonic()
        status, body = await c.request("POST", "/api/v1/order", newClientOrderId="c1", **BID)
        assert time.monotonic() - start >= TIMEOUT_S
        assert (status, body["code"]) == (504, codes.TIMEOUT) and "may still execute" in body["msg"]
        status, pending = await order_by_cid(c, "c1")
        assert (status, pending["status"], pending["orderId"]) == (200, "PENDING_NEW", 0)
        status, again = await c.request("POST", "/api/v1/order", newClientOrderId="c1", **BID)
        assert (status, again["code"]) == (400, codes.NEW_ORDER_REJECTED), again
        wide.resume()
        found = await answered(c, "c1")
        assert found["status"] == "NEW" and found["orderId"] > 0
        opened = await c.call("GET", "/api/v1/openOrders", symbol="BTC-USD")
        assert [(o["orderId"], o["clientOrderId"]) for o in opened] == [(found["orderId"], "c1")]
        news = [r for r in await reports(ws, 0.3) if r.get("executionType") == "NEW"]
        assert [(r["orderId"], r["clientOrderId"]) for r in news] == [(found["orderId"], "c1")]
        await ws.close()
        await c.close()

    run(wide, scenario)


def test_a_cancel_after_a_504_is_not_told_the_pending_order_does_not_exist(
    wide: Harness,
) -> None:
    async def scenario(api: RestApi, url: str, c: RestClient) -> None:
        status, _ = await c.request("POST", "/api/v1/order", newClientOrderId="d1", **BID)
        assert status == 504
        _, pending = await order_by_cid(c, "d1")
        assert pending["status"] == "PENDING_NEW"
        status, cancel = await c.request(
            "DELETE", "/api/v1/order", symbol="BTC-USD", origClientOrderId="d1"
        )
        wide.resume()
        later = await answered(c, "d1")
        assert later["status"] == "NEW"  # alive: whatever the cancel said
        assert cancel.get("code") != codes.NO_SUCH_ORDER, cancel

    stalled(wide, scenario)


def test_open_orders_after_a_504_list_the_order_get_calls_open(wide: Harness) -> None:
    async def scenario(api: RestApi, url: str, c: RestClient) -> None:
        status, _ = await c.request("POST", "/api/v1/order", newClientOrderId="e1", **BID)
        assert status == 504
        _, pending = await order_by_cid(c, "e1")
        assert pending["status"] == "PENDING_NEW"
        listed = await c.call("GET", "/api/v1/openOrders", symbol="BTC-USD")
        wide.resume()
        await answered(c, "e1")
        after = await c.call("GET", "/api/v1/openOrders", symbol="BTC-USD")
        assert [o["clientOrderId"] for o in after] == ["e1"]
        assert [o["clientOrderId"] for o in listed] == ["e1"]

    stalled(wide, scenario)


def test_a_504_names_the_client_order_id_it_generated(wide: Harness) -> None:
    async def scenario(api: RestApi, url: str, c: RestClient) -> None:
        status, body = await c.request("POST", "/api/v1/order", **BID)
        assert status == 504
        wide.resume()
        await settled_open(c, 1)
        opened = await c.call("GET", "/api/v1/openOrders", symbol="BTC-USD")
        assert len(opened) == 1
        cid = opened[0]["clientOrderId"]
        assert body.get("clientOrderId") == cid or cid in body["msg"], (cid, body)

    stalled(wide, scenario)


def test_orders_timed_out_behind_a_full_router_ring_each_execute_once(narrow: Harness) -> None:
    """Right: with the gateway's command ring (64) full, 80 orders all time out, some never
    published; each is found PENDING_NEW, a resend of a held one is refused, and once the
    exchange moves every one is NEW once: none lost, none twice."""
    n = 80

    async def scenario(api: RestApi, url: str, c: RestClient) -> None:
        gw = narrow.gateway
        assert gw is not None
        many = RestClient(url, connections=n)
        many.api_key, many.secret, many.account = c.api_key, c.secret, c.account
        try:
            posts = [
                many.request("POST", "/api/v1/order", newClientOrderId=f"f{k}", **BID)
                for k in range(n)
            ]
            held: list[int] = []

            async def watch() -> None:
                await deadline_passed(api, n)
                held.append(len(gw.entry.outgoing))

            answers, _ = await asyncio.gather(asyncio.gather(*posts), watch())
        finally:
            await many.close()
        assert held[0] > 0  # some never reached the router's ring when they timed out
        assert {(s, b["code"]) for s, b in answers} == {(504, codes.TIMEOUT)}
        _, last = await order_by_cid(c, f"f{n - 1}")
        assert last["status"] == "PENDING_NEW"
        last_id = f"f{n - 1}"
        status, again = await c.request("POST", "/api/v1/order", newClientOrderId=last_id, **BID)
        assert (status, again["code"]) == (400, codes.NEW_ORDER_REJECTED)
        narrow.resume_paced()
        opened = await settled_open(c, n)
        assert sorted(o["clientOrderId"] for o in opened) == sorted(f"f{k}" for k in range(n))
        assert len({o["orderId"] for o in opened}) == n
        assert {o["status"] for o in opened} == {"NEW"}

    stalled(narrow, scenario)


def test_deadlines_on_uvloop_are_never_early_and_at_most_a_resolution_late() -> None:
    """Right, on the gateway's loop (uvloop, whose timers tick in whole ms): deadlines a
    fraction of a millisecond apart each time out at or after their own, and no later than
    ``RESOLUTION_S`` (the coalescing) and a tick past it."""

    async def main() -> list[tuple[float, float]]:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines()
        out: list[tuple[float, float]] = []

        async def one(timeout_s: float) -> None:
            future: asyncio.Future[int] = loop.create_future()
            start = time.monotonic()
            deadlines.add(future, timeout_s)
            try:
                await future
            except TimeoutError:
                out.append((timeout_s, time.monotonic() - start))
            finally:
                deadlines.discard(future)

        await asyncio.gather(*(one(0.02 + k * 0.0003) for k in range(60)))
        return out

    ends = uvloop.run(main())
    assert len(ends) == 60
    early = [(due, took) for due, took in ends if took < due - 0.001]  # uvloop's ms clock
    # a tick past the coalescing, and what a loaded host's scheduling adds (~50 ms seen with
    # both cores busy): a deadline missed by a whole group would be seconds late
    late = [(due, took) for due, took in ends if took > due + RESOLUTION_S + 0.25]
    assert early == [] and late == [], (early, late)
