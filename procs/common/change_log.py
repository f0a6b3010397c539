"""A store's changes since its snapshot: ``<name>.log`` beside ``<name>.json``.

The users (``users.json``) and API keys (``apikeys.json``) were rewritten whole at every
change and read again whole by every gateway after every change anywhere: at 100,000 keys
one login held each gateway's event loop 330-600 ms, and at 60,000 users an added user
110-140 ms (review 169). Now a change (records put whole, records dropped by key: one frame,
whole or not at all) is appended to ``<name>.log`` and fsynced, and a reader holds the log
open and reads only what it gained: a change costs the same at ten users or a million. The
snapshot is rewritten at a compaction only, once the log holds more changes than the store
holds records (``COMPACT_MIN`` at least), so its cost spread over the changes stays
constant too.

Layout: ``MAGIC``, a header frame (``LogHeader``: the log's generation, and the bytes of
frames after it that it carries over from the log before, the *bridge*), then one
``crc_frames`` frame per change (the store's JSON). A torn last frame (a crash mid-append)
is cut, by the next writer before it appends and by readers as they read; damage (a frame
that fails its CRC with frames after it) raises ``ChangeLogError`` naming the file and byte.

A compaction, under the store's lock, writes the snapshot of everything, marked with the
next generation, then a new log of that generation whose bridge is the old log's own
changes (past its bridge), each written aside, fsynced and renamed over. A snapshot of
generation G holds every change of the logs before G, and is continued by log G; so a
reader that finds

- a log of the snapshot's generation applies all of it (the bridge's changes are the
  snapshot's last ones, in order: applied again they leave it as it was);
- a log of the next generation (the old snapshot with the new log: a standby shipped the log
  first, ``procs/replica/files.py``) applies all of it, the bridge bringing the snapshot
  up to the compaction;
- an older log (the new snapshot with the old log: a crash between the two renames, or a
  standby shipped the snapshot first) reads the snapshot alone: it holds all of that log,
  where the log may hold only a part of what the snapshot does;
- a log past the next generation: ``ChangeLogError`` (changes are missing between them).

A snapshot without a generation (an older build's, or one edited by hand without it) is
generation 0: a first log (generation 1) continues it, and a later one is not read (the
snapshot was written by other hands than a store's, and is taken whole: said in the log).

A reader that held the old log reads it to its end (no writer adds to it once the new one is
in place), checks that the new log is of the next generation and that its bridge is as long
as what it read past the old one's bridge (its bytes are not compared: the compaction copied
them under the lock), and goes on after it without reading the snapshot; a reader that
cannot (it missed a generation) reads both again.

Not thread-safe: a store serialises its calls (``UserStore``'s lock; ``ApiKeyStore`` runs on
one event loop).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import msgspec

from procs.common.crc_frames import HEADER, frame, read_frames
from procs.common.durable import PRIVATE, make_dirs, replace_durably, write_all

log = logging.getLogger("ringex.stores")

#: What a log opens with: this layout, version 1.
MAGIC: Final = b"RXCHLOG\x01"
#: The most bytes of one change's body (a few records: a user's keys evicted and one made).
LONGEST: Final = 1 << 20
#: A compaction waits for at least this many changes past the snapshot.
COMPACT_MIN: Final = 4096


class LogHeader(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    generation: int  # the snapshot's it continues (a first log beside an older build's: 1)
    bridge: int = 0  # bytes of frames after this header: the log before's own changes


_header_encoder = msgspec.json.Encoder()
_header_decoder = msgspec.json.Decoder(LogHeader)

_Stamp = tuple[int, int, int]  # (st_ino, st_mtime_ns, st_size)
#: A log's bytes up to the end of its header frame, at most (the header's JSON is short).
_HEAD_BYTES: Final = len(MAGIC) + HEADER.size + 256


class ChangeMadeError(OSError):
    """A change appended whole whose fsync failed: made (every reader may have it, and this
    store applied it) but it may not survive a crash of the machine. Its caller says so,
    and goes on as after a change made (review 174: "not changed" was said of a change
    every gateway took)."""


class ChangeLogError(ValueError):
    """A log that is damaged (not torn by a crash) or not a log; names the file and byte."""


def _stamp_of(st: os.stat_result) -> _Stamp:
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _stamp(path: Path) -> _Stamp | None:
    try:
        return _stamp_of(path.stat())
    except FileNotFoundError:
        return None


def _read_from(fd: int, at: int) -> bytes:
    """The bytes of ``fd`` from ``at`` to its end as it is now."""
    size = os.fstat(fd).st_size
    parts, want = [], size - at
    while want > 0:
        part = os.pread(fd, want, at)
        if not part:
            break
        parts.append(part)
        at, want = at + len(part), want - len(part)
    return b"".join(parts)


def _read_header(data: bytes, path: Path) -> tuple[LogHeader, int]:
    """The header of the log ``data`` (read from ``path``) and where its frames start;
    ``ChangeLogError`` naming ``path`` if it has none."""
    if not data.startswith(MAGIC):
        raise ChangeLogError(f"{path}: not a change log (it does not open with {MAGIC!r})")
    frames, _, why = read_frames(data[:_HEAD_BYTES], len(MAGIC), _HEAD_BYTES)
    if not frames:  # (written whole, renamed in: never torn)
        why = why or "fails its CRC or is cut short"
        raise ChangeLogError(f"{path}: its header frame at byte {len(MAGIC)} {why}")
    try:
        header = _header_decoder.decode(frames[0][1])
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ChangeLogError(f"{path}: its header cannot be read: {exc}") from None
    start = len(MAGIC) + HEADER.size + len(frames[0][1])
    if header.bridge < 0 or header.generation < 1:
        raise ChangeLogError(f"{path}: its header {header} is not a log's")
    return header, start


def log_generation(path: Path) -> int | None:
    """The generation the change log at ``path`` says in its header; None where there is
    none to read (no file, not a log, a header that fails its check)."""
    try:
        with open(path, "rb") as f:
            data = f.read(_HEAD_BYTES)
    except FileNotFoundError:
        return None
    try:
        return _read_header(data, path)[0].generation
    except ChangeLogError:
        return None


def snapshot_generation(path: Path) -> int | None:
    """The ``"generation"`` a snapshot at ``path`` says (0: none, an older build's or a hand
    edit's); None where it cannot be read."""
    try:
        doc = msgspec.json.decode(path.read_bytes())
    except (FileNotFoundError, msgspec.DecodeError):
        return None
    if not isinstance(doc, dict):
        return 0 if isinstance(doc, list) else None
    generation = doc.get("generation", 0)
    return generation if isinstance(generation, int) else None


def log_past_snapshot(log: Path, snapshot: Path) -> bool:
    """Whether the log at ``log`` is past the generation that continues the snapshot at
    ``snapshot``, a pair that does not load (``ChangeLogError``: the changes between are
    missing). A snapshot without a generation is continued by any log (a hand edit's: read
    alone), and a file that cannot be read is not judged here."""
    log_gen, snap_gen = log_generation(log), snapshot_generation(snapshot)
    if not log_gen or not snap_gen:
        return False
    return log_gen > snap_gen + 1


class LoggedSnapshot:
    """``snapshot`` and its log (``<snapshot stem>.log``): the files; the store decodes.

    The store's callbacks: ``load(data)`` makes its state the snapshot's (``data`` None: no
    snapshot, no records) and says its generation, raising ValueError naming why it cannot;
    ``apply(body)`` applies one change (ValueError for one it cannot read); ``dump(G)`` is
    the state as a snapshot of generation G; ``size()`` the records it holds. Writers call
    ``append`` inside ``locked()``.
    """

    def __init__(
        self,
        snapshot: Path,
        lock: Path,
        *,
        load: Callable[[bytes | None], int],
        apply: Callable[[bytes], None],
        dump: Callable[[int], bytes],
        size: Callable[[], int],
        compact_min: int = COMPACT_MIN,
    ) -> None:
        self.snapshot = snapshot
        self.path = snapshot.with_suffix(".log")
        self._lock = lock
        self._load, self._apply, self._dump, self._size = load, apply, dump, size
        self.compact_min = compact_min
        self._fd = -1  # the log read (-1: none: there was no log at the last reload)
        self._inode = 0
        self._at = 0  # where its whole frames read end
        self._own_at = 0  # where its own changes start (past the header and the bridge)
        self._own = 0  # its own changes read (a compaction is due past the store's size)
        self._generation = 0
        self._snap: _Stamp | None = None  # the snapshot's stamp as last read or adopted
        self._snap_generation = 0
        self._log_seen: _Stamp | None = None  # the log's, when none is held (older, or none)
        self._broken: object = None  # the files' stamps when they last failed to read

    # -- reading -------------------------------------------------------------------------------

    def reload(self) -> None:
        """Read the snapshot and the whole log again (a start, or a change not followed). A
        failure (ValueError naming the file, OSError) leaves nothing held: the next look
        reads both again."""
        try:
            self._reload()
        except BaseException:
            self._failed()
            raise
        self._broken = None

    def refresh(self) -> None:
        """What changed since the last look: the log's new changes (a ``pread`` and two
        ``stat``s when nothing did), a compaction followed, else everything read again. A
        failure leaves nothing held, as ``reload``'s."""
        try:
            self._refresh()
        except BaseException:
            self._failed()
            raise
        self._broken = None

    def moved(self) -> bool:
        """Whether the log may hold a change not read here: the held log grew, or was
        replaced (unlinked: a compaction renamed its successor over it), or none is held and
        the path's differs from the one last seen. One ``fstat`` (a ``stat`` when no log is
        held), about a microsecond: a store can ask on every request (review 229)."""
        if self._fd < 0:
            return _stamp(self.path) != self._log_seen
        st = os.fstat(self._fd)
        return st.st_size != self._at or st.st_nlink == 0

    def unchanged_since_failure(self) -> bool:
        """Whether the last read failed and neither file has changed since: a store need not
        read them again (nor say why again)."""
        return self._broken is not None and self._broken == self._stamps()

    def failed_anew(self) -> bool:
        """After a failed read: remember the files as they are now; True unless they were
        the same at the failure before (a store says why once, until they change)."""
        stamps = self._stamps()
        anew, self._broken = stamps != self._broken, stamps
        return anew

    def _stamps(self) -> tuple[_Stamp | None, _Stamp | None]:
        return _stamp(self.snapshot), _stamp(self.path)

    def _failed(self) -> None:
        self.close()
        self._snap = (-1, -1, -1)  # no file's: the next look reads both again

    def _reload(self) -> None:
        self.close()
        try:
            fd = os.open(self.path, os.O_RDONLY)
            self._log_seen = _stamp_of(os.fstat(fd))
        except FileNotFoundError:
            fd, self._log_seen = -1, None
        try:
            try:  # the log is opened first: a compaction between the two reads then pairs an
                with self.snapshot.open("rb") as f:  # old log with a newer snapshot (sound)
                    self._snap = _stamp_of(os.fstat(f.fileno()))
                    data: bytes | None = f.read()
            except FileNotFoundError:  # no snapshot: no records, the log not read (a store
                data, self._snap = None, None  # always writes one before its log: this one
            self._snap_generation = self._load(data)  # was removed, by hands that meant it
            if fd >= 0 and data is not None:  # to hold nothing)
                self._fd, fd = fd, -1  # held: ``close`` (or ``_failed``) closes it
                if not self._open():
                    self.close()  # older than the snapshot: not read
        finally:
            if fd >= 0:
                os.close(fd)

    def _refresh(self) -> None:
        if self._fd >= 0:
            self._more()
            now = _stamp(self.path)
            if now is not None and now[0] != self._inode:
                if self._follow():
                    return
                self._reload()
                return
            if now is None or _stamp(self.snapshot) != self._snap:
                self._reload()  # the log removed, or the snapshot replaced by other hands
        elif _stamp(self.snapshot) != self._snap or _stamp(self.path) != self._log_seen:
            self._reload()  # a snapshot changed, or a log begun beside it

    def _open(self) -> bool:
        """Apply all of the log held, its bridge too (see the module docstring); False, and
        nothing applied, for a log older than the snapshot."""
        self._inode = os.fstat(self._fd).st_ino
        data = _read_from(self._fd, 0)
        header, start = self._header(data)
        if header.generation < self._snap_generation:
            return False
        if not self._snap_generation and header.generation > 1:
            log.warning("%s has no generation (edited by hand, or an older build's put "
                        "back): it is read alone, without the changes in %s",
                        self.snapshot, self.path)  # fmt: skip
            return False
        if header.generation > self._snap_generation + 1:
            raise ChangeLogError(
                f"{self.path}: its generation {header.generation} is past the "
                f"{self._snap_generation + 1} that continues {self.snapshot} (generation "
                f"{self._snap_generation}): the changes between are missing (an older "
                "snapshot put back?)"
            )
        self._generation = header.generation
        self._own_at = start + header.bridge
        self._at, self._own = start, 0
        self._take(data[start:], start)
        return True

    def _header(self, data: bytes) -> tuple[LogHeader, int]:
        """The log's header and where its frames start; ``ChangeLogError`` if it has none."""
        return _read_header(data, self.path)

    def _take(self, data: bytes, base: int) -> None:
        """Apply the whole frames of ``data`` (the log's bytes from ``base``), counting those
        past the bridge."""
        frames, whole, why = read_frames(data, 0, LONGEST)
        if why:
            raise ChangeLogError(f"{self.path}: the frame at byte {base + whole} {why}")
        for at, body in frames:
            try:
                self._apply(body)
            except ValueError as exc:
                raise ChangeLogError(
                    f"{self.path}: the change at byte {base + at}: {exc}"
                ) from None
            if base + at >= self._own_at:
                self._own += 1
        self._at = base + whole

    def _more(self) -> None:
        """What the held log gained (a torn or unfinished last frame waits for the next look)."""
        self._take(_read_from(self._fd, self._at), self._at)

    def _follow(self) -> bool:
        """A new log at the path: of the next generation, its bridge as long as the held
        log's changes past its own bridge? Then hold it and apply its own changes (True);
        else False."""
        self._more()  # the old log to its end: final, once a new one is in place
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            head = os.pread(fd, _HEAD_BYTES, 0)
            try:
                header, start = self._header(head)
            except ChangeLogError:
                return False
            held = self._at - self._own_at
            if header.generation != self._generation + 1 or header.bridge != held:
                return False
            os.close(self._fd)
            self._fd, fd = fd, -1
            self._inode = os.fstat(self._fd).st_ino
            self._generation = header.generation
            self._at = self._own_at = start + header.bridge
            self._own = 0
            self._more()
            self._snap = _stamp(self.snapshot)  # the compaction's (read: it is what we hold)
            self._snap_generation = header.generation
            return True
        finally:
            if fd >= 0:
                os.close(fd)

    # -- writing -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """``lock()``, with what changed read under it."""
        with self.lock():
            self.refresh()
            yield

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """An exclusive ``flock`` on the lock file. Closing its descriptor releases it: a
        writer that dies mid-way leaves no lock behind."""
        make_dirs(self.snapshot.parent)
        fd = os.open(self._lock, os.O_RDWR | os.O_CREAT, PRIVATE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def append(self, body: bytes) -> None:
        """Inside ``locked()``: ``body`` appended as one frame and fsynced, then applied (as
        a reader applies it); a compaction when due. A first change starts the log (with an
        empty snapshot first where there is none: the snapshot exists once the log does). A
        write cut short (a full disk) is cut back off and raises OSError, nothing applied. A
        whole frame whose fsync fails is not: a reader may have read it already, and cutting
        it would leave that reader serving a change no other holds, then reading the next
        frame from its middle (review 173); it is applied here too, and ``ChangeMadeError``
        (an OSError) says the change is made but may not survive a crash of the machine. A
        compaction that fails is logged and tried again at the next change: the change
        itself is durable."""
        if len(body) > LONGEST:
            raise ValueError(f"a change of {len(body)} bytes, over the {LONGEST} a frame holds")
        if self._fd < 0:
            self._begin()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            if os.fstat(fd).st_ino != self._inode:  # not ours under our lock: never, unless
                raise OSError(f"{self.path} was replaced under its lock")  # hands did it
            os.ftruncate(fd, self._at)  # a torn tail a crash left (no writer is mid-way)
            try:
                write_all(fd, frame(body))
            except OSError:
                os.ftruncate(fd, self._at)
                raise
            try:
                os.fsync(fd)
            except OSError as exc:
                try:
                    self._more()
                except ValueError:  # (read again at the next look: the change is made)
                    self._failed()
                raise ChangeMadeError(
                    exc.errno,
                    f"{self.path}: the change is made, but its fsync failed ({exc}): "
                    "it may not survive a crash of the machine",
                ) from exc
        finally:
            os.close(fd)
        try:
            self._more()
        except ValueError as exc:  # damage before it: the change is made and durable all
            log.error("%s: %s; read again at the next look", self.path, exc)  # the same
            self._failed()
            return
        if self._own > max(self.compact_min, self._size()):
            try:
                self.compact()
            except OSError as exc:
                log.error("%s: a compaction failed (%s); tried again at the next change",
                          self.path, exc)  # fmt: skip
                self._failed()  # (read again under the next lock: whichever file it left)

    def _begin(self) -> None:
        """A first log beside the snapshot there is (none: an empty one is written first),
        which becomes the owner's alone as the log is."""
        if self._snap is None:
            self.compact()
            return
        os.chmod(self.snapshot, PRIVATE)  # an older build's may be another's to read
        self._start_log(max(1, self._snap_generation))  # (a log older than it is replaced)

    def settle(self) -> None:
        """Inside ``locked()``: everything into the snapshot and a log that carries no change
        over (two compactions: the second's bridge is the first's own changes, none), so a
        hand edit of the snapshot that keeps its generation has nothing applied over it."""
        self.compact()
        self.compact()

    def compact(self) -> None:
        """Inside ``locked()``: the snapshot of the state, then a log of the next generation
        whose bridge is the held log's own changes (none: a store's first log)."""
        bridge = b""
        if self._fd >= 0:
            bridge = _read_from(self._fd, self._own_at)[: self._at - self._own_at]
        generation = (self._generation if self._fd >= 0 else self._snap_generation) + 1
        tmp = self.snapshot.with_name(self.snapshot.name + ".tmp")
        replace_durably(self.snapshot, self._dump(generation), mode=PRIVATE, tmp=tmp)
        self._start_log(generation, bridge)
        self._snap = _stamp(self.snapshot)
        self._snap_generation = generation

    def _start_log(self, generation: int, bridge: bytes = b"") -> None:
        """A new log of ``generation`` opening with ``bridge``, written aside and renamed
        in durably, and held in place of the one held (nothing of it to read)."""
        header = frame(_header_encoder.encode(LogHeader(generation, len(bridge))))
        data = MAGIC + header + bridge
        replace_durably(self.path, data, mode=PRIVATE, tmp=self.path.with_suffix(".log.tmp"))
        self.close()
        self._fd = os.open(self.path, os.O_RDONLY)
        self._inode = os.fstat(self._fd).st_ino
        self._generation = generation
        self._at = self._own_at = len(data)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # (at the interpreter's exit, ``os`` may be gone)
            self.close()  # a store let go without ``close``: its descriptor with it

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._inode = self._at = self._own_at = self._own = 0
        self._generation = 0
