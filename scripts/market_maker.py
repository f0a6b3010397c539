"""A demo market maker for `make run MM=1`: it keeps the books quoted and trades printing, so
the page, the feed and the candles have something to show.

    python scripts/market_maker.py [--profile dev] [--url http://127.0.0.1:8080]
                                   [--symbols BTC-USD,ETH-USD] [--interval 0.4] [--seed N]

Over the REST API (``procs.gateway.rest_client``), as the two users of its own that
``run_demo.py --market-maker`` funds: the maker (MM1) rests ``--levels`` bids and asks per
symbol on a price grid around a mid that random-walks back toward where it started; each cycle
it cancels what left the ladder, places what is missing (in one ``POST batchOrders``) and now
and then replaces one order with a new size. The taker (MM2) sometimes sends an IOC limit
through the touch, leaning against what it has bought, so trades print and neither side's
balances drift far. The maker cancels every open order of its account that is off its ladder,
so it must never trade as a user someone else uses (the demo's DEMO1 and DEMO2 are the
newcomer's). One symbol per cycle, a cycle every ``--interval`` seconds: about 5 to 15 orders a
second. SIGINT or SIGTERM cancels the maker's orders, revokes both API keys and exits.

The quoting is pure (``MidWalk``, ``ladder``, ``plan``, ``taker_order``) and integer: prices
and sizes in the symbol's units (10^-decimals), decimal strings only on the wire.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import random
import signal
import ssl
import sys
import time
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from aiohttp import ClientError

from config import load_profile
from procs.common.endpoints import url_host
from procs.common.quiet_log import quieten
from procs.common.task_end import wait_ended
from procs.gateway.rest_client import ApiCallError, RestClient
from procs.gateway.rest_params import MAX_BATCH_ORDERS

log = logging.getLogger("ringex.market_maker")
#: Refused orders, a few lines a minute with a count of those dropped: a halt or a balance
#: run short refuses every quote of every cycle, 25 lines a second (review 207).
refusals = logging.getLogger("ringex.market_maker.refused")
quieten(refusals, burst=3, period_s=60.0)

#: Where a mid starts when the symbol has not traded (whole quote units).
DEFAULT_MIDS = {"BTC-USD": "30000", "ETH-USD": "2000"}
#: The most one REST call may take (a gateway that takes the connection and never answers),
#: and the exit's cancels of what rests, all of them.
REQUEST_S = 10.0
EXIT_S = 20.0
#: The pause before the exit's second look at what rests.
AGAIN_S = 0.25
BUY, SELL = "BUY", "SELL"

# -- the pure core ---------------------------------------------------------------------------


def to_units(text: str, decimals: int) -> int:
    """A decimal string in units of 10^-decimals: to_units("0.01", 2) == 1."""
    return int(Decimal(text).scaleb(decimals).to_integral_exact())


def from_units(units: int, decimals: int) -> str:
    """The decimal string of ``units`` (>= 0): from_units(123, 2) == "1.23"."""
    if decimals == 0:
        return str(units)
    whole, frac = divmod(units, 10**decimals)
    return f"{whole}.{frac:0{decimals}d}"


@dataclass(frozen=True)
class Market:
    """One symbol as ``exchangeInfo`` describes it, in integer units."""

    symbol: str
    price_decimals: int
    qty_decimals: int
    tick: int  # price units
    lot: int  # quantity units
    min_qty: int
    max_qty: int = 0  # 0: no limit said

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> Market:
        pd, qd = int(info["pricePrecision"]), int(info["quantityPrecision"])
        return cls(
            info["symbol"],
            pd,
            qd,
            tick=to_units(info["tickSize"], pd),
            lot=to_units(info["stepSize"], qd),
            min_qty=to_units(info["minQty"], qd),
            max_qty=to_units(info["maxQty"], qd) if "maxQty" in info else 0,
        )

    def size(self, price: int, notional: float) -> int:
        """The quantity worth about ``notional`` whole quote units at ``price``, on the lot,
        within the symbol's ``minQty``..``maxQty`` (a quote past its limit is refused)."""
        raw = int(notional * 10 ** (self.qty_decimals + self.price_decimals) / price)
        qty = max(self.min_qty, raw - raw % self.lot, self.lot)
        if self.max_qty and qty > self.max_qty:
            qty = max(self.min_qty, self.max_qty - self.max_qty % self.lot)
        return qty


