"""A newcomer's first run, end to end, as the README tells it: `make run MM=1` (that is
`scripts/run_demo.py --profile P --market-maker`), then, with only what it printed, a FIX
logon with an independent FIX library (simplefix) over TCP, an order placed and cancelled, the
WebSocket feed, the web page, the REST API and `ringex status`; then Ctrl-C (SIGINT to the
demo's process group) stops it cleanly, and the next `make run` starts. One demo for the
module (the dev profile with its own instance name, var directory and free ports), in the
test order below; the last tests stop it."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import hmac
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import simplefix
import websockets

from config import load_profile
from config.schema import RingexConfig
from procs.common.embedded_postgres import EmbeddedPostgres
from procs.common.run_files import read_status, run_dir
from procs.common.topology import postgres_dir
from tests.e2e.running import ROOT
from tests.free_ports import free_port

READY_LINE = "Ctrl-C stops it."


def demo_profile(directory: Path, instance: str) -> Path:
    """config/profiles/dev.toml as it is, but for its instance name, var directory and ports
    (so it runs beside anything else on this host)."""
    text = (ROOT / "config" / "profiles" / "dev.toml").read_text()
    edits = [
        ('instance = "dev"', f'instance = "{instance}"\nvar_dir = "{directory / "var"}"'),
        ("id = 1\n", f"id = 1\nport = {free_port()}\n"),
        ("[gateways.rest]\nport = 8080", f"[gateways.rest]\nport = {free_port()}"),
        ("metrics_port = 9464", f"metrics_port = {free_port()}"),
    ]
    for old, new in edits:
        assert old in text, f"dev.toml changed: {old!r} is not in it any more"
        text = text.replace(old, new, 1)
    text += f"\n[marketdata]\nport = {free_port()}\n"
    profile = directory / "demo.toml"
    profile.write_text(text)
    return profile


@dataclass
class Demo:
    """One `make run`: its process (the leader of its own process group, as a terminal's
    foreground job is) and where its output goes."""

    proc: subprocess.Popen[bytes]
    out: Path

    @classmethod
    def start(cls, profile: Path, out: Path, *, market_maker: bool) -> Demo:
        # the Makefile's recipe: $(PY) scripts/run_demo.py --profile $(PROFILE) [--market-maker]
        cmd = [sys.executable, "scripts/run_demo.py", "--profile", str(profile)]
        with open(out, "wb") as sink:
            proc = subprocess.Popen(
                cmd + (["--market-maker"] if market_maker else []),
                cwd=ROOT,
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return cls(proc, out)

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_ready(self, timeout: float = 90.0) -> str:
        deadline = time.monotonic() + timeout
        while READY_LINE not in self.text():
            assert self.proc.poll() is None, f"the demo exited:\n{self.text()}"
            assert time.monotonic() < deadline, f"not ready in {timeout} s:\n{self.text()}"
            time.sleep(0.1)
        return self.text()

    def ctrl_c(self, timeout: float = 60.0, *, again_after: float | None = None) -> int:
        """SIGINT to the whole process group, as a terminal's Ctrl-C (and a second one
        ``again_after`` seconds later, an impatient user's); its exit status."""
        os.killpg(self.proc.pid, signal.SIGINT)
        if again_after is not None:
            time.sleep(again_after)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


@dataclass
class Printed:
    """What `make run` printed a user: where to connect, and as whom."""

    text: str
    fix_host: str
    fix_port: int
    target: str
    users: dict[str, str]  # comp id -> password
    rest: str
    ws: str
    page: str

    @classmethod
    def parse(cls, text: str) -> Printed:
        shown = text[text.index("ringex is running") :]
        fix = re.search(r"host (\S+) port (\d+), TargetCompID ([^\s,]+)", shown)
        rest = re.search(r"REST API:\s+(http://\S+)", shown)
        ws = re.search(r"Market data:\s+(ws://\S+)", shown)
        page = re.search(r"Web page:\s+(http://\S+)", shown)
        assert fix and rest and ws and page, f"an endpoint is missing:\n{shown}"
        users = dict(re.findall(r"SenderCompID (\S+) password (\S+)", shown))
        return cls(shown, fix[1], int(fix[2]), fix[3], users, rest[1].rstrip("/"), ws[1], page[1])


