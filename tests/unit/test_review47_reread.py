"""A hostile reread of review 47's four fix commits (1f3aff7 FIX TransactTime, ee9309d REST
public, 9d2e398 REST orders, d71429d market data): faults the fixes left or made. Each
test failed on those commits for the fault it names (its docstring: what was asked, what
the code did, where, "Actual") and passes since its fix (the same commit).

Rigs: ``OrderEntry`` driven by hand with a fake session (FIX reports), the REST tests'
``rest_rig`` (real HTTP in front of real rings, an in-process router and matcher; races
forced by holding the pipeline: ``Harness.pause``), and the market-data rig.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest
from websockets.exceptions import ConnectionClosed

from config.edges import RestConfig
from config.schema import DatabaseConfig, SymbolConfig
from procs.common.records import Accepted, CancelOrder, NewOrder, Rejected
from procs.common.result_codes import ResultCode
from procs.common.types import Side
from procs.gateway import api_errors as codes
from procs.gateway import dictionary
from procs.gateway.fix import FixMessage, Timestamps
from procs.gateway.instruments import Instruments
from procs.gateway.orders import OrderEntry
from procs.gateway.rest import RestApi
from procs.gateway.session import Session
from procs.marketdata.connection import MAX_REQUESTS_PER_S, NAMES_PER_REQUEST, POLICY_VIOLATION
from tests.unit.gateway.harness import Harness, config, settled
from tests.unit.gateway.rest_rig import ALICE, BOB, LIMIT, client, fix_user, rest_exchange, run
from tests.unit.gateway.test_review17_outcomes import fix_order
from tests.unit.marketdata.rig import Rig
from tests.unit.marketdata.test_adversarial_ws import run as run_feed

ORDER = "/api/v1/order"
SELL = {**LIMIT, "side": "SELL"}


@pytest.fixture
def exchange(instance: str, tmp_path: Path) -> Iterator[Harness]:
    """``rest_rig``'s exchange: ALICE (601) with dollars, BOB (602) with bitcoin."""
    yield from rest_exchange(instance, tmp_path)


#: ``capped``'s largest order notional: 80.00 USD (USD has 6 decimals).
MAX_NOTIONAL = 80 * 10**6


@pytest.fixture
def capped(instance: str, tmp_path: Path) -> Iterator[Harness]:
    """``exchange``'s accounts under ``risk.max_order_notional`` of 80 USD."""
    rest = RestConfig(
        port=0, key_rate_per_s=1_000, key_burst=1_000, login_rate_per_s=100, login_burst=100,
    )  # fmt: skip
    cfg = config(instance, tmp_path, rest=rest)
    risk = msgspec.structs.replace(cfg.risk, max_order_notional=MAX_NOTIONAL)
    cfg = msgspec.structs.replace(cfg, risk=risk, database=DatabaseConfig(enabled=False))
    h = Harness(cfg)
    h.add_user("ALICE", "alice-pw", ALICE)
    h.add_user("BOB", "bob-pw", BOB)
    h.fund(ALICE, usd=1_000_000 * 10**6, btc=0)
    h.fund(BOB, usd=0, btc=10 * 10**6)
    yield h
    h.close()


# -- FIX: TransactTime (1f3aff7) ------------------------------------------------------------------

SYM = SymbolConfig(name="BTC-USD", id=1, price_decimals=2, qty_decimals=2, base="BTC")
GATEWAY, SESSION, ACCOUNT = 3, 5, 7


class _Session:
    """What ``OrderEntry`` asks of a logged-on session: its ids, and ``send``."""

    session_id = SESSION
    account = ACCOUNT
    user = None
    closed = False

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, dict[int, bytes]]] = []

    def send(self, msg_type: bytes, body: bytes, now_ns: int) -> None:
        pairs = [f.split(b"=", 1) for f in body.split(b"\x01") if f]
        self.sent.append((msg_type, {int(k): v for k, v in pairs}))


