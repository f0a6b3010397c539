"""What a restarted router reads again, and must not decide twice.

A crash between deciding a batch and committing the gateways' rings (journal first, then
publish, replies, commit: they cannot be one step) leaves the batch to be read again, up to
the end of what each ring held at the start:

- a command journaled then (``JournaledTail``) is not sequenced twice; the OK it is owed (a
  mass cancel's acknowledgement, an account command's reply) is made again, unless it went
  out before the crash;
- a command answered then (its reply is still in the gateway's reply ring) is not decided
  again: a refusal must not become an acceptance on the state recovery settled since.

An owed OK takes its command's place among the commands read (a ``Decision`` with
``journaled`` set), so it leaves with the replies of the commands beside it, in their order:
a run before the crash sent its replies in order, so those it sent are the first ones, and
the gateway reads the rest, owed or decided again, as a run without the crash would send them.

Past the end a ring held at the start, nothing can be, and the gateway is forgotten.
"""

from __future__ import annotations

import logging

from procs.common.records import Record
from procs.core.recovery import Identity, identity
from procs.core.sequencer import Decision, Sequencer, answered_again
from shm import Consumer, Ring, RingError

log = logging.getLogger("ringex.router")


class Reread:
    def __init__(
        self,
        journaled: dict[int, dict[Identity, int]],
        inputs: list[tuple[int, Consumer[Record]]],
        replies: dict[int, Ring[Record]],
    ) -> None:
        self._gateways: dict[int, tuple[dict[Identity, int], set[tuple[int, int]], int]] = {}
        for g, consumer in inputs:
            end = consumer.ring.cursor()
            if end > consumer.sequence:
                self._gateways[g] = (journaled.get(g, {}), answered(replies[g]), end)

    def __contains__(self, gateway: int) -> bool:
        return gateway in self._gateways

    def filter(
        self,
        gateway: int,
        consumer: Consumer[Record],
        commands: list[Record],
        sequencer: Sequencer,
    ) -> list[Record | Decision]:
        """``commands`` in order, less those a run before the restart answered; one it
        journaled and did not answer is replaced by the ``Decision`` that owes its answer
        (none for an order: its matcher answers it)."""
        journaled, told, end = self._gateways[gateway]
        kept: list[Record | Decision] = []
        again = 0
        for command in commands:
            key = identity(command)
            ref = (getattr(command, "session", 0), getattr(command, "client_ref", 0))
            if key is not None and key in journaled:
                again += 1
                seq = journaled[key]
                reply = None if ref in told else answered_again(sequencer, command, seq)
                if reply is not None:
                    kept.append(Decision(None, reply=reply, journaled=seq))
            elif ref in told and key is not None:
                again += 1  # refused before the restart, and told so: not decided again
            else:
                kept.append(command)
        if again:
            log.warning(
                "gateway %d: %d command(s) decided before the restart were read again: not "
                "decided twice", gateway, again,
            )  # fmt: skip
        if consumer.sequence >= end:
            del self._gateways[gateway]
        return kept


def answered(replies: Ring[Record]) -> set[tuple[int, int]]:
    """(session, client_ref) of every reply still in a gateway's reply ring (its newest
    ``capacity`` records): the commands a run before this one answered. A push (a balance a
    watch was sent unasked: client_ref 0) answers no command: taken as one, its (0, 0) was
    an admin command's, so a HALT read again after a crash was dropped unjournaled (review
    187)."""
    out: set[tuple[int, int]] = set()
    cursor = replies.cursor()
    for n in range(max(0, cursor - replies.capacity), cursor):
        try:
            reply = replies.record(n)
        except RingError:  # overwritten meanwhile: an older one, long committed
            continue
        ref = getattr(reply, "client_ref", None)
        if ref:
            out.add((reply.session, ref))  # type: ignore[attr-defined]
    return out
