"""The orders table keeps each order's client id (``NewOrder.client_id``, 0013), so the REST
API finds an order by ``origClientOrderId`` once the gateway has forgotten it
(``rest_named.py``), a FIX order's ClOrdID too, and ``allOrders`` names it: what a script
written for Binance's spot API expects of a finished order's id (review 70's third fault).

Real HTTP and FIX in front of real rings, router and matcher in process (``rest_rig.py``),
the database tests' private PostgreSQL, the writer run by hand (``unfiled_rig.file_all``); a
``keep_done`` of 1 makes the gateway forget an order two others ended after.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from config.schema import DatabaseConfig
from procs.gateway.rest import RestApi
from tests.unit.gateway import unfiled_rig
from tests.unit.gateway.harness import Harness, utc
from tests.unit.gateway.rest_rig import ALICE, LIMIT, client, fix_user, push_out, rest_exchange, run
from tests.unit.gateway.test_review17_outcomes import fix_order

ORDER = "/api/v1/order"
SELL = {**LIMIT, "side": "SELL"}


@pytest.fixture
def with_history(instance: str, tmp_path: Path, dsn: str) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path, DatabaseConfig(dsn=dsn))


async def _fix_order_cancelled(h: Harness, cl_ord_id: str, *, new_id: str = "") -> None:
    """ALICE's FIX session places ``cl_ord_id`` (a resting bid), replaces it with ``new_id``
    (a new price) where given, and cancels it."""
    fix = await fix_user(h, "ALICE", "alice-pw")
    await fix.send("D", *fix_order(cl_ord_id, "1", "0.01", "50.00", tif="1"))
    assert (await fix.expect("8")).get(39) == b"0"
    last = cl_ord_id
    if new_id:
        await fix.send(
            "G", (41, cl_ord_id), (11, new_id), (55, "BTC-USD"), (54, "1"), (60, utc()),
            (38, "0.01"), (40, "2"), (44, "51.00"), (59, "1"),
        )  # fmt: skip
        assert (await fix.expect("8")).get(150) == b"5"  # Replaced
        last = new_id
    await fix.send(
        "F", (41, last), (11, last + "c"), (55, "BTC-USD"), (54, "1"), (60, utc()), (38, "0.01")
    )
    assert (await fix.expect("8")).get(39) == b"4"


async def _query(url: str, **params: Any) -> tuple[int, Any]:
    alice = await client(url, "ALICE", "alice-pw")
    try:
        return await alice.request("GET", ORDER, symbol="BTC-USD", **params)
    finally:
        await alice.close()


async def _listed(url: str) -> dict[int, str]:
    """ALICE's allOrders on BTC-USD: orderId -> clientOrderId."""
    alice = await client(url, "ALICE", "alice-pw")
    try:
        rows = await alice.call("GET", "/api/v1/allOrders", symbol="BTC-USD")
    finally:
        await alice.close()
    return {row["orderId"]: row["clientOrderId"] for row in rows}


async def _filled_buy(url: str, client_id: str) -> tuple[Any, dict[str, Any]]:
    """ALICE's client (for the caller to close) and her buy of 0.10 at 300.00 named
    ``client_id``, filled by BOB's sell of 0.30 (0.20 of it left resting)."""
    alice = await client(url, "ALICE", "alice-pw")
    bob = await client(url, "BOB", "bob-pw")
    try:
        await bob.call("POST", ORDER, **SELL, price="300.00", quantity="0.30")
        mine = await alice.call(
            "POST", ORDER, **LIMIT, price="300.00", quantity="0.10", newClientOrderId=client_id
        )
    except BaseException:
        await alice.close()
        raise
    finally:
        await bob.close()
    return alice, mine


def test_a_forgotten_fix_orders_clordid_names_it_through_the_database(
    with_history: Harness,
) -> None:
    """ALICE's FIX order ``fx-1``, cancelled and forgotten, is found over REST by its
    ClOrdID (review 73's fourth fault: it was -2013), and ``allOrders`` names it."""
    h = with_history
    answers: dict[str, Any] = {}

    async def scenario(api: RestApi, url: str) -> None:
        api.core.keep_done = 1
        await _fix_order_cancelled(h, "fx-1")
        await push_out(url)
        await unfiled_rig.file_all(h)
        answers["get"] = await _query(url, origClientOrderId="fx-1")
        answers["listed"] = await _listed(url)

    run(h, scenario)
    status, found = answers["get"]
    assert (status, found["status"], found["clientOrderId"]) == (200, "CANCELED", "fx-1"), found
    assert answers["listed"][found["orderId"]] == "fx-1"


def test_a_replace_files_the_orders_new_clordid(with_history: Harness) -> None:
    """A FIX replace gives the order its new ClOrdID (OrigClOrdID's chain), in the database
    as in the live views: ``fx-2r`` names it, ``fx-2`` no longer does."""
    h = with_history
    answers: dict[str, Any] = {}

    async def scenario(api: RestApi, url: str) -> None:
        api.core.keep_done = 1
        await _fix_order_cancelled(h, "fx-2", new_id="fx-2r")
        await push_out(url)
        await unfiled_rig.file_all(h)
        answers["new"] = await _query(url, origClientOrderId="fx-2r")
        answers["old"] = await _query(url, origClientOrderId="fx-2")

    run(h, scenario)
    status, found = answers["new"]
    assert (status, found["clientOrderId"], found["price"]) == (200, "fx-2r", "51.00"), found
    status, old = answers["old"]
    assert (status, old["code"]) == (400, -2013), old


