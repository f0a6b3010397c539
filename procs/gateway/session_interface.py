"""A FIX session's interface: what it is configured with (``SessionSettings``), the states
it goes through (``State``) and what it hands application messages to (``Application``).
The session itself, the layer's rules, is ``session.py``."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Protocol

from procs.gateway.fix import FixMessage

if TYPE_CHECKING:
    from procs.gateway.session import Session


@dataclass(frozen=True, slots=True)
class SessionSettings:
    comp_id: str  # ours: SenderCompID out, TargetCompID in
    min_heartbeat_s: int = 1
    max_heartbeat_s: int = 300
    sending_time_tolerance_s: int = 120
    max_messages_per_s: int = 10_000
    #: Every message a second once logged on, garbled, session-level and rejected ones too:
    #: past it, a Logout naming the limit (``GatewayConfig.max_inbound_per_s``).
    max_inbound_per_s: int = 20_000
    max_message_bytes: int = 8192
    logon_timeout_s: float = 10.0
    reset_on_logon: bool = False
    logout_timeout_s: float = 2.0
    #: Leave the password check to the shell: a Logon sets ``verify_request`` and the session
    #: waits (holding what else arrives) until ``authenticated`` gives the answer. The gateway
    #: runs scrypt (tens of ms) on a thread so that a logon storm does not stall the loop.
    defer_auth: bool = False


class Application(Protocol):
    """What the session hands application messages to. Called on the shell's thread."""

    def on_logon(self, session: Session, now_ns: int) -> None: ...

    def on_message(self, session: Session, msg: FixMessage, now_ns: int) -> None:
        """An in-sequence, valid D/F/G/H/q/AF/BE/x/e/j message. ``PossDupFlag``/``PossResend``
        may be set: the application must not execute an order it already received."""

    def on_disconnect(self, session: Session, now_ns: int) -> None:
        """A logged-on session's connection ended (cancel on disconnect happens here)."""


class State(Enum):
    AWAIT_LOGON = "await-logon"
    AUTHENTICATING = "authenticating"  # a Logon's password is being checked
    ACTIVE = "active"
    LOGGING_OUT = "logging-out"
    CLOSED = "closed"
