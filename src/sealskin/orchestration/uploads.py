"""Chunked uploads: server-made ids bound to their owner, staged under server-chosen paths.

Staging: ``<data>/internal/uploads/<upload_id>/chunk_<n>`` (raw bytes, written to a
temporary name then renamed) plus one row per upload and per received chunk in
the store, so an upload survives a restart. Chunk 0 fixes the chunk size: every
chunk but the last has that size, the last one holds exactly the rest, so the
bytes received never exceed the declared ``total_size`` (upstream-protocol 4.6,
10 W2/W3, P1/P2). All file I/O runs on the work pool.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import time
import uuid
from collections.abc import Sequence

import attrs
from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from sealskin.blocking import Pool
from sealskin.crypto import CryptoError
from sealskin.crypto.envelope import b64decode_strict
from sealskin.crypto.inplace import Base64Text
from sealskin.errors import ApiError, Kind
from sealskin.model import Upload
from sealskin.orchestration import paths
from sealskin.orchestration.ops import shielded
from sealskin.orchestration.ownership import AppUser
from sealskin.store import Missing, Store

log = Logger()

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$")
COPY_BYTES = 1024 * 1024
NOT_FOUND = "Upload not found."


@attrs.frozen
class UploadLimits:
    max_total_bytes: int = 10 * 1024**3
    max_chunk_bytes: int = 12 * 1024**2
    per_user: int = 8
    ttl_seconds: float = 24 * 3600
    # At the per-user limit, the user's own uploads untouched for this long give up their
    # slot to a new one (0: never), so uploads a client abandoned never lock its user out.
    stale_seconds: float = 600.0


@attrs.frozen
class Assembled:
    """A consumed upload: the name it got at its destination, its size and SHA-256 (hex)."""

    name: str
    size: int
    sha256: str


def implied_chunks(total_size: int, chunk_size: int) -> int:
    """How many chunks ``total_size`` bytes make with chunks of ``chunk_size`` bytes."""
    if total_size == 0:
        return 0
    return -(-total_size // chunk_size)


def expected_chunk_bytes(total_size: int, chunk_size: int, index: int) -> int:
    count = implied_chunks(total_size, chunk_size)
    return chunk_size if index < count - 1 else total_size - chunk_size * (count - 1)


def _thd_decode(text: str | Base64Text) -> bytes | memoryview:
    """Strict base64 (INVALID, never 400: upstream R9); a big chunk's text, already
    checked by the edge, is decoded where it lies in the request's buffer."""
    if isinstance(text, Base64Text):
        return text.decode()
    try:
        return b64decode_strict(text)
    except CryptoError:
        raise ApiError(Kind.INVALID, "'chunk_data_b64' is not valid base64.") from None


def _thd_make_staging(path: str) -> None:
    os.makedirs(path, mode=0o700, exist_ok=False)


def _thd_write_chunk(staging: str, index: int, data: bytes | memoryview) -> None:
    """Atomic: a repeated chunk replaces the earlier copy whole, never half."""
    final = os.path.join(staging, f"chunk_{index}")
    tmp = f"{final}.{uuid.uuid4().hex}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _thd_chunk0_bytes(staging: str) -> int | None:
    try:
        return os.stat(os.path.join(staging, "chunk_0")).st_size
    except FileNotFoundError:
        return None


