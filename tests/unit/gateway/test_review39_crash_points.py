"""A thirty-ninth hostile review: the FIX gateway's durability across a crash at an arbitrary
point and a restart ("nothing acknowledged is ever lost, nothing executed twice, a restart
takes the same path as recovery").

A crash is put in process: a write, rename or open that raises ``SigkillError`` (no handler
of the gateway catches it, as none runs after SIGKILL), after which nothing more reaches a
file, a store or the router ring (``test_review30_durability.kill_at``); the files are then
opened again as a new process would (``test_gateway_restart.crash`` and a second ``OrderLog``
or ``MessageStore`` on the same path).

The review found seven faults, each with its test, all fixed since (a line in each test's
docstring says how); the ``test_checked_`` ones pin crash points that were tried and held.
This file holds the process-level ones; ``test_review39_files.py`` those of the order log,
the audit log and the message store on their own. A last test pins a possible fault the
review named, since fixed: refs after a restart with the clock stepped back.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest

from procs.common.records import NewOrder
from procs.gateway.clordids import digest
from procs.gateway.order_log import (
    COMMAND,
    POSITION,
    Kept,
)
from procs.gateway.server import GatewayServer
from tests.unit.gateway.harness import Client, Harness, close_all, settled, utc
from tests.unit.gateway.rest_rig import ALICE as API_ALICE
from tests.unit.gateway.rest_rig import LIMIT, client
from tests.unit.gateway.test_gateway import logged_on, order
from tests.unit.gateway.test_gateway_restart import back_on, crash, drain, run
from tests.unit.gateway.test_reset_logon import filled_while_away
from tests.unit.gateway.test_review18_rest_restart import first_exchange, rest_config, url_of
from tests.unit.gateway.test_review30_durability import has_cursors, kill_at, taker
from tests.unit.gateway.test_review39_files import SigkillError


def _commands(entries: Sequence[Kept]) -> bool:
    """A frame that logs commands for the router ring (C entries)."""
    return any(isinstance(e, tuple) and e[0] == COMMAND for e in entries)


def _kill_stores(gw: GatewayServer) -> None:
    """From now on no store of ``gw`` writes anything (its process is dead)."""
    for store in gw.stores.values():
        store.flush = lambda: None  # type: ignore[method-assign]


# == found: a logon that resets the numbers, killed before what it carried is stored ============


@pytest.mark.parametrize(
    "point", ["inside reset, before the seqnums", "after reset, before a flush"]
)
def test_a_crash_at_a_reset_logon_keeps_the_fill_parked_while_away(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    """``Session._finish_logon`` with 141=Y takes the parked messages into memory
    (``store.unsent()``), then ``MessageStore.reset`` truncates ``messages`` and saves
    ``seqnums`` (1, 1, none parked); the carried messages are stored again only at the next
    ``flush`` (the connection's write). A crash anywhere in between -- inside ``reset``
    after the truncation (``seqnums`` still name the parked seqs, ``messages`` is empty), or
    after it (``seqnums`` say nothing is parked) -- leaves no copy of them anywhere: the order
    log has the fill's batch as handled, so the restart does not make the report again. ALICE
    logs on again with a reset and never hears that 's1' filled. (The store's own promise: "a
    reset discards what the client has seen, never what it has not".)

    Fixed: ``reset`` copies the parked entries to ``carried`` first; the flush
    that stores them anew removes it, and a start that finds it parks them again.
    """

    async def scenario(h: Harness, port: int) -> None:
        await filled_while_away(port)  # ALICE's fill of 's1' is parked while she is away
        gw = h.gateway
        assert gw is not None
        store = gw.store("ALICE")
        assert [t for t, _ in store.unsent()] == [b"8"]
        dead: list[bool] = []
        real_reset, real_pwrite = store.reset, os.pwrite

        def pwrite(fd: int, data: bytes, offset: int) -> int:
            if fd == store._seq_fd and point.startswith("inside") and store.next_out == 1:
                dead.append(True)  # the truncation done, the seqnums not saved
                _kill_stores(gw)
                raise SigkillError("SIGKILL inside MessageStore.reset")
            return real_pwrite(fd, data, offset)

        def reset() -> None:
            real_reset()
            dead.append(True)
            _kill_stores(gw)
            raise SigkillError("SIGKILL after MessageStore.reset")

        monkeypatch.setattr(os, "pwrite", pwrite)
        store.reset = reset  # type: ignore[method-assign]
        back = Client("ALICE")
        await back.connect(port)
        await back.send("A", (98, 0), (108, 30), (141, "Y"), (554, "secret"))
        await settled(lambda: bool(dead))
        assert dead
        await crash(h)
        monkeypatch.undo()
        await back.aclose()
        port = await h.start()
        again = Client("ALICE")
        await again.connect(port)
        await again.logon(reset=True)
        fills = [m for m in await drain(again) if m.get(35) == b"8" and m.get(11) == b"s1"]
        assert [m.get(39) for m in fills] == [b"2"], (
            "the fill of 's1' parked before the reset logon is gone: got MsgTypes "
            f"{[m.get(35) for m in again.received]}"
        )

    run(harness, scenario)


# == found: the ClOrdID digest is written before the order's command =============================


@pytest.mark.parametrize("written", [False, True], ids=["order log unwritten", "order log written"])
def test_an_order_resent_after_a_crash_between_the_clordid_and_order_logs_is_answered(
    harness: Harness, written: bool
) -> None:
    """``publish`` (and ``_before_store_save``) appends the pass's ClOrdID digests to
    ``clordids.log`` first, then writes the order log frame with the commands. A crash in
    between (a full disk at the order log's write, then a kill; or SIGKILL between the two
    ``write`` calls): the restarted gateway knows the ClOrdID as taken, but has no order, no
    command, and never saved the MsgSeqNum of the NewOrderSingle (``before_save`` logs the
    commands first). So it asks for the message again, as it should -- and the client's
    PossDup copy is dropped in silence as "received before" (``OrderEntry._duplicate``): no
    order on the book, no ExecutionReport, no reject. The client waits for its ack for good.

    Fixed: the digests are written after the order log's frame. Killed at that frame, the
    ClOrdID is in neither file and the resend is placed; killed after it, the restart takes
    the ClOrdID from the order the log holds (``_seen_from_orders``), publishes its command,
    and the resend is not placed a second time."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        gw = h.gateway
        assert gw is not None
        dead = kill_at(gw, _commands, written=written)
        first_sent = utc()
        lost_seq = alice.seq
        await alice.send("D", *order("lost", "2", "1.00", "100.00"), sending_time=first_sent)
        await settled(lambda: bool(dead))
        assert dead
        hers = h.users.get("ALICE")
        assert hers is not None
        seen = gw.seen_log.path.read_bytes()
        assert digest(hers.session, b"lost").to_bytes(8, "little") not in seen  # after the log
        await crash(h)
        await alice.aclose()
        port = await h.start()
        alice = await back_on(port, "ALICE", alice.seq)
        ask = await alice.expect("2")
        assert int(ask.get(7)) == lost_seq  # the gateway asks for the NewOrderSingle again
        await alice.send(
            "D", *order("lost", "2", "1.00", "100.00"), seq=lost_seq, poss_dup=True,
            sending_time=utc(), orig_sending_time=first_sent,
        )  # fmt: skip
        await drain(alice)  # the ack may come before the resend (its command sent again)
        answers: list[Any] = [
            m for m in alice.received if m.get(35) == b"8" and m.get(11) == b"lost"
        ]
        if written and not answers:  # acked while she was away: parked, hers to fetch
            now = h.gateway
            assert now is not None
            store = now.store("ALICE")
            answers = [
                raw
                for _, raw in store.outbound(1, store.next_out)
                if b"\x0135=8\x01" in raw and b"\x0111=lost\x01" in raw
            ]
        placed = h.router.sequencer.accounts.open_orders(7)
        assert answers and placed == 1, (
            f"the resent order 'lost' got {len(answers)} ExecutionReports and {placed} "
            "orders on the book: it was dropped as a duplicate of a message never acted on"
        )

    run(harness, scenario)


# == found: a compaction's last step taken by the timers with an API amend not logged ==========


def test_an_amend_taken_by_a_timers_compaction_step_and_never_sent_does_not_wait_forever(
    instance: str, tmp_path: Path
) -> None:
    """``OrderLog.begin_compaction``: the live entries may be newer than when the compaction
    began, but "only as far as the log has it when the compaction finishes: a value newer
    than the log would give the renamed file a state the log never had (the gateway takes its
    changes just before each write)". ``_write_log`` steps the compaction right after a write,
    but ``_timers`` steps it too, once a second, between any two callbacks of the loop. A PUT
    /order handler's ``core.amend`` sets ``amend_ref`` on an open API order (an order the
    compaction listed at its start) and leaves its command for ``_publish_soon`` (next pass);
    the timer's step in the same pass writes the order's entry, amend_ref and all, and, as
    its last step, renames the file. A crash before the publish: the restarted gateway holds
    an amend that is in no log frame as a command and never reached the router. It waits for
    its answer for good: every later amend of the order is refused ("an amend ... waits for
    its answer") and ``in_flight`` never falls to 0 (a stop waits its whole grace).

    Fixed: the timers' step (``_idle_compaction_step``) finishes a compaction only when the
    log holds every change; a write's step finishes it otherwise.
    """
    cfg = rest_config(instance, tmp_path)
    h = first_exchange(cfg)

    async def body() -> None:
        gw, placed = await _resting_api_order(h)
        assert gw.api is not None
        oid = int(placed["orderId"])
        core = gw.api.core
        live = core.client_ids[API_ALICE, "rests"]
        session = next(u.session for u in gw.users.users() if u.account == API_ALICE)
        # 1. a compaction begins at a log write (memory and log agree)
        gw.order_log.begin_compaction(gw._live_entries())
        # 2. PUT /order: the handler's part before it waits (its command goes next pass)
        core.amend(API_ALICE, session, live, live.price, live.qty + 100)
        # 3. the timers' step, in the same pass: the last one, it renamed the file (fixed:
        # it does not finish the compaction while a change waits to be logged)
        gw._idle_compaction_step()
        await crash(h)  # before ``_publish_soon``
        await h.start()
        again = h.gateway
        assert again is not None and again.api is not None
        core = again.api.core
        await settled(lambda: not core.amending(oid), 1.0)
        waiting = core.client_ids[API_ALICE, "rests"].amend_ref
        assert not core.amending(oid), (
            f"orderId={oid} waits for an amend (ref {waiting}) that no log frame holds as a "
            "command and the router never got"
        )

    try:
        run_rest(h, body)
    finally:
        h.close()


async def _resting_api_order(h: Harness, settle: bool = True) -> tuple[GatewayServer, Any]:
    """Start ``h``; ALICE places 'rests' over REST (it rests: NEW); ``settle``: until its
    command and its entry are logged. Returns the gateway and the answer."""
    await h.start()
    gw = h.gateway
    assert gw is not None and gw.api is not None
    alice = await client(url_of(h), "ALICE", "alice-pw")
    placed = await alice.call(
        "POST", "/api/v1/order", **LIMIT, price="100.00", quantity="1.00",
        newClientOrderId="rests",
    )  # fmt: skip
    await alice.close()
    assert placed["status"] == "NEW"
    core = gw.api.core
    if settle:
        await settled(lambda: not gw.entry.outgoing and not core._changed and not gw._unpublished)
    return gw, placed


def run_rest(h: Harness, body: Callable[[], Awaitable[None]]) -> None:
    """``body`` (which starts the gateway, and may crash and restart it) within 20 s."""

    async def main() -> None:
        try:
            await asyncio.wait_for(body(), 20)
        finally:
            await close_all()
            await h.stop()

    asyncio.run(main())


def test_checked_an_idle_gateways_timer_still_finishes_a_compaction(
    instance: str, tmp_path: Path
) -> None:
    """The fix above holds a timer's finish back only while a change waits to be logged: a
    gateway with nothing new finishes its compaction from the timers, as before."""
    cfg = rest_config(instance, tmp_path)
    h = first_exchange(cfg)

    async def body() -> None:
        gw, _ = await _resting_api_order(h)
        assert gw._log_is_current()
        gw.order_log.begin_compaction(gw._live_entries())
        gw._idle_compaction_step()
        assert not gw.order_log.compacting

    try:
        run_rest(h, body)
    finally:
        h.close()


# == checked: what holds


def test_checked_a_crash_after_a_batch_frame_that_finished_a_compaction_skips_the_batch(
    harness: Harness,
) -> None:
    """The batch's frame (its reports sent, the cursors in it) is the write whose compaction
    step renames the file; SIGKILL right after the rename, before the cursors' commit. The
    compacted file has the frame among its tail: the restart skips the batch, and the ack
    goes out once."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        gw = h.gateway
        assert gw is not None
        gw.order_log.compact_bytes, gw.order_log.step_entries = 1, 1_000_000
        dead: list[bool] = []
        last: list[Sequence[Kept]] = [()]
        log_write, real_finish = gw.order_log.write, gw.order_log._finish

        def write(entries: Sequence[Kept]) -> None:
            log_write(entries)
            last[0] = entries

        def finish() -> None:
            real_finish()
            if has_cursors(last[0]) and any(
                isinstance(e, tuple) and e[0] == POSITION for e in last[0]
            ):
                dead.append(True)
                _kill_stores(gw)
                raise SigkillError("SIGKILL after the rename, before the commit")

        gw.order_log.write = write  # type: ignore[method-assign]
        gw.order_log._finish = finish  # type: ignore[method-assign]
        await alice.send("D", *order("once", "2", "1.00", "100.00"))
        assert (await alice.expect("8")).get(150) == b"0"
        await settled(lambda: bool(dead))
        assert dead
        await crash(h)
        await alice.aclose()
        port = await h.start()
        alice = await back_on(port, "ALICE", alice.seq)
        again = [m for m in await drain(alice) if m.get(35) == b"8"]
        assert again == [], f"the ack went out again: {again}"
        assert h.router.sequencer.accounts.open_orders(7) == 1

    run(harness, scenario)


def test_checked_a_fill_reported_again_after_a_crash_before_its_batch_frame_keeps_its_exec_id(
    harness: Harness,
) -> None:
    """SIGKILL after a batch's reports went to the socket and before its frame: the restart
    reads the batch again and reports the fill again (parked: ALICE is not back yet), under
    a new MsgSeqNum -- with the same ExecID, so the client can tell it counted it already."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        gw = h.gateway
        assert gw is not None
        await alice.send("D", *order("f1", "1", "1.00", "100.00"))  # a buy that rests
        assert (await alice.expect("8")).get(150) == b"0"
        dead = kill_at(gw, has_cursors, written=False)
        seller = msgspec.structs.replace(taker(8, 100, ref=902), side=2)
        assert isinstance(seller, NewOrder)
        h.funder.publish_batch([seller])
        fill = await alice.expect("8")
        assert fill.get(150) == b"F"
        await settled(lambda: bool(dead))
        assert dead
        await crash(h)
        await alice.aclose()
        port = await h.start()
        alice = await back_on(port, "ALICE", alice.seq)
        ask_from = int(fill.get(34)) + 1
        await alice.send("2", (7, ask_from), (16, 0))
        again = [m for m in await drain(alice) if m.get(35) == b"8" and m.get(11) == b"f1"]
        assert [(m.get(150), m.get(17)) for m in again] == [(b"F", fill.get(17))], (
            f"the fill of 'f1' before the crash had ExecID {fill.get(17)!r}; after it: "
            f"{[(m.get(150), m.get(17)) for m in again]}"
        )

    run(harness, scenario)


def test_refs_stay_above_the_rest_apis_when_the_clock_stepped_back_over_a_restart(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``OrderMemory.restore`` kept new refs above FIX's logged ones only; a REST order's
    ref (restored apart, by the API's core) could be handed out again after a restart with
    the clock stepped back: a new command's answer taken for the old order's."""
    cfg = rest_config(instance, tmp_path)
    h = first_exchange(cfg)

    async def body() -> None:
        gw, _ = await _resting_api_order(h, settle=False)
        assert gw.api is not None
        used = gw.api.core.client_ids[API_ALICE, "rests"].placed
        assert used and not gw.entry.orders  # no FIX order: only the API's holds a ref
        await crash(h)
        monkeypatch.setattr(time, "time_ns", lambda: used - 10**12)  # stepped back
        await h.start()
        assert h.gateway is not None
        assert h.gateway.entry.next_ref() > used

    try:
        run_rest(h, body)
    finally:
        h.close()
