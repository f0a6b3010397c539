"""Epochs over real TCP, a source and standbys in one event loop:
- a standby of a newer epoch fences the primary it meets (refused; the journal's epochs file
  and the block's FENCED word say so, and the router's sync wait gives up);
- an old primary's journal that goes on past the promoted epoch is refused as a standby until
  ``rebuild`` cuts that tail (kept aside) with the epochs asked over the wire; then it follows
  the promoted instance to the same history, as a new standby does, which keeps the
  primary's epochs."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from config.schema import ReplicationConfig, RingexConfig
from procs.common.epochs import Epochs
from procs.common.journal import JournalReader
from procs.common.journal_writer import JournalWriter
from procs.common.records import Record, Transfer
from procs.common.replication_ack import FENCED, AckBlock, SyncGate, ack_dir
from procs.common.topology import journal_dir
from procs.replica.rebuild import ask_epochs, rebuild
from procs.replica.source import ReplicationSource
from procs.replica.standby import Standby, StandbyRefusedError
from procs.replica.wire import EpochHistory
from tests.free_ports import free_port
from tests.unit.replica.test_source import CODEC, commands


def instance(tmp_path: Path, name: str, *, port: int = 0, primary: str = "") -> RingexConfig:
    return RingexConfig(
        instance=name, var_dir=str(tmp_path / name),
        replication=ReplicationConfig(listen_port=port, primary=primary),
    )  # fmt: skip


def write(cfg: RingexConfig, records: list[Record]) -> None:
    with JournalWriter(
        journal_dir(cfg), slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id
    ) as journal:
        first = journal.next_seq
        journal.append(first, b"".join(map(CODEC.encode_slot, records)), len(records))


def images(cfg: RingexConfig) -> list[bytes]:
    reader = JournalReader(
        journal_dir(cfg), slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id
    )
    return [bytes(image) for _seq, image in reader.entries(1)]


async def refusal(cfg: RingexConfig) -> str:
    standby = Standby(cfg)
    try:
        with pytest.raises(StandbyRefusedError) as refused:
            await asyncio.wait_for(standby.run(), 10)
    finally:
        standby.close()
    return str(refused.value)


def test_a_standby_of_a_newer_epoch_fences_the_primary(tmp_path: Path) -> None:
    port = free_port()
    old = instance(tmp_path, "old", port=port)
    write(old, commands(1, 3))
    promoted = instance(tmp_path, "new", primary=f"127.0.0.1:{port}")
    shutil.copytree(journal_dir(old), journal_dir(promoted))
    Epochs().promoted(2, 4).save(journal_dir(promoted))

    async def scenario() -> str:
        source = ReplicationSource(old)
        serving = asyncio.create_task(source.run())
        await asyncio.sleep(0.05)
        reason = await refusal(promoted)
        source.stopping.set()
        await serving
        source.close()
        return reason

    assert "this primary is at epoch 1 and the standby at 2" in asyncio.run(scenario())
    fence = Epochs.load(journal_dir(old)).fence
    assert fence is not None and fence.epoch == 2
    block = AckBlock(ack_dir(old.var_dir, old.instance))  # what the old router maps
    assert block.words[FENCED] == 2
    assert not SyncGate(block, timeout_ms=1).wait(10)  # never goes on without the standby
    block.close()


def test_an_old_primary_is_rebuilt_to_follow_the_promoted_one(tmp_path: Path) -> None:
    port = free_port()
    new = instance(tmp_path, "new", port=port)
    old = instance(tmp_path, "old", primary=f"127.0.0.1:{port}")
    fresh_cfg = instance(tmp_path, "fresh", primary=f"127.0.0.1:{port}")
    write(old, commands(1, 5))  # seqs 4 and 5 never reached the standby
    write(new, commands(1, 3))  # what it had when it was promoted
    Epochs().promoted(2, 4).save(journal_dir(new))
    own: list[Record] = [Transfer(seq, 6, 0, 0, seq, 7, 1, 55, seq) for seq in (4, 5, 6)]
    write(new, own)  # what the promoted instance sequenced in epoch 2
    assert images(new)[:3] == images(old)[:3]

    async def scenario() -> Standby:
        source = ReplicationSource(new)
        serving = asyncio.create_task(source.run())
        await asyncio.sleep(0.05)
        reason = await refusal(old)
        assert "holds seqs 4..5 of epoch 1" in reason and "demote" in reason
        epochs = await asyncio.to_thread(ask_epochs, "127.0.0.1", port)
        assert epochs.history == ((1, 1), (2, 4))
        done = rebuild(old, epochs)
        assert (done.kept_seq, done.cut) == (3, 2)
        aside = JournalReader(
            done.aside / "journal", slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id
        )
        assert [CODEC.decode_slot(i) for _s, i in aside.entries(4)] == commands(4, 2)
        standby, fresh = Standby(old), Standby(fresh_cfg)  # a new standby from scratch too
        following = [asyncio.create_task(s.run()) for s in (standby, fresh)]
        for _ in range(500):
            if standby.next_seq == fresh.next_seq == 7:
                break
            await asyncio.sleep(0.01)
        for s, task in zip((standby, fresh), following, strict=True):
            s.stopping.set()
            task.cancel()
            s.close()
        source.stopping.set()
        await serving
        source.close()
        return standby

    standby = asyncio.run(scenario())
    assert standby.next_seq == 7
    assert images(old) == images(new) == images(fresh_cfg)
    assert Epochs.load(journal_dir(old)).history == ((1, 1), (2, 4))
    assert Epochs.load(journal_dir(fresh_cfg)).history == ((1, 1), (2, 4))  # kept its primary's


def test_a_standby_refuses_a_primary_of_an_older_epoch(tmp_path: Path) -> None:
    cfg = instance(tmp_path, "s", primary="127.0.0.1:1")
    Epochs().promoted(2, 1).save(journal_dir(cfg))
    standby = Standby(cfg)
    with pytest.raises(StandbyRefusedError, match="epoch 1, older than this journal's 2"):
        standby.follow_epochs(EpochHistory([(1, 1)]))
    standby.close()
