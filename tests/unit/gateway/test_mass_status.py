"""OrderMassStatusRequest (AF) over real TCP with a simplefix client, in front of a real router
and matcher: a report (150=I) for each open order of the session, filtered by symbol and side,
numbered with TotNumReports (911) and LastRptRequested (912); one report when none matches;
what the dictionary refuses."""

from __future__ import annotations

from simplefix import FixMessage

from tests.unit.gateway.harness import Harness
from tests.unit.gateway.test_gateway import cancel, logged_on, order, run


async def _reports(client: object, count: int) -> list[FixMessage]:
    return [await client.expect("8") for _ in range(count)]  # type: ignore[attr-defined]


def test_every_open_order_of_the_session_then_the_filters(harness: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        alice, bob = await logged_on(port), await logged_on(port, "BOB")
        for cl, side, price in (("a1", "1", "90.00"), ("a2", "1", "91.00"), ("a3", "2", "120.00")):
            await alice.send("D", *order(cl, side, "1.00", price))
            assert (await alice.expect("8")).get(39) == b"0"
        await bob.send("D", *order("b1", "1", "1.00", "89.00"))  # another session's
        await bob.expect("8")
        await alice.send("F", *cancel("a2", "a2x", "1"))
        assert (await alice.expect("8")).get(39) == b"4"  # cancelled: no longer open

        await alice.send("AF", (584, "all"), (585, 7))
        every = await _reports(alice, 2)
        assert [m.get(11) for m in every] == [b"a1", b"a3"]
        assert {(m.get(150), m.get(584), m.get(911)) for m in every} == {(b"I", b"all", b"2")}
        assert [m.get(912) for m in every] == [b"N", b"Y"]
        assert [m.get(39) for m in every] == [b"0", b"0"]

        await alice.send("AF", (584, "sells"), (585, 1), (55, "BTC-USD"), (54, "2"))
        (sell,) = await _reports(alice, 1)
        assert (sell.get(11), sell.get(911), sell.get(912)) == (b"a3", b"1", b"Y")

        await alice.send("F", *cancel("a3", "a3x", "2"))
        assert (await alice.expect("8")).get(39) == b"4"
        await alice.send("AF", (584, "empty"), (585, 7), (54, "2"))
        empty = await alice.expect("8")
        assert (empty.get(37), empty.get(150), empty.get(39)) == (b"NONE", b"I", b"8")
        assert (empty.get(584), empty.get(911), empty.get(912)) == (b"empty", b"0", b"Y")
        assert b"no open order" in empty.get(58)

    run(harness, scenario)


def test_refusals(harness: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("AF", (584, "x"), (585, 3))  # by product: not supported
        reject = await alice.expect("3")
        assert (reject.get(373), reject.get(371)) == (b"5", b"585")
        await alice.send("AF", (585, 7))
        reject = await alice.expect("3")
        assert (reject.get(373), reject.get(371)) == (b"1", b"584")
        await alice.send("AF", (584, "sym"), (585, 1))  # a security's orders, none named
        refused = await alice.expect("j")
        assert refused.get(380) == b"5" and b"Symbol (55)" in refused.get(58)
        await alice.send("AF", (584, "sym"), (585, 1), (55, "DOGE-USD"))
        refused = await alice.expect("j")
        assert refused.get(380) == b"2" and b"DOGE-USD" in refused.get(58)

    run(harness, scenario)
