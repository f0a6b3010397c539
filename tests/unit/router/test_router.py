"""The router over real rings and a real journal, with in-process matchers: sequencing,
rejects back to the gateway, settlement, restart by recovery, and replay equivalence."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from config.edges import GatewayConfig
from config.schema import (
    AssetConfig,
    JournalConfig,
    MatcherConfig,
    RingConfig,
    RingexConfig,
    RiskConfig,
    SymbolConfig,
    WaitConfig,
)
from procs.common.record_codec import RecordCodec
from procs.common.records import (
    AccountReply,
    CancelOrder,
    CreateAccount,
    Heartbeat,
    NewOrder,
    Record,
    Rejected,
    ReplaceOrder,
    Transfer,
)
from procs.common.result_codes import ResultCode
from procs.common.topology import (
    ADMIN_GATEWAY,
    ROUTER_STARTED_SOURCE,
    create_rings,
    gateway_commands,
    gateway_consumer,
    gateway_replies,
    matcher_input,
    matcher_output,
)
from procs.common.types import OrdType, Side, StpMode, TimeInForce
from procs.core.recovery import recover, snapshot_store, write_snapshot
from procs.matcher.main import MatcherShell
from procs.router.main import RouterShell
from shm import Ring

CODEC = RecordCodec()
USD, BTC = 1, 2
ADMIN = ADMIN_GATEWAY


def config(instance: str, var: Path) -> RingexConfig:
    return RingexConfig(
        instance=instance,
        # the router and the matcher share this thread here: the output ring must hold a
        # whole matcher batch's events, or the matcher would wait on the router forever
        ring=RingConfig(capacity=4096),
        wait=WaitConfig(strategy="blocking", park_timeout_s=0.005),
        assets=[
            AssetConfig(name="USD", id=USD, decimals=4),
            AssetConfig(name="BTC", id=BTC, decimals=4),
        ],
        symbols=[
            SymbolConfig(
                name="BTC-USD", id=1, price_decimals=2, qty_decimals=2, base="BTC", quote="USD"
            )
        ],
        matchers=[MatcherConfig(name="m1", symbols=["BTC-USD"], snapshot_every=0, batch=64)],
        gateways=[GatewayConfig(name="gw1", id=1), GatewayConfig(name="gw2", id=2, port=9879)],
        risk=RiskConfig(max_open_orders=50, max_commands_per_s=1_000_000, fee_account=99),
        journal=JournalConfig(fsync="batch"),
        var_dir=str(var),
    )


class Exchange:
    """Rings for two gateways, the admin ring (gateway 0: accounts and money, as ``ringex
    admin`` sends them) and one matcher; router and matcher shells stepped by hand. The admin
    ring's replies are read as they come (``admin_told``), so they never hold its ring."""

    def __init__(self, cfg: RingexConfig) -> None:
        self.cfg = cfg
        inst = cfg.instance
        self.rings = create_rings(cfg, CODEC)
        ids = [ADMIN_GATEWAY, *(g.id for g in cfg.gateways)]
        self.gateways = {g: Ring.attach(inst, gateway_commands(g), CODEC).producer() for g in ids}
        self.replies = {
            g: Ring.attach(inst, gateway_replies(g), CODEC).consumer(gateway_consumer(g))
            for g in ids
        }
        self.admin_told: list[Record] = []
        # the gateways' reads of the matcher's events, drained so they never gate it
        self.taps = [
            Ring.attach(inst, matcher_output("m1"), CODEC).consumer(gateway_consumer(g.id))
            for g in cfg.gateways
        ]
        self.start()

    def start(self) -> None:
        self.router = RouterShell(self.cfg)
        self.matcher = MatcherShell(self.cfg, "m1")

    def stop(self) -> None:
        self.router.close()
        self.matcher.close()

    def send(self, gateway: int, *commands: Record) -> None:
        self.gateways[gateway].publish_batch(list(commands))
        self.pump()

    def pump(self) -> None:
        while self.router.step(timeout_s=0.001) + self.matcher.step(timeout_s=0.001):
            for tap in self.taps:
                tap.read(4096)
            self.admin_told += self.replies[ADMIN_GATEWAY].read(4096)
        self.router.settle()
        self.admin_told += self.replies[ADMIN_GATEWAY].read(4096)

    def replies_of(self, gateway: int) -> list[Record]:
        """What the gateway reads now, but for the mark of a router's start (its balance
        watches are to be renewed: ``test_a_restarted_router_marks_each_reply_ring_first``)."""
        if gateway == ADMIN_GATEWAY:
            read, self.admin_told = self.admin_told, []
            read += self.replies[gateway].read(4096)
        else:
            read = self.replies[gateway].read(1024)
        return [r for r in read if not started_mark(r)]


