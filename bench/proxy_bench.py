"""Session proxy benchmark (issue 3): our TLS proxy vs Caddy 2 vs the backend itself.

One run, one backend container, three paths to it, measured one after the other:

* **direct**: plain HTTP/WS to the container's bridge address (no TLS, no proxy);
* **SealSkin**: a real launched session of ``sealskin/bench-backend`` (bench/backend/, a C
  epoll HTTP + WebSocket echo server), TLS on the session port, session cookie;
* **Caddy**: Debian's caddy, ``reverse_proxy`` to the same container, TLS with the server's
  own self-signed certificate, no access log (Caddy's default).

HTTP: ``wrk -t2 -c50 -d<s>s --latency`` (cookie header for ours). WebSocket: bench/ws_bench.py,
20 connections, 1 KiB and 64 KiB binary messages, ``--window`` in flight per connection.
Memory: 1,000 idle WebSockets through our proxy, server VmRSS delta / 1,000. Every process
and container it started is stopped (containers by this run's ``org.sealskin.server`` label).

    .venv/bin/python bench/proxy_bench.py                 # writes "## Session proxy"
    .venv/bin/python bench/proxy_bench.py --seconds 5 --no-write
    .venv/bin/python bench/proxy_bench.py --seconds 10 --only ws   # WebSocket rows only
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import resource
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from launch_bench import SERVER_ARGS, Api, install_app, remove_containers  # noqa: E402

HERE = Path(__file__).resolve().parent
IMAGE = "sealskin/bench-backend:latest"
PY = str(common.VENV_PYTHON)


def log(text: str) -> None:
    print(f"[proxy-bench {time.strftime('%H:%M:%S')}] {text}", flush=True)


# -- setup ------------------------------------------------------------------------------------


def redeem(port: int, url: str) -> str:
    """GET the single-use URL; returns the ``name=value`` of the session cookie."""
    ctx = ssl._create_unverified_context()  # the server's self-signed certificate
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    conn.request("GET", url)
    response = conn.getresponse()
    response.read()
    conn.close()
    if response.status != 303:
        raise RuntimeError(f"redeeming the session URL gave {response.status}")
    return str(response.getheader("set-cookie")).split(";", 1)[0]


def container_of(session_id: str) -> tuple[str, str]:
    """(container id, bridge IP) of the session's container."""
    cid = subprocess.run(["docker", "ps", "-q", "--filter", f"label=org.sealskin.session={session_id}"],
                         capture_output=True, text=True, check=True).stdout.split()[0]
    ip = subprocess.run(["docker", "inspect", "-f",
                         "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", cid],
                        capture_output=True, text=True, check=True).stdout.split()[0]
    return cid, ip


def container_cpu_seconds(cid: str) -> float:
    full = subprocess.run(["docker", "inspect", "-f", "{{.Id}}", cid], capture_output=True,
                          text=True).stdout.strip()
    for path in (f"/sys/fs/cgroup/system.slice/docker-{full}.scope/cpu.stat",
                 f"/sys/fs/cgroup/docker/{full}/cpu.stat"):  # cgroup v2
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith("usage_usec"):
                        return int(line.split()[1]) / 1e6
        except OSError:
            continue
    try:  # cgroup v1
        with open(f"/sys/fs/cgroup/cpuacct/docker/{full}/cpuacct.usage") as f:
            return int(f.read()) / 1e9
    except OSError:
        return float("nan")


class Caddy:
    def __init__(self, root: Path, cert: Path, key: Path, upstream: str) -> None:
        self.port = common.free_port()
        self.dir = root / "caddy"
        self.dir.mkdir()
        self.config = self.dir / "Caddyfile"
        self.config.write_text(
            "{\n\tadmin off\n\tauto_https disable_redirects\n}\n"
            f"https://127.0.0.1:{self.port} {{\n\ttls {cert} {key}\n"
            f"\treverse_proxy {upstream}\n}}\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.dir), "XDG_DATA_HOME": str(self.dir),
               "XDG_CONFIG_HOME": str(self.dir)}
        self.proc = subprocess.Popen(
            ["caddy", "run", "--config", str(self.config), "--adapter", "caddyfile"],
            env=env, stdout=open(self.dir / "caddy.log", "wb"), stderr=subprocess.STDOUT)
        common.wait_for_port(self.port, time.monotonic() + 20)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- measurements -----------------------------------------------------------------------------


def _ms(text: str) -> float:
    value = float(re.match(r"[\d.]+", text).group())  # type: ignore[union-attr]
    return value / 1000 if text.endswith("us") else value * 1000 if re.search(r"\ds$", text) else value


