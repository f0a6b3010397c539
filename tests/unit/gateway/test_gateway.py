"""The gateway over real TCP with a simplefix client, in front of a real router and matcher:
session rules (logon, heartbeats, resend, sequence gaps, PossDup, garbled input, validation)
and order flows end to end."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tests.unit.gateway.harness import Client, Harness, close_all, config, settled, utc

Scenario = Callable[[Harness, int], Awaitable[None]]


def run(h: Harness, scenario: Scenario, limit: float = 15.0) -> None:
    async def main() -> None:
        port = await h.start()
        try:
            await asyncio.wait_for(scenario(h, port), limit)
        finally:
            await close_all()
            await h.stop()

    asyncio.run(main())


async def logged_on(port: int, comp: str = "ALICE", **kw: object) -> Client:
    c = Client(comp)
    await c.connect(port)
    await c.logon(**kw)  # type: ignore[arg-type]
    return c


# -- session ---------------------------------------------------------------------------------


def test_logon_logout_and_sequence_numbers_persist(harness: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        c = await logged_on(port)
        assert c.received[-1].get(108) == b"30"
        await c.send("5")
        assert (await c.expect("5")).get(34) == b"2"
        assert await c.closed()
        c2 = Client("ALICE")
        c2.seq = 3  # both sides continue where they stopped
        await c2.connect(port)
        reply = await c2.logon()
        assert reply.get(34) == b"3"
        c2.close()

    run(harness, scenario)


def test_bad_password_unknown_user_and_second_connection(harness: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        bad = Client("ALICE")
        await bad.connect(port)
        await bad.send("A", (98, 0), (108, 30), (554, "wrong"))
        logout = await bad.expect("5")
        assert b"bad password" in logout.get(58)
        assert await bad.closed()
        nobody = Client("MALLORY")
        await nobody.connect(port)
        await nobody.send("A", (98, 0), (108, 30), (554, "secret"))
        await nobody.expect("5")
        first = await logged_on(port)
        second = Client("ALICE")
        second.seq = 2
        await second.connect(port)
        await second.send("A", (98, 0), (108, 30), (554, "secret"))
        assert b"already logged on" in (await second.expect("5")).get(58)
        assert await second.closed()
        await first.send("1", (112, "still-there"))  # the first session stays up
        assert (await first.expect("0")).get(112) == b"still-there"

    run(harness, scenario)


def test_heartbeat_and_test_request(harness: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        c = await logged_on(port, hb=1)
        await c.send("1", (112, "T1"))
        assert (await c.expect("0")).get(112) == b"T1"
        beat = await c.recv(2.5)  # silent for a heartbeat interval: the gateway beats
        assert beat is not None and beat.get(35) in (b"0", b"1")

    run(harness, scenario)


def test_resend_request_is_served_with_gap_fill(harness: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        c = await logged_on(port)
        await c.send("D", *order("o1", "1", "1.00", "100.00"))
        report = await c.expect("8")
        assert report.get(150) == b"0" and report.get(34) == b"2"
        await c.send("1", (112, "x"))
        await c.expect("0")  # seq 3
        await c.send("2", (7, 1), (16, 0))
        gap = await c.expect("4")  # the Logon (1) as a gap fill
        assert (gap.get(34), gap.get(123), gap.get(36)) == (b"1", b"Y", b"2")
        again = await c.expect("8")
        assert (again.get(34), again.get(43)) == (b"2", b"Y")
        assert again.get(122) == report.get(52)
        tail = await c.expect("4")  # the heartbeat (3)
        assert (tail.get(34), tail.get(36)) == (b"3", b"4")

    run(harness, scenario)


def test_seq_too_high_requests_resend_and_too_low_logs_out(harness: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        c = await logged_on(port)
        await c.send("1", (112, "ahead"), seq=5)
        rr = await c.expect("2")
        assert (rr.get(7), rr.get(16)) == (b"2", b"0")
        await c.send("4", (123, "Y"), (36, 6), seq=2, poss_dup=True, orig_sending_time=utc())
        await c.send("1", (112, "now"), seq=6)
        assert (await c.expect("0")).get(112) == b"now"
        await c.send("1", (112, "old"), seq=3)  # too low, no PossDup
        assert b"too low" in (await c.expect("5")).get(58)
        assert await c.closed()

    run(harness, scenario)


def test_poss_dup_is_ignored_and_not_executed_twice(harness: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        c = await logged_on(port)
        await c.send("D", *order("dup", "1", "1.00", "100.00"))
        await c.expect("8")
        await c.send("D", *order("dup", "1", "1.00", "100.00"), seq=2, poss_dup=True,
                     orig_sending_time=utc())  # fmt: skip
        # in sequence, a PossResend of the same order: received already, not executed again
        await c.send("D", *order("dup", "1", "1.00", "100.00"), poss_resend=True)
        await c.send("1", (112, "after"))
        assert (await c.expect("0")).get(112) == b"after"
        assert len(h.router.sequencer.accounts.snapshot()) > 0
        await c.send("H", *status_request("dup", "1"))
        status = await c.expect("8")
        assert (status.get(150), status.get(39), status.get(151)) == (b"I", b"0", b"1.00")

    run(harness, scenario)


def test_garbled_and_bad_checksum_are_ignored(harness: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        c = await logged_on(port)
        good = c.message("1", (112, "bad-sum"))
        raw = good.encode()
        wrong = b"%03d\x01" % ((int(raw[-4:-1]) + 1) % 256)
        await c.send_raw(raw[:-4] + wrong)  # wrong CheckSum: seq 2 not consumed
        await c.send_raw(b"garbage\x01more=1\x01")
        await c.send_raw(c.message("1", (112, "ok"), seq=2).encode())
        assert (await c.expect("0")).get(112) == b"ok"

    run(harness, scenario)


@pytest.mark.parametrize(
    ("pairs", "reason", "ref"),
    [
        ([(112, "x"), (9999, "1")], b"3", b"9999"),  # undefined tag
        ([(112, "x"), (11, "a")], b"2", b"11"),  # not defined for TestRequest
        ([(112, "")], b"4", b"112"),  # empty value
        ([], b"1", b"112"),  # required tag missing
        ([(112, "x"), (112, "y")], b"13", b"112"),  # repeated
    ],
)
def test_validation_rejects(
    harness: Harness, pairs: list[tuple[int, object]], reason: bytes, ref: bytes
) -> None:
    async def scenario(h: Harness, port: int) -> None:
        c = await logged_on(port)
        await c.send("1", *pairs)
        reject = await c.expect("3")
        assert (reject.get(373), reject.get(371), reject.get(45)) == (reason, ref, b"2")
        await c.send("1", (112, "next"))  # the rejected message consumed its seq
        assert (await c.expect("0")).get(112) == b"next"

    run(harness, scenario)


def test_data_format_enum_sending_time_and_unsupported_type(harness: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        c = await logged_on(port)
        await c.send("D", *order("f", "1", "abc", "100.00"))
        assert (await c.expect("3")).get(373) == b"6"
        await c.send("D", *order("e", "7", "1.00", "100.00"))
        assert (await c.expect("3")).get(373) == b"5"
        await c.send("R", (131, "quote-req"))  # QuoteRequest: a FIX type ringex does not take
        assert (await c.expect("j")).get(380) == b"3"
        await c.send("1", (112, "late"), sending_time=utc(-600))
        assert (await c.expect("3")).get(373) == b"10"
        await c.expect("5")
        assert await c.closed()

    run(harness, scenario)


# -- orders ----------------------------------------------------------------------------------


def order(
    cl: str, side: str, qty: str, price: str | None, ord_type: str = "2", *extra: tuple[int, object]
) -> list[tuple[int, object]]:
    pairs: list[tuple[int, object]] = [(11, cl), (55, "BTC-USD"), (54, side), (60, utc())]
    pairs += [(38, qty), (40, ord_type)]
    if price is not None:
        pairs.append((44, price))
    return pairs + list(extra)


def cancel(orig: str, cl: str, side: str) -> list[tuple[int, object]]:
    """An OrderCancelRequest's fields (F) for a BTC-USD order."""
    return [(41, orig), (11, cl), (55, "BTC-USD"), (54, side), (60, utc())]