def _fix(kind: bytes, pairs: list[tuple[int, bytes]]) -> FixMessage:
    tags = [35, *(t for t, _ in pairs)]
    return FixMessage.of(b"", tags, [kind, *(v for _, v in pairs)])


def test_a_cancel_reject_for_an_exchange_refusal_carries_the_events_time() -> None:
    """Asked: README (gateway row) "every ExecutionReport, OrderCancelReject and
    OrderMassCancelReport carries TransactTime (60): the time of the exchange event it
    reports, the sequencer's stamp, so ... a report sent again after a crash repeats it, or
    the gateway's clock for an answer no event makes" (commit 1f3aff7).
    Does: a cancel the matcher refuses (here ``UNKNOWN_ORDER``: a fill ended the order first,
    FIX's "too late") is reported from the matcher's ``Rejected`` event, whose ``ts_ns`` is
    the cancel's sequencer stamp, but ``OrderEntry._rejected`` (orders.py) calls
    ``_send_cancel_reject`` (order_replies.py), which stamps ``self._transact()``, the
    gateway's clock at the time it reads the event. A gateway that crashed and reads the
    event again after its restart sends another TransactTime for the same refusal; the
    ack of the same order (``_accepted``) carries its event's stamp, as asked.
    Actual: the 9's 60 is the wall clock at processing, not 20210101-00:00:00.456."""
    entry = OrderEntry(GATEWAY, Instruments([SYM]), cancel_on_disconnect=False)
    session = _Session()
    entry.on_logon(cast(Session, session), 1)
    order = [(11, b"o1"), (55, b"BTC-USD"), (54, b"1"), (60, b"20210101-00:00:00")]
    order += [(40, b"2"), (38, b"1"), (44, b"100"), (59, b"1")]
    entry.on_message(cast(Session, session), _fix(b"D", order), 1)
    new = entry.outgoing.pop()
    assert isinstance(new, NewOrder)
    accepted_at = 1_609_459_200_123_000_000  # 2021-01-01 00:00:00.123
    entry.process(
        Accepted(
            *(5, accepted_at, GATEWAY, SESSION, new.client_ref, ACCOUNT, SYM.id, 11),
            side=Side.BUY,
            price=10_000,
            qty=100,
        )
    )
    cancel = [(41, b"o1"), (11, b"c1"), (55, b"BTC-USD"), (54, b"1"), (60, b"20210101-00:00:00")]
    entry.on_message(cast(Session, session), _fix(b"F", cancel), 2)
    command = entry.outgoing.pop()
    assert isinstance(command, CancelOrder)
    refused_at = accepted_at + 333_000_000  # 00:00:00.456
    entry.process(
        Rejected(
            *(7, refused_at, GATEWAY, SESSION, command.client_ref, ACCOUNT, SYM.id, 11),
            code=ResultCode.UNKNOWN_ORDER,
        )
    )
    (ack_type, ack), (reject_type, reject) = session.sent
    assert (ack_type, ack[150], ack[60]) == (b"8", b"0", Timestamps().format(accepted_at))
    assert reject_type == b"9" and reject[434] == b"1", reject
    assert reject[60] == Timestamps().format(refused_at), reject[60]


def test_the_gateways_dictionary_lists_the_transact_time_it_now_sends() -> None:
    """Asked: the gateway's FIX dictionary (``dictionary.MESSAGES``) is its message spec,
    outbound types included: ExecutionReport (8) lists TransactTime (60) among its optional
    fields, and the same commit made every OrderCancelReject (9) and OrderMassCancelReport
    (r) carry 60 (``order_replies._send_cancel_reject``, ``order_fields.mass_report``).
    Does: ``MESSAGES[b"9"]`` and ``MESSAGES[b"r"]`` (dictionary.py) were left as they were:
    by the gateway's own spec, 60 is "tag not defined for this message type" on both
    (``first_fault`` would refuse the reports the gateway sends).
    Actual: 60 is in neither's ``allowed()``."""
    missing = [k for k in (b"9", b"r") if 60 not in dictionary.MESSAGES[k].allowed()]
    assert missing == [], missing


