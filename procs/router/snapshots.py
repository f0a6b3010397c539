"""When the router snapshots, and the forked job that does it.

Every ``journal.snapshot_every`` commands, or ``journal.snapshot_every_s`` seconds after the
last snapshot when any command came since, the router forks a replay that writes an exchange
snapshot (off its loop: the child reads the journal, the router keeps sequencing). Counting
starts from the snapshot recovery began from, not from this start, or restarts closer
together than ``snapshot_every`` would let the replayed tail grow without bound (a crash
loop, say). A snapshot job that fails (an exception, a signal: the disk full, the OOM
killer) is logged as an error by the router (looked for once a second while commands come),
naming its seq and exit code: the tail a restart replays then runs from the one before it.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.process
import os
import select
import signal
import time

from config.schema import RingexConfig
from procs.common.journal_writer import JournalWriter
from procs.common.parent_death import die_with_parent
from procs.core.recovery import snapshot_job, snapshot_store

log = logging.getLogger("ringex.router")

#: Longest the router waits for a snapshot child to close its copy of the journal's lock.
LET_GO_S = 2.0

#: How often the router looks whether its snapshot child has ended (a ``waitpid``).
REAP_EVERY_S = 1.0


class Snapshots:
    def __init__(self, cfg: RingexConfig, recovered_seq: int) -> None:
        self.cfg = cfg
        self._at = recovered_seq  # the last snapshot's seq, and when it was made
        self._time = time.monotonic() - _snapshot_age_s(cfg, recovered_seq)
        self._child: multiprocessing.process.BaseProcess | None = None
        self._child_seq = 0
        self._reap_at = 0.0
        self.failures = 0  # snapshot jobs that ended in failure since this start

    def maybe_start(self, seq: int, journal: JournalWriter) -> None:
        """Fork the snapshot job for ``seq`` (the newest sequenced) when one is due."""
        if self._child is not None:
            self._reap()
        cadence = self.cfg.journal
        since = seq - self._at
        if not since:
            return
        by_count = cadence.snapshot_every and since >= cadence.snapshot_every
        by_time = (
            cadence.snapshot_every_s and time.monotonic() - self._time >= cadence.snapshot_every_s
        )
        if not (by_count or by_time):
            return
        if self._child is not None:
            self._reap(force=True)  # the last one's end first: a failure is never passed over
            if self._child is not None:  # (review 223: one reaped here went unlogged)
                return
        journal.sync()  # the child reads what is durable
        self._at, self._time, self._child_seq = seq, time.monotonic(), seq
        let_go_r, let_go_w = os.pipe()
        self._child = multiprocessing.get_context("fork").Process(
            target=_snapshot_child,
            args=(self.cfg, seq, journal.lock_fd, let_go_w, os.getpid()),
            name="ringex-snapshot",
            daemon=True,
        )
        self._child.start()
        os.close(let_go_w)
        # the child holds the journal's lock (an inherited descriptor) until it closes it:
        # wait for that, so that from here on this process alone holds it (a restart after
        # this one dies must be able to open the journal), a fork's few ms at most
        poller = select.poll()  # not select(): a descriptor past 1023 is out of its range
        poller.register(let_go_r, select.POLLIN)
        ready = poller.poll(LET_GO_S * 1000)
        os.close(let_go_r)
        if not ready:
            log.warning("snapshot child %s has not let go of the journal's lock within %.0f s",
                        self._child.pid, LET_GO_S)  # fmt: skip
        log.info("snapshot of seq %d started (pid %s)", seq, self._child.pid)

    def _reap(self, *, force: bool = False) -> None:
        """At most once every ``REAP_EVERY_S`` (``force``: now): if the snapshot child has
        ended, forget it, and say so when it failed (its traceback, if it raised, is on
        stderr)."""
        now = time.monotonic()
        if now < self._reap_at and not force:
            return
        self._reap_at = now + REAP_EVERY_S
        assert self._child is not None
        code = self._child.exitcode  # None while it runs
        if code is None:
            return
        self._child = None
        if code:
            self.failures += 1
            how = f"exit code {code}"
            if code < 0:
                how = f"killed by signal {-code}, {signal.strsignal(-code)}"
            log.error("snapshot of seq %d failed (%s): a restart replays the journal from the "
                      "snapshot before it; the next is due in journal.snapshot_every commands",
                      self._child_seq, how)  # fmt: skip

    def done(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the snapshot child; True when none is running."""
        if self._child is not None:
            self._child.join(timeout_s)
            return not self._child.is_alive()
        return True


def _snapshot_child(
    cfg: RingexConfig, seq: int, journal_lock_fd: int, let_go: int, router: int
) -> None:
    """The forked snapshot job. It lets go of the journal's lock it inherited (the parent's
    descriptor keeps the lock) and says so on ``let_go``, so a router restarted while it
    runs can open its journal; and it dies with the router rather than run on unwatched
    (the router's SIGTERM handler, inherited, would only set a flag nobody here reads)."""
    os.close(journal_lock_fd)
    os.write(let_go, b".")
    os.close(let_go)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_parent(parent=router)
    snapshot_job(cfg, seq)


def _snapshot_age_s(cfg: RingexConfig, seq: int) -> float:
    """How long ago the exchange snapshot at ``seq`` was written (0: none, or unknown)."""
    if not seq:
        return 0.0
    try:
        return max(0.0, time.time() - snapshot_store(cfg).path(seq).stat().st_mtime)
    except OSError:
        return 0.0
