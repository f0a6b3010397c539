"""Review 245: a hostile reread of reviews 241 and 242's changes (967d48e, 71e8769).

Reviewed: ``procs/core/recovery.py`` (``matcher_snapshot``'s new ``_added_since``, its callers
``matchers_at`` / ``restore_matchers`` (router, standby, the database writer's ``Follower``),
``procs/matcher/main.py``'s start with ``bounds``, ``procs/gateway/recovery.py``;
``write_snapshot`` now always bounding ``SnapshotStore.save``'s rewound snapshots by
``journal_end``), ``procs/common/snapshots.py`` (``save``), ``procs/common/journal.py``
(``last_seq`` over a torn tail), ``procs/supervisor/preflight.py`` / ``main.py``
(``fee_account_user_now`` in ``_restart``), ``procs/core/archive_bound.py`` (moved from
``recovery.py``).

Rigs: review 206's ``Rig`` (router and matcher shells over real rings and journal, stepped by
hand), review 241's upgrade (``_as_an_older_build_wrote_it``) and listing (``listed``: SOL-USD
on a new matcher m3).

Fault:

1. ``_added_since`` (``procs/core/recovery.py:482-501``, called at :476) judges "added since"
   by the newest exchange snapshot at or before the journal's end (``store.at_or_before(end)``
   at :493), not by the one ``_exchange_books`` (:511-532) stopped at for lacking the matcher.
   A caller bounded below a newer exchange snapshot that already holds the matcher (its copy's
   last command past the bound) walks back to an older snapshot without it, gets None, and
   ``_added_since`` then reads the newest one, which journaled the matcher's rules: None, so the
   matcher replays from the journal's first entry, which after an upgrade is an older build's
   and refused (``JournalRulesError``: review 241's fault again). Reached by (a) a matcher
   restarted by the supervisor (its output ring not fresh: ``bounds``,
   ``procs/matcher/main.py:103-105``) after a crash before its first own snapshot, lagging the
   router's snapshot job: it cannot start (a crash loop until ``restart_limit`` stops the
   instance); (b) the database writer's ``Follower.restore`` (``procs/dbwriter/replay.py:90``)
   from its snapshot of before the listing, once the router snapshotted after it
   (``restore_matchers`` -> ``matchers_at``: refused, the writer down). Fix: have
   ``_exchange_books`` hand back the snapshot it stopped at for lacking the matcher (seq and
   router state), and let ``_added_since`` judge that one (the newest snapshot without the
   matcher at or before the walk), not ``store.at_or_before(end)``; empty books as of its seq
   are right for any bound (the matcher had no command up to there).

Found sound: a symbol-0 mass cancel journaled before the listing (routed to every matcher, m3
too in a replay from the start, not in one from the snapshot ``_added_since`` takes) leaves no
difference: the listing's ``SymbolRules`` sets m3's ``last_seq`` past it, and the live shells,
``recover`` and a replay from the start hash the same; ``write_snapshot`` over a journal whose
last segment ends in a torn entry (the router mid-append) reads the last whole entry's seq
(``_tail``'s scan), keeps a newer snapshot up to there and still removes one past a lost tail
(a real rewind; the router refuses to start from one past the journal anyway,
``recovery.py:233-238``); ``fee_account_user_now`` of a profile that no longer loads refuses
nothing (the process says why, as ``units_differ_now``); ``procs.core.archive_bound``,
``procs.cli`` and ``procs.matcher.main`` import first in a fresh interpreter (no cycle:
``archive_bound`` imports ``recovery``, never the reverse).

Not faults: ``fee_account_user_now`` refuses a router's or matcher's restart too, not only a
gateway's: a router restarted on such a profile would journal fees to a user's account, and
the units check it sits beside does the same for every process; the users file is read once
per restart, not per step.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from config.schema import RingexConfig
from procs.common.journal import entry_layout, list_segments
from procs.common.records import MassCancel, Record
from procs.common.topology import journal_dir
from procs.core.recovery import (
    ExchangeSnapshot,
    journal_end,
    recover,
    restore_matchers,
    snapshot_store,
    write_snapshot,
)
from procs.matcher.main import MatcherShell
from procs.supervisor.preflight import fee_account_user_now
from shm.inspect import remove_instance
from tests.unit.supervisor.test_review206_config_change import (
    BTC_USD,
    CODEC,
    ETH_USD,
    TRADER,
    Rig,
    buy,
    config,
    funded,
    sell,
)
from tests.unit.test_review241_diff import SOL_USD, _as_an_older_build_wrote_it, listed

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cfg(instance: str, tmp_path: Path) -> Iterator[RingexConfig]:
    yield config(instance, tmp_path / "var")
    remove_instance(instance)


def _upgraded(cfg: RingexConfig) -> int:
    """Trades on both symbols; a stop and a snapshot at the journal's end (review 241's
    upgrade path; its router state journaled BTC-USD's and ETH-USD's rules); the segments
    then as a build of older rules wrote them. The snapshot's seq."""
    rig = funded(cfg)
    rig.send(1, sell(3, ETH_USD, 1000, 4), sell(4, BTC_USD, 1000, 1))
    rig.stop()
    write_snapshot(cfg, recover(cfg))
    _as_an_older_build_wrote_it(cfg, "rules")
    end = journal_end(cfg)
    assert end is not None
    return end


