"""A hostile reread of session 51's fix commits (f92c81a..be0c067): the standby's status,
REST ClOrdIDs held by logged-off FIX sessions, the supervisor's duties during a restart,
`make run`'s accounts, ``ringex admin snapshot``, a standby's journal cut under fsync
"none", the DEGRADED word with ``sync_timeout_ms = 0``, promote's fee-margin check, the
matcher's rules (a replace overtaken by fills, a waiting stop-limit collared around its stop,
a stop-market passed by more than the band refused), the gateway's refusal texts, the whole
FIX 4.4 dictionary from QuickFIX's ``FIX44.xml`` with its unsupported order fields, the
OrigClOrdID of a reject for a pending replace, and a ResendRequest sent again after a
heartbeat interval.

Each test failed on those commits for the fault it names (its docstring: what the README,
the issue or FIX asks, what the code did and where, "Actual") and passes since its fix (the
same session's commits), but one, a limit now documented (strict xfail). Checked and found
sound, no test here: the journal cut under "none" (only the standby cuts, and it syncs every
frame before it acknowledges); the SyncGate's left word (cleared by ``wait`` and by the idle
``poll`` once the standby holds everything journaled; never in a loop); the ResendRequest
sent again (at most once a heartbeat interval, only on a message past the gap, refreshed by
every in-sequence answer; HeartBtInt is at least 1 s); ``ringex admin snapshot`` (a
journaled SNAPSHOT makes no event and replays as nothing); the OrigClOrdID of a pending
replace's reject; ``make run``'s accounts; the cost of ``unsupported_field`` (one set test
over ~15 keys an order); no file under ``procs/`` over 600 lines; each new rule
deterministic (same commands, same events, both books, ``sweep_rig``).

Rigs: ``OrderEntry`` driven by hand with a fake session (review 49's), the sans-I/O
``Session`` with hand-framed bytes (review 4's), the gateway harness (real TCP, an
in-process router and matcher), both books through ``sweep_rig``, and real journals for
``failover.promote`` with its new supervisor not started (review 51's router rig).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from config import load_profile
from procs.common.epochs import Epochs
from procs.common.records import (
    CreateAccount,
    NewOrder,
    OrderDone,
    Record,
    Rejected,
    Trade,
    Transfer,
    Triggered,
)
from procs.common.result_codes import ResultCode
from procs.common.topology import journal_dir
from procs.common.types import Side
from procs.core.fees import FeeChangeError
from procs.core.recovery import fresh, recover
from procs.gateway.session import Session
from tests.e2e.test_standby import profile
from tests.unit.gateway.harness import Harness, config
from tests.unit.gateway.test_gateway import logged_on, order, run
from tests.unit.gateway.test_review4_fix_bugs import (  # its fixture closes the stores
    _close_stores,  # noqa: F401
    msg,
    replies,
    session,
    stamp,
)
from tests.unit.matcher.sweep_rig import BUY, SELL, SPEC, STOP, Feed
from tests.unit.matcher.sweep_rig import run as sweep
from tests.unit.replica.test_review33_failover import _no_supervisor, failover
from tests.unit.router.core_rig import BUY as CORE_BUY
from tests.unit.router.core_rig import new_order
from tests.unit.router.test_review51_router import _SYMBOLS
from tests.unit.supervisor.test_review_ops_bugs import write
from tests.unit.test_review47_reread import ACCOUNT, GATEWAY, SESSION, SYM, _fix, _Session
from tests.unit.test_review49_reread import _bid, _wired


@pytest.fixture
def exchange(instance: str, tmp_path: Path) -> Iterator[Harness]:
    """The gateway tests' usual exchange, ALICE on account 7, funded (``gateway/conftest``)."""
    h = Harness(config(instance, tmp_path))
    h.add_user("ALICE", "secret", 7)
    h.fund(7)
    yield h
    h.close()


# -- the matcher: a stop-market passed by more than the band (order_checks.py) -----------------


def _trades_of(events: list[Record], order_id: int) -> int:
    return sum(
        e.qty
        for e in events
        if isinstance(e, Trade) and order_id in (e.maker_order_id, e.taker_order_id)
    )


