"""FIX 4.4 UserRequest (BE) -> UserResponse (BF): a logged-on session changes its own user's
password, as FIX 4.4 has a client do it, or asks its user's status.

A session speaks for the user its Logon named and for no other: Username (553) must be its
SenderCompID, else UserStatus (926) 3, not recognised (another user's name is neither
confirmed nor denied). UserRequestType (924):

- 3, change password: Password (554) the current one, NewPassword (925) the new one, held to
  what ``ringex admin add-user`` takes (1 to 1,024 characters). On an executor thread, as a
  Logon's scrypt: the current password is checked against the user the session logged on
  as (not the file as it is by then), the new one hashed, and the change appended to the
  users' log under its lock (``UserStore.change_password``) while the users hold that user
  as a session of it goes on (its settings may change meanwhile; an operator's password
  change or removal meanwhile wins: 926=6, nothing written; a change made whose fsync
  failed is 926=5, logged as such, review 174). The change keeps the user's epoch, so the
  session's own timer, which may see the file before the answer comes, does not take it for
  the operator's (``users.still_logged_on``). 926=5 password changed, or 4 password
  incorrect. A wrong current password spends the user's token of wrong passwords as a
  failed Logon does (the same limiter: a session is no way around it), a right one gives it
  back; one change per user is in flight at a time (926=6 for another meanwhile). A change
  whose check passed is made even when its session ended meanwhile (its MsgSeqNum was
  taken, as an order's is), and its answer is parked for the session's next logon, as an
  execution report is. The session, its API keys and its orders go on; the next Logon and
  REST login take the new password.
- 4, the user's status: 926=1, logged on (it is: it asks over its session).
- 1 and 2, log a user on or off: 926=6 naming why (a session is its Logon's user; a Logout
  (5) ends it).

A PossDup or PossResend copy of a request answered before (its UserRequestID, among the
user's newest ``_ANSWERS_KEPT``) is answered as before and not acted on again; a copy of
the request still in flight gets no answer of its own (the original's answers it); a copy of
a change whose new password is already the user's (its answer forgotten: a gateway restart)
is answered 5 without a change. Passwords are never logged; the audit log writes 554 and
925 as ``***``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Final

from procs.common import wall_clock
from procs.common.change_log import ChangeMadeError
from procs.common.users import (
    User,
    UsersFileError,
    UserStore,
    password_matches,
    password_refused,
    rehashed,
)
from procs.gateway.fix import FixMessage, field, shown
from procs.gateway.limits import RateLimiter, limit_key
from procs.gateway.logon import password
from procs.gateway.orders import OrderEntry
from procs.gateway.session import Session

log = logging.getLogger("ringex.gateway")

#: UserStatus (926), FIX 4.4.
LOGGED_IN: Final = 1
NOT_RECOGNISED: Final = 3
PASSWORD_INCORRECT: Final = 4
PASSWORD_CHANGED: Final = 5
OTHER: Final = 6
#: Requests answered a user, remembered for their PossDup and PossResend copies (the oldest
#: go first).
_ANSWERS_KEPT: Final = 100


def answer_now(comp_id: str, msg: FixMessage) -> tuple[int, str] | None:
    """The UserResponse's (UserStatus, UserStatusText) for a request answered without a
    password check, or None for a password change to make."""
    username = msg.get(553) or b""
    if username != comp_id.encode():
        return NOT_RECOGNISED, (
            f"Username {shown(username)} is not this session's user: a session speaks for "
            f"its own user only ({comp_id})"
        )
    kind = msg.get(924)
    if kind == b"4":
        return LOGGED_IN, "logged on"
    if kind == b"1":
        return OTHER, "UserRequestType 1 (log on) is not taken: a session's user is its Logon's"
    if kind == b"2":
        return OTHER, "UserRequestType 2 (log off) is not taken: a Logout (5) ends the session"
    if msg.get(554) is None or msg.get(925) is None:
        return OTHER, "UserRequestType 3 (change password) takes Password (554), NewPassword (925)"
    if refused := password_refused(password(msg, 925)):
        return OTHER, f"NewPassword (925): {refused}"
    return None


def response(msg: FixMessage, status: int, text: str) -> bytes:
    """A UserResponse's body answering ``msg``."""
    return (
        field(923, msg.get(923) or b"")
        + field(553, msg.get(553) or b"")
        + field(926, status)
        + field(927, text)
    )


