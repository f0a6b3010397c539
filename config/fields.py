"""The value types config sections share (ranges, names) and the check that a minimum is
not above its maximum."""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Annotated

import msgspec

Positive = Annotated[int, msgspec.Meta(ge=1)]
#: A count of price or size units a record carries as an int64 (a symbol's tick, lot and
#: size limits): a larger one loaded, and its router could not journal its rules.
Units = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]
BasisPoints = Annotated[int, msgspec.Meta(ge=0, le=10_000)]
Name = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,24}\Z")]


AssetName = Annotated[str, msgspec.Meta(pattern=r"^[A-Z0-9]{1,12}\Z")]
FeeBps = Annotated[int, msgspec.Meta(ge=0, le=1_000)]
Port = Annotated[int, msgspec.Meta(ge=0, le=65_535)]  # 0: any free port (tests)
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
#: An address to listen on: "" (every one), an IP literal (an IPv6 one may name its zone, an
#: interface: "br-lan", "eth0.100"), or a host name of RFC 1123 labels, which may end in the
#: root's dot, 253 characters at most (review 142: a NUL, a path or 5,000 characters loaded,
#: and the bind failed at start); ``host_refused`` checks what a pattern cannot.
_NAME = rf"{_LABEL}(?:\.{_LABEL})*\.?"
HOST_PATTERN = rf"^(?:[0-9A-Fa-f:.]+(?:%[A-Za-z0-9_.-]{{1,16}})?|{_NAME})?\Z"
Host = Annotated[str, msgspec.Meta(max_length=253, pattern=HOST_PATTERN)]
_NOT_HOST = "is not an IP literal or a host name"


def host_refused(host: str, *, listening: bool = True) -> str | None:
    """Why no listener (``listening``) or connection can use ``host`` (None: it can), past
    what ``Host``'s pattern checks (review 263): one with a colon is an IPv6 literal (its
    zone aside) or nothing, one without is a host name (an IPv4 literal is one too: "a..b",
    "1.2.3.4%eth0" are neither, and no dot follows an IPv4 address: review 269), and an
    IPv4-mapped one binds nowhere (asyncio's and uvloop's listeners set IPV6_V6ONLY; a
    connection to one works)."""
    if len(host) > 253 or not re.fullmatch(HOST_PATTERN, host):
        return _NOT_HOST
    if ":" not in host:
        if host and not re.fullmatch(_NAME, host):
            return _NOT_HOST
        if host.endswith(".") and (top := host.rstrip(".").rsplit(".", 1)[-1]).isdigit():
            # no top label is all digits (RFC 3696): an IPv4 literal, which no dot follows
            try:  # as the resolver reads one ("127.1" too: ``listen_address`` takes it)
                socket.inet_aton(host.rstrip("."))
            except OSError:  # (a reread of review 269: "ab.12." was called an address)
                return f"{_NOT_HOST} (its top label {top} is all digits, RFC 3696)"
            return f"is an IPv4 address with a trailing dot: write {host.rstrip('.')}"
        return None
    try:
        address = ipaddress.IPv6Address(host.split("%", 1)[0])
    except ValueError:
        return f"{_NOT_HOST} (a colon is in no host name)"
    if listening and address.ipv4_mapped is not None:
        return f"is IPv4-mapped, which binds nowhere: use {address.ipv4_mapped}"
    return None


#: The listen hosts that are no IP literal but name one: every address, and localhost.
_NAMED_ADDRESSES = {"": "0.0.0.0", "localhost": "127.0.0.1"}


def listen_address(host: str) -> str:
    """``host`` as one spelling of the address a listener binds: lower case, ``localhost``
    as 127.0.0.1, an IP literal in its canonical form (``127.1`` is 127.0.0.1 to the
    kernel, ``0:0::0`` is ``::``: review 142), the empty host as 0.0.0.0. A name other than
    localhost stays as written (resolving it here would make the config's meaning depend
    on the DNS of the moment)."""
    host = host.lower().rstrip(".")  # "localhost." is localhost (the root's dot)
    if host in _NAMED_ADDRESSES:
        return _NAMED_ADDRESSES[host]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:  # the shorthand inet_aton takes, as the bind does: 127.1, 10.1.2, 0x7f.1
        return socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        return host


def at_most(where: str, low_name: str, low: float, high_name: str, high: float) -> None:
    if low > high:
        raise ValueError(f"{where}: {low_name} = {low} is above {high_name} = {high}")


def tls_pair(where: str, cert: str, key: str) -> None:
    """A TLS certificate and its key: both files or neither (``where`` names the table)."""
    if bool(cert) != bool(key):
        given, missing = ("tls_cert", "tls_key") if cert else ("tls_key", "tls_cert")
        raise ValueError(f"{where}: {given} is set and {missing} is not: give both, or neither")


def host_and_port(address: str) -> tuple[str, str]:
    """``"host:port"`` split in two, an IPv6 host's brackets dropped (``"[::1]:9900"``, as
    RFC 3986 and ``ringex status`` write it); the port as written, to be checked. An IPv6
    host without brackets gives no host (``"::1"`` is not host ``:`` and port 1: review 57),
    so the caller refuses it."""
    host, _, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        return host[1:-1], port
    return ("" if ":" in host else host), port


def address_refused(host: str, port: str) -> str:
    """Why ``host``:``port`` (as ``host_and_port`` splits an address) is no address to
    connect to, said after the address ("" where it is one)."""
    if not (host and port.isascii() and port.isdigit()):  # not "²", nor "٩٩" (review 134)
        return " is not host:port (an IPv6 host in brackets: [::1]:9900)"
    if why := host_refused(host, listening=False):  # (review 265: its reason was dropped)
        return f": host {host!r} {why}"
    if not 1 <= int(port) <= 65_535:
        return f": port {int(port)} is not in 1..65535"
    return ""
