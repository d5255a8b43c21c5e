"""Owned operations: state changes that a client disconnect must not cancel.

Klein cancels a handler when its client goes away. Handlers therefore await a
*view* of an operation owned here; cancelling the view leaves the operation
running, and shutdown waits for every owned operation.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger
from twisted.python.failure import Failure

T = TypeVar("T")
log = Logger()


class Operations:
    def __init__(self) -> None:
        self._running: set[Deferred[Any]] = set()

    def run(self, coro: Coroutine[Any, Any, T]) -> Deferred[T]:
        d = Deferred.fromCoroutine(coro)
        self._running.add(d)

        def done(result: object) -> object:
            self._running.discard(d)
            return result

        _ = d.addBoth(done)
        return d

    def __len__(self) -> int:
        return len(self._running)

    async def drain(self) -> None:
        """Waits for every owned operation (their failures are their owners' to report)."""
        if self._running:
            await DeferredList(list(self._running), consumeErrors=True)


def shielded(d: Deferred[T]) -> Deferred[T]:
    """A view of ``d``: cancelling the view does not cancel ``d``."""
    view: Deferred[T] = Deferred()

    def relay(result: T | Failure) -> None:
        if view.called:  # the caller left; nobody else will report a failure
            if isinstance(result, Failure):
                log.failure("operation failed after its caller left", result)
            return
        if isinstance(result, Failure):
            view.errback(result)
        else:
            view.callback(result)

    _ = d.addBoth(relay)
    return view
