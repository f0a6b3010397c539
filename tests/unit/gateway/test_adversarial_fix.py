"""A hostile FIX client against the gateway over real TCP (``harness.py``): stalled and
oversized messages, garbage, sequence-number abuse, malformed tags, extreme order values,
other users' orders. Each attack must get a clear answer (Reject, BusinessMessageReject,
rejected ExecutionReport, OrderCancelReject or Logout, naming the value and the limit), the
gateway must stay up, and BOB and CAROL, logged on beforehand, must still trade afterwards.

What ``test_gateway.py`` covers already (bad password, a second connection, garbled and bad
checksums, the validation basics, tick and lot) is not repeated. The bugs these attacks found
have their tests in ``test_adversarial_fix_found.py``, each of which failed before its fix.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from tests.unit.gateway.harness import Client, Harness, close_all, config, settled, utc

USERS = (("ALICE", 7), ("BOB", 8), ("CAROL", 9))
#: A sequence number past what ``store.MessageStore`` can write (u64).
PAST_U64 = 2**64
#: More digits than Python's ``int()`` converts (``sys.get_int_max_str_digits``).
DIGITS = "1" * 4400

Scenario = Callable[[Harness, int, Client, Client], Awaitable[None]]
Pairs = list[tuple[int, object]]
_REFS = itertools.count()


@pytest.fixture
def exchange(instance: str, tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    """Makes the exchange with gateway settings ``**gw``: ALICE (the attacker), BOB and
    CAROL, all funded."""
    made: list[Harness] = []

    def make(**gw: object) -> Harness:
        h = Harness(config(instance, tmp_path, **gw))
        for comp, account in USERS:
            h.add_user(comp, "secret", account)
            h.fund(account)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


def run(h: Harness, scenario: Scenario) -> None:
    """Start the gateway, log BOB and CAROL on, run ``scenario``, stop."""

    async def main() -> None:
        port = await h.start()
        try:
            bob = await logged_on(port, "BOB")
            carol = await logged_on(port, "CAROL")
            await asyncio.wait_for(scenario(h, port, bob, carol), 15)
        finally:
            await close_all()
            _writable_stores(h)
            await h.stop()

    asyncio.run(main())


def _writable_stores(h: Harness) -> None:
    """After the u64 bug (``test_sequence_reset_past_u64_...``) a session store holds a
    sequence number it cannot write, and the gateway's close would raise on it before
    releasing its rings; a writable one lets the teardown finish cleanly."""
    if h.gateway is not None:
        for store in h.gateway.stores.values():
            if store.next_in >= PAST_U64:
                store.next_in = 1


async def logged_on(port: int, comp: str = "ALICE", hb: int = 30) -> Client:
    c = Client(comp)
    await c.connect(port)
    await c.logon(hb=hb)
    return c


def order(
    cl: str | bytes,
    side: str,
    qty: str,
    price: str | None,
    ord_type: str = "2",
    *extra: tuple[int, object],
) -> Pairs:
    pairs: Pairs = [(11, cl), (55, "BTC-USD"), (54, side), (60, utc()), (38, qty)]
    pairs.append((40, ord_type))
    if price is not None:
        pairs.append((44, price))
    return pairs + list(extra)


def framed(*fields: tuple[object, object]) -> bytes:
    """A message with exactly these fields, in this order, framed by hand (BodyLength and
    CheckSum right): for what simplefix will not write."""

    def text(v: object) -> bytes:
        return v if isinstance(v, bytes) else str(v).encode()

    body = b"".join(b"%s=%s\x01" % (text(t), text(v)) for t, v in fields)
    head = b"8=FIX.4.4\x019=%d\x01" % len(body)
    return head + body + b"10=%03d\x01" % (sum(head + body) % 256)


def crafted(c: Client, msg_type: str, *body: tuple[object, object], seq: object = None) -> bytes:
    """``c``'s next message (or with MsgSeqNum ``seq`` as given, any text) from raw fields."""
    if seq is None:
        seq = c.seq
        c.seq += 1
    head = ((35, msg_type), (49, c.comp_id), (56, c.target), (34, seq), (52, utc()))
    return framed(*head, *body)


