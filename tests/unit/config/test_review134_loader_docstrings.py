"""Review 134: the config package's machinery held against its own docstrings and comments
(module, class and function docstrings, ``#:`` and inline comments): ``config/__init__.py``,
``config/loader.py`` (how a name or path is resolved, what a refused file, key or value says,
unknown keys, nested tables, the assets a symbol's name gives at load, the var_dir and dsn
checks), ``config/fields.py``, ``config/refused_value.py`` and the shipped profiles
(``config/profiles/*.toml``: what each sets, that it loads, what the README says of it).
``..._docstrings2.py``: the validation methods (``__post_init__``, the cross-field checks and
their messages) and class docstrings of ``config/schema.py`` and ``config/edges.py``.

Convention: a test anchors its claim with ``said`` (a short verbatim quote of the docstring or
comment, whitespace folded, ``#:`` markers dropped: a reworded docstring fails loudly), then
loads small TOML files from ``tmp_path`` (``readme_claims``' ``_load``/``_refusal``) or calls the
function. Right: a plain test. Wrong: ``xfail(strict=True)`` asserting the docstring, the reason
naming the code and the side to fix.

Disagreements found, all fixed since (two more in part 2, fixed too):
- ``load_profile`` "Any failure, a missing file included, is a ValueError naming it": a profile
  name longer than a file name (``Path.exists`` on ``PROFILES/<name>.toml``, ENAMETOOLONG) and a
  ``var_dir`` that long (its check, after the ``try``) raise a bare ``OSError``: a traceback, as
  ``procs/cli.py`` catches ``ConfigError`` only (code side).
- ``# else every command fails on its files``: a ``var_dir`` under a file (``README.md/var``)
  loads, ``Path.exists`` being false on ENOTDIR (code side).
- ``refused_value``: "in a table keyed by process name (``supervisor.nice``), which key: this
  finds them": with two entries, both out of range or one of the wrong type, ``with_value`` names
  neither key nor value (code side).
- ``config.schema``: "a profile sets only what differs from the defaults": ``dev.toml`` sets
  ``instance``, ``ring.capacity`` and ``wait.strategy`` to their defaults, ``test.toml``
  ``wait.strategy`` (docstring side)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest

import config
import config.fields
import config.loader
import config.refused_value
import config.schema
from config import load_profile, profile_names
from config.fields import at_most, host_and_port, tls_pair
from config.loader import PROFILES, ConfigError, dsn_refused, is_file_path
from config.refused_value import _breaks, _shown, choices_note, with_value
from config.schema import DEFAULT_SPINS, RingexConfig, SupervisorConfig
from tests.readme_text import claim, folded
from tests.unit.config.readme_claims import _claim, _load, _refusal, _write


def said(obj: Any, quote: str) -> None:
    """``obj``'s source (docstrings and comments; a path: its text) still says ``quote``,
    whitespace folded and ``#:``/``#`` comment markers of continuation lines dropped."""
    text = obj.read_text() if isinstance(obj, Path) else inspect.getsource(obj)
    text = re.sub(r"\n\s*#:?", "\n", text)
    where = str(obj) if isinstance(obj, Path) else getattr(obj, "__qualname__", obj.__name__)
    claim(folded(quote), folded(text), where=where)


MATCH_BTC = '[[matchers]]\nname = "m1"\nsymbols = ["BTC-USD"]\n'


def _symbol(extra: str = "", name: str = "BTC-USD") -> str:
    return f'[[symbols]]\nname = "{name}"\nid = 1\n{extra}' + MATCH_BTC.replace("BTC-USD", name)


# -- config/__init__.py, and how load_profile resolves what it is given -----------------------


def test_the_package_is_a_schema_profiles_and_their_loader() -> None:
    """config/__init__.py: "a schema (``config.schema``), TOML profiles
    (``config/profiles/*.toml``) and the loader": ``PROFILES`` is that folder, ``__all__``."""
    said(config, "TOML profiles (``config/profiles/*.toml``) and the loader that checks one")
    assert Path(config.__file__).parent / "profiles" == PROFILES
    assert profile_names() == sorted(p.stem for p in PROFILES.glob("*.toml"))
    assert set(config.__all__) == {
        "RingConfig",
        "RingexConfig",
        "WaitConfig",
        "load_profile",
        "profile_names",
    }


