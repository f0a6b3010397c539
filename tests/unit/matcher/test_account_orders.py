"""The books' per-account index of resting orders (``account_orders.py``): a mass cancel of
one account takes its orders from it, so it must give exactly the orders the priority scan
gave, in the same order, whatever the book went through (fills, iceberg refreshes, replaces
that move or cross, self-trade cancels, restores), and stay bounded."""

from __future__ import annotations

import pytest

from procs.common.records import MassCancel
from procs.core.account_orders import SLACK
from procs.core.book import Book
from procs.core.fast_book import FastBook
from procs.core.reference_book import ReferenceBook

from .differential import SPEC, commands


def _scan(book: Book, account: int) -> list[int]:
    return [o.order_id for o in book._priority() if o.account == account]


@pytest.mark.parametrize("book_cls", [ReferenceBook, FastBook])
@pytest.mark.parametrize("seed", [1, 7, 42])
def test_the_index_gives_what_the_priority_scan_gave(book_cls: type[Book], seed: int) -> None:
    book = book_cls(SPEC)
    for k, command in enumerate(commands(seed, 6_000, book)):
        if isinstance(command, MassCancel) and command.account:
            expected = _scan(book, command.account)
            got = [o.order_id for o in book.by_account.of(command.account, book.orders)]
            assert got == expected, f"command {k}"
        book.execute(command)
        if k % 500 == 0:
            book.validate_internal_state()
            for account in range(1, 6):
                got = [o.order_id for o in book.by_account.of(account, book.orders)]
                assert got == _scan(book, account)
    restored = book_cls.restore(SPEC, book.snapshot())
    restored.validate_internal_state()
    for account in range(1, 6):
        got = [o.order_id for o in restored.by_account.of(account, restored.orders)]
        assert got == _scan(book, account)


def test_the_index_stays_within_twice_the_book() -> None:
    """Orders that rest and then leave by a fill or a cancel are never taken out of the
    index one by one; it is rebuilt once past twice the book's orders at the last rebuild
    (plus ``SLACK``), so it stays within twice the largest book."""
    book, peak = FastBook(SPEC), 0
    for command in commands(3, 20_000, book):
        book.execute(command)
        size = sum(len(ids) for ids in book.by_account.ids.values())
        peak = max(peak, len(book.orders))
        assert size <= 2 * peak + SLACK + 1
