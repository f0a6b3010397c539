"""A sixty-second hostile review, of numbers and their limits end to end: integers (price
units, size units, minor units) inside the pipeline, carried in int64 record fields, and
decimals at the edges (FIX, REST, the market-data feed, the database, ``ringex admin``).

Reviewed: the records' bounds and the slot codec (``procs/common/records.py``, ``types.py``);
the money rules and settlement (``procs/core/money.py``, ``accounts.py``, ``settlement.py``,
``fees.py``); the matcher's price and size checks (``order_checks.py``); the edges' decimal
parsing and formatting (``procs/gateway/instruments.py``, ``order_fields.py``,
``rest_params.py``, ``commission.py``, ``order_replies.py``' AvgPx, ``history.py``,
``procs/core/market/symbols.py``, ``procs/marketdata/messages.py``, the page's
``amounts.js``); the admin amounts (``procs/admin/client.py``); the writer's rows and
columns (``procs/dbwriter/projection.py``, ``copy.py``, the migrations); the config's bounds
(``config/schema.py``, ``config/fields.py``).

What holds (the passing tests pin some of it): every asset's total across accounts is capped
at 2**63 - 1 by the deposits (``BALANCE_LIMIT``), so every balance, hold, notional and fee a
record or a ``bigint`` column carries fits, and a level's size too (each resting size is paid
for); settlement conserves each asset with fees rounded down from a hold rounded up, at the
limit too; the edges refuse "1e3", "+1", " 1", "1_000", Arabic-Indic digits and signs in a
price or size (REST: ``ILLEGAL_PARAM`` naming the value; FIX: a session Reject naming the
field) and a value past int64 (naming it); no float touches a price or an amount (the page
parses decimals to BigInt); FIX, REST, the feed and the database show a price, size, notional
and fee from the same integers with the same decimals (the database's views scale exactly,
``0012_exact_fee_scale.sql``); candle volumes and quote volumes are ``numeric``.

Faults, each pinned by a test that failed on the code it was written against for the fault
it names (its docstring says what is wrong and what a correct exchange does) and passes
since its fix (the same session's commits):

1. ``RiskConfig.fee_account`` (config/schema.py:288) has no upper bound: a profile with a fee
   account of 2**63 or more loads, and the router dies at every start journaling its
   ``FeeSchedule`` (``EncodeError``, procs/router/main.py:200): a restart loop, the instance
   down, where the config should refuse it as it refuses a tick or an asset id records
   cannot carry.
2. A FIX order over the symbol's ``max_qty`` is not checked at the edge (order_fields.py
   ``amounts``: the lot only), so it reaches the router and matcher and is refused with the
   bare code, ``QTY_OUT_OF_RANGE (...)`` (orders.py:542), or, from an account that cannot pay
   for it, ``INSUFFICIENT_BALANCE``: neither value nor limit named, where the REST API says
   "quantity ... is outside the symbol's limits (minQty ..., maxQty ...)".
3. A FIX order over ``risk.max_order_notional`` is refused with the bare
   ``NOTIONAL_TOO_LARGE (2008)`` (``refusal_note`` adds nothing for it), where the REST API
   names the limit and the price it judged the notional at (rest_params.py:385).
4. The largest price (size) the edges name when refusing one past int64 is 2**63 - 1 units
   (instruments.py:57 and :71), which is not a multiple of the symbol's tick (lot): "beyond
   the largest price 92233720368547758.07" on a symbol with tick 0.05, whose largest price is
   92233720368547758.05; sending the named "largest price" is then refused as off the tick.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from config.schema import RiskConfig, SymbolConfig
from procs.common.records import AccountReply, CreateAccount, Transfer
from procs.common.result_codes import ResultCode
from procs.common.types import OrdType, Side
from procs.core.accounts import MAX_TOTAL
from procs.core.market.symbols import decimal_string
from procs.gateway import api_errors as codes
from procs.gateway import rest_params as rp
from procs.gateway.api_errors import ApiError
from procs.gateway.instruments import Instruments, format_units, price_ticks, qty_lots
from tests.unit.gateway.harness import Client, Harness, config, run_scenario
from tests.unit.gateway.test_review17_outcomes import fix_order
from tests.unit.router.core_rig import (
    BTC,
    BTCUSD,
    FEE,
    USD,
    Exchange,
    exchange_config,
    new_order,
    placed,
)

#: the FIX harness' BTC-USD: prices 2 decimals (tick 0.05), sizes 2 decimals, max_qty 10**9
#: units (10000000.00)
MAX_QTY_SHOWN = "10000000.00"
NOTIONAL_LIMIT = 10**9  # USD minor units (6 decimals): 1000 USD


def _harness(instance: str, tmp_path: Path, notional_limit: int) -> Iterator[Harness]:
    """The FIX harness with ``notional_limit`` (0: none); ALICE (7) rich in both assets."""
    cfg = config(instance, tmp_path)
    risk = msgspec.structs.replace(cfg.risk, max_order_notional=notional_limit)
    h = Harness(msgspec.structs.replace(cfg, risk=risk))
    h.add_user("ALICE", "secret", 7)
    h.fund(7, usd=10**17, btc=10**17)
    yield h
    h.close()


@pytest.fixture
def fixh(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from _harness(instance, tmp_path, NOTIONAL_LIMIT)


@pytest.fixture
def unlimited(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from _harness(instance, tmp_path, 0)


async def _fix_refusal(port: int, side: str, qty: str, price: str) -> str:
    """ALICE's new limit order over FIX; the Text (58) of its refusal."""
    c = Client("ALICE")
    await c.connect(port)
    await c.logon()
    await c.send("D", *fix_order("n1", side, qty, price))
    report = await c.expect("8")
    assert report.get(150) == b"8", report
    text = report.get(58)
    assert text is not None, report
    return str(text.decode())


