"""``python -m procs.gateway.main`` serves FIX over TCP and stops cleanly on SIGTERM; a
failed task stops it with an error."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from procs.common.topology import rings
from procs.gateway.server import GatewayServer
from shm import Ring
from tests.free_ports import free_port
from tests.unit.gateway.harness import CODEC, config


def test_process_logs_on_and_stops_on_sigterm(instance: str, tmp_path: Path) -> None:
    port = free_port()
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


def test_a_failed_poll_task_stops_the_gateway_with_an_error(instance: str, tmp_path: Path) -> None:
    """Crash-only: a bug that ends the poll task must end ``run`` with an error (the process
    exits and is restarted), not leave a gateway that takes orders and never answers."""
    cfg = config(instance, tmp_path)
    made = [
        Ring.create(instance, r.name, CODEC, capacity=r.capacity, consumers=r.consumers)
        for r in rings(cfg)
    ]

    async def scenario() -> None:
        gateway = GatewayServer(cfg, "gw1")

        def broken() -> int:
            raise ValueError("a bug in the pump")

        gateway.pump = broken  # type: ignore[method-assign]
        with pytest.raises(RuntimeError, match=r"gateway task poll ended.*a bug in the pump"):
            await asyncio.wait_for(gateway.run(), 10)

    try:
        asyncio.run(scenario())
    finally:
        for ring in made:
            ring.close()
