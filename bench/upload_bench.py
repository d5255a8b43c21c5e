"""Upload throughput and server memory: a large file through the encrypted chunk API.

Starts ``twistd -n --pidfile= sealskin`` as a child process, uploads a generated
file (made chunk by chunk, never held whole) in 8 MiB chunks with two requests
in flight, consumes it with ``to_storage``, checks the SHA-256, and reports MB/s
and the server's peak RSS growth. Writes the figures to docs/benchmarks.md
under "## Uploads" (only that section is replaced).

    PYTHONPATH=src:. .venv/bin/python bench/upload_bench.py [--size-mib 2048]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pybase64
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from twisted.internet import defer, task, threads

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "bench")]

import common  # noqa: E402
from sealskin.client import ApiClient, ClientConfig  # noqa: E402

MiB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status_kib(pid: int, field: str) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    found = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(found.group(1)) if found else 0


class Sampler(threading.Thread):
    """Samples the server's VmRSS every 50 ms (VmHWM cannot be reset)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_kib, self.done = pid, 0, False

    def run(self) -> None:
        while not self.done:
            try:
                self.peak_kib = max(self.peak_kib, status_kib(self.pid, "VmRSS"))
            except OSError:
                return
            time.sleep(0.05)


def start_server(data_dir: Path, api_port: int) -> tuple[subprocess.Popen[bytes], list[str]]:
    args = [str(ROOT / ".venv" / "bin" / "twistd"), "-n", "--pidfile=",
            f"--logfile={data_dir.parent / 'server.log'}", "sealskin",
            f"--data-dir={data_dir}", f"--api-endpoint=tcp:{api_port}:interface=127.0.0.1",
            f"--session-endpoint=tcp:{free_port()}:interface=127.0.0.1",
            "--server-key-bits=2048", "--admin-key-bits=2048", "--host-url=127.0.0.1"]
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    proc = subprocess.Popen(args, env=env, cwd=str(ROOT))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        if (data_dir / "admin.json").exists():
            try:
                socket.create_connection(("127.0.0.1", api_port), timeout=0.5).close()
                return proc, args
            except OSError:
                pass
        time.sleep(0.1)
    proc.terminate()
    raise SystemExit("server did not start")


