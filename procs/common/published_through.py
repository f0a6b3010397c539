"""How far a matcher's output is known to be published: ``published`` beside its snapshots.

A matcher marks its output "executed and published through seq N" at its start, at each of
its snapshots and on its first idle step after a batch (``MatcherShell._mark``); it writes N
here as well, at most once every ``EVERY_S`` (the first of a run at once). The archive bound
reads it (``archive_bound.archivable_before``): a matcher that has published through the last
command of the oldest exchange snapshot's copy of its books can restart from that copy
whatever its own snapshots hold (``matcher_snapshot`` takes a copy whose last command its
output has), so they need not hold archiving back. A matcher whose symbols are quiet writes
its own snapshot only every ``snapshot_every`` of its commands or at a clean stop, so its
oldest could pin the archive point for months (review 69).

Written after the mark, so never more than was published; without an fsync, as a file lost
or left stale by a crash of the machine only says less (the bound then stays where the
matcher's own snapshots put it), and such a crash makes new rings, from which a matcher
restarts from the newest snapshot of any kind.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Final

from procs.common.durable import make_dirs

log = logging.getLogger("ringex.matcher")
FILE: Final = "published"
EVERY_S: Final = 1.0


def read(directory: Path) -> int:
    """The seq the file in ``directory`` says was published through; 0 when it is absent or
    does not read as one (what a crash of the machine can leave)."""
    try:
        text = (directory / FILE).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return 0
    digits = text.strip()  # (a seq has 19 digits at most: int() of 4,300 raises)
    return int(digits) if digits.isdigit() and len(digits) <= 19 else 0


class PublishedThrough:
    """The matcher's writer of the file (one process per matcher)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / FILE
        self._written = -1  # this run's last value written (-1: none yet)
        self._at = 0.0  # when it was last tried (monotonic s)
        self._failed = False  # the last try failed (said once in the log)

    def note(self, seq: int) -> None:
        """The output is marked published through ``seq``: written unless the file was
        written less than ``EVERY_S`` ago (a busy matcher goes idle many times a second).
        Called on every idle step too, so the last mark of a burst is written within a
        second of it. A write that fails (a full disk) is logged once and tried again: the
        file only says less meanwhile, and the matcher goes on."""
        now = time.monotonic()
        if seq == self._written or (self._written >= 0 and now - self._at < EVERY_S):
            return
        self._at = now
        try:
            make_dirs(self.path.parent)
            tmp = self.path.with_name(FILE + ".tmp")
            tmp.write_bytes(b"%d\n" % seq)
            os.replace(tmp, self.path)
        except OSError as exc:
            if not self._failed:
                log.warning("%s not written (%s): archiving may keep more of the journal",
                            self.path, exc)  # fmt: skip
            self._failed = True
            return
        self._written, self._failed = seq, False
