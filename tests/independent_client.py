"""An API client for tests, written directly on ``cryptography`` and ``treq``.

It shares no code with the server (no sealskin.crypto, no pyjwt) so protocol
tests check the wire format, not our helpers agreeing with themselves
(upstream-protocol 2 and 3).
"""

from __future__ import annotations

import base64
import json
import os
import time
from typing import Any

import treq
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.web.client import Agent, HTTPConnectionPool
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(private_pem: str, sub: str, *, iat: float | None = None, lifetime: int = 300,
        alg: str = "RS256", claims: dict[str, Any] | None = None) -> str:
    """A compact RS256 JWS signed with PKCS#1 v1.5 / SHA-256, like the extension."""
    now = int(time.time() if iat is None else iat)
    payload = {"iat": now, "exp": now + lifetime, "sub": sub} if claims is None else claims
    head = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = b64url(json.dumps(payload).encode())
    key = serialization.load_pem_private_key(private_pem.encode(), None)
    sig = key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr,call-arg]
    return f"{head}.{body}.{b64url(sig)}"


class Response:
    def __init__(self, status: int, headers: Any, body: bytes, value: Any) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.value = value  # decrypted JSON for 200 envelopes, plaintext JSON otherwise

    @property
    def detail(self) -> Any:
        return json.loads(self.body)["detail"]

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.body[:200]!r}>"


class Client:
    def __init__(self, base_url: str, config: dict[str, Any], agent: Any = None) -> None:
        self.base = base_url
        self.config = config
        self.key: bytes | None = None
        self.session_id: str | None = None
        # no persistent connections: a test ends with no sockets or timers left
        self.http = HTTPClient(agent or Agent(reactor, pool=HTTPConnectionPool(reactor,
                                                                           persistent=False)))

    async def handshake(self) -> None:
        r = await self.http.post(self.base + "/api/handshake/initiate")
        assert r.code == 200, (r.code, await treq.content(r))
        body = json.loads(await treq.content(r))
        server_key = serialization.load_pem_public_key(self.config["server_public_key"].encode())
        server_key.verify(base64.b64decode(body["signature"]),  # type: ignore[union-attr,call-arg]
                          base64.b64decode(body["nonce"]), PSS, hashes.SHA256())
        self.key = os.urandom(32)
        wrapped = server_key.encrypt(self.key, OAEP)  # type: ignore[union-attr,call-arg]
        r = await self.http.post(self.base + "/api/handshake/exchange",
                            json={"encrypted_session_key": b64(wrapped)})
        assert r.code == 200, (r.code, await treq.content(r))
        self.session_id = json.loads(await treq.content(r))["session_id"]

    def seal(self, value: Any, iv: bytes | None = None) -> bytes:
        assert self.key is not None
        iv = iv or os.urandom(12)
        ct = AESGCM(self.key).encrypt(iv, json.dumps(value).encode(), None)
        return json.dumps({"iv": b64(iv), "ciphertext": b64(ct)}).encode()

    def open(self, raw: bytes) -> Any:
        assert self.key is not None
        env = json.loads(raw)
        assert set(env) == {"iv", "ciphertext"}, env
        return json.loads(AESGCM(self.key).decrypt(base64.b64decode(env["iv"]),
                                                   base64.b64decode(env["ciphertext"]), None))

    def token(self) -> str:
        return jwt(self.config["private_key"], self.config["username"])

    async def raw(self, method: str, path: str, *, body: bytes | None = None,
                  headers: dict[str, str] | None = None, token: str | None = "mint",
                  session: bool = True) -> Response:
        """Sends exactly what it is told; ``token=None`` sends no Authorization."""
        if session and self.session_id is None:
            await self.handshake()
        h: dict[str, str] = {}
        if session and self.session_id:
            h["X-Session-ID"] = self.session_id
        if token == "mint":
            token = self.token()
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        if body is not None:
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        r = await self.http.request(method, self.base + path, data=body,
                                    headers={k: [v] for k, v in h.items()})
        raw = await treq.content(r)
        value: Any = None
        if r.code == 200 and raw and session:
            value = self.open(raw)
        elif raw:
            try:
                value = json.loads(raw)
            except ValueError:
                value = None
        return Response(r.code, r.headers, raw, value)

    async def call(self, method: str, path: str, body: Any = None, **kw: Any) -> Response:
        if self.session_id is None and kw.get("session", True):
            await self.handshake()
        data = self.seal(body) if body is not None else None
        return await self.raw(method, path, body=data, **kw)

    async def ok(self, method: str, path: str, body: Any = None) -> Any:
        r = await self.call(method, path, body)
        assert r.status in (200, 204), r
        return r.value
