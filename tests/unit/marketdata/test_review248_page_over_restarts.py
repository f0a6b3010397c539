"""Review 248: the browser page (``procs/marketdata/static``: app.js, trading.js) as a
logged-in trader sees it while the exchange around it restarts.

Method: the whole exchange as `ringex run` starts it (the supervisor; router, matcher, market
data, the database writer with its embedded PostgreSQL, and two gateways with REST: ``gw1``
serves the page's REST API and private stream, ``gw2`` is the other users' way in), one
instance for the module, and the page in headless Chromium (``chromium.py``), one browser for
the module. Processes are SIGKILLed (``status.json``'s pids) and the supervisor restarts them.

Reviewed: procs/marketdata/static/trading.js (the private stream's close, reconnect, snapshot,
fills history; a revoked key), procs/marketdata/static/app.js (the feed's reconnect and
reselect, the tape, the candles), README's page row and private-stream section.

Faults (fixed: a failed fetch of an order, a cancel or a cancel-all says "no answer ... it
may have been carried out"; only a GET or a login says "unreachable"):

- trading.js:82-89 (``api``) turns every ``fetch`` failure into "the REST API at URL is
  unreachable (...)", and ``sendOrder`` (trading.js:404-405) shows it as the order's answer.
  A fetch also fails when the request was sent and taken and the connection then broke (the
  gateway SIGKILLed while it waited for the matcher's answer): the order was sequenced and
  rests, yet the page says the API could not be reached, and a trader who believes it
  places the order again (two orders, twice the exposure). The same holds for a cancel and
  a cancel-all in flight. Fix: ``api`` tells the caller the request may have been sent (an
  ``ApiError``-like ``NoAnswerError`` for a failed fetch), and ``sendOrder`` / ``cancelOrder``
  / ``cancelAll`` say "no answer from the REST API: the order may have been placed, the open
  orders and fills will show it" (only a GET, or a login, may say "unreachable"); a
  ``newClientOrderId`` sent with each order would let the page ask ``GET order`` after the
  reconnect and say which. Test: ``test_an_order_in_flight_as_the_gateway_dies_...``.

Sound: the page's gateway SIGKILLed with two bids resting, one filled whole and the other
in part through the other gateway while it restarts, with the database writer stopped (no
fill filed: the gateway's live views alone): the private stream comes back by itself, the
snapshot lists the part-filled bid once with its time, fill and status, the filled one
gone, each fill once with its role and commission as ``myTrades`` has them, the balances
the API's. The market-data process SIGKILLed just after a trade (its state saved every 0.2
s: that trade replayed from the ring) with two more while it restarts: the page reconnects,
its tape is the server's (each trade once), its candles' volume and trade count and the
ticker's volume add up to the trades', the book shows a resting bid. A key revoked by the
operator: the stream closes, the reconnect's ``GET account`` gets -2014 and the page logs
out saying so, its orders, balances and stored key gone (a password changed without
``--revoke-keys`` keeps the key working: documented, not tested). 110 fills on a page left
open: the fills table keeps the newest 100 (trimmed in ``drawFills``), the tape 50, the
candles 120 (app.js's ``shown`` is trimmed too).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from config.schema import RingexConfig
from procs.common.run_files import read_status
from procs.gateway.rest_client import RestClient
from tests.free_ports import free_ports

from .chromium import DevTools, browser, needs_chromium
from .supervised import fund, supervised
from .test_process import ROOT
from .test_trading_page import act, until_up

pytestmark = needs_chromium

USERS = ("MAKER", "TRADER", "QUOTER", "REVOKED", "INFLIGHT", "LONG")
SYMBOL = "BTC-USD"

#: What the tests read from the page, as one JSON value (``candles``: app.js's own list, a
#: classic script's top-level binding).
PAGE_STATE = """JSON.stringify({
  trading: !document.getElementById("trading").hidden,
  options: document.getElementById("symbol").options.length,
  feed: document.getElementById("status").textContent,
  stream: document.getElementById("stream-status").textContent,
  streamMsg: document.getElementById("stream-msg").textContent,
  login: document.getElementById("login-msg").textContent,
  loggedIn: !document.getElementById("account").hidden,
  result: document.getElementById("order-result").textContent,
  balances: Object.fromEntries([...document.querySelectorAll("#balances tbody tr")]
    .map(r => [r.cells[0].textContent, [r.cells[1].textContent, r.cells[2].textContent]])),
  fills: [...document.querySelectorAll("#fills tbody tr")]
    .map(r => [r.dataset.tradeId, r.dataset.orderId,
      ...[...r.cells].slice(4).map(c => c.textContent)]),
  orders: Object.fromEntries([...document.querySelectorAll("#open-orders tbody tr")]
    .map(r => [r.dataset.orderId, [...r.cells].slice(0, 9).map(c => c.textContent)])),
  trades: [...document.querySelectorAll("#trades tbody tr")].map(r => r.dataset.tradeId),
  bids: [...document.querySelectorAll("#bids tbody tr")]
    .map(r => [r.cells[0].textContent, r.cells[1].textContent]),
  volume: document.getElementById("t-volume").textContent,
  candles: candles.map(c => [c.t, c.v, c.n]),
  session: sessionStorage.getItem("ringex.session"),
})"""


@dataclass
class Exchange:
    cfg: RingexConfig
    profile: Path
    page_rest: str  # gw1's REST API: the page's
    other_rest: str  # gw2's REST API: the other users'
    page_url: str


def password(user: str) -> str:
    return f"{user.lower()}-pw"


def profile_text(name: str, var_dir: Path) -> str:
    """Two gateways with REST (the page takes the first), market data saving its state every
    0.2 s, the database writer on its embedded PostgreSQL. Every port is picked here, the
    supervisor's metrics too: left at 0, the kernel gave it a port picked for a gateway."""
    fix1, rest1, fix2, rest2, feed, metrics = free_ports(6)  # (one picked twice clashed)
    gateways = "".join(
        f'[[gateways]]\nname = "gw{i}"\nid = {i}\nport = {fix}\n[gateways.rest]\nport = {rest}\n'
        for i, fix, rest in ((1, fix1, rest1), (2, fix2, rest2))
    )
    return (
        f'instance = "{name}"\nvar_dir = "{var_dir}"\n'
        "[ring]\ncapacity = 4096\n"
        '[wait]\nstrategy = "blocking"\npark_timeout_s = 0.005\n'
        "[risk]\nfee_account = 1\n"
        f"[supervisor]\nmetrics_port = {metrics}\n"
        f"[marketdata]\nport = {feed}\nsnapshot_every_s = 0.2\n{gateways}"
    )


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exchange]:
    """The exchange run by the supervisor, every user funded with USD and BTC."""
    tmp = tmp_path_factory.mktemp("review248")
    name = f"t{os.getpid()}x9248248"  # conftest's pattern: a killed run's is removed later
    profile = tmp / "review248.toml"
    profile.write_text(profile_text(name, tmp / "var"))
    with supervised(profile, timeout_s=60) as cfg:
        fund(cfg, USERS, 401, password)
        rest1, rest2 = (gw.rest for gw in cfg.gateways)
        assert rest1 is not None and rest2 is not None
        yield Exchange(
            cfg, profile, f"http://127.0.0.1:{rest1.port}", f"http://127.0.0.1:{rest2.port}",
            f"http://127.0.0.1:{cfg.marketdata.port}/",
        )  # fmt: skip


