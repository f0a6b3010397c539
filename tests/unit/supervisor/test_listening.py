"""The readiness probe: a process is ready once it listens on its ports, read from /proc."""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from config.edges import GatewayConfig, MarketDataConfig, RestConfig
from config.schema import RingexConfig
from procs.supervisor.listening import missing_listeners
from procs.supervisor.plan import plan
from tests.free_ports import free_port


@contextmanager
def listener(port: int = 0, *, reuse: bool = False, family: int = socket.AF_INET) -> Iterator[int]:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        if reuse:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", port))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_a_listening_socket_of_the_process_is_found() -> None:
    with listener() as port:
        assert missing_listeners(os.getpid(), (port,)) == []


def test_a_port_nobody_listens_on_is_missing() -> None:
    port = free_port()
    assert missing_listeners(os.getpid(), (port,)) == [port]
    assert missing_listeners(os.getpid(), ()) == []


def test_a_bound_socket_that_does_not_listen_yet_is_missing() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
        assert missing_listeners(os.getpid(), (port,)) == [port]


def test_ipv6_listeners_count() -> None:
    if not socket.has_ipv6:
        return
    try:
        with listener(family=socket.AF_INET6) as port:
            assert missing_listeners(os.getpid(), (port,)) == []
    except OSError:  # no ::1 on this host
        return


def _listen_and_hold(port: int, ready: Any, done: Any) -> None:
    with listener(port, reuse=True):
        ready.set()
        done.wait(10)


def test_another_process_on_a_shared_port_does_not_make_this_one_ready() -> None:
    """reuse_port: gateways may share a port; each must hold a listener of its own."""
    with listener(reuse=True) as port:
        ctx = mp.get_context("spawn")
        ready, done = ctx.Event(), ctx.Event()
        other = ctx.Process(target=_listen_and_hold, args=(port, ready, done))
        other.start()
        try:
            assert ready.wait(10)
            assert missing_listeners(os.getpid(), (port,)) == []  # ours
            assert other.pid is not None
            assert missing_listeners(other.pid, (port,)) == []  # its own
        finally:
            done.set()
            other.join(10)
    assert missing_listeners(os.getpid(), (port,)) == [port]  # closed: none now


def test_a_vanished_process_listens_on_nothing() -> None:
    ctx = mp.get_context("spawn")
    gone = ctx.Process(target=int)
    gone.start()
    gone.join()
    assert gone.pid is not None
    assert missing_listeners(gone.pid, (1,)) == [1]


def test_the_plan_waits_on_every_known_client_port() -> None:
    cfg = RingexConfig(
        gateways=[
            GatewayConfig(name="gw1", id=1, port=9100, rest=RestConfig(port=9101)),
            GatewayConfig(name="gw2", id=2, port=0),  # any free port: not waited on
        ],
        marketdata=MarketDataConfig(port=9102),
    )
    ports = {spec.name: spec.ready_ports for spec in plan(cfg)}
    assert ports["gateway-gw1"] == (9100, 9101)
    assert ports["gateway-gw2"] == ()
    assert ports["marketdata"] == (9102,)
    assert ports["router"] == ()
    assert all(not p for name, p in ports.items() if name.startswith("matcher-"))
