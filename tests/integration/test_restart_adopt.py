"""kill -9 of the daemon during a session, then restart: the session is adopted (its old
cookie still works) and an unknown container carrying this server's label is removed."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from independent_client import Client
from process_harness import Daemon
from session_http import https, redeem

pytestmark = pytest.mark.docker
PROBE = "sealskin/probe:latest"



async def _until(predicate: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await predicate():
            return
        await deferLater(reactor, 0.2, lambda: None)
    raise AssertionError(f"timed out waiting for {what}")


@pytest_twisted.ensureDeferred
async def test_kill_9_then_restart_adopts_the_session(tmp_path: Path, run_label: str,
                                                      probe_image: str,
                                                      docker_client: Any) -> None:
    server_id = f"{run_label}-k"
    daemon = Daemon(tmp_path / "data", **{"server-id": server_id})
    await deferLater(reactor, 0, daemon.start)
    try:
        admin = Client(f"http://127.0.0.1:{daemon.api_port}", daemon.admin_config())
        app = await admin.ok("POST", "/api/admin/apps/installed", {
            "name": "Probe", "users": ["all"], "pull_policy": "never",
            "provider_config": {"image": PROBE, "port": 3000}})
        launched = await admin.ok("POST", "/api/launch/simple", {"application_id": app["id"]})
        sid = launched["session_id"]
        cert = str(tmp_path / "data" / "keys" / "tls_cert.pem")
        cookie = await redeem(daemon.session_port, cert, launched["session_url"])
        assert (await https(daemon.session_port, cert, "GET", f"/{sid}/",
                            {"Cookie": cookie}))[0] == 200
        stray = docker_client.containers.run(
            PROBE, detach=True, labels={"org.sealskin.server": server_id,
                                        "org.sealskin.session": str(uuid.uuid4()),
                                        "org.sealskin.user": "nobody",
                                        "org.sealskin.app": "none",
                                        "org.sealskin.port": "3000"})

        daemon.kill()
        await deferLater(reactor, 0, daemon.start)

        async def cookie_works() -> bool:
            code, _, body = await https(daemon.session_port, cert, "GET", f"/{sid}/",
                                        {"Cookie": cookie})
            return code == 200 and b"sealskin-probe" in body

        await _until(cookie_works, 30, "the adopted session to answer")

        async def stray_gone() -> bool:
            return not docker_client.containers.list(all=True, filters={"id": stray.id})

        await _until(stray_gone, 30, "the unknown container to be removed")
        admin = Client(admin.base, daemon.admin_config())
        listed = await admin.ok("GET", "/api/sessions")
        assert [s["session_id"] for s in listed] == [sid]
        assert (await admin.call("DELETE", f"/api/sessions/{sid}")).status == 204
    finally:
        # twistd re-raises SIGTERM after a clean shutdown (systemd counts it as success)
        assert daemon.stop() in (0, -15), daemon.log()
