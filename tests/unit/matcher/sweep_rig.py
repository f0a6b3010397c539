"""Shared by the inline sweep's review tests (``test_review9_*.py``): names for the enums, a
command builder for one symbol, and ``run``, which feeds the same commands to
``ReferenceBook`` and ``FastBook`` and checks that they agree after every one."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import msgspec

from procs.common.records import (
    AdminCommand,
    CancelOrder,
    MassCancel,
    NewOrder,
    Record,
    ReplaceOrder,
)
from procs.common.types import (
    AdminAction,
    DoneReason,
    OrdType,
    Side,
    StpMode,
    TimeInForce,
)
from procs.core.fast_book import FastBook
from procs.core.reference_book import ReferenceBook
from procs.core.symbols import SymbolSpec

BUY, SELL = Side.BUY, Side.SELL
GTC, IOC, FOK, DAY = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.DAY
LIMIT, MARKET, STOP, STOP_LIMIT = OrdType.LIMIT, OrdType.MARKET, OrdType.STOP, OrdType.STOP_LIMIT
FILLED, EXPIRED = DoneReason.FILLED, DoneReason.EXPIRED
NO_STP = StpMode.NONE
SPEC = SymbolSpec(symbol=5, tick=1, lot=1, min_qty=1, max_qty=1000, band_bps=500)
ENC = msgspec.msgpack.Encoder()


class Feed:
    """Builds commands with increasing seq for one symbol."""

    def __init__(self, symbol: int) -> None:
        self.symbol = symbol
        self.seq = itertools.count(1)

    def new(
        self,
        oid: int,
        side: Side,
        price: int,
        qty: int,
        *,
        account: int = 1,
        tif: TimeInForce = GTC,
        ord_type: OrdType = LIMIT,
        stp: StpMode = StpMode.NONE,
        stop: int = 0,
        display: int = 0,
        flags: int = 0,
        symbol: int | None = None,
    ) -> NewOrder:
        s = next(self.seq)
        sym = self.symbol if symbol is None else symbol
        return NewOrder(
            s, s * 10, 2, 30 + account, 1000 + s, account, sym, oid,
            side, ord_type, tif, flags, stp, price, qty, stop, display,
        )  # fmt: skip

    def replace(
        self, oid: int, price: int, qty: int, *, account: int = 1, symbol: int | None = None
    ) -> ReplaceOrder:
        s = next(self.seq)
        sym = self.symbol if symbol is None else symbol
        return ReplaceOrder(s, s * 10, 4, 40 + account, 2000 + s, account, sym, oid, price, qty)

    def cancel(self, oid: int, *, account: int = 1, symbol: int | None = None) -> CancelOrder:
        s = next(self.seq)
        sym = self.symbol if symbol is None else symbol
        return CancelOrder(s, s * 10, 4, 40 + account, 3000 + s, account, sym, oid)

    def admin(self, action: AdminAction, symbol: int | None = None) -> AdminCommand:
        s = next(self.seq)
        return AdminCommand(s, s * 10, action, self.symbol if symbol is None else symbol, s)

    def mass(self, account: int = 0) -> MassCancel:
        s = next(self.seq)
        return MassCancel(s, s * 10, 2, 9, 4000 + s, account, self.symbol)


def run(
    spec: SymbolSpec, commands: Sequence[Record], every: int = 1
) -> tuple[list[list[Record]], FastBook]:
    """Each command through both books: identical events (and bytes) after every one; valid
    state and equal hashes after every one too, or every ``every``-th and the last 20 (each
    check walks the whole book: a long build-up is checked along the way, its end closely).
    Returns the fast book's events per command, and the fast book."""
    ref, fast = ReferenceBook(spec), FastBook(spec)
    out: list[list[Record]] = []
    closely = len(commands) - 20
    for i, cmd in enumerate(commands):
        want = ref.execute(cmd)
        got = fast.execute(cmd)
        assert got == want, f"command {i} {cmd!r}:\nreference {want!r}\nfast      {got!r}"
        assert [ENC.encode(e) for e in got] == [ENC.encode(e) for e in want]
        if i % every and i < closely:
            out.append(got)
            continue
        ref.validate_internal_state()
        fast.validate_internal_state()
        assert fast.state_hash() == ref.state_hash(), f"state differs after command {i}"
        assert (fast.next_trade_id, fast.last_price, fast.next_arrival) == (
            ref.next_trade_id,
            ref.last_price,
            ref.next_arrival,
        )
        out.append(got)
    return out, fast


def kinds(events: list[Record]) -> list[str]:
    return [type(e).__name__ for e in events]
