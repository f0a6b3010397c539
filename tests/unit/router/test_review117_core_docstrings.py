"""Review 117: the docstrings (module, class, function and ``#:`` comments) of the router's
pure core held to the code. This file: ``sequencer.py``, ``accounts.py`` (reservations, caps,
replaces, limits, rejects) and ``money.py``; ``..._docstrings2.py``: ``accounts.py``'s sell
notional and transfers, ``fees.py``, ``settlement.py``, ``transfer_keys.py``, ``watches.py``,
``symbol_rules.py``, ``recovery.py``, ``replay_pipeline.py``, ``account_orders.py`` and
``accounts_state.py``.

Convention: every test anchors its claim with a verbatim quote of the docstring it checks
(whitespace folded, ``_says``), so a reworded docstring fails here loudly; then it runs the
claim against the code: a ``Sequencer`` in front of a ``Matcher`` fed by hand (review 107's
``Exchange``; ``core_rig.Exchange`` where the router's lag matters) or the function itself
on small inputs. A claim found right is a plain test; a disagreement is a strict xfail that
asserts what the docstring says, its reason naming the side to fix.

Disagreements found (both fixed on the docstring side since, no money bug; the second is
checked in part two):

- ``sequencer.py`` module: a refused command with "an unknown symbol" gets "a reply to the
  gateway", but an ``AdminCommand`` for an unknown symbol is dropped with no reply.
- ``Accounts.market_sell_notional``: "NO_REFERENCE_PRICE for a market sell before the first
  trade", but only under a notional limit (``max_order_notional`` 0: OK).

No real bug was found: random streams (lagged settlement, replaces, transfers, mass cancels,
admin commands) kept every balance non-negative, every asset's total at its deposits less
withdrawals, no settled event lowered a free balance, and a replay of the journal ended in
the live run's state.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable
from types import ModuleType

import msgspec
import pytest

from procs.common.journal import ReplayError
from procs.common.records import (
    AccountReply,
    AdminCommand,
    CancelOrder,
    CreateAccount,
    FeeSchedule,
    MassCancel,
    NewOrder,
    Record,
    Rejected,
    ReplaceOrder,
    SymbolRules,
    Trade,
    Transfer,
)
from procs.common.result_codes import ResultCode
from procs.common.topology import ADMIN_GATEWAY
from procs.common.types import AdminAction, OrderFlag, Side
from procs.core import accounts as accounts_mod
from procs.core import fees, money, sequencer
from procs.core.accounts import REPLACES_WEIGHED, Accounts
from procs.core.money import Market
from procs.core.sequencer import NOWHERE, Decision, Sequencer, answered_again, route_all
from tests.unit.router import core_rig
from tests.unit.router.core_rig import funded, new_order
from tests.unit.test_review107_router import BTC, BTCUSD, USD, Exchange, _config

BUY, SELL = Side.BUY, Side.SELL
OK = ResultCode.OK
LIMIT, MARKET, STOP = core_rig.LIMIT, core_rig.MARKET, core_rig.STOP
IOC = core_rig.IOC


def _fold(text: str) -> str:
    return " ".join(text.split())


def _says(where: object, quote: str) -> None:
    """``where``'s docstring (or a module's ``#:`` comments) still says ``quote``."""
    if isinstance(where, ModuleType):  # the module docstring and its ``#:`` comments
        lines = inspect.getsource(where).splitlines()
        text = " ".join(line.strip().removeprefix("#:") for line in lines)
    else:
        text = inspect.getdoc(where) or ""
    assert _fold(quote) in _fold(text), f"{where!r} no longer says {quote!r}"


def _code(reply: object) -> ResultCode:
    return reply.code if isinstance(reply, (Rejected, AccountReply)) else OK


def _order(account: int, side: Side, price: int, qty: int, ref: int, **kw: object) -> NewOrder:
    fields: dict[str, object] = {"symbol": BTCUSD, "ref": ref} | kw
    return new_order(account, side, price, qty, **fields)  # type: ignore[arg-type]


# -- sequencer.py --------------------------------------------------------------------------------


