"""Review 104: README.md's "## Configure" (and what "## Operate" and "## Hot standby and
failover" say of the config) held to the schema in ``config/`` mechanically, both ways: every
key the README names is the schema's, at that table, with the default, bounds and values
allowed it states; every field of the schema (its msgspec Structs walked) is documented
somewhere in the README; every ```toml block of the README loads (``config.loader``'s
``load_profile``, the schema's defaults being the minimal profile) and means what its
comments say; and the refusals promised are made, one line naming the value and the limit.

Convention: the README is read as it is when the test runs, and each claim is found in it by
a quote (whitespace folded), so a claim that is reworded fails here, loudly, rather than
being checked no longer. Four disagreements were found (20 keys documented nowhere, a
standby's ``nice`` dropped, a stale comment, an undocumented refusal), each pinned first as a
strict xfail and fixed in the same change; the other tests are claims checked and found
right. Nothing here starts a
process, binds a port or touches a database: a config is loaded, planned and inspected."""

from __future__ import annotations

import argparse
import inspect
import os
import re
import resource
import subprocess
import sys
import tomllib
import types
import typing
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

import config.loader
import procs.cli
import procs.supervisor.main
from config import load_profile, profile_names
from config.edges import GatewayConfig, MarketDataConfig, RestConfig
from config.loader import ConfigError
from config.schema import DEFAULT_SPINS, MatcherConfig, RingConfig, RingexConfig
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

ROOT = Path(__file__).parents[3]
README = (ROOT / "README.md").read_text()


def _folded(text: str) -> str:
    """``text`` with its whitespace folded, and a TOML comment's continuation lines joined."""
    return " ".join(re.sub(r"\n\s*#(?!#)", " ", text).split())


def _claim(quote: str) -> None:
    """The README still says ``quote`` (whitespace folded): the anchor of a claim checked."""
    assert _folded(quote) in _folded(README), f"README no longer says {quote!r}"


def _section(title: str) -> str:
    """The text of README section ``## title``, up to the next ``## ``."""
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else len(README)]


def _toml_blocks() -> list[tuple[int, str]]:
    """Every ```toml block of the README: (the line of its fence, its text)."""
    return [
        (README[: m.start()].count("\n") + 1, m[1])
        for m in re.finditer(r"```toml\n(.*?)```", README, re.S)
    ]


BLOCKS = _toml_blocks()


# -- the schema, walked -----------------------------------------------------------------------


def _struct_of(annotation: object) -> type[msgspec.Struct] | None:
    """The config Struct a field holds (itself, in a list, or optional), else None."""
    for held in (annotation, *typing.get_args(annotation)):
        candidate = typing.get_args(held)[0] if typing.get_origin(held) is list else held
        if isinstance(candidate, type) and issubclass(candidate, msgspec.Struct):
            return candidate
    return None


def _leaves(
    struct: type[msgspec.Struct] = RingexConfig, at: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], msgspec.structs.FieldInfo]]:
    """Every field of the schema that holds a value, not a table: (path, its FieldInfo)."""
    for field in msgspec.structs.fields(struct):
        inner = _struct_of(field.type)
        if inner is not None:
            yield from _leaves(inner, (*at, field.name))
        else:
            yield (*at, field.name), field


LEAVES = dict(_leaves())
TABLES = sorted({path[:-1] for path in LEAVES})


def _field(dotted: str) -> msgspec.structs.FieldInfo:
    return LEAVES[tuple(dotted.split("."))]


def _default(field: msgspec.structs.FieldInfo) -> object:
    if field.default_factory is not msgspec.NODEFAULT:
        return field.default_factory()
    return field.default


def _metas(annotation: object) -> dict[str, Any]:
    """The constraints (ge, gt, le, lt, pattern) of ``annotation``, through ``| None``."""
    found: dict[str, Any] = {}
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        base, *metas = typing.get_args(annotation)
        for meta in metas:
            if isinstance(meta, msgspec.Meta):
                for key in ("ge", "gt", "le", "lt", "pattern"):
                    if getattr(meta, key) is not None:
                        found[key] = getattr(meta, key)
        found |= _metas(base)
    elif origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found |= _metas(arg)
    return found


