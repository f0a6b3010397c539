"""Review 134, part 2 (part 1, the convention and the loader's findings:
``test_review134_loader_docstrings.py``): the validation methods (``__post_init__``, the
``RingexConfig`` cross-field checks and the messages they refuse with) and the class
docstrings of ``config/schema.py`` and ``config/edges.py``, each loaded from a small TOML file
(the per-field ``#:`` comments are review 116's).

Disagreements found (the xfails):
- ``RingexConfig._check_processes``: "# host:port, or a ValueError naming it": a
  ``replication.primary`` whose port is a non-ASCII digit ``str.isdigit`` takes (``"db:²"``)
  is refused by ``int()``'s own "invalid literal for int() with base 10: '²'", naming neither
  ``replication.primary`` nor the address (``ReplicationConfig.primary_address``; code side:
  ``port.isascii() and port.isdigit()``, which also refuses ``"db:٩٩"``, now taken as 99).
- ``_check_listeners``: "No two listeners on one address": a host spelled ``LOCALHOST`` is
  not ``localhost``'s ``127.0.0.1`` to it, so it and a gateway on ``127.0.0.1`` at one port
  load, and the second to bind fails at start (code side: fold the host's case)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

import config.edges
import config.schema
from config.edges import GatewayConfig, MarketDataConfig, RestConfig
from config.schema import (
    GcConfig,
    ReplicationConfig,
    RingConfig,
    RingexConfig,
    SupervisorConfig,
    SymbolConfig,
    WaitConfig,
)
from tests.unit.config.readme_claims import _load, _refusal
from tests.unit.config.test_review134_loader_docstrings import MATCH_BTC, _symbol, said

ROOT = Path(__file__).parents[3]
GW2 = '[[gateways]]\nname = "gw1"\nid = 1\n[[gateways]]\nname = "gw2"\nid = 2\nport = 9879\n'
#: Two gateways on one FIX port, both with reuse_port.
REUSE1 = GW2.replace("id = 1\n", "id = 1\nreuse_port = true\n")
GWR = REUSE1.replace("port = 9879", "reuse_port = true")
#: gw1's FIX port shared (reuse_port) by gw2's REST port.
REST_SHARE = REUSE1 + "reuse_port = true\n[gateways.rest]\nport = 9878\n"


def test_every_section_is_a_frozen_struct_that_forbids_unknown_keys() -> None:
    """config.schema: "frozen msgspec Structs that forbid unknown keys" (config.edges' too)."""
    said(config.schema, "frozen msgspec Structs that forbid unknown keys")
    structs = [
        v
        for module in (config.schema, config.edges)
        for v in vars(module).values()
        if isinstance(v, type) and issubclass(v, msgspec.Struct) and v.__module__ == module.__name__
    ]
    assert len(structs) == 15
    for struct in structs:
        cfg = struct.__struct_config__
        assert cfg.frozen and cfg.forbid_unknown_fields, struct.__name__


def test_the_files_class_docstrings_point_to_exist() -> None:
    """WaitConfig: "See ``shm/wait.py``" (what ``build`` makes); GcConfig:
    "(``procs/common/gc_policy.py`` says why and what it measured)"."""
    said(WaitConfig, "See ``shm/wait.py``.")
    said(GcConfig, "(``procs/common/gc_policy.py`` says why and what it measured)")
    assert (ROOT / "shm/wait.py").is_file() and (ROOT / "procs/common/gc_policy.py").is_file()
    assert type(WaitConfig().build()).__module__ == "shm.wait"


def test_the_edges_sections_are_joined_into_ringex_config() -> None:
    """config.edges: "``config.schema`` joins them into a ``RingexConfig``": its gateways, a
    gateway's ``rest`` and the market data are the edges' Structs."""
    said(config.edges, "``config.schema`` joins them into a ``RingexConfig``")
    fields = {f.name: f.type for f in msgspec.structs.fields(RingexConfig)}
    assert fields["gateways"] == list[GatewayConfig]
    assert fields["marketdata"] is MarketDataConfig
    assert {f.name: f.type for f in msgspec.structs.fields(GatewayConfig)}["rest"] == (
        RestConfig | None
    )


# -- the sections' own checks ----------------------------------------------------------------


def test_a_minimum_sleep_above_the_maximum_is_refused(tmp_path: Path) -> None:
    """WaitConfig.__post_init__: "# else the minimum is ignored": ``min_sleep_s`` above
    ``max_sleep_s`` is refused naming both and the table; equal loads."""
    said(WaitConfig.__post_init__, "# else the minimum is ignored")
    text = _refusal(tmp_path, "[wait]\nmin_sleep_s = 0.01\nmax_sleep_s = 0.005\n")
    assert text.endswith("wait: min_sleep_s = 0.01 is above max_sleep_s = 0.005 - at `$.wait`")
    assert _load(tmp_path, "[wait]\nmin_sleep_s = 0.01\nmax_sleep_s = 0.01\n").wait.min_sleep_s


def test_a_ring_capacity_not_a_power_of_two_is_refused(tmp_path: Path) -> None:
    """RingConfig: "Geometry shared by the pipeline's rings", a capacity that "is not a power
    of two" refused naming it; 2 and 1 << 24 load."""
    said(RingConfig, "Geometry shared by the pipeline's rings.")
    said(RingConfig.__post_init__, "is not a power of two")
    for bad in (3, 1000, (1 << 24) - 1):
        assert _refusal(tmp_path, f"[ring]\ncapacity = {bad}\n").endswith(
            f"ring.capacity {bad} is not a power of two - at `$.ring`"
        )
    assert _load(tmp_path, "[ring]\ncapacity = 2\nmax_consumers = 3\n").ring.capacity == 2
    assert _load(tmp_path, f"[ring]\ncapacity = {1 << 24}\n").ring.capacity == 1 << 24


def test_least_and_most_qty_round_to_a_lot() -> None:
    """SymbolConfig.least_qty: "``min_qty`` rounded up to a lot"; most_qty: "``max_qty``
    rounded down to a lot"."""
    said(SymbolConfig, "``min_qty`` rounded up to a lot")
    said(SymbolConfig, "``max_qty`` rounded down to a lot")
    sym = SymbolConfig(name="X", id=1, lot=10, min_qty=15, max_qty=95)
    assert (sym.least_qty, sym.most_qty) == (20, 90)
    sym = SymbolConfig(name="X", id=1, lot=10, min_qty=20, max_qty=90)
    assert (sym.least_qty, sym.most_qty) == (20, 90)


@pytest.mark.parametrize(
    ("sizes", "says"),
    [
        ("min_qty = 5\nmax_qty = 1\n", "min_qty = 5 is above max_qty = 1 - at `$.symbols[0]`"),
        (
            "lot = 10\nmin_qty = 3\nmax_qty = 9\n",
            "no order size fits: a size is a multiple of lot = 10 from min_qty = 3 to "
            "max_qty = 9 - at `$.symbols[0]`",
        ),
    ],
)
def test_a_symbol_no_order_size_fits_is_refused(tmp_path: Path, sizes: str, says: str) -> None:
    """SymbolConfig.__post_init__: "# no size is a multiple of lot in [min_qty, max_qty]" (or
    min_qty above max_qty): refused naming the symbol and the three; lot = max_qty loads."""
    said(SymbolConfig.__post_init__, "# no size is a multiple of lot in [min_qty, max_qty]")
    assert _refusal(tmp_path, _symbol(sizes)).endswith(f"symbol 'BTC-USD': {says}")
    assert _load(tmp_path, _symbol("lot = 10\nmin_qty = 3\nmax_qty = 10\n")).symbols[0].lot


@pytest.mark.parametrize(
    ("symbols", "says"),
    [
        ("[]", "matcher 'm1' owns no symbol (symbols = []): give it one or more, or remove it"),
        ('["BTC-USD", "ETH-USD", "BTC-USD"]', "matcher 'm1' lists symbol 'BTC-USD' twice"),
    ],
)
def test_a_matcher_with_no_symbol_or_one_twice_is_refused(
    tmp_path: Path, symbols: str, says: str
) -> None:
    """MatcherConfig.__post_init__: "# its process would refuse to start, stopping the
    instance": no symbol, or one listed twice, refused naming the matcher."""
    said(config.schema.MatcherConfig.__post_init__, "# its process would refuse to start")
    text = _refusal(tmp_path, f'[[matchers]]\nname = "m1"\nsymbols = {symbols}\n')
    assert text.endswith(f"{says} - at `$.matchers[0]`")


@pytest.mark.parametrize(
    "bad", ["24:00", "12:60", "7:30", "12:30 ", "12-30", "\uff11\uff12:\uff13\uff10"]
)
def test_a_session_end_not_hh_mm_is_refused_naming_it(tmp_path: Path, bad: str) -> None:
    """SupervisorConfig.__post_init__: "# a ValueError naming the value"."""
    said(SupervisorConfig.__post_init__, "# a ValueError naming the value")
    assert _refusal(tmp_path, f'[supervisor]\nsession_end_utc = "{bad}"\n').endswith(
        f"supervisor.session_end_utc {bad!r} is not a time HH:MM from 00:00 to 23:59 (UTC), "
        "nor empty (never) - at `$.supervisor`"
    )


def test_the_session_end_minute_is_0_to_1439_or_none() -> None:
    """SupervisorConfig.session_end_minute: "(0..1439), None when off"."""
    said(SupervisorConfig.session_end_minute, "(0..1439), None when off")
    minutes = [
        SupervisorConfig(session_end_utc=t).session_end_minute()
        for t in ("", "00:00", "17:05", "23:59")
    ]
    assert minutes == [None, 0, 1025, 1439]


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("tls_cert", "tls_cert set and tls_key, tls_ca not"),
        ("tls_ca", "tls_ca set and tls_cert, tls_key not"),
        ("tls_cert tls_key", "tls_cert, tls_key set and tls_ca not"),
    ],
)
def test_replication_tls_takes_all_three_or_none(tmp_path: Path, given: str, says: str) -> None:
    """ReplicationConfig.__post_init__: "TLS takes all three, or none", naming the set
    and the missing; all three load."""
    said(ReplicationConfig.__post_init__, "TLS takes all three, or none")
    lines = "".join(f'{name} = "/x.pem"\n' for name in given.split())
    assert _refusal(tmp_path, f"[replication]\n{lines}").endswith(
        f"replication: {says}: mutual TLS takes all three, or none - at `$.replication`"
    )
    every = "".join(f'{n} = "/x.pem"\n' for n in ("tls_cert", "tls_key", "tls_ca"))
    assert _load(tmp_path, f"[replication]\n{every}").replication.tls_ca == "/x.pem"


