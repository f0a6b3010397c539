"""Review 25 of ``procs/common`` (all but records, record_layout and the journal).

The first tests are faults: each fails on the code as reviewed, for the reason its docstring
gives (what is wrong, why it matters, where). The last ones pin down behaviour that was
checked and holds.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

from procs.common import sd_notify
from procs.common.epochs import FILE as EPOCHS_FILE
from procs.common.epochs import Epochs, EpochsError
from procs.common.events_after import events_after
from procs.common.parent_death import die_with_parent
from procs.common.replication_ack import FENCED, AckBlock, SyncGate
from procs.common.snapshots import SnapshotStore
from procs.common.token_bucket import TokenBucket
from procs.common.users import UserStore

#: scrypt cost for tests (the default takes tens of ms per hash).
CHEAP_N = 1 << 4


# -- faults ------------------------------------------------------------------------------------


def test_a_new_user_never_takes_the_session_id_of_a_removed_one(tmp_path: Path) -> None:
    """``UserStore._add`` (procs/common/users.py:125-127) gives a new user ``max(session) + 1``
    over the users in the file *now*, so removing the user with the highest session id and
    adding another hands the newcomer the removed user's ``SessionId``.

    Why it matters: the gateways route by that id. ``OrderReplies._deliver`` /
    ``_report`` (procs/gateway/order_replies.py:126-175) send an order's ExecutionReports to
    ``sessions[order.session]``, and ``GatewayServer.park`` (procs/gateway/server.py:233)
    parks them for "the user whose session is that id". ``ringex admin remove-user`` leaves
    the removed user's orders resting unless ``--cancel-orders``: their fills then go to a
    different user, of another account (a leak of trading activity). The user docstring
    says the session id is "stable per user", and ``add`` promises "each with its own
    session id"; ids must never be reused (keep a high-water mark in the file)."""
    store = UserStore(tmp_path / "users.json")
    store.add("ALICE", "a", 100, n=CHEAP_N)
    bob = store.add("BOB", "b", 101, n=CHEAP_N)
    assert store.remove("BOB")
    carol = store.add("CAROL", "c", 102, n=CHEAP_N)
    assert carol.session != bob.session, (
        f"CAROL (account 102) got session {carol.session}, the id removed user BOB "
        f"(account 101) had: BOB's resting orders' reports now reach CAROL"
    )


def test_add_under_the_lock_does_not_bring_back_users_gone_from_the_file(tmp_path: Path) -> None:
    """``UserStore._locked`` (procs/common/users.py:156-157) forgets the stamp and calls
    ``_load`` to re-read "the file as it is now", but ``_load`` (users.py:71-74) returns on
    ``FileNotFoundError`` without clearing ``self._users``. A store whose file was deleted
    since it read it (an operator wiping the users to start over) then writes every user it
    had in memory back with the next ``add`` (or ``remove`` of another user): removed
    credentials come back to life, against ``add``'s contract ("on the file as it is
    now"). Fix: in ``_load``, a missing file means no users (``self._users = {}``, stamp
    None), at least under the lock."""
    path = tmp_path / "users.json"
    store = UserStore(path)
    store.add("ALICE", "old-secret", 100, n=CHEAP_N)
    path.unlink()  # every user withdrawn
    store.add("CAROL", "c", 102, n=CHEAP_N)
    on_disk = sorted(u.comp_id for u in UserStore(path).users())
    assert on_disk == ["CAROL"], f"the users file holds {on_disk} after the wipe and one add"


@pytest.mark.parametrize(
    "comp_id",
    ["ALI\x01CE", "../../outside", "/tmp/abs", "."],
    ids=["soh", "dotdot", "absolute", "dot"],
)
def test_a_comp_id_that_cannot_be_a_fix_comp_id_or_a_directory_name_is_refused(
    tmp_path: Path, comp_id: str
) -> None:
    """``UserStore.add`` (procs/common/users.py:111-112) checks only the length (1..32
    characters) of a comp id. Stored as is, it is used unchecked:

    - SOH (0x01) ends a FIX field, so a SenderCompID holding one can never log on, and the
      gateway writes it raw into its own headers (procs/gateway/server.py:242);
    - the gateway's message store lives at ``<gateway dir>/sessions/<comp_id>``
      (procs/gateway/server.py:253): ``../..`` or an absolute path puts a user's FIX
      messages outside the gateway's directory, ``.`` makes it the ``sessions`` directory
      itself.

    Fix: accept a comp id of printable ASCII without ``/``, ``=`` or SOH, and not ``.``
    or ``..``; name the value and the rule in the ValueError."""
    store = UserStore(tmp_path / "users.json")
    with pytest.raises(ValueError, match="comp id"):
        store.add(comp_id, "secret", 100, n=CHEAP_N)


