"""App stores: the list (SQLite), fetching, the on-disk cache and available apps (5.7, 5.8).

Cache files are named by the SHA-256 of the store name, never the name itself
(upstream-protocol 10, W14): ``<cache>/<sha>.yml``, ``<sha>.meta`` (JSON, the
ETag) and ``<sha>.autostart/<app id>[-wayland]``. A store that cannot be fetched
or parsed never takes the server down: callers get a clear ApiError, the
scheduled refresh logs and goes on, and a cached copy keeps the store usable.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import posixpath
import re
import stat
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from twisted.internet.defer import CancelledError, DeferredSemaphore
from twisted.logger import Logger

from sealskin.blocking import Pool
from sealskin.errors import ApiError, Kind
from sealskin.model import AppStore
from sealskin.orchestration.fetch import FetchError, Fetcher
from sealskin.orchestration.store_format import (APP_ID_RE, StoreDocument, StoreFormatError,
                                                 parse_store)
from sealskin.store import Conflict, Missing, Store

log = Logger()

DEFAULT_STORE_NAME = "SealSkin Apps"
SEEDED_KEY = "app_stores_seeded"
STORE_NAME_RE = re.compile(r"^[A-Za-z0-9 _.-]{1,64}$")
MAX_URL_CHARS = 2048
SCRIPT_TIMEOUT_SECONDS = 10.0  # upstream-protocol 5.8
MAX_SCRIPT_BYTES = 256 * 1024


def check_name(name: object) -> str:
    """A store name: 1-64 letters, digits, spaces, '_', '-' or '.'; raises INVALID."""
    if not isinstance(name, str) or not STORE_NAME_RE.fullmatch(name) or not name.strip():
        raise ApiError(Kind.INVALID, "'name' must be 1-64 letters, digits, spaces, '_', "
                                     "'-' or '.'.")
    return name


def check_url(url: object) -> str:
    """An ``http(s)://`` URL, a ``file://`` URL or an absolute local path; raises INVALID."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_CHARS or \
            any(ord(c) < 33 for c in url):
        raise ApiError(Kind.INVALID, "'url' must be a URL of at most 2048 characters "
                                     "without spaces.")
    if local_path(url) is not None:
        return url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApiError(Kind.INVALID, "'url' must be an http(s) URL, a file:// URL or an "
                                     "absolute path.")
    return url


