"""`ringex admin users`, `remove-user`, `set-password` and `set-user`: the users file's other
side.

``users`` lists the FIX users (comp id, account, session id; never a digest) with the
settings each holds over its gateway's (``--json``: every one, null for the gateway's).
``remove-user`` takes a user off the exchange: it leaves the users file (under its lock), so
no logon takes it from then on and every gateway logs its sessions out within a second
(``Session.on_timer``); its API keys are revoked, so its REST requests and private streams
end too. Its account and balances stay (money is never deleted: withdraw it with `ringex
admin withdraw`), and so do its open orders unless ``--cancel-orders`` cancels them (one
mass cancel through the router, as `ringex admin cancel-all` sends). ``set-password`` gives
a user a new password, its account, session id and settings kept, and a new epoch: its FIX
sessions are logged out within a second (as for a user the operator changed) and log on
again with it; its API keys stay unless ``--revoke-keys`` revokes them (a password thought
stolen: keys made with it go too). ``set-user`` sets those of a user's settings it is given
(``SET_USER``), on, off or a number of seconds, or ``gateway`` for the gateway's: cancel on
disconnect, taken by its sessions at their gateway's next timer pass, and the session
settings (reset on logon, the heartbeat bounds, the SendingTime tolerance), taken at its
next Logon; its sessions go on. Bounds that would cross under a configured gateway are
refused, judged under the file's lock on the user as it would be stored.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable
from typing import Final

from config.refused_value import cut_values
from config.schema import RingexConfig
from procs.admin.client import AdminClient, AdminError
from procs.common.apikeys import ApiKeyStore
from procs.common.change_log import ChangeMadeError
from procs.common.file_locks import try_lock
from procs.common.record_codec import RecordCodec
from procs.common.records import Record
from procs.common.topology import (
    ADMIN_GATEWAY,
    ROUTER,
    apikeys_path,
    gateway_commands,
    session_claim,
    users_path,
)
from procs.common.users import (
    SESSION_SETTINGS,
    User,
    UsersFileError,
    UserStore,
    password_refused,
)
from shm import Ring
from shm.errors import ShmError
from shm.inspect import list_segments

#: How long remove-user waits, the user gone from the file, before its cancel-all.
SETTLE_S = 1.5
#: How long it waits past that, in all, for the user's FIX session to end and the router to
#: take what the gateways' rings held.
SESSION_END_S = 10.0
#: A gateway's command ring (``topology.gateway_commands``), by its segment's name
_GATEWAY_RING: Final = re.compile(r"gw\d+-cmd")


def open_users(cfg: RingexConfig, command: str) -> UserStore | None:
    """The users file's store, or None with one line naming the file and its fault."""
    try:
        return UserStore(users_path(cfg))
    except UsersFileError as exc:
        print(f"ringex admin {command}: {exc}", file=sys.stderr)
        return None


#: How many users a "no user" names at most (review 256: 90 KB a line at 10,000 users)
NAMED_USERS: Final = 10


def no_user(command: str, store: UserStore, comp_id: str) -> int:
    """Says ``comp_id`` is not a user, naming the users there are (the first
    ``NAMED_USERS`` by name, and how many more); exit status 1."""
    users = sorted(u.comp_id for u in store.users())
    known = ", ".join(users[:NAMED_USERS]) or "none"
    if len(users) > NAMED_USERS:
        known += f" and {len(users) - NAMED_USERS:,} more: `ringex admin users` lists them"
    shown = cut_values(repr(comp_id))  # a runaway script's argument: not 10 KB a line
    print(f"ringex admin {command}: no user {shown} (users: {known})", file=sys.stderr)
    return 1


def _unwritten(command: str, outcome: str, store: UserStore, exc: OSError) -> int:
    """Says the users file could not be written (a full disk, say), or that the change was
    made but its fsync failed (``ChangeMadeError``: not ``outcome``, which says nothing
    changed); exit status 1."""
    if isinstance(exc, ChangeMadeError):
        print(f"ringex admin {command}: {exc}", file=sys.stderr)
        return 1
    print(f"ringex admin {command}: {outcome}: the users file {store.path} could not be "
          f"written ({exc.strerror or exc})", file=sys.stderr)  # fmt: skip
    return 1


