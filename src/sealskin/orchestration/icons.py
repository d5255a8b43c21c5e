"""App icons: uploaded logos stored as files, served by id (upstream-protocol 4.2, 4.10).

The upstream decoded *any* logo leniently as base64, so URL logos became garbage
icons (10, R5). Here ``http(s)://`` and ``/api/app_icon/`` values are URLs kept
as they are; anything else must be strict base64 (a ``data:image/...;base64,``
prefix is allowed) of a PNG, JPEG, SVG or WebP image, written atomically to
``<icons>/<id>.png``; the logo then becomes ``/api/app_icon/<id>``.
"""

from __future__ import annotations

import os
import re

import attrs

from sealskin.blocking import Pool
from sealskin.crypto import CryptoError
from sealskin.crypto.envelope import b64decode_strict
from sealskin.errors import ApiError, Kind
from sealskin.model import InstalledApp

ICON_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ICON_PREFIX = "/api/app_icon/"
MAX_ICON_BYTES = 1024 * 1024
_DATA_URL = re.compile(r"^data:image/[a-z0-9.+-]+;base64,", re.IGNORECASE)


def check_icon_id(app_id: str) -> str:
    if not ICON_ID_RE.fullmatch(app_id):
        raise ApiError(Kind.INVALID, "'app_id' must be 1-64 letters, digits, '_' or '-'.")
    return app_id


def is_url(logo: str) -> bool:
    return logo.startswith(("http://", "https://", ICON_PREFIX))


def image_kind(data: bytes) -> str | None:
    """``png``, ``jpeg``, ``webp`` or ``svg`` by magic bytes, else None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    head = data[:1024].lstrip().lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
        return "svg"
    return None


def decode_logo(logo: str, *, max_bytes: int = MAX_ICON_BYTES) -> bytes:
    """Strict base64 of an image; raises INVALID (TOO_LARGE past ``max_bytes``)."""
    text = _DATA_URL.sub("", logo.strip(), count=1)
    if len(text) > (max_bytes * 4) // 3 + 4:
        raise ApiError(Kind.TOO_LARGE, f"'logo' is larger than {max_bytes} bytes.")
    try:
        data = b64decode_strict(text)
    except CryptoError:
        data = b""
    if image_kind(data) is None:
        raise ApiError(Kind.INVALID, "'logo' must be an http(s) URL, /api/app_icon/<id>, or "
                                     "base64 of a PNG, JPEG, SVG or WebP image.")
    return data


class Icons:
    """Reads and writes ``<root>/<id>.png`` on the work pool."""

    def __init__(self, root: str, work: Pool, *, max_bytes: int = MAX_ICON_BYTES) -> None:
        self._root = root
        self._work = work
        self._max_bytes = max_bytes

    async def read(self, app_id: str) -> bytes:
        """The icon's bytes; raises INVALID for a bad id, NOT_FOUND when absent."""
        path = os.path.join(self._root, check_icon_id(app_id) + ".png")
        data = await self._work.run(_thd_read, path, self._max_bytes)
        if data is None:
            raise ApiError(Kind.NOT_FOUND, "Icon not found.")
        return data

    async def prepare(self, app: InstalledApp, old: InstalledApp | None) -> InstalledApp:
        """The app with its logo resolved (install: ``old`` None; update: the stored app).

        An empty logo on update keeps the old one. Validation happens before any write.
        """
        logo = app.logo.strip()
        if not logo:
            return attrs.evolve(app, logo=old.logo) if old is not None else app
        if is_url(logo):
            return attrs.evolve(app, logo=logo)
        data = decode_logo(logo, max_bytes=self._max_bytes)
        app_id = check_icon_id(app.id)
        await self._work.run(_thd_write, self._root, app_id + ".png", data)
        return attrs.evolve(app, logo=ICON_PREFIX + app_id)

    async def remove(self, app_id: str) -> None:
        if ICON_ID_RE.fullmatch(app_id):
            await self._work.run(_thd_remove, os.path.join(self._root, app_id + ".png"))


def _thd_read(path: str, max_bytes: int) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read(max_bytes + 1)[:max_bytes]
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def _thd_write(root: str, name: str, data: bytes) -> None:
    os.makedirs(root, mode=0o700, exist_ok=True)
    path = os.path.join(root, name)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _thd_remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
