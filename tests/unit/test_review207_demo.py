"""Review 207 (a helper, hostile): what a newcomer meets first, `make run` and `make run MM=1`.

Reviewed: ``scripts/run_demo.py`` (the demo's users and their funding on a first and a later
run, what it prints, its stop on SIGTERM and Ctrl-C) and ``scripts/market_maker.py`` (its
quotes against the symbols' rules, a gateway restart, a halt and resume, a sweep of its book,
its stop), as README's "Two commands" describes them. Real processes throughout: one exchange
of a private instance on free ports (no database, as README's ``nodb.toml``; review 31's
end-to-end test runs the dev profile's PostgreSQL), the market maker as ``make run MM=1``
starts it, and ``run_demo.py`` itself for the last tests.

Faults (each fixed; its test says what it was):

1. ``scripts/market_maker.py:310`` and ``:331-333``: every refused order is logged, one INFO
   line each, every cycle: while a symbol is halted (or a balance has run short) the maker
   writes its ten refused quotes every cycle, ~25 lines a second at the default interval,
   into ``var/<instance>/run/market-maker.log``, which ``run_demo`` opens for append and
   nothing rotates. (``test_a_halt_is_logged_once_not_per_refused_order_per_cycle``)
2. ``scripts/run_demo.py:94-96``: a later run deposits with the first run's idempotency
   keys, so it adds nothing, whatever the account holds now: the market maker's taker pays
   20 bps and the spread on every take (about 1 a second) and is never topped up, so after a
   day or so of ``MM=1`` its USD is gone for good (every buy refused, logged per fault 1),
   and the demo goes on printing "account 101: USD 1000000, ..." for an account that holds
   less. (``test_a_later_run_tops_the_demo_accounts_up_to_what_it_prints``)
3. ``scripts/market_maker.py:455-461`` (``default_url``): always ``http://``, while
   ``run_demo`` prints ``https://`` for a REST API with ``tls_cert``: with such a profile
   ``make run MM=1`` starts a market maker that cannot log in (30 s of retries, then a
   traceback in its log) while the demo says it quotes.
   (``test_the_market_maker_finds_a_tls_rest_api``)

Checked and found right (``test_checked_...``): a second ``add_users`` (a later ``make run``)
keeps every account, adds no user and deposits nothing more; the quotes are on the tick and
the lot, within min/max qty, five a side, bids below asks, near the mid; the maker comes back
after its gateway is killed and restarted, with one ladder, not two; a sweep of its asks is
refilled at its own prices, not chased; SIGTERM cancels every order of its account and revokes
both API keys (exit 0); ``run_demo`` under SIGTERM stops the market maker and the exchange
(exit 0, no process, no segment of the instance left), what it printed is reachable, and a
second run finds the same accounts with nothing refused and the first run's quotes gone.

Leads, not shown here: the transfer keys are remembered for 7 days (``procs/core/
transfer_keys.py``), so a ``make run`` more than a week after the last deposits the demo
funds again (a double deposit; the top-up of fault 2 mends both); during a halt the maker
cancels its quotes one by one (refresh, mid walk) and cannot place them again, so a resumed
symbol opens on an empty book for one cycle; the maker's mid is anchored for its life at the
last trade of its start and never follows the market, so with ``limit_band_bps`` set a price
moved by other users past the collar leaves every quote refused; ``run_demo`` does not notice
its market maker dying (it goes on saying it quotes); ``market_maker.login`` retries only
``ClientError``/``OSError``: a 429 at login (10 logins in a burst from one address, the page's
included) ends the bot with a traceback and leaves that ``RestClient`` unclosed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from config import load_profile
from config.schema import RingexConfig
from procs.admin.client import AdminClient
from procs.common.apikeys import ApiKeyStore
from procs.common.result_codes import ResultCode
from procs.common.run_files import read_status
from procs.common.topology import apikeys_path, users_path
from procs.common.users import UserStore
from shm.inspect import remove_instance
from tests.e2e.running import ROOT
from tests.e2e.test_review31_demo import Demo, Printed, instance_processes, segments, signed
from tests.free_ports import free_port
from tests.scripts_loader import load_script
from tests.unit.supervisor.test_review50_ops import detached

demo: Any = load_script("run_demo", "review207")
mm: Any = load_script("market_maker", "review207")

SYMBOLS = ("BTC-USD", "ETH-USD")
MIDS = {"BTC-USD": Decimal("30000"), "ETH-USD": Decimal("2000")}  # market_maker.DEFAULT_MIDS


def profile_text(instance: str, directory: Path, *, marketdata: bool = False) -> str:
    """The dev profile's shape (a FIX gateway serving the REST API) on free ports, without
    the database (README's ``nodb.toml``); the feed only where asked. The REST logins per
    address are not limited here: the tests read as MM1 with a key of their own each time."""
    feed = f"enabled = true\nport = {free_port()}\n" if marketdata else "enabled = false\n"
    return (
        f'instance = "{instance}"\nvar_dir = "{directory / "var"}"\n'
        f"[marketdata]\n{feed}[database]\nenabled = false\n"
        '[ring]\ncapacity = 4096\n[wait]\nstrategy = "blocking"\npark_timeout_s = 0.01\n'
        "[supervisor]\nmetrics = false\n"
        f'[[gateways]]\nname = "gw1"\nid = 1\nport = {free_port()}\n'
        f"[gateways.rest]\nport = {free_port()}\n"
        "login_rate_per_s = 1000.0\nlogin_burst = 1000\n"  # the tests' polls log in anew
    )


@dataclass
class Exchange:
    """The module's running instance, its demo users and market-maker users added once."""

    profile: Path
    cfg: RingexConfig
    accounts: dict[str, int]

    @property
    def url(self) -> str:
        """The REST API's base, as ``run_demo`` prints it (without the trailing /)."""
        url: str = mm.default_url(str(self.profile))
        return url + "/api/v1"


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exchange]:
    directory = tmp_path_factory.mktemp("rv207")
    instance = f"rv207x{os.getpid()}"
    profile = directory / "demo.toml"
    profile.write_text(profile_text(instance, directory))
    try:
        with detached(profile) as cfg:
            accounts = demo.add_users(cfg, demo.DEMO_USERS + demo.MARKET_MAKER_USERS)
            yield Exchange(profile, cfg, accounts)
    finally:
        remove_instance(instance)


