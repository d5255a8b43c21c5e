"""Image updates on the real engine, on a machine without a registry: clean, fast failures."""

from __future__ import annotations

import time
from typing import Any

import pytest
import pytest_twisted

from server_harness import admin_client

pytestmark = pytest.mark.docker

PROBE = "sealskin/probe:latest"
INSTALLED = "/api/admin/apps/installed"




async def install(admin: Any, **extra: Any) -> str:
    app = await admin.ok("POST", INSTALLED, {
        "name": "Probe", "users": ["all"], "app_template": "Default",
        "pull_policy": "never", "auto_update": False,
        "provider_config": {"image": PROBE, "port": 3000}, **extra})
    return str(app["id"])


@pytest_twisted.ensureDeferred
async def test_check_update_and_pull_latest_fail_fast_without_a_registry(live: Any) -> None:
    admin = admin_client(live)
    app_id = await install(admin)
    [listed] = await admin.ok("GET", INSTALLED)
    assert listed["image_sha"] and len(listed["image_sha"]) == 10
    for verb in ("check_update", "pull_latest"):
        started = time.monotonic()
        r = await admin.call("POST", f"{INSTALLED}/{app_id}/{verb}")
        assert r.status == 502, r
        assert r.detail.startswith("Image registry unreachable"), r.detail
        assert time.monotonic() - started < 6
    [after] = await admin.ok("GET", INSTALLED)
    assert after["image_sha"] == listed["image_sha"] and after["pull_status"] is None
    r = await admin.call("POST", f"{INSTALLED}/nope/check_update")
    assert r.status == 404


@pytest_twisted.ensureDeferred
async def test_scheduled_auto_update_survives_an_unreachable_registry(live: Any) -> None:
    admin = admin_client(live)
    app_id = await install(admin, auto_update=True)
    await live.updates.auto_update()  # the timer's callable; must not raise
    [listed] = await admin.ok("GET", INSTALLED)
    assert listed["id"] == app_id and listed["image_sha"]  # the local image is kept
    assert (await admin.ok("POST", "/api/admin/status", {}))["is_admin"] is True
