"""Review 116: the config's own documentation (the ``#:`` and inline comments of the fields in
``config/schema.py`` and ``config/edges.py``) held against how each key is used at run time
in ``procs/`` and ``shm/``: units (ms, s, MiB), what 0 and other special values mean, the
bounds stated against those enforced, defaults derived from other keys, keys read nowhere.
Here: wait, ring, symbols, matchers, database, supervisor, replication, risk, journal;
``..._docs2.py``: gateways, REST, market data, gc, the risk rate, fee account, top level.

Convention: a test reads its key's comment from the source (``doc``) and asserts the quoted
words are in it (a reworded comment fails loudly), then calls the code using the key with the
value the comment talks about or, where impractical, checks the using function's source.
Right: a plain test. Wrong: ``xfail(strict=True)`` asserting the comment, reason naming a fix.

Disagreement found: ``journal.snapshot_every``'s "0: only `ringex replay --snapshot`", while
``procs/router/snapshots.py`` ``Snapshots.maybe_start`` still forks one every
``journal.snapshot_every_s`` (300 s by default) after any command: 0 turns off the count only
(comment side). Every other comment checked is right, and no key checked is dead config."""

from __future__ import annotations

import contextlib
import inspect
import os
import re
import time
import types
from pathlib import Path

import msgspec
import pytest

import procs.common.gc_policy
import procs.core.sequencer
import procs.dbwriter.store
import procs.dbwriter.writer
import procs.matcher.main
import procs.router.intake
import procs.router.main
import procs.supervisor.main
import procs.supervisor.stuck_watch
import shm.wait
from config.schema import (
    DEFAULT_SPINS,
    AssetConfig,
    DatabaseConfig,
    JournalConfig,
    MatcherConfig,
    ReplicationConfig,
    RingConfig,
    RingexConfig,
    RiskConfig,
    SupervisorConfig,
    SymbolConfig,
    WaitConfig,
)
from procs.common import endpoints, replication_ack
from procs.common.journal import HEADER_SIZE
from procs.common.record_codec import RecordCodec
from procs.common.records import NewOrder
from procs.common.result_codes import ResultCode
from procs.common.topology import journal_archive_dir
from procs.common.types import OrdType, Side, StpMode, TimeInForce
from procs.core.money import Market
from procs.core.order_checks import OrderChecks
from procs.core.symbols import SymbolSpec, symbol_specs
from procs.dbwriter.main import options
from procs.router.main import _open_journal
from procs.router.snapshots import Snapshots
from procs.supervisor.plan import plan
from procs.supervisor.session_end import SessionEnds
from shm.header import MAX_CONSUMERS, Geometry
from tests.unit.router.test_accounts import Desk
from tests.unit.router.test_accounts import config as desk_config


def doc(cls: type, field: str) -> str:
    """The comment of ``cls.field`` in its source, whitespace collapsed: the ``#:`` block above
    it (shared by the fields listed right under it) and its inline comment."""
    lines = inspect.getsource(cls).splitlines()
    at = next(i for i, line in enumerate(lines) if re.match(rf"^    {field}\s*:", line))
    inline = lines[at].partition("  # ")[2]
    i = at - 1
    while i >= 0 and not lines[i].lstrip().startswith("#:"):
        if not lines[i].strip() or '"""' in lines[i]:
            return " ".join(inline.split())
        i -= 1
    block: list[str] = []
    while i >= 0 and lines[i].lstrip().startswith("#:"):
        block.insert(0, lines[i].lstrip()[2:].strip())
        i -= 1
    return " ".join(" ".join([*block, inline]).split())


def quoted(cls: type, field: str, *quotes: str) -> None:
    """Each of ``quotes`` is in ``cls.field``'s comment (else the comment changed: look again)."""
    text = doc(cls, field)
    for quote in quotes:
        assert " ".join(quote.split()) in text, (field, quote, text)


def refused(struct: type, **values: object) -> str:
    """The message msgspec refuses ``values`` for ``struct`` with (the test fails if it loads)."""
    with pytest.raises(msgspec.ValidationError) as raised:
        msgspec.convert(values, struct)
    return str(raised.value)


def source(function: object) -> str:
    return " ".join(inspect.getsource(function).split())  # type: ignore[arg-type]


class _Parker:
    cap_s = None

    def __init__(self) -> None:
        self.parks: list[float] = []

    def park(self, ready: object, timeout_s: float) -> None:
        self.parks.append(timeout_s)


