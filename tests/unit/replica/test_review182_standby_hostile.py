"""Review 182: a hostile review of the hot standby (``procs/replica/``, ``scripts/failover.py``).

Reviewed: the wire protocol (``wire.py``), the standby's checks and ordering (``standby.py``:
persist, fsync, ack, apply, epochs, cluster id), the source's stream and acknowledgements
(``source.py``, ``tail.py``), the gateways' state files (``files.py`` with the users' and
keys' change logs of ``procs/common/change_log.py``) and ``failover.py promote``'s safety
checks against the fence. Reviews 3-152 (``test_review*.py`` here, review 95's security)
cover most of the link's framing, gaps, replays, epochs and fsync faults; this one looks at
what they leave: the *pair* of files a standby ends up with, and promotion racing a primary
that still runs. Pure pieces are driven directly (``FileShipper``/``FileReceiver``/
``UserStore``, ``Standby.persist``); ``promote`` runs in-process with review 108's recorder
(no supervisor is started, no signal sent).

Faults, both fixed (their tests, below, pass now; each says "Was (fixed)"):

1. ``files.py:68`` (``shipped_files``: each log before its snapshot) with ``files.py:167``
   (``FileReceiver.apply`` replaces each file on its own): a log two generations past the
   standby's snapshot is put in place before that snapshot is. ``UserStore.compact`` (and
   ``ApiKeyStore.compact``) ``settle`` (change_log.py: two compactions at once), and a
   standby away across two compactions comes back the same way; until the snapshot's
   reset has arrived whole (a multi-piece one waits for the next chunk; a link that drops,
   or a primary that dies, between the two messages leaves it so for good), the standby's
   pair is ``users.json`` of generation G with ``users.log`` of G+2, which does not load
   (``ChangeLogError``: "its generation G+2 is past the G+1 that continues ..."): a promoted
   gateway then logs no one on. The docstring's "one of the two files from before a
   compaction and the other from after holds every change still" holds for one compaction
   only. Was (fixed: ``FileReceiver`` holds such a log aside, ``<log>.held``, until the
   snapshot it continues has replaced the copy).
   ``test_a_settled_store_shipped_log_first_leaves_a_pair_that_loads``.
2. ``scripts/failover.py:345`` (``unsafe`` checked once, before the fence at ``:365``/``:381``):
   a sync primary still running between the check and the fence (``fees_refused``, which
   recovers the standby's whole state, runs in that window) may degrade and acknowledge
   seqs the standby lacks; the fence then stops it, and the promotion goes ahead, losing
   them (``unsafe`` says so if asked again after the fence). Was (fixed: ``unsafe`` and
   ``diverged`` run again once the primary is fenced, ``lost_once_fenced``).
   ``test_promote_checks_what_the_primary_acknowledged_again_once_it_is_fenced``.

Pinned (plain tests): one compaction between the two files loads (the bridge); a log shipped
whole with its snapshot still arriving in pieces leaves a pair that loads all along (was:
the window of fault 1); an empty frame at the standby's end is acknowledged at its end and
writes nothing; promote refuses a primary already degraded past the standby before it fences.

Leads suspected, not shown: ``FileReceiver.assembling`` survives a reconnect, and a leftover
``*.shipping`` file of a dropped assembly is never removed (harmless: the next reset truncates
it); a standby's ``StateFile`` reset may announce any ``size`` (up to int64), so a hostile
primary can make it assemble a file without bound (the primary is trusted past the TLS
handshake); with several standbys the block's acknowledged seq is "the latest any reported",
so a lagging second standby lowers it (safe) but a leading one lets a sync router go on while
the other lags (documented: "Not yet: several standbys").
"""

from __future__ import annotations

from pathlib import Path

import pytest

