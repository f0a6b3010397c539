"""Review 212: a hostile review of the changes 9a613af..HEAD (reviews 202-210) to ``procs``,
``config``, ``scripts`` and ``shm``.

Faults found (each fixed; each docstring: scenario, expected, what it was):

1. ``procs/gateway/connection.py:177`` (``write`` marks each write by the MsgSeqNum of its
   first frame) with ``:249`` (``abort`` parks again from the first mark not flushed): a
   write that answers the client's ResendRequest starts with an old MsgSeqNum, so an abort
   while it is still buffered parks everything from the resend's start, the messages the
   client read long before included; a ResetSeqNumFlag logon then sends them all anew (not
   README's "a few the client saw may come twice"). ``Session._drop_resends`` already knows
   a client's own resend is not to be parked (only ``again=False`` ones are).
2. ``procs/core/recovery.py:206`` (the ``ValueError`` wrapper of ``recover``): a symbol removed
   after its orders were cancelled is refused "one removed while orders rest on it ...:
   configure it again, cancel its orders, then remove it" though none rest, and doing that is
   refused again: a journal-only instance replays the symbol's old commands (UNKNOWN_SYMBOL),
   a matcher that stays keeps its book in every snapshot (README: "keep it, halted").
3. ``procs/marketdata/outbox.py:88`` (a closed candle past ``limit``): it is appended before
   the check and ``_make_room`` must then bring the queue *below* ``limit`` with it inside, so
   a client a trade would leave at ``limit`` is closed by a closed candle (one slot
   stricter than the trade it is said to count as).
4. ``procs/matcher`` start (``Matcher.restore``, ``procs/core/engine.py:156``): a symbol left
   out of a matcher that stays is refused by ids alone ("snapshot holds symbols [1, 2], this
   matcher owns [1]"), not naming the symbol, its matcher or what to do (review 206's fault 2
   for the same message; STYLE 12).

Found sound (``test_checked_...``): units.json written before review 206/208 (no matcher,
no gateways) is read, then pinned with both, and a matcher renamed after that is refused
naming both; a gateway's id changed or two gateways swapped are refused naming both values;
a gateway gone with orders resting keeps the router from starting, naming it and the count,
and the admin gateway's id is never "gone"; ``Matcher.restore`` of a snapshot lacking a new
symbol lays the books out as a fresh matcher (same state hash); an idle gap publishes the
closed candle and the newest ``PUBLISHED_FLATS`` flats while the history has all; a write
flushed whole before an abort parks nothing, and one cut parks from its first message.

Leads, not tests: over TLS ``get_write_buffer_size`` (asyncio's and uvloop's sslproto:
``_outgoing.pending + _write_buffer_size``) leaves out what the TLS layer already handed to
the TCP transport's own buffer (up to its 64 KiB high-water mark), so ``abort`` counts those
reports flushed and a reset logon loses them (fault 1 of review 204 kept over TLS). An older
build refuses a units.json with "gateways" (its ``_read`` wants exactly assets and symbols):
a rollback, or a standby of an older build that is shipped the file, stops with "not the
units JSON the router writes"; the README does not say so. A held executionReport of an
order placed and ended while a stream's snapshot waited is dropped, so the stream never
names that order (only its balances move).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest

from config.edges import GatewayConfig
from config.schema import RingexConfig
from procs.common.records import MassCancel
from procs.common.topology import ADMIN_GATEWAY
from procs.common.units import (
    UnitsError,
    gone_gateways_refused,
    pin_units,
    units_path,
    units_refused,
)
from procs.core.engine import Matcher
from procs.core.market.candles import PUBLISHED_FLATS, CandleSeries
from procs.core.recovery import recover, write_snapshot
from procs.core.symbols import symbol_specs
from procs.gateway.connection import Connection, Owner
from procs.marketdata.outbox import Outbox
from procs.marketdata.streams import Kind
from shm.inspect import remove_instance
from tests.unit.supervisor.test_review206_config_change import (
    ETH_USD,
    TRADER,
    Rig,
    _matcher,
    buy,
    changed,
    config,
    funded,
)

# -- a connection's write path, without a socket ------------------------------------------------


def _frame(seq: int, msg_type: bytes = b"8", poss_dup: bool = False) -> bytes:
    """A frame as the session makes it: MsgSeqNum the fourth field (``first_seq``)."""
    dup = b"43=Y\x01" if poss_dup else b""
    body = b"35=" + msg_type + b"\x0134=%d\x01" % seq + dup + b"49=EX\x0156=ALICE\x0111=c\x01"
    return b"8=FIX.4.4\x019=%d\x01" % len(body) + body + b"10=000\x01"


class _Transport:
    """What ``Connection`` asks of its transport: a buffer the test drains by hand."""

    def __init__(self) -> None:
        self.buffered = 0
        self.aborted = False

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def writelines(self, frames: list[bytes]) -> None:
        self.buffered += sum(map(len, frames))

    def drain(self) -> None:
        self.buffered = 0

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.aborted

    def close(self) -> None:
        self.aborted = True


class _Store:
    """``MessageStore``'s parking, as ``park_again`` keeps it (the lowest seq wins)."""

    def __init__(self) -> None:
        self.parked_from = 0
        self.next_out = 1 << 20  # past every frame here: nothing waits behind a resend

    def flush(self) -> None:
        pass

    def unhanded(self, conn: object, seq: int) -> None:  # (what a kill would park)
        pass

    def park_again(self, seq: int) -> None:
        if not self.parked_from or seq < self.parked_from:
            self.parked_from = seq


