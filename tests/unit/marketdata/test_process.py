"""``python -m procs.marketdata.main`` as a real process over a real ring: it serves the page
and the feed, and stops cleanly (exit 0) on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvloop
from websockets.asyncio.client import connect

from procs.common.records import Record
from procs.common.topology import MARKETDATA, matcher_output
from shm import Ring
from shm.producer import Producer
from tests.free_ports import free_port

from .events import trade
from .rig import CODEC

ROOT = Path(__file__).parents[3]


@contextmanager
def marketdata_process(instance: str, tmp_path: Path) -> Iterator[tuple[int, Producer[Record]]]:
    """The process on a fresh ring; yields its port and the ring's producer."""
    port = free_port()
    profile = tmp_path / "md.toml"
    profile.write_text(
        f'instance = "{instance}"\nvar_dir = "{tmp_path}"\n'
        '[[symbols]]\nname = "BTC-USD"\nid = 1\nqty_decimals = 4\n'
        '[[matchers]]\nname = "m1"\nsymbols = ["BTC-USD"]\n'
        f"[marketdata]\nport = {port}\n"
    )
    ring = Ring.create(instance, matcher_output("m1"), CODEC, capacity=1024, consumers=[MARKETDATA])
    producer = ring.producer()
    proc = subprocess.Popen(
        [sys.executable, "-m", "procs.marketdata.main", "--profile", str(profile)],
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/symbols", timeout=1):
                    break
            except OSError:
                assert proc.poll() is None, "marketdata exited while starting"
                assert time.monotonic() < deadline, "marketdata did not start in 20 s"
                time.sleep(0.05)
        yield port, producer
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        producer.close()
        ring.close()


def test_process_serves_the_feed_and_stops_on_sigterm(instance: str, tmp_path: Path) -> None:
    with marketdata_process(instance, tmp_path) as (port, producer):

        async def client() -> None:
            async with (
                asyncio.timeout(30),
                connect(f"ws://127.0.0.1:{port}/ws/btc-usd@trade") as ws,
            ):
                await ws.send('{"method":"LIST_SUBSCRIPTIONS","id":1}')
                assert json.loads(await ws.recv())["result"] == ["btc-usd@trade"]
                producer.publish(trade(1, 1, 12_345, 7, ts=time.time_ns()))
                msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert msg["stream"] == "btc-usd@trade"
                assert (msg["data"]["p"], msg["data"]["q"]) == ("123.45", "0.0007")

        uvloop.run(client())
