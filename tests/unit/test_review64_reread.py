"""A hostile review (64): a reread of the day's four commits, each against its own promise
(message, docstrings, the README text it changed) and the invariants: the same input gives
the same output (a replay from the journal or a snapshot decides as the first run did),
nothing acknowledged is lost, bad input gets an error naming the value and the limit and
never crashes a process, every size from a client has a limit.

Reviewed:

- 2eec74d, the journal's schema id over ``JOURNALED_TYPES``: every path that journals (the
  sequencer's decisions, fees and rules at start, admin and account commands; the standby's
  writer) writes only those nine types; every journal reader and writer, ``cut_after``,
  the replication handshake (source, standby, rebuild), promotion, ``journaled_ends``,
  ``scripts/failover.py`` and the bench scripts use ``journal_schema_id``; rings and
  ``preflight`` keep ``schema_id``. No persisted file holds event records under the journal's
  id: snapshots are states (msgpack structs with their own defaults), the gateway's order
  log holds command images only.
- e941287, ``closeOnRefusal``: a refusal told as a close is held at most ``REFUSAL_CLOSE_S``
  (a silent client's socket is closed after 2 s), holds no stream slot, and its reason is
  cut on a UTF-8 boundary at 123 bytes; the page clears a reason at a snapshot and at
  logout.
- ae5f1cb, the FIX size and notional notes: a G's quantity is checked as the matcher
  checks a replace (the new total against ``min_qty``..``max_qty``: ``fast_book.py``,
  ``order_checks._check_qty``), so the edge is neither stricter nor looser there; the
  largest price and size named are on the tick and lot; ``fee_account`` is bounded.
- 9a73924, bounded memory: a malformed SenderCompID gets the same Logout as an unknown user
  (``authenticated(None)``: no enumeration); ``sessions`` is popped after the watch's end;
  transfer keys are looked up with the same time live (``now_ns``, stamped as the command's
  ``ts_ns``) and in replay (``command.ts_ns``), and a refused transfer changes nothing.

Faults, each pinned by a test that failed on the code it was written against for the fault
it names; the first six pass since their fixes (the same session's commits), the seventh's
README text was corrected and the limit it shows was documented (a strict xfail) until
2026-11-27, when the journal came to read each segment in its own slot size (its images
re-framed to the reader's: ``tests/unit/common/test_journal_slot_size.py``); it passes since:

1. ``TransferKeys.get`` (transfer_keys.py:51) ages a key against the latest transfer time ever
   accepted, not against its own clock: after the router's clock stepped back more than a
   week (or was a week ahead for a while), every transfer is past its window the moment it
   is made, and a retry one second later is applied again (a double deposit or withdrawal).
2. ``TransferKeys._expire`` (transfer_keys.py:68) indexes ``used[key]`` for a deque entry
   whose key an earlier entry of the same time already deleted: a key reused at the same
   ``ts_ns`` after such a step back raises ``KeyError`` in ``Accounts.transfer`` -- the live
   router dies, and so does every replay from before the reuse, while a router restored
   from a snapshot taken after it goes on (its deque holds the key once).
3. ``refuse_in_band`` is reached only from ``PrivateStreams.handle``: the address rate limit
   (rest.py:289, a ``429`` before the handler) is an HTTP error even with
   ``closeOnRefusal=true``, which README and OpenAPI promise for every refused upgrade
   (``429`` named); the page shows only "disconnected" for the refusal it meets most.
4. FIX's ``amounts`` (order_fields.py:342) checks MaxFloor against OrderQty only, not
   against ``min_qty`` as REST does (rest_params.py:305) and the matcher does
   (order_checks.py:88): a FIX iceberg whose slice is below the symbol's minimum comes back
   a bare ``QTY_OUT_OF_RANGE`` naming neither the value nor the limit.
5. ``refusal_note`` (order_fields.py:240) names the notional limit for a D only: a G that
   the router refuses ``NOTIONAL_TOO_LARGE`` (``reserve_replace``) gets an
   OrderCancelReject whose Text names no limit.
6. ``_verify`` (connections.py:122) refuses as unknown a SenderCompID outside
   ``users.COMP_ID``, but the users file is loaded without that check (``User.comp_id``
   is a bare ``str``; the older bare-list form is read on purpose), and comp ids were
   "1..32 characters" of anything before review 25: such a user, whose password is right,
   can no longer log on, told "unknown".
7. README (journal section) says a build that changes only an event, ``Trade`` named, "keeps
   the slot size and replays the journals before it": ``Trade`` is the largest record (115
   of the 117 bytes a 128-byte slot holds), so any field added to it grows the slot, and
   the journal is refused for its slot size.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import aiohttp
import msgspec
import pytest

from config.schema import RingexConfig
from procs.common.journal import JournalFormatError, JournalReader
from procs.common.journal_writer import JournalWriter
from procs.common.record_codec import RecordCodec
from procs.common.records import RECORD_TYPES, NewOrder, Record, Trade
from procs.common.result_codes import ResultCode
from procs.common.types import U64, OrdType, Side, StpMode, TimeInForce
from procs.core.accounts import Accounts
from procs.core.transfer_keys import WINDOW_NS
from procs.gateway.limits import RateLimiter
from procs.gateway.rest import RestApi
from tests.unit.gateway.harness import USD, Client, Harness, config, run_scenario
from tests.unit.gateway.rest_rig import client, rest_exchange, run
from tests.unit.gateway.test_review17_outcomes import fix_order

DAY = 86_400 * 10**9
NOW = 1_795_000_000 * 10**9  # 2026-11-18: an exchange's clock
OK, DUPLICATE = ResultCode.OK, ResultCode.DUPLICATE_TRANSFER


def _accounts(tmp_path: Path) -> Accounts:
    accounts = Accounts(config("unused", tmp_path))
    assert accounts.create_account(7) == OK
    return accounts


# -- 9a73924: transfer keys -----------------------------------------------------------------------


def test_a_retry_one_second_later_is_applied_once_after_the_clock_stepped_back(
    tmp_path: Path,
) -> None:
    """What is wrong: ``TransferKeys.get`` measures a key's age as ``max(now, latest) -
    used.ts_ns``, ``latest`` the latest transfer time ever accepted. The router stamps
    ``time.time_ns()`` (intake.py:76), a wall clock: once it has been a week ahead (an NTP
    fault, a promoted standby with a bad clock) and is set right, every transfer made after
    is "older than a week" the moment it is made. The admin client's retry of a deposit
    whose answer was lost, one second later, is then applied a second time (both answered
    OK, the balance doubled), for a week of real time.

    Expected (a correct exchange, and README: "a retry within the week is applied once"):
    a key's window starts at the exchange's time of its transfer as the rules see it
    (``max(ts_ns, latest)``, deterministic from the journal), so the retry is a
    DUPLICATE_TRANSFER that ``repeat_of`` recognises. Today: applied twice."""
    accounts = _accounts(tmp_path)
    assert accounts.transfer(7, USD, 5, 1, seq=1, ts_ns=NOW + 8 * DAY) == OK  # clock ahead
    # the clock is set right; a deposit, and its retry a second later (the answer was lost)
    assert accounts.transfer(7, USD, 100, 42, seq=2, ts_ns=NOW) == OK
    retry = accounts.transfer(7, USD, 100, 42, seq=3, ts_ns=NOW + 10**9)
    assert (retry, accounts.repeat_of(7, USD, 100, 42, NOW + 10**9)) == (DUPLICATE, 2)
    assert accounts.balance(7, USD)[0] == 105, accounts.balance(7, USD)


def test_a_key_reused_at_the_same_time_after_a_clock_step_does_not_kill_the_router(
    tmp_path: Path,
) -> None:
    """What is wrong: after the clock stepped back more than a week (fault 1), key 42 is used
    at T and, free at once, used again at the very same T (two transfers in one nanosecond's
    stamp, or a journal's). The deque holds ``(T, 42)`` twice; when the latest time passes
    T + a week, ``_expire`` pops the first, finds ``used[42].ts_ns == T`` and deletes it,
    then pops the second and reads ``used[42]``: ``KeyError`` out of ``Accounts.transfer``,
    after the balance was changed. The live router dies on that transfer, and a replay of
    the journal from before the reuse dies at the same place, at every restart; a router
    restored from a snapshot taken after the reuse holds the key's entry once and goes on:
    what the exchange does depends on where its snapshot was taken.

    Expected: no exception, and live and restored decide and hash alike (skip an entry
    whose key is gone: ``used.get(key)``; or key the window by ``max(ts_ns, latest)``,
    which keeps the deque in order). Today: ``KeyError: 42``."""
    live = _accounts(tmp_path)
    assert live.transfer(7, USD, 5, 1, seq=1, ts_ns=NOW) == OK
    back = NOW - 8 * DAY  # the clock stepped back more than a week
    assert live.transfer(7, USD, 5, 42, seq=2, ts_ns=back) == OK
    # free at once before fault 1's fix; since, in use (its time kept at NOW): the same
    # deque's order and removals follow all the same
    assert live.transfer(7, USD, 5, 42, seq=3, ts_ns=back) == DUPLICATE
    restored = Accounts.restore(config("unused", tmp_path), live.snapshot())
    assert restored.transfer(7, USD, 5, 2, seq=4, ts_ns=NOW + WINDOW_NS) == OK
    assert live.transfer(7, USD, 5, 2, seq=4, ts_ns=NOW + WINDOW_NS) == OK  # KeyError today
    assert live.state_hash() == restored.state_hash()


# -- e941287: closeOnRefusal ----------------------------------------------------------------------


@pytest.fixture
def rest_harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


def test_an_upgrade_refused_for_the_address_rate_is_a_close_when_asked(
    rest_harness: Harness,
) -> None:
    """What is wrong: ``closeOnRefusal=true`` is honoured only for what ``_admit`` raises;
    the address rate limit is the middleware's (rest.py:289), before the handler, so its
    refusal stays an HTTP ``429`` with a JSON body the browser cannot read, and the page
    shows "disconnected" -- for the refusal a page that also polls REST meets most. README
    ("An upgrade refused (401, 403, 429, 503) ... with closeOnRefusal=true ... the gateway
    takes the upgrade and closes it at once instead") and OpenAPI ("a refused upgrade is
    taken and closed at once") promise it for every refusal.

    Expected: the close 1013 with the reason ``"-1003 requests from 127.0.0.1 ..."``.
    Today: ``WSServerHandshakeError`` 429."""
    got: list[object] = []

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            api.ip_limits = RateLimiter(0.001, 1)  # one request, then refused for long
            async with alice.session.get(f"{url}/api/v1/ping") as r:
                assert r.status == 200
            try:
                ws = await alice.session.ws_connect(alice.stream_url() + "&closeOnRefusal=true")
            except aiohttp.WSServerHandshakeError as exc:
                got.append(exc.status)
                return
            msg = await ws.receive(timeout=5)
            got.append((ws.close_code, msg.extra))
            await ws.close()
        finally:
            await alice.close()

    run(rest_harness, scenario)
    assert got and isinstance(got[0], tuple) and got[0][0] == 1013, got


# -- ae5f1cb: FIX size and notional notes -------------------------------------------------------

NOTIONAL_LIMIT = 10**9  # USD minor units (6 decimals): 1000 USD


def _fix_harness(instance: str, tmp_path: Path, cfg: RingexConfig) -> Iterator[Harness]:
    h = Harness(cfg)
    h.add_user("ALICE", "secret", 7)
    h.fund(7, usd=10**17, btc=10**17)
    yield h
    h.close()


@pytest.fixture
def min_qty_harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    """BTC-USD with sizes of 2 decimals, lot 0.01, ``min_qty`` 1.00."""
    cfg = config(instance, tmp_path)
    symbols = [msgspec.structs.replace(cfg.symbols[0], min_qty=100)]
    yield from _fix_harness(instance, tmp_path, msgspec.structs.replace(cfg, symbols=symbols))


@pytest.fixture
def notional_harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    cfg = config(instance, tmp_path)
    risk = msgspec.structs.replace(cfg.risk, max_order_notional=NOTIONAL_LIMIT)
    yield from _fix_harness(instance, tmp_path, msgspec.structs.replace(cfg, risk=risk))


def test_a_fix_iceberg_slice_below_min_qty_is_refused_naming_the_limit(
    min_qty_harness: Harness,
) -> None:
    """What is wrong: a GTC buy of 2.00 showing MaxFloor 0.50 on a symbol whose ``min_qty``
    is 1.00 passes the FIX edge (``amounts`` checks MaxFloor only against OrderQty and the
    iceberg's parts), and the matcher refuses it (order_checks.py:88): Text
    "QTY_OUT_OF_RANGE (...)", neither 0.50 nor 1.00 named. The REST API refuses the same
    iceberg itself, "icebergQty 0.50 is below the symbol's minQty 1.00" (rest_params.py:305),
    and review 62's fix promised FIX "naming the value and both limits, as the REST API does"
    for sizes outside the symbol's limits.

    Expected: refused at the edge (OrdRejReason 13), Text naming MaxFloor 0.50 and the
    minimum 1.00. Today: the matcher's bare code."""
    texts: list[str] = []

    async def scenario(h: Harness, port: int) -> None:
        c = Client("ALICE")
        await c.connect(port)
        await c.logon()
        await c.send("D", *fix_order("i1", "1", "2.00", "100.00"), (111, "0.50"))
        report = await c.expect("8")
        assert report.get(150) == b"8", report
        texts.append((report.get(58) or b"").decode())

    run_scenario(min_qty_harness, scenario)
    assert "0.50" in texts[0] and "1.00" in texts[0], texts


def test_a_fix_replace_over_the_notional_limit_names_the_limit(
    notional_harness: Harness,
) -> None:
    """What is wrong: a resting buy of 1.00 at 100.00 (100 USD, under a 1,000 USD
    ``max_order_notional``) replaced to 100.00 at 100.00 (10,000 USD) is refused by the
    router (``reserve_replace``: NOTIONAL_TOO_LARGE), and the OrderCancelReject's Text says
    "NOTIONAL_TOO_LARGE (2008)" alone: ``refusal_note`` adds the limit for a D only
    (order_fields.py:240). A client is told a limit exists, not what it is.

    Expected: the Text names the limit (1000.000000 USD, review 335) and the price it was
    judged at, as a D's does since review 62. Today: the code alone."""
    texts: list[str] = []

    async def scenario(h: Harness, port: int) -> None:
        c = Client("ALICE")
        await c.connect(port)
        await c.logon()
        await c.send("D", *fix_order("o1", "1", "1.00", "100.00"))
        placed = await c.expect("8")
        assert placed.get(150) == b"0", placed
        await c.send("G", (41, "o1"), *fix_order("o2", "1", "100.00", "100.00"))
        reject = await c.expect("9", timeout=5.0)
        texts.append((reject.get(58) or b"").decode())

    run_scenario(notional_harness, scenario)
    assert "NOTIONAL_TOO_LARGE" in texts[0], texts
    assert "at most 1000.000000 USD" in texts[0], texts  # (a decimal since review 335)


# -- 9a73924: SenderCompID format before the limiter ----------------------------------------------


def test_a_user_whose_comp_id_predates_the_comp_id_rule_still_logs_on(
    instance: str, tmp_path: Path
) -> None:
    """What is wrong: until review 25 a comp id was "1..32 characters" of anything
    (``alice@desk``, ``DESK ONE``), and the users file is read without the rule
    (``User.comp_id: str``; the older bare-list file is read on purpose). Such a user's
    right password logged on until 9a73924; now ``_verify`` sees
    ``comp_id_refused(comp_id)`` and answers as for an unknown user, before the password.
    An existing member is locked out by an upgrade, with no message saying why.

    Expected: a user the users file holds logs on with the right password (check the
    format only for names the file does not hold, or bound the limiter's key instead).
    Today: Logout, unknown."""
    h = Harness(config(instance, tmp_path))
    with h.users._locked():  # as a file of before review 25
        h.users._add("alice@desk", "secret", 7, 1 << 4, None)
    answers: list[bytes] = []

    async def scenario(harness: Harness, port: int) -> None:
        c = Client("alice@desk")
        await c.connect(port)
        answer = await c.logon()
        answers.append(answer.get(35) or b"")

    run_scenario(h, scenario)
    assert answers == [b"A"], answers


# -- 2eec74d: the journal's schema id and its slot size --------------------------------------------


class _NextTrade(Trade, tag=12, frozen=True):
    """``Trade`` as a later build might extend it: one field more."""

    venue_ts_ns: U64 = 0


def _order() -> NewOrder:
    return NewOrder(
        *(1, 2, 1, 1, 5, 7, 1, 0, Side.BUY, OrdType.LIMIT, TimeInForce.GTC, 0, StpMode.NONE),
        *(100, 10, 0, 0),
    )


def test_a_journal_outlives_a_field_added_to_a_trade(tmp_path: Path) -> None:
    """What is wrong: README's journal section (2eec74d) says "a build that changes only an
    event (``Accepted``, ``Trade``, ...) keeps the slot size and replays the journals before
    it". The slot size is the largest record's worst case over every type, events included,
    and ``Trade`` is that record (115 bytes; 2 + 115 + 8 = 125 of 128): any field added to
    it makes the slot 136 bytes, and every journal of today's build is refused for its
    slot size -- the snapshot upgrade path the commit meant to spare, for a change of an
    event.

    Expected: a journal of today's build is read by a build whose ``Trade`` has one more
    field (a journal's slot sized by its commands), or README saying which event changes
    keep the journal. Today: ``JournalFormatError`` on ``slot_size``."""
    today = RecordCodec()
    types: list[type[Record]] = [_NextTrade if t is Trade else t for t in RECORD_TYPES]
    later = RecordCodec(types)
    assert later.journal_schema_id == today.journal_schema_id  # the commands are the same
    directory = tmp_path / "journal"
    with JournalWriter(
        directory, slot_size=today.slot_size, schema_id=today.journal_schema_id, fsync="none"
    ) as journal:
        journal.append(1, today.encode_slots([_order()]), 1)
    reader = JournalReader(directory, slot_size=later.slot_size, schema_id=later.journal_schema_id)
    try:
        entries = list(reader.entries())
    except JournalFormatError as exc:
        pytest.fail(f"refused: {exc}")
    assert [later.decode_slot(image) for _, image in entries] == [_order()]
