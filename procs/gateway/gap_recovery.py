"""Message recovery of a FIX session (FIX 4.4 Vol 2): asking for a gap, serving a
ResendRequest, a SequenceReset, the OrigSendingTime a PossDup message must carry, and the
answer to a TestRequest that comes past a gap.

A mixin of ``Session`` (``session.py``), which owns the state it names; what is resent is
made by ``resend.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from procs.gateway import dictionary
from procs.gateway.dictionary import RejectReason
from procs.gateway.fix import FixMessage, Timestamps, field, parse_utc_timestamp
from procs.gateway.resend import resend_range, resent
from procs.gateway.store import MessageStore

#: Too-high TestRequests remembered as answered until their MsgSeqNum is reached in sequence.
MAX_EARLY_ANSWERS = 1_000


class GapRecovery:
    store: MessageStore | None
    _resend_upto: int  # a ResendRequest of ours is open up to this seq (0: none)
    _times: Timestamps
    _header: bytes
    #: seq -> TestReqID of each TestRequest answered while past a gap (``_answer_early``).
    _answered_early: dict[int, bytes]

    if TYPE_CHECKING:  # Session's own

        def send(self, msg_type: bytes, body: bytes, now_ns: int) -> int: ...

        def _emit(self, raw: bytes, now_ns: int) -> None: ...

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
        if orig_ns is None or (sent is not None and orig_ns > sent):
            self._reject(
                msg,
                RejectReason.SENDING_TIME_ACCURACY,
                122,
                "OrigSendingTime after SendingTime",
                now_ns,
            )
            self._logout_and_close("SendingTime accuracy problem", now_ns)
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
        self._resend_upto = seq
        self.send(b"2", field(7, self.store.next_in) + field(16, 0), now_ns)

    def _resend(self, msg: FixMessage, now_ns: int) -> None:
        """Serve a ResendRequest from the store (``resend.resent``)."""
        store = self.store
        assert store is not None
        begin = int(msg.fields[7])
        end, why = resend_range(begin, int(msg.fields[16]), store.next_out - 1)
        if why:
            self._reject(msg, RejectReason.VALUE_OUT_OF_RANGE, 7, why, now_ns)
            return
        stamp = self._times.format(now_ns)
        for raw in resent(store.outbound(begin, end), begin, end, self._header, stamp):
            self._emit(raw, now_ns)
