"""Review 90 of the database writer (``procs/dbwriter``) and the REST history it serves
(``procs/gateway/history.py``: allOrders, myTrades, klines).

The first tests pin the fault the review found, fixed since (``history.whole_trades``): a
myTrades page could end between the two sides of a self-trade. The tests after ``checked
and found correct`` pin what this review looked at and found right. Everything is real: the
sequencer and matchers make the journal (``journal_gen``), the writer files it into the
session's PostgreSQL, and ``History`` reads it as the gateway does (``history_query``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from config.schema import RingexConfig, SymbolConfig
from procs.common.records import ReplaceOrder
from procs.common.types import Side
from procs.dbwriter.projection import FILLED, NEW
from procs.gateway.history import History, order_json, whole_trades
from tests.unit.dbwriter.history_query import query_history
from tests.unit.dbwriter.journal_gen import JournalBuilder, fund, limit_order, make_cfg, write_all


def _symbol(cfg: RingexConfig, symbol_id: int) -> SymbolConfig:
    return next(s for s in cfg.symbols if s.id == symbol_id)


def _self_trades(tmp_path: Path, dsn: str, count: int) -> tuple[RingexConfig, JournalBuilder]:
    """``count`` trades of account 10 with itself (STP NONE) on BTC-USD: two myTrades rows
    each, its taker side and its maker side, under one trade id."""
    cfg = make_cfg(tmp_path)
    b = JournalBuilder(cfg)
    fund(b, 10, {1: 10**15, 2: 10**15})
    for _ in range(count):
        limit_order(b, 10, 1, Side.SELL, 100_000, 5)
        limit_order(b, 10, 1, Side.BUY, 100_000, 5)
    b.close()
    write_all(cfg, dsn)
    return cfg, b


def _sides(rows: list[dict[str, Any]]) -> list[tuple[int, bool]]:
    return [(r["id"], r["isMaker"]) for r in rows]


def test_paging_my_trades_by_from_id_lists_both_sides_of_a_self_trade(
    tmp_path: Path, dsn: str
) -> None:
    """An account trading with itself (STP NONE, the default here) has two myTrades rows per
    trade, one id. With ``limit=3`` the first page is [(1, taker), (1, maker), (2, taker)]:
    a client that pages as the venues document (``fromId`` = the last id + 1) asks for 3 on
    and never sees (2, maker), its buy or sell of trade 2; one that asks from the last id
    gets (2, taker) twice, and with ``limit=1`` the same row for ever. Expected: paging by
    fromId = last id + 1 lists every row of the account once (a page never splits a trade's
    two sides: it ends on a whole trade, or counts ``limit`` in trades)."""
    cfg, _ = _self_trades(tmp_path, dsn, 4)
    sym = _symbol(cfg, 1)
    everything = _sides(query_history(dsn, lambda h: h.trades(10, sym, from_id=0, limit=1000)))
    assert everything == [(t, maker) for t in (1, 2, 3, 4) for maker in (False, True)]

    async def paged(h: History) -> list[tuple[int, bool]]:
        got: list[tuple[int, bool]] = []
        from_id = 0
        for _ in range(20):  # bounded: a page that does not move on ends the walk
            page = _sides(await h.trades(10, sym, from_id=from_id, limit=3))
            if not page:
                break
            got += page
            from_id = page[-1][0] + 1
        return got

    assert query_history(dsn, paged) == everything


def test_a_page_of_one_moves_on_and_the_newest_page_keeps_a_trade_whole(
    tmp_path: Path, dsn: str
) -> None:
    """``limit=1`` paged by fromId = last id + 1 gets each trade's two sides in one page (it
    never returns the same row for ever), and the newest 3 rows of 8 start at trade 3's
    taker side, not between its two."""
    cfg, _ = _self_trades(tmp_path, dsn, 4)
    sym = _symbol(cfg, 1)

    async def paged(h: History) -> list[list[tuple[int, bool]]]:
        pages, from_id = [], 0
        for _ in range(10):
            page = _sides(await h.trades(10, sym, from_id=from_id, limit=1))
            if not page:
                break
            pages.append(page)
            from_id = page[-1][0] + 1
        return pages

    assert query_history(dsn, paged) == [[(t, False), (t, True)] for t in (1, 2, 3, 4)]
    newest = _sides(query_history(dsn, lambda h: h.trades(10, sym, limit=3)))
    assert newest == [(3, False), (3, True), (4, False), (4, True)]


def test_whole_trades_cuts_at_limit_unless_a_trade_would_split() -> None:
    """The cut itself, as the live merge (``LiveTrades.merged``) takes it too."""
    ids = [1, 2, 2, 3, 4, 4]
    assert whole_trades(ids, 10, False, int) == ids
    assert whole_trades(ids, 1, False, int) == [1]
    assert whole_trades(ids, 2, False, int) == [1, 2, 2]
    assert whole_trades(ids, 3, False, int) == [1, 2, 2]
    assert whole_trades(ids, 2, True, int) == [4, 4]
    assert whole_trades(ids, 1, True, int) == [4, 4]
    assert whole_trades(ids, 4, True, int) == [2, 2, 3, 4, 4]


# -- checked and found correct ------------------------------------------------------------------


def test_checked_self_trade_rows_are_taker_then_maker_in_every_mode(
    tmp_path: Path, dsn: str
) -> None:
    """Both sides of a self-trade are listed, each once, taker first, oldest first whether
    asked from an id, from a time or for the newest; isBuyer is opposite on the two sides
    and orderId is each side's own order."""
    cfg, b = _self_trades(tmp_path, dsn, 3)
    sym = _symbol(cfg, 1)
    start = b.trades[0].ts_ns // 1_000_000
    want = [(t, maker) for t in (1, 2, 3) for maker in (False, True)]
    asks: list[dict[str, Any]] = [{"from_id": 0}, {"start_ms": start}, {}]
    for bounds in asks:

        async def ask(h: History, kw: dict[str, Any] = bounds) -> list[dict[str, Any]]:
            return await h.trades(10, sym, limit=100, **kw)

        assert _sides(query_history(dsn, ask)) == want, bounds
    rows = query_history(dsn, lambda h: h.trades(10, sym, limit=100))
    for trade, (taker, maker) in zip(
        b.trades, zip(rows[::2], rows[1::2], strict=True), strict=True
    ):
        assert (taker["orderId"], maker["orderId"]) == (trade.taker_order_id, trade.maker_order_id)
        assert taker["isBuyer"] != maker["isBuyer"]
        assert taker["isBuyer"] == (trade.aggressor == Side.BUY)
    # the newest 3 rows end with the last trade's maker side, and take trade 2 whole: 4 rows
    assert _sides(query_history(dsn, lambda h: h.trades(10, sym, limit=3))) == want[-4:]


