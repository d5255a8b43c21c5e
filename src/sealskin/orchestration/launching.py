"""Launch planning: from a validated request to a LaunchSpec (upstream-protocol 4.3, 6).

Everything here is checked before any side effect except making the session's
home directories, which the plan's ``cleanup`` undoes.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs

from sealskin import authz
from sealskin.blocking import Pool
from sealskin.errors import ApiError, Kind
from sealskin.model import InstalledApp, Principal, UserSettings
from sealskin.orchestration import autostart, paths
from sealskin.orchestration.files import Storage
from sealskin.orchestration.homes import Homes
from sealskin.orchestration.meta import MetaApps, auto_home_name
from sealskin.orchestration.paths import SHARED_FILES
from sealskin.orchestration.ownership import AppUser
from sealskin.providers import GpuDevice, GpuRequest, LaunchSpec, Mount
from sealskin.providers.overrides import filter_overrides
from sealskin.store import Store

HOME_IN_CONTAINER = "/config"
FILES_IN_CONTAINER = "/config/Desktop/files"
LANGUAGE_RE = re.compile(r"^[A-Za-z]{2,3}(_[A-Za-z]{2})?(\.[A-Za-z0-9-]{1,16})?$")


@attrs.frozen
class LaunchRequest:
    """A validated launch body (api/wire checks the shapes)."""

    application_id: str
    home_name: str | None = None
    language: str | None = None
    selected_gpu: str | None = None
    url: str | None = None
    file_path: str | None = None  # a file already in the session's shared files
    wayland_mode: bool = True


@attrs.frozen
class LaunchPlan:
    session_id: str
    app: InstalledApp
    spec: LaunchSpec
    launch_context: Mapping[str, Any] | None
    home_path: str | None
    shared_path: str
    ephemeral: bool
    cleanup: Callable[[], Awaitable[None]] | None = None


@attrs.frozen
class ContainerDefaults:
    puid: int = 1000
    pgid: int = 1000
    shm_bytes: int = 1024 * 1024 * 1024
    pids_limit: int = 4096
    memory_bytes: int | None = None
    nano_cpus: int | None = None
    allow_dangerous: bool = False


def _thd_make_dirs(owner: AppUser, *paths: str) -> None:
    owner.make_dirs(*paths)


def _thd_remove(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


class Planner:
    def __init__(self, store: Store, homes: Homes, work: Pool, *, ephemeral_root: str,
                 gpus: Callable[[], Awaitable[Sequence[GpuDevice]]],
                 defaults: ContainerDefaults) -> None:
        self._store = store
        self._homes = homes
        self._work = work
        self._ephemeral_root = ephemeral_root
        self._gpus = gpus
        self._defaults = defaults
        self.store_script: autostart.StoreScript | None = None  # set once the stores exist
        self.meta: MetaApps | None = None  # set once the catalogue exists
        self.storage: Storage | None = None  # set once the file handlers exist

    async def app_for(self, caller: Principal, app_id: str) -> InstalledApp:
        app = await self._store.app(app_id)
        if app is None or not authz.may_launch(caller, app):
            raise ApiError(Kind.NOT_FOUND, f"Application with ID '{app_id}' not found.")
        return app

    def _meta(self) -> MetaApps:
        if self.meta is None:
            raise ApiError(Kind.INTERNAL, "internal error")
        return self.meta

    async def plan(self, caller: Principal, settings: UserSettings,
                   req: LaunchRequest, *, customize: bool = False) -> LaunchPlan:
        """``customize``: an admin's session on a meta app's template (the app lab)."""
        if customize:
            app = await self._store.app(req.application_id)
            if app is None:
                raise ApiError(Kind.NOT_FOUND,
                               f"Application with ID '{req.application_id}' not found.")
            if not app.is_meta_app:
                raise ApiError(Kind.BAD_REQUEST, "Only meta apps have a home to customize.")
        else:
            app = await self.app_for(caller, req.application_id)
        gpu = await self._gpu(settings, app, req.selected_gpu)
        if req.url is not None and not app.provider_config.get("url_support", False):
            raise ApiError(Kind.BAD_REQUEST, "This application cannot open URLs.")
        sid = str(uuid.uuid4())
        if customize:
            home, shared, ephemeral = await self._template_home(app, sid)
        elif app.is_meta_app:
            home, shared, ephemeral = await self._meta_home(caller, settings, app,
                                                            req.home_name, sid)
        else:
            home, shared, ephemeral = await self._home(caller, settings, app, req.home_name,
                                                       sid)
        cleanup = self._remover(os.path.join(self._ephemeral_root, sid)) if ephemeral else None
        try:
            script = await autostart.script_for(app, req.wayland_mode, self.store_script)
            if script is not None:
                await autostart.write(self._work, home, req.wayland_mode, script,
                                      AppUser(self._defaults.puid, self._defaults.pgid))
            env = await self._env(app, sid, req, gpu)
        except BaseException:
            if cleanup is not None:
                await cleanup()
            raise
        overrides, _refused = filter_overrides(
            app.provider_config.get("docker_overrides") or {},
            dangerous_allowed=app.allow_overrides if self._defaults.allow_dangerous else ())
        d = self._defaults
        spec = LaunchSpec(
            session_id=sid, username=caller.username, app_id=app.id,
            image=str(app.provider_config["image"]), port=int(app.provider_config["port"]),
            env=env, mounts=(Mount(home, HOME_IN_CONTAINER), Mount(shared, FILES_IN_CONTAINER)),
            gpu=gpu, pull_policy=app.pull_policy, memory_bytes=d.memory_bytes,
            nano_cpus=d.nano_cpus, pids_limit=d.pids_limit, shm_bytes=d.shm_bytes,
            overrides=overrides)
        context = None
        if req.url is not None:
            context = {"type": "url", "value": req.url}
        elif req.file_path is not None:
            context = {"type": "file", "value": os.path.basename(req.file_path)}
        return LaunchPlan(sid, app, spec, context, home, shared, ephemeral, cleanup)

    def _remover(self, root: str) -> Callable[[], Awaitable[None]]:
        """Undoes an ephemeral home if the launch fails."""
        async def remove() -> None:
            await self._work.run(_thd_remove, root)

        return remove

    async def _gpu(self, settings: UserSettings, app: InstalledApp,
                   selected: str | None) -> GpuRequest | None:
        """The GPU to pass, if allowed; BAD_REQUEST for one the host or app lacks."""
        if not selected or not settings.gpu:
            return None  # upstream drops the choice silently when gpu is off
        found = {g.device: g for g in await self._gpus()}
        if selected not in found:
            raise ApiError(Kind.BAD_REQUEST, f"GPU '{selected}' is not available on this host.")
        nvidia = found[selected].driver == "nvidia"
        wanted = "nvidia_support" if nvidia else "dri3_support"
        if not app.provider_config.get(wanted, False):
            kind = "NVIDIA" if nvidia else "DRI3"
            raise ApiError(Kind.BAD_REQUEST, f"This application does not support {kind} GPUs.")
        return GpuRequest("nvidia" if nvidia else "dri3", selected)

    async def _home(self, caller: Principal, settings: UserSettings, app: InstalledApp,
                    home_name: str | None, sid: str) -> tuple[str, str, bool]:
        """(home path, shared-files path, ephemeral?) -- only the caller's own storage."""
        user = caller.username
        persistent = (settings.persistent_storage and app.home_directories
                      and home_name and not paths.is_ephemeral(home_name))
        if not persistent or home_name is None:
            home, shared = await self._ephemeral_dirs(sid)
            return home, shared, True
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", home_name) or home_name == SHARED_FILES:
            raise ApiError(Kind.INVALID, "'home_name' must name one of your home directories.")
        if not await self._homes.exists(user, home_name):
            if not home_name.startswith("auto-"):
                raise ApiError(Kind.NOT_FOUND, f"Home directory '{home_name}' not found.")
            await self._homes.create(user, user, home_name, exist_ok=True)
        await self._homes.names(user)  # makes the shared-files home on first use
        return self._homes.path(user, home_name), self._homes.path(user, SHARED_FILES), False

    async def _ephemeral_dirs(self, sid: str) -> tuple[str, str]:
        """A session's own home and shared-files directories, removed when it ends."""
        root = os.path.join(self._ephemeral_root, sid)
        home, shared = os.path.join(root, "home"), os.path.join(root, "files")
        owner = AppUser(self._defaults.puid, self._defaults.pgid)
        await self._work.run(_thd_make_dirs, owner, home, shared)
        return home, shared

    async def _template_home(self, app: InstalledApp, sid: str) -> tuple[str, str, bool]:
        """The app lab: the template itself is the home; shared files are the session's."""
        template = self._meta().template_path(app)
        await self._meta().require_unused(app)  # one lab session per template at a time
        if not await self._work.run(os.path.isdir, template):
            raise ApiError(Kind.CONFLICT, f"The home template of '{app.name}' is missing.")
        _, shared = await self._ephemeral_dirs(sid)
        return template, shared, True

    async def _meta_home(self, caller: Principal, settings: UserSettings, app: InstalledApp,
                         home_name: str | None, sid: str) -> tuple[str, str, bool]:
        """A meta app's home: the user's ``auto-<app>`` home, given a copy of the template
        on first use; an ephemeral copy for ``cleanroom`` or without persistent storage."""
        meta, user = self._meta(), caller.username
        if settings.persistent_storage and not paths.is_ephemeral(home_name):
            name = auto_home_name(app.name)
            path = self._homes.path(user, name)
            if not await self._homes.exists(user, name):
                size = await meta.template_bytes(app)
                room = None if self.storage is None else await self.storage.room_bytes(caller)
                if room is not None and size > room:  # the copy counts against the limit
                    raise ApiError(Kind.TOO_LARGE, f"This app's home ({size} bytes) does not "
                                   f"fit in your storage: {room} bytes are left.")
                await self._homes.create(user, user, name, exist_ok=True)
                try:
                    await meta.copy_into(app, path)
                except BaseException:
                    await self._homes.remove(user, user, name)  # a later launch copies again
                    raise
                if self.storage is not None:
                    self.storage.note_written(user, size)
            await self._homes.names(user)  # makes the shared-files home on first use
            return path, self._homes.path(user, SHARED_FILES), False
        home, shared = await self._ephemeral_dirs(sid)
        try:
            await meta.copy_into(app, home)
        except BaseException:
            await self._work.run(_thd_remove, os.path.join(self._ephemeral_root, sid))
            raise
        return home, shared, True

    async def _env(self, app: InstalledApp, sid: str, req: LaunchRequest,
                   gpu: GpuRequest | None) -> dict[str, str]:
        """Container environment; later entries win (upstream-protocol 6.3)."""
        d = self._defaults
        env: dict[str, str] = {}
        for template in await self._store.templates():
            if template.name == app.app_template:
                env.update({k: str(v) for k, v in template.settings.items()})
        for item in app.provider_config.get("env") or ():
            env[str(item["name"])] = str(item["value"])
        env.update(PUID=str(d.puid), PGID=str(d.pgid), TZ="Etc/UTC", SUBFOLDER=f"/{sid}/")
        if req.wayland_mode:
            env["PIXELFLUX_WAYLAND"] = "true"
        if req.language:
            env["LC_ALL"] = env["LANG"] = req.language
        if req.url is not None:
            env["SEALSKIN_URL"] = req.url
        if req.file_path is not None:
            env["SEALSKIN_FILE"] = f"{FILES_IN_CONTAINER}/{os.path.basename(req.file_path)}"
        if gpu is not None and gpu.kind == "dri3":
            env["DRI_NODE"] = env["DRINODE"] = gpu.device
        return env
