"""REST API keys: a public key id, its HMAC secret, the user it acts for and its scopes.

Kept in ``var/<instance>/gateway/apikeys.json`` (a snapshot) and ``apikeys.log`` beside it
(the keys made and revoked since: ``procs/common/change_log.py``), shared by every gateway
process of the instance. The secrets are stored **in the clear**: HMAC-SHA256 request
signing needs the verifier to hold the very secret the client holds (unlike a password,
which is kept as a scrypt digest in users.json). The files are therefore created with mode
0600, and anyone who can read them can trade as their users: guard them like a private key.
The snapshot keeps the CRC-32 of its keys (``ApiKeysFile``): a flipped bit that still
decodes (the account a key acts for) is refused, not loaded (review 138); an older build's
file, a bare list of keys, loads as it reads; the log has a CRC per change.

Writers (create/revoke: a user's login or logout, an operator) take an exclusive ``flock``
on a sibling ``.lock`` file, read what changed under it (another process may have written
since), and append their change to the log, fsynced: one frame, whatever the number of keys
(before, a login rewrote and fsynced the whole file, and every gateway read it again whole:
330-600 ms of each one's loop at 100,000 keys, review 169). Readers take no lock: ``get``
runs on every request: an ``fstat`` of the log, read on when it grew or was replaced, and
a look at both files once per ``recheck_s`` (``find``: and for a key it does not hold),
reading only what the log gained. A key revoked in another process is thus refused here at
once (before review 229 it still verified for up to ``recheck_s``, 0.5 s); one made there
verifies through ``get`` at once too; only a snapshot edited by hand waits for
``recheck_s``. An edit of ``apikeys.json`` by hand (the gateways stopped) that keeps its
``"generation"`` has the log's changes applied over it; one without it is taken whole, the
log not read (``change_log``; ``compact`` first puts every change in the file).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import msgspec

from procs.common.change_log import COMPACT_MIN, ChangeMadeError, LoggedSnapshot
from procs.common.crc_frames import crc_hex
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
    """The file: the keys and ``keys_crc`` of them (None: not checked, an operator's edit),
    and the generation of the log that continues it (``change_log``; 0: an older build's)."""

    keys: list[ApiKey]
    crc32: str | None = None
    generation: int = 0


def keys_crc(keys: list[ApiKey], generation: int = 0) -> str:
    """The CRC-32 of ``keys`` (and of a ``generation`` past 0) in 8 hex digits, of their JSON
    as this build encodes them (a decoded file encodes back to the same bytes)."""
    return crc_hex(_encoder.encode([keys, generation] if generation else keys))


class KeysChange(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One change in ``apikeys.log``: keys revoked (by id), then keys made."""

    drop: list[str] = []
    put: list[ApiKey] = []


class NotHeldError(Exception):
    """``ApiKeyStore.create``'s ``held`` said no: nothing was written."""


class KeysFileError(ValueError):
    """The key files cannot be read (damaged: the message names the file and why); a write
    refused for it changed nothing."""


_decoder = msgspec.json.Decoder(ApiKeysFile | list[ApiKey])
_change_decoder = msgspec.json.Decoder(KeysChange)
_encoder = msgspec.json.Encoder()


def _age(key: ApiKey) -> tuple[int, str]:
    return key.created_ms, key.key


class ApiKeyStore:
    """The keys in ``path`` and its log; see the module docstring for who reads and writes
    them how.

    Not thread-safe (one per process, used from its event loop). ``create``, ``revoke`` and
    ``revoke_user`` block on the lock file for as long as another process's write takes
    (a few ms); ``get`` never blocks on it.
    """

    def __init__(
        self,
        path: Path,
        max_keys_per_user: int = 20,
        *,
        recheck_s: float = 0.5,
        compact_min: int = COMPACT_MIN,
    ) -> None:
        if max_keys_per_user < 1:
            raise ValueError(f"max_keys_per_user {max_keys_per_user} must be at least 1")
        self.path = path
        self.max_keys_per_user = max_keys_per_user
        self._recheck_s = recheck_s
        self._keys: dict[str, ApiKey] = {}
        self._by_user: dict[str, dict[str, ApiKey]] = {}
        #: The newest key the last ``create(evict_oldest=True)`` revoked to make room, if any.
        self.evicted: ApiKey | None = None
        self._files = LoggedSnapshot(
            path,
            path.with_name(path.name + ".lock"),
            load=self._load,
            apply=self._apply,
            dump=self._dump,
            size=lambda: len(self._keys),
            compact_min=compact_min,
        )
        self._files.reload()  # a damaged file is refused here, naming it
        self._next_check = time.monotonic() + recheck_s

    @property
    def log_path(self) -> Path:
        return self._files.path

    # -- reading -------------------------------------------------------------------------------

    def get(self, key: str) -> ApiKey | None:
        """The key with public id ``key``, or None. Called per request: a dict lookup and an
        ``fstat`` of the log (``moved``: what another process revoked is refused here at
        once, review 229), and a look at both files every ``recheck_s`` seconds."""
        now = time.monotonic()
        if now >= self._next_check or self._files.moved():
            self._next_check = now + self._recheck_s
            self._refresh()
        return self._keys.get(key)

    def find(self, key: str) -> ApiKey | None:
        """``get``, and for a key not held a look at the files now: a key another gateway
        just made. A client's next connection may land on any gateway sharing its port, and
        must not be refused for ``recheck_s``."""
        found = self.get(key)
        if found is None and key:
            self._refresh()
            found = self._keys.get(key)
        return found

    def keys_of(self, comp_id: str) -> list[ApiKey]:
        """``comp_id``'s keys by created_ms, then key id (checks the files now: a listing)."""
        self._refresh()
        return sorted(self._by_user.get(comp_id, {}).values(), key=_age)

    def refresh(self) -> None:
        """Look at the files now, not at ``get``'s next recheck: what another process
        revoked is gone from here at once."""
        self._refresh()
        self._next_check = time.monotonic() + self._recheck_s

    def all_keys(self) -> list[ApiKey]:
        """Every key, by user, then as ``keys_of`` orders them (checks the files now)."""
        self._refresh()
        return sorted(self._keys.values(), key=lambda k: (k.comp_id, k.created_ms, k.key))

    def _refresh(self) -> None:
        if self._files.unchanged_since_failure():
            return  # said once; read again when either file changes
        try:
            self._files.refresh()
        except (OSError, ValueError) as exc:
            self._fail_closed(exc)

    def _fail_closed(self, exc: Exception) -> None:
        """Damaged (or unreadable) under a running gateway: no key is valid (as deleted), and
        that is said once until the files change (a write's failed read included)."""
        if self._files.failed_anew():
            log.error("%s; no API key is valid until it reads", exc)
        self._keys, self._by_user = {}, {}

    def _load(self, data: bytes | None) -> int:
        """The keys become the snapshot's (``data``; None: no file, no keys); its generation."""
        self._keys, self._by_user = {}, {}
        if data is None:
            return 0
        try:
            doc = _decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:  # named (review 138)
            raise ValueError(f"API keys file {self.path} cannot be read: {exc}") from None
        if isinstance(doc, list):  # an older build's
            doc = ApiKeysFile(doc)
        held = keys_crc(doc.keys, doc.generation)
        if doc.crc32 is not None and doc.crc32 != held:
            raise ValueError(
                f"API keys file {self.path} cannot be read: its crc32 {doc.crc32} is not its "
                f'keys\' {held}: damaged (or edited by hand: take its "crc32" out to load it)'
            )
        for key in doc.keys:
            self._put(key)
        return doc.generation

    def _apply(self, body: bytes) -> None:
        try:
            change = _change_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ValueError(str(exc)) from None
        for gone in change.drop:
            if (old := self._keys.pop(gone, None)) is not None:
                mine = self._by_user[old.comp_id]
                del mine[gone]
                if not mine:
                    del self._by_user[old.comp_id]
        for key in change.put:
            self._put(key)

    def _put(self, key: ApiKey) -> None:
        if (old := self._keys.get(key.key)) is not None and old.comp_id != key.comp_id:
            del self._by_user[old.comp_id][key.key]
        self._keys[key.key] = key
        self._by_user.setdefault(key.comp_id, {})[key.key] = key

    def _dump(self, generation: int) -> bytes:
        order = sorted(self._keys.values(), key=lambda k: (k.comp_id, k.created_ms, k.key))
        return _encoder.encode(ApiKeysFile(order, keys_crc(order, generation), generation))

    # -- writing -------------------------------------------------------------------------------

    def create(
        self,
        user: User,
        scopes: Iterable[str],
        label: str = "",
        *,
        evict_oldest: bool = False,
        held: Callable[[], bool] = lambda: True,
    ) -> ApiKey:
        """A new key for ``user`` with ``scopes``; raises ValueError for an unknown or missing
        scope, a label over MAX_LABEL characters or with unprintable characters, or a user who
        already has ``max_keys_per_user`` keys, unless ``evict_oldest``: then that user's
        oldest key is revoked to make room (a login whose earlier sessions never logged out
        must not lock its owner out; ``evicted`` says which key went). ``held`` is asked
        under the keys' lock, before anything is written: False raises ``NotHeldError``
        (a login's password changed while it waited for the lock: review 286, its user's
        oldest key was evicted for a key then revoked)."""
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
        self.evicted = None
        with self._locked():
            if not held():
                raise NotHeldError(f"no key made for {user.comp_id!r}: its login no longer holds")
            mine = sorted(self._by_user.get(user.comp_id, {}).values(), key=_age)
            new = ApiKey(
                key=secrets.token_urlsafe(24),
                secret=secrets.token_hex(32),
                comp_id=user.comp_id,
                account=user.account,
                session=user.session,
                scopes=wanted,
                # past the user's newest key: logins inside one ms keep their order, so the
                # oldest is the first made (a tie went by the random key id)
                created_ms=max(time.time_ns() // 1_000_000, mine[-1].created_ms + 1 if mine else 0),
                label=label,
            )
            count, evicted = len(mine), []
            if count >= self.max_keys_per_user and evict_oldest:
                # down to one below the limit (a lowered limit: more than one), oldest first
                evicted = mine[: count - self.max_keys_per_user + 1]
            elif count >= self.max_keys_per_user:
                raise ValueError(
                    f"user {user.comp_id!r} has {count} API keys, the limit is "
                    f"{self.max_keys_per_user}: revoke one first"
                )
            self.evicted = evicted[-1] if evicted else None  # (said with a ChangeMadeError)
            try:
                self._write(KeysChange([k.key for k in evicted], [new]))
            except ChangeMadeError:
                raise  # made, the oldest revoked: ``evicted`` says which (review 177)
            except OSError:
                self.evicted = None
                raise
        return new

    def revoke(self, key: str) -> bool:
        """Delete ``key``; False when there was no such key."""
        with self._locked():
            if key not in self._keys:
                return False
            self._write(KeysChange([key]))
            return True

    def revoke_user(self, comp_id: str, *, keep: int | None = None) -> int:
        """Delete all of ``comp_id``'s keys (the user was removed or compromised); how many.
        ``keep``: but those made for the user of that session (a user added again under the
        comp id meanwhile keeps its own; an earlier user's left by a removal go)."""
        with self._locked():
            held = self._by_user.get(comp_id, {})
            mine = sorted(k for k, v in held.items() if keep is None or v.session != keep)
            if mine:
                self._write(KeysChange(mine))
            return len(mine)

    def compact(self) -> None:
        """Every key into ``apikeys.json`` and the log begun again (what a writer does once
        the log holds more changes than there are keys): before an edit of the file by
        hand, which the log's changes would otherwise be applied over (``settle``)."""
        with self._locked():
            self._files.settle()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The files' lock with what changed read under it; a file that cannot be read raises
        ``KeysFileError`` naming it (OSError: one that cannot be opened), failing closed as a
        read does (no change is made on top of a file misread)."""
        with self._files.lock():
            try:
                self._files.refresh()
            except (OSError, ValueError) as exc:
                self._fail_closed(exc)
                if isinstance(exc, ValueError):
                    raise KeysFileError(str(exc)) from None
                raise
            yield

    def _write(self, change: KeysChange) -> None:
        """``change`` appended to the log and applied (the client holds a new secret once we
        answer: it is fsynced first)."""
        self._files.append(_encoder.encode(change))
