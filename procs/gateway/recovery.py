"""What a restarted gateway can trust in its order log, and the books where it cannot.

The order log (``order_log.py``) is exact while the rings it logged positions in are the ones
the gateway reads again: a gateway-only restart. When they are new (the whole exchange was
restarted, or this is a promoted standby whose logs were shipped from the primary), the
events after the log's last write went with the old rings. Each matcher starts a new output
ring with a mark (``REPLAY_SOURCE``: the seq of the snapshot it restored), then the events of
the journaled commands it replays after that snapshot, then the live ones. So for each ring:

- events up to the newest seq the log says were handled are skipped (handled already);
- if the mark is past that seq, the events in between are nowhere: this gateway's orders on
  that matcher's symbols are corrected from the matcher as of the mark, rebuilt the way it
  recovers (``procs.core.recovery.matchers_at``), and the ring is read on from the mark.
"""

from __future__ import annotations

from config.schema import RingexConfig
from procs.common.records import RecordCodec
from procs.common.topology import gateway_commands, gateway_replies, matcher_output
from procs.core.recovery import matchers_at
from procs.core.resting import RestingOrder
from shm import Ring
from shm.errors import ShmError


def ring_identities(cfg: RingexConfig, gateway: int, codec: RecordCodec) -> dict[str, int]:
    """Ring name -> created_ns of every ring this gateway writes or reads."""
    names = [gateway_commands(gateway), gateway_replies(gateway)]
    names += [matcher_output(m.name) for m in cfg.matchers]
    found = {}
    for name in names:
        try:
            ring = Ring.attach(cfg.instance, name, codec)
        except ShmError:
            continue
        found[name] = ring.created_ns
        ring.close()
    return found


def rings_replaced(logged: dict[str, tuple[int, int]], current: dict[str, int]) -> bool:
    """True when a ring the log has a position in is not the ring of that name now."""
    return any(name in current and made != current[name] for name, (made, _) in logged.items())


def matcher_of_ring(cfg: RingexConfig, ring: str) -> str | None:
    return next((m.name for m in cfg.matchers if matcher_output(m.name) == ring), None)


def resting_orders(
    cfg: RingexConfig, matcher: str, upto: int, gateway: int, codec: RecordCodec
) -> tuple[dict[int, RestingOrder], set[int]] | None:
    """This gateway's live orders on ``matcher`` after the command of seq ``upto`` (resting,
    and stops not triggered yet), by their NewOrder's client_ref, with the matcher's symbol
    ids; None when that state is not kept (a newer snapshot)."""
    rebuilt = matchers_at(cfg, {matcher: upto}, codec)
    if rebuilt is None:
        return None
    mine = {}
    books = rebuilt[matcher].books
    for book in books.values():
        for order in (*book.orders.values(), *book.stops.values()):
            if order.gateway == gateway:
                mine[order.client_ref] = order
    return mine, set(books)
