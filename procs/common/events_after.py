"""Where a reader of a matcher's output stands: ``(seq, part)``, every event of the commands
before ``seq`` and, of the command at ``seq``, the first ``part`` of its events (None: all of
them). A command's events may be cut by a read's end or by a crash in a publish; a matcher
restarting (what its output ring holds) and a gateway restarting (what it handled) both
resume from such a position, and take the rest with ``events_after``."""

from __future__ import annotations

from procs.common.records import Record


def events_after(
    events: list[Record], seq: int, part: int | None
) -> tuple[list[Record], int | None]:
    """The events past ``(seq, part)``: those of later seqs, and of ``seq`` all but the first
    ``part``. Returns them with what is left of ``part`` for a next batch."""
    kept: list[Record] = []
    for event in events:
        at = getattr(event, "seq", 0)
        if at > seq:
            kept.append(event)
        elif at == seq and part is not None:
            if part:
                part -= 1
            else:
                kept.append(event)
    return kept, part
