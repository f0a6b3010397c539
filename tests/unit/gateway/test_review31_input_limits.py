"""A 31st hostile review, of the invariant "bad input gets a clear error that names the value
and the limit; it never crashes a process and never corrupts state", over the real network
paths: REST (``rest_params.py``, ``rest_body.py``), FIX order entry (``order_fields.py``,
``orders.py``), the public feed's requests (``procs/marketdata/requests.py``) and ``ringex
admin`` (``procs/admin/``). Rigs: ``rest_rig.py`` (real HTTP in front of real rings),
``test_adversarial_fix.py`` (a FIX client over real TCP, BOB and CAROL trading beside it),
``tests/unit/marketdata/rig.py`` (a real WebSocket server over a real ring), and the CLI
tests' stand-in admin client (``test_review_config_cli_bugs.py``).

Tests whose docstring opens with "What is wrong" failed on the code as reviewed: each names
the fault, why it matters and where. The others pin what was checked and holds.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop

from config import load_profile
from procs.common.topology import users_path
from procs.common.users import MAX_PASSWORD_CHARS, UserStore
from procs.gateway.rest import RestApi
from procs.marketdata.requests import SHOWN_CHARS
from tests.unit import test_review_config_cli_bugs as cli
from tests.unit.gateway import test_adversarial_fix as fix_rig
from tests.unit.gateway.harness import Client, Harness
from tests.unit.gateway.rest_rig import (
    LIMIT,
    alive,
    client,
    post_json,
    request,
    rest_exchange,
    run,
    statuses,
    stream_messages,
)
from tests.unit.gateway.rest_rig import exchange as raw_exchange
from tests.unit.gateway.test_adversarial_fix import Pairs, crafted, logged_on, open_orders, order
from tests.unit.gateway.test_adversarial_fix import run as run_fix
from tests.unit.marketdata.rig import Rig, running

exchange = fix_rig.exchange  # the FIX fixture: a gateway with ALICE, BOB and CAROL
admin = cli.fake_admin  # what ``ringex admin`` sent: a stand-in admin client that answers OK


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


# -- REST ---------------------------------------------------------------------------------------


def test_a_json_key_sent_twice_is_the_one_the_refusal_names(harness: Harness) -> None:
    """What is wrong: a JSON body that sends ``symbol`` twice is refused as "parameter
    'newClientOrderId' is sent twice", naming its last key: ``_json_repeats`` (rest_body.py)
    took the keys past the decoded object's length (``keys[len(decoded):]``), which are the
    last keys sent, not the repeated ones; so the error names a parameter the client sent
    once. Fix: a pair for each later sending of a key."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            body = (
                b'{"symbol":"BTC-USD","symbol":"BTC-USD","side":"BUY","type":"LIMIT",'
                b'"price":"100.00","quantity":"0.10","newClientOrderId":"twice"}'
            )
            status, answer = await post_json(alice, url, body)
            assert (status, answer["code"]) == (400, -1100), answer
            assert answer["msg"] == "parameter 'symbol' is sent twice", answer
            assert await alice.call("GET", "/api/v1/openOrders") == []
        finally:
            await alice.close()

    run(harness, scenario)


