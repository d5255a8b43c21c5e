"""Sessions end to end on the real Docker Engine with the locally built probe image:
launch -> single-use URL -> cookie -> HTTP -> WebSocket -> stop -> container gone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import docker
import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.web.http_headers import Headers

from server_harness import admin_client, start_server
from independent_client import Client
import session_http
from ws_client import ws_connect

pytestmark = pytest.mark.docker
PROBE = "sealskin/probe:latest"




async def install_probe(admin: Client, **provider: Any) -> str:
    app = await admin.ok("POST", "/api/admin/apps/installed", {
        "name": "Probe", "users": ["all"], "groups": [], "home_directories": True,
        "app_template": "Default", "pull_policy": "never",
        "provider_config": {"image": PROBE, "port": 3000, "url_support": True, **provider}})
    return str(app["id"])


async def https(svc: Any, method: str, path: str, headers: dict[str, str] | None = None,
                body: bytes | None = None) -> tuple[int, Headers, bytes]:
    return await session_http.https(*session_http.for_server(svc), method, path, headers, body)


async def open_session(svc: Any, url: str) -> str:
    return await session_http.redeem(*session_http.for_server(svc), url)


def containers(client: docker.DockerClient, session_id: str) -> list[Any]:
    return client.containers.list(all=True, filters={
        "label": f"org.sealskin.session={session_id}"})


@pytest_twisted.ensureDeferred
async def test_launch_proxy_websocket_stop(live: Any, docker_client: Any) -> None:
    admin = admin_client(live)
    app_id = await install_probe(admin)
    launched = await admin.ok("POST", "/api/launch/simple", {"application_id": app_id})
    sid, url = launched["session_id"], launched["session_url"]
    assert url.startswith(f"/{sid}/?access_token=")
    code, headers, _ = await https(live, "GET", url)
    assert code == 303
    assert headers.getRawHeaders(b"location")[0].decode().endswith(f"/{sid}/")
    set_cookie = headers.getRawHeaders(b"set-cookie")[0].decode()
    assert set_cookie.startswith(f"sealskin_session_token_{sid}=")
    for attr in ("HttpOnly", "Secure", "SameSite=Lax", f"Path=/{sid}/"):
        assert attr in set_cookie, set_cookie
    cookie = set_cookie.split(";", 1)[0]
    assert (await https(live, "GET", url))[0] == 403  # single use
    code, _, page = await https(live, "GET", f"/{sid}/", {"Cookie": cookie})
    assert code == 200 and b"sealskin-probe" in page
    code, _, raw = await https(live, "GET", f"/{sid}/headers", {
        "Cookie": cookie + "; other=1", "X-Forwarded-For": "6.6.6.6"})
    seen = json.loads(raw)
    assert seen["authorization"].startswith("Basic ")
    assert seen["x-forwarded-for"] == "127.0.0.1" and seen["x-forwarded-proto"] == "https"
    assert "sealskin_session_token" not in str(seen.get("cookie", ""))
    code, _, raw = await https(live, "POST", f"/{sid}/sha256", {"Cookie": cookie},
                               body=b"x" * 1_000_000)
    assert json.loads(raw)["length"] == 1_000_000
    ws = await ws_connect(reactor, f"wss://127.0.0.1:{live.session_port}/{sid}/ws",
                          str(live.tls_cert), protocols=["chat", "other"], headers={
                              "Cookie": cookie,
                              "Origin": f"https://127.0.0.1:{live.session_port}"})
    assert ws.subprotocol == "chat"
    assert await ws.send(b"hello") == (b"hello", False)
    assert await ws.send(bytes(range(256)) * 100, binary=True) == (
        bytes(range(256)) * 100, True)
    listed = await admin.ok("GET", "/api/sessions")
    assert [s["session_id"] for s in listed] == [sid]
    assert listed[0]["session_url"] != url  # a fresh token each time
    assert (await admin.call("DELETE", f"/api/sessions/{sid}")).status == 204
    assert await ws.close() in (1001, 1008, 1000, 1006)
    assert containers(docker_client, sid) == []
    code, _, _ = await https(live, "GET", f"/{sid}/", {"Cookie": cookie})
    assert code in (401, 403, 404)


@pytest_twisted.ensureDeferred
async def test_cookie_of_one_session_is_refused_on_another(live: Any) -> None:
    admin = admin_client(live)
    app_id = await install_probe(admin)
    a = await admin.ok("POST", "/api/launch/simple", {"application_id": app_id})
    b = await admin.ok("POST", "/api/launch/simple", {"application_id": app_id})
    cookie_a = await open_session(live, a["session_url"])
    value = cookie_a.split("=", 1)[1]
    forged = f"sealskin_session_token_{b['session_id']}={value}"
    for header in (cookie_a, forged):
        code, _, _ = await https(live, "GET", f"/{b['session_id']}/", {"Cookie": header})
        assert code in (401, 403), (header, code)
    assert (await https(live, "GET", f"/{b['session_id']}/"))[0] == 401
    for s in (a, b):
        await admin.call("DELETE", f"/api/sessions/{s['session_id']}")


@pytest_twisted.ensureDeferred
async def test_session_limit_holds_under_concurrent_launches(live: Any) -> None:
    admin = admin_client(live)
    app_id = await install_probe(admin)
    made = await admin.ok("POST", "/api/admin/users", {
        "username": "limited", "settings": {"session_limit": 2}})
    user = Client(admin.base, {**admin.config, "username": "limited",
                               "private_key": made["private_key"]})
    await user.handshake()
    results = await DeferredList([
        pytest_twisted.ensureDeferred(user.call("POST", "/api/launch/simple",
                                                {"application_id": app_id}))
        if False else _call(user, app_id) for _ in range(10)])
    statuses = sorted(r[1].status for r in results)
    assert statuses == [200, 200] + [429] * 8, statuses
    for s in await user.ok("GET", "/api/sessions"):
        await user.call("DELETE", f"/api/sessions/{s['session_id']}")


def _call(client: Client, app_id: str) -> Any:
    from twisted.internet.defer import Deferred
    return Deferred.fromCoroutine(client.call("POST", "/api/launch/simple",
                                              {"application_id": app_id}))


@pytest_twisted.ensureDeferred
async def test_readiness_timeout_removes_everything(tmp_path: Path, run_label: str,
                                                   probe_image: str, docker_client: Any) -> None:
    svc = await start_server(str(tmp_path / "d2"), **{
        "server-id": run_label + "-t", "launch-timeout-seconds": "3"})
    try:
        admin = admin_client(svc)
        app_id = await install_probe(admin, port=3999)  # nothing listens there
        r = await admin.call("POST", "/api/launch/simple", {"application_id": app_id})
        assert r.status == 504 and "ready" in r.detail
        left = docker_client.containers.list(all=True, filters={
            "label": f"org.sealskin.server={run_label}-t"})
        assert left == []
        assert await svc.store.sessions() == []
        assert await admin.ok("GET", "/api/sessions") == []
    finally:
        await svc.stop()


@pytest_twisted.ensureDeferred
async def test_cli_installs_launches_lists_and_stops(live: Any, tmp_path: Path,
                                                     capsys: Any) -> None:
    from twisted.python import usage

    from sealskin.cli.main import Options, run

    doc = json.loads(Path(live.paths.admin_json).read_text())
    doc["api_port"] = live.api_port
    config = tmp_path / "admin.json"
    config.write_text(json.dumps(doc))

    async def cli(*argv: str) -> Any:
        opts = Options()
        opts.parseOptions(["--config", str(config), "--json", *argv])
        return await run(reactor, opts)

    app = await cli("apps", "install", "--name", "CLI Probe", "--image", PROBE, "--users", "all",
                    "--pull-policy", "never")
    with pytest.raises(usage.UsageError, match="keeps no home directories"):
        await cli("launch", "cli probe", "--home", "work")  # not silently ephemeral
    launched = await cli("launch", "cli probe")
    assert launched["url"].startswith(f"https://127.0.0.1:{live.session_port}/"
                                      f"{launched['session_id']}/?access_token=")
    cookie = await open_session(live, launched["session_url"])
    code, _, page = await https(live, "GET", f"/{launched['session_id']}/", {"Cookie": cookie})
    assert code == 200 and b"sealskin-probe" in page
    listed = await cli("sessions", "list")
    assert [s["session_id"] for s in listed] == [launched["session_id"]]
    assert listed[0]["url"].startswith(f"https://127.0.0.1:{live.session_port}/"
                                       f"{launched['session_id']}/")  # absolute, as launch's
    await cli("sessions", "stop", launched["session_id"])
    assert await cli("sessions", "list") == []
    await cli("apps", "remove", app["id"])
    capsys.readouterr()


@pytest_twisted.ensureDeferred
async def test_deactivating_or_removing_a_user_ends_their_sessions(live: Any,
                                                                   docker_client: Any) -> None:
    admin = admin_client(live)
    app_id = await install_probe(admin)
    await admin.ok("POST", "/api/admin/groups", {"name": "closing", "settings": {}})
    for change in ("deactivate", "remove", "group"):
        settings = {"group": "closing"} if change == "group" else {}
        made = await admin.ok("POST", "/api/admin/users", {"username": f"u{change}",
                                                          "settings": settings})
        user = Client(admin.base, {**admin.config, "username": f"u{change}",
                                   "private_key": made["private_key"]})
        launched = await user.ok("POST", "/api/launch/simple", {"application_id": app_id})
        sid = launched["session_id"]
        cookie = await open_session(live, launched["session_url"])
        if change == "deactivate":
            await admin.ok("PUT", f"/api/admin/users/u{change}", {"settings": {"active": False}})
        elif change == "group":  # a deactivated group deactivates its members
            await admin.ok("PUT", "/api/admin/groups/closing", {"settings": {"active": False}})
        else:
            assert (await admin.call("DELETE", f"/api/admin/users/u{change}")).status == 204
        assert containers(docker_client, sid) == []
        code, _, _ = await https(live, "GET", f"/{sid}/", {"Cookie": cookie})
        assert code in (401, 403, 404)


@pytest_twisted.ensureDeferred
async def test_a_home_in_use_by_a_session_cannot_be_removed(live: Any) -> None:
    admin = admin_client(live)
    app_id = await install_probe(admin)
    await admin.ok("POST", "/api/homedirs", {"home_name": "busy"})
    launched = await admin.ok("POST", "/api/launch/simple",
                              {"application_id": app_id, "home_name": "busy"})
    home = Path(live.paths.homes) / "admin" / "busy"
    r = await admin.call("DELETE", "/api/homedirs/busy")
    assert r.status == 409 and "in use" in r.detail
    assert home.is_dir()  # still mounted, still there
    await admin.ok("DELETE", f"/api/sessions/{launched['session_id']}")
    assert (await admin.call("DELETE", "/api/homedirs/busy")).status == 204
    assert not home.exists()
    # 'cleanroom' in any case is the ephemeral home, never a stored one
    launched = await admin.ok("POST", "/api/launch/simple",
                              {"application_id": app_id, "home_name": "CleanRoom"})
    assert (Path(live.paths.ephemeral) / launched["session_id"]).is_dir()
    assert not (Path(live.paths.homes) / "admin" / "CleanRoom").exists()
    await admin.ok("DELETE", f"/api/sessions/{launched['session_id']}")


@pytest_twisted.ensureDeferred
async def test_a_group_deactivated_during_a_launch_gets_no_session(live: Any,
                                                                   docker_client: Any) -> None:
    from twisted.internet.task import deferLater

    admin = admin_client(live)
    app_id = await install_probe(admin)
    await admin.ok("POST", "/api/admin/groups", {"name": "racing", "settings": {}})
    made = await admin.ok("POST", "/api/admin/users", {"username": "racer",
                                                      "settings": {"group": "racing"}})
    racer = Client(admin.base, {**admin.config, "username": "racer",
                                "private_key": made["private_key"]})
    await racer.handshake()
    launching = Deferred.fromCoroutine(
        racer.call("POST", "/api/launch/simple", {"application_id": app_id}))

    def racers() -> list[Any]:
        return docker_client.containers.list(all=True,
                                             filters={"label": "org.sealskin.user=racer"})
    for _ in range(200):  # until its container exists: the launch is under way
        if racers() or launching.called:
            break
        await deferLater(reactor, 0.05, lambda: None)
    assert not launching.called, "the launch finished before the group could change"
    await admin.ok("PUT", "/api/admin/groups/racing", {"settings": {"active": False}})
    answer = await launching
    assert answer.status == 403, answer
    assert racers() == []
    assert [s for g in await admin.ok("GET", "/api/admin/sessions") for s in g["sessions"]
            if g["username"] == "racer"] == []
