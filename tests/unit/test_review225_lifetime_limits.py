"""Review 225: a hostile review of a venue that runs for years: the width of every counter and
identifier in each place it is stored or sent, and what happens at the narrowest one.

Reviewed: the records' integer types and their bounds (``procs/common/types.py``,
``records.py``, ``record_layout.py``); the router's counters (``procs/core/sequencer.py``:
seq, order ids) and the books' trade ids (``book.py``, ``fast_book.py``) with their
snapshots; the journal's and the snapshots' file names (``journal_format.py``,
``snapshots.py``) and the replication chain's records (``journal_history.py``); the rings'
words (``shm/header.py``, ``producer.py``); the gateway's client refs (``orders.py``, started
at the clock in ns), counter ExecIDs (``exec_ids.py``), the FIX session store
(``procs/gateway/store.py``: ``seqnums`` and ``messages``) and the edge's MsgSeqNum bound
(``dictionary.py``, ``MAX_SEQNUM``); the REST API's ids and the venue's page that reads them
(``rest_keys.py``, ``rest.py``, ``procs/marketdata/static/trading.js``); the feed's ids and
volumes (``procs/marketdata/messages.py``, ``procs/core/market``); the PostgreSQL columns
(``procs/dbwriter/migrations``). Review 62 (numbers end to end) and review 180 (money) were
read first and are not repeated: notional, fees, holds and candle volumes past int64.

Widths found: seq, order ids, trade ids, client refs, ExecIDs, account ids and transfer keys
are int64 (records ``U64``, ``bigint`` columns, the journal's u64 entry seq and 20-digit
names); a ring's cursors u64; a FIX session's next numbers u64 in ``seqnums`` and up to
2**63-1 at the edge; stream and update ids Python ints. At 50k commands/s for ten years
(1.6e13) none of the int64 counters comes near 2**63, nor near 2**53 for the JSON numbers a
browser reads (orderId, tradeId, ``u``/``U``). Two are narrower than what feeds them.

Faults (both fixed: their tests say "Was (fixed)"):

1. ``procs/gateway/store.py:51-52`` (``_ENTRY = "<III"``, ``_SEQ = "<I"``; used by
   ``_entry`` at :381): a stored outbound message keeps its MsgSeqNum as a u32, where
   ``seqnums`` keeps u64 and the edge takes numbers up to 2**63-1. The session's
   4,294,967,296th outbound message (a session not reset: README calls the daily reset a
   practice, not a rule; at 50k messages/s a day, at 5k a week and a half) raises
   ``struct.error`` in ``Session.send``, inside the gateway's poll task: every session of
   that gateway stops getting reports, and the gateway's own shutdown (its Logouts) raises
   the same; in a process that is a gateway that dies and, at that session's next logon
   without a reset, dies again. Fix: store the seq as a u64 (``_ENTRY = "<IIQ"``, ``_SEQ =
   "<Q"``) under a new ``MAGIC`` version, converting a version-2 file on open as
   ``_convert_older`` converts the older layout.
2. ``procs/gateway/rest_keys.py:80`` (and ``rest.py:556``, GET account): ``accountId`` goes out
   as a JSON number, while ``ringex admin`` takes any account id up to 2**63-1
   (``procs/admin/client.py:107``, ``check_account``; records ``AccountId``). JavaScript's
   ``JSON.parse`` reads a number as a double, so past 2**53 a client reads another account
   (node: 9007199254740993 -> 9007199254740992), and the venue's own page shows it
   (``trading.js:125``/``:141``, "(account N)"). Fix: bound the operator's account ids at
   2**53-1 where they are chosen (``check_account``, ``UserStore.add``), or send
   ``accountId`` as a string (``orderId`` may stay a number: router counters cannot get
   there).

Found sound (passing tests below): order ids, seqs and trade ids past 2**32 and at 2**53
through the sequencer, both books, the slot codec and a snapshot/restore; inbound MsgSeqNums
past 2**32 (a session's ``seqnums``, a logon and an order at those numbers, kept across a
reconnect); journal segment and snapshot names (20 digits: numeric order across a change of
digit count, 2**63-1 fits); the FIX edge refusing a MsgSeqNum past 2**63-1 rather than
storing what ``seqnums`` cannot hold.
"""

from __future__ import annotations

