"""Hostile review 210: changing a resting order end to end, over FIX (OrderCancelReplaceRequest,
35=G) and the REST amend (``PUT /api/v1/order``), through the router's risk and the matcher.

Priority is judged by which order a later sell fills first, never by reading the book's queue;
after every step the router's holds are compared with a recomputation from the orders the
matcher has resting (``_holds_agree``). Races are forced with the harness' paused pipeline:
commands wait in the rings in the order the gateway published them. The REST side and the
private stream: ``test_review210_replace2.py``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import simplefix  # ships no type information

from procs.common.types import Side
from procs.gateway.rest import RestApi
from tests.unit.gateway.harness import BTC, USD, Client, Harness, settled, utc
from tests.unit.gateway.rest_rig import ALICE, BOB, fix_user, rest_exchange, run

BUY, SELL = "1", "2"


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


# -- helpers ------------------------------------------------------------------------------------


def _holds_agree(h: Harness) -> None:
    """The router's reserved balances are what the matcher's resting and waiting orders need
    (a buy: notional at its limit plus the fee margin; a sell: its size), and its own
    invariants hold. Called with nothing in flight."""
    accounts = h.router.sequencer.accounts
    accounts.validate_internal_state()
    market = accounts.markets[1]
    book = h.matcher.matcher.books[1]
    want: dict[tuple[int, int], int] = {}
    for o in [*book.orders.values(), *book.stops.values()]:
        slot = (o.account, market.hold_asset(Side(o.side)))
        want[slot] = want.get(slot, 0) + market.hold(Side(o.side), o.price, o.leaves + o.reserve)
    got = {(a, asset): accounts.balance(a, asset)[1] for a in (ALICE, BOB) for asset in (USD, BTC)}
    assert got == {slot: want.get(slot, 0) for slot in got}, f"holds {got}, orders need {want}"


def _resting(h: Harness) -> dict[int, tuple[int, int, int]]:
    """The matcher's resting orders: order id -> (price, visible leaves, reserve)."""
    book = h.matcher.matcher.books[1]
    return {oid: (o.price, o.leaves, o.reserve) for oid, o in book.orders.items()}


async def _place(
    fix: Client, cl: str, side: str, qty: str, price: str, *extra: tuple[int, Any]
) -> simplefix.FixMessage:
    """A limit order (Day unless ``extra`` says), and its first ExecutionReport."""
    await fix.send(
        "D", (11, cl), (55, "BTC-USD"), (54, side), (60, utc()), (38, qty), (40, "2"),
        (44, price), *extra,
    )  # fmt: skip
    return await fix.expect("8")


async def _send_g(
    fix: Client, orig: str, cl: str, side: str, qty: str, price: str, *extra: tuple[int, Any]
) -> None:
    await fix.send(
        "G", (41, orig), (11, cl), (55, "BTC-USD"), (54, side), (60, utc()), (38, qty),
        (40, "2"), (44, price), *extra,
    )  # fmt: skip


async def _replace(
    fix: Client, orig: str, cl: str, side: str, qty: str, price: str, *extra: tuple[int, Any]
) -> simplefix.FixMessage:
    """A G and its answer (an ExecutionReport or an OrderCancelReject)."""
    await _send_g(fix, orig, cl, side, qty, price, *extra)
    while True:
        msg = await fix.recv(5.0)
        assert msg is not None, f"no answer to the replace {cl}"
        if msg.get(35) in (b"8", b"9"):
            return msg


def _f(msg: simplefix.FixMessage, *tags: int) -> tuple[bytes | None, ...]:
    return tuple(msg.get(t) for t in tags)


async def _published(h: Harness, new: int = 0, requests: int = 0) -> None:
    """Wait until the gateway has published what it was sent (pipeline paused): ``new``
    orders unanswered and ``requests`` cancels/replaces in flight."""
    gw = h.gateway
    assert gw is not None
    entry = gw.entry
    await settled(
        lambda: (
            len(entry.pending_new()) == new
            and len(entry.requests) == requests
            and not entry.outgoing
        ),
        5.0,
    )
    assert len(entry.pending_new()) == new and len(entry.requests) == requests