from config import load_profile
from config.schema import RingexConfig
from procs.common.replication_ack import DEGRADED, AckBlock, ack_dir
from procs.common.users import UserStore
from procs.replica.files import FileReceiver, FileShipper
from procs.replica.wire import Entries
from tests.unit.replica.test_review33_failover import _acked_pair
from tests.unit.replica.test_review108_readme_failover2 import _record_promote, failover
from tests.unit.replica.test_source import commands
from tests.unit.replica.test_standby import COMMANDS, frame
from tests.unit.replica.test_standby import standby as make_standby
from tests.unit.supervisor.test_review_ops_bugs import write

PAIR = ["users.log", "users.json"]  # ``shipped_files``' order: each log before its snapshot
CHEAP = 2  # scrypt's cost for the tests' passwords


def _primary_store(root: Path, users: int, compact_min: int = 4096) -> UserStore:
    root.mkdir(parents=True, exist_ok=True)
    store = UserStore(root / "users.json", compact_min=compact_min)
    for i in range(users):
        store.add(f"U{i}", "pw", 100 + i, n=CHEAP)
    return store


def _in_sync(primary: Path, standby: Path) -> FileReceiver:
    """A standby whose copy of the pair is the primary's now (a connection's first ship)."""
    standby.mkdir(parents=True, exist_ok=True)
    receiver = FileReceiver(standby)
    for change in FileShipper(primary, PAIR).changes():
        receiver.apply(change)
    receiver.sync()
    return receiver


def _users(root: Path) -> set[str]:
    return {u.comp_id for u in UserStore(root / "users.json").users()}


# -- the pair of files ---------------------------------------------------------------------------


def test_a_settled_store_shipped_log_first_leaves_a_pair_that_loads(tmp_path: Path) -> None:
    """Was (fixed: ``FileReceiver`` holds such a log aside until its snapshot is in place).
    ``compact`` (two compactions), then the next ship: the log whole, the snapshot in pieces (or cut
    off by a drop). After the log's message alone the standby's pair must still load, whole, as the
    old state or the new."""
    primary, standby = tmp_path / "p", tmp_path / "s"
    store = _primary_store(primary, 3)
    receiver = _in_sync(primary, standby)
    store.compact()  # settle: generation + 2
    store.add("U9", "pw", 109, n=CHEAP)
    log_piece, *rest = FileShipper(primary, PAIR).changes()  # a reconnect's whole resend
    assert log_piece.path == "users.log" and log_piece.reset and rest[0].path == "users.json"
    receiver.apply(log_piece)  # ... and the link drops (or the primary dies) here
    receiver.sync()
    assert _users(standby) in ({"U0", "U1", "U2"}, {"U0", "U1", "U2", "U9"})


def test_a_settled_store_within_one_connection_loads_between_the_snapshots_pieces(
    tmp_path: Path,
) -> None:
    """Was (fixed: the log is held aside until its snapshot is in place). The same window on one
    connection, the snapshot in pieces (a small budget stands for a large ``users.json`` past
    ``CHUNK``): the pair did not load between the pieces, only once the last one replaced the copy.
    Now it loads between them (the old pair) and after (the new one), and nothing is left held."""
    primary, standby = tmp_path / "p", tmp_path / "s"
    store = _primary_store(primary, 3)
    shipper = FileShipper(primary, PAIR)
    standby.mkdir()
    receiver = FileReceiver(standby)
    for change in shipper.changes():
        receiver.apply(change)
    store.compact()
    first = shipper.changes(budget=(primary / "users.log").stat().st_size + 16)
    assert [(c.path, c.reset) for c in first] == [("users.log", True), ("users.json", True)]
    for change in first:
        receiver.apply(change)
    assert _users(standby) == {"U0", "U1", "U2"}
    while changes := shipper.changes(budget=64):
        for change in changes:
            receiver.apply(change)
        assert _users(standby) == {"U0", "U1", "U2"}
    assert not receiver.held and not list(standby.glob("*.held"))
    assert (standby / "users.log").read_bytes() == (primary / "users.log").read_bytes()


