"""Review 159: a hostile review of the day's three features: REST ``ticker/price`` and
``ticker/bookTicker`` (and every ticker's all-symbols array), the feed's ``<symbol>@bookTicker``
stream, and ``POST /api/v1/order/test``.

Method: each feature driven the way a trader, or a script written for the big venues' APIs,
drives it, over the existing rigs (imported, not copied): the market-data process in process
over a real matcher output ring with real WebSocket clients (``rig.py``, ``test_server.py``,
``test_adversarial_ws.py``), and the REST gateway over real HTTP in front of real rings with a
stand-in market-data port serving the real ``Site`` (``rest_rig.py``, review 47's
``market_data``). A fault is a test marked ``xfail(strict=True)`` whose docstring says what
should happen, what happens, the cause (file:line) and a fix; a check that held is a plain
test.

Checked, and held:

- bookTicker across a matcher restart whose events the feed missed (a replay mark, reseeded
  from the matcher's snapshot): the subscriber's top follows to the matcher's, each top right
  after its diff, ``u`` never going back; the initial top against the depth snapshot on the
  same connection (``u <= lastUpdateId``, the same best levels);
- a change of the best level's size alone sends a top, a change deeper sends none, a halt
  sends none (REST still answers the halted symbol's top), both sides emptied by one command
  send one top of nulls;
- a slow client (small socket, a queue of 16): its depth restarts from snapshots and its tops
  conflate, and once drained its last top is the best of the book its depth built;
- REST: a symbol in lower case answers as in upper case; a halted symbol's tickers answer;
  each array is in the config's order (whatever matcher holds each symbol) and every answer,
  one or all, empty or full, fits the OpenAPI document's schema; market data disabled or
  hanging is a 503 naming which, with or without a symbol;
- ``order/test`` refuses as ``POST order`` does, same status and body, on every gateway check
  (market, stop, iceberg and LIMIT_MAKER rules, fields, a read-only key, a stopping gateway;
  the key's rate limit, its status and code, which it spends as ``POST order``); nothing (no
  request, no client order id held or remembered, nothing to publish) is left; the answers are the
  ones the OpenAPI document lists.

Faults (each a strict xfail when written; all pass since, the same session):

1. a market state saved before ``L2Book._last_top`` existed (a build of yesterday, an upgrade's
   restart) never sends the bookTicker of a book whose both sides emptied: the subscriber
   keeps the old top for good (``take_top`` compares with (None, None)). Fixed: ``set_top``,
   which the hub calls on every book at its start, takes such a book's own top as shown;
2. one command's level changes split over two feed batches (the ``reset`` diff) give two tops
   of the same ``u``, the first a half-applied command's: a client that keeps the top with
   the newest ``u`` keeps the phantom. Documented since (README, marketdata: "of two
   messages with one `u` the later is the book's"), as the depth stream's reset is; the test
   holds the later one to the book;
3. the tickers' arrays follow the order the saved state was first built in, not the config's:
   after the operator reorders ``symbols`` they disagree with ``exchangeInfo``'s order.
   Fixed: ``MarketSnapshots.load`` gives the loaded state the config's order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from config.schema import MatcherConfig, RingexConfig
from procs.common.market_snapshots import MarketSnapshots
from procs.common.records import Heartbeat, SymbolStatus
from procs.common.snapshots import SnapshotStore
from procs.common.topology import REPLAY_SOURCE, market_state_path, snapshot_dir
from procs.common.types import AdminAction, Side, TradingStatus
from procs.core.engine import Matcher
from procs.core.market.state import MarketState, build_state
from procs.core.symbols import symbol_specs
from procs.gateway import api_errors as codes
from procs.gateway import rest_public, signing
from procs.gateway.limits import RateLimiter
from procs.gateway.openapi import document
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import ApiCallError, RestClient
from procs.marketdata.main import resume
from procs.marketdata.web import Site
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import ALICE, client, rest_exchange
from tests.unit.gateway.rest_rig import run as run_rest
from tests.unit.gateway.test_rest_test_order import BID, TEST
from tests.unit.gateway.test_rest_tickers import TICKERS, _schema, _with_xbt
from tests.unit.gateway.test_review47_rest_public import _get, _trades, market_data

from .events import level
from .rig import Client, Rig, config
from .test_adversarial_ws import get, run
from .test_book_ticker import STREAMS, best
from .test_server import TIGHT, RandomFlow, apply, random_orders, small_buffer_socket

NULLS = (None, None, None, None)
Book = dict[str, dict[str, str]]


def shown(data: dict[str, Any]) -> tuple[Any, ...]:
    """A bookTicker message's (b, B, a, A)."""
    return (data["b"], data["B"], data["a"], data["A"])


