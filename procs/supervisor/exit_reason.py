"""Why a process stopped, as its log says: the reason a supervisor gave for a failed start
(``ringex run --detach``), and the last line a child process logged before it exited (the
supervisor's message when one crashes too often)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final

#: What ``logging`` puts before a supervisor's message: its time, logger and pid
#: (``SUPERVISOR_LOG_FORMAT``; none in a log written before it named them).
LOG_PREFIX: Final = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [^\s\[]+(?:\[(?P<pid>\d+)\])? "
)
#: How much of a log's end ``last_logged`` reads (a line as long begins before it: said cut),
#: and how much of its line, from its start, it keeps
TAIL_BYTES: Final = 1 << 20
LINE_CHARS: Final = 300


def start_failure(status: dict[str, Any] | None, pid: int, log: Path, offset: int) -> str:
    """Why the supervisor ``pid`` stopped while starting: the reason it wrote in its
    status, else the last line it logged from ``offset`` on (a refusal before it wrote any
    status: a CPU the host lacks, another start holding the instance). Lines another
    supervisor logged meanwhile (two starts at once share the log: the winner's "running"
    is no reason of the loser's) are skipped by the pid each line names, and so are the
    lines that continue one of them (review 103)."""
    if status and status.get("supervisor_pid") == pid and status.get("reason"):
        return str(status["reason"])
    try:
        with open(log, "rb") as f:
            f.seek(offset)
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        lines = []
    # a line naming no pid continues the one before it (a traceback, a message of several
    # lines); those before any line naming a pid are this start's own
    own, writer = "", pid
    for line in lines:
        prefix = LOG_PREFIX.match(line)
        if prefix and prefix["pid"]:
            writer = int(prefix["pid"])
        text = (line[prefix.end() :] if prefix else line).strip()
        if text and writer == pid:
            own = text
    return own or "no reason logged"


def last_logged(log: Path, offset: int = 0) -> str | None:
    """The last line ``log`` holds from ``offset`` on (a run's own: each run appends to
    it, and one that died silently must not be quoted its last run's words) that is not
    blank (a traceback's ends with the error), its first ``LINE_CHARS`` (its type and
    reason; review 254: a long one was quoted from its middle); None where it cannot be read
    or holds none. A log shorter than ``offset`` was cut since (``copytruncate``, as the
    README's logrotate does: a review, 2026-12-03): all it holds is the run's."""
    try:
        with open(log, "rb") as f:
            end = f.seek(0, 2)
            offset = 0 if end < offset else offset
            start = max(offset, end - TAIL_BYTES - 1)
            f.seek(start)
            data = f.read()
            cut = start > offset  # the window begins inside a line, unless at a newline
            if cut and data[:1] == b"\n":
                cut, data = False, data[1:]
            tail = data.decode(errors="replace")
    except OSError:
        return None
    lines = tail.splitlines()
    found = [i for i, line in enumerate(lines) if line.strip()]
    if not found:
        return None
    last = ("..." if cut and found[-1] == 0 else "") + lines[found[-1]].strip()
    return last if len(last) <= LINE_CHARS else last[: LINE_CHARS - 3] + "..."
