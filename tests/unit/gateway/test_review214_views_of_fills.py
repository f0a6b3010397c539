"""Hostile review 214: the same fills seen from every side. Stops that trigger (a cascade, two
stops at one price, one over FIX and one over REST of identical terms), icebergs whose slices
refill, self-trade prevention and a market order cut by the band, driven through FIX and REST
on one exchange; then every view of the same trades compared: FIX ExecutionReports (LastPx,
LastQty, CumQty, AvgPx, Commission), the REST order answers, ``GET order``, the private
stream, ``myTrades`` (live, then as the database writer filed them), the public tape,
depth and 24 h ticker (the market-data state fed the matcher's own output ring,
served by the real ``Site`` behind the gateway's proxy) and the router's balances (fees
included, to the fee account).

Rig: ``rest_rig``'s harness (real HTTP and FIX over TCP, in-process router and matcher) with
three users holding both assets and the database tests' PostgreSQL behind the history.
BTC-USD: prices 2 decimals (tick 0.05), sizes 2; fees 10 bps maker, 20 taker; band 500 bps.

No fault found: each test pins behaviour checked and found right (the README's: one New
and one Restated trigger per stop, an iceberg's reserve shown to its owner only, each fee
charged once and floored, FIX- and REST-entered orders of identical terms told alike).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
import simplefix  # ships no type information

from config.edges import RestConfig
from config.schema import DatabaseConfig
from procs.common.records import Trade
from procs.common.types import Side
from procs.core.market.state import MarketState, build_state
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import RestClient
from tests.unit.gateway.harness import BTC, USD, Client, Harness, config, utc
from tests.unit.gateway.rest_rig import client, fix_user, run
from tests.unit.gateway.test_review47_rest_public import _get, market_data
from tests.unit.gateway.unfiled_rig import file_all

ALICE, BOB, CAROL = 601, 602, 603
FEE_ACCOUNT = 99
ACCOUNTS = (ALICE, BOB, CAROL, FEE_ACCOUNT)
ORDER = "/api/v1/order"
SYM: dict[str, Any] = {"symbol": "BTC-USD"}
BUY, SELL = "1", "2"
PW = {"ALICE": "alice-pw", "BOB": "bob-pw", "CAROL": "carol-pw"}
#: quote minor units per (price unit x size unit), base minor units per size unit
QUOTE_SCALE, BASE_SCALE = 100, 10_000


@pytest.fixture
def ex(instance: str, tmp_path: Path, dsn: str) -> Iterator[Harness]:
    rest = RestConfig(
        port=0, key_rate_per_s=1_000, key_burst=1_000, login_rate_per_s=100, login_burst=100,
        max_streams=4, stream_queue=512,
    )  # fmt: skip
    cfg = config(instance, tmp_path, rest=rest)
    cfg = msgspec.structs.replace(cfg, database=DatabaseConfig(dsn=dsn))
    h = Harness(cfg)
    for name, account in (("ALICE", ALICE), ("BOB", BOB), ("CAROL", CAROL)):
        h.add_user(name, PW[name], account)
        h.fund(account, usd=1_000_000 * 10**6, btc=10 * 10**6)
    yield h
    h.close()


# -- helpers ------------------------------------------------------------------------------------


def fee(price: int, qty: int, bps: int) -> int:
    """The README's fee: floor(notional x bps / 10,000) in quote minor units."""
    return price * qty * QUOTE_SCALE * bps // 10_000


def dec(value: int, decimals: int) -> str:
    return f"{Decimal(value).scaleb(-decimals):.{decimals}f}"


def ring_trades(h: Harness) -> list[Trade]:
    """Every Trade the matcher published on its output ring: the truth the views show."""
    ring = h.rings["m1-out"]
    return [r for n in range(ring.cursor()) if isinstance(r := ring.record(n), Trade)]


def public_state(h: Harness) -> MarketState:
    """The market-data state the matcher's output ring makes, as the feed builds it."""
    ring, state = h.rings["m1-out"], build_state(h.cfg)
    for n in range(ring.cursor()):
        state.process(ring.record(n), [])
    state.flush()
    return state


