"""A stopping instance detaches the ring lines of consumers that have stopped, so a stopped
gateway's unread events do not hold the matcher (and the stop) up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from procs.supervisor.draining import detach_gone
from shm import Ring, StructCodec
from shm import header as h
from tests.unit.supervisor.test_supervisor import write_profile

CODEC = StructCodec("2q")


def test_the_lines_of_stopped_consumers_stop_gating(instance: str) -> None:
    ring = Ring.create(instance, "m1-out", CODEC, capacity=4, consumers=["gw1", "md"])
    producer = ring.producer()
    md = ring.consumer("md")
    ring.consumer("gw1")
    exited = subprocess.Popen(["true"])
    exited.wait()
    ring.words[h.consumer_word(ring.consumer_index("gw1"), h.C_PID)] = exited.pid
    for i in range(4):
        producer.publish((i, 0))
    assert [x[0] for x in md.read(8)] == [0, 1, 2, 3]
    assert not producer.try_publish((4, 0))  # the stopped gateway's line still gates
    assert detach_gone([ring]) == ["m1-out:gw1"]
    assert producer.try_publish((4, 0))  # no longer
    assert [x[0] for x in md.read(8)] == [4]
    assert detach_gone([ring]) == []  # md is alive, gw1 already detached


def test_a_sigterm_after_the_command_is_done_leaves_its_exit_status(
    instance: str, tmp_path: Path
) -> None:
    """Review 199: a late ``ringex stop`` signalled a foreground ``ringex run`` whose stop was
    done, as its interpreter finalized, and it died of SIGTERM (-15), not 0. The ``ringex``
    command ignores SIGTERM once its command has returned: a SIGTERM sent from an exit handler
    (after ``main``) changes nothing, here for a ``ringex stop`` of an instance not running."""
    profile = write_profile(tmp_path / "p.toml", instance, tmp_path / "var")
    late = (
        "import atexit, os, signal, sys\n"
        "atexit.register(lambda: os.kill(os.getpid(), signal.SIGTERM))\n"
        f"sys.argv = ['ringex', 'stop', '--config', {str(profile)!r}]\n"
        "from procs.cli import main\n"
        "sys.exit(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", late], check=False, capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout) == (0, f"instance {instance} is not running\n"), done
