"""Command-line options -> one frozen, typed :class:`Config`.

Each setting is declared once in :data:`SETTINGS`. Precedence: command line,
then ``SEALSKIN_<NAME>`` (or a listed upstream alias), then the default.
Only ``service.py`` reads the Config; nothing reads ``os.environ`` later.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from twisted.python import usage

MiB = 1024 * 1024


@attrs.frozen
class Setting:
    name: str
    default: str
    help: str
    parse: Callable[[str], Any] = str
    aliases: tuple[str, ...] = ()  # upstream env names (upstream-protocol 5.1)

    @property
    def env(self) -> str:
        return "SEALSKIN_" + self.name.upper().replace("-", "_")


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("must be a whole number") from None


def _positive_int(text: str) -> int:
    value = _int(text)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("must be a number") from None
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _port(text: str) -> int:
    value = _int(text)
    if not 0 <= value <= 65535:
        raise ValueError("must be a port number (0-65535)")
    return value


def _non_empty(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text


_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def _host_name(text: str) -> str:
    """A DNS name or an IP address, as clients will dial it: no scheme, port or path."""
    if not text:
        return text  # unset: "localhost" in admin.json
    if "://" in text:
        raise ValueError("must be a host name without a scheme (e.g. sealskin.example.org)")
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        pass
    if not text.isascii():
        raise ValueError("must be ASCII: give an international name in its xn-- form")
    labels = text.removesuffix(".").split(".")
    if all(label.isdigit() for label in labels):
        raise ValueError("is not a valid IPv4 address")
    if len(text) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError("must be a host name or an IP address, without port or path "
                         "(e.g. sealskin.example.org or 192.0.2.10)")
    return text


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in allowed:
            raise ValueError("must be one of " + ", ".join(allowed))
        return text

    return parse


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


SETTINGS: tuple[Setting, ...] = (
    Setting("data-dir", "/var/lib/sealskin", "Directory for the database, keys and storage.",
            _non_empty),
    Setting("api-port", "8000", "Plain-HTTP API port.", _port),
    Setting("session-port", "8443", "TLS port: session proxy and the same API.", _port),
    Setting("api-endpoint", "", "Twisted endpoint for the API (overrides --api-port), "
            "e.g. tcp:8000:interface=127.0.0.1 or systemd:domain=INET:index=0."),
    Setting("session-endpoint", "", "Twisted endpoint for the TLS port (overrides "
            "--session-port); must speak TLS, e.g. ssl:8443:privateKey=...:certKey=... "
            "or systemd:domain=INET:index=1 (TLS is then added by the server)."),
    Setting("host-url", "", "Host name clients use to reach this server (admin.json "
            "server_endpoint; certificate name): a DNS name or IP address, no scheme or "
            "port.", _host_name, aliases=("HOST_URL",)),
    Setting("tls-cert", "", "PEM certificate for the TLS port (default: self-signed in "
            "the data directory).", aliases=("SEALSKIN_PROXY_CERT_PATH",)),
    Setting("tls-key", "", "PEM private key for --tls-cert.",
            aliases=("SEALSKIN_PROXY_KEY_PATH",)),
    Setting("server-id", "", "Label value marking this server's containers (default: a "
            "random id kept in the data directory)."),
    Setting("server-key-bits", "4096", "RSA size of the server key made at first start.",
            _positive_int),
    Setting("reset-admin-key", "false", "At this start, give 'admin' a new key pair and "
            "write a new admin.json (for a lost one; the old key stops working).", _bool),
    Setting("admin-key-bits", "4096", "RSA size of the bootstrap admin's key.",
            _positive_int),
    Setting("max-body-bytes", str(MiB), "Largest JSON request body accepted.", _positive_int),
    Setting("max-header-bytes", "16384", "Largest HTTP request head on both ports (the "
            "request line, and all header lines together): 414 or 431 past it.", _positive_int),
    Setting("max-upload-body-bytes", str(24 * MiB), "Largest body for /api/upload/chunk "
            "(a base64 chunk inside the envelope: about 16/9 of --max-chunk-bytes).",
            _positive_int),
    Setting("crypto-session-idle-seconds", "86400", "Idle time after which a crypto "
            "session is forgotten.", _non_negative_float),
    Setting("crypto-sessions-max", "10000", "Most crypto sessions kept in memory "
            "(least recently used go first).", _positive_int),
    Setting("handshake-rate", "20", "Handshakes per second allowed per client address.",
            _non_negative_float),
    Setting("handshake-burst", "40", "Handshake burst allowed per client address.",
            _positive_int),
    Setting("jwt-leeway-seconds", "60", "Clock skew tolerated on token times.",
            _positive_int),
    Setting("jwt-max-lifetime-seconds", "600", "Longest token lifetime accepted.",
            _positive_int),
    Setting("work-threads", "4", "Threads for file I/O and RSA work.", _positive_int),
    Setting("docker-threads", "10", "Threads for Docker SDK calls.", _positive_int),
    Setting("launch-timeout-seconds", "60", "How long a launched app may take to answer.",
            _non_negative_float),
    Setting("access-token-ttl-seconds", "120", "How long an unused session URL token "
            "stays valid.", _non_negative_float),
    Setting("session-idle-seconds", "3600", "Stop sessions without proxied traffic for "
            "this long (0 = never).", _non_negative_float),
    Setting("session-max-seconds", "86400", "Stop sessions older than this (0 = never).",
            _non_negative_float),
    Setting("default-session-limit", "10", "Concurrent sessions per user when neither "
            "the user nor the group sets a limit.", _positive_int),
    Setting("shutdown-grace-seconds", "10", "Time in-flight requests get at shutdown.",
            _non_negative_float),
    Setting("proxy-timeout-seconds", "60", "Upstream response timeout of the session "
            "proxy (504 after it).", _non_negative_float),
    Setting("proxy-workers", "0", "Extra processes serving session traffic on the TLS "
            "port (0 = the main process only; try the number of cores minus one).",
            lambda text: max(0, int(text))),
    Setting("access-log", "false", "Log one line per HTTP request on both ports (costs "
            "~15% of the CPU under load; access tokens are redacted).", _bool),
    Setting("ws-max-message-bytes", str(16 * MiB), "Largest WebSocket message relayed.",
            _positive_int),
    Setting("ws-ping-seconds", "30", "Ping interval on idle proxied WebSockets.",
            _non_negative_float),
    Setting("ws-ping-timeout-seconds", "30", "A browser that does not answer the proxy's "
            "ping within this time is disconnected.", _non_negative_float),
    Setting("puid", "1000", "PUID passed to app containers.", _positive_int),
    Setting("pgid", "1000", "PGID passed to app containers.", _positive_int),
    Setting("app-store-url", "https://raw.githubusercontent.com/linuxserver/sealskin-apps/"
            "refs/heads/master/apps.yml", "App store added at first start.",
            aliases=("SEALSKIN_APP_RESOURCE_PATH",)),
    Setting("allow-dangerous-overrides", "false", "Let admins enable privileged, host "
            "network/pid and host mounts for an app (docker_overrides).", _bool),
    Setting("store-fetch-timeout-seconds", "15", "Deadline for fetching an app store "
            "(headers and body).", _non_negative_float),
    Setting("store-max-bytes", str(4 * MiB), "Largest app store document accepted.",
            _positive_int),
    Setting("store-refresh-seconds", "3600", "Interval of the scheduled app store "
            "refresh (0 = never).", _non_negative_float),
    Setting("auto-update-seconds", "3600", "Interval of the background image pulls for "
            "auto_update apps (0 = never).", _non_negative_float),
    Setting("registry-timeout-seconds", "10", "Deadline for each image registry request "
            "of check_update/pull_latest.", _non_negative_float),
    Setting("icon-max-bytes", str(MiB), "Largest uploaded app logo.", _positive_int),
    # uploads, file manager and public shares (upstream-protocol 4.6-4.8, 9)
    Setting("max-upload-bytes", str(10 * 1024 * MiB), "Largest declared size of one "
            "chunked upload.", _positive_int),
    Setting("max-chunk-bytes", str(12 * MiB), "Largest decoded upload chunk (the body "
            "limit of /api/upload/chunk applies too).", _positive_int),
    Setting("uploads-per-user", "8", "Unfinished uploads one user may have at a time.",
            _positive_int),
    Setting("upload-ttl-seconds", "86400", "Remove uploads untouched for this long.",
            _non_negative_float),
    Setting("upload-stale-seconds", "600", "A user at --uploads-per-user gets the slots "
            "of their own uploads untouched for this long (0 = never).", _non_negative_float),
    Setting("cleanup-interval-seconds", "600", "How often abandoned uploads and expired "
            "shares are removed.", _positive_int),
    Setting("storage-usage-cache-seconds", "30", "How long a measured storage usage is "
            "reused for limit checks.", _non_negative_float),
    Setting("shares-per-user", "100", "Public shares one user may keep.", _positive_int),
    Setting("max-share-bytes", str(5 * 1024 * MiB), "Largest file that can be shared "
            "publicly.", _positive_int),
    Setting("share-password-attempts", "5", "Wrong share passwords allowed per share "
            "within 15 minutes.", _positive_int),
    Setting("share-token-seconds", "60", "Lifetime of a single-use share download link.",
            _non_negative_float),
)


@attrs.frozen
class Config:
    """The parsed settings; attribute names are the setting names with underscores."""

    values: Mapping[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    def path(self, *parts: str) -> str:
        return os.path.join(self.values["data_dir"], *parts)


class Options(usage.Options):
    """twistd sealskin options. Each also reads SEALSKIN_<NAME> from the environment."""

    synopsis = "[options]"
    optParameters = [
        [s.name, None, None, f"{s.help} [env {s.env}; default {s.default or 'unset'}]"]
        for s in SETTINGS
    ]

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted leaves this untyped
        self._env = os.environ if env is None else env
        self.config: Config | None = None

    def postOptions(self) -> None:
        self.config = build_config(self, self._env)


def _pick(opts: Mapping[str, Any], env: Mapping[str, str], s: Setting) -> str:
    if opts.get(s.name) is not None:
        return str(opts[s.name])
    for key in (s.env, *s.aliases):
        if key in env:
            return env[key]
    return s.default


def build_config(opts: Mapping[str, Any], env: Mapping[str, str]) -> Config:
    """Parses every setting; raises UsageError naming the setting on a bad value."""
    values: dict[str, Any] = {}
    for s in SETTINGS:
        raw = _pick(opts, env, s)
        try:
            values[s.name.replace("-", "_")] = s.parse(raw)
        except ValueError as e:
            raise usage.UsageError(f"--{s.name} ({s.env}): {raw!r} {e}") from None
    values["data_dir"] = os.path.abspath(values["data_dir"])
    return Config(values)


def markdown_table() -> str:
    """The options table of the README (kept in sync by tests/unit/test_config.py)."""
    rows = ["| Option | Environment | Default | Meaning |", "|---|---|---|---|"]
    for s in SETTINGS:
        env = ", ".join(f"`{e}`" for e in (s.env, *s.aliases))
        rows.append(f"| `--{s.name}` | {env} | `{s.default or '(unset)'}` | {s.help} |")
    return "\n".join(rows)


def update_readme(path: str) -> None:
    """Replaces the table between the README's options-table markers."""
    start, end = "<!-- options-table: generated by `python -m sealskin.config` -->", \
        "<!-- /options-table -->"
    with open(path, encoding="utf-8") as f:
        text = f.read()
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"{head}{start}\n{markdown_table()}\n{end}{tail}")


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--update-readme"]:
        update_readme(sys.argv[2])
    else:
        print(markdown_table())
