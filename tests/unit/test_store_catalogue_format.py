"""The app-store catalogue parser against the public catalogue and broken variants (5.7)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sealskin.orchestration.store_format import parse_store

PUBLIC = Path("/work/shared/data/apps.yml")


@pytest.fixture(scope="module")
def public() -> bytes:
    if not PUBLIC.exists():
        pytest.skip("the public catalogue copy is absent")
    return PUBLIC.read_bytes()


def by_id(raw: bytes) -> dict[str, dict[str, Any]]:
    return {a["id"]: dict(a) for a in parse_store(raw).apps}


def test_every_public_app_loads_without_errors(public: bytes) -> None:
    doc = parse_store(public)
    ids = [e["id"] for e in yaml.safe_load(public)["apps"]]
    assert doc.errors == ()
    assert [a["id"] for a in doc.apps] == ids and len(ids) == 106


def test_nested_alias_lists_are_flattened(public: bytes) -> None:
    raw = yaml.safe_load(public)
    nested = [e for e in raw["apps"]
              if any(isinstance(x, list) for x in e["provider_config"].get("extensions") or [])]
    assert nested, "the catalogue uses '- *alias' lists"
    apps = by_id(public)
    for entry in nested:
        exts = apps[entry["id"]]["provider_config"]["extensions"]
        assert all(isinstance(x, str) for x in exts)
        for item in entry["provider_config"]["extensions"]:
            for ext in item if isinstance(item, list) else [item]:
                assert str(ext).lower() in exts


def test_steam_keeps_its_docker_overrides_and_only_steam_has_any(public: bytes) -> None:
    apps = by_id(public)
    assert apps["steam"]["provider_config"]["docker_overrides"] == {
        "security_opt": ["seccomp=unconfined", "apparmor=unconfined"]}
    assert [i for i, a in apps.items() if a["provider_config"]["docker_overrides"]] == ["steam"]


def test_ports_and_available_app_shape(public: bytes) -> None:
    apps = by_id(public).values()
    ports = [a["provider_config"]["port"] for a in apps]
    assert ports.count(3000) == 104 and ports.count(8080) == 2
    for a in apps:
        assert set(a) == {"id", "name", "logo", "url", "provider", "provider_config"}
        assert set(a["provider_config"]) == {
            "image", "port", "nvidia_support", "dri3_support", "type", "url_support",
            "open_support", "extensions", "autostart", "custom_autostart_script_b64",
            "custom_autostart_wayland_script_b64", "docker_overrides"}


def test_a_bare_list_of_apps_is_accepted(public: bytes) -> None:
    apps = yaml.safe_load(public)["apps"][:3]
    doc = parse_store(yaml.safe_dump(apps).encode())
    assert [a["id"] for a in doc.apps] == [a["id"] for a in apps]
