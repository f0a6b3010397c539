"""Review 104, part 2 of 3 (snippets): every ```toml block of README.md (Configure's, Hot standby's
primary.toml and standby.toml) loads (``config.loader``'s ``load_profile``, the schema's
defaults being the minimal profile) and means what its comments say; and what the README
promises of the values beyond the schema (derived defaults, gc thresholds, the stop bound, the
checks at start) holds. The keys are in ``test_review104_readme_keys``, the refusals in
``test_review104_readme_refusals``.

Convention (shared helpers in ``readme_claims``): the README is read as it is when the test
runs, and each claim is found in it by a quote (whitespace folded), so a claim that is reworded
fails here, loudly, rather than being checked no longer. Of the four disagreements found, three
were here (a standby's ``nice`` dropped, a stale comment, an undocumented refusal), each pinned
first as a strict xfail and fixed in the same change; the other tests are claims checked and
found right. Nothing here starts a process, binds a port or touches a database: a config is
loaded, planned and inspected."""

from __future__ import annotations

import inspect
import os
import re
import resource
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import msgspec
import pytest

import config.loader
import procs.cli
import procs.supervisor.main
from config import load_profile, profile_names
from config.edges import MarketDataConfig
from config.schema import RingConfig, RingexConfig
from procs.common.record_codec import RecordCodec
from procs.common.topology import (
    gateway_commands,
    gateway_replies,
    journal_archive_dir,
    postgres_dir,
)
from procs.gateway.inbound_limits import MAX_JUNK_BYTES_PER_S, InboundLimits
from procs.marketdata.server import MarketDataServer
from procs.supervisor import preflight
from procs.supervisor.draining import STOP_SLACK_S, stop_bound_s
from procs.supervisor.plan import plan
from procs.supervisor.promotion import write_promoted_profile
from tests.unit.config.readme_claims import (
    BLOCKS,
    _claim,
    _folded,
    _load,
    _section,
    _write,
)

# -- 3. every snippet loads, and means what it says -------------------------------------------


def _same(raw: object, loaded: object, at: str) -> list[str]:
    """Where ``loaded`` (the config) differs from ``raw`` (the TOML as written)."""
    if isinstance(raw, dict) and isinstance(loaded, msgspec.Struct):
        return [d for k, v in raw.items() for d in _same(v, getattr(loaded, k), f"{at}.{k}")]
    if isinstance(raw, list) and raw and isinstance(raw[0], dict):
        assert isinstance(loaded, list)
        return [d for i, v in enumerate(raw) for d in _same(v, loaded[i], f"{at}[{i}]")]
    return [] if raw == loaded else [f"{at}: {raw!r} loaded as {loaded!r}"]


@pytest.mark.parametrize(("line", "text"), BLOCKS, ids=[f"README:{line}" for line, _ in BLOCKS])
def test_each_readme_toml_snippet_loads_as_written(tmp_path: Path, line: int, text: str) -> None:
    """Each ```toml block of the README (Hot standby's primary.toml and standby.toml,
    Configure's), written to a file as it is (the schema's defaults are all else a profile
    needs), loads with ``config.loader.load_profile``, and every value it sets is the
    config's."""
    cfg = _load(tmp_path, text)
    assert _same(tomllib.loads(text), cfg, "") == []


def test_the_supervisor_snippet_pins_and_nices_the_processes_it_names(tmp_path: Path) -> None:
    """README Configure, the [supervisor] block: ``cores = { router = [1], "matcher-m1" =
    [2], "gateway-gw1" = [3] }`` pins those processes (procs/supervisor/plan.py), ``nice =
    { dbwriter = 10 }`` is the database writer's, and ``session_end_utc = "21:00"`` is the
    end at 21:00 UTC."""
    (text,) = [t for _, t in BLOCKS if t.startswith("[supervisor]")]
    cfg = _load(tmp_path, text)
    specs = {spec.name: spec for spec in plan(cfg)}
    assert specs["router"].cpus == (1,)
    assert specs["matcher-m1"].cpus == (2,)
    assert specs["gateway-gw1"].cpus == (3,)
    assert specs["dbwriter"].nice == 10
    assert cfg.supervisor.session_end_minute() == 21 * 60


