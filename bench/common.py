"""Helpers shared by the benchmarks: a server subprocess, /proc readings, percentiles, docs.

Nothing here imports sealskin: benchmarks drive the real daemon (``twistd sealskin``)
from the outside, over 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
TWISTD = ROOT / ".venv" / "bin" / "twistd"
BENCHMARKS_MD = ROOT / "docs" / "benchmarks.md"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, deadline: float) -> None:
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Server:
    """A ``twistd -n sealskin`` subprocess on free 127.0.0.1 ports.

    ``data_dir`` may be reused between starts (the server key is made only once).
    Its output goes to ``<data_dir>/server.log``, never to a pipe nobody reads.
    """

    def __init__(self, data_dir: str | os.PathLike[str], *, args: Sequence[str] = (),
                 twistd_args: Sequence[str] = (), start_seconds: float = 120.0,
                 source: str | os.PathLike[str] = ROOT) -> None:
        self.data_dir = Path(data_dir)
        self.source = Path(source)  # the tree whose src/ and twisted/plugins/ are run
        self.args = list(args)  # after "sealskin"
        self.twistd_args = list(twistd_args)  # before it, e.g. --profile=... --profiler=cprofile
        self.start_seconds = start_seconds
        self.api_port = 0
        self.session_port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir / "server.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def base(self) -> tuple[str, int]:
        return "127.0.0.1", self.api_port

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.api_port, self.session_port = free_port(), free_port()
        cmd = [str(TWISTD), "-n", "--pidfile=", *self.twistd_args, "sealskin", "--data-dir", str(self.data_dir),
               "--api-endpoint", f"tcp:{self.api_port}:interface=127.0.0.1",
               "--session-endpoint", f"tcp:{self.session_port}:interface=127.0.0.1",
               "--host-url", "127.0.0.1", *self.args]
        env = dict(os.environ, PYTHONPATH=f"{self.source / 'src'}:{self.source}")
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(cmd, cwd=self.source, env=env, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            log.close()
        deadline = time.monotonic() + self.start_seconds
        try:
            while not (self.data_dir / "admin.json").exists():
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not start; see {self.log_path}")
                time.sleep(0.05)
            wait_for_port(self.api_port, deadline)
        except BaseException:
            self.stop()
            raise

    def admin_config(self) -> dict[str, Any]:
        with open(self.data_dir / "admin.json") as f:
            config: dict[str, Any] = json.load(f)
        return config

    def stop(self, grace_seconds: float = 20.0) -> None:
        """SIGTERM, then SIGKILL after ``grace_seconds``; always reaps the process."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_seconds)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def scratch_dir(prefix: str = "sealskin-bench-") -> Iterator[Path]:
    """A temporary directory removed afterwards (server data, keys, logs)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as d:
        yield Path(d)


# -- /proc -------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads included."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def busy_cpu_seconds() -> float:
    """CPU time the whole machine spent busy since boot (all cores; /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


def rss_bytes(pid: int) -> dict[str, int]:
    """``VmRSS`` (now) and ``VmHWM`` (peak) of a process, in bytes."""
    found: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0]) * 1024
    return found


def self_cpu_seconds() -> float:
    """CPU time of the calling process (all threads)."""
    t = os.times()
    return t.user + t.system


# -- statistics --------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear between closest ranks; NaN if empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(latencies_ms: Sequence[float]) -> dict[str, float]:
    return {"p50": percentile(latencies_ms, 50), "p99": percentile(latencies_ms, 99),
            "max": max(latencies_ms) if latencies_ms else float("nan")}


# -- machine facts -----------------------------------------------------------------


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_facts() -> dict[str, str]:
    """nproc, CPU, versions and which compiled accelerators this venv loads.

    Run in a subprocess of the venv's Python, so the answer is the server's.
    """
    probe = r"""
import json, sys, platform
import twisted, cryptography, json.decoder, json.encoder
from cryptography.hazmat.backends.openssl.backend import backend
from cryptography.hazmat.bindings import _rust
facts = {
    "python": sys.version.split()[0] + " (" + platform.python_implementation() + ")",
    "twisted": twisted.__version__,
    "cryptography": cryptography.__version__ + ", " + backend.openssl_version_text(),
    "cryptography_rust": _rust.__file__.rsplit("/", 1)[-1],
    "json_c": str(json.decoder.c_scanstring is not None and
                  json.encoder.c_make_encoder is not None),
}
import zope.interface.interface as zi
facts["zope_interface_c"] = str("coptimizations" in repr(zi.InterfaceBase))
from twisted.internet import default
facts["reactor"] = default.install.__module__
import klein, jwt
facts["klein"] = klein.__version__
facts["pyjwt"] = jwt.__version__
print(json.dumps(facts))
"""
    out = subprocess.run([str(VENV_PYTHON), "-c", probe], check=True, capture_output=True,
                         text=True, cwd=ROOT).stdout
    facts: dict[str, str] = json.loads(out)
    facts["nproc"] = str(os.cpu_count())
    facts["cpu"] = cpu_model()
    facts["kernel"] = platform.release()
    return facts


# -- docs/benchmarks.md ------------------------------------------------------------


def write_section(heading: str, body: str, path: Path = BENCHMARKS_MD) -> None:
    """Replaces the ``## ...`` section named ``heading`` (or appends it), keeping the rest.

    The section runs to the next line starting with ``## ``. The file is locked
    while it is rewritten, so two benchmarks finishing together do not clobber each other.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    with os.fdopen(fd, "r+", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        lines = f.read().splitlines(keepends=True)
        section = [heading + "\n", "\n", body.rstrip("\n") + "\n"]
        start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
        if start is None:
            if not lines:
                lines = ["# Benchmarks\n"]
            if lines[-1].strip():
                lines.append("\n")
            lines += section
        else:
            end = next((i for i in range(start + 1, len(lines))
                        if lines[i].startswith("## ")), len(lines))
            tail = lines[end:]
            lines = lines[:start] + section + (["\n"] if tail else []) + tail
        f.seek(0)
        f.write("".join(lines))
        f.truncate()


def fmt(value: float, digits: int = 0) -> str:
    if value != value:  # NaN
        return "n/a"
    return f"{value:,.{digits}f}"


if __name__ == "__main__":
    json.dump(machine_facts(), sys.stdout, indent=2)
