"""Review 255: a hostile reread of today's gateway changes (91c4d4f, 83bf53e, 7d44036).

Reviewed: ``procs/gateway/store.py`` (``unconfirmed_from``: saved as ``seqnums``' fourth
number, parked again at the open; ``all_confirmed``; the 16/24/32-byte reading),
``connection.py`` (``write``: where ``unconfirmed_from`` is set, ``abort``), ``session.py``
(``_close``), ``gap_recovery.py`` (what waits behind a resend), ``order_fields.py``
(``refusal_text``), ``order_memory.py`` (``finished_ids``), ``rest_wiring.py``
(``_fix_order``), ``rest_orders.py`` (``_replaced``), ``static/trading.js`` (``api``). Rig:
``harness.py``'s in-process exchange over real TCP, ``test_gateway_restart.crash`` for what a
SIGKILL leaves, review 204's full-buffer client (4 KiB socket buffers).

Faults found (each fixed: the lowest of the oldest mark and the first seq waiting behind a
resend is saved, and an abort parks those too; the value is cleared once the connection is
lost, not at the session's close; seqnums is 24 bytes while nothing is unconfirmed):

1. ``procs/gateway/connection.py:188-189`` (``write``: ``unconfirmed_from`` is the first seq of
   the oldest mark, else ``store.next_out``) with ``session.py:292-298`` (``_emit``: a report
   made during a resend waits in ``_behind``, numbered and stored, never handed to the
   transport) and ``connection.py:90-98`` (a resent copy makes no mark): while a resend is
   paused on a client's full buffer, every pass saves ``next_out``, past the reports waiting
   behind it. After a SIGKILL nothing is parked, and a logon with ResetSeqNumFlag never gets
   them (a fill, here): the value is HIGHER than the first message not handed on. Fix: in
   ``Connection.write`` take the lowest of the oldest mark's seq and the first seq waiting
   behind the resend (``Session`` can expose it: ``store.next_out - len(_behind)`` when
   ``_behind``), and ``Session._drop_resends`` (``gap_recovery.py:198-210``) parks ``_behind``
   again when the connection is cut rather than moving it into ``_out`` unsent. Test:
   ``test_a_fill_waiting_behind_a_resend_at_a_kill_is_carried_to_a_reset_logon``.
2. ``procs/gateway/session.py:335-337`` (``_close``: ``store.all_confirmed()``, saved at once)
   with ``connection.py:188`` (``not session.closed``: no more saving): a session that ends by a
   Logout while its connection still holds reports (a client reading slowly; the transport
   drains them after the close) saves "all handed on" at its end. A SIGKILL while the transport
   still holds them loses them for a reset logon, as review 252's fault did (README: those "a
   gateway killed outright ... held" are parked again). ``all_confirmed`` is right only after an
   ``abort`` (which parks what it cut). Fix: in ``_close`` leave ``unconfirmed_from`` as the
   last pass set it (dirty, so the flush saves it), keep setting it in ``Connection.write``
   while the transport drains, and clear it (``all_confirmed`` + flush) in
   ``Connection.connection_lost`` when the transport's buffer was empty, or after ``abort``'s
   ``park_again``. Test: ``test_reports_draining_after_a_logout_at_a_kill_are_carried``.
3. ``procs/gateway/store.py:55, 371-372`` (``seqnums`` is always written as 32 bytes) against
   the build before 91c4d4f, whose ``_saved`` takes 24 or 16 bytes only: after a downgrade every
   session that was used refuses its logon with "25 bytes, not 24 (or 16, an older build's):
   damaged; to start the session's numbers at 1, remove it" -- the file is neither 25 bytes nor
   damaged, and the advice resets the numbers. README says nothing of a downgrade here (it does
   for ``units.json`` and the users' snapshot), even after a clean stop, which leaves the fourth
   number 0. Fix: in ``MessageStore.flush`` write the 24-byte layout (and ``ftruncate`` to 24)
   while ``unconfirmed_from`` is 0 (every session a clean stop or a logout ended) and the
   32-byte one only while a connection is live (``_saved`` reads both already); README: a
   downgrade after a kill needs ``truncate -s 24 seqnums`` (the messages handed since the last
   flush may then be lost to a reset logon). Test:
   ``test_the_build_before_can_open_a_store_this_build_wrote``.

Found sound (plain tests): a session idle for a heartbeat interval before the kill re-parks
only that Heartbeat (a reset logon carries nothing she saw); two connections of one CompID in
a row, each read to the end, then a kill: a reset logon carries at most the last write's
report, never the first connection's; a clean logout, a fill parked while away (the store
opened with no connection), a kill: the reset logon carries the fill once and nothing else;
a 24-byte ``seqnums`` (the build before) reads as all handed on. Not faults: over TLS what
the TLS layer took counts as handed on (README, review 212). Read, not tested:
``refusal_text``'s "too late" needs an acknowledged order (an unacknowledged one's cancel is
refused at once) that finished before the router took the request, so it never names an
unknown order; a waiting stop-limit cannot be replaced (INVALID_ORDER), so the G band text
(the limit's, from the last trade) is right; band 0 turns the check off, so no text names it;
``finished_ids`` moves with ``_keep_finished`` only (eviction, ``restore``; a compaction
keeps ``finished_orders``), order ids are the router's, never reused, 0 never kept;
``trading.js``: the login POST says "unreachable" (no order placed: a retry adds a second
"web page" key at most), the logout DELETE only logs to the console.
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from procs.gateway import store as store_mod
from procs.gateway.server import GatewayServer
from tests.unit.gateway.harness import Client, Harness, run_scenario, settled, small_ring_exchange
from tests.unit.gateway.test_gateway import order, status_request
from tests.unit.gateway.test_gateway_restart import crash, drain, run
from tests.unit.gateway.test_review30_durability import taker
from tests.unit.gateway.test_review99_tls import _reads
from tests.unit.gateway.test_review201_fix_wire import _messages, _read_all
from tests.unit.gateway.test_review204_stop_output import TIGHT, N, _acked, _full_buffers, _tight

#: Status reports that make a resend longer than the gateway's 256 KiB high-water mark.
STATUS = 1400
#: The build before 91c4d4f (seqnums of 24 bytes).
BEFORE = "5d2b4c7"


def _exchange(instance: str, tmp_path: Path) -> Harness:
    return small_ring_exchange(
        instance, tmp_path, 4096, users=("ALICE", "BOB"), max_open_orders=2 * N,
        max_messages_per_s=10_000,
    )  # fmt: skip


def _gw(h: Harness) -> GatewayServer:
    assert h.gateway is not None
    return h.gateway


async def _reset_logon(port: int) -> list[Any]:
    """ALICE logs on with ResetSeqNumFlag; what comes after her Logon's answer."""
    again = Client("ALICE")
    await again.connect(port)
    logon = await again.logon(reset=True)
    assert (logon.get(141), logon.get(34)) == (b"Y", b"1")
    return await drain(again)