async def trade(bob: Client, carol: Client) -> None:
    """BOB sells 0.01 at 150.00 and CAROL takes it; both see the fill. (No test leaves
    anything of ALICE's at or through 150.00.)"""
    k = next(_REFS)
    await bob.send("D", *order(f"sell{k}", "2", "0.01", "150.00"))
    assert (await bob.expect("8")).get(150) == b"0"
    await carol.send("D", *order(f"buy{k}", "1", "0.01", "150.00"))
    assert (await carol.expect("8")).get(150) == b"0"
    taker, maker = await carol.expect("8"), await bob.expect("8")
    assert (taker.get(150), taker.get(39), taker.get(31)) == (b"F", b"2", b"150.00")
    assert (maker.get(150), maker.get(39), maker.get(32)) == (b"F", b"2", b"0.01")


def open_orders(h: Harness, account: int) -> int:
    return h.router.sequencer.accounts.open_orders(account)


# -- connections that stall, flood or overflow ------------------------------------------------


def test_stalled_partial_messages_time_out_while_others_trade(
    exchange: Callable[..., Harness],
) -> None:
    async def scenario(h: Harness, port: int, bob: Client, carol: Client) -> None:
        start = time.monotonic()
        lurker = Client("MALLORY")  # half a Logon, never finished
        await lurker.connect(port)
        await lurker.send_raw(bytes(lurker.message("A", (98, 0), (108, 30)).encode())[:40])
        alice = await logged_on(port, hb=1)  # half a TestRequest after logging on
        await alice.send_raw(bytes(alice.message("1", (112, "never")).encode())[:30])
        await trade(bob, carol)  # the stalled reads hold nothing up
        assert await lurker.closed(3.0)  # logon_timeout_s
        test_request = await alice.expect("1", timeout=3.0)  # the partial is not input
        assert (test_request.get(112) or b"").startswith(b"TEST-")
        assert await alice.closed(3.0)  # no answer within HeartBtInt
        assert time.monotonic() - start < 8
        assert h.gateway is not None and len(h.gateway.connections) == 2
        await trade(bob, carol)

    run(exchange(logon_timeout_s=0.5), scenario)


def test_oversized_messages_log_out_naming_the_limit(exchange: Callable[..., Harness]) -> None:
    async def scenario(h: Harness, port: int, bob: Client, carol: Client) -> None:
        early = Client("ALICE")  # before a Logon there is no session to log out: closed
        await early.connect(port)
        await early.send_raw(b"8=FIX.4.4\x019=9999999\x0135=A\x01")
        assert await early.closed(2.0)

        alice = await logged_on(port)
        await alice.send("D", *order("C" * 10_000, "1", "1.00", "100.00"))  # ClOrdID of 10k
        text = (await alice.expect("5")).get(58)
        assert b"BodyLength 10" in text and b"expected no more than 8192" in text, text
        assert await alice.closed()
        assert open_orders(h, 7) == 0
        again = Client("ALICE")
        again.seq = 2  # the oversized message consumed no sequence number
        await again.connect(port)
        await again.logon()
        await again.send("1", (112, "back"))
        assert (await again.expect("0")).get(112) == b"back"
        await trade(bob, carol)

    run(exchange(), scenario)


def test_a_test_request_flood_is_answered_in_order_and_starves_nobody(
    exchange: Callable[..., Harness],
) -> None:
    n = 3000

    async def scenario(h: Harness, port: int, bob: Client, carol: Client) -> None:
        alice = await logged_on(port)
        flood = b"".join(bytes(alice.message("1", (112, f"f{k}")).encode()) for k in range(n))
        assert alice.writer is not None
        alice.writer.write(flood)
        await trade(bob, carol)
        ids = [(await alice.expect("0", timeout=5.0)).get(112) for _ in range(n)]
        assert ids == [f"f{k}".encode() for k in range(n)]

    run(exchange(), scenario)