#: An on/off setting's words -> a user's setting (None: the gateway's).
ON_OFF: Final[dict[str, bool | None]] = {"on": True, "off": False, "gateway": None}
#: A user's seconds (heartbeat bounds, SendingTime tolerance): 1 to a day.
MAX_SECONDS: Final = 86_400
#: ``set-user``'s options: the user's setting each sets, and its JSON key in ``users``.
SET_USER: Final = {
    "cancel_on_disconnect": "cancelOnDisconnect",
    "reset_on_logon": "resetOnLogon",
    "min_heartbeat_s": "minHeartbeatS",
    "max_heartbeat_s": "maxHeartbeatS",
    "sending_time_tolerance_s": "sendingTimeToleranceS",
}


def on_off(text: str) -> bool | None:
    """An argparse type: on, off, or gateway (the gateway's setting: None)."""
    if text not in ON_OFF:
        raise argparse.ArgumentTypeError(f"{text!r} is not on, off or gateway")
    return ON_OFF[text]


def seconds_or_gateway(text: str) -> int | None:
    """An argparse type: whole seconds, 1 to a day, or gateway (None)."""
    if text == "gateway":
        return None
    if (
        not (text.isascii() and text.isdigit() and len(text) <= 6)
        or not 1 <= int(text) <= MAX_SECONDS
    ):
        raise argparse.ArgumentTypeError(
            f"{text[:40]!r} is not 1..{MAX_SECONDS} seconds or gateway"
        )
    return int(text)


def _said(name: str, value: bool | int | None) -> str:
    """A setting as the commands print it: "min heartbeat 5 s", "reset on logon gateway"."""
    return f"{name.removesuffix('_s').replace('_', ' ')} {_word(value)}"


def _word(value: bool | int | None) -> str:
    if value is None:
        return "gateway"
    return ("on" if value else "off") if isinstance(value, bool) else f"{value} s"


def list_users(cfg: RingexConfig, as_json: bool) -> int:
    store = open_users(cfg, "users")
    if store is None:
        return 1
    users = sorted(store.users(), key=lambda u: u.comp_id)
    if as_json:
        shown = [
            {"compId": u.comp_id, "account": u.account, "session": u.session}
            | {key: getattr(u, name) for name, key in SET_USER.items()}  # null: the gateway's
            for u in users
        ]
        print(json.dumps(shown))
        return 0
    if not users:
        print("no users")
    for u in users:
        own = [  # the session settings it holds over the gateway's
            _said(name, getattr(u, name))
            for name in SESSION_SETTINGS
            if getattr(u, name) is not None
        ]
        print(
            f"{u.comp_id:32} account {u.account:>12}  session {u.session}  "
            + ", ".join([_said("cancel_on_disconnect", u.cancel_on_disconnect), *own])
        )
    return 0


