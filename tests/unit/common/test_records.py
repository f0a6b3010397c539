"""Every record type round-trips through its slot; bad slots are clear errors, never records."""

from __future__ import annotations

import os
import struct
from enum import IntEnum
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from procs.common.journal import JournalFormatError, JournalReader
from procs.common.journal_writer import JournalWriter
from procs.common.record_codec import RecordCodec, RecordDecodeError
from procs.common.record_layout import describe, max_encoded_size, schema_id
from procs.common.records import JOURNALED_TYPES, RECORD_TYPES, Accepted, NewOrder, Record, Trade
from procs.common.result_codes import ResultCode
from procs.common.types import U64, OrdType, Side, StpMode, TimeInForce
from shm import Ring
from shm.errors import EncodeError

CODEC = RecordCodec()


def field_strategy(t: msgspec.inspect.Type) -> st.SearchStrategy[Any]:
    if isinstance(t, msgspec.inspect.IntType):
        low = t.ge if t.ge is not None else -(2**63)
        high = t.le if t.le is not None else 2**63 - 1
        return st.integers(low, high)
    if isinstance(t, msgspec.inspect.BytesType):
        return st.binary(max_size=t.max_length)
    assert isinstance(t, msgspec.inspect.EnumType)
    return st.sampled_from(list(t.cls))


def records(cls: type[Record]) -> st.SearchStrategy[Record]:
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    return st.tuples(*(field_strategy(f.type) for f in info.fields)).map(lambda v: cls(*v))


any_record = st.one_of(*(records(cls) for cls in RECORD_TYPES))


@settings(max_examples=300)
@given(any_record)
def test_every_record_round_trips_through_a_slot(record: Record) -> None:
    image = CODEC.encode_slot(record)
    assert len(image) == CODEC.slot_size
    decoded = CODEC.decode_slot(image)
    assert decoded == record and type(decoded) is type(record)
    for name in record.__struct_fields__:
        value = getattr(decoded, name)
        if isinstance(getattr(record, name), IntEnum):
            assert type(value) is type(getattr(record, name))  # enums come back as enums


# Each example makes its own ring (random name); the fixture only names the instance that the
# teardown sweeps, so sharing it across examples is what we want.
@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(any_record, min_size=1, max_size=40))
def test_records_round_trip_through_a_ring(instance: str, batch: list[Record]) -> None:
    ring = Ring.create(instance, f"h{os.urandom(4).hex()}", CODEC, capacity=64, consumers=["c"])
    try:
        producer, consumer = ring.producer(), ring.consumer("c")
        producer.publish_batch(batch)
        assert consumer.read(100) == batch
        producer.publish(batch[0])
        assert consumer.poll() == batch[0]
        producer.close()
        consumer.close()
    finally:
        ring.unlink()
        ring.close()


def test_worst_case_values_fit_the_computed_size() -> None:
    for cls in RECORD_TYPES:
        info = msgspec.inspect.type_info(cls)
        assert isinstance(info, msgspec.inspect.StructType)
        values: list[int | bytes] = []
        for f in info.fields:
            if isinstance(f.type, msgspec.inspect.IntType):
                values.append(f.type.ge if f.type.ge is not None else -(2**63))
            elif isinstance(f.type, msgspec.inspect.BytesType):
                values.append(b"x" * (f.type.max_length or 0))
            else:
                assert isinstance(f.type, msgspec.inspect.EnumType)
                values.append(max(member.value for member in f.type.cls))
        assert len(msgspec.msgpack.encode(cls(*values))) <= max_encoded_size(cls)
    assert CODEC.slot_size % 8 == 0 and CODEC.slot_size >= max(map(max_encoded_size, RECORD_TYPES))


def order(**changes: Any) -> NewOrder:
    base = NewOrder(
        0,
        1,
        2,
        3,
        4,
        5,
        6,
        7,
        Side.BUY,
        OrdType.LIMIT,
        TimeInForce.GTC,
        0,
        StpMode.NONE,
        100,
        10,
        0,
        0,
    )
    return msgspec.structs.replace(base, **changes)


def slot_with_body(body: bytes) -> bytes:
    image = bytearray(CODEC.slot_size)
    struct.pack_into("<H", image, 0, len(body))
    image[2 : 2 + len(body)] = body
    return bytes(image)


