"""Shared fixtures for tests against the real Docker Engine (marker ``docker``).

- ``docker_client``: one SDK client for the session; skips (with the reason) only
  when no engine answers. At session end it removes every container and network
  labelled with the run label, under either key below.
- ``run_label``: unique per test run. Label what you create with
  ``{RUN_LABEL_KEY: run_label}``, or pass it as a provider's ``server_id``.
- ``httpd_image``: a tiny local image (no registry): busybox httpd serving
  ``/www`` on port 3000, built FROM scratch from the host's static busybox.
- ``docker_pool``: a started ``sealskin-docker`` Pool, stopped after the test.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from pathlib import Path

import docker
import docker.errors
import pytest
import pytest_twisted

from sealskin.blocking import Pool

RUN_LABEL_KEY = "org.sealskin.test-run"
SERVER_LABEL_KEY = "org.sealskin.server"
HTTPD_PORT = 3000
BUSYBOX = Path("/bin/busybox")

_HTTPD_DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
COPY www /www
ENTRYPOINT ["/bin/busybox"]
CMD ["httpd", "-f", "-p", "3000", "-h", "/www"]
"""
_INDEX = "sealskin test httpd\n"


@pytest.fixture(scope="session")
def run_label() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def docker_client(run_label: str) -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.skip(f"Docker Engine is unreachable: {exc}")
    try:
        yield client
    finally:
        remove_labelled(client, run_label)
        client.close()


def remove_labelled(client: docker.DockerClient, run_label: str) -> None:
    """Removes containers, then networks, carrying ``run_label`` under either key."""
    for key in (RUN_LABEL_KEY, SERVER_LABEL_KEY):
        selector: dict[str, str | list[str] | bool] = {"label": f"{key}={run_label}"}
        for container in client.containers.list(all=True, filters=selector, ignore_removed=True):
            _quietly(lambda: container.remove(force=True))
        for network in client.networks.list(filters=selector):
            _quietly(network.remove)


def _quietly(remove: Callable[[], object]) -> None:
    try:
        remove()
    except docker.errors.NotFound:
        pass


@pytest.fixture(scope="session")
def busybox_binary() -> Path:
    """The host's static busybox, installed with apt-get when missing (root only)."""
    if not BUSYBOX.exists():
        installed = subprocess.run(
            ["apt-get", "install", "-y", "-qq", "busybox-static"],
            capture_output=True,
            timeout=300,
        )
        if installed.returncode != 0 or not BUSYBOX.exists():
            pytest.skip("busybox-static is missing and could not be installed")
    return BUSYBOX


@pytest.fixture(scope="session")
def httpd_image(docker_client: docker.DockerClient, busybox_binary: Path) -> str:
    """Tag of the busybox httpd image (port 3000), built once per content hash."""
    digest = hashlib.sha256(busybox_binary.read_bytes())
    digest.update(_HTTPD_DOCKERFILE.encode() + _INDEX.encode())
    tag = f"sealskin/test-httpd:{digest.hexdigest()[:12]}"
    if not _image_exists(docker_client, tag):
        with tempfile.TemporaryDirectory() as context:
            root = Path(context)
            shutil.copy(busybox_binary, root / "busybox")
            (root / "www").mkdir()
            (root / "www" / "index.html").write_text(_INDEX)
            (root / "Dockerfile").write_text(_HTTPD_DOCKERFILE)
            build_image(root, tag)
    return tag


def build_image(context: Path, tag: str) -> None:
    """``docker build`` of a local context (the engine needs no registry for FROM scratch)."""
    subprocess.run(
        ["docker", "build", "-q", "-t", tag, str(context)],
        check=True,
        capture_output=True,
        timeout=300,
    )


def _image_exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


@pytest.fixture
def docker_pool() -> Iterator[Pool]:
    from twisted.internet import reactor

    pool = Pool(reactor, "sealskin-docker", 10)  # type: ignore[arg-type]  # the global reactor
    pool.start()
    try:
        yield pool
    finally:
        pool.stop()


# -- the locally built app images and a live server (shared by the session tests) -----

IMAGES = Path(__file__).resolve().parents[2] / "images"
PROBE = "sealskin/probe:latest"


@pytest.fixture(scope="session")
def probe_image(docker_client: docker.DockerClient) -> str:
    """``sealskin/probe``, built locally (skipped when already built from the same recipe)."""
    subprocess.run([str(IMAGES / "build.sh"), "probe"], check=True)
    return PROBE


@pytest_twisted.async_yield_fixture
async def live(tmp_path: Path, run_label: str, probe_image: str) -> Any:
    """The real server in-process, labelling its containers with this run's label."""
    from server_harness import start_server

    svc = await start_server(str(tmp_path / "data"), **{
        "server-id": run_label, "launch-timeout-seconds": "30",
        "registry-timeout-seconds": "5"})
    yield svc
    await svc.stop()
