"""Start a whole exchange as an operator does (`ringex run --config`), for the end-to-end
tests: a profile under the test's tmp_path, the supervisor as a child process, and on exit a
clean stop (SIGTERM) and the embedded PostgreSQL stopped."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from config import load_profile
from procs.common.embedded_postgres import EmbeddedPostgres
from procs.common.run_files import read_status
from procs.common.topology import postgres_dir
from tests.free_ports import free_port

ROOT = Path(__file__).parents[2]


@contextmanager
def running_exchange(
    instance: str,
    tmp_path: Path,
    gateway: str = "",
    *,
    marketdata: bool = False,
    database: bool = True,
    dsn: str = "",
) -> Iterator[Path]:
    """Yield the profile of a running instance; ``gateway`` is extra TOML for gw1's table;
    ``marketdata`` runs the market-data process too, on a free port; ``database=False``
    runs no database writer (nor its PostgreSQL); ``dsn`` is its database (empty: the
    embedded one)."""
    profile = tmp_path / "e2e.toml"
    feed = f"enabled = true\nport = {free_port()}\n" if marketdata else "enabled = false\n"
    profile.write_text(
        f'instance = "{instance}"\nvar_dir = "{tmp_path / "var"}"\n'
        f"[marketdata]\n{feed}"
        f'[database]\nenabled = {"true" if database else "false"}\ndsn = "{dsn}"\n'
        "[ring]\ncapacity = 4096\n"
        '[wait]\nstrategy = "blocking"\npark_timeout_s = 0.005\n'
        "[risk]\nfee_account = 1\n"
        f'[[gateways]]\nname = "gw1"\nid = 1\nport = {free_port()}\n{gateway}'
    )
    err_path = tmp_path / "supervisor.stderr"
    proc = run_in_foreground(profile, err_path)
    cfg = load_profile(str(profile))
    try:
        deadline = time.monotonic() + 60
        while (read_status(cfg) or {}).get("state") != "running":
            assert proc.poll() is None, (
                "the supervisor exited while starting: "
                + err_path.read_text(errors="replace")[-3000:]
            )
            assert time.monotonic() < deadline, "not running within 60 s"
            time.sleep(0.1)
        yield profile
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        # the writer's cluster outlives a restart; run as root it lives outside tmp_path
        # (/var/tmp/ringex-pg), so its files go too
        EmbeddedPostgres(postgres_dir(cfg)).destroy()


def run_in_foreground(profile: Path, err_path: Path) -> subprocess.Popen[bytes]:
    """``ringex run`` on ``profile``, its stderr (where a foreground supervisor logs) kept in
    ``err_path``: a failure's reason is there."""
    with open(err_path, "wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "procs.cli", "run", "--config", str(profile)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def ringex(profile: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "procs.cli", *args, "--config", str(profile)],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout
