"""Review 199: a hostile end-to-end review of a clean stop under load, and the start after it.

Reviewed: the supervisor's stop (``procs/supervisor/main.py``: ``stop``, ``_terminate``,
``_drain``, ``StopAsked``; ``draining.py``), ``ringex stop`` and ``ringex run``
(``procs/cli.py``), the gateway's closing of intake and its Logout (``procs/gateway/server.py``
``_close_intake``, ``shutdown``), the database writer's stop, against README's "Stopping",
Operate's exit statuses and the supervisor row of "The processes".
Rig: a real instance (``tests/e2e/running.py``: ``ringex run`` in the foreground, one gateway,
a 1 s ``stop_grace_s`` and ``drain_timeout_s``, PostgreSQL where a test says) with three FIX
sessions (the harness's ``Client``): a maker whose GTC orders rest both sides, a taker whose
orders cross them, both cancelling and replacing, and one that sends 100-600 orders and their
cancels without reading a report. The flow goes on, unanswered, while the stop is asked
(``ringex stop``; SIGINT to the foreground ``ringex run``, as Ctrl-C; SIGTERM then two
``ringex stop`` at once), until the gateway logs the readers out. Then: every order a client
was told New or filled is journaled for its account; each session got the Logout and a FIN;
no segment, process or PostgreSQL of the instance is left; the stop's exit status and words;
and ``ringex run`` again (``test_review34_crashes.run_again``): each session logs on with its
numbers kept (the gateway's Logon the next number, or a gap of reports parked meanwhile,
resent PossDup), and an OrderStatusRequest of each order it was last told rests answers the
same OrdStatus and LeavesQty; balances conserved; the database equal to a replay of the
journal (``test_kill_under_load``'s helpers). Under 60 s in all.

Faults found:

1. ``procs/cli.py:287-297`` (``_stop``) with ``procs/supervisor/main.py:516-533``
   (``Supervisor.run``/``_run``): "the status is written from the start (``starting``), so
   ``ringex stop`` also stops an instance still starting" holds only once the new supervisor
   has imported, spawned every process and taken the lock (0.26-0.3 s on the 2-core VM, more
   on a loaded host). A ``ringex stop`` in that window reads the last life's status (a dead
   pid), answers "instance ... is not running", exit 0, and the instance comes up behind it:
   a script's ``ringex run &`` ... ``ringex stop`` leaves it running. Fix: have ``ringex
   run`` write ``starting`` with its own pid (it is the supervisor in the foreground, and
   knows its child's pid detached) before anything else, or have ``stop`` look at the holder
   of ``run/supervisor.lock`` and a ``run`` in progress as well as ``status.json``. Was
   (fixed: a stop that finds no live supervisor looks for the instance's starts among the
   host's processes by their command lines, ``procs/common/pending_runs.py``, and stops
   them: "stopped (its start was under way)"). Test:
   ``test_a_stop_as_ringex_run_begins_stops_it``.

Found sound (plain tests): ``ringex stop`` as a flow of new orders, crossing orders, cancels
and replaces goes on, with the database writer SIGSTOPped through the flow and behind at
the stop, and a session not reading 1,200 reports: exit 0, "instance ... stopped", each
reader logged out ("gateway shutting down") and closed, not reset, the silent one too once it
reads; nothing acknowledged lost; the writer wrote the journal to its end before it stopped
(the database equals the replay with no restart); segments, processes and the embedded
PostgreSQL gone; the next run recovers each resting order, replaced ones by their new
ClOrdID, and every session's numbers. Ctrl-C of a foreground run in the middle of the flow:
exit 0, the same. SIGTERM then two ``ringex stop`` at once: the supervisor exits 0 once,
each stop 0 ("stopped" or "not running"). A stop once the status says ``starting`` (and once
the writer is released, as it starts its PostgreSQL): stopped at once ("stop asked while ...
starts"), exit 0, nothing left, the cluster down, and the next start recovers. A matcher
SIGSTOPped with an order in flight to it: ``ringex stop --timeout 2`` says the supervisor
still runs (exit 1), a second ``ringex stop`` waits out the drain and the 20 s grace, the
supervisor logs "matcher-m1 did not stop in 20 s: killed", exit 0, nothing left; the next run
settles the order in flight (journaled, its New report parked and resent) and it rests.

Leads, not shown: the gateway's ``shutdown`` aborts a connection whose output is still
buffered after one loop pass (``server.py:562-568``), so a client further behind than the
kernel's buffers (not reached here with 1,200 reports) loses its Logout and gets a bare
close; its reports stay in its store for a resend, as README's slow-client rule says.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from config import load_profile
from config.schema import RingexConfig
from procs.common.embedded_postgres import EmbeddedPostgres
from procs.common.run_files import read_status
from procs.common.topology import postgres_dir
from procs.core.recovery import recover
from shm.inspect import list_segments
from shm.liveness import process_start
from tests.e2e.running import ROOT, running_exchange
from tests.e2e.test_kill_under_load import (
    DEPOSIT,
    add_user,
    database_equals_replay,
    journaled_orders,
    wait_for_writer,
)
from tests.e2e.test_review34_crashes import run_again
from tests.unit.gateway.harness import Client, utc

#: gw1's table and the supervisor's, appended to ``running_exchange``'s profile: a short
#: grace for answers in flight and a short drain (a hung process is waited on less).
SHORT = "stop_grace_s = 1.0\n[supervisor]\ndrain_timeout_s = 1.0\n"
RESTING = (b"0", b"1")  # OrdStatus of an order on the book: new, partially filled


class Session:
    """One FIX session of the flow: a client that reads everything (unless ``reading`` is
    off) and remembers what it was told, by order id and by ClOrdID."""

    def __init__(self, user: str, account: int, port: int, *, reading: bool = True) -> None:
        self.user, self.account, self.port, self.reading = user, account, port, reading
        self.client = Client(user)
        self.refs = itertools.count(1)
        self.sides: dict[bytes, str] = {}  # ClOrdID -> side
        self.last: dict[int, dict[int, bytes]] = {}  # order id -> its newest report's fields
        self.acked: set[int] = set()  # order ids told New (150=0) or a fill (150=F)
        self.logout: bytes | None = None  # the gateway's Logout text
        self.end = ""  # how the connection ended: "eof" or "reset"
        self.last_in = 0  # the highest MsgSeqNum received
        self.logon_seq = 0  # the MsgSeqNum of the gateway's Logon
        self.reader: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await self.client.connect(self.port)
        logon = await self.client.logon("pw")
        self.logon_seq = int(logon.get(34))
        self.last_in = self.logon_seq
        if self.reading:
            self.reader = asyncio.create_task(self.read())

    async def read(self) -> None:
        """Take every message until the connection ends (EOF or reset)."""
        c = self.client
        assert c.reader is not None
        try:
            while True:
                msg = await c.recv(timeout=1.0)
                if msg is None:
                    if c.reader.at_eof():
                        self.end = "eof"
                        return
                    continue
                self.take(msg)
        except ConnectionResetError:
            self.end = "reset"

    def take(self, msg: Any) -> None:
        self.last_in = max(self.last_in, int(msg.get(34)))
        kind = msg.get(35)
        if kind == b"8" and msg.get(37) not in (None, b"NONE"):
            oid = int(msg.get(37))
            self.last[oid] = {t: msg.get(t) for t in (11, 39, 150, 151, 44, 54)}
            if msg.get(150) in (b"0", b"F"):
                self.acked.add(oid)
        elif kind == b"1" and self.client.writer is not None:  # a TestRequest: heartbeat
            self.client.writer.write(self.client.message("0", (112, msg.get(112))).encode())
        elif kind == b"5":
            self.logout = msg.get(58)

    async def new(self, side: str, qty: str, price: str) -> bytes:
        ref = f"{self.user}n{next(self.refs)}".encode()
        self.sides[ref] = side
        await self.client.send(
            "D", (11, ref), (55, "BTC-USD"), (54, side), (60, utc()), (38, qty), (40, "2"),
            (44, price), (59, "1"),
        )  # fmt: skip
        return ref

    async def cancel(self, orig: bytes) -> None:
        ref = f"{self.user}c{next(self.refs)}".encode()
        await self.client.send(
            "F", (41, orig), (11, ref), (55, "BTC-USD"), (54, self.sides[orig]), (60, utc())
        )

    async def replace(self, orig: bytes, qty: str, price: str) -> bytes:
        ref = f"{self.user}r{next(self.refs)}".encode()
        side = self.sides[ref] = self.sides[orig]
        await self.client.send(
            "G", (41, orig), (11, ref), (55, "BTC-USD"), (54, side), (60, utc()), (38, qty),
            (40, "2"), (44, price), (59, "1"),
        )  # fmt: skip
        return ref

    def resting(self) -> dict[bytes, dict[int, bytes]]:
        """ClOrdID -> newest report of each order this session was last told rests."""
        return {r[11]: r for r in self.last.values() if r[39] in RESTING}

    async def answered(self, count: int, timeout_s: float = 10.0) -> None:
        """Wait until ``count`` orders have a report."""
        deadline = time.monotonic() + timeout_s
        while len(self.last) < count:
            assert time.monotonic() < deadline, f"{self.user}: {len(self.last)} of {count}"
            await asyncio.sleep(0.01)

    async def ended(self, timeout_s: float = 15.0) -> None:
        """Until the gateway ends the connection; a session that did not read reads now."""
        if self.reader is None:
            self.reader = asyncio.create_task(self.read())
        await asyncio.wait_for(self.reader, timeout_s)
        await self.client.aclose()


# -- the flow ---------------------------------------------------------------------------------


async def trade(maker: Session, taker: Session) -> None:
    """Resting orders both sides, trades, cancels and replaces, each answered."""
    sells = [await maker.new("2", "0.0100", f"{101 + k / 100:.2f}") for k in range(12)]
    buys = [await maker.new("1", "0.0100", f"{99 - k / 100:.2f}") for k in range(12)]
    await maker.answered(24)
    for _ in range(6):  # each takes 1.5 sells; the last ones rest as bids at 101.05
        await taker.new("1", "0.0150", "101.05")
    await taker.answered(6)
    for ref in sells[-3:]:
        await maker.cancel(ref)
    for k, ref in enumerate(buys[:4]):
        await maker.replace(ref, "0.0200", f"{99.50 + k / 100:.2f}")
    deadline = time.monotonic() + 10
    while sum(r[150] in (b"4", b"5") for r in maker.last.values()) < 7:
        assert time.monotonic() < deadline, maker.last
        await asyncio.sleep(0.01)


async def slow_burst(slow: Session, orders: int) -> None:
    """``orders`` resting buys, each cancelled, from the session that does not read: its
    reports pile up in the gateway."""
    refs = [await slow.new("1", "0.0100", f"{90 - k % 50 / 100:.2f}") for k in range(orders)]
    for ref in refs:
        await slow.cancel(ref)


async def through_the_stop(maker: Session, taker: Session, stop: asyncio.Future[Any]) -> None:
    """Orders that rest and cross, cancels and replaces, sent without waiting for answers
    until the gateway logs the readers out: the stop comes in the middle of the flow."""
    gone: set[bytes] = set()
    for k in itertools.count():
        if maker.logout or taker.logout or maker.end or taker.end or stop.done():
            return
        try:
            await maker.new("2", "0.0100", f"{101.20 + k % 20 / 100:.2f}")
            await taker.new("1", "0.0100", "101.30")  # takes one of the maker's
            resting = [r for r in maker.resting() if r not in gone]
            if k % 3 == 0 and resting:
                gone.add(resting[0])
                await maker.cancel(resting[0])
            elif k % 3 == 1 and resting:
                gone.add(resting[-1])
                await maker.replace(resting[-1], "0.0200", f"{98.50 - k % 10 / 100:.2f}")
        except OSError:
            return
        await asyncio.sleep(0.01)


# -- the checks -------------------------------------------------------------------------------


def instance_pids(cfg: RingexConfig) -> list[tuple[int, int]]:
    """(pid, start time) of the supervisor and each process, as the status says now."""
    status = read_status(cfg)
    assert status is not None
    listed = [(status["supervisor_pid"], status["supervisor_started"])]
    listed += [(p["pid"], p["started"]) for p in status["processes"] if p["pid"]]
    return listed


def left_running(pids: list[tuple[int, int]]) -> list[int]:
    return [pid for pid, started in pids if process_start(pid) == started]


def nothing_left(cfg: RingexConfig, pids: list[tuple[int, int]]) -> None:
    assert left_running(pids) == [], "processes of the stopped instance still run"
    assert list_segments(cfg.instance) == [], "segments left in /dev/shm"
    if cfg.database.enabled:
        assert not EmbeddedPostgres(postgres_dir(cfg)).running(), "its PostgreSQL still runs"


def stop_cli(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``ringex stop`` on ``profile``: its exit status and what it said."""
    return subprocess.run(
        [sys.executable, "-m", "procs.cli", "stop", "--config", str(profile), *args],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=150,
    )


