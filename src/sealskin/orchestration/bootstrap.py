"""First-run bootstrap: the ``admin`` principal and its client config (3.5, 3.6)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat

from twisted.logger import Logger

from sealskin.blocking import Pool
from sealskin.orchestration.principals import BOOTSTRAP_ADMIN, Principals
from sealskin.store import Store

log = Logger()

DONE_KEY = "bootstrap.admin"


def _thd_write_private(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` (mode 0600), flushed to disk, not yet in place."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _thd_check_replaceable(path: str) -> None:
    """OSError unless ``path`` is missing or a regular file (what a rename can replace)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        raise OSError(errno.EEXIST, "not a regular file; move it away and start again", path)


def _thd_remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


async def bootstrap_admin(store: Store, principals: Principals, work: Pool, *,
                          config_path: str, host: str, api_port: int, session_port: int,
                          server_public_key: str, key_bits: int, reset: bool = False) -> bool:
    """On the very first start only, creates ``admin`` and writes ``admin.json``.

    With ``reset`` (a lost ``admin.json``), gives the existing ``admin`` a new key pair
    and writes the file again; the old key stops working. Returns True if it wrote the
    file. The private key goes to the file (mode 0600), never the log.

    The file is written next to its place before the database changes, so a directory
    that cannot take it leaves the old key working; it is renamed into place after.
    """
    first = await store.meta(DONE_KEY) is None
    if not first and not reset:
        if not await work.run(os.path.exists, config_path):
            log.warn("The bootstrap admin's client config {path} is gone; start once with "
                     "--reset-admin-key to give 'admin' a new key and write it again",
                     path=config_path)
        return False
    private, public = await principals.new_pair(key_bits)
    document = {
        "server_endpoint": host,
        "api_port": api_port,
        "session_port": session_port,
        "username": BOOTSTRAP_ADMIN,
        "private_key": private,
        "server_public_key": server_public_key,
    }
    staged = f"{config_path}.tmp"
    await work.run(_thd_check_replaceable, config_path)
    await work.run(_thd_write_private, staged, json.dumps(document, indent=2) + "\n")
    try:
        # A first start that died before it finished left the account: it gets the new key.
        if first and await principals.get(BOOTSTRAP_ADMIN) is None:
            await principals.create("bootstrap", BOOTSTRAP_ADMIN, public, is_admin=True)
        else:
            await principals.set_key("bootstrap", BOOTSTRAP_ADMIN, public)
    except BaseException:
        await work.run(_thd_remove, staged)
        raise
    try:
        await work.run(os.replace, staged, config_path)
    except OSError as e:  # the key changed: never lose the only copy of the new one
        raise OSError(e.errno, f"'admin' has a new key, but its client config could not "
                      f"be put in place ({e.strerror}); it is in {staged}: move it to "
                      f"{config_path}") from None
    await store.set_meta(DONE_KEY, config_path)
    if first:
        log.info("Created the bootstrap admin; its client config is {path} (import it into "
                 "the SealSkin extension)", path=config_path)
    else:
        log.warn("Gave 'admin' a new key (--reset-admin-key): the old admin.json no longer "
                 "works; the new client config is {path}", path=config_path)
    return True
