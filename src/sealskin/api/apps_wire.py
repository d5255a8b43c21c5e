"""Validation and shaping of installed apps and templates (upstream-protocol 5.6, 5.9)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

import attrs

from sealskin.api import wire
from sealskin.crypto import CryptoError
from sealskin.crypto.envelope import b64decode_strict
from sealskin.model import InstalledApp, Template
from sealskin.orchestration.meta import MetaRequest

IMAGE_RE = re.compile(r"^[a-z0-9][a-z0-9._/:@-]{0,254}$")
TEMPLATE_NAME_RE = re.compile(r"^[A-Za-z0-9_ -]{1,64}$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
PULL_POLICIES = ("always", "if-missing", "never")
APP_TYPES = ("app", "browser", "desktop")
_CONFIG_BOOLS = ("nvidia_support", "dri3_support", "url_support", "open_support", "autostart")


def _names(body: Mapping[str, Any], field: str) -> tuple[str, ...]:
    value = body.get(field) or []
    if not isinstance(value, list) or len(value) > 1000:
        raise wire.invalid(f"'{field}' must be a list of names.")
    return tuple(wire.name(v, field) for v in value)


def _env_list(value: object) -> list[dict[str, str]]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > 256:
        raise wire.invalid("'provider_config.env' must be a list of {name, value}.")
    out = []
    for item in value:
        if not isinstance(item, dict) or not ENV_NAME_RE.fullmatch(str(item.get("name", ""))):
            raise wire.invalid("'provider_config.env' entries need a valid 'name'.")
        out.append({"name": str(item["name"]),
                    "value": wire.string(item, "value", max_len=8192) or ""})
    return out


def _script(value: Mapping[str, Any], key: str, field: str) -> str | None:
    """An autostart script field: base64 or null (``""`` is null, upstream 4.10)."""
    text = wire.string(value, key, max_len=256 * 1024, optional=True) or None
    if text is not None:
        try:
            b64decode_strict(text)
        except CryptoError:
            raise wire.invalid(f"'{field}' must be base64.") from None
    return text


def _app_name(body: Mapping[str, Any]) -> str:
    name = wire.string(body, "name", max_len=128) or ""
    if not name.strip() or any(c in name for c in "\r\n\t"):
        raise wire.invalid("'name' must be one line of text, not empty.")
    return name


def meta_request(body: Mapping[str, Any]) -> MetaRequest:
    """``POST /api/admin/apps/meta`` (4.10)."""
    return MetaRequest(
        name=_app_name(body), base_app_id=wire.name(body.get("base_app_id"), "base_app_id"),
        logo=wire.string(body, "logo", max_len=2 * 1024 * 1024, optional=True) or "",
        custom_autostart_script_b64=_script(body, "custom_autostart_script_b64",
                                            "custom_autostart_script_b64"),
        custom_autostart_wayland_script_b64=_script(
            body, "custom_autostart_wayland_script_b64", "custom_autostart_wayland_script_b64"),
        users=_names(body, "users"), groups=_names(body, "groups"))


def provider_config(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise wire.invalid("'provider_config' must be an object.")
    image = value.get("image")
    if not isinstance(image, str) or not IMAGE_RE.fullmatch(image):
        raise wire.invalid("'provider_config.image' must be an image reference.")
    cfg: dict[str, Any] = {
        "image": image,
        "port": wire.integer(value, "port", 3000, low=1, high=65535),
        "type": value.get("type") or "app",
    }
    if cfg["type"] not in APP_TYPES:
        raise wire.invalid("'provider_config.type' must be app, browser or desktop.")
    for key in _CONFIG_BOOLS:
        cfg[key] = wire.boolean(value, key, False)
    ext = value.get("extensions") or []
    if not isinstance(ext, list) or not all(isinstance(e, str) and len(e) <= 32 for e in ext):
        raise wire.invalid("'provider_config.extensions' must be a list of strings.")
    cfg["extensions"] = [e.lower().lstrip(".") for e in ext][:500]
    for key in ("custom_autostart_script_b64", "custom_autostart_wayland_script_b64"):
        cfg[key] = _script(value, key, f"provider_config.{key}")
    overrides = value.get("docker_overrides")
    if overrides is not None and not isinstance(overrides, dict):
        raise wire.invalid("'provider_config.docker_overrides' must be an object or null.")
    cfg["docker_overrides"] = overrides or None
    cfg["env"] = _env_list(value.get("env"))
    return cfg


def installed_app(body: Mapping[str, Any], *, app_id: str | None = None) -> InstalledApp:
    """An InstalledApp from the install dialog's body; unknown keys are ignored (5.6)."""
    given = body.get("id")
    if app_id is not None and given not in (None, app_id):
        raise wire.invalid("The body's 'id' does not match the path.")
    ident = app_id or (wire.name(given, "id") if given else str(uuid.uuid4()))
    policy = body.get("pull_policy") or "if-missing"
    if policy not in PULL_POLICIES:
        raise wire.invalid("'pull_policy' must be always, if-missing or never.")
    name = _app_name(body)
    return InstalledApp(
        id=ident, name=name, provider_config=provider_config(body.get("provider_config")),
        logo=wire.string(body, "logo", max_len=2 * 1024 * 1024, optional=True) or "",
        url=wire.string(body, "url", max_len=2048, optional=True) or "",
        source=wire.string(body, "source", max_len=128, optional=True) or "manual",
        source_app_id=wire.string(body, "source_app_id", max_len=128, optional=True) or "",
        provider="docker",
        home_directories=wire.boolean(body, "home_directories", False),
        users=_names(body, "users"), groups=_names(body, "groups"),
        auto_update=wire.boolean(body, "auto_update", True),
        app_template=wire.string(body, "app_template", max_len=64, optional=True) or "Default",
        is_meta_app=wire.boolean(body, "is_meta_app", False),
        pull_policy=policy, allow_overrides=_names(body, "allow_overrides"),
    )


def app_json(a: InstalledApp) -> wire.Json:
    out = attrs.asdict(a)
    out["users"], out["groups"] = list(a.users), list(a.groups)
    out["allow_overrides"] = list(a.allow_overrides)
    out["provider_config"] = dict(a.provider_config)
    return out


def launchable_json(a: InstalledApp) -> wire.Json:
    """One entry of ``POST /api/applications`` (upstream-protocol 4.2)."""
    c = a.provider_config
    return {"id": a.id, "name": a.name, "logo": a.logo,
            "home_directories": a.home_directories,
            "nvidia_support": bool(c.get("nvidia_support")),
            "dri3_support": bool(c.get("dri3_support")),
            "url_support": bool(c.get("url_support")),
            "extensions": list(c.get("extensions") or []), "is_meta_app": a.is_meta_app}


def template(body: Mapping[str, Any]) -> Template:
    name = body.get("name")
    if not isinstance(name, str) or not TEMPLATE_NAME_RE.fullmatch(name):
        raise wire.invalid("'name' must be 1-64 letters, digits, spaces, '_' or '-'.")
    settings = wire.mapping(body, "settings")
    if len(settings) > 256 or not all(ENV_NAME_RE.fullmatch(k) for k in settings):
        raise wire.invalid("'settings' keys must be environment variable names.")
    values = {}
    for k, v in settings.items():
        if isinstance(v, bool):
            v = "true" if v else "false"
        if not isinstance(v, (str, int, float)) or len(str(v)) > 8192:
            raise wire.invalid(f"'settings.{k}' must be a string.")
        values[k] = str(v)
    return Template(name, values)
