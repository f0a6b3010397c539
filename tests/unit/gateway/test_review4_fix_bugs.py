"""A fourth hostile review of the FIX 4.4 gateway (session layer and order entry) against the
FIX 4.4 session rules, the order-handling rules of Volume 4 and what CME/LSE-style acceptors
do. Each test failed on the code it was written against: its docstring says what is wrong and
what a correct venue does. Session rules drive the sans-I/O ``Session`` with hand-framed
bytes; order flows go end to end through the harness (real TCP, router and matcher)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from procs.common.users import UserStore
from procs.gateway.fix import FixMessage, FixReader
from procs.gateway.session import Session
from procs.gateway.session_interface import SessionSettings, State
from procs.gateway.store import MessageStore
from tests.unit.gateway.harness import Client, Harness
from tests.unit.gateway.test_gateway import cancel, logged_on, order, run

_S = 1_000_000_000

# -- a sans-I/O session and an encoder of our own ----------------------------------------------


def stamp(ns: int) -> str:
    return time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(ns // _S)) + f".{ns // 10**6 % 1000:03d}"


def framed(body: str) -> bytes:
    """``body`` (fields after BodyLength, ``|`` for SOH) framed, BodyLength and CheckSum
    computed here rather than by the gateway's codec."""
    raw = body.replace("|", "\x01").encode("latin-1")
    head = b"8=FIX.4.4\x019=%d\x01" % len(raw)
    return head + raw + b"10=%03d\x01" % (sum(head + raw) % 256)


def msg(kind: str, seq: int, *pairs: tuple[int, object], now_ns: int, header: str = "") -> bytes:
    """ALICE's message ``kind`` with MsgSeqNum ``seq``; ``header`` adds fields before 52."""
    body = f"35={kind}|49=ALICE|56=RINGEX|34={seq}|{header}52={stamp(now_ns)}|"
    return framed(body + "".join(f"{t}={v}|" for t, v in pairs))


class App:
    def __init__(self) -> None:
        self.messages: list[FixMessage] = []

    def on_logon(self, session: Session, now_ns: int) -> None:
        pass

    def on_message(self, session: Session, msg: FixMessage, now_ns: int) -> None:
        self.messages.append(msg)

    def on_disconnect(self, session: Session, now_ns: int) -> None:
        pass


_STORES: list[MessageStore] = []


@pytest.fixture(autouse=True)
def _close_stores() -> Iterator[None]:
    yield
    while _STORES:
        _STORES.pop().close()


def session(tmp_path: Path, now_ns: int, **settings: Any) -> tuple[Session, App]:
    """A session of ALICE's, logged on (seq 1 each way)."""
    users = UserStore(tmp_path / "users.json")
    users.add("ALICE", "pw", 7, n=1 << 4)
    stores: dict[str, MessageStore] = {}

    def store(comp: str) -> MessageStore:
        if comp not in stores:
            stores[comp] = MessageStore(tmp_path / "sessions" / comp)
            _STORES.append(stores[comp])
        return stores[comp]

    app = App()
    s = Session(SessionSettings(comp_id="RINGEX", **settings), users, store, app, {}, now_ns)
    s.data_received(msg("A", 1, (98, 0), (108, 30), (554, "pw"), now_ns=now_ns), now_ns)
    assert [m.msg_type for m in replies(s)] == [b"A"] and s.state is State.ACTIVE
    return s, app


def replies(s: Session) -> list[FixMessage]:
    reader = FixReader(1 << 20)
    reader.feed(b"".join(s.take_output()))
    out = reader.messages()
    assert all(isinstance(m, FixMessage) for m in out)
    return out  # type: ignore[return-value]


# -- sequence numbers --------------------------------------------------------------------------


