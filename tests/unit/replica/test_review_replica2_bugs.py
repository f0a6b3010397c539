"""A second hostile review of replication, failover and the router's side of them: each test
shows one bug and fails on the code as reviewed (see each docstring for the invariant, what
is expected and what happens)."""

from __future__ import annotations

import asyncio
import errno
import gc
import os
import shutil
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from config.edges import GatewayConfig
from config.schema import ReplicationConfig, RingexConfig
from procs.common.journal import JournalReader
from procs.common.journal_writer import JournalWriter
from procs.common.records import AccountReply, Record, Transfer
from procs.common.replication_ack import AckBlock, ack_dir
from procs.common.topology import gateway_root, journal_dir
from procs.common.types import Side
from procs.replica import source as source_module
from procs.replica import standby as standby_module
from procs.replica.source import ReplicationSource
from procs.replica.standby import Standby
from tests.free_ports import free_port
from tests.unit.replica.test_source import CODEC, commands
from tests.unit.router.test_router import ADMIN, USD, Exchange, config, fund, order
from tests.unit.supervisor.test_review_ops_bugs import failover


def journaled(ex: Exchange) -> list[Record]:
    reader = JournalReader(
        journal_dir(ex.cfg), slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id
    )
    return [CODEC.decode_slot(image) for _seq, image in reader.entries(1)]


def replicated_exchange(instance: str, tmp_path: Path, mode: str) -> tuple[Exchange, AckBlock, int]:
    """A primary's router over real rings (this test plays its replication source: it writes
    the acknowledged seq), account 7 funded: the exchange, the source's block, the journal's
    last seq (all of it acknowledged)."""
    cfg = config(instance, tmp_path)
    rep = ReplicationConfig(listen_port=1, mode=mode, sync_timeout_ms=0)  # type: ignore[arg-type]
    cfg = msgspec.structs.replace(cfg, replication=rep)
    source = AckBlock(ack_dir(cfg.var_dir, cfg.instance))
    source.acknowledged(10**9)  # the funding goes through at once
    ex = Exchange(cfg)
    fund(ex, 7, usd=10**6, btc=10**6)
    ex.replies_of(ADMIN)
    last = len(journaled(ex))
    source.acknowledged(last)
    return ex, source, last


def transfer(ref: int) -> Transfer:
    """A deposit of 0.5 USD to account 7 on the admin ring (client ref ``ref``): only it
    carries one (review 343)."""
    return Transfer(0, 0, ADMIN, 1, ref, 7, USD, 5_000, 4_000 + ref)


def account_replies(ex: Exchange, ref: int) -> list[AccountReply]:
    return [r for r in ex.replies_of(ADMIN) if isinstance(r, AccountReply) and r.client_ref == ref]


class KilledError(Exception):
    """What a SIGKILL does to the router's loop: it ends where it is, nothing more runs."""


def crash() -> bool:
    raise KilledError


def test_a_restarted_router_answers_a_transfer_before_the_standby_has_it(
    instance: str, tmp_path: Path
) -> None:
    """Sync mode promises that no account reply leaves the primary for a command the
    standby does not hold durably (README, "sync"). A router killed while a batch holding a
    Transfer waits for the standby's acknowledgement restarts, reads the Transfer again from
    its gateway's ring (not committed), finds it journaled and answers it at once
    (``RouterShell._not_done_before`` -> ``answered_again``, flushed by the idle step): the
    sync gate is never asked, because ``_resend_unrouted`` only gates matcher commands and
    an account command goes to no matcher. Expected: no AccountReply for that seq until the
    standby acknowledges it. Actual: an OK AccountReply leaves while the standby has not
    acknowledged it; a failover now loses a transfer the client was told had happened."""
    ex, source, last = replicated_exchange(instance, tmp_path, "sync")
    try:
        ex.router._stop = crash
        ex.gateways[ADMIN].publish_batch([transfer(555)])
        with pytest.raises(KilledError):
            ex.router.step(timeout_s=0.001)  # journaled, then killed waiting for the standby
        assert len(journaled(ex)) == last + 1
        ex.stop()  # what the kill left: nothing answered, the gateway's ring not committed
        ex.start()
        for _ in range(3):
            ex.router.step(timeout_s=0.001)
        assert source.acked_seq == last  # the standby still lacks the transfer
        early = account_replies(ex, 555)
        assert not early, f"answered before the standby acknowledged seq {last + 1}: {early}"
    finally:
        ex.stop()
        source.close()


