"""First-run bootstrap: the ``admin`` principal and its client config (3.5, 3.6)."""

from __future__ import annotations

import json
import os

from twisted.logger import Logger

from sealskin.blocking import Pool
from sealskin.orchestration.principals import BOOTSTRAP_ADMIN, Principals
from sealskin.store import Store

log = Logger()

DONE_KEY = "bootstrap.admin"


def _thd_write_private(path: str, text: str) -> None:
    """Writes ``text`` atomically with mode 0600."""
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


async def bootstrap_admin(store: Store, principals: Principals, work: Pool, *,
                          config_path: str, host: str, api_port: int, session_port: int,
                          server_public_key: str, key_bits: int, reset: bool = False) -> bool:
    """On the very first start only, creates ``admin`` and writes ``admin.json``.

    With ``reset`` (a lost ``admin.json``), gives the existing ``admin`` a new key pair
    and writes the file again; the old key stops working. Returns True if it wrote the
    file. The private key goes to the file (mode 0600), never the log.
    """
    first = await store.meta(DONE_KEY) is None
    if first:
        _, private = await principals.create("bootstrap", BOOTSTRAP_ADMIN, None,
                                             is_admin=True, key_bits=key_bits)
    elif reset:
        private = await principals.rekey("bootstrap", BOOTSTRAP_ADMIN, key_bits=key_bits)
    else:
        if not await work.run(os.path.exists, config_path):
            log.warn("The bootstrap admin's client config {path} is gone; start once with "
                     "--reset-admin-key to give 'admin' a new key and write it again",
                     path=config_path)
        return False
    assert private is not None  # a generated pair
    document = {
        "server_endpoint": host,
        "api_port": api_port,
        "session_port": session_port,
        "username": BOOTSTRAP_ADMIN,
        "private_key": private,
        "server_public_key": server_public_key,
    }
    await work.run(_thd_write_private, config_path, json.dumps(document, indent=2) + "\n")
    await store.set_meta(DONE_KEY, config_path)
    if first:
        log.info("Created the bootstrap admin; its client config is {path} (import it into "
                 "the SealSkin extension)", path=config_path)
    else:
        log.warn("Gave 'admin' a new key (--reset-admin-key): the old admin.json no longer "
                 "works; the new client config is {path}", path=config_path)
    return True
