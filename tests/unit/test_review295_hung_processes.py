"""Review 295: a process that HANGS (SIGSTOP) instead of dying.

Reviewed: procs/supervisor/stuck_watch.py, shm/health.py, shm/ring.py (``info``),
procs/cli.py (``status``, ``stop``), procs/gateway/session.py (``on_timer``),
procs/gateway/server.py (``_timers``), procs/gateway/connection.py (``check_stalled``),
procs/common/wall_clock.py; README: Liveness, Operate (the stuck watch, ``status --json``),
Stopping.

Rig: a whole instance started as an operator does (``tests/e2e/running.py``:
``run_in_foreground`` and ``running_exchange``, ``ringex admin`` through the CLI), FIX
clients from the gateway harness (``tests/unit/gateway/harness.py``: simplefix, an
independent implementation), real rings and a real beating process for ``Ring.info``. Each
process kind (router, matcher, market data, gateway) is SIGSTOPped in turn in one instance
whose rings hold 64 records (so a stopped consumer fills them within the test) while two
users trade, then SIGCONTed.

Faults found (each fixed; its test says what it was):
1. A heartbeat age below zero. ``Ring.info`` (shm/ring.py:453) reads the monotonic clock
   once, before it reads the consumers' heartbeat words; a consumer that beats in between
   (every live matcher, parked with a 5 ms timeout, does so constantly) is given a negative
   age, which the supervisor rounds into ``status.json`` (stuck_watch.py ``_heartbeat_age``):
   ``ringex status --json`` showed ``"heartbeat_age_s": -0.003`` for a healthy matcher
   here (seen in 5 of 16 samples). README, Operate: ``heartbeat_age_s`` is "since it last
   beat": never negative. Fixed: ``age()`` clamps at 0 (a beat newer than the clock read is
   of age 0), so ``classify`` and the status see a true age.

Sound:
- router, matcher and market data SIGSTOPped with records waiting: logged stuck naming the
  process, the ring and its lag (``restart_stuck`` off: not killed); the producers wait for
  room (nothing overwritten); after SIGCONT every order is answered New then Filled exactly
  once, no invented fill, both users' and the fee account's balances conserved;
  ``status --json`` keeps ``running`` and shows the stopped process's heartbeat age growing
  (seconds), back under a second after SIGCONT.
- a SIGSTOPped gateway: its clients' orders wait in the kernel and are answered once it
  goes on; it is not logged stuck (nothing waits on its rings: README's definition).
- a FIX session through a gateway stall longer than its HeartBtInt, with the gateway's own
  TestRequest answered during the stall: kept, not cut for "no answer to a TestRequest";
  a TestRequest and an order sent during the stall are answered after it, and a Logon
  sent during the stall is accepted.

Leads not shown:
- A hung gateway with clients connected is never seen by the stuck watch (no ring records
  wait for it: its clients' orders sit in the kernel), even with ``restart_stuck``; only
  ``heartbeat_age_s`` shows it. README defines stuck as records waiting, so not a fault.
- With ``restart_stuck = false`` (the default) a hung market-data process fills its
  matcher's output ring and trading stops for every user until an operator acts (seen here
  within 8 orders of 60 at a 64-slot ring). README documents the default as a choice made
  for the router's sync wait; it says nothing of the feed holding trading, which an operator
  may not expect of a "watched, restartable" feed.
- After a stall, the gateway's timer ran before it read its clients' buffered input in one
  run: with a TestRequest open before the stall it cut a client whose answer was in time.
  Shown since: the FIX session's sound test below failed 5 runs of 5 alone (the timer's
  wake came first: uvloop runs due timers before it polls the sockets). Fixed:
  the gateway's timers take one more turn of the loop after their sleep
  (``procs/common/after_reads.py``), so what the client sent meanwhile is read first.
- ``conn.check_stalled`` measures a paused output across the gateway's own stall: a
  gateway stopped for ``STALL_HEARTBEATS`` intervals while a client's output was paused
  may cut a client that reads (not reproduced).
- A SIGSTOPped supervisor leaves ``status.json`` at ``running`` with its last heartbeat ages
  and no restart of a crashing process; ``ringex stop`` then waits its full bound (~100 s)
  and says "still running" (documented; not timed here).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config import load_profile
from procs.common.record_codec import RecordCodec
from procs.common.run_files import read_status
from shm import Ring
from shm.inspect import remove_instance
from tests.e2e.running import ROOT, ringex, run_in_foreground, running_exchange
from tests.free_ports import free_port
from tests.unit.gateway.harness import Client, utc

PAIRS = 20  # crossing pairs sent while one process is stopped (> a 64-slot ring of events)
SELLER, BUYER = 100, 101


def profile_text(instance: str, var: Path) -> str:
    """One matcher, one gateway, market data; 64-slot rings; stuck after 1 s, not restarted
    (the default ``restart_stuck``)."""
    return (
        f'instance = "{instance}"\nvar_dir = "{var}"\n'
        "[ring]\ncapacity = 64\n"
        '[wait]\nstrategy = "blocking"\npark_timeout_s = 0.005\n'
        "[risk]\nfee_account = 1\n"
        f"[marketdata]\nenabled = true\nport = {free_port()}\n[database]\nenabled = false\n"
        f'[[gateways]]\nname = "gw1"\nid = 1\nport = {free_port()}\n'
        "[supervisor]\nmetrics = false\nstuck_after_s = 1.0\nready_timeout_s = 15\n"
    )


@pytest.fixture(scope="module")
def hung_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(profile, supervisor stderr) of a running instance with a funded seller and buyer;
    every process continued and the instance stopped at the end."""
    tmp = tmp_path_factory.mktemp("r295")
    instance = f"t{os.getpid()}r295"
    profile = tmp / "p.toml"
    profile.write_text(profile_text(instance, tmp / "var"))
    err = tmp / "supervisor.stderr"
    proc = run_in_foreground(profile, err)
    cfg = load_profile(str(profile))
    try:
        deadline = time.monotonic() + 60
        while (read_status(cfg) or {}).get("state") != "running":
            assert proc.poll() is None, err.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "not running within 60 s"
            time.sleep(0.1)
        ringex(profile, "admin", "add-user", "--username", "S1", "--password", "pw",
               "--account", str(SELLER), "--deposit", "BTC=100")  # fmt: skip
        ringex(profile, "admin", "add-user", "--username", "B1", "--password", "pw",
               "--account", str(BUYER), "--deposit", "USD=1000000")  # fmt: skip
        yield profile, err
    finally:
        for p in (read_status(cfg) or {}).get("processes", []):
            if p.get("pid"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p["pid"], signal.SIGCONT)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        remove_instance(instance)


