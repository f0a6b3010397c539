"""A signal that comes once a ``ringex`` command is done leaves its exit status (review 199).

A second ``ringex stop`` racing the end of a foreground ``ringex run`` found its supervisor
still alive and signalled it as the interpreter finalized, where CPython has put the handlers
Python set back to the default: the stopped exchange's ``run`` died of SIGTERM. ``procs.cli.
main``, reading the command line, ignores SIGTERM, SIGHUP and Ctrl-C once its command has
returned."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.unit.supervisor.test_supervisor import write_profile


def test_a_sigterm_after_the_command_is_done_leaves_its_exit_status(
    instance: str, tmp_path: Path
) -> None:
    """A SIGTERM sent from an exit handler (after ``main`` returned) changes nothing: 0, not
    -15 (as before), here for a ``ringex stop`` of an instance not running."""
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
