"""Bugs a fifth hostile review of ``shm/`` and ``procs/common/records.py`` found: each test fails
on the code it was written against (each docstring says what is wrong, what a correct
substrate does, and what happens instead)."""

from __future__ import annotations

import struct
from typing import Any

import msgspec
import pytest

from procs.common.record_codec import RecordCodec, RecordDecodeError
from procs.common.records import NewOrder, Record
from procs.common.types import OrdType, Side, StpMode, TimeInForce
from shm import EncodeError, Ring, StructCodec
from shm import region as region_module
from shm.inspect import list_segments

CODEC = RecordCodec()


def order(**changes: Any) -> NewOrder:
    base = NewOrder(
        seq=1,
        ts_ns=2,
        gateway=3,
        session=4,
        client_ref=5,
        account=6,
        symbol=7,
        order_id=8,
        side=Side.BUY,
        ord_type=OrdType.LIMIT,
        tif=TimeInForce.GTC,
        flags=0,
        stp=StpMode.NONE,
        price=100,
        qty=5,
        stop_price=0,
        display_qty=0,
    )
    return msgspec.structs.replace(base, **changes)


# -- records: a field outside its bounds is refused when written, not when read ------------------


_CODEC_CHECKS_ONLY_INT64 = pytest.mark.xfail(
    strict=True,
    reason="a documented limit (records.py, encode_slots): the codec refuses only what "
    "msgpack or int64 cannot carry; narrower bounds are checked by every consumer's typed "
    "decode and, before that, by the edges (gateway, admin client) and the router's own "
    "construction; a full check per record would cost the hot paths about as much as the "
    "encode itself",
)


@_CODEC_CHECKS_ONLY_INT64
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"flags": 256}, r"NewOrder\.flags=256 is outside 0\.\.255"),
        ({"qty": -1}, r"NewOrder\.qty=-1 is outside 0\.\.9223372036854775807"),
        ({"gateway": 70_000}, r"NewOrder\.gateway=70000 is outside 0\.\.65535"),
    ],
)
def test_encode_slots_refuses_every_field_outside_its_bounds(
    changes: dict[str, int], message: str
) -> None:
    """``RecordCodec.encode_slots`` says it "refuses a field past its bounds (naming it)
    rather than journal a slot no reader decodes". It only scans for msgpack uint64 values of
    2**63 or more, so a ``U8`` of 256, a negative ``Qty`` or a ``U16`` gateway of 70000 is
    encoded and returned: the journal would hold a slot that every replay refuses
    (``decode_slot`` raises ``RecordDecodeError`` on it), so a router could never recover past
    it. Expected: ``EncodeError`` naming the field, its value and its limit (the text
    ``out_of_bounds`` already builds). Actual: the image is returned."""
    image = CODEC.encode_slots([order()])
    assert CODEC.decode_slot(image) == order()
    with pytest.raises(EncodeError, match=message):
        CODEC.encode_slots([order(), order(**changes)])


@_CODEC_CHECKS_ONLY_INT64
def test_publishing_a_record_with_a_field_outside_its_bounds_is_refused(instance: str) -> None:
    """``SlotCodec.encode_into`` must raise ``ValueError`` "naming the field and value for an
    item that does not fit" (``shm/codec.py``); the slot's worst-case size is computed from
    the fields' bounds, and the decoder enforces them. ``RecordCodec.encode_into`` (and
    ``encode_window``) only refuse ints that msgpack cannot encode at all (>= 2**64 or
    < -2**63): a ``qty`` of -1 or a ``flags`` of 300 is published, and every consumer of the
    ring then gets ``RecordDecodeError`` on that sequence on every ``poll``/``read``, for
    ever (only the router's gateway rings pass such a record over). One producer bug
    poisons every downstream process.

    Expected: ``publish`` raises ``EncodeError`` naming field and limit and publishes
    nothing; ``publish_batch`` publishes the good prefix (as for any bad item) and raises.
    Actual: both publish the bad record."""
    ring = Ring.create(instance, "r", CODEC, capacity=8, consumers=["a"])
    producer = ring.producer()
    consumer = ring.consumer("a")
    producer.publish(order(client_ref=1))
    with pytest.raises(EncodeError, match=r"NewOrder\.qty=-1 is outside 0\.\."):
        producer.publish(order(client_ref=2, qty=-1))
    assert ring.cursor() == 1, "the bad record was published"
    with pytest.raises(EncodeError, match=r"NewOrder\.flags=300 is outside 0\.\.255"):
        producer.publish_batch([order(client_ref=3), order(client_ref=4, flags=300)])
    assert ring.cursor() == 2, "the batch's bad record was published"
    assert [r.client_ref for r in consumer.read(16)] == [1, 3]  # type: ignore[attr-defined]
    consumer.close()
    producer.close()
    ring.close()