def logged_out_cleanly(sessions: list[Session]) -> None:
    """Each reading session got the gateway's Logout, then the connection's end (a FIN)."""
    seen = {s.user: (s.logout, s.end) for s in sessions}
    assert seen == {s.user: (b"gateway shutting down", "eof") for s in sessions}


def acknowledged_journaled(cfg: RingexConfig, sessions: list[Session]) -> dict[int, int]:
    journaled = journaled_orders(cfg)
    for s in sessions:
        lost = sorted(oid for oid in s.acked if journaled.get(oid) != s.account)
        assert not lost, f"{s.user}: {len(lost)} of {len(s.acked)} acknowledged not journaled"
    return journaled


def conserved(cfg: RingexConfig, users: int) -> None:
    state = recover(cfg)
    for asset in cfg.assets:
        deposited = users * DEPOSIT.get(asset.name, 0) * 10**asset.decimals
        assert state.sequencer.accounts.totals(asset.id) == deposited, asset.name


async def back_on(s: Session) -> list[str]:
    """Log ``s`` on again (its numbers kept), fetch what was parked for it meanwhile (a
    ResendRequest: the reports of orders a restart settled) and ask the status of each
    order it was then last told rests; returns what differs from what it was told."""
    s.logout, s.end, s.reader = None, "", None
    last_in = s.last_in
    await s.client.connect(s.port)
    logon = await s.client.logon("pw")
    broken = []
    newest = int(logon.get(34))
    if newest <= last_in:
        broken.append(f"{s.user}: Logon MsgSeqNum {newest}, last seen {last_in}")
    if newest > last_in + 1:
        await s.client.send("2", (7, last_in + 1), (16, newest - 1))
        while s.last_in < newest - 1:
            msg = await s.client.recv(timeout=5)
            assert msg is not None, f"{s.user}: resent up to {s.last_in} of {newest - 1}"
            if msg.get(35) == b"8" and msg.get(43) != b"Y":
                broken.append(f"{s.user}: a report in the gap not PossDup: {msg}")
            s.take(msg)
    for ref, report in s.resting().items():
        await s.client.send("H", (11, ref), (55, "BTC-USD"), (54, report[54]))
        got = await s.client.expect("8", timeout=5)
        was = (report[39], Decimal(report[151].decode()))
        now = (got.get(39), Decimal((got.get(151) or b"-1").decode()))
        if got.get(150) != b"I" or now != was:
            broken.append(f"{s.user} {ref!r}: told {was}, status answers {now}")
    await s.client.aclose()
    return broken