def started_mark(record: Record) -> bool:
    return type(record) is Heartbeat and record.source == ROUTER_STARTED_SOURCE


@pytest.fixture
def exchange(instance: str, tmp_path: Path) -> Iterator[Exchange]:
    ex = Exchange(config(instance, tmp_path))
    yield ex
    ex.stop()


def order(ref: int, account: int, side: Side, price: int, qty: int, gateway: int = 1) -> NewOrder:
    return NewOrder(
        *(0, 0, gateway, 1, ref, account, 1, 0),
        side=side,
        ord_type=OrdType.LIMIT,
        tif=TimeInForce.GTC,
        flags=0,
        stp=StpMode.NONE,
        price=price,
        qty=qty,
        stop_price=0,
        display_qty=0,
    )


def fund(ex: Exchange, account: int, usd: int, btc: int) -> None:
    """Open ``account`` and deposit into it on the admin ring, as ``ringex admin`` does: a
    trading gateway's ring carries no operator's command (review 343)."""
    commands: list[Record] = [CreateAccount(0, 0, ADMIN, 1, account * 1000, account)]
    for asset, amount in ((USD, usd), (BTC, btc)):
        if amount:
            ref = account * 1000 + asset
            commands.append(
                Transfer(0, 0, ADMIN, 1, ref, account, asset, amount, account * 10 + asset)
            )
    ex.send(ADMIN, *commands)


def test_sequencing_rejects_and_settlement(exchange: Exchange) -> None:
    fund(exchange, 7, usd=1_000_000, btc=0)
    fund(exchange, 8, usd=0, btc=50_000)  # 5 BTC: 4 decimals
    answers = exchange.replies_of(ADMIN)  # the operator's commands are answered on its ring
    assert [type(a) for a in answers] == [AccountReply] * 4
    assert all(a.code == ResultCode.OK for a in answers)  # type: ignore[attr-defined]
    assert [a.seq for a in answers] == [3, 4, 5, 6]  # type: ignore[attr-defined]  # 1, 2: fees
    assert [a.balance for a in answers] == [0, 1_000_000, 0, 50_000]  # type: ignore[attr-defined]
    assert exchange.replies_of(1) == exchange.replies_of(2) == []
    refused = Transfer(0, 0, ADMIN, 1, 5, 7, USD, -2_000_000, 77)  # more than it has
    exchange.send(ADMIN, refused)
    (reply,) = exchange.replies_of(ADMIN)
    assert isinstance(reply, AccountReply) and reply.code == ResultCode.INSUFFICIENT_BALANCE

    # 7 buys 2.00 BTC at 10.00 USD: 20.00 USD = 200_000 minor units plus fees; enough.
    exchange.send(1, order(1, 7, Side.BUY, 1000, 200))
    exchange.send(2, order(2, 8, Side.SELL, 1000, 150, gateway=2))
    accounts = exchange.router.sequencer.accounts
    assert accounts.balance(8, BTC) == (35_000, 0)  # sold 1.50 BTC (qty has 2 decimals)
    assert accounts.balance(7, BTC) == (15_000, 0)
    assert accounts.balance(8, USD)[0] == 150_000 - 150_000 * 20 // 10_000  # taker: 20 bps
    free, reserved = accounts.balance(7, USD)
    assert reserved > 0 and free + reserved < 1_000_000  # paid 15.00 USD plus a fee
    assert accounts.balance(99, USD)[0] > 0  # the fee account collected

    # refused before sequencing: a duplicate client order id, too little balance
    exchange.send(1, order(1, 7, Side.BUY, 1000, 10))
    exchange.send(2, order(3, 8, Side.SELL, 1000, 10_000, gateway=2))
    (dup,) = exchange.replies_of(1)
    (poor,) = exchange.replies_of(2)
    assert isinstance(dup, Rejected) and dup.code == ResultCode.DUPLICATE_CLIENT_ORDER_ID
    assert isinstance(poor, Rejected) and poor.code == ResultCode.INSUFFICIENT_BALANCE
    assert dup.seq == poor.seq == 0


