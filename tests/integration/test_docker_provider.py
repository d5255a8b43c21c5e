"""DockerProvider against the real engine (no registry here: images are built locally).

Everything the provider creates carries ``org.sealskin.server=<run label>`` and is
removed by label at session end (conftest). GPU mapping is tested through the
pure kwargs builder and a fake sysfs: this machine has no GPU.
"""

from __future__ import annotations

import http.server
import json
import os
import socketserver
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.logger import LogLevel, capturedLogs

from sealskin.blocking import Pool
from sealskin.providers import GpuDevice, GpuRequest, Instance, LaunchSpec, Mount, ProviderError
from sealskin.providers.container_spec import CAP_ADD, LABEL_SERVER, container_kwargs, resource_name
from sealskin.providers.docker import DockerProvider
from sealskin.providers.gpus import scan_gpus

from tests.integration.conftest import HTTPD_PORT, RUN_LABEL_KEY, build_image

MiB = 1024 * 1024
docker_only = pytest.mark.docker


def make_spec(image: str, **changes: Any) -> LaunchSpec:
    session_id = str(uuid.uuid4())
    fields: dict[str, Any] = {
        "session_id": session_id,
        "username": "alice",
        "app_id": "httpd",
        "image": image,
        "port": HTTPD_PORT,
        "env": {"SUBFOLDER": f"/{session_id}/", "TZ": "Etc/UTC"},
        "pull_policy": "never",
        "memory_bytes": 128 * MiB,
        "nano_cpus": 500_000_000,
        "pids_limit": 64,
        "shm_bytes": 32 * MiB,
    }
    fields.update(changes)
    return LaunchSpec(**fields)


@pytest.fixture
def stream_pool() -> Iterator[Pool]:
    pool = Pool(reactor, "sealskin-docker-stream", 2)  # type: ignore[arg-type]  # global reactor
    pool.start()
    yield pool
    pool.stop()


@pytest.fixture
def provider(
    docker_client: docker.DockerClient, run_label: str, docker_pool: Pool, stream_pool: Pool
) -> DockerProvider:
    return DockerProvider(
        reactor,  # type: ignore[arg-type]  # global reactor
        server_id=run_label,
        docker_pool=docker_pool,
        stream_pool=stream_pool,
    )


@pytest.fixture(scope="session")
def broken_image(
    docker_client: docker.DockerClient, httpd_image: str, tmp_path_factory: Any
) -> str:
    """The httpd image with an entrypoint that does not exist: start fails."""
    tag = httpd_image.replace("test-httpd", "test-broken")
    context: Path = tmp_path_factory.mktemp("broken")
    (context / "Dockerfile").write_text(f'FROM {httpd_image}\nENTRYPOINT ["/bin/does-not-exist"]\n')
    build_image(context, tag)
    return tag


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


async def wait_until_reachable(pool: Pool, url: str, *, deadline_seconds: float = 20) -> bytes:
    deadline = time.monotonic() + deadline_seconds
    while True:
        status, body = await pool.run(_get, url)
        if status == 200:
            return body
        assert time.monotonic() < deadline, f"{url} not reachable in {deadline_seconds}s"
        await deferLater(reactor, 0.1)


def _leftovers(client: docker.DockerClient, session_id: str) -> tuple[list[object], list[object]]:
    name = resource_name(session_id)
    containers = client.containers.list(all=True, filters={"name": name})
    networks = client.networks.list(names=[name])
    return list(containers), list(networks)


# -- start, confinement, stop ----------------------------------------------------


