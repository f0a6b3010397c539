"""Review 202: a hostile review of the private stream's order against the account's REST
answers and FIX execution reports, as a Binance user-data stream is read (an
``executionReport``, then the ``outboundAccountPosition`` its settlement caused).

Reviewed: ``procs/gateway/private_stream.py`` (``_snapshot``, ``deliver``),
``stream_subscriber.py`` (``begin``, ``push``, ``seq``), ``rest.py`` (``after_batch``),
``rest_orders.py`` (``process``, ``_report``), ``rest_balances.py`` (``_balance``) and the
gateway's event poll (``server.py``: ``pump``, ``start``'s ring list), against README's "The
REST API and the private stream" and the module docstrings. What reviews 9, 16, 33, 44, 195
and 198 pin already (slow consumers, held events behind a slow snapshot, FIX orders in flight
at a subscription, withdrawals, fees) was not repeated.

Rig: ``rest_rig.py``'s exchange (real HTTP, WebSocket and FIX over TCP in front of real
rings, an in-process router and matcher stepped in the test's loop), ALICE (601, dollars),
BOB (602, bitcoin) and CAROL (603, both, trading with nobody), the rig's stream limits
raised (eight streams, a queue of 10,000) so that several streams of one account can follow
a flow of orders. The harness steps the router and the matcher to idle before the gateway's
poll reads anything, so the router's balance pushes are always on the gateway's reply ring
when it reads the matcher's events: the order the faults below show is the one a loaded
gateway gets whenever the router settles before its poll comes round.

Faults found (each fixed; its test says what it was):

1. ``procs/gateway/server.py:436-438`` (``start``: the reply ring is the first of
   ``inputs``) with ``server.py:303-316`` (``pump`` processes the rings in that order) and
   ``rest_balances.py:150-153`` (``_balance`` queues the stream's ``balance`` event as the
   push is read): the router's balance push comes on the gateway's reply ring, the matcher's
   event on the matcher's ring, and the gateway processes the reply ring first in every pass.
   So a ``balance`` event reaches the stream BEFORE the ``executionReport`` of the event that
   moved it: a new order's hold before its NEW, a fill's settlement before its TRADE (maker
   and taker, REST and FIX orders alike), a cancel's release before its CANCELED, an IOC's,
   a market order's and a triggered stop's balances before their reports. A client folding
   the stream sees, for a moment, money released from an order still shown open, or a fill
   paid for before it happened. Expected (Binance: executionReport, then
   outboundAccountPosition): the reports of a pass first. Fix: deliver a pass's balance
   events after its reports (in ``RestApi.after_batch``, or by processing the reply ring's
   records of a pass after the matchers' rings; every matcher event the router applied
   before its push, through its label ``Balance.seq``, is on the matchers' rings by then,
   so only a matcher ring cut short by ``EVENTS_PER_PASS`` needs its pushes labelled past
   its last read seq held to the next pass). Tests:
   ``test_a_rest_orders_reports_come_before_the_balances_they_moved``,
   ``test_a_fix_orders_reports_come_before_the_balances_they_moved``,
   ``test_market_ioc_and_stop_reports_come_before_the_balances_they_moved``.
2. ``procs/gateway/private_stream.py:305-309`` (``_snapshot``): the events held while the
   snapshot waits are dropped only for the orders the snapshot lists; but the snapshot is
   made from the live state after every held event, so a held fill of an order that it
   ended (FILLED, no longer listed) is in the snapshot already (the order gone from
   ``openOrders``, its proceeds in the balances) and is reported after it as well: a
   ``TRADE`` of an order the client was never shown, which a client counting fills from
   its snapshot counts twice. Scenario: ALICE's FIX bid rests, BOB's IOC sell fills it while
   ALICE's first stream waits for the router's balances. Expected: nothing in the snapshot
   is reported after it. Fix: drop every held ``executionReport`` the live state includes
   (all of them, as the method's docstring argues for the ones shown), or make the snapshot
   as of before them. Test: ``test_a_fill_held_behind_the_snapshot_is_not_in_it_twice``.

Found sound (plain tests):

- streams subscribed while REST and FIX orders, fills and cancels of one account flow (five
  subscriptions at different moments of the flow): each starts with a snapshot at seq 1,
  ``seq`` gapless, no order both in the snapshot and reported NEW after it, no fill doubled
  or of an order never shown; each, folded, equals ``openOrders`` and ``GET account`` (both
  the router's) once the flow ends
  (``test_checked_streams_subscribed_while_orders_flow_fold_to_the_rest_answers``);
- two streams of one account (two keys) subscribed before the flow see exactly the same
  messages, ``seq`` included; the counterparty's stream sees only its own orders and
  balances, and a third account's stream nothing but its snapshot; the stream's reports of
  a FIX order say what its session's ExecutionReports say (NEW, TRADE, CANCELED against
  150=0, F, 4, the same cumulative quantities)
  (``test_checked_two_streams_of_one_account_see_one_sequence_and_others_nothing``).

Leads, not faults: the harness cannot interleave the router and the gateway mid-pass, so
fault 1 across two passes (a matcher ring cut by ``EVENTS_PER_PASS`` while the router's push
is read, or a new order's hold read before the matcher published its NEW) is argued from
the code, not shown; the fix orders a pass's events, and the README says a hold may come
before its NEW.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from config.schema import RingexConfig
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import RestClient
from tests.unit.gateway.harness import Client, Harness, settled
from tests.unit.gateway.rest_rig import (
    ALICE,
    LIMIT,
    client,
    fix_user,
    rest_exchange,
    run,
    stream_messages,
)
from tests.unit.gateway.test_gateway import cancel, order
from tests.unit.gateway.test_review192_exec_reports import fields, quiet
from tests.unit.gateway.test_review195_channels import (
    ACCOUNT,
    OPEN,
    ORDER,
    SELL,
    fix_bid,
    fold,
    rest_bid,
    router_balances,
    shown_balances,
    subscribed,
)
from tests.unit.gateway.test_review198_private_stream import counted

CAROL = 603  # funded in both assets; trades with nobody


def _roomy(cfg: RingexConfig) -> RingexConfig:
    """The rig's config with room for several streams of one account and a flow's backlog."""
    gw = cfg.gateways[0]
    assert gw.rest is not None
    rest = msgspec.structs.replace(gw.rest, max_streams=8, stream_queue=10_000)
    return msgspec.structs.replace(cfg, gateways=[msgspec.structs.replace(gw, rest=rest)])


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    for h in rest_exchange(instance, tmp_path, reshape=_roomy):
        h.add_user("CAROL", "carol-pw", CAROL)
        h.fund(CAROL)
        yield h


def events(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The account's events (heartbeats, which carry no ``seq``, left out)."""
    return [m for m in messages if m["event"] != "heartbeat"]


