"""The Store seam on SQLite: one file, one pool thread, one connection.

:func:`migrate` (``store/migrate.py``) runs in ``makeService`` on a plain ``sqlite3`` connection before
the reactor starts. :class:`SqliteStore` then runs every statement on its own
``adbapi`` pool (STYLE 7); each write is one ``BEGIN IMMEDIATE`` transaction
that also holds its audit row. Records become rows here and nowhere else.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

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
from sealskin.store import rows
from sealskin.store.migrate import Migration, MigrationError, migrate, packaged_migrations

__all__ = ["Migration", "MigrationError", "SqliteStore", "migrate", "packaged_migrations"]

P = ParamSpec("P")
T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000
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
        detail = {"is_admin": p.is_admin, "settings": rows.settings_dict(p.settings)}
        entry = self._entry(actor, f"{rows.kind(p.is_admin)}.create", p.username, detail)
        await self._run(True, _thd_add_principal, p, entry)

    async def set_settings(self, username: str, s: UserSettings, *, actor: str) -> Principal:
        """Raises Missing unless ``username`` is a user (admins have no settings)."""
        entry = self._entry(actor, "user.update", username, {"settings": rows.settings_dict(s)})
        return await self._run(True, _thd_set_settings, username, s, entry)

    async def set_public_key(self, username: str, public_key: str, *, actor: str
                             ) -> Principal:
        """Replaces a user's or admin's key (SPKI PEM); raises Missing."""
        entry = self._entry(actor, "principal.rekey", username)
        return await self._run(True, _thd_set_public_key, username, public_key, entry)

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
        entry = self._entry(actor, "group.create", g.name, {"settings": rows.settings_dict(g.settings)})
        await self._run(True, _thd_add_group, g, entry)

    async def set_group(self, g: Group, *, actor: str) -> None:
        entry = self._entry(actor, "group.update", g.name, {"settings": rows.settings_dict(g.settings)})
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
        await self._run(True, _thd_add_app, a, self._entry(actor, "app.install", a.id, rows.app_detail(a)))

    async def set_app(self, a: InstalledApp, *, actor: str) -> None:
        await self._run(True, _thd_set_app, a, self._entry(actor, "app.update", a.id, rows.app_detail(a)))

    async def remove_app(self, app_id: str, *, actor: str) -> None:
        await self._run(True, _thd_delete, "apps", "id", app_id,
                        self._entry(actor, "app.remove", app_id))

    async def app_stores(self) -> Sequence[AppStore]:
        """In the order they were added."""
        return await self._run(False, _thd_app_stores)

    async def add_app_store(self, s: AppStore, *, actor: str) -> None:
        entry = self._entry(actor, "app_store.add", s.name, {"url": rows.without_userinfo(s.url)})
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
                    (e.at, e.actor, e.action, e.target, rows.dumps(e.detail)))


def _thd_delete(txn: _Txn, table: str, key: str, value: str, e: AuditEntry | None) -> None:
    # table and key are constants from this module, never caller input.
    _thd_changed(txn.execute(f"DELETE FROM {table} WHERE {key} = ?", (value,)), f"{table} row")
    _thd_insert_audit(txn, e)


def _thd_principal(txn: _Txn, username: str) -> Principal | None:
    row = txn.execute("SELECT * FROM principals WHERE username = ?", (username,)).fetchone()
    return None if row is None else rows.principal_from(row)


def _thd_principals(txn: _Txn) -> list[Principal]:
    return [rows.principal_from(r) for r in txn.execute("SELECT * FROM principals ORDER BY username")]


def _thd_add_principal(txn: _Txn, p: Principal, e: AuditEntry) -> None:
    _thd_insert(txn, "INSERT INTO principals (username, public_key, is_admin, settings, created_at)"
                " VALUES (?, ?, ?, ?, ?)", rows.principal_row(p), f"principal {p.username!r}")
    _thd_insert_audit(txn, e)


def _thd_set_settings(txn: _Txn, username: str, s: UserSettings, e: AuditEntry) -> Principal:
    _thd_changed(txn.execute("UPDATE principals SET settings = ? WHERE username = ? AND is_admin = 0",
                             (rows.dumps(rows.settings_dict(s)), username)), "user")
    _thd_insert_audit(txn, e)
    p = _thd_principal(txn, username)
    assert p is not None  # updated in this transaction
    return p


def _thd_set_public_key(txn: _Txn, username: str, public_key: str, e: AuditEntry
                        ) -> Principal:
    _thd_changed(txn.execute("UPDATE principals SET public_key = ? WHERE username = ?",
                             (public_key, username)), "principal")
    _thd_insert_audit(txn, e)
    p = _thd_principal(txn, username)
    assert p is not None  # updated in this transaction
    return p


def _thd_remove_principal(txn: _Txn, username: str, e: AuditEntry) -> None:
    p = _thd_principal(txn, username)
    if p is None:
        raise Missing("no such principal")
    txn.execute("DELETE FROM principals WHERE username = ?", (username,))  # cascades
    _thd_insert_audit(txn, attrs.evolve(e, action=f"{rows.kind(p.is_admin)}.remove"))


def _thd_group(txn: _Txn, name: str) -> Group | None:
    row = txn.execute("SELECT * FROM groups WHERE name = ?", (name,)).fetchone()
    return None if row is None else Group(row["name"], rows.settings_from(row["settings"]))


def _thd_groups(txn: _Txn) -> list[Group]:
    found = txn.execute("SELECT * FROM groups ORDER BY name")
    return [Group(r["name"], rows.settings_from(r["settings"])) for r in found]


def _thd_add_group(txn: _Txn, g: Group, e: AuditEntry) -> None:
    _thd_insert(txn, "INSERT INTO groups (name, settings) VALUES (?, ?)",
                (g.name, rows.dumps(rows.settings_dict(g.settings))), f"group {g.name!r}")
    _thd_insert_audit(txn, e)


def _thd_set_group(txn: _Txn, g: Group, e: AuditEntry) -> None:
    _thd_changed(txn.execute("UPDATE groups SET settings = ? WHERE name = ?",
                             (rows.dumps(rows.settings_dict(g.settings)), g.name)), "group")
    _thd_insert_audit(txn, e)


def _thd_app(txn: _Txn, app_id: str) -> InstalledApp | None:
    row = txn.execute("SELECT body FROM apps WHERE id = ?", (app_id,)).fetchone()
    return None if row is None else rows.app_from(json.loads(row["body"]))


def _thd_apps(txn: _Txn) -> list[InstalledApp]:
    return [rows.app_from(json.loads(r["body"])) for r in txn.execute("SELECT body FROM apps ORDER BY rowid")]


def _thd_add_app(txn: _Txn, a: InstalledApp, e: AuditEntry) -> None:
    _thd_insert(txn, "INSERT INTO apps (id, name, body) VALUES (?, ?, ?)",
                (a.id, a.name, rows.dumps(rows.app_dict(a))), f"app {a.id!r}")
    _thd_insert_audit(txn, e)


def _thd_set_app(txn: _Txn, a: InstalledApp, e: AuditEntry) -> None:
    _thd_changed(txn.execute("UPDATE apps SET name = ?, body = ? WHERE id = ?",
                             (a.name, rows.dumps(rows.app_dict(a)), a.id)), "app")
    _thd_insert_audit(txn, e)


def _thd_app_stores(txn: _Txn) -> list[AppStore]:
    return [AppStore(r["name"], r["url"]) for r in txn.execute("SELECT * FROM app_stores ORDER BY rowid")]


def _thd_add_app_store(txn: _Txn, s: AppStore, e: AuditEntry) -> None:
    _thd_insert(txn, "INSERT INTO app_stores (name, url) VALUES (?, ?)", (s.name, s.url),
                f"app store {s.name!r}")
    _thd_insert_audit(txn, e)


def _thd_templates(txn: _Txn) -> list[Template]:
    found = txn.execute("SELECT * FROM templates ORDER BY name")
    return [Template(r["name"], json.loads(r["settings"])) for r in found]


def _thd_put_template(txn: _Txn, t: Template, e: AuditEntry) -> None:
    txn.execute("INSERT INTO templates (name, settings) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET settings = excluded.settings",
                (t.name, rows.dumps(t.settings)))
    _thd_insert_audit(txn, e)


_SESSION_COLUMNS = ("id, username, app_id, app_name, app_logo, instance_id, host, port, created_at,"
                    " sealed_credentials, launch_context, home_path, ephemeral, cookie_digests, state")


def _thd_add_session(txn: _Txn, s: SessionRecord) -> None:
    _thd_insert(txn, f"INSERT INTO sessions ({_SESSION_COLUMNS}) VALUES ({', '.join('?' * 15)})",
                rows.session_row(s), f"session {s.id!r}")


def _thd_session(txn: _Txn, session_id: str) -> SessionRecord | None:
    row = txn.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
    return None if row is None else rows.session_from(row)


def _thd_sessions(txn: _Txn, username: str | None) -> list[SessionRecord]:
    if username is None:
        found = txn.execute("SELECT * FROM sessions ORDER BY created_at, id")
    else:
        found = txn.execute("SELECT * FROM sessions WHERE username = ? ORDER BY created_at, id",
                           (username,))
    return [rows.session_from(r) for r in found]


def _thd_set_session(txn: _Txn, s: SessionRecord) -> None:
    row = rows.session_row(s)
    columns = [c.strip() for c in _SESSION_COLUMNS.split(",")][1:]
    assignments = ", ".join(f"{c} = ?" for c in columns)
    _thd_changed(txn.execute(f"UPDATE sessions SET {assignments} WHERE id = ?",
                             (*row[1:], s.id)), "session")


def _thd_homes(txn: _Txn, username: str) -> list[HomeDir]:
    found = txn.execute("SELECT * FROM homes WHERE username = ? ORDER BY name", (username,))
    return [HomeDir(r["username"], r["name"], r["created_at"]) for r in found]


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
    return None if row is None else rows.upload_from(row, _thd_chunks(txn, upload_id))


def _thd_chunks(txn: _Txn, upload_id: str) -> list[int]:
    found = txn.execute("SELECT idx FROM upload_chunks WHERE upload_id = ? ORDER BY idx", (upload_id,))
    return [int(r["idx"]) for r in found]


def _thd_mark_chunk(txn: _Txn, upload_id: str, index: int, now: float) -> Upload:
    _thd_changed(txn.execute("UPDATE uploads SET updated_at = ? WHERE id = ?", (now, upload_id)),
                 "upload")
    txn.execute("INSERT OR IGNORE INTO upload_chunks (upload_id, idx) VALUES (?, ?)",
                (upload_id, index))
    u = _thd_upload(txn, upload_id)
    assert u is not None  # updated in this transaction
    return u


def _thd_uploads_older_than(txn: _Txn, updated_before: float) -> list[Upload]:
    found = txn.execute("SELECT * FROM uploads WHERE updated_at < ? ORDER BY updated_at, id",
                       (updated_before,)).fetchall()
    return [rows.upload_from(r, _thd_chunks(txn, r["id"])) for r in found]


def _thd_audit(txn: _Txn, limit: int) -> list[AuditEntry]:
    found = txn.execute("SELECT * FROM audit ORDER BY id DESC LIMIT ?", (limit,))
    return [AuditEntry(r["at"], r["actor"], r["action"], r["target"], json.loads(r["detail"]))
            for r in found]


def _thd_meta(txn: _Txn, key: str) -> str | None:
    row = txn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row["value"])


def _thd_set_meta(txn: _Txn, key: str, value: str) -> None:
    txn.execute("INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))


# Records <-> rows. JSON lists come back as tuples where the record says tuple.
