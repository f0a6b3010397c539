"""Review 113, part 2 (``test_review113_readme_http_row.py`` says what the review covers, its
convention and the disagreement found): README.md's "## Two commands (and a variant)" beyond
the Makefile: the suite's skips, workers, instances, clusters and hang timer (the conftests),
``.ci/run``, the demo ``make run`` starts (``scripts/run_demo.py`` with the exchange stood in:
the users, what it prints, Ctrl-C), the market maker of ``MM=1`` (``scripts/market_maker.py``'s
core and its bot over stood-in clients), ``ringex admin add-user`` (a stood-in admin client),
the profile without a database and its history routes (a ``RestApi`` never started), and
``make ring-demo``'s script (run for a moment). No disagreement was found here."""

from __future__ import annotations

import argparse
import ast
import asyncio
import faulthandler
import os
import random
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import msgspec
import pytest

from config import load_profile
from procs import cli
from procs.admin.add_user import add_user
from procs.admin.client import to_minor_units
from procs.common import embedded_postgres
from procs.common.result_codes import ResultCode
from procs.common.topology import postgres_dir, users_path
from procs.common.users import UserStore
from procs.gateway.api_errors import ApiError
from procs.gateway.instruments import Instruments
from procs.gateway.rest import RestApi, history_dsn
from procs.gateway.rest_history import HistoryRoutes
from procs.gateway.rest_orders import RestOrders
from procs.gateway.rest_public import PublicRoutes
from procs.supervisor.plan import plan
from tests import conftest as root_conftest
from tests.readme_text import ROOT, claim, section
from tests.scripts_loader import load_script
from tests.unit.test_review113_readme_http_row import KEY, _request

TWO = section("Two commands (and a variant)")


def two(quote: str) -> None:
    claim(quote, TWO, where="README's 'Two commands (and a variant)'", comments=True)


#: A test module that drives the browser: the helper, or a look for the binary of its own.
USES_CHROMIUM = re.compile(r"from (\.|tests\.unit\.marketdata\.)chromium import|which\(\"chromium")


def test_the_database_and_page_tests_skip_without_what_apt_installs() -> None:
    """ "PostgreSQL for the database tests and chromium for the page test" (and "chromium
    included, which only the page test uses"): the database fixture skips without PostgreSQL's
    binaries, and only the market-data page's tests use chromium."""
    two("chromium included, which only the page test uses")
    pg = ast.parse((ROOT / "tests/unit/conftest.py").read_text())
    fixture = next(f for f in pg.body if isinstance(f, ast.FunctionDef) and f.name == "pg")
    assert "pytest.skip" in ast.unparse(fixture) and "find_bin_dir() is None" in ast.unparse(
        fixture
    )
    users = {
        p.relative_to(ROOT).parent.as_posix()
        for p in (ROOT / "tests").rglob("*.py")
        if USES_CHROMIUM.search(p.read_text()) and not p.name.startswith("test_review113_")
    }
    assert users == {"tests/unit/marketdata"}


def test_a_file_runs_as_usual_with_the_venvs_pytest() -> None:
    """ "`.venv/bin/pytest tests/...` runs a file as usual": pytest's own options in pyproject
    hold no xdist option (``-n``, ``--dist``): only ``make pytest`` adds them."""
    two("`.venv/bin/pytest tests/...` runs a file as usual")
    addopts = re.search(r'^addopts = "(.*)"$', (ROOT / "pyproject.toml").read_text(), re.M)
    assert addopts is not None and "-n" not in addopts[1].split() and "--dist" not in addopts[1]


def test_each_test_has_its_own_instance_and_each_worker_its_cluster(instance: str) -> None:
    """ "each test has its own shared-memory instance and free ports, and each worker its own
    PostgreSQL cluster (a socket in its own directory)": the ``instance`` fixture's name holds
    the worker's pid and a counter; the cluster fixture is session-scoped (one a worker) in a
    fresh temporary directory, and a cluster's socket is in its data directory, no TCP."""
    two("each test has its own shared-memory instance and free ports, and each worker its own "
        "PostgreSQL cluster (a socket in its own directory)")  # fmt: skip
    named = root_conftest.INSTANCE_NAME.fullmatch(instance)
    assert named is not None and int(named[1]) == os.getpid()
    source = (ROOT / "tests/unit/conftest.py").read_text()
    assert '@pytest.fixture(scope="session")\ndef pg()' in source
    assert 'tempfile.mkdtemp(prefix="rgxpg-")' in source
    text = Path(embedded_postgres.__file__).read_text()
    assert "\"listen_addresses = ''\"" in text
    assert 'f"unix_socket_directories = {_conf_list(str(self.data))}"' in text