async def drained(
    ws: aiohttp.ClientWebSocketResponse, limit_s: float = 10.0
) -> list[dict[str, Any]]:
    """The stream's messages until it stays silent for 0.5 s (at most ``limit_s``: a loaded
    host is slow)."""
    out: list[dict[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + limit_s
    while asyncio.get_running_loop().time() < deadline:
        got = await stream_messages(ws, 0.5)
        if not got:
            break
        out += got
    return out


async def action(ws: aiohttp.ClientWebSocketResponse, at_least: int) -> list[str]:
    """The kinds of the stream's next events (``at_least`` of them, then any more within
    0.3 s): ``report`` or ``balance``."""
    got = events(await counted(ws, at_least))
    return ["report" if m["event"] == "executionReport" else m["event"] for m in got]


def reports_first(kinds: list[str]) -> bool:
    """Whether an action's events open with its report: no balance before the report of the
    order event that moved it (Binance: executionReport, then outboundAccountPosition)."""
    return bool(kinds) and kinds[0] == "report" and "balance" in kinds


# -- fault 1: a balance event before the report of what moved it -----------------------------


def test_a_rest_orders_reports_come_before_the_balances_they_moved(harness: Harness) -> None:
    """ALICE bids 0.30 at 100.00 over REST (a hold), BOB sells 0.10 into it (a partial fill,
    ALICE the maker), ALICE cancels the rest (its hold released). Expected: on ALICE's
    stream, each action's events open with its executionReport (NEW, TRADE, CANCELED), the
    balance events after it. Was (fixed): each action's ``balance`` comes first."""

    async def scenario(api: RestApi, url: str) -> None:
        alice, bob = await client(url, "ALICE", "alice-pw"), await client(url, "BOB", "bob-pw")
        try:
            ws = await subscribed(alice)
            oid = await rest_bid(alice, "100.00", "0.30")
            placed = await action(ws, 2)
            await bob.call("POST", ORDER, **SELL, price="100.00", quantity="0.10")
            filled = await action(ws, 3)
            await alice.call("DELETE", ORDER, symbol="BTC-USD", orderId=oid)
            cancelled = await action(ws, 2)
            seen = {"new": placed, "fill": filled, "cancel": cancelled}
            assert all(reports_first(k) for k in seen.values()), seen
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)


def test_a_fix_orders_reports_come_before_the_balances_they_moved(harness: Harness) -> None:
    """ALICE bids 0.30 at 100.00 over FIX, BOB's IOC sell of 0.10 over REST fills part of it,
    ALICE cancels the rest over FIX; ALICE's stream is read as her FIX session is. Expected:
    each action's stream events open with its executionReport, as her session gets its
    ExecutionReport (150=0, F, 4). Was (fixed): the stream's ``balance`` comes first each time."""

    async def scenario(api: RestApi, url: str) -> None:
        alice, bob = await client(url, "ALICE", "alice-pw"), await client(url, "BOB", "bob-pw")
        fix = await fix_user(harness, "ALICE", "alice-pw")
        try:
            ws = await subscribed(alice)
            await fix_bid(fix, "f1", "100.00", "0.30")
            placed = await action(ws, 2)
            await bob.call(
                "POST", ORDER, **SELL, price="100.00", quantity="0.10", timeInForce="IOC"
            )  # fmt: skip
            assert fields(await fix.expect("8"), 150) == (b"F",)
            filled = await action(ws, 3)
            await fix.send("F", *cancel("f1", "c1", "1"))
            assert fields(await fix.expect("8"), 150) == (b"4",)
            cancelled = await action(ws, 2)
            seen = {"new": placed, "fill": filled, "cancel": cancelled}
            assert all(reports_first(k) for k in seen.values()), seen
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)


