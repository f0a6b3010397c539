"""A hostile review (the 87th) of the client ids filed with their orders: ``NewOrder`` and
``ReplaceOrder`` carry ``client_id`` (``records.py``), the database writer files it in
``orders.client_order_id`` (``projection.py``, ``copy.py``, migration 0013), and the REST API
falls back to it for an ``origClientOrderId`` the gateway no longer remembers
(``rest_named.py``, ``History.order_by_client_id``).

Faults, each pinned by a test that failed on the code it was written against (9801fa0); all
six are fixed since, the same session: the lookup is by the request's symbol and asks the
orders the writer has not filed first (``UnfiledOrders.named``), an amend sends no client
id, a Replaced from another gateway clears a followed view's id until its row says it, a
view without an id is completed from its row (and the pair checked against it), an id no
row can hold is not looked up, and README says what a replace to a longer ClOrdID files:

1. The database fallback ignores the request's ``symbol`` (``history.py:250-258``
   ``order_by_client_id``, called by ``rest_named.py:43-47``): it takes the account's newest
   row of the id on any symbol, and the caller then finds that row on the wrong symbol and
   answers -2013 "does not exist" (``rest.py`` ``query_order``; the amend and the cancel
   likewise), although an order of that id on the asked symbol is filed. An id is unique
   among an account's open orders only, so a grid script's ``g-1`` on two symbols is normal.
   Expected: the BTC-USD order. Actual: 400 -2013 for an order that exists. (High.)
2. An id used again, whose newest order the gateway has forgotten before the writer filed
   it (the writer lags: ``keep_done`` is a count, not a wait for the database), is answered
   as the *older* order of that id (``rest_named.py:43-47``: "the newest order the database
   files", not the newest order). README (REST) says such an id is answered 504 (-1007,
   status unknown); a Binance client reads the old order's FILLED/EXPIRED as its new order's
   fate. Expected: 504, or the newer order. Actual: 200 with the older order. (High that it
   happens; medium on severity: it needs a reused id and a lagging writer.)
3. A REST amend renames the order in the history to the id of the API's *view* of it
   (``rest_orders.py:239``, ``client_id_of(order.client_order_id...)``), which is stale for
   an order replaced on another gateway: the view took the row's id when a listing completed
   it (``LiveOrder.complete``), and a ``Replaced`` renames only an order of this gateway's
   FIX side (``rest_orders.py:385-387``). So FIX's replace to ``ext-2`` is undone by a later
   REST amend: the row is ``ext-1`` again, the id FIX gave up; once forgotten, ``ext-2``
   names nothing over REST and ``ext-1`` names it. An amend keeps the order's id
   (``rest_amend.py``: "Its clientOrderId stays as it is"), so it should send b"" ("not
   kept, the history keeps the one it had", ``records.py`` ``ReplaceOrder.client_id``).
   Expected: ``ext-2`` filed. Actual: ``ext-1``. (High.)
4. The live view of an order followed from another gateway's ``Accepted`` has clientOrderId
   '' (``rest_order_state.py:203`` ``from_accepted``) and takes the row's only when some
   listing happens to complete it (``LiveOrder.complete``: ``allOrders``, a mass cancel),
   never in ``GET order`` by ``orderId`` (``rest.py:502`` completes only a ``partial``
   view). So with the row filed, ``GET order?orderId=`` says '' while
   ``allOrders`` says ``ext-1``, and ``orderId`` with ``origClientOrderId=ext-1`` is refused
   -1100 "do not name the same order" (``rest_named.py:50-58``: the view's '' is compared, the
   row is asked only for an order not known here). README: "`orderId` with
   `origClientOrderId` must name the same order there too", "its `clientOrderId` the row's".
   Expected: ``ext-1`` and the pair answered. Actual: '' and -1100. (High.)
5. An ``origClientOrderId`` with a NUL (no id ever filed has one: ``client_id_of`` keeps
   printable ASCII, the API's ids are A-Z a-z 0-9 . _ : / -) goes to PostgreSQL, which refuses
   the text parameter; ``RestApi.db`` turns that into 503 -1001 "the history database did not
   answer" (``rest_named.py:44``, ``rest.py:429-436``), and logs a database failure. Expected:
   -2013 as without a database. Actual: 503, a retryable outage that is none. (High; low
   severity.)
6. README (REST) says a FIX order's filed client id is "the ClOrdID a FIX order was placed
   or last replaced with, where that is at most 36 printable ASCII characters; '' for a
   longer one". An order replaced with a longer ClOrdID keeps the one it had before
   (``projection.py:353-354``, ``if self._renamed``), so the history names it by a ClOrdID
   FIX has replaced (its OrigClOrdID), the one REST's live view no longer shows. Expected
   (README): ''. Actual: the old ClOrdID. (High that README and code differ; which is meant
   is the author's call: ``records.py`` documents the code's behaviour.)

What holds (passing tests pin some): the fallback is the account's own
(``WHERE account_id``): BOB neither sees nor cancels ALICE's filed order by her id, and his
cancel by her order's ``orderId`` is refused by the matcher's owner check. The build's
journal schema id is the key ``LEGACY_SCHEMA_IDS`` gives the old ids under
(0x52452A093320; 0x5245F1ADAD78 since 2026-11-29), and the slot is 152 bytes (``NewOrder``
142 + 10 framing), as README says;
an old build's 128-byte entries decode with ``client_id`` b"" (``test_client_id_records.py``).
A writer snapshot of the build before (``OrderRow`` arrays without ``client_id``) decodes,
each open order with b"". Old database rows get '' (``NOT NULL DEFAULT ''``), and '' is never
looked up (an empty parameter is refused before). The writer's checkpoint CRC after an
upgrade is compared with the image as stored too (``writer._entry_crcs``, review 83). A
ClOrdID over 36 bytes, non-ASCII or unprintable is carried as b"" (never cut), and a REST amend
of a FIX order with such an id sends b"" (``client_id_of`` again), so nothing over 36 bytes
reaches a record; a FIX order amended over REST and then replaced over FIX is filed under
the FIX replace's ClOrdID and found by it once forgotten. Read, not tested: a cancel by a
forgotten id whose row is on another symbol reaches the asked symbol's book only, as
"unknown order" (books are per symbol), so no other symbol's order is cancelled; the
orders upsert updates ``client_order_id`` with the other columns (``store.py``). Noted, not
counted: while a FIX order of a ClOrdID over 36 characters is open and followed,
``allOrders`` shows the live view's long id, its row ''.

Rigs: ``rest_rig.py`` (real HTTP and FIX in front of real rings, router and matcher in
process), the database tests' private PostgreSQL, the writer run by hand
(``unfiled_rig.file_all``); gateway 0 (the harness's funder ring) stands for another
gateway's FIX sessions; a second symbol, XBT-USD (BTC against USD again), where a fault
needs one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest

from config.edges import RestConfig
from config.schema import DatabaseConfig, SymbolConfig
from procs.common.journal import LEGACY_SCHEMA_IDS
from procs.common.record_codec import SLOT_FRAMING, RecordCodec
from procs.common.record_layout import max_encoded_size
from procs.common.records import NewOrder, ReplaceOrder
from procs.common.types import OrdType, Side, StpMode, TimeInForce
from procs.dbwriter.projection import OrderRow
from procs.gateway.rest import RestApi
from tests.unit.gateway import unfiled_rig
from tests.unit.gateway.harness import FUNDER, Harness, config, settled, utc
from tests.unit.gateway.rest_rig import ALICE, LIMIT, client, fix_user, push_out, rest_exchange, run
from tests.unit.gateway.test_review17_outcomes import fix_order

ORDER = "/api/v1/order"
SELL = {**LIMIT, "side": "SELL"}
XBT = SymbolConfig(name="XBT-USD", id=2, price_decimals=2, qty_decimals=2, tick=5, base="BTC")


@pytest.fixture
def with_history(instance: str, tmp_path: Path, dsn: str) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path, DatabaseConfig(dsn=dsn))


@pytest.fixture
def two_symbols(instance: str, tmp_path: Path, dsn: str) -> Iterator[Harness]:
    """``with_history``'s exchange (``rest_rig.rest_exchange``) with XBT-USD beside BTC-USD,
    on the same matcher; ALICE with dollars."""
    rest = RestConfig(
        port=0, key_rate_per_s=1_000, key_burst=1_000, login_rate_per_s=100, login_burst=100,
        max_streams=2, stream_queue=16,
    )  # fmt: skip
    cfg = config(instance, tmp_path, rest=rest)
    matchers = [msgspec.structs.replace(cfg.matchers[0], symbols=["BTC-USD", "XBT-USD"])]
    cfg = msgspec.structs.replace(
        cfg, symbols=[*cfg.symbols, XBT], matchers=matchers, database=DatabaseConfig(dsn=dsn)
    )
    h = Harness(cfg)
    h.add_user("ALICE", "alice-pw", ALICE)
    h.fund(ALICE, usd=1_000_000 * 10**6, btc=0)
    yield h
    h.close()


def _filed(h: Harness) -> dict[int, str]:
    """The orders table's client ids, by order id (what the writer filed)."""
    with psycopg.connect(h.cfg.database.dsn) as conn:
        rows = conn.execute("SELECT id, client_order_id FROM orders").fetchall()
    return {int(oid): str(cid) for oid, cid in rows}


