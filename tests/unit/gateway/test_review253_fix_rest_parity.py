"""Review 253: the same order through the two ways in, FIX (D, G, F, H, q) and REST (``POST``,
``PUT``, ``DELETE`` and ``GET /api/v1/order``, ``POST batchOrders``, ``DELETE openOrders``):
the commands the router journals, the books, the answers of each side at each step of an
order's life, the refusals of the same bad input, and operations across the two (an order
placed over FIX cancelled, amended or mass cancelled through the API, and the reverse).

Reviewed: ``procs/gateway/orders.py``, ``order_fields.py``, ``order_replies.py``,
``order_memory.py`` (FIX), ``rest_params.py``, ``rest_orders.py``, ``rest_order_state.py``,
``rest_interest.py``, ``rest_client_ids.py``, ``rest_wiring.py`` (REST), the book's checks
(``procs/core/order_checks.py``). Rig: ``rest_rig.py`` (a real gateway, FIX over TCP and HTTP,
in front of real rings, router and matcher); the router's journal is read back as written.

Faults (each fixed: ``refusal_text`` names the band and the open-order limit and tells a
cancel or replace that lost its race "too late"; ``finished_ids`` finds an order that
finished as it was replaced by its id):

1. A FIX order refused for its price band is not told the band: Text (58) is
   "PRICE_OUT_OF_BAND (3004): a limit price may be at most limit_band_bps from the last trade"
   (``order_fields.py:259-278``, ``OUT_OF_BAND_NOTES``, used by ``refusal_note``), the name of
   a config key but not its value, where the REST API's refusal of the same order says
   "limitBandBps 1000 bps" and the price (``rest_params.refusal``). Fix: have ``refusal_note``
   format the symbol's ``limit_band_bps`` (``band_bps`` for a stop-market) and the price as
   ``rest_params.refusal`` does.
2. The same for an account at ``max_open_orders``: FIX says "TOO_MANY_OPEN_ORDERS (2007)",
   REST "an account may have at most 2 open orders" (``refusal_note``, ``order_fields.py:235``,
   has no case for it).
   Fix: a ``TOO_MANY_OPEN_ORDERS`` case in ``refusal_note`` naming the risk limit (the
   OrderEntry knows ``max_order_notional`` already; pass ``max_open_orders`` alike).
3. A FIX cancel that the account's REST cancel of the same order overtook is refused with
   CxlRejReason 0 (too late) and OrdStatus 4, but Text "UNKNOWN_ORDER (3000)": the order is
   not unknown, it is cancelled (``orders.py:549-565``: ``_rejected`` puts the matcher's
   code name in Text whatever the state of the request's order). The REST API says the
   same race "cancel rejected: orderId=N is CANCELED: too late to cancel" (review 6). Fix: in
   ``_rejected``, for UNKNOWN_ORDER of a request whose order has finished, say "too late: the
   order is filled/cancelled", as ``_named`` (``orders.py:326``) says for the gateway's own.
4. A FIX replace that fills its order at once (a G raising a bid through the ask) leaves the
   REST API naming the order by its old ClOrdID: ``GET order`` and the private stream say
   clientOrderId P0, and ``origClientOrderId=P1`` (the id FIX and the history now give it)
   is -2013 "order does not exist". ``RestOrders._replaced`` (``rest_orders.py:345``) renames
   it from ``_fix_order`` (``rest_wiring.py:58-64``), which finds a finished FIX order by the
   event's ``client_ref``; a Replaced's is the G's ref, while ``finished_orders`` is keyed by
   the D's, and the fill that ended the order was in the same batch, so FIX had already moved
   it out of ``by_id``. Fix: in ``_fix_order``, look a finished order up by its order id
   (an index of ``finished_orders`` by order id, kept with it).

Found sound (plain tests): every order type and time in force the matcher takes (limit
GTC/DAY/IOC/FOK, post-only, iceberg, market with and without a worst price, stop-market,
stop-limit) journaled as the same NewOrder by FIX, ``POST order`` and ``batchOrders``; a FIX
replace and a REST amend to the same terms journaled alike and leaving the same book; one
life (partial fill, cancel through the API) told alike by the ExecutionReports, ``GET
order``, a status request and the private stream, fees included; mass cancels both ways;
a stop-limit's trigger and a Day order's end of session; the refusals of a price off the tick,
a size off the lot, below the minimum, above the maximum, an iceberg slice too small or in too
many parts, each naming the value and the limit on both sides. Not a fault, noted: FIX takes
a MaxFloor equal to OrderQty where REST refuses ``icebergQty`` equal to ``quantity``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from config.schema import RingexConfig
from procs.common.journal import JournalReader
from procs.common.records import AdminCommand, NewOrder, Record, ReplaceOrder
from procs.common.topology import journal_dir
from procs.common.types import AdminAction
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import RestClient
from tests.unit.gateway.harness import CODEC, Client, Harness, settled, utc
from tests.unit.gateway.rest_rig import (
    client,
    fix_user,
    reports,
    rest_exchange,
    run,
)
from tests.unit.gateway.test_review210_replace import _resting

ORDER = "/api/v1/order"
BUY, SELL = "1", "2"
Fields = list[tuple[int, Any]]


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


async def subscribed(c: RestClient) -> Any:
    """``c``'s private stream once its snapshot came: what follows is reported, not listed
    in a snapshot taken after it (a loaded host subscribed late)."""
    ws = await c.stream()
    while (await ws.receive_json(timeout=5.0))["event"] != "snapshot":
        pass
    return ws


def _narrow(cfg: RingexConfig) -> RingexConfig:
    """BTC-USD with sizes 0.05..1.00, a 10% limit collar, at most 4 iceberg slices; two open
    orders an account."""
    sym = msgspec.structs.replace(
        cfg.symbols[0], min_qty=5, max_qty=100, limit_band_bps=1000, iceberg_parts=4
    )
    risk = msgspec.structs.replace(cfg.risk, max_open_orders=2)
    return msgspec.structs.replace(cfg, symbols=[sym], risk=risk)


@pytest.fixture
def narrow(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path, reshape=_narrow)


# -- helpers ------------------------------------------------------------------------------------


def _journaled(h: Harness) -> list[Record]:
    """The commands the router journaled, in order."""
    reader = JournalReader(
        journal_dir(h.cfg), slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id
    )
    return [CODEC.decode_slot(image) for _seq, image in reader.entries(1)]


def _new_orders(h: Harness) -> dict[bytes, NewOrder]:
    return {c.client_id: c for c in _journaled(h) if type(c) is NewOrder}


def _terms(cmd: NewOrder) -> tuple[Any, ...]:
    return (
        cmd.side, cmd.ord_type, cmd.tif, cmd.flags, cmd.stp, cmd.price, cmd.qty,
        cmd.stop_price, cmd.display_qty,
    )  # fmt: skip


async def _send_d(fix: Client, cl: str, *pairs: tuple[int, Any]) -> None:
    await fix.send("D", (11, cl), (55, "BTC-USD"), (60, utc()), *pairs)


async def _drain(fix: Client, quiet_s: float = 0.4) -> list[dict[int, bytes]]:
    """What ``fix`` receives until ``quiet_s`` passes without a message (heartbeats aside),
    each as {tag: value}."""
    out: list[dict[int, bytes]] = []
    while (m := await fix.recv(quiet_s)) is not None:
        if m.get(35) != b"0":
            out.append({int(t): v for t, v in m.pairs})
    return out


async def _ack(fix: Client, cl: str, *pairs: tuple[int, Any]) -> int:
    """A D and its New's OrderID."""
    await _send_d(fix, cl, *pairs)
    rep = await fix.expect("8", 5.0)
    assert rep.get(150) == b"0", rep
    return int(rep.get(37))