def _saved(store: store_mod.MessageStore) -> tuple[int, ...]:
    """The numbers ``seqnums`` holds now: what a kill leaves."""
    return tuple(store_mod._SEQNUMS.unpack((store.directory / "seqnums").read_bytes()))


def _held(store: store_mod.MessageStore) -> tuple[int, ...]:
    """The numbers the store holds in memory, as its next flush would save them."""
    return (store.next_in, store.next_out, store.parked_from, store.unconfirmed_from)


def _reports(msgs: list[Any]) -> list[tuple[bytes, bytes]]:
    return [(m.get(11), m.get(150)) for m in msgs if m.get(35) == b"8"]


# == faults =======================================================================================


def test_a_fill_waiting_behind_a_resend_at_a_kill_is_carried_to_a_reset_logon(
    instance: str, tmp_path: Path
) -> None:
    """Scenario: ALICE has an order resting and has read 1,400 status reports; she stops
    reading (4 KiB socket buffers) and asks for a resend of them all, which stalls on her
    full buffer; BOB fills her order, whose report waits behind the resend. The gateway is
    SIGKILLed; she logs on to the restarted one with ResetSeqNumFlag.
    Expected: the fill is carried after her Logon (she never had it: it never left the
    gateway), as those a kill left in the transport buffer are (review 252).
    Was (fixed): ``seqnums`` says every message was handed on (the resend made no mark, and the fill
    was not in the transport): nothing is parked, the fill never reaches her."""
    h = _exchange(instance, tmp_path)

    async def scenario(h: Harness, port: int) -> None:
        gw = _gw(h)
        alice = await _tight(port)
        await alice.send("D", *order("s1", "2", "1.00", "100.00"))
        assert (await alice.expect("8")).get(150) == b"0"
        raw = b"".join(
            alice.message("H", *status_request("s1", "2")).encode() for _ in range(STATUS)
        )
        await alice.send_raw(raw)
        for _ in range(STATUS):
            await alice.expect("8", 10)
        _reads(alice, False)
        conn = next(iter(gw.connections))
        assert conn.transport is not None and conn.session is not None
        conn.transport.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_SNDBUF, TIGHT
        )
        await alice.send("2", (7, 2), (16, 0))
        session = conn.session
        await settled(lambda: conn.writing_paused and session.resending, 10)
        assert conn.writing_paused and session.resending
        h.funder.publish_batch([taker(8, 100, 993)])  # BOB takes all of s1
        await settled(lambda: not gw.entry.live and session.behind_bytes > 0, 10)
        assert session.behind_bytes > 0, "the scenario needs the fill behind the resend"
        store = session.store
        assert store is not None
        await settled(lambda: _saved(store) == _held(store), 5)  # the kill finds it as it is
        assert _saved(store) == _held(store)
        await crash(h)
        port = await h.start()
        carried = await _reset_logon(port)
        assert (b"s1", b"F") in _reports(carried), "the fill never reaches her"

    run_scenario(h, scenario, 60)


