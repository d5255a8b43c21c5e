"""The API client: its config document, and its protocol against an in-memory fake h.server."""

from __future__ import annotations

import json
from pathlib import Path
from collections.abc import Coroutine, Mapping
from typing import Any

import pytest
from treq.testing import RequestTraversalAgent
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Request

from sealskin.client import ApiCallError, ApiClient, ClientConfig
from sealskin.crypto import EnvelopeError, envelope, handshake, keys, tokens

SERVER_KEY = keys.generate_rsa(2048)
USER_KEY = keys.generate_rsa(2048)
DOCUMENT: dict[str, Any] = {
    "server_endpoint": "sealskin.example",
    "api_port": "8000",
    "session_port": 8443,
    "username": "alice",
    "private_key": keys.private_pem(USER_KEY),
    "server_public_key": keys.public_pem(SERVER_KEY),
}
CONFIG = ClientConfig.from_dict(DOCUMENT)


class FakeServer(Resource):
    """Just enough of the API to exercise the client; not the real edge."""

    isLeaf = True

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.sessions: dict[str, bytes] = {}
        self.requests: list[tuple[bytes, bytes, dict[str, str]]] = []
        self.refuse_next = 0  # answer this many calls with the re-handshake 400

    def render(self, request: Request) -> bytes:
        raw_headers = request.requestHeaders.getAllRawHeaders()
        headers = {k.decode().lower(): v[0].decode() for k, v in raw_headers}
        body = request.content.read() if request.content else b""
        self.requests.append((request.method, request.uri, headers))
        path = request.path.decode()
        if path == "/api/handshake/initiate":
            return self._json(request, 200, handshake.initiate(SERVER_KEY))
        if path == "/api/handshake/exchange":
            wrapped = json.loads(body)["encrypted_session_key"]
            sid = f"session-{len(self.sessions)}"
            self.sessions[sid] = handshake.unwrap_session_key(SERVER_KEY, wrapped)
            return self._json(request, 200, {"session_id": sid})
        session_key = self.sessions.get(headers.get("x-session-id", ""))
        if session_key is None or self.refuse_next:
            self.refuse_next = max(0, self.refuse_next - 1)
            return self._json(request, 400, {"detail": "Invalid or missing session ID"})
        token = headers["authorization"].removeprefix("Bearer ")
        user = tokens.verify(token, USER_KEY.public_key(), now=self.clock.seconds())
        if path == "/api/echo":
            sent = envelope.open_json(session_key, json.loads(body))[1] if body else None
            request.setHeader("content-type", "application/json")
            query = {k.decode(): v[0].decode() for k, v in request.args.items()}
            return envelope.seal_json(session_key, {"user": user, "sent": sent, "query": query})
        if path == "/api/refuse":  # a refusal made before any side effect (upstream R9)
            return self._json(request, 400, {"detail": "This application cannot open URLs."})
        if path == "/api/gone":
            request.setResponseCode(204)
            return b""
        if path == "/api/list-error":
            return self._json(request, 422, {"detail": [{"loc": ["x"]}]})
        request.setResponseCode(500)
        return b"Internal Server Error"

    def _json(self, request: Request, status: int, obj: Mapping[str, object]) -> bytes:
        request.setResponseCode(status)
        request.setHeader("content-type", "application/json")
        return json.dumps(obj).encode()