class _Session:
    """The session side of ``Connection.write``: frames handed out once each."""

    comp_id = "ALICE"
    behind_bytes = 0
    resending = False
    closed = False

    def __init__(self) -> None:
        self.store = _Store()
        self.out: list[bytes] = []
        self.live: dict[str, object] = {}  # its CompID's session: none newer (review 280)

    def take_output(self, budget: int | None = None, now_ns: int | None = None) -> list[bytes]:
        out, self.out = self.out, []
        return out

    def waiting_from(self) -> int:
        return self.store.next_out


def _connection() -> tuple[Connection, _Transport, _Session]:
    conn = Connection(cast(Owner, object()))
    transport, session = _Transport(), _Session()
    conn.transport = cast(Any, transport)
    conn.session = cast(Any, session)
    return conn, transport, session


def test_checked_an_abort_parks_from_the_first_message_of_the_write_it_cut() -> None:
    """Scenario: reports 1..50 written and flushed whole; 51..60 written and left in the
    transport's buffer; the connection aborted. Expected and found: nothing of 1..50 parked,
    51 on parked again (``parked_from`` 51); an abort with all flushed parks nothing."""
    conn, transport, session = _connection()
    session.out = [_frame(seq) for seq in range(1, 51)]
    conn.write()
    transport.drain()
    conn.write()  # nothing new: the flushed write's mark is dropped
    assert not conn._marks
    conn.abort()
    assert session.store.parked_from == 0
    conn, transport, session = _connection()
    session.out = [_frame(seq) for seq in range(1, 51)]
    conn.write()
    transport.drain()
    session.out = [_frame(seq) for seq in range(51, 61)]
    conn.write()
    conn.abort()
    assert transport.aborted and session.store.parked_from == 51


def test_an_abort_during_a_resend_parks_only_the_new_messages_it_cut() -> None:
    """Scenario: ALICE read reports 1..50; she asks for 10..12 again (ResendRequest); the
    gateway writes 10..12 (PossDup) and, behind them, the new reports 51 and 52, all still in
    its transport's buffer when it aborts the connection (its stop, a client that stopped
    reading). Expected: parked again from 51, the first new message cut off (a client's own
    resend is not parked, as ``Session._drop_resends`` says; README: "a few the client saw
    may come twice"). Was (fixed): parked from 10, so a ResetSeqNumFlag logon sends 10..52 anew:
    the 38 reports 13..50 she had read come twice, under new numbers."""
    conn, transport, session = _connection()
    session.out = [_frame(seq) for seq in range(1, 51)]
    conn.write()
    transport.drain()
    conn.write()
    resent = [_frame(seq, poss_dup=True) for seq in (10, 11, 12)]
    session.out = [*resent, _frame(51), _frame(52)]
    conn.write()
    conn.abort()
    assert session.store.parked_from == 51, f"parked from {session.store.parked_from}"


# -- a symbol removed once its orders are cancelled ---------------------------------------------


@pytest.fixture
def cfg(instance: str, tmp_path: Path) -> Iterator[RingexConfig]:
    yield config(instance, tmp_path / "var")
    remove_instance(instance)


def _eth_cancelled(cfg: RingexConfig) -> None:
    """``funded``'s exchange, its ETH-USD buy cancelled (none rests on ETH-USD), stopped."""
    rig = funded(cfg)
    rig.send(1, MassCancel(0, 0, 1, 1, 900, TRADER, ETH_USD))
    assert rig.router.sequencer.accounts.open_orders(TRADER) == 1  # the BTC-USD buy
    rig.stop()


