"""Review 138, part 2 (the feed's requests and the convention: ``..._fuzz.py``): the readers
of the files a crash or a bad disk damages, fed hypothesis's random truncations, bit flips,
zero runs and appended garbage of files their own writers wrote: the journal
(``JournalReader``), snapshots (``SnapshotStore``, ``MarketSnapshots``), the gateway's order
log and message store, the users and API key files. Each must read what is good and cut a
damaged tail as documented, or refuse with an error naming the file (and offset): never
return wrong data silently, never raise an unexpected exception type.

The journal held throughout (wrong images never yielded; a damaged sealed segment never cut;
every refusal a ``JournalCorruptError`` naming the segment and offset). Faults found:

1. snapshots.py:40: a snapshot whose first byte becomes 0x80..0x9F or 0xDC..0xDF is taken as
   an older unframed file: ``latest()`` returns its bytes, header and all, as the state.
2. market_snapshots.py:67: the market-data state has no check: a flipped bit in the pickle
   loads as another state (a ring position 4242 read as 4243: events skipped or applied twice).
3. market_snapshots.py:78: a flipped bit in a field name (``stream``) loads a ``MarketSymbol``
   without it, and the symbols comparison, outside the try, raises ``AttributeError``.
4. order_log.py:229: a frame header zeroed mid-log (length 0, CRC 0: crc32(b"") is 0) passes
   the check; decoding the empty body raises ``msgspec.DecodeError``, naming no file or byte.
5. order_log.py:224: a flipped length bit in a frame before the last makes it overrun the file,
   read as a torn last frame: every later frame is cut and the file truncated, with a warning.
6. store.py:158/167: a flipped length bit in a stored message before the last does the same to
   ``messages``: every later message is cut, the file truncated, with no word at all.
7. store.py:160: 8 zero bytes at the end of ``messages`` (a host crash after the file grew)
   index as an entry of seq 0, which resets the sparse index: ``outbound`` finds nothing.
8. store.py:227: a stored message has no check: a flipped bit is resent as it reads.
9. store.py:91-95: a ``seqnums`` file zeroed or cut to a length other than 16 or 24 reads as
   next-in 0, or as a new session's numbers (1, 1): no error.
10. users.py:117: a users file made non-UTF-8 raises ``UnicodeDecodeError`` naming no file
    (caught: OSError and msgspec's errors only); users.py:219: one whose salt loses a hex
    digit loads, and ``verify`` raises ``ValueError`` (fromhex) at the logon; users.py:116:
    a flipped account digit loads as another account.
11. apikeys.py:132: a damaged API key file raises msgspec's error, naming no file (from
    ``get`` too, in a running gateway); a flipped account digit acts for another account.

Fixed since: 1, 2 and 3 (market-data state framed with a CRC, read in one try), 4 (an empty
frame with data after it is ``OrderLogError``), 7 (a zero length is a torn tail), 10's
non-UTF-8 file and bad salt (``UsersFileError``), 11's naming (a ``ValueError`` naming the
file at construction; a running gateway fails closed, logged); then 5 and 6 (a length that
overruns the file is damage when one bit off or followed by a whole frame:
``crc_frames.tail_damage``), 8 (a CRC per stored message), 9 (``seqnums`` checked) and
the flipped account digits of 10 and 11 (the users and API key files keep a CRC-32).
"""

from __future__ import annotations

import shutil
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from procs.common.apikeys import ApiKeyStore
from procs.common.journal import JournalCorruptError, JournalError
from procs.common.market_snapshots import MarketSnapshots
from procs.common.snapshots import SnapshotStore
from procs.common.users import UsersFileError, UserStore
from procs.core.market.state import MarketState
from procs.gateway.order_log import OrderLog, OrderLogError, Recovered
from procs.gateway.store import MessageStore
from tests.unit.common.test_apikeys import ALICE
from tests.unit.gateway.test_order_log import _written
from tests.unit.marketdata.events import OTHER, SYMBOL
from tests.unit.router.test_journal import CODEC, SMALL, command, fill, reader

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],  # ``scratch``: each example empties its own directory (``_fresh``)
)
TOTAL = 25  # journal entries: segments of 10, 10 and 5