@docker_only
@pytest_twisted.ensureDeferred
async def test_session_starts_confined_reachable_from_host_and_stops_without_trace(
    provider: DockerProvider,
    docker_client: docker.DockerClient,
    docker_pool: Pool,
    httpd_image: str,
    run_label: str,
) -> None:
    spec = make_spec(httpd_image)
    began = time.monotonic()
    instance = await provider.start(spec)
    started = time.monotonic()
    body = await wait_until_reachable(docker_pool, f"http://{instance.host}:{instance.port}/")
    print(f"start() {started - began:.2f}s, start->reachable {time.monotonic() - began:.2f}s")

    assert b"sealskin test httpd" in body
    assert (instance.session_id, instance.username) == (spec.session_id, "alice")
    assert instance.app_id == "httpd"
    assert instance.running and instance.port == HTTPD_PORT
    assert await provider.inspect(instance.instance_id) == instance

    attrs = docker_client.containers.get(instance.instance_id).attrs
    assert attrs["Name"] == f"/sealskin-{spec.session_id}"
    assert attrs["Config"]["Labels"] == {
        "org.sealskin.server": run_label,
        "org.sealskin.session": spec.session_id,
        "org.sealskin.user": "alice",
        "org.sealskin.app": "httpd",
        "org.sealskin.port": str(HTTPD_PORT),
    }
    assert f"SUBFOLDER=/{spec.session_id}/" in attrs["Config"]["Env"]
    host_config = attrs["HostConfig"]
    assert not host_config["PortBindings"] and not attrs["NetworkSettings"]["Ports"]
    assert host_config["SecurityOpt"] == ["no-new-privileges:true"]
    assert host_config["CapDrop"] == ["ALL"]
    assert sorted(host_config["CapAdd"]) == sorted(CAP_ADD)
    assert not host_config["Privileged"]
    assert host_config["Memory"] == 128 * MiB
    assert host_config["NanoCpus"] == 500_000_000
    assert host_config["PidsLimit"] == 64
    assert host_config["ShmSize"] == 32 * MiB
    assert list(attrs["NetworkSettings"]["Networks"]) == [resource_name(spec.session_id)]
    network = docker_client.networks.get(resource_name(spec.session_id))
    assert network.attrs["Labels"][LABEL_SERVER] == run_label
    assert network.attrs["Internal"] is False

    await provider.stop(instance.instance_id, grace_seconds=1)
    assert await provider.inspect(instance.instance_id) is None
    assert _leftovers(docker_client, spec.session_id) == ([], [])
    await provider.stop(instance.instance_id, grace_seconds=1)  # idempotent


@docker_only
@pytest_twisted.ensureDeferred
async def test_bind_mounts_are_applied_read_write_and_read_only(
    provider: DockerProvider,
    docker_client: docker.DockerClient,
    docker_pool: Pool,
    httpd_image: str,
    tmp_path: Path,
) -> None:
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "index.html").write_text("from the home mount\n")
    (tmp_path / "shared").mkdir()
    mounts = (
        Mount(str(tmp_path / "home"), "/www"),
        Mount(str(tmp_path / "shared"), "/shared", read_only=True),
    )
    instance = await provider.start(make_spec(httpd_image, mounts=mounts))
    body = await wait_until_reachable(docker_pool, f"http://{instance.host}:{instance.port}/")
    assert body == b"from the home mount\n"
    found = docker_client.containers.get(instance.instance_id).attrs["Mounts"]
    assert {(m["Destination"], m["RW"]) for m in found} == {("/www", True), ("/shared", False)}
    await provider.stop(instance.instance_id, grace_seconds=1)


@docker_only
@pytest_twisted.ensureDeferred
async def test_failed_start_leaves_nothing_behind(
    provider: DockerProvider, docker_client: docker.DockerClient, broken_image: str
) -> None:
    spec = make_spec(broken_image)
    with pytest.raises(ProviderError) as failed:
        await provider.start(spec)
    assert failed.value.step == "start" and not failed.value.unavailable
    assert "does-not-exist" not in failed.value.detail  # our sentence, not the engine's
    assert _leftovers(docker_client, spec.session_id) == ([], [])


@docker_only
@pytest_twisted.ensureDeferred
async def test_invalid_mount_fails_at_create_and_leaves_nothing_behind(
    provider: DockerProvider, docker_client: docker.DockerClient, httpd_image: str, tmp_path: Path
) -> None:
    spec = make_spec(httpd_image, mounts=(Mount(str(tmp_path / "missing"), "/config"),))
    with pytest.raises(ProviderError) as failed:
        await provider.start(spec)
    assert failed.value.step == "create"
    assert _leftovers(docker_client, spec.session_id) == ([], [])
    assert not (tmp_path / "missing").exists()  # R4: Docker must not create it as root


