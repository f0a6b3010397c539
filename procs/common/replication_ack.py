"""How far the standby has the primary's journal, shared by the router and the replication
source: a page of words both map, two doorbells beside it, and the router's wait on them.

    router --(journal_seq word, "appended" bell)--> source --Entries--> standby
    router <--(acked_seq word, "acked" bell)------- source <--Ack------ standby

In sync mode (``replication.mode``) the router publishes a batch to the matchers only once
``acked_seq`` covers its last seq (``SyncGate``): one round trip per batch, never per command.

Why these carriers:

- The words live in a file under ``var/<instance>/run``, mapped by both sides, not in a
  ``/ringex.*`` segment: ``ringex shm rm --stale`` takes a segment without a ring header for
  stale, and a process restarted after that removal would map a new block while its peer kept
  the old one. Each word is an aligned int64 (one ``mov`` on x86-64), and each side writes only
  its own 128-byte line.
- The bells are FIFOs, not semaphores: the source is an asyncio loop, which can watch a file
  descriptor but would need a thread to block on a semaphore; the router sleeps in ``poll``
  with a timeout, which costs no CPU. A bell carries no data: the waiter re-reads the words,
  so a ring that finds the FIFO full, or a stale byte from a dead peer, loses nothing.
"""

from __future__ import annotations

import contextlib
import logging
import math
import mmap
import os
import select
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from procs.common.durable import PRIVATE, make_dirs

log = logging.getLogger("ringex.replication")

SIZE: Final = 4096
LAYOUT: Final = int.from_bytes(b"RPLACK01", "little")
_LINE: Final = 16  # words per 128-byte line

# word 0: the layout tag. The router's line:
JOURNAL_SEQ: Final = 1 * _LINE + 0  # the last seq the router appended to its journal
DEGRADED: Final = 1 * _LINE + 1  # 1 while sync mode goes on without the standby
DEGRADED_TOTAL: Final = 1 * _LINE + 2  # how many times it has had to
DEGRADED_SINCE_NS: Final = 1 * _LINE + 3  # wall clock ns of the latest degradation
# The source's line:
ACKED_SEQ: Final = 2 * _LINE + 0  # every seq up to here is durable on the standby
CONNECTED: Final = 2 * _LINE + 1  # standbys connected now
SOURCE_PARKED: Final = 2 * _LINE + 2  # 1 while the source sleeps on the "appended" bell
FENCED: Final = 2 * _LINE + 3  # the newer epoch that fenced this primary (0: none; epochs.py)


#: The block's file in the run directory (removed by a rebuild, which lifts a fence).
BLOCK_FILE: Final = "replication.ack"


def ack_dir(var_dir: str, instance: str) -> Path:
    """Where an instance keeps its block and bells (its run directory)."""
    return Path(var_dir) / instance / "run"