def until(check: Callable[[], Any], what: str, timeout: float = 45.0) -> Any:
    """``check()``'s first true answer, looked at every 0.2 s (a generous bound: no timing)."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.2)


def login(base: str, user: str, password: str) -> dict[str, str]:
    """An API key of ``user`` (``POST /api/v1/apiKey``), over urllib: ``base`` ends in
    ``/api/v1``."""
    form = urllib.parse.urlencode({"username": user, "password": password}).encode()
    request = urllib.request.Request(base + "/apiKey", form, method="POST")
    with urllib.request.urlopen(request, timeout=10) as r:
        key: dict[str, str] = json.loads(r.read())
    return key


def as_user(base: str, user: str, password: str, method: str, path: str, **params: str) -> Any:
    """One signed request as ``user`` (review 31's ``signed``), the key revoked after."""
    key = login(base, user, password)
    try:
        status, body = signed(base, key, method, path, params)
    finally:
        signed(base, key, "DELETE", "/apiKey", {})
    assert status == 200, (status, body)
    return body


def open_orders(base: str, user: str = "MM1", password: str = "mm1") -> dict[str, list[Any]]:
    """Each symbol's open orders of ``user``'s account, read over the REST API."""
    key = login(base, user, password)
    try:
        found = {s: signed(base, key, "GET", "/openOrders", {"symbol": s}) for s in SYMBOLS}
    finally:
        signed(base, key, "DELETE", "/apiKey", {})
    assert all(status == 200 for status, _ in found.values()), found
    return {s: rows for s, (_, rows) in found.items()}


def open_orders_or_none(base: str) -> dict[str, list[Any]] | None:
    """``open_orders``, or None while the gateway does not answer (restarting)."""
    try:
        return open_orders(base)
    except (OSError, AssertionError):  # refused, reset, a 503 while it starts (URLError too)
        return None


def full_ladders(url: str) -> dict[str, list[Any]] | None:
    """The maker's open orders once each symbol has five bids and five asks, else None."""
    found = open_orders_or_none(url)
    if found is None:
        return None
    for rows in found.values():
        sides = [r["side"] for r in rows]
        if (sides.count("BUY"), sides.count("SELL")) != (5, 5):
            return None
    return found


@dataclass
class Bot:
    """``market_maker.py`` as ``run_demo.start_market_maker`` starts it, faster cycles."""

    proc: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, ex: Exchange, log: Path) -> Bot:
        cmd = [sys.executable, "scripts/market_maker.py", "--profile", str(ex.profile),
               "--maker", "MM1:mm1", "--taker", "MM2:mm2", "--interval", "0.1",
               "--seed", "207"]  # fmt: skip
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        return cls(proc, log)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@pytest.fixture
def bot(exchange: Exchange, tmp_path: Path) -> Iterator[Bot]:
    started = Bot.start(exchange, tmp_path / "market-maker.log")
    try:
        until(lambda: "quoting" in started.text() or started.proc.poll() is not None, "quoting")
        assert started.proc.poll() is None, started.text()
        yield started
    finally:
        started.stop()


