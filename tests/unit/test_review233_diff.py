"""Review 233: a hostile reread of today's changes to production code, part B.

Reviewed (``git diff 490a0c8 -- procs config``): ``procs/gateway/rest.py`` (``after_batch``:
a cut pass's balances held, at most 16 passes), ``server.py`` (``pump``: ``cut``),
``rest_balances.py`` (``newest_balances``), ``procs/core/money.py`` (``Market.cap``: the tick
above an off-tick reference) against ``largest_capped``, ``procs/core/order_checks.py``
(``_protection``), ``procs/core/book.py`` (``_replace``: ``grows``),
``procs/gateway/order_fields.py`` (``cut_in_place``), ``orders.py``, ``rest_amend.py``,
``procs/core/recovery.py`` (``restore_matchers``, ``restored``, ``recover``),
``procs/dbwriter/replay.py``, ``procs/common/market_snapshots.py`` (read only).

Rig: ``rest_rig.py``'s exchange with review 228's roomy rings (real HTTP and WebSocket in
front of real rings, the router and matcher stepped in the test's loop).

Fault found (fixed: its test says "Was (fixed)"):

1. ``procs/gateway/server.py:309`` (``pump`` calls a pass ``cut`` when a ring's read returned
   ``EVENTS_PER_PASS`` events, whether or not more were left) with ``rest.py:196-197``
   (``after_batch`` holds the balances of a cut pass for a later pass) and
   ``server.py:320`` (``after_batch`` runs only for a pass that moved something): when a
   gateway's backlog on a ring is a multiple of 4,096 (a gateway behind, or one restarted
   after its peers went on), the last pass reads exactly 4,096, is judged cut, and the next
   pass finds nothing, so ``after_batch`` is never called again: the pass's balance events
   wait in ``core.balance_events`` until some later event reaches the gateway, which on a
   quiet market can be never. The stream shows a fill's ``TRADE`` and not the balances it
   moved: the client's folded view keeps the bid's money locked and the bought asset
   missing. Expected: the balances follow once the rings are read to their end. Fix: in
   ``pump`` judge the cut by what is left, ``cut = cut or consumer.ring.cursor() >
   consumer.sequence`` after the read (or read ``EVENTS_PER_PASS`` + 1 and keep one back);
   or in ``_poll``, when a pass moves nothing and ``api._cut`` is not 0, call
   ``api.after_batch(False)``. Test:
   ``test_a_fills_balances_follow_when_the_backlog_was_exactly_one_pass``.

Found sound (plain tests):

- ``Market.cap`` is on the tick, never below its reference, never past the band's price
  rounded up to the tick; ``largest_capped`` is still the largest on-tick reference whose
  cap fits the limit (ticks 1-7, bands 0-10,000 bps, references to 400)
  (``test_cap_is_on_tick_never_short_of_its_reference_and_largest_capped_agrees``);
- ``newest_balances`` keeps one event per account and asset, its newest value, in the order
  of each one's last move, and none of another account's
  (``test_newest_balances_keeps_each_account_and_assets_last_value``);
- a backlog of 4,097 events (one past a pass) brings the balances after the ``TRADE``
  (``test_a_fills_balances_follow_a_backlog_one_past_a_pass``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from procs.common.records import Record
from procs.common.types import Side
from procs.core.money import BPS, Market, largest_capped
from procs.gateway.rest import RestApi
from procs.gateway.rest_balances import newest_balances
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import BOB, client, rest_exchange, run
from tests.unit.gateway.test_review195_channels import rest_bid
from tests.unit.gateway.test_review202_stream_order import drained, events
from tests.unit.gateway.test_review228_stream_balances import (
    CAROL,
    _roomy,
    ioc,
    kinds,
    opened,
)

PASS = 4_096  # server.EVENTS_PER_PASS


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    for h in rest_exchange(instance, tmp_path, reshape=_roomy):
        h.add_user("CAROL", "carol-pw", CAROL)
        h.fund(CAROL)
        yield h


async def _fill_behind(harness: Harness, api: Any, extra: int) -> list[str]:
    """ALICE's bid of 0.10 at 100.00 rests, her stream open; with the pipeline held BOB's IOC
    sell fills it and CAROL's IOC bids that find nothing bring the matcher's ring to
    ``PASS + extra`` unread events (a batch of n bids: 2n + 1 events; the fill: 6); then the
    gateway reads. What ALICE's stream says after (kinds)."""
    ws, _ = await opened(api)
    await rest_bid(api, "100.00", "0.10")
    await drained(ws, 3.0)
    gw = harness.gateway
    assert gw is not None
    harness.pause()
    batches: list[list[Record]] = [[ioc(9_999, BOB, Side.SELL, 10_000, 10)]]
    left = PASS + extra - 6
    ref = 10_000
    while left > 0:  # batches of 2n + 1 events, the last one's n fitted to what is left
        n = min(1_000, (left - 1) // 2)
        if left - (2 * n + 1) in (1, 2):
            n -= 1  # leave room for a last batch of at least 3
        batches.append([ioc(ref + k, CAROL, Side.BUY, 100, 1) for k in range(n)])
        left -= 2 * n + 1
        ref += n
    assert left == 0
    for batch in batches:
        harness.funder.publish_batch(batch)
        harness.step_pipeline()
        harness.funder_replies.read(16_384)
    lags = {c.ring.name: c.ring.cursor() - c.sequence for c in gw.inputs}
    assert max(lags.values()) == PASS + extra, lags
    harness.resume()
    return kinds(events(await drained(ws, 5.0)))


def test_a_fills_balances_follow_when_the_backlog_was_exactly_one_pass(harness: Harness) -> None:
    """Scenario: ALICE's REST bid of 0.10 at 100.00 rests, her stream open. With the pipeline
    held, BOB's IOC sell fills it and CAROL's IOC bids that find nothing bring the matcher's
    ring to exactly 4,096 events the gateway has not read; then the gateway reads and
    nothing else happens. Expected: ALICE's stream says TRADE, then ``balance USD`` and
    ``balance BTC``. Was (fixed): TRADE only; the balances stayed in ``core.balance_events``
    (the pass was judged cut, and no later pass moved anything to flush them)."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            seen = await _fill_behind(harness, alice, 0)
            assert seen[:1] == ["TRADE"] and sorted(seen[1:]) == ["balance BTC", "balance USD"], (
                seen
            )
        finally:
            await alice.close()

    run(harness, scenario)


def test_a_fills_balances_follow_a_backlog_one_past_a_pass(harness: Harness) -> None:
    """Scenario: as above, the matcher's ring 4,097 events ahead of the gateway. Expected:
    TRADE, then ``balance USD`` and ``balance BTC``. Now: so."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            seen = await _fill_behind(harness, alice, 1)
            assert seen[:1] == ["TRADE"] and sorted(seen[1:]) == ["balance BTC", "balance USD"], (
                seen
            )
        finally:
            await alice.close()

    run(harness, scenario)


def test_cap_is_on_tick_never_short_of_its_reference_and_largest_capped_agrees() -> None:
    """Scenario: ``Market.cap`` of every reference 1-399 (on and off the tick), ticks 1-7,
    bands 0-10,000 bps; ``largest_capped`` for limits up to 300. Expected: the cap on the
    tick, at least the reference, at most the band's price rounded up to the tick; the
    largest capped reference's cap within the limit, the next tick's past it. Now: so."""
    bad: list[tuple[int, ...]] = []
    for tick in range(1, 8):
        for band in (0, 1, 50, 300, 10_000):
            market = Market(1, 1, 2, tick, band, 0, 0, 1, 1)
            for ref in range(1, 400):
                cap = market.cap(ref)
                top = max(ref * (BPS + band) // BPS, -(-ref // tick) * tick)
                if cap % tick or cap < ref or cap > -(-top // tick) * tick:
                    bad.append((tick, band, ref, cap))
            for limit in range(tick, 300):
                ref = largest_capped(tick, band, limit)
                if ref and (market.cap(ref) > limit or market.cap(ref + tick) <= limit):
                    bad.append((tick, band, limit, ref))
    assert bad == []


def test_newest_balances_keeps_each_account_and_assets_last_value() -> None:
    """Scenario: a pass's balance events: account 1 USD held, 2 USD, 1 BTC, 1 USD settled.
    Expected: 2 USD, 1 BTC, 1 USD settled (each key once, at its newest, in the order of
    its last move). Now: so."""

    def ev(account: int, asset: str, free: str) -> tuple[int, str, dict[str, Any]]:
        return (account, "balance", {"asset": asset, "free": free})

    got = newest_balances(
        [ev(1, "USD", "a"), ev(2, "USD", "b"), ev(1, "BTC", "c"), ev(1, "USD", "d")]
    )
    assert got == [ev(2, "USD", "b"), ev(1, "BTC", "c"), ev(1, "USD", "d")]
