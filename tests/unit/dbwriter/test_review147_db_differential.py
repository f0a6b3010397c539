"""Review 147: the database and its history answers against a reference projection.

Method: a seeded random flow through the real sequencer and matchers (``journal_gen``'s
builder, each command's events kept): limit orders of every time in force, post-only,
icebergs, market and stop-market (capped or not), stop-limit, every STP mode, client ids,
cancels, replaces (some below the fill, some renaming), mass cancels, halts, session ends,
accounts opened, deposits, withdrawals; the clock stepping by ms, to a minute's first and last
microsecond, by hours and days. After each chunk of the journal a ``DbWriter`` runs to its end
(random batch sizes and snapshot periods), dying in turn inside a batch's transaction after
its lanes committed, or mid-batch; its snapshots are sometimes removed (a replay from seq 1).
A users file changes between runs. Every table is then held against a reference computed here
from the commands and events (not ``projection.py``), and ``History`` (as ``rest.py`` makes
it) is paged to the end: allOrders by orderId, myTrades by fromId (and orderId), klines by
startTime, with random windows, limits and another account asking.

Sound: every table equals the reference after crashes, replays from snapshots or seq 1 and
lanes rewound (each trade once, with its fees; candles per bucket; balances, their
``updated_seq`` never before a change; orders column by column); the history pages hold
the reference's rows once each within their limits (myTrades one over only to keep a
self-trade whole), windows inclusive at both ends, no account shown another's orders.

Faults (each a strict xfail when written): none found; no assertion of this method failed.
"""

from __future__ import annotations

import itertools
import os
import random
import shutil
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from config.schema import RingexConfig, SymbolConfig
from procs.common import records as rec
from procs.common.embedded_postgres import PORT, SUPERUSER, EmbeddedPostgres
from procs.common.topology import snapshot_dir
from procs.common.types import AdminAction, DoneReason, OrderFlag, OrdType, Side, StpMode
from procs.common.types import TimeInForce as Tif
from procs.common.users import UserStore
from procs.dbwriter.writer import Backoff, DbWriter, WriterOptions
from procs.gateway.history import KLINES, STATUS_NAMES, History, order_json
from procs.gateway.instruments import format_units
from tests.unit.dbwriter.history_query import query_history
from tests.unit.dbwriter.journal_gen import ACCOUNTS, JournalBuilder, make_cfg

MINUTE = 60 * 10**9
ROWED = (rec.Accepted, rec.OrderDone, rec.Replaced, rec.Triggered, rec.Rejected)
Filed = tuple["Flow", str]
DONE = dict(zip(DoneReason, (3, 4, 5, 6, 7), strict=True))  # the order_statuses codes


class CrashError(Exception):
    """The writer dies here."""


