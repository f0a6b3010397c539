"""A ninth hostile review, of the money invariants end to end: gateway commands through the
sequencer's risk checks, the accepted ones through the matchers, their events back into
settlement (``core_rig.Exchange``), on a market the earlier reviews did not build: three
symbols sharing a quote asset, one crossed (ETH-BTC: BTC is a base on one symbol and the
quote on another), two symbols on one matcher, unlike scales and fees up to the 1,000 bps
cap, so fee rounding on tiny fills gets exercised.

After every step: no balance negative, every hold what its order needs, every asset's total
what deposits and withdrawals made it, the fee account credited exactly the fees of the trades
settled; with nothing in flight, the holds are what the matchers' books need. A copy restored
from snapshots mid-stream, and a restart that replays the journal mid-stream, each continue
byte-identically with the uninterrupted run.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.schema import (
    AssetConfig,
    JournalConfig,
    MatcherConfig,
    RingexConfig,
    RiskConfig,
    SymbolConfig,
)
from procs.common.records import (
    AccountReply,
    AdminCommand,
    CancelOrder,
    CreateAccount,
    MassCancel,
    NewOrder,
    Record,
    Rejected,
    ReplaceOrder,
    Trade,
    Transfer,
)
from procs.common.result_codes import ResultCode
from procs.common.types import AdminAction, OrderFlag, OrdType, Side, StpMode, TimeInForce
from procs.core.accounts import MAX_TOTAL, Accounts
from procs.core.engine import Matcher
from procs.core.money import Market
from procs.core.recovery import Recovered
from procs.core.reference_book import ReferenceBook
from procs.core.sequencer import Sequencer
from procs.core.symbols import symbol_specs
from tests.unit.router.core_rig import (
    ASSETS,
    BTC,
    BUY,
    ETH,
    SELL,
    USD,
    Exchange,
    new_order,
    roundtrip,
)

BTCUSD, ETHUSD, ETHBTC = 1, 2, 3
SYMBOLS = (BTCUSD, ETHUSD, ETHBTC)
MATCHER = {BTCUSD: "m1", ETHUSD: "m1", ETHBTC: "m2"}
FEE = 99
RICH, POOR = (1, 2), 3  # the poor trader's orders often meet the limits of its balance
TRADERS = (*RICH, POOR)
#: (mid, tick, lot) of each symbol's random prices and sizes
SHAPE = {BTCUSD: (3_000, 1, 1), ETHUSD: (2_000, 5, 2), ETHBTC: (500, 1, 1)}
LIMIT, MARKET, STOP, STOP_LIMIT = OrdType.LIMIT, OrdType.MARKET, OrdType.STOP, OrdType.STOP_LIMIT
GTC, IOC, FOK, DAY = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.DAY
OK = ResultCode.OK


def market_config(
    fees: tuple[int, int, int, int, int, int] = (0, 25, 13, 7, 1_000, 999),
    *,
    max_open: int = 10,
) -> RingexConfig:
    """Three symbols, two matchers, every scale different:

        BTC-USD  m1  tick 1, lot 1    notional = p*q      USD minor; base = q*10**4 BTC minor
        ETH-USD  m1  tick 5, lot 2    notional = p*q*10**3 USD minor; base = q*10**4 ETH minor
                     (limit collar 400 bps)
        ETH-BTC  m2  tick 1, lot 1    notional = p*q*10**2 BTC minor; base = q*10**4 ETH minor
    """
    f = fees
    return RingexConfig(
        assets=[
            AssetConfig(name="USD", id=USD, decimals=6),
            AssetConfig(name="BTC", id=BTC, decimals=8),
            AssetConfig(name="ETH", id=ETH, decimals=6),
        ],
        symbols=[
            SymbolConfig(
                name="BTC-USD",
                id=BTCUSD,
                tick=1,
                price_decimals=2,
                qty_decimals=4,
                max_qty=500,
                base="BTC",
                quote="USD",
                band_bps=500,
                maker_fee_bps=f[0],
                taker_fee_bps=f[1],
            ),
            SymbolConfig(
                name="ETH-USD",
                id=ETHUSD,
                tick=5,
                lot=2,
                min_qty=2,
                max_qty=400,
                price_decimals=1,
                qty_decimals=2,
                base="ETH",
                quote="USD",
                band_bps=300,
                limit_band_bps=400,
                maker_fee_bps=f[2],
                taker_fee_bps=f[3],
            ),
            SymbolConfig(
                name="ETH-BTC",
                id=ETHBTC,
                tick=1,
                price_decimals=4,
                qty_decimals=2,
                max_qty=500,
                base="ETH",
                quote="BTC",
                band_bps=1_000,
                maker_fee_bps=f[4],
                taker_fee_bps=f[5],
            ),
        ],
        matchers=[
            MatcherConfig(name="m1", symbols=["BTC-USD", "ETH-USD"]),
            MatcherConfig(name="m2", symbols=["ETH-BTC"]),
        ],
        risk=RiskConfig(
            max_open_orders=max_open,
            max_order_notional=0,
            max_commands_per_s=1_000_000,
            fee_account=FEE,
        ),
        journal=JournalConfig(fsync="none"),
    )
