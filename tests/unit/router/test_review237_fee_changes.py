"""Review 237: fees, and changes to them over a venue's life.

Reviewed: ``procs/core/fees.py`` (the journaled schedule, the fee account, the margin check),
``money.py`` (``fees``, ``hold``), ``settlement.py`` (fills, the fee account's credit),
``accounts.py`` (``open_buys``, ``restore`` of the schedule and the fee account),
``sequencer.py`` (``fee_changes``, ``replay`` of a ``FeeSchedule``), ``procs/router/main.py``
(``_journal_fees``), ``procs/dbwriter/projection.py`` and ``replay.py`` (each trade row's
``maker_fee`` / ``taker_fee`` from the replay's accounts), ``procs/gateway/commission.py``,
``orders.py``, ``rest_orders.py``, ``live_trades.py``, ``history.py`` (Commission 12, the REST
``commission``), ``procs/admin/add_user.py`` (the fee account refused as a user's) and
``config/fields.py`` (``FeeBps``). Driven through review 206's ``Rig`` (the router and matcher
shells over real rings and the instance's journal, stopped and started again under a changed
config), the database writer over that journal (``write_all``) and ``rest_rig``'s harness
(real FIX and REST over TCP in front of the router and matcher).

Fault found:

1. A config that moves ``risk.fee_account`` onto an account a user trades with starts without a
   word (nothing reads the users file against it: ``procs/core/fees.py:82`` ``set_fee_account``
   opens or takes any account; the gateway's ``start``, ``procs/gateway/server.py:418``, logs
   the user on). From then on every fee of every trader is credited to that user's free
   balance: the user can trade with the exchange's fees, and its own fills cost it
   nothing (its Commission is paid to itself). ``ringex admin add-user`` refuses exactly this
   pairing the other way round ("account N is the exchange's fee account ... pick another",
   ``procs/admin/add_user.py:38``). Fix: check the users file against ``risk.fee_account``
   where both are at hand: at the gateway's start (``GatewayServer`` refuses, naming the user,
   the account and the key), and in ``ringex run``'s preflight.

Found sound (passing tests below): fees out of range (a maker rebate, past 1,000 bps) refused
at load naming key, value and symbol; over three runs (fees swapped keeping the margin and
the fee account moved while a buy rests, then the margin raised once no buy rests on that
symbol and the fee account moved again) each trade is settled under the schedule in force
when its command was sequenced, each fee account holds exactly its trades' fees, a resting
buy held under the old fees is replaced up across the book and fills as taker and then as
maker under the new ones without going short, every asset's total is its deposits, a replay
from the journal's start is the live state, and the database writer files each trade with
the fees the router charged; a change of the margin while a buy rests on another symbol does
not stop the change on this one; on one gateway, the FIX Commission of the maker, the REST
answer's commission of the taker and the router's balances agree to the unit on fees that
floor (7/13 bps on odd notionals, one flooring to 0).

Leads, not shown: once the fee account moves, the old one (holding every fee collected
until then) is no longer "the fee account" to ``add-user``, so ``add-user --account <old>``
hands those fees to a new user (an explicit existing account is allowed by design). A
lowered fee margin is refused while buys rest, though their larger holds would cover it
(README documents any change as refused).
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest

from config.loader import ConfigError, load_profile
from config.schema import RingexConfig
from procs.common.records import CancelOrder, NewOrder, ReplaceOrder, Transfer
from procs.core.accounts import Accounts
from procs.core.fees import FeeChangeError
from procs.gateway.rest import RestApi
from procs.supervisor.preflight import fee_account_user
from tests.scripts_loader import load_script
from tests.unit.dbwriter.journal_gen import write_all
from tests.unit.gateway.harness import Harness, utc
from tests.unit.gateway.rest_rig import ALICE, BOB, LIMIT, client, fix_user, rest_exchange, run
from tests.unit.router.test_router import ADMIN, fund
from tests.unit.supervisor.test_review206_config_change import (
    BTC_USD,
    ETH,
    ETH_USD,
    TRADER,
    USD,
    Rig,
    _same_replay,
    buy,
    changed,
    config,
    funded,
    sell,
    with_symbol,
)

OTHER = 8  # a second trader: the maker and the taker of a trade are different accounts
BPS = 10_000


@pytest.fixture
def cfg(instance: str, tmp_path: Path) -> Iterator[RingexConfig]:
    yield config(instance, tmp_path / "var")


def _fee_account(cfg: RingexConfig, account: int) -> RingexConfig:
    return changed(cfg, risk=msgspec.structs.replace(cfg.risk, fee_account=account))


def _as(command: NewOrder, account: int) -> NewOrder:
    return msgspec.structs.replace(command, account=account)


def _open_buy(accounts: Accounts, symbol: int, account: int) -> int:
    (oid,) = [o for o in accounts.open_buys(symbol) if accounts._orders[o].account == account]
    return oid


# -- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("bps", "said"), [(-5, ">= 0"), (1_001, "<= 1000")])
def test_a_fee_out_of_range_is_refused_at_load_naming_key_value_and_symbol(
    tmp_path: Path, bps: int, said: str
) -> None:
    """Scenario: a config whose maker fee is -5 bps (a rebate) or 1,001 bps.
    Expected: refused at load, naming the key, the value, the bound and the symbol.
    Now: so."""
    path = tmp_path / "fees.toml"
    path.write_text(
        'instance = "t237"\n'
        '[[assets]]\nname = "USD"\nid = 1\ndecimals = 6\n'
        '[[assets]]\nname = "BTC"\nid = 2\ndecimals = 6\n'
        '[[symbols]]\nname = "BTC-USD"\nid = 1\nbase = "BTC"\nquote = "USD"\n'
        f"maker_fee_bps = {bps}\ntaker_fee_bps = 20\n"
        '[[matchers]]\nname = "m1"\nsymbols = ["BTC-USD"]\n'
    )
    with pytest.raises(ConfigError) as refused:
        load_profile(str(path))
    text = str(refused.value)
    assert "symbols[0].maker_fee_bps" in text and str(bps) in text, text
    assert said in text and "BTC-USD" in text, text


# -- three runs under three schedules ------------------------------------------------------------


def _fees(notional: int, maker_bps: int, taker_bps: int) -> tuple[int, int]:
    return notional * maker_bps // BPS, notional * taker_bps // BPS


def test_three_runs_under_three_fee_schedules_settle_and_file_each_trade_under_its_own(
    cfg: RingexConfig, dsn: str
) -> None:
    """Scenario: run 1 (10/20 bps to account 99): trader 7's bids rest on both symbols (10.00
    x 0.10), trader 8 sells 0.03 of ETH into one. Run 2: BTC-USD's fees swapped to 20/10 (the
    margin, 20, kept) and the fee account moved to 98 while both bids rest: 8 offers 0.04 BTC
    at 10.03, 7 replaces its bid (held under the old fees) to 10.03 x 0.10, taking the offer
    as taker, then 8 sells 0.06 at 10.03 into its rest (maker). 7 cancels nothing; its ETH bid
    still rests. Run 3: BTC-USD's fees 35/5 (margin 20 -> 35: no bid rests on BTC-USD) and
    the fee account moved to 97; 7 bids 10.07 x 0.13, 8 takes it.
    Expected: each trade settled under the schedule of its run, each fee account holding
    exactly its run's fees, every asset's total its deposits, no balance short, a replay
    from the journal's start the live state, and the database's rows (the writer run after
    each run under that run's config, restarted from its checkpoint) carrying the fees the
    router charged.
    Now: so."""
    expected: list[tuple[int, int, int, int, int]] = []  # symbol, price, size, maker, taker
    rig = funded(cfg)  # 7: bids of 0.10 at 10.00 on both symbols
    try:
        fund(rig, OTHER, usd=0, btc=10**6)  # type: ignore[arg-type]  # duck: send
        rig.send(ADMIN, Transfer(0, 0, ADMIN, 1, 8003, OTHER, ETH, 10**6, 8003))
        rig.send(1, _as(sell(11, ETH_USD, 1000, 3), OTHER))
        expected.append((ETH_USD, 1000, 3, *_fees(1000 * 3, 10, 20)))
    finally:
        rig.stop()
    write_all(cfg, dsn)  # the writer files each run under that run's config, restarted
    run2 = _fee_account(with_symbol(cfg, "BTC-USD", maker_fee_bps=20, taker_fee_bps=10), 98)
    rig = Rig(run2)
    try:
        accounts = rig.router.sequencer.accounts
        bid = _open_buy(accounts, BTC_USD, TRADER)
        rig.send(1, _as(sell(12, BTC_USD, 1003, 4), OTHER))  # rests: above the bid
        replace = ReplaceOrder(0, 0, 1, 1, 13, TRADER, BTC_USD, bid, price=1003, order_qty=10)
        rig.send(1, replace)  # crosses: 7 takes 0.04 at 10.03
        expected.append((BTC_USD, 1003, 4, *_fees(1003 * 4, 20, 10)))
        rig.send(1, _as(sell(14, BTC_USD, 1003, 6), OTHER))  # 7's rest is the maker now
        expected.append((BTC_USD, 1003, 6, *_fees(1003 * 6, 20, 10)))
        assert accounts.open_buys(BTC_USD) == []
        accounts.validate_internal_state()
    finally:
        rig.stop()
    write_all(run2, dsn)
    run3 = _fee_account(with_symbol(run2, "BTC-USD", maker_fee_bps=35, taker_fee_bps=5), 97)
    rig = Rig(run3)
    try:
        rig.send(1, buy(15, BTC_USD, 1007, 13))
        rig.send(1, _as(sell(16, BTC_USD, 1007, 13), OTHER))
        expected.append((BTC_USD, 1007, 13, *_fees(1007 * 13, 35, 5)))
        accounts = rig.router.sequencer.accounts
        accounts.validate_internal_state()
        for account, rows in ((99, expected[:1]), (98, expected[1:3]), (97, expected[3:])):
            assert accounts.balance(account, USD) == (sum(r[3] + r[4] for r in rows), 0), account
        assert accounts.totals(USD) == 10**9  # only 7 deposited dollars
        assert all(v >= 0 for v in (*accounts._free.values(), *accounts._reserved.values()))
        _same_replay(run3, rig)
    finally:
        rig.stop()
    write_all(run3, dsn)
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT symbol_id, price, size, maker_fee, taker_fee FROM trades ORDER BY seq, trade_id"
        ).fetchall()
    assert [tuple(r) for r in rows] == expected


def test_a_margin_change_on_one_symbol_is_not_held_back_by_bids_on_another(
    cfg: RingexConfig,
) -> None:
    """Scenario: bids rest on both symbols; a restart raises BTC-USD's margin (20 -> 30)
    after 7's BTC-USD bid is cancelled, its ETH-USD bid still resting.
    Expected: the start carries on (no bid holds BTC-USD's old margin), a new BTC-USD bid
    holds the new one, and ETH-USD's margin change would still be refused.
    Now: so."""
    rig = funded(cfg)
    try:
        bid = _open_buy(rig.router.sequencer.accounts, BTC_USD, TRADER)
        rig.send(1, CancelOrder(0, 0, 1, 1, 21, TRADER, BTC_USD, bid))
        assert rig.router.sequencer.accounts.open_buys(BTC_USD) == []
    finally:
        rig.stop()
    raised = with_symbol(cfg, "BTC-USD", taker_fee_bps=30)
    rig = Rig(raised)
    try:
        accounts = rig.router.sequencer.accounts
        before = accounts.balance(TRADER, USD)
        rig.send(1, buy(22, BTC_USD, 1001, 7))
        held = accounts.balance(TRADER, USD)[1] - before[1]
        assert held == 1001 * 7 + -(-1001 * 7 * 30 // BPS)
    finally:
        rig.stop()
    with pytest.raises(FeeChangeError, match="ETH-USD"):
        Rig(with_symbol(raised, "ETH-USD", taker_fee_bps=30))


# -- the views of one trade's fees --------------------------------------------------------------


@pytest.fixture
def odd_fees(instance: str, tmp_path: Path) -> Iterator[Harness]:
    """ALICE (601) with dollars, BOB (602) with bitcoin; BTC-USD's fees 7/13 bps."""

    def reshape(cfg: RingexConfig) -> RingexConfig:
        (btc,) = cfg.symbols
        btc = msgspec.structs.replace(btc, maker_fee_bps=7, taker_fee_bps=13)
        return changed(cfg, symbols=[btc])

    yield from rest_exchange(instance, tmp_path, reshape=reshape)


def _units(text: str, decimals: int = 6) -> int:
    return int(Decimal(text).scaleb(decimals))


def test_the_fix_commission_the_rest_commission_and_the_balances_agree_to_the_unit(
    odd_fees: Harness,
) -> None:
    """Scenario: fees 7/13 bps; ALICE bids over FIX 0.37 at 101.35, BOB sells 0.37 over REST
    (taker), then ALICE bids 0.01 at 0.10 and BOB takes it (a notional whose maker fee
    floors to 0).
    Expected: ALICE's Commission (12) on each fill, BOB's REST fills' commission, and the
    router's balances (ALICE's and BOB's dollars, the fee account's) all say the same fees.
    Now: so."""
    h = odd_fees
    fees_seen: dict[str, list[int]] = {"fix": [], "rest": []}

    async def scenario(api: RestApi, url: str) -> None:
        fix = await fix_user(h, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        try:
            for k, (px, qty) in enumerate((("101.35", "0.37"), ("0.10", "0.01"))):
                await fix.send(
                    "D", (11, f"a{k}"), (55, "BTC-USD"), (54, 1), (38, qty), (40, 2), (44, px),
                    (59, 1), (60, utc()),
                )  # fmt: skip
                assert (await fix.expect("8")).get(39) == b"0"
                answer: dict[str, Any] = await bob.call(
                    "POST", "/api/v1/order", **{**LIMIT, "side": "SELL"}, price=px,
                    quantity=qty, timeInForce="IOC",
                )  # fmt: skip
                fees_seen["rest"] += [_units(f["commission"]) for f in answer["fills"]]
                fill = await fix.expect("8")
                assert fill.get(150) == b"F" and fill.get(13) == b"3", fill
                fees_seen["fix"].append(_units(fill.get(12).decode()))
        finally:
            await bob.close()

    run(h, scenario)
    notionals = [10_135 * 37 * 100, 10 * 1 * 100]  # ticks x lots x USD minor per tick-lot
    assert fees_seen == {
        "fix": [n * 7 // BPS for n in notionals],
        "rest": [n * 13 // BPS for n in notionals],
    }
    assert fees_seen["fix"][1] == 0  # floored to nothing
    accounts = h.router.sequencer.accounts
    total = sum(notionals)
    assert accounts.balance(ALICE, 1) == (10**12 - total - sum(fees_seen["fix"]), 0)
    assert accounts.balance(BOB, 1) == (total - sum(fees_seen["rest"]), 0)
    assert accounts.balance(h.cfg.risk.fee_account, 1)[0] == sum(map(sum, fees_seen.values()))


# -- the fee account on a user's account --------------------------------------------------------


@pytest.fixture
def fee_on_alice(instance: str, tmp_path: Path) -> Iterator[Harness]:
    """The harness's users, with ``risk.fee_account`` moved onto ALICE's account (601)."""
    yield from rest_exchange(instance, tmp_path, reshape=lambda cfg: _fee_account(cfg, ALICE))


def test_a_fee_account_that_is_a_users_account_is_refused(fee_on_alice: Harness) -> None:
    """Scenario: the config's ``risk.fee_account`` is 601, ALICE's account (a typo, or a move
    between two runs); ``ringex admin add-user`` refuses this very pairing ("account 601 is
    the exchange's fee account ... pick another").
    Expected: the gateway refuses to start, or refuses ALICE's logon, naming the fee account:
    no user trades with the exchange's fees.
    Was (fixed): it starts, ALICE logs on over REST, bids and is filled by BOB; every fee of the
    trade, BOB's included, lands in ALICE's free dollars, which she may trade with."""
    h = fee_on_alice
    outcome: list[str] = []

    async def scenario(api: RestApi, url: str) -> None:
        try:
            alice = await client(url, "ALICE", "alice-pw")
        except Exception as exc:  # a refusal of her logon: what is expected
            outcome.append(f"refused: {exc}")
            return
        bob = await client(url, "BOB", "bob-pw")
        try:
            await alice.call("POST", "/api/v1/order", **LIMIT, price="100.00", quantity="1.00")
            await bob.call(
                "POST", "/api/v1/order", **{**LIMIT, "side": "SELL"}, price="100.00",
                quantity="1.00", timeInForce="IOC",
            )  # fmt: skip
            outcome.append("traded")
        finally:
            await alice.close()
            await bob.close()

    try:
        run(h, scenario)
    except Exception as exc:  # the gateway refused to start: what is expected
        outcome.append(f"not started: {exc}")
    if outcome == ["traded"]:
        notional = 10_000 * 100 * 100
        maker, taker = notional * 10 // BPS, notional * 20 // BPS
        accounts = h.router.sequencer.accounts
        # ALICE paid the notional only: her maker fee and BOB's taker fee are hers
        assert accounts.balance(ALICE, 1)[0] == 10**12 - notional + taker
        assert maker and taker
    assert outcome and outcome[0].startswith(("refused", "not started")), outcome
    assert "risk.fee_account = 601" in outcome[0], outcome


def test_a_start_refuses_the_fee_account_on_a_users_account(fee_on_alice: Harness) -> None:
    """Scenario: as above, asked of the start's checks (``ringex run``'s supervisor, before
    any process starts). Expected: refused naming the setting, its value and the user; the
    dev profile's own fee account is no user's. Now: so."""
    said = fee_account_user(fee_on_alice.cfg)
    assert "risk.fee_account = 601" in said and "'ALICE'" in said, said
    assert fee_account_user(_fee_account(fee_on_alice.cfg, 987_654)) == ""


def test_a_promotion_refuses_the_fee_account_on_a_users_account(fee_on_alice: Harness) -> None:
    """Scenario: a standby whose config puts the fee account on ALICE's account, promoted
    (``scripts/failover.py promote``). Expected: refused before the primary is fenced,
    naming the setting (its promoted start would refuse: nothing would run). Now: so."""
    failover = load_script("failover", "r237")
    said = failover.fees_refused(fee_on_alice.cfg)
    assert "would not start" in said and "risk.fee_account = 601" in said, said