def test_wait_strategy_blocking_parks_at_once() -> None:
    """``wait.strategy``: "blocking: park on a semaphore", and ``DEFAULT_SPINS``' "A blocking
    stage parks at once": ``WaitConfig.build`` gives ``Blocking``, whose round 0 parks."""
    quoted(WaitConfig, "strategy", "blocking: park on a semaphore (~0% idle CPU)")
    assert "A blocking stage parks at once" in Path(inspect.getfile(WaitConfig)).read_text()
    built, parker = WaitConfig().build(), _Parker()
    assert isinstance(built, shm.wait.Blocking)
    built.idle(0, lambda: False, parker)  # type: ignore[arg-type]
    assert parker.parks == [0.02]


@pytest.mark.parametrize("strategy", ["yield", "sleep", "blocking"])
def test_wait_spins_unset_is_the_strategys_own(strategy: str) -> None:
    """``wait.spins``: "unset, the strategy's own (``DEFAULT_SPINS``)": ``WaitConfig.build``
    passes ``DEFAULT_SPINS[strategy]`` when unset, the configured count when set."""
    quoted(WaitConfig, "spins", "unset, the strategy's own (``DEFAULT_SPINS``)")
    unset = msgspec.convert({"strategy": strategy}, WaitConfig).build()
    assert unset.spins == DEFAULT_SPINS[strategy]  # type: ignore[attr-defined]
    seven = msgspec.convert({"strategy": strategy, "spins": 7}, WaitConfig).build()
    assert seven.spins == 7  # type: ignore[attr-defined]


def test_wait_park_timeout_s_is_the_longest_park_in_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``wait.park_timeout_s``: "blocking only: longest park in seconds": ``Blocking.idle``
    parks (or, unable to, sleeps) that many seconds; other strategies are built without it."""
    quoted(WaitConfig, "park_timeout_s", "blocking only: longest park in seconds")
    built, parker, slept = WaitConfig(park_timeout_s=0.5).build(), _Parker(), list[float]()
    built.idle(0, lambda: False, parker)  # type: ignore[arg-type]
    monkeypatch.setattr(time, "sleep", slept.append)  # (the module shm.wait calls)
    built.idle(0, lambda: False, None)
    assert parker.parks == [0.5] and slept == [0.5]
    assert not hasattr(WaitConfig(strategy="sleep", park_timeout_s=0.5).build(), "park_timeout_s")


def test_wait_min_and_max_sleep_s_are_the_first_and_last_sleep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``wait.min_sleep_s`` / ``max_sleep_s``: "sleep only: the backoff's first and last sleep,
    in seconds": ``SleepBackoff.idle`` sleeps min, doubling, up to max; min > max is refused."""
    quoted(WaitConfig, "max_sleep_s", "sleep only: the backoff's first and last sleep, in seconds")
    built = WaitConfig(strategy="sleep", spins=0, min_sleep_s=0.001, max_sleep_s=0.003).build()
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)  # (the modules shm.wait calls)
    monkeypatch.setattr(os, "sched_yield", lambda: None)
    for rounds in range(built.spins + built.yields + 5):  # type: ignore[attr-defined]
        built.idle(rounds, lambda: False, None)
    assert slept == [0.001, 0.002, 0.003, 0.003, 0.003]
    with pytest.raises(ValueError, match=r"min_sleep_s = 0\.01 is above max_sleep_s"):
        WaitConfig(strategy="sleep", min_sleep_s=0.01, max_sleep_s=0.001)


def test_ring_capacity_is_a_power_of_two_of_152_byte_slots() -> None:
    """``ring.capacity``: "(a power of two). Bytes = capacity x slot size (152 for records)":
    3 is refused; the codec's slot is 152 bytes; a ring's ``Geometry`` is that x capacity."""
    quoted(RingConfig, "capacity", "(a power of two)", "Bytes = capacity x slot size (152")
    with pytest.raises(ValueError, match="not a power of two"):
        RingConfig(capacity=3)
    codec = RecordCodec()
    assert codec.slot_size == 152
    geometry = Geometry(codec.slot_size, 1 << 10, codec.schema_id, 16)
    assert geometry.total_size - geometry.header_size == (1 << 10) * 152