@docker_only
@pytest_twisted.ensureDeferred
async def test_second_start_of_a_session_conflicts_and_keeps_the_first(
    provider: DockerProvider, httpd_image: str
) -> None:
    spec = make_spec(httpd_image)
    first = await provider.start(spec)
    with pytest.raises(ProviderError) as failed:
        await provider.start(spec)
    assert failed.value.step == "create" and "already exists" in failed.value.detail
    assert (await provider.inspect(first.instance_id)) == first
    await provider.stop(first.instance_id, grace_seconds=1)


@docker_only
@pytest_twisted.ensureDeferred
async def test_dangerous_override_is_refused_before_anything_is_created(
    provider: DockerProvider, docker_client: docker.DockerClient, httpd_image: str
) -> None:
    spec = make_spec(httpd_image, overrides={"privileged": True})
    with pytest.raises(ProviderError) as failed:
        await provider.start(spec)
    assert failed.value.step == "create"
    assert _leftovers(docker_client, spec.session_id) == ([], [])


@docker_only
@pytest_twisted.ensureDeferred
async def test_safe_overrides_merge_with_our_confinement(
    provider: DockerProvider, docker_client: docker.DockerClient, httpd_image: str
) -> None:
    steam = {"security_opt": ["seccomp=unconfined", "apparmor=unconfined"]}
    instance = await provider.start(make_spec(httpd_image, overrides=steam))
    host_config = docker_client.containers.get(instance.instance_id).attrs["HostConfig"]
    assert host_config["SecurityOpt"] == [
        "no-new-privileges:true",
        "seccomp=unconfined",
        "apparmor=unconfined",
    ]
    await provider.stop(instance.instance_id, grace_seconds=1)


@docker_only
@pytest_twisted.ensureDeferred
async def test_managed_finds_our_containers_by_label_and_not_others(
    provider: DockerProvider,
    docker_client: docker.DockerClient,
    docker_pool: Pool,
    httpd_image: str,
    run_label: str,
) -> None:
    ours = await provider.start(make_spec(httpd_image))
    foreign = await docker_pool.run(
        docker_client.containers.create,
        httpd_image,
        labels={RUN_LABEL_KEY: run_label, LABEL_SERVER: "another-server"},
    )
    found = await provider.managed()
    assert ours in found
    assert foreign.id not in {i.instance_id for i in found}
    assert await provider.inspect(str(foreign.id)) is None
    await provider.stop(str(foreign.id), grace_seconds=1)  # not ours: left alone
    assert docker_client.containers.get(str(foreign.id)).id == foreign.id
    await provider.stop(ours.instance_id, grace_seconds=1)
    assert ours.instance_id not in {i.instance_id for i in await provider.managed()}


@docker_only
@pytest_twisted.ensureDeferred
async def test_sessions_cannot_reach_each_other_while_the_host_reaches_both(
    provider: DockerProvider,
    docker_client: docker.DockerClient,
    docker_pool: Pool,
    httpd_image: str,
) -> None:
    a = await provider.start(make_spec(httpd_image))
    b = await provider.start(make_spec(httpd_image))
    for instance in (a, b):
        await wait_until_reachable(docker_pool, f"http://{instance.host}:{instance.port}/")

    def wget(source: Instance, target: Instance) -> int:
        # busybox wget -T crashes in this build; `timeout` bounds it instead
        url = f"http://{target.host}:{target.port}/"
        command = ["busybox", "timeout", "3", "busybox", "wget", "-qO-", url]
        exit_code = docker_client.containers.get(source.instance_id).exec_run(command).exit_code
        return -1 if exit_code is None else exit_code

    assert await docker_pool.run(wget, a, a) == 0  # wget works inside a session
    assert await docker_pool.run(wget, a, b) != 0
    assert await docker_pool.run(wget, b, a) != 0
    for instance in (a, b):
        await provider.stop(instance.instance_id, grace_seconds=1)


# -- pulls (no registry on this machine) -------------------------------------------


