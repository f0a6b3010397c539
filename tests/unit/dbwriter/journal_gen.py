"""A realistic journal for the writer's tests: random commands through the real sequencer,
accounts, matchers and journal writer (as ``tests/bench/bench_journal.restart`` does), with
the live events kept as the answer the database must reconcile with."""

from __future__ import annotations

import random
from pathlib import Path

from config.schema import DatabaseConfig, JournalConfig, RingexConfig, RiskConfig
from procs.common.journal_writer import JournalWriter
from procs.common.record_codec import RecordCodec
from procs.common.records import (
    CancelOrder,
    CreateAccount,
    NewOrder,
    OrderDone,
    Record,
    Rejected,
    ReplaceOrder,
    Trade,
    Transfer,
)
from procs.common.topology import journal_dir
from procs.common.types import OrdType, Side, StpMode, TimeInForce
from procs.core.recovery import fresh
from procs.dbwriter.writer import DbWriter, WriterOptions

ACCOUNTS = tuple(range(10, 16))
FEE_ACCOUNT = 99
START_NS = 1_763_000_000_000_000_000  # 2025-11-13: trades fall in a few daily partitions


def make_cfg(var_dir: Path, instance: str = "dbw") -> RingexConfig:
    return RingexConfig(
        instance=instance,
        var_dir=str(var_dir),
        journal=JournalConfig(fsync="none"),
        risk=RiskConfig(max_commands_per_s=10**9, max_open_orders=10**6, fee_account=FEE_ACCOUNT),
        database=DatabaseConfig(batch_rows=300, batch_ms=50),
    )


class JournalBuilder:
    def __init__(self, cfg: RingexConfig, seed: int = 1) -> None:
        self.cfg = cfg
        self.codec = RecordCodec()
        self.sequencer, self.matchers = fresh(cfg)
        self.writer = JournalWriter(
            journal_dir(cfg),
            slot_size=self.codec.slot_size,
            schema_id=self.codec.journal_schema_id,
            fsync="none",
        )
        self.owner = {cfg.symbol(s).id: m.name for m in cfg.matchers for s in m.symbols}
        self.rng = random.Random(seed)
        self.clock = START_NS
        self.ref = 0
        self.trades: list[Trade] = []
        self.done: dict[int, OrderDone] = {}
        self.rejected: set[int] = set()
        self.order_ids: list[int] = []
        self.last_seq = 0

    def submit(self, command: Record) -> Record | None:
        self.clock += 7_000_000_000  # 7 s a command: trades span candles and days
        return self.journal(command)

    def journal(self, command: Record) -> Record | None:
        """``command`` sequenced at ``clock``, journaled and run by its matchers, their
        events applied and handed to ``took``; None where the sequencer refused it."""
        decision = self.sequencer.submit(command, self.clock)
        if decision.command is None:
            return None
        stamped = decision.command
        seq: int = stamped.seq  # type: ignore[attr-defined]
        self.writer.append(seq, self.codec.encode_slot(stamped), 1)
        self.last_seq = seq
        events: list[Record] = []
        for name in decision.matchers:
            for event in self.matchers[name].execute(stamped):
                self.sequencer.apply(event)
                events.append(event)
        self.took(stamped, events)
        return stamped

    def took(self, stamped: Record, events: list[Record]) -> None:
        """What the builder keeps of a journaled command and its events."""
        for event in events:
            if isinstance(event, Trade):
                self.trades.append(event)
            elif isinstance(event, OrderDone):
                self.done[event.order_id] = event
            elif (
                isinstance(event, Rejected)
                and isinstance(stamped, NewOrder)
                and event.order_id == stamped.order_id
            ):
                self.rejected.add(event.order_id)
        if isinstance(stamped, NewOrder):
            self.order_ids.append(stamped.order_id)

    def new_order(
        self,
        account: int,
        side: Side,
        price: int,
        qty: int,
        *,
        symbol: int = 1,
        ord_type: OrdType = OrdType.LIMIT,
        tif: TimeInForce = TimeInForce.GTC,
        stp: StpMode = StpMode.NONE,
        stop: int = 0,
        display: int = 0,
        flags: int = 0,
        client_ids: bool = False,
    ) -> NewOrder | None:
        """A NewOrder of ``account`` journaled: as sequenced, or None where it was refused;
        ``client_ids`` names it ``c<its ref>``."""
        gw, session, ref, acc, sym = self._header(account, symbol)[2:7]
        stamped = self.submit(
            NewOrder(
                seq=0, ts_ns=0, gateway=gw, session=session, client_ref=ref, account=acc,
                symbol=sym, order_id=0, side=side, ord_type=ord_type, tif=tif, flags=flags,
                stp=stp, price=price, qty=qty, stop_price=stop, display_qty=display,
                client_id=f"c{ref}".encode() if client_ids else b"",
            )
        )  # fmt: skip
        return stamped if isinstance(stamped, NewOrder) else None

    def _header(self, account: int, symbol: int) -> tuple[int, int, int, int, int, int, int]:
        self.ref += 1
        return (0, 0, 1, 1, self.ref, account, symbol)

    def setup(self) -> None:
        for account in ACCOUNTS:
            self.submit(CreateAccount(0, 0, 1, 1, self._next(), account))
            for asset in (1, 2, 3):
                self.submit(Transfer(0, 0, 1, 1, self._next(), account, asset, 10**15, self.ref))

    def _next(self) -> int:
        self.ref += 1
        return self.ref

    def random_commands(self, n: int) -> None:
        rng = self.rng
        for _ in range(n):
            account = rng.choice(ACCOUNTS)
            symbol = rng.choice((1, 2))
            book = self.matchers[self.owner[symbol]].books[symbol]
            resting = [oid for oid, o in book.orders.items() if o.account == account]
            roll = rng.random()
            if resting and roll < 0.15:
                self.submit(CancelOrder(*self._header(account, symbol), rng.choice(resting)))
            elif resting and roll < 0.25:
                oid = rng.choice(resting)
                price = 100_000 + rng.randint(-20, 20)
                self.submit(
                    ReplaceOrder(*self._header(account, symbol), oid, price, rng.randint(1, 60))
                )
            elif roll < 0.27:
                self.submit(ReplaceOrder(*self._header(account, symbol), 10**9, 100_000, 5))
            else:
                ioc = roll > 0.9
                gw, session, ref, acc = self._header(account, symbol)[2:6]
                self.submit(
                    NewOrder(
                        seq=0, ts_ns=0, gateway=gw, session=session, client_ref=ref, account=acc,
                        symbol=symbol, order_id=0, side=rng.choice((Side.BUY, Side.SELL)),
                        ord_type=OrdType.LIMIT,
                        tif=TimeInForce.IOC if ioc else TimeInForce.GTC, flags=0,
                        stp=StpMode.CANCEL_NEWEST, price=100_000 + rng.randint(-20, 20),
                        qty=rng.randint(1, 50), stop_price=0, display_qty=0,
                    )
                )  # fmt: skip

    def close(self) -> None:
        self.writer.close()


