"""The supervisor's watch on heartbeats and ring progress: a process with records waiting for
it, whose position and heartbeat stand still, is logged as stuck and, with
``restart_stuck``, killed (``watch`` then restarts it as any exit)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import msgspec
import pytest

from config import load_profile
from config.schema import RingexConfig
from procs.common.records import Heartbeat
from procs.supervisor.main import Child, Supervisor
from shm import header as h
from shm.inspect import remove_instance
from tests.unit.supervisor.test_review_supervisor_bugs import fake, write_profile


def stalled(instance: str, tmp_path: Path, restart: bool) -> tuple[Supervisor, Child]:
    """A supervisor with its rings, and a child that holds the matcher's line of ``m1-in``
    but never reads: records wait for it and its heartbeat is older than stuck_after_s."""
    profile = write_profile(tmp_path / "p.toml", instance, tmp_path / "var")
    cfg: RingexConfig = load_profile(str(profile))
    settings = msgspec.structs.replace(cfg.supervisor, stuck_after_s=0.5, restart_stuck=restart)
    cfg = msgspec.structs.replace(cfg, supervisor=settings)
    sup = Supervisor(cfg, str(profile))
    sup.children = [Child(fake("m1", "sleep", ready_ring="m1-in", ready_consumer="matcher"))]
    sup.create_rings()
    child = sup.children[0]
    child.process, child.ready = subprocess.Popen(["sleep", "30"]), True  # long since
    ring = sup._rings["m1-in"]
    line = ring.consumer_index("matcher")
    ring.words[h.consumer_word(line, h.C_PID)] = child.process.pid
    ring.words[h.consumer_word(line, h.C_HEARTBEAT)] = time.monotonic_ns() - 10**9
    producer = ring.producer()
    producer.publish(Heartbeat(1, 1, 1))
    producer.close()
    return sup, child


def cleaned(sup: Supervisor, child: Child, instance: str) -> None:
    """``stalled``'s process ended, its rings closed and the instance's segments gone."""
    assert child.process is not None
    child.process.kill()
    child.process.wait()
    for ring in sup._rings.values():
        ring.close()
    sup._rings.clear()
    remove_instance(instance)


@pytest.mark.parametrize("restart", [False, True])
def test_a_stuck_process_is_seen_and_restarted_only_when_asked(
    instance: str, tmp_path: Path, restart: bool
) -> None:
    sup, child = stalled(instance, tmp_path, restart)
    assert child.process is not None
    try:
        sup._look_for_stuck()  # the first look: nothing to compare with yet
        assert not child.stuck
        sup._look_for_stuck()
        assert child.stuck
        if restart:  # killed: gone once the kernel gets to it (a loaded machine's moment)
            assert child.process.wait(10) is not None
        else:
            time.sleep(0.2)
            assert child.process.poll() is None
    finally:
        cleaned(sup, child, instance)


def test_a_process_starting_or_ready_less_than_stuck_after_s_is_not_judged(
    instance: str, tmp_path: Path
) -> None:
    """A restarted process holds its line before it reads (a gateway's start, a matcher's
    replay of its journal): records wait and its heartbeat is old, yet killing it only
    starts it again, a loop up to ``restart_limit`` (review 299's tiny-ring run saw 2 of 150
    cancels in 30 s with ``stuck_after_s = 0.5``). Not judged until ready, nor for
    ``stuck_after_s`` after (its first beat is due then); judged and killed after that."""
    sup, child = stalled(instance, tmp_path, restart=True)
    assert child.process is not None
    try:
        child.ready = False  # starting, or recovering after a restart
        for _ in range(3):
            sup._look_for_stuck()
        assert not child.stuck and child.process.poll() is None
        child.ready, child.ready_at = True, time.monotonic()  # ready just now
        sup._look_for_stuck()
        assert not child.stuck and child.process.poll() is None
        child.ready_at -= 1.0  # ready 1 s ago, past stuck_after_s = 0.5: its beat is due
        sup._look_for_stuck()
        assert child.stuck
        assert child.process.wait(10) is not None
    finally:
        cleaned(sup, child, instance)
