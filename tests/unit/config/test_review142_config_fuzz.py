"""Review 142: the config loader (``config.loader.load_profile``) held against hostile values.

Method: a valid profile (every table present: ring, wait, assets, symbols, matchers, a gateway
with its REST API, supervisor, marketdata, database, risk, journal, replication, gc) written as
TOML to ``tmp_path``; every value field of every Struct (enumerated from ``msgspec.structs``,
list tables at their first entry) set in turn to 0, -1, 2**63, 2**64, 1e308, nan, inf, -inf,
true, "", a 5000-character string, a NUL, unicode, a path with ``..``, a list and a table; each
loaded through ``load_profile``. Then duplicated names and ids, clashing listeners, ring
geometry, ``replication.primary``, ``session_end_utc``, paths (``var_dir``, ``archive_dir``,
TLS files), a 5000-digit integer, deep nesting, duplicated keys, bad UTF-8, and the start's
``preflight.cpus_missing`` on ``supervisor.cores`` naming CPUs that do not exist.

Sound: no hostile value raises anything but ``ConfigError``; every refusal names its key, and a
schema bound's refusal its value (``refused_value.with_value``); duplicated names and ids of
gateways, symbols, assets and matchers, a FIX and REST port on one address, a non-power-of-two
or oversized ring, a bad primary port, 24:00, nice/cores out of range or naming no process, a
``var_dir`` under a file, deep nesting, duplicated keys and bad UTF-8 are all refused by name;
``cpus_missing`` names a CPU of 2**64.

Faults (each a strict xfail when written; all fixed since: 1-4, 7 and 8 the same session, a
shown value cut to 80 characters, a ``Host`` type for the five listen hosts, a NUL or a file
in ``var_dir``/``archive_dir`` refused, and every integer past int64 and every float that is
not finite refused naming its key; 5, 6 and 9 the session after, the start refusing TLS
files that do not load (``preflight.tls_refused``, naming the key), listen hosts compared
in one spelling (``fields.listen_address``) and a 4,300-digit literal refused naming its
line and key (``loader._huge_literal``)):
1. A refused long value is echoed whole: a 5000-character ``instance`` or ``wait.strategy``
   gives a 5-10 kB message (``config/refused_value.py:99`` ``repr``; msgspec's enum message).
2. Host keys (``gateways.host``, ``gateways.rest.host``, ``marketdata.host``,
   ``supervisor.metrics_host``, ``replication.listen_host``) take any string: a NUL, 5000
   characters, ``../../etc`` load; the bind fails at start (``config/edges.py:16,72,155``,
   ``config/schema.py:218,248``).
3. ``var_dir`` with a NUL loads: ``Path.exists`` answers False on ValueError, so
   ``_var_dir_refused`` (``config/loader.py:66``) says nothing; every command then fails.
4. ``journal.archive_dir`` under a file, or with a NUL, loads (``config/schema.py:347`` only
   checks the leading "/"); ``ringex replay --archive`` fails later.
5. TLS files (``gateways.tls_cert``/``tls_key``) that do not exist load; the gateway dies at
   start (``procs/common/tls.py:52``) after the instance began starting.
6. The listener clash check (``config/schema.py:509-510``) misses another spelling of one
   address: ``127.1`` and ``127.0.0.1`` on one port load; the second bind fails at start.
7. Integer keys with no upper bound accept 2**64, beyond the int64 the project caps record
   values at (``fields.Units``): e.g. ``marketdata.max_message_bytes``, ``rest.stream_queue``.
8. Float keys with no upper bound accept ``inf`` (timeouts, rates, snapshot periods), a value
   no key documents (``sync_timeout_ms`` spells "forever" as 0).
9. A 5000-digit integer's refusal names no key (``config/loader.py:50`` passes tomllib's
   "Exceeds the limit (4300 digits)" through).
"""

from __future__ import annotations

import copy
import math
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import tomli_w

from config.loader import ConfigError, load_profile
from config.schema import RingexConfig
from procs.supervisor.plan import plan
from procs.supervisor.preflight import cpus_missing, tls_refused

Path_ = tuple[str | int, ...]

