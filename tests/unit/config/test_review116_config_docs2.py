"""Review 116, part two: the comments of the client-serving sections (``config/edges.py``:
``[[gateways]]``, ``[gateways.rest]``, ``[marketdata]``) held against the gateway and the
feed that read them, and (for room) the gc, risk-rate, fee-account and top-level keys that
part one leaves here. Convention and helpers are part one's (``test_review116_config_docs.py``):
each test asserts its comment's words, then calls the using code (a ``GatewayServer`` built
over real rings, its ``RestApi``, the feed's ``MarketDataServer`` and ``Hub``) or, where that
is impractical, reads its source. Every comment checked here was found right.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import inspect
import re
import time
import types
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

import procs.common.gc_policy
import procs.core.sequencer
import procs.gateway.orders
import procs.gateway.rest
import procs.gateway.rest_keys
import procs.gateway.session
import procs.marketdata.server
import procs.router.intake
from config.edges import GatewayConfig, MarketDataConfig, RestConfig
from config.schema import (
    DatabaseConfig,
    GcConfig,
    ReplicationConfig,
    RingConfig,
    RingexConfig,
    RiskConfig,
)
from procs.common.result_codes import ResultCode
from procs.common.token_bucket import TokenBucket
from procs.common.topology import create_rings, journal_dir
from procs.core.accounts import Accounts
from procs.gateway import logon
from procs.gateway.server import IDLE_NAP_S, PARKED_NAP_S, GatewayServer
from procs.gateway.session_interface import SessionSettings
from procs.marketdata.hub import Hub
from procs.marketdata.main import MarketDataProcess
from procs.marketdata.server import MarketDataServer
from procs.supervisor.plan import plan
from shm.inspect import remove_instance
from shm.region import segment_name
from tests.unit.config.test_review116_config_docs import quoted, refused, source
from tests.unit.gateway.harness import CODEC, config

_SECOND = 1_000_000_000


@contextlib.contextmanager
def gateway(instance: str, tmp_path: Path, **gw: object) -> Iterator[GatewayServer]:
    """Gateway gw1 built as its process builds it (not started), over the rings of the gateway
    harness's instance configured with ``gw``; no database (no history)."""
    cfg = config(instance, tmp_path, **gw)
    cfg = msgspec.structs.replace(cfg, database=DatabaseConfig(enabled=False))
    rings = create_rings(cfg, CODEC)
    server = None
    try:
        server = GatewayServer(cfg, "gw1")
        yield server
    finally:
        if server is not None:
            server.close()
        for ring in rings.values():
            ring.close()
        remove_instance(instance)  # the next gateway of the test makes them again


def test_gateway_max_inbound_per_s_0_is_twice_max_messages_per_s(
    instance: str, tmp_path: Path
) -> None:
    """``gateways.max_inbound_per_s``: "0: twice ``max_messages_per_s``": ``GatewayServer``'s
    ``SessionSettings`` has twice it at 0, the configured count otherwise."""
    quoted(GatewayConfig, "max_inbound_per_s", "0: twice ``max_messages_per_s``")
    with gateway(instance, tmp_path, max_messages_per_s=300) as server:
        assert server.settings.max_inbound_per_s == 600
    with gateway(instance, tmp_path, max_messages_per_s=300, max_inbound_per_s=450) as server:
        assert server.settings.max_inbound_per_s == 450


class _Transport:
    def __init__(self, host: str) -> None:
        self.host, self.closed = host, False

    def get_extra_info(self, name: str) -> object:
        return (self.host, 40_000) if name == "peername" else None

    def close(self) -> None:
        self.closed = True


class _Conn:
    """What ``connection_made`` reads of a ``Connection``."""

    def __init__(self, host: str) -> None:
        self.transport, self.session = _Transport(host), None


def _taken(server: GatewayServer, hosts: list[str]) -> list[bool]:
    """Whether each connection from ``hosts`` (none logged on) is kept."""
    conns = [_Conn(h) for h in hosts]
    for conn in conns:
        server.connection_made(conn)  # type: ignore[arg-type]
    return [not c.transport.closed for c in conns]


