"""Review 104, part 3 of 3 (refusals): the refusals README.md's "## Configure" promises are made,
one line naming the value and the limit (every bounded key of the schema past each bound; each
config that could not run; a bad ``var_dir``; a refused config at the command line), and the
settings it says are allowed next to them load. The keys are in ``test_review104_readme_keys``,
the snippets in ``test_review104_readme_snippets``.

Convention (shared helpers in ``readme_claims``): the README is read as it is when the test
runs, and each claim is found in it by a quote (whitespace folded), so a claim that is reworded
fails here, loudly, rather than being checked no longer. None of the four disagreements found
was here: these tests are claims checked and found right. Nothing here starts a process, binds a
port or touches a database: a config is loaded, planned and inspected."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

import procs.cli
import procs.supervisor.main
from config import load_profile
from config.loader import ConfigError
from procs.supervisor.plan import plan
from tests.unit.config.readme_claims import (
    LEAVES,
    _base,
    _claim,
    _load,
    _metas,
    _refusal,
    _setting,
    _shown_at,
    _write,
)

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
    """README Configure: "a `var_dir` or `journal.archive_dir` that is a file" is refused at load
    (config/loader.py load_profile)."""
    _claim("a `var_dir` or `journal.archive_dir` that is a file")
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
