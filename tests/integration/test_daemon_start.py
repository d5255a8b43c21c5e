"""``twistd sealskin`` when its start fails: it says why, exits 1 and frees the data directory."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import pytest

from process_harness import Daemon


def test_a_busy_api_port_ends_the_daemon_with_status_1(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    daemon = Daemon(data_dir)
    with socket.socket() as busy:  # someone else holds the API port
        busy.bind(("127.0.0.1", daemon.api_port))
        busy.listen()
        started = time.monotonic()
        with pytest.raises(RuntimeError, match="twistd exited 1"):
            daemon.start(timeout_seconds=30)
        assert time.monotonic() - started < 25, "the failed start hung"
    assert "cannot start: Couldn't listen on 127.0.0.1:" in daemon.log()
    again = Daemon(data_dir)  # the port is free now, and so is the data directory's lock
    again.start()
    try:
        assert again.admin_config()["username"] == "admin"
    finally:
        assert again.stop() == -signal.SIGTERM  # twistd ends itself with the signal it got