def processes(cfg: RingexConfig) -> dict[str, int]:
    status = read_status(cfg)
    assert status is not None
    return {p["name"]: p["pid"] for p in status["processes"]}


@contextmanager
def first_life(
    instance: str, tmp_path: Path, *, database: bool
) -> Iterator[tuple[Path, RingexConfig, dict[str, int]]]:
    """A running exchange with three funded users: (profile, config, user -> account)."""
    with running_exchange(instance, tmp_path, SHORT, database=database) as profile:
        accounts = {u: add_user(profile, u) for u in ("MM", "TK", "SL")}
        yield profile, load_profile(str(profile)), accounts


def sessions(cfg: RingexConfig, accounts: dict[str, int]) -> tuple[Session, Session, Session]:
    port = cfg.gateways[0].port
    return (
        Session("MM", accounts["MM"], port),
        Session("TK", accounts["TK"], port),
        Session("SL", accounts["SL"], port, reading=False),
    )


# -- the tests --------------------------------------------------------------------------------


def test_ringex_stop_right_after_a_burst_with_the_writer_behind(
    instance: str, tmp_path: Path
) -> None:
    """`ringex stop` as a burst is still in flight, the database writer SIGSTOPped through
    the flow (let go as the stop is asked: it is behind) and one session not reading."""
    with first_life(instance, tmp_path, database=True) as (profile, cfg, accounts):
        maker, taker, slow = sessions(cfg, accounts)
        pids = instance_pids(cfg)
        writer = processes(cfg)["dbwriter"]

        async def life() -> subprocess.CompletedProcess[str]:
            for s in (maker, taker, slow):
                await s.open()
            os.kill(writer, signal.SIGSTOP)
            try:
                await trade(maker, taker)
                await slow_burst(slow, 600)
                await asyncio.sleep(0.3)  # (its reports written, or waiting to be)
            finally:
                os.kill(writer, signal.SIGCONT)
            stop = asyncio.ensure_future(asyncio.to_thread(stop_cli, profile))
            await through_the_stop(maker, taker, stop)
            done = await stop
            for s in (maker, taker, slow):
                await s.ended()
            return done

        done = asyncio.run(life())
        assert (done.returncode, done.stdout, done.stderr) == (
            0, f"instance {instance} stopped\n", ""
        )  # fmt: skip
        logged_out_cleanly([maker, taker])
        nothing_left(cfg, pids)
        journaled = acknowledged_journaled(cfg, [maker, taker, slow])
        # the writer, behind at the stop, wrote the journal to its end before it stopped
        cluster = EmbeddedPostgres(postgres_dir(cfg))
        dsn = cluster.start()
        try:
            last = wait_for_writer(cfg, dsn)  # (it is not running: equal now, or never)
            state = recover(cfg)
            assert state.last_seq == last
            database_equals_replay(cfg, dsn, state, journaled)
        finally:
            cluster.stop()
        conserved(cfg, len(accounts))

        with run_again(profile, cfg, pids[0][0]):
            broken = asyncio.run(back_on_all([maker, taker, slow]))
            assert broken == []
            dsn = cluster.dsn
            last = wait_for_writer(cfg, dsn)
        conserved(cfg, len(accounts))


