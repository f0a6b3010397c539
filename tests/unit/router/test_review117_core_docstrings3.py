"""Review 117, part three (part one and the convention: ``test_review117_core_docstrings.py``):
the docstrings of ``recovery.py``, ``replay_pipeline.py``, ``account_orders.py`` and
``accounts_state.py`` held to the code, each claim anchored by a quote (``_says``).
"""

import gc
from pathlib import Path

import msgspec
import pytest

from procs.common.journal import ReplayError
from procs.common.journal_writer import JournalWriter
from procs.common.records import (
    AdminCommand,
    FeeSchedule,
    MassCancel,
    Trade,
)
from procs.common.result_codes import ResultCode
from procs.common.topology import ADMIN_GATEWAY, journal_dir
from procs.common.types import AdminAction, Side
from procs.core import (
    account_orders,
    accounts_state,
    recovery,
    replay_pipeline,
)
from procs.core.account_orders import SLACK, AccountOrders
from procs.core.accounts import Accounts
from procs.core.engine import Matcher
from procs.core.recovery import JournaledTail, identity
from procs.core.replay_pipeline import ReplayChildError, replay_in_child
from procs.core.resting import RestingOrder
from procs.core.sequencer import Sequencer
from procs.core.symbols import symbol_specs
from tests.unit.router import core_rig
from tests.unit.router.core_rig import CODEC, new_order, placed
from tests.unit.router.test_review117_core_docstrings import _says
from tests.unit.router.test_review117_core_docstrings2 import _traded
from tests.unit.test_review107_router import BTC, USD, _config

BUY, SELL = Side.BUY, Side.SELL
OK = ResultCode.OK


# -- recovery.py ---------------------------------------------------------------------------------


def test_identity_and_the_journaled_tail() -> None:
    """``identity``: "an admin command's by the reference its client puts in ``arg``; None for
    one without"; ``JournaledTail``: "The newest ``per_gateway`` journaled commands of each
    gateway, by identity."; ``clear``: "Forget every command added"."""
    _says(identity, "an admin command's by the reference its client puts in ``arg``; None for")
    _says(JournaledTail, "The newest ``per_gateway`` journaled commands of each gateway")
    _says(JournaledTail.clear, "Forget every command added")
    assert identity(AdminCommand(1, 0, AdminAction.HALT, 0, 0)) is None
    assert identity(AdminCommand(1, 0, AdminAction.HALT, 0, 5)) == (
        AdminCommand,
        ADMIN_GATEWAY,
        0,
        5,
        0,
    )
    assert identity(FeeSchedule(1, 0, 1, 1, 1, 99)) is None
    tail = JournaledTail(2, 3)
    assert tail.window == 6
    for seq in range(1, 5):
        tail.add(MassCancel(seq, 0, 1 + seq % 2, 1, seq, 5, 0))
    assert tail.by_gateway() == {
        2: {(MassCancel, 2, 1, 1, 5): 1, (MassCancel, 2, 1, 3, 5): 3},
        1: {(MassCancel, 1, 1, 2, 5): 2, (MassCancel, 1, 1, 4, 5): 4},
    }
    tail.add(MassCancel(5, 0, 1, 1, 5, 5, 0))
    assert list(tail.by_gateway()[1].values()) == [4, 5]
    tail.clear()
    assert tail.by_gateway() == {}


