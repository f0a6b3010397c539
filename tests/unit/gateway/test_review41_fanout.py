"""Review 41 (hostile): event fan-out across several gateways, and a gateway's restart
bookkeeping once a pass reads up to ``EVENTS_PER_PASS`` (4096) events a ring.

A read that ends inside one command's events is what a 4096-event pass makes whenever a
gateway lags (every gateway reads every matcher event, so under load they all do). Here the
pass is scaled down (``EVENTS_PER_PASS`` = 2, the same code path) and the process "dies"
after the pass that cut a command (its ring reads nothing more, then ``crash``).

Found, and fixed in the same change (each test failed without its fix):

- A full restart (new rings) after such a cut loses the rest of that command's events when
  the matcher restarts from a snapshot at exactly that seq (its clean stop writes one at its
  last seq; ``snapshot_every`` after a batch): ``_after_new_rings`` makes events again only
  when the replay mark is *past* the handled seq, and ``events_after`` finds none of that
  seq in the new ring. Fills or cancels (a sweep, a mass cancel through another gateway)
  are never reported and the orders stay open in the gateway. Fixed: the rest of that
  seq's events are made again when the mark is at it with only a part handled.
- A start on new rings skips events up to the logged handled seq even where that is past
  the journal's end (an async standby promoted with order logs shipped ahead of its
  journal): the commands the promoted router sequences anew there are never reported.
  Fixed: a start on new rings takes a ring's handled seq at most to the journal's end.
- ``_lost_commands`` reads the journal from the oldest handled seq of *all* matcher rings:
  one quiet matcher (handled 0, or its last event long ago) puts the read past
  ``CATCH_UP_LIMIT`` (or into archived segments), and a command the old ring took along
  unread is "not sent again": its order stays pending new for good. Fixed: an order command's
  look-up starts from its own matcher's handled seq; mass cancels, whose verdict comes on
  the reply ring, are looked up apart, still from the oldest of all (one the journal cannot
  tell of is refused, for its client to send again), so they no longer hold orders back.

Holds (plain tests): a plain crash and restart over the same rings after a cut read reports
each fill or cancel exactly once; fills that another gateway's client makes on a gateway's
orders while that gateway is down are reported to both sides once.
"""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from config.edges import GatewayConfig
from config.schema import MatcherConfig, RingConfig, RingexConfig, SymbolConfig
from procs.common.records import NewOrder, OrderDone, Record, Trade
from procs.common.types import OrdType, Side, StpMode, TimeInForce
from procs.gateway import recovery as recovery_module
from procs.gateway import server as server_module
from procs.gateway.server import GatewayServer
from procs.matcher.main import MatcherShell
from shm.inspect import remove_instance
from tests.unit.gateway.harness import FUNDER, Client, Harness, close_all, config, settled
from tests.unit.gateway.test_gateway import logged_on, order, status_request
from tests.unit.gateway.test_gateway_restart import back_on, crash, drain

#: A scaled-down pass: every read of two events or more ends inside some command's events.
SMALL_PASS = 2
ALICE, BOB = 7, 8


def two_gateways(instance: str, tmp_path: Path) -> Harness:
    """The harness's exchange with gw1 (the harness's) and gw2, FIX only: ALICE (account 7)
    trades at gw1, ALICE2 (account 7 too) at gw2, BOB (account 8) at gw2."""
    cfg = config(instance, tmp_path)
    gws = [cfg.gateways[0], GatewayConfig(name="gw2", id=2, port=0)]
    cfg = msgspec.structs.replace(cfg, gateways=gws)
    h = Harness(cfg)
    h.add_user("ALICE", "secret", ALICE)
    h.add_user("ALICE2", "secret", ALICE)
    h.add_user("BOB", "secret", BOB)
    h.fund(ALICE)
    h.fund(BOB)
    return h


def cut_after(gw: GatewayServer, ring: int, cut: Callable[[list[Record]], bool]) -> None:
    """From the first read of ``gw.inputs[ring]`` whose events satisfy ``cut`` on, that ring
    reads nothing: the process dies right after the pass (its batch logged, committed)."""
    consumer = gw.inputs[ring]
    real = consumer.read
    dead = False

    def read(max_batch: int = 256) -> list[Record]:
        nonlocal dead
        if dead:
            return []
        events = real(max_batch)
        dead = cut(events)
        return events

    consumer.read = read  # type: ignore[method-assign]


def mass_cancelled(events: list[Record]) -> bool:
    return any(isinstance(e, OrderDone) for e in events)


def traded(events: list[Record]) -> bool:
    return any(isinstance(e, Trade) for e in events)