def _base(annotation: object) -> object:
    """``annotation`` without ``Annotated`` and ``| None``."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            inner = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(inner) != 1:
                return annotation
            annotation = inner[0]
        else:
            return annotation


# -- loading ----------------------------------------------------------------------------------

#: What a table of a list needs before the key a test sets (its required fields).
HEADS: dict[tuple[str, ...], dict[str, str]] = {
    ("gateways",): {"name": '"gw1"', "id": "1"},
    ("symbols",): {"name": '"BTC-USD"', "id": "1"},
    ("assets",): {"name": '"USD"', "id": "1", "decimals": "6"},
    ("matchers",): {"name": '"m1"', "symbols": '["BTC-USD", "ETH-USD"]'},
}
#: ... and what the rest of the config then needs to load (a matcher for the one symbol, the
#: assets the default symbols trade).
TAILS: dict[tuple[str, ...], str] = {
    ("symbols",): '[[matchers]]\nname = "m1"\nsymbols = ["BTC-USD"]\n',
    ("assets",): '[[assets]]\nname = "BTC"\nid = 2\ndecimals = 8\n'
    '[[assets]]\nname = "ETH"\nid = 3\ndecimals = 8\n',
}


def _setting(table: tuple[str, ...], key: str, value: str) -> str:
    """A TOML text setting ``table.key = value`` and what its table needs besides."""
    if not table:
        return f"{key} = {value}\n"
    if table == ("gateways", "rest"):
        return _setting(("gateways",), "port", "9878") + f"[gateways.rest]\n{key} = {value}\n"
    head = HEADS.get(table)
    if head is None:
        return f"[{'.'.join(table)}]\n{key} = {value}\n"
    lines = [f"{k} = {v}" for k, v in head.items() if k != key]
    text = f"[[{'.'.join(table)}]]\n" + "\n".join([*lines, f"{key} = {value}"]) + "\n"
    return text + TAILS.get(table, "")


def _shown_at(table: tuple[str, ...], key: str) -> str:
    """The key as a refusal writes it (``gateways[0].rest.port``, ``ring.capacity``)."""
    parts = [f"{part}[0]" if (part,) in HEADS else part for part in table]
    return ".".join([*parts, key])


def _write(tmp_path: Path, text: str, name: str = "ringex.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _load(tmp_path: Path, text: str, name: str = "ringex.toml") -> RingexConfig:
    return load_profile(str(_write(tmp_path, text, name)))


def _refusal(tmp_path: Path, text: str) -> str:
    """The message ``load_profile`` refuses ``text`` with (the test fails if it loads)."""
    with pytest.raises(ConfigError) as refused:
        _load(tmp_path, text)
    return str(refused.value)


# -- 1. what the README names is the schema's, with its defaults, bounds and values ----------


def _toml_paths(node: dict[str, Any], at: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The key paths a TOML document sets (a list of tables: its items' keys)."""
    for key, value in node.items():
        if isinstance(value, dict) and (*at, key) not in LEAVES:
            yield from _toml_paths(value, (*at, key))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                yield from _toml_paths(item, (*at, key))
        else:
            yield (*at, key)


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


# -- 4. the refusals the README promises -------------------------------------------------------


