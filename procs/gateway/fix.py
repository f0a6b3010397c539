"""FIX tag=value framing, parsing and encoding: bytes <-> ``FixMessage``, nothing else.

Framing follows the FIX 4.4 session rules: a message starts ``8=FIX.4.4|9=<len>|``, its body
is exactly BodyLength bytes and it ends ``10=<ccc>|`` with the byte sum modulo 256. A stream
that does not frame (wrong start, bad length, bad checksum) yields ``Garbled`` and the reader
resynchronises on the next ``8=FIX.4.4``: the session ignores garbled messages without
consuming a sequence number. What is *in* a framed message (tags, values, order) is judged by
``dictionary.py``, not here.

Speed: parsing is one ``split`` and one ``partition`` per field; known tags are looked up in a
bytes -> int table rather than converted (``int()`` costs ~3x a dict hit), and the checksum
is one ``sum()`` over the message. ``tests/bench/bench_gateway.py`` measures it against
simplefix.
"""

from __future__ import annotations

import calendar
import time
from typing import Final

SOH: Final = b"\x01"
BEGIN_STRING: Final = b"FIX.4.4"
_PREFIX: Final = b"8=FIX.4.4\x019="
_PREFIX_LEN: Final = len(_PREFIX)
_TRAILER_LEN: Final = 7  # "10=ccc|"
#: Tags 1..9999 as bytes -> int, so parsing a known tag is a dict hit.
_TAGS: Final[dict[bytes, int]] = {str(t).encode(): t for t in range(1, 10_000)}
INVALID_TAG: Final = -1  # a field whose tag is not a positive integer (or that has no "=")


class FrameError(Exception):
    """The stream cannot go on: a declared message larger than the limit (the peer is
    dropped; resynchronising would mean reading its whole body)."""


class FixMessage:
    """One framed message. ``pairs`` holds every field after BodyLength and before CheckSum,
    in order (a tag that is not an integer is ``INVALID_TAG``); ``fields`` maps each tag to
    its last value. ``raw`` is the whole message as received."""

    __slots__ = ("fields", "msg_type", "pairs", "raw")

    def __init__(self, raw: bytes, pairs: list[tuple[int, bytes]]) -> None:
        self.raw = raw
        self.pairs = pairs
        self.fields: dict[int, bytes] = dict(pairs)
        self.msg_type: bytes = self.fields.get(35, b"")

    def get(self, tag: int) -> bytes | None:
        return self.fields.get(tag)

    def text(self, tag: int, default: str = "") -> str:
        value = self.fields.get(tag)
        return default if value is None else value.decode("latin-1")

    def __repr__(self) -> str:
        return f"FixMessage({self.raw.replace(SOH, b'|').decode('latin-1')})"


class Garbled:
    """Bytes that did not frame as a FIX 4.4 message, and why."""

    __slots__ = ("raw", "reason")

    def __init__(self, raw: bytes, reason: str) -> None:
        self.raw = raw
        self.reason = reason

    def __repr__(self) -> str:
        return f"Garbled({self.reason}: {self.raw[:60]!r})"


def checksum(data: bytes | bytearray | memoryview) -> int:
    return sum(data) & 0xFF


