"""FIX users: SenderCompID -> account, session id and a salted scrypt password hash.

Kept in ``var/<instance>/gateway/users.json`` (a snapshot) and ``users.log`` beside it (the
users added, changed and removed since: ``procs/common/change_log.py``), so a change is one
frame appended, and a gateway reads only what the log gained (before, each change rewrote
the file whole and every gateway read it again whole: 110-140 ms of each one's loop at
60,000 users, review 169). The operator CLI calls ``add``. Passwords are never stored, only
``hashlib.scrypt`` digests with a per-user random salt and the cost parameters they were
made with (so raising the cost later keeps old hashes verifiable). The snapshot also keeps
the highest session id it gave (``UsersFile``; each change its own), so a removed user's id,
which the gateways route reports by, is never given to another user, and the CRC-32 of both
(``crc32``): a flipped bit that still decodes (an account digit) is refused, not loaded
(review 138). A file without it (an older build's, or one an operator edited and took the
key out of) loads as it reads; the log has a CRC per change.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import msgspec

from config.refused_value import cut_values
from procs.common.change_log import COMPACT_MIN, LoggedSnapshot
from procs.common.crc_frames import crc_hex

log = logging.getLogger("ringex.users")

#: scrypt cost: ~16 MiB and tens of ms per check (slows a password guesser, not a logon).
DEFAULT_N = 1 << 14
_NO_SALT = bytes(16)  # an unknown user's check hashes with it


#: A SenderCompID: what FIX carries in a field (no SOH, no "=") and what names the user's
#: message store directory (no "/", not "." or ".."): letters, digits and ``._:-``, a letter
#: or digit first, 1..32 of them.
COMP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,31}")
#: The longest password a user may have: what the REST API's login takes
#: (``POST /api/v1/apiKey``); a longer one would log on over FIX only.
MAX_PASSWORD_CHARS = 1024


#: The largest account a user may have: REST answers its ``accountId`` as a JSON number,
#: which a JavaScript client (the venue's page) reads exactly only up to 2**53 - 1 (a larger
#: one read as a neighbouring account, review 225).
MAX_USER_ACCOUNT = 2**53 - 1


def account_refused(account: int) -> str:
    """Why ``account`` cannot be a user's (past ``MAX_USER_ACCOUNT``), or "" when it can (the
    lower bound is the admin edge's, ``check_account``: a store of tests takes 0)."""
    if account <= MAX_USER_ACCOUNT:
        return ""
    return (
        f"account {account} is outside 1..{MAX_USER_ACCOUNT} (2**53 - 1, the largest a "
        "JavaScript client reads exactly as REST's accountId)"
    )


def fee_account_refused(store: UserStore, fee_account: int) -> str:
    """Why a start is refused where a user's account is the exchange's fee account
    (``risk.fee_account``, moved onto it by a typo or between two runs): the user would
    trade with every fee the exchange collects (review 237; ``add-user`` refuses the
    pairing the other way round); "" when no user's is."""
    held = sorted(u.comp_id for u in store.users() if u.account == fee_account)
    if not held:
        return ""
    return (
        f"risk.fee_account = {fee_account} is user {held[0]!r}'s account (of {store.path}); "
        "the fee account collects every fee: set risk.fee_account to an account no user holds"
    )


def comp_id_refused(comp_id: str | None) -> str:
    """Why ``comp_id`` cannot name a user (``COMP_ID``), or "" when it can."""
    if COMP_ID.fullmatch(comp_id or ""):
        return ""
    return (  # a value of kilobytes shown cut (review 194)
        f"comp id {cut_values(repr(comp_id))} must be 1..32 of A-Z a-z 0-9 . _ : -, a letter "
        "or digit first"
    )


def password_refused(password: str | None) -> str:
    """Why ``password`` cannot be a user's (empty, past ``MAX_PASSWORD_CHARS``, not UTF-8
    text, or holding SOH, which no Logon can carry), or "" when it can. The password itself
    is never shown."""
    if not password:  # a Logon without a Password (554) reads as "": never a user's
        return "the password must not be empty"
    if len(password) > MAX_PASSWORD_CHARS:
        return f"the password is {len(password)} characters, the limit is {MAX_PASSWORD_CHARS}"
    try:  # argv's bytes that are not UTF-8 come as surrogates, which the digest cannot take
        password.encode()
    except UnicodeEncodeError as exc:
        byte = ord(password[exc.start]) & 0xFF
        return f"the password is not UTF-8 text (byte 0x{byte:02x} at character {exc.start + 1})"
    if "\x01" in password:
        return "the password holds SOH (\\x01), which a FIX Logon cannot carry"
    return ""


