"""A running exchange's /metrics, found as an operator finds it (`ringex status --json`): an
admin command shows up as a gateway command, a sequenced command and a reply."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.running import ringex, running_exchange


class Scrape:
    def __init__(self, url: str) -> None:
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        self.samples = {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def __call__(self, name: str, **labels: str) -> float:
        return self.samples[(name, frozenset(labels.items()))]


def test_metrics_of_a_running_exchange(instance: str, tmp_path: Path) -> None:
    with running_exchange(instance, tmp_path) as profile:
        url = json.loads(ringex(profile, "status", "--json"))["endpoints"]["metrics"]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
        assert url in ringex(profile, "status")
        sequenced = Scrape(url)("ringex_router_sequenced_total")
        assert "account 7: OK" in ringex(profile, "admin", "create-account", "--account", "7")

        deadline = time.monotonic() + 10
        got = Scrape(url)
        while got("ringex_ring_consumer_lag", ring="gw0-cmd", consumer="router"):
            assert time.monotonic() < deadline, "the router did not commit the admin ring"
            time.sleep(0.05)  # the reply can reach the CLI before the router commits its input
            got = Scrape(url)
        assert got("ringex_gateway_commands_total", gateway="admin") == 1
        assert got("ringex_router_replies_total", gateway="admin") == 1
        assert got("ringex_router_sequenced_total") == sequenced + 1
        assert got("ringex_supervisor_state", ringex_supervisor_state="running") == 1
        for process in ("router", "matcher-m1", "gateway-gw1"):
            assert got("ringex_process_up", process=process) == 1
            assert got("ringex_process_ready", process=process) == 1
        for consumer in ("router", "gw1"):
            assert got("ringex_ring_consumer_up", ring="m1-out", consumer=consumer) == 1
        # the router's page is stored once a millisecond at most: it comes within a few
        while got("ringex_router_commands_total") < 1:
            assert time.monotonic() < deadline, "the router's page does not count the command"
            time.sleep(0.05)
            got = Scrape(url)
        states = ("busy", "idle", "behind", "full", "fsync", "standby")
        spent = {s: got("ringex_router_time_seconds_total", state=s) for s in states}
        assert spent["idle"] > 0 and spent["busy"] > 0, spent  # a quiet router waits mostly
        assert spent["standby"] == 0 and spent["full"] == 0, spent  # no standby, nothing full
        assert got("ringex_router_events_total") >= 0
        # the database writer's checkpoint reaches the journal's last seq (its page is said
        # at each turn of its loop): lag 0, the figure an operator alerts on
        while ("ringex_dbwriter_lag", frozenset()) not in got.samples or got("ringex_dbwriter_lag"):
            assert time.monotonic() < deadline + 20, "the writer's lag never came to 0"
            time.sleep(0.1)
            got = Scrape(url)
        assert got("ringex_dbwriter_committed_total") == got("ringex_router_sequenced_total")