async def _sell(bob: RestClient, price: str, qty: str) -> None:
    await bob.call("POST", ORDER, symbol="BTC-USD", side="SELL", type="LIMIT", price=price,
                   quantity=qty)  # fmt: skip


async def _get(c: RestClient, **ref: Any) -> tuple[int, Any]:
    return await c.request("GET", ORDER, symbol="BTC-USD", **ref)


def _lim(price: str, qty: str, tif: str = "1") -> Fields:
    return [(54, BUY), (40, "2"), (59, tif), (44, price), (38, qty)]


# -- the same order, the same command -----------------------------------------------------------

#: (FIX fields, REST params) of one order, ALICE buying, every type and time in force.
SAME: list[tuple[Fields, dict[str, str]]] = [
    (_lim("90.00", "0.10", "1"), {"type": "LIMIT", "timeInForce": "GTC"}),
    (_lim("90.00", "0.10", "0"), {"type": "LIMIT", "timeInForce": "DAY"}),
    (_lim("90.00", "0.10", "3"), {"type": "LIMIT", "timeInForce": "IOC"}),
    (_lim("90.00", "0.10", "4"), {"type": "LIMIT", "timeInForce": "FOK"}),
    ([*_lim("90.00", "0.10"), (18, "6")], {"type": "LIMIT_MAKER"}),
    ([*_lim("90.00", "0.20"), (111, "0.05")], {"type": "LIMIT", "icebergQty": "0.05"}),
    ([(54, BUY), (40, "1"), (59, "3"), (38, "0.10")], {"type": "MARKET"}),
    ([(54, BUY), (40, "1"), (59, "3"), (44, "120.00"), (38, "0.10")],
     {"type": "MARKET", "price": "120.00"}),
    ([(54, BUY), (40, "3"), (59, "3"), (99, "110.00"), (44, "115.00"), (38, "0.10")],
     {"type": "STOP_LOSS", "stopPrice": "110.00", "price": "115.00"}),
    ([(54, BUY), (40, "4"), (59, "1"), (99, "110.00"), (44, "111.00"), (38, "0.10")],
     {"type": "STOP_LOSS_LIMIT", "stopPrice": "110.00", "price": "111.00"}),
]  # fmt: skip