def test_restart_recovers_the_same_state_and_keeps_sequencing(exchange: Exchange) -> None:
    rng = random.Random(5)
    fund(exchange, 7, usd=10**9, btc=10**6)
    fund(exchange, 8, usd=10**9, btc=10**6)
    live: list[tuple[int, int]] = []
    for ref in range(10, 400):
        gateway, account = rng.choice(((1, 7), (2, 8)))
        roll = rng.random()
        if roll < 0.6 or not live:
            side = rng.choice((Side.BUY, Side.SELL))
            exchange.send(gateway, order(ref, account, side, rng.randint(990, 1010), 10, gateway))
        elif roll < 0.8:
            oid, owner = rng.choice(live)
            gw = 1 if owner == 7 else 2
            exchange.send(gw, CancelOrder(0, 0, gw, 1, ref, owner, 1, oid))
        else:
            oid, owner = rng.choice(live)
            gw = 1 if owner == 7 else 2
            price = rng.randint(990, 1010)
            exchange.send(gw, ReplaceOrder(0, 0, gw, 1, ref, owner, 1, oid, price, 5))
        live = [(o.order_id, o.account) for o in exchange.matcher.matcher.books[1].orders.values()]
    before = exchange.router.sequencer
    state = (before.accounts.state_hash(), before.next_seq, before.next_order_id)
    book_hash = exchange.matcher.matcher.state_hash()
    exchange.stop()

    exchange.start()  # a restart is a recovery: snapshot (none) + the whole journal
    after = exchange.router.sequencer
    assert (after.accounts.state_hash(), after.next_seq, after.next_order_id) == state
    exchange.send(1, order(9999, 7, Side.BUY, 900, 10))
    assert exchange.router.sequencer.next_seq == state[1] + 1

    replayed = recover(exchange.cfg)  # what `ringex replay` prints
    assert replayed.state_hashes()["router"] == exchange.router.sequencer.accounts.state_hash()
    write_snapshot(exchange.cfg, replayed)
    from_snapshot = recover(exchange.cfg)
    assert from_snapshot.replayed == 0 and from_snapshot.state_hashes() == replayed.state_hashes()
    assert book_hash != ""  # the matcher restarted from its own snapshot path too


def test_a_restarted_router_marks_each_reply_ring_first(exchange: Exchange) -> None:
    """A router that recovered a journal puts the mark of its start (``ROUTER_STARTED_SOURCE``,
    counter: the last seq it recovered) on every gateway's reply ring before any reply: the
    balance watches died with the old one, so a gateway renews them (review 340). A router
    that recovered nothing marks nothing: no balance a gateway holds can be stale."""
    assert all(not exchange.replies[g].read(16) for g in exchange.replies)
    fund(exchange, 7, usd=10**6, btc=0)
    last = exchange.router.sequencer.next_seq - 1
    exchange.replies_of(ADMIN)
    exchange.stop()
    exchange.start()
    exchange.send(1, order(500, 7, Side.BUY, 900, 1))
    for g, consumer in exchange.replies.items():
        # the admin ring's replies were read as they came (pump): its mark is among them
        told = exchange.admin_told if g == ADMIN else []
        first, *rest = [*told, *consumer.read(16)]
        assert type(first) is Heartbeat
        assert (first.source, first.counter) == (ROUTER_STARTED_SOURCE, last)
        assert not any(started_mark(r) for r in rest), g