class User(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    comp_id: str
    account: int
    session: int  # the SessionId records carry: stable per user across reconnects
    salt: str  # hex
    digest: str  # hex
    n: int = DEFAULT_N
    r: int = 8
    p: int = 1
    cancel_on_disconnect: bool | None = None  # None: the gateway's setting
    # The session settings a user holds over its gateway's (None: the gateway's), taken at
    # its next Logon (``logon.user_settings``). Left out of the file while None
    # (``_as_written``), so a file without them reads and checks as it did before them.
    reset_on_logon: bool | None = None
    min_heartbeat_s: int | None = None
    max_heartbeat_s: int | None = None
    sending_time_tolerance_s: int | None = None
    #: Counts the operator's password changes (``set_password``): a session logged on under
    #: another epoch is logged out; the user's own change (a FIX UserRequest) keeps it.
    epoch: int = 0


#: The user settings the file holds only when set (``User``).
SESSION_SETTINGS: Final = (
    "reset_on_logon", "min_heartbeat_s", "max_heartbeat_s", "sending_time_tolerance_s"
)  # fmt: skip
#: What ``ringex admin set-user`` may set: cancel on disconnect and the session settings.
SETTINGS: Final = ("cancel_on_disconnect", *SESSION_SETTINGS)
#: A password's fields: a user's own change of them keeps its sessions (``still_logged_on``).
_PASSWORD: Final = ("salt", "digest", "n", "r", "p")


def _as_written(user: User) -> dict[str, object]:
    """``user`` as the file holds it: its fields in order, the session settings and epoch
    only when set (a file an earlier build wrote, without them, keeps its CRC)."""
    fields = msgspec.structs.asdict(user)
    for name in SESSION_SETTINGS:
        if fields[name] is None:
            del fields[name]
    if not fields["epoch"]:
        del fields["epoch"]
    return fields


class UsersFile(msgspec.Struct, forbid_unknown_fields=True):
    """The file: its users, and the highest session id it ever gave (a removed user's id is
    never given again: the gateways route reports by it, and a removed user's orders may
    still rest). A file written before ``last_session`` was kept is a bare list of users."""

    users: list[User]
    last_session: int = 0
    crc32: str | None = None  # ``users_crc`` of the two above; None: not checked
    #: The generation of the log that continues it (``change_log``; 0: an older build's),
    #: in the CRC too when past 0.
    generation: int = 0


def still_logged_on(now: User | None, was: User | None) -> User | None:
    """``now`` (the users file's) when a session logged on as ``was`` goes on as it: the same
    user, account, session id and epoch, only its settings (`ringex admin set-user`) or its
    password changed by the user itself (a UserRequest: no new ``epoch``); None when the
    operator removed it or changed its password (`ringex admin set-password`)."""
    if now is None or was is None:
        return None
    if now == was:
        return now
    changed = (f for f in now.__struct_fields__ if getattr(now, f) != getattr(was, f))
    return now if all(f in SETTINGS or f in _PASSWORD for f in changed) else None


def still_held(now: User | None, checked: User) -> User | None:
    """``now`` (the users file's, read after a password check of tens of ms on a thread)
    where it still gives the user ``checked`` its password and epoch, its settings perhaps
    changed; else None: an operator's `set-password` or `remove-user` during the check wins
    (a FIX Logon, review 171; a REST login, review 163)."""
    kept = still_logged_on(now, checked)
    if kept is None or (kept.salt, kept.digest) != (checked.salt, checked.digest):
        return None
    return kept


def password_matches(user: User, password: str) -> bool:
    """Whether ``password`` is ``user``'s (tens of ms of scrypt: off an event loop)."""
    digest = _digest(password, bytes.fromhex(user.salt), user.n, user.r, user.p)
    return hmac.compare_digest(digest.hex(), user.digest)


def users_crc(users: list[User], last_session: int, generation: int = 0) -> str:
    """The CRC-32 a users file keeps of its users and session high-water mark (and of a
    ``generation`` past 0), in 8 hex digits (a file's size does not vary with it), of their
    JSON as this build encodes them (a decoded file encodes back to the same bytes)."""
    held: list[object] = [[_as_written(u) for u in users], last_session]
    return crc_hex(msgspec.json.encode([*held, generation] if generation else held))


def _digest(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 << 20)


def rehashed(user: User, password: str, n: int = DEFAULT_N) -> User:
    """``user`` with ``password``: a fresh salt, its digest at cost ``n``, all else kept (its
    account, session id and settings). Tens of ms of scrypt: a gateway calls it on an
    executor thread."""
    salt = os.urandom(16)
    digest = _digest(password, salt, n, 8, 1)
    return msgspec.structs.replace(user, salt=salt.hex(), digest=digest.hex(), n=n, r=8, p=1)


class UserExistsError(ValueError):
    """``UserStore.add(..., new=True)`` of a comp id that is a user already."""

    def __init__(self, user: User) -> None:
        super().__init__(f"comp id {user.comp_id} is a user already (account {user.account})")
        self.user = user


class UsersFileError(ValueError):
    """The users file exists but cannot be read or decoded; the message names it and why."""


class UsersChange(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One change in ``users.log``: users removed (by comp id), then users put whole, and the
    session high-water mark as it then was."""

    drop: list[str] = []
    put: list[User] = []
    last_session: int = 0


_change_decoder = msgspec.json.Decoder(UsersChange)
_encoder = msgspec.json.Encoder()


class UserStore:
    def __init__(
        self, path: Path, *, recheck_s: float = 0.0, compact_min: int = COMPACT_MIN
    ) -> None:
        """``recheck_s``: look at the files at most this often (a REST gateway reads a user
        per request; a FIX logon, rare, always looks)."""
        self.path = path
        self.recheck_s = recheck_s
        self._checked = -1e18
        self._users: dict[str, User] = {}
        self._last_session = 0  # the high-water mark of session ids given (``UsersFile``)
        self._files = LoggedSnapshot(
            path,
            path.with_suffix(".lock"),
            load=self._load_snapshot,
            apply=self._apply,
            dump=self._dump,
            size=lambda: len(self._users),
            compact_min=compact_min,
        )
        self._reading = threading.RLock()
        try:
            self._files.reload()
        except (OSError, ValueError) as exc:  # nothing read: the caller must know (a start,
            raise UsersFileError(f"users file {path} cannot be read: {exc}") from None  # a tool)
        self._checked = time.monotonic()

    @property
    def log_path(self) -> Path:
        return self._files.path

    def _load_now(self) -> None:
        """Under ``_reading``: read what changed in the files (`ringex admin add-user` writes
        them while the gateways run, and they see the new user at its first logon). One at a
        time: a REST login reads from an executor thread while the event loop reads too
        (review 170: a thread that read before a change could set its users back after the
        loop had read the new ones)."""
        if self.recheck_s:
            now = time.monotonic()
            if now - self._checked < self.recheck_s:
                return
            self._checked = now
        if self._files.unchanged_since_failure():
            return  # said once; read again when either file changes
        kept = self._users, self._last_session
        try:
            self._files.refresh()
        except (OSError, ValueError) as exc:
            self._keep(kept, exc)

    def _keep(self, kept: tuple[dict[str, User], int], exc: Exception) -> None:
        """A running gateway goes on with the users it read last, saying why once until the
        files change (a write's failed read included)."""
        if self._files.failed_anew():
            log.error("users file %s cannot be read (%s): the users read before are kept",
                      self.path, exc)  # fmt: skip
        self._users, self._last_session = kept

    def _load_snapshot(self, data: bytes | None) -> int:
        """The users become the snapshot's (``data``; None: no file, no users); its
        generation."""
        if data is None:
            self._users, self._last_session = {}, 0
            return 0
        try:
            doc = msgspec.json.decode(data, type=UsersFile | list[User])
        except (UnicodeDecodeError, msgspec.DecodeError) as exc:
            raise ValueError(str(exc)) from None
        users_read = doc if isinstance(doc, list) else doc.users
        bad = [u.comp_id for u in users_read if not (_is_hex(u.salt) and _is_hex(u.digest))]
        if bad:
            raise ValueError(f"user {bad[0]}: its salt or digest is not hex")  # (138)
        if isinstance(doc, UsersFile) and doc.crc32 is not None:
            held = users_crc(doc.users, doc.last_session, doc.generation)
            if doc.crc32 != held:
                raise ValueError(
                    f"its crc32 {doc.crc32} is not its users' {held}: damaged (or edited "
                    'by hand: take its "crc32" out to load it as it reads)'
                )
        users, last = (doc, 0) if isinstance(doc, list) else (doc.users, doc.last_session)
        self._users = {user.comp_id: user for user in users}
        self._last_session = max(last, *(u.session for u in users), 0)
        return 0 if isinstance(doc, list) else doc.generation

    def _apply(self, body: bytes) -> None:
        try:
            change = _change_decoder.decode(body)
        except msgspec.DecodeError as exc:
            raise ValueError(str(exc)) from None
        bad = [u.comp_id for u in change.put if not (_is_hex(u.salt) and _is_hex(u.digest))]
        if bad:
            raise ValueError(f"user {bad[0]}: its salt or digest is not hex")
        for comp_id in change.drop:
            self._users.pop(comp_id, None)
        for user in change.put:
            self._users[user.comp_id] = user
        sessions = (u.session for u in change.put)
        self._last_session = max(self._last_session, change.last_session, *sessions)

    def _dump(self, generation: int) -> bytes:
        users = sorted(self._users.values(), key=lambda u: u.comp_id)
        last = self._last_session
        written = {"users": [_as_written(u) for u in users], "last_session": last}
        crc = users_crc(users, last, generation)
        return _encoder.encode({**written, "crc32": crc, "generation": generation})

    def users(self) -> list[User]:
        with self._reading:  # (another thread's reload fills a new dict under it)
            self._load_now()
            return list(self._users.values())

    def get(self, comp_id: str) -> User | None:
        with self._reading:
            self._load_now()
            return self._users.get(comp_id)

    def add(
        self,
        comp_id: str,
        password: str,
        account: int,
        *,
        n: int = DEFAULT_N,
        cancel_on_disconnect: bool | None = None,
        new: bool = False,
    ) -> User:
        """Create or replace ``comp_id``; keeps its session id when it exists. Under the
        files' lock, on the files as they are now: two admins adding users at once keep
        both, each with its own session id. ``new``: raise ``UserExistsError`` rather than
        replace one that exists (checked under that lock: two ``add-user`` of one comp id at
        once moved it to the second one's empty account, review 45)."""
        if refused := comp_id_refused(comp_id):
            raise ValueError(refused)
        if not password:  # a Logon without a Password (554) reads as "": never a user's
            raise ValueError(f"comp id {comp_id!r}: the password must not be empty")
        if refused := account_refused(account):
            raise ValueError(f"comp id {comp_id!r}: {refused}")
        with self._locked():
            if new and (old := self._users.get(comp_id)) is not None:
                raise UserExistsError(old)
            return self._add(comp_id, password, account, n, cancel_on_disconnect)

    def _add(
        self,
        comp_id: str,
        password: str,
        account: int,
        n: int,
        cancel_on_disconnect: bool | None,
    ) -> User:
        old = self._users.get(comp_id)
        session = old.session if old is not None else self._last_session + 1
        salt = os.urandom(16)
        user = User(
            comp_id,
            account,
            session,
            salt.hex(),
            _digest(password, salt, n, 8, 1).hex(),
            n=n,
            cancel_on_disconnect=cancel_on_disconnect,
            epoch=0 if old is None else old.epoch + 1,  # replaced: its sessions end
        )
        self._put(user)
        return user

    def change_password(self, logged_on: User, new: User) -> User | None:
        """A user's own password change (a FIX UserRequest): ``new``'s password (``rehashed``
        from ``logged_on``, the user its session logged on as) stored, under the files' lock,
        while they hold that user as a session of it would go on (``still_logged_on``: its
        settings may have changed meanwhile, and are kept); the user as stored, or None,
        nothing written, when the operator removed it or changed its password meanwhile."""
        with self._locked():
            now = still_logged_on(self._users.get(logged_on.comp_id), logged_on)
            if now is None:
                return None
            password = {f: getattr(new, f) for f in _PASSWORD}
            stored = msgspec.structs.replace(now, **password)
            self._put(stored)
            return stored

    def set_password(self, comp_id: str, password: str, n: int = DEFAULT_N) -> User | None:
        """``comp_id``'s password is now ``password`` (its account, session id and settings
        kept); the user as stored, or None when ``comp_id`` is not a user (nothing written).
        Under the files' lock, so a user another admin removed meanwhile is not added back."""
        if refused := password_refused(password):
            raise ValueError(f"comp id {comp_id!r}: {refused}")
        with self._locked():
            old = self._users.get(comp_id)
            if old is None:
                return None
            new = msgspec.structs.replace(rehashed(old, password, n), epoch=old.epoch + 1)
            self._put(new)  # (a new epoch: its sessions are logged out)
            return new

    def set_settings(
        self,
        comp_id: str,
        refused: Callable[[User], str] | None = None,
        **settings: bool | int | None,
    ) -> User | None:
        """``comp_id``'s ``settings`` (``SETTINGS``; None: the gateway's), those not named
        kept; the user as stored, or None when it is not a user (nothing written). Under the
        files' lock, as ``set_password``: ``refused`` judges the user as it would be stored,
        read under that lock (two changes at once are judged in turn), and a reason it gives
        is raised as a ValueError, nothing written."""
        if unknown := sorted(set(settings) - set(SETTINGS)):
            raise ValueError(f"no user setting {unknown[0]!r} (settings: {', '.join(SETTINGS)})")
        with self._locked():
            old = self._users.get(comp_id)
            if old is None:
                return None
            new = msgspec.structs.replace(old, **settings)
            if refused is not None and (why := refused(new)):
                raise ValueError(why)
            if new != old:
                self._put(new)
            return new

    def remove(self, comp_id: str, *, session: int | None = None) -> bool:
        """Take ``comp_id`` off; whether it was there. ``session``: only while the user of
        that comp id is still the one of that session (not one added again meanwhile under
        the same comp id: two removals with an ``add-user`` between them took the new user
        off, review 286's lead)."""
        with self._locked():
            user = self._users.get(comp_id)
            if user is None or (session is not None and user.session != session):
                return False
            self._write(UsersChange(drop=[comp_id], last_session=self._last_session))
            return True

    def compact(self) -> None:
        """Every user into ``users.json`` and the log begun again (what a writer does once
        the log holds more changes than there are users): before an edit of the file by
        hand, which the log's changes would otherwise be applied over (``settle``)."""
        with self._locked():
            self._files.settle()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """An exclusive lock on ``<file>.lock`` with what changed read under it (a file that
        cannot be read raises ``UsersFileError``: no change is made over a misread one)."""
        with self._reading, self._files.lock():
            kept = self._users, self._last_session
            try:
                self._files.refresh()
            except (OSError, ValueError) as exc:
                self._keep(kept, exc)
                raise UsersFileError(f"users file {self.path} cannot be read: {exc}") from None
            yield

    def verify(self, comp_id: str, password: str) -> User | None:
        """The user when ``password`` is right; None for a wrong password or unknown user."""
        user = self.get(comp_id)
        if user is None:
            # the same work as a wrong password, so the answer's timing does not tell which
            # user names exist
            _digest(password, _NO_SALT, DEFAULT_N, 8, 1)
            return None
        return user if password_matches(user, password) else None

    def _put(self, user: User) -> None:
        """``user`` stored (salts and digests: the owner's alone, as apikeys.json; fsynced,
        as users are added once and must survive a power loss)."""
        last = max(self._last_session, user.session)
        self._write(UsersChange(put=[user], last_session=last))

    def _write(self, change: UsersChange) -> None:
        self._files.append(_encoder.encode(change))


def _is_hex(text: str) -> bool:
    """Whether ``text`` is whole bytes in hex (a salt, a digest): else a logon would fail on
    it (review 138: a damaged salt loaded, and ``verify`` raised)."""
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True