@pytest.mark.parametrize(
    ("sessions", "pending", "kept"), [(6, 0, 3), (5, 0, 2), (1, 0, 1), (6, 1, 1)]
)
def test_gateway_max_pending_per_address_0_is_half_of_max_sessions(
    instance: str, tmp_path: Path, sessions: int, pending: int, kept: int
) -> None:
    """``gateways.max_pending_per_address``: "(0: half of ``max_sessions``, one at least); past
    it, a connection is closed at once": ``GatewayConnections.connection_made``."""
    quoted(GatewayConfig, "max_pending_per_address", "(0: half of ``max_sessions``, one at least)")
    limits = {"max_sessions": sessions, "max_pending_per_address": pending}
    with gateway(instance, tmp_path, **limits) as server:
        assert _taken(server, ["10.0.0.1"] * (kept + 1)) == [True] * kept + [False]
        if kept < sessions:  # another address still gets in
            assert _taken(server, ["10.0.0.2"]) == [True]


def test_gateway_max_messages_per_s_rejects_application_messages_past_it(
    instance: str, tmp_path: Path
) -> None:
    """``gateways.max_messages_per_s``: "Application messages per session per second; more are
    rejected": the session's ``TokenBucket``, spent by application messages only."""
    quoted(GatewayConfig, "max_messages_per_s", "Application messages per session per second")
    with gateway(instance, tmp_path, max_messages_per_s=77) as server:
        assert server.settings.max_messages_per_s == 77
    text = source(procs.gateway.session)
    assert "self.throttle = TokenBucket(settings.max_messages_per_s, now_ns)" in text
    assert (
        'elif kind in dictionary.INBOUND_APP: if kind != b"j" and not '
        "self.throttle.allow(now_ns): text = " in text
    )
    assert (
        'messages/s" self.business_reject(msg, 0, text, now_ns) return self.app.on_message(' in text
    )


