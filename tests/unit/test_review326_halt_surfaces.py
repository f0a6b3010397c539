"""Review 326: halting and resuming a symbol, on every surface.

Reviewed: procs/core/book.py (``_admin``, ``_replace``, the halt in ``_new`` through
procs/core/order_checks.py), procs/core/engine.py (``_bulk``), procs/core/sequencer.py (an
``AdminCommand``'s stamp), procs/gateway/security_status.py (SecurityStatus snapshots and
pushes), procs/gateway/orders.py (SymbolStatus to the shell), procs/gateway/order_fields.py
(OrdRejReason 2), procs/gateway/api_errors.py and rest_params.py (``refusal``),
procs/gateway/rest_amend.py, procs/admin/commands.py and client.py (``halt``, ``resume``),
procs/core/market/state.py and procs/marketdata/reseed.py (read); README "## The matcher"
(Commands, Events), the FIX gateway's SecurityStatus and OrdRejReason items, "Admin", the
REST error table.

Rig: the REST rig of ``tests/unit/gateway/rest_rig.py`` (the FIX harness's real rings, router
and matcher shells stepped in the gateway's loop, real HTTP and a simplefix FIX client) with
review 253's FIX helpers; the SecurityStatus harness of ``tests/unit/gateway/
test_security_status.py`` (its ``admin`` halts through the admin gateway's ring, as ``ringex
admin halt`` sends, and a real aiohttp server standing in for market data's
``/api/symbols``), the gateway restarted for real (``Harness.stop`` then ``start``: a new
``GatewayServer`` on the same rings, as the supervisor restarts one); the in-process
exchange of ``tests/unit/router/test_router.py`` with ``ringex admin`` run through
``procs.cli.main`` (``_cli``, ``_Pump`` of ``tests/unit/test_review_admin_bugs.py``).

Faults found:
1. A FIX follower hears a halt of a halted symbol after its gateway restarted. README (FIX gateway,
   SecurityStatusRequest) says "an end of session or a halt of a halted symbol sends none". A
   gateway that started while the symbol was halted has no SymbolStatus in ``seen``; a follower's
   snapshot comes from market data (HALT). A second ``ringex admin halt`` (an operator making sure)
   then reaches ``SecurityStatuses.on_event`` (procs/gateway/security_status.py:117), whose check
   ``before is not None and before[0] == status`` passes over a status it never kept, and every
   follower gets an unsolicited SecurityStatus 325=Y 326=2, a halt that did not happen (a resume of
   a running symbol likewise). Fixed: ``SecurityStatuses`` keeps the status each follower was last
   sent (its snapshot's, from market data or from ``seen``, and its pushes': ``told``) and pushes
   only a status that differs from it.

Sound:
1. A halt keeps resting orders (REST and FIX ones); a new limit order is refused, over REST
   400 -2010 "order rejected: SYMBOL_HALTED (3001) ..." naming the order, over FIX 35=8
   150=8 39=8 OrdRejReason 103=2 (exchange closed) Text "SYMBOL_HALTED (3001)"; a FIX G (even a
   cut in place) is an OrderCancelReject 434=2 naming SYMBOL_HALTED and the REST amend 400
   -2011 naming it (README: halted symbols refuse replaces); a REST cancel and a FIX F are
   taken; after the resume a sell trades against what rested in price-time order (the REST
   bid first, then the FIX one), and ``DELETE openOrders`` ends the rest.
2. A halt and the orders refused under it survive a restart of both the router and the
   matcher (recovery replays the journal): the book is still halted, still refuses, and a
   resume after lets it trade; the matcher's state hash equals the one that never
   restarted.
3. ``ringex admin halt`` / ``resume`` of an unknown or lower-case symbol exit 2 naming the
   configured symbols, nothing sent; a halt of a halted symbol and a resume of a running one
   say "sent", exit 0, and the book's status stays as it was.
4. A FIX follower subscribed before the halt hears one HALT and one READY, nothing for a
   second halt (``seen`` is filled): the pushes are right on a gateway that ran through.

Leads not shown:
- ``POST order/test`` answers ``{}`` for an order on a halted symbol which ``POST order``
  then refuses (-2010 SYMBOL_HALTED); README documents order/test as the gateway's checks only
  (the exchange's are not asked), so not filed, but a client's pre-flight says "fine" for an
  order that cannot be placed; the gateway knows the status (``SecurityStatuses.seen``).
- The REST refusal under a halt is -2010 with the code's name; Binance says "Market is
  closed." for it; clients that match on text would not see it. Not a stated claim.
- After an end of session of a halted symbol, ``seen`` keeps the end's time, so a later
  SecurityStatus snapshot's TransactTime (60) is the end's, not the halt's; README's "the
  event's" is for pushes, so not filed.
- Failover (a standby promoted while a symbol is halted) and the database's rows of the
  refused orders were not reached in the time box; the standby replays the same journal
  through the same ``Engine._bulk``, and the dbwriter's ``Follower.step`` routes
  ``AdminCommand`` as the router does (read, not run).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from procs.common.records import AdminCommand
from procs.common.types import AdminAction, Side, TradingStatus
from procs.gateway.rest import RestApi
from procs.gateway.security_status import READY_TO_TRADE, TRADING_HALT
from tests.unit.gateway.harness import Client, Harness, small_ring_exchange, utc
from tests.unit.gateway.rest_rig import client, fix_user, rest_exchange, run
from tests.unit.gateway.test_review253_fix_rest_parity import _ack, _drain, _send_d
from tests.unit.gateway.test_security_status import HALT, READY, admin, asked, logged_on, status
from tests.unit.router.test_router import ADMIN, BTC, USD, Exchange, config, fund, order
from tests.unit.test_review_admin_bugs import _cli, _Pump, _use_config

ORDER = "/api/v1/order"


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


@pytest.fixture
def h(instance: str, tmp_path: Path) -> Iterator[Harness]:
    """ALICE (account 7) and BOB (8), password "secret"; BTC-USD (id 1)."""
    rig = small_ring_exchange(instance, tmp_path, 4096, users=("ALICE", "BOB"))
    yield rig
    rig.close()


# -- orders under a halt, REST and FIX ---------------------------------------------------------


def test_sound_orders_cancels_and_replaces_under_a_halt_then_priority_after(
    harness: Harness,
) -> None:
    """Scenario: ALICE bids 0.10 at 100.00 over REST, then 0.10 at 100.00 over FIX; BTC-USD is
    halted. Expected: a REST new order 400 -2010 naming SYMBOL_HALTED; a FIX D rejected with
    103=2; a FIX G and a REST amend refused naming SYMBOL_HALTED; a third REST bid placed before
    the halt cancelled over REST and a fourth over FIX (F) both taken. After the resume BOB's
    sell of 0.15 fills the REST bid whole first, then 0.05 of the FIX one."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        fix = await fix_user(harness, "ALICE", "alice-pw")
        bid: dict[str, Any] = {"symbol": "BTC-USD", "side": "BUY", "type": "LIMIT",
                               "quantity": "0.10"}  # fmt: skip
        try:
            first = await alice.call("POST", ORDER, **bid, price="100.00")
            await _ack(fix, "F1", (54, "1"), (40, "2"), (44, "100.00"), (38, "0.10"), (59, "1"))
            third = await alice.call("POST", ORDER, **bid, price="99.00")
            await _ack(fix, "F4", (54, "1"), (40, "2"), (44, "98.00"), (38, "0.10"), (59, "1"))
            await _admin_in_force(harness, AdminAction.HALT)
            code, body = await alice.request("POST", ORDER, **bid, price="100.00")
            assert (code, body["code"]) == (400, -2010), body
            assert body["msg"].startswith("order rejected: SYMBOL_HALTED (3001) symbol=BTC-USD")
            await _send_d(fix, "F2", (54, "1"), (40, "2"), (44, "100.00"), (38, "0.10"), (59, "1"))
            (rej,) = await _drain(fix)
            assert (rej[35], rej[150], rej[39], rej[103], rej[58]) == (
                b"8", b"8", b"8", b"2", b"SYMBOL_HALTED (3001)",
            )  # fmt: skip
            await fix.send("G", (11, "F1b"), (41, "F1"), (55, "BTC-USD"), (54, "1"), (60, utc()),
                           (40, "2"), (44, "100.00"), (38, "0.05"), (59, "1"))  # fmt: skip
            (cxl,) = await _drain(fix)
            assert (cxl[35], cxl[434], cxl[58]) == (b"9", b"2", b"SYMBOL_HALTED (3001)")
            code, body = await alice.request(
                "PUT", ORDER, symbol="BTC-USD", orderId=first["orderId"], quantity="0.05"
            )
            assert (code, body["code"]) == (400, -2011) and "SYMBOL_HALTED" in body["msg"], body
            gone = await alice.call("DELETE", ORDER, symbol="BTC-USD", orderId=third["orderId"])
            assert gone["status"] == "CANCELED"
            await fix.send("F", (11, "F4c"), (41, "F4"), (55, "BTC-USD"), (54, "1"), (60, utc()))
            (done,) = await _drain(fix)
            assert (done[150], done[39]) == (b"4", b"4")
            await _admin_in_force(harness, AdminAction.RESUME)
            sold = await bob.call("POST", ORDER, symbol="BTC-USD", side="SELL", type="LIMIT",
                                  price="100.00", quantity="0.15")  # fmt: skip
            assert [f["qty"] for f in sold["fills"]] == ["0.10", "0.05"]
            view = await alice.call("GET", ORDER, symbol="BTC-USD", orderId=first["orderId"])
            assert view["status"] == "FILLED"
            (fill,) = await _drain(fix)
            assert (fill[11], fill[150], fill[32], fill[151]) == (b"F1", b"F", b"0.05", b"0.05")
            left = await alice.call("DELETE", "/api/v1/openOrders", symbol="BTC-USD")
            assert [o["clientOrderId"] for o in left] == ["F1"]
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)