def _elsewhere(ref: int, client_id: bytes) -> NewOrder:
    """ALICE's resting bid of 0.10 at 100.00 on BTC-USD through another gateway (gateway 0),
    under ``client_id``, as a FIX session there places one."""
    return NewOrder(
        *(0, time.time_ns(), FUNDER, 1, ref, ALICE, 1, 0), side=Side.BUY, ord_type=OrdType.LIMIT,
        tif=TimeInForce.GTC, flags=0, stp=StpMode.NONE, price=10_000, qty=10, stop_price=0,
        display_qty=0, client_id=client_id,
    )  # fmt: skip


def _replace_elsewhere(ref: int, oid: int, price: int, client_id: bytes) -> ReplaceOrder:
    """That gateway's FIX session replaces it (a new price, a new ClOrdID)."""
    return ReplaceOrder(
        0, time.time_ns(), FUNDER, 1, ref, ALICE, 1, oid, price, 10, client_id=client_id
    )


async def _as(url: str, user: str, method: str, **params: Any) -> tuple[int, Any]:
    c = await client(url, user, f"{user.lower()}-pw")
    try:
        return await c.request(method, ORDER, **params)
    finally:
        await c.close()


async def _listed(url: str, symbol: str = "BTC-USD") -> dict[int, str]:
    """ALICE's allOrders: orderId -> clientOrderId."""
    c = await client(url, "ALICE", "alice-pw")
    try:
        rows = await c.call("GET", "/api/v1/allOrders", symbol=symbol)
    finally:
        await c.close()
    return {row["orderId"]: row["clientOrderId"] for row in rows}


