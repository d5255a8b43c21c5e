"""App stores, available apps, icons, access rules and templates through the real server."""

from __future__ import annotations

import base64
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import pytest_twisted
import yaml
from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import Site

from independent_client import Client
from server_harness import admin_client, start_server, user_client

PUBLIC = Path("/work/shared/data/apps.yml")
STORES = "/api/admin/apps/stores"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(17)

SMALL_STORE = {
    "extension_groups": {"pics": ["jpg", "png"]},
    "apps": [
        {"id": "viewer", "name": "Viewer", "logo": "https://example.invalid/v.png",
         "provider": "docker",
         "provider_config": {"image": "sealskin/probe:latest", "port": 3000,
                             "autostart": True, "extensions": [["jpg", "png"], "gif"]}},
        {"id": "rogue", "name": "Rogue", "provider": "docker",
         "provider_config": {"image": "sealskin/probe:latest",
                             "docker_overrides": {"privileged": True,
                                                  "security_opt": ["seccomp=unconfined"]}}},
        {"id": "broken", "name": "Broken", "provider_config": {"port": 3000}},
    ],
}


@pytest_twisted.async_yield_fixture
async def svc(tmp_path: Path) -> AsyncIterator[Any]:
    store_file = tmp_path / "apps.yml"
    shutil.copy(PUBLIC, store_file)
    server = await start_server(str(tmp_path / "data"), **{"app-store-url": str(store_file),
                                                           "store-fetch-timeout-seconds": "2"})
    yield server
    await server.stop()


@pytest.fixture
def admin(svc: Any) -> Client:
    return admin_client(svc)


class StoreSite(Resource):
    """A tiny HTTP app store with ETags and one autostart script."""

    isLeaf = True

    def __init__(self, document: bytes) -> None:
        super().__init__()
        self.document = document
        self.etag = '"v1"'
        self.seen: list[tuple[bytes, str | None]] = []

    def render_GET(self, request: Any) -> bytes:
        sent = request.getHeader(b"if-none-match")
        self.seen.append((request.path, sent.decode() if sent else None))
        if request.path == b"/store/apps.yml":
            if sent == self.etag.encode():
                request.setResponseCode(304)
                return b""
            request.setHeader(b"etag", self.etag.encode())
            return self.document
        if request.path == b"/store/autostart/viewer":
            return b"#!/bin/bash\nviewer\n"
        request.setResponseCode(404)
        return b"no"


@pytest_twisted.async_yield_fixture
async def http_store() -> AsyncIterator[Any]:
    site_resource = StoreSite(yaml.safe_dump(SMALL_STORE).encode())
    port = reactor.listenTCP(0, Site(site_resource), interface="127.0.0.1")
    site_resource.url = f"http://127.0.0.1:{port.getHost().port}/store/apps.yml"
    site_resource.port = port
    yield site_resource
    if port.connected:
        await port.stopListening()


def available(name: str, url: str | None = None, refresh: bool = False) -> str:
    q = f"/api/admin/apps/available?store_name={quote(name)}"
    if url is not None:
        q += f"&url={quote(url, safe='')}"
    return q + ("&refresh=true" if refresh else "")


# -- stores ------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_default_store_at_first_start_then_crud(admin: Client, svc: Any) -> None:
    stores = await admin.ok("GET", STORES)
    assert stores == [{"name": "SealSkin Apps", "url": svc.cfg.app_store_url, "skipped": []}]
    local = f"file://{svc.cfg.app_store_url}"
    added = await admin.ok("POST", STORES, {"name": "Local Two", "url": local})
    assert added == {"name": "Local Two", "url": local, "skipped": []}
    r = await admin.call("POST", STORES, {"name": "Local Two", "url": "https://e.invalid/a"})
    assert r.status == 409 and "already exists" in r.detail
    r = await admin.call("DELETE", STORES + "/" + quote("Local Two"))
    assert r.status == 204
    assert (await admin.call("DELETE", STORES + "/" + quote("Local Two"))).status == 404
    # removing the default store does not bring it back (the first start is over)
    assert (await admin.call("DELETE", STORES + "/" + quote("SealSkin Apps"))).status == 204
    assert await admin.ok("GET", STORES) == []