def test_refused_commands_get_a_reply_no_seq_and_change_nothing() -> None:
    """sequencer.py: "refused (rate limit, duplicate client order id, a risk check, an unknown
    symbol): a reply to the gateway (``Rejected`` or ``AccountReply`` with the code), no
    sequence number, nothing journaled" (``Sequencer.submit``)."""
    _says(sequencer, "refused (rate limit, duplicate client order id, a risk check, an unknown")
    _says(sequencer, "a reply to the gateway (``Rejected`` or ``AccountReply`` with the code),")
    _says(sequencer, "no sequence number, nothing journaled;")
    ex = Exchange(_config(rate=3))
    ex.open(5, usd=1_000)
    ex.send(_order(5, BUY, 100, 1, 9))
    cases = [
        (_order(5, BUY, 100, 1, 9), ResultCode.DUPLICATE_CLIENT_ORDER_ID),
        (_order(5, BUY, 100, 1, 10, symbol=42), ResultCode.UNKNOWN_SYMBOL),
        (_order(5, BUY, 10_000, 1, 11), ResultCode.INSUFFICIENT_BALANCE),
        (Transfer(0, 0, 1, 1, 12, 5, USD, -(10**9), 12), ResultCode.INSUFFICIENT_BALANCE),
        (_order(5, BUY, 100, 1, 13), ResultCode.ACCOUNT_RATE_LIMITED),
    ]
    for command, code in cases:
        before = (ex.seq.next_seq, ex.seq.next_order_id, ex.seq.accounts.snapshot())
        decision = ex.seq.submit(command, ex.now)
        assert decision.command is None and decision.matchers == NOWHERE
        assert isinstance(decision.reply, (Rejected, AccountReply)), command
        assert (_code(decision.reply), decision.reply.seq) == (code, 0)
        assert (ex.seq.next_seq, ex.seq.next_order_id, ex.seq.accounts.snapshot()) == before


def test_an_admin_command_for_an_unknown_symbol_is_dropped() -> None:
    """sequencer.py: "an admin command for no symbol of ours is dropped unanswered" (review
    117: the docstring had every refusal answered): an ``AdminCommand`` for symbol 42
    (``Sequencer.submit``)."""
    _says(sequencer, "an admin command for no symbol of ours is dropped unanswered")
    ex = Exchange(_config())
    decision = ex.seq.submit(AdminCommand(0, 0, AdminAction.HALT, 42, 7), 5)
    assert decision.command is None
    assert decision.reply is None


def test_accepted_commands_are_stamped_and_routed() -> None:
    """sequencer.py: "accepted: the command stamped with the next global ``seq`` and ``ts_ns
    = now_ns`` (a new order also gets the next ``order_id``), plus where it goes: the matcher
    that owns its symbol (every matcher for a symbol-0 mass cancel or admin command), or
    nowhere for an account command, ...; an accepted mass cancel's gateway gets ``Rejected``
    with code OK then" (``Sequencer.submit``, two matchers)."""
    _says(sequencer, "accepted: the command stamped with the next global ``seq`` and ``ts_ns")
    _says(sequencer, "(every matcher for a symbol-0 mass cancel or admin command), or nowhere")
    _says(sequencer, "cancel's gateway gets ``Rejected`` with code OK then")
    ex = funded(core_rig.exchange_config())
    seq = ex.sequencer
    first, oid = seq.next_seq, seq.next_order_id
    d = seq.submit(new_order(1, BUY, 10_000, 1, symbol=core_rig.ETHUSD, ref=1), 77)
    assert isinstance(d.command, NewOrder) and d.matchers == ("m2",)
    assert (d.command.seq, d.command.ts_ns, d.command.order_id) == (first, 77, oid)
    mass = seq.submit(MassCancel(0, 0, 1, 1, 2, 1, 0), 78)
    assert mass.matchers == ("m1", "m2") and isinstance(mass.command, MassCancel)
    assert (mass.command.seq, mass.command.ts_ns) == (first + 1, 78)
    assert isinstance(mass.reply, Rejected) and mass.reply.code == OK
    admin = seq.submit(AdminCommand(0, 0, AdminAction.HALT, 0, 3), 79)
    assert admin.matchers == ("m1", "m2")
    acct = seq.submit(CreateAccount(0, 0, 1, 1, 4, 50), 80)
    assert acct.matchers == NOWHERE and isinstance(acct.reply, AccountReply)
    assert acct.reply.seq == acct.command.seq == first + 3  # type: ignore[union-attr]


def test_events_at_or_below_settled_upto_are_ignored() -> None:
    """sequencer.py: "Events of a command at or below ``settled_upto`` were applied already
    (a replay after a restart covered them) and are ignored, so a restarted router never
    settles twice." (``Sequencer.settle``, ``applied``)."""
    _says(sequencer, "Events of a command at or below ``settled_upto`` were applied already")
    _says(sequencer, "are ignored, so a restarted router never settles twice.")
    _says(Sequencer.applied, "Every event of every command up to ``upto_seq`` has been applied.")
    ex = Exchange(_config())
    ex.open(5, usd=100_000)
    ex.open(6, btc=10)
    ex.order(6, SELL, 100, 2)
    d = ex.seq.submit(_order(5, BUY, 100, 2, 50), 99)
    assert d.command is not None
    events = ex.matcher.execute(d.command)
    assert any(isinstance(e, Trade) for e in events)
    ex.seq.applied(d.command.seq)  # type: ignore[attr-defined]
    before = ex.seq.accounts.snapshot()
    ex.seq.settle(events)
    assert ex.seq.accounts.snapshot() == before
    ex.seq.settled_upto -= 1  # one below: the same events settle
    ex.seq.settle(events)
    assert ex.balance(5, BTC) == (2, 0)


