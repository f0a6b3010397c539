"""Bugs the hostile FIX client (``test_adversarial_fix.py``) found: each test failed before
its fix. The gateway must answer, stay up, and let BOB and CAROL trade afterwards."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.unit.gateway import test_adversarial_fix as rig
from tests.unit.gateway.harness import Client, Harness, utc
from tests.unit.gateway.test_adversarial_fix import (  # the hostile client's rig
    DIGITS,
    PAST_U64,
    Pairs,
    crafted,
    logged_on,
    order,
    run,
    trade,
)

exchange = rig.exchange  # the fixture: a gateway with ALICE, BOB and CAROL


def test_sequence_reset_past_u64_is_rejected_and_reports_keep_flowing(
    exchange: Callable[..., Harness],
) -> None:
    async def scenario(h: Harness, port: int, bob: Client, carol: Client) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("rest", "2", "1.00", "100.00"))
        assert (await alice.expect("8")).get(150) == b"0"
        await alice.send("4", (36, PAST_U64), seq=alice.seq)  # a Reset's seq is not consumed
        await bob.send("D", *order("take", "1", "1.00", "100.00"))  # ALICE's fill is reported
        assert (await bob.expect("8", timeout=1.0)).get(150) == b"0"
        assert (await bob.expect("8", timeout=1.0)).get(150) == b"F"
        await trade(bob, carol)  # today: no reply, the poll task died writing ALICE's report
        assert h.gateway is not None and not any(t.done() for t in h.gateway._tasks[:2])
        reject = await alice.expect("3", timeout=1.0)
        assert str(PAST_U64).encode() in reject.get(58)

    run(exchange(), scenario)


@pytest.mark.parametrize(
    "attack",
    ["OrderQty", "NumInGroup", "MsgSeqNum", "Logon HeartBtInt"],
)
def test_numbers_past_int_max_str_digits_get_an_answer(
    exchange: Callable[..., Harness], attack: str
) -> None:
    async def scenario(h: Harness, port: int, bob: Client, carol: Client) -> None:
        alice = Client("ALICE")
        await alice.connect(port)
        if attack == "Logon HeartBtInt":
            await alice.send_raw(crafted(alice, "A", (98, 0), (108, DIGITS), (554, "secret")))
            logout = await alice.expect("5", timeout=1.0)
            assert b"HeartBtInt" in logout.get(58)
            return
        await alice.logon()
        if attack == "OrderQty":
            await alice.send("D", *order("q", "1", DIGITS, "100.00"))
        elif attack == "NumInGroup":
            await alice.send("D", *order("g", "1", "1.00", "100.00"), (453, DIGITS))
        else:
            await alice.send_raw(crafted(alice, "1", (112, "x"), seq=DIGITS))
        reply = await alice.recv(1.0)
        assert reply is not None, f"{attack}: the connection ended without an answer"
        assert reply.get(35) in (b"2", b"3", b"5", b"8"), reply
        await trade(bob, carol)

    run(exchange(), scenario)


@pytest.mark.parametrize("attack", ["unknown symbol", "duplicate ClOrdID", "unknown OrigClOrdID"])
def test_non_utf8_values_in_rejected_orders_get_a_reject(
    exchange: Callable[..., Harness], attack: str
) -> None:
    async def scenario(h: Harness, port: int, bob: Client, carol: Client) -> None:
        alice = await logged_on(port)
        if attack == "unknown symbol":
            await alice.send("D", (11, "s"), (55, b"BTC\xff"), (54, 1), (60, utc()), (38, 1),
                             (40, 2), (44, 1))  # fmt: skip
            kind = "8"
        elif attack == "duplicate ClOrdID":
            await alice.send("D", *order(b"\xffc", "1", "1.00", "100.00"))
            assert (await alice.expect("8")).get(150) == b"0"
            await alice.send("D", *order(b"\xffc", "1", "1.00", "100.00"))
            kind = "8"
        else:
            await alice.send("F", (41, b"\xfe"), (11, "c"), (55, "BTC-USD"), (54, 1), (60, utc()))
            kind = "9"
        reply = await alice.recv(1.0)
        assert reply is not None and reply.get(35) == kind.encode(), reply
        await trade(bob, carol)

    run(exchange(), scenario)


def test_an_inverted_resend_range_is_rejected(exchange: Callable[..., Harness]) -> None:
    async def scenario(h: Harness, port: int, bob: Client, carol: Client) -> None:
        alice = await logged_on(port)
        for k in range(3):
            await alice.send("1", (112, f"t{k}"))
            await alice.expect("0")
        await alice.send("2", (7, 4), (16, 2))
        reply = await alice.recv(1.0)
        assert reply is not None and reply.get(35) == b"3", "no answer to BeginSeqNo 4 > EndSeqNo 2"
        assert reply.get(373) == b"5"

    run(exchange(), scenario)


@pytest.mark.parametrize(
    ("pairs", "text"),
    [
        (order("neg", "1", "1.00", "-100.00"), b"-100.00"),
        (order("zero", "1", "1.00", "0"), b"price 0"),
        (order("floor", "1", "1.00", "100.00", "2", (111, "5.00")), b"5.00"),
    ],
    ids=["negative price", "zero price", "MaxFloor above OrderQty"],
)
def test_prices_and_floors_out_of_range_are_rejected_naming_the_value(
    exchange: Callable[..., Harness], pairs: Pairs, text: bytes
) -> None:
    async def scenario(h: Harness, port: int, bob: Client, carol: Client) -> None:
        alice = await logged_on(port)
        await alice.send("D", *pairs)
        reply = await alice.expect("8")
        assert reply.get(150) == b"8"
        assert text in reply.get(58), reply.get(58)

    run(exchange(), scenario)


def test_a_replace_that_changes_side_is_refused(exchange: Callable[..., Harness]) -> None:
    async def scenario(h: Harness, port: int, bob: Client, carol: Client) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("o1", "1", "1.00", "100.00"))
        assert (await alice.expect("8")).get(150) == b"0"
        await alice.send("G", (41, "o1"), *order("o2", "2", "2.00", "100.00"))  # now a sell?
        reply = await alice.recv(1.0)
        assert reply is not None and reply.get(35) == b"9", reply  # today: 8, 150=5, 54=1
        assert b"Side" in reply.get(58)

    run(exchange(), scenario)


def test_an_eight_digit_body_length_logs_out_naming_the_limit(
    exchange: Callable[..., Harness],
) -> None:
    async def scenario(h: Harness, port: int, bob: Client, carol: Client) -> None:
        alice = await logged_on(port)
        await alice.send_raw(b"8=FIX.4.4\x019=99999999\x0135=D\x01" + b"x" * 100)
        logout = await alice.expect("5", timeout=1.0)
        assert b"99999999" in logout.get(58) and b"8192" in logout.get(58)

    run(exchange(), scenario)


def test_an_invalid_tag_number_is_named_in_the_reject(exchange: Callable[..., Harness]) -> None:
    async def scenario(h: Harness, port: int, bob: Client, carol: Client) -> None:
        alice = await logged_on(port)
        await alice.send_raw(crafted(alice, "1", ("abc", 1), (112, "x")))
        reject = await alice.expect("3")
        assert reject.get(373) == b"0" and b"abc" in reject.get(58), reject.get(58)

    run(exchange(), scenario)