def instance_processes(marker: str) -> list[str]:
    """Every process whose command line names ``marker`` (the test's directory: the profile,
    the var directory, PostgreSQL's data directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if marker in cmdline:
                found.append(f"{entry.name}: {cmdline}")
    return found


def segments(instance: str) -> list[str]:
    return sorted(p.name for p in Path("/dev/shm").iterdir() if f".{instance}." in p.name)


def assert_nothing_left(cfg: RingexConfig, directory: Path) -> None:
    assert instance_processes(str(directory)) == []
    assert segments(cfg.instance) == []
    assert not (postgres_dir(cfg) / "data" / "postmaster.pid").exists()


class Env:
    """The module's demo: its directory, profile and config, and the run in progress."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.instance = f"rv31demo{os.getpid()}"
        self.profile = demo_profile(directory, self.instance)
        self.cfg = load_profile(str(self.profile))
        self.runs = 0
        self.demo: Demo | None = None
        self.printed: Printed | None = None

    def start(self, *, market_maker: bool) -> Demo:
        assert self.demo is None or self.demo.proc.poll() is not None
        self.runs += 1
        out = self.directory / f"run{self.runs}.out"
        self.demo = Demo.start(self.profile, out, market_maker=market_maker)
        return self.demo

    def cleanup(self) -> None:
        if self.demo is not None and self.demo.proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.demo.ctrl_c()
            self.demo.kill()
        subprocess.run(
            [sys.executable, "-m", "procs.cli", "stop", "--config", str(self.profile)],
            cwd=ROOT,
            capture_output=True,
            timeout=120,
            check=False,
        )
        EmbeddedPostgres(postgres_dir(self.cfg)).destroy()
        for pid in (line.split(":")[0] for line in instance_processes(str(self.directory))):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        for name in segments(self.instance):
            with contextlib.suppress(OSError):
                (Path("/dev/shm") / name).unlink()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    e = Env(tmp_path_factory.mktemp("demo"))
    try:
        e.start(market_maker=True)
        assert e.demo is not None
        e.printed = Printed.parse(e.demo.wait_ready())
        yield e
    finally:
        e.cleanup()


@pytest.fixture
def printed(env: Env) -> Printed:
    if env.printed is None or env.demo is None or env.demo.proc.poll() is not None:
        pytest.skip("the demo is not running")
    return env.printed


# -- a FIX 4.4 client of its own ----------------------------------------------------------


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H:%M:%S.%f")[:-3]


class FixClient:
    def __init__(self, host: str, port: int, sender: str, target: str) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sender, self.target = sender, target
        self.seq = 1
        self.parser = simplefix.FixParser()

    def send(self, msg_type: str, *fields: tuple[int, str | int]) -> None:
        msg = simplefix.FixMessage()
        msg.append_pair(8, "FIX.4.4", header=True)
        msg.append_pair(35, msg_type, header=True)
        msg.append_pair(49, self.sender, header=True)
        msg.append_pair(56, self.target, header=True)
        msg.append_pair(34, self.seq, header=True)
        msg.append_pair(52, utc_now(), header=True)
        for tag, value in fields:
            msg.append_pair(tag, value)
        self.seq += 1
        self.sock.sendall(msg.encode())

    def receive(self, timeout: float = 10.0) -> simplefix.FixMessage | None:
        """The next message (a heartbeat skipped), or None once ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self.parser.get_message()
            if msg is not None and msg.get(35) != b"0":
                return msg
            if msg is not None:
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return None
            if not data:
                return None
            self.parser.append_buffer(data)

    def close(self) -> None:
        self.sock.close()


def show(msg: simplefix.FixMessage | None) -> str:
    return "None" if msg is None else msg.encode(True).replace(b"\x01", b"|").decode()


# -- the newcomer's path, in order --------------------------------------------------------


def test_it_prints_every_endpoint_and_credential(env: Env, printed: Printed) -> None:
    """What it prints is what the profile configures, with the two demo users; the
    market-maker's log is where it says."""
    gw = env.cfg.gateways[0]
    md = env.cfg.marketdata
    assert (printed.fix_host, printed.fix_port, printed.target) == (gw.host, gw.port, gw.comp_id)
    assert printed.users == {"DEMO1": "demo1", "DEMO2": "demo2"}
    assert gw.rest is not None
    assert printed.rest == f"http://{gw.rest.host}:{gw.rest.port}/api/v1"
    first = env.cfg.symbols[0].name.lower()
    assert printed.ws == f"ws://{md.host}:{md.port}/stream?streams={first}@trade"
    assert printed.page == f"http://{md.host}:{md.port}/"
    assert (run_dir(env.cfg) / "market-maker.log").exists()


