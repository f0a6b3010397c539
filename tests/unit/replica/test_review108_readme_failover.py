"""Review 108: README.md's "## Hot standby and failover" against the code, part 1 of 2.

Here: the TOML examples and the ``[replication]`` schema's defaults, the listeners, paths and
processes of a standby, the link's timings, the shared block and sync mode's ``SyncGate``,
the epochs' and cluster id's rules, the link's TLS, the files shipped, the named constants,
modules and commands (``failover.py``'s and ``ringex``'s parsers, the Makefile, the failover
bench's targets), ``held.py`` and the promoted profile. Part 2 (``..._failover2.py``) runs
``failover.py``'s promote, status, fence and demote, the source and the standby in-process.

Convention: a plain test is a claim found right; a strict xfail asserts what the README says
where the code does otherwise. Disagreement found (pinned in part 2): "run again on an
instance it already promoted, it does nothing", but ``failover.promote`` rewrites
``<standby>.promoted.toml`` before it looks whether the instance was promoted.
"""

from __future__ import annotations

import ast
import inspect
import io
import logging
import os
import re
import shlex
import ssl
import stat
import sys
import tomllib
import types
from pathlib import Path
from typing import Any

import msgspec
import pytest

from config import load_profile
from config.edges import GatewayConfig, MarketDataConfig, RestConfig
from config.schema import ReplicationConfig, RingexConfig, SupervisorConfig
from procs import cli
from procs.common import replication_ack as ack
from procs.common.epochs import Epochs, EpochsError, JournalFencedError
from procs.common.exec_ids import PROMOTION_SKIP
from procs.common.replication_ack import AckBlock, Doorbell, SyncGate
from procs.common.run_files import run_dir
from procs.common.tls import replication_context
from procs.common.topology import (
    gateway_root,
    journal_archive_dir,
    journal_dir,
    market_state_path,
    postgres_dir,
    snapshot_dir,
)
from procs.gateway.recovery import CATCH_UP_LIMIT
from procs.replica import cluster, rebuild, wire
from procs.replica.files import SHIPPABLE, _place, shipped_files
from procs.replica.source import ReplicationSource
from procs.replica.standby import Standby
from procs.router.main import RouterShell
from procs.supervisor import held, promotion
from procs.supervisor import main as supervisor_main
from procs.supervisor.plan import plan
from procs.supervisor.promotion import begin_epoch
from tests.e2e.test_standby import profile
from tests.readme_text import claim, section
from tests.scripts_loader import ROOT, load_script
from tests.unit.gateway.test_tls import CERT, KEY
from tests.unit.replica.test_review_replica_bugs import append

failover = load_script("failover", "review108")
SECTION = section("Hot standby and failover")


def _cfg(tmp_path: Path, name: str = "r108", **kwargs: Any) -> RingexConfig:
    return RingexConfig(instance=name, var_dir=str(tmp_path / "var"), **kwargs)


def _fields(struct: type) -> set[str]:
    return {f.name for f in msgspec.structs.fields(struct)}


# -- the TOML examples and the [replication] schema -------------------------------------------


def test_both_toml_examples_load_into_the_replication_schema() -> None:
    """``# primary.toml``, ``# standby.toml``: each ``[replication]`` table converts to
    ``ReplicationConfig`` (unknown keys refused) with the values shown."""
    claim("# primary.toml [replication] listen_port = 9900")
    claim('# standby.toml [replication] primary = "primary-host:9900"')
    blocks = {
        block.split("\n", 1)[0].lstrip("# "): tomllib.loads(block)["replication"]
        for block in re.findall(r"```toml\n(.*?)```", SECTION, flags=re.S)
    }
    assert set(blocks) == {"primary.toml", "standby.toml"}
    primary = msgspec.convert(blocks["primary.toml"], ReplicationConfig)
    standby = msgspec.convert(blocks["standby.toml"], ReplicationConfig)
    assert (primary.listen_port, primary.listen_host, primary.mode) == (9900, "0.0.0.0", "sync")
    assert primary.sync_timeout_ms == 1000 and standby.prestart is True
    assert standby.primary_address() == ("primary-host", 9900)
    assert all(getattr(standby, k) for k in ("tls_cert", "tls_key", "tls_ca"))