def test_a_symbol_spelled_with_a_letter_outside_ascii_is_unknown(harness: Harness) -> None:
    """What is wrong: ``symbol=btc-u\\u017fd`` (a long s) places an order on BTC-USD:
    ``rest_params.symbol`` upper-cases the name before the lookup, and ``str.upper`` maps
    some letters outside ASCII onto ASCII ones ("\\u017f" is "S", "\\u0131" is "I"). A
    symbol is ASCII (``SymbolConfig.name``); FIX takes its bytes as they are. Fix: a name
    that is not ASCII is unknown."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            for name in ("btc-u\u017fd", "BTC-U\u017fD"):
                params = {**LIMIT, "symbol": name, "price": "100.00", "quantity": "0.10"}
                status, body = await alice.request("POST", "/api/v1/order", **params)
                assert (status, body["code"]) == (400, -1121), (name, body)
                assert f"unknown symbol {name!r}" in body["msg"], body
            assert await alice.call("GET", "/api/v1/openOrders") == []
        finally:
            await alice.close()

    run(harness, scenario)


@pytest.mark.parametrize(
    "change",
    [
        {"timeInForce": "IOC"},
        {"timeInForce": "FOK"},
        {"type": "STOP_LOSS_LIMIT", "stopPrice": "90.00", "timeInForce": "IOC"},
    ],
    ids=["IOC", "FOK", "stop-limit IOC"],
)
def test_an_iceberg_that_cannot_rest_is_refused_naming_iceberg_qty(
    harness: Harness, change: dict[str, str]
) -> None:
    """What is wrong: ``icebergQty`` on an IOC or FOK order passes ``rest_params.new_order``
    (it checks only that the order is a limit) and reaches the matcher, which refuses it as
    an iceberg that cannot rest (``order_checks.py``): the answer is "order rejected:
    INVALID_ORDER (3009) symbol=BTC-USD side=BUY type=LIMIT", naming neither icebergQty nor
    the rule. Fix: refuse it at the edge, naming the parameter and the times in force that
    rest."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            params: dict[str, Any] = {
                **LIMIT,
                "price": "100.00",
                "quantity": "1.00",
                "icebergQty": "0.10",
                **change,
            }
            status, body = await alice.request("POST", "/api/v1/order", **params)
            assert (status, body["code"]) == (400, -1106), body  # the type's rule (306)
            assert "icebergQty" in body["msg"] and change["timeInForce"] in body["msg"], body
            assert "GTC and DAY" in body["msg"], body
        finally:
            await alice.close()

    run(harness, scenario)


def test_json_numbers_are_taken_as_their_digits_or_refused_naming_the_limit(
    harness: Harness,
) -> None:
    """Holds: a JSON body's integer is its digits (``"quantity": 1`` is 1.00); one past
    int64 is refused naming the largest quantity, one of 100 digits naming the 64-character
    limit; a float, a nested value or a deeply nested array is a 400 {code, msg}, never a
    500; and nothing of it rests."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        head = b'{"symbol":"BTC-USD","side":"BUY","type":"LIMIT","price":"100.00","quantity":'
        try:
            refused = [
                (b"9" * 30 + b"}", "largest quantity, maxQty 10000000.00"),  # review 144
                (b"9" * 100 + b"}", "'quantity' is 100 characters, the limit is 64"),
                (b"1e2}", "JSON number 1e2: decimals are strings"),  # as sent (review 144)
                (b'{"a":1}}', "body is not a JSON object"),
            ]
            for tail, words in refused:
                status, body = await post_json(alice, url, head + tail)
                assert status == 400 and words in body["msg"], (tail[:40], body)
            status, body = await post_json(alice, url, b"[" * 5_000 + b"]" * 5_000)
            assert status == 400 and "not a JSON object" in body["msg"], body
            assert await alice.call("GET", "/api/v1/openOrders") == []
            status, body = await post_json(alice, url, head + b"1}")
            assert (status, body["origQty"], body["status"]) == (200, "1.00", "NEW"), body
        finally:
            await alice.close()

    run(harness, scenario)


def test_bytes_that_are_not_utf8_in_a_target_get_a_400_naming_them(harness: Harness) -> None:
    """Holds: a percent-escape that is not UTF-8 (``symbol=%FF``) is read as U+FFFD and
    named as an unknown symbol (JSON {code, msg}); a raw byte 0xFF in the target, on the
    fast lane's route or aiohttp's, gets the HTTP parser's 400 naming the character, before
    any handler; the gateway serves on."""

    async def scenario(api: RestApi, url: str) -> None:
        # Connection: close, or the read waits out its 5 s for the keep-alive to end
        line = b"GET /api/v1/depth?symbol=%FF HTTP/1.1"
        raw = await raw_exchange(api.port, request(line, b"Connection: close"))
        assert statuses(raw) == [400], raw[:200]
        answer = json.loads(raw.partition(b"\r\n\r\n")[2])
        assert answer["code"] == -1121 and "unknown symbol '\ufffd'" in answer["msg"], answer
        for line in (b"POST /api/v1/order?x=\xff HTTP/1.1", b"GET /api/v1/depth?s=\xff HTTP/1.1"):
            raw = await raw_exchange(api.port, request(line, b"Content-Length: 0"))
            assert statuses(raw) == [400] and b"Invalid char in url query" in raw, raw[:200]
        await alice_still_trades(url)

    run(harness, scenario)


def test_history_times_and_ids_past_their_range_are_named(harness: Harness) -> None:
    """Holds: ``startTime``, ``endTime``, ``fromId`` and ``orderId`` of the history
    endpoints, past int64 or spelled with '+' or other digits, are a 400 naming the value
    and the range, before the database is needed (there is none here)."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        top = f"0..{2**63 - 1}"
        cases = [
            ("/api/v1/myTrades", "startTime", "99999999999999999999", top),
            ("/api/v1/myTrades", "endTime", "+1", "'+1' is not an integer"),
            ("/api/v1/myTrades", "fromId", "-1", top),
            ("/api/v1/allOrders", "orderId", "\u0661", "is not an integer"),
            ("/api/v1/allOrders", "startTime", "1e3", "'1e3' is not an integer"),
        ]
        try:
            for path, name, value, words in cases:
                query: dict[str, Any] = {"symbol": "BTC-USD", name: value}
                status, body = await alice.request("GET", path, **query)
                assert (status, body["code"]) == (400, -1100), (name, value, body)
                assert name in body["msg"] and words in body["msg"], (name, value, body)
        finally:
            await alice.close()

    run(harness, scenario)