def run(coro: object, timeout: float = 60) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout))  # type: ignore[arg-type]


@asynccontextmanager
async def opened(ex: Exchange, profile: Path) -> AsyncIterator[DevTools]:
    """The page in a fresh Chromium, its trading panel and symbol list shown."""
    await until_up(f"{ex.page_rest}/api/v1/ping")
    async with browser(profile, PAGE_STATE) as page:
        await page.call("Page.navigate", url=ex.page_url)
        await page.wait_for("the trading panel", lambda s: s["trading"] and s["options"])
        yield page


async def log_in(page: DevTools, user: str) -> None:
    await act(page, {"username": user, "password": password(user)}, "#login-button")
    await page.wait_for(f"{user} live", lambda s: s["stream"] == "live" and s["balances"])


@asynccontextmanager
async def client(url: str, user: str) -> AsyncIterator[RestClient]:
    async with RestClient(url) as api:
        await api.login(user, password(user))
        yield api


def processes(cfg: RingexConfig) -> dict[str, dict[str, Any]]:
    status = read_status(cfg)
    assert status is not None
    return {p["name"]: p for p in status["processes"]}


async def kill_and_wait(cfg: RingexConfig, name: str) -> None:
    """SIGKILL ``name``; back once the supervisor restarted it and it is ready."""
    before = processes(cfg)[name]
    os.kill(before["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 40
    while True:
        now = processes(cfg).get(name, {})
        if now.get("restarts", 0) > before["restarts"] and now.get("ready"):
            return
        assert time.monotonic() < deadline, f"{name} not restarted: {now}"
        await asyncio.sleep(0.1)


async def order(page: DevTools, fields: dict[str, str]) -> str:
    """``fields`` placed from the page's form; the order id its answer names."""
    out = await page.call(
        "Runtime.evaluate", expression='document.getElementById("order-result").textContent = ""'
    )
    assert "exceptionDetails" not in out, out
    await act(page, fields, "#order-submit")
    state = await page.wait_for(
        "the order's answer", lambda s: s["result"].startswith("#") and "sending" not in s["result"]
    )
    return str(state["result"][1:].split()[0])


def balances_of(account: dict[str, Any]) -> dict[str, list[str]]:
    return {b["asset"]: [b["free"], b["locked"]] for b in account["balances"]}


async def market(ex: Exchange, path: str) -> Any:
    """The market-data port's JSON answer to ``path``."""
    with await asyncio.to_thread(urllib.request.urlopen, ex.page_url + path[1:], timeout=5) as r:
        return json.loads(r.read())


def bid(price: str, qty: str) -> dict[str, str]:
    return {"side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "price": price, "quantity": qty}


async def trade(maker: RestClient, taker: RestClient, price: str, qty: str = "0.01") -> None:
    """One trade: ``maker`` rests a sell, ``taker`` takes it whole."""
    sell = await maker.call(
        "POST", "/api/v1/order", symbol=SYMBOL, side="SELL", type="LIMIT", timeInForce="GTC",
        price=price, quantity=qty,
    )  # fmt: skip
    assert sell["status"] == "NEW", sell
    buy = await taker.call(
        "POST", "/api/v1/order", symbol=SYMBOL, side="BUY", type="LIMIT", timeInForce="IOC",
        price=price, quantity=qty,
    )  # fmt: skip
    assert buy["status"] == "FILLED", buy


# -- the gateway behind the page restarts -------------------------------------------------------


def test_gateway_restart_keeps_orders_balances_and_shows_the_fill_missed(
    exchange: Exchange, tmp_path: Path
) -> None:
    """Scenario: TRADER, logged in on the page, has two bids resting (90.00 x 0.1, 91.00 x
    0.2); the gateway serving the page (gw1) is SIGKILLed and, while it restarts, MAKER sells
    0.2 at 91.00 through gw2, filling the 91.00 bid. Expected: the page's private stream comes
    back by itself, its snapshot lists the 90.00 bid once and not the filled one, the balances
    are the API's, and the fill made while disconnected is shown once. Now: so."""
    run(gateway_restart(exchange, tmp_path / "chromium"))


async def gateway_restart(ex: Exchange, profile: Path) -> None:
    async with (
        opened(ex, profile) as page,
        client(ex.other_rest, "MAKER") as maker,
        client(ex.other_rest, "TRADER") as mine,
    ):
        await log_in(page, "TRADER")
        kept = await order(page, bid("90.00", "0.1"))
        filled = await order(page, bid("91.00", "0.2"))
        before = await page.wait_for("both bids", lambda s: set(s["orders"]) == {kept, filled})
        writer = processes(ex.cfg)["dbwriter"]["pid"]
        os.kill(writer, signal.SIGSTOP)  # nothing filed: the gateway's live views alone
        try:
            victim = asyncio.create_task(kill_and_wait(ex.cfg, "gateway-gw1"))
            await asyncio.sleep(0)  # the SIGKILL sent before the sells
            for price, qty in (("91.00", "0.2"), ("90.00", "0.04")):
                sell = await maker.call(
                    "POST", "/api/v1/order", symbol=SYMBOL, side="SELL", type="LIMIT",
                    timeInForce="IOC", price=price, quantity=qty,
                )  # fmt: skip
                assert sell["status"] == "FILLED", sell
            await victim
            state = await page.wait_for(
                "the stream back, the fills shown",
                lambda s: (
                    s["stream"] == "live" and set(s["orders"]) == {kept} and len(s["fills"]) >= 2
                ),
                timeout=40,
            )
        finally:
            os.kill(writer, signal.SIGCONT)
        account = await mine.call("GET", "/api/v1/account")
        trades = await mine.call("GET", "/api/v1/myTrades", symbol=SYMBOL)
        assert state["orders"][kept] == [
            before["orders"][kept][0],
            SYMBOL,
            "BUY",
            "LIMIT",
            "90.00",
            "-",
            "0.1000",
            "0.0400",
            "PARTIALLY_FILLED",
        ], state["orders"]
        want = sorted(
            [str(t["id"]), str(t["orderId"]), t["qty"], "maker", f"{t['commission']} USD"]
            for t in trades
        )
        assert sorted(state["fills"]) == want, state["fills"]
        assert state["balances"] == balances_of(account), (state, account)


def test_an_order_in_flight_as_the_gateway_dies_is_not_called_unreachable(
    exchange: Exchange, tmp_path: Path
) -> None:
    """Scenario: INFLIGHT places a bid from the page; the router takes it (the page's stream
    shows its hold) and, before the matcher answers (stopped a moment), the gateway serving
    the page is SIGKILLed; the matcher goes on and the bid rests (the page's snapshot shows it
    after the reconnect). Expected: the page's answer says the order's outcome is not known
    (it may have been placed: see the open orders), not that the API cannot be reached. Was
    (fixed): "the REST API at http://127.0.0.1:P is unreachable (Failed to fetch)" while the
    bid rests: a trader told so sends it again, and buys twice."""
    run(in_flight(exchange, tmp_path / "chromium"))


async def in_flight(ex: Exchange, profile: Path) -> None:
    async with opened(ex, profile) as page:
        await log_in(page, "INFLIGHT")
        matcher = processes(ex.cfg)["matcher-m1"]["pid"]
        os.kill(matcher, signal.SIGSTOP)
        try:
            await act(page, bid("60.00", "0.1"), "#order-submit")
            await page.wait_for(
                "the bid's hold", lambda s: s["balances"]["USD"][1] != "0.000000", timeout=10
            )
            victim = asyncio.create_task(kill_and_wait(ex.cfg, "gateway-gw1"))
            await page.wait_for("the answer", lambda s: "sending" not in s["result"])
        finally:
            os.kill(matcher, signal.SIGCONT)
        await victim
        state = await page.wait_for(
            "the bid shown", lambda s: s["stream"] == "live" and s["orders"], timeout=40
        )
        assert len(state["orders"]) == 1, state
        assert "unreachable" not in state["result"], state["result"]
        assert "it may have been carried out" in state["result"], state["result"]


# -- the market-data process restarts -----------------------------------------------------------


def test_marketdata_restart_keeps_tape_candles_and_book(exchange: Exchange, tmp_path: Path) -> None:
    """Scenario: the page shows BTC-USD; three trades, the last just before the market-data
    process is SIGKILLed (saved every 0.2 s: the last is replayed from the ring), two more
    while it restarts, a bid resting at 80.00. Expected: the page reconnects by itself, its
    tape is the server's (each trade once), its candles' volume and count add up to the
    trades', the ticker's volume too, and the book shows the bid. Now: so."""
    run(marketdata_restart(exchange, tmp_path / "chromium"))


async def marketdata_restart(ex: Exchange, profile: Path) -> None:
    async with (
        opened(ex, profile) as page,
        client(ex.other_rest, "MAKER") as maker,
        client(ex.other_rest, "QUOTER") as taker,
    ):
        resting = await taker.call(
            "POST", "/api/v1/order", symbol=SYMBOL, side="BUY", type="LIMIT",
            timeInForce="GTC", price="80.00", quantity="0.3",
        )  # fmt: skip
        assert resting["status"] == "NEW"
        for price in ("95.00", "96.00"):
            await trade(maker, taker, price)
        await page.wait_for("two trades", lambda s: len(s["trades"]) >= 2)
        await trade(maker, taker, "97.00")
        victim = asyncio.create_task(kill_and_wait(ex.cfg, "marketdata"))
        await asyncio.sleep(0)
        for price in ("98.00", "99.00"):
            await trade(maker, taker, price)
        await victim
        tape = await market(ex, "/api/trades?symbol=btc-usd&limit=1000")
        ids = [str(t["t"]) for t in reversed(tape)][:50]
        volume = sum(Decimal(t["q"]) for t in tape)
        state = await page.wait_for(
            "the tape again",
            lambda s: s["feed"] == "live" and s["trades"] and s["trades"][0] == ids[0],
            timeout=30,
        )
        assert state["trades"] == ids, state["trades"]
        assert sum(Decimal(c[1]) for c in state["candles"]) == volume, state["candles"]
        assert sum(c[2] for c in state["candles"]) == len(tape), state["candles"]
        assert Decimal(state["volume"]) == volume
        assert ["80.00", "0.3000"] in state["bids"], state["bids"]


# -- the page's key revoked -----------------------------------------------------------------------


def admin(ex: Exchange, *args: str) -> str:
    """`ringex admin ARGS` as the operator runs it; its output."""
    done = subprocess.run(
        [sys.executable, "-m", "procs.cli", "admin", *args, "--config", str(ex.profile)],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done
    return done.stdout


def test_a_revoked_key_logs_the_page_out(exchange: Exchange, tmp_path: Path) -> None:
    """Scenario: REVOKED, logged in on the page with a bid resting, has the page's API key
    revoked by the operator (`ringex admin revoke-key`). Expected: the page stops trading
    with it: it shows the login form again with a message that says why, its orders and
    balances gone from view, and an order tried through the key is refused. Now: so."""
    run(revoked(exchange, tmp_path / "chromium"))


async def revoked(ex: Exchange, profile: Path) -> None:
    async with opened(ex, profile) as page:
        await log_in(page, "REVOKED")
        oid = await order(page, bid("70.00", "0.1"))
        state = await page.wait_for("the bid", lambda s: oid in s["orders"])
        key = json.loads(state["session"])["apiKey"]
        assert "revoked" in admin(ex, "revoke-key", "--api-key", key)
        state = await page.wait_for(
            "the login form", lambda s: not s["loggedIn"] and s["login"], timeout=20
        )
        assert "logged out" in state["login"] and "2014" in state["login"], state
        assert state["orders"] == {} and state["balances"] == {} and state["session"] is None


# -- a page left open long ----------------------------------------------------------------------


def test_a_page_left_open_keeps_its_lists_bounded(exchange: Exchange, tmp_path: Path) -> None:
    """Scenario: LONG, logged in on the page, takes 110 fills of 0.01 (IOC buys through gw2
    against MAKER's resting sell). Expected: the fills table holds the newest 100 (each once,
    the newest included), the tape the newest 50, the candles at most 120. Now: so."""
    run(left_open(exchange, tmp_path / "chromium"), timeout=80)


async def left_open(ex: Exchange, profile: Path) -> None:
    async with (
        opened(ex, profile) as page,
        client(ex.other_rest, "MAKER") as maker,
        client(ex.other_rest, "LONG") as mine,
    ):
        await log_in(page, "LONG")
        sell = await maker.call(
            "POST", "/api/v1/order", symbol=SYMBOL, side="SELL", type="LIMIT",
            timeInForce="GTC", price="120.00", quantity="1.10",
        )  # fmt: skip
        assert sell["status"] == "NEW", sell
        for _ in range(110):
            buy = await mine.call(
                "POST", "/api/v1/order", symbol=SYMBOL, side="BUY", type="LIMIT",
                timeInForce="IOC", price="120.00", quantity="0.01",
            )  # fmt: skip
            assert buy["status"] == "FILLED", buy
        newest = (await mine.call("GET", "/api/v1/myTrades", symbol=SYMBOL, limit=1))[0]
        state = await page.wait_for(
            "the newest fill", lambda s: any(f[0] == str(newest["id"]) for f in s["fills"])
        )
        assert len(state["fills"]) == 100, len(state["fills"])
        assert len({f[0] for f in state["fills"]}) == 100
        assert len(state["trades"]) == 50 and len(state["candles"]) <= 120
