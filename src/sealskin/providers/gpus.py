"""GPU discovery on the host: DRI render nodes and NVIDIA GPUs (upstream-protocol 6.6).

Blocking (file system, subprocess): called on a pool thread.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from sealskin.providers import GpuDevice


def scan_gpus(
    dev_dri: Path = Path("/dev/dri"),
    sys_drm: Path = Path("/sys/class/drm"),
    nvidia_smi: str | None = None,
    smi_timeout_seconds: float = 10,
) -> list[GpuDevice]:
    """Render nodes with their kernel driver, plus NVIDIA GPUs without a render node.

    Blocking (file system, subprocess): runs on a pool thread. ``nvidia_smi``
    defaults to the one on PATH. An NVIDIA GPU without a render node is reported
    with its index as ``device``.
    """
    nodes = sorted(dev_dri.glob("renderD*"), key=lambda p: _node_number(p.name))
    found = [GpuDevice(device=f"/dev/dri/{n.name}", driver=_driver(sys_drm, n.name)) for n in nodes]
    smi = nvidia_smi or shutil.which("nvidia-smi")
    if smi is not None and not any(g.driver == "nvidia" for g in found):
        count = _count_nvidia(smi, smi_timeout_seconds)
        found += [GpuDevice(device=str(i), driver="nvidia") for i in range(count)]
    return found


def _node_number(name: str) -> int:
    digits = name.removeprefix("renderD")
    return int(digits) if digits.isdigit() else 0


def _driver(sys_drm: Path, node: str) -> str:
    try:
        return os.path.basename(os.readlink(sys_drm / node / "device" / "driver"))
    except OSError:
        return "unknown"


def _count_nvidia(smi: str, timeout_seconds: float) -> int:
    try:
        listed = subprocess.run(
            [smi, "-L"], capture_output=True, text=True, timeout=timeout_seconds, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return 0
    return len(_gpu_lines(listed.stdout.splitlines()))


def _gpu_lines(lines: Iterable[str]) -> list[str]:
    return [line for line in lines if line.startswith("GPU ")]
