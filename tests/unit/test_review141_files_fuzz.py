"""Review 141: the last small durable files, each written by its real writer, damaged (every
bit, every cut, zeroed, garbage appended, values of another type; exhaustive) and read back by
its real reader. The rule: a torn tail is cut or read as none yet and nothing acknowledged is
lost; any other damage is refused naming the file, or is provably harmless: never an
unhandled exception, never another state read silently.

Checked and sound (plain tests): ``epochs.json`` cut at any byte, zeroed, with garbage after
it, or with a value of another type never raises but ``EpochsError`` naming the file;
``history.chain`` (``journal_history.py``) with any bit flipped, cut anywhere, zeroed or
lengthened gives the hashes of one pass from seq 1 (each record's CRC and the journal's entry
drop a bad key, which is derived data); ``session_end.json`` damaged anyhow never raises, and
one cut, zeroed or lengthened is read as unreadable (the end that passed is then sent unless
the journal holds it), with a warning naming the file; a digit flipped lower, or higher by
less than a day, is harmless (an end sent again is not, as the journal holds it);
``units.json`` with any bit flipped, cut, zeroed or lengthened is refused naming the file,
or read as it was (whitespace).
``standby.json`` (``standby.py:348``) has a writer and no reader (the operator's), so no
damage to it is read: pinned below. Not fuzzed: the database writer's checkpoint CRC is a
PostgreSQL row (no database here).

Faults found (xfail strict when written; all six fixed since, the same session: ``epochs.json``
keeps a ``crc32`` and every key with its type, the session-end record a CRC of ``end_ns`` and
``after_seq``, and ``units.json`` is checked level by level):

1. epochs.py:137-140: ``epochs.json`` has no check: a flipped digit bit of an epoch or a
   first seq loads as another history (9 flips of 720: epoch 1 as 0, its first seq as 0, 3
   or 5, seq 5 as 4 or 7...): a primary takes itself for another history, a standby compares
   another (and may keep or cut another tail at ``demote``).
2. epochs.py:138: ``doc.get("fenced")``: a flipped bit in the key ``fenced`` (or a falsy
   value of another type: false, 0, "", []) loads the journal unfenced, silently:
   ``check_open`` passes and a fenced old primary sequences commands again.
3. epochs.py:140: ``doc.get("known", 0)``: a flipped bit in the key, or a digit, loads
   another ``known`` (0: the guard in ``promoted`` against reusing the primary's epoch goes).
4. epochs.py:137-140: ``int()`` takes ``true`` as 1 and ``2.5`` as 2: a value of another
   type reads as an epoch.
5. session_end.py:193-208: the record has no check: a flipped digit bit of ``end_ns`` that
   raises it by more than a day, read by a supervisor back after the next end, makes that
   end look sent (or the clock look set back: session_end.py:187 then records the due end as
   sent): that END_OF_SESSION never goes and DAY orders rest on.
6. units.py:90,92,100: ``units_refused`` assumes objects: ``"assets": []`` or an asset that
   is not an object raises ``AttributeError`` from ``units_differ`` (only ``UnitsError`` is
   caught), out of the supervisor's start and restart check and the router's start.

Suggested fixes: 1-4, a CRC-32 of the canonical document stored beside it (as
``promote.json`` has since review 139) and strict types (``type(x) is int``), the keys
``epochs``, ``fenced``, ``known`` required; 5, the same CRC (a record failing it is
unreadable, which is the conservative path already); 6, check each level's type in ``_read``.
"""

from __future__ import annotations

import json
import logging
import re
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.schema import RingexConfig, SupervisorConfig
from procs.common import journal_history
from procs.common.epochs import FILE as EPOCHS
from procs.common.epochs import Epochs, EpochsError
from procs.common.journal import HEADER_SIZE, EntryLayout, JournalReader
from procs.common.journal_history import CHAIN_FILE, HistoryChain
from procs.common.journal_writer import JournalWriter
from procs.common.units import pin_units, units_differ, units_path
from procs.supervisor import session_end
from procs.supervisor.journaled_ends import JournaledEnd
from procs.supervisor.session_clock import DAY_NS
from procs.supervisor.session_end import SessionEnds, session_end_path
from tests.unit.replica.history_reference import hashes_before
from tests.unit.replica.test_source import CODEC, commands
from tests.unit.supervisor.test_session_clock import utc

ROOT = Path(__file__).resolve().parents[2]


