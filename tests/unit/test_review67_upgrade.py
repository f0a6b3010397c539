"""A hostile review (67): an operator upgrades a running venue from this morning's build
(82bd4da) to HEAD by the README's upgrade path, literally: stop with the old build, ``ringex
replay --snapshot`` (and ``--to-db``) with the old build, start the new one.

Done live first (a worktree of 82bd4da, an instance under /tmp: two FIX users, a trade, a
REST order, market data on), then pinned here with the old build's artifacts made directly:
its journal segments carry the schema id of the *whole* record set
(``schema_id(RECORD_TYPES)``, which 2eec74d moved to ``JOURNALED_TYPES`` alone) and rules
version 1; its router snapshot (``AccountsState``) has no ``transfer_times``.

What holds:

- Replication between the two builds, either way round, is refused at the handshake with a
  reason naming both schema ids, slot sizes and rules versions; each side decodes the
  other's Hello and EpochHistory (``cluster`` is an extra trailing field the old build
  ignores, an absent one reads ""), and the record check comes before the epoch, so neither
  side fences the other or journals the other's entries.
- Every other file of the old build loads in the new one unchanged: with the journal's
  header ids rewritten (what a fix would accept), HEAD started on the old ``var``: the users
  file, an API key login, FIX sequence numbers and message stores, the gateway's order and
  ClOrdID logs (a cancel by the old ClOrdID worked), ``marketdata/state.pickle`` (depth and
  the trade tape), the matchers' and exchange snapshots, ``units.json``; epochs.json,
  ``order_log``, ``store``, ``users``/``apikeys``, the dbwriter's tables and snapshot format
  are untouched between the two builds, and a new primary makes ``journal/cluster``.
- The ring schema id is unchanged (``schema_id(RECORD_TYPES)`` is the same in both builds).

Faults, each pinned by a test that failed on the code it was written against and passes
since its fix (the same session's commits):

1. The README's upgrade path does not start the new build: every journal reader and
   writer checks the header of the old build's segments against the new journal schema id,
   including the ones wholly covered by the snapshot the old build wrote (the router's
   ``JournalWriter`` opening the last segment, ``recover``'s tail read, ``journal_end`` at a
   matcher's start, the standby's history, the gateway's and dbwriter's readers). The
   instance cannot start again except from an empty ``var``.
2. Skipping the snapshot step gets the schema-id error, whose remedy ("replay it with that
   version, or move the instance's var directory aside") neither names ``ringex replay
   --snapshot`` nor the rules versions, and whose second half throws away the venue's users,
   keys and balances.
3. The old build's snapshot restores every transfer idempotency key with time 0, "free at
   once": a deposit retried with its key after the upgrade (the CLI tells the operator which
   ``--key`` retries an interrupted one) is applied a second time, although the README
   promises a retry within a week is applied once.
"""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

import msgspec
import pytest

from config.schema import ReplicationConfig, RingexConfig
from procs.common.journal import HEADER_SIZE, JournalError, list_segments
from procs.common.journal_writer import JournalWriter
from procs.common.record_codec import RecordCodec
from procs.common.result_codes import ResultCode
from procs.common.rules_version import RULES_VERSION
from procs.common.topology import journal_dir
from procs.core.accounts import Accounts
from procs.core.accounts_state import OrderState
from procs.core.recovery import journal_end, recover, write_snapshot
from procs.replica.standby import Standby
from tests.unit.router.core_rig import exchange_config
from tests.unit.router.test_review3_recovery_bugs import _instance

CODEC = RecordCodec()
#: what 82bd4da wrote in every journal header: the whole record set's id
OLD_SCHEMA = 0x5245_DCF9_48CF  # what 82bd4da stamped (the whole record set of its day)
OLD_RULES = 1
_RULES_AT, _SCHEMA_AT, _CRC_AT = 20, 24, HEADER_SIZE - 4


def _as_the_old_build_wrote_it(cfg: RingexConfig) -> None:
    """Rewrite each segment's header as 82bd4da wrote it (its entries are the same bytes:
    no journaled command's layout changed)."""
    assert CODEC.journal_schema_id != OLD_SCHEMA  # the premise: 2eec74d changed the id
    for _, path in list_segments(journal_dir(cfg)):
        data = bytearray(path.read_bytes())
        struct.pack_into("<I", data, _RULES_AT, OLD_RULES)
        struct.pack_into("<Q", data, _SCHEMA_AT, OLD_SCHEMA)
        struct.pack_into("<I", data, _CRC_AT, zlib.crc32(bytes(data[:_CRC_AT])))
        path.write_bytes(bytes(data))


def _upgraded(tmp_path: Path) -> tuple[RingexConfig, int]:
    """An instance the old build stopped and snapshotted at its journal's end (``ringex
    replay --snapshot``), handed to this build."""
    cfg, count = _instance(tmp_path)
    write_snapshot(cfg, recover(cfg))  # the old build's replay --snapshot: at the end
    _as_the_old_build_wrote_it(cfg)
    return cfg, count


