"""Review 165: a hostile reading of SecurityListRequest (x) -> SecurityList (y) and
SecurityStatusRequest (e) -> SecurityStatus (f) (``security_list.py``, ``security_status.py``),
over real TCP with the simplefix client; every y and f the gateway sends is checked against
the FIX 4.4 dictionary (``dictionary.first_fault``) and, for f, QuickFIX's field order. A
fault found is an ``xfail(strict=True)`` asserting the right behaviour.

Faults found, fixed since: a j refusing an e named no BusinessRejectRefID (379); an
END_OF_SESSION read first was pushed as a change; a push's SendingTime was the event's time;
Text said market data "did not answer" when it answered without the symbol's status; a
subscription's snapshot could come after the push of a halt read while it waited. Left, a
documented limit: an x or e read after the gateway's own Logout is answered."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import msgspec
import pytest
import simplefix  # ships no type information
from aiohttp import web

from config.schema import SymbolConfig
from procs.common.records import AdminCommand
from procs.common.types import AdminAction
from procs.gateway import dictionary, security_status
from procs.gateway.fix import FixMessage, parse
from tests.unit.gateway.harness import (
    Client,
    Harness,
    config,
    run_scenario,
    small_ring_exchange,
    utc,
)

READY, HALT, UNKNOWN = (
    str(v).encode()
    for v in (security_status.READY_TO_TRADE, security_status.TRADING_HALT, security_status.UNKNOWN)
)
_SPEC = json.loads((Path(dictionary.__file__).parent / "fix44.json").read_text())
_HEADER = {8, 9, 35, 49, 56, 34, 43, 97, 52, 122}


@pytest.fixture
def h(instance: str, tmp_path: Path) -> Iterator[Harness]:
    """ALICE (account 7) and BOB (8), password "secret"; one symbol, BTC-USD (id 1)."""
    yield small_ring_exchange(instance, tmp_path, 4096, users=("ALICE", "BOB"))


@pytest.fixture
def h2(instance: str, tmp_path: Path) -> Iterator[Harness]:
    """ALICE; two symbols on one matcher: BTC-USD (id 1), ETH-USD (id 2)."""
    cfg = config(instance, tmp_path)
    eth = SymbolConfig(name="ETH-USD", id=2, price_decimals=2, qty_decimals=2, tick=5, base="BTC")
    matchers = [
        msgspec.structs.replace(m, batch=16, symbols=["BTC-USD", "ETH-USD"]) for m in cfg.matchers
    ]
    cfg = msgspec.structs.replace(cfg, symbols=[*cfg.symbols, eth], matchers=matchers)
    harness = Harness(cfg)
    harness.add_user("ALICE", "secret", 7)
    harness.fund(7)
    yield harness


def admin(h: Harness, action: AdminAction, symbol: int = 1) -> None:
    h.funder.publish_batch([AdminCommand(0, 0, action, symbol, time.time_ns())])


async def logged_on(port: int, comp: str = "ALICE") -> Client:
    client = Client(comp)
    await client.connect(port)
    await client.logon("secret", reset=True)
    return client


async def ask(
    client: Client,
    ref: str,
    kind: int,
    symbol: str = "BTC-USD",
    *,
    seq: int | None = None,
    poss_dup: bool = False,
    poss_resend: bool = False,
    orig_sending_time: bytes | None = None,
) -> None:
    pairs = ((324, ref), (55, symbol), (263, kind))
    flags = {"poss_dup": poss_dup, "poss_resend": poss_resend}
    await client.send("e", *pairs, seq=seq, orig_sending_time=orig_sending_time, **flags)


def status(f: simplefix.FixMessage) -> tuple[bytes | None, ...]:
    return f.get(324), f.get(55), f.get(325), f.get(326)


async def nothing_more(client: Client) -> None:
    """Nothing came before the answer to a TestRequest sent now."""
    await client.send("1", (112, "sync"))
    assert (await client.expect("0", timeout=3.0)).get(112) == b"sync"


def checked(m: simplefix.FixMessage) -> FixMessage:
    """The gateway's message as its bytes were, valid by the FIX 4.4 dictionary; an f's body
    in QuickFIX's FIX44.xml field order."""
    raw = b"".join(b"%s=%s\x01" % (t, v) for t, v in m.pairs)
    msg = parse(raw)
    assert isinstance(msg, FixMessage), raw
    assert dictionary.first_fault(msg) is None, (dictionary.first_fault(msg), raw)
    if msg.msg_type == b"f":
        body = [t for t, _ in msg.pairs if t not in _HEADER and t != 10]
        order = _SPEC["messages"]["f"][1]
        assert body == sorted(body, key=order.index), body
    return msg