class MidWalk:
    """A mid price (price units, on the tick) that random-walks with a pull toward ``anchor``:
    each step moves it by N(0, vol_ticks) ticks less ``reversion`` of its distance away."""

    def __init__(
        self,
        anchor: int,
        tick: int,
        rng: random.Random,
        *,
        vol_ticks: float,
        reversion: float = 0.01,
    ) -> None:
        self.anchor = anchor - anchor % tick
        self.tick = tick
        self.mid = self.anchor
        self.rng = rng
        self.vol_ticks = vol_ticks
        self.reversion = reversion

    def step(self) -> int:
        away = (self.mid - self.anchor) / self.tick
        move = round(self.rng.gauss(0.0, self.vol_ticks) - self.reversion * away)
        self.mid = max(self.tick, self.mid + move * self.tick)
        return self.mid


@dataclass(frozen=True)
class Grid:
    """The ladder's shape in price units: ``levels`` a side, ``step`` apart, none nearer the mid
    than ``half_spread``."""

    levels: int
    step: int
    half_spread: int

    @classmethod
    def around(cls, market: Market, mid: int, *, levels: int = 5, step_bps: float = 2.0) -> Grid:
        step = max(market.tick, round(mid * step_bps / 10_000 / market.tick) * market.tick)
        return cls(levels, step, step)