def test_the_replication_defaults() -> None:
    """The examples' "the default" comments: ``ReplicationConfig``'s ``listen_host``,
    ``mode``, ``sync_timeout_ms`` (0 allowed) and ``prestart`` defaults."""
    claim("# the default, 127.0.0.1, takes a standby on this host only")
    claim('mode = "sync" # or "async" (the default)')
    claim("sync_timeout_ms = 1000 # 0: wait for the standby forever")
    claim("prestart = true # the default")
    claim("`replication.prestart`, on by default for a standby started from a TOML file")
    rep = ReplicationConfig()
    assert (rep.listen_host, rep.listen_port, rep.mode) == ("127.0.0.1", 0, "async")
    assert (rep.sync_timeout_ms, rep.prestart) == (1000, True)
    assert msgspec.convert({"sync_timeout_ms": 0}, ReplicationConfig).sync_timeout_ms == 0
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"sync_timeout_ms": -1}, ReplicationConfig)


def test_link_tls_takes_all_three_or_none() -> None:
    """ "mutual TLS, all three or none": ``ReplicationConfig.__post_init__``."""
    claim("# mutual TLS, all three or none")
    ReplicationConfig(tls_cert="c", tls_key="k", tls_ca="a")
    partial: list[dict[str, Any]] = [{"tls_cert": "c"}, {"tls_key": "k", "tls_ca": "a"}]
    for given in partial:
        with pytest.raises(ValueError, match="all three, or none"):
            ReplicationConfig(**given)


def test_the_listeners_exist_and_clash_only_within_one_config(tmp_path: Path) -> None:
    """The listeners a standby on one host moves are schema fields; "A config is checked for
    clashes within itself only": ``RingexConfig._check_listeners``."""
    claim("another port: `[[gateways]] port` (same `name` and `id`), `[gateways.rest] port`,")
    claim("`[marketdata] port`, `supervisor.metrics_port`, and a `replication.listen_port`")
    claim("A config is checked for clashes within itself only, so two instances given the same")
    assert {"port", "name", "id", "rest"} <= _fields(GatewayConfig)
    assert "port" in _fields(RestConfig) and "port" in _fields(MarketDataConfig)
    assert "metrics_port" in _fields(SupervisorConfig)
    assert "listen_port" in _fields(ReplicationConfig)
    gateways = [GatewayConfig(name="gw", id=1, port=9101)]
    with pytest.raises(ValueError, match="both listen there"):
        _cfg(tmp_path, gateways=gateways, replication=ReplicationConfig(listen_port=9101))
    one = _cfg(tmp_path, "one", gateways=gateways)
    assert one.gateways == _cfg(tmp_path, "two", gateways=gateways).gateways


def test_every_path_is_under_var_instance(tmp_path: Path) -> None:
    """ "every path is under ``var/<instance>/``": ``procs/common/topology.py`` and the run
    and replication block directories."""
    claim("`var_dir` may stay `var`, every path is under `var/<instance>/`")
    cfg = _cfg(tmp_path)
    paths = [
        journal_dir(cfg), journal_archive_dir(cfg), snapshot_dir(cfg, "exchange"),
        gateway_root(cfg), market_state_path(cfg), postgres_dir(cfg), run_dir(cfg),
        ack.ack_dir(cfg.var_dir, cfg.instance),
    ]  # fmt: skip
    assert all(p.is_relative_to(tmp_path / "var" / cfg.instance) for p in paths), paths


