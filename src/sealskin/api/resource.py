"""The API as one Klein resource (its own ``Klein()``, never the global app)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote_to_bytes

from klein import Klein
from twisted.web.iweb import IRequest
from twisted.internet.defer import Deferred
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET
from twisted.web.server import Site
from werkzeug.exceptions import MethodNotAllowed, NotFound

from sealskin.api.edge import Edge, Route, render_error
from sealskin.httpbody import channel_factory


def _bind(app: Klein, edge: Edge, route: Route, endpoint: str) -> None:
    async def view(request: IRequest, **params: str) -> bytes:
        return await edge.serve(route, request, params)

    app.route(route.path, methods=[route.method], endpoint=endpoint)(view)


class ApiSite(Site):
    """The API port's Site: no tracebacks, no form parsing, optional access log."""

    displayTracebacks = False

    def __init__(self, root: IResource, *, request_factory: Any, access_log: bool,
                 max_head_bytes: int = 16384) -> None:
        # nothing here reads form fields; parsing each POST's Content-Type costs ~0.1 ms
        super().__init__(root, requestFactory=request_factory, parsePOSTFormSubmission=False)  # type: ignore[no-untyped-call]  # Twisted leaves this untyped
        self._access_log = access_log
        self.protocol = channel_factory(max_head_bytes)  # type: ignore[method-assign]  # a factory attribute, typed as a method

    def log(self, request: Any) -> None:
        if self._access_log:
            super().log(request)


class _FastLane(Resource):
    """Routes without path parameters, served by a dictionary look-up.

    Klein's per-request routing and wrapping cost about a third of a handshake
    (bench/api_bench.py: 426 -> 582 handshakes/s with one client); the hottest
    routes (handshake, status, applications, session and home lists) have exact
    paths. Routes with parameters, and every miss (404/405), go to Klein. A handler
    here is not cancelled when its client goes away: it simply finishes.
    """

    isLeaf = True

    def __init__(self, edge: Edge, lane: Sequence[Route], klein: IResource) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted leaves this untyped
        self._edge = edge
        self._lane = {(r.method.encode(), r.path.encode()): r for r in lane}
        self._lane_paths = {r.path.encode() for r in lane}
        self._klein = klein

    def render(self, request: Any) -> bytes | int:  # a server.Request (finished, _disconnected)
        route = self._lane.get((request.method, request.path))
        if route is None:
            if request.path in self._lane_paths:  # Klein does not know these paths
                return render_error(request, 405, "Method not allowed.")
            try:  # Klein would log a traceback and answer in HTML
                unquote_to_bytes(request.path).decode("utf-8")
            except UnicodeDecodeError:
                return render_error(request, 400, "The URL is not valid UTF-8.")
            rendered: bytes | int = self._klein.render(request)
            return rendered

        def finish(body: bytes) -> None:
            if not request.finished and not getattr(request, "_disconnected", False):
                request.write(body)
                request.finish()

        _ = Deferred.fromCoroutine(self._edge.serve(route, request, {})).addCallback(finish)
        return NOT_DONE_YET


def build_api(edge: Edge, routes: Sequence[Route]) -> IResource:
    """Routing errors use the same JSON ``{"detail"}`` renderer as handlers."""
    app = Klein()
    lane = [r for r in routes if "<" not in r.path]
    for n, route in enumerate(routes):
        if route not in lane:
            _bind(app, edge, route, f"r{n}")

    @app.handle_errors(NotFound)
    def not_found(request: IRequest, failure: Any) -> bytes:
        return render_error(request, 404, "Not found.")

    @app.handle_errors(MethodNotAllowed)
    def not_allowed(request: IRequest, failure: Any) -> bytes:
        return render_error(request, 405, "Method not allowed.")

    return _FastLane(edge, lane, app.resource())
