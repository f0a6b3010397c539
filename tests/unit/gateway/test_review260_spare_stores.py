"""Review 260 (a lead of session 65): which FIX session stores a gateway keeps open.

Reviewed: ``procs/gateway/session_stores.py`` (``get``: the least recently used idle store
past ``SPARE`` is closed) with ``procs/gateway/connections.py`` (``connection_lost``). Rig:
review 256's (``users_harness``, ``SPARE`` made small).

Fault found (fixed; its test says what it was):

1. A store's recency was its last ``get``, a session's at its Logon: a session that ended
   after hours was the oldest idle store, the first closed, though README (and the module)
   keeps open "the 64 others used last (a session just ended, reports parked for one away)":
   the reports its cancel on disconnect or a fill then parks reopened it, reading its whole
   history. Fix: ``connection_lost`` uses its store once more, as the most recent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.gateway.harness import Harness, run_scenario, settled
from tests.unit.test_review256_scale_of_users import (  # noqa: F401  (a fixture)
    FEW_SPARE,
    few_spare,
    logs_on,
    users_harness,
)


@pytest.mark.usefixtures("few_spare")
def test_the_store_of_a_session_just_ended_is_kept_among_the_spare(
    instance: str, tmp_path: Path
) -> None:
    """Scenario: U000 logs on; then ``SPARE`` (here 8) other users log on and out one after
    another; then U000 logs out, and one more user logs on (a store opened: the least
    recently used idle one is closed).
    Expected: U000's store, whose session just ended, stays open; U001's, idle longest, goes.
    Was (fixed): U000's was closed, its recency that of her Logon."""
    h = users_harness(instance, tmp_path, FEW_SPARE + 2)

    async def scenario(h: Harness, port: int) -> None:
        gw = h.gateway
        assert gw is not None
        first = await logs_on("U000", port)
        assert first is not None
        for k in range(1, FEW_SPARE + 1):
            c = await logs_on(f"U{k:03d}", port)
            assert c is not None
            await c.send("5")
            await c.closed()
            await c.aclose()
            await settled(lambda: len(gw.live) == 1, 5.0)
        await first.send("5")
        await first.closed()
        await first.aclose()
        await settled(lambda: not gw.live, 5.0)
        last = await logs_on(f"U{FEW_SPARE + 1:03d}", port)
        assert last is not None
        open_now = set(gw.stores._open)
        assert "U000" in open_now, sorted(open_now)
        assert "U001" not in open_now, sorted(open_now)
        await last.aclose()

    run_scenario(h, scenario, 60)
