"""The session ends the journal holds: where a supervisor asks whether a day's END_OF_SESSION
went, since the journal is what a standby replicates and a promotion inherits, while the
supervisor's own record (``session_end.json``) stays on its host.

An END_OF_SESSION for every symbol (symbol 0) that the router sequenced at or after a
scheduled end ``E`` (its ``ts_ns``, the router's wall clock) expired every DAY order that
the scheduled one would have: it *is* that day's end, whoever sent it (the old primary's
supervisor, or an operator's ``ringex admin end-session`` without a symbol). One for a single
symbol, or one sequenced before ``E``, is not; nor one stamped a day or more after ``E``
(a later day's, by a clock since set back), nor one at or before a seq the caller names (one
sequenced before the clock was set back, whatever it was stamped: ``session_clock.py``).

How it reads. Commands are stamped as they are sequenced, so ``ts_ns`` rises with seq (a
clock stepped back breaks that only around the step); the first seq stamped at or after
``E`` is found by bisection (one entry read per step, about 25 for a day's journal), and the
entries from there are scanned, the admin commands told apart by their slot's first two body
bytes (the array header and the tag) so only those are decoded. The scan stops at the first
end found: a supervisor's end comes within seconds of ``E`` or of its instance's start, so
the scan is long only where the journal's primary ran past ``E`` without one. Asked again
about the same ``E`` (a standby's supervisor, every second until its primary's end arrives),
it reads only what was appended since. Stamps do not rise across a clock set back: the
bisection starts after the seq named, from where they rise again.

Rejected: keeping the last end in a file the replication ships (``procs/replica/files.py``
ships the gateways' files): it would lag the journal, and a demoted primary's would speak of
a history the journal no longer holds; and marking the supervisor's own sends in the command
(its ``arg``), which an operator's end for every symbol after ``E`` would not carry.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from config.schema import RingexConfig
from procs.common.journal import JournalReader, list_segments
from procs.common.record_codec import RecordCodec
from procs.common.records import AdminCommand
from procs.common.topology import journal_archive_dir, journal_dir
from procs.common.types import AdminAction
from procs.supervisor.session_clock import DAY_NS

#: How far the router's clock may have been stepped back (NTP) and the search for an end
#: still start before it: the scan from there passes over two minutes' entries once a day
#: (about 0.4 us each: half a second at 10k commands/s; review 223 measured 15 minutes')
STEP_MARGIN_NS = 2 * 60 * 10**9


@dataclass(frozen=True)
class JournaledEnd:
    """An END_OF_SESSION for every symbol in the journal: its seq and when it was sequenced."""

    seq: int
    ts_ns: int


class JournaledEnds:
    """One instance's journal, asked for its session ends. ``first_since`` raises what
    ``JournalReader`` raises (``JournalError``, ``OSError``) and ``RecordDecodeError`` (a
    ``ValueError``) where the journal cannot be read; the caller decides what that means.
    Used by the supervisor's loop alone; the router may append meanwhile (it reads a prefix)."""

    def __init__(self, cfg: RingexConfig) -> None:
        self.directory = journal_dir(cfg)
        self.archive = journal_archive_dir(cfg)  # a day's end may sit in an archived segment
        self._codec = RecordCodec()
        probe = AdminCommand(0, 0, AdminAction.END_OF_SESSION, 0, 0)
        self._admin_head = bytes(self._codec.encode_slot(probe)[2:4])  # array header, tag
        self._since: tuple[int, int, int] | None = None  # the last question's arguments
        self._scanned = 0  # the last seq looked at for it
        self._found: JournaledEnd | None = None

    def first_since(
        self, since_ns: int, after_seq: int = 0, sent_from: int = 0
    ) -> JournaledEnd | None:
        """The first END_OF_SESSION for every symbol past seq ``after_seq`` stamped at or
        after ``since_ns`` (ns since the epoch, UTC) and less than a day after it, or None:
        none yet, or no journal. ``sent_from``: one stamped before it counts only where its
        sender's clock said it or later (its ``arg``: a router clock stepped back under the
        supervisor's send of that end), not another end sent just before (review 294: a
        catch-up of the day before's, sent a minute before this one, was taken for it)."""
        if not self.directory.is_dir():
            return None
        reader = self._reader()
        if (since_ns, after_seq, sent_from) != self._since:
            self._since, self._found = (since_ns, after_seq, sent_from), None
            self._scanned = self._first_at(reader, since_ns, after_seq) - 1
        if self._found is not None:
            return self._found
        head, decode = self._admin_head, self._codec.decode_slot
        end = reader.last_seq()  # what this pass covers, yielded or passed over
        # (another layout's entries, a build's before an upgrade, are passed over: review 76)
        for seq, image in reader.entries(self._scanned + 1, foreign="skip"):
            self._scanned = seq
            if image[2:4] != head:
                continue
            command = decode(image)
            if (
                isinstance(command, AdminCommand)
                and command.action == AdminAction.END_OF_SESSION
                and command.symbol == 0
                and since_ns <= command.ts_ns < since_ns + DAY_NS
                and sent_from <= max(command.ts_ns, command.arg)
            ):
                self._found = JournaledEnd(seq, command.ts_ns)
                return self._found
        self._scanned = max(self._scanned, end)  # (skipped ones too: review 78)
        return None

    def last_seq(self) -> int:
        """The journal's last seq (0: none yet); raises as ``first_since`` does."""
        return self._reader().last_seq() if self.directory.is_dir() else 0

    def _reader(self) -> JournalReader:
        return JournalReader(
            self.directory,
            slot_size=self._codec.slot_size,
            schema_id=self._codec.journal_schema_id,
            archive=self.archive,
        )

    def _first_at(self, reader: JournalReader, since_ns: int, after_seq: int) -> int:
        """The first seq past ``after_seq`` stamped at or after ``since_ns`` (the journal's
        next seq if none)."""
        oldest = min(
            (first for d in (self.archive, self.directory) if d.is_dir()
             for first, _ in list_segments(d)),
            default=1,
        )  # fmt: skip
        oldest = max(oldest, after_seq + 1)
        last = reader.last_seq()
        if last < oldest:
            return max(last, after_seq) + 1
        seqs = range(oldest, last + 1)
        # the stamps rise with seq but where the router's clock was stepped back (NTP): an
        # end stamped just past ``since_ns`` may follow entries stamped later still, and the
        # bisection land past it (review 221); from STEP_MARGIN_NS earlier, the scan finds it
        at = since_ns - STEP_MARGIN_NS
        return oldest + bisect.bisect_left(seqs, at, key=lambda seq: self._ts(reader, seq))

    def _ts(self, reader: JournalReader, seq: int) -> int:
        for _, image in reader.entries(seq, foreign="skip"):  # (the next of this layout's)
            ts: int = getattr(self._codec.decode_slot(image), "ts_ns", 0)  # all journaled have
            return ts
        return 1 << 63  # cut since it was measured: past any time