def test_a_profile_by_name_is_the_file_of_that_name_under_profiles() -> None:
    """load_profile: "A profile by name ("dev", "test", "latency")": those three are
    ``profile_names()`` and each name loads what its file under config/profiles holds."""
    said(load_profile, 'A profile by name ("dev", "test", "latency")')
    assert profile_names() == ["dev", "latency", "test"]
    for name in profile_names():
        assert load_profile(name) == load_profile(str(PROFILES / f"{name}.toml"))


def test_a_suffix_or_a_directory_part_makes_it_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """load_profile: "a path to a TOML file (with a suffix or a directory part)" (and
    is_file_path): a relative ``x.cfg`` and ``sub/ringex`` load as files from the working
    directory; a bare ``ringex``, though a file there, is a profile name, unknown."""
    said(load_profile, "a path to a TOML file (with a suffix or a directory part)")
    said(is_file_path, "(a suffix or a directory part), not as the name of a profile")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    for name in ("x.cfg", "sub/ringex", "ringex"):
        _write(tmp_path, 'instance = "rv134"\n', name)
    assert load_profile("x.cfg").instance == "rv134"
    assert load_profile("sub/ringex").instance == "rv134"
    assert [is_file_path(n) for n in ("x.cfg", "sub/ringex", "ringex")] == [True, True, False]
    with pytest.raises(ConfigError, match="profile 'ringex' is unknown"):
        load_profile("ringex")


def test_an_unknown_profile_is_a_value_error_naming_it_and_the_choices() -> None:
    """ConfigError: "A profile or config file that does not load; the message names it and
    why": an unknown name is refused naming it and the profiles there are."""
    said(config.loader.ConfigError, "the message names it and why")
    with pytest.raises(ValueError) as refused:
        load_profile("nope")
    assert isinstance(refused.value, ConfigError)
    assert str(refused.value) == "profile 'nope' is unknown; choose one of " + str(profile_names())


@pytest.mark.parametrize(
    ("what", "content", "why"),
    [
        ("missing", None, "No such file or directory"),
        ("directory", "dir", "Is a directory"),
        ("not UTF-8", b'instance = "\xff"\n', "can't decode byte 0xff"),
        ("not TOML", b"instance = \n", "Invalid value"),
        ("deep", b"a = " + b"[" * 5000 + b"]" * 5000, "nested too deeply to read"),
    ],
)
def test_a_file_that_does_not_load_is_a_value_error_naming_it(
    tmp_path: Path, what: str, content: bytes | str | None, why: str
) -> None:
    """load_profile: "Any failure, a missing file included, is a ValueError naming it": the
    message is ``config '<path>': <why>``, one line (a nesting past the parser's recursion
    too: "arrays nested thousands deep")."""
    said(load_profile, "Any failure, a missing file included, is a ValueError naming it")
    said(load_profile, "# arrays nested thousands deep: the parser's recursion")
    path = tmp_path / "ringex.toml"
    if content == "dir":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(ConfigError) as refused:
        load_profile(str(path))
    assert str(refused.value).startswith(f"config {str(path)!r}: "), what
    assert why in str(refused.value) and "\n" not in str(refused.value)


def test_a_profile_name_too_long_for_a_file_is_a_value_error() -> None:
    """load_profile: "Any failure, a missing file included, is a ValueError naming it": a
    300-character profile name (``--profile``) is such a failure."""
    said(load_profile, "Any failure, a missing file included, is a ValueError naming it")
    with pytest.raises(ValueError, match="is unknown"):
        load_profile("a" * 300)


def test_a_var_dir_too_long_for_a_path_is_a_value_error(tmp_path: Path) -> None:
    """load_profile: "Any failure ... is a ValueError naming it": ``var_dir`` of 5000
    characters is refused naming the file and var_dir."""
    said(load_profile, "Any failure, a missing file included, is a ValueError naming it")
    with pytest.raises(ValueError, match="var_dir"):
        _load(tmp_path, f'var_dir = "{"a" * 5000}"\n')


def test_a_var_dir_that_is_a_file_is_refused_naming_it(tmp_path: Path) -> None:
    """load_profile: "# else every command fails on its files": a var_dir that is a file is
    ``var_dir = '<it>' is not a directory``; one not there yet loads (it is made)."""
    said(load_profile, "# else every command fails on its files")
    afile = _write(tmp_path, "", "afile")
    text = _refusal(tmp_path, f'var_dir = "{afile}"\n')
    assert text.endswith(f"var_dir = {str(afile)!r} is not a directory")
    assert _load(tmp_path, f'var_dir = "{tmp_path / "new"}"\n').var_dir == str(tmp_path / "new")


