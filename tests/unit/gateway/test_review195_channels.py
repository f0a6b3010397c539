"""Review 195: a hostile review of one account trading through several channels at once:
FIX sessions (two CompIDs on one account), the REST API and the private stream, on one
gateway and across two.

Reviewed: ``procs/gateway/orders.py`` (``_new``, ``on_disconnect``), ``clordid_holders.py``,
``disconnect_cancels.py``, ``rest_orders.py``, ``rest_named.py``, ``rest_mass_cancel.py``,
``rest_client_ids.py``, ``private_stream.py`` / ``stream_subscriber.py`` (the snapshot and its
``seq``), ``rest_balances.py``, against README's "The REST API and the private stream",
the order-entry list and "A user's own settings" (cancel on disconnect).

Rig: ``rest_rig.py``'s exchange (real HTTP, WebSocket and FIX over TCP in front of real rings,
an in-process router and matcher stepped in the test's loop; ``Harness.pause`` holds the
pipeline so that FIX orders are in flight) with ALICE (account 601, dollars), ALICE2 (a
second CompID on account 601) and BOB (602, bitcoin); for two gateways, review 36's ``Pair``
(gw1 and gw2, each with FIX and REST). No database: the live views only.

Faults found:

1. ``procs/gateway/orders.py:267`` (``_new``): a FIX order is refused (103=6) only when an
   order placed through the API holds its ClOrdID (``api_holds``); an open FIX order of
   another session of the same account holding it is not looked at, though
   ``ClOrdIdHolders.holding`` (clordid_holders.py:24) finds exactly that. ALICE (FIX) and
   ALICE2 (FIX) both rest an order under ClOrdID ``f1``: ``openOrders`` lists two orders of
   account 601 with ``clientOrderId`` ``f1``, and ``GET``/``DELETE order`` with
   ``origClientOrderId=f1`` silently pick the older (rest_named.py:56), so a REST client
   meaning ALICE2's order cancels ALICE's. README: "... by any session of the account ...
   so `origClientOrderId` always names one order"; "ids are unique among an account's open
   orders only". Fix: refuse a FIX order (and a replace) whose ClOrdID an open order of another
   session of the account holds (``holding``, OrdRejReason 6), or refuse an
   ``origClientOrderId`` that names two orders rather than pick one. Was (fixed: a FIX
   order or replace under a ClOrdID an open order of another session of the account holds
   is refused, OrdRejReason 6 / CxlRejReason 6, ``ClOrdIdHolders.held_elsewhere``). Test:
   ``test_two_sessions_of_one_account_never_leave_one_client_id_on_two_open_orders``.

Found sound (plain tests):

- a FIX order is found over REST by its ``orderId`` and its ClOrdID, listed in
  ``openOrders``, amended with ``PUT order`` (its session told 150=D 378=99), replaced over
  FIX (then named by the new ClOrdID over REST, the old one -2013) and cancelled with
  ``DELETE order`` (its session told 150=4 under the last ClOrdID); the stream says NEW,
  REPLACED, REPLACED, CANCELED, ``seq`` gapless
  (``test_a_fix_order_is_found_amended_replaced_and_cancelled_over_rest``);
- a FIX OrderMassCancelRequest covers the account's REST orders and the other CompID's FIX
  orders, a ``DELETE openOrders`` the FIX orders of both sessions (each session told of its
  own, the answer listing all), neither touching BOB's; BOB's mass cancels on either channel
  touch none of ALICE's (``test_mass_cancels_on_either_channel_cover_the_account_only``);
- a ``newClientOrderId`` an open FIX order of either session holds is -2010, a ClOrdID an
  open REST order holds is 103=6 on either session
  (``test_client_ids_held_on_one_channel_are_refused_on_the_other``);
- BOB cannot see, query, amend, cancel (singly, in a batch, over FIX by ClOrdID or OrderID)
  or mass-cancel ALICE's orders, and his stream shows none of them
  (``test_another_users_orders_are_out_of_reach_of_every_channel``);
- a stream subscribed while FIX orders and a fill of them are in flight (the pipeline held,
  released 0-150 ms after the subscription): every order is in the snapshot or reported NEW,
  never both, no TRADE doubled or of an unknown order, ``seq`` gapless, and the snapshot
  folded with the reports equals ``openOrders`` and the router's balances
  (``test_a_snapshot_with_fix_orders_in_flight_counts_each_event_once``);
- after fills on both channels, ``account`` and the stream's balances are the router's
  (``test_balances_after_fills_on_both_channels_are_the_routers``);
- cancel on disconnect (README: "cancel a session's orders when it disconnects") cancels
  the session's FIX orders, one amended over REST included, and leaves the account's REST
  orders and the other CompID's orders resting
  (``test_cancel_on_disconnect_takes_the_sessions_fix_orders_only``);
- across two gateways: a FIX order at gw1 is queried, amended (gw1's session told 150=D) and
  mass-cancelled at gw2 (gw1's session told 150=4), gw2's stream reporting each change
  (``test_a_fix_order_at_one_gateway_is_handled_over_rest_at_another``).

Leads, not faults (documented limits): at another gateway a FIX order shows
``clientOrderId`` "" everywhere (``Accepted`` carries no client id; README: "a view of an
order followed from another gateway takes its id from the row"), so ``origClientOrderId``
does not find it there until the writer files it (-2013 without a database), and a
``newClientOrderId`` held at gw1 is taken at gw2 (README: "placed through this gateway").
A FIX session cannot cancel, replace or query a REST order (unknown ClOrdID, 102=1): FIX
names the orders of its own session. A snapshot's balances may be newer than its open
orders (a fill in flight at the subscription already in the balances, its order then
reported NEW and TRADE after it, with no balance event): the folded end state is right, but
the snapshot is not of one instant. ``allOrders`` and ``myTrades`` were not exercised (they
need the database).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from procs.gateway.rest import RestApi
from procs.gateway.rest_client import ApiCallError, RestClient
from tests.unit.gateway import test_review36_gateways as two
from tests.unit.gateway.harness import BTC, USD, Client, Harness, settled, utc
from tests.unit.gateway.rest_rig import (
    ALICE,
    BOB,
    LIMIT,
    client,
    fix_user,
    order_status,
    rest_exchange,
    run,
    stream_messages,
)
from tests.unit.gateway.test_gateway import cancel, order, status_request
from tests.unit.gateway.test_review192_exec_reports import fields, quiet

ORDER, OPEN, ACCOUNT = "/api/v1/order", "/api/v1/openOrders", "/api/v1/account"
SELL = {**LIMIT, "side": "SELL"}
pair = two.pair  # the fixture: gw1 and gw2, ALICE and BOB funded in both assets


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    """``rest_rig``'s ALICE (601, dollars) and BOB (602, bitcoin), and ALICE2: a second FIX
    user (CompID) on ALICE's account 601."""
    for h in rest_exchange(instance, tmp_path):
        h.add_user("ALICE2", "alice2-pw", ALICE)
        yield h


