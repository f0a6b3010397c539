"""Message recovery of a FIX session (FIX 4.4 Vol 2): asking for a gap, serving a
ResendRequest, a SequenceReset, the OrigSendingTime a PossDup message must carry, and the
answer to a TestRequest that comes past a gap.

A ResendRequest's answer may be the session's whole history (megabytes): it is read from the
store a chunk at a time as the connection takes it (``take_output``'s budget), not put in
memory at once, and what the session sends meanwhile waits behind it, so the client still
reads every message in MsgSeqNum order. (A client that does not read is still dropped by the
shell: its unsent bytes, those waiting behind a resend included, are bounded.)

A mixin of ``Session`` (``session.py``), which owns the state it names; what is resent is
made by ``resend.py``.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from procs.gateway import dictionary
from procs.gateway.dictionary import RejectReason
from procs.gateway.fix import FixMessage, Timestamps, field, parse_utc_timestamp, shown
from procs.gateway.resend import resend_range, resent
from procs.gateway.store import MessageStore

#: Too-high TestRequests remembered as answered until their MsgSeqNum is reached in sequence.
MAX_EARLY_ANSWERS = 1_000
#: Sequence numbers a resend reads from the store at a time.
RESEND_CHUNK = 256
#: ResendRequests waiting for their answer to be written, at most: past it, a Logout.
MAX_RESENDS = 1_000


class GapRecovery:
    store: MessageStore | None
    _resend_upto: int  # a ResendRequest of ours is open up to this seq (0: none)
    _resend_at: int  # when it went, or its answer last moved the gap on (ns)
    heartbeat_ns: int
    _times: Timestamps
    _header: bytes
    _last_out_ns: int
    #: seq -> TestReqID of each TestRequest answered while past a gap (``_answer_early``).
    _answered_early: dict[int, bytes]
    _out: list[bytes]
    #: The client's ResendRequests whose answer is not all written, oldest first: (the next
    #: seq to send again, the last one, True; False: stored unsent, sent for the first time).
    _resends: deque[tuple[int, int, bool]]
    _resend_ns: int  # when the newest came: resent messages' SendingTime by default
    #: What the session sent while a resend was under way: written once it is all out.
    #: Only ``send`` puts messages here, so they hold the newest MsgSeqNums, in order.
    _behind: list[bytes]
    behind_bytes: int

    if TYPE_CHECKING:  # Session's own

        def send(self, msg_type: bytes, body: bytes, now_ns: int, emit: bool = True) -> int: ...

        def _sent(self, raw: bytes, now_ns: int) -> None: ...

        def _reject(
            self, msg: FixMessage, reason: RejectReason, tag: int, text: str, now_ns: int
        ) -> None: ...

        def _logout_and_close(self, text: str, now_ns: int) -> None: ...

    def _sequence_reset(self, msg: FixMessage, now_ns: int) -> None:
        assert self.store is not None
        fault = dictionary.validate(msg)
        if fault is not None:
            self._reject(msg, fault.reason, fault.tag, fault.text, now_ns)
            return
        new = int(msg.fields[36])
        if new < self.store.next_in:
            self._reject(
                msg,
                RejectReason.VALUE_OUT_OF_RANGE,
                36,
                f"NewSeqNo {new} is below the expected MsgSeqNum {self.store.next_in}",
                now_ns,
            )
            return
        self.store.set_next_in(new)

    def _check_orig_sending_time(self, msg: FixMessage, sent: int | None, now_ns: int) -> bool:
        if msg.msg_type == b"4":
            return True  # a gap fill need not carry it
        orig = msg.get(122)
        if orig is None:
            self._reject(
                msg, RejectReason.REQUIRED_TAG_MISSING, 122, "OrigSendingTime missing", now_ns
            )
            return False
        orig_ns = parse_utc_timestamp(orig)
        if orig_ns is None:  # as validation refuses it in sequence: no Logout (review 153)
            text = f"OrigSendingTime (122) {shown(orig)!r} has the wrong format"
            self._reject(msg, RejectReason.INCORRECT_DATA_FORMAT, 122, text, now_ns)
            return False
        if sent is not None and orig_ns > sent:
            text = f"OrigSendingTime {shown(orig)} is after SendingTime {shown(msg.get(52) or b'')}"
            self._reject(msg, RejectReason.SENDING_TIME_ACCURACY, 122, text, now_ns)
            self._logout_and_close(f"SendingTime accuracy problem: {text}", now_ns)
            return False
        return True

    def _answer_early(self, msg: FixMessage, seq: int, now_ns: int) -> None:
        """A valid TestRequest past a gap: its Heartbeat goes now, as the resend that closes
        the gap brings a session message back only as a gap fill (FIX 4.4 Vol 2), and a peer
        left unanswered drops the link. Its seq is remembered (at most
        ``MAX_EARLY_ANSWERS``, the newest: one a gap fill passed over stays until then), so
        that a PossDup copy met in sequence takes its MsgSeqNum without a second Heartbeat."""
        test_id = msg.fields[112]
        answered = self._answered_early
        if answered.get(seq) == test_id:
            return  # the client's resend past a gap still open: answered already
        self.send(b"0", field(112, test_id), now_ns)
        if len(answered) >= MAX_EARLY_ANSWERS:
            del answered[next(iter(answered))]  # the oldest (a dict keeps insertion order)
        answered[seq] = test_id

    def _answer_test_request(self, msg: FixMessage, seq: int, now_ns: int) -> None:
        """A TestRequest in sequence: its Heartbeat, unless it went when the message (the
        original of this copy) came past a gap."""
        test_id = msg.fields[112]
        if self._answered_early.pop(seq, None) != test_id:
            self.send(b"0", field(112, test_id), now_ns)

    def _request_resend(self, seq: int, now_ns: int) -> None:
        assert self.store is not None
        self._resend_upto, self._resend_at = seq, now_ns
        self.send(b"2", field(7, self.store.next_in) + field(16, 0), now_ns)

    def _resend(self, msg: FixMessage, now_ns: int) -> None:
        """Take a ResendRequest: its answer (``resend.resent``) goes out with
        ``take_output``, behind the answers of those before it."""
        store = self.store
        assert store is not None
        begin = int(msg.fields[7])
        # those waiting behind a resend under way are not sent yet: they follow it as
        # themselves, so a resend of them too would put each on the wire twice, the second
        # time (no PossDupFlag) below the MsgSeqNum the client expects: its Logout
        last = store.next_out - 1 - len(self._behind)
        end, why = resend_range(begin, int(msg.fields[16]), last)
        if why:
            self._reject(msg, RejectReason.VALUE_OUT_OF_RANGE, 7, why, now_ns)
            return
        if len(self._resends) >= MAX_RESENDS:
            text = f"more than {MAX_RESENDS} ResendRequests waiting for their answer"
            self._logout_and_close(text, now_ns)
            return
        self._queue(begin, end, True, now_ns)

    def _queue(self, begin: int, end: int, again: bool, now_ns: int) -> None:
        """Send stored messages ``begin..end`` with ``take_output``, behind those queued
        before: ``again`` as a resend, else for the first time (``resend.resent``)."""
        self._resends.append((begin, end, again))
        self._resend_ns = now_ns

    @property
    def resending(self) -> bool:
        """Whether a ResendRequest's answer is not all taken (``take_output`` goes on)."""
        return bool(self._resends)

    def _resent_output(self, out: list[bytes], budget: int | None, now_ns: int) -> None:
        """Append to ``out`` the next chunks of the resends under way, read from the store
        and stamped ``now_ns``: while under ``budget`` bytes (None: all of them), then, once
        all are out, what the session sent meanwhile."""
        store = self.store
        assert store is not None
        stamp = self._times.format(now_ns)
        size = 0
        resends = self._resends
        while resends and (budget is None or size < budget):
            begin, end, again = resends[0]
            last = min(end, begin + RESEND_CHUNK - 1)
            if last < end:
                resends[0] = (last + 1, end, again)
            else:
                resends.popleft()
            stored = store.outbound(begin, last)
            for raw in resent(stored, begin, last, self._header, stamp, again):
                self._sent(raw, now_ns)
                out.append(raw)
                size += len(raw)
        if not resends:
            self._release(out, now_ns)

    def _send_carried(self, carried: list[tuple[bytes, bytes]], now_ns: int) -> None:
        """Messages a reset carried (parked, never seen), sent anew under the new numbers as
        the connection takes them: they may be more than it buffers."""
        store = self.store
        assert store is not None
        if carried:
            first = store.next_out
            for msg_type, body in carried:
                self.send(msg_type, body, now_ns, emit=False)
            store.carried_sent()
            self._queue(first, store.next_out - 1, False, now_ns)

    def waiting_from(self) -> int:
        """The first MsgSeqNum not handed to the connection yet: waiting behind a resend
        under way, or stored and queued for its first sending (a reset logon's carried
        ones); ``store.next_out`` when none waits."""
        assert self.store is not None
        first = self.store.next_out - len(self._behind)
        if not self._resends:  # (the usual case: called a few times each write pass)
            return first
        return min([first, *(begin for begin, _end, again in self._resends if not again)])

    def _drop_resends(self) -> None:
        """Answer no more of the ResendRequests under way (the session ends, or resets its
        numbers): what waited behind them goes out now. Stored messages queued for their
        first sending (a reset logon's carried ones) that did not go out are parked again,
        so a reset sends them anew rather than discarding what the client never saw
        (review 123)."""
        if self._resends:
            unsent = [begin for begin, _end, again in self._resends if not again]
            if unsent and self.store is not None:
                self.store.park_again(min(unsent))
            self._resends.clear()
            self._release(self._out, self._last_out_ns)

    def _release(self, out: list[bytes], now_ns: int) -> None:
        for raw in self._behind:
            self._sent(raw, now_ns)
        if self._behind and self._resend_upto:  # a ResendRequest of ours waited: it goes now,
            self._resend_at = now_ns  # and its heartbeat interval starts now
        out += self._behind
        self._behind, self.behind_bytes = [], 0
