"""Review 104, part 1 of 3 (keys): README.md's "## Configure" (and what "## Operate" and "## Hot
standby and failover" say of the config) held to the schema in ``config/`` mechanically, both
ways: every key the README names is the schema's, at that table, with the default, bounds and
values allowed it states; and every field of the schema (its msgspec Structs walked) is
documented somewhere in the README. The snippets are in ``test_review104_readme_snippets``, the
refusals in ``test_review104_readme_refusals``.

Convention (shared helpers in ``readme_claims``): the README is read as it is when the test
runs, and each claim is found in it by a quote (whitespace folded), so a claim that is reworded
fails here, loudly, rather than being checked no longer. Of the four disagreements found, the 20
keys documented nowhere were here, pinned first as a strict xfail and fixed in the same change;
the other tests are claims checked and found right. Nothing here starts a process, binds a port
or touches a database: a config is loaded, planned and inspected."""

from __future__ import annotations

import re
import tomllib
import typing
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest

from config.edges import GatewayConfig, RestConfig
from config.loader import ConfigError
from config.schema import DEFAULT_SPINS, MatcherConfig, RingexConfig
from tests.unit.config.readme_claims import (
    BLOCKS,
    LEAVES,
    README,
    TABLES,
    _base,
    _claim,
    _default,
    _field,
    _load,
    _metas,
    _setting,
    _struct_of,
    _toml_paths,
)

# -- 1. what the README names is the schema's, with its defaults, bounds and values ----------


def test_every_dotted_or_tabled_key_the_readme_names_is_a_schema_field() -> None:
    """README passim (Configure, Operate, Hot standby, systemd): a backticked
    ``section.key`` (``supervisor.cores``, ``journal.archive_dir``, ...) or ``[table] key``
    (``[gateways.rest] host``) is a field of the schema at that path (config/schema.py,
    config/edges.py), so an operator who follows it sets what it names."""
    sections = {f.name for f in msgspec.structs.fields(RingexConfig) if _struct_of(f.type)}
    named: set[tuple[str, ...]] = set()
    for span in re.findall(r"`([^`\n]+)`", README):
        dotted = re.fullmatch(r"([a-z]+)\.([a-z_.]+?)(?:\[.*\])?", span)
        if dotted and dotted[1] in sections:
            named.add((dotted[1], *dotted[2].split(".")))
        tabled = re.fullmatch(r"\[\[?([a-z_.]+)\]\]? ([a-z_]+)", span)
        if tabled:
            named.add((*tabled[1].split("."), tabled[2]))
    assert len(named) >= 25  # the walk found the README's keys at all
    assert sorted(".".join(p) for p in named if p not in LEAVES) == []


#: (a README quote, the key it speaks of, the default it states).
DEFAULT_CLAIMS: list[tuple[str, str, object]] = [
    ("park_timeout_s = 0.02 # blocking: longest park", "wait.park_timeout_s", 0.02),
    ('listen_host = "0.0.0.0" # the default, 127.0.0.1', "replication.listen_host", "127.0.0.1"),
    ('mode = "sync" # or "async" (the default)', "replication.mode", "async"),
    (
        "sync_timeout_ms = 1000 # 0: wait for the standby forever",
        "replication.sync_timeout_ms",
        1000,
    ),
    ("prestart = true # the default", "replication.prestart", True),
    ("`replication.prestart`, on by default", "replication.prestart", True),
    ("nice = { dbwriter = 10 } # the default", "supervisor.nice", {"dbwriter": 10}),
    ("# default {}: any CPU", "supervisor.cores", {}),
    ("metrics_port = 0 # 0: a free port", "supervisor.metrics_port", 0),
    ("`supervisor.stuck_after_s` (30)", "supervisor.stuck_after_s", 30.0),
    ("(off by default: a router waiting on a sync standby", "supervisor.restart_stuck", False),
    ("Off by default (empty).", "supervisor.session_end_utc", ""),
    ("`metrics = false` turns it off", "supervisor.metrics", True),
    ("TargetCompID = the gateway's `comp_id` (RINGEX)", "gateways.comp_id", "RINGEX"),
    ("or its gateway be set `reset_on_logon = true`", "gateways.reset_on_logon", False),
    ("`failed_login_rate_per_s`, 0.1, with a burst of 10", "gateways.failed_login_rate_per_s", 0.1),
    (
        "(`address_failed_logon_rate_per_s`, 1 a second",
        "gateways.address_failed_logon_rate_per_s",
        1.0,
    ),
    ("after a burst of 20, counted as they fail", "gateways.address_failed_logon_burst", 20),
    ("(burst address_failed_logon_burst, 20)", "gateways.address_failed_logon_burst", 20),
    ("a handshake gets logon_timeout_s (the REST port's, 10 s)", "gateways.logon_timeout_s", 10.0),
    ("(ms, default 5000, at most 60000)", "gateways.rest.recv_window_ms", 5000),
    ("(ms, default 5000, at most 60000)", "gateways.rest.max_recv_window_ms", 60_000),
    ("or `recv_window_ms`, 5000, when it is not sent", "gateways.rest.recv_window_ms", 5000),
    ("(`fast_lane`, on by default)", "gateways.rest.fast_lane", True),
    ("`max_keys_per_user` keys (20)", "gateways.rest.max_keys_per_user", 20),
    ("`max_streams_per_key` streams (5; then `429`)", "gateways.rest.max_streams_per_key", 5),
    ("`max_streams_per_account` (10)", "gateways.rest.max_streams_per_account", 10),
    (
        "(0, the default: a quarter of `max_connections`",
        "marketdata.max_connections_per_address",
        0,
    ),
    ("`pipeline_behind` commands (32)", "journal.pipeline_behind", 32),
    (
        "Every `journal.snapshot_every` commands (200,000 by default)",
        "journal.snapshot_every",
        200_000,
    ),
    ("commands came since (300)", "journal.snapshot_every_s", 300.0),
    ("`router_batch` (4,096)", "router_batch", 4096),
    ('a config that relied on that must now say `base = "BTC"`', "symbols.base", "BTC"),
]


