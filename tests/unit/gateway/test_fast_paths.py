"""Each fast path of the codec agrees with the readable definition beside it, on valid
messages and on mutations of them: field splitting, validation, timestamps and checksums."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from procs.gateway import dictionary
from procs.gateway.fix import (
    FixMessage,
    Garbled,
    _parse_utc_timestamp_reference,
    checksum,
    field,
    frame,
    parse,
    parse_fields,
    parse_fields_reference,
    parse_utc_timestamp,
)

HEAD = field(35, "D") + field(49, "A") + field(56, "B") + field(34, 2)
HEAD += field(52, "20240101-00:00:00.000")
ORDER = field(11, "c") + field(55, "X") + field(54, 1) + field(60, "20240101-00:00:00")
ORDER += field(40, 2) + field(38, "1.5") + field(44, "100.25") + field(59, 1)
BODIES = [
    HEAD + ORDER,
    HEAD + ORDER + field(453, 1) + field(448, "p") + field(452, 3),
    field(35, "1") + field(49, "A") + field(56, "B") + field(34, 9) + field(52, "20240101-00:00:00")
    + field(112, "t"),
    field(35, "A") + field(49, "A") + field(56, "B") + field(34, 1) + field(52, "20240101-00:00:00")
    + field(98, 0) + field(108, 30) + field(141, "Y") + field(554, "pw"),
]  # fmt: skip
#: Bytes that matter to the parser and the validator, and some that do not.
NOISE = st.sampled_from([
    b"\x01", b"=", b"", b"0", b"1", b"9999", b"-", b"Y", b"x", b"35", b"43",
    b".", b"1.", b".5", b"\n", b" ", b"+", b"1" * 18, b"9" * 25, b"0" * 41,
])  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    body = draw(st.sampled_from(BODIES))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(body)))
        cut = draw(st.integers(0, 3))
        body = body[:at] + draw(NOISE) + body[at + cut :]
    return body if body.endswith(b"\x01") else body + b"\x01"


@settings(max_examples=400, deadline=None)
@given(mutated())
def test_parse_and_validate_agree_with_the_reference(body: bytes) -> None:
    tags, values = parse_fields(body)
    assert list(zip(tags, values, strict=True)) == parse_fields_reference(body)
    msg = parse(frame(body))
    if tags[:1] != [35]:  # garbled (FIX: MsgType must be the third field): never validated
        assert isinstance(msg, Garbled)
        return
    assert isinstance(msg, FixMessage)
    assert dictionary.validate(msg) == dictionary.first_fault(msg)


def test_valid_bodies_take_the_fast_paths() -> None:
    for body in BODIES:
        msg = parse(frame(body))
        assert isinstance(msg, FixMessage) and dictionary.validate(msg) is None


TIMESTAMP = st.builds(
    lambda date, h, m, s, frac: b"%s-%s:%s:%s%s" % (date, h, m, s, frac),
    st.sampled_from([b"20240101", b"20240229", b"20230229", b"20241301", b"2024 101", b"19700101"]),
    st.sampled_from([b"00", b"23", b"24", b"09", b"1x"]),
    st.sampled_from([b"00", b"59", b"60"]),
    st.sampled_from([b"00", b"59", b"60", b"61", b"62"]),
    st.sampled_from([b"", b".123", b".123456", b".123456789", b".12", b"x", b".12a"]),
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(TIMESTAMP, st.binary(max_size=24)))
def test_timestamps_agree_with_strptime(value: bytes) -> None:
    assert parse_utc_timestamp(value) == _parse_utc_timestamp_reference(value)


@given(st.binary(max_size=600))
def test_checksum_is_the_byte_sum(data: bytes) -> None:
    assert checksum(data) == sum(data) & 0xFF


def test_a_shape_proved_once_still_has_its_values_checked() -> None:
    """``validate`` remembers a clean shape (``_SHAPES``) and then checks only the values: a
    bad enum, a bad number or an empty value in a remembered shape is still the fault
    ``first_fault`` names."""
    clean = parse(frame(HEAD + ORDER))
    assert isinstance(clean, FixMessage) and dictionary.validate(clean) is None
    for bad in (ORDER.replace(b"54=1", b"54=9"), ORDER.replace(b"38=1.5", b"38=1.5x"),
                ORDER.replace(b"55=X", b"55=")):  # fmt: skip
        msg = parse(frame(HEAD + bad))
        assert isinstance(msg, FixMessage)
        fault = dictionary.validate(msg)
        assert fault is not None and fault == dictionary.first_fault(msg)


def test_the_shape_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dictionary, "_SHAPES", {})
    monkeypatch.setattr(dictionary, "MAX_SHAPES", 2)
    for body in (*BODIES[::2], HEAD + ORDER + field(1, "acct"), HEAD + ORDER):
        msg = parse(frame(body))
        assert isinstance(msg, FixMessage) and dictionary.validate(msg) is None
        assert 1 <= len(dictionary._SHAPES) <= 2