async def fix_bid(fix: Client, cl: str, price: str, qty: str = "0.10") -> int:
    """A GTC limit bid over FIX, acknowledged: its OrderID."""
    await fix.send("D", *order(cl, "1", qty, price, "2", (59, "1")))
    ack = await fix.expect("8")
    assert fields(ack, 11, 150, 39) == (cl.encode(), b"0", b"0"), ack
    return int(ack.get(37))


async def both_alices(h: Harness) -> tuple[Client, Client]:
    """ALICE and ALICE2 (account 601) logged on over FIX."""
    return await fix_user(h, "ALICE", "alice-pw"), await fix_user(h, "ALICE2", "alice2-pw")


async def rest_bid(api: RestClient, price: str, qty: str = "0.10", **kw: Any) -> int:
    """A limit bid through the API, answered: its orderId."""
    placed = await api.call("POST", ORDER, **LIMIT, price=price, quantity=qty, **kw)
    return int(placed["orderId"])


async def refused(call: Any) -> tuple[int, int]:
    """(HTTP status, code) of a call that must be refused."""
    try:
        answer = await call
    except ApiCallError as e:
        return e.status, int(e.body["code"])
    raise AssertionError(f"not refused: {answer}")


async def open_ids(api: RestClient) -> dict[int, str]:
    """``openOrders``: orderId -> clientOrderId."""
    return {o["orderId"]: o["clientOrderId"] for o in await api.call("GET", OPEN)}


