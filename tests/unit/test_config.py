"""Configuration: precedence, validation, and the README's options table."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.python import usage

from sealskin.config import Options, build_config, markdown_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_command_line_beats_environment_beats_default() -> None:
    env = {"SEALSKIN_API_PORT": "9000", "SEALSKIN_SESSION_PORT": "9443"}
    cfg = build_config({"api-port": "7000"}, env)
    assert (cfg.api_port, cfg.session_port, cfg.max_body_bytes) == (7000, 9443, 1024 * 1024)


def test_upstream_environment_names_are_understood() -> None:
    cfg = build_config({}, {"HOST_URL": "example.org", "SEALSKIN_PROXY_CERT_PATH": "/c.pem"})
    assert (cfg.host_url, cfg.tls_cert) == ("example.org", "/c.pem")


@pytest.mark.parametrize("option,value", [("api-port", "70000"), ("api-port", "x"),
                                          ("max-body-bytes", "0"),
                                          ("allow-dangerous-overrides", "maybe"),
                                          ("data-dir", ""), ("host-url", "https://a.b"),
                                          ("host-url", "a.b:8000"), ("host-url", "a b"),
                                          ("host-url", "bücher.de"), ("host-url", "a/b"),
                                          ("host-url", "-a.b"), ("host-url", "a..b"),
                                          ("host-url", "256.1.1.1")])
def test_bad_values_name_the_option(option: str, value: str) -> None:
    with pytest.raises(usage.UsageError, match=option):
        build_config({option: value}, {})


@pytest.mark.parametrize("given,kept", [("sealskin.example.org", "sealskin.example.org"),
                                        ("localhost", "localhost"), ("192.0.2.10", "192.0.2.10"),
                                        ("[2001:db8::1]", "2001:db8::1"), ("xn--bcher-kva.de",
                                                                          "xn--bcher-kva.de")])
def test_host_names_clients_can_dial(given: str, kept: str) -> None:
    assert build_config({"host-url": given}, {}).host_url == kept


def test_a_bad_number_is_named_plainly() -> None:
    with pytest.raises(usage.UsageError) as e:
        build_config({"api-port": "abc"}, {})
    assert str(e.value) == "--api-port (SEALSKIN_API_PORT): 'abc' must be a whole number"


def test_every_option_is_documented_with_its_environment_variable() -> None:
    text = str(Options(env={}))
    assert "SEALSKIN_DATA_DIR" in text and "--session-endpoint" in text


def test_readme_options_table_is_current() -> None:
    assert markdown_table() in README.read_text(), (
        "README options table is stale: regenerate with `python -m sealskin.config`")
