"""Starting the real server in-process on ephemeral ports (used by fixtures and tests)."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import reactor

from independent_client import Client


def server_options(data_dir: str, **extra: str) -> dict[str, str]:
    opts = {
        "data-dir": data_dir,
        "api-endpoint": "tcp:0:interface=127.0.0.1",
        "session-endpoint": "tcp:0:interface=127.0.0.1",
        "server-key-bits": "2048",
        "admin-key-bits": "2048",
        "host-url": "127.0.0.1",
    }
    opts.update(extra)
    return opts


async def start_server(data_dir: str, **extra: str) -> Any:
    from sealskin.config import build_config
    from sealskin.service import SealskinService

    cfg = build_config(server_options(data_dir, **extra), {})
    svc = SealskinService(cfg, reactor)
    await svc.start()
    return svc


def admin_client(svc: Any) -> Client:
    with open(svc.paths.admin_json) as f:
        cfg = json.load(f)
    return Client(f"http://127.0.0.1:{svc.api_port}", cfg)


def user_client(admin: Client, username: str, private_key: str) -> Client:
    """A client for another principal of the same server (same config otherwise)."""
    return Client(admin.base, {**admin.config, "username": username,
                               "private_key": private_key})


async def make_user(admin: Client, name: str, **settings: Any) -> Client:
    """A new user with a server-made key, and a client speaking as them."""
    created = await admin.ok("POST", "/api/admin/users", {
        "username": name, "public_key": None, "settings": settings})
    return user_client(admin, name, created["private_key"])