def is_top(msg: dict[str, Any]) -> bool:
    return str(msg.get("stream", "")).endswith("@bookTicker")


def shown_or_none(msg: dict[str, Any]) -> tuple[Any, ...]:
    return shown(msg["data"]) if is_top(msg) else ()


def snapshot_book(data: dict[str, Any]) -> Book:
    return {"b": dict(map(tuple, data["bids"])), "a": dict(map(tuple, data["asks"]))}


async def tops_within(c: Client, seconds: float) -> list[dict[str, Any]]:
    """The bookTicker messages ``c`` gets within ``seconds`` (the others skipped)."""
    out: list[dict[str, Any]] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while True:
                msg = await c.recv()
                if is_top(msg):
                    out.append(msg["data"])
    return out


async def follow(c: Client, book: Book, last: int, until: int) -> tuple[int, list[Any]]:
    """Read ``c``'s depth and bookTicker messages until the depth reaches ``until``, the depth
    applied as the documented rule says (a snapshot starts over, a diff at or below ``last``
    is old), then 0.3 s more for the tops that trail. Returns the last update id, and each
    top as (u, b, B, a, A, the depth's last update id then, the best of its book then)."""
    tops: list[Any] = []

    def took(data: dict[str, Any]) -> None:
        tops.append((data["u"], *shown(data), last, best(book)))

    while last < until:
        msg = await c.recv()
        data = msg["data"]
        if is_top(msg):
            took(data)
        elif data["e"] == "depthSnapshot":
            book.update(snapshot_book(data))
            last = data["lastUpdateId"]
        elif data["u"] > last:
            assert data["U"] == last + 1, (last, data)
            apply(book, data["b"], data["a"])
            last = data["u"]
    for data in await tops_within(c, 0.3):
        took(data)
    return last, tops


# -- bookTicker: the faults found (fixed or documented since) ------------------------------------


def test_a_book_saved_before_tops_were_kept_never_says_its_top_is_gone(instance: str) -> None:
    """Failed on the code it was written against; passes since its fix (the same session).
    What should happen: a bookTicker subscriber hears each change of the best bid and ask,
    here both sides emptied by one command (the only maker pulls its quotes), as a top of
    nulls (the README: "each time a batch moved either").

    What happens: after a restart that loads a market state pickled by the build before
    today's (no ``_last_top``: the book's comment says such a book loads with the class
    default, None, and ``market_snapshots.VERSION`` was not raised), the subscriber's first
    top is right (``last_top`` reads the live book), but when the book empties
    ``take_top`` compares (None, None) with ``(last.bid, last.ask) if last is not None else
    (None, None)``, finds them equal and sends nothing. The depth diff empties the book, REST
    ``bookTicker`` says null, the stream keeps showing 99.50 / 100.50 until the next quote.

    Cause: ``procs/core/market/book.py:176-178`` (``take_top``) takes "never taken" for "an
    empty top taken", which only holds for a book that was empty when it was made.

    Fix: make the first take of a book whose ``_last_top`` is None compare with what
    ``last_top()`` showed, e.g. set ``_last_top = self.last_top()`` in ``set_top`` (which the
    hub calls on every book at start, before any subscriber), or bump the snapshot VERSION."""
    var_dir = tempfile.mkdtemp(prefix="ringex-md-")
    cfg = config(instance, var_dir)
    state = build_state(cfg)
    state.process(level(1, Side.BUY, 9_950, 30), [])
    state.process(level(2, Side.SELL, 10_050, 12), [])
    for market in state.symbols.values():
        market.book.take_diff()  # yesterday's flush: a diff, never a top
        del market.book.__dict__["_last_top"]  # an attribute its pickle never had
    MarketSnapshots(market_state_path(cfg)).save(state, {})

    async def body(rig: Rig) -> None:
        async with rig.client(STREAMS) as c:
            assert (await c.recv())["data"]["lastUpdateId"] == 2
            first = (await c.recv())["data"]
            assert shown(first) == ("99.50", "0.0030", "100.50", "0.0012"), first
            rig.publish([level(3, Side.BUY, 9_950, 0), level(3, Side.SELL, 10_050, 0)])
            diff = (await c.until(lambda m: m.get("stream") == "btc-usd@depth"))["data"]
            assert (diff["u"], len(diff["b"]), len(diff["a"])) == (3, 1, 1), diff
            _, raw = await get(rig.port, b"/api/bookTicker?symbol=btc-usd")
            assert json.loads(raw)["bidPrice"] is None and json.loads(raw)["askPrice"] is None
            tops = await tops_within(c, 0.5)
            assert [shown(t) for t in tops] == [NULLS], f"the stream still shows {first}"

    run(instance, body, var_dir=var_dir)


