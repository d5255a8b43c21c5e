"""Public shares: authenticated management, the plain /public pages on both ports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest_twisted
import treq
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.web.client import Agent, HTTPConnectionPool

from independent_client import Client
from server_harness import make_user
import session_http


def _http() -> HTTPClient:
    return HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))


async def plain(svc: Any, method: str, path: str, body: bytes | None = None) -> tuple[int, Any, bytes]:
    headers = {b"content-type": [b"application/x-www-form-urlencoded"]} if body else None
    r = await _http().request(method, f"http://127.0.0.1:{svc.api_port}{path}", data=body,
                              headers=headers, allow_redirects=False)
    return r.code, r.headers, await treq.content(r)


async def sharer(server: Any, admin: Client) -> tuple[Client, Path]:
    eve = await make_user(admin, "eve", public_sharing=True)
    await eve.ok("POST", "/api/homedirs", {"home_name": "docs"})
    root = Path(server.paths.homes) / "eve" / "docs"
    (root / "report.txt").write_bytes(b"quarterly numbers")
    return eve, root


@pytest_twisted.ensureDeferred
async def test_open_share_downloads_on_both_ports(server: Any, admin: Client) -> None:
    eve, root = await sharer(server, admin)
    info = await eve.ok("POST", "/api/files/share", {"home_dir": "docs", "path": "/report.txt"})
    assert info["original_filename"] == "report.txt" and info["size_bytes"] == 17
    assert info["has_password"] is False and info["expiry_timestamp"] is None
    assert info["url"] == f"/public/{info['share_id']}"
    (root / "report.txt").write_bytes(b"changed")  # the share is a copy
    code, headers, body = await plain(server, "GET", info["url"])
    assert code == 200 and body == b"quarterly numbers"
    assert headers.getRawHeaders(b"content-type") == [b"application/octet-stream"]
    assert b"attachment" in headers.getRawHeaders(b"content-disposition")[0]
    code, _, body = await session_http.https(*session_http.for_server(server), "GET",
                                             info["url"], None, None)
    assert code == 200 and body == b"quarterly numbers"
    assert [s["share_id"] for s in await eve.ok("GET", "/api/files/shares")] == [info["share_id"]]
    assert (await admin.call("DELETE", f"/api/files/share/{info['share_id']}")).status == 403
    assert (await eve.call("DELETE", f"/api/files/share/{info['share_id']}")).status == 204
    assert (await plain(server, "GET", info["url"]))[0] == 404
    assert (await eve.call("DELETE", f"/api/files/share/{info['share_id']}")).status == 404


@pytest_twisted.ensureDeferred
async def test_password_share_form_token_and_attempt_limit(server: Any, admin: Client) -> None:
    eve, _ = await sharer(server, admin)
    info = await eve.ok("POST", "/api/files/share", {
        "home_dir": "docs", "path": "/report.txt", "password": "s3cret", "expiry_hours": 2})
    assert info["has_password"] is True and info["expiry_timestamp"] > info["created_at"]
    stored = json.loads((Path(server.paths.internal) / "shares" / "index.json").read_text())
    assert stored[info["share_id"]]["password_hash"].startswith("scrypt$")
    assert "s3cret" not in json.dumps(stored)
    code, _, page = await plain(server, "GET", info["url"])
    assert code == 200 and b"<form" in page and b"quarterly" not in page
    code, _, page = await plain(server, "POST", info["url"], b"password=wrong")
    assert code == 401 and b"Wrong password" in page
    code, headers, _ = await plain(server, "POST", info["url"], b"password=s3cret")
    assert code == 303
    location = headers.getRawHeaders(b"location")[0].decode()
    assert location.startswith("/public/download/")
    code, _, body = await plain(server, "GET", location)
    assert code == 200 and body == b"quarterly numbers"
    assert (await plain(server, "GET", location))[0] == 403  # single use
    for _ in range(4):
        await plain(server, "POST", info["url"], b"password=nope")
    code, _, _ = await plain(server, "POST", info["url"], b"password=s3cret")
    assert code == 429  # attempts are limited per share


@pytest_twisted.ensureDeferred
async def test_expired_share_is_410_then_removed(server: Any, admin: Client) -> None:
    eve, _ = await sharer(server, admin)
    info = await eve.ok("POST", "/api/files/share", {
        "home_dir": "docs", "path": "/report.txt", "expiry_hours": 1})
    shares = server.public._shares
    stored = shares.get(info["share_id"])
    import attrs
    shares._shares[stored.id] = attrs.evolve(stored, expiry_timestamp=1.0)
    assert (await plain(server, "GET", info["url"]))[0] == 410
    await server.file_timers[0].call[0]()
    assert shares.get(info["share_id"]) is None
    assert not (Path(server.paths.internal) / "shares" / "files" / info["share_id"]).exists()


@pytest_twisted.ensureDeferred
async def test_sharing_needs_the_setting_and_confined_paths(server: Any, admin: Client) -> None:
    frank = await make_user(admin, "frank")
    await frank.ok("POST", "/api/homedirs", {"home_name": "docs"})
    r = await frank.call("POST", "/api/files/share", {"home_dir": "docs", "path": "/x"})
    assert r.status == 403
    eve, root = await sharer(server, admin)
    (root / "link").symlink_to(Path(server.paths.keys) / "server_key.pem")
    for home, path in (("docs", "/../../../keys/server_key.pem"), ("docs", "/link"),
                       ("frank", "/x"), ("docs", "/Desktop")):
        r = await eve.call("POST", "/api/files/share", {"home_dir": home, "path": path})
        assert r.status in (403, 404), (home, path, r)
    assert await eve.ok("GET", "/api/files/shares") == []
    # admins are exempt from the setting (upstream-protocol 3.7: SH)
    await admin.ok("POST", "/api/homedirs", {"home_name": "own"})
    (Path(server.paths.homes) / "admin" / "own" / "a.txt").write_bytes(b"from the admin")
    info = await admin.ok("POST", "/api/files/share", {"home_dir": "own", "path": "/a.txt"})
    assert (await plain(server, "GET", info["url"]))[2] == b"from the admin"