def test_the_primary_snippet_serves_replication_and_the_standby_runs_only_a_standby(
    tmp_path: Path,
) -> None:
    """README Hot standby: primary.toml (``listen_port = 9900``) runs a replication source
    (its cores key ``replica``, README Configure: "replica (the replication source)");
    standby.toml (``primary = ...``) makes ``ringex run`` run "only the standby process"."""
    primary, standby = (t for _, t in BLOCKS if t.startswith(("# primary", "# standby")))
    cfg = _load(tmp_path, primary + "[supervisor]\ncores = { replica = [4] }\n", "primary.toml")
    source = [spec for spec in plan(cfg) if spec.name == "replica-source"]
    assert len(source) == 1 and source[0].cpus == (4,)
    assert cfg.replication.mode == "sync"
    _claim("runs only the standby process")
    standby_cfg = _load(tmp_path, standby, "standby.toml")
    assert [spec.name for spec in plan(standby_cfg)] == ["standby"]


def test_the_promoted_config_is_the_standbys_without_its_primary(tmp_path: Path) -> None:
    """README Hot standby: a promotion runs ``standby.promoted.toml``, "the standby's config
    without `replication.primary`, written beside it" (procs/supervisor/promotion.py
    write_promoted_profile): it loads, is no standby, and keeps the rest (TLS included)."""
    _claim("running `standby.promoted.toml` (the standby's config without "
           "`replication.primary`, written beside it)")  # fmt: skip
    (standby,) = (t for _, t in BLOCKS if t.startswith("# standby"))
    path = _write(tmp_path, 'instance = "rv104sb"\n' + standby, "standby.toml")
    promoted = write_promoted_profile(str(path))
    assert promoted == tmp_path / "standby.promoted.toml"
    cfg = load_profile(str(promoted))
    before = load_profile(str(path))
    assert cfg.replication.primary == ""
    assert cfg == msgspec.structs.replace(
        before, replication=msgspec.structs.replace(before.replication, primary="")
    )
    assert "router" in [spec.name for spec in plan(cfg)]


def test_a_standby_named_by_profile_with_prestart_is_refused_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """procs/supervisor/main.py main: a standby named as a profile (``--profile NAME``, a
    file under config/profiles) with ``prestart`` (the default) is refused, exit 2, naming
    ``replication.prestart`` and ``--config``: its promoted config goes beside a file."""
    monkeypatch.setattr(config.loader, "PROFILES", tmp_path)
    monkeypatch.setattr(procs.supervisor.main, "stop_on_signals", lambda: lambda: False)
    (standby,) = (t for _, t in BLOCKS if t.startswith("# standby"))
    _write(tmp_path, 'instance = "rv104pn"\n' + standby, "rv104standby.toml")
    assert procs.supervisor.main.main(["--profile", "rv104standby"]) == 2
    err = capsys.readouterr().err
    assert "replication.prestart" in err and "--config" in err


def test_the_readme_says_a_standby_named_by_profile_needs_prestart_off() -> None:
    """README Hot standby (``replication.prestart``): the refusal above is documented, in a
    sentence that names ``prestart`` and ``--profile``."""
    sentences = re.split(r"(?<=[.:;])\s", _folded(_section("Hot standby and failover")))
    assert any("prestart" in s and "--profile" in s for s in sentences)


def test_the_nodb_profile_the_readme_describes_runs_no_database_writer(tmp_path: Path) -> None:
    """README Two commands: copy config/profiles/dev.toml to nodb.toml, add ``[database]`` /
    ``enabled = false``: it loads, and ``[database] enabled = false # false: no database
    writer`` (Configure) plans none."""
    _claim("add `[database]` / `enabled = false`")
    _claim("enabled = true # false: no database writer (and no PostgreSQL needed)")
    dev = (config.loader.PROFILES / "dev.toml").read_text()
    cfg = _load(tmp_path, dev + "\n[database]\nenabled = false\n", "nodb.toml")
    assert "dbwriter" not in [spec.name for spec in plan(cfg)]
    assert "dbwriter" in [spec.name for spec in plan(load_profile("dev"))]


