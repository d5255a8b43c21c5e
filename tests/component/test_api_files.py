"""The file manager against the real server: shapes of upstream 4.7, confinement, limits."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, gatherResults

from independent_client import Client
from server_harness import admin_client, make_user, start_server
from test_api_uploads import upload


def home(svc: Any, user: str, name: str) -> Path:
    return Path(svc.paths.homes) / user / name


async def poll_task(c: Client, task_id: str) -> Any:
    for _ in range(500):
        status = await c.ok("GET", f"/api/files/delete_status/{task_id}")
        if status["status"] in ("completed", "error"):
            return status
        await task.deferLater(reactor, 0.01, lambda: None)
    raise AssertionError("deletion did not finish")


@pytest_twisted.ensureDeferred
async def test_list_download_create_delete(server: Any, admin: Client) -> None:
    await admin.ok("POST", "/api/homedirs", {"home_name": "work"})
    root = home(server, "admin", "work")
    (root / "b.txt").write_bytes(b"B")
    (root / "A.txt").write_bytes(os.urandom(2 * 1024 * 1024))
    listing = await admin.ok("GET", "/api/files/list/work?path=/&page=1&per_page=2")
    assert listing["total"] == 3 and listing["path"] == "/" and listing["per_page"] == 2
    assert [(i["name"], i["is_dir"], i["path"]) for i in listing["items"]] == [
        ("Desktop", True, "/Desktop"), ("A.txt", False, "/A.txt")]
    assert set(listing["items"][1]) == {"name", "path", "is_dir", "size", "mtime"}
    chunks = []
    for index in range(3):
        c = await admin.ok("GET", f"/api/files/download/chunk/work?path=/A.txt&chunk_index={index}")
        chunks.append(base64.b64decode(c["chunk_data_b64"]))
        if c["is_last_chunk"]:
            break
    assert index == 1 and chunks[1] == b""  # exact multiple of 2 MiB ends with an empty chunk
    assert b"".join(chunks) == (root / "A.txt").read_bytes()
    made = await admin.ok("POST", "/api/files/create_folder/work",
                          {"path": "/Desktop", "folder_name": "new"})
    assert made == {"message": "Folder 'new' created successfully."}
    again = await admin.call("POST", "/api/files/create_folder/work",
                             {"path": "/Desktop", "folder_name": "new"})
    assert again.status == 409 and "already exists" in again.detail
    started = await admin.ok("POST", "/api/files/delete/work", {"paths": ["/Desktop/new", "/b.txt"]})
    assert started["message"] == "Deletion task started."
    assert (await poll_task(admin, started["task_id"]))["status"] == "completed"
    assert not (root / "b.txt").exists() and not (root / "Desktop" / "new").exists()
    bob = await make_user(admin, "bob")
    r = await bob.call("GET", f"/api/files/delete_status/{started['task_id']}")
    assert r.status == 404  # someone else's task


@pytest_twisted.ensureDeferred
async def test_upload_to_dir(server: Any, admin: Client) -> None:
    await admin.ok("POST", "/api/homedirs", {"home_name": "work"})
    uid, count = await upload(admin, b"payload", filename="n.txt")
    r = await admin.ok("POST", "/api/files/upload_to_dir/work", {
        "path": "/Desktop/files", "filename": "n.txt", "upload_id": uid, "total_chunks": count})
    assert r["message"] == "File uploaded successfully."
    assert (home(server, "admin", "work") / "Desktop" / "files" / "n.txt").read_bytes() == b"payload"


@pytest_twisted.ensureDeferred
async def test_traversal_is_refused_on_every_path_bearing_endpoint(server: Any,
                                                                   admin: Client) -> None:
    await admin.ok("POST", "/api/homedirs", {"home_name": "work"})
    root = home(server, "admin", "work")
    outside = Path(server.paths.data_dir) / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"server secret")
    os.symlink(outside, root / "escape")
    os.symlink(outside / "secret", root / "leak")
    bob = await make_user(admin, "bob")
    await bob.ok("GET", "/api/homedirs")
    for path in ("/../..", "..", "%2e%2e/%2e%2e", "/Desktop/../../..", "/escape", "/escape/secret",
                 "/leak"):
        q = path
        r = await admin.call("GET", f"/api/files/list/work?path={q}")
        assert r.status in (403, 404), (path, r)
        r = await admin.call("GET", f"/api/files/download/chunk/work?path={q}&chunk_index=0")
        assert r.status in (403, 404), (path, r)
        assert b"server secret" not in r.body
        r = await admin.call("POST", "/api/files/create_folder/work",
                             {"path": path, "folder_name": "x"})
        assert r.status in (403, 404), (path, r)
    r = await admin.call("GET", "/api/files/download/chunk/work?path=/leak&chunk_index=0")
    assert r.status == 403 and r.detail == "Directory traversal attempt detected."
    r = await admin.call("GET", "/api/files/list/work?path=%2e%2e")
    assert r.status == 403
    for name in ("..", "a/b", "a\\b"):
        r = await admin.call("POST", "/api/files/create_folder/work",
                             {"path": "/", "folder_name": name})
        assert r.status == 422
    assert not (outside / "x").exists()
    for other in ("..", "bob", "_sealskin_shared_files/..", "work/..", "cleanroom"):
        r = await admin.call("GET", f"/api/files/list/{other}?path=/")
        assert r.status in (403, 404, 422), (other, r)
    uid, count = await upload(admin, b"x")
    r = await admin.call("POST", "/api/files/upload_to_dir/work", {
        "path": "/escape", "filename": "planted", "upload_id": uid, "total_chunks": count})
    assert r.status == 403 and not (outside / "planted").exists()
    r = await admin.call("POST", "/api/files/upload_to_dir/bob", {
        "path": "/", "filename": "planted", "upload_id": uid, "total_chunks": count})
    assert r.status == 403
    started = await admin.ok("POST", "/api/files/delete/work", {"paths": ["/escape/secret"]})
    assert (await poll_task(admin, started["task_id"]))["status"] == "error"
    r = await admin.call("POST", "/api/files/delete/work", {"paths": ["/../outside"]})
    assert r.status == 403
    started = await admin.ok("POST", "/api/files/delete/work", {"paths": ["/escape"]})
    assert (await poll_task(admin, started["task_id"]))["status"] == "completed"
    assert (outside / "secret").read_bytes() == b"server secret"  # only the link went


@pytest_twisted.ensureDeferred
async def test_storage_limit_refuses_writes(tmp_path: Path) -> None:
    svc = await start_server(str(tmp_path / "data"), **{"storage-usage-cache-seconds": "0"})
    try:
        admin = admin_client(svc)
        carol = await make_user(admin, "carol", storage_limit=1)
        await carol.ok("POST", "/api/homedirs", {"home_name": "docs"})
        uid, count = await upload(carol, b"x" * 1000)
        (home(svc, "carol", "docs") / "filler").write_bytes(b"y" * (1024 * 1024 - 500))
        r = await carol.call("POST", "/api/files/upload_to_dir/docs", {
            "path": "/", "filename": "more", "upload_id": uid, "total_chunks": count})
        assert r.status == 413 and r.detail == "Storage limit exceeded."
        assert not (home(svc, "carol", "docs") / "more").exists()
        (home(svc, "carol", "docs") / "filler2").write_bytes(b"y" * 1000)
        r = await carol.call("POST", "/api/files/create_folder/docs",
                             {"path": "/", "folder_name": "new"})
        assert r.status == 413
        r = await carol.call("POST", "/api/upload/initiate", {"filename": "a", "total_size": 10})
        assert r.status == 413
    finally:
        await svc.stop()


@pytest_twisted.ensureDeferred
async def test_uploads_side_by_side_cannot_pass_the_storage_limit_together(
        tmp_path: Path) -> None:
    """Each upload alone fits; together they do not. Unfinished uploads hold their
    declared size, and stores running side by side hold theirs while they write."""
    svc = await start_server(str(tmp_path / "data"))
    try:
        admin = admin_client(svc)
        erin = await make_user(admin, "erin", storage_limit=1)
        part = 600 * 1024
        first = await erin.ok("POST", "/api/upload/initiate",
                              {"filename": "a", "total_size": part})
        r = await erin.call("POST", "/api/upload/initiate", {"filename": "b", "total_size": part})
        assert r.status == 413 and "unfinished uploads already hold" in r.detail, r
        await erin.ok("DELETE", f"/api/upload/{first['upload_id']}")

        # Uploads made while the limit was not set yet: both are finished, then stored at once.
        await admin.ok("PUT", "/api/admin/users/erin",
                       {"settings": {"storage_limit": None}})
        done = [await upload(erin, os.urandom(part), chunk=200 * 1024) for _ in range(2)]
        await admin.ok("PUT", "/api/admin/users/erin", {"settings": {"storage_limit": 1}})
        results = await gatherResults([
            Deferred.fromCoroutine(erin.call("POST", "/api/upload/to_storage", {
                "filename": f"f{n}", "upload_id": uid, "total_chunks": count,
                "home_name": "_sealskin_shared_files"}))
            for n, (uid, count) in enumerate(done)])
        assert sorted(r.status for r in results) == [200, 413], results
        shared = Path(svc.paths.homes) / "erin" / "_sealskin_shared_files"
        stored = [p for p in shared.iterdir() if p.name in ("f0", "f1")]
        assert [p.stat().st_size for p in stored] == [part]
    finally:
        await svc.stop()


@pytest_twisted.ensureDeferred
async def test_no_persistent_storage_means_no_file_manager(server: Any, admin: Client) -> None:
    dave = await make_user(admin, "dave", persistent_storage=False)
    r = await dave.call("GET", "/api/files/list/_sealskin_shared_files?path=/")
    assert r.status == 403 and r.detail == "Persistent storage is disabled for this account."


@pytest_twisted.ensureDeferred
async def test_home_names_read_while_a_home_is_added_are_not_kept(server: Any) -> None:
    """Home names are cached in memory; a read that overlaps a write must not be cached."""

    homes, store = server.homes, server.store
    await homes.names("admin")  # the shared-files home exists from here on
    homes.forget("admin")
    real, gate = store.homes, Deferred()

    async def held(username: str) -> Any:  # the real read, answered late
        rows = await real(username)
        await gate
        return rows

    store.homes = held
    try:
        reading = Deferred.fromCoroutine(homes.names("admin"))
        await homes.create("admin", "admin", "fresh")
        gate.callback(None)
        assert "fresh" not in await reading  # it began before the home was added
    finally:
        del store.homes
    assert "fresh" in await homes.names("admin")
    admin = admin_client(server)
    assert "fresh" in (await admin.ok("GET", "/api/homedirs"))["home_dirs"]
    await admin.ok("DELETE", "/api/homedirs/fresh")
    assert "fresh" not in (await admin.ok("GET", "/api/homedirs"))["home_dirs"]
