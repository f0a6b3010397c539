"""A 217th hostile review, of decimals at the edges, every entry point at once: FIX (Price 44,
OrderQty 38, StopPx 99, MaxFloor 111 in D and G), REST (price, quantity, stopPrice, icebergQty
in ``POST order``, ``POST batchOrders`` and ``PUT order``, as a form and as JSON) and ``ringex
admin`` (``deposit``/``withdraw --amount``, ``add-user --deposit``). The pipeline holds
integers; each edge turns a client's or operator's decimal into them, and bad input must get
an error naming the value and the limit, never a crash, a rounding or a wrap.

Reused: ``rest_rig.py`` (real HTTP and a FIX port in front of real rings), the CLI tests'
stand-in admin client (``test_review_config_cli_bugs.fake_admin``). Not repeated: review 62
(the unit checks of REST's plain decimals, FIX over ``max_qty``, the named largest price),
review 31 (a JSON body's numbers on ``POST order``, the admin's underscores and Arabic-Indic
digits), review 91 (``.10`` and ``100.``).

The three faults found are fixed: their tests begin "Was (fixed)"; the others pin what was
checked and holds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import simplefix  # ships no type information

from config.schema import SymbolConfig
from procs.core.money import Market, largest_capped
from procs.gateway import api_errors as codes
from procs.gateway import dictionary
from procs.gateway import rest_params as rp
from procs.gateway.instruments import MAX_INT64, price_ticks, qty_lots
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import RestClient
from tests.unit import test_review_config_cli_bugs as cli
from tests.unit.gateway.harness import Client, Harness, utc
from tests.unit.gateway.rest_rig import LIMIT, client, fix_user, rest_exchange, run

admin = cli.fake_admin  # what ``ringex admin`` sent: a stand-in admin client that answers OK

#: The rig's BTC-USD: tick 0.05 (2 decimals), lot 0.01, sizes 0.01..10000000.00, band 500 bps.
BTCUSD = SymbolConfig(name="BTC-USD", id=1, tick=5, price_decimals=2, lot=1, qty_decimals=2)
LARGEST_PRICE = "92233720368547758.05"  # 2**63 - 1 units rounded down to the tick
#: Not a plain decimal: each edge (FIX, REST) refuses it naming it; none is a crash.
MALFORMED = [
    *("1e2", "1E-2", "+1", "-0", "-0.0", "1_000", " 1", "\u0661\u0662\u0663", "\uff11"),
    *("NaN", "Infinity", "0x10", ".", "--1", "1.2.3"),
]


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


async def _answer(fix: Client) -> simplefix.FixMessage:
    """The next Reject (3), ExecutionReport (8) or OrderCancelReject (9), heartbeats skipped."""
    while True:
        msg = await fix.recv(3.0)
        assert msg is not None, "no answer within 3 s"
        if msg.get(35) in (b"3", b"8", b"9"):
            return msg


def _d(cl: str, **tags: str) -> list[tuple[int, object]]:
    """A GTC limit buy of 1.00 at 100.00 on BTC-USD, with ``tags`` (``t44="1e2"``) over it;
    a value of "" leaves the tag out."""
    base: dict[int, object] = {11: cl, 55: "BTC-USD", 54: "1", 60: utc(), 38: "1.00", 40: "2"}
    base |= {59: "1", 44: "100.00"}
    for name, value in tags.items():
        base[int(name[1:])] = value
    return [(t, v) for t, v in base.items() if v != ""]


async def _send_json(c: RestClient, method: str, path: str, body: dict[str, Any]) -> Any:
    """(status, answer) of a signed request whose parameters are a JSON body, sent as is."""
    raw = json.dumps(body).encode()
    return await c._send(method, path, "", raw, "application/json", True)


# -- faults -------------------------------------------------------------------------------------


def test_an_iceberg_cut_below_its_slice_is_judged_alike_over_fix_and_rest(
    harness: Harness,
) -> None:
    """Was (fixed): an iceberg of 1.00 showing 0.10, cut to a total of 0.05 at the same price, is
    taken by ``PUT order`` (``quantity=0.05``: the order shows 0.05, the matcher
    ``min(display, leaves)``), but the FIX OrderCancelReplaceRequest of the same order to
    OrderQty 0.05 (MaxFloor restated 0.10, as a G must: ``replace_fault``) is refused,
    "MaxFloor 0.10 is above OrderQty 0.05" (``order_fields.amounts``, the new order's rule
    ``display > qty``, applied to a G as well). The README says ``PUT order`` amends "as
    FIX's OrderCancelReplaceRequest does" and that a smaller size at the same price keeps
    priority, and a G cannot send another MaxFloor: a FIX client cannot shrink its iceberg
    below one slice at all (nor end it by a total at or below its fills, which the README
    says a replace does). Should: both take it (or both refuse it, naming both values)."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        fix = await fix_user(harness, "ALICE", "alice-pw")
        try:
            placed = await alice.call(
                "POST", "/api/v1/order", **LIMIT, price="100.00", quantity="1.00",
                icebergQty="0.10",
            )  # fmt: skip
            cut = await alice.call(
                "PUT", "/api/v1/order", symbol="BTC-USD", orderId=placed["orderId"],
                quantity="0.05",
            )  # fmt: skip
            assert cut["origQty"] == "0.05", cut
            await fix.send("D", *_d("ice1", t111="0.10"))
            new = await _answer(fix)
            assert (new.get(35), new.get(150)) == (b"8", b"0"), new
            g = [(41, "ice1"), *_d("ice2", t38="0.05", t111="0.10")]
            await fix.send("G", *g)
            replaced = await _answer(fix)
            assert (replaced.get(35), replaced.get(150)) == (b"8", b"5"), replaced.get(58)
        finally:
            await alice.close()

    run(harness, scenario)


