"""wait_ended: a handler awaiting the sender it cancelled swallows the sender's end, never a
cancel of its own (the feed's and the private stream's handlers once ran on, stopped by no
one, when a server stop cancelled them during that wait)."""

from __future__ import annotations

import asyncio

import pytest

from procs.common.task_end import wait_ended


async def stubborn(release: asyncio.Event) -> None:
    """A sender that takes a while to stop: its flush outlives the cancel."""
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        await release.wait()
        raise


def test_the_senders_cancel_and_the_named_errors_are_its_end() -> None:
    async def main() -> list[str]:
        seen = []

        async def fails() -> None:
            raise ConnectionError("peer gone")

        sender = asyncio.create_task(asyncio.sleep(3600))
        await asyncio.sleep(0)
        sender.cancel()
        await wait_ended(sender, ConnectionError)
        seen.append("cancelled sender swallowed")
        await wait_ended(asyncio.create_task(fails()), ConnectionError)
        seen.append("named error swallowed")
        with pytest.raises(ConnectionError):
            await wait_ended(asyncio.create_task(fails()))
        return seen

    assert asyncio.run(main()) == ["cancelled sender swallowed", "named error swallowed"]


def test_a_cancel_of_the_waiting_handler_goes_on_up() -> None:
    """Was (fixed): ``with suppress(CancelledError): await sender`` ended the handler's own
    cancel there, and the handler returned normally to a server that had asked it to stop."""

    async def main() -> str:
        release = asyncio.Event()
        sender = asyncio.create_task(stubborn(release))
        after = []

        async def handler() -> None:
            sender.cancel()
            await wait_ended(sender)
            after.append("ran on")

        task = asyncio.create_task(handler())
        await asyncio.sleep(0.01)  # the handler waits on the stubborn sender
        task.cancel()
        await asyncio.sleep(0.01)
        release.set()
        try:
            await task
        except asyncio.CancelledError:
            return "cancelled" if not after else "cancelled after running on"
        return "returned"

    assert asyncio.run(main()) == "cancelled"
