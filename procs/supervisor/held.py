"""A process started ahead of its turn: ``python -m procs.supervisor.held <module> [args]``.

Importing is most of a process's start (0.3-0.4 s of CPU each for the router, a matcher or a
gateway). So the supervisor starts every process at once through this: each imports its
module, then waits for the supervisor's word on stdin, and only then runs
``<module>.main(args)``, so the supervisor still decides the order (the matchers, then the
rest) while the imports overlap each other, and, in a promotion, the old standby's stop.
End of file instead of the word (the supervisor died or gave up) exits 0 without running.
"""

from __future__ import annotations

import importlib
import sys
from typing import Final

GO: Final = b"go\n"


def main() -> int:
    module = importlib.import_module(sys.argv[1])
    if sys.stdin.buffer.readline() != GO:
        return 0
    return int(module.main(sys.argv[2:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