def test_one_commands_changes_over_two_batches_give_two_tops_of_one_u(instance: str) -> None:
    """Failed on the code it was written against; holds the README's rule since (the same
    session): of two messages with one ``u`` the later is the book's.
    What should happen: a bookTicker's ``u`` (the README: "the depth stream's update id")
    tells a newer top from an older one, as the venues' ``u`` does: a script that merges two
    connections, or drops what is not newer than what it holds (the venues' rule for their
    book updates), keeps the book's real top.

    What happens: one command's level changes (one seq) published in two chunks, a matcher
    batch longer than its ring (``procs/core/market/book.py``'s docstring), reach the feed
    in two batches. The first batch's top, bid 100.00, is half a command (a book that never
    existed at a command's end); the second, the real one, bid 100.50, carries the same
    ``u`` = 5. The depth stream marks the case (a ``reset``: a fresh snapshot); the
    bookTicker has nothing of the kind, so the client keeping the newest ``u`` keeps 100.00
    while REST and the depth say 100.50.

    Cause: ``take_top`` stamps the top with ``last_update_id`` (``book.py:179``) and
    ``SymbolMarket.flush`` (``state.py:84-89``) sends it the same for a reset diff as for any.

    Fix: say it in the README and the stream's message (a reset top flagged, or a per-symbol
    top sequence beside ``u`` that always grows), or hold a seq's top back while the feed can
    tell its changes may go on (the matcher's chunked publish marking its last chunk)."""

    async def body(rig: Rig) -> None:
        async with rig.client(STREAMS) as c:
            await c.recv()  # the empty book's snapshot ...
            await c.recv()  # ... and its top, nulls
            rig.publish([level(5, Side.BUY, 10_000, 5)])  # command 5's first change ...
            first = (await c.until(is_top))["data"]
            await asyncio.sleep(0.05)
            rig.publish([level(5, Side.BUY, 10_050, 3)])  # ... and its next, a batch later
            second = (await c.until(is_top))["data"]
            _, raw = await get(rig.port, b"/api/bookTicker?symbol=btc-usd")
            assert json.loads(raw)["bidPrice"] == second["b"] == "100.50", raw
            # the README's rule: of two messages with one u, the later is the book's
            assert second["u"] == first["u"] == 5 and second["b"] == "100.50", (first, second)

    run(instance, body)