def test_a_standby_runs_only_the_standby_process(tmp_path: Path) -> None:
    """ "runs only the standby process", its ``listen_port`` "ignored while it is a standby":
    ``plan`` of a config with ``replication.primary``."""
    claim("`ringex run --config standby.toml` runs only the standby process")
    claim("a `replication.listen_port` of its own (ignored while it is a standby)")
    rep = ReplicationConfig(primary="127.0.0.1:9900", listen_port=9901)
    standby = _cfg(tmp_path, gateways=[GatewayConfig(name="gw", id=1)], replication=rep)
    assert [(p.name, p.args) for p in plan(standby)] == [("standby", ("standby",))]
    promoted = msgspec.structs.replace(standby, replication=ReplicationConfig(listen_port=9901))
    assert "replica-source" in [p.name for p in plan(promoted)]


def test_a_prestarting_standby_by_profile_name_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """ "started by profile name (``--profile NAME``) is refused with exit 2": ``ringex run``
    (``procs/cli.py``) into ``procs.supervisor.main.main``."""
    claim("A standby with `prestart` on started by profile name (`--profile NAME`) is refused")
    claim("is refused with exit 2, its promoted config having no place of its own")
    cfg = _cfg(tmp_path, replication=ReplicationConfig(primary="127.0.0.1:9900"))
    monkeypatch.setattr(cli, "load_profile", lambda name: cfg)
    monkeypatch.setattr(supervisor_main, "load_profile", lambda name: cfg)
    monkeypatch.setattr(supervisor_main, "stop_on_signals", lambda: lambda: False)
    assert cli.main(["run", "--profile", "standby"]) == 2
    assert "(--config)" in capsys.readouterr().err


def test_the_promoted_config_is_the_standbys_without_primary(tmp_path: Path) -> None:
    """ "``standby.promoted.toml`` (the standby's config without ``replication.primary``,
    written beside it)": ``promotion.write_promoted_profile``."""
    claim("running `standby.promoted.toml` (the standby's config without `replication.primary`,")
    path = profile(tmp_path / "standby.toml", "r108s", tmp_path, "[replication]\n")
    path.write_text(path.read_text() + 'primary = "127.0.0.1:1"\nlisten_port = 9931\n')
    promoted = promotion.write_promoted_profile(str(path))
    assert promoted == tmp_path / "standby.promoted.toml"
    cfg, standby = load_profile(str(promoted)), load_profile(str(path))
    assert (cfg.replication.primary, cfg.replication.listen_port) == ("", 9931)
    assert msgspec.structs.replace(cfg, replication=standby.replication) == standby


def test_held_processes_import_then_wait_for_their_word(monkeypatch: pytest.MonkeyPatch) -> None:
    """ "imported and waiting for their word (``procs/supervisor/held.py``": ``held.main``
    runs the module's ``main`` only after ``go``; at end of file it exits 0 unrun."""
    claim("imported and waiting for their word (`procs/supervisor/held.py`;")
    ran: list[list[str]] = []
    module = types.ModuleType("r108_held_target")

    def target(argv: list[str]) -> int:
        ran.append(argv)
        return 0

    module.main = target  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.delenv(held.GRACE_ENV, raising=False)
    monkeypatch.setattr(sys, "argv", ["held", module.__name__, "--x"])
    for word, expected in ((b"", []), (held.GO, [["--x"]])):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(word)))
        assert held.main() == 0 and ran == expected


# -- the link ---------------------------------------------------------------------------------


def test_the_links_timings() -> None:
    """Heartbeat 0.5 s, standby silence 2 s (then a reconnect), primary's patience 10 s:
    ``wire``'s constants, as ``source.py`` and ``standby.py`` use them."""
    claim("An idle primary sends a heartbeat every 0.5 s; a standby that hears nothing for 2 s")
    claim("(a primary host that died sends no FIN) reconnects")
    claim("the primary drops a standby it has not heard from for 10 s (a dead host)")
    assert (wire.HEARTBEAT_S, wire.SILENCE_S, wire.STANDBY_SILENCE_S) == (0.5, 2.0, 10.0)
    assert "_to_standby(writer, Heartbeat())" in inspect.getsource(ReplicationSource._stream)
    assert "STANDBY_SILENCE_S" in inspect.getsource(ReplicationSource._acks)
    assert "receive_within(reader, SILENCE_S)" in inspect.getsource(Standby._follow)
    reconnect = inspect.getsource(Standby._connect_loop)
    assert "except TimeoutError:" in reconnect and "reconnecting" in reconnect


