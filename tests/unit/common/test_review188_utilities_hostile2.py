"""Review 188, part 2: the records' codec and layout, topology, stats, events_after,
published_through and quiet_log fed edge values (test_review188_utilities_hostile.py
has the review's account: what it looked at, the faults found and fixed, the leads)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.schema import RingexConfig
from procs.common import published_through
from procs.common import topology as topo
from procs.common.events_after import events_after
from procs.common.quiet_log import QuietFilter
from procs.common.record_codec import RecordCodec, RecordDecodeError
from procs.common.record_layout import int_bounds, max_encoded_size
from procs.common.records import RECORD_TYPES, BookLevel, NewOrder, Record
from procs.common.result_codes import ResultCode
from procs.common.stats import (
    ROUTER_PAGE,
    SUM_CAP_NS,
    LatencyHistogram,
    gateway_page,
    matcher_page,
)
from procs.common.types import MAX_CLIENT_ID, Side, client_id_of
from shm.errors import EncodeError
from tests.unit.common.test_review188_utilities_hostile import (
    BOUNDED,
)

# -- record_codec.py, record_layout.py, records.py, types.py ---------------------------------------

CODEC = RecordCodec()


def at(cls: type[Record], values: dict[str, int], client_id: bytes = b"") -> Record:
    """A ``cls`` with ``values`` for its integer fields, ``client_id`` for its bytes."""
    fields: dict[str, Any] = {f: client_id for f in cls.__struct_fields__ if f not in values}
    return cls(**values, **fields)


@pytest.mark.parametrize("cls", RECORD_TYPES, ids=lambda c: c.__name__)
def test_every_field_at_its_bounds_round_trips_and_one_past_is_never_decoded(
    cls: type[Record],
) -> None:
    bounds = int_bounds(cls)
    for pick in (0, 1):
        record = at(cls, {n: (lo, hi)[pick] for n, lo, hi in bounds}, b"\xff" * MAX_CLIENT_ID)
        assert len(msgspec.msgpack.encode(record)) <= max_encoded_size(cls) <= CODEC.capacity_body
        assert CODEC.decode_slot(CODEC.encode_slot(record)) == record
    low = {n: lo for n, lo, _ in bounds}
    for name, lo, hi in bounds:
        for value in (lo - 1, hi + 1):
            record = at(cls, {**low, name: value})
            try:
                image = CODEC.encode_slot(record)
            except EncodeError as exc:
                assert f"{name}={value}" in str(exc)
                continue
            with pytest.raises(RecordDecodeError, match=name):
                CODEC.decode_slot(image)
    if "client_id" in cls.__struct_fields__:
        for wrong in ("abc", b"x" * (MAX_CLIENT_ID + 1)):
            image = CODEC.encode_slot(at(cls, low, wrong))  # type: ignore[arg-type]
            with pytest.raises(RecordDecodeError, match="client_id"):
                CODEC.decode_slot(image)


def test_a_window_names_the_item_that_does_not_encode() -> None:
    good = at(NewOrder, {n: lo for n, lo, _ in int_bounds(NewOrder)})
    bad = msgspec.structs.replace(good, qty=2**64)
    buf = bytearray(CODEC.slot_size * 3)
    with pytest.raises(
        EncodeError, match=r"item 1 of the window: NewOrder.qty=18446744073709551616"
    ):
        CODEC.encode_window(buf, 0, [good, bad, good], 0)
    with pytest.raises(EncodeError, match=r"NewOrder\.qty=9223372036854775808"):
        CODEC.encode_slots([good, msgspec.structs.replace(good, qty=2**63)])


@BOUNDED
@given(st.binary(max_size=64))
def test_client_id_of_keeps_only_1_to_36_printable_ascii_bytes(value: bytes) -> None:
    kept = client_id_of(value)
    printable = 1 <= len(value) <= MAX_CLIENT_ID and all(0x20 <= b <= 0x7E for b in value)
    assert kept == (value if printable else b"")


def test_every_result_code_has_its_stage() -> None:
    stages = {"ok": range(0, 1), "gateway": range(1000, 2000), "router": range(2000, 3000)}
    stages["matcher"] = range(3000, 4000)
    for code in ResultCode:
        assert code.value in stages[code.stage], code


# -- topology.py, stats.py ---------------------------------------------------------------------

NAMES = st.from_regex(r"\A[A-Za-z0-9_-]{1,24}\Z").filter(lambda s: s not in ("m1",))
EDGY = st.sampled_from(["gw1", "gw0", "gw01", "router", "matcher", "marketdata", "gw", "GW1",
                        "a-in", "a-out", "a", "gw1-cmd", "m1-in", "stats", "exchange"])  # fmt: skip


@BOUNDED
@given(
    st.lists(st.one_of(EDGY, NAMES), min_size=1, max_size=2, unique=True),
    st.lists(st.tuples(st.one_of(EDGY, NAMES), st.integers(0, 65_536)), max_size=4),
    st.booleans(),
)
def test_every_config_accepted_has_unique_rings_pages_and_consumers(
    matchers: list[str], gateways: list[tuple[str, int]], marketdata: bool
) -> None:
    symbols = [["BTC-USD", "ETH-USD"]] if len(matchers) == 1 else [["BTC-USD"], ["ETH-USD"]]
    doc = {
        "matchers": [{"name": m, "symbols": s} for m, s in zip(matchers, symbols, strict=True)],
        "gateways": [
            {"name": name, "id": gid, "port": 20_000 + i} for i, (name, gid) in enumerate(gateways)
        ],
        "marketdata": {"enabled": marketdata},
    }
    try:
        cfg = msgspec.convert(doc, RingexConfig)
    except (msgspec.ValidationError, ValueError):
        return
    names = [spec.name for spec in topo.rings(cfg)]
    assert len(names) == len(set(names)), names
    assert all(1 <= len(n) <= 48 for n in names)
    assert all(c.isascii() and (c.isalnum() or c in "_-") for n in names for c in n)
    pages = [ROUTER_PAGE, *(gateway_page(g.id) for g in cfg.gateways)]
    pages += [matcher_page(m.name) for m in cfg.matchers]
    assert len(pages) == len(set(pages)), pages
    for spec in topo.rings(cfg):
        assert len(spec.consumers) == len(set(spec.consumers)), spec


@pytest.mark.parametrize(
    "ns", [-(2**63), -1, 0, 1, 10_000, SUM_CAP_NS, SUM_CAP_NS + 1, 2**63 - 1, 2**200]
)
def test_a_latency_sample_of_any_size_keeps_the_sum_within_a_cap(ns: int) -> None:
    histogram = LatencyHistogram()
    histogram.record(ns)
    assert 0 <= histogram.sum_ns <= SUM_CAP_NS
    assert histogram.count == 1


# -- events_after.py ---------------------------------------------------------------------------


@BOUNDED
@given(
    st.lists(st.integers(0, 4), min_size=1, max_size=8),  # events per command, seqs 1..
    st.data(),
)
def test_events_after_any_position_over_any_batching_are_exactly_the_rest(
    per_command: list[int], data: st.DataObject
) -> None:
    stream: list[Record] = []
    for seq, count in enumerate(per_command, start=1):
        stream += [BookLevel(seq, 0, 1, Side.BUY, 0, 0, k) for k in range(count)]
    seq = data.draw(st.integers(1, len(per_command)), label="seq")
    part = data.draw(st.one_of(st.none(), st.integers(0, per_command[seq - 1])), label="part")
    before = sum(per_command[: seq - 1]) + (per_command[seq - 1] if part is None else part)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=4), label="cuts"))
    got: list[Record] = []
    left = part
    for lo, hi in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        kept, left = events_after(stream[lo:hi], seq, left)
        got += kept
    assert got == stream[before:]


# -- published_through.py, quiet_log.py --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [(b"12\n", 12), (b"", 0), (b"\x00" * 8, 0), (b"-5\n", 0), (b"\xd9\xa5\n", 0),
     (b"1 2\n", 0), (b"9223372036854775807\n", 2**63 - 1)],
)  # fmt: skip
def test_published_reads_what_it_can_and_zero_otherwise(
    tmp_path: Path, text: bytes, want: int
) -> None:
    (tmp_path / published_through.FILE).write_bytes(text)
    assert published_through.read(tmp_path) == want


def test_published_reads_as_zero_for_a_number_of_5000_digits(tmp_path: Path) -> None:
    """Was (fixed: 19 digits at most)."""
    (tmp_path / published_through.FILE).write_bytes(b"9" * 5000 + b"\n")
    assert published_through.read(tmp_path) == 0


def record_of(message: str) -> logging.LogRecord:
    return logging.LogRecord("ringex.review188", logging.WARNING, __file__, 1, message, None, None)


@pytest.mark.parametrize("dropped", [1, 10**6])
def test_a_quiet_record_is_never_longer_than_max_chars(dropped: int) -> None:
    """Was (fixed: ``_cut`` never returns more than its limit)."""
    quiet = QuietFilter(burst=1, period_s=3600.0, max_chars=40)
    quiet.dropped = dropped
    record = record_of("z" * 1000)
    assert quiet.filter(record)
    assert len(record.getMessage()) <= 40, repr(record.getMessage())


@pytest.mark.parametrize("max_chars", [100, 300])
@pytest.mark.parametrize("dropped", [0, 1, 10**6])
@pytest.mark.parametrize("message", ["", "ü" * 10**5, "x" * 299, "y" * 10**6])
def test_a_quiet_record_keeps_within_max_chars_where_it_has_room(
    max_chars: int, dropped: int, message: str
) -> None:
    quiet = QuietFilter(burst=1, period_s=3600.0, max_chars=max_chars)
    quiet.dropped = dropped
    record = record_of(message)
    assert quiet.filter(record)
    assert len(record.getMessage()) <= max_chars
    assert not quiet.filter(record_of("next"))  # the burst is spent