@pytest.mark.parametrize("layout", ["journal-only", "matcher-stays"])
def test_a_symbol_removed_with_no_order_resting_is_not_blamed_on_resting_orders(
    cfg: RingexConfig, layout: str
) -> None:
    """Scenario: ETH-USD's only order cancelled, the exchange stopped, ETH-USD removed from
    the config; "journal-only": its matcher m2 removed too, no exchange snapshot;
    "matcher-stays": ETH-USD shared m1 with BTC-USD, an exchange snapshot written, m1 kept.
    Expected: the start carries on, or the refusal says what will work (README for a matcher
    that stays: keep it, halted; for a journal-only instance, a snapshot first), not that
    orders rest on it. Was (fixed): ``ReplayError`` "... one removed while orders rest on it cannot
    be recovered: configure it again, cancel its orders, then remove it", though none rest
    (which is what the operator had just done)."""
    if layout == "matcher-stays":
        cfg = changed(cfg, matchers=[_matcher("m1", "BTC-USD", "ETH-USD")])
    _eth_cancelled(cfg)
    if layout == "matcher-stays":
        write_snapshot(cfg, recover(cfg))
    new = changed(cfg, symbols=cfg.symbols[:1], matchers=[_matcher("m1", "BTC-USD")])
    try:
        recovered = recover(new)
    except ValueError as exc:
        assert "while orders rest on it" not in str(exc), str(exc)
        return
    assert recovered.sequencer.accounts.open_orders(TRADER) == 1


def test_a_symbol_taken_from_a_matcher_that_stays_is_refused_naming_it(
    cfg: RingexConfig,
) -> None:
    """Scenario: ETH-USD and BTC-USD on m1, ETH-USD's order cancelled, a clean stop (m1's own
    stop snapshot), ETH-USD removed from the config and from m1. Expected: the start is
    refused naming ETH-USD, m1 and what to do (README: keep it, halted). Was (fixed): the matcher
    process dies with "snapshot holds symbols [1, 2], this matcher owns [1]" (ids alone;
    ``units_differ`` and so ``ringex run``'s preflight say nothing)."""
    cfg = changed(cfg, matchers=[_matcher("m1", "BTC-USD", "ETH-USD")])
    _eth_cancelled(cfg)
    new = changed(cfg, symbols=cfg.symbols[:1], matchers=[_matcher("m1", "BTC-USD")])
    with pytest.raises(ValueError) as refused:
        Rig(new)
    said = str(refused.value)
    assert "ETH-USD" in said and "m1" in said, said


# -- units.json: old files, gateways ------------------------------------------------------------


def test_checked_a_units_file_from_before_matchers_and_gateways_were_pinned(
    cfg: RingexConfig,
) -> None:
    """Scenario: units.json as review 205's build wrote it (symbols without "matcher", no
    "gateways"). Expected and found: accepted; ``pin_units`` adds each symbol's matcher and
    each gateway, keeping what was pinned; then m2 renamed m3 is refused naming ETH-USD, m2
    and m3, and gw2 given id 5 is refused naming both ids."""
    pin_units(cfg)
    path = units_path(cfg)
    doc = json.loads(path.read_bytes())
    del doc["gateways"]
    for fields in doc["symbols"].values():
        del fields["matcher"]
    path.write_text(json.dumps(doc))
    assert units_refused(cfg) == ""
    pin_units(cfg)
    again = json.loads(path.read_bytes())
    assert again["symbols"]["ETH-USD"]["matcher"] == "m2"
    assert again["gateways"] == {"gw1": {"id": 1}, "gw2": {"id": 2}}
    renamed = changed(cfg, matchers=[cfg.matchers[0], _matcher("m3", "ETH-USD")])
    said = units_refused(renamed)
    assert "ETH-USD" in said and "'m2'" in said and "'m3'" in said, said
    gw2 = msgspec.structs.replace(cfg.gateways[1], id=5)
    said = units_refused(changed(cfg, gateways=[cfg.gateways[0], gw2]))
    assert "gw2" in said and "5 in the config" in said and "2 in the journal" in said, said


def test_checked_two_gateways_swapped_are_refused_naming_both(cfg: RingexConfig) -> None:
    """Scenario: gw1 (id 1) and gw2 (id 2) pinned; the config swaps their ids, then renames
    gw2 to gw9 keeping id 2. Expected and found: each refused, naming the gateway, both ids or
    both names; a gateway added with a new name and id is no change."""
    pin_units(cfg)
    swapped = changed(
        cfg,
        gateways=[
            msgspec.structs.replace(cfg.gateways[0], id=2),
            msgspec.structs.replace(cfg.gateways[1], id=1),
        ],
    )
    said = units_refused(swapped)
    assert "gateway gw1 id: 2 in the config, 1 in the journal" in said, said
    renamed = changed(
        cfg, gateways=[cfg.gateways[0], msgspec.structs.replace(cfg.gateways[1], name="gw9")]
    )
    said = units_refused(renamed)
    assert "'gw9'" in said and "'gw2'" in said, said
    added = changed(cfg, gateways=[*cfg.gateways, GatewayConfig(name="gw3", id=3, port=9880)])
    assert units_refused(added) == ""