def test_ring_max_consumers_bound_is_the_headers() -> None:
    """``ring.max_consumers``: "Consumer lines reserved in each ring header": Meta's le=62 is
    ``shm.header.MAX_CONSUMERS``; rings with more readers than lines are refused at load."""
    quoted(RingConfig, "max_consumers", "Consumer lines reserved in each ring header")
    assert MAX_CONSUMERS == 62
    Geometry(152, 1 << 10, 1, 62).validate()
    assert "<= 62" in refused(RingConfig, max_consumers=63)
    with pytest.raises(ValueError, match=r"ring\.max_consumers = 2"):
        RingexConfig(ring=RingConfig(max_consumers=2))  # router, gateway, market data


class _Checks(OrderChecks):
    """A book's checks alone (``procs/core/order_checks.py``): no order rests."""

    def __init__(self, spec: SymbolSpec, *, best: int | None = None, last: int = 0) -> None:
        self.spec, self.halted, self.last_price = spec, False, last
        self.orders, self.stops = {}, {}
        self._best_price = best

    def _best(self, side: Side) -> int | None:
        return self._best_price

    def _crossable(self, side: Side, price: int, enough: int) -> int:
        return 0


def _spec(**symbol: object) -> SymbolSpec:
    """The matcher's ``SymbolSpec`` of one symbol configured with ``symbol``."""
    base = SymbolConfig(name="BTC-USD", id=1, qty_decimals=4, base="BTC")
    cfg = RingexConfig(
        symbols=[msgspec.structs.replace(base, **symbol)],
        matchers=[MatcherConfig(name="m1", symbols=["BTC-USD"])],
    )
    return symbol_specs(cfg, "m1")[0]


def _order(price: int, qty: int, display: int = 0) -> NewOrder:
    head = (1, 0, 1, 1, 1, 7, 1, 1, Side.SELL, OrdType.LIMIT, TimeInForce.GTC, 0, StpMode.NONE)
    return NewOrder(*head, price, qty, 0, display)


def test_symbol_name_tick_lot_and_size_range() -> None:
    """``symbols.name`` ("no "/""), ``tick`` / ``lot`` ("A valid price is a multiple of ``tick``",
    "... of ``lot`` size units"), ``min_qty`` / ``max_qty`` ("Smallest and largest single
    order"): the pattern, and ``OrderChecks._check_limit`` / ``_check_qty``."""
    quoted(SymbolConfig, "name", 'no "/": stream names are split on it')
    quoted(SymbolConfig, "tick", "A valid price is a multiple of ``tick`` integer price units")
    quoted(SymbolConfig, "lot", "A valid quantity is a multiple of ``lot`` size units")
    quoted(SymbolConfig, "max_qty", "Smallest and largest single order, in size units")
    assert "matching regex" in refused(SymbolConfig, name="BTC/USD", id=1)
    checks = _Checks(_spec(tick=5, lot=10, min_qty=20, max_qty=90))
    assert checks._check_limit(105) is None
    assert checks._check_limit(103) == ResultCode.PRICE_NOT_ON_TICK
    assert [checks._check_qty(q) for q in (20, 90)] == [None, None]
    assert checks._check_qty(25) == ResultCode.QTY_NOT_ON_LOT
    assert {checks._check_qty(q) for q in (10, 100)} == {ResultCode.QTY_OUT_OF_RANGE}


def test_symbol_iceberg_parts_bounds_ceil_qty_over_display() -> None:
    """``symbols.iceberg_parts``: "at most this many slices ... (ceil(qty / display)":
    ``OrderChecks._check_order`` takes 31 in slices of 10 at 4 parts, refuses 41 (5)."""
    quoted(SymbolConfig, "iceberg_parts", "at most this many slices", "(ceil(qty / display)")
    checks = _Checks(_spec(iceberg_parts=4))
    assert checks._check_order(_order(100, 40, 10)) is None
    assert checks._check_order(_order(100, 31, 10)) is None
    assert checks._check_order(_order(100, 41, 10)) == ResultCode.INVALID_QTY