async def subscribed(api: RestClient) -> aiohttp.ClientWebSocketResponse:
    """The private stream, its snapshot read: what happens next comes as events."""
    ws = await api.stream()
    assert (await ws.receive_json(timeout=3.0))["event"] == "snapshot"
    return ws


def router_balances(h: Harness, account: int) -> dict[str, tuple[str, str]]:
    """The router's (free, locked) per asset, as the API writes them; zeros left out."""
    out = {}
    for name, asset in (("USD", USD), ("BTC", BTC)):
        free, locked = h.router.sequencer.accounts.balance(account, asset)
        if free or locked:
            out[name] = (f"{Decimal(free) / 10**6:.6f}", f"{Decimal(locked) / 10**6:.6f}")
    return out


def shown_balances(rows: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    return {b["asset"]: (b["free"], b["locked"]) for b in rows}


def fold(messages: list[dict[str, Any]]) -> tuple[dict[int, str], dict[str, tuple[str, str]]]:
    """A stream's snapshot with its events applied, checking that none is doubled or lost:
    (open orders: orderId -> executedQty, balances)."""
    assert messages and messages[0]["event"] == "snapshot", messages[:1]
    assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1)), messages
    snap = messages[0]["data"]
    orders = {o["orderId"]: o["executedQty"] for o in snap["openOrders"]}
    balances = shown_balances(snap["balances"])
    for m in messages[1:]:
        d = m["data"]
        if m["event"] == "balance":
            balances[d["asset"]] = (d["free"], d["locked"])
            continue
        oid, kind = d["orderId"], d["executionType"]
        if kind == "NEW":
            assert oid not in orders, f"order {oid} in the snapshot and reported NEW: {m}"
        else:
            assert oid in orders, f"{kind} of order {oid} never shown before: {m}"
        if kind == "TRADE":
            assert Decimal(d["executedQty"]) > Decimal(orders[oid]), f"doubled fill: {m}"
        orders[oid] = d["executedQty"]
        if d["status"] not in ("NEW", "PARTIALLY_FILLED"):
            del orders[oid]
    return orders, {a: fb for a, fb in balances.items() if fb != ("0.000000", "0.000000")}