def test_a_var_dir_under_a_file_is_refused(tmp_path: Path) -> None:
    """load_profile: "# else every command fails on its files": ``<a file>/var`` can never
    be made, as a var_dir that is a file."""
    said(load_profile, "# else every command fails on its files")
    afile = _write(tmp_path, "", "afile")
    assert "is not a directory" in _refusal(tmp_path, f'var_dir = "{afile}/var"\n')


# -- what a refused key or value says ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("foo = 1\n", "Object contains unknown field `foo`"),
        ("[ring]\nfoo = 1\n", "Object contains unknown field `foo` - at `$.ring`"),
        ("[ring.deep]\nx = 1\n", "Object contains unknown field `deep` - at `$.ring`"),
        (
            '[[gateways]]\nname = "gw1"\nid = 1\n[gateways.rest]\nfoo = 1\n',
            "Object contains unknown field `foo` - at `$.gateways[0].rest`",
        ),
    ],
)
def test_an_unknown_key_is_refused_naming_it_and_its_table(
    tmp_path: Path, text: str, says: str
) -> None:
    """loader: "Unknown keys, wrong types and out-of-range values are errors that name the
    key": an unknown key (or nested table) at the top, in a table, in a list's table."""
    said(config.loader, "Unknown keys, wrong types and out-of-range values are errors")
    assert _refusal(tmp_path, text).endswith(says)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[ring]\ncapacity = true\n", "got `bool` - at `$.ring.capacity`: ring.capacity = true"),
        ("[ring]\ncapacity = 1024.0\n", "at `$.ring.capacity`: ring.capacity = 1024.0"),
        (
            '[marketdata]\nport = "80"\n',
            "got `str` - at `$.marketdata.port`: marketdata.port = '80'",
        ),
        ("symbols = 5\n", "Expected `array`, got `int` - at `$.symbols`: symbols = 5"),
        ("symbols = [1]\n", "got `int` - at `$.symbols[0]`: symbols[0] = 1"),
    ],
)
def test_a_wrong_type_is_refused_naming_the_key_and_the_value(
    tmp_path: Path, text: str, says: str
) -> None:
    """loader: "wrong types ... are errors that name the key and the value" (a value as TOML
    writes it, _shown: "true", not "True"); ``symbols`` not a list: "the schema's own error
    says what is wrong" (_pair_assets)."""
    said(config.loader, "errors that name the key and the value")
    said(config.loader._pair_assets, "# the schema's own error says what is wrong")
    assert _refusal(tmp_path, text).endswith(says)


def test_an_out_of_range_value_names_its_key_value_limit_and_symbol(tmp_path: Path) -> None:
    """refused_value: "so the message says ``symbols[0].tick = 0 (symbol 'BTC-USD')``", after
    msgspec's path and limit."""
    said(config.refused_value, "the message says ``symbols[0].tick = 0 (symbol 'BTC-USD')``")
    assert _refusal(tmp_path, _symbol("tick = 0\n")).endswith(
        "Expected `int` >= 1 - at `$.symbols[0].tick`: symbols[0].tick = 0 (symbol 'BTC-USD')"
    )


def test_units_past_int64_are_refused_naming_the_limit(tmp_path: Path) -> None:
    """fields.Units: "a larger one loaded, and its router could not journal its rules":
    2**63 is refused with the limit and the value, for tick, lot, min_qty and max_qty."""
    said(config.fields, "a larger one loaded, and its router could not journal its rules")
    for key in ("tick", "lot", "min_qty", "max_qty"):
        text = _refusal(tmp_path, _symbol(f"{key} = {2**63}\n"))
        assert text.endswith(
            f"<= {2**63 - 1} - at `$.symbols[0].{key}`: "
            f"symbols[0].{key} = {2**63} (symbol 'BTC-USD')"
        )


