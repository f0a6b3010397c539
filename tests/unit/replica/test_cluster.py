"""The replicated history's id (``procs/replica/cluster.py``): a primary makes one, a standby
takes on its primary's once the primary has checked its history, and each side refuses a
peer of another id, before the peer's epoch counts."""

from __future__ import annotations

import asyncio
from pathlib import Path

from procs.common.topology import journal_dir
from procs.replica import cluster
from procs.replica.source import ReplicationSource
from procs.replica.standby import Standby, StandbyRefusedError
from tests.unit.replica.test_review_replica_bugs import append, pair, until


async def _follow(standby: Standby, upto: int) -> BaseException | None:
    """Run ``standby`` until it holds ``upto`` or ends; what ended it, if anything."""
    following = asyncio.create_task(standby.run())
    try:
        await until(lambda: following.done() or standby.next_seq > upto, 5.0)
        return following.exception() if following.done() else None
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        standby.journal.close()


def test_a_standby_takes_on_its_primarys_id_and_one_of_another_is_refused(
    tmp_path: Path,
) -> None:
    primary, secondary = pair(tmp_path)
    append(primary, 1, 3)

    async def scenario() -> None:
        source = ReplicationSource(primary)
        serving = asyncio.create_task(source.run())
        try:
            mine = cluster.load(journal_dir(primary))
            assert len(mine) == 32, mine  # made by the primary
            standby = Standby(secondary)
            assert standby.cluster == ""  # none yet: taken on from the primary
            assert await _follow(standby, 3) is None
            assert cluster.load(journal_dir(secondary)) == mine
            # a standby of another history is refused by name, and follows nothing
            cluster.keep(journal_dir(secondary), "feedfacefeedfacefeedfacefeedface")
            other = Standby(secondary)
            ended = await _follow(other, 10)
            assert isinstance(ended, StandbyRefusedError), ended
            assert "another replicated history" in str(ended), ended
        finally:
            source.stopping.set()
            await serving
            source.close()

    asyncio.run(scenario())


def test_a_primarys_id_is_kept_across_restarts(tmp_path: Path) -> None:
    primary, _ = pair(tmp_path)
    first = ReplicationSource(primary)
    made = first.cluster
    first.close()
    again = ReplicationSource(primary)
    assert again.cluster == made
    again.close()
    assert cluster.differ("standby", "", made) is None  # not said: not compared
    assert cluster.differ("standby", made, made) is None
