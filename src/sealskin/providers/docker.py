"""The Docker provider: one labelled container and one bridge network per session.

Every SDK call runs on the ``sealskin-docker`` pool through one lazily built
client (its construction pings the engine, so it is built on a pool thread);
pulls stream their progress on the stream pool. SDK failures leave this module
as :class:`ProviderError` only (STYLE 5): ``unavailable=True`` when the engine
cannot be reached or does not answer in time.

Confinement follows upstream-protocol 10 (W13, W16, R2, R3): labels on all we
create, no published ports, no-new-privileges, all capabilities dropped but a
few, limits from the spec, store overrides allow-listed (``overrides.py``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

import attrs
import docker
import docker.errors
import requests
import urllib3.exceptions
from requests import PreparedRequest, Response
from requests.adapters import BaseAdapter
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.logger import Logger

from sealskin.blocking import Pool
from sealskin.providers import GpuDevice, Instance, LaunchSpec, ProviderError
from sealskin.providers.container_spec import (
    LABEL_APP,
    LABEL_PORT,
    LABEL_SERVER,
    LABEL_SESSION,
    LABEL_USER,
    PULL_POLICIES,
    container_kwargs,
    resource_name,
    session_labels,
)
from sealskin.providers.gpus import scan_gpus
from sealskin.providers.overrides import filter_overrides

P = ParamSpec("P")
T = TypeVar("T")

log = Logger()

_UNREACHABLE_REGISTRY = (
    "dial tcp",
    "no such host",
    "connection refused",
    "i/o timeout",
    "tls handshake timeout",
    "x509",
    "network is unreachable",
    "client.timeout",
    "no progress",
)
_UNKNOWN_IMAGE = ("not found", "manifest unknown", "pull access denied", "does not exist")

_FAILED = {
    "pull": "The image could not be pulled.",
    "create": "The container could not be created.",
    "start": "The container could not be started.",
    "inspect": "The container could not be inspected.",
    "stop": "The container could not be stopped.",
    "list": "Containers could not be listed.",
}
_CONFLICT = {"create": "A container for this session already exists."}


def split_reference(image: str) -> tuple[str, str]:
    """(repository, tag or digest) with Docker's implicit ``latest``."""
    if "@" in image:
        repository, _, digest = image.partition("@")
        return repository, digest
    slash, colon = image.rfind("/"), image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon + 1 :]
    return image, "latest"


def _reference(image: str) -> str:
    """One spelling per image, so concurrent pulls of it share one operation."""
    repository, tag = split_reference(image)
    for hub in ("docker.io/", "index.docker.io/"):
        repository = repository.removeprefix(hub)
    repository = repository.removeprefix("library/")
    return f"{repository}@{tag}" if ":" in tag else f"{repository}:{tag}"


@attrs.define
class _PullOp:
    waiters: list[Deferred[str]] = attrs.Factory(list)
    layers: dict[str, str] = attrs.Factory(dict)
    done: Deferred[None] | None = None


@attrs.define
class _Created:
    network: str | None = None
    container: str | None = None


class _EngineUnreachable(Exception):
    """The client could not be built: no engine answered the version ping."""