def test_a_stop_buy_at_the_largest_price_is_refused_naming_why(harness: Harness) -> None:
    """Was (fixed): a stop-market buy whose StopPx is the largest price the edges name
    (92233720368547758.05: "beyond the largest price 92233720368547758.05" for one tick more)
    passes both edges and is refused by the router with the bare code: REST "order rejected:
    INVALID_PRICE (3006) ... stopPrice=92233720368547758.05 quantity=0.01", FIX Text
    "INVALID_PRICE (3006)". The cause is its market cap, stop x (1 + band_bps), past int64
    (``accounts.reserve_new``: "its cap would not fit the record"), which nothing says;
    every stop buy from 87841638446235960.10 up is refused so. Should: the edge (or
    the refusal's note) names the rule and the limit: the largest stop price a stop-market
    buy takes at band 500 bps, or that its banded cap passes 2**63 - 1 units."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        fix = await fix_user(harness, "ALICE", "alice-pw")
        try:
            await fix.send("D", *_d("stop1", t40="3", t44="", t99=LARGEST_PRICE, t38="0.01"))
            refused = await _answer(fix)
            assert refused.get(150) == b"8", refused
            fix_text = refused.get(58).decode()
            status, body = await alice.request(
                "POST", "/api/v1/order", symbol="BTC-USD", side="BUY", type="STOP_LOSS",
                stopPrice=LARGEST_PRICE, quantity="0.01",
            )  # fmt: skip
            assert status == 400 and LARGEST_PRICE in body["msg"], body
            for text, name in ((body["msg"], "stopPrice"), (fix_text, "StopPx")):
                assert f"the largest {name} is 87841638446235960.05" in text, text
        finally:
            await alice.close()

    run(harness, scenario)


def test_a_zero_written_without_a_whole_part_is_told_it_must_be_positive() -> None:
    """Was (fixed): a price ".0" (or ".00") and a size ".0" pass both edges' formats (FIX's FLOAT,
    REST's ``DECIMAL``: ``.5`` is 0.50 there), and are refused "price .0 is not a multiple of
    tick 0.05", "quantity .00 is not a multiple of lot 0.01": ``instruments.to_units``
    strips the fraction's zeros and then finds no digit (``not (whole or frac)``), and
    returns None, "off the step". Zero is on every tick; "0", "0.0" and "-0" are told
    "must be positive". Should: "price .0 must be positive (symbol=BTC-USD)", as for 0."""
    sym = BTCUSD
    assert dictionary.FLOAT(b".0") and rp.DECIMAL.fullmatch(".0")
    for text in (b".0", b".00"):
        for why in (price_ticks(text, sym), qty_lots(text, sym)):
            assert isinstance(why, str) and "must be positive" in why, why


# -- what holds: malformed decimals at every order entry point ----------------------------------


def test_malformed_decimals_are_refused_naming_them_at_every_order_entry_point(
    harness: Harness,
) -> None:
    """Every value of ``MALFORMED`` in each of price, quantity, stopPrice and icebergQty is
    refused naming it (-1100 "... is not a decimal number") by ``POST order`` as a form and
    as JSON, by ``PUT order`` (price, quantity) and by ``batchOrders`` (that order's answer);
    over FIX, in each of 44, 38, 99 and 111 of a D and 44, 38, 111 of a G, with a session
    Reject whose RefTagID is the field or an ExecutionReport Rejected (OrderCancelReject)
    naming it ("-0" parses, then is not positive). Nothing rests but the two orders the PUTs
    and Gs name (one placed over REST, one over FIX), unchanged; the gateway answers on."""
    fields = ("price", "quantity", "stopPrice", "icebergQty")
    tags = {"price": 44, "quantity": 38, "stopPrice": 99, "icebergQty": 111}

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        fix = await fix_user(harness, "ALICE", "alice-pw")
        try:
            kept = await alice.call(
                "POST", "/api/v1/order", **LIMIT, price="95.00", quantity="1.00"
            )
            await fix.send("D", *_d("kept", t44="95.00"))
            assert (await _answer(fix)).get(150) == b"0"
            for n, value in enumerate(MALFORMED):
                for name in fields:
                    order = {**LIMIT, "price": "100.00", "quantity": "1.00"}
                    if name == "stopPrice":
                        order = {**order, "type": "STOP_LOSS_LIMIT"}
                    order[name] = value
                    answers = [
                        await alice.request("POST", "/api/v1/order", **order),
                        await _send_json(alice, "POST", "/api/v1/order", order),
                    ]
                    batch = {"batchOrders": [order]}
                    status, body = await _send_json(alice, "POST", "/api/v1/batchOrders", batch)
                    assert status == 200, body
                    answers.append((400, body[0]))
                    if name in ("price", "quantity"):
                        ref = {"symbol": "BTC-USD", "orderId": kept["orderId"], name: value}
                        answers.append(await alice.request("PUT", "/api/v1/order", **ref))
                    for status, body in answers:
                        assert (status, body.get("code")) == (400, codes.ILLEGAL_PARAM), body
                        assert f"{name} {value!r} is not a decimal number" in body["msg"], body
                    tag = tags[name]
                    stop = {"t40": "4"} if tag == 99 else {}
                    kinds = [("D", [])] if tag == 99 else [("D", []), ("G", [(41, "kept")])]
                    for kind, head in kinds:
                        cl = f"{kind}{n}-{tag}"
                        await fix.send(kind, *head, *_d(cl, **stop, **{f"t{tag}": value}))
                        answer = await _answer(fix)
                        if answer.get(35) == b"3":
                            assert answer.get(371) == b"%d" % tag, answer
                        else:
                            assert answer.get(35) in (b"8", b"9"), answer
                            assert answer.get(150) in (None, b"8"), answer
                            assert value.encode() in answer.get(58), answer
            opened = await alice.call("GET", "/api/v1/openOrders")
            assert sorted((o["price"], o["origQty"]) for o in opened) == [("95.00", "1.00")] * 2
            assert kept["orderId"] in [o["orderId"] for o in opened], opened
        finally:
            await alice.close()

    run(harness, scenario)


# -- what holds: the limits, judged alike over FIX and REST -------------------------------------

#: (field, value, words the refusal holds): "" when the edge takes it (the exchange may then
#: refuse it, naming its code: a buy of ten million bitcoin at 100.00 is INSUFFICIENT_BALANCE).
BOUNDS = [
    ("price", LARGEST_PRICE, ""),
    ("price", "92233720368547758.10", f"beyond the largest price {LARGEST_PRICE}"),
    ("price", "100.000000000000000000", ""),
    ("price", "0", "must be positive"),
    ("price", "0.00", "must be positive"),
    ("price", "100.01", "not a multiple of tick 0.05"),
    ("quantity", "10000000.00", ""),
    ("quantity", "10000000.01", " 10000000.00, symbol=BTC-USD"),  # maxQty (REST), max (FIX)
    ("quantity", "9" * 20, "beyond the largest quantity"),
    ("quantity", "0.01", ""),
    ("quantity", "0.009", "not a multiple of lot 0.01"),
    ("quantity", "1.000000000000000000", ""),
]


def test_sizes_and_prices_at_their_limits_are_judged_alike_over_fix_and_rest(
    harness: Harness,
) -> None:
    """At the largest price and one tick past, the largest size and one lot past, the least
    size and a value off the lot, zero, and a value with 18 fractional zeros past the tick:
    REST's ``POST order`` and a FIX D either both take the value to the exchange (whose
    answer, if a refusal, is the exchange's code, never a filter's) or both refuse it at the
    edge, naming the value and the limit. Fractional zeros past the step are the value
    itself, at both (and at ``ringex admin``: ``test_admin_amounts_...``)."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        fix = await fix_user(harness, "ALICE", "alice-pw")
        try:
            for n, (name, value, words) in enumerate(BOUNDS):
                order = {**LIMIT, "price": "100.00", "quantity": "1.00", name: value}
                status, body = await alice.request("POST", "/api/v1/order", **order)
                tag = 44 if name == "price" else 38
                await fix.send("D", *_d(f"b{n}", **{f"t{tag}": value}))
                report = await _answer(fix)
                assert report.get(35) == b"8", report
                text = (report.get(58) or b"").decode()
                if words:
                    # (past the symbol's decimals: -1111, review 315)
                    assert status == 400, body
                    assert body["code"] in (codes.FILTER_FAILURE, codes.BAD_PRECISION), body
                    assert value in body["msg"] and words in body["msg"], body
                    assert report.get(150) == b"8" and value in text and words in text, text
                    continue
                if status == 200:  # it rests: the same over FIX, at the same integers
                    assert report.get(150) == b"0", text
                    assert body["price"] == report.get(44).decode(), (body, report)
                    assert body["origQty"] == report.get(38).decode(), (body, report)
                    await alice.call(
                        "DELETE", "/api/v1/order", symbol="BTC-USD", orderId=body["orderId"]
                    )
                    cancel = [(41, f"b{n}"), (11, f"b{n}x"), (55, "BTC-USD"), (54, "1")]
                    await fix.send("F", *cancel, (60, utc()))
                    assert (await _answer(fix)).get(150) == b"4"
                else:  # the exchange's refusal, its code named at both
                    assert (status, body["code"]) == (400, codes.NEW_ORDER_REJECTED), body
                    assert report.get(150) == b"8" and text.startswith("INSUFFICIENT"), text
                    assert "INSUFFICIENT_BALANCE" in body["msg"], body
        finally:
            await alice.close()

    run(harness, scenario)