def _family(pid: int) -> list[int]:
    """A process and its children (the server's --proxy-workers)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [pid, *(int(c) for c in f.read().split())]
    except OSError:
        return [pid]


def tree_cpu_seconds(pid: int) -> float:
    return sum(common.cpu_seconds(p) for p in _family(pid))


def tree_rss_bytes(pid: int) -> int:
    return sum(common.rss_bytes(p)["VmRSS"] for p in _family(pid))


def wrk(url: str, headers: Sequence[str], seconds: float, pids: dict[str, int],
        cid: str) -> dict[str, Any]:
    cmd = ["wrk", "-t2", "-c50", f"-d{seconds:g}s", "--latency"]
    for h in headers:
        cmd += ["-H", h]
    subprocess.run([*cmd[:3], "-d2s", url], capture_output=True, timeout=60)  # warm-up
    cpu0 = {name: tree_cpu_seconds(pid) for name, pid in pids.items()}
    back0 = container_cpu_seconds(cid)
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=seconds + 60).stdout
    cpu = {name: 100 * (tree_cpu_seconds(pid) - cpu0[name]) / seconds for name, pid in pids.items()}
    cpu["backend"] = 100 * (container_cpu_seconds(cid) - back0) / seconds
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50": p50, "p99": p99, "non2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": errors.group(1) if errors else "", "cpu": cpu}


def ws(url: str, headers: Sequence[str], size: int, seconds: float, procs: int, window: int,
       pids: dict[str, int], cid: str) -> dict[str, Any]:
    cmd = [PY, str(HERE / "ws_bench.py"), "run", "--url", url, "--size", str(size), "--conns", "20",
           "--seconds", f"{seconds:g}", "--procs", str(procs), "--window", str(window)]
    for h in headers:
        cmd += ["--header", h]
    cpu0 = {name: tree_cpu_seconds(pid) for name, pid in pids.items()}
    back0 = container_cpu_seconds(cid)
    t0 = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    elapsed = time.monotonic() - t0
    if out.returncode != 0:
        raise RuntimeError(f"ws_bench failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    # whole-run averages (connect + warm-up + window): a lower bound of the busy share
    result["cpu"] = {name: 100 * (tree_cpu_seconds(pid) - cpu0[name]) / elapsed
                     for name, pid in pids.items()}
    result["cpu"]["backend"] = 100 * (container_cpu_seconds(cid) - back0) / elapsed
    return result


def idle_memory(url: str, headers: Sequence[str], pid: int, count: int) -> dict[str, float]:
    cmd = [PY, str(HERE / "ws_bench.py"), "hold", "--url", url, "--count", str(count)]
    for h in headers:
        cmd += ["--header", h]
    time.sleep(1)
    before = tree_rss_bytes(pid)
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line.startswith("open"):
            raise RuntimeError("the idle WebSocket client failed")
        time.sleep(3)
        after = tree_rss_bytes(pid)
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return {"count": count, "before": before, "after": after,
            "per_conn_kib": (after - before) / count / 1024}


# -- report -----------------------------------------------------------------------------------


SECTION = "## Session proxy"
NAMES = ("direct", "sealskin", "caddy")
WS_HEADING = "### WebSocket echo"
MEMORY_HEADING = "### Memory per idle WebSocket"
COMMAND_LINE = "Command (builds bench/backend"


def report(r: dict[str, Any], facts: dict[str, str], command: str, args: argparse.Namespace) -> str:
    """The whole "Session proxy" section (a run of every part)."""
    return "\n".join([*_head(r, facts, args), "", *_http_block(r["http"], args), "",
                      *_ws_block(r, args), "", NOTES, "", *_memory_block(r["memory"], args), "",
                      f"{COMMAND_LINE} and starts/stops the server, Caddy and the container itself):",
                      "", "```", command, "```"])


def _head(r: dict[str, Any], facts: dict[str, str], args: argparse.Namespace) -> list[str]:
    return [
        f"Machine: {facts['nproc']} cores ({facts['cpu']}), kernel {facts['kernel']}, Python "
        f"{facts['python']}, Twisted {facts['twisted']}, Autobahn {r['autobahn']} (masking: "
        f"**{r['accel']['xormasker']}**, UTF-8 validation: **{r['accel']['utf8validator']}**; "
        "see the WebSocket notes for which frames still use them), "
        f"{r['caddy_version']}, wrk {r['wrk_version']}. Everything (load generator, proxies, "
        "backend) shares these cores, so CPU columns are % of one core.",
        "",
        "Backend: `sealskin/bench-backend` (bench/backend/echo.c: epoll, 2 threads, fixed "
        "88-byte HTML answer, RFC 6455 echo), launched as a real session. *direct* = plain "
        "HTTP/WS to the container's bridge address; *SealSkin* = TLS session port with the "
        f"session cookie, served by the primary and {args.proxy_workers} `--proxy-workers` "
        "process(es) sharing the socket (its CPU column sums them); *Caddy* = `reverse_proxy` to the same container, TLS with the same "
        "self-signed certificate.",
    ]


def _http_block(h: dict[str, Any], args: argparse.Namespace) -> list[str]:
    lines = [
        f"### HTTP, small response (`wrk -t2 -c50 -d{args.seconds:g}s --latency`)",
        "",
        "| path | req/s | p50 | p99 | proxy CPU | backend CPU | vs Caddy |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in NAMES:
        x = h[n]
        proxy_cpu = {"direct": "-", "sealskin": f"{x['cpu']['server']:.0f} %",
                     "caddy": f"{x['cpu']['caddy']:.0f} %"}[n]
        bad = f" ({x['non2xx']} non-2xx)" if x["non2xx"] else ""
        lines.append(f"| {n} | {common.fmt(x['rps'])}{bad} | {x['p50']:.2f} ms | {x['p99']:.2f} ms | "
                     f"{proxy_cpu} | {x['cpu']['backend']:.0f} % | "
                     f"{x['rps'] / h['caddy']['rps']:.2f}x |")
    ours, caddy = h["sealskin"], h["caddy"]
    met = ours["rps"] > 2700 and ours["p99"] < 50
    lines += ["", f"Targets: more than 2,700 req/s (the original data plane) with p99 under 50 ms: "
              f"**{'met' if met else 'NOT met'}** ({common.fmt(ours['rps'])} req/s, p99 "
              f"{ours['p99']:.1f} ms); aim, half of Caddy's rate: "
              f"{'reached' if ours['rps'] >= caddy['rps'] / 2 else 'not reached'} "
              f"({ours['rps'] / caddy['rps']:.2f}x)."]
    return lines


def _ws_block(r: dict[str, Any], args: argparse.Namespace) -> list[str]:
    lines = [f"{WS_HEADING} (bench/ws_bench.py, 20 connections, {args.window} messages in "
             f"flight each, {args.ws_procs} client process(es), {args.seconds:g} s after 2 s warm-up)",
             "", "| path | 1 KiB msgs/s | client CPU | 64 KiB MB/s | client CPU | proxy CPU (1 KiB / 64 KiB) | vs Caddy (1 KiB / 64 KiB) |",
             "|---|---|---|---|---|---|---|"]
    for n in NAMES:
        a, b = r["ws1k"][n], r["ws64k"][n]
        cpu_key = {"direct": None, "sealskin": "server", "caddy": "caddy"}[n]
        proxy_cpu = "-" if cpu_key is None else f"{a['cpu'][cpu_key]:.0f} % / {b['cpu'][cpu_key]:.0f} %"
        lines.append(
            f"| {n} | {common.fmt(a['msgs_per_s'])} | {a['client_cpu_pct']:.0f} % | "
            f"{b['mb_per_s']:.1f} | {b['client_cpu_pct']:.0f} % | {proxy_cpu} | "
            f"{a['msgs_per_s'] / r['ws1k']['caddy']['msgs_per_s']:.2f}x / "
            f"{b['mb_per_s'] / r['ws64k']['caddy']['mb_per_s']:.2f}x |")
    checked = sum(x.get("verified", 0) for size in ("ws1k", "ws64k") for x in r[size].values())
    ratios = (r["ws1k"]["sealskin"]["msgs_per_s"] / r["ws1k"]["caddy"]["msgs_per_s"],
              r["ws64k"]["sealskin"]["mb_per_s"] / r["ws64k"]["caddy"]["mb_per_s"])
    verdict = "met" if min(ratios) >= 0.5 else "NOT met"
    lines += ["", f"Target: at least half of Caddy's message rate and throughput: **{verdict}** "
              f"({ratios[0]:.2f}x / {ratios[1]:.2f}x)."]
    return [*lines, "", WS_NOTES.format(checked=checked)]


def _memory_block(m: dict[str, Any], args: argparse.Namespace) -> list[str]:
    return [f"{MEMORY_HEADING} (through SealSkin)", "",
            f"{m['count']:,} idle WebSockets (TLS, cookie, bridged to the app): server VmRSS "
            f"(primary + {args.proxy_workers} proxy worker(s)) "
            f"{m['before'] / 2**20:.1f} MiB -> {m['after'] / 2**20:.1f} MiB, "
            f"**{m['per_conn_kib']:.1f} KiB per WebSocket** (target <= 64 KiB; browser "
            "side + app side + TLS state)."]


def splice_ws(section: str, r: dict[str, Any], command: str, args: argparse.Namespace) -> str:
    """``section`` (the current "Session proxy" text) with its WebSocket parts from ``r``.

    For ``--only ws``: the WebSocket table and notes (up to the HTTP notes) and the memory
    paragraph are replaced, the HTTP table and its notes are kept as they were.
    """
    ws_at, notes_at = section.index(WS_HEADING), section.index(NOTES.split("\n", 1)[0])
    memory_at, command_at = section.index(MEMORY_HEADING), section.index(COMMAND_LINE)
    ws_text = "\n".join(_ws_block(r, args)) + "\n\n"
    memory_text = "\n".join([*_memory_block(r["memory"], args), "",
                             f"The WebSocket rows and this figure: `{command}`; the HTTP table "
                             "comes from the command below."]) + "\n\n"
    return (section[:ws_at] + ws_text + section[notes_at:memory_at] + memory_text
            + section[command_at:])


WS_NOTES = """\
What the WebSocket rows measure: SealSkin checks the cookie and `Origin`, then makes both
opening handshakes with Autobahn (subprotocol negotiated end to end, the app's Basic
credentials added) and from then on relays frames **verbatim** (`proxy/relay.py`,
`proxy/frames.py`): browser frames reach the app still masked, app frames reach the browser
as they came, and the relay reads only frame headers (size limits, opcodes, masking, RSV
bits, control-frame rules). Relayed payloads are **not unmasked, and text is not UTF-8
validated** by the proxy: the endpoints do that, as behind Caddy or nginx. nvx masking is
used only for the frames the proxy writes itself (its pings and closing frames, a few bytes
each); Autobahn's UTF-8 validator is not used at all any more. The load client checked the
first echo of every connection byte for byte ({checked} connections over the rows above).
Before this relay the proxy parsed, unmasked, validated and re-framed every message on both
sides (Autobahn, pure-Python framing): 8,660 1-KiB msgs/s and 125.4 MB/s with 64 KiB
(0.28x / 0.41x Caddy) in the previous full run; re-measured right before the change with
`--only ws`, 10,153 msgs/s and 132.4 MB/s against Caddy's 22,909 and 219.3 (0.44x / 0.60x:
a busier hour on the shared cores, which lowers Caddy's figures as well)."""


