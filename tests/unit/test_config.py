"""Profiles load into frozen, strict config; mistakes name the key and value."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import load_profile, profile_names
from shm import Blocking, BusySpin


def test_every_profile_loads_and_builds_its_wait_strategy() -> None:
    assert {"dev", "test", "latency"} <= set(profile_names())
    assert isinstance(load_profile("dev").wait.build(), Blocking)
    assert isinstance(load_profile("latency").wait.build(), BusySpin)
    assert load_profile("test").ring.capacity == 1024


def test_unknown_keys_and_bad_values_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[ring]\ncapacity = 1000\n")
    with pytest.raises(ValueError, match="capacity 1000 is not a power of two"):
        load_profile(str(bad))
    bad.write_text("[ring]\ncapacty = 1024\n")
    with pytest.raises(ValueError, match="unknown field `capacty`"):
        load_profile(str(bad))
    bad.write_text('[wait]\nstrategy = "spin"\n')
    with pytest.raises(ValueError, match=r"\$\.wait\.strategy"):
        load_profile(str(bad))
    with pytest.raises(ValueError, match="profile 'prodd' is unknown"):
        load_profile("prodd")


SOL = """
[[assets]]
name = "USD"
id = 1
decimals = 6
[[assets]]
name = "SOL"
id = 4
decimals = 6
[[symbols]]
name = "SOL-USD"
id = 3
%s
[[matchers]]
name = "m1"
symbols = ["SOL-USD"]
"""


def test_a_symbol_trades_the_assets_its_name_pairs_unless_it_says(tmp_path: Path) -> None:
    """Never the schema's defaults (BTC against USD) for a symbol that named neither."""
    path = tmp_path / "sol.toml"
    path.write_text(SOL % "")
    sym = load_profile(str(path)).symbol("SOL-USD")
    assert (sym.base, sym.quote) == ("SOL", "USD")
    path.write_text((SOL % "").replace("SOL-USD", "SOLUSD"))
    with pytest.raises(ValueError, match="'SOLUSD' does not set both base and quote"):
        load_profile(str(path))
    path.write_text((SOL % 'base = "SOL"').replace("SOL-USD", "SOLUSD"))
    with pytest.raises(ValueError, match="'SOLUSD' does not set both"):
        load_profile(str(path))  # half said is not said: no default quote in silence
    path.write_text((SOL % 'base = "SOL"\nquote = "USD"').replace("SOL-USD", "SOLUSD"))
    assert load_profile(str(path)).symbol("SOLUSD").base == "SOL"
    path.write_text(SOL % 'quote = "USD"')
    assert load_profile(str(path)).symbol("SOL-USD").base == "SOL"  # the rest from the name
    path.write_text((SOL % "").replace('name = "SOL"', 'name = "XSOL"'))
    with pytest.raises(ValueError, match="base asset 'SOL' is not in"):
        load_profile(str(path))
