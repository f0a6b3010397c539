"""sd_notify over a real AF_UNIX datagram socket, as systemd listens: a path and an abstract
name; no socket means no-op; the watchdog interval and the petting wrapper; the replication
processes' READY and STOPPING."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from procs.common import sd_notify
from tests import free_ports


def receive(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


@pytest.fixture(params=["path", "abstract"])
def listener(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        path = str(tmp_path / "notify")
        sock.bind(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
    else:
        name = f"ringex-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        sock.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    sock.setblocking(False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield sock
    sock.close()


def test_states_arrive(listener: socket.socket) -> None:
    assert sd_notify.ready()
    assert sd_notify.watchdog()
    assert sd_notify.status("recovered to seq 42\nnow running")
    assert sd_notify.stopping()
    assert sd_notify.notify("EXTEND_TIMEOUT_USEC=5000000")
    assert receive(listener) == [
        "READY=1",
        "WATCHDOG=1",
        "STATUS=recovered to seq 42 now running",
        "STOPPING=1",
        "EXTEND_TIMEOUT_USEC=5000000",
    ]


def test_no_socket_is_a_no_op(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not sd_notify.ready()
    assert not sd_notify.watchdog()
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert not sd_notify.ready()
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    assert not sd_notify.ready()


def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert sd_notify.watchdog_interval_s() is None
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert sd_notify.watchdog_interval_s() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sd_notify.watchdog_interval_s() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))  # a child inherited it
    assert sd_notify.watchdog_interval_s() is None
    monkeypatch.delenv("WATCHDOG_PID")
    for bad in ("0", "-5", "soon"):
        monkeypatch.setenv("WATCHDOG_USEC", bad)
        assert sd_notify.watchdog_interval_s() is None


def test_petting_is_the_function_itself_outside_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)

    def poll() -> bool:
        return False

    assert sd_notify.petting(poll) is poll
    assert sd_notify.petting(poll, ready_first=True) is poll


def test_petting_pings_when_due(listener: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # ping every 0.1 s
    clock = [100.0]
    calls: list[int] = []

    def stop(n: int) -> bool:
        calls.append(n)
        return False

    poll = sd_notify.petting(stop, ready_first=True, clock=lambda: clock[0])
    for n in range(5):  # one ping, then nothing until 0.1 s have passed
        assert poll(n) is False
        clock[0] += 0.03
    assert calls == [0, 1, 2, 3, 4]
    assert receive(listener) == ["READY=1", "WATCHDOG=1", "WATCHDOG=1"]


def test_watchdog_loop(listener: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    async def run_for(seconds: float) -> None:
        task = asyncio.create_task(sd_notify.watchdog_loop())
        await asyncio.sleep(seconds)
        task.cancel()

    asyncio.run(run_for(0.05))  # off: returns at once, sends nothing
    assert receive(listener) == []
    monkeypatch.setenv("WATCHDOG_USEC", "40000")  # every 20 ms
    asyncio.run(run_for(0.05))
    assert len(receive(listener)) >= 2  # at 0 and 20 ms, at least


@pytest.mark.parametrize("role", ["source", "standby"])
def test_the_replication_processes_notify(
    role: str, listener: socket.socket, tmp_path: Path, free_port: int
) -> None:
    """READY once listening (source) or recovered (standby), STOPPING at SIGTERM."""
    key = "listen_port" if role == "source" else "primary"
    value = str(free_port) if role == "source" else f'"127.0.0.1:{free_port}"'
    profile = tmp_path / "p.toml"
    profile.write_text(
        f'instance = "sdn{os.getpid()}"\nvar_dir = "{tmp_path}"\n[replication]\n{key} = {value}\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "procs.replica.main", role, "--profile", str(profile)],
        cwd=Path(__file__).parents[3], env=dict(os.environ),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        got: list[str] = []
        deadline = time.monotonic() + 30
        while "READY=1" not in got:
            assert time.monotonic() < deadline and proc.poll() is None, got
            time.sleep(0.02)
            got += receive(listener)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert "STOPPING=1" in got + receive(listener)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.fixture
def free_port() -> int:
    return free_ports.free_port()