NOTES = """\
How the HTTP rows came about. The proxy (`proxy/http.py`, `proxy/exchange.py`) streams both
ways with backpressure and keeps up to 64 idle keep-alive connections per app. Its upstream
side is our own HTTP/1.1 client (`proxy/upstream.py`, parser in `proxy/http1.py`): a request
head is one `bytes` write and the answer is parsed incrementally by its framing. It replaced
Twisted's `Agent`, which a py-spy profile showed taking about a third of the proxy's CPU per
small request (URI parsing, `Headers` objects, its line parser, Deferred chains and pool
bookkeeping). Measured with one proxy process (`--proxy-workers 0`, wrk -c50, same backend,
one after the other): `Agent` 1,567 req/s, p99 89.8 ms; own client 3,897 req/s, p99 22.4 ms.
What remains per request is Twisted's HTTP server (`HTTPChannel`, `Request`), pyOpenSSL's
record layer, the session cookie's HMAC and the socket system calls (on loopback a `send`
also runs the receiver's network stack). TCP_NODELAY is set on both sides (a response that
leaves in two writes would otherwise wait for the client's delayed ACK), and the access log
is off by default (`--access-log`). `--proxy-workers N` adds processes sharing the TLS socket
(the primary hands its listening socket to each worker, which adopts it); the API, `/public` and
session-link redemption stay in the primary."""