async def _admin_in_force(harness: Harness, action: AdminAction) -> None:
    """``admin``'s halt or resume, waited for until the gateway has read the matcher's
    SymbolStatus of it: the admin ring and the gateway's are two rings the router reads in no
    set order, so an order sent at once may be sequenced before the halt (a flake under -n 2)."""
    admin(harness, action)
    want = TRADING_HALT if action == AdminAction.HALT else READY_TO_TRADE
    assert harness.gateway is not None
    seen = harness.gateway.security_statuses.seen
    deadline = time.monotonic() + 10
    while seen.get(1, (0, 0))[0] != want:
        assert time.monotonic() < deadline, f"{action.name} not in force within 10 s"
        await asyncio.sleep(0.005)


# -- restarts ----------------------------------------------------------------------------------


def _held(ex: Exchange, account: int) -> tuple[int, int]:
    return ex.router.sequencer.accounts.balance(account, USD)


def test_sound_a_halt_survives_a_restart_of_the_router_and_the_matcher(
    instance: str, tmp_path: Path
) -> None:
    """Scenario: a bid rests; BTC-USD is halted; a second bid is refused under it; the router
    and the matcher both restart (recovery from the journal). The halt and the resume come on
    the admin ring, as ``ringex admin`` sends them (review 343). Expected: the book still halted
    with the same state hash, the account's hold only the first bid's, a third bid refused,
    and after a resume a sell trades with the bid that rested through it all."""
    ex = Exchange(config(instance, tmp_path))
    try:
        fund(ex, 7, usd=1_000_000, btc=0)
        fund(ex, 8, usd=0, btc=50_000)
        ex.send(1, order(1, 7, Side.BUY, 10_000, 10))
        held = _held(ex, 7)
        ex.send(ADMIN, AdminCommand(0, 0, AdminAction.HALT, 1, time.time_ns()))
        ex.send(1, order(2, 7, Side.BUY, 10_000, 10))
        book = ex.matcher.matcher.books[1]
        assert book.halted and len(book.orders) == 1 and _held(ex, 7) == held
        before = book.state_hash()
        ex.stop()
        ex.start()
        ex.pump()
        book = ex.matcher.matcher.books[1]
        assert book.halted and book.state_hash() == before and _held(ex, 7) == held
        ex.send(1, order(3, 7, Side.BUY, 10_000, 10))
        assert len(book.orders) == 1 and _held(ex, 7) == held
        ex.send(ADMIN, AdminCommand(0, 0, AdminAction.RESUME, 1, time.time_ns()))
        ex.send(1, order(4, 8, Side.SELL, 10_000, 10))
        assert not book.halted and not book.orders  # the bid traded with the sell
        assert ex.router.sequencer.accounts.balance(7, BTC) == (1_000, 0)  # 0.10 BTC
    finally:
        ex.stop()