async def _sell(bob: Client, cl: str, qty: str, price: str = "100.00") -> None:
    """BOB's sell (its reports are not read: ALICE's say what it filled)."""
    await bob.send(
        "D", (11, cl), (55, "BTC-USD"), (54, SELL), (60, utc()), (38, qty), (40, "2"),
        (44, price),
    )  # fmt: skip


async def _fill_of(alice: Client) -> simplefix.FixMessage:
    rep = await alice.expect("8", 5.0)
    assert rep.get(150) == b"F", rep
    return rep


async def _both(h: Harness) -> tuple[Client, Client]:
    return await fix_user(h, "ALICE", "alice-pw"), await fix_user(h, "BOB", "bob-pw")


# -- priority -----------------------------------------------------------------------------------


def test_checked_fix_priority_kept_on_a_cut_lost_on_growth_and_on_a_price_change(
    harness: Harness,
) -> None:
    """Scenario: ALICE's bids A1 and A2 (0.10 at 100.00); A1 cut to 0.05 at the same price,
    BOB sells 0.05; A3 joins, A2 grows to 0.20, BOB sells 0.10; A4 joins, A2 moves to 99.95
    and back to 100.00, BOB sells 0.10. Expected: the cut A1 fills first (kept its place),
    then A3 (A2 went behind it), then A4 (A2's price change sent it behind again); each
    replace is reported 150=5 with OrigClOrdID, OrderQty, LeavesQty, CumQty; holds agree
    with the book throughout. Found so."""

    async def scenario(api: RestApi, url: str) -> None:
        alice, bob = await _both(harness)
        await _place(alice, "A1", BUY, "0.10", "100.00")
        await _place(alice, "A2", BUY, "0.10", "100.00")
        rep = await _replace(alice, "A1", "R1", BUY, "0.05", "100.00")
        assert _f(rep, 35, 150, 39, 11, 41, 38, 151, 14) == (
            b"8", b"5", b"0", b"R1", b"A1", b"0.05", b"0.05", b"0.00",
        )  # fmt: skip
        _holds_agree(harness)
        await _sell(bob, "S1", "0.05")
        assert _f(await _fill_of(alice), 11, 39) == (b"R1", b"2")
        await _place(alice, "A3", BUY, "0.10", "100.00")
        rep = await _replace(alice, "A2", "R2", BUY, "0.20", "100.00")
        assert _f(rep, 150, 38, 151) == (b"5", b"0.20", b"0.20")
        _holds_agree(harness)
        await _sell(bob, "S2", "0.10")
        assert _f(await _fill_of(alice), 11, 39) == (b"A3", b"2")
        await _place(alice, "A4", BUY, "0.10", "100.00")
        assert (await _replace(alice, "R2", "R3", BUY, "0.20", "99.95")).get(150) == b"5"
        assert (await _replace(alice, "R3", "R4", BUY, "0.20", "100.00")).get(150) == b"5"
        _holds_agree(harness)
        await _sell(bob, "S3", "0.10")
        assert _f(await _fill_of(alice), 11, 39) == (b"A4", b"2")
        _holds_agree(harness)

    run(harness, scenario)


# -- partial fills: OrderQty is the total ---------------------------------------------------------