def balances(h: Harness) -> dict[int, tuple[int, int]]:
    """Each account's (USD, BTC), free plus reserved."""
    acc = h.router.sequencer.accounts
    return {a: (sum(acc.balance(a, USD)), sum(acc.balance(a, BTC))) for a in ACCOUNTS}


def settled_as_readme(trades: list[Trade], start: dict[int, tuple[int, int]]) -> dict[int, Any]:
    """(USD, BTC) per account after ``trades``: each side pays its fee once (maker 10 bps,
    taker 20), floored, to the fee account."""
    out = {a: list(v) for a, v in start.items()}
    for t in trades:
        notional = t.price * t.qty * QUOTE_SCALE
        buyer_takes = t.aggressor == Side.BUY
        buyer, seller = (t.taker_account, t.maker_account)[:: 1 if buyer_takes else -1]
        buyer_fee = fee(t.price, t.qty, 20 if buyer_takes else 10)
        seller_fee = fee(t.price, t.qty, 10 if buyer_takes else 20)
        out[buyer][0] -= notional + buyer_fee
        out[buyer][1] += t.qty * BASE_SCALE
        out[seller][0] += notional - seller_fee
        out[seller][1] -= t.qty * BASE_SCALE
        out[FEE_ACCOUNT][0] += buyer_fee + seller_fee
    return {a: tuple(v) for a, v in out.items()}


def fills_of(trades: list[Trade], order_id: int) -> list[tuple[int, str, str, str, bool]]:
    """(trade id, price, qty, commission, maker) of each fill of ``order_id``, as ring says."""
    out = []
    for t in trades:
        for oid, maker in ((t.taker_order_id, False), (t.maker_order_id, True)):
            if oid == order_id:
                commission = dec(fee(t.price, t.qty, 10 if maker else 20), 6)
                out.append((t.trade_id, dec(t.price, 2), dec(t.qty, 2), commission, maker))
    return out


def my_trades_as_ring(trades: list[Trade], account: int) -> list[tuple[Any, ...]]:
    """``myTrades`` rows of ``account`` as the ring's trades make them (a self-trade: taker
    row, then maker row)."""
    rows = []
    for t in trades:
        for acct, oid, maker in (
            (t.taker_account, t.taker_order_id, False),
            (t.maker_account, t.maker_order_id, True),
        ):
            if acct == account:
                buyer = (t.aggressor == Side.BUY) != maker
                commission = dec(fee(t.price, t.qty, 10 if maker else 20), 6)
                quote = dec(t.price * t.qty, 4)
                rows.append(
                    (t.trade_id, oid, dec(t.price, 2), dec(t.qty, 2), quote, buyer, maker,
                     commission, "USD")
                )  # fmt: skip
    return rows


def my_trade_row(r: dict[str, Any]) -> tuple[Any, ...]:
    keys = ("id", "orderId", "price", "qty", "quoteQty", "isBuyer", "isMaker", "commission")
    return (*(r[k] for k in keys), r["commissionAsset"])


async def fix_order(fix: Client, cl: str, side: str, qty: str, *pairs: tuple[int, Any]) -> None:
    await fix.send("D", (11, cl), (55, "BTC-USD"), (54, side), (60, utc()), (38, qty), *pairs)


async def fix_until(fix: Client, done: Callable[[list[Any]], bool]) -> list[Any]:
    """This session's ExecutionReports from now until ``done(reports)`` (5 s at most)."""
    out: list[simplefix.FixMessage] = []
    deadline = time.monotonic() + 5.0
    while not done(out) and (left := deadline - time.monotonic()) > 0:
        msg = await fix.recv(left)
        if msg is not None and msg.get(35) == b"8":
            out.append(msg)
    assert done(out), [str(m) for m in out]
    return out


def ended(cl: str) -> Callable[[list[Any]], bool]:
    """Done once order ``cl`` is reported finished (filled, cancelled, expired)."""
    return lambda r: any(m.get(11) == cl.encode() and m.get(39) in b"248C" for m in r)


def acked(*cls: str) -> Callable[[list[Any]], bool]:
    return lambda r: all(any(m.get(11) == c.encode() for m in r) for c in cls)


