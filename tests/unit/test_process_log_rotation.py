"""The README's advice for the process logs under ``var/<instance>/run/`` (Disk): rotate them
with logrotate's ``copytruncate``, not by renaming. Every writer of one holds it open for
appending (the supervisor's children, a detached supervisor), so after the cut it writes on
at the file's new end: no hole of zeros where the old lines were. A rename would leave the
process writing to the renamed file until it restarts."""

from __future__ import annotations

import inspect
import subprocess
import sys
import time
from pathlib import Path

from procs import detached_start
from procs.supervisor import main as supervisor
from tests.readme_text import claim

WRITER = """
import sys, time
for n in range(400):
    print(f"line {n}", flush=True)
    time.sleep(0.005)
"""


def test_the_readme_says_copytruncate() -> None:
    claim("rotate them with logrotate's `copytruncate`")
    claim("not by renaming, which leaves a process writing to the renamed file")


def test_every_process_log_is_opened_for_appending() -> None:
    """What makes the cut safe: a writer at a fixed offset would fill the cut part with
    zeros at its next write (the file sparse, as large as before)."""
    assert 'f"{spec.name}.log", "ab")' in inspect.getsource(supervisor.Supervisor._spawn)
    assert 'open(log_path, "ab")' in inspect.getsource(detached_start)  # run --detach's


def test_a_copytruncate_cut_leaves_an_appending_writer_no_hole(tmp_path: Path) -> None:
    log = tmp_path / "gw1.log"
    with open(log, "ab") as out:  # as the supervisor spawns a child
        child = subprocess.Popen([sys.executable, "-c", WRITER], stdout=out)
    try:
        time.sleep(0.5)
        rotated = log.read_bytes()  # logrotate's copy ...
        with open(log, "r+b") as f:  # ... and its truncate
            f.truncate(0)
    finally:
        assert child.wait(timeout=30) == 0
    after = log.read_bytes()
    assert rotated.startswith(b"line 0\n") and after, (rotated[:40], after[:40])
    assert b"\0" not in after and after.startswith(b"line "), after[:40]
    first = int(after.split(b"\n", 1)[0].split()[1])
    last = int(rotated.rstrip().rsplit(b"\n", 1)[-1].split()[1])
    assert first >= last, (first, last)  # it went on where it was, at the file's new start
