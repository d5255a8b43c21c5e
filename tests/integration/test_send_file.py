"""Files reach the container: send_file into a running session and launch/file with
SEALSKIN_FILE, checked from inside through the probe behind the session proxy."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Any

import pytest
import pytest_twisted

from independent_client import Client
from server_harness import admin_client
import session_http

pytestmark = pytest.mark.docker
PROBE = "sealskin/probe:latest"




async def install_probe(admin: Client) -> str:
    app = await admin.ok("POST", "/api/admin/apps/installed", {
        "name": "Probe", "users": ["all"], "groups": [], "home_directories": True,
        "app_template": "Default", "pull_policy": "never",
        "provider_config": {"image": PROBE, "port": 3000}})
    return str(app["id"])


async def upload(c: Client, data: bytes, filename: str) -> tuple[str, int]:
    uid = (await c.ok("POST", "/api/upload/initiate",
                      {"filename": filename, "total_size": len(data)}))["upload_id"]
    count = 0
    for i in range(0, len(data), 64 * 1024):
        await c.ok("POST", "/api/upload/chunk", {
            "upload_id": uid, "chunk_index": count,
            "chunk_data_b64": base64.b64encode(data[i:i + 64 * 1024]).decode()})
        count += 1
    return uid, count


async def inside(svc: Any, cookie: str, sid: str, what: str) -> Any:
    code, _, raw = await session_http.https(*session_http.for_server(svc), "GET",
                                            f"/{sid}/{what}", {"Cookie": cookie}, None)
    assert code == 200, (code, raw)
    return json.loads(raw)


def names(listing: Any) -> dict[str, int]:
    return {e["name"]: e["size"] for e in listing["entries"]}


async def opened_with(svc: Any, launched: Any) -> tuple[str, dict[str, int]]:
    """Opens a launched session: its SEALSKIN_FILE and its shared files (name -> size)."""
    sid = launched["session_id"]
    cookie = await session_http.redeem(*session_http.for_server(svc), launched["session_url"])
    env = await inside(svc, cookie, sid, "env")
    return env["SEALSKIN_FILE"], names(await inside(svc, cookie, sid, "files?path=Desktop/files"))


@pytest_twisted.ensureDeferred
async def test_send_file_is_visible_in_an_ephemeral_session(live: Any) -> None:
    admin = admin_client(live)
    app_id = await install_probe(admin)
    launched = await admin.ok("POST", "/api/launch/simple", {"application_id": app_id})
    sid = launched["session_id"]
    cookie = await session_http.redeem(*session_http.for_server(live), launched["session_url"])
    data = os.urandom(200_000)
    uid, count = await upload(admin, data, "notes.txt")
    r = await admin.ok("POST", f"/api/sessions/{sid}/send_file",
                       {"filename": "notes.txt", "upload_id": uid, "total_chunks": count})
    assert r["status"] == "success" and r["sha256"] == hashlib.sha256(data).hexdigest()
    listing = await inside(live, cookie, sid, "files?path=Desktop/files")
    assert names(listing) == {"notes.txt": 200_000}
    uid, count = await upload(admin, b"second", "notes.txt")
    await admin.ok("POST", f"/api/sessions/{sid}/send_file",
                   {"filename": "notes.txt", "upload_id": uid, "total_chunks": count})
    listing = await inside(live, cookie, sid, "files?path=Desktop/files")
    assert names(listing) == {"notes.txt": 200_000, "notes-1.txt": 6}
    other = await admin.call("POST", f"/api/sessions/{'0' * 8}-0000-4000-8000-{'0' * 12}"
                             "/send_file", {"filename": "x", "upload_id": uid, "total_chunks": 1})
    assert other.status == 404
    await admin.ok("DELETE", f"/api/sessions/{sid}")


@pytest_twisted.ensureDeferred
async def test_launch_file_places_the_file_and_sets_sealskin_file(live: Any) -> None:
    admin = admin_client(live)
    app_id = await install_probe(admin)
    data = b"open me" * 1000
    uid, count = await upload(admin, data, "doc.odt")
    launched = await admin.ok("POST", "/api/launch/file", {
        "application_id": app_id, "filename": "doc.odt", "upload_id": uid,
        "total_chunks": count, "open_file_on_launch": True, "home_name": None})
    sid = launched["session_id"]
    assert launched["sha256"] == hashlib.sha256(data).hexdigest()
    assert await opened_with(live, launched) == ("/config/Desktop/files/doc.odt",
                                                 {"doc.odt": len(data)})
    listed = await admin.ok("GET", "/api/sessions")
    assert listed[0]["launch_context"] == {"type": "file", "value": "doc.odt"}
    await admin.ok("DELETE", f"/api/sessions/{sid}")


@pytest_twisted.ensureDeferred
async def test_launch_file_path_opens_a_stored_file(live: Any) -> None:
    """The file manager's "open" (upstream 4.3 launch/file_path): a file of the shared files."""
    admin = admin_client(live)
    app_id = await install_probe(admin)
    data = b"stored" * 3000
    uid, count = await upload(admin, data, "kept.txt")
    await admin.ok("POST", "/api/upload/to_storage", {
        "filename": "kept.txt", "upload_id": uid, "total_chunks": count,
        "home_name": "_sealskin_shared_files"})
    missing = await admin.call("POST", "/api/launch/file_path",
                               {"application_id": app_id, "filename": "nope.txt"})
    assert missing.status == 404
    cleanroom = await admin.call("POST", "/api/launch/file_path", {
        "application_id": app_id, "filename": "kept.txt", "home_name": "cleanroom"})
    assert cleanroom.status == 400
    for home in (None, "work"):  # an ephemeral session gets a copy; a home session the file
        if home:
            await admin.ok("POST", "/api/homedirs", {"home_name": home})
        launched = await admin.ok("POST", "/api/launch/file_path", {
            "application_id": app_id, "filename": "kept.txt", "home_name": home})
        opened, files = await opened_with(live, launched)
        assert opened == "/config/Desktop/files/kept.txt" and files["kept.txt"] == len(data)
        await admin.ok("DELETE", f"/api/sessions/{launched['session_id']}")
    stored = os.path.join(live.paths.homes, "admin", "_sealskin_shared_files", "kept.txt")
    assert open(stored, "rb").read() == data  # the stored file stays as it was
