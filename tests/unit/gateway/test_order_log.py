"""The order log's file: upserts replay to the last value, a torn tail is cut, damage before
the last frame is an error naming the byte, and compaction keeps exactly what is live."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from procs.gateway.order_log import (
    API_ORDER,
    COMMAND,
    FINISHED,
    GONE,
    HANDLED,
    MASS,
    ORDER,
    POSITION,
    REQUEST,
    Entry,
    OrderLog,
    OrderLogError,
    Recovered,
)


def _written(path: Path) -> OrderLog:
    log = OrderLog(path)
    log.load()
    log.write([(ORDER, 1, "first"), (ORDER, 2, "two"), (REQUEST, 3, "asks 2")])
    log.write([(ORDER, 1, "second"), (POSITION, "ring", 7, 10), (COMMAND, 0, 7, b"\x01")])
    log.write([(GONE, 2), (GONE, 3), (POSITION, "ring", 7, 12)])
    return log


def test_replay_keeps_the_last_value_of_each_key(tmp_path: Path) -> None:
    _written(tmp_path / "orders.log").close()
    back = OrderLog(tmp_path / "orders.log").load()
    assert back.orders == {1: ["second"]}
    assert back.requests == {}
    assert back.positions == {"ring": (7, 12)}
    assert back.commands == {0: (7, b"\x01")}


def test_a_torn_last_frame_is_cut_and_appends_go_on_after_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "orders.log"
    log = _written(path)
    log.close()
    whole = path.read_bytes()
    path.write_bytes(whole[:-3])  # the last write stopped short
    again = OrderLog(path)
    back = again.load()
    assert set(back.orders) == {1, 2} and set(back.requests) == {3}  # the GONEs are lost
    assert "torn last frame" in caplog.text
    again.write([(ORDER, 9, "after")])
    again.close()
    assert set(OrderLog(path).load().orders) == {1, 2, 9}


def test_damage_before_the_last_frame_names_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "orders.log"
    _written(path).close()
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF  # inside the first frame's body
    path.write_bytes(bytes(data))
    with pytest.raises(OrderLogError, match="frame at byte 0 fails its check"):
        OrderLog(path).load()


def test_compaction_rewrites_only_what_is_live(tmp_path: Path) -> None:
    path = tmp_path / "orders.log"
    log = OrderLog(path, compact_bytes=2_000)
    log.load()
    for ref in range(200):
        log.write([(ORDER, ref, "x" * 20)])
        log.write([(GONE, ref)] if ref % 10 else [])
    assert log.wants_compaction
    live = [(ORDER, ref, "x" * 20) for ref in range(0, 200, 10)]
    log.compact(live)
    assert not log.wants_compaction and log.size == path.stat().st_size
    log.write([(ORDER, 500, "new")])
    log.close()
    assert set(OrderLog(path).load().orders) == set(range(0, 200, 10)) | {500}
    assert not path.with_suffix(".compact").exists()


def test_compaction_waits_for_twice_what_the_last_one_wrote(tmp_path: Path) -> None:
    """More live orders than ``compact_bytes`` holds: compacting at a fixed size would rewrite
    them all after every few appends. The next compaction waits until the log has doubled."""
    log = OrderLog(tmp_path / "orders.log", compact_bytes=1_000)
    log.load()
    live = [(ORDER, ref, "x" * 20) for ref in range(200)]  # ~6 kB compacted: over the limit
    log.compact(live)
    assert log.compacted_size == log.size > log.compact_bytes
    appended = 0
    while not log.wants_compaction:
        log.write([(ORDER, 1_000 + appended, "y")])
        appended += 1
    assert log.size > 2 * log.compacted_size
    assert appended > 100  # not after the first append past compact_bytes
    log.close()


# -- compaction in steps ---------------------------------------------------------------------


def _lazy_live(state: Recovered) -> Iterator[Entry]:
    """What a gateway's ``_live_entries`` is to the log: the keys live now, each value read
    when its entry is taken (so a later value, or nothing for a key gone since)."""
    keys = {name: list(getattr(state, name)) for name in _KINDS}

    def entries() -> Iterator[Entry]:
        for name, kind in _KINDS.items():
            values = getattr(state, name)
            for key in keys[name]:
                if key not in values:
                    continue
                value = values[key]
                if name == "handled":
                    yield (kind, key, value, state.handled_part.get(key))
                else:
                    yield (kind, key, *value)

    return entries()


_KINDS = {
    "finished": FINISHED, "orders": ORDER, "requests": REQUEST, "mass_cancels": MASS,
    "api_orders": API_ORDER, "positions": POSITION, "commands": COMMAND, "handled": HANDLED,
}  # fmt: skip


def _random_entry(rng: random.Random, step: int) -> Entry:
    key = rng.randrange(40)
    kind = rng.choice([ORDER, ORDER, REQUEST, GONE, GONE, API_ORDER, FINISHED, MASS,
                       POSITION, COMMAND, HANDLED])  # fmt: skip
    if kind == GONE:
        return (GONE, key)
    if kind == POSITION:
        return (POSITION, f"ring{key % 3}", 7, step)
    if kind == COMMAND:
        return (COMMAND, key, 7, b"%d" % step)
    if kind == HANDLED:
        return (HANDLED, f"ring{key % 3}", step, rng.choice([None, 2]))
    return (kind, key, f"v{step}", step)


def _state(log: OrderLog) -> Recovered:
    state = log.load()
    log.close()
    return state


@pytest.mark.parametrize("seed", range(40))
def test_a_compaction_in_steps_between_appends_keeps_exactly_the_log_s_state(
    tmp_path: Path, seed: int
) -> None:
    """Contract: begun at any point, stepped a few entries at a time between appends, with
    live entries read as they are taken (fuzzy), finished or dropped at the close, the log
    replays to the same state as every entry applied in order: the reference."""
    rng = random.Random(seed)
    path = tmp_path / "orders.log"
    log = OrderLog(path, compact_bytes=1)
    log.load()
    reference = Recovered()
    finished = 0
    for step in range(400):
        entries = [_random_entry(rng, step) for _ in range(rng.randrange(1, 4))]
        log.write(entries)
        for entry in entries:
            reference.apply(list(entry))
        if log.compacting:
            finished += log.step_compaction(rng.randrange(1, 6))
        elif rng.random() < 0.1:
            log.begin_compaction(_lazy_live(reference))
        if finished and rng.random() < 0.05:  # what a restart would read now
            assert _state(OrderLog(path)) == reference
    if rng.random() < 0.5:
        log.finish_compaction()
    log.close()  # drops a compaction under way: the log holds everything
    assert _state(OrderLog(path)) == reference
    assert finished > 0
    assert not path.with_suffix(".compact").exists() or not log.compacting


def test_a_compaction_under_way_is_not_begun_twice_and_drops_its_file_at_close(
    tmp_path: Path,
) -> None:
    path = tmp_path / "orders.log"
    log = OrderLog(path, compact_bytes=1)
    log.load()
    log.write([(ORDER, 1, "a")])
    assert log.wants_compaction
    log.begin_compaction(iter([(ORDER, 1, "a")] * 10))
    assert log.compacting and not log.wants_compaction
    with pytest.raises(OrderLogError, match="under way already"):
        log.begin_compaction(iter(()))
    assert not log.step_compaction(3)  # 3 of 10 written aside
    log.close()
    assert not path.with_suffix(".compact").exists()
    assert OrderLog(path).load().orders == {1: ["a"]}
