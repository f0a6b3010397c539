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
