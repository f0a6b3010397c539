"""Review 150: crash recovery end to end, with a FIX client that holds the gateway to the
letter of the session layer and a gateway that compacts its order log all the time.

Method: a real instance (``ringex run``: router, matcher, a FIX + REST gateway, market data;
no database) with review 34's two REST traders and two FIX traders of this file's own
(``StrictTrader``): each checks every inbound MsgSeqNum, asks for a resend (2, 16=0) at a
gap, takes a PossDup copy below its expected seq as a copy, and keeps every ExecID it
processed. A ``sitecustomize`` (review 42's hook) makes every gateway compact its order log
past 8 KiB, not 4 MiB (so compactions run all the time), and SIGKILLs a chosen process at a
chosen call (``R150_KILL``: process, class, method, call number, once per test):
deterministic kill points inside a real process under the supervisor (taken out since,
below). Faults: seeded random SIGKILLs of the router, matcher, gateway and market data,
alone and two at once, a second kill while a restart recovers (``R150_SEED`` replays a
seed); the gateway killed in the middle of an order log compaction and while it answers a
ResendRequest for its whole history. After each run every FIX trader logs on again and reads
until quiet; then the checks.

Checks: every acknowledged order journaled, no command twice; per FIX session no MsgSeqNum
gap left open, no message below the expected one without PossDup, no ExecID processed twice;
each order's reported fills (32) sum to what the replay filled, for every journaled order of
the FIX accounts (both sides of each trade reported, none twice); money conserved, no
negative balance; recovery from the snapshots equal to a replay from nothing; the live
router's balances the replay's; the feed's depth the replayed books'.

Sound: every check held in every run made for this review (seeds 1 and 2 of the random
kills with four kills each, then two; the gateway killed at the 2nd step of a compaction; the
gateway killed as the first chunk of a whole-history resend is taken): the FIX numbers go on
across each restart, a gap the dead gateway left is resent or gap-filled, no ExecID comes
twice, every fill of every journaled order reaches its client once, money is conserved, the
snapshots replay to the journal's state and the feed's depth is the books'. (The kill at the
2nd output step of the resend was never reached: one step took the whole answer.)

The chosen-point runs (the gateway killed at a compaction's 2nd step, and in a whole-history
resend: ``R150_KILL`` is the hook) took about 47 s each, most of it the instance's start and
drain, and were left out of the suite for its time after this review ran them (they are in
the commit before the one that took them out); the random kills keep the compactions,
marked ``long`` since (``make test-long``: out of ``make test`` for CI's time).

Faults (each a strict xfail when written): none demonstrated. One run (seed 1, the gateway
and market data killed at once) saw both FIX traders' next Logon refused "unknown
SenderCompID or bad password" (``procs/gateway/logon.py:54``); four reruns of the seed and
a loop of eight such kills with immediate logons did not repeat it, and its logs were gone,
so it is not pinned here. A 40 s wait seen after each gateway restart, with helpers'
tests running beside it, was not the clients' progress: rerun quiet, 20 more
acknowledgements each came within 12 s.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from config import load_profile
from config.schema import RingexConfig
from procs.common.topology import journal_dir
from tests.e2e import test_kill_under_load as k8
from tests.e2e import test_review34_crashes as r34
from tests.e2e.running import running_exchange
from tests.unit.gateway.harness import OPEN, Client

LOT = Decimal("0.0001")  # BTC-USD's qty_decimals = 4

#: ``sitecustomize`` of every process of the instance: the gateway compacts its order log
#: past 8 KiB (the review's ``R150_KILL`` kill points were taken out with their tests).
SITE = """
import os
_dir = os.environ.get("R150_DIR", "")
try:
    with open("/proc/self/cmdline", "rb") as _f:
        _cmd = _f.read().decode(errors="replace")
except OSError:
    _cmd = ""
if _dir and "procs.gateway.main" in _cmd:
    from procs.gateway import order_log as _ol
    _ol.OrderLog.wants_compaction = property(
        lambda self: not self.compacting and self.size > max(8192, 2 * self.compacted_size))
