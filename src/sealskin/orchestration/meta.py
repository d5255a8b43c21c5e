"""Meta apps: an installed app plus a home template an admin prepared (upstream-protocol 4.10).

An admin makes a meta app from a normal one (``POST /api/admin/apps/meta``), then opens a
session on its template (``meta_customize``: the template itself is the home) to set the
app up. Users' sessions start from a copy: their persistent ``auto-<app>`` home gets one
on first use, an ephemeral home gets a fresh one each time (5.11, 6.4).

Templates live under the server's internal directory, never in the users' namespace
(upstream kept them beside the homes, W15). Copies keep symbolic links as links (they are
never followed) and belong to the app user.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import uuid

import attrs
from twisted.logger import Logger

from sealskin.blocking import Pool
from sealskin.errors import ApiError, Kind
from sealskin.model import InstalledApp
from sealskin.orchestration.catalogue import Catalogue
from sealskin.orchestration.files import tree_bytes
from sealskin.orchestration.ownership import AppUser
from sealskin.store import Store

log = Logger()

TEMPLATE_RE = re.compile(r"^meta_[0-9a-f-]{36}$")
AUTO_HOME_CHARS = 50  # the server cuts derived home names to this (5.11)


@attrs.frozen
class MetaRequest:
    """A validated ``POST /api/admin/apps/meta`` body."""

    name: str
    base_app_id: str
    logo: str = ""
    custom_autostart_script_b64: str | None = None
    custom_autostart_wayland_script_b64: str | None = None
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()


def auto_home_name(app_name: str) -> str:
    """``auto-<slug>``: lower case, runs of spaces and ``_`` become ``-``, anything else
    outside ``[a-z0-9-]`` is dropped; trimmed and cut as the server does (5.11)."""
    slug = re.sub(r"[\s_]+", "-", app_name.strip().lower())
    slug = re.sub(r"[^a-z0-9-]", "", slug).strip("-")[:AUTO_HOME_CHARS] or "app"
    return "auto-" + slug


def _thd_make_template(path: str, owner: AppUser) -> None:
    os.mkdir(path, 0o700)
    owner.make_dirs(os.path.join(path, "Desktop", "files"))
    owner.give(path)


def _special_files(folder: str, names: list[str]) -> set[str]:
    """What a copy leaves out: FIFOs, sockets and devices (a FIFO would block the copy)."""
    left_out = set()
    for name in names:
        mode = os.lstat(os.path.join(folder, name)).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
            left_out.add(name)
    return left_out


def _thd_copy_template(template: str, dest: str, owner: AppUser) -> None:
    """Copies the template's contents into ``dest`` (made if missing); links stay links,
    special files are left out, everything copied goes to the app user."""
    shutil.copytree(template, dest, symlinks=True, dirs_exist_ok=True, ignore=_special_files)
    owner.give(dest)
    for top, dirs, files in os.walk(dest, followlinks=False):
        for name in dirs + files:
            owner.give(os.path.join(top, name))


def _thd_remove(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


class MetaApps:
    def __init__(self, store: Store, catalogue: Catalogue, work: Pool, root: str,
                 owner: AppUser) -> None:
        self._store = store
        self._catalogue = catalogue
        self._work = work
        self._root = root
        self._owner = owner
        os.makedirs(root, mode=0o711, exist_ok=True)

    def template_path(self, app: InstalledApp) -> str:
        """The app's template directory; CONFLICT for a name that is not one of ours."""
        name = app.home_template_name or ""
        if not app.is_meta_app or not TEMPLATE_RE.fullmatch(name):
            raise ApiError(Kind.CONFLICT, f"'{app.name}' has no home template.")
        return os.path.join(self._root, name)

    async def check_home_name(self, app: InstalledApp) -> None:
        """CONFLICT if another meta app's users' homes would be this one's: the home's
        name comes from the app's name (``auto-<slug>``, 5.11)."""
        home = auto_home_name(app.name)
        for other in await self._store.apps():
            if other.is_meta_app and other.id != app.id and auto_home_name(other.name) == home:
                raise ApiError(Kind.CONFLICT, f"The meta app '{other.name}' already keeps its "
                               f"users' data in '{home}'; choose a name that differs in "
                               "letters or digits.")

    async def create(self, actor: str, req: MetaRequest) -> InstalledApp:
        """A new meta app copied from its base app, with an empty template."""
        base = await self._catalogue.installed(req.base_app_id)
        if base.is_meta_app:
            raise ApiError(Kind.INVALID, "'base_app_id' must name a normal app, not a meta app.")
        app_id = str(uuid.uuid4())
        config = dict(base.provider_config)
        config.update(custom_autostart_script_b64=req.custom_autostart_script_b64,
                      custom_autostart_wayland_script_b64=req.custom_autostart_wayland_script_b64)
        app = attrs.evolve(
            base, id=app_id, name=req.name, logo=req.logo or base.logo,
            provider_config=config, users=req.users, groups=req.groups, is_meta_app=True,
            base_app_id=base.id, auto_update=False, home_template_name=f"meta_{app_id}",
            home_directories=True)  # its users' homes are the auto- homes made from it
        await self.check_home_name(app)
        template = self.template_path(app)
        await self._work.run(_thd_make_template, template, self._owner)
        try:
            return await self._catalogue.install(actor, app)
        except BaseException:
            await self._work.run(_thd_remove, template)
            raise

    async def removed(self, app: InstalledApp) -> None:
        """After a meta app's removal: its template goes too."""
        if app.is_meta_app and TEMPLATE_RE.fullmatch(app.home_template_name or ""):
            await self._work.run(_thd_remove, self.template_path(app))

    async def require_unused(self, app: InstalledApp) -> None:
        """CONFLICT while a session (the app lab's) has the template as its home."""
        if not app.is_meta_app or not TEMPLATE_RE.fullmatch(app.home_template_name or ""):
            return
        template = self.template_path(app)
        if any(s.home_path == template for s in await self._store.sessions()):
            raise ApiError(Kind.CONFLICT, f"The home template of '{app.name}' is in use by a "
                           "running session; stop the session first.")

    async def template_bytes(self, app: InstalledApp) -> int:
        """What a copy of the app's template adds to a user's storage."""
        return await self._work.run(tree_bytes, self.template_path(app))

    async def copy_into(self, app: InstalledApp, dest: str) -> None:
        """Copies the app's template into ``dest`` (a new home). CONFLICT if it is gone."""
        template = self.template_path(app)
        if not await self._work.run(os.path.isdir, template):
            raise ApiError(Kind.CONFLICT, f"The home template of '{app.name}' is missing.")
        await self._work.run(_thd_copy_template, template, dest, self._owner)