def test_with_value_adds_one_value_not_a_table_else_leaves_it() -> None:
    """with_value: "with ``: <key> = <value> (<whose>)`` added where its path leads to one
    value of ``raw`` that is not a table; else as it was"."""
    said(with_value, "where its path leads to one value of ``raw`` that is not a table; else")
    raw = {"ring": {"capacity": 3}, "symbols": [{"name": "X-Y", "tick": 0}]}
    at = "Expected `int` >= 1 - at `$.{}`"
    assert with_value(at.format("ring.capacity"), raw).endswith(": ring.capacity = 3")
    assert with_value(at.format("symbols[0].tick"), raw).endswith("tick = 0 (symbol 'X-Y')")
    for path in ("ring", "ring.missing", "symbols[3].tick"):
        assert with_value(at.format(path), raw) == at.format(path)
    assert with_value("Expected `int`", raw) == "Expected `int`"


def test_a_table_keyed_by_process_name_names_the_key_refused(tmp_path: Path) -> None:
    """refused_value: "nor, in a table keyed by process name (``supervisor.nice``), which key:
    this finds them"; with_value: "the entries the limit refuses" (one of two here)."""
    said(config.refused_value, "in a table keyed by process name (``supervisor.nice``), which")
    said(with_value, "# a table keyed by name: the entries the limit refuses")
    nice = _refusal(tmp_path, "[supervisor]\nnice = {router = 50, dbwriter = 10}\n")
    assert nice.endswith("`$.supervisor.nice[...]`: supervisor.nice['router'] = 50")
    cores = _refusal(tmp_path, "[supervisor]\ncores = {router = [0, 1], dbwriter = [-1]}\n")
    assert cores.endswith(": supervisor.cores['dbwriter'][0] = -1")


@pytest.mark.parametrize(
    ("nice", "named"),
    [
        ("{router = 50, dbwriter = 60}", "supervisor.nice['router'] = 50"),
        ('{router = -5, dbwriter = "10"}', "supervisor.nice['dbwriter'] = '10'"),
    ],
)
def test_two_entries_of_a_keyed_table_still_name_the_one_refused(
    tmp_path: Path, nice: str, named: str
) -> None:
    """refused_value: "nor, in a table keyed by process name (``supervisor.nice``), which key:
    this finds them in the TOML as loaded"."""
    said(config.refused_value, "which key: this finds them in the TOML as loaded")
    assert _refusal(tmp_path, f"[supervisor]\nnice = {nice}\n").endswith(named)


def test_breaks_is_true_without_a_bound_or_a_number() -> None:
    """_breaks: "true where it states none, or for a value that is not a number at all";
    _shown: "A value as TOML writes it"."""
    said(_breaks, "(true where it states none, or for a value that is not a number at all)")
    said(_shown, "A value as TOML writes it")
    assert not _breaks("Expected `int`, got `str`", 5) and _breaks("Expected `int`, got `str`", "5")
    assert _breaks("Expected `int` <= 19", "x") and _breaks("Expected `int` <= 19", True)
    assert _breaks("Expected `int` <= 19", 20) and not _breaks("Expected `int` <= 19", 19)
    assert _breaks("Expected `float` > 0.0", 0.0) and not _breaks("Expected `float` >= 5e-05", 1)
    assert [_shown(True), _shown(False), _shown("a"), _shown(1.5)] == [
        "true",
        "false",
        "'a'",
        "1.5",
    ]


@pytest.mark.parametrize(
    ("table", "key", "allowed"),
    [
        ("journal", "fsync", "'batch', 'pipelined', 'interval', 'none'"),
        ("wait", "strategy", "'busy-spin', 'yield', 'sleep', 'blocking'"),
        ("replication", "mode", "'async', 'sync'"),
        ("marketdata", "compression", "'none', 'deflate'"),
    ],
)
def test_a_value_of_a_fixed_set_names_the_values_allowed(
    tmp_path: Path, table: str, key: str, allowed: str
) -> None:
    """choices_note: "'; one of ...' naming the values allowed, which msgspec does not",
    after the value refused; else ""."""
    said(choices_note, '"; one of ..." naming the values allowed, which msgspec does not')
    text = _refusal(tmp_path, f'[{table}]\n{key} = "fast"\n')
    assert text.endswith(f": {table}.{key} = 'fast'; one of {allowed}")
    assert choices_note("Expected `int` - at `$.journal.fsync`", RingexConfig) == ""


# -- the assets a symbol's name gives -----------------------------------------------------------

ASSETS = "".join(
    f'[[assets]]\nname = "{n}"\nid = {i}\ndecimals = 6\n'
    for i, n in enumerate(("USD", "SOL", "EUR"), 1)
)