def test_connections_past_max_sessions_are_refused_and_the_slot_comes_back(
    exchange: Callable[..., Harness],
) -> None:
    async def scenario(h: Harness, port: int, bob: Client, carol: Client) -> None:
        idle = Client("MALLORY")
        await idle.connect(port)  # the third connection: the limit
        extra = Client("ALICE")
        await extra.connect(port)
        await extra.send("A", (98, 0), (108, 30), (554, "secret"))
        assert await extra.closed(2.0) and not extra.received
        await trade(bob, carol)
        await idle.aclose()
        assert h.gateway is not None
        gateway = h.gateway
        await settled(lambda: len(gateway.connections) == 2)
        alice = Client("ALICE")
        await alice.connect(port)
        await alice.logon()

    run(exchange(max_sessions=3), scenario)


def test_the_throttle_rejects_naming_the_limit_and_takes_the_rest(
    exchange: Callable[..., Harness],
) -> None:
    async def scenario(h: Harness, port: int, bob: Client, carol: Client) -> None:
        alice = await logged_on(port)
        burst = [alice.message("D", *order(f"t{k}", "1", "1.00", "100.00")) for k in range(6)]
        await alice.send_raw(b"".join(bytes(m.encode()) for m in burst))
        got = [await alice.expect(kind) for kind in "jjj888"]
        for k, reject in enumerate(got[:3], start=3):
            assert reject.get(379) == f"t{k}".encode() and reject.get(380) == b"0"
            assert reject.get(58) == b"throttle: more than 3 messages/s"
        assert [m.get(11) for m in got[3:]] == [b"t0", b"t1", b"t2"]
        assert open_orders(h, 7) == 3
        await trade(bob, carol)

    run(exchange(max_messages_per_s=3), scenario)


# -- logon -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "seq", "target", "text"),
    [
        ([(98, 0), (108, 0)], 1, "RINGEX", b"HeartBtInt 0 outside 1..300"),
        ([(98, 0), (108, 301)], 1, "RINGEX", b"HeartBtInt 301 outside 1..300"),
        ([(98, 0), (108, "9" * 30)], 1, "RINGEX", b"HeartBtInt (108) " + b"9" * 30 + b" is above"),
        ([(98, 0), (108, 30), (141, "Y")], 5, "RINGEX", b"MsgSeqNum 5, expected 1"),
        ([(98, 0), (108, 30)], 1, "RINGEY", b"TargetCompID 'RINGEY' is not 'RINGEX'"),
        ([(98, 1), (108, 30)], 1, "RINGEX", b"EncryptMethod (98) '1' is not one of ['0']"),
        ([(98, 0), (108, "-30")], 1, "RINGEX", b"HeartBtInt (108) -30 is out of range: below 0"),
    ],
)
def test_bad_logons_are_refused_naming_the_value(
    exchange: Callable[..., Harness],
    body: list[tuple[object, object]],
    seq: int,
    target: str,
    text: bytes,
) -> None:
    async def scenario(h: Harness, port: int, bob: Client, carol: Client) -> None:
        c = Client("ALICE", target)
        await c.connect(port)
        await c.send_raw(crafted(c, "A", *body, (554, "secret"), seq=seq))
        logout = await c.expect("5")
        assert text in logout.get(58), logout.get(58)
        assert await c.closed()
        await trade(bob, carol)

    run(exchange(), scenario)


def test_garbage_then_a_valid_logon_on_the_same_connection(
    exchange: Callable[..., Harness],
) -> None:
    async def scenario(h: Harness, port: int, bob: Client, carol: Client) -> None:
        c = Client("ALICE")
        await c.connect(port)
        junk = (
            b"\x00\xff" * 500
            + b"8=FIX.4.4\x019=abc\x01"
            + b"8=FIX.4.4\x019=5\x0135=A\x0110=000\x01"
        )
        await c.send_raw(junk + b"8=FIX.4")  # ends in the start of a BeginString
        await c.send_raw(b".4\x019=1\x01x\x0110=000\x01")  # which turns out garbled too
        await c.logon()
        await c.send("A", (98, 0), (108, 30), (554, "secret"))  # a second Logon in session
        assert b"Logon received while logged on" in (await c.expect("5")).get(58)
        assert await c.closed()
        await trade(bob, carol)

    run(exchange(), scenario)