def test_replay_skips_rate_and_duplicates_but_insists_on_the_balance() -> None:
    """sequencer.py: "each is replayed through ``replay(command)``, which applies it without
    the soft checks (rate, duplicates) and insists that the risk checks pass again";
    ``Sequencer.replay``: "the counters follow the journal"."""
    _says(sequencer, "which applies it without the soft checks (rate, duplicates) and insists")
    _says(Sequencer.replay, "the counters follow the journal, and the risk checks must pass again")
    cfg = _config(rate=1)
    live = Exchange(_config())
    live.open(5, usd=1_000)
    journal: list[Record] = []
    for ref in (1, 1):  # one client ref twice (done in between), faster than rate 1
        d = live.seq.submit(_order(5, BUY, 100, 1, ref), live.now)
        assert isinstance(d.command, NewOrder)
        live.seq.settle(live.matcher.execute(d.command))
        c = live.seq.submit(CancelOrder(0, 0, 1, 5, 0, 5, BTCUSD, d.command.order_id), live.now)
        assert c.command is not None
        live.seq.settle(live.matcher.execute(c.command))
        journal += [d.command, c.command]
    again = Sequencer(cfg, Accounts(cfg))
    again.fee_changes(0)
    for record in [CreateAccount(2, 0, 1, 1, 1, 5), Transfer(3, 0, 1, 1, 2, 5, USD, 1_000, 2)]:
        again.replay(record)
    with pytest.raises(ReplayError, match="seq"):
        again.replay(journal[1])
    for command in journal:
        again.replay(command)
    poor = msgspec.structs.replace(journal[0], seq=again.next_seq, order_id=again.next_order_id)
    poor = msgspec.structs.replace(poor, price=10_000)
    with pytest.raises(ReplayError, match="INSUFFICIENT_BALANCE"):
        again.replay(poor)


def test_mass_cancel_rate_admin_gateway_unknown_account() -> None:
    """``Sequencer._mass_cancel``: "A mass cancel draws on the account's command rate like any
    other command ..., except the operator's (the admin gateway's) ... The gateway is told
    the verdict either way (``Rejected`` with the code; OK once the command is durable) ...
    An account never opened is refused"."""
    _says(Sequencer._mass_cancel, "A mass cancel draws on the account's command rate like any")
    _says(Sequencer._mass_cancel, "except the operator's (the admin gateway's)")
    _says(Sequencer._mass_cancel, "The gateway is told the verdict either way")
    _says(Sequencer._mass_cancel, "An account never opened is refused")
    ex = Exchange(_config(rate=1))
    ex.open(5)
    codes = []
    for gateway in (1, 1, ADMIN_GATEWAY, ADMIN_GATEWAY):
        d = ex.seq.submit(MassCancel(0, 0, gateway, 1, 1, 5, 0), 10)
        assert isinstance(d.reply, Rejected) and (d.command is None) == (d.reply.code != OK)
        codes.append(d.reply.code)
    assert codes == [OK, ResultCode.ACCOUNT_RATE_LIMITED, OK, OK]
    for account, symbol, code in ((77, 0, ResultCode.UNKNOWN_ACCOUNT), (5, 9, "UNKNOWN_SYMBOL")):
        d = ex.seq.submit(MassCancel(0, 0, ADMIN_GATEWAY, 1, 1, account, symbol), 10)
        assert d.command is None and _code(d.reply).name == getattr(code, "name", code)


def test_rate_is_a_token_bucket_per_account() -> None:
    """``Sequencer._allow``: "A token bucket per account: ``max_commands_per_s`` deep, refilled
    at that rate." (new orders of two accounts at rate 4)."""
    _says(Sequencer._allow, "A token bucket per account: ``max_commands_per_s`` deep, refilled")
    ex = Exchange(_config(rate=4))
    ex.open(5, usd=10**6)
    ex.open(6, usd=10**6)
    t = 10**12

    def at(account: int, now: int, ref: int) -> ResultCode:
        return _code(ex.seq.submit(_order(account, BUY, 1, 1, ref), now).reply)

    assert [at(5, t, r) for r in range(5)] == [OK] * 4 + [ResultCode.ACCOUNT_RATE_LIMITED]
    assert at(6, t, 99) == OK  # another account's own bucket
    assert at(5, t + 200_000_000, 7) == ResultCode.ACCOUNT_RATE_LIMITED  # 0.8 of a token
    assert at(5, t + 250_000_000, 8) == OK  # a quarter second: one token


