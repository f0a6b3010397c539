"""The fee schedule as router state: which maker and taker fees, and which fee account, a
trade settles under.

Fees are config, but a trade must settle under the fees in force when it was made, also when
a restart replays it under a config changed since. So the schedule is state: journaled as
``FeeSchedule`` records (a starting router journals one per symbol whose configured fees
differ from its state's, ``changes``), kept in the accounts' snapshots, and applied in
sequence by a replay like any other command. A brand-new journal starts with one per symbol,
so a replay from its first seq never depends on the config of the day.

A resting buy holds its notional plus the fee margin of max(maker, taker): a change of that
margin while buys rest (or wait for a replace) on the symbol would leave their holds wrong,
so it is refused, naming the symbol and the orders (``set_schedule``).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from config.schema import RingexConfig
from procs.common.records import FeeSchedule
from procs.core.money import Market

if TYPE_CHECKING:
    from procs.core.accounts import Accounts


class FeeChangeError(ValueError):
    """A fee change the open orders do not allow; the message says which and what to do."""


def changes(accounts: Accounts, cfg: RingexConfig) -> list[tuple[int, int, int]]:
    """(symbol, maker bps, taker bps) for every configured symbol whose fees the state does
    not hold yet; (0, 0, 0) alone when only the fee account is to be recorded or changed."""
    out = [
        (s.id, s.maker_fee_bps, s.taker_fee_bps)
        for s in cfg.symbols
        if accounts.fee_schedule.get(s.id) != (s.maker_fee_bps, s.taker_fee_bps)
    ]
    if not out and accounts.fee_account_recorded != cfg.risk.fee_account:
        out.append((0, 0, 0))
    return out


def apply(accounts: Accounts, record: FeeSchedule) -> None:
    """Put ``record`` in force (``FeeChangeError`` when open buys forbid it). A symbol no
    longer configured keeps no fees: none of its commands can be replayed either."""
    if record.symbol in accounts.markets:
        set_schedule(accounts, record.symbol, record.maker_bps, record.taker_bps)
    set_fee_account(accounts, record.fee_account)


def set_schedule(accounts: Accounts, symbol: int, maker_bps: int, taker_bps: int) -> None:
    market = check_schedule(accounts, symbol, maker_bps, taker_bps)
    accounts.markets[symbol] = dataclasses.replace(market, maker_bps=maker_bps, taker_bps=taker_bps)
    accounts.fee_schedule[symbol] = (maker_bps, taker_bps)


def check_schedule(
    accounts: Accounts, symbol: int, maker_bps: int, taker_bps: int, name: str | None = None
) -> Market:
    """``symbol``'s market now, if its fees may become those (else ``FeeChangeError``, which
    names it ``name``, the config's, where given: review 206)."""
    market = accounts.markets.get(symbol)
    if market is None:
        raise FeeChangeError(f"fees for symbol {symbol}, which is not configured")
    margin = max(market.maker_bps, market.taker_bps)
    if max(maker_bps, taker_bps) != margin:
        holding = sorted(accounts.open_buys(symbol))
        if holding:
            shown = ", ".join(map(str, holding[:5])) + (" ..." if len(holding) > 5 else "")
            raise FeeChangeError(
                f"symbol {name or symbol}: the fees {market.maker_bps}/{market.taker_bps} bps "
                f"(maker/taker) cannot become {maker_bps}/{taker_bps} while {len(holding)} "
                f"buy orders hold the old fee margin of {margin} bps (orders {shown}): "
                "cancel them first, or keep the old fees until then"
            )
    return market


def set_fee_account(accounts: Accounts, account: int) -> None:
    """Put ``account`` in force as the fee account, creating it if need be. The first one
    recorded replaces the configured account ``Accounts`` starts with when that one was
    only the seed (nothing in it): a journal replayed from its start under a config whose
    fee account has moved since then opens that account where the journal does, not before."""
    seed = accounts.fee_account if accounts.fee_account_recorded is None else None
    accounts.fee_account = accounts.fee_account_recorded = account
    if seed is not None and seed != account and accounts.untouched(seed):
        accounts.forget_account(seed)
    accounts.create_account(account)  # credited from the next trade on; ACCOUNT_EXISTS: fine
