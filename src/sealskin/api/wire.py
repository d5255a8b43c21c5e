"""Validation of decrypted request bodies and shaping of responses.

Every check here runs before any side effect and raises ``ApiError(INVALID)``
(422) with a sentence naming the field. ``Json`` stops here: handlers get typed values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from sealskin.errors import ApiError, Kind
from sealskin.model import Group, Principal, UserSettings

Json = dict[str, Any]

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_PEM_CHARS = 16 * 1024


def invalid(detail: str) -> ApiError:
    return ApiError(Kind.INVALID, detail)


def name(value: object, field: str) -> str:
    """A user, group or home name: ``^[A-Za-z0-9_-]{1,64}$`` (no ``/``, ``..``, controls)."""
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise invalid(f"'{field}' must be 1-64 letters, digits, '_' or '-'.")
    return value


def string(body: Mapping[str, Any], field: str, *, max_len: int = 1024,
           optional: bool = False) -> str | None:
    value = body.get(field)
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > max_len:
        raise invalid(f"'{field}' must be a string of at most {max_len} characters.")
    if any(ord(c) < 32 and c not in "\n\r\t" for c in value):
        raise invalid(f"'{field}' must not contain control characters.")
    return value


def boolean(body: Mapping[str, Any], field: str, default: bool) -> bool:
    value = body.get(field, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise invalid(f"'{field}' must be true or false.")
    return value


def integer(body: Mapping[str, Any], field: str, default: int | None, *, low: int,
            high: int) -> int:
    """An integer field; missing or null is ``default``, or INVALID when that is None."""
    value = body.get(field)
    if value is None:
        if default is None:
            raise invalid(f"'{field}' is required: an integer from {low} to {high}.")
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid(f"'{field}' must be an integer from {low} to {high}.")
    return value


def mapping(body: Mapping[str, Any], field: str, *, optional: bool = True) -> Mapping[str, Any]:
    value = body.get(field)
    if value is None and optional:
        return {}
    if not isinstance(value, dict):
        raise invalid(f"'{field}' must be an object.")
    return value


_SETTINGS_BOOLS = ("active", "persistent_storage", "public_sharing", "harden_container",
                   "harden_openbox", "gpu")


def settings(value: object, *, base: UserSettings | None = None) -> UserSettings:
    """UserSettings from the wire; missing keys keep ``base`` (or the defaults).

    ``storage_limit``/``session_limit`` accept null as -1 (the admin UI sends null
    for an empty field, upstream-protocol 5.4). Unknown keys are refused.
    """
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise invalid("'settings' must be an object.")
    unknown = set(value) - {f.name for f in attrs.fields(UserSettings)}
    if unknown:
        raise invalid(f"Unknown setting '{sorted(unknown)[0]}'.")
    changes: dict[str, Any] = {}
    for key in _SETTINGS_BOOLS:
        if key in value:
            changes[key] = boolean(value, key, True)
    for key in ("storage_limit", "session_limit"):
        if key in value:
            changes[key] = integer(value, key, -1, low=-1, high=2**31 - 1)
    if "group" in value:
        group = value["group"]
        changes["group"] = "none" if group in (None, "") else name(group, "settings.group")
    return attrs.evolve(base or UserSettings(), **changes)


def settings_json(s: UserSettings) -> Json:
    return attrs.asdict(s)


def user(p: Principal) -> Json:
    """The ``User`` object of upstream-protocol 4.9."""
    return {
        "username": p.username,
        "public_key": p.public_key,
        "is_admin": p.is_admin,
        "settings": None if p.settings is None else settings_json(p.settings),
    }


def group(g: Group) -> Json:
    return {"name": g.name, "settings": settings_json(g.settings)}