class Doorbell:
    """A FIFO used as a wake-up call: ``ring`` never blocks, ``wait`` sleeps until rung or
    timed out. Either side may be (re)started first: both open the FIFO read-write, which on
    Linux neither blocks nor fails for want of a peer."""

    __slots__ = ("_poll", "fd", "path")

    def __init__(self, path: Path) -> None:
        self.path = path
        with contextlib.suppress(FileExistsError):
            os.mkfifo(path, 0o600)
        mode = os.stat(path).st_mode
        if not stat.S_ISFIFO(mode):
            raise ValueError(f"{path} is not a FIFO (mode {stat.filemode(mode)})")
        self.fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        self._poll = select.poll()
        self._poll.register(self.fd, select.POLLIN)

    def ring(self) -> None:
        with contextlib.suppress(BlockingIOError):  # full: a wake-up is pending anyway
            os.write(self.fd, b"\1")

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while len(os.read(self.fd, 4096)) == 4096:
                pass

    def wait(self, timeout_s: float) -> bool:
        """Sleep until rung (True) or ``timeout_s`` passes (False; ms granularity)."""
        rung = bool(self._poll.poll(math.ceil(timeout_s * 1000)))
        if rung:
            self.drain()
        return rung

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class AckBlock:
    """The shared words and both bells of one primary instance.

    Writers: the router writes ``JOURNAL_SEQ`` and the ``DEGRADED*`` words; the source writes
    ``ACKED_SEQ``, ``CONNECTED``, ``SOURCE_PARKED``, ``FENCED`` (which only ``failover.py
    demote`` clears, by removing the block). ``ACKED_SEQ`` is 0 until a standby has said
    where it is (a restarted source starts from 0: nothing is known acknowledged).
    """

    def __init__(self, directory: Path) -> None:
        make_dirs(directory)
        self.path = directory / BLOCK_FILE
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, PRIVATE)
        try:
            if os.fstat(fd).st_size < SIZE:
                os.ftruncate(fd, SIZE)  # zero-filled; both sides may do it, to the same size
            self._map = mmap.mmap(fd, SIZE, flags=mmap.MAP_SHARED)
        finally:
            os.close(fd)
        self.words = memoryview(self._map).cast("q")
        if self.words[0] == 0:
            self.words[0] = LAYOUT
        elif self.words[0] != LAYOUT:
            found = self.words[0]
            self.close()
            raise ValueError(f"{self.path}: layout tag {found:#x}, expected {LAYOUT:#x}")
        self.appended_bell = Doorbell(directory / "replication.appended")
        try:
            self.acked_bell = Doorbell(directory / "replication.acked")
        except BaseException:
            self.close()  # the "appended" bell's descriptor and the map
            raise

    @property
    def acked_seq(self) -> int:
        return self.words[ACKED_SEQ]

    # -- the router's side ----------------------------------------------------------------------

    def appended(self, seq: int) -> None:
        """The journal holds ``seq`` now: say so, and wake the source if it sleeps. The journal
        write before this and the source's file read after its flag are syscalls (full
        fences), so a source that found nothing new has its flag visible here."""
        self.words[JOURNAL_SEQ] = seq
        if self.words[SOURCE_PARKED]:
            self.appended_bell.ring()

    # -- the source's side ----------------------------------------------------------------------

    def acknowledged(self, seq: int) -> None:
        """A standby has every entry up to ``seq`` durable: publish it, wake the router (a
        byte per acknowledgement, and the router never reads a word it did not wait for)."""
        self.words[ACKED_SEQ] = seq
        self.acked_bell.ring()

    def status(self) -> dict[str, Any]:
        """What an operator sees (the source's status file, ``failover.py status``)."""
        w = self.words
        return {
            "journal_seq": w[JOURNAL_SEQ],
            "acked_seq": w[ACKED_SEQ],
            "lag": max(0, w[JOURNAL_SEQ] - w[ACKED_SEQ]),
            "standbys_connected": w[CONNECTED],
            "degraded": bool(w[DEGRADED]),
            "degraded_total": w[DEGRADED_TOTAL],
            "degraded_since_ns": w[DEGRADED_SINCE_NS] if w[DEGRADED] else 0,
            "fenced_by_epoch": w[FENCED],
        }

    def close(self) -> None:
        for bell in (getattr(self, "appended_bell", None), getattr(self, "acked_bell", None)):
            if bell is not None:
                bell.close()
        if not self._map.closed:
            self.words.release()
            self._map.close()


#: Longest the router sleeps on the "acked" bell before it drains the matchers' events again.
MAX_PARK_S: Final = 0.004