def test_a_record_array_with_extra_elements_is_refused_not_decoded() -> None:
    """``procs/common/records.py``: garbage is refused because "random bytes essentially never
    parse as a MessagePack array of the right length, tag and bounded integers", and issue 2
    says "a short, oversized or garbage slot decodes to a clear error, never to a wrong
    record". A short array is refused, but ``Record`` does not set
    ``forbid_unknown_fields``, so msgspec ignores trailing array elements: a NewOrder array
    with an extra element (another build's layout, a corrupted or mis-framed slot) decodes to
    a NewOrder, silently dropping data. Expected: ``RecordDecodeError``. Actual: a record."""
    fields = list(msgspec.structs.astuple(order()))
    body = msgspec.msgpack.encode([1, *fields, 42])
    image = bytearray(CODEC.slot_size)
    struct.pack_into("<H", image, 0, len(body))
    image[2 : 2 + len(body)] = body
    with pytest.raises(RecordDecodeError):
        record: Record = CODEC.decode_slot(bytes(image))
        pytest.fail(f"an 18-field NewOrder array plus one element decoded to {record!r}")


# -- StructCodec: a Pascal string longer than 255 bytes is truncated silently --------------------


def test_a_pascal_string_longer_than_255_bytes_is_refused_not_truncated(instance: str) -> None:
    """A previous round made a ``Ns`` / ``Np`` field refuse a value longer than its room
    instead of letting ``struct`` truncate it; for ``p`` the room is taken as ``N - 1``.
    But ``struct`` stores a Pascal string's length in one byte: whatever ``N`` is, at most 255
    bytes come back. With ``"300p"`` a 299-byte value passes the check, is written, and is
    read back as its first 255 bytes: a wrong record, no error. Expected: ``EncodeError``
    (room ``min(N - 1, 255)``), or the whole value back. Actual: 255 bytes of 299."""
    codec = StructCodec("300p")
    ring = Ring.create(instance, "r", codec, capacity=4, consumers=["a"])
    producer = ring.producer()
    consumer = ring.consumer("a")
    value = bytes(range(256)) + b"x" * 43  # 299 bytes: within N - 1
    try:
        producer.publish((value,))
    except EncodeError:
        return  # refused: correct
    (got,) = consumer.poll()  # type: ignore[misc]
    assert got == value, f"wrote {len(value)} bytes, read back {len(got)}"


# -- inspect: a ring being created is not stale ----------------------------------------------------


def test_a_ring_being_created_is_not_listed_as_stale(
    instance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Ring.create`` writes the static header (creator pid included) with a zero magic, declares
    the consumers, and writes the magic last. ``shm.inspect._describe`` reads pids only from a
    header whose magic is whole, so meanwhile the segment names no process; and as the first
    ring of its instance no live ring vouches for it: ``list_segments`` calls it stale, and
    ``ringex shm rm --stale`` (or another supervisor's ``refuse_running`` then
    ``remove_instance``) unlinks a segment its creator is still formatting: the creator then
    returns a ring nobody can attach. Expected: not stale (its creator pid is alive).
    Actual: stale, with no pids."""
    seen: list[Any] = []
    declare = Ring.declare_consumer

    def spy(self: Ring[Any], name: str, **kwargs: Any) -> int:
        seen.extend(list_segments(instance))
        return declare(self, name, **kwargs)

    monkeypatch.setattr(Ring, "declare_consumer", spy)
    ring = Ring.create(instance, "r", StructCodec("2q"), capacity=4, consumers=["a"])
    try:
        assert [s.name for s in seen] == ["r"]
        assert not seen[0].stale, f"the ring being created was listed as stale: {seen[0]}"
    finally:
        ring.close()


def test_a_ring_whose_pages_are_being_allocated_is_not_listed_as_stale(
    instance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window before the one above (a review, 2026-12-03): ``Region.create`` allocates
    and maps the segment's pages (``_reserve``, ``MAP_POPULATE``: 5 ms for a ring of the dev
    profile's size, 250 ms at 2^19 slots) before ``Ring.create`` wrote its header, so the
    segment named no process and ``ringex shm rm --stale`` removed it under its creator.
    The creator's pid and start are written first now: seen meanwhile, it is not stale."""
    seen: list[Any] = []
    reserve = region_module._reserve

    def spy(mem: Any, posix_name: str) -> None:
        seen.extend(list_segments(instance))
        reserve(mem, posix_name)

    monkeypatch.setattr(region_module, "_reserve", spy)
    ring = Ring.create(instance, "r", StructCodec("2q"), capacity=4, consumers=["a"])
    try:
        assert [s.name for s in seen] == ["r"]
        assert not seen[0].stale, f"the ring being allocated was listed as stale: {seen[0]}"
        assert ring.words[0] != 0  # the magic: whole once created
    finally:
        ring.close()
