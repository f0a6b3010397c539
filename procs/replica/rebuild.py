"""Rebuilding an old primary as the standby of the instance promoted in its place.

``failover.py demote`` runs this on the old primary's host once its processes are gone. The
promoted instance's epochs (asked over its replication port: ``ask_epochs``) say where the
two journals part: the old primary keeps every entry before the promoted epoch's first seq
(``Epochs.keep_before``). What it wrote from there on was never replicated, so it is cut
from the journal, but kept for the operator as a journal of its own under
``var/<instance>/demoted/<stamp>/journal``. Everything derived from the journal that may
cover the cut entries is set aside there too: snapshots newer than the kept seq, the
gateways' state (the standby is shipped the promoted instance's), the market data state and
the replication block (which holds the fence), and the old run's status file. The embedded
database is removed (the database is derived from the journal: a promoted writer rebuilds
it); an external one is left to the operator, with a warning. Last, the journal is marked
follow-only (``procs.common.follow_only``: a router refuses it, a standby takes it and removes the
mark once its primary has checked its history) and then the journal takes the promoted
instance's epoch history, unfenced: the instance starts as a standby, and its Hello's
history hash proves that what it kept is the promoted instance's prefix. What it set aside
is said (``demoted.py``), also by a rebuild that fails midway, and the next one names a cut
the failed one left.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import ssl
from pathlib import Path

from config.schema import RingexConfig
from procs.common import follow_only
from procs.common.durable import make_dirs
from procs.common.embedded_postgres import EmbeddedError, EmbeddedPostgres
from procs.common.epochs import Epochs, EpochsError
from procs.common.journal import DirectoryLock, JournalReader
from procs.common.journal_history import HistoryChain
from procs.common.journal_writer import cut_after
from procs.common.record_codec import RecordCodec
from procs.common.replication_ack import BLOCK_FILE, ack_dir
from procs.common.rules_version import RULES_VERSION
from procs.common.run_files import status_path
from procs.common.tls import replication_context
from procs.common.topology import (
    gateway_root,
    journal_archive_dir,
    journal_dir,
    market_state_path,
    postgres_dir,
    snapshot_dir,
)
from procs.core.recovery import journal_reader
from procs.replica import cluster
from procs.replica.demoted import Rebuilt, earlier_cuts
from procs.replica.wire import (
    MAX_DIGESTS,
    AskDigests,
    AskEpochs,
    Digests,
    EpochHistory,
    Message,
    Refused,
    older_peer,
    receive,
    records_differ,
    send,
)

log = logging.getLogger("ringex.replica")


async def _question(
    host: str, port: int, question: Message, tls: ssl.SSLContext | None = None
) -> Message:
    """Ask the replication source at host:port ``question``; its answer (``EpochsError``:
    refused). ``tls``: the link's mutual TLS (``replication_context``), where it has one."""
    reader, writer = await asyncio.open_connection(host, port, ssl=tls)
    try:
        await send(writer, question)
        answer = await receive(reader)
    finally:
        writer.close()
    if isinstance(answer, Refused):
        raise EpochsError(f"{host}:{port} refused: {answer.reason}")
    return answer


async def _ask(host: str, port: int, tls: ssl.SSLContext | None) -> tuple[Epochs, str]:
    answer = await _question(host, port, AskEpochs(), tls)
    if not isinstance(answer, EpochHistory):
        raise EpochsError(f"{host}:{port} answered {type(answer).__name__}, not its epochs")
    codec = RecordCodec()  # before anything is cut: this instance could never follow it
    if refused := records_differ(
        f"{host}:{port}'s", (answer.schema_id, answer.slot_size, answer.rules),
        "this instance's", (codec.journal_schema_id, codec.slot_size, RULES_VERSION),
    ):  # fmt: skip
        raise EpochsError(refused)
    return Epochs(tuple((e, s) for e, s in answer.epochs)), answer.cluster


def ask_primary(
    host: str, port: int, timeout_s: float = 10.0, tls: ssl.SSLContext | None = None
) -> tuple[Epochs, str]:
    """The epoch history and the cluster id ("": not said) of the primary whose replication
    source listens at host:port; ``EpochsError`` when it refuses, or runs other records
    (this instance's build could never follow it: refused before ``rebuild`` cuts
    anything)."""
    return asyncio.run(asyncio.wait_for(_ask(host, port, tls), timeout_s))