class SyncGate:
    """The router's side of sync mode: may the batch that ends at ``seq`` go on?

    ``wait`` returns True once the standby has acknowledged ``seq`` as durable. Without that
    acknowledgement for ``timeout_ms`` (0: wait forever) it returns True *degraded*: the router
    goes on without the standby (async), logs it as an error, sets the ``DEGRADED`` word (the
    source's status file shows it), and returns to sync at the first batch before which the
    standby has acknowledged everything journaled (``wait`` and ``poll`` check it). It returns
    False when ``stop()`` turns true first, or the primary is fenced (``FENCED``: a standby of a
    newer epoch exists, so going on alone would make two primaries): the caller publishes
    nothing of the batch.

    While waiting it calls ``drain()`` (the router's settle), so a matcher never blocks on a
    full output ring, and sleeps on the "acked" bell in between (``spin``: re-checks instead,
    for a configured busy-spinning router). Called from the router's loop only.
    """

    def __init__(
        self,
        block: AckBlock,
        timeout_ms: int,
        *,
        spin: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.block = block
        self.timeout_s = timeout_ms / 1000
        self.spin = spin
        self.clock = clock
        # a restarted router keeps the verdict, unless it now has no timeout: then it never
        # goes on without the standby (README), whatever an earlier run decided. The word
        # stays until the standby holds everything journaled, though: it is what
        # failover.py's promote reads of seqs acknowledged to clients without it (review 51)
        self.degraded = bool(block.words[DEGRADED]) and timeout_ms > 0
        self._word_left = bool(block.words[DEGRADED]) and not timeout_ms
        self._degraded_at = clock()

    def wait(
        self,
        seq: int,
        drain: Callable[[], int] = lambda: 0,
        stop: Callable[[], bool] = lambda: False,
        before: int | None = None,
    ) -> bool:
        """``before``: the last seq journaled before this batch (default ``seq - 1``)."""
        words = self.block.words
        if words[FENCED]:  # degraded or not: a primary whose epoch is over publishes nothing
            return False
        if words[ACKED_SEQ] >= seq:
            if self.degraded or self._word_left:
                self._resume(seq)
            return True
        if self.degraded and not self.poll(seq - 1 if before is None else before):
            return True  # still behind: async until it catches up
        deadline = None if not self.timeout_s else self.clock() + self.timeout_s
        bell, pause = self.block.acked_bell, 0.001
        while words[ACKED_SEQ] < seq:
            if stop() or words[FENCED]:
                return False
            if drain():
                pause = 0.001
            if words[ACKED_SEQ] >= seq:
                break
            left = MAX_PARK_S
            if deadline is not None:
                left = deadline - self.clock()
                if left <= 0:
                    self._degrade(seq)
                    return True
            if not self.spin:
                bell.wait(min(pause, left))
                pause = min(MAX_PARK_S, pause * 2)
        if self._word_left:  # acknowledged, and everything before (sync never skipped)
            self._resume(seq)
        return True

    @property
    def catching_up(self) -> bool:
        """Degraded, or its word left set by an earlier run: ``poll`` clears it once the
        standby holds everything journaled (the router polls while idle)."""
        return self.degraded or self._word_left

    def poll(self, journaled: int) -> bool:
        """When degraded: resume sync if the standby has everything up to ``journaled`` (the
        router calls this when idle too). Returns whether sync is on."""
        if (self.degraded or self._word_left) and self.block.words[ACKED_SEQ] >= journaled:
            self._resume(journaled)
        return not self.degraded

    def _degrade(self, seq: int) -> None:
        words = self.block.words
        self.degraded = True
        self._degraded_at = self.clock()
        words[DEGRADED_SINCE_NS] = time.time_ns()
        words[DEGRADED_TOTAL] += 1
        words[DEGRADED] = 1
        log.error(
            "SYNC REPLICATION SUSPENDED: the standby has not acknowledged seq %d within %d ms "
            "(it has %d, %d standby(s) connected); going on WITHOUT it (async) until it "
            "catches up: orders acknowledged meanwhile can be lost in a failover",
            seq, round(self.timeout_s * 1000), words[ACKED_SEQ], words[CONNECTED],
        )  # fmt: skip

    def _resume(self, seq: int) -> None:
        self.degraded = self._word_left = False
        self.block.words[DEGRADED] = 0
        log.warning(
            "sync replication resumed: the standby has every entry up to seq %d "
            "(after %.1f s without it)",
            seq, self.clock() - self._degraded_at,
        )  # fmt: skip
