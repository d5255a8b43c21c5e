"""Handlers: chunked uploads and their consumers, the file manager, public shares.

Authenticated endpoints follow upstream-protocol 4.3 (launch/file), 4.4 (send_file),
4.6, 4.7 and 4.8; answers of upload consumers add a ``sha256`` field. The public
pages (``/public/...``, no envelope, no auth) are a plain Twisted resource served
on both ports (:class:`PublicShares`).
"""

from __future__ import annotations

import base64
import html
import os
from typing import Any
from urllib.parse import parse_qs, quote

import attrs
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.web import server, static
from twisted.web.resource import IResource, Resource

from sealskin.api import wire
from sealskin.api.edge import Call
from sealskin.api.sessions import SessionHandlers, launch_request
from sealskin.blocking import Pool
from sealskin.crypto.inplace import Base64Text
from sealskin.errors import ApiError, Kind
from sealskin.model import Principal
from sealskin.orchestration import paths
from sealskin.orchestration.files import Files, Storage
from sealskin.orchestration.launching import FILES_IN_CONTAINER, LaunchPlan
from sealskin.orchestration.principals import Principals
from sealskin.orchestration.sessions import Sessions
from sealskin.orchestration.shares import Share, Shares
from sealskin.orchestration.uploads import Assembled, Destination, Uploads

log = Logger()

MAX_TOTAL_CHUNKS = 10**7
NO_SESSION = "Session not found or permission denied."


def _count(body: Any, field: str, *, high: int = MAX_TOTAL_CHUNKS) -> int:
    return wire.integer(body, field, None, low=0, high=high)


def _query_int(call: Call, field: str, default: int, low: int, high: int) -> int:
    raw = call.query.get(field)
    try:
        value = default if raw in (None, "") else int(str(raw))
    except ValueError:
        raise wire.invalid(f"'{field}' must be an integer.") from None
    if not low <= value <= high:
        raise wire.invalid(f"'{field}' must be an integer from {low} to {high}.")
    return value


def share_info(s: Share) -> wire.Json:
    """``PublicShareInfo`` (upstream-protocol 4.8)."""
    return {"share_id": s.id, "original_filename": s.original_filename,
            "size_bytes": s.size_bytes, "created_at": s.created_at,
            "expiry_timestamp": s.expiry_timestamp, "has_password": s.password_hash is not None,
            "url": f"/public/{s.id}"}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@attrs.frozen
class FileDeps:
    principals: Principals
    storage: Storage
    uploads: Uploads
    files: Files
    shares: Shares
    sessions: Sessions
    launcher: SessionHandlers
    work: Pool
    ephemeral_root: str