# -- REST orders: the new order's answer (9d2e398) ------------------------------------------------


def test_a_new_orders_answer_is_not_another_commands_cancel(exchange: Harness) -> None:
    """Asked: README "A new order's answer is the order as its own command left it, with the
    fills that command made"; commit 9d2e398 froze the answer (``outcome.view``) when another
    command's fill reaches the order in the same read.
    Does: only ``RestOrders._fill`` (rest_orders.py) freezes it. Another command's end of the
    order in the same read (a mass cancel here; an STP expiry or a cancel by orderId alike)
    goes through ``RestOrders._done``, which changes the order, and ``end_of_batch`` renders
    the answer from it. ALICE's resting bid and then her ``DELETE openOrders`` wait in the
    ring; both execute before the gateway reads.
    Actual: the POST is answered 200 with status CANCELED (executedQty 0.00): the client is
    told its order was cancelled by its own placement."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            exchange.pause()
            bid = asyncio.create_task(
                alice.request("POST", ORDER, **LIMIT, price="90.00", quantity="0.10")
            )
            await settled(lambda: len(api.core.requests) == 1)
            everything = asyncio.create_task(
                alice.request("DELETE", "/api/v1/openOrders", symbol="BTC-USD")
            )
            await settled(lambda: len(api.core.requests) == 2 and not api.core.outgoing)
            exchange.resume()
            status, placed = await bid
            await everything
            now = await alice.call("GET", ORDER, symbol="BTC-USD", orderId=placed["orderId"])
            assert now["status"] == "CANCELED", now  # the mass cancel did end it
            assert status == 200 and placed["status"] == "NEW", placed
        finally:
            await alice.close()

    run(exchange, scenario)


def test_a_frozen_new_order_answer_keeps_its_own_transact_time(exchange: Harness) -> None:
    """Asked: 9d2e398: "another command's maker fill in the same read freezes the answer as
    the order stood before it"; an unfrozen answer's ``transactTime`` is its ``updateTime``
    (both ``order.update_ms``), the time of what the answer shows.
    Does: ``RestApi.new_order`` (rest.py) takes the frozen ``outcome.view`` but sets
    ``body["transactTime"] = order.update_ms`` from the live order, which the other
    command's fill moved on (``RestOrders._fill``: ``update_ms = ms(trade.ts_ns)``). The
    router here stamps ALICE's bid and, 50 ms later, BOB's crossing sell; both execute
    before the gateway reads.
    Actual: ``transactTime`` is the time of BOB's trade, ~50 ms after the answer's own
    ``updateTime`` and ``time``: an answer without fills dated by a fill it leaves out."""
    router = exchange.router

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        try:
            exchange.pause()
            bid = asyncio.create_task(
                alice.request("POST", ORDER, **LIMIT, price="100.00", quantity="0.10")
            )
            await settled(lambda: router.step(timeout_s=0) > 0)  # sequenced: stamped now
            await asyncio.sleep(0.05)
            ask = asyncio.create_task(
                bob.request("POST", ORDER, **SELL, price="100.00", quantity="0.04")
            )
            await settled(lambda: router.step(timeout_s=0) > 0)
            exchange.resume()
            (_, placed), (_, took) = await bid, await ask
            assert took["status"] == "FILLED" and placed["fills"] == [], (placed, took)
            assert placed["status"] == "NEW", placed  # frozen, as 9d2e398 made it
            assert took["transactTime"] - placed["updateTime"] >= 40, (placed, took)
            assert placed["transactTime"] == placed["updateTime"], placed
        finally:
            await alice.close()
            await bob.close()

    run(exchange, scenario)


# -- REST orders: client order ids (9d2e398) ------------------------------------------------------


def test_a_client_order_id_a_pending_fix_order_holds_is_refused(exchange: Harness) -> None:
    """Asked: README "A ``newClientOrderId`` that an open order of the account placed
    through this gateway still holds (over the API, or over FIX as its ClOrdID) is refused
    (``-2010``), so ``origClientOrderId`` always names one order".
    Does: ``RestOrders.in_use`` (rest_orders.py) looks in ``client_ids`` (API orders, pending
    ones included) and in ``live``, where a FIX order appears only once its ``Accepted`` is
    read. A FIX order sent and not yet acknowledged is in ``OrderEntry.live`` under its
    ClOrdID (and ``fix_orders`` gives it), but ``in_use`` does not ask. ALICE (using the API)
    sends a bid ``dup2`` over FIX; while it waits in the ring, she POSTs another under
    ``newClientOrderId=dup2``.
    Actual: the POST is accepted (200); ``openOrders`` lists two orders named dup2, and
    ``origClientOrderId=dup2`` names the API's only."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        fix = await fix_user(exchange, "ALICE", "alice-pw")
        gateway = exchange.gateway
        assert gateway is not None
        try:
            assert await alice.call("GET", "/api/v1/openOrders") == []  # ALICE uses the API
            exchange.pause()
            await fix.send("D", *fix_order("dup2", "1", "0.10", "90.00"))
            await settled(lambda: any(o.cl_ord_id == b"dup2" for o in gateway.entry.live.values()))
            post = asyncio.create_task(
                alice.request(
                    "POST", ORDER, **LIMIT, price="95.00", quantity="0.20", newClientOrderId="dup2"
                )
            )
            await settled(
                lambda: post.done() or (len(api.core.requests) == 1 and not api.core.outgoing)
            )
            exchange.resume()
            status, body = await post
            assert (await fix.expect("8")).get(150) == b"0"
            listed = await alice.call("GET", "/api/v1/openOrders")
            named = [o["orderId"] for o in listed if o["clientOrderId"] == "dup2"]
            assert len(named) == 1, listed
            assert (status, body.get("code")) == (400, codes.NEW_ORDER_REJECTED), body
        finally:
            await alice.close()

    run(exchange, scenario)