def test_a_hung_test_is_ended_after_180_s_with_every_threads_stack(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """ "A test still running after 180 s ... is hung: pytest-timeout ends its worker, and the
    run reports it as failed with every thread's stack (`tests/conftest.py`)": timeout 180 s;
    a worker's hook arms faulthandler to dump every thread and exit; the crash report has it."""
    two("A test still running after 180 s (the slowest takes about 30, 90 on that slow host) is "
        "hung: pytest-timeout ends its worker, and the run reports it as failed with every "
        "thread's stack")  # fmt: skip
    assert re.search(r"^timeout = 180$", (ROOT / "pyproject.toml").read_text(), re.M)
    armed: list[tuple[float, dict[str, Any]]] = []
    monkeypatch.setattr(faulthandler, "dump_traceback_later", lambda t, **kw: armed.append((t, kw)))
    monkeypatch.setattr(faulthandler, "cancel_dump_traceback_later", lambda: None)
    item: Any = SimpleNamespace(nodeid="t::hung", config=SimpleNamespace(workerinput={}),
                           stash=pytest.Stash())  # fmt: skip
    assert root_conftest.pytest_timeout_set_timer(item, SimpleNamespace(timeout=180)) is True
    ((timeout, kw),) = armed
    assert timeout == 180 and kw["exit"] is True and kw.get("all_threads", True)
    root_conftest.pytest_timeout_cancel_timer(item)
    path = root_conftest._stacks_path("t::hung", os.getpid())
    path.write_text("Thread 0x1 (most recent call first): ...")
    report = SimpleNamespace(longrepr="worker crashed")
    root_conftest.pytest_handlecrashitem("t::hung", cast(Any, report), None)
    assert "Thread 0x1" in report.longrepr and not path.exists()


def test_python3_venv_is_not_installed_here() -> None:
    """ "`python3 -m venv` needs Debian's and Ubuntu's `python3-venv` package, which nothing
    here installs": the Makefile's apt installs are postgresql and chromium alone."""
    two("`python3 -m venv` needs Debian's and Ubuntu's `python3-venv` package, which nothing "
        "here installs")  # fmt: skip
    makefile = (ROOT / "Makefile").read_text()
    assert set(re.findall(r"\$\(APT\) (\S+)", makefile)) == {"postgresql", "chromium"}
    assert "python3-venv" not in makefile and "-m venv --clear $(VENV)" in makefile


def test_ci_runs_dot_ci_run_which_is_make_test() -> None:
    """ "CI runs `.ci/run`, which is `make test`": an executable bash script that stops on a
    failure, goes to the repository root and runs ``make test``, nothing else."""
    two("CI runs `.ci/run`, which is `make test`.")
    script = ROOT / ".ci" / "run"
    assert os.access(script, os.X_OK)
    lines = [ln for ln in script.read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines == ["set -euo pipefail", 'cd "$(dirname "$0")/.."', "make test"]
    assert script.read_text().startswith("#!/usr/bin/env bash\n")


# -- the demo: users, printing, Ctrl-C -----------------------------------------------------------


@pytest.fixture
def demo() -> Any:
    return load_script("run_demo", "review113")


def _interrupt(seconds: float) -> None:
    raise KeyboardInterrupt


def _stand_in(monkeypatch: pytest.MonkeyPatch, demo: Any, events: list[str], **kw: Any) -> None:
    """The demo's modules, signals, processes and clock stood in (its own attributes only:
    this process's signal handlers and ``time.sleep`` stay as they are); ``ringex`` commands
    recorded in ``events``; ``kw``: the demo's functions replaced."""

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
    for name, value in kw.items():
        monkeypatch.setattr(demo, name, value)


def test_two_funded_demo_fix_users_and_what_is_printed(
    demo: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``make run # the exchange with the dev profile and two funded demo FIX users; it prints
    the FIX endpoint, credentials, symbols, REST, WebSocket and page URLs``: ``run_demo.main``
    with the exchange stood in, until a Ctrl-C; then ``ringex stop``."""
    two("the exchange with the dev profile and two funded demo FIX users; it prints the FIX "
        "endpoint, credentials, symbols, REST, WebSocket and page URLs")  # fmt: skip
    assert [u[0] for u in demo.DEMO_USERS] == ["DEMO1", "DEMO2"]
    assert all(u[3] for u in demo.DEMO_USERS)
    calls: list[str] = []

    def start_exchange(profile: str) -> int:
        calls.append(f"start {profile}")
        return 0

    monkeypatch.setattr("sys.argv", ["run_demo.py"])
    _stand_in(monkeypatch, demo, calls, start_exchange=start_exchange,
              add_users=lambda cfg, users: {u[0]: u[2] for u in users})  # fmt: skip
    assert demo.main() == 0
    out = capsys.readouterr().out
    for shown in ("host 127.0.0.1 port 9878",
                  "SenderCompID DEMO1 password demo1 (account 101: USD 1000000",
                  "SenderCompID DEMO2 password demo2", "Symbols:     BTC-USD (tick",
                  "REST API:    http://127.0.0.1:8080/api/v1/",
                  "Market data: ws://127.0.0.1:8765/stream?streams=btc-usd@trade",
                  "Web page:    http://127.0.0.1:8765/"):  # fmt: skip
        assert shown in out
    assert calls == ["start dev", "stop --profile dev"]


def test_ctrl_c_while_it_starts_stops_it_once_started(
    demo: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "Ctrl-C stops it (one while it starts stops it once it has started)": a Ctrl-C during
    ``ringex run --detach`` waits for that start to end, then stops the instance."""
    two("Ctrl-C stops it (one while it starts stops it once it has started)")
    events: list[str] = []

    class Starting:
        waits = 0

        def __init__(self, cmd: list[str], **kw: Any) -> None:
            events.append(" ".join(cmd[-4:]))

        def wait(self) -> int:
            self.waits += 1
            if self.waits == 1:
                raise KeyboardInterrupt
            events.append("started")
            return 0

    monkeypatch.setattr("sys.argv", ["run_demo.py"])
    _stand_in(monkeypatch, demo, events, subprocess=SimpleNamespace(Popen=Starting))
    assert demo.main() == 0
    assert events == ["run --profile dev --detach", "started", "stop --profile dev"]


def test_the_market_maker_stops_before_the_exchange(
    demo: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """``MM=1`` (``scripts/run_demo.py --market-maker``) runs ``scripts/market_maker.py`` as
    MM1 and MM2, logging to ``var/dev/run/market-maker.log``; "Ctrl-C cancels its orders
    before the exchange stops": the bot is sent SIGTERM and waited for before ``ringex
    stop``."""
    two("With `MM=1` (`scripts/run_demo.py --market-maker`) a market maker trades over the REST "
        "API (`scripts/market_maker.py`, log in `var/dev/run/market-maker.log`)")  # fmt: skip
    two("Ctrl-C cancels its orders before the exchange stops.")
    events: list[str] = []

    class Bot:
        pid = 4242

        def __init__(self, cmd: list[str], stdout: Any, **kw: Any) -> None:
            events.append(f"bot {Path(cmd[1]).name} {' '.join(cmd[2:])} > {stdout.name}")

        def poll(self) -> None:
            return None

        def terminate(self) -> None:
            events.append("SIGTERM")

        def wait(self, timeout: float | None = None) -> int:
            events.append("bot ended")
            return 0

    monkeypatch.chdir(tmp_path)  # the dev profile's var/ is relative: not the checkout's
    (tmp_path / "var/dev/run").mkdir(parents=True)
    monkeypatch.setattr("sys.argv", ["run_demo.py", "--market-maker"])
    processes = SimpleNamespace(
        Popen=Bot, DEVNULL=subprocess.DEVNULL, STDOUT=subprocess.STDOUT,
        TimeoutExpired=subprocess.TimeoutExpired,
    )  # fmt: skip
    _stand_in(monkeypatch, demo, events, start_exchange=lambda profile: 0, subprocess=processes,
              add_users=lambda cfg, users: {u[0]: u[2] for u in users})  # fmt: skip
    assert demo.main() == 0
    assert events == [
        "bot market_maker.py --profile dev --maker MM1:mm1 --taker MM2:mm2 > "
        "var/dev/run/market-maker.log",
        "SIGTERM", "bot ended", "stop --profile dev",
    ]  # fmt: skip
    assert "MM1 (account 201) quotes, MM2 (account 202) takes" in capsys.readouterr().out


# -- users: the demo's, the market maker's, add-user's --------------------------------------------


class FakeAdmin:
    """``AdminClient`` as the demo and ``add-user`` use it: accounts opened (those in
    ``existing`` exist already), deposits taken, balances what they made."""

    def __init__(self, existing: set[int] | None = None) -> None:
        self.existing = set(existing or ())
        self.deposits: list[tuple[int, str, str]] = []

    def create_account(self, account: int) -> Any:
        code = ResultCode.ACCOUNT_EXISTS if account in self.existing else ResultCode.OK
        self.existing.add(account)
        return SimpleNamespace(code=code)

    def transfer(self, account: int, asset: str, amount: str, **kw: Any) -> Any:
        self.deposits.append((account, asset, amount))
        return SimpleNamespace(code=ResultCode.OK)

    def balances(self, account: int) -> list[Any]:
        made = [to_minor_units(_DEV, a, n) for to, a, n in self.deposits if to == account]
        return [SimpleNamespace(asset=a, free=u, reserved=0) for a, u in made]

    def close(self) -> None: ...


_DEV = load_profile("dev")


def _dev(tmp_path: Path) -> Any:
    return msgspec.structs.replace(load_profile("dev"), var_dir=str(tmp_path / "var"))


def test_the_market_makers_users_are_funded_like_the_demos_on_201_and_202(
    demo: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """ "as two users of its own, funded like the demo users: MM1 (account 201 where it is new;
    the demo never takes an account another user holds ...) ... MM2 (account 202)":
    ``add_users`` gives them 201 and 202 on a fresh instance, each deposited the demo users'
    funds; where a user holds 201 already, MM1 gets the next account after every user's."""
    two("as two users of its own, funded like the demo users: MM1 (account 201 where it is "
        "new; the demo never takes an account another user holds, and prints the ones it "
        "gave)")  # fmt: skip
    two("MM2 (account 202)")
    assert [(u[0], u[2], u[3]) for u in demo.MARKET_MAKER_USERS] == [
        ("MM1", 201, demo.FUNDS), ("MM2", 202, demo.FUNDS)
    ]  # fmt: skip
    assert all(u[3] == demo.FUNDS for u in demo.DEMO_USERS)
    cfg = _dev(tmp_path)
    fake = FakeAdmin()
    monkeypatch.setattr(demo, "AdminClient", lambda cfg: fake)
    assert demo.add_users(cfg, demo.MARKET_MAKER_USERS) == {"MM1": 201, "MM2": 202}
    assert sorted({d[0] for d in fake.deposits}) == [201, 202]
    assert [(a, m) for acc, a, m in fake.deposits if acc == 201] == demo.FUNDS
    other = _dev(tmp_path / "other")
    UserStore(users_path(other)).add("bob", "pw", 201, n=1 << 4)
    given = demo.add_users(other, demo.MARKET_MAKER_USERS)
    assert given["MM1"] != 201 and set(given.values()).isdisjoint({201})


def _add_user_args(*extra: str) -> argparse.Namespace:
    argv = ["admin", "add-user", "--username", "alice", "--password", "pw",
            "--deposit", "USD=100000", *extra]  # fmt: skip
    return cli.build_parser().parse_args(argv)


def test_add_user_takes_the_username_as_comp_id_and_the_next_free_account(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ "`.venv/bin/ringex admin add-user --username alice --password pw --deposit
    USD=100000`"; "Its SenderCompID is the username unless `--comp-id` says, and its account
    the next free one unless `--account` says": the command line parses, and ``add_user``
    with a stood-in exchange stores alice on the next free account (100 on a fresh instance,
    after every user's next), or the ones given."""
    two(".venv/bin/ringex admin add-user --username alice --password pw --deposit USD=100000")
    two("Its SenderCompID is the username unless `--comp-id` says, and its account the next "
        "free one unless `--account` says (1 to 2^53 - 1")  # fmt: skip
    cfg = _dev(tmp_path)
    fake = FakeAdmin()
    assert add_user(cfg, _add_user_args(), lambda: cast(Any, fake)) == 0
    assert "SenderCompID alice, account 100, deposited USD 100000" in capsys.readouterr().out
    assert fake.deposits == [(100, "USD", "100000")]
    store = UserStore(users_path(cfg))
    alice = store.get("alice")
    assert alice is not None and alice.account == 100
    args = _add_user_args("--comp-id", "ALICE2", "--account", "150")
    args.username = "alice2"
    assert add_user(cfg, args, lambda: cast(Any, fake)) == 0
    named = UserStore(users_path(cfg)).get("ALICE2")
    assert named is not None and named.account == 150
    args = _add_user_args()
    args.username = "carol"
    assert add_user(cfg, args, lambda: cast(Any, fake)) == 0
    carol = UserStore(users_path(cfg)).get("carol")
    assert carol is not None and carol.account == 151  # after every user's


def test_ringex_run_detach_and_stop_parse() -> None:
    """ "`.venv/bin/ringex run --profile dev --detach`" and "`.venv/bin/ringex stop` stops the
    exchange": ``ringex`` is ``procs.cli:main`` (pyproject's script), whose parser takes both."""
    two(".venv/bin/ringex run --profile dev --detach")
    two("`.venv/bin/ringex stop` stops the exchange")
    assert 'ringex = "procs.cli:main"' in (ROOT / "pyproject.toml").read_text()
    run = cli.build_parser().parse_args(["run", "--profile", "dev", "--detach"])
    assert (run.command, run.profile, run.detach) == ("run", "dev", True)
    assert cli.build_parser().parse_args(["stop"]).command == "stop"


# -- the profile without a database --------------------------------------------------------------


def test_the_dev_profiles_writer_runs_a_private_postgresql() -> None:
    """ "The dev profile's database writer runs a private PostgreSQL from the system's
    binaries": the dev profile enables the writer with no ``dsn`` (the embedded cluster under
    ``var/dev/pg``), whose binaries are looked for on PATH and in /usr/lib/postgresql."""
    two("The dev profile's database writer runs a private PostgreSQL from the system's binaries")
    cfg = load_profile("dev")
    assert cfg.database.enabled and cfg.database.dsn == ""
    assert "dbwriter" in [s.name for s in plan(cfg)]
    assert postgres_dir(cfg) == Path("var/dev/pg")
    source = Path(embedded_postgres.__file__).read_text()
    assert 'shutil.which("initdb")' in source and '"/usr/lib/postgresql/*/bin/initdb"' in source


@pytest.fixture
def nodb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The README's recipe: ``config/profiles/dev.toml`` copied to ``nodb.toml`` with
    ``[database]`` / ``enabled = false`` added, loaded as ``make run PROFILE=nodb.toml`` names
    it (relative to the directory make runs in)."""
    text = (ROOT / "config/profiles/dev.toml").read_text() + "\n[database]\nenabled = false\n"
    (tmp_path / "nodb.toml").write_text(text)
    monkeypatch.chdir(tmp_path)
    return load_profile("nodb.toml")


def test_a_copy_without_the_database_keeps_the_rest_gateway(nodb: Any) -> None:
    """ "copy `config/profiles/dev.toml` to `nodb.toml`, add `[database]` / `enabled = false`,
    and run `make run PROFILE=nodb.toml` (the copy keeps the dev profile's REST gateway, which
    the page and `MM=1` trade through)": the copy loads, runs no writer, and keeps the REST
    port and the market-data page; the market maker finds its URL there."""
    two("copy `config/profiles/dev.toml` to `nodb.toml`, add `[database]` / `enabled = false`, "
        "and run `make run PROFILE=nodb.toml` (the copy keeps the dev profile's REST gateway, "
        "which the page and `MM=1` trade through)")  # fmt: skip
    assert not nodb.database.enabled and history_dsn(nodb) is None
    assert "dbwriter" not in [s.name for s in plan(nodb)]
    dev = load_profile("dev")
    assert nodb.gateways == dev.gateways and nodb.gateways[0].rest is not None
    assert nodb.marketdata.enabled and nodb.instance == dev.instance
    mm = load_script("market_maker", "review113")
    assert mm.default_url("nodb.toml") == "http://127.0.0.1:8080"


def test_the_history_routes_answer_503_without_the_database(nodb: Any, tmp_path: Path) -> None:
    """ "The history routes (`klines`, `allOrders`, `myTrades`) then answer 503 "history needs
    the database"": each, asked with valid parameters of a gateway of that profile (a
    ``RestApi`` never started), is a 503 saying so."""
    two('The history routes (`klines`, `allOrders`, `myTrades`) then answer 503 "history needs '
        'the database".')  # fmt: skip
    cfg = msgspec.structs.replace(nodb, var_dir=str(tmp_path / "var"))
    gw = cfg.gateways[0]
    core = RestOrders(gw.id, Instruments(cfg.symbols), cfg.assets, [], iter(range(1, 99)).__next__)
    api = RestApi(cfg, gw, gw.rest, core, UserStore(users_path(cfg)), lambda: None)
    assert api.history is None

    async def signed(request: Any, scope: str) -> Any:
        return KEY

    api.signed = signed  # type: ignore[method-assign]
    routes = HistoryRoutes(api)
    calls = [
        (PublicRoutes(api).klines, "/api/v1/klines", "symbol=BTC-USD&interval=1m"),
        (routes.all_orders, "/api/v1/allOrders", "symbol=BTC-USD"),
        (routes.my_trades, "/api/v1/myTrades", "symbol=BTC-USD"),
    ]
    for handler, path, query in calls:
        with pytest.raises(ApiError) as refused:
            asyncio.run(handler(_request(path, query)))
        assert refused.value.status == 503, path
        assert str(refused.value.body()["msg"]).startswith("history needs the database"), path


# -- the market maker ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mm() -> Any:
    return load_script("market_maker", "review113mm")


def _market(mm: Any) -> Any:
    sym = load_profile("dev").symbols[0]
    return mm.Market(sym.name, sym.price_decimals, sym.qty_decimals, sym.tick, sym.lot,
                     sym.min_qty)  # fmt: skip


def test_five_levels_a_side_around_a_mid_that_random_walks(mm: Any) -> None:
    """ "MM1 ... quotes five levels a side per symbol around a mid that random-walks": the
    ladder's default is 5 a side (``--levels``), bids below the mid and asks above, and the
    mid moves step by step."""
    two("quotes five levels a side per symbol around a mid that random-walks")
    source = (ROOT / "scripts/market_maker.py").read_text()
    assert re.search(r'"--levels", type=int, default=5\b', source)
    m = _market(mm)
    mid = mm.to_units("30000", m.price_decimals)
    grid = mm.Grid.around(m, mid)
    wanted = mm.ladder(grid, mid)
    bids = sorted(p for s, p in wanted if s == mm.BUY)
    asks = sorted(p for s, p in wanted if s == mm.SELL)
    assert len(bids) == len(asks) == 5 and bids[-1] < mid < asks[0]
    walk = mm.MidWalk(mid, m.tick, random.Random(3), vol_ticks=grid.step / m.tick)
    assert len({walk.step() for _ in range(50)}) > 5


class FakeClient:
    """A ``RestClient`` as the bot calls it: answers recorded, ``openOrders`` as given."""

    def __init__(self, resting: list[dict[str, Any]] | None = None) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.resting = resting or []

    async def call(self, method: str, path: str, **params: Any) -> Any:
        self.calls.append((method, path, params))
        if path.endswith("openOrders"):
            return self.resting
        return {"executedQty": "0"}

    async def batch_orders(self, orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Recorded as a POST each (the bot places its quotes in batches)."""
        return [await self.call("POST", "/api/v1/batchOrders", **o) for o in orders]


def test_it_cancels_off_the_ladder_and_mm2_takes_with_ioc(mm: Any) -> None:
    """ "cancelling whatever of its account is off that ladder and replacing as it moves; MM2
    ... now and then takes with an IOC order"; "DEMO1 and DEMO2 stay yours: ... it never
    cancels them": a cycle lists the maker's own open orders, cancels those off the ladder
    (only those: ids from that list), places the missing GTC, and the taker sends an IOC."""
    two("cancelling whatever of its account is off that ladder and replacing as it moves; MM2 "
        "(account 202) now and then takes with an IOC order")  # fmt: skip
    two(
        "DEMO1 and DEMO2 stay yours: their orders trade with its quotes, and it never cancels them."
    )
    m = _market(mm)
    mid = mm.to_units("30000", m.price_decimals)
    grid = mm.Grid.around(m, mid)
    off = {"orderId": 7, "side": "BUY", "price": mm.from_units(mid // 2, m.price_decimals)}
    maker, taker = FakeClient([off]), FakeClient()
    walk = mm.MidWalk(mid, m.tick, random.Random(1), vol_ticks=0)
    book = mm.Book(m, walk, grid, max_inventory=m.size(mid, 50_000))
    bot = mm.MarketMaker(maker, taker, [book], random.Random(1), take_probability=1.0)
    asyncio.run(bot.cycle(book))
    deletes = [p["orderId"] for meth, _, p in maker.calls if meth == "DELETE"]
    posts = [p for meth, _, p in maker.calls if meth == "POST"]
    assert deletes == [7] and not [c for c in taker.calls if c[0] == "DELETE"]
    assert len(posts) == 10 and {p["timeInForce"] for p in posts} == {"GTC"}
    assert [p["timeInForce"] for meth, _, p in taker.calls if meth == "POST"] == ["IOC"]


def test_about_10_orders_a_second(mm: Any) -> None:
    """ "about 10 orders a second": the bot's own plan, a cycle every ``--interval`` (0.4 s)
    over the dev profile's symbols, the taker's IOC taking the touch: new orders a second,
    the exchange's answers taken as instant, between 5 and 15 (the script says "about 5 to
    15")."""
    two("about 10 orders a second")
    rng = random.Random(1)
    books: list[tuple[Any, Any, dict[int, tuple[str, int]]]] = []
    for sym in load_profile("dev").symbols:
        m = mm.Market(sym.name, sym.price_decimals, sym.qty_decimals, sym.tick, sym.lot, 1)
        mid = mm.to_units(mm.DEFAULT_MIDS.get(sym.name, "100"), m.price_decimals)
        grid = mm.Grid.around(m, mid)
        books.append((grid, mm.MidWalk(mid, m.tick, rng, vol_ticks=grid.step / m.tick), {}))
    placed, cycles, ids = 0, 2_000, iter(range(1, 10**9))
    for turn in range(cycles):
        grid, walk, resting = books[turn % len(books)]
        wanted = mm.ladder(grid, walk.step())
        rows = [mm.Resting(o, s, p) for o, (s, p) in resting.items()]
        cancel, place = mm.plan(wanted, rows, rng)
        for o in cancel:
            del resting[o]
        resting.update({next(ids): key for key in place})
        placed += len(place)
        if rng.random() < 0.4:  # MarketMaker's take_probability
            side, _ = mm.taker_order(wanted, grid, 0, 1, rng)
            placed += 1
            touch = [o for o, (s, _) in resting.items() if s != side]
            if touch:
                del resting[(min if side == mm.BUY else max)(touch, key=lambda o: resting[o][1])]
    assert 5 <= placed / (cycles * 0.4) <= 15


# -- make ring-demo ------------------------------------------------------------------------------


def test_ring_demo_is_three_processes_over_two_rings_with_the_dev_wait() -> None:
    """ "`make ring-demo` runs the substrate alone: three processes over two rings, for 3 s
    with the dev profile's wait strategy. With another profile, for 5 s (`latency`
    busy-spins ...)": the script's defaults are the dev profile and 3 s; run briefly, it says
    three processes, two rings and the dev profile's strategy; ``latency`` busy-spins."""
    two("`make ring-demo` runs the substrate alone: three processes over two rings, for 3 s "
        "with the dev profile's wait strategy.")  # fmt: skip
    two("`.venv/bin/python scripts/ring_demo.py --profile latency --seconds 5`")
    source = (ROOT / "scripts/ring_demo.py").read_text()
    assert 'add_argument("--profile", default="dev")' in source
    assert 'add_argument("--seconds", type=float, default=3.0)' in source
    assert load_profile("latency").wait.strategy == "busy-spin"
    done = subprocess.run(
        [sys.executable, "scripts/ring_demo.py", "--seconds", "0.3"], cwd=ROOT,
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    out = done.stdout
    assert ": 3 processes, rings of 16384 x" in out and "wait strategy 'blocking'" in out
    assert len(re.findall(r"^  ring \w+: ", out, re.M)) == 2
    assert load_profile("dev").wait.strategy == "blocking"