def set_user(cfg: RingexConfig, args: argparse.Namespace) -> int:
    """``args.comp_id``'s settings, those given (the others kept); its exit status (2:
    none given, or heartbeat bounds that cross under a configured gateway's; 1: no such
    user, or a users file that cannot be read: nothing changed)."""
    given = {name: getattr(args, name) for name in SET_USER if hasattr(args, name)}
    if not given:
        options = ", ".join("--" + n.replace("_", "-") for n in SET_USER)
        print(f"ringex admin set-user: nothing to set: give one of {options}", file=sys.stderr)
        return 2
    store = open_users(cfg, "set-user")
    if store is None:
        return 1
    try:  # the bounds judged on the user as stored, under the file's lock
        user = store.set_settings(args.comp_id, lambda new: _crossed(cfg, new), **given)
    except ValueError as exc:
        print(f"ringex admin set-user: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, say: the file stays as it was
        return _unwritten("set-user", f"{args.comp_id} not changed", store, exc)
    if user is None:
        return no_user("set-user", store, args.comp_id)
    said = ", ".join(_said(name, value) for name, value in given.items())
    print(f"user {user.comp_id}: {said}; its sessions go on: cancel on disconnect is taken "
          "within a second, the session settings at its next Logon")  # fmt: skip
    return 0


def _crossed(cfg: RingexConfig, user: User) -> str:
    """Why ``user``'s heartbeat bounds cannot hold under a configured gateway (its own over
    the gateway's: a minimum past the maximum refuses every Logon), or ""."""
    for gw in cfg.gateways:
        low = gw.min_heartbeat_s if user.min_heartbeat_s is None else user.min_heartbeat_s
        high = gw.max_heartbeat_s if user.max_heartbeat_s is None else user.max_heartbeat_s
        if low > high:
            return (
                f"{user.comp_id}'s heartbeat bounds would be {low}..{high} s under gateway "
                f"{gw.name!r}: the minimum must not pass the maximum"
            )
    return ""


def set_password(cfg: RingexConfig, args: argparse.Namespace) -> int:
    """``args.comp_id``'s new password; its exit status (2: a password the store refuses;
    1: no such user, or a users or API key file that cannot be read: nothing changed)."""
    if refused := password_refused(args.password):  # before anything is read
        print(f"ringex admin set-password: {refused}", file=sys.stderr)
        return 2
    store = open_users(cfg, "set-password")
    if store is None:
        return 1
    try:  # read before the password changes: a damaged file leaves nothing half done
        keys = ApiKeyStore(apikeys_path(cfg)) if args.revoke_keys else None
    except (OSError, ValueError) as exc:
        print(f"ringex admin set-password: {args.comp_id}'s password not changed: the API key "
              f"file {apikeys_path(cfg)} cannot be read ({exc})", file=sys.stderr)  # fmt: skip
        return 1
    undurable = ""  # the change made, but its fsync failed: said, and the keys revoked still
    try:
        user = store.set_password(args.comp_id, args.password)
    except ChangeMadeError as exc:
        user, undurable = store.get(args.comp_id), str(exc)
    except OSError as exc:  # a full disk, say: nothing appended (a write cut short is cut)
        return _unwritten("set-password", f"{args.comp_id}'s password not changed", store, exc)
    if user is None:
        return no_user("set-password", store, args.comp_id)
    if undurable:
        print(f"ringex admin set-password: {undurable}", file=sys.stderr)
    said = f"user {user.comp_id}: password changed; its FIX sessions are logged out"
    if keys is None:
        print(f"{said}; its API keys stay (--revoke-keys revokes them)")
        return 1 if undurable else 0
    revoked, failed = _revoke_keys("set-password", keys, user.comp_id)
    if failed:
        print(said)
        return 1
    print(f"{said}; {revoked} API key(s) revoked")
    return 1 if undurable else 0


def _revoke_keys(
    command: str, keys: ApiKeyStore, comp_id: str, keep: int | None = None
) -> tuple[int, bool]:
    """``comp_id``'s API keys (but those of its user of session ``keep``) revoked: how many,
    and whether that failed (said)."""
    try:
        return keys.revoke_user(comp_id, keep=keep), False
    except ChangeMadeError as exc:  # revoked, every gateway may have read it
        print(f"ringex admin {command}: {comp_id}'s API keys: {exc}", file=sys.stderr)
        return 0, True
    except OSError as exc:
        print(f"ringex admin {command}: {comp_id}'s API keys were not revoked: the key file "
              f"{keys.path} could not be written ({exc.strerror or exc}); run it again once "
              "it can", file=sys.stderr)  # fmt: skip
        return 0, True


def remove_user(
    cfg: RingexConfig, args: argparse.Namespace, connect: Callable[[], AdminClient | None]
) -> int:
    """Take ``args.comp_id`` off the exchange; its exit status (1: no such user, a users
    file that cannot be read, or --cancel-orders for an instance that is not running: then
    nothing is removed, so the command can be run again; 1 also where its keys could not be
    revoked or its orders' cancel could not be confirmed, each said; 0 for a comp id that is
    no user but held keys an earlier removal left, revoked now)."""
    store = open_users(cfg, "remove-user")
    if store is None:
        return 1
    user = store.get(args.comp_id)
    if user is None:
        return _keys_left(cfg, store, args.comp_id, args.cancel_orders)
    try:  # read before anything is removed (review 45: a damaged file crashed the command
        keys = ApiKeyStore(apikeys_path(cfg))  # with the user gone and its keys not revoked)
    except (OSError, ValueError) as exc:
        print(f"ringex admin remove-user: {user.comp_id} not removed: the API key file "
              f"{apikeys_path(cfg)} cannot be read ({exc})", file=sys.stderr)  # fmt: skip
        return 1
    client = connect() if args.cancel_orders else None
    if args.cancel_orders and client is None:  # said why; nothing removed yet
        print(f"ringex admin remove-user: {user.comp_id} not removed (its orders could not be "
              "cancelled)", file=sys.stderr)  # fmt: skip
        return 1
    try:  # an interrupt once the user is gone (its keys' revocation included: make test
        # once sent it there, and once as the removal's write returned) names the cancel-all
        # a rerun can no longer run
        try:  # the user read, not one added again under its comp id meanwhile (286)
            if not store.remove(user.comp_id, session=user.session):
                print(f"ringex admin remove-user: {user.comp_id} (session {user.session}) "
                      "was removed meanwhile by another command (a user of that comp id now, "
                      "if any, is another one: run this again to remove it)",
                      file=sys.stderr)  # fmt: skip
                return 1
        except ChangeMadeError as exc:  # removed (every gateway may have read it): go on
            print(f"ringex admin remove-user: {exc}", file=sys.stderr)
        except OSError as exc:
            return _unwritten("remove-user", f"{user.comp_id} not removed", store, exc)
        now = store.get(user.comp_id)  # one added again since (286): its keys stay
        keep = None if now is None else now.session
        revoked, failed = _revoke_keys("remove-user", keys, user.comp_id, keep)
        keys_said = "its API keys not revoked" if failed else f"{revoked} API key(s) revoked"
        print(f"user {user.comp_id} removed (account {user.account} stays); {keys_said}; "
              "its sessions are logged out")  # fmt: skip
        if client is None:
            return 1 if failed else 0
        return _cancel_orders(cfg, user, client) or int(failed)  # (keys: said above)
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM: once the user is gone a rerun finds none
        if client is not None and not _still_a_user(store, user.comp_id):
            print(f"ringex admin remove-user: interrupted: {user.comp_id} is removed, its "
                  "open orders may not be cancelled: cancel them with `ringex admin "
                  f"cancel-all --account {user.account}`", file=sys.stderr)  # fmt: skip
        raise
    finally:
        if client is not None:
            client.close()


def _still_a_user(store: UserStore, comp_id: str) -> bool:
    """Whether the users file, read again, still holds ``comp_id`` (False where it cannot
    be read: the removal may have been written)."""
    try:
        return UserStore(store.path).get(comp_id) is not None
    except (OSError, ValueError):
        return False


def _cancel_orders(cfg: RingexConfig, user: User, client: AdminClient) -> int:
    """The removed ``user``'s open orders cancelled once its sessions ended and what they
    sent is sequenced: the exit status (1: not all of that was seen, or the cancel failed;
    each said)."""
    # the gateways end its sessions within a timer pass (1 s): orders placed before then
    # would outlive a cancel sent at once, and so would those of a gateway stalled past it
    time.sleep(SETTLE_S)
    deadline = time.monotonic() + SESSION_END_S
    ended = _session_ended(cfg, user.comp_id, deadline) and _gateways_read(cfg, deadline)
    if not ended:
        print(f"ringex admin remove-user: {user.comp_id}'s FIX session is still served by a "
              f"gateway, or what the gateways sent not yet taken by the router, "
              f"{SETTLE_S + SESSION_END_S:g} s after its removal (a gateway or the router "
              "stalled?): orders it sent may outlive this cancel; once it has ended, cancel "
              f"them with `ringex admin cancel-all --account {user.account}`",
              file=sys.stderr)  # fmt: skip
    try:
        client.cancel_all(user.account, None)
    except AdminError as exc:
        print(f"ringex admin remove-user: {exc}; cancel them with `ringex admin cancel-all "
              f"--account {user.account}`", file=sys.stderr)  # fmt: skip
        return 1
    print(f"account {user.account}: open orders cancelled")
    return 0 if ended else 1


def _keys_left(cfg: RingexConfig, store: UserStore, comp_id: str, cancel: bool) -> int:
    """``comp_id`` is no user: API keys it still holds (its removal could not write the key
    file: a full disk) are revoked now, as that removal said to do (review 251); without
    any it is said not to be a user (exit 1). ``cancel`` (--cancel-orders) is not done
    here: the command that cancels is named, exit 1 (review 254)."""
    try:
        keys = ApiKeyStore(apikeys_path(cfg))
    except (OSError, ValueError):  # nothing to finish that can be read: not a user
        return no_user("remove-user", store, comp_id)
    accounts = sorted({k.account for k in keys.keys_of(comp_id)})
    if not accounts:
        return no_user("remove-user", store, comp_id)
    revoked, failed = _revoke_keys("remove-user", keys, comp_id)
    if not failed:
        print(f"{comp_id} is no user (removed): the {revoked} API key(s) it still held revoked")
    if cancel:
        commands = ", ".join(f"`ringex admin cancel-all --account {a}`" for a in accounts)
        print(f"ringex admin remove-user: {comp_id} is no user: its orders are not cancelled "
              f"here; cancel them with {commands}", file=sys.stderr)  # fmt: skip
    return 1 if failed or cancel else 0


def _session_ended(cfg: RingexConfig, comp_id: str, deadline: float) -> bool:
    """Wait, up to ``deadline``, until no gateway serves ``comp_id``'s FIX session: a
    gateway lets its claim go (``live_sessions.py``) once the session ended, what it read
    then published (review 244: a gateway stalled past the timer pass took the removed
    user's order after the cancel-all); False where a gateway holds it yet. The claim is let
    go at once: a user added again meanwhile may log on (review 246)."""
    path = session_claim(cfg, comp_id)
    if not path.parent.is_dir():
        return True  # no gateway has served a session here
    while (claim := try_lock(path)) is None:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    os.close(claim)
    return True


def _gateways_read(cfg: RingexConfig, deadline: float) -> bool:
    """Wait, up to ``deadline``, until the router has taken (sequenced, journaled) what
    each gateway's ring holds now: a command the user's session put there before its claim
    was let go is then sequenced before the cancel-all sent next, never after it (the router
    reads each ring in turn: one it was behind on, full, was read after the admin ring's
    cancel). False where it has not by then; a ring that is gone holds nothing."""
    # the instance's own gateway rings, not the profile's: one edited under it may list
    # fewer than run (review 254)
    admin = gateway_commands(ADMIN_GATEWAY)
    names = [s.name for s in list_segments(cfg.instance) if _GATEWAY_RING.fullmatch(s.name)]
    marks: list[tuple[Ring[Record], int]] = []
    try:
        for name in names:
            if name == admin:
                continue
            try:
                ring: Ring[Record] = Ring.attach(cfg.instance, name, RecordCodec())
            except ShmError:
                continue
            marks.append((ring, ring.cursor()))
        while True:
            behind = [
                ring
                for ring, mark in marks
                if not any(c.name == ROUTER and c.sequence >= mark for c in ring.info().consumers)
            ]
            if not behind:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
    finally:
        for ring, _ in marks:
            ring.close()
