"""Public shares: a copy of one file, optionally password-protected and expiring.

Metadata lives in one small JSON file (``<data>/internal/shares/index.json``),
held in memory and rewritten atomically on change (no per-request disk reads,
upstream-protocol 10 P1); copies live beside it under ``files/<share_id>``.
Passwords are hashed with salted scrypt and compared in constant time; wrong
passwords are limited per share; download tokens are single use and short-lived
(upstream-protocol 4.8, 5.12, 10 W12).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import uuid
from collections.abc import Sequence
from typing import Any

import attrs
from twisted.internet.defer import DeferredLock
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from sealskin.blocking import Pool
from sealskin.errors import ApiError, Kind
from sealskin.orchestration import paths

log = Logger()

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
COPY_BYTES = 1024 * 1024


@attrs.frozen
class Share:
    id: str
    owner: str
    original_filename: str
    created_at: float
    size_bytes: int
    password_hash: str | None = None  # "scrypt$n$r$p$salt$hash" (base64)
    expiry_timestamp: float | None = None


@attrs.frozen
class ShareLimits:
    per_user: int = 100
    max_bytes: int = 5 * 1024**3
    password_attempts: int = 5
    attempt_window_seconds: float = 900.0
    token_seconds: float = 60.0
    max_password_chars: int = 1024


def _thd_hash(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                            dklen=32)
    return "$".join(["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P),
                     base64.b64encode(salt).decode(), base64.b64encode(digest).decode()])


def _thd_verify(password: str, encoded: str) -> bool:
    try:
        _, n, r, p, salt, want = encoded.split("$")
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n),
                             r=int(r), p=int(p), dklen=32)
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(got, base64.b64decode(want))


def _thd_copy(root: str, parts: Sequence[str], dest: str, max_bytes: int) -> tuple[str, int]:
    """Copies a confined regular file to ``dest`` (tmp + rename); returns (name, size)."""
    src = paths._thd_open_file(root, parts)
    tmp = dest + ".tmp"
    try:
        if os.fstat(src).st_size > max_bytes:
            raise ApiError(Kind.TOO_LARGE, f"Shared files are limited to {max_bytes} bytes.")
        size = 0
        with open(src, "rb", closefd=False) as f, open(tmp, "xb") as out:
            while block := f.read(COPY_BYTES):
                out.write(block)
                size += len(block)
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    finally:
        os.close(src)
    return parts[-1], size


def _thd_save(path: str, data: bytes) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _thd_unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _load(path: str) -> dict[str, Share]:
    """Startup only (before the reactor runs)."""
    try:
        with open(path, "rb") as f:
            raw: dict[str, Any] = json.load(f)
    except FileNotFoundError:
        return {}
    return {k: Share(id=k, **v) for k, v in raw.items()}


class Shares:
    def __init__(self, root: str, clock: IReactorTime, work: Pool, limits: ShareLimits) -> None:
        self._root = root
        self._files = os.path.join(root, "files")
        os.makedirs(self._files, mode=0o700, exist_ok=True)
        self._index = os.path.join(root, "index.json")
        self._clock = clock
        self._work = work
        self._limits = limits
        self._shares = _load(self._index)
        self._tokens: dict[str, tuple[str, float]] = {}
        self._attempts: dict[str, list[float]] = {}
        self._lock = DeferredLock()

    def file_path(self, share: Share) -> str:
        return os.path.join(self._files, share.id)

    def expired(self, share: Share) -> bool:
        return share.expiry_timestamp is not None and share.expiry_timestamp <= self._clock.seconds()

    def get(self, share_id: str) -> Share | None:
        return self._shares.get(share_id)

    def of(self, owner: str) -> list[Share]:
        mine = [s for s in self._shares.values() if s.owner == owner]
        return sorted(mine, key=lambda s: s.created_at, reverse=True)

    async def create(self, owner: str, root: str, parts: Sequence[str], password: str | None,
                     expiry_hours: int | None) -> Share:
        """Copies the file and records the share. TOO_LARGE / LIMITED past the limits."""
        if len(self.of(owner)) >= self._limits.per_user:
            raise ApiError(Kind.LIMITED, f"Too many shares ({self._limits.per_user}).")
        share_id = str(uuid.uuid4())
        dest = os.path.join(self._files, share_id)
        name, size = await self._work.run(_thd_copy, root, parts, dest, self._limits.max_bytes)
        hashed = await self._work.run(_thd_hash, password) if password else None
        now = self._clock.seconds()
        expiry = now + expiry_hours * 3600 if expiry_hours and expiry_hours > 0 else None
        share = Share(share_id, owner, name, now, size, hashed, expiry)
        self._shares[share_id] = share
        await self._save()
        return share

    async def remove(self, owner: str, share_id: str) -> None:
        share = self._shares.get(share_id)
        if share is None:
            raise ApiError(Kind.NOT_FOUND, "Share not found.")
        if share.owner != owner:
            raise ApiError(Kind.FORBIDDEN, "You do not own this share.")
        await self._drop(share)

    async def _drop(self, share: Share) -> None:
        self._shares.pop(share.id, None)
        self._attempts.pop(share.id, None)
        await self._save()
        await self._work.run(_thd_unlink, self.file_path(share))

    async def _save(self) -> None:
        data = json.dumps({s.id: {k: v for k, v in attrs.asdict(s).items()
                                  if k != "id" and v is not None}
                           for s in self._shares.values()}).encode()
        await self._lock.run(self._work.run, _thd_save, self._index, data)

    async def check_password(self, share: Share, password: str) -> bool:
        """Constant-time check; LIMITED after too many recent failures for this share."""
        now = self._clock.seconds()
        window = now - self._limits.attempt_window_seconds
        recent = [t for t in self._attempts.get(share.id, []) if t > window]
        self._attempts[share.id] = recent
        if len(recent) >= self._limits.password_attempts:
            raise ApiError(Kind.LIMITED, "Too many attempts; try again later.")
        if share.password_hash is None or len(password) > self._limits.max_password_chars:
            ok = False
        else:
            ok = await self._work.run(_thd_verify, password, share.password_hash)
        if not ok:
            recent.append(now)
        return ok

    def issue_token(self, share: Share) -> str:
        token = secrets.token_urlsafe(32)
        self._tokens[token] = (share.id, self._clock.seconds() + self._limits.token_seconds)
        return token

    def redeem(self, token: str) -> Share | None:
        """The share for a valid token, which is used up; None for unknown or expired."""
        found = self._tokens.pop(token, None)
        if found is None or found[1] < self._clock.seconds():
            return None
        share = self._shares.get(found[0])
        return None if share is None or self.expired(share) else share

    async def sweep(self) -> None:
        """Deletes expired shares, tokens and old attempt records."""
        now = self._clock.seconds()
        self._tokens = {t: v for t, v in self._tokens.items() if v[1] >= now}
        window = now - self._limits.attempt_window_seconds
        self._attempts = {k: [t for t in v if t > window] for k, v in self._attempts.items()
                          if any(t > window for t in v)}
        for share in [s for s in self._shares.values() if self.expired(s)]:
            await self._drop(share)
            log.info("share {share_id} expired", share_id=share.id)