def test_json_numbers_in_an_amend_and_a_batch_are_read_as_a_body_s_are(harness: Harness) -> None:
    """``PUT order`` and each order of ``batchOrders`` read a JSON number as ``POST order``
    does (review 31): an integer is its digits (1 is 1.00), ``-0`` is 0 (not positive), a
    float (1.5) is refused "decimals are strings" as sent, one no float holds (1e400)
    "out of range", an integer past int64 is refused naming the largest price; never a 500."""
    cases: list[tuple[str, Any, str]] = [
        ("quantity", 2, ""),
        ("price", 100, ""),
        ("price", 0, "must be positive"),
        ("quantity", 1.5, "the JSON number 1.5: decimals are strings"),
        ("price", 18446744073709551616, f"beyond the largest price {LARGEST_PRICE}"),
    ]

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            placed = await alice.call(
                "POST", "/api/v1/order", **LIMIT, price="90.00", quantity="1.00"
            )
            for name, value, words in cases:
                ref = {"symbol": "BTC-USD", "orderId": placed["orderId"], name: value}
                status, body = await _send_json(alice, "PUT", "/api/v1/order", ref)
                order = {**LIMIT, "price": "90.00", "quantity": "1.00", name: value}
                bstatus, answers = await _send_json(
                    alice, "POST", "/api/v1/batchOrders", {"batchOrders": [order]}
                )
                assert bstatus == 200, answers
                if not words:
                    assert status == 200, body
                    shown = f"{value}.00"
                    assert body["origQty" if name == "quantity" else "price"] == shown, body
                    assert answers[0]["status"] == "NEW", answers
                    continue
                for got in (body, answers[0]):
                    assert got["code"] in (codes.ILLEGAL_PARAM, codes.FILTER_FAILURE), got
                    assert words in got["msg"], got
            for raw, words in ((b"1e400", "1e400, out of range"), (b"-0", "price 0 must be")):
                body_raw = b'{"symbol":"BTC-USD","orderId":%d,"price":%s}' % (
                    placed["orderId"],
                    raw,
                )
                status, body = await alice._send(
                    "PUT", "/api/v1/order", "", body_raw, "application/json", True
                )
                assert status == 400 and words in body["msg"], body
        finally:
            await alice.close()

    run(harness, scenario)


