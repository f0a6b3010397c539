"""Review 113: two parts of README.md held to the code, mechanically: the ``gateway (HTTP)`` row
of "## The processes" (``procs/gateway/rest.py`` and what it wires: ``rest_wiring.py``,
``signing.py``, ``history.py``, ``rest_history.py``, ``live_trades.py``,
``unfiled_orders.py``, ``private_stream.py``, ``openapi.py``, the config's ``[gateways.rest]``),
and "## Two commands (and a variant)". This file: the row, and what ``make test`` and ``make
run`` do on a fresh machine (the Makefile run dry with ``make -n -B``: every target out of
date, nothing run but its ``$(shell ...)``; its ``PYTEST_WORKERS`` program; ``pyproject.toml``).
``test_review113_readme_http_row2.py`` has the rest of the section: the suite's skips,
workers, instances, clusters and hang timer, ``.ci/run``, the demo ``make run`` starts, the
``MM=1`` market maker, ``ringex admin add-user``, the profile without a database and ``make
ring-demo``. The section "### The REST API and the private stream" is review 106's and is not
redone here.

Convention (reviews 104-112's, with ``tests/readme_text.py``): each claim is found in the
README by a quote (whitespace folded, a ```sh block's ``#`` comment lines joined), so a
reworded claim fails loudly; a claim checked and found right is a plain test, a disagreement a
strict xfail asserting what the README says. Everything runs in process (a ``RestApi`` made
and never started, its routes called with mocked requests and a stood-in ``History``), but for
one short scenario against an in-process exchange (``rest_rig.py``: rings, router, matcher, a
REST gateway on free ports, no database).

Disagreement found (one, fixed on the README side since; none in part 2):

- the row says the process serves ``/api/v1`` "(aiohttp on the same loop)", but with the
  default ``fast_lane = true`` (``config/edges.py``) ``RestApi.start`` listens with
  ``FastLane`` (``rest_fast.py``), which parses and answers ``POST``, ``DELETE`` and ``GET
  /api/v1/order`` off httptools, handing the rest to aiohttp (as Layout and the REST
  subsection say): README side, the row should name the fast lane.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from config import load_profile
from config.edges import GatewayConfig, RestConfig
from config.schema import DatabaseConfig, RingexConfig
from procs.common import embedded_postgres
from procs.common.apikeys import SCOPES, ApiKey
from procs.common.records import NewOrder, Trade, WatchBalances
from procs.common.run_files import run_dir
from procs.common.topology import apikeys_path, gateway_commands, postgres_dir, users_path
from procs.common.types import Side
from procs.common.users import UserStore
from procs.gateway import history as history_module
from procs.gateway import signing
from procs.gateway.api_errors import ApiError
from procs.gateway.instruments import Instruments
from procs.gateway.private_stream import PATH as STREAM_PATH
from procs.gateway.rest import RestApi, history_dsn
from procs.gateway.rest_history import HistoryRoutes
from procs.gateway.rest_order_state import LiveOrder
from procs.gateway.rest_orders import RestOrders
from procs.gateway.rest_wiring import RestWiring
from procs.gateway.server import GatewayServer
from procs.supervisor.plan import plan
from tests.readme_text import README, ROOT, claim, section
from tests.unit.gateway import rest_rig
from tests.unit.gateway.harness import Harness, config, utc

ROW = next(line for line in README.splitlines() if line.startswith("| gateway (HTTP) |"))
TWO = section("Two commands (and a variant)")
V1 = "/api/v1"


def row(quote: str) -> None:
    claim(quote, ROW, where="README's gateway (HTTP) row")


def two(quote: str) -> None:
    claim(quote, TWO, where="README's 'Two commands (and a variant)'", comments=True)


# -- a RestApi made, never started ------------------------------------------------------------


def _cfg(tmp_path: Path, **changes: Any) -> RingexConfig:
    cfg = config("r113", tmp_path, rest=RestConfig(port=0))
    changes.setdefault("database", DatabaseConfig(enabled=False))
    return msgspec.structs.replace(cfg, **changes)


def _api(tmp_path: Path) -> RestApi:
    """A ``RestApi`` with a real ``RestOrders`` core on a list of its own (no rings)."""
    cfg = _cfg(tmp_path)
    gw = cfg.gateways[0]
    assert gw.rest is not None
    core = RestOrders(1, Instruments(cfg.symbols), cfg.assets, [], itertools.count(1).__next__)
    return RestApi(cfg, gw, gw.rest, core, UserStore(users_path(cfg)), lambda: None)


def _routes(api: RestApi) -> set[tuple[str, str]]:
    return {(r.method, r.resource.canonical) for r in api.app.router.routes() if r.resource}


KEY = ApiKey("k" * 32, "ab" * 32, "ALICE", 601, 1, ["read"], 0)


def _request(path: str, query: str = "") -> web.Request:
    return make_mocked_request("GET", f"{path}?{query}" if query else path)


class FakeHistory:
    """``History`` as the routes ask it: the writer's checkpoint, and no rows filed."""

    def __init__(self, filed: int) -> None:
        self.filed = filed

    async def filed_seq(self) -> int:
        return self.filed

    async def trades(self, *args: Any, **kw: Any) -> list[Any]:
        return []

    async def orders(self, *args: Any, **kw: Any) -> list[Any]:
        return []


