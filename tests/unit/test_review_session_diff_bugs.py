"""A hostile review of the changes of 3272953..HEAD (procs, config): one failing test per
bug found. Each docstring says what is wrong, what was expected and what happens."""

from __future__ import annotations

import asyncio
import itertools
import tracemalloc
from pathlib import Path
from typing import Any, cast

from config.schema import AssetConfig, SymbolConfig
from procs.common.apikeys import ApiKeyStore
from procs.common.records import (
    Accepted,
    NewOrder,
    OrderDone,
    Record,
    Replaced,
    Trade,
)
from procs.common.types import DoneReason, Side
from procs.common.users import User
from procs.gateway.fix import FixMessage
from procs.gateway.history import History
from procs.gateway.instruments import Instruments
from procs.gateway.orders import OrderEntry
from procs.gateway.rest_orders import RestOrders
from procs.gateway.rest_params import new_order
from procs.gateway.session import Session

GW, OTHER_GW = 3, 4
ALICE, BOB = 11, 12
SYM = SymbolConfig(name="BTC-USD", id=1, price_decimals=2, qty_decimals=2, base="BTC")
ASSETS = [AssetConfig(name="USD", id=1, decimals=4), AssetConfig(name="BTC", id=2, decimals=2)]
MINUTE_MS = 60_000


# -- REST: a replace to at or below the filled size (book.py ``_replace_to_filled``) -------------


def _rest_core() -> tuple[RestOrders, list[Record]]:
    out: list[Record] = []
    refs = itertools.count(100)
    return RestOrders(GW, Instruments([SYM]), ASSETS, out, lambda: next(refs)), out


def test_rest_stream_is_never_told_an_order_ended_by_a_replace_to_its_filled_size() -> None:
    """book.py now ends an order replaced to a total at or below its fills with ``Replaced``
    (qty 0) then ``OrderDone(FILLED)``. rest_orders.py was not taught that sequence: its
    ``Replaced`` branch reports "REPLACED" with the status still PARTIALLY_FILLED, and
    ``_done`` skips the report for reason FILLED ("the fill's report already said Filled",
    rest_orders.py:452), which no longer holds. Expected: the private stream gets an
    executionReport saying the order is FILLED (it left the open orders). Actual: the last
    report the client gets says PARTIALLY_FILLED, so a client keeps the order open forever."""
    c, out = _rest_core()
    c.touch(ALICE, 1, now_s=0.0)
    c.streaming.add(ALICE)
    ref = c.new_order(
        new_order(
            {
                "symbol": "BTC-USD",
                "side": "BUY",
                "type": "LIMIT",
                "price": "100.00",
                "quantity": "2",
            },
            c.instruments,
        ),
        ALICE,
        1,
        5,
    )
    cmd = out[-1]
    assert isinstance(cmd, NewOrder) and cmd.client_ref == ref
    c.process(
        Accepted(
            *(40, 0, GW, 1, ref, ALICE, SYM.id, 7),
            *(Side.BUY, cmd.price, cmd.qty),
        )
    )
    trade = Trade(41, 0, 1, SYM.id, 10_000, 50, Side.SELL, 7, ALICE, GW, 150, 9, BOB, OTHER_GW, 0)
    c.process(trade)
    c.end_of_batch()
    # the owner (over FIX, say, or a REST replace) asks for a total of 0.50: what has filled
    c.process(Replaced(42, 0, OTHER_GW, 2, 555, ALICE, SYM.id, 7, price=10_000, qty=0))
    c.process(OrderDone(42, 0, OTHER_GW, 2, 555, ALICE, SYM.id, 7, DoneReason.FILLED, 50, 0))
    c.end_of_batch()
    assert c.open_orders(ALICE, None) == []  # the core itself knows it ended
    reports = [data for account, name, data in c.events if name == "executionReport"]
    assert reports, "no executionReport at all"
    last = reports[-1]
    assert last["status"] == "FILLED", (
        f"the stream's last word on order 7 is {last['executionType']}/{last['status']}, "
        "yet the order is done"
    )


# -- klines: the flat fill (history.py ``_flat_filled``) -----------------------------------------