class FileHandlers:
    def __init__(self, deps: FileDeps) -> None:
        self._d = deps

    # -- uploads (4.6) -----------------------------------------------------------

    async def initiate(self, call: Call) -> wire.Json:
        filename = paths.file_name(call.body.get("filename"))
        total = wire.integer(call.body, "total_size", None, low=0, high=2**62)
        room = await self._d.storage.room_bytes(call.caller)
        upload_id = await self._d.uploads.initiate(call.caller.username, filename, total, room)
        return {"upload_id": upload_id}

    async def chunk(self, call: Call) -> wire.Json:
        index = _count(call.body, "chunk_index")
        data = call.body.get("chunk_data_b64")
        if not isinstance(data, str | Base64Text):
            raise wire.invalid("'chunk_data_b64' must be a base64 string.")
        await self._d.uploads.put_chunk(call.caller.username, call.body.get("upload_id"),
                                        index, data)
        return {"status": "ok", "chunk_index": index}

    async def list_uploads(self, call: Call) -> list[wire.Json]:
        """Ours: the caller's unfinished uploads (to resume or cancel them)."""
        return [{"upload_id": u.id, "filename": u.filename, "total_size": u.total_size,
                 "received_chunks": len(u.received), "created_at": u.created_at,
                 "updated_at": u.updated_at}
                for u in await self._d.uploads.mine(call.caller.username)]

    async def cancel(self, call: Call, upload_id: str) -> None:
        """Ours: gives up an unfinished upload (204); the extension never needs it."""
        await self._d.uploads.cancel(call.caller.username, upload_id)

    async def _consume(self, caller: Principal, body: Any, dest: Destination, *,
                       counts: bool) -> Assembled:
        """Assembles the caller's upload at ``dest``; ``counts``: within the storage limit."""
        u = await self._d.uploads.owned(caller.username, body.get("upload_id"))
        total_chunks = _count(body, "total_chunks")
        if not counts:
            return await self._d.uploads.consume(caller.username, u.id, total_chunks, dest)
        async with self._d.storage.reserved(caller, u.total_size):
            done = await self._d.uploads.consume(caller.username, u.id, total_chunks, dest)
            self._d.storage.note_written(caller.username, done.size)
        return done

    async def to_storage(self, call: Call) -> wire.Json:
        await self._d.storage.persistent(call.caller)
        filename = paths.file_name(call.body.get("filename"))
        home = paths.home_name(call.body.get("home_name"), "home_name")
        if home not in await self._d.storage.home_names(call.caller.username):
            raise ApiError(Kind.NOT_FOUND, f"Home directory '{home}' not found.")
        dest = Destination(self._d.storage.shared_files(call.caller.username), (), filename)
        done = await self._consume(call.caller, call.body, dest, counts=True)
        return {"status": "success", "message": f"File '{done.name}' saved to storage.",
                "filename": done.name, "sha256": done.sha256}

    async def upload_to_dir(self, call: Call, home_dir: str) -> wire.Json:
        await self._d.storage.persistent(call.caller)
        root = await self._d.storage.home_root(call.caller, home_dir)
        parts = paths.relative_parts(call.body.get("path"))
        filename = paths.file_name(call.body.get("filename"))
        done = await self._consume(call.caller, call.body, Destination(root, parts, filename),
                                   counts=True)
        return {"message": "File uploaded successfully.", "filename": done.name,
                "sha256": done.sha256}

    async def send_file(self, call: Call, session_id: str) -> wire.Json:
        """Into the session's shared-files directory (4.4; R1 for ephemeral sessions)."""
        filename = paths.file_name(call.body.get("filename"))
        found = [r for r in self._d.sessions.visible(call.caller) if r.id == session_id]
        if not found:
            raise ApiError(Kind.NOT_FOUND, NO_SESSION)
        if found[0].ephemeral:
            root = os.path.join(self._d.ephemeral_root, found[0].id, "files")
        else:
            root = self._d.storage.shared_files(call.caller.username)
        done = await self._consume(call.caller, call.body, Destination(root, (), filename),
                                   counts=not found[0].ephemeral)
        return {"status": "success", "message": f"File '{done.name}' sent to the session.",
                "filename": done.name, "sha256": done.sha256}

    async def launch_file(self, call: Call) -> wire.Json:
        """Plans the launch, places the upload in the plan's shared path, then starts (4.3)."""
        filename = paths.file_name(call.body.get("filename"))
        open_it = wire.boolean(call.body, "open_file_on_launch", True)
        req = attrs.evolve(launch_request(call.body, with_url=False),
                           file_path=filename if open_it else None)
        await self._d.uploads.owned(call.caller.username, call.body.get("upload_id"))
        placed: list[Assembled] = []

        async def prepare(plan: LaunchPlan) -> LaunchPlan:
            dest = Destination(plan.shared_path, (), filename)
            placed.append(await self._consume(call.caller, call.body, dest,
                                              counts=not plan.ephemeral))
            return _with_file(plan, placed[0].name) if open_it else plan

        answer = await self._d.launcher.launch_prepared(call, req, prepare)
        return {**answer, "sha256": placed[0].sha256}

    async def launch_file_path(self, call: Call) -> wire.Json:
        """Opens a file already in the caller's shared files (4.3; the file manager's "open").

        An ephemeral session gets a copy in its own shared files; the stored file stays.
        """
        await self._d.storage.persistent(call.caller)
        filename = paths.file_name(call.body.get("filename"))
        if paths.is_ephemeral(call.body.get("home_name")):
            raise ApiError(Kind.BAD_REQUEST, "A stored file cannot be opened in a cleanroom "
                           "session.")
        shared = self._d.storage.shared_files(call.caller.username)
        await self._d.files.check_file(shared, filename)
        req = attrs.evolve(launch_request(call.body, with_url=False), file_path=filename)

        async def prepare(plan: LaunchPlan) -> LaunchPlan:
            if os.path.realpath(plan.shared_path) != os.path.realpath(shared):
                await self._d.files.copy_in(shared, filename, plan.shared_path)
            return _with_file(plan, filename)

        return await self._d.launcher.launch_prepared(call, req, prepare)

    # -- file manager (4.7) --------------------------------------------------------

    async def _root(self, call: Call, home_dir: str) -> str:
        await self._d.storage.persistent(call.caller)
        return await self._d.storage.home_root(call.caller, home_dir)

    async def list_dir(self, call: Call, home_dir: str) -> wire.Json:
        root = await self._root(call, home_dir)
        parts = paths.relative_parts(call.query.get("path", "/"))
        page = _query_int(call, "page", 1, 1, 10**6)
        per_page = _query_int(call, "per_page", 50, 1, 200)
        items = await self._d.files.list(root, parts)
        start = (page - 1) * per_page
        return {"items": items[start:start + per_page], "path": call.query.get("path", "/"),
                "page": page, "per_page": per_page, "total": len(items)}

    async def download_chunk(self, call: Call, home_dir: str) -> wire.Json:
        root = await self._root(call, home_dir)
        parts = paths.relative_parts(call.query.get("path"))
        index = _query_int(call, "chunk_index", 0, 0, 10**7)
        data = await self._d.files.read_chunk(root, parts, index)
        encoded = await self._d.work.run(_b64, data)
        return {"chunk_data_b64": encoded, "is_last_chunk": len(data) < 2 * 1024 * 1024}

    async def create_folder(self, call: Call, home_dir: str) -> wire.Json:
        root = await self._root(call, home_dir)
        parts = paths.relative_parts(call.body.get("path"))
        name = paths.folder_name(call.body.get("folder_name"))
        await self._d.storage.require_room(call.caller, 1)
        await self._d.files.create_folder(root, parts, name)
        return {"message": f"Folder '{name}' created successfully."}

    async def delete(self, call: Call, home_dir: str) -> wire.Json:
        root = await self._root(call, home_dir)
        raw = call.body.get("paths")
        if not isinstance(raw, list) or not raw or len(raw) > 1000:
            raise wire.invalid("'paths' must be a list of 1-1000 paths.")
        targets = [paths.relative_parts(p, "paths") for p in raw]
        if any(not t for t in targets):
            raise ApiError(Kind.FORBIDDEN, "The home directory itself cannot be deleted.")
        self._d.storage.forget(call.caller.username)
        task = self._d.files.start_delete(call.caller.username, root, targets)
        return {"message": "Deletion task started.", "task_id": task.id}

    async def delete_status(self, call: Call, task_id: str) -> wire.Json:
        task = self._d.files.task(call.caller.username, task_id)
        return {"status": task.status, "message": task.message}

    # -- shares (4.8) -----------------------------------------------------------------

    async def share(self, call: Call) -> wire.Json:
        settings = await self._d.storage.persistent(call.caller)
        if not (settings.public_sharing or call.caller.is_admin):  # admins exempt (3.7)
            raise ApiError(Kind.FORBIDDEN, "Public sharing is disabled for this account.")
        root = await self._d.storage.home_root(call.caller, call.body.get("home_dir"))
        parts = paths.relative_parts(call.body.get("path"))
        password = wire.string(call.body, "password", max_len=1024, optional=True)
        hours = wire.integer(call.body, "expiry_hours", 0, low=0, high=24 * 365 * 10)
        created = await self._d.shares.create(call.caller.username, root, parts, password,
                                              hours or None)
        return share_info(created)

    async def shares(self, call: Call) -> list[wire.Json]:
        return [share_info(s) for s in self._d.shares.of(call.caller.username)]

    async def unshare(self, call: Call, share_id: str) -> None:
        await self._d.shares.remove(call.caller.username, share_id)


