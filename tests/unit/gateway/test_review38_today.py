"""Review of the change since 725adb1: the waiters' timeouts on one timer (``deadlines.py``),
the fast lane's hand-split query (``plain_query``), a stopping gateway following only the new
orders pending when intake closed (``OrderEntry.pending_new``), ``bench_rest.pin_plan``.

Three tests showed faults of the change, fixed since (a Deadlines used on a second loop,
one timeout that raises stopping the others, a CPU the pin plan left idle); the others pin
what was checked and held."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httptools
import pytest
from aiohttp import http_parser
from multidict import CIMultiDict, CIMultiDictProxy

from procs.gateway import api_errors as codes
from procs.gateway.api_errors import ApiError
from procs.gateway.deadlines import Deadlines
from procs.gateway.fast_request import FastRequest
from procs.gateway.rest import RestApi
from procs.gateway.rest_order_state import Outcome
from tests.bench.bench_rest import pin_plan
from tests.unit.gateway.harness import Harness, config, settled
from tests.unit.gateway.rest_rig import rest_exchange
from tests.unit.gateway.rest_rig import run as run_rest
from tests.unit.gateway.test_gateway import logged_on, order, run

# -- 1. Deadlines ------------------------------------------------------------------------------


def test_deadlines_used_on_a_second_loop_still_time_out() -> None:
    deadlines = Deadlines()

    async def first() -> None:  # one request, answered at once: the timer stays armed
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        deadlines.add(future, 0.05)
        deadlines.discard(future)

    async def second() -> bool:
        await asyncio.sleep(0.1)  # the first loop's timer time has passed
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        deadlines.add(future, 0.05)
        try:
            await asyncio.wait_for(asyncio.shield(future), 0.5)
        except TimeoutError:
            return future.done()  # wait_for's timeout, not the deadline's
        return True

    asyncio.run(first())
    assert asyncio.run(second()), "a 50 ms deadline had not fired after 500 ms"


def test_one_failing_timeout_does_not_stop_the_others() -> None:
    deadlines = Deadlines()
    old = asyncio.new_event_loop()
    stale: asyncio.Future[int] = old.create_future()
    stale.add_done_callback(lambda f: None)  # its task's wakeup, as a waiter has

    async def arm() -> None:
        deadlines.add(stale, 0.2)

    old.run_until_complete(arm())
    old.close()  # the loop ends with the request still waiting

    async def main() -> tuple[bool, list[str]]:
        loop = asyncio.get_running_loop()
        errors: list[str] = []
        loop.set_exception_handler(lambda _loop, ctx: errors.append(str(ctx.get("exception"))))
        early: asyncio.Future[int] = loop.create_future()
        later: asyncio.Future[int] = loop.create_future()
        deadlines.add(early, 0.05)  # before the stale one's deadline: armed on this loop
        deadlines.add(later, 0.4)
        await asyncio.sleep(0.9)
        assert isinstance(early.exception(), TimeoutError)
        return later.done(), errors

    try:
        later_done, errors = asyncio.run(main())
    finally:
        if stale.done():
            stale.exception()  # retrieved: no "never retrieved" log at collection
    assert later_done, f"a 0.4 s deadline had not fired after 0.9 s; the timer raised {errors}"


@pytest.fixture
def rest_harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


def test_rest_waits_end_each_at_its_deadline_answered_or_cancelled(
    rest_harness: Harness,
) -> None:
    """``RestApi.wait`` on the real gateway's loop: different timeouts each end at their own
    (the shorter added after the longer), an answer through ``after_batch`` wins, a cancelled
    waiter leaves no deadline, and nothing is left behind."""

    async def scenario(api: RestApi, url: str) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        refs = [api.core.next_ref() for _ in range(4)]  # never sent: only a timeout ends them
        ended: dict[str, tuple[str, float]] = {}

        async def waiter(name: str, ref: int, timeout_s: float) -> None:
            try:
                await api.wait(ref, timeout_s)
                got = "answered"
            except ApiError as exc:
                assert exc.status == 504 and exc.body()["code"] == codes.TIMEOUT
                got = "timeout"
            ended[name] = (got, loop.time() - start)

        long = loop.create_task(waiter("long", refs[0], 0.4))
        short = loop.create_task(waiter("short", refs[1], 0.15))
        gone = loop.create_task(waiter("cancelled", refs[2], 0.1))
        answered = loop.create_task(waiter("answered", refs[3], 0.2))
        await asyncio.sleep(0.05)
        gone.cancel()
        api.core.completed.append((refs[3], Outcome()))
        api.after_batch()
        await asyncio.gather(long, short, answered)
        assert gone.cancelled()
        assert {k: v[0] for k, v in ended.items()} == {
            "long": "timeout",
            "short": "timeout",
            "answered": "answered",
        }
        assert 0.14 <= ended["short"][1] < ended["long"][1]  # never before its deadline
        assert ended["long"][1] >= 0.39
        assert len(api.deadlines) == 0 and not api.waiters

    run_rest(rest_harness, scenario)


# -- 2. the fast lane's query --------------------------------------------------------------------

#: Every byte llhttp lets into a query (printable ASCII), the ones the split turns on first.
_QUERY_BYTES = "&=;?+%#/ab" + "".join(map(chr, range(0x21, 0x7F)))


class _Url:
    def __init__(self) -> None:
        self.url = b""

    def on_url(self, url: bytes) -> None:
        self.url += url


def _target_of(raw: bytes) -> str | None:
    """The target as the fast lane takes it off httptools (None: httptools refuses it)."""
    seen = _Url()
    try:
        httptools.HttpRequestParser(seen).feed_data(raw)
    except httptools.HttpParserError:
        return None
    return seen.url.decode("utf-8", "surrogateescape")


def test_the_fast_lanes_query_is_aiohttps_for_every_target_httptools_passes() -> None:
    """What aiohttp's own parser makes of the same request line (its ``request.query`` and
    the raw query a signature covers), over random queries of every byte llhttp takes; and
    llhttp takes no other byte in a query (tab, CR, LF, controls, DEL, non-ASCII, space), so
    ``plain_query`` never sees the bytes yarl would strip or decode differently."""

    async def main() -> int:
        proto: Any = type("Proto", (), {"transport": None})()
        parser = http_parser.HttpRequestParser(
            proto, asyncio.get_running_loop(), 2**16, max_line_size=8190, max_field_size=8190
        )
        rng = random.Random(38)
        compared = 0
        for _ in range(3_000):
            query = "".join(rng.choice(_QUERY_BYTES) for _ in range(rng.randint(0, 16)))
            raw = f"DELETE /api/v1/order?{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            target = _target_of(raw)
            assert target is not None, query
            messages, _, _ = parser.feed_data(raw)
            url = messages[0][0].url
            fast = FastRequest("DELETE", target, CIMultiDictProxy(CIMultiDict()), b"", None, True)
            assert list(fast.query.items()) == list(url.query.items()), query
            if "#" not in query:
                assert fast.raw_path.partition("?")[2] == url.raw_query_string, query
            compared += 1
        return compared

    assert asyncio.run(main()) == 3_000
    for byte in [*range(0x21), *range(0x7F, 0x100)]:
        raw = b"DELETE /api/v1/order?a=x" + bytes([byte]) + b"y HTTP/1.1\r\nHost: x\r\n\r\n"
        assert _target_of(raw) is None, byte


# -- 3. a stopping gateway follows the new orders pending when intake closed ----------------------


def test_stop_waits_for_the_cancel_on_disconnect_of_an_order_pending_at_the_snapshot(
    instance: str, tmp_path: Path
) -> None:
    """An order pending when intake closes, whose session drops meanwhile (cancel on
    disconnect): once accepted it leaves the snapshot, and its cancel is made in the same step,
    so the stop waits for that cancel too; the order is not left open on the book."""
    h = Harness(config(instance, tmp_path, cancel_on_disconnect=True))
    h.add_user("ALICE", "secret", 7)
    h.fund(7)

    async def scenario(h: Harness, port: int) -> None:
        gw = h.gateway
        assert gw is not None
        c = await logged_on(port)
        h.pause()
        await c.send("D", *order("o1", "1", "1.00", "90.00"))
        await settled(lambda: gw.in_flight() == 1)
        gw.stop()
        await c.send("D", *order("o2", "1", "1.00", "90.00"), poss_dup=True)  # not taken
        await asyncio.sleep(0.02)
        c.close()
        await settled(lambda: not gw.entry.sessions)
        await asyncio.sleep(0.05)
        assert not gw._stop.is_set(), "stopped with o1 unanswered"
        h.resume()
        await settled(gw._stop.is_set)
        assert gw._stop.is_set()
        assert not gw.entry.requests and gw.in_flight() == 0
        assert not h.router.sequencer.accounts.open_orders(7), "o1 left open on the book"
        assert [o.cl_ord_id for o in gw.entry.orders.values()] == [], "o2 was taken"

    try:
        run(h, scenario)
    finally:
        h.close()


# -- 4. bench_rest --pin -------------------------------------------------------------------------


def test_pin_plan_leaves_no_cpu_idle() -> None:
    plan = pin_plan(["router", "matcher", "gateway"], [0, 1, 2])
    used = {cpu for cpus in plan.values() for cpu in cpus}
    assert used == {0, 1, 2}, plan


def test_pin_plan_gives_each_gateway_its_own_cpu_when_there_are_enough() -> None:
    names = ["router", "matcher", "gateway", "gateway2"]
    plan = pin_plan(names, list(range(8)))
    gateways = [plan["gateway"][0], plan["gateway2"][0]]
    others = {plan[n][0] for n in ("router", "matcher", "client")}
    assert len(set(gateways)) == 2 and not set(gateways) & others
    assert plan["bench"] == plan["client"]
    assert pin_plan(names, [0]) == {}