@pytest.mark.parametrize(
    ("last", "resting"),
    [
        (145, (BUY, 100)),  # last within the band of the stop, the bids far below: dead
        (100, (BUY, 145)),  # last past the band, a bid within it: refused, though it trades
    ],
    ids=["dead-stop-accepted", "tradable-stop-refused"],
)
def test_a_stop_market_reached_on_arrival_is_judged_by_the_book_it_would_trade_with(
    last: int, resting: tuple[Side, int]
) -> None:
    """README (the matcher): a triggered stop-market is banded from its trigger price, "so
    one whose trigger the market has passed by more than ``band_bps`` when it arrives is
    refused ``PRICE_OUT_OF_BAND``: it could never trade"; review 51's own test wants a stop
    reached on arrival either refused or traded, never ``Accepted``, ``Triggered`` and
    ``OrderDone(EXPIRED)`` with nothing filled.

    ``OrderChecks._dead_on_arrival`` (procs/core/order_checks.py) judges it by the *last
    trade* (``abs(last_price - stop_price) > stop * band_bps``), but whether it can trade is
    decided by the *book*: ``Book._take`` bands it from the stop (``_protection``) against
    the best opposite price, and a book moves without trades (orders placed and cancelled).
    A sell stop at 150 (band 5%: protected at 143):

    - last trade 145 (within the band of 150), bids at 100 only: not refused, and it is
      exactly the dead order review 51 set out to remove. Actual: ``Accepted``,
      ``Triggered``, ``OrderDone(EXPIRED)`` filled 0.
    - last trade 100 (past the band), a bid at 145 (within it): refused "it could never
      trade", yet entered it trades 2 at 145. Actual: ``Rejected(PRICE_OUT_OF_BAND)``.

    Expected: judged against the best opposite price it would meet (refused when the
    protection cannot reach it, else taken and traded)."""
    side, price = resting
    f = Feed(SPEC.symbol)
    out, book = sweep(
        SPEC,
        [
            f.new(1, SELL, last, 1, account=1),
            f.new(2, BUY, last, 1, account=2),  # the last trade
            f.new(3, side, price, 5, account=3),
            f.new(4, SELL, 200, 5, account=4),
            f.new(5, SELL, 0, 2, account=5, ord_type=STOP, stop=150),  # reached: 150 >= last
        ],
    )
    answer = out[-1]
    refused = [e.code for e in answer if isinstance(e, Rejected)]
    traded = _trades_of(answer, 5)
    dead = (
        any(isinstance(e, Triggered) for e in answer)
        and traded == 0
        and any(isinstance(e, OrderDone) and e.order_id == 5 for e in answer)
    )
    assert not dead, f"accepted, triggered and expired unfilled: {answer}"
    if price >= 143:  # a bid inside its protection: the stop trades there
        assert not refused and traded == 2, answer
    assert book.stops == {}


# -- the gateway: the FIX text of a refusal out of band (order_fields.py, orders.py) -----------


def test_a_fix_stop_refused_out_of_band_is_told_which_band_as_the_rest_api_is() -> None:
    """Commit bca5d66: "a stop refused out of band is told which band and around what ...
    a FIX Reject's Text (58) says the same (refusal_note)"; ``OUT_OF_BAND_NOTES``
    (procs/gateway/order_fields.py): "the REST API says the same, ``rest_params``".

    ``refusal_note`` adds the note only ``if request.kind == b"D"``, but a ``Request`` is a
    cancel or replace in flight (``order_state.Request``: kind F or G); a new order's refusal
    goes through ``OrderEntry._rejected``'s other branch (procs/gateway/orders.py), which
    never calls ``refusal_note``. So no FIX client ever gets the note (only the REST test
    checks it); a replace refused out of band gets none either (kind G).

    Here a FIX sell stop-market at 150.00 that the matcher refuses ``PRICE_OUT_OF_BAND``.
    Expected: Text (58) names band_bps, as the REST answer names bandBps. Actual: Text is
    "PRICE_OUT_OF_BAND (3004)" alone."""
    entry, _, fake = _wired()
    pairs = [(11, b"st"), (55, b"BTC-USD"), (54, b"2"), (60, b"20260101-00:00:00")]
    pairs += [(40, b"3"), (38, b"0.10"), (99, b"150.00"), (59, b"1")]
    entry.on_message(cast(Session, fake), _fix(b"D", pairs), 1)
    new = entry.outgoing.pop()
    assert isinstance(new, NewOrder)
    entry.process(
        Rejected(
            *(0, 10**18, GATEWAY, SESSION, new.client_ref, ACCOUNT, SYM.id, 0),
            code=ResultCode.PRICE_OUT_OF_BAND,
        )
    )
    kind, report = fake.sent[-1]
    assert (kind, report[150]) == (b"8", b"8"), report
    assert b"band_bps" in report[58], report[58]


# -- failover: promote's fee-margin check (scripts/failover.py) --------------------------------


