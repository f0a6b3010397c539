"""Hostile review of replication and the hot standby: each test failed on the code it was
written against and passes since its fix."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from config.schema import ReplicationConfig, RingexConfig
from procs.common.journal_writer import JournalWriter
from procs.common.record_codec import RecordCodec
from procs.common.topology import journal_dir
from procs.core.recovery import recover
from procs.replica import standby as standby_module
from procs.replica.source import ReplicationSource
from procs.replica.standby import Standby
from procs.replica.wire import (
    SILENCE_S,
    Ack,
    Entries,
    EpochHistory,
    History,
    Message,
    receive,
    send,
)
from procs.supervisor.promotion import begin_epoch
from tests.free_ports import free_port
from tests.unit.replica.test_source import commands

CODEC = RecordCodec()


def pair(tmp_path: Path) -> tuple[RingexConfig, RingexConfig]:
    port = free_port()
    primary = RingexConfig(
        instance="rp", var_dir=str(tmp_path / "p"),
        replication=ReplicationConfig(listen_port=port),
    )  # fmt: skip
    secondary = RingexConfig(
        instance="rs", var_dir=str(tmp_path / "s"),
        replication=ReplicationConfig(primary=f"127.0.0.1:{port}"),
    )  # fmt: skip
    return primary, secondary


def append(cfg: RingexConfig, first: int, n: int) -> None:
    with JournalWriter(
        journal_dir(cfg), slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id
    ) as journal:
        journal.append(first, b"".join(map(CODEC.encode_slot, commands(first, n))), n)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def following(
    primary: RingexConfig, secondary: RingexConfig
) -> AsyncIterator[tuple[ReplicationSource, Standby, asyncio.Task[None]]]:
    """``primary``'s source serving and ``secondary``'s standby following it (the task that
    runs it), both ended and closed after, whatever ended the block."""
    source = ReplicationSource(primary)
    serving = asyncio.create_task(source.run())
    standby = Standby(secondary)
    task = asyncio.create_task(standby.run())
    try:
        yield source, standby, task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        standby.journal.close()
        source.stopping.set()
        await serving
        source.close()


def test_a_frame_persisted_but_not_applied_when_the_ack_send_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    primary, secondary = pair(tmp_path)
    append(primary, 1, 3)  # seq 1 creates account 7, 2..3 transfer 100 each to it
    real_send = send  # the standby module's own name for it, patched below
    failed: list[int] = []

    async def send_dropping_the_first_ack(writer: asyncio.StreamWriter, message: Message) -> None:
        if isinstance(message, Ack) and not failed:
            failed.append(message.seq)  # the primary's connection drops right now
            raise ConnectionResetError("Connection lost")
        await real_send(writer, message)

    monkeypatch.setattr(standby_module, "send", send_dropping_the_first_ack)

    async def scenario() -> tuple[Standby, BaseException | None]:
        source = ReplicationSource(primary)
        serving = asyncio.create_task(source.run())
        standby = Standby(secondary)
        following = asyncio.create_task(standby.run())
        await until(lambda: standby.connected and standby.next_seq == 4)
        append(primary, 4, 2)  # more after the reconnect
        await until(lambda: following.done() or standby.state.last_seq == 5)
        died = following.exception() if following.done() else None
        standby.stopping.set()
        following.cancel()
        source.stopping.set()
        await serving
        source.close()
        return standby, died

    standby, died = asyncio.run(scenario())
    assert failed == [3]
    assert died is None  # now: ValueError("journal has seq 4 where 1 was next")
    hot = standby.state
    standby.journal.close()
    replayed = recover(secondary, use_snapshot=False)  # what its journal says
    assert replayed.sequencer.accounts.balance(7, 1) == (400, 0)
    assert hot.sequencer.accounts.balance(7, 1) == (400, 0)  # seqs 1..3 were never applied
    assert hot.state_hashes() == replayed.state_hashes()


def test_a_standby_notices_a_primary_gone_silent_and_reconnects(tmp_path: Path) -> None:
    _, secondary = pair(tmp_path)
    host, port = secondary.replication.primary_address()
    image = CODEC.encode_slot(commands(1, 1)[0])
    history = History()
    history.update(image)
    connections: list[int] = []
    silent = asyncio.Event()  # never set while the standby waits: a primary host gone dark

    async def primary(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(len(connections) + 1)
        try:
            await receive(reader)  # the Hello
            await send(writer, EpochHistory([(1, 1)]))
            if len(connections) == 1:
                await silent.wait()  # no FIN, no RST: nothing ever arrives again
            else:  # the primary, back on another connection
                await send(writer, Entries(1, [image], history.digest()))
                await receive(reader)  # the Ack
        finally:  # closed even when the test's end cancels this handler (no stray warning)
            writer.close()

    async def scenario() -> tuple[int, list[int]]:
        server = await asyncio.start_server(primary, host, port)
        standby = Standby(secondary)
        following = asyncio.create_task(standby.run())
        try:
            await until(lambda: standby.next_seq == 2, timeout=3.0 + 2 * SILENCE_S)
        except AssertionError:
            pass
        finally:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
            silent.set()
            server.close()
            await server.wait_closed()
            await asyncio.sleep(0.01)  # the silent handler runs to its close
            standby.journal.close()
        return standby.next_seq, connections

    next_seq, seen = asyncio.run(scenario())
    assert seen[:2] == [1, 2]  # it came back on a new connection
    assert next_seq == 2


def test_a_standby_behind_its_primarys_newest_epoch_can_be_promoted(tmp_path: Path) -> None:
    _, secondary = pair(tmp_path)
    standby = Standby(secondary)  # a new standby catching up with a promoted primary
    standby.follow_epochs(EpochHistory([(1, 1), (2, 4)]))  # epoch 2 began at seq 4
    images = [CODEC.encode_slot(r) for r in commands(1, 2)]  # its first frame: 1..2
    history = History()
    history.update(b"".join(images))
    assert standby.receive_entries(Entries(1, images, history.digest())) == 2
    standby.close()  # the primary dies now; this standby is promoted
    assert begin_epoch(secondary, 3) == 3  # now: EpochsError, epoch 3 from 3 after 2 from 4