def test_a_save_below_the_newest_snapshots_keeps_what_it_just_wrote(tmp_path: Path) -> None:
    """``SnapshotStore.save`` (procs/common/snapshots.py:303-309) writes ``<seq>.snap`` and then
    deletes all but the ``keep`` highest seqs, the file it just wrote included. When
    ``keep`` snapshots newer than ``seq`` are on disk, ``save`` returns the path of a file
    that no longer exists.

    That happens: the db writer (``procs/dbwriter/replay.py``, ``keep=2``) passes over the
    snapshots above its database's checkpoint (a database restored from a backup) and
    replays from the start of the journal; every snapshot it then saves is deleted at
    once until its seq passes the old ones, so each restart replays from seq 1 again.
    Likewise a matcher whose journal tail was lost (``fsync = "interval"``) and recovered
    below its newest snapshots. Fix: never prune the snapshot just written (and consider
    dropping the ones above it, which are of a history that was rewound)."""
    store = SnapshotStore(tmp_path / "dbwriter", keep=2)
    store.save(90, b"\x91\x01")
    store.save(100, b"\x91\x02")
    path = store.save(50, b"\x91\x03")
    assert path.exists(), f"save(50) returned {path.name}, which it deleted"
    assert store.at_or_before(60) == (50, b"\x91\x03")


def test_die_with_parent_signals_when_the_parent_died_before_the_call(tmp_path: Path) -> None:
    """``die_with_parent`` (procs/common/parent_death.py:145-149) promises that "a parent that
    died before the call is caught by the ppid check: the signal is sent at once". It reads
    ``parent = os.getppid()`` inside the call, so a parent that died *before* the call is
    already replaced by the reaper (init, a subreaper) and the check compares the reaper
    with itself: no signal, and ``PR_SET_PDEATHSIG`` now watches the reaper, which never
    dies. The child runs on unwatched, the very case the module exists for (a supervisor
    killed between its fork and the child's ``preexec_fn``; a router killed just after
    forking its snapshot child, procs/router/snapshots.py:91). Fix: compare against the
    parent pid taken before the fork (a ``parent`` argument bound in the parent, e.g.
    ``functools.partial(die_with_parent, parent=os.getpid())``).

    Here a middle process forks a child and exits at once; the child waits until it has
    been reparented, then calls ``die_with_parent(SIGUSR1)`` and reports whether the
    signal came."""
    r, w = os.pipe()
    middle = os.fork()
    if middle == 0:  # the parent that dies
        try:
            parent_pid = os.getpid()
            if os.fork() == 0:  # the child
                try:
                    os.close(r)
                    got: list[int] = []
                    signal.signal(signal.SIGUSR1, lambda *_: got.append(1))
                    deadline = time.monotonic() + 5
                    while os.getppid() == parent_pid and time.monotonic() < deadline:
                        time.sleep(0.002)
                    ok = die_with_parent(signal.SIGUSR1, parent=parent_pid)
                    for _ in range(50):  # the handler runs between bytecodes
                        if got:
                            break
                        time.sleep(0.002)
                    os.write(w, b"%d%d" % (ok, bool(got)))
                finally:
                    os._exit(0)
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(middle, 0)
    try:
        ready, _, _ = select.select([r], [], [], 10)
        answer = os.read(r, 2) if ready else b""
    finally:
        os.close(r)
    assert answer[:1] == b"1", f"prctl unavailable here ({answer!r})"
    assert answer == b"11", "the parent was gone before the call, and no signal was sent"


def test_a_degraded_sync_gate_refuses_a_batch_once_fenced(tmp_path: Path) -> None:
    """``SyncGate.wait`` (procs/common/replication_ack.py:233-234) returns True at once while
    it is degraded and the standby is behind, without looking at ``FENCED``; the word is
    read only inside the waiting loop (line 238). Its contract (lines 192-194): "It returns
    False when ... the primary is fenced (a standby of a newer epoch exists, so going on
    alone would make two primaries): the caller publishes nothing of the batch". A
    primary that went async because its standby stopped answering is exactly the one
    that gets failed over: the batch read in the step where the source sets ``FENCED``
    (the router checks the word only at the top of ``step``) is published to the matchers
    and its fills acknowledged, on a primary whose epoch is over. Fix: check
    ``words[FENCED]`` first in ``wait``, before the degraded shortcut."""
    block = AckBlock(tmp_path / "run")
    try:
        now = [0.0]

        def drain() -> int:
            now[0] += 1.0  # a second per drain: the 10 ms timeout passes at once
            return 0

        gate = SyncGate(block, timeout_ms=10, spin=True, clock=lambda: now[0])
        assert gate.wait(1, drain=drain) is True  # timed out: degraded, goes on async
        assert gate.degraded
        block.words[FENCED] = 2  # the source met a standby of epoch 2
        assert gate.wait(2, drain=drain) is False, "a fenced primary's batch was let through"
    finally:
        block.close()