def test_recover_from_the_journal_and_a_snapshot_past_its_end(tmp_path: Path) -> None:
    """recovery.py: "each command is re-applied to the router's accounts and executed by its
    matcher, and the events settle, exactly as live. After it, every event of every journaled
    command is settled (``settled_upto``), so a restarted router ignores those events when the
    live matchers publish them again."; ``recover``: "The state after the newest snapshot and
    the journal after it ... A snapshot past the journal's end is an error";
    ``restore_matchers``: "One the snapshot lacks ... rebuilt from its newest snapshot and
    the journal after it" (reviews 226, 234: it started empty)."""
    _says(recovery, "each command is re-applied to the router's accounts and executed by its")
    _says(recovery, "so a restarted router ignores those events when the live matchers publish")
    _says(recovery.recover, "The state after the newest snapshot and the journal after it")
    _says(recovery.recover, "A snapshot past the journal's end is an error")
    _says(recovery.restore_matchers, "rebuilt from its newest snapshot and the journal after it")
    cfg = core_rig.exchange_config(var_dir=str(tmp_path))
    ex = _traded(cfg)
    published = list(ex.inbox["m1"])
    ex.settle()
    with JournalWriter(
        journal_dir(cfg), slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id, fsync="none"
    ) as writer:
        writer.append(1, b"".join(map(CODEC.encode_slot, ex.journal)), len(ex.journal))
    rec = recovery.recover(cfg)
    assert rec.last_seq == len(ex.journal) and rec.replayed == len(ex.journal)
    assert rec.sequencer.settled_upto == len(ex.journal)
    assert rec.state_hashes() == {
        "router": ex.accounts.state_hash(),
        **{f"matcher {n}": m.state_hash() for n, m in ex.fast.items()},
    }
    rec.sequencer.settle(published)  # published again: ignored
    assert rec.sequencer.accounts.state_hash() == ex.accounts.state_hash()
    past = msgspec.structs.replace(rec.snapshot(), seq=len(ex.journal) + 1)
    recovery.snapshot_store(cfg).save(past.seq, msgspec.msgpack.encode(past))
    with pytest.raises(ReplayError, match="past the journal's last entry"):
        recovery.recover(cfg)
    fresh = recovery.restore_matchers(cfg, {"m1": ex.fast["m1"].snapshot()})
    assert fresh["m2"].last_seq == 0 and fresh["m1"].state_hash() == ex.fast["m1"].state_hash()


# -- replay_pipeline.py --------------------------------------------------------------------------


def _pipeline_tail() -> tuple[core_rig.Exchange, list[tuple[int, bytes]]]:
    ex = _traded(core_rig.exchange_config())
    placed(ex, new_order(3, BUY, 9_000, 1, ref=2))  # past ``last``
    return ex, [(c.seq, CODEC.encode_slot(c)) for c in ex.journal]  # type: ignore[attr-defined]


def test_replay_in_child_streams_commands_with_kept_events() -> None:
    """``replay_in_child``: "Run ``matchers`` over ``entries`` ... up to seq ``last`` in a
    forked child, while this process calls ``step`` on the commands in order, a chunk at a
    time, each with its events whose type is in ``keep`` ... Returns each matcher's state
    after the tail"; module: "The cyclic garbage collector is off on both sides while the tail
    replays"; failures: "raises ``ReplayChildError``, or whatever ``step`` raised" (a
    matcher the child lacks; a step that raises)."""
    _says(replay_in_child, "up to seq ``last`` in a forked child, while this process calls")
    _says(replay_in_child, "each with its events whose type is in ``keep``")
    _says(replay_pipeline, "The cyclic garbage collector is off on both sides while the tail")
    ex, entries = _pipeline_tail()
    last = entries[-2][0]
    seq = Sequencer(ex.cfg, Accounts(ex.cfg))
    matchers = {m.name: Matcher(symbol_specs(ex.cfg, m.name)) for m in ex.cfg.matchers}
    seen: list[tuple[object, list[list[object]]]] = []
    collecting: list[bool] = []

    def step(chunk: list) -> None:  # type: ignore[type-arg]
        collecting.append(gc.isenabled())
        seen.extend(chunk)

    states = replay_in_child(
        entries, last, CODEC, seq.matchers_for, matchers, step, frozenset({Trade})
    )
    assert [c for c, _ in seen] == ex.journal[:-1] and collecting == [False] and gc.isenabled()
    kinds = {type(e) for _, events in seen for per in events for e in per}
    assert kinds == {Trade}
    serial = {m.name: Matcher(symbol_specs(ex.cfg, m.name)) for m in ex.cfg.matchers}
    for command in ex.journal[:-1]:
        for name in seq.matchers_for(command):
            serial[name].execute(command)
    assert states == {n: m.snapshot() for n, m in serial.items()}

    _says(replay_in_child, "raises ``ReplayChildError``, or whatever ``step`` raised")
    _says(replay_pipeline, "a matcher that raises) ends the stream early and raises")
    matchers = {m.name: Matcher(symbol_specs(ex.cfg, m.name)) for m in ex.cfg.matchers}

    def nowhere(command: object) -> list[str]:
        return ["m9"]  # a matcher the child lacks: KeyError there

    with pytest.raises(ReplayChildError, match="failed"):
        replay_in_child(entries, 99, CODEC, nowhere, matchers, lambda _: None, frozenset())

    def refuse(chunk: object) -> None:
        raise ValueError("refused here")

    with pytest.raises(ValueError, match="refused here"):
        replay_in_child(entries, 99, CODEC, seq.matchers_for, matchers, refuse, frozenset())


