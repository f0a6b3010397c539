"""The primary's side: serve the journal to a standby, from where it says it is.

It tails the journal files (``tail.JournalTail``: a reader beside the live writer sees a
prefix of what is written), woken by the router's "appended" bell after each journal write,
so a new batch leaves at once without the router doing more than a word store (and a
one-byte write while this side sleeps). Each acknowledgement is published in the shared block
(``procs.common.replication_ack``), where a router in sync mode waits for it; in async mode
only the lag is reported: logged, and in ``var/<instance>/run/replication.json`` with the
router's "degraded" verdict. The history hash of the entries before the standby's
``next_seq`` is computed from the journal and compared with the standby's: a standby with
another history is refused, naming the seq. One standby is the model: with several, the
acknowledged seq is the latest one any of them reported.

Epochs (``procs.common.epochs``): every answer to a standby that passes the handshake (its
records, build and cluster id, and this primary not fenced) begins with this journal's epoch
history. A standby of a newer epoch means this primary was failed over: it is refused, and
this instance fences itself (its journal's epochs file and the block's ``FENCED`` word, which
stops its router from sequencing or going on without the standby).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import struct
import time

from config.schema import RingexConfig
from procs.common import sd_notify
from procs.common.epochs import Epochs
from procs.common.journal import (
    JournalArchivedError,
    JournalError,
    JournalFormatError,
    JournalReader,
    JournalRulesError,
)
from procs.common.journal_history import HistoryChain, block_of, feed_to
from procs.common.record_codec import RecordCodec
from procs.common.replication_ack import CONNECTED, FENCED, SOURCE_PARKED, AckBlock, ack_dir
from procs.common.rules_version import RULES_VERSION
from procs.common.run_files import StatusFile
from procs.common.tls import replication_context
from procs.common.topology import gateway_root, journal_dir
from procs.core.recovery import journal_reader
from procs.replica import cluster
from procs.replica.files import CHUNK, FileShipper, shipped_files
from procs.replica.tail import JournalTail
from procs.replica.wire import (
    ARCHIVE_KEPT,
    HEARTBEAT_S,
    MAX_PEER_FRAME,
    SILENCE_S,
    STANDBY_SILENCE_S,
    Ack,
    AskDigests,
    AskEpochs,
    Build,
    Digests,
    Entries,
    EpochHistory,
    FrameError,
    Heartbeat,
    Hello,
    History,
    Message,
    Refused,
    older_peer,
    receive,
    records_differ,
    send,
)
from shm.liveness import process_start

log = logging.getLogger("ringex.replica")

BATCH = 4096  # entries per frame
MAX_CACHED = 4096  # history hashes an operator's questions keep (``_digests``)
#: A peer's first message (a Hello, an operator's question) arrives whole within this many
#: SILENCE_S: the silence allowed between its bytes alone let a drip-fed one hold the link.
FIRST_WORD_SILENCES = 3
#: Longest a caught-up sender sleeps before it looks at the journal without being rung
#: (bounds the cost of a missed wake-up: a router that is not ringing, a FIFO replaced).
PARK_S = 0.02
STATUS_S = 0.5  # how often the status file is rewritten


#: SO_LINGER on, 0 s: close resets the connection, its queued bytes discarded.
_RESET = struct.pack("ii", 1, 0)


def _let_go(writer: asyncio.StreamWriter) -> None:
    """End a peer's connection. Bytes still unsent here are a peer that stopped reading (a
    standby dropped for it): aborted at once, since ``close`` would wait to flush them and
    the socket and its buffers stayed until TCP gave up, minutes (review 167). Else closed,
    which sends what was written (a refusal), and aborted a silence later for sure."""
    transport = writer.transport
    if transport.get_write_buffer_size():
        sock = transport.get_extra_info("socket")
        if sock is not None:  # a reset: a plain close leaves the kernel an orphan that
            with contextlib.suppress(OSError):  # tries for minutes to send what is queued
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        transport.abort()
        return
    writer.close()
    asyncio.get_running_loop().call_later(SILENCE_S, transport.abort)


async def _to_standby(writer: asyncio.StreamWriter, message: Message) -> None:
    """Send to a standby, which must take it within the silence it is allowed: the ack
    reader drops only a *silent* one, and one that acknowledges while it reads nothing held
    the drain for ever (review 167). Its TimeoutError drops it as a silent one is."""
    async with asyncio.timeout(STANDBY_SILENCE_S):
        await send(writer, message)


async def _ship(writer: asyncio.StreamWriter, files: FileShipper) -> None:
    """Send everything the gateways' state files gained, however many chunks it takes."""
    while True:
        changes = files.changes()
        for change in changes:
            await _to_standby(writer, change)
        if sum(len(c.data) for c in changes) < CHUNK:
            return