def _open_fds() -> dict[str, str]:
    """This process's descriptors and what each one is (the listing's own is gone by then)."""
    found = {}
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            found[fd] = os.readlink(f"/proc/self/fd/{fd}")
    return found


def test_an_ack_block_that_cannot_be_made_leaves_no_descriptor_open(tmp_path: Path) -> None:
    """``AckBlock.__init__`` (procs/common/replication_ack.py:132-133) opens the "appended"
    FIFO (``Doorbell``, a raw ``os.open`` descriptor) before it makes the "acked" one; when
    that fails (a leftover regular file named ``replication.acked``: ``Doorbell`` raises
    ValueError) the first bell's descriptor is never closed (the mapping is, by the garbage
    collector; a raw descriptor is not). A caller that reports the error and retries (a
    supervisor, a test) leaks a descriptor per try. Fix: on failure close what was opened
    (``self.close()``) before re-raising, as the layout-tag check on line 130 already does."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "replication.acked").write_bytes(b"not a fifo")
    before = _open_fds()
    with pytest.raises(ValueError, match="not a FIFO"):
        AckBlock(run)
    leaked = {fd: what for fd, what in _open_fds().items() if before.get(fd) != what}
    assert not leaked, f"descriptors left open: {leaked}"


@pytest.mark.parametrize(
    "raw",
    [b'{"epochs": [[1, 1]], "fenced": null, "known": 0}\xff', b'{"epochs": [[1, Infinity]]}'],
    ids=["not-utf8", "infinity"],
)
def test_an_unreadable_epochs_file_raises_an_epochs_error_naming_it(
    tmp_path: Path, raw: bytes
) -> None:
    """``Epochs.load`` (procs/common/epochs.py:327-339) turns OSError, JSONDecodeError and the
    shape errors into ``EpochsError`` naming the file, but not a byte that is not UTF-8
    (``read_text`` raises ``UnicodeDecodeError``, line 328) nor ``Infinity``, which
    ``json`` accepts and ``int()`` refuses with ``OverflowError`` (line 334). The first
    reaches an operator as "'utf-8' codec can't decode byte 0xff" with no file named; the
    second is not even a ValueError, so the supervisor's promotion
    (procs/supervisor/main.py:589 catches ``(OSError, ValueError)``) dies on it. Fix: read
    bytes and catch ``UnicodeDecodeError`` with the others; add ``OverflowError`` to the
    shape errors."""
    (tmp_path / EPOCHS_FILE).write_bytes(raw)
    with pytest.raises(EpochsError, match=EPOCHS_FILE):
        Epochs.load(tmp_path)


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield sock
    sock.close()


def test_notify_never_raises_on_text_it_cannot_encode(notify_socket: socket.socket) -> None:
    """``notify`` (procs/common/sd_notify.py:26-40) promises "Never raises: a process does not
    fail because its manager stopped listening", but ``state.encode()`` (line 37, strict
    UTF-8) raises ``UnicodeEncodeError``, a ValueError, and only ``OSError`` is caught: a
    status holding a lone surrogate (a file name or an argument decoded with
    ``surrogateescape``, as Python decodes undecodable bytes of argv and paths) raises
    ``UnicodeEncodeError`` out of ``status()``. Fix: encode with
    ``errors="surrogateescape"`` (or "replace") and catch ``ValueError`` too."""
    try:
        sent = sd_notify.status("snapshot written to /var/ringex/caf\udce9")
    except UnicodeError as exc:
        pytest.fail(f"status() raised {exc!r}")
    assert sent is True
    assert notify_socket.recv(4096).startswith(b"STATUS=snapshot written")


def test_a_watchdog_usec_past_any_clock_is_malformed_not_a_crash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``watchdog_interval_s`` (procs/common/sd_notify.py:63-74) says ``None`` "when the watchdog
    is ... malformed", and catches ``ValueError`` only: a ``WATCHDOG_USEC`` too large for a
    float (systemd's own parser refuses anything past a u64) makes ``int(usec) / 2e6``
    raise ``OverflowError``, out of ``petting()`` and ``watchdog_loop()`` at a process's
    start. Fix: catch ``OverflowError`` too, or refuse values of 2**64 - 1 (systemd's
    USEC_INFINITY, which it also treats as "off") and above."""
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "9" * 400)
    try:
        interval = sd_notify.watchdog_interval_s()
    except OverflowError as exc:
        pytest.fail(f"watchdog_interval_s() raised {exc!r}")
    assert interval is None


