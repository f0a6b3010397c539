"""Which replicated history a journal belongs to: an id its first primary makes, that every
standby takes on from its primary and keeps through promotions (a demoted primary's rebuild
takes the promoted instance's, which may be a new one: ``rebuild.py``).

A standby's Hello says its epoch, and a newer epoch than a primary's fences that primary
(``source.py``: a promoted standby's old primary stops). A standby of *another* instance,
pointed here by a wrong address, has epochs of an unrelated history, and its newer epoch
fenced a healthy primary (review 33's documented limit). So both sides say their cluster
id: a primary refuses a standby of another id before its epoch counts, and a standby
refuses a primary of another id. An id not said ("", a peer of an older build, a standby
that has taken no frame yet) is not compared: the history check still stands behind it.

The file is ``<journal dir>/cluster`` (the id in hex), written durably. A primary makes one
when its journal has none; a standby writes its primary's once the primary has checked its
history (the first message after the epochs that is no refusal), not at the handshake: a
primary whose history turns out not to fit leaves it none.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Final

from procs.common.durable import make_dirs, replace_durably

FILE: Final = "cluster"
#: Longest id a peer may say (a uuid's hex is 32 characters).
MAX_ID_CHARS: Final = 64


def load(directory: Path) -> str:
    """The journal's cluster id, or "" where it has none yet."""
    try:
        return (directory / FILE).read_text(errors="replace").strip()[:MAX_ID_CHARS]
    except FileNotFoundError:
        return ""


def load_or_make(directory: Path) -> str:
    """A primary's: the journal's id, made (and kept) where it has none."""
    found = load(directory)
    if found:
        return found
    made = uuid.uuid4().hex
    keep(directory, made)
    return made


def keep(directory: Path, cluster: str) -> None:
    make_dirs(directory)
    replace_durably(directory / FILE, cluster.encode())


def differ(peer: str, theirs: str, mine: str) -> str | None:
    """Why a peer of cluster ``theirs`` is not of this side's ``mine``, or None (the same,
    or either not said)."""
    if not theirs or not mine or theirs == mine:
        return None
    return (
        f"the {peer} belongs to another replicated history (cluster {theirs[:MAX_ID_CHARS]}, "
        f"this one's {mine}): check the replication address"
    )
