"""The replication protocol: length-prefixed msgpack frames over TCP.

    standby -> primary   Hello(next_seq, digest, epoch, schema_id, slot_size, rules)   "send
                                                   me entries from next_seq"; digest is the
                                                   standby's history hash up to next_seq - 1,
                                                   epoch its journal's newest, then its records
                                                   and its rules version
    primary -> standby   EpochHistory(epochs, schema_id, slot_size, rules)   the primary's epochs
                                                   (``epochs.py``) and records, the first
                                                   answer to a Hello or an AskEpochs
    primary -> standby   Entries(first_seq, images, digest)   contiguous journal entries and
                                                   the primary's history hash after them
    standby -> primary   Ack(seq)                  entries up to seq are durable here: after
                                                   every Entries, Heartbeat and StateFile,
                                                   so a primary that hears nothing for
                                                   STANDBY_SILENCE_S drops the standby (a
                                                   dead host sends no FIN)
    primary -> standby   Refused(reason)           and the connection closes
    primary -> standby   StateFile(path, offset, data, reset)   a gateway state file's new
                                                   bytes (``files.py``); its Ack says only "heard"
    operator -> primary  AskEpochs()               only the EpochHistory, then the connection
                                                   closes (``failover.py demote``)
    operator -> primary  AskDigests(seqs)          the history hash before each of seqs
    primary -> operator  Digests(last_seq, digests)  (one for each seq at most last_seq + 1),
                                                   then the connection closes: where a
                                                   standby ahead of its restarted primary
                                                   agrees with it (``rebuild.py``)
    primary -> standby   Heartbeat()               every HEARTBEAT_S while there is nothing
                                                   else to send: a standby that hears nothing
                                                   for SILENCE_S takes the primary for gone
                                                   (a host that died sends no FIN) and
                                                   reconnects

Both sides refuse a peer built with other journaled records (the journal's schema id,
``RecordCodec.journal_schema_id``, and the slot size), as a journal refuses a segment of
them: a standby would journal and decode the primary's slot images as its own.

Epochs fence a promoted standby's old primary: a primary refuses a standby of a newer epoch
than its own and marks its own journal fenced; a standby refuses a primary of an older epoch
than its own, and one whose journal goes on past where the primary's epoch began.

The history hash (``History``, ``procs/common/journal_history.py``) covers every slot image
in seq order, chained in blocks of 65,536 entries whose keys each side keeps beside its
journal, so a standby that holds a different history than the primary, not just a shorter
one, is refused by name instead of applying entries on top of it, and neither side reads
more than a block to say its hash. A peer of a build before the chain sends a 16-byte digest
(``older_peer``) and is refused, saying so. Replication carries the sequenced stream, never
raw gateway input, so a standby can never order two gateways' commands differently.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Annotated

import msgspec

from procs.common.journal_history import GENESIS, History, older_peer

__all__ = ["GENESIS", "History", "older_peer"]  # (and the messages below)

MAX_FRAME = 64 << 20
#: What a standby sends (a Hello, an AskEpochs, an Ack) is a few dozen bytes.
MAX_PEER_FRAME = 4 << 10
HEARTBEAT_S = 0.5
SILENCE_S = 2.0
#: The primary's patience: longer than the standby's, as a standby's ack waits for its fsync
#: of a whole frame, which a busy disk may hold up for seconds.
STANDBY_SILENCE_S = 10.0
_LEN = struct.Struct("<I")
#: Every number a peer sends: a seq, an epoch, an offset. A frame with one past int64 (what
#: the journal, the epochs file and the shared words hold) does not decode: a FrameError.
I64 = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
MAX_CLUSTER_CHARS = 64  # ``cluster.MAX_ID_CHARS``


class Hello(msgspec.Struct, tag=1, array_like=True):
    next_seq: I64
    digest: bytes
    epoch: I64 = 1
    #: the standby's records (``RecordCodec``): a primary of other records refuses it (0:
    #: not said, an older standby)
    schema_id: I64 = 0
    slot_size: I64 = 0
    #: the rules version it replays under (``procs/common/rules_version.py``; 0: not said)
    rules: I64 = 0
    #: its replicated history's id (``cluster.py``; "": not said)
    cluster: Annotated[str, msgspec.Meta(max_length=MAX_CLUSTER_CHARS)] = ""


class Entries(msgspec.Struct, tag=2, array_like=True):
    first_seq: I64
    images: list[bytes]
    digest: bytes


class Ack(msgspec.Struct, tag=3, array_like=True):
    seq: I64


class Refused(msgspec.Struct, tag=4, array_like=True):
    reason: str


class StateFile(msgspec.Struct, tag=5, array_like=True):
    path: str  # relative to var/<instance>/gateway
    offset: I64
    data: bytes
    reset: bool  # the file was replaced: the standby's copy starts again with ``data``
    #: a reset's whole size: the standby keeps its old copy until it has that many bytes
    #: (0: ``data`` is all of it; what an older primary sends)
    size: I64 = 0


class EpochHistory(msgspec.Struct, tag=6, array_like=True):
    epochs: list[tuple[I64, I64]]  # (epoch, first_seq), oldest first
    #: the primary's records: a standby of other records refuses to follow (0: not said)
    schema_id: I64 = 0
    slot_size: I64 = 0
    rules: I64 = 0  # and its rules version: a standby of another refuses to follow
    #: the primary's replicated history's id (``cluster.py``; "": not said)
    cluster: Annotated[str, msgspec.Meta(max_length=MAX_CLUSTER_CHARS)] = ""


class AskEpochs(msgspec.Struct, tag=7, array_like=True):
    pass


class Heartbeat(msgspec.Struct, tag=8, array_like=True):
    pass


#: The most seqs one AskDigests names (its frame stays under ``MAX_PEER_FRAME``).
MAX_DIGESTS = 64


#: A journal seq (the first is 1): a question about seq 0 fails to decode (review 125: it was
#: dropped from the answer, which then no longer lined up with the question).
Seq = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]


class AskDigests(msgspec.Struct, tag=9, array_like=True):
    seqs: Annotated[list[Seq], msgspec.Meta(max_length=MAX_DIGESTS)]


class Digests(msgspec.Struct, tag=10, array_like=True):
    last_seq: I64
    digests: list[bytes]  # for each seq asked, in its order, up to last_seq + 1


Message = (
    Hello | Entries | Ack | Refused | StateFile | EpochHistory | AskEpochs | Heartbeat
    | AskDigests | Digests
)  # fmt: skip
_decoder: msgspec.msgpack.Decoder[Message] = msgspec.msgpack.Decoder(Message)
_encoder = msgspec.msgpack.Encoder()


#: What a side missing entries it must hash is told: a key of the history chain stands for
#: the entries of its block once kept (``journal_history.py``), the entries since the last
#: key kept do not.
ARCHIVE_KEPT = (
    "replication hashes the journal from the last key its history chain keeps "
    "(history.chain beside the segments): keep the segments archived to journal.archive_dir "
    "from that block on (or put them back there)"
)


#: A side's journaled records and rules: ``(journal schema id, slot_size, rules version)``.
Build = tuple[int, int, int]


def records_differ(peer: str, theirs: Build, own: str, mine: Build) -> str | None:
    """Why a peer whose journaled records (``(journal_schema_id, slot_size)``) and rules
    version are ``theirs`` may not replicate with this side's ``mine``, or None: the same,
    or not said (schema 0, an older peer: the history hash check still refuses other slot
    images). A peer that says its records but not its rules (0) is refused: entries it
    sequenced under rules this side cannot name would be replayed under this side's.
    ``peer`` and ``own`` name each side's in the reason."""
    if not theirs[0] or theirs == mine:
        return None
    return (
        f"{peer} records (schema {theirs[0]:#x}, {theirs[1]}-byte slots, rules version "
        f"{theirs[2]}) are not {own} (schema {mine[0]:#x}, {mine[1]}-byte slots, rules "
        f"version {mine[2]}): a standby runs the primary's build"
    )


