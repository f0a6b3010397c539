"""Review 34 of the metrics and the systemd units, as an operator of a venue meets them.

Metrics (a real supervisor, real processes, scraped over HTTP): a counter never goes down
while the supervisor runs, though a gateway restarts (its FIX counts start over in memory and
overwrite its page) or any process does (its CPU time starts over); a counter page of other
names (another version's) is skipped, not a failed scrape; rejects by reason (not counted).
Units (dry runs, systemd's own parser where the host has it): ``supervisor.nice`` applied,
a ``$`` in a path taken literally, a negative watchdog refused, a CPU the host lacks refused
before anything is created."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from array import array
from pathlib import Path

import pytest

from config import load_profile
from config.schema import RingexConfig
from procs.common.records import Record
from procs.common.stats import (
    GATEWAY_COUNTERS,
    REJECT_REASONS,
    LatencyHistogram,
    gateway_page,
    matcher_page,
    reject_slot,
)
from procs.supervisor.metrics import MetricsServer, ProcessSample, RingexCollector, proc_stat
from shm import Ring
from shm.counters import Counters
from shm.inspect import list_segments
from tests.e2e.running import ringex, running_exchange
from tests.e2e.test_pipeline import kill_and_wait, place
from tests.scripts_loader import load_script
from tests.unit.gateway.harness import Client
from tests.unit.supervisor.test_metrics import cfg, rings, scrape, value  # noqa: F401
from tests.unit.supervisor.test_systemd_units import lines, option, props, write_profile

units = load_script("systemd_units", "review34")

ACK = "ringex_fix_order_ack_latency_seconds"


def gateway_counts(orders: int, acks: int, rejects: int, *latencies_ns: int) -> array[int]:
    """A gateway's page as its shell stores it: its in-memory counts, from its start."""
    histogram = LatencyHistogram()
    for ns in latencies_ns:
        histogram.record(ns)
    reasons = [0] * len(REJECT_REASONS)
    stages = [0] * (len(GATEWAY_COUNTERS) - 4 - len(histogram.values()) - len(reasons))
    return array("Q", [orders, acks, 0, rejects, *histogram.values(), *reasons, *stages])


# -- metrics: counters never go down --------------------------------------------------------


def test_fix_counters_never_go_down_when_a_gateway_restarts(
    cfg: RingexConfig,  # noqa: F811
    rings: dict[str, Ring[Record]],  # noqa: F811
) -> None:
    collector = RingexCollector(cfg, "test", rings, list, lambda: "running")
    server = MetricsServer(collector, "127.0.0.1", 0)
    page = Counters.open(cfg.instance, gateway_page(1), GATEWAY_COUNTERS)
    try:
        page.values[:] = gateway_counts(5, 5, 1, *[100_000] * 5)
        first = scrape(server.url)
        # the gateway restarts: the same page (same names), its counts from zero again
        page.close()
        page = Counters.open(cfg.instance, gateway_page(1), GATEWAY_COUNTERS)
        page.values[:] = gateway_counts(2, 1, 0, 100_000)
        second = scrape(server.url)
        page.values[:] = gateway_counts(3, 2, 0, 100_000, 100_000)
        third = scrape(server.url)
    finally:
        page.close()
        server.close()
    gw = {"gateway": "gw1"}
    for got, orders, acks, rejects in ((first, 5, 5, 1), (second, 7, 6, 1), (third, 8, 7, 1)):
        assert value(got, "ringex_fix_orders_total", **gw) == orders
        assert value(got, "ringex_fix_acks_total", **gw) == acks
        assert value(got, "ringex_fix_rejects_total", **gw) == rejects
        assert value(got, ACK + "_count", **gw) == acks
        assert value(got, ACK + "_bucket", le="0.0002", **gw) == acks
        assert value(got, ACK + "_sum", **gw) == pytest.approx(acks * 1e-4)


def burner(cpu_s: float) -> subprocess.Popen[bytes]:
    """A process that uses ``cpu_s`` of CPU, then waits (until killed)."""
    code = (
        "import time\nt = time.process_time()\n"
        f"while time.process_time() - t < {cpu_s}: pass\ntime.sleep(120)\n"
    )
    return subprocess.Popen([sys.executable, "-c", code])


