"""The pure cores under random streams (``core_rig.Exchange``): settlement to the unit for any
fees, conservation and release across accounts, symbols and matchers, replay and restore
mid-stream byte-identical, and recovery from files (snapshot + journal tail).
"""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.schema import (
    RingexConfig,
)
from procs.common.journal import EntryLayout, JournalError, list_segments
from procs.common.journal_writer import JournalWriter
from procs.common.records import (
    AdminCommand,
    CancelOrder,
    CreateAccount,
    MassCancel,
    Record,
    Rejected,
    ReplaceOrder,
    Trade,
    Transfer,
)
from procs.common.result_codes import ResultCode
from procs.common.topology import journal_dir
from procs.common.types import (
    AdminAction,
    OrderFlag,
    Side,
    StpMode,
    TimeInForce,
)
from procs.core.accounts import Accounts
from procs.core.engine import Matcher
from procs.core.recovery import Recovered, recover, write_snapshot
from procs.core.sequencer import Sequencer
from procs.core.symbols import symbol_specs
from tests.unit.router.core_rig import (
    ASSETS,
    BTC,
    BTCUSD,
    BUY,
    CODEC,
    DAY,
    ETH,
    ETHUSD,
    FEE,
    FOK,
    GTC,
    IOC,
    LIMIT,
    MARKET,
    MID,
    SECOND,
    SELL,
    STOP,
    STOP_LIMIT,
    TRADERS,
    USD,
    Action,
    Exchange,
    Settle,
    Submit,
    exchange_config,
    funded,
    new_order,
    placed,
)

# -- settlement to the unit, for any fees and scales ---------------------------------------------


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    fees=st.tuples(*(st.integers(0, 1_000) for _ in range(4))),
    orders=st.lists(
        st.tuples(
            st.sampled_from(TRADERS),
            st.sampled_from((BUY, SELL)),
            st.sampled_from((BTCUSD, ETHUSD)),
            st.integers(-3, 3),
            st.integers(1, 7),
            st.sampled_from((GTC, IOC)),
        ),
        min_size=2,
        max_size=25,
    ),
)
def test_every_trade_settles_exactly_whatever_the_fees(
    fees: tuple[int, int, int, int], orders: list[tuple[int, Side, int, int, int, TimeInForce]]
) -> None:
    """An oracle from the trades alone: each side's balances move by the notional, the base
    and floor(notional * bps / 10000) to the unit, the fee account gets the fees, and once
    everything is cancelled nothing is left reserved."""
    cfg = exchange_config(fees=fees, max_notional=0)
    ex = funded(cfg)
    start = {(a, s): sum(ex.accounts.balance(a, s)) for a in (*TRADERS, FEE) for s in ASSETS}
    expect = dict(start)
    bps = {BTCUSD: (fees[0], fees[1]), ETHUSD: (fees[2], fees[3])}
    scale = {BTCUSD: (10, 100, BTC), ETHUSD: (1, 100, ETH)}  # quote, base scale; base asset
    for ref, (account, side, symbol, offset, qty, tif) in enumerate(orders, start=1):
        mid, tick = MID[symbol]
        lots = qty * 2 if symbol == ETHUSD else qty
        ex.submit(
            new_order(account, side, mid + offset * tick, lots, symbol=symbol, ref=ref, tif=tif)
        )
    ex.submit(MassCancel(0, 0, 1, 1, 0, 0, 0))
    for event in ex.settle():
        if isinstance(event, Trade):
            quote_scale, base_scale, base = scale[event.symbol]
            notional = event.price * event.qty * quote_scale
            maker_bps, taker_bps = bps[event.symbol]
            maker_fee, taker_fee = notional * maker_bps // 10_000, notional * taker_bps // 10_000
            if event.aggressor == BUY:
                buyer, seller = event.taker_account, event.maker_account
                buy_fee, sell_fee = taker_fee, maker_fee
            else:
                buyer, seller = event.maker_account, event.taker_account
                buy_fee, sell_fee = maker_fee, taker_fee
            expect[(buyer, USD)] -= notional + buy_fee
            expect[(buyer, base)] += event.qty * base_scale
            expect[(seller, USD)] += notional - sell_fee
            expect[(seller, base)] -= event.qty * base_scale
            expect[(FEE, USD)] += buy_fee + sell_fee
    got = {key: ex.accounts.balance(*key) for key in start}
    assert got == {key: (value, 0) for key, value in expect.items()}
    ex.check()