# -- the demo's users ------------------------------------------------------------------------


def balances(cfg: RingexConfig, account: int) -> dict[int, int]:
    client = AdminClient(cfg)
    try:
        return {b.asset: b.free + b.reserved for b in client.balances(account)}
    finally:
        client.close()


def test_checked_a_later_run_reuses_the_accounts_without_a_second_deposit(
    exchange: Exchange,
) -> None:
    """Scenario: ``add_users`` (what each ``make run MM=1`` does) on an instance where a first
    run added them. Expected: the same accounts (101, 102, 201, 202), still four users, no
    balance changed. Now: so (each deposit's key is the first run's: applied once)."""
    cfg = exchange.cfg
    assert exchange.accounts == {"DEMO1": 101, "DEMO2": 102, "MM1": 201, "MM2": 202}
    before = {a: balances(cfg, a) for a in exchange.accounts.values()}
    again = demo.add_users(cfg, demo.DEMO_USERS + demo.MARKET_MAKER_USERS)
    assert again == exchange.accounts
    assert sorted(u.comp_id for u in UserStore(users_path(cfg)).users()) == [
        "DEMO1", "DEMO2", "MM1", "MM2",
    ]  # fmt: skip
    assert {a: balances(cfg, a) for a in exchange.accounts.values()} == before


# -- the market maker against a running exchange -------------------------------------------------


def test_checked_its_quotes_keep_to_the_symbols_rules_near_the_mid(
    exchange: Exchange, bot: Bot
) -> None:
    """Scenario: the market maker quotes both symbols. Expected: five bids and five asks a
    symbol, every price on the tick, every size on the lot within min/max qty, bids below
    asks, all within 1% of the mid it starts from. Now: so."""
    ladders = until(lambda: full_ladders(exchange.url), "five bids and five asks a symbol")
    for sym in exchange.cfg.symbols:
        rows = ladders[sym.name]
        tick = Decimal(sym.tick).scaleb(-sym.price_decimals)
        lot = Decimal(sym.lot).scaleb(-sym.qty_decimals)
        for row in rows:
            price, qty = Decimal(row["price"]), Decimal(row["origQty"])
            assert price % tick == 0 and qty % lot == 0, row
            assert sym.least_qty <= qty.scaleb(sym.qty_decimals) <= sym.most_qty, row
            assert abs(price - MIDS[sym.name]) <= MIDS[sym.name] / 100, row
        bids = [Decimal(r["price"]) for r in rows if r["side"] == "BUY"]
        asks = [Decimal(r["price"]) for r in rows if r["side"] == "SELL"]
        assert max(bids) < min(asks), rows