"""


def seq_of(msg: Any) -> int:
    return int(msg.get(34))


class StrictTrader(k8.FixTrader):
    """Review 8's FIX trader, keeping the inbound numbers and every report it processed."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.client = PatientClient(self.user)
        self.expected = 1  # the next inbound MsgSeqNum (the session outlives connections)
        self.asked = 0  # the expected seq a ResendRequest was sent at, this connection
        self.exec_ids: dict[bytes, tuple[bytes, int]] = {}
        self.filled: dict[int, int] = defaultdict(int)  # order -> lots reported filled
        self.wrong: list[str] = []

    async def run(self) -> None:
        while not self.load.stopping:
            try:
                await self.client.connect(self.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            try:
                if await self.log_on():
                    await self.trade()
            except OSError:
                pass
            finally:
                await self.disconnect()
            self.open.clear()
            self.pending.clear()

    async def log_on(self) -> bool:
        self.asked = 0
        try:
            msg = await self.client.logon("pw")
        except AssertionError:  # the gateway died under the logon: connect again
            reader = self.client.reader
            if reader is None or not reader.at_eof():
                raise
            return False
        self.logons += 1
        await self.sequenced(msg)
        return True

    async def disconnect(self) -> None:
        await self.client.aclose()
        while self.client in OPEN:
            OPEN.remove(self.client)

    async def sequenced(self, msg: Any) -> bool:
        """Whether ``msg`` is the next in sequence, to be processed; a gap asks a resend."""
        kind, seq = msg.get(35), seq_of(msg)
        if kind == b"4" and msg.get(123) != b"Y":  # SequenceReset-Reset
            self.expected = int(msg.get(36))
            return False
        if seq < self.expected:
            if msg.get(43) != b"Y":
                self.wrong.append(f"{self.user}: {kind!r} {seq} below {self.expected}, no 43=Y")
            return False
        if seq > self.expected:
            if self.asked != self.expected:
                self.asked = self.expected
                await self.client.send("2", (7, self.expected), (16, 0))
            return False
        self.expected = int(msg.get(36)) if kind == b"4" else seq + 1
        return kind not in (b"4", b"A")

    async def take(self, msg: Any) -> bool:
        """``FixTrader.take`` of a message in sequence (``read`` takes what comes)."""
        return not await self.sequenced(msg) or await super().take(msg)

    def orig_sending_time(self, resend_request: Any) -> Any:
        return resend_request.get(52)

    def report(self, msg: Any) -> None:
        exec_id, exec_type, oid = msg.get(17), msg.get(150), msg.get(37)
        if exec_id in self.exec_ids:
            self.wrong.append(f"{self.user}: ExecID {exec_id!r} processed twice: {msg}")
        lots = int(Decimal(msg.get(32).decode()) / LOT) if exec_type == b"F" else 0
        self.exec_ids[exec_id] = (exec_type, lots)
        if exec_type == b"F":
            self.filled[int(oid)] += lots
        try:
            super().report(msg)
        except AssertionError as exc:  # Load.ack: the order id acknowledged twice
            self.wrong.append(f"{self.user}: {exc}")

    async def drain(self, quiet_s: float = 1.5) -> None:
        """Log on once more, with the numbers going on, and process all that comes."""
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline, f"{self.user}: no logon for the drain"
            try:
                await self.client.connect(self.port)
                if await self.log_on():
                    break
            except OSError:
                pass
            await self.disconnect()
            await asyncio.sleep(0.2)
        try:
            while (msg := await self.client.recv(quiet_s)) is not None:
                await self.take(msg)
            if self.asked == self.expected:
                self.wrong.append(f"{self.user}: the resend from {self.expected} never came")
        finally:
            await self.disconnect()


class PatientClient(Client):
    """A logon answered within 10 s, not 2: a gateway on a 2-core host busy recovering."""

    async def expect(self, msg_type: str, timeout: float = 10.0) -> Any:
        return await super().expect(msg_type, timeout)


# -- the instance -----------------------------------------------------------------------------


@dataclass
class Rig:
    profile: Path
    cfg: RingexConfig
    accounts: dict[str, int]
    traffic: r34.Traffic
    done: list[str] = field(default_factory=list)

    @property
    def fix(self) -> list[StrictTrader]:
        return [t for t in self.traffic.fix if isinstance(t, StrictTrader)]


@contextmanager
def rig(instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(SITE)
    (tmp_path / "marks").mkdir()
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "site"))
    monkeypatch.setenv("R150_DIR", str(tmp_path / "marks"))
    extra = (
        r34.rest_section()
        + "[journal]\nsnapshot_every = 200\n[supervisor]\nrestart_limit = 100\n"
        + '[[matchers]]\nname = "m1"\nsymbols = ["BTC-USD", "ETH-USD"]\nsnapshot_every = 150\n'
    )
    with running_exchange(instance, tmp_path, extra, marketdata=True, database=False) as prof:
        accounts = {u: k8.add_user(prof, u) for u in r34.USERS}
        cfg = load_profile(str(prof))
        traffic = r34.Traffic(cfg, accounts)
        port = cfg.gateways[0].port
        traffic.fix = [StrictTrader(traffic.load, u, accounts[u], port) for u in k8.FIX_USERS]
        yield Rig(prof, cfg, accounts, traffic)