def test_an_out_of_range_field_names_the_field_and_value() -> None:
    fields = list(msgspec.structs.astuple(order()))
    fields[8] = 9  # side
    with pytest.raises(RecordDecodeError, match=r"NewOrder.side=9: Invalid enum value 9"):
        CODEC.decode_slot(slot_with_body(msgspec.msgpack.encode([1, *fields])))
    fields[8] = 1
    fields[14] = -5  # qty must be >= 0
    with pytest.raises(RecordDecodeError, match=r"NewOrder.qty=-5: Expected `int` >= 0"):
        CODEC.decode_slot(slot_with_body(msgspec.msgpack.encode([1, *fields])))


def test_short_oversized_and_garbage_slots_are_errors() -> None:
    image = CODEC.encode_slot(order())
    with pytest.raises(RecordDecodeError, match=f"slot is {CODEC.slot_size - 1} bytes"):
        CODEC.decode_slot(image[:-1])
    with pytest.raises(RecordDecodeError, match=f"slot is {CODEC.slot_size + 8} bytes"):
        CODEC.decode_slot(image + bytes(8))
    with pytest.raises(RecordDecodeError, match="declares a 0-byte record"):
        CODEC.decode_slot(bytes(CODEC.slot_size))
    with pytest.raises(RecordDecodeError, match="declares a 65535-byte record"):
        CODEC.decode_slot(b"\xff\xff" + bytes(CODEC.slot_size - 2))
    with pytest.raises(RecordDecodeError, match="truncated"):
        CODEC.decode_slot(slot_with_body(msgspec.msgpack.encode(order())[:-3]))
    with pytest.raises(RecordDecodeError, match="Invalid value 99"):
        CODEC.decode_slot(slot_with_body(msgspec.msgpack.encode([99, 1, 2])))
    rng = __import__("random").Random(1)
    for _ in range(2000):
        garbage = bytes(rng.getrandbits(8) for _ in range(CODEC.slot_size))
        with pytest.raises(RecordDecodeError):
            CODEC.decode_slot(garbage)


def test_a_record_that_does_not_fit_a_small_slot_is_refused() -> None:
    small = RecordCodec([Trade, NewOrder], slot_size=152)
    assert small.decode_slot(small.encode_slot(order())) == order()
    with pytest.raises(ValueError, match="cannot hold the largest record: it needs"):
        RecordCodec(slot_size=64)


def test_schema_id_is_stable_and_tracks_the_layout() -> None:
    assert schema_id(RECORD_TYPES) == schema_id(RECORD_TYPES)
    assert schema_id(RECORD_TYPES) != schema_id(RECORD_TYPES[:-1])
    assert CODEC.schema_id == RecordCodec().schema_id


def _plain(side: type[IntEnum]) -> type[msgspec.Struct]:
    fields = [("side", side), ("qty", U64), ("ref", bytes)]
    return msgspec.defstruct("Plain", fields, array_like=True, tag=1, frozen=True)


def test_schema_id_is_the_layout_rendered_by_ringex_not_by_msgspecs_repr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The journal's id outlives a msgspec upgrade: ``describe`` renders a field's type
    itself, so a ``repr`` msgspec changes (a field added to ``IntType``) changes no id, and
    this build's journal id is the one its journals carry (a constant: README's upgrade
    path and ``LEGACY_SCHEMA_IDS`` name it)."""
    before = (CODEC.schema_id, CODEC.journal_schema_id)
    monkeypatch.setattr(msgspec.inspect.IntType, "__repr__", lambda self: "IntType(new=1)")
    monkeypatch.setattr(msgspec.inspect.EnumType, "__repr__", lambda self: "EnumType()")
    assert (RecordCodec().schema_id, RecordCodec().journal_schema_id) == before
    assert CODEC.journal_schema_id == 0x5245_F1AD_AD78
    assert describe(msgspec.inspect.type_info(U64)) == f"int[0..{2**63 - 1}]"
    assert describe(msgspec.inspect.type_info(Side)) == "Side{BUY=1,SELL=2}"


def test_schema_id_sees_an_enum_member_renumbered() -> None:
    """msgspec's ``repr`` of an enum type names its class alone: a member renumbered (a
    journal's 2 read as another side) kept the id."""
    renumbered = IntEnum("Side", {"BUY": 1, "SELL": 3})  # type: ignore[misc]
    assert schema_id([_plain(Side)]) != schema_id([_plain(renumbered)])
    assert schema_id([_plain(Side)]) == schema_id([_plain(Side)])


