"""The locally built app images: sealskin/probe and sealskin/desktop.

The probe checks run twice: against ``images/probe/probe.py`` started as a local process
(no Docker needed) and against the ``sealskin/probe`` container (marker ``docker``). Images
are built by ``images/build.sh`` from a session fixture (a no-op when the recipe is
unchanged); the Docker tests skip only when ``docker info`` fails. Containers carry
``org.sealskin.test=1`` plus a per-run label and are removed by that label.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import importlib.util
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "images" / "build.sh"
PROBE_PY = REPO / "images" / "probe" / "probe.py"
RUN_ID = uuid.uuid4().hex[:12]
TEST_LABELS = ["--label", "org.sealskin.test=1", "--label", f"org.sealskin.test.run={RUN_ID}"]
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
READY_SECONDS = 60.0  # upstream-protocol 6.8


@dataclass(frozen=True)
class App:
    """Where an app answers and the credentials it expects."""

    host: str
    port: int
    prefix: str
    user: str
    password: str

    def auth(self) -> dict[str, str]:
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def connect(self, timeout: float = 10.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def get(self, path: str, *, auth: bool = True) -> tuple[int, bytes]:
        conn = self.connect()
        try:
            conn.request("GET", path, headers=self.auth() if auth else {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()


def _session_env(prefix: str) -> tuple[dict[str, str], str, str]:
    user, password = str(uuid.uuid4()), str(uuid.uuid4())
    env = {"SUBFOLDER": prefix, "CUSTOM_USER": user, "PASSWORD": password, "TZ": "Etc/UTC",
           "SEALSKIN_URL": "https://example.org/", "PUID": "1000", "PGID": "1000"}
    return env, user, password


def _wait_ready(app: App, what: str) -> None:
    """Poll GET <prefix> with auth until 200, as SealSkin's readiness check does."""
    deadline = time.monotonic() + READY_SECONDS
    last: object = None
    while time.monotonic() < deadline:
        try:
            status, _ = app.get(app.prefix)
            if status == 200:
                return
            last = status
        except OSError as exc:
            last = exc
        time.sleep(0.2)
    pytest.fail(f"{what} not ready within {READY_SECONDS:.0f}s (last: {last!r})")


# --- Docker plumbing --------------------------------------------------------------------------


def _docker(*args: str, check: bool = True) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args[:2])} failed: {done.stderr.strip()}")
    return done.stdout.strip()


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[None]:
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"Docker Engine not reachable (docker info: {exc})")
    if done.returncode != 0:
        pytest.skip(f"Docker Engine not reachable (docker info: {done.stderr.strip()[:200]})")
    yield
    ids = _docker("ps", "-aq", "--filter", f"label=org.sealskin.test.run={RUN_ID}", check=False)
    if ids:
        _docker("rm", "-f", *ids.split(), check=False)


