"""The database writer's checkpoint and lag in the supervisor's metrics.

The writer reads no ring, so no consumer line shows it behind or stuck (review 218): it
writes its checkpoint into a counter page (``stats-dbwriter``) at each turn of its loop and
each retry's wait, and the metrics give ``ringex_dbwriter_committed_total`` and
``ringex_dbwriter_lag`` (the journal's last seq less the checkpoint).
Its ``ready`` counter is what the supervisor's start waits for (a running instance's history
has its tables).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from config import load_profile
from config.schema import RingexConfig
from procs.common.journal_writer import JournalWriter
from procs.common.record_codec import RecordCodec
from procs.common.stats import DBWRITER_COUNTERS, DBWRITER_PAGE
from procs.common.topology import journal_dir
from procs.dbwriter.main import _noting, _page
from procs.supervisor.child import Child
from procs.supervisor.main import Supervisor, SupervisorError
from procs.supervisor.metrics import RingexCollector
from procs.supervisor.plan import plan
from shm.counters import Counters
from tests.unit.supervisor.test_metrics import beats
from tests.unit.supervisor.test_review122_supervisor_docstrings import FakeProcess, tuned


def _cfg(instance: str, tmp_path: Path, *, database: bool) -> RingexConfig:
    profile = tmp_path / "p.toml"
    profile.write_text(
        f'instance = "{instance}"\nvar_dir = "{tmp_path / "var"}"\n'
        f"[marketdata]\nenabled = false\n[database]\nenabled = {str(database).lower()}\n"
        '[[gateways]]\nname = "gw1"\nid = 1\n'
    )
    return load_profile(str(profile))


@pytest.fixture
def page(instance: str) -> Iterator[Counters]:
    made = Counters.open(instance, DBWRITER_PAGE, DBWRITER_COUNTERS)
    yield made
    made.close()  # (the instance fixture removes its segments)


def _journal(cfg: RingexConfig, entries: int) -> None:
    codec = RecordCodec()
    writer = JournalWriter(
        journal_dir(cfg), slot_size=codec.slot_size, schema_id=codec.journal_schema_id
    )
    writer.append(1, b"".join(codec.encode_slot(b) for b in beats(entries, 1)), entries)
    writer.close()


def _samples(cfg: RingexConfig) -> dict[str, float]:
    collector = RingexCollector(cfg, "test", {}, list, lambda: "running")
    try:
        return {
            s.name: s.value
            for family in collector.collect()
            if family.name.startswith("ringex_dbwriter")
            for s in family.samples
        }
    finally:
        collector.close()


def test_the_writer_s_checkpoint_and_lag_behind_the_journal(
    instance: str, tmp_path: Path, page: Counters
) -> None:
    cfg = _cfg(instance, tmp_path, database=True)
    _journal(cfg, 9)
    assert _samples(cfg) == {}  # the page made, nothing said yet: no figure, not lag 9
    page.values[0], page.values[1] = 6, 1
    assert _samples(cfg) == {"ringex_dbwriter_committed_total": 6, "ringex_dbwriter_lag": 3}


def test_no_writer_families_with_the_database_off(
    instance: str, tmp_path: Path, page: Counters
) -> None:
    cfg = _cfg(instance, tmp_path, database=False)
    page.values[0], page.values[1] = 6, 1
    collector = RingexCollector(cfg, "test", {}, list, lambda: "running")
    try:
        assert not [f for f in collector.collect() if f.name.startswith("ringex_dbwriter")]
    finally:
        collector.close()


def test_noting_writes_the_checkpoint_before_each_wait(page: Counters) -> None:
    """Before the writer exists (its connect's retries) nothing is said; then each wait
    says its checkpoint as of then."""
    waited: list[float] = []
    committed: list[int | None] = [None]
    sleep = _noting(waited.append, page, lambda: committed[0])
    sleep(0.5)
    assert page.read() == {"committed": 0, "known": 0, "ready": 0} and waited == [0.5]
    committed[0] = 41
    sleep(0.01)
    assert page.read() == {"committed": 41, "known": 1, "ready": 0} and waited == [0.5, 0.01]


def test_the_start_waits_for_the_writer_to_say_it_reached_postgresql(
    instance: str, tmp_path: Path, page: Counters
) -> None:
    """The dbwriter's spec names its page's ``ready`` counter; ``_wait_ready`` waits for it
    (a running instance's REST history has its tables) and names it at its timeout."""
    cfg = tuned(_cfg(instance, tmp_path, database=True), metrics=False, ready_timeout_s=0.2)
    sup = Supervisor(cfg, str(tmp_path / "p.toml"))
    (spec,) = (s for s in plan(cfg) if s.name == "dbwriter")
    assert spec.ready_counter == (DBWRITER_PAGE, "ready")
    child = Child(spec)
    child.process = FakeProcess()  # type: ignore[assignment]
    with pytest.raises(SupervisorError, match="dbwriter did not set 'ready' on its page"):
        sup._wait_ready(child)
    page.values[DBWRITER_COUNTERS.index("ready")] = 1
    sup._wait_ready(child)
    assert child.ready


def test_the_writer_says_ready_at_half_the_timeout_whatever_holds_it(
    instance: str, tmp_path: Path, page: Counters
) -> None:
    """``procs/dbwriter/main._page``: ``ready`` starts at 0 (a restarted writer's page is its
    last run's, at 1), and a slow initdb or recovery of the cluster does not hold the start
    past half ``ready_timeout_s``: the timer says it then (the exchange trades meanwhile)."""
    page.values[DBWRITER_COUNTERS.index("ready")] = 1  # the last run's
    cfg = tuned(_cfg(instance, tmp_path, database=True), ready_timeout_s=0.4)
    mine, _ready, late = _page(cfg)
    try:
        assert mine.read()["ready"] == 0
        late.join(5)
        assert mine.read()["ready"] == 1
    finally:
        mine.close()