def test_reports_draining_after_a_logout_at_a_kill_are_carried(
    instance: str, tmp_path: Path
) -> None:
    """Scenario: ALICE (4 KiB socket buffers) reads nothing while 400 orders of hers are
    accepted: ~100 KB of New reports wait in the gateway's transport buffer (under its
    high-water mark, so it still reads her). She sends a Logout: the gateway answers it and
    ends the session, its transport draining as she reads. The gateway is SIGKILLed before
    she has read them; she logs on to the restarted one with ResetSeqNumFlag.
    Expected: every accepted order's New report reaches her, on the old connection or
    carried after the Logon (README: those a gateway killed outright held are parked again).
    Was (fixed): the session's end saved "all handed on": most never reach her."""
    h = _exchange(instance, tmp_path)

    async def scenario(h: Harness, port: int) -> None:
        gw = _gw(h)
        alice = await _full_buffers(h, port)
        conn = next(iter(gw.connections))
        session = conn.session
        assert session is not None and conn.transport is not None
        await alice.send("5")
        await settled(lambda: session.closed, 10)
        assert session.closed and conn.transport.get_write_buffer_size() > 0
        await crash(h)
        _reads(alice, True)
        assert alice.reader is not None
        old, _ = await _read_all(alice.reader, 5)
        seen = _acked(_messages(old))
        assert len(seen) < N
        port = await h.start()
        carried = _acked(await _reset_logon(port))
        missing = {f"o{k}".encode() for k in range(N)} - seen - carried
        assert not missing, f"{len(missing)} of {N} New reports never reach her"

    run_scenario(h, scenario, 60)


