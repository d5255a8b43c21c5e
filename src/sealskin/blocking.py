"""Thread pools owned by services, so blocking work never runs on the reactor.

The reactor's shared pool also resolves host names: we never use it
(``deferToThread``), each kind of blocking work gets its own pool instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

P = ParamSpec("P")
T = TypeVar("T")


class Pool:
    """A named thread pool that is started and stopped by its owning service."""

    def __init__(self, reactor: IReactorFromThreads, name: str, max_threads: int) -> None:
        self._reactor = reactor
        self.pool = ThreadPool(minthreads=0, maxthreads=max_threads, name=name)

    def start(self) -> None:
        if not self.pool.started:
            self.pool.start()

    def stop(self) -> None:
        """Joins the threads; blocks until running calls return (bound them with timeouts)."""
        if self.pool.started:
            self.pool.stop()

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Runs ``fn`` on this pool. Cancelling abandons the result, not the thread."""
        return await deferToThreadPool(self._reactor, self.pool, fn, *args, **kwargs)
