"""Review 29 of the gateway's crash-only restart, its sessions' side: the message stores
(MsgSeqNums, resends), the reports a resend holds behind it, the audit journal and the
ExecIDs across a crash. ``test_review29_restart.py`` holds the order log's side (commands,
compactions, the ClOrdID log) and says what the review was.

The first tests each show a bug (fixed, or marked open with a strict xfail); the last one
pins down what was checked and holds.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from procs.gateway.store import MessageStore
from tests.unit.gateway.harness import Client, Harness, settled
from tests.unit.gateway.test_gateway import cancel, logged_on, order, status_request
from tests.unit.gateway.test_gateway_restart import back_on, crash, drain, run
from tests.unit.gateway.test_review_restart_bugs import taker


async def fill_gaps(client: Client) -> None:
    """Answer the gateway's ResendRequests with a gap fill to the client's next seq."""
    for msg in await drain(client):
        if msg.get(35) == b"2":
            begin = int(msg.get(7))
            await client.send("4", (123, "Y"), (36, client.seq), seq=begin, poss_dup=True)


# -- 2. a report that waits behind a resend is logged as handled before it is stored ---------


def test_a_fill_reported_behind_a_paused_resend_survives_a_crash(harness: Harness) -> None:
    """``GatewayServer.pump`` (server.py:338-354) relies on ``conn.write()`` to put the
    batch's reports in the sessions' stores before ``_write_log`` records the ring positions
    and the cursors are committed ("reports are in the sessions' stores: now the log").
    ``Connection.write`` (connection.py:86-88) flushes the store only when ``take_output``
    returned something. While a ResendRequest's answer is under way and the socket is past
    its high-water mark (a client reading its resend slowly: ``writing_paused``, or the
    transport's buffer full), ``take_output`` returns nothing and a new report goes to
    ``Session._behind`` (session.py ``_emit``): stored in ``MessageStore._pending``,
    not flushed. The log then says the fill's event was handled. A crash now loses the
    report for good: the restart skips the event (never reported again) and the store never
    had it (a ResendRequest cannot return it; its MsgSeqNum is handed to another message).
    ALICE's order shows the fill in a status request, but she is never sent its 150=F.
    Fix: flush every dirty session's store in ``pump`` before ``_write_log`` (or flush in
    ``Connection.write`` whether or not anything went out)."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("s1", "2", "1.00", "100.00"))
        assert (await alice.expect("8")).get(150) == b"0"
        gw = h.gateway
        assert gw is not None
        conn = next(c for c in gw.connections if c.session and c.session.comp_id == "ALICE")
        assert conn.transport is not None
        # the socket's buffer is past its high-water mark (a client slow to read): what asyncio
        # reports for a peer that does not keep up (below MAX_UNSENT_BYTES: not dropped)
        conn.transport.get_write_buffer_size = lambda: 300_000  # type: ignore[method-assign]
        await alice.send("2", (7, 1), (16, 0))  # a ResendRequest: under way, nothing out yet
        await settled(lambda: conn.session is not None and conn.session.resending)
        assert conn.session is not None and conn.session.resending
        h.funder.publish_batch([taker(100)])  # BOB buys her 1.00: s1 filled
        await settled(lambda: not gw.entry.orders)  # the fill handled, logged, committed
        # (before the fix, the fill's report was still in store._pending here: memory only)
        for s in gw.stores.values():  # SIGKILL: nothing more reaches the files
            s.flush = lambda: None  # type: ignore[method-assign]
        await crash(h)
        await alice.aclose()
        port = await h.start()
        alice = await back_on(port, "ALICE", alice.seq)
        await fill_gaps(alice)  # the ResendRequest's own MsgSeqNum was not stored either
        await alice.send("2", (7, 1), (16, 0))
        told = [m for m in await drain(alice) if m.get(35) == b"8" and m.get(11) == b"s1"]
        await alice.send("H", *status_request("s1", "2"))
        status = await alice.expect("8")
        assert status.get(39) == b"2"  # the log knows the order filled...
        fills = [m for m in told if m.get(150) == b"F"]
        assert fills, (
            "...but its fill report (150=F) is nowhere: not in the store, and the event "
            f"is skipped as handled (reports of s1 resent: {[m.get(150) for m in told]})"
        )

    run(harness, scenario)


# -- 3. the store's next MsgSeqNum is behind the messages it holds after a crash ---------------