def test_checked_fix_replace_of_a_partly_filled_order_above_equal_below(harness: Harness) -> None:
    """Scenario: ALICE's bid A1 0.50 at 100.00 fills 0.20; A2 0.10 rests behind. A1 replaced
    to a total of 0.40 (open 0.20: less than its 0.30, keeps its place), BOB sells 0.10;
    then to 0.60 (open 0.30, more: goes behind A2), BOB sells 0.10; then to 0.30, exactly
    what has filled. Another bid B 0.50 fills 0.20 and is replaced to 0.10, below its fills.
    Expected: OrderQty is the new total and LeavesQty the total less CumQty (0.40/0.20/0.20,
    AvgPx 100); the 0.40 one fills before A2, the 0.60 one after; a total at or below the
    fills ends the order, Replaced then Filled (39=2, LeavesQty 0), its hold released. Found
    so."""

    async def scenario(api: RestApi, url: str) -> None:
        alice, bob = await _both(harness)
        await _place(alice, "A1", BUY, "0.50", "100.00")
        await _sell(bob, "S1", "0.20")
        assert _f(await _fill_of(alice), 11, 14, 151) == (b"A1", b"0.20", b"0.30")
        await _place(alice, "A2", BUY, "0.10", "100.00")
        rep = await _replace(alice, "A1", "R1", BUY, "0.40", "100.00")
        assert _f(rep, 150, 39, 38, 14, 151) == (b"5", b"1", b"0.40", b"0.20", b"0.20")
        assert rep.get(6) is not None and float(rep.get(6)) == 100.0
        _holds_agree(harness)
        await _sell(bob, "S2", "0.10")
        assert _f(await _fill_of(alice), 11, 14, 151) == (b"R1", b"0.30", b"0.10")
        rep = await _replace(alice, "R1", "R2", BUY, "0.60", "100.00")
        assert _f(rep, 150, 39, 38, 14, 151) == (b"5", b"1", b"0.60", b"0.30", b"0.30")
        _holds_agree(harness)
        await _sell(bob, "S3", "0.10")
        assert _f(await _fill_of(alice), 11, 39) == (b"A2", b"2")
        rep = await _replace(alice, "R2", "R3", BUY, "0.30", "100.00")
        assert _f(rep, 150, 39, 14, 151) == (b"5", b"2", b"0.30", b"0.00")
        assert _resting(harness) == {}
        _holds_agree(harness)
        await _place(alice, "B", BUY, "0.50", "100.00")
        await _sell(bob, "S4", "0.20")
        await _fill_of(alice)
        rep = await _replace(alice, "B", "RB", BUY, "0.10", "100.00")
        assert _f(rep, 150, 39, 14, 151) == (b"5", b"2", b"0.20", b"0.00")
        assert _resting(harness) == {}
        _holds_agree(harness)
        assert harness.router.sequencer.accounts.balance(ALICE, USD)[1] == 0

    run(harness, scenario)


def test_checked_fix_replace_racing_a_fill(harness: Harness) -> None:
    """Scenario: ALICE's bid A1 0.50 at 100.00; with the pipeline paused BOB's sell of 0.20
    is published, then ALICE's G to a total of 0.30 (sent before she could know of the
    fill). Then bid B1 0.50 at 100.05, a racing sell of 0.40 and a G to 0.30 (the fills
    overtook it). Expected: the fill is reported first, then the replace with OrderQty
    0.30, CumQty 0.20, LeavesQty 0.10 (never 0.30 open on top of the fill); in the
    overtaken case the replace ends the order (39=2, LeavesQty 0) and no more than was
    filled is ever open; holds agree. Found so."""

    async def scenario(api: RestApi, url: str) -> None:
        alice, bob = await _both(harness)
        for cl, px, sold, total, leaves, status in (
            ("A1", "100.00", "0.20", "0.30", b"0.10", b"1"),
            ("B1", "100.05", "0.40", "0.30", b"0.00", b"2"),  # above A1: A1 is not reached
        ):
            await _place(alice, cl, BUY, "0.50", px)
            harness.pause()
            await _sell(bob, f"S{cl}", sold, px)
            await _published(harness, new=1)
            await _send_g(alice, cl, f"R{cl}", BUY, total, px)
            await _published(harness, new=1, requests=1)
            harness.resume()
            fill = await _fill_of(alice)
            assert _f(fill, 11, 14) == (cl.encode(), sold.encode())
            rep = await alice.expect("8", 5.0)
            assert _f(rep, 150, 39, 11, 41, 14, 151) == (
                b"5", status, f"R{cl}".encode(), cl.encode(), sold.encode(), leaves,
            )  # fmt: skip
            _holds_agree(harness)
        assert _resting(harness) == {next(iter(harness.gateway.entry.by_id)): (10_000, 10, 0)}  # type: ignore[union-attr]

    run(harness, scenario)


