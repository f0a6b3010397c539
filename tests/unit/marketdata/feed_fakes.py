"""What ``Feed.pump`` uses of its rings and hub, over plain lists: a feed driven by hand."""

from __future__ import annotations

from procs.common.records import Record
from procs.common.topology import matcher_output
from procs.core.market.state import Update


class FakeRing:
    def __init__(self, name: str) -> None:
        self.name = name
        self.created_ns = 1


class ListConsumer:
    """A ring consumer over a list of events (the backlog a restarted process finds)."""

    def __init__(self, events: list[Record], name: str = matcher_output("m1")) -> None:
        self.events = events
        self.sequence = 0
        self.ring = FakeRing(name)

    def read(self, limit: int) -> list[Record]:
        out = self.events[self.sequence : self.sequence + limit]
        self.sequence += len(out)
        return out

    def heartbeat(self) -> None:
        pass

    def commit(self, at: int) -> None:
        pass


class NullHub:
    def publish(self, updates: list[Update]) -> None:
        pass
