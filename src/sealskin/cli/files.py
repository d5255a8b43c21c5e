"""CLI: ``sealskin upload FILE [--home H]``, ``sealskin uploads list|cancel`` and the
upload helper ``launch --file`` uses.

Files are read and sent one chunk at a time (never whole in memory); the SHA-256
the server computes while assembling is compared with the local one.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import stat
import sys
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python import usage

from sealskin.cli.options import Empty, Interspersed, Noun
from sealskin.client import ApiClient, NoAnswer, segment

MiB = 1024 * 1024
DEFAULT_CHUNK_BYTES = 8 * MiB
SHARED_FILES = "_sealskin_shared_files"


class UploadOptions(Interspersed):
    synopsis = "FILE [--home NAME] [--chunk-mib N]"
    optParameters = [
        ["home", None, SHARED_FILES, "Home directory to store into (its top directory); "
         "default: the shared files."],
        ["chunk-mib", None, "8", "Chunk size in MiB (raw bytes before base64)."],
    ]

    def parseArgs(self, path: str) -> None:  # type: ignore[override]  # usage.Options dispatches by arity
        self["path"] = path

    def postOptions(self) -> None:
        try:
            chunk = int(self["chunk-mib"])
        except ValueError:
            raise usage.UsageError("--chunk-mib must be an integer") from None
        if not 1 <= chunk <= 12:
            raise usage.UsageError("--chunk-mib must be from 1 to 12")
        self["chunk-bytes"] = chunk * MiB


def human_size(n: int) -> str:
    """``6 B``, ``1.5 KiB``, ``200.0 MiB``: readable at any size."""
    if n < 1024:
        return f"{n} B"
    if n < MiB:
        return f"{n / 1024:.1f} KiB"
    return f"{n / MiB:.1f} MiB"


def _progress(sent: int, total: int) -> None:
    percent = 100 * sent // total if total else 100
    sys.stderr.write(f"\r{human_size(sent)} of {human_size(total)} ({percent}%)")
    if sent >= total:
        sys.stderr.write("\n")


def regular_file_size(path: str) -> int:
    """The size of the regular file ``path``; UsageError for anything else (reading a FIFO
    or a device would block, a directory has no bytes)."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise usage.UsageError(f"cannot read {path}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise usage.UsageError(f"{path} is not a regular file")
    return st.st_size


def read_regular_file(path: str) -> bytes:
    """The bytes of a regular file given on the command line (see regular_file_size)."""
    regular_file_size(path)
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise usage.UsageError(f"cannot read {path}: {e.strerror}") from None


def local_file_size(path: str) -> int:
    """The size of the regular file to upload, whose name the server can store."""
    size = regular_file_size(path)
    try:
        os.path.basename(path).encode("utf-8")
    except UnicodeEncodeError:
        raise usage.UsageError(f"the name of {path!r} is not UTF-8; rename the file (the "
                               "server stores names as UTF-8)") from None
    return size


class Unfinished:
    """The upload this command started and has not had consumed yet.

    Leaving the ``async with`` block any other way than after :meth:`consumed` cancels it,
    and so does Ctrl-C: a shutdown trigger sends the cancel before the reactor stops (it
    would otherwise hold one of the user's upload slots until the server reclaims it).
    The trigger is set before the upload is asked for: Ctrl-C while that request is out
    waits (a moment) for its answer, which names the upload to cancel.
    """

    CANCEL_SECONDS = 3.0

    def __init__(self, client: ApiClient) -> None:
        self._client = client
        self.upload_id: str | None = None
        self._trigger: Any = None
        self._known: Deferred[None] | None = None  # fires once initiate has answered
        self.finishing = False  # the request that stores the file is out

    def starting(self) -> None:
        """Called just before the upload is initiated."""
        self._known = Deferred()
        self._trigger = self._client.reactor.addSystemEventTrigger(  # type: ignore[attr-defined]  # a full reactor
            "before", "shutdown", self._cancel_at_shutdown)

    def started(self, upload_id: str | None) -> None:
        """The initiate's answer: the upload's id, or None if it failed."""
        self.upload_id = upload_id
        known, self._known = self._known, None
        if known is not None:
            known.callback(None)

    def consumed(self) -> None:
        self.upload_id = None

    async def __aenter__(self) -> Unfinished:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._trigger is not None:
            with contextlib.suppress(ValueError, KeyError):  # it may have fired already
                self._client.reactor.removeSystemEventTrigger(self._trigger)  # type: ignore[attr-defined]  # a full reactor
        upload_id, self.upload_id = self.upload_id, None
        if upload_id is not None:
            await cancel_upload(self._client, upload_id)

    def _cancel_at_shutdown(self) -> Deferred[None] | None:
        if self.finishing:
            sys.stderr.write("\nsealskin: the file was being stored when interrupted; it may "
                             "be stored anyway\n")
        if self.upload_id is None and self._known is None:
            return None
        d = Deferred.fromCoroutine(self._cancel_soon())
        return d.addTimeout(self.CANCEL_SECONDS, self._client.reactor).addErrback(lambda _: None)

    async def _cancel_soon(self) -> None:
        if self._known is not None:
            await self._known  # the initiate in flight: its answer names the upload
        upload_id, self.upload_id = self.upload_id, None
        if upload_id is not None:
            await cancel_upload(self._client, upload_id)