def test_a_base_quote_name_gives_the_assets_it_leaves_out(tmp_path: Path) -> None:
    """loader: "A symbol named BASE-QUOTE takes what it leaves out of `base` and `quote` from
    its name"; _pair_assets: ("SOL-USD": SOL against USD); one set keeps its own."""
    said(config.loader, "takes what it leaves out of `base` and `quote` from its name")
    said(config.loader._pair_assets, '("SOL-USD": SOL against USD)')
    sym = _load(tmp_path, ASSETS + _symbol(name="SOL-USD")).symbols[0]
    assert (sym.base, sym.quote) == ("SOL", "USD")
    sym = _load(tmp_path, ASSETS + _symbol('quote = "USD"\n', name="SOL-EUR")).symbols[0]
    assert (sym.base, sym.quote) == ("SOL", "USD")
    sym = _load(tmp_path, ASSETS + _symbol('base = "SOL"\nquote = "EUR"\n', "SOLX")).symbols[0]
    assert (sym.base, sym.quote) == ("SOL", "EUR")


@pytest.mark.parametrize("name", ["BTCUSD", "A-B-C", "-USD"])
def test_another_name_must_set_both_assets(tmp_path: Path, name: str) -> None:
    """_pair_assets: "Never the schema's defaults (BTC and USD) in silence: another name must
    set both": refused naming the symbol, even with one of the two set."""
    said(config.loader._pair_assets, "Never the schema's defaults (BTC and USD) in silence")
    for extra in ("", 'base = "BTC"\n'):
        assert _refusal(tmp_path, _symbol(extra, name)).endswith(
            f"symbol {name!r} does not set both base and quote, and its name is not "
            "BASE-QUOTE: set base and quote (asset names)"
        )


def test_a_name_giving_an_unknown_asset_is_refused_not_defaulted(tmp_path: Path) -> None:
    """_pair_assets: "Never the schema's defaults (BTC and USD) in silence": ``SOL-USD`` with
    no SOL asset is refused naming SOL, not traded as BTC."""
    said(config.loader._pair_assets, "Never the schema's defaults (BTC and USD) in silence")
    assert _refusal(tmp_path, _symbol(name="SOL-USD")).endswith(
        "symbol 'SOL-USD': base asset 'SOL' is not in [[assets]] (USD, BTC, ETH)"
    )


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("", "Object missing required field `name` - at `$.symbols[0]`"),
        ("name = 5\n", "got `int` - at `$.symbols[0].name`: symbols[0].name = 5"),
    ],
)
def test_a_symbol_without_a_string_name_gets_the_schemas_error(
    tmp_path: Path, line: str, says: str
) -> None:
    """_pair_assets: "# the schema's own error says the name is missing or not a string"."""
    said(config.loader._pair_assets, "the schema's own error says the name is missing or not")
    assert _refusal(tmp_path, f"[[symbols]]\nid = 1\n{line}").endswith(says)


# -- the database dsn ----------------------------------------------------------------------------


def test_a_dsn_libpq_cannot_parse_is_refused_at_load(tmp_path: Path) -> None:
    """dsn_refused: "Why libpq cannot parse ``dsn`` (psycopg's parser: keywords or a URI), or
    "". Asked at load": keywords and a URI pass, a bad one is ``database.dsn: <why>``."""
    said(dsn_refused, "Why libpq cannot parse ``dsn`` (psycopg's parser: keywords or a URI)")
    assert dsn_refused("host=db port=5432 dbname=ringex") == ""
    assert dsn_refused("postgresql://u@db:5432/ringex") == ""
    text = _refusal(tmp_path, '[database]\ndsn = "not a dsn"\n')
    assert re.search(r"ringex.toml': database\.dsn: missing \"=\" after \"not\"", text)


# -- config/fields.py ----------------------------------------------------------------------------


def test_at_most_refuses_a_minimum_above_its_maximum_naming_both() -> None:
    """fields: "the check that a minimum is not above its maximum": equal passes; above is
    ``<where>: <low> = v is above <high> = w``."""
    said(config.fields, "the check that a minimum is not above its maximum")
    at_most("wait", "min_sleep_s", 0.005, "max_sleep_s", 0.005)
    with pytest.raises(ValueError) as refused:
        at_most("wait", "min_sleep_s", 0.01, "max_sleep_s", 0.005)
    assert str(refused.value) == "wait: min_sleep_s = 0.01 is above max_sleep_s = 0.005"


