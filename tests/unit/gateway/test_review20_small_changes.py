"""A twentieth hostile review, of three small changes: exchangeInfo's shared status fetch
(676c9c9, ``PublicRoutes.statuses``), the audit log's once-a-pass checks (8a5f8d0,
``AuditLog``), and a balance request given up leaving its account's waiting list (e144397,
``RestOrders.abandon``). The tests that fail name a bug; the others guard what held.

Rigs: ``PublicRoutes`` over a stand-in HTTP client (a reply released or failed at will) or a
real ``aiohttp`` session against a hung server; ``AuditLog`` in a temporary directory, against
the journal's old one-``shown``-line-a-record formatting; the REST core alone (``core()``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import tempfile
from pathlib import Path
from types import SimpleNamespace, TracebackType
from typing import Any, cast

import aiohttp
import pytest

from procs.common.records import Balance, Trade, WatchBalances
from procs.common.types import Side
from procs.gateway import rest_public
from procs.gateway.audit import AuditLog, shown
from procs.gateway.rest import RestApi
from procs.gateway.rest_public import PublicRoutes
from tests.unit.gateway.test_rest_orders import ALICE, BOB, GW, SYM, core

TRADING = b'[{"symbol": "BTC-USD", "stream": "btcusd", "status": "TRADING"}]'
HALTED = b'[{"symbol": "BTC-USD", "stream": "btcusd", "status": "HALT"}]'


# -- 676c9c9: exchangeInfo's statuses, one fetch shared ------------------------------------------


class _Reply:
    """One ``client.get``: waits for its client's verdict, then answers it or raises it."""

    def __init__(self, client: _Client) -> None:
        self.client = client
        self.status = 200

    async def __aenter__(self) -> _Reply:
        self.client.asked.set()
        verdict = await self.client.verdict
        if isinstance(verdict, BaseException):
            raise verdict
        self.body = verdict
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def read(self) -> bytes:
        return self.body


