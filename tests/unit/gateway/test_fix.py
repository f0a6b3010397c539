"""The codec against simplefix: what one encodes the other parses, and framing faults."""

from __future__ import annotations

import simplefix  # ships no type information

from procs.gateway import dictionary
from procs.gateway.fix import FixMessage, FixReader, Garbled, field, frame, parse
from procs.gateway.instruments import format_units, to_units


def test_frame_matches_simplefix_and_parses_back() -> None:
    body = field(35, "D") + field(49, "A") + field(56, "B") + field(11, "x|y") + field(453, 0)
    raw = frame(body)
    p = simplefix.FixParser()
    p.append_buffer(raw)
    theirs = p.get_message()
    assert theirs is not None and theirs.get(11) == b"x|y"
    ours = parse(raw)
    assert isinstance(ours, FixMessage) and ours.fields[11] == b"x|y" and ours.msg_type == b"D"
    m = simplefix.FixMessage()
    m.append_pair(8, "FIX.4.4", header=True)
    m.append_pair(35, "D", header=True)
    m.append_pair(49, "A", header=True)
    m.append_pair(56, "B", header=True)
    m.append_pair(11, "x|y")
    m.append_pair(453, 0)
    assert bytes(m.encode()) == raw


def test_split_stream_garbage_and_checksum() -> None:
    raw = frame(field(35, "0") + field(49, "A"))
    reader = FixReader()
    out: list[FixMessage | Garbled] = []
    stream = b"junk" + raw + raw[:-2] + b"9\x01" + raw
    for k in range(0, len(stream), 3):
        reader.feed(stream[k : k + 3])
        out += reader.messages()
    kinds = [type(m).__name__ for m in out]
    runs = [k for i, k in enumerate(kinds) if i == 0 or kinds[i - 1] != k]  # junk may split
    assert runs == ["Garbled", "FixMessage", "Garbled", "FixMessage"]
    assert sum(isinstance(m, FixMessage) for m in out) == 2
    assert reader.pending() == 0


def test_group_and_header_order_validation() -> None:
    head = field(35, "D") + field(49, "A") + field(56, "B") + field(34, 2)
    head += field(52, "20240101-00:00:00.000")
    order = field(11, "c") + field(55, "X") + field(54, 1) + field(60, "20240101-00:00:00")
    order += field(40, 2)
    good = parse(frame(head + order + field(453, 1) + field(448, "p") + field(452, 3)))
    assert isinstance(good, FixMessage) and dictionary.validate(good) is None
    bad_count = parse(frame(head + order + field(453, 2) + field(448, "p")))
    assert isinstance(bad_count, FixMessage)
    fault = dictionary.validate(bad_count)
    assert fault is not None and (fault.reason, fault.tag) == (16, 453)
    late = parse(frame(head + order + field(43, "Y")))
    assert isinstance(late, FixMessage)
    fault = dictionary.validate(late)
    assert fault is not None and (fault.reason, fault.tag) == (14, 43)


def test_decimal_units() -> None:
    assert to_units(b"1.2500", 2) == 125
    assert to_units(b"1.255", 2) is None
    assert to_units(b"-0.5", 1) == -5
    assert format_units(-5, 2) == b"-0.05"