@pytest.mark.parametrize("body", [
    {"name": "../x", "url": "https://e.invalid/a.yml"},
    {"name": "", "url": "https://e.invalid/a.yml"},
    {"name": "a" * 65, "url": "https://e.invalid/a.yml"},
    {"name": "ok", "url": "ftp://e.invalid/a.yml"},
    {"name": "ok", "url": "relative/path.yml"},
    {"name": "ok", "url": "https://e.invalid/a b"},
    {"name": "ok", "url": 5},
    {"name": "ok"},
])
@pytest_twisted.ensureDeferred
async def test_bad_store_names_and_urls_are_422(admin: Client, body: dict[str, Any]) -> None:
    r = await admin.call("POST", STORES, body)
    assert r.status == 422, r
    assert len(await admin.ok("GET", STORES)) == 1


@pytest_twisted.ensureDeferred
async def test_available_from_a_local_file_store(admin: Client, svc: Any) -> None:
    url = svc.cfg.app_store_url
    apps = await admin.ok("GET", available("SealSkin Apps", url))
    assert len(apps) == 106
    steam = next(a for a in apps if a["id"] == "steam")
    assert steam["provider_config"]["docker_overrides"] == {
        "security_opt": ["seccomp=unconfined", "apparmor=unconfined"]}
    assert all(isinstance(e, str) for a in apps for e in a["provider_config"]["extensions"])
    assert steam["provider_config"]["custom_autostart_script_b64"] is None
    cache = Path(svc.paths.internal) / "store_cache"
    assert sorted(p.suffix for p in cache.iterdir()) == [".meta", ".yml"]
    assert "SealSkin" not in " ".join(os.listdir(cache))  # hashed names only (W14)


@pytest_twisted.ensureDeferred
async def test_available_needs_a_known_store_and_its_own_url(admin: Client) -> None:
    assert (await admin.call("GET", available("Nope"))).status == 404
    r = await admin.call("GET", "/api/admin/apps/available")
    assert r.status == 422 and "store_name" in r.detail
    r = await admin.call("GET", available("SealSkin Apps", "http://169.254.169.254/"))
    assert r.status == 422  # only registered URLs are fetched (W13)


@pytest_twisted.ensureDeferred
async def test_http_store_with_etag_autostart_and_offline_cache(
        admin: Client, http_store: Any, svc: Any) -> None:
    await admin.ok("POST", STORES, {"name": "Web", "url": http_store.url})
    apps = await admin.ok("GET", available("Web", http_store.url))
    assert [a["id"] for a in apps] == ["viewer", "rogue"]  # 'broken' skipped, rest loads
    web = [st for st in await admin.ok("GET", STORES) if st["name"] == "Web"]
    [skipped] = web[0]["skipped"]  # the admin learns which entry went, and why
    assert "broken" in skipped and "image" in skipped, skipped
    viewer = apps[0]["provider_config"]
    assert viewer["extensions"] == ["jpg", "png", "gif"]
    assert base64.b64decode(viewer["custom_autostart_script_b64"]) == b"#!/bin/bash\nviewer\n"
    assert viewer["custom_autostart_wayland_script_b64"] is None  # a 404 caches empty
    # what a launch of the installed app writes into its home (5.8)
    cached = svc.app_stores.cached_script
    assert await cached("Web", "viewer", False) == b"#!/bin/bash\nviewer\n"
    assert await cached("Web", "viewer", True) is None
    assert await cached("Web", "../viewer", False) is None
    assert await cached("Other", "viewer", False) is None
    first = len(http_store.seen)
    again = await admin.ok("GET", available("Web", http_store.url))
    assert again == apps and len(http_store.seen) == first  # served from the cache
    refreshed = await admin.ok("GET", available("Web", http_store.url, refresh=True))
    assert refreshed == apps
    assert (b"/store/apps.yml", '"v1"') in http_store.seen[first:]  # If-None-Match -> 304
    await http_store.port.stopListening()
    offline = await admin.ok("GET", available("Web", http_store.url, refresh=True))
    assert offline == apps


