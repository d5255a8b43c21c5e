"""Request heads past --max-header-bytes get a JSON 414/431 (and garbage a JSON 400) at once
on both ports, and the connection closes; Twisted alone left such connections hanging."""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from server_harness import start_server

LIMIT = 4096


def _exchange(port: int, tls: bool, head: bytes) -> bytes:
    """Sends ``head`` and reads until the server closes (a 5 s cap: a hang fails the test)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        sock = ctx.wrap_socket(sock)
    with sock:
        sock.sendall(head)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@pytest_twisted.async_yield_fixture
async def svc(tmp_path: Path) -> AsyncIterator[Any]:
    server = await start_server(str(tmp_path / "data"), **{"max-header-bytes": str(LIMIT)})
    yield server
    await server.stop()


SID = "0b0e6d0f-4c1a-4c55-9f3a-2f4b9d1e7a11"
CASES = [
    (f"GET /{SID}/{'a' * (LIMIT + 10)} HTTP/1.1\r\nHost: x\r\n\r\n", 414,
     "The request target is too long."),
    (f"GET /api/x HTTP/1.1\r\nHost: x\r\nX-Big: {'b' * (LIMIT + 10)}\r\n\r\n", 431,
     "The request headers are too large."),
    ("GET /api/x HTTP/1.1\r\nHost: x\r\n" + "".join(f"X-{i}: {'c' * 500}\r\n" for i in range(12))
     + "\r\n", 431, "The request headers are too large."),
    ("NONSENSE\r\n\r\n", 400, "Malformed HTTP request."),
]


@pytest.mark.parametrize("head,status,detail", CASES)
@pytest.mark.parametrize("port_kind", ["api", "tls"])
@pytest_twisted.ensureDeferred
async def test_oversized_or_malformed_heads_get_json_and_a_closed_connection(
        svc: Any, port_kind: str, head: str, status: int, detail: str) -> None:
    port = svc.api_port if port_kind == "api" else svc.session_port
    answer = await deferToThread(_exchange, port, port_kind == "tls", head.encode())
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.split()[1] == str(status).encode(), answer[:200]
    assert b"connection: close" in rest.lower()
    assert json.loads(rest.split(b"\r\n\r\n", 1)[1]) == {"detail": detail}


@pytest_twisted.ensureDeferred
async def test_a_head_within_the_limit_is_served(svc: Any) -> None:
    head = f"GET /api/{'a' * (LIMIT - 200)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answer = await deferToThread(_exchange, svc.api_port, False, head.encode())
    assert answer.startswith(b"HTTP/1.1 404 "), answer[:100]  # routed: the API's own 404