class Flow(JournalBuilder):
    """The builder, keeping each journaled command with its events, and a clock of its own."""

    def __init__(self, cfg: RingexConfig, seed: int) -> None:
        super().__init__(cfg, seed)
        self.log: list[tuple[rec.Record, list[rec.Record]]] = []
        self.accounts = list(ACCOUNTS)
        self.balances: dict[tuple[int, int], tuple[int, int]] = {}
        self.changed: dict[tuple[int, int], int] = {}  # (account, asset) -> its last change

    def submit(self, command: rec.Record) -> rec.Record | None:
        return self.journal(command)  # at the flow's own clock (``tick``)

    def took(self, stamped: rec.Record, events: list[rec.Record]) -> None:
        self.trades += [e for e in events if isinstance(e, rec.Trade)]
        self.log.append((stamped, events))
        now = {(a, s): (f, r) for a, s, f, r in self.sequencer.accounts.state().balances}
        for key in now.keys() | self.balances.keys():
            if now.get(key, (0, 0)) != self.balances.get(key, (0, 0)):
                self.changed[key] = self.last_seq
        self.balances = now

    def tick(self) -> None:
        """The clock on: mostly ms to seconds, some to a minute's edges, hours, days."""
        rng, roll = self.rng, self.rng.random()
        if roll < 0.06:
            self.clock = (self.clock // MINUTE + 1) * MINUTE  # a minute's first ns
        elif roll < 0.12:
            self.clock = (self.clock // MINUTE + 1) * MINUTE - 1_000  # its last microsecond
        elif roll < 0.14:
            self.clock += rng.choice((3_600, 5 * 3_600, 86_400 + 77)) * 10**9
        else:
            self.clock += rng.randint(1, 9_000) * 10**6

    def random_flow(self, n: int) -> None:
        rng = self.rng
        for _ in range(n):
            self.tick()
            account, symbol = rng.choice(self.accounts), rng.choice((1, 2))
            book = self.matchers[self.owner[symbol]].books[symbol]
            resting = {**book.orders, **book.stops}
            mine = [o for o, r in resting.items() if r.account == account]
            header = self._header(account, symbol)
            roll = rng.random()
            if not mine and roll < 0.22:
                roll = 0.5  # a new order
            if roll < 0.10:
                self.submit(rec.CancelOrder(*header, rng.choice([*mine, 1, 10**6])))
            elif roll < 0.22:
                cid = rng.choice((b"", b"r%d" % self.ref))
                price = 100_000 + rng.randint(-15, 15)
                target = rng.choice(mine)
                self.submit(rec.ReplaceOrder(*header, target, price, rng.randint(1, 70), cid))
            elif roll < 0.228:
                who, where = rng.choice((0, account)), rng.choice((0, symbol))
                self.submit(rec.MassCancel(0, 0, 1, 1, self._next(), who, where))
            elif roll < 0.245:
                where = rng.choice((0, symbol))
                self.submit(rec.AdminCommand(0, 0, AdminAction.END_OF_SESSION, where, self._next()))
            elif roll < 0.25:
                self.submit(rec.AdminCommand(0, 0, AdminAction.HALT, symbol, self._next()))
                self.random_flow(2)  # refused while halted, cancels go
                self.submit(rec.AdminCommand(0, 0, AdminAction.RESUME, symbol, self._next()))
            elif roll < 0.27:
                amount = rng.choice((1, -1)) * rng.randint(1, 10**12)
                self.submit(rec.Transfer(0, 0, 1, 1, self._next(), account, rng.choice((1, 2, 3)),
                                     amount, self.ref))  # fmt: skip
            elif roll < 0.275:
                new = max(self.accounts) + 1
                self.submit(rec.CreateAccount(0, 0, 1, 1, self._next(), new))
                for a in (1, 2, 3):
                    self.submit(rec.Transfer(0, 0, 1, 1, self._next(), new, a, 10**14, self.ref))
                self.accounts.append(new)
            else:
                self._new_order(header, symbol)

    def _new_order(self, header: tuple[int, ...], symbol: int) -> None:
        rng = self.rng
        kind = rng.choices(list(OrdType), [70, 10, 10, 10])[0]
        side, tif = rng.choice((Side.BUY, Side.SELL)), rng.choice(list(Tif))
        price = 100_000 + rng.randint(-15, 15)
        stop = 100_000 + rng.randint(-15, 15) if kind in (OrdType.STOP, OrdType.STOP_LIMIT) else 0
        if kind in (OrdType.MARKET, OrdType.STOP):
            tif = Tif.IOC if kind == OrdType.MARKET else Tif.GTC
            price = price if rng.random() < 0.3 else 0  # 0: the router caps a buy
        qty = rng.randint(1, 60)
        rests = kind == OrdType.LIMIT and tif in (Tif.GTC, Tif.DAY)
        display = rng.randint(1, 10) if rests and rng.random() < 0.25 else 0
        if display and -(-qty // display) > 100:
            display = 0
        flags = OrderFlag.POST_ONLY if rests and rng.random() < 0.08 else 0
        gw, session, ref, acc = header[2:6]
        self.submit(
            rec.NewOrder(
                seq=0, ts_ns=0, gateway=gw, session=session, client_ref=ref, account=acc,
                symbol=symbol, order_id=0, side=side, ord_type=kind, tif=tif, flags=flags,
                stp=rng.choice(list(StpMode)), price=price, qty=qty, stop_price=stop,
                display_qty=display, client_id=rng.choice((b"", b"c-%d" % ref)),
            )
        )  # fmt: skip


# -- the reference -------------------------------------------------------------------------------


def ref_orders(flow: Flow) -> dict[int, tuple[Any, ...]]:
    """Each order's row as the orders table should hold it, from the commands and events:
    (id, account, symbol, side, type, tif, price, stop, size, remaining, filled, status,
    reject code, created seq, created us, updated seq, updated us, flags, display, client id)."""
    rows: dict[int, dict[str, Any]] = {}
    for cmd, events in flow.log:
        stamp = (cmd.seq, cmd.ts_ns // 1000)  # type: ignore[attr-defined]
        if isinstance(cmd, rec.NewOrder):
            rows[cmd.order_id] = dict(
                head=(cmd.order_id, cmd.account, cmd.symbol, int(cmd.side), int(cmd.ord_type),
                      int(cmd.tif)),
                price=0 if cmd.flags & OrderFlag.CAPPED else cmd.price, stop=cmd.stop_price,
                size=cmd.qty, filled=0, status=0, code=0, created=stamp, updated=stamp,
                flags=cmd.flags, display=cmd.display_qty, cid=cmd.client_id.decode(),
            )  # fmt: skip
        for e in events:
            if isinstance(e, rec.Trade):
                for oid in (e.maker_order_id, e.taker_order_id):
                    rows[oid]["filled"] += e.qty
                    rows[oid]["updated"] = stamp
                continue
            if isinstance(e, rec.Rejected):
                if not (isinstance(cmd, rec.NewOrder) and e.order_id == cmd.order_id):
                    continue  # a refused cancel or replace changes no row
                rows[e.order_id].update(status=8, code=int(e.code))
            if not isinstance(e, ROWED):
                continue
            row = rows[e.order_id]
            row["updated"] = stamp
            if isinstance(e, rec.Accepted):
                row["status"] = 1
            elif isinstance(e, rec.OrderDone):
                row["status"] = DONE[e.reason]
            elif isinstance(e, rec.Replaced):
                assert isinstance(cmd, rec.ReplaceOrder)
                row["price"] = e.price
                row["size"] = max(cmd.order_qty, row["filled"])
                row["cid"] = cmd.client_id.decode() or row["cid"]
    open_now: dict[int, int] = {}
    for matcher in flow.matchers.values():
        for book in matcher.books.values():
            open_now |= {o: r.leaves + r.reserve for o, r in book.orders.items()}
            open_now |= {o: r.leaves for o, r in book.stops.items()}
    out = {}
    for oid, r in rows.items():
        status = r["status"]
        if oid in open_now:
            assert status in (1, 2), (oid, r)
            status = 2 if r["filled"] else 1
        out[oid] = (
            *r["head"], r["price"], r["stop"], r["size"], open_now.get(oid, 0), r["filled"],
            status, r["code"], *r["created"], *r["updated"], r["flags"], r["display"], r["cid"],
        )  # fmt: skip
    return out


def ref_candles(trades: list[rec.Trade], interval_s: int) -> dict[tuple[int, int], tuple[int, ...]]:
    """(symbol, bucket us) -> OHLC (by trade id), volumes, count, first and last trade id."""
    out: dict[tuple[int, int], list[int]] = {}
    for t in sorted(trades, key=lambda t: (t.symbol, t.trade_id)):
        key = (t.symbol, t.ts_ns // 10**9 // interval_s * interval_s * 10**6)
        c = out.get(key)
        if c is None:
            out[key] = [t.price] * 4 + [t.qty, t.price * t.qty, 1, t.trade_id, t.trade_id]
        else:
            c[1], c[2], c[3] = max(c[1], t.price), min(c[2], t.price), t.price
            c[4], c[5], c[6], c[8] = c[4] + t.qty, c[5] + t.price * t.qty, c[6] + 1, t.trade_id
    return {k: tuple(v) for k, v in out.items()}


def _rows(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return [tuple(r) for r in conn.execute(sql)]


def _us(column: str) -> str:
    return f"(extract(epoch FROM {column}) * 1000000)::bigint"


ORDERS_SQL = (
    "SELECT id, account_id, symbol_id, side, ord_type, tif, price, stop_price, size, remaining, "
    f"filled, status, reject_code, created_seq, {_us('created')}, updated_seq, {_us('updated')}, "
    "flags, display, client_order_id FROM orders"
)
TRADES_SQL = (
    f"SELECT symbol_id, trade_id, seq, {_us('ts')}, price, size, aggressor, maker_order_id, "
    "maker_account_id, taker_order_id, taker_account_id, maker_fee, taker_fee FROM trades "
    "ORDER BY 1, 2"
)
CANDLES_SQL = (
    f"SELECT symbol_id, {_us('bucket')}, open, high, low, close, volume, quote_volume, trades, "
    "first_trade_id, last_trade_id FROM candles WHERE interval_s = "
)


# -- the run ------------------------------------------------------------------------------------


def _run_writer(cfg: RingexConfig, dsn: str, rng: random.Random, users: Path, crash: str) -> str:
    """A writer run to the journal's end, dying where ``crash`` says (if it gets there)."""
    options = WriterOptions(
        batch_rows=rng.choice((1, 5, 40, 300, 10**6)), batch_ms=10**6,
        snapshot_every=rng.choice((9, 50, 10**6)), snapshot_s=0, backoff=Backoff(0.01, 0.1),
        users_path=users,
    )  # fmt: skip
    writer = DbWriter(cfg, dsn, options)
    at, calls = rng.randint(1, 6), itertools.count(1)

    def count(*_args: object) -> None:
        if next(calls) == at:
            raise CrashError(crash)

    if crash == "in-commit":  # the lanes have committed, the batch and checkpoint not
        writer.store.before_commit.append(lambda _conn, _batch: count())
    elif crash == "mid-batch":  # a batch built, neither sealed nor committed
        writer.pet = count
    try:
        writer.run(to_end=True)
        crash = "none"
    except CrashError:
        pass
    finally:
        writer.close()
    if rng.random() < 0.3:  # the writer's snapshots lost: the next start replays from 1
        shutil.rmtree(snapshot_dir(cfg, "dbwriter"), ignore_errors=True)
    return crash


@pytest.fixture(scope="module")
def filed(tmp_path_factory: pytest.TempPathFactory, pg: EmbeddedPostgres) -> Iterator[Filed]:
    """The flow, filed into a database of its own through writers that crash and restart."""
    tmp, name = tmp_path_factory.mktemp("r147"), f"review147_{os.getpid()}"
    admin = f"host={pg.data} port={PORT} dbname=postgres user={SUPERUSER}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    dsn = admin.replace("dbname=postgres", f"dbname={name}")
    cfg = make_cfg(tmp)
    flow = Flow(cfg, seed=147)
    flow.setup()
    rng = random.Random(147)
    users, store = tmp / "users.json", UserStore(tmp / "users.json")
    crashes = []
    for chunk in range(10):
        flow.random_flow(rng.randint(60, 160))
        comp = f"U{rng.randint(1, 6)}"
        if rng.random() < 0.3:
            store.remove(comp)
        else:
            store.add(comp, "pw", rng.choice(flow.accounts), n=2)
        kind = ("none", "in-commit", "mid-batch")[chunk % 3]
        crashes.append(_run_writer(cfg, dsn, rng, users, kind))
    flow.close()
    assert _run_writer(cfg, dsn, rng, users, "none") == "none"
    assert {"in-commit", "mid-batch"} <= set(crashes), crashes
    kinds = {type(e).__name__ for _, events in flow.log for e in events}
    assert {"Trade", "Triggered", "Replaced", "Rejected", "OrderDone", "SymbolStatus"} <= kinds
    reasons = {e.reason for _, ev in flow.log for e in ev if isinstance(e, rec.OrderDone)}
    assert reasons == set(DoneReason)
    assert len(flow.trades) > 300 and len({t.ts_ns // 86_400_000_000_000 for t in flow.trades}) > 2
    yield flow, dsn


# -- the tables ---------------------------------------------------------------------------------


def test_orders_rows_equal_the_reference(filed: Filed) -> None:
    flow, dsn = filed
    want = ref_orders(flow)
    got = {r[0]: r for r in _rows(dsn, ORDERS_SQL)}
    assert sorted(got) == sorted(want)
    wrong = {oid: (got[oid], want[oid]) for oid in want if got[oid] != want[oid]}
    assert wrong == {}


def test_trades_rows_are_every_trade_once_with_its_fees(filed: Filed) -> None:
    flow, dsn = filed
    markets = flow.sequencer.accounts.markets
    want = sorted(
        (t.symbol, t.trade_id, t.seq, t.ts_ns // 1000, t.price, t.qty, int(t.aggressor),
         t.maker_order_id, t.maker_account, t.taker_order_id, t.taker_account,
         *markets[t.symbol].fees(t.price, t.qty))
        for t in flow.trades
    )  # fmt: skip
    assert _rows(dsn, TRADES_SQL) == want


def test_balances_accounts_transfers_and_users_equal_the_exchange(filed: Filed) -> None:
    flow, dsn = filed
    accounts = flow.sequencer.accounts
    places = {a.id: -a.decimals for a in flow.cfg.assets}
    got = {(a, s): (f, r, u) for a, s, f, r, u in _rows(
        dsn, "SELECT account_id, asset_id, free, reserved, updated_seq FROM balances")}  # fmt: skip
    for (account, asset), (*value, updated_seq) in got.items():
        free, reserved = accounts.balance(account, asset)
        want = [Decimal(free).scaleb(places[asset]), Decimal(reserved).scaleb(places[asset])]
        assert value == want, (account, asset)
        # marked generously, never missed: at or after its last change
        assert updated_seq >= flow.changed.get((account, asset), 0), (account, asset)
    held = {(a, s) for a, s, f, r in accounts.state().balances if (f, r) != (0, 0)}
    assert held <= set(got)
    opened = [(c.account, c.seq) for c, _ in flow.log if isinstance(c, rec.CreateAccount)]
    assert _rows(dsn, "SELECT id, created_seq FROM accounts ORDER BY 2") == opened
    moved = [
        (c.seq, c.account, c.asset, Decimal(c.amount).scaleb(places[c.asset]), c.key)
        for c, _ in flow.log if isinstance(c, rec.Transfer)
    ]  # fmt: skip
    assert _rows(dsn, "SELECT seq, account_id, asset_id, amount, key FROM transfers "
                      "ORDER BY seq") == moved  # fmt: skip
    users = sorted((u.comp_id, u.session, u.account) for u in UserStore(
        Path(flow.cfg.var_dir) / "users.json").users())  # fmt: skip
    assert _rows(dsn, "SELECT sender_comp_id, id, account_id FROM users ORDER BY 1") == users


@pytest.mark.parametrize("interval_s", [60, 3_600, 86_400])
def test_candles_are_the_trades_per_bucket(filed: Filed, interval_s: int) -> None:
    flow, dsn = filed
    got = {r[:2]: tuple(int(v) for v in r[2:]) for r in _rows(dsn, f"{CANDLES_SQL}{interval_s}")}
    assert got == ref_candles(flow.trades, interval_s)


# -- the history answers ------------------------------------------------------------------------


def ask(flow: Flow, dsn: str, make: Callable[[History], Awaitable[list[str]]]) -> list[str]:
    """``make`` on a ``History`` made as ``rest.py`` makes it (the assets: commissions)."""
    return query_history(dsn, make, flow.cfg.assets)


def _sym(flow: Flow, symbol: int) -> SymbolConfig:
    return next(s for s in flow.cfg.symbols if s.id == symbol)


def _order_view(row: tuple[Any, ...], sym: SymbolConfig) -> dict[str, Any]:
    """What allOrders should show of a reference row (``ref_orders``'s layout)."""
    pd, qd = sym.price_decimals, sym.qty_decimals
    return {
        "orderId": row[0], "side": Side(row[3]).name, "status": STATUS_NAMES[row[11]],
        "price": format_units(row[6], pd).decode(), "stopPrice": format_units(row[7], pd).decode(),
        "origQty": format_units(row[8], qd).decode(), "clientOrderId": row[19],
        "executedQty": format_units(row[10], qd).decode(), "time": row[14] // 1000,
        "updateTime": row[16] // 1000, "icebergQty": format_units(row[18], qd).decode(),
    }  # fmt: skip


def test_all_orders_paged_and_windowed_equal_the_reference(filed: Filed) -> None:
    """Every account's orders on each symbol, paged by ``orderId`` = last + 1 with limits of
    1 to 1000: each page within its limit, of the account only, the pages together every
    order but the refused once each, every field as the reference; then random windows. A
    refused order is found neither by its id nor by its client id (reviews of 2026-12-03)."""
    flow, dsn = filed
    ref = ref_orders(flow)
    rng = random.Random(1471)

    async def check(h: History) -> list[str]:
        wrong: list[str] = []
        for account in flow.accounts:
            for symbol in (1, 2):
                sym = _sym(flow, symbol)
                mine = [r for _, r in sorted(ref.items()) if r[1:3] == (account, symbol)]
                listed = [r for r in mine if r[11] != 8]
                limit, from_id, got = rng.choice((1, 3, 7, 50, 1000)), 0, []
                while True:
                    page = await h.orders(account, symbol, from_id=from_id, limit=limit)
                    if len(page) > limit or any(r[1] != account for r in page):
                        wrong.append(f"page {account} {symbol} {from_id} {limit}")
                    got += page
                    if len(page) < limit:
                        break
                    from_id = page[-1][0] + 1
                other = flow.accounts[account == flow.accounts[0]]
                for r in mine:  # another account asks for it: nothing; a refused one
                    if await h.order(other, r[0]) is not None:  # is found by no one
                        wrong.append(f"order {r[0]} shown to another account")
                    if (await h.order(account, r[0]) is None) != (r[11] == 8):
                        wrong.append(f"order {r[0]} of {account} (status {r[11]})")
                for cid in {r[19] for r in mine if r[19]}:  # the newest not refused
                    named = [r[0] for r in listed if r[19] == cid]
                    row = await h.order_by_client_id(account, symbol, cid)
                    if (row and row[0]) != (max(named) if named else None):
                        wrong.append(f"clientOrderId {cid} of {account}: {row and row[0]}")
                keys = list(_order_view(listed[0], sym)) if listed else []
                shown = [{k: order_json(r, sym)[k] for k in keys} for r in got]
                if shown != [_order_view(r, sym) for r in listed]:
                    wrong.append(f"allOrders {account} {symbol} limit {limit}")
                times = [r[14] // 1000 for r in listed] or [0]
                for _ in range(4):
                    start = rng.choice((None, rng.choice(times), rng.choice(times) + 1))
                    end = rng.choice((None, rng.choice(times), rng.choice(times) - 1))
                    lim = rng.choice((1, 2, 5, 500))
                    page = await h.orders(account, symbol, start_ms=start, end_ms=end, limit=lim)
                    inside = [r[0] for r in listed if (start is None or r[14] // 1000 >= start)
                              and (end is None or r[14] // 1000 <= end)]  # fmt: skip
                    want = inside[:lim] if start is not None else inside[-lim:]
                    if [r[0] for r in page] != want:
                        wrong.append(f"window {account} {symbol} {start} {end} {lim}")
        return wrong

    assert ask(flow, dsn, check) == []


def _trade_sides(flow: Flow, account: int, symbol: int) -> list[tuple[Any, ...]]:
    """(id, isMaker, orderId, price, qty, time, isBuyer, commission) of each side ``account``
    was on, by trade id, taker first."""
    sym, markets = _sym(flow, symbol), flow.sequencer.accounts.markets
    out = []
    for t in flow.trades:
        if t.symbol != symbol:
            continue
        fees = markets[symbol].fees(t.price, t.qty)
        sides = ((False, t.taker_account, t.taker_order_id, fees[1]),
                 (True, t.maker_account, t.maker_order_id, fees[0]))  # fmt: skip
        for maker, acct, oid, fee in sides:
            if acct == account:
                buyer = (t.aggressor == Side.BUY) != maker
                out.append((t.trade_id, maker, oid, format_units(t.price, sym.price_decimals)
                            .decode(), format_units(t.qty, sym.qty_decimals).decode(),
                            t.ts_ns // 10**6, buyer, format_units(fee, 6).decode()))  # fmt: skip
    return sorted(out, key=lambda r: (r[0], r[1]))


def test_my_trades_paged_by_from_id_equal_the_reference(filed: Filed) -> None:
    """myTrades paged by ``fromId`` = last id + 1 (and one order's, by ``orderId``): each
    page within its limit (one over only for a self-trade's second side), the pages every
    side the account was on once, as the reference; random windows inclusive of both ends."""
    flow, dsn = filed
    rng = random.Random(1472)
    keys = ("id", "isMaker", "orderId", "price", "qty", "time", "isBuyer", "commission")

    async def pages(h: History, account: int, sym: SymbolConfig, **kw: Any) -> list[Any]:
        limit, from_id, got = rng.choice((1, 2, 5, 40, 1000)), 0, []
        while True:
            page = await h.trades(account, sym, from_id=from_id, limit=limit, **kw)
            over = len(page) == limit + 1 and page[-1]["id"] == page[-2]["id"]
            assert len(page) <= limit or over, (account, sym.id, from_id, limit)
            got += [tuple(r[k] for k in keys) for r in page]
            if len(page) < limit:
                return got
            from_id = page[-1]["id"] + 1

    async def check(h: History) -> list[str]:
        wrong = []
        for account in flow.accounts:
            for symbol in (1, 2):
                sym, want = _sym(flow, symbol), _trade_sides(flow, account, symbol)
                if await pages(h, account, sym) != want:
                    wrong.append(f"myTrades {account} {symbol}")
                for oid in sorted({r[2] for r in want})[:3]:
                    theirs = [r for r in want if r[2] == oid]
                    if await pages(h, account, sym, order_id=oid) != theirs:
                        wrong.append(f"myTrades {account} {symbol} order {oid}")
                times = [r[5] for r in want] or [0]
                for _ in range(4):
                    start = rng.choice((None, rng.choice(times), rng.choice(times) + 1))
                    end = rng.choice((None, rng.choice(times), rng.choice(times) - 1))
                    got = await h.trades(account, sym, start_ms=start, end_ms=end, limit=1000)
                    inside = [r for r in want if (start is None or r[5] >= start)
                              and (end is None or r[5] <= end)]  # fmt: skip
                    if [tuple(r[k] for k in keys) for r in got] != inside:
                        wrong.append(f"myTrades window {account} {symbol} {start} {end}")
        return wrong

    assert ask(flow, dsn, check) == []


def _ref_klines(trades: list[rec.Trade], sym: SymbolConfig, width: int, top: int) -> list[Any]:
    """Every kline from the first trade's window to ``top``, flat at the last close where
    nobody traded; a buying aggressor's trades add the taker buy volumes (review 323)."""
    windows: dict[int, list[int]] = {}
    for t in sorted((t for t in trades if t.symbol == sym.id), key=lambda t: t.trade_id):
        at = t.ts_ns // 10**6 // width * width
        k = windows.setdefault(at, [t.price] * 4 + [0] * 5)
        k[1], k[2], k[3] = max(k[1], t.price), min(k[2], t.price), t.price
        k[4], k[5], k[6] = k[4] + t.qty, k[5] + t.price * t.qty, k[6] + 1
        if t.aggressor == Side.BUY:
            k[7], k[8] = k[7] + t.qty, k[8] + t.price * t.qty
    out, close = [], 0
    pd, qd = sym.price_decimals, sym.qty_decimals
    for at in range(min(windows), top + 1, width):
        o, h, lo, c, v, q, n, bv, bq = windows.get(at) or [close] * 4 + [0] * 5
        close = c
        out.append([at, *(format_units(p, pd).decode() for p in (o, h, lo, c)),
                    format_units(v, qd).decode(), at + width - 1,
                    format_units(q, pd + qd).decode(), n, format_units(bv, qd).decode(),
                    format_units(bq, pd + qd).decode(), "0"])  # fmt: skip
    return out


@pytest.mark.parametrize("interval", list(KLINES))
def test_klines_paged_by_start_time_equal_the_trades(filed: Filed, interval: str) -> None:
    """Klines paged by ``startTime`` = the last open time + 1 ms (rounded up to the next
    window), limit honoured, the pages together every window from the first trade's to the
    end, as the trades make them; the newest page up to random end times."""
    flow, dsn = filed
    width = KLINES[interval][0] * 1000
    rng = random.Random(interval)
    now_ms = flow.trades[-1].ts_ns // 10**6 + 2 * width

    async def check(h: History) -> list[str]:
        wrong = []
        for symbol in (1, 2):
            sym = _sym(flow, symbol)
            want = _ref_klines(flow.trades, sym, width, now_ms // width * width)
            limit, start, got = rng.choice((1, 7, 100, 1000)), 0, []
            while True:
                page = await h.klines(sym, interval, start_ms=start, limit=limit, now_ms=now_ms)
                if len(page) > limit:
                    wrong.append(f"{interval} {symbol} page of {len(page)} > {limit}")
                got += page
                if len(page) < limit:
                    break
                start = page[-1][0] + 1
            if got != want:
                wrong.append(f"{interval} {symbol} limit {limit}: {len(got)} vs {len(want)}")
            for _ in range(3):
                end, lim = rng.choice(want)[0] + rng.choice((0, width - 1)), rng.randint(1, 30)
                page = await h.klines(sym, interval, end_ms=end, limit=lim, now_ms=now_ms)
                if page != [k for k in want if k[0] <= end][-lim:]:
                    wrong.append(f"{interval} {symbol} newest up to {end} limit {lim}")
        return wrong

    assert ask(flow, dsn, check) == []
