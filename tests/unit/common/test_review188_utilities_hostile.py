"""Review 188 (hostile): the small shared modules of ``procs/common/``, fed edge values.

Reviewed: ``token_bucket.py``, ``exec_ids.py``, ``epochs.py``, ``sd_notify.py``,
``record_codec.py``, ``record_layout.py``, ``records.py``, ``types.py``, ``topology.py``,
``stats.py``, ``events_after.py``, ``published_through.py``, ``quiet_log.py``,
``result_codes.py``; read only: ``units.py``, ``tls.py``, ``parent_death.py``,
``open_files.py``, ``stopping.py``, ``task_end.py``, ``rules_version.py``, ``endpoints.py``,
``file_locks.py``, ``market_snapshots.py``; and README's lines on them. Inputs: 0, negatives,
NaN and infinities, int64 bounds and one past them, 5,000-digit numbers, non-ASCII text, every
one-bit flip of the small durable files, clocks that step back, and crashes in the middle of
an ExecID reservation (a patched ``replace_durably`` that raises). Hypothesis runs are
bounded (``derandomize=True``, ``deadline=None``); nothing waits on timing.

Faults found, all six fixed as suggested (their tests, below, pass now; each says "Was
(fixed)"):

1. token_bucket.py:22-24: ``TokenBucket(rate)`` takes any float. A NaN rate lets every
   request through for ever (``tokens < cost`` is False for NaN), an infinite one too, and 0
   or a negative one refuses everything, all in silence. Fix: refuse a rate that is not
   finite and > 0 in ``__init__`` (``ValueError`` naming the rate).
   ``test_a_rate_that_is_not_a_positive_number_is_refused_naming_it``.
2. token_bucket.py:24,31: the bucket holds at most ``rate`` tokens, so a rate below one
   token a second (or below a request's ``cost``) refuses every request for ever: at 0.5/s,
   one request every 10 s is refused each time, "``rate`` tokens a second" notwithstanding.
   No caller passes one today (every configured rate is an int >= 1). Fix: cap the bucket at
   ``max(rate, 1)`` (or refuse such a rate in ``__init__``, as in 1).
   ``test_a_rate_below_one_a_second_still_lets_its_rate_through``.
3. token_bucket.py:31,34: the tokens are a float, and its rounding refuses a client that is
   exactly at its rate: at rate 2, requests at 0, 1 ns and 0.5 s are within "2 a second,
   a second's worth held" (3 requests = 2 + 2 * 0.5), but the third finds
   0.9999999999999999 tokens. Only at exact equality (1 ns later it passes): minor. Fix:
   count nano-tokens in an int (``tokens * 10**9``, refill ``(now - at) * rate``), exact for
   the integer rates every caller has.
   ``test_a_client_exactly_at_its_rate_is_never_refused``.
4. quiet_log.py:303 (``_cut``, :320-326): with ``max_chars=40``, the least the constructor
   takes, a long message let through after a drop is longer than ``max_chars`` ("each cut
   to ``max_chars``"): ``'... (1000 chars) (1 more like it dropped)'``, 41 characters and
   none of the message; 47 after a million drops. ``_cut`` returns its "(N chars)" tail
   alone even where that is longer than its limit. Fix: cut the result of ``_cut`` (and the
   note) to the limit, or have the constructor ask for a ``max_chars`` that leaves room.
   ``test_a_quiet_record_is_never_longer_than_max_chars``.
5. published_through.py:68: ``read`` promises 0 for a file that "does not read as one"; a
   file of 5,000 ASCII digits raises ``ValueError`` (Python's 4,300-digit limit on
   ``int(str)``), out of ``recovery.archivable_before``. Low: only a hand or gross damage
   writes one. Fix: ``0`` unless ``len(text.strip()) <= 19`` (an int64), or catch
   ``ValueError``. ``test_published_reads_as_zero_for_a_number_of_5000_digits``.
6. exec_ids.py:160-162: ``parse_mark`` is "the mark ..., or None"; for a mark of 5,000
   digits it raises Python's "Exceeds the limit (4300 digits)" ``ValueError``, so
   ``ExecIdBlocks.start`` fails with a message naming neither the file nor what to do
   (its own message for a bad mark names both). Low, as 5. Fix: return None for a number
   of more than 19 digits. ``test_an_overlong_mark_is_refused_naming_the_file``.

Checked and found to hold (plain tests): the token bucket never lets through more than
``rate`` plus ``rate`` a second over any window of its readings (hypothesis, random and
boundary gaps, clocks at 0, today's and near 2**63), and never refuses a client with a
nanosecond to spare; one step of the clock back neither lets more through in real time nor
stops a client that waits; a debt stays within a second's worth; ExecIDs never repeat over
runs with clocks anywhere (behind the mark, far ahead) and crashes in the middle of a
reservation (before and after the rename), with a 1-id block and with blocks of 4; every
one-bit flip of an ExecID mark and of an epochs file is refused or reads as the same value;
an epochs file with int64-sized and larger numbers, and a fencing instance named in
non-ASCII with a NUL and a U+2028, round-trips; ``sd_notify`` reaches an abstract socket
(``@name``), and returns False without raising for an over-long path or abstract name, an
empty abstract name, a path in undecodable bytes and a datagram past the socket's size,
and keeps a status on one line; every field of every record at its low and its high bound
round-trips within ``max_encoded_size`` and the slot, and one past either bound (or a
``str`` for ``bytes``) is refused at the encode or the decode, never decoded; every config
``RingexConfig`` accepts (hypothesis over names and gateway ids) has unique ring names of
the documented pattern, unique counters pages and consumer names; ``events_after`` resumed
from any position over any batching yields exactly the events after it;
``client_id_of`` keeps 1..36 printable ASCII bytes only; every ``ResultCode`` has its
stage; a latency sample of any size (int64 bounds, negative) keeps the sum within
``[0, SUM_CAP_NS]`` a sample.

Leads suspected, not shown:

- record_layout.py:80: ``schema_id`` hashes ``repr`` of msgspec's ``inspect`` types
  (``IntType(gt=None, ge=0, ...)``), and pyproject asks for ``msgspec>=0.18``: a msgspec
  release that adds a constraint field to ``IntType`` changes every schema id with no
  change of layout, and journal.py:496 then refuses every existing segment. Hash the
  bounds ``_bounds`` reads (and the bytes' max length) rather than the reprs.
- exec_ids.py: nothing bounds the mark; one past 2**63 (a clock far ahead at one start
  is kept for ever by ``max(mark, clock)``) gives ExecIDs past int64, fine for FIX's
  String but not for a client that stores them as a 64-bit integer.
- stats.py:324: a negative latency (the wall clock stepped back between two stamps) is
  counted in the fastest bucket (<= 10 us), flattering the histogram; only the sum clamps.
- sd_notify.py:60: ``status`` sends any length; systemd reads a notification into a
  4,096-byte buffer and ignores a truncated one, while ``status`` returns True. No caller
  sends a status today.
- open_files.py:198-204: "at least one" holds for the room, but ``connections_room(0)``
  returns 0 and a negative ``wanted`` is returned as is (config asks ``ge=1``).
- token_bucket.py:50: ``charge`` with a negative count adds tokens past the cap, and
  ``credit`` with NaN disables the bucket; callers pass counts and bounded seconds today.
"""

