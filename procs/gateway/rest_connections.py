"""The REST port's connections: how many it takes, in all and from one address, and a
head handed to aiohttp unfinished (review 38: one address held every descriptor the gateway
had, a FIX Logon then went unanswered; a head stalled past the fast lane held memory for an
hour). A mixin of ``RestApi`` (``rest.py``), which owns the state it names.

The limits hold whichever side serves the port: the fast lane (``FastLane``, given
``_admit``) or, with ``fast_lane = false``, aiohttp alone, each of whose connections passes
a ``Gate`` first. Both refuse alike: a 503 naming the limit, then the close.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections.abc import Callable
from typing import Any, cast

from aiohttp import web

from config.edges import GatewayConfig, RestConfig
from procs.common.open_files import connections_room
from procs.gateway import api_errors as codes
from procs.gateway.fast_request import error_bytes
from procs.gateway.rest_fast import FastLane
from procs.gateway.session_stores import fix_descriptors

log = logging.getLogger("ringex.rest")


class RestConnections:
    gw: GatewayConfig
    rest: RestConfig
    runner: web.AppRunner | None
    body_timeout_s: float
    lanes: set[FastLane]
    #: connections handed to aiohttp mid-head, until a request of theirs is served
    _heads: set[asyncio.Transport]
    #: the port's limit, within the descriptors (``_fit_connections``)
    max_connections: int

    def _fit_connections(self) -> None:
        """The port's connections and the FIX sessions' within the descriptors this process
        may open (its soft limit raised towards the hard one where they do not fit)."""
        fix = fix_descriptors(self.gw.max_sessions)  # with the spare stores (review 256)
        wanted, streams = self.rest.max_connections, self.rest.max_streams
        # a private stream holds two slot locks besides its socket (``stream_slots.py``):
        # n connections take n + 2 min(n, streams) descriptors (review 81: the locks of
        # max_connections streams reserved first left one connection where hundreds fit)
        room = connections_room(fix + wanted + 2 * min(streams, wanted), warn=False) - fix
        fitted = min(wanted, room - 2 * streams) if room >= 3 * streams else room // 3
        self.max_connections = max(1, fitted)
        if self.max_connections < wanted:  # in the operator's terms (review 82)
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            log.warning(
                "max_connections %d does not fit the open files (RLIMIT_NOFILE %s, hard %s) "
                "beside %d FIX sessions' and the private streams' slot locks: at most %d "
                "connections, the others answered 503", wanted, soft, hard,
                self.gw.max_sessions, self.max_connections,
            )  # fmt: skip

    def _gate(self) -> Gate:
        """A connection of the REST port without the fast lane (``fast_lane = false``)."""
        assert self.runner is not None and self.runner.server is not None  # started
        return Gate(self._admit, self.runner.server)

    def _unfinished(self, transport: asyncio.Transport, what: str) -> None:
        """A connection the fast lane handed to aiohttp in the middle of a head (past
        ``MAX_HEAD_BYTES``): aiohttp sets no time limit on a head, so unless a request of it
        reaches the middleware within the body timeout, it is answered 408 and closed, as
        the fast lane's own (review 38: 200 such heads held 397 MB for an hour)."""
        self._heads.add(transport)
        asyncio.get_running_loop().call_later(
            self.body_timeout_s, self._head_overdue, transport, what
        )

    def _head_overdue(self, transport: asyncio.Transport, what: str) -> None:
        if transport in self._heads:
            self._heads.discard(transport)
            if not transport.is_closing():
                transport.write(error_bytes(408, codes.TIMEOUT, what))
                transport.close()

    def _admit(self, remote: str | None) -> str | None:
        """Why a new connection from ``remote`` is refused (None: it is taken): past
        ``max_connections`` on the port (the fast lane's and those handed to aiohttp), or
        ``max_connections_per_address`` from one address. Each connection is a descriptor
        the FIX sessions' logons need too (review 38: one address held every one)."""
        server = self.runner.server if self.runner is not None else None
        handlers = server.connections if server is not None else []
        total, limit = len(self.lanes) + len(handlers), self.max_connections
        if total >= limit:
            return f"{total} connections open, this port's limit is {limit}: try again later"
        mine = sum(1 for lane in self.lanes if lane.remote == remote)
        mine += sum(1 for h in handlers if _remote(h) == remote)
        if mine >= self.rest.max_connections_per_address:
            return (
                f"{mine} connections from {remote} open, the limit is "
                f"{self.rest.max_connections_per_address} an address"
            )
        return None


class Gate(asyncio.Protocol):
    """A connection of the REST port served by aiohttp alone (``fast_lane = false``): taken
    within the port's limits (``admit``) and handed at once to an aiohttp ``RequestHandler``
    (``handler``, its factory), which serves it from then on; else answered a 503 naming the
    limit and closed, as the fast lane answers. The handler is what the limits count (aiohttp's
    ``Server.connections``, left at its ``connection_lost``): the gate keeps no state, and is
    done with the connection when ``connection_made`` returns."""

    def __init__(
        self, admit: Callable[[str | None], str | None], handler: Callable[[], asyncio.Protocol]
    ) -> None:
        self.admit = admit
        self.handler = handler

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        tcp = cast("asyncio.Transport", transport)  # uvloop's does not subclass it
        peer = tcp.get_extra_info("peername")
        why = self.admit(peer[0] if isinstance(peer, tuple) else None)
        if why is not None:
            tcp.write(error_bytes(503, codes.TOO_MANY_REQUESTS, why))
            tcp.close()
            return
        handler = self.handler()  # counted from here on, before anything is read
        tcp.set_protocol(handler)
        handler.connection_made(tcp)


def _remote(handler: Any) -> str | None:
    """The client address of a connection aiohttp serves (its ``RequestHandler``)."""
    transport = getattr(handler, "transport", None)
    peer = transport.get_extra_info("peername") if transport is not None else None
    return peer[0] if isinstance(peer, tuple) else None
