"""Review 341: mass cancel and cancel-on-disconnect on every surface.

Reviewed: README (The processes: matcher "mass cancel by account and/or symbol", gateway
"order entry D/F/G/H/q/AF", "an OrderMassCancelReport comes once the router has the mass
cancel durable"; Balances and cancel-all; Removing a user; A user's own settings: cancel on
disconnect; The REST API: ``DELETE openOrders`` "answers with the orders that were open when
it came", ``PENDING_NEW`` "``openOrders`` lists it"), ``procs/gateway/rest_mass_cancel.py``
(``cancel_open_orders``), ``rest_orders.py`` (``mass_cancel``, ``open_orders``,
``pending_orders``), ``rest_open_orders.py``, ``orders.py`` (``_mass_cancel``),
``order_replies.py`` (``answer_mass_cancel``), ``order_fields.py`` (``mass_report``,
``mass_narrowed``), ``disconnect_cancels.py``, ``procs/core/sequencer.py`` (``_mass_cancel``),
``procs/core/book.py`` (``_mass_cancel``, ``_remove_all``), ``procs/core/account_orders.py``,
``procs/admin/client.py`` (``cancel_all``); against FIX 4.4 (OrderMassCancelRequest q,
OrderMassCancelReport r: MassCancelResponse 531, an ExecutionReport 39=4 per order) and
Binance's ``DELETE /api/v3/openOrders`` (the list of the orders it cancelled, each
``CANCELED``). Earlier reviews not repeated: 220 (two matchers, halts, end of session), 230
(cancel on disconnect), 244 (``remove-user --cancel-orders``), 11, 42 and
``test_cancel_all_listing.py`` (the REST listing), 283 (no TotalAffectedOrders 533), 312
(absent Binance fields).

Rig: ``tests/unit/gateway/rest_rig.py`` (real HTTP and FIX over real TCP in front of real
rings, router and matcher stepped in the test's loop; ALICE 601 with 1,000,000 USD, BOB 602
with 10 BTC; BTC-USD prices 2 decimals, sizes 2 decimals), ``Harness.pause``/``resume`` to
hold commands in the rings so they race, the router's own books
(``h.router.sequencer.accounts``: free, locked, open orders) as the truth.

Faults found:

1. ``DELETE openOrders`` leaves out of its answer an order of the key's account that this
   gateway placed and has not had answered (``PENDING_NEW``, ``orderId`` 0), although that
   order was placed before the request, ``GET openOrders`` lists it as open at that moment
   (README, review 42: "``openOrders`` lists it"), and the mass cancel, sequenced behind it,
   cancels it. The case that matters is the panic button: a ``POST order`` answered ``504
   -1007`` ("may still execute"), and the client, not knowing what is out, sends ``DELETE
   openOrders`` to flatten. The answer lists the other orders ``CANCELED`` and says nothing
   of the one it was sent for; a Binance client that books the answer as "these were
   cancelled, nothing else was open" keeps that order as unknown (after a 504) or open
   (an async bot whose POST, answered ``NEW`` a moment later, raced its risk task's
   cancel-all). Only the private stream or a ``GET order`` by name tells it was cancelled.
   Cause: ``procs/gateway/rest_mass_cancel.py:61-62`` (``listed`` is built from
   ``core.open_orders``, ``live.of(account)``, the answered orders only; the pending ones of
   ``core.pending_orders`` (``rest_orders.py:260``), which ``rest_open_orders.py:52`` adds
   to ``GET openOrders``, are never looked at). Fix: take ``core.pending_orders(account)``
   (on the symbol) with ``following`` at the request's start; once the verdict is in (their
   acceptances come first, their commands having been sequenced first) add those that got
   an ``orderId`` to ``listed`` and ``waiting`` like the others (one the exchange refused
   was never open: left out). Was (fixed): only the acknowledged orders were listed; the
   pending one was cancelled unlisted (``test_a_cancel_all_after_a_timed_out_order_lists_it``,
   ``test_a_cancel_all_lists_the_order_placed_before_it``).
   Fixed: the request takes the pending orders with those it follows, and lists each the
   exchange took (its ``orderId`` set by the verdict's time) as it ended
   (``MassCancelRoute.cancel_open_orders``).

Sound (``test_sound_*``): ``DELETE openOrders`` cancels every kind of open order of the
account (plain, part filled, iceberg, untriggered stop limit, LIMIT_MAKER, a stop that
triggered and rests, an amended one, an order placed over FIX) and lists each ``CANCELED``
with its fills, the FIX order under its ClOrdID, the FIX session told 39=4; the other
account's order stays; the router's locked amounts go to 0 with free + locked unchanged and
no open order counted; a FIX q (530=7 or 530=1) cancels the account's REST orders too (the
private stream says ``CANCELED``), an order sent before it in the same TCP write is cancelled
and one after it rests (its hold the only one left), the r says 531=1 or 7; a cancel (F) and
a replace (G) ahead of the q in the ring end as FIX 4.4 says (150=5 then 150=4 under the new
ClOrdID; the F's own 150=4), and those behind it get an OrderCancelReject 39=4 102=0;
stop-market buys and sells, a FIX MaxFloor order and a REST iceberg ask and stop ask of the
other account release their holds exactly under a FIX q; an amend that reaches the router
after a mass cancel is refused ``-2011`` "CANCELED: too late" and holds nothing; a fill racing
a cancel-all: the order is listed ``FILLED``, the next order ``CANCELED``, an IOC behind the
mass cancel finds nothing, and both accounts' books add up.

Leads not shown:

- A FIX order of the account not acknowledged yet when ``DELETE openOrders`` comes is
  cancelled unlisted too; ``GET openOrders`` does not list it either (only REST's pending
  orders), so it is not pinned with fault 1; the same fix (the FIX entry's unacknowledged
  orders of the account) would close it.
- The cancel answers (``DELETE openOrders``, as ``DELETE order``) carry the order's own id as
  ``clientOrderId`` and no ``origClientOrderId``, where Binance's carry the order's id as
  ``origClientOrderId`` and the cancel's as ``clientOrderId``: a python-binance script
  reading ``o["origClientOrderId"]`` fails loudly (KeyError). Review 312 judged absent
  fields leads; so here.
- The router takes a ``MassCancel`` of account 0 (every account's orders) from any gateway,
  not only the admin gateway (``procs/core/sequencer.py:182``: ``if cmd.account and ...``).
  REST refuses account 0 itself (``rest_orders.py:234``) but the FIX entry sends
  ``session.account`` as it is (``orders.py:421``), and ``UserStore`` takes account 0 (only
  ``add-user`` refuses it): a hand-made users file with account 0 gives that user a q that
  cancels every account's orders. Needs a misconfiguration; not pinned.
- A FIX ``q`` answered ``r`` before its ExecutionReports (documented, review 209), so an
  AF right after the r may still show the orders open.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from config.schema import RingexConfig
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import RestClient
from tests.unit.gateway.harness import USD, Client, Harness
from tests.unit.gateway.rest_rig import (
    ALICE,
    BOB,
    client,
    fix_user,
    rest_exchange,
    run,
    stream_messages,
)
from tests.unit.gateway.test_adversarial_fix import order

ORDER, OPEN = "/api/v1/order", "/api/v1/openOrders"
BID: dict[str, Any] = {"symbol": "BTC-USD", "side": "BUY", "type": "LIMIT"}
ASK: dict[str, Any] = {"symbol": "BTC-USD", "side": "SELL", "type": "LIMIT"}
STAMP = "20260101-00:00:00"  # a q's TransactTime (60)


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


def short_timeout(cfg: RingexConfig) -> RingexConfig:
    """The REST gateway answers an order the exchange has not answered in 0.3 s with 504."""
    gw = cfg.gateways[0]
    assert gw.rest is not None
    rest = msgspec.structs.replace(gw.rest, order_timeout_s=0.3)
    return msgspec.structs.replace(cfg, gateways=[msgspec.structs.replace(gw, rest=rest)])


@pytest.fixture
def impatient(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path, reshape=short_timeout)


# -- helpers ----------------------------------------------------------------------------------


def books(h: Harness, account: int) -> dict[int, tuple[int, int]]:
    """The router's (free, locked) of each asset of ``account``, minor units."""
    return {a: h.router.sequencer.accounts.balance(account, a) for a in (1, 2)}