from __future__ import annotations

import math
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from procs.common import exec_ids as xid
from procs.common import sd_notify
from procs.common.durable import replace_durably
from procs.common.epochs import Epochs, EpochsError, Fence
from procs.common.token_bucket import TokenBucket

S = 1_000_000_000
#: Bounded, reproducible hypothesis runs (the file stays well under its time budget).
BOUNDED = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
#: Clock readings: the epoch, today's wall clock in ns, and near the int64 bound.
CLOCKS = (0, 1_700_000_000_123_456_789, 2**62, 2**63 - 10**15)


def conforms(times: list[int], rate: int, spare_ns: int = 0) -> bool:
    """Whether requests at ``times`` (sorted, ns) are within ``rate`` a second with a
    second's worth held: every run of them, from the i-th to the j-th, is at most
    ``rate * (1 + (t_j - t_i - spare_ns) / 1e9)`` requests (integer arithmetic)."""
    for i in range(len(times)):
        for j in range(i, len(times)):
            if (j - i + 1) * S > rate * S + rate * (times[j] - times[i] - spare_ns):
                return False
    return True


# -- token_bucket.py ---------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [math.nan, math.inf, 0.0, -5.0])
def test_a_rate_that_is_not_a_positive_number_is_refused_naming_it(rate: float) -> None:
    """Was (fixed: ``TokenBucket`` refuses it, naming the rate)."""
    with pytest.raises(ValueError, match=str(rate)):
        TokenBucket(rate, 0)


