"""Turn a neutral op stream (``tests.bench.matcher_mixes``) into ringex command records.

A MOVE becomes a ``ReplaceOrder`` with the new price and the order's remaining quantity,
which only a book that ran the stream so far knows: the conversion runs the stream once
through a ``FastBook`` (untimed) and reads the remaining quantity there. ``run_ops`` makes
each command inside the loop that executes it instead, reading the book under test, as each
peer's adapter makes its own order objects in its timed loop: the like-for-like figure.
"""

from __future__ import annotations

from collections.abc import Sequence

from procs.common.records import CancelOrder, NewOrder, Record, ReplaceOrder
from procs.common.types import OrdType, Side, StpMode, TimeInForce
from procs.core.book import Book
from procs.core.fast_book import FastBook
from procs.core.symbols import SymbolSpec
from tests.bench.matcher_mixes import CANCEL, MOVE, NEW, Levels, Op

SPEC = SymbolSpec(symbol=1, tick=1, lot=1, min_qty=1, max_qty=1_000_000)
ACCOUNT = 7
GATEWAY = 1


def to_records(ops: Sequence[Op], spec: SymbolSpec = SPEC) -> list[Record]:
    book = FastBook(spec)
    track = any(op[0] == MOVE for op in ops)  # only a MOVE needs the book's state
    out: list[Record] = []
    symbol = spec.symbol
    for seq, op in enumerate(ops, 1):
        kind, oid = op[0], op[1]
        head = (seq, seq, GATEWAY, 1, oid, ACCOUNT, symbol, oid)
        record: Record
        if kind == NEW:
            _, _, side, price, qty, ioc = op
            tif = TimeInForce.IOC if ioc else TimeInForce.GTC
            record = NewOrder(
                *head,
                side=Side(side),
                ord_type=OrdType.LIMIT,
                tif=tif,
                flags=0,
                stp=StpMode.NONE,
                price=price,
                qty=qty,
                stop_price=0,
                display_qty=0,
            )
        elif kind == CANCEL:
            record = CancelOrder(*head)
        elif kind == MOVE:
            resting = book.orders[oid]
            record = ReplaceOrder(
                *head, price=op[2], order_qty=resting.filled + resting.leaves + resting.reserve
            )
        else:
            raise ValueError(f"unknown op kind {kind} in {op!r}")
        if track:
            book.execute(record)
        out.append(record)
    return out


_SIDES = {int(side): side for side in Side}


def run_ops(book: Book, ops: Sequence[Op]) -> None:
    """Execute ``ops`` on ``book``, making each command as it goes (positional, as the ring's
    decoder makes them); the same records as ``to_records``."""
    execute, orders, symbol = book.execute, book.orders, book.spec.symbol
    sides, limit, no_stp = _SIDES, OrdType.LIMIT, StpMode.NONE
    gtc, ioc = TimeInForce.GTC, TimeInForce.IOC
    for seq, op in enumerate(ops, 1):
        kind, oid = op[0], op[1]
        if kind == NEW:
            execute(NewOrder(
                seq, seq, GATEWAY, 1, oid, ACCOUNT, symbol, oid, sides[op[2]], limit,
                ioc if op[5] else gtc, 0, no_stp, op[3], op[4], 0, 0,
            ))  # fmt: skip
        elif kind == CANCEL:
            execute(CancelOrder(seq, seq, GATEWAY, 1, oid, ACCOUNT, symbol, oid))
        else:
            resting = orders[oid]
            total = resting.filled + resting.leaves + resting.reserve
            execute(ReplaceOrder(seq, seq, GATEWAY, 1, oid, ACCOUNT, symbol, oid, op[2], total))


def book_levels(book: FastBook) -> Levels:
    """The book in the shadow's format, for the answer check."""
    return {
        "bids": [(level.price, level.qty) for level in book.bids.live_levels()],
        "asks": [(level.price, level.qty) for level in book.asks.live_levels()],
    }