def test_a_primary_that_is_not_host_port_is_refused_naming_it(tmp_path: Path) -> None:
    """_check_processes: "# host:port, or a ValueError naming it": "[::1]:9900" is ("::1",
    9900); "::1", "db:x", "db:0" are refused naming replication.primary and the address."""
    said(RingexConfig._check_processes, "# host:port, or a ValueError naming it")
    said(ReplicationConfig, "an instance with ``primary`` set is a standby of it")
    cfg = _load(tmp_path, '[replication]\nprimary = "[::1]:9900"\n')
    assert cfg.replication.primary_address() == ("::1", 9900)
    for bad in ("::1", "db:x", "db:", ":9900"):
        assert _refusal(tmp_path, f'[replication]\nprimary = "{bad}"\n').endswith(
            f"replication.primary {bad!r} is not host:port (an IPv6 host in brackets: [::1]:9900)"
        )
    assert _refusal(tmp_path, '[replication]\nprimary = "db:0"\n').endswith(
        "replication.primary 'db:0': port 0 is not in 1..65535"
    )


def test_a_primary_with_a_non_ascii_digit_port_is_refused_naming_it(tmp_path: Path) -> None:
    """_check_processes: "# host:port, or a ValueError naming it": ``db:²``."""
    said(RingexConfig._check_processes, "# host:port, or a ValueError naming it")
    assert "replication.primary 'db:²'" in _refusal(tmp_path, '[replication]\nprimary = "db:²"\n')