@docker_only
@pytest_twisted.ensureDeferred
async def test_pull_never_with_a_missing_image_fails_at_pull(provider: DockerProvider) -> None:
    with pytest.raises(ProviderError) as failed:
        await provider.pull("sealskin/not-here:1", policy="never")
    assert failed.value.step == "pull" and not failed.value.unavailable


@docker_only
@pytest_twisted.ensureDeferred
async def test_pull_if_missing_uses_the_local_image_without_pulling(
    provider: DockerProvider, docker_client: docker.DockerClient, httpd_image: str
) -> None:
    with capturedLogs() as events:
        image_id = await provider.pull(httpd_image, policy="if-missing")
    assert image_id == str(docker_client.images.get(httpd_image).id).removeprefix("sha256:")[:12]
    assert not [e for e in events if e.get("log_format") == "pulling {image}"]
    assert provider.pull_status(httpd_image) is None


@docker_only
@pytest_twisted.ensureDeferred
async def test_pull_always_without_registry_falls_back_to_the_local_image_with_a_warning(
    provider: DockerProvider, httpd_image: str
) -> None:
    with capturedLogs() as events:
        image_id = await provider.pull(httpd_image, policy="always")
    assert image_id == await provider.image_id(httpd_image)
    warnings = [e for e in events if e["log_level"] == LogLevel.warn]
    assert any(e.get("image") == httpd_image and "local image" in e["log_format"] for e in warnings)


@docker_only
@pytest_twisted.ensureDeferred
async def test_pull_of_an_unknown_image_fails_fast(provider: DockerProvider) -> None:
    began = time.monotonic()
    with pytest.raises(ProviderError) as failed:
        await provider.pull("sealskin/never-built:1", policy="always")
    assert time.monotonic() - began < 15
    assert failed.value.step == "pull" and "registry unreachable" in failed.value.detail
    assert provider.pull_status("sealskin/never-built:1") is None


