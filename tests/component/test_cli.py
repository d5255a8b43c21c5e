"""The ``sealskin`` CLI against the real server: the scripted admin flow, human and JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor

from sealskin.cli.main import Options, run
from server_harness import admin_client


def write_config(server: Any, tmp_path: Path) -> str:
    with open(server.paths.admin_json) as f:
        doc = json.load(f)
    doc["api_port"] = server.api_port  # ephemeral test ports
    path = tmp_path / "admin.json"
    path.write_text(json.dumps(doc))
    return str(path)


async def cli(config: str, *argv: str) -> Any:
    opts = Options()
    opts.parseOptions(["--config", config, "--json", *argv])
    return await run(reactor, opts)


@pytest_twisted.ensureDeferred
async def test_cli_manages_users_groups_and_homes(server: Any, tmp_path: Path,
                                                  capsys: Any) -> None:
    config = write_config(server, tmp_path)
    status = await cli(config, "status")
    assert status["username"] == "admin" and status["is_admin"] is True
    await cli(config, "groups", "add", "team", "--gpu", "false")
    made = await cli(config, "users", "add", "zoe", "--group", "team",
                     "--save-config", str(tmp_path / "zoe.json"))
    assert made["user"]["settings"]["group"] == "team"
    zoe = json.loads((tmp_path / "zoe.json").read_text())
    assert zoe["username"] == "zoe" and zoe["private_key"].startswith("-----BEGIN PRIVATE")
    zoe_status = await cli(str(tmp_path / "zoe.json"), "status")
    assert zoe_status["settings"]["gpu"] is False
    from twisted.python import usage
    with pytest.raises(usage.UsageError, match="may not use GPUs"):  # not silently ignored
        await cli(str(tmp_path / "zoe.json"), "launch", "Any", "--gpu", "/dev/dri/renderD128")
    assert [u["username"] for u in await cli(config, "users", "list")] == ["zoe"]
    await cli(config, "homes", "add", "proj", "--user", "zoe")
    assert "proj" in await cli(config, "homes", "list", "--user", "zoe")
    await cli(config, "users", "update", "zoe", "--active", "false")
    from sealskin.client import ApiCallError
    with pytest.raises(ApiCallError) as e:
        await cli(str(tmp_path / "zoe.json"), "status")
    assert e.value.status == 403
    await cli(config, "users", "remove", "zoe")
    assert await cli(config, "users", "list") == []
    capsys.readouterr()


@pytest_twisted.ensureDeferred
async def test_cli_upload_stores_the_file_with_a_matching_hash(server: Any, tmp_path: Path,
                                                               capsys: Any) -> None:
    import hashlib
    import os

    config = write_config(server, tmp_path)
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    result = await cli(config, "upload", str(source), "--chunk-mib", "1")
    assert result["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    stored = Path(server.paths.homes) / "admin" / "_sealskin_shared_files" / "data.bin"
    assert stored.read_bytes() == source.read_bytes()
    big = tmp_path / "big.bin"  # the largest chunk the CLI offers fits the default limits
    big.write_bytes(os.urandom(12 * 1024 * 1024 + 7))
    result = await cli(config, "upload", str(big), "--chunk-mib", "12")
    assert result["sha256"] == hashlib.sha256(big.read_bytes()).hexdigest()
    capsys.readouterr()


@pytest_twisted.ensureDeferred
async def test_cli_upload_to_an_unknown_home_sends_nothing_and_leaves_no_upload(
        server: Any, tmp_path: Path, capsys: Any) -> None:
    from twisted.python import usage

    config = write_config(server, tmp_path)
    source = tmp_path / "x.txt"
    source.write_bytes(b"hello")
    for home in ("nosuch", "../x", "/etc"):
        with pytest.raises(usage.UsageError, match="no home directory named"):
            await cli(config, "upload", str(source), "--home", home)
    assert await server.store.uploads_older_than(float("inf")) == []
    capsys.readouterr()


@pytest_twisted.ensureDeferred
async def test_cli_names_are_sent_as_one_path_segment(server: Any, tmp_path: Path,
                                                      capsys: Any) -> None:
    from sealskin.client import ApiCallError

    config = write_config(server, tmp_path)
    # Unquoted, "../x" would be resolved as a path (a 404 of some other route); as one
    # segment it reaches the name check of the right route.
    for argv in (("homes", "remove", "../x"), ("users", "remove", "a/b"),
                 ("groups", "remove", "a?b")):
        with pytest.raises(ApiCallError) as e:
            await cli(config, *argv)
        assert e.value.status in (404, 422), (argv, e.value.status, e.value.detail)
        assert e.value.detail != "Not found", argv
    capsys.readouterr()


@pytest_twisted.ensureDeferred
async def test_cli_cancels_an_upload_whose_destination_refuses_it(server: Any, tmp_path: Path,
                                                                   capsys: Any) -> None:
    from sealskin.client import ApiCallError

    config = write_config(server, tmp_path)
    await cli(config, "homes", "add", "work")
    source = tmp_path / "big.bin"
    source.write_bytes(b"z" * 4096)
    # The home is there when the CLI checks it, gone when the upload is consumed.
    home = Path(server.paths.homes) / "admin" / "work"
    home.rename(home.with_name("elsewhere"))
    with pytest.raises(ApiCallError):
        await cli(config, "upload", str(source), "--home", "work")
    assert await server.store.uploads_older_than(float("inf")) == []
    capsys.readouterr()


@pytest_twisted.ensureDeferred
async def test_cli_app_lifecycle_with_update_check_on_a_registry_less_machine(
        server: Any, tmp_path: Path, capsys: Any) -> None:
    from sealskin.client import ApiCallError

    config = write_config(server, tmp_path)
    app = await cli(config, "apps", "install", "--name", "Probe",
                    "--image", "registry.invalid/sealskin/probe:latest", "--users", "all")
    # registry.invalid never resolves (RFC 2606): the check fails fast and says so
    with pytest.raises(ApiCallError) as e:
        await cli(config, "apps", "check-update", app["id"])
    assert e.value.status == 502 and e.value.detail
    with pytest.raises(ApiCallError) as e:
        await cli(config, "apps", "pull", app["id"])
    assert e.value.status == 502
    await cli(config, "apps", "remove", app["id"])
    assert all(a["id"] != app["id"] for a in await cli(config, "apps", "installed"))
    capsys.readouterr()


@pytest_twisted.ensureDeferred
async def test_save_config_never_loses_the_key_nor_overwrites_a_file(
        server: Any, tmp_path: Path, capsys: Any) -> None:
    from twisted.python import usage

    config = write_config(server, tmp_path)
    with pytest.raises(usage.UsageError, match="cannot write"):
        await cli(config, "users", "add", "kim", "--save-config", str(tmp_path / "no" / "k.json"))
    with pytest.raises(usage.UsageError, match="already exists"):
        await cli(config, "users", "add", "kim", "--save-config", config)
    assert json.loads(Path(config).read_text())["username"] == "admin"  # untouched
    names = [u["username"] for u in await cli(config, "users", "list")]
    assert "kim" not in names  # refused before the account was made
    # the server refuses (a name taken): the file made for the key is removed again
    await cli(config, "users", "add", "kim")
    from sealskin.client import ApiCallError
    with pytest.raises(ApiCallError):
        await cli(config, "users", "add", "kim", "--save-config", str(tmp_path / "kim.json"))
    assert not (tmp_path / "kim.json").exists()
    await cli(config, "users", "remove", "kim")
    capsys.readouterr()


def test_admins_take_no_settings_and_groups_no_group() -> None:
    from twisted.python import usage

    for argv in (["admins", "add", "ina", "--active", "false"],
                 ["groups", "update", "team", "--group", "other"],
                 ["users", "remove", "bob", "--gpu", "true"]):
        with pytest.raises(usage.UsageError):
            Options().parseOptions(["--config", "x.json", *argv])


@pytest_twisted.ensureDeferred
async def test_ctrl_c_during_an_upload_cancels_it_on_the_server(server: Any,
                                                              tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    from twisted.internet.task import deferLater
    from twisted.internet.threads import deferToThread

    config = write_config(server, tmp_path)
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.write(os.urandom(1024 * 1024) * 200)  # 200 MiB: far from done when interrupted
    proc = subprocess.Popen([sys.executable, "-m", "sealskin.cli.main", "-c", config, "upload",
                             str(big), "--chunk-mib", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(200):  # until the upload has started on the server
            if await server.store.uploads_older_than(float("inf")):
                break
            await deferLater(reactor, 0.05, lambda: None)
        assert await server.store.uploads_older_than(float("inf")), "the upload never started"
        proc.send_signal(signal.SIGINT)
        _, err = await deferToThread(proc.communicate, timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 130 and b"interrupted" in err, err
    assert await server.store.uploads_older_than(float("inf")) == []
    assert list((Path(server.paths.internal) / "uploads").iterdir()) == []


@pytest_twisted.ensureDeferred
async def test_cli_refuses_what_is_not_a_regular_file_before_any_request(
        server: Any, tmp_path: Path, capsys: Any) -> None:
    import os

    from twisted.python import usage

    config = write_config(server, tmp_path)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # opening it would block until a writer came
    latin1 = tmp_path / os.fsdecode(b"caf\xe9.txt")  # a name in an old encoding
    latin1.write_bytes(b"x")
    for path, said in ((fifo, "is not a regular file"), (tmp_path, "is not a regular file"),
                       (tmp_path / "missing", "cannot read"), (latin1, "is not UTF-8")):
        with pytest.raises(usage.UsageError, match=said):
            await cli(config, "upload", str(path))
    assert await server.store.uploads_older_than(float("inf")) == []
    for argv in (("apps", "install", "--file", str(fifo)),
                 ("apps", "install", "--name", "X", "--image", "a/b", "--logo", str(fifo)),
                 ("users", "add", "fifo", "--public-key", str(fifo))):
        with pytest.raises(usage.UsageError, match="is not a regular file"):
            await cli(config, *argv)  # read whole, it would block: refused instead
    capsys.readouterr()


@pytest_twisted.ensureDeferred
async def test_cli_lists_and_cancels_unfinished_uploads(server: Any, tmp_path: Path,
                                                        capsys: Any) -> None:
    from sealskin.client import ApiCallError

    config = write_config(server, tmp_path)
    assert await cli(config, "uploads", "list") == []
    left = admin_client(server)
    started = await left.ok("POST", "/api/upload/initiate",
                            {"filename": "half.bin", "total_size": 6})
    listed = await cli(config, "uploads", "list")
    assert [(u["upload_id"], u["filename"], u["total_size"]) for u in listed] == [
        (started["upload_id"], "half.bin", 6)]
    capsys.readouterr()
    opts = Options()
    opts.parseOptions(["--config", config, "uploads", "list"])
    await run(reactor, opts)
    assert "half.bin\t6 B\t0 chunks received" in capsys.readouterr().out
    await cli(config, "uploads", "cancel", started["upload_id"])
    assert await server.store.uploads_older_than(float("inf")) == []
    with pytest.raises(ApiCallError) as e:
        await cli(config, "uploads", "cancel", started["upload_id"])
    assert e.value.status == 404
    capsys.readouterr()


@pytest_twisted.ensureDeferred
async def test_cli_gives_up_on_a_server_that_never_answers(tmp_path: Path, server: Any,
                                                           capsys: Any) -> None:
    from twisted.internet import endpoints
    from twisted.internet.protocol import Factory, Protocol

    from sealskin.client import NoAnswer

    silent = await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        Factory.forProtocol(Protocol))  # accepts, reads, never answers
    try:
        config = write_config(server, tmp_path)
        url = f"http://127.0.0.1:{silent.getHost().port}"
        with pytest.raises(NoAnswer, match="within 0.5 seconds"):
            await cli(config, "--timeout", "0.5", "--url", url, "status")
    finally:
        await silent.stopListening()
    from twisted.python import usage
    for bad in ("-1", "soon", "1e9"):
        with pytest.raises(usage.UsageError, match="--timeout"):
            Options().parseOptions(["--timeout", bad, "status"])
    with pytest.raises(usage.UsageError, match="--url must start with http"):
        Options().parseOptions(["--url", "localhost:8000", "status"])
    capsys.readouterr()


def test_ctrl_c_while_the_cli_loads_its_key_is_quiet(tmp_path: Path) -> None:
    """SIGINT before the reactor runs (loading a 4096-bit key takes a moment) is raised as
    KeyboardInterrupt inside the command's coroutine: it must end the same way as later."""
    import subprocess
    import sys

    from sealskin.crypto import keys

    config = tmp_path / "admin.json"
    private, public = keys.private_pem(keys.generate_rsa(2048)), keys.public_pem(
        keys.generate_rsa(2048))
    config.write_text(json.dumps({
        "server_endpoint": "127.0.0.1", "api_port": 9, "session_port": 9, "username": "admin",
        "private_key": private, "server_public_key": public}))
    script = (
        "import os, signal\n"
        "from sealskin.crypto import keys\n"
        "load = keys.load_private_pem\n"
        "def interrupted_load(data):\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"  # Ctrl-C, while the key loads
        "    return load(data)\n"
        "keys.load_private_pem = interrupted_load\n"
        "from sealskin.cli import main\n"
        f"main()\n")
    done = subprocess.run([sys.executable, "-c", script, "-c", str(config), "status"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 130, done
    assert done.stderr.strip() == "sealskin: interrupted", done.stderr


@pytest_twisted.ensureDeferred
async def test_ctrl_c_while_the_upload_is_being_started_still_cancels_it(
        server: Any, tmp_path: Path) -> None:
    """SIGINT lands while /api/upload/initiate is out: the CLI does not know the upload's id
    yet, so it waits for the answer and cancels that upload before it exits."""
    import signal
    import subprocess
    import sys

    from twisted.internet.threads import deferToThread

    config = write_config(server, tmp_path)
    data = tmp_path / "data.bin"
    data.write_bytes(b"x" * (3 * 1024 * 1024))
    script = (
        "import os, signal\n"
        "from twisted.internet import reactor\n"
        "from twisted.internet.task import deferLater\n"
        "from sealskin.client import ApiClient\n"
        "raw = ApiClient.raw\n"
        "async def interrupted_raw(self, method, path, *args, **kwargs):\n"
        "    answer = await raw(self, method, path, *args, **kwargs)\n"
        "    if path == '/api/upload/initiate':\n"  # the server made the upload; Ctrl-C
        "        os.kill(os.getpid(), signal.SIGINT)\n"  # before the CLI has its answer
        "        await deferLater(reactor, 0.3, lambda: None)\n"
        "    return answer\n"
        "ApiClient.raw = interrupted_raw\n"
        "from sealskin.cli import main\n"
        "main()\n")
    proc = subprocess.Popen([sys.executable, "-c", script, "-c", config, "upload", str(data),
                             "--chunk-mib", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _, err = await deferToThread(proc.communicate, timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130 and b"interrupted" in err, err
    assert await server.store.uploads_older_than(float("inf")) == []


@pytest_twisted.ensureDeferred
async def test_a_timeout_while_the_file_is_stored_says_it_may_be_there(
        server: Any, tmp_path: Path, monkeypatch: Any, capsys: Any) -> None:
    """The store request is out when the answer is late: the server finishes it anyway
    (assembly is not abandoned half-way), so the message must not suggest it failed."""
    from sealskin.client import ApiClient, NoAnswer

    raw = ApiClient.raw

    async def late_store(self: Any, method: str, path: str, **kwargs: Any) -> Any:
        answer = await raw(self, method, path, **kwargs)
        if path == "/api/upload/to_storage":
            raise NoAnswer("no answer from the server within 0.1 seconds")
        return answer

    monkeypatch.setattr(ApiClient, "raw", late_store)
    config = write_config(server, tmp_path)
    source = tmp_path / "late.bin"
    source.write_bytes(b"z" * 5000)
    with pytest.raises(NoAnswer, match="may store the file anyway"):
        await cli(config, "upload", str(source))
    stored = Path(server.paths.homes) / "admin" / "_sealskin_shared_files" / "late.bin"
    assert stored.read_bytes() == source.read_bytes()
    capsys.readouterr()


def test_version_is_sealskins_own(capsys: Any) -> None:
    import sealskin

    with pytest.raises(SystemExit) as e:
        Options().parseOptions(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"sealskin {sealskin.__version__}"
