"""Schema migrations: numbered SQL files applied in order before the reactor starts.

Blocking code on a plain ``sqlite3`` connection, run by ``makeService``; a
failure stops startup with :class:`MigrationError`.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Sequence
from importlib import resources

import attrs

from sealskin.store import StoreError

_MIGRATION_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class MigrationError(StoreError):
    """The database cannot be brought to this code's schema; startup must stop."""


@attrs.frozen
class Migration:
    version: int
    name: str
    sql: str


def packaged_migrations() -> list[Migration]:
    """The ``migrations/NNNN_*.sql`` files shipped with the package, in order."""
    folder = resources.files("sealskin.store") / "migrations"
    found = sorted(
        (Migration(int(m[1]), entry.name, entry.read_text("utf-8"))
         for entry in folder.iterdir() if (m := _MIGRATION_FILE.match(entry.name))),
        key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise MigrationError("migration files must be numbered 0001, 0002, ... without gaps")
    return found


def migrate(path: str, *, migrations: Sequence[Migration] | None = None) -> int:
    """Creates or upgrades the database at ``path``; returns its schema version.

    Blocking: call before the reactor starts. Each migration runs in its own
    transaction with its ``schema_version`` row. Raises :class:`MigrationError`
    when the file cannot be opened, is newer than this code, or a script fails.
    """
    known = packaged_migrations() if migrations is None else list(migrations)
    latest = known[-1].version if known else 0
    try:
        # Owner-only, like the keys; SQLite gives its -wal and -shm files the same mode.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        os.chmod(path, 0o600)
        conn = sqlite3.connect(path, isolation_level=None)
    except OSError as e:
        raise MigrationError(f"cannot open database {path}: {e.strerror}") from e
    except sqlite3.Error as e:
        raise MigrationError(f"cannot open database {path}: {e}") from e
    try:
        _set_wal(conn, path)
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version ("
                     " version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL,"
                     " applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)")
        current = _schema_version(conn)
        if current > latest:
            raise MigrationError(
                f"database {path} has schema version {current} but this SealSkin knows"
                f" only up to {latest}: upgrade SealSkin or restore an older backup")
        for m in known:
            if m.version > current:
                _apply(conn, m)
        return _schema_version(conn)
    except sqlite3.Error as e:
        raise MigrationError(f"cannot migrate database {path}: {e}") from e
    finally:
        conn.close()


def _set_wal(conn: sqlite3.Connection, path: str) -> None:
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise MigrationError(f"database {path} cannot use WAL journaling (got {mode!r})")


def _schema_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def _apply(conn: sqlite3.Connection, m: Migration) -> None:
    # executescript() commits any open transaction first, so BEGIN goes inside
    # the script; the version row comes first so a concurrent migrator collides.
    name = m.name.replace("'", "''")
    script = (f"BEGIN IMMEDIATE;\nINSERT INTO schema_version (version, name)"
              f" VALUES ({int(m.version)}, '{name}');\n{m.sql}\n;")
    try:
        conn.executescript(script)
        conn.commit()
    except sqlite3.Error as e:
        if conn.in_transaction:
            conn.rollback()
        if isinstance(e, sqlite3.IntegrityError) and _schema_version(conn) >= m.version:
            return  # another process applied it meanwhile
        raise MigrationError(f"migration {m.name} failed: {e}") from e