def _settings(**kw: object) -> SessionSettings:
    base = SessionSettings("RINGEX", 1, 300, 120, 10, 20, 8192, 10.0, False)
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def _sent(at_ns: int) -> types.SimpleNamespace:
    """A message whose SendingTime (52) is ``at_ns``, to the millisecond."""
    stamp = time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(at_ns // _SECOND))
    text = f"{stamp}.{at_ns // 1_000_000 % 1000:03d}".encode()
    return types.SimpleNamespace(get=lambda tag: text if tag == 52 else None)


def test_gateway_sending_time_tolerance_s_is_seconds() -> None:
    """``gateways.sending_time_tolerance_s``: "SendingTime further than this from our clock":
    ``logon.sending_time`` takes 119 s off at 120, refuses 121 s, either way."""
    quoted(GatewayConfig, "sending_time_tolerance_s", "SendingTime further than this")
    settings, now = _settings(sending_time_tolerance_s=120), 1_700_000_000 * _SECOND
    for off_s, taken in ((-119, True), (119, True), (-121, False), (121, False)):
        sent = logon.sending_time(_sent(now + off_s * _SECOND), settings, now)  # type: ignore[arg-type]
        assert (sent is not None) is taken, off_s


def test_gateway_min_and_max_heartbeat_s_bound_heartbtint(instance: str, tmp_path: Path) -> None:
    """``gateways.min_heartbeat_s`` / ``max_heartbeat_s``: "Heartbeat intervals a client may
    ask for (HeartBtInt, seconds)": ``logon.heartbeat_problem``; min > max refused at load."""
    quoted(GatewayConfig, "max_heartbeat_s", "a client may ask for (HeartBtInt, seconds)")
    settings = _settings(min_heartbeat_s=5, max_heartbeat_s=60)
    problems = [
        logon.heartbeat_problem(types.SimpleNamespace(fields={108: b"%d" % hb}), settings)  # type: ignore[arg-type]
        for hb in (4, 5, 60, 61)
    ]
    assert [p is None for p in problems] == [False, True, True, False]
    with pytest.raises(ValueError, match="min_heartbeat_s = 9 is above max_heartbeat_s = 8"):
        GatewayConfig(name="g", id=1, min_heartbeat_s=9, max_heartbeat_s=8)
    with gateway(instance, tmp_path, min_heartbeat_s=5, max_heartbeat_s=60) as server:
        assert (server.settings.min_heartbeat_s, server.settings.max_heartbeat_s) == (5, 60)


def test_gateway_logon_timeout_s_is_seconds(instance: str, tmp_path: Path) -> None:
    """``gateways.logon_timeout_s``: "Seconds a connection may take to log on": the session
    compares it x 10**9 with nanoseconds; the TLS handshake gets it too (``start``)."""
    quoted(GatewayConfig, "logon_timeout_s", "Seconds a connection may take to log on")
    with gateway(instance, tmp_path, logon_timeout_s=2.5) as server:
        assert server.settings.logon_timeout_s == 2.5
    assert procs.gateway.session._SECOND == _SECOND
    text = source(procs.gateway.session.Session)
    assert "if now_ns - self._connected_ns > s.logon_timeout_s * _SECOND:" in text
    assert "gw.logon_timeout_s)" in source(GatewayServer.start)


def test_gateway_failed_login_limits(instance: str, tmp_path: Path) -> None:
    """``gateways.failed_login_rate_per_s`` / ``_burst``: "counted over FIX Logons and REST
    logins together" (with REST, FIX's limiter is the API's); ``address_failed_logon_*``:
    "Failed FIX Logons per second from one client address": ``GatewayConnections``."""
    quoted(GatewayConfig, "failed_login_burst", "counted over FIX Logons and REST logins together")
    quoted(GatewayConfig, "address_failed_logon_burst", "from one client address")
    limits = {"failed_login_rate_per_s": 0.5, "failed_login_burst": 3}
    with gateway(instance, tmp_path, rest=RestConfig(port=0), **limits) as server:
        assert server.api is not None and server.failed_logins is server.api.failed_logins
        assert (server.failed_logins.rate_per_s, server.failed_logins.burst) == (0.5, 3)
    limits |= {"address_failed_logon_rate_per_s": 0.25, "address_failed_logon_burst": 4}
    with gateway(instance, tmp_path, **limits) as server:
        assert (server.failed_logins.rate_per_s, server.failed_logins.burst) == (0.5, 3)
        assert (server._failed_by_address.rate_per_s, server._failed_by_address.burst) == (0.25, 4)


def test_gateway_cancel_on_disconnect_and_reset_on_logon(instance: str, tmp_path: Path) -> None:
    """``gateways.cancel_on_disconnect``: "(a session may override it)", ``reset_on_logon``:
    "reset of sequence numbers at each logon": the order entry's default, the settings'."""
    quoted(GatewayConfig, "cancel_on_disconnect", "(a session may override it)")
    quoted(GatewayConfig, "reset_on_logon", "reset of sequence numbers at each logon")
    with gateway(instance, tmp_path, cancel_on_disconnect=True, reset_on_logon=True) as server:
        assert server.entry.cancel_on_disconnect is True
        assert server.settings.reset_on_logon is True
    text = source(procs.gateway.session)  # the gateway's, unless the user holds its own
    assert "resets = reset or settings.reset_on_logon" in text
    assert "settings = logon.user_settings(self.settings, user)" in text
    text = source(procs.gateway.orders)
    assert "if wanted if wanted is not None else self.cancel_on_disconnect:" in text


def test_gateway_comp_id_and_tls_pair() -> None:
    """``gateways.comp_id``: "1..32 printable ASCII characters, no space"; ``tls_cert`` /
    ``tls_key``: "(both, or neither: plain TCP)" (REST's: "plain HTTP"): refused at load."""
    quoted(GatewayConfig, "comp_id", "1..32 printable ASCII characters, no space")
    quoted(GatewayConfig, "tls_cert", "(both, or neither: plain TCP)")
    quoted(RestConfig, "tls_cert", "(both, or neither: plain HTTP)")
    GatewayConfig(name="g", id=1, comp_id="X" * 32)
    for bad in ("X" * 33, "RING EX", "RING\x01EX", ""):
        assert "matching regex" in refused(GatewayConfig, name="g", id=1, comp_id=bad)
    with pytest.raises(ValueError, match="tls_cert is set and tls_key is not"):
        GatewayConfig(name="g", id=1, tls_cert="/c.pem")
    with pytest.raises(ValueError, match="tls_key is set and tls_cert is not"):
        RestConfig(tls_key="/k.pem")


def test_gateway_idle_spin_us_is_microseconds() -> None:
    """``gateways.idle_spin_us``: "how long the poll loop keeps looking at the rings before it
    naps ... busy-spin never naps": ``submit`` and ``_poll`` divide it by 1e6."""
    quoted(GatewayConfig, "idle_spin_us", "keeps looking at the rings before it naps")
    quoted(GatewayConfig, "idle_spin_us", '(wait.strategy = "busy-spin" never naps)')
    assert "time.perf_counter() + self.gw.idle_spin_us / 1e6" in source(GatewayServer.submit)
    poll = source(GatewayServer._poll)
    assert "window = self.gw.idle_spin_us / 1e6" in poll
    assert 'spin = self.cfg.wait.strategy == "busy-spin"' in poll
    assert "elif spin or clock() < self._spin_until: await asyncio.sleep(0)" in poll


def test_gateway_park_after_ms_is_milliseconds_and_0_is_the_1_ms_timer_alone() -> None:
    """``gateways.park_after_ms``: "1 ms at first, and after this many ms ... 1 s ... 0: no
    watched rings, the 1 ms timer alone": ``_poll``'s naps and ``start``'s ``RingWaker``."""
    quoted(GatewayConfig, "park_after_ms", "1 ms at first", "this many ms with no request")
    quoted(GatewayConfig, "park_after_ms", "0: no watched rings, the 1 ms timer alone")
    assert (IDLE_NAP_S, PARKED_NAP_S) == (0.001, 1.0)
    poll = source(GatewayServer._poll)
    assert "park_after = self.gw.park_after_ms / 1e3" in poll
    assert "idle = self._waker is not None and clock() >= self._spin_until + park_after" in poll
    assert "longest if idle else IDLE_NAP_S" in poll
    start = source(GatewayServer.start)
    assert 'if self.gw.park_after_ms and self.cfg.wait.strategy != "busy-spin":' in start


def test_gateway_order_log_compact_mb_is_mib_and_twice_the_last_rewrite(
    instance: str, tmp_path: Path
) -> None:
    """``gateways.order_log_compact_mb``: "grows past this many MiB and to twice what the last
    rewrite wrote": the threshold is ``mb << 20``; ``wants_compaction`` asks both."""
    quoted(GatewayConfig, "order_log_compact_mb", "past this many MiB and to twice what the last")
    with gateway(instance, tmp_path, order_log_compact_mb=2) as server:
        log = server.order_log
        assert log.compact_bytes == 2 << 20
        wanted = []
        for compacted, size in ((0, 2 << 20), (0, (2 << 20) + 1), (3 << 20, 6 << 20)):
            log.compacted_size, log.size = compacted, size
            wanted.append(log.wants_compaction)
            log.size += 1
            wanted.append(log.wants_compaction)
        assert wanted == [False, True, True, True, False, True]


def test_gateway_stop_grace_s_bounds_the_wait_for_answers() -> None:
    """``gateways.stop_grace_s``: "After every request is answered, or this many seconds":
    ``_close_intake``'s deadline; Meta bounds it to 0..15."""
    quoted(GatewayConfig, "stop_grace_s", "After every request is answered, or this many seconds")
    text = source(GatewayServer._close_intake)
    assert "grace = self.gw.stop_grace_s" in text and "deadline = time.monotonic() + grace" in text
    assert "while self.in_flight(pending) and time.monotonic() < deadline:" in text
    assert "<= 15" in refused(GatewayConfig, name="g", id=1, stop_grace_s=16)


@contextlib.contextmanager
def rest_api(instance: str, tmp_path: Path, **rest: object) -> Iterator[procs.gateway.rest.RestApi]:
    """The REST API a gateway with ``[gateways.rest]`` set to ``rest`` builds."""
    table = msgspec.convert({"port": 0, **rest}, RestConfig)
    with gateway(instance, tmp_path, rest=table) as server:
        assert server.api is not None
        yield server.api


def test_rest_limits_reach_the_api(instance: str, tmp_path: Path) -> None:
    """``rest.max_body_bytes`` ("refused with 413"), ``key_*`` / ``ip_*`` ("per API key and per
    client address"), ``login_*`` ("per second per client address"), ``max_keys_per_user``:
    each reaches what enforces it in ``RestApi``, keyed as the comments say."""
    quoted(RestConfig, "max_body_bytes", "a bigger one is refused with 413")
    quoted(RestConfig, "key_burst", "(and the burst) per API key and per client address")
    quoted(RestConfig, "login_burst", "Password logins (key creation) per second per client")
    quoted(RestConfig, "max_keys_per_user", "API keys per user")
    rates = {"key_rate_per_s": 11.0, "ip_rate_per_s": 13.0, "login_rate_per_s": 1.5}
    table = {"key_burst": 12, "ip_burst": 14, "login_burst": 3, **rates}
    with rest_api(instance, tmp_path, max_body_bytes=4096, max_keys_per_user=4, **table) as api:
        assert api.app._client_max_size == 4096 and api.keys.max_keys_per_user == 4
        assert (api.key_limits.rate_per_s, api.key_limits.burst) == (11.0, 12)
        assert (api.ip_limits.rate_per_s, api.ip_limits.burst) == (13.0, 14)
        assert (api.login_limits.rate_per_s, api.login_limits.burst) == (1.5, 3)
    text = source(procs.gateway.rest)
    assert "HTTPRequestEntityTooLarge" in text
    assert 'throttle(self.key_limits, key.key, "requests for this API key")' in text
    assert 'throttle(self.ip_limits, request.remote or "",' in text
    assert 'throttle(api.login_limits, request.remote or "",' in source(procs.gateway.rest_keys)


def test_rest_recv_window_ms_is_the_default_and_max_the_largest(
    instance: str, tmp_path: Path
) -> None:
    """``rest.recv_window_ms`` / ``max_recv_window_ms``: "The receive window of a signed request
    that names none, and the longest one may ask for (ms)": the ``Verifier``'s; default > max
    refused."""
    quoted(RestConfig, "max_recv_window_ms", "that names none, and the longest one may ask for")
    with rest_api(instance, tmp_path, recv_window_ms=700, max_recv_window_ms=9_000) as api:
        assert api.verifier.default_recv_window_ms == 700
        assert api.verifier.max_recv_window_ms == 9_000
    with pytest.raises(ValueError, match="recv_window_ms = 800 is above max_recv_window_ms"):
        RestConfig(recv_window_ms=800, max_recv_window_ms=700)


def test_rest_order_timeout_s_is_the_wait_before_504() -> None:
    """``rest.order_timeout_s``: "waits for the exchange's answer before 504": ``RestApi.wait``
    times out after it (unless told otherwise), with a 504."""
    quoted(RestConfig, "order_timeout_s", "waits for the exchange's answer before 504")
    assert "self.expect(ref, timeout_s)" in source(procs.gateway.rest.RestApi.wait)
    text = source(procs.gateway.rest.RestApi.expect)
    assert "self.deadlines.add(future, timeout_s or self.rest.order_timeout_s)" in text
    assert "ApiError( 504," in source(procs.gateway.rest.RestApi.settle)


def test_rest_stream_limits_reach_the_private_streams(instance: str, tmp_path: Path) -> None:
    """``rest.max_streams`` ("of this gateway") / ``stream_queue`` ("a slow ... client"),
    ``max_streams_per_key`` / ``_account`` ("one account through all its keys"):
    ``PrivateStreams``, the per-key and per-account ones across the gateways (slot files)."""
    quoted(RestConfig, "max_streams", "Private-stream connections of this gateway.")
    quoted(RestConfig, "stream_queue", "a slow private-stream client may have queued before")
    quoted(RestConfig, "max_streams_per_account", "one account through all its keys")
    limits = {"max_streams_per_key": 2, "max_streams_per_account": 3}
    with rest_api(instance, tmp_path, max_streams=30, stream_queue=40, **limits) as api:
        streams = api.streams
        assert (streams.max_streams, streams.queue_limit) == (30, 40)
        assert (streams.max_per_key, streams.max_per_account) == (2, 3)
        assert streams.slots is not None
        assert (streams.slots.per_key, streams.slots.per_account) == (2, 3)


def _cors(allowed: list[str], origin: str) -> str | None:
    """The Access-Control-Allow-Origin ``RestApi._cors`` answers ``origin`` with."""
    api = types.SimpleNamespace(rest=RestConfig(cors_origins=allowed))
    response = types.SimpleNamespace(headers={})
    request = types.SimpleNamespace(headers={"Origin": origin})
    procs.gateway.rest.RestApi._cors(api, request, response)  # type: ignore[arg-type]
    allowed_origin: str | None = response.headers.get("Access-Control-Allow-Origin")
    return allowed_origin


def test_rest_cors_origins_star_is_any() -> None:
    """``rest.cors_origins``: "(CORS); "*" any": ``RestApi._cors`` allows any origin under the
    default ["*"], a list's own only."""
    quoted(RestConfig, "cors_origins", 'Origins a browser page may call from (CORS); "*" any')
    assert RestConfig().cors_origins == ["*"]
    assert _cors(["*"], "https://any.example") == "*"
    assert _cors(["https://a.example"], "https://a.example") == "https://a.example"
    assert _cors(["https://a.example"], "https://b.example") is None


class _Lane:
    def __init__(self, remote: str) -> None:
        self.remote = remote


def test_rest_max_connections_in_all_and_per_address(instance: str, tmp_path: Path) -> None:
    """``rest.max_connections`` / ``_per_address``: "in all and from one address; past either,
    a 503 naming the limit": ``RestConnections._admit`` refuses, naming it."""
    quoted(RestConfig, "max_connections", "in all and from one address; past either, a 503")
    with rest_api(instance, tmp_path, max_connections=3, max_connections_per_address=2) as api:
        assert api.max_connections == 3
        api.lanes = {_Lane("10.0.0.1"), _Lane("10.0.0.1")}  # type: ignore[arg-type]
        assert "the limit is 2 an address" in (api._admit("10.0.0.1") or "")
        assert api._admit("10.0.0.2") is None
        api.lanes.add(_Lane("10.0.0.3"))  # type: ignore[arg-type]
        assert "this port's limit is 3" in (api._admit("10.0.0.2") or "")


def test_rest_fast_lane_serves_the_order_routes_only() -> None:
    """``rest.fast_lane``: "Serve POST, DELETE and GET /api/v1/order (and POST and DELETE
    /api/v1/batchOrders) on httptools ... false: every request on aiohttp":
    ``RestApi.fast_routes``, the lane started only when on."""
    quoted(RestConfig, "fast_lane", "Serve POST, DELETE and GET /api/v1/order (and POST and")
    quoted(RestConfig, "fast_lane", "DELETE /api/v1/batchOrders) on httptools")
    text = source(procs.gateway.rest.RestApi)
    for method in ("POST", "DELETE", "GET"):
        assert f'("{method}", "/api/v1/order")' in text
    for method in ("POST", "DELETE"):
        assert f'("{method}", "/api/v1/batchOrders")' in text
    assert text.count('"/api/v1/') == 5  # no other route is the fast lane's
    assert "if self.rest.fast_lane:" in text


def _feed(**md: object) -> MarketDataServer:
    return MarketDataServer(None, None, msgspec.convert(md, MarketDataConfig))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("connections", "per_address", "allowed"),
    [(5_000, 0, 1_250), (9, 0, 2), (4, 0, 2), (2, 0, 2), (5_000, 3, 3)],
)
def test_marketdata_max_connections_per_address_0_is_a_quarter_two_at_least(
    connections: int, per_address: int, allowed: int
) -> None:
    """``marketdata.max_connections_per_address``: "(0: a quarter of ``max_connections``, two
    at least)": ``MarketDataServer.per_address`` (never past the whole limit: 1 of 1)."""
    quoted(MarketDataConfig, "max_connections_per_address", "(0: a quarter of ``max_connections``")
    quoted(MarketDataConfig, "max_connections_per_address", "two at least)")
    server = _feed(max_connections=connections, max_connections_per_address=per_address)
    assert (server.max_connections, server.per_address) == (connections, allowed)
    assert _feed(max_connections=1).per_address == 1  # the limit in all holds anyway


