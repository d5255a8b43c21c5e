"""The session port serves the same encrypted /api surface as the API port (the
extension tries it first, upstream-protocol 1.2), over real TLS."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet import reactor

from independent_client import Client
from server_harness import admin_client
from tls_client import pinned_agent


def tls_client(server: Any) -> Client:
    plain = admin_client(server)
    return Client(f"https://127.0.0.1:{server.session_port}", plain.config,
                  agent=pinned_agent(reactor, str(server.tls_cert)))


@pytest_twisted.ensureDeferred
async def test_handshake_and_admin_calls_over_tls(server: Any) -> None:
    client = tls_client(server)
    status = await client.ok("POST", "/api/admin/status", {})
    assert status["username"] == "admin"
    await client.ok("POST", "/api/admin/users", {"username": "tina", "settings": {}})
    assert (await client.call("DELETE", "/api/admin/users/tina")).status == 204


@pytest_twisted.ensureDeferred
async def test_body_limit_holds_on_the_tls_port(server: Any) -> None:
    client = tls_client(server)
    await client.handshake()
    big = client.seal({"username": "huge", "settings": {}, "pad": "x" * (2 * 1024 * 1024)})
    r = await client.raw("POST", "/api/admin/users", body=big)
    assert r.status == 413
    assert await server.store.principal("huge") is None


@pytest_twisted.ensureDeferred
async def test_unknown_crypto_session_is_400_over_tls(server: Any) -> None:
    client = tls_client(server)
    r = await client.raw("GET", "/api/sessions", headers={"X-Session-ID": "nope"})
    assert r.status == 400