async def open_stream(api: RestClient) -> aiohttp.ClientWebSocketResponse:
    """The private stream, once its snapshot has come (events before it are in it)."""
    ws = await api.stream()
    msg = await ws.receive(timeout=5.0)
    assert json.loads(msg.data)["event"] == "snapshot", msg
    return ws


async def stream_until(
    ws: aiohttp.ClientWebSocketResponse, done: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    """The stream's executionReports until ``done(them)`` (5 s at most)."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + 5.0
    while not done(out) and (left := deadline - time.monotonic()) > 0:
        try:
            msg = await ws.receive(timeout=left)
        except TimeoutError:
            break
        if msg.type is not aiohttp.WSMsgType.TEXT:
            break
        if (event := json.loads(msg.data))["event"] == "executionReport":
            out.append(event["data"])
    assert done(out), out
    return out


def check_fix_order(reports: list[Any], order_id: int, trades: list[Trade]) -> None:
    """One order's ExecutionReports against the ring: exactly one New (150=0) and first,
    at most one trigger (Restated, 378=99) before any fill, each fill's LastPx, LastQty,
    Commission (CommType 3, USD) as the trade and the fee rule say, CumQty the running sum,
    AvgPx the notional over it (floored), one report per fill."""
    mine = [m for m in reports if m.get(37) == str(order_id).encode()]
    kinds = [m.get(150) for m in mine]
    assert kinds.count(b"0") == 1 and kinds[0] == b"0", kinds
    assert kinds.count(b"D") <= 1, kinds
    if b"D" in kinds:
        assert b"F" not in kinds[: kinds.index(b"D")], kinds
    want = fills_of(trades, order_id)
    got, cum, notional = [], 0, 0
    for m in (m for m in mine if m.get(150) == b"F"):
        px, qty = m.get(31).decode(), m.get(32).decode()
        cum += int(Decimal(qty) * 100)
        notional += int(Decimal(px) * 100) * int(Decimal(qty) * 100)
        assert int(Decimal(m.get(14).decode()) * 100) == cum, str(m)
        assert m.get(6).decode() == dec(notional * 10_000 // cum, 6), str(m)
        assert (m.get(13), m.get(479)) == (b"3", b"USD"), str(m)
        trade_id = int(m.get(17).decode().split("-T")[1].split(".")[0])
        got.append((trade_id, px, qty, m.get(12).decode()))
    assert got == [w[:4] for w in want], (got, want)


async def check_public(api: RestApi, url: str, h: Harness, trades: list[Trade]) -> None:
    """The tape, 24 h ticker: every trade once, its price, size and maker side."""
    async with market_data(api, public_state(h)):
        _, tape = await _get(url, "/api/v1/trades", **SYM)
        _, ticker = await _get(url, "/api/v1/ticker/24hr", **SYM)
    assert [(r["id"], r["price"], r["qty"], r["isBuyerMaker"]) for r in tape] == [
        (t.trade_id, dec(t.price, 2), dec(t.qty, 2), t.aggressor == Side.SELL) for t in trades
    ]
    assert ticker["count"] == len(trades)
    assert ticker["volume"] == dec(sum(t.qty for t in trades), 2), ticker
    assert ticker["quoteVolume"] == dec(sum(t.price * t.qty for t in trades), 4), ticker


async def check_history(h: Harness, api: RestClient, account: int, trades: list[Trade]) -> None:
    """``myTrades`` live, then as the writer files them: the ring's fills, each once."""
    want = my_trades_as_ring(trades, account)
    live = await api.call("GET", "/api/v1/myTrades", **SYM)
    assert [my_trade_row(r) for r in live] == want
    await file_all(h)
    filed = await api.call("GET", "/api/v1/myTrades", **SYM)
    assert [my_trade_row(r) for r in filed] == want


def holds_agree(h: Harness) -> None:
    """The router's holds are what the matcher's resting and waiting orders need."""
    accounts = h.router.sequencer.accounts
    accounts.validate_internal_state()
    market, book = accounts.markets[1], h.matcher.matcher.books[1]
    want: dict[tuple[int, int], int] = {}
    for o in [*book.orders.values(), *book.stops.values()]:
        slot = (o.account, market.hold_asset(Side(o.side)))
        want[slot] = want.get(slot, 0) + market.hold(Side(o.side), o.price, o.leaves + o.reserve)
    got = {(a, x): accounts.balance(a, x)[1] for a in ACCOUNTS[:3] for x in (USD, BTC)}
    assert got == {slot: want.get(slot, 0) for slot in got}, (got, want)


async def users(h: Harness, url: str) -> tuple[RestClient, RestClient, Client, Client, Client]:
    """The database schema made; ALICE's and BOB's keys; ALICE, BOB and CAROL over FIX."""
    await file_all(h)
    alice_api = await client(url, "ALICE", PW["ALICE"])
    bob_api = await client(url, "BOB", PW["BOB"])
    fix = [await fix_user(h, name, PW[name]) for name in ("ALICE", "BOB", "CAROL")]
    return alice_api, bob_api, fix[0], fix[1], fix[2]


# -- scenarios ----------------------------------------------------------------------------------


def test_a_stop_cascade_is_told_alike_everywhere(ex: Harness) -> None:
    """Scenario: BOB asks 0.10 at 100.00, 100.50 and 101.00, 0.20 at 102.00; ALICE's
    stop-market buys of 0.10 at stop 100.00, S1 over FIX and S2 over REST (identical terms,
    IOC), and her FIX stop-limit S3 (stop 100.50, limit 102.00); CAROL buys 0.10 at 100.00.
    Expected: S1, then S2, trigger at 100.00 and fill at 100.50 and 101.00; S1's trade
    reaches S3, which fills at 102.00. Each FIX order: one New, one Restated trigger, then its
    fill with LastPx, LastQty, CumQty, AvgPx and Commission (taker, 20 bps) as the trade;
    the stream: NEW, TRIGGERED, TRADE for each, S1 and S2 told alike; GET order, myTrades
    (live and filed), the tape and ticker, and balances (each fee once) agree. Found so."""

    async def scenario(api: RestApi, url: str) -> None:
        alice_api, bob_api, alice, bob, carol = await users(ex, url)
        start = balances(ex)
        ws = await open_stream(alice_api)
        for k, (px, qty) in enumerate(
            (("100.00", "0.10"), ("100.50", "0.10"), ("101.00", "0.10"), ("102.00", "0.20"))
        ):
            await fix_order(bob, f"B{k}", SELL, qty, (40, "2"), (44, px), (59, "1"))
        await fix_until(bob, acked("B0", "B1", "B2", "B3"))
        await fix_order(alice, "S1", BUY, "0.10", (40, "3"), (99, "100.00"), (59, "3"))
        s2 = await alice_api.call(
            "POST", ORDER, **SYM, side="BUY", type="STOP_LOSS", quantity="0.10",
            stopPrice="100.00",
        )  # fmt: skip
        await fix_order(
            alice, "S3", BUY, "0.10", (40, "4"), (44, "102.00"), (99, "100.50"), (59, "1")
        )
        await fix_order(carol, "C1", BUY, "0.10", (40, "2"), (44, "100.00"), (59, "3"))
        reports = await fix_until(alice, lambda r: ended("S1")(r) and ended("S3")(r))
        oid = {m.get(11).decode(): int(m.get(37)) for m in reports}
        stream = await stream_until(ws, lambda r: sum(x["status"] == "FILLED" for x in r) == 3)
        trades = ring_trades(ex)
        assert [(t.price, t.taker_order_id) for t in trades] == [
            (10_000, trades[0].taker_order_id), (10_050, oid["S1"]),
            (10_100, s2["orderId"]), (10_200, oid["S3"]),
        ]  # fmt: skip
        for cl in ("S1", "S3"):
            check_fix_order(reports, oid[cl], trades)
        told: dict[int, list[Any]] = {}
        for x in stream:
            fill = None
            if x["executionType"] == "TRADE":
                keys = ("tradeId", "lastPrice", "lastQty", "commission", "isMaker")
                fill = tuple(x[k] for k in keys)
            told.setdefault(x["orderId"], []).append((x["executionType"], fill))
        for order_id in (oid["S1"], s2["orderId"], oid["S3"]):
            (fill,) = fills_of(trades, order_id)
            assert told[order_id] == [("NEW", None), ("TRIGGERED", None), ("TRADE", fill)]
        got = await alice_api.call("GET", ORDER, **SYM, orderId=s2["orderId"])
        fix_view = await alice_api.call("GET", ORDER, **SYM, orderId=oid["S1"])
        same = ("type", "side", "price", "stopPrice", "origQty", "executedQty", "status")
        assert [got[k] for k in same] == [fix_view[k] for k in same]
        assert (got["executedQty"], got["cummulativeQuoteQty"]) == ("0.10", "10.1000")
        assert balances(ex) == settled_as_readme(trades, start)
        holds_agree(ex)
        await check_public(api, url, ex, trades)
        await check_history(ex, alice_api, ALICE, trades)
        await ws.close()
        for c in (alice_api, bob_api):
            await c.close()

    run(ex, scenario)


def test_icebergs_refill_without_showing_their_reserve(ex: Harness) -> None:
    """Scenario: BOB's icebergs, I1 over FIX and I2 over REST (identical: 1.00 at 100.00,
    showing 0.20); CAROL buys 0.50. Expected: the book shows 0.40 (two slices), then 0.30;
    trades I1 0.20, I2 0.20, I1 0.10 (I1's refill went behind I2's slice); I1's reports say
    LeavesQty 0.80 then 0.70 (the owner sees the reserve: README), MaxFloor 0.20, maker fee
    10 bps; I2's GET order and stream, myTrades, the tape and balances agree. Found so."""

    async def scenario(api: RestApi, url: str) -> None:
        alice_api, bob_api, _alice, bob, carol = await users(ex, url)
        start = balances(ex)
        ws = await open_stream(bob_api)
        await fix_order(
            bob, "I1", SELL, "1.00", (40, "2"), (44, "100.00"), (59, "1"), (111, "0.20")
        )
        new = await fix_until(bob, acked("I1"))
        i2 = await bob_api.call(
            "POST", ORDER, **SYM, side="SELL", type="LIMIT", price="100.00", quantity="1.00",
            icebergQty="0.20", timeInForce="GTC",
        )  # fmt: skip
        async with market_data(api, public_state(ex)):
            _, depth = await _get(url, "/api/v1/depth", **SYM)
        assert depth["asks"] == [["100.00", "0.40"]], depth
        await fix_order(carol, "C1", BUY, "0.50", (40, "2"), (44, "100.00"), (59, "3"))
        reports = await fix_until(bob, lambda r: sum(m.get(150) == b"F" for m in r) == 2)
        i1 = int(reports[0].get(37))
        trades = ring_trades(ex)
        assert [(t.maker_order_id, t.qty) for t in trades] == [
            (i1, 20),
            (i2["orderId"], 20),
            (i1, 10),
        ]
        assert [(m.get(151), m.get(111)) for m in reports] == [
            (b"0.80", b"0.20"),
            (b"0.70", b"0.20"),
        ]
        check_fix_order([*new, *reports], i1, trades)
        async with market_data(api, public_state(ex)):
            _, depth = await _get(url, "/api/v1/depth", **SYM)
        assert depth["asks"] == [["100.00", "0.30"]], depth
        got = await bob_api.call("GET", ORDER, **SYM, orderId=i2["orderId"])
        assert (got["executedQty"], got["cummulativeQuoteQty"], got["status"]) == (
            "0.20",
            "20.0000",
            "PARTIALLY_FILLED",
        )
        assert got["icebergQty"] == "0.20"
        stream = await stream_until(
            ws, lambda r: sum(x["executionType"] == "TRADE" for x in r) == 3
        )
        told = [
            (x["orderId"], x["tradeId"], x["lastQty"], x["commission"], x["isMaker"])
            for x in stream if x["executionType"] == "TRADE"
        ]  # fmt: skip
        want = [
            (o, tid, qty, commission, maker)
            for t in trades
            for o in (t.maker_order_id,)
            for tid, _px, qty, commission, maker in fills_of([t], o)
        ]
        assert told == want, (told, want)
        assert balances(ex) == settled_as_readme(trades, start)
        holds_agree(ex)
        await check_public(api, url, ex, trades)
        await check_history(ex, bob_api, BOB, trades)
        await ws.close()
        for c in (alice_api, bob_api):
            await c.close()

    run(ex, scenario)


def test_prevention_self_trade_and_the_band_settle_as_reported(ex: Harness) -> None:
    """Scenario: a first trade at 100.00; ALICE's FIX ask A1 at 99.00, BOB's at 100.00, then
    her REST IOC bid of 0.20 at 100.00 with EXPIRE_MAKER; her REST ask at 101.00 and her FIX
    IOC bid X1 crossing it (no prevention); BOB asks 102.00 and 108.00 and her FIX market
    buy M1 of 0.30 is cut by the band. Expected: A1 reported cancelled (150=4) and shown
    EXPIRED_IN_MATCH over REST, the REST bid filled 0.10 from BOB; X1 trades with herself
    (two myTrades rows of one id, taker then maker, both fees charged once each); M1 fills
    0.10 at 102.00, the rest cancelled; balances, holds and every view agree. Found so."""

    async def scenario(api: RestApi, url: str) -> None:
        alice_api, bob_api, alice, bob, carol = await users(ex, url)
        start = balances(ex)
        await fix_order(bob, "B0", SELL, "0.10", (40, "2"), (44, "100.00"), (59, "1"))
        await fix_order(carol, "C0", BUY, "0.10", (40, "2"), (44, "100.00"), (59, "3"))
        await fix_until(carol, ended("C0"))
        await fix_order(alice, "A1", SELL, "0.10", (40, "2"), (44, "99.00"), (59, "1"))
        await fix_order(bob, "B1", SELL, "0.10", (40, "2"), (44, "100.00"), (59, "1"))
        reports = await fix_until(alice, acked("A1"))
        await fix_until(bob, acked("B1"))
        bid = await alice_api.call(
            "POST", ORDER, **SYM, side="BUY", type="LIMIT", price="100.00", quantity="0.20",
            timeInForce="IOC", selfTradePreventionMode="EXPIRE_MAKER",
        )  # fmt: skip
        assert (bid["status"], bid["executedQty"]) == ("EXPIRED", "0.10"), bid
        reports += await fix_until(alice, ended("A1"))
        a1 = int(reports[0].get(37))
        assert (reports[-1].get(150), reports[-1].get(39), reports[-1].get(151)) == (
            b"4",
            b"4",
            b"0.00",
        )
        seen = await alice_api.call("GET", ORDER, **SYM, orderId=a1)
        assert (seen["status"], seen["executedQty"]) == ("EXPIRED_IN_MATCH", "0.00"), seen
        await alice_api.call(
            "POST", ORDER, **SYM, side="SELL", type="LIMIT", price="101.00", quantity="0.10",
            timeInForce="GTC",
        )  # fmt: skip
        await fix_order(alice, "X1", BUY, "0.10", (40, "2"), (44, "101.00"), (59, "3"))
        reports += await fix_until(alice, ended("X1"))
        for k, px in enumerate(("102.00", "108.00")):
            await fix_order(bob, f"BB{k}", SELL, "0.10", (40, "2"), (44, px), (59, "1"))
        await fix_until(bob, acked("BB0", "BB1"))
        await fix_order(alice, "M1", BUY, "0.30", (40, "1"))
        reports += await fix_until(alice, ended("M1"))
        oid = {m.get(11).decode(): int(m.get(37)) for m in reports}
        trades = ring_trades(ex)
        self_trade = trades[2]
        assert self_trade.maker_account == self_trade.taker_account == ALICE
        assert [(t.price, t.qty) for t in trades] == [
            (10_000, 10),
            (10_000, 10),
            (10_100, 10),
            (10_200, 10),
        ]
        for cl in ("A1", "X1", "M1"):
            check_fix_order(reports, oid[cl], trades)
        m1_end = [m for m in reports if m.get(11) == b"M1"][-1]
        assert (m1_end.get(150), m1_end.get(14), m1_end.get(151)) == (b"4", b"0.10", b"0.00")
        assert balances(ex) == settled_as_readme(trades, start)
        holds_agree(ex)
        await check_public(api, url, ex, trades)
        await check_history(ex, alice_api, ALICE, trades)
        for c in (alice_api, bob_api):
            await c.close()

    run(ex, scenario)
