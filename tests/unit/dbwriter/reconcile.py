"""The database against the live exchange's state: what every writer test checks."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import psycopg

from procs.common.types import DoneReason
from procs.dbwriter.projection import (
    CANCELLED,
    EXPIRED,
    FILLED,
    MASS_CANCELLED,
    NEW,
    PARTIALLY_FILLED,
    REJECTED,
    SELF_TRADE,
)
from tests.unit.dbwriter.journal_gen import JournalBuilder

_DONE = {
    DoneReason.FILLED: FILLED,
    DoneReason.CANCELLED: CANCELLED,
    DoneReason.EXPIRED: EXPIRED,
    DoneReason.SELF_TRADE: SELF_TRADE,
    DoneReason.MASS_CANCELLED: MASS_CANCELLED,
}


def reconcile(dsn: str, live: JournalBuilder) -> None:
    cfg = live.cfg
    decimals = {a.id: a.decimals for a in cfg.assets}
    with psycopg.connect(dsn) as conn:
        (checkpoint,) = conn.execute("SELECT last_seq FROM checkpoint").fetchone()  # type: ignore[misc]
        assert checkpoint == live.last_seq

        # trades == the matchers' Trade events, each once
        rows = conn.execute(
            "SELECT symbol_id, trade_id, seq, price, size, aggressor, maker_order_id, "
            "maker_account_id, taker_order_id, taker_account_id, "
            "(extract(epoch FROM ts) * 1000000)::bigint FROM trades "
            "ORDER BY seq, symbol_id, trade_id"
        ).fetchall()
        expect = [
            (
                t.symbol, t.trade_id, t.seq, t.price, t.qty, int(t.aggressor), t.maker_order_id,
                t.maker_account, t.taker_order_id, t.taker_account, t.ts_ns // 1000,
            )
            for t in sorted(live.trades, key=lambda t: (t.seq, t.symbol, t.trade_id))
        ]  # fmt: skip
        assert len(rows) == len(expect)
        assert rows == expect

        # balances == the router's Accounts, exactly
        state = live.sequencer.accounts.state()
        want = {
            (acc, asset): (
                Decimal(free).scaleb(-decimals[asset]),
                Decimal(res).scaleb(-decimals[asset]),
            )
            for acc, asset, free, res in state.balances
        }
        got = {
            (int(a), int(s)): (f, r)
            for a, s, f, r in conn.execute(
                "SELECT account_id, asset_id, free, reserved FROM balances"
            ).fetchall()
        }
        nonzero = {k: v for k, v in got.items() if v != (0, 0)}
        assert nonzero == want

        # orders: every one present, final status, filled/remaining
        orders = {
            int(r[0]): r[1:]
            for r in conn.execute(
                "SELECT id, status, remaining, filled, size FROM orders"
            ).fetchall()
        }
        assert sorted(orders) == sorted(live.order_ids)
        resting: dict[int, Any] = {}
        for matcher in live.matchers.values():
            for book in matcher.books.values():
                resting |= {oid: o for oid, o in book.orders.items()}
        for oid in live.order_ids:
            status, remaining, filled, size = orders[oid]
            if oid in resting:
                assert status in (NEW, PARTIALLY_FILLED), (oid, status)
                assert remaining == resting[oid].leaves, oid
                assert filled + remaining == size, oid
            elif oid in live.done:
                done = live.done[oid]
                assert status == _DONE[done.reason], (oid, status, done)
                assert (filled, remaining) == (done.filled_qty, 0), oid
            else:
                assert oid in live.rejected, oid
                assert status == REJECTED, oid

        # candles: every trade counted once in every interval
        for interval in (60, 3600, 86400):
            for symbol in (1, 2):
                trades = [t for t in live.trades if t.symbol == symbol]
                volume, count = conn.execute(
                    "SELECT coalesce(sum(volume), 0), coalesce(sum(trades), 0) FROM candles "
                    "WHERE symbol_id = %s AND interval_s = %s",
                    (symbol, interval),
                ).fetchone()  # type: ignore[misc]
                assert (volume, count) == (sum(t.qty for t in trades), len(trades))
        # accounts: every CreateAccount once
        (accounts,) = conn.execute("SELECT count(*) FROM accounts").fetchone()  # type: ignore[misc]
        assert accounts == len(state.accounts) - 1  # the fee account is made, not journaled

        # fees: every trade has both; what they add up to is what the router credited the
        # fee account (never funded in these journals), asset by asset
        accounts_now = live.sequencer.accounts
        filed = {
            int(asset): (int(total), int(missing))
            for asset, total, missing in conn.execute(
                "SELECT s.quote_asset_id, sum(t.maker_fee + t.taker_fee), "
                "count(*) FILTER (WHERE t.maker_fee IS NULL OR t.taker_fee IS NULL) "
                "FROM trades t JOIN symbols s ON s.id = t.symbol_id GROUP BY 1"
            ).fetchall()
        }
        for asset, (total, missing) in filed.items():
            assert missing == 0, f"{missing} trades in asset {asset} without fees"
            assert total == sum(accounts_now.balance(accounts_now.fee_account, asset))