async def _ioc(url: str, client_id: str, symbol: str = "BTC-USD") -> dict[str, Any]:
    """ALICE's IOC bid under ``client_id`` that nothing fills: EXPIRED."""
    alice = await client(url, "ALICE", "alice-pw")
    try:
        placed: dict[str, Any] = await alice.call(
            "POST", ORDER, **{**LIMIT, "symbol": symbol}, price="10.00", quantity="0.10",
            timeInForce="IOC", newClientOrderId=client_id,
        )  # fmt: skip
    finally:
        await alice.close()
    assert placed["status"] == "EXPIRED", placed
    return placed


def test_a_forgotten_id_is_found_on_the_symbol_asked(two_symbols: Harness) -> None:
    """ALICE's ``g-1`` on BTC-USD expires, then her ``g-1`` on XBT-USD (ids are unique among
    open orders only); both are forgotten and filed. ``GET order`` on BTC-USD by ``g-1``
    must answer the BTC-USD order; it answers -2013 "does not exist" (the XBT-USD row is
    the account's newest under the id, and is on the wrong symbol)."""
    h = two_symbols
    answers: dict[str, Any] = {}

    async def scenario(api: RestApi, url: str) -> None:
        api.core.keep_done = 1
        answers["btc"] = await _ioc(url, "g-1")
        await _ioc(url, "g-1", "XBT-USD")
        await push_out(url)
        await unfiled_rig.file_all(h)
        answers["get"] = await _as(url, "ALICE", "GET", symbol="BTC-USD", origClientOrderId="g-1")

    run(h, scenario)
    status, found = answers["get"]
    assert (status, found.get("orderId")) == (200, answers["btc"]["orderId"]), found


