"""The shared helpers of review 107's README tests (``test_review107_*.py``): the README read
as it is when a test runs, a claim found in it by a quote (whitespace folded), its sections; a
book fed by hand (``Rig``) and its fixture ``rig``, which runs each book test on both books; a
new order by its fields; and the filters of a book's events.
"""

from __future__ import annotations

from typing import Any, TypeVar

import pytest

from procs.common.record_codec import RecordCodec
from procs.common.records import (
    AdminCommand,
    CancelOrder,
    MassCancel,
    NewOrder,
    OrderDone,
    Record,
    Rejected,
    ReplaceOrder,
    Trade,
)
from procs.common.result_codes import ResultCode
from procs.common.types import AdminAction, OrdType, Side, StpMode, TimeInForce
from procs.core.book import Book
from procs.core.fast_book import FastBook
from procs.core.reference_book import ReferenceBook
from procs.core.symbols import SymbolSpec
from tests.readme_text import README, ROOT
from tests.readme_text import claim as _claim
from tests.readme_text import folded as _folded
from tests.readme_text import section as _section

#: Re-exported for the test modules (the README, the repository, a claim's anchor).
__all__ = ["README", "ROOT", "_claim", "_folded"]

RINGS = _section("The rings")
MATCHER = _section("The matcher")
ROUTER = _section("The router and the journal")

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET, STOP, STOP_LIMIT = OrdType.LIMIT, OrdType.MARKET, OrdType.STOP, OrdType.STOP_LIMIT
GTC, IOC, FOK, DAY = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.DAY
CODEC = RecordCodec()
R = TypeVar("R", bound=Record)


# -- a book fed by hand -----------------------------------------------------------------------

SYMBOL = 7
#: band 10% (1,000 bps), no collar, icebergs of at most 4 slices
SPEC = SymbolSpec(symbol=SYMBOL, max_qty=1_000_000, iceberg_parts=4, band_bps=1_000)


class Rig:
    """One book and the counters a router would keep: each command the next seq and id."""

    def __init__(self, book_cls: type[Book], spec: SymbolSpec = SPEC) -> None:
        self.book = book_cls(spec)
        self.seq = 0

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    def new(
        self,
        side: Side,
        price: int,
        qty: int,
        *,
        account: int = 1,
        tif: TimeInForce = GTC,
        kind: OrdType = LIMIT,
        flags: int = 0,
        stp: StpMode = StpMode.NONE,
        stop: int = 0,
        display: int = 0,
    ) -> tuple[int, list[Record]]:
        seq = self._next()
        cmd = NewOrder(
            seq=seq, ts_ns=seq, gateway=1, session=1, client_ref=seq, account=account,
            symbol=SYMBOL, order_id=seq, side=side, ord_type=kind, tif=tif, flags=flags,
            stp=stp, price=price, qty=qty, stop_price=stop, display_qty=display,
        )  # fmt: skip
        return seq, self.book.execute(cmd)

    def cancel(self, order_id: int, account: int = 1) -> list[Record]:
        seq = self._next()
        return self.book.execute(CancelOrder(seq, seq, 1, 1, seq, account, SYMBOL, order_id))

    def replace(self, order_id: int, price: int, total: int, account: int = 1) -> list[Record]:
        seq = self._next()
        cmd = ReplaceOrder(seq, seq, 1, 1, seq, account, SYMBOL, order_id, price, total)
        return self.book.execute(cmd)

    def mass_cancel(self, account: int = 0, symbol: int = 0) -> list[Record]:
        seq = self._next()
        return self.book.execute(MassCancel(seq, seq, 1, 1, seq, account, symbol))

    def admin(self, action: AdminAction) -> list[Record]:
        seq = self._next()
        return self.book.execute(AdminCommand(seq, seq, action, 0, seq))

    def trade_at(self, price: int) -> None:
        """A trade at ``price`` between two bystanders: the last trade price is ``price``."""
        self.new(SELL, price, 1, account=98)
        _, events = self.new(BUY, price, 1, account=99)
        assert any(type(e) is Trade and e.price == price for e in events), events


@pytest.fixture(params=[FastBook, ReferenceBook], ids=["fast", "reference"], name="rig")
def fixture_rig(request: pytest.FixtureRequest) -> Rig:
    """Each book test runs on both books: README, "run the same command flow"."""
    return Rig(request.param)


def _of(events: list[Record], kind: type[R]) -> list[R]:
    return [e for e in events if isinstance(e, kind)]


def _order(**fields: Any) -> NewOrder:
    """A new order, unsequenced: 1 lot bought at 1 by account 1 on ``SYMBOL``, but ``fields``."""
    base: dict[str, Any] = {
        "seq": 0, "ts_ns": 0, "gateway": 1, "session": 1, "client_ref": 0, "account": 1,
        "symbol": SYMBOL, "order_id": 0, "side": BUY, "ord_type": LIMIT, "tif": GTC,
        "flags": 0, "stp": StpMode.NONE, "price": 1, "qty": 1, "stop_price": 0,
        "display_qty": 0,
    }  # fmt: skip
    return NewOrder(**(base | fields))


def _trades(events: list[Record]) -> list[Trade]:
    return [e for e in events if isinstance(e, Trade)]


def _done(events: list[Record]) -> list[OrderDone]:
    return [e for e in events if isinstance(e, OrderDone)]


def _rejected(events: list[Record]) -> ResultCode | None:
    codes = [e.code for e in events if isinstance(e, Rejected)]
    assert len(codes) <= 1 and (not codes or len(events) == 1), events
    return codes[0] if codes else None