import contextlib
import gc
import json
import struct
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from procs.common import journal_format
from procs.common.records import NewOrder, Trade
from procs.common.snapshots import SnapshotStore
from procs.common.topology import gateway_dir
from procs.common.users import UserStore
from procs.gateway.dictionary import MAX_SEQNUM
from procs.gateway.rest import RestApi
from procs.gateway.store import _SEQ, _SEQNUMS, MessageStore
from tests.unit.gateway.harness import Client, Harness, config, run_scenario
from tests.unit.gateway.rest_rig import rest_exchange, run
from tests.unit.gateway.test_gateway import order
from tests.unit.router.core_rig import (
    BTCUSD,
    BUY,
    SELL,
    Exchange,
    exchange_config,
    funded,
    new_order,
    placed,
    roundtrip,
)

U32_END = 2**32  # the first number a u32 cannot hold
JS_EXACT = 2**53  # past it, not every integer is a double


def js_number(text: str) -> int:
    """An integer as JavaScript's ``JSON.parse`` reads it: the nearest double (round half to
    even, as Python's ``float`` of a decimal string)."""
    return int(float(text))


def js_parse(raw: bytes) -> Any:
    return json.loads(raw, parse_int=js_number)


# -- fault 1: the FIX store's u32 MsgSeqNum ----------------------------------------------------


def seeded_store(directory: Path, next_in: int, next_out: int) -> None:
    """A session's ``seqnums`` as a long-lived session leaves it (nothing parked)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "seqnums").write_bytes(_SEQNUMS.pack(next_in, next_out, 0, 0))


def test_a_session_store_keeps_outbound_messages_past_2_32(tmp_path: Path) -> None:
    """Scenario: a session's store at next outbound 2**32 - 1 (``seqnums`` is u64) stores
    three messages, flushes, and is opened again.
    Expected: all three are stored and resendable (``outbound``), next out 2**32 + 2 after
    the reopen, as at any other number.
    Was (fixed): the second, MsgSeqNum 2**32, raised ``struct.error`` ('I' format requires
    0 <= number <= 4294967295) in ``_entry``: the messages file kept a u32 (version 3: u64)."""
    seeded_store(tmp_path, 1, U32_END - 1)
    store = MessageStore(tmp_path)
    sent = []
    try:
        for seq in range(U32_END - 1, U32_END + 2):
            raw = b"8=FIX.4.4\x019=5\x0135=0\x0134=%d\x01" % seq
            store.add_outbound(seq, raw)
            sent.append((seq, raw))
        store.flush()
        assert store.outbound(U32_END - 1, U32_END + 1) == sent
    finally:
        store.close()
    again = MessageStore(tmp_path)
    try:
        assert again.next_out == U32_END + 2
        assert again.outbound(U32_END, U32_END) == sent[1:2]
    finally:
        again.close()


async def next_report(client: Client, timeout_s: float) -> Any:
    """The next ExecutionReport (heartbeats skipped), or None within ``timeout_s``."""
    while (msg := await client.recv(timeout_s)) is not None:
        if msg.get(35) == b"8":
            return msg
    return None


def test_a_session_past_2_32_messages_gets_its_reports_and_so_does_everyone_else(
    instance: str, tmp_path: Path
) -> None:
    """Scenario: ALICE's session has sent 2**32 - 2 messages since its last reset (its store
    says next out 2**32 - 1); BOB's is fresh. Both log on, ALICE sends an order (its report
    is her 2**32nd message), then BOB does.
    Expected: ALICE gets an ExecutionReport with MsgSeqNum 4294967296; BOB gets his; the
    gateway shuts down cleanly.
    Was (fixed): ALICE's report raised ``struct.error`` in ``MessageStore.add_outbound``
    inside the gateway's poll task, which ended: neither ALICE nor BOB got a report, and the
    shutdown's Logout to ALICE raised the same."""
    h = Harness(config(instance, tmp_path))
    h.add_user("ALICE", "secret", 7)
    h.add_user("BOB", "secret", 8)
    h.fund(7)
    h.fund(8)
    seeded_store(gateway_dir(h.cfg, "gw1") / "sessions" / "ALICE", 1, U32_END - 1)
    seen: dict[str, Any] = {}

    async def scenario(h: Harness, port: int) -> None:
        alice, bob = Client("ALICE"), Client("BOB")
        for c in (alice, bob):
            await c.connect(port)
            await c.logon()
        seen["logon"] = alice.received[-1].get(34)
        await alice.send("D", *order("a1", "1", "1.00", "100.00"))
        seen["alice"] = await next_report(alice, 2.0)
        await bob.send("D", *order("b1", "1", "1.00", "100.00"))
        seen["bob"] = await next_report(bob, 2.0)

    gateway: list[Any] = []
    failure = ""
    try:
        h.start = _keeping(h, gateway)  # type: ignore[method-assign]
        run_scenario(h, scenario)
    except struct.error as exc:  # the shutdown's Logout to ALICE
        failure = f"the gateway's shutdown raised {exc}"
    finally:
        with warnings.catch_warnings():  # what the aborted shutdown left open: closed here
            warnings.simplefilter("ignore", ResourceWarning)
            for gw in gateway:
                for task in gw._tasks:  # the poll's error, retrieved: reported below
                    if task.done() and not task.cancelled():
                        task.exception()
                with contextlib.suppress(Exception):
                    gw.close()
            gc.collect()
    assert seen["logon"] == str(U32_END - 1).encode()
    assert seen["alice"] is not None, "ALICE got no report of her order"
    assert seen["alice"].get(34) == str(U32_END).encode()
    assert seen["bob"] is not None, "BOB got no report: the gateway's poll ended"
    assert not failure, failure