def status_request(cl: str, side: str) -> list[tuple[int, object]]:
    """An OrderStatusRequest's fields (H) for a BTC-USD order."""
    return [(11, cl), (55, "BTC-USD"), (54, side)]


def test_new_partial_fill_fill_and_avg_px(harness: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        bob = await logged_on(port, "BOB")
        await alice.send("D", *order("s1", "2", "2.00", "100.00"))
        new = await alice.expect("8")
        assert (new.get(150), new.get(39), new.get(151), new.get(14)) == (
            b"0", b"0", b"2.00", b"0.00",
        )  # fmt: skip
        await bob.send("D", *order("b1", "1", "0.50", "100.05"))
        await bob.expect("8")  # New
        taker = await bob.expect("8")
        assert (taker.get(150), taker.get(39), taker.get(31), taker.get(32)) == (
            b"F", b"2", b"100.00", b"0.50",
        )  # fmt: skip
        maker = await alice.expect("8")
        assert (maker.get(150), maker.get(39), maker.get(151), maker.get(14)) == (
            b"F", b"1", b"1.50", b"0.50",
        )  # fmt: skip
        await bob.send("D", *order("b2", "1", "1.50", None, "1"))  # market
        await bob.expect("8")
        await bob.expect("8")
        last = await alice.expect("8")
        assert (last.get(39), last.get(151), last.get(14), last.get(6)) == (
            b"2", b"0.00", b"2.00", b"100.000000",
        )  # fmt: skip
        ids = {m.get(17) for m in alice.received + bob.received if m.get(35) == b"8"}
        assert len(ids) == sum(1 for m in alice.received + bob.received if m.get(35) == b"8")
        assert h.gateway is not None  # the metrics' counters (procs.common.stats)
        counted = h.gateway.stats.read()
        assert [counted[k] for k in ("orders", "acks", "fills", "rejects")] == [3, 3, 4, 0]
        assert sum(v for k, v in counted.items() if k.startswith("ack_le_")) == 3
        # the same three in two stages, at the router's stamp: sequenced, then acked
        for stage in ("to_router", "router_to_ack", "to_ring"):
            assert sum(v for k, v in counted.items() if k.startswith(f"{stage}_le_")) == 3
        stages = counted["to_router_sum_ns"] + counted["router_to_ack_sum_ns"]
        assert stages == counted["ack_sum_ns"]  # one clock read: the two add up exactly
        assert h.matcher.stats.read()["trades_1"] == 2

    run(harness, scenario)


def test_cancel_replace_and_their_rejects(harness: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        c = await logged_on(port)
        await c.send("D", *order("o1", "1", "1.00", "99.00"))
        await c.expect("8")
        await c.send("G", (41, "o1"), *order("o2", "1", "3.00", "98.00"))
        rep = await c.expect("8")
        assert (rep.get(150), rep.get(11), rep.get(41), rep.get(38), rep.get(44)) == (
            b"5", b"o2", b"o1", b"3.00", b"98.00",
        )  # fmt: skip
        await c.send("F", *cancel("o2", "c1", "1"))
        done = await c.expect("8")
        assert (done.get(150), done.get(39), done.get(11), done.get(41)) == (
            b"4", b"4", b"c1", b"o2",
        )  # fmt: skip
        await c.send("F", *cancel("o2", "c2", "1"))  # cancelled already: too late
        rej = await c.expect("9")
        assert (rej.get(434), rej.get(102), rej.get(39)) == (b"1", b"0", b"4")
        await c.send("F", *cancel("never", "c3", "1"))
        rej = await c.expect("9")
        assert (rej.get(434), rej.get(102), rej.get(39)) == (b"1", b"1", b"8")

    run(harness, scenario)


def test_order_rejects(harness: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        c = await logged_on(port)
        await c.send("D", *order("t", "1", "1.00", "100.03"))  # tick is 0.05
        rej = await c.expect("8")
        assert rej.get(150) == b"8" and b"not a multiple of tick 0.05" in rej.get(58)
        await c.send("D", *order("l", "1", "1.001", "100.00"))
        assert b"lot 0.01" in (await c.expect("8")).get(58)
        await c.send("D", *order("u", "1", "1.00", "100.00", "2"), (18, "6"))
        assert (await c.expect("8")).get(150) == b"0"  # a resting post-only bid
        await c.send("D", *order("p", "2", "1.00", "100.00", "2"), (18, "6"))
        taking = await c.expect("8")
        assert taking.get(150) == b"8" and b"POST_ONLY_WOULD_TAKE" in taking.get(58)
        await c.send("D", *order("x", "1", "1000000.00", "100.00"))  # more than it can pay
        poor = await c.expect("8")
        assert poor.get(150) == b"8" and b"INSUFFICIENT_BALANCE" in poor.get(58)

    run(harness, scenario)


def test_status_mass_cancel_and_cancel_on_disconnect(instance: str, tmp_path: Path) -> None:
    h = Harness(config(instance, tmp_path, cancel_on_disconnect=True))
    h.add_user("ALICE", "secret", 7)
    h.fund(7)

    async def scenario(h: Harness, port: int) -> None:
        c = await logged_on(port)
        for k in range(3):
            await c.send("D", *order(f"o{k}", "1", "1.00", f"9{k}.00"))
            await c.expect("8")
        await c.send("H", *status_request("nope", "1"))
        assert (await c.expect("8")).get(39) == b"8"
        await c.send("q", (11, "mc"), (530, "1"), (55, "BTC-USD"), (60, utc()))
        report = await c.expect("r")
        assert report.get(531) == b"1"
        cancelled = [await c.expect("8") for _ in range(3)]
        assert {m.get(150) for m in cancelled} == {b"4"}
        await c.send("D", *order("left", "1", "1.00", "90.00"))
        await c.expect("8")
        c.close()
        await settled(lambda: not h.router.sequencer.accounts.open_orders(7))
        assert not h.router.sequencer.accounts.open_orders(7)

    try:
        run(h, scenario)
    finally:
        h.close()


def test_a_fill_while_logged_off_is_delivered_by_resend_at_the_next_logon(
    harness: Harness,
) -> None:
    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("s1", "2", "1.00", "100.00"))
        assert (await alice.expect("8")).get(150) == b"0"
        await alice.send("5")
        await alice.expect("5")
        await alice.aclose()
        next_in = alice.seq
        bob = await logged_on(port, "BOB")
        await bob.send("D", *order("b1", "1", "1.00", "100.00"))
        await bob.expect("8")
        assert (await bob.expect("8")).get(39) == b"2"
        await asyncio.sleep(0.2)  # alice's fill is reported while she is away

        back = Client("ALICE")
        back.seq = next_in
        await back.connect(port)
        logon = await back.logon()
        gap_from = 4  # she saw: logon 1, new 2, logout 3; the stored fill is 4
        assert int(logon.get(34) or 0) > gap_from
        await back.send("2", (7, gap_from), (16, 0))
        resent = await back.expect("8")
        assert (resent.get(43), resent.get(11), resent.get(39)) == (b"Y", b"s1", b"2")

    run(harness, scenario)
