"""Review 57: README.md followed literally by an operator (Two commands, Configure, The
processes, Operate with the REST API and the private stream, Hot standby and failover, and
the dry run of Production with systemd), on an instance of the reviewer's own.

Almost every documented flow did what README says (see the review's report). Each fault
pinned here failed on the code it was written against and passes since its fix (the same
session's commits): its docstring says what README promises, what happened, and where the
cause was. They are pure calls (config loading, `ringex status` over a segment
this process holds): no instance is started.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from config import load_profile
from config.loader import ConfigError
from procs.cli import main as ringex
from procs.common.record_codec import RecordCodec
from shm import Ring


def _standby_profile(tmp_path: Path, primary: str) -> Path:
    path = tmp_path / "standby.toml"
    path.write_text(f'instance = "r57v6"\n[replication]\nprimary = "{primary}"\n')
    return path


@pytest.mark.parametrize("primary", ["::1", "fe80::1", "2001:db8::7"])
def test_an_ipv6_primary_without_a_port_is_refused_at_load(tmp_path: Path, primary: str) -> None:
    """README (Configure): "A config that could not run is refused at load, naming what is
    wrong: ... a `replication.primary` that is not host:port (an IPv6 host in brackets,
    `[::1]:9900`)". An operator who writes the primary's IPv6 address and forgets the port
    (`primary = "::1"`, `"fe80::1"`, `"2001:db8::7"`) gives no host:port at all, yet the
    config loads: ``config.fields.host_and_port`` splits on the last colon
    (``rpartition(":")``), so ``ReplicationConfig.primary_address`` (config/schema.py)
    returns host ``":"`` (``"fe80:"``, ``"2001:db8:"``) and port 1, which passes its checks
    (a host that is not empty, a port that is digits in 1..65535). The standby then dials
    ``(":", 1)`` forever (``Standby._connect_loop``, procs/replica/standby.py), each try
    logged as "primary ::1 unreachable (... Name or service not known)": the host and port
    printed side by side read back as the address given, hiding the misparse. Fix: in
    ``primary_address``, refuse a host that holds a ':' unless it was written in brackets
    (an IPv6 host is ``[addr]:port``), naming the value."""
    path = _standby_profile(tmp_path, primary)
    with pytest.raises(ConfigError, match=r"replication\.primary"):
        load_profile(str(path))


def test_a_bracketed_ipv6_primary_still_loads(tmp_path: Path) -> None:
    """The form README gives loads, its brackets dropped (the guard for the fix above)."""
    cfg = load_profile(str(_standby_profile(tmp_path, "[::1]:9900")))
    assert cfg.replication.primary_address() == ("::1", 9900)


@pytest.fixture
def held_rings(tmp_path: Path) -> Iterator[Path]:
    """A config whose instance's shared memory is in use (a ring this process created, as a
    supervisor started from another working directory holds its rings), while its
    ``var_dir`` here holds no status file: the case README's Operate describes."""
    instance = f"r57wd{os.getpid()}"
    ring = Ring.create(instance, "gw0-cmd", RecordCodec(), capacity=16, consumers=["router"])
    path = tmp_path / "rel.toml"
    path.write_text(f'instance = "{instance}"\nvar_dir = "{tmp_path / "var"}"\n')
    try:
        yield path
    finally:
        ring.unlink()


def test_status_without_wait_says_an_instance_runs_elsewhere(
    held_rings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The guard for the fault below: plain `ringex status` names the shared memory in use."""
    ringex(["status", "--config", str(held_rings)])
    assert "runs (its shared memory is in use by pids" in capsys.readouterr().out


def test_status_wait_ready_says_an_instance_runs_elsewhere(
    held_rings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """README (Operate, Stopping): "`var_dir` is relative to the working directory: `stop`
    and `status` from another one find no status file, and where the instance's shared
    memory is in use they say so (`stop` exits 1) rather than "not running"", and
    "`status --wait-ready` [says] whether the instance is not running (and why it stopped),
    still starting, or which processes are down or recovering". Run from another working
    directory than the instance's (every shipped profile's `var_dir` is the relative
    "var"), `ringex status` says the instance runs and where to look, but `ringex status
    --wait-ready` (any `--timeout`) says "instance ... not ready within 0 s: not running (it
    has not run: no status)" (seen live: an instance started in /tmp/r57/wd, asked from
    /tmp/r57/other): the very words README says it avoids, and false, so a deploy script
    waiting on it concludes the exchange never started. Cause: ``_status`` in procs/cli.py
    gives up with ``not_ready(read_status(cfg))``, which knows only the status file;
    ``_running_elsewhere`` (used by `stop` and by ``_print_status``) is not asked. Fix: in
    ``not_ready``'s no-status case (or in ``_status`` before it), say
    ``_running_elsewhere(cfg)`` where it is not None."""
    assert ringex(["status", "--config", str(held_rings), "--wait-ready", "--timeout", "0"]) == 1
    said = capsys.readouterr().err
    assert "not running" not in said, said
    assert "shared memory is in use" in said, said