async def market(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> tuple[web.AppRunner, str]:
    """A stand-in market-data process answering GET /api/symbols with ``handler``."""
    app = web.Application()
    app.router.add_get("/api/symbols", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


@contextlib.asynccontextmanager
async def market_at(
    h: Harness,
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    then: Callable[[], object] = lambda: None,
) -> AsyncIterator[None]:
    """The gateway's market data a stand-in answering with ``handler``; on the way out the
    gateway stops (its own ClientSession closed before the stand-in goes), then ``then``."""
    runner, url = await market(handler)
    gw = h.gateway
    assert gw is not None
    gw.security_statuses._market_url = url
    try:
        yield
    finally:
        await h.stop()
        then()
        await runner.cleanup()


# -- wire format, resends, audit --------------------------------------------------------------


def test_every_y_and_f_is_valid_fix44_resent_as_possdup_and_audited(h: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        gw = h.gateway
        assert gw is not None
        alice = await logged_on(port)
        sent: list[simplefix.FixMessage] = []
        for pairs in (((559, 4),), ((559, 0), (55, "BTC-USD")), ((559, 0), (55, "X")), ((559, 2),)):
            await alice.send("x", (320, "r"), *pairs)
            sent.append(await alice.expect("y"))
        await ask(alice, "s", 1)  # no market data: 20 with its Text
        sent.append(unknown := await alice.expect("f"))
        assert status(unknown)[3] == UNKNOWN and unknown.get(58)
        admin(h, AdminAction.HALT)
        sent.append(pushed := await alice.expect("f"))
        assert status(pushed) == (b"s", b"BTC-USD", b"Y", HALT) and pushed.get(60)
        for m in sent:
            checked(m)
        # a ResendRequest from 1: the Logon gap-filled, each y and f again as a PossDup copy
        await alice.send("2", (7, 1), (16, 0))
        assert (await alice.expect("4")).get(36) == b"2"
        for first in sent:
            copy = await alice.expect(first.get(35).decode())
            assert copy.get(43) == b"Y" and copy.get(122) == first.get(52)
            assert copy.get(34) == first.get(34)
            assert [p for p in copy.pairs if p[0] not in (b"9", b"10", b"43", b"52", b"122")] == [
                p for p in first.pairs if p[0] not in (b"9", b"10", b"52")
            ]
            checked(copy)
        await nothing_more(alice)
        gw.audit.flush()
        lines = (gw.directory / "audit.log").read_bytes().splitlines()
        out = [ln for ln in lines if b" out ALICE " in ln]
        assert sum(b"|35=y|" in ln for ln in out) == 8 and sum(b"|35=f|" in ln for ln in out) == 4
        await alice.aclose()

    run_scenario(h, scenario)


def test_malformed_requests_are_session_rejects_and_the_session_goes_on(h: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        cases: list[tuple[str, list[tuple[int, object]], bytes, bytes]] = [
            ("e", [(324, ""), (55, "BTC-USD"), (263, 0)], b"324", b"4"),  # empty value
            ("e", [(324, "a"), (55, "BTC-USD"), (55, "BTC-USD"), (263, 0)], b"55", b"13"),
            ("e", [(324, "a"), (263, 0)], b"55", b"1"),  # Symbol missing
            ("e", [(55, "BTC-USD"), (263, 1)], b"324", b"1"),  # SecurityStatusReqID missing
            ("e", [(324, "a"), (55, "BTC-USD"), (263, "")], b"263", b"4"),
            ("x", [(559, 4)], b"320", b"1"),  # SecurityReqID missing
            ("x", [(320, "r"), (559, "x")], b"559", b"6"),  # not an int
            ("x", [(320, "r"), (559, 4), (263, 5)], b"263", b"5"),
        ]
        for kind, pairs, tag, reason in cases:
            await alice.send(kind, *pairs)
            reject = await alice.expect("3")
            assert (reject.get(371), reject.get(373)) == (tag, reason), (kind, pairs)
        await nothing_more(alice)
        gw = h.gateway
        assert gw is not None and set(gw.security_statuses.followers) <= {b"BTC-USD"}
        await alice.aclose()

    run_scenario(h, scenario)


def test_possdup_copies_are_answered_again_and_unknown_symbols_hold_nothing(h: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        gw = h.gateway
        assert gw is not None
        alice = await logged_on(port)
        admin(h, AdminAction.HALT)
        await asyncio.sleep(0.1)
        await ask(alice, "p", 1)
        assert status(await alice.expect("f")) == (b"p", b"BTC-USD", b"N", HALT)
        # a PossDup of a seq already taken is ignored (FIX); a PossResend copy is answered
        await ask(alice, "p", 1, seq=alice.seq - 1, poss_dup=True, orig_sending_time=utc())
        await ask(alice, "p", 1, poss_resend=True, orig_sending_time=utc())
        assert status(await alice.expect("f")) == (b"p", b"BTC-USD", b"N", HALT)
        await alice.send("x", (320, "c"), (559, 4), poss_resend=True)
        assert (await alice.expect("y")).get(560) == b"0"
        for k in range(50):
            await ask(alice, f"u{k}", 1, f"NO{k}-USD")
            await alice.expect("j")
        assert list(gw.security_statuses.followers) == [b"BTC-USD"]
        assert not gw.security_statuses._asking
        await alice.aclose()

    run_scenario(h, scenario)


def test_the_reject_of_an_e_names_its_security_status_req_id(h: Harness) -> None:
    """Expected: the BusinessMessageReject of a SecurityStatusRequest for an unknown symbol
    carries BusinessRejectRefID (379) = its SecurityStatusReqID (324), as FIX 4.4 requires
    ("required unless the corresponding ID field was not specified") and as an x's j does.
    Was: no 379, ``Session.business_reject`` looking at 11, 584 and 320 only (fixed)."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await ask(alice, "ref-42", 0, "DOGE-USD")
        j = await alice.expect("j")
        assert (j.get(372), j.get(380)) == (b"e", b"2")
        assert j.get(379) == b"ref-42"

    run_scenario(h, scenario)


# -- pushes -----------------------------------------------------------------------------------


def test_pushes_go_to_each_follower_with_its_newest_ref(h: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        alice, bob = await logged_on(port), await logged_on(port, "BOB")
        admin(h, AdminAction.RESUME)  # a first event: the snapshots are the gateway's own
        await asyncio.sleep(0.1)
        for client, ref in ((alice, "a1"), (bob, "b1"), (alice, "a2")):
            await ask(client, ref, 1)
            assert status(await client.expect("f"))[2:] == (b"N", READY)
        await ask(alice, "snap", 0)  # a snapshot does not change the push's ref
        assert status(await alice.expect("f"))[0] == b"snap"
        admin(h, AdminAction.HALT)
        checked_f = await alice.expect("f")
        assert status(checked_f) == (b"a2", b"BTC-USD", b"Y", HALT)
        assert status(await bob.expect("f")) == (b"b1", b"BTC-USD", b"Y", HALT)
        checked(checked_f)
        admin(h, AdminAction.END_OF_SESSION)  # after a halt: nothing changed, nothing pushed
        admin(h, AdminAction.HALT)
        await asyncio.sleep(0.2)
        await nothing_more(alice)
        await nothing_more(bob)
        # a Logout ends the subscription; a new, resetting logon is not following
        await bob.send("5")
        await bob.expect("5")
        bob = await logged_on(port, "BOB")
        admin(h, AdminAction.RESUME)
        assert status(await alice.expect("f"))[3] == READY
        await nothing_more(bob)
        await alice.aclose()
        await bob.aclose()

    run_scenario(h, scenario)


def test_a_halt_of_every_symbol_reaches_each_symbols_followers(h2: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("x", (320, "all"), (559, 4))
        y = await alice.expect("y")
        assert (y.get(146), y.get(55, 1), y.get(55, 2)) == (b"2", b"BTC-USD", b"ETH-USD")
        checked(y)
        admin(h, AdminAction.RESUME, 0)
        await asyncio.sleep(0.1)
        for name in ("BTC-USD", "ETH-USD"):
            await ask(alice, name, 1, name)
            await alice.expect("f")
        admin(h, AdminAction.HALT, 0)  # symbol 0: every symbol
        got = {status(f)[1]: status(f) for f in [await alice.expect("f") for _ in "ab"]}
        assert got == {
            b"BTC-USD": (b"BTC-USD", b"BTC-USD", b"Y", HALT),
            b"ETH-USD": (b"ETH-USD", b"ETH-USD", b"Y", HALT),
        }
        await nothing_more(alice)
        await alice.aclose()

    run_scenario(h2, scenario)


def test_an_end_of_session_is_never_pushed(h: Harness) -> None:
    """Expected: as the module docstring says ("an end of session ... changes nothing"), a
    follower hears nothing at an END_OF_SESSION. Was (fixed): when it was the first
    SymbolStatus the gateway read, it was pushed as a change, 325=Y 326=17 (``on_event``
    never looked at ``event.action``)."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await ask(alice, "eos", 1)
        await alice.expect("f")  # 20: no event yet, no market data
        admin(h, AdminAction.END_OF_SESSION)
        await asyncio.sleep(0.2)
        await nothing_more(alice)

    run_scenario(h, scenario)


def test_a_pushed_status_is_stamped_when_it_is_sent(h: Harness) -> None:
    """Expected: SendingTime (52) is when the message goes out (TransactTime 60 carries the
    event's time), as every report sent through ``_deliver`` is; the audit line's time too.
    Was (fixed): ``session.send(b"f", ..., at_ns)`` stamped 52 (and the audit line, and the
    heartbeat clock) with the event's time: a gateway that read the event late sent a
    SendingTime in the past, behind messages it sent before."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        admin(h, AdminAction.RESUME)
        await asyncio.sleep(0.1)
        await ask(alice, "t", 1)
        await alice.expect("f")
        admin(h, AdminAction.HALT)
        h.step_pipeline()  # sequenced (and stamped) now, read by the gateway only after:
        time.sleep(0.4)  # the loop blocked, as a busy gateway's is
        after = time.time_ns()
        pushed = await alice.expect("f")
        stamp = time.mktime(time.strptime(pushed.get(52).decode()[:17], "%Y%m%d-%H:%M:%S"))
        sent_ns = int((stamp - time.timezone) * 1e9) + int(pushed.get(52)[18:21]) * 1_000_000
        assert sent_ns >= after - 5_000_000, (pushed.get(52), pushed.get(60))

    run_scenario(h, scenario)


# -- the snapshot from market data ------------------------------------------------------------


def test_market_data_hanging_answers_unknown_in_a_second_without_wedging(h: Harness) -> None:
    release = asyncio.Event()

    async def hangs(request: web.Request) -> web.Response:
        await release.wait()  # past the gateway's 1 s timeout
        return web.json_response([])

    async def scenario(h: Harness, port: int) -> None:
        async with market_at(h, hangs, release.set):
            alice = await logged_on(port)
            started = time.monotonic()
            await ask(alice, "hang", 0)
            await nothing_more(alice)  # the session is answered meanwhile
            assert time.monotonic() - started < 0.5
            f = await alice.expect("f", timeout=2.0)
            assert status(f) == (b"hang", b"BTC-USD", b"N", UNKNOWN)
            assert b"did not answer" in f.get(58) and 0.9 < time.monotonic() - started < 1.8
            checked(f)
            await alice.aclose()

    run_scenario(h, scenario)


def test_market_data_garbage_answers_unknown(h: Harness) -> None:
    async def garbage(request: web.Request) -> web.Response:
        return web.Response(body=b"{not json", content_type="application/json")

    async def scenario(h: Harness, port: int) -> None:
        async with market_at(h, garbage):
            alice = await logged_on(port)
            await ask(alice, "g", 1)
            f = await alice.expect("f", timeout=2.0)
            assert status(f) == (b"g", b"BTC-USD", b"N", UNKNOWN)
            checked(f)
            admin(h, AdminAction.HALT)  # the follower still hears the halt
            assert status(await alice.expect("f")) == (b"g", b"BTC-USD", b"Y", HALT)
            await alice.aclose()

    run_scenario(h, scenario)


def test_a_status_market_data_lacks_is_not_called_unanswered(h: Harness) -> None:
    """Expected: market data answered (200, its symbols, this one missing or in a status
    ringex does not map): Text (58) says so, not that it "did not answer". Was (fixed): any
    status not TRADING/HALT was explained "market data did not answer" (``_from_market``
    told only disabled from the rest)."""

    async def lacks(request: web.Request) -> web.Response:
        return web.json_response([{"symbol": "BTC-USD", "status": "BREAK"}])

    async def scenario(h: Harness, port: int) -> None:
        async with market_at(h, lacks):
            alice = await logged_on(port)
            await ask(alice, "b", 0)
            f = await alice.expect("f", timeout=2.0)
            assert status(f)[3] == UNKNOWN
            assert b"did not answer" not in f.get(58)

    run_scenario(h, scenario)


def test_a_subscriptions_snapshot_comes_before_its_updates(h: Harness) -> None:
    """Expected: a subscription (263=1) is answered with its snapshot (325=N) first, then
    the updates (325=Y), as FIX subscriptions are. Was: while the snapshot waited for
    market data, a halt read meanwhile was pushed at once, and the snapshot followed it.
    Fixed: the pushes wait for the snapshot, which says the newest status (the halt)."""

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.4)
        return web.json_response([{"symbol": "BTC-USD", "status": "TRADING"}])

    async def scenario(h: Harness, port: int) -> None:
        async with market_at(h, slow):
            alice = await logged_on(port)
            await ask(alice, "s", 1)
            await asyncio.sleep(0.1)
            admin(h, AdminAction.HALT)
            first = await alice.expect("f")
            assert (first.get(325), first.get(326)) == (b"N", HALT), first
            await alice.send("1", (112, "after"))  # and no push of the halt after it
            assert (await alice.expect("0")).get(112) == b"after"
            admin(h, AdminAction.RESUME)  # the next change is pushed
            assert status(await alice.expect("f"))[2:] == (b"Y", READY)

    run_scenario(h, scenario)


@pytest.mark.xfail(
    strict=True,
    reason="a documented limit (README, the gateway): a request read after the gateway's own "
    "Logout (its shutdown) is answered, as an order's refusal is, rather than left unanswered "
    "with its MsgSeqNum taken",
)
def test_a_request_in_the_shutdown_grace_gets_no_answer_after_the_logout(h: Harness) -> None:
    """Expected: once the gateway has sent its Logout (shutting down), it sends no more
    application messages (FIX 4.4: the logout initiator sends nothing further unless a
    ResendRequest asks). Actual: an x and an e read in LOGGING_OUT are answered, a y and an
    f after the Logout: ``Session._in_sequence`` (procs/gateway/session.py:542) hands every
    application message to the application whatever the state, and
    ``security_status._from_market`` checks only ``session.closed`` (security_status.py:130)."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        gw = h.gateway
        assert gw is not None
        stopping = asyncio.ensure_future(h.stop())
        logout = await alice.expect("5")
        assert b"shutting down" in logout.get(58)
        await ask(alice, "late", 0)
        await alice.send("x", (320, "late"), (559, 4))
        assert await alice.closed(timeout=2.0)
        assert [m.get(35) for m in alice.received if m.get(35) in (b"f", b"y")] == []
        await stopping

    run_scenario(h, scenario)