def test_the_defaults_the_readme_states_are_the_schemas() -> None:
    """README Configure's snippet comments (``# the default``, ``(0: ...)``) and the
    defaults Operate, Hot standby and the REST section state in prose: each is the default
    of that field in config/schema.py or config/edges.py."""
    wrong = []
    for quote, dotted, stated in DEFAULT_CLAIMS:
        _claim(quote)
        actual = _default(_field(dotted))
        if actual != stated or type(actual) is not type(stated):
            wrong.append(f"{dotted}: README {stated!r}, schema {actual!r} ({quote!r})")
    assert wrong == []


def test_the_wait_spins_default_is_the_strategys_own() -> None:
    """README Configure, the first snippet: ``spins`` defaults to 200 for yield and sleep, 0
    for blocking (config/schema.py DEFAULT_SPINS and WaitConfig.spins = None)."""
    _claim("(default: 200 for yield and sleep, 0 for blocking)")
    assert _default(_field("wait.spins")) is None
    assert DEFAULT_SPINS == {"yield": 200, "sleep": 200, "blocking": 0}


def test_without_assets_a_config_has_usd_btc_and_eth() -> None:
    """README Configure: "Without `[[assets]]` a config has USD (6 decimals), BTC and ETH
    (8)" (config/schema.py DEFAULT_ASSETS)."""
    _claim("Without `[[assets]]` a config has USD (6 decimals), BTC and ETH (8)")
    assets = {a.name: a.decimals for a in RingexConfig().assets}
    assert assets == {"USD": 6, "BTC": 8, "ETH": 8}


#: README quote -> (key, the bound it states).
BOUND_CLAIMS: list[tuple[str, str, str, object]] = [
    ("(ms, default 5000, at most 60000)", "gateways.rest.recv_window_ms", "le", 60_000),
    ("(ms, default 5000, at most 60000)", "gateways.rest.max_recv_window_ms", "le", 60_000),
    *(
        ("`max_qty` past 2^63-1 (the records carry int64)", f"symbols.{key}", "le", 2**63 - 1)
        for key in ("tick", "lot", "min_qty", "max_qty")
    ),
    (
        "a gateway `comp_id` that is not 1-32 printable ASCII characters without a space",
        "gateways.comp_id",
        "pattern",
        r"^[!-~]{1,32}\Z",
    ),
    ("band_bps = 500 # market orders trade at most 5%", "symbols.band_bps", "le", 10_000),
]


def test_the_bounds_the_readme_states_are_the_schemas() -> None:
    """README Configure's stated limits (a recv window at most 60000 ms; tick, lot, min_qty
    and max_qty at most 2^63-1; a comp_id of 1-32 printable ASCII characters, no space;
    band_bps in basis points) are the constraints on those fields."""
    wrong = []
    for quote, dotted, kind, bound in BOUND_CLAIMS:
        _claim(quote)
        actual = _metas(_field(dotted).type).get(kind)
        if actual != bound:
            wrong.append(f"{dotted} {kind}: README {bound!r}, schema {actual!r}")
    assert wrong == []