@st.composite
def damage(draw: st.DrawFn, size: int, kinds: tuple[str, ...] = ()) -> tuple[str, int, bytes]:
    """(kind, offset, bytes): a cut at ``offset``, a bit flipped (the byte's xor), a zero run,
    or garbage appended."""
    kind = draw(st.sampled_from(kinds or ("cut", "flip", "zeros", "garbage")))
    if kind == "garbage":
        return kind, size, draw(st.binary(min_size=1, max_size=300))
    at = draw(st.integers(0, size - 1))
    if kind == "flip":
        return kind, at, bytes([1 << draw(st.integers(0, 7))])
    if kind == "zeros":
        return kind, at, bytes(draw(st.integers(1, 300)))
    return kind, at, b""


def damaged(data: bytes, how: tuple[str, int, bytes]) -> bytes:
    kind, at, what = how
    out = bytearray(data)
    if kind == "cut":
        del out[at:]
    elif kind == "flip":
        out[at] ^= what[0]
    elif kind == "zeros":
        out[at : at + len(what)] = what[: len(out) - at]
    else:
        out += what
    return bytes(out)


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("journal") / "j"
    fill(path, TOTAL, segment_bytes=SMALL)
    return path


@pytest.fixture
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as where:
        yield Path(where)


def _fresh(where: Path) -> Path:
    """An empty directory of its own for one example."""
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    return where


# -- the journal --------------------------------------------------------------------------------


@FUZZ
@given(which=st.integers(0, 2), data=st.data())
def test_a_damaged_journal_yields_only_true_entries_or_names_the_damage(
    journal: Path, scratch: Path, which: int, data: st.DataObject
) -> None:
    """Invariant: ``entries()`` yields contiguous seqs from 1, each image the one written;
    it stops short only at damage in the last segment (a torn tail: never a sealed segment
    cut), and then ``last_seq()`` and, after ``repair()``, a second read agree with it; or it
    raises ``JournalCorruptError`` naming the segment and an offset. Nothing else escapes."""
    copy = _fresh(scratch / "j")
    shutil.copytree(journal, copy, dirs_exist_ok=True)
    segment = sorted(copy.glob("*.journal"))[which]
    how = data.draw(damage(segment.stat().st_size))
    segment.write_bytes(damaged(segment.read_bytes(), how))
    got: list[int] = []
    try:
        for seq, image in reader(copy).entries():
            assert seq == len(got) + 1 and CODEC.decode_slot(image) == command(seq)
            got.append(seq)
        last = reader(copy).last_seq()
        reader(copy).repair()
        again = [seq for seq, _ in reader(copy).entries()]
    except JournalCorruptError as exc:
        assert str(exc).startswith(f"{exc.path}: offset {exc.offset}: ")
        assert exc.path.parent == copy
        return
    except JournalError as exc:  # another kind, or no offset: what the invariant forbids
        pytest.fail(f"{how}: {type(exc).__name__} not naming an offset: {exc}")
    if len(got) < TOTAL:
        assert which == 2, how  # only the last segment has a tail to cut
    assert last == len(got) and again == got, how


# -- snapshots ----------------------------------------------------------------------------------


@FUZZ
@given(data=st.data())
def test_a_damaged_snapshot_is_passed_over_for_the_one_before(
    scratch: Path, data: st.DataObject
) -> None:
    """Invariant: with the newest snapshot damaged (cut, a bit flipped, zeros, garbage
    appended), ``latest()`` is the newest as written (damage that changed nothing read) or
    the one before, whole: never other bytes."""
    store = SnapshotStore(_fresh(scratch / "snaps"))
    older, newer = b"\x92\x01\xa3old", b"\x92\x02" + bytes(range(200))
    store.save(1, older)
    path = store.save(2, newer)
    raw = path.read_bytes()
    path.write_bytes(damaged(raw, data.draw(damage(len(raw)))))
    assert store.latest() in ((1, older), (2, newer))


def test_a_framed_snapshot_with_a_damaged_first_byte_is_passed_over(scratch: Path) -> None:
    """Invariant: a damaged snapshot is passed over for the one before."""
    store = SnapshotStore(scratch)
    store.save(1, b"\x92\x01\x02")
    path = store.save(2, b"\x92\x03\x04")
    path.write_bytes(b"\x93" + path.read_bytes()[1:])
    assert store.latest() == (1, b"\x92\x01\x02")


def _market_state(scratch: Path) -> tuple[MarketSnapshots, bytes]:
    snapshots = MarketSnapshots(scratch / "marketdata" / "state.pickle")
    snapshots.save(MarketState([SYMBOL, OTHER]), {"ring": (1_700_000_000, 4242)})
    return snapshots, snapshots.path.read_bytes()


