"""The Provider seam: where session containers run.

A provider translates its SDK's failures into :class:`ProviderError` with a
``step`` naming what failed; nothing above this package sees SDK exceptions.
Docker is the built-in implementation (``providers/docker.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import attrs


@attrs.frozen
class GpuRequest:
    kind: str  # "nvidia" | "dri3"
    device: str  # "/dev/dri/renderD128" or an NVIDIA index such as "0"


@attrs.frozen
class Mount:
    source: str  # host path
    target: str  # path inside the container
    read_only: bool = False


@attrs.frozen
class LaunchSpec:
    """Everything needed to start one session's container."""

    session_id: str
    username: str
    app_id: str
    image: str
    port: int
    env: Mapping[str, str]
    mounts: tuple[Mount, ...] = ()
    gpu: GpuRequest | None = None
    pull_policy: str = "if-missing"  # always | if-missing | never
    memory_bytes: int | None = None
    nano_cpus: int | None = None
    pids_limit: int | None = None
    shm_bytes: int | None = None
    overrides: Mapping[str, object] = attrs.field(factory=dict)  # already allow-listed


@attrs.frozen
class Instance:
    """A running container as the provider sees it (found by our labels)."""

    instance_id: str
    session_id: str
    username: str
    app_id: str
    host: str  # address the server dials
    port: int
    running: bool


@attrs.frozen
class GpuDevice:
    device: str
    driver: str  # "nvidia" | "dri3"/kernel driver name


class ProviderError(Exception):
    """A provider failure. ``step`` is one of pull, create, start, inspect, stop, list."""

    def __init__(self, step: str, detail: str, *, unavailable: bool = False) -> None:
        super().__init__(f"{step}: {detail}")
        self.step = step
        self.detail = detail
        self.unavailable = unavailable  # engine unreachable: retry later, delete nothing


class Provider(Protocol):
    async def pull(self, image: str, *, policy: str) -> str | None:
        """Makes ``image`` available; returns its short id, or None if absent."""
        ...

    async def image_id(self, image: str) -> str | None: ...
    async def start(self, spec: LaunchSpec) -> Instance: ...
    async def inspect(self, instance_id: str) -> Instance | None: ...
    async def stop(self, instance_id: str, *, grace_seconds: float) -> None: ...
    async def managed(self) -> Sequence[Instance]: ...
    async def gpus(self) -> Sequence[GpuDevice]: ...
    def pull_status(self, image: str) -> str | None: ...