def _rest_params(fields: Fields, params: dict[str, str]) -> dict[str, Any]:
    """``params`` with the side, price and quantity the FIX fields give."""
    f = dict(fields)
    out: dict[str, Any] = {"symbol": "BTC-USD", "side": "BUY", "quantity": f[38], **params}
    if "price" not in params and f[40] in ("2", "4"):
        out["price"] = f[44]
    return out


def test_the_same_order_by_fix_by_rest_and_in_a_batch_is_one_command(harness: Harness) -> None:
    """Scenario: after a first trade at 100.00, with an ask resting there, ALICE sends each
    order type and time in force the matcher takes over FIX, as ``POST order`` and in one
    ``batchOrders``. Expected: the router journals the same NewOrder terms for the three
    (side, type, time in force, flags, STP, price and stop in ticks, size and slice in lots;
    a market buy's cap alike). Now: so."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        fix = await fix_user(harness, "ALICE", "alice-pw")
        try:
            await _sell(bob, "100.00", "5.00")
            await alice.call(
                "POST", ORDER, **_rest_params(_lim("100.00", "0.01"), {"type": "LIMIT"})
            )
            for k, (fields, params) in enumerate(SAME):
                await _send_d(fix, f"F{k}", *fields)
                await _drain(fix, 0.2)
                await alice.request("POST", ORDER, newClientOrderId=f"R{k}",
                                    **_rest_params(fields, params))  # fmt: skip
            batch = [
                {**_rest_params(fields, params), "newClientOrderId": f"B{k}"}
                for k, (fields, params) in enumerate(SAME)
            ]
            await alice.batch_orders(batch)
            await settled(lambda: len(_new_orders(harness)) >= 3 * len(SAME) + 2, 5.0)
            got = _new_orders(harness)
            for k in range(len(SAME)):
                fix_terms = _terms(got[b"F%d" % k])
                assert _terms(got[b"R%d" % k]) == fix_terms, (k, SAME[k])
                assert _terms(got[b"B%d" % k]) == fix_terms, (k, SAME[k])
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)


def test_a_fix_replace_and_a_rest_amend_to_the_same_terms_are_one_command(
    harness: Harness,
) -> None:
    """Scenario: two bids 0.50 at 95.00, one over FIX, one through the API; the FIX one is
    replaced (G) to 0.30 at 96.00, the API one amended (PUT) to the same. Expected: the two
    ReplaceOrders journaled carry the same price and total; the book holds both at (96.00,
    0.30); the FIX report and the PUT answer agree. Now: so."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        fix = await fix_user(harness, "ALICE", "alice-pw")
        try:
            fid = await _ack(fix, "P0", *_lim("95.00", "0.50"))
            placed = await alice.call(
                "POST", ORDER, **_rest_params(_lim("95.00", "0.50"), {"type": "LIMIT"})
            )
            await fix.send("G", (11, "P1"), (41, "P0"), (55, "BTC-USD"), (60, utc()),
                           *_lim("96.00", "0.30"))  # fmt: skip
            rep = await fix.expect("8", 5.0)
            amended = await alice.call("PUT", ORDER, symbol="BTC-USD", orderId=placed["orderId"],
                                       price="96.00", quantity="0.30")  # fmt: skip
            assert (rep.get(150), rep.get(44), rep.get(38), rep.get(151)) == (
                b"5",
                b"96.00",
                b"0.30",
                b"0.30",
            )
            assert (amended["price"], amended["origQty"], amended["status"]) == (
                "96.00",
                "0.30",
                "NEW",
            )
            replaces = [c for c in _journaled(harness) if type(c) is ReplaceOrder]
            assert [(c.price, c.order_qty) for c in replaces] == [(9_600, 30), (9_600, 30)]
            book = _resting(harness)
            assert book[fid] == book[placed["orderId"]] == (9_600, 30, 0)
        finally:
            await alice.close()

    run(harness, scenario)


