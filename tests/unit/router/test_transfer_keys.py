"""A transfer's idempotency key is in use for a week after its transfer (``transfer_keys.py``):
a retry within it is applied once, a key past it is free again, and when a key is dropped
decides nothing, so a router restored from a snapshot at any point decides as the one that
ran on, whatever the clock did."""

from __future__ import annotations

import random
from pathlib import Path

import msgspec

from config.schema import RingexConfig
from procs.common.result_codes import ResultCode
from procs.core.accounts import Accounts
from procs.core.transfer_keys import WINDOW_NS
from tests.unit.gateway.harness import USD, config

DAY = 86_400 * 10**9


def _cfg(tmp_path: Path) -> RingexConfig:
    return config("unused", tmp_path)


OK, DUPLICATE = ResultCode.OK, ResultCode.DUPLICATE_TRANSFER


def _accounts(tmp_path: Path) -> Accounts:
    accounts = Accounts(_cfg(tmp_path))
    assert accounts.create_account(7) == OK
    return accounts


def test_a_key_is_in_use_for_a_week(tmp_path: Path) -> None:
    accounts = _accounts(tmp_path)
    assert accounts.transfer(7, USD, 100, 42, seq=1, ts_ns=DAY) == OK
    # a retry within the week: refused as a duplicate, and known as the same transfer
    later = DAY + WINDOW_NS - 1
    assert accounts.transfer(7, USD, 100, 42, seq=2, ts_ns=later) == DUPLICATE
    assert accounts.repeat_of(7, USD, 100, 42, later) == 1
    assert accounts.repeat_of(7, USD, 999, 42, later) == 0  # another transfer under its key
    # a week on, the key is free again
    assert accounts.transfer(7, USD, 100, 42, seq=3, ts_ns=DAY + WINDOW_NS) == OK
    assert accounts.balance(7, USD)[0] == 200
    # and in use again from its new transfer on
    assert accounts.transfer(7, USD, 100, 42, seq=4, ts_ns=DAY + WINDOW_NS + 1) == DUPLICATE


def test_keys_past_the_window_leave_memory_and_snapshots(tmp_path: Path) -> None:
    accounts = _accounts(tmp_path)
    for n in range(1, 1_001):  # one deposit an hour for 1,000 hours (41 days)
        assert accounts.transfer(7, USD, 1, n, seq=n, ts_ns=n * DAY // 24) == OK
    kept = accounts.state().transfer_keys
    assert len(kept) == 7 * 24, len(kept)  # the last week's
    assert len(accounts.state().transfer_times) == len(kept)


def test_decisions_do_not_depend_on_when_keys_were_dropped(tmp_path: Path) -> None:
    """A random stream of transfers, keys reused, the clock jumping on and stepping back:
    a router restored from a snapshot before each command decides as the one that ran on."""
    rng = random.Random(63)
    live = _accounts(tmp_path)
    now = DAY
    for seq in range(1, 1_500):
        now = max(0, now + rng.choice([DAY // 3, DAY, -2 * DAY, 5 * DAY, WINDOW_NS]))
        key = rng.randrange(1, 40)
        amount = rng.choice([5, -3, 5])
        restored = Accounts.restore(_cfg(tmp_path), live.snapshot())
        assert restored.state_hash() == live.state_hash()
        first = live.transfer(7, USD, amount, key, seq=seq, ts_ns=now)
        again = restored.transfer(7, USD, amount, key, seq=seq, ts_ns=now)
        assert first == again, (seq, key, now, first, again)
        assert live.repeat_of(7, USD, amount, key, now) == restored.repeat_of(
            7, USD, amount, key, now
        )
        assert restored.state_hash() == live.state_hash(), seq


def test_an_older_snapshots_keys_are_in_use_for_a_week_from_the_first_transfer_after(
    tmp_path: Path,
) -> None:
    """A snapshot of a build that kept keys without their time: its keys are in use (a
    retry across the upgrade is applied once), timed at the first transfer accepted after
    it, and free a week on (review 67: they were free at once)."""
    accounts = _accounts(tmp_path)
    now = 1_795_000_000 * 10**9  # 2026-11-18
    assert accounts.transfer(7, USD, 5, 42, seq=1, ts_ns=now) == OK
    older = msgspec.structs.replace(accounts.state(), transfer_times=[])
    restored = Accounts.restore(_cfg(tmp_path), msgspec.msgpack.encode(older))
    later = now + 30 * DAY  # however long after: its time is not known
    assert restored.transfer(7, USD, 5, 42, seq=2, ts_ns=later) == DUPLICATE
    assert restored.repeat_of(7, USD, 5, 42, later) == 1  # the retry, answered as the first
    again = Accounts.restore(_cfg(tmp_path), restored.snapshot())  # still untimed: the same
    assert again.state_hash() == restored.state_hash()
    assert restored.transfer(7, USD, 5, 43, seq=2, ts_ns=later) == OK  # times key 42 at later
    assert restored.transfer(7, USD, 5, 42, seq=3, ts_ns=later + WINDOW_NS - 1) == DUPLICATE
    assert restored.transfer(7, USD, 5, 42, seq=3, ts_ns=later + WINDOW_NS) == OK