@pytest_twisted.ensureDeferred
async def test_unreachable_store_is_a_clear_502_and_the_server_goes_on(
        admin: Client, http_store: Any, svc: Any) -> None:
    await http_store.port.stopListening()
    await admin.ok("POST", STORES, {"name": "Gone", "url": http_store.url})
    started = time.monotonic()
    r = await admin.call("GET", available("Gone"))
    assert r.status == 502 and "could not be reached" in r.detail
    assert "Gone" in r.detail and time.monotonic() - started < 5
    gone = Path(svc.cfg.app_store_url).with_name("gone.yml")
    gone.write_text("apps: []\n")
    await admin.ok("POST", STORES, {"name": "Missing file", "url": str(gone)})
    gone.unlink()  # a local store whose file went away after it was added
    r = await admin.call("GET", available("Missing file"))
    assert r.status == 502 and "cannot be read" in r.detail
    fifo = gone.with_name("pipe.yml")
    os.mkfifo(fifo)  # reading it would wait for a writer forever
    for url, said in (("/nonexistent/apps.yml", "No such file"), (str(fifo), "not a regular"),
                      (str(gone.parent), "not a regular")):
        r = await admin.call("POST", STORES, {"name": "Typo", "url": url})
        assert r.status == 422 and "is not a readable file" in r.detail and said in r.detail, r
    junk = gone.with_name("junk.yml")
    junk.write_text("apps: [unclosed")
    r = await admin.call("POST", STORES, {"name": "Junk", "url": str(junk)})
    assert r.status == 422 and "not valid YAML" in r.detail, r
    assert (await admin.ok("POST", "/api/admin/status", {}))["is_admin"] is True


