"""Handlers: status, admin overview, users, admins, groups (upstream-protocol 4.2, 4.9)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import attrs

from sealskin.api import wire
from sealskin.api.edge import Call
from sealskin.errors import ApiError, Kind
from sealskin.model import Group, UserSettings
from sealskin.orchestration.homes import Homes
from sealskin.orchestration.host import HostFacts
from sealskin.orchestration.principals import Principals


class AdminHandlers:
    def __init__(self, principals: Principals, homes: Homes, host: HostFacts, *,
                 server_public_key: str, api_port: int, session_port: int,
                 end_sessions: Callable[[str], Awaitable[int]]) -> None:
        self._end_sessions = end_sessions
        self._principals = principals
        self._homes = homes
        self._host = host
        self._server_public_key = server_public_key
        self._api_port = api_port
        self._session_port = session_port

    async def _gpus(self) -> list[dict[str, str]]:
        return [{"device": g.device, "driver": g.driver} for g in await self._host.gpus()]

    async def status(self, call: Call) -> wire.Json:
        """Any user, despite the path: the extension's login check (4.2)."""
        settings = await self._principals.effective(call.caller)
        disk = await self._host.disk()
        return {
            "is_admin": call.caller.is_admin,
            "username": call.caller.username,
            "settings": wire.settings_json(settings),
            "gpus": await self._gpus() if settings.gpu else [],
            "cpu_model": await self._host.cpu_model(),
            "disk_total": disk[0] if disk else None,
            "disk_used": disk[1] if disk else None,
        }

    async def data(self, call: Call) -> wire.Json:
        everyone = await self._principals.everyone()
        return {
            "admins": [wire.user(p) for p in everyone if p.is_admin],
            "users": [wire.user(p) for p in everyone if not p.is_admin],
            "groups": [wire.group(g) for g in await self._principals.groups()],
            "server_public_key": self._server_public_key,
            "api_port": self._api_port,
            "session_port": self._session_port,
            "gpus": await self._gpus(),
        }

    async def _create(self, call: Call, *, is_admin: bool) -> wire.Json:
        username = wire.name(call.body.get("username"), "username")
        if username == "all":
            raise wire.invalid("'all' is reserved: in an app's users it means everyone.")
        public_key = wire.string(call.body, "public_key", max_len=wire.MAX_PEM_CHARS,
                                 optional=True)
        settings = None if is_admin else wire.settings(call.body.get("settings"))
        if settings is not None and settings.group != "none":
            await self._require_group(settings.group)
        p, private = await self._principals.create(
            call.caller.username, username, public_key, is_admin=is_admin, settings=settings)
        return {"user": wire.user(p), "private_key": private}

    async def _require_group(self, name: str) -> None:
        if name not in {g.name for g in await self._principals.groups()}:
            raise wire.invalid(f"Group '{name}' does not exist.")

    async def create_user(self, call: Call) -> wire.Json:
        return await self._create(call, is_admin=False)

    async def create_admin(self, call: Call) -> wire.Json:
        return await self._create(call, is_admin=True)

    async def update_user(self, call: Call, username: str) -> wire.Json:
        wire.name(username, "username")
        current = await self._principals.get(username)
        base = current.settings if current and current.settings else None
        settings = wire.settings(wire.mapping(call.body, "settings", optional=False), base=base)
        if settings.group != "none":
            await self._require_group(settings.group)
        p = await self._principals.set_settings(call.caller.username, username, settings)
        if not (await self._principals.effective(p)).active:
            await self._end_sessions(username)  # a deactivated user keeps no session
        return wire.user(p)

    async def delete_user(self, call: Call, username: str) -> None:
        await self._delete(call, username, is_admin=False)

    async def delete_admin(self, call: Call, username: str) -> None:
        await self._delete(call, username, is_admin=True)

    async def _delete(self, call: Call, username: str, *, is_admin: bool) -> None:
        wire.name(username, "username")
        await self._principals.remove(call.caller.username, username, is_admin=is_admin)
        self._homes.forget(username)  # their rows went with them
        await self._end_sessions(username)
        await self._homes.remove_all(username)

    async def create_group(self, call: Call) -> wire.Json:
        name = wire.name(call.body.get("name"), "name")
        if name in ("none", "all"):
            raise wire.invalid(f"'{name}' is reserved: it means "
                               f"{'no group' if name == 'none' else 'every group'}.")
        settings = wire.settings(call.body.get("settings"))
        group = await self._principals.add_group(call.caller.username,
                                                 Group(name, _no_group(settings)))
        return wire.group(group)

    async def update_group(self, call: Call, group_name: str) -> wire.Json:
        wire.name(group_name, "group_name")
        current = {g.name: g for g in await self._principals.groups()}.get(group_name)
        settings = wire.settings(wire.mapping(call.body, "settings", optional=False),
                                 base=current.settings if current else None)
        group = await self._principals.set_group(call.caller.username,
                                                 Group(group_name, _no_group(settings)))
        for p in await self._principals.everyone():  # a deactivated group's members too
            if p.settings is not None and p.settings.group == group_name \
                    and not (await self._principals.effective(p)).active:
                await self._end_sessions(p.username)
        return wire.group(group)

    async def delete_group(self, call: Call, group_name: str) -> None:
        wire.name(group_name, "group_name")
        members = [p.username for p in await self._principals.everyone()
                   if p.settings is not None and p.settings.group == group_name]
        if members:
            raise ApiError(Kind.CONFLICT, f"Group '{group_name}' still has members "
                           f"({', '.join(members[:5])}); move them first.")
        await self._principals.remove_group(call.caller.username, group_name)


def _no_group(settings: UserSettings) -> UserSettings:
    """A group's own ``group`` key is meaningless; keep the wire default (5.5)."""
    return attrs.evolve(settings, group="none")
