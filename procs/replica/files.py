"""The gateways' own state, shipped beside the journal: users, API keys and order logs; and
the journal's units.

The journal holds the exchange's state, but not what only the gateways keep: who may log on
(``users.json``, ``apikeys.json`` and their logs of changes since, ``users.log`` and
``apikeys.log``: ``procs/common/change_log.py``) and, per gateway, which session and ClOrdID
each order has (``<gateway>/orders.log``, ``procs/gateway/order_log.py``) and which ClOrdIDs
and REST clientOrderIds were used (``<gateway>/clordids.log`` and ``api_ids.log``,
``procs/gateway/clordids.py``), and where its counter ExecIDs are reserved up to
(``<gateway>/exec-ids``, ``procs/common/exec_ids.py``). A promoted standby without them
could not log a client on, nor report a fill of an order placed before the failover with its
ClOrdID, and could repeat ExecIDs the primary sent. So the source sends what each of these
files gained since the last look, and the standby writes it at the same place under its own
``var/<instance>/gateway/``. The units the journal's integers are in
(``journal/units.json``, ``procs/common/units.py``) go the same way to the standby's journal
directory: without them a promoted router pinned its own config's units over the primary's
journal, and a standby configured with other decimals settled every trade in other amounts;
with them the standby's start, ``failover.py promote`` and the promoted start refuse it.

Order. A gateway writes a command to its order log before it publishes it to the router, so
when the source has read a frame of the journal, the logs already hold every command in it:
the source ships what the files gained right then, before the frame, on the same connection.
The standby makes the files it wrote durable before the frame it acknowledges
(``FileReceiver.sync``). So in sync mode a promoted gateway knows the ClOrdID of every order
whose acknowledgement left the primary; in async mode the files are as far behind as the
journal. What a log still lacks (an order whose command reached no journal frame that was
shipped) the promoted gateway corrects from the books (``procs/gateway/recovery.py``), never
reporting a wrong fill.

A file is followed by inode, size and mtime, and for the logs by the bytes just before where
the copy ends. A log that grew with those bytes unchanged is sent from there (the logs only
grow); any other change sends the file again whole (``reset``): a log replaced (a
compaction), shrunk or rewritten, and the users' and keys' snapshots (at their compaction)
and the ExecID and units files, which are rewritten whole (``os.replace``) at every change.
A standby that has one of the users' or keys' two files from before a compaction and the
other from after holds every change still (``change_log``'s bridge). Two compactions between
two looks (an operator's ``compact``, or a standby away meanwhile) make a log two generations
past the standby's snapshot, a pair that does not load: such a log is held aside
(``<log>.held``, its growth written there too) until the snapshot it continues has replaced
the standby's copy, so a link lost between the two leaves the old pair, which loads (review
182). A file sent whole in several pieces is made aside and replaces the standby's copy once
complete, so a connection lost mid-way (every new one sends every file whole) never leaves a
copy cut short. Inode
numbers are reused: a file replaced twice between two looks can have the inode and a larger
size of the copy's, and appending its end to the copy would corrupt it.
Session stores are not shipped: after a failover FIX sessions start again at sequence 1
(logon with ResetSeqNumFlag), the rule the README gives clients.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass
from pathlib import Path

from config.schema import RingexConfig
from procs.common.change_log import log_past_snapshot
from procs.common.durable import fsync_dir, fsync_file, make_dirs
from procs.common.exec_ids import FILE_NAME as EXEC_IDS
from procs.common.units import FILE_NAME as UNITS  # shipped by this name, kept in the journal's
from procs.replica.wire import StateFile

#: Bytes of one file in one message (a file that gained more goes in several).
CHUNK = 4 << 20


def shipped_files(cfg: RingexConfig) -> list[str]:
    """The files shipped, relative to ``var/<instance>/gateway`` (``UNITS`` aside)."""
    own = ("orders.log", "clordids.log", "api_ids.log", EXEC_IDS)
    gateways = (f"{g.name}/{n}" for g in cfg.gateways for n in own)
    # each log before its snapshot: a pair shipped across a compaction then has the newer
    # snapshot, which holds all of the older log (``change_log``)
    return ["users.log", "users.json", "apikeys.log", "apikeys.json", UNITS, *gateways]


def _place(root: Path, name: str) -> Path:
    """Where file ``name`` is kept, ``root`` being ``var/<instance>/gateway``: the units in
    the journal's directory, ``var/<instance>/journal`` (``units.units_path``)."""
    return root.parent / "journal" / UNITS if name == UNITS else root / name


