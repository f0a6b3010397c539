"""Review 310: repeated failovers and what they leave on disk.

Reviewed: scripts/failover.py (promote, demote), procs/replica/rebuild.py,
procs/supervisor/promotion.py (``promoted_path``, ``write_promoted_profile``,
``begin_epoch``), procs/common/epochs.py (``check_open``), procs/router/main.py (its open),
README "Hot standby and failover" and "Epochs".

Rig: two TOML instances on one host (``tests.e2e.test_standby.profile``), real journals, a real
replication source and standby over TCP (review 42's ``_follow_to_end`` and ``_serve``), the
script's own ``promote`` and ``demote`` (promote's new supervisor not started: review 33's
``_no_supervisor``; the new epoch begun by ``begin_epoch`` as that supervisor does), state
compared by ``recover(...).state_hashes()``; a real ``RouterShell`` on created rings.

Faults found (each fixed; its test says what it was):
1. Every failover makes the configs' names longer, without bound: promote writes
   ``<standby>.promoted.toml`` (promotion.py:41, ``with_suffix``) and demote writes
   ``<old>.standby.toml`` (scripts/failover.py:550), so four failovers of ``a.toml``/``b.toml``
   leave ``a.standby.promoted.standby.promoted.toml`` to run (17 characters per two
   failovers), two new files each cycle, and a ``primary.toml`` past 28 failovers makes
   ``demote`` crash with ``OSError: [Errno 36] File name too long`` (a traceback) after it has
   rebuilt the journal, so no standby config is written and every retry crashes the same way.
   Fixed: ``promotion.promoted_path`` and the new ``promotion.standby_path`` strip every
   trailing ``.standby``/``.promoted`` before adding theirs (``X.standby.toml`` ->
   ``X.promoted.toml`` -> ``X.standby.toml``; an older build's long name comes back to
   ``X.*``); demote writes the config through ``promotion.write_standby_profile`` and an
   ``OSError`` of it is one line naming the path, exit 1.
2. ``demote`` lifts the fence at once (rebuild.py:254, ``Epochs(primary.history, ...).save``),
   before the instance is a standby, so the old primary's own config (``primary.toml``, a
   systemd unit still naming it, a restart by habit) opens the demoted journal as a primary
   again: ``RouterShell`` refuses it while fenced (router/main.py:121, ``check_open``) and
   opens it after demote, in the promoted instance's epoch, a second primary. README: the
   fence holds "whoever restarts it: a supervisor, a systemd unit". Fixed: the rebuild
   writes a follow-only mark (``procs/common/follow_only.py``, ``journal/follow-only.json``:
   the promoted instance's address and epoch, and the standby config) before it lifts the
   fence; the router's open check (``procs/router/open_check.py``) refuses it with one line
   naming the file and the config to start instead, a ``Standby`` accepts it and removes it
   once its primary has checked its history, and a promotion's new epoch removes it too.
3. A demote interrupted after its cut (a crash before the fence is lifted) is fixed by the
   next run, but neither run says where the cut entries went: the failed one prints only
   "demote of X failed: <error>" (failover.py:526) and the retry finds nothing more to cut and
   prints "journal kept up to seq N" with no "were cut: kept in ..." line (failover.py:536-540),
   so the operator never learns of the entries acknowledged in async mode that were moved to
   ``demoted/<time>/journal``. Fixed: ``rebuild`` fills the caller's ``Rebuilt`` as it goes
   (``procs/replica/demoted.py``) and a failed demote prints its report (the cut, kept in
   ..., and each path set aside) after its error; a rebuild of a journal still fenced names
   each ``demoted/*/journal`` set aside since the fence that begins where the journal ends
   ("seqs 7..8 were cut by an earlier demote that did not finish: kept in ...").

Sound: four failovers in a row (each with orders between and an unshipped async tail) keep
every entry both sides hold identical and the recovered state hashes equal, epochs rise by one
a failover, the old primary is fenced at each promote and demote cuts only its unshipped tail
(exit 0, the lines README shows); promote run again on the promoted instance does nothing
(exit 0, "promoted already", no new fence); a demote retried after a crash between its steps
lifts the fence and keeps the cut whole.

Leads not shown:
- ``var/<instance>/demoted/<time>/`` gains a directory each demote (here: the cut tail, the
  replication block, the old status file; on a real instance also the whole gateway state,
  order logs included, and the market data state), never pruned; README says they are kept
  for the operator but not that they pile up, one per failover.
- The stamp is to the second (rebuild.py:231): two demotes in one second share a directory,
  and a ``_move`` onto a non-empty directory there would fail with ENOTEMPTY; not reached.
- A promote interrupted after the fence but before the request fences again with the next
  epoch on retry (an epoch skipped, harmless as seen); not pinned further.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from config import load_profile
from procs.common import follow_only
from procs.common.epochs import Epochs, JournalFencedError
from procs.common.topology import create_rings, journal_dir
from procs.core.recovery import recover
from procs.replica import rebuild as rebuild_module
from procs.router.main import RouterShell
from procs.supervisor import promotion_checks
from procs.supervisor.promotion import (
    begin_epoch,
    promoted_path,
    standby_path,
    write_promoted_profile,
)
from tests.e2e.test_standby import profile
from tests.free_ports import free_port
from tests.scripts_loader import load_script
from tests.unit.replica.test_review33_failover import _no_supervisor, _own
from tests.unit.replica.test_review42_demote_ops import _follow_to_end
from tests.unit.replica.test_source import CODEC, commands
from tests.unit.router.test_review42_pipelined import journaled
from tests.unit.supervisor.test_review_ops_bugs import dead_pid, write, write_status
from tests.unit.test_review42_reread2 import _serve

failover = load_script("failover", "review310")


def _pair(tmp_path: Path, a_name: str = "a") -> tuple[Path, Path]:
    """``a`` the primary, ``b`` its standby, each with its own replication port."""
    pa, pb = free_port(), free_port()
    var = tmp_path / "var"
    a = profile(
        tmp_path / f"{a_name}.toml", f"a{os.getpid()}", var,
        f"[replication]\nlisten_port = {pa}\n",
    )  # fmt: skip
    b = profile(
        tmp_path / "b.toml", f"b{os.getpid()}", var,
        f'[replication]\nlisten_port = {pb}\nprimary = "127.0.0.1:{pa}"\n',
    )  # fmt: skip
    return a, b


def _demote(new_path: Path, old_path: Path) -> int:
    new = load_profile(str(new_path))
    address = f"127.0.0.1:{new.replication.listen_port}"
    code = asyncio.run(_serve(new, lambda: failover.demote(str(old_path), "", address)))
    assert isinstance(code, int)
    return code


def _more(cfg_path: Path, n: int) -> None:
    """``n`` more commands sequenced by the instance of ``cfg_path``."""
    cfg = load_profile(str(cfg_path))
    last = promotion_checks.journal_last(cfg)
    write(cfg, commands(1, n) if last == 0 else _own(range(last + 1, last + 1 + n)))


def _promote(p_path: Path, s_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, int]:
    """``failover.py promote`` (its supervisor not started), then the new epoch begun as that
    supervisor begins it; the promoted profile and the epoch."""
    s = load_profile(str(s_path))
    write_status(s, {"role": "standby", "state": "stopped"})
    _no_supervisor(monkeypatch)
    monkeypatch.setattr(failover, "await_promoted", lambda *args, **kwargs: 0)
    assert failover.promote(str(p_path), str(s_path)) == 0
    fence = Epochs.load(journal_dir(load_profile(str(p_path)))).fence
    assert fence is not None and fence.by == s.instance  # the stale primary is fenced
    new_path = promoted_path(str(s_path))
    new = load_profile(str(new_path))
    begin_epoch(new, fence.epoch)
    write_status(new, {"role": "primary", "state": "stopped"})
    return new_path, fence.epoch


def _cycle(p_path: Path, s_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, int]:
    """One failover: the primary sequences 3, its standby takes them, the primary sequences 2
    it never ships (async); promote; the promoted instance sequences 2; the old primary is
    demoted and follows it. The new primary's profile, the new standby's, the epoch."""
    _more(p_path, 3)
    _follow_to_end(load_profile(str(p_path)), load_profile(str(s_path)), close=True)
    _more(p_path, 2)
    new_path, epoch = _promote(p_path, s_path, monkeypatch)
    _more(new_path, 2)
    assert _demote(new_path, p_path) == 0
    old_standby = standby_path(str(p_path))
    new, follower = load_profile(str(new_path)), load_profile(str(old_standby))
    _follow_to_end(new, follower, close=True)
    return new_path, old_standby, epoch


def test_sound_four_failovers_keep_every_command_and_raise_the_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    p_path, s_path = _pair(tmp_path)
    epochs: list[int] = []
    for _ in range(4):
        p_path, s_path, epoch = _cycle(p_path, s_path, monkeypatch)
        epochs.append(epoch)
        p, s = load_profile(str(p_path)), load_profile(str(s_path))
        assert journaled(s) == journaled(p)
        assert recover(s).state_hashes() == recover(p, use_snapshot=False).state_hashes()
        assert Epochs.load(journal_dir(s)).history == Epochs.load(journal_dir(p)).history
        assert Epochs.load(journal_dir(s)).fence is None
        assert not follow_only.marked(journal_dir(s))  # its standby took it: the mark is gone
    assert epochs == [2, 3, 4, 5]
    out = capsys.readouterr().out
    assert out.count("2 entries the primary's history does not hold") == 4, out
    assert out.count("start it as the standby: ringex run --config") == 4, out


def test_sound_promote_run_again_does_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = _pair(tmp_path)
    _more(a, 3)
    _follow_to_end(load_profile(str(a)), load_profile(str(b)), close=True)
    _, epoch = _promote(a, b, monkeypatch)
    capsys.readouterr()
    assert failover.promote(str(a), str(b)) == 0
    assert "promoted already and is stopped: nothing done" in capsys.readouterr().out
    fence = Epochs.load(journal_dir(load_profile(str(a)))).fence
    assert fence is not None and fence.epoch == epoch == 2


def _fenced_old(tmp_path: Path, a_name: str = "a") -> tuple[Path, Path]:
    """``b`` promoted at epoch 2 from seq 7 (1..6 its primary's); ``a``, its old primary, at
    1..8 (7..8 never shipped), fenced, its status a SIGKILLed primary's."""
    a, b = _pair(tmp_path, a_name)
    pa, pb = load_profile(str(a)), load_profile(str(b))
    write(pa, commands(1, 8))
    write(pb, commands(1, 6))
    new_path = write_promoted_profile(str(b))
    begin_epoch(load_profile(str(new_path)), 2)
    Epochs.load(journal_dir(pa)).fenced(2, pb.instance).save(journal_dir(pa))
    write_status(pa, {"role": "primary", "state": "running", "supervisor_pid": dead_pid()})
    return a, new_path


def _crash(*args: object, **kwargs: object) -> None:
    raise OSError("the host crashed here")


def test_sound_a_demote_retried_after_a_crash_between_steps_lifts_the_fence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    a, new_path = _fenced_old(tmp_path)
    with monkeypatch.context() as patch:  # after the cut, before the fence is lifted
        patch.setattr(rebuild_module, "_drop_database", _crash)
        assert _demote(new_path, a) == 1
    assert "demote of" in capsys.readouterr().err
    old = load_profile(str(a))
    assert Epochs.load(journal_dir(old)).fence is not None
    assert _demote(new_path, a) == 0
    epochs = Epochs.load(journal_dir(old))
    assert epochs.fence is None and epochs.history == ((1, 1), (2, 7))
    assert promotion_checks.journal_last(old) == 6
    kept = list((Path(old.var_dir) / old.instance / "demoted").glob("*/journal/*.journal"))
    assert len(kept) == 1 and kept[0].name == f"{7:020d}.journal"


def test_the_configs_a_failover_cycle_writes_keep_their_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scenario: a.toml primary, b.toml standby; four failovers with the configs each step
    writes (promote: ``<standby>.promoted.toml``, demote: ``<old>.standby.toml``).
    Expected: the names stay as short as after the first cycle (``X.promoted.toml`` and
    ``X.standby.toml`` alternating), the files few.
    Was (fixed): after four, ``a.standby.promoted.standby.promoted.toml`` runs as the primary and
    ``b.promoted.standby.promoted.standby.toml`` as the standby; 17 characters more per two
    failovers, two new files per cycle."""
    p_path, s_path = _pair(tmp_path)
    names: list[tuple[str, str]] = []
    for _ in range(4):
        p_path, s_path, _ = _cycle(p_path, s_path, monkeypatch)
        names.append((p_path.name, s_path.name))
    longest = max(len(n) for pair in names[:2] for n in pair)
    assert all(len(n) <= longest for n in names[-1]), names
    assert names[-1] == ("a.promoted.toml", "b.standby.toml"), names
    assert len(list(tmp_path.glob("*.toml"))) <= 6, sorted(tmp_path.glob("*.toml"))


def test_demote_after_28_failovers_writes_the_standby_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Scenario: README's primary.toml after 28 failovers is
    ``primary{.standby.promoted x14}.toml`` (250 characters); it is fenced and demoted.
    Expected: exit 0 and a standby config to start, or exit 1 naming the path too long.
    Was (fixed): ``OSError: [Errno 36] File name too long`` escapes ``demote`` as a traceback, after
    the journal was cut and the fence lifted, and no standby config is written."""
    old, new_path = _fenced_old(tmp_path, "primary" + ".standby.promoted" * 14)
    assert len(old.name) == 250
    try:
        code = _demote(new_path, old)
    except OSError as exc:
        fence = Epochs.load(journal_dir(load_profile(str(old)))).fence
        pytest.fail(f"demote raised {exc!r}; the fence already lifted: {fence is None}")
    assert code == 0 or "too long" in capsys.readouterr().err
    assert (tmp_path / "primary.standby.toml").exists()  # back to README's name


def test_a_standby_config_demote_cannot_write_is_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A config name with no role suffix to strip, too long once ``.standby`` is added: exit
    1 and one line naming the path, no traceback (the journal is rebuilt meanwhile)."""
    old, new_path = _fenced_old(tmp_path, "x" * 246)
    assert _demote(new_path, old) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{'x' * 246}.standby.toml was not written" in err[0], err
    assert "File name too long" in err[0], err


def test_a_demoted_primary_restarted_by_its_old_config_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scenario: a failover (a promoted, b takes over at epoch 2), ``a`` demoted; before it
    is started as ``a.standby.toml``, its old ``a.toml`` (a unit, a restart by habit) starts
    its router. Expected: refused, as it was while fenced (``JournalFencedError``): only the
    standby config may open the demoted journal. Was (fixed): ``RouterShell`` opens it as a primary,
    in the promoted instance's epoch: two primaries."""
    a, b = _pair(tmp_path)
    old = load_profile(str(a))
    _more(a, 3)
    _follow_to_end(old, load_profile(str(b)), close=True)
    new_path, _ = _promote(a, b, monkeypatch)
    rings = create_rings(old, CODEC)
    try:
        with pytest.raises(JournalFencedError):  # fenced: held
            RouterShell(old)
        assert _demote(new_path, a) == 0
        try:
            router = RouterShell(old)
        except JournalFencedError as exc:
            said = str(exc)
            assert "\n" not in said and str(journal_dir(old) / follow_only.FILE) in said, said
            assert f"ringex run --config {standby_path(str(a))}" in said, said
            return
        router.close()
        pytest.fail(f"the demoted journal opened as a primary at seq {router.applied_seq}")
    finally:
        for ring in rings.values():
            ring.close()
            ring.unlink()


def test_a_retried_demote_names_the_cut_an_interrupted_one_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Scenario: the old primary holds 7..8 never shipped (async); its demote cuts them
    aside, then crashes before lifting the fence; the operator runs it again.
    Expected: one of the two runs says 7..8 were cut and where they are kept
    (``demoted/<time>/journal``), as an uninterrupted demote does.
    Was (fixed): the failed run prints only "demote of ... failed: the host crashed here"; the retry
    prints "journal kept up to seq 6" with no cut line: the kept copy is never named."""
    a, new_path = _fenced_old(tmp_path)
    with monkeypatch.context() as patch:
        patch.setattr(rebuild_module, "_drop_database", _crash)
        assert _demote(new_path, a) == 1
    failed = capsys.readouterr()
    assert _demote(new_path, a) == 0
    said = capsys.readouterr()
    assert "demoted" in said.err or "kept in" in said.out, (said.out, said.err)
    kept = load_profile(str(a))
    aside = next((Path(kept.var_dir) / kept.instance / "demoted").glob("*/journal"))
    assert f"were cut: kept in {aside.parent}" in failed.err, failed.err  # the failed run
    assert f"seqs 7..8 were cut by an earlier demote that did not finish: kept in {aside}" in (
        said.out
    ), said.out  # and the retry
