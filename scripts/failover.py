"""Operator failover between a primary and its hot standby.

    python scripts/failover.py status  --primary P.toml --standby S.toml
    python scripts/failover.py promote --primary P.toml --standby S.toml
    python scripts/failover.py demote  --old P.toml --new S.promoted.toml [--new-address H:P]

``status``: both journals' last seq and epoch (and fence), the standby's lag and whether
their history hashes agree, the primary's replication status (mode, acknowledged seq,
whether sync mode is degraded) and whether the standby holds its promotion prestarted.
``promote``: refuse a standby whose config's units are not the journal's (``units.json``,
shipped to it), doing nothing, and (unless ``--force``) one whose config names no primary
(no standby's), whose journal is empty beside the primary's, diverged from it, is fenced
(an old primary: demote it), or lacks seqs a sync primary acknowledged (its block says the
standby acknowledged more, or that it went on without it, degraded); the checks are
``procs/supervisor/promotion_checks.py``;
then fence the old primary (SIGKILL its supervisor and every process it ran, from its status
file, and mark its journal fenced by the new epoch, so whatever restarts it cannot sequence:
two primaries must never accept orders at once), then promote the standby.
Its supervisor holds the promoted instance's processes, started and imported
(``procs/supervisor/promotion.py``): told to promote (a request file, then SIGUSR1), it
stops the standby process (a clean stop: it writes snapshots of its hot state, so nothing is
replayed), starts the new epoch in the journal (``procs.common.epochs``) and releases them.
A standby started without that (``replication.prestart = false``) is stopped instead, and a
new supervisor (started first, so that it and the instance's processes import while the fence
and the standby's stop happen) starts the instance once told to go and once the standby's
supervisor has exited. Either way the instance runs ``<name>.promoted.toml`` (the standby's
config without ``replication.primary``, written beside it). Prints each step's time. Two
hosts need the fencing done by the operator's own means (power, network) before this runs on
the standby host; the epoch then fences the old primary when it meets a standby of the new one.

``demote``: rebuild the stopped old primary as the promoted instance's standby
(``procs.replica.rebuild``): ask the promoted instance for its epochs (``--new-address``, or
its config's replication port on this host), cut and keep aside what the old primary wrote
after the new epoch began, set aside the state derived from it, mark the journal follow-only
(its router refuses it; its standby removes the mark) in place of the fence, and write
``<name>.standby.toml`` (its config, following the promoted instance; ``<name>`` without a
trailing ``.standby`` or ``.promoted``, as ``promote`` names its file) to start it with.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from config import load_profile
from config.fields import address_refused, host_and_port
from config.loader import ConfigError
from config.refused_value import cut_values
from config.schema import RingexConfig
from procs.common import follow_only
from procs.common.epochs import Epochs
from procs.common.run_files import read_json, read_status, run_dir, supervisor_running
from procs.supervisor import promotion
from procs.supervisor.promotion_checks import (
    diverged,
    fees_refused,
    journal_path,
    not_a_standby,
    units_differ,
    unsafe,
)
from shm.liveness import pid_alive, process_start

STOP_TIMEOUT_S = 60.0  # how long the new supervisor waits for the standby's to exit
READY_TIMEOUT_S = 120.0
GO = b"fenced\n"  # promote's word to its supervisor process


def journal_state(cfg: RingexConfig) -> tuple[int, str]:
    """The journal's last seq and history hash (imports here: promote needs none of it);
    the hash is "" where the journal's first segments are gone from its archive too, and
    the line printed says so (review 75: a traceback ended ``status``)."""
    from procs.common.journal import JournalArchivedError, JournalReader  # noqa: PLC0415
    from procs.common.journal_history import HistoryChain  # noqa: PLC0415
    from procs.common.record_codec import RecordCodec  # noqa: PLC0415
    from procs.common.topology import journal_archive_dir, journal_dir  # noqa: PLC0415
    from procs.replica.wire import ARCHIVE_KEPT, GENESIS  # noqa: PLC0415

    codec = RecordCodec()
    directory = journal_dir(cfg)
    if not directory.exists():
        return 0, GENESIS.hex()
    reader = JournalReader(
        directory,
        slot_size=codec.slot_size,
        schema_id=codec.journal_schema_id,
        archive=journal_archive_dir(cfg),
    )
    last = reader.last_seq()
    try:  # from the history chain's newest key: a block of entries at most
        history = HistoryChain(directory).history_before(reader, last + 1)
    except JournalArchivedError as exc:
        print(f"{cfg.instance}: no history hash ({exc}; {ARCHIVE_KEPT})")
        return last, ""
    return last, history.digest().hex()


def status(primary: RingexConfig, standby: RingexConfig) -> int:
    p_seq, p_hash = journal_state(primary)
    s_seq, s_hash = journal_state(standby)
    p_epochs, s_epochs = epochs_text(primary), epochs_text(standby)
    print(f"primary {primary.instance}: journal at seq {p_seq}, {p_epochs}")
    print(f"standby {standby.instance}: journal at seq {s_seq} (lag {p_seq - s_seq}), {s_epochs}")
    rep = read_json(run_dir(primary) / "replication.json") or {}
    source, started = rep.get("pid"), rep.get("started")
    # by its pid and start time: a pid reused since (a reboot) is not the source (review 52;
    # a file without the start time, an older source's, cannot say, and reads as down)
    alive = (isinstance(source, int) and source > 0 and pid_alive(source)
             and started is not None and process_start(source) == started)  # fmt: skip
    if rep and not alive:
        print(f"the primary's replication source is down (its last state: standby acknowledged "
              f"seq {rep.get('acked_seq')})")  # fmt: skip
    elif rep:
        state = "DEGRADED (going on without the standby)" if rep["degraded"] else "ok"
        print(f"replication {rep['mode']}: standby acknowledged seq {rep['acked_seq']}, "
              f"{rep['standbys_connected']} connected, {state}, "
              f"degraded {rep['degraded_total']} time(s)")  # fmt: skip
    doc = read_status(standby)
    held = supervisor_running(doc) and (doc or {}).get("prestarted")
    print(f"standby's promotion: {'prestarted (held)' if held else 'not prestarted'}")
    agree = p_seq == s_seq and p_hash == s_hash != ""
    if agree:
        print("histories agree")
    elif at := diverged(primary, standby):  # not a lag: another history from seq ``at`` on
        print(f"histories differ at seq {at}: the standby holds entries the primary does not "
              "(a journal tail the primary lost in a host crash, its seqs given to other "
              "commands); stop the standby and rebuild it: scripts/failover.py demote "
              f"--old <standby config> --new <primary config>")  # fmt: skip
    elif not (p_hash and s_hash):
        print("histories not compared (a journal's first segments are gone, above)")
    else:
        print("histories differ (or the standby lags)")
    return 0 if agree else 1


def epochs_text(cfg: RingexConfig) -> str:
    """``epoch N (since seq S)``, and the fence if there is one."""
    epochs = Epochs.load(journal_path(cfg))
    epoch, since = epochs.history[-1]
    text = f"epoch {epoch} (since seq {since})"
    if epochs.fence is not None:
        text += f", FENCED by epoch {epochs.fence.epoch} ({epochs.fence.by})"
    if follow_only.marked(journal_path(cfg)):  # demoted: no router opens it (review 310)
        text += ", follow-only (demoted: its standby removes the mark)"
    return text


def instance_pids(cfg: RingexConfig) -> list[int]:
    """The live processes ``cfg``'s status file names (its supervisor first), only while
    that supervisor runs (its start time checked: a pid is reused after a reboot or long
    after a stop); its processes die with it (``PR_SET_PDEATHSIG``), so none is left then."""
    doc = read_status(cfg)
    supervisor = supervisor_running(doc)
    if supervisor is None or doc is None:
        return []
    pids = [p.get("pid") for p in doc.get("processes", [])]
    live = [pid for pid in pids if isinstance(pid, int) and pid > 0 and pid_alive(pid)]
    return [supervisor, *live]


def fence(cfg: RingexConfig, epoch: int, by: str) -> None:
    """Kill every process of ``cfg``'s instance that its status file names, and mark its
    journal fenced by ``epoch`` where this host can reach it (a restarted router refuses it).
    A router still running (one no status file names: systemd units, or started by hand)
    is stopped through its replication block: it sequences nothing once ``FENCED`` is set."""
    from procs.common.replication_ack import BLOCK_FILE, FENCED, AckBlock, ack_dir  # noqa: PLC0415

    marked = ""
    directory = journal_path(cfg)
    if directory.is_dir():  # first: a router restarted after the kill finds it
        Epochs.load(directory).fenced(epoch, by).save(directory)
        marked = f", journal fenced by epoch {epoch}"
    block_dir = ack_dir(cfg.var_dir, cfg.instance)
    if (block_dir / BLOCK_FILE).exists():  # a running router reads it every step
        block = AckBlock(block_dir)
        block.words[FENCED] = epoch
        block.acked_bell.ring()  # a router waiting on its standby looks now
        block.close()
        marked += ", replication block fenced"
    pids = instance_pids(cfg)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    print(f"fenced {cfg.instance}: {len(pids)} process(es) killed{marked}")


def promote(primary_path: str, standby_path: str, *, force: bool = False) -> int:
    started = time.monotonic()

    def step(what: str) -> None:
        print(f"  {time.monotonic() - started:5.2f} s  {what}")

    primary, standby = load_profile(primary_path), load_profile(standby_path)
    if journal_path(primary).resolve() == journal_path(standby).resolve():
        print(f"--primary and --standby both name instance {standby.instance} (its journal "
              f"{journal_path(standby)}): nothing done", file=sys.stderr)  # fmt: skip
        return 1
    promoted = promotion.promoted_path(standby_path)  # written once nothing refuses (below)
    doc = read_status(standby) or {}
    old = supervisor_running(doc) or 0
    if old and doc.get("role") == "primary":  # a retry: promoting it again would restart it
        print(f"{standby.instance} already runs as a primary (supervisor pid {old}): nothing done")
        return 0
    if doc.get("role") == "primary":  # promoted before, stopped since: not a second epoch
        print(f"{standby.instance} was promoted already and is stopped: nothing done; start it "
              f"with `ringex run --detach --config {promoted}`")  # fmt: skip
        return 0
    if not force and (at := diverged(primary, standby)):
        print(f"{standby.instance}'s journal differs from {primary.instance}'s at seq {at}: "
              "promoting it would lose what the primary acknowledged after that; nothing done "
              "(--force promotes it anyway)", file=sys.stderr)  # fmt: skip
        return 1
    if not force and (why := not_a_standby(primary, standby) or unsafe(primary, standby)):
        print(f"{standby.instance} cannot be promoted safely: {why}; nothing done (--force "
              "promotes it anyway)", file=sys.stderr)  # fmt: skip
        return 1
    refused = units_differ(primary, standby)  # before the fence: else no primary at all
    if not refused and not force and (refused := fees_refused(standby)):
        refused += " (--force promotes anyway)"
    if refused:
        print(f"{standby.instance} cannot be promoted: {refused}; nothing done", file=sys.stderr)
        return 1
    # only now: a run that does nothing leaves the promoted instance's config, edits and
    # all (its listen_port, say), as it is (review 108)
    promotion.write_promoted_profile(standby_path)
    # past every epoch either journal knows, its fence's included (a fenced journal's
    # promotion must not reuse the epoch that fenced it) and those a standby was told of
    epoch = 1 + max(
        max(e.current, e.known, e.fence.epoch if e.fence is not None else 0)
        for e in (Epochs.load(journal_path(standby)), Epochs.load(journal_path(primary)))
    )
    if old and doc.get("prestarted") and doc.get("role") == "standby":
        fence(primary, epoch, standby.instance)
        step("old primary fenced")
        if not force and lost_once_fenced(primary, standby):
            return 1
        promotion.request(standby, old, epoch)  # only now: two primaries must never run
        os.kill(old, signal.SIGUSR1)
        step(f"standby's supervisor (pid {old}) told to promote; its processes are prestarted")
        return _tidied(primary, step, await_promoted(standby, promoted, old, started, step))
    logs = run_dir(standby) / "supervisor.log"
    logs.parent.mkdir(parents=True, exist_ok=True)
    with open(logs, "ab") as out:  # it imports, then waits for the standby to be gone
        child = subprocess.Popen(
            [sys.executable, __file__, "supervise", "--profile", str(promoted),
             "--after-pid", str(old), "--epoch", str(epoch)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.PIPE,
            start_new_session=True,
        )  # fmt: skip
    assert child.stdin is not None
    fence(primary, epoch, standby.instance)
    step("old primary fenced")
    if not force and lost_once_fenced(primary, standby):
        child.stdin.close()  # no GO: it ends without starting anything
        return 1
    child.stdin.write(GO)  # only now: two primaries must never accept orders at once
    child.stdin.close()
    if old:
        os.kill(old, signal.SIGTERM)  # the standby stops cleanly, writing its snapshots
    step(f"standby told to stop; the new supervisor (pid {child.pid}) waits for it")
    code = await_promoted(standby, promoted, child.pid, started, step, child)
    return _tidied(primary, step, code)


def _tidied(primary: RingexConfig, step: Callable[[str], None], code: int) -> int:
    """``code``; promoted, the fenced primary's embedded PostgreSQL (on this host) stopped:
    its writer, killed, left it running, and ``ringex stop`` finds no instance to stop."""
    from procs.common.embedded_postgres import EmbeddedError, EmbeddedPostgres  # noqa: PLC0415
    from procs.common.topology import postgres_dir  # noqa: PLC0415

    if code == 0 and primary.database.enabled and not primary.database.dsn:
        try:  # (off the promotion's clock: it runs already)
            cluster = EmbeddedPostgres(postgres_dir(primary))
            if cluster.running():
                cluster.stop("immediate", timeout_s=10)
                step(f"the old primary's embedded database stopped ({cluster.data})")
        except (EmbeddedError, OSError) as exc:
            print(f"  the old primary's embedded database was not stopped: {exc}")
    return code


def lost_once_fenced(primary: RingexConfig, standby: RingexConfig) -> bool:
    """The checks of ``diverged`` and ``unsafe`` again, once the primary is fenced: until the
    fence landed a running primary could still acknowledge seqs (a sync one degraded
    meanwhile, say, while the standby's state was read), and only now is what it answered
    final (review 182). True, with what was found said, when the standby must not go on: the
    primary stays fenced, and a promote run again once the standby holds those seqs (or with
    ``--force``) goes on."""
    at = diverged(primary, standby)
    why = (
        f"its journal differs from {primary.instance}'s at seq {at}" if at
        else unsafe(primary, standby)
    )  # fmt: skip
    if why:
        print(f"{standby.instance} cannot be promoted safely once {primary.instance} is "
              f"fenced: {why}; {primary.instance} stays fenced (it accepts nothing), the "
              "standby is not promoted: run promote again once it holds those seqs (--force "
              "promotes it anyway)", file=sys.stderr)  # fmt: skip
    return bool(why)


def await_promoted(
    standby: RingexConfig,
    promoted: Path,
    supervisor: int,
    started: float,
    step: Callable[[str], None],
    child: subprocess.Popen[bytes] | None = None,
) -> int:
    """Wait until ``supervisor`` runs the instance as a primary."""
    logs = run_dir(standby) / "supervisor.log"
    deadline = time.monotonic() + READY_TIMEOUT_S
    standby_seen = True
    while time.monotonic() < deadline:
        doc = read_status(standby) or {}
        if standby_seen and (doc.get("role") != "standby" or doc.get("state") == "stopped"):
            standby_seen = False
            step("standby stopped")
        if (
            doc.get("supervisor_pid") == supervisor
            and doc.get("role") == "primary"
            and doc.get("state") == "running"
        ):
            step(f"promoted instance running ({promoted})")
            print(f"promoted {standby.instance} in {time.monotonic() - started:.2f} s")
            return 0
        ended = child.poll() if child is not None else (None if pid_alive(supervisor) else -1)
        if ended is not None:
            print(f"the promoted instance did not start (exit {ended}): see {logs}",
                  file=sys.stderr)  # fmt: skip
            return 1
        time.sleep(0.01)
    print(f"the promoted instance was not running within {READY_TIMEOUT_S} s", file=sys.stderr)
    return 1


def supervise(profile: str, after_pid: int, epoch: int) -> int:
    """The promoted instance's supervisor, started at once: its processes import (held)
    while the fence and the standby's stop happen. It goes on once ``promote`` says go (the
    old primary is fenced: without that word, nothing starts) and ``after_pid`` has exited
    (until then the standby's supervisor holds the instance's lock, which this one takes
    after ``go``), in the new ``epoch``, begun with the lock held at the journal's next seq."""
    from procs.supervisor.main import main as supervisor_main  # noqa: PLC0415  (the point)

    def go() -> bool:
        if sys.stdin.buffer.read(len(GO)) != GO:
            print("promote ended before fencing the old primary: not starting", file=sys.stderr)
            return False
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while after_pid and pid_alive(after_pid) and time.monotonic() < deadline:
            time.sleep(0.005)
        return True

    def begin() -> bool:
        try:
            first = promotion.begin_epoch(load_profile(profile), epoch)
        except (OSError, ValueError) as exc:  # EpochsError is a ValueError
            print(f"the new epoch could not be written: {exc}: not starting", file=sys.stderr)
            return False
        print(f"epoch {epoch} begins at seq {first}", flush=True)
        return True

    return supervisor_main(["--profile", profile], go, begin, successor=True)


