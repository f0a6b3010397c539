"""Review 139 (``..._fuzz.py``): the venue's other small durable files, each written by its
real writer, damaged (every bit, every cut, zero runs, garbage; exhaustive, so no hypothesis)
and read back by its real reader. The rule: a torn tail (a crash) is cut and nothing
acknowledged is lost; any other damage is refused naming the file, or is provably harmless:
never an unhandled exception, never another state read silently.

Checked and sound (plain tests below): the journal (``journal.py``): every bit of every
segment header, a flipped bit in each entry but the last of the last segment, a sealed
segment cut short at any byte (entry boundaries too) are each ``JournalCorruptError`` naming
the segment and offset, and ``repair`` changes nothing; the durable mark
(``journal_durable.py``) missing, short, zero-filled or with garbage after it (no bound, 0,
0, the mark); ``clordids.log``'s torn last digest (cut, logged); the ``exec-ids`` mark's
refusals (a ``ValueError`` naming the file and saying to remove it, nothing else raised);
the REST API's orders in the order log (``rest_order_log.py``: every bit of a log of an open
then finished API order is ``OrderLogError`` naming the file, or one of the two states, and
``RestOrderLog.restore`` takes it); ``supervisor.lock`` with any content (the refusal names
the file); ``status.json``'s damage read by ``supervisor_running`` and ``not_ready``.
Not read back, so not fuzzed: the FIX audit log (written only); the replica's files (shipped
as bytes, never parsed); the database writer has no local state file (a database row).

Faults found (xfail strict, each naming the line and the suggested fix):

1. clordids.py:114-119: ``clordids.log``/``api_ids.log`` have no check: a flipped bit or a
   zeroed digest loads as another digest, silently; the ClOrdID it held is forgotten and a
   client's reuse of it is accepted after the restart.
2. clordids.py:152-161: ``SeenLog.rewrite`` renames its new file over the log without an
   fsync: a host crash can leave the renamed file empty (every digest lost, the old file's
   too, long on disk).
3. exec_ids.py:73: the ExecID mark has no check: a flipped digit bit, or the file cut short
   mid-way, reads as a lower mark, and a gateway whose clock is behind it repeats ExecIDs.
4. run_files.py:90: ``ready`` reads ``status["state"]``: a flipped bit in that key raises
   ``KeyError`` from ``ringex status --wait-ready`` (cli.py:231 does the same with
   ``status["supervisor_pid"]``).
5. run_files.py:83: ``status.json`` has no check. A flipped bit in the key
   ``supervisor_started`` drops the start-time check: a dead supervisor's pid, reused by
   another process, reads as the running supervisor (``ringex stop`` then SIGTERMs that
   process, cli.py:307). A flipped bit in ``supervisor_pid`` naming a process started in the
   same 10 ms tick (its children start at once; seen in this file's run) does the same.
6. promotion.py:61-65: the promotion request has no check: a flipped bit in its epoch digit
   promotes into another epoch, silently.
7. journal_durable.py:50: the durable mark has no check: a flipped bit reads as another seq;
   a higher one lets the database writer commit entries not yet fsynced.

All seven fixed since (same session): the seen logs are ``crc_frames`` frames behind a
header (a last frame that ends at the end and fails its CRC is checked as an overrun is, so
a length flipped to end there is refused) and rewritten durably; the ExecID mark carries its
CRC-32 and must end in its newline; a status whose keys have other types, or without
``state``, is no status, and one without ``supervisor_started`` names no running supervisor;
a promotion request carries a CRC of its pid and epoch; the durable mark keeps its seq's
complement. The xfails became the plain tests below; a bit flipped in the last frame of
``clordids.log`` may read as a torn write (a host crash can leave that), cutting its digest.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from config import load_profile
from config.schema import RingexConfig
from procs.common.exec_ids import ExecIdBlocks
from procs.common.journal import JournalCorruptError
from procs.common.journal_durable import ALL, FILE, DurableMark, durable_upto
from procs.common.journal_format import HEADER_SIZE
from procs.common.records import OrderDone
from procs.common.run_files import (
    InstanceBusyError,
    instance_lock,
    not_ready,
    read_status,
    ready,
    run_dir,
    status_path,
    supervisor_running,
)
from procs.common.types import DoneReason
from procs.gateway.clordids import Generations, SeenLog, digest
from procs.gateway.order_log import OrderLog, OrderLogError
from procs.gateway.rest_params import new_order
from procs.supervisor import promotion
from procs.supervisor.child import Child
from procs.supervisor.main import Supervisor
from procs.supervisor.plan import ProcessSpec
from shm.liveness import process_start
from tests.unit.gateway.test_rest_orders import ALICE, GW, SYM, accepted, core, limit
from tests.unit.router.test_journal import CODEC, ENTRY, SMALL, command, fill, reader
from tests.unit.supervisor.test_review3_ops_bugs import write_profile


def _flips(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Every single-bit flip of ``data``: (bit index, damaged bytes)."""
    for bit in range(len(data) * 8):
        out = bytearray(data)
        out[bit // 8] ^= 1 << (bit % 8)
        yield bit, bytes(out)


# -- clordids.log / api_ids.log ------------------------------------------------------------------

KEYS = [(1, b"A-1"), (1, b"A-2"), (2, b"B-1")]


def _seen_log(path: Path) -> bytes:
    """``clordids.log`` holding three digests, written as a gateway does (``keep``)."""
    seen = Generations(100)
    log = SeenLog(path)
    log.load()
    try:
        for key in KEYS:
            seen.add(digest(*key))
            log.keep(seen)
    finally:
        log.close()
    return path.read_bytes()


def _loaded(path: Path) -> Generations:
    """What a restarted gateway's order entry holds from ``path`` (``restore(load())``)."""
    log = SeenLog(path)
    try:
        seen = Generations(100)
        seen.restore(log.load())
        return seen
    finally:
        log.close()


def test_a_torn_last_digest_is_cut_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Invariant: a prefix of the last digest (a crash mid-append) is cut, with a warning;
    every whole digest is kept."""
    path = tmp_path / "clordids.log"
    raw = _seen_log(path)
    for cut in range(1, 8):
        path.write_bytes(raw + raw[:cut])
        with caplog.at_level(logging.WARNING, "ringex.gateway"):
            seen = _loaded(path)
        assert all(digest(*key) in seen for key in KEYS)
        assert path.read_bytes() == raw and "cut a torn tail" in caplog.text
        caplog.clear()


def _in_last_frame(what: str, raw: bytes) -> bool:
    """Whether the damage ``what`` names lies in ``raw``'s last frame (a digest's, 16 bytes)."""
    if what.startswith("bit "):
        return int(what.split()[1]) // 8 >= len(raw) - 16
    return int(what.split()[1]) == 2


def test_damage_in_clordids_is_never_read_as_another_digest(tmp_path: Path) -> None:
    """Invariant: a damaged ``clordids.log`` (each bit flipped; each digest zeroed) is refused
    naming the file, or loads with every ClOrdID it held still taken, but for damage in the
    last frame, which may read as a torn write and be cut (its header reached the disk, its
    body did not: a crash of the host can leave that)."""
    path = tmp_path / "clordids.log"
    raw = _seen_log(path)
    variants = [(f"bit {bit}", bad) for bit, bad in _flips(raw)]
    variants += [
        (f"digest {k} zeroed", raw[: 16 + 16 * k] + bytes(8) + raw[24 + 16 * k :])
        for k in range(3)  # each behind the header and its frame's
    ]
    forgotten = []
    for what, bad in variants:
        path.write_bytes(bad)
        try:
            seen = _loaded(path)
        except ValueError as exc:
            assert str(path) in str(exc), what
            continue
        kept = [digest(*key) in seen for key in KEYS]
        if not all(kept) and not (kept == [True, True, False] and _in_last_frame(what, raw)):
            forgotten.append(what)
    assert not forgotten, f"a ClOrdID forgotten, silently: {len(forgotten)} of {len(variants)}"


def test_a_rewritten_clordids_log_is_durable_before_it_replaces_the_old(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Invariant: the new file's data is fsynced before the rename that makes it the log."""
    path = tmp_path / "clordids.log"
    _seen_log(path)
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(f"fsync {os.fstat(fd).st_ino}")
        real_fsync(fd)

    def replace(src: str | Path, dst: str | Path) -> None:
        events.append(f"replace {os.stat(src).st_ino}")
        real_replace(src, dst)

    log = SeenLog(path)
    try:
        seen = Generations(2)
        seen.restore(log.load())
        seen.add(digest(3, b"C-1"))
        seen.add(digest(3, b"C-2"))  # the entry drops its oldest generation: a rewrite
        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)
        log.keep(seen)
    finally:
        monkeypatch.undo()
        log.close()
    replaced = [e for e in events if e.startswith("replace")]
    assert replaced, "no rewrite happened"
    inode = replaced[0].split()[1]
    assert f"fsync {inode}" in events[: events.index(replaced[0])], events