def test_a_burst_past_a_gap_asks_for_the_resend_once(tmp_path: Path) -> None:
    """Seq 2 is lost; 3, 4, 5 and 6 follow in one burst (the client has not yet seen the
    gateway's ResendRequest). Each too-high message after the first is past ``_resend_upto``
    (session.py ``_active``: ``or seq > self._resend_upto``, then ``_request_resend`` moves
    ``_resend_upto`` to that seq), so every one of them sends another ResendRequest 7=2 16=0:
    four requests, each for *everything* from 2 on. The client answers each in full, and
    every answered message past the gap is too high again until the first resend lands: n
    messages in flight cost n ResendRequests and O(n^2) resent messages.

    FIX 4.4 Vol 2, ResendRequest: "if message number 7 is missed and 8-9 received, the
    application should ignore 8 and 9 and ask for a resend of 7-9, or, preferably, 7-0": one
    request for the gap. QuickFIX (``doTargetTooHigh``, SendRedundantResendRequests=N by
    default) sends no other while one is outstanding whose range (7=2 16=0: all) covers the
    message. Expected one ResendRequest; actual four."""
    now = time.time_ns()
    s, _ = session(tmp_path, now)
    for seq in (3, 4, 5, 6):
        s.data_received(msg("1", seq, (112, f"t{seq}"), now_ns=now), now)
    asked = [(m.get(7), m.get(16)) for m in replies(s) if m.msg_type == b"2"]
    assert asked == [(b"2", b"0")], f"{len(asked)} ResendRequests for one gap: {asked}"


# -- order entry -------------------------------------------------------------------------------


async def drain(client: Client, timeout: float = 0.4) -> list[Any]:
    got = []
    while (m := await client.recv(timeout)) is not None:
        got.append(m)
    return got


def test_a_poss_resend_of_a_replace_already_done_is_not_rejected(harness: Harness) -> None:
    """o1 is replaced by r1 (150=5 11=r1 41=o1). The client, unsure the replace arrived,
    sends it again with PossResend (97=Y), a new MsgSeqNum and the same ClOrdID r1.
    ``orders.py`` ``_cancel_replace`` looks the order up by OrigClOrdID o1 *before* the
    ClOrdID check that recognises a resend (``_duplicate``): o1 is no longer live (the order
    is r1 now), so the answer is OrderCancelReject 11=r1 39=8 102=1 'unknown order'. The
    client's OMS reads it as its replace r1 refused and the order rejected, while r1 is live
    and resting.

    FIX 4.4 Vol 1 (PossResend): the receiver checks whether it has processed the message
    already and, if so, does not act on it again; a venue ignores the repeat (or answers with
    the order's current state), never a reject of a request it carried out."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("o1", "1", "1.00", "90.00"))
        assert (await alice.expect("8")).get(150) == b"0"
        replace = [(41, "o1"), *order("r1", "1", "2.00", "90.00")]
        await alice.send("G", *replace)
        done = await alice.expect("8")
        assert (done.get(150), done.get(11)) == (b"5", b"r1")
        await alice.send("G", *replace, poss_resend=True)
        answers = [m for m in await drain(alice) if m.get(35) in (b"8", b"9")]
        refusals = [m for m in answers if m.get(35) == b"9"]
        assert not refusals, f"a resend of a done replace refused: {refusals[0]}"

    run(harness, scenario)


def test_a_poss_resend_of_a_cancel_already_done_is_not_rejected(harness: Harness) -> None:
    """o1 is cancelled by c1 (150=4 11=c1). The same OrderCancelRequest sent again with
    PossResend (97=Y) is answered OrderCancelReject 11=c1 102=0 'too late': ``orders.py``
    ``_cancel_replace`` finds o1 finished and refuses before ``_duplicate`` can see that c1
    was received already. The client's OMS, having just booked c1 as done, now sees c1
    rejected. FIX 4.4 Vol 1 (PossResend): a message already processed is not acted on again;
    a venue ignores the repeat."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("o1", "1", "1.00", "90.00"))
        assert (await alice.expect("8")).get(150) == b"0"
        await alice.send("F", *cancel("o1", "c1", "1"))
        assert (await alice.expect("8")).get(150) == b"4"
        await alice.send("F", *cancel("o1", "c1", "1"), poss_resend=True)
        refusals = [m for m in await drain(alice) if m.get(35) == b"9"]
        assert not refusals, f"a resend of a done cancel refused: {refusals[0]}"

    run(harness, scenario)


