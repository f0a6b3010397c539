"""The commands this gateway published to the router ring whose answer may not have come yet:
the COMMAND entries an order-log compaction must keep.

A full restart (new rings) sends again every command logged for the old ring that is still
unanswered and not in the journal (``restart.py``, ``_lost_commands``): the old ring took it
along unread. The log's appends keep every COMMAND entry, so a compaction, which writes what
is live from memory, must write these too, not only the commands not yet published: one in
the ring but unread when the compaction began is otherwise never sent again nor refused.

Answered ones are dropped in sweeps, one each time the table has doubled since the last (and
is past ``SWEEP_MIN``), rather than by a check per event: amortised, two ``unanswered`` calls
a command (~0.3 us), and at most twice the unanswered ones held (or ``SWEEP_MIN``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from procs.common.records import Record
from procs.gateway.order_log import COMMAND, Entry

#: Commands held before the first sweep: a sweep of 4,096 takes ~0.6 ms of the loop.
SWEEP_MIN = 4096


class SentCommands:
    """Sequence in the router ring -> (ring created_ns, client ref, slot image). A newer
    command at the same sequence (a new ring) replaces the older, as the log's replay does."""

    def __init__(self, unanswered: Callable[[int], bool], schema: int = 0) -> None:
        #: whether the command of a client ref still waits for its answer (FIX or REST)
        self.unanswered = unanswered
        self.schema = schema  # the journal schema id of the images' layout (``order_log``)
        self._sent: dict[int, tuple[int, int, bytes]] = {}
        self._sweep_at = SWEEP_MIN

    def add(self, seq: int, created: int, ref: int, image: bytes) -> None:
        """One the order log had at a start (``_recover``), published before it."""
        self._sent[seq] = (created, ref, image)

    def published(
        self, base: int, created: int, commands: Sequence[Record], images: dict[int, bytes]
    ) -> None:
        """``commands`` went into the ring from ``base`` on: their images move out of
        ``images`` (the log's, of commands not yet published) into this table."""
        sent = self._sent
        for i, command in enumerate(commands):
            seq = base + i
            sent[seq] = (created, getattr(command, "client_ref", 0), images.pop(seq))
        if len(sent) > self._sweep_at:
            self.sweep()

    def sweep(self) -> None:
        """Drop the commands answered since."""
        unanswered = self.unanswered
        self._sent = {seq: sent for seq, sent in self._sent.items() if unanswered(sent[1])}
        self._sweep_at = max(SWEEP_MIN, 2 * len(self._sent))

    def entries(self) -> list[Entry]:
        """The COMMAND entries of the commands unanswered now, for a compaction."""
        self.sweep()
        schema = self.schema
        return [
            (COMMAND, seq, created, image, schema)
            for seq, (created, _, image) in self._sent.items()
        ]
