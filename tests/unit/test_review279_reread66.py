"""Review 279: a hostile reread of session 66's change (cbbaaec..13c66f5): what it added
for the database writer's readiness, the embedded cluster's revival, host names and the FIX
connection's parking, read against its callers.

Reviewed: ``procs/supervisor/main.py`` (``_spawn``, ``_not_ready``), ``procs/dbwriter``
(``main._page``, ``main._reviving``, ``writer._housekeeping``, ``_checkpoint_kept``),
``config/fields.py`` (``host_refused``), ``procs/gateway/connection.py``
(``connection_lost``).

Faults found (each fixed; its test says what it was):

1. ``procs/supervisor/main.py`` ``_not_ready`` reads the dbwriter's page ``ready``, which a
   writer's earlier run left at 1 (the page outlives it; the new writer sets it to 0 only
   once it runs): a restarted writer was counted ready at the supervisor's first look,
   before it had done anything. Fixed: ``_spawn`` zeroes a spec's ready counter
   (``Counters.zero``) while the child is held.
2. ``config/fields.py`` ``host_refused``: a name with a trailing dot and an all-digit top
   label ("ab.12.") was said to be "an IPv4 address with a trailing dot: write ab.12".
   Fixed: only an IPv4 address is called one; another is no host name, its label named.
3. ``procs/gateway/connection.py`` ``connection_lost``: an error ending a connection whose
   session's CompID had logged on again meanwhile (a reset logon: the store numbered anew)
   parked the old connection's marks on the store the new session uses, so a later reset
   logon sent messages the client had seen again. Fixed: it parks only while the session is
   still its CompID's (read, not forced: the race needs an RST on the old socket after the
   new session's reset logon).

Sound: an idle writer whose embedded cluster was killed starts it again (its look at the
database's checkpoint every ``check_s`` goes through the retry that revives; the reread
thought only a command's retry did). Read: the Timer that sets ``ready`` is cancelled and
joined before the page closes; ``_admit``'s ``remember`` after the slot is not raced (no
await between); ``Outbox``'s ``discard_all`` clears the conflated and owed entries;
``instances_run_by`` checks the status file's writer is alive. Left (leads):
``_replay_fitting`` keeps the events of a ring's capacity in memory; a revive's ``pg_ctl
start -w`` does not pet the watchdog; ``ringex stop`` names the config's instance before a
start wrote its status.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from config.fields import host_refused
from procs.common.embedded_postgres import EmbeddedPostgres
from procs.common.stats import DBWRITER_COUNTERS, DBWRITER_PAGE
from procs.common.topology import postgres_dir, users_path
from procs.common.users import UserStore
from procs.supervisor.child import Child
from procs.supervisor.main import Supervisor
from procs.supervisor.plan import plan
from shm.counters import Counters
from tests.e2e.running import ROOT
from tests.unit.dbwriter.journal_gen import build, make_cfg
from tests.unit.dbwriter.test_review261_database_outages import (
    _down,
    _filed,
    _postmaster,
    _profile,
    _until,
)
from tests.unit.supervisor.test_dbwriter_lag import _cfg
from tests.unit.supervisor.test_review122_supervisor_docstrings import tuned


def test_a_restarted_writer_is_not_ready_by_its_last_runs_counter(
    instance: str, tmp_path: Path
) -> None:
    """Scenario: the dbwriter's page holds ``ready`` = 1 (its last run's); the supervisor
    spawns a new writer, held. Expected: ``ready`` 0 before it runs, so ``_not_ready`` names
    it. Was (fixed): 1, the new writer ready at the first look."""
    cfg = tuned(_cfg(instance, tmp_path, database=True), metrics=False)
    page = Counters.open(instance, DBWRITER_PAGE, DBWRITER_COUNTERS)
    sup = Supervisor(cfg, str(tmp_path / "p.toml"))
    (spec,) = (s for s in plan(cfg) if s.name == "dbwriter")
    child = Child(spec)
    sup.children = [child]
    try:
        page.values[DBWRITER_COUNTERS.index("ready")] = 1
        sup._spawn(child)
        assert Counters.peek(instance, DBWRITER_PAGE, "ready") == 0
        assert "did not set 'ready'" in (sup._not_ready(child) or "")
    finally:
        sup.discard_held()
        page.close()


def test_an_idle_writer_starts_its_killed_cluster_again(tmp_path: Path, instance: str) -> None:
    """Scenario: the writer process on its embedded cluster, caught up, a users file to
    mirror; the postmaster SIGKILLed; nothing more journaled. Expected: the cluster up again
    within 10 s (its idle look at the checkpoint retries, and a retry revives). Now: so."""
    cfg = make_cfg(tmp_path, instance)
    live = build(cfg, 50)
    UserStore(users_path(cfg)).add("ALICE", "pw", 7, n=2)
    cluster = EmbeddedPostgres(postgres_dir(cfg))
    argv = [sys.executable, "-m", "procs.dbwriter.main", "--profile"]
    with open(tmp_path / "dbwriter.log", "wb") as err:
        proc = subprocess.Popen([*argv, str(_profile(tmp_path, instance))], cwd=ROOT, stderr=err)
    try:
        _until(lambda: _filed(cluster.dsn) == live.last_seq, 60, "no first catch-up")
        killed = _postmaster(cluster)
        _down(cluster, "kill")  # returns once that pid has ended: a revival may come at once
        deadline = time.monotonic() + 10
        while not _revived(cluster, killed) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _revived(cluster, killed), (tmp_path / "dbwriter.log").read_text().splitlines()[-1]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        live.close()
        cluster.destroy()


def _revived(cluster: EmbeddedPostgres, killed: int) -> bool:
    """``cluster`` runs again under a postmaster other than the ``killed`` one."""
    return _postmaster(cluster) not in (0, killed) and cluster.running()


def test_a_name_with_an_all_digit_top_label_is_no_address() -> None:
    """Scenario: hosts "ab.12." and "1.2.3.4.". Expected: the first no host name (its top
    label named), the second an IPv4 address with a trailing dot. Was (fixed): both called
    an IPv4 address, "write ab.12" suggested."""
    assert host_refused("ab.12.") == (
        "is not an IP literal or a host name (its top label 12 is all digits, RFC 3696)"
    )
    assert host_refused("1.2.3.4.") == "is an IPv4 address with a trailing dot: write 1.2.3.4"