# -- exec-ids -------------------------------------------------------------------------------------

MARK_AHEAD = 10**15  # the mark 11 days of ns ahead of the clock: a clock stepped back


def _exec_ids(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, bytes]:
    """A mark written by the real writer (``reserve``), with the clock behind it from then
    on; returns the mark and the file's bytes."""
    now = time.time_ns()
    mark = ExecIdBlocks(path).reserve(now + MARK_AHEAD)
    monkeypatch.setattr(time, "time_ns", lambda: now)  # exec_ids.py's clock
    return mark, path.read_bytes()


def _start_or_refusal(path: Path) -> int | None:
    """``start()``, or None where it refused as documented (a ValueError naming the file and
    what to do)."""
    try:
        return ExecIdBlocks(path).start()
    except ValueError as exc:
        assert str(path) in str(exc) and "remove the file" in str(exc)
        return None


def test_a_damaged_exec_ids_mark_is_refused_or_read_never_raises_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Invariant: every flipped bit, cut, zero run and appended garbage gives a mark or the
    documented refusal, nothing else (the gateway starts, or says what to do)."""
    path = tmp_path / "exec-ids"
    mark, raw = _exec_ids(path, monkeypatch)
    assert ExecIdBlocks(path).start() == mark and ExecIdBlocks(path).counter_start() > mark
    variants = [bad for _, bad in _flips(raw)]
    variants += [raw[:cut] for cut in range(len(raw))]
    variants += [raw[:at] + bytes(len(raw) - at) for at in range(len(raw))]
    variants += [raw + b"\x01garbage", b"\0" * 4096]
    for bad in variants:
        path.write_bytes(bad)
        _start_or_refusal(path)


def test_a_flipped_bit_in_the_exec_ids_mark_never_lowers_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Invariant: a damaged mark is refused, or reads as no lower than the mark written."""
    path = tmp_path / "exec-ids"
    mark, raw = _exec_ids(path, monkeypatch)
    for bit, bad in _flips(raw):
        path.write_bytes(bad)
        start = _start_or_refusal(path)
        assert start is None or start >= mark, f"bit {bit}: {bad!r} read as {start}"