def test_checked_it_comes_back_after_its_gateway_is_killed(exchange: Exchange, bot: Bot) -> None:
    """Scenario: the gateway serving its REST API is killed (SIGKILL); the supervisor starts
    it again. Expected: the market maker says so, keeps running, and quotes one full ladder a
    symbol again (its API keys are kept on disk). Now: so."""
    until(lambda: full_ladders(exchange.url), "quoting before the kill")
    status = read_status(exchange.cfg) or {}
    gateway = next(p for p in status["processes"] if p["name"] == "gateway-gw1")
    os.kill(gateway["pid"], signal.SIGKILL)

    def restarted() -> bool:
        now = read_status(exchange.cfg) or {}
        procs: list[dict[str, Any]] = now.get("processes", [])
        gw = next((p for p in procs if p["name"] == "gateway-gw1"), {})
        return bool(gw.get("ready")) and gw.get("pid") != gateway["pid"]

    until(restarted, "the gateway restarted", timeout=60)
    until(lambda: "unreachable" in bot.text(), "the market maker saw it go")
    until(lambda: full_ladders(exchange.url), "a full ladder again")
    assert bot.proc.poll() is None, bot.text()
    assert "Traceback" not in bot.text(), bot.text()


def test_checked_a_sweep_of_its_asks_is_refilled_at_its_own_prices(
    exchange: Exchange, bot: Bot
) -> None:
    """Scenario: DEMO1 sends an IOC buy of 5 BTC at 31000, through every ask of the maker.
    Expected: it fills at the maker's prices, and the maker rests five asks again, near its
    mid (it does not chase the sweep up). Now: so."""
    until(lambda: full_ladders(exchange.url), "quoting before the sweep")

    done = as_user(
        exchange.url, "DEMO1", "demo1", "POST", "/order", symbol="BTC-USD", side="BUY",
        type="LIMIT", timeInForce="IOC", price="31000.00", quantity="5.0000",
    )  # fmt: skip
    assert Decimal(done["executedQty"]) > 0, done
    ladders = until(lambda: full_ladders(exchange.url), "five asks again")
    asks = [Decimal(r["price"]) for r in ladders["BTC-USD"] if r["side"] == "SELL"]
    assert max(asks) < Decimal("30300"), asks
    assert bot.proc.poll() is None, bot.text()


def test_checked_sigterm_cancels_its_orders_and_revokes_its_keys(
    exchange: Exchange, bot: Bot
) -> None:
    """Scenario: the market maker quotes, then gets SIGTERM (what ``run_demo`` sends it).
    Expected: exit status 0, no open order of MM1's account, no API key of MM1 or MM2 left.
    Now: so."""
    until(lambda: full_ladders(exchange.url), "quoting")
    assert bot.stop() == 0, bot.text()
    assert open_orders(exchange.url) == {s: [] for s in SYMBOLS}
    keys = ApiKeyStore(apikeys_path(exchange.cfg)).all_keys()
    assert [k.comp_id for k in keys if k.comp_id in ("MM1", "MM2")] == []
    assert "Traceback" not in bot.text(), bot.text()


