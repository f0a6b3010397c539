"""Another user's ring, as a user who may not read it sees it (``shm.inspect``): never
called stale, skipped by ``ringex shm rm``, and no traceback (a review, 2026-12-03: it was
listed stale, "not a ring", and ``shm rm --stale`` died on its unlink in the sticky
/dev/shm). Run as root, which makes the ring and looks at it from a child that is nobody."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
from collections.abc import Callable

import pytest

from procs.shm_commands import shm_rm
from shm import Ring, StructCodec
from shm.inspect import list_segments

NOBODY = 65534

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to be another user")


def as_nobody(work: Callable[[], object]) -> object:
    """``work()``'s result (JSON), run in a child process that is user nobody."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never back into pytest
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            result = json.dumps(work())
        except BaseException as exc:
            result = json.dumps(f"{type(exc).__name__}: {exc}")
        os.write(write, result.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        said = pipe.read()
    os.waitpid(pid, 0)
    return json.loads(said)


def test_another_users_live_ring_is_not_stale_and_shm_rm_skips_it(instance: str) -> None:
    ring = Ring.create(instance, "r", StructCodec("2q"), capacity=4, consumers=["a"])

    def seen() -> object:
        (segment,) = list_segments(instance)
        return [segment.stale, segment.foreign]

    def rm(stale: bool) -> Callable[[], object]:
        def run() -> object:
            err = io.StringIO()
            args = argparse.Namespace(instance=instance, stale=stale, all=False, force=not stale)
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = shm_rm(args)
            return [code, err.getvalue()]

        return run

    try:
        assert as_nobody(seen) == [False, True]
        skipped = f"skipping {instance}.r: another user's (run as that user)\n"
        assert as_nobody(rm(stale=True)) == [0, skipped]  # --stale: all it may judge
        assert as_nobody(rm(stale=False)) == [1, skipped]  # --instance --force: not done
        assert [s.name for s in list_segments(instance)] == ["r"]  # still there, and live
    finally:
        ring.close()