class _PullFailed(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DockerProvider:
    """The Provider seam over a Docker Engine (API 1.41 or later)."""

    def __init__(
        self,
        reactor: IReactorFromThreads,
        *,
        server_id: str,
        docker_pool: Pool,
        stream_pool: Pool | None = None,
        client_factory: Callable[..., docker.DockerClient] = docker.from_env,
        call_timeout_seconds: float = 30,
        pull_idle_seconds: float = 60,
        allow_dangerous: bool = False,
    ) -> None:
        """``stream_pool`` runs pulls (one thread each); without it they share ``docker_pool``.

        A pull fails when the engine sends nothing for ``pull_idle_seconds``.
        ``allow_dangerous`` lets admin-approved dangerous overrides through;
        otherwise :meth:`start` re-checks ``spec.overrides`` against the safe list.
        """
        self._reactor = reactor
        self._server_id = server_id
        self._docker_pool = docker_pool
        self._stream_pool = stream_pool or docker_pool
        self._client_factory = client_factory
        self._call_timeout_seconds = call_timeout_seconds
        self._pull_idle_seconds = pull_idle_seconds
        self._allow_dangerous = allow_dangerous
        self._lock = threading.Lock()
        self._client: docker.DockerClient | None = None
        self._pull_client: docker.DockerClient | None = None
        self._pulls: dict[str, _PullOp] = {}

    # -- images ---------------------------------------------------------------

    async def image_id(self, image: str) -> str | None:
        """The local image's short id (no ``sha256:``), or None if absent."""
        return await self._call("pull", _thd_image_id, image)

    async def pull(self, image: str, *, policy: str) -> str | None:
        """Makes ``image`` available according to ``policy``; returns its short id.

        ``always`` falls back to a local copy (with a warning) when the pull
        fails; ``never`` raises ProviderError("pull") for an absent image.
        Safe to cancel: a running pull continues for the other callers.
        """
        if policy not in PULL_POLICIES:
            raise ProviderError("pull", "Unknown pull policy.")
        if policy != "always":
            local = await self.image_id(image)
            if local is not None:
                return local
            if policy == "never":
                raise ProviderError("pull", "The image is absent and its pull policy is never.")
            return await self._pull_shared(image)
        try:
            return await self._pull_shared(image)
        except ProviderError as failed:
            local = None if failed.unavailable else await self.image_id(image)
            if local is None:
                raise
            log.warn(
                "pull of {image} failed ({detail}); using the local image {image_id}",
                image=image,
                detail=failed.detail,
                image_id=local,
            )
            return local

    def pull_status(self, image: str) -> str | None:
        """``"pulling"`` while a pull of ``image`` runs, else None."""
        return "pulling" if _reference(image) in self._pulls else None

    async def _pull_shared(self, image: str) -> str:
        ref = _reference(image)
        waiter: Deferred[str] = Deferred()
        op = self._pulls.get(ref)
        if op is None:
            op = self._pulls[ref] = _PullOp(waiters=[waiter])
            op.done = Deferred.fromCoroutine(self._pull_op(ref, op))
        else:
            op.waiters.append(waiter)
        return await waiter

    async def _pull_op(self, ref: str, op: _PullOp) -> None:
        outcome: str | Exception
        try:
            outcome = await self._pull_now(ref)
        except Exception as exc:
            outcome = exc
        del self._pulls[ref]
        for waiter in op.waiters:
            if waiter.called:  # cancelled by its caller
                continue
            if isinstance(outcome, str):
                waiter.callback(outcome)
            else:
                waiter.errback(outcome)

    async def _pull_now(self, ref: str) -> str:
        repository, tag = split_reference(ref)
        log.info("pulling {image}", image=ref)

        def report(line: Mapping[str, object]) -> None:
            self._reactor.callFromThread(self._progress, ref, dict(line))

        try:
            await self._stream_pool.run(self._thd_pull, repository, tag, report)
        except _PullFailed as failed:
            log.warn("pull of {image} failed: {reason}", image=ref, reason=failed.message)
            raise ProviderError("pull", _pull_detail(failed.message)) from None
        except CancelledError:
            raise
        except Exception as exc:
            raise self._translate("pull", exc) from exc
        image_id = await self.image_id(ref)
        if image_id is None:
            raise ProviderError("pull", "The pulled image is missing.")
        log.info("pulled {image} as {image_id}", image=ref, image_id=image_id)
        return image_id

    def _progress(self, ref: str, line: Mapping[str, object]) -> None:
        op = self._pulls.get(ref)
        layer, status = str(line.get("id", "")), str(line.get("status", ""))
        if op is None or op.layers.get(layer) == status:
            return  # progress ticks within one status are not logged
        op.layers[layer] = status
        log.debug("pull {image}: {layer} {status}", image=ref, layer=layer, status=status)

    def _thd_pull(
        self, repository: str, tag: str, report: Callable[[Mapping[str, object]], None]
    ) -> None:
        client = self._thd_pull_client()
        try:
            for line in client.api.pull(repository, tag=tag, stream=True, decode=True):
                if "error" in line:
                    raise _PullFailed(str(line["error"]))
                report(line)
        except docker.errors.APIError as exc:
            raise _PullFailed(str(exc.explanation or exc)) from exc
        except requests.exceptions.ConnectTimeout:
            raise  # the engine, not the registry
        except (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError, TimeoutError):
            raise _PullFailed(f"no progress for {self._pull_idle_seconds:g}s") from None

    # -- containers -------------------------------------------------------------

    async def start(self, spec: LaunchSpec) -> Instance:
        """Pulls (per ``spec.pull_policy``), creates and starts the session's container.

        Raises ProviderError with step pull, create or start; whatever was
        created is removed first. Not safe to cancel (the caller shields it).
        """
        overrides = self._checked_overrides(spec.overrides)
        kwargs = container_kwargs(spec, server_id=self._server_id, overrides=overrides)
        await self.pull(spec.image, policy=spec.pull_policy)
        created = _Created()
        try:
            return await self._create_and_start(spec, kwargs, created)
        except BaseException:
            await self._remove_created(created)
            raise

    def _checked_overrides(self, requested: Mapping[str, object]) -> Mapping[str, object]:
        if self._allow_dangerous:
            return requested
        accepted, refused = filter_overrides(requested, dangerous_allowed=())
        if refused:
            log.warn("refused container overrides {keys}", keys=refused)
            raise ProviderError("create", "The app asks for container settings not allowed.")
        return accepted

    async def _create_and_start(
        self, spec: LaunchSpec, kwargs: dict[str, Any], created: _Created
    ) -> Instance:
        name = resource_name(spec.session_id)
        labels = session_labels(spec, server_id=self._server_id)
        del labels[LABEL_PORT]
        await self._call("create", _thd_create_network, name, labels)
        created.network = name
        created.container = await self._call("create", _thd_create_container, kwargs)
        await self._call("start", _thd_start_container, created.container)
        instance = await self._call("start", _thd_instance, created.container, self._server_id)
        if instance is None or not instance.running:
            raise ProviderError("start", "The container exited right after it started.")
        return instance

    async def _remove_created(self, created: _Created) -> None:
        if created.network is None:
            return
        try:
            await self._call(
                "stop", _thd_remove, created.container, created.network, self._server_id
            )
        except CancelledError:
            raise
        except Exception:
            log.failure("could not remove what a failed start left: {name}", name=created.network)

    async def inspect(self, instance_id: str) -> Instance | None:
        """The container as an Instance; None when gone or not created by this server."""
        return await self._call("inspect", _thd_instance, instance_id, self._server_id)

    async def stop(self, instance_id: str, *, grace_seconds: float) -> None:
        """Stops (SIGTERM, then SIGKILL after ``grace_seconds``) and removes the
        container and its session network. Idempotent; ignores containers of others."""
        await self._call("stop", _thd_stop, instance_id, self._server_id, grace_seconds)

    async def managed(self) -> Sequence[Instance]:
        """Every container labelled with this server's id, in any state."""
        return await self._call("list", _thd_managed, self._server_id)

    async def prune_networks(self) -> None:
        """Removes this server's session networks that no container uses.

        For reconciliation at startup, before sessions start: a network created
        by a concurrent :meth:`start` has no container for a moment.
        """
        await self._call("list", _thd_prune_networks, self._server_id)

    async def gpus(self) -> Sequence[GpuDevice]:
        """Render nodes of the host and NVIDIA GPUs listed by ``nvidia-smi -L``."""
        return await self._docker_pool.run(scan_gpus)

    async def close(self) -> None:
        """Waits for running pulls, then closes the clients; call before stopping the pools."""
        for op in list(self._pulls.values()):
            if op.done is not None:
                await op.done
        await self._docker_pool.run(self._thd_close)

    # -- threads and errors -------------------------------------------------

    async def _call(
        self,
        step: str,
        fn: Callable[Concatenate[docker.DockerClient, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        def _thd_call() -> T:
            return fn(self._thd_client(), *args, **kwargs)

        try:
            return await self._docker_pool.run(_thd_call)
        except CancelledError:
            raise
        except Exception as exc:
            raise self._translate(step, exc) from exc

    def _translate(self, step: str, exc: Exception) -> Exception:
        """ProviderError for SDK and transport failures; anything else is a bug, kept as is."""
        if isinstance(exc, ProviderError):
            return exc
        if isinstance(exc, (_EngineUnreachable, requests.exceptions.ConnectionError)):
            log.warn("docker {step}: engine unreachable: {reason}", step=step, reason=str(exc))
            return ProviderError(step, "Docker engine is unreachable.", unavailable=True)
        if isinstance(exc, requests.exceptions.Timeout):
            log.warn("docker {step}: no answer in time: {reason}", step=step, reason=str(exc))
            return ProviderError(step, "Docker engine did not answer in time.", unavailable=True)
        if isinstance(exc, docker.errors.DockerException):
            log.warn("docker {step} failed: {reason}", step=step, reason=str(exc))
            conflict = isinstance(exc, docker.errors.APIError) and exc.status_code == 409
            detail = _CONFLICT.get(step) if conflict else None
            return ProviderError(step, detail or _FAILED.get(step, "Docker request failed."))
        return exc

    def _thd_client(self) -> docker.DockerClient:
        with self._lock:
            if self._client is None:
                self._client = self._thd_new_client()
            return self._client

    def _thd_pull_client(self) -> docker.DockerClient:
        """A second client whose requests without a timeout get the idle bound.

        ``APIClient.pull`` sends ``timeout=None``, so a silent registry would hold
        a thread forever; this client's adapter bounds each read instead.
        """
        with self._lock:
            if self._pull_client is None:
                client = self._thd_new_client()
                base_url = client.api.base_url
                bounded = _BoundedAdapter(client.api.get_adapter(base_url), self._pull_idle_seconds)
                client.api.mount(base_url, bounded)
                self._pull_client = client
            return self._pull_client

    def _thd_new_client(self) -> docker.DockerClient:
        try:
            return self._client_factory(timeout=self._call_timeout_seconds)
        except docker.errors.DockerException as exc:
            raise _EngineUnreachable(str(exc)) from exc

    def _thd_close(self) -> None:
        with self._lock:
            for client in (self._client, self._pull_client):
                if client is not None:
                    client.close()
            self._client = self._pull_client = None


class _BoundedAdapter(BaseAdapter):
    """Delegates to the SDK's adapter, giving requests without a timeout ``idle_seconds``."""

    def __init__(self, inner: BaseAdapter, idle_seconds: float) -> None:
        super().__init__()
        self._inner = inner
        self._idle_seconds = idle_seconds

    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> Response:
        bound = self._idle_seconds if timeout is None else timeout
        return self._inner.send(
            request, stream=stream, timeout=bound, verify=verify, cert=cert, proxies=proxies
        )

    def close(self) -> None:
        self._inner.close()


def _pull_detail(message: str) -> str:
    lowered = message.lower()
    if any(marker in lowered for marker in _UNREACHABLE_REGISTRY):
        return ("Image registry unreachable: the image is not on this host and could not be "
                "pulled (is its name right?).")
    if any(marker in lowered for marker in _UNKNOWN_IMAGE):
        return "The image was not found in its registry."
    return _FAILED["pull"]


# -- pool-thread functions: plain arguments in, plain data out -------------------


def _thd_image_id(client: docker.DockerClient, image: str) -> str | None:
    try:
        found = client.images.get(image)
    except docker.errors.ImageNotFound:
        return None
    return str(found.id).removeprefix("sha256:")[:12]


def _thd_create_network(client: docker.DockerClient, name: str, labels: dict[str, str]) -> None:
    """Creates the session's bridge; replaces an unused one left by a crash (R2).

    Not ``internal``: that would cut the app off the internet, and the host
    reaches the container IP on a plain bridge; separate bridges keep sessions
    from reaching each other.
    """
    try:
        client.networks.create(name, driver="bridge", labels=labels, check_duplicate=True)
        return
    except docker.errors.APIError as exc:
        if exc.status_code != 409:
            raise
        stale = client.networks.get(name)
        if stale.attrs.get("Labels") != labels or stale.attrs.get("Containers"):
            raise
    stale.remove()
    client.networks.create(name, driver="bridge", labels=labels, check_duplicate=True)


def _thd_create_container(client: docker.DockerClient, kwargs: dict[str, Any]) -> str:
    return str(client.containers.create(**kwargs).id)


def _thd_start_container(client: docker.DockerClient, container_id: str) -> None:
    client.containers.get(container_id).start()


def _thd_instance(client: docker.DockerClient, instance_id: str, server_id: str) -> Instance | None:
    try:
        found = client.containers.get(instance_id)
    except docker.errors.NotFound:
        return None
    return _instance(found.attrs, server_id)


def _instance(attrs: Mapping[str, Any], server_id: str) -> Instance | None:
    labels: Mapping[str, str] = attrs.get("Config", {}).get("Labels") or {}
    if labels.get(LABEL_SERVER) != server_id:
        return None
    session_id = labels.get(LABEL_SESSION, "")
    networks: Mapping[str, Any] = attrs.get("NetworkSettings", {}).get("Networks") or {}
    ours = networks.get(resource_name(session_id)) or {}
    port = labels.get(LABEL_PORT, "")
    return Instance(
        instance_id=str(attrs["Id"]),
        session_id=session_id,
        username=labels.get(LABEL_USER, ""),
        app_id=labels.get(LABEL_APP, ""),
        host=str(ours.get("IPAddress") or ""),
        port=int(port) if port.isdigit() else 0,
        running=bool(attrs.get("State", {}).get("Running")),
    )


def _thd_managed(client: docker.DockerClient, server_id: str) -> list[Instance]:
    found = client.containers.list(
        all=True, filters={"label": f"{LABEL_SERVER}={server_id}"}, ignore_removed=True
    )
    instances = (_instance(c.attrs, server_id) for c in found)
    return [i for i in instances if i is not None]


def _thd_stop(
    client: docker.DockerClient, instance_id: str, server_id: str, grace_seconds: float
) -> None:
    try:
        found = client.containers.get(instance_id)
    except docker.errors.NotFound:
        return
    instance = _instance(found.attrs, server_id)
    if instance is None:
        return  # not ours: never touch it
    try:
        found.stop(timeout=math.ceil(grace_seconds))
    except docker.errors.NotFound:
        pass
    _thd_remove(client, found.id, resource_name(instance.session_id), server_id)


def _thd_remove(
    client: docker.DockerClient, container_id: str | None, network: str, server_id: str
) -> None:
    if container_id is not None:
        _ignore_missing(lambda: client.containers.get(container_id).remove(force=True))
    try:
        found = client.networks.get(network)
    except docker.errors.NotFound:
        return
    if (found.attrs.get("Labels") or {}).get(LABEL_SERVER) == server_id:
        _ignore_missing(found.remove)


def _ignore_missing(remove: Callable[[], object]) -> None:
    try:
        remove()
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if exc.status_code != 409:  # removal already in progress
            raise


def _thd_prune_networks(client: docker.DockerClient, server_id: str) -> None:
    client.networks.prune(filters={"label": f"{LABEL_SERVER}={server_id}"})
