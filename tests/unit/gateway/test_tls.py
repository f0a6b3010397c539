"""TLS on a gateway's ports (``tls_cert`` / ``tls_key``, ``procs/common/tls.py``): FIX and the
REST API over TLS, end to end through a real gateway, and a plain client refused there.

``tls/cert.pem`` and ``tls/key.pem`` are a self-signed certificate for localhost and
127.0.0.1 made for these tests alone (``openssl req -x509 -newkey rsa:2048 -nodes -days
36500 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1``): no secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from config.edges import GatewayConfig, RestConfig
from config.schema import DatabaseConfig
from procs.common.tls import TlsError, server_context
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import RestClient
from tests.unit.gateway.harness import Client, Harness, config, run_scenario
from tests.unit.gateway.rest_rig import LIMIT, rest_exchange

TLS = Path(__file__).parent / "tls"
CERT, KEY = str(TLS / "cert.pem"), str(TLS / "key.pem")


def trusting() -> ssl.SSLContext:
    """A client's context that trusts the tests' certificate (and checks the host name)."""
    return ssl.create_default_context(cafile=CERT)


@pytest.fixture
def fix_tls(instance: str, tmp_path: Path) -> Iterator[Harness]:
    cfg = config(instance, tmp_path, tls_cert=CERT, tls_key=KEY)
    h = Harness(msgspec.structs.replace(cfg, database=DatabaseConfig(enabled=False)))
    h.add_user("ALICE", "alice-pw", 7)
    h.fund(7)
    yield h
    h.close()


def test_a_fix_session_logs_on_and_trades_over_tls(fix_tls: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        alice = Client("ALICE")
        await alice.connect(port, tls=trusting())
        assert (await alice.logon("alice-pw")).get(35) == b"A"
        await alice.send(
            "D", (11, "tls-1"), (55, "BTC-USD"), (54, "1"), (60, "20250101-00:00:00"),
            (38, "0.10"), (40, "2"), (44, "100.00"), (59, "1"),
        )  # fmt: skip
        new = await alice.expect("8")
        assert (new.get(150), new.get(11)) == (b"0", b"tls-1")
        await alice.aclose()

    run_scenario(fix_tls, scenario)


def test_a_plain_fix_client_gets_nothing_from_a_tls_port(fix_tls: Harness) -> None:
    """A client that does not speak TLS is not answered a Logon (its bytes are no TLS
    handshake): the connection closes."""

    async def scenario(h: Harness, port: int) -> None:
        plain = Client("ALICE")
        await plain.connect(port)
        with contextlib.suppress(ConnectionError):
            await plain.send("A", (98, 0), (108, 30), (554, "alice-pw"))
        assert await plain.recv(3.0) is None
        await plain.aclose()

    run_scenario(fix_tls, scenario)


def test_the_rest_api_over_tls_logs_in_trades_and_streams(instance: str, tmp_path: Path) -> None:
    """https: a key made with the password (which crosses the network encrypted), a signed
    order placed and listed, the private stream's snapshot over wss."""
    harness = next(rest_exchange(instance, tmp_path))
    assert harness.cfg.gateways[0].rest is not None
    rest = msgspec.structs.replace(harness.cfg.gateways[0].rest, tls_cert=CERT, tls_key=KEY)
    gateway = msgspec.structs.replace(harness.cfg.gateways[0], rest=rest)
    harness.cfg = msgspec.structs.replace(harness.cfg, gateways=[gateway])

    async def main() -> None:
        await harness.start()
        assert harness.gateway is not None and harness.gateway.api is not None
        api: RestApi = harness.gateway.api
        alice = RestClient(f"https://localhost:{api.port}", tls=trusting())
        try:
            await alice.login("ALICE", "alice-pw")
            placed = await alice.call(
                "POST", "/api/v1/order", **LIMIT, price="100.00", quantity="0.10"
            )
            opened = await alice.call("GET", "/api/v1/openOrders")
            assert [o["orderId"] for o in opened] == [placed["orderId"]]
            ws = await alice.session.ws_connect(alice.stream_url())
            first = await asyncio.wait_for(ws.receive_json(), 10)
            assert (first["event"], first["seq"]) == ("snapshot", 1), first
            await ws.close()
        finally:
            await alice.close()
            await harness.stop()

    try:
        asyncio.run(main())
    finally:
        harness.close()


def test_a_certificate_without_its_key_is_refused_at_load_naming_both() -> None:
    with pytest.raises(ValueError, match="tls_cert is set and tls_key is not"):
        GatewayConfig(name="gw1", id=1, tls_cert=CERT)
    with pytest.raises(ValueError, match="tls_key is set and tls_cert is not"):
        RestConfig(tls_key=KEY)


def test_a_missing_or_wrong_file_is_named() -> None:
    with pytest.raises(TlsError, match=r"/nowhere/cert\.pem does not exist"):
        server_context("/nowhere/cert.pem", KEY)
    swapped = re.escape(f"TLS certificate {KEY} with key {CERT} does not load")
    with pytest.raises(TlsError, match=swapped):
        server_context(KEY, CERT)  # the two swapped
    assert server_context("", "") is None
