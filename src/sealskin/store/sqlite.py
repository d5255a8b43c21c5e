"""The Store seam on SQLite: one file, one pool thread, one connection.

:func:`migrate` runs in ``makeService`` on a plain ``sqlite3`` connection before
the reactor starts. :class:`SqliteStore` then runs every statement on its own
``adbapi`` pool (STYLE 7); each write is one ``BEGIN IMMEDIATE`` transaction
that also holds its audit row. Records become rows here and nowhere else.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import resources
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

import attrs
from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorCore, IReactorTime

from sealskin.model import (
    AppStore,
    AuditEntry,
    Group,
    HomeDir,
    InstalledApp,
    Principal,
    SessionRecord,
    Template,
    Upload,
    UserSettings,
)
from sealskin.store import Conflict, Missing, StoreError

P = ParamSpec("P")
T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000
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
        conn = sqlite3.connect(path, isolation_level=None)
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


class _Txn(Protocol):
    """What thread functions use of ``adbapi.Transaction`` (a cursor proxy)."""

    def execute(self, sql: str, parameters: Sequence[object] = (), /) -> sqlite3.Cursor: ...


class SqliteStore:
    """:class:`sealskin.store.Store` on one SQLite file (run :func:`migrate` first).

    Every method runs on the store's single pool thread, never on the reactor;
    cancelling a call abandons its result but not its transaction. Timestamps
    come from the records, except audit times, which come from ``clock``.
    """

    def __init__(self, reactor: IReactorCore, path: str, *, clock: IReactorTime) -> None:
        self._reactor = reactor
        self._path = path
        self._clock = clock
        self._db: adbapi.ConnectionPool | None = None
        self._closing = False
        self._in_flight = 0
        self._idle: list[Deferred[None]] = []

    def start(self) -> None:
        """Starts the pool thread; the connection opens with the first call."""
        if self._db is not None or self._closing:
            return
        # adbapi lacks annotations; these are its documented keyword arguments.
        db = adbapi.ConnectionPool(
            "sqlite3", self._path, cp_min=1, cp_max=1, cp_reactor=self._reactor,
            cp_openfun=_thd_open, check_same_thread=False, isolation_level=None)
        db.start()
        self._db = db

    async def close(self) -> None:
        """Lets queued calls finish, then stops the thread and closes the connection."""
        self._closing = True
        if self._in_flight:
            idle: Deferred[None] = Deferred()
            self._idle.append(idle)
            await idle
        db, self._db = self._db, None
        if db is not None:
            db.close()

    async def _run(self, write: bool, fn: Callable[Concatenate[_Txn, P], T],
                   *args: P.args, **kwargs: P.kwargs) -> T:
        if self._db is None or self._closing:
            raise StoreError("the store is not running")
        self._in_flight += 1
        try:
            # adbapi is unannotated: the Deferred fires with fn's result.
            result: T = await self._db.runInteraction(
                _thd_transaction, write, fn, *args, **kwargs)
            return result
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                idle, self._idle = self._idle, []
                for d in idle:
                    d.callback(None)

    def _entry(self, actor: str, action: str, target: str,
               detail: Mapping[str, Any] | None = None) -> AuditEntry:
        return AuditEntry(self._clock.seconds(), actor, action, target, dict(detail or {}))

    # principals

    async def principal(self, username: str) -> Principal | None:
        return await self._run(False, _thd_principal, username)

    async def principals(self) -> Sequence[Principal]:
        return await self._run(False, _thd_principals)

    async def add_principal(self, p: Principal, *, actor: str) -> None:
        """Raises Conflict when the name is taken by a user or an admin."""
        detail = {"is_admin": p.is_admin, "settings": _settings_dict(p.settings)}
        entry = self._entry(actor, f"{_kind(p.is_admin)}.create", p.username, detail)
        await self._run(True, _thd_add_principal, p, entry)

    async def set_settings(self, username: str, s: UserSettings, *, actor: str) -> Principal:
        """Raises Missing unless ``username`` is a user (admins have no settings)."""
        entry = self._entry(actor, "user.update", username, {"settings": _settings_dict(s)})
        return await self._run(True, _thd_set_settings, username, s, entry)

    async def remove_principal(self, username: str, *, actor: str) -> None:
        """Also removes the principal's homes and uploads; raises Missing."""
        # The action ("user.remove" or "admin.remove") depends on the row: the thread sets it.
        await self._run(True, _thd_remove_principal, username,
                        self._entry(actor, "principal.remove", username))

    # groups

    async def group(self, name: str) -> Group | None:
        return await self._run(False, _thd_group, name)

    async def groups(self) -> Sequence[Group]:
        return await self._run(False, _thd_groups)

    async def add_group(self, g: Group, *, actor: str) -> None:
        entry = self._entry(actor, "group.create", g.name, {"settings": _settings_dict(g.settings)})
        await self._run(True, _thd_add_group, g, entry)

    async def set_group(self, g: Group, *, actor: str) -> None:
        entry = self._entry(actor, "group.update", g.name, {"settings": _settings_dict(g.settings)})
        await self._run(True, _thd_set_group, g, entry)

    async def remove_group(self, name: str, *, actor: str) -> None:
        await self._run(True, _thd_delete, "groups", "name", name,
                        self._entry(actor, "group.remove", name))

    # installed apps, app stores, templates

    async def app(self, app_id: str) -> InstalledApp | None:
        return await self._run(False, _thd_app, app_id)

    async def apps(self) -> Sequence[InstalledApp]:
        """In install order."""
        return await self._run(False, _thd_apps)

    async def add_app(self, a: InstalledApp, *, actor: str) -> None:
        await self._run(True, _thd_add_app, a, self._entry(actor, "app.install", a.id, _app_detail(a)))

    async def set_app(self, a: InstalledApp, *, actor: str) -> None:
        await self._run(True, _thd_set_app, a, self._entry(actor, "app.update", a.id, _app_detail(a)))

    async def remove_app(self, app_id: str, *, actor: str) -> None:
        await self._run(True, _thd_delete, "apps", "id", app_id,
                        self._entry(actor, "app.remove", app_id))

    async def app_stores(self) -> Sequence[AppStore]:
        """In the order they were added."""
        return await self._run(False, _thd_app_stores)

    async def add_app_store(self, s: AppStore, *, actor: str) -> None:
        entry = self._entry(actor, "app_store.add", s.name, {"url": _without_userinfo(s.url)})
        await self._run(True, _thd_add_app_store, s, entry)

    async def remove_app_store(self, name: str, *, actor: str) -> None:
        await self._run(True, _thd_delete, "app_stores", "name", name,
                        self._entry(actor, "app_store.remove", name))

    async def templates(self) -> Sequence[Template]:
        return await self._run(False, _thd_templates)

    async def put_template(self, t: Template, *, actor: str) -> None:
        """Adds or replaces; the audit row names the keys, not their values."""
        entry = self._entry(actor, "template.put", t.name, {"keys": sorted(t.settings)})
        await self._run(True, _thd_put_template, t, entry)

    async def remove_template(self, name: str, *, actor: str) -> None:
        await self._run(True, _thd_delete, "templates", "name", name,
                        self._entry(actor, "template.remove", name))

    # sessions

    async def add_session(self, s: SessionRecord) -> None:
        await self._run(True, _thd_add_session, s)

    async def session(self, session_id: str) -> SessionRecord | None:
        return await self._run(False, _thd_session, session_id)

    async def sessions(self, username: str | None = None) -> Sequence[SessionRecord]:
        """Oldest first; all sessions when ``username`` is None."""
        return await self._run(False, _thd_sessions, username)

    async def set_session(self, s: SessionRecord) -> None:
        await self._run(True, _thd_set_session, s)

    async def remove_session(self, session_id: str) -> None:
        await self._run(True, _thd_delete, "sessions", "id", session_id, None)

    # home directories

    async def homes(self, username: str) -> Sequence[HomeDir]:
        return await self._run(False, _thd_homes, username)

    async def add_home(self, h: HomeDir, *, actor: str) -> None:
        """Raises Conflict for a duplicate, Missing for an unknown principal."""
        entry = self._entry(actor, "home.create", f"{h.username}/{h.name}")
        await self._run(True, _thd_add_home, h, entry)

    async def remove_home(self, username: str, name: str, *, actor: str) -> None:
        entry = self._entry(actor, "home.remove", f"{username}/{name}")
        await self._run(True, _thd_remove_home, username, name, entry)

    # uploads

    async def add_upload(self, u: Upload) -> None:
        """Raises Conflict for a duplicate id, Missing for an unknown principal."""
        await self._run(True, _thd_add_upload, u)

    async def upload(self, upload_id: str) -> Upload | None:
        return await self._run(False, _thd_upload, upload_id)

    async def mark_chunk(self, upload_id: str, index: int, now: float) -> Upload:
        """Records chunk ``index`` (idempotent), sets ``updated_at`` to ``now``; raises Missing.

        The caller checks ``0 <= index < total_chunks``.
        """
        return await self._run(True, _thd_mark_chunk, upload_id, index, now)

    async def remove_upload(self, upload_id: str) -> None:
        await self._run(True, _thd_delete, "uploads", "id", upload_id, None)

    async def uploads_older_than(self, updated_before: float) -> Sequence[Upload]:
        """Uploads whose ``updated_at`` is before ``updated_before`` (epoch seconds)."""
        return await self._run(False, _thd_uploads_older_than, updated_before)

    # audit and small server-wide values

    async def audit(self, limit: int = 100) -> Sequence[AuditEntry]:
        """The newest ``limit`` entries, newest first."""
        return await self._run(False, _thd_audit, limit)

    async def record(self, entry: AuditEntry) -> None:
        await self._run(True, _thd_insert_audit, entry)

    async def meta(self, key: str) -> str | None:
        return await self._run(False, _thd_meta, key)

    async def set_meta(self, key: str, value: str) -> None:
        await self._run(True, _thd_set_meta, key, value)