def _keeping(h: Harness, kept: list[Any]) -> Any:
    """``h.start``, keeping the gateway it starts in ``kept`` (``stop`` forgets it only once
    its shutdown returned)."""
    start = h.start

    async def started() -> int:
        port = await start()
        kept.append(h.gateway)
        return port

    return started


# -- fault 2: account ids past 2**53 as JSON numbers ----------------------------------------

BIG = JS_EXACT + 1  # an operator's account id: 1..2**63-1 was taken
LARGEST = JS_EXACT - 1  # the largest a user's account may be now


@pytest.fixture
def largest_account(instance: str, tmp_path: Path) -> Iterator[Harness]:
    for h in rest_exchange(instance, tmp_path):
        h.add_user("CAROL", "carol-pw", LARGEST)
        h.fund(LARGEST)
        yield h


def test_an_account_id_past_2_53_is_refused_and_the_largest_reads_right_in_javascript(
    largest_account: Harness, tmp_path: Path
) -> None:
    """Scenario: the operator opens account 2**53 + 1 for a user (``ringex admin`` took up to
    2**63 - 1); then a user CAROL at 2**53 - 1 logs in over REST (POST /api/v1/apiKey, what
    the venue's page does; GET /api/v1/account answers ``accountId`` alike).
    Expected: the first refused naming the limit (``users.account_refused``: the user store
    and ``ringex admin add-user`` both); CAROL's id read exactly by a JavaScript client
    (``JSON.parse``: doubles).
    Was (fixed): 2**53 + 1 was taken, and ``accountId``, a JSON number, read by
    ``JSON.parse`` as 9007199254740992, another account: the page showed "(account
    9007199254740992)"."""
    with pytest.raises(ValueError, match=f"account {BIG} is outside 1..{LARGEST}"):
        UserStore(tmp_path / "users.json").add("DAVE", "dave-pw", BIG)

    async def scenario(api: RestApi, url: str) -> None:
        async with aiohttp.ClientSession() as http:
            form = {"username": "CAROL", "password": "carol-pw", "scopes": "read"}
            async with http.post(f"{url}/api/v1/apiKey", data=form) as r:
                assert r.status == 200
                raw = await r.read()
        assert json.loads(raw)["accountId"] == LARGEST
        read = js_parse(raw)["accountId"]
        assert int(read) == LARGEST, f"a JavaScript client reads accountId {read}"

    run(largest_account, scenario)


# -- sound: counters past 2**32 and at 2**53 in the cores ------------------------------------


@pytest.mark.parametrize("start", [U32_END - 1, JS_EXACT - 1])
def test_order_ids_seqs_and_trade_ids_run_on_past_a_width(start: int) -> None:
    """Scenario: the router's next seq and order id and the book's next trade id all at
    ``start`` (2**32 - 1, then 2**53 - 1), as a snapshot of a long-lived venue restores
    them; a resting sell, a buy that crosses it and then a snapshot/restore and another
    cross.
    Expected: ids ``start``, ``start + 1``, ... through both books and the slot codec (the
    rig round-trips every record), trade ids gapless across the restore.
    Now: so."""
    ex = funded(exchange_config(max_notional=0))
    ex.sequencer.next_seq = ex.sequencer.next_order_id = start
    for books in (ex.fast, ex.reference):
        books["m1"].books[BTCUSD].next_trade_id = start
    trades: list[int] = []
    for round_ in range(2):
        sell = placed(ex, new_order(1, SELL, 10_000, 5, ref=2 * round_ + 1))
        buy = placed(ex, new_order(2, BUY, 10_000, 5, ref=2 * round_ + 2))
        assert (sell.order_id, buy.order_id) == (start + 2 * round_, start + 2 * round_ + 1)
        assert buy.seq > sell.seq >= start
        trades += [e.trade_id for e in ex.settle() if isinstance(e, Trade)]
        ex.check()
        ex = ex.restored()
    assert trades == [start, start + 1]


