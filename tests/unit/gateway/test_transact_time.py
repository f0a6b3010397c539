"""TransactTime (60) on what the gateway answers orders with: every ExecutionReport (8),
OrderCancelReject (9) and OrderMassCancelReport (r) carries it, the time of the exchange
event reported (so the maker's and the taker's report of one trade say the same time), or
the gateway's clock for an answer no event makes."""

from __future__ import annotations

import time

from procs.gateway.fix import parse_utc_timestamp
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.test_gateway import cancel, logged_on, order, run, status_request


def _at(msg: object) -> int:
    value = msg.get(60)  # type: ignore[attr-defined]
    assert value is not None, f"no TransactTime in {msg}"
    ns = parse_utc_timestamp(value)
    assert ns is not None, value
    assert abs(ns - time.time_ns()) < 30 * 10**9, value
    return ns


def test_reports_cancel_rejects_and_mass_cancel_reports_carry_transact_time(
    harness: Harness,
) -> None:
    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        bob = await logged_on(port, "BOB")
        await alice.send("D", *order("s1", "2", "2.00", "100.00"))
        ack = await alice.expect("8")
        await bob.send("D", *order("b1", "1", "0.50", "100.00"))
        await bob.expect("8")  # New
        taker = await bob.expect("8")
        maker = await alice.expect("8")
        assert (taker.get(150), maker.get(150)) == (b"F", b"F")
        assert _at(taker) == _at(maker)  # one trade, one time
        assert _at(ack) <= _at(maker)
        await alice.send("F", *cancel("never", "c1", "2"))
        _at(await alice.expect("9"))
        await alice.send("H", *status_request("s1", "2"))
        _at(await alice.expect("8"))
        await alice.send("D", *order("t", "1", "1.00", "100.03"))  # off tick: refused here
        refused = await alice.expect("8")
        assert refused.get(150) == b"8"
        _at(refused)
        await alice.send("q", (11, "m1"), (530, "7"), (60, "20260101-00:00:00"))
        mass = await alice.expect("r")
        assert mass.get(531) == b"7"
        _at(mass)
        done = await alice.expect("8")  # s1's rest, cancelled by the mass cancel
        assert done.get(150) == b"4"
        _at(done)

    run(harness, scenario)
