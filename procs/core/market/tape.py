"""A symbol's trade tape: the most recent trades, for a page that opens mid-session."""

from __future__ import annotations

from collections import deque

from procs.common.records import Trade

#: Trades a tape keeps: as many as the most a client may ask for (REST ``trades``' limit).
TRADES_KEPT = 1000


class TradeTape:
    def __init__(self, size: int = TRADES_KEPT) -> None:
        self._trades: deque[Trade] = deque(maxlen=size)

    def __setstate__(self, state: dict[str, object]) -> None:
        """A tape pickled when it kept 200 trades (a deque pickles its ``maxlen``): it keeps
        ``TRADES_KEPT`` from now on, as the README promises (review 47)."""
        trades = state.get("_trades")
        if isinstance(trades, deque) and (trades.maxlen or 0) < TRADES_KEPT:
            state["_trades"] = deque(trades, maxlen=TRADES_KEPT)
        self.__dict__.update(state)

    def process(self, trade: Trade) -> None:
        if self._trades and trade.trade_id <= self._trades[-1].trade_id:
            return  # a replayed trade (trade ids are gapless and increasing per symbol)
        self._trades.append(trade)

    def recent(self, limit: int) -> list[Trade]:
        """Up to ``limit`` newest trades, oldest first."""
        return list(self._trades)[-limit:] if limit > 0 else []

    @property
    def last_trade_id(self) -> int:
        return self._trades[-1].trade_id if self._trades else 0