def test_marketdata_queue_buffers_and_compression() -> None:
    """``marketdata.client_queue`` ("Messages queued per client before slow-consumer
    handling"), ``write_limit_bytes`` ("Bytes buffered per socket in user space"),
    ``send_buffer_bytes`` ("0 keeps the OS's autotuned default"), ``compression`` (""deflate"
    accepts permessage-deflate"): ``MarketDataProcess`` and ``MarketDataServer``."""
    quoted(MarketDataConfig, "client_queue", "Messages queued per client before slow-consumer")
    quoted(MarketDataConfig, "write_limit_bytes", "Bytes buffered per socket in user space")
    quoted(MarketDataConfig, "send_buffer_bytes", "0 keeps the OS's autotuned default")
    quoted(MarketDataConfig, "compression", '"deflate" accepts permessage-deflate')
    assert "self.outbox = Outbox(server.cfg.client_queue," in source(procs.marketdata.server.Client)
    process = source(MarketDataProcess)
    assert '"write_limit": md.write_limit_bytes,' in process
    assert '"send_buffer": md.send_buffer_bytes or None,' in process
    assert '"compression": None if md.compression == "none" else md.compression,' in process
    start = source(MarketDataServer.start)
    assert "write_limit=self.write_limit," in start and "compression=self.compression," in start
    handler = source(MarketDataServer._handler)
    assert "if self.send_buffer is not None:" in handler
    assert "socket.SO_SNDBUF, self.send_buffer)" in handler


