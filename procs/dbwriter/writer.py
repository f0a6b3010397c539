"""The writer's loop: tail the journal, build batches, commit them with their checkpoint.

Start-up and restart are one path (crash-only): read the database's checkpoint, restore the
newest writer snapshot at or below it (else start from seq 1), replay up to the checkpoint
without writing, rewind a trade lane left ahead of it (``PgStore.rewind_lanes``: its trades
past the checkpoint deleted), then write every command after it. A batch closes when it holds
``batch_rows`` rows or its first row is ``batch_ms`` old (checked as commands arrive and
while the journal is idle); it covers a contiguous range of seqs, including commands that
made no rows, so the checkpoint moves over them too.

PostgreSQL down or failing (``OperationalError``): the batch is retried, with exponential
backoff, on a new connection, and the writer falls behind meanwhile; the journal is the
queue, so nothing is lost and the pipeline never waits. A commit whose answer was lost is
detected on retry (the checkpoint already equals the batch's end); a checkpoint *behind* the
batch (a server that lost committed transactions: asynchronous commit, failover to a lagging
replica, a restored backup) restarts the writer from it; so does one found while the
journal is idle, where the writer reads the checkpoint every ``check_s`` (2 s; with
PostgreSQL down that read is retried and logged as a batch's is). Anything else raises: a
broken invariant crashes the process and the supervisor restarts it from the checkpoint.
Lag (journal's last seq - checkpoint) is logged every ``report_s`` seconds.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import psycopg

from config.schema import RingexConfig
from procs.common.durable import fsync_file
from procs.common.journal import DirectoryLock, JournalError, list_segments
from procs.common.journal_durable import durable_upto
from procs.common.record_codec import EARLIER_SLOT_SIZES, RecordCodec, reframe_slot
from procs.common.rules_version import RULES_VERSION
from procs.core.recovery import journal_reader
from procs.dbwriter.committer import Committer, share_the_gil
from procs.dbwriter.projection import Batch
from procs.dbwriter.replay import Follower, snapshot_store
from procs.dbwriter.store import CheckpointMismatchError, PgStore
from procs.dbwriter.users import UserSync

#: A replay without writing (``start``, after a restore) pets the watchdog every this many
#: commands: it may be the whole journal, long after READY.
PET_EVERY = 1000
log = logging.getLogger("ringex.dbwriter")
T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """Delays between retries: ``initial_s``, doubling, at most ``max_s``."""

    initial_s: float = 0.05
    max_s: float = 5.0

    def delays(self) -> Callable[[], float]:
        state = [self.initial_s / 2]

        def next_delay() -> float:
            state[0] = min(self.max_s, state[0] * 2)
            return state[0]

        return next_delay


@dataclass(frozen=True)
class WriterOptions:
    batch_rows: int = 10_000
    batch_ms: int = 50
    poll_s: float = 0.005  # how soon a writer looks at the journal again after entries
    poll_max_s: float = 0.1  # ... doubling to this while the journal stays idle
    snapshot_every: int = 1_000_000  # commands between writer snapshots ...
    snapshot_s: float = 300.0  # ... or seconds, whichever first (0: never)
    report_s: float = 5.0
    #: while the journal is idle, how often the database's checkpoint is looked at: one
    #: behind (commits the database lost, a restored backup) is written again from there
    check_s: float = 2.0
    backoff: Backoff = Backoff()
    users_path: Path | None = None  # the FIX user store to mirror into ``users``


class CheckpointBehindError(CheckpointMismatchError):
    """Found while the journal is idle: the database's checkpoint is behind what this writer
    committed (commits it lost, a backup restored): written again from there."""

    def __init__(self, at: int, committed: int) -> None:
        message = f"database checkpoint is seq {at}; this writer committed up to seq {committed}"
        self._set(message, at, True)


class StoppedWaitingError(Exception):
    """A stop came while PostgreSQL was unavailable: the writer gives up waiting for it."""


class DbWriter:
    def __init__(
        self,
        cfg: RingexConfig,
        dsn: str,
        options: WriterOptions | None = None,
        *,
        codec: RecordCodec | None = None,
        sleep: Callable[[float], None] = time.sleep,
        pet: Callable[[], None] = lambda: None,
        ready: Callable[[], None] = lambda: None,
        revive: Callable[[], None] = lambda: None,
    ) -> None:
        """``sleep``: the idle wait; ``pet``: called once a batch while it works through a
        backlog (systemd's watchdog, which the idle waits alone would leave unfed);
        ``ready``: called once it has reached the database, its schema migrated, or found it
        unavailable (it retries, the exchange trades meanwhile): the supervisor's start waits
        for that (half its ``ready_timeout_s`` at most: ``procs/dbwriter/main.py``), so a
        running instance's REST history has its tables (a first start's ``initdb`` took
        seconds: ``relation "orders" does not exist`` in the meantime);
        ``revive``: called before each retry's wait (the embedded cluster's start again, where
        it died: review 261)."""
        self.cfg = cfg
        self.options = options or WriterOptions()
        self.codec = codec or RecordCodec()
        self.store = PgStore(dsn, cfg)
        self.reader = journal_reader(cfg, self.codec)  # a restored backup may be older
        #: what is executed again, the rows made from it: of this build's rules only (a read
        #: of an entry's CRC only looks, through ``reader``)
        self.replayed = self.reader.under(RULES_VERSION)
        self.sleep = sleep
        self.pet = pet
        self.ready = ready
        self.revive = revive
        self.stopping = False
        #: read no further than the journal's durable mark (``journal_durable.py``), or than
        #: this seq where that is further (a run to the end: ``_durable_now``)
        self._floor = 0
        self.follower: Follower | None = None
        self.committed = 0  # the checkpoint as this writer last saw it
        #: the CRC-32 of the last flushed batch's last entry (at the start: the checkpoint's):
        #: the next batch's ``prev_crc``
        self.last_crc: int | None = None
        self._committer: Committer | None = None  # while following: writes on its thread
        self.batches = 0
        self.rows = 0
        self._snap_seq = 0
        self._snap_at = time.monotonic()
        self._report_at = time.monotonic()
        self._look_at = time.monotonic()  # the next look at the database's checkpoint
        self._users_at = 0.0
        self._abandon = False  # ``_run`` is raising: a retry gives up as at a stop
        self._users_connection = 0  # the store's connection the users were last written on
        path = self.options.users_path
        self.users = UserSync(path) if path is not None else None

    def request_stop(self) -> None:
        """Read the journal to its end, commit, and return from ``run`` (signal-safe). The
        supervisor stops the writer after the router, so the end is the exchange's last seq."""
        self.stopping = True

    # -- start ------------------------------------------------------------------------------

    def start(self) -> Follower:
        """Connect (retrying), and bring the replay state to the database's checkpoint."""
        checkpoint, crc = self._retry(self.store.checkpoint_entry, "reading the checkpoint")
        self.ready()
        follower = Follower.restore(self.cfg, checkpoint, self._entry_crcs)
        from_seq = follower.seq
        if follower.seq < checkpoint:
            decode = self.codec.decode_slot
            for seq, image in self.replayed.entries(follower.seq + 1):
                command = decode(image)
                follower.projection.process(seq, command, follower.step(seq, command), None)
                if seq == checkpoint:
                    break
                if seq % PET_EVERY == 0:  # a replay after a restore may be the whole journal
                    self.pet()
        if follower.seq != checkpoint:
            end = self.reader.last_seq() if self.reader.directory.is_dir() else 0
            raise RuntimeError(
                f"the database checkpoint is seq {checkpoint}, but the journal "
                f"{self.reader.directory} ends at {end}: is this the right instance? (or the "
                f"journal lost a tail the database holds: a host crash under fsync = none, "
                f"interval or pipelined)"
            )
        if crc is not None and checkpoint and crc not in self._entry_crcs(checkpoint):
            raise RuntimeError(
                f"the database checkpoint is seq {checkpoint}, and the journal's entry there is "
                f"not the one the database was written from: the journal lost a tail (a host "
                f"crash under fsync = none, interval or pipelined) and its seqs went to other "
                f"commands. The database holds a history the journal does not: restore it from "
                f"a backup at or before the journal's lost tail, or write it anew"
            )
        first_trades = {
            symbol: book.next_trade_id
            for matcher in follower.matchers.values()
            for symbol, book in matcher.books.items()
        }
        self._retry(lambda: self.store.rewind_lanes(checkpoint, first_trades), "rewinding lanes")
        self.committed = self._snap_seq = checkpoint
        self.last_crc = crc  # the entry the next batch follows (its prev_crc)
        if self.users is not None:
            self.users.forget()  # a database that lost commits may have lost the users too
            self._users_at = 0.0  # at the next look
        log.info(
            "dbwriter resumes after seq %d (snapshot at %d, %d replayed without writing)",
            *(checkpoint, from_seq, checkpoint - from_seq),
        )
        self.follower = follower
        return follower

    def _entry_crcs(self, seq: int) -> frozenset[int]:
        """The CRC-32s the journal's image at ``seq`` may have been filed under (none: not
        there): of the image as this build reads it, and as its segment holds it, which an
        older build of another slot size read and filed (review 83); an image of another
        layout too, as it is only compared (the checkpoint an older build's ``--to-db`` left
        before an upgrade; review 76); and as an earlier build's slot framed it, which a
        standby's copy of its entries, re-framed by the upgraded primary, no longer holds
        (review 88: a writer promoted with it on the database the older writer filed)."""
        crcs = set()
        for as_stored in (False, True):
            for found, image in self.reader.entries(seq, foreign="yield", as_stored=as_stored):
                if found == seq:
                    crcs.add(zlib.crc32(image))
                    earlier = (reframe_slot(image, size) for size in EARLIER_SLOT_SIZES)
                    crcs.update(zlib.crc32(old) for old in earlier if old is not None)
                break
        return frozenset(crcs)

    # -- loop -------------------------------------------------------------------------------

    def run(self, *, to_end: bool = False) -> int:
        """Follow the journal until ``request_stop`` (or, ``to_end``, its last entry); return
        the checkpoint. ``to_end`` (a one-shot run): a stop while PostgreSQL is unavailable
        raises ``StoppedWaitingError``, since the database did not reach the end."""
        if to_end:
            self._floor = self._durable_now()
        try:
            return self._run_again(to_end)
        finally:
            self._floor = 0

    def _durable_now(self) -> int:
        """For a run to the journal's end (``ringex replay --to-db``): its last seq, made
        durable (its segments fsynced under its lock, taken for that moment only: a router
        may start while the run goes on, review 80), so the run reads past the durable mark
        a killed router left (review 79: it stopped there); 0 while a router holds it (its
        mark bounds the run)."""
        directory = self.reader.directory
        if not directory.is_dir():
            return 0
        try:
            lock = DirectoryLock(directory)
        except JournalError:
            log.warning("the journal %s is held by a router: written up to its durable mark",
                        directory)  # fmt: skip
            return 0
        with lock:
            # a torn tail cut now, as a router's open would: a router opening during the
            # run then changes no byte it reads (review 81: its cut, then its appends, made
            # the run's scan take the torn entry for corruption)
            self.reader._repair()
            for _first, path in list_segments(directory):
                fsync_file(path)
            return self.reader.last_seq()

    def _run_again(self, to_end: bool) -> int:
        while True:
            try:
                return self._run(to_end)
            except StoppedWaitingError as exc:
                if to_end:
                    raise
                log.warning("%s", exc)
                return self.committed
            except CheckpointMismatchError as exc:
                if not exc.behind:
                    raise
                log.warning("%s: the database lost commits; restarting from seq %d", exc, exc.at)
                self.follower = None
                self.store.close()  # a restored database: its partitions, lanes, anew

    def _run(self, to_end: bool) -> int:
        self._abandon = False
        follower = self.follower or self.start()
        share_the_gil()
        self._committer = Committer(self._write)
        try:
            return self._follow(follower, to_end)
        except BaseException:
            # the committer's retry gives up: its close waited for PostgreSQL to come back,
            # and this error, unraised, unlogged, with it (review 172)
            self._abandon = True
            raise
        finally:
            self._committer.close()
            self._committer = None

    def _follow(self, follower: Follower, to_end: bool) -> int:
        opts = self.options
        decode, step, process = self.codec.decode_slot, follower.step, follower.projection.process
        crc32 = zlib.crc32
        limit_rows, limit_s = opts.batch_rows, opts.batch_ms / 1000
        batch: Batch | None = None
        pause = opts.poll_s
        while True:
            before = follower.seq
            if self.reader.directory.is_dir():
                # no further than the router knows durable: a power loss must not leave the
                # database ahead of the journal (``journal_durable.py``)
                upto = max(durable_upto(self.reader.directory), self._floor)
                for seq, image in self.replayed.entries(follower.seq + 1):
                    if seq > upto:
                        break
                    command = decode(image)
                    if batch is None:
                        batch = Batch(first_seq=seq, prev_crc=self.last_crc)
                    process(seq, command, step(seq, command), batch)
                    batch.last_crc = crc32(image)
                    if batch.rows() >= limit_rows or time.monotonic() - batch.started >= limit_s:
                        self._flush(batch)
                        batch = None
                # a stop comes after intake closed: this pass read the journal to its end
            idle_flush = self.stopping or to_end
            if batch is not None and (idle_flush or time.monotonic() - batch.started >= limit_s):
                self._flush(batch)
                batch = None
            if self.stopping or (to_end and batch is None):
                break
            self._housekeeping()
            # an idle journal is looked at less and less often (each look lists and opens
            # segments: every 5 ms that was 6% of a core for an exchange doing nothing)
            idle = follower.seq == before and batch is None  # a batch waits for batch_ms
            if idle and time.monotonic() >= self._look_at:
                self._checkpoint_kept()
            pause = min(opts.poll_max_s, 2 * pause) if idle else opts.poll_s
            self.sleep(pause)
        self._drain()
        if to_end and 0 < follower.seq == self.committed and self._snapshot_below(follower.seq):
            # a run to the end (``ringex replay --to-db``) leaves its state there: a build of
            # other rules starts from it and replays nothing (``rules_version.py``)
            self._save_snapshot(self.last_crc or 0)
        self._housekeeping(force_report=True)
        return self.committed

    def close(self) -> None:
        self.store.close()

    def _snapshot_below(self, seq: int) -> bool:
        """Whether the newest writer snapshot is older than ``seq`` (or there is none)."""
        newest = snapshot_store(self.cfg).latest()
        return newest is None or newest[0] < seq

    # -- internals ---------------------------------------------------------------------------

    def _flush(self, batch: Batch) -> None:
        """Seal ``batch`` (here: sealing reads the replay state, which moves on) and hand it
        to the committer, which writes it while this thread reads on (``committer.py``)."""
        assert self.follower is not None
        self.pet()
        self.last_crc = batch.last_crc
        projection = self.follower.projection
        batch.seal(self.follower.sequencer.accounts, projection.decimals, projection.assets_of)
        if self._committer is None:
            self._write(batch)
        else:
            self._committer.submit(batch)
        self.batches += 1
        self.rows += batch.rows()
        opts = self.options
        due = batch.last_seq - self._snap_seq >= opts.snapshot_every or (
            opts.snapshot_s and time.monotonic() - self._snap_at >= opts.snapshot_s
        )
        if due and batch.last_seq > self._snap_seq:
            self._drain()  # the snapshot is of the replay state at the checkpoint
            at_batch = self.follower.seq == batch.last_seq  # its entry's CRC is the batch's
            self._save_snapshot((self.last_crc or 0) if at_batch else 0)
        self._housekeeping()

    def _save_snapshot(self, crc: int) -> None:
        """The replay state's snapshot at the checkpoint; one the disk refuses (full) is
        logged and tried again a period later: the journal and the checkpoint hold all, a
        snapshot only shortens a replay (review 291: the writer died of it, and at every
        restart, further behind each time; the matcher's was fixed in review 211)."""
        assert self.follower is not None
        self._snap_seq, self._snap_at = self.committed, time.monotonic()
        try:
            self.follower.save_snapshot(crc)
        except OSError as exc:
            log.error("dbwriter snapshot at seq %d not saved in %s: %s", self.follower.seq,
                      snapshot_store(self.cfg).directory, exc)  # fmt: skip

    def _write(self, batch: Batch) -> None:
        """Commit one sealed batch with its checkpoint (retrying); the committer's thread."""
        self._retry(lambda: self.store.write(batch), f"writing seqs {batch.first_seq}..")
        self.committed = batch.last_seq

    def _checkpoint_kept(self) -> None:
        """Raise ``CheckpointBehindError`` where the database no longer holds what this writer
        committed. A batch finds that at its write; an idle writer wrote none, and the
        history lacked its last commits for as long as the journal stayed idle, while the
        writer reported lag 0 (review 40)."""
        self._look_at = time.monotonic() + self.options.check_s
        self._drain()
        at = self._retry(self.store.checkpoint, "reading the checkpoint")
        if at < self.committed:
            raise CheckpointBehindError(at, self.committed)

    def _drain(self) -> None:
        if self._committer is not None:
            self._committer.drain()

    def _retry(self, work: Callable[[], T], what: str) -> T:
        delay = self.options.backoff.delays()
        while True:
            try:
                return work()
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                self.store.close()
                if self.stopping or self._abandon:  # nothing is lost: the journal holds it
                    raise StoppedWaitingError(
                        f"stopped while PostgreSQL was unavailable ({what}): the journal "
                        f"holds what follows seq {self.committed}, written at the next start"
                    ) from exc
                wait = delay()
                said = str(exc).strip().splitlines()[0] if str(exc) else type(exc).__name__
                said = "; ".join([said, *getattr(exc, "__notes__", ())])  # (a migration's file)
                log.warning(
                    "PostgreSQL unavailable while %s (%s); retrying in %.2f s; lag %d commands",
                    what, said, wait, self._lag(),
                )  # fmt: skip
                self.ready()
                self.revive()
                self.sleep(wait)

    def _lag(self) -> int:
        try:
            return max(0, self.reader.last_seq() - self.committed)
        except FileNotFoundError:
            return 0

    def _housekeeping(self, *, force_report: bool = False) -> None:
        now = time.monotonic()
        if force_report or now - self._report_at >= self.options.report_s:
            log.info(
                "dbwriter checkpoint %d, lag %d commands; %d batches, %d rows so far",
                *(self.committed, self._lag(), self.batches, self.rows),
            )
            self._report_at = now
        if self.users is not None and now - self._users_at >= 1.0:
            self._users_at = now
            self._drain()  # one thread at a time on the connection
            try:
                conn = self.store.open()
                if self.store.connections != self._users_connection:
                    # a new session: the server may have lost the users' commit without a
                    # batch's (a crash while idle, a backup restored): write them again
                    self.users.forget()
                    self._users_connection = self.store.connections
                self.users.sync(conn)
            except psycopg.Error as exc:  # a bad users file must not stop the history
                log.warning("users not synchronised: %s", exc)
                self.store.close()