def test_one_compaction_between_the_log_and_its_snapshot_loads(tmp_path: Path) -> None:
    """One compaction (a writer's own, past ``compact_min`` changes): the new log beside the
    old snapshot carries the old log's changes over (the bridge), so the log shipped alone
    loads, with every user."""
    primary, standby = tmp_path / "p", tmp_path / "s"
    store = _primary_store(primary, 2, compact_min=3)
    receiver = _in_sync(primary, standby)
    inode = (primary / "users.log").stat().st_ino
    store.remove("U1")
    changes = 1
    while (primary / "users.log").stat().st_ino == inode:  # until the one compaction
        store.set_password("U0", f"pw{changes}", n=CHEAP)
        changes += 1
    assert changes < 10
    store.add("U7", "pw", 107, n=CHEAP)  # a change of the new log's own
    log_piece, *_ = FileShipper(primary, PAIR).changes()
    assert log_piece.path == "users.log" and log_piece.reset
    receiver.apply(log_piece)
    assert _users(standby) == {"U0", "U7"}
    assert UserStore(standby / "users.json").verify("U0", f"pw{changes - 1}") is not None


# -- the journal stream --------------------------------------------------------------------------


def test_an_empty_frame_at_the_end_is_acknowledged_there_and_writes_nothing(
    tmp_path: Path,
) -> None:
    """``Entries(next_seq, [], digest)`` with the standby's own digest: a no-op, acked at the
    seq it already holds (never past it), its journal and hot state as they were."""
    s = make_standby(tmp_path)
    try:
        assert s.receive_entries(frame(1, COMMANDS)) == 2
        before = (s.digest, s.state.sequencer.accounts.balance(7, 1))
        assert s.persist(Entries(3, [], s.digest)) == 2
        assert (s.next_seq, s.digest, s.state.sequencer.accounts.balance(7, 1)) == (3, *before)
    finally:
        s.close()
    again = make_standby(tmp_path)
    assert again.next_seq == 3
    again.close()


# -- promotion racing a running primary ----------------------------------------------------------


def _degrade(primary: RingexConfig, journaled: int) -> None:
    """The primary's router goes on without its standby: seqs 4..``journaled`` journaled and
    (``DEGRADED``) answered to clients, the standby holding 1..3."""
    write(primary, commands(4, journaled - 3))
    block = AckBlock(ack_dir(primary.var_dir, primary.instance))
    block.words[DEGRADED] = 1
    block.appended(journaled)
    block.close()


def test_promote_refuses_a_primary_degraded_past_the_standby_before_any_fence(
    tmp_path: Path, instance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Degraded before ``promote`` looks: refused, nothing fenced, no supervisor told."""
    primary_path, standby_path, primary = _acked_pair(
        tmp_path, instance, journaled=3, acknowledged=3
    )
    _degrade(primary, 6)
    events = _record_promote(monkeypatch)
    assert failover.promote(str(primary_path), str(standby_path)) == 1
    assert events == []


def test_promote_checks_what_the_primary_acknowledged_again_once_it_is_fenced(
    tmp_path: Path, instance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was (fixed: ``promote`` checks again once the primary is fenced, ``lost_once_fenced``). Safe
    when checked (acked 3, the standby holds 3); the primary, still running, degrades and answers
    4..6 before the fence lands. Once fenced it answers nothing more, so that is when the check is
    final: the standby must not be told to promote (no ``GO``)."""
    primary_path, standby_path, primary = _acked_pair(
        tmp_path, instance, journaled=3, acknowledged=3
    )
    standby = load_profile(str(standby_path))
    assert failover.unsafe(primary, standby) == ""
    events = _record_promote(monkeypatch)
    fence = failover.fence

    def racing(cfg: RingexConfig, epoch: int, by: str) -> None:
        _degrade(primary, 6)  # between the check and the fence
        events.append("degraded")
        fence(cfg, epoch, by)

    monkeypatch.setattr(failover, "fence", racing)
    failover.promote(str(primary_path), str(standby_path))
    assert "degraded" in failover.unsafe(primary, standby)  # what the fenced primary shows
    assert not [e for e in events if isinstance(e, tuple) and e[0] in ("stdin", "request")]
