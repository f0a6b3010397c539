"""The router's pure core: sequence numbers and order ids, routing, the soft limits (rate,
duplicate client order ids), and replay reproducing the counters and the risk state."""

from __future__ import annotations

import msgspec

from config.schema import (
    AssetConfig,
    MatcherConfig,
    RingexConfig,
    RiskConfig,
    SymbolConfig,
)
from procs.common.records import (
    Accepted,
    AdminCommand,
    CancelOrder,
    CreateAccount,
    MassCancel,
    NewOrder,
    OrderDone,
    Record,
    Rejected,
    Transfer,
)
from procs.common.result_codes import ResultCode
from procs.common.types import AdminAction, DoneReason, OrdType, Side, StpMode, TimeInForce
from procs.core.accounts import Accounts
from procs.core.sequencer import Sequencer

USD, BTC = 1, 2
SECOND = 1_000_000_000


def config(rate: int = 1000) -> RingexConfig:
    units = {"price_decimals": 2, "qty_decimals": 2, "base": "BTC", "quote": "USD"}
    return RingexConfig(
        assets=[
            AssetConfig(name="USD", id=USD, decimals=4),
            AssetConfig(name="BTC", id=BTC, decimals=4),
        ],
        symbols=[
            SymbolConfig(name="AAA", id=1, **units),  # type: ignore[arg-type]
            SymbolConfig(name="BBB", id=2, **units),  # type: ignore[arg-type]
        ],
        matchers=[
            MatcherConfig(name="m1", symbols=["AAA"]),
            MatcherConfig(name="m2", symbols=["BBB"]),
        ],
        risk=RiskConfig(max_commands_per_s=rate, fee_account=99),
    )


def funded(cfg: RingexConfig) -> Sequencer:
    seq = Sequencer(cfg, Accounts(cfg))
    for command in (
        CreateAccount(0, 0, 1, 1, 1, 7),
        Transfer(0, 0, 1, 1, 2, 7, USD, 10**9, 1),
        Transfer(0, 0, 1, 1, 3, 7, BTC, 10**9, 2),
    ):
        assert seq.submit(command, 0).command is not None
    return seq


def order(ref: int, symbol: int = 1, account: int = 7, session: int = 1) -> NewOrder:
    return NewOrder(
        *(0, 0, 1, session, ref, account, symbol, 0),
        side=Side.BUY,
        ord_type=OrdType.LIMIT,
        tif=TimeInForce.GTC,
        flags=0,
        stp=StpMode.NONE,
        price=1000,
        qty=10,
        stop_price=0,
        display_qty=0,
    )


def test_accepted_commands_get_gapless_seqs_and_new_orders_ids() -> None:
    seq = funded(config())
    first = seq.submit(order(10), 5)
    second = seq.submit(order(11, symbol=2), 6)
    assert first.command is not None and second.command is not None
    assert (first.command.seq, first.command.order_id, first.command.ts_ns) == (4, 1, 5)  # type: ignore[attr-defined]
    assert (second.command.seq, second.command.order_id) == (5, 2)  # type: ignore[attr-defined]
    assert (first.matchers, second.matchers) == (("m1",), ("m2",))
    refused = seq.submit(order(12, symbol=3), 7)  # nobody owns symbol 3: no seq spent
    assert refused.command is None and isinstance(refused.reply, Rejected)
    assert refused.reply.code == ResultCode.UNKNOWN_SYMBOL
    assert seq.submit(order(13), 8).command.seq == 6  # type: ignore[union-attr]


def test_symbol_zero_reaches_every_matcher_and_account_commands_none() -> None:
    seq = funded(config())
    mass = seq.submit(MassCancel(0, 0, 1, 1, 5, 7, 0), 1)
    assert mass.matchers == ("m1", "m2")
    halt = seq.submit(AdminCommand(0, 0, AdminAction.HALT, 2, 0), 1)
    assert halt.matchers == ("m2",)
    deposit = seq.submit(Transfer(0, 0, 1, 1, 6, 7, USD, 5, 99), 1)
    assert deposit.command is not None and deposit.matchers == ()
    assert deposit.reply is not None  # sent once the journal has it


def test_rate_limit_is_a_token_bucket_per_account() -> None:
    seq = funded(config(rate=3))
    codes = [seq.submit(order(100 + k), 10 * SECOND).reply for k in range(4)]
    assert codes[:3] == [None, None, None]
    assert isinstance(codes[3], Rejected) and codes[3].code == ResultCode.ACCOUNT_RATE_LIMITED
    later = seq.submit(order(200), 10 * SECOND + SECOND // 3 + 1)  # one token back
    assert later.command is not None


def test_a_client_order_id_is_unique_among_live_orders_of_its_session() -> None:
    seq = funded(config())
    first = seq.submit(order(10), 0).command
    assert isinstance(first, NewOrder)
    dup = seq.submit(order(10), 0).reply
    assert isinstance(dup, Rejected) and dup.code == ResultCode.DUPLICATE_CLIENT_ORDER_ID
    assert seq.submit(order(10, session=2), 0).command is not None  # another session
    # a reject of someone's cancel of it does not free the id; the order's end does
    f = first
    seq.apply(
        Accepted(
            *(f.seq, f.ts_ns, f.gateway, f.session, f.client_ref, f.account, f.symbol),
            *(f.order_id, Side.BUY, 1000, 10),
        )
    )
    seq.apply(Rejected(first.seq + 10, 0, 1, 1, 55, 7, 1, first.order_id, ResultCode.UNKNOWN_ORDER))
    assert seq.submit(order(10), 0).command is None
    seq.apply(
        OrderDone(
            *(first.seq + 11, 0, 1, 1, 10, 7, 1, first.order_id),
            *(DoneReason.CANCELLED, 0, 10),
        )
    )
    assert seq.submit(order(10), 0).command is not None


def test_replay_reproduces_counters_and_accounts() -> None:
    cfg = config()
    live = funded(cfg)
    journal: list[Record] = []
    for k in range(5):
        decision = live.submit(order(10 + k, symbol=1 + k % 2), k)
        assert decision.command is not None
    journal = [
        CreateAccount(1, 0, 1, 1, 1, 7),
        Transfer(2, 0, 1, 1, 2, 7, USD, 10**9, 1),
        Transfer(3, 0, 1, 1, 3, 7, BTC, 10**9, 2),
    ]
    replayed = Sequencer(cfg, Accounts(cfg))
    for command in journal:
        replayed.replay(command)
    for k in range(5):
        cmd = order(10 + k, symbol=1 + k % 2)
        stamped = msgspec.structs.replace(cmd, seq=4 + k, ts_ns=k, order_id=1 + k)
        replayed.replay(stamped)
    assert (replayed.next_seq, replayed.next_order_id) == (live.next_seq, live.next_order_id)
    assert replayed.accounts.state_hash() == live.accounts.state_hash()
    restored = Sequencer.restore(cfg, live.snapshot())
    assert restored.snapshot() == live.snapshot()
    assert isinstance(live.submit(CancelOrder(0, 0, 1, 1, 50, 7, 1, 1), 9).command, CancelOrder)
