"""Replay in two processes, as the exchange runs live: a forked child executes the matchers
over the journal tail and streams each command with its events to the parent, which
re-applies the command to the accounts and settles the events.

Why: a restart replays its tail through both halves of the exchange, and in one process
their costs add up (here, per command of the exchange-core mix: about 1 us reading and
decoding the journal, 2.2 us in the matcher, 3 us in the router's accounts). Live, router
and matchers are separate processes; a replay split the same way takes about its larger
half instead of the sum. The matchers need nothing of the router's state (they execute
journaled commands, all of them accepted already), so the child runs ahead freely, as far
as the pipe's buffer lets it (then it blocks: memory stays bounded).

Frames on the pipe: ``<u32 length><u8 kind><msgpack body>``. ``CHUNK`` frames carry
``[[command, [events of each matcher it went to]], ...]`` for up to ``CHUNK_COMMANDS``
commands; the parent decodes one with a single C call (a typed msgspec decoder over the
record union), so what it does per command is the accounts' work. One closing frame ends
the stream: ``STATES`` (every matcher's ``snapshot()`` after the tail) or ``FAILED``.

Failures. One in the child (a corrupt journal, a matcher that raises) ends the stream early
and raises ``ReplayChildError`` here; the caller replays serially from the start, which raises
the same error with its usual detail (a damaged journal is rare, so its double read costs
nothing that matters). One in the parent (a command the accounts refuse) kills the child
and propagates. The child never returns into the caller's code: it leaves by ``os._exit``.

The cyclic garbage collector is off on both sides while the tail replays (what a replay
allocates, records and event lists, holds no cycles: reference counts free it). In the child
it matters most: a collection walks every object the fork inherited, and touching them makes
the kernel copy their pages (a 1M-command tail in 3.8 s with it off, 5.0 s on, here).

Rejected: threads (the GIL serialises the two halves); a shared-memory ring (the pipe moves
~100 bytes a command in chunks of thousands, far below what it costs to make them).
"""

from __future__ import annotations

import gc
import os
import signal
import struct
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from typing import Any, BinaryIO, Final

import msgspec

from procs.common.record_codec import RecordCodec
from procs.common.records import Record
from procs.core.engine import Matcher

#: What the parent does with journaled commands, each with its events (matcher by matcher,
#: in the order ``route`` named them): a chunk at a time.
Step = Callable[[list[tuple[Record, list[list[Record]]]]], None]
Route = Callable[[Record], Sequence[str]]

CHUNK_COMMANDS: Final = 2048
CHUNK, STATES, FAILED = 1, 2, 3
_FRAME: Final = struct.Struct("<IB")


class ReplayChildError(Exception):
    """The replay child stopped before the end of the tail (``FAILED`` or no closing frame)."""


def replay_in_child(
    entries: Iterable[tuple[int, Any]],
    last: int,
    codec: RecordCodec,
    route: Route,
    matchers: Mapping[str, Matcher],
    step: Step,
    keep: Container[type],
) -> dict[str, bytes]:
    """Run ``matchers`` over ``entries`` (journal ``(seq, image)`` pairs, read in the child)
    up to seq ``last`` in a forked child, while this process calls ``step`` on the commands
    in order, a chunk at a time, each with its events whose type is in ``keep`` (the rest,
    book levels above all, are half the events and only market data's). Returns each
    matcher's state after the tail (``Matcher.snapshot``); raises ``ReplayChildError``, or
    whatever ``step`` raised (the child killed and reaped first)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never back into the caller's frames
        status = 1
        try:
            gc.disable()  # for good: it exits after the tail (module docstring)
            os.close(read_fd)
            with open(write_fd, "wb") as out:
                _child(out, entries, last, codec, route, matchers, keep)
            status = 0
        finally:
            os._exit(status)
    os.close(write_fd)
    reaped = False
    collecting = gc.isenabled()
    gc.disable()  # while the tail replays (module docstring)
    try:
        with open(read_fd, "rb") as inp:
            states = _parent(inp, codec, step)
        os.waitpid(pid, 0)
        reaped = True
        return states
    finally:
        if not reaped:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        if collecting:
            gc.enable()


def _child(
    out: BinaryIO,
    entries: Iterable[tuple[int, Any]],
    last: int,
    codec: RecordCodec,
    route: Route,
    matchers: Mapping[str, Matcher],
    keep: Container[type],
) -> None:
    encode = msgspec.msgpack.Encoder().encode
    decode = codec.decode_slot
    chunk: list[tuple[Record, list[list[Record]]]] = []
    try:
        for seq, image in entries:
            if seq > last:
                break
            command = decode(image)
            chunk.append(
                (
                    command,
                    [
                        [event for event in matchers[name].execute(command) if type(event) in keep]
                        for name in route(command)
                    ],
                )
            )
            if len(chunk) == CHUNK_COMMANDS:
                _send(out, CHUNK, encode(chunk))
                chunk.clear()
        if chunk:
            _send(out, CHUNK, encode(chunk))
        states = {name: matcher.snapshot() for name, matcher in matchers.items()}
    except BrokenPipeError:
        raise  # the parent is gone: nobody to tell
    except Exception as exc:  # told to the parent, which replays serially to report it
        _send(out, FAILED, repr(exc).encode())
        return
    _send(out, STATES, encode(states))


def _send(out: BinaryIO, kind: int, body: bytes) -> None:
    out.write(_FRAME.pack(len(body), kind))
    out.write(body)


def _parent(inp: BinaryIO, codec: RecordCodec, step: Step) -> dict[str, bytes]:
    union: Any = codec.union
    chunks = msgspec.msgpack.Decoder(list[tuple[union, list[list[union]]]]).decode
    states = msgspec.msgpack.Decoder(dict[str, bytes]).decode
    while True:
        head = inp.read(_FRAME.size)
        if len(head) < _FRAME.size:
            raise ReplayChildError("the replay child ended without its closing frame")
        length, kind = _FRAME.unpack(head)
        body = inp.read(length)
        if len(body) < length:
            raise ReplayChildError(f"the replay child's frame ends at {len(body)} of {length} B")
        if kind == CHUNK:
            step(chunks(body))
        elif kind == STATES:
            return states(body)
        else:
            raise ReplayChildError(f"the replay child failed: {body.decode(errors='replace')}")