@pytest_twisted.ensureDeferred
async def test_malformed_store_is_a_502(admin: Client, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("apps: []\n")
    await admin.ok("POST", STORES, {"name": "Bad", "url": f"file://{bad}"})
    bad.write_text("apps: [unclosed")  # broken after it was added
    r = await admin.call("GET", available("Bad"))
    assert r.status == 502 and "not valid YAML" in r.detail


@pytest_twisted.ensureDeferred
async def test_a_local_store_brings_its_autostart_scripts(admin: Client,
                                                          tmp_path: Path) -> None:
    folder = tmp_path / "local-store"
    (folder / "autostart").mkdir(parents=True)
    (folder / "apps.yml").write_text(yaml.safe_dump(SMALL_STORE))
    (folder / "autostart" / "viewer-wayland").write_bytes(b"#!/bin/sh\nwayland viewer\n")
    await admin.ok("POST", STORES, {"name": "Here", "url": str(folder / "apps.yml")})
    viewer = [a for a in await admin.ok("GET", available("Here"))
              if a["id"] == "viewer"][0]["provider_config"]
    assert viewer["custom_autostart_script_b64"] is None  # no file: as a remote 404
    assert base64.b64decode(viewer["custom_autostart_wayland_script_b64"]) == \
        b"#!/bin/sh\nwayland viewer\n"


# -- installing from a store ---------------------------------------------------------


def install_body(entry: dict[str, Any], **extra: Any) -> dict[str, Any]:
    cfg = {k: v for k, v in entry["provider_config"].items() if v is not None}
    return {"name": entry["name"], "logo": entry["logo"], "url": entry["url"],
            "source": "Web", "source_app_id": entry["id"], "users": ["all"], "groups": [],
            "app_template": "Default", "pull_policy": "never", "auto_update": False,
            "provider_config": cfg, **extra}


@pytest_twisted.ensureDeferred
async def test_install_from_store_reports_refused_overrides(
        admin: Client, http_store: Any) -> None:
    await admin.ok("POST", STORES, {"name": "Web", "url": http_store.url})
    apps = await admin.ok("GET", available("Web"))
    rogue = next(a for a in apps if a["id"] == "rogue")
    installed = await admin.ok("POST", "/api/admin/apps/installed", install_body(rogue))
    assert installed["refused_overrides"] == ["privileged"]
    viewer = next(a for a in apps if a["id"] == "viewer")
    installed = await admin.ok("POST", "/api/admin/apps/installed", install_body(viewer))
    assert installed["logo"] == "https://example.invalid/v.png"  # a URL is kept (R5)
    assert installed["refused_overrides"] == []


# -- access rules ------------------------------------------------------------------


async def new_user(admin: Client, name: str, group: str = "none") -> Client:
    made = await admin.ok("POST", "/api/admin/users", {
        "username": name, "public_key": None, "settings": {"group": group}})
    return user_client(admin, name, made["private_key"])


@pytest_twisted.ensureDeferred
async def test_applications_lists_exactly_what_the_caller_may_launch(admin: Client) -> None:
    await admin.ok("POST", "/api/admin/groups", {"name": "team", "settings": {}})
    alice = await new_user(admin, "alice")
    bob = await new_user(admin, "bob", group="team")
    carol = await new_user(admin, "carol")
    entry = {"name": "", "logo": "", "url": "", "id": "x",
             "provider_config": {"image": "sealskin/probe:latest"}}
    for name, users, groups in (("Everyone", ["all"], []), ("Alice only", ["alice"], []),
                                ("Team", [], ["team"]), ("All groups", [], ["all"]),
                                ("Nobody", [], [])):
        await admin.ok("POST", "/api/admin/apps/installed",
                       install_body({**entry, "name": name}, users=users, groups=groups))

    async def names(client: Client) -> list[str]:
        return [a["name"] for a in await client.ok("POST", "/api/applications", {})]

    assert await names(alice) == ["Alice only", "All groups", "Everyone"]
    assert await names(bob) == ["All groups", "Everyone", "Team"]
    assert await names(carol) == ["All groups", "Everyone"]
    assert len(await names(admin)) == 5


@pytest_twisted.ensureDeferred
async def test_unknown_users_and_groups_are_refused_but_a_removed_one_blocks_no_edit(
        admin: Client) -> None:
    entry = {"name": "Named", "logo": "", "url": "", "id": "n",
             "provider_config": {"image": "sealskin/probe:latest"}}
    r = await admin.call("POST", "/api/admin/apps/installed",
                         install_body(entry, users=["ghost"], groups=["nowhere"]))
    assert r.status == 422 and "user 'ghost'" in r.detail and "group 'nowhere'" in r.detail
    assert await admin.ok("POST", "/api/applications", {}) == []  # nothing was installed
    await new_user(admin, "dora")
    body = install_body(entry, users=["dora"])
    app = await admin.ok("POST", "/api/admin/apps/installed", body)
    await admin.ok("DELETE", "/api/admin/users/dora")
    edited = await admin.ok("PUT", f"/api/admin/apps/installed/{app['id']}",
                            {**body, "id": app["id"], "name": "Renamed"})
    assert edited["name"] == "Renamed" and edited["users"] == ["dora"]
    r = await admin.call("PUT", f"/api/admin/apps/installed/{app['id']}",
                         {**body, "id": app["id"], "users": ["dora", "ghost"]})
    assert r.status == 422 and "user 'ghost'" in r.detail and "dora" not in r.detail


# -- icons -------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_uploaded_logo_becomes_an_icon_and_url_logos_stay(admin: Client,
                                                                 svc: Any) -> None:
    body = install_body({"name": "Iconic", "logo": "https://example.invalid/i.png",
                         "url": "", "id": "i",
                         "provider_config": {"image": "sealskin/probe:latest"}})
    app = await admin.ok("POST", "/api/admin/apps/installed", body)
    app_id = app["id"]
    assert app["logo"] == "https://example.invalid/i.png"
    assert (await admin.call("GET", f"/api/app_icon/{app_id}")).detail == "Icon not found."
    put = {**body, "id": app_id, "logo": base64.b64encode(PNG).decode()}
    app = await admin.ok("PUT", f"/api/admin/apps/installed/{app_id}", put)
    assert app["logo"] == f"/api/app_icon/{app_id}"
    icon = await admin.ok("GET", f"/api/app_icon/{app_id}")
    assert base64.b64decode(icon["icon_data_b64"]) == PNG
    app = await admin.ok("PUT", f"/api/admin/apps/installed/{app_id}", {**put, "logo": ""})
    assert app["logo"] == f"/api/app_icon/{app_id}"  # absent logo keeps the old one
    r = await admin.call("PUT", f"/api/admin/apps/installed/{app_id}",
                         {**put, "logo": base64.b64encode(b"not an image").decode()})
    assert r.status == 422 and "PNG" in r.detail
    limit = svc.cfg.icon_max_bytes  # a logo at the limit fits in the request body
    biggest = PNG + bytes(limit - len(PNG))
    app = await admin.ok("PUT", f"/api/admin/apps/installed/{app_id}",
                         {**put, "logo": base64.b64encode(biggest).decode()})
    icon = await admin.ok("GET", f"/api/app_icon/{app_id}")
    assert base64.b64decode(icon["icon_data_b64"]) == biggest
    r = await admin.call("PUT", f"/api/admin/apps/installed/{app_id}",
                         {**put, "logo": base64.b64encode(biggest + bytes(4)).decode()})
    assert r.status == 413 and f"larger than {limit} bytes" in r.detail, r
    alice = await new_user(admin, "alice")
    assert (await alice.ok("GET", f"/api/app_icon/{app_id}"))["icon_data_b64"]
    assert os.listdir(Path(svc.paths.internal) / "app_icons") == [f"{app_id}.png"]
    await admin.ok("DELETE", f"/api/admin/apps/installed/{app_id}")
    assert os.listdir(Path(svc.paths.internal) / "app_icons") == []  # the icon went with it