def test_symbol_band_bps_and_limit_band_bps_0_off() -> None:
    """``symbols.band_bps``: "furthest from the best opposite price a market order trades" and
    ``limit_band_bps``: "collar around the last trade price; 0 turns it off":
    ``OrderChecks._protection`` and ``_check_limit``."""
    quoted(SymbolConfig, "band_bps", "furthest from the best opposite price a market order")
    quoted(SymbolConfig, "limit_band_bps", "around the last trade price; 0 turns it off")
    market = _Checks(_spec(band_bps=500), best=10_000)
    assert (market._protection(Side.BUY), market._protection(Side.SELL)) == (10_500, 9_500)
    assert _Checks(_spec(limit_band_bps=0), last=10_000)._check_limit(20_000) is None
    collar = _Checks(_spec(limit_band_bps=100), last=10_000)
    assert collar._check_limit(10_100) is None
    assert collar._check_limit(10_200) == ResultCode.PRICE_OUT_OF_BAND
    assert _Checks(_spec(limit_band_bps=100))._check_limit(20_000) is None  # no trade yet


def test_symbol_quote_and_base_decimals_are_required() -> None:
    """``symbols.quote``: "The quote asset needs decimals >= price_decimals + qty_decimals and
    the base asset decimals >= qty_decimals": ``RingexConfig`` refuses either short."""
    quoted(SymbolConfig, "quote", "decimals >= price_decimals + qty_decimals", ">= qty_decimals")
    assets = [AssetConfig(name="USD", id=1, decimals=5), AssetConfig(name="BTC", id=2, decimals=3)]
    matchers = [MatcherConfig(name="m1", symbols=["BTC-USD"])]
    for prices, sizes, why in ((2, 4, "quote USD"), (1, 4, "base BTC"), (2, 3, "")):
        symbol = SymbolConfig(name="BTC-USD", id=1, price_decimals=prices, qty_decimals=sizes)
        with pytest.raises(ValueError, match=why) if why else contextlib.nullcontext():
            RingexConfig(assets=assets, symbols=[symbol], matchers=matchers)


