"""Review 50 of operations: `ringex run/stop/status`, `ringex admin`, the metrics and the
supervisor's watch, as an operator of a venue meets them.

Each test failed on the code it was written against, for the fault it names (its docstring:
what README asks, what the code did and where, and what happened), and passes since its fix
(the same commit), but one, a limit documented then, which passes since a later fix. Real
instances are started with `ringex run --detach` where the fault needs the real processes
(a standby, a FIX gateway, the router); the supervisor's own loop runs here over stand-in
processes, which run this module under ``python -m procs.supervisor.held <this module> MODE
...`` (``main`` below), as ``test_review_supervisor_bugs`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from config import load_profile
from config.loader import ConfigError
from config.schema import RingexConfig
from procs.common.record_codec import RecordCodec
from procs.common.records import Record
from procs.common.run_files import read_status
from procs.common.topology import create_rings
from procs.supervisor.main import Child, Supervisor
from procs.supervisor.metrics import RingexCollector
from procs.supervisor.plan import ProcessSpec
from shm import Ring
from shm.inspect import list_segments
from shm.liveness import process_start
from tests.e2e.test_pipeline import place
from tests.free_ports import free_port
from tests.unit.gateway.harness import Client
from tests.unit.supervisor.test_supervisor import wait_for
from tests.unit.supervisor.test_supervisor import write_profile as small_profile

ROOT = Path(__file__).parents[3]
THIS = "tests.unit.supervisor.test_review50_ops"


# -- the stand-in processes ------------------------------------------------------------------


def main(argv: list[str]) -> int:
    """A supervised stand-in (``held.py`` calls it): ``sleep`` sleeps until it is killed;
    ``slow-again MARKER RING DELAY`` holds its line on RING at once on its first start (it
    writes MARKER) and only after DELAY seconds on a later one: a process whose restart
    recovers for a while (a router replaying its journal), then sleeps."""
    profile, args = argv[1], argv[2:]  # after "--profile <file>", which every process gets
    if args[0] == "slow-again":
        marker, ring_name, delay = Path(args[1]), args[2], float(args[3])
        if marker.exists():
            time.sleep(delay)
        marker.write_text("started")
        cfg = load_profile(profile)
        ring = Ring.attach(cfg.instance, ring_name, RecordCodec())
        line = ring.consumer("b", cfg.wait.build())
        assert line is not None  # held: the supervisor sees it ready while it lives
    while True:
        time.sleep(1)


def fake(name: str, *args: str, ready_ring: str = "", ready_consumer: str = "") -> ProcessSpec:
    return ProcessSpec(name, THIS, args, (), ready_ring, ready_consumer)


# -- helpers ---------------------------------------------------------------------------------


def ringex(*args: str, cwd: Path = ROOT, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """`ringex ARGS` as a shell runs it, in ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "procs.cli", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def exchange_profile(
    path: Path, instance: str, *, var_dir: str, supervisor: str = "", sections: str = ""
) -> Path:
    """A small whole exchange: a matcher, the router and a FIX gateway on a free port; no
    market data, no database, no metrics. ``supervisor``: more [supervisor] keys;
    ``sections``: more tables, before the gateway's."""
    path.write_text(
        f'instance = "{instance}"\nvar_dir = "{var_dir}"\n'
        "[marketdata]\nenabled = false\n[database]\nenabled = false\n"
        "[ring]\ncapacity = 1024\n"
        '[wait]\nstrategy = "blocking"\npark_timeout_s = 0.01\n'
        f"[supervisor]\nmetrics = false\n{supervisor}"
        f"{sections}"
        f'[[gateways]]\nname = "gw1"\nid = 1\nport = {free_port()}\n'
    )
    return path


@contextlib.contextmanager
def detached(profile: Path, cwd: Path = ROOT) -> Iterator[RingexConfig]:
    """`ringex run --detach` of ``profile`` from ``cwd``; `ringex stop` from there after."""
    try:
        started = ringex("run", "--config", str(profile), "--detach", "--timeout", "60", cwd=cwd)
        assert started.returncode == 0, started.stderr
        yield load_profile(str(profile))
    finally:
        ringex("stop", "--config", str(profile), "--timeout", "60", cwd=cwd)