def test_a_transfer_abandoned_by_a_stop_in_sync_mode_is_never_answered(
    instance: str, tmp_path: Path
) -> None:
    """``RouterShell._abandon`` (a stop while a batch waits for the standby) leaves the batch
    journaled and unpublished and commits the gateways' rings, on the promise that "the
    restart publishes it once the standby has it". That holds for orders (their matcher
    answers them once ``_resend_unrouted`` publishes them), but an account command goes to
    no matcher, and its ring was committed, so the restarted router never reads it again:
    the Transfer is in the journal and in the balances, and its client never gets an answer
    (the router's "nothing it took goes unanswered"). Expected: once the standby
    acknowledges the seq after the restart, one OK AccountReply for it. Actual: none."""
    ex, source, last = replicated_exchange(instance, tmp_path, "sync")
    try:
        ex.router._stop = lambda: True  # SIGTERM while the batch waits for the standby
        ex.gateways[ADMIN].publish_batch([transfer(556)])
        ex.router.step(timeout_s=0.001)
        assert len(journaled(ex)) == last + 1
        assert not account_replies(ex, 556)
        ex.stop()
        ex.start()
        source.acknowledged(last + 1)  # the standby is back and has it
        ex.pump()
        ex.pump()
        assert ex.router.sequencer.accounts.balance(7, USD)[0] == 10**6 + 5_000
        replies = account_replies(ex, 556)
        assert len(replies) == 1, f"the transfer at seq {last + 1} was answered {replies}"
    finally:
        ex.stop()
        source.close()


def test_fencing_a_running_primary_stops_its_router(instance: str, tmp_path: Path) -> None:
    """``failover.py promote`` fences the old primary before the standby's instance starts
    sequencing: "two primaries must never accept orders at once". ``fence`` kills only the
    processes a running supervisor's status file names (none under
    ``scripts/systemd_units.py``, which runs each process as a unit without the supervisor,
    nor for a router run by hand) and marks the journal fenced, which only a router's
    *start* reads. The running router learns of a fence from the replication block's
    ``FENCED`` word, which ``fence`` never sets (only a source that meets a newer standby
    does). Expected: after ``fence``, the old primary's router sequences nothing more.
    Actual: it goes on journaling and publishing orders while the promoted one runs."""
    ex, source, last = replicated_exchange(instance, tmp_path, "async")
    try:
        failover.fence(ex.cfg, 2, "the standby")  # what promote does on this host
        ex.send(1, order(77, 7, Side.SELL, 1000, 10))
        after = journaled(ex)
        assert len(after) == last, f"the fenced primary sequenced {after[last:]}"
    finally:
        ex.stop()
        source.close()


def append(cfg: RingexConfig, first: int, n: int) -> None:
    with JournalWriter(
        journal_dir(cfg), slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id
    ) as journal:
        for at in range(first, first + n, 10_000):
            k = min(10_000, first + n - at)
            journal.append(at, b"".join(map(CODEC.encode_slot, commands(at, k))), k)


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