def _history_api(tmp_path: Path, filed: int) -> RestApi:
    api = _api(tmp_path)
    api.history = cast(Any, FakeHistory(filed))

    async def signed(request: Any, scope: str) -> ApiKey:
        return KEY

    api.signed = signed  # type: ignore[method-assign]
    return api


def _json(response: web.StreamResponse) -> Any:
    assert isinstance(response, web.Response) and response.body is not None
    return msgspec.json.decode(cast(bytes, response.body))


# == (a) the gateway (HTTP) row =================================================================


def test_the_rows_module_is_the_rest_api() -> None:
    """Row: "| gateway (HTTP) | `procs/gateway/rest.py` |": the module exists and holds
    ``RestApi``, which the gateway's wiring (``rest_wiring.py``) makes."""
    row("| gateway (HTTP) | `procs/gateway/rest.py` |")
    assert (ROOT / "procs/gateway/rest.py").is_file()
    assert RestApi.__module__ == "procs.gateway.rest"
    assert "RestApi(cfg, gw, gw.rest" in (ROOT / "procs/gateway/rest_wiring.py").read_text()


def test_with_gateways_rest_and_only_then(tmp_path: Path) -> None:
    """Row: "with `[gateways.rest]`": the table ``[gateways.rest]`` of a ``[[gateways]]``
    loads into ``GatewayConfig.rest`` (None without it), and ``RestWiring._rest_api`` makes no
    API for a gateway without one."""
    row("with `[gateways.rest]`, the same process serves `/api/v1`")
    profile = tmp_path / "p.toml"
    profile.write_text('[[gateways]]\nname = "g"\nid = 1\n[gateways.rest]\nport = 8181\n')
    assert load_profile(str(profile)).gateways[0].rest == RestConfig(port=8181)
    profile.write_text('[[gateways]]\nname = "g"\nid = 1\n')
    gw = load_profile(str(profile)).gateways[0]
    assert gw.rest is None and GatewayConfig(name="g", id=1).rest is None
    assert RestWiring._rest_api(cast(Any, None), _cfg(tmp_path), gw) is None


def test_the_same_process_serves_it(tmp_path: Path) -> None:
    """Row: "the same process serves `/api/v1`": the supervisor's plan has one process per
    gateway, a REST port or not (none of its own for HTTP), and that process's
    ``GatewayServer`` is the ``RestWiring`` that makes the API."""
    row("the same process serves `/api/v1`")
    cfg = _cfg(tmp_path)
    without = msgspec.structs.replace(cfg, gateways=[GatewayConfig(name="gw1", id=1, port=0)])
    with_rest, no_rest = [s.name for s in plan(cfg)], [s.name for s in plan(without)]
    assert with_rest == no_rest and with_rest.count("gateway-gw1") == 1
    assert issubclass(GatewayServer, RestWiring)


