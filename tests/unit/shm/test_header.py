"""A ring's header is validated on attach; every mismatch names both values."""

from __future__ import annotations

import pytest

from shm import HeaderMismatchError, Ring, ShmError, StructCodec
from shm import header as h
from shm.region import Region, segment_name


def test_attach_checks_slot_size_schema_and_capacity(instance: str) -> None:
    Ring.create(instance, "r", StructCodec("2q", schema_id=7), capacity=8)
    with pytest.raises(HeaderMismatchError, match=r"slot_size is 24, expected 32"):
        Ring.attach(instance, "r", StructCodec("3q", schema_id=7))
    with pytest.raises(HeaderMismatchError, match=r"schema_id is 7, expected 8"):
        Ring.attach(instance, "r", StructCodec("2q", schema_id=8))
    with pytest.raises(HeaderMismatchError, match=r"capacity is 8, expected 16"):
        Ring.attach(instance, "r", StructCodec("2q", schema_id=7), capacity=16)
    assert Ring.attach(instance, "r", StructCodec("2q", schema_id=7), capacity=8).capacity == 8


def test_attach_rejects_foreign_or_newer_segments(instance: str) -> None:
    region = Region.create(instance, "junk", 4096)
    region.buf[0:8] = b"NOTARING"
    with pytest.raises(HeaderMismatchError, match=r"magic is b'NOTARING', expected"):
        Ring.attach(instance, "junk", StructCodec("2q"))
    ring = Ring.create(instance, "r", StructCodec("2q"), capacity=4)
    ring.region.buf[8:12] = (h.LAYOUT_VERSION + 1).to_bytes(4, "little")
    with pytest.raises(HeaderMismatchError, match=r"layout_version is 2, expected 1"):
        Ring.attach(instance, "r", StructCodec("2q"))


def test_geometry_and_names_are_checked(instance: str) -> None:
    with pytest.raises(ValueError, match="capacity 6 is not a power of two"):
        Ring.create(instance, "r", StructCodec("2q"), capacity=6)
    with pytest.raises(ValueError, match=r"max_consumers 0 is outside 1\.\.62"):
        Ring.create(instance, "r", StructCodec("2q"), capacity=8, max_consumers=0)
    with pytest.raises(ValueError, match="name 'a/b' must be"):
        segment_name(instance, "a/b")
    with pytest.raises(ShmError, match="does not exist"):
        Ring.attach(instance, "missing", StructCodec("2q"))
    Ring.create(instance, "r", StructCodec("2q"), capacity=8)
    with pytest.raises(ShmError, match="already exists"):
        Ring.create(instance, "r", StructCodec("2q"), capacity=8)


def test_instances_do_not_collide(instance: str) -> None:
    one = Ring.create(instance, "r", StructCodec("2q"), capacity=8, consumers=["c"])
    two = Ring.create(instance + "b", "r", StructCodec("2q"), capacity=8, consumers=["c"])
    try:
        one.producer().publish((1, 1))
        assert two.consumer("c").poll() is None
        assert one.consumer("c").poll() == (1, 1)
    finally:
        two.unlink()