def test_cpu_seconds_never_go_down_when_a_process_restarts(
    cfg: RingexConfig,  # noqa: F811
    rings: dict[str, Ring[Record]],  # noqa: F811
) -> None:
    first, second = burner(0.4), burner(0.0)
    processes: list[ProcessSample] = []
    collector = RingexCollector(cfg, "test", rings, lambda: processes, lambda: "running")
    server = MetricsServer(collector, "127.0.0.1", 0)
    cpu = "ringex_process_cpu_seconds_total"
    try:
        deadline = time.monotonic() + 20
        while (proc_stat(first.pid) or (0.0, 0))[0] < 0.4:
            assert time.monotonic() < deadline, "the burner did not burn"
            time.sleep(0.02)
        processes[:] = [ProcessSample("router", first.pid, True, True, 0, time.time())]
        before = value(scrape(server.url), cpu, process="router")
        assert before >= 0.4
        first.kill()
        first.wait()
        processes[:] = [ProcessSample("router", first.pid, False, False, 0, time.time())]
        down = scrape(server.url)  # down: answered, and marked
        assert value(down, "ringex_process_up", process="router") == 0
        assert down.get((cpu, frozenset({("process", "router")})), before) == before
        processes[:] = [ProcessSample("router", second.pid, True, True, 1, time.time())]
        after = value(scrape(server.url), cpu, process="router")
        assert after >= before  # the new process's own time is far below the first's
    finally:
        server.close()
        for p in (first, second):
            p.kill()
            p.wait()


def test_a_page_of_other_counters_is_skipped_not_a_failed_scrape(
    cfg: RingexConfig,  # noqa: F811
    rings: dict[str, Ring[Record]],  # noqa: F811
) -> None:
    """Pages another version of the gateway and matcher made (a rolling upgrade restarts
    them under a running supervisor): each scrape answers, without those counters."""
    gateway = Counters.open(cfg.instance, gateway_page(1), ("orders", "acks"))
    matcher = Counters.open(cfg.instance, matcher_page("m1"), ("last_seq", "trades_new"))
    collector = RingexCollector(cfg, "test", rings, list, lambda: "running")
    server = MetricsServer(collector, "127.0.0.1", 0)
    try:
        got = scrape(server.url)  # an HTTPError (500) before
    finally:
        server.close()
        gateway.close()
        matcher.close()
    assert value(got, "ringex_ring_records_total", ring="gw1-cmd") == 0
    assert not any(name.startswith("ringex_fix_") for name, _ in got)
    assert not any(name == "ringex_trades_total" for name, _ in got)


def test_rejects_are_counted_by_reason(
    cfg: RingexConfig,  # noqa: F811
    rings: dict[str, Ring[Record]],  # noqa: F811
) -> None:
    page = Counters.open(cfg.instance, gateway_page(1), GATEWAY_COUNTERS)
    collector = RingexCollector(cfg, "test", rings, list, lambda: "running")
    server = MetricsServer(collector, "127.0.0.1", 0)
    try:
        counts = gateway_counts(2, 0, 2)  # an unknown symbol and a risk refusal
        first = GATEWAY_COUNTERS.index(f"rejects_{next(iter(REJECT_REASONS.values()))}")
        counts[first + reject_slot(1)] = 1
        counts[first + reject_slot(3)] = 1
        page.values[:] = counts
        got = scrape(server.url)
    finally:
        server.close()
        page.close()
    by_reason = {
        dict(labels)["reason"]: value
        for (name, labels), value in got.items()
        if name == "ringex_fix_rejects_by_reason_total"
    }
    assert by_reason == {name: 0.0 for name in REJECT_REASONS.values()} | {
        "unknown_symbol": 1.0, "exceeds_limit": 1.0,
    }  # fmt: skip
    # the total by gateway is kept as it was (extended, not renamed)
    assert got[("ringex_fix_rejects_total", frozenset({("gateway", "gw1")}))] == 2.0


