"""How a LaunchSpec becomes Docker's ``containers.create`` arguments; pure code.

Confinement follows upstream-protocol 10 (W13, W16): labels on all we create, no
published ports, no-new-privileges, all capabilities dropped but a few, limits
from the spec, allow-listed overrides merged last.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from docker.types import DeviceRequest
from docker.types import Mount as DockerMount

from sealskin.providers import GpuRequest, LaunchSpec, ProviderError

LABEL_SERVER = "org.sealskin.server"
LABEL_SESSION = "org.sealskin.session"
LABEL_USER = "org.sealskin.user"
LABEL_APP = "org.sealskin.app"
LABEL_PORT = "org.sealskin.port"

PULL_POLICIES = ("always", "if-missing", "never")

# linuxserver-style images start their init as root, fix ownership of /config
# (CHOWN, FOWNER, DAC_OVERRIDE), switch to PUID/PGID (SETUID, SETGID) and signal
# the processes they supervise (KILL). Everything else stays dropped (W16).
CAP_ADD = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID", "KILL")

# The NVIDIA runtime exposes only the driver libraries named here: desktops need
# graphics (GL) and video (encoder) besides compute (upstream-protocol 6.6).
NVIDIA_CAPABILITIES = ("compute", "video", "graphics", "utility", "gpu")

_SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,100}$")
_RENDER_NODE = re.compile(r"^/dev/dri/renderD[0-9]+$")
_NVIDIA_INDEX = re.compile(r"^[0-9]+$")


def resource_name(session_id: str) -> str:
    """The name of a session's container and of its network."""
    return f"sealskin-{session_id}"


def session_labels(spec: LaunchSpec, *, server_id: str) -> dict[str, str]:
    return {
        LABEL_SERVER: server_id,
        LABEL_SESSION: spec.session_id,
        LABEL_USER: spec.username,
        LABEL_APP: spec.app_id,
        LABEL_PORT: str(spec.port),
    }


def container_kwargs(
    spec: LaunchSpec, *, server_id: str, overrides: Mapping[str, object]
) -> dict[str, Any]:
    """``containers.create`` keyword arguments for ``spec``; pure.

    ``overrides`` must already be allow-listed; they are merged last (lists are
    extended, mappings updated, anything else replaced). Raises ProviderError
    ("create") for an invalid session id or GPU request.
    """
    if not _SESSION_ID.match(spec.session_id):
        raise ProviderError("create", "Invalid session id.")
    name = resource_name(spec.session_id)
    kwargs: dict[str, Any] = {
        "image": spec.image,
        "name": name,
        "labels": session_labels(spec, server_id=server_id),
        "environment": dict(spec.env),
        "network": name,  # no published ports: the server dials the container IP
        "mounts": [
            DockerMount(target=m.target, source=m.source, type="bind", read_only=m.read_only)
            for m in spec.mounts
        ],
        "security_opt": ["no-new-privileges:true"],
        "cap_drop": ["ALL"],
        "cap_add": list(CAP_ADD),
    }
    kwargs.update(_limits(spec))
    kwargs.update(gpu_kwargs(spec.gpu))
    for key, value in overrides.items():
        kwargs[key] = _merged(kwargs.get(key), value)
    return kwargs


def _limits(spec: LaunchSpec) -> dict[str, int]:
    limits: dict[str, int] = {}
    if spec.memory_bytes is not None:
        limits["mem_limit"] = spec.memory_bytes
        limits["memswap_limit"] = spec.memory_bytes  # no swap beyond the limit
    if spec.nano_cpus is not None:
        limits["nano_cpus"] = spec.nano_cpus
    if spec.pids_limit is not None:
        limits["pids_limit"] = spec.pids_limit
    if spec.shm_bytes is not None:
        limits["shm_size"] = spec.shm_bytes
    return limits


def gpu_kwargs(gpu: GpuRequest | None) -> dict[str, Any]:
    """Device kwargs for one GPU: an NVIDIA device request or a DRI render node, never both."""
    if gpu is None:
        return {}
    if gpu.kind == "nvidia" and _NVIDIA_INDEX.match(gpu.device):
        request = DeviceRequest(device_ids=[gpu.device], capabilities=[list(NVIDIA_CAPABILITIES)])
        return {"runtime": "nvidia", "device_requests": [request]}
    if gpu.kind == "dri3" and _RENDER_NODE.match(gpu.device):
        return {"devices": [f"{gpu.device}:{gpu.device}:rwm"]}
    raise ProviderError("create", "Unknown GPU device.")


def _merged(ours: object, theirs: object) -> object:
    if isinstance(ours, list) and isinstance(theirs, list):
        return ours + [item for item in theirs if item not in ours]
    if isinstance(ours, dict) and isinstance(theirs, Mapping):
        return {**ours, **theirs}
    return theirs