# -- one life, both views -----------------------------------------------------------------------


def test_one_life_is_told_alike_by_fix_and_by_the_api(harness: Harness) -> None:
    """Scenario: ALICE's FIX bid 0.50 at 100.00 fills 0.35 (BOB's API sell); she cancels it
    through the API. Expected: the fill's report (CumQty 0.35, LeavesQty 0.15, AvgPx 100,
    Commission 0.035, the maker's 10 bps) and ``GET order`` (0.35 executed, 35.0000 quote,
    PARTIALLY_FILLED) agree; the API cancel reaches the FIX session as 150=4 39=4 CumQty 0.35,
    a status request says 39=4, and the private stream tells NEW, TRADE, CANCELED. Now: so."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        fix = await fix_user(harness, "ALICE", "alice-pw")
        try:
            ws = await subscribed(alice)
            oid = await _ack(fix, "L1", *_lim("100.00", "0.50"))
            await _sell(bob, "100.00", "0.35")
            fill = await fix.expect("8", 5.0)
            tags = (150, 39, 38, 151, 14, 6, 31, 32, 12)
            assert tuple(fill.get(t) for t in tags) == (
                b"F", b"1", b"0.50", b"0.15", b"0.35", b"100.000000", b"100.00", b"0.35",
                b"0.035000",
            )  # fmt: skip
            status, view = await _get(alice, orderId=oid)
            assert status == 200
            assert (view["clientOrderId"], view["executedQty"], view["cummulativeQuoteQty"],
                    view["status"]) == ("L1", "0.35", "35.0000", "PARTIALLY_FILLED")  # fmt: skip
            gone = await alice.call("DELETE", ORDER, symbol="BTC-USD", orderId=oid)
            assert (gone["status"], gone["executedQty"]) == ("CANCELED", "0.35")
            told = await _drain(fix)
            assert [(m[150], m[39], m[14], m[151]) for m in told] == [
                (b"4", b"4", b"0.35", b"0.00")
            ]
            await fix.send("H", (11, "L1"), (55, "BTC-USD"), (54, BUY))
            answer = await fix.expect("8", 5.0)
            assert (answer.get(150), answer.get(39), answer.get(14)) == (b"I", b"4", b"0.35")
            seen = [(r["clientOrderId"], r["executionType"]) for r in await reports(ws, 1.0)]
            assert seen == [("L1", "NEW"), ("L1", "TRADE"), ("L1", "CANCELED")]
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)


def test_mass_cancels_reach_the_orders_of_both_ways(harness: Harness) -> None:
    """Scenario: ALICE has a FIX bid and an API bid; ``DELETE openOrders`` cancels both; she
    places one of each again and sends a FIX OrderMassCancelRequest (q, 530=7). Expected: the
    API answer lists both CANCELED, the FIX session gets 150=4 "mass cancel" for its order;
    the q is reported (531=7) and the API order is CANCELED in ``GET order``. Now: so."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        fix = await fix_user(harness, "ALICE", "alice-pw")
        try:
            await _ack(fix, "A1", *_lim("95.00", "0.10"))
            await alice.call("POST", ORDER, newClientOrderId="RA1",
                             **_rest_params(_lim("95.00", "0.10"), {"type": "LIMIT"}))  # fmt: skip
            ended = await alice.call("DELETE", "/api/v1/openOrders", symbol="BTC-USD")
            assert sorted((o["clientOrderId"], o["status"]) for o in ended) == [
                ("A1", "CANCELED"), ("RA1", "CANCELED"),
            ]  # fmt: skip
            told = await _drain(fix)
            assert [(m[11], m[150], m[39], m[58]) for m in told] == [
                (b"A1", b"4", b"4", b"mass cancel")
            ]
            await _ack(fix, "A2", *_lim("95.00", "0.10"))
            again = _rest_params(_lim("95.00", "0.10"), {"type": "LIMIT"})
            placed = await alice.call("POST", ORDER, newClientOrderId="RA2", **again)
            await fix.send("q", (11, "MC1"), (530, "7"), (60, utc()))
            told = await _drain(fix)
            assert [(m[35], m.get(531), m.get(11), m.get(150)) for m in told] == [
                (b"r", b"7", b"MC1", None), (b"8", None, b"A2", b"4"),
            ]  # fmt: skip
            status, view = await _get(alice, orderId=placed["orderId"])
            assert (status, view["status"]) == (200, "CANCELED")
        finally:
            await alice.close()

    run(harness, scenario)


