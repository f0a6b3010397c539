"""``exit_reason``: what a process's log says about why it stopped. ``last_logged`` gives
the line a crash loop's stop names (a writer refusing a newer ringex's schema, a gateway
refused by its profile): before, the supervisor's message said only how often and the last
exit code, and the cause was in that process's log alone."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from procs.common.run_files import run_dir
from procs.supervisor import main as supervisor_main
from procs.supervisor.child import Child
from procs.supervisor.exit_reason import LINE_CHARS, TAIL_BYTES, last_logged
from procs.supervisor.main import Supervisor, SupervisorError
from tests.unit.supervisor.test_review122_supervisor_docstrings import (
    FakeProcess,
    sup,  # noqa: F401  (a fixture)
    tuned,
)

TRACEBACK = (
    "2026-11-30 05:00:00,000 ringex.dbwriter INFO connecting\n"
    "Traceback (most recent call last):\n"
    '  File "procs/dbwriter/migrate.py", line 98, in migrate\n'
    "procs.dbwriter.migrate.MigrationError: database schema is at migration 0099_x.sql\n"
    "\n\n"
)


def test_the_last_line_logged_is_a_tracebacks_error(tmp_path: Path) -> None:
    log = tmp_path / "dbwriter.log"
    log.write_text(TRACEBACK)
    assert last_logged(log) == (
        "procs.dbwriter.migrate.MigrationError: database schema is at migration 0099_x.sql"
    )


def test_a_long_line_is_cut_and_only_the_logs_end_is_read(tmp_path: Path) -> None:
    log = tmp_path / "p.log"
    log.write_text("first\n" + "x" * TAIL_BYTES + "\n" + "y" * 1000 + "\n")
    said = last_logged(log)
    assert said is not None and len(said) == LINE_CHARS and said.endswith("...")
    assert said.startswith("y")


def test_a_log_missing_or_blank_says_nothing(tmp_path: Path) -> None:
    assert last_logged(tmp_path / "none.log") is None
    (tmp_path / "blank.log").write_text("\n  \n")
    assert last_logged(tmp_path / "blank.log") is None


def test_a_log_cut_since_the_run_began_is_read_from_its_start(tmp_path: Path) -> None:
    """``copytruncate`` (the README's logrotate) cuts the log to nothing while the process
    runs: the offset where its run began is then past the end, and the crash's last line
    was "none" (a review, 2026-12-03). What the cut log holds is all the run's."""
    log = tmp_path / "gateway-gw1.log"
    log.write_text("an earlier run\n" * 20_000)
    offset = log.stat().st_size
    log.write_text("stopping: intake closed\n")  # cut, then written on
    assert last_logged(log, offset) == "stopping: intake closed"


def test_the_restart_limits_stop_names_the_processs_last_line(
    sup: Supervisor,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Scenario: a process that exits at each start (its log ends with its refusal) past
    ``restart_limit``. Expected: the instance stops with a message naming the limit and the
    refusal as the process logged it last."""
    sup.cfg = tuned(sup.cfg, restart_limit=1)
    monkeypatch.setattr(supervisor_main, "units_differ_now", lambda profile: "")
    monkeypatch.setattr(supervisor_main, "layout_differs_now", lambda profile, cfg: "")
    monkeypatch.setattr(supervisor_main, "fee_account_user_now", lambda profile: "")
    clock = SimpleNamespace(monotonic=time.monotonic, sleep=lambda s: None, time=time.time,
                            time_ns=time.time_ns)  # fmt: skip
    monkeypatch.setattr(supervisor_main, "time", clock)
    child: Child = sup.children[0]

    def spawn(c: Child) -> None:
        c.process = FakeProcess(exits=1)  # type: ignore[assignment]

    monkeypatch.setattr(sup, "_spawn", spawn)
    logs = run_dir(sup.cfg)
    logs.mkdir(parents=True, exist_ok=True)
    (logs / f"{child.spec.name}.log").write_text(TRACEBACK)
    with pytest.raises(SupervisorError) as stopped:
        sup._restart(child, 1)
    said = str(stopped.value)
    assert "more than restart_limit=1: stopping the instance" in said, said
    assert said.endswith(
        "its log's last line: procs.dbwriter.migrate.MigrationError: database schema is at "
        "migration 0099_x.sql"
    ), said