#: Bytes before the end of what was sent that a log's growth must leave as they were.
TAIL = 64


@dataclass(slots=True)
class _Sent:
    inode: int
    size: int
    mtime_ns: int
    tail: bytes  # the last (up to) TAIL bytes sent

    @property
    def stamp(self) -> tuple[int, int, int]:
        return self.inode, self.size, self.mtime_ns


def _grew(name: str, fd: int, st: os.stat_result, sent: _Sent) -> bool:
    """Whether the file only gained bytes after what was sent (else: send it whole): a log
    whose sent bytes end as they did, or any file unchanged since a send cut short by the
    budget (its mtime the same, and its tail too: a rewrite within one timestamp tick keeps
    the mtime, review 125)."""
    if sent.inode != st.st_ino or st.st_size <= sent.size:
        return False
    if sent.mtime_ns != st.st_mtime_ns and not name.endswith(".log"):
        return False  # rewritten whole at every change
    return os.pread(fd, len(sent.tail), sent.size - len(sent.tail)) == sent.tail


class FileShipper:
    """The primary's side, one per standby connection (a new one sends every file whole)."""

    def __init__(self, root: Path, names: list[str]) -> None:
        self.root = root
        self.names = names
        self.sent: dict[str, _Sent] = {}

    def changes(self, budget: int = CHUNK) -> list[StateFile]:
        """What the files gained since the last call, ``budget`` bytes at most."""
        out: list[StateFile] = []
        for name in self.names:
            if budget <= 0:
                break
            path = _place(self.root, name)
            try:
                with path.open("rb") as f:
                    st = os.fstat(f.fileno())
                    sent = self.sent.get(name)
                    if sent is not None and sent.stamp == (st.st_ino, st.st_size, st.st_mtime_ns):
                        continue
                    reset = sent is None or not _grew(name, f.fileno(), st, sent)
                    offset = 0 if reset or sent is None else sent.size
                    f.seek(offset)
                    data = f.read(min(budget, st.st_size - offset))
                    end = offset + len(data)
                    tail = os.pread(f.fileno(), min(TAIL, end), end - min(TAIL, end))
            except FileNotFoundError:
                continue
            out.append(StateFile(name, offset, data, reset, st.st_size if reset else 0))
            self.sent[name] = _Sent(st.st_ino, end, st.st_mtime_ns, tail)
            budget -= len(data)
        return out


#: The users' and keys' logs, each with the snapshot it continues.
PAIRS = {"users.log": "users.json", "apikeys.log": "apikeys.json"}
LOG_OF = {snapshot: log for log, snapshot in PAIRS.items()}

#: What a standby accepts to write (the primary's gateways need not be named in its config).
SHIPPABLE = re.compile(
    r"((users|apikeys)\.(json|log)|units\.json"
    r"|[A-Za-z0-9_-]{1,64}/((orders|clordids|api_ids)\.log|exec-ids))"
)


