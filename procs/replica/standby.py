"""The secondary's side: receive the primary's journal, make it durable here, apply it hot.

On start it recovers like any instance (its own snapshot + its own journal), then asks the
primary for the entries after its last one, sending the chained hash of its history. Each
frame of entries must start exactly at its next seq and end at the primary's chained hash:
a gap or a different history stops the standby with the reason (exit status 2), never a
silent repair. Entries are appended to its own journal (fsync per the journal policy) and
acknowledged, then applied to its router and matcher state, so at every seq its state hash
equals the primary's. It reconnects with a backoff while the primary is away, resuming from
its last durable entry. ``var/<instance>/run/standby.json`` says where it is.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time

from config.schema import RingexConfig
from procs.common.journal import JournalReader
from procs.common.journal_writer import JournalWriter
from procs.common.records import RecordCodec
from procs.common.topology import journal_dir
from procs.core.recovery import recover
from procs.replica.wire import GENESIS, Ack, Entries, Hello, Refused, chain, receive, send

log = logging.getLogger("ringex.replica")


class StandbyRefusedError(RuntimeError):
    """The standby cannot follow this primary; the message says why."""


class Standby:
    def __init__(self, cfg: RingexConfig) -> None:
        self.cfg = cfg
        self.codec = codec = RecordCodec()
        self.state = recover(cfg, codec=codec)
        directory = journal_dir(cfg)
        self.digest = GENESIS
        if directory.exists():
            reader = JournalReader(directory, slot_size=codec.slot_size, schema_id=codec.schema_id)
            for _seq, image in reader.entries(1):
                self.digest = chain(self.digest, image)
        self.journal = JournalWriter(
            directory,
            slot_size=codec.slot_size,
            schema_id=codec.schema_id,
            segment_bytes=cfg.journal.segment_mb << 20,
            fsync=cfg.journal.fsync,
            fsync_interval_ms=cfg.journal.fsync_interval_ms,
        )
        self.connected = False
        self.stopping = asyncio.Event()
        self._status_at = 0.0

    @property
    def next_seq(self) -> int:
        return self.journal.next_seq

    def receive_entries(self, entries: Entries) -> int:
        """Check, append, apply one frame; returns the last seq now durable and applied."""
        if entries.first_seq != self.next_seq:
            raise StandbyRefusedError(
                f"gap: the primary sent seq {entries.first_seq}, this standby needs {self.next_seq}"
            )
        digest = self.digest
        for image in entries.images:
            digest = chain(digest, image)
        if digest != entries.digest:
            raise StandbyRefusedError(
                f"hash mismatch after seq {entries.first_seq + len(entries.images) - 1}: "
                "the primary's history differs from what arrived"
            )
        self.journal.append(entries.first_seq, b"".join(entries.images), len(entries.images))
        self.journal.sync()  # durable here before it is acknowledged
        self.digest = digest
        decode, apply = self.codec.decode_slot, self.state.apply
        for image in entries.images:
            apply(decode(image))
        return self.next_seq - 1

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
                reader, writer = await asyncio.open_connection(host, port)
            except OSError as exc:
                log.warning("primary %s:%d unreachable (%s); retrying", host, port, exc)
                await asyncio.sleep(pause)
                pause = min(2.0, pause * 2)
                continue
            pause = 0.05
            try:
                await self._follow(reader, writer)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                log.warning("primary connection lost (%s); reconnecting", exc)
            finally:
                self.connected = False
                writer.close()
                self.write_status(force=True)

    async def _follow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await send(writer, Hello(self.next_seq, self.digest))
        self.connected = True
        log.info("following the primary from seq %d", self.next_seq)
        while not self.stopping.is_set():
            message = await receive(reader)
            if isinstance(message, Refused):
                raise StandbyRefusedError(f"the primary refused this standby: {message.reason}")
            if not isinstance(message, Entries):
                raise StandbyRefusedError(f"unexpected {type(message).__name__} from the primary")
            await send(writer, Ack(self.receive_entries(message)))

    def write_status(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._status_at < 1.0:
            return
        self._status_at = now
        path = journal_dir(self.cfg).parent / "run" / "standby.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "pid": os.getpid(),
            "primary": self.cfg.replication.primary,
            "connected": self.connected,
            "last_seq": self.next_seq - 1,
            "digest": self.digest.hex(),
            "updated_ns": time.time_ns(),
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2))
        os.replace(tmp, path)

    def close(self) -> None:
        self.write_status(force=True)
        self.journal.close()