def test_every_route_is_under_api_v1_but_the_document(tmp_path: Path) -> None:
    """Row: "serves `/api/v1` ... `/openapi.json`": every route the app registers is under
    ``/api/v1/``, but ``GET /openapi.json``; the app is aiohttp's."""
    row("`/openapi.json` |")
    api = _api(tmp_path)
    assert isinstance(api.app, web.Application)
    paths = {p for _, p in _routes(api)}
    assert {p for p in paths if not p.startswith(f"{V1}/")} == {"/openapi.json"}
    assert ("GET", "/openapi.json") in _routes(api)


def test_the_fast_lanes_routes_are_the_same_handlers(tmp_path: Path) -> None:
    """Row: "every other request by aiohttp": what the fast lane serves itself are order
    routes aiohttp also routes, to the same handlers (the rest of ``/api/v1`` is aiohttp's)."""
    row("the default, and POST and DELETE `/api/v1/batchOrders`; every other request by")
    api = _api(tmp_path)
    assert set(api.fast_routes) <= _routes(api)
    assert {p for _, p in api.fast_routes} == {f"{V1}/order", f"{V1}/batchOrders"}


def test_the_fast_lane_serves_the_order_requests_by_default(tmp_path: Path) -> None:
    """Row: "serves `/api/v1` (on the same loop: the order requests, POST, DELETE and GET
    `/api/v1/order`, off httptools in the port's fast lane, ... with `fast_lane` on, the
    default; every other request by aiohttp)" (review 113: the row said aiohttp alone)."""
    row("the order requests, POST, DELETE and GET `/api/v1/order`, off httptools in the port's")
    row("fast lane, `rest_fast.py`, with `fast_lane` on, the default, and POST")
    api = _api(tmp_path)
    assert api.rest.fast_lane and api.fast_routes


def test_api_keys_have_scopes(tmp_path: Path) -> None:
    """Row: "API keys with scopes": a key's scopes are ``read`` and ``trade``; a request
    needing one the key lacks is a 403 naming it, one it has passes."""
    row("API keys with scopes")
    assert frozenset({"read", "trade"}) == SCOPES
    api = _api(tmp_path)
    api.require_scope(KEY, "read")
    with pytest.raises(ApiError) as refused:
        api.require_scope(KEY, "trade")
    assert refused.value.status == 403 and "'trade' is needed" in str(refused.value.body()["msg"])


def test_requests_are_hmac_signed() -> None:
    """Row: "HMAC-signed requests": ``signing.sign`` is HMAC-SHA256 over the request, and the
    ``Verifier`` takes a request so signed and refuses one whose signature is not."""
    row("HMAC-signed requests")
    now = 1_700_000_000_000
    args = (now, 5_000, "POST", f"{V1}/order", "", b"symbol=BTC-USD")
    good = signing.sign("s3cret", *args)
    assert len(good) == 64 and set(good) <= set("0123456789abcdef")
    verifier = signing.Verifier(60_000, 5_000, not_before_ms=now - 1)
    request = ("POST", f"{V1}/order", "", b"symbol=BTC-USD", now)
    verifier.check("s3cret", str(now), "5000", good, *request)
    bad = good[:-1] + ("0" if good[-1] != "0" else "1")
    with pytest.raises(signing.AuthError) as refused:
        verifier.check("s3cret", str(now), "5000", bad, *request)
    assert refused.value.code == signing.BAD_SIGNATURE


def test_orders_go_into_the_fix_order_entrys_ring(instance: str, tmp_path: Path) -> None:
    """Row: "orders through the same ring as FIX": the REST core's ``outgoing`` is the FIX
    order entry's list, which ``GatewayServer.publish`` puts in the gateway's one command
    ring (``gw<N>-cmd``)."""
    row("orders through the same ring as FIX")
    h = Harness(config(instance, tmp_path, rest=RestConfig(port=0)))
    try:
        gw = GatewayServer(h.cfg, "gw1")
        try:
            assert gw.api is not None and gw.api.core.outgoing is gw.entry.outgoing
            assert gw.producer.ring.name == gateway_commands(1) == "gw1-cmd"
        finally:
            gw.close()
    finally:
        h.close()