@pytest.mark.parametrize("path, statuses", [
    ("/api/app_icon/..%2F..%2Fkeys%2Fserver_key", {404, 422}),
    ("/api/app_icon/..", {404, 422}),
    ("/api/app_icon/a.b", {422}),
    ("/api/app_icon/" + "a" * 65, {422}),
    ("/api/app_icon/%2e%2e", {404, 422}),
])
@pytest_twisted.ensureDeferred
async def test_icon_ids_are_validated(admin: Client, path: str, statuses: set[int]) -> None:
    r = await admin.call("GET", path)
    assert r.status in statuses, r
    assert r.value is None or "icon_data_b64" not in r.value


# -- templates ---------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_templates_default_names_and_encoded_delete(admin: Client) -> None:
    r = await admin.call("DELETE", "/api/admin/apps/templates/Default")
    assert r.status == 403
    for bad in ("../x", "", "a" * 65, "semi;colon"):
        r = await admin.call("POST", "/api/admin/apps/templates",
                             {"name": bad, "settings": {}})
        assert r.status == 422, bad
    await admin.ok("POST", "/api/admin/apps/templates",
                   {"name": "Kiosk Mode", "settings": {"HARDEN_DESKTOP": True}})
    names = [t["name"] for t in await admin.ok("GET", "/api/admin/apps/templates")]
    assert names == ["Default", "Kiosk Mode"]
    r = await admin.call("DELETE", "/api/admin/apps/templates/" + quote("Kiosk Mode"))
    assert r.status == 204
    r = await admin.call("DELETE", "/api/admin/apps/templates/" + quote("Kiosk Mode"))
    assert r.status == 404
    names = [t["name"] for t in await admin.ok("GET", "/api/admin/apps/templates")]
    assert names == ["Default"]


# -- CLI commands (sealskin stores / apps) -------------------------------------------


class CliClient:
    """The CLI's Client seam over the independent client.

    (sealskin.client.ApiClient.call only accepts JSON objects inside the envelope,
    while the list endpoints of 4.10 answer arrays; reported to the lead.)
    """

    def __init__(self, client: Client) -> None:
        self._client = client

    async def call(self, method: str, path: str, body: Any = None, *,
                   query: dict[str, str] | None = None) -> Any:
        from urllib.parse import urlencode

        from sealskin.client import ApiCallError

        r = await self._client.call(method, path + (f"?{urlencode(query)}" if query else ""),
                                    body)
        if r.status not in (200, 204):
            raise ApiCallError(r.status, str(r.detail))
        return r.value


def cli(svc: Any) -> Any:
    return CliClient(admin_client(svc))


def parsed(options: Any, *argv: str) -> tuple[str, Any]:
    opts = options()
    opts.parseOptions(list(argv))
    return opts.subCommand, opts.subOptions


@pytest_twisted.ensureDeferred
async def test_cli_stores_and_apps(svc: Any, http_store: Any, tmp_path: Path) -> None:
    from sealskin.cli.apps import AppsOptions, StoresOptions, run_apps, run_stores

    c = cli(svc)
    _, text = await run_stores(c, *parsed(StoresOptions, "add", "Web", http_store.url))
    assert text == "added Web"
    stores, _ = await run_stores(c, *parsed(StoresOptions, "list"))
    assert [s["name"] for s in stores] == ["SealSkin Apps", "Web"]
    apps, text = await run_apps(c, *parsed(AppsOptions, "available", "--store", "Web"))
    assert [a["id"] for a in apps] == ["viewer", "rogue"] and "viewer\tViewer" in text
    app, text = await run_apps(c, *parsed(AppsOptions, "install", "--from-store", "Web",
                                          "--app", "rogue", "--users", "all"))
    assert "refused docker_overrides: privileged" in text and app["users"] == ["all"]
    logo = tmp_path / "logo.png"
    logo.write_bytes(PNG)
    manual, _ = await run_apps(c, *parsed(AppsOptions, "install", "--name", "Manual",
                                          "--image", "sealskin/probe:latest",
                                          "--logo", str(logo), "--extensions", "txt,md"))
    assert manual["logo"] == f"/api/app_icon/{manual['id']}"
    installed, text = await run_apps(c, *parsed(AppsOptions, "installed"))
    assert sorted(a["name"] for a in installed) == ["Manual", "Rogue"]
    doc = tmp_path / "app.json"
    doc.write_text(json_dumps({**manual, "name": "Renamed"}))
    _, text = await run_apps(c, *parsed(AppsOptions, "update", manual["id"], "--file",
                                        str(doc)))
    assert text == "updated Renamed"
    _, text = await run_apps(c, *parsed(AppsOptions, "remove", manual["id"]))
    _, text = await run_stores(c, *parsed(StoresOptions, "remove", "SealSkin Apps"))
    assert text == "removed SealSkin Apps"