def test_a_fix_order_cannot_take_the_client_order_id_of_an_open_api_order(
    exchange: Harness,
) -> None:
    """Asked: README "A ``newClientOrderId`` that an open order of the account placed
    through this gateway still holds (over the API, or over FIX as its ClOrdID) is refused
    (``-2010``), so ``origClientOrderId`` always names one order"; ``openOrders`` shows a
    FIX order of the account under its ClOrdID as ``clientOrderId``.
    Does: the namespace is shared one way only. ``OrderEntry._new`` (orders.py) checks a
    ClOrdID against the FIX session's own (``_taken``), never against the account's open API
    orders, so the other order of the pair comes through FIX. ALICE rests ``x1`` through the
    API, then sends a bid ``x1`` over FIX.
    Actual: the FIX order is acknowledged (150=0); ``openOrders`` lists two orders as x1 and
    ``GET order?origClientOrderId=x1`` finds the API's only, so the FIX order cannot be
    queried or cancelled by the id the API shows for it. (Either FIX refuses it, 103=6,
    or the README's "always" is false.)"""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        fix = await fix_user(exchange, "ALICE", "alice-pw")
        try:
            await alice.call(
                "POST", ORDER, **LIMIT, price="95.00", quantity="0.20", newClientOrderId="x1"
            )
            await fix.send("D", *fix_order("x1", "1", "0.10", "90.00"))
            await fix.expect("8")
            listed = await alice.call("GET", "/api/v1/openOrders")
            named = [o["orderId"] for o in listed if o["clientOrderId"] == "x1"]
            assert len(named) == 1, listed
        finally:
            await alice.close()

    run(exchange, scenario)


# -- REST orders: refusal messages (9d2e398) ------------------------------------------------------