class _NextAccepted(Accepted, tag=10, frozen=True):
    """``Accepted`` as a later build might extend it: one field more."""

    venue_ts_ns: U64 = 0


class _NextNewOrder(NewOrder, tag=1, frozen=True):
    """``NewOrder`` as a later build might extend it: one field more."""

    expire_ns: U64 = 0


def _next_build(old: type[Record], new: type[Record]) -> RecordCodec:
    return RecordCodec([new if t is old else t for t in RECORD_TYPES])


def test_a_journal_outlives_a_change_of_an_event_record(tmp_path: Path) -> None:
    """A journal's schema id is its commands' layout alone (``JOURNALED_TYPES``): a build
    whose events differ replays it; one whose commands differ refuses it, naming why."""
    assert set(JOURNALED_TYPES) < set(RECORD_TYPES)
    events = _next_build(Accepted, _NextAccepted)
    commands = _next_build(NewOrder, _NextNewOrder)
    assert events.slot_size == CODEC.slot_size
    assert events.schema_id != CODEC.schema_id  # a ring of the other build is refused
    assert events.journal_schema_id == CODEC.journal_schema_id
    assert commands.journal_schema_id != CODEC.journal_schema_id
    directory = tmp_path / "journal"
    with JournalWriter(
        directory, slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id, fsync="none"
    ) as journal:
        journal.append(1, CODEC.encode_slots([order()]), 1)
    reader = JournalReader(
        directory, slot_size=events.slot_size, schema_id=events.journal_schema_id
    )
    assert [events.decode_slot(image) for _, image in reader.entries()] == [order()]
    refused = JournalReader(
        directory, slot_size=commands.slot_size, schema_id=commands.journal_schema_id
    )
    with pytest.raises(JournalFormatError, match=r"schema_id is .* a build of other journaled"):
        list(refused.entries())


def test_result_codes_say_their_stage() -> None:
    assert ResultCode.OK.stage == "ok"
    assert ResultCode.INSUFFICIENT_BALANCE.stage == "router"
    assert ResultCode.POST_ONLY_WOULD_TAKE.stage == "matcher"
    assert ResultCode.UNKNOWN_SYMBOL.stage == "gateway"


def test_a_window_is_the_records_one_at_a_time_and_names_its_bad_slot() -> None:
    """``encode_window``/``decode_window`` inline ``encode_into``/``decode_from``: the same
    bytes, the same records, and a bad slot or item is named as the single form names it."""
    items: list[Record] = [order(), order(), order()]
    slot = CODEC.slot_size
    window = bytearray(slot * 3)
    CODEC.encode_window(window, 0, items, 7)
    one_by_one = bytearray(slot * 3)
    for k, item in enumerate(items):
        CODEC.encode_into(one_by_one, k * slot, item, 7)
    assert window == one_by_one
    view = memoryview(window)
    assert CODEC.decode_window(view, 0, 3) == items
    assert CODEC.decode_window(view, slot, 2) == items[1:]
    assert CODEC.decode_window(view, 0, 0) == []
    window[slot + 2 : slot + 4] = b"\x99\x99"  # the second record's body: not a record
    with pytest.raises(RecordDecodeError, match=r"Invalid value|Expected"):
        CODEC.decode_window(memoryview(window), 0, 3)
    window[slot : slot + 2] = b"\x00\x00"
    with pytest.raises(RecordDecodeError, match="declares a 0-byte record"):
        CODEC.decode_window(memoryview(window), 0, 3)
    huge = msgspec.structs.replace(order(), qty=2**64)  # past every int field's bound
    with pytest.raises(EncodeError, match=r"item 1 of the window: .*qty"):
        CODEC.encode_window(bytearray(slot * 3), 0, [order(), huge, order()], 7)