def test_balances_are_asked_of_the_router(tmp_path: Path) -> None:
    """Row: "balances from the router": an account's first balance request puts a
    ``WatchBalances`` (the router's snapshot, then its pushes) in the commands to the router,
    and waits for it (a ref, no balances made up)."""
    row("balances from the router")
    core = _api(tmp_path).core
    answer = core.account_balances(601)
    assert isinstance(answer, int)
    assert [type(r) for r in core.outgoing] == [WatchBalances]
    assert cast(WatchBalances, core.outgoing[0]).account == 601


def test_history_is_postgresql(tmp_path: Path) -> None:
    """Row: "history from PostgreSQL": ``History`` queries through a psycopg pool of the
    dsn; ``history_dsn`` is ``database.dsn``, none without a database, else the embedded
    cluster's socket under ``var/<instance>/pg``."""
    row("history from PostgreSQL")
    assert vars(history_module)["AsyncConnectionPool"].__module__.startswith("psycopg_pool")
    cfg = _cfg(tmp_path)
    assert history_dsn(cfg) is None
    dsn = "host=db.example dbname=x"
    assert history_dsn(msgspec.structs.replace(cfg, database=DatabaseConfig(dsn=dsn))) == dsn
    if embedded_postgres.find_bin_dir() is not None:
        embedded = history_dsn(msgspec.structs.replace(cfg, database=DatabaseConfig()))
        # (as root the cluster may live outside, var/<instance>/pg a link to it)
        assert embedded is not None and f"host={postgres_dir(cfg).resolve()}/data " in embedded


def _trade(seq: int) -> Trade:
    return Trade(
        seq, 1_700_000_000_000_000_000, 77, 1, 10_000, 10, Side.BUY,
        5, 602, 1, 0, 6, 601, 1, 0,
    )  # fmt: skip


@pytest.mark.parametrize(("filed", "listed"), [(0, [77]), (50, [])])
def test_my_trades_has_the_fills_seen_that_the_writer_has_not_filed(
    tmp_path: Path, filed: int, listed: list[int]
) -> None:
    """Row: "`myTrades` with the fills it saw ... that the writer has not filed yet": the
    route adds to the database's rows (none here) a fill the gateway saw while the writer's
    checkpoint is below its seq, and drops it once the checkpoint passes it."""
    row("(`myTrades` with the fills it saw, `allOrders` with the orders it saw change, that "
        "the writer has not filed yet)")  # fmt: skip
    api = _history_api(tmp_path, filed)
    api.core.trades.add(_trade(seq=50), 601, 6, maker=False)
    answer = asyncio.run(HistoryRoutes(api).my_trades(_request(f"{V1}/myTrades", "symbol=BTC-USD")))
    assert [t["id"] for t in _json(answer)] == listed
    assert len(api.core.trades) == len(listed)


@pytest.mark.parametrize(("filed", "listed"), [(0, [9]), (40, [])])
def test_all_orders_has_the_orders_seen_change_that_the_writer_has_not_filed(
    tmp_path: Path, filed: int, listed: list[int]
) -> None:
    """Row: "`allOrders` with the orders it saw change, that the writer has not filed yet":
    an order whose last change (seq 40) the gateway saw is listed over the database's rows
    while the writer's checkpoint is below it, and let go once it is not."""
    row("`allOrders` with the orders it saw change, that the writer has not filed yet")
    api = _history_api(tmp_path, filed)
    sym = api.cfg.symbols[0]
    order = LiveOrder(9, 601, sym, 1, "LIMIT", 1, 10_000, 0, 10, 0, 10, status="FILLED")
    api.core.unfiled.changed(order, 40)
    query = "symbol=BTC-USD"
    answer = asyncio.run(HistoryRoutes(api).all_orders(_request(f"{V1}/allOrders", query)))
    assert [o["orderId"] for o in _json(answer)] == listed
    assert len(api.core.unfiled) == len(listed)