def _remedy(exc: JournalError) -> str:
    """What to do about the entries the source cannot serve a standby: archived, then gone
    (with no key of the history chain for them), or of other records or rules (it would
    execute them under its own)."""
    if isinstance(exc, JournalArchivedError):
        return ARCHIVE_KEPT
    if isinstance(exc, JournalFormatError):
        return (
            "a standby takes only entries of its own records: catch it up with the build "
            "that wrote them before upgrading, or give it a copy of the primary's journal, "
            "snapshots and run/session_end.json at the upgrade (README, the journal)"
        )
    return (
        "a standby takes only entries of its own rules: give it a snapshot past them, "
        "written by the build that wrote them"
    )


def _wake(bell: asyncio.Future[None]) -> None:
    if not bell.done():
        bell.set_result(None)


class ReplicationSource:
    def __init__(self, cfg: RingexConfig) -> None:
        self.cfg = cfg
        self._started = process_start(os.getpid())  # its status names it by pid and start
        codec = RecordCodec()
        self.records: Build = (codec.journal_schema_id, codec.slot_size, RULES_VERSION)
        self.reader = journal_reader(cfg, codec)  # from seq 1: archived segments too
        #: the history's block keys (``journal_history.py``): a hash reads a block at most
        self.chain = HistoryChain(journal_dir(cfg))
        #: what is shipped: a standby executes it again, so only entries of this build's
        #: rules (``JournalRulesError``: the standby is refused, saying why)
        self.shipped = self.reader.under(RULES_VERSION)
        self.block = AckBlock(ack_dir(cfg.var_dir, cfg.instance))
        for word in (CONNECTED, SOURCE_PARKED):
            self.block.words[word] = 0
        self.block.acknowledged(0)  # nothing is known acknowledged until a standby says so
        self.epochs = Epochs.load(journal_dir(cfg))
        self.cluster = cluster.load_or_make(journal_dir(cfg))
        if self.epochs.fence is not None:
            self.block.words[FENCED] = self.epochs.fence.epoch
        self.stopping = asyncio.Event()
        self.peers: dict[str, int] = {}  # connected standby -> its last acknowledged seq
        self._sleepers: set[asyncio.Future[None]] = set()
        self._serving: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._reported_degraded = False
        self._status = StatusFile(ack_dir(cfg.var_dir, cfg.instance) / "replication.json", log)
        #: (seq, the journal's hash before it), the last ``_history_before`` made
        self._hashed: tuple[int, History] | None = None
        self._digesting = asyncio.Lock()  # operators' AskDigests: a journal pass at a time
        self._hashing = asyncio.Lock()  # standbys' Hellos: one hash at a time (``_hashed``)
        self._digest_cache: dict[int, bytes] = {}  # seq -> the journal's hash before it

    @property
    def acked(self) -> int:
        return self.block.acked_seq

    def _history_before(self, seq: int, reader: JournalReader | None = None) -> History:
        """The hash of the journal before ``seq``: from the last one made when it was at or
        before ``seq`` in the same block (a standby that reconnects costs only the entries
        since), else from the chain's key of its block (a block of entries at most).
        ``reader``: a thread's own (``_own_reader``); the loop's by default."""
        reader = reader or self.reader
        cached = self._hashed
        if cached is not None and cached[0] <= seq and block_of(cached[0]) == block_of(seq):
            history = cached[1].fork()  # (in one block: it completes none, keeps nothing)
            feed_to(history, reader, seq)
        else:
            history = self.chain.history_before(reader, seq)
        self._hashed = (seq, history.fork())
        return history

    def _own_reader(self) -> JournalReader:
        """A reader of the journal for a thread: the loop's is not shared."""
        return JournalReader(
            self.reader.directory,
            slot_size=self.records[1],
            schema_id=self.records[0],
            archive=self.reader.archive,
        )

    def _digests(self, seqs: list[int]) -> Digests:
        """The history hash before each of ``seqs`` (those past the journal's end + 1
        left out), a block of entries each at most (the history chain's): an operator's
        question, never a standby's.
        Run on a thread, with a reader of its own."""
        reader = self._own_reader()
        last = reader.last_seq()
        # a running primary's journal only grows: a hash before a seq it holds never changes,
        # so a question asked again costs no pass (kept for at most MAX_CACHED seqs)
        found = self._digest_cache
        if len(found) > MAX_CACHED:
            found.clear()
        wanted = [s for s in seqs if s <= last + 1 and s not in found]
        if wanted:
            found.update(self.chain.hashes_before(reader, wanted))
        return Digests(last, [found[s] for s in seqs if s in found])

    async def _answer_operator(
        self, question: AskEpochs | AskDigests, writer: asyncio.StreamWriter
    ) -> None:
        """``failover.py demote``'s questions: the epochs, or history hashes."""
        answer: EpochHistory | Digests | Refused
        if isinstance(question, AskEpochs):
            answer = self._epoch_history()
        else:  # up to a block of entries a seq: one at a time, and as long a rest after it
            async with self._digesting:  # (the port is the operators' and standbys' only)
                began = time.monotonic()
                try:
                    answer = await asyncio.to_thread(self._digests, question.seqs)
                except JournalError as exc:  # archived, and no key of the chain for it
                    answer = Refused(f"no history hashes: {exc}")
                await send(writer, answer)
                await asyncio.sleep(time.monotonic() - began)
            return
        await send(writer, answer)

    async def _history_off_loop(self, hello: Hello) -> tuple[History | None, str]:
        """``_history_refusal`` on a thread with a reader of its own: a Hello late in a block
        hashed up to a block of entries, 80 ms of the loop every other standby's frames and
        acknowledgements wait on (review 169). One at a time: they share the last hash."""
        async with self._hashing:
            return await asyncio.to_thread(self._history_refusal, hello, self._own_reader())

    def _history_refusal(self, hello: Hello, reader: JournalReader) -> tuple[History | None, str]:
        """The history before the standby's next seq, or None and why it is refused: its
        journal is not a prefix of this one's. ``reader``: the thread's own."""
        last = reader.last_seq()
        if hello.next_seq < 1:
            return None, f"next seq {hello.next_seq}: seqs start at 1"
        if older_peer(hello.digest):
            return None, (
                "the standby hashes its history as a build before 2026-11-27 did (one hash "
                "from seq 1, not chained in blocks): upgrade it with the primary"
            )
        if hello.next_seq > last + 1:
            return None, (
                f"standby is at seq {hello.next_seq - 1}, the primary at {last}: this "
                "primary's host lost a journal tail it had shipped (a crash under fsync "
                "interval or pipelined); rebuild the standby (scripts/failover.py demote)"
            )
        history = self._history_before(hello.next_seq, reader)
        if history.digest() != hello.digest:
            return None, (
                f"history differs before seq {hello.next_seq}: the standby's journal is not "
                "a prefix of the primary's; rebuild the standby (scripts/failover.py demote)"
            )
        return history, ""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = str(writer.get_extra_info("peername"))
        task = asyncio.current_task()
        if task is not None:
            self._serving[task] = writer
        try:
            hello = await _first_word(reader, peer)
            if hello is None:
                return
            if isinstance(hello, AskEpochs | AskDigests):
                await self._answer_operator(hello, writer)
                return
            if not isinstance(hello, Hello):
                await send(writer, Refused(f"expected Hello, got {type(hello).__name__}"))
                return
            # records first: a peer of another build can never be this primary's standby,
            # so its epoch says nothing of this primary's and must not fence it
            refusal = records_differ(
                "the standby's",
                (hello.schema_id, hello.slot_size, hello.rules),
                "the primary's",
                self.records,
            ) or cluster.differ("standby", hello.cluster, self.cluster)
            # (another history's epochs say nothing of this one's: compared before them)
            refusal = refusal or self._epoch_refusal(hello, peer)
            if refusal is not None:
                await _refuse(writer, peer, refusal)
                return
            await send(writer, self._epoch_history())
            history, refusal = await self._history_off_loop(hello)
            if history is None:
                await _refuse(writer, peer, refusal)
                return
            log.info("standby %s connected at seq %d", peer, hello.next_seq)
            self._acknowledged(peer, hello.next_seq - 1)  # what it holds is durable there
            sent = [hello.next_seq - 1]  # the newest seq this connection has sent
            acks = asyncio.create_task(self._acks(reader, peer, sent))
            stream = asyncio.create_task(self._stream(writer, hello.next_seq, history, sent))
            try:  # whichever ends first ends both: a standby gone while idle is seen at once
                done, _ = await asyncio.wait({acks, stream}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                acks.cancel()
                stream.cancel()
                await asyncio.gather(acks, stream, return_exceptions=True)
            for ended in done:
                ended.result()  # raises what ended it
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError) as exc:
            gone = log.info if self.stopping.is_set() else log.warning  # (SSLError: a bad MAC)
            gone("standby %s gone: %s", peer, exc)
        except FrameError as exc:
            log.warning("standby %s dropped: %s", peer, exc)
        except (JournalRulesError, JournalFormatError, JournalArchivedError) as exc:
            with contextlib.suppress(ConnectionError):
                await _refuse(writer, peer, f"{exc}; {_remedy(exc)}")
        except TimeoutError:  # a host that died sends no FIN: TCP alone would take minutes
            log.warning("standby %s silent, or not reading, for %.1f s: dropped",
                        peer, STANDBY_SILENCE_S)  # fmt: skip
        finally:
            if self.peers.pop(peer, None) is not None:
                self.block.words[CONNECTED] = len(self.peers)
            _let_go(writer)
            if task is not None:
                self._serving.pop(task, None)

    def _epoch_refusal(self, hello: Hello, peer: str) -> str | None:
        """Why the epochs forbid serving ``hello``'s standby, or None. A standby of a newer
        epoch fences this primary; a fenced primary serves nobody (its tail past the new
        epoch's start is what demote cuts)."""
        if hello.epoch > self.epochs.current:
            self.fence(hello.epoch, f"the standby at {peer}")
            return (
                f"this primary is at epoch {self.epochs.current} and the standby at "
                f"{hello.epoch}: it was promoted, so this primary is fenced"
            )
        fenced = self.epochs.fence.epoch if self.epochs.fence else self.block.words[FENCED]
        if fenced:
            return (
                f"this primary is fenced by epoch {fenced}: follow the promoted instance "
                "(this one is to be rebuilt as its standby)"
            )
        return None

    def _epoch_history(self) -> EpochHistory:
        return EpochHistory(list(self.epochs.history), *self.records, self.cluster)

    def fence(self, epoch: int, by: str) -> None:
        """A newer epoch exists: stop the router (``FENCED``), then mark the journal fenced
        (the word first: the running router is stopped even if the file cannot be written)."""
        self.block.words[FENCED] = epoch
        if self.epochs.fence is None:
            fenced = self.epochs.fenced(epoch, by)
            try:  # kept once on disk: a write that fails is tried again at the next fence
                fenced.save(journal_dir(self.cfg))  # (review 125: it never was)
                self.epochs = fenced
            except OSError as exc:
                log.error("FENCED: the journal's epochs file not written (%s); the router "
                          "is stopped by the block, the file is tried again", exc)  # fmt: skip
        current = asyncio.current_task()
        for task, serving in list(self._serving.items()):  # its standbys take nothing more
            if task is not current:  # the connection that fenced it is told why, then closed
                serving.close()
        log.error(
            "FENCED: %s is at epoch %d, newer than this primary's %d; the router sequences "
            "nothing more (rebuild this instance as its standby: scripts/failover.py demote)",
            by, epoch, self.epochs.current,
        )  # fmt: skip

    def _acknowledged(self, peer: str, seq: int) -> None:
        self.peers[peer] = seq
        self.block.words[CONNECTED] = len(self.peers)
        self.block.acknowledged(seq)

    async def _acks(self, reader: asyncio.StreamReader, peer: str, sent: list[int]) -> None:
        """Publish each acknowledgement; one past what was sent is a broken peer's, which
        would let the sync router go on without a standby: it is dropped."""
        last_log = 0.0
        while True:  # a standby acks every frame and every heartbeat: silence is death
            ack = await receive(reader, MAX_PEER_FRAME, STANDBY_SILENCE_S)
            if not isinstance(ack, Ack):  # nothing else comes after a Hello (review 140)
                raise ConnectionError(f"it sent a {type(ack).__name__} after its Hello: dropped")
            if ack.seq > sent[0]:
                raise ConnectionError(
                    f"it acknowledged seq {ack.seq}, past seq {sent[0]} sent to it: dropped"
                )
            self._acknowledged(peer, ack.seq)
            if time.monotonic() - last_log > 5:
                lag = self.reader.last_seq() - ack.seq
                log.info("standby acked seq %d (lag %d)", ack.seq, lag)
                last_log = time.monotonic()

    async def _stream(
        self, writer: asyncio.StreamWriter, next_seq: int, history: History, sent: list[int]
    ) -> None:
        """Send frames from ``next_seq``; sleep on the router's bell when caught up.

        The flag goes up *before* the journal is looked at, and the router looks at the flag
        after its journal write: both sides have syscalls (full fences) between their store
        and their load, so either this side sees the new entries or the router rings. One
        read of the journal per frame: a frame (the router's batch) is all there is until
        the router appends again, which in sync mode is after this frame's round trip."""
        loop = asyncio.get_running_loop()
        tail = JournalTail(self.shipped)
        files = FileShipper(gateway_root(self.cfg), shipped_files(self.cfg))
        heard = loop.time()  # when the standby last got a frame or a heartbeat from here
        try:
            while not self.stopping.is_set():
                bell = loop.create_future()
                self._sleepers.add(bell)
                self.block.words[SOURCE_PARKED] = 1
                try:
                    images = tail.read(next_seq, BATCH)
                    if not images:
                        await _ship(writer, files)  # users and keys change while idle too
                        if loop.time() - heard >= HEARTBEAT_S:
                            await _to_standby(writer, Heartbeat())
                            heard = loop.time()
                        timer = loop.call_later(PARK_S, _wake, bell)
                        await bell
                        timer.cancel()
                        continue
                finally:
                    self._sleepers.discard(bell)
                    if not self._sleepers:
                        self.block.words[SOURCE_PARKED] = 0
                # A gateway logs a command before the router can read it, so the order logs
                # now hold every command of this frame: they go first, and a standby that
                # acknowledges the frame has their ClOrdIDs (sync mode: before any report).
                await _ship(writer, files)
                history.update(b"".join(images))
                self.chain.keep(history)
                await _to_standby(writer, Entries(next_seq, images, history.digest()))
                heard = loop.time()
                next_seq += len(images)
                sent[0] = next_seq - 1
                await asyncio.sleep(0)  # let the acknowledgements in between frames
        finally:
            tail.close()

    def _rung(self) -> None:
        """The router appended: wake every sleeping sender."""
        self.block.appended_bell.drain()
        for bell in self._sleepers:
            _wake(bell)

    async def _report(self) -> None:
        while True:
            self.write_status()
            await asyncio.sleep(STATUS_S)

    def write_status(self) -> None:
        """``replication.json`` and the log: the lag, the standbys, the router's verdict."""
        rep = self.cfg.replication
        doc = {
            "pid": os.getpid(),
            "started": self._started,  # with the pid, what names this process for good
            "mode": rep.mode,
            "sync_timeout_ms": rep.sync_timeout_ms,
            "standbys": sorted(self.peers),
            **self.block.status(),
            "updated_ns": time.time_ns(),
        }
        if doc["degraded"] != self._reported_degraded:
            self._reported_degraded = bool(doc["degraded"])
            if self._reported_degraded:
                log.error(
                    "SYNC REPLICATION SUSPENDED by the router: going on without the standby "
                    "(acked seq %d, journal seq %d, %d standby(s) connected)",
                    doc["acked_seq"], doc["journal_seq"], doc["standbys_connected"],
                )  # fmt: skip
            else:
                log.warning("sync replication resumed at seq %d", doc["acked_seq"])
        self._status.write(doc)  # (var/ full: said once; its reporter goes on: review 291)

    async def run(self) -> None:
        rep = self.cfg.replication
        loop = asyncio.get_running_loop()
        loop.add_reader(self.block.appended_bell.fd, self._rung)
        reporter = asyncio.create_task(self._report())
        server = await asyncio.start_server(  # (mutual TLS: a peer without a certificate
            self.serve, rep.listen_host, rep.listen_port,  # of the CA ends at the handshake)
            ssl=replication_context(rep, server=True),
        )  # fmt: skip
        log.info("replication source on %s:%d (%s)", rep.listen_host, rep.listen_port, rep.mode)
        sd_notify.ready()
        try:
            async with server:
                await self.stopping.wait()
        finally:
            reporter.cancel()
            loop.remove_reader(self.block.appended_bell.fd)
            # End the connections before the block is closed (they write to it): wake the
            # senders (they see ``stopping``) and close the sockets (the ack readers fail).
            for bell in self._sleepers:
                _wake(bell)
            deadline = loop.time() + 5.0
            while True:
                for writer in self._serving.values():
                    # abort, not close: close flushes first, and a standby that stopped
                    # reading never lets a full send buffer flush (it reconnects and gets it
                    # again)
                    writer.transport.abort()
                if self._serving:
                    await asyncio.wait(self._serving, timeout=max(0.0, deadline - loop.time()))
                # a connection accepted as the server closed starts its serve a few steps
                # later: ended too, or its socket outlived the loop (an unclosed transport)
                await asyncio.sleep(0.01)
                if not self._serving or loop.time() >= deadline:
                    break

    def close(self) -> None:
        self.peers.clear()
        self.block.words[CONNECTED] = 0
        self.write_status()  # the file says no standby while no source runs
        self.block.close()


async def _refuse(writer: asyncio.StreamWriter, peer: str, why: str) -> None:
    """Refuse a standby, and say so here too: its operator may watch only the primary (in
    async mode a refused standby shows nowhere else: review 42)."""
    log.error("standby %s refused: %s", peer, why)
    await send(writer, Refused(why))


async def _first_word(reader: asyncio.StreamReader, peer: str) -> Message | None:
    """A peer's first message, small and soon: whatever connects cannot hold this side, nor
    drip it a byte at a time, each inside the silence allowed (review 140); None (logged)
    when it does not come whole in time."""
    within = FIRST_WORD_SILENCES * SILENCE_S
    try:
        async with asyncio.timeout(within):
            return await receive(reader, MAX_PEER_FRAME, SILENCE_S)
    except TimeoutError:
        log.warning("peer %s sent no first message within %.1f s: dropped", peer, within)
        return None