def test_a_store_reopened_after_a_crash_between_its_two_writes_reuses_no_msgseqnum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``MessageStore.flush`` (store.py:182-189) writes the messages, then the ``seqnums``
    file: two syscalls. A process killed between them leaves messages 4 and 5 in
    ``messages`` with ``seqnums`` still saying next out = 4, and ``__init__``/``_load``
    (store.py:77-94, 96-125) index the file without looking at what it holds: the reopened store
    hands 4 and 5 out again. A ResendRequest from 1 then returns two messages under each of
    those MsgSeqNums (one of them never sent; ``outbound`` reads on past the first 5), and a
    ResendRequest from 4 the other ones: not "exactly the messages sent before". Fix: on
    load, take next out as at least the last stored seq + 1 (a stored message may have been
    sent; a gap the client asks about is filled from the store)."""
    store = MessageStore(tmp_path)
    for seq in (1, 2, 3):
        store.add_outbound(seq, b"first %d" % seq)
    store.flush()
    store.add_outbound(4, b"first 4")
    store.add_outbound(5, b"first 5")
    real_pwrite = os.pwrite

    class Killed(BaseException):
        pass

    def killed(fd: int, data: bytes, offset: int) -> int:
        raise Killed  # SIGKILL after the messages' write, before the seqnums'

    monkeypatch.setattr(os, "pwrite", killed)
    with pytest.raises(Killed):
        store.flush()
    monkeypatch.setattr(os, "pwrite", real_pwrite)
    os.close(store._fd)  # the dead process's handles: nothing more written through them
    os.close(store._seq_fd)
    again = MessageStore(tmp_path)  # the restarted gateway's
    first = again.next_out
    sent = [(seq, b"after %d" % seq) for seq in range(first, first + 3)]
    for seq, raw in sent:  # what the restarted session sends (and the client sees)
        again.add_outbound(seq, raw)
    last = sent[-1][0]
    whole, tail = again.outbound(1, last), again.outbound(first, last)
    again.close()
    assert [s for s, _ in whole] == list(range(1, last + 1)) and whole[-3:] == tail == sent, (
        f"next out was {first} after the reopen; a resend from 1 gives {whole}, "
        f"one from {first} gives {tail}"
    )


# -- 4. an inbound order taken by a session that closed in the same read ----------------------


def test_an_order_followed_by_a_logout_in_one_read_is_not_lost_by_a_crash(
    harness: Harness,
) -> None:
    """Found (review 29), fixed. The sibling of ``test_review5_restart_bugs.test_an_order_
    whose_msgseqnum_was_persisted_is_not_lost_by_a_crash``, whose fix defers the
    connection's write (and so the store's flush) to after ``publish`` logs the commands.
    ``Session._close`` flushes the store itself: a NewOrderSingle and a Logout in one TCP
    read (a script's "send, log out") made the session answer the Logout and close, and the
    store's ``next_in`` counted the order while the order was still only in
    ``entry.outgoing``, until the deferred ``_publish_soon``. A crash in between: no log
    held the order, the session said it was received, the next logon asked for no resend,
    and the order was neither placed nor refused (``connection_lost``, a ResendRequest's
    read of the store and a reset had the same window). Now a store calls the gateway's
    ``before_save`` before it saves its sequence numbers, which logs the commands waiting
    in ``outgoing`` first (``OrderLogging._before_store_save``): here the order is logged
    before ``_publish_soon`` would have run, and placed by the restart."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        gw = h.gateway
        assert gw is not None
        gw._publish_soon = lambda: None  # type: ignore[method-assign]  # dies before it runs
        gw.publish = lambda: None  # type: ignore[method-assign]
        lost_seq = alice.seq
        raw = alice.message("D", *order("lost", "1", "1.00", "90.00")).encode()
        raw += alice.message("5").encode()
        await alice.send_raw(raw)  # one read: the order and the Logout
        await settled(lambda: not gw.live)
        for store in gw.stores.values():  # SIGKILL: nothing more reaches the files
            store.flush = lambda: None  # type: ignore[method-assign]
        await crash(h)
        await alice.aclose()
        port = await h.start()
        alice = await back_on(port, "ALICE", alice.seq)
        asked = [int(m.get(7)) for m in await drain(alice) if m.get(35) == b"2"]
        placed = h.router.sequencer.accounts.open_orders(7)
        assert placed or any(begin <= lost_seq for begin in asked), (
            f"order 'lost' (MsgSeqNum {lost_seq}) was neither placed nor asked for again "
            f"after the restart (ResendRequests from {asked})"
        )

    run(harness, scenario)


# -- 9. the audit journal lagged the wire by up to a second ----------------------------------


def test_a_message_on_the_wire_is_in_the_audit_journal_before_a_crash_can_lose_it(
    harness: Harness,
) -> None:
    """Found (review 29), fixed. The shell flushed the audit journal only in ``pump`` when
    a ring had events and in the 1 s timer: a pass that handled only client input -- a
    Logon, a Heartbeat, an order the gateway refuses itself, any answer written by
    ``after_input`` -- wrote to the socket and left the audit lines in memory for up to a
    second, and a crash then lost them: the journal lacked messages the client did get.
    Now ``Session.take_output`` flushes the journal before it hands the frames to the
    socket (the first take of a pass writes the lines of every session: one ``write``).
    Here: ALICE's order on an unknown symbol is refused at once; once she has the refusal,
    the journal on disk has it and the order (the timer task is stopped, so that its tick
    does not fall inside the few ms this takes)."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        gw = h.gateway
        assert gw is not None
        gw._tasks[1].cancel()  # the timers: no tick inside this test's few milliseconds
        unknown = [(55, "XYZ-USD") if tag == 55 else (tag, v)
                   for tag, v in order("nosuch", "2", "1.00", "100.00")]  # fmt: skip
        await alice.send("D", *unknown)
        reject = await alice.expect("8")
        assert (reject.get(150), reject.get(11)) == (b"8", b"nosuch")
        journal = gw.audit.path.read_bytes()  # what a SIGKILL now leaves
        lines = len(journal.splitlines())
        assert b"11=nosuch" in journal, (
            "the client has the refusal of 'nosuch', the audit journal has neither it nor "
            f"the order ({lines} lines on disk)"
        )

    run(harness, scenario)


# -- 10. counter ExecIDs repeated when the clock stepped back over a restart -----------------


def test_counter_exec_ids_stay_unique_when_the_clock_stepped_back_over_a_restart(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found (review 29), fixed. Reports no event makes (status answers, Restated reports
    after a reconcile, the gateway's own refusals) took a counter that ``OrderEntry``
    started at ``time.time_ns()``, with nothing of it logged or restored, so after a restart
    with the clock stepped back (NTP: the premise under which
    ``test_refs_stay_unique_when_the_clock_stepped_back_over_a_restart`` fixed the client
    refs) it handed out ExecIDs the previous run had used; a client that drops reports by a
    known ExecID would drop, say, the Restated report of the fills a full restart recovered
    from the books. Now the counter's ids are reserved in blocks, each made durable in the
    gateway's ``exec-ids`` file before its first id is used (``exec_ids.py``), and a
    restart starts above the last block reserved: a status answer after the restart has an
    ExecID the one before it did not, whatever the clock says."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("r1", "2", "1.00", "100.00"))
        assert (await alice.expect("8")).get(150) == b"0"
        gw = h.gateway
        assert gw is not None
        started = gw.entry._next_exec  # the counter's start: the wall clock then
        await alice.send("H", *status_request("r1", "2"))
        first = (await alice.expect("8")).get(17)
        await alice.send("5")
        await alice.expect("5")
        await alice.aclose()
        await h.stop()
        monkeypatch.setattr(time, "time_ns", lambda: started)  # stepped back to that instant
        port = await h.start()
        alice = await back_on(port, "ALICE", alice.seq)
        await alice.send("H", *status_request("r1", "2"))
        again = (await alice.expect("8")).get(17)
        assert again != first, f"ExecID {first!r} given twice, before and after the restart"

    run(harness, scenario)


# -- checked: what holds (sessions) ----------------------------------------------------------


def test_checked_a_resend_after_a_crash_returns_what_was_sent_under_the_same_seqs(
    harness: Harness,
) -> None:
    """Crash with reports sent and logged: the restarted session's numbers go on from the
    store (its Logon above every MsgSeqNum she had), and a ResendRequest from 1 returns each
    application message she had, under its MsgSeqNum, with its ExecID, as PossDup."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("s1", "2", "1.00", "100.00"))
        await alice.expect("8")
        h.funder.publish_batch([taker(40)])
        await alice.expect("8")
        await alice.send("F", *cancel("s1", "c1", "2"))
        await alice.expect("8")
        seen = {int(m.get(34)): (m.get(17), m.get(150)) for m in alice.received
                if m.get(35) == b"8"}  # fmt: skip
        last = max(int(m.get(34)) for m in alice.received)
        await crash(h)
        await alice.aclose()
        port = await h.start()
        alice = await back_on(port, "ALICE", alice.seq)
        assert int(alice.received[-1].get(34)) > last  # her Logon: the numbers went on
        await alice.send("2", (7, 1), (16, last))
        resent = {int(m.get(34)): (m.get(17), m.get(150)) for m in await drain(alice)
                  if m.get(35) == b"8" and m.get(43) == b"Y"}  # fmt: skip
        assert resent == seen

    run(harness, scenario)
