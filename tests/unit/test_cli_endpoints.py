"""``ringex status``'s endpoints: what runs is listed with its address, what is off says so."""

from __future__ import annotations

import json
import os
from pathlib import Path

import msgspec
import pytest

from config.edges import MarketDataConfig
from config.schema import ReplicationConfig, RingexConfig
from procs.cli import _print_status
from procs.common.endpoints import endpoints


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


def test_a_standby_says_its_endpoints_are_its_promoted_instances(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A standby runs no gateway and no feed: ``ringex status`` listed their addresses as if
    it served them. It now says they are its promoted instance's, and the JSON says
    ``serves_clients`` (false on a standby, and on what does not run)."""
    cfg = msgspec.structs.replace(
        RingexConfig(instance=f"standby-status-{os.getpid()}"),
        replication=ReplicationConfig(primary="127.0.0.1:1"),
        var_dir=str(tmp_path),
    )
    assert _print_status(cfg, as_json=False) == 0
    assert "endpoints once promoted (a standby serves no client" in capsys.readouterr().out
    assert _print_status(cfg, as_json=True) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["role"] == "standby"
    assert shown["serves_clients"] is False
    assert "fix gw1" in shown["endpoints"]  # the keys scripts read stay


def test_an_empty_host_reads_as_the_wildcard_not_an_empty_url_host() -> None:
    """``metrics_host = ""`` (every address, as the config takes it) gave
    ``http://:9100/metrics``; it shows as 0.0.0.0, as the wildcard it is."""
    cfg = RingexConfig()
    cfg = msgspec.structs.replace(
        cfg,
        supervisor=msgspec.structs.replace(cfg.supervisor, metrics_host="", metrics_port=9100),
        marketdata=msgspec.structs.replace(cfg.marketdata, host=""),
    )
    shown = endpoints(cfg, {"state": "stopped"})
    assert shown["metrics"] == "http://0.0.0.0:9100/metrics"
    assert shown["websocket"] == f"ws://0.0.0.0:{cfg.marketdata.port}/stream"