async def upload_file(client: ApiClient, path: str, unfinished: Unfinished,
                      chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                      progress: Callable[[int, int], None] | None = None,
                      ) -> tuple[str, int, str]:
    """Initiates and sends ``path``; returns (upload_id, total_chunks, local sha256 hex)."""
    total = local_file_size(path)
    unfinished.starting()
    try:
        started: Any = await client.call("POST", "/api/upload/initiate", {
            "filename": os.path.basename(path), "total_size": total})
        upload_id = str(started["upload_id"])
    except BaseException:
        unfinished.started(None)
        raise
    unfinished.started(upload_id)
    digest, index, sent = hashlib.sha256(), 0, 0
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
            await client.call("POST", "/api/upload/chunk", {
                "upload_id": upload_id, "chunk_index": index,
                "chunk_data_b64": base64.b64encode(chunk).decode("ascii")})
            index, sent = index + 1, sent + len(chunk)
            if progress is not None:
                progress(sent, total)
    return upload_id, index, digest.hexdigest()


async def cancel_upload(client: ApiClient, upload_id: str) -> None:
    """Gives up an unfinished upload, best effort (the server reclaims it anyway)."""
    try:
        await client.call("DELETE", f"/api/upload/{segment(upload_id)}")
    except Exception:
        pass


async def _check_home(client: ApiClient, home: str) -> None:
    """Refuses an unknown home before any byte is sent (the shared files are checked by
    the server: it says why when persistent storage is off)."""
    listed: Any = await client.call("GET", "/api/homedirs")
    if home != SHARED_FILES and home not in listed.get("home_dirs", []):
        raise usage.UsageError(f"no home directory named {home!r} (see `sealskin homes list`)")


async def run_upload(client: ApiClient, opts: usage.Options) -> tuple[Any, str]:
    """``sealskin upload``: returns (JSON value, text line); raises ValueError on a hash mismatch."""
    path, home = opts["path"], opts["home"]
    local_file_size(path)  # before any request
    await _check_home(client, home)
    async with Unfinished(client) as unfinished:
        upload_id, count, local = await upload_file(client, path, unfinished,
                                                    opts["chunk-bytes"], _progress)
        body = {"filename": os.path.basename(path), "upload_id": upload_id,
                "total_chunks": count}
        unfinished.finishing = True
        try:
            if home == SHARED_FILES:
                answer: Any = await client.call("POST", "/api/upload/to_storage",
                                                {**body, "home_name": SHARED_FILES})
            else:  # into the home's top directory
                answer = await client.call("POST", f"/api/files/upload_to_dir/{segment(home)}",
                                           {**body, "path": "/"})
        except NoAnswer as e:
            raise NoAnswer(f"{e}; the server may store the file anyway: look before "
                           f"uploading it again") from None
        unfinished.consumed()
    name = os.path.basename(path)
    remote = answer.get("sha256")
    if remote != local:
        raise ValueError(f"checksum mismatch: local {local}, server {remote}")
    value = {**answer, "local_sha256": local}
    return value, f"stored {answer.get('filename', name)} sha256 {remote} (matches)"


class _CancelUpload(Interspersed):
    def parseArgs(self, upload_id: str) -> None:  # type: ignore[override]  # usage.Options dispatches by arity
        self["upload_id"] = upload_id


class UploadsOptions(Noun):
    verbs = (("list", Empty, "your unfinished uploads"),
             ("cancel", _CancelUpload, "give up an unfinished upload (frees its slot)"))


async def run_uploads(client: ApiClient, verb: str, opts: usage.Options) -> tuple[Any, str]:
    """``sealskin uploads list|cancel``: what an interrupted upload left on the server."""
    if verb == "cancel":
        await client.call("DELETE", f"/api/upload/{segment(opts['upload_id'])}")
        return {"cancelled": opts["upload_id"]}, f"cancelled {opts['upload_id']}"
    found: Any = await client.call("GET", "/api/upload")
    text = "\n".join(f"{u['upload_id']}\t{u['filename']}\t{human_size(u['total_size'])}\t"
                     f"{u['received_chunks']} chunks received" for u in found)
    return found, text or "(none)"
