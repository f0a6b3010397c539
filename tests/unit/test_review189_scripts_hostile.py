"""Review 189 (a helper, hostile): the operator-facing scripts and the build.

Reviewed: ``scripts/systemd_units.py`` (unit and slice names, the ``systemd-run`` argv, the
properties, the environment, the watchdog against ``procs/common/sd_notify.py`` and where each
process sends READY=1), ``scripts/market_maker.py`` (units and ticks, sizes against the
symbol's limits, rejects, disconnects, its exit), ``scripts/run_demo.py`` (what it prints,
what it stops on Ctrl-C, on an error mid-start, on a hang-up), ``scripts/ring_demo.py``,
``scripts/fix44_dictionary.py``, the Makefile, ``.ci/run``, ``pyproject.toml``'s pytest
settings and ``constraints.txt``; README's "Two commands", "Production with systemd" and
"Benchmarks" for what they promise.

Faults, all eight fixed as suggested (their tests, below, pass now; each says "Was (fixed)"):

1. ``Makefile:14`` (``test -x $(PY) || $(PYTHON) -m venv $(VENV)``): a venv that
   ``python3 -m venv`` left without pip (Debian without ``python3-venv``, which the README
   says nothing here installs) is never made again: once the package is installed, every
   ``make test`` / ``make run`` fails on "No module named pip" until ``make clean``. Fix:
   ``$(PY) -m pip --version >/dev/null 2>&1 || $(PYTHON) -m venv --clear $(VENV)``.
   (``test_a_venv_left_without_pip_is_made_again``)
2. ``Makefile:90,96,99`` (``bench-pipeline``, ``bench-soak``, ``bench-db``): they run the
   embedded PostgreSQL (bench-pipeline with the database writer unless ``--no-database``)
   but depend on ``$(STAMP)`` alone, not on ``system-deps`` as ``run`` and ``pytest`` do: on
   the fresh machine the README starts from, ``make bench`` stops at bench-db with "no
   PostgreSQL binaries". Fix: ``bench-db bench-pipeline bench-soak: $(STAMP) system-deps``.
   (``test_the_benches_that_run_postgresql_install_it_first``)
3. ``scripts/market_maker.py:84-97`` (``Market.from_info``/``size``): ``maxQty`` from
   ``exchangeInfo`` is never read, so a quote or the taker's IOC of a symbol whose maxQty is
   below ~9,000 quote units at its mid is refused every cycle (a symbol of another profile
   starts at the default mid 100: 10 to 90 units). Fix: keep ``max_qty`` and clamp ``size``
   to it. (``test_sizes_stay_within_the_symbols_max_qty``)
4. ``scripts/market_maker.py:405-407``: both logins run before the ``try`` whose ``finally``
   revokes the keys and closes the sessions: a taker login that fails (a wrong MM2 password,
   the 30 s wait over) leaves the maker's API key live and its session unclosed. Fix: log
   in inside the ``try`` (or revoke what logged in).
   (``test_a_failed_taker_login_revokes_the_makers_key``)
5. ``scripts/market_maker.py:422-428``: the startup ``cancel_all`` loop retries on
   ``ApiCallError`` only; a dropped connection or a timeout (``ClientError``, ``OSError``),
   which ``run`` retries, ends the bot with a traceback while ``run_demo`` goes on saying it
   quotes. Fix: catch ``(ApiCallError, ClientError, OSError)`` there as ``run`` does.
   (``test_a_dropped_connection_at_startup_is_retried``)
6. ``scripts/run_demo.py:164-165``: SIGINT and SIGTERM stop the exchange, SIGHUP (the
   terminal or the ssh session closed under ``make run``) kills the demo outright: the
   exchange, which ``start_exchange`` put in a session of its own, its embedded PostgreSQL
   and the market maker's quotes stay behind. Fix: add ``signal.SIGHUP`` to that loop (and
   to ``ignore_interrupts``). (``test_a_hangup_stops_the_exchange``)
7. ``scripts/run_demo.py:173-199``: only ``cfg.gateways[0]`` is looked at: with a REST API on
   another gateway the demo prints no REST URL and says "No market maker: it trades over the
   REST API, which this profile lacks", while ``market_maker.default_url`` would find that
   one. Fix: take the first gateway with ``rest`` for both.
   (``test_a_rest_api_on_the_second_gateway_is_printed_and_traded_through``)
8. ``scripts/run_demo.py:177-179``: a gateway with ``tls_cert`` is printed as ``host H port
   P`` like a plain one (the REST line does switch to https): a newcomer's plain FIX client
   gets a TLS handshake it cannot read. Fix: say "(TLS)" on that line when ``tls_cert`` is
   set. (``test_a_tls_fix_port_is_printed_as_tls``)

Checked and found right (plain tests): slice names are ``systemd-escape``'s, unit names are
valid non-template service names (``systemd-escape --mangle`` leaves them), the ``systemd-run``
argv keeps a path with spaces and ``$`` whole (the ``$`` doubled), CPUAffinity, Type,
NotifyAccess, TimeoutStartSec and ``--no-block`` by whether the supervisor waits;
``sd_notify.petting`` sends READY=1 before the first ping and pings at half the timeout, not
for a child; each process sends READY=1 after its ready ring or listener (read, not run);
the market maker's units, ticks and lots; ``run_demo`` stopping the exchange on a Ctrl-C
during the start and on an error while adding users; ``.ci/run`` ends in ``make test``; the
pytest settings cannot pass on an empty or broken collection.

Leads suspected, not shown: the matcher's ``publish_batch`` (``shm/producer.py``
``_await_space``) and ``save_snapshot`` do not pet the watchdog, so a matcher held more than
``WatchdogSec`` by a full output ring (the market-data unit restarting into a long recovery)
is killed and restarted though healthy (was, for the wait: fixed, ``Producer.on_wait``, which
the matcher sets to pet the watchdog;
``test_a_producer_waiting_for_room_calls_its_on_wait``); ``run_demo.start_market_maker``
returns the child only after its print, so a Ctrl-C in between orphans a market maker that
retries for ever;
``fix44_dictionary.py`` tests Elements for truth (``root.find(...) or ...``), which Python
3.12+ warns of; the FIX line prints an empty ``host`` for ``host = ""``; ``make venv``'s
``pip install --upgrade pip`` is not held by constraints.txt.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import msgspec
import pytest
from aiohttp import ClientConnectionError

from config import load_profile
from procs.common import sd_notify
from procs.gateway.rest_client import ApiCallError
from procs.supervisor.plan import plan
from shm import Ring, StructCodec, wait_strategy
from tests.scripts_loader import load_script

ROOT = Path(__file__).parents[2]
units: Any = load_script("systemd_units", "review189")
mm: Any = load_script("market_maker", "review189")


@pytest.fixture
def demo() -> Any:
    return load_script("run_demo", "review189")


@pytest.fixture
def handlers_kept() -> Iterator[None]:
    """``main_async`` adds loop signal handlers whose removal resets SIGINT and SIGTERM: put
    this process's own back."""
    kept = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, handler in kept.items():
        signal.signal(s, handler)