class _SilentEngine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Answers the version ping, then never answers a pull: a registry that hangs."""

    daemon_threads = True

    def __init__(self, path: str) -> None:
        self.pull_requests = 0
        self.release = threading.Event()
        super().__init__(path, _SilentEngineHandler)


class _SilentEngineHandler(http.server.BaseHTTPRequestHandler):
    server: _SilentEngine

    def address_string(self) -> str:
        return "unix"

    def do_GET(self) -> None:
        if self.path.endswith("/version"):
            self._reply(200, {"ApiVersion": "1.41", "Version": "20.10.24"})
        else:
            self._reply(404, {"message": "No such image"})

    def do_POST(self) -> None:
        if "/images/create" in self.path:
            self.server.pull_requests += 1
            self.server.release.wait(60)  # the client has given up by then: no reply
            return
        self._reply(404, {"message": "page not found"})

    def _reply(self, status: int, body: dict[str, str]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def silent_engine(tmp_path: Path) -> Iterator[_SilentEngine]:
    server = _SilentEngine(str(tmp_path / "engine.sock"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


@pytest_twisted.ensureDeferred
async def test_a_pull_that_gets_no_answer_fails_within_its_idle_bound_and_is_shared(
    silent_engine: _SilentEngine, docker_pool: Pool, stream_pool: Pool
) -> None:
    socket_url = f"unix://{silent_engine.server_address}"
    provider = DockerProvider(
        reactor,  # type: ignore[arg-type]  # global reactor
        server_id="silent",
        docker_pool=docker_pool,
        stream_pool=stream_pool,
        client_factory=lambda **kw: docker.DockerClient(base_url=socket_url, **kw),
        pull_idle_seconds=1,
    )
    began = time.monotonic()
    images = ["example/app:1", "docker.io/example/app:1", "example/app:1", "example/app"]
    pulls = [Deferred.fromCoroutine(provider.pull(i, policy="always")) for i in images]
    await deferLater(reactor, 0.3)
    assert provider.pull_status("example/app:1") == "pulling"
    for pull in pulls:
        with pytest.raises(ProviderError) as failed:
            await pull
        assert failed.value.step == "pull" and "registry unreachable" in failed.value.detail
    assert time.monotonic() - began < 5
    # one shared pull per image: example/app:1 (twice, once via docker.io), example/app:latest
    assert silent_engine.pull_requests == 2
    assert provider.pull_status("example/app:1") is None


# -- engine unreachable ---------------------------------------------------------------


@pytest.mark.parametrize("version", [None, "1.41"], ids=["ping-at-construction", "fails-on-call"])
@pytest_twisted.ensureDeferred
async def test_unreachable_engine_is_reported_as_unavailable(
    docker_pool: Pool, version: str | None
) -> None:
    provider = DockerProvider(
        reactor,  # type: ignore[arg-type]  # global reactor
        server_id="nowhere",
        docker_pool=docker_pool,
        client_factory=lambda **kw: docker.DockerClient(
            base_url="unix:///nonexistent.sock", version=version, **kw
        ),
    )
    with pytest.raises(ProviderError) as failed:
        await provider.managed()
    assert (failed.value.step, failed.value.unavailable) == ("list", True)
    assert failed.value.detail == "Docker engine is unreachable."
    with pytest.raises(ProviderError) as failed:
        await provider.start(make_spec("sealskin/test-httpd:any"))
    assert (failed.value.step, failed.value.unavailable) == ("pull", True)


# -- GPU mapping: pure code, this machine has no GPU --------------------------------


def test_nvidia_gpu_becomes_a_device_request_with_the_nvidia_runtime() -> None:
    kwargs = container_kwargs(
        make_spec("img", gpu=GpuRequest("nvidia", "1")), server_id="s", overrides={}
    )
    assert kwargs["runtime"] == "nvidia"
    (request,) = kwargs["device_requests"]
    assert request["DeviceIDs"] == ["1"] and "gpu" in request["Capabilities"][0]
    assert "devices" not in kwargs


def test_dri3_gpu_maps_only_its_render_node() -> None:
    kwargs = container_kwargs(
        make_spec("img", gpu=GpuRequest("dri3", "/dev/dri/renderD129")), server_id="s", overrides={}
    )
    assert kwargs["devices"] == ["/dev/dri/renderD129:/dev/dri/renderD129:rwm"]
    assert "device_requests" not in kwargs and "runtime" not in kwargs


def test_no_gpu_maps_no_device() -> None:
    kwargs = container_kwargs(make_spec("img"), server_id="s", overrides={})
    assert not {"devices", "device_requests", "runtime"} & set(kwargs)


@pytest.mark.parametrize(
    "gpu", [GpuRequest("dri3", "/dev/sda"), GpuRequest("nvidia", "all"), GpuRequest("amd", "0")]
)
def test_unknown_gpu_requests_are_refused(gpu: GpuRequest) -> None:
    with pytest.raises(ProviderError) as failed:
        container_kwargs(make_spec("img", gpu=gpu), server_id="s", overrides={})
    assert failed.value.step == "create"


def test_gpu_scan_pairs_render_nodes_with_their_drivers(tmp_path: Path) -> None:
    dev_dri, sys_drm = tmp_path / "dev", tmp_path / "sys"
    dev_dri.mkdir()
    for node, driver in (("renderD129", "nvidia"), ("renderD128", "i915")):
        (dev_dri / node).touch()
        (sys_drm / node / "device").mkdir(parents=True)
        os.symlink(f"../../../bus/pci/drivers/{driver}", sys_drm / node / "device" / "driver")
    found = scan_gpus(dev_dri, sys_drm, nvidia_smi="/nonexistent/nvidia-smi")
    assert found == [
        GpuDevice("/dev/dri/renderD128", "i915"),
        GpuDevice("/dev/dri/renderD129", "nvidia"),
    ]


def test_gpu_scan_on_a_machine_without_gpus_is_empty(tmp_path: Path) -> None:
    assert scan_gpus(tmp_path / "none", tmp_path / "none", nvidia_smi="/nonexistent") == []


@docker_only
@pytest_twisted.ensureDeferred
async def test_this_machine_reports_no_gpus(provider: DockerProvider) -> None:
    assert await provider.gpus() == []
