"""Mirror the FIX user store (``var/<instance>/gateway/users.json`` and its log of changes,
``users.log``) into ``users``.

The store is files the operator changes with ``ringex admin``, not journaled commands, so
this is a synchronisation, not part of the exactly-once stream: whenever the users change,
every user is upserted (by SenderCompID) and users no longer there are deleted, in one
transaction. Only the salted scrypt digest is stored, as
``scrypt$<n>$<r>$<p>$<salt hex>$<digest hex>``.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import psycopg

from procs.common.users import User, UsersFileError, UserStore

log = logging.getLogger("ringex.dbwriter.users")


def password_hash(user: User) -> str:
    return f"scrypt${user.n}${user.r}${user.p}${user.salt}${user.digest}"


class UserSync:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._store: UserStore | None = None
        self._unreadable = ""  # the last reason the file could not be read (logged once)
        self._synced: str | None = None  # digest of the user list last written

    @property
    def store(self) -> UserStore:
        """The users file, opened at its first use, not at the writer's start: one that
        cannot be read raises ``UsersFileError`` here until it can, and must not stop the
        writer, which files the journal without it."""
        if self._store is None:
            self._store = UserStore(self.path)
        return self._store

    def forget(self) -> None:
        """Write the users again at the next ``sync``, changed or not (the writer (re)starts:
        the database may be a restored backup, or have lost asynchronous commits)."""
        self._synced = None

    def sync(self, conn: psycopg.Connection[Any]) -> bool:
        """Write the users when they changed since the last call; True when it wrote. A
        file not read yet that cannot be read writes nothing (the users in the table stay),
        and says why in the log, once per reason."""
        try:  # the store's own reads too: a file that appears later may not read
            users = sorted(self.store.users(), key=lambda u: u.comp_id)
        except UsersFileError as exc:
            if str(exc) != self._unreadable:
                log.warning("%s: the users are not mirrored until it reads", exc)
                self._unreadable = str(exc)
            return False
        digest = hashlib.sha256(repr(users).encode()).hexdigest()
        if digest == self._synced:
            return False
        with conn.transaction():
            # the removed, and those whose session id changed, first: a user may take
            # another's id (removed, or itself moved: two users re-added in swapped order)
            conn.execute(
                "DELETE FROM users WHERE (sender_comp_id, id) NOT IN "
                "(SELECT * FROM unnest(%s::text[], %s::bigint[]))",
                ([u.comp_id for u in users], [u.session for u in users]),
            )
            for u in users:
                conn.execute(
                    "INSERT INTO users (id, username, password_hash, sender_comp_id, account_id) "
                    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (sender_comp_id) DO UPDATE SET "
                    "id = excluded.id, username = excluded.username, "
                    "password_hash = excluded.password_hash, account_id = excluded.account_id, "
                    "updated = now() "  # only a user that changed (review 50: every sync
                    "WHERE (users.id, users.username, users.password_hash, users.account_id) "
                    "IS DISTINCT FROM (excluded.id, excluded.username, excluded.password_hash, "
                    "excluded.account_id)",  # moved every user's time)
                    (u.session, u.comp_id, password_hash(u), u.comp_id, u.account),
                )
        self._synced = digest
        return True
