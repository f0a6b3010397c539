"""Record encodings compared: a ``struct`` layout derived from the fields vs length-prefixed
msgspec MessagePack (what ``RecordCodec`` uses). Prints per-record encode/decode times and
sizes, checks that both decode back to the record, and writes ``var/bench/records.json``.

The numbers quoted in ``procs/common/record_codec.py`` come from this script.
"""

from __future__ import annotations

import argparse
import statistics
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

import msgspec

from procs.common.record_codec import RecordCodec
from procs.common.records import BookLevel, NewOrder, Record, Trade
from procs.common.types import OrdType, Side, StpMode, TimeInForce
from tests.bench.report import conclude

SAMPLES: dict[str, Record] = {
    "NewOrder": NewOrder(
        seq=123456,
        ts_ns=1_763_000_000_000_000_000,
        gateway=3,
        session=17,
        client_ref=99,
        account=1001,
        symbol=7,
        order_id=5551212,
        side=Side.BUY,
        ord_type=OrdType.LIMIT,
        tif=TimeInForce.GTC,
        flags=0,
        stp=StpMode.CANCEL_NEWEST,
        price=1_000_050,
        qty=25,
        stop_price=0,
        display_qty=0,
        client_id=b"6f1c2a9e-3b7d-4e5f-8a0b-1c2d3e4f5a6b",  # a UUID: the longest id a record holds
    ),
    "Trade": Trade(
        seq=123457,
        ts_ns=1_763_000_000_000_000_100,
        trade_id=77,
        symbol=7,
        price=1_000_050,
        qty=10,
        aggressor=Side.SELL,
        maker_order_id=5551212,
        maker_account=1001,
        maker_gateway=3,
        maker_leaves=15,
        taker_order_id=5551213,
        taker_account=1002,
        taker_gateway=1,
        taker_leaves=0,
    ),
    "BookLevel": BookLevel(
        seq=123458,
        ts_ns=1_763_000_000_000_000_200,
        symbol=7,
        side=Side.BUY,
        price=1_000_050,
        qty=15,
        count=1,
    ),
}


def struct_format(cls: type[Record]) -> str:
    """The tightest little-endian layout for ``cls``'s fields, tag byte first; a bytes field
    its longest (``max_length``), zero-padded, as a fixed-size layout must hold it."""
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    chars = ["B"]
    for f in info.fields:
        t = f.type
        if isinstance(t, msgspec.inspect.EnumType):
            chars.append("B")
        elif isinstance(t, msgspec.inspect.BytesType) and t.max_length is not None:
            chars.append(f"{t.max_length}s")
        elif isinstance(t, msgspec.inspect.IntType) and t.ge == 0 and t.le is not None:
            chars.append(
                "B" if t.le < 2**8 else "H" if t.le < 2**16 else "I" if t.le < 2**32 else "q"
            )
        else:
            chars.append("q")
    return "<" + "".join(chars)


def timed(fn: Callable[[], Any], n: int, rounds: int) -> float:
    """Median over ``rounds`` of the mean ns per call of ``fn``."""
    results = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for _ in range(n):
            fn()
        results.append((time.perf_counter_ns() - start) / n)
    return statistics.median(results)


def measure(
    name: str, record: Record, codec: RecordCodec, n: int, rounds: int
) -> dict[str, Any] | None:
    """Both encodings of ``record``, timed; ``None`` if either fails to round-trip."""
    cls = type(record)
    layout = struct.Struct(struct_format(cls))
    tag = cls.__struct_config__.tag
    astuple = msgspec.structs.astuple
    pack_into, unpack_from = layout.pack_into, layout.unpack_from
    view = memoryview(bytearray(codec.slot_size * 2))

    def s_enc() -> None:
        pack_into(view, 0, tag, *astuple(record))

    def s_dec_checked() -> Any:
        return msgspec.convert(unpack_from(view, 0), cls)

    def s_dec_raw() -> Any:
        return cls(*unpack_from(view, 0)[1:])

    def m_enc() -> None:
        codec.encode_into(view, codec.slot_size, record, 1)

    def m_dec() -> Any:
        return codec.decode_from(view, codec.slot_size)

    s_enc()
    m_enc()
    if not s_dec_checked() == s_dec_raw() == m_dec() == record:
        return None
    return {
        "record": name,
        "struct_encode_ns": timed(s_enc, n, rounds),
        "msgpack_encode_ns": timed(m_enc, n, rounds),
        "struct_decode_validated_ns": timed(s_dec_checked, n, rounds),
        "struct_decode_raw_ns": timed(s_dec_raw, n, rounds),
        "msgpack_decode_ns": timed(m_dec, n, rounds),
        "struct_bytes": layout.size,
        "msgpack_bytes": len(msgspec.msgpack.encode(record)),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", default="var/bench/records.json")
    args = ap.parse_args()

    codec = RecordCodec()
    rows = []
    checks: dict[str, bool] = {}
    print(
        f"{'record':10} {'struct enc':>10} {'msgpack enc':>11} {'struct dec*':>11} "
        f"{'struct raw':>10} {'msgpack dec':>11} {'bytes s/m':>10}"
    )
    for name, record in SAMPLES.items():
        row = measure(name, record, codec, args.n, args.rounds)
        checks[f"{name} round-trips"] = row is not None
        if row is None:  # written to the file too, as every bench's checks (review 65)
            print(f"FAILED: {name} does not round-trip", file=sys.stderr)
            continue
        rows.append(row)
        print(
            f"{name:10} {row['struct_encode_ns']:>8.0f}ns {row['msgpack_encode_ns']:>9.0f}ns "
            f"{row['struct_decode_validated_ns']:>9.0f}ns {row['struct_decode_raw_ns']:>8.0f}ns "
            f"{row['msgpack_decode_ns']:>9.0f}ns {row['struct_bytes']:>5}/{row['msgpack_bytes']}"
        )
    print(
        "* struct dec = unpack_from + msgspec.convert (validated); raw = + constructor, unchecked"
    )
    return conclude(args.out, {"rounds": args.rounds, "results": rows}, checks, [])


if __name__ == "__main__":
    sys.exit(main())
