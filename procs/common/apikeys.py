"""REST API keys: a public key id, its HMAC secret, the user it acts for and its scopes.

One JSON file, ``var/<instance>/gateway/apikeys.json``, shared by every gateway process of the
instance. The secrets are stored **in the clear**: HMAC-SHA256 request signing needs the
verifier to hold the very secret the client holds (unlike a password, which is kept as a
scrypt digest in users.json). The file is therefore created with mode 0600, and anyone who can
read it can trade as its users: guard it like a private key. The file keeps the CRC-32 of
its keys (``ApiKeysFile``): a flipped bit that still decodes (the account a key acts for) is
refused, not loaded (review 138); an older build's file, a bare list of keys, loads as it
reads.

Writers (create/revoke, rare: a user's login or an operator) take an exclusive ``flock`` on a
sibling ``.lock`` file, re-read the file under it (another process may have written since),
apply their change, write a temporary file and ``os.replace`` it in, so readers see the old
or the new file whole, never half of one, and two writers never lose each other's change.
Readers take no lock: ``get`` runs on every request and only ``stat``s the file, at most once
per ``recheck_s`` (``find``: and for a key it does not hold), re-reading it when its (inode,
mtime_ns, size) changed. A key revoked in another process thus still verifies here for up to
``recheck_s`` (0.5 s by default); one made there verifies through ``find`` at once. Two
writes inside one coarse clock tick (a revoke, then a create of the same length) could leave
inode (reused at once by the file system), mtime and size all as they were, and a reader
would keep the revoked key forever; so each writer sets the new file's mtime_ns strictly
after the one it replaced (needs a file system with ns timestamps: ext4, xfs, tmpfs).
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import msgspec

from procs.common.crc_frames import crc_hex
from procs.common.durable import make_dirs
from procs.common.users import User

log = logging.getLogger("ringex.gateway")

#: What a key may do: "read" (account, orders, fills) and "trade" (place and cancel orders).
SCOPES = frozenset({"read", "trade"})
#: Longest label (the user's note on what the key is for).
MAX_LABEL = 64


class ApiKey(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    key: str  # public id, sent in X-RINGEX-APIKEY: 32 url-safe characters
    secret: str  # 64 hex characters, the HMAC-SHA256 key (as its UTF-8 bytes)
    comp_id: str  # the user (users.json), as of creation
    account: int
    session: int
    scopes: list[str]  # sorted, a subset of SCOPES
    created_ms: int  # wall clock, ms since the epoch
    label: str = ""


class ApiKeysFile(msgspec.Struct, forbid_unknown_fields=True):
    """The file: the keys and ``keys_crc`` of them (None: not checked, an operator's edit)."""

    keys: list[ApiKey]
    crc32: str | None = None


def keys_crc(keys: list[ApiKey]) -> str:
    """The CRC-32 of ``keys`` in 8 hex digits, of their JSON as this build encodes them (a
    decoded file encodes back to the same bytes)."""
    return crc_hex(_encoder.encode(keys))


_decoder = msgspec.json.Decoder(ApiKeysFile | list[ApiKey])
_encoder = msgspec.json.Encoder()

_Stamp = tuple[int, int, int]  # (st_ino, st_mtime_ns, st_size)


class ApiKeyStore:
    """The keys in ``path``; see the module docstring for who reads and writes it how.

    Not thread-safe (one per process, used from its event loop). ``create``, ``revoke`` and
    ``revoke_user`` block on the lock file for as long as another process's write takes
    (a few ms); ``get`` never blocks on it.
    """

    def __init__(self, path: Path, max_keys_per_user: int = 20, *, recheck_s: float = 0.5) -> None:
        if max_keys_per_user < 1:
            raise ValueError(f"max_keys_per_user {max_keys_per_user} must be at least 1")
        self.path = path
        self.max_keys_per_user = max_keys_per_user
        self._recheck_s = recheck_s
        self._lock_path = path.with_name(path.name + ".lock")
        self._tmp_path = path.with_name(path.name + ".tmp")
        self._keys: dict[str, ApiKey] = {}
        #: The newest key the last ``create(evict_oldest=True)`` revoked to make room, if any.
        self.evicted: ApiKey | None = None
        self._stamp: _Stamp | None = None
        self._keys, self._stamp = self._read()  # a damaged file is refused here, naming it
        self._next_check = time.monotonic() + recheck_s

    # -- reading -------------------------------------------------------------------------------

    def get(self, key: str) -> ApiKey | None:
        """The key with public id ``key``, or None. Called per request: a dict lookup, plus a
        ``stat`` of the file at most every ``recheck_s`` seconds."""
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + self._recheck_s
            self._refresh()
        return self._keys.get(key)

    def find(self, key: str) -> ApiKey | None:
        """``get``, and for a key not held a look at the file now (a ``stat``; re-read only
        if it changed): a key another gateway just made. A client's next connection may land
        on any gateway sharing its port, and must not be refused for ``recheck_s``."""
        found = self.get(key)
        if found is None and key:
            self._refresh()
            found = self._keys.get(key)
        return found

    def keys_of(self, comp_id: str) -> list[ApiKey]:
        """``comp_id``'s keys by created_ms, then key id (checks the file now: a listing)."""
        self._refresh()
        return sorted(
            (k for k in self._keys.values() if k.comp_id == comp_id),
            key=lambda k: (k.created_ms, k.key),
        )

    def refresh(self) -> None:
        """Look at the file now (a ``stat``; re-read only if it changed), not at ``get``'s
        next recheck: what another process revoked is gone from here at once."""
        self._refresh()
        self._next_check = time.monotonic() + self._recheck_s

    def all_keys(self) -> list[ApiKey]:
        """Every key, by user, then as ``keys_of`` orders them (checks the file now)."""
        self._refresh()
        return sorted(self._keys.values(), key=lambda k: (k.comp_id, k.created_ms, k.key))

    def _refresh(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            # Deleted: no keys are valid any more (failing closed beats trusting a stale copy).
            self._keys, self._stamp = {}, None
            return
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        try:
            self._keys, self._stamp = self._read()
        except ValueError as exc:  # damaged under a running gateway: no key is valid (as
            log.error("%s; no API key is valid until it reads", exc)  # deleted: fails closed)
            self._keys, self._stamp = {}, stamp

    def _read(self) -> tuple[dict[str, ApiKey], _Stamp | None]:
        """The file's keys and the stamp of the very file read (fstat of the open descriptor,
        so a replace between stat and read cannot pair new contents with an old stamp)."""
        try:
            with self.path.open("rb") as f:
                st = os.fstat(f.fileno())
                data = f.read()
        except FileNotFoundError:
            return {}, None
        try:
            doc = _decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:  # named (review 138)
            raise ValueError(f"API keys file {self.path} cannot be read: {exc}") from None
        if isinstance(doc, list):  # an older build's
            doc = ApiKeysFile(doc)
        if doc.crc32 is not None and doc.crc32 != (held := keys_crc(doc.keys)):
            raise ValueError(
                f"API keys file {self.path} cannot be read: its crc32 {doc.crc32} is not its "
                f'keys\' {held}: damaged (or edited by hand: take its "crc32" out to load it)'
            )
        keys = {k.key: k for k in doc.keys}
        return keys, (st.st_ino, st.st_mtime_ns, st.st_size)

    # -- writing -------------------------------------------------------------------------------

    def create(
        self, user: User, scopes: Iterable[str], label: str = "", *, evict_oldest: bool = False
    ) -> ApiKey:
        """A new key for ``user`` with ``scopes``; raises ValueError for an unknown or missing
        scope, a label over MAX_LABEL characters or with unprintable characters, or a user who
        already has ``max_keys_per_user`` keys, unless ``evict_oldest``: then that user's
        oldest key is revoked to make room (a login whose earlier sessions never logged out
        must not lock its owner out; ``evicted`` says which key went)."""
        wanted = sorted({scopes} if isinstance(scopes, str) else set(scopes))
        for scope in wanted:
            if scope not in SCOPES:
                raise ValueError(f"scope {scope!r} is not one of {', '.join(sorted(SCOPES))}")
        if not wanted:
            raise ValueError(f"no scope given: pick from {', '.join(sorted(SCOPES))}")
        if len(label) > MAX_LABEL:
            raise ValueError(f"label is {len(label)} characters, at most {MAX_LABEL} allowed")
        if not label.isprintable():
            raise ValueError(f"label {label!r} has unprintable characters")
        new = ApiKey(
            key=secrets.token_urlsafe(24),
            secret=secrets.token_hex(32),
            comp_id=user.comp_id,
            account=user.account,
            session=user.session,
            scopes=wanted,
            created_ms=time.time_ns() // 1_000_000,
            label=label,
        )

        self.evicted = None

        def add(keys: dict[str, ApiKey]) -> bool:
            mine = sorted(
                (k for k in keys.values() if k.comp_id == user.comp_id),
                key=lambda k: (k.created_ms, k.key),
            )
            count = len(mine)
            if count >= self.max_keys_per_user and evict_oldest:
                # down to one below the limit (a lowered limit: more than one), oldest first
                for old in mine[: count - self.max_keys_per_user + 1]:
                    del keys[old.key]
                    self.evicted = old
            elif count >= self.max_keys_per_user:
                raise ValueError(
                    f"user {user.comp_id!r} has {count} API keys, the limit is "
                    f"{self.max_keys_per_user}: revoke one first"
                )
            keys[new.key] = new
            return True

        self._update(add)
        return new

    def revoke(self, key: str) -> bool:
        """Delete ``key``; False when there was no such key."""
        return self._update(lambda keys: keys.pop(key, None) is not None)

    def revoke_user(self, comp_id: str) -> int:
        """Delete all of ``comp_id``'s keys (the user was removed or compromised); how many."""
        removed = 0

        def drop(keys: dict[str, ApiKey]) -> bool:
            nonlocal removed
            for k in [k for k in keys.values() if k.comp_id == comp_id]:
                del keys[k.key]
                removed += 1
            return removed > 0

        self._update(drop)
        return removed

    def _update(self, change: Callable[[dict[str, ApiKey]], bool]) -> bool:
        """Apply ``change`` to the file's current keys under the lock, writing them back when
        it returns True; what it returned. The lock is released by closing its descriptor, so
        a writer that dies mid-way leaves no lock behind (and no half file: see _write)."""
        make_dirs(self.path.parent)
        lock = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            keys, stamp = self._read()
            changed = change(keys)
            if changed:
                stamp = self._write(keys, 0 if stamp is None else stamp[1])
            self._keys, self._stamp = keys, stamp
            return changed
        finally:
            os.close(lock)

    def _write(self, keys: dict[str, ApiKey], last_mtime_ns: int) -> _Stamp:
        """Replace the file with ``keys``, its mtime strictly after ``last_mtime_ns`` (that of
        the file read under the lock), so readers' stamps never repeat."""
        order = sorted(keys.values(), key=lambda k: (k.comp_id, k.created_ms, k.key))
        fd = os.open(self._tmp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(fd, 0o600)  # a leftover temp file keeps its old mode through O_CREAT
            f.write(_encoder.encode(ApiKeysFile(order, keys_crc(order))))
            f.flush()
            mtime = max(time.time_ns(), last_mtime_ns + 1)
            os.utime(fd, ns=(mtime, mtime))
            os.fsync(fd)  # the client holds the secret once we answer: keep the key too
        os.replace(self._tmp_path, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        st = self.path.stat()
        return (st.st_ino, st.st_mtime_ns, st.st_size)