def test_cli_install_needs_exactly_one_source() -> None:
    from twisted.python import usage

    from sealskin.cli.apps import AppsOptions

    for argv in (["install"], ["install", "--file", "a.json", "--name", "x", "--image", "y"],
                 ["install", "--from-store", "Web"], ["update", "x"]):
        with pytest.raises(usage.UsageError):
            parsed(AppsOptions, *argv)


def json_dumps(value: Any) -> str:
    import json

    return json.dumps(value)


# -- the registry check (a local registry speaking the v2 manifest API) -------------


class FakeRegistry(Resource):
    isLeaf = True

    def __init__(self, arch: str) -> None:
        super().__init__()
        self.index = {"manifests": [
            {"digest": "sha256:other", "platform": {"os": "linux", "architecture": "s390x"}},
            {"digest": "sha256:mine", "platform": {"os": "linux", "architecture": arch}}]}

    def render_GET(self, request: Any) -> bytes:
        import json

        docs = {b"/v2/team/app/manifests/1": self.index,
                b"/v2/team/app/manifests/sha256:mine": {"config": {"digest": "sha256:" +
                                                                   "ab" * 32}}}
        if request.path not in docs:
            request.setResponseCode(404)
            return b"{}"
        return json.dumps(docs[request.path]).encode()


@pytest_twisted.ensureDeferred
async def test_registry_reads_the_config_digest_for_this_platform() -> None:
    import platform

    from sealskin.orchestration.fetch import Fetcher
    from sealskin.orchestration.registry import Registry, RegistryError, parse_reference

    assert parse_reference("steam") == ("registry-1.docker.io", "library/steam", "latest")
    assert parse_reference("lscr.io/linuxserver/altus:1.2") == (
        "lscr.io", "linuxserver/altus", "1.2")
    assert parse_reference("localhost:5000/a/b@sha256:x") == ("localhost:5000", "a/b",
                                                              "sha256:x")
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    port = reactor.listenTCP(0, Site(FakeRegistry(arch)), interface="127.0.0.1")
    try:
        registry = Registry(Fetcher(reactor, timeout_seconds=5, max_bytes=1 << 20),
                            timeout_seconds=5)
        host = f"127.0.0.1:{port.getHost().port}"
        assert await registry.latest_id(f"{host}/team/app:1") == "sha256:" + "ab" * 32
        with pytest.raises(RegistryError):
            await registry.latest_id(f"{host}/team/missing:1")
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_an_unknown_template_is_refused_on_install(server: Any) -> None:
    from server_harness import admin_client

    admin = admin_client(server)
    r = await admin.call("POST", "/api/admin/apps/installed", {
        "name": "T", "app_template": "NoSuch",
        "provider_config": {"image": "sealskin/probe:latest", "port": 3000}})
    assert r.status == 422 and "NoSuch" in r.detail


@pytest_twisted.ensureDeferred
async def test_installed_app_fields_are_checked_and_an_unknown_id_is_404(server: Any) -> None:
    from server_harness import admin_client

    admin = admin_client(server)
    good = {"name": "T", "provider_config": {"image": "sealskin/probe:latest", "port": 3000}}
    for bad, said in (({"name": "two\nlines"}, "'name'"),
                      ({"provider_config": {**good["provider_config"],
                                            "custom_autostart_script_b64": "#!/bin/sh"}},
                       "custom_autostart_script_b64"),
                      ({"provider_config": {**good["provider_config"],
                                            "env": [{"name": "A", "value": {"x": 1}}]}},
                       "'value'")):
        r = await admin.call("POST", "/api/admin/apps/installed", {**good, **bad})
        assert r.status == 422 and said in r.detail, (bad, r)
    assert await admin.ok("GET", "/api/admin/apps/installed") == []
    r = await admin.call("PUT", "/api/admin/apps/installed/nosuchid", {"id": "other"})
    assert r.status == 404 and "nosuchid" in r.detail, r
