"""Review 218: processes that hang (SIGSTOP), not die, and what the supervisor makes of it.

The supervisor looks once a second at each process's consumer lines (``stuck_watch.py``):
records waiting, no progress and no heartbeat for ``stuck_after_s`` is stuck, logged, and
with ``restart_stuck`` killed and restarted. Review 50's router fix added the router's
other lines (``ProcessSpec.watched``); the lines of a gateway and of market data on the
matchers' output rings were not looked at (fixed: tests beginning "Was (fixed)"), yet each
gates its matcher's output: a
gateway frozen with events unread fills that ring, the matcher waits for room, the router
stops taking orders from every gateway. Tests here pin that, in a supervisor over real rings
and SIGSTOPped stand-ins (the rig of ``test_stuck.py``), and in a whole ``ringex run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
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
from procs.common.records import Heartbeat
from procs.common.run_files import read_status
from procs.supervisor.main import Child, Supervisor
from shm import header as h
from shm.inspect import list_segments, remove_instance
from shm.liveness import process_start
from tests.e2e.running import ROOT, ringex, run_in_foreground, running_exchange
from tests.free_ports import free_port
from tests.unit.gateway.harness import Client, utc


def profile_text(instance: str, var: Path, extra: str = "") -> str:
    """Two matchers (one symbol each), one gateway, market data; nothing listens here."""
    return (
        f'instance = "{instance}"\nvar_dir = "{var}"\n'
        "[ring]\ncapacity = 64\n"
        '[wait]\nstrategy = "blocking"\npark_timeout_s = 0.01\n'
        "[risk]\nfee_account = 1\n"
        '[[matchers]]\nname = "m1"\nsymbols = ["BTC-USD"]\n'
        '[[matchers]]\nname = "m2"\nsymbols = ["ETH-USD"]\n'
        '[[gateways]]\nname = "gw1"\nid = 1\nport = 0\n'
        "[marketdata]\nenabled = true\nport = 0\n"
        "[database]\nenabled = false\n"
        f"[supervisor]\nmetrics = false\nstuck_after_s = 0.5\nrestart_stuck = true\n{extra}"
    )


@pytest.fixture
def supervisor(instance: str, tmp_path: Path) -> Iterator[Supervisor]:
    """The real plan's processes, their rings made; no process started (tests start
    stand-ins); every stand-in killed and the rings removed at the end."""
    profile = tmp_path / "p.toml"
    profile.write_text(profile_text(instance, tmp_path / "var"))
    sup = Supervisor(load_profile(str(profile)), str(profile))
    sup.create_rings()
    try:
        yield sup
    finally:
        for child in sup.children:
            if child.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.kill()
                child.process.wait()
        for ring in sup._rings.values():
            ring.close()
        sup._rings.clear()
        remove_instance(instance)


def frozen_standin(child: Child) -> int:
    """``child`` is a process that stopped dead (SIGSTOP): no progress, no heartbeat; it was
    ready long ago (the stuck watch leaves a start alone)."""
    child.process, child.ready = subprocess.Popen(["sleep", "60"]), True
    os.kill(child.process.pid, signal.SIGSTOP)
    return child.process.pid


def hold_line(sup: Supervisor, ring_name: str, consumer: str, pid: int, beat_age_s: float) -> None:
    """``pid`` holds ``consumer``'s line on ``ring_name``, its last beat ``beat_age_s`` ago."""
    ring = sup._rings[ring_name]
    line = ring.consumer_index(consumer)
    ring.words[h.consumer_word(line, h.C_PID)] = pid
    ring.words[h.consumer_word(line, h.C_HEARTBEAT)] = time.monotonic_ns() - int(beat_age_s * 1e9)


def unread(sup: Supervisor, ring_name: str, count: int) -> None:
    """``count`` records in ``ring_name`` that no consumer has read."""
    producer = sup._rings[ring_name].producer()
    for k in range(count):
        producer.publish(Heartbeat(k + 1, 1, k + 1))
    producer.close()


def child_named(sup: Supervisor, name: str) -> Child:
    return next(c for c in sup.children if c.spec.name == name)


# -- what is right: a frozen matcher is seen by its input ------------------------------------


def test_a_frozen_matcher_is_logged_naming_ring_and_lag_and_sigkilled(
    supervisor: Supervisor, caplog: pytest.LogCaptureFixture
) -> None:
    """A SIGSTOPped matcher with commands waiting on its input: logged once as stuck with
    the ring and the lag, and SIGKILLed (which a stopped process cannot ignore, as it does
    a SIGTERM) for ``watch`` to restart; no second line while it stays stuck."""
    sup = supervisor
    child = child_named(sup, "matcher-m1")
    pid = frozen_standin(child)
    hold_line(sup, "m1-in", "matcher", pid, beat_age_s=10.0)
    unread(sup, "m1-in", 7)
    with caplog.at_level(logging.ERROR, logger="ringex.supervisor"):
        for _ in range(2):  # the first look only notes the line
            sup._look_for_stuck()
        assert child.stuck  # (before a later look may find it dead: the kill's race)
        sup._look_for_stuck()
    assert caplog.text.count("matcher-m1 looks stuck: 7 records wait on m1-in") == 1
    assert child.process is not None and child.process.wait(10) == -signal.SIGKILL


