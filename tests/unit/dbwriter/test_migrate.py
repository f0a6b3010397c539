"""Migrations (in order, once, recorded; a changed file refused), partitions, users."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest

from procs.common.users import UserStore
from procs.dbwriter.migrate import MIGRATIONS, MigrationError, load, migrate
from procs.dbwriter.users import UserSync


def test_migrations_apply_once_and_are_recorded(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        applied = migrate(conn)
        assert applied == [m.name for m in load()]
        assert migrate(conn) == []
        rows = conn.execute("SELECT version, name FROM schema_migrations ORDER BY 1").fetchall()
        assert [r[1] for r in rows] == applied
        kind = conn.execute(
            "SELECT partstrat FROM pg_partitioned_table WHERE partrelid = 'trades'::regclass"
        ).fetchone()
        assert kind == ("r",)  # no TimescaleDB here: native range partitions
        brin = conn.execute(
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'trades' AND indexdef LIKE '%brin%'"
        ).fetchone()
        assert brin == (1,)


def test_a_changed_migration_is_refused(dsn: str, tmp_path: Path) -> None:
    copy = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, copy)
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn, copy)
        first = sorted(copy.glob("*.sql"))[0]
        first.write_text(first.read_text() + "\n-- edited\n")
        with pytest.raises(MigrationError, match="changed since it was applied"):
            migrate(conn, copy)


def test_a_failing_migration_names_its_file(dsn: str, tmp_path: Path) -> None:
    """A file's own fault (bad SQL) is a MigrationError naming the file and the server's
    message, the server's error its cause; a table lock held elsewhere keeps its type (the
    writer retries it) with the file in a note; neither records the file."""
    (tmp_path / "0001_a.sql").write_text("CREATE TABLE a (x int);")
    (tmp_path / "0002_b.sql").write_text("ALTER TABLE a ADD COLUMN y nosuchtype;")
    with psycopg.connect(dsn, autocommit=True) as conn:
        with pytest.raises(MigrationError, match=r"0002_b\.sql failed: type \"nosuchtype\"") as e:
            migrate(conn, tmp_path)
        assert isinstance(e.value.__cause__, psycopg.errors.UndefinedObject)
        (tmp_path / "0002_b.sql").rename(tmp_path / "b.later")
        assert migrate(conn, tmp_path) == ["0001_a.sql"]
        (tmp_path / "b.later").rename(tmp_path / "0002_b.sql")
        with psycopg.connect(dsn) as holder:
            holder.execute("LOCK TABLE a IN ACCESS SHARE MODE")
            with pytest.raises(psycopg.errors.LockNotAvailable) as locked:
                migrate(conn, tmp_path)
        assert f"in migration {tmp_path / '0002_b.sql'}" in locked.value.__notes__
        names = conn.execute("SELECT name FROM schema_migrations ORDER BY 1").fetchall()
        assert names == [("0001_a.sql",)]


def test_partitions_are_made_ahead_and_on_demand(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
        made = conn.execute("SELECT ringex_trade_partitions('2030-01-01', '2030-01-03')").fetchone()
        again = conn.execute(
            "SELECT ringex_trade_partitions('2030-01-02', '2030-01-04')"
        ).fetchone()
        assert (made, again) == ((3,), (1,))
        conn.execute(
            "INSERT INTO trades VALUES "
            "(1, 1, 1, '2030-01-02 23:59:59.999999+00', 1, 1, 1, 1, 1, 2, 2)"
        )
        where = conn.execute("SELECT tableoid::regclass::text FROM trades").fetchone()
        assert where == ("trades_20300102",)


def test_fix_users_are_mirrored_when_their_file_changes(dsn: str, tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    UserStore(path).add("ALICE", "pw", 10, n=16)
    sync = UserSync(path)
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
        assert sync.sync(conn) is True
        assert sync.sync(conn) is False  # unchanged file: nothing written
        store = UserStore(path)
        store.add("BOB", "pw", 11, n=16)
        store.remove("ALICE")
        assert sync.sync(conn) is True
        rows = conn.execute(
            "SELECT sender_comp_id, account_id, password_hash FROM users"
        ).fetchall()
        assert [(r[0], r[1]) for r in rows] == [("BOB", 11)]
        assert rows[0][2].startswith("scrypt$16$8$1$")
