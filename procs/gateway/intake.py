"""When a gateway stops reading its clients: the exchange's intake pacing. Pure.

Offered more than it can answer, an exchange that keeps taking orders only queues them in its
rings; with every ring full each stage waits on the next in small steps, and the gateway
parses orders instead of sending reports (25k orders/s offered gave 2.3-10k acks/s where 15k
gave 14.9k, on two cores). So a gateway stops reading while the router's ring is full
(commands wait to be published), while more events wait for it than a quarter of a ring, or
while more of its commands wait for the router than half a ring (the router takes none while
a matcher is behind); it reads again once they are down to a sixteenth (an eighth). The queue
of an overloaded exchange is then its clients' sockets, and it answers at full speed.
"""

from __future__ import annotations


class IntakePacing:
    """The paused-or-reading state, with hysteresis, from what the rings hold."""

    __slots__ = ("high", "low", "paused")

    def __init__(self, ring_capacity: int) -> None:
        self.high = ring_capacity // 4
        self.low = ring_capacity // 16
        self.paused = False

    def update(self, unpublished: bool, events_waiting: int, commands_queued: int) -> bool | None:
        """The new state (True: paused) when it changes, else None. ``unpublished``: commands
        the router's ring had no room for; ``events_waiting``: the most events unread on one
        of the gateway's input rings; ``commands_queued``: its commands the router has not
        taken."""
        mark = self.low if self.paused else self.high
        pause = unpublished or events_waiting > mark or commands_queued > 2 * mark
        if pause == self.paused:
            return None
        self.paused = pause
        return pause