def test_a_running_exchange_keeps_its_counters_across_a_gateway_restart(
    instance: str, tmp_path: Path
) -> None:
    """The real thing: FIX orders into a gateway, the gateway SIGKILLed and restarted by its
    supervisor, one more order: the orders, acks and CPU counters only went up."""

    def read(url: str, name: str, **labels: str) -> float:
        return scrape(url).get((name, frozenset(labels.items())), 0.0)

    async def acked(client: Client, ref: str) -> None:
        while True:  # what a restart re-sends or cancels may come first
            msg = await client.expect("8", timeout=10)
            if msg.get(11) == ref.encode() and msg.get(150) == b"0":
                return

    with running_exchange(instance, tmp_path, database=False) as profile:
        cfg = load_profile(str(profile))
        url = json.loads(ringex(profile, "status", "--json"))["endpoints"]["metrics"]
        ringex(profile, "admin", "add-user", "--username", "TK", "--password", "pw",
               "--deposit", "USD=100000")  # fmt: skip
        gw, proc = {"gateway": "gw1"}, {"process": "gateway-gw1"}

        async def trade() -> tuple[float, float]:
            client = Client("TK")
            await client.connect(cfg.gateways[0].port)
            await client.logon("pw")
            for ref in ("a1", "a2", "a3"):
                await place(client, ref, "1", "0.1", "10.00")  # buys far below: they rest
                await acked(client, ref)
            deadline = time.monotonic() + 10
            while read(url, "ringex_fix_acks_total", **gw) < 3:
                assert time.monotonic() < deadline, "the gateway did not store its counts"
                await asyncio.sleep(0.05)
            cpu = read(url, "ringex_process_cpu_seconds_total", **proc)
            await client.aclose()
            await kill_and_wait(cfg, "gateway-gw1")
            again = Client("TK")
            await again.connect(cfg.gateways[0].port)
            await again.logon("pw", reset=True)
            await place(again, "b1", "1", "0.1", "10.00")
            await acked(again, "b1")
            await again.aclose()
            return cpu, read(url, "ringex_process_cpu_seconds_total", **proc)

        cpu_before, cpu_after = asyncio.run(trade())
        deadline = time.monotonic() + 10
        while (got := scrape(url)) and value(got, "ringex_fix_acks_total", **gw) == 3:
            assert time.monotonic() < deadline, "the restarted gateway stored no counts"
            time.sleep(0.05)
        assert value(got, "ringex_fix_orders_total", **gw) == 4  # 1 before the fix
        assert value(got, "ringex_fix_acks_total", **gw) == 4
        assert value(got, ACK + "_count", **gw) == 4
        assert cpu_after >= cpu_before


# -- systemd units --------------------------------------------------------------------------