def test_market_ioc_and_stop_reports_come_before_the_balances_they_moved(
    harness: Harness,
) -> None:
    """BOB sells 0.10 at market into ALICE's resting bid, then 0.10 IOC at 100.00 into it;
    ALICE places a stop-limit buy (stop 101.00, limit 102.00) and buys 0.10 IOC at 101.00
    from BOB's ask there, which triggers her stop into BOB's ask at 102.00. Expected: on the
    taker's stream each action's events open with a report, and so on ALICE's for the
    trigger. Was (fixed): a ``balance`` opens each."""

    async def scenario(api: RestApi, url: str) -> None:
        alice, bob = await client(url, "ALICE", "alice-pw"), await client(url, "BOB", "bob-pw")
        try:
            await rest_bid(alice, "100.00", "0.20")
            ws, bws = await subscribed(alice), await subscribed(bob)
            market: dict[str, Any] = {"symbol": "BTC-USD", "side": "SELL", "type": "MARKET"}
            assert (await bob.call("POST", ORDER, **market, quantity="0.10"))["status"] == "FILLED"
            by_market = await action(bws, 3)
            ioc = await bob.call(
                "POST", ORDER, **SELL, price="100.00", quantity="0.10", timeInForce="IOC"
            )  # fmt: skip
            assert ioc["status"] == "FILLED"
            by_ioc = await action(bws, 3)
            await stream_messages(ws, 0.3)  # ALICE's side of those: not looked at here
            for price in ("101.00", "102.00"):
                await bob.call("POST", ORDER, **SELL, price=price, quantity="0.10")
            await stream_messages(bws, 0.3)
            await alice.call(
                "POST", ORDER, **{**LIMIT, "type": "STOP_LOSS_LIMIT"}, price="102.00",
                stopPrice="101.00", quantity="0.10", timeInForce="GTC",
            )  # fmt: skip
            await stream_messages(ws, 0.3)  # its NEW and hold (fault 1 as for any order)
            await alice.call(
                "POST", ORDER, **LIMIT, price="101.00", quantity="0.10", timeInForce="IOC"
            )  # fmt: skip
            triggered = await action(ws, 5)
            assert triggered.count("report") >= 4, triggered  # NEW, TRADE; TRIGGERED, TRADE
            seen = {"market": by_market, "ioc": by_ioc, "stop": triggered}
            assert all(reports_first(k) for k in seen.values()), seen
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)


# -- fault 2: a held fill both in the snapshot and after it ----------------------------------


