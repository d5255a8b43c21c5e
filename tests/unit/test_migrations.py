"""migrate(): numbered scripts, one transaction each, refusing a schema from the future."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sealskin.store.sqlite import Migration, MigrationError, migrate, packaged_migrations

LATEST = packaged_migrations()[-1].version


def query(path: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def tables(path: Path) -> set[str]:
    return {str(r[0]) for r in query(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_packaged_migrations_are_numbered_from_one_without_gaps() -> None:
    found = packaged_migrations()
    assert [m.version for m in found] == list(range(1, len(found) + 1))
    assert found[0].name == "0001_init.sql"


def test_a_fresh_database_gets_the_latest_version(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    assert migrate(str(db)) == LATEST
    assert query(db, "SELECT max(version) FROM schema_version") == [(LATEST,)]
    assert {"principals", "groups", "apps", "app_stores", "templates", "sessions", "homes",
            "uploads", "upload_chunks", "audit", "meta"} <= tables(db)
    indexes = {r[0] for r in query(db, "SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "sessions_by_username" in indexes


def test_running_again_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    migrate(str(db))
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')")
    conn.commit()
    conn.close()
    before = query(db, "SELECT version, name, applied_at FROM schema_version")
    assert migrate(str(db)) == LATEST
    assert query(db, "SELECT version, name, applied_at FROM schema_version") == before
    assert query(db, "SELECT value FROM meta WHERE key = 'k'") == [("v",)]


def test_a_database_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "future.db"
    migrate(str(db))
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO schema_version (version, name) VALUES (?, 'from_the_future.sql')",
                 (LATEST + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(MigrationError, match=f"schema version {LATEST + 1}.*only up to {LATEST}"):
        migrate(str(db))


def test_wal_journaling_is_on(tmp_path: Path) -> None:
    db = tmp_path / "wal.db"
    migrate(str(db))
    assert query(db, "PRAGMA journal_mode") == [("wal",)]


def test_a_later_migration_is_applied_to_an_existing_database(tmp_path: Path) -> None:
    db = tmp_path / "up.db"
    migrate(str(db))
    later = [*packaged_migrations(),
             Migration(LATEST + 1, "9999_notes.sql", "CREATE TABLE notes (id INTEGER);")]
    assert migrate(str(db), migrations=later) == LATEST + 1
    assert "notes" in tables(db)


def test_a_failing_migration_leaves_no_trace(tmp_path: Path) -> None:
    db = tmp_path / "bad.db"
    broken = [Migration(1, "0001_ok.sql", "CREATE TABLE a (id INTEGER);"),
              Migration(2, "0002_bad.sql", "CREATE TABLE b (id INTEGER);\nNOT SQL AT ALL;")]
    with pytest.raises(MigrationError, match="0002_bad.sql"):
        migrate(str(db), migrations=broken)
    assert query(db, "SELECT version FROM schema_version") == [(1,)]
    assert "a" in tables(db) and "b" not in tables(db)


def test_an_unopenable_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="cannot open|cannot migrate"):
        migrate(str(tmp_path / "no" / "such" / "dir" / "x.db"))


def test_the_database_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    import stat

    db = tmp_path / "private.db"
    migrate(str(db))
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    db.chmod(0o644)  # a database made by an older version is tightened at the next start
    migrate(str(db))
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
