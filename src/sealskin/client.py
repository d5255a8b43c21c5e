"""A small client for the encrypted API, for the CLI and the tests.

It speaks the protocol of the published extension: handshake (upstream-protocol 2.1,
2.2), a fresh JWT per call (3.1), envelope both ways (2.3, 2.4), and one re-handshake
and resend after a 400 that says the crypto session is gone (2.6).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, NoReturn
from urllib.parse import quote, urlencode

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.ssl import CertificateOptions
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IPolicyForHTTPS
from zope.interface import implementer

from sealskin.crypto import HandshakeError, envelope, handshake, keys, tokens
from sealskin.httpbody import BytesBody

_FIELDS = ("server_endpoint", "api_port", "session_port", "username", "private_key",
           "server_public_key")


def segment(value: str) -> str:
    """``value`` as one path segment: ``/``, ``%``, ``?`` and the like percent-encoded."""
    return quote(value, safe="")


# The 400s that mean "our crypto session is gone": the extension re-handshakes after
# any 400 (upstream-protocol 2.6); we do only after these, so a refusal is not sent twice.
REHANDSHAKE = frozenset({envelope.UNKNOWN_SESSION, envelope.DECRYPT_FAILED})


class NoAnswer(Exception):
    """The server took longer than the client's timeout to answer."""