def test_every_bounded_key_refuses_a_value_past_it_naming_key_value_and_limit(
    tmp_path: Path,
) -> None:
    """README Configure: "unknown keys and out-of-range values are errors naming the key
    and the value". Every numeric field of the schema with a bound, set just past each of
    its bounds, is refused naming the key as written, the value and the limit."""
    _claim("unknown keys and out-of-range values are errors naming the key and the value")
    operator = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    checked, wrong = 0, []
    for path, field in LEAVES.items():
        kind = _base(field.type)
        if kind not in (int, float):
            continue
        for bound_kind, bound in _metas(field.type).items():
            if bound_kind not in operator:
                continue
            past = {"ge": bound - 1, "gt": bound, "le": bound + 1, "lt": bound}[bound_kind]
            value = repr(float(past)) if kind is float else str(int(past))
            limit = repr(float(bound)) if kind is float else str(bound)
            text = _setting(path[:-1], path[-1], value)
            try:
                _load(tmp_path, text)
            except ConfigError as exc:
                message = str(exc)
                shown = f"{_shown_at(path[:-1], path[-1])} = {value}"
                if shown not in message or f"{operator[bound_kind]} {limit}" not in message:
                    wrong.append(message)
            else:
                wrong.append(f"{'.'.join(path)} = {value} loaded")
            checked += 1
    assert checked >= 140
    assert wrong == []


