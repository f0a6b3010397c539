"""A small async client of the REST API and its private stream, for scripts, tests and the
benchmark: logs in for an API key, signs every private request (``signing.sign``).

    async with RestClient("http://127.0.0.1:8080") as api:
        await api.login("DEMO1", "demo1")
        order = await api.call("POST", "/api/v1/order", symbol="BTC-USD", side="BUY",
                               type="LIMIT", price="30000.00", quantity="0.10")
"""

from __future__ import annotations

import ssl
import time
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

import msgspec
from aiohttp import ClientSession, ClientTimeout, ClientWebSocketResponse, TCPConnector
from yarl import URL

from procs.gateway.signing import API_KEY, RECV_WINDOW, SIGNATURE, TIMESTAMP, sign


class ApiCallError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


class RestClient:
    def __init__(
        self,
        base_url: str,
        *,
        recv_window_ms: int = 5_000,
        connections: int = 16,
        tls: ssl.SSLContext | None = None,
        timeout_s: float = 30.0,
    ):
        """``tls``: for an https URL whose certificate the system does not trust (a venue's
        own CA, say: ``ssl.create_default_context(cafile=...)``). ``timeout_s``: the most a
        request may take, answer included (TimeoutError): aiohttp's default of 5 minutes held
        a script on a gateway that took the connection and never answered (review 167)."""
        self.base_url = base_url.rstrip("/")
        self.recv_window_ms = recv_window_ms
        connector = TCPConnector(limit=connections, ssl=True if tls is None else tls)
        self.session = ClientSession(connector=connector, timeout=ClientTimeout(total=timeout_s))
        self.api_key = ""
        self.secret = ""
        self.account = 0
        self._last_ms = 0

    async def __aenter__(self) -> RestClient:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self.session.close()

    async def login(self, username: str, password: str, scopes: str = "read,trade") -> None:
        """Create an API key for this user and sign with it from now on."""
        reply = await self.call(
            "POST", "/api/v1/apiKey", signed=False,
            username=username, password=password, scopes=scopes,
        )  # fmt: skip
        self.api_key, self.secret = reply["apiKey"], reply["secretKey"]
        self.account = reply["accountId"]

    def _timestamp(self) -> int:
        """Milliseconds, strictly increasing: two equal requests in one millisecond would
        otherwise sign the same bytes, and the server refuses the second as a replay."""
        self._last_ms = max(time.time_ns() // 1_000_000, self._last_ms + 1)
        return self._last_ms

    def headers(self, method: str, path: str, query: str, body: bytes) -> dict[str, str]:
        now = self._timestamp()
        window = self.recv_window_ms
        signature = sign(self.secret, now, window, method, path, query, body)
        return {
            API_KEY: self.api_key,
            TIMESTAMP: str(now),
            RECV_WINDOW: str(window),
            SIGNATURE: signature,
        }

    async def request(
        self, method: str, path: str, *, signed: bool = True, **params: Any
    ) -> tuple[int, Any]:
        """(status, decoded JSON): POST sends the parameters as a form body, the other methods
        in the query string."""
        text = urlencode({k: str(v) for k, v in params.items()})
        query, body = ("", text.encode()) if method == "POST" else (text, b"")
        form = "application/x-www-form-urlencoded" if body else ""
        return await self._send(method, path, query, body, form, signed)

    async def _send(
        self, method: str, path: str, query: str, body: bytes, content_type: str, signed: bool
    ) -> tuple[int, Any]:
        """(status, decoded JSON) of the request as given, signed unless ``signed`` is
        false."""
        headers = self.headers(method, path, query, body) if signed else {}
        if content_type:
            headers["Content-Type"] = content_type
        # as signed: yarl would otherwise unescape what it may (``%3A`` to ``:``) and send
        # bytes other than those the signature covers
        url = URL(f"{self.base_url}{path}" + (f"?{query}" if query else ""), encoded=True)
        async with self.session.request(method, url, data=body or None, headers=headers) as r:
            raw = await r.read()
            return r.status, msgspec.json.decode(raw) if raw else None

    async def call(self, method: str, path: str, *, signed: bool = True, **params: Any) -> Any:
        """The decoded answer; ``ApiCallError`` for any status but 200."""
        return _ok(*await self.request(method, path, signed=signed, **params))

    async def batch_orders(self, orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``POST /api/v1/batchOrders`` with the array in a JSON body (the gateway's cheaper
        form): an answer per order, in order (an order, or the ``{"code", "msg"}`` of one
        refused); ``ApiCallError`` for any status but 200."""
        body = msgspec.json.encode(
            {"batchOrders": [{k: str(v) for k, v in o.items()} for o in orders]}
        )
        sent = await self._send("POST", "/api/v1/batchOrders", "", body, "application/json", True)
        answers: list[dict[str, Any]] = _ok(*sent)
        return answers

    async def batch_cancel(self, symbol: str, order_ids: list[int]) -> list[dict[str, Any]]:
        """``DELETE /api/v1/batchOrders`` by ``orderIdList``: an answer per order, in order."""
        ids = msgspec.json.encode(order_ids).decode()
        answers: list[dict[str, Any]] = await self.call(
            "DELETE", "/api/v1/batchOrders", symbol=symbol, orderIdList=ids
        )
        return answers

    def stream_url(self) -> str:
        now = self._timestamp()
        window = self.recv_window_ms
        signature = sign(self.secret, now, window, "GET", "/api/v1/stream", "", b"")
        query = urlencode(
            {"apiKey": self.api_key, "timestamp": now, "recvWindow": window, "signature": signature}
        )
        return f"{self.base_url}/api/v1/stream?{query}"

    async def stream(self) -> ClientWebSocketResponse:
        """The private stream; its first message is the snapshot."""
        return await self.session.ws_connect(self.stream_url())


def _ok(status: int, body: Any) -> Any:
    """``body`` of a 200; ``ApiCallError`` for any other status."""
    if status != 200:
        raise ApiCallError(status, body)
    return body
