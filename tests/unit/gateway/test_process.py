"""``python -m procs.gateway.main`` serves FIX over TCP and stops cleanly on SIGTERM."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from procs.common.topology import rings
from shm import Ring
from tests.unit.gateway.harness import CODEC, config


def test_process_logs_on_and_stops_on_sigterm(instance: str, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = config(instance, tmp_path)
    made = [
        Ring.create(instance, r.name, CODEC, capacity=r.capacity, consumers=r.consumers)
        for r in rings(cfg)
    ]
    profile = tmp_path / "gw.toml"
    profile.write_text(
        f'instance = "{instance}"\nvar_dir = "{tmp_path}"\n[ring]\ncapacity = 4096\n'
        "[marketdata]\nenabled = false\n"
        '[[symbols]]\nname = "BTC-USD"\nid = 1\nprice_decimals = 2\nqty_decimals = 2\n'
        'base = "BTC"\n[[matchers]]\nname = "m1"\nsymbols = ["BTC-USD"]\n'
        f'[[gateways]]\nname = "gw1"\nid = 1\nport = {port}\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "procs.gateway.main", "--profile", str(profile), "--name", "gw1"],
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise AssertionError("the gateway did not listen")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
        for ring in made:
            ring.close()
