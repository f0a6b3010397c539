"""The replication protocol: length-prefixed msgpack frames over TCP.

    standby -> primary   Hello(next_seq, digest)   "send me entries from next_seq"; digest is
                                                   the standby's chained hash at next_seq - 1
    primary -> standby   Entries(first_seq, images, digest)   contiguous journal entries and
                                                   the primary's chained hash after them
    standby -> primary   Ack(seq)                  entries up to seq are durable here
    primary -> standby   Refused(reason)           and the connection closes

The chained hash (``chain``) covers every slot image in seq order, so a standby that holds
a different history than the primary, not just a shorter one, is refused by name instead of
applying entries on top of it. Replication carries the sequenced stream, never raw gateway
input, so a standby can never order two gateways' commands differently.
"""

from __future__ import annotations

import asyncio
import hashlib
import struct

import msgspec

MAX_FRAME = 64 << 20
_LEN = struct.Struct("<I")


class Hello(msgspec.Struct, tag=1, array_like=True):
    next_seq: int
    digest: bytes


class Entries(msgspec.Struct, tag=2, array_like=True):
    first_seq: int
    images: list[bytes]
    digest: bytes


class Ack(msgspec.Struct, tag=3, array_like=True):
    seq: int


class Refused(msgspec.Struct, tag=4, array_like=True):
    reason: str


Message = Hello | Entries | Ack | Refused
_decoder: msgspec.msgpack.Decoder[Message] = msgspec.msgpack.Decoder(Message)
_encoder = msgspec.msgpack.Encoder()

GENESIS = bytes(16)


def chain(digest: bytes, image: bytes | memoryview) -> bytes:
    """The chained hash after one more entry."""
    return hashlib.blake2b(digest + bytes(image), digest_size=16).digest()


async def send(writer: asyncio.StreamWriter, message: Message) -> None:
    body = _encoder.encode(message)
    writer.write(_LEN.pack(len(body)) + body)
    await writer.drain()


async def receive(reader: asyncio.StreamReader) -> Message:
    (length,) = _LEN.unpack(await reader.readexactly(_LEN.size))
    if length > MAX_FRAME:
        raise ValueError(f"replication frame of {length} bytes, the limit is {MAX_FRAME}")
    return _decoder.decode(await reader.readexactly(length))
