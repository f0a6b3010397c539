"""The demo market maker's quoting, without an exchange: units, the ladder, the plan that turns
resting orders into it, the mid's walk and the taker's lean."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from procs.gateway.rest_market_rows import rest_ticker
from tests.scripts_loader import load_script

ROOT = Path(__file__).parents[2]


mm = load_script("market_maker")
BTC = mm.Market.from_info(
    {
        "symbol": "BTC-USD",
        "pricePrecision": 2,
        "quantityPrecision": 4,
        "tickSize": "0.01",
        "stepSize": "0.0001",
        "minQty": "0.0001",
    }
)


def test_units() -> None:
    assert mm.to_units("30000.5", 2) == 3_000_050
    assert mm.to_units("0.0001", 4) == 1
    assert mm.from_units(3_000_050, 2) == "30000.50"
    assert mm.from_units(7, 4) == "0.0007"
    assert (BTC.tick, BTC.lot, BTC.min_qty) == (1, 1, 1)
    assert BTC.size(3_000_000, 3_000.0) == 1_000  # $3000 at 30000.00 is 0.1000 BTC


def test_ladder_is_a_fixed_grid_around_the_mid() -> None:
    grid = mm.Grid.around(BTC, 3_000_000, levels=3)  # 2 bps: 6.00 apart
    assert grid.step == 600
    wanted = mm.ladder(grid, 3_000_000)
    bids = sorted(p for s, p in wanted if s == "BUY")
    asks = sorted(p for s, p in wanted if s == "SELL")
    assert bids == [2_998_200, 2_998_800, 2_999_400]
    assert asks == [3_000_600, 3_001_200, 3_001_800]
    between = mm.ladder(grid, 3_000_300)
    assert mm.ladder(grid, 3_000_400) == between  # a small move: the grid prices stay
    up = mm.ladder(grid, 3_000_900)  # a step up: one level leaves each side, one comes
    assert len(up - between) == 2 and len(between - up) == 2
    assert max(p for s, p in up if s == "BUY") < min(p for s, p in up if s == "SELL")


def test_plan_cancels_what_left_and_places_what_is_missing() -> None:
    wanted = {("BUY", 100), ("BUY", 90), ("SELL", 110), ("SELL", 120)}
    resting = [
        mm.Resting(1, "BUY", 100),
        mm.Resting(2, "BUY", 80),  # off the ladder
        mm.Resting(3, "SELL", 110),
        mm.Resting(4, "SELL", 110),  # a double
    ]
    cancel, place = mm.plan(wanted, resting, random.Random(1), refresh=0.0)
    assert sorted(cancel) == [2, 4]
    assert place == [("BUY", 90), ("SELL", 120)]  # nearest the mid first, per side

    cancel, place = mm.plan(wanted, resting, random.Random(1), refresh=1.0)
    refreshed = set(cancel) - {2, 4}
    assert len(refreshed) == 1 and refreshed <= {1, 3}
    assert len(place) == 3  # ... and placed again

    assert mm.plan(wanted, [], random.Random(1))[1] == [
        ("BUY", 100),
        ("BUY", 90),
        ("SELL", 110),
        ("SELL", 120),
    ]


def test_mid_walk_stays_on_the_tick_and_near_its_anchor() -> None:
    walk = mm.MidWalk(3_000_003, 5, random.Random(7), vol_ticks=120)
    mids = [walk.step() for _ in range(20_000)]
    assert all(m % 5 == 0 and m > 0 for m in mids)
    assert len(set(mids)) > 100  # it moves
    assert max(abs(m - 3_000_000) for m in mids) < 30_000  # ~1%: the pull back holds it


def test_taker_crosses_the_touch_and_leans_against_its_inventory() -> None:
    grid = mm.Grid(levels=2, step=10, half_spread=10)
    wanted = mm.ladder(grid, 1_000)
    side, price = mm.taker_order(wanted, grid, 0, 100, random.Random(3))
    assert (side, price) in {("BUY", 1_020), ("SELL", 980)}
    rng = random.Random(5)
    long_sides = [mm.taker_order(wanted, grid, 100, 100, rng)[0] for _ in range(1_000)]
    short_sides = [mm.taker_order(wanted, grid, -500, 100, rng)[0] for _ in range(1_000)]
    assert 50 < long_sides.count("BUY") < 150  # p = 0.1
    assert 850 < short_sides.count("BUY") < 950  # p = 0.9


def test_start_mid_reads_the_last_price_of_the_gateways_ticker() -> None:
    """The mid starts at the last trade's price under the REST ticker's name (review 312
    renamed the gateway's ``ticker/24hr`` to Binance's: ``c`` became ``lastPrice``, and a
    KeyError fell back to the default mid without a word)."""

    class Api:
        async def call(self, *_: object, **__: object) -> dict[str, object]:
            return rest_ticker({"e": "24hrTicker", "s": "BTC-USD", "c": "123.45", "n": 1})

    assert asyncio.run(mm.start_mid(Api(), BTC)) == 12_345