async def back_on_all(all_: list[Session]) -> list[str]:
    return [line for s in all_ for line in await back_on(s)]


def exit_status(pid: int) -> int:
    """Wait for the foreground ``ringex run`` ``pid`` (this process's child) to exit."""
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_ctrl_c_of_a_foreground_run_mid_flow(instance: str, tmp_path: Path) -> None:
    """SIGINT to a foreground ``ringex run`` (Ctrl-C reaches only it: its processes run in
    sessions of their own) in the middle of the flow: exit 0, the readers logged out, every
    acknowledgement journaled, nothing left; the next run recovers each resting order."""
    with first_life(instance, tmp_path, database=False) as (profile, cfg, accounts):
        maker, taker, slow = sessions(cfg, accounts)
        pids = instance_pids(cfg)
        supervisor = pids[0][0]

        def ctrl_c() -> int:
            os.kill(supervisor, signal.SIGINT)
            return exit_status(supervisor)

        async def life() -> int:
            for s in (maker, taker, slow):
                await s.open()
            await trade(maker, taker)
            await slow_burst(slow, 100)
            stop = asyncio.ensure_future(asyncio.to_thread(ctrl_c))
            await through_the_stop(maker, taker, stop)
            code = await stop
            for s in (maker, taker, slow):
                await s.ended()
            return code

        assert asyncio.run(life()) == 0
        said = (tmp_path / "supervisor.stderr").read_text()
        assert f"instance {instance} stopped" in said
        logged_out_cleanly([maker, taker, slow])
        nothing_left(cfg, pids)
        acknowledged_journaled(cfg, [maker, taker, slow])
        conserved(cfg, len(accounts))
        with run_again(profile, cfg, supervisor):
            assert asyncio.run(back_on_all([maker, taker, slow])) == []