# -- sequence numbers -------------------------------------------------------------------------


def test_sequence_reset_abuse_is_rejected_naming_the_numbers(
    exchange: Callable[..., Harness],
) -> None:
    async def scenario(h: Harness, port: int, bob: Client, carol: Client) -> None:
        alice = await logged_on(port)
        await alice.send("4", (123, "Y"), (36, 1))  # a gap fill backwards (seq 2)
        reject = await alice.expect("3")
        assert (reject.get(373), reject.get(371)) == (b"5", b"36")
        assert reject.get(58) == b"NewSeqNo 1 is not above MsgSeqNum 2"
        await alice.send("4", (36, 2), seq=alice.seq)  # a Reset below the expected 3
        assert (await alice.expect("3")).get(58) == b"NewSeqNo 2 is below the expected MsgSeqNum 3"
        await alice.send("4", (36, -5), seq=alice.seq)
        assert (await alice.expect("3")).get(58) == b"NewSeqNo (36) '-5' has the wrong format"
        await alice.send("2", (7, -1), (16, 0))  # seq 3
        assert (await alice.expect("3")).get(58) == b"BeginSeqNo (7) '-1' has the wrong format"
        await alice.send("1", (112, "in-seq"))
        assert (await alice.expect("0")).get(112) == b"in-seq"
        jump = alice.seq + 5
        await alice.send("4", (123, "Y"), (36, jump))  # a gap fill forwards is taken
        alice.seq = jump
        await alice.send("1", (112, "after-gap"))
        assert (await alice.expect("0")).get(112) == b"after-gap"
        await trade(bob, carol)

    run(exchange(), scenario)


def test_resend_of_a_long_session_with_open_or_far_end(exchange: Callable[..., Harness]) -> None:
    n = 300  # more than one block of the store's sparse index (256)

    async def scenario(h: Harness, port: int, bob: Client, carol: Client) -> None:
        alice = await logged_on(port)
        orders = [
            alice.message("D", (11, f"u{k}"), (55, "XX"), (54, 1), (60, utc()), (38, 1), (40, 1))
            for k in range(n)
        ]
        await alice.send_raw(b"".join(bytes(m.encode()) for m in orders))
        for _ in range(n):
            assert b"unknown symbol XX" in (await alice.expect("8")).get(58)
        for end in (0, 2**63 - 1):  # the largest sequence number taken
            await alice.send("2", (7, 1), (16, end))
            gap = await alice.expect("4")
            assert (gap.get(34), gap.get(36)) == (b"1", b"2")
            again = [await alice.expect("8") for _ in range(n)]
            assert [m.get(34) for m in again] == [str(s).encode() for s in range(2, n + 2)]
            assert {m.get(43) for m in again} == {b"Y"}
            assert [m.get(11) for m in again] == [f"u{k}".encode() for k in range(n)]
        await trade(bob, carol)

    run(exchange(), scenario)


# -- malformed messages -----------------------------------------------------------------------