def sweep(qty: int, ref: int) -> NewOrder:
    """BOB buys ``qty`` lots at up to 100.00, IOC, through the funder's ring."""
    return NewOrder(
        *(0, 0, FUNDER, 1, ref, BOB, 1, 0), side=Side.BUY, ord_type=OrdType.LIMIT,
        tif=TimeInForce.IOC, flags=0, stp=StpMode.NONE, price=10_000, qty=qty, stop_price=0,
        display_qty=0,
    )  # fmt: skip


def reports(messages: list[Any], exec_type: bytes) -> list[tuple[bytes, bytes]]:
    """(ClOrdID, ExecID) of the ExecutionReports of ``exec_type`` among ``messages``."""
    return [
        (m.get(11), m.get(17)) for m in messages if m.get(35) == b"8" and m.get(150) == exec_type
    ]


async def everything(client: Client) -> list[Any]:
    """All the session's messages, from its first: a ResendRequest 1..infinity, drained."""
    await client.send("2", (7, 1), (16, 0))
    return await drain(client)


async def rest_four(alice: Client) -> list[str]:
    """ALICE places four resting sells of 1.00 at 100.00; their ClOrdIDs."""
    ids = [f"s{k}" for k in range(4)]
    for cl in ids:
        await alice.send("D", *order(cl, "2", "1.00", "100.00"))
    assert [(await alice.expect("8")).get(150) for _ in ids] == [b"0"] * 4
    return ids


async def mass_cancel_at_gw2(gw2: GatewayServer) -> None:
    """ALICE2 (ALICE's account, at gw2) cancels every order of the account: gw1's too."""
    alice2 = await logged_on(gw2.port, "ALICE2")
    await alice2.send("q", (11, "mc1"), (530, "7"), (60, "20260101-00:00:00"))
    report = await alice2.expect("r")
    assert report.get(531) == b"7", report


def run_loop(body: Callable[[], Awaitable[None]], limit_s: float = 20.0) -> None:
    async def main() -> None:
        try:
            await asyncio.wait_for(body(), limit_s)
        finally:
            await close_all()

    asyncio.run(main())


# == found: a full restart over a snapshot at the cut seq loses the rest of its events ==========


async def cut_pass(
    harness: Harness, gw1: GatewayServer, gw2: GatewayServer, sweeping: bool
) -> None:
    """gw1's next pass ends inside one command's events: a sweep of ALICE's four orders by
    another account, or a mass cancel of them through gw2."""
    cut_after(gw1, 1, traded if sweeping else mass_cancelled)
    if sweeping:
        harness.funder.publish_batch([sweep(400, 99)])
    else:
        await mass_cancel_at_gw2(gw2)


