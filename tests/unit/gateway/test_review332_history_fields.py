"""Review 332: REST order history as a Binance client reads it.

An order answered from the database (``GET order``, ``allOrders``, ``openOrders``, the
answer to its ``DELETE``) shows ``cummulativeQuoteQty`` as a decimal string, summed from its
trades (the orders table keeps no notional), as every live view shows it; and a
``startTime``..``endTime`` window over 24 hours is refused as Binance refuses it (-1127).

Rig: ``unfiled_rig.py`` (real HTTP in front of real rings, the database tests' private
PostgreSQL behind the gateway's history, the writer run by hand with ``file_all``). ALICE's
orders are placed through another gateway (``bid_elsewhere``) while the REST gateway keeps
none of her events (``RecentElsewhere(0)``), so only the database knows them.

BTC-USD: prices 2 decimals, sizes 2 decimals: a notional has 4.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

from config.schema import SymbolConfig
from procs.common.records import CancelOrder, NewOrder
from procs.gateway.instruments import Instruments
from procs.gateway.recent_elsewhere import RecentElsewhere
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import RestClient
from procs.gateway.rest_order_state import LiveOrder
from tests.unit.gateway import unfiled_rig
from tests.unit.gateway.harness import FUNDER, Harness, settled
from tests.unit.gateway.rest_rig import ALICE, bid_elsewhere, client, order_status, run
from tests.unit.gateway.unfiled_rig import SELL, harness

__all__ = ["harness"]  # the fixture these tests take, imported

ORDER, ALL, OPEN = "/api/v1/order", "/api/v1/allOrders", "/api/v1/openOrders"
TRADES = "/api/v1/myTrades"
SYM: dict[str, Any] = {"symbol": "BTC-USD"}
DAY_MS = 86_400_000


async def filed_bid(h: Harness, api: RestApi, bob: RestClient) -> None:
    """ALICE's bid of 0.30 at 100.00, placed through another gateway, takes BOB's ask of
    0.10 at 99.00 (taker: 9.9000) and rests; BOB's IOC sell of 0.10 at 100.00 fills it
    again (maker: 10.0000). All filed: 0.20 done for 19.9000."""
    api.core.recent = RecentElsewhere(0)  # none of ALICE's events kept: the rows alone
    await bob.call("POST", ORDER, **SELL, price="99.00", quantity="0.10")
    bid: NewOrder = bid_elsewhere(1, 30)
    h.funder.publish_batch([bid])
    await settled(lambda: h.router.sequencer.accounts.open_orders(ALICE) == 1, 10.0)  # it rests
    hit = await bob.call("POST", ORDER, **SELL, price="100.00", quantity="0.10", timeInForce="IOC")
    assert hit["status"] == "FILLED", hit
    await unfiled_rig.file_all(h)


def test_an_order_only_the_database_knows_shows_its_quote_qty_in_every_view(
    harness: Harness,
) -> None:
    """Scenario: ALICE's bid, placed through another gateway, filled 0.10 at 99.00 as taker
    and 0.10 at 100.00 as maker, filed by the writer; ALICE, new to this gateway, asks GET
    order, allOrders and openOrders, cancels it (DELETE order), and once that is filed asks
    GET order and allOrders again. Expected: cummulativeQuoteQty "19.9000" in each (Binance
    always gives a decimal string: a bot computing the average fill price divides it by
    executedQty). Was (fixed): null in each (history.order_json: "the orders table keeps no
    notional")."""
    h = harness
    seen: dict[str, Any] = {}

    async def scenario(api: RestApi, url: str) -> None:
        async with await client(url, "BOB", "bob-pw") as bob:
            await filed_bid(h, api, bob)
            async with await client(url, "ALICE", "alice-pw") as alice:
                (listed,) = await alice.call("GET", ALL, **SYM)
                oid = listed["orderId"]
                seen["allOrders"] = listed
                seen["GET order"] = await order_status(alice, oid)
                (seen["openOrders"],) = await alice.call("GET", OPEN, **SYM)
                seen["DELETE order"] = await alice.call("DELETE", ORDER, **SYM, orderId=oid)
                await unfiled_rig.file_all(h)
                seen["GET order, ended"] = await order_status(alice, oid)
                (seen["allOrders, ended"],) = await alice.call("GET", ALL, **SYM)

    run(h, scenario)
    shown = {view: (o["executedQty"], o["cummulativeQuoteQty"]) for view, o in seen.items()}
    assert shown == dict.fromkeys(seen, ("0.20", "19.9000")), shown


def test_a_row_order_followed_live_goes_on_from_the_rows_quote_qty(harness: Harness) -> None:
    """Scenario: the filed bid of the test above (0.20 done for 19.9000) is listed by
    openOrders (the gateway remembers its row), then BOB fills 0.05 more at 100.00: the
    gateway follows it from its row. Expected: GET order says 0.25 for "24.9000" (the row's
    19.9000 and the new 5.0000), as allOrders does once that fill is filed. Was (fixed):
    null (``from_row`` set the notional unknown for a row with fills)."""
    h = harness
    seen: dict[str, Any] = {}

    async def scenario(api: RestApi, url: str) -> None:
        async with await client(url, "BOB", "bob-pw") as bob:
            await filed_bid(h, api, bob)
            async with await client(url, "ALICE", "alice-pw") as alice:
                (listed,) = await alice.call("GET", OPEN, **SYM)
                oid = listed["orderId"]
                await bob.call(
                    "POST", ORDER, **SELL, price="100.00", quantity="0.05", timeInForce="IOC"
                )
                seen["live"] = await order_status(alice, oid)
                await unfiled_rig.file_all(h)
                (seen["filed"],) = await alice.call("GET", ALL, **SYM)

    run(h, scenario)
    shown = {view: (o["executedQty"], o["cummulativeQuoteQty"]) for view, o in seen.items()}
    assert shown == {"live": ("0.25", "24.9000"), "filed": ("0.25", "24.9000")}, shown


def test_a_cancel_of_an_order_never_listed_here_shows_no_wrong_quote_qty(
    harness: Harness,
) -> None:
    """Scenario: the filed bid of the first test (0.20 done for 19.9000); ALICE, new to this
    gateway, cancels it by its orderId without listing it first: the gateway answers from
    the cancel's end alone (side, type, price not known here). Expected: executedQty 0.20
    and cummulativeQuoteQty null (its fills are not known here: never a wrong sum); GET
    order, from its row once filed, "19.9000". Was (fixed): "0.0000" beside 0.20 filled."""
    h = harness
    seen: dict[str, Any] = {}

    async def scenario(api: RestApi, url: str) -> None:
        async with await client(url, "BOB", "bob-pw") as bob:
            await filed_bid(h, api, bob)
            oid = (await api.need_history().orders(ALICE, 1, from_id=0, limit=10))[0][0]
            async with await client(url, "ALICE", "alice-pw") as alice:
                seen["DELETE order"] = await alice.call("DELETE", ORDER, **SYM, orderId=oid)
                await unfiled_rig.file_all(h)
                seen["GET order"] = await order_status(alice, oid)

    run(h, scenario)
    shown = {view: (o["executedQty"], o["cummulativeQuoteQty"]) for view, o in seen.items()}
    assert shown == {"DELETE order": ("0.20", None), "GET order": ("0.20", "19.9000")}, shown


def test_an_order_ended_elsewhere_takes_its_quote_qty_from_a_row_of_as_many_fills(
    harness: Harness,
) -> None:
    """Scenario: the filed bid of the first test (0.20 done for 19.9000); ALICE, now of
    interest here, has it cancelled through another gateway: the gateway sees its end alone
    (``from_done``) and the writer has not filed it. ALICE asks GET order: the end,
    completed from the row (filed before the cancel, with the same 0.20 filled). Expected:
    CANCELED, 0.20, "19.9000". Was (fixed): null (an end seen alone kept its notional
    unknown whatever the row said)."""
    h = harness
    seen: dict[str, Any] = {}

    async def scenario(api: RestApi, url: str) -> None:
        async with await client(url, "BOB", "bob-pw") as bob:
            await filed_bid(h, api, bob)
            oid = (await api.need_history().orders(ALICE, 1, from_id=0, limit=10))[0][0]
            async with await client(url, "ALICE", "alice-pw") as alice:
                await alice.call("GET", "/api/v1/account")  # of interest from now on
                cancel = CancelOrder(0, time.time_ns(), FUNDER, 1, 2, ALICE, 1, oid)
                h.funder.publish_batch([cancel])
                await settled(lambda: api.core.unfiled.ended.get(oid) is not None, 10.0)
                assert api.core.unfiled.ended.get(oid) is not None  # its end, seen alone
                seen["GET order"] = await order_status(alice, oid)

    run(h, scenario)
    got = seen["GET order"]
    assert (got["status"], got["executedQty"], got["cummulativeQuoteQty"]) == (
        "CANCELED",
        "0.20",
        "19.9000",
    ), got


def test_an_unfilled_filed_order_shows_zero_quote_qty(harness: Harness) -> None:
    """Scenario: ALICE's bid placed elsewhere, nothing filled, filed; ALICE asks GET order.
    Expected: cummulativeQuoteQty "0.0000". Was (fixed): null."""
    h = harness
    seen: dict[str, Any] = {}

    async def scenario(api: RestApi, url: str) -> None:
        api.core.recent = RecentElsewhere(0)
        h.funder.publish_batch([bid_elsewhere(1, 30)])
        await settled(lambda: h.router.sequencer.accounts.open_orders(ALICE) == 1, 10.0)
        await unfiled_rig.file_all(h)
        async with await client(url, "ALICE", "alice-pw") as alice:
            (listed,) = await alice.call("GET", ALL, **SYM)
            seen["order"] = await order_status(alice, listed["orderId"])

    run(h, scenario)
    assert seen["order"]["cummulativeQuoteQty"] == "0.0000", seen


def test_quote_qty_is_null_only_where_the_trades_filed_do_not_add_up(harness: Harness) -> None:
    """Scenario: the filed bid of the first test (0.20 done); one trade of a later batch a
    trade lane committed before its batch's orders (a trade of the order at a seq past the
    row's ``updated_seq``) is in the table: it is not counted. Then its maker trade is
    gone from the table (an operator dropped its day's partition): the trades no longer add
    up to executedQty. Expected: "19.9000" first, then null (not known: never a wrong sum).
    Was (fixed): null in both."""
    h = harness
    seen: list[Any] = []

    async def scenario(api: RestApi, url: str) -> None:
        async with await client(url, "BOB", "bob-pw") as bob:
            await filed_bid(h, api, bob)
            async with await client(url, "ALICE", "alice-pw") as alice:
                (listed,) = await alice.call("GET", ALL, **SYM)
                oid = listed["orderId"]
                with psycopg.connect(h.cfg.database.dsn, autocommit=True) as conn:
                    conn.execute(
                        "INSERT INTO trades SELECT symbol_id, trade_id + 100, seq + 1000, ts, "
                        "price, size, aggressor, maker_order_id, maker_account_id, "
                        "taker_order_id, taker_account_id FROM trades WHERE maker_order_id = %s",
                        (oid,),
                    )
                    seen.append((await order_status(alice, oid))["cummulativeQuoteQty"])
                    conn.execute("DELETE FROM trades WHERE maker_order_id = %s", (oid,))
                seen.append((await order_status(alice, oid))["cummulativeQuoteQty"])

    run(h, scenario)
    assert seen == ["19.9000", None], seen


def test_all_orders_and_my_trades_refuse_a_window_over_24_hours(harness: Harness) -> None:
    """Scenario: allOrders and myTrades with endTime - startTime = 24 h + 1 ms, then exactly
    24 h. Expected: the first refused 400 -1127, Binance's "More than 24 hours between
    startTime and endTime." naming both values; the second answered. Was (fixed): both
    answered (the database asked for any window)."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        async with unfiled_rig.users(url) as (alice, _bob):
            for path in (ALL, TRADES):
                start = 1_700_000_000_000
                status, body = await alice.request(
                    "GET", path, **SYM, startTime=start, endTime=start + DAY_MS + 1
                )
                assert (status, body["code"]) == (400, -1127), (path, body)
                msg = body["msg"]
                assert msg.startswith("More than 24 hours between startTime and endTime."), msg
                assert f"startTime {start}" in msg and f"endTime {start + DAY_MS + 1}" in msg
                day = await alice.call("GET", path, **SYM, startTime=start, endTime=start + DAY_MS)
                assert day == [], (path, day)

    run(h, scenario)


def test_a_start_after_the_end_is_still_refused_naming_both(harness: Harness) -> None:
    """Scenario: allOrders and myTrades with startTime after endTime (and more than 24 h
    apart the other way). Expected: -1023 naming both, as README documents (not -1127)."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        async with unfiled_rig.users(url) as (alice, _bob):
            for path in (ALL, TRADES):
                status, body = await alice.request(
                    "GET", path, **SYM, startTime=5 * DAY_MS, endTime=DAY_MS
                )
                assert (status, body["code"]) == (400, -1023), (path, body)
                assert f"startTime {5 * DAY_MS}" in body["msg"], body
                assert f"endTime {DAY_MS}" in body["msg"], body

    run(h, scenario)


def test_an_unknown_notional_stays_unknown_across_the_order_log() -> None:
    """Scenario: an API order whose notional a restart found unknown (a fill it missed) is
    written to the order log and read back (a second restart). Expected: still unknown
    (``cummulativeQuoteQty`` null); an entry written before the flag was kept reads as known,
    as it did. Was (fixed): the entry did not keep it, so the second restart showed the
    partial notional as known (review 332's lead)."""
    sym = SymbolConfig(name="BTC-USD", id=1, base="BTC", price_decimals=2, qty_decimals=2)
    order = LiveOrder(7, 601, sym, 1, "LIMIT", 1, 10_000, 0, 100, 50, 50, 250_000)
    order.notional_known = False
    back = LiveOrder.restore(1, order.entry(), Instruments([sym]))
    assert back is not None and not back.notional_known
    assert back.json()["cummulativeQuoteQty"] is None
    old = LiveOrder.restore(1, order.entry()[:23], Instruments([sym]))
    assert old is not None and old.notional_known
