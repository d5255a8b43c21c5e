"""Handlers: home directories, the caller's own and the admin variants (4.5, 4.9)."""

from __future__ import annotations

from sealskin.api import wire
from sealskin.api.edge import Call
from sealskin.errors import ApiError, Kind
from sealskin.orchestration.homes import Homes
from sealskin.orchestration.principals import Principals

NO_STORAGE = "Persistent storage is disabled for this account."


class HomeHandlers:
    def __init__(self, principals: Principals, homes: Homes) -> None:
        self._principals = principals
        self._homes = homes

    async def _require_storage(self, call: Call) -> None:
        if not (await self._principals.effective(call.caller)).persistent_storage:
            raise ApiError(Kind.FORBIDDEN, NO_STORAGE)

    async def list_mine(self, call: Call) -> wire.Json:
        await self._require_storage(call)
        return {"home_dirs": await self._homes.names(call.caller.username)}

    async def create_mine(self, call: Call) -> wire.Json:
        await self._require_storage(call)
        name = wire.name(call.body.get("home_name"), "home_name")
        await self._homes.create(call.caller.username, call.caller.username, name)
        return {"status": "success", "home_name": name}

    async def delete_mine(self, call: Call, home_name: str) -> None:
        await self._require_storage(call)
        await self._homes.remove(call.caller.username, call.caller.username,
                                 _name_or_404(home_name))

    async def _target(self, username: str, *, is_admin: bool) -> str:
        wire.name(username, "username")
        p = await self._principals.get(username)
        if p is None or p.is_admin != is_admin:
            raise ApiError(Kind.NOT_FOUND, f"User '{username}' not found.")
        if not (await self._principals.effective(p)).persistent_storage:
            raise ApiError(Kind.FORBIDDEN, NO_STORAGE)
        return username

    async def list_of(self, call: Call, username: str, *, is_admin: bool = False) -> wire.Json:
        target = await self._target(username, is_admin=is_admin)
        return {"home_dirs": await self._homes.names(target)}

    async def create_for(self, call: Call, username: str, *, is_admin: bool = False) -> wire.Json:
        target = await self._target(username, is_admin=is_admin)
        name = wire.name(call.body.get("home_name"), "home_name")
        await self._homes.create(call.caller.username, target, name)
        return {"status": "success", "home_name": name}

    async def delete_for(self, call: Call, username: str, home_name: str, *,
                         is_admin: bool = False) -> None:
        target = await self._target(username, is_admin=is_admin)
        await self._homes.remove(call.caller.username, target, _name_or_404(home_name))

    async def list_of_admin(self, call: Call, username: str) -> wire.Json:
        return await self.list_of(call, username, is_admin=True)

    async def create_for_admin(self, call: Call, username: str) -> wire.Json:
        return await self.create_for(call, username, is_admin=True)

    async def delete_for_admin(self, call: Call, username: str, home_name: str) -> None:
        await self.delete_for(call, username, home_name, is_admin=True)


def _name_or_404(home_name: str) -> str:
    """Upstream answers 404 for an invalid name in a DELETE path (4.5)."""
    if not wire.NAME_RE.fullmatch(home_name):
        raise ApiError(Kind.NOT_FOUND, "Home directory not found.")
    return home_name