def build(cfg: RingexConfig, commands: int, seed: int = 1) -> JournalBuilder:
    builder = JournalBuilder(cfg, seed)
    builder.setup()
    builder.random_commands(commands)
    return builder


def write_all(cfg: RingexConfig, dsn: str, batch_rows: int = 200) -> int:
    """Run a writer over the whole journal once; returns its checkpoint."""
    writer = DbWriter(cfg, dsn, WriterOptions(batch_rows=batch_rows, batch_ms=10**6))
    try:
        return writer.run(to_end=True)
    finally:
        writer.close()


def fund(b: JournalBuilder, account: int, amounts: dict[int, int]) -> None:
    b.submit(CreateAccount(0, 0, 1, 1, b._next(), account))
    for asset, amount in amounts.items():
        assert b.submit(Transfer(0, 0, 1, 1, b._next(), account, asset, amount, b.ref))


def limit_order(
    b: JournalBuilder, account: int, symbol: int, side: Side, price: int, qty: int
) -> int:
    gw, session, ref, acc, sym = b._header(account, symbol)[2:7]
    stamped = b.submit(
        NewOrder(
            seq=0, ts_ns=0, gateway=gw, session=session, client_ref=ref, account=acc,
            symbol=sym, order_id=0, side=side, ord_type=OrdType.LIMIT, tif=TimeInForce.GTC,
            flags=0, stp=StpMode.NONE, price=price, qty=qty, stop_price=0, display_qty=0,
        )
    )  # fmt: skip
    assert isinstance(stamped, NewOrder), "the router refused the order"
    return stamped.order_id