def demote(old_path: str, new_path: str, new_address: str) -> int:
    """Rebuild the stopped old primary as the promoted instance's standby."""
    from procs.common.epochs import EpochsError  # noqa: PLC0415
    from procs.common.journal import JournalError  # noqa: PLC0415
    from procs.common.tls import replication_context  # noqa: PLC0415
    from procs.replica.demoted import Rebuilt  # noqa: PLC0415
    from procs.replica.rebuild import agreed_seq, ask_primary, rebuild  # noqa: PLC0415

    old = load_profile(old_path)
    if live := instance_pids(old):
        print(f"{old.instance} still runs (pids {live}): stop it first", file=sys.stderr)
        return 1
    if not new_address:
        rep = load_profile(new_path).replication
        if not rep.listen_port:
            print(f"{new_path} serves no replication (replication.listen_port is 0): give it a "
                  "port and restart it, or pass --new-address", file=sys.stderr)  # fmt: skip
            return 1
        host = "127.0.0.1" if rep.listen_host in ("", "0.0.0.0", "::") else rep.listen_host
        new_address = f"[{host}]:{rep.listen_port}" if ":" in host else f"{host}:{rep.listen_port}"
    host, port = host_and_port(new_address)
    if refused := address_refused(host, port):  # (argparse's status for a bad option)
        print(f"--new-address {cut_values(repr(new_address))}{refused}", file=sys.stderr)
        return 2
    try:
        epochs, cluster_id = ask_primary(
            host, int(port), tls=replication_context(old.replication, server=False)
        )
    except (OSError, TimeoutError, EpochsError, ValueError, JournalError) as exc:
        print(f"demote of {old.instance} failed: {exc}", file=sys.stderr)
        return 1
    agreed, unsure = None, ""
    try:  # where its journal stops agreeing with the primary's: a standby ahead of a primary
        agreed = agreed_seq(old, host, int(port))  # that lost a tail it had shipped
    except (OSError, TimeoutError, EOFError, ValueError, EpochsError, JournalError) as exc:
        # unreachable, closed, a frame it cannot read (an older primary): nothing cut yet
        unsure = f"its journal was not compared with the primary's ({exc!r}): epochs alone cut it"
    standby = promotion.standby_path(old_path)
    done = Rebuilt.begun(Path(old.var_dir) / old.instance)
    try:
        rebuild(old, epochs, agreed, cluster_id, primary_at=new_address,
                standby_config=str(standby), done=done)  # fmt: skip
    except (OSError, TimeoutError, EpochsError, ValueError, JournalError) as exc:
        print(f"demote of {old.instance} failed: {exc}", file=sys.stderr)
        for line in done.report():  # what it did before: a retry goes on from there
            print(line, file=sys.stderr)
        return 1
    if unsure:
        done.warnings.append(unsure)
    print(f"{old.instance}: journal kept up to seq {done.kept_seq}; the promoted instance "
          f"({new_address}) is at epoch {epochs.current}")  # fmt: skip
    for line in done.report():
        print(line)
    try:
        promotion.write_standby_profile(old_path, new_address)
    except OSError as exc:  # a name too long, a directory not writable: no traceback
        print(f"the standby config {standby} was not written ({exc}); its journal is "
              "rebuilt: write it by hand, the old config with replication.primary = "
              f"{new_address!r}", file=sys.stderr)  # fmt: skip
        return 1
    print(f"start it as the standby: ringex run --config {standby}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "action",
        choices=["status", "promote", "demote", "supervise"],
        help="status, promote or demote (supervise is promote's own step, not an operator's)",
    )
    ap.add_argument("--primary", help="the primary's config file")
    ap.add_argument("--standby", help="the standby's config file")
    ap.add_argument("--old", help="demote: the old primary's config file")
    ap.add_argument("--new", help="demote: the promoted instance's config file")
    ap.add_argument("--new-address", default="", help="demote: its replication host:port")
    ap.add_argument(
        "--force",
        action="store_true",
        help="promote: even a standby that diverged, is fenced, or lacks seqs a sync "
        "primary acknowledged",
    )
    ap.add_argument("--profile", help=argparse.SUPPRESS)  # supervise: promote's own step
    ap.add_argument("--after-pid", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--epoch", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    try:
        return _act(ap, args)
    except ConfigError as exc:  # as every `ringex` command says it: one line, exit 2
        print(f"failover: {exc}", file=sys.stderr)
        return 2


def _act(ap: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.action == "supervise":
        return supervise(args.profile, args.after_pid, args.epoch)
    if args.action == "demote":
        if not (args.old and (args.new or args.new_address)):
            ap.error("demote needs --old and --new (or --new-address)")
        return demote(args.old, args.new, args.new_address)
    if not (args.primary and args.standby):
        ap.error(f"{args.action} needs --primary and --standby")
    if args.action == "status":
        return status(load_profile(args.primary), load_profile(args.standby))
    return promote(args.primary, args.standby, force=args.force)


if __name__ == "__main__":
    sys.exit(main())