# -- order kinds ----------------------------------------------------------------------------------


def test_checked_fix_replace_of_an_iceberg(harness: Harness) -> None:
    """Scenario: ALICE's iceberg A1 1.00 at 100.00 showing 0.10 (MaxFloor), A2 0.10 behind;
    A1 cut to 0.80, BOB sells 0.10 twice; a G changing MaxFloor; a G to 100.05; a G whose
    open part would be more than ``iceberg_parts`` slices. Expected: the cut keeps the
    slice's place (the first sell fills A1), the refreshed slice goes behind A2 (the second
    fills A2); MaxFloor cannot change (refused, order intact); a price change re-slices
    (0.10 shown, 0.60 in reserve); too many slices refused; holds count the reserve. Found
    so."""

    async def scenario(api: RestApi, url: str) -> None:
        alice, bob = await _both(harness)
        ack = await _place(alice, "A1", BUY, "1.00", "100.00", (111, "0.10"))
        oid = int(ack.get(37))
        await _place(alice, "A2", BUY, "0.10", "100.00")
        rep = await _replace(alice, "A1", "R1", BUY, "0.80", "100.00", (111, "0.10"))
        assert _f(rep, 150, 151, 111) == (b"5", b"0.80", b"0.10")
        assert _resting(harness)[oid] == (10_000, 10, 70)
        _holds_agree(harness)
        await _sell(bob, "S1", "0.10")
        assert (await _fill_of(alice)).get(11) == b"R1"
        await _sell(bob, "S2", "0.10")
        assert (await _fill_of(alice)).get(11) == b"A2"
        rej = await _replace(alice, "R1", "RX", BUY, "0.80", "100.00", (111, "0.20"))
        assert rej.get(35) == b"9" and b"MaxFloor" in rej.get(58)
        rep = await _replace(alice, "R1", "R2", BUY, "0.80", "100.05", (111, "0.10"))
        assert _f(rep, 150, 38, 14, 151) == (b"5", b"0.80", b"0.10", b"0.70")
        assert _resting(harness)[oid] == (10_005, 10, 60)
        _holds_agree(harness)
        rej = await _replace(alice, "R2", "R3", BUY, "20.00", "100.05", (111, "0.10"))
        assert rej.get(35) == b"9" and b"at most 100" in rej.get(58), rej
        assert _resting(harness)[oid] == (10_005, 10, 60)
        _holds_agree(harness)

    run(harness, scenario)