def test_a_fill_held_behind_the_snapshot_is_not_in_it_twice(harness: Harness) -> None:
    """ALICE's FIX bid of 0.10 at 100.00 rests; with the pipeline held, BOB's FIX IOC sell of
    0.10 at 100.00 is sent and ALICE's first stream is asked for (its snapshot waits for the
    router's balances); then the pipeline runs: the fill and the balances come together.
    Expected: whatever the snapshot holds is not reported after it: either it lists the bid
    open and the TRADE follows, or it shows the bid gone and BTC credited and no TRADE
    follows. Was (fixed): the snapshot has BTC 0.10 and no open order, and then comes a TRADE
    (FILLED) of that order, never shown: a client counting fills from the snapshot holds
    0.20 BTC."""

    async def scenario(api: RestApi, url: str) -> None:
        fix = await fix_user(harness, "ALICE", "alice-pw")
        bfix = await fix_user(harness, "BOB", "bob-pw")
        alice = await client(url, "ALICE", "alice-pw")
        try:
            oid = await fix_bid(fix, "f1", "100.00")
            harness.pause()
            await bfix.send("D", *order("s1", "2", "0.10", "100.00", "2", (59, "3")))
            await asyncio.sleep(0.05)  # read by the gateway, published
            subscribing = asyncio.ensure_future(alice.stream())
            await asyncio.sleep(0.1)  # the snapshot waits for the router
            harness.resume()
            ws = await subscribing
            messages = events(await counted(ws, 1, 3.0))
            await ws.close()
            snapshot = messages[0]["data"]
            listed = {o["orderId"] for o in snapshot["openOrders"]}
            credited = shown_balances(snapshot["balances"]).get("BTC", ("0", "0"))[0]
            after = [m["data"] for m in messages[1:] if m["event"] == "executionReport"]
            trades = [r for r in after if r["orderId"] == oid and r["executionType"] == "TRADE"]
            in_snapshot = oid not in listed and Decimal(credited) == Decimal("0.1")
            assert not (in_snapshot and trades), (snapshot, after)
            assert all(r["orderId"] in listed for r in trades), (snapshot, after)
        finally:
            await alice.close()

    run(harness, scenario)


# -- checked and found sound -----------------------------------------------------------------


def open_orders(harness: Harness) -> int:
    """ALICE's open orders as the router counts them."""
    return int(harness.router.sequencer.accounts.open_orders(ALICE))


async def flow(harness: Harness, alice: RestClient, bob: RestClient, fix: Client, n: int) -> None:
    """``n`` rounds of ALICE's orders on both channels and BOB's fills: a REST bid, a FIX
    bid, BOB's IOC sell filling one and part of the other, a REST cancel (refused: filled)
    and a FIX cancel of what is left, and a bid that rests on."""
    for k in range(n):
        rest_oid = await rest_bid(alice, "100.00", "0.10")
        await fix_bid(fix, f"f{k}", "99.00", "0.10")
        await bob.call(
            "POST", ORDER, **SELL, price="99.00", quantity="0.15", timeInForce="IOC"
        )  # fmt: skip
        await quiet(fix, 0.02)
        with contextlib.suppress(Exception):  # filled first: nothing to cancel
            await alice.call("DELETE", ORDER, symbol="BTC-USD", orderId=rest_oid)
        await fix.send("F", *cancel(f"f{k}", f"c{k}", "1"))
        await answer_to(fix, f"c{k}")  # (20 ms of quiet was not always enough under load)
        await rest_bid(alice, f"9{k % 10}.00", "0.10")  # rests on


async def answer_to(fix: Client, cl: str, timeout: float = 5.0) -> None:
    """Read ``fix``'s messages up to the answer (8 or 9) to the request of ClOrdID ``cl``,
    so that the next request's answer is the next one read."""
    while (msg := await fix.recv(timeout)) is not None:
        if msg.get(11) == cl.encode() and msg.get(35) in (b"8", b"9"):
            return
    raise AssertionError(f"no answer to {cl} within {timeout} s")