def test_a_fresh_instance_resends_nothing_the_matcher_recovered(exchange: Exchange) -> None:
    """Whole-instance restart: new (empty) rings, the matcher first (as the supervisor starts
    them), which replays the journal and marks how far it got; the router then resends none
    of the journal. A journaled command the matcher never saw is still resent."""
    fund(exchange, 7, usd=10**9, btc=10**6)
    for ref in range(10, 30):
        exchange.send(1, order(ref, 7, Side.BUY, 900 + ref, 10))
    last = exchange.router.sequencer.next_seq - 1
    exchange.stop()
    for ring in exchange.rings.values():
        ring.unlink()
    exchange.rings = create_rings(exchange.cfg, CODEC)
    inbound = Ring.attach(exchange.cfg.instance, matcher_input("m1"), CODEC)
    exchange.matcher = MatcherShell(exchange.cfg, "m1")
    exchange.router = RouterShell(exchange.cfg)
    assert inbound.cursor() == 0  # nothing resent: the matcher had all of it
    assert exchange.matcher.matcher.last_seq == last

    # the router journals a command and dies before publishing it; the matcher lives on
    oid = exchange.router.sequencer.next_order_id
    new = msgspec.structs.replace(order(99, 7, Side.BUY, 901, 10), seq=last + 1, order_id=oid)
    exchange.router.journal.append(last + 1, CODEC.encode_slot(new), 1)
    exchange.router.close()
    exchange.router = RouterShell(exchange.cfg)
    assert inbound.cursor() == 1  # that one command, and only it


@pytest.mark.parametrize("trigger", ["count", "time"])
def test_the_router_snapshots_by_count_or_by_time(
    instance: str, tmp_path: Path, trigger: str
) -> None:
    """``journal.snapshot_every`` commands, or ``snapshot_every_s`` after the last snapshot
    with commands since, fork a replay that writes a snapshot at the journal's end; a
    recovery from it replays nothing and has the live state."""
    cfg = config(instance, tmp_path)
    every, every_s = (8, 0.0) if trigger == "count" else (0, 0.05)
    journal = msgspec.structs.replace(cfg.journal, snapshot_every=every, snapshot_every_s=every_s)
    ex = Exchange(msgspec.structs.replace(cfg, journal=journal))
    try:
        fund(ex, 7, usd=10**9, btc=10**6)
        if trigger == "count":
            assert snapshot_store(ex.cfg).latest() is None  # 3 commands: not yet
        else:
            assert ex.router.snapshot_done(30)  # a slow machine may have started one already
            time.sleep(0.06)
        for ref in range(10, 16):
            ex.send(1, order(ref, 7, Side.BUY, 900 + ref, 10))
        assert ex.router.snapshot_done(30)
        latest = snapshot_store(ex.cfg).latest()
        assert latest is not None
        last = ex.router.sequencer.next_seq - 1
        assert latest[0] >= 8 if trigger == "count" else latest[0] >= 4
        recovered = recover(ex.cfg)
        assert recovered.snapshot_seq == latest[0] and recovered.last_seq == last
        assert recovered.state_hashes()["router"] == ex.router.sequencer.accounts.state_hash()
    finally:
        ex.stop()


def test_the_router_takes_no_command_while_the_matcher_is_behind(
    instance: str, tmp_path: Path
) -> None:
    """Past an eighth of the matcher's input ring unread, commands wait in the gateway's
    ring (whose gateway then stops reading its clients): the rings after the matcher never
    fill. Once the matcher catches up, every command goes through."""
    base = config(instance, tmp_path)
    cfg = msgspec.structs.replace(
        base, risk=msgspec.structs.replace(base.risk, max_open_orders=100_000), router_batch=256
    )
    ex = Exchange(cfg)
    try:
        fund(ex, 7, usd=10**12, btc=0)
        limit = cfg.ring.capacity // 8
        ex.gateways[1].publish_batch(
            [order(10_000 + k, 7, Side.BUY, 100 + k % 50, 1) for k in range(3 * limit)]
        )
        for _ in range(50):  # the router alone: the matcher reads nothing
            ex.router.step(timeout_s=0.001)
        to_book = ex.router.to_matchers["m1"]
        taken = to_book.backlog()
        assert limit < taken <= limit + cfg.router_batch  # it stopped right past the limit
        assert ex.gateways[1].backlog() == 3 * limit - taken > 0  # the rest wait in gw1's ring
        ex.pump()
        assert to_book.backlog() == 0
        assert ex.gateways[1].backlog() == 0
        assert ex.router.sequencer.accounts.open_orders(7) == 3 * limit  # all of them rest
    finally:
        ex.stop()