class _Stream:
    def __init__(self, name: str) -> None:
        self.name = name


def test_marketdata_depth_levels_and_max_subscriptions_reach_the_hub() -> None:
    """``marketdata.depth_levels``: "Levels per side in a depth snapshot", and
    ``max_subscriptions``: the ``Hub`` renders that many levels, refuses streams past it."""
    quoted(MarketDataConfig, "depth_levels", "Levels per side in a depth snapshot")
    hub = Hub(types.SimpleNamespace(by_stream={}), depth_levels=7, max_subscriptions=2)  # type: ignore[arg-type]
    assert "book.snapshot(self.depth_levels)" in source(Hub)
    client, streams = types.SimpleNamespace(streams={}), [_Stream(n) for n in "abc"]
    assert len(hub.check_subscribe(client, streams[:2])) == 2  # type: ignore[arg-type]
    with pytest.raises(Exception, match="at most 2 per connection"):
        hub.check_subscribe(client, streams)  # type: ignore[arg-type]
    process = source(MarketDataProcess)
    assert "depth_levels=md.depth_levels, max_subscriptions=md.max_subscriptions" in process


def test_marketdata_snapshot_every_s_and_a_quarter_ring() -> None:
    """``marketdata.snapshot_every_s``: "How often the whole market state is saved ... (also
    after a quarter of a ring of events": the feed's settings; Meta: 0.05..3,600 s."""
    quoted(MarketDataConfig, "snapshot_every_s", "How often the whole market state is saved")
    quoted(MarketDataConfig, "snapshot_every_s", "(also after a quarter of a ring of events")
    process = source(MarketDataProcess)
    assert "snapshot_every_s=md.snapshot_every_s," in process
    assert "snapshot_every_events=max(1, cfg.ring.capacity // 4)," in process
    assert ">= 0.05" in refused(MarketDataConfig, snapshot_every_s=0.01)
    assert "<= 3600" in refused(MarketDataConfig, snapshot_every_s=3_601)