def test_the_asset_and_symbol_rules(tmp_path: Path) -> None:
    """README Configure: "A symbol named BASE-QUOTE takes what it leaves out of `base` and
    `quote` from its name ("SOL-USD": SOL against USD)", one it sets is kept; "id = 1 # the
    gateway field of its records; ring names gw<id>-cmd/-rep"."""
    _claim('A symbol named BASE-QUOTE takes what it leaves out of `base` and `quote` from its '
           'name ("SOL-USD": SOL against USD)')  # fmt: skip
    assets = '[[assets]]\nname = "SOL"\nid = 4\ndecimals = 6\n[[assets]]\nname = "USD"\nid = 1\n'
    assets += 'decimals = 6\n[[assets]]\nname = "USDC"\nid = 5\ndecimals = 6\n'
    symbols = '[[symbols]]\nname = "SOL-USD"\nid = 1\n[[symbols]]\nname = "SOL-USDT"\nid = 2\n'
    symbols += 'quote = "USDC"\n[[matchers]]\nname = "m1"\nsymbols = ["SOL-USD", "SOL-USDT"]\n'
    cfg = _load(tmp_path, assets + symbols)
    assert (cfg.symbol("SOL-USD").base, cfg.symbol("SOL-USD").quote) == ("SOL", "USD")
    assert (cfg.symbol("SOL-USDT").base, cfg.symbol("SOL-USDT").quote) == ("SOL", "USDC")
    _claim("ring names gw<id>-cmd/-rep")
    assert (gateway_commands(7), gateway_replies(7)) == ("gw7-cmd", "gw7-rep")


def test_the_journal_archive_and_embedded_database_are_where_the_readme_says() -> None:
    """README Configure, [journal] ``archive_dir = "" # ... <archive_dir>/<instance>
    (absolute; "": var/<instance>/journal-archive)`` and [database] ``dsn = "" # empty: the
    embedded cluster under var/<instance>/pg`` (procs/common/topology.py)."""
    _claim('<archive_dir>/<instance> (absolute; "": var/<instance>/journal-archive)')
    _claim("empty: the embedded cluster under var/<instance>/pg")
    cfg = RingexConfig(instance="rv104")
    assert journal_archive_dir(cfg) == Path("var/rv104/journal-archive")
    archived = msgspec.structs.replace(
        cfg, journal=msgspec.structs.replace(cfg.journal, archive_dir="/mnt/archive")
    )
    assert journal_archive_dir(archived) == Path("/mnt/archive/rv104")
    assert postgres_dir(cfg) == Path("var/rv104/pg")


def test_the_shipped_profiles_are_the_three_the_readme_describes() -> None:
    """README Configure: "`dev` (instance `dev`: a 2-core machine, blocking waits, the REST
    API on 8080, metrics on 9464), `test` (instance `test`: 1,024-slot rings for the tests,
    no REST) and `latency` (instance `prod`: ... busy-spin, 65,536-slot rings ...)"."""
    _claim("Three profiles are shipped")
    assert profile_names() == ["dev", "latency", "test"]
    dev, test, latency = load_profile("dev"), load_profile("test"), load_profile("latency")
    assert (dev.instance, dev.wait.strategy, dev.supervisor.metrics_port) == (
        "dev",
        "blocking",
        9464,
    )
    assert [g.rest.port for g in dev.gateways if g.rest is not None] == [8080]
    assert (test.instance, test.ring.capacity) == ("test", 1024)
    assert all(g.rest is None for g in test.gateways)
    assert (latency.instance, latency.wait.strategy, latency.ring.capacity) == (
        "prod",
        "busy-spin",
        65_536,
    )


def test_a_ring_takes_capacity_times_152_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """README Configure: "bytes = capacity x 152", "The rings need `capacity x 152` bytes
    each (plus a header)"; a start that does not fit is "refused, naming `ring.capacity`,
    what the rings need and what is free" (procs/supervisor/preflight.py shm_short)."""
    _claim("bytes = capacity x 152")
    _claim("The rings need `capacity x 152` bytes each (plus a header) in `/dev/shm`")
    cfg = RingexConfig()
    assert RecordCodec().slot_size == 152
    for size in preflight.rings_bytes(cfg):
        assert 0 < size - cfg.ring.capacity * 152 < 1 << 16  # the header
    full = types.SimpleNamespace(f_bavail=1, f_frsize=4096)
    monkeypatch.setattr(os, "statvfs", lambda _path: full)
    message = preflight.shm_short(cfg)
    assert "ring.capacity = 16384" in message and "MiB free" in message
    assert f"{sum(preflight.rings_bytes(cfg)) / (1 << 20):.1f} MiB" in message


def test_the_schemas_ring_capacity_comment_names_the_slot_size() -> None:
    """config/schema.py RingConfig.capacity's comment (what ``config/`` readers see) gives
    the record slot size the README gives, 152 bytes."""
    source = inspect.getsource(RingConfig)
    assert f"({RecordCodec().slot_size} for records)" in source


# -- what the README promises of the values, beyond the schema --------------------------------