def test_stopping_the_primary_aborts_standby_connections() -> None:
    """ "aborts its standby connections rather than flush": ``ReplicationSource.run``."""
    claim("stopping the primary aborts its standby connections rather than flush to one that")
    body = inspect.getsource(ReplicationSource.run)
    assert "writer.transport.abort()" in body and "writer.close()" not in body


def test_the_gateways_logs_go_before_the_frame_and_are_durable_before_its_ack() -> None:
    """The source ships the logs after its journal read, before the ``Entries``
    (``ReplicationSource._stream``); ``Standby.persist`` syncs them before the journal."""
    claim("the source ships what the logs gained right after it reads a journal frame and")
    claim("before it sends the frame, and the standby fsyncs them before it acknowledges the frame")
    stream = inspect.getsource(ReplicationSource._stream)
    read, sent = stream.index("tail.read(next_seq, BATCH)"), stream.index("Entries(next_seq")
    assert read < stream.index("await _ship(writer, files)", stream.index("finally:", read)) < sent
    persist = inspect.getsource(Standby.persist)
    assert persist.index("self.files.sync()") < persist.index("self.journal.sync()")


# -- the shared block and sync mode -----------------------------------------------------------


def test_acknowledgements_are_published_in_replication_ack(tmp_path: Path) -> None:
    """``BLOCK_FILE`` in ``ack_dir``; ``acknowledged`` rings the router, ``appended`` wakes a
    parked source; the ``lag`` of ``status`` goes to ``replication.json`` and the log."""
    claim("(`var/<instance>/run/replication.ack`, `procs/common/replication_ack.py`)")
    claim("the replication source tails the journal, woken by the router after each journal write")
    claim("the standby's lag is in the source's log and in `var/<instance>/run/replication.json`")
    directory = ack.ack_dir(str(tmp_path), "p")
    assert directory == tmp_path / "p" / "run"
    block = AckBlock(directory)
    try:
        assert block.path == directory / "replication.ack"
        block.acknowledged(7)
        assert block.acked_seq == 7 and block.acked_bell.wait(0)
        block.words[ack.SOURCE_PARKED] = 1
        block.appended(9)
        assert block.words[ack.JOURNAL_SEQ] == 9 and block.appended_bell.wait(0)
        assert block.status()["lag"] == 2
    finally:
        block.close()
    assert "**self.block.status()" in inspect.getsource(ReplicationSource.write_status)
    assert "(lag %d)" in inspect.getsource(ReplicationSource._acks)


def test_the_router_sleeps_on_a_fifo_doorbell(tmp_path: Path) -> None:
    """ "sleeps on a doorbell (a FIFO), not a spin": ``Doorbell`` is a FIFO; ``SyncGate``
    spins only for ``wait.strategy = "busy-spin"`` (default ``blocking``)."""
    claim("sleeps on a doorbell (a FIFO), not a spin")
    bell = Doorbell(tmp_path / "bell")
    try:
        assert stat.S_ISFIFO(os.stat(bell.path).st_mode)
    finally:
        bell.close()
    assert RingexConfig().wait.strategy == "blocking"
    assert 'spin = cfg.wait.strategy == "busy-spin"' in inspect.getsource(RouterShell.__init__)


