"""Review 263: the typed config and what an operator is told about a wrong one.

Reviewed: ``config/schema.py``, ``config/edges.py``, ``config/fields.py``, ``config/loader.py``,
``config/refused_value.py``, the shipped profiles (``config/profiles/{dev,test,latency}.toml``),
``procs/supervisor/preflight.py`` (and the checks ``procs/supervisor/main.py`` makes with it),
``procs/cli.py``'s handling of a config that does not load, and ``ringex stop``/``status``
with a config file edited while its instance runs. README's "## Configure" is the contract: an
unknown key is an error naming the key and the file; a bad value names the value and the limit
(a long value cut to its first 80 characters); a config that could not run is refused at load
(a listen host that is not "", an IP literal or a host name; a ``replication.primary`` that is
not host:port), and nothing starts on a config that cannot work.

Method: ``load_profile`` on TOML files written per test; ``ringex`` as a subprocess where its
text and exit status are the question, two small whole instances (``ringex run --detach``).

Faults (each fixed; its test says what it was):
1. ``config/fields.py:27-33`` (``Host``): the pattern's IP branch ``[0-9A-Fa-f:.]+`` takes any
   run of hex digits, colons and dots, so ``host = "1::2::3"`` (no IP literal, and a colon is
   in no host name) loads; the gateway then dies at its bind with a ``socket.gaierror``
   traceback in its log, ``ringex run`` saying only "gateway-gw1 exited with 1 while starting;
   see <log>" after the router and matcher started. Likewise ``"::ffff:127.0.0.1"``, an IP
   literal no listener can bind (asyncio and uvloop set IPV6_V6ONLY: EINVAL at every bind).
   Fix: a ``host_refused(host)`` in ``fields.py`` called from each ``__post_init__`` holding
   a ``Host`` (gateway, REST, market data, supervisor, replication): a host with a colon must
   parse with ``ipaddress.ip_address`` (its zone dropped) and not be IPv4-mapped.
2. ``config/schema.py:284-295`` (``ReplicationConfig.primary_address``): only the port is
   checked; ``primary = "bad host!:9900"`` or ``"[1::2::3]:9900"`` loads, and the standby
   retries a connect that can never resolve. Fix: hold the host part to the same check as
   ``Host`` (pattern and ``host_refused``).
3. ``config/refused_value.py:105`` (``_LONG``): a value is cut only where it runs 80
   characters without a quote or whitespace, so a 5,000-character value with spaces (a pasted
   paragraph) is echoed whole (twice for ``wait.strategy``: msgspec's "Invalid enum value"
   and the value added). Fix: cut a quoted run by its length whatever it holds, e.g. also
   ``(['"`])([^'"`\\n]{80})[^'"`\\n]+\\1``, and cut ``{!r}`` values in the ``__post_init__``
   messages (``session_end_utc``, ``archive_dir``, the matcher's symbols) with ``cut_values``.
4. ``config/schema.py:474-484`` (``_check_processes``): a matcher named ``dbwriter`` loads,
   and its counter page is ``stats-dbwriter`` (``procs/common/stats.py:124``), the database
   writer's (``DBWRITER_PAGE``): each process's ``Counters.open`` replaces the other's page,
   so the metrics show the writer's counters for the matcher or none, and the supervisor's
   wait for the writer's ``ready`` counter reads a page without one. Review 102 refused the
   name ``router`` for the same reason. Fix: refuse ``dbwriter`` beside ``router``.
5. ``procs/supervisor/main.py:113-119`` (preflight): a ``var_dir`` whose embedded
   PostgreSQL socket (``var/<instance>/pg/data/.s.PGSQL.5432``) is past 107 bytes is refused
   only by the database writer's start (``EmbeddedError`` in ``embedded_postgres.py:166``, a
   traceback in its log): the matcher and router start first, and ``ringex run`` says only
   "dbwriter exited with 1 while starting; see <log>" (a var_dir the postgres user cannot
   reach moves the cluster to the short /var/tmp/ringex-pg/<digest>, which dodges it; one it
   can reach, as in production, does not). Fix: ask the socket length in
   ``refuse_cpus_missing`` (a ``preflight.embedded_refused(cfg)`` building
   ``EmbeddedPostgres(postgres_dir(cfg))`` where the database is on without a dsn).
6. ``procs/cli.py:234-235, 263`` (``_stop``, ``_stop_starts``): with the file's
   ``instance`` edited while the instance runs, ``ringex stop --config FILE`` finds the
   running supervisor by its command line (``pending_runs``) and stops it, but says
   "instance <new name> stopped (its start was under way)": neither the instance stopped
   nor what it was doing. Fix: have ``pending_runs`` return, per pid, the instance its
   supervisor's status file names (or read ``status.json``'s ``profile`` under
   ``var_dir``), and say "instance <old> (started from this file, which now names <new>)
   stopped".

Sound: an unknown key at every depth is named with its table path and the file; wrong
types, out-of-range values (sizes, capacities, ports, tick, fees, bands, enums) name the
value and the limit; a TOML syntax error names its line and column; listener clashes (FIX
with FIX, FIX with REST, with market data, replication), two owners of a symbol, an unowned
symbol, a repeated gateway id or name, a DSN libpq cannot parse are refused naming them;
``supervisor.cores`` naming a CPU this host lacks is refused by preflight naming the CPU and
the host's CPUs; every shipped profile loads and passes preflight's CPU and nice checks on
this 2-core host (``ringex run --profile latency`` was run by hand here: it starts, busy-spin
unpinned, and stops; not run in this file, its fixed ports and spinning would disturb other
runs); ``ringex status``/``stop``/``admin`` on a file that does not load are exit 2, one line.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from config import load_profile, profile_names
from config.loader import ConfigError
from procs.common.stats import DBWRITER_PAGE, matcher_page
from procs.supervisor.plan import plan
from procs.supervisor.preflight import cpus_missing, nice_refused
from tests.free_ports import free_port
from tests.unit.supervisor.test_review50_ops import exchange_profile, ringex

GW = '[[gateways]]\nname = "gw1"\nid = 1\n'
ONE_SYMBOL = '[[symbols]]\nname = "BTC-USD"\nid = 1\n'
ONE_MATCHER = '[[matchers]]\nname = "m1"\nsymbols = ["BTC-USD"]\n'


def _write(tmp_path: Path, text: str, name: str = "ringex.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _refusal(tmp_path: Path, text: str) -> str:
    """The ConfigError ``text`` (a TOML file's content) is refused with; fails if it loads."""
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_profile(str(path))
    message = str(caught.value)
    assert str(path) in message, message  # every refusal names its file
    return message


def _instance(tag: str) -> str:
    return f"r263{tag}{os.getpid()}"


# -- sound: what a wrong config is told --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "where"),
    [
        ("instanc = 1\n", "instanc", ""),
        (GW + "prot = 5\n", "prot", "$.gateways[0]"),
        (GW + "[gateways.rest]\nprot = 5\n", "prot", "$.gateways[0].rest"),
        (ONE_SYMBOL + "tick_size = 1\n" + ONE_MATCHER, "tick_size", "$.symbols[0]"),
        ('[[matchers]]\nname = "m1"\nsymbols = ["BTC-USD", "ETH-USD"]\nbatchh = 3\n', "batchh",
         "$.matchers[0]"),
        ("[database]\ndns = 'x'\n", "dns", "$.database"),
        ("[replication]\nprimry = 'h:1'\n", "primry", "$.replication"),
        ("[supervisor]\ncore = {}\n", "core", "$.supervisor"),
        ("[marketdata]\nportt = 1\n", "portt", "$.marketdata"),
    ],
)  # fmt: skip
def test_unknown_key_at_every_depth_is_named_with_its_table(
    tmp_path: Path, text: str, key: str, where: str
) -> None:
    """Scenario: a misspelt key at the top, in [[gateways]], [gateways.rest], [[symbols]],
    [[matchers]], [database], [replication], [supervisor], [marketdata]. Expected: refused,
    naming the key, its table's path and the file. Now: so."""
    message = _refusal(tmp_path, text)
    assert f"unknown field `{key}`" in message
    assert where in message


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("[ring]\ncapacity = -4\n", ["ring.capacity = -4", ">= 2"]),
        ("[ring]\ncapacity = 0\n", ["ring.capacity = 0", ">= 2"]),
        ("[ring]\ncapacity = 1000\n", ["1000", "power of two"]),
        ("[ring]\ncapacity = 1024.0\n", ["ring.capacity = 1024.0", "`int`"]),
        (GW + "port = 70000\n", ["gateways[0].port = 70000", "<= 65535", "gateway 'gw1'"]),
        (GW + "port = -1\n", ["gateways[0].port = -1", ">= 0"]),
        (GW + "port = '9878'\n", ["gateways[0].port = '9878'", "got `str`"]),
        (ONE_SYMBOL + "tick = 0\n" + ONE_MATCHER, ["symbols[0].tick = 0", ">= 1"]),
        (ONE_SYMBOL + "maker_fee_bps = 5000\n" + ONE_MATCHER, ["= 5000", "<= 1000"]),
        (ONE_SYMBOL + "band_bps = 20000\n" + ONE_MATCHER, ["= 20000", "<= 10000"]),
        (ONE_SYMBOL + "lot = 10\nmax_qty = 5\n" + ONE_MATCHER, ["lot = 10", "max_qty = 5"]),
        ("[journal]\nfsync = 'always'\n", ["'always'", "'batch', 'pipelined'"]),
        ("[supervisor]\nnice = {dbwriter = 30}\n", ["supervisor.nice['dbwriter'] = 30", "<= 19"]),
        ("[supervisor]\nsession_end_utc = '25:00'\n", ["'25:00'", "00:00 to 23:59"]),
        ("[ring\ncapacity = 4\n", ["line 1, column 6"]),
        ("[ring]\ncapacity =\n", ["line 2, column 11"]),
    ],
)  # fmt: skip
def test_a_bad_value_names_the_value_and_the_limit(
    tmp_path: Path, text: str, shown: list[str]
) -> None:
    """Scenario: wrong types, out-of-range and contradictory values, TOML syntax errors.
    Expected: refused naming the value and the limit (a syntax error its line and column).
    Now: so."""
    message = _refusal(tmp_path, text)
    for part in shown:
        assert part in message, (part, message)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (GW + "port = 9000\n" + '[[gateways]]\nname = "gw2"\nid = 2\nport = 9000\n',
         "both listen there"),
        (GW + "port = 9000\n[gateways.rest]\nport = 9000\n", "gateway gw1 (REST)"),
        (GW + "port = 8765\n", "marketdata (127.0.0.1:8765) and gateway gw1 (FIX)"),
        ("[replication]\nlisten_port = 9878\n", "replication.listen_port (127.0.0.1:9878)"),
        ('[[matchers]]\nname = "m1"\nsymbols = ["BTC-USD", "ETH-USD"]\n'
         '[[matchers]]\nname = "m2"\nsymbols = ["BTC-USD"]\n', "owned by matchers 'm1' and 'm2'"),
        ('[[matchers]]\nname = "m1"\nsymbols = ["BTC-USD"]\n', "no matcher owns symbol(s) ETH-USD"),
        (GW + "port = 9001\n" + '[[gateways]]\nname = "gw2"\nid = 1\nport = 9002\n',
         "gateway id 1 is configured twice"),
        (GW + "port = 9001\n" + '[[gateways]]\nname = "gw1"\nid = 2\nport = 9002\n',
         "gateway name gw1 is configured twice"),
        ("[database]\ndsn = 'not a dsn'\n", "database.dsn: missing \"=\" after \"not\""),
        ("[supervisor]\ncores = {matcher-m9 = [0]}\n", "names 'matcher-m9', no process"),
    ],
)  # fmt: skip
def test_a_config_that_could_not_run_is_refused_at_load(
    tmp_path: Path, text: str, shown: str
) -> None:
    """Scenario: two listeners on one port, two matchers owning a symbol or none, a gateway
    id or name twice, a DSN libpq cannot parse, a core for no process. Expected: refused at
    load naming them. Now: so."""
    assert shown in _refusal(tmp_path, text)