def test_each_fixed_set_of_values_is_the_one_the_readme_lists() -> None:
    """README Configure: ``strategy = "blocking" # busy-spin | yield | sleep | blocking``;
    ``journal.fsync`` "batch", "pipelined", "interval", "none"; Hot standby ``mode = "sync"
    # or "async"``; ``compression = "none" # or "deflate"``. These are the Literal fields of
    the schema, all of them, with those values."""
    _claim('strategy = "blocking" # busy-spin | yield | sleep | blocking')
    _claim('fsync = "batch" # group commit: a batch is durable before it is routed; '
           '"pipelined", "interval", "none"')  # fmt: skip
    _claim('mode = "sync" # or "async" (the default)')
    _claim('compression = "none" # or "deflate"')
    stated = {
        "wait.strategy": {"busy-spin", "yield", "sleep", "blocking"},
        "journal.fsync": {"batch", "pipelined", "interval", "none"},
        "replication.mode": {"async", "sync"},
        "marketdata.compression": {"none", "deflate"},
    }
    literals = {
        ".".join(path): set(typing.get_args(_base(field.type)))
        for path, field in LEAVES.items()
        if typing.get_origin(_base(field.type)) is typing.Literal
    }
    assert literals == stated


def test_every_listener_binds_loopback_unless_its_host_says() -> None:
    """README Configure: "Every listener binds `127.0.0.1` unless its `host` says otherwise:
    `[[gateways]] host` (FIX), `[gateways.rest] host`, `[marketdata] host`,
    `supervisor.metrics_host` and `replication.listen_host`": those are all the host fields
    of the schema, each 127.0.0.1 by default."""
    _claim("Every listener binds `127.0.0.1` unless its `host` says otherwise")
    hosts = {
        ".".join(path): _default(field)
        for path, field in LEAVES.items()
        if path[-1] == "host" or path[-1].endswith("_host")
    }
    assert hosts == dict.fromkeys(
        [
            "gateways.host",
            "gateways.rest.host",
            "marketdata.host",
            "supervisor.metrics_host",
            "replication.listen_host",
        ],
        "127.0.0.1",
    )


def test_the_tables_said_all_optional_have_a_default_for_every_key() -> None:
    """README Configure: "a `rest` table ... (all keys optional)", "Market data (all keys
    optional)", the journal, risk, supervisor, database and gc likewise: no field of those
    tables is required."""
    for quote in ("(all keys optional)", "Market data (all keys optional)"):
        _claim(quote)
    optional = ["gateways.rest", "marketdata", "journal", "risk", "supervisor", "database", "gc"]
    required = [
        ".".join(path)
        for path, field in LEAVES.items()
        if ".".join(path[:-1]) in optional and field.required
    ]
    assert required == []


def _blocks_with(table: str) -> list[dict[str, Any]]:
    return [doc for _, text in BLOCKS if table in (doc := tomllib.loads(text))]


def test_the_all_optional_snippets_show_the_defaults() -> None:
    """README Configure's ```toml blocks of tables whose keys are all optional (the first
    one; [[gateways]] and [gateways.rest]; [[matchers]]; [marketdata]; [journal]; [risk];
    [supervisor]; [database]; [gc]) show each key at its default, but where a comment says
    the value is an example (``cores``: "default {}"; ``session_end_utc``: ("": never);
    ``spins``: the strategy's own, checked above)."""
    examples = {"wait.spins", "supervisor.cores", "supervisor.session_end_utc"}
    defaults = RingexConfig()
    differ = []

    def compare(raw: dict[str, Any], model: object, at: str) -> None:
        for key, value in raw.items():
            where = f"{at}{key}"
            tables = isinstance(value, list) and value and isinstance(value[0], dict)
            if where in examples or tables:
                continue
            expected = getattr(model, key)
            if isinstance(value, dict) and key not in ("cores", "nice"):
                compare(value, expected, f"{where}.")
            elif expected != value:
                differ.append(f"{where} = {value!r}: the default is {expected!r}")

    for table in ("ring", "wait", "marketdata", "journal", "risk", "supervisor", "database", "gc"):
        (doc,) = _blocks_with(table)
        compare({k: v for k, v in doc.items() if not isinstance(v, list)}, defaults, "")
    (gateways,) = _blocks_with("gateways")
    gateway = dict(gateways["gateways"][0])
    rest = gateway.pop("rest")
    compare(gateway, GatewayConfig(name=gateway["name"], id=gateway["id"]), "gateways.")
    compare(rest, RestConfig(), "gateways.rest.")
    (matchers,) = _blocks_with("matchers")
    for matcher in matchers["matchers"]:
        compare(matcher, MatcherConfig(name=matcher["name"], symbols=matcher["symbols"]), "")
    assert differ == []