class _Clock:
    """A monotonic clock that moves ``step`` seconds at each read."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_sync_degrades_loudly_then_resumes_by_itself(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``SyncGate.wait`` past ``sync_timeout_ms`` goes on, sets ``DEGRADED`` and its count,
    logs ``SYNC REPLICATION SUSPENDED`` at ERROR; ``poll`` resumes once all is acked."""
    claim("If no acknowledgement comes within `sync_timeout_ms` the router goes on without")
    claim("it logs `SYNC REPLICATION SUSPENDED` as an error")
    claim("it returns to sync by itself once the standby has everything journaled")
    block = AckBlock(tmp_path)
    try:
        block.appended(5)
        gate = SyncGate(block, timeout_ms=1000, clock=_Clock(0.3))
        with caplog.at_level(logging.ERROR, logger="ringex.replication"):
            assert gate.wait(5) is True
        assert any("SYNC REPLICATION SUSPENDED" in r.getMessage() for r in caplog.records)
        assert (block.status()["degraded"], block.status()["degraded_total"]) == (True, 1)
        block.acknowledged(4)
        assert gate.poll(5) is False and block.words[ack.DEGRADED] == 1
        block.acknowledged(5)
        assert gate.poll(5) is True and block.words[ack.DEGRADED] == 0
    finally:
        block.close()


def test_sync_timeout_zero_never_degrades(tmp_path: Path) -> None:
    """ "With ``sync_timeout_ms = 0`` it never degrades": ``SyncGate(timeout_ms=0)`` waits
    until stopped, whatever the clock, and never sets ``DEGRADED``."""
    claim("With `sync_timeout_ms = 0` it never degrades: while the standby is away, orders wait")
    block = AckBlock(tmp_path)
    calls = iter(range(20))
    try:
        gate = SyncGate(block, timeout_ms=0, clock=_Clock(1000.0))
        assert gate.wait(3, stop=lambda: next(calls, None) is None) is False
        assert block.words[ack.DEGRADED] == block.words[ack.DEGRADED_TOTAL] == 0
    finally:
        block.close()


def test_a_router_restarted_with_zero_keeps_the_degraded_mark(tmp_path: Path) -> None:
    """``SyncGate(timeout_ms=0)`` over a block left ``DEGRADED`` does not go on alone and
    clears the word only once ``ACKED_SEQ`` covers what was journaled."""
    claim("a router restarted with 0 after it degraded keeps the `degraded` mark until the")
    block = AckBlock(tmp_path)
    try:
        block.words[ack.DEGRADED] = 1
        block.acknowledged(3)
        gate = SyncGate(block, timeout_ms=0)
        gate.poll(7)
        assert gate.degraded is False and block.words[ack.DEGRADED] == 1
        block.acknowledged(7)
        gate.poll(7)
        assert block.words[ack.DEGRADED] == 0
    finally:
        block.close()


def test_a_fenced_primary_publishes_nothing_still_waiting(tmp_path: Path) -> None:
    """``SyncGate.wait`` is False once ``FENCED`` is set, degraded or not; ``RouterShell.step``
    looks at the word before it takes a batch."""
    claim("its router then sequences nothing more and publishes nothing still waiting for the")
    block = AckBlock(tmp_path)
    try:
        gate = SyncGate(block, timeout_ms=1, clock=_Clock(1.0))
        assert gate.wait(2)  # degraded: goes on alone
        block.words[ack.FENCED] = 2
        assert gate.wait(3) is False
    finally:
        block.close()
    step = inspect.getsource(RouterShell.step)
    assert step.index("words[FENCED]") < step.index("self._take()")


# -- epochs and the cluster id ----------------------------------------------------------------


def test_epochs_live_in_journal_epochs_json(tmp_path: Path) -> None:
    """``var/<instance>/journal/epochs.json``: ``Epochs.save``/``load``, ``known`` kept."""
    claim("**Epochs** (`procs/common/epochs.py`, `var/<instance>/journal/epochs.json`)")
    cfg = _cfg(tmp_path)
    Epochs(((1, 1), (2, 5)), known=3).save(journal_dir(cfg))
    assert (journal_dir(cfg) / "epochs.json").is_file()
    assert Epochs.load(journal_dir(cfg)) == Epochs(((1, 1), (2, 5)), known=3)