def _route_only(rig: Rig, *commands: Record) -> None:
    """``commands`` journaled and routed by the router, no matcher stepped (one lagging)."""
    rig.gateways[1].publish_batch(list(commands))
    before = journal_end(rig.cfg) or 0
    deadline = time.monotonic() + 10.0
    while (journal_end(rig.cfg) or 0) < before + len(commands):
        assert time.monotonic() < deadline, "the router never journaled the commands"
        rig.router.step(timeout_s=0.01)
        for tap in rig.taps:
            tap.read(4096)


# -- fault 1: _added_since judges the newest snapshot, not the one the walk stopped at -------------


def test_a_matcher_restarted_behind_a_router_snapshot_after_an_upgrade_starts(
    cfg: RingexConfig,
) -> None:
    """Scenario: review 241's upgrade (the old build's segments, a snapshot at their end),
    then SOL-USD listed on a new matcher m3 (it starts empty, as review 241 fixed); a buy
    rests on SOL-USD; a second buy is journaled and routed while m3 lags, and the router's
    snapshot job writes an exchange snapshot holding m3's books through it; m3 is killed
    before its first own snapshot and the supervisor restarts it (its output ring not fresh:
    ``matcher_snapshot`` bounded by what it published). Expected: m3 starts, its SOL-USD book
    both buys. Was (fixed): ``_exchange_books`` walks past the newer snapshot (its copy past the
    bound) to the one without m3 and answers None; ``_added_since`` reads the newest snapshot, which
    journaled SOL-USD's rules, and answers None; m3 replays from seq 1 and the old build's segment
    is refused (``JournalRulesError``): a crash loop."""
    _upgraded(cfg)
    new = listed(cfg)
    rig = Rig(new)
    try:
        rig.send(1, buy(6, SOL_USD, 1000, 1))
        assert len(rig.matchers["m3"].matcher.books[SOL_USD].levels()) == 1
        _route_only(rig, buy(7, SOL_USD, 1001, 1))
        write_snapshot(new, recover(new))  # the router's snapshot job, m3's copy past it
        rig.matchers.pop("m3").close()  # killed: no own snapshot written
        rig.matchers["m3"] = MatcherShell(new, "m3")  # the supervisor's restart
        rig.pump()
        assert len(rig.matchers["m3"].matcher.books[SOL_USD].levels()) == 2
    finally:
        rig.stop()


def test_the_writers_follower_from_before_a_listing_restores_after_an_upgrade(
    cfg: RingexConfig,
) -> None:
    """Scenario: review 241's upgrade; the database writer's snapshot is of the upgrade's
    seq (its books m1's and m2's: PostgreSQL was down since); SOL-USD is listed on m3, a buy
    rests on it and the router's snapshot job writes an exchange snapshot holding m3; the
    writer restarts (``Follower.restore``: ``restore_matchers`` with its snapshot's books and
    seq). Expected: m3 as of that seq, empty (SOL-USD was listed after it). Was (fixed): m3 is
    rebuilt from the journal's first entry, the old build's, refused (``JournalRulesError``):
    the writer cannot start."""
    at = _upgraded(cfg)
    found = snapshot_store(cfg).at_or_before(at)
    assert found is not None and found[0] == at
    books = msgspec.msgpack.decode(found[1], type=ExchangeSnapshot).matchers
    assert set(books) == {"m1", "m2"}
    new = listed(cfg)
    rig = Rig(new)
    rig.send(1, buy(6, SOL_USD, 1000, 1))
    rig.stop()
    write_snapshot(new, recover(new))
    matchers = restore_matchers(new, books, at)  # as ``Follower.restore`` does
    assert matchers["m3"].books[SOL_USD].levels() == {}