def test_a_cpu_the_host_lacks_is_refused_before_a_start(tmp_path: Path) -> None:
    """Scenario: ``supervisor.cores`` names CPU 4096 on this host. Expected: the config
    loads (units for another host are made from it), preflight refuses it naming the process,
    the CPU and the host's CPUs. Now: so."""
    cfg = load_profile(str(_write(tmp_path, "[supervisor]\ncores = {router = [4096]}\n")))
    why = cpus_missing(plan(cfg))
    assert "supervisor.cores['router']" in why and "[4096]" in why
    assert str(sorted(os.sched_getaffinity(0))) in why


@pytest.mark.parametrize("name", profile_names())
def test_each_shipped_profile_loads_and_passes_preflight_here(name: str) -> None:
    """Scenario: dev, test and latency on this 2-core host. Expected: each loads, and
    preflight's CPU and nice checks pass (latency pins nothing until given cores). Now: so."""
    cfg = load_profile(name)
    assert cpus_missing(plan(cfg)) == ""
    assert nice_refused(plan(cfg)) == ""


@pytest.mark.parametrize("command", [["status"], ["stop"], ["admin", "users"]])
def test_the_cli_on_a_config_that_does_not_load_is_one_line_and_exit_2(
    tmp_path: Path, command: list[str]
) -> None:
    """Scenario: ``ringex status|stop|admin users --config F`` where F has a TOML syntax
    error. Expected: exit 2, one line on stderr naming the file and the line, no traceback.
    Now: so."""
    path = _write(tmp_path, "[ring]\ncapacity = = 4\n")
    done = ringex(*command, "--config", str(path))
    assert done.returncode == 2, done
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert str(path) in done.stderr and "line 2" in done.stderr


