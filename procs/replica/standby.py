"""The secondary's side: receive the primary's journal, make it durable here, apply it hot.

On start it recovers like any instance (its own snapshot + its own journal), then asks the
primary for the entries after its last one, sending the hash of its history. Each frame of
entries must start exactly at its next seq and end at the primary's history hash:
a gap or a different history stops the standby with the reason (exit status 2), never a
silent repair. Entries are appended to its own journal and fsynced, whatever the journal
policy, then acknowledged (a primary in sync mode waits for that acknowledgement before any
matcher sees the batch, so it is sent before the entries are applied), then applied to its
router and matcher state, so at every seq its state hash equals the primary's. It reconnects
with a backoff while the primary is away, resuming from its last durable entry.
``var/<instance>/run/standby.json`` says where it is. The gateways' state files (users, API
keys, order logs) arrive on the same connection and are written where a promoted instance's
gateways look for them (``files.py``). A clean stop writes the exchange's and
every matcher's snapshot of that hot state, so the promoted instance starts without a replay,
and with market data, the market state kept from the same events (``market.py``).

Epochs (``procs.common.epochs``): the standby keeps its primary's epoch history in its own
journal, which is what a promotion extends. It refuses a primary of an older epoch than its
own (an old primary that was failed over), and does not follow when its own journal goes on
past the point where the primary's epoch began (a demoted primary not yet rebuilt: run
``failover.py demote``). A fenced journal does not start as a standby either; a demoted one
holds a follow-only mark instead (``procs.common.follow_only``: its router refuses it), which the
standby removes once its primary has checked its history.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time

from config.schema import RingexConfig
from procs.common import follow_only
from procs.common.epochs import Epochs, EpochsError, JournalFencedError
from procs.common.journal import JournalArchivedError
from procs.common.journal_history import HistoryChain
from procs.common.journal_writer import JournalWriter
from procs.common.record_codec import RecordCodec
from procs.common.records import Record
from procs.common.rules_version import RULES_VERSION
from procs.common.run_files import StatusFile
from procs.common.snapshots import SnapshotStore
from procs.common.tls import replication_context
from procs.common.topology import gateway_root, journal_dir, snapshot_dir
from procs.common.units import FILE_NAME as UNITS
from procs.common.units import removed_symbols, units_differ
from procs.core.recovery import journal_reader, recover, write_snapshot
from procs.replica import cluster
from procs.replica.files import FileReceiver
from procs.replica.market import HotMarket
from procs.replica.wire import (
    ARCHIVE_KEPT,
    SILENCE_S,
    Ack,
    Entries,
    EpochHistory,
    FrameError,
    Heartbeat,
    Hello,
    History,
    Refused,
    StateFile,
    older_peer,
    receive_within,
    records_differ,
    send,
)

log = logging.getLogger("ringex.replica")

#: Longest wait between attempts to reach an absent primary: a restarted primary in sync mode
#: acknowledges nothing until its standby is back, so the standby comes back within this.
RECONNECT_MAX_S = 0.5
#: A connection that lasted this long (s) was a working one: the next starts at once.
STEADY_S = 1.0
#: The most a connection to the primary may take, its TLS handshake included (the event
#: loop's own handshake limit is 60 s, and TCP's connect to a black hole minutes).
CONNECT_S = 5.0


async def _ack(writer: asyncio.StreamWriter, seq: int) -> None:
    """Acknowledge ``seq``, within the silence the primary is allowed: a primary that stopped
    reading held the send, and so the standby's whole read loop, for ever (review 167). Its
    TimeoutError reconnects, as a silent primary does."""
    async with asyncio.timeout(SILENCE_S):
        await send(writer, Ack(seq))


class StandbyRefusedError(RuntimeError):
    """The standby cannot follow this primary; the message says why."""


class DamagedFrameError(StandbyRefusedError):
    """A frame's entries do not decode or hash to its digest: damaged on the way (the link
    is dropped and they are asked for again) unless they arrive so again (review 289)."""


class Standby:
    def __init__(self, cfg: RingexConfig) -> None:
        self.cfg = cfg
        self._tls = replication_context(cfg.replication, server=False)  # None: plain TCP
        self.codec = codec = RecordCodec()
        directory = journal_dir(cfg)
        self.epochs = Epochs.load(directory)
        try:
            self.epochs.check_open(directory)  # a fenced journal follows nobody either
        except JournalFencedError as exc:
            raise StandbyRefusedError(str(exc)) from exc
        self._refuse_other_units()  # a restart on an edited profile (a systemd unit's)
        #: The primary's epochs, kept once its first frame is (its history is then proven).
        self._adopt: Epochs | None = None
        #: Its replicated history's id (``cluster.py``), and the primary's, kept likewise
        self.cluster = cluster.load(directory)
        self._adopt_cluster = ""
        #: demote's mark (``follow_only``), removed once the primary checked our history
        self._follow_only = follow_only.marked(directory)
        self._damaged_at = 0  # the seq a frame last arrived unreadable at (``_damaged``)
        self._status = StatusFile(journal_dir(cfg).parent / "run" / "standby.json", log)
        #: The market data a promoted instance starts from (``market.py``).
        self.market = HotMarket(cfg) if cfg.marketdata.enabled else None
        self._observe = None if self.market is None else self.market.observe
        self.state = recover(cfg, codec=codec, observe=self._observe)
        #: its history's block keys (``journal_history.py``): its start hashes a block at most
        self.chain = HistoryChain(directory)
        self.history = History(codec.slot_size)
        if directory.exists():
            reader = journal_reader(cfg, codec)  # archived segments too
            try:
                self.history = self.chain.history_before(reader, reader.last_seq() + 1)
            except JournalArchivedError as exc:
                raise JournalArchivedError(f"{exc}; {ARCHIVE_KEPT}") from exc
        self.journal = JournalWriter(
            directory,
            slot_size=codec.slot_size,
            schema_id=codec.journal_schema_id,
            segment_bytes=cfg.journal.segment_mb << 20,
            fsync=cfg.journal.fsync,
            fsync_interval_ms=cfg.journal.fsync_interval_ms,
            cut_on_failure=True,  # nothing else reads a standby's journal while it runs
        )
        self.files = FileReceiver(gateway_root(cfg))
        self.connected = False
        self.stopping = asyncio.Event()
        self._status_at = 0.0
        self._persisted: tuple[Entries | None, list[Record]] = (None, [])
        self._broken = False  # an apply failed: the hot state is not a whole command's

    @property
    def next_seq(self) -> int:
        return self.journal.next_seq

    @property
    def digest(self) -> bytes:
        """The hash of this standby's history (what ``Hello`` sends)."""
        return self.history.digest()

    def receive_entries(self, entries: Entries) -> int:
        """Check, append, apply one frame; returns the last seq now durable and applied."""
        seq = self.persist(entries)
        self.apply(entries)
        return seq

    def _refuse_other_units(self) -> None:
        """Stop (exit 2) where the journal's units, pinned here or just shipped by the
        primary, are not this config's: its entries would be applied in other units, and a
        promotion refuses such a standby anyway (review 215: it followed and acknowledged)."""
        if refused := units_differ(self.cfg):
            raise StandbyRefusedError(f"standby of other units than its journal's: {refused}")

    def persist(self, entries: Entries) -> int:
        """Check one frame and make it durable here; returns its last seq (to acknowledge)."""
        if entries.first_seq != self.next_seq:
            raise StandbyRefusedError(
                f"gap: the primary sent seq {entries.first_seq}, this standby needs {self.next_seq}"
            )
        if older_peer(entries.digest):
            raise StandbyRefusedError(
                "the primary hashes its history as a build before 2026-11-27 did (one hash "
                "from seq 1, not chained in blocks): upgrade it with the standby"
            )
        # every image a whole slot holding a record, before anything is written: a journaled
        # entry that does not decode fails every recovery after it (review 140)
        decode, records = self.codec.decode_slot, []
        for seq, image in enumerate(entries.images, entries.first_seq):
            try:
                records.append(decode(image))
            except ValueError as exc:  # (RecordDecodeError: the length, or the record)
                raise DamagedFrameError(f"the primary's seq {seq} is no entry: {exc}") from None
        images = b"".join(entries.images)
        history = self.history.fork()
        history.update(images)
        if history.digest() != entries.digest:
            raise DamagedFrameError(
                f"hash mismatch after seq {entries.first_seq + len(entries.images) - 1}: "
                "the primary's history differs from what arrived"
            )
        if self._adopt is not None:  # before the entries: a crash between leaves the
            # epochs ahead of the journal (``begun_by`` takes that), never behind, where
            # this standby would take its own primary's new epoch for a divergence
            self._adopt_reached(entries.first_seq + len(entries.images))
        self.journal.append(entries.first_seq, images, len(entries.images))
        self.files.sync()  # the order logs the primary shipped before this frame, too
        self.journal.sync()  # durable here before it is acknowledged
        self.history = history
        self.chain.keep(history)  # (after the entries: never ahead of them)
        self._persisted = (entries, records)
        return self.next_seq - 1

    def _adopt_reached(self, next_seq: int) -> None:
        """Take on the primary's epochs that begin by ``next_seq``; a later one waits for
        the frame that reaches it (an epoch claimed with nothing of it here would make
        promoting this standby, mid catch-up, fail: its epoch must begin after)."""
        adopt = self._adopt
        assert adopt is not None
        reached = adopt.begun_by(next_seq)
        if reached.history == adopt.history:
            adopt.save(journal_dir(self.cfg))
            self.epochs, self._adopt = adopt, None
        elif len(reached.history) > len(self.epochs.history) or reached.known > self.epochs.known:
            self.epochs = reached  # what has begun here, and the newest epoch there is
            self.epochs.save(journal_dir(self.cfg))

    def follow_epochs(self, message: EpochHistory) -> None:
        """The primary's epochs: check that this journal can follow them; they are kept with
        the first frame that follows (a primary whose history check fails leaves none)."""
        try:
            primary = Epochs(tuple((e, s) for e, s in message.epochs))
            newest = self._newest_epoch()
            if primary.current < newest:
                raise StandbyRefusedError(
                    f"the primary is at epoch {primary.current}, older than this journal's "
                    f"{newest} (the newest it followed or was told of): it was failed over "
                    "and must not be followed"
                )
            keep = self.epochs.keep_before(primary)
        except EpochsError as exc:
            raise StandbyRefusedError(
                f"the primary's epochs do not fit this journal: {exc}"
            ) from exc
        last = self.next_seq - 1
        if keep is not None and keep < last:
            raise StandbyRefusedError(
                f"this journal holds seqs {keep + 1}..{last} of epoch {self.epochs.current}, "
                f"but the primary's next epoch began at seq {keep + 1}: they diverge (an old "
                "primary's tail); rebuild this instance with scripts/failover.py demote"
            )
        self._adopt = primary if primary.history != self.epochs.history else None

    def _newest_epoch(self) -> int:
        return max(self.epochs.current, self.epochs.known)

    def apply(self, entries: Entries) -> None:
        """Apply a persisted frame to the hot state."""
        held, records = self._persisted
        self._persisted = (None, [])
        if held is not entries:  # (``persist`` decoded the frame it made durable)
            records = [self.codec.decode_slot(image) for image in entries.images]
        apply, observe = self.state.apply, self._observe
        try:
            for record in records:
                apply(record, observe)
        except ValueError as exc:  # a ReplayError: made durable here, not to be applied
            self._broken = True  # a command half applied: no snapshot of it (review 235)
            gone = removed_symbols(self.cfg)
            advice = (
                f"; the journal's symbols {gone} are not in this standby's config: configure "
                "them again, on their matchers, as the primary's journal still holds them"
                if gone
                else ""
            )
            raise StandbyRefusedError(f"cannot apply the primary's journal: {exc}{advice}") from exc

    async def run(self) -> None:
        reporter = asyncio.create_task(self._report())
        try:
            await self._connect_loop()
        finally:
            reporter.cancel()

    async def _report(self) -> None:
        """The status file, twice a second (frames alone would leave it stale when they stop)."""
        while True:
            self.write_status(force=True)
            await asyncio.sleep(0.5)

    async def _connect_loop(self) -> None:
        host, port = self.cfg.replication.primary_address()
        pause = 0.05
        while not self.stopping.is_set():
            try:
                async with asyncio.timeout(CONNECT_S):  # a black hole; a TLS peer mute
                    reader, writer = await asyncio.open_connection(host, port, ssl=self._tls)
            except OSError as exc:  # (ssl.SSLError too: a primary of another CA, say)
                why = str(exc) or f"no connection within {CONNECT_S:g} s"  # (TimeoutError)
                log.warning("primary %s:%d unreachable (%s); retrying", host, port, why)
                await asyncio.sleep(pause)
                pause = min(RECONNECT_MAX_S, pause * 2)
                continue
            began = time.monotonic()
            try:
                await self._follow(reader, writer)
            except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError) as exc:
                # (SSLError: a record whose MAC failed, damaged on the way: review 289) TLS
                # 1.3 ends the client's handshake before the primary checks its certificate:
                # a refusal reaches this side as the link closed, unexplained
                hint = (
                    " (what a primary that refused this standby's certificate does: its log "
                    "says so)"
                    if self._tls is not None and isinstance(exc, asyncio.IncompleteReadError)
                    and not exc.partial and time.monotonic() - began < 1.0
                    else ""
                )  # fmt: skip
                log.warning("primary connection lost (%s)%s; reconnecting", exc, hint)
            except TimeoutError:
                log.warning("primary silent, or not reading, for %.1f s; reconnecting", SILENCE_S)
            except FrameError as exc:
                if self.connected:  # past the handshake, which compared the builds: the link
                    log.warning("an unreadable frame from the primary (%s); reconnecting", exc)
                else:  # (review 294: two damaged heartbeats hours apart refused the standby)
                    self._damaged(StandbyRefusedError(
                        f"the primary at {host}:{port} sent a frame this standby cannot read "
                        f"({exc}): another version of ringex?"
                    ))  # fmt: skip
            except DamagedFrameError as exc:
                self._damaged(exc)
            finally:
                self.connected = False
                writer.close()
                self.write_status(force=True)
            # a connection that ended at once (a state file this host cannot make durable, a
            # primary that drops it) is retried with the backoff too: at once, it made
            # hundreds of connections a second, each file shipped again (review 42)
            if time.monotonic() - began >= STEADY_S:
                pause = 0.05
            elif not self.stopping.is_set():
                await asyncio.sleep(pause)
                pause = min(RECONNECT_MAX_S, pause * 2)

    def _damaged(self, refusal: StandbyRefusedError) -> None:
        """A frame that arrived unreadable: the connection is dropped and its seqs asked for
        again; arrived so again at the same seq on a new connection, it is not the link:
        ``refusal`` is raised (review 289: one byte flipped on the way was refused as the
        primary's history differing, and the standby exited)."""
        if self._damaged_at == self.next_seq:
            raise refusal
        self._damaged_at = self.next_seq
        log.warning("a frame from seq %d arrived unreadable (%s); asking for it again",
                    self.next_seq, refusal)  # fmt: skip

    async def _follow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # the newest epoch it was told of: an older primary meeting it fences itself
        codec = self.codec
        await send(
            writer,
            Hello(
                self.next_seq,
                self.digest,
                self._newest_epoch(),
                codec.journal_schema_id,
                codec.slot_size,
                RULES_VERSION,
                self.cluster,
            ),
        )
        first = await receive_within(reader, SILENCE_S)
        if isinstance(first, Refused):
            raise StandbyRefusedError(f"the primary refused this standby: {first.reason}")
        if not isinstance(first, EpochHistory):
            raise StandbyRefusedError(f"expected the primary's epochs, got {type(first).__name__}")
        if refused := records_differ(
            "the primary's",
            (first.schema_id, first.slot_size, first.rules),
            "this standby's",
            (codec.journal_schema_id, codec.slot_size, RULES_VERSION),
        ) or cluster.differ("primary", first.cluster, self.cluster):
            raise StandbyRefusedError(refused)
        self.follow_epochs(first)
        self._adopt_cluster = first.cluster if not self.cluster else ""
        self.connected = True
        log.info("following the primary from seq %d", self.next_seq)
        while not self.stopping.is_set():
            message = await receive_within(reader, SILENCE_S)
            if isinstance(message, Refused):
                raise StandbyRefusedError(f"the primary refused this standby: {message.reason}")
            if self._adopt_cluster:  # the primary checked our history (else: Refused)
                cluster.keep(journal_dir(self.cfg), self._adopt_cluster)
                self.cluster, self._adopt_cluster = self._adopt_cluster, ""
            if self._follow_only:  # and so: this journal is its standby's, no primary's
                follow_only.clear(journal_dir(self.cfg))
                self._follow_only = False
                log.info("the primary checked this journal's history: follow-only mark removed")
            if self._adopt is not None and not isinstance(message, Entries):
                # the primary checked our history (else: Refused): its epochs that began by
                # our next seq are ours, even while it writes nothing (promoted, then idle)
                self._adopt_reached(self.next_seq)
            if isinstance(message, Heartbeat):
                # answered with what is durable here: the source hears from a live standby
                # at least every HEARTBEAT_S, so silence tells it one died (``wire.py``)
                await _ack(writer, self.next_seq - 1)
                continue
            if isinstance(message, StateFile):
                try:
                    self.files.apply(message)
                except (OSError, ValueError) as exc:
                    # Acknowledging later frames would leave a hole in the copy (the source
                    # ships each file's growth once per connection): start a new connection,
                    # which ships the files again from the start.
                    log.error("gateway state file %r not written: %s", message.path, exc)
                    raise ConnectionResetError(
                        f"gateway state file {message.path!r} not written ({exc}): reconnecting"
                    ) from exc
                if message.path == UNITS:  # (the copy kept until it is whole)
                    self._refuse_other_units()  # before any entry is acknowledged
                await _ack(writer, self.next_seq - 1)  # heard: see Heartbeat
                continue
            if not isinstance(message, Entries):
                raise StandbyRefusedError(f"unexpected {type(message).__name__} from the primary")
            seq = self.persist(message)
            try:  # durable: acknowledged, and applied even when the ack cannot be sent
                await _ack(writer, seq)
            finally:
                self.apply(message)

    def write_status(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._status_at < 1.0:
            return
        self._status_at = now
        doc = {
            "pid": os.getpid(),
            "primary": self.cfg.replication.primary,
            "connected": self.connected,
            "last_seq": self.next_seq - 1,
            "digest": self.digest.hex(),
            "updated_ns": time.time_ns(),
        }
        self._status.write(doc)  # (var/ full: said once, and the standby follows on)

    def save_snapshots(self) -> None:
        """The hot state as the exchange's and each matcher's snapshot (what a promoted
        instance's router and matchers restore instead of replaying the journal), and the
        market state its market data goes on from."""
        if self._broken:
            return  # a command half applied: the next start replays the journal instead
        if self.market is not None:
            self.market.save()
        state = self.state
        if state.last_seq <= state.snapshot_seq:
            return  # nothing applied since the snapshot it recovered from
        write_snapshot(self.cfg, state)
        for name, matcher in state.matchers.items():
            SnapshotStore(snapshot_dir(self.cfg, f"matcher-{name}")).save(
                matcher.last_seq, matcher.snapshot()
            )
        log.info("snapshots written at seq %d", state.last_seq)

    def close(self) -> None:
        self.write_status(force=True)
        self.journal.close()
        self.save_snapshots()