def _journal_at_margin_20(tmp_path: Path, instance: str) -> list[Record]:
    """A primary's journal under BTC-USD 10/20 bps (margin 20), with a funded resting buy."""
    then = profile(
        tmp_path / "then.toml", f"{instance}p", tmp_path / "var",
        "[replication]\nlisten_port = 1\n" + _SYMBOLS.format(taker=20),
    )  # fmt: skip
    sequencer, _ = fresh(load_profile(str(then)))
    journal: list[Record] = [*sequencer.fee_changes(1), *sequencer.rules_changes(1)]
    for command in (
        CreateAccount(0, 0, 1, 7, 1, 7),
        Transfer(0, 0, 1, 7, 2, 7, 1, 10**12, 1),
        new_order(7, CORE_BUY, 3_000_000, 10_000, ref=3),
    ):
        decided = sequencer.submit(command, 1).command
        assert decided is not None
        journal.append(decided)
    return journal


@pytest.mark.parametrize(
    ("primary_taker", "standby_taker"),
    [(50, 50), (50, 20)],
    ids=["unstartable-promoted", "startable-refused"],
)
def test_promote_judges_the_standbys_fees_against_the_fees_in_force(
    tmp_path: Path,
    instance: str,
    monkeypatch: pytest.MonkeyPatch,
    primary_taker: int,
    standby_taker: int,
) -> None:
    """README (router): a starting router "whose configured maker/taker fees ... differ from
    what its state holds journals a ``FeeSchedule``", and "a change of a symbol's fee margin
    while buys rest on it is refused at start"; (failover) ``promote`` refuses "whatever
    ``--force`` says" a standby "whose fee margin ... differs from the primary's: its router
    would refuse that fee change while buys rest, and not start", before it fences.

    ``fee_margins_differ`` (scripts/failover.py) compares the standby's *config* with the
    primary's *config*. The promoted router compares the standby's config with the fees its
    *journal* holds (``fees.check_schedule``), and a primary's config differs from those
    from an edit of its fees until its next restart. The journal here holds BTC-USD 10/20
    (margin 20) and a resting buy:

    - both configs edited to 10/50: the check passes, promote fences the primary and starts
      a router that raises ``FeeChangeError`` at every start (``recover`` shows it): no
      primary at all, the very outcome the check was added for. Actual: fenced, exit 0.
    - primary edited to 10/50, standby still 10/20 (the fees in force): its router starts
      fine, yet promote refuses, and ``--force`` cannot override it: no failover possible
      until someone edits the standby into the config its router will refuse. Actual: 1.

    Expected: judged as the promoted router will judge it, the standby's configured fees
    against those its journal holds, refused only where buys rest under another margin."""
    journal = _journal_at_margin_20(tmp_path, instance)
    primary_path = profile(
        tmp_path / "primary.toml", f"{instance}p", tmp_path / "var",
        "[replication]\nlisten_port = 1\n" + _SYMBOLS.format(taker=primary_taker),
    )  # fmt: skip
    standby_path = profile(
        tmp_path / "standby.toml", f"{instance}s", tmp_path / "var",
        '[replication]\nprimary = "127.0.0.1:1"\nprestart = false\n'
        + _SYMBOLS.format(taker=standby_taker),
    )  # fmt: skip
    primary, standby = load_profile(str(primary_path)), load_profile(str(standby_path))
    write(primary, journal)
    write(standby, journal)  # replicated: the standby holds all of it
    try:
        recover(standby).sequencer.fee_changes(2)  # what the promoted router will meet
        starts = True
    except FeeChangeError:
        starts = False
    started = _no_supervisor(monkeypatch)
    code = failover.promote(str(primary_path), str(standby_path))
    fenced = Epochs.load(journal_dir(primary)).fence is not None
    if starts:
        assert (code, fenced, len(started)) == (0, True, 1), "a startable standby refused"
    else:
        assert (code, fenced, started) == (1, False, []), "fenced for a router that cannot start"


# -- the FIX 4.4 dictionary (dictionary.py, fix.py) --------------------------------------------


def test_an_encoded_text_holding_soh_is_not_read_as_other_fields(tmp_path: Path) -> None:
    """FIX 4.4 Vol 1: a field of type data (EncodedText 355, RawData 96, XmlData 213,
    SecureData 91, EncodedIssuer 349 ...) "may contain any byte, the delimiter SOH
    included", and its length is the field before it (EncodedTextLen 354): QuickFIX's parser
    reads a data field by that length (``Message::extractField``). README (gateway): with the
    whole FIX 4.4 dictionary "a field the specification defines for a message is never a
    session Reject".

    Review 51 takes every field of ``FIX44.xml`` (``dictionary.FIELDS`` maps DATA to a
    string and LENGTH to an int; 354/355 are ``_DESCRIPTIVE`` on a NewOrderSingle, 90/91 and
    212/213 in the header, 95/96 on the Logon), where before they were refused; the framer
    (``fix.parse_fields``) still splits every value at SOH. A NewOrderSingle with
    354=7|355=``x<SOH>111=1`` (seven bytes of encoded text) is read as 355=x and MaxFloor
    (111)=1: the session hands order entry an iceberg its sender never asked for (and with
    355=``a<SOH>b`` the order is a session Reject 373=0, "tag 'b' is not a positive
    integer").

    Expected: the data field read whole (or data fields not taken). Actual: MaxFloor 1."""
    now = time.time_ns()
    s, app = session(tmp_path, now)
    s.data_received(
        msg("D", 2, (11, "c1"), (55, "BTC-USD"), (54, 1), (60, stamp(now)), (38, "2"),
            (40, 2), (44, "100"), (59, 1), (354, 7), (355, "x|111=1"), now_ns=now),
        now,
    )  # fmt: skip
    replies(s)
    taken = [m.fields for m in app.messages]
    assert all(111 not in f for f in taken), f"MaxFloor read out of EncodedText: {taken}"