def test_checked_fix_replace_of_a_waiting_stop_is_refused_intact(harness: Harness) -> None:
    """Scenario: ALICE's stop-limit buy (StopPx 110.00, Price 110.00, 0.10), no trade yet; a
    G with another StopPx, then one with the same StopPx and another Price. Expected: both
    refused with an OrderCancelReject (the first by the gateway: a replace changes only
    price and size; the second by the matcher: a waiting stop is not on the book), the stop
    unchanged and its hold exactly as before (the router's reservation for the refused
    replace released). Found so."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await fix_user(harness, "ALICE", "alice-pw")
        await alice.send(
            "D", (11, "T1"), (55, "BTC-USD"), (54, BUY), (60, utc()), (38, "0.10"), (40, "4"),
            (44, "110.00"), (99, "110.00"),
        )  # fmt: skip
        assert (await alice.expect("8")).get(39) == b"0"
        before = harness.router.sequencer.accounts.balance(ALICE, USD)
        await alice.send(
            "G", (41, "T1"), (11, "T2"), (55, "BTC-USD"), (54, BUY), (60, utc()), (38, "0.10"),
            (40, "4"), (44, "110.00"), (99, "111.00"),
        )  # fmt: skip
        rej = await alice.expect("9", 5.0)
        assert b"StopPx" in rej.get(58), rej
        await alice.send(
            "G", (41, "T1"), (11, "T3"), (55, "BTC-USD"), (54, BUY), (60, utc()), (38, "0.20"),
            (40, "4"), (44, "120.00"), (99, "110.00"),
        )  # fmt: skip
        rej = await alice.expect("9", 5.0)
        assert b"INVALID_ORDER" in rej.get(58) and b"not triggered" in rej.get(58), rej
        assert harness.router.sequencer.accounts.balance(ALICE, USD) == before
        (stop,) = harness.matcher.matcher.books[1].stops.values()
        assert (stop.price, stop.leaves, stop.stop_price) == (11_000, 10, 11_000)
        _holds_agree(harness)

    run(harness, scenario)


def test_checked_fix_post_only_replace_that_would_cross_is_refused(harness: Harness) -> None:
    """Scenario: BOB asks 0.10 at 101.00; ALICE's post-only bid (ExecInst 6) 0.10 at 100.00
    is replaced to 101.00, then to 100.50. Expected: the crossing replace is refused
    (POST_ONLY_WOULD_TAKE), no trade, the bid still at 100.00 with its hold; the one that
    does not cross is taken (150=5) and its hold follows. Found so."""

    async def scenario(api: RestApi, url: str) -> None:
        alice, bob = await _both(harness)
        await _sell(bob, "S1", "0.10", "101.00")
        await bob.expect("8")
        ack = await _place(alice, "P1", BUY, "0.10", "100.00", (18, "6"))
        oid = int(ack.get(37))
        rej = await _replace(alice, "P1", "P2", BUY, "0.10", "101.00", (18, "6"))
        assert rej.get(35) == b"9" and b"POST_ONLY_WOULD_TAKE" in rej.get(58), rej
        assert _resting(harness)[oid] == (10_000, 10, 0)
        _holds_agree(harness)
        rep = await _replace(alice, "P1", "P3", BUY, "0.10", "100.50", (18, "6"))
        assert _f(rep, 150, 44, 18) == (b"5", b"100.50", b"6")
        assert _resting(harness)[oid] == (10_050, 10, 0)
        _holds_agree(harness)

    run(harness, scenario)


def test_checked_fix_replace_of_ioc_and_fok_refused_as_finished(harness: Harness) -> None:
    """Scenario: BOB asks 0.05 at 100.00; ALICE's IOC bid 0.10 fills 0.05 and its rest ends;
    her FOK bid 0.10 cannot fill and ends; each then replaced. Expected: neither ever rests,
    so each G is an OrderCancelReject 102=0 (too late), nothing changes, no hold left.
    Found so."""

    async def scenario(api: RestApi, url: str) -> None:
        alice, bob = await _both(harness)
        await _sell(bob, "S1", "0.05")
        await bob.expect("8")
        for cl, tif in (("I1", "3"), ("F1", "4")):
            await _place(alice, cl, BUY, "0.10", "100.00", (59, tif))
            while (await alice.expect("8")).get(39) not in (b"4", b"C"):
                pass
            rej = await _replace(alice, cl, f"R{cl}", BUY, "0.10", "100.00", (59, tif))
            assert _f(rej, 35, 102) == (b"9", b"0"), rej
        assert _resting(harness) == {}
        _holds_agree(harness)

    run(harness, scenario)


# -- balance ------------------------------------------------------------------------------------


def test_checked_fix_replace_needing_more_than_free_refused_a_cut_frees_at_once(
    harness: Harness,
) -> None:
    """Scenario: ALICE (1,000,000 USD) bids 0.10 at 100.00, then replaces it to 9000.00 at
    200.00 (1.8M USD), then cuts it to 0.05. Expected: the first is refused
    (INSUFFICIENT_BALANCE in an OrderCancelReject), the order and its hold intact; the cut
    releases half the hold by the time its report arrives. Found so."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await fix_user(harness, "ALICE", "alice-pw")
        accounts = harness.router.sequencer.accounts
        ack = await _place(alice, "A1", BUY, "0.10", "100.00")
        oid = int(ack.get(37))
        free, held = accounts.balance(ALICE, USD)
        rej = await _replace(alice, "A1", "R1", BUY, "9000.00", "200.00")
        assert rej.get(35) == b"9" and b"INSUFFICIENT_BALANCE" in rej.get(58), rej
        assert accounts.balance(ALICE, USD) == (free, held)
        assert _resting(harness)[oid] == (10_000, 10, 0)
        rep = await _replace(alice, "A1", "R2", BUY, "0.05", "100.00")
        assert rep.get(150) == b"5"
        market = accounts.markets[1]
        now = accounts.balance(ALICE, USD)
        assert now[1] == market.hold(Side.BUY, 10_000, 5) and now[0] + now[1] == free + held
        _holds_agree(harness)

    run(harness, scenario)


