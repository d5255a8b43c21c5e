"""The session gate, header hygiene, methods, CORS and routing of the session port."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest_twisted
from cryptography import x509

from sealskin.proxy.tls import ensure_self_signed
from test_proxy_support import APP_AUTH, cookie_of, fetch, open_session, proxy_cert, proxy_make

__all__ = ["proxy_cert", "proxy_make"]


@pytest_twisted.ensureDeferred
async def test_token_is_single_use_and_becomes_a_scoped_cookie(proxy_make: Any) -> None:
    env = await proxy_make()
    sid = env.session_id
    response, _ = await fetch(env, b"GET", f"/{sid}/index.html?a=1&access_token={env.token}&embedded=true")
    assert response.code == 303
    assert response.headers.getRawHeaders(b"location") == [f"/{sid}/index.html?a=1&embedded=true".encode()]
    pair, line = cookie_of(response)
    assert pair.startswith(f"sealskin_session_token_{sid}=")
    attrs = {part.strip() for part in line.split(";")[1:]}
    assert attrs == {f"Path=/{sid}/", "HttpOnly", "Secure", "SameSite=None"}

    again, body = await fetch(env, b"GET", f"/{sid}/?access_token={env.token}")
    assert again.code == 403 and "detail" in json.loads(body)

    for method in (b"GET", b"POST", b"PUT", b"DELETE", b"HEAD"):
        payload = None if method in (b"GET", b"HEAD") else b"x" * 10
        ok, body = await fetch(env, method, f"/{sid}/echo?q=1", {b"cookie": [pair.encode()]}, payload)
        assert ok.code == 200, method
        if method != b"HEAD":
            seen = json.loads(body)
            assert seen["method"] == method.decode() and seen["uri"] == f"/{sid}/echo?q=1"
            assert seen["body_len"] == (len(payload) if payload else 0)
    assert env.directory.touched


@pytest_twisted.ensureDeferred
async def test_plain_link_gives_a_lax_cookie(proxy_make: Any) -> None:
    env = await proxy_make()
    response, _ = await fetch(env, b"GET", f"/{env.session_id}/?access_token={env.token}")
    assert "SameSite=Lax" in cookie_of(response)[1]
    assert response.headers.getRawHeaders(b"location") == [f"/{env.session_id}/".encode()]


@pytest_twisted.ensureDeferred
async def test_no_cookie_is_401_and_wrong_cookie_is_403(proxy_make: Any) -> None:
    env = await proxy_make()
    response, body = await fetch(env, b"GET", f"/{env.session_id}/echo")
    assert response.code == 401 and json.loads(body)["detail"]
    bad = f"sealskin_session_token_{env.session_id}=nope"
    response, _ = await fetch(env, b"GET", f"/{env.session_id}/echo", {b"cookie": [bad.encode()]})
    assert response.code == 403
    assert env.app.seen == []


@pytest_twisted.ensureDeferred
async def test_cookie_of_one_session_opens_nothing_of_another(proxy_make: Any) -> None:
    env = await proxy_make()
    pair = await open_session(env)
    other = env.other_session_id
    response, _ = await fetch(env, b"GET", f"/{other}/echo", {b"cookie": [pair.encode()]})
    assert response.code == 401
    value = pair.split("=", 1)[1]
    forged = f"sealskin_session_token_{other}={value}"
    response, _ = await fetch(env, b"GET", f"/{other}/echo", {b"cookie": [forged.encode()]})
    assert response.code == 403


@pytest_twisted.ensureDeferred
async def test_app_sees_its_credentials_our_forwarding_headers_and_only_its_cookies(proxy_make: Any) -> None:
    env = await proxy_make()
    pair = await open_session(env)
    response, body = await fetch(env, b"GET", f"/{env.session_id}/echo", {
        b"cookie": [f"app=1; {pair}; sealskin_session_token_{env.other_session_id}=x; theme=dark".encode()],
        b"authorization": [b"Bearer from-browser"],
        b"x-forwarded-for": [b"6.6.6.6"], b"x-forwarded-host": [b"evil"], b"x-forwarded-proto": [b"http"],
        b"forwarded": [b"for=6.6.6.6"], b"x-real-ip": [b"6.6.6.6"],
        b"connection": [b"close, x-hop"], b"x-hop": [b"1"], b"x-kept": [b"2"],
        b"te": [b"trailers"], b"proxy-authorization": [b"Basic Zm9v"],
    })
    assert response.code == 200
    headers = json.loads(body)["headers"]
    assert headers["authorization"] == [APP_AUTH]
    assert headers["x-forwarded-for"] == ["127.0.0.1"]
    assert headers["x-forwarded-proto"] == ["https"]
    assert headers["x-forwarded-host"] == [f"localhost:{env.port}"]
    assert headers["host"] == [f"127.0.0.1:{env.app_port}"]
    assert headers["cookie"] == ["app=1; theme=dark"]
    assert headers["x-kept"] == ["2"]
    for gone in ("forwarded", "x-real-ip", "x-hop", "te", "proxy-authorization"):
        assert gone not in headers, gone
    # response side: the app's hop-by-hop headers do not reach the browser
    assert response.headers.getRawHeaders(b"x-app") == [b"yes"]
    assert response.headers.getRawHeaders(b"keep-alive") is None
    assert response.headers.getRawHeaders(b"access-control-allow-origin") is None


@pytest_twisted.ensureDeferred
async def test_api_gets_cors_and_preflight_204_but_session_paths_never_reflect(proxy_make: Any) -> None:
    env = await proxy_make()
    origin = {b"origin": [b"https://localhost"]}
    response, body = await fetch(env, b"OPTIONS", "/api/anything", origin)
    assert response.code == 204 and body == b""
    assert response.headers.getRawHeaders(b"access-control-allow-origin") == [b"https://localhost"]
    assert response.headers.getRawHeaders(b"access-control-allow-credentials") == [b"true"]
    response, body = await fetch(env, b"GET", "/api/status", origin)
    assert response.code == 200 and json.loads(body) == {"ok": True}
    assert response.headers.getRawHeaders(b"access-control-allow-origin") == [b"https://localhost"]

    pair = await open_session(env)
    response, body = await fetch(env, b"OPTIONS", f"/{env.session_id}/echo",
                                 {**origin, b"cookie": [pair.encode()]})
    assert response.code == 200 and json.loads(body)["method"] == "OPTIONS"  # forwarded to the app
    assert response.headers.getRawHeaders(b"access-control-allow-origin") is None


@pytest_twisted.ensureDeferred
async def test_unknown_paths_are_json_404_and_bare_session_path_redirects(proxy_make: Any) -> None:
    env = await proxy_make()
    for path in ("/", "/nope", "/internal/resolve_session/x"):
        response, body = await fetch(env, b"GET", path)
        assert response.code == 404 and "detail" in json.loads(body), path
    response, _ = await fetch(env, b"GET", f"/{env.session_id}?x=1")
    assert response.code == 308
    assert response.headers.getRawHeaders(b"location") == [f"/{env.session_id}/?x=1".encode()]


@pytest_twisted.ensureDeferred
async def test_ended_session_refuses_its_cookie(proxy_make: Any) -> None:
    env = await proxy_make()
    pair = await open_session(env)
    env.directory.end(env.session_id)
    response, _ = await fetch(env, b"GET", f"/{env.session_id}/echo", {b"cookie": [pair.encode()]})
    assert response.code == 403


def test_self_signed_certificate_is_generated_once_with_private_key_0600(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    assert ensure_self_signed(cert, key, "sealskin.example")
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    parsed = x509.load_pem_x509_certificate(cert.read_bytes())
    san = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"sealskin.example", "localhost"}
    assert (parsed.not_valid_after_utc - parsed.not_valid_before_utc).days >= 3650
    assert not ensure_self_signed(cert, key, "sealskin.example")