def test_a_relative_archive_dir_is_refused_naming_it(tmp_path: Path) -> None:
    """JournalConfig.__post_init__: "must be an absolute path (or empty)"."""
    said(config.schema.JournalConfig.__post_init__, "must be an absolute path (or empty)")
    assert _refusal(tmp_path, '[journal]\narchive_dir = "arch"\n').endswith(
        "journal.archive_dir 'arch' must be an absolute path (or empty) - at `$.journal`"
    )
    assert _load(tmp_path, '[journal]\narchive_dir = "/arch"\n').journal.archive_dir == "/arch"


def test_rest_and_gateway_minimums_above_maximums_are_refused(tmp_path: Path) -> None:
    """RestConfig/GatewayConfig.__post_init__ (fields.at_most, tls_pair): refused naming the
    two values and the table, the gateway's place in the list (``gateways[1].rest``)."""
    said(RestConfig.__post_init__, 'what = "gateways.rest"')
    said(GatewayConfig.__post_init__, 'at_most(f"gateway {self.name!r}", "min_heartbeat_s"')
    rest = GW2 + "[gateways.rest]\nrecv_window_ms = 6000\nmax_recv_window_ms = 5000\n"
    assert _refusal(tmp_path, rest).endswith(
        "gateways.rest: recv_window_ms = 6000 is above max_recv_window_ms = 5000 - at "
        "`$.gateways[1].rest`"
    )
    assert _refusal(tmp_path, GW2 + 'tls_key = "/k.pem"\n').endswith(
        "gateway 'gw2': tls_key is set and tls_cert is not: give both, or neither - at "
        "`$.gateways[1]`"
    )
    heartbeat = '[[gateways]]\nname = "gw1"\nid = 1\nmin_heartbeat_s = 10\nmax_heartbeat_s = 5\n'
    assert _refusal(tmp_path, heartbeat).endswith(
        "gateway 'gw1': min_heartbeat_s = 10 is above max_heartbeat_s = 5 - at `$.gateways[0]`"
    )


