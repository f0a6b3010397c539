"""Review 193, part (e): two interpreters with different ``PYTHONHASHSEED``s give the same
records and snapshots (the module docstring of ``test_review193_determinism.py`` says the
rest; its command stream and clock are imported from there)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from procs.common.records import Record
from procs.core.recovery import fresh
from tests.unit.router.test_review187_shell_hostile import CODEC
from tests.unit.router.test_review193_determinism import T0, stream
from tests.unit.router.test_router import config


def core_run() -> str:
    """The stream through a bare ``Sequencer`` and ``Matcher`` (each command settled before
    the next, at a fixed clock): a digest of every record out and both snapshots."""
    cfg = config("core", Path("unused"))
    sequencer, matchers = fresh(cfg)
    out: list[Record] = [*sequencer.fee_changes(T0), *sequencer.rules_changes(T0)]
    for record in out:
        for name in sequencer.matchers_for(record):
            matchers[name].execute(record)
    for k, (_gateway, command) in enumerate(c for step in stream() for c in step):
        decision = sequencer.submit(command, T0 + k)
        out += [r for r in (decision.command, decision.reply) if r is not None]
        if decision.command is not None:
            for name in sequencer.matchers_for(decision.command):
                events = matchers[name].execute(decision.command)
                sequencer.settle(events)
                out += events
    snapshots = sequencer.snapshot() + matchers["m1"].snapshot()
    return hashlib.blake2b(bytes(CODEC.encode_slots(out)) + snapshots).hexdigest()


def test_the_outputs_do_not_depend_on_the_hash_seed() -> None:
    """Two interpreters with different ``PYTHONHASHSEED``s (set and dict order of ints is
    the same, of strs and tuples of them not): the same records and snapshots."""
    code = f"from {__name__} import core_run; print(core_run())"
    root = Path(__file__).resolve().parents[3]
    digests = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "4242")
    }
    assert digests == {core_run()}
