"""Hostile inputs get a clear 4xx with a JSON detail: never a 500, a traceback, or a write."""

from __future__ import annotations

import base64
import json
import os
import time
from typing import Any

import pytest
import pytest_twisted
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives import serialization

from independent_client import Client, b64, b64url, jwt

OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
    serialization.NoEncryption()).decode()


def _hs256_with_public_key(admin: Client) -> str:
    import hmac, hashlib
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    now = int(time.time())
    body = b64url(json.dumps({"sub": "admin", "iat": now, "exp": now + 300}).encode())
    secret = admin.config["server_public_key"].encode()
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(sig)}"


def _none_alg() -> str:
    now = int(time.time())
    head = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    body = b64url(json.dumps({"sub": "admin", "iat": now, "exp": now + 300}).encode())
    return f"{head}.{body}."


TOKENS = {
    "garbage": lambda a: "not-a-jwt",
    "none alg": lambda a: _none_alg(),
    "hs256 with public key": _hs256_with_public_key,
    "expired": lambda a: jwt(a.config["private_key"], "admin", iat=time.time() - 1000),
    "future": lambda a: jwt(a.config["private_key"], "admin", iat=time.time() + 1000),
    "too long": lambda a: jwt(a.config["private_key"], "admin", lifetime=3600),
    "no exp": lambda a: jwt(a.config["private_key"], "admin",
                            claims={"sub": "admin", "iat": int(time.time())}),
    "no sub": lambda a: jwt(a.config["private_key"], "admin",
                            claims={"iat": int(time.time()), "exp": int(time.time()) + 60}),
    "wrong key": lambda a: jwt(OTHER_KEY, "admin"),
    "unknown user": lambda a: jwt(OTHER_KEY, "nobody"),
    "unsigned tail": lambda a: jwt(a.config["private_key"], "admin").rsplit(".", 1)[0] + ".",
}


@pytest.mark.parametrize("kind", sorted(TOKENS))
@pytest_twisted.ensureDeferred
async def test_bad_tokens_all_get_the_same_401(admin: Client, kind: str) -> None:
    await admin.handshake()
    r = await admin.call("POST", "/api/admin/status", {}, token=TOKENS[kind](admin))
    assert r.status == 401, r
    assert r.detail == "Invalid or expired token."


@pytest_twisted.ensureDeferred
async def test_missing_authorization_is_401(admin: Client) -> None:
    r = await admin.call("POST", "/api/admin/status", {}, token=None)
    assert r.status == 401 and isinstance(r.detail, str)


BODIES = {
    "not json": b"{nope",
    "json array": b"[1,2]",
    "missing iv": json.dumps({"ciphertext": "AAAA"}).encode(),
    "bad base64": json.dumps({"iv": "!!!!", "ciphertext": "@@@@"}).encode(),
    "short iv": json.dumps({"iv": b64(b"123"), "ciphertext": b64(b"x" * 32)}).encode(),
    "tampered": None,  # built in the test
    "extra keys": json.dumps({"iv": b64(os.urandom(12)), "ciphertext": "AAAA", "x": 1}).encode(),
    "numbers": json.dumps({"iv": 1, "ciphertext": 2}).encode(),
}


@pytest.mark.parametrize("kind", sorted(BODIES))
@pytest_twisted.ensureDeferred
async def test_bad_envelopes_are_400_and_write_nothing(admin: Client, server: Any,
                                                       kind: str) -> None:
    await admin.handshake()
    body = BODIES[kind]
    if body is None:
        sealed = json.loads(admin.seal({"username": "mallory", "settings": {}}))
        ct = bytearray(base64.b64decode(sealed["ciphertext"]))
        ct[0] ^= 1
        body = json.dumps({"iv": sealed["iv"], "ciphertext": b64(bytes(ct))}).encode()
    r = await admin.raw("POST", "/api/admin/users", body=body)
    assert r.status == 400, r
    assert r.detail == "Failed to decrypt request"
    assert await server.store.principal("mallory") is None