# -- checked, and correct ----------------------------------------------------------------------


def test_two_stores_adding_at_once_keep_both_users(tmp_path: Path) -> None:
    """``add`` re-reads the file under its lock: a store that read the file before another
    store's add does not drop that user, and the two get distinct session ids."""
    path = tmp_path / "users.json"
    first, second = UserStore(path), UserStore(path)
    a = first.add("ALICE", "a", 100, n=CHEAP_N)
    b = second.add("BOB", "b", 101, n=CHEAP_N)  # read before ALICE existed
    users = {u.comp_id: u for u in UserStore(path).users()}
    assert set(users) == {"ALICE", "BOB"} and a.session != b.session
    assert UserStore(path).verify("ALICE", "a") == a
    assert UserStore(path).verify("ALICE", "b") is None


def test_a_running_reader_keeps_its_users_when_the_file_turns_bad(tmp_path: Path) -> None:
    """A gateway's store keeps the users it read when the file becomes undecodable, and a
    fresh store (a start, a tool) gets ``UsersFileError`` naming the file."""
    path = tmp_path / "users.json"
    UserStore(path).add("ALICE", "a", 100, n=CHEAP_N)
    reader = UserStore(path)
    path.write_bytes(b"[{")
    assert reader.get("ALICE") is not None
    with pytest.raises(ValueError, match=str(path)):
        UserStore(path)


def test_a_damaged_newest_snapshot_is_passed_over_for_the_one_before(tmp_path: Path) -> None:
    """A CRC mismatch, a file cut inside its header and an empty file are all passed over;
    an unframed msgpack file (the format before the header) is taken as it is."""
    store = SnapshotStore(tmp_path, keep=5)
    store.save(10, msgspec.msgpack.encode([10]))
    bad = store.save(20, msgspec.msgpack.encode([20]))
    raw = bytearray(bad.read_bytes())
    raw[-1] ^= 0xFF
    bad.write_bytes(bytes(raw))
    store.path(30).write_bytes(b"RXS1\x00")
    store.path(40).write_bytes(b"")
    assert store.latest() == (10, msgspec.msgpack.encode([10]))
    store.path(50).write_bytes(msgspec.msgpack.encode([50]))  # legacy: no header
    assert store.latest() == (50, msgspec.msgpack.encode([50]))
    assert store.oldest_seq() == 10


def test_events_after_resumes_inside_a_command_across_batches() -> None:
    """``(seq, part)``: later seqs kept, the first ``part`` events of ``seq`` dropped, what is
    left of ``part`` carried to the next batch; ``part`` None drops all of ``seq``."""
    ev: list[Any] = [SimpleNamespace(seq=s, i=i) for s, i in [(4, 0), (5, 0), (5, 1)]]
    kept, left = events_after(ev, 5, 3)  # the batch ends after two of seq 5's events
    assert kept == [] and left == 1
    more: list[Any] = [SimpleNamespace(seq=s, i=i) for s, i in [(5, 2), (5, 3), (6, 0)]]
    kept, left = events_after(more, 5, left)
    assert [(e["seq"], e["i"]) for e in map(vars, kept)] == [(5, 3), (6, 0)] and left == 0
    kept, left = events_after(ev, 5, None)
    assert kept == [] and left is None


def test_notify_to_an_abstract_name_and_no_raise_when_nobody_listens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``@name`` is the abstract socket ``\\0name``; a socket nobody binds is ``False``."""
    name = f"ringex-review25-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.setblocking(False)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sd_notify.ready()
        assert sock.recv(64) == b"READY=1"
    assert not sd_notify.stopping()  # the name is unbound now: False, not an exception


def test_a_token_bucket_keeps_a_credit_past_its_cap_until_spent() -> None:
    """``credit`` (review 35: the gateway's own pause given back to a client's throttle):
    tokens beyond a second's worth, which a refill never cuts back, spent as usual."""
    bucket = TokenBucket(10, 0)
    assert all(bucket.allow(0) for _ in range(10)) and not bucket.allow(0)
    bucket.credit(4.0, 0)  # four seconds held: 40 more
    assert all(bucket.allow(10**8) for _ in range(40))  # a refill does not cut it back
    assert not bucket.allow(10**8)  # spent (a refill while past the cap adds nothing)
    assert bucket.allow(2 * 10**8) and not bucket.allow(2 * 10**8)  # then the rate again
