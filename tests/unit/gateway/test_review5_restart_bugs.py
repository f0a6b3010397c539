"""Bugs a fifth hostile review of the crash/restart path at the gateway-router boundary found
(gateway order log, ClOrdID log, restart; router re-read, held batches). Each test fails
today."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec

from procs.common.records import Balance, WatchBalances
from procs.common.topology import gateway_replies
from procs.common.types import Side
from shm.inspect import remove_instance
from tests.unit.gateway.harness import Client, Harness, close_all, config, utc
from tests.unit.gateway.test_gateway import logged_on, order
from tests.unit.gateway.test_gateway_restart import back_on, crash, drain, run, run_harness
from tests.unit.router.test_router import USD, Exchange, fund
from tests.unit.router.test_router import config as router_config
from tests.unit.router.test_router import order as router_order

# -- a session's inbound MsgSeqNum persisted before its order is logged ------------------------


def test_an_order_whose_msgseqnum_was_persisted_is_not_lost_by_a_crash(harness: Harness) -> None:
    """Kill point: ``GatewayServer.after_input`` writes the session's output (here the
    Heartbeat answering a TestRequest that came in the same TCP read as a NewOrderSingle)
    and so flushes its ``MessageStore`` -- the inbound ``next_in`` now counts the order --
    *before* the deferred ``publish`` (``submit``: ``call_soon(self._publish_soon)``) logs
    the order to ``orders.log`` and puts it in the router ring. A crash in between leaves an
    order that no log holds while the session's stored inbound seq says it was received: at
    the next logon no gap is seen, no ResendRequest is sent, and the order is never placed
    nor rejected. Invariant (brief; FIX session layer): a message whose MsgSeqNum the
    acceptor keeps as received is acted on -- nothing the gateway took is lost silently.

    Expected after the restart: the order reaches the book, or the gateway asks for it again
    (a ResendRequest from its seq). Actual: neither; it is gone.
    """

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        gw = h.gateway
        assert gw is not None
        # the process dies before the deferred publish runs (a write the old code made
        # before it, flushing the store, is what the test catches)
        gw._publish_soon = lambda: None  # type: ignore[method-assign]
        gw.publish = lambda: None  # type: ignore[method-assign]
        lost_seq = alice.seq
        raw = alice.message("D", *order("lost", "1", "1.00", "90.00")).encode()
        raw += alice.message("1", (112, "ping")).encode()
        await alice.send_raw(raw)  # one read: the order and the TestRequest
        await alice.recv(0.3)  # the Heartbeat, where it was written before the publish
        for store in gw.stores.values():  # SIGKILL: nothing more reaches the files
            store.flush = lambda: None  # type: ignore[method-assign]
        await crash(h)
        await alice.aclose()
        port = await h.start()
        alice = await back_on(port, "ALICE", alice.seq)
        asked = []
        while (msg := await alice.recv(0.5)) is not None:
            if msg.get(35) == b"2":
                asked.append(int(msg.get(7)))
        placed = h.router.sequencer.accounts.open_orders(7)
        assert placed or any(begin <= lost_seq for begin in asked), (
            f"order 'lost' (MsgSeqNum {lost_seq}) was neither placed nor asked for again "
            f"after the restart (ResendRequests from {asked})"
        )

    run(harness, scenario)


# -- a full restart sends again a mass cancel the journal holds ---------------------------------


def test_a_journaled_mass_cancel_is_not_executed_twice_after_a_full_restart(
    instance: str, tmp_path: Path
) -> None:
    """The exchange restarts whole (new rings) after the router took ALICE's mass cancel
    (q, journal seq S) and after the gateway handled the matcher's events of a later
    command (her next order s2, seq S+1, acknowledged to her), but before it read q's
    verdict from its reply ring: the verdict and the events come on different rings, so
    the gateway can read the matcher's past the router's. ``GatewayRestart._lost_commands``
    (procs/gateway/restart.py) looks for the unanswered commands in the journal only after
    ``min(handled seq of each matcher) - 1`` (= S), on the premise that an unanswered
    command was journaled after every seq handled from the matchers. For a mass cancel that
    premise is false; q is not found, taken for "taken along unread by the old ring" and
    published again. The second q is a new command (a new seq): it cancels s2, an order
    ALICE placed *after* her mass cancel and was told is New.

    Invariant (brief; issue 4/5): a command is never decided twice; a restart reaches the
    state of a run without it. Expected: q answered once (accepted: the journal holds it),
    s1 cancelled, s2 still live. Actual: q executed again, s2 cancelled.
    """

    cfg = config(instance, tmp_path)
    first = Harness(cfg)
    first.add_user("ALICE", "secret", 7)
    first.fund(7)
    seq = 1

    async def place() -> None:
        nonlocal seq
        port = await first.start()
        alice = await logged_on(port)
        await alice.send("D", *order("s1", "2", "1.00", "100.00"))
        assert (await alice.expect("8")).get(150) == b"0"
        gw = first.gateway
        assert gw is not None
        replies = next(c for c in gw.inputs if c.ring.name == gateway_replies(1))
        replies.read = lambda max_batch=256: []  # type: ignore[method-assign]  # not read yet
        await alice.send("q", (11, "mc"), (530, "7"), (60, utc()))
        cancelled = await alice.expect("8")
        assert (cancelled.get(11), cancelled.get(150)) == (b"s1", b"4")
        await alice.send("D", *order("s2", "2", "1.00", "99.00"))  # after her mass cancel
        new = await alice.expect("8")
        assert (new.get(11), new.get(150)) == (b"s2", b"0")
        assert list(gw.entry.mass_cancels)  # q's verdict unread
        seq = alice.seq
        await crash(first)
        await close_all()

    asyncio.run(place())
    first.close()
    remove_instance(instance)  # the rings go (the whole exchange restarts)

    again = Harness(cfg)

    async def check() -> None:
        port = await again.start()
        alice = Client("ALICE")
        alice.seq = seq
        await alice.connect(port)
        await alice.logon()
        await alice.send("2", (7, 1), (16, 0))
        told = await drain(alice)
        gone = [m.get(11) for m in told if m.get(35) == b"8" and m.get(150) == b"4"]
        verdicts = [(m.get(11), m.get(531)) for m in told if m.get(35) == b"r"]
        live = again.router.sequencer.accounts.open_orders(7)
        assert live == 1 and b"s2" not in gone, (
            f"s2 (placed after the mass cancel) was cancelled after the restart: cancel "
            f"reports {gone}, mass cancel responses {verdicts}, open orders {live}"
        )

    try:
        asyncio.run(run_harness(again, check))
    finally:
        again.close()


# -- fsync "interval": a held batch's balance changes are pushed before it is durable ----------


def test_interval_policy_pushes_no_balance_of_a_held_batch_before_it_is_durable(
    instance: str, tmp_path: Path
) -> None:
    """procs/router/held.py: under ``fsync = "interval"`` a journaled batch is held "and until
    then nothing of it leaves the router (no command to a matcher, so no execution report;
    no reply, no balance push)"; ``RouterShell._queue_balances``: "after the journal write,
    so a gateway never sees a balance that a command not yet durable made". Yet ``step``
    calls ``watches.touch_commands(accepted)`` right after ``journal.append``, before the
    batch is held, and every later ``_flush_replies`` (``_idle_step``, ``_books_behind``,
    the next batch's routing) turns those touches into ``Balance`` pushes with the values
    the held (not fsynced) order reserved. A power loss then erases the order while the
    watcher was told its funds are reserved by it (issue 4: nothing leaves before its
    command is durable under the configured policy).

    Expected: no push of account 8's balances while the order's seq is past
    ``journal.durable_seq``. Actual: a push with the order's reservation.
    """

    base = router_config(instance, tmp_path)
    journal = msgspec.structs.replace(base.journal, fsync="interval", fsync_interval_ms=10_000)
    ex = Exchange(msgspec.structs.replace(base, journal=journal))
    try:
        writer = ex.router.journal
        fund(ex, 8, usd=10**9, btc=0)
        writer.sync()  # the interval's group commit, now
        ex.pump()
        ex.replies_of(1)
        ex.send(1, WatchBalances(0, 0, 1, 1, 500, 8, 60_000))
        snapshot = [r for r in ex.replies_of(1) if isinstance(r, Balance)]
        assert snapshot and all(r.reserved == 0 for r in snapshot)
        ex.send(1, router_order(1, 8, Side.BUY, 900, 10))  # journaled, held: not fsynced
        for _ in range(3):
            ex.router.step(timeout_s=0.001)  # idle steps: nothing is durable yet
        held = writer.next_seq - 1
        assert writer.durable_seq < held
        pushed = [
            (r.asset, r.free, r.reserved)
            for r in ex.replies_of(1)
            if isinstance(r, Balance) and r.account == 8
        ]
        assert not pushed, (
            f"balance pushes {pushed} (USD is asset {USD}) left the router for order seq "
            f"{held} while the journal is durable to seq {writer.durable_seq} only"
        )
    finally:
        ex.stop()


# -- after a full restart the new reply ring's seq-0 replies are dropped -----------------------


def test_a_refusal_after_a_full_restart_reaches_the_client(instance: str, tmp_path: Path) -> None:
    """After the whole exchange restarts (new rings), ``GatewayServer.start`` puts *every*
    input ring in ``_awaiting``, the router's reply ring too, and ``_after_new_rings`` runs
    its records through ``events_after(events, handled, part)`` (procs/gateway/restart.py),
    which keeps only records with ``seq > handled``. A router refusal (``Rejected``: an order
    refused by risk, a mass cancel's verdict) carries seq 0 -- it is never sequenced -- so
    it is dropped, and the ring stays "awaiting" until a reply with a seq past the logged
    one comes, which on a FIX-only gateway (no balance watches) is never. From then on every
    refusal is lost: the client's order stays pending new for ever, no 150=8 reaches it.
    The reply ring carries no matcher events and has no replay mark; nothing of it should be
    skipped by seq (invariant: every client order gets exactly one terminal report).

    Expected: CAROL's order on an account the exchange does not know is rejected (150=8).
    Actual: no answer at all.
    """

    cfg = config(instance, tmp_path)
    first = Harness(cfg)
    first.add_user("ALICE", "secret", 7)
    first.add_user("CAROL", "secret", 9)  # account 9 is never created
    first.fund(7)

    async def place() -> None:
        port = await first.start()
        alice = await logged_on(port)
        await alice.send("D", *order("s1", "2", "1.00", "100.00"))
        assert (await alice.expect("8")).get(150) == b"0"
        await crash(first)
        await close_all()

    asyncio.run(place())
    first.close()
    remove_instance(instance)  # the whole exchange restarts: new rings

    again = Harness(cfg)

    async def check() -> None:
        port = await again.start()
        carol = await logged_on(port, "CAROL")
        await carol.send("D", *order("c1", "1", "1.00", "90.00"))
        report = await carol.recv(2.0)
        while report is not None and report.get(35) == b"0":
            report = await carol.recv(2.0)
        got = None if report is None else (report.get(35), report.get(11), report.get(150))
        assert got == (b"8", b"c1", b"8"), (
            f"CAROL's order on an unknown account: expected a reject (35=8, 150=8), got {got}"
        )

    try:
        asyncio.run(run_harness(again, check))
    finally:
        again.close()
