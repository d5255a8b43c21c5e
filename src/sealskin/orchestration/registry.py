"""The latest image id in a registry, read without pulling (Registry HTTP API v2).

For ``check_update`` (upstream-protocol 4.10): the manifest of the image's tag
(for a multi-platform index, the entry for this host's platform) names its
config digest, which *is* the image id the engine reports after a pull. Every
request goes through :class:`Fetcher` (deadline, size limit, verified HTTPS);
registries named ``localhost`` or ``127.0.0.1`` are spoken to over plain HTTP,
as the Docker engine does.
"""

from __future__ import annotations

import json
import platform
import re
from typing import Any
from urllib.parse import urlencode

from sealskin.orchestration.fetch import Fetched, FetchError, Fetcher

DOCKER_HUB = "registry-1.docker.io"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
_ACCEPT = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


class RegistryError(Exception):
    """The registry could not be read; ``detail`` is a client-facing sentence."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def parse_reference(image: str) -> tuple[str, str, str]:
    """(registry host, repository, tag or digest) with Docker's defaults."""
    name, _, digest = image.partition("@")
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        host, path = first, rest
    else:
        host, path = DOCKER_HUB, name
    if host == "docker.io":
        host = DOCKER_HUB
    tag = "latest"
    if ":" in path.rsplit("/", 1)[-1]:
        path, tag = path.rsplit(":", 1)
    if host == DOCKER_HUB and "/" not in path:
        path = "library/" + path
    return host, path, digest or tag


class Registry:
    def __init__(self, fetcher: Fetcher, *, timeout_seconds: float) -> None:
        self._fetcher = fetcher
        self._timeout_seconds = timeout_seconds

    async def latest_id(self, image: str) -> str:
        """The config digest (``sha256:...``) the tag points at; raises RegistryError."""
        host, repo, ref = parse_reference(image)
        scheme = "http" if host.split(":")[0] in ("localhost", "127.0.0.1") else "https"
        base = f"{scheme}://{host}/v2/{repo}/manifests/"
        try:
            doc, token = await self._manifest(base + ref, None)
            if "manifests" in doc:
                doc, _ = await self._manifest(base + _platform_digest(doc), token)
            digest = doc["config"]["digest"]
        except FetchError:
            raise RegistryError("Image registry unreachable: could not read the latest "
                                "version of the image.") from None
        except (KeyError, TypeError, ValueError):
            raise RegistryError("The image registry sent an unexpected manifest.") from None
        if not isinstance(digest, str) or not digest.startswith("sha256:"):
            raise RegistryError("The image registry sent an unexpected manifest.")
        return digest

    async def _manifest(self, url: str, token: str | None) -> tuple[Any, str | None]:
        got = await self._get(url, token)
        if got.status == 401 and token is None:
            token = await self._token(got.headers.get("www-authenticate", ""))
            got = await self._get(url, token)
        if got.status != 200:
            raise RegistryError(f"The image registry answered HTTP {got.status}.")
        return json.loads(got.body), token

    async def _get(self, url: str, token: str | None) -> Fetched:
        headers = {"Accept": _ACCEPT}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return await self._fetcher.get(url, headers=headers, accept=(200, 401, 404),
                                       timeout_seconds=self._timeout_seconds)

    async def _token(self, challenge: str) -> str:
        """An anonymous pull token from the ``Bearer realm=...`` challenge."""
        params = dict(_CHALLENGE.findall(challenge))
        realm = params.pop("realm", "")
        if not challenge.lower().startswith("bearer") or not realm.startswith("https://"):
            raise RegistryError("The image registry asks for credentials we do not have.")
        got = await self._fetcher.get(f"{realm}?{urlencode(params)}", accept=(200,),
                                      timeout_seconds=self._timeout_seconds)
        try:
            doc = json.loads(got.body)
            token = doc.get("token") or doc.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str):
            raise RegistryError("The image registry sent no usable token.")
        return token


def _platform_digest(index: Any) -> str:
    arch = _ARCH.get(platform.machine().lower(), platform.machine().lower())
    for entry in index["manifests"]:
        p = entry.get("platform") or {}
        if p.get("os") == "linux" and p.get("architecture") == arch:
            return str(entry["digest"])
    raise KeyError("platform")