def test_a_reused_id_not_filed_yet_is_not_answered_as_its_older_order(
    with_history: Harness,
) -> None:
    """ALICE's ``dup`` expires and is filed; her next ``dup`` expires too and, with the writer
    behind, is forgotten before it is filed. ``GET order`` by ``dup`` answers the first
    order (200, its orderId): the client takes an old order's end for its new order's. The
    README promises 504 (-1007) for an id not filed yet; the newer order would do too."""
    h = with_history
    answers: dict[str, Any] = {}

    async def scenario(api: RestApi, url: str) -> None:
        api.core.keep_done = 1
        answers["first"] = await _ioc(url, "dup")
        await unfiled_rig.file_all(h)
        answers["second"] = await _ioc(url, "dup")
        await push_out(url)  # the second forgotten; the writer has not filed it
        answers["get"] = await _as(url, "ALICE", "GET", symbol="BTC-USD", origClientOrderId="dup")

    run(h, scenario)
    status, found = answers["get"]
    first, second = answers["first"]["orderId"], answers["second"]["orderId"]
    assert first != second
    assert status == 504 or found.get("orderId") == second, (first, second, status, found)


def test_a_rest_amend_keeps_the_id_a_replace_elsewhere_gave(with_history: Harness) -> None:
    """ALICE's bid placed through another gateway as ``ext-1``, filed, listed by ALICE,
    replaced there as ``ext-2`` (its FIX session's ClOrdID now, filed), then amended over
    REST: the history must name it ``ext-2``; it names it ``ext-1`` again."""
    h = with_history
    answers: dict[str, Any] = {}

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)  # the schema
        alice = await client(url, "ALICE", "alice-pw")
        try:
            await alice.call("GET", "/api/v1/openOrders")  # ALICE followed here from now on
            h.funder.publish_batch([_elsewhere(1, b"ext-1")])
            await settled(h.caught_up, 10.0)  # read by the router, its events by the gateway
            (listed,) = await alice.call("GET", "/api/v1/openOrders")
            oid = listed["orderId"]
            await unfiled_rig.file_all(h)
            answers["before"] = await asyncio.to_thread(_filed, h)
            answers["seen"] = await _listed(url)  # ALICE lists it: ``ext-1`` (the row's)
            h.funder.publish_batch([_replace_elsewhere(2, oid, 10_100, b"ext-2")])
            await settled(h.caught_up, 10.0)  # read by the router, its events by the gateway
            await unfiled_rig.file_all(h)
            answers["replaced"] = await asyncio.to_thread(_filed, h)
            answers["amend"] = await alice.request(
                "PUT", ORDER, symbol="BTC-USD", orderId=oid, price="102.00"
            )
            await unfiled_rig.file_all(h)
            answers["oid"] = oid
        finally:
            await alice.close()
        answers["after"] = await asyncio.to_thread(_filed, h)
        answers["listed"] = await _listed(url)

    run(h, scenario)
    oid = answers["oid"]
    assert answers["before"][oid] == answers["seen"][oid] == "ext-1"
    assert answers["replaced"][oid] == "ext-2"  # the writer filed the replace's id
    assert answers["amend"][0] == 200, answers["amend"]
    assert (answers["after"][oid], answers["listed"][oid]) == ("ext-2", "ext-2"), answers


def test_an_order_placed_elsewhere_is_named_by_its_filed_id(with_history: Harness) -> None:
    """ALICE's bid placed through another gateway as ``ext-1``, followed here, filed. ``GET
    order`` by its ``orderId`` must say ``ext-1`` (as ``allOrders`` will), and ``orderId``
    with ``origClientOrderId=ext-1`` must be answered; GET says '' and the pair is -1100."""
    h = with_history
    answers: dict[str, Any] = {}

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        alice = await client(url, "ALICE", "alice-pw")
        try:
            await alice.call("GET", "/api/v1/openOrders")
            h.funder.publish_batch([_elsewhere(1, b"ext-1")])
            await settled(h.caught_up, 10.0)  # read by the router, its events by the gateway
            (listed,) = await alice.call("GET", "/api/v1/openOrders")
            oid = listed["orderId"]
            await unfiled_rig.file_all(h)
            answers["get"] = await alice.call("GET", ORDER, symbol="BTC-USD", orderId=oid)
            answers["pair"] = await alice.request(
                "GET", ORDER, symbol="BTC-USD", orderId=oid, origClientOrderId="ext-1"
            )
        finally:
            await alice.close()

    run(h, scenario)
    status, _pair = answers["pair"]
    assert (answers["get"]["clientOrderId"], status) == ("ext-1", 200), answers