def test_an_order_sent_on_behalf_of_another_firm_is_not_booked_silently_as_the_senders(
    exchange: Harness,
) -> None:
    """FIX 4.4 Vol 2 (standard header): OnBehalfOfCompID (115) identifies "the firm
    originating the message if the message was delivered by a third party", the SenderCompID
    being the third party's; a response to such a message carries DeliverToCompID (128) with
    that firm. Review 51's own rule (``order_fields.unsupported_field``): a field a client
    sent "expects it kept, so it is refused, never dropped in silence".

    ``dictionary.HEADER`` now takes every header field of ``FIX44.xml`` (115, 116, 128, 129,
    142..145: before, 115 was a session Reject), and ``UNSUPPORTED_ORDER_FIELDS`` leaves out
    every header field (``t not in HEADER``); order entry (``orders.OrderEntry._new``) books
    the order on the session's own account and answers without 128. A hub's order for FIRMB
    becomes ALICE's, and its report cannot be routed back to FIRMB. (DeliverToCompID 128 on
    an inbound order, "send this to a third party", is executed by ringex itself the same
    way.)

    Expected: refused (OrdRejReason 11 naming OnBehalfOfCompID, or a session Reject), or
    answered with DeliverToCompID 128=FIRMB. Actual: 150=0 on ALICE's account, no 128."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        sent = alice.message("D", *order("obo", "1", "1.00", "90.00"))
        sent.append_pair(115, "FIRMB", header=True)
        await alice.send_raw(sent.encode())
        answer = await alice.recv(timeout=5.0)
        assert answer is not None, "no answer"
        if answer.get(35) == b"8" and answer.get(150) != b"8":
            assert answer.get(128) == b"FIRMB", f"booked as ALICE's, no DeliverToCompID: {answer}"

    run(exchange, scenario)


# -- REST ClOrdIDs held by logged-off FIX sessions (clordid_holders.py) ------------------------


@pytest.mark.xfail(
    strict=True,
    reason="a documented limit (README, REST): after a gateway restart a removed user's "
    "resting FIX orders hold no ClOrdID against the REST API (their account is the users "
    "file's, and the order log keeps none)",
)
def test_a_removed_users_resting_fix_order_still_holds_its_clordid_after_a_restart() -> None:
    """README (REST): "A ``newClientOrderId`` that an open order of the account placed
    through this gateway still holds (over the API, or over FIX as its ClOrdID ...) is
    refused"; (Removing a user): its session id stays, "the gateways route reports by it,
    and the removed user's orders may still rest" (without ``--cancel-orders``).

    ``ClOrdIdHolders.holding`` (procs/gateway/clordid_holders.py) asks each session's
    account of ``account_of`` (``GatewayServer``: the users file's user with that session)
    unless a logon of this process told it; after a gateway restart a removed user is in no
    users file, ``account_of`` says None, and its resting FIX orders hold nothing. Another
    user of the same account then takes the ClOrdID over the API for a second open order
    of the account (session 6's user removed, the gateway restarted: ``account_of`` None,
    as the mends test of review 51 stands in for a restart).

    Expected: still held (the order knows its account: keep it with the order in the order
    log). Actual: ``in_use`` is None."""
    entry, core, _ = _wired()
    other = _Session()
    other.session_id = 6  # another user of the same account, later removed
    entry.on_logon(cast(Session, other), 1)
    entry.on_message(cast(Session, other), _bid(b"kept"), 1)
    assert isinstance(entry.outgoing[-1], NewOrder)
    entry.on_disconnect(cast(Session, other), 2)
    assert core.in_use(ACCOUNT, "kept") is not None
    entry._session_accounts.clear()  # a restart: known from the users file only
    entry.account_of = lambda session_id: None  # session 6's user: removed from it
    assert core.in_use(ACCOUNT, "kept") is not None