# -- account_orders.py and accounts_state.py -----------------------------------------------------


def _resting(oid: int, side: Side, price: int, arrival: int, account: int = 5) -> RestingOrder:
    return RestingOrder(oid, account, side, price, 1, 0, arrival, 1, 1, oid)


def test_account_orders_in_priority_order_without_repeats() -> None:
    """account_orders.py: "the account's own orders, sorted into priority order (bids first,
    best price first, then arrival ...)", "``of`` passes over and forgets the ids no longer
    resting", "``of`` drops the repeats an order that rested twice left"."""
    _says(account_orders, "sorted into priority order (bids first, best price first, then")
    _says(account_orders, "``of`` passes over and forgets the ids no longer resting")
    _says(account_orders, "``of`` drops the repeats an order that rested twice left")
    orders = {
        o.order_id: o
        for o in (
            _resting(1, SELL, 105, 1), _resting(2, BUY, 99, 2), _resting(3, BUY, 100, 3),
            _resting(4, SELL, 101, 4), _resting(5, BUY, 100, 5), _resting(6, BUY, 120, 6, 7),
        )
    }  # fmt: skip
    index = AccountOrders()
    for o in orders.values():
        index.add(o, orders)
    index.add(orders[3], orders)  # rested twice
    index.ids[5].append(77)  # gone from the book
    assert [o.order_id for o in index.of(5, orders)] == [3, 5, 2, 4, 1]
    assert index.ids[5] == [1, 2, 3, 4, 5]
    index.check(orders)
    _says(account_orders, "once the index holds more than twice the book's orders as of the last")

    _says(account_orders, "once the index holds more than twice the book's orders as of the last")
    one = {1: _resting(1, BUY, 100, 1)}
    index = AccountOrders()
    for _ in range(SLACK):
        index.add(one[1], one)
    assert len(index.ids[5]) == SLACK
    index.add(one[1], one)  # one past: rebuilt from the book's one order
    assert index.ids == {5: [1]} and index.limit == 2 * 1 + SLACK


def test_accounts_state_is_canonical() -> None:
    """accounts_state.py: "what ``state_hash`` hashes and a snapshot holds, sorted, so the same
    state always encodes the same"; ``AccountsState``: "sorted; zero balances left out"."""
    _says(accounts_state, "sorted, so the same state always encodes the same")
    _says(accounts_state.AccountsState, "(sorted; zero balances left out)")
    one, two = Accounts(_config()), Accounts(_config())
    ops = [(6, BTC, 3, 1), (5, USD, 2, 2), (5, USD, -2, 3), (5, USD, 2, 4)]
    for acc, order in ((one, ops), (two, [ops[1], ops[0], *ops[2:]])):
        for account in {5, 6} if acc is one else (6, 5):
            acc.create_account(account)
        assert all(acc.transfer(*op) == OK for op in order)
    assert one.snapshot() == two.snapshot() and one.state_hash() == two.state_hash()
    one.transfer(6, BTC, -3, 5)
    assert [b[:2] for b in one.state().balances] == [(5, USD)]