def test_a_halt_is_logged_once_not_per_refused_order_per_cycle(
    exchange: Exchange, caplog: pytest.LogCaptureFixture
) -> None:
    """Scenario: BTC-USD is halted (``ringex admin halt``); the maker's cycle runs five times
    (in this process, against the real gateway), each placing its ten quotes, all refused
    SYMBOL_HALTED. Expected: the same refusal, repeated, is logged once (or once a cycle at
    most: five lines). Was (fixed): one INFO line per refused quote per cycle, 50 (and the taker's
    refused IOCs besides): at the default 0.4 s, 25 lines a second for as long as the halt
    lasts, appended to ``market-maker.log``."""
    caplog.set_level(logging.INFO, logger="ringex.market_maker")
    admin = AdminClient(exchange.cfg)

    async def scenario() -> int:
        base = exchange.url.removesuffix("/api/v1")
        maker, taker = await mm.login(base, "MM1:mm1"), None
        try:
            taker = await mm.login(base, "MM2:mm2")
            info = await maker.call("GET", "/api/v1/exchangeInfo", signed=False)
            row = next(r for r in info["symbols"] if r["symbol"] == "BTC-USD")
            market = mm.Market.from_info(row)
            mid = mm.to_units("30000", market.price_decimals)
            grid = mm.Grid.around(market, mid)
            walk = mm.MidWalk(mid, market.tick, random.Random(1), vol_ticks=0)
            book = mm.Book(market, walk, grid, max_inventory=market.size(mid, 50_000))
            bot = mm.MarketMaker(maker, taker, [book], random.Random(1))
            deadline = time.monotonic() + 30
            while bot.refused == 0:  # the halt has reached the book
                assert time.monotonic() < deadline, "the halt never refused a quote"
                await bot.cycle(book)
                await asyncio.sleep(0.1)
            await bot.cancel_all()  # cancels are taken while halted: every quote is new
            caplog.clear()
            for _ in range(5):
                await bot.cycle(book)
            lines = sum("refused" in r.getMessage() for r in caplog.records)
            await bot.cancel_all()
            return lines
        finally:
            for api in (maker, taker):
                if api is not None:
                    with contextlib.suppress(Exception):
                        await api.call("DELETE", "/api/v1/apiKey")
                    await api.close()

    try:
        admin.halt("BTC-USD")
        lines = asyncio.run(scenario())
    finally:
        admin.halt("BTC-USD", resume=True)
        admin.close()
    assert lines <= 5, f"{lines} log lines for five cycles of one halt"


def test_a_later_run_tops_the_demo_accounts_up_to_what_it_prints(exchange: Exchange) -> None:
    """Scenario: the market maker's taker MM2 has spent its USD (what a day or so of
    ``make run MM=1`` does: 20 bps and the spread on a take a second; here a withdrawal
    stands in), then ``make run MM=1`` again (``add_users``). Expected: each account holds
    at least the funds the demo prints for it (topped up by the difference: never a second
    full deposit). Was (fixed): the deposits carried the first run's keys, were answered OK
    and applied not at all: MM2 stayed at 0 USD, every buy of the taker refused for ever, the demo
    prints "USD 1000000" for accounts that hold less."""
    cfg = exchange.cfg
    taker = exchange.accounts["MM2"]
    usd = cfg.asset("USD")
    spent = Decimal(balances(cfg, taker)[usd.id]).scaleb(-usd.decimals)
    client = AdminClient(cfg)
    try:
        reply = client.transfer(taker, "USD", f"-{spent:f}")
        assert reply.code == ResultCode.OK, reply
    finally:
        client.close()
    demo.add_users(cfg, demo.DEMO_USERS + demo.MARKET_MAKER_USERS)
    assert balances(cfg, taker).get(usd.id, 0) >= Decimal("1000000").scaleb(usd.decimals)


def test_the_market_maker_finds_a_tls_rest_api(tmp_path: Path) -> None:
    """Scenario: ``make run MM=1 PROFILE=p.toml`` where p.toml's REST API has ``tls_cert``
    and ``tls_key``. Expected: the market maker's URL is the one ``run_demo`` prints,
    ``https://127.0.0.1:PORT`` (and it trusts the venue's certificate, or is told to).
    Was (fixed): ``http://127.0.0.1:PORT``: its logins fail for 30 s, then it ends in a traceback,
    while the demo has printed that it quotes."""
    profile = tmp_path / "tls.toml"
    text = profile_text(f"rv207tls{os.getpid()}", tmp_path)
    profile.write_text(text + 'tls_cert = "cert.pem"\ntls_key = "key.pem"\n')
    rest = load_profile(str(profile)).gateways[0].rest
    assert rest is not None and rest.tls_cert
    assert mm.default_url(str(profile)) == f"https://127.0.0.1:{rest.port}"


# -- run_demo.py itself ----------------------------------------------------------------------------


@dataclass
class DemoEnv:
    directory: Path
    profile: Path
    cfg: RingexConfig