def test_symbol_fees_are_basis_points_of_the_notional_in_the_quote_asset() -> None:
    """``symbols.taker_fee_bps``: "Fees in basis points of the notional, paid in the quote
    asset": ``Market.fees`` is notional x bps / 10,000 in the quote's minor units."""
    quoted(SymbolConfig, "taker_fee_bps", "Fees in basis points of the notional", "quote asset")
    cfg = RingexConfig()
    symbol = msgspec.structs.replace(cfg.symbol("BTC-USD"), maker_fee_bps=10, taker_fee_bps=25)
    market = Market.of(symbol, cfg.asset("BTC"), cfg.asset("USD"))
    notional = market.notional(1_000_00, 2_0000)  # 1,000.00 USD x 2.0000 BTC
    assert notional == 2_000 * 10**6  # USD has 6 decimals
    assert market.fees(1_000_00, 2_0000) == (notional * 10 // 10_000, notional * 25 // 10_000)


def test_matcher_snapshot_every_0_is_on_demand_and_batch() -> None:
    """``matchers.snapshot_every``: "(0: only on demand and at shutdown)", ``batch``: "Commands
    taken from the input ring per batch": ``MatcherShell.step`` and ``run``'s source."""
    quoted(MatcherConfig, "snapshot_every", "(0: only on demand and at shutdown)")
    quoted(MatcherConfig, "batch", "Commands taken from the input ring per batch")
    step = source(procs.matcher.main.MatcherShell.step)
    assert "if snapshot or (every and self._since_snapshot >= every):" in step
    assert "AdminAction.SNAPSHOT" in step and "AdminAction.SHUTDOWN" in step
    assert source(procs.matcher.main.MatcherShell.run).endswith("self.save_snapshot()")
    assert "self.consumer.take(self.settings.batch," in step


def test_database_enabled_runs_the_writer() -> None:
    """``database.enabled``: "Run the database writer": ``plan`` has a dbwriter only then."""
    quoted(DatabaseConfig, "enabled", "Run the database writer")
    assert "dbwriter" in [s.name for s in plan(RingexConfig())]
    off = RingexConfig(database=DatabaseConfig(enabled=False))
    assert "dbwriter" not in [s.name for s in plan(off)]


def test_database_batches_and_snapshots_reach_the_writer() -> None:
    """``database.batch_rows`` / ``batch_ms`` ("Rows per batch and the longest a row waits"),
    ``snapshot_every`` / ``snapshot_s`` ("by commands and seconds"): ``options`` passes them;
    ``DbWriter`` reads ``batch_ms`` as milliseconds."""
    quoted(DatabaseConfig, "batch_ms", "Rows per batch and the longest a row waits for its batch")
    quoted(DatabaseConfig, "snapshot_s", "replay snapshots", "by commands and seconds")
    values = {"batch_rows": 123, "batch_ms": 45, "snapshot_every": 7, "snapshot_s": 9.5}
    made = options(RingexConfig(database=DatabaseConfig(**values)))  # type: ignore[arg-type]
    assert made.batch_rows == 123 and made.batch_ms == 45
    assert made.snapshot_every == 7 and made.snapshot_s == 9.5
    text = inspect.getsource(procs.dbwriter.writer)
    assert "limit_rows, limit_s = opts.batch_rows, opts.batch_ms / 1000" in text


def test_database_trade_lanes_split_symbols_by_id_modulo() -> None:
    """``database.trade_lanes``: "each the symbols whose id modulo this is its number": the
    store takes it, and ``_start_lanes`` files each symbol under ``symbol % lanes``."""
    quoted(DatabaseConfig, "trade_lanes", "each the symbols whose id modulo this is its number")
    text = inspect.getsource(procs.dbwriter.store)
    assert "self.lanes = cfg.database.trade_lanes if lanes is None else lanes" in text
    assert "symbols.setdefault(symbol % self.layout, []).append(symbol)" in text


def test_database_retry_max_s_is_the_longest_pause_an_hour_at_most() -> None:
    """``database.retry_max_s``: "Longest pause between retries ... (an hour at most)":
    ``options``' ``Backoff`` doubles up to it; Meta refuses 3,601 s."""
    quoted(DatabaseConfig, "retry_max_s", "Longest pause between retries", "(an hour at most)")
    delays = options(RingexConfig(database=DatabaseConfig(retry_max_s=0.3))).backoff.delays()
    assert [delays() for _ in range(5)] == [0.05, 0.1, 0.2, 0.3, 0.3]
    assert "<= 3600" in refused(DatabaseConfig, retry_max_s=3601)


def test_supervisor_cores_and_nice() -> None:
    """``supervisor.cores``: "a process not listed may run on any CPU"; ``nice``: "set before
    it starts" ({"dbwriter": 10} by default): ``plan``, and ``Supervisor._spawn``'s child."""
    quoted(SupervisorConfig, "cores", "a process not listed may run on any CPU")
    quoted(SupervisorConfig, "nice", "set before it starts", "The database writer")
    cfg = RingexConfig(supervisor=SupervisorConfig(cores={"router": [0], "matcher-m1": [1, 2]}))
    cpus = {s.name: s.cpus for s in plan(cfg)}
    assert cpus["router"] == (0,) and cpus["matcher-m1"] == (1, 2)
    assert cpus["gateway-gw1"] == () and cpus["marketdata"] == ()
    niceness = {s.name: s.nice for s in plan(RingexConfig())}
    assert niceness.pop("dbwriter") == 10 and set(niceness.values()) == {0}
    spawn = source(procs.supervisor.main.Supervisor._spawn)
    assert "if cpus: os.sched_setaffinity(0, cpus) if spec.nice: os.nice(spec.nice)" in spawn


def test_supervisor_restart_limit_counts_restarts_within_the_window() -> None:
    """``supervisor.restart_limit``: "restarted more than restart_limit times within
    restart_window_s stops the instance": ``Supervisor._restart``'s window and ``>``."""
    quoted(SupervisorConfig, "restart_limit", "more than restart_limit times within")
    text = source(procs.supervisor.main.Supervisor._restart)
    assert "[t for t in child.restarts if now - t < window] + [now]" in text
    assert "if len(child.restarts) > limit: raise SupervisorError(" in text


def test_supervisor_ready_and_drain_timeouts_are_seconds() -> None:
    """``supervisor.ready_timeout_s`` ("How long a process may take to attach its rings"),
    ``drain_timeout_s`` ("how long to wait for the rings to drain"): seconds, in ``Supervisor``."""
    quoted(SupervisorConfig, "ready_timeout_s", "How long a process may take to attach its rings")
    quoted(SupervisorConfig, "drain_timeout_s", "how long to wait for the rings to drain")
    text = inspect.getsource(procs.supervisor.main.Supervisor)
    assert "deadline = time.monotonic() + self.cfg.supervisor.ready_timeout_s" in text
    assert "drain(self._rings.values(), self.cfg.supervisor.drain_timeout_s)" in text


def test_supervisor_stuck_after_s_and_restart_stuck_off_by_default() -> None:
    """``supervisor.stuck_after_s`` / ``restart_stuck``: "with ``restart_stuck`` killed ... Off
    by default": false by default; ``stuck_watch`` classifies with it, kills only when set."""
    quoted(SupervisorConfig, "restart_stuck", "with ``restart_stuck`` killed", "Off by default")
    assert SupervisorConfig().restart_stuck is False
    text = inspect.getsource(procs.supervisor.stuck_watch)
    assert "stale_after_s=sup.stuck_after_s" in text
    assert "if sup.restart_stuck and child.process is not None:" in text


def test_supervisor_metrics_port_0_is_a_free_port_and_metrics_false_is_off() -> None:
    """``supervisor.metrics_port``: "(0: a free port, which `ringex status` shows); metrics =
    false turns the endpoint off": ``endpoints._metrics_url`` and ``Supervisor``."""
    quoted(SupervisorConfig, "metrics_port", "(0: a free port, which `ringex status` shows)")
    quoted(SupervisorConfig, "metrics", "metrics = false turns the endpoint off")
    stopped, free = {"state": "stopped"}, RingexConfig()
    assert "<a free port, once running>" in endpoints._metrics_url(free, stopped)
    running = {"state": "running", "metrics_url": "http://127.0.0.1:4321/metrics"}
    assert endpoints._metrics_url(free, running).endswith(":4321/metrics")
    off = RingexConfig(supervisor=SupervisorConfig(metrics=False))
    assert endpoints._metrics_url(off, stopped).startswith("off")
    assert "if not settings.metrics:" in inspect.getsource(procs.supervisor.main.Supervisor)


def test_supervisor_session_end_utc_is_hh_mm_and_empty_is_never() -> None:
    """``supervisor.session_end_utc``: ""HH:MM", UTC ... Empty: never": minutes after midnight,
    a bad time refused at load, and ``SessionEnds.of`` makes no schedule from ""."""
    quoted(SupervisorConfig, "session_end_utc", '"HH:MM", UTC', "Empty: never")
    assert SupervisorConfig(session_end_utc="21:30").session_end_minute() == 21 * 60 + 30
    with pytest.raises(ValueError, match="not a time HH:MM"):
        SupervisorConfig(session_end_utc="24:00")
    assert SessionEnds.of(RingexConfig()) is None
    assert SessionEnds.of(RingexConfig(supervisor=SupervisorConfig(session_end_utc="00:00")))


def test_replication_listen_port_0_is_none_and_mode_sync_gates() -> None:
    """``replication.listen_port``: "(0: no replication)", ``mode``: ""sync": no command reaches
    a matcher ... before the standby has acknowledged it": ``plan``, ``RouterShell``."""
    quoted(ReplicationConfig, "listen_port", "(0: no replication)")
    quoted(ReplicationConfig, "mode", '"sync": no command reaches a matcher')
    assert "replica-source" not in [s.name for s in plan(RingexConfig())]
    on = RingexConfig(replication=ReplicationConfig(listen_port=9900))
    assert "replica-source" in [s.name for s in plan(on)]
    text = source(procs.router.main.RouterShell)
    assert "if rep.listen_port: self.acks = AckBlock(" in text
    assert 'if rep.mode == "sync":' in text
    assert "self.gate = SyncGate(self.acks, rep.sync_timeout_ms, spin=spin)" in text


def test_replication_primary_makes_a_standby_held_by_prestart() -> None:
    """``replication.primary``: ""host:port" of the primary's source: this instance is its
    standby"; ``prestart`` (on by default) for a standby only: ``plan``, ``procs.supervisor``."""
    quoted(ReplicationConfig, "primary", '"host:port" of the primary\'s source')
    quoted(ReplicationConfig, "prestart", "starts its promoted instance's processes as it starts")
    standby = RingexConfig(replication=ReplicationConfig(primary="127.0.0.1:9900"))
    assert [s.name for s in plan(standby)] == ["standby"]
    with pytest.raises(ValueError, match="is not host:port"):
        RingexConfig(replication=ReplicationConfig(primary="9900"))
    assert ReplicationConfig().prestart is True
    text = inspect.getsource(procs.supervisor.main)
    assert "if cfg.replication.primary and cfg.replication.prestart:" in text


def _gate(timeout_ms: int) -> tuple[replication_ack.SyncGate, list[float]]:
    """A ``SyncGate`` over plain words (no standby acknowledges); its clock moves 0.1 s a look."""
    block = types.SimpleNamespace(
        words=[0] * (replication_ack.FENCED + 8),
        acked_bell=types.SimpleNamespace(wait=lambda timeout_s: None),
    )
    now = [0.0]

    def clock() -> float:
        now[0] += 0.1
        return now[0]

    gate = replication_ack.SyncGate(block, timeout_ms, spin=True, clock=clock)  # type: ignore[arg-type]
    return gate, now


def test_replication_sync_timeout_ms_is_milliseconds_and_0_waits_forever() -> None:
    """``replication.sync_timeout_ms``: "before it goes on without it ... 0 waits forever":
    ``SyncGate`` at 1,000 still waits 0.9 s in, goes on degraded after; at 0, a day on, waits."""
    quoted(ReplicationConfig, "sync_timeout_ms", "before it goes on without it", "0 waits forever")
    gate, now = _gate(1_000)
    start = now[0]
    assert gate.timeout_s == 1.0
    assert gate.wait(1, stop=lambda: now[0] - start > 0.9) is False and not gate.degraded
    gate, now = _gate(1_000)
    assert gate.wait(1) is True and gate.degraded
    forever, now = _gate(0)

    def a_day_on() -> bool:  # its clock an hour on at each look, stopped after a day
        now[0] += 3_600
        return now[0] > 86_400

    assert forever.wait(1, stop=a_day_on) is False and not forever.degraded


def test_replication_tls_takes_all_three_or_none() -> None:
    """``replication.tls_cert`` / ``tls_key`` / ``tls_ca``: "(all three, or none": two refused."""
    quoted(ReplicationConfig, "tls_cert", "Mutual TLS on the link (all three, or none")
    with pytest.raises(ValueError, match="tls_ca not"):
        ReplicationConfig(tls_cert="/c.pem", tls_key="/k.pem")
    ReplicationConfig(tls_cert="/c.pem", tls_key="/k.pem", tls_ca="/ca.pem")


def test_risk_max_open_orders_and_max_order_notional_0_is_no_limit() -> None:
    """``risk.max_open_orders``: "Resting plus in-flight orders per account";
    ``max_order_notional``: "in the quote asset's minor units (0: no limit)":
    ``Accounts.reserve_new`` (the test router's ``Desk``)."""
    quoted(RiskConfig, "max_open_orders", "Resting plus in-flight orders per account")
    quoted(RiskConfig, "max_order_notional", "in the quote asset's minor units (0: no limit)")
    desk = Desk(desk_config(max_open=2))
    desk.fund(7, usd=10**12)
    codes = [desk.new(7, Side.BUY, 100 + k, 1)[0] for k in range(3)]
    assert codes == [ResultCode.OK, ResultCode.OK, ResultCode.TOO_MANY_OPEN_ORDERS]
    unlimited = Desk(desk_config(max_notional=0))
    unlimited.fund(7, usd=10**15)
    assert unlimited.new(7, Side.BUY, 1_000_000, 1_000)[0] == ResultCode.OK
    limited = Desk(desk_config(max_notional=10_000))
    limited.fund(7, usd=10**15)
    market = limited.accounts.markets[1]
    assert market.notional(100, 10) <= 10_000 < market.notional(100, 11)
    assert limited.new(7, Side.BUY, 100, 10)[0] == ResultCode.OK
    assert limited.new(7, Side.BUY, 100, 11)[0] == ResultCode.NOTIONAL_TOO_LARGE


def _journal(tmp_path: Path, **journal: object) -> RingexConfig:
    return RingexConfig(
        instance="r116", var_dir=str(tmp_path), journal=msgspec.convert(journal, JournalConfig)
    )


def test_journal_fsync_interval_ms_and_segment_mb(tmp_path: Path) -> None:
    """``journal.fsync``'s "fsync at most every fsync_interval_ms" and ``segment_mb``'s "A
    segment file rolls over at this size": ``_open_journal`` gives ms x 10**6 ns and MiB."""
    quoted(JournalConfig, "fsync", "interval: fsync at most every fsync_interval_ms")
    quoted(JournalConfig, "segment_mb", "A segment file rolls over at this size")
    cfg = _journal(tmp_path, fsync="interval", fsync_interval_ms=7, segment_mb=2)
    writer = _open_journal(cfg, RecordCodec())
    try:
        assert writer._interval_ns == 7_000_000
        assert writer._capacity == ((2 << 20) - HEADER_SIZE) // writer._layout.size
    finally:
        writer.close()


def test_journal_pipeline_behind_at_most_what_the_input_rings_hold() -> None:
    """``journal.pipeline_behind``: "At most what the router's input rings hold (ring.capacity
    x (gateways + 1))": refused past it under pipelined, the one mode that reads it."""
    quoted(JournalConfig, "pipeline_behind", "(ring.capacity x (gateways + 1))")
    ring = RingConfig(capacity=64)  # one gateway: 128 commands
    RingexConfig(ring=ring, journal=JournalConfig(fsync="pipelined", pipeline_behind=128))
    with pytest.raises(ValueError, match="pipeline_behind 129 is more commands"):
        RingexConfig(ring=ring, journal=JournalConfig(fsync="pipelined", pipeline_behind=129))
    text = inspect.getsource(procs.router.intake)
    assert text.count(".pipeline_behind") == 1
    assert "elif self._waiting() >= self.cfg.journal.pipeline_behind:" in text


class _DueError(Exception):
    """A snapshot was started (its journal ``sync``, which comes first)."""


class _Journal:
    def __init__(self) -> None:
        self.synced = 0

    def sync(self) -> None:
        self.synced += 1
        raise _DueError


def _snapshot_due(cfg: RingexConfig, seq: int, idle_s: float) -> bool:
    """Whether the router's ``Snapshots`` starts one at ``seq``, ``idle_s`` after the last."""
    snapshots = Snapshots(cfg, 0)
    snapshots._time = time.monotonic() - idle_s
    journal = _Journal()
    with contextlib.suppress(_DueError):
        snapshots.maybe_start(seq, journal)  # type: ignore[arg-type]
    return bool(journal.synced)


def test_journal_snapshot_every_0_is_none_by_count(tmp_path: Path) -> None:
    """``journal.snapshot_every``: "(0: none by count, `snapshot_every_s` still applies; both
    0: only `ringex replay --snapshot`)" (review 116: it said 0 meant replay only):
    ``Snapshots.maybe_start`` at 0 starts one by time, and none with both 0."""
    quoted(JournalConfig, "snapshot_every", "(0: none by count, `snapshot_every_s` still applies;")
    assert _snapshot_due(_journal(tmp_path, snapshot_every=0), 5, idle_s=3_600.0)
    both = _journal(tmp_path, snapshot_every=0, snapshot_every_s=0)
    assert not _snapshot_due(both, 5, idle_s=3_600.0)


def test_journal_snapshot_every_counts_and_snapshot_every_s_0_is_by_count(tmp_path: Path) -> None:
    """``journal.snapshot_every``: "Every this many commands the router forks a replay";
    ``snapshot_every_s``: "this many seconds after the last snapshot when any command came
    since ... (0: by count only)": ``Snapshots.maybe_start``."""
    quoted(JournalConfig, "snapshot_every", "Every this many commands the router forks a replay")
    quoted(JournalConfig, "snapshot_every_s", "when any command came since", "(0: by count only)")
    by_count = _journal(tmp_path, snapshot_every=10, snapshot_every_s=0)
    assert not _snapshot_due(by_count, 9, idle_s=10**6)
    assert _snapshot_due(by_count, 10, idle_s=0.0)
    timed = _journal(tmp_path, snapshot_every=1_000, snapshot_every_s=60.0)
    assert not _snapshot_due(timed, 5, idle_s=30.0)
    assert _snapshot_due(timed, 5, idle_s=61.0)
    assert not _snapshot_due(timed, 0, idle_s=61.0)  # no command since


def test_journal_archive_dir_default_and_absolute(tmp_path: Path) -> None:
    """``journal.archive_dir``: "(each archives into ``<archive_dir>/<instance>``...); "":
    ``var/<instance>/journal-archive``": ``journal_archive_dir``; a relative one is refused."""
    quoted(JournalConfig, "archive_dir", '"": ``var/<instance>/journal-archive``')
    quoted(JournalConfig, "archive_dir", "each archives into ``<archive_dir>/<instance>``")
    assert journal_archive_dir(_journal(tmp_path)) == tmp_path / "r116" / "journal-archive"
    assert journal_archive_dir(_journal(tmp_path, archive_dir="/vol/a")) == Path("/vol/a/r116")
    with pytest.raises(ValueError, match="must be an absolute path"):
        JournalConfig(archive_dir="rel/dir")
