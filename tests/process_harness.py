"""Running the real daemon as ``twistd sealskin`` in a child process (restart and kill tests)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Daemon:
    """``twistd --nodaemon sealskin`` on fixed loopback ports, logging to a file."""

    def __init__(self, data_dir: Path, **options: str) -> None:
        self.data_dir = data_dir
        self.api_port = free_port()
        self.session_port = free_port()
        self.options = {
            "data-dir": str(data_dir),
            "api-endpoint": f"tcp:{self.api_port}:interface=127.0.0.1",
            "session-endpoint": f"tcp:{self.session_port}:interface=127.0.0.1",
            "server-key-bits": "2048", "admin-key-bits": "2048", "host-url": "127.0.0.1",
            **options}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}.log"

    def start(self, timeout_seconds: float = 60) -> None:
        env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
        args = [str(Path(sys.executable).parent / "twistd"), "--nodaemon", "--pidfile=",
                f"--logfile={self.log_path}", "sealskin"]
        for key, value in self.options.items():
            args.append(f"--{key}={value}")
        self.proc = subprocess.Popen(args, env=env, cwd=str(ROOT))
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"twistd exited {self.proc.returncode}: {self.log()}")
            if os.path.exists(self.data_dir / "admin.json") and self._answers():
                return
            time.sleep(0.1)
        raise TimeoutError(f"twistd did not start: {self.log()}")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.api_port), timeout=0.5):
                return True
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs (containers and records stay as they were)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def log(self) -> str:
        try:
            return self.log_path.read_text()[-4000:]
        except OSError:
            return "(no log)"

    def admin_config(self) -> dict[str, Any]:
        with open(self.data_dir / "admin.json") as f:
            return dict(json.load(f))
