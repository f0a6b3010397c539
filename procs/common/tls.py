"""TLS for a port clients reach (a gateway's FIX and REST ports): the server's context, made
from the PEM files its config names, or None for plain TCP.

The standard library's ``ssl`` does it all; the event loop (uvloop's) wraps each accepted
connection, so the protocols above (the FIX session, the REST fast lane, aiohttp) see a
transport like any other. Clients' passwords and API secrets then never cross the network in
the clear, and a request signed by a client cannot be captured to be sent again.
"""

from __future__ import annotations

import ssl
from pathlib import Path


class TlsError(ValueError):
    """A TLS certificate or key that cannot be used; the message names the file."""


def server_context(cert: str, key: str) -> ssl.SSLContext | None:
    """The server side's context for ``cert`` (the certificate chain, PEM) and ``key``; None
    when neither is set. TLS 1.2 at least, the library's default ciphers."""
    if not cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    for path in (cert, key):
        if not Path(path).is_file():
            raise TlsError(f"TLS file {path} does not exist (or is not a file)")
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise TlsError(f"TLS certificate {cert} with key {key} does not load: {exc}") from None
    return context
