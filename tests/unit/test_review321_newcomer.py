"""Review 321: a newcomer follows README.

Reviewed: README from the top as a newcomer meets it, in a fresh clone (``git clone`` of the
checkout into /tmp): ``make venv`` (the stamp's pip install, 25 s), ``make run
PROFILE=<copy of dev.toml>.toml`` (the Two commands' variant: its own instance and FIX, REST,
feed and metrics ports; the embedded PostgreSQL on), Ctrl-C (SIGINT to make's process group)
once it ran and once while it started ("stopping once it has started", then stopped), a
second ``make run`` (the demo users found again and topped up to the funds it prints: DEMO1
and DEMO2 back to USD 1,000,000 and BTC 100, free and locked together), ``make run MM=1``
with the nodb recipe (``[database] enabled = false``: MM1 201 and MM2 202 as printed, its
log under ``var/<instance>/run/market-maker.log``, ``klines``, ``allOrders`` and
``myTrades`` 503 "history needs the database", the bot's orders cancelled at Ctrl-C: MM1 and
MM2 locked 0 after a restart); ``ringex run --detach`` then ``admin add-user`` (the next
free account); the demo clients: ``POST /api/v1/apiKey`` with curl (form and JSON),
``ping``, ``time``, ``exchangeInfo`` (``HALT`` after ``admin halt``, ``TRADING`` after
``resume``), ``/openapi.json``, the README's ``RestClient`` script (its port changed), a raw
FIX 4.4 Logon (Password 554, 141=Y) and NewOrderSingle (acked and filled against DEMO1's
order), ``account``, ``openOrders``, ``myTrades``, ``allOrders``, ``klines`` from the
database, the feed (``/stream?streams=``, ``/ws/<stream>``, a bare ``/stream`` with
SUBSCRIBE, the heartbeat every 5 s), the page (``/``, its CSS and scripts, ``/api/config``
naming the REST port, ``/api/symbols``) and the REST port's CORS preflight; Operate's
commands on the running instance: ``status`` (text, ``--json``, ``--wait-ready``),
``shm ls`` (text, ``--instance --json``), ``shm rm --instance`` of a running instance (exit
1, the live pids named, nothing removed), ``admin balances`` (text, ``--json``), ``deposit``
with ``--key`` twice (answered as the first), ``add-user`` (with deposits,
``--cancel-on-disconnect on``), ``halt``/``resume``, ``users``, ``keys``, ``end-session``,
``snapshot``, ``create-account``, ``withdraw``; the metrics page (every family Operate
lists, the counters matching what was done); ``stop``; a supervisor SIGKILLed (``status``
says so, nothing left running, the embedded PostgreSQL included) and ``shm rm --instance``
after it (every segment, semaphore and FIFO gone); each bench's ``--help`` (every flag the
Benchmarks section names is one of a bench's); each path README names exists; the
Configure section's reference TOML against the schema's defaults.

Rig: a fresh clone in /tmp/newcomer with its own .venv; profiles copied from
``config/profiles/dev.toml`` with ``instance`` r321nc / r321nodb and ports 19878, 18080,
18765 and 19464; everything started was stopped, its shared memory removed. Here: cheap
in-process checks of what the walk found sound and nothing else pins.

Faults found: none. Each command README gives for a first look did what it says, at the
paths and ports it names, with no step README leaves out.

Sound (kept as tests where cheap): ``make run PROFILE=file`` of a copy with its own instance
and ports prints that copy's endpoints, and its page finds that copy's REST port
(``test_sound_a_second_profile_prints_and_serves_its_own_ports``); the nodb recipe loads
with the database off and the dev profile's REST gateway kept
(``test_sound_the_nodb_recipe_keeps_the_rest_gateway``); the Configure section's reference
blocks are the schema's defaults, but for the values they say are examples or spell a default
out (``test_sound_the_configure_reference_blocks_are_the_defaults``). By hand, not repeated
here (real processes): everything under Reviewed.

Mended since (a lead, README claimed nothing either way): ``make run`` went on printing
nothing when its exchange died under it (its supervisor SIGKILLed: the demo watched only the
market maker, so a newcomer's terminal still read "Ctrl-C stops it." while nothing ran);
it now says so and ends (``test_the_demo_says_so_when_its_exchange_stops_under_it``).

Leads not shown: a profile copied to the repository's root, as README's ``make run
PROFILE=my.toml`` suggests, is an untracked file ``git status`` shows (not ignored; README now
suggests ``var/``, which git ignores). The page asks ``/api/config`` for the REST host: with
``[marketdata] host`` set to take other machines and the REST API left on 127.0.0.1, a browser
elsewhere is sent to its own loopback (Configure says to set each listener's ``host``).
"""

from __future__ import annotations

import re
import signal
import tomllib
from pathlib import Path
from typing import Any

import msgspec
import pytest

from config import load_profile
from config.edges import GatewayConfig, RestConfig
from config.schema import RingexConfig
from procs.marketdata.web import page_config
from tests.readme_text import claim, section
from tests.scripts_loader import load_script

ROOT = Path(__file__).parents[2]
DEV = (ROOT / "config" / "profiles" / "dev.toml").read_text()


@pytest.fixture
def demo() -> Any:
    return load_script("run_demo", "review321")


