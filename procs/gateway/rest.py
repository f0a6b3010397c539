"""The gateway's HTTP API: REST under ``/api/v1/`` and the private stream, on aiohttp.

aiohttp (a well-kept async HTTP server and client; it runs on the gateway's uvloop loop
beside the FIX acceptor) does the HTTP and WebSocket protocol work; this module is the thin
edge around ``RestOrders`` (orders, balances, private events), ``History`` (PostgreSQL) and
the market-data process (the book and ticker, proxied). Every request:

1. the client address's rate limit (429 with ``Retry-After``), the body size (413) and the
   time it takes to arrive (408);
2. for a private endpoint: the API key, its rate limit, the HMAC signature over the request
   with its timestamp and receive window, refused when replayed (``signing.py``), the scope;
3. the parameters (query string, form or JSON body), checked with messages that name the
   value and the rule (``rest_params.py``);
4. an order goes into the gateway's command ring like a FIX order (the router's risk checks,
   the matcher), and the answer waits for the exchange's events: accepted with its fills, or
   the reason it was refused.

Errors are ``{"code": ..., "msg": ...}``; prices and sizes are decimal strings both ways.
The routes and their parameters are documented in ``openapi.py`` (``GET /openapi.json``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, TypeVar

import msgspec
from aiohttp import ClientSession, ClientTimeout, web

from config.edges import GatewayConfig, RestConfig
from config.schema import RingexConfig
from procs.common.apikeys import ApiKey, ApiKeyStore
from procs.common.embedded_postgres import EmbeddedError, EmbeddedPostgres
from procs.common.quiet_log import quieten
from procs.common.tls import HANDSHAKE_S, server_context, tls_kwargs
from procs.common.topology import apikeys_path, gateway_root, postgres_dir
from procs.common.users import UserStore
from procs.gateway import api_errors as codes
from procs.gateway import rest_params as rp
from procs.gateway import signing
from procs.gateway.api_errors import ApiError, throttle
from procs.gateway.deadlines import Deadlines
from procs.gateway.history import History, order_json
from procs.gateway.instruments import Instruments
from procs.gateway.limits import RateLimiter, take_batch
from procs.gateway.private_stream import PrivateStreams, asks_close_on_refusal, refuse_in_band
from procs.gateway.rest_amend import AmendRoute
from procs.gateway.rest_balances import newest_balances, with_zeros
from procs.gateway.rest_body import BODY_TIMEOUT_S, body_pairs, checked_params, read_body
from procs.gateway.rest_cancels import Cancels
from procs.gateway.rest_connections import RestConnections
from procs.gateway.rest_fast import KEEPALIVE_S, FastHandler, FastLane, close_lanes
from procs.gateway.rest_history import HistoryRoutes
from procs.gateway.rest_keys import KeyRoutes
from procs.gateway.rest_mass_cancel import MassCancelRoute
from procs.gateway.rest_new_orders import NewOrders
from procs.gateway.rest_open_orders import OpenOrderViews
from procs.gateway.rest_order_state import Outcome, balance_json
from procs.gateway.rest_orders import RestOrders
from procs.gateway.rest_public import PublicRoutes, json_response
from procs.gateway.rest_request import RestRequest
from procs.gateway.signing import API_KEY, RECV_WINDOW, SIGNATURE, TIMESTAMP, AuthError, Verifier

log = logging.getLogger("ringex.rest")

_encode = msgspec.json.Encoder().encode
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
R = TypeVar("R", bound=RestRequest)
#: A batch's request sent: its ref, its answer's future (``expect``), what names it in a 504,
#: and its answer made of the outcome (``answers``).
Sent = tuple[int, "asyncio.Future[Outcome]", str, Callable[[Outcome], dict[str, Any]]]
#: A failing history query's line: while the database is down, each request would log one.
db_log = logging.getLogger("ringex.rest.history")
#: The loggers a client's requests reach (quiet_log.py): aiohttp's server (a malformed
#: request), its WebSocket (a stream upgrade's subprotocols), and the history's.
QUIET_LOGGERS = ("aiohttp.server", "aiohttp.websocket", db_log.name)
#: Longest a balance request waits for the router to include what this gateway has seen.
BALANCE_WAIT_S = 1.0
#: How long a balance request waits for the router's push of a change it saw, before it
#: asks for a snapshot instead (a push is the same batch's as a rule; a restarted router
#: has no watches until they are renewed).
PUSH_WAIT_S = 0.25
#: The longest ``GET order`` of an order followed from another gateway's events waits for
#: its row to fill in its type (``LiveOrder.complete``) before answering without it.
COMPLETING_WAIT_S = 0.5
#: The request in hand's signature as ``signed`` remembered it (per task: one request each),
#: for ``charge_batch`` to forget when the batch's share is refused after all.
_SIGNED: ContextVar[signing.Seen | None] = ContextVar("signed", default=None)
_CORS_HEADERS = ", ".join(("Content-Type", API_KEY, TIMESTAMP, RECV_WINDOW, SIGNATURE))


def history_dsn(cfg: RingexConfig) -> str | None:
    """Where the history lives: ``database.dsn``, or the instance's embedded cluster."""
    if not cfg.database.enabled:
        return None
    if cfg.database.dsn:
        return cfg.database.dsn
    try:
        return EmbeddedPostgres(postgres_dir(cfg)).dsn
    except EmbeddedError as exc:
        log.warning("no history: %s", exc)
        return None


