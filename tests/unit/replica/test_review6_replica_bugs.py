"""A sixth hostile review of replication, epochs and failover: each test shows one bug and
fails on the code as reviewed (each docstring says what is wrong and what a correct system
does)."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from procs.common.epochs import Epochs
from procs.common.topology import journal_dir
from procs.replica.source import ReplicationSource
from procs.replica.standby import Standby, StandbyRefusedError
from procs.replica.wire import (
    GENESIS,
    MAX_FRAME,
    EpochHistory,
    Hello,
    Refused,
    receive,
    send,
)
from tests.unit.replica.test_review3_replica_bugs import frame
from tests.unit.replica.test_review_replica_bugs import append, pair


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


def _framed(body: bytes) -> bytes:
    return struct.pack("<I", len(body)) + body


# What a primary of another version, a proxy in between or a corrupting link may put on the
# wire after its EpochHistory: bytes that are not msgpack, a message of a kind this version
# does not know, a known kind of the wrong shape, a length past the protocol's limit.
BAD_FRAMES = {
    "not msgpack": _framed(b"\xc1\xc1\xc1"),
    "unknown tag": _framed(msgspec.msgpack.encode([99, 1, 2])),
    "wrong shape": _framed(msgspec.msgpack.encode([2, "one", [], b""])),  # Entries(str, ...)
    "too long": struct.pack("<I", MAX_FRAME + 1),
}


@pytest.mark.parametrize("bad", list(BAD_FRAMES))
def test_a_standby_refuses_a_frame_it_cannot_decode_instead_of_dying(
    tmp_path: Path, bad: str
) -> None:
    """The standby's loop (``Standby._connect_loop``) handles a lost connection, silence and
    a refusal (``StandbyRefusedError``: ``procs/replica/main.py`` logs the reason and exits
    2, "a standby that finds a gap or a different history exits 2, saying which"). A frame
    it cannot decode raises ``msgspec.DecodeError`` / ``ValidationError`` (or ``ValueError``
    for a length past ``MAX_FRAME``) from ``wire.receive``, which nothing catches:
    ``Standby.run`` ends with that exception, ``main._standby`` does not catch it either, and
    the process dies with a traceback (exit 1) instead of refusing the peer by name. Expected:
    the bad frame either drops the connection (the standby reconnects, as for any broken
    connection) or refuses the primary with a ``StandbyRefusedError`` naming the problem.
    Actual: ``run()`` raises a decode error."""
    _, secondary = pair(tmp_path)
    host, port = secondary.replication.primary_address()
    connections: list[int] = []

    async def primary(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            await receive(reader)  # the Hello
            await send(writer, EpochHistory([(1, 1)]))
            writer.write(BAD_FRAMES[bad])
            await writer.drain()
            await reader.read()  # until the standby hangs up
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def scenario() -> BaseException | None:
        server = await asyncio.start_server(primary, host, port)
        standby = Standby(secondary)
        following = asyncio.create_task(standby.run())
        try:
            await until(lambda: following.done() or len(connections) >= 2, timeout=2.0)
            return following.exception() if following.done() else None
        finally:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
            server.close()
            await server.wait_closed()
            await asyncio.sleep(0.01)
            standby.journal.close()

    ended = asyncio.run(scenario())
    assert ended is None or isinstance(ended, StandbyRefusedError), (
        f"the standby died on a bad frame: {type(ended).__name__}: {ended}"
    )


def test_a_standby_told_of_a_newer_epoch_never_follows_an_older_primary(tmp_path: Path) -> None:
    """Epochs are Raft's terms (epochs.py): ``known`` is "the newest epoch this journal was
    told of ... never begun here again (Raft keeps its current term)", and a standby records
    its primary's newer epoch "as soon as the primary has checked its history ..., before
    the entries of it" (README, "Epochs"). Yet neither side looks at ``known`` afterwards:
    the Hello carries ``epochs.current`` only, and ``Standby.follow_epochs`` compares the
    primary with ``epochs.current`` only. So a standby catching up with a promoted primary
    (epoch 2 began at seq 10; it holds 1..3, so ``known`` = 2, current 1) that restarts and
    reaches the *old* primary (epoch 1; a DNS name or VIP that moved back, or the old host
    back from a network cut: on two hosts fencing is the operator's and "the epoch then
    fences the old primary when it meets a standby of the new one", failover.py) is taken
    as a standby of epoch 1: the old primary does not fence itself and the standby takes its
    tail, seqs 10.. that epoch 2 wrote differently. Expected: the standby refuses a primary
    older than the newest epoch it knows (and says that epoch in its Hello, so the old
    primary fences itself). Actual: it follows the old primary to its end."""
    old, secondary = pair(tmp_path)
    append(old, 1, 20)  # the old primary: epoch 1, seqs 1..20 (its 10.. never replicated)
    standby = Standby(secondary)
    standby.follow_epochs(EpochHistory([(1, 1), (2, 10)]))  # the promoted primary's epochs
    assert standby.receive_entries(frame(1, 3)) == 3  # its first frame: 1..3 (1..9 shared)
    standby.close()
    assert Epochs.load(journal_dir(secondary)).known == 2  # it was told of epoch 2

    async def scenario() -> tuple[int, int, BaseException | None]:
        source = ReplicationSource(old)
        serving = asyncio.create_task(source.run())
        restarted = Standby(secondary)
        following = asyncio.create_task(restarted.run())
        try:
            await until(lambda: following.done() or restarted.next_seq > 10, timeout=2.0)
            ended = following.exception() if following.done() else None
            return restarted.next_seq, source.epochs.fence is not None, ended
        finally:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
            restarted.journal.close()
            source.stopping.set()
            await serving
            source.close()

    next_seq, fenced, ended = asyncio.run(scenario())
    assert next_seq <= 10, (
        f"a standby that knows epoch 2 took the epoch-1 primary's seqs up to {next_seq - 1} "
        f"(old primary fenced: {fenced}; standby ended with {ended!r})"
    )


def test_a_fenced_primary_serves_its_journal_to_no_standby(tmp_path: Path) -> None:
    """A fenced primary is one a newer epoch replaced: its journal's tail from the new
    epoch's first seq on was never replicated (acknowledged only in async mode, or a sync
    batch its router abandoned unpublished when fenced: ``RouterShell._abandon``, "a fenced
    one is cut by the rebuild"), and ``failover.py demote`` cuts it (README, "Epochs"). Its
    router sequences nothing more and a fenced journal follows nobody (standby.py), but its
    replication source goes on serving that journal to any standby that says a Hello of the
    old epoch (``ReplicationSource.serve`` only compares the Hello's epoch with its own, not
    with its fence): the standby takes the doomed tail, reports itself connected and
    following, and is diverged from the promoted instance like the old primary itself.
    Here the source fences itself on meeting a standby of epoch 2 (as documented), then a
    standby of epoch 1 connects. Expected: it is refused ("this primary is fenced by epoch
    2"). Actual: it is sent the fenced journal."""
    old, secondary = pair(tmp_path)
    append(old, 1, 5)
    host, port = "127.0.0.1", old.replication.listen_port

    async def scenario() -> tuple[object, int, BaseException | None]:
        source = ReplicationSource(old)
        serving = asyncio.create_task(source.run())
        standby: Standby | None = None
        following: asyncio.Task[None] | None = None
        try:
            await asyncio.sleep(0.05)  # listening
            reader, writer = await asyncio.open_connection(host, port)
            try:  # the promoted instance's standby: epoch 2
                await send(writer, Hello(1, GENESIS, 2))
                first = await asyncio.wait_for(receive(reader), 2.0)
            finally:
                writer.close()
            assert isinstance(first, Refused), first
            assert source.epochs.fence is not None and source.epochs.fence.epoch == 2
            standby = Standby(secondary)  # a standby of the old epoch
            following = asyncio.create_task(standby.run())
            await until(lambda: following.done() or standby.next_seq == 6, timeout=2.0)
            ended = following.exception() if following.done() else None
            return first, standby.next_seq, ended
        finally:
            if following is not None:
                following.cancel()
                await asyncio.gather(following, return_exceptions=True)
            if standby is not None:
                standby.journal.close()
            source.stopping.set()
            await serving
            source.close()

    _, next_seq, ended = asyncio.run(scenario())
    assert next_seq == 1, (
        f"a fenced primary sent its journal up to seq {next_seq - 1} to a standby "
        f"(standby ended with {ended!r})"
    )


def _failover_script() -> Any:  # scripts/ is not a package
    import importlib.util  # noqa: PLC0415

    path = Path(__file__).resolve().parents[3] / "scripts" / "failover.py"
    spec = importlib.util.spec_from_file_location("ringex_failover_script", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("began", [6, 4], ids=["nothing to cut", "a tail to cut"])
def test_demote_never_lifts_the_fence_of_a_journal_a_router_still_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, began: int
) -> None:
    """``failover.py demote`` "rebuilds the *stopped* old primary" (README) and is the only
    thing that lifts a fence. Whether the instance runs, it asks only its supervisor's status
    file (``instance_pids``), though ``fence`` itself says a router may run that no status
    file names ("systemd units, or started by hand"). The journal's directory lock is what
    says a writer runs (``cut_after``: "no writer may have it open"), but ``rebuild`` only
    takes it when it has entries to cut: with nothing to cut (the promoted epoch began just
    after the old primary's last entry, the usual sync-mode case) it sets the gateway state
    and snapshots aside, removes the replication block and rewrites the epochs file
    unfenced under a live router. Once that router restarts (systemd ``Restart=``),
    ``check_open`` lets it open the journal and it sequences orders again beside the
    promoted instance: two primaries. With a tail to cut, ``cut_after``'s lock raises
    ``JournalError``, which ``demote`` does not catch (a traceback, not its "demote of ...
    failed" line). Expected: demote refuses (nonzero, nothing changed) while a writer holds
    the old journal. Actual: it returns 0 and the fence is gone, or it raises."""
    import tomli_w  # noqa: PLC0415

    failover = _failover_script()
    old, _ = pair(tmp_path)
    append(old, 1, 5)
    directory = journal_dir(old)
    Epochs().fenced(2, "rs").save(directory)  # promote fenced it
    old_toml = tmp_path / "old.toml"
    old_toml.write_text(
        tomli_w.dumps(
            {
                "instance": old.instance,
                "var_dir": old.var_dir,
                "replication": {"listen_port": old.replication.listen_port},
            }
        )
    )
    from procs.common.journal_writer import JournalWriter  # noqa: PLC0415
    from procs.replica import rebuild as rebuild_module  # noqa: PLC0415
    from tests.unit.replica.test_source import CODEC  # noqa: PLC0415

    promoted = Epochs(((1, 1), (2, began)))  # where the promoted instance's epoch began
    monkeypatch.setattr(rebuild_module, "ask_epochs", lambda host, port, timeout_s=10.0: promoted)
    # the old router, still running (started by a systemd unit: no status file names it)
    writer = JournalWriter(directory, slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id)
    try:
        code = failover.demote(str(old_toml), "", "127.0.0.1:1")
    finally:
        writer.close()
    fence = Epochs.load(directory).fence
    assert code != 0 and fence is not None, (
        f"demote returned {code} and left the fence {fence} on a journal a router still holds"
    )