class ApiCallError(Exception):
    """A non-2xx answer; ``detail`` is the server's ``{"detail"}`` or the raw body text."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


def _port(name: str, value: object) -> int:
    # upstream-protocol 3.5: ports may be numbers or strings.
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"Client config: {name} must be a port number.")
    try:
        port = int(value)
    except ValueError:
        raise ValueError(f"Client config: {name} must be a port number.") from None
    if not 0 < port < 65536:
        raise ValueError(f"Client config: {name} must be between 1 and 65535.")
    return port


def _text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"Client config: {name} must be a non-empty string.")
    return value


@attrs.frozen
class ClientConfig:
    """The client configuration document, ``admin.json`` (upstream-protocol 3.5)."""

    server_endpoint: str
    api_port: int
    session_port: int
    username: str
    private_key: str
    server_public_key: str

    @classmethod
    def load(cls, path: str) -> ClientConfig:
        """Reads a JSON file (blocking); raises ValueError with a clear message."""
        try:
            with open(path, encoding="utf-8") as f:
                document = json.load(f)
        except OSError as e:
            raise ValueError(f"Cannot read client config {path}: {e.strerror}.") from None
        except ValueError:
            raise ValueError(f"Client config {path} is not valid JSON.") from None
        return cls.from_dict(document)

    @classmethod
    def from_dict(cls, document: object) -> ClientConfig:
        """Validates all six keys, including that both keys parse as RSA PEM."""
        if not isinstance(document, dict):
            raise ValueError("Client config must be a JSON object.")
        missing = [name for name in _FIELDS if name not in document]
        if missing:
            raise ValueError(f"Client config is missing: {', '.join(missing)}.")
        config = cls(
            server_endpoint=_text("server_endpoint", document["server_endpoint"]),
            api_port=_port("api_port", document["api_port"]),
            session_port=_port("session_port", document["session_port"]),
            username=_text("username", document["username"]),
            private_key=_text("private_key", document["private_key"]),
            server_public_key=_text("server_public_key", document["server_public_key"]),
        )
        try:
            keys.load_private_pem(config.private_key.encode("utf-8"))
            keys.load_public_pem(config.server_public_key)
        except ValueError as e:
            raise ValueError(f"Client config: {e}") from None
        return config


@implementer(IPolicyForHTTPS)
class _TrustAnyCertificate:
    """For self-signed session ports only (``tls_verify=False``)."""

    def creatorForNetloc(self, hostname: bytes, port: int) -> CertificateOptions:
        return CertificateOptions(verify=False)


class ApiClient:
    """Calls the encrypted API as a principal; handshakes lazily and when the server
    forgot the crypto session."""

    def __init__(
        self,
        reactor: IReactorTime,
        config: ClientConfig,
        *,
        base_url: str | None = None,
        tls_verify: bool = False,
        agent: IAgent | None = None,
        timeout_seconds: float = 0,
    ) -> None:
        """``timeout_seconds``: how long each request may take, answer included (0: no
        limit); past it the request is abandoned with :class:`NoAnswer`."""
        self._reactor = reactor
        self.reactor = reactor
        self._config = config
        self.config = config
        self._key = keys.load_private_pem(config.private_key.encode("utf-8"))
        self._server_public = keys.load_public_pem(config.server_public_key)
        self.base_url = (base_url or _default_base_url(config)).rstrip("/")
        if agent is None:
            agent = _agent(reactor, tls_verify)
        self._agent = agent  # Agent itself: treq's URL handling refuses IPv6 literals
        self.session_id: str | None = None
        self.session_key: bytes | None = None
        self.timeout_seconds = timeout_seconds

    async def handshake(self) -> str:
        """Makes a new crypto session and returns its id (earlier ones stay valid)."""
        status, _, body = await self.raw("POST", "/api/handshake/initiate")
        handshake.verify_initiate(self._server_public, _json_object(status, body))
        key = os.urandom(handshake.SESSION_KEY_BYTES)
        wrapped = {"encrypted_session_key": handshake.wrap_session_key(self._server_public, key)}
        status, _, body = await self.raw(
            "POST", "/api/handshake/exchange", body=envelope.dumps_compact(wrapped),
            headers={"Content-Type": "application/json"},
        )
        session_id = _json_object(status, body).get("session_id")
        if not isinstance(session_id, str):
            raise HandshakeError("The server's exchange answer has no session id.")
        self.session_id, self.session_key = session_id, key
        return session_id

    async def call(
        self,
        method: str,
        path: str,
        body: Mapping[str, object] | None = None,
        *,
        query: Mapping[str, str] | None = None,
    ) -> object:
        """One API call: the decrypted answer, or None for an empty one (204).

        Raises ApiCallError for non-2xx answers, EnvelopeError for an undecryptable 2xx.
        """
        if self.session_key is None:
            await self.handshake()
        key, status, data = await self._send(method, path, body, query)
        if status == 400 and _detail(data) in REHANDSHAKE:  # upstream 2.6: once
            await self.handshake()
            key, status, data = await self._send(method, path, body, query)
        if not 200 <= status < 300:
            raise ApiCallError(status, _detail(data))
        if status == 204 or not data:
            return None
        # any JSON value: list endpoints answer arrays inside the envelope
        return json.loads(envelope.open_envelope(key, _parse(data))[1])

    async def _send(
        self,
        method: str,
        path: str,
        body: Mapping[str, object] | None,
        query: Mapping[str, str] | None,
    ) -> tuple[bytes, int, bytes]:
        key = self.session_key
        assert key is not None, "handshake first"
        headers = self.auth_headers()
        payload = None
        if body is not None:
            payload = envelope.seal_json(key, body)
            headers["Content-Type"] = "application/json"
        status, _, data = await self.raw(method, path, body=payload, headers=headers, query=query)
        return key, status, data

    def auth_headers(self) -> dict[str, str]:
        """``Authorization`` with a freshly minted token, and ``X-Session-ID`` if any."""
        token = tokens.mint(self._key, self._config.username, now=self._reactor.seconds())
        headers = {"Authorization": f"Bearer {token}"}
        if self.session_id is not None:
            headers["X-Session-ID"] = self.session_id
        return headers

    async def raw(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
    ) -> tuple[int, dict[str, list[str]], bytes]:
        """Sends exactly what it is given: ``(status, headers, body)``, for hostile-input tests."""
        url = self.base_url + path + (f"?{urlencode(query)}" if query else "")
        sent = Headers()
        for name, value in (headers or {}).items():
            sent.addRawHeader(name, value)
        producer = None if body is None else BytesBody(body)
        exchange = Deferred.fromCoroutine(self._exchange(method, url, producer, sent))
        if self.timeout_seconds:
            _ = exchange.addTimeout(self.timeout_seconds, self._reactor,
                                    onTimeoutCancel=self._no_answer)
        return await exchange

    def _no_answer(self, result: object, timeout: float) -> NoReturn:
        """What a request cut off by the timeout ends with (whatever the cut-off raised)."""
        raise NoAnswer(f"no answer from {self.base_url} within {timeout:g} seconds")

    async def _exchange(self, method: str, url: str, producer: BytesBody | None,
                        sent: Headers) -> tuple[int, dict[str, list[str]], bytes]:
        response = await self._agent.request(method.encode("ascii"), url.encode("ascii"), sent,
                                             producer)
        data: bytes = await readBody(response)
        found = {
            name.decode("latin-1").lower(): [v.decode("latin-1") for v in values]
            for name, values in response.headers.getAllRawHeaders()
        }
        return response.code, found, data


def _agent(reactor: IReactorTime, tls_verify: bool) -> IAgent:
    # Twisted leaves these constructors unannotated, hence the ignores.
    policy: IPolicyForHTTPS = _TrustAnyCertificate()
    if tls_verify:
        policy = BrowserLikePolicyForHTTPS()
    pool = HTTPConnectionPool(reactor, persistent=False)
    return Agent(reactor, contextFactory=policy, pool=pool)


def _default_base_url(config: ClientConfig) -> str:
    host = config.server_endpoint
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal
    return f"http://{host}:{config.api_port}"


def _parse(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None  # open_json then refuses it with EnvelopeError


def _json_object(status: int, data: bytes) -> dict[str, object]:
    if status != 200:
        raise ApiCallError(status, _detail(data))
    parsed = _parse(data)
    if not isinstance(parsed, dict):
        raise HandshakeError("The server's handshake answer is not a JSON object.")
    return parsed


def _detail(data: bytes) -> str:
    parsed = _parse(data)
    if isinstance(parsed, dict) and "detail" in parsed:
        detail = parsed["detail"]
        return detail if isinstance(detail, str) else json.dumps(detail)
    return data.decode("utf-8", errors="replace")