# -- checks -----------------------------------------------------------------------------------


def broken_invariants(rg: Rig) -> list[str]:
    """Every check of the module docstring; the list of what broke."""
    cfg, load = rg.cfg, rg.traffic.load
    journaled = r34.acknowledged_are_journaled(cfg, load)
    r34.sequenced_once(cfg)
    _, scratch, trades, broken = r34.recovered_both_ways(cfg)
    accts = scratch.sequencer.accounts
    for asset in cfg.assets:
        want = len(rg.accounts) * k8.DEPOSIT.get(asset.name, 0) * 10**asset.decimals
        if accts.totals(asset.id) != want:
            broken.append(f"{asset.name}: total {accts.totals(asset.id)} != deposits {want}")
    broken += [f"negative balance {b}" for b in accts.state().balances if b[2] < 0 or b[3] < 0]

    filled: dict[int, int] = defaultdict(int)
    for t in trades:
        filled[t.maker_order_id] += t.qty
        filled[t.taker_order_id] += t.qty
    for trader in rg.fix:
        broken += trader.wrong
        mine = {oid for oid, acct in journaled.items() if acct == trader.account}
        unheard = sorted(mine - {o for o, (u, _a) in load.acked.items() if u == trader.user})
        if unheard:
            broken.append(f"{trader.user}: journaled orders never acknowledged: {unheard[:5]}")
        differ = [(o, trader.filled.get(o, 0), filled[o]) for o in sorted(mine)
                  if trader.filled.get(o, 0) != filled[o]]  # fmt: skip
        if differ:
            broken.append(f"{trader.user}: (order, reported, filled) differ: {differ[:5]}")
    broken += r34.live_balances_differ(cfg, rg.accounts, accts.state().balances)
    try:
        asyncio.run(r34.feed_equals_books(cfg, scratch))
    except AssertionError as exc:
        broken.append(f"feed: {exc}")
    return broken


async def finish(rg: Rig) -> None:
    """Stop the clients, let each FIX trader read what is left, then check."""
    await rg.traffic.stop()
    for trader in rg.fix:
        await trader.drain()
    broken = await asyncio.to_thread(broken_invariants, rg)
    assert not broken, f"after {rg.done}: {len(broken)} broken: {broken[:8]}"


def run_faults(rg: Rig, faults: Any) -> None:
    try:
        asyncio.run(faults())
    except Exception as exc:
        exc.add_note(f"faults so far: {rg.done}")
        raise


# -- random kills -----------------------------------------------------------------------------

VICTIMS = ("router", "matcher-m1", "gateway-gw1", "marketdata", "router+gateway-gw1",
           "matcher-m1+gateway-gw1", "router+matcher-m1", "gateway-gw1+marketdata")  # fmt: skip


async def kill_while_recovering(cfg: RingexConfig, name: str, rng: random.Random) -> None:
    """SIGKILL ``name``, then its next life as it reads the journal back or soon after."""
    first = r34.sigkill(cfg, name)
    pid = await r34.new_pid(cfg, name, first[name]["pid"])
    if name in ("router", "matcher-m1") and rng.random() < 0.5:
        await r34.reading_journal(pid, journal_dir(cfg))
    else:
        await asyncio.sleep(rng.uniform(0.05, 0.8))
    os.kill(pid, 9)
    await r34.restarted(cfg, first, times=2)


def seeds() -> list[int]:
    chosen = os.environ.get("R150_SEED")
    return [int(chosen)] if chosen else [1]


@pytest.mark.long  # a minute: make test-long
@pytest.mark.parametrize("seed", seeds())
def test_random_kills_keep_reports_numbers_and_money(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    rng = random.Random(seed)
    with rig(instance, tmp_path, monkeypatch) as rg:
        cfg = rg.cfg

        async def faults() -> None:
            async with rg.traffic.running("before the kills"):
                for k in range(2):
                    await asyncio.sleep(rng.uniform(0.0, 0.6))
                    names = rng.choice(VICTIMS).split("+")
                    await r34.restarted(cfg, r34.sigkill(cfg, *names))
                    rg.done.append("+".join(names))
                    if "marketdata" in names:
                        await k8.listening(cfg.marketdata.port)
                    if k % 2:
                        await rg.traffic.progress(f"after {rg.done}", timeout_s=60)
                name = rng.choice(("router", "matcher-m1", "gateway-gw1"))
                await kill_while_recovering(cfg, name, rng)
                rg.done.append(f"{name} twice, the second as it recovers")
                await rg.traffic.progress(f"after {rg.done}", timeout_s=60)
                await finish(rg)

        run_faults(rg, faults)


# -- kills at chosen points -------------------------------------------------------------------
