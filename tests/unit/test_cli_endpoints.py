"""``ringex status``'s endpoints: what runs is listed with its address, what is off says so."""

from __future__ import annotations

import msgspec

from config.edges import MarketDataConfig
from config.schema import RingexConfig
from procs.cli import endpoints


def test_market_data_endpoints_when_it_runs_and_when_it_is_off() -> None:
    cfg = RingexConfig()
    stopped = {"state": "stopped"}
    shown = endpoints(cfg, stopped)
    assert shown["websocket"] == f"ws://127.0.0.1:{cfg.marketdata.port}/stream"
    assert shown["web page"] == f"http://127.0.0.1:{cfg.marketdata.port}/"
    off = endpoints(
        msgspec.structs.replace(cfg, marketdata=MarketDataConfig(enabled=False)), stopped
    )
    assert off["websocket"] == off["web page"] == "off (marketdata.enabled = false)"
    assert set(off) == set(shown)  # the keys scripts read stay