def test_every_zero_the_readme_gives_a_meaning_loads(tmp_path: Path) -> None:
    """README Configure and Hot standby: each key whose snippet comment says what 0 means
    (``(0: off)``, ``0: a free port``, ``0: wait for the standby forever``, ...) takes 0."""
    zeros = []
    for _, text in BLOCKS:
        table: tuple[str, ...] = ()
        for line in text.splitlines():
            header = re.match(r"\[\[?([a-z_.]+)\]\]?", line)
            if header:
                table = tuple(header[1].split("."))
            setting = re.match(r"([a-z_0-9]+) = [^#]*#(.*)", line)
            if setting and re.search(r"(^|[\s(])0:", setting[2]):
                zeros.append((table, setting[1]))
    assert len(zeros) >= 10
    refused = []
    for table, key in zeros:
        zero = "0.0" if _base(LEAVES[(*table, key)].type) is float else "0"
        try:
            _load(tmp_path, _setting(table, key, zero))
        except ConfigError as exc:
            refused.append(str(exc))
    assert refused == []


# -- 2. every field of the schema is documented ----------------------------------------------

_SPANS = re.findall(r"`([^`\n]+)`", README)
_IN_TOML = {path for _, text in BLOCKS for path in _toml_paths(tomllib.loads(text))}
_COMMENTS = "\n".join(re.findall(r"#(.*)", "\n".join(text for _, text in BLOCKS)))
_NAMES = Counter(path[-1] for path in LEAVES)


def _prose_after_blocks(table: tuple[str, ...]) -> str:
    """The README from each ```toml block that sets ``table`` to the next block or heading."""
    found = []
    for m in re.finditer(r"```toml\n(.*?)```", README, re.S):
        if any(p[: len(table)] == table for p in _toml_paths(tomllib.loads(m[1]))):
            end = re.search(r"```toml\n|\n#+ ", README[m.end() :])
            found.append(README[m.start() : m.end() + (end.start() if end else 0)])
    return "\n".join(found)


def _documented(path: tuple[str, ...]) -> bool:
    """Whether the README names ``path`` where a reader finds it: as a key of a ```toml
    block in its table; backticked with its table (``supervisor.cores``, ``[marketdata]
    host``); a name of one field only (with an underscore: not ``port``) backticked as a key
    or in a block's comment anywhere; or backticked in the prose after its table's block."""
    if path in _IN_TOML:
        return True
    name, table = path[-1], ".".join(path[:-1])
    qualified = [".".join(path), f"[{table}] {name}", f"[[{table}]] {name}"]
    if table and any(q in span for span in _SPANS for q in qualified):
        return True
    as_key = re.compile(rf"(^|[.\]\s'\"]){name}($|\s*=|\[|\s)")
    if _NAMES[name] == 1 and "_" in name:
        if any(as_key.search(span) for span in _SPANS):
            return True
        if re.search(rf"\b{name}\b", _COMMENTS):
            return True
    return f"`{name}`" in _prose_after_blocks(path[:-1])


def _undocumented(table: str) -> list[str]:
    return [
        ".".join(path) for path in LEAVES if ".".join(path[:-1]) == table and not _documented(path)
    ]


def _gap(section: str, keys: str, where: str) -> Any:
    """A table of which ``keys`` were found nowhere in the README (fixed: now in ``where``)."""
    return pytest.param(section, id=section)


DOC_SECTIONS = [
    "",
    "ring",
    _gap("wait", "wait.min_sleep_s, wait.max_sleep_s", "the first Configure snippet"),
    "assets",
    "symbols",
    "matchers",
    _gap(
        "gateways",
        "min_heartbeat_s, max_heartbeat_s, sending_time_tolerance_s, failed_login_burst "
        "(its value 10 is stated, its key is not), max_message_bytes, cancel_on_disconnect, "
        "order_log_compact_mb",
        "the [[gateways]] snippet",
    ),
    _gap(
        "gateways.rest",
        "key_burst, ip_burst, login_rate_per_s, login_burst, stream_queue",
        "the [gateways.rest] snippet",
    ),
    "supervisor",
    _gap(
        "marketdata",
        "enabled, max_subscriptions, max_message_bytes, depth_levels",
        "the [marketdata] snippet",
    ),
    _gap("database", "database.snapshot_every, database.snapshot_s", "the [database] snippet"),
    "risk",
    "journal",
    "replication",
    "gc",
]


def test_the_documentation_check_covers_every_table_of_the_schema() -> None:
    """config/schema.py RingexConfig, walked: the tables listed for the check below are all
    of its tables (a table added to the schema is checked too)."""
    listed = {p if isinstance(p, str) else p.values[0] for p in DOC_SECTIONS}
    assert listed == {".".join(t) for t in TABLES}


@pytest.mark.parametrize("section", DOC_SECTIONS)
def test_every_field_of_the_schema_is_documented_in_the_readme(section: str) -> None:
    """config/schema.py and config/edges.py, every field of the table ``section`` (the msgspec
    Structs walked): the README names it (``_documented``), so an operator can find it. A
    key nobody can discover is a fault, unless clearly internal (none here is)."""
    assert _undocumented(section) == []