# Pool-thread functions: plain arguments in, records out, driver errors translated.

def _thd_open(conn: sqlite3.Connection) -> None:
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


def _thd_transaction(txn: _Txn, write: bool, fn: Callable[..., T],
                     *args: object, **kwargs: object) -> T:
    # The connection is in autocommit mode: writes open their own transaction,
    # adbapi commits it on return and rolls it back on an exception.
    try:
        if write:
            txn.execute("BEGIN IMMEDIATE")
        return fn(txn, *args, **kwargs)
    except sqlite3.Error as e:
        raise StoreError(f"database error: {e}") from e


def _thd_insert(txn: _Txn, sql: str, params: Sequence[object], what: str) -> None:
    """Runs an INSERT: a duplicate key is Conflict, a missing parent row is Missing."""
    try:
        txn.execute(sql, params)
    except sqlite3.IntegrityError as e:
        if "FOREIGN KEY" in str(e):
            raise Missing(f"{what}: no such principal") from None
        raise Conflict(f"{what} already exists") from None


def _thd_changed(cursor: sqlite3.Cursor, what: str) -> None:
    if cursor.rowcount == 0:
        raise Missing(f"no such {what}")


def _thd_insert_audit(txn: _Txn, e: AuditEntry | None) -> None:
    if e is not None:
        txn.execute("INSERT INTO audit (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
                    (e.at, e.actor, e.action, e.target, _dumps(e.detail)))


