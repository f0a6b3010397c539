"""A seeded random command stream for differential tests of book implementations."""

from __future__ import annotations

import random
from collections.abc import Iterator

from procs.common.records import (
    AdminCommand,
    CancelOrder,
    MassCancel,
    NewOrder,
    Record,
    ReplaceOrder,
)
from procs.common.types import AdminAction, OrderFlag, OrdType, Side, StpMode, TimeInForce
from procs.core.book import Book
from procs.core.symbols import SymbolSpec

SPEC = SymbolSpec(symbol=3, tick=1, lot=1, min_qty=1, max_qty=100, band_bps=100)
TIFS = [TimeInForce.GTC] * 6 + [TimeInForce.IOC, TimeInForce.FOK, TimeInForce.DAY] * 2
TYPES = [OrdType.LIMIT] * 16 + [OrdType.MARKET, OrdType.STOP, OrdType.STOP_LIMIT] * 2
STPS = [StpMode.NONE] * 7 + [StpMode.CANCEL_NEWEST, StpMode.CANCEL_OLDEST, StpMode.CANCEL_BOTH]
ADMIN = [AdminAction.HALT, AdminAction.RESUME, AdminAction.RESUME, AdminAction.END_OF_SESSION]


def commands(seed: int, count: int, book: Book) -> Iterator[Record]:
    """New orders of every type near a drifting mid (some marketable, some post-only, some
    icebergs, some with self-trade prevention), cancels and replaces mostly of live orders
    (sometimes of gone ones, or by the wrong account), the odd mass cancel, halt, resume and
    end of session: every path of the book."""
    rng = random.Random(seed)
    mid, next_id = 1000, 1
    live: list[tuple[int, int]] = []  # every id ever sent, with its owner
    for seq in range(1, count + 1):
        mid = max(50, mid + rng.choice((-1, 0, 0, 1)))
        roll = rng.random()
        account = rng.randint(1, 5)
        head = (seq, seq * 10, 1, account, seq, account, SPEC.symbol)
        if roll < 0.6 or not live:
            side = rng.choice((Side.BUY, Side.SELL))
            offset = rng.randint(-8, 12)
            price = mid - offset if side == Side.BUY else mid + offset
            ord_type = rng.choice(TYPES)
            stop = 0
            if ord_type in (OrdType.STOP, OrdType.STOP_LIMIT):
                stop = mid + rng.randint(-6, 6)
            if ord_type in (OrdType.MARKET, OrdType.STOP):
                price = 0
            qty = rng.randint(1, 20)
            display = rng.randint(1, qty) if rng.random() < 0.1 else 0
            flags = OrderFlag.POST_ONLY if rng.random() < 0.05 else 0
            yield NewOrder(
                *head, next_id,
                side, ord_type, rng.choice(TIFS), flags, rng.choice(STPS), price, qty, stop,
                display,
            )  # fmt: skip
            live.append((next_id, account))
            next_id += 1
        elif roll < 0.85:
            order_id, owner = _target(rng, book, live)
            if rng.random() < 0.1:
                owner = owner % 5 + 1  # someone else's order: a reject
            yield CancelOrder(seq, seq * 10, 1, owner, seq, owner, SPEC.symbol, order_id)
        elif roll < 0.995:
            order_id, owner = _target(rng, book, live)
            price = mid + rng.randint(-10, 10)
            yield ReplaceOrder(
                seq,
                seq * 10,
                1,
                owner,
                seq,
                owner,
                SPEC.symbol,
                order_id,
                price,
                rng.randint(1, 20),
            )
        elif roll < 0.997:
            yield MassCancel(seq, seq * 10, 1, account, seq, rng.choice((0, account)), 0)
        else:
            yield AdminCommand(seq, seq * 10, rng.choice(ADMIN), rng.choice((0, SPEC.symbol)), 0)


def _target(rng: random.Random, book: Book, live: list[tuple[int, int]]) -> tuple[int, int]:
    """Mostly an order resting in ``book`` or a pending stop; one time in ten any id ever
    sent."""
    if book.stops and rng.random() < 0.1:
        order = book.stops[rng.choice(list(book.stops))]
        return order.order_id, order.account
    if book.orders and rng.random() < 0.9:
        order = book.orders[rng.choice(list(book.orders))]
        return order.order_id, order.account
    return rng.choice(live)


def compare(books: list[Book], seed: int, count: int, check_every: int = 1000) -> int:
    """Feed the same stream to every book; every event list must be identical. Returns the
    number of events seen."""
    total = 0
    for i, command in enumerate(commands(seed, count, books[0])):
        first, *others = (book.execute(command) for book in books)
        for other in others:
            assert other == first, f"command {i} {command!r}: {first!r} != {other!r}"
        total += len(first)
        if i % check_every == 0:
            for book in books:
                book.validate_internal_state()
            assert len({book.state_hash() for book in books}) == 1, f"state differs at {i}"
    for book in books:
        book.validate_internal_state()
    assert len({book.state_hash() for book in books}) == 1
    return total
