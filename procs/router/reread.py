"""What a restarted router reads again, and must not decide twice.

A crash between deciding a batch and committing the gateways' rings (journal first, then
publish, replies, commit: they cannot be one step) leaves the batch to be read again, up to
the end of what each ring held at the start:

- a command journaled then (``JournaledTail``) is not sequenced twice; the OK it is owed (a
  mass cancel's acknowledgement, an account command's reply) is made again, unless it went
  out before the crash;
- a command answered then (its reply is still in the gateway's reply ring) is not decided
  again: a refusal must not become an acceptance on the state recovery settled since;
- a command refused then whose reply the crash lost (not journaled, though a later command
  of its ring is: the router decides a ring's commands in order) is refused again, with
  ``REFUSED_BEFORE_RESTART`` (its reason is not kept), not decided on a state its gateway's
  later commands changed: a deposit journaled after an order refused for balance would
  have funded it, out of the order its gateway sent them (review 193). An admin command
  is decided again (nothing but the configuration refuses one), and a transfer applied
  before (a retry of its key) is answered as a repeat. One refused whose reply the crash
  lost with no later command of its ring journaled is decided again, on a state other
  rings' journaled commands may have changed (a deposit on the admin ring funding an order
  refused for balance in the same step): nobody was told the refusal, and the router keeps
  no order across rings, so taking it after them is a run where it came after them.

An owed OK takes its command's place among the commands read (a ``Decision`` with
``journaled`` set), so it leaves with the replies of the commands beside it, in their order:
a run before the crash sent its replies in order, so those it sent are the first ones, and
the gateway reads the rest, owed or decided again, as a run without the crash would send them.

Past the end a ring held at the start, nothing can be, and the gateway is forgotten.
"""

from __future__ import annotations

import logging

from procs.common.records import AdminCommand, Record, Transfer
from procs.core.recovery import Identity, identity
from procs.core.sequencer import Decision, Sequencer, answered_again, refused_again
from procs.router.gateway_rings import as_from
from shm import Consumer, Ring, RingError

log = logging.getLogger("ringex.router")


class Reread:
    def __init__(
        self,
        journaled: dict[int, dict[Identity, int]],
        inputs: list[tuple[int, Consumer[Record]]],
        replies: dict[int, Ring[Record]],
    ) -> None:
        self._gateways: dict[int, tuple[dict[Identity, int], set[tuple[int, int]], int, int]] = {}
        for g, consumer in inputs:
            end = consumer.ring.cursor()
            if end > consumer.sequence:
                mine = journaled.get(g, {})
                decided = decided_upto(consumer, g, end, mine)
                self._gateways[g] = (mine, answered(replies[g]), end, decided)

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
        journaled, told, end, decided = self._gateways[gateway]
        kept: list[Record | Decision] = []
        again = 0
        at = consumer.sequence - len(commands)  # the ring position of ``commands[0]``
        for n, command in enumerate(commands, at):
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
            elif key is not None and n < decided and not _decided_alike(command, sequencer):
                again += 1  # refused before the restart, its reply lost: refused again
                kept.append(Decision(None, reply=refused_again(sequencer, command)))
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


def decided_upto(
    consumer: Consumer[Record], gateway: int, end: int, journaled: dict[Identity, int]
) -> int:
    """The ring position past the last command in ``consumer``'s unread window (up to
    ``end``) that the run before the restart journaled: it decided every command before
    that one, as it decides a ring's commands in order."""
    upto = consumer.sequence
    if journaled:
        for n in range(consumer.sequence, end):
            if identity(as_from(consumer.ring.record(n), gateway)) in journaled:
                upto = n + 1
    return upto


def _decided_alike(command: Record, sequencer: Sequencer) -> bool:
    """Whether deciding ``command`` again gives what the run before the restart gave: an
    admin command's fate is the configuration's, and a transfer applied before is
    answered as a repeat whatever the balance."""
    if isinstance(command, AdminCommand):
        return True
    if isinstance(command, Transfer):
        accounts = sequencer.accounts
        return bool(accounts.repeat_of(command.account, command.asset, command.amount, command.key))
    return False


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