@FUZZ
@given(data=st.data())
def test_a_market_state_cut_is_not_loaded_garbage_after_it_is_ignored(
    scratch: Path, data: st.DataObject
) -> None:
    """Invariant: ``MarketSnapshots.load`` of a file cut short, or with garbage after its end,
    returns None (starting empty, the reason logged): the file's CRC frame (since review 138)
    covers its whole length."""
    snapshots, raw = _market_state(_fresh(scratch / "md"))
    how = data.draw(damage(len(raw), ("cut", "garbage")))
    snapshots.path.write_bytes(damaged(raw, how))
    loaded = snapshots.load(MarketState([SYMBOL, OTHER]))
    assert loaded is None, how


def test_a_damaged_field_name_in_the_market_state_starts_empty(scratch: Path) -> None:
    """Invariant: ``load`` of a damaged file returns None or the state; never raises."""
    snapshots, raw = _market_state(scratch)
    at = raw.index(b"stream") + 5
    snapshots.path.write_bytes(raw[:at] + bytes([raw[at] ^ 1]) + raw[at + 1 :])
    try:
        snapshots.load(MarketState([SYMBOL, OTHER]))
    except Exception as exc:  # that it raises is what is asserted
        pytest.fail(f"load raised {exc!r}")


def test_a_flipped_bit_in_the_market_state_is_not_loaded(scratch: Path) -> None:
    """Invariant: a damaged market state is not loaded (None), never another state."""
    snapshots, raw = _market_state(scratch)
    at = raw.index(b"M" + struct.pack("<H", 4242)) + 1  # BININT2 4242
    snapshots.path.write_bytes(raw[:at] + bytes([raw[at] ^ 1]) + raw[at + 1 :])
    loaded = snapshots.load(MarketState([SYMBOL, OTHER]))
    assert loaded is None or loaded.positions == {"ring": (1_700_000_000, 4242)}


# -- the gateway's order log -------------------------------------------------------------------


def _frame_ends(data: bytes) -> list[int]:
    ends, pos = [], 0
    while pos < len(data):
        pos += 8 + struct.unpack_from("<I", data, pos)[0]
        ends.append(pos)
    return ends


def _load_log(path: Path) -> Recovered:
    """``OrderLog(path).load()``, the log closed after (it opens the file for appends)."""
    log = OrderLog(path)
    try:
        return log.load()
    finally:
        log.close()


def _order_log(where: Path) -> tuple[Path, bytes, list[Recovered]]:
    """The log review 39's tests write (three writes) and the state after each prefix."""
    path = where / "orders.log"
    _written(path).close()
    raw = path.read_bytes()
    states = []
    for end in [0, *_frame_ends(raw)]:
        prefix = where / f"prefix{end}.log"
        prefix.write_bytes(raw[:end])
        states.append(_load_log(prefix))
    return path, raw, states


@FUZZ
@given(data=st.data())
def test_an_order_log_cut_anywhere_replays_the_writes_before_the_cut(
    scratch: Path, data: st.DataObject
) -> None:
    """Invariant: a log cut at any byte replays exactly the writes wholly before the cut,
    and the file is cut back to their end."""
    path, raw, states = _order_log(_fresh(scratch / "log"))
    _, at, _ = data.draw(damage(len(raw), ("cut",)))
    path.write_bytes(raw[:at])
    kept = [end for end in _frame_ends(raw) if end <= at]
    assert _load_log(path) == states[len(kept)]
    assert path.stat().st_size == (kept[-1] if kept else 0)


@FUZZ
@given(data=st.data())
def test_an_order_log_damaged_past_its_lengths_is_refused_or_cut_at_the_last(
    scratch: Path, data: st.DataObject
) -> None:
    """Invariant: a bit flipped or zeros in a frame's CRC or body (not its length: faults
    4 and 5 below), or garbage appended, is refused with ``OrderLogError`` naming the file and the
    frame's byte, or, in the last frame, that frame cut: never another state."""
    path, raw, states = _order_log(_fresh(scratch / "log"))
    how = data.draw(damage(len(raw), ("flip", "zeros", "garbage")))
    starts = [0, *_frame_ends(raw)[:-1]]
    kind, at, what = how
    if kind == "garbage":
        assume(what[:4] != bytes(4) or not any(what))  # a zero length: fault 4 below
    else:  # a frame's length bytes untouched: fault 5 (and zeros there, fault 4)
        assume(not any(at < start + 4 and start < at + len(what) for start in starts))
    path.write_bytes(damaged(raw, how))
    try:
        state = _load_log(path)
    except OrderLogError as exc:
        assert str(path) in str(exc) and "at byte" in str(exc)
        return
    assert state in (states[-1], states[-2]), how
    if state == states[-2]:
        assert at >= starts[-1]


