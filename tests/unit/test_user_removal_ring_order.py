"""``remove-user --cancel-orders`` and an order of the user's still in a gateway's ring.

A gateway lets the removed user's session claim go once what the session sent is in the
router's ring (review 244), but the router reads its rings in turn, a batch's quota from each:
where it was behind on the gateway's ring, the admin ring's cancel-all was read before the
user's order waiting there, and the order rested after "open orders cancelled". The command
now also waits until the router has taken what each gateway's ring held once the claim was
free (``_gateways_read`` in ``procs/admin/users.py``), then cancels.

Method: review 244's instance with ``router_batch = 4`` (a quota of 2 a ring), the router
SIGSTOPped while another user's orders and then the removed user's fill gw1's ring, and
SIGCONTed once the command has sent its cancel-all to the admin ring (before the fix), or
``SETTLE_S`` + 3 s after the claim is free (since: the command waits for the router).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator

import pytest

from procs.admin.users import SETTLE_S
from procs.common.record_codec import RecordCodec
from procs.common.records import Record
from procs.common.run_files import read_status
from procs.common.topology import ADMIN_GATEWAY, gateway_commands
from shm import Ring
from tests.unit.supervisor.test_review240_emergency_tools import Venue, ringex, until
from tests.unit.test_review244_user_removal import (
    add_user,
    answer,
    buy,
    claimed,
    held,
    logged_on,
    resting_of,
    run,
    running_venue,
)


@pytest.fixture(scope="module")
def venue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venue]:
    """Review 244's instance, its router taking 4 commands a batch."""
    with running_venue(tmp_path_factory.mktemp("ring_order"), "ro", "router_batch = 4\n") as v:
        yield v


def router_pid(venue: Venue) -> int:
    status = read_status(venue.cfg) or {}
    return int(next(p["pid"] for p in status["processes"] if p["name"] == "router"))


async def removed_behind_the_router(
    venue: Venue,
) -> tuple[int, str, str, set[int], dict[str, tuple[int, int]]]:
    """F's 20 buys, then S's, wait in gw1's ring (the router stopped); ``remove-user
    --comp-id S --cancel-orders`` runs; the router goes on once the command has sent its
    cancel-all, or a while after S's claim is free. The command's exit, out and err, and
    what of S's account rests and is held once everything is answered."""
    await add_user(venue, "F")
    account = await add_user(venue, "S")
    flood, user = await logged_on(venue, "F"), await logged_on(venue, "S")
    router = router_pid(venue)
    admin: Ring[Record] = Ring.attach(venue.cfg.instance, gateway_commands(ADMIN_GATEWAY),
                                      RecordCodec())  # fmt: skip
    os.kill(router, signal.SIGSTOP)
    try:
        for n in range(20):
            await buy(flood, f"f{n}", "80.00")
        await buy(user, "s1")
        sent = admin.cursor()
        cmd = asyncio.create_task(ringex(venue.profile, "admin", "remove-user",
                                         "--comp-id", "S", "--cancel-orders"))  # fmt: skip
        await until(lambda: not claimed(venue, "S"), "S's session claim let go", 15)
        with contextlib.suppress(AssertionError):  # the command sends its cancel-all (before
            # the fix) or waits for the router (since): it goes on after that, or a while
            await until(lambda: admin.cursor() > sent, "the cancel-all sent", SETTLE_S + 3.0)
        os.kill(router, signal.SIGCONT)
        code, out, err = await cmd
        assert (await answer(flood, "f19")) is not None, "F's last buy unanswered"
        return code, out, err, await resting_of(venue, account), await held(venue, account)
    finally:
        os.kill(router, signal.SIGCONT)
        admin.close()
        await flood.aclose()
        await user.aclose()


def test_an_order_the_router_has_not_read_yet_is_cancelled_too(venue: Venue) -> None:
    """Scenario: S's buy waits in gw1's ring behind 20 of F's (the router stopped, taking 2
    a ring per batch once it goes on) when ``remove-user --comp-id S --cancel-orders`` runs.
    Expected: the command exits 0, "open orders cancelled"; nothing of S's account rests or
    is held.
    Was (fixed): the cancel-all, read from the admin ring in the router's first batch, was
    sequenced before S's buy, which rested, its USD held."""
    code, out, err, resting, locked = run(removed_behind_the_router(venue), 60)
    assert code == 0, err
    assert "open orders cancelled" in out, out
    assert not resting and not locked, (resting, locked)