# -- the Makefile and CI ------------------------------------------------------------------------


def _rule(target: str) -> list[str]:
    text = (ROOT / "Makefile").read_text()
    found = re.search(rf"^{re.escape(target)}:([^\n]*)$", text, re.M)
    assert found is not None, target
    return found.group(1).split()


def test_a_venv_left_without_pip_is_made_again(tmp_path: Path) -> None:
    """Was (fixed). A venv without pip (what ``python3 -m venv`` leaves where ensurepip is missing)
    is made again by ``make venv``, not used as it is. Run offline: the install after it fails, what
    counts is that the venv has pip by then."""
    python = shutil.which("python3")
    if python is None or shutil.which("make") is None:
        pytest.skip("no python3 or make here")
    for name in ("Makefile", "pyproject.toml", "constraints.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    subprocess.run([python, "-m", "venv", "--without-pip", ".venv"], cwd=tmp_path, check=True)
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run(
        ["make", "venv", f"PYTHON={python}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    pip = subprocess.run(
        [str(tmp_path / ".venv/bin/python"), "-m", "pip", "--version"],
        capture_output=True,
        check=False,
    )
    assert pip.returncode == 0, pip.stderr.decode()


def test_the_benches_that_run_postgresql_install_it_first() -> None:
    """Was (fixed). ``make run`` and ``make pytest`` run the apt step first; the benches that start
    the embedded PostgreSQL (bench-db; bench-pipeline and bench-soak with the database writer unless
    ``--no-database``) do not."""
    assert "system-deps" in _rule("run") and "system-deps" in _rule("pytest")
    missing = [
        t for t in ("bench-db", "bench-pipeline", "bench-soak") if "system-deps" not in _rule(t)
    ]
    assert missing == []


def test_ci_runs_make_test_and_the_suite_cannot_pass_empty() -> None:
    """``.ci/run`` is ``make test`` under ``set -e``; ``make test`` is lint, typecheck and
    pytest; pytest's settings refuse an unknown marker, keep collection errors fatal (no
    ``--continue-on-collection-errors``) and deselect only ``long``; every file holding
    tests is one pytest collects."""
    ci = (ROOT / ".ci/run").read_text().splitlines()
    assert "set -euo pipefail" in ci and ci[-1].strip() == "make test"
    assert _rule("test") == ["lint", "typecheck", "pytest"]
    assert _rule("$(STAMP)") == ["pyproject.toml", "constraints.txt"]
    opts = load_pyproject()["tool"]["pytest"]["ini_options"]
    assert "--strict-markers" in opts["addopts"]
    assert "continue-on-collection-errors" not in opts["addopts"]
    assert opts["addopts"].endswith("-m 'not long'") and opts["testpaths"] == ["tests"]
    stray = [
        p
        for p in (ROOT / "tests").rglob("*.py")
        if re.search(r"^(async )?def test_", p.read_text(), re.M)
        and not (p.name.startswith("test_") or p.name.endswith("_test.py"))
    ]
    assert stray == []


def load_pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


# -- systemd units -------------------------------------------------------------------------------


def _cfg(instance: str = "dev", **supervisor: Any) -> Any:
    cfg = load_profile("dev")
    sup = msgspec.structs.replace(cfg.supervisor, **supervisor)
    return msgspec.structs.replace(cfg, instance=instance, supervisor=sup)


@pytest.mark.skipif(shutil.which("systemd-escape") is None, reason="no systemd-escape here")
def test_slice_and_unit_names_are_systemds() -> None:
    """The slice is ``ringex-<systemd-escape instance>.slice``; each unit name is a valid,
    non-template service name that ``systemd-escape --mangle`` leaves as it is."""
    for instance in ("dev", "prod-a", "A_b-1", "x" * 48):
        cfg = _cfg(instance)
        esc = subprocess.run(
            ["systemd-escape", "--", instance], capture_output=True, text=True, check=True
        ).stdout.strip()
        assert units.slice_name(cfg) == f"ringex-{esc}.slice"
        names = [units.unit_name(cfg, s) for s in plan(cfg)]
        mangled = subprocess.run(
            ["systemd-escape", "--mangle", "--", *names], capture_output=True, text=True, check=True
        ).stdout.split()
        assert mangled == names
        assert all("@" not in n and len(n) <= 255 for n in names)


def test_the_run_line_keeps_paths_whole_and_sets_what_the_supervisor_does(tmp_path: Path) -> None:
    """A working directory and profile path with spaces and ``$`` stay one argv element each
    (the ``$`` doubled for the manager's expansion); CPUAffinity is a comma list; Type=notify
    with NotifyAccess=main for the notifying processes; a waited unit has the ready timeout
    and blocks, the database writer neither."""
    cfg = _cfg(cores={"router": [2, 3]}, ready_timeout_s=45.0)
    where = tmp_path / "a dir $HOME"
    opts = units.Options(profile=str(where / "my profile.toml"), workdir=where, python="/v/bin/py")
    specs = {s.name: s for s in plan(cfg)}
    router = units.run_command(cfg, specs["router"], opts)
    tail = router[router.index("--") + 1 :]
    assert tail == ["/v/bin/py", "-m", "procs.router.main", "--profile",
                    str(where / "my profile.toml").replace("$", "$$")]  # fmt: skip
    assert f"--working-directory={where}" in router and "--no-block" not in router
    props = dict(router[i + 1].split("=", 1) for i, a in enumerate(router) if a == "-p")
    assert props["CPUAffinity"] == "2,3"
    assert (props["Type"], props["NotifyAccess"]) == ("notify", "main")
    assert props["TimeoutStartSec"] == "45s" and props["WatchdogSec"] == "30s"
    writer = units.run_command(cfg, specs["dbwriter"], opts)
    wprops = dict(writer[i + 1].split("=", 1) for i, a in enumerate(writer) if a == "-p")
    assert "--no-block" in writer and wprops["TimeoutStartSec"] == "infinity"
    assert not [a for a in router if a.startswith("--setenv=") and "=" in a[len("--setenv=") :]
                and not a.startswith("--setenv=PYTHONUNBUFFERED")]  # fmt: skip


def test_petting_says_ready_first_and_pings_at_half_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """READY=1 goes before the first WATCHDOG=1; pings come every half ``WATCHDOG_USEC`` (a
    30 s WatchdogSec is pinged each 15 s); a child (another pid) pings nothing."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    now = [100.0]
    pet = sd_notify.petting(lambda: False, ready_first=True, clock=lambda: now[0])
    for t in (100.0, 110.0, 114.9, 115.0, 129.0, 130.0):
        now[0] = t
        pet()
    got = []
    while True:
        try:
            got.append(sock.recv(64).decode())
        except BlockingIOError:
            break
    assert got == ["READY=1", "WATCHDOG=1", "WATCHDOG=1", "WATCHDOG=1"]
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert sd_notify.watchdog_interval_s() is None
    sock.close()


def test_ready_is_sent_after_what_the_supervisor_waits_for() -> None:
    """Read, not run: in each process READY=1 follows its recovery and the attach or listen the
    supervisor's ready check sees (router and matcher after their shell is built, the gateway
    after its FIX and REST servers listen, market data after ``start``)."""
    checks = {
        "procs/router/main.py": ("shell = RouterShell(", "sd_notify.ready()"),
        "procs/matcher/main.py": ("shell = ", "sd_notify.ready()"),
        "procs/marketdata/main.py": ("await process.start(port)", "sd_notify.ready()"),
        "procs/gateway/server.py": ("await self.api.start()", "sd_notify.ready()"),
    }
    for path, (before, ready) in checks.items():
        text = (ROOT / path).read_text()
        assert text.index(before) < text.index(ready), path


# -- the market maker ----------------------------------------------------------------------------


def _info(**over: str) -> dict[str, Any]:
    info = {"symbol": "SOL-USD", "pricePrecision": 2, "quantityPrecision": 2, "tickSize": "0.05",
            "stepSize": "0.10", "minQty": "0.30", "maxQty": "10.00"}  # fmt: skip
    return {**info, **over}


def test_sizes_stay_within_the_symbols_max_qty() -> None:
    """Was (fixed). A symbol not in DEFAULT_MIDS starts at mid 100; its quotes (1,000-6,000 quote
    units) and the taker's (up to 9,000) are 10 to 90 units: with maxQty 10 each is refused."""
    m = mm.Market.from_info(_info())
    mid = mm.to_units(mm.DEFAULT_MIDS.get(m.symbol, "100"), m.price_decimals)
    top = mm.to_units(_info()["maxQty"], m.qty_decimals)
    assert all(m.size(mid, n) <= top for n in (1_000.0, 6_000.0, 9_000.0))


def test_units_ticks_and_lots_are_what_the_exchange_takes() -> None:
    """Exact decimal round trips at every precision; every ladder price a positive multiple
    of the tick, every size a lot multiple at least minQty (the exchange's least_qty)."""
    for d in range(13):
        for units_ in (0, 1, 7, 10**d, 123_456_789):
            text = mm.from_units(units_, d)
            assert mm.to_units(text, d) == units_ and Decimal(text).scaleb(d) == units_
    m = mm.Market.from_info(_info(maxQty="100000.00"))
    assert (m.tick, m.lot, m.min_qty) == (5, 10, 30)
    for mid in (5, 10_000, 3_000_000, 123_457):
        grid = mm.Grid.around(m, mid, levels=5)
        wanted = mm.ladder(grid, mid)
        assert wanted and all(p > 0 and p % m.tick == 0 for _, p in wanted)
        for _, p in wanted:
            q = m.size(p, 1_000.0)
            assert q % m.lot == 0 and q >= m.min_qty


class FakeRest:
    """``RestClient`` as ``main_async`` uses it; ``script``: what each user's calls do."""

    made: ClassVar[list[FakeRest]] = []
    script: ClassVar[dict[str, Any]] = {}

    def __init__(self, url: str, **kw: Any) -> None:
        self.user = ""
        self.account = 0
        self.calls: list[tuple[str, str]] = []
        self.closed = False
        FakeRest.made.append(self)

    async def login(self, user: str, password: str) -> None:
        self.user = user
        failure = FakeRest.script.get(f"login {user}")
        if failure is not None:
            raise failure

    async def call(self, method: str, path: str, *, signed: bool = True, **params: Any) -> Any:
        self.calls.append((method, path))
        answer = FakeRest.script.get(f"{method} {path}")
        if callable(answer):
            return answer()
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def batch_orders(self, orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
        raise QuotingError

    async def close(self) -> None:
        self.closed = True


class QuotingError(Exception):
    """Raised by the stand-in at the first quote: the bot got past its start."""


def _args() -> argparse.Namespace:
    return argparse.Namespace(url="http://127.0.0.1:1", maker="MM1:mm1", taker="MM2:mm2",
                              symbols="", levels=2, interval=0.01, seed=1, cafile="")  # fmt: skip


@pytest.fixture
def fake_rest(monkeypatch: pytest.MonkeyPatch, handlers_kept: None) -> type[FakeRest]:
    FakeRest.made = []
    FakeRest.script = {
        "GET /api/v1/exchangeInfo": {"symbols": [_info(maxQty="100000.00")]},
        "GET /api/v1/ticker/24hr": ApiCallError(502, {"code": -1}),
        "GET /api/v1/openOrders": [],
    }
    monkeypatch.setattr(mm, "RestClient", FakeRest)
    return FakeRest


def test_a_failed_taker_login_revokes_the_makers_key(fake_rest: type[FakeRest]) -> None:
    """Was (fixed). MM2's login refused (401): the maker's key, made a moment before, is revoked and
    its session closed, as on every other way out."""
    fake_rest.script["login MM2"] = ApiCallError(401, {"code": -2014, "msg": "bad password"})
    with pytest.raises(ApiCallError):
        asyncio.run(mm.main_async(_args()))
    maker = next(c for c in fake_rest.made if c.user == "MM1")
    assert ("DELETE", "/api/v1/apiKey") in maker.calls and maker.closed


def test_a_dropped_connection_at_startup_is_retried(fake_rest: type[FakeRest]) -> None:
    """Was (fixed). The first ``openOrders`` of the start's cancel-all meets a reset connection: the
    bot tries again (as ``run`` does) and goes on to quote, rather than dying."""
    answers = iter([ClientConnectionError("Connection reset by peer")])

    def open_orders() -> list[Any]:
        failure = next(answers, None)
        if failure is not None:
            raise failure
        return []

    fake_rest.script["GET /api/v1/openOrders"] = open_orders
    with pytest.raises(QuotingError):
        asyncio.run(mm.main_async(_args()))


def test_the_bot_starts_quoting_and_revokes_both_keys(fake_rest: type[FakeRest]) -> None:
    """The stand-in path itself: past the start to the first quote, then both keys revoked
    and both sessions closed on the way out."""
    with pytest.raises(QuotingError):
        asyncio.run(mm.main_async(_args()))
    assert len(fake_rest.made) == 2
    assert all(("DELETE", "/api/v1/apiKey") in c.calls and c.closed for c in fake_rest.made)


# -- the demo ------------------------------------------------------------------------------------


def _interrupt(seconds: float) -> None:
    raise KeyboardInterrupt


def _stand_in(monkeypatch: pytest.MonkeyPatch, demo: Any, events: list[str], **kw: Any) -> None:
    """The demo's signals, processes and clock stood in; ``ringex`` commands in ``events``."""

    def ringex(*args: str) -> int:
        events.append(" ".join(args))
        return 0

    monkeypatch.setattr(demo, "signal", SimpleNamespace(
        signal=lambda *a: None, SIGINT=2, SIGTERM=15, SIGHUP=1, default_int_handler=None,
        SIG_IGN=None,
    ))  # fmt: skip
    monkeypatch.setattr(demo, "time", SimpleNamespace(sleep=_interrupt))
    monkeypatch.setattr(demo, "ignore_interrupts", lambda: None)
    monkeypatch.setattr(demo, "ringex", ringex)
    monkeypatch.setattr(demo, "start_exchange", lambda profile: 0)
    monkeypatch.setattr(demo, "add_users", lambda cfg, users: {u[0]: u[2] for u in users})
    monkeypatch.setattr("sys.argv", ["run_demo.py", "--profile", "dev"])
    for name, value in kw.items():
        monkeypatch.setattr(demo, name, value)


def test_an_error_while_adding_users_stops_the_exchange(
    demo: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exchange started, then the admin ring fails (or no account is free): ``ringex
    stop`` runs before the error goes up; a Ctrl-C during the start stops it too."""
    events: list[str] = []

    def failing(cfg: Any, users: Any) -> dict[str, int]:
        raise ConnectionError("admin ring gone")

    _stand_in(monkeypatch, demo, events, add_users=failing)
    with pytest.raises(ConnectionError):
        demo.main()
    assert events == ["stop --profile dev"]
    events.clear()

    def interrupted(profile: str) -> int:
        raise KeyboardInterrupt

    _stand_in(monkeypatch, demo, events, start_exchange=interrupted)
    assert demo.main() == 0 and events == ["stop --profile dev"]


HANGUP = """
import os, signal, sys, time, types
from tests.scripts_loader import load_script
demo = load_script("run_demo", "review189hup")
record = open(sys.argv[1], "a")
def ringex(*args):
    record.write(" ".join(args) + "\\n"); record.flush(); return 0
def sleep(seconds):
    os.kill(os.getpid(), signal.SIGHUP); time.sleep(0.3); raise SystemExit("no hang-up came")
demo.ringex = ringex
demo.start_exchange = lambda profile: 0
demo.add_users = lambda cfg, users: {u[0]: u[2] for u in users}
demo.time = types.SimpleNamespace(sleep=sleep)
sys.argv = ["run_demo.py", "--profile", "dev"]
sys.exit(demo.main())
"""


def test_a_hangup_stops_the_exchange(tmp_path: Path) -> None:
    """Was (fixed). The terminal closes under ``make run`` (SIGHUP to the demo): it stops the
    exchange it started in a session of its own, as on Ctrl-C. A real process, the exchange stood
    in."""
    record = tmp_path / "ringex.txt"
    record.touch()
    subprocess.run(
        [sys.executable, "-c", HANGUP, str(record)],
        cwd=ROOT,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert record.read_text().splitlines() == ["stop --profile dev"]


def test_a_rest_api_on_the_second_gateway_is_printed_and_traded_through(
    demo: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Was (fixed). gw1 FIX only, gw2 FIX and REST: the demo prints gw2's REST URL and runs the
    market maker through it (``default_url`` finds it), not "this profile lacks" a REST API."""
    profile = tmp_path / "two.toml"
    profile.write_text(
        'instance = "r189two"\n[[gateways]]\nname = "gw1"\nid = 1\nport = 19878\n'
        '[[gateways]]\nname = "gw2"\nid = 2\nport = 19879\n[gateways.rest]\nport = 18080\n'
    )
    started: list[str] = []
    events: list[str] = []
    _stand_in(monkeypatch, demo, events,
              start_market_maker=lambda p, log, accounts, ca: started.append(p))  # fmt: skip
    monkeypatch.setattr("sys.argv", ["run_demo.py", "--profile", str(profile), "--market-maker"])
    assert mm.default_url(str(profile)) == "http://127.0.0.1:18080"
    demo.main()
    out = capsys.readouterr().out
    assert "REST API:    http://127.0.0.1:18080/api/v1/" in out
    assert "lacks" not in out and started == [str(profile)]


def test_a_tls_fix_port_is_printed_as_tls(
    demo: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Was (fixed). A gateway with ``tls_cert`` takes FIX over TLS only: the line that tells a
    client how to connect says so (the REST line says https for its own TLS)."""
    cfg = load_profile("dev")
    gw = msgspec.structs.replace(cfg.gateways[0], tls_cert="/etc/c.pem", tls_key="/etc/k.pem")
    cfg = msgspec.structs.replace(cfg, gateways=[gw])
    events: list[str] = []
    _stand_in(monkeypatch, demo, events, load_profile=lambda profile: cfg)
    demo.main()
    line = next(x for x in capsys.readouterr().out.splitlines() if "port 9878" in x)
    assert "TLS" in line.upper()


def test_a_producer_waiting_for_room_calls_its_on_wait(instance: str) -> None:
    """Was (fixed: a lead of this review). A publish held back by a full ring waited without a
    word to the watchdog: ``Producer.on_wait`` is called with the heartbeat while it waits
    (the matcher's pets the watchdog), and the publish goes through once room is made."""
    ring = Ring.create(instance, "r", StructCodec("2q"), capacity=4, consumers=["a"])
    producer, consumer = ring.producer(wait_strategy("blocking")), ring.consumer("a")
    waited = threading.Event()
    producer.on_wait = waited.set
    producer.publish_batch([(n, 0) for n in range(4)])  # full
    assert not waited.is_set()  # room for it: no wait
    thread = threading.Thread(target=producer.publish, args=((4, 0),))
    thread.start()
    try:
        assert waited.wait(10)  # (a fail-safe bound: the first round calls it)
    finally:
        assert [item[0] for item in consumer.read(8)] == [0, 1, 2, 3]
        thread.join(10)
    assert [item[0] for item in consumer.read(8)] == [4]
    producer.close()
    consumer.close()


def test_the_matcher_pets_the_watchdog_while_its_publish_waits() -> None:
    """``procs/matcher/main.py`` sets its producer's ``on_wait`` to a petting beat of its
    input line (review 218: waiting, not stuck)."""
    source = (ROOT / "procs/matcher/main.py").read_text()
    assert "shell.producer.on_wait = sd_notify.petting(shell.consumer.heartbeat)" in source
