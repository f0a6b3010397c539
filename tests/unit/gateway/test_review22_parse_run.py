"""Review of the run parser (``fix._parse_run``, commit 2a0d1d3): for any byte stream cut into
any reads, what ``FixReader.messages()`` gives equals the frames parsed one by one
(``fix._message_at``), only ``FrameError`` escapes, ``pending()`` is unchanged, and a message
from the run path behaves as one built with ``FixMessage.of``."""

from __future__ import annotations

from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from procs.gateway import dictionary, fix
from procs.gateway.fix import FixMessage, FixReader, FrameError, Garbled, field

from .test_fast_paths import BODIES


def one_by_one(buf: bytes, frames: list[tuple[int, int, int, int]]) -> list[FixMessage | Garbled]:
    return [fix._message_at(buf, *f) for f in frames]


def framed(body: bytes, length: bytes | None = None, digits: bytes | None = None) -> bytes:
    """``frame`` with any BodyLength text and any CheckSum text (default: the right ones)."""
    head = b"8=FIX.4.4\x019=%s\x01" % (b"%d" % len(body) if length is None else length)
    total = sum(head + body) & 0xFF
    return head + body + b"10=%s\x01" % (b"%03d" % total if digits is None else digits)


def described(m: FixMessage | Garbled) -> tuple[object, ...]:
    if isinstance(m, Garbled):
        return ("garbled", m.raw, m.reason, m.begin_string)
    return ("message", m.raw, list(m.tags), m.values, m.fields, m.msg_type, m.pairs, repr(m))


Read = tuple[list[tuple[object, ...]], list[int], str | None]


def read(stream: bytes, cuts: list[int], limit: int = 4096) -> Read:
    """Every message (described), ``pending()`` after each read, and a FrameError's text."""
    reader = FixReader(max_message_bytes=limit)
    out: list[tuple[object, ...]] = []
    pending: list[int] = []
    last = 0
    for cut in [*sorted(set(cuts)), len(stream)]:
        reader.feed(stream[last:cut])
        last = cut
        try:
            got = reader.messages()
        except FrameError as e:
            return out, pending, str(e)
        for m in got:
            if isinstance(m, FixMessage):
                assert dictionary.validate(m) == dictionary.first_fault(m)
        out += [described(m) for m in got]
        pending.append(reader.pending())
    return out, pending, None


def both(stream: bytes, cuts: list[int], limit: int = 4096) -> tuple[Read, Read]:
    fast = read(stream, cuts, limit)
    with patch.object(fix, "_parse_run", one_by_one):
        slow = read(stream, cuts, limit)
    return fast, slow


# -- streams ---------------------------------------------------------------------------------

#: Tag names: known (mostly), in 1..9999 but odd (10, 9, 8 inside a body), leading zeros,
#: past 9999, empty, not digits, non-ASCII, and a second MsgType.
CLEAN_NAMES = st.sampled_from([b"49", b"56", b"34", b"52", b"11", b"55", b"58", b"1", b"9999"])
ODD_NAMES = st.sampled_from([
    b"35", b"10", b"9", b"8", b"0035", b"035", b"049", b"", b"12345", b"10000", b"x", b"\xff",
    b"-1", b"+5", b" 49",
])  # fmt: skip
CLEAN_VALUES = st.sampled_from([b"D", b"0", b"A", b"", b"1", b"\x80\xfe\x00", b"z" * 300])
ODD_VALUES = st.sampled_from([b"=", b"a=b", b"10=000", b"8=FIX.4.4"])


@st.composite
def a_field(draw: st.DrawFn, odds: int = 9) -> bytes:
    odd = draw(st.integers(0, odds))
    name = draw(ODD_NAMES if odd == 0 else CLEAN_NAMES)
    if odd == 1:
        return name + b"\x01"  # no "="
    return name + b"=" + draw(ODD_VALUES if odd == 2 else CLEAN_VALUES) + b"\x01"


@st.composite
def a_body(draw: st.DrawFn, odds: int = 9) -> bytes:
    if draw(st.integers(0, 20)) == 0:
        return b""  # 9=0
    if draw(st.integers(0, 7)):
        head = b"35=" + draw(st.sampled_from([b"D", b"0", b"A", b"", b"\xe9"])) + b"\x01"
    else:
        head = b""
    return head + b"".join(draw(st.lists(a_field(odds), max_size=6)))


