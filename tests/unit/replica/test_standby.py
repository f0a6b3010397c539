"""The standby's checks: a frame must start at its next seq and end at the primary's history
hash, or it stops with the reason; a good frame is durable, applied and acknowledged."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from config.schema import ReplicationConfig, RingexConfig
from procs.common.record_codec import RecordCodec
from procs.common.records import CreateAccount, Record, Transfer
from procs.replica.standby import Standby, StandbyRefusedError
from procs.replica.wire import Entries, History

CODEC = RecordCodec()


def standby(tmp_path: Path) -> Standby:
    cfg = RingexConfig(
        instance="rs",
        var_dir=str(tmp_path),
        replication=ReplicationConfig(primary="127.0.0.1:1"),
    )
    return Standby(cfg)


def frame(first: int, records: Sequence[Record]) -> Entries:
    """Entries from seq ``first`` of the history ``COMMANDS[: first - 1] + records``."""
    images = [CODEC.encode_slot(r) for r in records]
    history = History()
    for r in COMMANDS[: first - 1]:
        history.update(CODEC.encode_slot(r))
    for image in images:  # one at a time: the same hash as one frame at once
        history.update(image)
    return Entries(first, images, history.digest())


COMMANDS: list[Record] = [CreateAccount(1, 5, 0, 0, 1, 7), Transfer(2, 6, 0, 0, 2, 7, 1, 100, 9)]


def test_a_good_frame_is_appended_and_applied(tmp_path: Path) -> None:
    s = standby(tmp_path)
    assert s.receive_entries(frame(1, COMMANDS)) == 2
    assert s.state.sequencer.accounts.balance(7, 1) == (100, 0)
    s.close()
    again = standby(tmp_path)  # a restart recovers from its own journal
    assert again.next_seq == 3 and again.digest == frame(1, COMMANDS).digest
    again.close()


def test_a_gap_or_another_history_is_refused(tmp_path: Path) -> None:
    s = standby(tmp_path)
    with pytest.raises(
        StandbyRefusedError, match="gap: the primary sent seq 2, this standby needs 1"
    ):
        s.receive_entries(frame(2, COMMANDS[1:]))
    forged = frame(1, COMMANDS)
    forged.digest = bytes((2,)) + bytes(16)  # a chained hash (a 16-byte one: an older build)
    with pytest.raises(StandbyRefusedError, match="hash mismatch after seq 2"):
        s.receive_entries(forged)
    assert s.next_seq == 1  # nothing was written
    s.close()
