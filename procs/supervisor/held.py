"""A process started ahead of its turn: ``python -m procs.supervisor.held <module> [args]``.

Importing is most of a process's start (0.3-0.4 s of CPU each for the router, a matcher or a
gateway). So the supervisor starts every process at once through this: each imports its
module, then waits for the supervisor's word on stdin, and only then runs
``<module>.main(args)``, so the supervisor still decides the order (the matchers, then the
rest) while the imports overlap each other, and, in a promotion, the old standby's stop.
End of file instead of the word (the supervisor died or gave up) exits 0 without running.
Should the supervisor die, its processes get SIGTERM (``parent_death``), and SIGKILL once its
stop grace has passed (``GRACE_ENV``).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Final

from procs.common.parent_death import kill_when_orphaned

GO: Final = b"go\n"
#: The supervisor's stop grace, in the environment of what it starts: an orphan (the
#: supervisor killed outright) that has not stopped within it is killed as the stop would.
GRACE_ENV: Final = "RINGEX_STOP_GRACE_S"


def main() -> int:
    grace = os.environ.get(GRACE_ENV)
    if grace is not None:
        kill_when_orphaned(float(grace))
    module = importlib.import_module(sys.argv[1])
    if sys.stdin.buffer.readline() != GO:
        return 0
    return int(module.main(sys.argv[2:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
