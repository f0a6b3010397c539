"""``ringex`` piped into a reader that stops early (``| head -1``) ends without a traceback."""

from __future__ import annotations

import os
import subprocess
import sys


def test_a_closed_pipe_is_no_traceback() -> None:
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    try:
        done = subprocess.run(
            [sys.executable, "-m", "procs.cli", "status", "--profile", "test", "--json"],
            stdout=write,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write)
    assert b"Traceback" not in done.stderr, done.stderr.decode()
    assert done.returncode == 1
