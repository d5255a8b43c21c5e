"""The app-store catalogue format (upstream-protocol 5.7): YAML in, AvailableApp dicts out.

Pure code: no Twisted, no I/O. A document that is not a catalogue at all raises
:class:`StoreFormatError`; a malformed *entry* is reported as an
:class:`EntryError` (which index, which app id, which field) and skipped, so one
bad app never hides the rest of the store.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import yaml

MAX_STORE_BYTES = 4 * 1024 * 1024
MAX_APPS = 2000
MAX_EXTENSIONS = 500
APP_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # also a cache file name (W14)
IMAGE_RE = re.compile(r"^[a-z0-9][a-z0-9._/:@-]{0,254}$")
EXTENSION_RE = re.compile(r"^[A-Za-z0-9_.+-]{1,32}$")
APP_TYPES = ("app", "browser", "desktop")
BOOL_FIELDS = ("nvidia_support", "dri3_support", "url_support", "open_support", "autostart")
SCRIPT_FIELDS = ("custom_autostart_script_b64", "custom_autostart_wayland_script_b64")

MAX_VALUES = 200_000  # in a whole store document, aliases expanded
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class StoreFormatError(Exception):
    """The whole document is unusable; ``detail`` is a client-facing sentence."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@attrs.frozen
class EntryError:
    index: int  # position in the store's app list, from 0
    app_id: str | None
    field: str
    problem: str

    def sentence(self) -> str:
        who = f"app '{self.app_id}'" if self.app_id else f"app #{self.index}"
        return f"{who} (entry {self.index}): '{self.field}' {self.problem}"


@attrs.frozen
class StoreDocument:
    apps: tuple[Mapping[str, Any], ...]  # AvailableApp shape, scripts still null
    errors: tuple[EntryError, ...]


class _Bad(Exception):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(field)
        self.field = field
        self.problem = problem


def _check_expanded(doc: object, budget: int) -> None:
    """StoreFormatError past ``budget`` values once aliases are expanded: YAML aliases
    share one object when parsed, but a few levels of them multiply what every reader
    of the document (and each answer built from it) walks."""
    pending, seen = [doc], 0
    while pending:
        value = pending.pop()
        seen += 1
        if seen > budget:
            raise StoreFormatError(f"The store document expands to more than {budget} "
                                   "values (YAML aliases nested too deep).")
        if isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)


def parse_store(raw: bytes, *, max_bytes: int = MAX_STORE_BYTES) -> StoreDocument:
    """Parses a store document (a mapping with ``apps`` or a bare list of apps).

    Raises StoreFormatError for oversized, non-YAML or non-catalogue documents.
    """
    if len(raw) > max_bytes:
        raise StoreFormatError(f"The store document is larger than {max_bytes} bytes.")
    try:
        doc = yaml.load(raw, Loader=_Loader)  # a SafeLoader: no object construction
    except yaml.YAMLError:
        raise StoreFormatError("The store document is not valid YAML.") from None
    _check_expanded(doc, MAX_VALUES)
    entries = doc.get("apps") if isinstance(doc, dict) else doc
    if not isinstance(entries, list):
        raise StoreFormatError("The store document is neither a list of apps nor a "
                               "mapping with an 'apps' list.")
    if len(entries) > MAX_APPS:
        raise StoreFormatError(f"The store lists more than {MAX_APPS} apps.")
    return _entries(entries)


def _entries(entries: Sequence[object]) -> StoreDocument:
    apps: list[Mapping[str, Any]] = []
    errors: list[EntryError] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        app_id = _peek_id(entry)
        try:
            app = available_app(entry)
            if app["id"] in seen:
                raise _Bad("id", "repeats an earlier app's id")
        except _Bad as bad:
            errors.append(EntryError(index, app_id, bad.field, bad.problem))
            continue
        seen.add(app["id"])
        apps.append(app)
    return StoreDocument(tuple(apps), tuple(errors))


def _peek_id(entry: object) -> str | None:
    value = entry.get("id") if isinstance(entry, dict) else None
    return value if isinstance(value, str) and APP_ID_RE.fullmatch(value) else None


def available_app(entry: object) -> dict[str, Any]:
    """One entry in the AvailableApp shape; raises _Bad naming the field."""
    if not isinstance(entry, dict):
        raise _Bad("entry", "is not a mapping")
    app_id = entry.get("id")
    if not isinstance(app_id, str) or not APP_ID_RE.fullmatch(app_id):
        raise _Bad("id", "must be 1-64 letters, digits, '_' or '-'")
    provider = entry.get("provider", "docker")
    if provider != "docker":
        raise _Bad("provider", "must be 'docker'")
    return {
        "id": app_id,
        "name": _text(entry, "name", 128, required=True),
        "logo": _text(entry, "logo", 2048),
        "url": _text(entry, "url", 2048),
        "provider": "docker",
        "provider_config": _provider_config(entry.get("provider_config")),
    }


def _text(entry: Mapping[str, Any], field: str, max_len: int, *, required: bool = False) -> str:
    value = entry.get(field)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or len(value) > max_len or (required and not value.strip()):
        raise _Bad(field, f"must be a non-empty string of at most {max_len} characters"
                   if required else f"must be a string of at most {max_len} characters")
    if any(ord(c) < 32 for c in value):
        raise _Bad(field, "must not contain control characters")
    return value


def _provider_config(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Bad("provider_config", "must be a mapping")
    image = value.get("image")
    if not isinstance(image, str) or not IMAGE_RE.fullmatch(image):
        raise _Bad("provider_config.image", "must be an image reference")
    port = value.get("port", 3000)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise _Bad("provider_config.port", "must be an integer from 1 to 65535")
    kind = value.get("type") or "app"
    if kind not in APP_TYPES:
        raise _Bad("provider_config.type", "must be app, browser or desktop")
    cfg: dict[str, Any] = {"image": image, "port": port, "type": kind}
    for key in BOOL_FIELDS:
        flag = value.get(key, False)
        if not isinstance(flag, bool):
            raise _Bad(f"provider_config.{key}", "must be true or false")
        cfg[key] = flag
    cfg["extensions"] = flatten_extensions(value.get("extensions"))
    overrides = value.get("docker_overrides")
    if overrides is not None and not isinstance(overrides, dict):
        raise _Bad("provider_config.docker_overrides", "must be a mapping")
    cfg["docker_overrides"] = overrides or None
    for key in SCRIPT_FIELDS:
        cfg[key] = None  # filled from the autostart cache (upstream-protocol 5.8)
    return cfg


def flatten_extensions(value: object) -> list[str]:
    """Strings, or lists of strings from ``- *alias`` (one level), lower-cased, de-duplicated."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Bad("provider_config.extensions", "must be a list")
    out: list[str] = []
    for item in value:
        for ext in item if isinstance(item, list) else [item]:
            if not isinstance(ext, str) or not EXTENSION_RE.fullmatch(ext.lstrip(".")):
                raise _Bad("provider_config.extensions", "must hold extension names "
                           "or lists of them")
            name = ext.lstrip(".").lower()
            if name not in out:
                out.append(name)
    if len(out) > MAX_EXTENSIONS:
        raise _Bad("provider_config.extensions", f"has more than {MAX_EXTENSIONS} entries")
    return out
