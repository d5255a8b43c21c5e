"""A launch writes the app's autostart script into the home it mounts (5.8)."""

from __future__ import annotations

import base64
import stat
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from server_harness import admin_client

pytestmark = pytest.mark.docker
PROBE = "sealskin/probe:latest"


@pytest_twisted.ensureDeferred
async def test_the_script_for_the_mode_lands_in_the_mounted_home(live: Any,
                                                                 docker_client: Any) -> None:
    admin = admin_client(live)
    app = await admin.ok("POST", "/api/admin/apps/installed", {
        "name": "Scripted", "users": ["all"], "groups": [], "home_directories": True,
        "pull_policy": "never", "provider_config": {
            "image": PROBE, "port": 3000,
            "custom_autostart_script_b64": base64.b64encode(b"#!/bin/sh\nx11\n").decode(),
            "custom_autostart_wayland_script_b64": base64.b64encode(b"#!/bin/sh\nwl\n").decode()}})
    await admin.ok("POST", "/api/homedirs", {"home_name": "work"})
    home = Path(live.paths.homes) / "admin" / "work"

    x11 = await admin.ok("POST", "/api/launch/simple", {
        "application_id": app["id"], "home_name": "work", "wayland_mode": False})
    script = home / ".config" / "openbox" / "autostart"
    assert script.read_bytes() == b"#!/bin/sh\nx11\n"
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    container = docker_client.containers.list(filters={
        "label": f"org.sealskin.session={x11['session_id']}"})[0]
    code, out = container.exec_run(["cat", "/config/.config/openbox/autostart"])
    assert (code, out) == (0, b"#!/bin/sh\nx11\n")  # what the app's desktop starts
    await admin.ok("DELETE", f"/api/sessions/{x11['session_id']}")

    wayland = await admin.ok("POST", "/api/launch/simple",
                             {"application_id": app["id"]})  # ephemeral, Wayland by default
    ephemeral = Path(live.paths.ephemeral) / wayland["session_id"] / "home"
    assert (ephemeral / ".config" / "labwc" / "autostart").read_bytes() == b"#!/bin/sh\nwl\n"
    await admin.ok("DELETE", f"/api/sessions/{wayland['session_id']}")


@pytest_twisted.ensureDeferred
async def test_a_planted_symlink_refuses_the_launch_and_writes_nothing(
        live: Any, docker_client: Any, tmp_path: Path, run_label: str) -> None:
    admin = admin_client(live)
    app = await admin.ok("POST", "/api/admin/apps/installed", {
        "name": "Scripted", "users": ["all"], "groups": [], "home_directories": True,
        "pull_policy": "never", "provider_config": {
            "image": PROBE, "port": 3000,
            "custom_autostart_script_b64": base64.b64encode(b"#!/bin/sh\n").decode()}})
    await admin.ok("POST", "/api/homedirs", {"home_name": "work"})
    outside = tmp_path / "outside"
    outside.mkdir()
    (Path(live.paths.homes) / "admin" / "work" / ".config").symlink_to(outside)
    r = await admin.call("POST", "/api/launch/simple", {
        "application_id": app["id"], "home_name": "work", "wayland_mode": False})
    assert r.status == 403, r
    assert list(outside.iterdir()) == []
    assert await admin.ok("GET", "/api/sessions") == []
    assert docker_client.containers.list(all=True, filters={
        "label": f"org.sealskin.server={run_label}"}) == []