def test_a_promotion_starts_its_epoch_at_the_journals_next_seq(tmp_path: Path) -> None:
    """ "a new epoch at the journal's next seq": ``begin_epoch`` over seqs 1..4 begins at 5."""
    claim("each promotion starts a new epoch at the journal's next seq")
    cfg = _cfg(tmp_path)
    append(cfg, 1, 4)
    assert begin_epoch(cfg, 2) == 5
    assert Epochs.load(journal_dir(cfg)).history == ((1, 1), (2, 5))


def test_a_fenced_journal_is_not_promoted_to_the_fencing_epoch(tmp_path: Path) -> None:
    """``begin_epoch`` refuses the fence's epoch, not one past it."""
    claim("A fenced journal cannot be promoted to the epoch that fenced it")
    cfg = _cfg(tmp_path)
    append(cfg, 1, 2)
    Epochs().fenced(3, "other").save(journal_dir(cfg))
    with pytest.raises(EpochsError, match="fenced"):
        begin_epoch(cfg, 3)
    assert begin_epoch(cfg, 4) == 3


def test_no_promotion_to_an_epoch_the_primary_began_past_the_standby(tmp_path: Path) -> None:
    """``known``: ``Epochs.promoted`` refuses an epoch at or below it; so does
    ``begin_epoch`` of an epoch that began past the journal's end."""
    claim("nor a standby to an epoch its primary began past what the standby holds yet (`known`")
    with pytest.raises(EpochsError, match="began epoch 3 already"):
        Epochs(known=3).promoted(3, 10)
    assert Epochs(known=3).promoted(4, 10).history[-1] == (4, 10)
    cfg = _cfg(tmp_path)
    append(cfg, 1, 2)
    Epochs(((1, 1), (3, 9))).save(journal_dir(cfg))
    with pytest.raises(EpochsError):
        begin_epoch(cfg, 3)


def test_a_fenced_journal_refuses_a_router() -> None:
    """``Epochs.check_open`` raises ``JournalFencedError``; ``RouterShell`` calls it first."""
    claim("its router refuses to open a journal marked fenced (whoever restarts it: a supervisor,")
    Epochs().check_open(Path("j"))
    with pytest.raises(JournalFencedError, match=r"failover\.py demote"):
        Epochs().fenced(2, "b").check_open(Path("j"))
    init = inspect.getsource(RouterShell.__init__)
    assert init.index("check_open(") < init.index("recover(")


def test_demote_cuts_what_was_written_after_the_new_epoch_began() -> None:
    """``Epochs.keep_before``: epoch 2 from seq 7 keeps up to 6 of an epoch-1 journal."""
    claim("cuts from the old journal what was written after the new epoch began")
    promoted = Epochs(((1, 1), (2, 7)))
    assert Epochs().keep_before(promoted) == 6 and promoted.keep_before(promoted) is None


def test_the_cluster_id_lives_in_journal_cluster(tmp_path: Path) -> None:
    """``var/<instance>/journal/cluster``: ``cluster.load_or_make`` makes and keeps it."""
    claim("(`procs/replica/cluster.py`, `var/<instance>/journal/cluster`: an id the first primary")
    directory = journal_dir(_cfg(tmp_path))
    assert cluster.load(directory) == ""
    made = cluster.load_or_make(directory)
    assert (directory / "cluster").read_text() == made and len(made) == 32
    assert cluster.load_or_make(directory) == made


def test_ids_are_said_first_and_compared_only_when_said() -> None:
    """``Hello`` and ``EpochHistory`` carry ``cluster``; ``cluster.differ`` names another id,
    and is None where either side says ""."""
    claim("both sides first say which replicated history they belong to")
    claim("a standby refuses a primary of another id. An id not said")
    claim("(a peer of an older build, a standby that has followed nobody since) is not compared")
    assert {"cluster", "epoch"} <= set(wire.Hello.__struct_fields__)
    assert {"cluster", "epochs"} <= set(wire.EpochHistory.__struct_fields__)
    assert "another replicated history" in (cluster.differ("primary", "a" * 32, "b") or "")
    assert cluster.differ("primary", "", "b") is None and cluster.differ("s", "a", "") is None