# -- random streams of everything, across accounts, symbols and matchers ---------------------------

OPS: tuple[str, ...] = ("new",) * 14 + ("cancel",) * 3 + ("replace",) * 5 + ("settle",) * 6
OPS += ("transfer", "transfer", "mass", "admin", "create")
op_strategy = st.tuples(
    st.sampled_from(OPS), st.lists(st.integers(0, 999), min_size=10, max_size=10)
)
Op = tuple[str, list[int]]

KINDS = (LIMIT,) * 6 + (MARKET, STOP, STOP_LIMIT)
TIFS = (GTC, GTC, GTC, DAY, IOC, FOK)
ADMIN = (AdminAction.RESUME,) * 4 + (AdminAction.HALT, AdminAction.END_OF_SESSION)


@dataclass
class Driver:
    """Turns abstract ops into concrete commands for the exchange's current state (recent
    orders to cancel or replace, client refs to reuse), and records what it did."""

    ex: Exchange
    now: int = SECOND
    refs: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    tape: list[Action] = field(default_factory=list)
    sent: list[tuple[int, int]] = field(default_factory=list)  # (account, ref) of new orders
    steps: tuple[int, ...] = (0, 1_000, 1_000_000, SECOND)  # how far the clock moves per op

    def run(self, op: Op) -> None:
        kind, v = op
        self.now += self.steps[v[8] % len(self.steps)]
        if kind == "settle":
            self.do(Settle(("m1", "m2")[v[0] % 2], v[9] % 16))
            return
        account = TRADERS[v[0] % 3]
        symbol = (BTCUSD, ETHUSD)[v[1] % 2]
        target = 1 + v[4] % (self.ex.sequencer.next_order_id + 1)  # maybe unknown or gone
        live = self.ex.fast[("m1", "m2")[v[1] % 2]].books[symbol]
        recent = sorted({*live.orders, *live.stops})
        if kind in ("cancel", "replace") and recent and v[5] % 8:
            target = recent[v[4] % len(recent)]
            account, symbol = self.ex.owners[target]
            if v[6] % 12 == 0:
                account = TRADERS[(TRADERS.index(account) + 1) % 3]  # not the owner
        mid, tick = MID[symbol]
        offset = v[2] % 17 - 8 if v[3] % 10 else v[2] % 81 - 40  # now and then past the collar
        price = mid + offset * tick
        qty = 1 + v[7] % 12 if symbol == BTCUSD else 2 * (1 + v[7] % 12) - (v[7] % 23 == 0)
        ref = next(self.refs)
        command: Record
        if kind == "new":
            ord_type = KINDS[v[3] % len(KINDS)]
            tif = TIFS[v[9] % len(TIFS)]
            rests = ord_type in (LIMIT, STOP_LIMIT) and tif in (GTC, DAY)
            stop = mid + tick * (v[5] % 9 - 4) if ord_type in (STOP, STOP_LIMIT) else 0
            if ord_type in (MARKET, STOP):
                price = (0, 0, 0, price)[v[6] % 4]
            if v[0] % 20 == 0 and self.sent:  # a client order id this session used before
                account, ref = self.sent[v[1] % len(self.sent)]
            self.sent.append((account, ref))
            command = new_order(
                *(account, (BUY, SELL)[v[2] % 2], price, qty),
                symbol=symbol,
                ref=ref,
                kind=ord_type,
                tif=tif,
                flags=OrderFlag.POST_ONLY if rests and ord_type == LIMIT and v[8] % 7 == 0 else 0,
                stp=list(StpMode)[v[9] % 4],
                stop=stop,
                display=min(qty, (0, 0, 0, 2, 4)[v[9] % 5]) if rests else 0,
            )
        elif kind == "cancel":
            command = CancelOrder(0, 0, 1, account, ref, account, symbol, target)
        elif kind == "replace":
            qty = 0 if v[9] % 15 == 0 else qty
            command = ReplaceOrder(0, 0, 1, account, ref, account, symbol, target, price, qty)
        elif kind == "transfer":
            asset = ASSETS[v[1] % 3]
            amount = (1 + v[7]) * (10**5 if asset == USD else 10**3) * (-1 if v[3] % 2 else 1)
            key = 1_000 + v[4] % 40  # few keys: reuse with other amounts and accounts
            command = Transfer(0, 0, 1, account, ref, account, asset, amount, key)
        elif kind == "mass":
            whose, where = (0, account)[v[3] % 2], (0, symbol)[v[5] % 2]
            command = MassCancel(0, 0, 1, account, ref, whose, where)
        elif kind == "admin":
            command = AdminCommand(0, 0, ADMIN[v[3] % len(ADMIN)], (0, BTCUSD, ETHUSD)[v[5] % 3], 0)
        else:
            command = CreateAccount(0, 0, 1, 1, ref, 1 + v[3] % 5)
        self.do(Submit(command, self.now))

    def do(self, action: Action) -> None:
        self.tape.append(action)
        self.ex.do(action)
        self.ex.check()

    def finish(self) -> None:
        """Settle, then cancel everything and settle again: nothing may stay reserved."""
        self.do(Settle("m1", 10**6))
        self.do(Settle("m2", 10**6))
        self.do(Submit(MassCancel(0, 0, 1, 1, next(self.refs), 0, 0), self.now))
        self.do(Settle("m1", 10**6))
        self.do(Settle("m2", 10**6))