def test_marketdata_enabled_is_planned_only_when_on() -> None:
    """``marketdata.enabled``: "Run it (its consumer lines on the matchers' output rings exist
    only when it runs)": ``plan`` runs it only when on; off, a line fewer is enough."""
    quoted(MarketDataConfig, "enabled", "Run it (its consumer lines on the matchers' output")
    assert "marketdata" in [s.name for s in plan(RingexConfig())]
    off = RingexConfig(marketdata=MarketDataConfig(enabled=False), ring=RingConfig(max_consumers=2))
    assert "marketdata" not in [s.name for s in plan(off)]


def _settled(monkeypatch: pytest.MonkeyPatch, policy: GcConfig) -> list[object]:
    """What ``gc_policy.settle`` asks of the collector (it is not changed)."""
    calls: list[object] = []

    def collect(*generation: int) -> int:
        calls.append("collect")
        return 0

    monkeypatch.setattr(gc, "collect", collect)
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(gc, "set_threshold", lambda *t: calls.append(t))
    procs.common.gc_policy.settle(policy)
    return calls


def test_gc_freeze_and_thresholds_threshold2_0_is_never(monkeypatch: pytest.MonkeyPatch) -> None:
    """``gc.freeze``: "Once ready, collect and freeze"; ``threshold0``/``1``/``2``: CPython's,
    "0: a full collection ... never starts on its own": ``settle`` sets 0 as ``NEVER``."""
    quoted(GcConfig, "freeze", "Once ready, collect and freeze (``gc.freeze``)")
    quoted(GcConfig, "threshold0", "(CPython's threshold0)")
    quoted(GcConfig, "threshold2", "0: a full collection", "never starts on its own")
    never = procs.common.gc_policy.NEVER
    assert never == 2**31 - 1
    calls = _settled(monkeypatch, GcConfig(threshold0=800, threshold1=9))
    assert calls == ["collect", "freeze", (800, 9, never)]
    assert _settled(monkeypatch, GcConfig(freeze=False, threshold2=10)) == [
        "collect",
        (700, 10, 10),
    ]


