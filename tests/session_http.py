"""HTTPS requests to the session port, trusting the server's own certificate."""

from __future__ import annotations

import io
from typing import Any

from twisted.internet import reactor
from twisted.web.client import FileBodyProducer, readBody
from twisted.web.http_headers import Headers

from tls_client import pinned_agent


async def https(port: int, cert: str, method: str, path: str,
                headers: dict[str, str] | None = None,
                body: bytes | None = None) -> tuple[int, Headers, bytes]:
    agent = pinned_agent(reactor, cert)
    producer = FileBodyProducer(io.BytesIO(body)) if body is not None else None
    h = Headers({k.encode(): [v.encode()] for k, v in (headers or {}).items()})
    r = await agent.request(method.encode(), f"https://127.0.0.1:{port}{path}".encode(), h,
                            producer)
    return r.code, r.headers, await readBody(r)


async def redeem(port: int, cert: str, url: str) -> str:
    """Follows a single-use session URL; returns the ``Cookie`` header value to send."""
    code, headers, _ = await https(port, cert, "GET", url)
    assert code == 303, code
    return str(headers.getRawHeaders(b"set-cookie")[0].decode().split(";", 1)[0])


def for_server(svc: Any) -> tuple[int, str]:
    return svc.session_port, str(svc.tls_cert)