def _thd_delete(txn: _Txn, table: str, key: str, value: str, e: AuditEntry | None) -> None:
    # table and key are constants from this module, never caller input.
    _thd_changed(txn.execute(f"DELETE FROM {table} WHERE {key} = ?", (value,)), f"{table} row")
    _thd_insert_audit(txn, e)


def _thd_principal(txn: _Txn, username: str) -> Principal | None:
    row = txn.execute("SELECT * FROM principals WHERE username = ?", (username,)).fetchone()
    return None if row is None else _principal_from(row)


def _thd_principals(txn: _Txn) -> list[Principal]:
    return [_principal_from(r) for r in txn.execute("SELECT * FROM principals ORDER BY username")]


def _thd_add_principal(txn: _Txn, p: Principal, e: AuditEntry) -> None:
    _thd_insert(txn, "INSERT INTO principals (username, public_key, is_admin, settings, created_at)"
                " VALUES (?, ?, ?, ?, ?)", _principal_row(p), f"principal {p.username!r}")
    _thd_insert_audit(txn, e)


def _thd_set_settings(txn: _Txn, username: str, s: UserSettings, e: AuditEntry) -> Principal:
    _thd_changed(txn.execute("UPDATE principals SET settings = ? WHERE username = ? AND is_admin = 0",
                             (_dumps(_settings_dict(s)), username)), "user")
    _thd_insert_audit(txn, e)
    p = _thd_principal(txn, username)
    assert p is not None  # updated in this transaction
    return p