def test_checked_a_replace_overtaken_by_fills_files_the_order_filled_under_its_new_id(
    tmp_path: Path, dsn: str
) -> None:
    """A FIX replace (a new ClOrdID) to a total at or below what has filled ends the order
    ``FILLED`` (``Replaced`` qty 0, then ``OrderDone``): its row says FILLED, size = filled,
    remaining 0, its price unchanged and the replace's client id, updated at the replace's
    seq; a replace of an unknown order id, refused, files nothing; allOrders shows it as
    FILLED, not working, origQty = executedQty."""
    cfg = make_cfg(tmp_path)
    b = JournalBuilder(cfg)
    fund(b, 10, {1: 10**15, 2: 10**15})
    fund(b, 11, {1: 10**15, 2: 10**15})
    sell = limit_order(b, 10, 1, Side.SELL, 100_000, 10)
    limit_order(b, 11, 1, Side.BUY, 100_000, 6)  # fills 6 of the sell
    gw, session, ref, acc, symbol = b._header(10, 1)[2:7]
    replaced = b.submit(
        ReplaceOrder(0, 0, gw, session, ref, acc, symbol, sell, 100_100, 4, b"CL-NEW-1")
    )
    assert isinstance(replaced, ReplaceOrder)
    other = limit_order(b, 10, 1, Side.SELL, 100_500, 3)
    gw, session, ref, acc, symbol = b._header(10, 1)[2:7]
    b.submit(ReplaceOrder(0, 0, gw, session, ref, acc, symbol, 10**9, 100_000, 5, b"CL-X"))
    b.close()
    write_all(cfg, dsn, batch_rows=2)
    with psycopg.connect(dsn) as conn:
        rows = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT id, status, size, filled, remaining, price, client_order_id, "
                "updated_seq FROM orders"
            )
        }
    assert rows[sell] == (FILLED, 6, 6, 0, 100_000, "CL-NEW-1", replaced.seq)
    assert rows[other][:6] == (NEW, 3, 0, 3, 100_500, "")
    sym = _symbol(cfg, 1)
    listed = query_history(dsn, lambda h: h.orders(10, 1))
    assert [r[0] for r in listed] == [sell, other]
    shown = order_json(listed[0], sym)
    assert (shown["status"], shown["origQty"], shown["executedQty"]) == (
        "FILLED",
        "0.0006",
        "0.0006",
    )
    assert shown["clientOrderId"] == "CL-NEW-1"
    assert shown["isWorking"] is False
