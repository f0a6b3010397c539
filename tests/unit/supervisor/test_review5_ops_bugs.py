"""A fifth hostile review of operations (issue 8): `ringex admin`, `ringex status`, the
supervisor's status file and the systemd script. Each test shows one bug and fails on the
code as reviewed; its docstring says what is right and why."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
import pytest

import procs.cli
import procs.common.endpoints
from config import load_profile
from config.loader import ConfigError
from config.schema import RingexConfig
from procs.admin.client import AdminClient
from procs.common.record_codec import RecordCodec
from procs.common.records import Transfer
from procs.common.run_files import read_status
from procs.common.topology import (
    ADMIN_GATEWAY,
    ROUTER,
    gateway_commands,
    gateway_consumer,
    gateway_replies,
    users_path,
)
from procs.common.users import UserStore
from procs.supervisor.main import Child, Supervisor
from procs.supervisor.plan import ProcessSpec, plan
from shm import Ring
from tests.scripts_loader import load_script
from tests.unit.router.test_router import Exchange, config
from tests.unit.test_review_admin_bugs import _cli, _Pump, _use_config

ROOT = Path(__file__).parents[3]
CODEC = RecordCodec()


@pytest.fixture(autouse=True)
def _in_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # held processes import from the repository root


@pytest.fixture
def ex(instance: str, tmp_path: Path) -> Iterator[Exchange]:
    """Every ring of an instance (the admin ring included), a router and a matcher shell."""
    exchange = Exchange(config(instance, tmp_path))
    yield exchange
    exchange.stop()


@pytest.fixture
def router_line(admin_rings: str) -> Iterator[Any]:
    """The admin command ring's router line, attached by this (live) process: to the admin
    client the instance runs; what ``ringex admin`` published is read from it."""
    ring = Ring.attach(admin_rings, gateway_commands(ADMIN_GATEWAY), CODEC)
    consumer = ring.consumer(ROUTER)
    yield consumer
    consumer.close()
    ring.close()


def _fast_admin(monkeypatch: pytest.MonkeyPatch) -> None:
    """The admin client's 10 s timeouts cut short: nobody answers in these tests."""
    monkeypatch.setattr(AdminClient.create_account, "__defaults__", (0.05,))
    monkeypatch.setattr(AdminClient.transfer, "__defaults__", (None, 0.05))


def _write_profile(path: Path, instance: str, var: Path, extra: str = "") -> Path:
    path.write_text(
        f'instance = "{instance}"\nvar_dir = "{var}"\ngateways = []\n'
        "[marketdata]\nenabled = false\n[database]\nenabled = false\n"
        "[ring]\ncapacity = 1024\n"
        '[wait]\nstrategy = "blocking"\npark_timeout_s = 0.01\n'
        f"[supervisor]\nrestart_limit = 3\nmetrics = false\n{extra}"
    )
    return path


# -- 1. add-user for a comp id that exists moves that user to a new, empty account ------------