class FrameError(ValueError):
    """A frame this side cannot read: over its size limit, or not a message of this
    protocol version (the peer runs other code, or the stream is corrupt)."""


async def send(writer: asyncio.StreamWriter, message: Message) -> None:
    body = _encoder.encode(message)
    writer.write(_LEN.pack(len(body)) + body)
    await writer.drain()


async def receive(
    reader: asyncio.StreamReader, limit: int = MAX_FRAME, silence_s: float | None = None
) -> Message:
    """The next message, at most ``limit`` bytes (a peer's message of a few bytes, a Hello
    or an Ack, gets a small one: a hostile peer cannot make this side buffer 64 MiB). With
    ``silence_s``, ``TimeoutError`` when no byte comes for that long: a silent peer is
    noticed, one still sending a long frame over a slow link is not cut off."""
    (length,) = _LEN.unpack(await _read(reader, _LEN.size, silence_s))
    if length > limit:
        raise FrameError(f"replication frame of {length} bytes, the limit is {limit}")
    body = await _read(reader, length, silence_s)
    try:
        return _decoder.decode(body)
    except msgspec.DecodeError as exc:  # ValidationError included
        raise FrameError(f"replication frame of {length} bytes does not decode: {exc}") from None


async def _read(reader: asyncio.StreamReader, n: int, silence_s: float | None) -> bytes:
    if silence_s is None:
        return await reader.readexactly(n)
    chunks: list[bytes] = []
    left = n
    while left:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns the read's result
        # when a cancel comes as the read ends, and the cancel is lost (a standby cancelled
        # as a frame arrived went on following: gh-86296, fixed by 3.12's wait_for)
        async with asyncio.timeout(silence_s):
            chunk = await reader.read(min(left, 1 << 20))
        if not chunk:
            raise asyncio.IncompleteReadError(b"".join(chunks), n)
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


async def receive_within(reader: asyncio.StreamReader, timeout_s: float) -> Message:
    """``receive``, or ``TimeoutError`` when nothing (not even a Heartbeat's byte) came for
    ``timeout_s``."""
    return await receive(reader, silence_s=timeout_s)