# -- two in flight, another's order ----------------------------------------------------------


def test_checked_fix_two_replaces_in_flight(harness: Harness) -> None:
    """Scenario: with the pipeline paused, ALICE sends G R1 (A1 -> 0.08 at 100.00), then
    G R2 naming R1 (pending), then G R3 naming A1 again (0.30 at 99.00). Expected: R2 is
    refused at once, CxlRejReason 3 (pending); R1 and R3 both execute in order, each
    reported 150=5 (R3's OrigClOrdID R1, the ClOrdID accepted before it, as FIX 4.4 defines
    it, though its request named A1), and the order ends at R3's terms; holds agree once
    both are answered. Found so."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await fix_user(harness, "ALICE", "alice-pw")
        ack = await _place(alice, "A1", BUY, "0.10", "100.00")
        oid = int(ack.get(37))
        harness.pause()
        await _send_g(alice, "A1", "R1", BUY, "0.08", "100.00")
        await _published(harness, requests=1)
        rej = await _replace(alice, "R1", "R2", BUY, "0.09", "100.00")
        assert _f(rej, 35, 102) == (b"9", b"3"), rej
        await _send_g(alice, "A1", "R3", BUY, "0.30", "99.00")
        await _published(harness, requests=2)
        harness.resume()
        first, second = await alice.expect("8", 5.0), await alice.expect("8", 5.0)
        assert _f(first, 150, 11, 38) == (b"5", b"R1", b"0.08")
        assert _f(second, 150, 11, 38, 44) == (b"5", b"R3", b"0.30", b"99.00")
        # OrigClOrdID: the previous accepted ClOrdID when it executes (FIX 4.4), R1 by then
        assert (first.get(41), second.get(41)) == (b"A1", b"R1")
        assert _resting(harness)[oid] == (9_900, 30, 0)
        _holds_agree(harness)

    run(harness, scenario)


def test_checked_fix_replace_of_another_accounts_order_is_unknown(harness: Harness) -> None:
    """Scenario: BOB sends a G whose OrigClOrdID is ALICE's resting bid's ClOrdID.
    Expected: an OrderCancelReject 102=1 (unknown order), ALICE's bid unchanged. Found
    so."""

    async def scenario(api: RestApi, url: str) -> None:
        alice, bob = await _both(harness)
        ack = await _place(alice, "A1", BUY, "0.10", "100.00")
        oid = int(ack.get(37))
        rej = await _replace(bob, "A1", "X1", BUY, "0.05", "50.00")
        assert _f(rej, 35, 102) == (b"9", b"1"), rej
        assert _resting(harness)[oid] == (10_000, 10, 0)
        _holds_agree(harness)

    run(harness, scenario)