def test_add_user_for_an_existing_comp_id_keeps_its_account(
    ex: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ringex admin add-user --username alice ...` run a second time (a script run again,
    a second operator, a typo'd username of someone else) opens the next free account, and
    ``UserStore.add`` ("create or replace") rebinds ALICE to it: her funded account, with
    her balance and her resting orders, is no longer reachable by her logon; she logs on to
    an empty account (and whoever ran it set her password). A user's comp id names one
    account for good (README: a FIX user connects with SenderCompID = its comp id to *its*
    account): a second add-user of an existing comp id is refused, or keeps its account."""
    _use_config(monkeypatch, ex.cfg)
    base = ["admin", "add-user", "--profile", "x", "--username", "ALICE"]
    with _Pump(ex):
        assert _cli([*base, "--password", "pw-1", "--deposit", "USD=1000"]) == 0
        first = UserStore(users_path(ex.cfg)).get("ALICE")
        assert first is not None
        _cli([*base, "--password", "pw-2"])  # again: refused, or at least harmless
    now = UserStore(users_path(ex.cfg)).get("ALICE")
    assert now is not None and now.account == first.account, (
        f"ALICE moved from her funded account {first.account} to account {now and now.account}"
    )


# -- 2. an account id the router cannot read is published anyway ------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["create-account", "--account", "-1"],
        ["create-account", "--account", str(2**64)],
        ["deposit", "--account", "-5", "--asset", "USD", "--amount", "1"],
        ["add-user", "--username", "bob", "--password", "pw", "--account", "-7"],
    ],
    ids=["create-negative", "create-2**64", "deposit-negative", "add-user-negative"],
)
def test_an_account_id_the_records_cannot_carry_is_refused_before_it_is_sent(
    argv: list[str],
    tmp_path: Path,
    admin_rings: str,
    router_line: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Account ids are unsigned 64-bit in every record (``AccountId = U64``), but ``--account``
    is any int: ``create-account --account -1`` (or a deposit to it) is published as a record
    the router cannot decode (RecordDecodeError: logged and skipped), so the command waits its
    10 s and says "no answer from the router (is it running?)" of a running router, and a
    deposit adds "the transfer may still be applied: retry with --key"; ``--account 2**64``
    is an ``EncodeError`` traceback. The idempotency key had the same bug, fixed in
    ``AdminClient.transfer`` (test_review_admin_bugs: "an idempotency key the router cannot
    read is refused"); the account needs the same check: refused with a message naming it,
    nothing sent."""
    cfg = config(admin_rings, tmp_path)
    _use_config(monkeypatch, cfg)
    _fast_admin(monkeypatch)
    try:
        code = _cli(["admin", *argv[:1], "--profile", "x", *argv[1:]])
    except msgspec.EncodeError as exc:
        pytest.fail(f"a traceback, not a message: EncodeError {exc}")
    assert code != 0
    router_line.read(64)  # RecordDecodeError: what the router would log and skip


# -- 3. `ringex admin halt` on a dead instance's leftover rings says "sent", exit 0 -----------


def _leave_dead_instance_rings(instance: str) -> None:
    """The admin rings as a supervisor killed outright leaves them: every pid they name dead
    (``ringex run`` removes them at its next start)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        try:
            Ring.create(
                instance, gateway_commands(ADMIN_GATEWAY), CODEC, capacity=64, consumers=[ROUTER]
            )
            Ring.create(
                instance,
                gateway_replies(ADMIN_GATEWAY),
                CODEC,
                capacity=64,
                consumers=[gateway_consumer(ADMIN_GATEWAY)],
            )
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


@pytest.mark.parametrize("command", ["halt", "resume"])
def test_halt_on_a_dead_instance_is_not_reported_sent(
    command: str,
    instance: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A supervisor killed outright (OOM, SIGKILL) takes its processes with it and leaves its
    segments until the next ``ringex run`` removes them. ``ringex admin halt BTC-USD`` then
    attaches the dead admin ring, publishes into it and prints "halt BTC-USD: sent" with exit
    status 0: an operator halting a symbol in an emergency is told it went, and it never
    will (no router reads that ring, and the next start removes it). ``_admin_client``
    already says "instance X is not running" where the rings are gone; where nobody is
    attached to them (the router's line on the admin command ring names a dead pid) it must
    say the same, with a non-zero exit status."""
    _leave_dead_instance_rings(instance)
    _use_config(monkeypatch, config(instance, tmp_path))
    code = _cli(["admin", command, "--profile", "x", "BTC-USD"])
    out = capsys.readouterr()
    assert code != 0, f"exit {code}: {out.out.strip()!r} for an instance that is not running"


# -- 4. status of a starting instance: a held process's uptime is the host's --------------------


def test_a_held_process_shows_no_uptime_it_does_not_have(instance: str, tmp_path: Path) -> None:
    """``Supervisor.run`` writes the status ("starting") right after ``prestart``: every process
    is started and held after its imports, and ``Child.started_at`` is still 0.0 (set only
    by ``_release``). ``write_status`` reports ``uptime_s = monotonic() - 0.0``: seconds
    since the host booted (days, on a server) for every process of an instance that is
    only starting; ``start`` writes the status again only once all are ready (a recovery
    may take ``ready_timeout_s``), so `ringex status` shows it all along. The metrics say
    the same (``ringex_process_start_time_seconds`` = the boot time). A process's uptime is
    since it was started (or 0 while held); its start time is not before it was spawned."""
    profile = _write_profile(tmp_path / "p.toml", instance, tmp_path / "var")
    cfg = load_profile(str(profile))
    sup = Supervisor(cfg, str(profile))
    sup.children = [Child(ProcessSpec("held", "json", (), (), "", ""))]  # imports, then waits
    spawned = time.time()
    sup.prestart()
    try:
        sup.write_status()
        samples = sup.process_samples()
    finally:
        sup.discard_held()
    status = read_status(cfg)
    assert status is not None
    uptime = status["processes"][0]["uptime_s"]
    assert uptime <= time.time() - spawned + 1, f"uptime {uptime} s of a process just started"
    start = samples[0].start_time_s
    assert start == 0 or start >= spawned - 1, (
        f"start time {start} is {spawned - start:.0f} s before the process was spawned"
    )


# -- 5. `ringex status` endpoints of an IPv6 host are not URLs ---------------------------------


def test_status_endpoints_of_an_ipv6_host_are_urls_a_client_can_use() -> None:
    """``endpoints`` formats ``http://{host}:{port}/``: with ``host = "::1"`` (an IPv6
    listener, which the metrics server supports: it picks the address family and brackets
    the host in the URL it reports) `ringex status` prints ``ws://::1:8765/stream``, which
    no client parses (RFC 3986 3.2.2: an IPv6 literal in a URL is in brackets). The same
    configured metrics URL is shown bracketed while the supervisor runs and unbracketed
    when it does not. Each URL names the configured host and port."""
    raw = {
        "marketdata": {"host": "::1", "port": 8765},
        "supervisor": {"metrics_host": "::1", "metrics_port": 9464},
        "gateways": [{"name": "gw1", "id": 1, "host": "::1", "rest": {"host": "::1"}}],
    }
    cfg = msgspec.convert(raw, RingexConfig)
    shown = procs.common.endpoints.endpoints(cfg, {"state": "stopped", "metrics_url": ""})
    for name, port in [("rest gw1", 8080), ("websocket", 8765), ("web page", 8765),
                       ("metrics", 9464)]:  # fmt: skip
        url = shown[name]
        try:
            parts = (urlsplit(url).hostname, urlsplit(url).port)
        except ValueError as exc:
            pytest.fail(f"{name}: {url!r} is not a URL ({exc})")
        assert parts == ("::1", port), f"{name}: {url!r}"


# -- 6. systemd units: a restart window the config takes crashes the script --------------------


@pytest.mark.parametrize("key", ["restart_window_s", "ready_timeout_s"])
def test_systemd_units_of_an_unbounded_window_are_commands_not_a_traceback(
    key: str, instance: str, tmp_path: Path
) -> None:
    """``supervisor.restart_window_s`` and ``ready_timeout_s`` are floats > 0 with no upper
    bound, so ``inf`` loads (the supervisor takes it: restarts counted forever, a recovery
    waited for however long it takes). ``scripts/systemd_units.py start`` then dies in
    ``_span`` with "OverflowError: cannot convert float infinity to integer" (``--dry-run``
    too). Either the config refuses the value at load, naming it, or the unit gets a span
    systemd parses (``infinity``)."""
    profile = _write_profile(tmp_path / "p.toml", instance, tmp_path / "var", f"{key} = inf\n")
    try:
        cfg = load_profile(str(profile))
    except ConfigError as exc:
        assert key in str(exc)
        return
    units = load_script("systemd_units", "review5")
    opts = units.Options(profile=str(profile), workdir=tmp_path)
    spec = plan(cfg)[0]  # the matcher: waited for, so TimeoutStartSec is its ready timeout
    try:
        command = units.run_command(cfg, spec, opts)
    except (OverflowError, ValueError) as exc:
        pytest.fail(f"{key} = inf: {type(exc).__name__}: {exc}")
    wanted = ("StartLimitIntervalSec=", "TimeoutStartSec=")
    spans = [a.split("=", 1)[1] for a in command if a.startswith(wanted)]
    assert len(spans) == 2 and all(re.fullmatch(r"infinity|\d+(ms|s)", s) for s in spans), spans


# -- 7. withdraw --amount +10 is "not a decimal number '-+10'" ---------------------------------


def test_withdraw_takes_an_explicitly_positive_amount_as_deposit_does(
    tmp_path: Path,
    admin_rings: str,
    router_line: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``deposit --amount +10`` deposits 10 (``Decimal("+10")``), but ``withdraw --amount
    +10`` prefixes a minus sign to the text and refuses "amount '-+10' is not a decimal
    number", a value the operator never typed. Both take the same positive decimal amount
    (README: "deposit and withdraw say which way"): the withdrawal of +10 is sent as -10."""
    _use_config(monkeypatch, config(admin_rings, tmp_path))
    _fast_admin(monkeypatch)
    argv = ["--profile", "x", "--account", "100", "--asset", "USD", "--amount", "+10"]
    _cli(["admin", "withdraw", *argv])
    err = capsys.readouterr().err
    assert "-+10" not in err, err
    sent = [r for r in router_line.read(64) if isinstance(r, Transfer)]
    assert [r.amount for r in sent] == [-100_000], sent  # 10 USD, 4 decimals
