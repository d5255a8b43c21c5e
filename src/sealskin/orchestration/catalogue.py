"""Installed apps and templates: install, update, remove, image pulls (5.6, 5.9)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from twisted.internet.defer import CancelledError
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from sealskin.errors import ApiError, Kind
from sealskin.model import InstalledApp, Template
from sealskin.orchestration.ops import Operations
from sealskin.providers import Provider, ProviderError
from sealskin.providers.overrides import filter_overrides
from sealskin.store import Conflict, Missing, Store

log = Logger()

DEFAULT_TEMPLATE = "Default"

# (new app, stored app or None) -> the app with its logo resolved; raises ApiError
LogoHook = Callable[[InstalledApp, InstalledApp | None], Awaitable[InstalledApp]]


class Catalogue:
    def __init__(self, store: Store, provider: Provider, clock: IReactorTime, ops: Operations,
                 *, allow_dangerous: bool) -> None:
        self._store = store
        self._provider = provider
        self._clock = clock
        self._ops = ops
        self._allow_dangerous = allow_dangerous
        self.last_checked: dict[str, float] = {}  # app id -> time of last successful pull
        self.prepare_logo: LogoHook | None = None  # orchestration/icons.py (4.10, R5)
        self.drop_logo: Callable[[str], Awaitable[None]] | None = None  # its stored icon

    def refused_overrides(self, app: InstalledApp) -> list[str]:
        allowed = app.allow_overrides if self._allow_dangerous else ()
        _, refused = filter_overrides(app.provider_config.get("docker_overrides") or {},
                                      dangerous_allowed=allowed)
        return refused

    async def apps(self) -> Sequence[InstalledApp]:
        return sorted(await self._store.apps(), key=lambda a: a.name.lower())

    async def _check_names(self, app: InstalledApp, old: InstalledApp | None) -> None:
        """Refuses user and group names that do not exist (a typo would grant nothing,
        silently). Only names this change adds are checked: a user removed since the
        app was saved must not block an unrelated edit."""
        users = set(app.users) - set(old.users if old else ()) - {"all"}
        groups = set(app.groups) - set(old.groups if old else ()) - {"all"}
        unknown = [f"user '{u}'" for u in sorted(users) if await self._store.principal(u) is None]
        unknown += [f"group '{g}'" for g in sorted(groups) if await self._store.group(g) is None]
        if unknown:
            raise ApiError(Kind.INVALID, "No such " + ", ".join(unknown) + ".")

    async def install(self, actor: str, app: InstalledApp) -> InstalledApp:
        await self._check_names(app, None)
        if self.prepare_logo is not None:
            if await self._store.app(app.id) is not None:  # before writing its icon
                raise ApiError(Kind.CONFLICT, f"Application '{app.id}' already exists.")
            app = await self.prepare_logo(app, None)
        try:
            await self._store.add_app(app, actor=actor)
        except Conflict:
            raise ApiError(Kind.CONFLICT, f"Application '{app.id}' already exists.") from None
        self.pull_in_background(app)
        return app

    async def installed(self, app_id: str) -> InstalledApp:
        """The installed app with this id; NOT_FOUND if there is none."""
        found = await self._store.app(app_id)
        if found is None:
            raise ApiError(Kind.NOT_FOUND, f"Application with ID '{app_id}' not found.")
        return found

    async def update(self, actor: str, app: InstalledApp) -> InstalledApp:
        old = await self.installed(app.id)
        await self._check_names(app, old)
        if self.prepare_logo is not None:
            app = await self.prepare_logo(app, old)
        try:
            await self._store.set_app(app, actor=actor)
        except Missing:
            raise ApiError(Kind.NOT_FOUND, f"Application with ID '{app.id}' not found.") from None
        if old.provider_config.get("image") != app.provider_config.get("image"):
            self.pull_in_background(app)
        return app

    async def remove(self, actor: str, app_id: str) -> None:
        try:
            await self._store.remove_app(app_id, actor=actor)
        except Missing:
            raise ApiError(Kind.NOT_FOUND, f"Application with ID '{app_id}' not found.") from None
        if self.drop_logo is not None:
            await self.drop_logo(app_id)

    def pull_in_background(self, app: InstalledApp) -> None:
        """Starts an owned pull; a failure is logged (the status shows it ended)."""
        _ = self._ops.run(self._pull(app))

    async def _pull(self, app: InstalledApp) -> None:
        image = str(app.provider_config["image"])
        try:
            await self._provider.pull(image, policy=app.pull_policy)
            self.last_checked[app.id] = self._clock.seconds()
        except CancelledError:
            raise
        except ProviderError as e:
            log.warn("pulling {image} for app {app_id} failed: {detail}", image=image,
                     app_id=app.id, detail=e.detail)

    async def status(self, app: InstalledApp) -> tuple[str | None, float | None, str | None]:
        """(image_sha: 10 hex chars or None, last_checked_at, pull_status)."""
        image = str(app.provider_config["image"])
        try:
            full = await self._provider.image_id(image)
        except ProviderError:
            full = None
        sha = full.split(":")[-1][:10] if full else None
        return sha, self.last_checked.get(app.id), self._provider.pull_status(image)

    # -- templates ---------------------------------------------------------------

    async def templates(self) -> Sequence[Template]:
        found = sorted(await self._store.templates(), key=lambda t: t.name)
        if not any(t.name == DEFAULT_TEMPLATE for t in found):
            default = Template(DEFAULT_TEMPLATE, {})
            await self._store.put_template(default, actor="bootstrap")
            found = sorted([*found, default], key=lambda t: t.name)
        return found

    async def put_template(self, actor: str, t: Template) -> Template:
        await self._store.put_template(t, actor=actor)
        return t

    async def remove_template(self, actor: str, name: str) -> None:
        if name == DEFAULT_TEMPLATE:
            raise ApiError(Kind.FORBIDDEN, "The built-in Default template cannot be deleted.")
        try:
            await self._store.remove_template(name, actor=actor)
        except Missing:
            raise ApiError(Kind.NOT_FOUND, f"Template '{name}' not found.") from None