# -- RingexConfig's cross-field checks ---------------------------------------------------------

SYM = '[[symbols]]\nname = "{}"\nid = {}\n'
TWO = SYM.format("BTC-USD", 1) + SYM.format("ETH-USD", 2)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (SYM.format("BTC-USD", 1) * 2 + MATCH_BTC, "symbol name BTC-USD is configured twice"),
        (SYM.format("BTC-USD", 1) + SYM.format("ETH-USD", 1), "symbol id 1 is configured twice"),
        (
            '[[matchers]]\nname = "m1"\nsymbols = ["BTC-USD", "ETH-USD", "X-USD"]\n',
            "matcher 'm1' owns symbol 'X-USD', which is not in [[symbols]] (BTC-USD, ETH-USD)",
        ),
        (
            MATCH_BTC + '[[matchers]]\nname = "m2"\nsymbols = ["BTC-USD", "ETH-USD"]\n',
            "symbol 'BTC-USD' is owned by matchers 'm1' and 'm2'; each symbol has one matcher",
        ),
        (TWO + MATCH_BTC, "no matcher owns symbol(s) ETH-USD"),
        ("symbols = []\nmatchers = []\n", "no [[matchers]]: an exchange needs at least one"),
        (GW2.replace("id = 2", "id = 1"), "gateway id 1 is configured twice"),
        (GW2.replace("gw2", "gw1"), "gateway name gw1 is configured twice"),
        (
            MATCH_BTC + MATCH_BTC.replace("BTC", "ETH"),
            "matcher name m1 is configured twice",
        ),
        (
            '[[assets]]\nname = "USD"\nid = 1\ndecimals = 6\n' * 2,
            "asset name USD is configured twice",
        ),
    ],
)
def test_a_name_or_id_given_twice_or_unowned_is_refused(
    tmp_path: Path, text: str, says: str
) -> None:
    """RingexConfig.__post_init__ / _check_processes: "Names that pick one process each":
    each message names what is given twice, or the symbol no matcher (or two) owns."""
    said(RingexConfig._check_processes, "Names that pick one process each")
    said(RingexConfig.__post_init__, "each symbol has one matcher")
    assert _refusal(tmp_path, text).endswith(f"': {says}")


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("gateways", "gateway name 'admin' is the admin rings'"),
        (
            "matchers",
            "matcher name 'gw7' is a gateway's (its counters page would be shared with gateway 7)",
        ),
        ("matchers", "matcher name 'router' is the router's"),
    ],
)
def test_a_process_name_another_process_uses_is_refused(
    tmp_path: Path, name: str, says: str
) -> None:
    """_check_processes: "Names that pick one process each": a gateway ``admin``, a matcher
    ``gw<N>`` or ``router`` would share another's page or series: refused naming it."""
    said(RingexConfig._check_processes, "Names that pick one process each")
    who = says.split("'")[1]
    text = (
        f'[[gateways]]\nname = "{who}"\nid = 1\n'
        if name == "gateways"
        else f'[[matchers]]\nname = "{who}"\nsymbols = ["BTC-USD", "ETH-USD"]\n'
    )
    assert f": {says}" in _refusal(tmp_path, text)