# -- the CLI -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv", [["halt", "DOGE-USD"], ["resume", "DOGE-USD"], ["halt", "btc-usd"]],
    ids=["halt-unknown", "resume-unknown", "lower-case"],
)  # fmt: skip
def test_sound_cli_refuses_a_symbol_not_configured(
    argv: list[str],
    instance: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Scenario: ``ringex admin halt DOGE-USD`` (and the like) against a running exchange.
    Expected: exit 2, one line naming the symbol and the configured ones; nothing sent."""
    ex = Exchange(config(instance, tmp_path))
    _use_config(monkeypatch, ex.cfg)
    first = ex.router.sequencer.next_seq
    try:
        with _Pump(ex):
            code = _cli(["admin", argv[0], "--profile", "x", argv[1]])
        out, err = capsys.readouterr()
        assert code == 2 and not out, (code, out)
        assert argv[1] in err and "BTC-USD" in err, err
        assert ex.router.sequencer.next_seq == first  # nothing sequenced
    finally:
        ex.stop()


def test_sound_cli_halt_of_a_halted_and_resume_of_a_running_symbol(
    instance: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Scenario: ``ringex admin halt BTC-USD`` twice, then ``resume`` twice. Expected: each
    exit 0 "sent"; the book halted, halted, open, open after each."""
    ex = Exchange(config(instance, tmp_path))
    _use_config(monkeypatch, ex.cfg)
    seen: list[TradingStatus] = []
    first = ex.router.sequencer.next_seq
    try:
        for command in ("halt", "halt", "resume", "resume"):
            with _Pump(ex):
                code = _cli(["admin", command, "--profile", "x", "BTC-USD"])
                deadline = time.monotonic() + 5
                while ex.router.sequencer.next_seq <= first + len(seen):
                    assert time.monotonic() < deadline, "not sequenced"
                    time.sleep(0.01)
            out, _ = capsys.readouterr()
            assert (code, out.strip()) == (0, f"{command} BTC-USD: sent")
            seen.append(
                TradingStatus.HALTED if ex.matcher.matcher.books[1].halted else TradingStatus.OPEN
            )
        assert seen == [TradingStatus.HALTED] * 2 + [TradingStatus.OPEN] * 2
    finally:
        ex.stop()


# -- FIX SecurityStatus ------------------------------------------------------------------------


def test_sound_a_follower_hears_one_halt_and_one_resume(h: Harness) -> None:
    """Scenario: ALICE follows BTC-USD (263=1) on a gateway that runs throughout; halt,
    halt again, resume. Expected: one HALT push, nothing for the second halt, one READY."""

    async def scenario() -> None:
        port = await h.start()
        try:
            alice = await logged_on(port)
            await asked(alice, "s1", 1)
            await alice.expect("f", timeout=5.0)  # the snapshot (UNKNOWN: no market data)
            admin(h, AdminAction.HALT)
            assert status(await alice.expect("f", timeout=5.0))[2:] == (b"Y", HALT)
            admin(h, AdminAction.HALT)
            admin(h, AdminAction.RESUME)
            assert status(await alice.expect("f", timeout=5.0))[2:] == (b"Y", READY)
            await alice.aclose()
        finally:
            await h.stop()

    asyncio.run(scenario())


async def _market_data(status_now: str) -> tuple[web.AppRunner, str]:
    """A stand-in for market data's ``/api/symbols`` saying BTC-USD is ``status_now``."""

    async def symbols(_request: web.Request) -> web.Response:
        return web.json_response([{"symbol": "BTC-USD", "stream": "btc-usd",
                                   "status": status_now}])  # fmt: skip

    app = web.Application()
    app.router.add_get("/api/symbols", symbols)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def _pushes(fix: Client, quiet_s: float) -> list[tuple[bytes | None, ...]]:
    """The SecurityStatus messages ``fix`` receives until ``quiet_s`` passes without one."""
    out = []
    while (m := await fix.recv(quiet_s)) is not None:
        if m.get(35) == b"f":
            out.append(status(m))
    return out


def test_a_halt_of_a_halted_symbol_is_pushed_after_a_gateway_restart(h: Harness) -> None:
    """Scenario: BTC-USD is halted; the FIX gateway restarts (a new GatewayServer on the same
    rings); ALICE follows BTC-USD (263=1) and its snapshot, from market data, says trading
    halt (326=2); the operator sends ``ringex admin halt BTC-USD`` again.
    Expected (README, SecurityStatusRequest: "an end of session or a halt of a halted symbol
    sends none"): nothing more after the snapshot.
    Was (fixed): an unsolicited SecurityStatus 325=Y 326=2 follows, a halt that did not happen."""

    async def scenario() -> None:
        await h.start()
        admin(h, AdminAction.HALT)
        gw = h.gateway
        assert gw is not None
        deadline = time.monotonic() + 5
        while 1 not in gw.security_statuses.seen:  # the first gateway read the halt
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        await h.stop()  # the gateway restarts: its status kept nowhere
        port = await h.start()
        runner, url = await _market_data("HALT")
        try:
            assert h.gateway is not None
            h.gateway.security_statuses._market_url = url
            alice = await logged_on(port)
            await asked(alice, "s1", 1)
            snap = await alice.expect("f", timeout=5.0)
            assert status(snap) == (b"s1", b"BTC-USD", b"N", HALT)
            admin(h, AdminAction.HALT)  # an operator making sure
            assert await _pushes(alice, 1.0) == []
            await alice.aclose()
        finally:
            await runner.cleanup()
            await h.stop()

    asyncio.run(scenario())