def parse_fields(body: bytes) -> list[tuple[int, bytes]]:
    """``tag=value|`` fields of ``body`` (which ends in SOH) as (tag, value) pairs."""
    parts = body.split(SOH)
    parts.pop()  # after the last SOH
    tags = _TAGS
    pairs = []
    for part in parts:
        tag, eq, value = part.partition(b"=")
        number = tags.get(tag)
        if number is None or not eq:
            number = int(tag) if eq and tag.isdigit() and tag[0] != 48 else INVALID_TAG
        pairs.append((number, value))
    return pairs


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
    more raises ``FrameError`` naming both numbers."""

    def __init__(self, max_message_bytes: int = 8192) -> None:
        self.max_message_bytes = max_message_bytes
        self._buf = bytearray()

    def pending(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        self._buf += data

    def messages(self) -> list[FixMessage | Garbled]:
        out: list[FixMessage | Garbled] = []
        buf = self._buf
        pos = 0
        end_all = len(buf)
        while pos < end_all:
            if buf[pos : pos + _PREFIX_LEN] != _PREFIX:
                if _PREFIX.startswith(bytes(buf[pos : pos + _PREFIX_LEN])):
                    break  # the start of a message: wait for more
                nxt = buf.find(b"8=FIX.4.4\x01", pos + 1)
                if nxt < 0:
                    nxt = _partial_start(buf, pos + 1)
                out.append(Garbled(bytes(buf[pos:nxt]), "no BeginString 8=FIX.4.4"))
                pos = nxt
                continue
            length_end = buf.find(SOH, pos + _PREFIX_LEN, pos + _PREFIX_LEN + 8)
            if length_end < 0:
                if end_all - pos < _PREFIX_LEN + 8:
                    break
                out.append(self._skip(buf, pos, "BodyLength is not a number"))
                pos = self._resync(buf, pos)
                continue
            length_text = bytes(buf[pos + _PREFIX_LEN : length_end])
            if not length_text.isdigit():
                out.append(Garbled(bytes(buf[pos:length_end]), "BodyLength is not a number"))
                pos = self._resync(buf, pos)
                continue
            body_start = length_end + 1
            body_end = body_start + int(length_text)
            total = body_end + _TRAILER_LEN - pos
            if total > self.max_message_bytes:
                raise FrameError(
                    f"message declares BodyLength {int(length_text)} ({total} bytes framed), "
                    f"expected no more than {self.max_message_bytes}"
                )
            if end_all < body_end + _TRAILER_LEN:
                break
            trailer = buf[body_end : body_end + _TRAILER_LEN]
            if (
                trailer[:3] != b"10="
                or trailer[6] != 1
                or buf[body_end - 1] != 1
                or not bytes(trailer[3:6]).isdigit()
            ):
                out.append(Garbled(bytes(buf[pos:body_end]), "BodyLength does not end at 10="))
                pos = self._resync(buf, pos)
                continue
            raw = bytes(buf[pos : body_end + _TRAILER_LEN])
            declared = int(trailer[3:6])
            actual = sum(raw[: body_end - pos]) & 0xFF
            if declared != actual:
                out.append(Garbled(raw, f"CheckSum {declared:03d}, computed {actual:03d}"))
            else:
                out.append(FixMessage(raw, parse_fields(raw[body_start - pos : body_end - pos])))
            pos = body_end + _TRAILER_LEN
        del buf[:pos]
        return out

    def _skip(self, buf: bytearray, pos: int, reason: str) -> Garbled:
        nxt = buf.find(b"8=FIX.4.4\x01", pos + 1)
        return Garbled(bytes(buf[pos : len(buf) if nxt < 0 else nxt]), reason)

    @staticmethod
    def _resync(buf: bytearray, pos: int) -> int:
        nxt = buf.find(b"8=FIX.4.4\x01", pos + 1)
        return len(buf) if nxt < 0 else nxt


def _partial_start(buf: bytearray, start: int) -> int:
    """Where a tail of ``buf`` (from ``start`` on) could begin a BeginString; else its end."""
    for k in range(max(start, len(buf) - _PREFIX_LEN), len(buf)):
        if _PREFIX.startswith(bytes(buf[k:])):
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
    total = sum(head) + sum(body)
    return b"%s%s10=%03d\x01" % (head, body, total & 0xFF)


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


def parse_utc_timestamp(value: bytes) -> int | None:
    """Nanoseconds since the epoch of ``YYYYMMDD-HH:MM:SS[.sss[sss[sss]]]``, or None."""
    if len(value) < 17 or value[8] != 45:  # "-"
        return None
    try:
        base = time.strptime(value[:17].decode("ascii"), "%Y%m%d-%H:%M:%S")
    except (ValueError, UnicodeDecodeError):
        return None
    frac = value[17:]
    nanos = 0
    if frac:
        digits = frac[1:]
        if frac[:1] != b"." or not digits.isdigit() or len(digits) not in (3, 6, 9):
            return None
        nanos = int(digits) * 10 ** (9 - len(digits))
    return calendar.timegm(base) * 1_000_000_000 + nanos