# -- faults ------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["1::2::3", "12:34", "::ffff:127.0.0.1"])
def test_a_listen_host_no_listener_can_bind_is_refused_at_load(tmp_path: Path, host: str) -> None:
    """Scenario: ``[[gateways]] host`` is "1::2::3" or "12:34" (neither an IP literal nor a
    host name: a colon is in none), or "::ffff:127.0.0.1" (IPv4-mapped: asyncio's and
    uvloop's listeners set IPV6_V6ONLY, and its bind is EINVAL). Expected: refused at load
    naming ``gateways[0].host`` and the value, as README promises of a host that is not "",
    an IP literal or a host name. Was (fixed): it loads; ``ringex run`` starts the matcher and the
    router, then the gateway dies at its bind (``socket.gaierror`` traceback in its log) and
    the run says only "gateway-gw1 exited with 1 while starting; see <log>"."""
    message = _refusal(tmp_path, GW + f"port = {free_port()}\nhost = {host!r}\n")
    assert "host" in message and host in message


@pytest.mark.parametrize("primary", ["bad host!:9900", "[1::2::3]:9900"])
def test_a_primary_whose_host_is_no_host_is_refused(tmp_path: Path, primary: str) -> None:
    """Scenario: a standby's ``replication.primary`` is "bad host!:9900" or
    "[1::2::3]:9900". Expected: refused at load, as README says of a primary that is not
    host:port, naming the value. Was (fixed): it loads (only the port is checked) and the standby
    would retry a connect that can never resolve."""
    message = _refusal(tmp_path, f"[replication]\nprimary = {primary!r}\n")
    assert "replication.primary" in message