@pytest.mark.parametrize("command", ["sweep by another account", "mass cancel through gw2"])
def test_a_full_restart_over_a_snapshot_at_the_cut_seq_loses_no_report(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    """gw1's pass ends inside one command's events (a sweep filling ALICE's four sells, or
    ALICE2's mass cancel through gw2 cancelling them), and gw1 dies after that pass; the
    matcher's snapshot is at that very seq (its clean stop writes one at its last seq, as
    ``snapshot_every`` does after a batch), then the whole exchange restarts (new rings). The
    new ring starts with the replay mark of that seq: ``first.counter > handled`` is false,
    so nothing is made again, and ``events_after(events, seq, part)`` finds none of that
    seq's events in the ring. The rest of the orders are never reported done: ALICE's
    session hears of some fills or cancels, the others stay open in the gateway for good."""
    monkeypatch.setattr(server_module, "EVENTS_PER_PASS", SMALL_PASS)
    first = two_gateways(instance, tmp_path)
    cfg = first.cfg
    sweeping = command.startswith("sweep")
    exec_type = b"F" if sweeping else b"4"
    seq = 1
    ids: list[str] = []

    async def place() -> None:
        nonlocal seq, ids
        port = await first.start()
        gw1 = first.gateway
        assert gw1 is not None
        gw2 = GatewayServer(cfg, "gw2")
        await gw2.start()
        try:
            alice = await logged_on(port)
            ids = await rest_four(alice)
            await cut_pass(first, gw1, gw2, sweeping)
            told = [await alice.expect("8")]
            await asyncio.sleep(0.1)  # the pass's batch is logged and committed
            told += await drain(alice)
            assert 0 < len(reports(told, exec_type)) < 4  # the read ended inside them
            seq = alice.seq
            await crash(first)
        finally:
            await gw2.shutdown(grace_s=0.1)

    run_loop(place)
    first.matcher.save_snapshot()  # at its last seq, the cut one: as a clean stop does
    first.close()
    remove_instance(instance)  # the whole exchange restarts: new rings
    again = Harness(cfg)

    async def check() -> None:
        port = await again.start()
        try:
            alice = await back_on(port, "ALICE", seq)
            told = reports(await everything(alice), exec_type)
            assert sorted({cl.decode() for cl, _ in told}) == ids, told
            gw = again.gateway
            assert gw is not None
            assert not gw.entry.live, "orders left open that the exchange has finished"
        finally:
            await again.stop()

    try:
        run_loop(check)
    finally:
        again.close()


# == holds: a plain restart over the same rings after a cut read =================================


@pytest.mark.parametrize("command", ["sweep by another account", "mass cancel through gw2"])
def test_a_plain_restart_after_a_cut_read_reports_each_event_once(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    """As above, but only gw1's process restarts (same rings): it resumes at the cursor its
    order log holds, and each fill or cancel reaches ALICE exactly once (one ExecID each)."""
    monkeypatch.setattr(server_module, "EVENTS_PER_PASS", SMALL_PASS)
    h = two_gateways(instance, tmp_path)
    sweeping = command.startswith("sweep")
    exec_type = b"F" if sweeping else b"4"

    async def body() -> None:
        port = await h.start()
        gw1 = h.gateway
        assert gw1 is not None
        gw2 = GatewayServer(h.cfg, "gw2")
        await gw2.start()
        try:
            alice = await logged_on(port)
            ids = await rest_four(alice)
            await cut_pass(h, gw1, gw2, sweeping)
            await alice.expect("8")
            await asyncio.sleep(0.1)
            seq = alice.seq
            await crash(h)
            await alice.aclose()
            port = await h.start()
            alice = await back_on(port, "ALICE", seq)
            told = reports(await everything(alice), exec_type)
            assert sorted({cl.decode() for cl, _ in told}) == ids, told
            assert not [e for e, n in Counter(e for _, e in told).items() if n > 1], told
            gw = h.gateway
            assert gw is not None
            assert not gw.entry.live
        finally:
            await gw2.shutdown(grace_s=0.1)
            await h.stop()

    try:
        run_loop(body)
    finally:
        h.close()


# == found: an order log ahead of the journal (async failover) skips the new commands' events ==


def test_an_order_log_ahead_of_the_journal_does_not_hide_orders_placed_after_a_failover(
    instance: str, tmp_path: Path
) -> None:
    """Async replication: the router never waits for the standby, and the source ships the
    gateways' order logs as they are when it ships a frame, so a log can name a handled seq
    past the last frame the standby got (here: the journal is copied aside, as the standby
    holds it, then BOB fills ALICE's order and gw1 logs that seq as handled). Promoted, the
    router sequences new commands from the journal's end, but gw1 starts on new rings with
    ``handled`` past it and ``events_after`` skips every event up to that seq: ALICE's first
    order after the failover is accepted by the matcher and never acknowledged (nor would its
    fills be reported) until the seqs pass the old handled one."""
    first = Harness(config(instance, tmp_path))
    cfg = first.cfg
    first.add_user("ALICE", "secret", ALICE)
    first.fund(ALICE)
    first.fund(BOB)
    journal = Path(cfg.var_dir) / cfg.instance / "journal"
    standby = tmp_path / "standby-journal"
    seq = 1

    async def primary() -> None:
        nonlocal seq
        port = await first.start()
        alice = await logged_on(port)
        await alice.send("D", *order("s1", "2", "1.00", "100.00"))
        assert (await alice.expect("8")).get(150) == b"0"
        shutil.copytree(journal, standby)  # what the standby holds when the primary dies
        for ref in range(90, 95):
            first.funder.publish_batch([sweep(10, ref)])
            assert (await alice.expect("8")).get(150) == b"F"
        await asyncio.sleep(0.1)  # the batches are in the order log (shipped as it is now)
        seq = alice.seq
        await crash(first)

    run_loop(primary)
    first.close()
    remove_instance(instance)
    shutil.rmtree(journal)
    shutil.copytree(standby, journal)  # promoted: the standby's journal, the primary's logs
    again = Harness(cfg)

    async def promoted() -> None:
        port = await again.start()
        try:
            alice = await back_on(port, "ALICE", seq)
            await alice.send("D", *order("after", "2", "1.00", "101.00"))
            got = [m for m in await drain(alice) if m.get(35) == b"8"]
            assert (b"after", b"0") in [(m.get(11), m.get(150)) for m in got], got
        finally:
            await again.stop()

    try:
        run_loop(promoted)
    finally:
        again.close()


# == found: a quiet matcher makes a full restart give up on commands the old ring took along ====


class TwoMatchers(Harness):
    """The harness with a second matcher, m2 (ETH-USD), stepped with the first."""

    def __init__(self, cfg: RingexConfig) -> None:
        super().__init__(cfg)
        self.m2 = MatcherShell(cfg, "m2")

    def step_pipeline(self) -> int:
        done = 0
        while n := self.router.step(timeout_s=0) + self.matcher.step(0) + self.m2.step(0):
            done += n
        self.router.settle()
        return done

    def close(self) -> None:
        super().close()
        self.m2.close()


@pytest.mark.parametrize(
    "matchers",
    [
        "one matcher",
        "two, one quiet",
    ],
)
def test_a_command_the_old_ring_took_along_is_sent_again_with_a_quiet_matcher(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, matchers: str
) -> None:
    """ALICE's second order is logged and published into gw1's ring; the router never takes
    it before the whole exchange restarts (new rings). ``_lost_commands`` must look it up in
    the journal: from ``min(handled of every matcher ring) - 1 - window``. A matcher whose
    symbols saw no event since (a quiet one: its handled seq stays 0, or at its last event
    hours ago) pulls that to the journal's start, past ``CATCH_UP_LIMIT`` (500k entries,
    scaled down here with the rings, so the window is small too), and the command is "not
    sent again": the order stays pending new for good (``in_flight`` never 0). With one
    matcher the look-up reads the window only and sends it again."""
    cfg = config(instance, tmp_path)
    cfg = msgspec.structs.replace(cfg, ring=RingConfig(capacity=64))  # window: 128 entries
    if matchers != "one matcher":
        eth = SymbolConfig(name="ETH-USD", id=2, price_decimals=2, qty_decimals=2, tick=5,
                           base="BTC")  # fmt: skip
        m2 = MatcherConfig(name="m2", symbols=["ETH-USD"], snapshot_every=0)
        cfg = msgspec.structs.replace(
            cfg, symbols=[*cfg.symbols, eth], matchers=[*cfg.matchers, m2]
        )
    monkeypatch.setattr(recovery_module, "CATCH_UP_LIMIT", 150)
    make = Harness if matchers == "one matcher" else TwoMatchers
    first = make(cfg)
    first.add_user("ALICE", "secret", ALICE)
    for account in range(ALICE, ALICE + 60):  # 180 journal entries before ALICE trades
        first.fund(account)
    seq = 1

    async def place() -> None:
        nonlocal seq
        port = await first.start()
        alice = await logged_on(port)
        await alice.send("D", *order("s1", "2", "1.00", "100.00"))
        assert (await alice.expect("8")).get(150) == b"0"
        first.pause()
        await alice.send("D", *order("s2", "2", "1.00", "101.00"))
        gw = first.gateway
        assert gw is not None
        await settled(lambda: gw.producer.sequence > 1 and not gw.entry.outgoing)
        assert gw.producer.sequence == 2 and gw.in_flight() == 1  # published, unanswered
        seq = alice.seq
        await crash(first)

    run_loop(place)
    first.close()
    remove_instance(instance)
    again = make(cfg)

    async def check() -> None:
        port = await again.start()
        try:
            alice = await back_on(port, "ALICE", seq)
            await alice.send("H", *status_request("s2", "2"))
            got = [m for m in await drain(alice) if m.get(35) == b"8"]
            assert (b"s2", b"0") in [(m.get(11), m.get(39)) for m in got], got
        finally:
            await again.stop()

    try:
        run_loop(check)
    finally:
        again.close()


# == holds: fills across gateways while the maker's gateway is down ============================


def test_fills_made_through_another_gateway_while_one_is_down_are_reported_once(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ALICE's four sells rest at gw1; gw1 crashes; BOB at gw2 sweeps them (gw2 reads every
    event two at a time, its own and gw1's); gw1 restarts over the same rings. BOB hears of
    his four fills, ALICE of hers, each exactly once, and neither gateway keeps an order
    open that the exchange has finished."""
    monkeypatch.setattr(server_module, "EVENTS_PER_PASS", SMALL_PASS)
    h = two_gateways(instance, tmp_path)

    async def body() -> None:
        port = await h.start()
        gw2 = GatewayServer(h.cfg, "gw2")
        await gw2.start()
        try:
            alice = await logged_on(port)
            ids = await rest_four(alice)
            seq = alice.seq
            await crash(h)
            await alice.aclose()
            h.resume()  # the router and matcher go on for gw2
            bob = await logged_on(gw2.port, "BOB")
            await bob.send("D", *order("b1", "1", "4.00", "100.00", "2", (59, "3")))
            bob_fills = reports(await drain(bob), b"F")
            assert len(bob_fills) == 4 and len(set(bob_fills)) == 4, bob_fills
            h.pause()
            port = await h.start()
            alice = await back_on(port, "ALICE", seq)
            told = reports(await everything(alice), b"F")
            assert sorted(cl.decode() for cl, _ in told) == ids, told
            gw1 = h.gateway
            assert gw1 is not None
            assert not gw1.entry.live and not gw2.entry.live
        finally:
            await gw2.shutdown(grace_s=0.1)
            await h.stop()

    try:
        run_loop(body)
    finally:
        h.close()