@pytest.fixture(scope="module")
def demo_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoEnv]:
    directory = tmp_path_factory.mktemp("rv207run")
    instance = f"rv207run{os.getpid()}"
    profile = directory / "demo.toml"
    profile.write_text(profile_text(instance, directory, marketdata=True))
    env = DemoEnv(directory, profile, load_profile(str(profile)))
    try:
        yield env
    finally:
        subprocess.run(
            [sys.executable, "-m", "procs.cli", "stop", "--config", str(profile)],
            cwd=ROOT, capture_output=True, timeout=120, check=False,
        )  # fmt: skip
        for pid in (line.split(":")[0] for line in instance_processes(str(directory))):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        remove_instance(instance)


def _started(env: DemoEnv, name: str, *, market_maker: bool) -> tuple[Demo, Printed]:
    run = Demo.start(env.profile, env.directory / name, market_maker=market_maker)
    try:
        return run, Printed.parse(run.wait_ready())
    except BaseException:
        run.kill()
        raise


def _nothing_left(env: DemoEnv) -> None:
    assert instance_processes(str(env.directory)) == []
    assert segments(env.cfg.instance) == []


def test_checked_run_demo_prints_what_answers_and_stops_on_sigterm(demo_env: DemoEnv) -> None:
    """Scenario: ``make run MM=1`` (``run_demo.py --market-maker``), then SIGTERM to the demo
    alone (``kill PID``, a service manager). Expected: the printed FIX endpoint takes a TCP
    connection, the REST URL answers ``exchangeInfo``, the page URL answers 200; the market
    maker quotes; SIGTERM stops the market maker (its final report, no traceback), then the
    exchange: exit 0, no process and no segment of the instance left. Now: so."""
    run, printed = _started(demo_env, "run1.out", market_maker=True)
    try:
        assert "Market maker: MM1 (account 201) quotes, MM2 (account 202)" in printed.text
        socket.create_connection((printed.fix_host, printed.fix_port), timeout=10).close()
        with urllib.request.urlopen(printed.rest + "/exchangeInfo", timeout=10) as r:
            assert r.status == 200 and b"BTC-USD" in r.read()
        with urllib.request.urlopen(printed.page, timeout=10) as r:
            assert r.status == 200
        log = demo_env.directory / "var" / demo_env.cfg.instance / "run" / "market-maker.log"
        until(lambda: log.exists() and "quoting" in log.read_text(), "the market maker quotes")
        until(lambda: full_ladders(printed.rest), "its ladders")
        os.kill(run.proc.pid, signal.SIGTERM)
        assert run.proc.wait(120) == 0, run.text()
    finally:
        if run.proc.poll() is None:
            run.kill()
    text = log.read_text()
    assert "placed" in text.splitlines()[-1] and "Traceback" not in text, text
    _nothing_left(demo_env)


def test_checked_a_second_run_demo_finds_the_same_users_and_no_quotes_left(
    demo_env: DemoEnv,
) -> None:
    """Scenario: after that stop, ``make run`` again (no market maker), then Ctrl-C.
    Expected: the same accounts printed, nothing refused, four users stored (no duplicate),
    no open order of MM1's account (the first run cancelled its quotes before the exchange
    stopped, or they would rest again now); Ctrl-C exits 0 and leaves nothing running.
    Now: so."""
    run, printed = _started(demo_env, "run2.out", market_maker=False)
    try:
        assert "account 101:" in printed.text and "account 102:" in printed.text
        assert "refused" not in run.text(), run.text()
        users = UserStore(users_path(demo_env.cfg)).users()
        assert sorted(u.comp_id for u in users) == ["DEMO1", "DEMO2", "MM1", "MM2"]
        assert open_orders(printed.rest) == {s: [] for s in SYMBOLS}
        assert run.ctrl_c(timeout=120) == 0, run.text()
    finally:
        if run.proc.poll() is None:
            run.kill()
    assert "Traceback" not in run.text(), run.text()
    _nothing_left(demo_env)