# -- main -------------------------------------------------------------------------------------


def run(args: argparse.Namespace, root: Path, server_id: str) -> dict[str, Any]:
    server = common.Server(root / "data", args=[*SERVER_ARGS, "--server-id", server_id,
                                                "--proxy-workers", str(args.proxy_workers)])
    caddy: Caddy | None = None
    api: Api | None = None
    r: dict[str, Any] = {}
    try:
        server.start()
        api = Api(root / "data" / "admin.json")
        app_id = install_app(api, IMAGE, 3000)
        launched = api.call("POST", "/api/launch/simple", {"application_id": app_id})
        sid, url = launched["session_id"], launched["session_url"]
        sp = server.session_port
        cookie = redeem(sp, url)
        cid, ip = container_of(sid)
        keys = root / "data" / "keys"
        caddy = Caddy(root, keys / "tls_cert.pem", keys / "tls_key.pem", f"{ip}:3000")
        caddy.start()
        assert caddy.proc is not None
        pids = {"server": server.pid, "caddy": caddy.proc.pid}
        targets = {
            "direct": (f"http://{ip}:3000/{sid}/", f"ws://{ip}:3000/{sid}/ws", []),
            "sealskin": (f"https://127.0.0.1:{sp}/{sid}/", f"wss://127.0.0.1:{sp}/{sid}/ws",
                         [f"Cookie: {cookie}", f"Origin: https://127.0.0.1:{sp}"]),
            "caddy": (f"https://127.0.0.1:{caddy.port}/{sid}/", f"wss://127.0.0.1:{caddy.port}/{sid}/ws", []),
        }
        if args.only in ("all", "http"):
            r["http"] = {}
            for name, (http_url, _, headers) in targets.items():
                log(f"HTTP {name}")
                r["http"][name] = wrk(http_url, headers[:1], args.seconds, pids, cid)
        if args.only in ("all", "ws"):
            r["ws1k"], r["ws64k"] = {}, {}
            for name, (_, ws_url, headers) in targets.items():
                log(f"WebSocket {name}")
                r["ws1k"][name] = ws(ws_url, headers, 1024, args.seconds, args.ws_procs, args.window, pids, cid)
                r["ws64k"][name] = ws(ws_url, headers, 65536, args.seconds, args.ws_procs, args.window, pids, cid)
            log(f"{args.idle:,} idle WebSockets through SealSkin")
            r["memory"] = idle_memory(targets["sealskin"][1], targets["sealskin"][2], server.pid, args.idle)
    finally:
        if caddy is not None:
            caddy.stop()
        if api is not None:
            api.close()
        server.stop()
        remove_containers(server_id)
    return r


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=15.0, help="each timed window")
    p.add_argument("--proxy-workers", type=int, default=1,
                   help="the server's --proxy-workers (CPU and memory sum all its processes)")
    p.add_argument("--ws-procs", type=int, default=2, help="WebSocket client processes")
    p.add_argument("--window", type=int, default=4, help="WebSocket messages in flight per connection")
    p.add_argument("--idle", type=int, default=1000, help="idle WebSockets for the memory figure")
    p.add_argument("--only", choices=("all", "ws"), default="all",
                   help="ws: only the WebSocket rows and the memory figure (the written section "
                        "keeps its HTTP table)")
    p.add_argument("--no-write", action="store_true", help="print, do not touch docs/benchmarks.md")
    p.add_argument("--json", help="also dump raw results to this file")
    p.add_argument("--from-json", help="re-render the report from a --json dump, run nothing")
    args = p.parse_args(argv)
    if args.from_json:
        r = json.loads(Path(args.from_json).read_text())
        publish(r, common.machine_facts(), r["command"], args)
        return 0
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the server
    subprocess.run([str(HERE / "backend" / "build.sh")], check=True)
    facts = common.machine_facts()
    accel = subprocess.run([PY, "-c", "import json, autobahn; from sealskin.proxy.ws import "
                            "acceleration; print(json.dumps([autobahn.__version__, acceleration()]))"],
                           capture_output=True, text=True, check=True,
                           env={"PYTHONPATH": str(common.ROOT / "src")}).stdout
    server_id = "bench-proxy-" + uuid.uuid4().hex[:8]
    with common.scratch_dir() as root:
        r = run(args, root, server_id)
    r["autobahn"], r["accel"] = json.loads(accel)
    r["caddy_version"] = "Caddy " + subprocess.run(["caddy", "version"], capture_output=True,
                                                   text=True).stdout.split()[0]
    r["wrk_version"] = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split()[1]
    command = ".venv/bin/python bench/proxy_bench.py" + (
        " " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
    r["command"] = command
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2))
    publish(r, facts, command, args)
    return 0


def publish(r: dict[str, Any], facts: dict[str, str], command: str, args: argparse.Namespace) -> None:
    """Prints the section and, unless ``--no-write``, puts it into docs/benchmarks.md."""
    if args.only == "ws":
        text = splice_ws(_written_section(), r, command, args)
    else:
        text = report(r, facts, command, args)
    print(text)
    if not args.no_write:
        common.write_section(SECTION, text)


def _written_section() -> str:
    """The body of the "Session proxy" section as docs/benchmarks.md has it now."""
    lines = common.BENCHMARKS_MD.read_text(encoding="utf-8").splitlines(keepends=True)
    start = lines.index(SECTION + "\n") + 2
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "".join(lines[start:end]).strip("\n") + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