def test_fee_changes_refused_whole_while_buys_hold_the_margin() -> None:
    """``Sequencer.fee_changes``: "The configured fees and fee account the state does not hold
    yet, sequenced and applied ... Raises ``FeeChangeError`` when open buys forbid a change
    (nothing is applied then)."; fees.py: "a change of that margin while buys rest ... is
    refused, naming the symbol and the orders"."""
    _says(Sequencer.fee_changes, "Raises ``FeeChangeError`` when open buys forbid a change")
    _says(Sequencer.fee_changes, "(nothing is applied then)")
    _says(fees, "so it is refused, naming the symbol and the orders (``set_schedule``)")
    ex = Exchange(_config(maker=10, taker=20))
    ex.open(5, usd=10**6)
    oid = ex.seq.next_order_id
    ex.order(5, BUY, 100, 3)
    moved = Sequencer.restore(_config(maker=10, taker=30), ex.seq.snapshot())
    before = (moved.next_seq, moved.accounts.snapshot())
    with pytest.raises(fees.FeeChangeError, match=rf"symbol BTC-USD:.*orders {oid}\)"):
        moved.fee_changes(0)
    assert (moved.next_seq, moved.accounts.snapshot()) == before
    swapped = Sequencer.restore(_config(maker=20, taker=10), ex.seq.snapshot())
    [record] = swapped.fee_changes(5)  # the same margin: allowed with the buy resting
    assert (record.seq, record.ts_ns, record.maker_bps, record.taker_bps) == (before[0], 5, 20, 10)
    assert swapped.accounts.fee_schedule[BTCUSD] == (20, 10)


def test_rules_changes_only_what_the_state_has_not_journaled() -> None:
    """``Sequencer.rules_changes``: "The configured symbol rules this state has not journaled
    (a symbol's first, or changed), sequenced and recorded in ``rules``"."""
    _says(Sequencer.rules_changes, "The configured symbol rules this state has not journaled")
    _says(Sequencer.rules_changes, "(a symbol's first, or changed), sequenced and recorded in")
    cfg = core_rig.exchange_config()
    seq = Sequencer(cfg, Accounts(cfg))
    first = seq.rules_changes(3)
    assert [(r.symbol, r.seq, r.ts_ns) for r in first] == [(1, 1, 3), (2, 2, 3)]
    assert seq.rules_changes(4) == [] and set(seq.rules) == {1, 2}
    eth = msgspec.structs.replace(cfg.symbols[1], band_bps=444)
    changed = msgspec.structs.replace(cfg, symbols=[cfg.symbols[0], eth])
    again = Sequencer.restore(changed, seq.snapshot())
    [record] = again.rules_changes(5)
    assert (record.symbol, record.band_bps, record.seq) == (2, 444, 3)


def test_matchers_for_and_route_all() -> None:
    """``Sequencer.matchers_for``: "its symbol's owner (an order, the symbol's rules); every
    matcher for a symbol-0 mass cancel or admin command; none for an account command or
    fees"; ``route_all``: "Group sequenced commands by matcher, keeping their order."."""
    _says(Sequencer.matchers_for, "its symbol's owner (an order, the symbol's rules); every")
    _says(Sequencer.matchers_for, "none for an account command or fees")
    _says(route_all, "Group sequenced commands by matcher, keeping their order.")
    cfg = core_rig.exchange_config()
    seq = Sequencer(cfg, Accounts(cfg))
    rules = SymbolRules(1, 0, 2, 1, 1, 1, 1, 1, 1, 0)
    assert seq.matchers_for(rules) == ("m2",)
    assert seq.matchers_for(new_order(1, BUY, 1, 1)) == ("m1",)
    assert seq.matchers_for(MassCancel(1, 0, 1, 1, 1, 0, 0)) == ("m1", "m2")
    assert seq.matchers_for(AdminCommand(1, 0, AdminAction.HALT, 0, 0)) == ("m1", "m2")
    for command in (FeeSchedule(1, 0, 1, 1, 1, 99), CreateAccount(1, 0, 1, 1, 1, 5)):
        assert seq.matchers_for(command) == NOWHERE
    a, b, c = (new_order(1, BUY, 1, 1, ref=r) for r in range(3))
    decisions = [Decision(a, ("m1",)), Decision(None), Decision(b, ("m1", "m2")), Decision(c)]
    assert route_all(decisions) == {"m1": [a, b], "m2": [b]}