class _Client:
    """A stand-in ``aiohttp.ClientSession``: every ``get`` is counted and waits for
    ``answer`` or ``fail`` (a fresh verdict after ``reset``)."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.reset()

    def reset(self) -> None:
        self.asked = asyncio.Event()
        self.verdict: asyncio.Future[bytes | BaseException] = (
            asyncio.get_running_loop().create_future()
        )

    def get(self, url: str, **_: Any) -> _Reply:
        self.urls.append(url)
        return _Reply(self)

    def answer(self, body: bytes) -> None:
        self.verdict.set_result(body)

    def fail(self, exc: BaseException) -> None:
        self.verdict.set_result(exc)


def _routes(client: object, market_url: str = "http://market-data") -> PublicRoutes:
    api = SimpleNamespace(market_url=market_url, client=client)
    return PublicRoutes(cast(RestApi, api))


def _capture(loop: asyncio.AbstractEventLoop) -> list[str]:
    """The messages the loop's exception handler is given (an unretrieved task exception, a
    task destroyed pending, an unhandled callback error)."""
    messages: list[str] = []
    loop.set_exception_handler(
        lambda _loop, context: messages.append(
            f"{context['message']}: {context.get('exception')!r}"
        )
    )
    return messages


async def _collected() -> None:
    """Let done callbacks run, then collect: a task's unretrieved exception is reported when
    the task is freed."""
    await asyncio.sleep(0.01)
    gc.collect()
    await asyncio.sleep(0)


def test_a_fetch_whose_callers_all_left_does_not_log_an_unretrieved_exception() -> None:
    """Every exchangeInfo waiting on the shared fetch went away (client gone, the server
    shutting down: the handler cancelled), then the fetch fails with an exception the fetch
    does not expect (a ValueError here; a RuntimeError "Session is closed" at shutdown is
    another). The fetch task is the gateway's own now, not a handler's, and nobody retrieves
    its exception: ``asyncio.shield`` drops its retrieving callback when its outer future is
    cancelled first, and the done-callback ``_fetched`` only clears ``_fetching``. asyncio
    logs "Task exception was never retrieved" with the traceback (the old code raised it in
    the handler, which aiohttp logs as the request's error). Expected: the fetch's outcome
    is always retrieved (``_fetched`` calls ``fetching.exception()`` when not cancelled)."""

    async def scenario() -> list[str]:
        messages = _capture(asyncio.get_running_loop())
        client = _Client()
        routes = _routes(client)
        caller = asyncio.ensure_future(routes.statuses())
        await client.asked.wait()  # the fetch is in flight
        caller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await caller
        del caller  # its CancelledError's traceback holds the fetch in a frame
        client.fail(ValueError("an exception the fetch does not expect"))
        await _collected()
        assert routes._fetching is None
        return messages

    assert asyncio.run(scenario()) == []


def test_a_caller_cancelled_while_waiting_leaves_the_others_their_answer() -> None:
    """Guard: of two callers of one fetch, one cancelled; the other still gets the answer,
    the fetch is not cancelled, and its answer serves the next call without a new fetch."""

    async def scenario() -> None:
        messages = _capture(asyncio.get_running_loop())
        client = _Client()
        routes = _routes(client)
        gone = asyncio.ensure_future(routes.statuses())
        stays = asyncio.ensure_future(routes.statuses())
        await client.asked.wait()
        gone.cancel()
        await asyncio.sleep(0)
        client.answer(TRADING)
        assert await stays == {"BTC-USD": "TRADING"}
        assert gone.cancelled()
        assert await routes.statuses() == {"BTC-USD": "TRADING"}
        assert len(client.urls) == 1
        del gone, stays
        await _collected()
        assert messages == []

    asyncio.run(scenario())


def test_an_unexpected_exception_does_not_poison_the_next_calls() -> None:
    """Guard: a ValueError in the fetch reaches the callers waiting on it (as the old code's
    did), is not cached, and the next call fetches anew and answers."""

    async def scenario() -> None:
        client = _Client()
        routes = _routes(client)
        first = asyncio.gather(routes.statuses(), routes.statuses(), return_exceptions=True)
        await client.asked.wait()
        client.fail(ValueError("odd"))
        assert [type(r) for r in await first] == [ValueError, ValueError]
        await asyncio.sleep(0)
        assert routes._fetching is None
        client.reset()
        second = asyncio.ensure_future(routes.statuses())
        await client.asked.wait()
        client.answer(HALTED)
        assert await second == {"BTC-USD": "HALT"}
        assert len(client.urls) == 2

    asyncio.run(scenario())


def test_a_market_data_restart_shows_its_new_view_once_the_windows_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Guard: HALT, then market data down (a refused connection: UNKNOWN, and UNKNOWN at
    once for STATUS_RETRY_S without asking), then back TRADING: it shows at the first call
    after the window, from a new fetch."""
    monkeypatch.setattr(rest_public, "STATUS_TTL_S", 0.05)
    monkeypatch.setattr(rest_public, "STATUS_RETRY_S", 0.15)

    async def scenario() -> None:
        client = _Client()
        routes = _routes(client)
        client.answer(HALTED)
        assert await routes.statuses() == {"BTC-USD": "HALT"}
        await asyncio.sleep(0.06)
        client.reset()
        client.fail(ConnectionRefusedError(111, "refused"))
        assert await routes.statuses() == {}
        assert await routes.statuses() == {} and len(client.urls) == 2  # not asked again
        client.reset()
        client.answer(TRADING)
        await asyncio.sleep(0.16)
        assert await routes.statuses() == {"BTC-USD": "TRADING"}
        assert len(client.urls) == 3

    asyncio.run(scenario())


def test_the_session_closed_at_shutdown_while_a_fetch_is_in_flight() -> None:
    """Guard: the handler is cancelled (aiohttp's cleanup) while the fetch hangs on a real
    session, then the session is closed (``RestApi.stop``): the fetch ends as a failure
    (UNKNOWN), nothing is left pending or unretrieved."""

    async def scenario() -> None:
        messages = _capture(asyncio.get_running_loop())

        async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                await reader.readuntil(b"\r\n\r\n")  # the request, never answered
                await reader.read()  # until the gateway's side closes
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

        server = await asyncio.start_server(hang, "127.0.0.1", 0)
        session = aiohttp.ClientSession()
        routes = _routes(session, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
        caller = asyncio.ensure_future(routes.statuses())
        await asyncio.sleep(0.1)
        fetching = routes._fetching
        assert fetching is not None and not fetching.done()
        caller.cancel()
        await session.close()
        await asyncio.wait_for(asyncio.shield(fetching), 1)
        assert fetching.result() == {} and routes._fetching is None
        server.close()
        await server.wait_closed()
        del caller, fetching
        await _collected()
        assert messages == []

    asyncio.run(scenario())


# -- 8a5f8d0: the audit log's checks once a pass ------------------------------------------------


class _OldAuditLog:
    """The journal as 8a5f8d0^ wrote it: each record one ``shown`` line, formatted at once."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("ab")
        self._lines: list[bytes] = []

    def record(self, ts_ns: int, inbound: bool, comp_id: str, raw: bytes) -> None:
        self._lines.append(
            b"%d %s %s %s\n" % (ts_ns, b"in" if inbound else b"out", comp_id.encode(), shown(raw))
        )

    def flush(self) -> None:
        if self._lines:
            self._file.write(b"".join(self._lines))
            self._lines.clear()
            self._file.flush()

    def close(self) -> None:
        self.flush()
        self._file.close()


_PIECES = [
    b"8=FIX.4.4\x01", b"35=D\x01", b"554=hunter2\x01", b"925=new\x01", b"55", b"4=x\x01",
    b"92", b"5=y\x01", b"\x01", b"58=a|b\x01", b"58=c\\d\x01", b"\r\n", b"554", b"=", b"10=000\x01",
    b"", b"9", b"25=", b"\x01554=", b"|", b"\x00\xff",
]  # fmt: skip


def _message(rng: random.Random) -> bytes:
    return b"".join(rng.choice(_PIECES) for _ in range(rng.randrange(0, 8)))


def test_random_passes_are_written_as_the_old_journal_wrote_them() -> None:
    """Guard: 300 passes of random messages (secrets split across two messages' boundary, a
    '55' ending one and '4=' starting the next, unsafe bytes, empty ones, plain passes), as
    the old implementation wrote them, byte for byte (comp ids without an unsafe byte: the
    new one escapes those, on purpose)."""
    rng = random.Random(20)
    with tempfile.TemporaryDirectory() as tmp:
        new, old = AuditLog(Path(tmp) / "new.log"), _OldAuditLog(Path(tmp) / "old.log")
        ts = 0
        for _ in range(300):
            plain = rng.random() < 0.4
            for _ in range(rng.randrange(0, 12)):
                ts += rng.randrange(1, 10**9)
                raw = b"8=FIX.4.4\x0135=0\x01" if plain else _message(rng)
                inbound, comp = rng.random() < 0.5, rng.choice(["CLIENT1", "MM", "ü-user"])
                new.record(ts, inbound, comp, raw)
                old.record(ts, inbound, comp, raw)
            new.flush()
            old.flush()
        new.close()
        old.close()
        assert (Path(tmp) / "new.log").read_bytes() == (Path(tmp) / "old.log").read_bytes()


def test_a_large_pass_masks_its_one_secret_and_keeps_one_line_a_message() -> None:
    """Guard: 20,000 plain messages and one logon with a password, split over two
    messages in the joined text or whole in one: never written unmasked, one line each."""
    with tempfile.TemporaryDirectory() as tmp:
        log = AuditLog(Path(tmp) / "audit.log")
        plain = b"8=FIX.4.4\x0135=0\x0158=55\x01"
        for i in range(20_000):
            log.record(i, True, "CLIENT1", plain)
        log.record(20_000, True, "CLIENT1", b"35=A\x01554=hunter2\x01925=n3w\x01")
        log.record(20_001, False, "CLIENT1", b"58=ends in 55")  # then "4=" starts the next
        log.record(20_002, False, "CLIENT1", b"4=not a secret\x01")
        log.flush()
        log.flush()  # a pass without messages writes nothing
        log.close()
        lines = (Path(tmp) / "audit.log").read_bytes().split(b"\n")
    assert len(lines) == 20_004 and lines[-1] == b""
    assert lines[0] == b"0 in CLIENT1 8=FIX.4.4|35=0|58=55|"
    assert lines[20_000] == b"20000 in CLIENT1 35=A|554=***|925=***|"
    assert lines[20_001:20_003] == [
        b"20001 out CLIENT1 58=ends in 55",
        b"20002 out CLIENT1 4=not a secret|",
    ]
    assert b"hunter2" not in b"\n".join(lines) and b"n3w" not in b"\n".join(lines)


def test_a_comp_id_with_a_bar_or_a_newline_stays_on_its_line() -> None:
    """Guard: a comp id an admin chose ('a|b', 'x\\ny', one with SOH) is escaped in the
    prefix, in a plain pass and in one that takes the per-message path."""
    with tempfile.TemporaryDirectory() as tmp:
        log = AuditLog(Path(tmp) / "audit.log")
        for comp in ("a|b", "x\ny", "s\x01t"):
            log.record(1, True, comp, b"35=0\x01")
            log.flush()
            log.record(2, False, comp, b"35=0\x0158=x|y\x01")
            log.flush()
        log.close()
        lines = (Path(tmp) / "audit.log").read_bytes().split(b"\n")
    assert lines == [
        b"1 in a\\|b 35=0|", b"2 out a\\|b 35=0|58=x\\|y|",
        b"1 in x\\ny 35=0|", b"2 out x\\ny 35=0|58=x\\|y|",
        b"1 in s|t 35=0|", b"2 out s|t 35=0|58=x\\|y|", b"",
    ]  # fmt: skip


def test_a_record_after_close_is_dropped_as_before() -> None:
    """Guard: as the old journal, a record after ``close`` raises nothing (its flush would
    find the file closed; the server flushes no more then)."""
    with tempfile.TemporaryDirectory() as tmp:
        log = AuditLog(Path(tmp) / "audit.log")
        log.record(1, True, "CLIENT1", b"35=0\x01")
        log.close()
        log.record(2, True, "CLIENT1", b"35=0\x01")
        with pytest.raises(ValueError):
            log.flush()
        assert (Path(tmp) / "audit.log").read_bytes() == b"1 in CLIENT1 35=0|\n"


# -- e144397: a balance request given up leaves its account's waiting list ------------------------


def _waiting_core() -> Any:
    """A core whose ALICE balances are known but behind a trade seen here: a request waits."""
    c, out = core()
    c.touch(ALICE, 1, 0.0)
    watch = out.pop()
    assert isinstance(watch, WatchBalances)
    c.process(Balance(30, 0, GW, 1, watch.client_ref, ALICE, 1, 5_000_000, 0, 1))
    c.process(Trade(41, 0, 1, SYM.id, 10_000, 100, Side.BUY, 3, BOB, 0, 0, 7, ALICE, GW, 0))
    out.clear()
    return c


def test_abandoning_the_renewal_leaves_its_waiters_to_its_late_snapshot() -> None:
    """Guard: the renewal's own ref given up (its HTTP request timed out) was never in the
    waiting list; those waiting with it stay there, and its snapshot, late, answers them."""
    c = _waiting_core()
    first = c.account_balances(ALICE)
    renewal = c.renew_watch(ALICE)
    joined = c.renew_watch(ALICE)  # a renewal is in flight: waits with it
    assert c._renewing == {ALICE: renewal} and c._stale == {ALICE: [first, joined]}
    c.abandon(renewal)
    c.abandon(renewal)  # twice: nothing more
    assert renewal not in c.requests and c._stale == {ALICE: [first, joined]}
    c.abandon(first)
    assert c._stale == {ALICE: [joined]}
    c.process(Balance(42, 0, GW, 1, renewal, ALICE, 2, 100, 0, 1))
    c.end_of_batch()
    assert [ref for ref, _ in c.completed] == [joined]
    assert c._stale == {} and c._renewing == {}


def test_abandoning_the_renewal_lets_the_next_request_renew_again() -> None:
    """Guard: with the renewal given up and no snapshot, the next renewal asks anew rather
    than wait on the one given up; the last waiter given up leaves no empty list behind."""
    c = _waiting_core()
    renewal = c.renew_watch(ALICE)
    c.abandon(renewal)
    again = c.renew_watch(ALICE)
    assert again != renewal and c._renewing == {ALICE: again} and again in c.requests
    waiter = c.renew_watch(ALICE)
    c.abandon(waiter)
    assert c._stale == {}


def test_abandoning_what_is_not_a_balance_request_keeps_it() -> None:
    """Guard: a new order given up stays in ``requests`` (its answer still comes); an
    unknown ref is nothing to do; the waiting lists are untouched."""
    c = _waiting_core()
    waiting = c.account_balances(ALICE)
    ref = c.mass_cancel(ALICE, 1, 0, 0)
    c.abandon(ref)
    c.abandon(999_999)
    assert ref in c.requests and c._stale == {ALICE: [waiting]}