def serve_in_a_thread(source: ReplicationSource) -> Callable[[], None]:
    """Run the source in its own event loop (as in its own process); returns its stop."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(source.run(),))
    thread.start()

    def stop() -> None:
        loop.call_soon_threadsafe(source.stopping.set)
        thread.join(10)
        loop.close()
        source.close()

    return stop


# the source's backlog of abandoned connections can outlive its loop: not this test's point
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_a_standby_reconnecting_behind_a_long_journal_catches_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On each Hello the source hashes the whole journal up to the standby's next seq
    (``ReplicationSource._history_before``, about 1 us per entry here) synchronously on its
    event loop, after the EpochHistory and before the first frame; the standby gives up on a
    primary that sends nothing for ``SILENCE_S`` (2 s) and reconnects, and the source hashes
    it all again. Replication archives nothing, so past about 2M entries (minutes of the
    bench's load) a standby that reconnects (a network blip, its own restart) never gets a
    frame again: a reconnect loop, with the source's loop blocked meanwhile (the sync
    router's acknowledgements stall with it). Here the same ratio at a smaller scale: 200k
    entries (about 0.2 s to hash) against a silence limit of 0.05 s (heartbeats every 0.01
    s). Expected: the standby gets the 3 entries appended after its copy. Actual: it
    reconnects forever and never does."""
    monkeypatch.setattr(standby_module, "SILENCE_S", 0.05)
    monkeypatch.setattr(source_module, "HEARTBEAT_S", 0.01)
    primary, secondary = pair(tmp_path)
    held = 200_000
    append(primary, 1, held)
    shutil.copytree(journal_dir(primary), journal_dir(secondary))  # it followed up to here
    append(primary, held + 1, 3)
    standby = Standby(secondary)
    assert standby.next_seq == held + 1
    stop_source = serve_in_a_thread(ReplicationSource(primary))

    async def follow() -> None:
        following = asyncio.create_task(standby.run())
        deadline = time.monotonic() + 5.0
        while standby.next_seq < held + 4 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        standby.stopping.set()
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)

    try:
        asyncio.run(follow())
    finally:
        stop_source()
        standby.journal.close()
        with warnings.catch_warnings():  # the transports of its backlog, now rather than later
            warnings.simplefilter("ignore")
            gc.collect()
    assert standby.next_seq == held + 4, f"stuck at seq {standby.next_seq - 1}"


def test_a_standby_does_not_acknowledge_frames_whose_order_log_bytes_it_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The source ships what the gateways' order logs gained before each frame, and the
    standby makes them durable before it acknowledges the frame, so that "in sync mode the
    promoted gateway knows the ClOrdID of every order whose acknowledgement left the
    primary" (README, files.py). A write of shipped bytes that fails on the standby (a full
    disk: ENOSPC, once) is only logged (``Standby._follow``: "the journal goes on without
    it"): the following frames are acknowledged all the same, the source never sends those
    bytes again (it counts them sent), and the log's next growth is written at its own
    offset, past a hole of zeros where the lost bytes belong. Expected: once every frame is
    acknowledged, the standby's copy of the order log equals the primary's. Actual: the
    copy has a hole of NUL bytes, which a promoted gateway reads as its order log."""
    port = free_port()
    gateways = [GatewayConfig(name="gw1", id=1)]
    primary = RingexConfig(
        instance="rp", var_dir=str(tmp_path / "p"), gateways=gateways,
        replication=ReplicationConfig(listen_port=port),
    )  # fmt: skip
    secondary = RingexConfig(
        instance="rs", var_dir=str(tmp_path / "s"), gateways=gateways,
        replication=ReplicationConfig(primary=f"127.0.0.1:{port}"),
    )  # fmt: skip
    log = gateway_root(primary) / "gw1" / "orders.log"
    copy = gateway_root(secondary) / "gw1" / "orders.log"
    real_pwrite = os.pwrite
    failed: list[int] = []

    def pwrite_once_out_of_space(fd: int, data: bytes, offset: int) -> int:
        if not failed and os.readlink(f"/proc/self/fd/{fd}") == str(copy):
            failed.append(offset)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite_once_out_of_space)

    def grow(part: bytes, first: int) -> None:
        with log.open("ab") as f:
            f.write(part * 100)  # logged before the router journals the commands
        append(primary, first, 2)

    log.parent.mkdir(parents=True)
    grow(b"A", 1)

    async def scenario() -> None:
        source = ReplicationSource(primary)
        serving = asyncio.create_task(source.run())
        standby = Standby(secondary)
        following = asyncio.create_task(standby.run())

        async def acked(seq: int) -> None:
            deadline = time.monotonic() + 5.0
            while source.acked < seq:
                assert time.monotonic() < deadline, f"seq {seq} not acknowledged"
                await asyncio.sleep(0.005)

        try:
            await acked(2)
            grow(b"B", 3)
            await acked(4)
            grow(b"C", 5)
            await acked(6)
        finally:
            standby.stopping.set()
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
            standby.close()
            source.stopping.set()
            await serving
            source.close()

    asyncio.run(scenario())
    assert failed == [100]  # the B bytes' write failed once
    held = copy.read_bytes()
    assert held == log.read_bytes(), (
        f"acknowledged seq 6 with {held.count(0)} NUL bytes in its copy"
    )