def test_it_names_the_symbols_a_user_can_trade(env: Env, printed: Printed) -> None:
    """An order names a symbol, and its price and size must be on the symbol's tick and lot:
    what it prints says which symbols there are, and their steps."""
    for sym in env.cfg.symbols:
        tick = f"{sym.tick / 10**sym.price_decimals:.{sym.price_decimals}f}"
        lot = f"{sym.lot / 10**sym.qty_decimals:.{sym.qty_decimals}f}"
        assert re.search(rf"{sym.name}\b.*tick {tick}.*lot {lot}", printed.text), (
            f"{sym.name} (tick {tick}, lot {lot}) is not in what it printed:\n{printed.text}"
        )


def test_the_feed_shows_the_market_makers_trades_and_depth(printed: Printed) -> None:
    """The printed WebSocket URL streams trades; a depth stream of the same symbol opens with
    a snapshot of the market maker's quotes on both sides."""

    async def read() -> tuple[dict[str, Any], dict[str, Any]]:
        async with websockets.connect(printed.ws) as ws:
            while True:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 20))
                if msg["stream"] == "btc-usd@trade":
                    trade = msg["data"]
                    break
        depth_url = printed.ws.replace("@trade", "@depth")
        async with websockets.connect(depth_url) as ws:
            while True:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 20))
                if msg["stream"] == "btc-usd@depth":
                    return trade, msg["data"]

    trade, depth = asyncio.run(read())
    assert trade["e"] == "trade" and trade["s"] == "BTC-USD" and float(trade["q"]) > 0
    assert depth["e"] == "depthSnapshot" and depth["bids"] and depth["asks"]
    assert float(depth["bids"][0][0]) < float(depth["asks"][0][0])


def test_the_page_and_its_assets_load(printed: Printed) -> None:
    """The page URL answers 200 with HTML; every asset it names answers 200; the page is told
    the printed REST port (it trades through it)."""
    with urllib.request.urlopen(printed.page, timeout=10) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/html")
        html = r.read().decode()
    assets = [a for a in re.findall(r'(?:src|href)="(/[^"]*)"', html)]
    assert {"/app.js", "/style.css"} <= set(assets)
    for asset in assets:
        with urllib.request.urlopen(urllib.parse.urljoin(printed.page, asset), timeout=10) as r:
            assert r.status == 200 and r.read()
    with urllib.request.urlopen(urllib.parse.urljoin(printed.page, "/api/config")) as r:
        rest = json.loads(r.read())["rest"]
    assert printed.rest == f"http://{rest['host']}:{rest['port']}/api/v1"


