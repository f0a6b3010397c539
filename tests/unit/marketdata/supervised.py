"""An exchange run by the supervisor, as ``ringex run --config`` runs it, for the tests that
drive the page in Chromium against every process: started, waited for until its status says
running, then stopped by SIGTERM and its instance's segments removed; and users funded."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from config import load_profile
from config.schema import RingexConfig
from procs.admin.client import AdminClient
from procs.common.result_codes import ResultCode
from procs.common.run_files import read_status
from procs.common.topology import users_path
from procs.common.users import UserStore
from shm.inspect import remove_instance

from .test_process import ROOT


@contextmanager
def supervised(profile: Path, timeout_s: float = 30) -> Iterator[RingexConfig]:
    """The exchange of ``profile`` run by the supervisor (its log ``supervisor.log`` beside
    the profile), yielded once running; its config."""
    cfg = load_profile(str(profile))
    log_path = profile.parent / "supervisor.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "procs.cli", "run", "--config", str(profile)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + timeout_s
        while (read_status(cfg) or {}).get("state") != "running":
            assert proc.poll() is None, f"the supervisor exited: see {log_path}"
            assert time.monotonic() < deadline, f"not running within {timeout_s:g} s"
            time.sleep(0.05)
        yield cfg
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        remove_instance(cfg.instance)


def fund(
    cfg: RingexConfig, users: Iterable[str], first_account: int, password: Callable[[str], str]
) -> None:
    """Each of ``users`` an account from ``first_account`` on holding 100,000 USD and 10 BTC,
    and a user of the users file (quick logins: scrypt n 16)."""
    admin = AdminClient(cfg)
    try:
        store = UserStore(users_path(cfg))
        for account, user in enumerate(users, start=first_account):
            assert admin.create_account(account).code == ResultCode.OK
            for asset, amount in (("USD", "100000"), ("BTC", "10")):
                assert admin.transfer(account, asset, amount).code == ResultCode.OK
            store.add(user, password(user), account, n=1 << 4)
    finally:
        admin.close()