def replayed(cfg: RingexConfig, journal: Iterable[Record]) -> Recovered:
    """The journal through recovery's own path (``Recovered.apply``), from nothing."""
    sequencer = Sequencer(cfg, Accounts(cfg))
    matchers = {m.name: Matcher(symbol_specs(cfg, m.name)) for m in cfg.matchers}
    recovered = Recovered(sequencer, matchers, 0, 0, 0, 0.0)
    for command in journal:
        recovered.apply(command)
        sequencer.accounts.validate_internal_state()
    return recovered


def run_tape(ex: Exchange, tape: Sequence[Action]) -> None:
    for action in tape:
        ex.do(action)


STREAM_CFG = exchange_config(max_open=12)


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(ops=st.lists(op_strategy, min_size=20, max_size=90), cut=st.floats(0, 1))
def test_random_streams_conserve_release_replay_and_restore(ops: list[Op], cut: float) -> None:
    """After every step: books agree, state valid, nothing negative, money conserved. At the
    end, with everything cancelled: nothing reserved or open, no client order id held. The
    journal replayed through recovery's path ends in the same state; a copy restored from
    snapshots mid-stream (events in flight) then produces byte-identical output; and a second
    run of the same input is byte-identical from the start."""
    driver = Driver(funded(STREAM_CFG))
    restore_at = min(int(cut * len(ops)), len(ops) - 1)
    copy, mark, out_mark = driver.ex, 0, 0
    for i, op in enumerate(ops):
        if i == restore_at:
            copy, mark, out_mark = driver.ex.restored(), len(driver.tape), len(driver.ex.out)
            assert copy.hashes() == driver.ex.hashes()
        driver.run(op)
    driver.finish()
    ex = driver.ex
    for account in (*TRADERS, FEE, 4, 5):
        for asset in ASSETS:
            assert ex.accounts.balance(account, asset)[1] == 0
        assert ex.accounts.open_orders(account) == 0
    assert ex.accounts.state().orders == []
    assert ex.sequencer.state().live_client_ids == []

    recovered = replayed(STREAM_CFG, ex.journal)
    assert recovered.sequencer.accounts.state_hash() == ex.accounts.state_hash()
    assert {n: m.state_hash() for n, m in recovered.matchers.items()} == {
        n: m.state_hash() for n, m in ex.fast.items()
    }
    assert recovered.sequencer.state().live_client_ids == []

    run_tape(copy, driver.tape[mark:])
    assert copy.out == ex.out[out_mark:]
    assert copy.hashes() == ex.hashes()

    again = funded(STREAM_CFG)
    run_tape(again, driver.tape)
    assert again.out == ex.out and again.hashes() == ex.hashes()