def test_a_ring_with_more_readers_than_max_consumers_is_refused(tmp_path: Path) -> None:
    """_check_processes: "rings enough lines for their readers": the router, each gateway and
    the market data when it runs; one more than max_consumers is refused naming them."""
    said(RingexConfig._check_processes, "and rings enough lines for their readers")
    assert _refusal(tmp_path, "[ring]\nmax_consumers = 2\n").endswith(
        "ring.max_consumers = 2, but a matcher's output ring has 3 readers (the router, "
        "1 gateway(s), market data)"
    )
    assert _load(tmp_path, "[ring]\nmax_consumers = 3\n").ring.max_consumers == 3
    off = "[ring]\nmax_consumers = 2\n[marketdata]\nenabled = false\n"
    assert not _load(tmp_path, off).marketdata.enabled


def test_supervisor_cores_and_nice_name_only_processes_of_the_instance(tmp_path: Path) -> None:
    """_check_processes: "Names that pick one process each": a cores/nice key naming no
    process is refused listing those there are."""
    said(RingexConfig._check_processes, "no process")
    assert _refusal(tmp_path, '[supervisor]\nnice = {"matcher-m2" = 1}\n').endswith(
        "supervisor.nice names 'matcher-m2', no process of this instance (dbwriter, "
        "gateway-gw1, marketdata, matcher-m1, replica, router, standby)"
    )
    cfg = _load(tmp_path, '[supervisor]\ncores = {"matcher-m1" = [0], "gateway-gw1" = [1]}\n')
    assert cfg.supervisor.cores["matcher-m1"] == [0]


ASSETS = (
    '[[assets]]\nname = "USD"\nid = 1\ndecimals = {}\n'
    '[[assets]]\nname = "BTC"\nid = 2\ndecimals = 8\n'
)


@pytest.mark.parametrize(
    ("usd", "sizes", "says"),
    [
        (6, 'base = "ETH"\n', "base asset 'ETH' is not in [[assets]] (USD, BTC)"),
        (6, 'base = "USD"\n', "base and quote are both 'USD'"),
        (
            6,
            "price_decimals = 4\nqty_decimals = 4\n",
            "quote USD has 6 decimals, fewer than price_decimals + qty_decimals = 8: "
            "notionals would not be whole",
        ),
        (
            18,
            "price_decimals = 0\nqty_decimals = 9\n",
            "base BTC has 8 decimals, fewer than qty_decimals = 9",
        ),
    ],
)
def test_a_symbols_assets_must_exist_differ_and_hold_its_decimals(
    tmp_path: Path, usd: int, sizes: str, says: str
) -> None:
    """SymbolConfig: "The quote asset needs decimals >= price_decimals + qty_decimals and the
    base asset decimals >= qty_decimals" (_check_assets): refused naming symbol and asset."""
    said(SymbolConfig, "decimals >= price_decimals + qty_decimals and the base asset decimals")
    assert _refusal(tmp_path, ASSETS.format(usd) + _symbol(sizes)).endswith(
        f"symbol 'BTC-USD': {says}"
    )
    assert _load(tmp_path, ASSETS.format(8) + _symbol("price_decimals = 4\nqty_decimals = 4\n"))