@pytest_twisted.ensureDeferred
async def test_plaintext_json_that_is_not_an_object_is_refused(admin: Client) -> None:
    await admin.handshake()
    for value, detail in (([1, 2, 3], "The decrypted request must be a JSON object."),
                          (None, "The decrypted request must be a JSON object."),
                          (123, "The decrypted request must be a JSON object.")):
        r = await admin.raw("POST", "/api/admin/users", body=admin.seal(value))
        assert (r.status, r.detail) == (400, detail)


@pytest_twisted.ensureDeferred
async def test_a_url_that_is_not_utf8_is_a_json_400(admin: Client) -> None:
    for path in ("/%ff", "/api/admin/users/%ff", "/api/files/list/%c3%28"):
        r = await admin.raw("GET", path, session=False, token=None)
        assert r.status == 400 and r.detail == "The URL is not valid UTF-8.", (path, r)


@pytest_twisted.ensureDeferred
async def test_a_known_path_with_the_wrong_method_is_405(admin: Client) -> None:
    for method, path in (("GET", "/api/handshake/initiate"), ("PUT", "/api/admin/status"),
                         ("PATCH", "/api/admin/users/x")):
        r = await admin.raw(method, path, session=False, token=None)
        assert r.status == 405 and r.detail == "Method not allowed.", (method, path, r)


@pytest_twisted.ensureDeferred
async def test_replayed_request_is_refused(admin: Client, server: Any) -> None:
    await admin.handshake()
    body = admin.seal({"username": "once", "settings": {}})
    assert (await admin.raw("POST", "/api/admin/users", body=body)).status == 200
    await admin.call("DELETE", "/api/admin/users/once")
    r = await admin.raw("POST", "/api/admin/users", body=body)
    assert r.status == 400
    assert await server.store.principal("once") is None


@pytest.mark.parametrize("method,path", [
    ("GET", "/api/homedirs"), ("POST", "/api/admin/status"), ("DELETE", "/api/homedirs/x"),
    ("PUT", "/api/admin/users/x"), ("POST", "/api/admin/data")])
@pytest_twisted.ensureDeferred
async def test_unknown_crypto_session_is_400_on_every_method(admin: Client, method: str,
                                                            path: str) -> None:
    r = await admin.raw(method, path, headers={"X-Session-ID": "not-a-session"})
    assert r.status == 400 and r.detail == "Invalid or missing session ID"
    r = await admin.raw(method, path, session=False)
    assert r.status == 400


@pytest.mark.parametrize("name", ["a/b", "..", "../etc", "x\x00y", "tab\tname", "", "é",
                                  "a" * 65, 42, None])
@pytest_twisted.ensureDeferred
async def test_bad_names_are_422(admin: Client, server: Any, name: Any) -> None:
    for path, body in (("/api/admin/users", {"username": name, "settings": {}}),
                       ("/api/admin/admins", {"username": name}),
                       ("/api/admin/groups", {"name": name, "settings": {}}),
                       ("/api/homedirs", {"home_name": name})):
        r = await admin.call("POST", path, body)
        assert r.status == 422, (path, r)
        assert isinstance(r.detail, str)
    assert [p.username for p in await server.store.principals()] == ["admin"]


@pytest.mark.parametrize("settings", [{"gpu": "yes"}, {"session_limit": "3"},
                                      {"unknown": True}, [1], {"storage_limit": -5}])
@pytest_twisted.ensureDeferred
async def test_bad_settings_are_422(admin: Client, settings: Any) -> None:
    r = await admin.call("POST", "/api/admin/users", {"username": "sam", "settings": settings})
    assert r.status == 422, r


@pytest.mark.parametrize("key", ["garbage", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END "
                                 "PUBLIC KEY-----\n", OTHER_KEY])
@pytest_twisted.ensureDeferred
async def test_bad_public_keys_are_422(admin: Client, key: str) -> None:
    r = await admin.call("POST", "/api/admin/users", {"username": "kim", "public_key": key})
    assert r.status == 422, r


@pytest_twisted.ensureDeferred
async def test_oversized_body_is_413(admin: Client, server: Any) -> None:
    await admin.handshake()
    big = admin.seal({"username": "big", "settings": {}, "pad": "x" * (2 * 1024 * 1024)})
    r = await admin.raw("POST", "/api/admin/users", body=big)
    assert r.status == 413 and isinstance(r.detail, str)
    assert await server.store.principal("big") is None


