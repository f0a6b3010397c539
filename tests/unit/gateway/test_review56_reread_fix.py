"""A hostile reread of 8bd47d5 ("FIX, review 54": repeating groups, and orders for another
account, currency or derivative refused), held to FIX 4.4 and the commit's own intent: a
field or group is refused only where ringex would otherwise act on it wrongly.

Each test pinned one fault and failed on the code it was written against; its docstring
says what should happen, what happened, where the cause was and a fix. Each passes since
its fix (the same session's commits). Checked and found right (no test): NoHops (627) on a
Logon, a ResendRequest and a TestRequest, 627=0, a hop after the body (373=14); nested
groups directly after their count, repeated per entry, of 0 entries, out of order (15);
counts that do not match (16), negative (6) or past 2^63 (5) counts (no crash: a count's
format and length are checked before ``int``); a group's count tag twice (13, since
99bc334); ``validate``'s fast path hands every shape with a group tag to ``first_fault``;
header tags (50, 57, 142, 43, 97, 122, 369, 627...) are never taken as narrowing a mass
cancel; Account on D, F, G and q compared with the session's account; CFICode on a G."""

from __future__ import annotations

import pytest

from tests.unit.gateway.harness import Client, Harness, utc
from tests.unit.gateway.test_gateway import logged_on, order, run
from tests.unit.gateway.test_review54_fix_groups import answers, shown


async def _resting(alice: Client, cl: str) -> None:
    await alice.send("D", *order(cl, "1", "1.00", "100.00"))
    assert (await alice.expect("8")).get(150) == b"0"


def test_a_mass_cancel_with_a_secondary_clordid_is_carried_out(harness: Harness) -> None:
    """FIX 4.4 OrderMassCancelRequest (q) defines SecondaryClOrdID (526) beside ClOrdID:
    "Assigned by the party which originates the order. Can be used to provide the ClOrdID
    used by an exchange or executing system" -- an identifier of the request, which narrows
    nothing (ringex takes it on a D and a G: it is in ``_ORDER``). Engines that carry a
    second id (an OMS id beside the FIX one) send it on every order message. 8bd47d5's
    ``mass_narrowed`` refuses every q field outside ``_MASS_CANCEL_READ`` (11, 530, 55, 60,
    58, 1) and the header, to refuse fields that "narrow the mass cancel": so 530=7 526=X is
    refused, OrderMassCancelReport 531=0 with the false Text "SecondaryClOrdID (526) narrows
    the mass cancel and is not supported", and the client's orders stay live when it asked
    for all of them to go (a kill switch that does nothing). Expected: the mass cancel is
    carried out (531=7, the resting order cancelled). Fix: add 526 to ``_MASS_CANCEL_READ``
    (and echo it on the report, as FIX 4.4's OrderMassCancelReport defines it)."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await _resting(alice, "rest")
        await alice.send("q", (11, "kill"), (526, "oms-77"), (530, 7), (60, utc()))
        got = await answers(alice)
        reports = [m.get(531) for m in got if m.get(35) == b"r"]
        cancelled = [m.get(11) for m in got if m.get(35) == b"8" and m.get(150) == b"4"]
        assert (reports, cancelled) == ([b"7"], [b"rest"]), shown(got)

    run(harness, scenario)


def test_a_mass_status_request_for_another_account_does_not_report_the_sessions_orders(
    harness: Harness,
) -> None:
    """8bd47d5 makes Account (1) mean what FIX 4.4 says ("the account the order is for"):
    an order, cancel, replace or mass cancel naming another account than the session's is
    refused, because a firm's engine carrying several clients over one session would
    otherwise book client B's order in the session's account. The OrderMassStatusRequest
    (AF), which FIX 4.4 defines with Account to ask for that account's orders, is left out:
    ``order_replies.py`` ``mass_status`` narrows by Symbol and Side (README: "Side narrows
    either") but never reads tag 1, so AF 585=7 1=CLIENT-B is answered with an
    ExecutionReport 150=I for every open order of the session's own account, 911=N, and the
    reports carry no Account. The engine re-syncing client B's book after a reconnect books
    account 7's orders as B's (and may cancel them as B's), the misattribution the commit
    set out to end. Expected: none of the session's orders reported as the answer for
    CLIENT-B (a refusal, or the one report saying none matches, 911=0). Fix: in
    ``mass_status`` (and ``status`` for H), an Account other than ``session.account`` is
    answered as matching no order (or a BusinessMessageReject naming it)."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await _resting(alice, "rest")
        await alice.send("AF", (584, "sync-b"), (585, 7), (1, "CLIENT-B"))
        got = await answers(alice)
        reported = [m.get(11) for m in got if m.get(35) == b"8" and m.get(150) == b"I"]
        assert b"rest" not in reported, shown(got)

    run(harness, scenario)


@pytest.mark.parametrize(
    "empty", [(386, 0), (78, 0), (232, 0)], ids=["NoTradingSessions", "NoAllocs", "NoStips"]
)
def test_an_order_whose_unsupported_group_has_no_entry_is_taken(
    harness: Harness, empty: tuple[int, int]
) -> None:
    """FIX 4.4 Vol 1: a NumInGroup field gives the number of entries of the group; 0 is a
    valid count (the dictionary takes 386=0 as a group of no entry, and QuickFIX passes the
    message to the application), and an order with NoTradingSessions=0, NoAllocs=0 or
    NoStipulations=0 asks for no trading session, no allocation, no stipulation: it is the
    same order as one without the tag (engines that fill a template emit empty groups so).
    8bd47d5 adds the count tags of D's and G's groups to ``UNSUPPORTED_ORDER_FIELDS``, and
    ``unsupported_field`` refuses on a tag's mere presence: the order is refused,
    OrdRejReason 11, "NoTradingSessions (386) is not supported", for a characteristic it
    does not have. The commit's intent is that a group ringex would ignore is refused
    "never ignored"; with no entry there is nothing to ignore. Expected: the order is taken
    (150=0). Fix: in ``unsupported_field``, pass over a group count tag whose value is 0
    (``int(f[tag]) == 0`` for a tag of ``_GROUP_COUNTS``), or refuse only on a first
    member present."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("empty", "1", "1.00", "100.00"), empty)
        got = await answers(alice)
        assert [(m.get(35), m.get(150)) for m in got] == [(b"8", b"0")], shown(got)

    run(harness, scenario)