def _thd_remove(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


# initiate() makes the staging directory just before its row: never take such a one
ORPHAN_GRACE_SECONDS = 60.0


def _thd_remove_orphans(root: str, keep: set[str], grace_seconds: float) -> int:
    """Removes staging directories under ``root`` not in ``keep`` and older than the grace."""
    removed = 0
    for entry in os.scandir(root):
        if UUID_RE.fullmatch(entry.name) and entry.name not in keep and entry.is_dir(
                follow_symlinks=False):
            if time.time() - entry.stat(follow_symlinks=False).st_mtime > grace_seconds:
                shutil.rmtree(entry.path, ignore_errors=True)
                removed += 1
    return removed


def numbered_name(filename: str, n: int) -> str:
    """``name-n.ext`` for ``name.ext``: the name shortened (at a character boundary) so the
    result stays within the file system's 255 bytes."""
    stem, ext = os.path.splitext(filename)
    if not stem or len(ext.encode()) > paths.MAX_NAME_BYTES // 2:
        stem, ext = filename, ""  # no extension, or one too long to keep
    suffix = f"-{n}{ext}"
    room = paths.MAX_NAME_BYTES - len(suffix.encode())
    return stem.encode()[:room].decode("utf-8", "ignore") + suffix


def _unique_link(dfd: int, tmp: str, filename: str) -> str:
    """Links ``tmp`` to ``filename``, ``name-1.ext``, ``name-2.ext``... (never replaces)."""
    for n in range(10000):
        name = filename if n == 0 else numbered_name(filename, n)
        try:
            os.link(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
            return name
        except FileExistsError:
            continue
    raise ApiError(Kind.CONFLICT, f"Too many files named '{filename}' already exist.")


def _thd_assemble(staging: str, count: int, root: str, parts: Sequence[str],
                  filename: str, owner: AppUser) -> Assembled:
    """Streams chunks into a temporary file beside the destination, then links it in.

    Never holds more than COPY_BYTES in memory; nothing is left at the
    destination on failure. Work pool only.
    """
    digest, size = hashlib.sha256(), 0
    with paths.opened_dir(root, parts) as dfd:
        tmp = f".sealskin-upload-{uuid.uuid4().hex}.part"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o644, dir_fd=dfd)
        try:
            owner.give_fd(fd)
            with os.fdopen(fd, "wb") as out:
                for index in range(count):
                    with open(os.path.join(staging, f"chunk_{index}"), "rb") as chunk:
                        while block := chunk.read(COPY_BYTES):
                            digest.update(block)
                            out.write(block)
                            size += len(block)
                out.flush()
                os.fsync(out.fileno())  # the name appears only for bytes on disk, even after a crash
            name = _unique_link(dfd, tmp, filename)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
    return Assembled(name, size, digest.hexdigest())


@attrs.frozen
class Destination:
    """Where a consumed upload goes: a directory below ``root`` (confined) and a file name."""

    root: str
    parts: tuple[str, ...]
    filename: str


class Uploads:
    def __init__(self, store: Store, clock: IReactorTime, work: Pool, root: str,
                 limits: UploadLimits, owner: AppUser = AppUser()) -> None:
        self._owner = owner
        self._store = store
        self._clock = clock
        self._work = work
        self._root = root
        self._limits = limits
        self._chunk_bytes: dict[str, int] = {}
        self._busy: set[str] = set()
        self._initiating = DeferredLock()
        os.makedirs(root, mode=0o700, exist_ok=True)

    def _staging(self, upload_id: str) -> str:
        return os.path.join(self._root, upload_id)  # a server-made uuid4, checked by _owned

    async def initiate(self, username: str, filename: str, total_size: int,
                       room_bytes: int | None) -> str:
        """A new upload id. TOO_LARGE past the size, storage (``room_bytes``, less what the
        user's unfinished uploads declared) or count limit."""
        if total_size > self._limits.max_total_bytes:
            raise ApiError(Kind.TOO_LARGE, f"Uploads are limited to "
                           f"{self._limits.max_total_bytes} bytes.")
        if room_bytes is not None and total_size > room_bytes:
            raise ApiError(Kind.TOO_LARGE, "Storage limit exceeded.")
        # Counted and added under one lock: parallel initiates cannot pass the limits together.
        async with self._initiating:
            mine = await self.mine(username)
            if len(mine) >= self._limits.per_user:
                mine = await self._reclaim_stale(mine)
            declared = sum(u.total_size for u in mine)
            if room_bytes is not None and total_size > room_bytes - declared:
                raise ApiError(Kind.TOO_LARGE, f"Storage limit exceeded: unfinished uploads "
                               f"already hold {declared} of the {room_bytes} bytes left; "
                               f"finish or cancel them first.")
            if len(mine) >= self._limits.per_user:
                raise ApiError(Kind.LIMITED, f"Too many uploads in progress "
                               f"({self._limits.per_user}); finish or cancel one "
                               f"(DELETE /api/upload/<upload_id>, or `sealskin uploads "
                               f"cancel ID`).")
            upload_id = str(uuid.uuid4())
            now = self._clock.seconds()
            await self._work.run(_thd_make_staging, self._staging(upload_id))
            await self._store.add_upload(Upload(upload_id, username, filename, total_size, 0,
                                                0, (), now, now))
        log.debug("upload {upload_id} of {user}: {size} bytes", upload_id=upload_id,
                  user=username, size=total_size)
        return upload_id

    async def _reclaim_stale(self, mine: list[Upload]) -> list[Upload]:
        """Discards the stale ones among a user's uploads; returns those left."""
        if not self._limits.stale_seconds:
            return mine
        cutoff = self._clock.seconds() - self._limits.stale_seconds
        left = []
        for u in mine:
            if u.updated_at < cutoff and u.id not in self._busy:
                log.info("upload {upload_id} of {user} untouched since {cutoff}: its slot "
                         "goes to a new upload", upload_id=u.id, user=u.username,
                         cutoff=u.updated_at)
                await self.discard(u)
            else:
                left.append(u)
        return left

    async def mine(self, username: str) -> list[Upload]:
        """The user's unfinished uploads, oldest first."""
        found = [u for u in await self._store.uploads_older_than(float("inf"))
                 if u.username == username]
        return sorted(found, key=lambda u: u.created_at)

    async def cancel(self, username: str, upload_id: object) -> None:
        """Removes the caller's unfinished upload and its chunks (NOT_FOUND, CONFLICT)."""
        u = await self.owned(username, upload_id)
        if u.id in self._busy:
            raise ApiError(Kind.CONFLICT, "The upload is already being used.")
        await self.discard(u)

    async def owned(self, username: str, upload_id: object) -> Upload:
        """The caller's upload; NOT_FOUND for unknown, malformed or someone else's ids."""
        if not isinstance(upload_id, str) or not UUID_RE.fullmatch(upload_id):
            raise ApiError(Kind.NOT_FOUND, NOT_FOUND)
        u = await self._store.upload(upload_id)
        if u is None or u.username != username:
            raise ApiError(Kind.NOT_FOUND, NOT_FOUND)
        return u

    async def put_chunk(self, username: str, upload_id: object, index: int,
                        encoded: str | Base64Text) -> None:
        """Stores one chunk; repeating a chunk is idempotent. INVALID / CONFLICT / NOT_FOUND."""
        u = await self.owned(username, upload_id)
        if len(encoded) > 4 * (-(-self._limits.max_chunk_bytes // 3)):
            raise ApiError(Kind.TOO_LARGE, "Chunk too large.")
        data = await self._work.run(_thd_decode, encoded)
        await self._check_chunk(u, index, len(data))
        await self._work.run(_thd_write_chunk, self._staging(u.id), index, data)
        try:
            await self._store.mark_chunk(u.id, index, self._clock.seconds())
        except Missing:
            raise ApiError(Kind.NOT_FOUND, NOT_FOUND) from None

    async def _chunk_size(self, u: Upload) -> int | None:
        if u.id not in self._chunk_bytes and 0 in u.received:
            found = await self._work.run(_thd_chunk0_bytes, self._staging(u.id))
            if found:
                self._chunk_bytes.setdefault(u.id, found)
        return self._chunk_bytes.get(u.id)

    async def _check_chunk(self, u: Upload, index: int, size: int) -> None:
        if u.total_size == 0:
            raise ApiError(Kind.INVALID, "'chunk_index' is out of range: the upload is empty.")
        if size > self._limits.max_chunk_bytes:
            raise ApiError(Kind.TOO_LARGE, "Chunk too large.")
        chunk_size = await self._chunk_size(u)
        if index == 0:
            if size == 0 or size > u.total_size:
                raise ApiError(Kind.INVALID, "Chunk 0 must hold 1 to 'total_size' bytes.")
            if chunk_size is None:
                self._chunk_bytes[u.id] = size  # set before any await: first writer wins
            elif chunk_size != size:
                raise ApiError(Kind.CONFLICT, "Chunk 0 was already received with another "
                               "size.")
            return
        if chunk_size is None:
            raise ApiError(Kind.CONFLICT, "Chunk 0 must be sent first: it fixes the chunk "
                           "size.")
        count = implied_chunks(u.total_size, chunk_size)
        if not 0 < index < count:
            raise ApiError(Kind.INVALID, f"'chunk_index' must be below {count}.")
        expected = expected_chunk_bytes(u.total_size, chunk_size, index)
        if size != expected:
            raise ApiError(Kind.INVALID, f"Chunk {index} must hold {expected} bytes.")

    async def consume(self, username: str, upload_id: object, total_chunks: int,
                      dest: Destination) -> Assembled:
        """Assembles the upload at ``dest`` and removes it; checks every chunk first.

        CONFLICT for a missing chunk (not 400: upstream R9) or an upload already
        being consumed; INVALID if ``total_chunks`` disagrees with the declared size.
        Cancelling the caller does not stop it; on failure the destination is untouched
        and the upload stays for a retry.
        """
        u = await self.owned(username, upload_id)
        if u.id in self._busy:
            raise ApiError(Kind.CONFLICT, "The upload is already being used.")
        chunk_size = await self._chunk_size(u)  # chunk 0 fixes it, and so the count
        if chunk_size is None and u.total_size > 0:
            raise ApiError(Kind.CONFLICT, "Missing chunk 0 for upload.")
        count = implied_chunks(u.total_size, chunk_size or 1)
        if total_chunks != count:
            raise ApiError(Kind.INVALID, f"'total_chunks' must be {count} for this upload.")
        received = set(u.received)
        for index in range(count):
            if index not in received:
                raise ApiError(Kind.CONFLICT, f"Missing chunk {index} for upload.")
        self._busy.add(u.id)
        # Shielded: once assembly starts, it and the upload's removal complete even if the
        # caller goes away meanwhile, so a stored file's upload can never be used twice.
        return await shielded(Deferred.fromCoroutine(self._assemble(u, count, dest)))

    async def _assemble(self, u: Upload, count: int, dest: Destination) -> Assembled:
        try:
            done = await self._work.run(_thd_assemble, self._staging(u.id), count, dest.root,
                                        dest.parts, dest.filename, self._owner)
        except BaseException:
            self._busy.discard(u.id)  # the destination is untouched: a retry may come
            raise
        try:
            await self.discard(u)
        finally:
            self._busy.discard(u.id)
        return done

    async def discard(self, u: Upload) -> None:
        self._chunk_bytes.pop(u.id, None)
        try:
            await self._store.remove_upload(u.id)
        except Missing:
            pass
        await self._work.run(_thd_remove, self._staging(u.id))

    async def sweep(self) -> int:
        """Removes uploads untouched for ``ttl_seconds``, and staging directories no upload
        owns any more (their user was removed: the rows went with the user); returns how
        many uploads."""
        old = await self._store.uploads_older_than(self._clock.seconds()
                                                   - self._limits.ttl_seconds)
        for u in old:
            if u.id not in self._busy:
                await self.discard(u)
        if old:
            log.info("removed {count} abandoned uploads", count=len(old))
        known = {u.id for u in await self._store.uploads_older_than(float("inf"))}
        orphans = await self._work.run(_thd_remove_orphans, self._root, known | self._busy,
                                       ORPHAN_GRACE_SECONDS)
        if orphans:
            log.info("removed {count} upload directories without an upload", count=orphans)
        return len(old)