def test_the_tickers_array_follows_the_config_after_its_symbols_are_reordered(
    instance: str,
) -> None:
    """Failed on the code it was written against; passes since its fix (the same session).
    What should happen: without a ``symbol`` each ticker answers "an array in the config's
    order" (README, Public; the OpenAPI document: "in the exchange's order"), the order
    ``exchangeInfo`` lists the symbols in, so a script may pair them by position.

    What happens: the operator lists ETH-USD before BTC-USD and restarts. The market-data
    process (``resume``, as ``MarketDataProcess`` runs it) loads the saved state, since
    ``MarketSnapshots.load`` compares the symbol sets sorted by id, and the state's
    ``symbols`` dict keeps the order it was first built in, saved again at every
    checkpoint: the arrays (and the page's ``/api/symbols``) stay BTC-USD, ETH-USD for good,
    while ``exchangeInfo`` says ETH-USD, BTC-USD.

    Cause: ``procs/common/market_snapshots.py:81-82`` (the order ignored) and
    ``procs/marketdata/web.py:248`` (the array iterates the loaded state's dict).

    Fix: in ``MarketSnapshots.load`` (or ``resume``) rebuild ``symbols`` and ``by_stream`` in
    ``fresh``'s order; or let ``Site`` iterate ``fresh``'s (the config's) symbol ids."""
    var_dir = tempfile.mkdtemp(prefix="ringex-md-")
    cfg = config(instance, var_dir)
    MarketSnapshots(market_state_path(cfg)).save(build_state(cfg), {})
    swapped = msgspec.structs.replace(cfg, symbols=cfg.symbols[::-1])
    state = resume(MarketSnapshots(market_state_path(swapped)), build_state(swapped), [])
    rows = json.loads(Site(state).get("/api/price").body)
    assert [r["symbol"] for r in rows] == [s.name for s in swapped.symbols], rows


# -- bookTicker: what held -------------------------------------------------------------------


def test_after_a_matcher_restart_the_top_is_the_matchers_and_u_never_goes_back(
    instance: str,
) -> None:
    """The matcher executes 101..200 and dies before its ring takes their events; restarted
    from its snapshot at 200, its mark has the feed reseed the book. The subscriber's tops
    follow, each right after its diff, ``u`` never going back, and end at the matcher's."""
    var_dir = tempfile.mkdtemp(prefix="ringex-md-")
    cfg = config(instance, var_dir)
    matcher = Matcher(symbol_specs(cfg, "m1"))
    rng = random.Random(15)

    async def body(rig: Rig) -> None:
        rig.publish(matcher.execute_all(random_orders(rng, 1, 100)))
        await asyncio.sleep(0.1)
        async with rig.client(STREAMS) as c:
            snap = (await c.recv())["data"]
            book = snapshot_book(snap)
            top = (await c.recv())["data"]
            assert shown(top) == best(book) and top["u"] <= snap["lastUpdateId"] == 100, top
            matcher.execute_all(random_orders(rng, 101, 100))  # never published
            SnapshotStore(snapshot_dir(cfg, "matcher-m1")).save(200, matcher.snapshot())
            rig.publish([Heartbeat(time.time_ns(), REPLAY_SOURCE, 200)])
            rig.publish(matcher.execute_all(random_orders(rng, 201, 50)))
            last, tops = await follow(c, book, 100, 250)
        assert last == 250 and tops, tops
        for u, b, bq, a, aq, at, then in tops:  # each right after its diff, of its book
            assert (u, (b, bq, a, aq)) == (at, then), tops
        us = [top["u"], *(t[0] for t in tops)]
        assert us == sorted(us), us
        assert tops[-1][1:5] == best(book), (tops[-1], best(book))
        s = rig.process.state.symbols[1].symbol
        levels = matcher.books[1].levels()
        bid = max(p for side, p in levels if side == Side.BUY)
        ask = min(p for side, p in levels if side == Side.SELL)
        bid_qty, ask_qty = levels[Side.BUY, bid][0], levels[Side.SELL, ask][0]
        expected = (s.price(bid), s.qty(bid_qty), s.price(ask), s.qty(ask_qty))
        assert tops[-1][1:5] == expected, (tops[-1], expected)

    run(instance, body, var_dir=var_dir, depth_levels=1_000)