class _CannedHistory(History):
    """History whose queries answer canned rows: (ms, o, h, l, c, v, q, n) for the klines
    query, and ``before`` for the previous close's."""

    def __init__(self, rows: list[tuple[Any, ...]], before: list[tuple[Any, ...]]) -> None:
        super().__init__("postgresql://unused")
        self.canned, self.before = rows, before

    async def _rows(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        if sql.startswith("SELECT close FROM candles"):
            return list(self.before)
        desc = "ORDER BY b DESC" in sql
        return sorted(self.canned, reverse=desc)[: args[-1]]


def _kline(ms: int, price: int) -> tuple[Any, ...]:
    return (ms, price, price, price, price, 1, price, 1, 0, 0)  # klines' query's columns


def test_klines_flat_fill_is_bounded_by_the_limit_asked() -> None:
    """history.py ``_flat_filled`` builds a flat kline for every empty interval between the
    stored rows (and from the start given) before ``klines`` cuts the list to ``limit``: a
    symbol that traded twice, 200k minutes apart, makes a ``limit=2`` request of 1m klines
    allocate 200k tuples on the gateway's event loop (a year apart: 525k; ten stored rows a
    year apart each: millions), a CPU and memory bomb any unauthenticated client can fire
    (klines is public). Expected: work and memory bounded by ``limit`` (a few KB here).
    Actual: tens of MB allocated for two klines."""
    t0 = 1_700_000_000_000 // MINUTE_MS * MINUTE_MS
    t1 = t0 + 200_000 * MINUTE_MS
    history = _CannedHistory([_kline(t0, 100), _kline(t1, 101)], [(100,)])
    tracemalloc.start()
    try:  # the newest two up to t1 (an end given: the default end is now)
        out = asyncio.run(history.klines(SYM, "1m", end_ms=t1, limit=2))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [k[0] for k in out] == [t1 - MINUTE_MS, t1]
    assert peak < 2_000_000, f"klines(limit=2) peaked at {peak / 1e6:.1f} MB"


def test_klines_after_the_last_trade_are_flat_as_the_docstring_says() -> None:
    """``History.klines`` (and README's "an interval nobody traded in after a trade is a flat
    kline at the previous close, as the feed's candles show it") promise flat klines for
    the empty intervals after a trade; ``_flat_filled`` only fills *between* stored rows, so
    the intervals after the newest trade are missing (and a range that starts after it is
    answered with nothing at all). Expected for 1m klines over [t0, t0 + 5 min) with one
    trade at t0 (all in the past): 5 klines, the last 4 flat at its close. Actual: 1."""
    t0 = 1_700_000_000_000 // MINUTE_MS * MINUTE_MS
    history = _CannedHistory([_kline(t0, 100)], [])
    out = asyncio.run(
        history.klines(SYM, "1m", start_ms=t0, end_ms=t0 + 5 * MINUTE_MS - 1, limit=10)
    )
    assert [k[0] for k in out] == [t0 + i * MINUTE_MS for i in range(5)]


# -- API keys: eviction (apikeys.py ``create(evict_oldest=True)``) -------------------------------


def test_evicting_login_keeps_a_user_at_most_at_max_keys_per_user(tmp_path: Path) -> None:
    """``create(evict_oldest=True)`` revokes exactly one key when the user is at or above
    the limit, then adds one: a user who holds more keys than ``max_keys_per_user`` (the
    operator lowered it, as README suggests tuning it, or the file came from a gateway with
    a higher one) stays above it forever, each login swapping one key for another. README:
    "A user holds at most max_keys_per_user keys ... a login beyond that revokes the user's
    oldest key". Expected after a login with a limit of 2: 2 keys. Actual: 5."""
    user = User("ALICE", account=7, session=3, salt="00", digest="00")
    path = tmp_path / "apikeys.json"
    wide = ApiKeyStore(path, max_keys_per_user=5)
    for _ in range(5):
        wide.create(user, ["read"])
    narrow = ApiKeyStore(path, max_keys_per_user=2)
    narrow.create(user, ["read"], evict_oldest=True)
    held = ApiKeyStore(path).keys_of("ALICE")
    assert len(held) <= 2, f"ALICE holds {len(held)} keys, the limit is 2"


# -- FIX: mass cancels answered once the router says so (orders.py ``mass_cancels``) ------------


class _FakeSession:
    session_id = 5
    account = ALICE

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes]] = []

    def send(self, msg_type: bytes, body: bytes, now_ns: int) -> None:
        self.sent.append((msg_type, body))


def test_a_mass_cancel_awaiting_its_ack_counts_as_in_flight_for_a_stopping_gateway() -> None:
    """The OrderMassCancelReport (r) is no longer sent at once: ``_mass_cancel`` keeps the
    request in ``mass_cancels`` until the router's ``Rejected(OK)`` comes. But
    ``OrderEntry.in_flight`` (what ``GatewayServer._close_intake`` waits on, "a client sees
    the outcome of all it sent before its Logout") still counts only new orders, cancel and
    replace requests and unpublished records, so a stopping gateway does not wait for the
    ack and exits with the mass cancel unanswered (``mass_cancels`` is not in the order log:
    after the restart nobody answers it either). Expected: in_flight() is 1 while the
    ack is awaited. Actual: 0."""
    entry = OrderEntry(GW, Instruments([SYM]), cancel_on_disconnect=False)
    session = _FakeSession()
    msg = FixMessage.of(b"", [35, 11, 530], [b"q", b"mc-1", b"7"])
    entry.on_message(cast(Session, session), msg, 1)
    assert entry.mass_cancels and session.sent == []  # waiting for the router's verdict
    entry.outgoing.clear()  # the shell published the MassCancel
    assert entry.in_flight() == 1
