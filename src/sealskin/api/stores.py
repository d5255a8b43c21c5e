"""Handlers: app stores, available apps, image updates and app icons (4.2, 4.10)."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from urllib.parse import unquote

from sealskin.api import wire
from sealskin.api.edge import Call
from sealskin.errors import ApiError, Kind
from sealskin.model import AppStore
from sealskin.orchestration.icons import Icons, check_icon_id
from sealskin.orchestration.stores import AppStores, check_name, check_url
from sealskin.orchestration.updates import Updates


def _store_json(s: AppStore, skipped: Sequence[str] = ()) -> wire.Json:
    """``{name, url}`` (4.10) and ours: ``skipped``, the entries left out at the last
    reading of the store, one sentence each (which app, which field)."""
    return {"name": s.name, "url": s.url, "skipped": list(skipped)}


class StoreHandlers:
    def __init__(self, stores: AppStores, updates: Updates, icons: Icons) -> None:
        self._stores = stores
        self._updates = updates
        self._icons = icons

    async def list_stores(self, call: Call) -> list[wire.Json]:
        return [_store_json(s, self._stores.skipped(s.name))
                for s in await self._stores.stores()]

    async def add_store(self, call: Call) -> wire.Json:
        store = AppStore(check_name(call.body.get("name")), check_url(call.body.get("url")))
        return _store_json(await self._stores.add(call.caller.username, store))

    async def remove_store(self, call: Call, store_name: str) -> None:
        name = check_name(unquote(store_name))  # percent-encoded by the extension (2.10)
        await self._stores.remove(call.caller.username, name)

    async def available(self, call: Call) -> list[wire.Json]:
        """The store is chosen by name; ``url``, when sent, must be that store's URL.

        So this endpoint never fetches a URL the admin did not register (W13, SSRF).
        """
        name = call.query.get("store_name")
        if not name:
            raise wire.invalid("The 'store_name' query parameter is required.")
        store = await self._stores.store_named(check_name(name))
        url = call.query.get("url")
        if url and url != store.url:
            raise wire.invalid(f"'url' is not the URL of the app store '{store.name}'.")
        refresh = call.query.get("refresh", "false").lower() == "true"
        return await self._stores.available(store.name, refresh=refresh)

    async def check_update(self, call: Call, app_id: str) -> wire.Json:
        return await self._updates.check_update(wire.name(app_id, "app_id"))

    async def pull_latest(self, call: Call, app_id: str) -> wire.Json:
        return await self._updates.pull_latest(wire.name(app_id, "app_id"))

    async def app_icon(self, call: Call, app_id: str) -> wire.Json:
        data = await self._icons.read(check_icon_id(unquote(app_id)))
        if not data:
            raise ApiError(Kind.NOT_FOUND, "Icon not found.")
        return {"icon_data_b64": base64.b64encode(data).decode()}
