"""Books the market data missed (a promoted standby's): set from the matcher's state at its
replay mark, and continued by the diffs a connected client already follows."""

from __future__ import annotations

import asyncio
import random
import tempfile
import time

import pytest
import uvloop

from procs.common.record_codec import RecordCodec
from procs.common.records import Heartbeat
from procs.common.snapshots import SnapshotStore
from procs.common.topology import REPLAY_SOURCE, matcher_output, snapshot_dir
from procs.common.types import Side
from procs.core.engine import Matcher
from procs.core.market.state import build_state
from procs.core.symbols import symbol_specs
from procs.marketdata.reseed import Reseeder, level_changes

from .rig import Rig, config, running
from .test_server import apply, random_orders


def test_level_changes_turn_one_book_into_the_other() -> None:
    current = {(Side.BUY, 99): (5, 1), (Side.BUY, 98): (2, 2), (Side.SELL, 101): (1, 1)}
    target = {(Side.BUY, 99): (5, 1), (Side.BUY, 98): (3, 2), (Side.SELL, 102): (4, 1)}
    assert level_changes(current, target) == [
        (Side.BUY, 98, 3, 2),
        (Side.SELL, 101, 0, 0),
        (Side.SELL, 102, 4, 1),
    ]
    assert level_changes(target, target) == []


def test_missed_books_are_set_at_the_replay_mark_and_diffs_continue(instance: str) -> None:
    var_dir = tempfile.mkdtemp(prefix="ringex-md-")
    cfg = config(instance, var_dir)
    matcher = Matcher(symbol_specs(cfg, "m1"))
    rng = random.Random(9)
    missed = random_orders(rng, 1, 300)  # executed while no market data ran: never published
    matcher.execute_all(missed)
    SnapshotStore(snapshot_dir(cfg, "matcher-m1")).save(300, matcher.snapshot())

    async def body(rig: Rig) -> None:
        async with rig.client("/ws/btc-usd@depth") as client:
            snap = (await client.recv())["data"]
            assert (snap["lastUpdateId"], snap["bids"], snap["asks"]) == (0, [], [])
            book: dict[str, dict[str, str]] = {"b": {}, "a": {}}
            # the restarted matcher: its mark, then the events of the commands after it
            rig.publish([Heartbeat(time.time_ns(), REPLAY_SOURCE, 300)])
            rig.publish(matcher.execute_all(random_orders(rng, 301, 100)))
            last = 0
            while last < 400:
                diff = (await client.recv())["data"]
                assert diff["U"] == last + 1, "diffs must be contiguous"
                apply(book, diff["b"], diff["a"])
                last = diff["u"]
        s = rig.process.state.symbols[1].symbol
        levels = matcher.books[1].levels()
        assert book["b"] == {
            s.price(p): s.qty(q) for (side, p), (q, _) in levels.items() if side == Side.BUY
        }
        assert book["a"] == {
            s.price(p): s.qty(q) for (side, p), (q, _) in levels.items() if side == Side.SELL
        }
        assert rig.process.state.symbols[1].book.levels() == levels

    async def main() -> None:
        async with running(instance, var_dir=var_dir, depth_levels=1_000) as rig:
            await asyncio.wait_for(body(rig), 20)

    uvloop.run(main())


def test_an_unreadable_matcher_state_leaves_the_books_and_the_feed_goes_on(
    instance: str, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = config(instance, tempfile.mkdtemp(prefix="ringex-md-"))
    SnapshotStore(snapshot_dir(cfg, "matcher-m1")).save(5, b"\x93not a matcher")
    state = build_state(cfg)
    assert Reseeder(cfg, RecordCodec())(matcher_output("m1"), 5, 0, state) == []
    assert "unreadable" in caplog.text