class UserRequests:
    """A mixin of ``GatewayServer`` (``server.py``), which owns the state it names; the
    order entry hands it each UserRequest (``OrderEntry.shell_requests``)."""

    users: UserStore
    entry: OrderEntry

    if TYPE_CHECKING:

        @property
        def failed_logins(self) -> RateLimiter: ...

        def write_now(self, session: Session) -> None: ...

        def park(self, session_id: int, msg_type: bytes, body: bytes, now_ns: int) -> bool: ...

    def user_request(self, session: Session, msg: FixMessage, now_ns: int) -> None:
        comp_id, ref = session.comp_id, msg.get(923) or b""
        copy = msg.get(43) == b"Y" or msg.get(97) == b"Y"
        kept = self._user_answers.get(comp_id)
        if copy and kept is not None and (earlier := kept.get(ref)) is not None:
            session.send(b"BF", response(msg, *earlier), now_ns)  # taken before: not again
            return
        if copy and self._user_changes.get(comp_id) == ref:
            return  # the request itself is in flight: its answer answers this copy too
        answer = answer_now(comp_id, msg)
        if answer is None:
            answer = self._change_password(session, msg, ref, copy)
        if answer is not None:
            self._answered(session, msg, answer, now_ns)

    def _answered(
        self, session: Session, msg: FixMessage, answer: tuple[int, str], now_ns: int
    ) -> Session | None:
        """Sends ``answer`` (to the user's session logged on now, should the asking one be
        gone; parked when none is) and remembers it for copies; the session it went to."""
        kept = self._user_answers.setdefault(session.comp_id, OrderedDict())
        kept[msg.get(923) or b""] = answer
        if len(kept) > _ANSWERS_KEPT:
            kept.popitem(last=False)
        live = session if not session.closed else self.entry.sessions.get(session.session_id)
        if live is not None and not live.closed:
            live.send(b"BF", response(msg, *answer), now_ns)
            return live
        if not self.park(session.session_id, b"BF", response(msg, *answer), now_ns):
            log.warning("the answer to %s's UserRequest could not be parked", session.comp_id)
        return None

    def _change_password(
        self, session: Session, msg: FixMessage, ref: bytes, copy: bool
    ) -> tuple[int, str] | None:
        """Starts the change: None, answered when it is done; or the answer now."""
        comp_id, user = session.comp_id, session.user
        assert user is not None  # (a UserRequest comes in session only)
        if comp_id in self._user_changes:
            return OTHER, f"a password change of {comp_id} is under way: wait for its answer"
        limits = self.failed_logins  # every try spends a token, a right password gives it back
        if retry := limits.take(limit_key(comp_id), time.monotonic()):
            return OTHER, (
                f"too many wrong passwords for {comp_id}: the limit is {limits.rate_per_s:g}/s; "
                f"try again in {math.ceil(retry)} s"
            )
        self._user_changes[comp_id] = ref
        old, new = password(msg), password(msg, 925)
        change = asyncio.get_running_loop().run_in_executor(
            None, self._change_if_right, user, old, new, copy
        )

        def done(change: asyncio.Future[tuple[tuple[int, str], User | None]]) -> None:
            del self._user_changes[comp_id]
            try:
                answer, stored = change.result()
            except Exception:  # not expected: the check and the write say their faults
                log.exception("the password change of %s failed", comp_id)
                answer, stored = (OTHER, "the password could not be changed: see the log"), None
            if answer[0] != PASSWORD_INCORRECT:
                limits.refund(limit_key(comp_id))
            if stored is not None and session.user == user:  # else its timer took the file's
                session.user = stored  # user since, maybe newer: its next pass brings this one
            if (live := self._answered(session, msg, answer, wall_clock.now_ns())) is not None:
                self.write_now(live)

        change.add_done_callback(done)
        return None

    def _change_if_right(
        self, user: User, old: str, new: str, copy: bool
    ) -> tuple[tuple[int, str], User | None]:
        """On an executor thread: the answer, and the user as stored when it changed."""
        if not password_matches(user, old):
            if copy and password_matches(user, new):  # done before, its answer forgotten
                return (PASSWORD_CHANGED, "password changed"), None
            return (PASSWORD_INCORRECT, "password incorrect"), None
        try:
            stored = self._changes_store.change_password(user, rehashed(user, new))
        except ChangeMadeError as exc:  # made: every gateway may take the new one (review 174)
            log.error("the password change of %s: %s", user.comp_id, exc)
            stored = self._changes_store.get(user.comp_id)
        except (OSError, UsersFileError) as exc:
            log.error("the password change of %s failed: %s", user.comp_id, exc)
            return (OTHER, "the password could not be changed: the gateway's log says why"), None
        if stored is None:
            return (OTHER, "the operator changed or removed this user meanwhile: not changed"), None
        log.info("%s changed its password (UserRequest)", user.comp_id)
        return (PASSWORD_CHANGED, "password changed"), stored

    @functools.cached_property
    def _changes_store(self) -> UserStore:
        """The users as the password changes write them, on executor threads: a store of its
        own (the loop's is not written from a thread: its lock would hold the loop through
        the fsync), made at the first change and read from where it stopped at the next (a
        store made per change read the whole file, and held a descriptor until collected)."""
        return UserStore(self.users.path)

    @functools.cached_property
    def _user_answers(self) -> dict[str, OrderedDict[bytes, tuple[int, str]]]:
        """Per comp id, its newest answers by UserRequestID (one user cannot push out
        another's)."""
        return {}

    @functools.cached_property
    def _user_changes(self) -> dict[str, bytes]:
        """Comp id -> the UserRequestID of its password change in flight."""
        return {}
