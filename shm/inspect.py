"""Find and remove the segments and semaphores of ringex instances (``ringex shm``).

Linux keeps POSIX shared memory in ``/dev/shm/<name>`` and named semaphores in
``/dev/shm/sem.<name>``; every ringex name starts with ``ringex.<instance>.``. A segment is
stale when no process it names (creator, producer, attached consumers) is alive: what a
crashed or killed instance leaves behind; a segment that names none (a counters page) is
stale when no ring of its instance has a live process.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, replace
from pathlib import Path

import posix_ipc

from shm import header as h
from shm.errors import ShmPermissionError
from shm.liveness import holder_alive
from shm.region import PREFIX
from shm.wait import fifo_path

SHM_DIR = Path("/dev/shm")


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    instance: str
    name: str
    size: int
    is_ring: bool  # the header carries the ring magic
    capacity: int
    slot_size: int
    cursor: int
    pids: tuple[int, ...]  # creator, producer, attached consumers (0s dropped)
    live_pids: tuple[int, ...]
    semaphores: tuple[str, ...]
    #: another user's, which this one may not read: whose it is cannot be told, so it is
    #: never called stale (a review, 2026-12-03: another user's live ring was, and ``shm rm
    #: --stale`` ended in a traceback on it)
    foreign: bool = False

    @property
    def stale(self) -> bool:
        return not self.live_pids and not self.foreign


def list_segments(instance: str | None = None) -> list[SegmentInfo]:
    """Every ringex segment (of ``instance``, if given), with its semaphores (named also by
    a FIFO beside one whose semaphore is gone: ``remove`` takes both)."""
    if not SHM_DIR.is_dir():
        return []
    sems: dict[tuple[str, str], list[str]] = {}
    segments: list[tuple[str, str, Path]] = []
    for entry in SHM_DIR.iterdir():
        kind, _, rest = entry.name.partition(".")
        sem = kind in ("sem", "fifo")  # a semaphore, or the FIFO beside one (shm/wait.py)
        base = rest if sem else entry.name
        parts = base.split(".")
        if len(parts) < 3 or parts[0] != PREFIX:
            continue
        if instance is not None and parts[1] != instance:
            continue
        if sem:
            names = sems.setdefault((parts[1], parts[2]), [])
            if "/" + base not in names:
                names.append("/" + base)
        else:
            segments.append((parts[1], ".".join(parts[2:]), entry))
    found = [
        _describe(inst, name, path, sems.pop((inst, name), [])) for inst, name, path in segments
    ]
    # A segment that is not a ring (a counters page) names no process: it lives as long as
    # its instance does, that is while a ring of the instance has a live process.
    live: dict[str, tuple[int, ...]] = {}
    for seg in found:
        if seg.is_ring and seg.live_pids:
            live[seg.instance] = tuple(sorted({*live.get(seg.instance, ()), *seg.live_pids}))
    found = [
        replace(seg, live_pids=live[seg.instance])
        if not seg.is_ring and not seg.live_pids and seg.instance in live
        else seg
        for seg in found
    ]
    for (inst, name), orphans in sems.items():  # semaphores whose segment is gone
        found.append(SegmentInfo(inst, name, 0, False, 0, 0, 0, (), (), tuple(sorted(orphans))))
    return sorted(found, key=lambda s: (s.instance, s.name))


def _describe(instance: str, name: str, path: Path, sems: list[str]) -> SegmentInfo:
    try:
        size = path.stat().st_size
    except FileNotFoundError:  # removed since it was listed
        size = 0
    pids: list[tuple[int, int]] = []  # each with its start time, 0 where none was written
    capacity = slot = cursor = 0
    is_ring = foreign = False
    try:
        with path.open("rb") as f:
            head = f.read(h.LINE * h.FIRST_CONSUMER_LINE)
            if len(head) >= h.STATIC.size:
                fields = h.STATIC.unpack_from(head, 0)
                is_ring = fields[0] == h.MAGIC
                words = _words(head)  # what the segment holds of them: it may be cut short
                started = _word(words, h.CREATOR_START)
                if fields[0] == h.NO_MAGIC:  # a ring being made: the magic comes
                    pids.append((fields[-1], started))  # last, its creator is written first
            if is_ring:
                _m, _v, slot, capacity, _schema, maxc, _hs, _created, creator = fields
                pids.append((creator, started))
                if len(words) > h.P_PID:
                    cursor = words[h.P_CURSOR]
                    pids.append((words[h.P_PID], _word(words, h.P_PID_START)))
                if 1 <= maxc <= h.MAX_CONSUMERS:  # a corrupted count never sizes a read
                    lines = _words(f.read(h.LINE * maxc))
                    for index in range(maxc):
                        base = index * h.LINE // h.WORD
                        if base + h.C_PID < len(lines) and lines[base + h.C_STATE] != h.STATE_FREE:
                            started = _word(lines, base + h.C_PID_START)
                            pids.append((lines[base + h.C_PID], started))
    except PermissionError:
        foreign = True
    except OSError:
        pass
    pids = [(pid, started) for pid, started in pids if pid]
    live = tuple(pid for pid, started in pids if holder_alive(pid, started))
    return SegmentInfo(
        instance,
        name,
        size,
        is_ring,
        capacity,
        slot,
        cursor,
        tuple(pid for pid, _ in pids),
        live,
        tuple(sorted(sems)),
        foreign,
    )


def _word(words: memoryview, index: int) -> int:
    """Word ``index`` of ``words``, 0 past their end (a segment cut short)."""
    return int(words[index]) if index < len(words) else 0


def _words(raw: bytes) -> memoryview:
    """``raw``'s whole 8-byte words (a segment cut short may end mid-word)."""
    return memoryview(raw)[: len(raw) // h.WORD * h.WORD].cast("q")


def remove(segment: SegmentInfo) -> None:
    """Unlink the segment, its semaphores and the FIFOs beside them (processes that have
    them open keep them)."""
    posix_name = f"/{PREFIX}.{segment.instance}.{segment.name}"
    try:
        posix_ipc.unlink_shared_memory(posix_name)
    except posix_ipc.ExistentialError:
        pass
    except posix_ipc.PermissionsError as exc:  # another user's, in the sticky /dev/shm
        raise ShmPermissionError(
            f"segment {posix_name!r}: no permission to remove it (another user's instance? "
            "run as the user that started it)"
        ) from exc
    for sem in segment.semaphores:
        with contextlib.suppress(FileNotFoundError):  # first: it is found by its name too
            os.unlink(fifo_path(sem))
        with contextlib.suppress(posix_ipc.ExistentialError):
            posix_ipc.unlink_semaphore(sem)


def remove_instance(instance: str) -> int:
    """Remove every segment of ``instance``; returns how many."""
    segments = list_segments(instance)
    for segment in segments:
        remove(segment)
    return len(segments)
