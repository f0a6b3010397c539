"""Faults the last sessions' notes left open, mended in session 51's commits.

Each test failed on the code before its fix, for the fault its docstring names (what the
README asks, what the code did and where, what happened), and passes since.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, cast

import pytest

from config import load_profile
from config.schema import RingexConfig
from procs.admin.client import AdminClient
from procs.common.records import NewOrder
from procs.common.run_files import read_status
from procs.common.topology import users_path
from procs.common.users import UserStore
from procs.gateway.session import Session
from procs.supervisor.main import Supervisor
from tests.scripts_loader import load_script
from tests.unit.supervisor.test_review50_ops import (
    _in_root,
    detached,
    exchange_profile,
    ringex,
    while_b_recovers,
)
from tests.unit.test_review47_reread import ACCOUNT, _Session
from tests.unit.test_review49_reread import _bid, _wired

__all__ = ["_in_root"]  # a fixture of review 50's, used here


def test_a_client_order_id_a_logged_off_sessions_resting_fix_order_holds_is_refused() -> None:
    """Asked: README (REST) "A ``newClientOrderId`` that an open order of the account placed
    through this gateway still holds (over the API, or over FIX as its ClOrdID,
    acknowledged or not) is refused"; a session that logs off without cancel-on-disconnect
    leaves its orders resting.
    Did: ``OrderEntry.holding`` (orders.py) looked only at the logged-on sessions
    (``self.sessions``), so once the FIX user of session 6 logged off, its open bid ``gone``
    was not found and the API took ``gone`` for a second open order of the account. Also
    after a gateway restart, before the session logs on again (its account is then asked
    of the users, ``account_of``)."""
    entry, core, _ = _wired()
    other = _Session()
    other.session_id = 6  # another user of the same account
    entry.on_logon(cast(Session, other), 1)
    entry.on_message(cast(Session, other), _bid(b"gone"), 1)
    assert isinstance(entry.outgoing[-1], NewOrder)
    entry.on_disconnect(cast(Session, other), 2)
    assert core.in_use(ACCOUNT, "gone") is not None
    entry._session_accounts.clear()  # as after a restart: known from the users only
    entry.account_of = lambda session_id: ACCOUNT if session_id == 6 else None
    assert core.in_use(ACCOUNT, "gone") is not None
    assert core.in_use(ACCOUNT + 1, "gone") is None


@pytest.mark.usefixtures("_in_root")
def test_the_status_is_written_while_a_restarted_process_recovers(
    instance: str, tmp_path: Path
) -> None:
    """Asked: README (Operate) the supervisor writes ``status.json`` once a second, looks for
    stuck processes and sends the daily session end, "whatever else goes on".
    Did: ``Supervisor._restart`` (supervisor/main.py) waited in ``_wait_ready`` for the
    restarted process's recovery (up to ``ready_timeout_s``: a router replaying its journal)
    without the watch's once-a-second duties: ``status.json`` was not written meanwhile
    (review 50 made ``ringex status`` check pids itself), no stuck process was looked for,
    no session end went out. Here ``b``'s restart recovers for 7 s; the status file's
    ``updated_ns`` is read twice, 2.5 s apart, while it does."""

    def look(profile: Path, sup: Supervisor) -> dict[str, Any]:
        cfg = load_profile(str(profile))
        before = (read_status(cfg) or {})["updated_ns"]
        time.sleep(2.5)
        return {"before": before, "after": (read_status(cfg) or {})["updated_ns"]}

    seen = while_b_recovers(instance, tmp_path, look)
    assert seen["after"] > seen["before"], seen


def test_make_run_never_gives_a_demo_user_the_account_of_a_user_added_before(
    instance: str, tmp_path: Path
) -> None:
    """Asked: README (Quick start) ``ringex admin add-user`` gives "the next free account";
    `make run` adds its demo users (DEMO1 on account 101, ...) and funds them.
    Did: ``add_users`` (scripts/run_demo.py) opened the planned account, took ACCOUNT_EXISTS
    as a later run's, stored DEMO1 on it and deposited to it: after two ``add-user``s
    (accounts 100 and 101), DEMO1 logged on to bob's account, funded with the demo's money.
    Now a new demo user gets its planned account where that is new, else the next new one;
    one stored already keeps its own."""
    demo = load_script("run_demo", "review51")
    profile = exchange_profile(tmp_path / "p.toml", instance, var_dir=str(tmp_path / "var"))
    with detached(profile) as cfg:
        for name in ("alice", "bob"):
            added = ringex("admin", "add-user", "--config", str(profile), "--username", name,
                           "--password", "pw", "--deposit", "USD=5")  # fmt: skip
            assert added.returncode == 0, added.stderr
        users = UserStore(users_path(cfg))
        bob = users.get("bob")
        assert bob is not None and bob.account == 101
        before = _balances(cfg, 101)
        first = demo.add_users(cfg, demo.DEMO_USERS)
        assert _balances(cfg, 101) == before  # bob's 5 USD, nothing more
        assert first["DEMO1"] not in (100, 101), first
        again = demo.add_users(cfg, demo.DEMO_USERS)  # a later `make run`: the same accounts
        assert again == first
        bob = UserStore(users_path(cfg)).get("bob")
        assert bob is not None and bob.account == 101


def _balances(cfg: RingexConfig, account: int) -> list[tuple[int, int, int]]:
    client = AdminClient(cfg)
    try:
        return [(b.asset, b.free, b.reserved) for b in client.balances(account)]
    finally:
        client.close()


def test_ringex_admin_snapshot_has_the_matchers_write_one_now(
    instance: str, tmp_path: Path
) -> None:
    """Asked: README (matcher) snapshots are "written on snapshot_every, on the SNAPSHOT
    admin command and at a clean stop"; ``snapshot_every = 0`` is "on demand".
    Did: nothing sent SNAPSHOT: ``ringex admin`` had no such command and ``AdminClient`` no
    such method, so "on demand" could not be asked for. Now ``ringex admin snapshot
    [SYMBOL]`` sends it, to the symbol's matcher or to every one."""
    profile = exchange_profile(tmp_path / "p.toml", instance, var_dir=str(tmp_path / "var"))
    with detached(profile) as cfg:
        where = Path(cfg.var_dir) / cfg.instance / "snapshots"
        before = {p: p.stat().st_mtime_ns for p in where.rglob("*") if p.is_file()}
        sent = ringex("admin", "snapshot", "--config", str(profile))
        assert sent.returncode == 0, sent.stderr
        assert "snapshot: sent" in sent.stdout

        def written() -> bool:
            now = {p: p.stat().st_mtime_ns for p in where.rglob("*") if p.is_file()}
            return any(p.parent.name.startswith("matcher-") and before.get(p) != t
                       for p, t in now.items())  # fmt: skip

        deadline = time.monotonic() + 20
        while not written() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert written(), sorted(str(p) for p in where.rglob("*"))
        refused = ringex("admin", "snapshot", "NOPE-USD", "--config", str(profile))
        assert refused.returncode == 2 and "NOPE-USD" in refused.stderr, refused
