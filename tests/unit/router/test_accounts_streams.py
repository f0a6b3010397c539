"""Random command streams through the real matcher behind the accounts core: money is
conserved, no balance goes negative, state stays valid after every step, snapshots round-trip,
and a replay of the journal that settles at once accepts every command and ends equal."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.schema import RingexConfig
from procs.common.records import (
    AdminCommand,
    CreateAccount,
    MassCancel,
    NewOrder,
    Record,
    ReplaceOrder,
    Transfer,
)
from procs.common.types import AdminAction, OrderFlag, StpMode
from procs.core.accounts import Accounts
from tests.unit.router.test_accounts import (
    ASSETS,
    BTCUSD,
    BUY,
    DAY,
    ETHUSD,
    FOK,
    GTC,
    IOC,
    LIMIT,
    MARKET,
    OK,
    SELL,
    STOP,
    STOP_LIMIT,
    USD,
    Desk,
    config,
)

TRADERS = (1, 2, 3)


def _stream_step(data: st.DataObject, desk: Desk) -> None:
    """One random command, as a gateway might send it (many of them refused somewhere)."""
    op = data.draw(st.sampled_from(("new",) * 8 + ("cancel",) * 2 + ("replace",) * 3 + ("other",)))
    owner = data.draw(st.sampled_from(TRADERS))
    symbol = data.draw(st.sampled_from((BTCUSD, ETHUSD)))
    oid = data.draw(st.integers(1, desk.next_id + 1))
    if op in ("cancel", "replace") and desk.owners and data.draw(st.integers(0, 9)):
        oid = data.draw(st.sampled_from(sorted(desk.owners)[-10:]))  # a recent order, as its owner
        owner, symbol = desk.owners[oid]
    mid, tick = (10_000, 10) if symbol == BTCUSD else (1_000, 5)
    price = mid + tick * data.draw(st.integers(-5, 5))
    qty = data.draw(st.integers(1, 20))
    if op == "new":
        kind = data.draw(st.sampled_from((LIMIT, LIMIT, LIMIT, MARKET, STOP, STOP_LIMIT)))
        stop = mid + tick * data.draw(st.integers(-3, 3)) if kind in (STOP, STOP_LIMIT) else 0
        if kind in (MARKET, STOP):
            price = data.draw(st.sampled_from((0, 0, 0, price)))  # mostly no cap of its own
        tif = data.draw(st.sampled_from((GTC, GTC, GTC, IOC, FOK, DAY)))
        rests = kind in (LIMIT, STOP_LIMIT) and tif in (GTC, DAY)
        display = data.draw(st.sampled_from((0, 0, 0, 1, 3))) if rests else 0
        post_only = rests and kind == LIMIT and data.draw(st.integers(0, 9)) == 0
        desk.new(
            *(owner, data.draw(st.sampled_from((BUY, SELL))), price, qty),
            symbol=symbol,
            kind=kind,
            tif=tif,
            stop=stop,
            flags=OrderFlag.POST_ONLY if post_only else 0,
            display=min(display, qty),
            stp=data.draw(st.sampled_from(list(StpMode))),
        )
    elif op == "cancel":
        desk.cancel(owner, oid, symbol)
    elif op == "replace":
        desk.replace(owner, oid, price, qty, symbol)
    else:
        other = data.draw(
            st.sampled_from(
                ("deposit",) * 3 + ("withdraw",) * 3 + ("mass", "eos", "halt") + ("resume",) * 3
            )
        )
        if other in ("deposit", "withdraw"):
            asset = data.draw(st.sampled_from(ASSETS))
            amount = data.draw(st.integers(1, 5_000_000 if asset == USD else 5_000))
            key = data.draw(st.integers(0, 30))  # few keys: duplicates happen
            desk.transfer(owner, asset, amount if other == "deposit" else -amount, key)
        elif other == "mass":
            account = data.draw(st.sampled_from((0, owner)))
            desk.command(
                MassCancel(0, 0, 1, 1, 0, account, data.draw(st.sampled_from((0, symbol))))
            )
        else:
            action = {"eos": AdminAction.END_OF_SESSION, "halt": AdminAction.HALT}.get(
                other, AdminAction.RESUME
            )
            desk.command(AdminCommand(0, 0, action, symbol, 0))


def replay(cfg: RingexConfig, journal: list[Record]) -> Accounts:
    """What recovery does: each journaled command re-checked (it must pass) and executed,
    its events applied at once (sooner than the live router saw them)."""
    desk = Desk(cfg)
    for command in journal:
        if isinstance(command, CreateAccount):
            assert desk.accounts.create_account(command.account) == OK
        elif isinstance(command, Transfer):
            code = desk.accounts.transfer(
                command.account, command.asset, command.amount, command.key
            )
            assert code == OK, command
        elif isinstance(command, NewOrder):
            code, order = desk.accounts.reserve_new(command)
            assert (code, order) == (OK, command)
        elif isinstance(command, ReplaceOrder):
            assert desk.accounts.reserve_replace(command) == OK, command
        if not isinstance(command, CreateAccount | Transfer):
            for event in desk.matcher.execute(command):
                desk.accounts.apply(event)
        desk.accounts.validate_internal_state()
    return desk.accounts


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.data())
def test_random_streams_keep_money_conserved_and_replay_equal(data: st.DataObject) -> None:
    cfg = config(max_open=8, max_notional=1_500_000)
    desk = Desk(cfg, prompt=False)
    for account in TRADERS:
        desk.fund(
            account,
            usd=data.draw(st.integers(1, 40_000_000)),
            btc=data.draw(st.integers(1, 20_000)),
            eth=data.draw(st.integers(1, 20_000)),
        )
    steps = data.draw(st.integers(10, 60))
    restore_at = data.draw(st.integers(0, steps))
    for step in range(steps):
        _stream_step(data, desk)
        desk.settle(data.draw(st.integers(0, 12)))  # the router's lag behind the matcher
        desk.check()
        if step == restore_at:
            snapshot = desk.accounts.snapshot()
            restored = Accounts.restore(cfg, snapshot)
            assert restored.state_hash() == desk.accounts.state_hash()
            desk.accounts = restored
    desk.settle()
    desk.check()
    assert replay(cfg, desk.journal).state_hash() == desk.accounts.state_hash()