@pytest.mark.parametrize("start", [U32_END - 1, JS_EXACT - 1])
def test_a_restored_router_gives_the_next_order_id(start: int) -> None:
    """Scenario: a router whose next order id is ``start`` is snapshotted and restored.
    Expected: the restored one gives ``start`` next (no wrap, no reuse).
    Now: so."""
    ex = funded(exchange_config(max_notional=0))
    ex.sequencer.next_order_id = start
    restored = Exchange.restored(ex)
    command = restored.submit(new_order(1, SELL, 10_000, 1, ref=9))
    assert isinstance(command, NewOrder) and command.order_id == start


# -- sound: inbound MsgSeqNums past 2**32 ------------------------------------------------------


def test_inbound_msgseqnums_past_2_32_are_taken_and_kept(instance: str, tmp_path: Path) -> None:
    """Scenario: ALICE's store says next inbound 2**32 + 5 (a client that never resets);
    she logs on at that number, orders, logs out, reconnects at the next number.
    Expected: each logon is taken, the order reported, ``seqnums`` holds next inbound past
    2**32 after each (u64).
    Now: so."""
    h = Harness(config(instance, tmp_path))
    h.add_user("ALICE", "secret", 7)
    h.fund(7)
    directory = gateway_dir(h.cfg, "gw1") / "sessions" / "ALICE"
    seeded_store(directory, U32_END + 5, 1)

    async def scenario(h: Harness, port: int) -> None:
        alice = Client("ALICE")
        alice.seq = U32_END + 5
        await alice.connect(port)
        await alice.logon()
        await alice.send("D", *order("a1", "1", "1.00", "100.00"))
        assert (await alice.expect("8")).get(150) == b"0"
        await alice.send("5")
        await alice.expect("5")
        await alice.aclose()
        assert _SEQ.unpack((directory / "seqnums").read_bytes()[:8])[0] == U32_END + 8
        again = Client("ALICE")
        again.seq = alice.seq
        await again.connect(port)
        assert (await again.logon()).get(35) == b"A"
        await again.aclose()

    run_scenario(h, scenario)
    assert _SEQ.unpack((directory / "seqnums").read_bytes()[:8])[0] == U32_END + 9


def test_the_fix_edge_refuses_a_msgseqnum_seqnums_cannot_hold() -> None:
    """Scenario: the bound the FIX edge holds a sequence number to, against ``seqnums``'
    u64 fields (next = the number + 1).
    Expected: the largest number taken, plus one, fits a u64: what a session may be sent
    it can store.
    Now: so (2**63 - 1)."""
    _SEQNUMS.pack(MAX_SEQNUM + 1, MAX_SEQNUM + 1, MAX_SEQNUM, MAX_SEQNUM)


# -- sound: file names keyed by seq ------------------------------------------------------------


def test_journal_segments_and_snapshots_sort_by_number_across_digit_counts(
    tmp_path: Path,
) -> None:
    """Scenario: segments and snapshots at seqs 9,999,999,999, 10,000,000,000 and 2**63 - 1
    (where a narrower name would sort 10... before 9...).
    Expected: listed oldest first, the newest snapshot is the highest seq, every name the
    same width.
    Now: so (20 digits)."""
    seqs = [2**63 - 1, 10_000_000_000, 9_999_999_999]
    for seq in seqs:
        (tmp_path / journal_format.segment_name(seq)).write_bytes(b"")
    listed = journal_format.list_segments(tmp_path)
    assert [s for s, _ in listed] == sorted(seqs)
    assert len({len(p.name) for _, p in listed}) == 1
    snaps = SnapshotStore(tmp_path / "snaps", keep=3)
    for seq in sorted(seqs):  # (a save removes those above it: a rewound history's)
        snaps.save(seq, b"state %d" % seq)
    assert snaps.latest() == (2**63 - 1, b"state %d" % (2**63 - 1))
    assert (snaps.oldest_seq(), snaps.newest_seq()) == (9_999_999_999, 2**63 - 1)
    assert snaps.at_or_before(10_000_000_000 + 1) == (10_000_000_000, b"state 10000000000")


def test_a_trade_record_carries_ids_past_2_53() -> None:
    """Scenario: a trade whose id, seq and order ids are past 2**53 (the records' ids are
    int64, whatever a browser reads).
    Expected: it round-trips through the slot codec unchanged.
    Now: so."""
    big = JS_EXACT + 3
    t = Trade(big, 1, big, BTCUSD, 10, 1, BUY, big, 1, 1, 0, big + 1, 2, 1, 0)
    roundtrip(t)