def test_gc_policy_is_set_in_every_supervised_process() -> None:
    """``GcConfig``: "in every process, set once the process is ready": each module ``plan``
    starts (a primary's and a standby's) calls ``gc_policy.settle(... .gc)``."""
    assert "in every process, set once the process is ready" in " ".join(
        (GcConfig.__doc__ or "").split()
    )
    primary = RingexConfig(replication=ReplicationConfig(listen_port=9900))
    standby = RingexConfig(replication=ReplicationConfig(primary="127.0.0.1:9900"))
    modules = {s.module for s in [*plan(primary), *plan(standby)]}
    for module in sorted(modules):
        text = Path(f"{module.replace('.', '/')}.py").read_text()
        assert re.search(r"gc_policy\.settle\([\w.]*\.gc\)", text), module


def test_router_batch_is_the_batch_across_all_gateways() -> None:
    """``router_batch``: "the router takes from all gateways per batch": ``GatewayIntake._take``
    gives each input ring ``router_batch`` // rings (at least 1)."""
    quoted(RingexConfig, "router_batch", "the router takes from all gateways per batch")
    text = source(procs.router.intake.GatewayIntake._take)
    assert "quota = max(1, self.cfg.router_batch // max(1, len(self.inputs)))" in text
    assert "read_commands(consumer, quota)" in text