def test_a_fix_user_places_and_cancels_an_order_of_its_own(printed: Printed) -> None:
    """Log on as a printed demo user (Password 554), rest a buy far below the market maker's
    ladder, wait while the market maker cycles, cancel it: the cancel is ours, answered with
    an ExecutionReport Canceled for our ClOrdID. Were the market maker trading as the same
    user, it would have cancelled the order as one off its ladder (an unsolicited 150=4).
    Then an IOC buy through its asks fills at their prices."""
    comp_id, password = "DEMO1", printed.users["DEMO1"]
    fix = FixClient(printed.fix_host, printed.fix_port, comp_id, printed.target)
    try:
        fix.send("A", (98, 0), (108, 30), (141, "Y"), (554, password))
        logon = fix.receive()
        assert logon is not None and logon.get(35) == b"A", show(logon)
        fix.send(
            "D", (11, "rv31-1"), (55, "BTC-USD"), (54, 1), (60, utc_now()),
            (38, "0.0100"), (40, 2), (44, "1000.00"), (59, 1),
        )  # fmt: skip
        new = fix.receive()
        assert new is not None and new.get(35) == b"8" and new.get(150) == b"0", show(new)
        unsolicited = fix.receive(2.5)  # the market maker cycles BTC-USD every 0.8 s
        assert unsolicited is None, f"an order no one asked to cancel ended: {show(unsolicited)}"
        fix.send(
            "F", (41, "rv31-1"), (11, "rv31-2"), (55, "BTC-USD"), (54, 1), (60, utc_now()),
            (38, "0.0100"),
        )  # fmt: skip
        done = fix.receive()
        assert done is not None and done.get(35) == b"8", show(done)
        assert (done.get(150), done.get(39), done.get(11), done.get(41)) == (
            b"4",
            b"4",
            b"rv31-2",
            b"rv31-1",
        ), show(done)
        # an order through the market maker's asks trades with them (its own account)
        fix.send(
            "D", (11, "rv31-3"), (55, "BTC-USD"), (54, 1), (60, utc_now()),
            (38, "0.0010"), (40, 2), (44, "60000.00"), (59, 3),
        )  # fmt: skip
        reports: list[simplefix.FixMessage] = []
        while not reports or reports[-1].get(39) not in (b"2", b"4", b"8"):
            report = fix.receive()
            assert report is not None and report.get(35) == b"8", show(report)
            reports.append(report)
        assert reports[-1].get(39) == b"2", [show(r) for r in reports]
        assert float(reports[-1].get(6) or 0) < 60000, show(reports[-1])  # at the asks' prices
        fix.send("5")
        bye = fix.receive()
        assert bye is not None and bye.get(35) == b"5", show(bye)
    finally:
        fix.close()


