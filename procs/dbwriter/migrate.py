"""Schema migrations: the plain SQL files in ``migrations/``, applied in order, once each.

A file is ``<version>_<name>.sql`` (``0001_core.sql``); all run in one transaction, each file
in a savepoint of its own with its record in ``schema_migrations`` (its SHA-256), so a file
that fails undoes the files before it too, all under an advisory lock so two writers starting
together do not race. A recorded file whose text changed since is an error
(a new migration is a new file), never silently re-run or skipped.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import psycopg

log = logging.getLogger("ringex.dbwriter.migrate")

MIGRATIONS: Final = Path(__file__).with_name("migrations")
#: "RGMI": the advisory lock key of migrations, and of the reference data after them
LOCK: Final = 0x52474D49
#: How long a migration waits for a table lock another session holds before it gives up,
#: to be tried again (review 243; as the trade partitions made ahead, review 40)
LOCK_TIMEOUT_MS: Final = 1000
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


#: Files edited in place after release, with the checksums they had then: a database that
#: recorded one of those applied the older text, which did what this one does where it ran
#: (an edit here only mends a case the older text failed in, so it never ran there).
#: 0002: a writer that is no superuser could not read shared_preload_libraries (review 50).
#: 0001: two column comments said what the writer does not (review 120); the SQL is the same.
EARLIER_TEXTS: Final = {
    "0001_core.sql": frozenset(
        {"2466ee3a9075fc4d0c23b06773da17f03d0532eb2e42b3d61c8e68267e917f0b"}
    ),
    "0002_trades.sql": frozenset(
        {"158bad750d67c970a9bdf7de642dbfc1d25d27dfa4f953d4da5c4841b5a17ac7"}
    ),
}


class MigrationError(RuntimeError):
    """A migration that cannot be applied: a file misnamed or repeated, changed since it was
    applied, a database a newer ringex migrated, or a file the server refuses (not retried:
    a lock timeout or a lost server keeps its own type, and the writer retries it)."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load(directory: Path = MIGRATIONS) -> list[Migration]:
    """Every migration file in ``directory``, by version; versions must not repeat."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path}: a migration is named NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"{path}: version {version} repeats {found[version].name}")
        found[version] = Migration(version, path.name, path.read_text())
    return [found[v] for v in sorted(found)]


def migrate(conn: psycopg.Connection[Any], directory: Path = MIGRATIONS) -> list[str]:
    """Apply the migrations ``conn``'s database lacks; return the names applied (in order)."""
    migrations = load(directory)
    applied: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK,))
        # a table lock another session holds (a pg_dump's) is not waited for: every reader
        # would queue behind the waiting ALTER (review 243, REST history's reads timed out);
        # the writer tries the migration again later (``DbWriter._retry``)
        conn.execute(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
            "name text NOT NULL, checksum text NOT NULL, applied timestamptz NOT NULL "
            "DEFAULT now())"
        )
        rows = conn.execute("SELECT version, name, checksum FROM schema_migrations").fetchall()
        recorded = {int(r[0]): (str(r[1]), str(r[2])) for r in rows}
        known = {m.version for m in migrations}
        unknown = [(v, name) for v, (name, _) in sorted(recorded.items()) if v not in known]
        if unknown:
            newest = migrations[-1] if migrations else None
            mine = f"{newest.name} (version {newest.version})" if newest else "none"
            raise MigrationError(
                f"database schema is at migration {recorded[max(recorded)][0]} (version "
                f"{max(recorded)}) and holds {', '.join(n for _, n in unknown)}, which "
                f"{directory} lacks (this ringex's newest: {mine}): it was made by a newer "
                f"ringex; run that one, or restore a database this one made"
            )
        for m in migrations:
            if m.version in recorded:
                name, checksum = recorded[m.version]
                if checksum != m.checksum and checksum not in EARLIER_TEXTS.get(m.name, ()):
                    raise MigrationError(
                        f"migration {m.name} changed since it was applied as {name} "
                        f"(sha256 {checksum[:12]} recorded, {m.checksum[:12]} on disk)"
                    )
                continue
            with conn.transaction():  # a savepoint: the file and its record, or neither
                try:
                    conn.execute(m.sql.encode())  # no parameters: the simple query protocol
                except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                    exc.add_note(f"in migration {directory / m.name}")  # retried: its type
                    raise
                except psycopg.Error as exc:  # the file's own fault: said with its name
                    said = str(exc).strip().splitlines()  # its LINE and caret: the cause's
                    why = said[0] if said else repr(exc)
                    raise MigrationError(f"migration {directory / m.name} failed: {why}") from exc
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (m.version, m.name, m.checksum),
                )
            applied.append(m.name)
            log.info("applied migration %s", m.name)
    return applied