def test_a_poss_resend_of_a_mass_cancel_does_not_cancel_later_orders(harness: Harness) -> None:
    """ALICE's OrderMassCancelRequest mc1 (530=7) cancels o1; she then places o2. Unsure
    that mc1 arrived (she did not see its report before a reconnect, say), her engine sends
    mc1 again with PossResend (97=Y), the same ClOrdID. ``orders.py`` ``_mass_cancel`` never
    looks at the ClOrdID (no ``_duplicate``, unlike D, F and G), so the resend is carried out
    a second time and cancels o2, an order placed after the request it repeats.

    FIX 4.4 Vol 1 (PossResend): the receiver must not act twice on a message it has already
    processed; ClOrdID (11) of an OrderMassCancelRequest is the request's unique id. A venue
    ignores the repeat (or refuses a reused ClOrdID); o2 stays live."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        mass = [(11, "mc1"), (530, "7"), (60, "20250101-00:00:00.000")]
        await alice.send("D", *order("o1", "1", "1.00", "90.00"))
        assert (await alice.expect("8")).get(150) == b"0"
        await alice.send("q", *mass)
        assert (await alice.expect("r")).get(531) == b"7"
        assert (await alice.expect("8")).get(150) == b"4"
        await alice.send("D", *order("o2", "1", "1.00", "90.00"))
        assert (await alice.expect("8")).get(150) == b"0"
        await alice.send("q", *mass, poss_resend=True)
        cancelled = [m for m in await drain(alice) if m.get(35) == b"8" and m.get(150) == b"4"]
        assert not cancelled, f"o2, placed after mc1, cancelled by its resend: {cancelled[0]}"
        assert h.router.sequencer.accounts.open_orders(7) == 1

    run(harness, scenario)


def test_a_replace_without_time_in_force_of_a_gtc_order_is_not_reported_gtc(
    harness: Harness,
) -> None:
    """A GTC bid (59=1) replaced by a G that leaves TimeInForce out. FIX 4.4 (TimeInForce,
    59): "Absence of this field indicates Day order", and a Cancel/Replace restates the whole
    order (Vol 4: fields not sent are not carried over). ``order_fields.py`` ``differs``
    compares 59 only when it is present, so the replace is taken as 'unchanged' and answered
    150=5 with 59=1: the client, which asked for a Day order, has a GTC one that survives
    the session. The same rule for a D was fixed (``_new`` defaults 59 to Day); a replace
    that cannot turn the order into a Day order must be refused (as an explicit 59=0 is:
    OrderCancelReject 434=2), or report 59=0."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("o1", "1", "1.00", "90.00", "2", (59, "1")))
        assert (await alice.expect("8")).get(59) == b"1"
        await alice.send("G", (41, "o1"), *order("o2", "1", "2.00", "90.00"))
        answer = await alice.recv(1.0)
        assert answer is not None
        assert answer.get(35) == b"9" or answer.get(59) == b"0", (answer.get(35), answer.get(59))

    run(harness, scenario)


# -- validation --------------------------------------------------------------------------------

_PARTIES = ((453, 1), (448, "TRADER1"), (447, "D"), (452, 12))


def test_a_replace_carrying_parties_is_not_rejected_when_new_and_cancel_take_them(
    tmp_path: Path,
) -> None:
    """The dictionary takes the Parties block (NoPartyIDs 453) on NewOrderSingle (D) and
    OrderCancelRequest (F), since clients send it on every order message (trader and
    client ids, MiFID short codes), but not on OrderCancelReplaceRequest (G):
    ``dictionary.py`` ``MESSAGES[b"G"]`` has no ``groups=(PARTIES,)``. A client that sends
    the same Parties on its replace as on its order gets a session-level Reject (373=2,
    RefTagID 453) for every replace and cannot amend an order.

    FIX 4.4 Vol 4, OrderCancelReplaceRequest: the Parties component is part of the message,
    as on D and F. A venue either takes it on all three or on none."""
    now = time.time_ns()
    s, app = session(tmp_path, now)
    common = ((55, "BTC-USD"), (54, 1), (60, stamp(now)), (38, "1"), (40, 2), (44, "100"))
    s.data_received(msg("D", 2, (11, "o1"), *common, *_PARTIES, now_ns=now), now)
    s.data_received(msg("G", 3, (41, "o1"), (11, "o2"), *common, *_PARTIES, now_ns=now), now)
    rejects = [(m.get(45), m.get(373), m.get(371)) for m in replies(s) if m.msg_type == b"3"]
    assert [m.msg_type for m in app.messages] == [b"D", b"G"], rejects