def _flips(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Every single-bit flip of ``data``: (bit index, damaged bytes)."""
    for bit in range(len(data) * 8):
        out = bytearray(data)
        out[bit // 8] ^= 1 << (bit % 8)
        yield bit, bytes(out)


def _other_damage(raw: bytes) -> Iterator[tuple[str, bytes]]:
    """Cuts at every byte, the file zeroed (whole, and grown by zeros), garbage after it."""
    for cut in range(len(raw)):
        yield f"cut at {cut}", raw[:cut]
    yield "zeroed", bytes(len(raw))
    yield "zeros after", raw + bytes(64)
    yield "garbage after", raw + b"\x8f garbage \x01"
    yield "json after", raw + b'{"x": 1}'


# -- epochs.json ---------------------------------------------------------------------------------

SOUND = Epochs(((1, 1), (2, 5), (3, 9)), known=3).fenced(4, "b")


def _epochs(tmp_path: Path) -> bytes:
    SOUND.save(tmp_path)
    return (tmp_path / EPOCHS).read_bytes()


def _load_epochs(tmp_path: Path, data: bytes) -> Epochs | None:
    """The epochs ``data`` loads as, or None where refused naming the file; never else."""
    (tmp_path / EPOCHS).write_bytes(data)
    try:
        return Epochs.load(tmp_path)
    except EpochsError as exc:
        assert str(tmp_path / EPOCHS) in str(exc)
        return None


def _flipped_epochs(tmp_path: Path) -> list[tuple[int, Epochs]]:
    """Each flip the reader takes, with what it loads (other than the sound form)."""
    raw = _epochs(tmp_path)
    out = []
    for bit, bad in _flips(raw):
        got = _load_epochs(tmp_path, bad)
        if got is not None and got != SOUND:
            out.append((bit, got))
    return out


def test_damaged_epochs_are_refused_naming_the_file_never_another_error(tmp_path: Path) -> None:
    raw = _epochs(tmp_path)
    assert _load_epochs(tmp_path, raw) == SOUND
    for _, bad in _flips(raw):
        _load_epochs(tmp_path, bad)  # asserts: EpochsError naming the file, or a load
    for what, bad in _other_damage(raw):
        assert _load_epochs(tmp_path, bad) is None, what
    doc = json.loads(raw)
    for key, value in [
        ("epochs", {"a": 1}), ("epochs", [[1]]), ("epochs", [1, 2]), ("epochs", None),
        ("fenced", [1]), ("fenced", {"epoch": 4}), ("fenced", "x"), ("known", [3]),
        ("known", "x"), ("known", 1e999),
    ]:  # fmt: skip
        _load_epochs(tmp_path, json.dumps({**doc, key: value}).encode())
    for other in (b"[]", b"1", b'"x"', b"null"):
        assert _load_epochs(tmp_path, other) is None


def test_a_flipped_bit_never_loads_another_epoch_history(tmp_path: Path) -> None:
    other = [(bit, e.history) for bit, e in _flipped_epochs(tmp_path) if e.history != SOUND.history]
    assert not other, f"{len(other)} flips load another history: {other[:4]}"


def test_a_fenced_journal_never_loads_unfenced(tmp_path: Path) -> None:
    raw = _epochs(tmp_path)
    unfenced = [f"bit {bit}" for bit, e in _flipped_epochs(tmp_path) if e.fence is None]
    doc = json.loads(raw)
    values: list[object] = [False, 0, "", [], {}]
    for value in values:
        got = _load_epochs(tmp_path, json.dumps({**doc, "fenced": value}).encode())
        if got is not None and got.fence is None:
            got.check_open(tmp_path)  # no JournalFencedError: the old primary sequences again
            unfenced.append(f"fenced={value!r}")
    assert not unfenced, f"{len(unfenced)} damaged forms load unfenced: {unfenced[:3]}"


def test_a_flipped_bit_never_loads_another_known_epoch(tmp_path: Path) -> None:
    other = [(bit, e.known) for bit, e in _flipped_epochs(tmp_path) if e.known != SOUND.known]
    assert not other, f"{len(other)} flips load another known epoch: {other[:4]}"


def test_a_value_of_another_type_is_never_read_as_an_epoch(tmp_path: Path) -> None:
    raw = _epochs(tmp_path)
    doc = json.loads(raw)
    taken = []
    for key, value in [
        ("known", True), ("known", 3.5), ("known", "3"),
        ("epochs", [[1, 1], [2, 5], [3.5, 9]]), ("epochs", [[1, 1], [2, 5], [True, 9]]),
        ("epochs", [[1, 1], [2, 5], ["3", "9"]]),
    ]:  # fmt: skip
        if _load_epochs(tmp_path, json.dumps({**doc, key: value}).encode()) is not None:
            taken.append((key, value))
    assert not taken, f"read as epochs: {taken}"


# -- history.chain -------------------------------------------------------------------------------

SMALL_BLOCK = 4
ENTRIES = 5 * SMALL_BLOCK + 2


@pytest.fixture
def chained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, bytes]]:
    """A journal of five blocks and two (``BLOCK`` made 4) with its chain kept whole."""
    monkeypatch.setattr(journal_history, "BLOCK", SMALL_BLOCK)
    slot = CODEC.slot_size
    with JournalWriter(
        tmp_path,
        slot_size=slot,
        schema_id=CODEC.journal_schema_id,
        segment_bytes=HEADER_SIZE + 8 * EntryLayout(slot).size,
        fsync="none",
    ) as journal:
        images = b"".join(map(CODEC.encode_slot, commands(1, ENTRIES)))
        journal.append(1, images, ENTRIES)
    HistoryChain(tmp_path).hashes_before(_reader(tmp_path), [ENTRIES + 1])
    raw = (tmp_path / CHAIN_FILE).read_bytes()
    assert len(raw) == 5 * 24  # a key a block
    yield tmp_path, raw


def _reader(directory: Path) -> JournalReader:
    return JournalReader(directory, slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id)


def test_a_damaged_history_chain_never_gives_another_hash(chained: tuple[Path, bytes]) -> None:
    """Invariant: whatever the damage, every hash is the one of a pass from seq 1, and the
    chain is whole again after (a bad record is dropped with those after it, made again)."""
    directory, raw = chained
    seqs = list(range(1, ENTRIES + 2))
    truth = hashes_before(_reader(directory).entries(1), seqs)
    path = directory / CHAIN_FILE
    variants = [(f"bit {bit}", bad) for bit, bad in _flips(raw)]
    variants += list(_other_damage(raw))
    variants += [
        (f"record {k} zeroed", raw[: 24 * k] + bytes(24) + raw[24 * k + 24 :]) for k in range(5)
    ]
    for what, bad in variants:
        path.write_bytes(bad)
        assert HistoryChain(directory).hashes_before(_reader(directory), seqs) == truth, what
        assert HistoryChain(directory).hashes_before(_reader(directory), [ENTRIES + 1]) == {
            ENTRIES + 1: truth[ENTRIES + 1]
        }, what
    assert zlib.crc32(bytes(20)) != 0  # a zeroed record fails its CRC


# -- session_end.json ----------------------------------------------------------------------------

END = utc("2026-03-10 17:00")


class Journal:
    """The journal's END_OF_SESSIONs as ``JournaledEnds`` answers for them."""

    def __init__(self, ends: list[int]) -> None:
        self.ends = ends

    def first_since(
        self, since_ns: int, after_seq: int = 0, sent_from: int = 0
    ) -> JournaledEnd | None:  # (each end's sender's clock its stamp: ``arg`` = ``ts_ns``)
        found = [e for e in self.ends if since_ns <= e < since_ns + DAY_NS and e >= sent_from]
        return JournaledEnd(100, found[0]) if found else None

    def last_seq(self) -> int:
        return 100


class Sends:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def _ends(tmp_path: Path, sends: Sends, journal: Journal) -> SessionEnds:
    cfg = RingexConfig(
        instance="review141",
        var_dir=str(tmp_path),
        supervisor=SupervisorConfig(session_end_utc="17:00"),
    )
    ends = SessionEnds(cfg, 17 * 60, sends)
    ends.journal = journal  # type: ignore[assignment]
    return ends


@pytest.fixture
def no_fsync(monkeypatch: pytest.MonkeyPatch) -> None:
    """The record written whole without an fsync, and no journal opened (a codec each):
    thousands of supervisors here."""

    def write(path: Path, data: bytes, **_: object) -> None:
        path.write_bytes(data)

    monkeypatch.setattr(session_end, "replace_durably", write)
    monkeypatch.setattr(session_end, "JournaledEnds", lambda cfg: Journal([]))


def _record(tmp_path: Path) -> bytes:
    """The record after the end of 2026-03-10 was sent (after a clock set back: after_seq)."""
    sends, journal = Sends(), Journal([])
    ends = _ends(tmp_path, sends, journal)
    ends.poll(utc("2026-03-10 12:00"))
    ends.after_seq = 7
    assert ends.poll(END + 10**9) == END and sends.count == 1
    journal.ends.append(END)
    return session_end_path(ends.cfg).read_bytes()


@pytest.mark.usefixtures("no_fsync")
def test_a_damaged_session_end_record_never_raises_and_cuts_are_unreadable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    raw = _record(tmp_path)
    path = session_end_path(_ends(tmp_path, Sends(), Journal([])).cfg)
    now = END + 60 * 10**9
    for _, bad in _flips(raw):
        path.write_bytes(bad)
        _ends(tmp_path, Sends(), Journal([END])).poll(now + DAY_NS)  # never raises
    for what, bad in [*_other_damage(raw), ("list", b"[1]"), ("string", b'{"end_ns": "1"}')]:
        if not bad:
            continue  # empty: a first start's (replace_durably never leaves one)
        path.write_bytes(bad)
        caplog.clear()
        with caplog.at_level(logging.WARNING, "ringex.supervisor"):
            assert _ends(tmp_path, Sends(), Journal([END])).poll(now) is None, what  # journaled
            path.write_bytes(bad)
            assert _ends(tmp_path, Sends(), Journal([])).poll(now) == END, what  # due: sent
        assert str(path) in caplog.text and "cannot be read" in caplog.text, what


@pytest.mark.usefixtures("no_fsync")
def test_a_flipped_bit_in_the_session_end_record_never_skips_the_next_end(
    tmp_path: Path,
) -> None:
    """Invariant: the record of the end sent today, damaged, and the supervisor down across
    tomorrow's end: that end is sent when it is back (as with the record whole)."""
    raw = _record(tmp_path)
    path = session_end_path(_ends(tmp_path, Sends(), Journal([])).cfg)
    skipped = []
    for bit, bad in _flips(raw):
        path.write_bytes(bad)
        sends = Sends()
        ends = _ends(tmp_path, sends, Journal([END]))
        for at in (END + DAY_NS + 60 * 10**9, END + DAY_NS + 120 * 10**9):
            ends.poll(at)  # a supervisor down across the next end, back a minute after it
        if sends.count != 1:
            skipped.append((bit, sends.count))
    assert not skipped, f"{len(skipped)} flips: (bit, sends) {skipped[:4]}"


# -- units.json ----------------------------------------------------------------------------------


def _units(tmp_path: Path) -> tuple[RingexConfig, Path, bytes]:
    cfg = RingexConfig(instance="review141", var_dir=str(tmp_path))
    pin_units(cfg)
    path = units_path(cfg)
    return cfg, path, path.read_bytes()


def test_damaged_units_are_refused_naming_the_file_or_read_as_they_were(tmp_path: Path) -> None:
    cfg, path, raw = _units(tmp_path)
    assert units_differ(cfg) == ""
    silent = []
    for what, bad in [*((f"bit {b}", d) for b, d in _flips(raw)), *_other_damage(raw)]:
        path.write_bytes(bad)
        refused = units_differ(cfg)
        if refused:
            assert str(path) in refused, what
            continue
        try:
            same = json.loads(bad) == json.loads(raw)
        except ValueError:
            same = False
        if not same and bad:  # empty: none yet (a rename leaves none; harmless either way)
            silent.append(what)
    assert not silent, f"read as other units, silently: {silent[:6]}"


def test_units_of_another_type_are_refused_naming_the_file(tmp_path: Path) -> None:
    cfg, path, raw = _units(tmp_path)
    doc = json.loads(raw)
    raised = []
    for where, value in [
        ("assets", []), ("assets", 1), ("symbols", "x"),
        ("assets.BTC", 2), ("assets.BTC", [2, 8]), ("symbols.BTC-USD", None),
    ]:  # fmt: skip
        bad = json.loads(raw)
        kind, _, name = where.partition(".")
        if name:
            bad[kind][name] = value
        else:
            bad[kind] = value
        path.write_text(json.dumps(bad))
        try:
            assert str(path) in units_differ(cfg), where
        except (AttributeError, TypeError) as exc:
            raised.append(f"{where}={value!r}: {exc!r}")
    path.write_text(json.dumps(doc))
    assert not raised, raised


# -- standby.json --------------------------------------------------------------------------------


def test_standby_json_has_a_writer_and_no_reader() -> None:
    """The standby's status file is written without an fsync (``standby.py:365``): harmless
    while nothing parses it. Pinned: a reader added must take its damage (this review's
    rule), and this test then be replaced by a fuzz of it."""
    users = []
    for tree in ("procs", "scripts", "config", "shm"):
        for source in sorted((ROOT / tree).rglob("*.py")):
            if re.search(r"standby\.json", source.read_text()):
                users.append(source.relative_to(ROOT).as_posix())
    assert users == ["procs/replica/standby.py"]
    text = (ROOT / "procs/replica/standby.py").read_text()
    assert text.count("standby.json") == 2 and "json.loads" not in text