class FileReceiver:
    """The standby's side: writes what arrives, only to paths of the shipped kinds, and
    makes it durable when asked (``sync``, before the next journal frame is acknowledged)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dirty: set[Path] = set()  # files written since the last sync
        self.renamed: set[Path] = set()  # directories where a file was replaced
        #: files sent again whole, in pieces, made aside: their size once complete
        self.assembling: dict[Path, int] = {}
        #: a users' or keys' log past its snapshot's next generation: where it is held
        self.held: dict[Path, Path] = {}

    def sync(self) -> None:
        """fsync the files written since the last call (a replaced one: its directory too)."""
        for path in self.dirty:
            fsync_file(path)
        for directory in self.renamed:
            fsync_dir(directory)
        self.dirty.clear()
        self.renamed.clear()

    def apply(self, message: StateFile) -> None:
        if not SHIPPABLE.fullmatch(message.path):
            raise ValueError(f"the primary sent {message.path!r}, not a gateway state file")
        path = _place(self.root, message.path)
        make_dirs(path.parent)
        aside = path.with_name(path.name + ".shipping")
        if message.reset and message.offset == 0:
            # A file sent again whole is made aside and replaces the copy only once complete:
            # until then the standby keeps the whole old copy (a drop mid-way leaves it).
            self.assembling[path] = message.size
            _write(aside, message.data, 0, truncate=True)
        elif path in self.assembling:
            _write(aside, message.data, _next(aside, message))
        else:
            target = self.held.get(path, path)  # a held log grows where it is held
            _write(target, message.data, _next(target, message))
            self.dirty.add(target)
            return
        end = message.offset + len(message.data)
        if end >= self.assembling[path]:
            del self.assembling[path]
            self._complete(path, aside)

    def _complete(self, path: Path, aside: Path) -> None:
        """A file sent whole is all there (``aside``): it replaces the copy, or a log too far
        past the standby's snapshot is held until that snapshot comes (``held``)."""
        # durable before it replaces the durable copy: a crash then leaves the old copy or
        # the new one whole, never a renamed file whose data was not written yet
        fsync_file(aside)
        self.renamed.add(path.parent)
        old = self.held.pop(path, None)
        snapshot = PAIRS.get(path.name)
        if snapshot is not None and log_past_snapshot(aside, path.with_name(snapshot)):
            self.held[path] = path.with_name(path.name + ".held")
            os.replace(aside, self.held[path])
            return
        if old is not None:  # held, now replaced by a newer copy that pairs
            old.unlink(missing_ok=True)
        os.replace(aside, path)  # a reader sees the old copy or the new one
        if path.name not in LOG_OF:
            return
        log = path.with_name(LOG_OF[path.name])
        waiting = self.held.get(log)
        if waiting is not None and not log_past_snapshot(waiting, path):
            del self.held[log]
            os.replace(waiting, log)  # the snapshot it continues is in place: the pair loads
            if waiting in self.dirty:  # its growth, written while held: synced by its name
                self.dirty.discard(waiting)  # now (a review, 2026-12-03: the held name was
                self.dirty.add(log)  # synced, gone, and the growth was never fsynced)


def _next(path: Path, message: StateFile) -> int:
    """``message``'s offset, which must be where ``path`` ends: a piece anywhere else (a
    hole of zeros past the end, a reset piece with nothing assembled, pieces out of order)
    is refused, naming both (review 140: offset 2**30 made a 1 GiB sparse copy)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        size = 0
    if message.offset != size:
        raise ValueError(
            f"the primary sent {message.path!r} at offset {message.offset}"
            f"{' (a reset piece)' if message.reset else ''}, but the copy ends at {size}"
        )
    return size


def _write(path: Path, data: bytes, offset: int, *, truncate: bool = False) -> None:
    """``data`` whole at ``offset``, or ``OSError``: ``pwrite`` may write less (a disk or a
    quota filling up) and say so only in its count (a review, 2026-12-03: a copy sent whole
    and written in part was then taken as complete, replacing the good one)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if truncate else 0)
    fd = os.open(path, flags, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.pwrite(fd, view, offset)
            if not written:
                raise OSError(errno.EIO, f"write of {len(view)} bytes to {path} wrote none")
            view, offset = view[written:], offset + written
    finally:
        os.close(fd)