def test_pipeline_behind_past_what_the_input_rings_hold_is_refused(tmp_path: Path) -> None:
    """_check_journal: "A ``pipeline_behind`` the gateways' rings (and the admin's) can
    hold": ring.capacity x (gateways + 1), checked under fsync = "pipelined" only."""
    said(RingexConfig._check_journal, "A ``pipeline_behind`` the gateways' rings (and the admin")
    text = (
        '[ring]\ncapacity = 2\nmax_consumers = 3\n[journal]\nfsync = "{}"\npipeline_behind = {}\n'
    )
    assert _load(tmp_path, text.format("pipelined", 4)).journal.pipeline_behind == 4
    assert _refusal(tmp_path, text.format("pipelined", 5)).endswith(
        "journal.pipeline_behind 5 is more commands than the router's 2 input rings of "
        "ring.capacity 2 hold (4): the fsync would never go to its thread"
    )
    assert _load(tmp_path, text.format("batch", 5)).journal.pipeline_behind == 5


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            "[marketdata]\nport = 9878\n",
            "marketdata (127.0.0.1:9878) and gateway gw1 (FIX) (127.0.0.1:9878) both listen there",
        ),
        (
            '[marketdata]\nhost = "localhost"\nport = 9878\n',
            "marketdata (127.0.0.1:9878) and gateway gw1",
        ),
        ('[marketdata]\nhost = "::"\nport = 9878\n', "marketdata (:::9878) and gateway gw1 (FIX)"),
        (
            "[supervisor]\nmetrics_port = 8765\n",
            "supervisor.metrics_port (127.0.0.1:8765) and marketdata",
        ),
        (
            "[replication]\nlisten_port = 8765\n",
            "replication.listen_port (127.0.0.1:8765) and marketdata",
        ),
        (
            GWR + 'comp_id = "X"\n',
            "gateway gw2 (FIX) and gateway gw1 (FIX) share 127.0.0.1:9878 with reuse_port but "
            "answer as comp_id 'X' and 'RINGEX'",
        ),
        (REST_SHARE, "gateway gw2 (REST) (127.0.0.1:9878) and gateway gw1 (FIX)"),
    ],
)
def test_two_listeners_on_one_address_are_refused(tmp_path: Path, text: str, says: str) -> None:
    """_check_listeners: "No two listeners on one address": the same host, ``localhost`` as
    127.0.0.1, a wildcard against any host; two reuse_port gateways answering as two comp_ids,
    or one sharing with a REST port."""
    said(RingexConfig._check_listeners, "No two listeners on one address")
    assert f": {says}" in _refusal(tmp_path, text)


def test_gateways_that_all_set_reuse_port_may_share(tmp_path: Path) -> None:
    """_check_listeners: "(gateways that all set reuse_port may share)", not one alone; a
    listener turned off (metrics = false, market data off) holds no address."""
    said(RingexConfig._check_listeners, "(gateways that all set reuse_port may share)")
    assert [g.port for g in _load(tmp_path, GWR).gateways] == [9878, 9878]
    one = GWR.replace("reuse_port = true\n", "", 1)
    assert "both listen there" in _refusal(tmp_path, one)
    off = "[supervisor]\nmetrics = false\nmetrics_port = 9878\n"
    off += "[marketdata]\nenabled = false\nport = 9878\n"
    assert _load(tmp_path, off).supervisor.metrics_port == 9878


def test_a_host_spelled_in_capitals_is_the_same_address(tmp_path: Path) -> None:
    """_check_listeners: "No two listeners on one address": ``LOCALHOST`` is localhost."""
    said(RingexConfig._check_listeners, "No two listeners on one address")
    assert "both listen there" in _refusal(
        tmp_path, '[marketdata]\nhost = "LOCALHOST"\nport = 9878\n'
    )