def test_a_notional_refusal_names_the_price_it_was_judged_at(capped: Harness) -> None:
    """Asked: README "An order the exchange refuses is told its code, its price and
    quantity, and the rule where a configured limit says (... ``max_order_notional``)";
    STYLE 12 (errors give the values).
    Does: ``rest_params.refusal`` says of ``NOTIONAL_TOO_LARGE`` "price x quantity may be at
    most {max_order_notional}", but the router judges a sell at the last trade price when
    that is higher (``Accounts.market_sell_notional``: venues check at a reference price),
    a stop sell at its stop price, a market buy at its cap. After a trade at 100.00, BOB
    sells 1.00 at 50.00 under a limit of 80 USD: refused, as the router means to.
    Actual: "... price=50.00 quantity=1.00: price x quantity may be at most 80000000 (minor
    units of USD)": 50.00 x 1.00 is 50 USD, inside the rule it names; the price it was
    judged at (100.00, the last trade) is nowhere."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        try:
            await alice.call("POST", ORDER, **LIMIT, price="100.00", quantity="0.10")
            await bob.call("POST", ORDER, **SELL, price="100.00", quantity="0.10")
            status, body = await bob.request("POST", ORDER, **SELL, price="50.00", quantity="1.00")
            # the NOTIONAL filter's code (review 315: it was NEW_ORDER_REJECTED)
            assert (status, body["code"]) == (400, codes.FILTER_FAILURE), body
            msg = body["msg"]
            assert "NOTIONAL_TOO_LARGE" in msg and "50.00" in msg, body
            assert "100.00" in msg or "last trade" in msg, body
        finally:
            await alice.close()
            await bob.close()

    run(capped, scenario)


# -- market data: request weight (d71429d) --------------------------------------------------------

#: Every stream name of the market-data rig's two symbols: 20 distinct names.
NAMES = [
    f"{symbol}@{kind}"
    for symbol in ("btc-usd", "eth-usd")
    for kind in (
        "trade", "depth", "ticker", "status",
        *(f"kline_{i}" for i in ("1m", "5m", "15m", "1h", "4h", "1d")),
    )
]  # fmt: skip
WEIGHT = 1 + len(NAMES) // NAMES_PER_REQUEST


def test_a_subscribe_refused_for_its_count_weighs_its_names_too(instance: str) -> None:
    """Asked: README "A feed connection may send 1,000 requests a second ..., a request
    weighing one more for each ten distinct stream names it carries"; d71429d: each distinct
    name costs the loop 1-1.5 us (parsed, subscribed, unsubscribed).
    Does: ``MarketDataServer._on_message`` (server.py) returns the names it parsed, which the
    connection loop charges, except when a ``RequestError`` comes after the parse: then it
    returns ``exc.names``, 0 for ``Hub.check_subscribe``'s ``TOO_MANY_SUBSCRIPTIONS`` (raised
    after ``parse_request`` parsed every name and ``check_subscribe`` hashed them). A
    connection whose SUBSCRIBEs of 20 names are all refused for their count (here
    ``max_subscriptions`` 5) pays one token a request, not three; the same requests as
    UNSUBSCRIBEs (``test_request_weight``) are closed with 1008 within the budget.
    Actual: twice the budget's worth of such requests (666 at weight 3: 1,998 tokens) are
    all answered, the connection left open."""
    count = 2 * (MAX_REQUESTS_PER_S // WEIGHT)

    async def body(rig: Rig) -> None:
        answered = 0
        async with rig.client() as c:
            with contextlib.suppress(ConnectionClosed):
                for k in range(count):
                    await c.ws.send(json.dumps({"method": "SUBSCRIBE", "params": NAMES, "id": k}))
                while answered < count:
                    msg: dict[str, Any] = json.loads(await c.ws.recv())
                    if msg.get("id") is not None:
                        assert "error" in msg, msg  # each refused: 20 > max_subscriptions
                        answered += 1
            code = c.ws.close_code
        assert code == POLICY_VIOLATION and answered < count, (answered, code)

    run_feed(instance, body, max_subscriptions=5)