def test_the_private_stream_is_at_api_v1_stream(tmp_path: Path) -> None:
    """Row: "the private stream `/api/v1/stream`": ``private_stream.PATH`` is it, and the app
    routes a GET there to the streams' handler."""
    row("the private stream `/api/v1/stream`")
    assert f"{V1}/stream" == STREAM_PATH
    api = _api(tmp_path)
    handlers = {
        (r.method, r.resource.canonical): r.handler for r in api.app.router.routes() if r.resource
    }
    assert handlers[("GET", STREAM_PATH)] == api.streams.handle


def test_a_rest_gateway_serves_it_all_on_one_loop(instance: str, tmp_path: Path) -> None:
    """Row, end to end in one process (``rest_rig``): the REST port and the FIX port listen on
    the one running loop; an order over REST and one over FIX both go out in the gateway's
    command batches, which hold the ``WatchBalances`` that ``GET account``'s balances come
    from (the router's: the funded dollars); the private stream opens at ``/api/v1/stream``
    with its snapshot, and ``/openapi.json`` is the document. Two Commands: "The same
    SenderCompID (the username, then) and the password log in over FIX (Password 554) and to
    the REST API (`POST /api/v1/apiKey`, its `username`)"."""
    row("orders through the same ring as FIX, balances from the router")
    two("The SenderCompID (the username, then) and the password log in over FIX (Password "
        "554) and to the REST API (`POST /api/v1/apiKey`, its `username`)")  # fmt: skip
    sent: list[Any] = []

    async def scenario(api: RestApi, url: str) -> None:
        gw = h.gateway
        assert gw is not None and gw._server is not None
        loop = asyncio.get_running_loop()
        listeners = [s for s in (api._fast_server, api._plain_server) if s is not None]
        assert listeners == [api._fast_server]  # the default: the fast lane (see the xfail)
        assert [s.get_loop() for s in listeners] == [loop] and gw._server.get_loop() is loop
        publish = gw.publish

        def spy() -> None:
            sent.extend(gw.entry.outgoing)
            publish()

        gw.publish = spy  # type: ignore[method-assign]
        alice = await rest_rig.client(url, "ALICE", "alice-pw")
        fix = await rest_rig.fix_user(h, "ALICE", "alice-pw")
        try:
            await alice.call("POST", f"{V1}/order", **rest_rig.LIMIT, price="10.00",
                             quantity="0.10", timeInForce="GTC")  # fmt: skip
            await fix.send("D", (11, "fix-1"), (55, "BTC-USD"), (54, "1"), (38, "0.10"),
                           (40, "2"), (44, "10.00"), (59, "1"), (60, utc()))  # fmt: skip
            assert (await fix.expect("8")).get(39) == b"0"
            account = await alice.call("GET", f"{V1}/account")
            usd = next(b for b in account["balances"] if b["asset"] == "USD")
            assert Decimal(usd["free"]) + Decimal(usd["locked"]) == 1_000_000
            ws = await alice.stream()
            first = await ws.receive(timeout=5)
            assert first.type is aiohttp.WSMsgType.TEXT and '"snapshot"' in first.data
            await ws.close()
            document = await alice.call("GET", "/openapi.json", signed=False)
            assert "openapi" in document and f"{V1}/order" in document["paths"]
        finally:
            await alice.close()

    gen = rest_rig.rest_exchange(instance, tmp_path)
    h = next(gen)
    try:
        rest_rig.run(h, scenario)
    finally:
        next(gen, None)
    orders = [r for r in sent if isinstance(r, NewOrder)]
    assert {r.account for r in orders} == {rest_rig.ALICE} and len(orders) == 2
    assert len({r.session for r in orders}) == 1  # the one user's, over REST and over FIX
    assert any(isinstance(r, WatchBalances) and r.account == rest_rig.ALICE for r in sent)


# == (b) Two commands (and a variant) ===========================================================

#: Make variables a caller's environment could set, and make's own: a clean dry run.
_MAKE_ENV = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PYTEST_WORKERS", "PROFILE", "MM", "PYTHON")

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="no make")


def dry_run(*args: str) -> list[str]:
    """The commands ``make -n -B ARGS`` prints (every target out of date: a fresh machine),
    backslash-continued lines joined; nothing is run but the Makefile's ``$(shell ...)``."""
    env = {k: v for k, v in os.environ.items() if k not in _MAKE_ENV}
    done = subprocess.run(
        ["make", "-n", "-B", *args], cwd=ROOT, env=env, capture_output=True, text=True,
        check=True, timeout=60,
    )  # fmt: skip
    return [line.strip() for line in done.stdout.replace("\\\n", " ").splitlines()]