def test_tls_pair_takes_both_or_neither_naming_the_table() -> None:
    """tls_pair: "both files or neither (``where`` names the table)"."""
    said(tls_pair, "both files or neither (``where`` names the table)")
    tls_pair("t", "", "")
    tls_pair("t", "c.pem", "k.pem")
    for cert, key, given, missing in (
        ("c", "", "tls_cert", "tls_key"),
        ("", "k", "tls_key", "tls_cert"),
    ):
        with pytest.raises(ValueError, match=f"^t: {given} is set and {missing} is not"):
            tls_pair("t", cert, key)


def test_host_and_port_drops_brackets_and_gives_no_host_for_bare_ipv6() -> None:
    """host_and_port: "an IPv6 host's brackets dropped", "the port as written, to be
    checked", "An IPv6 host without brackets gives no host"."""
    said(host_and_port, "An IPv6 host without brackets gives no host")
    assert host_and_port("[::1]:9900") == ("::1", "9900")
    assert host_and_port("db.local:x9") == ("db.local", "x9")
    assert host_and_port("::1") == ("", "1")
    assert host_and_port("fe80::1:9900") == ("", "9900")


# -- the shipped profiles -------------------------------------------------------------------------


def test_the_dev_profile_is_what_its_comments_and_the_readme_say() -> None:
    """dev.toml: "A developer's 2-core machine: every stage parks when idle", "also serves the
    REST API", metrics "http://127.0.0.1:9464/metrics"; README: instance dev, REST on 8080."""
    path = PROFILES / "dev.toml"
    said(path, "every stage parks when idle")
    said(path, "The FIX gateway also serves the REST API and the private stream")
    said(path, "# Prometheus: http://127.0.0.1:9464/metrics")
    _claim(
        "`dev` (instance `dev`: a 2-core machine, blocking waits, the REST API on 8080, "
        "metrics on 9464)"
    )
    cfg = load_profile("dev")
    assert (cfg.instance, cfg.wait.strategy, cfg.wait.spins) == ("dev", "blocking", None)
    assert DEFAULT_SPINS["blocking"] == 0  # parks at once, with no spins of its own
    assert [(g.name, g.rest and g.rest.port) for g in cfg.gateways] == [("gw1", 8080)]
    sup = cfg.supervisor
    assert (sup.metrics, sup.metrics_host, sup.metrics_port) == (True, "127.0.0.1", 9464)


def test_the_test_profile_is_what_its_comment_and_the_readme_say() -> None:
    """test.toml: "Tests: small rings (wrap-around happens often), blocking waits"; README:
    instance test, "1,024-slot rings for the tests, no REST"."""
    said(PROFILES / "test.toml", "# Tests: small rings (wrap-around happens often), blocking waits")
    _claim("`test` (instance `test`: 1,024-slot rings for the tests, no REST)")
    cfg = load_profile("test")
    assert (cfg.instance, cfg.ring.capacity, cfg.wait.strategy) == ("test", 1024, "blocking")
    assert all(g.rest is None for g in cfg.gateways)


def test_the_latency_profile_is_what_its_comment_and_the_readme_say() -> None:
    """latency.toml: "the hot stages spin. Needs a core per spinning process"; README:
    "instance `prod`: a pinned many-core host, busy-spin, 65,536-slot rings; give it
    `supervisor.cores`" (the profile pins nothing itself)."""
    said(PROFILES / "latency.toml", "the hot stages spin. Needs a core per spinning process.")
    _claim("`latency` (instance `prod`: a pinned many-core host, busy-spin, 65,536-slot rings;")
    cfg = load_profile("latency")
    assert (cfg.instance, cfg.ring.capacity, cfg.wait.strategy) == ("prod", 65536, "busy-spin")
    assert cfg.supervisor.cores == SupervisorConfig().cores == {}


def test_a_shipped_profile_need_set_only_what_differs_from_the_defaults() -> None:
    """config.schema: "a profile need set only what differs from the defaults" (review 134: it
    said a profile sets only that; dev.toml restates a few defaults, as a reader's guide)."""
    said(config.schema, "a profile need set only what differs from the defaults")
    for name in profile_names():
        assert load_profile(name).instance