def test_checked_streams_subscribed_while_orders_flow_fold_to_the_rest_answers(
    harness: Harness,
) -> None:
    """While ALICE's REST and FIX orders, BOB's fills and ALICE's cancels flow, five of
    ALICE's streams are subscribed at different moments. Expected and found: each starts
    with its snapshot at seq 1, ``seq`` gapless; no order both in its snapshot and reported
    NEW after it, no fill doubled or of an order never shown (``fold``); once the flow ends,
    each folded equals ``openOrders`` and ``GET account``, which are the router's."""

    async def scenario(api: RestApi, url: str) -> None:
        alice, bob = await client(url, "ALICE", "alice-pw"), await client(url, "BOB", "bob-pw")
        fix = await fix_user(harness, "ALICE", "alice-pw")
        streams: list[aiohttp.ClientWebSocketResponse] = []
        read: list[list[dict[str, Any]]] = []
        try:
            await rest_bid(alice, "90.00")  # the account in use: balances known
            flowing = asyncio.ensure_future(flow(harness, alice, bob, fix, 6))
            for _ in range(5):
                streams.append(await alice.stream())
                read.append([])
                await asyncio.sleep(0.05)
                for ws, sofar in zip(streams, read, strict=True):
                    sofar.extend(await stream_messages(ws, 0.01))
            await flowing
            await settled(lambda: open_orders(harness) == 7, 10.0)
            for ws, sofar in zip(streams, read, strict=True):
                sofar.extend(await drained(ws))
            listed = {o["orderId"]: o["executedQty"] for o in await alice.call("GET", OPEN)}
            account = shown_balances((await alice.call("GET", ACCOUNT))["balances"])
            assert account == router_balances(harness, ALICE)
            assert len(listed) == 7, listed  # the first bid and one per round
            for k, got in enumerate(read):
                orders, balances = fold(events(got))
                assert orders == listed, (k, orders, listed)
                assert balances == account, (k, balances, account)
        finally:
            for ws in streams:
                await ws.close()
            await alice.close()
            await bob.close()

    run(harness, scenario)


def test_checked_two_streams_of_one_account_see_one_sequence_and_others_nothing(
    harness: Harness,
) -> None:
    """ALICE's two streams (two keys), BOB's and CAROL's are subscribed; then the flow runs
    (ALICE's REST and FIX orders, BOB's fills). Expected and found: ALICE's two streams carry
    exactly the same messages, ``seq`` included; BOB's stream reports only his own orders;
    CAROL's sends nothing after its snapshot; the reports of ALICE's FIX order ``g0`` on her
    stream match her session's ExecutionReports (NEW, TRADE, CANCELED against 150=0, F, 4,
    with the same cumulative quantities)."""

    async def scenario(api: RestApi, url: str) -> None:
        alice, alice2 = (
            await client(url, "ALICE", "alice-pw"),
            await client(url, "ALICE", "alice-pw"),
        )
        bob, carol = await client(url, "BOB", "bob-pw"), await client(url, "CAROL", "carol-pw")
        fix = await fix_user(harness, "ALICE", "alice-pw")
        try:
            ws1, ws2 = await subscribed(alice), await subscribed(alice2)
            bws, cws = await subscribed(bob), await subscribed(carol)
            g0_id = str(await fix_bid(fix, "g0", "95.00", "0.20")).encode()
            session = await quiet(fix, 0.05)  # (none: its 150=0 read by ``fix_bid``)
            await bob.call(
                "POST", ORDER, **SELL, price="95.00", quantity="0.05", timeInForce="IOC"
            )  # fmt: skip
            session += await quiet(fix, 0.3)
            await flow(harness, alice, bob, fix, 2)
            await fix.send("F", *cancel("g0", "x0", "1"))
            session += await quiet(fix, 0.3)
            await settled(lambda: open_orders(harness) == 2, 10.0)  # the flow's resting bids
            one, two = events(await drained(ws1)), events(await drained(ws2))
            assert one == two and len(one) > 20, (len(one), len(two))
            g0 = [
                m["data"] for m in one
                if m["event"] == "executionReport" and m["data"]["clientOrderId"] == "g0"
            ]  # fmt: skip
            shown = [(r["executionType"], r["executedQty"]) for r in g0]
            assert shown == [("NEW", "0.00"), ("TRADE", "0.05"), ("CANCELED", "0.05")]
            told = [fields(m, 150, 14) for m in session if m.get(37) == g0_id]
            assert [(t, q) for t, q in told if t in (b"F", b"4")] == [
                (b"F", b"0.05"), (b"4", b"0.05"),
            ]  # fmt: skip
            theirs = events(await drained(bws))
            alices = {m["data"]["orderId"] for m in one if m["event"] == "executionReport"}
            bobs = {m["data"]["orderId"] for m in theirs if m["event"] == "executionReport"}
            assert bobs and not bobs & alices, (bobs, alices)
            assert events(await stream_messages(cws, 0.3)) == []
            assert shown_balances((await carol.call("GET", ACCOUNT))["balances"]) == (
                router_balances(harness, CAROL)
            )
        finally:
            for c in (alice, alice2, bob, carol):
                await c.close()

    run(harness, scenario)