def signed(
    base: str, key: dict[str, str], method: str, path: str, params: dict[str, str]
) -> tuple[int, Any]:
    """A signed request as the README describes it: HMAC-SHA256 of
    ``timestamp\\nwindow\\nMETHOD\\npath\\nquery\\n`` + body, with the secret."""
    body = urllib.parse.urlencode(params).encode() if method in ("POST", "PUT") else b""
    query = "" if body else urllib.parse.urlencode(params)
    full_path = urllib.parse.urlsplit(base).path + path
    stamp, window = str(int(time.time() * 1000)), "5000"
    payload = f"{stamp}\n{window}\n{method}\n{full_path}\n{query}\n".encode() + body
    headers = {
        "X-RINGEX-APIKEY": key["apiKey"],
        "X-RINGEX-TIMESTAMP": stamp,
        "X-RINGEX-RECV-WINDOW": window,
        "X-RINGEX-SIGNATURE": hmac.new(
            key["secretKey"].encode(), payload, hashlib.sha256
        ).hexdigest(),
    }
    if body:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    url = base + path + (f"?{query}" if query else "")
    request = urllib.request.Request(url, body or None, headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_a_rest_user_logs_in_and_places_an_order(printed: Printed) -> None:
    """POST apiKey with a printed user, a signed order, its account's open orders (ours
    alone), the cancel, the logout."""
    login = urllib.request.Request(
        printed.rest + "/apiKey",
        urllib.parse.urlencode({"username": "DEMO2", "password": printed.users["DEMO2"]}).encode(),
        method="POST",
    )
    with urllib.request.urlopen(login, timeout=10) as r:
        key = json.loads(r.read())
    assert key["username"] == "DEMO2" and "trade" in key["scopes"]
    order = {
        "symbol": "ETH-USD", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC",
        "price": "90000.00", "quantity": "0.0100", "newClientOrderId": "rv31-rest",
    }  # fmt: skip
    status, placed = signed(printed.rest, key, "POST", "/order", order)
    assert status == 200 and placed["status"] == "NEW", placed
    status, open_orders = signed(printed.rest, key, "GET", "/openOrders", {"symbol": "ETH-USD"})
    assert status == 200 and [o["orderId"] for o in open_orders] == [placed["orderId"]]
    cancel = {"symbol": "ETH-USD", "origClientOrderId": "rv31-rest"}
    status, cancelled = signed(printed.rest, key, "DELETE", "/order", cancel)
    assert status == 200 and cancelled["status"] == "CANCELED", cancelled
    status, revoked = signed(printed.rest, key, "DELETE", "/apiKey", {})
    assert status == 200 and revoked["revoked"] is True


def test_status_shows_every_process_ready_and_the_endpoints(env: Env, printed: Printed) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "procs.cli", "status", "--json", "--config", str(env.profile)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    status = json.loads(done.stdout)
    assert status["state"] == "running"
    names = {p["name"] for p in status["processes"]}
    assert {"router", "matcher-m1", "dbwriter", "marketdata", "gateway-gw1"} <= names
    assert all(p["alive"] and p["ready"] for p in status["processes"]), status["processes"]
    where = status["endpoints"]
    assert where["fix gw1"].startswith(f"{printed.fix_host}:{printed.fix_port} ")
    assert where["rest gw1"].rstrip("/") == printed.rest
    assert where["web page"] == printed.page
    assert printed.ws.startswith(where["websocket"])


def test_ctrl_c_stops_everything_cleanly(env: Env, printed: Printed) -> None:
    """Ctrl-C: exit status 0, the market maker's orders cancelled first, and no process, no
    shared-memory segment and no PostgreSQL of the instance left."""
    assert env.demo is not None
    rc = env.demo.ctrl_c()
    assert rc == 0, env.demo.text()
    assert "stopped" in env.demo.text()
    log = (run_dir(env.cfg) / "market-maker.log").read_text()
    assert "placed" in log and "Traceback" not in log, log
    assert_nothing_left(env.cfg, env.directory)


def test_ctrl_c_while_it_starts_stops_it_too(env: Env) -> None:
    """A newcomer's Ctrl-C while the exchange is still starting (a first start runs initdb)
    stops what was started: exit status 0, nothing of the instance left running."""
    assert env.demo is not None and env.demo.proc.poll() is not None, "runs after the stop"
    before = (read_status(env.cfg) or {}).get("supervisor_pid")
    demo = env.start(market_maker=False)
    deadline = time.monotonic() + 30
    while True:  # its supervisor is up, and not running yet
        status = read_status(env.cfg) or {}
        if status.get("supervisor_pid") not in (None, before):
            assert status["state"] != "running", "started before the test could interrupt it"
            break
        assert demo.proc.poll() is None, demo.text()
        assert time.monotonic() < deadline, "no supervisor within 30 s"
        time.sleep(0.02)
    rc = demo.ctrl_c(timeout=120)
    time.sleep(1.0)  # a supervisor left behind would still be coming up
    assert_nothing_left(env.cfg, env.directory)
    assert rc == 0, demo.text()


def test_a_second_make_run_works_after_it(env: Env) -> None:
    """After those stops, `make run` again: it runs, and a Ctrl-C stops it cleanly, a second
    Ctrl-C while it stops notwithstanding."""
    demo = env.start(market_maker=False)
    again = Printed.parse(demo.wait_ready())
    assert again.users == {"DEMO1": "demo1", "DEMO2": "demo2"}
    assert demo.ctrl_c(again_after=0.3) == 0, demo.text()
    assert "Traceback" not in demo.text(), demo.text()
    assert_nothing_left(env.cfg, env.directory)