def ladder(grid: Grid, mid: int) -> set[tuple[str, int]]:
    """The (side, price) the maker wants resting: bids on the grid's multiples at or below
    ``mid - half_spread``, asks at or above ``mid + half_spread``. Grid prices do not move
    with the mid, so a small move changes only the edges."""
    top_bid = (mid - grid.half_spread) // grid.step * grid.step
    low_ask = -(-(mid + grid.half_spread) // grid.step) * grid.step
    bids = {(BUY, top_bid - k * grid.step) for k in range(grid.levels)}
    asks = {(SELL, low_ask + k * grid.step) for k in range(grid.levels)}
    return {(side, price) for side, price in bids | asks if price > 0}


@dataclass(frozen=True)
class Resting:
    order_id: int
    side: str
    price: int


def plan(
    wanted: set[tuple[str, int]],
    resting: Iterable[Resting],
    rng: random.Random,
    *,
    refresh: float = 0.5,
) -> tuple[list[int], list[tuple[str, int]]]:
    """(order ids to cancel, (side, price) to place) that turn ``resting`` into ``wanted``:
    cancel what is off the ladder or doubled, place what is missing, and with probability
    ``refresh`` replace one kept order (a new size: the page sees levels change)."""
    kept: dict[tuple[str, int], int] = {}
    cancel: list[int] = []
    for order in sorted(resting, key=lambda o: o.order_id):
        key = (order.side, order.price)
        if key in wanted and key not in kept:
            kept[key] = order.order_id
        else:
            cancel.append(order.order_id)
    if kept and rng.random() < refresh:
        key = rng.choice(sorted(kept))
        cancel.append(kept.pop(key))
    place = sorted(wanted - kept.keys(), key=lambda k: (k[0], -k[1] if k[0] == BUY else k[1]))
    return cancel, place


def taker_order(
    wanted: set[tuple[str, int]],
    grid: Grid,
    inventory: int,
    max_inventory: int,
    rng: random.Random,
) -> tuple[str, int]:
    """(side, limit price) of an IOC that crosses the maker's touch by one grid step. The side
    leans against ``inventory`` (base units the taker holds from its trades): at
    +max_inventory it buys with probability 0.1, at -max_inventory 0.9."""
    lean = max(-1.0, min(1.0, inventory / max_inventory)) if max_inventory else 0.0
    bids = [p for s, p in wanted if s == BUY]
    side = BUY if not bids or rng.random() < 0.5 - 0.4 * lean else SELL
    if side == BUY:
        return side, min(p for s, p in wanted if s == SELL) + grid.step
    return side, max(grid.step, max(bids) - grid.step)


# -- the bot ---------------------------------------------------------------------------------


@dataclass
class Book:
    """The bot's view of one symbol."""

    market: Market
    walk: MidWalk
    grid: Grid
    max_inventory: int
    inventory: int = 0  # the taker's net base units


class MarketMaker:
    def __init__(
        self,
        maker: RestClient,
        taker: RestClient,
        books: list[Book],
        rng: random.Random,
        *,
        interval_s: float = 0.4,
        take_probability: float = 0.4,
        notional: tuple[float, float] = (1_000.0, 6_000.0),
    ) -> None:
        self.maker, self.taker = maker, taker
        self.books = books
        self.rng = rng
        self.interval_s = interval_s
        self.take_probability = take_probability
        self.notional = notional
        self.placed = self.cancelled = self.taken = self.refused = 0

    async def run(self, stop: asyncio.Event) -> None:
        report_at = time.monotonic() + 10
        turn = 0
        while not stop.is_set():
            book = self.books[turn % len(self.books)]
            turn += 1
            try:
                if not await _unless_stopped(self.cycle(book), stop):
                    break  # a stop ends the cycle under way: the exit cancels what rests
            except ApiCallError as exc:
                log.warning("%s: %s", book.market.symbol, exc)
                if exc.status != 400:  # 429, or a part of the exchange not answering yet
                    await asyncio.sleep(1.0)
            except (ClientError, OSError) as exc:
                log.warning("the exchange is unreachable (%s); retrying", exc)
                await asyncio.sleep(1.0)
            if time.monotonic() >= report_at:
                report_at += 10
                self.report()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval_s):
                    await stop.wait()

    async def cycle(self, book: Book) -> None:
        m = book.market
        wanted = ladder(book.grid, book.walk.step())
        resting = await self.open_orders(m)
        cancel, place = plan(wanted, resting, self.rng)
        for order_id in cancel:
            await self.cancel(m, order_id)
        quotes = [
            (side, price, m.size(price, self.rng.uniform(*self.notional))) for side, price in place
        ]
        for start in range(0, len(quotes), MAX_BATCH_ORDERS):
            await self.quote(m, quotes[start : start + MAX_BATCH_ORDERS])
        if self.rng.random() < self.take_probability:
            side, price = taker_order(
                wanted, book.grid, book.inventory, book.max_inventory, self.rng
            )
            qty = m.size(price, self.rng.uniform(*self.notional) * 1.5)
            done = await self.order(self.taker, m, side, price, qty, "IOC")
            if done is not None:
                filled = to_units(done["executedQty"], m.qty_decimals)
                book.inventory += filled if side == BUY else -filled
                self.taken += filled > 0

    async def open_orders(self, m: Market) -> list[Resting]:
        rows = await self.maker.call("GET", "/api/v1/openOrders", symbol=m.symbol)
        return [
            Resting(int(r["orderId"]), r["side"], to_units(r["price"], m.price_decimals))
            for r in rows
        ]

    async def order(
        self, api: RestClient, m: Market, side: str, price: int, qty: int, tif: str
    ) -> dict[str, Any] | None:
        try:
            body: dict[str, Any] = await api.call(
                "POST", "/api/v1/order", symbol=m.symbol, side=side, type="LIMIT",
                timeInForce=tif, price=from_units(price, m.price_decimals),
                quantity=from_units(qty, m.qty_decimals),
            )  # fmt: skip
        except ApiCallError as exc:
            if exc.status != 400:
                raise
            self.refused += 1  # a balance ran short, a halt: the next cycle tries again
            refusals.info("%s %s refused: %s", m.symbol, side, exc.body)
            return None
        self.placed += 1
        return body

    async def quote(self, m: Market, quotes: list[tuple[str, int, int]]) -> None:
        """The maker's (side, price, qty) ``quotes``, GTC, in one ``batchOrders`` request:
        the ladder's gaps reach the book back to back."""
        orders = [
            {"symbol": m.symbol, "side": side, "type": "LIMIT", "timeInForce": "GTC",
             "price": from_units(price, m.price_decimals),
             "quantity": from_units(qty, m.qty_decimals)}
            for side, price, qty in quotes
        ]  # fmt: skip
        try:
            answers = await self.maker.batch_orders(orders)
        except ApiCallError as exc:
            if exc.status != 400:
                raise
            answers = [exc.body] * len(orders)
        for answer in answers:
            if "code" in answer:  # a balance ran short, a halt: the next cycle tries again
                self.refused += 1
                refusals.info("%s quote refused: %s", m.symbol, answer)
            else:
                self.placed += 1

    async def cancel(self, m: Market, order_id: int) -> None:
        try:
            await self.maker.call("DELETE", "/api/v1/order", symbol=m.symbol, orderId=order_id)
            self.cancelled += 1
        except ApiCallError as exc:
            if exc.status not in (400, 404):  # filled meanwhile
                raise

    async def cancel_all(self) -> None:
        for book in self.books:
            for order in await self.open_orders(book.market):
                await self.cancel(book.market, order.order_id)

    def report(self) -> None:
        mids = ", ".join(
            f"{b.market.symbol} {from_units(b.walk.mid, b.market.price_decimals)}"
            for b in self.books
        )
        log.info(
            "%d placed, %d cancelled, %d taker fills, %d refused; mids %s",
            *(self.placed, self.cancelled, self.taken, self.refused, mids),
        )