def _thd_remove_principal(txn: _Txn, username: str, e: AuditEntry) -> None:
    p = _thd_principal(txn, username)
    if p is None:
        raise Missing("no such principal")
    txn.execute("DELETE FROM principals WHERE username = ?", (username,))  # cascades
    _thd_insert_audit(txn, attrs.evolve(e, action=f"{_kind(p.is_admin)}.remove"))


def _thd_group(txn: _Txn, name: str) -> Group | None:
    row = txn.execute("SELECT * FROM groups WHERE name = ?", (name,)).fetchone()
    return None if row is None else Group(row["name"], _settings_from(row["settings"]))


def _thd_groups(txn: _Txn) -> list[Group]:
    rows = txn.execute("SELECT * FROM groups ORDER BY name")
    return [Group(r["name"], _settings_from(r["settings"])) for r in rows]


def _thd_add_group(txn: _Txn, g: Group, e: AuditEntry) -> None:
    _thd_insert(txn, "INSERT INTO groups (name, settings) VALUES (?, ?)",
                (g.name, _dumps(_settings_dict(g.settings))), f"group {g.name!r}")
    _thd_insert_audit(txn, e)


def _thd_set_group(txn: _Txn, g: Group, e: AuditEntry) -> None:
    _thd_changed(txn.execute("UPDATE groups SET settings = ? WHERE name = ?",
                             (_dumps(_settings_dict(g.settings)), g.name)), "group")
    _thd_insert_audit(txn, e)


def _thd_app(txn: _Txn, app_id: str) -> InstalledApp | None:
    row = txn.execute("SELECT body FROM apps WHERE id = ?", (app_id,)).fetchone()
    return None if row is None else _app_from(json.loads(row["body"]))


def _thd_apps(txn: _Txn) -> list[InstalledApp]:
    return [_app_from(json.loads(r["body"])) for r in txn.execute("SELECT body FROM apps ORDER BY rowid")]


def _thd_add_app(txn: _Txn, a: InstalledApp, e: AuditEntry) -> None:
    _thd_insert(txn, "INSERT INTO apps (id, name, body) VALUES (?, ?, ?)",
                (a.id, a.name, _dumps(_app_dict(a))), f"app {a.id!r}")
    _thd_insert_audit(txn, e)


def _thd_set_app(txn: _Txn, a: InstalledApp, e: AuditEntry) -> None:
    _thd_changed(txn.execute("UPDATE apps SET name = ?, body = ? WHERE id = ?",
                             (a.name, _dumps(_app_dict(a)), a.id)), "app")
    _thd_insert_audit(txn, e)


def _thd_app_stores(txn: _Txn) -> list[AppStore]:
    return [AppStore(r["name"], r["url"]) for r in txn.execute("SELECT * FROM app_stores ORDER BY rowid")]


def _thd_add_app_store(txn: _Txn, s: AppStore, e: AuditEntry) -> None:
    _thd_insert(txn, "INSERT INTO app_stores (name, url) VALUES (?, ?)", (s.name, s.url),
                f"app store {s.name!r}")
    _thd_insert_audit(txn, e)


def _thd_templates(txn: _Txn) -> list[Template]:
    rows = txn.execute("SELECT * FROM templates ORDER BY name")
    return [Template(r["name"], json.loads(r["settings"])) for r in rows]


def _thd_put_template(txn: _Txn, t: Template, e: AuditEntry) -> None:
    txn.execute("INSERT INTO templates (name, settings) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET settings = excluded.settings",
                (t.name, _dumps(t.settings)))
    _thd_insert_audit(txn, e)