class Harness:
    def __init__(self, base_url: str = "http://sealskin.test:8000") -> None:
        clock = Clock()
        clock.advance(1_737_000_000)
        self.server = FakeServer(clock)
        self.agent = RequestTraversalAgent(self.server)
        self.client = ApiClient(clock, CONFIG, base_url=base_url, agent=self.agent)

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Drives a client coroutine to its end over the in-memory transport."""
        results: list[Any] = []
        done = Deferred.fromCoroutine(coroutine)
        _ = done.addBoth(results.append)
        for _ in range(100):
            if results:
                break
            self.agent.flush()
        [result] = results
        if isinstance(result, Failure):
            result.raiseException()
        return result


def test_config_accepts_string_ports() -> None:
    assert CONFIG.api_port == 8000 and CONFIG.session_port == 8443


def test_config_names_missing_keys(tmp_path: Path) -> None:
    partial = {k: v for k, v in DOCUMENT.items() if k not in ("username", "api_port")}
    with pytest.raises(ValueError, match="missing: api_port, username"):
        ClientConfig.from_dict(partial)
    path = tmp_path / "admin.json"
    path.write_text(json.dumps(partial))
    with pytest.raises(ValueError, match="missing"):
        ClientConfig.load(str(path))


@pytest.mark.parametrize(
    "change",
    [{"api_port": "http"}, {"session_port": 0}, {"api_port": True}, {"username": ""},
     {"private_key": "garbage"}, {"server_public_key": keys.private_pem(SERVER_KEY)}],
)
def test_config_refuses_bad_values(change: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="Client config"):
        ClientConfig.from_dict({**DOCUMENT, **change})


def test_config_refuses_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Cannot read"):
        ClientConfig.load(str(tmp_path / "absent.json"))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        ClientConfig.load(str(tmp_path / "bad.json"))
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(ValueError, match="JSON object"):
        ClientConfig.load(str(tmp_path / "list.json"))


def test_default_base_url_is_the_plain_api_port() -> None:
    client = ApiClient(Clock(), CONFIG, agent=RequestTraversalAgent(Resource()))
    assert client.base_url == "http://sealskin.example:8000"


def test_call_handshakes_lazily_and_round_trips_the_envelope() -> None:
    h = Harness()
    answer = h.run(h.client.call("POST", "/api/echo", {"a": "é"}, query={"path": "a b"}))
    assert answer == {"user": "alice", "sent": {"a": "é"}, "query": {"path": "a b"}}
    methods = [(m, uri) for m, uri, _ in h.server.requests]
    assert methods == [
        (b"POST", b"/api/handshake/initiate"),
        (b"POST", b"/api/handshake/exchange"),
        (b"POST", b"/api/echo?path=a+b"),
    ]
    headers = h.server.requests[-1][2]
    assert headers["x-session-id"] == h.client.session_id
    assert headers["content-type"] == "application/json"
    assert "content-type" not in h.server.requests[0][2]  # initiate has no body (2.1)


def test_an_ipv6_server_address_is_reached() -> None:
    h = Harness("http://[2001:db8::1]:8000")
    assert h.run(h.client.call("GET", "/api/echo"))["user"] == "alice"
    assert h.server.requests[-1][2]["host"] == "[2001:db8::1]:8000"


def test_bodiless_calls_send_no_envelope_and_204_is_none() -> None:
    h = Harness()
    assert h.run(h.client.call("GET", "/api/echo")) == {"user": "alice", "sent": None, "query": {}}
    assert "content-type" not in h.server.requests[-1][2]
    assert h.run(h.client.call("DELETE", "/api/gone")) is None
    assert len(h.server.sessions) == 1  # the session is reused


def test_a_400_re_handshakes_once_and_resends() -> None:
    h = Harness()
    h.run(h.client.handshake())
    first = h.client.session_id
    h.server.refuse_next = 1
    assert h.run(h.client.call("POST", "/api/echo", {}))["sent"] == {}
    assert h.client.session_id != first and len(h.server.sessions) == 2


def test_a_second_400_is_raised() -> None:
    h = Harness()
    h.run(h.client.handshake())
    h.server.refuse_next = 2
    with pytest.raises(ApiCallError) as caught:
        h.run(h.client.call("GET", "/api/echo"))
    assert (caught.value.status, caught.value.detail) == (400, "Invalid or missing session ID")
    assert len(h.server.sessions) == 2  # one re-handshake, not a loop


def test_a_400_that_is_not_about_the_crypto_session_is_not_sent_again() -> None:
    h = Harness()
    with pytest.raises(ApiCallError) as caught:
        h.run(h.client.call("POST", "/api/refuse", {}))
    assert (caught.value.status, caught.value.detail) == (400,
                                                          "This application cannot open URLs.")
    assert [uri for _, uri, _ in h.server.requests].count(b"/api/refuse") == 1
    assert len(h.server.sessions) == 1


def test_errors_carry_the_detail_or_the_raw_text() -> None:
    h = Harness()
    with pytest.raises(ApiCallError) as caught:
        h.run(h.client.call("GET", "/api/list-error"))
    assert (caught.value.status, caught.value.detail) == (422, '[{"loc": ["x"]}]')
    with pytest.raises(ApiCallError) as caught:
        h.run(h.client.call("GET", "/api/nothing"))
    assert (caught.value.status, caught.value.detail) == (500, "Internal Server Error")


def test_a_plaintext_200_is_an_envelope_error() -> None:
    h = Harness()
    h.run(h.client.handshake())
    with pytest.raises(EnvelopeError):
        h.run(h.client.call("POST", "/api/handshake/initiate"))


def test_raw_sends_exactly_what_it_is_given() -> None:
    h = Harness()
    status, headers, body = h.run(
        h.client.raw("POST", "/api/echo", body=b"junk", headers={"X-Session-ID": "nope"})
    )
    assert status == 400 and headers["content-type"] == ["application/json"]
    assert json.loads(body) == {"detail": "Invalid or missing session ID"}
    assert "authorization" not in h.server.requests[-1][2]
