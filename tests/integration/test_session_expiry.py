"""Idle sessions and sessions past their maximum lifetime are stopped; unused URL
tokens expire. Real engine, real clock (short limits)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

import session_http
from server_harness import admin_client, start_server

pytestmark = pytest.mark.docker
PROBE = "sealskin/probe:latest"



async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


async def launch(svc: Any) -> tuple[str, str]:
    admin = admin_client(svc)
    app = await admin.ok("POST", "/api/admin/apps/installed", {
        "name": "Probe", "users": ["all"], "pull_policy": "never",
        "provider_config": {"image": PROBE, "port": 3000}})
    made = await admin.ok("POST", "/api/launch/simple", {"application_id": app["id"]})
    return made["session_id"], made["session_url"]


@pytest_twisted.async_yield_fixture
async def short_lived(tmp_path: Path, run_label: str, probe_image: str) -> AsyncIterator[Any]:
    svc = await start_server(str(tmp_path / "data"), **{
        "server-id": run_label + "-x", "session-idle-seconds": "2",
        "access-token-ttl-seconds": "1"})
    yield svc
    await svc.stop()


@pytest_twisted.ensureDeferred
async def test_idle_session_is_stopped_but_traffic_keeps_it(short_lived: Any,
                                                            docker_client: Any) -> None:
    svc = short_lived
    sid, url = await launch(svc)
    cookie = await session_http.redeem(*session_http.for_server(svc), url)
    for _ in range(3):  # traffic every second keeps a 2 s idle limit from firing
        await sleep(1)
        code, _, _ = await session_http.https(*session_http.for_server(svc), "GET",
                                              f"/{sid}/", {"Cookie": cookie})
        assert code == 200
        await svc.sessions.reap()
        assert svc.sessions.route(sid) is not None
    await sleep(2.5)
    await svc.sessions.reap()
    assert svc.sessions.route(sid) is None
    assert docker_client.containers.list(all=True, filters={
        "label": f"org.sealskin.session={sid}"}) == []
    assert await svc.store.session(sid) is None


@pytest_twisted.ensureDeferred
async def test_unused_url_token_expires(short_lived: Any) -> None:
    svc = short_lived
    sid, url = await launch(svc)
    await sleep(1.5)
    code, _, _ = await session_http.https(*session_http.for_server(svc), "GET", url)
    assert code == 403
    await svc.sessions.stop(None, sid)


@pytest_twisted.ensureDeferred
async def test_session_past_its_lifetime_is_stopped(tmp_path: Path, run_label: str,
                                                   probe_image: str) -> None:
    svc = await start_server(str(tmp_path / "d"), **{
        "server-id": run_label + "-y", "session-max-seconds": "1"})
    try:
        sid, _ = await launch(svc)
        await sleep(1.5)
        await svc.sessions.reap()
        assert svc.sessions.route(sid) is None
    finally:
        await svc.stop()
