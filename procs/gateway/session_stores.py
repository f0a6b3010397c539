"""The FIX sessions' message stores a gateway holds open (two descriptors each): those of its
logged-on sessions, and the ``SPARE`` most recently used others (a session just ended, one a
report was parked for while it is away) and those a connection still writes (a Logout's
drain); the least recently used one past those is closed
(review 256: a gateway kept every store it had opened, and a day's logons of thousands of
users ran it out of descriptors: every Logon failed). A store closed here that a finished
session still holds writes nothing more (``MessageStore.closed``); the next use opens it
again (reading its ``messages`` for the index: parks to more users than ``SPARE`` in turn
open each again).

A store belongs to one user: the session id of the user it was opened for is in its
``owner`` file. A user added again under a removed user's comp id gets a store of its own,
the old one moved aside to ``removed-sessions/<comp_id>.<session>`` beside ``sessions/``,
as the gateway does at its start with the store of a user that is no more (review 309: the
new user took the old one's MsgSeqNums, was resent its reports and sent its parked fills).

At its start it asks for room for its sessions' descriptors (``connections_room``: the socket,
the session's claim and the store's two files): a gateway without a REST API raised no limit
and held a quarter of its ``max_sessions`` at the usual soft limit of 1024 (review 256).
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Final

from procs.common.durable import PRIVATE, fsync_dir, make_dirs, replace_durably
from procs.common.open_files import connections_room
from procs.gateway.store import MessageStore

log = logging.getLogger("ringex.gateway")

#: Stores kept open of sessions not logged on: sessions just ended, reports parked (a park
#: to one closed reads its history again to open it: review 257)
SPARE: Final = 64
#: A FIX session's descriptors: its socket, its claim's lock, its store's two files
DESCRIPTORS_PER_SESSION: Final = 4


def fix_descriptors(max_sessions: int) -> int:
    """The descriptors a gateway's FIX side may hold: its sessions' and the spare stores'."""
    return DESCRIPTORS_PER_SESSION * max_sessions + 2 * SPARE


class SessionStores:
    """The open stores by comp id: ``get`` opens one as needed; ``in_use(comp_id)`` says
    whether a session is logged on with it (its store is never closed here); ``values``,
    ``__getitem__`` and ``__len__`` are for the gateway's stop and its tests."""

    def __init__(
        self,
        directory: Path,
        max_sessions: int,
        in_use: Callable[[str], bool],
        before_save: Callable[[], None],
    ) -> None:
        self.directory = directory
        self.retired = directory.parent / "removed-sessions"  # (not a comp id's: a sibling)
        self._owners: dict[str, int] = {}  # an open store's user's session id
        self._in_use = in_use  # whether a session is logged on with that comp id
        self._before_save = before_save
        self._open: OrderedDict[str, MessageStore] = OrderedDict()
        wanted = fix_descriptors(max_sessions)
        room = connections_room(wanted, warn=False)
        if room < wanted:
            log.warning("%d descriptors may be needed by max_sessions=%d (%d a session, and "
                        "%d kept for stores) and the open-file limit leaves %d: logons past "
                        "that fail", wanted, max_sessions, DESCRIPTORS_PER_SESSION, 2 * SPARE,
                        room)  # fmt: skip

    def get(self, comp_id: str, session: int | None = None) -> MessageStore:
        """``comp_id``'s store, opened (``MessageStoreError`` where its files are damaged,
        ``OSError`` where they cannot be opened) if it is not, the newest used now; with
        ``session``, the store of that user's session: another's is moved aside first."""
        store = self._open.get(comp_id)
        if (
            store is not None
            and session not in (None, self._owners.get(comp_id))
            and not (self._in_use(comp_id) or store.connected)  # (a removed user's session
        ):  # still ending keeps it for its Logout)
            self._open.pop(comp_id).close()
            store = None
        if store is not None:
            self._open.move_to_end(comp_id)
            return store
        if session is not None:
            self._claim(comp_id, session)
        store = MessageStore(self.directory / comp_id)
        if session is not None:
            self._owners[comp_id] = session
        store.before_save = self._before_save
        self._open[comp_id] = store
        idle = [  # oldest first, this one last; not one a connection still writes (257)
            c for c, st in self._open.items() if not (self._in_use(c) or st.connected)
        ]
        for old in idle[: max(0, len(idle) - SPARE)]:
            self._owners.pop(old, None)
            try:
                self._open.pop(old).close()
            except OSError as exc:  # its last flush failed: what it held stays in its files
                log.error("the store of %s closed, its last flush failed: %s", old, exc)
        return store

    def retire(self, users: Mapping[str, int]) -> None:
        """At the gateway's start: every store whose user (``users``: comp id to session id)
        is no more is moved aside; one an older build made, without an owner, is its comp
        id's user's."""
        if not self.directory.is_dir():
            return
        for directory in sorted(self.directory.iterdir()):
            session = users.get(directory.name)
            try:
                if not directory.is_dir():
                    continue
                owner = _owner(directory)
                if session is None or owner not in (None, session):
                    self._retire(directory, owner)
                elif owner is None:
                    _own(directory, session)
            except OSError as exc:  # a full disk, a mode: the gateway starts all the same
                log.error("the FIX store %s was not checked: %s", directory, exc)

    def _claim(self, comp_id: str, session: int) -> None:
        """``comp_id``'s store directory is ``session``'s: another user's is moved aside."""
        directory = self.directory / comp_id
        owner = _owner(directory)
        if owner == session:
            return
        if owner is not None:
            self._retire(directory, owner)
        make_dirs(directory)
        _own(directory, session)

    def _retire(self, directory: Path, owner: int | None) -> None:
        make_dirs(self.retired)
        name = f"{directory.name}.{owner if owner is not None else 'unknown'}"
        aside, n = self.retired / name, 1
        while aside.exists():  # (the same user's store retired before, copied back say)
            aside, n = self.retired / f"{name}.{n}", n + 1
        os.rename(directory, aside)
        fsync_dir(self.retired)
        fsync_dir(self.directory)
        log.warning("the FIX store of %s belongs to no user now: moved to %s", directory.name,
                    aside)  # fmt: skip

    def touch(self, comp_id: str) -> None:
        """``comp_id``'s store, if open, is the newest used now (its session just ended)."""
        if comp_id in self._open:
            self._open.move_to_end(comp_id)

    def __getitem__(self, comp_id: str) -> MessageStore:
        return self._open[comp_id]

    def __len__(self) -> int:
        return len(self._open)

    def values(self) -> Iterator[MessageStore]:
        return iter(list(self._open.values()))

    def close(self) -> None:
        for store in self._open.values():
            store.close()
        self._open.clear()
        self._owners.clear()


def _owner(directory: Path) -> int | None:
    """The session id a store's ``owner`` file names; None where it has none (an older
    build's store, or none yet)."""
    try:
        return int((directory / "owner").read_bytes())
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None


def _own(directory: Path, session: int) -> None:
    replace_durably(directory / "owner", b"%d" % session, mode=PRIVATE)