BASE: dict[str, Any] = {
    "instance": "fuzz",
    "router_batch": 4096,
    "ring": {"capacity": 1024, "max_consumers": 16},
    "wait": {"strategy": "blocking", "spins": 0, "park_timeout_s": 0.02},
    "assets": [{"name": "USD", "id": 1, "decimals": 6}, {"name": "BTC", "id": 2, "decimals": 8}],
    "symbols": [
        {"name": "BTC-USD", "id": 1, "base": "BTC", "quote": "USD", "qty_decimals": 4},
    ],
    "matchers": [{"name": "m1", "symbols": ["BTC-USD"]}],
    "gateways": [{"name": "gw1", "id": 1, "port": 0, "rest": {"port": 0}}],
    "supervisor": {"cores": {"router": [0]}, "nice": {"dbwriter": 10}},
    "marketdata": {"port": 0},
    "database": {},
    "risk": {},
    "journal": {},
    "replication": {},
    "gc": {},
}

HOSTILE: list[Any] = [
    0,
    -1,
    2**63,
    2**64,
    1e308,
    math.nan,
    math.inf,
    -math.inf,
    True,
    "",
    "x" * 5000,
    "a\x00b",
    "é☃",
    "../../etc",
    [1],
    {"a": 1},
]


def _struct_of(annotation: object) -> tuple[type[msgspec.Struct] | None, bool]:
    """The config Struct a field holds (itself, optional, or in a list: then True)."""
    for held in (annotation, *typing.get_args(annotation)):
        in_list = typing.get_origin(held) is list
        candidate = typing.get_args(held)[0] if in_list else held
        if isinstance(candidate, type) and issubclass(candidate, msgspec.Struct):
            return candidate, in_list
    return None, False


def _leaves(
    struct: type[msgspec.Struct] = RingexConfig, at: Path_ = ()
) -> Iterator[tuple[Path_, msgspec.structs.FieldInfo]]:
    """Every value field of the schema (a list table's at its first entry)."""
    for field in msgspec.structs.fields(struct):
        inner, in_list = _struct_of(field.type)
        if inner is None:
            yield (*at, field.name), field
        else:
            yield from _leaves(inner, (*at, field.name, 0) if in_list else (*at, field.name))


LEAVES = list(_leaves())