@pytest_twisted.ensureDeferred
async def test_handshake_garbage_is_400(admin: Client) -> None:
    for body in (b"", b"[]", b'{"encrypted_session_key": 5}',
                 b'{"encrypted_session_key": "AAAA"}', b"\xff\xfe"):
        r = await admin.raw("POST", "/api/handshake/exchange", body=body, token=None,
                            session=False)
        assert r.status == 400, (body, r)
        assert r.detail == "Failed to decrypt session key"


@pytest_twisted.ensureDeferred
async def test_unknown_route_is_json_404(admin: Client) -> None:
    r = await admin.raw("GET", "/api/nope", session=False, token=None)
    assert r.status == 404 and isinstance(r.detail, str)


@pytest_twisted.ensureDeferred
async def test_declared_oversized_length_is_refused_before_the_body(server: Any) -> None:
    """The server answers 413 at once; it does not wait for a body that may never come."""
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
    from twisted.internet.protocol import Protocol
    from twisted.internet.defer import Deferred

    class Collect(Protocol):
        def __init__(self) -> None:
            self.data, self.done = b"", Deferred()

        def dataReceived(self, data: bytes) -> None:
            self.data += data

        def connectionLost(self, reason: Any) -> None:
            self.done.callback(self.data)

    proto = Collect()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", server.api_port), proto)
    proto.transport.write(b"POST /api/admin/users HTTP/1.1\r\nHost: x\r\n"
                          b"Content-Type: application/json\r\nContent-Length: 50000000\r\n\r\nx")
    answer = await proto.done.addTimeout(5, reactor)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["detail"]


@pytest_twisted.ensureDeferred
async def test_rate_limited_handshakes_get_429_with_its_reason(tmp_path: Any) -> None:
    from server_harness import start_server

    svc = await start_server(str(tmp_path / "d"), **{"handshake-rate": "0.001",
                                                     "handshake-burst": "2"})
    try:
        client = Client(f"http://127.0.0.1:{svc.api_port}", {})
        codes = [(await client.raw("POST", "/api/handshake/initiate", token=None,
                                   session=False)).status for _ in range(4)]
        assert codes == [200, 200, 429, 429]
        r = await client.raw("POST", "/api/handshake/initiate", token=None, session=False)
        assert isinstance(r.detail, str)
    finally:
        await svc.stop()


@pytest_twisted.ensureDeferred
async def test_every_initiate_answer_is_fresh_and_verifies(admin: Client) -> None:
    """initiate answers are signed ahead of time: each must still be used once only."""
    from cryptography.hazmat.primitives import hashes, serialization
    from independent_client import PSS

    key = serialization.load_pem_public_key(admin.config["server_public_key"].encode())
    nonces = set()
    for _ in range(40):
        r = await admin.raw("POST", "/api/handshake/initiate", token=None, session=False)
        body = r.value
        key.verify(base64.b64decode(body["signature"]), base64.b64decode(body["nonce"]),  # type: ignore[union-attr,call-arg]
                   PSS, hashes.SHA256())
        nonces.add(body["nonce"])
    assert len(nonces) == 40


@pytest_twisted.ensureDeferred
async def test_deeply_nested_json_is_400_not_500(admin: Client) -> None:
    deep = b"[" * 100_000
    r = await admin.raw("POST", "/api/handshake/exchange", body=deep, token=None,
                        session=False)
    assert r.status == 400
    await admin.handshake()
    r = await admin.raw("POST", "/api/admin/users", body=deep)
    assert r.status == 400
    inner = admin.seal({"x": 1})  # a valid envelope around deeply nested plaintext
    sealed = json.loads(inner)
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    iv = os.urandom(12)
    sealed = {"iv": b64(iv), "ciphertext": b64(AESGCM(admin.key).encrypt(iv, deep, None))}
    r = await admin.raw("POST", "/api/admin/users", body=json.dumps(sealed).encode())
    assert r.status == 400