def test_a_zeroed_frame_header_mid_log_names_the_file(scratch: Path) -> None:
    """Invariant: damage before the last frame is ``OrderLogError`` naming file and byte."""
    path, raw, _ = _order_log(scratch)
    second = _frame_ends(raw)[0]
    path.write_bytes(raw[:second] + bytes(8) + raw[second + 8 :])
    try:
        _load_log(path)
    except Exception as exc:  # its type and words are what is asserted
        assert isinstance(exc, OrderLogError) and f"byte {second}" in str(exc)


def test_a_flipped_length_before_the_last_frame_is_not_cut(scratch: Path) -> None:
    """Invariant: damage before the last frame is refused, never cut with what follows."""
    path, raw, states = _order_log(scratch)
    path.write_bytes(raw[:1] + bytes([raw[1] ^ 0x10]) + raw[2:])
    try:
        state = _load_log(path)
    except OrderLogError:
        return
    assert state == states[-1] and path.read_bytes()[2:] == raw[2:]


# -- the gateway's message store ---------------------------------------------------------------

MESSAGES = [(seq, b"8=FIX.4.4\x019=9\x0135=8\x0134=%d\x0110=000\x01" % seq) for seq in (1, 2, 3)]


def _stored(where: Path) -> bytes:
    store = MessageStore(where)
    for seq, raw in MESSAGES:
        store.add_outbound(seq, raw)
    store.close()
    return (where / "messages").read_bytes()


def _reopened(where: Path) -> tuple[list[tuple[int, bytes]], int]:
    store = MessageStore(where)
    try:
        return store.outbound(1, 100), store.next_out
    finally:
        store.close()


@FUZZ
@given(data=st.data())
def test_a_message_store_cut_anywhere_keeps_the_messages_before_the_cut(
    scratch: Path, data: st.DataObject
) -> None:
    """Invariant: ``messages`` cut at any byte (a crash mid-flush) resends exactly the
    messages wholly before the cut, and never gives a sent MsgSeqNum again."""
    where = _fresh(scratch / "session")
    raw = _stored(where)
    _, at, _ = data.draw(damage(len(raw), ("cut",)))
    (where / "messages").write_bytes(raw[:at])
    ends = [8 + sum(16 + len(m) for _, m in MESSAGES[: k + 1]) for k in range(len(MESSAGES))]
    assert _reopened(where) == (MESSAGES[: sum(end <= at for end in ends)], 4)


def _store_fault(where: Path, raw: bytes) -> tuple[list[tuple[int, bytes]], int] | str:
    """What a reopened store resends, or the error it refused with."""
    (where / "messages").write_bytes(raw)
    try:
        return _reopened(where)
    except Exception as exc:  # the words are what is asserted
        return str(exc)


def _refused_or_whole(got: tuple[list[tuple[int, bytes]], int] | str, where: Path) -> None:
    assert got == (MESSAGES, 4) or (isinstance(got, str) and str(where) in got)


def test_a_flipped_length_before_the_last_message_is_not_cut(scratch: Path) -> None:
    """Invariant: stored messages are resent whole, or the store refuses naming the file."""
    raw = _stored(scratch)
    _refused_or_whole(_store_fault(scratch, raw[:10] + bytes([raw[10] ^ 1]) + raw[11:]), scratch)


def test_zeros_after_the_last_message_are_a_torn_tail(scratch: Path) -> None:
    """Invariant: zeros a crash left after the messages are cut; the messages stay."""
    raw = _stored(scratch)
    _refused_or_whole(_store_fault(scratch, raw + bytes(8)), scratch)


def test_a_flipped_bit_in_a_stored_message_is_not_resent(scratch: Path) -> None:
    """Invariant: a stored message is resent as written, or the store refuses."""
    raw = _stored(scratch)
    at = 8 + 2 * 12 + len(MESSAGES[0][1]) + len(MESSAGES[1][1]) - 1
    _refused_or_whole(
        _store_fault(scratch, raw[:at] + bytes([raw[at] ^ 1]) + raw[at + 1 :]), scratch
    )


@pytest.mark.parametrize("seqnums", [bytes(24), struct.pack("<QQQ", 9, 4, 0)[:20]])
def test_a_damaged_seqnums_file_is_refused(scratch: Path, seqnums: bytes) -> None:
    """Invariant: the session's numbers read as saved (9 in, 4 out) or the store refuses."""
    _stored(scratch)
    (scratch / "seqnums").write_bytes(seqnums)
    try:
        store = MessageStore(scratch)
    except Exception as exc:  # the words are what is asserted
        assert str(scratch) in str(exc)
        return
    assert (store.next_in, store.next_out) == (9, 4)