# -- fault 1: a fee account no record can carry --------------------------------------------------


def test_the_config_refuses_a_fee_account_no_record_can_carry() -> None:
    """What is wrong: ``RiskConfig.fee_account`` is ``ge=1`` only, so ``fee_account =
    9223372036854775808`` loads; the router then journals ``FeeSchedule(fee_account=2**63)``
    at its start, ``encode_slots`` refuses it (``EncodeError: FeeSchedule.fee_account=...
    is outside 0..9223372036854775807``) and the router dies, at every restart.
    Expected: the config refuses it when loaded, naming the field and the limit, as
    ``Units`` does for a tick (``le=2**63 - 1``). Actual: it loads."""
    with pytest.raises(msgspec.ValidationError, match="fee_account"):
        msgspec.convert({"fee_account": 2**63}, RiskConfig)


# -- faults 2 and 3: FIX refusals that name neither the value nor the limit ---------------------


def test_a_fix_order_over_the_symbols_size_limit_is_refused_naming_it(
    unlimited: Harness,
) -> None:
    """What is wrong: a sell of OrderQty 20000000.00 on BTC-USD (max_qty 10000000.00) from
    an account that holds the coins passes the FIX edge, which checks the lot only, and comes
    back from the matcher as Text "QTY_OUT_OF_RANGE (...)" (under a notional limit:
    "NOTIONAL_TOO_LARGE (2008)"; from an account without the coins:
    "INSUFFICIENT_BALANCE"). Expected: the value and the limit named, as the REST API does
    ("... outside the symbol's limits (minQty 0.01, maxQty 10000000.00 ...)")."""
    texts: list[str] = []

    async def scenario(h: Harness, port: int) -> None:
        texts.append(await _fix_refusal(port, "2", "20000000.00", "0.05"))

    run_scenario(unlimited, scenario)
    assert MAX_QTY_SHOWN in texts[0] and "20000000.00" in texts[0], texts


def test_a_fix_order_over_the_notional_limit_is_refused_naming_the_limit(fixh: Harness) -> None:
    """What is wrong: a buy of 100.00 at 100000.00 (10,000,000 USD) against
    ``max_order_notional`` 10**9 minor units (1,000 USD) is refused over FIX with Text
    "NOTIONAL_TOO_LARGE (2008)" alone. Expected: the limit named, as the REST API's refusal
    does (": its notional may be at most 1000.000000 USD, judged at its price"; review 335
    said it in the quote asset's decimals, as exchangeInfo's maxNotional)."""
    texts: list[str] = []

    async def scenario(h: Harness, port: int) -> None:
        texts.append(await _fix_refusal(port, "1", "100.00", "100000.00"))

    run_scenario(fixh, scenario)
    assert "NOTIONAL_TOO_LARGE" in texts[0], texts
    assert "at most 1000.000000 USD" in texts[0], texts  # (a decimal since review 335)


# -- fault 4: the largest price named is not a price ---------------------------------------------

TICK_005 = SymbolConfig(name="BTC-USD", id=1, price_decimals=2, qty_decimals=2, tick=5, lot=5)


