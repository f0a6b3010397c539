"""The REST API's fast lane: the order routes straight off httptools, the rest on aiohttp.

aiohttp costs the gateway about 34 us of CPU per request here before a handler runs (its
protocol, request and response objects, a task per request); a plain ``asyncio.Protocol``
over httptools (llhttp, the parser under uvicorn) costs about 9 (``tests/bench/bench_rest``
prints both paths' CPU per request). So the routes a trading client calls thousands of
times a second, ``POST``, ``DELETE`` and ``GET /api/v1/order``, are served here, by the same
``RestApi`` handler methods, middleware (address limit, body size, error bodies) and CORS as
on aiohttp, over ``FastRequest`` (``fast_request.py``): the few attributes those read
(``rest_request.py``).

Every other request (the public and history routes, the page's calls, the private stream's
WebSocket upgrade, ``Expect: 100-continue``, ``HEAD``) goes to aiohttp with its connection:
the protocol waits until its own answers are written, then gives the transport and the
request's bytes to an aiohttp ``RequestHandler``, which serves the connection from then on.
Those bytes begin at a cut aiohttp can parse from: the start of the read that holds the
request (orders pipelined before it in that read go along, unanswered here), or of the read
where the request it carried on began. A request pipelined behind an order that came in an
earlier read has no such cut (browsers and HTTP libraries do not pipeline): it gets a 400
naming the rule, after the answers ahead of it, and the connection closes.

Whatever is not a plain order request goes to aiohttp the same way, so its answers stay
aiohttp's: a malformed request (its 400 names the fault), a head unfinished past a read and
``MAX_HEAD_BYTES`` (a line that never ends), a body past ``max_body_bytes`` (the
middleware's 413), a ``Content-Encoding`` (aiohttp inflates it), a chunked body's trailer
ignored as aiohttp ignores it. The lane's own limits: a request
slower than the body timeout to arrive whole (408, then close), an idle connection
(``KEEPALIVE_S``, closed by ``sweep``), requests queued behind the one in hand
(``MAX_QUEUED``: reading pauses), a client slower to read than to ask (``pause_writing``:
reading pauses, and the next answer waits for the drain), a target past 8190 bytes (414),
a header line past that or more than 128 headers (431), a body past ``max_body_bytes`` of a
request with ``Expect`` or ``Content-Encoding`` (413 before aiohttp's 100 Continue would
ask for it), answered in the API's error body naming the limit, with the API's CORS headers,
then close (a connection handed over already gets aiohttp's plain-text 400 for such heads).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import httptools
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from procs.gateway import api_errors as codes
from procs.gateway.fast_request import FastRequest, error_bytes, error_response, response_bytes

if TYPE_CHECKING:
    from procs.gateway.rest_request import RestRequest

log = logging.getLogger("ringex.rest")

FastHandler = Callable[["RestRequest"], Awaitable[web.StreamResponse]]
#: aiohttp's limits on a request's target, a header line and the headers: a request past
#: one goes to aiohttp, whose 400 names it.
MAX_LINE_BYTES = 8_190
MAX_HEADERS = 128
#: A request's head still incomplete past this many bytes (over several reads) goes to
#: aiohttp as well: httptools gathers an unfinished line without a limit.
MAX_HEAD_BYTES = 16_384
#: Requests a client may queue behind the one being answered before reading pauses.
MAX_QUEUED = 16
#: An idle keep-alive connection is closed after this long (as ``RestApi.start`` sets
#: aiohttp's, not its default of 3,630 s).
KEEPALIVE_S = 75.0
#: The longest a stopping gateway lets its fast lanes write the answers they owe.
LANE_ANSWER_GRACE_S = 0.5
#: The lengths of the header names the lane looks at: Host, ETag, Expect, Server, User-Agent,
#: Content-Type, Max-Forwards, Content-Range, Content-Length, Content-Encoding,
#: Content-Location, Transfer-Encoding.
_SPECIAL_LENGTHS = frozenset((4, 6, 10, 12, 13, 14, 16, 17))
#: Headers that make a request aiohttp's: it answers 100-continue, it inflates gzip.
_AIOHTTPS = frozenset((b"expect", b"content-encoding"))
_BLANKS = (b" ", b"\t")
#: Headers aiohttp refuses twice (400: RFC 9110's singletons, aiohttp's
#: ``SINGLETON_HEADERS``, but Content-Length and Transfer-Encoding, which llhttp refuses
#: twice itself), each a bit of ``FastLane._singletons`` (review 191: User-Agent twice was
#: served here). Host's bit also tells an HTTP/1.1 request without one (aiohttp's 400).
_SINGLETONS = {
    b"host": 1,
    b"content-type": 2,
    b"content-location": 4,
    b"content-range": 8,
    b"etag": 16,
    b"max-forwards": 32,
    b"server": 64,
    b"user-agent": 128,
}
_HOST = _SINGLETONS[b"host"]


class FastLane(asyncio.Protocol):
    """One client connection of the REST port: parsed by httptools, the order routes answered
    here, in order; the connection handed to aiohttp (``slow``, its protocol factory) at the
    first request that is not a plain order request."""

    def __init__(
        self,
        routes: dict[tuple[str, str], FastHandler],
        middleware: Callable[[RestRequest, FastHandler], Awaitable[web.StreamResponse]],
        slow: Callable[[], asyncio.Protocol],
        lanes: set[FastLane],
        max_body_bytes: int,
        body_timeout_s: float,
        admit: Callable[[str | None], str | None] | None = None,
        unfinished: Callable[[asyncio.Transport, str], None] | None = None,
        cors: Callable[[RestRequest, web.StreamResponse], web.StreamResponse] | None = None,
    ) -> None:
        self.routes = routes
        #: the REST API's connection limits: None, or why a connection from an address is
        #: refused (a 503 naming the limit, then the close)
        self.admit = admit
        #: told of a connection handed to aiohttp in the middle of a request's head (past
        #: ``MAX_HEAD_BYTES``): aiohttp has no time limit on a head, the API keeps this one's
        self.unfinished = unfinished
        #: the headers every answer gets, CORS's among them (``RestApi._cors``): the lane's
        #: refusals of a head past a limit get them too, so the page can read them
        self.cors = cors
        self._unfinished_head = False  # the hand-over under way is one
        self.middleware = middleware
        self.slow = slow
        self.lanes = lanes
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.transport: asyncio.Transport | None = None
        self.remote: str | None = None
        self.peer: Any = None  # the client's address, as the socket gives it
        self.parser = httptools.HttpRequestParser(self)
        self.idle_since = time.monotonic()
        self._queue: deque[tuple[FastHandler, FastRequest]] = deque()
        self._busy = False  # the lane's task answers the queue
        self._idle: asyncio.Future[None] | None = None  # its task waits on it for requests
        self._paused = False  # reading, for one of the reasons in _may_resume
        self._drained: asyncio.Future[None] | None = None  # set by resume_writing
        self._write_paused = False  # the transport's buffer is past its high-water mark
        self._closing = False
        # the request being parsed
        self._in_request = False
        self._url: list[bytes] = []
        self._url_size = 0
        self._headers: list[tuple[str, str]] = []
        self._headers_done = False
        self._method = self._target = ""  # the request line's, once the headers are in
        self._handler: FastHandler | None = None  # the route's, when the lane serves it
        self._length = 0
        self._aiohttps = self._chunked = False
        self._singletons = self._trailers = 0
        self._body: list[bytes] = []
        self._body_size = 0
        self._chunks: list[bytes] = []  # the reads since the request began
        self._read = b""  # the read being parsed
        self._at_start = True  # no request has completed in it yet
        self._began_at_start = False  # whether the request being parsed began its read
        #: requests completed in this read, not yet queued, each with its route's handler
        self._done: list[tuple[FastHandler, FastRequest]] = []
        self._for_aiohttp = False  # a request in this read is aiohttp's
        self._timer: asyncio.TimerHandle | None = None
        self._eof = False  # the client half-closed: close once its requests are answered
        self._handover: list[bytes] | None = None  # the bytes for aiohttp, once decided
        self._last: bytes | None = None  # an answer that ends the connection, once decided
        self._refusal: bytes | None = None  # a head past a limit: answered here, then closed

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport: TCP
        self.peer = transport.get_extra_info("peername")
        self.remote = self.peer[0] if isinstance(self.peer, tuple) else None
        why = self.admit(self.remote) if self.admit is not None else None
        if why is not None:
            self._closing = True
            transport.write(error_bytes(503, codes.TOO_MANY_REQUESTS, why))  # type: ignore[attr-defined]
            transport.close()
            return
        self.lanes.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self.lanes.discard(self)
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)  # _answer sees _closing and stops
        self._wake()
        self._cancel_timer()

    def data_received(self, data: bytes) -> None:
        if self._handover is not None:  # read before the pause took: aiohttp's too
            self._handover.append(data)
            return
        if self._closing or self._last is not None:
            return
        # a request begun in an earlier read goes on in this one: its reads, if it began one
        carried = self._in_request
        cut = self._chunks if carried and self._began_at_start else None
        self._read, self._at_start = data, True
        if carried:
            self._chunks.append(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            if not self._for_aiohttp and self._refusal is None:  # a fault of this module's
                log.exception("REST fast lane: a request from %s failed", self.remote)
                self._end(error_bytes(500, codes.UNKNOWN, "internal error"))
                return
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            self._for_aiohttp = True  # malformed: aiohttp's 400 names the fault
        done, self._done = self._done, []
        if self._for_aiohttp:  # what completed in this read is in the bytes aiohttp gets
            self._hand_over([data] if not carried else cut)
            return
        if done:
            self._queue.extend(done)
            if not self._busy:
                self._busy = True
                if self._idle is None:  # the connection's first request: its task
                    asyncio.get_running_loop().create_task(self._answer())
                else:
                    self._wake()
            elif len(self._queue) > MAX_QUEUED and not self._paused:
                self._pause()
        if self._refusal is not None:  # after the answers to the requests before it
            self._end(self._refusal)
            return
        if (  # a line that never ends, or a chunked body's framing (an endless chunk
            # extension or trailer): the reads after the request's first (whose part of it
            # is unknown, and one read at most) hold more than a head, or a head and a body
            # may. aiohttp, whose limits count such bytes, takes what they hold
            self._in_request
            and len(self._chunks) > 1
            and sum(map(len, self._chunks[1:]))
            > MAX_HEAD_BYTES + (self.max_body_bytes if self._headers_done else 0)
        ):
            self._hand_over(cut)  # the request in progress is the carried one (2+ reads)
            return
        if not self._paused:
            self._arm_timer()

    def eof_received(self) -> bool:
        """The client shut its sending side after its requests (a half-close): answer those
        taken, then close (review 191: asyncio closed at once, and an order placed went
        unanswered). One unfinished, or one for aiohttp, cannot be: closed now."""
        if (self._busy or self._queue) and self._handover is None:
            self._eof = True
            return True
        return False

    # -- httptools callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_request = True
        self._began_at_start = self._at_start
        self._chunks = [self._read]
        self._url = []
        self._url_size = 0
        self._headers = []
        self._headers_done = False
        self._length = 0  # Content-Length
        # a header that makes the request aiohttp's (Expect, Content-Encoding); chunked
        self._aiohttps = self._chunked = False
        # which of Host and Content-Type came (aiohttp refuses either twice); trailer lines
        self._singletons = self._trailers = 0
        self._body = []
        self._body_size = 0

    def on_url(self, url: bytes) -> None:
        self._url.append(url)
        self._url_size += len(url)
        if self._url_size > MAX_LINE_BYTES:
            self._refuse(414, f"request target of {self._url_size}+ bytes is longer than the "
                         f"limit of {MAX_LINE_BYTES} bytes")  # fmt: skip

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._headers_done:  # a chunked body's trailer: aiohttp ignores it, so do we,
            self._trailers += 1  # up to its limits of lines and of a line (its 400s)
            if self._trailers > MAX_HEADERS or len(name) + len(value) > MAX_LINE_BYTES:
                self._stop_for_aiohttp()
            return
        headers = self._headers
        if len(headers) >= MAX_HEADERS:
            self._refuse(431, f"more than {MAX_HEADERS} header lines, the limit")
        if len(name) + len(value) > MAX_LINE_BYTES:
            said = name[:64].decode("ascii", "replace")
            self._refuse(431, f"header {said!r} of {len(name) + len(value)} bytes is longer "
                         f"than the limit of {MAX_LINE_BYTES} bytes")  # fmt: skip
        if len(name) in _SPECIAL_LENGTHS:  # one compare for most headers
            special = name.lower()
            if special == b"content-length":
                self._length = int(value)  # llhttp refused a malformed or repeated one
            elif special in _AIOHTTPS:
                self._aiohttps = True  # 100-continue, gzip: aiohttp answers or inflates
            elif special == b"transfer-encoding":  # the 408 says "chunked"
                self._chunked = True
            elif (bit := _SINGLETONS.get(special, 0)) and self._singletons & bit:
                self._stop_for_aiohttp()  # Host or Content-Type twice: aiohttp's 400 names it
            else:
                self._singletons |= bit
        if value[-1:] in _BLANKS:  # as aiohttp reads a value: its trailing blanks are not in it
            value = value.rstrip(b" \t")
        headers.append(
            (name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
        )

    def on_headers_complete(self) -> None:
        self._headers_done = True
        parser = self.parser
        self._method = parser.get_method().decode("ascii", "replace")
        self._target = b"".join(self._url).decode("utf-8", "surrogateescape")
        handler = self.routes.get((self._method, self._target.partition("?")[0]))
        if self._aiohttps and self._length > self.max_body_bytes:  # Expect or gzip: the 413
            # at once, not aiohttp's 100 Continue first, which asks for the body (review 300)
            self._refuse(413, f"request body of {self._length} bytes is larger than the limit "
                         f"of {self.max_body_bytes} bytes")  # fmt: skip
        if (
            handler is None
            or parser.should_upgrade()
            or self._aiohttps
            or self._length > self.max_body_bytes  # the middleware's 413
            or (not self._singletons & _HOST and parser.get_http_version() == "1.1")
        ):  # (the last: aiohttp's 400, "Missing 'Host' header", review 191)
            self._stop_for_aiohttp()
        self._handler = handler

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self.max_body_bytes:  # chunked: aiohttp's read says 413
            self._stop_for_aiohttp()
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._in_request = False
        self._at_start = False  # what follows in this read is pipelined
        self._cancel_timer()
        parser = self.parser
        request = FastRequest(
            self._method,
            self._target,
            CIMultiDictProxy(CIMultiDict(self._headers)),
            b"".join(self._body),
            self.remote,
            parser.should_keep_alive(),
            parser.get_http_version(),
        )
        assert self._handler is not None  # else the headers stopped the parse for aiohttp
        self._done.append((self._handler, request))

    # -- answering --------------------------------------------------------------------------

    async def _answer(self) -> None:
        """The connection's task: answer the queued requests in their order (HTTP/1.1
        pipelining), then wait for more. One task per connection, not per request: making
        and dropping a task cost a REST request ~2 us (its entry in asyncio's weak set of
        tasks, written in Python, is most of it)."""
        loop = asyncio.get_running_loop()
        while await self._answer_queue():
            if self._eof:  # a half-close: its requests are answered
                self.close()
                return
            self._idle = loop.create_future()
            await self._idle
            if self._closing:  # connection_lost, or handed over to aiohttp
                return

    def _wake(self) -> None:
        """Wake the task from its wait for requests (to answer them, or to end)."""
        idle, self._idle = self._idle, None
        if idle is not None and not idle.done():
            idle.set_result(None)

    async def _answer_queue(self) -> bool:
        """Answer the queued requests; whether the connection goes on (more may come)."""
        queue, transport = self._queue, self.transport
        assert transport is not None
        while queue and not self._closing:
            handler, request = queue.popleft()
            try:
                response = await self.middleware(request, handler)
                data = response_bytes(response, request.keep_alive, request.version)
            except Exception:  # a handler's bug: answered as aiohttp would, the process lives
                log.exception("REST %s %s failed", request.method, request.raw_path[:200])
                data = error_bytes(500, codes.UNKNOWN, "internal error")
                request.keep_alive = False
            if transport.is_closing():
                return False
            transport.write(data)
            if not request.keep_alive:
                self._closing = True
                transport.close()
                return False
            if self._write_paused:  # the client reads slower than it asks: wait for it
                self._drained = asyncio.get_running_loop().create_future()
                await self._drained
                if self._closing:
                    return False
            self.idle_since = time.monotonic()
            self._may_resume()
        self._busy = False
        if self._handover is not None:
            self._hand_over_when_answered()
            return False
        if self._last is not None:
            self._end(self._last)
            return False
        return not self._closing

    # -- handing over to aiohttp ------------------------------------------------------------

    def _refuse(self, status: int, msg: str) -> None:
        """From a parser callback: the request's head is past a limit, answered here in the
        API's error body (review 300: aiohttp's was a plain-text 400 naming no limit); the
        parse stops, and the connection closes after the answer."""
        response = error_response(status, codes.ILLEGAL_PARAM, msg)
        if self.cors is not None:  # by the headers read so far: Origin comes early
            headers = CIMultiDictProxy(CIMultiDict(self._headers))
            self.cors(FastRequest("GET", "", headers, b"", self.remote, False), response)
        self._refusal = response_bytes(response, keep_alive=False)
        raise _StopParsingError

    def _stop_for_aiohttp(self) -> None:
        """From a parser callback: the request is aiohttp's; the parse stops here."""
        self._for_aiohttp = True
        raise _StopParsingError

    def _hand_over(self, reads: list[bytes] | None) -> None:
        """The read just parsed holds a request for aiohttp: give it ``reads``, the bytes from
        a cut it can parse from, once this lane has answered what it took before that cut.
        The requests that completed in this read are not answered here: they are in those
        bytes. The cut is the read's start, or the start of the request it carried on, if
        that one began a read; a request pipelined behind one this lane took in an earlier
        read has no such cut (``reads`` is None) and is refused."""
        if reads is None:
            self._end(
                error_bytes(
                    400,
                    codes.ILLEGAL_PARAM,
                    "a request this port's fast lane does not serve (any but POST, DELETE and "
                    "GET /api/v1/order) must not be pipelined behind another request on the "
                    "same connection: send it on its own",
                )
            )
            return
        self._handover = reads
        self._unfinished_head = self._in_request and not self._headers_done
        self._in_request = False
        self._cancel_timer()
        self._hand_over_when_answered()

    def _hand_over_when_answered(self) -> None:
        transport = self.transport
        if transport is None or self._handover is None or self._closing:
            return
        if self._busy or self._write_paused:  # this lane's answers out first
            self._pause()
            return
        data, self._handover = b"".join(self._handover), None
        self._closing = True  # this protocol is done with the connection
        self._wake()  # its task ends
        self.lanes.discard(self)
        protocol = self.slow()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if self._paused:  # before its first read: aiohttp may pause reading itself in it
            transport.resume_reading()
        protocol.data_received(data)
        if self._unfinished_head and self.unfinished is not None:
            what = f"request line and headers did not arrive within {self.body_timeout_s:g} s"
            self.unfinished(transport, what)

    def pause_writing(self) -> None:
        """The client reads its answers slower than it sends requests: stop reading them
        (aiohttp does the same), or the answers would pile up in the transport's buffer."""
        self._write_paused = True
        self._pause()

    def resume_writing(self) -> None:
        self._write_paused = False
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)
        if self._handover is not None:
            self._hand_over_when_answered()
        else:
            self._may_resume()

    def _may_resume(self) -> None:
        """Read again unless a reason to pause holds: a full write buffer, a long queue, a
        hand-over or a last answer waiting for the answers ahead of it."""
        if (
            self._paused
            and not self._write_paused
            and self._handover is None
            and self._last is None
            and len(self._queue) <= MAX_QUEUED // 2
            and not self._closing
            and self.transport is not None
        ):
            self._paused = False
            self.transport.resume_reading()
            self._arm_timer()

    def _pause(self) -> None:
        """Stop reading. A request's time limit stops with it (review 191: one whose bytes
        waited in the kernel meanwhile was answered 408, and those behind it never); it
        starts again with the reading."""
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
            self._cancel_timer()

    # -- endings ----------------------------------------------------------------------------

    def _end(self, answer: bytes) -> None:
        """Write ``answer`` after this lane's pending answers, then close: the connection
        cannot be read on."""
        self._last = answer
        self._in_request = False
        self._cancel_timer()
        if self._busy:
            self._pause()
            return
        if not self._closing and self.transport is not None:
            self._closing = True
            self.transport.write(answer)
            self.transport.close()

    def _arm_timer(self) -> None:
        """Time the request in progress, if any: it has ``body_timeout_s`` to arrive whole."""
        if self._in_request and self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.body_timeout_s, self._too_slow)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _too_slow(self) -> None:
        self._timer = None
        if self._in_request:
            if not self._headers_done:
                what = "request line and headers"
            elif self._chunked:
                what = "chunked request body"
            else:
                what = f"request body of {self._length} bytes"
            msg = f"{what} did not arrive within {self.body_timeout_s:g} s"  # as read_body
            self._end(error_bytes(408, codes.TIMEOUT, msg))

    def sweep(self, now: float) -> None:
        """Close this connection if it has been idle past ``KEEPALIVE_S`` (once a second)."""
        if not self._busy and not self._in_request and now - self.idle_since > KEEPALIVE_S:
            self.close()

    @property
    def answering(self) -> bool:
        """Whether requests this lane took are still to be answered (a gateway's stop lets
        it write them first: ``RestApi.stop``)."""
        return (self._busy or bool(self._queue)) and not self._closing

    def close(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.close()


async def close_lanes(lanes: Iterable[FastLane], grace_s: float = LANE_ANSWER_GRACE_S) -> None:
    """A stopping gateway's fast lanes, closed once each has written the answers it owes
    (504 for an order still unanswered, 503 for the requests queued behind it), ``grace_s``
    at most: closed first, a lane dropped them all unanswered (review 204)."""
    lanes = list(lanes)
    loop = asyncio.get_running_loop()
    until = loop.time() + grace_s
    while any(lane.answering for lane in lanes) and loop.time() < until:
        await asyncio.sleep(0.01)
    for lane in lanes:
        lane.close()


class _StopParsingError(Exception):
    """Raised from a parser callback to stop the parse (httptools re-raises it wrapped)."""