def processes(profile: Path) -> dict[str, dict[str, Any]]:
    status = read_status(load_profile(str(profile))) or {}
    return {p["name"]: p for p in status.get("processes", [])}


def holdings(profile: Path, account: int) -> dict[str, float]:
    """An account's free + locked per asset, from the router (``ringex admin balances``)."""
    try:
        said = json.loads(ringex(profile, "admin", "balances", "--account", str(account), "--json"))
    except AssertionError:  # not open yet (the fee account before its first fee)
        return {}
    return {a: float(b["free"]) + float(b["locked"]) for a, b in said["balances"].items()}


def totals(profile: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    for account in (1, SELLER, BUYER):
        for asset, amount in holdings(profile, account).items():
            out[asset] = round(out.get(asset, 0.0) + amount, 6)
    return out


async def take(client: Client, reports: dict[str, list[tuple[str, str]]], wait_s: float) -> None:
    """Read what ``client`` has for ``wait_s``: execution reports into ``reports`` (ClOrdID ->
    [(ExecType, CumQty)]), TestRequests answered."""
    deadline = time.monotonic() + wait_s
    while (left := deadline - time.monotonic()) > 0:
        msg = await client.recv(min(left, 0.1))
        if msg is None:
            continue
        if msg.get(35) == b"8":
            reports.setdefault(msg.get(11).decode(), []).append(
                (msg.get(150).decode(), msg.get(14).decode())
            )
        elif msg.get(35) == b"1":
            await client.send("0", (112, msg.get(112).decode()))


@pytest.mark.parametrize(
    ("process", "ring_name"),
    [
        ("router", "gw1-cmd"),
        ("matcher-m1", "m1-in"),
        ("marketdata", "m1-out"),
        ("gateway-gw1", ""),
    ],
)
def test_sound_a_stopped_process_holds_orders_then_all_are_answered_once(
    hung_rig: tuple[Path, Path], process: str, ring_name: str
) -> None:
    """A process SIGSTOPped for 3 s while a seller and a buyer each send 20 crossing orders:
    logged stuck naming it and the ring (a gateway: nothing waits on its rings), not killed;
    the status says running with its heartbeat age in seconds; after SIGCONT each order New
    then Filled once, no other report, and the balances conserved."""
    profile, err = hung_rig
    cfg = load_profile(str(profile))
    port = cfg.gateways[0].port
    before = processes(profile)
    worth = totals(profile)
    pid = before[process]["pid"]
    tag = process.split("-", maxsplit=1)[0][:3]

    async def scenario() -> tuple[dict[str, list[tuple[str, str]]], list[str], dict[str, Any]]:
        seller, buyer = Client("S1"), Client("B1")
        await seller.connect(port)
        await seller.logon("pw", hb=30, reset=True)
        await buyer.connect(port)
        await buyer.logon("pw", hb=30, reset=True)
        reports: dict[str, list[tuple[str, str]]] = {}
        ids: list[str] = []
        os.kill(pid, signal.SIGSTOP)
        try:
            for i in range(PAIRS):
                for client, side, cl in ((seller, "2", f"{tag}s{i}"), (buyer, "1", f"{tag}b{i}")):
                    order = ((38, "0.01"), (40, "2"), (44, "100.00"), (59, "1"))
                    await client.send(
                        "D", (11, cl), (55, "BTC-USD"), (54, side), (60, utc()), *order
                    )
                    ids.append(cl)
            for _ in range(15):  # ~3 s stopped
                await take(seller, reports, 0.1)
                await take(buyer, reports, 0.1)
            during = processes(profile)
            status = read_status(cfg) or {}
        finally:
            os.kill(pid, signal.SIGCONT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            await take(seller, reports, 0.1)
            await take(buyer, reports, 0.1)
            if all(("F", "0.0100") in reports.get(cl, []) for cl in ids):
                break
        await take(seller, reports, 0.3)  # nothing more may come: a duplicate would
        await take(buyer, reports, 0.3)
        await seller.aclose()
        await buyer.aclose()
        return reports, ids, {"during": during, "state": status.get("state")}

    reports, ids, seen = asyncio.run(scenario())
    wrong = {cl: reports.get(cl) for cl in ids if reports.get(cl) != [("0", "0.0000"),
                                                                      ("F", "0.0100")]}  # fmt: skip
    assert not wrong, f"{len(wrong)} of {len(ids)} orders: {list(wrong.items())[:4]}"
    assert set(reports) == set(ids), set(reports) - set(ids)
    age = seen["during"][process]["heartbeat_age_s"]
    assert seen["state"] == "running" and age is not None and age > 1.5, seen
    after = processes(profile)
    assert after[process]["restarts"] == before[process]["restarts"]  # restart_stuck off
    deadline = time.monotonic() + 5
    while (processes(profile)[process]["heartbeat_age_s"] or 9) >= 1.0:
        assert time.monotonic() < deadline, processes(profile)[process]
        time.sleep(0.1)
    assert totals(profile) == worth
    log = err.read_text(errors="replace")
    if ring_name:
        assert f"{process} looks stuck: " in log and f"wait on {ring_name}" in log, log[-2000:]
    else:
        assert f"{process} looks stuck" not in log, log[-2000:]


def test_sound_a_fix_session_outlives_a_gateway_stall_longer_than_its_heartbeat(
    instance: str, tmp_path: Path
) -> None:
    """HeartBtInt 1 s: the gateway's TestRequest comes, the gateway is SIGSTOPped, the
    client answers it at once and, during a 2.5 s stall, sends a TestRequest and an order,
    while a second client connects and sends its Logon. After SIGCONT: the first session is
    kept, its TestRequest and order answered; the second is logged on."""
    with running_exchange(instance, tmp_path, database=False) as profile:
        cfg = load_profile(str(profile))
        for name in ("C1", "C2"):
            ringex(profile, "admin", "add-user", "--username", name, "--password", "pw",
                   "--deposit", "USD=1000")  # fmt: skip
        gateway = processes(profile)["gateway-gw1"]["pid"]
        port = cfg.gateways[0].port

        async def scenario() -> tuple[list[bytes], list[bytes], bool]:
            c1, c2 = Client("C1"), Client("C2")
            await c1.connect(port)
            await c1.logon("pw", hb=1)
            while (msg := await c1.recv(5)) is not None and msg.get(35) != b"1":
                pass
            assert msg is not None, "no TestRequest from the gateway within 5 s"
            os.kill(gateway, signal.SIGSTOP)
            try:
                await c1.send("0", (112, msg.get(112).decode()))
                await c1.send("1", (112, "PING1"))
                await c1.send("D", (11, "o1"), (55, "BTC-USD"), (54, "1"), (60, utc()),
                              (38, "0.01"), (40, "2"), (44, "90.00"), (59, "1"))  # fmt: skip
                await c2.connect(port)
                await c2.send("A", (98, 0), (108, 30), (554, "pw"))
                await asyncio.sleep(2.5)
            finally:
                os.kill(gateway, signal.SIGCONT)
            got1: list[bytes] = []
            got2: list[bytes] = []
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                if (m := await c1.recv(0.1)) is not None:
                    got1.append(m.get(35) + b":" + (m.get(112) or m.get(150) or b""))
                    if m.get(35) == b"1":
                        await c1.send("0", (112, m.get(112).decode()))
                elif not c1.reader or c1.reader.at_eof():
                    break
                else:
                    await c1.send("0")
                if (m := await c2.recv(0.05)) is not None:
                    got2.append(m.get(35))
            assert c1.reader is not None
            cut = c1.reader.at_eof()
            await c1.aclose()
            await c2.aclose()
            return got1, got2, cut

        got1, got2, cut = asyncio.run(scenario())
        assert not cut, got1
        assert b"0:PING1" in got1 and b"8:0" in got1, got1
        assert b"A" in got2, got2


def test_a_consumer_beating_while_info_is_taken_never_has_a_negative_heartbeat_age(
    instance: str,
) -> None:
    """Scenario: a consumer process beats on its line (as a live matcher parked with a 5 ms
    timeout does) while a supervisor takes ``Ring.info()`` snapshots, for up to 3 s.
    Expected: every ``heartbeat_age_s`` is 0 or more (README, Operate: "since it last
    beat"). Was (fixed): within milliseconds one is negative (-0.001 s and so on); ``status --json``
    shows such values for a healthy matcher (``stuck_watch._heartbeat_age``)."""
    ring = Ring.create(instance, "beats", RecordCodec(), capacity=64, consumers=["c"])
    code = (
        "import sys, time\n"
        "from shm import Ring, wait_strategy\n"
        "from procs.common.record_codec import RecordCodec\n"
        f"c = Ring.attach({instance!r}, 'beats', RecordCodec()).consumer("
        "'c', wait_strategy('blocking'))\n"
        "print('up', flush=True)\n"
        "end = time.monotonic() + 10\n"
        "while time.monotonic() < end:\n"
        "    c.heartbeat()\n"
    )
    beater = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert beater.stdout is not None and beater.stdout.readline().strip() == "up"
        least, looks = 1.0, 0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and least >= 0:
            age = ring.info().consumers[0].heartbeat_age_s
            looks += 1
            if age is not None:
                least = min(least, age)
        assert least >= 0, f"heartbeat_age_s {least} s in {looks} snapshots"
    finally:
        beater.kill()
        beater.wait()
        if beater.stdout is not None:
            beater.stdout.close()
        ring.close()
        ring.unlink()
