"""A quiet matcher and the archive bound: a matcher's own snapshots hold archiving back only
where its output may lag the oldest exchange snapshot's copy of its books
(``recovery._served_by_exchange``), which its ``published`` file (``published_through.py``)
or its newest own snapshot rules out. Review 69's second fault: a matcher whose symbols
trade little pinned the archive point at its own oldest snapshot (or seq 1) for months."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from config.schema import DatabaseConfig, MatcherConfig, RingConfig, RingexConfig, SymbolConfig
from procs.common import published_through
from procs.common.published_through import PublishedThrough
from procs.common.snapshots import SnapshotStore
from procs.common.topology import snapshot_dir
from procs.core.archive_bound import archivable_before
from procs.core.engine import Matcher
from procs.core.recovery import (
    ExchangeSnapshot,
    matcher_snapshot,
    snapshot_store,
)
from procs.core.symbols import symbol_specs
from procs.matcher.main import MatcherShell
from tests.unit.matcher.test_process import config, make_rings, order, run_shell

WINDOW = 8  # the reread window: ring.capacity 4 x (gateways 1 + 1)


def _cfg(var: Path) -> RingexConfig:
    return RingexConfig(
        instance="qm",
        ring=RingConfig(capacity=4),
        symbols=[SymbolConfig(name="AAA", id=3), SymbolConfig(name="BBB", id=4)],
        matchers=[
            MatcherConfig(name="m1", symbols=["AAA"]),
            MatcherConfig(name="m2", symbols=["BBB"]),  # the quiet one
        ],
        database=DatabaseConfig(enabled=False),
        var_dir=str(var),
    )


def _books(cfg: RingexConfig, name: str, last_seq: int) -> bytes:
    """``name``'s (empty) books after its last command, of seq ``last_seq``."""
    matcher = Matcher(symbol_specs(cfg, name))
    matcher.last_seq = last_seq
    return matcher.snapshot()


def _exchange(cfg: RingexConfig, seqs: list[int], m2_last: int) -> None:
    """Exchange snapshots at ``seqs``: m1 busy (its last command the snapshot's), m2's last
    command ``m2_last`` (or the snapshot's seq, where that is before it)."""
    for seq in seqs:
        books = {"m1": _books(cfg, "m1", seq), "m2": _books(cfg, "m2", min(seq, m2_last))}
        snapshot_store(cfg).save(seq, msgspec.msgpack.encode(ExchangeSnapshot(seq, b"", books)))


def _own(cfg: RingexConfig, name: str, seqs: list[int]) -> SnapshotStore:
    store = SnapshotStore(snapshot_dir(cfg, f"matcher-{name}"))
    for seq in seqs:
        store.save(seq, _books(cfg, name, seq))
    return store


def _published(cfg: RingexConfig, name: str, seq: int) -> None:
    PublishedThrough(snapshot_dir(cfg, f"matcher-{name}")).note(seq)


def test_a_quiet_matcher_whose_output_has_its_last_command_holds_nothing_back(
    tmp_path: Path,
) -> None:
    """m2's last command was seq 30; it marked its output through 30 (its ``published``
    file) and has no snapshot of its own, or one from a stop long ago: the exchange
    snapshots (70, 80, 90) alone bound the archive."""
    cfg = _cfg(tmp_path)
    _exchange(cfg, [70, 80, 90], m2_last=30)
    _own(cfg, "m1", [75, 85])
    assert archivable_before(cfg) == 1  # nothing says m2's output has seq 30's events yet
    _published(cfg, "m2", 30)
    assert archivable_before(cfg) == 71 - WINDOW
    _own(cfg, "m2", [12])  # a clean stop long ago
    assert archivable_before(cfg) == 71 - WINDOW
    assert matcher_snapshot(cfg, "m2", (30, 30)) is not None  # what a restart then finds


def test_a_matcher_whose_output_may_lag_the_oldest_copy_keeps_its_own_bound(
    tmp_path: Path,
) -> None:
    """m2's output is known published only through 60, and the oldest exchange copy of its
    books has executed seq 68: a restart whose output ends before 68 cannot take any copy
    and needs its own snapshot (40), which archiving must keep."""
    cfg = _cfg(tmp_path)
    _exchange(cfg, [70, 80, 90], m2_last=68)
    _own(cfg, "m1", [75, 85])
    _own(cfg, "m2", [40])
    _published(cfg, "m2", 60)
    assert archivable_before(cfg) == 41 - WINDOW
    assert matcher_snapshot(cfg, "m2", (60, 60)) == (40, _books(cfg, "m2", 40))
    _published(cfg, "m2", 68)  # its output caught up with the copy
    assert archivable_before(cfg) == 71 - WINDOW


def test_a_damaged_oldest_exchange_snapshot_keeps_every_own_bound(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    _exchange(cfg, [70, 80, 90], m2_last=30)
    _own(cfg, "m1", [75, 85])
    _own(cfg, "m2", [20])
    _published(cfg, "m2", 30)
    path = snapshot_store(cfg).path(70)
    path.write_bytes(path.read_bytes()[:-3] + b"xyz")
    assert archivable_before(cfg) == 21 - WINDOW


@pytest.mark.parametrize("text", [b"", b"12x\n", b"\xff\xfe", b"-3\n"])
def test_a_published_file_that_does_not_read_says_nothing(tmp_path: Path, text: bytes) -> None:
    (tmp_path / published_through.FILE).write_bytes(text)
    assert published_through.read(tmp_path) == 0
    assert published_through.read(tmp_path / "absent") == 0


def test_a_published_file_that_cannot_be_written_never_stops_the_matcher(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_bytes(b"")
    writer = PublishedThrough(blocked / "matcher-m1")  # its directory cannot be made
    writer.note(5)
    writer.note(6)
    assert published_through.read(blocked / "matcher-m1") == 0
    assert sum("not written" in r.getMessage() for r in caplog.records) == 1  # said once


def test_the_matcher_writes_its_marks(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At its start, then the mark of its first idle step after a batch, and a burst's last
    mark on a later idle step once ``EVERY_S`` has passed (a burst within it was skipped)."""
    cfg = config(instance, tmp_path, snapshot_every=0, batch=64)
    inbound, _outbound = make_rings(cfg)
    directory = snapshot_dir(cfg, "matcher-m1")
    shell = MatcherShell(cfg, "m1")
    try:
        assert published_through.read(directory) == 0  # its start: nothing executed yet
        assert (directory / published_through.FILE).exists()
        monkeypatch.setattr(published_through, "EVERY_S", 0.0)
        run_shell(shell, inbound, [order(1, 9, 1), order(2, 9, 2)])
        shell.step(timeout_s=0.01)
        assert published_through.read(directory) == 2
        monkeypatch.setattr(published_through, "EVERY_S", 3600.0)
        run_shell(shell, inbound, [order(3, 9, 3)])
        shell.step(timeout_s=0.01)
        assert published_through.read(directory) == 2  # within EVERY_S: skipped
        monkeypatch.setattr(published_through, "EVERY_S", 0.0)
        shell.step(timeout_s=0.01)  # an idle step: the burst's last mark
        assert published_through.read(directory) == 3
    finally:
        shell.close()
