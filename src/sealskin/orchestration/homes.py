"""Home directories: ``<storage>/homes/<user>/<name>``, one database row each.

Names are checked by the caller (``api/wire.name``); this class only ever joins
validated names, so no value can point outside the user's own directory.
Filesystem work runs on the work pool.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence

from twisted.internet.interfaces import IReactorTime

from sealskin.blocking import Pool
from sealskin.errors import ApiError, Kind
from sealskin.model import HomeDir
from sealskin.orchestration import paths
from sealskin.orchestration.ownership import AppUser
from sealskin.orchestration.paths import SHARED_FILES
from sealskin.store import Conflict, Missing, Store


def _thd_make_home(path: str, owner: AppUser) -> None:
    owner.make_dirs(os.path.join(path, "Desktop", "files"))
    owner.give(path)  # also when it already existed (made by an older version as root)


def _thd_remove_tree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


class Homes:
    def __init__(self, store: Store, clock: IReactorTime, work: Pool, root: str,
                 owner: AppUser = AppUser()) -> None:
        self._store = store
        self._owner = owner
        self._clock = clock
        self._work = work
        self.root = root
        # username -> sorted home names. Homes are read on every home, file and launch
        # call; only this process writes them (the data directory is locked), and every
        # write below forgets the user's entry. A write during a read bumps the generation,
        # so that read's answer is not kept. A removed user's rows go with the principal:
        # the admin API forgets them at once.
        self._names: dict[str, tuple[str, ...]] = {}
        self._generation = 0

    def forget(self, username: str) -> None:
        """Drops what is cached of the user's homes (after any write to their rows)."""
        self._names.pop(username, None)
        self._generation += 1

    async def _read(self, username: str) -> tuple[str, ...]:
        found = self._names.get(username)
        if found is None:
            generation = self._generation
            homes: Sequence[HomeDir] = await self._store.homes(username)
            found = tuple(sorted(h.name for h in homes))
            if generation == self._generation:
                self._names[username] = found
        return found

    def user_dir(self, username: str) -> str:
        return os.path.join(self.root, username)

    def path(self, username: str, name: str) -> str:
        return os.path.join(self.root, username, name)

    async def names(self, username: str) -> list[str]:
        """Sorted home names; makes the shared-files home on first use (upstream R11)."""
        found = await self._read(username)
        if SHARED_FILES not in found:
            await self._add(username, username, SHARED_FILES, exist_ok=True)
            return sorted([*found, SHARED_FILES])
        return list(found)

    async def exists(self, username: str, name: str) -> bool:
        return name in await self._read(username)

    async def create(self, actor: str, username: str, name: str, *,
                     exist_ok: bool = False) -> None:
        """A home made on request; INVALID for the reserved names (CONFLICT if it exists)."""
        if paths.is_reserved_home(name):
            raise ApiError(Kind.INVALID, f"'{name}' is a reserved name: 'cleanroom' (in any "
                           f"case) asks for an ephemeral home, '{SHARED_FILES}' is made "
                           f"by the server.")
        await self._add(actor, username, name, exist_ok=exist_ok)

    async def _add(self, actor: str, username: str, name: str, *, exist_ok: bool) -> None:
        """Adds the row first (atomic duplicate check), then the directory."""
        try:
            await self._store.add_home(HomeDir(username, name, self._clock.seconds()),
                                       actor=actor)
        except Conflict:
            if exist_ok:
                return
            raise ApiError(Kind.CONFLICT, f"Home directory '{name}' already exists.") from None
        finally:
            self.forget(username)
        try:
            await self._work.run(_thd_make_home, self.path(username, name), self._owner)
        except OSError:
            try:
                await self._store.remove_home(username, name, actor=actor)
            finally:
                self.forget(username)
            raise ApiError(Kind.INTERNAL, "internal error") from None

    async def remove(self, actor: str, username: str, name: str) -> None:
        if name == SHARED_FILES:
            raise ApiError(Kind.FORBIDDEN, "The shared-files home cannot be deleted.")
        path = self.path(username, name)
        if any(s.home_path == path for s in await self._store.sessions(username)):
            raise ApiError(Kind.CONFLICT, f"Home directory '{name}' is in use by a running "
                           "session; stop the session first.")
        try:
            await self._store.remove_home(username, name, actor=actor)
        except Missing:
            raise ApiError(Kind.NOT_FOUND, f"Home directory '{name}' not found.") from None
        finally:
            self.forget(username)
        await self._work.run(_thd_remove_tree, self.path(username, name))

    async def remove_all(self, username: str) -> None:
        """Deletes a removed user's storage (rows went with the principal)."""
        self.forget(username)
        await self._work.run(_thd_remove_tree, self.user_dir(username))
