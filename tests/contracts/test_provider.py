"""The Provider contract, run against every implementation (STYLE 3).

Each implementation contributes a harness: a provider plus a factory of
LaunchSpecs its machine can run. Docker's uses the locally built httpd image
and labels everything with a run label removed at session end.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import attrs
import pytest
import pytest_twisted
from twisted.internet import reactor

from sealskin.blocking import Pool
from sealskin.providers import Instance, LaunchSpec, Provider, ProviderError
from sealskin.providers.docker import DockerProvider
from tests.integration.conftest import (
    HTTPD_PORT,
    busybox_binary,
    docker_client,
    docker_pool,
    httpd_image,
    run_label,
)

__all__ = ["busybox_binary", "docker_client", "docker_pool", "httpd_image", "run_label"]


@attrs.frozen
class Harness:
    provider: Provider
    spec: Callable[[], LaunchSpec]


def _docker_harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    image: str = request.getfixturevalue("httpd_image")
    label: str = request.getfixturevalue("run_label")
    pool: Pool = request.getfixturevalue("docker_pool")
    provider = DockerProvider(
        reactor,  # type: ignore[arg-type]  # global reactor
        server_id=label,
        docker_pool=pool,
    )

    def spec() -> LaunchSpec:
        session_id = str(uuid.uuid4())
        return LaunchSpec(
            session_id=session_id,
            username="bob",
            app_id="probe",
            image=image,
            port=HTTPD_PORT,
            env={"SUBFOLDER": f"/{session_id}/"},
            pull_policy="never",
        )

    yield Harness(provider, spec)


HARNESSES: dict[str, Callable[[pytest.FixtureRequest], Iterator[Harness]]] = {
    "docker": _docker_harness,
}


@pytest.fixture(params=[pytest.param("docker", marks=pytest.mark.docker)])
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    yield from HARNESSES[request.param](request)


async def _started(harness: Harness, spec: LaunchSpec | None = None) -> tuple[LaunchSpec, Instance]:
    spec = spec or harness.spec()
    return spec, await harness.provider.start(spec)


@pytest_twisted.ensureDeferred
async def test_start_returns_a_running_instance_describing_the_session(harness: Harness) -> None:
    spec, instance = await _started(harness)
    assert instance.running
    assert (instance.session_id, instance.username, instance.app_id, instance.port) == (
        spec.session_id,
        spec.username,
        spec.app_id,
        spec.port,
    )
    assert instance.host and instance.instance_id
    await harness.provider.stop(instance.instance_id, grace_seconds=1)


@pytest_twisted.ensureDeferred
async def test_inspect_returns_what_start_returned(harness: Harness) -> None:
    _, instance = await _started(harness)
    assert await harness.provider.inspect(instance.instance_id) == instance
    await harness.provider.stop(instance.instance_id, grace_seconds=1)


@pytest_twisted.ensureDeferred
async def test_inspect_of_an_unknown_instance_is_none(harness: Harness) -> None:
    assert await harness.provider.inspect("0" * 64) is None


@pytest_twisted.ensureDeferred
async def test_stop_makes_the_instance_gone_and_is_idempotent(harness: Harness) -> None:
    _, instance = await _started(harness)
    await harness.provider.stop(instance.instance_id, grace_seconds=1)
    assert await harness.provider.inspect(instance.instance_id) is None
    await harness.provider.stop(instance.instance_id, grace_seconds=1)
    await harness.provider.stop("0" * 64, grace_seconds=1)


@pytest_twisted.ensureDeferred
async def test_managed_lists_started_instances_until_they_stop(harness: Harness) -> None:
    _, first = await _started(harness)
    _, second = await _started(harness)
    managed = await harness.provider.managed()
    assert {first, second} <= set(managed)
    await harness.provider.stop(first.instance_id, grace_seconds=1)
    remaining = {i.instance_id for i in await harness.provider.managed()}
    assert first.instance_id not in remaining and second.instance_id in remaining
    await harness.provider.stop(second.instance_id, grace_seconds=1)


@pytest_twisted.ensureDeferred
async def test_a_session_starts_once(harness: Harness) -> None:
    spec, instance = await _started(harness)
    with pytest.raises(ProviderError) as failed:
        await harness.provider.start(spec)
    assert failed.value.step == "create" and "already exists" in failed.value.detail
    assert await harness.provider.inspect(instance.instance_id) == instance
    await harness.provider.stop(instance.instance_id, grace_seconds=1)


@pytest_twisted.ensureDeferred
async def test_pull_never_of_an_absent_image_fails_at_pull(harness: Harness) -> None:
    with pytest.raises(ProviderError) as failed:
        await harness.provider.pull(f"sealskin/absent-{uuid.uuid4().hex}:1", policy="never")
    assert failed.value.step == "pull"
    assert harness.provider.pull_status("sealskin/absent:1") is None

