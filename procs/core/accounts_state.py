"""The router's accounts in their canonical, snapshot form (``Accounts.state``): what
``state_hash`` hashes and a snapshot holds, sorted, so the same state always encodes the same.
"""

from __future__ import annotations

import msgspec


class OrderState(msgspec.Struct, frozen=True, array_like=True):
    order_id: int
    account: int
    symbol: int
    side: int
    price: int
    leaves: int
    held: int
    seq: int
    status: int
    replaces: list[int]
    filled: int = 0  # absent from an older snapshot
    #: (price, total) each replace in flight asks, as ``replaces``; an older snapshot's: []
    asks: list[tuple[int, int]] = []


class AccountsState(msgspec.Struct, frozen=True, array_like=True):
    """Everything ``Accounts`` is, in a canonical order (sorted; zero balances left out)."""

    accounts: list[int]
    balances: list[tuple[int, int, int, int]]  # account, asset, free, reserved
    net: list[tuple[int, int]]  # asset, deposits - withdrawals
    #: (key, account, asset, amount, seq) per transfer; a bare key from an older snapshot
    transfer_keys: list[int | tuple[int, int, int, int, int]]
    last_prices: list[tuple[int, int]]  # symbol, price
    orders: list[OrderState]  # by id
    #: (symbol, maker bps, taker bps) journaled (``fees.py``); empty in an older snapshot
    fees: list[tuple[int, int, int]] = []
    fee_account: int | None = None  # journaled; None: an older snapshot, the configured one
    #: (key, ts_ns) per transfer key, as ``transfer_keys``; empty in an older snapshot
    transfer_times: list[tuple[int, int]] = []