#: (id, README quote, config text, what the refusal must name).
REFUSALS: list[tuple[str, str, str, list[str]]] = [
    ("unknown-key", "unknown keys", "[ring]\ncapacityy = 8\n", ["`capacityy`", "$.ring"]),
    (
        "fixed-set",
        "a value of a fixed set, such as `journal.fsync`, names the values allowed",
        '[journal]\nfsync = "always"\n',
        ["journal.fsync = 'always'", "'batch', 'pipelined', 'interval', 'none'"],
    ),
    ("no-matcher", "no matcher", "symbols = []\nmatchers = []\n", ["no [[matchers]]"]),
    (
        "matcher-twice",
        "a name or id given twice",
        '[[matchers]]\nname = "m1"\nsymbols = ["BTC-USD"]\n'
        '[[matchers]]\nname = "m1"\nsymbols = ["ETH-USD"]\n',
        ["matcher name m1", "twice"],
    ),
    (
        "gateway-id-twice",
        "a name or id given twice",
        '[[gateways]]\nname = "a"\nid = 1\nport = 9001\n[[gateways]]\nname = "b"\nid = 1\n'
        "port = 9002\n",
        ["gateway id 1", "twice"],
    ),
    (
        "symbol-id-twice",
        "a name or id given twice",
        '[[symbols]]\nname = "BTC-USD"\nid = 1\n[[symbols]]\nname = "ETH-USD"\nid = 1\n',
        ["symbol id 1", "twice"],
    ),
    (
        "asset-id-twice",
        "a name or id given twice",
        '[[assets]]\nname = "USD"\nid = 1\ndecimals = 6\n[[assets]]\nname = "BTC"\nid = 1\n'
        'decimals = 8\n[[assets]]\nname = "ETH"\nid = 3\ndecimals = 8\n',
        ["asset id 1", "twice"],
    ),
    (
        "two-listeners",
        "two listeners on one host:port",
        "[marketdata]\nport = 9878\n",
        ["marketdata (127.0.0.1:9878)", "gateway gw1 (FIX) (127.0.0.1:9878)"],
    ),
    (
        "listener-on-every-address",
        "two listeners on one host:port",
        '[marketdata]\nhost = "0.0.0.0"\nport = 9878\n',
        ["marketdata (0.0.0.0:9878)", "127.0.0.1:9878"],
    ),
    (
        "reuse-port-not-all",
        "gateways that all set `reuse_port` may share theirs",
        '[[gateways]]\nname = "a"\nid = 1\nreuse_port = true\n[[gateways]]\nname = "b"\nid = 2\n',
        ["127.0.0.1:9878", "both listen there"],
    ),
    (
        "reuse-port-two-comp-ids",
        "answering as one `comp_id` where they listen on the same address",
        '[[gateways]]\nname = "a"\nid = 1\nreuse_port = true\n[[gateways]]\nname = "b"\nid = 2\n'
        'reuse_port = true\ncomp_id = "OTHER"\n',
        ["127.0.0.1:9878", "'OTHER'", "'RINGEX'"],
    ),
    (
        "min-above-max-wait",
        "a minimum above its maximum",
        "[wait]\nmin_sleep_s = 0.01\nmax_sleep_s = 0.001\n",
        ["min_sleep_s = 0.01", "max_sleep_s = 0.001"],
    ),
    (
        "min-above-max-heartbeat",
        "a minimum above its maximum",
        '[[gateways]]\nname = "a"\nid = 1\nmin_heartbeat_s = 10\nmax_heartbeat_s = 5\n',
        ["min_heartbeat_s = 10", "max_heartbeat_s = 5"],
    ),
    (
        "min-above-max-qty",
        "a minimum above its maximum",
        '[[symbols]]\nname = "BTC-USD"\nid = 1\nmin_qty = 10\nmax_qty = 5\n'
        '[[matchers]]\nname = "m1"\nsymbols = ["BTC-USD"]\n',
        ["min_qty = 10", "max_qty = 5"],
    ),
    (
        "min-above-max-recv-window",
        "(max_recv_window_ms caps it)",
        '[[gateways]]\nname = "a"\nid = 1\n[gateways.rest]\nrecv_window_ms = 10000\n'
        "max_recv_window_ms = 5000\n",
        ["recv_window_ms = 10000", "max_recv_window_ms = 5000"],
    ),
    (
        "readers",
        "a ring with more readers than `max_consumers`",
        "[ring]\nmax_consumers = 2\n",
        ["ring.max_consumers = 2", "3 readers"],
    ),
    (
        "cores-no-process",
        "a `supervisor.cores`/`nice` key that names no process",
        '[supervisor]\ncores = { "matcher-m9" = [1] }\n',
        ["supervisor.cores", "'matcher-m9'", "matcher-m1"],
    ),
    (
        "nice-no-process",
        "a `supervisor.cores`/`nice` key that names no process",
        "[supervisor]\nnice = { writer = 5 }\n",
        ["supervisor.nice", "'writer'", "dbwriter"],
    ),
    (
        "nice-out-of-range",
        "unknown keys and out-of-range values are errors naming the key and the value",
        "[supervisor]\nnice = { dbwriter = 20 }\n",
        ["supervisor.nice['dbwriter'] = 20", "<= 19"],
    ),
    (
        "primary-ipv6-unbracketed",
        "a `replication.primary` that is not host:port (an IPv6 host in brackets, `[::1]:9900`)",
        '[replication]\nprimary = "::1:9900"\n',
        ["'::1:9900'", "[::1]:9900"],
    ),
    (
        "primary-no-port",
        "a `replication.primary` that is not host:port",
        '[replication]\nprimary = "primary-host"\n',
        ["'primary-host'", "host:port"],
    ),
    (
        "primary-port-0",
        "a `replication.primary` that is not host:port",
        '[replication]\nprimary = "primary-host:0"\n',
        ["port 0", "1..65535"],
    ),
    *(
        (
            f"{key}-past-int64",
            "a symbol's `tick`, `lot`, `min_qty` or `max_qty` past 2^63-1",
            f'[[symbols]]\nname = "BTC-USD"\nid = 1\n{key} = {2**63}\n'
            '[[matchers]]\nname = "m1"\nsymbols = ["BTC-USD"]\n',
            [f"symbols[0].{key} = {2**63}", f"<= {2**63 - 1}"],
        )
        for key in ("tick", "lot", "min_qty", "max_qty")
    ),
    (
        "dsn",
        "a `database.dsn` libpq cannot parse",
        '[database]\ndsn = "garbage ==="\n',
        ["database.dsn", "garbage"],
    ),
    *(
        (
            f"comp-id-{what}",
            "a gateway `comp_id` that is not 1-32 printable ASCII characters without a space",
            f'[[gateways]]\nname = "a"\nid = 1\ncomp_id = "{comp_id}"\n',
            [f"gateways[0].comp_id = '{comp_id}'", "[!-~]{1,32}"],
        )
        for what, comp_id in (("space", "RING EX"), ("33", "X" * 33), ("empty", ""))
    ),
    (
        "capacity-not-power-of-two",
        "slots per ring (power of two)",
        "[ring]\ncapacity = 1000\n",
        ["ring.capacity 1000", "power of two"],
    ),
    (
        "pipeline-behind-past-the-rings",
        "(at most ring.capacity x (gateways + 1), what the rings can hold)",
        '[ring]\ncapacity = 16\n[journal]\nfsync = "pipelined"\npipeline_behind = 33\n',
        ["journal.pipeline_behind 33", "(32)"],
    ),
    (
        "archive-dir-relative",
        '<archive_dir>/<instance> (absolute; "": var/<instance>/journal-archive)',
        '[journal]\narchive_dir = "archive"\n',
        ["journal.archive_dir 'archive'", "absolute"],
    ),
    (
        "gateway-tls-half",
        "files (both, or neither: plain TCP)",
        '[[gateways]]\nname = "a"\nid = 1\ntls_cert = "/etc/ringex/fix.pem"\n',
        ["tls_cert is set and tls_key is not", "both, or neither"],
    ),
    (
        "rest-tls-half",
        "and key, both or neither",
        '[[gateways]]\nname = "a"\nid = 1\n[gateways.rest]\ntls_key = "/etc/ringex/api.key"\n',
        ["gateways.rest", "tls_key is set and tls_cert is not"],
    ),
    (
        "replication-tls-two-of-three",
        "mutual TLS, all three or none",
        '[replication]\ntls_cert = "/a.pem"\ntls_key = "/a.key"\n',
        ["tls_cert, tls_key set and tls_ca not", "all three, or none"],
    ),
    *(
        (
            f"session-end-{when}",
            '"HH:MM" UTC: END_OF_SESSION daily',
            f'[supervisor]\nsession_end_utc = "{when}"\n',
            [f"supervisor.session_end_utc '{when}'", "00:00 to 23:59"],
        )
        for when in ("24:00", "9:00", "21:60")
    ),
    (
        "gateway-named-admin",
        "a gateway may not be named `admin`",
        '[[gateways]]\nname = "admin"\nid = 1\n',
        ["gateway name 'admin'"],
    ),
    (
        "symbol-not-base-quote",
        "another name must set both",
        '[[symbols]]\nname = "BTCUSD"\nid = 1\n[[matchers]]\nname = "m1"\nsymbols = ["BTCUSD"]\n',
        ["'BTCUSD'", "base and quote"],
    ),
    (
        "assets-listed-not-all",
        "one that lists any lists all it uses",
        '[[assets]]\nname = "USD"\nid = 1\ndecimals = 6\n',
        ["base asset 'BTC'", "(USD)"],
    ),
    (
        "quote-decimals",
        "(decimals >= price + qty decimals)",
        '[[symbols]]\nname = "BTC-USD"\nid = 1\nprice_decimals = 3\nqty_decimals = 4\n'
        '[[matchers]]\nname = "m1"\nsymbols = ["BTC-USD"]\n',
        ["quote USD has 6 decimals", "price_decimals + qty_decimals = 7"],
    ),
    (
        "symbol-two-matchers",
        "(each symbol exactly one)",
        '[[matchers]]\nname = "m1"\nsymbols = ["BTC-USD", "ETH-USD"]\n'
        '[[matchers]]\nname = "m2"\nsymbols = ["ETH-USD"]\n',
        ["'ETH-USD'", "'m1'", "'m2'"],
    ),
    (
        "symbol-no-matcher",
        "(each symbol exactly one)",
        '[[matchers]]\nname = "m1"\nsymbols = ["BTC-USD"]\n',
        ["no matcher owns", "ETH-USD"],
    ),
]