def test_malformed_tags_are_rejected_and_the_session_goes_on(
    exchange: Callable[..., Harness],
) -> None:
    async def scenario(h: Harness, port: int, bob: Client, carol: Client) -> None:
        alice = await logged_on(port)
        good = order("g", "1", "1.00", "100.00")
        nines = b"9" * 40
        cases: list[tuple[bytes, bytes, bytes | None, bytes]] = [  # reason, RefTagID, Text
            (bytes(alice.message("D", *good, (38, "2.00")).encode()), b"13", b"38", b"38"),
            (bytes(alice.message("D", *good, (50, "desk")).encode()), b"14", b"50", b"50"),
            (crafted(alice, "1", ("abc", 1), (112, "x")), b"0", None, b"tag"),
            (crafted(alice, "1", (0, 1), (112, "x")), b"0", None, b"tag"),
            (crafted(alice, "1", ("0112", "x")), b"0", None, b"tag"),
            (crafted(alice, "D", *good, (453, nines)), b"5", b"453", nines + b" is above"),
            (crafted(alice, "D", *good, (453, 1), (452, 3), (448, "p")), b"15", b"452", b"452"),
        ]
        for message, reason, ref, text in cases:
            await alice.send_raw(message)
            reject = await alice.expect("3")
            assert (reject.get(373), reject.get(371)) == (reason, ref), reject
            assert text in reject.get(58), reject
        late = framed((49, "ALICE"), (35, "1"), (56, "RINGEX"), (34, alice.seq), (52, utc()))
        await alice.send_raw(late)  # MsgType not the third field: garbled, so ignored
        await alice.send("1", (112, "still-here"))  # with the seq the garbled one had
        assert (await alice.expect("0")).get(112) == b"still-here"
        assert open_orders(h, 7) == 0
        await trade(bob, carol)

    run(exchange(), scenario)


def test_non_ascii_values_pass_through_byte_exact(exchange: Callable[..., Harness]) -> None:
    async def scenario(h: Harness, port: int, bob: Client, carol: Client) -> None:
        alice = await logged_on(port)
        await alice.send("1", (112, b"\xff\xfe\x80 z"))
        assert (await alice.expect("0")).get(112) == b"\xff\xfe\x80 z"
        cl = b"\xff\x80id"
        await alice.send("D", *order(cl, "1", "1.00", "100.00"))
        ack = await alice.expect("8")
        assert (ack.get(150), ack.get(11)) == (b"0", cl)
        await alice.send("H", (11, cl), (55, "BTC-USD"), (54, "1"))
        assert (await alice.expect("8")).get(150) == b"I"
        await alice.send("F", (41, cl), (11, b"\xc3\xa9"), (55, "BTC-USD"), (54, "1"), (60, utc()))
        done = await alice.expect("8")
        assert (done.get(150), done.get(11), done.get(41)) == (b"4", b"\xc3\xa9", cl)
        await alice.send("q", (11, b"m\xff"), (530, "1"), (55, b"\xffX"), (60, utc()))
        report = await alice.expect("r")
        assert (report.get(531), report.get(58)) == (b"0", b"unknown symbol \xffX")
        await trade(bob, carol)

    run(exchange(), scenario)


# -- orders -----------------------------------------------------------------------------------

TOP_PRICE = b"92233720368547758.05"  # the same on the tick, 0.05 (review 62)


def test_extreme_order_values_are_rejected_naming_the_value_and_limit(
    exchange: Callable[..., Harness],
) -> None:
    cases: list[tuple[Pairs, bytes, bytes]] = [  # fields, reply type, in its Text
        (order("q1", "1", "1e400", "100.00"), b"3", b"OrderQty (38) '1e400' has the wrong"),
        (order("q2", "1", "NaN", "100.00"), b"3", b"OrderQty (38) 'NaN' has the wrong"),
        (order("p1", "1", "1.00", "inf"), b"3", b"Price (44) 'inf' has the wrong"),
        (order("p2", "1", "1.00", "-inf"), b"3", b"Price (44) '-inf' has the wrong"),
        (order("q3", "1", "-0", "100.00"), b"8", b"quantity -0 must be positive"),
        (order("q4", "1", "-1.00", "100.00"), b"8", b"quantity -1.00 must be positive"),
        (order("q5", "1", "1" * 30, "100.00"), b"8", b"largest quantity, maxQty 10000000.00"),
        (order("p3", "1", "1.00", "9" * 30), b"8", b"beyond the largest price " + TOP_PRICE),
        (order("p4", "1", "1.00", "100.0000001"), b"8", b"100.0000001 is not a multiple of tick"),
        (order("p5", "1", "1.00", None), b"8", b"Price (44) is required for OrdType 2"),
        (order("s1", "1", "1.00", "100.00", "4"), b"8", b"StopPx (99) is required"),
        (order("m1", "1", "1.00", "100.00", "2", (111, "0")), b"8", b"MaxFloor 0 must be"),
        (
            order("m2", "1", "1.01", "100.00", "2", (111, "0.01")),
            b"8",
            b"MaxFloor 0.01 cuts OrderQty 1.01 into 101 parts, at most 100",
        ),
        (
            [(11, "x1"), (55, "ETH-USD"), (54, 1), (60, utc()), (38, 1), (40, 2), (44, 1)],
            b"8",
            b"unknown symbol ETH-USD",
        ),
    ]

    async def scenario(h: Harness, port: int, bob: Client, carol: Client) -> None:
        alice = await logged_on(port)
        for pairs, kind, text in cases:
            await alice.send("D", *pairs)
            reply = await alice.expect(kind.decode())
            assert text in reply.get(58), (pairs, reply)
            if kind == b"8":
                assert (reply.get(150), reply.get(39)) == (b"8", b"8")
        assert open_orders(h, 7) == 0
        await trade(bob, carol)

    run(exchange(), scenario)