def opened(h: Harness, account: int) -> int:
    return h.router.sequencer.accounts.open_orders(account)


def released(h: Harness, account: int, before: dict[int, tuple[int, int]], step: str) -> None:
    """Nothing of ``account`` is locked now and no asset's free + locked moved since
    ``before`` (a cancel only frees), and the router counts no open order of it."""
    now = books(h, account)
    for asset, (free, locked) in now.items():
        assert locked == 0, f"after {step}: asset {asset} of {account} still locks {locked}"
        assert free == sum(before[asset]), f"after {step}: asset {asset} {before} -> {now}"
    assert opened(h, account) == 0, f"after {step}: {opened(h, account)} open orders counted"


async def until(done: Callable[[], bool], what: str, timeout_s: float = 3.0) -> None:
    """Wait, in the loop that steps the pipeline, until ``done()``; fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        await asyncio.sleep(0.005)


def published(h: Harness) -> bool:
    """Everything the gateway took (FIX and REST) is in its command ring."""
    gw = h.gateway
    assert gw is not None and gw.api is not None
    return not gw.entry.outgoing and not gw.api.core.outgoing and not gw._unpublished


def mass_sent(api: RestApi) -> bool:
    """A ``DELETE openOrders`` of this gateway waits for the router's verdict."""
    return any(r.kind == "mass" for r in api.core.requests.values())