def test_checked_a_gateway_gone_with_orders_resting_stops_the_router(cfg: RingexConfig) -> None:
    """Scenario: a buy entered through gw2 rests on ETH-USD; gw2 removed from the config.
    Expected and found: the router refuses to start (``UnitsError``) naming gw2, its id and
    "1 orders"; orders of the admin gateway's id are never a gone gateway's; the old config
    starts again with both buys."""
    rig = funded(cfg)
    rig.send(2, msgspec.structs.replace(buy(3, ETH_USD, 900, 10), gateway=2))
    assert rig.router.sequencer.accounts.open_orders(TRADER) == 3
    rig.stop()
    with pytest.raises(UnitsError) as refused:
        Rig(changed(cfg, gateways=cfg.gateways[:1]))
    said = str(refused.value)
    assert "gateway gw2 (id 2): 1 orders" in said, said
    assert gone_gateways_refused(cfg, {ADMIN_GATEWAY: 4, 1: 1, 2: 1}) == ""
    rig = Rig(cfg)
    try:
        assert rig.router.sequencer.accounts.open_orders(TRADER) == 3
    finally:
        rig.stop()


def test_checked_a_new_symbol_restored_into_a_matcher_is_laid_out_as_a_fresh_one(
    cfg: RingexConfig,
) -> None:
    """Scenario: m1's snapshot holds BTC-USD (id 1); the config lists ETH-USD (id 2) first,
    then BTC-USD, on m1. Expected and found: ``Matcher.restore`` gives ETH-USD an empty book,
    the books in the order a fresh matcher of the config has (its state hash the same); a
    snapshot holding a symbol the config does not give the matcher is refused."""
    old = Matcher(symbol_specs(cfg, "m1")).snapshot()
    new = changed(cfg, matchers=[_matcher("m1", "ETH-USD", "BTC-USD")])
    specs = symbol_specs(new, "m1")
    restored = Matcher.restore(specs, old)
    assert list(restored.books) == list(Matcher(specs).books) == [1, 2]
    assert restored.state_hash() == Matcher(specs).state_hash()
    with pytest.raises(ValueError, match="snapshot holds symbols"):
        Matcher.restore(symbol_specs(cfg, "m2"), old)


# -- the feed: closed candles --------------------------------------------------------------------

MIN_NS = 60 * 10**9


def test_checked_an_idle_gap_publishes_its_newest_flat_candles_and_keeps_all() -> None:
    """Scenario: a 1m series traded in minute 0, then idle 100 minutes. Expected and found:
    ``take_changed`` gives the candle that closed, the newest ``PUBLISHED_FLATS`` flat ones
    (contiguous, ending where the open one starts) and the open one; the history has the
    traded candle and all 100 flats."""
    series = CandleSeries("1m")
    series.trade(5 * 10**9, 100, 1)
    series.take_changed()
    series.advance(101 * MIN_NS + 1)
    out = series.take_changed()
    assert len(out) == 1 + PUBLISHED_FLATS + 1
    assert out[0].open_ns == 0 and out[0].trades == 1
    flats = out[1:-1]
    assert [c.open_ns for c in flats] == [m * MIN_NS for m in range(91, 101)]
    assert out[-1].open_ns == 101 * MIN_NS and not out[-1].closed
    assert len(series.history(1000)) == 1 + 100 + 1


def _outbox(limit: int) -> Outbox:
    return Outbox(limit, lambda stream: b"snapshot " + stream.encode())


def _filled(limit: int) -> Outbox:
    """``limit`` queued: two diffs of one depth stream and trades; compacting the diffs
    frees exactly one slot."""
    box = _outbox(limit)
    box.push(Kind.DEPTH, "btc-usd@depth", b"d1")
    box.push(Kind.DEPTH, "btc-usd@depth", b"d2")
    for n in range(limit - 2):
        assert box.push(Kind.TRADE, "btc-usd@trade", b"t%d" % n) is None
    assert len(box) == limit
    return box


def test_checked_a_trade_past_the_limit_takes_the_room_compaction_makes() -> None:
    """Scenario: a queue at its limit (3) whose depth diffs compact to one snapshot; a trade
    comes. Expected and found: queued (the queue at its limit again), not refused."""
    box = _filled(3)
    assert box.push(Kind.TRADE, "btc-usd@trade", b"t") is None
    assert len(box) == 3


def test_a_closed_candle_past_the_limit_counts_as_a_trade_does() -> None:
    """Scenario: as above, but what comes is a closed 1m candle (``final``), no kline of its
    stream queued. Expected (README, review 205: "counted against a slow client's queue as a
    trade is"): queued as the trade was, the queue at its limit. Was (fixed): "slow consumer: 3
    messages queued, limit 3; closed candles ... cannot be conflated": the client is closed
    where the trade was taken."""
    box = _filled(3)
    said = box.push(Kind.KLINE, "btc-usd@kline_1m", b"k", final=True)
    assert said is None, said
    assert len(box) == 3
