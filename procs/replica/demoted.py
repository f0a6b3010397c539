"""What a demote sets aside under ``var/<instance>/demoted/<stamp>/``, and says of it.

``rebuild.py`` fills a ``Rebuilt`` as it goes, so a rebuild that fails midway still says
what it had moved (review 310: a demote that crashed after its cut named nothing, and its
retry, finding nothing more to cut, never named the cut either). ``earlier_cuts`` finds the
cut an interrupted demote left: a journal copy set aside since the fence that still holds,
which goes on where the journal now ends.
"""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass, field
from pathlib import Path

from procs.common.journal import JournalError, JournalReader

#: The ``<stamp>`` of ``demoted/<stamp>``, UTC, to the second.
STAMP = "%Y%m%dT%H%M%S"


@dataclass
class Rebuilt:
    kept_seq: int  # the journal's last seq now
    cut: int  # entries moved out of the journal
    aside: Path  # where what was set aside went (may not exist: nothing was)
    moved: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)  # the embedded database: not kept
    warnings: list[str] = field(default_factory=list)
    #: ``(first seq, last seq, journal)`` cut by an earlier demote that did not finish
    earlier: list[tuple[int, int, Path]] = field(default_factory=list)

    @classmethod
    def begun(cls, home: Path) -> Rebuilt:
        """Nothing done yet; what it sets aside goes to ``home/demoted/<now>``."""
        return cls(0, 0, home / "demoted" / time.strftime(STAMP, time.gmtime()))

    def report(self) -> list[str]:
        """What was cut, found cut, set aside, removed and warned of, a line each."""
        lines = []
        if self.cut:
            lines.append(
                f"  {self.cut} entries the primary's history does not hold (written after its "
                f"epoch began, or after a tail it lost) were cut: kept in {self.aside}"
            )
        for first, last, journal in self.earlier:
            lines.append(
                f"  seqs {first}..{last} were cut by an earlier demote that did not finish: "
                f"kept in {journal}"
            )
        lines += [f"  set aside: {path}" for path in self.moved]
        lines += [  # (it said "set aside" of the database, which is gone: a reread)
            f"  removed: {path} (the embedded database: a promoted writer rebuilds it)"
            for path in self.removed
        ]
        return lines + [f"  WARNING: {warning}" for warning in self.warnings]


def earlier_cuts(
    home: Path, fenced_ns: int, next_seq: int, slot_size: int, schema_id: int
) -> list[tuple[int, int, Path]]:
    """The journals under ``home/demoted/*/journal`` set aside since ``fenced_ns`` (the fence
    that still holds: a demote that cut them and failed before lifting it) that begin at
    ``next_seq``, the journal's next (an older demote's cut was followed past since), as
    ``(first seq, last seq, journal)``."""
    since = fenced_ns // 1_000_000_000
    found = []
    for journal in sorted(home.glob("demoted/*/journal")):
        try:
            stamp = calendar.timegm(time.strptime(journal.parent.name, STAMP))
        except ValueError:
            continue  # not a demote's
        if stamp < since:
            continue
        try:
            reader = JournalReader(journal, slot_size=slot_size, schema_id=schema_id)
            segments = reader.segments()
            last = reader.last_seq()
        except (OSError, JournalError):
            continue  # unreadable: not this journal's tail (the operator has it still)
        if segments and segments[0][0] == next_seq <= last:
            found.append((next_seq, last, journal))
    return found
