"""The allow-list for store ``docker_overrides`` (upstream-protocol 10, W13)."""

from __future__ import annotations

import pytest
import yaml

from sealskin.providers.overrides import filter_overrides

# The steam entry of the default store (apps.yml), as the store serves it.
STEAM = yaml.safe_load(
    """
- id: "steam"
  provider: "docker"
  docker_overrides:
    security_opt:
      - "seccomp=unconfined"
      - "apparmor=unconfined"
"""
)[0]


def test_steam_store_entry_is_accepted_as_is() -> None:
    accepted, refused = filter_overrides(STEAM["docker_overrides"], dangerous_allowed=())
    assert accepted == {"security_opt": ["seccomp=unconfined", "apparmor=unconfined"]}
    assert refused == []


@pytest.mark.parametrize(
    "requested",
    [
        {"privileged": True},
        {"network_mode": "host"},
        {"network_mode": "container:other"},
        {"pid_mode": "host"},
        {"ipc_mode": "host"},
        {"userns_mode": "host"},
        {"volumes": {"/": {"bind": "/host", "mode": "rw"}}},
        {"volumes": ["/etc:/host-etc"]},
        {"mounts": [{"Source": "/", "Target": "/host", "Type": "bind"}]},
        {"binds": ["/:/host"]},
        {"cap_add": ["SYS_ADMIN"]},
        {"devices": ["/dev/dri/renderD128:/dev/dri/renderD128"]},
        {"sysctls": {"net.ipv4.ip_forward": "1"}},
    ],
    ids=lambda r: next(iter(r)),
)
def test_dangerous_keys_are_refused_by_default(requested: dict[str, object]) -> None:
    accepted, refused = filter_overrides(requested, dangerous_allowed=())
    assert accepted == {} and refused == list(requested)


def test_dangerous_key_is_accepted_only_when_named_by_the_admin() -> None:
    requested = {"privileged": True, "cap_add": ["SYS_ADMIN"]}
    accepted, refused = filter_overrides(requested, dangerous_allowed={"privileged"})
    assert accepted == {"privileged": True}
    assert refused == ["cap_add"]


def test_allowed_devices_stay_limited_to_render_and_sound_nodes() -> None:
    media = {"devices": ["/dev/dri/renderD128:/dev/dri/renderD128:rwm", "/dev/snd/controlC0"]}
    assert filter_overrides(media, dangerous_allowed={"devices"}) == (media, [])
    for device in ("/dev/sda:/dev/sda", "/dev/dri/../sda", "/dev/dri/card0:/dev/mem"):
        assert filter_overrides({"devices": [device]}, dangerous_allowed={"devices"}) == (
            {},
            ["devices"],
        )


def test_unknown_keys_are_refused() -> None:
    accepted, refused = filter_overrides(
        {"shm_size": "2g", "healthcheck": {}, "entrypoint": "/bin/sh"}, dangerous_allowed=()
    )
    assert accepted == {"shm_size": "2g"}
    assert refused == ["entrypoint", "healthcheck"]


def test_security_opt_allows_only_unconfining_seccomp_and_apparmor() -> None:
    for opt in ("seccomp=/etc/evil.json", "label=disable", "systempaths=unconfined"):
        assert filter_overrides({"security_opt": [opt]}, dangerous_allowed=()) == (
            {},
            ["security_opt"],
        )


def test_limits_and_ulimits_with_valid_values_are_accepted() -> None:
    requested = {
        "shm_size": "1g",
        "mem_limit": 2 * 1024**3,
        "nano_cpus": 2_000_000_000,
        "cpuset_cpus": "0-3,6",
        "pids_limit": 512,
        "ulimits": [{"name": "nofile", "soft": 1024, "hard": 4096}],
    }
    assert filter_overrides(requested, dangerous_allowed=()) == (requested, [])


@pytest.mark.parametrize(
    "requested",
    [
        {"shm_size": "lots"},
        {"mem_limit": -1},
        {"nano_cpus": True},
        {"cpuset_cpus": "0-3;rm"},
        {"ulimits": [{"name": "nofile", "soft": "x", "hard": 1}]},
        {"ulimits": [{"name": "unknown", "soft": 1, "hard": 1}]},
    ],
    ids=lambda r: next(iter(r)),
)
def test_safe_keys_with_invalid_values_are_refused(requested: dict[str, object]) -> None:
    assert filter_overrides(requested, dangerous_allowed=()) == ({}, list(requested))


def test_environment_is_accepted_but_cannot_replace_server_variables() -> None:
    accepted, refused = filter_overrides(
        {"environment": ["NO_DECOR=1", "TITLE=Steam"]}, dangerous_allowed=()
    )
    assert accepted == {"environment": {"NO_DECOR": "1", "TITLE": "Steam"}} and refused == []
    for name in ("PASSWORD", "CUSTOM_USER", "SUBFOLDER", "PUID"):
        assert filter_overrides({"environment": {name: "x"}}, dangerous_allowed=()) == (
            {},
            ["environment"],
        )


def test_accepted_values_are_copies() -> None:
    requested = {"security_opt": ["seccomp=unconfined"]}
    accepted, _ = filter_overrides(requested, dangerous_allowed=())
    assert accepted["security_opt"] is not requested["security_opt"]
