"""The FIX 4.4 session layer as a sans-I/O core: bytes in, messages to the application and
bytes out, no sockets and no clock of its own (every call takes ``now_ns``).

Sans-I/O (after ``websockets.protocol``): every rule below is tested by feeding bytes.

Rules, in the order a message meets them (FIX 4.4 Volume 2, QuickFIX behaviour):

1. Framing (``fix.FixReader``): a garbled message is ignored and consumes no sequence number
   (before the Logon, journaled only up to ``audit.JunkCap``'s bound).
2. Before logon only a Logon is accepted (anything else closes the connection). Logon checks
   (``logon.py``) the user (SenderCompID, Password against ``users.UserStore``), the
   TargetCompID, the HeartBtInt bounds, and that the session is not logged on over another
   connection (the new one is refused, the first stays up). ResetSeqNumFlag or ResetOnLogon
   restart both sequences at 1; otherwise they continue from the session's
   ``store.MessageStore``. With ``defer_auth`` the password check is the shell's
   (``verify_request`` -> ``authenticated``), and messages that arrive meanwhile wait for its
   answer, in order.
3. MsgSeqNum missing: Logout. CompIDs wrong: Reject (9) and Logout (one left out is
   validation's: 373=1). SendingTime further from our clock than the tolerance: Reject (10)
   and Logout. Both take the MsgSeqNum when it is the expected one (no resend brings it back).
4. SequenceReset-Reset is taken whatever its MsgSeqNum. Too high: ResendRequest (once per
   gap) and the message is dropped (the resend brings it back), except a Logout or a
   ResendRequest, which are served, and a TestRequest, answered at once (the resend brings
   a session message back only as a gap fill; a PossDup copy is not answered again). Too
   low: with PossDupFlag it is ignored (after the OrigSendingTime rules), without it Logout.
5. In sequence: dictionary validation (``dictionary.validate``) -> Reject (3); unsupported
   application types -> BusinessMessageReject (j); over the throttle -> BusinessMessageReject;
   else the session message is served or the application message handed to ``Application``.
6. Once logged on, every message counts against ``max_inbound_per_s`` (a read's all at once)
   and garbled bytes against their own limit (``inbound_limits.py``): past either, a Logout
   naming it, and the close.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from procs.common import wall_clock
from procs.common.token_bucket import TokenBucket
from procs.common.users import User, UserStore, still_logged_on
from procs.gateway import dictionary, logon
from procs.gateway.audit import AuditLog, JunkCap
from procs.gateway.dictionary import RejectReason
from procs.gateway.fix import (
    FixMessage,
    FixReader,
    FrameError,
    Garbled,
    Timestamps,
    field,
    frame,
    parse_utc_timestamp,
    shown,
)
from procs.gateway.gap_recovery import GapRecovery
from procs.gateway.inbound_limits import InboundLimits
from procs.gateway.live_sessions import LiveSessions
from procs.gateway.reject_ref import own_id
from procs.gateway.session_interface import Application, SessionSettings, State
from procs.gateway.session_marks import ClockMarks
from procs.gateway.store import MessageStore

_SECOND = 1_000_000_000
_MAX_HELD = 1_000  # messages a client may send after its Logon before its answer


class Session(GapRecovery, ClockMarks):
    """One connection's session. The shell writes ``take_output()`` to the socket and closes
    it once ``state is CLOSED`` (after writing what is left). ``on_output``, when the shell
    sets it, is called as the session gets something to write or closes: so a shell with
    many sessions writes only those (a gateway pass would otherwise visit every one)."""

    def __init__(
        self,
        settings: SessionSettings,
        users: UserStore,
        stores: Callable[[str], MessageStore],
        app: Application,
        live: dict[str, Session],
        now_ns: int,
        audit: AuditLog | None = None,
    ) -> None:
        self.settings = settings
        self.users = users
        self.stores = stores
        self.app = app
        self.live = live
        self.audit = audit
        self.state = State.AWAIT_LOGON
        self.close_reason = ""
        self.user: User | None = None
        self.store: MessageStore | None = None
        self.heartbeat_ns = 30 * _SECOND
        self._reader = FixReader(settings.max_message_bytes)
        self._out: list[bytes] = []
        self._times = Timestamps()
        self._connected_ns = now_ns
        self._last_in_ns = self._last_out_ns = self._logon_ns = now_ns
        self._test_request_ns = 0  # when our TestRequest went out, 0: none or answered
        self._logout_ns = self._held_for_ns = 0  # held: its wait (SendingTime: at arrival)
        self._junk = JunkCap()  # garbled input before the Logon, as the audit takes it
        self._resend_upto = self._resend_at = 0  # our ResendRequest's end; when it moved (ns)
        self._answered_early: dict[int, bytes] = {}
        self._resends: deque[tuple[int, int, bool]] = deque()
        self._resend_ns = now_ns
        self._behind: list[bytes] = []
        self.behind_bytes = 0  # of ``_behind``: the shell counts them as unsent
        #: application messages per second (``charge``d for answers of many reports too)
        self.throttle = TokenBucket(settings.max_messages_per_s, now_ns)
        #: every message, and garbled bytes, once logged on (``inbound_limits.py``)
        self.inbound = InboundLimits(settings.max_inbound_per_s, settings.max_message_bytes, now_ns)
        self._header = self._sender = b""  # the latter: the client's SenderCompID, once logged on
        self._target = settings.comp_id.encode()
        self.verify_request: tuple[str, str] | None = None  # (CompID, password): the shell's
        self._logon_msg: FixMessage | None = None
        self._held: list[tuple[FixMessage, int]] = []  # arrived while the password was checked
        self.on_output: Callable[[], None] | None = None

    # -- identity -------------------------------------------------------------------------

    @property
    def comp_id(self) -> str:
        return self.user.comp_id if self.user else "?"

    @property
    def session_id(self) -> int:
        return self.user.session if self.user else 0

    @property
    def account(self) -> int:
        return self.user.account if self.user else 0

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    # -- input ------------------------------------------------------------------------------

    def take_output(self, budget: int | None = None, now_ns: int | None = None) -> list[bytes]:
        """The frames to write now, in order. A ResendRequest's answer comes from the store
        as the connection takes it: chunks while under ``budget`` more bytes a call (None:
        all), stamped ``now_ns`` (None: when it was asked); what the session sends meanwhile
        waits behind it (``behind_bytes``)."""
        out, self._out = self._out, []
        if self._resends:
            self._resent_output(out, budget, self._resend_ns if now_ns is None else now_ns)
        if out and self.audit is not None:  # in the journal before on the wire: a pass's
            self.audit.flush()  # first take writes every session's lines, in one write
        return out

    def data_received(self, data: bytes, now_ns: int) -> None:
        if self.state is State.CLOSED:
            return
        self._reader.feed(data)
        try:
            messages = self._reader.messages()
        except FrameError as exc:
            self._logout_and_close(str(exc), now_ns)
            return
        logged_on = self.state is not State.AWAIT_LOGON  # before: the shell's 64 KiB limit
        if logged_on and messages and (why := self.inbound.read(len(messages), now_ns)):
            self._logout_and_close(why, now_ns)
            return
        for msg in messages:
            if self.closed:
                return
            if (
                logged_on
                and isinstance(msg, Garbled)
                and not msg.begin_string
                and (why := self.inbound.garbled(len(msg.raw), now_ns))
            ):
                self._logout_and_close(why, now_ns)
                return
            if self.audit is not None and (raw := self._junk.cut(msg, self.state)) is not None:
                self.audit.record(now_ns, True, self.comp_id, raw)
            if isinstance(msg, Garbled):
                if msg.begin_string:  # framed, but another FIX version: answered, then gone
                    self._wrong_version(msg.begin_string, now_ns)
                continue  # FIX: a garbled message is ignored, its seq not consumed
            self._last_in_ns = now_ns
            self._test_request_ns = 0  # any message proves the peer alive (as QuickFIX)
            self._dispatch(msg, now_ns)

    def _wrong_version(self, begin_string: bytes, now_ns: int) -> None:
        text = f"Incorrect BeginString {shown(begin_string)!r}, expected FIX.4.4"
        if self.state is State.ACTIVE:
            self._logout_and_close(text, now_ns)
        else:
            self._close(text)

    def _dispatch(self, msg: FixMessage, now_ns: int) -> None:
        if self.state is State.AWAIT_LOGON:
            self._logon(msg, now_ns)
        elif self.state is State.AUTHENTICATING:
            if len(self._held) >= _MAX_HELD:
                self._close(f"more than {_MAX_HELD} messages before the Logon was answered")
                return
            self._held.append((msg, now_ns))
        else:
            self._active(msg, now_ns)

    def authenticated(self, user: User | None, now_ns: int) -> None:
        """The shell's answer to ``verify_request``: the user, or None (bad password or
        unknown CompID). Finishes the Logon, then handles what arrived meanwhile."""
        if self.state is not State.AUTHENTICATING or (msg := self._logon_msg) is None:
            return  # the connection went away meanwhile
        self._logon_msg = None
        self.state = State.AWAIT_LOGON
        self._finish_logon(msg, user, now_ns)
        held, self._held = self._held, []
        for later, arrived in held:
            if self.closed:
                return
            self._held_for_ns = now_ns - arrived
            self._dispatch(later, now_ns)
        self._held_for_ns = 0

    def refused(self, why: str, now_ns: int) -> None:
        """The shell's refusal of ``verify_request`` without a password check (a limit)."""
        if self.state is State.AUTHENTICATING and (msg := self._logon_msg) is not None:
            self._logon_msg = None
            self._refuse(msg.text(49), why, now_ns)

    def on_timer(self, now_ns: int, reading: bool = True) -> None:
        """Heartbeats, test requests, logon and logout timeouts, the logout of a removed user;
        call about once a second.
        ``reading`` False: the shell is not reading this socket (the exchange is behind, or
        the client does not read what it is sent): what the client sent meanwhile waits in
        the gateway's own buffers, so its silence is not held against it."""
        s = self.settings
        self.not_after(now_ns)  # a mark past the reading: a clock stepped (session_marks.py)
        if not reading:
            self._last_in_ns = now_ns
            self._test_request_ns = 0
        if self.state in (State.AWAIT_LOGON, State.AUTHENTICATING):
            if now_ns - self._connected_ns > s.logon_timeout_s * _SECOND:
                self._close(f"no Logon within {s.logon_timeout_s} s")
        elif self.state is State.LOGGING_OUT:
            if now_ns - self._logout_ns > s.logout_timeout_s * _SECOND:
                self._close("no Logout reply")
        elif self.state is State.ACTIVE:
            if (user := still_logged_on(self.users.get(self.comp_id), self.user)) is None:
                self._logout_and_close("this user was removed or changed by the operator", now_ns)
                return  # (`ringex admin remove-user`, `set-password`)
            self.user = user  # the file's: a setting the operator changed (`set-user`) holds
            hb = self.heartbeat_ns
            if self._test_request_ns and now_ns - self._test_request_ns > hb:
                self._close(f"no answer to a TestRequest within {hb // _SECOND} s")
                return
            if not self._test_request_ns and now_ns - self._last_in_ns > hb * 12 // 10:
                self._test_request_ns = now_ns
                self.send(b"1", field(112, f"TEST-{now_ns}"), now_ns)
            if now_ns - self._last_out_ns >= hb:
                self.send(b"0", b"", now_ns)

    def connection_lost(self, now_ns: int) -> None:
        """The socket is gone: the session ends, and ``_close`` tells the application once."""
        self._close("connection lost")

    def abort(self, reason: str) -> None:
        """Close without a Logout: the session cannot go on (its store could not be opened:
        out of file descriptors, a full disk)."""
        self._close(reason)

    def logout(self, text: str, now_ns: int) -> None:
        """Start a Logout (shutdown, operator): the session closes on the reply or timeout."""
        if self.state is State.ACTIVE:
            self._drop_resends()  # the Logout goes now; the next logon fetches the rest
            self.send(b"5", field(58, text), now_ns)
            self.state = State.LOGGING_OUT
            self._logout_ns = now_ns

    # -- output -----------------------------------------------------------------------------

    def send(self, msg_type: bytes, body: bytes, now_ns: int, emit: bool = True) -> int:
        """Send a message with the next MsgSeqNum, stored for resends; returns its seq.
        ``body`` is the fields after the standard header, each ending in SOH. ``emit``
        False: only stored, for ``_queue`` to send."""
        store = self.store
        assert store is not None, "send before logon"
        seq = store.next_out
        raw = frame(
            b"35=%s\x01%s34=%d\x0152=%s\x01%s"
            % (msg_type, self._header, seq, self._times.format(now_ns), body)
        )
        store.add_outbound(seq, raw)
        if emit:
            self._emit(raw, now_ns)
        return seq

    def _emit(self, raw: bytes, now_ns: int) -> None:
        if not self._out and self.on_output is not None:
            self.on_output()
        if self._resends:  # an answer to a ResendRequest is going out: this follows it
            self._behind.append(raw)  # (audited when it goes)
            self.behind_bytes += len(raw)
            self._last_out_ns = now_ns
            return
        self._out.append(raw)
        self._sent(raw, now_ns)

    def _sent(self, raw: bytes, now_ns: int) -> None:
        self._last_out_ns = now_ns
        if self.audit is not None:
            self.audit.record(now_ns, False, self.comp_id, raw)

    def _unsequenced(self, msg_type: bytes, target: str, body: bytes, now_ns: int) -> None:
        """A reply to a connection that is not (and will not be) a session: seq 1, unstored."""
        raw = frame(
            b"35=%s\x0149=%s\x0156=%s\x0134=1\x0152=%s\x01%s"
            % (
                msg_type,
                self.settings.comp_id.encode(),
                target.encode("latin-1"),
                self._times.format(now_ns),
                body,
            )
        )
        self._emit(raw, now_ns)

    def _close(self, reason: str) -> None:
        if self.state is State.CLOSED:
            return
        self.state = State.CLOSED
        self.close_reason = reason
        if self.on_output is not None:  # the shell closes the socket once it has written
            self.on_output()
        self._drop_resends()  # what it did not resend, a ResendRequest after a logon fetches
        if self.user is not None and self.live.get(self.user.comp_id) is self:
            del self.live[self.user.comp_id]  # a Logon may come again: the orders go first
            # (review 230: told at the socket's end, which a TLS close or unsent output may
            # hold back, a Logon again at once found them resting for good, not cancelled)
            self.app.on_disconnect(self, wall_clock.now_ns())
        if self.store is not None:
            self.store.flush()

    def _logout_and_close(self, text: str, now_ns: int) -> None:
        if self.store is not None and self.state is not State.AWAIT_LOGON:
            self.send(b"5", field(58, text), now_ns)
        self._close(text)

    def _reject(
        self, msg: FixMessage, reason: RejectReason, tag: int, text: str, now_ns: int
    ) -> None:
        body = field(45, msg.get(34) or b"0")
        if tag:
            body += field(371, tag)
        if msg.msg_type:
            body += field(372, msg.msg_type)
        body += field(373, int(reason)) + field(58, text)
        self.send(b"3", body, now_ns)

    def _refuse_header(
        self, msg: FixMessage, seq: int, reason: RejectReason, tag: int, text: str, now_ns: int
    ) -> None:
        """Reject and Logout for a wrong CompID or SendingTime. The message's MsgSeqNum is
        taken when it is the one expected (FIX 4.4 test cases 2k and 2o: "increment inbound
        MsgSeqNum"; QuickFIX the same), so no resend brings the message back to be acted on."""
        assert self.store is not None
        if seq == self.store.next_in and msg.msg_type not in (b"A", b"4"):
            self.store.set_next_in(seq + 1)
        self._reject(msg, reason, tag, text, now_ns)
        self._logout_and_close(text, now_ns)

    def business_reject(self, msg: FixMessage, reason: int, text: str, now_ns: int) -> None:
        """BusinessMessageReject (j): 0 other, 2 unknown security, 3 unsupported message type,
        4 not authorised, 5 conditionally required field missing."""
        body = field(45, msg.get(34) or b"0") + field(372, msg.msg_type or b"?")
        if ref := own_id(msg):
            body += field(379, ref)
        self.send(b"j", body + field(380, reason) + field(58, text), now_ns)

    # -- logon ------------------------------------------------------------------------------

    def _logon(self, msg: FixMessage, now_ns: int) -> None:
        sender = msg.text(49)
        if msg.msg_type != b"A":
            self._close(f"first message is {shown(msg.msg_type)!r}, not a Logon")
            return
        if (fault := logon.before_password(msg, self.settings, now_ns, self.users)) is not None:
            self._refuse(sender, fault, now_ns)
            return
        self._logon_ns = now_ns  # its arrival: its SendingTime is judged by it (after_password)
        if self.settings.defer_auth:
            self.state, self._logon_msg = State.AUTHENTICATING, msg
            self.verify_request = (sender, logon.password(msg))
            return
        self._finish_logon(msg, self.users.verify(sender, logon.password(msg)), now_ns)

    def _refuse(self, sender: str, why: str, now_ns: int) -> None:
        self._unsequenced(b"5", sender, field(58, why), now_ns)
        self._close(why)

    def _finish_logon(self, msg: FixMessage, user: User | None, now_ns: int) -> None:
        sender = msg.text(49)
        settings = logon.user_settings(self.settings, user)  # its own over the gateway's
        fault = logon.after_password(msg, user, settings, self.live, self._logon_ns)
        if fault is not None:
            self._refuse(sender, fault, now_ns)
            return
        assert user is not None
        seq = int(msg.fields[34])
        reset, hb = msg.get(141) == b"Y", int(msg.fields[108])
        store = self.stores(sender)
        resets = reset or settings.reset_on_logon
        if seq < store.next_in and not resets:
            text = f"MsgSeqNum too low, expecting {store.next_in} but received {seq}"
            self._unsequenced(b"5", sender, field(58, text), now_ns)
            self._close(text)
            return
        if isinstance(self.live, LiveSessions) and not self.live.claim(sender):
            self._refuse(sender, self.live.held_elsewhere(sender), now_ns)  # (review 246)
            return
        try:
            carried = store.unsent() if resets else []  # parked, never seen: sent anew below
            if resets:
                store.reset()
            store.logged_on()
        except OSError:  # out of descriptors, a full disk: the instance-wide lock goes back
            # (a reset cut short keeps what was parked in the store's ``carried``: the next
            # logon's)
            if isinstance(self.live, LiveSessions):
                self.live.release(sender)
            raise
        self.user, self.store, self.settings = user, store, settings
        self.live[sender] = self
        self.heartbeat_ns = hb * _SECOND
        self._sender = sender.encode("latin-1")
        self._header = b"49=%s\x0156=%s\x01" % (self._target, self._sender)
        self.state = State.ACTIVE
        body = field(98, 0) + field(108, hb) + (field(141, "Y") if reset else b"")
        self.send(b"A", body, now_ns)
        if seq > store.next_in:
            self._request_resend(seq, now_ns)
        else:
            store.set_next_in(seq + 1)
        self._send_carried(carried, now_ns)
        self.app.on_logon(self, now_ns)

    # -- in session ------------------------------------------------------------------------

    def _active(self, msg: FixMessage, now_ns: int) -> None:
        store = self.store
        assert store is not None
        seq_text = msg.get(34)
        if seq_text is None or not seq_text.isdigit():
            self._logout_and_close("MsgSeqNum (34) missing or not a number", now_ns)
            return
        too_big = dictionary.out_of_range(dictionary.SEQNUM, seq_text)
        if too_big is not None:
            self._logout_and_close(f"MsgSeqNum (34) {too_big}", now_ns)
            return
        seq = int(seq_text)
        sender, target = msg.get(49), msg.get(56)
        if sender and target and (sender != self._sender or target != self._target):
            tag = 49 if sender != self._sender else 56  # (one left out: validation, 373=1)
            reason = RejectReason.COMPID_PROBLEM
            self._refuse_header(msg, seq, reason, tag, "CompID problem", now_ns)
            return
        if parse_utc_timestamp(msg.get(52) or b"") is None:
            sent = now_ns  # missing or malformed: validation rejects it (373=1 or 6), in order
        else:
            checked = logon.sending_time(msg, self.settings, now_ns - self._held_for_ns)
            if checked is None:
                text = "SendingTime accuracy problem"
                self._refuse_header(msg, seq, RejectReason.SENDING_TIME_ACCURACY, 52, text, now_ns)
                return
            sent = checked
        kind = msg.msg_type
        poss_dup = msg.get(43) == b"Y"
        if kind == b"A" and msg.get(141) == b"Y" and seq == 1:
            self._reset_in_session(msg, now_ns)
            return
        if kind == b"4" and msg.get(123) != b"Y":
            self._sequence_reset(msg, now_ns)
            return
        expected = store.next_in
        if seq > expected:
            if kind == b"5" and dictionary.validate(msg) is None:  # (35 twice is not: review 337)
                self._logout_reply(now_ns)
                return
            if kind in (b"1", b"2") and dictionary.validate(msg) is None:
                if kind == b"1":
                    self._answer_early(msg, seq, now_ns)
                else:
                    self._resend(msg, now_ns)
            # None of ours open: ask. One open: a burst of new messages past the gap is
            # covered by it (7=next 16=0, once: FIX 4.4 and QuickFIX), and its end moves up
            # to the newest. Only the client's resend (PossDup) reaching that end with the
            # gap still there asks again (a garbled message left a hole), or it never heals:
            # once, not at each copy past the hole (review 153: each copy moved the end up
            # to itself, and asked again); so does a heartbeat interval without an answer
            # moving the gap on (its last one was garbled: review 51).
            self._resend_at = min(self._resend_at, now_ns)  # (a clock stepped back)
            stale = not self._resends and now_ns - self._resend_at >= self.heartbeat_ns
            if self._resend_upto < expected or (poss_dup and seq >= self._resend_upto) or stale:
                self._request_resend(seq, now_ns)
            elif seq > self._resend_upto:
                self._resend_upto = seq
            return
        if seq < expected:
            if not poss_dup:
                self._logout_and_close(
                    f"MsgSeqNum too low, expecting {expected} but received {seq}", now_ns
                )
            else:
                self._check_orig_sending_time(msg, sent, now_ns)
            return
        self._in_sequence(msg, seq, poss_dup, sent, now_ns)

    def _in_sequence(
        self, msg: FixMessage, seq: int, poss_dup: bool, sent: int, now_ns: int
    ) -> None:
        store = self.store
        assert store is not None
        kind = msg.msg_type
        store.set_next_in(seq + 1)
        if self._resend_upto and seq >= self._resend_upto:  # the gap we asked about is closed
            self._resend_upto = 0
        elif self._resend_upto:  # its answer moves the gap on
            self._resend_at = now_ns
        if dictionary.unsupported(msg):
            self.business_reject(msg, 3, f"unsupported MsgType {msg.text(35)}", now_ns)
            return
        fault = dictionary.validate(msg)
        if fault is not None:
            self._reject(msg, fault.reason, fault.tag, fault.text, now_ns)
            return
        if poss_dup and not self._check_orig_sending_time(msg, sent, now_ns):
            return
        if kind in dictionary.ADMIN:
            self._admin(msg, now_ns)
        elif kind in dictionary.INBOUND_APP:
            if kind != b"j" and not self.throttle.allow(now_ns):
                text = f"throttle: more than {self.settings.max_messages_per_s} messages/s"
                self.business_reject(msg, 0, text, now_ns)
                return
            self.app.on_message(self, msg, now_ns)
        else:  # ours to send (8, 9, r), valid by FIX 4.4 (review 316): not taken from a client
            self.business_reject(msg, 3, f"MsgType {msg.text(35)} is not accepted", now_ns)

    def _admin(self, msg: FixMessage, now_ns: int) -> None:
        kind = msg.msg_type
        if kind == b"0":
            if msg.get(112) is not None:
                self._test_request_ns = 0
        elif kind == b"1":
            self._answer_test_request(msg, int(msg.fields[34]), now_ns)
        elif kind == b"2":
            self._resend(msg, now_ns)
        elif kind == b"4":  # gap fill (a reset was handled before the sequence check)
            new = int(msg.fields[36])
            seq = int(msg.fields[34])
            if new <= seq:
                self._reject(
                    msg,
                    RejectReason.VALUE_OUT_OF_RANGE,
                    36,
                    f"NewSeqNo {new} is not above MsgSeqNum {seq}",
                    now_ns,
                )
            else:
                assert self.store is not None
                self.store.set_next_in(new)
        elif kind == b"5":
            self._logout_reply(now_ns)
        elif kind == b"A":
            self._logout_and_close("Logon received while logged on", now_ns)
        if self.store is not None and self._resend_upto and self.store.next_in > self._resend_upto:
            self._resend_upto = 0

    def _reset_in_session(self, msg: FixMessage, now_ns: int) -> None:
        """A Logon with ResetSeqNumFlag while logged on: both sides start again at 1, and
        the answer is a Logon with 141=Y (FIX 4.4 session rules; QuickFIX does the same)."""
        fault = dictionary.validate(msg)
        why = fault.text if fault is not None else logon.heartbeat_problem(msg, self.settings)
        if why is not None:
            self._logout_and_close(f"invalid Logon with ResetSeqNumFlag: {why}", now_ns)
            return
        hb = int(msg.fields[108])
        store = self.store
        assert store is not None
        self._drop_resends()  # a first sending cut short is parked: carried below
        carried = store.unsent()
        store.reset()
        self._resend_upto = 0
        self._answered_early.clear()
        self.heartbeat_ns = hb * _SECOND
        self.send(b"A", field(98, 0) + field(108, hb) + field(141, "Y"), now_ns)
        store.set_next_in(2)
        self._send_carried(carried, now_ns)

    def _logout_reply(self, now_ns: int) -> None:
        if self.state is State.ACTIVE:
            self.send(b"5", b"", now_ns)
        self._close("Logout")
