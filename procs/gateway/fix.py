"""FIX tag=value framing, parsing and encoding: bytes <-> ``FixMessage``, nothing else.

Framing follows the FIX 4.4 session rules: a message starts ``8=FIX.4.4|9=<len>|``, its body
is exactly BodyLength bytes and it ends ``10=<ccc>|`` with the byte sum modulo 256. A stream
that does not frame (wrong start, bad length, bad checksum) yields ``Garbled`` and the reader
resynchronises on the next ``8=FIX.4.4``: the session ignores garbled messages without
consuming a sequence number. What is *in* a framed message (tags, values, order) is judged by
``dictionary.py``, not here.

Speed (``tests/bench/bench_gateway.py`` measures it against simplefix): the framer slices an
immutable buffer (no copy per message but ``raw`` itself); all the messages framed from one
read are split into fields at once, each message taking two slices of that split and its
tags from a table of the shapes seen before (``_parse_run``: 5.3 -> 3.8 us a message); odd
input takes ``_message``, whose fields are split with a handful of C calls and no Python loop
per field (``parse_fields``; odder input takes the readable ``parse_fields_reference``); known
tags are looked up in a bytes -> int table rather than converted (``int()`` costs ~3x a dict
hit), and the checksum of a message up to 256 bytes is one ``zlib.adler32`` call.
"""

from __future__ import annotations

import calendar
import functools
import time
from collections.abc import Sequence
from typing import Final
from zlib import adler32

import msgspec

SOH: Final = b"\x01"
BEGIN_STRING: Final = b"FIX.4.4"
_PREFIX: Final = b"8=FIX.4.4\x019="
_PREFIX_LEN: Final = len(_PREFIX)
_TRAILER_LEN: Final = 7  # "10=ccc|"
#: Tags 1..9999 as bytes -> int, so parsing a known tag is a dict hit.
_TAGS: Final[dict[bytes, int]] = {str(t).encode(): t for t in range(1, 10_000)}
_LENGTH_CHARS: Final = 19  # the most digits a BodyLength is read with (int64)
INVALID_TAG: Final = -1  # a field whose tag is not a positive integer (or that has no "=")
#: Every byte but SOH and "=": ``translate`` deletes them, leaving a message's delimiters.
_NOT_DELIMS: Final = bytes(b for b in range(256) if b not in (1, 61))
_ALTERNATING: Final = b"=\x01" * 4096


class FrameError(Exception):
    """The stream cannot go on: a declared message larger than the limit (the peer is
    dropped; resynchronising would mean reading its whole body)."""


class FixMessage(msgspec.Struct, gc=False):
    """One framed message. ``tags`` and ``values`` hold every field after BodyLength and
    before CheckSum, in order (a tag that is not an integer is ``INVALID_TAG``; a parsed
    message's ``tags`` is a tuple shared by every message of its shape); ``fields`` maps each
    tag to its last value; ``msg_type`` is the first MsgType (35), the third field, a second
    one being a repeated tag (``dictionary.repeated_msg_type``); ``pairs`` zips tags and
    values (only validation of groups and resends walk it). ``raw`` is the whole message as
    received. Build one with ``of``.

    A msgspec Struct rather than a slots class: made in C, and left out of the cyclic
    collector's walks (it refers to no object that could refer back to it)."""

    raw: bytes
    tags: Sequence[int]
    values: list[bytes]
    fields: dict[int, bytes]
    msg_type: bytes

    @classmethod
    def of(cls, raw: bytes, tags: Sequence[int], values: list[bytes]) -> FixMessage:
        fields = dict(zip(tags, values))  # noqa: B905  # equal lengths by construction
        kind = values[0] if tags and tags[0] == 35 else fields.get(35, b"")  # its own: the first
        return cls(raw, tags, values, fields, kind)

    @property
    def pairs(self) -> list[tuple[int, bytes]]:
        return list(zip(self.tags, self.values, strict=True))

    def get(self, tag: int) -> bytes | None:
        return self.fields.get(tag)

    def text(self, tag: int, default: str = "") -> str:
        value = self.fields.get(tag)
        return default if value is None else value.decode("latin-1")

    def __repr__(self) -> str:
        return f"FixMessage({self.raw.replace(SOH, b'|').decode('latin-1')})"