def test_instance_prefixes_shared_memory_and_var_dir_holds_the_journal(tmp_path: Path) -> None:
    """``instance``: "Prefix of every shared-memory name", ``var_dir``: "Where journals ... go":
    ``shm.region.segment_name`` and ``journal_dir``."""
    quoted(RingexConfig, "instance", "Prefix of every shared-memory name")
    quoted(RingexConfig, "var_dir", "Where journals, snapshots and benchmark results go")
    cfg = RingexConfig(instance="r116", var_dir=str(tmp_path))
    assert journal_dir(cfg) == tmp_path / "r116" / "journal"
    assert segment_name("r116", "router-in").startswith("/ringex.r116.")
    assert "matching regex" in refused(RingexConfig, instance="a/b")


def test_risk_max_commands_per_s_is_a_bucket_of_that_size_and_rate() -> None:
    """``risk.max_commands_per_s``: "Commands per account per second (a token bucket of this
    size and rate)": the sequencer's bucket per account holds and refills that many a second."""
    quoted(RiskConfig, "max_commands_per_s", "(a token bucket of this size and rate)")
    text = inspect.getsource(procs.core.sequencer)
    assert "self._buckets[account] = TokenBucket(self.cfg.risk.max_commands_per_s, now_ns)" in text
    bucket = TokenBucket(5, 0)
    assert [bucket.allow(0) for _ in range(6)] == [True] * 5 + [False]
    assert [bucket.allow(10**9) for _ in range(6)] == [True] * 5 + [False]
    assert bucket.allow(10 * 10**9, 6) is False  # never more than its size


def test_risk_fee_account_is_created_at_startup() -> None:
    """``risk.fee_account``: "the router creates it at startup": ``Accounts`` has it at once."""
    quoted(RiskConfig, "fee_account", "the router creates it at startup")
    accounts = Accounts(RingexConfig(risk=RiskConfig(fee_account=42)))
    assert accounts.create_account(42) == ResultCode.ACCOUNT_EXISTS
    assert "<= 9223372036854775807" in refused(RiskConfig, fee_account=2**63)
