"""The autostart script a launch writes into the session's home (upstream-protocol 5.8).

App images start what ``~/.config/openbox/autostart`` (X11) or ``~/.config/labwc/autostart``
(Wayland) says; a store's script is how an app is opened in its desktop, with the file or
URL the session was asked to open. Which script: the app's own base64 script for the mode,
else (``autostart`` apps from a store) the store's cached one, else none.

The home belongs to the app, which may have put anything there, symlinks included: the
script is written below the home without following any (a link is refused, never
followed out of the user's storage).
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Awaitable, Callable

from twisted.logger import Logger

from sealskin.blocking import Pool
from sealskin.crypto import CryptoError
from sealskin.crypto.envelope import b64decode_strict
from sealskin.errors import ApiError, Kind
from sealskin.model import InstalledApp
from sealskin.orchestration import paths
from sealskin.orchestration.ownership import AppUser

log = Logger()

SCRIPT_FIELDS = {False: "custom_autostart_script_b64", True: "custom_autostart_wayland_script_b64"}
WINDOW_MANAGERS = {False: "openbox", True: "labwc"}

# (store name, app id in that store, wayland?) -> the cached script, None if it has none
StoreScript = Callable[[str, str, bool], Awaitable[bytes | None]]


async def script_for(app: InstalledApp, wayland: bool,
                     store_script: StoreScript | None) -> bytes | None:
    """The script a launch of ``app`` writes, or None."""
    cfg = app.provider_config
    custom = cfg.get(SCRIPT_FIELDS[wayland])
    if custom:
        try:
            return b64decode_strict(custom)
        except CryptoError:  # written by an older version that did not check it
            log.warn("app {app_id}: its {field} is not base64; no autostart script written",
                     app_id=app.id, field=SCRIPT_FIELDS[wayland])
            return None
    if cfg.get("autostart") and app.source not in ("", "manual") and store_script is not None:
        return await store_script(app.source, app.source_app_id, wayland)
    return None


async def write(work: Pool, home: str, wayland: bool, body: bytes, owner: AppUser) -> None:
    """Writes ``body`` as the home's autostart script for the mode (on the work pool)."""
    await work.run(_thd_write, home, wayland, body, owner)


def _thd_write(home: str, wayland: bool, body: bytes, owner: AppUser) -> None:
    """``<home>/.config/<wm>/autostart``, mode 0755 (directories made 0755), given to the
    app user; replaced whole, never half-written. Work pool only. ApiError naming the
    path for what is in the way: a symlink (403), a file or a directory (409)."""
    parts = (".config", WINDOW_MANAGERS[wayland], "autostart")
    done = 0  # how many parts were reached: the error names the next one
    try:
        fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            for part in parts[:-1]:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                    owner.give(part, dir_fd=fd)
                except FileExistsError:
                    pass
                child = paths.open_below_dir(fd, part)
                os.close(fd)
                fd = child
                done += 1
            _write_replacing(fd, parts[-1], body, owner)
        finally:
            os.close(fd)
    except OSError as e:
        where = "/".join(parts[:done + 1])
        if e.errno == errno.ELOOP:
            raise ApiError(Kind.FORBIDDEN, f"'{where}' in the home is a symbolic link; the "
                           "server does not follow it: remove it to launch.") from None
        if e.errno in (errno.ENOTDIR, errno.EISDIR, errno.EEXIST):
            kind = "a directory" if e.errno == errno.EISDIR else "not a directory"
            raise ApiError(Kind.CONFLICT, f"'{where}' in the home is {kind}, where the "
                           "app's autostart script goes: remove it to launch.") from None
        with paths.translated():
            raise


def _write_replacing(dir_fd: int, name: str, body: bytes, owner: AppUser) -> None:
    tmp = f".{name}.{uuid.uuid4().hex}.tmp"
    out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                  0o755, dir_fd=dir_fd)
    try:
        with os.fdopen(out, "wb") as f:
            os.fchmod(f.fileno(), 0o755)  # whatever the umask
            owner.give_fd(f.fileno())
            f.write(body)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