def test_sound_a_second_profile_prints_and_serves_its_own_ports(
    tmp_path: Path, demo: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """README, Two commands: "`make run PROFILE=my.toml` runs another profile (a name under
    `config/profiles/` or a file): another instance name and other ports let a second
    exchange run beside the first". A copy of dev.toml with its own instance and ports: what
    the demo prints and what the page's ``/api/config`` answers are that copy's."""
    claim("another instance name and other ports let a second exchange run beside the first")
    text = DEV.replace('instance = "dev"', 'instance = "r321nc"')
    text = text.replace("id = 1\n", "id = 1\nport = 19878\n").replace("8080", "18080")
    text = text.replace("9464", "19464") + "\n[marketdata]\nport = 18765\n"
    path = tmp_path / "r321.toml"
    path.write_text(text)
    cfg = load_profile(str(path))
    assert cfg.instance == "r321nc"
    demo.print_endpoints(cfg, {"DEMO1": 101, "DEMO2": 102})
    out = capsys.readouterr().out
    for shown in (
        "host 127.0.0.1 port 19878, TargetCompID RINGEX",
        "SenderCompID DEMO1 password demo1 (account 101",
        "REST API:    http://127.0.0.1:18080/api/v1/",
        "Market data: ws://127.0.0.1:18765/stream?streams=btc-usd@trade",
        "Web page:    http://127.0.0.1:18765/",
    ):
        assert shown in out, out
    assert page_config(cfg) == {"rest": {"host": "127.0.0.1", "port": 18080}}
    assert cfg.supervisor.metrics_port == 19464


def test_sound_the_nodb_recipe_keeps_the_rest_gateway(tmp_path: Path) -> None:
    """README, Two commands: "copy `config/profiles/dev.toml` to `nodb.toml`, add
    `[database]` / `enabled = false`, and run `make run PROFILE=nodb.toml` (the copy keeps
    the dev profile's REST gateway, which the page and `MM=1` trade through)"."""
    claim("copy `config/profiles/dev.toml` to `nodb.toml`, add `[database]` / `enabled = false`")
    path = tmp_path / "nodb.toml"
    path.write_text(DEV + "\n[database]\nenabled = false\n")
    cfg = load_profile(str(path))
    assert not cfg.database.enabled
    assert cfg.instance == "dev"
    rest = cfg.gateways[0].rest
    assert rest is not None and rest.port == 8080
    assert page_config(cfg)["rest"] == {"host": "127.0.0.1", "port": 8080}


#: Values the reference blocks show that are not the defaults, each said so beside it:
#: ``spins = 0`` spells out blocking's default (the field itself is unset), the cores and the
#: session end are examples.
EXAMPLES = {"wait.spins", "supervisor.cores", "supervisor.session_end_utc"}


def _differences(given: dict[str, Any], default: dict[str, Any], path: str) -> list[str]:
    """The keys of ``given`` (a TOML table) whose value is not ``default``'s."""
    out = []
    for key, value in given.items():
        name = f"{path}.{key}" if path else key
        tables = isinstance(value, list) and bool(value) and isinstance(value[0], dict)
        if name in EXAMPLES or tables:  # an example, or [[assets]] and the like
            continue
        if isinstance(value, dict):
            out += _differences(value, default[key], name)
        elif default.get(key, "missing") != value:
            out.append(f"{name}: README {value!r}, schema {default.get(key, 'missing')!r}")
    return out


def test_sound_the_configure_reference_blocks_are_the_defaults() -> None:
    """README, Configure: each ```toml block's scalar settings are the schema's defaults (the
    examples aside), the gateways' and their REST sections' too."""
    blocks = re.findall(r"```toml\n(.*?)```", section("Configure"), re.S)
    assert len(blocks) >= 5
    defaults = msgspec.to_builtins(RingexConfig())
    gateway = msgspec.to_builtins(GatewayConfig(name="gw1", id=1))
    rest = msgspec.to_builtins(RestConfig())
    found = []
    for block in blocks:
        table = tomllib.loads(block)
        found += _differences(table, defaults, "")
        for gw in table.get("gateways", []):
            given = {k: v for k, v in gw.items() if k not in ("name", "id", "rest")}
            found += _differences(given, gateway, "gateways")
            found += _differences(gw.get("rest", {}), rest, "gateways.rest")
    assert found == []


def test_the_demo_says_so_when_its_exchange_stops_under_it(
    demo: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Scenario: ``make run``'s exchange dies under it (its supervisor SIGKILLed, or
    ``ringex stop`` from another terminal) while the demo waits for Ctrl-C.
    Expected: the demo says the exchange stopped and ends (exit 1), as it does for its
    market maker's exit.
    Was (fixed): it went on waiting, its terminal still reading "Ctrl-C stops it." while
    nothing ran (the wait loop watched only the market maker)."""
    stopped: list[tuple[str, ...]] = []

    def ringex(*argv: str) -> int:
        stopped.append(argv)
        return 0

    monkeypatch.setattr(demo, "start_exchange", lambda profile: 0)
    monkeypatch.setattr(demo, "add_users", lambda cfg, users: {})
    monkeypatch.setattr(demo, "print_endpoints", lambda cfg, accounts: None)
    monkeypatch.setattr(demo, "read_status", lambda cfg: None)  # no supervisor runs
    monkeypatch.setattr(demo, "ringex", ringex)
    monkeypatch.setattr(demo.time, "sleep", lambda s: None)
    monkeypatch.setattr("sys.argv", ["run_demo.py", "--profile", "dev"])
    # main() takes SIGINT, SIGTERM and SIGHUP, and leaves them ignored after its stop: in
    # this worker they must be as they were (a `ringex run` a later test starts inherits an
    # ignored signal, and its Ctrl-C or SIGTERM then does nothing)
    kept = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        assert demo.main() == 1
    finally:
        for s, handler in kept.items():
            signal.signal(s, handler)
    out = capsys.readouterr().out
    assert "Ctrl-C stops it." in out and "the exchange has stopped" in out, out
    assert stopped == [("stop", "--profile", "dev")]  # what it started is stopped all the same
