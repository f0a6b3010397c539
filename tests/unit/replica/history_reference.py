"""The history hash by one pass over a journal from seq 1, no chain key used: the reference
the chained lookups (``HistoryChain.hashes_before``, ``history_before``) are held to."""

from __future__ import annotations

from collections.abc import Iterable

from procs.common.journal_history import History


def hashes_before(
    entries: Iterable[tuple[int, bytes | memoryview]], seqs: Iterable[int]
) -> dict[int, bytes]:
    """The history hash before each of ``seqs`` (seq 1: ``GENESIS``), in one pass over
    ``entries`` (a journal's, from seq 1); a seq past its end + 1 is left out."""
    wanted = sorted({s for s in seqs if s >= 1})
    found: dict[int, bytes] = {}
    history, k = History(), 0
    if wanted and wanted[0] == 1:
        found[1], k = history.digest(), 1
    if k < len(wanted):
        for seq, image in entries:
            history.update(image)
            while k < len(wanted) and wanted[k] == seq + 1:
                found[wanted[k]], k = history.digest(), k + 1
            if k == len(wanted):
                break
    return found