LONG = " ".join(["word"] * 1000)  # 4,999 characters, a space every fifth


@pytest.mark.parametrize(
    "text",
    [
        f'instance = "{LONG}"\n',
        f'[wait]\nstrategy = "{LONG}"\n',
        f'[supervisor]\nsession_end_utc = "{LONG}"\n',
        GW + f'comp_id = "{LONG}"\n',
    ],
    ids=["instance", "wait.strategy", "session_end_utc", "comp_id"],
)
def test_a_long_value_with_spaces_is_cut(tmp_path: Path, text: str) -> None:
    """Scenario: a 5,000-character value that holds spaces (a paragraph pasted into a key).
    Expected: refused with the value cut to its first 80 characters, as README says (a
    message of a few hundred characters). Was (fixed): ``cut_values`` cuts only runs without
    whitespace, so the whole value is echoed: 5,100 to 10,150 characters."""
    message = _refusal(tmp_path, text)
    assert len(message) < 1000, len(message)


def test_a_matcher_named_dbwriter_is_refused(tmp_path: Path) -> None:
    """Scenario: ``[[matchers]] name = "dbwriter"`` with the database writer on. Expected:
    refused at load, as a matcher named ``router`` is (review 102): its counter page is the
    writer's. Was (fixed): it loads; ``matcher_page("dbwriter")`` is ``DBWRITER_PAGE``, so each
    process's ``Counters.open`` replaces the other's page (other counter names): the
    metrics and the supervisor's wait for the writer's ``ready`` counter read the wrong one."""
    assert matcher_page("dbwriter") == DBWRITER_PAGE  # what the two processes open
    text = '[[matchers]]\nname = "dbwriter"\nsymbols = ["BTC-USD", "ETH-USD"]\n'
    assert "dbwriter" in _refusal(tmp_path, text)