@st.composite
def a_piece(draw: st.DrawFn, bodies: list[bytes], kinds: list[str]) -> bytes:
    body = draw(st.sampled_from(bodies))
    kind = draw(st.sampled_from(kinds))
    if kind == "zeros":
        return framed(body, length=b"000" + b"%d" % len(body))
    if kind == "sum":
        return framed(body, digits=b"%03d" % draw(st.integers(0, 255)))
    if kind == "badsum":
        return framed(body, digits=draw(st.sampled_from([b"256", b"999", b"00a", b"1=2", b"12"])))
    if kind == "len":
        return framed(body, length=b"%d" % (len(body) + draw(st.sampled_from([-1, 1, 7]))))
    if kind == "junk":
        return draw(st.sampled_from([b"junk", b"8=FIX.4.2\x019=5\x0135=0\x0110=000\x01", b"=\x01"]))
    whole = framed(body)
    if kind == "cut":  # a message that never ends
        return whole[: draw(st.integers(0, len(whole)))]
    return whole


CHAOS = ["ok"] * 6 + ["zeros", "sum", "badsum", "len", "junk", "cut"]
MOSTLY_GOOD = ["ok"] * 20 + ["zeros", "sum"]


@st.composite
def streams(draw: st.DrawFn, odds: int = 9, kinds: list[str] = CHAOS) -> tuple[bytes, list[int]]:
    shapes = draw(st.lists(a_body(odds), min_size=1, max_size=3))
    shapes += [b for b in BODIES[: draw(st.integers(0, 2))]]
    stream = b"".join(draw(st.lists(a_piece(shapes, kinds), min_size=1, max_size=12)))
    cuts = draw(st.lists(st.integers(0, max(len(stream) - 1, 0)), max_size=4))
    return stream, cuts


@settings(max_examples=150, deadline=None)
@given(streams())
def test_any_stream_in_any_reads_parses_as_its_frames_one_by_one(
    case: tuple[bytes, list[int]],
) -> None:
    stream, cuts = case
    fast, slow = both(stream, cuts)
    assert fast == slow


@settings(max_examples=150, deadline=None)
@given(streams(odds=40, kinds=MOSTLY_GOOD))
def test_mostly_good_streams_in_any_reads_parse_as_their_frames_one_by_one(
    case: tuple[bytes, list[int]],
) -> None:
    """Streams that mostly take the run path (every read's frames good, few odd fields)."""
    stream, cuts = case
    fast, slow = both(stream, cuts)
    assert fast == slow


@settings(max_examples=80, deadline=None)
@given(streams(), st.integers(1, 3))
def test_a_shape_table_filling_and_clearing_mid_run_changes_nothing(
    case: tuple[bytes, list[int]], size: int
) -> None:
    stream, cuts = case
    stream = stream + b"".join(framed(BODIES[0] + field(t, "v")) for t in range(5000, 5005))
    stream += stream  # every shape again, after the table cleared
    with patch.object(fix, "_SHAPE_TAGS", {}), patch.object(fix, "MAX_SHAPES", size):
        fast, slow = both(stream, cuts)
        assert len(fix._SHAPE_TAGS) <= size
    assert fast == slow


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from([*BODIES, b"35=0\x01", b"35=1\x01112=\x01"]), min_size=1, max_size=6),
    st.sampled_from([b"", b"0", b"0000000000000000000", b"00000000000000000001"]),
    st.integers(20, 400),
    st.lists(st.integers(0, 2000), max_size=3),
)
def test_body_lengths_with_leading_zeros_and_message_limits(
    bodies: list[bytes], zeros: bytes, limit: int, cuts: list[int]
) -> None:
    """Only FrameError ever escapes; it escapes from both paths at the same point."""
    stream = b"".join(framed(b, length=zeros + b"%d" % len(b)) for b in bodies)
    fast, slow = both(stream, cuts, limit)
    assert fast == slow


# -- pinned cases ----------------------------------------------------------------------------


def fast_and_alone(stream: bytes) -> tuple[list[FixMessage | Garbled], list[FixMessage | Garbled]]:
    reader = FixReader(max_message_bytes=1 << 20)
    reader.feed(stream)
    fast = reader.messages()
    assert reader.pending() == 0
    with patch.object(fix, "_parse_run", one_by_one):
        alone = FixReader(max_message_bytes=1 << 20)
        alone.feed(stream)
        slow = alone.messages()
    return fast, slow


def assert_same(stream: bytes) -> list[FixMessage | Garbled]:
    fast, slow = fast_and_alone(stream)
    assert [described(m) for m in fast] == [described(m) for m in slow]
    return fast


