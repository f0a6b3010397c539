"""What a FIX session sends again for a ResendRequest, from its message store: pure, bytes
out (``session.py`` checks the request and emits them).

Application messages go again as they were, with PossDupFlag (43=Y) and their first
SendingTime as OrigSendingTime (122); every run of session messages, and any seq the store
lacks, becomes one SequenceReset-GapFill (35=4, 123=Y) to the next message that is resent.
Messages stored but never sent (parked, sent at a logon that resets the numbers) go the same
way for the first time: as themselves, with only a new SendingTime.
"""

from __future__ import annotations

from collections.abc import Iterable

from procs.gateway import dictionary
from procs.gateway.fix import FixMessage, frame, parse

#: Header fields a resent message gets anew (MsgType, the CompIDs, MsgSeqNum, SendingTime).
_RENEWED = (35, 49, 56, 34, 52)


def resend_range(begin: int, asked: int, last: int) -> tuple[int, str]:
    """The last seq a ResendRequest for ``begin``..``asked`` (0: through the last sent) gets
    when ``last`` is the last message sent, and ""; or 0 and why the request is refused."""
    if asked and begin > asked:
        return 0, f"BeginSeqNo {begin} is above EndSeqNo {asked}"
    if begin > last + 1:
        return 0, f"BeginSeqNo {begin} is past the last message sent ({last})"
    return (last if asked == 0 or asked > last else asked), ""


def resent(
    stored: Iterable[tuple[int, bytes]],
    begin: int,
    end: int,
    header: bytes,
    stamp: bytes,
    again: bool = True,
) -> list[bytes]:
    """The frames that answer a ResendRequest for ``begin..end``, given the stored outbound
    messages of that range in order (``(seq, raw)``), the session's CompID fields
    (``header``) and the SendingTime of now (``stamp``); ``again`` False: the first sending
    of messages stored unsent (no PossDupFlag, no OrigSendingTime)."""
    out: list[bytes] = []
    gap_start = 0
    expect = begin
    for seq, raw in stored:
        message = parse(raw)
        admin = not isinstance(message, FixMessage) or message.msg_type in dictionary.ADMIN
        if seq != expect and not gap_start:
            gap_start = expect
        expect = seq + 1
        if admin:
            gap_start = gap_start or seq
            continue
        assert isinstance(message, FixMessage)
        if gap_start:
            out.append(gap_fill(gap_start, seq, header, stamp))
            gap_start = 0
        body = b"".join(b"%d=%s\x01" % (t, v) for t, v in message.pairs if t not in _RENEWED)
        if again:
            times = b"43=Y\x0152=%s\x01122=%s\x01" % (stamp, message.fields[52])
        else:
            times = b"52=%s\x01" % stamp
        kind = message.msg_type
        out.append(frame(b"35=%s\x01%s34=%d\x01%s%s" % (kind, header, seq, times, body)))
    if gap_start or expect <= end:
        out.append(gap_fill(gap_start or expect, end + 1, header, stamp))
    return out


def gap_fill(seq: int, new: int, header: bytes, stamp: bytes) -> bytes:
    """A SequenceReset-GapFill of MsgSeqNum ``seq`` to ``new``."""
    return frame(
        b"35=4\x01%s34=%d\x0143=Y\x0152=%s\x01122=%s\x01123=Y\x0136=%d\x01"
        % (header, seq, stamp, stamp, new)
    )
