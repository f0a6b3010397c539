"""Where the ExecIDs of reports that no event makes start: above every one a previous run of
the gateway may have used, whatever the clock did meanwhile.

A status answer, a Restated report or a refusal by the gateway itself takes the next number of
a counter (``order_replies.py``). Starting it at the wall clock alone repeats ids after a
restart with the clock stepped back (NTP), and a client that drops reports by a known ExecID
drops the new ones. So ids are handed out in blocks reserved in a file: before the first id of
a block is used, "ids up to N are reserved" is made durable (written aside, fsynced, renamed
over: ``procs.common.durable``), and a restart starts above N. A block of ``BLOCK`` ids keeps
those writes to one per million reports; a restart skips at most the rest of one block, a
sliver of the 2**63 ids a counter at today's clock in ns still has room for. The mark is
written as ``N CRC\n`` (its CRC-32 in hex): a mark that fails it, or lacks its newline, is
refused, never taken for a lower one (review 139: a flipped digit, or a file cut short,
read as a lower mark, and ids repeated); a bare ``N\n`` of an older build is taken as it
reads.

A standby gets the file as the replica's shipper next looks at it (``procs/replica/files.py``),
so the copy a promoted standby starts from may be one reservation old: its primary may have
used ids up to a block above the copy's mark. A counter therefore starts a block above the
mark (``counter_start``); a shipper that looks more often than a block's 2**20 reports go out
(seconds, at any rate) keeps the copy within one reservation. Not covered: a primary that
dies in its first block after a start of its own with the clock behind the mark, before the
shipper saw that block's reservation (both start from the same mark; only the standby
skipping further at its promotion would cover it).

Rejected: logging the high mark in the order log (its entry kinds are the orders', and a
report sent between two of its writes would not be covered), or deriving the start from the
newest logged client ref (an id handed out after the last logged ref is not covered either).
"""

from __future__ import annotations

import time
from pathlib import Path

from procs.common.crc_frames import crc_hex
from procs.common.durable import PRIVATE, make_dirs, replace_durably

#: Ids reserved by one durable write.
BLOCK = 1 << 20
#: The name of the file in the gateway's directory.
FILE_NAME = "exec-ids"
#: How far a promoted standby's counters skip past the mark it holds (``skip_at_promotion``):
#: 4,096 blocks, more than a primary reserves between two of the replica's looks.
PROMOTION_SKIP = 1 << 32


class ExecIdBlocks:
    """The reservations of one gateway's counter ExecIDs, in ``path`` (None: kept in memory
    only, for an order entry without a directory; ids then start at the clock, as unique
    across restarts as the clock is monotonic).

    ``start()`` is above every id reserved before; ``counter_start()`` is where a counter
    stands before its first id (ids handed out are above it), a block above ``start()``
    (see the top); ``reserve(last)`` is called with the last id used (or the start) when
    the counter needs the next one, and returns the new block's end, durable on return:
    ids up to it may be used. Called from the gateway's event loop only."""

    def __init__(self, path: Path | None, block: int = BLOCK) -> None:
        if block < 1:
            raise ValueError(f"an ExecID block of {block} ids: at least 1 (path={path})")
        self.path = path
        self.block = block

    def start(self) -> int:
        """Not below the file's mark (the end of every block reserved before: the gateway counts
        from the block above it, ``counter_start``), and not below the clock in ns
        (a gateway that never wrote the file, or a standby promoted without it, starts as the
        counter always did)."""
        clock = time.time_ns()
        if self.path is None:
            return clock
        try:
            text = self.path.read_bytes()
        except FileNotFoundError:
            return clock
        mark = parse_mark(text)
        if mark is None:  # written whole by a rename, never torn: damage, or a hand's edit
            raise ValueError(
                f"{self.path}: {text[:40]!r} is not an ExecID mark (a decimal integer, its "
                "CRC-32 and a newline); remove the file to start the ExecIDs at the clock"
            )
        return max(mark, clock)

    def counter_start(self) -> int:
        """Where a counter starts: a block above ``start``, above every id the primary of a
        standby's copy one reservation old may have used."""
        return self.start() + self.block

    def reserve(self, last: int) -> int:
        """Reserve the ids after ``last`` up to the returned end: written durably first."""
        end = last + self.block
        if self.path is not None:
            make_dirs(self.path.parent)
            replace_durably(self.path, mark_text(end), mode=PRIVATE)  # as the gateway's files
        return end


def mark_text(end: int) -> bytes:
    """What the file holds for the mark ``end``: ``N CRC\n``."""
    mark = b"%d" % end
    return b"%s %s\n" % (mark, crc_hex(mark).encode())


def parse_mark(text: bytes) -> int | None:
    """The mark ``text`` holds (``N CRC\n``, or an older build's ``N\n``), or None."""
    if not text.endswith(b"\n"):
        return None
    number, _, crc = text[:-1].partition(b" ")
    # (past 19 digits no mark: int() of 4,300 or more raises, review 188)
    if not number.isdigit() or len(number) > 19 or (crc and crc != crc_hex(number).encode()):
        return None
    return int(number)


def skip_at_promotion(path: Path, skip: int = PROMOTION_SKIP) -> int:
    """A standby becomes the primary: its copy of ``path`` may be a reservation or more
    behind what the old primary used (a primary restarted with its clock behind the mark
    reserves its first block from the mark the standby already holds, and may die before
    the replica ships that write). The mark moves ``skip`` past the copy (or the clock),
    durably, before the promoted gateway starts; returns the new mark."""
    blocks = ExecIdBlocks(path, skip)
    return blocks.reserve(blocks.start())
