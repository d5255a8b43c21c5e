"""``sealskin stores ...`` and ``sealskin apps ...`` (upstream-protocol 4.10).

    sealskin stores list | add NAME URL | remove NAME
    sealskin apps available [--store NAME] [--refresh]
    sealskin apps installed
    sealskin apps install --from-store STORE --app ID [--users all] [--groups G,...]
    sealskin apps install --file app.json
    sealskin apps install --name N --image I [--port P] [--users all] ...
    sealskin apps update ID --file app.json
    sealskin apps remove ID

``main.py`` mounts :class:`StoresOptions` and :class:`AppsOptions` and calls
:func:`run_stores` / :func:`run_apps` with the chosen verb and its options.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Mapping
from typing import Any, Protocol

from twisted.python import usage

from sealskin.cli.files import read_regular_file
from sealskin.cli.options import Empty, Interspersed, Noun
from sealskin.client import segment

INSTALLED = "/api/admin/apps/installed"
STORES = "/api/admin/apps/stores"


class Client(Protocol):
    async def call(self, method: str, path: str, body: Mapping[str, object] | None = None, *,
                   query: Mapping[str, str] | None = None) -> object: ...


def _args(given: tuple[str, ...], *names: str) -> dict[str, str]:
    if len(given) != len(names):
        raise usage.UsageError("Expected " + " ".join(n.upper() for n in names) + ".")
    return dict(zip(names, given))


class _OneArg(Interspersed):
    synopsis = "NAME"

    def parseArgs(self, *args: str) -> None:
        self.update(_args(args, "name"))


class _AddStore(Interspersed):
    synopsis = "NAME URL"

    def parseArgs(self, *args: str) -> None:
        self.update(_args(args, "name", "url"))


class _Available(usage.Options):
    optFlags = [["refresh", "r", "fetch the store now instead of using its cache"]]
    optParameters = [["store", "s", None, "store name (default: the first store)"]]


class _Install(usage.Options):
    synopsis = "(--from-store STORE --app ID | --file app.json | --name N --image I) [...]"
    optFlags = [["home-directories", None, "the app may use persistent homes"],
                ["url-support", None, "the app opens URLs"],
                ["gpu", None, "offer NVIDIA/DRI3 GPUs"],
                ["no-auto-update", None, "leave the image out of background pulls"]]
    optParameters = [
        ["from-store", None, None, "install from this store..."],
        ["app", None, None, "...the app with this id"],
        ["file", "f", None, "an InstalledApp JSON document"],
        ["name", None, None, "app name (manual install)"],
        ["image", None, None, "container image (manual install)"],
        ["port", None, "3000", "port the app listens on"],
        ["type", None, "app", "app, browser or desktop"],
        ["extensions", None, "", "comma-separated file extensions"],
        ["logo", None, "", "logo URL, or a PNG/JPEG/SVG/WebP file to upload"],
        ["users", None, "", "comma-separated user names, or all"],
        ["groups", None, "", "comma-separated group names, or all"],
        ["template", None, "Default", "app template"],
        ["pull-policy", None, "if-missing", "always, if-missing or never"],
    ]

    def postOptions(self) -> None:
        ways = [bool(self["from-store"] or self["app"]), bool(self["file"]),
                bool(self["name"] or self["image"])]
        if sum(ways) != 1:
            raise usage.UsageError("Use one of --from-store/--app, --file, --name/--image.")
        if ways[0] and not (self["from-store"] and self["app"]):
            raise usage.UsageError("--from-store and --app go together.")
        if ways[2] and not (self["name"] and self["image"]):
            raise usage.UsageError("--name and --image go together.")


class _AppId(Interspersed):
    synopsis = "ID"

    def parseArgs(self, *args: str) -> None:
        if len(args) != 1:
            raise usage.UsageError("Expected the app's ID (see `sealskin apps installed`).")
        self["name"] = args[0]


class _Update(_AppId):
    synopsis = "ID --file app.json"
    optParameters = [["file", "f", None, "the full InstalledApp JSON document"]]

    def postOptions(self) -> None:
        if not self["file"]:
            raise usage.UsageError("--file is required.")


class StoresOptions(Noun):
    verbs = (("list", Empty, "list app stores"), ("add", _AddStore, "add NAME URL"),
             ("remove", _OneArg, "remove NAME"))


class AppsOptions(Noun):
    verbs = (("available", _Available, "apps offered by a store"),
             ("installed", Empty, "installed apps and their image status"),
             ("install", _Install, "install an app"),
             ("update", _Update, "replace an installed app from a JSON file"),
             ("remove", _AppId, "remove an installed app: ID (see `apps installed`)"),
             ("check-update", _AppId, "compare an app's local image with its registry's"),
             ("pull", _AppId, "pull the newest image of an app now"))


# -- running ---------------------------------------------------------------------


async def run_stores(client: Client, verb: str, opts: usage.Options) -> tuple[Any, str]:
    if verb == "list":
        stores = _list(await client.call("GET", STORES))
        return stores, "\n".join(f"{s['name']}\t{s['url']}{_skipped(s)}"
                                 for s in stores) or "(none)"
    if verb == "add":
        made = await client.call("POST", STORES, {"name": opts["name"], "url": opts["url"]})
        return made, f"added {opts['name']}"
    await client.call("DELETE", f"{STORES}/{segment(opts['name'])}")
    return {"removed": opts["name"]}, f"removed {opts['name']}"


async def run_apps(client: Client, verb: str, opts: usage.Options) -> tuple[Any, str]:
    if verb == "available":
        apps = await _available(client, opts["store"], refresh=bool(opts["refresh"]))
        return apps, "\n".join(f"{a['id']}\t{a['name']}\t{a['provider_config']['image']}"
                               for a in apps) or "(none)"
    if verb == "installed":
        apps = _list(await client.call("GET", INSTALLED))
        return apps, "\n".join(_installed_row(a) for a in apps) or "(none)"
    if verb == "install":
        app = _dict(await client.call("POST", INSTALLED, await _install_body(client, opts)))
        return app, f"installed {app['name']} as {app['id']}{_refused(app)}"
    app_path = f"{INSTALLED}/{segment(opts['name'])}"
    if verb == "update":
        app = _dict(await client.call("PUT", app_path, _read_json(opts["file"])))
        return app, f"updated {app['name']}{_refused(app)}"
    if verb == "check-update":
        found = _dict(await client.call("POST", f"{app_path}/check_update"))
        return found, "\n".join(f"{k}: {v}" for k, v in found.items())
    if verb == "pull":
        pulled = _dict(await client.call("POST", f"{app_path}/pull_latest"))
        return pulled, f"pulled {opts['name']}: {pulled.get('new_sha')}"
    await client.call("DELETE", app_path)
    return {"removed": opts["name"]}, f"removed {opts['name']}"


async def _available(client: Client, store: str | None, *, refresh: bool
                     ) -> list[dict[str, Any]]:
    if store is None:
        stores = _list(await client.call("GET", STORES))
        if not stores:
            raise usage.UsageError("No app store is configured (sealskin stores add).")
        store = str(stores[0]["name"])
    query = {"store_name": store, **({"refresh": "true"} if refresh else {})}
    apps = _list(await client.call("GET", "/api/admin/apps/available", query=query))
    for s in _list(await client.call("GET", STORES)):
        if s["name"] == store and s.get("skipped"):
            sys.stderr.write(f"store {store}:{_skipped(s)}\n")
    return apps


def _skipped(store: Mapping[str, Any]) -> str:
    entries = store.get("skipped") or []
    return "".join(f"\n  skipped {entry}" for entry in entries)


def _refused(app: Mapping[str, Any]) -> str:
    refused = app.get("refused_overrides") or []
    return f"\nrefused docker_overrides: {', '.join(map(str, refused))}" if refused else ""


def _installed_row(a: Mapping[str, Any]) -> str:
    return "\t".join([str(a["id"]), str(a["name"]), str(a["provider_config"].get("image")),
                      str(a.get("image_sha") or "-"), str(a.get("pull_status") or "")])


async def _install_body(client: Client, o: usage.Options) -> dict[str, Any]:
    if o["file"]:
        return _read_json(o["file"])
    access = {"users": _names(o["users"]), "groups": _names(o["groups"]),
              "app_template": o["template"], "auto_update": not o["no-auto-update"],
              "home_directories": bool(o["home-directories"]),
              "pull_policy": o["pull-policy"]}
    if o["from-store"]:
        apps = await _available(client, o["from-store"], refresh=False)
        entry = next((a for a in apps if a["id"] == o["app"]), None)
        if entry is None:
            raise usage.UsageError(f"The store '{o['from-store']}' has no app '{o['app']}'.")
        return {**from_store(entry, o["from-store"]), **access}
    gpu = bool(o["gpu"])
    cfg = {"image": o["image"], "port": int(o["port"]), "type": o["type"],
           "extensions": _names(o["extensions"]), "url_support": bool(o["url-support"]),
           "nvidia_support": gpu, "dri3_support": gpu, "env": []}
    return {"name": o["name"], "logo": _logo(o["logo"]), "url": "", "source": "manual",
            "provider": "docker", "provider_config": cfg, **access}


def from_store(entry: Mapping[str, Any], store: str) -> dict[str, Any]:
    """The install dialog's body for a store entry (upstream-protocol 5.6)."""
    cfg = dict(entry["provider_config"])
    cfg = {k: v for k, v in cfg.items() if v is not None}
    cfg.setdefault("port", 3000)
    cfg["env"] = []
    return {"name": entry["name"], "logo": entry.get("logo") or "",
            "url": entry.get("url") or "", "source": store, "source_app_id": entry["id"],
            "provider": "docker", "provider_config": cfg}


def _logo(value: str) -> str:
    """A URL as is; a local image file as base64 (the server checks its type)."""
    if not value or value.startswith(("http://", "https://", "/api/app_icon/")):
        return value
    return base64.b64encode(read_regular_file(value)).decode()


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def _read_json(path: str) -> dict[str, Any]:
    try:
        doc = json.loads(read_regular_file(path))
    except ValueError as e:
        raise usage.UsageError(f"{path}: not a readable JSON file ({e}).") from None
    if not isinstance(doc, dict):
        raise usage.UsageError(f"{path}: must hold a JSON object.")
    return doc


def _list(value: object) -> list[dict[str, Any]]:
    return [dict(v) for v in value] if isinstance(value, list) else []


def _dict(value: object) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}