class RestApi(NewOrders, Cancels, OpenOrderViews, RestConnections):
    def __init__(
        self,
        cfg: RingexConfig,
        gw: GatewayConfig,
        rest: RestConfig,
        core: RestOrders,
        users: UserStore,
        publish: Callable[[], None],
    ) -> None:
        self.cfg, self.gw, self.rest = cfg, gw, rest
        self.core = core
        self._cut = 0  # passes in a row a ring held more than they read (``after_batch``)
        self.logins = users  # a login always reads the file: a user added a moment ago logs in
        # a view of the users file looked at once a second: every signed request reads its user
        self.users = UserStore(users.path, recheck_s=1.0)
        self.publish, self.instruments = publish, Instruments(cfg.symbols)
        self.keys = ApiKeyStore(apikeys_path(cfg), rest.max_keys_per_user)
        # a request signed before this process started is refused (its memory of signatures
        # starts empty: review 44), that start moved by a step of the clock (review 282)
        self.verifier = Verifier(
            rest.max_recv_window_ms, rest.recv_window_ms, not_before_ms=time.time_ns() // 10**6,
            not_before_mono_ms=time.monotonic_ns() // 10**6,
        )  # fmt: skip
        self.key_limits = RateLimiter(rest.key_rate_per_s, rest.key_burst)
        self.ip_limits = RateLimiter(rest.ip_rate_per_s, rest.ip_burst)
        self.login_limits = RateLimiter(rest.login_rate_per_s, rest.login_burst)
        # wrong passwords per user: FIX Logons at this gateway count here too (connections.py)
        self.failed_logins = RateLimiter(gw.failed_login_rate_per_s, gw.failed_login_burst)
        self.body_timeout_s = BODY_TIMEOUT_S
        for name in QUIET_LOGGERS:  # a line per bad request is a disk anyone could fill
            quieten(logging.getLogger(name))
        self.waiters: dict[int, asyncio.Future[Outcome]] = {}
        self.deadlines = Deadlines()  # the waiters' timeouts, on one timer
        #: The gateway is stopping (``GatewayServer.stop``): new orders are refused.
        self.closing = False
        self.streams = PrivateStreams(
            self,
            rest.max_streams,
            rest.stream_queue,
            rest.max_streams_per_key,
            rest.max_streams_per_account,
            gateway_root(cfg) / "streams",  # the instance's gateways share its limits
        )
        dsn = history_dsn(cfg)
        self.history = History(dsn, assets=cfg.assets) if dsn else None
        md = cfg.marketdata
        self.market_url = f"http://{md.host}:{md.port}" if md.enabled else None
        self.client: ClientSession | None = None
        self.runner: web.AppRunner | None = None
        self.port = rest.port
        self.app = self._app()
        #: The order routes the fast lane serves itself (``rest_fast.py``), and its connections.
        self.fast_routes: dict[tuple[str, str], FastHandler] = {
            ("POST", "/api/v1/order"): self.new_order,
            ("POST", "/api/v1/batchOrders"): self.batch_orders,
            ("DELETE", "/api/v1/batchOrders"): self.batch_cancel,
            ("DELETE", "/api/v1/order"): self.cancel_order,
            ("GET", "/api/v1/order"): self.query_order,
        }
        self.lanes: set[FastLane] = set()
        #: connections handed to aiohttp mid-head, until a request of theirs is served
        self._heads: set[asyncio.Transport] = set()
        self.max_connections = rest.max_connections  # within the descriptors, at ``start``
        #: the port's listener: the fast lane's, or (``fast_lane = false``) aiohttp's
        #: behind the gate of the port's connection limits (``rest_connections.Gate``)
        self._fast_server: asyncio.AbstractServer | None = None
        self._plain_server: asyncio.AbstractServer | None = None

    # -- the pipeline side (called by the gateway's poll loop) ----------------------------------

    def after_batch(self, cut: bool = False) -> None:
        """A batch of events went through ``core.process``: answer, and feed the streams.
        ``cut``: a ring held more than the pass read: its balances wait for a pass that read
        every ring to its end (16 at most), or a fill's could come before its TRADE, the
        router's push read before the fill (review 228)."""
        core = self.core
        core.end_of_batch()
        if core.completed:
            for ref, outcome in core.completed:
                future = self.waiters.pop(ref, None)
                if future is not None and not future.done():
                    future.set_result(outcome)
            core.completed.clear()
        self._cut = self._cut + 1 if cut else 0
        if core.balance_events and self._cut % 16 == 0:  # after their reports (review 202)
            core.events += newest_balances(core.balance_events)
            core.balance_events.clear()
        if core.events:
            self.streams.deliver(core.events)
            core.events.clear()

    def tick(self, now_s: float) -> None:
        """Once a second (the gateway's timers)."""
        self.core.tick(now_s)
        self.streams.sweep()
        for lane in list(self.lanes):
            lane.sweep(now_s)

    async def wait(self, ref: int, timeout_s: float | None = None, what: str = "") -> Outcome:
        """The exchange's answer to request ``ref`` (``expect``, publish, ``settle``). ``what``
        names the request in a timeout's message: what to ask the status of."""
        future = self.expect(ref, timeout_s)
        self.publish()
        return await self.settle(ref, future, what, timeout_s)

    def expect(self, ref: int, timeout_s: float | None = None) -> asyncio.Future[Outcome]:
        """A future for the answer to request ``ref``, to be published (a plain future, its
        timeout one of ``deadlines``': cheaper per request than a timer each, or
        ``asyncio.wait_for``'s task)."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self.waiters[ref] = future
        self.deadlines.add(future, timeout_s or self.rest.order_timeout_s)
        return future

    async def settle(
        self,
        ref: int,
        future: asyncio.Future[Outcome],
        what: str = "",
        timeout_s: float | None = None,
    ) -> Outcome:
        """The answer ``future`` (``expect``'s for ``ref``, with ``timeout_s``) brings, or a 504
        once its time is up (``wait`` says what ``what`` is)."""
        try:
            return await future
        except TimeoutError:
            self.core.abandon(ref)
            raise ApiError(
                504,
                codes.TIMEOUT,
                f"no answer from the exchange in {timeout_s or self.rest.order_timeout_s} s: the "
                f"request may still execute, ask for its status{f' ({what})' if what else ''}",
            ) from None
        finally:
            self.drop(ref, future)

    def drop(self, ref: int, future: asyncio.Future[Outcome]) -> None:
        """Wait no more for the answer to ``ref``: ``future`` is cancelled if not done."""
        future.cancel()
        self.deadlines.discard(future)
        self.waiters.pop(ref, None)

    async def answers(self, sent: list[Sent | ApiError]) -> list[dict[str, Any]]:
        """A batch's answers, in its order, once what it ``sent`` is published: each request's
        (``Sent``: its ref, ``expect``'s future, what names it, and its answer made of the
        outcome, which may raise), or the ``{"code", "msg"}`` of one refused before it went
        or by the exchange. A client gone (a cancel) leaves nothing waiting."""
        self.publish()
        out: list[dict[str, Any]] = []
        try:
            for entry in sent:
                try:
                    if isinstance(entry, ApiError):
                        raise entry
                    ref, future, what, answer = entry
                    out.append(answer(await self.settle(ref, future, what)))
                except ApiError as refused:
                    out.append({"code": refused.code, "msg": refused.msg})
        finally:
            for entry in sent[len(out) :]:
                if not isinstance(entry, ApiError):
                    self.drop(entry[0], entry[1])
        return out

    # -- lifecycle ------------------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application(
            middlewares=[self._middleware], client_max_size=self.rest.max_body_bytes
        )
        for routes in (PublicRoutes, HistoryRoutes, MassCancelRoute, AmendRoute, KeyRoutes):
            routes(self).register(app.router)
        # GET alone (aiohttp's add_get routes HEAD too, which nothing documents: review 106)
        get, v1 = functools.partial(app.router.add_get, allow_head=False), "/api/v1"
        app.router.add_post(f"{v1}/order", self.new_order)
        app.router.add_post(f"{v1}/order/test", self.test_order)
        app.router.add_post(f"{v1}/batchOrders", self.batch_orders)
        app.router.add_delete(f"{v1}/batchOrders", self.batch_cancel)
        app.router.add_delete(f"{v1}/order", self.cancel_order)
        get(f"{v1}/order", self.query_order)
        get(f"{v1}/openOrders", self.open_orders)
        get(f"{v1}/account", self.account)
        get(f"{v1}/stream", self.streams.handle)
        return app

    async def start(self) -> None:
        self.client = ClientSession(timeout=ClientTimeout(total=5))
        if self.history is not None:
            await self.history.open()
        self.runner = web.AppRunner(  # idle keep-alive as the fast lane's, not 3,630 s; a
            # handler still writing to a client that reads nothing when the stop cleans up
            # is cut after a second, not aiohttp's 60 (past the supervisor's 20 s: review 204)
            self.app, access_log=None, handle_signals=False, keepalive_timeout=KEEPALIVE_S,
            shutdown_timeout=1.0,
        )  # fmt: skip
        await self.runner.setup()
        self._fit_connections()
        create = functools.partial(
            asyncio.get_running_loop().create_server,
            host=self.rest.host,
            port=self.rest.port,
            reuse_port=self.gw.reuse_port or None,
            **tls_kwargs(server_context(self.rest.tls_cert, self.rest.tls_key), HANDSHAKE_S),
        )
        if self.rest.fast_lane:
            server = self._fast_server = await create(self._lane)
        else:  # aiohttp serves each connection, once the gate has taken it within the limits
            server = self._plain_server = await create(self._gate)
        if server.sockets:
            self.port = server.sockets[0].getsockname()[1]
        log.info(
            "REST API of gateway %s on %s://%s:%d%s", self.gw.name,
            "https" if self.rest.tls_cert else "http", self.rest.host, self.port,
            " (fast lane for /api/v1/order)" if self.rest.fast_lane else "",
        )  # fmt: skip

    def _lane(self) -> FastLane:
        """A connection of the REST port: the fast lane's, until it hands over to aiohttp."""
        assert self.runner is not None and self.runner.server is not None  # started
        return FastLane(
            self.fast_routes, self._middleware, self.runner.server, self.lanes,
            self.rest.max_body_bytes, self.body_timeout_s, self._admit, self._unfinished,
            self._cors,  # its own refusals read by the page too (review 304)
        )  # fmt: skip

    async def stop(self) -> None:
        await self.streams.close()
        for server in (self._fast_server, self._plain_server):
            if server is not None:
                server.close()
        # the poll that would answer them has stopped (aiohttp's cleanup waited on them): as
        # a timeout, since they may still execute (503 says "not taken, retry": review 66)
        for future in self.waiters.values():
            if not future.done():
                future.set_exception(ApiError(504, codes.TIMEOUT, codes.STOPPED_UNANSWERED))
        await close_lanes(self.lanes)  # once they have written those answers (review 204)
        if self.runner is not None:
            await self.runner.cleanup()
        if self.client is not None:
            await self.client.close()
        if self.history is not None:
            await self.history.close()

    # -- every request --------------------------------------------------------------------------

    @web.middleware
    async def _middleware(
        self, request: R, handler: Callable[[R], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if self._heads:  # a head handed to aiohttp mid-way came whole (``_unfinished``)
            self._heads.discard(getattr(request, "transport", None))
        try:
            throttle(self.ip_limits, request.remote or "", f"requests from {request.remote}")
            if request.method == "OPTIONS":  # a browser's CORS preflight
                return self._cors(request, web.Response(status=204))
            if (request.content_length or 0) > self.rest.max_body_bytes:
                raise web.HTTPRequestEntityTooLarge(
                    max_size=self.rest.max_body_bytes, actual_size=request.content_length or 0
                )
            response = await handler(request)
        except ApiError as exc:
            if asks_close_on_refusal(request):  # the address's limit, said as a close
                with contextlib.suppress(ApiError):  # no upgrade: the HTTP error after all
                    return await refuse_in_band(request, exc)
            response = json_response(exc.body(), exc.status)
            response.headers.update(exc.headers)  # Retry-After, Sec-WebSocket-Version
        except web.HTTPRequestEntityTooLarge:
            size, limit = request.content_length, self.rest.max_body_bytes
            # the size on the wire, where it is what passed the limit: not a chunked body's
            # (none), nor a compressed one's, which inflated past it (review 97)
            if size and size > limit and not request.headers.get("Content-Encoding"):
                sent = f"of {size} bytes "
            else:
                sent = "(as read, inflated or chunked) "
            response = json_response(
                {
                    "code": codes.ILLEGAL_PARAM,
                    "msg": f"request body {sent}is larger than the limit of "
                    f"{self.rest.max_body_bytes} bytes",
                },
                413,
            )
        except web.HTTPException as exc:  # 404, 405 from the router
            response = json_response(
                {"code": codes.UNKNOWN, "msg": f"{exc.reason}: {request.method} {request.path}"},
                exc.status,
            )
            if "Allow" in exc.headers:  # a 405 names the methods allowed (RFC 9110)
                response.headers["Allow"] = exc.headers["Allow"]
        if isinstance(response, web.WebSocketResponse):
            return response
        return self._cors(request, response)

    def _cors(self, request: RestRequest, response: web.StreamResponse) -> web.StreamResponse:
        """The headers every answer gets: ``no-store`` (a browser kept a signed answer in its
        cache, which a page of another origin on the site read after its user logged out,
        with no key: review 149), and CORS's for an allowed ``Origin``."""
        response.headers["Cache-Control"] = "no-store"
        origin = request.headers.get("Origin")
        allowed = self.rest.cors_origins
        if allowed and "*" not in allowed:  # the answer depends on the Origin: caches must know
            vary = response.headers.get("Vary")
            response.headers["Vary"] = f"{vary}, Origin" if vary else "Origin"
        if origin and ("*" in allowed or origin in allowed):
            response.headers["Access-Control-Allow-Origin"] = "*" if "*" in allowed else origin
            response.headers["Access-Control-Allow-Headers"] = _CORS_HEADERS
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, DELETE, OPTIONS"
            response.headers["Access-Control-Max-Age"] = "600"
            response.headers["Access-Control-Expose-Headers"] = "Retry-After"  # a 429's hint
        return response

    async def params(self, request: RestRequest, accepted: frozenset[str]) -> dict[str, str]:
        """Query string and body (form or JSON object) parameters, size-checked, each one of
        the ``accepted`` names (``rest_params``)."""
        pairs = list(request.query.items())
        body = await read_body(request, self.body_timeout_s)
        if body:
            pairs += body_pairs(body, request.content_type or "")
        return checked_params(pairs, accepted)

    async def signed(self, request: RestRequest, scope: str) -> ApiKey:
        key = self.keys.find(request.headers.get(API_KEY, ""))  # one made elsewhere too
        if key is None:
            raise ApiError(401, codes.BAD_CREDENTIALS, f"unknown or missing API key ({API_KEY})")
        body = await read_body(request, self.body_timeout_s)
        if self.keys.get(key.key) is None:  # revoked while the body came (review 44)
            raise ApiError(401, codes.BAD_CREDENTIALS, f"API key {key.key} was revoked")
        headers = request.headers
        # the bytes the client sent and signed: the decoded forms differ where it escaped
        path, _, query = request.raw_path.partition("?")
        try:
            seen = self.verifier.check(
                key.secret, headers.get(TIMESTAMP), headers.get(RECV_WINDOW),
                headers.get(SIGNATURE), request.method, path, query, body,
                time.time_ns() // 1_000_000, time.monotonic_ns() // 1_000_000,
            )  # fmt: skip
        except AuthError as exc:
            raise ApiError(401, exc.code, exc.msg) from None
        self.charge(key)
        self.verifier.remember(seen)  # only what the key's limit took (review 44)
        _SIGNED.set(seen)
        self.require_user(key)
        self.require_scope(key, scope)
        self.core.touch(key.account, key.session, time.monotonic())
        return key

    def charge(self, key: ApiKey) -> None:
        """429 when ``key`` is over its rate limit, else one request spent: every signed
        request, a private stream's upgrade included. Only once the signature holds: the key
        id travels in the clear, and requests that merely name it must not spend its owner's
        budget (the per-address limit has them)."""
        throttle(self.key_limits, key.key, "requests for this API key")

    def charge_batch(self, key: ApiKey, orders: int) -> None:
        """``limits.take_batch``, its 429 forgetting the signature ``signed`` remembered too:
        the batch sent again as is after its Retry-After is no replay (review 342)."""
        try:
            take_batch(self.key_limits, key.key, orders)
        except ApiError as refused:
            if refused.status == 429 and (seen := _SIGNED.get()) is not None:
                self.verifier.forget(seen)  # the key's limit did not take it after all
            raise

    def require_user(self, key: ApiKey) -> None:
        """401 unless ``key``'s user still exists, with the key's account, as the users file
        stood at most a second ago (the view ``holder_unchanged`` reads)."""
        if not self.holder_unchanged(key):  # not in the view of a second ago:
            user = self.logins.get(key.comp_id)  # the file itself says
            if user is None or (user.account, user.session) != (key.account, key.session):
                raise ApiError(  # removed, or added again since (a key it outlived)
                    401, codes.BAD_CREDENTIALS, f"user {key.comp_id} of this key changed"
                )

    def holder_unchanged(self, key: ApiKey) -> bool:
        """Whether ``key``'s user is, as of a second ago, still there with its account and
        session id (one added again has a new one: a key its removal left is not its own)."""
        user = self.users.get(key.comp_id)
        return user is not None and (user.account, user.session) == (key.account, key.session)

    def require_scope(self, key: ApiKey, scope: str) -> None:
        """403 unless ``key`` has ``scope`` ("": any valid key will do)."""
        if scope and scope not in key.scopes:
            raise ApiError(
                403,
                -2015,
                f"this API key's scopes are {', '.join(key.scopes)}: '{scope}' is needed",
            )

    def require_open(self, what: str) -> None:
        """503 while the gateway stops: it takes no ``what`` then (cancels it takes)."""
        if self.closing:
            raise ApiError(503, codes.DISCONNECTED, f"the exchange is stopping: no {what} "
                           "(cancels are taken); try again after it restarts")  # fmt: skip

    def need_history(self) -> History:
        if self.history is None:
            raise ApiError(
                503, codes.DISCONNECTED, "history needs the database, which is not enabled here"
            )
        return self.history

    async def db(self, query: Awaitable[Any]) -> Any:
        try:
            return await query
        except Exception as exc:  # psycopg's errors and pool timeouts alike
            db_log.warning("history query failed: %r", exc)  # once a minute at most
            raise ApiError(
                503, codes.DISCONNECTED, f"the history database did not answer: {exc}"
            ) from None

    # -- orders -----------------------------------------------------------------------------------

    async def query_order(self, request: RestRequest) -> web.Response:
        key = await self.signed(request, "read")
        params = await self.params(request, rp.ORDER_PARAMS)
        sym = rp.symbol(params, self.instruments)
        oid, live = await self.named_order(key.account, params, sym.id)
        client_id = params.get("origClientOrderId", "")
        if live is not None and live.symbol.id == sym.id:
            # followed from another gateway (from its end, or without its client id)
            if (live.partial or not live.client_order_id) and self.history is not None:
                # what its row adds, if the database answers soon: the live view is the
                # answer, and never waits for a database down or slow
                with contextlib.suppress(ApiError, TimeoutError):
                    async with asyncio.timeout(COMPLETING_WAIT_S):
                        row = await self.db(self.history.order(key.account, live.order_id))
                    if row is not None:
                        live.complete(row)
            return json_response(live.json())
        if oid is not None and self.history is not None:
            row = await self.db(self.history.order(key.account, oid))
            if row is not None and row[2] == sym.id:
                ended = self.core.unfiled.ended.get(oid)  # its end seen, not yet filed
                if ended is not None and ended.account == key.account:
                    ended.complete(row)
                    return json_response(ended.json())
                return json_response(order_json(row, sym))
        if oid is not None or live is not None:  # (known, on another symbol: not forgotten)
            named = f"orderId={oid}" if oid is not None else f"origClientOrderId={client_id}"
            raise rp.not_found(f"{named} (symbol={sym.name})")
        raise self.core.unknown(key.account, client_id, sym.name)

    async def account(self, request: web.Request) -> web.Response:
        """Balances (``omitZeroBalances=false``: with the assets at zero); ``updateTime`` when
        they last moved (review 338: it was the answer's time)."""
        key = await self.signed(request, "read")
        params = await self.params(request, frozenset({"omitZeroBalances"}))
        omit = rp.choice(params, "omitZeroBalances", {"true": 1, "false": 0}, "true") == "true"
        balances = await self.balances(key.account, current=True)  # (a bad value not waited)
        if not omit:
            balances = with_zeros(balances, self.core.assets)
        return json_response(
            {
                "accountId": key.account,
                "username": key.comp_id,
                "canTrade": "trade" in key.scopes,
                "updateTime": self.core.updated_ms.get(key.account, time.time_ns() // 1_000_000),
                "balances": balances,
            }
        )

    async def balances(self, account: int, *, current: bool = False) -> list[dict[str, str]]:
        """The router's balances of ``account``, including every event this gateway has seen
        for it (read your writes): its push, else after ``PUSH_WAIT_S`` a snapshot asked
        anew; after ``BALANCE_WAIT_S`` more without the router's word, what is known, but
        with ``current`` (``GET account``) only if it holds every event seen: else a 504, as
        for an order the exchange did not answer (review 42: a router that stopped
        answering gave an order's NEW and then balances without its hold)."""
        known = self.core.account_balances(account)
        if isinstance(known, int):
            try:
                # held: a push is awaited; none held: the first snapshot is
                first_s = PUSH_WAIT_S if account in self.core.balances else BALANCE_WAIT_S
                outcome = await self.wait(known, first_s)
            except ApiError:  # no push: the router may have restarted, its watches gone
                try:
                    outcome = await self.wait(self.core.renew_watch(account), BALANCE_WAIT_S)
                except ApiError:  # (a read's 504: not an order's "may still execute")
                    outcome = Outcome(balances=self.core.balances.get(account))  # as known
                    if not outcome.balances or (current and not self.core.has_seen(account)):
                        held = " that hold what this gateway saw of it" * bool(outcome.balances)
                        raise ApiError(
                            504,
                            codes.TIMEOUT,
                            f"the router did not answer with balances of account {account}{held}"
                            f" within {first_s + BALANCE_WAIT_S} s: ask again",
                        ) from None
            known = outcome.balances or {}
        return [balance_json(self.core.assets, asset, known) for asset in sorted(known)]
