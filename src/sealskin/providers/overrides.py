"""Allow-list for the ``docker_overrides`` an app store may ask for.

Upstream merged store overrides verbatim into ``containers.run``, so a compromised
store could ask for ``privileged``, host binds or the host's namespaces
(upstream-protocol 10, W13). Here every key is either known to be safe (and its
value checked), dangerous (accepted only when the admin named it for this app),
or unknown (refused). Pure code: no Docker, no Twisted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping

# Namespaces, privileges and host filesystem access: each one undoes the
# confinement the provider sets up (upstream-protocol 10, W13 and W16).
DANGEROUS_KEYS = frozenset(
    {
        "privileged",
        "network_mode",
        "pid_mode",
        "ipc_mode",
        "uts_mode",
        "userns_mode",
        "cgroupns",
        "volumes",
        "volumes_from",
        "binds",
        "mounts",
        "tmpfs",
        "cap_add",
        "devices",
        "device_requests",
        "device_cgroup_rules",
        "group_add",
        "sysctls",
        "runtime",
        "user",
    }
)

# Variables the server sets for every session; an app store must not replace them.
RESERVED_ENV = frozenset(
    {"SUBFOLDER", "CUSTOM_USER", "PASSWORD", "PUID", "PGID", "SELKIES_MASTER_TOKEN"}
)

_SECURITY_OPTS = frozenset(
    {
        "seccomp=unconfined",
        "seccomp:unconfined",
        "apparmor=unconfined",
        "apparmor:unconfined",
        "no-new-privileges",
        "no-new-privileges:true",
        "no-new-privileges=true",
    }
)
_ULIMIT_NAMES = frozenset({"nofile", "memlock", "nproc", "rtprio", "core", "stack"})
_SIZE = re.compile(r"^[0-9]+(\.[0-9]+)?\s*[bkmg]?b?$", re.IGNORECASE)
_CPUSET = re.compile(r"^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DEVICE_PREFIXES = ("/dev/dri/", "/dev/snd/")


class _Refused(Exception):
    """A value that does not pass its key's check."""


def filter_overrides(
    requested: Mapping[str, object], *, dangerous_allowed: Collection[str]
) -> tuple[dict[str, object], list[str]]:
    """Splits ``requested`` into accepted overrides and refused key names.

    ``dangerous_allowed`` names dangerous keys the admin accepted for this app;
    ``devices`` stays limited to ``/dev/dri`` and ``/dev/snd`` even then.
    Accepted values are normalised copies (lists, dicts of strings).
    """
    accepted: dict[str, object] = {}
    refused: list[str] = []
    for key, value in requested.items():
        try:
            accepted[key] = _check(key, value, dangerous_allowed)
        except _Refused:
            refused.append(key)
    return accepted, sorted(refused)


def _check(key: str, value: object, dangerous_allowed: Collection[str]) -> object:
    if key == "devices":
        if key not in dangerous_allowed:
            raise _Refused()
        return _devices(value)
    if key in DANGEROUS_KEYS:
        if key not in dangerous_allowed:
            raise _Refused()
        return value
    check = _SAFE.get(key)
    if check is None:
        raise _Refused()
    return check(value)


def _size(value: object) -> object:
    if isinstance(value, bool):
        raise _Refused()
    if isinstance(value, int) and value > 0:
        return value
    if isinstance(value, str) and _SIZE.match(value.strip()):
        return value.strip()
    raise _Refused()


def _positive_int(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise _Refused()


def _cpuset(value: object) -> object:
    if isinstance(value, str) and _CPUSET.match(value):
        return value
    raise _Refused()


def _security_opt(value: object) -> object:
    items = _string_list(value)
    if not all(item in _SECURITY_OPTS for item in items):
        raise _Refused()
    return items


def _environment(value: object) -> object:
    if isinstance(value, Mapping):
        pairs = [(str(k), v) for k, v in value.items()]
    else:
        pairs = [_env_pair(item) for item in _string_list(value)]
    env: dict[str, str] = {}
    for name, raw in pairs:
        if not _ENV_NAME.match(name) or name in RESERVED_ENV or raw is None:
            raise _Refused()
        env[name] = str(raw)
    return env


def _env_pair(item: str) -> tuple[str, object]:
    name, sep, raw = item.partition("=")
    if not sep:
        raise _Refused()
    return name, raw


def _ulimits(value: object) -> object:
    if not isinstance(value, list):
        raise _Refused()
    limits: list[dict[str, object]] = []
    for item in value:
        if not isinstance(item, Mapping) or set(item) - {"name", "soft", "hard"}:
            raise _Refused()
        if item.get("name") not in _ULIMIT_NAMES:
            raise _Refused()
        soft, hard = item.get("soft"), item.get("hard")
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in (soft, hard)):
            raise _Refused()
        limits.append({"name": item["name"], "soft": soft, "hard": hard})
    return limits


def _devices(value: object) -> object:
    items = _string_list(value)
    for item in items:
        parts = item.split(":")
        paths = parts[:2]
        if len(parts) > 3 or not all(_is_media_device(p) for p in paths):
            raise _Refused()
    return items


def _is_media_device(path: str) -> bool:
    return path.startswith(_DEVICE_PREFIXES) and "/.." not in path and "//" not in path


def _string_list(value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Refused()
    return [str(v) for v in value]


_SAFE: dict[str, Callable[[object], object]] = {
    "shm_size": _size,
    "mem_limit": _size,
    "mem_reservation": _size,
    "memswap_limit": _size,
    "nano_cpus": _positive_int,
    "cpu_shares": _positive_int,
    "cpu_period": _positive_int,
    "cpu_quota": _positive_int,
    "cpuset_cpus": _cpuset,
    "pids_limit": _positive_int,
    "ulimits": _ulimits,
    "security_opt": _security_opt,
    "environment": _environment,
}