def test_size_alone_moves_the_top_deeper_levels_and_a_halt_do_not_and_both_sides_go(
    instance: str,
) -> None:
    """Step by step, each batch's messages read before the next: the best bid's size alone
    changes (a top), a level below it (none), a halt (a status, no top; REST still answers
    the halted symbol's top), then one command empties both sides (one top of nulls)."""
    streams = "/stream?streams=btc-usd@depth/btc-usd@bookTicker/btc-usd@status"

    async def body(rig: Rig) -> None:
        async with rig.client(streams) as c:
            got = [(await c.recv())["stream"] for _ in range(3)]
            assert got == ["btc-usd@depth", "btc-usd@bookTicker", "btc-usd@status"], got
            seen: list[tuple[Any, ...]] = []

            async def step(records: list[Any], stream: str) -> None:
                rig.publish(records)
                while True:
                    msg = await c.recv()
                    seen.append((msg["stream"], msg["data"].get("u"), *shown_or_none(msg)))
                    if msg["stream"] == stream:
                        return

            both = [level(1, Side.BUY, 9_950, 30), level(1, Side.SELL, 10_050, 12)]
            await step(both, "btc-usd@bookTicker")
            await step([level(2, Side.BUY, 9_950, 40)], "btc-usd@bookTicker")  # size alone
            await step([level(3, Side.BUY, 9_900, 10)], "btc-usd@depth")  # deeper
            halt = SymbolStatus(4, time.time_ns(), 1, AdminAction.HALT, TradingStatus.HALTED)
            await step([halt], "btc-usd@status")
            status, raw = await get(rig.port, b"/api/bookTicker?symbol=btc-usd")
            assert (status, json.loads(raw)["bidQty"]) == (200, "0.0040"), raw
            gone = [level(5, Side.BUY, 9_950, 0), level(5, Side.BUY, 9_900, 0)]
            await step([*gone, level(5, Side.SELL, 10_050, 0)], "btc-usd@depth")
            seen += [("btc-usd@bookTicker", t["u"], *shown(t)) for t in await tops_within(c, 0.3)]
        tops = [entry[1:] for entry in seen if entry[0] == "btc-usd@bookTicker"]
        assert tops == [
            (1, "99.50", "0.0030", "100.50", "0.0012"),
            (2, "99.50", "0.0040", "100.50", "0.0012"),
            (5, *NULLS),
        ], seen
        statuses = [entry for entry in seen if entry[0] == "btc-usd@status"]
        assert len(statuses) == 1, seen

    run(instance, body)


def test_a_slow_client_ends_with_the_top_of_the_book_its_depth_built(instance: str) -> None:
    """A client that stops reading (a small socket, a queue of 16) while a real matcher's
    random orders flow: its depth restarts from snapshots, its tops conflate in place. Once
    it has read all, its last top is the best of the book its depth built, which is the
    feed's, and no newer (``u``) than that depth: never a top older than its depth."""
    flow = RandomFlow(23)

    async def body(rig: Rig) -> None:
        sock = small_buffer_socket(rig.port)
        async with rig.client(STREAMS, sock=sock, max_queue=1, close_timeout=0.1) as slow:
            snap = (await slow.recv())["data"]
            book = snapshot_book(snap)
            await slow.recv()  # the empty book's top
            client = next(iter(rig.process.server.clients))
            deadline = time.monotonic() + 10
            outbox = client.outbox
            while not (outbox.resnapshots and outbox.conflated) and time.monotonic() < deadline:
                flow.feed(rig, 400)  # not read: the server queues, conflates, resnapshots
                await asyncio.sleep(0.02)
            assert outbox.resnapshots and outbox.conflated and not client.closing
            last, tops = await follow(slow, book, snap["lastUpdateId"], flow.seq - 1)
        assert tops and tops[-1][1:5] == best(book), (tops[-1:], best(book))
        live = rig.process.state.symbols[1]
        bid, ask = live.book.best_bid(), live.book.best_ask()
        s = live.symbol
        assert bid is not None and ask is not None
        assert tops[-1][1:5] == (s.price(bid[0]), s.qty(bid[1]), s.price(ask[0]), s.qty(ask[1]))
        assert tops[-1][0] <= last

    run(instance, body, client_queue=16, server=TIGHT)


# -- REST tickers ------------------------------------------------------------------------------


@pytest.fixture
def public(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path, reshape=_with_xbt)