def process(cfg: RingexConfig, name: str) -> dict[str, Any]:
    """Process ``name``'s entry in ``status.json``."""
    status = read_status(cfg) or {}
    return next(p for p in status.get("processes", []) if p["name"] == name)


def cursor(instance: str, ring_name: str) -> int:
    ring = Ring.attach(instance, ring_name, RecordCodec())
    try:
        return ring.info().cursor
    finally:
        ring.close()


async def until(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"not true within {timeout_s} s"
        await asyncio.sleep(0.005)


@pytest.fixture
def _in_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the stand-ins import this module from the repository root


# -- 1. admin commands to a standby: "sent", and lost -----------------------------------------


def test_admin_halt_sent_to_a_standby_is_refused_not_reported_sent(
    instance: str, tmp_path: Path
) -> None:
    """README (Operate): `halt` "says 'sent' once the command is in the admin ring", and the
    admin commands refuse an instance that is not running; a standby "runs only the standby
    process" (Hot standby): no router, no books, no admin path until it is promoted.

    The code: ``Supervisor.create_rings`` (``procs/supervisor/main.py``) creates every ring of
    ``topology.rings(cfg)`` for a standby too, the admin rings included, and
    ``AdminClient`` (``procs/admin/client.py``) only looks for them. So `ringex admin halt
    BTC-USD --config standby.toml` (an operator in a failover, one config off) publishes the
    halt into a ring no process reads, prints "halt BTC-USD: sent" and exits 0; the halt
    reaches no book, and the promotion makes new rings, so it never does. `end-session`
    likewise; `deposit`, `balances` and `cancel-all` wait 10 s and say the router did not
    answer "(is it running?)", and `deposit` that the transfer "may still be applied".

    Actual: exit 0, "halt BTC-USD: sent", the command left unread in the standby's gw0-cmd.
    """
    profile = exchange_profile(
        tmp_path / "standby.toml",
        instance,
        var_dir=str(tmp_path / "var"),
        sections=f'[replication]\nprimary = "127.0.0.1:{free_port()}"\nprestart = false\n',
    )
    edits = [  # the users and API key files are the primary's, shipped (a review, 2026-12-03)
        ["set-password", "--comp-id", "X", "--password", "pw"],
        ["set-user", "--comp-id", "X", "--cancel-on-disconnect", "on"],
        ["remove-user", "--comp-id", "X"],
        ["revoke-key", "--api-key", "K"],
    ]
    with detached(profile):
        halted = ringex("admin", "halt", "BTC-USD", "--config", str(profile))
        edited = [ringex("admin", *edit, "--config", str(profile)) for edit in edits]
    for done in (halted, *edited):
        assert done.returncode == 1 and "is a standby" in done.stderr, (done.args, done.stderr)


# -- 2. `ringex stop` from another directory: "not running", exit 0, while it runs -----------


def test_stop_from_another_directory_does_not_say_a_running_instance_is_not_running(
    instance: str, tmp_path: Path
) -> None:
    """README (Operate): exit status 0 is "done (`stop` of an instance that is not running
    ... 0)"; 1 is "not running, ... `stop` timed out". An operator's deploy script relies on
    `ringex stop` returning 0 only when nothing of the instance runs.

    The code: ``_stop`` (``procs/cli.py``) looks for the supervisor only in
    ``var/<instance>/run/status.json``, and ``var_dir`` (relative in every shipped profile:
    "var") is taken relative to the working directory. Run from any other directory, it
    finds no status file, prints "instance ... is not running" and exits 0, while the
    supervisor runs and its segments are live (``list_segments`` sees them, as ``ringex run``
    does when it refuses a second start). `ringex status` there says "stopped" too, and
    `admin add-user` writes a users file the gateways never read. The fix belongs in
    ``procs/cli.py`` (``_stop``, ``_print_status``: the instance's live segments say it runs;
    say where its status file was looked for and exit 1) or in ``config/loader.py``
    (resolve a relative ``var_dir`` against the config file).

    Actual: exit 0, "instance ... is not running"; the supervisor still runs.
    """
    started_in, elsewhere = tmp_path / "ops", tmp_path / "home"
    started_in.mkdir()
    elsewhere.mkdir()
    profile = exchange_profile(tmp_path / "p.toml", instance, var_dir="var")
    with detached(profile, cwd=started_in):
        stopped = ringex("stop", "--config", str(profile), "--timeout", "60", cwd=elsewhere)
        live = [s.name for s in list_segments(instance) if not s.stale]
    assert stopped.returncode != 0 or not live, (stopped.stdout, live)


# -- 3. a gateway never beats: any pause with a reply waiting is "stuck" ----------------------


def test_a_gateway_paused_shorter_than_stuck_after_s_is_not_killed_as_stuck(
    instance: str, tmp_path: Path
) -> None:
    """README (Operate): "records waiting for it while neither its position nor its heartbeat
    moved for `supervisor.stuck_after_s` (30) is logged as stuck, and with `restart_stuck =
    true` it is killed and restarted like a crash"; `status --json` shows each process's
    ``heartbeat_age_s`` "since it last beat on the ring it reads".

    The code: the gateway reads its rings with ``Consumer.read`` and naps on asyncio
    (``procs/gateway/server.py``, ``pump``/``_poll``), never through ``Consumer.wait``, the
    only place a line's heartbeat is stored after its attach (``shm/consumer.py``). So a
    gateway's heartbeat is as old as the gateway: ``heartbeat_age_s`` grows with its uptime
    (an hour's gateway shows 3600 s, healthy), and ``Supervisor._look_for_stuck`` finds it
    past ``stuck_after_s`` always; ``classify`` then calls the gateway stuck as soon as two
    looks a second apart see a reply waiting at the same position, which any pause of a
    second or so makes (a long REST request, a page fault storm, a GC pause; or a look that
    lands between the router's publish and the gateway's commit). With ``restart_stuck`` the
    healthy gateway is SIGKILLed: its FIX sessions drop, and the kills count toward
    ``restart_limit``. The fix belongs in the gateway (beat on its lines from the poll loop,
    e.g. ``Consumer.heartbeat()`` each pass or nap) or in ``_look_for_stuck`` (require no
    progress for ``stuck_after_s``, not one look).

    Here: ``stuck_after_s = 4``; the gateway is paused (SIGSTOP) for 2.5 s with the router's
    reject of its order waiting on gw1-rep.

    Actual: "gateway-gw1 looks stuck: 1 records wait on gw1-rep ... killed, to be restarted";
    its restarts go to 1 and the client's connection is reset.
    """
    profile = exchange_profile(
        tmp_path / "p.toml",
        instance,
        var_dir=str(tmp_path / "var"),
        supervisor="stuck_after_s = 4\nrestart_stuck = true\n",
    )
    with detached(profile) as cfg:
        added = ringex("admin", "add-user", "--username", "POOR", "--password", "pw",
                       "--config", str(profile))  # fmt: skip
        assert added.returncode == 0, added.stderr
        gateway, router = process(cfg, "gateway-gw1")["pid"], process(cfg, "router")["pid"]
        wait_for(lambda: process(cfg, "gateway-gw1")["uptime_s"] > 5.5, 20)

        async def order_answered_while_the_gateway_pauses() -> object:
            client = Client("POOR")
            await client.connect(cfg.gateways[0].port)
            await client.logon("pw")
            commands, replies = cursor(instance, "gw1-cmd"), cursor(instance, "gw1-rep")
            os.kill(router, signal.SIGSTOP)  # so that its reply comes while the gateway pauses
            try:
                await place(client, "r50", "1", "1", "100.00")  # no funds: the router rejects
                await until(lambda: cursor(instance, "gw1-cmd") > commands)
                os.kill(gateway, signal.SIGSTOP)
            finally:
                os.kill(router, signal.SIGCONT)
            try:
                await until(lambda: cursor(instance, "gw1-rep") > replies)
                await asyncio.sleep(2.5)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(gateway, signal.SIGCONT)
            report = await client.recv(timeout=5)
            await client.aclose()
            return report

        report = asyncio.run(order_answered_while_the_gateway_pauses())
        time.sleep(1.5)  # another look
        after = process(cfg, "gateway-gw1")
    assert (after["pid"], after["restarts"]) == (gateway, 0)
    assert report is not None


# -- 4. balances of an account that does not exist: "no balances", exit 0 ---------------------


def test_balances_of_an_account_never_opened_is_refused_not_shown_empty(
    instance: str, tmp_path: Path
) -> None:
    """Failed on the code it was written against, a documented limit then; passes since its
    fix (the router's answer to a watch of an account not open says so: ``NOT_OPEN``).

    README (Operate): `balances` "prints what the router holds for an account now"; exit
    1 is "refused or unanswered by the exchange"; `cancel-all` of "an account never opened
    is refused, `UNKNOWN_ACCOUNT`, rather than answered done", and `deposit` to one says
    UNKNOWN_ACCOUNT (exit 1). An operator checking a customer's account with one digit
    wrong must not read "no balances".

    The code: ``AdminClient.balances`` (``procs/admin/client.py``) sends a ``WatchBalances``
    and returns the ``Balance`` rows up to the last; the router answers an account it does
    not hold with the same empty last row as an open account without funds, and
    ``_print_balances`` (``procs/admin/commands.py``) prints "account N: no balances" (JSON:
    ``{"balances": {}}``), exit 0. The fix belongs in the router's watch answer (a refusal
    code for an unknown account, as the mass cancel has) and in ``balances``. (A refused
    ``deposit`` to such an account also prints "free balance 0.000000" for it.)

    Actual: exit 0, "account 8: no balances", as for the open, empty account 7.
    """
    profile = exchange_profile(tmp_path / "p.toml", instance, var_dir=str(tmp_path / "var"))
    conf = ("--config", str(profile))
    with detached(profile):
        opened = ringex("admin", "create-account", "--account", "7", *conf)
        assert opened.returncode == 0, opened.stderr
        empty = ringex("admin", "balances", "--account", "7", *conf)
        unknown = ringex("admin", "balances", "--account", "8", *conf)
    assert empty.returncode == 0, empty.stderr  # open, nothing in it: no balances is right
    assert unknown.returncode == 1, unknown.stdout
    assert "UNKNOWN_ACCOUNT" in unknown.stderr


# -- 5, 6. while one process's restart recovers, `ringex status` misreports ------------------


def while_b_recovers(
    instance: str, tmp_path: Path, look: Callable[[Path, Supervisor], dict[str, Any]]
) -> dict[str, Any]:
    """Run a supervisor over two stand-ins, ``a`` (sleeps) and ``b`` (whose restart holds its
    ready line only after 7 s); kill ``b`` and, while its restart recovers, ``look(profile,
    supervisor)`` from another thread; return what it saw. The supervisor's own ``watch``
    runs here, in the main thread, as `ringex run` runs it."""
    profile = small_profile(tmp_path / "p.toml", instance, tmp_path / "var")
    cfg = load_profile(str(profile))
    ring = Ring.create(instance, "x", RecordCodec(), capacity=64, consumers=["b"])
    marker = tmp_path / "b.started"
    sup = Supervisor(cfg, str(profile))
    specs = (
        fake("a", "sleep"),
        fake("b", "slow-again", str(marker), "x", "7", ready_ring="x", ready_consumer="b"),
    )
    sup.children = [Child(spec) for spec in specs]
    sup._rings = {"x": ring}  # b is ready once it holds its line there
    seen: dict[str, Any] = {}
    done = threading.Event()

    def looker() -> None:
        try:
            b = sup.children[1]
            assert b.process is not None
            first = b.process.pid
            os.kill(first, signal.SIGKILL)
            wait_for(lambda: b.process is not None and b.process.pid != first, 10)
            wait_for(lambda: process(cfg, "b")["pid"] != first, 10)  # restarted, recovering
            seen.update(look(profile, sup))
        except BaseException as exc:  # the main thread reports it
            seen["error"] = exc
        finally:
            done.set()

    try:
        sup.start()
        thread = threading.Thread(target=looker, daemon=True)
        thread.start()
        sup.watch(done.is_set)
        thread.join(30)
    finally:
        sup.stop()
    if "error" in seen:
        raise seen["error"]
    return seen


@pytest.mark.usefixtures("_in_root")
def test_status_text_says_a_restarted_process_is_recovering_not_up(
    instance: str, tmp_path: Path
) -> None:
    """README (Operate): `--wait-ready` waits "until every process is alive and ready, so
    not while one recovers from a restart", and says "which processes are down or
    recovering"; `status --json` has ``ready`` and ``heartbeat_age_s`` per process. The
    text, an operator's first look (a router replaying its journal after a crash, for
    seconds or minutes), must tell a recovering process from a serving one.

    The code: ``_print_status`` (``procs/cli.py``) prints ``'up' if p['alive'] else 'down'``
    and neither ``ready`` nor ``heartbeat_age_s``: a process the supervisor has restarted
    and is waiting for (``Supervisor._restart``: alive, not ready) reads "up", as one that
    serves does. The fix: print "recovering" (alive, not ready) and the heartbeat age.

    Actual: "b ... up ... restarts 1" while `status --wait-ready --timeout 0` says "not
    ready: b recovering".
    """

    def look(profile: Path, sup: Supervisor) -> dict[str, Any]:
        text = ringex("status", "--config", str(profile)).stdout
        waited = ringex("status", "--config", str(profile), "--wait-ready", "--timeout", "0")
        return {"text": text, "why": waited.stderr}

    seen = while_b_recovers(instance, tmp_path, look)
    line = next(row for row in seen["text"].splitlines() if row.split()[:1] == ["b"])
    assert "b recovering" in seen["why"], seen["why"]  # what --wait-ready knows
    assert "recovering" in line, line


@pytest.mark.usefixtures("_in_root")
def test_a_process_that_dies_while_another_recovers_is_not_shown_up(
    instance: str, tmp_path: Path
) -> None:
    """README: the supervisor "restarts one that dies"; `ringex status` shows per process
    ``alive`` and trusts the pids of ``status.json`` "only while each process's start time
    matches" (a dead one is not shown up).

    The code: ``Supervisor.watch`` (``procs/supervisor/main.py``) calls ``_restart`` inline,
    and ``_restart`` sleeps its backoff and then ``_wait_ready`` for up to
    ``ready_timeout_s`` (60 s by default: a router's or a big matcher's recovery) without
    looking at the other processes, writing ``status.json`` or polling the session end.
    A process that dies meanwhile stays dead and, in ``status.json``, "alive" with its dead
    pid; ``_print_status`` (``procs/cli.py``) checks pids only once the supervisor is gone.
    The fix belongs in ``watch``/``_restart`` (wait for readiness without blocking the
    loop: one state per child) and, as a safety net, in ``_print_status`` (check each pid
    and its start time always).

    Here: ``b``'s restart recovers for 7 s; ``a`` is killed 0.1 s into it and status is read
    1.5 s later.

    Actual: ``a`` "alive": true, "up", with the pid of a process that no longer exists.
    """

    def look(profile: Path, sup: Supervisor) -> dict[str, Any]:
        a = sup.children[0].process
        assert a is not None
        os.kill(a.pid, signal.SIGKILL)
        time.sleep(1.5)
        doc = json.loads(ringex("status", "--config", str(profile), "--json").stdout)
        return {"a": next(p for p in doc["processes"] if p["name"] == "a"), "pid": a.pid}

    seen = while_b_recovers(instance, tmp_path, look)
    # down, or up again under a new pid: never "alive" under the pid that died
    assert not (seen["a"]["alive"] and seen["a"]["pid"] == seen["pid"]), seen["a"]


# -- 7. a gateway named "admin": two samples of one series -----------------------------------


def test_metrics_never_serve_two_samples_of_one_series(instance: str, tmp_path: Path) -> None:
    """README (Metrics): ``ringex_gateway_commands_total{gateway}`` and
    ``ringex_router_replies_total{gateway}``, the admin ring's under ``gateway="admin"``;
    a config that loads runs (Configure: "A config that could not run is refused at load").
    Prometheus refuses a whole scrape holding two samples of one series ("duplicate sample
    for timestamp"): every metric of the instance is then lost.

    The code: ``RingexCollector.__init__`` (``procs/supervisor/metrics.py``) labels the admin
    rings "admin" and each gateway's rings with its name, and a gateway's name may be
    "admin" (``config/fields.py`` ``Name``; ``_check_processes`` in ``config/schema.py``
    refuses a matcher named like a gateway, not this). The fix: refuse the name at load, or
    label the admin rings with a name no gateway can take.

    Actual: two ``ringex_gateway_commands_total{gateway="admin"}`` samples (and two of
    ``ringex_router_replies_total``).
    """
    profile = tmp_path / "p.toml"
    profile.write_text(
        f'instance = "{instance}"\nvar_dir = "{tmp_path / "var"}"\n'
        "[marketdata]\nenabled = false\n[database]\nenabled = false\n"
        "[ring]\ncapacity = 1024\n"
        '[[gateways]]\nname = "admin"\nid = 1\n'
    )
    with pytest.raises(ConfigError, match="gateway name 'admin'"):  # the fix: refused at load
        load_profile(str(profile))
    profile.write_text(profile.read_text().replace('name = "admin"', 'name = "main"'))
    cfg = load_profile(str(profile))
    rings: dict[str, Ring[Record]] = create_rings(cfg, RecordCodec())
    collector = RingexCollector(cfg, "test", rings, list, lambda: "running")
    try:
        series = Counter(
            (sample.name, tuple(sorted(sample.labels.items())))
            for family in collector.collect()
            for sample in family.samples
        )
    finally:
        collector.close()
        for ring in rings.values():
            ring.close()
    assert [key for key, count in series.items() if count > 1] == []


# -- 8. a supervisor that died reads as a clean stop ------------------------------------------


def test_status_says_the_supervisor_died_rather_than_a_clean_stop(
    instance: str, tmp_path: Path
) -> None:
    """README (Operate): "`ringex status` shows why a failure stopped the instance
    (`reason:`)", and `status --wait-ready` says "whether the instance is not running (and
    why it stopped)"; a supervisor killed outright (the OOM killer, `kill -9`, a host's
    watchdog) takes every process with it.

    The code: ``_print_status`` (``procs/cli.py``) finds the supervisor of a ``status.json``
    that says "running" gone and sets ``state`` to "stopped", keeping its ``reason`` (empty:
    the supervisor never got to write one), and ``not_ready`` says "not running". So a
    crashed exchange reads exactly as one an operator stopped: "stopped", no reason line,
    exit 0; only the stale segments `ringex shm ls` lists hint otherwise. The fix: when the
    file's state is not "stopped" and its supervisor is gone, say so in ``reason`` ("the
    supervisor (pid N) ended while <state>, without stopping the instance").

    Actual: "instance ...: stopped (primary)", no "reason:", ``"reason": ""``.
    """
    profile = small_profile(tmp_path / "p.toml", instance, tmp_path / "var")
    with detached(profile) as cfg:
        status = read_status(cfg)
        assert status is not None
        os.kill(status["supervisor_pid"], signal.SIGKILL)
        pids = [p["pid"] for p in status["processes"]]
        wait_for(lambda: all(process_start(pid) is None for pid in pids), 30)  # they die too
        text = ringex("status", "--config", str(profile)).stdout
        doc = json.loads(ringex("status", "--config", str(profile), "--json").stdout)
    assert doc["state"] == "stopped"  # nothing runs: that much is right
    assert doc["reason"], doc["reason"]
    assert "reason:" in text, text
