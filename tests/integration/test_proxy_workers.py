"""``--proxy-workers``: extra processes share the TLS socket. Whichever process a
connection lands on, sessions, cookies, WebSockets, the API and session ends behave
the same; and the workers really serve traffic (they report it to the primary)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

import session_http
from independent_client import Client
from server_harness import admin_client, start_server
from tls_client import pinned_agent
from ws_client import ws_connect

pytestmark = pytest.mark.docker
PROBE = "sealskin/probe:latest"


@pytest_twisted.async_yield_fixture
async def with_workers(tmp_path: Path, run_label: str, probe_image: str) -> AsyncIterator[Any]:
    svc = await start_server(str(tmp_path / "data"), **{"server-id": run_label,
                                                        "proxy-workers": "2"})
    yield svc
    await svc.stop()


@pytest_twisted.ensureDeferred
async def test_sessions_work_whichever_process_answers(with_workers: Any,
                                                       docker_client: Any) -> None:
    svc = with_workers
    admin = admin_client(svc)
    app = await admin.ok("POST", "/api/admin/apps/installed", {
        "name": "Probe", "users": ["all"], "pull_policy": "never",
        "provider_config": {"image": PROBE, "port": 3000}})
    launched = await admin.ok("POST", "/api/launch/simple", {"application_id": app["id"]})
    sid = launched["session_id"]
    where = session_http.for_server(svc)
    cookie = await session_http.redeem(*where, launched["session_url"])
    for _ in range(30):  # a new TLS connection each time: the kernel spreads them
        code, _, page = await session_http.https(*where, "GET", f"/{sid}/",
                                                 {"Cookie": cookie})
        assert code == 200 and b"sealskin-probe" in page
    # the API over the TLS port, relayed by a worker when one takes the connection
    tls_admin = Client(f"https://127.0.0.1:{svc.session_port}", admin.config,
                       agent=pinned_agent(reactor, str(svc.tls_cert)))
    for _ in range(10):
        tls_admin.session_id = None
        assert (await tls_admin.ok("POST", "/api/admin/status", {}))["username"] == "admin"
    # single use holds across processes
    listed = await admin.ok("GET", "/api/sessions")
    url = listed[0]["session_url"]
    await session_http.redeem(*where, url)
    assert (await session_http.https(*where, "GET", url))[0] == 403
    ws = await ws_connect(reactor, f"wss://127.0.0.1:{svc.session_port}/{sid}/ws",
                          str(svc.tls_cert), headers={
                              "Cookie": cookie,
                              "Origin": f"https://127.0.0.1:{svc.session_port}"})
    assert await ws.send(b"over a worker or not") == (b"over a worker or not", False)
    deadline = time.monotonic() + 10
    while not any(p.touches for p in svc.workers.processes):
        assert time.monotonic() < deadline, "no worker reported any proxied traffic"
        await deferLater(reactor, 0.5, lambda: None)
    assert (await admin.call("DELETE", f"/api/sessions/{sid}")).status == 204
    assert await ws.close() in (1000, 1001, 1006)
    await deferLater(reactor, 0.5, lambda: None)  # the end reaches the workers
    for _ in range(10):
        code, _, _ = await session_http.https(*where, "GET", f"/{sid}/", {"Cookie": cookie})
        assert code in (401, 403, 404)