async def fix_messages(fix: Client, quiet_s: float = 0.5) -> list[Any]:
    """What the FIX session gets until ``quiet_s`` of silence, heartbeats left out."""
    out = []
    while (m := await fix.recv(quiet_s)) is not None:
        if m.get(35) != b"0":
            out.append(m)
    return out


def executions(messages: list[Any]) -> list[tuple[bytes, bytes, bytes]]:
    """(ClOrdID, ExecType, OrdStatus) of each ExecutionReport."""
    return [(m.get(11), m.get(150), m.get(39)) for m in messages if m.get(35) == b"8"]


async def place(api: RestClient, **params: Any) -> int:
    return int((await api.call("POST", ORDER, **params))["orderId"])


async def acked(fix: Client, cl: str, side: str, qty: str, price: str | None, *extra: Any) -> None:
    """A FIX order (limit, or ``extra``'s kind), acknowledged."""
    await fix.send("D", *order(cl, side, qty, price, *extra))
    ack = await fix.expect("8")
    assert (ack.get(11), ack.get(150)) == (cl.encode(), b"0"), ack


async def both_cancelled(
    h: Harness, alice: RestClient, cancel: Awaitable[Any], pending: str, what: str
) -> None:
    """``cancel``, ALICE's ``DELETE openOrders``, answers her resting ``rests`` and her
    ``pending`` order ``CANCELED``, and nothing is left open or held after it."""
    answer = {o["clientOrderId"]: o["status"] for o in await cancel}
    assert await alice.call("GET", OPEN) == [], "the mass cancel left an order open"
    assert opened(h, ALICE) == 0 and books(h, ALICE)[USD][1] == 0
    assert answer == {"rests": "CANCELED", pending: "CANCELED"}, (
        f"DELETE openOrders answered {answer}: {what}, which it cancelled, is not listed"
    )


# -- fault ------------------------------------------------------------------------------------