class Garbled:
    """Bytes that did not frame as a FIX 4.4 message, and why. ``begin_string`` is set when
    they start as a message of another FIX version (``8=FIX.4.2|9=``...): a session answers
    that with a Logout, not silence."""

    __slots__ = ("begin_string", "raw", "reason")

    def __init__(self, raw: bytes, reason: str, begin_string: bytes = b"") -> None:
        self.raw = raw
        self.reason = reason
        self.begin_string = begin_string

    def __repr__(self) -> str:
        return f"Garbled({self.reason}: {self.raw[:60]!r})"


def checksum(data: bytes) -> int:
    """The byte sum modulo 256. Up to 256 bytes the sum is below Adler-32's modulus 65521,
    so Adler-32's low half (one C call) is exactly 1 + the sum; ~10x faster than ``sum``.
    A longer message is summed 256 bytes at a time (280 bytes: 0.3 us, ``sum`` 1.2 us)."""
    size = len(data)
    if size <= 256:
        return ((adler32(data) & 0xFFFF) - 1) & 0xFF
    if size <= 512:  # a long ExecutionReport: two halves, no loop
        return ((adler32(data[:256]) & 0xFFFF) + (adler32(data[256:]) & 0xFFFF) - 2) & 0xFF
    total = 0
    for k in range(0, len(data), 256):
        total += (adler32(data[k : k + 256]) & 0xFFFF) - 1
    return total & 0xFF


def shown(value: bytes, limit: int = 40) -> str:
    """A client's value as a reject text quotes it: any bytes, at most ``limit`` of them."""
    text = value[:limit].decode("latin-1")
    return text if len(value) <= limit else f"{text}... ({len(value)} bytes)"


def is_tag_number(text: bytes) -> bool:
    """A tag as FIX writes it: a positive integer without a leading zero, of at most 18
    digits (so ``int`` of it is cheap; no tag needs more)."""
    return 0 < len(text) <= 18 and text.isdigit() and text[0] != 48


def parse_fields_reference(body: bytes) -> list[tuple[int, bytes]]:
    """``tag=value|`` fields of ``body`` (which ends in SOH) as (tag, value) pairs: the
    readable definition ``parse_fields`` must agree with (``test_fix`` checks both)."""
    parts = body.split(SOH)
    parts.pop()  # after the last SOH
    pairs = []
    for part in parts:
        tag, eq, value = part.partition(b"=")
        number = _TAGS.get(tag)
        if number is None or not eq:
            number = int(tag) if eq and is_tag_number(tag) else INVALID_TAG
        pairs.append((number, value))
    return pairs


def parse_fields(body: bytes) -> tuple[list[int], list[bytes]]:
    """``parse_fields_reference`` as tags and values, without a Python loop per field in the
    common case.

    When the delimiters alternate ``=`` SOH ``=`` SOH (every field has exactly one ``=``),
    replacing SOH by ``=`` and splitting once gives tag, value, tag, value...; the tags are
    mapped by one ``map`` over the table. Anything else (a value holding ``=``, a field
    without one, a tag outside 1..9999) takes the reference path."""
    delims = body.translate(None, _NOT_DELIMS)
    if delims == _ALTERNATING[: len(delims)] and len(delims) & 1 == 0:
        items = body.replace(SOH, b"=").split(b"=")
        tags = list(map(_TAGS.get, items[0:-1:2]))
        if None not in tags:
            return tags, items[1::2]  # type: ignore[return-value]  # no None: checked above
    pairs = parse_fields_reference(body)
    return [t for t, _ in pairs], [v for _, v in pairs]


def _refuse_long_length(text: bytes, limit: int) -> None:
    """A BodyLength still going after ``_LENGTH_CHARS`` digits is far over any limit."""
    if text.isdigit():
        raise FrameError(
            f"message declares a BodyLength of more than {_LENGTH_CHARS} digits, "
            f"expected no more than {limit} bytes"
        )


def parse(raw: bytes) -> FixMessage | Garbled:
    """Frame and parse one complete message (tests, tools); streams use ``FixReader``."""
    reader = FixReader(max(len(raw), 64))
    reader.feed(raw)
    out = reader.messages()
    if len(out) == 1 and not reader.pending():
        return out[0]
    return Garbled(raw, f"not exactly one message ({len(out)} framed, {reader.pending()} left)")