def _older_store(tmp_path: Path) -> Any:
    """``procs/gateway/store.py`` as the build before 91c4d4f had it, imported aside."""
    root = Path(__file__).resolve().parents[3]
    try:
        text = subprocess.run(
            ["git", "show", f"{BEFORE}:procs/gateway/store.py"], cwd=root, capture_output=True,
            check=True, text=True, timeout=30,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        pytest.skip(f"no git history with {BEFORE} here")
    path = tmp_path / "older_store.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("older_store", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["older_store"] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules["older_store"]
    return module


def _used(directory: Path) -> tuple[int, int]:
    """A store as this build leaves it after a few messages, a write pass and the session's
    clean end; its numbers."""
    s = store_mod.MessageStore(directory)
    s.set_next_in(4)
    for seq in (1, 2, 3):
        s.add_outbound(seq, b"8=FIX.4.4\x019=5\x0135=0\x0134=%d\x0152=x\x0110=000\x01" % seq)
    s.unhanded("conn", s.next_out)  # a write pass: all handed on
    s.flush()
    s.connection_ended("conn")  # the session ended (a logout, a clean stop)
    s.close()
    return 4, 4


def test_the_build_before_can_open_a_store_this_build_wrote(tmp_path: Path) -> None:
    """Scenario: a session's store as this build leaves it (messages sent, all handed on, the
    session ended cleanly: its fourth number 0); the operator stops and rolls back to the
    build before 91c4d4f, which opens it at the logon.
    Expected: it opens (the numbers go on), or README says what a downgrade needs.
    Was (fixed): ``MessageStoreError``: "25 bytes, not 24 (or 16, an older build's): damaged; to
    start the session's numbers at 1, remove it" (it reads one byte past its own size);
    README is silent."""
    older = _older_store(tmp_path)
    numbers = _used(tmp_path / "ALICE")
    opened = older.MessageStore(tmp_path / "ALICE")
    try:
        assert (opened.next_in, opened.next_out) == numbers
    finally:
        opened.close()


# == sound ========================================================================================


def test_checked_a_24_byte_seqnums_of_the_build_before_reads_as_all_handed(tmp_path: Path) -> None:
    """Scenario: the build before 91c4d4f leaves a store (24-byte ``seqnums``, none parked);
    this build opens it.
    Expected: the numbers are taken, nothing is parked again.
    Now: so."""
    older = _older_store(tmp_path)
    s = older.MessageStore(tmp_path / "ALICE")
    s.set_next_in(3)
    s.add_outbound(1, b"8=FIX.4.4\x019=5\x0135=8\x0134=1\x0152=x\x0110=000\x01")
    s.flush()
    s.close()
    assert (tmp_path / "ALICE" / "seqnums").stat().st_size == 24
    now = store_mod.MessageStore(tmp_path / "ALICE")
    try:
        assert (now.next_in, now.next_out, now.parked_from) == (3, 2, 0)
    finally:
        now.close()


def test_checked_a_session_idle_a_heartbeat_before_the_kill_has_nothing_carried(
    harness: Harness,
) -> None:
    """Scenario: ALICE (HeartBtInt 1) places an order and reads its New, then the gateway's
    next Heartbeat (or TestRequest); SIGKILL; she logs on with ResetSeqNumFlag.
    Expected: nothing she saw is carried (the Heartbeat re-parked is a session message).
    Now: so."""

    async def scenario(h: Harness, port: int) -> None:
        alice = Client("ALICE")
        await alice.connect(port)
        await alice.logon(hb=1)
        await alice.send("D", *order("s1", "2", "1.00", "100.00"))
        assert (await alice.expect("8")).get(150) == b"0"
        while (m := await alice.recv(5)) is not None and m.get(35) not in (b"0", b"1"):
            pass  # the gateway's next session message (a Heartbeat or TestRequest)
        assert m is not None
        await crash(h)
        await alice.aclose()
        port = await h.start()
        assert _reports(await _reset_logon(port)) == []

    run(harness, scenario)


def test_checked_two_connections_in_a_row_then_a_kill_carry_the_last_write_at_most(
    harness: Harness,
) -> None:
    """Scenario: ALICE places s1, reads its New, logs out (reading the answer); logs on again
    keeping her numbers, places s2, reads its New; SIGKILL; she logs on with ResetSeqNumFlag.
    Expected: s1's New is never carried (the first connection ended cleanly); s2's New may
    come again (the last write, its ExecID the same: README), nothing else.
    Now: so."""

    async def scenario(h: Harness, port: int) -> None:
        alice = Client("ALICE")
        await alice.connect(port)
        await alice.logon()
        await alice.send("D", *order("s1", "2", "1.00", "100.00"))
        await alice.expect("8")
        await alice.send("5")
        await alice.expect("5")
        await alice.aclose()
        again = Client("ALICE")
        again.seq = alice.seq
        await again.connect(port)
        await again.logon()
        await again.send("D", *order("s2", "2", "1.00", "101.00"))
        new = await again.expect("8")
        await crash(h)
        await again.aclose()
        port = await h.start()
        carried = [m for m in await _reset_logon(port) if m.get(35) == b"8"]
        assert [(m.get(11), m.get(17)) for m in carried] in ([], [(b"s2", new.get(17))])

    run(harness, scenario)


def test_checked_a_logout_then_a_fill_parked_then_a_kill_carry_the_fill_once(
    harness: Harness,
) -> None:
    """Scenario: ALICE places s1, reads its New and logs out cleanly; BOB fills s1 while she
    is away (the store opened for parking, no connection); SIGKILL; she logs on with
    ResetSeqNumFlag.
    Expected: the fill comes once, and nothing else (not the New she read).
    Now: so."""

    async def scenario(h: Harness, port: int) -> None:
        alice = Client("ALICE")
        await alice.connect(port)
        await alice.logon()
        await alice.send("D", *order("s1", "2", "1.00", "100.00"))
        await alice.expect("8")
        await alice.send("5")
        await alice.expect("5")
        await alice.aclose()
        gw = _gw(h)
        h.funder.publish_batch([taker(8, 100, 994)])
        await settled(lambda: not gw.entry.live, 5)
        assert not gw.entry.live
        await crash(h)
        port = await h.start()
        assert _reports(await _reset_logon(port)) == [(b"s1", b"F")]

    run(harness, scenario)
