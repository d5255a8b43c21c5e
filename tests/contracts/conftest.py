"""Fixtures for the seam contract suites: each implementation plugs in here."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor, task

from sealskin.store import Store
from sealskin.store.sqlite import SqliteStore, migrate

OpenStore = Callable[[], Store]
"""Opens (and starts) a store on this test's database; call again to reopen it."""


@pytest.fixture(autouse=True)
def leaves_nothing_running() -> Iterator[None]:
    """Fails a test that leaves delayed calls or threads (trial checked; pytest-twisted doesn't)."""
    before = set(threading.enumerate())
    yield
    delayed = reactor.getDelayedCalls()
    assert not delayed, f"delayed calls left behind: {delayed}"
    extra = [t for t in threading.enumerate() if t not in before]
    assert not extra, f"threads left running: {extra}"


@pytest.fixture
def clock() -> task.Clock:
    """Audit times come from here; tests advance it."""
    return task.Clock()


def _sqlite(tmp_path: Path, clock: task.Clock) -> OpenStore:
    path = str(tmp_path / "sealskin.db")

    def open_store() -> Store:
        migrate(path)
        store = SqliteStore(reactor, path, clock=clock)
        store.start()
        return store

    return open_store


_IMPLEMENTATIONS = {"sqlite": _sqlite}


@pytest_twisted.async_yield_fixture(params=sorted(_IMPLEMENTATIONS))
async def open_store(request: pytest.FixtureRequest, tmp_path: Path,
                     clock: task.Clock) -> AsyncIterator[OpenStore]:
    """Opens stores of one implementation; every store opened is closed at teardown."""
    opened: list[Store] = []
    factory = _IMPLEMENTATIONS[request.param](tmp_path, clock)

    def open_and_track() -> Store:
        opened.append(factory())
        return opened[-1]

    yield open_and_track
    for store in opened:
        await store.close()


@pytest.fixture
def store(open_store: OpenStore) -> Store:
    """A started store on an empty, migrated database (closed by ``open_store``)."""
    return open_store()
