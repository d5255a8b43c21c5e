"""Handlers: installed apps, templates and the caller's launchable apps (4.2, 4.10)."""

from __future__ import annotations

from urllib.parse import unquote

import attrs

from sealskin.api import apps_wire, wire
from sealskin.api.edge import Call
from sealskin.orchestration.catalogue import Catalogue
from sealskin.orchestration.meta import MetaApps
from sealskin.orchestration.sessions import visible_apps


class AppHandlers:
    def __init__(self, catalogue: Catalogue, meta: MetaApps) -> None:
        self._catalogue = catalogue
        self._meta = meta

    async def launchable(self, call: Call) -> list[wire.Json]:
        apps = visible_apps(call.caller, await self._catalogue.apps())
        return [apps_wire.launchable_json(a) for a in apps]

    async def installed(self, call: Call) -> list[wire.Json]:
        out = []
        for app in await self._catalogue.apps():
            sha, checked, pulling = await self._catalogue.status(app)
            out.append({**apps_wire.app_json(app), "image_sha": sha,
                        "last_checked_at": checked, "pull_status": pulling})
        return out

    async def _known_template(self, name: str) -> None:
        if name not in {t.name for t in await self._catalogue.templates()}:
            raise wire.invalid(f"Template '{name}' does not exist.")

    async def install(self, call: Call) -> wire.Json:
        # meta apps come from POST /api/admin/apps/meta only: they need their template
        app = attrs.evolve(apps_wire.installed_app(call.body), is_meta_app=False)
        await self._known_template(app.app_template)
        app = await self._catalogue.install(call.caller.username, app)
        return {**apps_wire.app_json(app),
                "refused_overrides": self._catalogue.refused_overrides(app)}

    async def update(self, call: Call, app_id: str) -> wire.Json:
        old = await self._catalogue.installed(wire.name(app_id, "app_id"))  # 404 before 422
        app = apps_wire.installed_app(call.body, app_id=app_id)
        # what makes a meta app is the server's, whatever the body says (the admin UI
        # sends the fields it shows)
        app = attrs.evolve(app, is_meta_app=old.is_meta_app, base_app_id=old.base_app_id,
                           home_template_name=old.home_template_name)
        if app.is_meta_app:
            await self._meta.check_home_name(app)
        await self._known_template(app.app_template)
        app = await self._catalogue.update(call.caller.username, app)
        return {**apps_wire.app_json(app),
                "refused_overrides": self._catalogue.refused_overrides(app)}

    async def remove(self, call: Call, app_id: str) -> None:
        app = await self._catalogue.installed(wire.name(app_id, "app_id"))
        await self._meta.require_unused(app)
        await self._catalogue.remove(call.caller.username, app.id)
        await self._meta.removed(app)

    async def create_meta(self, call: Call) -> wire.Json:
        """A meta app from a normal one, with an empty home template (4.10)."""
        app = await self._meta.create(call.caller.username, apps_wire.meta_request(call.body))
        return apps_wire.app_json(app)

    async def templates(self, call: Call) -> list[wire.Json]:
        return [{"name": t.name, "settings": dict(t.settings)}
                for t in await self._catalogue.templates()]

    async def put_template(self, call: Call) -> wire.Json:
        t = await self._catalogue.put_template(call.caller.username,
                                               apps_wire.template(call.body))
        return {"name": t.name, "settings": dict(t.settings)}

    async def remove_template(self, call: Call, template_name: str) -> None:
        name = unquote(template_name)  # percent-encoded by the extension (2.10)
        apps_wire.template({"name": name})
        await self._catalogue.remove_template(call.caller.username, name)
