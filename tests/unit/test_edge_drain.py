"""Shutdown waits for in-flight API requests, but only up to the grace period."""

from __future__ import annotations

from typing import Any

from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.web.test.requesthelper import DummyRequest

from sealskin.api.edge import Access, Edge, Route


def _edge_with_slow_route(gate: Deferred[None]) -> tuple[Edge, Route]:
    async def slow(request: Any) -> dict[str, str]:
        await gate
        return {"done": "yes"}

    return Edge(crypto=None, auth=None), Route("POST", "/x", slow, Access.PLAIN)  # type: ignore[arg-type]


def test_drain_waits_for_a_running_request() -> None:
    clock, gate = task.Clock(), Deferred[None]()
    edge, route = _edge_with_slow_route(gate)
    served = Deferred.fromCoroutine(edge.serve(route, DummyRequest([b""]), {}))
    drained = Deferred.fromCoroutine(edge.drain(clock, 10))
    assert not drained.called
    gate.callback(None)
    assert served.called and drained.called
    assert drained.result == 0  # type: ignore[attr-defined]


def test_drain_gives_up_after_the_grace_period() -> None:
    clock, gate = task.Clock(), Deferred[None]()
    edge, route = _edge_with_slow_route(gate)
    Deferred.fromCoroutine(edge.serve(route, DummyRequest([b""]), {}))
    drained = Deferred.fromCoroutine(edge.drain(clock, 10))
    clock.advance(9)
    assert not drained.called
    clock.advance(2)
    assert drained.called and drained.result == 1  # type: ignore[attr-defined]
    gate.callback(None)
