"""FIX 4.4 SecurityStatusRequest (e) -> SecurityStatus (f): whether a symbol trades or is
halted, asked once or followed, so a FIX client learns of a halt before its orders are
refused for it.

SubscriptionRequestType (263): 0, a snapshot: one SecurityStatus; 1, a snapshot, then one
at each change of the symbol's status, a halt or a resume (UnsolicitedIndicator 325=Y; an
end of session, or a halt of a symbol the follower was last told is halted, changes
nothing, whatever the gateway read before it started), until a 2 for the symbol
(answered with nothing) or the session's end (a subscription is its connection's, taken
again after a logon, as a market-data subscription is). SecurityStatusReqID (324) is the
request's. SecurityTradingStatus (326): 17, ready to trade; 2, trading halt; 20, unknown,
when the gateway cannot tell (Text 58 says why), the way ``exchangeInfo`` says UNKNOWN.

A halt or resume reaches every gateway as the matcher's SymbolStatus event (each gateway
reads every event of the matchers' rings) and is pushed to the subscribers as it is read,
with its TransactTime (60), but to one whose snapshot still waits for market data: that
snapshot, sent after, says it, so a subscription's snapshot comes first. A snapshot is the
newest status such an event brought since the gateway started; before one came, the
market-data process's (which follows the matchers and is reseeded from their state after a
restart), asked as ``exchangeInfo`` asks it (``rest_public.MarketStatuses``: a second at
most, shared and kept half a second), the answer sent when it comes, unless the session
has ended meanwhile.

An unknown symbol is refused with a BusinessMessageReject (380=2, unknown security) naming
it; a session follows at most every configured symbol (one subscription a symbol, the
newest SecurityStatusReqID its pushes'), so what a client can make the gateway hold is
bounded by the config.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final

from procs.common import wall_clock
from procs.common.records import Record, SymbolStatus
from procs.common.types import AdminAction, TradingStatus
from procs.gateway.fix import FixMessage, Timestamps, field, shown
from procs.gateway.session import Session

if TYPE_CHECKING:  # aiohttp only once a snapshot needs market data: a FIX-only gateway
    from aiohttp import ClientSession  # starts without the HTTP stack (server.py)

    from procs.gateway.rest_public import MarketStatuses
    from procs.gateway.server import GatewayServer

#: SecurityTradingStatus (326), FIX 4.4.
READY_TO_TRADE: Final = 17
TRADING_HALT: Final = 2
UNKNOWN: Final = 20
#: SymbolStatus's status -> SecurityTradingStatus.
_BY_STATUS: Final = {TradingStatus.OPEN: READY_TO_TRADE, TradingStatus.HALTED: TRADING_HALT}
#: market data's status text (``/api/symbols``, exchangeInfo's) -> SecurityTradingStatus.
_BY_TEXT: Final = {"TRADING": READY_TO_TRADE, "HALT": TRADING_HALT}
_TIMES: Final = Timestamps()


class SecurityStatuses:
    """The gateway's SecurityStatus requests, subscriptions and pushes. It hooks itself into
    ``server``'s order entry: requests (e) and SymbolStatus events come to it from there."""

    def __init__(self, server: GatewayServer) -> None:
        self.server = server
        entry = server.entry
        self.by_name = entry.instruments.by_name
        self.names = {s.id: name for name, s in self.by_name.items()}
        #: symbol id -> (SecurityTradingStatus, the event's time) of the newest event read
        self.seen: dict[int, tuple[int, int]] = {}
        #: symbol name -> session id -> (the session, its SecurityStatusReqID)
        self.followers: dict[bytes, dict[int, tuple[Session, bytes]]] = {}
        #: (session id, symbol name) -> the status a follower was last sent: a push goes
        #: where it says a change, the follower's, not the gateway's (review 326: after a
        #: restart a halt of a halted symbol was pushed to those told of it by a snapshot)
        self.told: dict[tuple[int, bytes], int] = {}
        md = server.cfg.marketdata
        self._market_url = f"http://{md.host}:{md.port}" if md.enabled else None
        self._client: ClientSession | None = None  # its own, where no REST API shares one
        self._market: MarketStatuses | None = None
        self._asking: set[asyncio.Future[None]] = set()  # snapshots waiting for market data
        #: (session id, symbol) -> its snapshots waiting for market data: its pushes wait too
        #: (the snapshot, sent after, says the newest status), so a subscription's comes first
        self._waiting: dict[tuple[int, bytes], int] = {}
        entry.shell_requests[b"e"] = self.request
        entry.shell_events = self.on_event

    def request(self, session: Session, msg: FixMessage, now_ns: int) -> None:
        name, ref = msg.get(55) or b"", msg.get(324) or b""
        symbol = self.by_name.get(name)
        if symbol is None:
            known = ", ".join(n.decode() for n in self.by_name)
            text = f"unknown symbol {shown(name)}: the symbols are {known}"
            session.business_reject(msg, 2, text, now_ns)  # 380=2: unknown security
            return
        kind = msg.get(263)
        followers = self.followers.setdefault(name, {})
        if kind == b"2":
            followers.pop(session.session_id, None)
            self.told.pop((session.session_id, name), None)
            return
        if kind == b"1":
            followers[session.session_id] = (session, ref)
        seen = self.seen.get(symbol.id)
        if seen is not None:
            session.send(b"f", _status(ref, name, seen[0], False, seen[1]), now_ns)
            self._tell(session, name, seen[0])
            return
        key = (session.session_id, name)
        self._waiting[key] = self._waiting.get(key, 0) + 1
        asking = asyncio.ensure_future(self._from_market(session, ref, name, symbol.id, key))
        self._asking.add(asking)  # held until done (the loop keeps only a weak reference)
        asking.add_done_callback(self._asking.discard)

    def on_event(self, event: Record) -> None:
        """A SymbolStatus read from a matcher's ring: kept, and pushed to the followers."""
        if type(event) is not SymbolStatus:
            return
        status = _BY_STATUS.get(event.status, UNKNOWN)
        at_ns, symbol = event.ts_ns, event.symbol
        self.seen[symbol] = (status, at_ns)
        name = self.names.get(symbol)
        if name is None or event.action == AdminAction.END_OF_SESSION:
            return  # an end of session changes no status
        followers, now_ns = self.followers.get(name, {}), wall_clock.now_ns()
        for session_id, (session, ref) in list(followers.items()):
            key = (session_id, name)
            if session.closed:
                del followers[session_id]  # its connection ended: its subscriptions too
                self.told.pop(key, None)
            elif self._waiting.get(key) or self.told.get(key) == status:
                continue  # its snapshot, sent after, says it; or a halt of a halted symbol
            else:  # written at the end of the pump's batch, as the reports it reads are
                session.send(b"f", _status(ref, name, status, True, at_ns), now_ns)
                self.told[key] = status

    async def _from_market(
        self, session: Session, ref: bytes, name: bytes, symbol: int, key: tuple[int, bytes]
    ) -> None:
        """Answers the snapshot from market data's statuses (or an event read meanwhile)."""
        try:
            statuses = await self.market().statuses()
        finally:
            if left := self._waiting.pop(key) - 1:
                self._waiting[key] = left
        seen = self.seen.get(symbol)
        if seen is not None:
            status, at_ns, extra = seen[0], seen[1], b""
        else:
            said = statuses.get(name.decode())
            status, at_ns = _BY_TEXT.get(said or "", UNKNOWN), 0
            if self._market_url is None:
                why = "is disabled"
            elif not statuses:
                why = "did not answer"
            else:
                why = f"says {said!r}" if said else "does not list it"
            text = f"no halt or resume seen since the gateway started, and market data {why}"
            extra = field(58, text) if status == UNKNOWN else b""
        live = self.server.entry.sessions.get(session.session_id)
        if live is not session or session.closed:
            return  # a status is not parked: a new session asks again
        session.send(b"f", _status(ref, name, status, False, at_ns) + extra, wall_clock.now_ns())
        self._tell(session, name, status)
        self.server.write_now(session)

    def _tell(self, session: Session, name: bytes, status: int) -> None:
        """``session`` was sent ``status`` of ``name``: kept where it follows ``name``."""
        if session.session_id in self.followers.get(name, {}):
            self.told[(session.session_id, name)] = status

    def market(self) -> MarketStatuses:
        """The fetcher of market data's statuses, made at its first use."""
        if self._market is None:
            from procs.gateway.rest_public import MarketStatuses  # noqa: PLC0415  (aiohttp)

            self._market = MarketStatuses(self._link, "SecurityStatus")
        return self._market

    def _link(self) -> tuple[str | None, ClientSession | None]:
        """Market data's URL and a client: the REST API's, else one of its own."""
        if self._market_url is None:
            return None, None
        api = self.server.api
        if api is not None and api.client is not None:
            return self._market_url, api.client
        if self._client is None:
            from aiohttp import ClientSession, ClientTimeout  # noqa: PLC0415  (FIX only)

            self._client = ClientSession(timeout=ClientTimeout(total=5))
        return self._market_url, self._client

    async def close(self) -> None:
        """At the gateway's shutdown: the snapshots waiting for market data, then its own
        client, if it made one."""
        for asking in list(self._asking):
            asking.cancel()
        await asyncio.gather(*self._asking, return_exceptions=True)
        if self._client is not None:
            await self._client.close()
            self._client = None


def _status(ref: bytes, name: bytes, status: int, pushed: bool, at_ns: int) -> bytes:
    body = field(324, ref) if ref else b""
    body += field(55, name) + field(325, b"Y" if pushed else b"N") + field(326, status)
    return body + (field(60, _TIMES.format(at_ns)) if at_ns else b"")