def test_a_clordid_too_long_to_keep_is_filed_without_one(with_history: Harness) -> None:
    """A ClOrdID of more than 36 characters is taken, and filed as '' (not cut): the order
    is listed without a clientOrderId, and the database finds nothing by the id."""
    h = with_history
    long_id = "L" * 37
    answers: dict[str, Any] = {}

    async def scenario(api: RestApi, url: str) -> None:
        api.core.keep_done = 1
        await _fix_order_cancelled(h, long_id)
        await push_out(url)
        await unfiled_rig.file_all(h)
        history = api.history
        assert history is not None
        answers["row"] = await history.order_by_client_id(ALICE, 1, long_id)
        answers["listed"] = await _listed(url)

    run(h, scenario)
    assert answers["row"] is None
    assert long_id not in answers["listed"].values()
    assert "" in answers["listed"].values()  # the FIX order, listed without one


def test_an_id_a_refused_order_reused_still_names_the_order_it_named(
    with_history: Harness, dsn: str
) -> None:
    """ALICE's ``p-1`` fills; a post-only ``p-1`` that would take is refused (-2010) and
    filed as REJECTED. Once the gateway forgot both, ``origClientOrderId=p-1`` is the
    filled order, as before the refusal: the database's newest row under the id was the
    refused one, which no list shows; and ``GET order`` by the refused order's id is -2013
    as it was live, not its row (both found by reviews on 2026-12-03)."""
    h = with_history
    answers: dict[str, Any] = {}

    async def scenario(api: RestApi, url: str) -> None:
        api.core.keep_done = 1
        alice, answers["filled"] = await _filled_buy(url, "p-1")
        try:
            maker = {**LIMIT, "type": "LIMIT_MAKER", "price": "300.00", "quantity": "0.10"}
            answers["refused"] = await alice.request("POST", ORDER, **maker, newClientOrderId="p-1")
            for _ in range(2):  # two orders more end: the gateway forgets the first two
                await alice.call("POST", ORDER, **LIMIT, price="300.00", quantity="0.10")
        finally:
            await alice.close()
        await push_out(url)
        await unfiled_rig.file_all(h)
        answers["get"] = await _query(url, origClientOrderId="p-1")
        with psycopg.connect(dsn) as conn:
            refused = conn.execute("SELECT id FROM orders WHERE status = 8").fetchone()
        assert refused is not None
        answers["by_id"] = await _query(url, orderId=str(refused[0]))
        assert api.history is not None
        answers["row"] = await api.history.order_by_client_id(ALICE, 1, "p-1")

    run(h, scenario)
    filled = answers["filled"]
    assert filled["status"] == "FILLED", filled
    status, refused = answers["refused"]
    assert (status, refused["code"]) == (400, -2010), refused
    status, found = answers["get"]
    assert (status, found["orderId"], found["status"]) == (200, filled["orderId"], "FILLED"), found
    assert answers["row"][0] == filled["orderId"], answers["row"]  # the row it reads once forgotten
    status, by_id = answers["by_id"]
    assert (status, by_id["code"]) == (400, -2013), by_id


def test_both_ids_of_a_forgotten_order_are_checked_against_its_row(
    with_history: Harness,
) -> None:
    """``orderId`` with ``origClientOrderId`` of an order the gateway forgot: the pair that
    names one order is answered (it was -1100 "do not name the same order" once forgotten),
    a pair that does not is still refused; a cancel by the forgotten id reaches the exchange,
    which names the order as ended, not "status unknown"."""
    h = with_history
    answers: dict[str, Any] = {}

    async def scenario(api: RestApi, url: str) -> None:
        api.core.keep_done = 1
        alice, mine = await _filled_buy(url, "m-1")
        answers["mine"] = mine
        await alice.close()
        await push_out(url)
        await unfiled_rig.file_all(h)
        oid = str(mine["orderId"])
        answers["pair"] = await _query(url, orderId=oid, origClientOrderId="m-1")
        answers["wrong"] = await _query(url, orderId=oid, origClientOrderId="m-2")
        alice = await client(url, "ALICE", "alice-pw")
        try:
            answers["cancel"] = await alice.request(
                "DELETE", ORDER, symbol="BTC-USD", origClientOrderId="m-1"
            )
        finally:
            await alice.close()

    run(h, scenario)
    mine = answers["mine"]
    assert mine["status"] == "FILLED", mine
    status, pair = answers["pair"]
    assert (status, pair["orderId"], pair["status"]) == (200, mine["orderId"], "FILLED"), pair
    assert pair["clientOrderId"] == "m-1"
    status, wrong = answers["wrong"]
    assert (status, wrong["code"]) == (400, -1100), wrong
    status, cancel = answers["cancel"]
    assert (status, cancel["code"]) == (400, -2011), cancel
    assert str(mine["orderId"]) in cancel["msg"], cancel


def test_a_cancelled_fix_order_keeps_its_rest_name_across_a_restart(
    with_history: Harness,
) -> None:
    """A FIX order cancelled by ``fx-7c`` is named ``fx-7`` over REST (``Order.name``), and
    still so once a restarted gateway has taken it back from its order log."""
    h = with_history
    names: list[bytes] = []

    def name() -> bytes:
        assert h.gateway is not None
        finished = h.gateway.entry.finished_orders.values()
        ((done, _keys),) = [v for v in finished if v[0].cl_ord_id == b"fx-7c"]
        return done.name

    async def scenario(api: RestApi, url: str) -> None:
        await _fix_order_cancelled(h, "fx-7")
        names.append(name())
        await h.stop()
        await h.start()
        names.append(name())

    run(h, scenario)
    assert names == [b"fx-7", b"fx-7"]