def test_sigterm_then_two_ringex_stops_at_once(instance: str, tmp_path: Path) -> None:
    """The stop asked three times: SIGTERM to the supervisor, then two ``ringex stop`` at
    once while it stops. Each answers 0 (stopped, or not running once it is gone); the
    supervisor exits 0, once; the next run recovers."""
    with first_life(instance, tmp_path, database=False) as (profile, cfg, accounts):
        maker, taker, _slow = sessions(cfg, accounts)
        pids = instance_pids(cfg)
        supervisor = pids[0][0]

        async def life() -> tuple[int, list[subprocess.CompletedProcess[str]]]:
            for s in (maker, taker):
                await s.open()
            await trade(maker, taker)
            os.kill(supervisor, signal.SIGTERM)
            exited = asyncio.ensure_future(asyncio.to_thread(exit_status, supervisor))
            done = await asyncio.gather(*(asyncio.to_thread(stop_cli, profile) for _ in "12"))
            code = await exited
            for s in (maker, taker):
                await s.ended()
            return code, done

        code, done = asyncio.run(life())
        assert code == 0
        for d in done:
            assert d.returncode == 0, d.stderr
            assert d.stdout in (
                f"instance {instance} stopped\n",
                f"instance {instance} is not running\n",
            )
        logged_out_cleanly([maker, taker])
        nothing_left(cfg, pids)
        acknowledged_journaled(cfg, [maker, taker])
        with run_again(profile, cfg, supervisor):
            assert asyncio.run(back_on_all([maker, taker])) == []