_SESSION_COLUMNS = ("id, username, app_id, app_name, app_logo, instance_id, host, port, created_at,"
                    " sealed_credentials, launch_context, home_path, ephemeral, cookie_digests, state")


def _thd_add_session(txn: _Txn, s: SessionRecord) -> None:
    _thd_insert(txn, f"INSERT INTO sessions ({_SESSION_COLUMNS}) VALUES ({', '.join('?' * 15)})",
                _session_row(s), f"session {s.id!r}")


def _thd_session(txn: _Txn, session_id: str) -> SessionRecord | None:
    row = txn.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
    return None if row is None else _session_from(row)


def _thd_sessions(txn: _Txn, username: str | None) -> list[SessionRecord]:
    if username is None:
        rows = txn.execute("SELECT * FROM sessions ORDER BY created_at, id")
    else:
        rows = txn.execute("SELECT * FROM sessions WHERE username = ? ORDER BY created_at, id",
                           (username,))
    return [_session_from(r) for r in rows]


def _thd_set_session(txn: _Txn, s: SessionRecord) -> None:
    row = _session_row(s)
    columns = [c.strip() for c in _SESSION_COLUMNS.split(",")][1:]
    assignments = ", ".join(f"{c} = ?" for c in columns)
    _thd_changed(txn.execute(f"UPDATE sessions SET {assignments} WHERE id = ?",
                             (*row[1:], s.id)), "session")


def _thd_homes(txn: _Txn, username: str) -> list[HomeDir]:
    rows = txn.execute("SELECT * FROM homes WHERE username = ? ORDER BY name", (username,))
    return [HomeDir(r["username"], r["name"], r["created_at"]) for r in rows]


def _thd_add_home(txn: _Txn, h: HomeDir, e: AuditEntry) -> None:
    _thd_insert(txn, "INSERT INTO homes (username, name, created_at) VALUES (?, ?, ?)",
                (h.username, h.name, h.created_at), f"home {h.username}/{h.name}")
    _thd_insert_audit(txn, e)


def _thd_remove_home(txn: _Txn, username: str, name: str, e: AuditEntry) -> None:
    _thd_changed(txn.execute("DELETE FROM homes WHERE username = ? AND name = ?",
                             (username, name)), "home")
    _thd_insert_audit(txn, e)


def _thd_add_upload(txn: _Txn, u: Upload) -> None:
    _thd_insert(txn, "INSERT INTO uploads (id, username, filename, total_size, chunk_size,"
                " total_chunks, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (u.id, u.username, u.filename, u.total_size, u.chunk_size, u.total_chunks,
                 u.created_at, u.updated_at), f"upload {u.id!r}")
    for index in set(u.received):
        txn.execute("INSERT INTO upload_chunks (upload_id, idx) VALUES (?, ?)", (u.id, index))


def _thd_upload(txn: _Txn, upload_id: str) -> Upload | None:
    row = txn.execute("SELECT * FROM uploads WHERE id = ?", (upload_id,)).fetchone()
    return None if row is None else _upload_from(row, _thd_chunks(txn, upload_id))


def _thd_chunks(txn: _Txn, upload_id: str) -> list[int]:
    rows = txn.execute("SELECT idx FROM upload_chunks WHERE upload_id = ? ORDER BY idx", (upload_id,))
    return [int(r["idx"]) for r in rows]


def _thd_mark_chunk(txn: _Txn, upload_id: str, index: int, now: float) -> Upload:
    _thd_changed(txn.execute("UPDATE uploads SET updated_at = ? WHERE id = ?", (now, upload_id)),
                 "upload")
    txn.execute("INSERT OR IGNORE INTO upload_chunks (upload_id, idx) VALUES (?, ?)",
                (upload_id, index))
    u = _thd_upload(txn, upload_id)
    assert u is not None  # updated in this transaction
    return u


def _thd_uploads_older_than(txn: _Txn, updated_before: float) -> list[Upload]:
    rows = txn.execute("SELECT * FROM uploads WHERE updated_at < ? ORDER BY updated_at, id",
                       (updated_before,)).fetchall()
    return [_upload_from(r, _thd_chunks(txn, r["id"])) for r in rows]


