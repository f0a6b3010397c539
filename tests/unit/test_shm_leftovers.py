"""A test run that is stopped or killed leaves nothing of its ``instance`` in /dev/shm.

/dev/shm held whole instances named ``t<pid>x0`` (rings, ``stats-gw1`` pages, ``sem.*``
semaphores, event-loop FIFOs), each with a producer's ``.p`` semaphore: gateway tests whose
in-process router or matcher waited for room in a ring that only their own loop drains, a
run that hung until its runner sent SIGTERM. SIGTERM ended pytest before its fixtures were
torn down (``instance`` calls ``remove_instance`` at teardown), and nothing removed them
later. The hung run is played here by a child pytest over this project's ``tests.conftest``:
its one test makes what such an instance holds, then parks a producer on a full ring.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from procs.common.record_codec import RecordCodec
from shm import Ring
from shm.inspect import SHM_DIR, remove_instance

ROOT = Path(__file__).parents[2]
MARKER_ENV = "RINGEX_TEST_HUNG_MARKER"

HUNG_TEST = f'''
import os
from pathlib import Path

from procs.common.records import CreateAccount
from procs.common.record_codec import RecordCodec
from shm import Ring
from shm.counters import Counters
from shm.wait import wait_strategy


def test_hangs_like_a_deadlocked_pipeline(instance: str) -> None:
    ring = Ring.create(instance, "m1-out", RecordCodec(), capacity=8, consumers=["gw1"])
    reader = ring.consumer("gw1")
    reader.watch_fd()  # an event loop's FIFO, and the consumer's semaphore
    Counters.open(instance, "stats-gw1", ("orders",))
    producer = ring.producer(wait_strategy("blocking", park_timeout_s=0.005))
    Path(os.environ["{MARKER_ENV}"]).write_text(instance)
    while True:  # full after 8: parks on its own semaphore, and nobody reads
        producer.publish(CreateAccount(0, 0, 0, 1, 1, 1))
'''


def _left(instance: str) -> list[str]:
    """What /dev/shm holds named after ``instance``: segments, ``sem.*``, ``fifo.*``."""
    return sorted(p.name for p in SHM_DIR.iterdir() if f"ringex.{instance}." in p.name)


def _pytest(tmp_path: Path, *args: str, marker: Path | None = None) -> subprocess.Popen[bytes]:
    """A child pytest of ``tmp_path``'s tests with this project's conftest as a plugin."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # none of the project's options
    (tmp_path / "test_hung_run.py").write_text(HUNG_TEST)
    env = {k: v for k, v in os.environ.items() if k != MARKER_ENV}
    if marker is not None:
        env[MARKER_ENV] = str(marker)
    plugins = ("-p", "no:cacheprovider", "-p", "tests.conftest")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            *plugins,
            "--rootdir",
            str(tmp_path),
            *args,
            str(tmp_path),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _hung_run(tmp_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A child pytest parked in its test; its instance, once all its objects are made."""
    marker = tmp_path / "instance"
    proc = _pytest(tmp_path, marker=marker)
    deadline = time.monotonic() + 60
    while not marker.exists() or f"sem.ringex.{marker.read_text()}.m1-out.p" not in _left(
        marker.read_text()
    ):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, _ = proc.communicate()
            if marker.exists():
                remove_instance(marker.read_text())
            tail = out.decode()[-2000:]
            raise AssertionError(f"the hung run did not park (exit {proc.returncode}):\n{tail}")
        time.sleep(0.05)
    instance = marker.read_text()
    made = {n.replace(instance, "I") for n in _left(instance)}
    assert {"ringex.I.m1-out", "ringex.I.stats-gw1", "sem.ringex.I.m1-out.p"} <= made, made
    assert {"sem.ringex.I.m1-out.c0", "fifo.ringex.I.m1-out.c0"} <= made, made
    return proc, instance


def test_a_run_stopped_by_sigterm_tears_its_instance_down(tmp_path: Path) -> None:
    proc, instance = _hung_run(tmp_path)
    try:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert _left(instance) == [], out.decode()[-2000:]
        assert b"stopped by signal" in out, out.decode()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        remove_instance(instance)


def test_what_a_killed_run_left_goes_at_the_next_runs_start(tmp_path: Path, instance: str) -> None:
    """Only what a dead run's instances left, and no process uses: a live run's instance
    (this test's) and a dead run's rings that a live process holds stay."""
    proc, dead = _hung_run(tmp_path)
    proc.kill()
    proc.communicate()
    assert _left(dead), "SIGKILL runs no teardown: the leftovers this test is about"
    held = f"t{proc.pid}x9"  # a dead run's name, its ring held by this live process
    rings = [Ring.create(name, "m1-in", RecordCodec(), capacity=8) for name in (instance, held)]
    try:
        after = _pytest(tmp_path, "--collect-only")
        out, _ = after.communicate(timeout=60)
        assert after.returncode == 0, out.decode()[-2000:]
        assert _left(dead) == []
        assert _left(instance) == [f"ringex.{instance}.m1-in"]
        assert _left(held) == [f"ringex.{held}.m1-in"]
    finally:
        for ring in rings:
            ring.close()
        remove_instance(dead)
        remove_instance(held)
