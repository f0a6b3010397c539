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