def test_the_derived_defaults_the_snippet_comments_give() -> None:
    """README Configure: garbled bytes "64 KiB a second ... (two of the largest messages if
    more)" (procs/gateway/inbound_limits.py); market data's ``max_connections_per_address =
    0 # (0: a quarter of max_connections, two at least)`` (procs/marketdata/server.py
    per_address)."""
    _claim("64 KiB a second of garbled bytes (two of the largest messages if more)")
    _claim("max_connections_per_address = 0 # one address's (0: a quarter of max_connections, "
           "two at least)")  # fmt: skip
    assert MAX_JUNK_BYTES_PER_S == 64 << 10
    assert InboundLimits(100, 8_192, 0).junk_per_s == 64 << 10
    assert InboundLimits(100, 65_536, 0).junk_per_s == 2 * 65_536
    per_address = vars(MarketDataServer)["per_address"].fget
    for connections, expected in ((5_000, 1_250), (4, 2)):
        server = types.SimpleNamespace(max_connections=connections, cfg=MarketDataConfig())
        assert per_address(server) == expected


def test_the_gc_thresholds_are_cpythons_where_the_readme_says() -> None:
    """README Configure [gc]: ``threshold0 = 700 # CPython's young and middle generations, as
    CPython sets them``, ``threshold1 = 10``, ``threshold2 = 0 # ... (10: CPython's
    default)``: this Python's own (a fresh interpreter's) thresholds."""
    _claim("threshold0 = 700 # CPython's young and middle generations, as CPython sets them")
    _claim("(10: CPython's default)")
    shown = subprocess.run(
        [sys.executable, "-I", "-S", "-c", "import gc; print(*gc.get_threshold())"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.split()
    gc_defaults = RingexConfig().gc
    assert [int(x) for x in shown] == [gc_defaults.threshold0, gc_defaults.threshold1, 10]


def test_stop_waits_three_graces_the_drain_and_thirty_seconds() -> None:
    """README Operate: ``ringex stop`` waits "3 x 20 s of grace, `drain_timeout_s` and 30 s
    for the embedded database and the rest" (procs/supervisor/draining.py stop_bound_s)."""
    _claim("(3 x 20 s of grace, `drain_timeout_s` and 30 s for the embedded database")
    grace = procs.supervisor.main.Supervisor.STOP_GRACE_S
    assert (grace, STOP_SLACK_S) == (20.0, 30.0)
    drain = RingexConfig().supervisor.drain_timeout_s
    assert stop_bound_s(drain, grace) == 3 * 20 + drain + 30


def test_cores_this_host_lacks_and_a_lower_nice_are_refused_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README Operate: "A `supervisor.cores` CPU this host lacks is refused at start, naming
    it and the host's CPUs" (the config loads: units for another host are made from it);
    Configure: "at start, a `nice` below the supervisor's own without CAP_SYS_NICE"
    (procs/supervisor/preflight.py cpus_missing, nice_refused)."""
    _claim("A `supervisor.cores` CPU this host lacks is refused at start, naming it and the "
           "host's CPUs")  # fmt: skip
    _claim("a `nice` below the supervisor's own without CAP_SYS_NICE")
    cfg = _load(tmp_path, "[supervisor]\ncores = { router = [4095] }\nnice = { dbwriter = -5 }\n")
    message = preflight.cpus_missing(plan(cfg))
    assert "supervisor.cores['router']" in message and "[4095]" in message
    monkeypatch.setattr(preflight, "_has_cap_sys_nice", lambda: False)
    monkeypatch.setattr(resource, "getrlimit", lambda _which: (0, 0))
    monkeypatch.setattr(os, "getpriority", lambda _which, _who: 0)
    message = preflight.nice_refused(plan(cfg))
    assert "supervisor.nice['dbwriter'] = -5" in message and "CAP_SYS_NICE" in message


def test_a_standbys_nice_is_applied(tmp_path: Path) -> None:
    """config/schema.py SupervisorConfig.nice ("same names as ``cores``"), README Configure
    ``# names: router, ..., replica (the replication source), standby``: a standby's own
    ``nice`` is the niceness its process starts with, as its ``cores`` are its CPUs."""
    (standby,) = (t for _, t in BLOCKS if t.startswith("# standby"))
    cfg = _load(
        tmp_path, standby + "[supervisor]\ncores = { standby = [0] }\nnice = { standby = 5 }\n"
    )
    (spec,) = plan(cfg)
    assert spec.cpus == (0,)  # cores: applied
    assert spec.nice == 5
