"""A read's messages parsed as one run (``fix._parse_run``) equal the same frames parsed one
by one (``fix._message``, the path every odd frame takes): over streams of valid, mutated
and corrupted messages, junk between them and any cut of the stream into reads."""

from __future__ import annotations

from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from procs.gateway import fix
from procs.gateway.fix import FixMessage, FixReader, Garbled, field, frame

from .test_fast_paths import BODIES, mutated

#: Pieces that must not be taken for a shape's usual layout: tag 10 inside a body, a tag
#: with a leading zero, a tag past 9999, a value holding "=", a field without one, a long
#: value (the byte sum of a message over 256 bytes is not one adler32).
ODD_FIELDS = st.sampled_from([
    b"10=123\x01", b"010=5\x01", b"035=D\x01", b"12345=x\x01", b"58=a=b\x01", b"58\x01",
    b"58=" + b"z" * 300 + b"\x01", b"=5\x01", b"58=\x01",
])  # fmt: skip


@st.composite
def pieces(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["valid", "valid", "valid", "mutated", "odd", "checksum", "junk"]))
    if kind == "junk":
        return draw(st.sampled_from([b"junk", b"8=FIX.4.2\x019=5\x0135=0\x0110=000\x01", b"\x01="]))
    body = draw(st.sampled_from(BODIES)) if kind != "mutated" else draw(mutated())
    if kind == "odd":
        at = draw(st.integers(1, body.count(b"\x01")))
        cut = [k for k, b in enumerate(body) if b == 1][at - 1] + 1
        body = body[:cut] + draw(ODD_FIELDS) + body[cut:]
    msg = frame(body)
    if kind == "checksum":
        wrong = (int(msg[-4:-1]) + draw(st.integers(1, 255))) % 256
        msg = msg[:-4] + b"%03d\x01" % wrong
    return msg


def one_by_one(buf: bytes, frames: list[tuple[int, int, int, int]]) -> list[FixMessage | Garbled]:
    return [fix._message_at(buf, *f) for f in frames]


def read(stream: bytes, cuts: list[int]) -> list[FixMessage | Garbled]:
    reader = FixReader(max_message_bytes=4096)
    out: list[FixMessage | Garbled] = []
    last = 0
    for cut in [*sorted(cuts), len(stream)]:
        reader.feed(stream[last:cut])
        out += reader.messages()
        last = cut
    assert reader.pending() == 0 or not stream.endswith(b"\x01")
    return out


def described(out: list[FixMessage | Garbled]) -> list[tuple[object, ...]]:
    return [
        ("garbled", m.raw, m.reason, m.begin_string)
        if isinstance(m, Garbled)
        else ("message", m.raw, list(m.tags), m.values, m.fields, m.msg_type)
        for m in out
    ]


@settings(max_examples=300, deadline=None)
@given(st.lists(pieces(), min_size=1, max_size=12), st.lists(st.integers(0, 4000), max_size=4))
def test_a_run_parses_as_its_frames_one_by_one(parts: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(parts)
    cuts = [c for c in cuts if c < len(stream)]
    fast = read(stream, cuts)
    with patch.object(fix, "_parse_run", one_by_one):
        slow = read(stream, cuts)
    assert described(fast) == described(slow)


def test_a_run_of_one_shape_shares_its_tags_and_checks_every_checksum() -> None:
    body = BODIES[0]
    good = frame(body)
    bad = good[:-4] + b"%03d\x01" % ((int(good[-4:-1]) + 1) % 256)
    reader = FixReader()
    reader.feed(good + bad + good)
    first, wrong, third = reader.messages()
    assert isinstance(first, FixMessage) and isinstance(third, FixMessage)
    assert first.tags is third.tags and first.fields[11] == b"c"
    assert isinstance(wrong, Garbled) and wrong.reason.startswith("CheckSum")


def test_the_shape_table_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fix, "_SHAPE_TAGS", {})
    monkeypatch.setattr(fix, "MAX_SHAPES", 3)
    reader = FixReader()
    for tag in range(5000, 5010):  # ten shapes: a different last tag each
        reader.feed(frame(BODIES[0] + field(tag, "v")))
        (msg,) = reader.messages()
        assert isinstance(msg, FixMessage) and msg.fields[tag] == b"v"
        assert len(fix._SHAPE_TAGS) <= 3


def test_a_value_holding_equals_signs_is_never_split_as_fields() -> None:
    """Two "=" in one value keep tags and values in step for the fields after it, so only the
    run's alternation check stands between such a message and a misparse: whichever value
    its last field ends with (one of them makes its CheckSum look right), it parses as the
    message parsed alone does."""
    for pad in range(40):
        for last in range(256):
            body = BODIES[0] + field(58, "1=2=3") + field(5002, "x" * pad)
            stream = frame(body + field(5001, b"%03d" % last))
            reader = FixReader()
            reader.feed(stream)
            with patch.object(fix, "_parse_run", one_by_one):
                alone = FixReader()
                alone.feed(stream)
                assert described(reader.messages()) == described(alone.messages())