def _with_file(plan: LaunchPlan, name: str) -> LaunchPlan:
    """The plan with SEALSKIN_FILE and launch_context naming the file as placed."""
    env = {**plan.spec.env, "SEALSKIN_FILE": f"{FILES_IN_CONTAINER}/{name}"}
    return attrs.evolve(plan, spec=attrs.evolve(plan.spec, env=env),
                        launch_context={"type": "file", "value": name})


# -- public pages (4.8): no envelope, no auth, both ports -----------------------------------

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:sans-serif;max-width:28em;margin:4em auto;padding:0 1em}}
.error{{color:#b00020}}</style></head><body><h1>{title}</h1>{body}</body></html>
"""
_FORM = """<p>This file is protected by a password.</p>
<p class="error">{error}</p>
<form method="post" action="/public/{share_id}">
<label>Password <input type="password" name="password" autofocus required></label>
<button type="submit">Download</button></form>"""
MAX_FORM_BYTES = 8192


def _headers(request: server.Request, status: int | None, **values: bytes) -> None:
    """Sets the status and headers (``content_type=`` becomes ``content-type``)."""
    if status is not None:
        request.setResponseCode(status)
    for name, value in values.items():
        request.setHeader(name.replace("_", "-").encode(), value)


def _html(request: server.Request, status: int, title: str, body: str) -> bytes:
    _headers(request, status, content_type=b"text/html; charset=utf-8",
             cache_control=b"no-store", x_content_type_options=b"nosniff",
             referrer_policy=b"no-referrer", content_security_policy=(
                 b"default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"))
    return _PAGE.format(title=html.escape(title), body=body).encode()


def _form(request: server.Request, status: int, share_id: str, error: str = "") -> bytes:
    return _html(request, status, "Protected file",
                 _FORM.format(share_id=html.escape(share_id), error=html.escape(error)))


def _disposition(filename: str) -> bytes:
    ascii_name = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in filename)
    return (f"attachment; filename=\"{ascii_name}\"; "
            f"filename*=UTF-8''{quote(filename, safe='')}").encode("ascii")


def _send(request: server.Request, shares: Shares, share: Share) -> Any:
    """Streams the shared copy from disk (static.File's producer), never whole in memory."""
    f = static.File(shares.file_path(share), defaultType="application/octet-stream")
    f.type, f.encoding = "application/octet-stream", None
    _headers(request, None, content_disposition=_disposition(share.original_filename),
             cache_control=b"no-store", x_content_type_options=b"nosniff")
    return f.render(request)


class _Missing(Resource):
    isLeaf = True

    def __init__(self, status: int = 404, title: str = "Not found") -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted leaves this untyped
        self._status, self._title = status, title

    def render(self, request: server.Request) -> bytes:
        return _html(request, self._status, self._title, "")


class _OneShare(Resource):
    isLeaf = True

    def __init__(self, shares: Shares, share_id: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted leaves this untyped
        self._shares, self._id = shares, share_id

    def _found(self, request: server.Request) -> Share | bytes:
        share = self._shares.get(self._id)
        if share is None:
            return _html(request, 404, "Not found", "<p>No such share.</p>")
        if self._shares.expired(share):
            return _html(request, 410, "Expired", "<p>This share has expired.</p>")
        return share

    def render_GET(self, request: server.Request) -> Any:
        share = self._found(request)
        if isinstance(share, bytes):
            return share
        if share.password_hash is not None:
            return _form(request, 200, share.id)
        return _send(request, self._shares, share)

    render_HEAD = render_GET

    def render_POST(self, request: server.Request) -> Any:
        share = self._found(request)
        if isinstance(share, bytes):
            return share
        if share.password_hash is None:
            return _html(request, 400, "Not protected", "<p>This share has no password.</p>")
        raw = request.content.read(MAX_FORM_BYTES + 1) if request.content else b""
        password = parse_qs(raw.decode("utf-8", "replace")).get("password", [""])[0]
        _ = Deferred.fromCoroutine(self._answer(request, share, password)).addErrback(
            lambda f: log.failure("public share form", f))
        return server.NOT_DONE_YET

    async def _answer(self, request: server.Request, share: Share, password: str) -> None:
        try:
            ok = await self._shares.check_password(share, password)
            if ok:
                token = self._shares.issue_token(share)
                _headers(request, 303, location=f"/public/download/{token}".encode(),
                         cache_control=b"no-store")
                body = b""
            else:
                body = _form(request, 401, share.id, "Wrong password.")
        except ApiError as e:
            body = _form(request, e.status, share.id, e.detail)
        except CancelledError:
            raise
        if not request.finished and not request._disconnected:
            request.write(body)
            request.finish()


class _Downloads(Resource):
    def __init__(self, shares: Shares) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted leaves this untyped
        self._shares = shares

    def getChild(self, path: bytes, request: server.Request) -> IResource:
        return _Token(self._shares, path.decode("ascii", "replace"))


class _Token(Resource):
    isLeaf = True

    def __init__(self, shares: Shares, token: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted leaves this untyped
        self._shares, self._token = shares, token

    def render_GET(self, request: server.Request) -> Any:
        share = self._shares.redeem(self._token)
        if share is None:
            return _html(request, 403, "Link expired", "<p>This download link is invalid "
                         "or has expired.</p>")
        return _send(request, self._shares, share)


class PublicShares(Resource):
    """``/public/<share_id>`` and ``/public/download/<token>``; mount it as ``public``."""

    def __init__(self, shares: Shares) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted leaves this untyped
        self._shares = shares

    def getChild(self, path: bytes, request: server.Request) -> IResource:
        if path == b"download":
            return _Downloads(self._shares)
        if not path:
            return _Missing()
        return _OneShare(self._shares, path.decode("ascii", "replace"))

    def render(self, request: server.Request) -> bytes:
        return _html(request, 404, "Not found", "")


class WithPublic(Resource):
    """The API port's root: ``/public`` here, everything else to the Klein API as-is."""

    def __init__(self, api: IResource, public: IResource) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted leaves this untyped
        self._api, self._public = api, public

    def getChildWithDefault(self, path: bytes, request: server.Request) -> IResource:
        if path == b"public":
            return self._public
        assert request.prepath is not None and request.postpath is not None
        request.postpath.insert(0, request.prepath.pop())
        return self._api

    def render(self, request: server.Request) -> bytes:
        return self._api.render(request)  # type: ignore[no-any-return]  # IResource.render is unannotated (returns Any)