def test_duplicate_clordids_and_other_users_or_unknown_orders(
    exchange: Callable[..., Harness],
) -> None:
    async def scenario(h: Harness, port: int, bob: Client, carol: Client) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("mine", "1", "1.00", "100.00"))
        assert (await alice.expect("8")).get(150) == b"0"
        cancel: Pairs = [(41, "mine"), (11, "theirs"), (55, "BTC-USD"), (54, 1), (60, utc())]
        await bob.send("F", *cancel)  # BOB cannot see ALICE's ClOrdIDs
        await bob.send("G", (41, "mine"), *order("theirs2", "1", "5.00", "100.00"))
        for kind in (b"1", b"2"):
            rej = await bob.expect("9")
            assert (rej.get(434), rej.get(102)) == (kind, b"1")
            assert rej.get(58) == b"unknown order OrigClOrdID mine"
        await alice.send("D", *order("mine", "1", "1.00", "100.00"))
        dup = await alice.expect("8")
        assert (dup.get(150), dup.get(103), dup.get(58)) == (b"8", b"6", b"duplicate ClOrdID mine")
        await alice.send("F", (41, "nope"), (11, "c1"), (55, "BTC-USD"), (54, 1), (60, utc()))
        assert (await alice.expect("9")).get(58) == b"unknown order OrigClOrdID nope"
        await alice.send("G", (41, "mine"), *order("mine", "1", "2.00", "95.00"))
        assert (await alice.expect("9")).get(58) == b"duplicate ClOrdID mine"
        await alice.send("H", (11, "mine"), (55, "BTC-USD"), (54, 1))
        status = await alice.expect("8")  # untouched by all of it
        assert (status.get(39), status.get(38), status.get(44)) == (b"0", b"1.00", b"100.00")
        assert (open_orders(h, 7), open_orders(h, 8)) == (1, 0)
        await trade(bob, carol)

    run(exchange(), scenario)


def test_an_order_after_logout_is_not_executed(exchange: Callable[..., Harness]) -> None:
    async def scenario(h: Harness, port: int, bob: Client, carol: Client) -> None:
        alice = await logged_on(port)
        bye = alice.message("5")
        late = alice.message("D", *order("late", "1", "1.00", "100.00"))
        await alice.send_raw(bytes(bye.encode()) + bytes(late.encode()))  # one segment
        assert (await alice.expect("5")).get(58) is None
        assert await alice.closed() and [m.get(35) for m in alice.received] == [b"A", b"5"]
        stranger = Client("ALICE")  # an order as the first message: no session, closed
        await stranger.connect(port)
        await stranger.send("D", *order("nolog", "1", "1.00", "100.00"))
        assert await stranger.closed() and not stranger.received
        await trade(bob, carol)
        assert open_orders(h, 7) == 0

    run(exchange(), scenario)