# -- a frozen reader of a matcher's output is never seen ---------------------------------------


@pytest.mark.parametrize(
    ("process", "ring_name", "consumer"),
    [
        ("gateway-gw1", "m1-out", "gw1"),
        ("gateway-gw1", "m2-out", "gw1"),
        ("marketdata", "m2-out", "marketdata"),
    ],
)
def test_a_frozen_reader_of_a_matcher_output_is_seen_stuck_and_restarted(
    supervisor: Supervisor,
    process: str,
    ring_name: str,
    consumer: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Was (fixed): a gateway (or market data) SIGSTOPped with a matcher's events waiting for it is
    never judged stuck: ``plan.py`` gives the gateway spec no ``watched`` lines (only its
    ready ring, ``gwN-rep``, which has no lag while its clients' orders are the router's to
    answer in a matcher's output), and market data only the first matcher's output. Its
    line gates that ring: a full ring holds the matcher, then the router for every gateway,
    and the log blames the matcher (its input lags, its heartbeat stands while it waits for
    room), whose restart with ``restart_stuck`` only waits again.
    Should: as for the router since review 50, every ring a process reads is watched, so the
    frozen reader is logged stuck naming the ring and its lag, and killed to be restarted."""
    sup = supervisor
    child = child_named(sup, process)
    pid = frozen_standin(child)
    ready = child.spec.ready_ring
    hold_line(sup, ready, child.spec.ready_consumer, pid, beat_age_s=10.0)  # nothing waits
    hold_line(sup, ring_name, consumer, pid, beat_age_s=10.0)
    unread(sup, ring_name, 40)
    with caplog.at_level(logging.ERROR, logger="ringex.supervisor"):
        sup._look_for_stuck()  # the first look: nothing to compare with yet
        sup._look_for_stuck()
    said = caplog.text
    assert child.stuck, f"{process} frozen with 40 records unread on {ring_name}: {said!r}"
    assert f"{process} looks stuck: 40 records wait on {ring_name}" in said, said
    assert child.process is not None and child.process.wait(10) == -signal.SIGKILL


# -- the same in a whole instance: one frozen gateway stops the exchange -----------------------


def two_gateways_text(instance: str, var: Path) -> str:
    """One matcher whose output holds 64 events, two gateways; a stuck process is restarted
    after 1 s and a restart must be ready within 10 s."""
    return (
        f'instance = "{instance}"\nvar_dir = "{var}"\n'
        "[ring]\ncapacity = 64\n"
        '[wait]\nstrategy = "blocking"\npark_timeout_s = 0.005\n'
        "[risk]\nfee_account = 1\n"
        "[marketdata]\nenabled = false\n[database]\nenabled = false\n"
        f'[[gateways]]\nname = "gw1"\nid = 1\nport = {free_port()}\n'
        f'[[gateways]]\nname = "gw2"\nid = 2\nport = {free_port()}\n'
        "[supervisor]\nmetrics = false\nstuck_after_s = 1.0\nrestart_stuck = true\n"
        "ready_timeout_s = 10\n"
    )


@pytest.fixture
def two_gateways(instance: str, tmp_path: Path) -> Iterator[Path]:
    """A running instance (``ringex run`` in the foreground) of ``two_gateways_text``; at
    the end every process of it is continued (a frozen one takes its SIGTERM) and stopped."""
    profile = tmp_path / "two.toml"
    profile.write_text(two_gateways_text(instance, tmp_path / "var"))
    err = tmp_path / "supervisor.stderr"
    proc = run_in_foreground(profile, err)
    cfg = load_profile(str(profile))
    seen: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while (status := read_status(cfg) or {}).get("state") != "running":
            assert proc.poll() is None, err.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "not running within 60 s"
            time.sleep(0.1)
        seen = {p["pid"] for p in status["processes"] if p["pid"]}
        yield profile
    finally:
        seen |= {p["pid"] for p in (read_status(cfg) or {}).get("processes", []) if p["pid"]}
        for pid in seen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def processes(profile: Path) -> dict[str, dict[str, Any]]:
    status = read_status(load_profile(str(profile))) or {}
    return {p["name"]: p for p in status.get("processes", [])}


def test_a_frozen_gateway_is_restarted_and_the_other_gateways_orders_answered(
    two_gateways: Path, tmp_path: Path
) -> None:
    """Was (fixed): gateway gw2 SIGSTOPped (no client on it) while a user of gw1 sends 60 orders:
    gw2's line on m1-out gates the matcher, the 64-slot ring fills, the matcher waits for
    room, its input lags with its heartbeat standing, and the stuck watch kills the matcher
    (``restart_stuck``), never gw2; the restarted matcher waits for the same room before it
    holds its input, so after ``ready_timeout_s`` the supervisor stops the whole instance,
    its reason naming the matcher. gw1's orders after the freeze are never answered.
    Should: the frozen gw2 is the stuck one (README, Operate: a process with records waiting
    for it whose position and heartbeat stand), killed and restarted, and every order of
    gw1's user answered, the instance running throughout."""
    profile = two_gateways
    ringex(profile, "admin", "add-user", "--username", "F1", "--password", "pw",
           "--deposit", "USD=1000000")  # fmt: skip
    cfg = load_profile(str(profile))
    before = processes(profile)
    os.kill(before["gateway-gw2"]["pid"], signal.SIGSTOP)
    orders = 60

    async def scenario() -> int:
        client = Client("F1")
        await client.connect(cfg.gateways[0].port)
        try:
            await client.logon("pw")
            for i in range(orders):
                await client.send("D", (11, f"o{i}"), (55, "BTC-USD"), (54, "1"), (60, utc()),
                                  (38, "0.01"), (40, "2"), (44, "90.00"), (59, "1"))  # fmt: skip
            acked: set[bytes] = set()
            deadline = time.monotonic() + 25
            while time.monotonic() < deadline:
                state = (read_status(cfg) or {}).get("state")
                now = processes(profile)
                done = now["gateway-gw2"]["restarts"] > before["gateway-gw2"]["restarts"]
                if state != "running" or (done and len(acked) == orders):
                    break  # (stopping: what it came to)
                while (msg := await client.recv(0.2)) is not None:
                    if msg.get(35) == b"8" and msg.get(150) == b"0":
                        acked.add(msg.get(11))
            return len(acked)
        finally:
            await client.aclose()

    acked = asyncio.run(scenario())
    after, status = processes(profile), read_status(cfg) or {}
    said = "\n".join(
        line
        for line in (tmp_path / "supervisor.stderr").read_text(errors="replace").splitlines()
        if "stuck" in line or "restart" in line or "did not" in line
    )
    story = (
        f"acked {acked}/{orders}; state {status.get('state')!r} reason {status.get('reason')!r}; "
        f"restarts gw2 {after.get('gateway-gw2', {}).get('restarts')}, matcher "
        f"{after.get('matcher-m1', {}).get('restarts')}; supervisor said:\n{said}"
    )
    assert after["gateway-gw2"]["restarts"] > before["gateway-gw2"]["restarts"], story
    assert status.get("state") == "running" and acked == orders, story


# -- a frozen process outlives its supervisor -----------------------------------------------


def test_ringex_stop_after_a_supervisor_killed_outright_ends_a_frozen_process(
    instance: str, tmp_path: Path
) -> None:
    """Was (fixed): the router SIGSTOPped, then its supervisor SIGKILLed (the OOM killer): the
    router's parent-death SIGTERM stays pending and its orphan watch
    (``parent_death.kill_when_orphaned``: "a process that is hung ... would otherwise live
    on") never runs, so it lives on, frozen, holding the instance's segments and journal.
    ``ringex stop`` waits, then exits 1 saying the pid is "still stopping ... (each ends
    itself within 20 s of its SIGTERM)", which it never will; its segments stay in use, so
    ``ringex run`` refuses the instance as running (``refuse_running``: "stop it first").
    Should: README, Stopping: "a supervisor killed outright leaves nothing running"; a stop
    that finds a killed supervisor's process still there past the 20 s grace kills it
    (SIGKILL ends a stopped process too) and says stopped."""
    with running_exchange(instance, tmp_path, database=False) as profile:
        cfg = load_profile(str(profile))
        status = read_status(cfg) or {}
        frozen = processes(profile)["router"]["pid"]
        os.kill(frozen, signal.SIGSTOP)
        try:
            os.kill(status["supervisor_pid"], signal.SIGKILL)
            done = subprocess.run(
                [sys.executable, "-m", "procs.cli", "stop", "--config", str(profile),
                 "--timeout", "22"],
                cwd=ROOT, check=False, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            left = process_start(frozen) == processes(profile)["router"]["started"]
            assert (done.returncode, left) == (0, False), (
                f"ringex stop 22 s after the supervisor's death: exit {done.returncode}, "
                f"{done.stdout!r} {done.stderr!r}; the frozen router (pid {frozen}) there: {left}"
            )
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(frozen, signal.SIGKILL)
            deadline = time.monotonic() + 30  # the others end themselves (their grace)
            while any(s.live_pids for s in list_segments(instance)):
                assert time.monotonic() < deadline, list_segments(instance)
                time.sleep(0.1)
