"""Units cannot change under a journal (``procs/common/units.py``): a start whose config gives
an asset other decimals, a symbol other assets or decimals, or an id to something else is
refused, naming the difference, before anything is replayed under them."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import msgspec
import pytest

from config.schema import AssetConfig, RingexConfig
from procs.common.types import Side
from procs.common.units import UnitsError, pin_units, units_path, units_refused
from procs.router.main import RouterShell
from procs.supervisor.main import Supervisor
from tests.unit.router.test_router import BTC, USD, Exchange, config, fund, order


def _with(cfg: RingexConfig, **changes: object) -> RingexConfig:
    return msgspec.structs.replace(cfg, **changes)


def _usd(cfg: RingexConfig, decimals: int) -> RingexConfig:
    assets = [a if a.name != "USD" else _with_asset(a, decimals) for a in cfg.assets]
    return _with(cfg, assets=assets)


def _with_asset(asset: AssetConfig, decimals: int) -> AssetConfig:
    return msgspec.structs.replace(asset, decimals=decimals)


def test_the_first_start_pins_the_units_and_the_same_config_runs_again(
    instance: str, tmp_path: Path
) -> None:
    cfg = config(instance, tmp_path)
    ex = Exchange(cfg)
    try:
        fund(ex, 1, 10_000_000, 0)
        ex.send(1, order(1, 1, Side.BUY, 100, 1))  # a journal with amounts in it
    finally:
        ex.stop()
    pinned = json.loads(units_path(cfg).read_bytes())
    assert pinned["assets"]["USD"] == {"id": USD, "decimals": 4}
    assert pinned["symbols"]["BTC-USD"]["quote"] == "USD"
    assert units_refused(cfg) == ""
    ex.start()  # starts again on it
    ex.stop()


def test_other_decimals_are_refused_by_the_router_before_it_replays(
    instance: str, tmp_path: Path
) -> None:
    cfg = config(instance, tmp_path)
    Exchange(cfg).stop()
    wider = _usd(cfg, 6)
    refused = units_refused(wider)
    assert "asset USD decimals: 6 in the config, 4 in the journal" in refused
    with pytest.raises(UnitsError, match="asset USD decimals: 6 in the config, 4"):
        RouterShell(wider)


def test_a_symbols_units_and_a_renamed_id_are_refused(tmp_path: Path) -> None:
    cfg = config("unitsx", tmp_path)
    pin_units(cfg)
    sym = cfg.symbols[0]
    coarser = _with(cfg, symbols=[msgspec.structs.replace(sym, qty_decimals=1)])
    assert "symbol BTC-USD qty_decimals: 1 in the config, 2 in the journal" in units_refused(
        coarser
    )
    renamed = _with(
        cfg, assets=[a if a.id != BTC else AssetConfig(name="XBT", id=BTC, decimals=4)
                     for a in cfg.assets],
        symbols=[msgspec.structs.replace(sym, base="XBT")],
    )  # fmt: skip
    refused = units_refused(renamed)
    assert "asset id 2 names 'XBT' in the config and 'BTC' in the journal" in refused
    assert "symbol BTC-USD base: 'XBT' in the config, 'BTC' in the journal" in refused


def test_what_is_added_is_pinned_and_what_is_removed_stays(tmp_path: Path) -> None:
    cfg = config("unitsy", tmp_path)
    pin_units(cfg)
    more = _with(cfg, assets=[*cfg.assets, AssetConfig(name="ETH", id=9, decimals=8)])
    assert units_refused(more) == ""
    pin_units(more)
    assert "ETH" in json.loads(units_path(cfg).read_bytes())["assets"]
    fewer = _with(cfg, assets=cfg.assets)  # ETH gone from the config: still pinned
    pin_units(fewer)
    assert "ETH" in json.loads(units_path(cfg).read_bytes())["assets"]
    back = _with(cfg, assets=[*cfg.assets, AssetConfig(name="SOL", id=9, decimals=9)])
    assert "asset id 9 names 'SOL' in the config and 'ETH' in the journal" in units_refused(back)


def test_a_units_file_that_is_not_json_is_named(tmp_path: Path) -> None:
    cfg = config("unitsz", tmp_path)
    units_path(cfg).parent.mkdir(parents=True)
    units_path(cfg).write_text("[1, 2]")
    with pytest.raises(UnitsError, match=r"units\.json: not the units JSON the router writes"):
        units_refused(cfg)


def test_the_supervisor_refuses_other_units_before_it_starts_anything(
    instance: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = config(instance, tmp_path)
    pin_units(cfg)
    with caplog.at_level(logging.ERROR):
        assert Supervisor(_usd(cfg, 8), "test").run(lambda: True) == 1
    assert "asset USD decimals: 8 in the config, 4 in the journal" in caplog.text
