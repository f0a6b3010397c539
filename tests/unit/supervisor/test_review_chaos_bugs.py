"""Bugs a crash-only / chaos review of the whole running pipeline found.

Found with two FIX clients trading steadily against ``ringex run`` (``tests/e2e``) while the
router, matcher, gateway and database writer were SIGKILLed (singly and twice quickly, with
snapshots every 25 commands), SIGSTOPped and made to crash-loop. The router's kills left
acknowledged orders reported Rejected (DUPLICATE_CLIENT_ORDER_ID) and their later fills
unreported; the router log said "matcher m1 lacked 1 journaled commands: sent" at those
restarts. The tests here pin each cause down: a crash injected at the exact point in an
in-process router (the rigs of ``tests/unit/router`` and ``tests/unit/gateway``), and, for
the supervisor, a real instance with a SIGSTOPped router.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config import load_profile
from procs.common.journal import JournalReader
from procs.common.records import NewOrder
from procs.common.run_files import read_status
from procs.common.topology import journal_dir
from procs.common.types import Side
from procs.router.main import RouterShell
from tests.e2e.running import ringex, running_exchange
from tests.unit.gateway.harness import Client, Harness, close_all, settled, utc
from tests.unit.gateway.harness import config as gateway_config
from tests.unit.router.test_router import CODEC, Exchange, fund, order
from tests.unit.router.test_router import config as router_config


class Crash(Exception):  # noqa: N818  (a stand-in for SIGKILL at one instruction)
    """The router dies here: nothing after this point of its step runs."""


def crash_after_journal_append(router: RouterShell, monkeypatch: pytest.MonkeyPatch) -> None:
    """The router's next batch is appended to the journal, then the router dies: before it
    publishes the batch to the matchers and before it commits its gateway rings (the state
    a real SIGKILL left, per the restarted router's "lacked 1 journaled commands: sent")."""
    append = router.journal.append

    def append_then_die(*args: Any, **kwargs: Any) -> None:
        append(*args, **kwargs)
        raise Crash

    monkeypatch.setattr(router.journal, "append", append_then_die)


# -- the router sequences again what it journaled before a crash ------------------------------


@pytest.fixture
def exchange(instance: str, tmp_path: Path) -> Iterator[Exchange]:
    ex = Exchange(router_config(instance, tmp_path))
    yield ex
    ex.stop()


def test_a_router_crash_after_the_journal_write_executes_an_order_twice(
    exchange: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What is wrong: ``RouterShell.step`` (procs/router/main.py, ``step``) appends a batch
    to the journal, publishes it, and only then commits its read position on the gateways'
    rings (``consumer.commit()`` at the end of the step). A router killed in between comes
    back (``recover`` from the journal) and reads the same commands from the gateway ring
    again, and ``Sequencer.submit`` treats them as new. An order that finished meanwhile
    (here: filled in the restarted router's replay) has freed its client order id, so it is
    sequenced a second time under a new order id, and trades again.

    Invariant: nothing acknowledged is lost *and nothing is executed twice*: a crash is
    recovered by journal replay, the same state as without the crash.
    Expected: one NewOrder in the journal for the client's order; the buyer gets 1 lot.
    Actual: two NewOrders with the same (gateway, session, client_ref), the buyer gets 2.
    """
    fund(exchange, 7, usd=10**9, btc=10**6)
    fund(exchange, 8, usd=10**9, btc=10**6)
    exchange.send(1, order(100, 7, Side.SELL, 1000, 2))  # rests: 2 lots at 1000
    btc_before = exchange.router.sequencer.accounts.totals(2)

    crash_after_journal_append(exchange.router, monkeypatch)
    exchange.gateways[1].publish_batch([order(101, 8, Side.BUY, 1000, 1)])  # takes 1 lot
    with pytest.raises(Crash):
        exchange.router.step(timeout_s=0.001)
    monkeypatch.undo()
    exchange.stop()  # the gateway ring's position is not committed: as after SIGKILL
    exchange.start()  # the supervisor's restart: recovery from the journal
    exchange.pump()

    reader = JournalReader(
        journal_dir(exchange.cfg), slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id
    )
    sequenced = [
        command.order_id
        for _seq, image in reader.entries(1)
        if type(command := CODEC.decode_slot(image)) is NewOrder and command.client_ref == 101
    ]
    book = exchange.matcher.matcher.books[1]
    left = [o.leaves for o in book.orders.values() if o.account == 7]
    assert exchange.router.sequencer.accounts.totals(2) == btc_before
    assert len(sequenced) == 1, (
        f"client order 101 (1 lot) sequenced {len(sequenced)} times as order ids {sequenced}; "
        f"the maker's 2 lots now have {left} left"
    )


def test_a_router_crash_after_the_journal_write_rejects_an_acknowledged_order(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What is wrong: the same re-read as above (procs/router/main.py ``step``: the gateway
    rings are committed after the journal write) for an order still live: the restarted
    router publishes the journaled order to the matcher (which accepts it: 150=0 goes to
    the client) and then refuses the re-read copy as DUPLICATE_CLIENT_ORDER_ID. The gateway
    takes that refusal for the live, acknowledged order (procs/gateway/orders.py
    ``_rejected``: any Rejected with the order's client_ref ends it, even after its
    Accepted), reports 150=8/39=8 and forgets it, so its later fills are never reported and
    an OrderStatusRequest says Rejected while the order rests and trades in the book.

    Invariant: an order acked over FIX survives any single process crash and restart; fills
    are reported (each once); no order trades that its owner was told is rejected. In a
    real instance under SIGKILL of the router the client got 150=0 first, then 150=8, then
    nothing more for the order though it filled; here the reject reaches the gateway before
    the matcher's Accepted, so ALICE is told Rejected at once, and the order rests and
    trades (BOB's IOC fills against it) with no report to her at all.
    Expected: ALICE gets 150=0 for the order, then 150=F when BOB takes it.
    Actual: ALICE gets only 150=8 (DUPLICATE_CLIENT_ORDER_ID); BOB gets his fill.
    """
    h = Harness(gateway_config(instance, tmp_path))
    h.add_user("ALICE", "secret", 7)
    h.add_user("BOB", "secret", 8)
    h.fund(7)
    h.fund(8)

    async def main() -> tuple[list[tuple[bytes, bytes, bytes]], list[bytes]]:
        port = await h.start()
        try:
            alice, bob = Client("ALICE"), Client("BOB")
            for c in (alice, bob):
                await c.connect(port)
                await c.logon()
            h.pause()
            crash_after_journal_append(h.router, monkeypatch)
            await alice.send("D", (11, "a1"), (55, "BTC-USD"), (54, "2"), (60, utc()),
                             (38, "1"), (40, "2"), (44, "100.00"), (59, "1"))  # fmt: skip
            await settled(h.router.inputs[0][1].ready)
            with pytest.raises(Crash):
                h.step_pipeline()
            monkeypatch.undo()
            h.router.close()  # SIGKILL: its gateway ring position stays uncommitted
            h.router = RouterShell(h.cfg)  # the supervisor's restart
            h.resume()
            got: list[tuple[bytes, bytes, bytes]] = []
            while (msg := await alice.recv(1.0)) is not None:
                if msg.get(35) == b"8":
                    got.append((msg.get(150), msg.get(39), msg.get(58) or b""))
            await bob.send("D", (11, "b1"), (55, "BTC-USD"), (54, "1"), (60, utc()),
                           (38, "1"), (40, "2"), (44, "100.00"), (59, "3"))  # fmt: skip
            while (msg := await alice.recv(1.0)) is not None:
                if msg.get(35) == b"8":
                    got.append((msg.get(150), msg.get(39), msg.get(58) or b""))
            bobs = [m.get(150) for m in bob.received if m.get(35) == b"8"]
            while (msg := await bob.recv(0.3)) is not None:
                if msg.get(35) == b"8":
                    bobs.append(msg.get(150))
            return got, bobs
        finally:
            await close_all()
            await h.stop()

    try:
        got, bobs = asyncio.run(main())
    finally:
        h.close()
    assert [g[0] for g in got] == [b"0", b"F"], (
        f"ALICE's reports (150, 39, 58): {got}; BOB's (150): {bobs}"
    )


# -- the supervisor does not see a frozen router ----------------------------------------------


@pytest.fixture
def watched(instance: str, tmp_path: Path) -> Iterator[Path]:
    stuck = "[supervisor]\nstuck_after_s = 1.0\nrestart_stuck = true\n"
    with running_exchange(instance, tmp_path, stuck) as profile:
        yield profile


def test_a_frozen_router_with_orders_waiting_is_seen_stuck_and_restarted(watched: Path) -> None:
    """What is wrong: the supervisor judges a process stuck from its consumer line on its
    *ready ring* only (procs/supervisor/main.py ``_look_for_stuck`` / ``_line``), and the
    router's ready ring is the admin command ring (procs/supervisor/plan.py: "it attaches
    the admin ring last"). Client orders wait on the gateways' rings, which no one watches:
    with the router SIGSTOPped and FIX orders piling up unanswered, the admin ring has no
    lag, so the router is "idle", never stuck; ``ringex status`` shows it alive and ready
    with a heartbeat ever older. (A SIGSTOPped matcher, by contrast, is killed and
    restarted within 2 s under the same settings.)

    Invariant: the supervisor watches heartbeats and ring progress; with ``restart_stuck``
    a stuck process is killed and restarted.
    Expected: within ~3 s (stuck_after_s = 1) the router is restarted and the orders acked.
    Actual: after 8 s no restart, no ack; the exchange is frozen with no error logged.
    """
    cfg = load_profile(str(watched))
    ringex(watched, "admin", "add-user", "--username", "F1", "--password", "pw",
           "--deposit", "USD=100000")  # fmt: skip

    def router() -> dict[str, Any]:
        status = read_status(cfg) or {}
        found: dict[str, Any] = next(p for p in status["processes"] if p["name"] == "router")
        return found

    async def scenario() -> tuple[bool, list[bytes]]:
        client = Client("F1")
        await client.connect(cfg.gateways[0].port)
        await client.logon("pw")
        frozen = router()
        os.kill(frozen["pid"], signal.SIGSTOP)
        try:
            for i in range(5):
                await client.send("D", (11, f"o{i}"), (55, "BTC-USD"), (54, "1"), (60, utc()),
                                  (38, "0.01"), (40, "2"), (44, "99.00"), (59, "1"))  # fmt: skip
            deadline = time.monotonic() + 8
            restarted = False
            while time.monotonic() < deadline and not restarted:
                restarted = router()["restarts"] > frozen["restarts"]
                await asyncio.sleep(0.2)
            acks: list[bytes] = []
            while (msg := await client.recv(2.0)) is not None:
                if msg.get(35) == b"8":
                    acks.append(msg.get(150))
            return restarted, acks
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(frozen["pid"], signal.SIGCONT)  # let the fixture's stop proceed
            await client.aclose()

    restarted, acks = asyncio.run(scenario())
    assert restarted and acks == [b"0"] * 5, (
        f"router SIGSTOPped with 5 orders waiting: restarted={restarted}, acks={acks}; "
        f"status {router()}"
    )