# -- sound -----------------------------------------------------------------------------------------


def test_checked_a_symbol0_command_before_the_listing_replays_the_same(
    cfg: RingexConfig,
) -> None:
    """Scenario: a symbol-0 mass cancel of the trader's orders (routed to every matcher: m3
    too, in a replay from the start), a snapshot at the journal's end, SOL-USD listed on m3
    (``_added_since``: empty as of the snapshot, after the mass cancel) and traded. Expected:
    the live shells, ``recover`` and a replay from the journal's start hash the same, m3
    included. Now: so (the listing's ``SymbolRules`` sets m3's ``last_seq`` past the mass
    cancel)."""
    rig = funded(cfg)
    rig.send(1, MassCancel(0, 0, 1, 1, 900, TRADER, 0))
    assert rig.router.sequencer.accounts.open_orders(TRADER) == 0
    rig.stop()
    write_snapshot(cfg, recover(cfg))
    new = listed(cfg)
    rig = Rig(new)
    try:
        rig.send(1, buy(6, SOL_USD, 1000, 2), sell(7, SOL_USD, 1000, 1))
        live = {name: shell.matcher.state_hash() for name, shell in rig.matchers.items()}
        scratch = recover(new, use_snapshot=False)
        snapped = recover(new)
        for name, digest in live.items():
            assert scratch.matchers[name].state_hash() == digest, name
            assert snapped.matchers[name].state_hash() == digest, name
        held = rig.router.sequencer.accounts.state_hash()
        assert scratch.sequencer.accounts.state_hash() == held
    finally:
        rig.stop()


def test_checked_write_snapshot_over_a_torn_tail_and_a_real_rewind(cfg: RingexConfig) -> None:
    """Scenario: a journal; a snapshot at its end E; the router mid-append (its last segment
    ending in half an entry) while another writer saves a snapshot at E - 1; then the journal
    loses its tail down to E - 2 (fsync "interval", a power loss) and a snapshot is written
    at that end. Expected: the torn tail reads as E (the last whole entry), so the snapshot
    at E is kept beside E - 1; after the loss, the one at E (and E - 1) past the journal's end
    is removed as rewound. Now: so."""
    rig = funded(cfg)
    rig.send(1, sell(3, ETH_USD, 1000, 4), sell(4, BTC_USD, 1000, 1))
    rig.stop()
    end = journal_end(cfg)
    assert end is not None and end > 4
    write_snapshot(cfg, recover(cfg))
    _, last = list_segments(journal_dir(cfg))[-1]
    size = entry_layout(CODEC.slot_size).size
    whole = last.stat().st_size
    with open(last, "ab") as f:
        f.write(b"\x01" * (size // 2))  # an append cut short, as a reader may see it
    assert journal_end(cfg) == end
    write_snapshot(cfg, recover(cfg, upto=end - 1, use_snapshot=False))
    store = snapshot_store(cfg)
    assert store.newest_seq() == end
    assert store.at_or_before(end - 1) is not None
    os.truncate(last, whole - 2 * size)  # the tail lost: the last two entries
    assert journal_end(cfg) == end - 2
    write_snapshot(cfg, recover(cfg, upto=end - 2, use_snapshot=False))
    assert store.newest_seq() == end - 2


def test_checked_fee_account_user_now_of_a_profile_that_does_not_load(tmp_path: Path) -> None:
    """Scenario: the profile the supervisor started from is gone or broken when a process is
    restarted. Expected: no refusal ("": the process says why, as ``units_differ_now``).
    Now: so."""
    broken = tmp_path / "broken.toml"
    broken.write_text("instance = [\n")
    assert fee_account_user_now(str(broken)) == ""
    assert fee_account_user_now(str(tmp_path / "gone.toml")) == ""


@pytest.mark.parametrize(
    "module", ["procs.core.archive_bound", "procs.cli", "procs.matcher.main", "procs.core.recovery"]
)
def test_checked_each_module_imports_first_in_a_fresh_interpreter(module: str) -> None:
    """Scenario: a process whose first import is ``module`` (``python -m procs.matcher.main``,
    ``ringex replay --archive`` through ``procs.cli``). Expected: it imports (no cycle through
    the moved ``archive_bound``). Now: so."""
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
