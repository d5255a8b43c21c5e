"""The caller's own storage: quotas, homes as confined roots, and the file manager.

Every path goes through :mod:`sealskin.orchestration.paths`; every disk access
runs on the work pool (upstream-protocol 4.7, 10 P1). Deletions run in the
background as tasks bounded in number and age and visible only to their owner.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import uuid
from collections.abc import AsyncIterator, Sequence

import attrs
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from sealskin.blocking import Pool
from sealskin.errors import ApiError, Kind
from sealskin.model import Principal, UserSettings
from sealskin.orchestration import paths
from sealskin.orchestration.homes import Homes
from sealskin.orchestration.ownership import AppUser
from sealskin.orchestration.principals import Principals

log = Logger()

COPY_BYTES = 1024 * 1024

MiB = 1024 * 1024
DOWNLOAD_CHUNK_BYTES = 2 * MiB  # upstream-protocol 4.7
NO_STORAGE = "Persistent storage is disabled for this account."
OVER_LIMIT = "Storage limit exceeded."


def tree_bytes(path: str) -> int:
    """Bytes under ``path`` (symlinks not followed)."""
    total = 0
    for top, dirs, files in os.walk(path, followlinks=False):
        for name in files:
            try:
                total += os.lstat(os.path.join(top, name)).st_size
            except OSError:
                continue
    return total


class Storage:
    """Settings, quota and confined home roots for one user at a time."""

    def __init__(self, principals: Principals, homes: Homes, clock: IReactorTime, work: Pool,
                 *, usage_cache_seconds: float = 30.0) -> None:
        self._principals = principals
        self._homes = homes
        self._clock = clock
        self._work = work
        self._cache_seconds = usage_cache_seconds
        self._usage: dict[str, tuple[float, int]] = {}
        self._held: dict[str, int] = {}  # bytes being written now, per user

    async def persistent(self, caller: Principal) -> UserSettings:
        """The caller's effective settings; FORBIDDEN without persistent storage."""
        settings = await self._principals.effective(caller)
        if not settings.persistent_storage:
            raise ApiError(Kind.FORBIDDEN, NO_STORAGE)
        return settings

    async def usage_bytes(self, username: str) -> int:
        now = self._clock.seconds()
        cached = self._usage.get(username)
        if cached is None or cached[0] < now:
            used = await self._work.run(tree_bytes, self._homes.user_dir(username))
            cached = (now + self._cache_seconds, used)
            self._usage[username] = cached
        return cached[1]

    def note_written(self, username: str, size: int) -> None:
        """Counts bytes the server itself just wrote to the user's storage."""
        cached = self._usage.get(username)
        if cached is not None:
            self._usage[username] = (cached[0], max(0, cached[1] + size))

    def forget(self, username: str) -> None:
        self._usage.pop(username, None)

    async def room_bytes(self, caller: Principal) -> int | None:
        """Bytes the caller may still store; None when unlimited (``storage_limit`` -1)."""
        limit = (await self._principals.effective(caller)).storage_limit
        if limit < 0:
            return None
        return max(0, limit * MiB - await self.usage_bytes(caller.username))

    async def require_room(self, caller: Principal, size: int) -> None:
        room = await self.room_bytes(caller)
        if room is not None and size > room - self._held.get(caller.username, 0):
            raise ApiError(Kind.TOO_LARGE, OVER_LIMIT)

    @contextlib.asynccontextmanager
    async def reserved(self, caller: Principal, size: int) -> AsyncIterator[None]:
        """Holds room for ``size`` bytes while the caller writes them (TOO_LARGE if there
        is none), so writes running side by side cannot pass the limit together."""
        await self.require_room(caller, size)
        name = caller.username
        self._held[name] = self._held.get(name, 0) + size  # no await since the check
        try:
            yield
        finally:
            left = self._held[name] - size
            if left:
                self._held[name] = left
            else:
                del self._held[name]

    async def home_root(self, caller: Principal, home_dir: object) -> str:
        """The directory of one of the caller's homes; FORBIDDEN for anything else."""
        name = paths.home_name(home_dir)
        if name not in await self._homes.names(caller.username):
            raise ApiError(Kind.FORBIDDEN, f"Access to home directory '{name}' denied.")
        return self._homes.path(caller.username, name)

    async def home_names(self, username: str) -> list[str]:
        return await self._homes.names(username)

    def shared_files(self, username: str) -> str:
        return self._homes.path(username, paths.SHARED_FILES)


def _thd_entry(dfd: int, name: str, parts: Sequence[str]) -> dict[str, object] | None:
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except OSError:
        return None
    is_dir = stat.S_ISDIR(st.st_mode)
    return {"name": name, "path": paths.display([*parts, name]), "is_dir": is_dir,
            "size": 0 if is_dir else st.st_size, "mtime": st.st_mtime}


def _thd_list(root: str, parts: Sequence[str]) -> list[dict[str, object]]:
    with paths.opened_dir(root, parts) as dfd:
        names = os.listdir(dfd)
        found = [e for e in (_thd_entry(dfd, n, parts) for n in names) if e is not None]
    found.sort(key=lambda e: (not e["is_dir"], str(e["name"]).casefold()))
    return found


def _thd_read_chunk(root: str, parts: Sequence[str], index: int) -> bytes:
    fd = paths._thd_open_file(root, parts)
    try:
        return os.pread(fd, DOWNLOAD_CHUNK_BYTES, index * DOWNLOAD_CHUNK_BYTES)
    finally:
        os.close(fd)