def test_a_var_dir_too_long_for_the_database_socket_is_refused_before_a_start(
    tmp_path: Path,
) -> None:
    """Scenario: the embedded database on, ``var_dir`` 100 characters deep, so its socket
    path (``var/<instance>/pg/data/.s.PGSQL.5432``) is past 107 bytes; ``ringex run
    --detach``. Expected: refused before any process starts, stderr naming the socket path
    or ``var_dir`` and the limit (exit 1). Was (fixed): the matcher and router start, the database
    writer dies at its start with an ``EmbeddedError`` traceback in its log, and stderr says
    only "dbwriter exited with 1 while starting; see <log>"."""
    # outside pytest's 0700 directory: there the cluster moves to /var/tmp/ringex-pg
    # (``embedded_postgres._reachable``), whose path is short; a 0755 one is where it runs
    base = Path(tempfile.mkdtemp(prefix="r263-", dir="/tmp"))
    base.chmod(0o755)
    var = base / ("v" * 80) / "var"
    var.mkdir(parents=True)
    instance = _instance("pg")
    profile = _write(
        tmp_path,
        f'instance = "{instance}"\nvar_dir = "{var}"\n[marketdata]\nenabled = false\n'
        "[ring]\ncapacity = 1024\n[supervisor]\nmetrics = false\nrestart_limit = 0\n"
        + GW
        + f"port = {free_port()}\n",
    )
    try:
        done = ringex("run", "--config", str(profile), "--detach", "--timeout", "60")
        assert done.returncode == 1, done
        assert "var_dir" in done.stderr or "socket path" in done.stderr, done.stderr
        started = sorted(p.name for p in (var / instance / "run").glob("*.log"))
        assert started == ["supervisor.log"], started  # no process started
    finally:
        ringex("stop", "--config", str(profile), "--timeout", "30")
        shutil.rmtree(base, ignore_errors=True)


def test_stop_with_the_instance_renamed_while_it_runs_names_what_it_stopped(
    tmp_path: Path,
) -> None:
    """Scenario: an instance runs from FILE; its ``instance`` is edited in FILE; ``ringex
    stop --config FILE``. Expected: the instance that ran is stopped and named (the old name),
    not a start said to be under way. Was (fixed): it is stopped (found by its supervisor's command
    line), but stdout says "instance <new name> stopped (its start was under way)": neither
    the instance stopped nor what it was doing."""
    old = _instance("ed")
    new = old + "b"
    profile = exchange_profile(tmp_path / "ex.toml", old, var_dir=str(tmp_path / "var"))
    text = profile.read_text()
    try:
        started = ringex("run", "--config", str(profile), "--detach", "--timeout", "60")
        assert started.returncode == 0, started
        profile.write_text(text.replace(f'instance = "{old}"', f'instance = "{new}"'))
        done = ringex("stop", "--config", str(profile), "--timeout", "60")
        assert done.returncode == 0, done
        said = done.stdout + done.stderr
        assert old in said.replace(new, ""), said
        assert "start was under way" not in said, said
    finally:
        profile.write_text(text)
        ringex("stop", "--config", str(profile), "--timeout", "60")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
