"""``twistd sealskin`` when its start fails: it says why, exits 1 and frees the data directory."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from process_harness import ROOT, Daemon
from sealskin.proxy.tls import ensure_self_signed


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


def _twistd(tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    daemon = Daemon(tmp_path / "data")
    args = [str(Path(sys.executable).parent / "twistd"), "--nodaemon", "--pidfile=",
            f"--logfile={daemon.log_path}", "sealskin",
            *(f"--{k}={v}" for k, v in daemon.options.items()), *options]
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    return subprocess.run(args, env=env, cwd=str(ROOT), capture_output=True, text=True,
                          timeout=60)


def test_unusable_tls_files_end_the_start_with_one_clear_line(tmp_path: Path) -> None:
    mine, other = tmp_path / "mine", tmp_path / "other"
    ensure_self_signed(mine / "cert.pem", mine / "key.pem", "localhost")
    ensure_self_signed(other / "cert.pem", other / "key.pem", "localhost")
    (tmp_path / "junk.pem").write_text("not a key\n")
    cases = {
        ("--tls-cert", str(mine / "cert.pem")): "--tls-cert and --tls-key go together",
        ("--tls-cert", str(mine / "cert.pem"), "--tls-key", str(other / "key.pem")):
            "is not the private key of the certificate",
        ("--tls-cert", str(mine / "cert.pem"), "--tls-key", str(tmp_path / "junk.pem")):
            "is not an unencrypted PEM private key",
        ("--tls-cert", str(tmp_path / "junk.pem"), "--tls-key", str(mine / "key.pem")):
            "holds no PEM certificate",
        ("--tls-cert", str(tmp_path / "none.pem"), "--tls-key", str(mine / "key.pem")):
            "No such file or directory",
    }
    for args, said in cases.items():
        pairs = [f"{args[i]}={args[i + 1]}" for i in range(0, len(args), 2)]
        done = _twistd(tmp_path, *pairs)
        assert done.returncode == 1, (args, done)
        assert said in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)
    good = Daemon(tmp_path / "good", **{"tls-cert": str(mine / "cert.pem"),
                                        "tls-key": str(mine / "key.pem")})
    good.start()  # the operator's matching pair serves
    try:

        context = ssl.create_default_context(cafile=str(mine / "cert.pem"))
        context.check_hostname = False
        with socket.create_connection(("127.0.0.1", good.session_port), timeout=10) as raw:
            with context.wrap_socket(raw) as tls_socket:
                assert tls_socket.getpeercert(binary_form=True) == ssl.PEM_cert_to_DER_cert(
                    (mine / "cert.pem").read_text())
    finally:
        good.stop()


def test_unusable_endpoint_descriptions_end_the_start_with_one_clear_line(
        tmp_path: Path) -> None:
    for option, desc, said in (("api-endpoint", "foo:bar", "Unknown endpoint type"),
                               ("api-endpoint", "tcp:80:bogus=1", "unexpected keyword"),
                               ("session-endpoint", "tcp:notaport", "invalid literal"),
                               ("session-endpoint", "systemd:domain=INET:index=0",
                                "no socket at that index was passed by systemd")):
        done = _twistd(tmp_path, f"--{option}={desc}")
        assert done.returncode == 1, (desc, done)
        assert f"--{option} {desc!r}: " in done.stderr and said in done.stderr, done.stderr
        assert "Traceback" not in done.stderr, done.stderr