async def _unless_stopped(work: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Run ``work`` until it ends (True) or ``stop`` is set (False: it is cancelled), so a
    stop never waits on a gateway that does not answer (review 167)."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not task.done():
            task.cancel()
            await wait_ended(task)
    if task.cancelled():
        return False
    task.result()  # what the work raised
    return True


# -- the edge --------------------------------------------------------------------------------


async def login(url: str, credentials: str, wait_s: float = 30.0, cafile: str = "") -> RestClient:
    """A client signed in as ``user:password``; waits for the gateway to listen.
    ``cafile``: the certificates an https URL's is checked against (the venue's own)."""
    user, _, password = credentials.partition(":")
    tls = ssl.create_default_context(cafile=cafile) if cafile else None
    api = RestClient(url, timeout_s=REQUEST_S, tls=tls)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            await api.login(user, password)
            return api
        except (ClientError, OSError, ApiCallError) as exc:  # a 429 (the login rate), a 503
            busy = not isinstance(exc, ApiCallError) or exc.status in (429, 503)
            if not busy or time.monotonic() > deadline:  # (a 401 is not tried again)
                await api.close()
                raise
            await asyncio.sleep(0.5)


async def start_mid(api: RestClient, m: Market) -> int:
    """The last trade's price when the market-data process has one, else a default."""
    with contextlib.suppress(ApiCallError, ClientError, OSError, KeyError):
        ticker = await api.call("GET", "/api/v1/ticker/24hr", signed=False, symbol=m.symbol)
        return to_units(ticker["lastPrice"], m.price_decimals)
    return to_units(DEFAULT_MIDS.get(m.symbol, "100"), m.price_decimals)


async def main_async(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    rng = random.Random(args.seed)
    maker = await login(args.url, args.maker, cafile=args.cafile)
    apis = [maker]  # each one logged in: its key revoked at the end, whatever happens
    try:
        taker = await login(args.url, args.taker, cafile=args.cafile)
        apis.append(taker)
        info = await maker.call("GET", "/api/v1/exchangeInfo", signed=False)
        wanted = set(args.symbols.split(",")) if args.symbols else None
        books = []
        for row in info["symbols"]:
            if wanted is None or row["symbol"] in wanted:
                m = Market.from_info(row)
                mid = await start_mid(maker, m)
                grid = Grid.around(m, mid, levels=args.levels)
                walk = MidWalk(mid, m.tick, rng, vol_ticks=grid.step / m.tick)
                inventory = dataclasses.replace(m, max_qty=0).size(mid, 50_000)  # a position
                books.append(Book(m, walk, grid, max_inventory=inventory))
        if not books:
            log.error("no symbol to quote (asked for %s)", args.symbols)
            return 2
        bot = MarketMaker(maker, taker, books, rng, interval_s=args.interval)
        while not stop.is_set():  # what a killed run left resting
            try:
                await bot.cancel_all()
                break
            except (ApiCallError, ClientError, OSError) as exc:  # the history database may
                log.info("waiting for the exchange: %s", exc)  # still be starting, or the API
                await asyncio.sleep(1.0)
        log.info("quoting %s as %s", [b.market.symbol for b in books], maker.account)
        try:
            await bot.run(stop)
        finally:
            with contextlib.suppress(ApiCallError, ClientError, OSError):
                async with asyncio.timeout(EXIT_S):  # a gateway gone quiet: not for ever
                    await bot.cancel_all()
                    # a quote whose request the stop cut short (sent, its answer never
                    # awaited) may be placed after that look: a second one takes it
                    await asyncio.sleep(AGAIN_S)
                    await bot.cancel_all()
            bot.report()
        return 0
    finally:
        for api in apis:
            with contextlib.suppress(ApiCallError, ClientError, OSError):
                await api.call("DELETE", "/api/v1/apiKey")
            await api.close()


def default_url(profile: str) -> str:
    cfg = load_profile(profile)
    rest = next((g.rest for g in cfg.gateways if g.rest is not None), None)
    if rest is None:
        raise SystemExit(f"profile {profile!r} has no gateway with a REST API ([gateways.rest])")
    host = "127.0.0.1" if rest.host in ("", "0.0.0.0", "::") else rest.host
    scheme = "https" if rest.tls_cert else "http"  # as run_demo prints it (review 207)
    return f"{scheme}://{url_host(host)}:{rest.port}"  # an IPv6 host in brackets (review 127)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="ringex demo market maker")
    ap.add_argument("--profile", default="dev", help="where the REST API is (or --url)")
    ap.add_argument("--url", default="", help="the REST API's base URL")
    ap.add_argument("--symbols", default="", help="comma-separated (default: all)")
    ap.add_argument("--maker", default="MM1:mm1", help="user:password of the quoter")
    ap.add_argument("--taker", default="MM2:mm2", help="user:password of the taker")
    ap.add_argument("--levels", type=int, default=5, help="orders per side and symbol")
    ap.add_argument("--interval", type=float, default=0.4, help="seconds between cycles")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--cafile", default="", help="CA certificates for an https URL's")
    args = ap.parse_args(argv)
    args.url = args.url or default_url(args.profile)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
