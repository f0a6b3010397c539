"""The pipelined replay (``replay_pipeline.py``: matchers in a forked child) against the
serial one, its reference: the same journal gives the same state, byte for byte, and every
failure ends the same way, with no child left behind."""

from __future__ import annotations

import os
import random
from pathlib import Path

import psutil
import pytest

from config.schema import RingexConfig
from procs.common.journal import EntryLayout, JournalError, ReplayError, list_segments
from procs.common.journal_writer import JournalWriter
from procs.common.topology import journal_dir
from procs.core import recovery
from procs.core.recovery import JournaledTail, Recovered, recover, write_snapshot
from procs.core.sequencer import Sequencer
from tests.unit.router.core_rig import CODEC, exchange_config, funded
from tests.unit.router.test_core_streams import OPS, Driver


@pytest.fixture(autouse=True)
def _pipeline_for_any_tail(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recovery, "PIPELINE_MIN", 1)


def _journal(tmp_path: Path, ops: int = 2000, snapshot_at: float = 0.0) -> RingexConfig:
    """A random stream of every kind of command over two matchers, journaled, with an
    exchange snapshot after the first ``snapshot_at`` of it (none at 0)."""
    cfg = exchange_config(var_dir=str(tmp_path))
    rng = random.Random(7)
    driver = Driver(funded(cfg))
    for _ in range(ops):
        driver.run((rng.choice(OPS), [rng.randrange(1000) for _ in range(10)]))
    driver.finish()
    images = [CODEC.encode_slot(command) for command in driver.ex.journal]
    cut = int(len(images) * snapshot_at)
    with JournalWriter(
        journal_dir(cfg), slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id, fsync="none"
    ) as writer:
        if cut:
            writer.append(1, b"".join(images[:cut]), cut)
            write_snapshot(cfg, recover(cfg))
        writer.append(cut + 1, b"".join(images[cut:]), len(images) - cut)
    return cfg


@pytest.fixture(autouse=True)
def _children_before() -> None:
    """The children this process had before the test (say, multiprocessing's resource
    tracker, left by an earlier test of the session): the replay's own must be gone after."""
    _BEFORE.clear()
    _BEFORE.update(p.pid for p in psutil.Process().children())


_BEFORE: set[int] = set()  # the fixture's, for _no_children


def _no_children() -> bool:
    """No child of the replay is left, running or unreaped (psutil lists zombies too)."""
    return {p.pid for p in psutil.Process().children()} <= _BEFORE


def _recorder(calls: list[tuple[int, int]]) -> recovery.Progress:
    return lambda done, total: calls.append((done, total))


def _whole_state(r: Recovered) -> tuple[object, ...]:
    seq = r.sequencer
    return (
        r.state_hashes(),
        seq.snapshot(),
        {name: m.snapshot() for name, m in r.matchers.items()},
        (r.last_seq, r.snapshot_seq, r.replayed),
    )


@pytest.mark.parametrize("snapshot_at", [0.0, 0.5])
def test_a_pipelined_replay_ends_in_the_serial_ones_state(
    tmp_path: Path, snapshot_at: float
) -> None:
    cfg = _journal(tmp_path, snapshot_at=snapshot_at)
    seen: dict[bool, list[tuple[int, int]]] = {True: [], False: []}
    tails = {True: JournaledTail(50, 3), False: JournaledTail(50, 3)}
    runs = {
        p: recover(cfg, pipelined=p, tail=tails[p], progress=_recorder(seen[p]))
        for p in (False, True)
    }
    assert runs[True].replayed > 500
    assert _whole_state(runs[True]) == _whole_state(runs[False])
    assert tails[True].by_gateway() == tails[False].by_gateway()
    assert seen[True] == seen[False]
    # the pipelined state goes on as the serial one: a snapshot of it replays the same
    Sequencer.restore(cfg, runs[True].sequencer.snapshot()).accounts.validate_internal_state()
    assert _no_children()


def test_a_journal_corrupt_mid_tail_fails_as_the_serial_replay_does(tmp_path: Path) -> None:
    cfg = _journal(tmp_path)
    (_, path), *_ = list_segments(journal_dir(cfg))
    layout = EntryLayout(CODEC.slot_size)
    middle = path.stat().st_size // 2
    with path.open("r+b") as f:  # one byte of an entry's body: its CRC no longer matches
        f.seek(middle - middle % layout.size + 20)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    errors = {}
    for pipelined in (False, True):
        with pytest.raises(JournalError) as caught:
            recover(cfg, pipelined=pipelined)
        errors[pipelined] = (type(caught.value), str(caught.value))
    assert errors[True] == errors[False]
    assert _no_children()


def test_a_command_the_accounts_refuse_stops_the_child_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _journal(tmp_path)
    replay = Sequencer.replay
    calls = 0

    def refusing(self: Sequencer, command: object) -> None:
        nonlocal calls
        calls += 1
        if calls == 300:
            raise ReplayError(f"refused at call {calls}")
        replay(self, command)  # type: ignore[arg-type]

    monkeypatch.setattr(Sequencer, "replay", refusing)
    with pytest.raises(ReplayError, match="refused at call 300"):
        recover(cfg, pipelined=True)
    assert calls == 300  # not replayed again serially: the failure was the parent's own
    assert _no_children()
