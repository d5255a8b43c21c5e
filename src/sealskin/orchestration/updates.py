"""Image updates of installed apps: check, pull now, and the scheduled auto-update (4.10, 6.11).

``check_update`` reads the registry directly (no pull) with a deadline, so a
machine without a registry gets a 502 in well under a second or two, never a
hang. ``pull_latest`` checks first, then pulls with policy ``always``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from sealskin.errors import ApiError, Kind
from sealskin.model import InstalledApp
from sealskin.orchestration.catalogue import Catalogue
from sealskin.orchestration.ops import Operations, shielded
from sealskin.orchestration.registry import Registry, RegistryError
from sealskin.providers import Provider, ProviderError
from sealskin.store import Store

log = Logger()


def _short(image_id: str | None) -> str | None:
    return image_id.removeprefix("sha256:")[:10] if image_id else None


class Updates:
    def __init__(self, store: Store, catalogue: Catalogue, provider: Provider,
                 registry: Registry, clock: IReactorTime, ops: Operations) -> None:
        self._store = store
        self._catalogue = catalogue
        self._provider = provider
        self._registry = registry
        self._clock = clock
        self._ops = ops

    async def _app(self, app_id: str) -> InstalledApp:
        app = await self._store.app(app_id)
        if app is None:
            raise ApiError(Kind.NOT_FOUND, f"Application with ID '{app_id}' not found.")
        return app

    async def check_update(self, app_id: str) -> dict[str, Any]:
        """``{current_sha, update_available}``; NOT_FOUND, BAD_GATEWAY escape."""
        app = await self._app(app_id)
        image = str(app.provider_config["image"])
        current = await self._local_id(image)
        try:
            latest = await self._registry.latest_id(image)
        except RegistryError as e:
            raise ApiError(Kind.BAD_GATEWAY, e.detail) from None
        return {"current_sha": _short(current),
                "update_available": _short(current) != _short(latest)}

    async def pull_latest(self, app_id: str) -> dict[str, Any]:
        """``{status: "success", new_sha}``; owned, so a client disconnect does not stop it."""
        checked = await self.check_update(app_id)
        app = await self._app(app_id)
        return await shielded(self._ops.run(self._pull(app, checked)))

    async def _pull(self, app: InstalledApp, checked: dict[str, Any]) -> dict[str, Any]:
        image = str(app.provider_config["image"])
        try:
            new = await self._provider.pull(image, policy="always")
        except ProviderError as e:
            raise ApiError(Kind.UNAVAILABLE if e.unavailable else Kind.BAD_GATEWAY,
                           e.detail) from None
        if checked["update_available"] and _short(new) == checked["current_sha"]:
            raise ApiError(Kind.BAD_GATEWAY, "The newer image could not be pulled; the "
                                             "local image is unchanged.")
        self._catalogue.last_checked[app.id] = self._clock.seconds()
        return {"status": "success", "new_sha": _short(new)}

    async def _local_id(self, image: str) -> str | None:
        try:
            return await self._provider.image_id(image)
        except ProviderError as e:
            raise ApiError(Kind.UNAVAILABLE, e.detail) from None

    async def auto_update(self) -> None:
        """The scheduled run: pulls every ``auto_update`` app's image; failures are logged."""
        for app in await self._store.apps():
            if not app.auto_update or app.is_meta_app:
                continue
            image = str(app.provider_config["image"])
            try:
                await self._provider.pull(image, policy="always")
                self._catalogue.last_checked[app.id] = self._clock.seconds()
            except CancelledError:
                raise
            except ProviderError as e:
                log.warn("auto-update of {app_id} ({image}) failed: {detail}",
                         app_id=app.id, image=image, detail=e.detail)
            except Exception:
                log.failure("auto-update of {app_id} failed", app_id=app.id)


class AfterFirstInterval:
    """A ``TimerService`` callable that skips the run at start (upstream 6.11 sleeps first).

    A failure of one run is logged; the timer keeps going.
    """

    def __init__(self, name: str, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._name = name
        self._run = run
        self._started = False

    def __call__(self) -> Deferred[None] | None:
        if not self._started:
            self._started = True
            return None
        return Deferred.fromCoroutine(self._guarded())

    async def _guarded(self) -> None:
        try:
            await self._run()
        except CancelledError:
            raise
        except Exception:
            log.failure("scheduled {name} failed", name=self._name)
