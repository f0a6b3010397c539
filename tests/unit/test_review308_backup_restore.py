"""Review 308: backup and restore, and moving an instance to a new machine.

Reviewed: README ("Start-up is recovery", the journal and its torn tail, "Archiving", the
disk section's archive and retention, "Hot standby and failover" on a second instance's
``var_dir``), ``procs/common/run_files.py`` (``supervisor_running``, ``read_status``),
``procs/cli.py`` (``_run``, ``_stop``, ``_print_status``, ``_replay --archive``),
``procs/common/journal.py`` (torn tail, ``JournalArchivedError``),
``procs/common/journal_archive.py``, ``procs/core/archive_bound.py``,
``procs/core/recovery.py`` (``_recover``'s snapshot-past-the-end refusal,
``matcher_snapshot``), ``procs/common/snapshots.py``.

Rig: review 206's ``Rig`` (every matcher and the router over the instance's real rings and
journal, stepped in this thread; ``stop`` is a clean stop) with its two-matcher config, the
copy made by ``shutil.copytree`` as ``cp -a`` makes it (another var_dir, another instance
name, so another set of rings); ``recover``/``write_snapshot`` as the router's snapshot child
and ``ringex replay`` call them; ``archivable_before`` + ``archive_segments_before`` as
``ringex replay --archive`` calls them. For what an operator sees: a real ``ringex run
--detach`` of review 50's ``exchange_profile`` (a matcher, the router, a FIX gateway), account
501 funded by ``ringex admin``, the copy a second profile with its own var_dir and port.

Faults found (each fixed; its test says what it was):

1. A copy of a running instance's ``var/<instance>`` carries ``run/status.json``, and every
   command takes it as the copy's own: ``supervisor_running`` (``procs/common/run_files.py:97``)
   believes a status file whose supervisor pid and start time match a live process, without
   asking whether that supervisor is this directory's (``status["instance"]`` is not even
   compared with ``cfg.instance``). So ``ringex stop --config copy.toml`` (``procs/cli.py:231``)
   SIGTERMs the *source's* supervisor and says "instance <copy> stopped": a restore drill on
   the same host stops the live exchange. ``ringex run`` of the copy (``procs/cli.py:153``) is
   refused "instance <copy> is running (supervisor pid <the source's>)", and ``ringex status``
   of the copy prints the source's processes under the source's name. Fixed: ``read_status``
   (every command's reading of it) takes no status written for another instance, so the copy
   is not running, starts, and stops nothing of the source's. (A copy under the same name in
   another var_dir on the same host is refused already: its shared memory is in use.)

Sound: a copy after a clean stop, under another instance name in another var_dir, restores
the source's state hashes, balances and open orders and trades on (the rig), and starts
beside its restarted source with the same balances (real processes); a journal alone
(every snapshot deleted) restores the live state; a hot copy whose last segment ends
mid-entry drops that entry with a warning naming the segment and "torn tail at offset", and
restores the state as of the entry before; a hot copy whose ``snapshots/`` was copied after
the router wrote a snapshot past the copy's journal is refused naming that snapshot and
"move ... aside", and starts once it is moved aside; archive (README's bound), then the
archive deleted as a retention would, then a restart restores the live state, and a replay
``--from-start`` is refused naming the first kept segment ("its entries were archived").

Leads not shown:
- ``scripts/failover.py promote``'s fence "kills every process its status file names, only
  while that supervisor runs": with a standby or primary made from a hot copy on one host,
  the same stale ``status.json`` may name the source's processes; not run here.
- The snapshot-past-the-journal refusal blames "journal.fsync = 'batch'" for a tail lost,
  where the cause is a copy not taken at one instant; the message still names the file.
- FIX session sequence numbers through a copy (``gateway/<name>/`` stores): ``cp -a`` walks
  ``gateway/`` before ``journal/``, so a hot copy's stores are older than its journal; what
  a FIX client meets at logon to the copy (a gap fill, or lower numbers) needs a FIX client
  run, not done in the time box.
- With an absolute ``journal.archive_dir`` a copy renamed to another instance looks for its
  archive under ``<archive_dir>/<new name>``; a restore needing archived segments would not
  find them (README says archives are per instance; not drilled).
- README gives no backup procedure at all (what to copy, whether a hot copy is supported,
  that ``run/`` must be left out); the faults above are what an operator meets without one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from config.schema import RingexConfig
from procs.common.journal import list_segments
from procs.common.journal_archive import archive_segments_before
from procs.common.records import Transfer
from procs.common.topology import journal_archive_dir, journal_dir, snapshot_dir
from procs.core.archive_bound import archivable_before
from procs.core.recovery import recover, write_snapshot
from shm.inspect import remove_instance
from tests.unit.router.test_router import ADMIN
from tests.unit.supervisor.test_review50_ops import exchange_profile, ringex
from tests.unit.supervisor.test_review206_config_change import (
    BTC_USD,
    ETH_USD,
    TRADER,
    USD,
    Rig,
    buy,
    changed,
    config,
    funded,
    sell,
)

# -- helpers --------------------------------------------------------------------------------


def _moved(cfg: RingexConfig, var: Path, instance: str) -> RingexConfig:
    """``cfg`` as an instance named ``instance`` under ``var``, its ``var/<instance>`` a copy
    of ``cfg``'s as ``cp -a`` makes it (taken now, whatever runs)."""
    var.mkdir(parents=True, exist_ok=True)
    shutil.copytree(Path(cfg.var_dir) / cfg.instance, var / instance, symlinks=True)
    return changed(cfg, instance=instance, var_dir=str(var))


