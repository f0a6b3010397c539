"""Review 328: market orders and their price protection, on every surface.

Reviewed: procs/core/book.py (``_take``, ``_enter``), procs/core/order_checks.py
(``_check_order``, ``_protection``, ``_dead_on_arrival``), procs/core/money.py (``Market.cap``,
``hold``), procs/core/accounts.py (``reserve_new``: a market buy's cap and hold,
``market_sell_notional``), procs/gateway/rest_params.py (``new_order``: MARKET, its
``timeInForce`` and worst ``price``), procs/gateway/order_fields.py (OrdType 1, Price 44 as a
worst price), procs/gateway/exchange_info.py (``bandBps``, ``quoteOrderQtyMarketAllowed``),
procs/dbwriter/projection.py (``DONE_STATUS``); README "## The matcher" (Orders), "## The
router and the journal" (a market buy's cap and hold, NO_REFERENCE_PRICE), the result-code
table (2011, 3004, 3005), the REST order and FIX order-entry items.

Rig: the REST rig of ``tests/unit/gateway/rest_rig.py`` (real rings, router and matcher shells
stepped in the gateway's loop, real HTTP and a simplefix FIX client) with review 253's FIX
helpers; review 301's exchange (``ex``: ALICE, BOB and CAROL holding both assets, the unit
tests' PostgreSQL behind the history and the real database writer run to the journal's end)
with review 214's checks (``holds_agree``: the router's holds are what the books need;
``settled_as_readme``: balances to the minor unit from the printed trades and fee rule).

Faults found:
1. A market buy sent with a worst price escapes the band above the last trade, and the
   NO_REFERENCE_PRICE refusal. README (router) says "market buy: capped at the band above the
   last trade, the cap travels in the order so the matcher never trades above it", and the
   code table says 2011 is "a market buy ... before the symbol's first trade" ("as a market
   buy always does"). After a trade at 100.00 (``band_bps`` 500: cap 105.00), with the asks
   moved to 106.00, a REST MARKET buy with ``price=110.00`` FILLS at 106.00, above the cap;
   before any trade a MARKET buy with ``price=120.00`` is taken and fills (no 2011). Cause:
   procs/core/accounts.py:204 (``reserve_new``) draws the cap only when ``price == 0``; a
   client's worst price replaces it, and the matcher (procs/core/book.py:261-263) then bands
   only from the best ask. Fixed: ``reserve_new`` caps a market buy sent with a worst price
   at ``min(price, market.cap(last))`` and refuses it NO_REFERENCE_PRICE before the first
   trade as the unpriced one is, its hold at that price; where the cap is lower it takes the
   price's place and is marked ``CAPPED`` (the views show 0, as for an unpriced one). A
   replay takes the journaled price. README's router section, the 2011 row and the views'
   "worst price" sentence say so; RULES_VERSION 3.
2. A market buy without a price whose last-trade cap is below the best ask is accepted and
   expires unfilled, with no reason, though asks rest within the band README names. README
   (matcher): a market order is "protected by a price band (``band_bps`` from the best
   opposite price; the rest is cancelled)"; with a trade at 100.00 and the only ask at 106.00
   (within 5% of itself), a REST MARKET buy is answered 200 ``EXPIRED`` ``executedQty`` 0.00,
   ``fills`` [] (FIX: 150=0 then 150=4 39=4 "expired"), while a STOP_LOSS buy in the very same
   book that triggers on arrival is refused ``PRICE_OUT_OF_BAND`` naming ``bandBps`` (review
   51: "refused rather than accepted ... and expired unfilled whatever the book"), and the same
   market buy with any worst price fills (fault 1). Cause: procs/core/order_checks.py:92-93
   judges a market order only for an empty opposite side (NO_LIQUIDITY), not for the router's
   cap (``cmd.price``) excluding the best opposite price, which ``_dead_on_arrival`` (line
   119-135) does for a stop. Fixed: ``_check_order`` (``OrderChecks._unreachable``, both books)
   refuses a market buy whose router cap (``CAPPED``) is below the best ask
   ``PRICE_OUT_OF_BAND``; the REST message and the FIX Text (58) say "its cap, the last trade
   plus bandBps N bps, is below the best ask: capped, it could not trade"; README's matcher
   item and the 3004 row say a market buy is bounded by both bands; RULES_VERSION 3.

Sound:
1. A REST market buy into a book deeper than the band takes the level exactly at the band
   edge (105.00 from 100.00 at 500 bps) and not the tick beyond; answer, GET order and the
   private stream (NEW, TRADE, TRADE, EXPIRED) say EXPIRED with ``executedQty`` 0.20 and
   ``cummulativeQuoteQty`` 20.5000; the database row is status 5 (expired), 0.20 filled, 0
   remaining. A FIX market sell (59=3) into bids at 100.00, 95.00 (the edge) and 94.95 fills
   two, then 150=4 39=4 CumQty 0.20 LeavesQty 0 AvgPx 97.5. Holds equal the books' needs, no
   hold is left on either, and every balance equals the trades under the fee rule exactly.
2. A REST stop-market sell triggered by a trade at its stop sells into a thin book down to
   the band from its stop (94.05) and no further: EXPIRED with 0.10 filled; holds released.
3. Before any trade: a MARKET buy without a price is refused NO_REFERENCE_PRICE (REST -2010
   and FIX 150=8 both naming 2011), a MARKET sell into an empty book NO_LIQUIDITY, a MARKET
   sell into bids trades within the band of the best bid. Halted: SYMBOL_HALTED, nothing
   held; resumed: a market buy is capped from the last trade before the halt (95.00: 99.75),
   takes 99.00 and leaves 100.00.
4. REST MARKET with ``timeInForce`` GTC or DAY is refused -1106 naming it; IOC and FOK taken
   (a FOK that cannot fill within the band EXPIRED, nothing filled, nothing held);
   ``quoteOrderQty`` refused -1104 (exchangeInfo says ``quoteOrderQtyMarketAllowed`` false);
   exchangeInfo's ``bandBps`` is the config's 500.

Leads not shown:
- FIX takes a market order with TimeInForce GTC (59=1) or Day (59=0, or none) and echoes it
  (59=1 on its reports; the REST view then says ``timeInForce`` GTC on a MARKET order) while
  the REST API refuses the same order -1106; it trades as IOC either way, so no wrong fill.
  Not a stated claim.
- The REST refusal of a market order has no Binance-like reason text for the band (Binance's
  "PERCENT_PRICE_BY_SIDE"); not a stated claim.
- ``avgPrice`` in the order answers: none (Binance spot has none either; README's
  ``avgPrice`` is the public endpoint, not reached here).
- A market buy's cap is drawn from the router's last trade, which lags the matcher by the
  events in flight: a buy sent right behind a sweep is capped from the price before it. Not
  constructed deterministically in the rig (one loop steps router and matcher together).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from procs.common.types import AdminAction
from procs.dbwriter.projection import EXPIRED
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import RestClient
from tests.unit.gateway.harness import BTC, USD, Harness, settled
from tests.unit.gateway.rest_rig import ALICE, client, fix_user, rest_exchange, run
from tests.unit.gateway.test_review214_views_of_fills import (
    balances,
    ended,
    fix_order,
    fix_until,
    holds_agree,
    open_stream,
    ring_trades,
    settled_as_readme,
    stream_until,
    users,
)
from tests.unit.gateway.test_review253_fix_rest_parity import _drain, _send_d
from tests.unit.gateway.test_security_status import admin
from tests.unit.test_review301_stp_surfaces import ex, first_trade, rest_order, rows

__all__ = ["ex"]  # review 301's exchange, a fixture here

ORDER = "/api/v1/order"
SYM: dict[str, Any] = {"symbol": "BTC-USD"}
BUY, SELL = "1", "2"
MARKET: dict[str, Any] = {**SYM, "type": "MARKET"}
GTC: dict[str, Any] = {"type": "LIMIT", "timeInForce": "GTC"}


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    """ALICE with dollars, BOB with bitcoin, no database (``rest_rig``)."""
    yield from rest_exchange(instance, tmp_path)


def _held(h: Harness, account: int) -> tuple[int, int]:
    """(USD, BTC) the router holds for ``account``."""
    accounts = h.router.sequencer.accounts
    return accounts.balance(account, USD)[1], accounts.balance(account, BTC)[1]


def _halted(h: Harness) -> bool:
    return bool(h.matcher.matcher.books[1].halted)


async def _ask(bob: RestClient, price: str, qty: str) -> None:
    await bob.call("POST", ORDER, **SYM, side="SELL", price=price, quantity=qty, **GTC)


async def _traded_at_100(alice: RestClient, bob: RestClient) -> None:
    """BOB sells ALICE 0.01 at 100.00 (the last trade, the cap's reference), then takes his
    rest away: the asks are empty."""
    await _ask(bob, "100.00", "0.02")
    await alice.call("POST", ORDER, **SYM, side="BUY", price="100.00", quantity="0.01", **GTC)
    await bob.call("DELETE", "/api/v1/openOrders", **SYM)


# -- sound --------------------------------------------------------------------------------------


def test_sound_a_sweep_stops_at_the_band_edge_on_every_surface(ex: Harness) -> None:
    """Scenario: after a trade at 100.00 (band 500 bps), BOB asks 0.10 at 100.00, 105.00 (the
    band's edge) and 105.05; ALICE, her stream open, sends a REST market buy of 0.30. Then
    ALICE bids 0.10 at 100.00, 95.00 (the edge) and 94.95 and CAROL sends a FIX market sell
    of 0.30 (59=3). Expected: the buy takes 100.00 and 105.00, the rest EXPIRED (answer, GET,
    stream, database row); the sell takes 100.00 and 95.00, 150=4 39=4 CumQty 0.20 AvgPx
    97.5; holds are the books' needs and balances the trades' to the minor unit. Now: so."""

    async def scenario(api: RestApi, url: str) -> None:
        alice_api, bob_api, _alice, bob, carol = await users(ex, url)
        start = balances(ex)
        await first_trade(bob, carol)
        for price in ("100.00", "105.00", "105.05"):
            await _ask(bob_api, price, "0.10")
        ws = await open_stream(alice_api)
        mkt = await rest_order(alice_api, "BUY", type="MARKET", quantity="0.30")
        assert (mkt["status"], mkt["executedQty"], mkt["cummulativeQuoteQty"]) == (
            "EXPIRED", "0.20", "20.5000"
        ), mkt  # fmt: skip
        assert [(f["price"], f["qty"]) for f in mkt["fills"]] == [
            ("100.00", "0.10"), ("105.00", "0.10")
        ]  # fmt: skip
        told = await stream_until(ws, lambda r: any(x["executionType"] == "EXPIRED" for x in r))
        mine = [(x["executionType"], x["status"], x["executedQty"]) for x in told
                if x["orderId"] == mkt["orderId"]]  # fmt: skip
        assert mine == [
            ("NEW", "NEW", "0.00"), ("TRADE", "PARTIALLY_FILLED", "0.10"),
            ("TRADE", "PARTIALLY_FILLED", "0.20"), ("EXPIRED", "EXPIRED", "0.20"),
        ]  # fmt: skip
        view = await alice_api.call("GET", ORDER, **SYM, orderId=mkt["orderId"])
        assert (view["status"], view["executedQty"]) == ("EXPIRED", "0.20"), view
        holds_agree(ex)
        for price in ("100.00", "95.00", "94.95"):
            await alice_api.call(
                "POST", ORDER, **SYM, side="BUY", price=price, quantity="0.10", **GTC
            )
        await fix_order(carol, "CM", SELL, "0.30", (40, "1"), (59, "3"))
        reports = await fix_until(carol, ended("CM"))
        last = reports[-1]
        assert [m.get(150) for m in reports] == [b"0", b"F", b"F", b"4"], [str(m) for m in reports]
        assert (last.get(39), last.get(14), last.get(151)) == (b"4", b"0.20", b"0.00")
        assert float(last.get(6)) == 97.5, str(last)
        assert [(t.price, t.qty) for t in ring_trades(ex)][-4:] == [
            (10_000, 10), (10_500, 10), (10_000, 10), (9_500, 10)
        ]  # fmt: skip
        holds_agree(ex)
        assert await rows(ex, mkt["orderId"]) == {mkt["orderId"]: (EXPIRED, 20, 0)}
        assert balances(ex) == settled_as_readme(ring_trades(ex), start)
        for c in (alice_api, bob_api):
            await c.close()

    run(ex, scenario)


def test_sound_a_stop_market_triggered_into_a_thin_book_stops_at_its_band(ex: Harness) -> None:
    """Scenario: after a trade at 100.00, ALICE's REST STOP_LOSS sell of 0.30 at stop 99.00;
    BOB bids 0.05 at 99.00, 0.10 at 95.00 and 0.10 at 94.00; CAROL sells 0.05 at 99.00 over
    FIX (IOC), a trade at the stop. Expected: the stop triggers and sells 0.10 at 95.00, not
    at 94.00 (past 94.05, the band from its stop); EXPIRED with 0.10 filled; no hold left on
    ALICE's bitcoin; balances the trades'. Now: so."""

    async def scenario(api: RestApi, url: str) -> None:
        alice_api, bob_api, _alice, bob, carol = await users(ex, url)
        start = balances(ex)
        await first_trade(bob, carol)
        stop = await rest_order(
            alice_api, "SELL", type="STOP_LOSS", stopPrice="99.00", quantity="0.30"
        )
        assert stop["status"] == "NEW", stop
        for price, qty in (("99.00", "0.05"), ("95.00", "0.10"), ("94.00", "0.10")):
            await bob_api.call("POST", ORDER, **SYM, side="BUY", price=price, quantity=qty, **GTC)
        await fix_order(carol, "C1", SELL, "0.05", (40, "2"), (44, "99.00"), (59, "3"))
        await fix_until(carol, ended("C1"))
        view = await alice_api.call("GET", ORDER, **SYM, orderId=stop["orderId"])
        assert (view["status"], view["executedQty"]) == ("EXPIRED", "0.10"), view
        assert [(t.price, t.qty) for t in ring_trades(ex)][-2:] == [(9_900, 5), (9_500, 10)]
        holds_agree(ex)
        assert _held(ex, ALICE) == (0, 0)
        assert balances(ex) == settled_as_readme(ring_trades(ex), start)
        for c in (alice_api, bob_api):
            await c.close()

    run(ex, scenario)


def test_sound_the_reference_before_a_trade_and_across_a_halt(harness: Harness) -> None:
    """Scenario: no trade yet; ALICE's market buy without a price (REST and FIX), BOB's market
    sell into an empty book; ALICE bids 100.00, 95.00 and 94.95, BOB sells 0.30 at market.
    Then a halt: a market buy is refused; after the resume, asks 0.10 at 99.00 and 100.00
    and a market buy of 0.20. Expected: NO_REFERENCE_PRICE (2011) both ways, NO_LIQUIDITY
    (3005), the sell takes 100.00 and 95.00; SYMBOL_HALTED; after the resume the buy is
    capped from the last trade, 95.00, as before the halt (99.75): 0.10 at 99.00, not
    100.00; nothing held after any of them. Now: so."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        fix = await fix_user(harness, "ALICE", "alice-pw")
        try:
            status, body = await alice.request("POST", ORDER, **MARKET, side="BUY", quantity="1")
            assert status == 400 and "NO_REFERENCE_PRICE (2011)" in body["msg"], body
            await _send_d(fix, "M1", (54, BUY), (40, "1"), (59, "3"), (38, "0.10"))
            told = await _drain(fix, 0.3)
            assert [m[150] for m in told] == [b"8"] and b"2011" in told[0][58], told
            status, body = await bob.request("POST", ORDER, **MARKET, side="SELL", quantity="1")
            assert status == 400 and "NO_LIQUIDITY (3005)" in body["msg"], body
            for price in ("100.00", "95.00", "94.95"):
                await alice.call(
                    "POST", ORDER, **SYM, side="BUY", price=price, quantity="0.10", **GTC
                )
            sold = await bob.call("POST", ORDER, **MARKET, side="SELL", quantity="0.30")
            assert (sold["status"], sold["executedQty"]) == ("EXPIRED", "0.20"), sold
            assert [f["price"] for f in sold["fills"]] == ["100.00", "95.00"], sold
            await alice.call("DELETE", "/api/v1/openOrders", **SYM)
            admin(harness, AdminAction.HALT)
            await settled(lambda: _halted(harness))
            status, body = await alice.request("POST", ORDER, **MARKET, side="BUY", quantity="1")
            assert status == 400 and "SYMBOL_HALTED" in body["msg"], body
            admin(harness, AdminAction.RESUME)
            await settled(lambda: not _halted(harness))
            for price in ("99.00", "100.00"):
                await _ask(bob, price, "0.10")
            mkt = await alice.call("POST", ORDER, **MARKET, side="BUY", quantity="0.20")
            assert (mkt["status"], mkt["executedQty"]) == ("EXPIRED", "0.10"), mkt
            assert [f["price"] for f in mkt["fills"]] == ["99.00"], mkt
            assert _held(harness, ALICE) == (0, 0)
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)


def test_sound_times_in_force_and_unknown_parameters(harness: Harness) -> None:
    """Scenario: after a trade at 100.00, asks 0.10 at 100.00 and 110.00; ALICE sends REST
    MARKET buys with timeInForce GTC, DAY, FOK 0.20 (only 0.10 within the band) and IOC,
    and one with quoteOrderQty. Expected: GTC and DAY refused -1106 naming them; the FOK
    EXPIRED with nothing filled and nothing held; the IOC fills 0.01; quoteOrderQty refused
    -1104; exchangeInfo's bandBps 500 and quoteOrderQtyMarketAllowed false. Now: so."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        try:
            await _traded_at_100(alice, bob)
            for price in ("100.00", "110.00"):
                await _ask(bob, price, "0.10")
            for tif in ("GTC", "DAY"):
                status, body = await alice.request(
                    "POST", ORDER, **MARKET, side="BUY", quantity="0.01", timeInForce=tif
                )
                assert (status, body["code"]) == (400, -1106) and tif in body["msg"], body
            fok = await alice.call(
                "POST", ORDER, **MARKET, side="BUY", quantity="0.20", timeInForce="FOK"
            )
            assert (fok["status"], fok["executedQty"], fok["fills"]) == ("EXPIRED", "0.00", [])
            assert _held(harness, ALICE) == (0, 0)
            ioc = await alice.call(
                "POST", ORDER, **MARKET, side="BUY", quantity="0.01", timeInForce="IOC"
            )
            assert (ioc["status"], ioc["executedQty"]) == ("FILLED", "0.01"), ioc
            status, body = await alice.request(
                "POST", ORDER, **MARKET, side="BUY", quantity="0.01", quoteOrderQty="1.00"
            )
            assert (status, body["code"]) == (400, -1104), body
            info = await alice.call("GET", "/api/v1/exchangeInfo", signed=False)
            row = info["symbols"][0]
            assert (row["bandBps"], row["quoteOrderQtyMarketAllowed"]) == (500, False), row
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)


# -- faults -------------------------------------------------------------------------------------


def test_a_market_buy_with_a_worst_price_is_capped_from_the_last_trade(
    harness: Harness,
) -> None:
    """Scenario: before any trade, with BOB's ask at 100.00, ALICE sends a REST MARKET buy of
    0.01 with price=120.00; then (the last trade 100.00, band 500 bps: the cap 105.00; once
    the first is refused, ALICE's limit buy of 0.01 at 100.00 makes that trade) BOB's
    rest is cancelled, he asks 0.10 at 106.00, and ALICE sends a MARKET buy of 0.01 with
    price=110.00. Expected (README router: "market buy: capped at the band above the last
    trade ... the matcher never trades above it"; code 2011 "a market buy ... before the
    symbol's first trade"): the first refused NO_REFERENCE_PRICE, the second trading at no
    more than 105.00 (here: nothing; refused PRICE_OUT_OF_BAND, fault 2). Was (fixed): the
    first FILLED at 100.00, the second FILLED at 106.00, 1% past the cap the same buy without
    a price meets."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        try:
            await _ask(bob, "100.00", "0.10")
            status, first = await alice.request(
                "POST", ORDER, **MARKET, side="BUY", quantity="0.01", price="120.00"
            )
            if status == 400:  # refused: the trade at 100.00 the scenario's cap is drawn from
                await alice.call(
                    "POST", ORDER, **SYM, side="BUY", price="100.00", quantity="0.01", **GTC
                )
            await bob.call("DELETE", "/api/v1/openOrders", **SYM)
            await _ask(bob, "106.00", "0.10")
            s_second, second = await alice.request(
                "POST", ORDER, **MARKET, side="BUY", quantity="0.01", price="110.00"
            )
            paid = [f["price"] for f in second.get("fills", [])]
            assert (status, paid) == (400, []), (first, second)
            assert "NO_REFERENCE_PRICE" in first["msg"], first
            assert s_second == 400 and "PRICE_OUT_OF_BAND" in second["msg"], second
            assert "its cap, the last trade plus bandBps 500 bps" in second["msg"], second
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)


def test_a_market_buy_its_cap_keeps_from_the_ask_is_refused_naming_the_band(
    harness: Harness,
) -> None:
    """Scenario: a trade at 100.00 (band 500 bps: the router's cap 105.00); the asks move to
    0.10 at 106.00, within 5% of the best ask itself; ALICE sends a REST MARKET buy of 0.01
    without a price, then a STOP_LOSS buy 0.01 with stopPrice 100.00 (triggering on arrival).
    Expected: the market buy trades within the band README's matcher section names (from the
    best opposite price), or is refused naming the band, as the stop is (PRICE_OUT_OF_BAND,
    bandBps: "it could not trade"). Was (fixed): the stop is refused so, the market buy is
    answered 200 EXPIRED, executedQty 0.00, no fills and no reason."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        try:
            await _traded_at_100(alice, bob)
            await _ask(bob, "106.00", "0.10")
            s_stop, stop = await alice.request(
                "POST", ORDER, **SYM, side="BUY", type="STOP_LOSS", stopPrice="100.00",
                quantity="0.01",
            )  # fmt: skip
            assert s_stop == 400 and "PRICE_OUT_OF_BAND" in stop["msg"], stop
            status, mkt = await alice.request("POST", ORDER, **MARKET, side="BUY", quantity="0.01")
            refused = status == 400 and "PRICE_OUT_OF_BAND" in mkt["msg"]
            assert refused or mkt.get("executedQty") == "0.01", mkt
            assert "is below the best ask: capped, it could not trade" in mkt["msg"], mkt
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)
