"""Broken catalogues: a bad document is refused whole, a bad entry is reported and skipped."""

from __future__ import annotations

import pytest

from sealskin.orchestration.store_format import StoreFormatError, parse_store

GOOD = """
  - id: good
    name: Good
    provider_config: {image: "lscr.io/linuxserver/good:latest", port: 3000}
"""


def doc(entries: str) -> bytes:
    return ("apps:" + GOOD + entries).encode()


@pytest.mark.parametrize("raw, words", [
    (b"apps: [unclosed", "not valid YAML"),
    (b"just a string", "neither a list"),
    (b"apps: {id: x}", "neither a list"),
    (b"42", "neither a list"),
    (b"!!python/object:os.system {}", "not valid YAML"),
])
def test_unusable_documents_are_refused_with_a_sentence(raw: bytes, words: str) -> None:
    with pytest.raises(StoreFormatError) as e:
        parse_store(raw)
    assert words in e.value.detail


def test_oversized_document_is_refused_before_parsing() -> None:
    with pytest.raises(StoreFormatError) as e:
        parse_store(b"#" * 101, max_bytes=100)
    assert "larger than 100 bytes" in e.value.detail


@pytest.mark.parametrize("entry, field", [
    ("  - {id: noimage, name: N, provider_config: {port: 3000}}", "provider_config.image"),
    ("  - {id: badport, name: N, provider_config: {image: a/b, port: '3000'}}",
     "provider_config.port"),
    ("  - {id: badbool, name: N, provider_config: {image: a/b, autostart: 'yes'}}",
     "provider_config.autostart"),
    ("  - {id: badext, name: N, provider_config: {image: a/b, extensions: pdf}}",
     "provider_config.extensions"),
    ("  - {id: badext2, name: N, provider_config: {image: a/b, extensions: [[a, [b]]]}}",
     "provider_config.extensions"),
    ("  - {id: badov, name: N, provider_config: {image: a/b, docker_overrides: [1]}}",
     "provider_config.docker_overrides"),
    ("  - {id: badtype, name: N, provider_config: {image: a/b, type: vm}}",
     "provider_config.type"),
    ("  - {id: noname, provider_config: {image: a/b}}", "name"),
    ("  - {id: '../etc', name: N, provider_config: {image: a/b}}", "id"),
    ("  - {id: nocfg, name: N}", "provider_config"),
    ("  - [not, a, mapping]", "entry"),
    ("  - {id: good, name: Again, provider_config: {image: a/b}}", "id"),
])
def test_bad_entry_is_reported_and_the_rest_loads(entry: str, field: str) -> None:
    parsed = parse_store(doc(entry + "\n"))
    assert [a["id"] for a in parsed.apps] == ["good"]
    [err] = parsed.errors
    assert (err.index, err.field) == (1, field)
    assert field in err.sentence()


def test_error_names_the_app_id_when_it_is_readable() -> None:
    parsed = parse_store(doc("  - {id: noimage, name: N, provider_config: {}}\n"))
    assert parsed.errors[0].app_id == "noimage"
    assert parsed.errors[0].sentence().startswith("app 'noimage' (entry 1)")


def test_alias_lists_flatten_lowercase_and_deduplicate() -> None:
    raw = b"""
extension_groups:
  pics: &pics [JPG, png]
apps:
  - id: viewer
    name: Viewer
    provider_config:
      image: a/viewer
      extensions: [*pics, gif, .png]
"""
    [app] = parse_store(raw).apps
    assert app["provider_config"]["extensions"] == ["jpg", "png", "gif"]


def test_alias_bombs_are_refused() -> None:
    """Eight levels of ten aliases: under 1 KiB of YAML, 10^8 values once expanded."""
    lines = ['l0: &l0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for level in range(1, 9):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 10) + "]")
    lines.append("apps: [{id: a, name: A, provider_config: {image: a/b, docker_overrides: "
                 "{environment: {BOMB: *l8}}}}]")
    raw = "\n".join(lines).encode()
    assert len(raw) < 1024
    with pytest.raises(StoreFormatError, match="aliases nested too deep"):
        parse_store(raw)


def test_a_recursive_alias_is_refused() -> None:
    with pytest.raises(StoreFormatError, match="aliases"):
        parse_store(b"loop: &loop [*loop]\napps: []\n")
