"""The rules a FIX Logon (35=A) must pass, as pure checks: each returns why the Logon is
refused, or None. The session (``session.py``) runs the cheap ones before the password is
checked (so a Logon refused anyway costs no scrypt), the rest once the check has answered."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from procs.common.users import SESSION_SETTINGS, User, UserStore
from procs.gateway import dictionary
from procs.gateway.fix import FixMessage, parse_utc_timestamp, shown

if TYPE_CHECKING:
    from procs.gateway.session import Session
    from procs.gateway.session_interface import SessionSettings


def before_password(
    msg: FixMessage, settings: SessionSettings, now_ns: int, users: UserStore | None = None
) -> str | None:
    """Why a Logon is refused before its password is looked at, or None. Its SendingTime is
    held to the widest tolerance of the gateway's and every user's (``users``): a user's own
    is known only once its password is (``after_password``), and a user's name is not told
    by which bound refuses it."""
    fault = dictionary.validate(msg)
    if fault is not None:
        return f"invalid Logon: {fault.text}"
    if msg.text(56) != settings.comp_id:
        return f"TargetCompID {msg.text(56)!r} is not {settings.comp_id!r}"
    if (username := msg.get(553)) is not None and username != msg.get(49):
        return (  # a user is its CompID: another name here would be taken for naught
            f"Username (553) {shown(username)!r} is not the SenderCompID {msg.text(49)!r}: "
            "a user logs on as its CompID"
        )
    own = [u.sending_time_tolerance_s or 0 for u in (users.users() if users else ())]
    widest = max([settings.sending_time_tolerance_s, *own])  # (no users: the gateway's)
    if widest != settings.sending_time_tolerance_s:
        settings = dataclasses.replace(settings, sending_time_tolerance_s=widest)
    return _sending_time_problem(msg, settings, now_ns)


def _sending_time_problem(msg: FixMessage, settings: SessionSettings, now_ns: int) -> str | None:
    if sending_time(msg, settings, now_ns) is None:
        tolerance = settings.sending_time_tolerance_s
        return f"SendingTime accuracy problem: {msg.text(52)} is more than {tolerance} s off"
    return None


def user_settings(settings: SessionSettings, user: User | None) -> SessionSettings:
    """The gateway's ``settings`` with ``user``'s own session settings over them (those it
    holds: ``users.SESSION_SETTINGS``, set by `ringex admin set-user`), taken at its Logon."""
    own = {f: v for f in SESSION_SETTINGS if (v := getattr(user, f, None)) is not None}
    return dataclasses.replace(settings, **own) if own else settings


def sending_time(msg: FixMessage, settings: SessionSettings, now_ns: int) -> int | None:
    """The message's SendingTime (ns) when it is within the tolerance of ``now_ns``, else
    None (missing, malformed or too far off: the same rule for a Logon and in session)."""
    sent = parse_utc_timestamp(msg.get(52) or b"")
    if sent is None or abs(now_ns - sent) > settings.sending_time_tolerance_s * 1_000_000_000:
        return None
    return sent


def heartbeat_problem(msg: FixMessage, settings: SessionSettings) -> str | None:
    """Why the HeartBtInt (108) of a valid Logon is refused, or None."""
    hb = int(msg.fields[108])
    if not settings.min_heartbeat_s <= hb <= settings.max_heartbeat_s:
        return f"HeartBtInt {hb} outside {settings.min_heartbeat_s}..{settings.max_heartbeat_s}"
    return None


def after_password(
    msg: FixMessage,
    user: User | None,
    settings: SessionSettings,
    live: dict[str, Session],
    now_ns: int | None = None,
) -> str | None:
    """Why a Logon whose password check gave ``user`` is refused, or None. ``settings``: the
    user's (``user_settings``); ``now_ns``: when the Logon arrived (a deferred check may end
    later), its SendingTime held to the user's own tolerance then (None: not checked again)."""
    sender = msg.text(49)
    if user is None:
        return f"unknown SenderCompID or bad password (SenderCompID={sender})"
    if sender in live:
        return f"session {sender} is already logged on"
    if now_ns is not None and (problem := _sending_time_problem(msg, settings, now_ns)):
        return problem
    problem = heartbeat_problem(msg, settings)
    if problem is not None:
        return problem
    seq = int(msg.fields[34])
    if msg.get(141) == b"Y" and seq != 1:
        return f"ResetSeqNumFlag with MsgSeqNum {seq}, expected 1"
    return None


def password(msg: FixMessage, tag: int = 554) -> str:
    """The Logon's Password (554) as the user store hashes it (a str, UTF-8 encoded): its
    bytes read as UTF-8, as ``ringex admin add-user`` took them from its command line, or,
    where they are not UTF-8, as Latin-1 (a client that sends one byte a character). ``tag``:
    another password field (a UserRequest's NewPassword, 925)."""
    raw = msg.get(tag) or b""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")
