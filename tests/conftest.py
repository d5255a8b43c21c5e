"""Shared fixtures: the real server in-process on ephemeral ports, real SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.base import DelayedCall

from independent_client import Client
from server_harness import admin_client, start_server


@pytest_twisted.async_yield_fixture
async def server(tmp_path: Any) -> AsyncIterator[Any]:
    svc = await start_server(str(tmp_path / "data"))
    yield svc
    await svc.stop()


@pytest.fixture
def admin(server: Any) -> Client:
    return admin_client(server)


@pytest.fixture(autouse=True)
def _no_leftover_delayed_calls() -> Any:
    """Fails a test that leaves timers behind (trial checked this; pytest-twisted does not)."""
    before = set(reactor.getDelayedCalls())
    yield
    left = [c for c in reactor.getDelayedCalls()
            if c not in before and c.active() and not _is_internal(c)]
    for c in left:
        c.cancel()
    assert not left, f"test left delayed calls: {left}"


def _is_internal(call: DelayedCall) -> bool:
    name = getattr(call.func, "__qualname__", repr(call.func))
    # HTTP servers' own housekeeping timers (log date cache, idle-connection timeouts)
    return any(part in name for part in ("_updateLogDateTime", "timeoutConnection",
                                         "_logDateTime", "__timedOut",
                                         # the global cooperator feeding request bodies;
                                         # cancelling it under a live task breaks it
                                         "Cooperator._tick"))