def _halted_book(cfg: RingexConfig) -> MarketState:
    """Three trades and a book on BTC-USD, which is then halted."""
    state = _trades(cfg, 3)
    now = time.time_ns()
    state.process(level(10, Side.BUY, 2_999_950, 30, ts=now), [])
    state.process(level(11, Side.SELL, 3_000_050, 12, ts=now), [])
    state.process(SymbolStatus(12, now, 1, AdminAction.HALT, TradingStatus.HALTED), [])
    state.flush()
    return state


def test_rest_tickers_any_case_halted_in_config_order_and_as_documented(public: Harness) -> None:
    """An empty market and one with trades and a halted BTC-USD book: each ticker answers
    a symbol in lower case as in upper case, the array is each symbol's answer in
    ``exchangeInfo``'s order, and every answer fits its OpenAPI schema."""

    async def scenario(api: RestApi, url: str) -> None:
        names = [s.name for s in public.cfg.symbols]
        for state in (build_state(public.cfg), _halted_book(public.cfg)):
            async with market_data(api, state):
                _, info = await _get(url, "/api/v1/exchangeInfo")
                assert [s["symbol"] for s in info["symbols"]] == names, info  # the order
                for path in TICKERS:
                    schema = _schema(public, path.rsplit("/", 1)[1])
                    status, every = await _get(url, path)
                    assert status == 200 and schema.is_valid(every), (path, every)
                    one = []
                    for name in names:
                        status, row = await _get(url, path, symbol=name.lower())
                        assert status == 200 and schema.is_valid(row), (path, row)
                        assert row == (await _get(url, path, symbol=name))[1], row
                        one.append(row)
                    assert every == one, (path, every, one)
        assert state.symbols[1].status.status == TradingStatus.HALTED
        assert every[0] == {
            "symbol": "BTC-USD", "bidPrice": "29999.50", "bidQty": "0.30",
            "askPrice": "30000.50", "askQty": "0.12",
        }, every  # fmt: skip

    run_rest(public, scenario)


def test_the_array_is_in_the_configs_order_whatever_matcher_holds_a_symbol(instance: str) -> None:
    """Symbols on two matchers, listed in the other order than the config's: the arrays
    follow the config."""
    cfg = config(instance)
    two = [
        MatcherConfig(name="m1", symbols=["ETH-USD"]),
        MatcherConfig(name="m2", symbols=["BTC-USD"]),
    ]
    cfg = msgspec.structs.replace(cfg, matchers=two)
    site = Site(build_state(cfg))
    for path in ("/api/ticker", "/api/price", "/api/bookTicker"):
        rows = json.loads(site.get(path).body)
        assert [r.get("symbol", r.get("s")) for r in rows] == ["BTC-USD", "ETH-USD"], rows


def test_rest_tickers_without_market_data_or_with_a_hung_one_are_503s_saying_which(
    public: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rest_public, "MARKET_TIMEOUT_S", 0.3)

    async def scenario(api: RestApi, url: str) -> None:
        queries: list[dict[str, Any]] = [{}, {"symbol": "btc-usd"}]
        for path in TICKERS:
            for query in queries:
                status, body = await _get(url, path, **query)
                assert (status, body["code"]) == (503, codes.DISCONNECTED), body
                assert body["msg"] == "market data is not enabled on this exchange", body
        async with market_data(api, None):
            for path in TICKERS:
                for query in queries:
                    status, body = await _get(url, path, **query)
                    assert (status, body["code"]) == (503, codes.DISCONNECTED), body
                    assert "did not answer within 0.3 s" in body["msg"], body

    run_rest(public, scenario)


# -- order/test ----------------------------------------------------------------------------------


