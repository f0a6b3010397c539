"""A cluster kept outside an unreachable instance directory goes with that directory: moving
var/<instance> aside to start an empty exchange must not bring back the old database."""

from __future__ import annotations

import hashlib
import os
import pwd
from pathlib import Path

import pytest

from procs.common import embedded_postgres as pg


def _user() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    pytest.skip("no postgres or nobody user")


def _blocked_root(tmp_path: Path) -> Path:
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    os.chmod(closed, 0o700)  # the postgres user cannot pass: the cluster lives outside
    return closed / "inst" / "pg"


def test_an_orphaned_cluster_is_removed_and_a_running_one_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg, "OUTSIDE_ROOT", tmp_path / "outside")
    root = _blocked_root(tmp_path)
    target = pg._reachable(root, _user())
    assert root.is_symlink() and root.resolve() == target.resolve()
    (target / "data").mkdir(parents=True)
    (target / "data" / "old-database").write_text("checkpoint 8")
    root.unlink()  # the instance directory went (moved aside)
    again = pg._reachable(root, _user())
    assert again == target and not target.exists()  # a fresh cluster will be made there

    (target / "data").mkdir(parents=True)
    (target / "data" / "postmaster.pid").write_text(f"{os.getpid()}\n")
    root.unlink()
    with pytest.raises(pg.EmbeddedError, match="holds a running PostgreSQL"):
        pg._reachable(root, _user())


def test_a_cluster_made_in_the_instance_directory_stays_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cluster's own directory is 0700 (the server's): it must not read as a closed way
    to it, which sent every later start to an old cluster outside (checkpoint 8 against a
    journal at 2, and a crash-looping database writer)."""
    monkeypatch.setattr(pg, "OUTSIDE_ROOT", tmp_path / "outside")
    root = _blocked_root(tmp_path)
    root.mkdir(parents=True)
    os.chmod(root, 0o700)
    old = pg.OUTSIDE_ROOT / hashlib.sha1(str(root).encode()).hexdigest()[:16]
    (old / "data").mkdir(parents=True)  # an older cluster of the same path, outside
    assert pg._reachable(root, _user()) == root
    assert old.exists()  # not taken, and not removed either: it is not this one's