async def upload(client: ApiClient, size: int, chunk_bytes: int, in_flight: int,
                 ) -> tuple[str, int, str]:
    started: Any = await client.call("POST", "/api/upload/initiate",
                                     {"filename": "bench.bin", "total_size": size})
    upload_id = started["upload_id"]
    digest, count = hashlib.sha256(), -(-size // chunk_bytes)
    pending: list[defer.Deferred[object]] = []

    def make(index: int) -> str:
        # off the client's reactor: it must keep feeding the sockets meanwhile. An AES-CTR
        # keystream is random enough for a file and ~10x cheaper than os.urandom; chunks
        # are made one at a time, in order, so the digest can be updated here.
        chunk = Cipher(algorithms.AES(seed), modes.CTR(index.to_bytes(16, "big"))).encryptor(
            ).update(bytes(min(chunk_bytes, size - index * chunk_bytes)))
        digest.update(chunk)
        return pybase64.b64encode(chunk).decode()

    seed = os.urandom(32)
    following = threads.deferToThread(make, 0)
    for index in range(count):
        text = await following
        if index + 1 < count:
            following = threads.deferToThread(make, index + 1)
        body = {"upload_id": upload_id, "chunk_index": index, "chunk_data_b64": text}
        if index == 0:  # chunk 0 fixes the chunk size: send it alone
            await client.call("POST", "/api/upload/chunk", body)
            continue
        pending.append(defer.ensureDeferred(client.call("POST", "/api/upload/chunk", body)))
        if len(pending) >= in_flight:
            await pending.pop(0)
    for d in pending:
        await d
    return upload_id, count, digest.hexdigest()


async def measure(reactor: Any, args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="sealskin-bench-"))
    data_dir, api_port = tmp / "data", free_port()
    proc, command = start_server(data_dir, api_port)
    try:
        client = ApiClient(reactor, ClientConfig.load(str(data_dir / "admin.json")),
                           base_url=f"http://127.0.0.1:{api_port}")
        await upload(client, MiB, MiB, 1)  # warm up: handshake, imports, pools
        before = status_kib(proc.pid, "VmRSS")
        sampler = Sampler(proc.pid)
        sampler.start()
        size = args.size_mib * MiB
        t0 = time.monotonic()
        cpu0 = (common.cpu_seconds(proc.pid), common.self_cpu_seconds())
        upload_id, count, local = await upload(client, size, args.chunk_mib * MiB, args.in_flight)
        t1 = time.monotonic()
        cpu1 = (common.cpu_seconds(proc.pid), common.self_cpu_seconds())
        answer: Any = await client.call("POST", "/api/upload/to_storage", {
            "filename": "bench.bin", "upload_id": upload_id, "total_chunks": count,
            "home_name": "_sealskin_shared_files"})
        t2 = time.monotonic()
        sampler.done = True
        sampler.join()
        assert answer["sha256"] == local, "checksum mismatch"
        return {"size_mib": args.size_mib, "chunk_mib": args.chunk_mib,
                "in_flight": args.in_flight, "upload_s": t1 - t0, "assemble_s": t2 - t1,
                "upload_mb_s": size / 1e6 / (t1 - t0), "total_mb_s": size / 1e6 / (t2 - t0),
                "rss_before_mib": before / 1024, "rss_peak_mib": sampler.peak_kib / 1024,
                "rss_growth_mib": (sampler.peak_kib - before) / 1024,
                "server_cores": (cpu1[0] - cpu0[0]) / (t1 - t0),
                "client_cores": (cpu1[1] - cpu0[1]) / (t1 - t0),
                "command": " ".join(command)}
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)


def write_report(r: dict[str, Any], invocation: str) -> str:
    ok_rss, ok_speed = r["rss_growth_mib"] < 64, r["upload_mb_s"] >= 50
    section = "\n".join([
        "## Uploads", "",
        f"`{invocation}` ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs). The server ran as",
        f"`{r['command']}`", "",
        f"- file: {r['size_mib']} MiB, chunks of {r['chunk_mib']} MiB, {r['in_flight']} in "
        "flight, through the encrypted API (base64 in AES-GCM envelopes), then `to_storage`",
        f"- chunk upload: {r['upload_s']:.1f} s = **{r['upload_mb_s']:.0f} MB/s** "
        f"(target >= 50: {'met' if ok_speed else 'NOT met'})",
        f"- assembly (`to_storage`, streamed + SHA-256): {r['assemble_s']:.1f} s; end to end "
        f"{r['total_mb_s']:.0f} MB/s",
        f"- CPU while uploading: server {r['server_cores']:.2f} cores, this client "
        f"{r['client_cores']:.2f} cores (both on the same 2 cores)",
        f"- server RSS: {r['rss_before_mib']:.0f} MiB before, peak {r['rss_peak_mib']:.0f} MiB, "
        f"growth **{r['rss_growth_mib']:.0f} MiB** (target < 64: "
        f"{'met' if ok_rss else 'NOT met'})", "", ""])
    path = ROOT / "docs" / "benchmarks.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    pattern = re.compile(r"^## Uploads\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else (
        text.rstrip("\n") + "\n\n" + section)
    path.write_text(text)
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=2048)
    parser.add_argument("--chunk-mib", type=int, default=8)
    parser.add_argument("--in-flight", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="do not update docs")
    args = parser.parse_args()
    invocation = "PYTHONPATH=src:. .venv/bin/python bench/upload_bench.py " + " ".join(
        sys.argv[1:])

    async def run(reactor: Any) -> None:
        result = await measure(reactor, args)
        if args.no_write:
            print(result)
        else:
            print(write_report(result, invocation.strip()))

    task.react(lambda reactor: defer.ensureDeferred(run(reactor)))


if __name__ == "__main__":
    main()