def test_answered_again() -> None:
    """``answered_again``: "The OK a journaled command read again after a restart gets ...: a
    mass cancel's acknowledgement, an account command's ``AccountReply`` (an order's answers
    come from its matcher)"."""
    _says(answered_again, "a mass cancel's acknowledgement, an account command's ``AccountReply``")
    ex = Exchange(_config())
    ex.open(5, usd=700)
    mass = answered_again(ex.seq, MassCancel(9, 0, 1, 1, 1, 5, 0), 9)
    assert isinstance(mass, Rejected) and mass.code == OK
    reply = answered_again(ex.seq, Transfer(9, 0, 1, 1, 1, 5, USD, 700, 1), 9)
    assert isinstance(reply, AccountReply)
    assert (reply.seq, reply.code, reply.balance) == (9, OK, 700)
    assert answered_again(ex.seq, _order(5, BUY, 1, 1, 3), 9) is None


# -- accounts.py and money.py --------------------------------------------------------------------


def test_a_reject_changes_nothing() -> None:
    """accounts.py: "The router asks a check (``create_account``, ``transfer``,
    ``reserve_new``, ``reserve_replace``) before it sequences a command: ``OK`` changes the
    state, a reject changes nothing."."""
    _says(accounts_mod, "before it sequences a command: ``OK`` changes the state, a reject")
    ex = Exchange(_config(max_open=2, max_notional=5_000))
    ex.open(5, usd=10_000, btc=3)
    oid = ex.seq.next_order_id
    ex.order(5, BUY, 100, 2)  # holds 201 of 10,000
    acc = ex.seq.accounts
    assert acc.transfer(5, USD, -9_000, 77) == OK  # 799 free
    before = acc.snapshot()
    big = NewOrder(**(msgspec.structs.asdict(_order(5, BUY, 100, 60, 1)) | {"order_id": 99}))
    refusals: list[tuple[Callable[[], ResultCode], ResultCode]] = [
        (lambda: acc.create_account(0), ResultCode.UNKNOWN_ACCOUNT),
        (lambda: acc.create_account(5), ResultCode.ACCOUNT_EXISTS),
        (lambda: acc.transfer(6, USD, 1, 50), ResultCode.UNKNOWN_ACCOUNT),
        (lambda: acc.transfer(5, 42, 1, 50), ResultCode.UNKNOWN_ASSET),
        (lambda: acc.transfer(5, USD, 0, 50), ResultCode.INVALID_AMOUNT),
        (lambda: acc.transfer(5, USD, -9_999, 50), ResultCode.INSUFFICIENT_BALANCE),
        (lambda: acc.transfer(5, USD, 1, 2), ResultCode.DUPLICATE_TRANSFER),
        (lambda: acc.reserve_new(big)[0], ResultCode.NOTIONAL_TOO_LARGE),
        (lambda: acc.reserve_replace(ReplaceOrder(9, 0, 1, 1, 1, 5, BTCUSD, oid, 100, 10)),
         ResultCode.INSUFFICIENT_BALANCE),
        (lambda: acc.reserve_replace(ReplaceOrder(9, 0, 1, 1, 1, 5, BTCUSD, oid, 0, 2)),
         ResultCode.INVALID_PRICE),
    ]  # fmt: skip
    for call, code in refusals:
        assert call() == code
        assert acc.snapshot() == before, code


def test_units_notional_and_base() -> None:
    """accounts.py: "notional(price, qty) = price * qty * 10**(quote.decimals - price_decimals
    - qty_decimals)", "base(qty) = qty * 10**(base.decimals - qty_decimals)" (``Market.of``:
    BTC-USD with USD 4 decimals, BTC 3, price 2, qty 1)."""
    _says(accounts_mod, "notional(price, qty) = price * qty * 10**(quote.decimals - price_decimals")
    _says(accounts_mod, "base(qty) = qty * 10**(base.decimals - qty_decimals)")
    market = Market.all(core_rig.exchange_config())[core_rig.BTCUSD]
    assert market.notional(10_005, 7) == 10_005 * 7 * 10**1
    assert market.hold(SELL, 10_005, 7) == 7 * 10**2


