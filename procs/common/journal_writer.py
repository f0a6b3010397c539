"""The journal's writer: appends, group commit, segment rollover, archiving.

The format, the reader and the tail rules are ``procs.common.journal``'s; this module is what
only the router (and a standby) needs: one writer per directory, under an exclusive lock,
fsyncing per the policy (``batch``: every append; ``pipelined``: every append too, as its
caller says: ``sync`` inline, or ``maybe_sync`` on a thread, so the caller decides its next
batch while the fsync runs (one fsync then covers every batch appended meanwhile: a group
commit whose batches grow while the disk is slow);
``interval``: at most every ``fsync_interval_ms``; ``none``: the OS decides, except that a
full segment is always fsynced before the next is created, so only the last segment can
ever have a torn tail). Under ``pipelined`` and ``interval`` an append returns before it is
durable: ``durable_seq`` says how far it is.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import zlib
from array import array
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Final, Literal

from procs.common import journal_history
from procs.common.durable import PRIVATE, fsync_dir, make_dirs, write_all
from procs.common.journal import (
    HEADER_SIZE,
    SUFFIX,
    U32,
    U64,
    DirectoryLock,
    EntryLayout,
    JournalError,
    JournalReader,
    JournalSequenceError,
    entry_layout,
    list_segments,
    pack_header,
    segment_name,
)
from procs.common.journal_archive import archive_segments_before, unarchive_after
from procs.common.journal_durable import DurableMark
from procs.common.rules_version import RULES_VERSION

log = logging.getLogger("ringex.journal")

FsyncPolicy = Literal["batch", "pipelined", "interval", "none"]
FSYNC_POLICIES: Final[tuple[FsyncPolicy, ...]] = ("batch", "pipelined", "interval", "none")
DEFAULT_SEGMENT_BYTES: Final = 256 * 2**20


class JournalWriter:
    """Appends sequenced slot images to a journal directory; one writer per directory.

    Opening creates the directory, repairs a torn tail and continues at ``next_seq``, so a
    restart after a crash and a first start run the same code. An empty journal begins at
    ``start_seq`` (1, but for one that holds a part cut from another: ``cut_after``). A
    writer of other ``rules`` than the last segment's begins a segment of its own at
    ``next_seq``, so each segment's header says what rules its entries were sequenced under
    (``procs/common/rules_version.py``; an empty one is replaced). Only
    the router's sequencing loop calls ``append``, ``sync``, ``maybe_sync``, ``collect`` and
    ``wait_durable``; a failed write leaves the writer unusable (reopen it: the repair on
    open cuts whatever the failure left half-written).
    """

    def __init__(
        self,
        directory: Path | str,
        *,
        slot_size: int,
        schema_id: int,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        fsync: FsyncPolicy = "batch",
        fsync_interval_ms: float = 5,
        clock: Callable[[], int] = time.monotonic_ns,
        start_seq: int = 1,
        cut_on_failure: bool = False,
        rules: int = RULES_VERSION,
    ) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync={fsync!r}: expected one of {FSYNC_POLICIES}")
        if fsync_interval_ms < 0:
            raise ValueError(f"fsync_interval_ms={fsync_interval_ms} must not be negative")
        #: a failed fsync cuts the entries it did not make durable (``_fsync_failed``): for a
        #: journal no other process tails while it is written (a standby's)
        self.cut_on_failure = cut_on_failure
        self.directory = Path(directory)
        self.schema_id = schema_id
        self.rules = rules  # in each segment's header (0: not said)
        self.fsync: FsyncPolicy = fsync
        layout = self._layout = EntryLayout(slot_size)
        self._capacity = (segment_bytes - HEADER_SIZE) // layout.size
        if self._capacity < 1:
            raise ValueError(
                f"segment_bytes {segment_bytes} cannot hold the {HEADER_SIZE}-byte header and "
                f"one {layout.size}-byte entry"
            )
        self._interval_ns = int(fsync_interval_ms * 1_000_000)
        self._clock = clock
        # native 8-byte words are the file's little-endian u64s only on a little-endian host
        self._by_words = slot_size % 8 == 0 and sys.byteorder == "little"
        self._buf = bytearray(0)
        self._failed: BaseException | None = None
        #: time spent in fsyncs run inline, or waited for (ns): the caller waited on them
        #: (the router's ``time_use.py``); a pipelined fsync on the thread is not counted
        #: here, unless the caller waits for it
        self.inline_fsync_ns = 0
        # "pipelined": the fsync in flight and the last seq it makes durable; its thread
        self._flight: tuple[Future[None], int] | None = None
        self._syncer: ThreadPoolExecutor | None = None

        make_dirs(self.directory)
        self._lock = DirectoryLock(self.directory)
        try:
            for stale in self.directory.glob(f"*{SUFFIX}.tmp"):  # a segment never renamed
                stale.unlink()
            reader = JournalReader(self.directory, slot_size=slot_size, schema_id=schema_id)
            tail, _ = reader._repair()
            self._fd = -1
            self._count = 0  # entries in the open segment
            self._written = start_seq - 1 if tail is None else tail.last_seq
            if tail is not None:
                self._fd = os.open(tail.path, os.O_WRONLY | os.O_APPEND)
                self._count = (tail.good_end - HEADER_SIZE) // entry_layout(tail.slot_size).size
                os.fsync(self._fd)  # what a crashed run left in the page cache is durable now
                # the next append begins a segment of these rules, this schema id and this
                # slot size (an earlier build's segment, read under a legacy alias or with
                # its images re-framed, is never appended to)
                if (tail.rules, tail.schema, tail.slot_size) != (rules, schema_id, slot_size):
                    fd, self._fd = self._fd, -1
                    os.close(fd)
                    if self._count == 0:  # holds nothing: the new one takes its name
                        tail.path.unlink()
                        fsync_dir(self.directory)
                    self._count = 0
            # all of it is durable now: the readers beside it read that far (``durable``)
            self._mark = DurableMark(self.directory, self._written)
        except BaseException:  # (an fsync that failed: the segment's descriptor goes too)
            if getattr(self, "_fd", -1) >= 0:
                os.close(self._fd)
            self._lock.close()
            raise
        self._synced = self._written
        self._last_sync_ns = clock()

    @property
    def next_seq(self) -> int:
        """The seq the next ``append`` must start with."""
        return self._written + 1

    @property
    def durable_seq(self) -> int:
        """The last seq known durable (fsynced); under ``"none"`` the last seq written."""
        return self._written if self.fsync == "none" else self._synced

    def append(self, first_seq: int, images: bytes | bytearray | memoryview, count: int) -> None:
        """Append ``count`` slot images (``count * slot_size`` bytes) as seqs from
        ``first_seq``, which must be ``next_seq``; then sync as the policy says."""
        if self._failed is not None:
            raise JournalError(f"writer for {self.directory} failed earlier: {self._failed!r}")
        if first_seq != self._written + 1:
            raise JournalSequenceError(
                f"append first_seq={first_seq}, but the journal's next_seq={self._written + 1} "
                f"({self.directory})"
            )
        src = memoryview(images)
        if src.format != "B" or src.ndim != 1:
            src = src.cast("B")
        slot = self._layout.slot_size
        if count < 0 or src.nbytes != count * slot:
            raise ValueError(
                f"images hold {src.nbytes} bytes; count={count} slots of {slot} bytes "
                f"need {count * slot}"
            )
        try:
            done = 0
            while done < count:
                if self._fd < 0 or self._count >= self._capacity:
                    self._roll()
                n = min(count - done, self._capacity - self._count)
                self._write(src, done, n)
                done += n
            if self.fsync == "batch":
                self.sync()
            elif self.fsync == "interval":
                self.maybe_sync()
            elif self.fsync == "none":  # promised nothing: the readers read what is written
                self._mark.set(self._written)
        except OSError as exc:  # named by the directory, errno kept (review 211: the
            if exc.filename is not None:  # router's log said only "No space left on device")
                self._failed = exc
                raise
            named = OSError(exc.errno, exc.strerror, str(self.directory))
            self._failed = named
            raise named from exc
        except BaseException as exc:
            self._failed = exc
            raise

    @property
    def failed(self) -> BaseException | None:
        """What made the writer unusable (a failed write or fsync), or None."""
        return self._failed

    def _usable(self) -> None:
        """Raise if a write or an fsync failed before. After a failed fsync the kernel may
        have dropped the dirty pages and reports the error once: a later fsync returns 0
        without making them durable, so nothing is taken as durable from then on (review
        42: a router's close answered a held batch that a host crash then lost)."""
        if self._failed is not None:
            raise JournalError(f"writer for {self.directory} failed earlier: {self._failed!r}")

    def sync(self) -> None:
        """Make everything appended durable."""
        self._usable()
        with self._inline():  # a pipelined fsync first: it may hold the open segment's fd
            self._reap(None)
        if self._written != self._synced:
            self._fsync_open()  # earlier segments were fsynced when sealed
            self._durable(self._written)
        self._last_sync_ns = self._clock()

    def maybe_sync(self) -> bool:
        """Under ``"interval"``, sync if the interval has passed and something is pending;
        under ``"pipelined"``, take a finished fsync's entries as durable and start the next
        fsync if entries wait for one. Return whether more is durable. The caller calls this
        before it reads ``durable_seq`` and when idle."""
        self._usable()
        if self.fsync == "pipelined":
            return self._sync_behind()
        if self.fsync != "interval" or self._written == self._synced:
            return False
        if self._clock() - self._last_sync_ns < self._interval_ns:
            return False
        self.sync()
        return True

    def collect(self) -> bool:
        """Under ``"pipelined"``, take a finished fsync's entries as durable and start none
        (whether the next runs on the thread or inline is the step's to decide); otherwise
        ``maybe_sync``. Return whether more is durable."""
        if self.fsync != "pipelined":
            return self.maybe_sync()
        self._usable()
        return self._reap(0.0)

    @property
    def syncing(self) -> bool:
        """Under ``"pipelined"``: appended entries are not durable yet (an fsync is running
        or due); ``wait_durable`` waits for them."""
        return self.fsync == "pipelined" and self._written != self._synced

    def wait_durable(self, timeout_s: float) -> bool:
        """Under ``"pipelined"``, wait up to ``timeout_s`` for the fsync in flight (starting
        one if entries wait for it); return whether more is durable."""
        if self.fsync != "pipelined":
            return False
        self._usable()
        self._sync_behind()
        advanced = self._reap(timeout_s)
        return self._sync_behind() or advanced

    def _sync_behind(self) -> bool:
        """``"pipelined"``: take the finished fsync's entries as durable and start the next
        one, on the writer's thread, if entries wait for it; whether more is durable."""
        advanced = self._reap(0.0)
        if self._flight is None and self._written != self._synced and self._fd >= 0:
            if self._syncer is None:
                self._syncer = ThreadPoolExecutor(1, thread_name_prefix="journal-fsync")
            self._flight = (self._syncer.submit(os.fsync, self._fd), self._written)
        return advanced

    def _reap(self, timeout_s: float | None) -> bool:
        """The fsync in flight, once done (waiting up to ``timeout_s``; None: until it is):
        its entries are durable. One that failed leaves the writer unusable, as a failed
        inline fsync does, and raises ``JournalError``."""
        if self._flight is None:
            return False
        future, seq = self._flight
        if not future.done():  # (not ``result``'s TimeoutError: an fsync failing with
            wait([future], timeout=timeout_s)  # ETIMEDOUT, an NFS soft mount's, raises
            if not future.done():  # one too, and was taken for an fsync still running,
                return False  # review 172)
        try:
            future.result()
        except OSError as exc:
            self._flight = None
            self._fsync_failed(exc)
            raise JournalError(
                f"fsync of {self.directory} through seq {seq} failed (durable through "
                f"{self._synced}): {exc}"
            ) from exc
        self._flight = None
        self._durable(max(self._synced, seq))
        self._last_sync_ns = self._clock()
        return True

    def _fsync_open(self) -> None:
        """fsync the open segment inline; a failure goes through ``_fsync_failed``."""
        with self._inline():
            try:
                os.fsync(self._fd)
            except OSError as exc:
                self._fsync_failed(exc)
                raise

    @contextlib.contextmanager
    def _inline(self) -> Iterator[None]:
        """Count what runs in it as an fsync the caller waits on (``inline_fsync_ns``): its
        own, or the pipelined one in flight that it must wait for first (review 102)."""
        began = time.perf_counter_ns()
        try:
            yield
        finally:
            self.inline_fsync_ns += time.perf_counter_ns() - began

    def _fsync_failed(self, exc: OSError) -> None:
        """An fsync of the open segment failed: the writer is unusable. With
        ``cut_on_failure``, the entries it did not make durable are cut from the file too:
        the kernel may have marked their pages clean without writing them, so a later
        open's fsync returns 0 and a restart took them for durable (a standby acknowledging
        what its disk had lost: review 42). Only where nothing else tails the file: the
        primary's replication source and database writer read the router's journal as it
        is written, and would go on past a cut into the other commands a restarted router
        journals there (the reread of review 42). Entries past the last good fsync are only
        in the open segment (a seal's failed fsync comes here before the roll). Under
        ``"none"`` too: it promises a router nothing, but a standby (the one writer that
        cuts) syncs explicitly whatever the policy, before it acknowledges (review 51)."""
        self._failed = exc
        if not self.cut_on_failure or self._written == self._synced:
            return
        keep = self._count - (self._written - self._synced)
        if keep < 0:
            return
        try:
            os.ftruncate(self._fd, HEADER_SIZE + keep * self._layout.size)
        except OSError:
            return  # a dead disk: the next open's repair and its CRCs are what is left
        self._written, self._count = self._synced, keep

    def sync_due_in_s(self) -> float | None:
        """Under ``"interval"`` with something pending, the seconds until ``maybe_sync`` is
        due (an idle caller waits no longer than that); else None."""
        if self.fsync != "interval" or self._written == self._synced:
            return None
        return max(0.0, (self._interval_ns - (self._clock() - self._last_sync_ns)) / 1e9)

    def archive_before(self, seq: int, archive_dir: Path | str) -> list[Path]:
        """Move the segments whose entries all precede ``seq`` to ``archive_dir``."""
        return archive_segments_before(self.directory, seq, Path(archive_dir))

    @property
    def lock_fd(self) -> int:
        """The directory lock's descriptor: a forked child closes its copy (the lock stays
        the parent's)."""
        return self._lock.fd

    def _durable(self, seq: int) -> None:
        """Entries up to ``seq`` are fsynced: so the mark says (``journal_durable.py``)."""
        self._synced = seq
        if self.fsync != "none":
            self._mark.set(seq)

    def close(self) -> None:
        """Sync (unless the policy is ``"none"`` or a write failed) and release the directory."""
        if self._lock.fd < 0:
            return
        try:
            if self._flight is not None and self._failed is not None:
                with contextlib.suppress(JournalError):  # done with the descriptor first
                    self._reap(None)
            if self._fd >= 0:
                try:
                    if self.fsync != "none" and self._failed is None:
                        self.sync()
                finally:
                    os.close(self._fd)
                    self._fd = -1
        finally:
            if self._syncer is not None:
                self._syncer.shutdown(wait=True)
                self._syncer = None
            self._mark.close()  # (the close's sync marked all of it, unless it failed)
            self._lock.close()

    def __enter__(self) -> JournalWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, src: memoryview, start: int, n: int) -> None:
        """Entries for images ``start .. start + n`` of ``src``, in one buffer, one write."""
        need = n * self._layout.size
        if len(self._buf) < need:
            self._buf = bytearray(need)  # zeroed, so every entry's padding stays zero
        buf = memoryview(self._buf)[:need]
        slot = self._layout.slot_size
        images = src[start * slot : (start + n) * slot]
        if self._by_words:
            self._fill_by_words(buf, images, n)
        else:
            self._fill_each(buf, images)
        write_all(self._fd, buf)
        self._count += n
        self._written += n

    def _fill_by_words(self, buf: memoryview, images: memoryview, n: int) -> None:
        """Entries as columns of 8-byte words: a strided copy per column of seqs, image words
        and CRCs, so the per-entry Python work is one slice and one CRC (2x the simple loop)."""
        body, words = self._layout.body, self._layout.size // 8
        slot_words = words - 2  # seq | image words | CRC and its 4 zero bytes
        dst, src = buf.cast("Q"), images.cast("Q")
        seq = self._written + 1
        dst[0::words] = array("Q", range(seq, seq + n))
        for k in range(slot_words):
            dst[1 + k :: words] = src[k::slot_words]
        crc32 = zlib.crc32
        dst[words - 1 :: words] = array(
            "Q", [crc32(buf[p : p + body]) for p in range(0, len(buf), words * 8)]
        )

    def _fill_each(self, buf: memoryview, images: memoryview) -> None:
        """Entries one at a time: for slot sizes that are not a multiple of 8."""
        size_e, body, slot = self._layout.size, self._layout.body, self._layout.slot_size
        pack_seq, pack_crc, crc32 = U64.pack_into, U32.pack_into, zlib.crc32
        seq = self._written + 1
        at = 0
        for pos in range(0, len(buf), size_e):
            pack_seq(buf, pos, seq)
            buf[pos + 8 : pos + body] = images[at : at + slot]
            pack_crc(buf, pos + body, crc32(buf[pos : pos + body]))
            seq += 1
            at += slot

    def _roll(self) -> None:
        """Seal the open segment (fsync, close) and start one at ``next_seq``."""
        with self._inline():  # a pipelined fsync of the segment ends before its descriptor
            self._reap(None)
        if self._fd >= 0:
            self._fsync_open()  # only the last segment may have a torn tail
            self._durable(self._written)
            os.close(self._fd)
            self._fd = -1
        first = self._written + 1
        path = self.directory / segment_name(first)
        if path.exists():
            raise JournalError(f"segment {path} exists already; next_seq is {first}")
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, PRIVATE)
        try:
            header = pack_header(self._layout, self.schema_id, first, time.time_ns(), self.rules)
            write_all(fd, header)
            with self._inline():
                os.fsync(fd)
                os.rename(tmp, path)
                os.fsync(self._lock.fd)  # the directory: the name is durable before any entry
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        self._fd = fd
        self._count = 0


