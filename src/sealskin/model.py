"""Frozen records that cross module seams (store, provider, orchestration, api)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs


@attrs.frozen
class UserSettings:
    """Per-user settings (upstream-protocol 5.4); groups carry the same keys."""

    active: bool = True
    group: str = "none"
    persistent_storage: bool = True
    public_sharing: bool = False
    harden_container: bool = False
    harden_openbox: bool = False
    gpu: bool = True
    storage_limit: int = -1  # MiB of home-directory data; -1 = unlimited
    session_limit: int = -1  # concurrent sessions; -1 = unlimited


@attrs.frozen
class Principal:
    """A user or an admin. Admins have no stored settings (``settings is None``)."""

    username: str
    public_key: str  # SPKI PEM
    is_admin: bool
    settings: UserSettings | None
    created_at: float = 0.0


@attrs.frozen
class Group:
    name: str
    settings: UserSettings


@attrs.frozen
class AuditEntry:
    at: float
    actor: str
    action: str
    target: str
    detail: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class InstalledApp:
    """An installed application (upstream-protocol 5.6).

    ``provider_config`` keeps the wire shape (image, port, nvidia_support, ...);
    ``pull_policy`` is ours: ``always`` (upstream), ``if-missing`` or ``never``.
    """

    id: str
    name: str
    provider_config: Mapping[str, Any]
    logo: str = ""
    url: str = ""
    source: str = "manual"
    source_app_id: str = ""
    provider: str = "docker"
    home_directories: bool = False
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    auto_update: bool = True
    app_template: str = "Default"
    is_meta_app: bool = False
    base_app_id: str | None = None
    home_template_name: str | None = None
    pull_policy: str = "if-missing"
    allow_overrides: tuple[str, ...] = ()  # admin-enabled dangerous override keys


@attrs.frozen
class AppStore:
    name: str
    url: str


@attrs.frozen
class Template:
    name: str
    settings: Mapping[str, str]


@attrs.frozen
class SessionRecord:
    """A launched session as persisted. Secrets are stored sealed (SecretBox)."""

    id: str
    username: str
    app_id: str
    app_name: str
    app_logo: str
    instance_id: str
    host: str
    port: int
    created_at: float
    sealed_credentials: bytes  # SecretBox("user:password")
    launch_context: Mapping[str, Any] | None = None
    home_path: str | None = None
    ephemeral: bool = True
    cookie_digests: tuple[str, ...] = ()  # sha256 hex of issued cookie values
    state: str = "running"


@attrs.frozen
class HomeDir:
    username: str
    name: str
    created_at: float


@attrs.frozen
class Upload:
    id: str
    username: str
    filename: str
    total_size: int
    chunk_size: int
    total_chunks: int
    received: tuple[int, ...]
    created_at: float
    updated_at: float


@attrs.frozen
class SessionRoute:
    """What the session proxy needs to forward one session (held in memory)."""

    session_id: str
    host: str
    port: int
    authorization: str  # full "Basic ..." header value for the app
