"""Meta apps (upstream-protocol 4.10, 5.11, 6.4): an admin prepares a home template in the app
lab, users' sessions start from a copy of it."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from server_harness import admin_client, make_user

pytestmark = pytest.mark.docker
PROBE = "sealskin/probe:latest"


def mount_source(docker_client: Any, session_id: str, target: str) -> str:
    [container] = docker_client.containers.list(filters={
        "label": f"org.sealskin.session={session_id}"})
    return next(m["Source"] for m in container.attrs["Mounts"] if m["Destination"] == target)


@pytest_twisted.ensureDeferred
async def test_meta_app_lab_then_users_start_from_the_template(live: Any,
                                                               docker_client: Any) -> None:
    admin = admin_client(live)
    base = await admin.ok("POST", "/api/admin/apps/installed", {
        "name": "Probe", "users": ["all"], "groups": [], "pull_policy": "never",
        "provider_config": {"image": PROBE, "port": 3000}})
    script = base64.b64encode(b"#!/bin/sh\nlab\n").decode()
    r = await admin.call("POST", "/api/admin/apps/meta", {"name": "Lab", "base_app_id": "nope"})
    assert r.status == 404
    r = await admin.call("POST", "/api/admin/apps/meta", {
        "name": "Lab", "base_app_id": base["id"], "custom_autostart_script_b64": "#!"})
    assert r.status == 422 and "base64" in r.detail
    meta = await admin.ok("POST", "/api/admin/apps/meta", {
        "name": "Lab Tools", "base_app_id": base["id"], "logo": "", "users": ["all"],
        "groups": [], "custom_autostart_wayland_script_b64": script})
    assert meta["is_meta_app"] and meta["base_app_id"] == base["id"]
    assert meta["home_template_name"] == f"meta_{meta['id']}" and meta["auto_update"] is False
    assert meta["provider_config"]["image"] == PROBE
    r = await admin.call("POST", "/api/admin/apps/meta", {"name": "X", "base_app_id": meta["id"]})
    assert r.status == 422  # a meta app is not a base
    template = Path(live.paths.home_templates) / meta["home_template_name"]
    assert (template / "Desktop" / "files").is_dir()

    r = await admin.call("POST", "/api/admin/launch/meta_customize",
                         {"application_id": base["id"]})
    assert r.status == 400  # only meta apps have a template
    lab = await admin.ok("POST", "/api/admin/launch/meta_customize",
                         {"application_id": meta["id"]})
    assert mount_source(docker_client, lab["session_id"], "/config") == str(template)
    assert (template / ".config" / "labwc" / "autostart").read_bytes() == b"#!/bin/sh\nlab\n"
    (template / "settings.ini").write_text("prepared by the admin\n")  # what the lab saved
    os.symlink("/etc/passwd", template / "link")  # kept as a link, never followed
    r = await admin.call("DELETE", f"/api/admin/apps/installed/{meta['id']}")
    assert r.status == 409 and "in use" in r.detail
    await admin.ok("DELETE", f"/api/sessions/{lab['session_id']}")
    assert template.is_dir()  # ending the lab session keeps the template

    alice = await make_user(admin, "alice")
    listed = {a["id"]: a for a in await alice.ok("POST", "/api/applications", {})}
    assert listed[meta["id"]]["is_meta_app"] is True
    first = await alice.ok("POST", "/api/launch/simple", {"application_id": meta["id"],
                                                          "home_name": "anything"})
    home = Path(live.paths.homes) / "alice" / "auto-lab-tools"
    assert mount_source(docker_client, first["session_id"], "/config") == str(home)
    assert (home / "settings.ini").read_text() == "prepared by the admin\n"
    assert os.readlink(home / "link") == "/etc/passwd"
    (home / "settings.ini").write_text("changed by alice\n")
    await alice.ok("DELETE", f"/api/sessions/{first['session_id']}")
    again = await alice.ok("POST", "/api/launch/simple", {"application_id": meta["id"]})
    assert (home / "settings.ini").read_text() == "changed by alice\n"  # copied once only
    await alice.ok("DELETE", f"/api/sessions/{again['session_id']}")
    clean = await alice.ok("POST", "/api/launch/simple", {"application_id": meta["id"],
                                                          "home_name": "cleanroom"})
    fresh = Path(live.paths.ephemeral) / clean["session_id"] / "home"
    assert (fresh / "settings.ini").read_text() == "prepared by the admin\n"
    await alice.ok("DELETE", f"/api/sessions/{clean['session_id']}")

    await admin.ok("DELETE", f"/api/admin/apps/installed/{meta['id']}")
    assert not template.exists()
    assert home.is_dir()  # the users' homes stay theirs


@pytest_twisted.ensureDeferred
async def test_a_meta_app_stays_one_through_edits_limits_and_name_clashes(
        live: Any, docker_client: Any) -> None:
    admin = admin_client(live)
    base = await admin.ok("POST", "/api/admin/apps/installed", {
        "name": "Probe", "users": ["all"], "groups": [], "pull_policy": "never",
        "provider_config": {"image": PROBE, "port": 3000}})
    # "is_meta_app" in an install body makes no meta app (it would have no template)
    fake = await admin.ok("POST", "/api/admin/apps/installed", {
        "name": "Fake", "is_meta_app": True, "pull_policy": "never",
        "provider_config": {"image": PROBE, "port": 3000}})
    assert fake["is_meta_app"] is False
    meta = await admin.ok("POST", "/api/admin/apps/meta", {
        "name": "Big Meta", "base_app_id": base["id"], "users": ["all"]})
    r = await admin.call("POST", "/api/admin/apps/meta", {"name": "big_meta!",
                                                          "base_app_id": base["id"]})
    assert r.status == 409 and "auto-big-meta" in r.detail  # the same users' home
    # an edit as the admin UI sends it (the whole app, meta fields left out or null)
    edited = {**meta, "name": "Big Meta 2", "base_app_id": None, "home_template_name": None,
              "is_meta_app": False}
    kept = await admin.ok("PUT", f"/api/admin/apps/installed/{meta['id']}", edited)
    assert kept["is_meta_app"] is True and kept["base_app_id"] == base["id"]
    assert kept["home_template_name"] == meta["home_template_name"]
    template = Path(live.paths.home_templates) / meta["home_template_name"]
    (template / "big.bin").write_bytes(os.urandom(2 * 1024 * 1024))

    lab = await admin.ok("POST", "/api/admin/launch/meta_customize",
                         {"application_id": meta["id"]})
    r = await admin.call("POST", "/api/admin/launch/meta_customize",
                         {"application_id": meta["id"]})
    assert r.status == 409 and "in use" in r.detail  # one lab session per template
    await admin.ok("DELETE", f"/api/sessions/{lab['session_id']}")

    small = await make_user(admin, "small", storage_limit=1)  # MiB: the template does not fit
    r = await small.call("POST", "/api/launch/simple", {"application_id": meta["id"]})
    assert r.status == 413 and "does not fit in your storage" in r.detail, r
    assert not (Path(live.paths.homes) / "small" / "auto-big-meta-2").exists()
    roomy = await make_user(admin, "roomy", storage_limit=10)
    ok = await roomy.ok("POST", "/api/launch/simple", {"application_id": meta["id"]})
    assert (Path(live.paths.homes) / "roomy" / "auto-big-meta-2" / "big.bin").is_file()
    await roomy.ok("DELETE", f"/api/sessions/{ok['session_id']}")