def _hashes(cfg: RingexConfig, **kw: object) -> dict[str, str]:
    return recover(cfg, **kw).state_hashes()  # type: ignore[arg-type]


def _live_hashes(rig: Rig) -> dict[str, str]:
    out = {"router": rig.router.sequencer.accounts.state_hash()}
    out.update({f"matcher {n}": s.matcher.state_hash() for n, s in rig.matchers.items()})
    return out


def _traded(cfg: RingexConfig) -> Rig:
    """``funded``'s rig, then a partial fill on BTC-USD and a sell resting on ETH-USD."""
    rig = funded(cfg)
    rig.send(1, sell(3, BTC_USD, 1000, 4), sell(4, ETH_USD, 1200, 7))
    return rig


@pytest.fixture
def cfg(instance: str, tmp_path: Path) -> Iterator[RingexConfig]:
    yield config(instance, tmp_path / "var")
    remove_instance(instance)


@pytest.fixture
def other(instance: str) -> Iterator[str]:
    """A second instance name, for the copy."""
    name = f"{instance}c"
    yield name
    remove_instance(name)


# -- the rig: state copied, cut, archived -----------------------------------------------------


def test_sound_a_copy_after_a_clean_stop_restores_elsewhere_under_another_name(
    cfg: RingexConfig, other: str, tmp_path: Path
) -> None:
    """Scenario: trade, stop cleanly, copy ``var/<instance>`` to another var_dir as another
    instance; start the copy's router and matchers and trade on. Expected (and now): the
    copy's state hashes, balances and open orders are the source's; the copy sequences on
    from the source's next seq."""
    rig = _traded(cfg)
    live, balances = _live_hashes(rig), rig.balances()
    opened = rig.router.sequencer.accounts.open_orders(TRADER)
    rig.stop()
    moved = _moved(cfg, tmp_path / "elsewhere", other)
    assert _hashes(moved) == live
    copy = Rig(moved)
    try:
        assert _live_hashes(copy) == live
        assert copy.balances() == balances
        assert copy.router.sequencer.accounts.open_orders(TRADER) == opened
        copy.send(1, buy(5, ETH_USD, 1200, 7))  # takes the sell resting from before the move
        assert copy.router.sequencer.accounts.open_orders(TRADER) == opened - 1
    finally:
        copy.stop()


def test_sound_a_journal_alone_restores_the_state_the_snapshots_held(cfg: RingexConfig) -> None:
    """Scenario: an exchange snapshot written, more trading, a clean stop; then every
    snapshot (exchange and matchers') deleted, as a backup of the journal alone restores.
    Expected (and now): recovery from the journal alone gives the live state hashes, and a
    rig started on it the live balances."""
    rig = _traded(cfg)
    write_snapshot(cfg, recover(cfg))
    rig.send(1, buy(6, BTC_USD, 990, 3))
    live, balances = _live_hashes(rig), rig.balances()
    rig.stop()
    shutil.rmtree(Path(cfg.var_dir) / cfg.instance / "snapshots")
    assert _hashes(cfg) == live
    again = Rig(cfg)
    try:
        assert _live_hashes(again) == live
        assert again.balances() == balances
    finally:
        again.stop()