def test_a_cancel_all_lists_the_order_placed_before_it(harness: Harness) -> None:
    """Scenario: ALICE has one order resting and a second one placed, not answered yet (the
    exchange is busy: its POST waits); ``GET openOrders`` lists it ``PENDING_NEW``; her risk
    task sends ``DELETE openOrders``; the exchange catches up.
    Expected: the answer lists both orders, each ``CANCELED``: the pending one was placed
    before the request, its command is ahead of the mass cancel in the ring, and the mass
    cancel cancelled it (the router holds nothing for it after).
    Was (fixed): only the acknowledged order was listed; the other is cancelled unlisted (the POST
    itself answers ``NEW``), so answers alone leave it open to the client."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            await place(alice, **BID, price="90.00", quantity="1.00", newClientOrderId="rests")
            h.pause()
            new = asyncio.ensure_future(
                alice.call(
                    "POST", ORDER, **BID, price="91.00", quantity="1.00", newClientOrderId="busy"
                )
            )
            await until(lambda: published(h) and len(api.core.requests) == 1, "the order sent")
            listed = {o["clientOrderId"]: o["status"] for o in await alice.call("GET", OPEN)}
            assert listed == {"rests": "NEW", "busy": "PENDING_NEW"}, listed
            cancel = asyncio.ensure_future(alice.call("DELETE", OPEN))
            await until(lambda: published(h) and len(api.core.requests) == 2, "the cancel sent")
            h.resume()
            assert (await new)["status"] == "NEW"  # as its own command left it
            await both_cancelled(h, alice, cancel, "busy", "the order placed before it")
        finally:
            await alice.close()

    run(h, scenario)


def test_a_cancel_all_after_a_timed_out_order_lists_it(impatient: Harness) -> None:
    """Scenario (the panic button): ALICE has one order resting; her next ``POST order`` is
    answered 504 -1007 ("may still execute": the exchange is slow); ``GET openOrders`` lists
    it ``PENDING_NEW``; she sends ``DELETE openOrders`` to flatten; the exchange catches up.
    Expected: the answer lists both, ``CANCELED``: the mass cancel, behind the order in the
    ring, cancelled it, and nothing is held after.
    Was (fixed): only the resting order was listed; the one she sent the cancel-all for is cancelled
    unlisted, and she is still left to ask for it by name."""
    h = impatient

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            await place(alice, **BID, price="90.00", quantity="1.00", newClientOrderId="rests")
            h.pause()
            status, body = await alice.request(
                "POST", ORDER, **BID, price="91.00", quantity="1.00", newClientOrderId="slow"
            )
            assert status == 504 and body["code"] == -1007, (status, body)
            listed = {o["clientOrderId"]: o["status"] for o in await alice.call("GET", OPEN)}
            assert listed == {"rests": "NEW", "slow": "PENDING_NEW"}, listed
            cancel = asyncio.ensure_future(alice.call("DELETE", OPEN))
            await until(lambda: published(h) and mass_sent(api), "the mass cancel in the ring")
            h.resume()
            await both_cancelled(h, alice, cancel, "slow", "the order that timed out")
        finally:
            await alice.close()

    run(h, scenario)


# -- sound ------------------------------------------------------------------------------------


def test_sound_rest_cancel_all_every_kind_and_a_fix_order(harness: Harness) -> None:
    """ALICE's plain, part filled, iceberg, stop limit, LIMIT_MAKER, amended and triggered
    stop orders and one over FIX; BOB's ask. ``DELETE openOrders?symbol=BTC-USD``: all of
    ALICE's listed ``CANCELED`` (the part filled one with its fill, the FIX one under its
    ClOrdID), her FIX session told 39=4, BOB's ask resting, ALICE's holds all freed."""
    h = harness

    async def scenario(_: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        fix = await fix_user(h, "ALICE", "alice-pw")
        try:
            ids = {}
            ids["triggered"] = await place(
                alice,
                symbol="BTC-USD",
                side="BUY",
                type="STOP_LOSS_LIMIT",
                price="101.00",
                stopPrice="100.00",
                quantity="1.00",
                timeInForce="GTC",
            )
            await place(alice, **BID, price="100.00", quantity="0.10")  # filled: a trade at 100
            await place(bob, **ASK, price="100.00", quantity="0.10", timeInForce="IOC")
            ids["part"] = await place(alice, **BID, price="102.00", quantity="2.00")
            await place(bob, **ASK, price="102.00", quantity="0.50", timeInForce="IOC")
            ids["plain"] = await place(alice, **BID, price="90.00", quantity="1.00")
            ids["iceberg"] = await place(
                alice, **BID, price="95.00", quantity="3.00", icebergQty="0.50"
            )
            ids["stop"] = await place(
                alice,
                symbol="BTC-USD",
                side="BUY",
                type="STOP_LOSS_LIMIT",
                price="150.00",
                stopPrice="140.00",
                quantity="1.00",
                timeInForce="GTC",
            )
            ids["maker"] = await place(
                alice,
                symbol="BTC-USD",
                side="BUY",
                type="LIMIT_MAKER",
                price="80.00",
                quantity="1.00",
            )
            ids["amended"] = await place(alice, **BID, price="50.00", quantity="1.00")
            await alice.call("PUT", ORDER, symbol="BTC-USD", orderId=ids["amended"], price="60.00")
            await acked(fix, "fx-1", "1", "1.00", "85.00")
            ask = await place(bob, **ASK, price="200.00", quantity="1.00")
            before = books(h, ALICE)
            answer = await alice.call("DELETE", OPEN, symbol="BTC-USD")
            by_id = {o["orderId"]: o for o in answer}
            assert set(ids.values()) <= set(by_id), (ids, answer)
            assert {o["status"] for o in answer} == {"CANCELED"}, answer
            assert by_id[ids["part"]]["executedQty"] == "0.50", by_id[ids["part"]]
            assert by_id[ids["triggered"]]["type"] == "STOP_LOSS_LIMIT"
            assert by_id[ids["triggered"]]["price"] == "101.00"
            (fx,) = [o for o in answer if o["clientOrderId"] == "fx-1"]
            assert len(answer) == len(ids) + 1, answer
            assert (b"fx-1", b"4", b"4") in executions(await fix_messages(fix)), "no 39=4"
            released(h, ALICE, before, "DELETE openOrders")
            assert [o["orderId"] for o in await bob.call("GET", OPEN)] == [ask]
            assert fx["status"] == "CANCELED"
        finally:
            await alice.close()
            await bob.close()

    run(h, scenario)


def test_sound_a_fix_q_between_two_orders_in_one_write(harness: Harness) -> None:
    """ALICE's REST bid and FIX bid rest; one TCP write carries D fx-2, q (530=1), D fx-3.
    The r says 531=1; fx-1, fx-2 and the REST bid are cancelled (39=4; the private stream
    ``CANCELED``); fx-3, behind the q, rests and its hold is the only one left."""
    h = harness

    async def scenario(_: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        fix = await fix_user(h, "ALICE", "alice-pw")
        ws = await alice.stream()
        try:
            r1 = await place(alice, **BID, price="90.00", quantity="1.00", newClientOrderId="r-1")
            await acked(fix, "fx-1", "1", "1.00", "85.00")
            h.pause()
            raw = fix.message("D", *order("fx-2", "1", "1.00", "84.00")).encode()
            raw += fix.message("q", (11, "mc-1"), (530, "1"), (55, "BTC-USD"), (60, STAMP)).encode()
            raw += fix.message("D", *order("fx-3", "1", "1.00", "83.00")).encode()
            await fix.send_raw(raw)
            await until(
                lambda: published(h) and bool(h.gateway and h.gateway.entry.mass_cancels),
                "the q in the ring",
            )
            h.resume()
            got = await fix_messages(fix)
            (report,) = [m for m in got if m.get(35) == b"r"]
            assert (report.get(11), report.get(530), report.get(531)) == (b"mc-1", b"1", b"1")
            ers = executions(got)
            for cl in (b"fx-1", b"fx-2"):
                assert (cl, b"4", b"4") in ers, (cl, ers)
            assert (b"fx-3", b"0", b"0") in ers and not [e for e in ers if e[:2] == (b"fx-3", b"4")]
            (left,) = await alice.call("GET", OPEN)
            assert left["clientOrderId"] == "fx-3" and left["status"] == "NEW", left
            assert opened(h, ALICE) == 1
            # what fx-3 alone holds: 83.00 x 1.00 and the fee on it
            assert 83_000_000 <= books(h, ALICE)[USD][1] < 84_000_000, books(h, ALICE)
            events = [e["data"] for e in await stream_messages(ws, 0.5)]
            ends = {e["orderId"]: e["status"] for e in events if e.get("executionType")}
            assert ends[r1] == "CANCELED", events
        finally:
            await ws.close()
            await alice.close()

    run(h, scenario)


def test_sound_cancels_and_replaces_either_side_of_a_q(harness: Harness) -> None:
    """A G (a up to 3.00) and an F (b) ahead of a q 530=7, a G (c) and an F (d) behind it, in
    one write: a is replaced then mass cancelled under a2; b cancelled by its F (b2); c and d
    mass cancelled, their G and F answered 35=9 39=4 102=0; nothing held or open after."""
    h = harness

    async def scenario(_: RestApi, url: str) -> None:
        fix = await fix_user(h, "ALICE", "alice-pw")
        for cl, px in (("a", "90.00"), ("b", "91.00"), ("c", "92.00"), ("d", "93.00")):
            await acked(fix, cl, "1", "1.00", px)
        before = books(h, ALICE)
        common = ((55, "BTC-USD"), (54, "1"), (60, STAMP))
        h.pause()
        raw = b"".join(
            fix.message(*m).encode()
            for m in (
                ("G", (41, "a"), (11, "a2"), *common, (38, "3.00"), (40, "2"), (44, "90.00")),
                ("F", (41, "b"), (11, "b2"), *common, (38, "1.00")),
                ("q", (11, "mc-1"), (530, "7"), (60, STAMP)),
                ("G", (41, "c"), (11, "c2"), *common, (38, "3.00"), (40, "2"), (44, "92.00")),
                ("F", (41, "d"), (11, "d2"), *common, (38, "1.00")),
            )
        )
        await fix.send_raw(raw)
        await until(
            lambda: published(h) and bool(h.gateway and h.gateway.entry.mass_cancels),
            "the q in the ring",
        )
        h.resume()
        got = await fix_messages(fix, 0.7)
        ers = executions(got)
        for want in ((b"a2", b"5", b"0"), (b"a2", b"4", b"4"), (b"b2", b"4", b"4")):
            assert want in ers, (want, ers)
        for gone in (b"c", b"d"):
            assert (gone, b"4", b"4") in ers, (gone, ers)
        rejects = {(m.get(11), m.get(39), m.get(102)) for m in got if m.get(35) == b"9"}
        assert rejects == {(b"c2", b"4", b"0"), (b"d2", b"4", b"0")}, rejects
        released(h, ALICE, before, "the q")

    run(h, scenario)


def test_sound_holds_of_stops_and_hidden_orders_on_both_sides(harness: Harness) -> None:
    """ALICE: a bid filled in part at a better price, a stop-market buy and sell; BOB: a REST
    iceberg ask, a REST stop-limit ask, a FIX MaxFloor ask and a FIX stop ask. ALICE's
    ``DELETE openOrders`` and BOB's FIX q (530=7, which takes his REST orders too) free every
    hold exactly."""
    h = harness

    async def scenario(_: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        fix = await fix_user(h, "BOB", "bob-pw")
        try:
            await place(bob, **ASK, price="99.00", quantity="0.50")
            await place(alice, **BID, price="100.00", quantity="2.00")
            await place(
                alice,
                symbol="BTC-USD",
                side="BUY",
                type="STOP_LOSS",
                stopPrice="150.00",
                quantity="1.00",
            )
            await place(
                alice,
                symbol="BTC-USD",
                side="SELL",
                type="STOP_LOSS",
                stopPrice="50.00",
                quantity="0.30",
            )
            await place(bob, **ASK, price="300.00", quantity="3.00", icebergQty="0.70")
            await place(
                bob,
                symbol="BTC-USD",
                side="SELL",
                type="STOP_LOSS_LIMIT",
                price="40.00",
                stopPrice="50.00",
                quantity="1.00",
                timeInForce="GTC",
            )
            await acked(fix, "bx", "2", "1.00", "250.00", "2", (111, "0.20"))
            await acked(fix, "by", "2", "1.00", None, "3", (99, "45.00"))
            assert opened(h, ALICE) == 3 and opened(h, BOB) == 4
            mine, his = books(h, ALICE), books(h, BOB)
            assert len(await alice.call("DELETE", OPEN)) == 3
            released(h, ALICE, mine, "ALICE's DELETE openOrders")
            await fix.send("q", (11, "mc"), (530, "7"), (60, STAMP))
            got = await fix_messages(fix)
            assert [m.get(531) for m in got if m.get(35) == b"r"] == [b"7"], got
            assert {(b"bx", b"4", b"4"), (b"by", b"4", b"4")} <= set(executions(got))
            released(h, BOB, his, "BOB's q")
            assert await bob.call("GET", OPEN) == []
        finally:
            await alice.close()
            await bob.close()

    run(h, scenario)


def test_sound_an_amend_behind_a_mass_cancel_holds_nothing(harness: Harness) -> None:
    """A q 530=7, then a REST amend up (to 5.00 at 99.00) of the order it cancels, both in
    the ring before the router reads either: the amend is refused ``-2011`` naming the order
    ``CANCELED``, and nothing stays held (the router's hold for the bigger order freed)."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        fix = await fix_user(h, "ALICE", "alice-pw")
        try:
            oid = await place(alice, **BID, price="90.00", quantity="1.00")
            before = books(h, ALICE)
            h.pause()
            await fix.send("q", (11, "mc-1"), (530, "7"), (60, STAMP))
            await until(
                lambda: published(h) and bool(h.gateway and h.gateway.entry.mass_cancels),
                "the q in the ring",
            )
            amend = asyncio.ensure_future(
                alice.request(
                    "PUT", ORDER, symbol="BTC-USD", orderId=oid, price="99.00", quantity="5.00"
                )
            )
            await until(
                lambda: published(h) and any(r.kind == "amend" for r in api.core.requests.values()),
                "the amend in the ring",
            )
            h.resume()
            status, body = await amend
            assert status == 400 and body["code"] == -2011 and "CANCELED" in body["msg"], body
            released(h, ALICE, before, "the q and the amend")
        finally:
            await alice.close()

    run(h, scenario)


def test_sound_a_fill_racing_a_cancel_all(harness: Harness) -> None:
    """BOB's IOC sell of 1.50 at 100, then ALICE's ``DELETE openOrders``, then BOB's IOC sell at
    99, all waiting in the rings: ALICE's 100 bid is listed ``FILLED``, her 99 bid
    ``CANCELED``, BOB's second IOC finds nothing; both accounts' balances add up to the one
    trade and nothing stays locked."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        try:
            first = await place(alice, **BID, price="100.00", quantity="1.00")
            second = await place(alice, **BID, price="99.00", quantity="1.00")
            h.pause()
            sell = asyncio.ensure_future(
                bob.call("POST", ORDER, **ASK, price="100.00", quantity="1.50", timeInForce="IOC")
            )
            await until(lambda: published(h) and len(api.core.requests) == 1, "the sell sent")
            cancel = asyncio.ensure_future(alice.call("DELETE", OPEN))
            await until(lambda: published(h) and len(api.core.requests) == 2, "the cancel sent")
            late = asyncio.ensure_future(
                bob.call("POST", ORDER, **ASK, price="99.00", quantity="1.00", timeInForce="IOC")
            )
            await until(lambda: published(h) and len(api.core.requests) == 3, "the late IOC")
            h.resume()
            sold, listed, missed = await sell, await cancel, await late
            assert (sold["status"], sold["executedQty"]) == ("EXPIRED", "1.00"), sold
            assert {o["orderId"]: o["status"] for o in listed} == {
                first: "FILLED",
                second: "CANCELED",
            }, listed
            assert (missed["status"], missed["fills"]) == ("EXPIRED", []), missed
            fee = int(sold["fills"][0]["commission"].replace(".", ""))  # 6 decimals
            assert books(h, BOB)[USD] == (100_000_000 - fee, 0), books(h, BOB)
            assert books(h, BOB)[2] == (9_000_000, 0) and books(h, ALICE)[2][0] == 1_000_000
            assert books(h, ALICE)[USD][1] == 0 and opened(h, ALICE) == opened(h, BOB) == 0
        finally:
            await alice.close()
            await bob.close()

    run(h, scenario)