def test_the_digests_question_names_a_few_dozen_seqs() -> None:
    """ "history hashes at a few dozen seqs at a time": ``wire.MAX_DIGESTS`` bounds one."""
    claim("it asks the primary for its history hashes at a few dozen seqs at a time")
    assert 24 <= wire.MAX_DIGESTS <= 96
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert([list(range(wire.MAX_DIGESTS + 1))], wire.AskDigests)


def test_a_cut_brings_archived_segments_back_first() -> None:
    """``rebuild._rebuild`` cuts with ``journal_archive_dir``, which ``cut_after`` takes."""
    claim("A cut before segments archived since (an old primary that went on past the promotion")
    claim("moves them back from the archive first")
    assert "archive=journal_archive_dir(cfg)" in inspect.getsource(rebuild._rebuild)


# -- the link's security, the files shipped ---------------------------------------------------


def test_tls_none_or_mutual() -> None:
    """No ``tls_*``: ``replication_context`` is None (plain TCP); all three: both sides
    ``CERT_REQUIRED`` against ``tls_ca``."""
    claim("without `replication.tls_cert`, `tls_key` and `tls_ca` it authenticates no one")
    claim("Give both sides certificates of one private CA (all three keys, on the primary and")
    assert replication_context(ReplicationConfig(), server=True) is None
    rep = ReplicationConfig(tls_cert=CERT, tls_key=KEY, tls_ca=CERT)
    for server in (True, False):
        context = replication_context(rep, server=server)
        assert context is not None and context.verify_mode == ssl.CERT_REQUIRED


def test_the_gateways_state_files_are_shipped_and_session_stores_not(tmp_path: Path) -> None:
    """``shipped_files``, ``_place`` (``units.json`` in the journal's); no session store."""
    claim("each sent before its snapshot), and each gateway's order log, ClOrdID log, REST "
          "clientOrderId log (`api_ids.log`) and ExecID mark")  # fmt: skip
    claim("(`exec-ids`), written under the standby's `var/<instance>/gateway/` (and the journal's")
    claim("session stores are not shipped, so both sides start again at 1")
    cfg = _cfg(tmp_path, gateways=[GatewayConfig(name="gw", id=1)])
    order = shipped_files(cfg)  # each log before its snapshot (change_log)
    names = set(order)
    assert {"users.json", "apikeys.json", "units.json", "gw/orders.log"} <= names
    assert order.index("users.log") < order.index("users.json") < order.index("apikeys.log")
    assert {"gw/clordids.log", "gw/api_ids.log", "gw/exec-ids"} <= names
    assert not [n for n in names if "sessions" in n]
    assert SHIPPABLE.fullmatch("gw/sessions/CLIENT/seqnums") is None
    root = gateway_root(cfg)
    assert _place(root, "gw/orders.log") == root / "gw" / "orders.log"
    assert _place(root, "units.json") == journal_dir(cfg) / "units.json"


def test_the_named_numbers() -> None:
    """ "2^32 past the copy": ``PROMOTION_SKIP`` (applied by ``begin_epoch``); "over 500k
    commands": ``procs/gateway/recovery.py``'s ``CATCH_UP_LIMIT``."""
    claim("the promotion moves each mark 2^32 past the copy")
    claim("or the gap is over 500k commands, it corrects its orders from the books")
    assert PROMOTION_SKIP == 2**32 and "skip_exec_ids(cfg)" in inspect.getsource(begin_epoch)
    assert CATCH_UP_LIMIT == 500_000


def test_the_named_modules_exist() -> None:
    """Every ``procs/...`` and ``tests/...`` file the section names exists."""
    named = set(re.findall(r"`((?:procs|tests)/[\w/]+\.py)`", SECTION))
    assert {"procs/supervisor/promotion.py", "procs/marketdata/reseed.py"} <= named
    assert len(named) >= 10 and all((ROOT / path).is_file() for path in named), named


