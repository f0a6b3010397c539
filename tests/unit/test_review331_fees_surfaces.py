"""Review 331: fees on every surface.

Reviewed: README (The router and the journal: fees, the fee account, a buy's fee margin,
floor rounding, a fee change at a router's start and its guard; the database's
``maker_fee`` / ``taker_fee`` and ``trades_decimal``; FIX Commission (12), CommType (13),
CommCurrency (479); REST ``commission`` / ``commissionAsset`` in order answers' ``fills``,
``myTrades`` and the private stream, and when the live views' fees can differ from the
router's), ``procs/core/money.py`` (``fees``, ``hold``), ``fees.py``, ``settlement.py``
(``_trade``, ``_fill``), ``procs/router/main.py`` (``_journal_fees``),
``procs/gateway/commission.py``, ``orders.py`` / ``order_replies.py`` (``_commission``),
``rest_orders.py`` (``_fill``), ``live_trades.py`` (``LiveFill``, ``_json``),
``rest_order_log.py`` (``restore``), ``history.py`` (``trades``), migration 0012
(``trades_decimal``), ``config/fields.py`` (``FeeBps``).

Rig: ``rest_rig.rest_exchange`` (real HTTP, FIX over TCP and the private stream in front of
real rings, the router and matcher shells in process) with the session's private
PostgreSQL behind the history (``tests/unit/conftest.py``'s ``dsn``) and the database writer
run by hand (``unfiled_rig.file_all``); ALICE (601) with dollars, BOB (602) with bitcoin,
the fee account 99; BTC-USD prices 2 decimals (tick 0.05), sizes 2, USD and BTC 6 decimals
(one price unit x one size unit = 100 USD minor units). A fee change is the harness's
gateway shut down and its ``RouterShell`` closed and made again under the changed config
(the router journals the new fees at its start), then a new gateway under it, as a deploy
of a new config restarts both.

Faults found:

1. After a fee change that restarted both the router and the gateway (README: the live
   views "can differ" only "after a fee change, until both restarted"), ``myTrades`` shows
   a fill made *before* the change, that the gateway's order log brought back and the
   writer has not filed yet, with a commission under the *new* fees: 9.000000 USD for a
   maker fill the router charged 3.000000 (10 -> 30 bps); once the writer files it, the
   same fill's commission becomes 3.000000. A bot reconciling its fees after a deploy
   books a fee that was never charged, and the number changes under it. Cause:
   ``procs/gateway/live_trades.py:46-57`` (``LiveFill`` keeps no fee) and ``:161-162``
   (``_json`` computes the commission at listing time from ``self.commissions``, the
   gateway's config of today); ``rest_order_log.py:213-215`` (``fill_entry``) logs no fee
   either, so ``restore`` (``rest_order_log.py:127-129``) cannot give the old one back.
   Fixed: ``RestOrders._fill`` computes the fee once, when the fill is seen, for the
   answer, the stream and ``LiveTrades.add`` (``Commissions.formatted`` shows a fee
   computed already); ``LiveFill.fee`` keeps it (quote minor units), ``fill_entry`` writes
   it last in the ``API_FILL`` entry, ``restore`` gives it back (an entry without it, from
   before, falls back to today's config) and ``_json`` lists the kept fee. Test:
   ``test_a_fill_from_before_a_fee_change_keeps_its_fee_in_my_trades_after_both_restart``.

Sound (``test_sound_*``): one trade, ALICE's REST bid the maker and BOB's FIX IOC sell the
taker, at 10/20 bps on a notional with odd digits: ALICE's order answer, private-stream
``executionReport``, ``myTrades`` live and filed, BOB's FIX Commission (12) with CommType 3
and CommCurrency USD, and BOB's ``myTrades`` once filed, the database row's ``maker_fee`` /
``taker_fee`` and ``trades_decimal`` (fee_asset USD), the router's balances and the fee
account's all say the same floor fees to the minor unit; ALICE's fee margin is released
(nothing locked). A trade whose fees are 0.4 and 0.8 minor units (8/16 bps of 500) charges 0
on every surface (shown "0.000000"), the fee account gets nothing, and the buyer's 1-unit
ceil margin goes back. A self-trade (STP NONE) charges the account both fees, each of its
two ``myTrades`` rows (taker then maker) and the taker's answer saying its own. Fees of
0/1000 bps (the schema's bounds): a taker buy needs notional x 1.1 free (one unit less is
refused -2010 and holds nothing), pays exactly 10% and the maker seller 0. A bid resting
across a deploy that swaps 10/20 to 20/10 (margin kept) fills as maker under the new 20 bps,
and its stream, myTrades live and filed, the taker's answer, the row and the fee account
agree (the gateway restarted with the router).

Leads not shown:
- A gateway that crashed and, restarted under a changed config, reads a batch of events
  again makes its FIX reports (PossResend) of trades from before the change with
  Commission under the new fees: the same cause as fault 1 (``order_replies._commission``
  at report time); not driven (needs a crash between the events and the order log's write).
- ``exchangeInfo``'s ``makerFeeBps`` / ``takerFeeBps`` come from the gateway's config, not
  the fees the router journaled: after a router restart under a new config and before the
  gateway's they differ (README documents the live views' difference, not this field's).
- A symbol whose quote is BTC (fees in the base asset of another symbol) was not driven;
  the code has one path (``market.quote``) for every symbol.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest

from config.schema import DatabaseConfig, RingexConfig
from procs.common.records import Transfer
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import ApiCallError
from procs.router.main import RouterShell
from tests.unit.gateway import unfiled_rig
from tests.unit.gateway.harness import BTC, FUNDER, USD, Harness, settled, utc
from tests.unit.gateway.rest_rig import (
    ALICE,
    BOB,
    LIMIT,
    client,
    fix_user,
    rest_exchange,
    run,
    stream_messages,
)
from tests.unit.gateway.test_review195_channels import subscribed
from tests.unit.gateway.test_review324_rest_history import filled_bid

ORDER, TRADES = "/api/v1/order", "/api/v1/myTrades"
SYM: dict[str, Any] = {"symbol": "BTC-USD"}
SELL: dict[str, Any] = {**LIMIT, "side": "SELL"}
FEE_ACCOUNT = 99
BPS = 10_000
SCALE = 100  # USD minor units per price unit x size unit


def _fees(maker: int, taker: int) -> Callable[[RingexConfig], RingexConfig]:
    def reshape(cfg: RingexConfig) -> RingexConfig:
        (btc,) = cfg.symbols
        btc = msgspec.structs.replace(btc, maker_fee_bps=maker, taker_fee_bps=taker)
        return msgspec.structs.replace(cfg, symbols=[btc])

    return reshape


def _exchange(instance: str, tmp_path: Path, dsn: str, maker: int, taker: int) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path, DatabaseConfig(dsn=dsn), _fees(maker, taker))


@pytest.fixture
def ex(instance: str, tmp_path: Path, dsn: str) -> Iterator[Harness]:
    """The rig at the default 10/20 bps, with the history database."""
    yield from _exchange(instance, tmp_path, dsn, 10, 20)


def _units(text: str) -> int:
    return int(Decimal(text).scaleb(6))


def _balance(h: Harness, account: int, asset: int = USD) -> tuple[int, int]:
    return h.router.sequencer.accounts.balance(account, asset)


def _fund(h: Harness, account: int, asset: int, amount: int, key: int) -> None:
    h.funder.publish_batch([Transfer(0, 0, FUNDER, 0, key, account, asset, amount, key)])


async def _restart_both(h: Harness, cfg: RingexConfig) -> str:
    """A deploy of ``cfg``: the gateway stopped cleanly, the router closed and started under
    ``cfg`` (it journals the new fees), a new gateway under ``cfg``; its REST URL."""
    assert h.gateway is not None
    await h.gateway.shutdown(grace_s=0.2)
    h.pause()
    h.router.close()
    h.cfg = cfg
    h.router = RouterShell(cfg)
    await h.start()
    assert h.gateway is not None and h.gateway.api is not None
    return f"http://127.0.0.1:{h.gateway.api.port}"


# -- faults --------------------------------------------------------------------------------------


def test_a_fill_from_before_a_fee_change_keeps_its_fee_in_my_trades_after_both_restart(
    ex: Harness,
) -> None:
    """Scenario: at 10/20 bps ALICE's REST bid of 0.10 at 30000.00 is filled by BOB (the
    router charges her 3.000000 USD as maker); the writer has not filed it yet. The operator
    deploys fees of 30/30 bps (no buy rests: the start allows it), restarting the router and
    the gateway; ALICE reconciles with myTrades, then again once the writer filed the trade.
    Expected: README: the live views differ from the router only "after a fee change, until
    both restarted"; both have restarted, so myTrades says 3.000000 (what the router
    charged, what the fee account got), before and after the writer files it.
    Was (fixed): myTrades said 9.000000 (30 bps of 3000 USD) until the writer filed the
    trade, then 3.000000."""
    h = ex
    seen: dict[str, Any] = {}

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, bob):
            await filled_bid(alice, bob)
            seen["before"] = [t["commission"] for t in await alice.call("GET", TRADES, **SYM)]
        seen["charged"] = _balance(h, FEE_ACCOUNT)[0]
        url2 = await _restart_both(h, _fees(30, 30)(h.cfg))
        async with unfiled_rig.users(url2) as (alice, _bob):
            seen["after"] = [t["commission"] for t in await alice.call("GET", TRADES, **SYM)]
            await unfiled_rig.file_all(h)
            seen["filed"] = [t["commission"] for t in await alice.call("GET", TRADES, **SYM)]

    run(h, scenario)
    notional = 3_000_000 * 10 * SCALE  # 30000.00 x 0.10: ticks x lots x 100
    assert seen["charged"] == notional * 10 // BPS + notional * 20 // BPS
    assert seen["before"] == ["3.000000"] and seen["filed"] == ["3.000000"], seen
    assert seen["after"] == ["3.000000"], seen


# -- sound ---------------------------------------------------------------------------------------


def _trade_row(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        raw = conn.execute(
            "SELECT t.maker_fee, t.taker_fee, d.maker_fee, d.taker_fee, d.fee_asset"
            " FROM trades t JOIN trades_decimal d USING (trade_id) ORDER BY t.trade_id"
        ).fetchall()
    return [tuple(r) for r in raw]


def test_sound_a_maker_and_a_taker_fee_agree_to_the_unit_on_every_surface(
    ex: Harness, dsn: str
) -> None:
    """Scenario: at 10/20 bps ALICE bids 0.37 at 101.35 over REST (her private stream
    open); BOB sells 0.37 at 101.35 IOC over FIX (the taker); the writer files it.
    Expected: notional 37.499500 USD, maker fee floor(0.0374995) = 0.037499, taker
    floor(0.0749990) = 0.074999 (both floored):
    ALICE's stream, myTrades live and filed; BOB's Commission (12) with CommType 3,
    CommCurrency USD, his myTrades once filed; the trade row (minor units and
    trades_decimal, fee_asset USD); the balances and the fee account; ALICE locks nothing
    once filled. Now: so."""
    h = ex
    seen: dict[str, Any] = {}

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        fix = await fix_user(h, "BOB", "bob-pw")
        try:
            ws = await subscribed(alice)
            bid = await alice.call("POST", ORDER, **LIMIT, price="101.35", quantity="0.37")
            await fix.send(
                "D", (11, "s1"), (55, "BTC-USD"), (54, 2), (38, "0.37"), (40, 2),
                (44, "101.35"), (59, 3), (60, utc()),
            )  # fmt: skip
            while (report := await fix.expect("8")).get(150) != b"F":
                pass
            seen["fix"] = (report.get(12), report.get(13), report.get(479))
            msgs = await stream_messages(ws, 0.5)
            seen["stream"] = [
                (m["data"]["commission"], m["data"]["commissionAsset"], m["data"]["isMaker"])
                for m in msgs
                if m["data"].get("executionType") == "TRADE"
            ]
            mine = await alice.call("GET", TRADES, **SYM)
            seen["live"] = [(t["commission"], t["commissionAsset"], t["isMaker"]) for t in mine]
            seen["order"] = bid["orderId"]
            await unfiled_rig.file_all(h)
            mine = await alice.call("GET", TRADES, **SYM)
            seen["filed"] = [(t["commission"], t["commissionAsset"], t["isMaker"]) for t in mine]
            his = await bob.call("GET", TRADES, **SYM)
            seen["bob"] = [(t["commission"], t["commissionAsset"], t["isMaker"]) for t in his]
            await ws.close()
        finally:
            await alice.close()
            await bob.close()

    run(h, scenario)
    notional = 10_135 * 37 * SCALE
    maker, taker = notional * 10 // BPS, notional * 20 // BPS
    assert (maker, taker) == (37_499, 74_999)
    assert seen["fix"] == (b"0.074999", b"3", b"USD")
    maker_row = [("0.037499", "USD", True)]
    assert seen["stream"] == seen["live"] == seen["filed"] == maker_row, seen
    assert seen["bob"] == [("0.074999", "USD", False)], seen
    assert _trade_row(dsn) == [(maker, taker, Decimal("0.037499"), Decimal("0.074999"), "USD")]
    assert _balance(h, ALICE) == (1_000_000 * 10**6 - notional - maker, 0)
    assert _balance(h, BOB) == (notional - taker, 0)
    assert _balance(h, ALICE, BTC) == (37 * 10_000, 0)
    assert _balance(h, FEE_ACCOUNT) == (maker + taker, 0)


@pytest.fixture
def tiny(instance: str, tmp_path: Path, dsn: str) -> Iterator[Harness]:
    """Fees of 8/16 bps: on a notional of 500 minor units, 0.4 and 0.8 of a unit."""
    yield from _exchange(instance, tmp_path, dsn, 8, 16)


def test_sound_fees_under_one_minor_unit_floor_to_zero_everywhere(tiny: Harness, dsn: str) -> None:
    """Scenario: at 8/16 bps ALICE bids 0.01 at 0.05 (notional 500 minor units: 0.000500
    USD); BOB sells into it over REST (IOC); the writer files it.
    Expected (README: floor(notional x bps / 10,000)): the maker's 0.4 and the taker's 0.8
    of a unit are 0: "0.000000" in BOB's answer, ALICE's myTrades live and filed, 0 in the
    row; the fee account gets nothing; ALICE's bid held 501 (the margin's ceil) while it
    rested and locks nothing once filled: she paid 500. Now: so."""
    h = tiny
    seen: dict[str, Any] = {}

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, bob):
            await alice.call("POST", ORDER, **LIMIT, price="0.05", quantity="0.01")
            seen["held"] = _balance(h, ALICE)[1]
            answer = await bob.call("POST", ORDER, **SELL, price="0.05", quantity="0.01",
                                    timeInForce="IOC")  # fmt: skip
            seen["answer"] = [f["commission"] for f in answer["fills"]]
            seen["live"] = [t["commission"] for t in await alice.call("GET", TRADES, **SYM)]
            await unfiled_rig.file_all(h)
            seen["filed"] = [t["commission"] for t in await alice.call("GET", TRADES, **SYM)]

    run(h, scenario)
    assert seen == {
        "held": 501,
        "answer": ["0.000000"],
        "live": ["0.000000"],
        "filed": ["0.000000"],
    }, seen
    assert [r[:2] for r in _trade_row(dsn)] == [(0, 0)]
    assert _balance(h, ALICE) == (1_000_000 * 10**6 - 500, 0)
    assert _balance(h, BOB) == (500, 0)
    assert _balance(h, FEE_ACCOUNT) == (0, 0)


def test_sound_a_self_trade_charges_both_fees_each_row_its_own(ex: Harness, dsn: str) -> None:
    """Scenario: BOB (given 100 USD) bids 0.10 at 100.00, then sells 0.10 at 100.00 IOC
    into his own bid (self-trade prevention NONE, the default); the writer files it.
    Expected: BOB pays both fees (10 bps maker 0.010000, 20 bps taker 0.020000): his
    sell's answer shows the taker's, his myTrades live and filed show two rows under one
    id, taker then maker, each with its own fee; the fee account gets 0.030000; BOB keeps
    his bitcoin and locks nothing. Now: so."""
    h = ex
    seen: dict[str, Any] = {}

    async def scenario(api: RestApi, url: str) -> None:
        _fund(h, BOB, USD, 100 * 10**6, 33101)
        await settled(lambda: _balance(h, BOB)[0] == 100 * 10**6)
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (_alice, bob):
            await bob.call("POST", ORDER, **LIMIT, price="100.00", quantity="0.10")
            answer = await bob.call("POST", ORDER, **SELL, price="100.00", quantity="0.10",
                                    timeInForce="IOC")  # fmt: skip
            seen["answer"] = [(f["commission"], f["isMaker"]) for f in answer["fills"]]
            rows = await bob.call("GET", TRADES, **SYM)
            seen["live"] = [(t["id"], t["commission"], t["isMaker"]) for t in rows]
            await unfiled_rig.file_all(h)
            rows = await bob.call("GET", TRADES, **SYM)
            seen["filed"] = [(t["id"], t["commission"], t["isMaker"]) for t in rows]

    run(h, scenario)
    assert seen["answer"] == [("0.020000", False)], seen
    (tid,) = {row[0] for row in seen["live"]}
    both = [(tid, "0.020000", False), (tid, "0.010000", True)]
    assert seen["live"] == seen["filed"] == both, seen
    assert [r[:2] for r in _trade_row(dsn)] == [(10_000, 20_000)]
    assert _balance(h, BOB) == (100 * 10**6 - 30_000, 0)
    assert _balance(h, BOB, BTC) == (10 * 10**6, 0)
    assert _balance(h, FEE_ACCOUNT) == (30_000, 0)


CAROL = 603


@pytest.fixture
def bounds(instance: str, tmp_path: Path, dsn: str) -> Iterator[Harness]:
    """Fees of 0/1000 bps (the schema's bounds); CAROL (603) with 11.000000 USD less a unit."""
    for h in _exchange(instance, tmp_path, dsn, 0, 1_000):
        h.add_user("CAROL", "carol-pw", CAROL)
        h.fund(CAROL, usd=11 * 10**6 - 1, btc=0)
        yield h


def test_sound_fees_of_zero_and_the_maximum_hold_and_charge_exactly(bounds: Harness) -> None:
    """Scenario: fees 0/1000 bps; BOB offers 0.10 at 100.00 (10 USD); CAROL, with 10.999999
    USD, buys 0.10 at 100.00: refused; given one unit more, she buys again.
    Expected: the first is refused -2010 (10 USD + the 10% margin is 11 USD) and holds
    nothing; the second fills, CAROL pays 11 USD exactly (taker 1.000000 USD), BOB gets 10
    USD (maker 0.000000), the fee account 1 USD; nothing stays locked. Now: so."""
    h = bounds
    seen: dict[str, Any] = {}

    async def scenario(api: RestApi, url: str) -> None:
        bob = await client(url, "BOB", "bob-pw")
        carol = await client(url, "CAROL", "carol-pw")
        try:
            await bob.call("POST", ORDER, **SELL, price="100.00", quantity="0.10")
            try:
                await carol.call("POST", ORDER, **LIMIT, price="100.00", quantity="0.10")
            except ApiCallError as e:
                seen["refused"] = (e.status, e.body["code"])
            seen["after_refusal"] = _balance(h, CAROL)
            _fund(h, CAROL, USD, 1, 33102)
            await settled(lambda: _balance(h, CAROL)[0] == 11 * 10**6)
            answer = await carol.call("POST", ORDER, **LIMIT, price="100.00", quantity="0.10")
            seen["answer"] = [f["commission"] for f in answer["fills"]]
        finally:
            await bob.close()
            await carol.close()

    run(h, scenario)
    assert seen["refused"] == (400, -2010), seen
    assert seen["after_refusal"] == (11 * 10**6 - 1, 0)
    assert seen["answer"] == ["1.000000"], seen
    assert _balance(h, CAROL) == (0, 0)
    assert _balance(h, CAROL, BTC) == (10 * 10_000, 0)
    assert _balance(h, BOB) == (10 * 10**6, 0)
    assert _balance(h, FEE_ACCOUNT) == (1 * 10**6, 0)


def test_sound_a_bid_resting_across_a_fee_swap_is_charged_and_shown_the_new_maker_fee(
    ex: Harness, dsn: str
) -> None:
    """Scenario: at 10/20 bps ALICE's bid of 0.10 at 100.00 rests; a deploy swaps the fees
    to 20/10 (the margin, 20, kept: README allows it with buys resting), restarting the
    router and the gateway; BOB sells into the bid (IOC); the writer files it.
    Expected: the trade settles under the new schedule (maker 20 bps: 0.020000, taker 10:
    0.010000), and ALICE's private stream, her myTrades live and filed, BOB's answer, the
    row and the fee account all say so; ALICE's old-margin hold covers it and nothing stays
    locked. Now: so."""
    h = ex
    seen: dict[str, Any] = {}

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, _bob):
            await alice.call("POST", ORDER, **LIMIT, price="100.00", quantity="0.10")
        url2 = await _restart_both(h, _fees(20, 10)(h.cfg))
        async with unfiled_rig.users(url2) as (alice, bob):
            ws = await subscribed(alice)
            answer = await bob.call("POST", ORDER, **SELL, price="100.00", quantity="0.10",
                                    timeInForce="IOC")  # fmt: skip
            seen["answer"] = [f["commission"] for f in answer["fills"]]
            msgs = await stream_messages(ws, 0.5)
            seen["stream"] = [
                m["data"]["commission"] for m in msgs if m["data"].get("executionType") == "TRADE"
            ]
            await ws.close()
            seen["live"] = [t["commission"] for t in await alice.call("GET", TRADES, **SYM)]
            await unfiled_rig.file_all(h)
            seen["filed"] = [t["commission"] for t in await alice.call("GET", TRADES, **SYM)]

    run(h, scenario)
    assert seen == {
        "answer": ["0.010000"],
        "stream": ["0.020000"],
        "live": ["0.020000"],
        "filed": ["0.020000"],
    }, seen
    assert [r[:2] for r in _trade_row(dsn)] == [(20_000, 10_000)]
    assert _balance(h, ALICE) == (1_000_000 * 10**6 - 10 * 10**6 - 20_000, 0)
    assert _balance(h, FEE_ACCOUNT) == (30_000, 0)
