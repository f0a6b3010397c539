"""The private stream: one user's execution reports and balance changes over a WebSocket.

    GET /api/v1/stream?apiKey=K&timestamp=T&recvWindow=W&signature=S   (WebSocket upgrade)

A browser cannot set headers on a WebSocket, so the credentials travel in the query string,
signed like any request with the path ``/api/v1/stream``, an empty query and an empty body
(``signing.payload(T, W, "GET", "/api/v1/stream", "", b"")``); a captured URL cannot be
used again (the signature is remembered until its window passes).

Messages are ``{"event": name, "seq": n, "data": {...}}`` with ``seq`` counting from 1 on
each connection: first a ``snapshot`` (balances and open orders), then ``executionReport``
and ``balance`` events as they happen; and, after ``HEARTBEAT_S`` (5 s) with nothing else, a
``{"event": "heartbeat", "data": {"time": ms}}`` with no ``seq``, so that a client tells a
quiet stream from a half-open one (a browser's page cannot send a ping). Events that arrive
while the snapshot is being made wait behind it, so the client applies them in order (more
than ``queue_limit`` of them cut the stream as below: they are held in memory). A client
that falls ``queue_limit`` messages behind is cut off (close code 1008, the reason naming
the numbers) rather than slow the gateway: it reconnects and starts again from a snapshot. A
stream lives no longer than its key and its user: revoking the key (here, through another
gateway or by an operator) or removing the user closes it with 1008 within a second or two.
A stream being closed sends nothing more; a client that has not taken its close frame within
``CLOSE_GRACE_S`` (its socket takes nothing) is dropped, so it never holds its slot, nor a
gateway's stop, longer. One key holds at most ``max_per_key`` streams, and each upgrade
spends one of the key's requests (its rate limit, as any signed request).

An upgrade refused here is an HTTP error (``{"code", "msg"}``, 401, 429, 503...), which a
browser's WebSocket cannot read: with ``closeOnRefusal=true`` in the query it is taken and
closed at once instead, code 1008 (policy) for a refusal of the credentials, 1013 (try again
later) for a limit, the reason ``"<code> <msg>"`` (at most 123 bytes), so that a page can say
why. The parameter is not signed: it changes only how a refusal is told.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from aiohttp import WSCloseCode, WSMsgType, web

from procs.common.task_end import wait_ended
from procs.common.token_bucket import TokenBucket
from procs.gateway.api_errors import ApiError
from procs.gateway.rest_body import checked_params
from procs.gateway.rest_order_state import balance_json
from procs.gateway.rest_params import STREAM_PARAMS
from procs.gateway.signing import AuthError
from procs.gateway.stream_meter import meter
from procs.gateway.stream_slots import StreamSlot, StreamSlots
from procs.gateway.stream_subscriber import CLOSE_GRACE_S, Subscriber

if TYPE_CHECKING:
    from procs.common.apikeys import ApiKey
    from procs.gateway.rest import RestApi

log = logging.getLogger("ringex.rest.stream")
PATH = "/api/v1/stream"
#: What a refusal calls the credentials: the stream takes them in its query (a browser sets
#: no header on a WebSocket)
QUERY_NAMES = ("query parameter signature", "query parameter timestamp", "recvWindow")
#: Frames a second a stream's client may send, pings and pongs included (it has nothing to
#: say: a few keep-alives, or a burst of this many at once); past it, the stream closes (1008)
#: naming the limit. Each frame costs the loop every FIX and REST client shares about 2 us
#: (review 38), a ping its pong besides: so pings are answered here (``autoping=False``),
#: counted, rather than inside aiohttp's receive, where a client could have them answered
#: without a bound.
MAX_CLIENT_FRAMES_PER_S = 5_000
TOO_MANY_FRAMES = (
    b"more than %d frames a second from the client (pings included): the limit is %d/s"
    % (MAX_CLIENT_FRAMES_PER_S, MAX_CLIENT_FRAMES_PER_S)
)


#: How long a refusal told as a close waits for the client's close frame (it holds no slot).
REFUSAL_CLOSE_S = 2.0
#: Seconds between two prunes of the slot files no stream holds (``StreamSlots.prune``).
PRUNE_S = 60.0


def asks_close_on_refusal(request: object) -> TypeGuard[web.Request]:
    """Whether ``request`` is an upgrade of this path asking a refusal as a close."""
    return (
        isinstance(request, web.Request)
        and request.path == PATH
        and request.query.get("closeOnRefusal") == "true"
    )


async def refuse_in_band(request: web.Request, refusal: ApiError) -> web.StreamResponse:
    """``refusal`` told as the close of an upgrade taken for that alone (``closeOnRefusal``);
    as the HTTP error still where the request is no WebSocket upgrade."""
    ws = web.WebSocketResponse(timeout=REFUSAL_CLOSE_S, max_msg_size=4096, autoping=False)
    if not ws.can_prepare(request).ok:
        raise refusal
    code = (
        WSCloseCode.TRY_AGAIN_LATER
        if refusal.status in (429, 503)
        else WSCloseCode.POLICY_VIOLATION
    )
    reason = f"{refusal.code} {refusal.msg}".encode()[:123].decode(errors="ignore")
    await ws.prepare(request)
    await ws.close(code=code, message=reason.encode())
    return ws


def _too_many(who: str, count: int, limit: int) -> ApiError:
    return ApiError(
        429,
        -1003,  # TOO_MANY_REQUESTS
        f"{who} holds {count} private streams, the limit is {limit}",
        retry_after_s=1.0,
    )


def handshake_fault(request: web.Request) -> ApiError | None:
    """Why ``request`` is no WebSocket handshake (RFC 6455 4.2.1) aiohttp takes, or None:
    426 naming version 13 for another version given (4.2.2 says which), else a 400 naming
    what it sent. Judged before the signature is used up: a URL refused by the handshake may be sent
    again (review 300: it was 'replayed', and every refusal read 'Bad Request')."""
    if web.WebSocketResponse().can_prepare(request).ok:
        return None
    h = request.headers
    version = h.get("Sec-WebSocket-Version", "13")
    if version != "13":
        msg = f"Sec-WebSocket-Version {version[:16]!r} is not supported: 13 is"
        return ApiError(426, -1000, msg, headers={"Sec-WebSocket-Version": "13"})
    sent = ", ".join(
        f"{name} {h[name][:32]!r}" if name in h else f"no {name}"
        for name in ("Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version")
    )
    return ApiError(
        400,
        -1000,
        f"not a WebSocket handshake ({sent}): a stream is opened by an upgrade with Upgrade "
        "websocket, Connection Upgrade, a Sec-WebSocket-Key of 16 bytes in base64 and "
        "Sec-WebSocket-Version 13",
    )


class PrivateStreams:
    def __init__(
        self,
        api: RestApi,
        max_streams: int,
        queue_limit: int,
        max_per_key: int = 5,
        max_per_account: int = 10,
        slots_dir: Path | None = None,
    ) -> None:
        self.api = api
        #: the per-key and per-account limits across the instance's gateways (review 36)
        self.slots = (
            None if slots_dir is None else StreamSlots(slots_dir, max_per_key, max_per_account)
        )
        self._prune_at = time.monotonic() + PRUNE_S  # the slot files' next prune
        self.max_streams = max_streams
        self.max_per_key = max_per_key
        self.max_per_account = max_per_account
        self.queue_limit = queue_limit
        self.close_grace_s = CLOSE_GRACE_S
        self.by_account: dict[int, set[Subscriber]] = {}
        self.count = 0
        #: ``close`` began: no stream is taken any more (review 44: one upgraded during the
        #: close's wait was never closed, and held the gateway's stop)
        self.closing = False

    def sweep(self) -> None:
        """Close the streams whose key or user is gone (called once a second, the key file
        looked at first: another process's revoke closes a stream within that second);
        once a minute, remove the slot files no stream holds (``StreamSlots.prune``)."""
        if self.by_account:
            self.api.keys.refresh()
        get, holder_unchanged = self.api.keys.get, self.api.holder_unchanged
        now = time.monotonic()
        if self.slots is not None and now >= self._prune_at:
            self._prune_at = now + PRUNE_S
            self.slots.prune()
        for subs in self.by_account.values():
            for sub in subs:
                key = get(sub.key)
                if key is None:
                    sub.close(b"API key revoked")
                elif not holder_unchanged(key):
                    sub.close(b"the key's user was removed or changed")
                else:
                    sub.beat(now)  # an idle stream's heartbeat

    def deliver(self, events: Sequence[tuple[int, str, dict[str, Any]]]) -> None:
        by_account = self.by_account
        for account, name, data in events:
            subscribers = by_account.get(account)
            if subscribers:
                for sub in subscribers:
                    sub.push(name, data)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        key, slot = self._admit(request)  # (refused as a close: the middleware, refuse_in_band)
        try:
            return await self._serve(request, key)
        finally:  # the slots across the gateways, whatever ended the stream
            if slot is not None:
                slot.release()

    async def _serve(self, request: web.Request, key: ApiKey) -> web.StreamResponse:
        api = self.api
        # pings answered below, counted with the other frames (``MAX_CLIENT_FRAMES_PER_S``)
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=4096, autoping=False)
        sub = Subscriber(
            ws, key.key, key.account, self.queue_limit, request.transport, self.close_grace_s
        )
        # counted before the handshake's await: upgrades at the same moment see each other
        self.count += 1
        self.by_account.setdefault(key.account, set()).add(sub)
        try:
            api.core.touch(key.account, key.session, time.monotonic())
            api.core.streaming.add(key.account)
            frames = TokenBucket(MAX_CLIENT_FRAMES_PER_S, time.monotonic_ns())
            await ws.prepare(request)
            meter(request, frames, lambda: sub.close(TOO_MANY_FRAMES))  # continuations too
            sub.start()
            await self._begin(sub)
            async for msg in ws:  # the client has nothing to say; keep the lease alive
                if not frames.allow(time.monotonic_ns()):  # each costs the shared loop ~2 us
                    sub.close(TOO_MANY_FRAMES)
                    break
                if msg.type is WSMsgType.PING:  # as aiohttp's autoping would
                    # a stream closing (its close frame sent) or gone takes no pong: the
                    # next receive says so and ends the loop
                    with contextlib.suppress(ConnectionError):
                        await ws.pong(msg.data)
                api.core.touch(key.account, key.session, time.monotonic())
        finally:
            await self._end(sub)
        return ws

    def _admit(self, request: web.Request) -> tuple[ApiKey, StreamSlot | None]:
        """The key of a stream this gateway takes and the slot it holds at the instance's
        gateways (None: none kept), else the ``ApiError`` that refuses it."""
        api = self.api
        if self.closing:
            raise ApiError(503, -1001, "the gateway is stopping: no new private streams")
        # as every endpoint's: a name it does not take, or one sent twice, is refused, never
        # passed over (a misspelt recvWindow was told only "signature does not match"; review 91)
        q = checked_params(list(request.query.items()), STREAM_PARAMS)
        key = api.keys.find(q.get("apiKey", ""))
        if key is None:
            raise ApiError(401, -2014, "unknown or missing API key (apiKey)")
        try:
            seen = api.verifier.check(
                key.secret, q.get("timestamp"), q.get("recvWindow"), q.get("signature"),
                "GET", PATH, "", b"", time.time_ns() // 1_000_000,
                time.monotonic_ns() // 1_000_000, QUERY_NAMES,
            )  # fmt: skip
        except AuthError as exc:
            raise ApiError(401, exc.code, exc.msg) from None
        api.charge(key)  # an upgrade costs a snapshot: it is a request of the key like any
        api.require_user(key)
        api.require_scope(key, "read")
        if self.count >= self.max_streams:
            raise ApiError(
                503, -1001, f"{self.count} private streams is this gateway's limit, try another"
            )
        mine = self.by_account.get(key.account, ())
        held = sum(1 for sub in mine if sub.key == key.key)
        if held >= self.max_per_key or len(mine) >= self.max_per_account:
            who, count, limit = (
                ("this API key", held, self.max_per_key)
                if held >= self.max_per_key
                else ("this account (all its keys)", len(mine), self.max_per_account)
            )
            raise _too_many(who, count, limit)
        if (refused := handshake_fault(request)) is not None:  # (the limits' refusals first)
            raise refused
        # its other gateways' streams too
        slot = None if self.slots is None else self.slots.take(key.key, key.account)
        if slot == "key":
            limit = self.max_per_key
            raise _too_many("this API key (at the instance's gateways)", limit, limit)
        if slot == "account":
            limit = self.max_per_account
            raise _too_many("this account (all its keys, at the instance's gateways)", limit, limit)
        assert slot is None or isinstance(slot, StreamSlot)
        api.verifier.remember(seen)  # only a stream taken (reviews 44, 267: one refused for a
        return key, slot  # limit was "replayed" when retried)

    async def _begin(self, sub: Subscriber) -> None:
        """The snapshot, then what was held behind it; or, when none can be made, the close
        (upgraded already: a close frame, not an HTTP error)."""
        try:
            snapshot = await self._snapshot(sub, sub.account)
        except ApiError as exc:
            why = f"no snapshot: {exc.msg}"[:120].encode(errors="replace")
            sub.close(why, WSCloseCode.TRY_AGAIN_LATER)
            return
        sub.begin(snapshot)

    async def _end(self, sub: Subscriber) -> None:
        """The handler's end, however it came: the sender stopped (a close waits for the
        client at most the grace), the slot given back."""
        sender = sub.sender
        if sender is not None:
            if not sub.cut:  # the client left: nothing more to send
                sender.cancel()
            # a client gone while the sender wrote its backlog ends it with a connection
            # error: the slot is given back all the same
            await wait_ended(sender, ConnectionError)
        sub.finish()
        self.count -= 1
        subs = self.by_account.get(sub.account)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self.by_account[sub.account]
                self.api.core.streaming.discard(sub.account)

    async def _snapshot(self, sub: Subscriber, account: int) -> dict[str, Any]:
        """Balances and open orders as of one instant, and ``sub.held`` cut to what came
        after it: once every wait is over (the router's balances, the database's orders)
        the snapshot is made from the live state without another await, and that state
        holds every event delivered so far, so a held event it shows would count twice."""
        api = self.api
        balances = await api.balances(account)
        rows = await api.open_order_rows(account, api.cfg.symbols, best_effort=True)
        current = api.core.balances.get(account, {})
        if current:  # every balance event delivered so far is in it
            balances = [balance_json(api.core.assets, asset, current) for asset in sorted(current)]
            sub.held = [(event, data) for event, data in sub.held if event != "balance"]
        orders = api.open_orders_over(rows, account, api.cfg.symbols)
        # a report of an order the live state knows ended (its fill credited above) counts
        # twice as well (review 202); one of an order it does not know stays: a database
        # read cut short may have left that order out
        core = api.core
        shown = {order["orderId"] for order in orders}
        sub.held = [
            (event, data)
            for event, data in sub.held
            if event != "executionReport"
            or not (
                (oid := data["orderId"]) in shown
                or (oid not in core.live and core.known(oid) is not None)
            )
        ]
        return {"balances": balances, "openOrders": orders}

    async def close(self) -> None:
        """The gateway stops: every stream is closed (1001), at once; those whose client
        does not take the close frame are dropped after the grace."""
        self.closing = True
        subs = [sub for subs in self.by_account.values() for sub in subs]
        for sub in subs:
            sub.close(b"gateway shutting down", WSCloseCode.GOING_AWAY)
        if subs:
            await asyncio.wait([sub.ended for sub in subs], timeout=self.close_grace_s + 1.0)