def test_a_fix_order_is_found_amended_replaced_and_cancelled_over_rest(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        fix = await fix_user(harness, "ALICE", "alice-pw")
        try:
            ws = await subscribed(alice)
            oid = await fix_bid(fix, "f1", "90.00", "0.30")
            named = await alice.call("GET", ORDER, symbol="BTC-USD", origClientOrderId="f1")
            assert named == await order_status(alice, oid) and named["clientOrderId"] == "f1"
            assert await open_ids(alice) == {oid: "f1"}
            await alice.call("PUT", ORDER, symbol="BTC-USD", orderId=oid, quantity="0.20")
            told = await fix.expect("8")
            assert fields(told, 37, 11, 150, 378, 38) == (b"%d" % oid, b"f1", b"D", b"99", b"0.20")
            await fix.send("G", (41, "f1"), *order("f2", "1", "0.25", "92.00", "2", (59, "1")))
            assert fields(await fix.expect("8"), 11, 41, 150) == (b"f2", b"f1", b"5")
            now = await alice.call("GET", ORDER, symbol="BTC-USD", origClientOrderId="f2")
            assert (now["orderId"], now["price"], now["origQty"]) == (oid, "92.00", "0.25")
            assert await refused(
                alice.call("GET", ORDER, symbol="BTC-USD", origClientOrderId="f1")
            ) == (400, -2013)  # fmt: skip
            done = await alice.call("DELETE", ORDER, symbol="BTC-USD", origClientOrderId="f2")
            assert done["status"] == "CANCELED"
            assert fields(await fix.expect("8"), 37, 11, 150, 39) == (
                b"%d" % oid, b"f2", b"4", b"4",
            )  # fmt: skip
            reports = [
                (m["data"]["orderId"], m["data"]["executionType"], m["data"]["origQty"])
                for m in await stream_messages(ws, 0.3)
                if m["event"] == "executionReport"
            ]
            assert reports == [
                (oid, "NEW", "0.30"), (oid, "REPLACED", "0.20"), (oid, "REPLACED", "0.25"),
                (oid, "CANCELED", "0.25"),
            ]  # fmt: skip
        finally:
            await alice.close()

    run(harness, scenario)


def test_mass_cancels_on_either_channel_cover_the_account_only(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice, bob = await client(url, "ALICE", "alice-pw"), await client(url, "BOB", "bob-pw")
        fix, fix2 = await both_alices(harness)
        bfix = await fix_user(harness, "BOB", "bob-pw")
        accounts = harness.router.sequencer.accounts
        try:
            for round_ in ("fix", "rest"):
                ids = {
                    await fix_bid(fix, f"{round_}-a", "90.00"),
                    await fix_bid(fix2, f"{round_}-b", "89.00"),
                    await rest_bid(alice, "88.00"),
                }
                await bfix.send("q", (11, f"bm-{round_}"), (530, "7"), (60, utc()))
                await bob.call("DELETE", OPEN, symbol="BTC-USD") if round_ == "rest" else None
                await quiet(bfix)
                assert accounts.open_orders(ALICE) == 3  # BOB's mass cancels: none of hers
                ask = await bob.call("POST", ORDER, **SELL, price="201.00", quantity="0.10")
                if round_ == "fix":
                    await fix.send("q", (11, "mc"), (530, "7"), (60, utc()))
                else:
                    gone = await alice.call("DELETE", OPEN, symbol="BTC-USD")
                    assert {o["orderId"]: o["status"] for o in gone} == dict.fromkeys(
                        ids, "CANCELED"
                    )
                mine = await quiet(fix, at_least=2 if round_ == "fix" else 1)  # (r), 8
                hers = await quiet(fix2, at_least=1)
                assert [m.get(150) for m in mine if m.get(35) == b"8"] == [b"4"], mine
                assert [fields(m, 11, 150) for m in hers] == [(f"{round_}-b".encode(), b"4")]
                await settled(lambda: accounts.open_orders(ALICE) == 0)
                assert accounts.open_orders(ALICE) == 0 and await open_ids(alice) == {}
                assert list(await open_ids(bob)) == [ask["orderId"]]  # hers: none of his
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)


def test_client_ids_held_on_one_channel_are_refused_on_the_other(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        fix, fix2 = await both_alices(harness)
        try:
            await fix_bid(fix, "f1", "90.00")
            await fix_bid(fix2, "g1", "89.00")
            await rest_bid(alice, "88.00", newClientOrderId="r1")
            for held in ("f1", "g1"):
                assert await refused(rest_bid(alice, "80.00", newClientOrderId=held)) == (
                    400, -2010,
                )  # fmt: skip
            for session in (fix, fix2):
                await session.send("D", *order("r1", "1", "0.10", "80.00", "2", (59, "1")))
                assert fields(await session.expect("8"), 150, 103) == (b"8", b"6")
        finally:
            await alice.close()

    run(harness, scenario)


def test_two_sessions_of_one_account_never_leave_one_client_id_on_two_open_orders(
    harness: Harness,
) -> None:
    """ALICE rests ``f1`` at 90.00 over FIX; ALICE2, on the same account, sends an order under
    ``f1`` too. Was (fixed: refused, 103=6): both rested, and ``DELETE order
    origClientOrderId=f1`` cancelled ALICE's order (the older) in silence."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        fix, fix2 = await both_alices(harness)
        try:
            await fix_bid(fix, "f1", "90.00")
            await fix2.send("D", *order("f1", "1", "0.10", "80.00", "2", (59, "1")))
            second = await fix2.expect("8")
            assert (second.get(39), second.get(103)) == (b"8", b"6"), second
            assert b"another session of the account" in (second.get(58) or b""), second
            assert list((await open_ids(alice)).values()) == ["f1"]  # one id, one order
            await fix_bid(fix2, "f2", "80.00")  # an id of its own is taken
            assert sorted((await open_ids(alice)).values()) == ["f1", "f2"]
        finally:
            await alice.close()

    run(harness, scenario)


def test_another_users_orders_are_out_of_reach_of_every_channel(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice, bob = await client(url, "ALICE", "alice-pw"), await client(url, "BOB", "bob-pw")
        fix, bfix = (
            await fix_user(harness, "ALICE", "alice-pw"),
            await fix_user(harness, "BOB", "bob-pw"),
        )
        try:
            ws = await bob.stream()
            f1 = await fix_bid(fix, "f1", "90.00")
            r1 = await rest_bid(alice, "89.00", newClientOrderId="r1")
            for oid, name in ((f1, "f1"), (r1, "r1")):
                assert (await refused(order_status(bob, oid)))[1] == -2013
                by_name = bob.call("GET", ORDER, symbol="BTC-USD", origClientOrderId=name)
                assert (await refused(by_name))[1] == -2013
                gone = bob.call("DELETE", ORDER, symbol="BTC-USD", orderId=oid)
                assert (await refused(gone))[1] in (-2011, -2013)
                amend = bob.call("PUT", ORDER, symbol="BTC-USD", orderId=oid, quantity="0.05")
                assert (await refused(amend))[1] in (-2011, -2013)
                batch = await bob.batch_cancel("BTC-USD", [oid])
                assert "code" in batch[0], batch
                await bfix.send("F", *cancel(name, f"c-{name}", "1"), (37, oid))
                assert fields(await bfix.expect("9"), 39, 102) == (b"8", b"1")
                await bfix.send("H", *status_request(name, "1"), (37, oid))
                assert (await bfix.expect("8")).get(39) == b"8"
            await bfix.send("q", (11, "bm"), (530, "7"), (60, utc()))
            await bob.call("DELETE", OPEN, symbol="BTC-USD")
            await quiet(bfix)
            assert await open_ids(bob) == {}
            assert await open_ids(alice) == {f1: "f1", r1: "r1"}
            assert harness.router.sequencer.accounts.open_orders(ALICE) == 2
            seen = await stream_messages(ws, 0.3)
            assert seen[0]["data"]["openOrders"] == []
            assert not [m for m in seen if m["event"] == "executionReport"], seen
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)


def test_a_snapshot_with_fix_orders_in_flight_counts_each_event_once(harness: Harness) -> None:
    """Each round holds the pipeline, sends three FIX bids of ALICE's and a FIX IOC sell of
    BOB's that fills two of them, subscribes ALICE's stream, and releases the pipeline after
    ``delay``: the snapshot and the events after it count every order and fill once."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        fix, bfix = (
            await fix_user(harness, "ALICE", "alice-pw"),
            await fix_user(harness, "BOB", "bob-pw"),
        )
        try:
            await fix_bid(fix, "rests", "50.00")
            for k, delay in enumerate((0.0, 0.002, 0.02, 0.15)):
                harness.pause()
                for i in range(3):
                    await fix.send("D", *order(f"o{k}{i}", "1", "0.10", f"10{i}.00", "2"))
                await bfix.send("D", *order(f"s{k}", "2", "0.15", "100.00", "2", (59, "3")))
                await asyncio.sleep(0.02)  # read by the gateway, published
                subscribing = asyncio.ensure_future(alice.stream())
                await asyncio.sleep(delay)
                harness.resume()
                ws = await subscribing
                orders, balances = fold(await stream_messages(ws, 0.4))
                await ws.close()
                listed = {o["orderId"]: o["executedQty"] for o in await alice.call("GET", OPEN)}
                assert orders == listed, (delay, orders, listed)
                assert balances == router_balances(harness, ALICE), delay
                await quiet(fix, 0.05)
                await quiet(bfix, 0.05)
        finally:
            await alice.close()

    run(harness, scenario)


def test_balances_after_fills_on_both_channels_are_the_routers(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice, bob = await client(url, "ALICE", "alice-pw"), await client(url, "BOB", "bob-pw")
        fix, bfix = (
            await fix_user(harness, "ALICE", "alice-pw"),
            await fix_user(harness, "BOB", "bob-pw"),
        )
        try:
            ws_a, ws_b = await alice.stream(), await bob.stream()
            await fix_bid(fix, "f1", "100.00", "0.20")
            filled = await bob.call(
                "POST", ORDER, **SELL, price="100.00", quantity="0.10", timeInForce="IOC"
            )  # fmt: skip
            assert filled["status"] == "FILLED"
            await quiet(fix)
            await rest_bid(alice, "101.00", "0.30")
            await bfix.send("D", *order("s1", "2", "0.25", "101.00", "2", (59, "3")))
            await quiet(fix)
            await fix_bid(fix, "f2", "95.00")
            await bob.call("POST", ORDER, **SELL, price="150.00", quantity="0.10")
            await quiet(bfix)
            for user, api_, ws in ((ALICE, alice, ws_a), (BOB, bob, ws_b)):
                want = router_balances(harness, user)
                shown = shown_balances((await api_.call("GET", ACCOUNT))["balances"])
                assert shown == want, (user, shown, want)
                assert fold(await stream_messages(ws, 0.3))[1] == want, user
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)


def test_cancel_on_disconnect_takes_the_sessions_fix_orders_only(harness: Harness) -> None:
    harness.add_user("ALICE", "alice-pw", ALICE, cancel_on_disconnect=True)

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        fix, fix2 = await both_alices(harness)
        try:
            f1 = await fix_bid(fix, "f1", "90.00")
            f2 = await fix_bid(fix, "f2", "91.00")
            await alice.call("PUT", ORDER, symbol="BTC-USD", orderId=f2, quantity="0.05")
            g1 = await fix_bid(fix2, "g1", "89.00")
            r1 = await rest_bid(alice, "88.00", newClientOrderId="r1")
            await fix.aclose()
            accounts = harness.router.sequencer.accounts
            await settled(lambda: accounts.open_orders(ALICE) == 2)
            await asyncio.sleep(0.1)  # nothing more goes
            assert await open_ids(alice) == {g1: "g1", r1: "r1"}
            assert accounts.open_orders(ALICE) == 2
            assert {(await order_status(alice, o))["status"] for o in (f1, f2)} == {"CANCELED"}
        finally:
            await alice.close()

    run(harness, scenario)


def test_a_fix_order_at_one_gateway_is_handled_over_rest_at_another(pair: two.Pair) -> None:
    async def scenario(p: two.Pair) -> None:
        fix = await fix_user(p.h, "ALICE", "alice-pw")
        at2 = await client(p.url(p.gw2), "ALICE", "alice-pw")
        try:
            ws = await subscribed(at2)
            f1 = await fix_bid(fix, "f1", "90.00", "0.30")
            f2 = await fix_bid(fix, "f2", "91.00", "0.30")
            assert (await order_status(at2, f1))["status"] == "NEW"
            assert set(await open_ids(at2)) == {f1, f2}
            await at2.call("PUT", ORDER, symbol="BTC-USD", orderId=f1, quantity="0.20")
            assert fields(await fix.expect("8"), 11, 150, 38) == (b"f1", b"D", b"0.20")
            gone = await at2.call("DELETE", OPEN, symbol="BTC-USD")
            assert {o["orderId"]: o["status"] for o in gone} == {f1: "CANCELED", f2: "CANCELED"}
            told = {(m.get(11), m.get(150)) for m in await quiet(fix, at_least=2)}
            assert told == {(b"f1", b"4"), (b"f2", b"4")}
            kinds = [
                (m["data"]["orderId"], m["data"]["executionType"])
                for m in await stream_messages(ws, 0.3)
                if m["event"] == "executionReport"
            ]
            assert sorted(kinds) == sorted(
                [(f1, "NEW"), (f2, "NEW"), (f1, "REPLACED"), (f1, "CANCELED"), (f2, "CANCELED")]
            )
            assert p.h.router.sequencer.accounts.open_orders(ALICE) == 0
        finally:
            await at2.close()

    two.run(pair, scenario)
