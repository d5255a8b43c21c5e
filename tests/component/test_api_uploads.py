"""Chunked uploads against the real server: ownership, strict chunks, assembly, limits, restart."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet.defer import Deferred
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from independent_client import Client, b64
from server_harness import admin_client, make_user, start_server, user_client


async def upload(c: Client, data: bytes, *, chunk: int = 1000, filename: str = "a.bin") -> tuple[str, int]:
    started = await c.ok("POST", "/api/upload/initiate",
                         {"filename": filename, "total_size": len(data)})
    uid = started["upload_id"]
    count = 0
    for i in range(0, len(data), chunk):
        r = await c.ok("POST", "/api/upload/chunk", {
            "upload_id": uid, "chunk_index": count,
            "chunk_data_b64": base64.b64encode(data[i:i + chunk]).decode()})
        assert r == {"status": "ok", "chunk_index": count}
        count += 1
    return uid, count


def shared(svc: Any, user: str) -> Path:
    return Path(svc.paths.homes) / user / "_sealskin_shared_files"


@pytest_twisted.ensureDeferred
async def test_to_storage_assembles_the_file_and_returns_its_sha256(server: Any,
                                                                   admin: Client) -> None:
    data = os.urandom(4500)
    uid, count = await upload(admin, data, filename="report.pdf")
    assert count == 5
    r = await admin.ok("POST", "/api/upload/to_storage", {
        "filename": "report.pdf", "upload_id": uid, "total_chunks": count,
        "home_name": "_sealskin_shared_files"})
    assert r["status"] == "success" and r["sha256"] == hashlib.sha256(data).hexdigest()
    assert (shared(server, "admin") / "report.pdf").read_bytes() == data
    assert not (Path(server.paths.internal) / "uploads" / uid).exists()
    uid, count = await upload(admin, data, filename="report.pdf")
    r = await admin.ok("POST", "/api/upload/to_storage", {
        "filename": "report.pdf", "upload_id": uid, "total_chunks": count,
        "home_name": "_sealskin_shared_files"})
    assert r["filename"] == "report-1.pdf"  # collisions get -1, -2 before the extension
    gone = await admin.call("POST", "/api/upload/to_storage", {
        "filename": "x", "upload_id": uid, "total_chunks": count,
        "home_name": "_sealskin_shared_files"})
    assert gone.status == 404  # consumed


@pytest_twisted.ensureDeferred
async def test_empty_file_with_zero_chunks(server: Any, admin: Client) -> None:
    uid, count = await upload(admin, b"", filename="empty.txt")
    r = await admin.ok("POST", "/api/upload/to_storage", {
        "filename": "empty.txt", "upload_id": uid, "total_chunks": 0,
        "home_name": "_sealskin_shared_files"})
    assert r["sha256"] == hashlib.sha256(b"").hexdigest()
    assert (shared(server, "admin") / "empty.txt").read_bytes() == b""


@pytest_twisted.ensureDeferred
async def test_hostile_chunks_are_refused_without_400(server: Any, admin: Client) -> None:
    started = await admin.ok("POST", "/api/upload/initiate", {"filename": "f", "total_size": 10})
    uid = started["upload_id"]

    async def chunk(index: Any, payload: Any, upload_id: Any = uid) -> Any:
        return await admin.call("POST", "/api/upload/chunk", {
            "upload_id": upload_id, "chunk_index": index, "chunk_data_b64": payload})

    assert (await chunk(0, "not base64!!")).status == 422
    assert (await chunk(1, base64.b64encode(b"abcd").decode())).status == 409  # 0 first
    assert (await chunk(0, base64.b64encode(b"x" * 11).decode())).status == 422  # > total
    assert (await chunk(0, base64.b64encode(b"abcd").decode())).status == 200
    assert (await chunk(0, base64.b64encode(b"abcd").decode())).status == 200  # idempotent
    assert (await chunk(0, base64.b64encode(b"abc").decode())).status == 409  # other size
    assert (await chunk(3, base64.b64encode(b"ab").decode())).status == 422  # out of range
    assert (await chunk(2, base64.b64encode(b"abc").decode())).status == 422  # too many bytes
    assert (await chunk(-1, base64.b64encode(b"ab").decode())).status == 422
    for bad_id in ("../../keys", "/etc", "0" * 36, 5, None):
        assert (await chunk(0, base64.b64encode(b"abcd").decode(), bad_id)).status == 404
    missing = await admin.call("POST", "/api/upload/to_storage", {
        "filename": "f", "upload_id": uid, "total_chunks": 3,
        "home_name": "_sealskin_shared_files"})
    assert missing.status == 409 and "Missing chunk 1" in missing.detail
    assert not (shared(server, "admin") / "f").exists()
    assert [p.name for p in shared(server, "admin").iterdir()] == ["Desktop"]  # no partial file
    assert (await chunk(2, base64.b64encode(b"ab").decode())).status == 200
    for count in (0, 2, 5):  # known from chunk 0's size: said before any missing chunk
        wrong = await admin.call("POST", "/api/upload/to_storage", {
            "filename": "f", "upload_id": uid, "total_chunks": count,
            "home_name": "_sealskin_shared_files"})
        assert wrong.status == 422 and "must be 3" in wrong.detail, (count, wrong)
    still = await admin.call("POST", "/api/upload/to_storage", {
        "filename": "f", "upload_id": uid, "total_chunks": 3,
        "home_name": "_sealskin_shared_files"})
    assert still.status == 409 and "Missing chunk 1" in still.detail


@pytest_twisted.ensureDeferred
async def test_initiate_validates_name_and_size(server: Any, admin: Client) -> None:
    for name in ("", "..", "a\x00b", "x" * 256, "dir/", None):
        r = await admin.call("POST", "/api/upload/initiate", {"filename": name, "total_size": 1})
        assert r.status == 422, (name, r)
    for size in (-1, None, "1", 1.5, True):
        r = await admin.call("POST", "/api/upload/initiate", {"filename": "a", "total_size": size})
        assert r.status == 422 and "'total_size'" in r.detail, (size, r)
    r = await admin.call("POST", "/api/upload/initiate", {"filename": "a"})
    assert r.status == 422 and r.detail.startswith("'total_size' is required"), r
    r = await admin.call("POST", "/api/upload/initiate",
                         {"filename": "a", "total_size": 11 * 1024**3})
    assert r.status == 413
    # a path is reduced to its basename and stays in the destination
    uid, count = await upload(admin, b"hello", filename="../../../etc/passwd")
    r = await admin.ok("POST", "/api/upload/to_storage", {
        "filename": "../../evil.txt", "upload_id": uid, "total_chunks": count,
        "home_name": "_sealskin_shared_files"})
    assert r["filename"] == "evil.txt"
    assert (shared(server, "admin") / "evil.txt").read_bytes() == b"hello"
    longest = "n" * 255  # the longest name a file can have: a clash still gets a name
    for data, kept in ((b"one", longest), (b"two", "n" * 253 + "-1")):
        uid, count = await upload(admin, data)
        r = await admin.ok("POST", "/api/upload/to_storage", {
            "filename": longest, "upload_id": uid, "total_chunks": count,
            "home_name": "_sealskin_shared_files"})
        assert r["filename"] == kept
        assert (shared(server, "admin") / kept).read_bytes() == data


@pytest_twisted.ensureDeferred
async def test_other_users_upload_is_404(server: Any, admin: Client) -> None:
    bob = await make_user(admin, "bob")
    uid, count = await upload(admin, b"secret")
    r = await bob.call("POST", "/api/upload/chunk", {
        "upload_id": uid, "chunk_index": 0, "chunk_data_b64": base64.b64encode(b"evil!!").decode()})
    assert r.status == 404
    r = await bob.call("POST", "/api/upload/to_storage", {
        "filename": "stolen", "upload_id": uid, "total_chunks": count,
        "home_name": "_sealskin_shared_files"})
    assert r.status == 404
    assert not (shared(server, "bob") / "stolen").exists()


@pytest_twisted.ensureDeferred
async def test_storage_limit_and_persistent_storage(server: Any, admin: Client) -> None:
    carol = await make_user(admin, "carol", storage_limit=1)
    r = await carol.call("POST", "/api/upload/initiate",
                         {"filename": "big", "total_size": 2 * 1024 * 1024})
    assert r.status == 413 and r.detail == "Storage limit exceeded."
    uid, count = await upload(carol, b"x" * 3000)
    (shared(server, "carol")).mkdir(parents=True, exist_ok=True)
    (shared(server, "carol") / "filler").write_bytes(b"y" * (1024 * 1024))
    server_storage = [h for h in (await carol.ok("GET", "/api/homedirs"))["home_dirs"]]
    assert "_sealskin_shared_files" in server_storage
    dave = await make_user(admin, "dave", persistent_storage=False)
    uid2, count2 = await upload(dave, b"abc")
    r = await dave.call("POST", "/api/upload/to_storage", {
        "filename": "a", "upload_id": uid2, "total_chunks": count2,
        "home_name": "_sealskin_shared_files"})
    assert r.status == 403 and r.detail == "Persistent storage is disabled for this account."


@pytest_twisted.ensureDeferred
async def test_per_user_upload_cap(tmp_path: Path) -> None:
    svc = await start_server(str(tmp_path / "data"), **{"uploads-per-user": "2"})
    try:
        admin = admin_client(svc)
        for _ in range(2):
            await admin.ok("POST", "/api/upload/initiate", {"filename": "a", "total_size": 1})
        r = await admin.call("POST", "/api/upload/initiate", {"filename": "a", "total_size": 1})
        assert r.status == 429
    finally:
        await svc.stop()


@pytest_twisted.ensureDeferred
async def test_upload_survives_a_restart(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "data")
    svc = await start_server(data_dir)
    admin = admin_client(svc)
    payload = os.urandom(2500)
    started = await admin.ok("POST", "/api/upload/initiate",
                             {"filename": "r.bin", "total_size": len(payload)})
    uid = started["upload_id"]
    for i in range(2):
        await admin.ok("POST", "/api/upload/chunk", {
            "upload_id": uid, "chunk_index": i,
            "chunk_data_b64": base64.b64encode(payload[i * 1000:(i + 1) * 1000]).decode()})
    await svc.stop()
    svc = await start_server(data_dir)
    try:
        admin = admin_client(svc)
        bad = await admin.call("POST", "/api/upload/chunk", {
            "upload_id": uid, "chunk_index": 2,
            "chunk_data_b64": base64.b64encode(payload[2000:2400]).decode()})
        assert bad.status == 422  # chunk size still known from chunk 0 after restart
        await admin.ok("POST", "/api/upload/chunk", {
            "upload_id": uid, "chunk_index": 2,
            "chunk_data_b64": base64.b64encode(payload[2000:]).decode()})
        r = await admin.ok("POST", "/api/upload/to_storage", {
            "filename": "r.bin", "upload_id": uid, "total_chunks": 3,
            "home_name": "_sealskin_shared_files"})
        assert r["sha256"] == hashlib.sha256(payload).hexdigest()
        assert (shared(svc, "admin") / "r.bin").read_bytes() == payload
    finally:
        await svc.stop()


@pytest_twisted.ensureDeferred
async def test_abandoned_uploads_are_swept(tmp_path: Path) -> None:
    svc = await start_server(str(tmp_path / "data"), **{"upload-ttl-seconds": "0"})
    try:
        admin = admin_client(svc)
        uid, _ = await upload(admin, b"abc")
        staging = Path(svc.paths.internal) / "uploads" / uid
        assert staging.exists()
        handlers = svc.file_timers[0]
        await handlers.call[0]()
        assert not staging.exists()
        r = await admin.call("POST", "/api/upload/chunk", {
            "upload_id": uid, "chunk_index": 0, "chunk_data_b64": "YWJj"})
        assert r.status == 404
    finally:
        await svc.stop()


def compact(c: Client, text: bytes) -> bytes:
    """``text`` sealed as the extension sends it: compact JSON (upstream-protocol 2.9), the
    only shape the server opens in place."""
    assert c.key is not None
    iv = os.urandom(12)
    ct = AESGCM(c.key).encrypt(iv, text, None)
    return json.dumps({"iv": b64(iv), "ciphertext": b64(ct)}, separators=(",", ":")).encode()


def chunk_text(uid: str, index: int, data_b64: str) -> bytes:
    return json.dumps({"upload_id": uid, "chunk_index": index, "chunk_data_b64": data_b64},
                      separators=(",", ":")).encode()


@pytest_twisted.ensureDeferred
async def test_big_compact_chunks_are_stored_like_any_other(server: Any, admin: Client) -> None:
    data, size = os.urandom(3 * 1024 * 1024 + 5), 2 * 1024 * 1024  # bodies over 1 MiB
    started = await admin.ok("POST", "/api/upload/initiate",
                             {"filename": "big.bin", "total_size": len(data)})
    uid = started["upload_id"]
    for index in (0, 1):
        part = b64(data[index * size:(index + 1) * size])
        r = await admin.raw("POST", "/api/upload/chunk",
                            body=compact(admin, chunk_text(uid, index, part)))
        assert r.status == 200 and r.value == {"status": "ok", "chunk_index": index}
    again = await admin.call("POST", "/api/upload/chunk", {  # spaced JSON: the ordinary way
        "upload_id": uid, "chunk_index": 1, "chunk_data_b64": b64(data[size:])})
    assert again.status == 200
    r = await admin.ok("POST", "/api/upload/to_storage", {
        "filename": "big.bin", "upload_id": uid, "total_chunks": 2,
        "home_name": "_sealskin_shared_files"})
    assert r["sha256"] == hashlib.sha256(data).hexdigest()
    assert (shared(server, "admin") / "big.bin").read_bytes() == data


@pytest_twisted.ensureDeferred
async def test_big_hostile_chunks_are_refused_and_store_nothing(server: Any,
                                                               admin: Client) -> None:
    started = await admin.ok("POST", "/api/upload/initiate",
                             {"filename": "f", "total_size": 4 * 1024 * 1024})
    uid = started["upload_id"]
    big = "QUJD" * 400_000
    bad = await admin.raw("POST", "/api/upload/chunk",
                          body=compact(admin, chunk_text(uid, 0, big[:-4] + "QU!D")))
    assert bad.status == 422 and "base64" in bad.detail
    # the last of duplicate members wins, as in any JSON parser: an empty chunk 0
    twice = chunk_text(uid, 0, big)[:-1] + b',"chunk_data_b64":""}'
    r = await admin.raw("POST", "/api/upload/chunk", body=compact(admin, twice))
    assert r.status == 422 and "Chunk 0 must hold" in r.detail
    nested = json.dumps({"upload_id": uid, "chunk_index": 0, "x": {"chunk_data_b64": big}},
                        separators=(",", ":")).encode()
    r = await admin.raw("POST", "/api/upload/chunk", body=compact(admin, nested))
    assert r.status == 422 and "must be a base64 string" in r.detail
    tampered = bytearray(compact(admin, chunk_text(uid, 0, big)))
    tampered[-5] = ord("A") if tampered[-5] != ord("A") else ord("B")
    r = await admin.raw("POST", "/api/upload/chunk", body=bytes(tampered))
    assert r.status == 400 and r.detail == "Failed to decrypt request"
    staging = Path(server.paths.internal) / "uploads" / uid
    assert list(staging.iterdir()) == []
    body = compact(admin, chunk_text(uid, 0, big))
    assert (await admin.raw("POST", "/api/upload/chunk", body=body)).status == 200
    replayed = await admin.raw("POST", "/api/upload/chunk", body=body)
    assert replayed.status == 400 and replayed.detail == "Replayed request refused."


@pytest_twisted.ensureDeferred
async def test_cancel_frees_the_slot_and_the_chunks(tmp_path: Path) -> None:
    svc = await start_server(str(tmp_path / "data"), **{"uploads-per-user": "1"})
    try:
        admin = admin_client(svc)
        uid, _ = await upload(admin, b"x" * 2500)
        staging = Path(svc.paths.internal) / "uploads" / uid
        assert staging.is_dir()
        full = await admin.call("POST", "/api/upload/initiate", {"filename": "a", "total_size": 1})
        assert full.status == 429 and "cancel" in full.detail
        mallory = await make_user(admin, "mallory")
        [listed] = await admin.ok("GET", "/api/upload")
        assert (listed["upload_id"], listed["filename"], listed["total_size"],
                listed["received_chunks"]) == (uid, "a.bin", 2500, 3)
        assert await mallory.ok("GET", "/api/upload") == []  # only one's own
        assert (await mallory.call("DELETE", f"/api/upload/{uid}")).status == 404
        assert (await admin.call("DELETE", "/api/upload/not-a-uuid")).status == 404
        r = await admin.call("DELETE", f"/api/upload/{uid}")
        assert r.status == 204 and not staging.exists()
        assert (await admin.call("DELETE", f"/api/upload/{uid}")).status == 404
        assert await admin.ok("GET", "/api/upload") == []
        await admin.ok("POST", "/api/upload/initiate", {"filename": "a", "total_size": 1})
    finally:
        await svc.stop()


@pytest_twisted.ensureDeferred
async def test_a_stale_upload_gives_its_slot_to_a_new_one(tmp_path: Path) -> None:
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    svc = await start_server(str(tmp_path / "data"), **{"uploads-per-user": "2",
                                                          "upload-stale-seconds": "0.5"})
    try:
        admin = admin_client(svc)
        old, _ = await upload(admin, b"o" * 10)
        await deferLater(reactor, 0.7, lambda: None)
        fresh, _ = await upload(admin, b"f" * 10)
        third = await admin.ok("POST", "/api/upload/initiate", {"filename": "t", "total_size": 1})
        ids = {u.id for u in await svc.store.uploads_older_than(float("inf"))}
        assert ids == {fresh, third["upload_id"]}  # the stale one went, the fresh one stayed
        assert not (Path(svc.paths.internal) / "uploads" / old).exists()
        r = await admin.call("POST", "/api/upload/initiate", {"filename": "a", "total_size": 1})
        assert r.status == 429  # nothing stale left to reclaim
    finally:
        await svc.stop()


@pytest_twisted.ensureDeferred
async def test_a_removed_users_unfinished_uploads_leave_the_disk(tmp_path: Path) -> None:
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    svc = await start_server(str(tmp_path / "data"), **{"cleanup-interval-seconds": "1"})
    try:
        admin = admin_client(svc)
        carol = await make_user(admin, "carol")
        uid, _ = await upload(carol, b"c" * 3000)
        mine, _ = await upload(admin, b"a" * 10)
        root = Path(svc.paths.internal) / "uploads"
        assert (await admin.call("DELETE", "/api/admin/users/carol")).status == 204
        for name in (uid, mine):  # older than the grace that protects a starting upload
            os.utime(root / name, (0, 0))
        await deferLater(reactor, 1.5, lambda: None)  # a cleanup round
        assert not (root / uid).exists()
        assert (root / mine).is_dir()  # an upload that still has its row stays
    finally:
        await svc.stop()


@pytest_twisted.ensureDeferred
async def test_parallel_initiates_never_pass_the_per_user_limit(tmp_path: Path) -> None:
    from twisted.internet.defer import gatherResults

    svc = await start_server(str(tmp_path / "data"), **{"uploads-per-user": "3"})
    try:
        clients = [admin_client(svc) for _ in range(10)]  # a crypto session each
        for c in clients:
            await c.handshake()
        answers = await gatherResults([
            Deferred.fromCoroutine(c.call("POST", "/api/upload/initiate",
                                          {"filename": f"f{i}", "total_size": 1}))
            for i, c in enumerate(clients)])
        admin = clients[0]
        assert sorted(r.status for r in answers) == [200] * 3 + [429] * 7
        assert len(await admin.ok("GET", "/api/upload")) == 3
    finally:
        await svc.stop()


@pytest_twisted.ensureDeferred
async def test_a_caller_leaving_during_assembly_cannot_get_the_upload_stored_twice(
        server: Any, admin: Client) -> None:
    from sealskin.errors import ApiError
    from sealskin.orchestration.uploads import Destination
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    uid, count = await upload(admin, os.urandom(5000), filename="once.bin")
    root = str(shared(server, "admin"))
    os.makedirs(root, exist_ok=True)
    dest = Destination(root, (), "once.bin")
    assembling = Deferred.fromCoroutine(server.uploads.consume("admin", uid, count, dest))
    while uid not in server.uploads._busy and not assembling.called:
        await deferLater(reactor, 0, lambda: None)  # until the assembly has begun
    assembling.cancel()  # the client went away while the file was being assembled
    try:
        await assembling
    except Exception:
        pass
    for _ in range(100):  # the assembly goes on and removes the upload
        if not (Path(server.paths.internal) / "uploads" / uid).exists():
            break
        await deferLater(reactor, 0.02, lambda: None)
    assert [p.name for p in Path(root).iterdir() if p.name.startswith("once")] == ["once.bin"]
    try:
        await server.uploads.consume("admin", uid, count, dest)
        raise AssertionError("consumed twice")
    except ApiError as e:
        assert e.kind.name == "NOT_FOUND"