def ask_epochs(
    host: str, port: int, timeout_s: float = 10.0, tls: ssl.SSLContext | None = None
) -> Epochs:
    """``ask_primary``'s epochs."""
    return ask_primary(host, port, timeout_s, tls)[0]


async def _ask_digests(
    host: str, port: int, seqs: list[int], tls: ssl.SSLContext | None
) -> Digests:
    answer = await _question(host, port, AskDigests(seqs), tls)
    if not isinstance(answer, Digests):
        raise EpochsError(f"{host}:{port} answered {type(answer).__name__}, not digests")
    return answer


def _own_digests(cfg: RingexConfig, seqs: list[int]) -> dict[int, bytes]:
    """This journal's history hash before each of ``seqs`` (a block of entries each at
    most, from its history chain's keys)."""
    codec = RecordCodec()
    reader = journal_reader(cfg, codec)
    return HistoryChain(journal_dir(cfg)).hashes_before(reader, seqs)


def agreed_seq(cfg: RingexConfig, host: str, port: int, timeout_s: float = 600.0) -> int:
    """The last seq up to which ``cfg``'s journal (a stopped standby's) holds the primary's
    history at host:port: all of it when it is a prefix of the primary's. A standby ahead of
    its primary, whose host lost a journal tail it had shipped (the source ships before the
    router's fsync under ``interval`` and ``pipelined``) and then sequenced other commands at
    those seqs, agrees only up to where the tail was lost: ``rebuild`` cuts it there. Probes
    back from the end (1, 2, 4, ... entries), then narrows the interval, a few dozen seqs a
    question; each question costs both sides a block of entries a seq at most."""

    tls = replication_context(cfg.replication, server=False)

    async def ask(seqs: list[int]) -> Digests:
        async with asyncio.timeout(timeout_s):
            return await _ask_digests(host, port, seqs, tls)

    codec = RecordCodec()
    directory = journal_dir(cfg)
    mine = 0
    if directory.exists():
        mine = JournalReader(
            directory, slot_size=codec.slot_size, schema_id=codec.journal_schema_id
        ).last_seq()
    theirs = asyncio.run(ask([])).last_seq
    top = min(mine, theirs)
    # agreeing before ``lo + 1`` (lo entries), disagreeing before ``hi + 1``
    lo, hi = 0, top + 1
    probes = sorted({top - (1 << i) + 1 for i in range(MAX_DIGESTS - 1) if (1 << i) <= top + 1})
    while probes:
        seqs = [k + 1 for k in probes]
        answer = asyncio.run(ask(seqs))
        if any(older_peer(d) for d in answer.digests):  # no digest of it could ever agree
            raise EpochsError(
                f"{host}:{port} hashes its history as a build before 2026-11-27 did (one "
                "hash from seq 1, not chained in blocks): run this build there first"
            )
        own = _own_digests(cfg, seqs)
        theirs_now = answer.digests  # for the probes up to its end + 1 (a prefix of them)
        for i, k in enumerate(probes):
            # one past the primary's end now (it came back shorter meanwhile) disagrees:
            # else it moved neither bound and the same question came again (review 42)
            if i < len(theirs_now) and own.get(k + 1) == theirs_now[i]:
                lo = max(lo, k)
            else:
                hi = min(hi, k)
        if hi <= lo + 1:
            break
        step = max(1, (hi - lo) // MAX_DIGESTS)
        probes = list(range(lo + 1, hi, step))[:MAX_DIGESTS]
    return lo


def rebuild(
    cfg: RingexConfig,
    primary: Epochs,
    agreed: int | None = None,
    cluster_id: str = "",
    *,
    primary_at: str = "",
    standby_config: str = "",
    done: Rebuilt | None = None,
) -> Rebuilt:
    """Make ``cfg``'s instance (stopped) fit to follow ``primary`` as its standby;
    ``agreed``: the last seq its journal shares with the primary's (``agreed_seq``), past
    which it is cut too; ``cluster_id``: the primary's (``ask_primary``), which it takes on
    ("": its own is dropped, and it takes the primary's on following it); ``primary_at``
    (host:port) and ``standby_config``: what the follow-only mark names. ``done``, where
    given, is filled as it goes: what it did before it raised."""
    done = done if done is not None else Rebuilt.begun(Path(cfg.var_dir) / cfg.instance)
    directory = journal_dir(cfg)
    mine = Epochs.load(directory)
    # an epoch it was told of counts as a standby counts it (review 42)
    newest = max(mine.current, mine.known, mine.fence.epoch if mine.fence is not None else 0)
    if primary.current < newest:  # as a standby refuses it: it was failed over
        raise EpochsError(
            f"the primary is at epoch {primary.current}, older than this journal's {newest}: "
            "it was failed over and must not be followed"
        )
    keep = mine.keep_before(primary)  # EpochsError when the histories disagree
    if agreed is not None:  # a standby ahead of its restarted primary (review 42)
        keep = agreed if keep is None else min(keep, agreed)
    # no router may write the journal meanwhile, whether a status file names it or not:
    # the fence this lifts, and then the mark, keep a second primary out (JournalError: held)
    lock = DirectoryLock(directory) if directory.exists() else None
    try:
        _rebuild(cfg, keep, done)
        follow_only.mark(directory, primary_at, primary.current, standby_config)
        # only now: the mark keeps a router out once the fence is gone (review 310)
        Epochs(primary.history, known=mine.known).save(directory)  # what it was told stays
        # and it takes on the promoted instance's cluster id (a standby promoted before it
        # took one made its own, review 66), kept now: with none, its newer epoch would count
        # at a wrong primary before any id is compared (review 68)
        if cluster_id:
            cluster.keep(directory, cluster_id)
        else:  # an older primary's: taken on following it
            (directory / cluster.FILE).unlink(missing_ok=True)
        return done
    finally:
        if lock is not None:
            lock.close()


def _rebuild(cfg: RingexConfig, keep: int | None, done: Rebuilt) -> None:
    """Cut the journal after ``keep`` and set aside what may cover the cut, into ``done``."""
    home = Path(cfg.var_dir) / cfg.instance
    directory = journal_dir(cfg)
    codec = RecordCodec()
    last = 0
    if directory.exists():
        last = JournalReader(
            directory, slot_size=codec.slot_size, schema_id=codec.journal_schema_id
        ).last_seq()
    fence = Epochs.load(directory).fence
    if fence is not None:  # a demote of this fence that failed may have cut already
        done.earlier = earlier_cuts(
            home, fence.at_ns, last + 1, codec.slot_size, codec.journal_schema_id
        )
    done.kept_seq = kept = last if keep is None else min(last, keep)
    aside = done.aside
    if kept < last:
        done.cut = cut_after(
            directory, kept, aside / "journal",
            slot_size=codec.slot_size, schema_id=codec.journal_schema_id, locked=True,
            archive=journal_archive_dir(cfg),
        )  # fmt: skip
        done.moved.append(aside / "journal")
    snapshots = snapshot_dir(cfg, "dbwriter").parent
    for snap in sorted(snapshots.glob("*/*.snap")):
        if snap.parent.name == "dbwriter" or int(snap.stem) > kept:
            done.moved.append(_move(snap, aside / snap.relative_to(home)))
    derived = (
        gateway_root(cfg),
        market_state_path(cfg).parent,
        ack_dir(cfg.var_dir, cfg.instance) / BLOCK_FILE,
        status_path(cfg),  # a primary's, which promote would read (review 42)
    )
    for path in derived:
        if path.exists():
            done.moved.append(_move(path, aside / path.relative_to(home)))
    _drop_database(cfg, done)


def _move(path: Path, target: Path) -> Path:
    make_dirs(target.parent)
    os.replace(path, target)
    return target


def _drop_database(cfg: RingexConfig, done: Rebuilt) -> None:
    if cfg.database.dsn:
        done.warnings.append(
            f"the database at {cfg.database.dsn!r} may hold rows of seqs after {done.kept_seq}: "
            "empty it before this instance is promoted again (its writer then rebuilds it "
            "from the journal)"
        )
        return
    root = postgres_dir(cfg)
    if not (root.exists() or root.is_symlink()):
        return
    try:
        EmbeddedPostgres(root).destroy()
    except EmbeddedError as exc:
        done.warnings.append(f"the embedded database at {root} was not removed: {exc}")
        return
    if root.is_symlink():
        root.unlink()
    shutil.rmtree(root, ignore_errors=True)
    done.removed.append(root)