@pytest.mark.parametrize(
    ("quote", "text", "named"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_a_config_that_could_not_run_is_refused_naming_value_and_limit(
    tmp_path: Path, quote: str, text: str, named: list[str]
) -> None:
    """README Configure: "A config that could not run is refused at load, naming what is
    wrong: ..." (config/schema.py __post_init__ checks, config/fields.py, config/loader.py):
    each promised refusal, one line, naming the value and the limit it meets."""
    _claim(quote)
    message = _refusal(tmp_path, text)
    assert "\n" not in message
    assert [part for part in named if part not in message] == []


def test_a_var_dir_that_is_a_file_is_refused_naming_it(tmp_path: Path) -> None:
    """README Configure: "a `var_dir` that is a file" is refused at load
    (config/loader.py load_profile)."""
    _claim("a `var_dir` that is a file")
    afile = _write(tmp_path, "x", "afile")
    message = _refusal(tmp_path, f'var_dir = "{afile}"\n')
    assert f"var_dir = {str(afile)!r}" in message and "not a directory" in message


#: (id, README quote, config text) that the README says load.
ALLOWED: list[tuple[str, str, str]] = [
    (
        "reuse-port-one-comp-id",
        "gateways that all set `reuse_port` may share theirs",
        '[[gateways]]\nname = "a"\nid = 1\nreuse_port = true\n[gateways.rest]\nport = 8080\n'
        '[[gateways]]\nname = "b"\nid = 2\nreuse_port = true\n[gateways.rest]\nport = 8080\n',
    ),
    (
        "reuse-port-own-address",
        "answering as one `comp_id` where they listen on the same address or both on every address",
        '[[gateways]]\nname = "a"\nid = 1\nreuse_port = true\nhost = "0.0.0.0"\n'
        '[[gateways]]\nname = "b"\nid = 2\nreuse_port = true\ncomp_id = "OTHER"\n',
    ),
    (
        "primary-ipv6-bracketed",
        "(an IPv6 host in brackets, `[::1]:9900`)",
        '[replication]\nprimary = "[::1]:9900"\n',
    ),
    (
        "metrics-off-frees-its-port",
        "`metrics = false` turns it off",
        "[supervisor]\nmetrics = false\nmetrics_port = 9878\n",
    ),
    (
        "pipeline-behind-what-the-rings-hold",
        "(at most ring.capacity x (gateways + 1), what the rings can hold)",
        '[ring]\ncapacity = 16\n[journal]\nfsync = "pipelined"\npipeline_behind = 32\n',
    ),
    (
        "standby-listen-port-of-its-own",
        "a `replication.listen_port` of its own (ignored while it is a standby)",
        '[replication]\nprimary = "primary-host:9900"\nlisten_port = 9901\n',
    ),
]


@pytest.mark.parametrize(("quote", "text"), [r[1:] for r in ALLOWED], ids=[r[0] for r in ALLOWED])
def test_what_the_readme_allows_loads(tmp_path: Path, quote: str, text: str) -> None:
    """README Configure and Hot standby: the settings said to be allowed next to the refusals
    (gateways sharing a port with ``reuse_port``, an IPv6 primary in brackets, ``metrics =
    false``, ``pipeline_behind`` at exactly what the rings hold, a standby's own
    ``listen_port``) load."""
    _claim(quote)
    cfg = _load(tmp_path, text)
    if cfg.replication.primary:
        assert cfg.replication.primary_address()[1] == 9900
        assert [spec.name for spec in plan(cfg)] == ["standby"]


def test_a_refused_config_is_one_line_and_exit_2(
    tmp_path: Path, instance: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """README Configure: "a profile or file that does not load is one line on stderr and exit
    status 2" (procs/cli.py main)."""
    _claim("a profile or file that does not load is one line on stderr and exit status 2")
    path = _write(tmp_path, f'instance = "{instance}"\n[ring]\ncapacity = 1000\n')
    assert procs.cli.main(["status", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ring.capacity 1000" in err


def test_config_takes_a_relative_file_without_a_suffix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README Configure: "`--config FILE` takes any path (a file without a suffix too)": a
    bare relative name is the file, not a profile (procs/cli.py _profile)."""
    _claim("`--config FILE` takes any path (a file without a suffix too)")
    _write(tmp_path, 'instance = "rv104bare"\n', "standby")
    monkeypatch.chdir(tmp_path)
    profile = procs.cli._profile(argparse.Namespace(config="standby", profile=None))
    assert load_profile(profile).instance == "rv104bare"
