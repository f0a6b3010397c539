"""The config sections of the processes that serve clients: a gateway (FIX, and its HTTP
API) and the market-data feed. ``config.schema`` joins them into a ``RingexConfig``."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from config.fields import Host, Name, Port, at_most, tls_pair


class RestConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A gateway's HTTP API: ``/api/v1/...`` (REST) and ``/api/v1/stream`` (private WebSocket)."""

    host: Host = "127.0.0.1"
    port: Port = 8080
    #: Largest request body; a bigger one is refused with 413.
    max_body_bytes: Annotated[int, msgspec.Meta(ge=256, le=1 << 20)] = 16_384
    #: Requests per second (and the burst) per API key and per client address: then 429.
    key_rate_per_s: Annotated[float, msgspec.Meta(gt=0)] = 2_000.0
    key_burst: Annotated[int, msgspec.Meta(ge=1)] = 4_000
    ip_rate_per_s: Annotated[float, msgspec.Meta(gt=0)] = 5_000.0
    ip_burst: Annotated[int, msgspec.Meta(ge=1)] = 10_000
    #: Password logins (key creation) per second per client address: slows a guesser.
    login_rate_per_s: Annotated[float, msgspec.Meta(gt=0)] = 2.0
    login_burst: Annotated[int, msgspec.Meta(ge=1)] = 10
    #: The receive window of a signed request that names none, and the longest one may ask
    #: for (ms).
    recv_window_ms: Annotated[int, msgspec.Meta(ge=100, le=60_000)] = 5_000
    max_recv_window_ms: Annotated[int, msgspec.Meta(ge=100, le=60_000)] = 60_000
    #: API keys per user.
    max_keys_per_user: Annotated[int, msgspec.Meta(ge=1, le=1_000)] = 20
    #: Longest an order request waits for the exchange's answer before 504 (the order may
    #: still execute: its status says).
    order_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    #: Private-stream connections of this gateway.
    max_streams: Annotated[int, msgspec.Meta(ge=1)] = 1_000
    #: Private streams one API key, and one account through all its keys, may hold at once
    #: (one user cannot take every slot: keys per user alone would allow 20 x 5).
    max_streams_per_key: Annotated[int, msgspec.Meta(ge=1)] = 5
    max_streams_per_account: Annotated[int, msgspec.Meta(ge=1)] = 10
    #: Messages a slow private-stream client may have queued before it is cut.
    stream_queue: Annotated[int, msgspec.Meta(ge=16)] = 10_000
    #: Origins a browser page may call from (CORS); "*" any (requests are signed, no cookies).
    cors_origins: list[str] = msgspec.field(default_factory=lambda: ["*"])
    #: Connections the REST port holds, in all and from one address; past either, a 503
    #: naming the limit and a close (each is a file descriptor the FIX sessions need too).
    #: Counted whichever side serves the port: the fast lane (``fast_lane``, the default), or
    #: aiohttp alone with ``fast_lane = false``.
    max_connections: Annotated[int, msgspec.Meta(ge=1)] = 2_000
    max_connections_per_address: Annotated[int, msgspec.Meta(ge=1)] = 500
    #: Serve POST, DELETE and GET /api/v1/order (and POST and DELETE /api/v1/batchOrders) on
    #: httptools, the rest on aiohttp (about a fifth less gateway CPU per order: 150 -> 117 us
    #: measured); false: every request on aiohttp.
    fast_lane: bool = True
    #: HTTPS: the certificate chain and its key, PEM files (both, or neither: plain HTTP).
    tls_cert: str = ""
    tls_key: str = ""

    def __post_init__(self) -> None:
        what = "gateways.rest"
        low, high = self.recv_window_ms, self.max_recv_window_ms
        at_most(what, "recv_window_ms", low, "max_recv_window_ms", high)
        tls_pair(what, self.tls_cert, self.tls_key)


#: The directories under ``var/<instance>/gateway/`` the gateways share (the sessions logged
#: on, the private streams' slots), beside each gateway's own, named after it (review 208).
SHARED_GATEWAY_DIRS = frozenset(("logged-on", "streams"))


class GatewayConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One FIX gateway process: its id is the ``gateway`` field of every record it sends."""

    name: Name
    id: Annotated[int, msgspec.Meta(ge=1, le=65_535)]
    host: Host = "127.0.0.1"
    #: FIX acceptor port; gateways may share one with reuse_port.
    port: Port = 9878
    reuse_port: bool = False
    #: FIX over TLS on ``port``: the certificate chain and its key, PEM files (both, or
    #: neither: plain TCP).
    tls_cert: str = ""
    tls_key: str = ""
    #: The exchange's SenderCompID on outbound messages (the client's TargetCompID): 1..32
    #: printable ASCII characters, no space (a SOH would cut every header it is sent in).
    comp_id: Annotated[str, msgspec.Meta(pattern=r"^[!-~]{1,32}\Z")] = "RINGEX"
    #: Heartbeat intervals a client may ask for (HeartBtInt, seconds).
    min_heartbeat_s: Annotated[int, msgspec.Meta(ge=1)] = 1
    max_heartbeat_s: Annotated[int, msgspec.Meta(ge=1)] = 300
    #: SendingTime further than this from our clock: Reject, then Logout.
    sending_time_tolerance_s: Annotated[int, msgspec.Meta(ge=1)] = 120
    #: Application messages per session per second; more are rejected.
    max_messages_per_s: Annotated[int, msgspec.Meta(ge=1)] = 10_000
    #: Every message a logged-on session sends per second (Heartbeats, rejected and garbled
    #: ones counted): past it, a Logout naming the limit, and the connection closes. 0:
    #: twice ``max_messages_per_s``.
    max_inbound_per_s: Annotated[int, msgspec.Meta(ge=0)] = 0
    max_sessions: Annotated[int, msgspec.Meta(ge=1)] = 1_000
    #: Connections from one client address that have not logged on yet (0: half of
    #: ``max_sessions``, one at least); past it, a connection is closed at once: a peer
    #: holding idle connections cannot take every slot from the users (review 93).
    max_pending_per_address: Annotated[int, msgspec.Meta(ge=0)] = 0
    #: Wrong passwords per second per user (CompID, the REST login's username), counted
    #: over FIX Logons and REST logins together, from any address (and the burst): then the
    #: user's logons are refused (a Logout naming the limit; REST: 429) until a token comes
    #: back, so guesses spread over many addresses and both doors stay slow.
    failed_login_rate_per_s: Annotated[float, msgspec.Meta(gt=0)] = 0.1
    failed_login_burst: Annotated[int, msgspec.Meta(ge=1)] = 10
    #: Failed FIX Logons per second from one client address, whatever CompID they name (and
    #: the burst): past it, a Logout naming the limit before any password check. A peer that
    #: invents a CompID at each Logon made the gateway run a scrypt each (review 93).
    address_failed_logon_rate_per_s: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    address_failed_logon_burst: Annotated[int, msgspec.Meta(ge=1)] = 20
    max_message_bytes: Annotated[int, msgspec.Meta(ge=256, le=1 << 20)] = 8_192
    #: Seconds a connection may take to log on before it is closed.
    logon_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    #: Cancel a session's orders when it disconnects (a session may override it).
    cancel_on_disconnect: bool = False
    #: Per-session reset of sequence numbers at each logon (test rigs).
    reset_on_logon: bool = False
    #: After a client's request or the last event, how long the poll loop keeps looking at
    #: the rings before it naps: an answer within it goes out at once, a later one wakes the
    #: loop through the ring (~30 us here; 1 ms, uvloop's tick, with park_after_ms = 0).
    #: Longer buys latency with CPU the router and matchers may need (wait.strategy =
    #: "busy-spin" never naps).
    idle_spin_us: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 100
    #: A nap of the poll loop ends when an input ring has a record (its producer writes a
    #: FIFO the loop watches), a client sends something, or a timer: 1 ms at first, and after
    #: this many ms with no request and no event 1 s (~0% of a core instead of the 7% of
    #: waking every millisecond). 0: no watched rings, the 1 ms timer alone (an answer that
    #: comes after the spin window then waits for the timer, ~1 ms).
    park_after_ms: Annotated[int, msgspec.Meta(ge=0, le=3_600_000)] = 100
    #: The order log (what FIX order entry knows, kept across restarts) is rewritten as a
    #: snapshot of the live orders once it grows past this many MiB and to twice what the
    #: last rewrite wrote (so many live orders are not rewritten every few appends). A start
    #: reads it whole: about 0.1 s a MiB here (a failover's gateway start), against one
    #: compaction per MiB of about 3.5k orders (a write and an fsync of the live orders only).
    order_log_compact_mb: Annotated[int, msgspec.Meta(ge=1, le=1_024)] = 4
    #: A stop (SIGTERM/SIGINT) first closes intake: no new connections, new orders and
    #: replaces refused (FIX OrdRejReason 2, "exchange closed"; REST 503), cancels still
    #: taken; the reports of what is in flight go out. After every request is answered, or
    #: this many seconds, sessions are logged out and the process exits. A second signal
    #: stops at once.
    stop_grace_s: Annotated[float, msgspec.Meta(ge=0, le=15)] = 3.0
    #: The REST + private WebSocket API this gateway also serves (absent: none).
    rest: RestConfig | None = None

    def __post_init__(self) -> None:
        low, high = self.min_heartbeat_s, self.max_heartbeat_s
        at_most(f"gateway {self.name!r}", "min_heartbeat_s", low, "max_heartbeat_s", high)
        tls_pair(f"gateway {self.name!r}", self.tls_cert, self.tls_key)
        if self.name in SHARED_GATEWAY_DIRS:  # its own files would land in the shared ones
            raise ValueError(
                f"gateway name {self.name!r} is taken: var/<instance>/gateway/{self.name} "
                f"holds what the gateways share (names not allowed: {sorted(SHARED_GATEWAY_DIRS)})"
            )


#: What a client meets at a gateway's FIX port, and at its REST port: gateways that share a
#: port (``reuse_port``: the kernel hands each connection to either) must agree on it, or a
#: client's TLS handshake, its message or body size, its heartbeat are taken or refused at
#: random (review 229). TLS is compared on or off (two processes may hold two copies).
FIX_FACE = (
    "tls", "max_message_bytes", "min_heartbeat_s", "max_heartbeat_s",
    "sending_time_tolerance_s", "max_messages_per_s", "max_inbound_per_s", "logon_timeout_s",
    "cancel_on_disconnect", "reset_on_logon",
)  # fmt: skip
REST_FACE = (
    "tls", "max_body_bytes", "key_rate_per_s", "key_burst", "ip_rate_per_s", "ip_burst",
    "login_rate_per_s", "login_burst", "recv_window_ms", "max_recv_window_ms",
    "max_keys_per_user", "order_timeout_s", "max_streams_per_key", "max_streams_per_account",
    "cors_origins",
)  # fmt: skip


Face = tuple[tuple[str, object], ...]


def face(section: GatewayConfig | RestConfig) -> Face:
    """``FIX_FACE`` of a gateway, or ``REST_FACE`` of its REST API, as (key, value) pairs."""
    keys = FIX_FACE if isinstance(section, GatewayConfig) else REST_FACE
    return tuple(
        (key, bool(section.tls_cert) if key == "tls" else getattr(section, key)) for key in keys
    )


def check_alike(who: str, mine: Face, other: str, theirs: Face) -> None:
    """Two listeners sharing a port: a ValueError naming the first key they differ on."""
    for (key, a), (_, b) in zip(mine, theirs, strict=True):
        if a != b:
            raise ValueError(
                f"{who} and {other} share a port with reuse_port but differ in {key} ({a!r} "
                f"and {b!r}): the kernel hands each client connection to either, so it "
                "would meet one or the other at random; set it alike"
            )


class MarketDataConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The market-data process: WebSocket feed and the browser page."""

    #: Run it (its consumer lines on the matchers' output rings exist only when it runs).
    enabled: bool = True
    host: Host = "127.0.0.1"
    port: Port = 8765
    max_connections: Annotated[int, msgspec.Meta(ge=1)] = 5_000
    #: Connections from one address (0: a quarter of ``max_connections``, two at least);
    #: past it, a 503 naming it.
    max_connections_per_address: Annotated[int, msgspec.Meta(ge=0)] = 0
    max_subscriptions: Annotated[int, msgspec.Meta(ge=1)] = 200
    max_message_bytes: Annotated[int, msgspec.Meta(ge=256)] = 65_536
    #: Messages queued per client before slow-consumer handling starts.
    client_queue: Annotated[int, msgspec.Meta(ge=16)] = 1_000
    #: Levels per side in a depth snapshot.
    depth_levels: Annotated[int, msgspec.Meta(ge=1, le=5_000)] = 100
    #: How often the whole market state is saved with the ring positions it covers (also
    #: after a quarter of a ring of events, and at the stop): what a restart resumes from.
    snapshot_every_s: Annotated[float, msgspec.Meta(ge=0.05, le=3_600)] = 1.0
    #: Bytes buffered per socket in user space before a client's messages queue in its
    #: outbox (where slow-consumer handling starts).
    write_limit_bytes: Annotated[int, msgspec.Meta(ge=1_024, le=1 << 26)] = 1 << 16
    #: The kernel's SO_SNDBUF per connection; 0 keeps the OS's autotuned default.
    send_buffer_bytes: Annotated[int, msgspec.Meta(ge=0, le=1 << 28)] = 0
    #: "deflate" accepts permessage-deflate (each message then compressed per client).
    compression: Literal["none", "deflate"] = "none"
