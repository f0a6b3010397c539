"""A private PostgreSQL cluster under ``var/<instance>/pg``, used when no DSN is configured.

The system's binaries (``initdb``, ``pg_ctl``: on PATH or in /usr/lib/postgresql/*/bin) run a
socket-only server (``listen_addresses = ''``, the socket in the data directory), so nothing
listens on the network and two instances never collide on a port. ``fast=True`` (tests,
benchmarks) turns off fsync and friends: a crash of the machine may then lose the cluster,
which a test does not mind. PostgreSQL refuses to run as root, so under root the server runs
as the ``postgres`` user (none: refused, naming the remedies) and owns its directory.

    root/            var/<instance>/pg
      data/          PGDATA, and the socket .s.PGSQL.5432
      server.log
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import logging
import os
import pwd
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from procs.common.durable import fsync_dir, fsync_file
from shm.liveness import pid_alive

log = logging.getLogger("ringex.dbwriter.pg")

DATABASE: Final = "ringex"
SUPERUSER: Final = "ringex"
PORT: Final = 5432
_SOCKET_MAX: Final = 107  # sun_path holds 108 bytes with the NUL
# Not synchronous_commit = off: an immediate stop would then lose committed batches.
_FAST: Final = ("fsync = off", "full_page_writes = off")
#: The line before the settings ``init`` appends to postgresql.conf.
_MARK: Final = "\n# ringex embedded\n"
#: What a cluster's path may not hold, and why: libpq splits ``host`` at commas, quoted or
#: not, and pg_ctl puts its log file's path in double quotes in a shell command
_REFUSED_CHARS: Final = (
    (",", "a comma, which libpq reads as a list of hosts"),
    ('"', "a double quote, which pg_ctl's shell command cannot carry"),
)
#: Written last by ``init``: the cluster is whole (initdb done, settings appended).
MADE: Final = "ringex-made"


class EmbeddedError(RuntimeError):
    """The private cluster cannot be created or started; the message says why."""


def find_bin_dir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``: PATH first, then the newest
    /usr/lib/postgresql/<version>/bin; None when PostgreSQL is not installed."""
    initdb = shutil.which("initdb")
    if initdb is not None:
        directory = Path(initdb).parent
        if (directory / "pg_ctl").exists():
            return directory
    versions = [Path(p).parent.parent.name for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    found = sorted(
        (f"/usr/lib/postgresql/{v}/bin/initdb" for v in versions if v.isdigit()), key=_version
    )
    return Path(found[-1]).parent if found else None


def _version(path: str) -> int:
    return int(Path(path).parent.parent.name)


def _run_as() -> pwd.struct_passwd | None:
    """The user the server runs as when we are root (``postgres``); None when we are not.

    Never ``nobody``, which an earlier build fell back to: the account many daemons share,
    whose every process could then connect to the cluster (its authentication is the
    socket's owner, initdb's ``trust``) and read or rewrite the venue's trades and
    balances (review 95)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise EmbeddedError(
            "running as root, and no postgres user exists for the embedded database to run "
            "as (PostgreSQL refuses root; a shared account such as nobody would let its "
            "other processes into the database): create one (useradd --system postgres, as "
            "the distribution's package does), run ringex as a user of its own, or set "
            "database.dsn to a server of yours"
        ) from None


def _reachable(root: Path, user: pwd.struct_passwd | None) -> Path:
    """Where the cluster lives. Under root the server runs as ``user`` (postgres), which may
    not be able to reach ``root`` (a 0700 home or pytest directory on the way): then the
    cluster lives in /var/tmp/ringex-pg/<digest of root>, and ``root`` holds a symlink to it,
    so the instance's directory still shows where its database is."""
    if user is None:
        return root
    if root.is_dir() and not root.is_symlink():
        return root  # made here before: the cluster's own directory is the server's, 0700
    probe = root.parent  # only the way to it must be open: the cluster dir itself is 0700
    while not probe.exists():
        probe = probe.parent
    blocked = any(not (p.stat().st_mode & 0o001) for p in (probe, *probe.parents) if p != Path("/"))
    if not blocked:
        return root
    digest = hashlib.sha1(str(root).encode()).hexdigest()[:16]
    base = OUTSIDE_ROOT
    base.mkdir(mode=0o755, parents=True, exist_ok=True)
    st = base.lstat()  # a fixed name in a world-writable directory: another user's first?
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise EmbeddedError(
            f"{base} is not a directory of this user's (uid {st.st_uid}, mode "
            f"{stat.S_IMODE(st.st_mode):04o}): another user made it, and would choose where "
            "the database lives; remove it, or set database.dsn (review 95)"
        )
    base.chmod(0o755)
    target = base / digest
    root.parent.mkdir(parents=True, exist_ok=True)
    if not root.is_symlink() and not root.exists():
        if target.exists():  # the instance directory that pointed here was removed: its data too
            _discard_orphan(target)
        root.symlink_to(target)
    return target


#: Where a cluster lives when its instance's directory is out of the postgres user's reach.
OUTSIDE_ROOT = Path("/var/tmp/ringex-pg")


def _discard_orphan(target: Path) -> None:
    """Remove a cluster whose instance directory is gone (moved aside or deleted to start an
    empty exchange): left in place, the next instance at that path would find a database
    that does not belong to its journal. One still running is refused, not removed."""
    pid_file = target / "data" / "postmaster.pid"
    if pid_file.exists():
        first = pid_file.read_text().split("\n", 1)[0].strip()
        if first.isdigit() and pid_alive(int(first)):
            raise EmbeddedError(
                f"{target} holds a running PostgreSQL (pid {first}) whose instance directory "
                f"is gone: stop it (pg_ctl stop -D {target}/data) before starting this instance"
            )
    log.warning("removing %s: a cluster whose instance directory was removed", target)
    shutil.rmtree(target)


def _conf_list(path: str) -> str:
    """``path`` as the one element of a postgresql.conf list setting: double-quoted within
    the list (``""`` for a ``"``), the whole a single-quoted string (``''`` for a ``'``, and
    ``\\`` for a backslash, which the file's strings escape with). A plain ``'{path}'`` broke
    the server's start under a var_dir holding a quote or a backslash (a review,
    2026-12-03); a comma or a double quote the constructor refuses (``_REFUSED_CHARS``)."""
    element = '"' + path.replace('"', '""') + '"'
    return "'" + element.replace("\\", "\\\\").replace("'", "''") + "'"


class EmbeddedPostgres:
    """One private cluster. ``start`` creates it when missing and is a no-op when it runs."""

    def __init__(self, root: Path, *, fast: bool = False, bin_dir: Path | None = None) -> None:
        self.user = _run_as()
        self.root = _reachable(Path(root).absolute(), self.user)
        self.data = self.root / "data"
        self.log_path = self.root / "server.log"
        self.fast = fast
        found = bin_dir or find_bin_dir()
        if found is None:
            raise EmbeddedError(
                "no PostgreSQL binaries: initdb is not on PATH nor in /usr/lib/postgresql/*/bin "
                "(install postgresql, or set database.dsn to an external server)"
            )
        self.bin_dir = found
        self.started_here = False
        socket = self.data / f".s.PGSQL.{PORT}"
        for char, why in _REFUSED_CHARS:
            if char in str(self.data):
                raise EmbeddedError(
                    f"the cluster's directory {self.data} holds {why}: use a var_dir without "
                    "one, or set database.dsn"
                )
        if len(str(socket)) > _SOCKET_MAX:
            raise EmbeddedError(
                f"socket path {socket} is {len(str(socket))} bytes, the limit is {_SOCKET_MAX}: "
                f"use a shorter var_dir"
            )

    @property
    def lock_path(self) -> Path:
        """Beside the cluster's directory: ``start`` holds it (see there)."""
        return self.root.with_name(self.root.name + ".lock")

    @property
    def dsn(self) -> str:
        return self._dsn(DATABASE)

    def _dsn(self, dbname: str) -> str:
        """Quoted by psycopg: a data directory may hold spaces (``~/My Exchange/var``)."""
        from psycopg.conninfo import make_conninfo  # noqa: PLC0415  (as in start)

        return make_conninfo(host=str(self.data), port=PORT, dbname=dbname, user=SUPERUSER)

    def _cmd(self, tool: str, *args: str) -> list[str]:
        argv = [str(self.bin_dir / tool), *args]
        if self.user is None:
            return argv
        uid, gid = str(self.user.pw_uid), str(self.user.pw_gid)
        return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *argv]

    def _check(self, argv: list[str], what: str) -> None:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = ""
            if self.log_path.exists():
                tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-10:])
            raise EmbeddedError(
                f"{what} failed (exit {done.returncode}): {done.stderr.strip()} {tail}".strip()
            )

    def running(self) -> bool:
        if not (self.data / "PG_VERSION").exists():
            return False
        argv = self._cmd("pg_ctl", "-D", str(self.data), "status")
        return subprocess.run(argv, capture_output=True, check=False).returncode == 0

    def init(self) -> None:
        """Create the cluster (idempotent: an existing one is kept). Its last step writes
        ``MADE``: a start that died before it is finished by the next (settings appended
        again, which later lines override) or, died inside initdb, made again."""
        made, conf = self.data / MADE, self.data / "postgresql.conf"
        if made.exists():
            return
        appended = conf.exists() and _MARK in conf.read_text(errors="replace")
        if not appended:  # initdb did not finish: nothing in it to keep
            shutil.rmtree(self.data, ignore_errors=True)
            self.root.mkdir(parents=True, exist_ok=True)
            if self.user is not None:
                os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
            self.root.chmod(0o700)
            args = ["-D", str(self.data), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8"]
            args += ["--locale=C", *(("--no-sync",) if self.fast else ())]
            self._check(self._cmd("initdb", *args), f"initdb of {self.data}")
        settings = [
            "listen_addresses = ''",
            f"unix_socket_directories = {_conf_list(str(self.data))}",
            f"port = {PORT}",
            "max_connections = 50",
            *(_FAST if self.fast else ()),
        ]
        with open(conf, "a") as f:
            f.write(_MARK + "\n".join(settings) + "\n")
        fsync_file(conf)
        made.touch()
        fsync_file(made)
        fsync_dir(self.data)

    def start(self) -> str:
        """Create and start the cluster when needed, make the database; return the DSN.

        Processes that start the same cluster at once (a writer, ``ringex replay --to-db``, a
        test) take turns on a lock file beside it: initdb writes PG_VERSION early, so one that
        looked while another's initdb ran would start a half-made cluster."""
        with self._turn():
            self.init()
            self._settle()
            if not self.running():
                argv = self._cmd(
                    *("pg_ctl", "-D", str(self.data), "-l", str(self.log_path)),
                    *("-w", "-t", "60", "start"),
                )
                self._check(argv, f"pg_ctl start of {self.data}")
                self.started_here = True
            # imported here: the supervisor, which only stops clusters, starts 0.15 s sooner
            import psycopg  # noqa: PLC0415  (a failover waits on that start)

            with psycopg.connect(self._dsn("postgres"), autocommit=True) as conn:
                exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
                if exists.fetchone() is None:
                    conn.execute(f"CREATE DATABASE {DATABASE}")
        log.info("embedded PostgreSQL at %s (binaries %s)", self.data, self.bin_dir)
        return self.dsn

    @contextlib.contextmanager
    def _turn(self) -> Iterator[None]:
        """The lock file beside the cluster, held: starts and stops take turns on it."""
        lock = self.lock_path
        lock.parent.mkdir(parents=True, exist_ok=True)
        # read-only: whoever made the file, any user that may read it can take the lock; so
        # only this user may (review 95: another one held it, and starts waited for ever)
        with open(os.open(lock, os.O_RDONLY | os.O_CREAT, 0o600), "rb") as held:
            with contextlib.suppress(PermissionError):  # (not ours to narrow)
                os.fchmod(held.fileno(), 0o600)
            fcntl.flock(held, fcntl.LOCK_EX)  # released when the file closes
            yield

    def _settle(self, timeout_s: float = 60.0) -> None:
        """Wait while a server is running but takes no connection: one shutting down (a
        stopper killed in the middle of its ``pg_ctl stop`` leaves it going down, and a
        start then found it "running" and failed to connect) or still starting."""
        # beside pg_ctl where that really is (bin_dir may hold links: /usr/local/bin), else
        # on PATH (review 66: it was looked for in bin_dir alone, and not found here)
        beside = (self.bin_dir / "pg_ctl").resolve().parent / "pg_isready"
        tool = str(beside) if beside.exists() else shutil.which("pg_isready")
        if tool is None:
            return  # (shipped beside pg_ctl by every PostgreSQL package seen)
        deadline = time.monotonic() + timeout_s
        isready = self._cmd(tool, "-q", "-h", str(self.data), "-p", str(PORT))  # absolute
        while self.running() and time.monotonic() < deadline:
            if subprocess.run(isready, capture_output=True, check=False).returncode == 0:
                return  # accepting connections
            time.sleep(0.05)

    def stop(self, mode: str = "fast", timeout_s: int = 60) -> None:
        """Stop the server (``mode``: smart, fast or immediate), waiting at most ``timeout_s``
        (else ``EmbeddedError``); nothing when it is down. Under the start's lock: a start
        waits for a stop under way to end."""
        with self._turn():
            if self.running():
                wait = ("-w", "-t", str(timeout_s))
                argv = self._cmd("pg_ctl", "-D", str(self.data), "-m", mode, *wait, "stop")
                self._check(argv, f"pg_ctl stop of {self.data}")

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
        self.lock_path.unlink(missing_ok=True)
