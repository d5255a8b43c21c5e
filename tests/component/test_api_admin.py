"""The extension's admin flow against the real server: status, users, admins, groups, homes."""

from __future__ import annotations

import json
import os
import stat
from typing import Any

import pytest
import pytest_twisted

from server_harness import admin_client, start_server, user_client
from independent_client import Client


@pytest_twisted.ensureDeferred
async def test_bootstrap_writes_admin_json_with_mode_0600(server: Any) -> None:
    path = server.paths.admin_json
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(path) as f:
        doc = json.load(f)
    assert set(doc) == {"server_endpoint", "api_port", "session_port", "username",
                        "private_key", "server_public_key"}
    assert doc["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    assert doc["server_public_key"].startswith("-----BEGIN PUBLIC KEY-----")
    assert stat.S_IMODE(os.stat(server.paths.server_key).st_mode) == 0o600


@pytest_twisted.ensureDeferred
async def test_status_is_the_login_check(admin: Client) -> None:
    status = await admin.ok("POST", "/api/admin/status", {})
    assert status["is_admin"] is True and status["username"] == "admin"
    assert status["settings"]["persistent_storage"] is True


@pytest_twisted.ensureDeferred
async def test_user_lifecycle_with_generated_key(admin: Client) -> None:
    created = await admin.ok("POST", "/api/admin/users", {
        "username": "alice", "public_key": None,
        "settings": {"active": True, "group": "none", "session_limit": None}})
    assert created["user"]["username"] == "alice"
    assert created["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    alice = user_client(admin, "alice", created["private_key"])
    status = await alice.ok("POST", "/api/admin/status", {})
    assert status == {**status, "is_admin": False, "username": "alice"}
    r = await alice.call("POST", "/api/admin/data", {})
    assert r.status == 403 and r.detail == "Admin privileges required."
    updated = await admin.ok("PUT", "/api/admin/users/alice", {"settings": {"active": False}})
    assert updated["settings"]["active"] is False
    assert (await alice.call("POST", "/api/admin/status", {})).status == 403
    r = await admin.call("DELETE", "/api/admin/users/alice")
    assert r.status == 204 and r.body == b""
    assert (await alice.call("POST", "/api/admin/status", {})).status == 401
    data = await admin.ok("POST", "/api/admin/data", {})
    assert [u["username"] for u in data["users"]] == []


@pytest_twisted.ensureDeferred
async def test_duplicate_names_conflict_across_users_and_admins(admin: Client) -> None:
    await admin.ok("POST", "/api/admin/users", {"username": "bob", "settings": {}})
    r = await admin.call("POST", "/api/admin/admins", {"username": "bob", "public_key": None})
    assert r.status == 409 and "already exists" in r.detail


@pytest_twisted.ensureDeferred
async def test_bootstrap_admin_cannot_be_deleted(admin: Client) -> None:
    r = await admin.call("DELETE", "/api/admin/admins/admin")
    assert r.status == 403


@pytest_twisted.ensureDeferred
async def test_group_settings_overlay_and_membership(admin: Client) -> None:
    await admin.ok("POST", "/api/admin/groups", {"name": "nogpu", "settings": {
        "gpu": False, "persistent_storage": False}})
    created = await admin.ok("POST", "/api/admin/users", {
        "username": "carol", "settings": {"group": "nogpu"}})
    carol = user_client(admin, "carol", created["private_key"])
    status = await carol.ok("POST", "/api/admin/status", {})
    # the group's keys win, but membership stays the user's own (upstream R8 fixed)
    assert status["settings"]["gpu"] is False and status["settings"]["group"] == "nogpu"
    r = await carol.call("GET", "/api/homedirs")
    assert r.status == 403
    r = await admin.call("POST", "/api/admin/users", {"username": "dave",
                                                     "settings": {"group": "missing"}})
    assert r.status == 422


@pytest_twisted.ensureDeferred
async def test_home_directories(admin: Client, server: Any) -> None:
    assert await admin.ok("POST", "/api/homedirs", {"home_name": "work"}) == {
        "status": "success", "home_name": "work"}
    r = await admin.call("POST", "/api/homedirs", {"home_name": "work"})
    assert r.status == 409 and "already exists" in r.detail
    homes = (await admin.ok("GET", "/api/homedirs"))["home_dirs"]
    assert homes == ["_sealskin_shared_files", "work"]
    assert os.path.isdir(os.path.join(server.paths.homes, "admin", "work", "Desktop", "files"))
    for bad in ("../x", "a/b", "..", "x\n", ""):
        r = await admin.call("POST", "/api/homedirs", {"home_name": bad})
        assert r.status == 422, (bad, r)
    for reserved in ("cleanroom", "CleanRoom", "_sealskin_shared_files"):
        r = await admin.call("POST", "/api/homedirs", {"home_name": reserved})
        assert r.status == 422 and "reserved name" in r.detail, (reserved, r)
    # the popup makes auto-<app> homes itself (upstream-protocol 5.11)
    await admin.ok("POST", "/api/homedirs", {"home_name": "auto-firefox"})
    assert (await admin.call("DELETE", "/api/homedirs/work")).status == 204
    assert (await admin.call("DELETE", "/api/homedirs/work")).status == 404
    assert (await admin.call("DELETE", "/api/homedirs/auto-firefox")).status == 204
    assert not os.path.exists(os.path.join(server.paths.homes, "admin", "work"))


@pytest_twisted.ensureDeferred
async def test_admin_manages_a_users_homes(admin: Client) -> None:
    await admin.ok("POST", "/api/admin/users", {"username": "erin", "settings": {}})
    await admin.ok("POST", "/api/admin/users/erin/homedirs", {"home_name": "docs"})
    listed = await admin.ok("GET", "/api/admin/users/erin/homedirs")
    assert "docs" in listed["home_dirs"]
    r = await admin.call("POST", "/api/admin/users/erin/homedirs", {"home_name": "CLEANROOM"})
    assert r.status == 422 and "reserved name" in r.detail, r
    assert (await admin.call("GET", "/api/admin/users/nobody/homedirs")).status == 404
    assert (await admin.call("DELETE", "/api/admin/users/erin/homedirs/docs")).status == 204


@pytest_twisted.ensureDeferred
async def test_everything_survives_a_restart(tmp_path: Any) -> None:
    data = str(tmp_path / "data")
    svc = await start_server(data)
    admin = admin_client(svc)
    await admin.ok("POST", "/api/admin/groups", {"name": "team", "settings": {"gpu": False}})
    made = await admin.ok("POST", "/api/admin/users", {"username": "frank",
                                                      "settings": {"group": "team"}})
    await admin.ok("POST", "/api/homedirs", {"home_name": "keep"})
    await svc.stop()
    svc = await start_server(data)
    try:
        admin = admin_client(svc)  # same admin.json: not regenerated
        data_ = await admin.ok("POST", "/api/admin/data", {})
        assert [u["username"] for u in data_["users"]] == ["frank"]
        assert [g["name"] for g in data_["groups"]] == ["team"]
        assert "keep" in (await admin.ok("GET", "/api/homedirs"))["home_dirs"]
        frank = user_client(admin, "frank", made["private_key"])
        assert (await frank.ok("POST", "/api/admin/status", {}))["settings"]["gpu"] is False
    finally:
        await svc.stop()


@pytest_twisted.ensureDeferred
async def test_admin_changes_are_audited(admin: Client, server: Any) -> None:
    await admin.ok("POST", "/api/admin/users", {"username": "gina", "settings": {}})
    await admin.call("DELETE", "/api/admin/users/gina")
    entries = await server.store.audit()
    actions = [(e.actor, e.action, e.target) for e in entries]
    assert ("admin", "user.create", "gina") in actions or any(
        a[0] == "admin" and a[2] == "gina" and "create" in a[1] for a in actions)
    assert any(a[0] == "admin" and a[2] == "gina" and ("remove" in a[1] or "delete" in a[1])
               for a in actions)


@pytest_twisted.ensureDeferred
async def test_groups_none_is_reserved_and_a_group_with_members_stays(admin: Client) -> None:
    for reserved in ("none", "all"):  # no group; every group in an app's groups
        r = await admin.call("POST", "/api/admin/groups", {"name": reserved})
        assert r.status == 422 and "is reserved" in r.detail, r
    r = await admin.call("POST", "/api/admin/users", {"username": "all", "settings": {}})
    assert r.status == 422 and "is reserved" in r.detail, r  # everyone, in an app's users
    await admin.ok("POST", "/api/admin/groups", {"name": "crew", "settings": {
        "session_limit": 2, "gpu": False}})
    await admin.ok("POST", "/api/admin/users", {"username": "ivy", "settings": {"group": "crew"}})
    r = await admin.call("DELETE", "/api/admin/groups/crew")
    assert r.status == 409 and "ivy" in r.detail
    # an update merges like a user's: unnamed settings keep their values
    g = await admin.ok("PUT", "/api/admin/groups/crew", {"settings": {"gpu": True}})
    assert g["settings"]["session_limit"] == 2 and g["settings"]["gpu"] is True
    await admin.ok("PUT", "/api/admin/users/ivy", {"settings": {"group": "none"}})
    assert (await admin.call("DELETE", "/api/admin/groups/crew")).status == 204


@pytest_twisted.ensureDeferred
async def test_shared_files_home_cannot_be_deleted(admin: Client) -> None:
    assert "_sealskin_shared_files" in (await admin.ok("GET", "/api/homedirs"))["home_dirs"]
    r = await admin.call("DELETE", "/api/homedirs/_sealskin_shared_files")
    assert r.status == 403


@pytest_twisted.ensureDeferred
async def test_one_data_directory_serves_one_server_at_a_time(tmp_path: Any) -> None:
    data_dir = str(tmp_path / "data")
    first = await start_server(data_dir)
    try:
        with pytest.raises(OSError, match="another SealSkin server is using the data directory"):
            await start_server(data_dir)
    finally:
        await first.stop()
    second = await start_server(data_dir)  # stopping released the lock
    await second.stop()


@pytest_twisted.ensureDeferred
async def test_reset_admin_key_writes_a_new_admin_json_and_retires_the_old_key(
        tmp_path: Any) -> None:
    data_dir = str(tmp_path / "data")
    svc = await start_server(data_dir)
    old = admin_client(svc)
    await old.ok("POST", "/api/admin/users", {"username": "kept", "public_key": None,
                                              "settings": {}})
    await svc.stop()
    os.unlink(os.path.join(data_dir, "admin.json"))  # lost
    svc = await start_server(data_dir)  # without the option: nothing is rewritten
    assert not os.path.exists(svc.paths.admin_json)
    await svc.stop()
    svc = await start_server(data_dir, **{"reset-admin-key": "true"})
    try:
        assert stat.S_IMODE(os.stat(svc.paths.admin_json).st_mode) == 0o600
        new = admin_client(svc)
        assert new.config["private_key"] != old.config["private_key"]
        data = await new.ok("POST", "/api/admin/data", {})
        assert [u["username"] for u in data["users"]] == ["kept"]  # nothing else changed
        stale = Client(new.base, old.config)
        assert (await stale.call("POST", "/api/admin/status", {})).status == 401
    finally:
        await svc.stop()


@pytest_twisted.ensureDeferred
async def test_a_reset_that_cannot_write_admin_json_leaves_the_old_key_working(
        tmp_path: Any) -> None:
    data_dir = str(tmp_path / "data")
    svc = await start_server(data_dir)
    old = admin_client(svc)
    await svc.stop()
    os.mkdir(svc.paths.admin_json + ".tmp")  # the staged file cannot be written
    with pytest.raises(IsADirectoryError):
        await start_server(data_dir, **{"reset-admin-key": "true"})
    os.rmdir(svc.paths.admin_json + ".tmp")
    os.rename(svc.paths.admin_json, str(tmp_path / "kept.json"))
    os.mkdir(svc.paths.admin_json)  # the new file could not be put in place
    with pytest.raises(OSError, match="not a regular file"):
        await start_server(data_dir, **{"reset-admin-key": "true"})
    os.rmdir(svc.paths.admin_json)
    os.rename(str(tmp_path / "kept.json"), svc.paths.admin_json)
    svc = await start_server(data_dir)
    try:
        assert (await Client(admin_client(svc).base, old.config).call(
            "POST", "/api/admin/status", {})
                ).status == 200
    finally:
        await svc.stop()