def _build(name: str) -> None:
    done = subprocess.run([str(BUILD), name], capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        pytest.fail(f"images/build.sh {name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


@pytest.fixture(scope="session")
def probe_image(docker_engine: None) -> str:
    _build("probe")
    return "sealskin/probe:latest"


@pytest.fixture(scope="session")
def desktop_image(docker_engine: None) -> str:
    _build("desktop")
    return "sealskin/desktop:latest"


def _container_ip(container: str) -> str:
    """The address SealSkin would proxy to: network "bridge" first (upstream-protocol 6.5)."""
    networks = json.loads(_docker("inspect", "--format", "{{json .NetworkSettings.Networks}}",
                                  container))
    if networks.get("bridge", {}).get("IPAddress"):
        return str(networks["bridge"]["IPAddress"])
    for net in networks.values():
        if net.get("IPAddress"):
            return str(net["IPAddress"])
    raise AssertionError(f"container {container[:12]} has no IP address")


def _run(image: str, env: dict[str, str], *extra: str) -> str:
    args = ["run", "-d", "--shm-size", "1g", *TEST_LABELS, *extra]
    for key, value in env.items():
        args += ["-e", f"{key}={value}"]
    return _docker(*args, image)


@pytest.fixture()
def container_ids(docker_engine: None) -> Iterator[list[str]]:
    ids: list[str] = []
    yield ids
    for container in ids:
        _docker("rm", "-f", container, check=False)


# --- the probe, local or in its container ------------------------------------------------------


def _load_probe() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sealskin_probe", PROBE_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def probe_module() -> ModuleType:
    return _load_probe()


def _config_dir(base: Path) -> Path:
    config = base / "config"
    files = config / "Desktop" / "files"
    files.mkdir(parents=True)
    (files / "hello.txt").write_text("hello\n")
    for path in (config, config / "Desktop", files):
        path.chmod(0o755)
    (files / "hello.txt").chmod(0o644)
    return config


def _start_local(env: dict[str, str], config: Path) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, str(PROBE_PY), "--host", "127.0.0.1", "--port", "0",
         "--config-root", str(config), "--keep-user"],
        env={**env, "PATH": os.environ.get("PATH", "")}, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    if "listening on" not in line:
        proc.kill()
        pytest.fail(f"probe did not start: {line!r}")
    return proc, int(line.split(" under ")[0].rsplit(":", 1)[1])


@pytest.fixture(scope="module", params=["local", pytest.param("docker", marks=pytest.mark.docker)])
def probe(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    prefix = f"/{uuid.uuid4()}/"
    env, user, password = _session_env(prefix)
    config = _config_dir(tmp_path_factory.mktemp("probe"))
    if request.param == "local":
        proc, port = _start_local(env, config)
        app = App("127.0.0.1", port, prefix, user, password)
        try:
            _wait_ready(app, "local probe")
            yield app
        finally:
            proc.kill()
            proc.wait()
        return
    image = request.getfixturevalue("probe_image")
    container = _run(image, env, "-v", f"{config}:/config")
    try:
        app = App(_container_ip(container), 3000, prefix, user, password)
        _wait_ready(app, "sealskin/probe container")
        yield app
    finally:
        _docker("rm", "-f", container, check=False)


def test_probe_answers_401_without_or_with_wrong_credentials(probe: App) -> None:
    assert probe.get(probe.prefix, auth=False)[0] == 401
    wrong = App(probe.host, probe.port, probe.prefix, probe.user, "not-the-password")
    assert wrong.get(probe.prefix)[0] == 401


def test_probe_answers_404_outside_its_prefix(probe: App) -> None:
    assert probe.get("/")[0] == 404
    assert probe.get(f"/{uuid.uuid4()}/")[0] == 404
    assert probe.get(probe.prefix + "no-such-route")[0] == 404


def test_probe_page_names_itself(probe: App) -> None:
    status, body = probe.get(probe.prefix)
    assert status == 200
    assert b"sealskin-probe" in body


def test_probe_reports_request_headers_and_keeps_the_connection(probe: App) -> None:
    conn = probe.connect()
    try:
        conn.putrequest("GET", probe.prefix + "headers")
        for key, value in probe.auth().items():
            conn.putheader(key, value)
        conn.putheader("X-Forwarded-Proto", "https")
        conn.putheader("X-Twice", "one")
        conn.putheader("X-Twice", "two")
        conn.endheaders()
        first = conn.getresponse()
        seen = json.loads(first.read())
        sock = conn.sock
        conn.request("GET", probe.prefix, headers=probe.auth())
        second = conn.getresponse()
        second.read()
        assert second.status == 200
        assert conn.sock is sock, "the second request must reuse the keep-alive connection"
    finally:
        conn.close()
    assert first.status == 200
    assert seen["x-forwarded-proto"] == "https"
    assert seen["x-twice"] in (["one", "two"], "one, two")
    assert seen["authorization"] == probe.auth()["Authorization"]


def test_probe_streams_bytes_with_content_length(probe: App) -> None:
    n = 5_000_000
    conn = probe.connect()
    try:
        conn.request("GET", f"{probe.prefix}bytes?n={n}", headers=probe.auth())
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Length") == str(n)
        digest, total = hashlib.sha256(), 0
        while chunk := response.read(1 << 16):
            digest.update(chunk)
            total += len(chunk)
    finally:
        conn.close()
    assert total == n
    assert digest.hexdigest() == hashlib.sha256(bytes(i % 256 for i in range(256)) * (n // 256)
                                                + bytes(range(n % 256))).hexdigest()


def test_probe_hashes_a_chunked_post(probe: App) -> None:
    body = os.urandom(3 * 1024 * 1024)
    pieces = (body[i:i + 100_000] for i in range(0, len(body), 100_000))
    conn = probe.connect()
    try:
        conn.request("POST", probe.prefix + "sha256", body=pieces, encode_chunked=True,
                     headers={**probe.auth(), "Transfer-Encoding": "chunked"})
        response = conn.getresponse()
        result = json.loads(response.read())
    finally:
        conn.close()
    assert response.status == 200
    assert result == {"sha256": hashlib.sha256(body).hexdigest(), "length": len(body)}


def test_probe_env_shows_session_variables_but_never_the_password(probe: App) -> None:
    status, body = probe.get(probe.prefix + "env")
    env = json.loads(body)
    assert status == 200
    assert env["SUBFOLDER"] == probe.prefix
    assert env["SEALSKIN_URL"] == "https://example.org/"
    assert "PASSWORD" not in env and probe.password.encode() not in body


def test_probe_lists_files_under_config(probe: App) -> None:
    status, body = probe.get(probe.prefix + "files?path=/config/Desktop/files")
    listing = json.loads(body)
    assert status == 200
    assert listing["path"] == "/config/Desktop/files"
    assert [(e["name"], e["type"], e["size"]) for e in listing["entries"]] == [
        ("hello.txt", "file", 6)]
    assert probe.get(probe.prefix + "files?path=../../etc")[0] == 400


# --- a small independent WebSocket client (RFC 6455) -------------------------------------------


class WsClient:
    def __init__(self, app: App, path: str, protocols: list[str] | None = None) -> None:
        self.sock = socket.create_connection((app.host, app.port), timeout=15)
        self._buffer = b""
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: {app.host}:{app.port}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
                 f"Authorization: {app.auth()['Authorization']}"]
        if protocols:
            lines.append("Sec-WebSocket-Protocol: " + ", ".join(protocols))
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = self._until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        self.status = int(head[0].split(" ")[1])
        self.headers = {k.strip().lower(): v.strip()
                        for k, _, v in (line.partition(":") for line in head[1:] if line)}
        if self.status == 101:
            expected = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
            assert self.headers["sec-websocket-accept"] == expected

    def _until(self, marker: bytes) -> bytes:
        while marker not in self._buffer:
            self._fill()
        head, _, self._buffer = self._buffer.partition(marker)
        return head

    def _fill(self) -> None:
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionError("connection closed")
        self._buffer += data

    def _exact(self, n: int) -> bytes:
        while len(self._buffer) < n:
            self._fill()
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def send(self, opcode: int, payload: bytes, *, fin: bool = True) -> None:
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([(0x80 if fin else 0) | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def recv(self) -> tuple[int, bytes]:
        """One frame from the server: (opcode, payload); servers never mask."""
        b0, b1 = self._exact(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._exact(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._exact(8))
        assert not b1 & 0x80 and b0 & 0x80, "server frames are unmasked and unfragmented here"
        return b0 & 0x0F, self._exact(n)

    def close(self) -> None:
        self.sock.close()


def test_probe_websocket_echoes_text_binary_fragments_ping_and_close(probe: App) -> None:
    ws = WsClient(probe, probe.prefix + "ws", ["sealskin.v1", "binary"])
    try:
        assert ws.status == 101
        assert ws.headers["sec-websocket-protocol"] == "sealskin.v1"
        ws.send(0x1, "héllo".encode())
        assert ws.recv() == (0x1, "héllo".encode())
        blob = os.urandom(200_000)
        ws.send(0x2, blob)
        assert ws.recv() == (0x2, blob)
        ws.send(0x1, b"frag", fin=False)
        ws.send(0x9, b"ping!")  # control frames may interleave with fragments
        ws.send(0x0, b"mented", fin=False)
        ws.send(0x0, b"!")
        assert ws.recv() == (0xA, b"ping!")
        assert ws.recv() == (0x1, b"fragmented!")
        ws.send(0x8, struct.pack("!H", 4001) + b"bye")
        opcode, payload = ws.recv()
        assert opcode == 0x8 and struct.unpack("!H", payload[:2]) == (4001,)
    finally:
        ws.close()


def test_probe_websocket_without_subprotocol_sends_none(probe: App) -> None:
    ws = WsClient(probe, probe.prefix + "ws")
    try:
        assert ws.status == 101
        assert "sec-websocket-protocol" not in ws.headers
    finally:
        ws.close()


# --- probe internals and shutdown (no Docker) ----------------------------------------------------


def test_probe_prefix_is_normalised(probe_module: ModuleType) -> None:
    assert probe_module.normalise_prefix("abc") == "/abc/"
    assert probe_module.normalise_prefix("/abc/") == "/abc/"
    assert probe_module.normalise_prefix("") == "/"


def test_probe_basic_auth_check(probe_module: ModuleType) -> None:
    good = "Basic " + base64.b64encode(b"u:p:w").decode()
    assert probe_module.check_basic_auth(good, "u", "p:w")
    assert not probe_module.check_basic_auth(good, "u", "p")
    assert not probe_module.check_basic_auth("Basic !!!", "u", "p:w")
    assert not probe_module.check_basic_auth(None, "u", "p:w")
    assert not probe_module.check_basic_auth("Basic " + base64.b64encode(b":").decode(), "", "")


def test_probe_exits_promptly_on_sigterm(tmp_path: Path) -> None:
    env, _, _ = _session_env("/s/")
    proc, _ = _start_local(env, _config_dir(tmp_path))
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=5)
    assert time.monotonic() - started < 1.0


@pytest.mark.docker
def test_probe_container_runs_as_puid_and_stops_within_a_second(
        probe_image: str, container_ids: list[str]) -> None:
    env, _, _ = _session_env("/s/")
    container = _run(probe_image, {**env, "PUID": "1234", "PGID": "1234"})
    container_ids.append(container)
    _wait_ready(App(_container_ip(container), 3000, "/s/", env["CUSTOM_USER"], env["PASSWORD"]),
                "sealskin/probe container")
    top = _docker("top", container, "-o", "pid,uid,gid,cmd")
    assert top.splitlines()[1].split()[1:3] == ["1234", "1234"]
    started = time.monotonic()
    _docker("stop", "-t", "5", container)
    assert time.monotonic() - started < 2.0


# --- the desktop ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def desktop(desktop_image: str) -> Iterator[App]:
    prefix = f"/{uuid.uuid4()}/"
    env, user, password = _session_env(prefix)
    container = _run(desktop_image, env)
    try:
        app = App(_container_ip(container), 3000, prefix, user, password)
        _wait_ready(app, "sealskin/desktop container")
        yield app
    finally:
        _docker("rm", "-f", container, check=False)


@pytest.mark.docker
def test_desktop_page_opens_novnc_under_the_prefix(desktop: App) -> None:
    assert desktop.get(desktop.prefix, auth=False)[0] == 401
    assert desktop.get("/")[0] == 404
    status, body = desktop.get(desktop.prefix)
    assert status == 200
    assert b"vnc.html?autoconnect=1" in body
    assert f"path={desktop.prefix.lstrip('/')}websockify".encode() in body
    status, body = desktop.get(desktop.prefix + "vnc.html")
    assert status == 200 and b"noVNC" in body


class _Rfb:
    """Just enough RFB over the noVNC websocket to read one raw framebuffer."""

    def __init__(self, ws: WsClient) -> None:
        self.ws = ws
        self._buffer = b""

    def read(self, n: int) -> bytes:
        while len(self._buffer) < n:
            opcode, payload = self.ws.recv()
            assert opcode in (0x0, 0x2), f"unexpected websocket opcode {opcode}"
            self._buffer += payload
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def write(self, data: bytes) -> None:
        self.ws.send(0x2, data)

    def handshake(self) -> tuple[int, int, bytes]:
        assert self.read(12).startswith(b"RFB 003.")
        self.write(b"RFB 003.008\n")
        count = self.read(1)[0]
        assert 1 in self.read(count), "VNC security type None expected"
        self.write(b"\x01")
        assert self.read(4) == b"\0\0\0\0"
        self.write(b"\x01")  # shared
        width, height = struct.unpack("!HH", self.read(4))
        pixel_format = self.read(16)
        (name_length,) = struct.unpack("!I", self.read(4))
        self.read(name_length)
        return width, height, pixel_format

    def frame(self, width: int, height: int, bytes_per_pixel: int) -> list[bytes]:
        self.write(struct.pack("!BBHi", 2, 0, 1, 0))  # SetEncodings: raw only
        self.write(struct.pack("!BBHHHH", 3, 0, 0, 0, width, height))
        assert self.read(1) == b"\x00", "FramebufferUpdate expected"
        self.read(1)
        (rects,) = struct.unpack("!H", self.read(2))
        pixels: list[bytes] = []
        for _ in range(rects):
            _, _, w, h, encoding = struct.unpack("!HHHHi", self.read(12))
            assert encoding == 0
            data = self.read(w * h * bytes_per_pixel)
            pixels += [data[i:i + bytes_per_pixel] for i in range(0, len(data), bytes_per_pixel)]
        return pixels


@pytest.mark.docker
def test_desktop_websocket_reaches_a_visible_desktop(desktop: App) -> None:
    ws = WsClient(desktop, desktop.prefix + "websockify", ["binary"])
    try:
        assert ws.status == 101
        rfb = _Rfb(ws)
        width, height, pixel_format = rfb.handshake()
        bits_per_pixel = pixel_format[0]
        assert (width, height) >= (640, 480) and bits_per_pixel == 32
        deadline = time.monotonic() + 20
        while True:
            colours = set(rfb.frame(width, height, 4))
            # background, window frame, terminal, text: a desktop, not a blank screen
            if len(colours) >= 4 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert len(colours) >= 4, f"the desktop looks blank ({len(colours)} colours)"
    finally:
        ws.close()
