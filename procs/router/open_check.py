"""Whether this instance's router may open its journal as a primary's.

Two marks say it may not. The fence (``procs.common.epochs``): a promotion put another instance
in its place, and only ``failover.py demote`` makes it a standby. And the follow-only mark a
demote leaves (``procs/common/follow_only.py``): the journal is cut to the promoted instance's
prefix and the fence lifted, but until its standby has followed that primary, its old config (a
unit still naming it, a restart by habit) must not open it as a second primary (review 310).
"""

from __future__ import annotations

import json
from pathlib import Path

from procs.common.epochs import Epochs, JournalFencedError
from procs.common.follow_only import FILE as FOLLOW_ONLY


def check_open(directory: Path) -> None:
    """Raise ``JournalFencedError``, one line naming the file and what to do, when the
    journal in ``directory`` is fenced or follow-only."""
    Epochs.load(directory).check_open(directory)
    path = directory / FOLLOW_ONLY
    if not path.exists():
        return
    try:  # what it says is for the message: its existence is the refusal
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        doc = None
    doc = doc if isinstance(doc, dict) else {}
    primary, epoch = doc.get("primary") or "its primary", doc.get("epoch", "?")
    config = doc.get("config") or "<the .standby.toml demote wrote>"
    raise JournalFencedError(
        f"journal {directory} is follow-only ({path}: demoted to a standby of {primary}, "
        f"epoch {epoch}): this instance must not sequence commands; start it as the standby: "
        f"ringex run --config {config} (which removes the mark once its primary has checked "
        "its history)"
    )