def test_buy_holds_notional_plus_ceil_of_the_largest_fee_sell_its_size() -> None:
    """accounts.py: "A sell holds base(leaves). A buy holds notional(limit, leaves) plus the
    largest fee it may pay, ceil(notional * max(maker, taker) / 10_000)"; ``Market.hold``,
    ``hold_asset``: "quote to buy with, base to sell"; ``margin_bps``: "max(maker, taker)"."""
    _says(accounts_mod, "A sell holds base(leaves). A buy holds notional(limit, leaves) plus")
    _says(accounts_mod, "ceil(notional * max(maker, taker) / 10_000)")
    _says(Market.hold_asset, "quote to buy with, base to sell")
    _says(money, "max(maker, taker): a buy's hold carries the larger fee")
    for maker, taker in ((30, 20), (7, 13), (0, 0), (1_000, 999)):
        m = Market(1, 2, 1, 1, 100, maker, taker, 3, 10)
        assert m.margin_bps == max(maker, taker)
        for price, qty in itertools.product((1, 7, 333), (1, 2, 9)):
            n = price * qty * 3
            assert m.hold(BUY, price, qty) == n + -(-n * max(maker, taker) // 10_000)
            assert m.hold(SELL, price, qty) == qty * 10
        assert (m.hold_asset(BUY), m.hold_asset(SELL)) == (1, 2)


def test_fees_are_floored() -> None:
    """``Market.fees``: "floor(notional x bps / 10_000), in quote minor units (rounded down,
    never more than was held)"."""
    _says(Market.fees, "floor(notional x bps / 10_000), in quote minor units (rounded down,")
    m = Market(1, 2, 1, 1, 100, 7, 13, 3, 10)
    for price, qty in itertools.product(range(1, 40), (1, 3)):
        maker, taker = m.fees(price, qty)
        n = price * qty * 3
        assert (maker, taker) == (n * 7 // 10_000, n * 13 // 10_000)
        assert n + max(maker, taker) <= m.hold(BUY, price, qty)


def test_market_and_stop_market_buys_get_a_cap() -> None:
    """accounts.py: "the router gives it a cap, sent in its ``price`` ...: ref * (10_000 +
    band_bps) // 10_000 rounded down to the tick, ref being the last trade price the router
    has seen (for a stop, the stop price). A cap already in the order is kept as it is";
    ``reserve_new``: "a market or stop-market buy gets its cap in ``price``"."""
    _says(accounts_mod, "ref * (10_000 + band_bps) // 10_000 rounded down to the tick, ref being")
    _says(accounts_mod, "(for a stop, the stop price). A cap already in the order is kept as it")
    _says(Accounts.reserve_new, "a market or stop-market buy gets its cap in ``price``")
    _says(Market.cap, "The highest price a market buy may pay when the reference price is")
    ex = funded(core_rig.exchange_config())  # BTC-USD: tick 5, band 500 bps
    acc = ex.accounts
    ex.accounts._last[core_rig.BTCUSD] = 10_003
    market = new_order(1, BUY, 0, 1, kind=MARKET, tif=IOC)
    capped = ex.submit(market)
    assert isinstance(capped, NewOrder) and capped.flags & OrderFlag.CAPPED
    assert capped.price == 10_003 * 10_500 // 10_000 // 5 * 5 == 10_500
    stop = ex.submit(new_order(1, BUY, 0, 1, kind=STOP, stop=9_001, ref=2))
    assert isinstance(stop, NewOrder) and stop.price == 9_451 // 5 * 5
    own = ex.submit(new_order(1, BUY, 12_000, 1, kind=MARKET, tif=IOC, ref=3))
    assert isinstance(own, NewOrder) and (own.price, own.flags) == (10_500, OrderFlag.CAPPED)
    # a journaled (capped) order reserves the same whatever trades a replay saw by then
    again = Accounts.restore(ex.cfg, acc.snapshot())
    again._last[core_rig.BTCUSD] = 5
    replayed = msgspec.structs.replace(capped, order_id=99, seq=99)
    code, order = again.reserve_new(replayed, limits=False)
    assert (code, order.price) == (OK, capped.price)


def test_market_buy_before_any_trade_has_no_reference() -> None:
    """``Accounts.reserve_new``: the cap's ref is "the last trade price the router has seen";
    ``last_price``: "0 before the first"; a market buy then is NO_REFERENCE_PRICE."""
    _says(Accounts.last_price, "The last trade price seen on ``symbol``; 0 before the first.")
    ex = Exchange(_config())
    ex.open(5, usd=10**6)
    assert ex.seq.accounts.last_price(BTCUSD) == 0
    reply, _ = ex.order(5, BUY, 0, 1, kind=MARKET, tif=IOC)
    assert _code(reply) == ResultCode.NO_REFERENCE_PRICE


def test_replace_reserves_the_addition_replaced_cuts_rejected_releases() -> None:
    """accounts.py: "A replace reserves what it may add to the order's hold, and the matcher's
    answer settles it: ``Replaced`` cuts the hold back to what the new price and leaves need,
    ``Rejected`` releases the addition."."""
    _says(accounts_mod, "``Replaced`` cuts the hold back to what the new price and leaves need,")
    _says(accounts_mod, "``Rejected`` releases the addition.")
    ex = Exchange(_config(maker=10, taker=20))
    ex.open(5, usd=100_000)
    oid = ex.seq.next_order_id
    ex.order(5, BUY, 1_000, 10)  # 10,000 + 20: 10,020
    assert ex.balance(5, USD) == (89_980, 10_020)
    cmd = ReplaceOrder(0, 0, 1, 1, 77, 5, BTCUSD, oid, 1_500, 12)
    d = ex.seq.submit(cmd, 5)
    assert ex.balance(5, USD)[1] == 10_020 + (18_036 - 10_020)  # the larger end: x = L
    ex.seq.settle(ex.matcher.execute(d.command))  # type: ignore[arg-type]
    assert ex.balance(5, USD) == (100_000 - 18_036, 18_036)
    d = ex.seq.submit(ReplaceOrder(0, 0, 1, 1, 78, 5, BTCUSD, oid + 5, 1_500, 12), 6)
    assert d.command is not None  # an order the router does not know: left to the matcher
    held = ex.balance(5, USD)
    ex.seq.settle(ex.matcher.execute(d.command))  # its reject finds nothing of ours to undo
    assert ex.balance(5, USD) == held
    halt = ex.seq.submit(AdminCommand(0, 0, AdminAction.HALT, BTCUSD, 1), 7)
    ex.seq.settle(ex.matcher.execute(halt.command))  # type: ignore[arg-type]
    d = ex.seq.submit(ReplaceOrder(0, 0, 1, 1, 79, 5, BTCUSD, oid, 1_600, 12), 8)
    assert ex.balance(5, USD)[1] > held[1]
    events = ex.matcher.execute(d.command)  # type: ignore[arg-type]
    assert [e.code for e in events if isinstance(e, Rejected)] == [ResultCode.SYMBOL_HALTED]
    ex.seq.settle(events)
    assert ex.balance(5, USD) == held  # rejected: the addition released


def test_replace_addition_is_the_most_over_every_x() -> None:
    """accounts.py: "the order then needs hold(new price, Q - T + x) where the old hold had
    hold(old price, x) left. The addition is the most that difference reaches over 0 <= x <=
    L: nothing for a sell that keeps or lowers its total ... and for a buy whose price and
    total both go no higher" (``Accounts._addition_to``, exhaustively on small inputs). Since
    review 146 over 1 <= x <= L (x = 0 is an order done, the replace refused), and at the same
    price hold(Q - T), at most 1 above the top."""
    _says(accounts_mod, "The addition is the most that difference reaches over 1 <= x <= L")
    _says(accounts_mod, "nothing for a sell that keeps or lowers its total")
    _says(accounts_mod, "for a buy whose price and total both go no higher")
    for maker, taker, scale in ((7, 13, 1), (0, 25, 3), (999, 1_000, 1), (33, 0, 10)):
        m = Market(1, 2, 1, 1, 100, maker, taker, scale, 100)
        grid = itertools.product((BUY, SELL), range(3), range(1, 7), range(5), range(1, 7))
        for side, filled, was, leaves, price in grid:
            for total in range(9):
                held = m.hold(side, was, leaves)
                got = Accounts._addition_to(m, side, filled, was, leaves, held, price, total)
                more = total - filled - leaves
                brute = max(
                    (
                        m.hold(side, price, max(0, more + x)) - m.hold(side, was, x)
                        for x in range(1, leaves + 1)
                    ),
                    default=0,
                )
                where = (side, filled, was, leaves, price, total)
                if side == BUY and price == was and leaves and more > 0:
                    assert got == m.hold(BUY, price, more) in (brute, brute + 1), where
                else:
                    assert got == max(0, brute), where
                if (side == SELL and more <= 0) or (price <= was and more <= 0):
                    assert got == 0


def test_past_replaces_weighed_a_replace_reserves_its_full_hold() -> None:
    """accounts.py ``REPLACES_WEIGHED``: "Replaces of one order in flight a replace's
    reservation weighs one by one ...; past them it reserves its whole new hold"."""
    _says(accounts_mod, "Replaces of one order in flight a replace's reservation weighs one by")
    _says(accounts_mod, "past them it reserves its whole new hold")
    ex = Exchange(_config())
    ex.open(5, usd=10**6)
    oid = ex.seq.next_order_id
    ex.order(5, BUY, 100, 10)
    acc = ex.seq.accounts
    full = acc.markets[BTCUSD].hold(BUY, 100, 10)
    adds = []
    for _ in range(REPLACES_WEIGHED + 2):
        before = acc.balance(5, USD)[1]
        assert ex.seq.submit(ReplaceOrder(0, 0, 1, 1, 0, 5, BTCUSD, oid, 100, 10), 5).command
        adds.append(acc.balance(5, USD)[1] - before)
    assert adds == [0] * (REPLACES_WEIGHED + 1) + [full]


def test_replay_skips_the_account_limits() -> None:
    """accounts.py: "A replay skips the account limits (open orders, notional)";
    ``reserve_new``: "``limits=False`` (replay) skips the account limits";
    ``reserve_replace``: "``limits=False`` (replay) skips the notional limit"."""
    _says(accounts_mod, "A replay skips the account limits (open orders, notional)")
    _says(Accounts.reserve_new, "``limits=False`` (replay) skips the account limits.")
    _says(Accounts.reserve_replace, "``limits=False`` (replay) skips the notional limit.")
    cfg = _config(max_open=1, max_notional=500)
    acc = Accounts(cfg)
    acc.create_account(5)
    acc.transfer(5, USD, 10**6, 1)
    first = NewOrder(**(msgspec.structs.asdict(_order(5, BUY, 100, 1, 1)) | {"order_id": 1}))
    second = msgspec.structs.replace(first, order_id=2, seq=2, qty=9)
    assert acc.reserve_new(first)[0] == OK
    assert acc.reserve_new(second)[0] == ResultCode.TOO_MANY_OPEN_ORDERS
    assert acc.reserve_new(second, limits=False)[0] == OK  # two open, notional 900 > 500
    big = ReplaceOrder(3, 0, 1, 1, 1, 5, BTCUSD, 1, 100, 9)
    assert acc.reserve_replace(big) == ResultCode.NOTIONAL_TOO_LARGE
    assert acc.reserve_replace(big, limits=False) == OK


def test_open_orders_open_buys_and_new_order_seq() -> None:
    """``open_orders``: "Orders of ``account`` sent to a matcher and not done";
    ``open_buys``: "Buys on ``symbol`` that hold a fee margin: open, or with a replace in
    flight."; ``new_order_seq``: "(0 for one not tracked)"."""
    _says(Accounts.open_orders, "Orders of ``account`` sent to a matcher and not done")
    _says(Accounts.open_buys, "Buys on ``symbol`` that hold a fee margin: open, or with a replace")
    _says(Accounts.new_order_seq, "(0 for one not tracked)")
    ex = Exchange(_config())
    ex.open(5, usd=10**6, btc=10)
    buy = ex.seq.next_order_id
    ex.order(5, BUY, 100, 1)
    ex.order(5, SELL, 200, 1)
    acc = ex.seq.accounts
    assert (acc.open_orders(5), acc.open_buys(BTCUSD)) == (2, [buy])
    assert acc.new_order_seq(buy) == ex.seq.next_seq - 2 and acc.new_order_seq(77) == 0
    sold = ex.seq.submit(_order(5, SELL, 90, 1, 60), 1)  # fills the buy: events held back
    assert sold.command is not None
    filled = ex.matcher.execute(sold.command)
    d = ex.seq.submit(ReplaceOrder(0, 0, 1, 1, 1, 5, BTCUSD, buy, 101, 1), 2)
    assert d.command is not None
    rejected = ex.matcher.execute(d.command)  # the order is done: the replace is rejected
    ex.seq.settle(filled)
    assert acc.open_orders(5) == 1 and acc.open_buys(BTCUSD) == [buy]  # a replace in flight
    ex.seq.settle(rejected)
    assert acc.open_buys(BTCUSD) == [] and acc.new_order_seq(buy) == 0


def test_restore_validates_and_totals() -> None:
    """``Accounts.restore``: "Accounts from ``snapshot``, checked with
    ``validate_internal_state``"; ``totals``: "Free plus reserved of ``asset`` over every
    account, the fee account included"; ``balance``: "(0, 0) for anything unknown"."""
    _says(Accounts.restore, "Accounts from ``snapshot``, checked with ``validate_internal_state``")
    _says(Accounts.totals, "Free plus reserved of ``asset`` over every account, the fee account")
    _says(Accounts.balance, "(0, 0) for anything unknown")
    ex = Exchange(_config())
    ex.open(5, usd=10_000)
    ex.open(6, btc=10)
    ex.order(5, BUY, 1_000, 3)
    ex.order(6, SELL, 1_000, 2)
    acc = ex.seq.accounts
    assert acc.balance(99, USD)[0] > 0 and acc.totals(USD) == 10_000
    assert acc.balance(404, 9) == (0, 0)
    assert Accounts.restore(ex.cfg, acc.snapshot()).state_hash() == acc.state_hash()
    state = acc.state()
    bad = msgspec.structs.replace(state, balances=[(5, USD, -1, 0), *state.balances[1:]])
    with pytest.raises(AssertionError):
        Accounts.restore(ex.cfg, msgspec.msgpack.encode(bad))