@pytest.fixture
def trading(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


def _order(**changes: str | None) -> dict[str, Any]:
    """``BID`` with ``changes`` (None: the parameter left out)."""
    return {k: v for k, v in {**BID, **changes}.items() if v is not None}


#: Orders the gateway refuses itself, one rule each.
REFUSED: list[dict[str, Any]] = [
    _order(type="MARKET", price=None, timeInForce="GTC"),
    _order(type="MARKET", stopPrice="99.00"),
    _order(type="MARKET", icebergQty="0.01"),
    _order(type="STOP_LOSS", price=None),  # no stopPrice
    _order(type="STOP_LOSS", price=None, stopPrice="99.01"),  # off the tick
    _order(type="STOP_LOSS_LIMIT", price=None, stopPrice="99.00"),
    _order(type="LIMIT_MAKER", timeInForce="IOC"),
    _order(type="LIMIT_MAKER", icebergQty="0.01", timeInForce="FOK"),
    _order(icebergQty="0.10"),  # not below the quantity
    _order(icebergQty="0.01", timeInForce="IOC"),
    _order(quantity="2.00", icebergQty="0.01"),  # 200 parts
    _order(icebergQty="0.001"),
    _order(price=None),
    _order(price=""),
    _order(price="-1.00"),
    _order(quantity="0"),
    _order(quantity="0.101"),
    _order(quantity="99999999999.00"),
    _order(side="HOLD"),
    _order(type="TRAILING_STOP"),
    _order(selfTradePreventionMode="X"),
    _order(newClientOrderId="no spaces"),
    _order(newClientOrderId="x" * 37),
    _order(symbol=None),
    _order(symbol="btc-usdx"),
]
#: Orders it takes, of every type: the test answers {} and sends nothing.
TAKEN: list[dict[str, Any]] = [
    _order(type="MARKET", price=None),
    _order(type="MARKET", side="SELL", price=None, timeInForce="FOK"),
    _order(type="STOP_LOSS", price=None, stopPrice="120.00"),
    _order(type="STOP_LOSS_LIMIT", stopPrice="120.00", timeInForce="DAY"),
    _order(type="LIMIT_MAKER"),
    _order(icebergQty="0.02", symbol="btc-usd", newClientOrderId="probe"),
]


async def _answers(c: RestClient, params: dict[str, Any]) -> list[tuple[int, Any]]:
    """(status, body) of ``order/test`` and then of ``POST order`` for ``params``."""
    out = []
    for path in (TEST, "/api/v1/order"):
        try:
            out.append((200, await c.call("POST", path, **params)))
        except ApiCallError as refused:
            out.append((refused.status, refused.body))
    return out


def test_order_test_refuses_what_post_order_refuses_and_sends_nothing(trading: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            for params in REFUSED:
                test, real = await _answers(alice, params)
                assert test == real and test[0] == 400, (params, test, real)
                assert test[1]["code"] != codes.UNKNOWN, test
            core = api.core
            before = (dict(core.requests), dict(core.client_ids), list(core.outgoing))
            for params in TAKEN:
                assert await alice.call("POST", TEST, **params) == {}, params
            assert (dict(core.requests), dict(core.client_ids), list(core.outgoing)) == before
            assert core.in_use(ALICE, "probe") is None and not core.used(ALICE, "probe")
            assert not api.waiters and await alice.call("GET", "/api/v1/openOrders") == []
            ok = document(trading.cfg)["paths"][TEST]["post"]["responses"]
            assert {"200", "400", "401", "403", "429", "503"} <= ok.keys(), ok
            assert _schema(trading, "Empty").is_valid({}) and not _schema(
                trading, "Empty"
            ).is_valid({"orderId": 1})
        finally:
            await alice.close()

    run_rest(trading, scenario)


def test_order_test_is_refused_as_post_order_is_by_key_stop_and_rate(trading: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        reader = await client(url, "ALICE", "alice-pw", scopes="read")
        try:
            test, real = await _answers(reader, BID)
            assert test == real and (test[0], test[1]["code"]) == (403, signing.FORBIDDEN_SCOPE)
            api.closing = True  # the gateway stops: no new orders, tested or not
            test, real = await _answers(alice, BID)
            assert test == real and (test[0], test[1]["code"]) == (503, codes.DISCONNECTED), test
            api.closing = False
            api.key_limits = RateLimiter(0.01, 1)  # one request, then one each 100 s
            assert await alice.call("POST", TEST, **BID) == {}  # it spends the key's one
            test, real = await _answers(alice, BID)
            too_many = (429, codes.TOO_MANY_REQUESTS)
            assert (test[0], test[1]["code"]) == (real[0], real[1]["code"]) == too_many, test
        finally:
            await alice.close()
            await reader.close()

    run_rest(trading, scenario)
