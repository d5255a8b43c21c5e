"""``sealskin``: the scripted API client (speaks the same envelope as the extension).

    sealskin --config admin.json status
    sealskin --config admin.json users add alice
    sealskin --config admin.json --json groups list
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from twisted.internet import task
from twisted.internet.defer import CancelledError, Deferred
from twisted.python import usage

from sealskin.cli.apps import AppsOptions, StoresOptions, run_apps, run_stores
from sealskin.cli import INTERRUPTED, interrupted
from sealskin.cli.files import (Unfinished, UploadOptions, UploadsOptions, local_file_size,
                                read_regular_file, run_upload, run_uploads, upload_file)
from sealskin.cli.options import Empty, Interspersed, Noun
from sealskin.client import ApiCallError, ApiClient, ClientConfig, segment


def _settings(opts: usage.Options) -> dict[str, Any]:
    """Settings flags shared by users and groups; only the given ones are sent."""
    out: dict[str, Any] = {}
    for flag in ("active", "persistent-storage", "public-sharing", "gpu"):
        value = opts.get(flag)
        if value is not None:
            if value.lower() not in ("true", "false"):
                raise usage.UsageError(f"--{flag} must be true or false, not {value!r}")
            out[flag.replace("-", "_")] = value.lower() == "true"
    for flag in ("session-limit", "storage-limit"):
        if opts.get(flag) is not None:
            try:
                out[flag.replace("-", "_")] = int(opts[flag])
            except ValueError:
                raise usage.UsageError(f"--{flag} must be an integer, not "
                                       f"{opts[flag]!r}") from None
    if opts.get("group") is not None:
        out["group"] = opts["group"]
    return out


class _Name(Interspersed):
    def parseArgs(self, name: str) -> None:  # type: ignore[override]  # usage.Options dispatches by arity
        self["name"] = name


class _GroupSettings(_Name):
    """Settings flags of groups; Twisted gathers ``optParameters`` along the class tree."""

    optParameters = [
        ["active", None, None, "true or false"],
        ["persistent-storage", None, None, "true or false"],
        ["public-sharing", None, None, "true or false"],
        ["gpu", None, None, "true or false"],
        ["session-limit", None, None, "concurrent sessions (0 or -1 = server default)"],
        ["storage-limit", None, None, "MiB (-1 = unlimited)"],
    ]


class _Named(_GroupSettings):
    """A user's or admin's name and settings flags."""

    optParameters = [["group", None, None, "group name"]]


class _AddPrincipal(_Named):
    optParameters = [
        ["public-key", None, None, "PEM file of the user's public key (default: generate)"],
        ["save-config", None, None, "write the new user's client config (admin.json format) here"],
    ]


class _Home(Interspersed):
    optParameters = [["user", "u", None, "another user's homes (admin)"],
                     ["admin-user", None, None, "an admin's homes (admin)"]]

    def parseArgs(self, *args: str) -> None:
        self["args"] = args


def _sub(name: str, options: type[usage.Options], help_text: str) -> list[Any]:
    return [name, None, options, help_text]


class _Users(Noun):
    verbs = (("list", Empty, "list users"), ("add", _AddPrincipal, "add a user"),
             ("update", _Named, "change a user's settings"), ("remove", _Name, "remove a user"))


class _AddAdmin(_Name):
    """Admins have no settings: only a key (given or generated) and a config file."""

    optParameters = _AddPrincipal.optParameters


class _Admins(Noun):
    verbs = (("list", Empty, "list admins"), ("add", _AddAdmin, "add an admin"),
             ("remove", _Name, "remove an admin"))


class _Groups(Noun):
    verbs = (("list", Empty, "list groups"), ("add", _GroupSettings, "add a group"),
             ("update", _GroupSettings, "change a group's settings (others are kept)"),
             ("remove", _Name, "remove a group"))


class _Homes(Noun):
    verbs = (("list", _Home, "list home directories"), ("add", _Home, "add NAME"),
             ("remove", _Home, "remove NAME"))


class _Launch(Interspersed):
    synopsis = "APP [--url URL] [--home NAME] [--file FILE]"
    optParameters = [["url", None, None, "open this URL in the app"],
                     ["home", None, None, "home directory (default: ephemeral)"],
                     ["file", None, None, "upload FILE and open it in the app"],
                     ["language", None, None, "e.g. de_DE.UTF-8"],
                     ["gpu", None, None, "GPU device, e.g. /dev/dri/renderD128"]]

    def parseArgs(self, app: str) -> None:  # type: ignore[override]  # usage.Options dispatches by arity
        self["app"] = app


class _Stop(Interspersed):
    optFlags = [["all-users", "a", "any user's session (admin)"]]

    def parseArgs(self, session_id: str) -> None:  # type: ignore[override]  # usage.Options dispatches by arity
        self["session_id"] = session_id


class _ListSessions(usage.Options):
    optFlags = [["all-users", "a", "every user's sessions (admin)"]]


class _Sessions(Noun):
    verbs = (("list", _ListSessions, "list sessions"), ("stop", _Stop, "stop a session"))


class Options(usage.Options):
    synopsis = "sealskin [--config FILE] [--json] [--url URL] COMMAND ..."
    optFlags = [["json", "j", "print JSON instead of text"],
                ["verify-tls", None, "verify the TLS certificate of --url"]]
    optParameters = [
        ["config", "c", os.environ.get("SEALSKIN_CLIENT_CONFIG", "admin.json"),
         "client config (admin.json format) [env SEALSKIN_CLIENT_CONFIG]"],
        ["url", None, None, "base URL (default http://<server_endpoint>:<api_port>)"],
        ["timeout", None, "300", "seconds to wait for each answer (0 = no limit); a launch "
         "that pulls a large image can take minutes"],
    ]
    subCommands = [
        _sub("status", Empty, "who am I, and my effective settings"),
        _sub("users", _Users, "manage users (admin)"),
        _sub("admins", _Admins, "manage admins (admin)"),
        _sub("groups", _Groups, "manage groups (admin)"),
        _sub("homes", _Homes, "manage home directories"),
        _sub("launch", _Launch, "start an app; prints its single-use URL"),
        _sub("sessions", _Sessions, "list or stop sessions"),
        _sub("upload", UploadOptions, "upload FILE to your storage (chunked, encrypted)"),
        _sub("uploads", UploadsOptions, "list or cancel your unfinished uploads"),
        _sub("stores", StoresOptions, "manage app stores (admin)"),
        _sub("apps", AppsOptions, "available, installed, install, update, remove (admin)"),
    ]

    def opt_version(self) -> None:
        """Print the version of sealskin and exit."""
        from importlib import metadata

        try:
            version = metadata.version("sealskin-server")
        except metadata.PackageNotFoundError:
            version = "(not installed)"
        print(f"sealskin {version}")
        raise SystemExit(0)

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("Which command?")
        try:
            self["timeout"] = float(self["timeout"])
        except ValueError:
            raise usage.UsageError(f"--timeout must be a number of seconds, not "
                                   f"{self['timeout']!r}") from None
        if not 0 <= self["timeout"] <= 86400:
            raise usage.UsageError("--timeout must be from 0 to 86400 seconds")
        if self["url"] and not self["url"].startswith(("http://", "https://")):
            raise usage.UsageError(f"--url must start with http:// or https://, not "
                                   f"{self['url']!r}")


Printer = Callable[[Any], str]


def _json(answer: object) -> Any:
    """The API's answer, read below as the API documents it: a malformed answer fails there
    (KeyError, TypeError), and ``main`` reports that in one line."""
    return answer


def _verb(sub: usage.Options) -> tuple[str, usage.Options]:
    """A ``Noun`` command's verb and that verb's options (``Noun.postOptions`` ensured both)."""
    verb = sub.subCommand
    assert verb is not None
    subsub: usage.Options = sub.subOptions
    return verb, subsub


def _principal_rows(items: Sequence[dict[str, Any]]) -> str:
    return "\n".join(f"{u['username']}\t{'admin' if u['is_admin'] else 'user'}"
                     f"\t{json.dumps(u['settings']) if u['settings'] else ''}"
                     for u in items) or "(none)"


async def _users(c: ApiClient, verb: str, o: usage.Options, admins: bool) -> tuple[Any, str]:
    kind = "admins" if admins else "users"
    if verb == "list":
        data = _json(await c.call("POST", "/api/admin/data", {}))
        return data[kind], _principal_rows(data[kind])
    name = o["name"]
    if verb == "remove":
        await c.call("DELETE", f"/api/admin/{kind}/{segment(name)}")
        return {"removed": name}, f"removed {name}"
    if verb == "update":
        user = _json(await c.call("PUT", f"/api/admin/users/{segment(name)}", {"settings": _settings(o)}))
        return user, _principal_rows([user])
    body: dict[str, Any] = {"username": name, "public_key": None}
    if o.get("public-key"):
        if o.get("save-config"):
            raise usage.UsageError("--save-config writes a generated private key; a user "
                                   "registered with --public-key builds their own config")
        body["public_key"] = read_regular_file(o["public-key"]).decode("utf-8", "replace")
        if not body["public_key"].strip():
            raise usage.UsageError(f"{o['public-key']} is empty: no public key to register")
    if not admins:
        body["settings"] = _settings(o)
    # The file is made before the account, so the one copy of the key has a place to go.
    saved = _new_private_file(o["save-config"]) if o.get("save-config") else None
    try:
        made = _json(await c.call("POST", f"/api/admin/{kind}", body))
    except BaseException:
        if saved is not None:
            saved.close()
            os.unlink(o["save-config"])
        raise
    text = _principal_rows([made["user"]])
    if saved is not None:
        doc = {**attrs.asdict(c.config), "username": name, "private_key": made["private_key"]}
        with saved:
            json.dump(doc, saved, indent=2)
        text += f"\nclient config written to {o['save-config']}"
    elif made.get("private_key"):
        text += "\n" + made["private_key"]
    return made, text


def _new_private_file(path: str) -> Any:
    """A new file, mode 0600, open for writing; never an existing one (a config in use)."""
    try:
        return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w")
    except FileExistsError:
        raise usage.UsageError(f"{path} already exists; --save-config writes a new file "
                               "only") from None
    except OSError as e:
        raise usage.UsageError(f"cannot write {path}: {e.strerror}") from None


async def _groups(c: ApiClient, verb: str, o: usage.Options) -> tuple[Any, str]:
    if verb == "list":
        groups = _json(await c.call("POST", "/api/admin/data", {}))["groups"]
        return groups, "\n".join(f"{g['name']}\t{json.dumps(g['settings'])}"
                                 for g in groups) or "(none)"
    name = o["name"]
    if verb == "remove":
        await c.call("DELETE", f"/api/admin/groups/{segment(name)}")
        return {"removed": name}, f"removed {name}"
    if verb == "add":
        g = _json(await c.call("POST", "/api/admin/groups",
                               {"name": name, "settings": _settings(o)}))
    else:
        g = _json(await c.call("PUT", f"/api/admin/groups/{segment(name)}", {"settings": _settings(o)}))
    return g, f"{g['name']}\t{json.dumps(g['settings'])}"


async def _homes(c: ApiClient, verb: str, o: usage.Options) -> tuple[Any, str]:
    base = "/api/homedirs"
    if o.get("user") and o.get("admin-user"):
        raise usage.UsageError("--user and --admin-user go one at a time")
    if o.get("user"):
        base = f"/api/admin/users/{segment(o['user'])}/homedirs"
    elif o.get("admin-user"):
        base = f"/api/admin/admins/{segment(o['admin-user'])}/homedirs"
    args = o["args"]
    if verb == "list":
        homes = _json(await c.call("GET", base))["home_dirs"]
        return homes, "\n".join(homes) or "(none)"
    if len(args) != 1:
        raise usage.UsageError(f"homes {verb} takes one NAME")
    if verb == "add":
        return await c.call("POST", base, {"home_name": args[0]}), f"added {args[0]}"
    await c.call("DELETE", f"{base}/{segment(args[0])}")
    return {"removed": args[0]}, f"removed {args[0]}"


async def _app(c: ApiClient, app: str) -> dict[str, Any]:
    """The app with this id or (case-insensitive) name that the caller may launch."""
    apps = _json(await c.call("POST", "/api/applications", {}))
    for a in apps:
        if a["id"] == app:
            return dict(a)
    named = [a for a in apps if a["name"].lower() == app.lower()]
    if len(named) > 1:
        raise usage.UsageError(f"several apps are named {app!r}; launch one by id: "
                               + ", ".join(str(a["id"]) for a in named))
    if not named:
        raise usage.UsageError(f"no launchable app named {app!r}")
    return dict(named[0])


def _session_base(c: ApiClient) -> str:
    cfg = c.config
    return f"https://{cfg.server_endpoint}:{cfg.session_port}"


async def _check_gpu(c: ApiClient) -> None:
    """The server ignores the GPU of an account that may not use one (as upstream does:
    the extension sends one anyway); the CLI says so instead. The server checks the rest."""
    status = _json(await c.call("POST", "/api/admin/status", {}))
    if not status["settings"].get("gpu"):
        raise usage.UsageError("your account may not use GPUs (its gpu setting is false); "
                               "launch without --gpu")


async def _launch(c: ApiClient, o: usage.Options) -> tuple[Any, str]:
    if o["file"]:
        local_file_size(o["file"])  # before any request
    if o["gpu"]:
        await _check_gpu(c)
    app = await _app(c, o["app"])
    if o["home"] and o["home"].lower() != "cleanroom" and not app.get("home_directories"):
        raise usage.UsageError(f"{app['name']} keeps no home directories (it always starts "
                               "clean); launch it without --home")
    body: dict[str, Any] = {"application_id": app["id"],
                            "home_name": o["home"], "language": o["language"],
                            "selected_gpu": o["gpu"]}
    path = "/api/launch/simple"
    if o["url"]:
        path, body["url"] = "/api/launch/url", o["url"]
    async with Unfinished(c) as unfinished:
        if o["file"]:
            upload_id, chunks, _ = await upload_file(c, o["file"], unfinished)
            path = "/api/launch/file"
            body.update(filename=os.path.basename(o["file"]), upload_id=upload_id,
                        total_chunks=chunks, open_file_on_launch=True)
        made = _json(await c.call("POST", path, body))
        unfinished.consumed()
    url = _session_base(c) + made["session_url"]
    return {**made, "url": url}, url


async def _sessions(c: ApiClient, verb: str, o: usage.Options) -> tuple[Any, str]:
    admin = bool(o.get("all-users"))
    if verb == "stop":
        prefix = "/api/admin/sessions" if admin else "/api/sessions"
        await c.call("DELETE", f"{prefix}/{segment(o['session_id'])}")
        return {"stopped": o["session_id"]}, f"stopped {o['session_id']}"
    if admin:
        groups = _json(await c.call("GET", "/api/admin/sessions"))
        rows = [dict(s, username=g["username"]) for g in groups for s in g["sessions"]]
    else:
        rows = [dict(s, username=c.config.username)
                for s in _json(await c.call("GET", "/api/sessions"))]
    for s in rows:  # as `launch` prints it: the server's path on the session port
        s["url"] = _session_base(c) + s["session_url"]
    text = "\n".join(f"{s['session_id']}\t{s['username']}\t{s['app_name']}\t{s['url']}"
                     for s in rows) or "(none)"
    return rows, text


async def run(reactor: Any, opts: Options) -> Any:
    """Runs the chosen command; returns what was printed as JSON (for tests)."""
    config = ClientConfig.load(opts["config"])
    client = ApiClient(reactor, config, base_url=opts["url"], tls_verify=opts["verify-tls"],
                       timeout_seconds=opts["timeout"])
    cmd, sub = opts.subCommand, opts.subOptions
    if cmd == "status":
        status = _json(await client.call("POST", "/api/admin/status", {}))
        value, text = status, "\n".join(f"{k}: {v}" for k, v in status.items())
    elif cmd in ("users", "admins"):
        value, text = await _users(client, *_verb(sub), cmd == "admins")
    elif cmd == "groups":
        value, text = await _groups(client, *_verb(sub))
    elif cmd == "homes":
        value, text = await _homes(client, *_verb(sub))
    elif cmd == "launch":
        value, text = await _launch(client, sub)
    elif cmd == "sessions":
        value, text = await _sessions(client, *_verb(sub))
    elif cmd == "upload":
        value, text = await run_upload(client, sub)
    elif cmd == "uploads":
        value, text = await run_uploads(client, *_verb(sub))
    elif cmd == "stores":
        value, text = await run_stores(client, *_verb(sub))
    elif cmd == "apps":
        value, text = await run_apps(client, *_verb(sub))
    else:
        assert cmd is not None  # Options.postOptions requires a command
        value, text = await extra_command(client, cmd, sub)
    print(json.dumps(value, indent=2) if opts["json"] else text)
    return value


async def extra_command(client: ApiClient, cmd: str, sub: Any) -> tuple[Any, str]:
    raise usage.UsageError(f"unknown command {cmd}")


def _reason(e: BaseException) -> str:
    """A one-line reason for a failure below the API (connection, TLS, file)."""
    from OpenSSL import SSL
    from twisted.web._newclient import ResponseNeverReceived, RequestTransmissionFailed

    if isinstance(e, (ResponseNeverReceived, RequestTransmissionFailed)) and e.reasons:
        inner = e.reasons[0].value
        if isinstance(inner, SSL.Error):
            return (f"the TLS handshake failed ({inner}); with --verify-tls the server's "
                    f"certificate must be trusted (SSL_CERT_FILE)")
        return f"the server closed the connection ({type(inner).__name__}: {inner})"
    text = str(e) or type(e).__name__
    return text.splitlines()[0] if text else type(e).__name__


def main(argv: Sequence[str] | None = None) -> None:
    opts = Options()  # type: ignore[no-untyped-call]  # inherited from Twisted's usage.Options
    try:
        opts.parseOptions(list(sys.argv[1:] if argv is None else argv))  # type: ignore[no-untyped-call]  # inherited from Twisted's usage.Options
    except usage.UsageError as e:
        sys.stderr.write(f"{opts}\nsealskin: {e}\n")
        raise SystemExit(2) from None

    # Ctrl-C stops the reactor under the pending call. That call's connection may or may not
    # fail before the reactor is gone, so the interruption is told from the stop itself.
    state = {"stopping": False, "finished": False}

    def _stopping() -> None:
        state["stopping"] = True

    async def _main(reactor: Any) -> None:
        reactor.addSystemEventTrigger("before", "shutdown", _stopping)
        try:
            await run(reactor, opts)
        except Exception:
            if state["stopping"]:  # whatever the pending call ran into is the interruption's doing
                raise SystemExit(INTERRUPTED) from None
            raise
        finally:
            state["finished"] = True

    async def _reported(reactor: Any) -> None:
        try:
            await _main(reactor)
        except ApiCallError as e:
            sys.stderr.write(f"sealskin: server said {e.status}: {e.detail}\n")
            raise SystemExit(1) from None
        except usage.UsageError as e:
            sys.stderr.write(f"sealskin: {e}\n")
            raise SystemExit(2) from None
        except BrokenPipeError:  # `sealskin ... | head`
            raise SystemExit(0) from None
        except CancelledError:
            raise
        except KeyboardInterrupt:  # while the reactor was not running yet (loading the key)
            raise SystemExit(INTERRUPTED) from None
        except Exception as e:  # network, TLS, files: one line, no traceback
            sys.stderr.write(f"sealskin: {_reason(e)}\n")
            raise SystemExit(1) from None

    try:
        task.react(lambda reactor: Deferred.fromCoroutine(_reported(reactor)))
    except KeyboardInterrupt:  # before the reactor ran
        pass
    except SystemExit as e:
        if e.code != INTERRUPTED and not (state["stopping"] and not state["finished"]):
            raise
    interrupted()


if __name__ == "__main__":  # python -m sealskin.cli.main
    main()
