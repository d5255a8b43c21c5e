"""The API as one Klein resource (its own ``Klein()``, never the global app)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from klein import Klein
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import Site
from werkzeug.exceptions import MethodNotAllowed, NotFound

from sealskin.api.edge import Edge, Route, render_error


def _bind(app: Klein, edge: Edge, route: Route, endpoint: str) -> None:
    async def view(request: IRequest, **params: str) -> bytes:
        return await edge.serve(route, request, params)

    app.route(route.path, methods=[route.method], endpoint=endpoint)(view)


class ApiSite(Site):
    """The API port's Site: no tracebacks, no form parsing, optional access log."""

    displayTracebacks = False

    def __init__(self, root: IResource, *, request_factory: Any, access_log: bool) -> None:
        # nothing here reads form fields; parsing each POST's Content-Type costs ~0.1 ms
        super().__init__(root, requestFactory=request_factory, parsePOSTFormSubmission=False)  # type: ignore[no-untyped-call]  # Twisted leaves this untyped
        self._access_log = access_log

    def log(self, request: Any) -> None:
        if self._access_log:
            super().log(request)


def build_api(edge: Edge, routes: Sequence[Route]) -> IResource:
    """Routing errors use the same JSON ``{"detail"}`` renderer as handlers."""
    app = Klein()
    for n, route in enumerate(routes):
        _bind(app, edge, route, f"r{n}")

    @app.handle_errors(NotFound)
    def not_found(request: IRequest, failure: Any) -> bytes:
        return render_error(request, 404, "Not found.")

    @app.handle_errors(MethodNotAllowed)
    def not_allowed(request: IRequest, failure: Any) -> bytes:
        return render_error(request, 405, "Method not allowed.")

    resource: IResource = app.resource()
    return resource