def test_an_id_with_a_nul_is_not_a_database_outage(with_history: Harness) -> None:
    """No filed id has a NUL; the query by one must be -2013 as without a database, not a
    503 that tells the client to retry a database that is up."""
    h = with_history
    answers: dict[str, Any] = {}

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        answers["get"] = await _as(
            url, "ALICE", "GET", symbol="BTC-USD", origClientOrderId="a\x00b"
        )

    run(h, scenario)
    status, body = answers["get"]
    assert (status, body.get("code")) == (400, -2013), body


def test_a_replace_to_a_long_clordid_keeps_the_filed_id(with_history: Harness) -> None:
    """ALICE's FIX order ``fx-9``, replaced with a 37-character ClOrdID, cancelled, filed:
    it keeps ``fx-9`` (README, as fixed: "one replaced with a longer one keeps the id it
    had"; a replace of b"" leaves the row's id, as a REST amend's must)."""
    h = with_history
    long_id = "R" * 37
    answers: dict[str, Any] = {}

    async def scenario(api: RestApi, url: str) -> None:
        api.core.keep_done = 1
        fix = await fix_user(h, "ALICE", "alice-pw")
        await fix.send("D", *fix_order("fx-9", "1", "0.01", "50.00", tif="1"))
        assert (await fix.expect("8")).get(39) == b"0"
        await fix.send(
            "G", (41, "fx-9"), (11, long_id), (55, "BTC-USD"), (54, "1"), (60, utc()),
            (38, "0.01"), (40, "2"), (44, "51.00"), (59, "1"),
        )  # fmt: skip
        assert (await fix.expect("8")).get(150) == b"5"
        await fix.send(
            "F", (41, long_id), (11, "fx-9c"), (55, "BTC-USD"), (54, "1"), (60, utc()),
            (38, "0.01"),
        )  # fmt: skip
        assert (await fix.expect("8")).get(39) == b"4"
        await push_out(url)
        await unfiled_rig.file_all(h)
        answers["filed"] = await asyncio.to_thread(_filed, h)
        answers["get"] = await _as(url, "ALICE", "GET", symbol="BTC-USD", origClientOrderId="fx-9")

    run(h, scenario)
    status, found = answers["get"]
    assert status == 200, found  # found by the id FIX replaced
    assert answers["filed"][found["orderId"]] == "fx-9", answers["filed"]


# -- what holds ---------------------------------------------------------------------------------


def test_another_account_neither_sees_nor_cancels_an_order_by_its_filed_id(
    with_history: Harness,
) -> None:
    """ALICE's open bid placed elsewhere as ``sec-1`` is filed; BOB asks for and cancels
    ``sec-1`` (and its orderId): -2013 / -2011, and it stays open."""
    h = with_history
    answers: dict[str, Any] = {}

    async def scenario(api: RestApi, url: str) -> None:
        await unfiled_rig.file_all(h)
        h.funder.publish_batch([_elsewhere(1, b"sec-1")])
        await settled(h.caught_up, 10.0)  # read by the router, its events by the gateway
        await unfiled_rig.file_all(h)
        answers["get"] = await _as(url, "BOB", "GET", symbol="BTC-USD", origClientOrderId="sec-1")
        answers["cancel"] = await _as(
            url, "BOB", "DELETE", symbol="BTC-USD", origClientOrderId="sec-1"
        )
        oid = next(iter(await _listed(url)))
        answers["cancel_id"] = await _as(url, "BOB", "DELETE", symbol="BTC-USD", orderId=oid)
        answers["mine"] = await _as(
            url, "ALICE", "GET", symbol="BTC-USD", origClientOrderId="sec-1"
        )

    run(h, scenario)
    assert answers["get"][0] == 400 and answers["get"][1]["code"] == -2013, answers["get"]
    assert answers["cancel"][0] == 400 and answers["cancel"][1]["code"] == -2013, answers
    assert answers["cancel_id"][0] == 400 and answers["cancel_id"][1]["code"] == -2011, answers
    status, mine = answers["mine"]
    assert (status, mine["status"], mine["clientOrderId"]) == (200, "NEW", "sec-1"), mine