class FixReader:
    """Incremental framer: ``feed`` bytes as they arrive, take ``messages()``.

    Never buffers more than ``max_message_bytes`` for one message: a BodyLength that declares
    more raises ``FrameError`` naming both numbers.

    The buffer is immutable ``bytes``: a read that starts on a message boundary (the usual
    case) is framed in place, without a copy into a bytearray, and each message's ``raw`` is
    one slice of it."""

    def __init__(self, max_message_bytes: int = 8192) -> None:
        self.max_message_bytes = max_message_bytes
        self._buf = b""

    def pending(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        self._buf = self._buf + data if self._buf else bytes(data)

    def messages(self) -> list[FixMessage | Garbled]:
        # Garbled, or a message's frame: (start, body start, body end, end) in buf
        out: list[Garbled | tuple[int, int, int, int]] = []
        framed = 0
        buf = self._buf
        pos = 0
        end_all = len(buf)
        limit = self.max_message_bytes
        while pos < end_all:
            if not buf.startswith(_PREFIX, pos):
                if _PREFIX.startswith(buf[pos : pos + _PREFIX_LEN]):
                    break  # the start of a message: wait for more
                nxt = self._resync(buf, pos)
                out.append(_not_fix44(buf[pos:nxt]))
                pos = nxt
                continue
            length_start = pos + _PREFIX_LEN
            length_end = buf.find(SOH, length_start, length_start + _LENGTH_CHARS + 1)
            if length_end < 0:
                if end_all - pos < _PREFIX_LEN + _LENGTH_CHARS + 1:
                    break
                _refuse_long_length(buf[length_start : length_start + _LENGTH_CHARS + 1], limit)
                out.append(garbled := self._skip(buf, pos, "BodyLength is not a number"))
                pos += len(garbled.raw)  # the next message's start
                continue
            length_text = buf[length_start:length_end]
            length = _TAGS.get(length_text)  # 1..9999 written plainly: a dict hit, not int()
            if length is None:
                if not length_text.isdigit():
                    out.append(garbled := self._skip(buf, pos, "BodyLength is not a number"))
                    pos += len(garbled.raw)  # the next message's start
                    continue
                length = int(length_text)
            body_start = length_end + 1
            body_end = body_start + length
            end = body_end + _TRAILER_LEN
            if end - pos > limit:
                raise FrameError(
                    f"message declares BodyLength {length} ({end - pos} bytes framed), "
                    f"expected no more than {limit}"
                )
            if end_all < end:
                break
            digits = buf[body_end + 3 : body_end + 6]
            if (
                not buf.startswith(b"10=", body_end)
                or buf[end - 1] != 1
                or buf[body_end - 1] != 1
                or not digits.isdigit()
            ):
                out.append(garbled := self._skip(buf, pos, "BodyLength does not end at 10="))
                pos += len(garbled.raw)  # the next message's start
                continue
            out.append((pos, body_start, body_end, end))
            framed += 1
            pos = end
        self._buf = buf[pos:] if pos < end_all else b""
        if framed and framed == len(out):
            return _parse_run(buf, out)  # type: ignore[arg-type]  # only frames: counted
        return [f if type(f) is Garbled else _message_at(buf, *f) for f in out]  # type: ignore[misc]

    def _skip(self, buf: bytes, pos: int, reason: str) -> Garbled:
        """The garbled message at ``pos`` as the bytes skipped to the next one: what the
        journal records. (Up to its declared end, it took the messages after it, which are
        read again: a BodyLength 8 KB too long journaled each byte many times, 80x what was
        sent, review 38; one too short left bytes out.)"""
        return Garbled(buf[pos : self._resync(buf, pos)], reason)

    @staticmethod
    def _resync(buf: bytes, pos: int) -> int:
        """Where the next message after the one garbled at ``pos`` starts: its BeginString,
        or the tail that may begin one (a read can end inside it: dropping those bytes
        would garble the good message after a bad one), else the end of ``buf``."""
        nxt = buf.find(b"8=FIX.4.4\x01", pos + 1)
        return _partial_start(buf, pos + 1) if nxt < 0 else nxt


def _parse_run(buf: bytes, frames: list[tuple[int, int, int, int]]) -> list[FixMessage | Garbled]:
    """The messages of ``frames``, consecutive in ``buf``: one read's worth, usually.

    When the whole run's delimiters alternate ``=`` SOH (no value holds ``=``), it is split
    once, and each message takes its tags and values as two slices of that split: a handful
    of C calls per message and none per field. Its tags come from a table of the shapes
    (tag sequences) seen before. A message with a wrong CheckSum, an unknown shape whose tags
    are not all in 1..9999, or a run that does not alternate, is parsed alone (``_message``),
    which decides exactly as before."""
    start, end = frames[0][0], frames[-1][3]
    run = buf[start:end] if start or end != len(buf) else buf
    delims = run.translate(None, _NOT_DELIMS)
    if delims.count(b"=\x01") * 2 != len(delims):
        return [_message_at(buf, *frame) for frame in frames]
    items = run.replace(SOH, b"=").split(b"=")
    names = items[0::2]
    every_value = items[1::2]
    out: list[FixMessage | Garbled] = []
    first = 0  # the field index of a message's BeginString
    last_shape: list[bytes] = []
    tags: tuple[int, ...] | None = None
    for start, body_start, body_end, end in frames:
        raw = buf[start:end]
        body = first + 2  # after BeginString and BodyLength
        trailer = first + buf.count(SOH, start, end) - 1  # CheckSum's index
        first = trailer + 1
        # checksum(raw), its usual case inlined: a call less per message
        total = ((adler32(raw) & 0xFFFF) - 1) & 0xFF if len(raw) <= 256 else checksum(raw)
        shape = names[body:trailer]
        if shape != last_shape:  # a run is mostly one shape: a list compare, no hashing
            tags = _shape_tags(shape)
            last_shape = shape
        if tags is None or total != _FRAME_SUMS.get(every_value[trailer]):
            out.append(_message_at(buf, start, body_start, body_end, end))
        else:  # FixMessage.of, inlined: MsgType is first (a known shape's tags[0] is 35)
            values = every_value[body:trailer]
            out.append(FixMessage(raw, tags, values, dict(zip(tags, values)), values[0]))  # noqa: B905
    return out


#: CheckSum text -> the byte sum mod 256 of a whole message (trailer "10=ddd|" included) that
#: holds it: a frame is checked without slicing its trailer off.
_FRAME_SUMS: Final[dict[bytes, int]] = {
    b"%03d" % d: (d + 159 + sum(b"%03d" % d)) & 0xFF for d in range(256)
}
#: A message shape, its tags as sent joined by SOH, -> the tags as numbers; cleared when it
#: holds ``MAX_SHAPES`` (a client inventing shapes gains nothing), as ``dictionary._SHAPES``.
_SHAPE_TAGS: Final[dict[bytes, tuple[int, ...]]] = {}
MAX_SHAPES: Final = 1024


def _shape_tags(names: list[bytes]) -> tuple[int, ...] | None:
    """The tags of a shape (its tag names as sent), remembered; None when one is not in
    1..9999, or MsgType is not first or not alone (``_message`` decides those)."""
    key = SOH.join(names)
    known = _SHAPE_TAGS.get(key)
    if known is not None:
        return known
    tags = tuple(map(_TAGS.get, names))
    if None in tags or not tags or tags[0] != 35 or tags.count(35) != 1:
        return None
    if len(_SHAPE_TAGS) >= MAX_SHAPES:
        _SHAPE_TAGS.clear()
    _SHAPE_TAGS[key] = tags  # type: ignore[assignment]  # no None: checked
    return tags  # type: ignore[return-value]


def _message_at(
    buf: bytes, start: int, body_start: int, body_end: int, end: int
) -> FixMessage | Garbled:
    return _message(buf[start:end], buf[body_start:body_end], buf[body_end + 3 : body_end + 6])


def _message(raw: bytes, body: bytes, digits: bytes) -> FixMessage | Garbled:
    """A framed message whose CheckSum field holds ``digits``: parsed, or garbled (a wrong
    CheckSum, or MsgType not the third field; FIX ignores both, consuming no MsgSeqNum)."""
    declared = int(digits)
    # the trailer "10=ddd|" is in raw: take its byte sum back out rather than slice
    actual = (checksum(raw) - sum(digits) - 159) & 0xFF  # 159 = sum(b"10=\x01")
    if declared != actual:
        return Garbled(raw, f"CheckSum {declared:03d}, computed {actual:03d}")
    tags, values = parse_fields(body)
    if tags and tags[0] == 35:
        return FixMessage.of(raw, tags, values)
    return Garbled(raw, "MsgType (35) is not the third field")


def _not_fix44(data: bytes) -> Garbled:
    """Bytes that do not start with ``8=FIX.4.4|9=``: another version's header, or junk."""
    soh = data.find(SOH, 0, 24)
    if data.startswith(b"8=FIX") and soh > 0 and data.startswith(b"9=", soh + 1):
        begin = data[2:soh]
        return Garbled(data, f"BeginString {shown(begin)!r} is not FIX.4.4", begin)
    return Garbled(data, "no BeginString 8=FIX.4.4")


def _partial_start(buf: bytes, start: int) -> int:
    """Where a tail of ``buf`` (from ``start`` on) could begin a BeginString; else its end."""
    for k in range(max(start, len(buf) - _PREFIX_LEN), len(buf)):
        if _PREFIX.startswith(buf[k:]):
            return k
    return len(buf)


# -- encoding --------------------------------------------------------------------------------


def field(tag: int, value: bytes | str | int) -> bytes:
    if isinstance(value, int):
        value = str(value)
    if isinstance(value, str):
        value = value.encode("latin-1")
    return b"%d=%s\x01" % (tag, value)


def fields(*pairs: tuple[int, bytes | str | int]) -> bytes:
    return b"".join(field(t, v) for t, v in pairs)


def frame(body: bytes) -> bytes:
    """``8=FIX.4.4|9=len|`` + body (from MsgType on, ending in SOH) + ``10=ccc|``."""
    head = b"8=FIX.4.4\x019=%d\x01" % len(body)
    return b"%s%s10=%03d\x01" % (head, body, (checksum(head) + checksum(body)) & 0xFF)


class Timestamps:
    """UTCTimestamp text with milliseconds, formatting the date part once per second."""

    __slots__ = ("_second", "_text")

    def __init__(self) -> None:
        self._second = -1
        self._text = b""

    def format(self, ns: int) -> bytes:
        second, rest = divmod(ns, 1_000_000_000)
        if second != self._second:
            self._second = second
            self._text = time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(second)).encode()
        return b"%s.%03d" % (self._text, rest // 1_000_000)


_DAYS: dict[bytes, int | None] = {}  # "YYYYMMDD" -> ns at its midnight UTC, None: not a date


@functools.lru_cache(maxsize=256)  # SendingTime is read by validation, then by the session
def parse_utc_timestamp(value: bytes) -> int | None:
    """Nanoseconds since the epoch of ``YYYYMMDD-HH:MM:SS[.sss[sss[sss]]]``, or None.

    The canonical form (two-digit fields in range) is computed from a per-date cache; any
    other text goes to ``time.strptime``, which decides exactly as before."""
    if (
        len(value) >= 17
        and value[11] == 58  # ":"
        and value[14] == 58
        and value[8] == 45  # "-"
        and value[9:11].isdigit()
        and value[12:14].isdigit()
        and value[15:17].isdigit()
    ):
        hours, minutes, seconds = int(value[9:11]), int(value[12:14]), int(value[15:17])
        date = value[:8]
        day = _DAYS.get(date, -1)
        if day == -1:
            day = _midnight(date)
        if hours < 24 and minutes < 60 and seconds < 62 and day is not None:
            nanos = _fraction(value[17:])
            if nanos is None:
                return None
            return day + (hours * 3600 + minutes * 60 + seconds) * 1_000_000_000 + nanos
    return _parse_utc_timestamp_reference(value)


def _midnight(date: bytes) -> int | None:
    if len(_DAYS) >= 4096:
        _DAYS.clear()
    ns = _parse_utc_timestamp_reference(date + b"-00:00:00") if date.isdigit() else None
    _DAYS[date] = ns
    return ns


def _fraction(frac: bytes) -> int | None:
    if not frac:
        return 0
    digits = frac[1:]
    if frac[:1] != b"." or not digits.isdigit() or len(digits) not in (3, 6, 9):
        return None
    scale: int = 10 ** (9 - len(digits))
    return int(digits) * scale


def _parse_utc_timestamp_reference(value: bytes) -> int | None:
    if len(value) < 17 or value[8] != 45:  # "-"
        return None
    clock = value[9:17]  # strptime takes " 1" for a day: digits only here (review 137)
    if not (value[:8].isdigit() and clock[2:3] == clock[5:6] == b":"):
        return None
    if not (clock[:2] + clock[3:5] + clock[6:8]).isdigit():
        return None
    try:
        base = time.strptime(value[:17].decode("ascii"), "%Y%m%d-%H:%M:%S")
    except (ValueError, UnicodeDecodeError):
        return None
    nanos = _fraction(value[17:])
    if nanos is None:
        return None
    return calendar.timegm(base) * 1_000_000_000 + nanos