def _thd_audit(txn: _Txn, limit: int) -> list[AuditEntry]:
    rows = txn.execute("SELECT * FROM audit ORDER BY id DESC LIMIT ?", (limit,))
    return [AuditEntry(r["at"], r["actor"], r["action"], r["target"], json.loads(r["detail"]))
            for r in rows]


def _thd_meta(txn: _Txn, key: str) -> str | None:
    row = txn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row["value"])


def _thd_set_meta(txn: _Txn, key: str, value: str) -> None:
    txn.execute("INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))


# Records <-> rows. JSON lists come back as tuples where the record says tuple.

def _dumps(value: object) -> str:
    return json.dumps(value, default=_plain, sort_keys=True, separators=(",", ":"))


def _plain(value: object) -> object:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


def _known(cls: type[Any], raw: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of ``raw`` that ``cls`` has fields for; the rest get defaults."""
    names = {f.name for f in attrs.fields(cls)}
    return {k: v for k, v in raw.items() if k in names}


def _settings_dict(s: UserSettings | None) -> dict[str, Any] | None:
    return None if s is None else attrs.asdict(s)


def _settings_from(text: str) -> UserSettings:
    return UserSettings(**_known(UserSettings, json.loads(text)))


def _principal_row(p: Principal) -> tuple[object, ...]:
    settings = None if p.settings is None else _dumps(_settings_dict(p.settings))
    return (p.username, p.public_key, int(p.is_admin), settings, p.created_at)


def _principal_from(row: sqlite3.Row) -> Principal:
    settings = None if row["settings"] is None else _settings_from(row["settings"])
    return Principal(username=row["username"], public_key=row["public_key"],
                     is_admin=bool(row["is_admin"]), settings=settings,
                     created_at=row["created_at"])


_APP_TUPLES = ("users", "groups", "allow_overrides")


def _app_dict(a: InstalledApp) -> dict[str, Any]:
    return {f.name: getattr(a, f.name) for f in attrs.fields(InstalledApp)}


def _app_from(body: Mapping[str, Any]) -> InstalledApp:
    fields = _known(InstalledApp, body)
    for name in _APP_TUPLES:
        if name in fields:
            fields[name] = tuple(fields[name])
    fields["provider_config"] = dict(fields.get("provider_config") or {})
    return InstalledApp(**fields)


def _app_detail(a: InstalledApp) -> dict[str, Any]:
    # provider_config may hold env values and overrides: not for the audit log.
    return {"name": a.name, "source": a.source, "image": a.provider_config.get("image")}


def _session_row(s: SessionRecord) -> tuple[object, ...]:
    context = None if s.launch_context is None else _dumps(s.launch_context)
    return (s.id, s.username, s.app_id, s.app_name, s.app_logo, s.instance_id, s.host, s.port,
            s.created_at, s.sealed_credentials, context, s.home_path, int(s.ephemeral),
            _dumps(list(s.cookie_digests)), s.state)


def _session_from(row: sqlite3.Row) -> SessionRecord:
    context = row["launch_context"]
    return SessionRecord(
        id=row["id"], username=row["username"], app_id=row["app_id"], app_name=row["app_name"],
        app_logo=row["app_logo"], instance_id=row["instance_id"], host=row["host"],
        port=row["port"], created_at=row["created_at"],
        sealed_credentials=bytes(row["sealed_credentials"]),
        launch_context=None if context is None else json.loads(context),
        home_path=row["home_path"], ephemeral=bool(row["ephemeral"]),
        cookie_digests=tuple(json.loads(row["cookie_digests"])), state=row["state"])


def _upload_from(row: sqlite3.Row, received: Iterable[int]) -> Upload:
    return Upload(id=row["id"], username=row["username"], filename=row["filename"],
                  total_size=row["total_size"], chunk_size=row["chunk_size"],
                  total_chunks=row["total_chunks"], received=tuple(received),
                  created_at=row["created_at"], updated_at=row["updated_at"])


def _kind(is_admin: bool) -> str:
    return "admin" if is_admin else "user"


def _without_userinfo(url: str) -> str:
    """``url`` minus any ``user:password@``, which must not reach the audit log."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))
