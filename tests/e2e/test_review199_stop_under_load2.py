"""Review 199, second part: a stop while the instance starts, a hung matcher, and a stop as
``ringex run`` begins (the module docstring of ``test_review199_stop_under_load.py`` says the
review, the rig and the faults; its helpers are imported from there)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from procs.common.run_files import read_status
from tests.e2e.running import ringex, run_in_foreground
from tests.e2e.test_review34_crashes import run_again
from tests.e2e.test_review199_stop_under_load import (
    Session,
    back_on_all,
    conserved,
    first_life,
    instance_pids,
    nothing_left,
    processes,
    sessions,
    stop_cli,
    trade,
)


@pytest.mark.parametrize("database", [False, True])
def test_a_stop_while_the_instance_starts(instance: str, tmp_path: Path, database: bool) -> None:
    """(With the database: once the writer is released, as it starts its PostgreSQL.)"""
    """Stopped once with resting orders, started again and stopped before it is ready
    (SIGTERM as soon as its status says ``starting``): it stops at once (exit 0, saying
    why), nothing is left (the embedded PostgreSQL its writer was starting included), and a
    third start recovers the orders."""
    with first_life(instance, tmp_path, database=database) as (profile, cfg, accounts):
        maker, taker, _slow = sessions(cfg, accounts)

        async def life() -> None:
            for s in (maker, taker):
                await s.open()
            await trade(maker, taker)
            await asyncio.to_thread(ringex, profile, "stop")
            await ended_all([maker, taker])

        asyncio.run(life())

        err = tmp_path / "starting.stderr"
        proc = run_in_foreground(profile, err)
        try:
            deadline = time.monotonic() + 30
            while True:
                status = read_status(cfg) or {}
                if status.get("supervisor_pid") == proc.pid:
                    break
                assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
                time.sleep(0.002)
            assert status["state"] == "starting"
            pids = instance_pids(cfg)
            while database and "started dbwriter" not in err.read_text():
                assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
                time.sleep(0.002)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        said = err.read_text()
        assert "starts: stopping" in said and f"instance {instance} stopped" in said, said
        nothing_left(cfg, pids)
        assert (read_status(cfg) or {}).get("state") == "stopped"
        with run_again(profile, cfg, proc.pid):
            assert asyncio.run(back_on_all([maker, taker])) == []


async def ended_all(all_: list[Session]) -> None:
    for s in all_:
        await s.ended()


def test_a_hung_matcher_is_killed_after_the_grace_and_the_stop_says_so(
    instance: str, tmp_path: Path
) -> None:
    """A matcher SIGSTOPped with an order in flight to it: the stop waits its drain and the
    group's 20 s grace, kills it, logs so, and ends (``ringex stop`` 0, stopped) with
    nothing left; the next run recovers, the order in flight journaled and resting."""
    with first_life(instance, tmp_path, database=False) as (profile, cfg, accounts):
        maker, taker, _slow = sessions(cfg, accounts)
        pids = instance_pids(cfg)
        hung = processes(cfg)["matcher-m1"]

        async def life() -> tuple[float, subprocess.CompletedProcess[str], bytes]:
            for s in (maker, taker):
                await s.open()
            await trade(maker, taker)
            os.kill(hung, signal.SIGSTOP)
            late = await maker.new("2", "0.0100", "105.00")
            began = time.monotonic()
            short = await asyncio.to_thread(stop_cli, profile, "--timeout", "2")
            assert (short.returncode, short.stdout) == (1, "")
            assert short.stderr == f"supervisor {pids[0][0]} still running after 2 s\n"
            done = await asyncio.to_thread(stop_cli, profile)  # asked again: waits it out
            took = time.monotonic() - began
            await ended_all([maker, taker])
            return took, done, late

        took, done, late = asyncio.run(life())
        assert (done.returncode, done.stdout) == (0, f"instance {instance} stopped\n")
        assert took < 45, took
        said = (tmp_path / "supervisor.stderr").read_text()
        assert "matcher-m1 did not stop in 20" in said, said[-2000:]
        nothing_left(cfg, pids)
        with run_again(profile, cfg, pids[0][0]):
            assert asyncio.run(back_on_all([maker, taker])) == []
        assert late in maker.resting(), "the order in flight at the stop"
        conserved(cfg, len(accounts))


def test_a_stop_as_ringex_run_begins_stops_it(instance: str, tmp_path: Path) -> None:
    """``ringex run`` launched and ``ringex stop`` run before its supervisor has written its
    first status (its imports, its processes' spawning and the lock come first: held here by
    SIGSTOP, as a loaded host holds it): the stop must stop that start or say it could not,
    not answer "not running" and leave an instance that comes up behind it."""
    with first_life(instance, tmp_path, database=False) as (profile, cfg, _accounts):
        ringex(profile, "stop")
    err = tmp_path / "begins.stderr"
    proc = run_in_foreground(profile, err)
    try:
        os.kill(proc.pid, signal.SIGSTOP)  # (within microseconds of its exec)

        async def stop_meanwhile() -> subprocess.CompletedProcess[str]:
            stop = asyncio.ensure_future(asyncio.to_thread(stop_cli, profile))
            await asyncio.wait([stop], timeout=2.0)
            os.kill(proc.pid, signal.SIGCONT)
            return await stop

        done = asyncio.run(stop_meanwhile())
        said = (done.returncode, done.stdout)
        deadline = time.monotonic() + 15
        while proc.poll() is None and time.monotonic() < deadline:
            status = read_status(cfg) or {}
            up = status.get("supervisor_pid") == proc.pid and status.get("state") == "running"
            assert not up, f"ringex stop said {said}, and the instance runs"
            time.sleep(0.05)
        assert proc.poll() is not None, f"ringex stop said {said}; its start is still going"
        assert said[0] == 0 and "stopped (its start was under way)" in said[1], said
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
