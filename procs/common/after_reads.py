"""A periodic task that judges its peers' silence runs after the reads that are due.

uvloop (libuv) runs the timers that are due before it polls the sockets: a task woken by its
``sleep`` after the process stood still (SIGSTOP, a swapped-out page, a debugger) would judge
a client's silence before reading what the client sent meanwhile, and cut off a FIX session
that answered its TestRequest in time (review 295). One more turn of the loop
(``sleep(0)``) polls the sockets first. With asyncio's own loop, which polls before it runs
timers, the turn is harmless.
"""

from __future__ import annotations

import asyncio


async def sleep_then_read(delay_s: float) -> None:
    """``asyncio.sleep(delay_s)``, then one turn of the loop for the reads due meanwhile."""
    await asyncio.sleep(delay_s)
    await asyncio.sleep(0)