def _index(lines: list[str], needle: str) -> int:
    return next(i for i, line in enumerate(lines) if needle in line)


INSTALL = (
    # (a venv without pip is made again: review 189)
    ".venv/bin/python -m pip --version >/dev/null 2>&1 || python3 -m venv --clear .venv",
    ".venv/bin/python -m pip install --quiet -c constraints.txt -e '.[dev]'",
)


def test_a_fresh_machine_with_python_3_11() -> None:
    """Two commands: "On a fresh Linux machine with Python >= 3.11": pyproject requires it,
    and the venv is made with the system's ``python3``."""
    two("On a fresh Linux machine with Python >= 3.11 (x86-64)")
    assert 'requires-python = ">=3.11"' in (ROOT / "pyproject.toml").read_text()
    assert re.search(r"^PYTHON \?= python3$", (ROOT / "Makefile").read_text(), re.M)


@needs_make
def test_make_test_installs_then_lints_types_and_tests() -> None:
    """``make test # creates .venv, installs ringex with its dev extra (and, via apt when
    missing, PostgreSQL ... and chromium ...), runs ruff, mypy and pytest``: on a fresh
    machine, in that order: the venv, the editable install with ``[dev]``, ruff, mypy, the apt
    step, pytest."""
    two("make test # creates .venv, installs ringex with its dev extra (and, via apt when "
        "missing, PostgreSQL for the database tests and chromium for the page test), runs ruff, "
        "mypy and pytest")  # fmt: skip
    lines = dry_run("test")
    order = [
        *INSTALL, ".venv/bin/ruff check .", ".venv/bin/mypy", "apt-get install -y -qq postgresql",
        "apt-get install -y -qq chromium", ".venv/bin/python -m pytest",
    ]  # fmt: skip
    at = [_index(lines, step) for step in order]
    assert at == sorted(at)


@needs_make
def test_the_apt_step_installs_only_what_is_missing() -> None:
    """ "via apt when missing": each install is behind a look for the binary (``initdb``, in
    PATH or /usr/lib/postgresql; ``chromium`` or ``chromium-browser``), the places the suite
    looks (``find_bin_dir``, ``tests/unit/marketdata/chromium.py``)."""
    two("via apt when missing")
    lines = dry_run("system-deps")
    pg = next(line for line in lines if "postgresql >/dev/null" in line)
    assert pg.startswith(
        "command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 ||"
    )
    chromium = next(line for line in lines if "-qq chromium" in line)
    assert chromium.startswith(
        "command -v chromium >/dev/null || command -v chromium-browser >/dev/null ||"
    )
    looks = (ROOT / "tests/unit/marketdata/chromium.py").read_text()
    assert 'shutil.which("chromium") or shutil.which("chromium-browser")' in looks
    assert "/usr/lib/postgresql/*/bin/initdb" in Path(embedded_postgres.__file__).read_text()