def test_a_flood_of_client_frames_leaves_the_private_stream_serving(harness: Harness) -> None:
    """Holds: the private stream reads what a client sends (text or binary, under its 4096
    byte limit) and answers none of it: 2000 frames neither close the stream nor stop its
    events."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            ws = await alice.stream()
            assert (await stream_messages(ws, 2))[0]["event"] == "snapshot"
            for k in range(1_000):
                await ws.send_str(json.dumps({"method": "SUBSCRIBE", "id": k}))
                await ws.send_bytes(b"\x00\xff" * 1_000)
            params = {**LIMIT, "price": "100.00", "quantity": "0.10", "newClientOrderId": "f1"}
            await alice.call("POST", "/api/v1/order", **params)
            events = await stream_messages(ws, 2)
            assert not ws.closed, ws.close_code
            reports = [e["data"] for e in events if e["event"] == "executionReport"]
            assert [r["clientOrderId"] for r in reports] == ["f1"], events
            await ws.close()
        finally:
            await alice.close()

    run(harness, scenario)


async def alice_still_trades(url: str) -> None:
    await alive(url)
    alice = await client(url, "ALICE", "alice-pw")
    try:
        placed = await alice.call("POST", "/api/v1/order", **LIMIT, price="100.00", quantity="0.10")
        assert placed["status"] == "NEW"
    finally:
        await alice.close()


# -- FIX ----------------------------------------------------------------------------------------


async def _rejected(alice: Client, pairs: Pairs, text: bytes) -> None:
    await alice.send("D", *pairs)
    reply = await alice.expect("8")
    assert (reply.get(150), reply.get(39)) == (b"8", b"8"), (pairs, reply)
    assert reply.get(58) is not None and text in reply.get(58), (pairs, reply.get(58))


def test_a_stop_price_on_an_order_that_is_not_a_stop_is_rejected_naming_it(
    exchange: Callable[..., Harness],
) -> None:
    """What is wrong: a NewOrderSingle with OrdType 2 (limit) or 1 (market) and a StopPx
    (99) is placed without its stop: ``order_fields.amounts`` reads 99 for OrdType 3 and 4
    only and drops it otherwise, so a client that meant a stop-limit and sent the wrong
    OrdType has a plain limit working at once. REST refuses the same order ("stopPrice
    applies to STOP_LOSS and STOP_LOSS_LIMIT orders"), and the matcher refuses a stop price
    on a non-stop. Fix: an ExecutionReport Rejected naming StopPx, its value and the types
    it applies to."""

    async def scenario(h: Harness, port: int, bob: Client, carol: Client) -> None:
        alice = await logged_on(port)
        await _rejected(
            alice,
            order("sp1", "1", "1.00", "100.00", "2", (99, "90.00")),
            b"StopPx (99) 90.00 applies to OrdType 3 or 4 (stops), not OrdType 2",
        )
        await _rejected(
            alice, order("sp2", "1", "1.00", None, "1", (99, "90.00")), b"not OrdType 1"
        )
        assert open_orders(h, 7) == 0
        await fix_rig.trade(bob, carol)

    run_fix(exchange(), scenario)


def test_an_order_that_cannot_rest_is_rejected_naming_max_floor_or_post_only(
    exchange: Callable[..., Harness],
) -> None:
    """What is wrong: MaxFloor (111) or ExecInst 6 (post-only) on an order that never rests
    (a market or stop-market order, an IOC or FOK), and post-only on a stop-limit, pass the
    gateway and are refused by the matcher (``order_checks.py``: "an iceberg must be able to
    rest", "post-only must be able to rest"): the ExecutionReport's Text is "INVALID_ORDER
    (3009)" (or, for a market order, whatever the router checks first), naming neither the
    field nor the rule. Fix: the gateway refuses them, naming the field, its value and why
    the order does not rest; an iceberg that rests is still taken."""

    async def scenario(h: Harness, port: int, bob: Client, carol: Client) -> None:
        alice = await logged_on(port)
        floor, post, ioc = (111, "0.10"), (18, "6"), (59, "3")
        cases: list[tuple[Pairs, bytes]] = [
            (order("i1", "1", "1.00", "100.00", "2", ioc, floor),
             b"MaxFloor (111) 0.10 needs an order that rests: TimeInForce 3 does not rest"),
            (order("i2", "1", "1.00", None, "1", floor), b"OrdType 1 does not rest"),
            (order("i3", "1", "1.00", None, "3", (99, "90.00"), floor), b"OrdType 3 does not"),
            (order("p1", "1", "1.00", "100.00", "2", ioc, post),
             b"ExecInst 6 (post-only) needs an order that rests: TimeInForce 3 does not rest"),
            (order("p2", "1", "1.00", "100.00", "4", (99, "90.00"), (59, "1"), post),
             b"ExecInst 6 (post-only) applies to a limit order (OrdType 2), not a stop-limit"),
            (order("p3", "1", "1.00", None, "1", post), b"OrdType 1 does not rest"),
        ]  # fmt: skip
        for pairs, text in cases:
            await _rejected(alice, pairs, text)
        assert open_orders(h, 7) == 0
        await alice.send("D", *order("i4", "1", "1.00", "100.00", "2", (59, "1"), floor))
        assert (await alice.expect("8")).get(150) == b"0"  # an iceberg that rests
        await fix_rig.trade(bob, carol)

    run_fix(exchange(), scenario)


def test_a_replace_that_changes_the_stop_price_is_refused_not_dropped(
    exchange: Callable[..., Harness],
) -> None:
    """What is wrong: an OrderCancelReplaceRequest of a triggered stop-limit whose StopPx
    (99) differs from the order's is done ("Replaced") with the old StopPx: ``OrderEntry.
    _cancel_replace`` parses the new StopPx and drops it (``price, _stop, qty, display =
    parsed``; a ``ReplaceOrder`` carries price and size only). A MaxFloor that differs is
    refused ("a replace changes only price and size"). Fix: refuse a StopPx that differs
    the same way; one that repeats the order's is replaced."""

    async def scenario(h: Harness, port: int, bob: Client, carol: Client) -> None:
        alice = await logged_on(port)
        gtc = (59, "1")
        await alice.send("D", *order("st1", "1", "1.00", "140.00", "4", (99, "150.00"), gtc))
        assert (await alice.expect("8")).get(150) == b"0"
        await fix_rig.trade(bob, carol)  # at 150.00: the stop triggers, a bid at 140.00 rests
        triggered = await alice.expect("8")
        assert (triggered.get(150), triggered.get(58)) == (b"D", b"stop triggered"), triggered
        moved = order("st2", "1", "1.00", "141.00", "4", (99, "160.00"), gtc)
        await alice.send("G", (41, "st1"), *moved)
        refused = await alice.expect("9")
        assert refused.get(58) == (
            b"StopPx (99) 160.00 is not the order's 150.00: a replace changes only price and size"
        ), refused.get(58)
        kept = order("st3", "1", "1.00", "141.00", "4", (99, "150.00"), gtc)
        await alice.send("G", (41, "st1"), *kept)
        replaced = await alice.expect("8")
        assert (replaced.get(150), replaced.get(44)) == (b"5", b"141.00"), replaced
        await fix_rig.trade(bob, carol)

    run_fix(exchange(), scenario)


def test_a_replace_of_a_stop_not_triggered_yet_is_refused_naming_why(
    exchange: Callable[..., Harness],
) -> None:
    """What is wrong: an OrderCancelReplaceRequest of a stop not triggered yet is refused by
    the matcher (``Book._replace``: "a pending stop: cancel it and send a new one") as a
    bare INVALID_ORDER: the OrderCancelReject's Text is "INVALID_ORDER (3009)", naming no
    rule. Fix: the Text says why, after the matcher's refusal (the gateway refusing first
    would refuse a stop whose trigger it has not seen yet)."""

    async def scenario(h: Harness, port: int, bob: Client, carol: Client) -> None:
        alice = await logged_on(port)
        gtc = (59, "1")
        await alice.send("D", *order("ps1", "1", "1.00", "190.00", "4", (99, "200.00"), gtc))
        assert (await alice.expect("8")).get(150) == b"0"
        await alice.send(
            "G", (41, "ps1"), *order("ps2", "1", "1.00", "191.00", "4", (99, "200.00"), gtc)
        )
        refused = await alice.expect("9")
        assert (refused.get(434), refused.get(39)) == (b"2", b"0"), refused
        assert refused.get(58) == (
            b"INVALID_ORDER (3009): a stop not triggered yet is not on the book; cancel it and "
            b"send a new one"
        ), refused.get(58)
        await fix_rig.trade(bob, carol)

    run_fix(exchange(), scenario)


def test_an_amend_of_a_stop_not_triggered_yet_is_refused_naming_why(harness: Harness) -> None:
    """What is wrong: ``PUT /api/v1/order`` of a stop not triggered yet (``isWorking``
    false) is refused by the matcher as a bare INVALID_ORDER: "amend rejected: INVALID_ORDER
    (3009) orderId=...", naming no rule. Fix: the answer says why (after the matcher's
    refusal: a row from the database cannot tell a triggered stop without fills)."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            stop = await alice.call(
                "POST", "/api/v1/order", symbol="BTC-USD", side="BUY", type="STOP_LOSS_LIMIT",
                price="190.00", stopPrice="200.00", quantity="1.00",
            )  # fmt: skip
            assert stop["isWorking"] is False
            status, body = await alice.request(
                "PUT", "/api/v1/order", symbol="BTC-USD", orderId=stop["orderId"], price="191.00"
            )
            assert (status, body["code"]) == (400, -2011), body
            assert "INVALID_ORDER (3009) (a stop not triggered yet" in body["msg"], body
            assert "cancel it" in body["msg"], body
            market = await alice.call(  # no price: the router refuses the amend's 0 first
                "POST", "/api/v1/order", symbol="BTC-USD", side="BUY", type="STOP_LOSS",
                stopPrice="200.00", quantity="1.00",
            )  # fmt: skip
            status, body = await alice.request(
                "PUT", "/api/v1/order", symbol="BTC-USD", orderId=market["orderId"], quantity="0.5"
            )
            assert (status, body["code"]) == (400, -2011), body
            assert "(a stop not triggered yet is not on the book" in body["msg"], body
        finally:
            await alice.close()

    run(harness, scenario)


def test_a_repeating_group_count_far_past_its_entries_is_rejected_and_the_session_lives(
    exchange: Callable[..., Harness],
) -> None:
    """Holds: NoPartyIDs (453) of 99999999 with no entries is a session Reject (3) with
    SessionRejectReason 16 naming the count and the entries found; nothing is placed and
    the next order of the session is taken."""

    async def scenario(h: Harness, port: int, bob: Client, carol: Client) -> None:
        alice = await logged_on(port)
        pairs = order("g1", "1", "1.00", "100.00", "2", (453, "99999999"))
        await alice.send_raw(crafted(alice, "D", *pairs))
        reject = await alice.expect("3")
        assert (reject.get(373), reject.get(371)) == (b"16", b"453"), reject
        assert reject.get(58) == b"NumInGroup 453 says 99999999, found 0 entries"
        assert open_orders(h, 7) == 0
        await alice.send("D", *order("g2", "1", "1.00", "100.00"))
        assert (await alice.expect("8")).get(150) == b"0"
        await fix_rig.trade(bob, carol)

    run_fix(exchange(), scenario)


# -- the public feed ----------------------------------------------------------------------------


def test_an_unknown_method_or_field_is_named_without_reflecting_kilobytes(instance: str) -> None:
    """What is wrong: a request whose method is 30,000 characters is answered with an error
    that repeats all of them (``method {method!r} is not one of ...``, requests.py), and
    unknown field names are joined whole: a client makes the server echo each request back
    in full, up to ``max_message_bytes`` (64 KiB) an error. Stream names are cut at 64
    characters, and so are header values in the REST signature errors. Fix: show at most
    ``SHOWN_CHARS`` of the value, with its length; the connection stays open."""

    async def body(rig: Rig) -> None:
        async with rig.client() as c:
            await c.ws.send(json.dumps({"method": "X" * 30_000, "id": 1}))
            err = await c.until(lambda m: m.get("id") == 1)
            msg = err["error"]["msg"]
            assert err["error"]["code"] == 2 and "30000 characters" in msg, msg[:200]
            assert len(msg) < SHOWN_CHARS + 120, len(msg)
            fields = {f"f{k}" + "y" * 2_000: 1 for k in range(10)}
            await c.ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 2, **fields}))
            err = await c.until(lambda m: m.get("id") == 2)
            msg = err["error"]["msg"]
            assert msg.startswith("unknown field(s) 'f0y") and "and 6 more" in msg, msg[:200]
            assert len(msg) < 5 * SHOWN_CHARS + 100, len(msg)
            assert (await c.request("LIST_SUBSCRIPTIONS"))["result"] == []

    async def main() -> None:
        async with running(instance) as rig:
            await asyncio.wait_for(body(rig), 20)

    uvloop.run(main())


# -- ringex admin -------------------------------------------------------------------------------


def test_a_password_that_is_not_utf8_is_refused_before_anything_opens(
    tmp_path: Path,
    instance: str,
    admin: list[tuple[Any, ...]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """What is wrong: ``add-user --password`` with a byte that is not UTF-8 (argv gives it
    as a surrogate, \\udcff) opens the account and then dies in ``UserStore.add``
    (``password.encode()`` in scrypt's digest): a UnicodeEncodeError traceback, an account
    opened with no user. The same byte on ``--password-stdin`` is a UnicodeDecodeError
    traceback from ``sys.stdin.readline``. Fix: exit 2 with one line naming the byte,
    before anything is opened, and never showing the password."""
    config = cli._instance_config(tmp_path, instance)
    argv = ["admin", "add-user", "--config", str(config), "--username", "u8"]
    assert cli._cli([*argv, "--password", "pw\udcff"]) == 2
    err = capsys.readouterr().err
    assert "not UTF-8 text (byte 0xff at character 3)" in err and len(err.splitlines()) == 1
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\xffpw\n"), "utf-8"))
    assert cli._cli([*argv, "--password-stdin"]) == 2
    err = capsys.readouterr().err
    assert "password on stdin is not UTF-8 text (byte 0xff)" in err and "pw" not in err
    assert admin == []
    assert UserStore(users_path(load_profile(str(config)))).get("u8") is None


@pytest.mark.parametrize(
    ("password", "words"),
    [
        ("p" * (MAX_PASSWORD_CHARS + 1), f"1025 characters, the limit is {MAX_PASSWORD_CHARS}"),
        ("pw\x01pw", "SOH"),
    ],
    ids=["past the REST login's limit", "SOH"],
)
def test_a_password_no_logon_can_send_is_refused(
    tmp_path: Path,
    instance: str,
    admin: list[tuple[Any, ...]],
    capsys: pytest.CaptureFixture[str],
    password: str,
    words: str,
) -> None:
    """What is wrong: add-user stores a password of 1025+ characters, which the REST login
    refuses ("parameter 'password' is 1025 characters, the limit is 1024"), and one holding
    SOH, which no FIX Logon can carry (SOH ends the field): a user made this way can never
    log on there, and nothing says so. Fix: refuse both, naming the limit, before anything
    is opened."""
    config = cli._instance_config(tmp_path, instance)
    argv = ["admin", "add-user", "--config", str(config), "--username", "pl"]
    assert cli._cli([*argv, "--password", password]) == 2
    err = capsys.readouterr().err
    assert words in err and password not in err, err[:200]
    assert admin == []


@pytest.mark.parametrize("amount", ["1_000", "\u0661\u0660"], ids=["underscore", "Arabic-Indic"])
def test_an_amount_with_separators_or_other_scripts_digits_is_refused(
    tmp_path: Path,
    instance: str,
    admin: list[tuple[Any, ...]],
    capsys: pytest.CaptureFixture[str],
    amount: str,
) -> None:
    """What is wrong: ``deposit --amount 1_000`` deposits 1000 and ``--amount`` "\\u0661\\u0660"
    (Arabic-Indic digits) deposits 10: ``to_minor_units`` (admin/client.py) takes whatever
    ``Decimal`` does, underscores and any script's digits included, while every other edge
    (REST, FIX) takes ASCII digits only. Fix: one line naming the amount and the form
    taken; nothing sent. ("+5" and an exponent are still taken.)"""
    config = cli._instance_config(tmp_path, instance)
    argv = ["admin", "deposit", "--config", str(config), "--account", "100", "--asset", "USD"]
    assert cli._cli([*argv, "--amount", amount]) != 0
    err = capsys.readouterr().err
    assert f"amount {amount!r} is not a decimal number (ASCII digits" in err, err
    assert admin == []
    assert cli._cli([*argv, "--amount", "+5e2"]) == 0
    assert admin == [("transfer", 100, "USD", "5e2")]
    add = ["admin", "add-user", "--config", str(config), "--username", "d", "--password", "p"]
    assert cli._cli([*add, "--deposit", f"USD={amount}"]) == 2
    assert admin == [("transfer", 100, "USD", "5e2")]