# -- what holds: ringex admin's amounts -----------------------------------------------------------


def test_admin_amounts_take_the_same_values_and_refuse_naming_the_limit(
    tmp_path: Path,
    instance: str,
    admin: list[tuple[Any, ...]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``deposit --amount``: fractional zeros past the asset's places are the value
    (100.000000000000000000 is 100, as at FIX and REST); an exponent is taken (the README:
    "ASCII digits, one '.', an exponent"), 1E-2 is 0.01; -0 and -0.0 are signed (exit 2);
    NaN, Infinity, 0x10 and a fullwidth digit are not decimals (exit 1, named); 1e400 and
    one minor unit past 2**63 - 1 are refused naming the limit, 2**63 - 1 itself is taken;
    nothing refused is sent. ``add-user --deposit USD=-0`` is refused before anything opens."""
    config = cli._instance_config(tmp_path, instance)
    argv = ["admin", "deposit", "--config", str(config), "--account", "100", "--asset", "USD"]
    taken = {
        "100.000000000000000000": "100.000000",
        "1E-2": "0.010000",
        "9223372036854.775807": "9223372036854.775807",
    }
    for amount, free in taken.items():
        assert cli._cli([*argv, "--amount", amount]) == 0, capsys.readouterr().err
        assert f"free balance {free}" in capsys.readouterr().out
    sent = [c for c in admin if c[0] == "transfer"]
    assert [c[3] for c in sent] == list(taken)
    refused = {
        "-0": (2, "amount -0 must be positive"),
        "-0.0": (2, "amount -0.0 must be positive"),
        "NaN": (1, "amount 'NaN' is not a decimal number"),
        "Infinity": (1, "amount 'Infinity' is not a decimal number"),
        "0x10": (1, "amount '0x10' is not a decimal number"),
        "\uff11": (1, "amount '\uff11' is not a decimal number"),
        "1e400": (1, "amount 1e400 USD is beyond the limit of 9223372036854775807"),
        "9223372036854.775808": (1, "beyond the limit of 9223372036854775807"),
        "0.0000001": (1, "has more than USD's 6 decimal places"),
    }
    for amount, (code, words) in refused.items():
        assert cli._cli([*argv, "--amount", amount]) == code, amount
        err = capsys.readouterr().err
        assert words in err and len(err.splitlines()) == 1, (amount, err)
    assert [c for c in admin if c[0] == "transfer"] == sent
    add = ["admin", "add-user", "--config", str(config), "--username", "z", "--password", "p"]
    assert cli._cli([*add, "--deposit", "USD=-0"]) == 2
    assert "deposit USD=-0 must be more than 0" in capsys.readouterr().err
    assert admin == sent  # no account opened


@pytest.mark.parametrize("tick", [1, 5, 7, 100])
@pytest.mark.parametrize("band_bps", [0, 1, 500, 9_999, 10_000])
def test_largest_capped_is_the_last_reference_whose_cap_fits(tick: int, band_bps: int) -> None:
    """``money.largest_capped``, which the refusal names: its cap fits, one tick more does
    not (``Market.cap``'s floor, on the tick)."""
    market = Market(1, 1, 2, tick, band_bps, 0, 0, 1, 1)
    top = largest_capped(tick, band_bps, MAX_INT64)
    assert top % tick == 0
    assert market.cap(top) <= MAX_INT64 < market.cap(top + tick)
