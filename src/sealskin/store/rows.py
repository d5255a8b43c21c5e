"""Records to rows and back, symmetric and explicit (the only place that knows both)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import attrs

from sealskin.model import InstalledApp, Principal, SessionRecord, Upload, UserSettings


def dumps(value: object) -> str:
    return json.dumps(value, default=plain, sort_keys=True, separators=(",", ":"))


def plain(value: object) -> object:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


def known(cls: type[Any], raw: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of ``raw`` that ``cls`` has fields for; the rest get defaults."""
    names = {f.name for f in attrs.fields(cls)}
    return {k: v for k, v in raw.items() if k in names}


def settings_dict(s: UserSettings | None) -> dict[str, Any] | None:
    return None if s is None else attrs.asdict(s)


def settings_from(text: str) -> UserSettings:
    return UserSettings(**known(UserSettings, json.loads(text)))


def principal_row(p: Principal) -> tuple[object, ...]:
    settings = None if p.settings is None else dumps(settings_dict(p.settings))
    return (p.username, p.public_key, int(p.is_admin), settings, p.created_at)


def principal_from(row: sqlite3.Row) -> Principal:
    settings = None if row["settings"] is None else settings_from(row["settings"])
    return Principal(username=row["username"], public_key=row["public_key"],
                     is_admin=bool(row["is_admin"]), settings=settings,
                     created_at=row["created_at"])


APP_TUPLES = ("users", "groups", "allow_overrides")


def app_dict(a: InstalledApp) -> dict[str, Any]:
    return {f.name: getattr(a, f.name) for f in attrs.fields(InstalledApp)}


def app_from(body: Mapping[str, Any]) -> InstalledApp:
    fields = known(InstalledApp, body)
    for name in APP_TUPLES:
        if name in fields:
            fields[name] = tuple(fields[name])
    fields["provider_config"] = dict(fields.get("provider_config") or {})
    return InstalledApp(**fields)


def app_detail(a: InstalledApp) -> dict[str, Any]:
    # provider_config may hold env values and overrides: not for the audit log.
    return {"name": a.name, "source": a.source, "image": a.provider_config.get("image")}


def session_row(s: SessionRecord) -> tuple[object, ...]:
    context = None if s.launch_context is None else dumps(s.launch_context)
    return (s.id, s.username, s.app_id, s.app_name, s.app_logo, s.instance_id, s.host, s.port,
            s.created_at, s.sealed_credentials, context, s.home_path, int(s.ephemeral),
            dumps(list(s.cookie_digests)), s.state)


def session_from(row: sqlite3.Row) -> SessionRecord:
    context = row["launch_context"]
    return SessionRecord(
        id=row["id"], username=row["username"], app_id=row["app_id"], app_name=row["app_name"],
        app_logo=row["app_logo"], instance_id=row["instance_id"], host=row["host"],
        port=row["port"], created_at=row["created_at"],
        sealed_credentials=bytes(row["sealed_credentials"]),
        launch_context=None if context is None else json.loads(context),
        home_path=row["home_path"], ephemeral=bool(row["ephemeral"]),
        cookie_digests=tuple(json.loads(row["cookie_digests"])), state=row["state"])


def upload_from(row: sqlite3.Row, received: Iterable[int]) -> Upload:
    return Upload(id=row["id"], username=row["username"], filename=row["filename"],
                  total_size=row["total_size"], chunk_size=row["chunk_size"],
                  total_chunks=row["total_chunks"], received=tuple(received),
                  created_at=row["created_at"], updated_at=row["updated_at"])


def kind(is_admin: bool) -> str:
    return "admin" if is_admin else "user"


def without_userinfo(url: str) -> str:
    """``url`` minus any ``user:password@``, which must not reach the audit log."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))