def dry_run(profile: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> list[list[str]]:
    assert units.main(["start", "--profile", str(profile), "--dry-run", *extra]) == 0
    return lines(capsys.readouterr().out, "systemd-run")


def unit(runs: list[list[str]], name: str) -> list[str]:
    (cmd,) = [c for c in runs if option(c, "unit") == name]
    return cmd


def test_units_are_niced_as_the_supervisor_nices_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = write_profile(tmp_path, "sdnice")
    runs = dry_run(profile, capsys)  # supervisor.nice's default: the writer at 10
    assert props(unit(runs, "ringex-sdnice-dbwriter.service"))["Nice"] == "10"
    assert "Nice" not in props(unit(runs, "ringex-sdnice-router.service"))
    profile.write_text(profile.read_text() + 'nice = { router = 2, "gateway-gw1" = 5 }\n')
    runs = dry_run(profile, capsys)
    assert props(unit(runs, "ringex-sdnice-router.service"))["Nice"] == "2"
    assert props(unit(runs, "ringex-sdnice-gateway-gw1.service"))["Nice"] == "5"
    assert "Nice" not in props(unit(runs, "ringex-sdnice-dbwriter.service"))  # not named now


def test_a_dollar_in_a_path_reaches_the_process_as_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """systemd expands ``$NAME`` in a service's command line: ``$$`` is a literal ``$``."""
    where = tmp_path / "ops $HOME and ${USER}"
    where.mkdir()
    profile = write_profile(where, "sddollar")
    runs = dry_run(profile, capsys)
    for cmd in runs:
        tail = cmd[cmd.index("--") + 1 :]
        assert tail[tail.index("--profile") + 1] == str(profile).replace("$", "$$")
        assert tail[0] == sys.executable.replace("$", "$$")
        assert option(cmd, "working-directory") == str(Path.cwd())  # not expanded there


def test_a_negative_watchdog_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    profile = write_profile(tmp_path, "sdwd")
    with pytest.raises(SystemExit) as exited:  # not "WatchdogSec=-5s", which systemd refuses
        units.main(["start", "--profile", str(profile), "--dry-run", "--watchdog-sec", "-5"])
    assert exited.value.code == 2
    assert "--watchdog-sec" in capsys.readouterr().err


def test_the_writers_watchdog_outlasts_its_naps_while_postgres_is_down(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It pings between naps of up to ``database.retry_max_s`` while PostgreSQL is down."""
    profile = write_profile(tmp_path, "sdnap")
    profile.write_text(profile.read_text() + "[database]\nretry_max_s = 45.5\n")
    runs = dry_run(profile, capsys)
    assert props(unit(runs, "ringex-sdnap-dbwriter.service"))["WatchdogSec"] == "91s"
    assert props(unit(runs, "ringex-sdnap-router.service"))["WatchdogSec"] == "30s"
    runs = dry_run(profile, capsys, "--watchdog-sec", "120")
    assert props(unit(runs, "ringex-sdnap-dbwriter.service"))["WatchdogSec"] == "120s"
    runs = dry_run(profile, capsys, "--watchdog-sec", "0")
    assert "WatchdogSec" not in props(unit(runs, "ringex-sdnap-dbwriter.service"))


#: Properties systemd-run sets on the unit, not its [Service] section.
UNIT_SECTION = {"StartLimitIntervalSec", "StartLimitBurst"}


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_parses_every_property_the_units_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = write_profile(tmp_path, "sdparse")
    text = profile.read_text().replace("restart_window_s = 30", "restart_window_s = 2.5")
    profile.write_text(text)  # a span in ms
    files = tmp_path / "units"
    files.mkdir()
    for cmd in dry_run(profile, capsys, "--watchdog-sec", "7"):
        p = props(cmd)
        unit_lines = [f"{k}={v}" for k, v in p.items() if k in UNIT_SECTION]
        service = [f"{k}={v}" for k, v in p.items() if k not in UNIT_SECTION]
        head = ["[Unit]", "Description=x", *unit_lines, "[Service]", *service]
        (files / str(option(cmd, "unit"))).write_text("\n".join([*head, "ExecStart=/bin/true\n"]))
    done = subprocess.run(
        ["systemd-analyze", "verify", *sorted(str(f) for f in files.iterdir())],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    complaints = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if str(files) in line and ("Unknown" in line or "parse" in line or "nvalid" in line)
    ]
    assert complaints == []


class Recorded(units.Shell):  # type: ignore[name-defined,misc]
    """Runs nothing: records each command, and answers as a host whose units are stopped."""

    def __init__(self) -> None:
        super().__init__(dry_run=False)
        self.commands: list[list[str]] = []

    def __call__(self, cmd: list[str], *, quiet: bool = False) -> int:
        self.commands.append(list(cmd))
        return 3  # systemctl is-active: inactive; anything else: failed


def test_start_refuses_a_cpu_the_host_lacks_before_it_creates_anything(
    tmp_path: Path, instance: str, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = write_profile(tmp_path, instance)
    profile.write_text(profile.read_text().replace("router = [2]", "router = [4095]"))
    loaded = load_profile(str(profile))
    shell = Recorded()
    opts = units.Options(profile=str(profile), workdir=Path.cwd())
    assert units.start(loaded, opts, shell) == 1
    err = capsys.readouterr().err
    assert "supervisor.cores[" in err and "which this host lacks" in err
    assert not [c for c in shell.commands if c[0] == "systemd-run"]
    assert list_segments(loaded.instance) == []  # no ring made for units that cannot start