def test_odd_frames_among_good_ones_in_one_run() -> None:
    good = framed(BODIES[0])
    odd = [
        framed(b""),  # 9=0
        framed(b"", length=b"00"),
        framed(BODIES[0], length=b"000%d" % len(BODIES[0])),
        framed(BODIES[0] + field(58, "z" * 10_000)),  # BodyLength > 9999, sum over 256 bytes
        framed(BODIES[0] + b"10=123\x01"),  # tag 10 inside the body
        framed(BODIES[0].replace(b"35=D", b"0035=D", 1)),
        framed(BODIES[0].replace(b"49=A", b"0049=A", 1)),  # same names but one, zero-padded
        framed(BODIES[0].replace(b"49=A", b"=A", 1)),  # empty tag name, alternation holds
        framed(BODIES[0].replace(b"49=A", b"49=", 1)),  # empty value
        framed(BODIES[0].replace(b"49=A", b"49=\xff\x80", 1)),
        framed(BODIES[0].replace(b"49=A", b"4\xb9=A", 1)),
        framed(BODIES[0].replace(b"49=A", b"12345=A", 1)),
        framed(BODIES[0], digits=b"256"),
        framed(BODIES[0], digits=b"999"),
        framed(b"49=A\x0135=D\x01"),  # MsgType not first
    ]
    for piece in odd:
        fast = assert_same(good + piece + good + piece + good)
        assert isinstance(fast[0], FixMessage) and type(fast[0].tags) is tuple  # the run path
        assert_same(piece)
        assert_same(piece + good)


def test_a_shape_without_tags_then_the_same_shape_again() -> None:
    """``_shape_tags`` gives None (a tag past 9999): the next message of that shape, and a
    known shape after it, still parse as alone."""
    none = framed(b"35=D\x0112345=x\x01")
    good = framed(BODIES[2])
    fast = assert_same(none + none + good + none + good + good)
    assert [type(m).__name__ for m in fast] == ["FixMessage"] * 6


def test_a_garbled_message_in_the_read_then_the_same_shape() -> None:
    good = framed(BODIES[1])
    assert_same(good + framed(BODIES[1], digits=b"000") + good)
    assert_same(good + b"junk" + good + good)
    assert_same(framed(BODIES[1], length=b"1") + good + good)


def test_a_partial_message_carried_into_the_next_read() -> None:
    good = framed(BODIES[0])
    other = framed(BODIES[3])
    stream = good + other + good + other + good
    for cut in range(len(stream)):
        fast, slow = both(stream, [cut, cut + len(good) // 2])
        assert fast == slow
        assert fast[1][-1] == 0


def test_thousands_of_messages_in_one_read() -> None:
    shapes = [framed(b) for b in BODIES] + [framed(BODIES[0] + field(t, "v")) for t in (1, 58)]
    stream = b"".join(shapes[(k * 7) % len(shapes)] for k in range(6000))
    fast = assert_same(stream)
    assert len(fast) == 6000 and all(isinstance(m, FixMessage) for m in fast)


def test_a_run_message_behaves_as_one_made_with_of() -> None:
    fast = assert_same(framed(BODIES[1]) + framed(BODIES[1]))
    for m in fast:
        assert isinstance(m, FixMessage) and type(m.tags) is tuple
        made = FixMessage.of(m.raw, list(m.tags), list(m.values))
        assert m == FixMessage(m.raw, tuple(made.tags), made.values, made.fields, made.msg_type)
        assert repr(m) == repr(made) and m.pairs == made.pairs
        for tag in (*m.tags, 0, 10, 9999, -1):
            assert m.get(tag) == made.get(tag)
            assert m.text(tag, "none") == made.text(tag, "none")
        assert dictionary.validate(m) == dictionary.first_fault(m) == dictionary.first_fault(made)
        assert dictionary.validate(made) == dictionary.validate(m)


def test_an_over_long_body_length_raises_frame_error_only() -> None:
    for length in (b"100000", b"9" * 19, b"9" * 30, b"0" * 18 + b"99999"):
        for prefix in (b"", framed(BODIES[0])):
            reader = FixReader(max_message_bytes=512)
            reader.feed(prefix + b"8=FIX.4.4\x019=" + length + b"\x01" + b"35=D\x01" * 10)
            with pytest.raises(FrameError):
                reader.messages()


def test_a_repeated_msg_type_gives_the_msg_type_parsed_alone() -> None:
    stream = framed(b"35=D\x0149=A\x0135=0\x01")
    (fast,), (slow,) = fast_and_alone(stream)
    assert isinstance(fast, FixMessage) and isinstance(slow, FixMessage)
    assert fast.msg_type == slow.msg_type