@pytest.mark.parametrize(("cpus", "workers"), [(1, "0"), (2, "3"), (3, "4"), (16, "4")])
def test_a_worker_more_than_the_cpus_where_there_are_two(
    cpus: int, workers: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """ "(in a worker more than there are CPUs, at most four, where there are two or more
    ...)": the Makefile's ``PYTEST_WORKERS`` program, run with ``cpus`` CPUs, prints 0 (no
    xdist) for one, else the CPUs and one, at most 4."""
    two("in a worker more than there are CPUs, at most four, where")
    program = re.search(r"^PYTEST_WORKERS \?= \$\(shell \$\(PYTHON\) -c '(.*)'\)$",
                        (ROOT / "Makefile").read_text(), re.M)  # fmt: skip
    assert program is not None
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    exec(program[1], {})
    assert capsys.readouterr().out.strip() == workers


@needs_make
def test_pytest_workers_0_runs_one_process_and_workers_take_whole_files() -> None:
    """ "`make test PYTEST_WORKERS=0` runs one process", "each taking whole test files": the
    pytest line is ``-n 0`` then, and ``--dist loadfile`` always; xdist and pytest-timeout are
    in the dev extra."""
    two("`make test PYTEST_WORKERS=0` runs one process")
    two("each taking whole test files")
    line = dry_run("pytest", "PYTEST_WORKERS=0")[-1]
    assert line == ".venv/bin/python -m pytest -q -n 0 --dist loadfile --durations=25"
    # and a crashed (hung) worker is replaced: no ``--max-worker-restart 0``, no ``-x``
    assert "--max-worker-restart" not in line and " -x" not in line
    dev = (ROOT / "pyproject.toml").read_text()
    assert '"pytest-xdist>=' in dev and '"pytest-timeout>=' in dev


@needs_make
def test_make_run_installs_the_same_then_runs_the_demo() -> None:
    """ "Both install the same on first use: `make run` too creates `.venv` with the dev extra
    and runs the apt step"; ``make run`` is "the exchange with the dev profile": the same
    install and apt lines as ``make test``, then ``run_demo.py --profile dev``."""
    two("Both install the same on first use: `make run` too creates `.venv` with the dev extra "
        "and runs the apt step")  # fmt: skip
    run, test = dry_run("run"), dry_run("test")
    steps = [
        line for line in run if "pip install" in line or "apt-get" in line or "-m venv" in line
    ]
    assert steps == [line for line in test if line in steps] and len(steps) >= 4
    assert run[-1] == ".venv/bin/python scripts/run_demo.py --profile dev"


@needs_make
@pytest.mark.parametrize(
    ("args", "command"),
    [
        (("MM=1",), "--profile dev --market-maker"),
        (("PROFILE=my.toml",), "--profile my.toml"),
        (("PROFILE=nodb.toml",), "--profile nodb.toml"),
    ],
)
def test_the_variant_and_another_profile(args: tuple[str, ...], command: str) -> None:
    """ "make run MM=1 # ... and a demo market maker", "`make run PROFILE=my.toml` runs
    another profile": the demo's arguments."""
    two("make run MM=1 # ... and a demo market maker")
    two("`make run PROFILE=my.toml` runs another profile")
    assert dry_run("run", *args)[-1] == f".venv/bin/python scripts/run_demo.py {command}"


@needs_make
def test_venv_only_installs_and_system_deps_only_runs_apt() -> None:
    """ "`make lint`, `make typecheck` and `make pytest` are `make test`'s steps; `make venv`
    only installs, and `make system-deps` only runs the apt step"."""
    two("`make lint`, `make typecheck` and `make pytest` are `make test`'s steps; `make venv` "
        "only installs, and `make system-deps` only runs the apt step")  # fmt: skip
    venv = dry_run("venv")
    assert all(step in "\n".join(venv) for step in INSTALL)
    assert not [line for line in venv if "apt-get" in line or "pytest" in line or "ruff" in line]
    deps = dry_run("system-deps")
    assert [line for line in deps if "apt-get install" in line] and not [
        line for line in deps if "pip" in line or "venv" in line
    ]
    assert dry_run("test") == dry_run("lint", "typecheck", "pytest")


@needs_make
def test_make_clean_removes_venv_and_var_where_every_instance_keeps_its_files() -> None:
    """ "`make clean` removes `.venv` **and `var/`**: every instance's journal, snapshots,
    logs, users, API keys and embedded database, and the benchmark results": the recipe
    removes both, and the dev profile's files are all under ``var/``."""
    two("`make clean` removes `.venv` **and `var/`**: every instance's journal, snapshots, "
        "logs, users, API keys and embedded database, and the benchmark results")  # fmt: skip
    assert dry_run("clean")[0].startswith("rm -rf .venv var ")
    cfg = load_profile("dev")
    assert cfg.var_dir == "var"
    for path in (users_path(cfg), apikeys_path(cfg), postgres_dir(cfg), run_dir(cfg)):
        assert path.parts[:2] == ("var", "dev"), path
    assert 'default="var/bench/db.json"' in (ROOT / "tests/bench/bench_db.py").read_text()