def cut_after(
    directory: Path,
    seq: int,
    aside: Path,
    *,
    slot_size: int,
    schema_id: int,
    locked: bool = False,
    archive: Path | None = None,
) -> int:
    """Move every entry after ``seq`` out of the journal ``directory`` into the journal
    ``aside`` (one of its own, beginning at ``seq + 1``, kept for the operator), and return
    how many moved; archived segments (``archive``) that hold some of them come back first.
    What rebuilding an old primary as a standby does with the tail it wrote after the
    standby was promoted. Holds the directory's lock (``locked``: the caller holds it): no
    writer may have it open."""
    reader = JournalReader(directory, slot_size=slot_size, schema_id=schema_id)
    with contextlib.nullcontext() if locked else DirectoryLock(directory):
        last = reader.last_seq()
        if last <= seq:
            return 0
        if archive is not None:  # (review 75; and a copy a killed move left, review 77)
            unarchive_after(directory, archive, seq)
        segments = list_segments(directory)
        if segments[0][0] > seq + 1:
            raise JournalError(
                f"cannot cut {directory} after seq {seq}: its oldest segment begins at "
                f"{segments[0][0]} (the ones before were archived, and are not in "
                f"{archive}: move them back into the journal)"
            )
        # a segment at a time, each copy under its segment's rules (their entries stay
        # refused by a replay of other rules), so a segment's header says its entries' rules
        ends = [first for first, _ in segments[1:]] + [last + 1]
        checked = False
        for (first, path), end in zip(segments, ends, strict=True):
            if end <= seq + 1:
                continue
            rules = reader.segment_rules(first, path)
            with JournalWriter(
                aside, slot_size=slot_size, schema_id=schema_id, start_seq=seq + 1, rules=rules
            ) as out:
                if not checked and out.next_seq != seq + 1:  # a cut that crashed copied these
                    _check_copied(aside, reader, seq, out.next_seq, slot_size, schema_id)
                checked = True
                if out.next_seq < end:
                    _copy(reader, out, end)
        # the history chain's keys of blocks past ``seq`` go first: they are of entries cut
        # (a key is checked against its block's last entry anyway, ``journal_history.py``)
        journal_history.HistoryChain(directory).truncate(seq // journal_history.BLOCK)
        # Newest first, the directory synced before the truncation: a crash anywhere leaves
        # a contiguous journal (longer than wanted), which running the cut again finishes.
        for k, (first_seq, path) in reversed(list(enumerate(segments))):
            if first_seq > seq and k > 0:
                path.unlink()
                continue
            fsync_dir(directory)
            layout = reader.segment_layout(first_seq, path)  # (an older build's slots, maybe)
            keep = HEADER_SIZE + max(0, seq + 1 - first_seq) * layout.size
            with open(path, "r+b") as f:
                if os.fstat(f.fileno()).st_size > keep:
                    f.truncate(keep)
                    os.fsync(f.fileno())
        fsync_dir(directory)
    return last - seq


def _copy(reader: JournalReader, out: JournalWriter, end: int) -> None:
    """Append the entries of ``reader`` from ``out``'s next seq up to ``end`` to ``out``."""
    chunk: list[bytes] = []
    for seq, image in reader.entries(out.next_seq):
        if seq >= end:
            break
        chunk.append(bytes(image))
        if len(chunk) == 4096:
            out.append(out.next_seq, b"".join(chunk), len(chunk))
            chunk.clear()
    if chunk:
        out.append(out.next_seq, b"".join(chunk), len(chunk))


def _check_copied(
    aside: Path, reader: JournalReader, seq: int, upto: int, slot_size: int, schema_id: int
) -> None:
    """``aside`` must hold exactly the journal's entries ``seq + 1 .. upto - 1`` (what a cut
    that crashed had copied); anything else is another journal, refused."""
    copied = JournalReader(aside, slot_size=slot_size, schema_id=schema_id)
    pairs = zip(copied.entries(seq + 1), reader.entries(seq + 1), strict=False)
    for (theirs_seq, theirs), (our_seq, image) in pairs:
        if theirs_seq != our_seq or bytes(theirs) != image:
            raise JournalError(
                f"{aside} holds a journal already (next seq {upto}) that is not this journal's "
                f"tail after seq {seq}: entry {theirs_seq} differs"
            )
        if theirs_seq == upto - 1:
            return
    raise JournalError(f"{aside} holds a journal already (next seq {upto}) past this journal's")
