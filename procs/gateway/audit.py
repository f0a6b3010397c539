"""The raw FIX audit journal: every inbound and outbound message, as it was on the wire.

One line per message, ``<ts_ns> <in|out> <comp id> <message with SOH shown as |>``, appended
to ``audit.log`` in the gateway's directory (mode 0600). Messages are kept as they came and
written by ``flush``, which ``Session.take_output`` calls before it hands frames to a socket:
a message is in the file (the OS's, where a crash of the process leaves it) before it is on
the wire. The first take of a loop pass writes the lines of every session, so it is a
``write`` per pass, and the checks and the SOH replacement once over the pass's messages,
not once a message (in a pass without a secret or an unsafe byte, the usual one; else each
message's ``shown``). Lines no write carries (an order not acked yet, a parked report) go
with the next, or the shell's flush after a batch of events and once a second; and at the
latest once ``MAX_BUFFERED_BYTES`` of them wait. Input that makes no output (junk before a
Logon, a flood of Heartbeats) was otherwise held for a second or more: a client sending junk
for 3 s held 583 MB in the buffer, nothing more of its own needed than a connection.

Rotation: an operator renames or removes the file (logrotate's default mode); the next flush
opens a new ``audit.log`` (``_reopen_if_moved``).

A line is always one message: the bytes a client chose cannot add lines or pass for a field
delimiter. A backslash, a literal ``|``, CR and LF inside a value are written escaped (``\\\\``,
``\\|``, ``\\r``, ``\\n``). Passwords (Password 554, NewPassword 925) are written as ``***``:
the users file keeps only their scrypt digests, and the journal must not undo that.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from pathlib import Path
from typing import BinaryIO, Final

from procs.common.durable import write_all
from procs.gateway.fix import FixMessage, Garbled
from procs.gateway.session_interface import State

log = logging.getLogger("ringex.gateway.audit")
_UNSAFE: Final = re.compile(rb"[\\|\r\n]")
_ESCAPES: Final = {b"\\": b"\\\\", b"|": b"\\|", b"\r": b"\\r", b"\n": b"\\n"}
#: Every byte but the four ``_UNSAFE`` ones: ``translate`` deletes them and leaves the unsafe
#: bytes a message holds (usually none), ~2x cheaper than the regex's search.
_SAFE: Final = bytes(b for b in range(256) if b not in b"\\|\r\n")
_SECRET: Final = re.compile(rb"(?:^|(?<=\x01))(554|925)=[^\x01]*")
#: Buffered lines (their messages' bytes, and ``_LINE_COST`` a line for the rest) past which
#: ``record`` writes them at once.
MAX_BUFFERED_BYTES: Final = 1 << 20
_LINE_COST: Final = 64


def _torn(path: Path) -> bool:
    """Whether ``path`` ends inside a line (its last byte not a newline)."""
    with path.open("rb") as f:
        if f.seek(0, os.SEEK_END) == 0:
            return False
        f.seek(-1, os.SEEK_END)
        return f.read(1) != b"\n"


def shown(raw: bytes) -> bytes:
    """``raw`` as its audit line shows it: secrets masked, unsafe bytes escaped, SOH as |."""
    if b"554=" in raw or b"925=" in raw:
        raw = _SECRET.sub(rb"\1=***", raw)
    if raw.translate(None, _SAFE):
        raw = _UNSAFE.sub(lambda m: _ESCAPES[m.group()], raw)
    return raw.replace(b"\x01", b"|")


class AuditLog:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._reopen_failed = False  # said once in the log until a reopen works
        self._file: BinaryIO = self._open()
        self._entries: list[tuple[int, bytes, bytes]] = []  # (ts_ns, prefix, raw message)
        self._prefixes: dict[tuple[bool, str], bytes] = {}  # " in COMP " and " out COMP "
        self._buffered = 0  # of ``_entries``, as ``MAX_BUFFERED_BYTES`` counts them

    def record(self, ts_ns: int, inbound: bool, comp_id: str, raw: bytes) -> None:
        prefix = self._prefixes.get((inbound, comp_id))
        if prefix is None:
            # escaped as a message is (an admin may name a user anything): one line a message
            words = b" in " if inbound else b" out "
            prefix = self._prefixes[inbound, comp_id] = words + shown(comp_id.encode()) + b" "
        self._entries.append((ts_ns, prefix, raw))
        self._buffered += len(raw) + _LINE_COST
        if self._buffered >= MAX_BUFFERED_BYTES:
            self.flush()

    def _open(self) -> BinaryIO:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            try:
                os.fchmod(fd, 0o600)  # one made before by an older gateway, world-readable
            except PermissionError:  # a logrotate "create" of another owner: written all the
                log.warning("%s is another user's: its mode left as it is", self.path)  # same
            file = os.fdopen(fd, "ab")
        except BaseException:  # (review 72: a failed reopen leaked it, once a flush)
            os.close(fd)
            raise
        try:
            if _torn(self.path):  # a kill or a full disk mid-write left a line without its
                file.write(b"\n")  # end: the next run's first line must not be glued onto it
                file.flush()  # (review 39)
            self._opened = os.fstat(fd)
        except BaseException:
            file.close()
            raise
        return file

    def _reopen_if_moved(self) -> None:
        """A new ``audit.log`` where the path no longer names the open file (a logrotate
        renamed or removed it), as ``logging.WatchedFileHandler`` does: the lines go on into
        the file the operator sees (review 69: they went into the renamed one for ever). One
        ``stat`` a flush: a flush carries a loop pass's lines."""
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            now = None
        if now is None or (now.st_ino, now.st_dev) != (self._opened.st_ino, self._opened.st_dev):
            try:
                file = self._open()  # (``_opened`` changes only where it succeeds)
            except OSError as exc:  # kept on the old file, tried again at the next flush
                if not self._reopen_failed:
                    log.error("reopening the audit log %s failed: %s", self.path, exc)
                self._reopen_failed = True
                return
            self._reopen_failed = False
            self._file.close()
            self._file = file

    def flush(self) -> None:
        entries = self._entries
        if not entries:
            return
        self._reopen_if_moved()
        messages = b"".join([raw for _, _, raw in entries])
        if b"554=" in messages or b"925=" in messages or messages.translate(None, _SAFE):
            text = b"".join([b"%d%s%s\n" % (ts, pre, shown(raw)) for ts, pre, raw in entries])
        else:  # nothing to mask or escape: SOH becomes | in one pass over the lines
            text = b"".join([b"%d%s%s\n" % entry for entry in entries]).replace(b"\x01", b"|")
        fd = self._file.fileno()  # (the file object's buffer is empty: each write flushed)
        size = os.fstat(fd).st_size
        try:
            write_all(fd, text)  # appended whole, or cut back to where it began: a retry must
        except OSError:  # not glue its lines onto a torn one, nor write some twice (211)
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise  # the entries are kept for the next flush
        entries.clear()
        self._buffered = 0

    def close(self) -> None:
        self.flush()
        self._file.close()


#: How many bytes of garbled input a connection has journaled before its Logon, at most.
JUNK_BEFORE_LOGON = 1024
#: A session's states before its Logon is accepted.
UNCHECKED: Final = frozenset((State.AWAIT_LOGON, State.AUTHENTICATING))


class JunkCap:
    """One connection's garbled input until its Logon is accepted, as the audit journal
    takes it: the first ``JUNK_BEFORE_LOGON`` bytes, then a line saying the rest is not
    journaled. Anyone who reaches the FIX port may send junk, be closed at 64 KiB and connect
    again: journaled whole, it filled the disk at the sender's rate, logon or none (review
    93), or while an invented CompID's password was checked (review 97)."""

    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = JUNK_BEFORE_LOGON

    def cut(self, msg: FixMessage | Garbled, state: State) -> bytes | None:
        """What of ``msg`` goes into the journal (a session in ``state``): None, nothing."""
        raw = msg.raw
        if not isinstance(msg, Garbled) or state not in UNCHECKED:
            return raw
        left = self.left
        if left <= 0:
            return None
        self.left = left - len(raw)
        if len(raw) <= left:
            return raw
        return raw[:left] + b" (bytes past the first %d before a Logon are not journaled)" % (
            JUNK_BEFORE_LOGON
        )