# -- the commands -----------------------------------------------------------------------------


def _failover_args(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> dict[str, object]:
    """What ``scripts/failover.py``'s own parser makes of ``argv`` (``_act`` not run)."""
    seen: dict[str, object] = {}
    monkeypatch.setattr(failover, "_act", lambda ap, args: seen.update(vars(args)) or 0)
    monkeypatch.setattr(sys, "argv", ["failover.py", *argv])
    assert failover.main() == 0
    return seen


def test_the_failover_commands_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``sh`` block's three lines, ``--force``, ``--new-address`` and ``demote --old
    standby.toml --new primary.toml``: ``failover.py``'s argument parser."""
    claim("scripts/failover.py demote --old primary.toml --new standby.promoted.toml")
    claim("(`--force` promotes anyway, but never the last)")
    claim("(`--new-address host:port` on two hosts)")
    claim("run `demote --old standby.toml --new primary.toml`")
    lines = re.findall(r"^\.venv/bin/python scripts/failover\.py .*$", SECTION, flags=re.M)
    assert len(lines) == 3
    for argv in [shlex.split(line)[2:] for line in lines] + [
        ["promote", "--primary", "p", "--standby", "s", "--force"],
        ["demote", "--old", "standby.toml", "--new-address", "h:9900"],
    ]:
        args = _failover_args(monkeypatch, argv)
        assert args["action"] == argv[0]
        for flag, value in zip(argv[1::2], [*argv[2::2], True], strict=False):
            assert args[flag.lstrip("-").replace("-", "_")] == value


def test_ringex_run_takes_config_and_profile() -> None:
    """``ringex run --config FILE`` / ``--profile NAME``: ``procs/cli.py``'s parser."""
    claim("Started with `ringex run --config primary.standby.toml`")
    claim("started by profile name (`--profile NAME`)")
    parser = cli.build_parser()
    for file in ("standby.toml", "primary.standby.toml"):
        assert parser.parse_args(["run", "--config", file]).config == file
    assert parser.parse_args(["run", "--profile", "NAME"]).profile == "NAME"


def test_make_bench_failover_and_its_targets() -> None:
    """The Makefile target; ``bench_failover.py``'s ``TARGETS``, defaults and verdict."""
    claim("`make bench-failover` (`tests/bench/bench_failover.py`)")
    claim("writes `var/bench/failover.json`")
    claim("best of 2 rounds")
    claim("target >= 0.7x met in every run")
    claim("(target 2 s)")
    claim("1,000 orders/s the order->ack p50")
    claim('its offered `--max-rate`, else it is a ratio of two offers and says "not judged"')
    recipe = re.search(r"^bench-failover:.*\n\t(.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert recipe is not None and "tests.bench.bench_failover" in recipe.group(1)
    source = (ROOT / "tests/bench/bench_failover.py").read_text()
    targets = re.search(r"^TARGETS = (\{.*\})$", source, flags=re.M)
    assert targets is not None
    assert ast.literal_eval(targets.group(1)) == {"sync throughput / off": 0.7, "failover s": 2.0}
    defaults = {
        str(node.args[0].value): ast.literal_eval(kw.value)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument"
        and isinstance(node.args[0], ast.Constant)
        for kw in node.keywords if kw.arg == "default"
    }  # fmt: skip
    assert defaults["--out"] == "var/bench/failover.json" and defaults["--rounds"] == 2
    assert defaults["--rate"] == 1_000 and "--max-rate" in defaults and "not judged" in source


def test_several_standbys_are_not_yet() -> None:
    """ "Not yet: several standbys.": ``source.py`` serves any that connect, its acked seq the
    latest any reported ("One standby is the model"): the README's limit stands."""
    claim("Not yet: several standbys.")
    from procs.replica import source  # noqa: PLC0415

    assert "One standby is the model" in " ".join((source.__doc__ or "").split())