def test_rate_limited_streams_stay_consistent() -> None:
    """A tight rate limit and a small open-order cap refuse much of a seeded stream; what is
    refused must leave no trace (the checks run after every step)."""
    cfg = exchange_config(rate=5, max_open=2, max_notional=400_000)
    rng = random.Random(11)
    ops: list[Op] = [
        (rng.choice(OPS), [rng.randrange(1000) for _ in range(10)]) for _ in range(400)
    ]
    driver = Driver(funded(cfg), steps=(0, 1_000_000, 10_000_000))
    for op in ops:
        driver.run(op)
    driver.finish()
    refused = [r for r in map(CODEC.decode_slot, driver.ex.out) if isinstance(r, Rejected)]
    codes = {r.code for r in refused if r.seq == 0}
    assert {ResultCode.ACCOUNT_RATE_LIMITED, ResultCode.TOO_MANY_OPEN_ORDERS} <= codes
    assert driver.ex.accounts.state().orders == []
    assert replayed(cfg, driver.ex.journal).sequencer.accounts.state_hash() == (
        driver.ex.accounts.state_hash()
    )


# -- crash recovery from files: snapshot + journal tail == the whole journal == live ---------------


def test_recovery_from_a_mid_stream_snapshot_equals_a_full_replay_and_live(tmp_path: Path) -> None:
    cfg = exchange_config(var_dir=str(tmp_path))
    rng = random.Random(3)
    driver = Driver(funded(cfg))
    for _ in range(300):
        driver.run((rng.choice(OPS), [rng.randrange(1000) for _ in range(10)]))
    driver.do(Settle("m1", 10**6))
    driver.do(Settle("m2", 10**6))
    journal = driver.ex.journal
    half = len(journal) // 2
    images = [CODEC.encode_slot(command) for command in journal]
    with JournalWriter(
        journal_dir(cfg), slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id, fsync="none"
    ) as writer:
        writer.append(1, b"".join(images[:half]), half)
        write_snapshot(cfg, recover(cfg))  # what the router's forked snapshot job does
        writer.append(half + 1, b"".join(images[half:]), len(images) - half)
    from_snapshot = recover(cfg)
    full = recover(cfg, use_snapshot=False)
    assert (from_snapshot.snapshot_seq, from_snapshot.replayed) == (half, len(journal) - half)
    assert from_snapshot.state_hashes() == full.state_hashes()
    live = driver.ex
    assert full.state_hashes() == {
        "router": live.accounts.state_hash(),
        **{f"matcher {n}": m.state_hash() for n, m in live.fast.items()},
    }
    seq = from_snapshot.sequencer
    assert (seq.next_seq, seq.next_order_id) == (
        live.sequencer.next_seq,
        live.sequencer.next_order_id,
    )
    assert seq.state().live_client_ids == live.sequencer.state().live_client_ids


def test_a_snapshot_newer_than_the_journal_is_refused(tmp_path: Path) -> None:
    cfg = exchange_config(var_dir=str(tmp_path))
    ex = funded(cfg)
    for ref in range(5):
        placed(ex, new_order(1, BUY, 9_000 + 5 * ref, 1, ref=ref))
    images = b"".join(CODEC.encode_slot(command) for command in ex.journal)
    with JournalWriter(
        journal_dir(cfg), slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id, fsync="none"
    ) as writer:
        writer.append(1, images, len(ex.journal))
    write_snapshot(cfg, recover(cfg))
    _, segment = list_segments(journal_dir(cfg))[-1]
    lost = 3 * EntryLayout(CODEC.slot_size).size  # the unsynced tail, gone in a power cut
    os.truncate(segment, segment.stat().st_size - lost)
    last = len(ex.journal) - 3
    with pytest.raises((JournalError, ValueError), match=f"{last}"):
        recover(cfg)