def test_the_largest_price_a_refusal_names_is_one_the_symbol_takes() -> None:
    """What is wrong: a price past int64 is refused "beyond the largest price
    92233720368547758.07" on a symbol whose tick is 0.05; that price is itself refused ("not
    a multiple of tick 0.05"). Expected: the limit named is the largest price the symbol
    takes, 92233720368547758.05 (2**63 - 1 rounded down to the tick); likewise for a size
    and the lot."""
    why = price_ticks(b"99999999999999999999", TICK_005)
    assert isinstance(why, str), why
    named = why.split("largest price ")[1].split(" ")[0]
    assert not isinstance(price_ticks(named.encode(), TICK_005), str), (why, named)
    why_qty = qty_lots(b"99999999999999999999", TICK_005)
    assert isinstance(why_qty, str), why_qty
    named_qty = why_qty.split("maxQty ")[1].split(" ")[0]  # the symbol's (review 144)
    assert not isinstance(qty_lots(named_qty.encode(), TICK_005), str), (why_qty, named_qty)


# -- what holds ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["1e3", "+1", " 1", "1 ", "1_000", "\u0661", "-1", "0x10", "1.2.3"]
)
def test_rest_refuses_a_price_or_size_that_is_not_a_plain_decimal(text: str) -> None:
    """REST: a price or size with an exponent, a sign, blanks, separators or another
    script's digits is ``ILLEGAL_PARAM``, naming the value, never an exception."""
    instruments = Instruments([TICK_005])
    base = {"symbol": "BTC-USD", "side": "BUY", "type": "LIMIT"}
    for params in (
        {**base, "price": text, "quantity": "1"},
        {**base, "price": "1", "quantity": text},
    ):
        with pytest.raises(ApiError) as caught:
            rp.new_order(params, instruments)
        assert caught.value.code == codes.ILLEGAL_PARAM and repr(text) in caught.value.msg


def test_every_view_shows_the_same_decimal_for_the_same_integer() -> None:
    """FIX and REST (``format_units``) and the feed (``decimal_string``) agree, signs, zero
    padding and 12 decimals included."""
    for value in (0, 5, -5, 25, 10**12 - 1, 10**12, 2**63 - 1, -(2**63)):
        for decimals in (0, 1, 2, 8, 12, 16):
            shown = format_units(value, decimals).decode()
            assert shown == decimal_string(value, decimals), (value, decimals)


def test_balances_are_conserved_at_the_int64_limit_with_fees() -> None:
    """A deposit that would take an asset's total past 2**63 - 1 is ``BALANCE_LIMIT``; a
    buyer holding nearly all of it takes 50 at the highest price it can pay (fees 7/13 bps,
    notional = p x q x 10 minor units): the buyer pays notional + taker fee, the seller gets
    notional - maker fee, the fee account both (each rounded down), and every total is
    what the deposits made it; every record on the way encodes (``Exchange`` round-trips
    them)."""
    ex = Exchange.fresh(exchange_config(max_notional=0))
    buyer, seller = 1, 2
    for account in (buyer, seller):
        assert ex.submit(CreateAccount(0, 0, 1, account, 0, account)) is not None
    assert ex.submit(Transfer(0, 0, 1, buyer, 0, buyer, USD, MAX_TOTAL - 10, 1)) is not None
    refused = ex.sequencer.submit(Transfer(0, 0, 1, seller, 0, seller, USD, 11, 2), 0)
    assert refused.command is None and isinstance(refused.reply, AccountReply)
    assert refused.reply.code == ResultCode.BALANCE_LIMIT
    assert ex.submit(Transfer(0, 0, 1, seller, 0, seller, BTC, 50 * 100, 3)) is not None
    market = ex.accounts.markets[BTCUSD]
    price = (MAX_TOTAL - 10) * 10_000 // (500 * 10_013) // 5 * 5
    while market.hold(Side.BUY, price, 50) > MAX_TOTAL - 10:
        price -= 5
    placed(ex, new_order(seller, Side.SELL, price, 50, ref=1))
    ex.settle()
    placed(ex, new_order(buyer, Side.BUY, price, 50, ref=2, kind=OrdType.LIMIT))
    ex.settle()
    ex.check()
    notional = market.notional(price, 50)
    maker_fee, taker_fee = market.fees(price, 50)
    assert ex.accounts.balance(seller, USD) == (notional - maker_fee, 0)
    assert ex.accounts.balance(FEE, USD) == (maker_fee + taker_fee, 0)
    assert ex.accounts.balance(buyer, USD) == (MAX_TOTAL - 10 - notional - taker_fee, 0)
    assert ex.accounts.totals(USD) == MAX_TOTAL - 10 and ex.accounts.totals(BTC) == 5000
