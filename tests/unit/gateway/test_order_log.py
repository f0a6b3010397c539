"""The order log's file: upserts replay to the last value, a torn tail is cut, damage before
the last frame is an error naming the byte, and compaction keeps exactly what is live."""

from __future__ import annotations

from pathlib import Path

import pytest

from procs.gateway.order_log import COMMAND, GONE, ORDER, POSITION, REQUEST, OrderLog, OrderLogError


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
