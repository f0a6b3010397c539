"""TLS: a gateway's FIX and REST ports (the server's context), and the replication link
(mutual: each side presents a certificate of the link's private CA), made from the PEM files
the config names, or None for plain TCP.

The standard library's ``ssl`` does it all; the event loop (uvloop's) wraps each accepted
connection, so the protocols above (the FIX session, the REST fast lane, aiohttp, the
replication wire) see a transport like any other. Clients' passwords and API secrets then
never cross the network in the clear, a request signed by a client cannot be captured to be
sent again, and no peer without the link's certificate is shipped the journal.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any

from config.schema import ReplicationConfig
from procs.common.quiet_log import quieten

#: What a peer of the replication port can make this side say: a few lines a minute
#: (``quiet_log``), or one reconnecting with a wrong certificate writes the log at its rate.
handshake_log = logging.getLogger("ringex.replica.handshakes")
quieten(handshake_log, burst=5)

#: How long a TLS handshake may take on the REST port (FIX's takes its logon timeout): a peer
#: that never completes one is not a connection yet, so no connection limit counts it.
HANDSHAKE_S = 10.0
#: How long a close waits for the peer's close_notify (asyncio's default: 30 s). Until it
#: comes the connection is not lost: a hung FIX client's cancel on disconnect and its slot
#: waited for it (review 99).
SHUTDOWN_S = 1.0


def tls_kwargs(context: ssl.SSLContext | None, handshake_s: float) -> dict[str, Any]:
    """``create_server``'s TLS arguments: none for plain TCP (asyncio refuses a handshake
    timeout without a context), else the context and the handshake's and close's times."""
    if context is None:
        return {}
    return {
        "ssl": context,
        "ssl_handshake_timeout": handshake_s,
        "ssl_shutdown_timeout": SHUTDOWN_S,
    }


class TlsError(ValueError):
    """A TLS certificate or key that cannot be used; the message names the file."""


def server_context(cert: str, key: str) -> ssl.SSLContext | None:
    """The server side's context for ``cert`` (the certificate chain, PEM) and ``key``; None
    when neither is set. TLS 1.2 at least, the library's default ciphers."""
    if not cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _files(cert, key)
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise TlsError(f"TLS certificate {cert} with key {key} does not load: {exc}") from None
    return context


def _files(*paths: str) -> None:
    for path in paths:
        if not Path(path).is_file():
            raise TlsError(f"TLS file {path} does not exist (or is not a file)")


def mutual_context(cert: str, key: str, ca: str, *, server: bool) -> ssl.SSLContext | None:
    """Mutual TLS between a replication source (``server``) and its standby: each presents
    ``cert``/``key`` and takes only a peer whose certificate ``ca`` signed. Neither checks
    the other's host name: the private CA is what says who may be on the link (the
    standby names its primary by whatever address reaches it). None when none is set."""
    if not cert:
        return None
    _files(cert, key, ca)
    purpose = ssl.Purpose.CLIENT_AUTH if server else ssl.Purpose.SERVER_AUTH
    context = ssl.create_default_context(purpose, cafile=ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise TlsError(f"TLS certificate {cert} with key {key} does not load: {exc}") from None
    if server:
        context.sslobject_class = _SaysRefusals
    return context


class _SaysRefusals(ssl.SSLObject):
    """The replication source's TLS connection: a handshake that fails is logged, with why.
    The event loop (uvloop's, and asyncio's) logs a failed server-side handshake only in
    debug mode, so a standby refused for its certificate showed nowhere on the primary, and
    on the standby only as a lost connection (review 99). The loop wraps each accepted
    connection with the context's ``sslobject_class``: this is the documented hook."""

    def do_handshake(self) -> None:
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise  # the handshake goes on when more bytes come
        except ssl.SSLError as exc:
            handshake_log.warning(
                "a peer failed the replication link's TLS handshake (%s): a standby without "
                "a certificate the link's tls_ca signed, or not a standby",
                exc.verify_message if isinstance(exc, ssl.SSLCertVerificationError) else exc,
            )  # fmt: skip
            raise


def replication_context(rep: ReplicationConfig, *, server: bool) -> ssl.SSLContext | None:
    """The replication link's side: the source's (``server``), or a standby's and the
    failover script's (a client of a source); None: plain TCP (no ``tls_*`` set)."""
    return mutual_context(rep.tls_cert, rep.tls_key, rep.tls_ca, server=server)