def test_a_stop_trigger_and_the_end_of_session_are_told_alike(harness: Harness) -> None:
    """Scenario: ALICE's FIX stop-limit (Day, stop 101.00, limit 90.00) and her API ``DAY``
    bid; a trade at 101.00 triggers the stop; then the end of session. Expected: the trigger
    is Restated (150=D "stop triggered") and the API shows the stop working; the end of session
    expires both: 150=C 39=C on FIX, EXPIRED in ``GET order`` for both. Now: so."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        fix = await fix_user(harness, "ALICE", "alice-pw")
        try:
            stop = await _ack(fix, "STL", (54, BUY), (40, "4"), (99, "101.00"), (44, "90.00"),
                              (38, "0.10"))  # fmt: skip
            day = await alice.call(
                "POST",
                ORDER,
                **_rest_params(_lim("90.00", "0.10"), {"type": "LIMIT", "timeInForce": "DAY"}),
            )
            await _sell(bob, "101.00", "0.05")
            await alice.call(
                "POST",
                ORDER,
                **_rest_params(_lim("101.00", "0.05"), {"type": "LIMIT", "timeInForce": "IOC"}),
            )
            told = await _drain(fix)
            assert [(m[150], m[39], m.get(58)) for m in told] == [(b"D", b"0", b"stop triggered")]
            status, view = await _get(alice, orderId=stop)
            assert (view["status"], view["isWorking"], view["type"]) == (
                "NEW",
                True,
                "STOP_LOSS_LIMIT",
            )
            harness.funder.publish_batch([AdminCommand(0, 0, AdminAction.END_OF_SESSION, 1, 1)])
            told = await _drain(fix, 0.6)
            assert [(m[11], m[150], m[39]) for m in told] == [(b"STL", b"C", b"C")]
            for oid in (stop, day["orderId"]):
                status, view = await _get(alice, orderId=oid)
                assert (status, view["status"]) == (200, "EXPIRED")
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)


# -- refusals -----------------------------------------------------------------------------------


async def _traded(alice: RestClient, bob: RestClient) -> None:
    """A first trade at 100.00 (the collar's reference), 0.45 left to sell there."""
    await _sell(bob, "100.00", "0.50")
    await alice.call("POST", ORDER, **_rest_params(_lim("100.00", "0.05"), {"type": "LIMIT"}))


async def _both_refusals(
    alice: RestClient, fix: Client, fields: Fields, params: dict[str, str]
) -> tuple[str, str]:
    """(FIX Text, REST msg) of the same order from ALICE, refused both ways."""
    await _send_d(fix, "BAD", *fields)
    told = await _drain(fix, 0.3)
    assert [m[150] for m in told] == [b"8"], told
    status, body = await alice.request("POST", ORDER, **_rest_params(fields, params))
    assert status == 400, body
    return told[0][58].decode(), body["msg"]


#: Bad input either way: (FIX fields, REST params, what both must name).
BAD: list[tuple[Fields, dict[str, str], tuple[str, ...]]] = [
    (_lim("100.03", "0.10"), {"type": "LIMIT"}, ("100.03", "tick 0.05")),
    (_lim("100.00", "0.105"), {"type": "LIMIT"}, ("0.105", "lot 0.01")),
    (_lim("100.00", "0.04"), {"type": "LIMIT"}, ("0.04", "0.05")),
    (_lim("100.00", "1.01"), {"type": "LIMIT"}, ("1.01", "1.00")),
    ([*_lim("90.00", "1.00"), (111, "0.05")], {"type": "LIMIT", "icebergQty": "0.05"},
     ("0.05", "20 parts", "at most 4")),
    ([*_lim("90.00", "1.00"), (111, "0.02")], {"type": "LIMIT", "icebergQty": "0.02"},
     ("0.02", "min")),
]  # fmt: skip


def test_bad_input_is_refused_alike_naming_the_value_and_the_limit(narrow: Harness) -> None:
    """Scenario: a price off the tick, a size off the lot, below the minimum, above the
    maximum, an iceberg in too many slices and one whose slice is below the minimum, each sent
    over FIX and through the API. Expected: both refuse it, each naming the value and the
    rule's number. Now: so."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        fix = await fix_user(narrow, "ALICE", "alice-pw")
        try:
            for fields, params, named in BAD:
                await fix.send("D", (11, f"B{len(fix.received)}"), (55, "BTC-USD"),
                               (60, utc()), *fields)  # fmt: skip
                told = await _drain(fix, 0.3)
                assert [m[150] for m in told] == [b"8"], told
                status, body = await alice.request("POST", ORDER, **_rest_params(fields, params))
                text, msg = told[0][58].decode(), body["msg"]
                assert status == 400, body
                for word in named:
                    assert word in text and word in msg, (word, text, msg)
        finally:
            await alice.close()

    run(narrow, scenario)


def test_a_fix_band_refusal_names_the_band_as_the_api_does(narrow: Harness) -> None:
    """Scenario: after a trade at 100.00, with a 10% limit collar (``limit_band_bps`` 1000),
    ALICE bids 120.00 over FIX and through the API. Expected: both refusals name the collar,
    1000 bps (the API: "limitBandBps 1000 bps"). Was (fixed): the FIX Text is "PRICE_OUT_OF_BAND
    (3004): a limit price may be at most limit_band_bps from the last trade", no number."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        fix = await fix_user(narrow, "ALICE", "alice-pw")
        try:
            await _traded(alice, bob)
            text, msg = await _both_refusals(alice, fix, _lim("120.00", "0.10"), {"type": "LIMIT"})
            assert "PRICE_OUT_OF_BAND" in text and "1000 bps" in msg, (text, msg)
            assert "1000" in text, text
        finally:
            await alice.close()
            await bob.close()

    run(narrow, scenario)


def test_a_fix_open_order_limit_refusal_names_the_limit(narrow: Harness) -> None:
    """Scenario: ALICE, allowed two open orders (``max_open_orders`` 2), has two bids resting
    and sends a third over FIX and through the API. Expected: both refusals name the limit, 2
    (the API: "an account may have at most 2 open orders"). Was (fixed): the FIX Text is
    "TOO_MANY_OPEN_ORDERS (2003)" alone."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        fix = await fix_user(narrow, "ALICE", "alice-pw")
        try:
            for _ in range(2):
                await alice.call(
                    "POST", ORDER, **_rest_params(_lim("90.00", "0.10"), {"type": "LIMIT"})
                )
            text, msg = await _both_refusals(alice, fix, _lim("90.00", "0.10"), {"type": "LIMIT"})
            assert "TOO_MANY_OPEN_ORDERS" in text and "at most 2 open orders" in msg, (text, msg)
            assert "2 open orders" in text, text
        finally:
            await alice.close()

    run(narrow, scenario)


# -- across the two ways ------------------------------------------------------------------------


def test_a_fix_cancel_overtaken_by_an_api_cancel_is_told_too_late(harness: Harness) -> None:
    """Scenario: ALICE's FIX bid; with the pipeline held, she cancels it through the API, then
    over FIX (F); both reach the exchange in that order. Expected: the API answer CANCELED;
    the FIX session gets the cancel's 150=4 and then an OrderCancelReject whose CxlRejReason
    0, OrdStatus 4 and Text all say the order is already cancelled (too late), as the API says
    its own lost race ("is CANCELED: too late to cancel"). Was (fixed): 102=0 and 39=4, but Text
    "UNKNOWN_ORDER (3000)": the order the reject names by OrderID is not unknown."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        fix = await fix_user(harness, "ALICE", "alice-pw")
        gw = harness.gateway
        assert gw is not None
        try:
            oid = await _ack(fix, "X1", *_lim("95.00", "0.10"))
            harness.pause()
            task = asyncio.ensure_future(
                alice.request("DELETE", ORDER, symbol="BTC-USD", orderId=oid)
            )
            await settled(lambda: len(api.core.requests) == 1 and not api.core.outgoing, 5.0)
            await fix.send("F", (11, "X1C"), (41, "X1"), (55, "BTC-USD"), (54, BUY), (60, utc()))
            await settled(lambda: len(gw.entry.requests) == 1 and not gw.entry.outgoing, 5.0)
            harness.resume()
            status, body = await task
            assert (status, body["status"]) == (200, "CANCELED")
            told = await _drain(fix)
            assert [(m[35], m.get(150), m[39], m.get(102)) for m in told] == [
                (b"8", b"4", b"4", None), (b"9", None, b"4", b"0"),
            ]  # fmt: skip
            text = told[1][58].decode()
            assert "UNKNOWN" not in text and "too late" in text, text
        finally:
            await alice.close()

    run(harness, scenario)


def test_a_fix_replace_that_fills_renames_the_order_in_the_api(harness: Harness) -> None:
    """Scenario: ALICE's FIX bid P0 0.10 at 95.00; BOB's ask 0.10 at 100.00; ALICE replaces it
    (G, P0 -> P1) to 100.00, and it fills at once. Expected: the FIX reports say P1 (150=5,
    then 150=F 39=2); the API names the order P1 too, as for a replace that rests (and as the
    history files it: ReplaceOrder's client id): ``GET order`` clientOrderId P1,
    ``origClientOrderId=P1`` finds it, the stream's REPLACED and TRADE say P1. Was (fixed): the API
    says P0 everywhere, and ``origClientOrderId=P1`` is -2013 "order does not exist"."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        fix = await fix_user(harness, "ALICE", "alice-pw")
        try:
            ws = await subscribed(alice)
            oid = await _ack(fix, "P0", *_lim("95.00", "0.10"))
            await _sell(bob, "100.00", "0.10")
            await fix.send("G", (11, "P1"), (41, "P0"), (55, "BTC-USD"), (60, utc()),
                           *_lim("100.00", "0.10"))  # fmt: skip
            told = await _drain(fix)
            assert [(m[11], m[150], m[39]) for m in told] == [
                (b"P1", b"5", b"0"), (b"P1", b"F", b"2"),
            ]  # fmt: skip
            stream = [(r["clientOrderId"], r["executionType"]) for r in await reports(ws, 1.0)]
            status, view = await _get(alice, orderId=oid)
            assert (status, view["status"]) == (200, "FILLED")
            by_new = await _get(alice, origClientOrderId="P1")
            assert view["clientOrderId"] == "P1", view
            assert by_new[0] == 200, by_new
            assert stream[1:] == [("P1", "REPLACED"), ("P1", "TRADE")], stream
        finally:
            await alice.close()
            await bob.close()

    run(harness, scenario)