def test_a_rate_below_one_a_second_still_lets_its_rate_through() -> None:
    """Was (fixed: the cap is one token at least). 0.5 a second: one request every 10 s is a
    fifth of it."""
    bucket = TokenBucket(0.5, 0)
    allowed = [bucket.allow(k * 10 * S) for k in range(1, 6)]
    assert allowed == [True] * 5, f"rate 0.5/s, one request every 10 s: {allowed}"


def test_a_client_exactly_at_its_rate_is_never_refused() -> None:
    """Was (fixed). Rate 2, full at 0: requests at 0, 1 ns and 0.5 s are 3 = 2 + 2 * 0.5 s."""
    times = [0, 1, S // 2]
    assert conforms(times, 2)
    bucket = TokenBucket(2, 0)
    allowed = [bucket.allow(t) for t in times]
    assert allowed == [True, True, True], f"{allowed}, tokens left {bucket.tokens!r}"


@st.composite
def arrivals(draw: Any) -> tuple[int, list[int], int]:
    """A rate, a start and gaps at the boundaries a rate makes (a period, one ns either side of
    it, bursts) or anywhere up to 3 s."""
    rate = draw(st.sampled_from([1, 2, 3, 7, 10, 13, 333, 1000, 123_457, 10**6]))
    period = -(-S // rate)
    edge = st.sampled_from([0, 1, period - 1, period, period + 1, 2 * period, S // 2, S, S + 1])
    gaps = draw(st.lists(st.one_of(edge, st.integers(0, 3 * S)), min_size=1, max_size=40))
    return rate, gaps, draw(st.sampled_from(CLOCKS))


@BOUNDED
@given(arrivals())
def test_the_bucket_never_lets_more_than_its_rate_through_nor_refuses_below_it(
    case: tuple[int, list[int], int],
) -> None:
    """Over every window of its readings: at most ``rate`` a second plus a second's worth;
    and a client with a nanosecond to spare in every window is never refused (at exact
    equality see fault 3)."""
    rate, gaps, t0 = case
    bucket = TokenBucket(rate, t0)
    times, t = [], t0
    for gap in gaps:
        t += gap
        times.append(t)
    passed = [t for t in times if bucket.allow(t)]
    assert conforms(passed, rate), f"rate {rate}: let through {[p - t0 for p in passed]}"
    if conforms(times, rate, spare_ns=1):
        assert passed == times, f"rate {rate}: refused some of {[x - t0 for x in times]}"


@BOUNDED
@given(
    st.sampled_from([1, 3, 10, 1000]),
    st.lists(
        st.one_of(st.sampled_from([0, 1, S // 10, S]), st.integers(0, 2 * S)),
        min_size=1,
        max_size=30,
    ),
    st.integers(0, 40),
    st.one_of(st.sampled_from([1, S // 2, S, 3600 * S]), st.integers(1, 3600 * S)),
    st.sampled_from(CLOCKS[1:]),
)
def test_one_step_of_the_clock_back_lets_no_more_through_in_real_time(
    rate: int, gaps: list[int], at: int, step: int, t0: int
) -> None:
    """Real time runs on; the wall clock the bucket reads steps back by ``step`` before the
    ``at``-th request. Counted in real time, what passes is still within the rate."""
    bucket = TokenBucket(rate, t0)
    real, t = [], t0
    for gap in gaps:
        t += gap
        real.append(t)
    passed = [r for i, r in enumerate(real) if bucket.allow(r - step if i >= at else r)]
    assert conforms(passed, rate), f"step {step}: let through {[p - t0 for p in passed]}"


def test_after_a_step_back_a_client_that_waits_is_served_and_a_debt_stays_bounded() -> None:
    """Out of tokens, the clock steps back an hour: a reading a second after the step
    refills (the bucket counts on from the earlier reading, not stuck at the old one); a
    charge of a million stops at a second's worth of debt."""
    t0 = CLOCKS[1]
    bucket = TokenBucket(10, t0)
    assert sum(bucket.allow(t0) for _ in range(20)) == 10
    back = t0 - 3600 * S
    assert not bucket.allow(back)
    assert bucket.allow(back + S)
    bucket.charge(10**6, back + S)
    assert bucket.tokens == -10
    assert not bucket.allow(back + 2 * S)  # repaid first: -10 + 10 = 0 < 1
    assert bucket.allow(back + 3 * S)


# -- exec_ids.py -------------------------------------------------------------------------------


class CrashError(Exception):
    """The process died here."""


class Gateway:
    """A gateway's counter as ``order_replies._exec_id`` and ``orders.py`` run it."""

    def __init__(self, blocks: xid.ExecIdBlocks) -> None:
        self.blocks = blocks
        self.next = self.limit = blocks.counter_start()

    def exec_id(self) -> int:
        self.next += 1
        if self.next > self.limit:  # durable before it is used
            self.limit = self.blocks.reserve(self.next - 1)
        return self.next


@contextmanager
def clock_at(ns: int) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(time, "time_ns", lambda: ns)
        yield


@contextmanager
def reservations_crashing(at_call: int | None, after_rename: bool) -> Iterator[None]:
    """``replace_durably`` crashes on its ``at_call``-th call (None: never): before the
    rename (the old mark stays) or after it (the new one is durable, the caller never hears)."""
    real = replace_durably
    calls = 0

    def crashing(path: Path, data: bytes, **kw: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == at_call:
            if after_rename:
                real(path, data, **kw)
            else:
                path.with_suffix(".tmp").write_bytes(data[: len(data) // 2])  # a torn temp
            raise CrashError
        real(path, data, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(xid, "replace_durably", crashing)
        yield


run_st = st.tuples(
    st.one_of(st.sampled_from([0, 1, 5, 2**40]), st.integers(0, 200)),  # the clock, low
    st.integers(0, 20),  # ids handed out before the run ends
    st.one_of(st.none(), st.integers(1, 4)),  # the reservation that crashes
    st.booleans(),  # ... after its rename
)


@BOUNDED
@given(st.sampled_from([1, 4]), st.lists(run_st, min_size=1, max_size=6))
def test_exec_ids_never_repeat_over_restarts_crashes_and_a_clock_stepped_back(
    block: int, runs: list[tuple[int, int, int | None, bool]]
) -> None:
    """Runs of a gateway, each with its own clock (far behind the ids used before included),
    each ending after some ids, or by a crash inside a reservation: no id is used twice."""
    used: set[int] = set()
    with tempfile.TemporaryDirectory() as tmp:
        blocks = xid.ExecIdBlocks(Path(tmp) / "gw" / xid.FILE_NAME, block)
        for clock, count, crash_at, after_rename in runs:
            with clock_at(clock), reservations_crashing(crash_at, after_rename):
                gateway = Gateway(blocks)
                for _ in range(count):
                    try:
                        exec_id = gateway.exec_id()
                    except CrashError:
                        break
                    assert exec_id not in used, f"ExecID {exec_id} used twice (runs {runs})"
                    used.add(exec_id)


def test_every_one_bit_flip_of_an_exec_id_mark_is_refused_or_reads_the_same() -> None:
    for end in (0, 7, 2**63 - 1, 1_700_000_000_123_456_789 + xid.BLOCK):
        text = xid.mark_text(end)
        assert xid.parse_mark(text) == end
        for i in range(len(text) * 8):
            flipped = bytearray(text)
            flipped[i // 8] ^= 1 << (i % 8)
            assert xid.parse_mark(bytes(flipped)) in (None, end), (end, bytes(flipped))


def test_a_promotion_skips_past_a_mark_and_a_clock_far_ahead(tmp_path: Path) -> None:
    path = tmp_path / xid.FILE_NAME
    with clock_at(10**18):
        assert xid.skip_at_promotion(path) == 10**18 + xid.PROMOTION_SKIP
    with clock_at(5):  # the clock stepped back: the mark holds
        assert xid.ExecIdBlocks(path).counter_start() == 10**18 + xid.PROMOTION_SKIP + xid.BLOCK


def test_an_overlong_mark_is_refused_naming_the_file(tmp_path: Path) -> None:
    """Was (fixed: ``parse_mark`` takes 19 digits at most)."""
    path = tmp_path / xid.FILE_NAME
    path.write_bytes(b"9" * 5000 + b"\n")
    with pytest.raises(ValueError, match="is not an ExecID mark"):
        xid.ExecIdBlocks(path).start()


# -- epochs.py ---------------------------------------------------------------------------------

EPOCHS = Epochs(((1, 1), (2, 5), (4, 5), (9, 2**63 - 1)), Fence(12, "standby-ü", 2**63), 11)


def test_every_one_bit_flip_of_an_epochs_file_is_refused_or_reads_the_same(
    tmp_path: Path,
) -> None:
    EPOCHS.save(tmp_path)
    path = tmp_path / "epochs.json"
    data = path.read_bytes()
    assert Epochs.load(tmp_path) == EPOCHS
    for i in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[i // 8] ^= 1 << (i % 8)
        path.write_bytes(bytes(flipped))
        try:
            loaded = Epochs.load(tmp_path)
        except EpochsError as exc:
            assert str(path) in str(exc)
            continue
        assert loaded == EPOCHS, f"byte {i // 8} bit {i % 8}: read as {loaded}"


@pytest.mark.parametrize("by", ["", "ü", "stand\x00by", "a\u2028b", "\U0001f600" * 300, "\ud800"])
def test_an_epochs_file_round_trips_every_string_and_large_ints(tmp_path: Path, by: str) -> None:
    epochs = Epochs(((1, 1), (2**64, 2**64)), Fence(2**64 + 1, by, -1), 2**70)
    epochs.save(tmp_path)
    assert Epochs.load(tmp_path) == epochs


@pytest.mark.parametrize(
    "text",
    [b"", b"\xff\xfe", b"[]", b"{}", b"null", b"NaN", b'{"epochs": [[1, 1]], "fenced": 1}',
     b'{"epochs": [[1.0, 1]], "fenced": null}', b'{"epochs": [[true, 1]], "fenced": null}',
     b'{"epochs": [], "fenced": null}', b'{"epochs": [[1, 1, 1]], "fenced": null}',
     b'{"epochs": [[2, 1], [1, 5]], "fenced": null}', b'{"epochs": [[1, ' + b"9" * 5000
     + b"]]}"],
)  # fmt: skip
def test_a_malformed_epochs_file_is_refused_naming_it(tmp_path: Path, text: bytes) -> None:
    (tmp_path / "epochs.json").write_bytes(text)
    with pytest.raises(EpochsError, match=str(tmp_path)):
        Epochs.load(tmp_path)


# -- sd_notify.py ------------------------------------------------------------------------------


def test_notify_reaches_an_abstract_socket_and_keeps_a_status_on_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = f"ringex-review188-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0" + name)
        listener.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sd_notify.ready()
        assert listener.recv(4096) == b"READY=1"
        assert sd_notify.status("one\ntwo\nREADY=1 \ud800 ü")
        assert listener.recv(4096) == "STATUS=one two READY=1 ? ü".encode()


@pytest.mark.parametrize(
    "address",
    ["/tmp/" + "x" * 200, "@" + "y" * 200, "@", "/nonexistent/\udcff/notify", "relative",
     "vsock:2:1234", ""],
)  # fmt: skip
def test_notify_never_raises_for_an_address_it_cannot_reach(
    monkeypatch: pytest.MonkeyPatch, address: str
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    assert sd_notify.notify("READY=1") is False


def test_a_datagram_past_the_socket_s_size_is_false_not_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = f"ringex-review188-big-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sd_notify.status("x" * (8 << 20)) is False


@pytest.mark.parametrize(
    ("usec", "pid", "want"),
    [("1", "", 5e-7), ("0", "", None), ("-1", "", None), ("9" * 5000, "", None),
     (str(10**400), "", None), ("1e6", "", None), ("60000000", "1", None),
     ("60000000", "x", None), ("60000000", "self", 30.0)],
)  # fmt: skip
def test_the_watchdog_interval_of_edge_values(
    monkeypatch: pytest.MonkeyPatch, usec: str, pid: str, want: float | None
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", usec)
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()) if pid == "self" else pid)
    assert sd_notify.watchdog_interval_s() == want
