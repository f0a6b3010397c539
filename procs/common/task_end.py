"""Waiting for a task this code ended: a handler that cancels its sender awaits it so that
its slot and socket are given back only once it has stopped.

``with suppress(CancelledError): await sender`` is the usual spelling, and it is wrong in one
case: when the *awaiting* task is itself cancelled during that wait (a server stopping its
handlers), the suppress swallows that cancel too, and the handler runs on as if nothing had
asked it to stop. ``wait_ended`` swallows the sender's end and re-raises the caller's own
cancel, which asyncio counts on the task (``Task.cancelling``, Python 3.11)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable


async def wait_ended(task: Awaitable[object], *quiet: type[BaseException]) -> None:
    """Await ``task``; its ``CancelledError`` and the exceptions in ``quiet`` are how it ended
    and are swallowed. A cancel of the task calling this is raised on."""
    try:
        await task
    except asyncio.CancelledError:
        me = asyncio.current_task()
        if me is not None and me.cancelling():
            raise
    except quiet:
        pass
