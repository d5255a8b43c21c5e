"""Facts about the host shown to clients: CPU model, storage usage, GPUs."""

from __future__ import annotations

import shutil
from collections.abc import Awaitable, Callable, Sequence

from twisted.internet.interfaces import IReactorTime

from sealskin.blocking import Pool
from sealskin.providers import GpuDevice


def _thd_cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def _thd_disk(path: str) -> tuple[int, int] | None:
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return None
    return usage.total, usage.used


class HostFacts:
    """Cached host facts (disk usage is refreshed at most every ``cache_seconds``)."""

    def __init__(self, clock: IReactorTime, work: Pool, storage_root: str,
                 gpus: Callable[[], Awaitable[Sequence[GpuDevice]]],
                 cache_seconds: float = 60) -> None:
        self._clock = clock
        self._work = work
        self._root = storage_root
        self._gpus = gpus
        self._cache_seconds = cache_seconds
        self._cpu: str | None = None
        self._disk: tuple[float, tuple[int, int] | None] | None = None
        self._gpu_list: tuple[float, Sequence[GpuDevice]] | None = None

    async def cpu_model(self) -> str | None:
        if self._cpu is None:
            self._cpu = await self._work.run(_thd_cpu_model)
        return self._cpu

    async def disk(self) -> tuple[int, int] | None:
        now = self._clock.seconds()
        if self._disk is None or now - self._disk[0] > self._cache_seconds:
            self._disk = (now, await self._work.run(_thd_disk, self._root))
        return self._disk[1]

    async def gpus(self) -> Sequence[GpuDevice]:
        now = self._clock.seconds()
        if self._gpu_list is None or now - self._gpu_list[0] > self._cache_seconds:
            self._gpu_list = (now, await self._gpus())
        return self._gpu_list[1]