def test_an_exec_ids_mark_cut_short_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Invariant: a mark cut short is refused (it is written whole by a rename: never torn)."""
    path = tmp_path / "exec-ids"
    mark, raw = _exec_ids(path, monkeypatch)
    for cut in range(len(raw) - 1):
        path.write_bytes(raw[:cut])
        start = _start_or_refusal(path)
        assert start is None or start >= mark, f"cut at {cut}: read as {start}"


# -- the REST API's orders in the order log -------------------------------------------------------


def test_a_damaged_order_log_of_api_orders_is_refused_or_read_whole(tmp_path: Path) -> None:
    """Invariant: every flipped bit of a log of an API order (open, then finished: two writes)
    is ``OrderLogError`` naming the file, or reads as the log after its first or second write
    (the last one cut as torn), and ``restore`` takes what it read."""
    c, out = core()
    c.new_order(new_order(limit("BUY", "100.00", "1"), c.instruments), ALICE, 1, 5)
    cmd = out.pop()
    c.process(accepted(cmd, order_id=7, seq=40))  # type: ignore[arg-type]
    c.end_of_batch()
    first = c.take_changes()
    c.process(OrderDone(41, 0, GW, 1, 0, ALICE, SYM.id, 7, DoneReason.CANCELLED, 0, 100))
    c.end_of_batch()
    second = c.take_changes()
    path = tmp_path / "orders.log"
    log = OrderLog(path)
    log.load()
    states = []
    try:
        for entries in (first, second):
            log.write(entries)
            again = OrderLog(path)
            states.append(again.load().api_orders)
            again.close()
    finally:
        log.close()
    raw = path.read_bytes()
    for bit, bad in _flips(raw):
        path.write_bytes(bad)
        reopened = OrderLog(path)
        try:
            got = reopened.load().api_orders
        except OrderLogError as exc:
            assert str(path) in str(exc), bit
            continue
        finally:
            reopened.close()
        assert got in states, bit
        fresh, _ = core()
        fresh.restore(got)
        order = fresh.order(ALICE, 7)
        assert order is not None and order.status in ("NEW", "CANCELED"), bit


# -- run files: status.json, supervisor.lock, the promotion request -------------------------------


@pytest.fixture
def run_cfg(instance: str, tmp_path: Path) -> RingexConfig:
    return load_profile(str(write_profile(tmp_path / "p.toml", instance, tmp_path / "var")))


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _status(cfg: RingexConfig, child: subprocess.Popen[bytes]) -> bytes:
    """``status.json`` as a running supervisor writes it (``Supervisor.write_status``)."""
    sup = Supervisor(cfg, "p")
    spec = ProcessSpec("router", "procs.router.main", (), (0,), "", "")
    sup.children = [Child(spec, process=child, started_at=time.monotonic(), ready=True)]
    sup.state = "running"
    run_dir(cfg).mkdir(parents=True, exist_ok=True)
    sup.write_status()
    return status_path(cfg).read_bytes()


def test_status_damage_never_raises_from_supervisor_running_or_not_ready(
    run_cfg: RingexConfig, sleeper: subprocess.Popen[bytes]
) -> None:
    """Invariant: every flipped bit of ``status.json`` reads as None or a dict, and
    ``supervisor_running`` and ``not_ready`` answer (what ``ringex run``/``stop`` ask)."""
    raw = _status(run_cfg, sleeper)
    assert supervisor_running(read_status(run_cfg)) == os.getpid()
    for bit, bad in _flips(raw):
        status_path(run_cfg).write_bytes(bad)
        status = read_status(run_cfg)
        assert status is None or isinstance(status, dict)
        running = supervisor_running(status)
        # a pid digit flipped to a process started in the same clock tick (10 ms) is taken
        # for it: fault 5 (the supervisor's children start at once)
        assert running is None or process_start(running) == process_start(os.getpid()), bit
        assert isinstance(not_ready(status), str)


def test_a_damaged_status_key_never_raises_from_ready(
    run_cfg: RingexConfig, sleeper: subprocess.Popen[bytes]
) -> None:
    raw = _status(run_cfg, sleeper)
    for _, bad in _flips(raw):
        status_path(run_cfg).write_bytes(bad)
        ready(read_status(run_cfg))


def test_a_damaged_start_key_never_takes_another_process_for_the_supervisor(
    run_cfg: RingexConfig, sleeper: subprocess.Popen[bytes]
) -> None:
    """Invariant: a status of a dead supervisor whose pid is now another process's is not
    running, damaged or not."""
    doc = json.loads(_status(run_cfg, sleeper))
    doc["supervisor_pid"] = sleeper.pid  # reused by another process since (its start differs)
    raw = json.dumps(doc, indent=2).encode()
    status_path(run_cfg).write_bytes(raw)
    assert supervisor_running(read_status(run_cfg)) is None
    at = raw.index(b'"supervisor_started"') + len("supervisor_starte")
    status_path(run_cfg).write_bytes(raw[:at] + bytes([raw[at] ^ 0x20]) + raw[at + 1 :])
    assert supervisor_running(read_status(run_cfg)) is None


def test_a_damaged_lock_file_still_refuses_naming_the_file(run_cfg: RingexConfig) -> None:
    """Invariant: whatever ``supervisor.lock`` holds, a second start is refused with
    ``InstanceBusyError`` naming the file (its content only fills the message)."""
    path = run_dir(run_cfg) / "supervisor.lock"
    with instance_lock(run_cfg):
        raw = path.read_bytes()
        variants = [bad for _, bad in _flips(raw)]
        variants += [b"", bytes(64), b"\xff\xfe" * 40, raw + b"\x00junk\n" * 10]
        for bad in variants:
            path.write_bytes(bad)
            with (
                pytest.raises(InstanceBusyError, match=r"supervisor\.lock"),
                instance_lock(run_cfg),
            ):
                pytest.fail("two supervisors hold one instance")
    with instance_lock(run_cfg):  # released: a damaged file does not keep it held
        assert path.read_bytes() == f"{os.getpid()}\n".encode()


def test_a_flipped_bit_in_a_promotion_request_is_never_another_epoch(
    run_cfg: RingexConfig,
) -> None:
    """Invariant: a damaged request is no request (0), or the epoch asked for."""
    run_dir(run_cfg).mkdir(parents=True, exist_ok=True)
    promotion.request(run_cfg, os.getpid(), 7)
    path = run_dir(run_cfg) / promotion.REQUEST
    raw = path.read_bytes()
    assert promotion.requested(run_cfg) == 7
    for bit, bad in _flips(raw):
        path.write_bytes(bad)
        assert promotion.requested(run_cfg) in (0, 7), f"bit {bit}: {bad!r}"


# -- the journal's durable mark -----------------------------------------------------------------


def test_a_short_zeroed_or_lengthened_durable_mark_holds_readers_back(tmp_path: Path) -> None:
    """Invariant: no file is no bound; one shorter than a mark (a crash before the first)
    or zero-filled is 0 (readers wait for the writer's next open); bytes after the mark do
    not change it."""
    assert durable_upto(tmp_path) == ALL
    DurableMark(tmp_path, 4242).close()
    raw = (tmp_path / FILE).read_bytes()
    assert durable_upto(tmp_path) == 4242
    for cut in range(len(raw)):
        (tmp_path / FILE).write_bytes(raw[:cut])
        # 8 bytes read as an older build's mark (the seq alone): here the seq written
        assert durable_upto(tmp_path) == (4242 if cut == 8 else 0)
    (tmp_path / FILE).write_bytes(bytes(8))
    assert durable_upto(tmp_path) == 0
    (tmp_path / FILE).write_bytes(raw + b"\xff" * 100)
    assert durable_upto(tmp_path) == 4242
    DurableMark(tmp_path, 4243).close()  # the next writer's open marks over any damage
    assert durable_upto(tmp_path) == 4243


def test_a_flipped_bit_in_the_durable_mark_never_raises_it(tmp_path: Path) -> None:
    """Invariant: a damaged mark says no more than the mark written."""
    DurableMark(tmp_path, 4242).close()
    raw = (tmp_path / FILE).read_bytes()
    for bit, bad in _flips(raw):
        (tmp_path / FILE).write_bytes(bad)
        assert durable_upto(tmp_path) <= 4242, bit


# -- the journal: sealed segments and entries before the last -----------------------------------

TOTAL = 25  # segments of 10, 10 and 5 entries


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("journal139") / "j"
    fill(path, TOTAL, segment_bytes=SMALL)
    return path


def _refused(directory: Path, segment: Path) -> JournalCorruptError:
    """The error reading ``directory`` whole raises: it names ``segment`` and an offset;
    nothing untrue was yielded before it."""
    got = 0
    with pytest.raises(JournalCorruptError) as caught:
        for seq, image in reader(directory).entries():
            got += 1
            assert seq == got and CODEC.decode_slot(image) == command(seq)
    exc = caught.value
    assert exc.path == segment and str(exc).startswith(f"{segment}: offset {exc.offset}: ")
    return exc


def _segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.journal"))


def test_every_flipped_header_bit_is_refused_naming_the_segment(journal: Path) -> None:
    """Invariant: a segment whose header has any bit flipped is refused, naming it: by a full
    read, and (the last segment's) by ``last_seq`` and ``repair``, which cut nothing."""
    for k, segment in enumerate(_segments(journal)):
        raw = segment.read_bytes()
        try:
            for bit, bad in _flips(raw[:HEADER_SIZE]):
                segment.write_bytes(bad + raw[HEADER_SIZE:])
                _refused(journal, segment)
                if k == 2:
                    with pytest.raises(JournalCorruptError):
                        reader(journal).last_seq()
                    with pytest.raises(JournalCorruptError):
                        reader(journal).repair()
                    assert segment.stat().st_size == len(raw), bit
        finally:
            segment.write_bytes(raw)


def test_a_flipped_bit_in_an_entry_before_the_last_is_refused(journal: Path) -> None:
    """Invariant: a flipped bit in any entry of the last segment but its last (a bit a byte:
    every byte's bit ``byte % 8``) is refused by a full read; ``repair`` leaves the file as
    it is; one in the zero pad the CRC does not cover yields the true entries."""
    segment = _segments(journal)[-1]
    raw = segment.read_bytes()
    count = (len(raw) - HEADER_SIZE) // ENTRY
    try:
        for byte in range(HEADER_SIZE, HEADER_SIZE + (count - 1) * ENTRY):
            bad = bytearray(raw)
            bad[byte] ^= 1 << (byte % 8)
            segment.write_bytes(bytes(bad))
            within = (byte - HEADER_SIZE) % ENTRY
            if within >= 8 + CODEC.slot_size + 4:  # the zero pad: never read
                assert [s for s, _ in reader(journal).entries()] == list(range(1, TOTAL + 1))
                continue
            _refused(journal, segment)
            with contextlib.suppress(JournalCorruptError):  # the last entry sound: opening
                assert reader(journal).repair() == 0  # reads no further (documented)
            assert segment.read_bytes() == bytes(bad), byte
    finally:
        segment.write_bytes(raw)


def test_a_sealed_segment_cut_short_anywhere_is_refused(journal: Path) -> None:
    """Invariant: a segment that is not the last, cut at any byte (a whole number of entries
    too: then the next segment's first seq is a gap), is refused naming a segment; never a
    torn tail cut, never entries yielded past the cut as if contiguous."""
    for segment in _segments(journal)[:-1]:
        raw = segment.read_bytes()
        try:
            for cut in range(len(raw)):
                segment.write_bytes(raw[:cut])
                with pytest.raises(JournalCorruptError):
                    list(reader(journal).entries())
            for whole in range(HEADER_SIZE, len(raw), ENTRY):
                segment.write_bytes(raw[:whole])
                exc = _refused(journal, _segments(journal)[_segments(journal).index(segment) + 1])
                assert "gap" in str(exc)
                reader(journal).repair()  # the last segment's tail only: nothing to cut
                assert segment.stat().st_size == whole
        finally:
            segment.write_bytes(raw)