# -- users and API keys --------------------------------------------------------------------


def _users(where: Path) -> tuple[Path, bytes]:
    path = where / "users.json"
    store = UserStore(path)
    store.add("ALICE", "secret", 7, n=2)
    store.add("BOB", "secret", 8, n=2)
    store.compact()  # every user in the file
    return path, path.read_bytes()


@FUZZ
@given(data=st.data())
def test_a_damaged_users_file_loads_or_is_refused_naming_it(
    scratch: Path, data: st.DataObject
) -> None:
    """Invariant: ``UserStore`` of a damaged users file raises ``UsersFileError`` naming the
    file, or loads; a file cut short never loads fewer users."""
    path, raw = _users(_fresh(scratch / "users"))
    how = data.draw(damage(len(raw)))
    assume(how[:1] + how[2:] != ("flip", b"\x80"))  # a byte made non-UTF-8: fault 10 below
    path.write_bytes(damaged(raw, how))
    try:
        users = UserStore(path).users()
    except UsersFileError as exc:
        assert str(path) in str(exc)
        return
    if how[0] == "cut":
        assert {u.comp_id for u in users} == {"ALICE", "BOB"}


def test_a_users_file_not_utf8_is_refused_naming_it(scratch: Path) -> None:
    """Invariant: a damaged users file is refused with ``UsersFileError`` naming it."""
    path, raw = _users(scratch)
    path.write_bytes(raw[:2] + bytes([raw[2] ^ 0x80]) + raw[3:])
    try:
        UserStore(path)
    except Exception as exc:  # its type and words are what is asserted
        assert isinstance(exc, UsersFileError) and str(path) in str(exc)


def test_a_users_file_with_a_bad_salt_is_refused_at_load(scratch: Path) -> None:
    """Invariant: a damaged users file is refused naming it; ``verify`` answers or None."""
    path, raw = _users(scratch)
    at = raw.index(b'"salt":"') + len(b'"salt":"')
    path.write_bytes(raw[:at] + b"g" + raw[at + 1 :])
    try:
        assert UserStore(path).verify("ALICE", "secret") is not None
    except Exception as exc:  # its type and words are what is asserted
        assert isinstance(exc, UsersFileError) and str(path) in str(exc)


def test_a_flipped_bit_in_an_account_is_not_loaded(scratch: Path) -> None:
    """Invariant: a user loads with the account written, or the file is refused."""
    path, raw = _users(scratch)
    path.write_bytes(raw.replace(b'"account":7', b'"account":3'))
    try:
        alice = UserStore(path).get("ALICE")
    except UsersFileError:
        return
    assert alice is not None and alice.account == 7


def _keys(where: Path) -> tuple[Path, bytes]:
    path = where / "apikeys.json"
    ApiKeyStore(path).create(ALICE, ["read", "trade"], label="bot")
    return path, path.read_bytes()


@FUZZ
@given(data=st.data())
def test_a_damaged_key_file_raises_only_value_errors(scratch: Path, data: st.DataObject) -> None:
    """Invariant (what holds; the file's name is fault 11): ``ApiKeyStore`` of a damaged key
    file loads or raises a ``ValueError`` (msgspec's decode and validation errors); a file
    cut short never loads."""
    path, raw = _keys(_fresh(scratch / "keys"))
    how = data.draw(damage(len(raw)))
    path.write_bytes(damaged(raw, how))
    try:
        ApiKeyStore(path)
    except ValueError:
        return
    assert how[0] != "cut"


def test_a_cut_key_file_is_refused_naming_it(scratch: Path) -> None:
    """Invariant: a damaged key file is refused with an error naming it."""
    path, raw = _keys(scratch)
    path.write_bytes(raw[:-5])
    with pytest.raises(ValueError) as err:
        ApiKeyStore(path)
    assert str(path) in str(err.value)


def test_a_flipped_bit_in_a_keys_account_is_not_loaded(scratch: Path) -> None:
    """Invariant: a key loads with the account it was made for, or the file is refused."""
    path, raw = _keys(scratch)
    path.write_bytes(raw.replace(b'"account":7', b'"account":3'))
    try:
        [key] = ApiKeyStore(path).keys_of("ALICE")
    except ValueError:
        return
    assert key.account == 7
