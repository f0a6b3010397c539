"""FIX 4.4 UserRequest (BE) -> UserResponse (BF): a logged-on session changes its own user's
password, as FIX 4.4 has a client do it, or asks its user's status.

A session speaks for the user its Logon named and for no other: Username (553) must be its
SenderCompID, else UserStatus (926) 3, not recognised (another user's name is neither
confirmed nor denied). UserRequestType (924):

- 3, change password: Password (554) the current one, NewPassword (925) the new one, held to
  what ``ringex admin add-user`` takes (1 to 1,024 characters). The check and the new digest
  are scrypt's (tens of ms) on an executor thread, as a Logon's; then the users file is
  rewritten on the loop, under its lock, only while it still holds the user the session
  logged on as (an operator's change or removal meanwhile wins: 926=6, nothing written), and
  the session goes on as that user (``Session.on_timer`` logs out a session whose user the
  file no longer matches: the session's own change must not be taken for the operator's).
  926=5 password changed, or 4 password incorrect. A wrong current password spends the
  user's token of wrong passwords as a failed Logon does (the same limiter: a session is no
  way around it), and one change per user is in flight at a time (926=6 for another meanwhile).
  The session, its API keys and its orders go on; the next Logon and REST login take the new
  password.
- 4, the user's status: 926=1, logged on (it is: it asks over its session).
- 1 and 2, log a user on or off: 926=6 naming why (a session is its Logon's user; a Logout
  (5) ends it).

A PossDup or PossResend copy of a request answered before (its UserRequestID) is answered as
before and not acted on again. Passwords are never logged; the audit log writes 554 and 925
as ``***``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Final

from procs.common.users import User, UsersFileError, UserStore, password_refused, rehashed
from procs.gateway.connection import Connection
from procs.gateway.fix import FixMessage, field, shown
from procs.gateway.limits import RateLimiter, limit_key
from procs.gateway.logon import password
from procs.gateway.session import Session

log = logging.getLogger("ringex.gateway")

#: UserStatus (926), FIX 4.4.
LOGGED_IN: Final = 1
NOT_RECOGNISED: Final = 3
PASSWORD_INCORRECT: Final = 4
PASSWORD_CHANGED: Final = 5
OTHER: Final = 6
#: Requests answered, remembered for their PossDup and PossResend copies (the oldest go first).
_ANSWERS_KEPT: Final = 1_000


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
    order entry hands it each UserRequest (``OrderEntry.user_request``)."""

    users: UserStore
    connections: set[Connection]

    if TYPE_CHECKING:

        @property
        def failed_logins(self) -> RateLimiter: ...

        def after_input(self, conn: Connection) -> None: ...

    def user_request(self, session: Session, msg: FixMessage, now_ns: int) -> None:
        comp_id = session.comp_id
        key = (comp_id, msg.get(923) or b"")
        answers = self._user_answers
        if (msg.get(43) == b"Y" or msg.get(97) == b"Y") and (earlier := answers.get(key)):
            session.send(b"BF", response(msg, *earlier), now_ns)  # taken before: not again
            return
        answer = answer_now(comp_id, msg)
        if answer is None:
            answer = self._change_password(session, msg, key)
        if answer is not None:
            self._answered(session, msg, key, answer, now_ns)

    def _answered(
        self,
        session: Session,
        msg: FixMessage,
        key: tuple[str, bytes],
        answer: tuple[int, str],
        now_ns: int,
    ) -> None:
        answers = self._user_answers
        answers[key] = answer
        if len(answers) > _ANSWERS_KEPT:
            answers.popitem(last=False)
        session.send(b"BF", response(msg, *answer), now_ns)

    def _change_password(
        self, session: Session, msg: FixMessage, key: tuple[str, bytes]
    ) -> tuple[int, str] | None:
        """Starts the change: None, answered when its check is done; or the answer now."""
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
        self._user_changes.add(comp_id)
        old, new = password(msg), password(msg, 925)
        check = asyncio.get_running_loop().run_in_executor(
            None, self._rehash_if_right, comp_id, old, new
        )

        def done(check: asyncio.Future[User | None]) -> None:
            self._user_changes.discard(comp_id)
            if session.closed or session.user is not user:
                return  # the connection went away (or the operator changed the user): unanswered
            answer = self._swap(session, user, check)
            self._answered(session, msg, key, answer, time.time_ns())
            conn = next((c for c in self.connections if c.session is session), None)
            if conn is not None:
                self.after_input(conn)  # written now, not at the poll loop's next batch

        check.add_done_callback(done)
        return None

    def _rehash_if_right(self, comp_id: str, old: str, new: str) -> User | None:
        """On an executor thread: the user with ``new`` hashed in, or None when ``old`` is not
        its password."""
        user = self.users.verify(comp_id, old)
        return None if user is None else rehashed(user, new)

    def _swap(
        self, session: Session, user: User, check: asyncio.Future[User | None]
    ) -> tuple[int, str]:
        """On the loop: the new digest into the users file, in place of ``user`` (the one the
        session logged on as), and the session goes on as the user stored; the answer."""
        comp_id = user.comp_id
        try:
            new = check.result()
        except Exception:  # a broken users file: refused, and why in the log
            log.exception("checking the password of %s failed", comp_id)
            return OTHER, "the password could not be checked: the gateway's log says why"
        if new is None:
            return PASSWORD_INCORRECT, "password incorrect"
        self.failed_logins.refund(limit_key(comp_id))
        try:  # a store of its own: the gateway's is read on executor threads meanwhile
            swapped = UserStore(self.users.path).swap(user, new)
        except (OSError, UsersFileError) as exc:
            log.error("the password change of %s failed: %s", comp_id, exc)
            return OTHER, "the password could not be changed: the gateway's log says why"
        if not swapped:
            return OTHER, "the operator changed or removed this user meanwhile: not changed"
        session.user = new  # the file's user now: its timer does not take it for the operator's
        log.info("%s changed its password (UserRequest)", comp_id)
        return PASSWORD_CHANGED, "password changed"

    @functools.cached_property
    def _user_answers(self) -> OrderedDict[tuple[str, bytes], tuple[int, str]]:
        return OrderedDict()

    @functools.cached_property
    def _user_changes(self) -> set[str]:
        """The comp ids whose password change is in flight."""
        return set()
