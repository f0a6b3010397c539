"""The primary's side: serve the journal to a standby, from where it says it is.

It tails the journal files (a reader beside the live writer sees a prefix of what is
written), so it adds nothing to the router's loop: replication is asynchronous, and the
standby's lag (journal end minus its last ack) is logged. The chained hash of the entries
before the standby's ``next_seq`` is computed from the journal and compared with the
standby's: a standby with another history is refused, naming the seq.
"""

from __future__ import annotations

import asyncio
import logging
import time

from config.schema import RingexConfig
from procs.common.journal import JournalReader
from procs.common.records import RecordCodec
from procs.common.topology import journal_dir
from procs.replica.wire import GENESIS, Ack, Entries, Hello, Refused, chain, receive, send

log = logging.getLogger("ringex.replica")

BATCH = 4096  # entries per frame
POLL_S = 0.002  # how often a caught-up sender looks for new entries


class ReplicationSource:
    def __init__(self, cfg: RingexConfig) -> None:
        self.cfg = cfg
        codec = RecordCodec()
        self.reader = JournalReader(
            journal_dir(cfg), slot_size=codec.slot_size, schema_id=codec.schema_id
        )
        self.acked = 0
        self.stopping = asyncio.Event()

    def _digest_before(self, seq: int) -> bytes:
        digest = GENESIS
        if seq > 1:
            for s, image in self.reader.entries(1):
                if s >= seq:
                    break
                digest = chain(digest, image)
        return digest

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            hello = await receive(reader)
            if not isinstance(hello, Hello):
                await send(writer, Refused(f"expected Hello, got {type(hello).__name__}"))
                return
            last = self.reader.last_seq()
            if hello.next_seq > last + 1:
                await send(
                    writer,
                    Refused(f"standby is at seq {hello.next_seq - 1}, the primary at {last}"),
                )
                return
            digest = self._digest_before(hello.next_seq)
            if digest != hello.digest:
                await send(
                    writer,
                    Refused(
                        f"history differs before seq {hello.next_seq}: the standby's journal "
                        "is not a prefix of the primary's"
                    ),
                )
                return
            log.info("standby %s connected at seq %d", peer, hello.next_seq)
            acks = asyncio.create_task(self._acks(reader))
            try:
                await self._stream(writer, hello.next_seq, digest)
            finally:
                acks.cancel()
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            log.warning("standby %s gone: %s", peer, exc)
        finally:
            writer.close()

    async def _acks(self, reader: asyncio.StreamReader) -> None:
        last_log = 0.0
        while True:
            ack = await receive(reader)
            if isinstance(ack, Ack):
                self.acked = ack.seq
                if time.monotonic() - last_log > 5:
                    lag = self.reader.last_seq() - ack.seq
                    log.info("standby acked seq %d (lag %d)", ack.seq, lag)
                    last_log = time.monotonic()

    async def _stream(self, writer: asyncio.StreamWriter, next_seq: int, digest: bytes) -> None:
        while not self.stopping.is_set():
            images: list[bytes] = []
            first = next_seq
            for seq, image in self.reader.entries(next_seq):
                images.append(bytes(image))
                digest = chain(digest, image)
                next_seq = seq + 1
                if len(images) == BATCH:
                    break
            if images:
                await send(writer, Entries(first, images, digest))
            else:
                await asyncio.sleep(POLL_S)

    async def run(self) -> None:
        rep = self.cfg.replication
        server = await asyncio.start_server(self.serve, rep.listen_host, rep.listen_port)
        log.info("replication source on %s:%d", rep.listen_host, rep.listen_port)
        async with server:
            await self.stopping.wait()