def test_the_new_build_starts_from_the_old_builds_snapshot(tmp_path: Path) -> None:
    """README: "write a snapshot at the journal's end with the build that wrote it ...
    then start the new build: what a snapshot covers is never replayed". Today every reader
    checks each segment's header against ``journal_schema_id``, so the old build's segments,
    all covered by its snapshot, stop the matcher (``journal_end``), the router's recovery
    and its ``JournalWriter`` (opening the last segment) with ``JournalFormatError``: the
    venue cannot start again but from an empty var directory. A correct exchange starts
    from the snapshot, replays nothing, and journals from the next seq in a segment of its
    own (as it does for a segment of other rules)."""
    cfg, count = _upgraded(tmp_path)
    assert journal_end(cfg) == count  # a matcher's start
    recovered = recover(cfg)  # the router's (and a standby's, a replay's)
    assert (recovered.last_seq, recovered.replayed) == (count, 0)
    codec = CODEC
    with JournalWriter(
        journal_dir(cfg), slot_size=codec.slot_size, schema_id=codec.journal_schema_id
    ) as w:  # the router's _open_journal
        assert w.next_seq == count + 1


def test_a_standby_upgraded_with_its_primary_starts(tmp_path: Path) -> None:
    """README: "upgrade the standby with the primary, its journal snapshotted the same way".
    A standby recovers as the router does (the previous test), and then hashes its whole
    journal from seq 1 for the history check (``Standby.__init__``), the old build's
    segments included: either stops it with the schema id's ``JournalFormatError``, so a
    fix of recovery alone does not make this pass. A correct standby starts (the old
    segments are read for their bytes, which did not change; only a replay needs their
    rules)."""
    cfg, count = _upgraded(tmp_path)
    cfg = msgspec.structs.replace(cfg, replication=ReplicationConfig(primary="127.0.0.1:1"))
    standby = Standby(cfg)
    try:
        assert standby.next_seq == count + 1
    finally:
        standby.journal.close()


def test_skipping_the_snapshot_is_refused_naming_the_upgrade_path(tmp_path: Path) -> None:
    """The operator starts the new build on the old journal without the snapshot step. The
    refusal is the schema id's: "written by another version of the records; replay it with
    that version, or move the instance's var directory aside to start an empty exchange":
    no rules versions, no ``ringex replay --snapshot``, and a second remedy that throws away
    the users, API keys and balances. (Replaying with the old build without ``--snapshot``
    changes nothing; with it, fault 1.) A correct refusal names the segment, both rules
    versions and the README's step, as ``JournalRulesError`` does for a journal of other
    rules under the same schema."""
    cfg, _ = _instance(tmp_path)
    _as_the_old_build_wrote_it(cfg)
    with pytest.raises(JournalError) as refused:
        recover(cfg)
    text = str(refused.value)
    assert any(str(path) in text for _, path in list_segments(journal_dir(cfg)))
    assert f"rules version {OLD_RULES}" in text and f"version {RULES_VERSION}" in text
    assert "ringex replay --snapshot" in text


class _OldAccountsState(msgspec.Struct, frozen=True, array_like=True):
    """``AccountsState`` as 82bd4da wrote it: no ``transfer_times``."""

    accounts: list[int]
    balances: list[tuple[int, int, int, int]]
    net: list[tuple[int, int]]
    transfer_keys: list[int | tuple[int, int, int, int, int]]
    last_prices: list[tuple[int, int]]
    orders: list[OrderState]
    fees: list[tuple[int, int, int]] = []
    fee_account: int | None = None


def test_a_deposit_retried_after_the_upgrade_is_applied_once() -> None:
    """``TransferKeys.restore`` gives each key of a snapshot without ``transfer_times`` the
    time 0 ("free at once"), and the old build's snapshot is the one the README's upgrade
    path starts the new build from. A deposit made a minute before the upgrade, whose answer
    was lost, retried with its ``--key`` after it (what the CLI tells the operator to do),
    is applied a second time: money made from nothing, against the README's "a retry
    within the week is applied once". A correct restore keeps such keys in use for the
    window from the snapshot's time (or the first transfer after it), so the retry is
    ``DUPLICATE_TRANSFER`` and answered as the first."""
    cfg = exchange_config()
    account, asset, amount, key, seq = 100, cfg.assets[0].id, 5_000_000, 0xC0FFEE, 7
    old = _OldAccountsState(
        accounts=[cfg.risk.fee_account, account],
        balances=[(account, asset, amount, 0)],
        net=[(asset, amount)],
        transfer_keys=[(key, account, asset, amount, seq)],
        last_prices=[],
        orders=[],
    )
    accounts = Accounts.restore(cfg, msgspec.msgpack.encode(old))
    now = time.time_ns()  # a minute after the deposit: well within the week
    code = accounts.transfer(account, asset, amount, key, seq + 1, now)
    assert code == ResultCode.DUPLICATE_TRANSFER, "the retry was applied again"
    assert accounts.repeat_of(account, asset, amount, key, now) == seq