def test_the_layout_is_the_one_readme_and_the_alias_name() -> None:
    """152-byte slots, ``NewOrder`` 142 + framing; the alias keyed by this build's id."""
    codec = RecordCodec()
    assert codec.slot_size == 152
    assert max_encoded_size(NewOrder) + SLOT_FRAMING == 152
    assert codec.journal_schema_id == 0x5245_F1AD_AD78
    assert {0x5245_E71E_F8B6, 0x5245_DCF9_48CF} <= LEGACY_SCHEMA_IDS[codec.journal_schema_id]


def test_a_writer_snapshot_of_the_build_before_restores_without_ids() -> None:
    """``OrderRow`` arrays of 17 fields (no client id) decode, the id b""."""
    old = [[5, ALICE, 1, 1, 1, 1, 10_000, 0, 10, 10, 0, 1, 0, 3, 1_000, 0, 0]]
    (row,) = msgspec.msgpack.decode(msgspec.msgpack.encode(old), type=list[OrderRow])
    assert (row.id, row.client_id) == (5, b"")


def test_a_fix_order_amended_over_rest_then_replaced_over_fix_is_filed_rightly(
    with_history: Harness,
) -> None:
    """ALICE's FIX order of a 40-character ClOrdID amended over REST: taken, filed ''
    (nothing cut, nothing over 36 bytes in a record); her FIX order ``fa-1`` amended over
    REST, then replaced over FIX as ``fa-2``: filed ``fa-2``, and found by it once
    forgotten."""
    h = with_history
    long_id = "L" * 40
    answers: dict[str, Any] = {}

    async def scenario(api: RestApi, url: str) -> None:
        api.core.keep_done = 1
        await unfiled_rig.file_all(h)  # the schema
        fix = await fix_user(h, "ALICE", "alice-pw")
        alice = await client(url, "ALICE", "alice-pw")
        try:
            await alice.call("GET", "/api/v1/openOrders")  # followed here
            for cl in (long_id, "fa-1"):
                await fix.send("D", *fix_order(cl, "1", "0.01", "50.00", tif="1"))
                assert (await fix.expect("8")).get(39) == b"0"
            ids = {o["clientOrderId"]: o["orderId"] for o in await alice.call(
                "GET", "/api/v1/openOrders"
            )}  # fmt: skip
            for cl in (long_id, "fa-1"):
                answers[cl] = await alice.request(
                    "PUT", ORDER, symbol="BTC-USD", orderId=ids[cl], price="52.00"
                )
                assert (await fix.expect("8")).get(150) == b"D"  # Restated
        finally:
            await alice.close()
        await fix.send(
            "G", (41, "fa-1"), (11, "fa-2"), (55, "BTC-USD"), (54, "1"), (60, utc()),
            (38, "0.01"), (40, "2"), (44, "53.00"), (59, "1"),
        )  # fmt: skip
        assert (await fix.expect("8")).get(150) == b"5"
        await fix.send(
            "F", (41, "fa-2"), (11, "fa-2c"), (55, "BTC-USD"), (54, "1"), (60, utc()),
            (38, "0.01"),
        )  # fmt: skip
        assert (await fix.expect("8")).get(39) == b"4"
        await push_out(url)
        await unfiled_rig.file_all(h)
        answers["filed"] = await asyncio.to_thread(_filed, h)
        answers["ids"] = ids
        answers["get"] = await _as(url, "ALICE", "GET", symbol="BTC-USD", origClientOrderId="fa-2")

    run(h, scenario)
    ids = answers["ids"]
    assert answers[long_id][0] == 200 and answers["fa-1"][0] == 200, answers
    filed = answers["filed"]
    assert (filed[ids[long_id]], filed[ids["fa-1"]]) == ("", "fa-2"), filed
    status, found = answers["get"]
    assert (status, found["orderId"], found["price"]) == (200, ids["fa-1"], "53.00"), found