def test_sound_a_hot_copy_cut_mid_entry_restores_to_the_entry_before_saying_where(
    cfg: RingexConfig, other: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Scenario: ``var/<instance>`` copied while the router runs, the copy of the last segment
    ending mid-entry (a write under way). Expected (and now): the copy's recovery drops the
    torn entry with a log line naming the segment and offset, and restores exactly the
    source's state as of the entry before (no refusal, nothing else lost)."""
    rig = _traded(cfg)
    try:
        moved = _moved(cfg, tmp_path / "hot", other)
        before = _hashes(cfg, upto=recover(cfg).last_seq - 1)
    finally:
        rig.stop()
    (first, segment), *_ = reversed(list_segments(journal_dir(moved)))
    size = segment.stat().st_size
    with segment.open("r+b") as f:
        f.truncate(size - 50)  # inside the last entry: its CRC and part of its image gone
    caplog.set_level(logging.WARNING, logger="ringex.journal")
    copy = Rig(moved)
    try:
        assert _live_hashes(copy) == before
    finally:
        copy.stop()
    said = " ".join(r.getMessage() for r in caplog.records)
    assert str(segment) in said and "torn tail at offset" in said, said
    del first


def test_sound_a_hot_copy_whose_snapshot_outran_its_journal_is_refused_naming_it(
    cfg: RingexConfig, other: str, tmp_path: Path
) -> None:
    """Scenario: a hot copy as ``cp -a`` walks the tree: ``journal/`` copied, then the router
    sequences on and writes an exchange snapshot, then ``snapshots/`` copied (newer than the
    copy's journal). Expected (and now): the copy's start is refused, naming the snapshot
    past the journal's end and saying to move it aside; once it is moved aside the copy
    starts with the state as of its journal's end."""
    rig = _traded(cfg)
    copy_root = tmp_path / "hot" / other
    try:
        shutil.copytree(journal_dir(cfg), copy_root / "journal")
        at_copy = _hashes(cfg)
        rig.send(1, buy(9, BTC_USD, 990, 3))
        write_snapshot(cfg, recover(cfg))
    finally:
        rig.stop()
    shutil.copytree(Path(cfg.var_dir) / cfg.instance / "snapshots", copy_root / "snapshots")
    moved = changed(cfg, instance=other, var_dir=str(tmp_path / "hot"))
    newest = max((snapshot_dir(moved, "exchange")).iterdir())
    with pytest.raises(ValueError, match="past the journal's last entry") as refused:
        Rig(moved)
    assert str(newest) in str(refused.value) and "aside" in str(refused.value)
    newest.rename(tmp_path / newest.name)
    copy = Rig(moved)
    try:
        assert _live_hashes(copy) == at_copy
    finally:
        copy.stop()


def _busy(cfg: RingexConfig, transfers: int) -> Rig:
    """``_traded``'s rig, then ``transfers`` deposits of 1 USD unit (to fill segments)."""
    rig = _traded(cfg)
    step = 500
    for base in range(0, transfers, step):
        rig.send(
            ADMIN,
            *(
                Transfer(0, 0, ADMIN, 1, 10_000 + k, TRADER, USD, 1, 1_000_000 + k)
                for k in range(base, base + step)
            ),
        )
    return rig


def test_sound_archive_then_prune_then_restart_restores_the_state(
    cfg: RingexConfig, tmp_path: Path
) -> None:
    """Scenario (README "Archiving"): 1 MB segments, enough commands for several; an exchange
    snapshot; ``replay --archive``'s steps (``archivable_before`` then
    ``archive_segments_before``); the archive deleted as a retention would; a restart.
    Expected (and now): segments were archived, the restart restores the live state, and a
    replay from the journal's start is refused naming the segment whose entries were
    archived (not a silent replay from its middle)."""
    cfg = changed(  # (a smaller reread window: ring.capacity x (gateways + 1)); no writer
        cfg,
        database=msgspec.structs.replace(cfg.database, enabled=False),
        journal=msgspec.structs.replace(cfg.journal, segment_mb=1),
        ring=msgspec.structs.replace(cfg.ring, capacity=1024),
    )
    rig = _busy(cfg, 14_000)
    live = _live_hashes(rig)
    rig.stop()
    write_snapshot(cfg, recover(cfg))
    assert len(list_segments(journal_dir(cfg))) >= 3
    moved = archive_segments_before(
        journal_dir(cfg), archivable_before(cfg), journal_archive_dir(cfg)
    )
    assert moved
    shutil.rmtree(journal_archive_dir(cfg))
    assert _hashes(cfg) == live
    again = Rig(cfg)
    try:
        assert _live_hashes(again) == live
    finally:
        again.stop()
    with pytest.raises(Exception, match="archived") as refused:
        recover(cfg, use_snapshot=False)
    assert str(list_segments(journal_dir(cfg))[0][1]) in str(refused.value)
    del tmp_path


# -- a real instance: the copy's run directory ------------------------------------------------


class Pair:
    """A running source instance and the paths for a copy of it under another name."""

    def __init__(self, root: Path) -> None:
        pid = os.getpid()
        self.root = root
        self.a, self.b = f"r308a{pid}", f"r308b{pid}"
        self.src = exchange_profile(root / "a.toml", self.a, var_dir=str(root / "var"))
        self.dst = exchange_profile(root / "b.toml", self.b, var_dir=str(root / "copy"))

    def admin(self, profile: Path, *args: str) -> str:
        done = ringex("admin", *args, "--config", str(profile))
        assert done.returncode == 0, done.stderr
        return done.stdout

    def balances(self, profile: Path) -> object:
        return json.loads(self.admin(profile, "balances", "--account", "501", "--json"))

    def hot_copy(self) -> None:
        (self.root / "copy").mkdir(exist_ok=True)
        shutil.copytree(self.root / "var" / self.a, self.root / "copy" / self.b, symlinks=True)

    def running(self, profile: Path) -> bool:
        done = ringex("status", "--config", str(profile), "--json")
        return bool(done.stdout) and json.loads(done.stdout).get("state") == "running"


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    p = Pair(tmp_path)
    started = ringex("run", "--config", str(p.src), "--detach", "--timeout", "60")
    assert started.returncode == 0, started.stderr
    try:
        p.admin(p.src, "create-account", "--account", "501")
        p.admin(p.src, "deposit", "--account", "501", "--asset", "USD", "--amount", "12.5")
        yield p
    finally:
        ringex("stop", "--config", str(p.dst), "--timeout", "60")
        ringex("stop", "--config", str(p.src), "--timeout", "60")
        remove_instance(p.a)
        remove_instance(p.b)


def test_stopping_a_hot_copy_leaves_its_source_running(pair: Pair) -> None:
    """Scenario: ``var/<a>`` copied as ``cp -a`` would while instance a runs, to another
    var_dir as instance b (a restore drill on the same host); the operator runs ``ringex
    stop --config b.toml`` (say, to be sure the copy is not running before starting it).
    Expected: "instance b is not running"; instance a runs on. Was (fixed): the copied
    ``run/status.json`` names a's supervisor (pid and start time, both matching a live
    process), so ``ringex stop`` of b SIGTERMs a's supervisor: the live exchange stops, and
    the stop says "instance b stopped"."""
    pair.hot_copy()
    done = ringex("stop", "--config", str(pair.dst), "--timeout", "30")
    assert pair.running(pair.src), (done.stdout, done.stderr)
    assert "not running" in done.stdout, done.stdout


def test_a_hot_copy_starts_beside_its_source_with_its_balances(pair: Pair) -> None:
    """Scenario: as above, then ``ringex run --config b.toml --detach`` (its own ports and
    var_dir; instance a still running, quiet). Expected: b starts, recovered from the copy,
    and ``ringex admin balances`` of account 501 there is a's. Was (fixed): refused, exit 1,
    "instance b is running (supervisor pid <a's supervisor>)": b never ran, the pid is a's."""
    pair.hot_copy()
    started = ringex("run", "--config", str(pair.dst), "--detach", "--timeout", "60")
    assert started.returncode == 0, started.stdout + started.stderr
    assert pair.balances(pair.dst) == pair.balances(pair.src)


def test_sound_a_copy_after_a_clean_stop_starts_elsewhere_with_its_balances(pair: Pair) -> None:
    """Scenario: ``ringex stop`` of a, then ``var/<a>`` copied to another var_dir as b and
    started there; a started again too. Expected (and now): both run, account 501's balances
    equal; the copy's status file says stopped, so nothing in it is taken for b's."""
    src_before = pair.balances(pair.src)
    stopped = ringex("stop", "--config", str(pair.src), "--timeout", "60")
    assert stopped.returncode == 0, stopped.stderr
    pair.hot_copy()
    started = ringex("run", "--config", str(pair.dst), "--detach", "--timeout", "60")
    assert started.returncode == 0, started.stdout + started.stderr
    again = ringex("run", "--config", str(pair.src), "--detach", "--timeout", "60")
    assert again.returncode == 0, again.stdout + again.stderr
    assert pair.balances(pair.dst) == src_before == pair.balances(pair.src)
