"""``NewOrder`` and ``ReplaceOrder`` carry the client's order id (``client_id``, 2026-11-27):
a trailing field with a default, so the journal of the build before it (its 128-byte slots
and its commands' schema id, ``LEGACY_SCHEMA_IDS``) is read by this one, each such command
with ``client_id`` b""; ``client_id_of`` keeps a FIX ClOrdID only as the records can carry it.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import msgspec
import pytest

from procs.common.journal import LEGACY_SCHEMA_IDS, JournalReader
from procs.common.journal_writer import JournalWriter
from procs.common.record_codec import RecordCodec
from procs.common.records import JOURNALED_TYPES, RECORD_TYPES, NewOrder, OrderRecord, ReplaceOrder
from procs.common.types import (
    MAX_CLIENT_ID,
    U8,
    OrdType,
    Price,
    Qty,
    Side,
    StpMode,
    TimeInForce,
    client_id_of,
)

CODEC = RecordCodec()


class _OldNewOrder(OrderRecord, tag=1, frozen=True):
    """``NewOrder`` as the build before client ids had it."""

    side: Side
    ord_type: OrdType
    tif: TimeInForce
    flags: U8
    stp: StpMode
    price: Price
    qty: Qty
    stop_price: Price
    display_qty: Qty


class _OldReplaceOrder(OrderRecord, tag=3, frozen=True):
    price: Price
    order_qty: Qty


_OLD = {NewOrder: _OldNewOrder, ReplaceOrder: _OldReplaceOrder}
# the names are the schema id's, and the old build's were these
_OldNewOrder.__name__, _OldReplaceOrder.__name__ = "NewOrder", "ReplaceOrder"
OLD_CODEC = RecordCodec([_OLD.get(t, t) for t in RECORD_TYPES])  # type: ignore[misc]
#: its journal's schema id, as that build stamped it (with msgspec's ``repr`` of the types)
OLD_JOURNAL_ID = 0x5245_E71E_F8B6


def _stamped_id(types: list[type[msgspec.Struct]]) -> int:
    """The schema id as builds before 2026-11-29 computed it: msgspec's ``repr`` of each
    field's type (``record_layout.describe`` since, whose ids alias these)."""
    parts = []
    for cls in types:
        info = msgspec.inspect.type_info(cls)
        assert isinstance(info, msgspec.inspect.StructType)
        fields = ",".join(f"{f.name}:{f.type!r}" for f in info.fields)
        parts.append(f"{cls.__name__}={cls.__struct_config__.tag}({fields})")
    return zlib.crc32(";".join(parts).encode()) | 0x5245 << 32


@pytest.mark.skipif(msgspec.__version__ != "0.23.0", reason="the reprs of msgspec 0.23.0")
def test_the_aliases_name_the_ids_the_builds_before_stamped() -> None:
    """``LEGACY_SCHEMA_IDS``' constants are what the old rendering made of the layouts: the
    commands before client ids, and this layout before ``describe`` (2026-11-29)."""
    old = [_OLD.get(t, t) for t in JOURNALED_TYPES]
    assert _stamped_id(old) == OLD_JOURNAL_ID  # type: ignore[arg-type]
    assert _stamped_id(list(JOURNALED_TYPES)) == 0x5245_2A09_3320
    assert {OLD_JOURNAL_ID, 0x5245_2A09_3320} <= LEGACY_SCHEMA_IDS[CODEC.journal_schema_id]


def _old_order(oid: int) -> _OldNewOrder:
    return _OldNewOrder(
        oid, 1_000 + oid, 1, 7, 90 + oid, 601, 1, oid, side=Side.BUY, ord_type=OrdType.LIMIT,
        tif=TimeInForce.GTC, flags=0, stp=StpMode.NONE, price=3_000_000, qty=10, stop_price=0,
        display_qty=0,
    )  # fmt: skip


def test_the_old_layout_is_the_one_the_alias_names() -> None:
    """The build before had 128-byte slots and the commands' id the alias keeps."""
    assert OLD_CODEC.slot_size == 128
    assert CODEC.slot_size == 152
    assert OLD_JOURNAL_ID in LEGACY_SCHEMA_IDS[CODEC.journal_schema_id]
    assert [t for t in JOURNALED_TYPES if t in _OLD] == [NewOrder, ReplaceOrder]


def test_an_older_builds_journal_is_read_with_no_client_ids(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    old = [_old_order(1), _OldReplaceOrder(2, 1_002, 1, 7, 92, 601, 1, 1, 3_000_500, 10)]
    with JournalWriter(
        directory, slot_size=OLD_CODEC.slot_size, schema_id=OLD_JOURNAL_ID,
        fsync="none",
    ) as journal:  # fmt: skip
        journal.append(1, OLD_CODEC.encode_slots(old), 2)
    reader = JournalReader(directory, slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id)
    got = [CODEC.decode_slot(image) for _, image in reader.entries()]
    assert [type(r) for r in got] == [NewOrder, ReplaceOrder]
    assert [r.client_id for r in got] == [b"", b""]  # type: ignore[attr-defined]
    assert msgspec.structs.astuple(got[0])[:-1] == msgspec.structs.astuple(old[0])
    # and this build appends its own segment after them, ids and all
    with JournalWriter(
        directory, slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id, fsync="none"
    ) as journal:
        new = msgspec.structs.replace(got[0], seq=3, order_id=3, client_id=b"mine-1")
        journal.append(3, CODEC.encode_slots([new]), 1)
    reader = JournalReader(directory, slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id)
    assert CODEC.decode_slot(dict(reader.entries())[3]) == new


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        (b"fx-1", b"fx-1"),
        (b"x" * MAX_CLIENT_ID, b"x" * MAX_CLIENT_ID),
        (b"x" * (MAX_CLIENT_ID + 1), b""),  # too long: not cut
        (b"a\x01b", b""),  # not printable
        ("é".encode(), b""),  # not ASCII
        (b"a b~", b"a b~"),  # FIX allows a space and any printable character
        (b"", b""),
    ],
)
def test_a_clordid_is_kept_only_as_a_record_can_carry_it(value: bytes, kept: bytes) -> None:
    assert client_id_of(value) == kept


def test_the_longest_client_id_fits_the_slot() -> None:
    order = msgspec.structs.replace(
        CODEC.decode_slot(CODEC.encode_slots([NewOrder(*msgspec.structs.astuple(_old_order(7)))])),
        client_id=b"~" * MAX_CLIENT_ID,
    )
    assert CODEC.decode_slot(CODEC.encode_slot(order)) == order
