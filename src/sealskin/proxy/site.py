"""The resource tree and ``Site`` of the TLS session port (upstream-protocol 1.1, 7.3).

``/api/...`` goes to the API resource (with CORS, upstream-protocol 1.3, restricted to the API
as 10 W9 asks), ``/<uuid>/...`` to the session proxy (gate, then WebSocket or HTTP), anything
else answers 404 ``{"detail": ...}``. Session paths never carry CORS headers and their
``OPTIONS`` requests go to the app like any other method.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTCP
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http as twisted_http, server
from twisted.web.resource import IResource, Resource

from sealskin.httpbody import channel_factory
from sealskin.proxy import SessionDirectory
from sealskin.proxy.gate import ACCESS_TOKEN, Gate, json_error, query_flag, split_session_path
from sealskin.proxy.http import (
    BodySink,
    DiscardBody,
    HttpForwarder,
    HttpLimits,
    StreamingRequest,
)
from sealskin.proxy.ws import WsBridges, WsLimits, same_host

log = Logger()

_UUID = re.compile(rb"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_CORS_METHODS = b"GET, POST, PUT, DELETE, OPTIONS"
_CORS_HEADERS = b"Origin, Accept, Content-Type, X-Requested-With, X-Session-ID, Authorization"


def _is_upgrade(request: server.Request) -> bool:
    return any(b"websocket" in value.lower()
               for value in request.requestHeaders.getRawHeaders(b"upgrade", []))


class _JsonStatus(Resource):
    isLeaf = True

    def __init__(self, status: int, detail: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted leaves this untyped
        self._status = status
        self._detail = detail

    def render(self, request: server.Request) -> bytes:
        return json_error(request, self._status, self._detail)


class _NoContent(Resource):
    """The answer to a CORS preflight on ``/api`` (upstream-protocol 1.3: 204, empty, never forwarded)."""

    isLeaf = True

    def render(self, request: server.Request) -> bytes:
        request.setResponseCode(204)
        return b""


_NO_CONTENT = _NoContent()  # type: ignore[no-untyped-call]  # Twisted leaves this untyped


class SessionResource(Resource):
    """``/<uuid>/...``: trailing-slash redirect, token gate, cookie check, then WS or HTTP."""

    isLeaf = True

    def __init__(self, directory: SessionDirectory, gate: Gate, http: HttpForwarder,
                 ws: WsBridges) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted leaves this untyped
        self._directory = directory
        self._gate = gate
        self._http = http
        self._ws = ws

    def render(self, request: server.Request) -> bytes | int:
        assert request.uri is not None and request.method is not None
        path, _, query = request.uri.partition(b"?")
        found = split_session_path(path)
        if found is None:
            return json_error(request, 404, "Not found.")
        session_id, rest = found
        if not rest:
            request.setResponseCode(308)
            request.responseHeaders.setRawHeaders(
                b"location", [path + b"/" + (b"?" + query if query else b"")])
            return b""
        if request.method in (b"GET", b"HEAD") and query_flag(query, ACCESS_TOKEN) is not None:
            return self._redeem(request, session_id, path, query)
        refusal = self._gate.refusal(request.requestHeaders, session_id)
        if refusal is not None:
            return json_error(request, *refusal)
        route = self._directory.route(session_id.lower())
        if route is None:
            return json_error(request, 404, "No such session.")
        if _is_upgrade(request):
            origin = request.getHeader(b"origin")
            host = request.getHeader(b"host") or b""
            if origin and not same_host(origin.decode("latin-1"), host.decode("latin-1")):
                # Autobahn checks this too, but answers without a body
                return json_error(request, 403, "Cross-origin WebSocket refused.")
            return self._ws.render(request)
        return self._http.render(request, session_id, route)

    def _redeem(self, request: server.Request, session_id: str, path: bytes, query: bytes) -> int:
        async def answer() -> None:
            body = await self._gate.redeem(request, session_id, path, query)
            if not request._disconnected:
                request.write(body)
                request.finish()

        def crashed(failure: Failure) -> None:
            log.failure("redeeming a session link failed", failure)
            if not request._disconnected:
                request.write(json_error(request, 500, "internal error"))
                request.finish()

        _ = Deferred.fromCoroutine(answer()).addErrback(crashed)
        return server.NOT_DONE_YET


class ProxyRoot(Resource):
    """Root of the session port. Also decides which request bodies stream (``early_body``)."""

    def __init__(self, *, api: IResource, directory: SessionDirectory, gate: Gate,
                 http: HttpForwarder, ws: WsBridges,
                 api_cors_origins: Collection[str] | None,
                 children: Mapping[bytes, IResource]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted leaves this untyped
        self._api = api
        self._directory = directory
        self._gate = gate
        self.http = http
        self.ws = ws
        self._cors_origins = None if api_cors_origins is None else {
            origin.encode("ascii") for origin in api_cors_origins}
        self._session = SessionResource(directory, gate, http, ws)
        self._children = dict(children)
        self._not_found = _JsonStatus(404, "Not found.")

    def getChild(self, path: bytes, request: server.Request) -> IResource:
        if path == b"api":
            return self._api_child(request)
        if _UUID.match(path):
            return self._session
        return self._children.get(path, self._not_found)

    def render(self, request: server.Request) -> bytes:
        return json_error(request, 404, "Not found.")

    def _api_child(self, request: server.Request) -> IResource:
        """Adds CORS headers, answers preflights, and hands the API the *whole* path.

        The API sees ``prepath == []`` and ``postpath == [b"api", ...]``, as if it were the
        root, so Klein routes keep their ``/api/...`` spelling.
        """
        self._add_cors(request)
        if request.method == b"OPTIONS":
            return _NO_CONTENT
        assert request.prepath is not None and request.postpath is not None
        request.postpath.insert(0, request.prepath.pop())
        return self._api

    def _add_cors(self, request: server.Request) -> None:
        origin = request.getHeader(b"origin")
        if not origin:
            return
        if self._cors_origins is not None and origin not in self._cors_origins:
            return
        headers = request.responseHeaders
        headers.setRawHeaders(b"access-control-allow-origin", [origin])
        headers.setRawHeaders(b"access-control-allow-methods", [_CORS_METHODS])
        headers.setRawHeaders(b"access-control-allow-headers", [_CORS_HEADERS])
        headers.setRawHeaders(b"access-control-allow-credentials", [b"true"])
        headers.addRawHeader(b"vary", b"Origin")

    def early_body(self, request: StreamingRequest, method: bytes, uri: bytes,
                   length: int | None) -> BodySink | None:
        """Streams the body of an admitted session request; discards one we will refuse.

        ``None`` (buffer as usual) for everything that is not a session path; the API has its
        own size limit in its request handling.
        """
        path, _, query = uri.partition(b"?")
        found = split_session_path(path)
        if found is None or _is_upgrade(request):
            return None
        session_id, rest = found
        if not rest or (method in (b"GET", b"HEAD") and query_flag(query, ACCESS_TOKEN) is not None):
            return DiscardBody()
        route = self._directory.route(session_id.lower())
        if route is None or self._gate.refusal(request.requestHeaders, session_id) is not None:
            return DiscardBody()
        return self.http.stream(request, session_id, route, method, uri, length)

    async def close(self) -> None:
        """Shutdown (STYLE 10 step 4): WebSocket bridges get 1001, proxied responses abort."""
        self.ws.close()
        await self.http.close()


def build_root(*, api: IResource, directory: SessionDirectory, reactor: IReactorTCP,
               cookie_name_prefix: str = "sealskin_session_token",
               http_limits: HttpLimits = HttpLimits(), ws_limits: WsLimits = WsLimits(),
               api_cors_origins: Collection[str] | None = None,
               children: Mapping[bytes, IResource] | None = None) -> ProxyRoot:
    """The session port's resource tree.

    ``api_cors_origins``: origins whose requests to ``/api`` get CORS headers; None reflects
    any ``Origin`` (upstream behaviour, needed by the mobile shell). ``children``: further
    top-level resources (``public``, ``room``...). Registers with ``directory.on_session_end``.
    """
    gate = Gate(directory, cookie_name_prefix)
    http = HttpForwarder(reactor=reactor, directory=directory, gate=gate, limits=http_limits)
    ws = WsBridges(reactor=reactor, directory=directory, gate=gate, limits=ws_limits)
    return ProxyRoot(api=api, directory=directory, gate=gate, http=http, ws=ws,
                     api_cors_origins=api_cors_origins, children=children or {})


class ProxySite(server.Site):
    """A ``Site`` whose requests can stream bodies (see :mod:`sealskin.proxy.http`)."""

    displayTracebacks = False

    def __init__(self, root: IResource, *, idle_timeout_seconds: float,
                 access_log: bool = True, max_head_bytes: int = 16384) -> None:
        super().__init__(root, requestFactory=StreamingRequest, timeout=idle_timeout_seconds,  # type: ignore[no-untyped-call]  # Twisted leaves this untyped
                         logFormatter=_redacted_log_line,
                         # nothing here reads form fields; parsing each POST's
                         # Content-Type costs ~0.1 ms (bench/api_bench.py)
                         parsePOSTFormSubmission=False)
        self.early_body_router = root if isinstance(root, ProxyRoot) else None
        self._access_log = access_log
        self.protocol = channel_factory(max_head_bytes)  # type: ignore[method-assign]  # a factory attribute, typed as a method

    def log(self, request: twisted_http.Request) -> None:
        # One formatted line per request (combined format, then the text or JSON observer and a
        # file write) costs about 15 % of the proxy's CPU under load: operators may turn it off.
        if self._access_log:
            super().log(request)


def build_site(root: IResource, *, idle_timeout_seconds: float = 300.0,
               access_log: bool = True, max_head_bytes: int = 16384) -> ProxySite:
    """The ``Site`` for the session port; ``idle_timeout_seconds`` closes silent connections.

    ``access_log=False`` drops the per-request access log line (proxied requests included).
    """
    return ProxySite(root, idle_timeout_seconds=idle_timeout_seconds, access_log=access_log,
                     max_head_bytes=max_head_bytes)


def _redact(target: bytes) -> bytes:
    path, sep, query = target.partition(b"?")
    if not sep or query_flag(query, ACCESS_TOKEN) is None:
        return target
    parts = [b"access_token=REDACTED" if part.split(b"=", 1)[0] == ACCESS_TOKEN else part
             for part in query.split(b"&")]
    return path + b"?" + b"&".join(parts)


def _escape(value: bytes) -> str:
    return json.dumps(value.decode("latin-1"))[1:-1]


def _redacted_log_line(timestamp: str, request: server.Request) -> str:
    """Combined log format, with access tokens in the target and referrer redacted (STYLE 9)."""
    referrer = _redact(request.getHeader(b"referer") or b"-")
    agent = request.getHeader(b"user-agent") or b"-"
    peer = request.getClientAddress()
    ip = getattr(peer, "host", "-")
    line = '"%s" - - %s "%s" %d %s "%s" "%s"' % (
        ip, timestamp,
        _escape(b" ".join([request.method or b"-", _redact(request.uri or b"-"),
                           request.clientproto or b"-"])),
        request.code, request.sentLength or "-", _escape(referrer), _escape(agent))
    return line