def _base_and_meta(annotation: object) -> tuple[object, msgspec.Meta | None]:
    """A field's type without ``| None`` and ``Annotated``, and its Meta (or None)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    if typing.get_origin(annotation) is typing.Annotated:
        base, *extra = typing.get_args(annotation)
        metas = [m for m in extra if isinstance(m, msgspec.Meta)]
        return base, metas[0] if metas else None
    return annotation, None


def _dotted(path: Path_) -> str:
    return ".".join(str(p) for p in path if not isinstance(p, int))


def _put(doc: dict[str, Any], path: Path_, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    node: Any = doc
    for step in path[:-1]:
        if isinstance(node, dict) and step not in node:
            node[step] = {}
        node = node[step]
    node[path[-1]] = value
    return doc


@pytest.fixture
def load(tmp_path: Path) -> Any:
    """Load a doc (BASE with ``var_dir`` set here, unless it sets one) as a TOML file."""
    file = tmp_path / "fuzz.toml"
    (tmp_path / "var").mkdir()

    def run(doc: dict[str, Any]) -> RingexConfig:
        file.write_text(tomli_w.dumps({"var_dir": str(tmp_path / "var"), **doc}))
        return load_profile(str(file))

    return run


def _refusal(load: Any, doc: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as err:
        load(doc)
    return str(err.value)


def test_base_profile_loads(load: Any) -> None:
    cfg = load(BASE)
    assert cfg.gateways[0].rest is not None and len(LEAVES) > 100


def test_every_key_takes_hostile_values_without_a_crash(load: Any) -> None:
    """Each field x each hostile value: it loads, or a ConfigError names the key (and, for a
    schema bound, the value); never another exception."""
    faults: list[str] = []
    for path, _field in LEAVES:
        for value in HOSTILE:
            key = path[-1]
            assert isinstance(key, str)
            try:
                load(_put(BASE, path, value))
            except ConfigError as exc:
                message = str(exc)
                if key not in message:
                    faults.append(f"{_dotted(path)} = {value!r:.20}: no key in {message!r:.200}")
                bound = "Expected `int` >=" in message or "Expected `float` <" in message
                if bound and isinstance(value, int) and f"= {value}" not in message:
                    faults.append(f"{_dotted(path)} = {value}: no value in {message!r:.200}")
            except Exception as exc:
                faults.append(f"{_dotted(path)} = {value!r:.20}: {type(exc).__name__}: {exc}")
    assert not faults, "\n".join(faults)


def _gw(**fields: Any) -> dict[str, Any]:
    return {"name": "gw2", "id": 2, "port": 0, **fields}


def _with(**tables: Any) -> dict[str, Any]:
    return {**copy.deepcopy(BASE), **tables}


REFUSED = {
    "gateway name twice": (_with(gateways=[*BASE["gateways"], _gw(name="gw1")]), "gw1"),
    "gateway id twice": (_with(gateways=[*BASE["gateways"], _gw(id=1)]), "gateway id 1"),
    "symbol id twice": (
        _with(
            symbols=[*BASE["symbols"], {"name": "ETH-USD", "id": 1, "base": "BTC"}],
            matchers=[{"name": "m1", "symbols": ["BTC-USD", "ETH-USD"]}],
        ),
        "symbol id 1",
    ),
    "asset id twice": (
        _with(assets=[*BASE["assets"], {"name": "ETH", "id": 1, "decimals": 8}]),
        "asset id 1",
    ),
    "matcher name twice": (
        _with(
            symbols=[*BASE["symbols"], {"name": "ETH-USD", "id": 2, "base": "BTC"}],
            matchers=[
                {"name": "m1", "symbols": ["BTC-USD"]},
                {"name": "m1", "symbols": ["ETH-USD"]},
            ],
        ),
        "matcher name m1",
    ),
    "FIX and REST on one port": (
        _with(gateways=[{"name": "gw1", "id": 1, "port": 9000, "rest": {"port": 9000}}]),
        "9000",
    ),
    "FIX and marketdata on one port": (
        _with(gateways=[_gw(port=9001)], marketdata={"port": 9001}),
        "9001",
    ),
    "ring capacity 3": (_with(ring={"capacity": 3}), "ring.capacity 3"),
    "ring capacity 2**25": (_with(ring={"capacity": 1 << 25}), "ring.capacity = 33554432"),
    "primary port 0": (_with(replication={"primary": "h:0"}), "'h:0'"),
    "primary port huge": (_with(replication={"primary": "h:99999999999"}), "99999999999"),
    "session end 24:00": (_with(supervisor={"session_end_utc": "24:00"}), "'24:00'"),
    "nice -21": (_with(supervisor={"nice": {"router": -21}}), "supervisor.nice['router'] = -21"),
    "cores -1": (_with(supervisor={"cores": {"router": [-1]}}), "= -1"),
    "nice of no process": (_with(supervisor={"nice": {"nosuch": 1}}), "'nosuch'"),
    "var_dir under a file": (_with(var_dir="/etc/passwd/var"), "/etc/passwd"),
}


@pytest.mark.parametrize(("doc", "named"), REFUSED.values(), ids=REFUSED.keys())
def test_cross_checks_refuse_by_name(load: Any, doc: dict[str, Any], named: str) -> None:
    assert named in _refusal(load, doc)


@pytest.mark.parametrize(
    "text",
    ["x = " + "[" * 5000 + "]" * 5000, "x = " + "{a=" * 3000 + "1" + "}" * 3000, "a=1\na=2"],
    ids=["deep arrays", "deep tables", "duplicated key"],
)
def test_toml_hostility_is_a_config_error(tmp_path: Path, text: str) -> None:
    file = tmp_path / "bad.toml"
    file.write_text(text)
    with pytest.raises(ConfigError, match=r"bad\.toml"):
        load_profile(str(file))


def test_bad_utf8_is_a_config_error(tmp_path: Path) -> None:
    file = tmp_path / "bad.toml"
    file.write_bytes(b"instance = '\xff'")
    with pytest.raises(ConfigError, match="utf-8"):
        load_profile(str(file))


def test_cpus_missing_names_a_cpu_that_does_not_exist(load: Any) -> None:
    cfg = load(_with(supervisor={"cores": {"router": [4096]}}))
    refused = cpus_missing(plan(cfg))
    assert "supervisor.cores['router']" in refused and "4096" in refused


@pytest.mark.parametrize("cpu", [2**63, 2**64])
def test_a_cpu_past_int64_is_refused_at_load_naming_the_key(load: Any, cpu: int) -> None:
    assert "supervisor.cores.router[0] = " in _refusal(
        load, _with(supervisor={"cores": {"router": [cpu]}})
    )


# -- faults ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [("instance",), ("wait", "strategy")], ids=_dotted)
def test_a_long_value_is_not_echoed_whole(load: Any, path: Path_) -> None:
    assert len(_refusal(load, _put(BASE, path, "x" * 5000))) < 1000


HOSTS: list[Path_] = [
    ("gateways", 0, "host"),
    ("gateways", 0, "rest", "host"),
    ("marketdata", "host"),
    ("supervisor", "metrics_host"),
    ("replication", "listen_host"),
]


@pytest.mark.parametrize("value", ["a\x00b", "x" * 5000, "../../etc"], ids=["nul", "long", "dots"])
@pytest.mark.parametrize("path", HOSTS, ids=_dotted)
def test_a_host_that_is_no_host_is_refused(load: Any, path: Path_, value: str) -> None:
    assert _dotted(path).rsplit(".", 1)[-1] in _refusal(load, _put(BASE, path, value))


def test_var_dir_with_a_nul_is_refused(load: Any) -> None:
    assert "var_dir" in _refusal(load, _with(var_dir="var\x00x"))


@pytest.mark.parametrize("where", ["/etc/passwd/archive", "/tmp/a\x00b"], ids=["file", "nul"])
def test_archive_dir_that_cannot_be_made_is_refused(load: Any, where: str) -> None:
    assert "archive_dir" in _refusal(load, _with(journal={"archive_dir": where}))


def test_tls_files_that_do_not_exist_are_refused_before_a_start(load: Any) -> None:
    """A profile loads anywhere (units for another host are made from it); the start refuses
    TLS files that do not load, naming the key, before the instance begins (fault 5)."""
    gateway = {"name": "gw1", "id": 1, "port": 0, "tls_cert": "/no/c.pem", "tls_key": "/no/k.pem"}
    why = tls_refused(load(_with(gateways=[gateway])))
    assert "gateways['gw1'].tls_cert" in why and "/no/c.pem" in why
    https = {"port": 0, "tls_cert": "/c", "tls_key": "/k"}
    rest = {"name": "gw1", "id": 1, "port": 0, "rest": https}
    assert "gateways['gw1'].rest.tls_cert" in tls_refused(load(_with(gateways=[rest])))
    assert tls_refused(load(BASE)) == ""


def test_a_listener_clash_under_another_spelling_is_refused(load: Any) -> None:
    doc = _with(gateways=[_gw(host="127.1", port=9002)], marketdata={"port": 9002})
    assert "9002" in _refusal(load, doc)
    doc = _with(gateways=[_gw(host="0:0::0", port=9003)], marketdata={"port": 9003, "host": "::"})
    assert "9003" in _refusal(load, doc)


def _unbounded(kind: type) -> list[Path_]:
    """Value fields of ``kind`` whose schema sets no upper bound (and no partner bounds)."""
    found = []
    for path, field in LEAVES:
        base, meta = _base_and_meta(field.type)
        if base is kind and (meta is None or (meta.le is None and meta.lt is None)):
            found.append(path)
    partnered = {"min_heartbeat_s", "recv_window_ms"}  # at most their max_ partner
    return [p for p in found if p[-1] not in partnered]


INTS = _unbounded(int)
FLOATS = _unbounded(float)


@pytest.mark.parametrize("path", INTS, ids=_dotted)
def test_an_integer_past_int64_is_refused(load: Any, path: Path_) -> None:
    assert str(2**64) in _refusal(load, _put(BASE, path, 2**64))


@pytest.mark.parametrize("path", FLOATS, ids=_dotted)
def test_an_infinite_float_is_refused(load: Any, path: Path_) -> None:
    assert "inf" in _refusal(load, _put(BASE, path, math.inf))


def test_a_huge_integer_literal_names_its_key(tmp_path: Path) -> None:
    file = tmp_path / "big.toml"
    file.write_text("[ring]\ncapacity = " + "9" * 5000 + "\n")
    with pytest.raises(ConfigError) as err:
        load_profile(str(file))
    assert "capacity" in str(err.value)