def _thd_check_file(root: str, name: str) -> None:
    os.close(paths._thd_open_file(root, (name,)))


def _thd_copy_in(src_root: str, name: str, dest_dir: str, owner: AppUser) -> None:
    """Copies the regular file ``name`` of ``src_root`` into ``dest_dir`` (streamed, never
    through a symlink, never over an existing file); the copy belongs to ``owner``."""
    src = paths._thd_open_file(src_root, (name,))
    try:
        with paths.opened_dir(dest_dir, ()) as dfd:
            dst = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                          | os.O_CLOEXEC, 0o644, dir_fd=dfd)
            try:
                owner.give_fd(dst)
                with os.fdopen(dst, "wb") as out, os.fdopen(os.dup(src), "rb") as inp:
                    shutil.copyfileobj(inp, out, COPY_BYTES)
            except BaseException:
                os.unlink(name, dir_fd=dfd)
                raise
    finally:
        os.close(src)


def _thd_mkdir(root: str, parts: Sequence[str], name: str, owner: AppUser) -> None:
    with paths.opened_dir(root, parts) as dfd:
        try:
            os.mkdir(name, 0o755, dir_fd=dfd)
        except FileExistsError:
            raise ApiError(Kind.CONFLICT, f"Folder '{name}' already exists.") from None
        owner.give(name, dir_fd=dfd)


def _thd_delete(root: str, parts: Sequence[str]) -> None:
    """Removes a file, symlink or tree below ``root`` without following symlinks."""
    if not parts:
        raise ApiError(Kind.FORBIDDEN, "The home directory itself cannot be deleted.")
    with paths.opened_dir(root, parts[:-1]) as dfd:
        st = os.stat(parts[-1], dir_fd=dfd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(parts[-1], dir_fd=dfd)
        else:
            os.unlink(parts[-1], dir_fd=dfd)


@attrs.define
class DeleteTask:
    id: str
    username: str
    created_at: float
    status: str = "pending"
    message: str = "Deletion pending."


class Files:
    """List, download, create and delete inside a confined root."""

    def __init__(self, clock: IReactorTime, work: Pool, *, max_tasks: int = 1000,
                 tasks_per_user: int = 20, task_ttl_seconds: float = 3600.0,
                 owner: AppUser = AppUser()) -> None:
        self._owner = owner
        self._clock = clock
        self._work = work
        self._tasks: dict[str, DeleteTask] = {}
        self._running: set[Deferred[None]] = set()
        self._max_tasks = max_tasks
        self._per_user = tasks_per_user
        self._ttl = task_ttl_seconds

    async def list(self, root: str, parts: Sequence[str]) -> list[dict[str, object]]:
        return await self._work.run(_thd_list, root, parts)

    async def read_chunk(self, root: str, parts: Sequence[str], index: int) -> bytes:
        return await self._work.run(_thd_read_chunk, root, parts, index)

    async def check_file(self, root: str, name: str) -> None:
        """NOT_FOUND unless ``name`` is a regular file directly in ``root`` (no symlink)."""
        await self._work.run(_thd_check_file, root, name)

    async def copy_in(self, src_root: str, name: str, dest_dir: str) -> None:
        """Copies file ``name`` of ``src_root`` into ``dest_dir``, owned by the apps' user."""
        await self._work.run(_thd_copy_in, src_root, name, dest_dir, self._owner)

    async def create_folder(self, root: str, parts: Sequence[str], name: str) -> None:
        await self._work.run(_thd_mkdir, root, parts, name, self._owner)

    def start_delete(self, username: str, root: str,
                     targets: Sequence[tuple[str, ...]]) -> DeleteTask:
        """Starts a background deletion; LIMITED past the task caps."""
        self._expire()
        mine = [t for t in self._tasks.values() if t.username == username
                and t.status in ("pending", "processing")]
        if len(mine) >= self._per_user or len(self._tasks) >= self._max_tasks:
            raise ApiError(Kind.LIMITED, "Too many deletion tasks; try again later.")
        task = DeleteTask(str(uuid.uuid4()), username, self._clock.seconds())
        self._tasks[task.id] = task
        d = Deferred.fromCoroutine(self._delete(task, root, targets))
        self._running.add(d)
        _ = d.addBoth(lambda _: self._running.discard(d))
        return task

    async def _delete(self, task: DeleteTask, root: str,
                      targets: Sequence[tuple[str, ...]]) -> None:
        task.status, task.message = "processing", "Deleting."
        try:
            for parts in targets:
                await self._work.run(_thd_delete, root, parts)
        except ApiError as e:
            task.status, task.message = "error", e.detail
            return
        except CancelledError:
            raise
        except Exception:
            log.failure("deletion task {task_id}", task_id=task.id)
            task.status, task.message = "error", "Some items could not be deleted."
            return
        task.status, task.message = "completed", "Deletion completed."

    def task(self, username: str, task_id: str) -> DeleteTask:
        self._expire()
        found = self._tasks.get(task_id)
        if found is None or found.username != username:
            raise ApiError(Kind.NOT_FOUND, "Task not found.")
        return found

    def _expire(self) -> None:
        cutoff = self._clock.seconds() - self._ttl
        for task_id, t in list(self._tasks.items()):
            if t.created_at < cutoff and t.status in ("completed", "error"):
                del self._tasks[task_id]

    async def drain(self) -> None:
        """Waits for running deletions (shutdown)."""
        for d in list(self._running):
            await d