def local_path(url: str) -> str | None:
    """The file a local store reads (absolute, normalised), or None for http(s) stores."""
    if url.startswith("file://"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            return None
        path = unquote(parts.path)
    elif url.startswith("/"):
        path = url
    else:
        return None
    return os.path.normpath(path) if os.path.isabs(path) else None


def cache_key(store_name: str) -> str:
    return hashlib.sha256(store_name.encode()).hexdigest()


class AppStores:
    """Store list, fetching with ETag, cache, refresh and the available-apps view."""

    def __init__(self, store: Store, fetcher: Fetcher, work: Pool, cache_dir: str, *,
                 default_url: str) -> None:
        self._store = store
        self._fetcher = fetcher
        self._work = work
        self._cache_dir = cache_dir
        self._default_url = default_url
        self._seeded = False
        self._skipped: dict[str, tuple[str, ...]] = {}
        self._scripts = DeferredSemaphore(4)

    # -- the list ------------------------------------------------------------------

    async def stores(self) -> Sequence[AppStore]:
        await self._seed()
        return await self._store.app_stores()

    async def add(self, actor: str, s: AppStore) -> AppStore:
        await self._seed()
        path = local_path(s.url)
        if path is not None:  # a typo is said now, not at the first `available`
            await self._work.run(_thd_check_local, path, self._fetcher.max_bytes)
        try:
            await self._store.add_app_store(s, actor=actor)
        except Conflict:
            raise ApiError(Kind.CONFLICT,
                           f"An app store named '{s.name}' already exists.") from None
        return s

    async def remove(self, actor: str, name: str) -> None:
        await self._seed()
        try:
            await self._store.remove_app_store(name, actor=actor)
        except Missing:
            raise ApiError(Kind.NOT_FOUND, f"App store '{name}' not found.") from None
        await self._work.run(_thd_drop_cache, self._cache_dir, cache_key(name))
        self._skipped.pop(name, None)

    async def _seed(self) -> None:
        """Adds the default store once, at first start (upstream-protocol 5.7)."""
        if self._seeded:
            return
        if await self._store.meta(SEEDED_KEY) is None:
            if not await self._store.app_stores():
                default = AppStore(DEFAULT_STORE_NAME, self._default_url)
                await self._store.add_app_store(default, actor="bootstrap")
            await self._store.set_meta(SEEDED_KEY, "1")
        self._seeded = True

    async def store_named(self, name: str) -> AppStore:
        for s in await self.stores():
            if s.name == name:
                return s
        raise ApiError(Kind.NOT_FOUND, f"App store '{name}' not found.")

    # -- available apps ------------------------------------------------------------

    async def available(self, name: str, *, refresh: bool = False) -> list[dict[str, Any]]:
        """The store's apps (AvailableApp) from the cache, fetched when absent or asked.

        Escapes: NOT_FOUND (no such store), BAD_GATEWAY (unreachable, bad document,
        no cache to fall back on).
        """
        s = await self.store_named(name)
        cached = await self._work.run(_thd_read_cache, self._cache_dir, cache_key(name))
        if cached is not None and not refresh:
            doc = _parsed(cached[0], self._fetcher.max_bytes)
        else:
            doc = await self._refresh(s, cached)
        self._report(s, doc)
        return await self._work.run(_thd_with_scripts, self._cache_dir, cache_key(name),
                                    [dict(a) for a in doc.apps])

    async def _refresh(self, s: AppStore, cached: tuple[bytes, str | None] | None
                       ) -> StoreDocument:
        try:
            return await self.fetch(s, cached)
        except ApiError as e:
            if cached is None:
                raise
            log.warn("app store {store}: {detail}; using the cached copy", store=s.name,
                     detail=e.detail)
            return _parsed(cached[0], self._fetcher.max_bytes)

    async def fetch(self, s: AppStore, cached: tuple[bytes, str | None] | None = None
                    ) -> StoreDocument:
        """Fetches (with If-None-Match), parses, caches; refreshes autostart scripts."""
        key = cache_key(s.name)
        raw, etag = await self._download(s, cached)
        doc = _parsed(raw, self._fetcher.max_bytes)  # only a parsable document is cached
        if cached is None or raw != cached[0] or etag != cached[1]:
            await self._work.run(_thd_write_cache, self._cache_dir, key, raw, etag)
        path = local_path(s.url)
        if path is None:
            await self._fetch_scripts(s, doc)
        else:
            await self._work.run(_thd_copy_local_scripts, self._cache_dir, key,
                                 os.path.join(os.path.dirname(path), "autostart"),
                                 _script_names(doc))
        return doc

    async def _download(self, s: AppStore, cached: tuple[bytes, str | None] | None
                        ) -> tuple[bytes, str | None]:
        path = local_path(s.url)
        if path is not None:
            return await self._work.run(_thd_read_local, path, self._fetcher.max_bytes), None
        try:
            got = await self._fetcher.get(s.url, etag=cached[1] if cached else None)
        except FetchError as e:
            raise ApiError(Kind.BAD_GATEWAY, f"App store '{s.name}': {e.detail}") from None
        if got.status == 304 and cached is not None:
            log.debug("app store {store} not modified", store=s.name)
            return cached[0], cached[1]
        if got.status != 200:
            raise ApiError(Kind.BAD_GATEWAY, f"App store '{s.name}': the server answered "
                                             f"HTTP {got.status}.")
        return got.body, got.etag

    def _report(self, s: AppStore, doc: StoreDocument) -> None:
        self._skipped[s.name] = tuple(err.sentence() for err in doc.errors)
        for sentence in self._skipped[s.name]:
            log.warn("app store {store}: skipped {entry}", store=s.name, entry=sentence)

    async def cached_script(self, store_name: str, app_id: str, wayland: bool) -> bytes | None:
        """The autostart script cached for that store's app (5.8); None if none or empty."""
        if not APP_ID_RE.fullmatch(app_id):  # a file name below the cache: checked first
            return None
        name = app_id + ("-wayland" if wayland else "")
        path = os.path.join(self._cache_dir, cache_key(store_name) + ".autostart", name)
        body = await self._work.run(_thd_read_script, path)
        return body if body and body.strip() else None

    def skipped(self, name: str) -> Sequence[str]:
        """The entries of store ``name`` left out at its last reading (which app, why)."""
        return self._skipped.get(name, ())

    async def _fetch_scripts(self, s: AppStore, doc: StoreDocument) -> None:
        """Caches ``<dirname of url>/autostart/<id>[-wayland]``; a 404 caches empty (5.8)."""
        base = posixpath.dirname(s.url.split("?", 1)[0].split("#", 1)[0])
        for name in _script_names(doc):
            await self._scripts.run(self._fetch_script, s, f"{base}/autostart/{name}", name)

    async def _fetch_script(self, s: AppStore, url: str, name: str) -> None:
        try:
            got = await self._fetcher.get(url, timeout_seconds=SCRIPT_TIMEOUT_SECONDS)
        except FetchError as e:
            log.info("app store {store}: autostart script {name}: {detail}", store=s.name,
                     name=name, detail=e.detail)
            return
        if got.status in (200, 404):
            await self._work.run(_thd_write_script, self._cache_dir, cache_key(s.name), name,
                                 got.body[:MAX_SCRIPT_BYTES] if got.status == 200 else b"")

    async def refresh_all(self) -> None:
        """The scheduled refresh: every store, one failure logged and skipped."""
        for s in await self.stores():
            try:
                cached = await self._work.run(_thd_read_cache, self._cache_dir,
                                              cache_key(s.name))
                self._report(s, await self.fetch(s, cached))
            except CancelledError:
                raise
            except ApiError as e:
                log.warn("app store {store} not refreshed: {detail}", store=s.name,
                         detail=e.detail)
            except Exception:
                log.failure("app store {store} not refreshed", store=s.name)


def _parsed(raw: bytes, max_bytes: int) -> StoreDocument:
    try:
        return parse_store(raw, max_bytes=max_bytes)
    except StoreFormatError as e:
        raise ApiError(Kind.BAD_GATEWAY, f"The app store is malformed: {e.detail}") from None


# -- pool-thread functions: plain arguments in, plain data out -----------------------


def _thd_open_local(path: str) -> int:
    """A descriptor of the regular file ``path``; never blocks on a FIFO or a device."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", path)
    return fd


def _thd_check_local(path: str, max_bytes: int) -> None:
    """INVALID unless ``path`` is a readable regular file holding a store document
    (checked when a store is added: a typo is said then, not at its first use)."""
    try:
        with os.fdopen(_thd_open_local(path), "rb") as f:
            raw = f.read(max_bytes + 1)
    except OSError as e:
        raise ApiError(Kind.INVALID, f"'url': {path} is not a readable file "
                       f"({e.strerror}).") from None
    try:
        parse_store(raw, max_bytes=max_bytes)
    except StoreFormatError as e:
        raise ApiError(Kind.INVALID, f"'url': {path}: {e.detail}") from None


def _thd_read_local(path: str, max_bytes: int) -> bytes:
    try:
        with os.fdopen(_thd_open_local(path), "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError:
        raise ApiError(Kind.BAD_GATEWAY, "The local app store file cannot be read.") from None
    if len(data) > max_bytes:
        raise ApiError(Kind.BAD_GATEWAY, f"The app store is larger than {max_bytes} bytes.")
    return data


def _thd_read_cache(cache_dir: str, key: str) -> tuple[bytes, str | None] | None:
    try:
        with open(os.path.join(cache_dir, key + ".yml"), "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    try:
        with open(os.path.join(cache_dir, key + ".meta")) as f:
            etag = json.load(f).get("etag")
    except (OSError, ValueError, AttributeError):
        etag = None
    return raw, etag if isinstance(etag, str) else None


def _atomic_write(path: str, data: bytes, mode: int = 0o600) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _thd_write_cache(cache_dir: str, key: str, raw: bytes, etag: str | None) -> None:
    os.makedirs(cache_dir, mode=0o700, exist_ok=True)
    _atomic_write(os.path.join(cache_dir, key + ".yml"), raw)
    _atomic_write(os.path.join(cache_dir, key + ".meta"), json.dumps({"etag": etag}).encode())


def _thd_write_script(cache_dir: str, key: str, name: str, body: bytes) -> None:
    folder = os.path.join(cache_dir, key + ".autostart")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    _atomic_write(os.path.join(folder, name), body)  # name: a checked app id (+ "-wayland")


def _thd_with_scripts(cache_dir: str, key: str, apps: list[dict[str, Any]]
                      ) -> list[dict[str, Any]]:
    folder = os.path.join(cache_dir, key + ".autostart")
    for app in apps:
        cfg = app["provider_config"] = dict(app["provider_config"])
        if not cfg["autostart"]:
            continue
        for field, suffix in (("custom_autostart_script_b64", ""),
                              ("custom_autostart_wayland_script_b64", "-wayland")):
            cfg[field] = _script_b64(os.path.join(folder, app["id"] + suffix))
    return apps


def _script_names(doc: StoreDocument) -> list[str]:
    """``<id>`` and ``<id>-wayland`` of the store's ``autostart`` apps (checked ids)."""
    return [a["id"] + suffix for a in doc.apps if a["provider_config"]["autostart"]
            for suffix in ("", "-wayland")]


def _thd_copy_local_scripts(cache_dir: str, key: str, folder: str, names: list[str]) -> None:
    """A local store's scripts (``autostart/`` beside its file) into the cache; a
    missing or unreadable one caches empty, as a 404 does for a remote store. A store
    without that folder has no scripts: nothing is cached for it."""
    if not os.path.isdir(folder):
        return
    for name in names:
        try:
            with os.fdopen(_thd_open_local(os.path.join(folder, name)), "rb") as f:
                body = f.read(MAX_SCRIPT_BYTES)
        except OSError:
            body = b""
        _thd_write_script(cache_dir, key, name, body)


def _thd_read_script(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read(MAX_SCRIPT_BYTES)
    except OSError:
        return None


def _script_b64(path: str) -> str | None:
    data = _thd_read_script(path)
    return base64.b64encode(data).decode() if data and data.strip() else None


def _thd_drop_cache(cache_dir: str, key: str) -> None:
    for suffix in (".yml", ".meta"):
        try:
            os.remove(os.path.join(cache_dir, key + suffix))
        except FileNotFoundError:
            pass
    folder = os.path.join(cache_dir, key + ".autostart")
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            os.remove(os.path.join(folder, name))
        os.rmdir(folder)

