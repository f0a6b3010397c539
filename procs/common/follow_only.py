"""The follow-only mark a demote leaves on the old primary's journal, in place of the fence.

``failover.py demote`` lifts the fence (``procs.common.epochs``) once the journal is cut to the
promoted instance's prefix, but until the instance has followed that primary it must not
sequence: its old config (``primary.toml``, a systemd unit still naming it, a restart by habit)
would otherwise open the demoted journal as a second primary (review 310). So the rebuild
(``procs/replica/rebuild.py``) writes ``<journal dir>/follow-only.json`` before it lifts the
fence, naming the primary it follows, that primary's epoch and the standby config to start it
with. A router refuses a journal that holds it (``check_open``, which
``procs/router/open_check.py`` calls after the fence's); a standby accepts it, and removes it
once its primary has checked its history (the first message after the epochs that is no
refusal, as it keeps the cluster id: ``standby.py``). A promotion's new epoch removes it too
(``procs/supervisor/promotion.py``: the operator chose to promote this journal).

The mark is written durably (write aside, fsync, rename, fsync the directory); its content
says what to do, its existence is what a router refuses.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Final

from procs.common.durable import make_dirs, replace_durably

FILE: Final = "follow-only.json"


def mark(directory: Path, primary: str, epoch: int, config: str) -> Path:
    """Mark the journal in ``directory`` follow-only: a standby of ``primary`` (host:port,
    "" where not known) in ``epoch``, to be started with ``config`` ("": not written yet)."""
    make_dirs(directory)
    doc = {"primary": primary, "epoch": epoch, "config": config, "at_ns": time.time_ns()}
    path = directory / FILE
    replace_durably(path, json.dumps(doc).encode())
    return path


def marked(directory: Path) -> bool:
    return (directory / FILE).exists()


def clear(directory: Path) -> None:
    (directory / FILE).unlink(missing_ok=True)
