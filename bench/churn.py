"""Churn: short streams back to back on kept-alive connections, through the proxy and direct.

    python bench/churn.py [--workers 100] [--seconds 5] [--rounds 2] [--tokens 5]
                          [--before REV] [--write bench/RESULTS.md] [--note TEXT]

What real clients do (``requests`` sessions, the SDKs' pools): each of N workers holds one
kept-alive connection and sends its next streaming request as soon as the previous response has
ended. The upstream is the simulator in its own process, pacing events 20 ms apart and sending its
chunked terminator 20 ms after the last event (``x-sim-fault: linger:0.02``). Measured on both
upstream paths: Text Completions (legacy ``/v1/complete`` converted natively) and Messages (legacy
``/v1/complete`` answered through ``/v1/messages``, the default to be), each paired in the same run
with the direct path: the simulator asked the same thing in 2023-06-01 on its own endpoint.

Per request: time from the request's write to the first event carrying text (``completion`` with
``stop_reason`` null, or ``content_block_delta``), the gaps between such events, and the response's
end. "Added" is the proxy's percentile minus the direct path's. The first request of each worker
(connection set-up) is left out. Proxy CPU per request is the proxy process's user + system time
from /proc/<pid>/stat over the run, divided by the requests it answered in it.

Then the paced case of bench/run.py on both upstream paths: 100 streams of 100 tokens at 20 ms,
each on a connection of its own (its set-up counted), started over 1 s. Then, one request at a
time on one kept-alive connection: the added latency of a pass-through
request (a 2023-06-01 non-streaming ``/v1/messages`` call) and of a non-streaming legacy
completion on each upstream path.

``--before REV`` also runs the proxy of commit REV (``git archive`` into a temporary directory,
same virtualenv, same simulator, same load), interleaved with the current tree's, so the two are
measured in the same window and sit side by side in the table. Each round runs direct, before,
after, and the next round the other way round (after, before, direct), so drift in the machine's
load does not favour one column; the rounds' samples are pooled.

The load runs in its own process (``--load``, on uvloop, garbage collector off), like
bench/loadgen.py: one raw asyncio Protocol per connection, no HTTP client library.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import re
import resource
import shlex
import signal
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from chunked import Dechunker  # bench/chunked.py: the scripts run with bench/ on sys.path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
TICK = os.sysconf("SC_CLK_TCK")
PACE = 0.02
LINGER = 0.02
# the paced case (bench/run.py's latency case, here on both upstream paths)
PACED_STREAMS = 100
PACED_TOKENS = 100

# A live model that does not think (a strict simulator refuses retired names, and a thinking
# model would stream a thinking block first)
MESSAGES_MODEL = "claude-haiku-4-5"

# How the proxy is told to answer legacy /v1/complete through each upstream path, in both
# generations of the settings: ``[complete] upstream`` where it exists (Messages the default),
# ``[messages] default`` before it (Text Completions the default); each ignores the other's
# variable. The run checks the simulator's counts per path, so a proxy that routes otherwise
# fails the run instead of being reported under the wrong path.
PROXY_ENV = {
    "complete": {"LEGACY_PROXY_COMPLETE_UPSTREAM": "complete"},
    "messages": {
        "LEGACY_PROXY_COMPLETE_UPSTREAM": "messages",
        "LEGACY_PROXY_MESSAGES_MODELS": f"claude-2.0={MESSAGES_MODEL}",
    },
}


# -- the load (its own process) ------------------------------------------------------------------


class Conn(asyncio.Protocol):
    """One kept-alive connection sending ``request`` again and again, each as soon as the
    previous response has ended, until ``until`` (perf_counter) or ``count`` requests."""

    def __init__(
        self, request: bytes, stream: bool, until: float, count: int, done: asyncio.Future[None]
    ) -> None:
        self.request = request
        self.stream = stream
        self.until = until
        self.count = count
        self.done = done
        self.transport: asyncio.Transport | None = None
        self.results: list[dict[str, Any]] = []
        self.error: str | None = None
        self._reset()

    def _reset(self) -> None:
        self.buf = b""
        self.in_body = False
        self.chunked = False
        self.length = 0  # Content-Length bodies: bytes left
        self.chunks = Dechunker()
        self.ended = False
        self.events = b""
        self.stamps: list[float] = []
        self.complete = False
        self.status = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self._send()

    def _send(self) -> None:
        self._reset()
        self.t0 = time.perf_counter()
        assert self.transport is not None
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if not self.in_body:
            self.buf += data
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data = self.buf[:end].lower(), self.buf[end + 4 :]
            self.buf = b""
            self.in_body = True
            self.status = int(head.split(b" ", 2)[1])
            self.chunked = b"transfer-encoding: chunked" in head
            if not self.chunked:
                m = re.search(rb"content-length: *(\d+)", head)
                self.length = int(m.group(1)) if m else 0
        if self.chunked:
            body = self.chunks.feed(data)
            self.ended = self.chunks.ended
        else:
            body = data[: self.length]
            self.length -= len(body)
            self.ended = self.length == 0
        if body:
            self._scan(body, now)
        if self.ended:
            self._finish(now)

    def _scan(self, body: bytes, now: float) -> None:
        events = self.events + body
        start = 0
        while (i := events.find(b"\n\n", start)) >= 0:
            block = events[start:i]
            start = i + 2
            if block.startswith(b"event: "):  # 2023-06-01: the event's name says
                if block.startswith(b"event: content_block_delta") or (
                    block.startswith(b"event: completion") and b'"stop_reason": null' in block
                ):
                    self.stamps.append(now)
                elif block.startswith((b"event: message_stop", b"event: completion")):
                    self.complete = True
            elif b'"stop_reason":null' in block or b'"stop_reason": null' in block:
                self.stamps.append(now)  # a legacy event with text
            elif b"[DONE]" in block:
                self.complete = True
        self.events = events[start:]

    def _finish(self, now: float) -> None:
        stamps = self.stamps
        self.results.append(
            {
                "status": self.status,
                "complete": self.complete or not self.stream,
                "ttft": stamps[0] - self.t0 if stamps else None,
                "gaps": [b - a for a, b in itertools.pairwise(stamps)],
                "total": now - self.t0,
            }
        )
        if now < self.until and len(self.results) < self.count:
            self._send()
        else:
            self._close(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._close("connection closed" if not self.done.done() else None)

    def _close(self, error: str | None) -> None:
        if error is not None and self.error is None:
            self.error = error
        if self.transport is not None:
            self.transport.close()
        if not self.done.done():
            self.done.set_result(None)


def build_request(target: str, path: str, port: int, tokens: int, stream: bool) -> bytes:
    """target: ``direct`` (2023-06-01 to the simulator) or ``proxy`` (2023-01-01 /v1/complete);
    path: ``complete``, ``messages`` or ``passthrough`` (a 2023-06-01 /v1/messages call, which
    the proxy relays as is)."""
    if target == "proxy" and path != "passthrough":
        url, version = "/v1/complete", "2023-01-01"
    elif path == "complete":
        url, version = "/v1/complete", "2023-06-01"
    else:
        url, version = "/v1/messages", "2023-06-01"
    if url == "/v1/complete":
        body: dict[str, Any] = {
            "model": "claude-2.0",
            "prompt": "\n\nHuman: benchmark\n\nAssistant:",
            "max_tokens_to_sample": tokens + 10,
        }
    else:
        body = {
            "model": MESSAGES_MODEL,
            "max_tokens": tokens + 10,
            "messages": [{"role": "user", "content": "benchmark"}],
        }
    body["stream"] = stream
    raw = json.dumps(body).encode()
    head = (
        f"POST {url} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        f"anthropic-version: {version}\r\n"
        "x-api-key: bench\r\n"
        f"x-sim-tokens: {tokens}\r\n"
        f"x-sim-pace: {PACE if stream else 0}\r\n"
        f"x-sim-fault: linger:{LINGER if stream else 0}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(raw)}\r\n"
        "\r\n"
    )
    return head.encode() + raw


async def run_load(args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    request = build_request(args.target, args.path, args.port, args.tokens, not args.plain)
    start = time.perf_counter() + 0.1
    until = start + args.seconds if args.seconds else float("inf")
    count = args.requests or 1 << 60
    # the workers start evenly over one stream's length, as a pool's users would, not in step;
    # fresh connections (the paced case) start over 1 s, as bench/run.py's streams do
    ramp = PACE * (args.tokens + 4) if not args.plain else 0.0
    if args.fresh:
        ramp = 1.0

    async def worker(k: int) -> Conn:
        await asyncio.sleep(max(0.0, start + k * ramp / args.workers - time.perf_counter()))
        done: asyncio.Future[None] = loop.create_future()
        conn = Conn(request, not args.plain, until, count, done)
        try:
            await loop.create_connection(lambda: conn, "127.0.0.1", args.port)
            await asyncio.wait_for(done, args.seconds + 60)
        except (OSError, TimeoutError) as exc:
            conn.error = type(exc).__name__
        return conn

    conns = await asyncio.gather(*(worker(k) for k in range(args.workers)))
    return {
        "wall": time.perf_counter() - start,
        "errors": [c.error for c in conns if c.error],
        # the first request of each connection pays for its set-up: left out, except in the
        # paced case, where every stream has a connection of its own
        "requests": [r for c in conns for r in (c.results if args.fresh else c.results[1:])],
        "answered": sum(len(c.results) for c in conns),
        "load_cpu": resource.getrusage(resource.RUSAGE_SELF)[:2],
    }


# -- the orchestra -------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def wait_port(port: int, within_s: float = 20) -> None:
    import socket

    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"churn: nothing listening on {port}")


def sim_counts(port: int) -> dict[str, int]:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_sim/stats") as r:
        return dict(json.load(r)["by_path"])


class Proxy:
    """The proxy from ``tree`` (this checkout or an exported commit), one upstream path."""

    def __init__(self, tree: Path, sim_port: int, path: str, log: Any) -> None:
        self.port, admin = free_port(), free_port()
        env = {
            **os.environ,
            "LEGACY_PROXY_UPSTREAM_URL": f"http://127.0.0.1:{sim_port}",
            "LEGACY_PROXY_PORT": str(self.port),
            "LEGACY_PROXY_ADMIN_HOST": "127.0.0.1",
            "LEGACY_PROXY_ADMIN_PORT": str(admin),
            "LEGACY_PROXY_LOG_LEVEL": "warning",
            "LEGACY_PROXY_LIMITS_MAX_STREAMS": "20000",
            **PROXY_ENV[path],
        }
        # ``python -m`` puts the working directory first on sys.path: the tree's own code runs
        self.proc = subprocess.Popen([PY, "-m", "proxy"], cwd=tree, env=env, stdout=log, stderr=log)
        wait_port(self.port)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Relay(Proxy):
    """The floor (bench/relay.py): the cheapest aiohttp server-plus-client relay of the same
    requests, no conversion, no limits, logs or metrics: what aiohttp itself costs."""

    def __init__(self, sim_port: int, path: str, log: Any) -> None:
        self.port = free_port()
        argv = [PY, str(ROOT / "bench" / "relay.py"), str(self.port),
                f"http://127.0.0.1:{sim_port}", path]  # fmt: skip
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=log)
        wait_port(self.port)


def load(
    port: int, target: str, path: str, workers: int, seconds: float, tokens: int,
    requests: int = 0, plain: bool = False, tmp: Path = Path("/tmp"), fresh: bool = False,
) -> dict[str, Any]:  # fmt: skip
    out = tmp / "load.json"
    argv = [PY, __file__, "--load", "--port", str(port), "--target", target, "--path", path,
            "--workers", str(workers), "--seconds", str(seconds), "--tokens", str(tokens),
            "--requests", str(requests), "--out", str(out)]  # fmt: skip
    if plain:
        argv.append("--plain")
    if fresh:
        argv.append("--fresh")
    subprocess.run(argv, check=True, timeout=seconds + 120)
    return dict(json.loads(out.read_text()))


def summarize(data: dict[str, Any], expect_status: int = 200) -> dict[str, Any]:
    reqs = data["requests"]
    good = [r for r in reqs if r["status"] == expect_status and r["complete"]]
    return {
        "n": len(reqs),
        "answered": data["answered"],
        "bad": len(reqs) - len(good) + len(data["errors"]),
        "ttft": [r["ttft"] for r in good if r["ttft"] is not None],
        "gaps": [g for r in good for g in r["gaps"]],
        "total": [r["total"] for r in good],
        "rps": data["answered"] / data["wall"],
    }


def export_tree(rev: str, dest: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", rev], check=True, capture_output=True
    ).stdout
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="lsp-churn-"))
    log = open(tmp / "procs.log", "wb")  # noqa: SIM115 (lives as long as the processes)
    builds: dict[str, Path] = {"after": ROOT}
    if args.before:
        builds = {"before": export_tree(args.before, tmp / "before"), "after": ROOT}
    columns = ["relay", *builds] if args.relay else list(builds)
    sim_port = free_port()
    argv = [PY, "-m", "proxy.simulator", "--port", str(sim_port)]
    sim_help = subprocess.run([*argv, "--help"], cwd=ROOT, capture_output=True, text=True).stdout
    if "--text-completions" in sim_help:
        argv.append("--text-completions")  # a simulator that serves /v1/complete only if asked
    sim = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=log)
    wait_port(sim_port)
    out: dict[str, Any] = {
        "churn": {}, "paced": {}, "single": {}, "cpu": {}, "builds": columns,
    }  # fmt: skip
    try:
        for path in ("messages", "complete"):
            proxies = {b: Proxy(tree, sim_port, path, log) for b, tree in builds.items()}
            if args.relay:
                proxies = {"relay": Relay(sim_port, path, log), **proxies}
            try:
                # warm every process up (imports, first connections), then measure in turn
                for port in [sim_port, *(p.port for p in proxies.values())]:
                    load(port, "direct" if port == sim_port else "proxy", path, 4, 0.5,
                         args.tokens, tmp=tmp)  # fmt: skip
                for rnd in range(args.rounds):
                    order = ["direct", *columns] if rnd % 2 == 0 else [*reversed(columns), "direct"]
                    for who in order:
                        port = sim_port if who == "direct" else proxies[who].port
                        target = "direct" if who == "direct" else "proxy"
                        pid = sim.pid if who == "direct" else proxies[who].proc.pid
                        counts0 = sim_counts(sim_port)
                        cpu0 = cpu_seconds(pid)
                        data = load(port, target, path, args.workers, args.seconds,
                                    args.tokens, tmp=tmp)  # fmt: skip
                        cpu = cpu_seconds(pid) - cpu0
                        counts = sim_counts(sim_port)
                        went = {k: v - counts0.get(k, 0) for k, v in counts.items()}
                        went = {k: v for k, v in went.items() if v}
                        want = {f"/v1/{path}": data["answered"]}
                        if went != want:
                            raise SystemExit(
                                f"churn: {who} {path}: upstream saw {went}, not {want}"
                            )
                        s = summarize(data)
                        key = f"{path}/{who}"
                        prev = out["churn"].get(key)
                        if prev:  # rounds pool their samples
                            for k in ("ttft", "gaps", "total"):
                                prev[k] += s[k]
                            for k in ("n", "answered", "bad"):
                                prev[k] += s[k]
                            prev["rps"] = (prev["rps"] + s["rps"]) / 2
                            prev["cpu"] += cpu
                        else:
                            out["churn"][key] = {**s, "cpu": cpu}
                        print(f"churn: {path:<8} {who:<6} {s['n']:>6} requests, "
                              f"ttft p50 {pct(s['ttft'], 50) * 1e3:.2f} ms, "
                              f"p99 {pct(s['ttft'], 99) * 1e3:.2f} ms, "
                              f"gap p99 {pct(s['gaps'], 99) * 1e3:.2f} ms, "
                              f"cpu {cpu * 1e3 / max(1, data['answered']):.3f} ms/request, "
                              f"bad {s['bad']}, load generator CPU "
                              f"{sum(data['load_cpu']) / data['wall'] * 100:.0f} % of a core",
                              flush=True)  # fmt: skip
                # the paced case: 100 streams of 100 tokens at 20 ms, each on a connection of
                # its own, started over 1 s (bench/run.py's latency case), in alternating order
                for rnd in range(args.rounds):
                    order = ["direct", *columns] if rnd % 2 == 0 else [*reversed(columns), "direct"]
                    for who in order:
                        port = sim_port if who == "direct" else proxies[who].port
                        target = "direct" if who == "direct" else "proxy"
                        data = load(port, target, path, args.paced_streams, 0, args.paced_tokens,
                                    requests=1, tmp=tmp, fresh=True)  # fmt: skip
                        s = summarize(data)
                        key = f"{path}/{who}"
                        prev = out["paced"].get(key)
                        if prev:
                            for k in ("ttft", "gaps", "total"):
                                prev[k] += s[k]
                            for k in ("n", "answered", "bad"):
                                prev[k] += s[k]
                        else:
                            out["paced"][key] = s
                        print(
                            f"paced: {path:<8} {who:<6} {s['n']:>4} streams, ttft p50 "
                            f"{pct(s['ttft'], 50) * 1e3:.2f} ms, gap p99 "
                            f"{pct(s['gaps'], 99) * 1e3:.2f} ms, bad {s['bad']}",
                            flush=True,
                        )
                # one at a time: non-streaming completions on this path, and pass-through
                kinds = [("plain", path)] + ([("passthrough", "passthrough")]
                                             if path == "messages" else [])  # fmt: skip
                for name, kind in kinds:
                    for who in ["direct", *columns]:
                        port = sim_port if who == "direct" else proxies[who].port
                        target = "direct" if who == "direct" else "proxy"
                        data = load(port, target, kind, 1, 0, args.tokens,
                                    requests=args.single + 1, plain=True, tmp=tmp)  # fmt: skip
                        key = "passthrough" if name == "passthrough" else f"{path}/plain"
                        out["single"][f"{key}/{who}"] = summarize(data)
            finally:
                for p in proxies.values():
                    p.stop()
    finally:
        sim.send_signal(signal.SIGTERM)
        sim.wait(15)
    return out


# -- the report ----------------------------------------------------------------------------------


def ms(x: float) -> str:
    return f"{x * 1000:.2f}"


def table(r: dict[str, Any]) -> str:
    builds = r["builds"]
    c = r["churn"]
    labels = {"relay": "bare aiohttp relay (floor)", "before": "before", "after": "after"}
    head = "| upstream path | figure | " + " | ".join(labels[b] for b in builds) + " | target |"
    rows = [head, "|---|---|" + "---:|" * len(builds) + "---|"]
    names = {"messages": "Messages (headline)", "complete": "Text Completions"}
    for path in ("messages", "complete"):
        d = c[f"{path}/direct"]

        def added(x: dict[str, Any], key: str, p: float, d: dict[str, Any] = d) -> str:
            return ms(pct(x[key], p) - pct(d[key], p))

        def per_request(x: dict[str, Any]) -> str:
            return f"{x['cpu'] * 1e3 / max(1, x['answered']):.3f}"

        figures = [
            ("added TTFT p50, ms", lambda x: added(x, "ttft", 50), "<= 1"),
            ("added TTFT p99, ms", lambda x: added(x, "ttft", 99), "<= 3"),
            ("added gap p99, ms", lambda x: added(x, "gaps", 99), "<= 1"),
            ("proxy CPU per request, ms", per_request, "<= 0.5"),
            (f"TTFT p50 / p99, ms (direct: {ms(pct(d['ttft'], 50))} / {ms(pct(d['ttft'], 99))})",
             lambda x: f"{ms(pct(x['ttft'], 50))} / {ms(pct(x['ttft'], 99))}", ""),
            (f"gap p99, ms (direct: {ms(pct(d['gaps'], 99))})",
             lambda x: ms(pct(x["gaps"], 99)), ""),
            (f"requests measured (direct: {d['n']:,})", lambda x: f"{x['n']:,}", ""),
            ("failed or incomplete", lambda x: str(x["bad"]), "0"),
        ]  # fmt: skip
        for name, f, target in figures:
            cells = " | ".join(f(c[f"{path}/{b}"]) for b in builds)
            rows.append(f"| {names[path]} | {name} | {cells} | {target} |")
    p = r["paced"]
    for path in ("messages", "complete"):
        d = p[f"{path}/direct"]
        for name, key, q, target in (("added TTFT p50", "ttft", 50, "<= 1"),
                                     ("added gap p99", "gaps", 99, "")):  # fmt: skip
            cells = " | ".join(ms(pct(p[f"{path}/{b}"][key], q) - pct(d[key], q)) for b in builds)
            rows.append(f"| paced, {r['paced_streams']} streams on their own connections, "
                        f"{names[path]} | {name}, ms (direct: {ms(pct(d[key], q))}) | "
                        f"{cells} | {target} |")  # fmt: skip
        cells = " | ".join(str(p[f"{path}/{b}"]["bad"]) for b in builds)
        rows.append(f"| paced, {names[path]} | failed or incomplete | {cells} | 0 |")
    s = r["single"]
    singles = (
        ("messages/plain", "non-streaming completion, Messages"),
        ("complete/plain", "non-streaming completion, Text Completions"),
        ("passthrough", "pass-through (2023-06-01 /v1/messages, not streamed)"),
    )
    for key, label in singles:
        d = s[f"{key}/direct"]
        for p in (50, 99):
            cells = " | ".join(ms(pct(s[f"{key}/{b}"]["total"], p) - pct(d["total"], p))
                               for b in builds)  # fmt: skip
            rows.append(f"| one at a time | {label}: added latency p{p}, ms "
                        f"(direct: {ms(pct(d['total'], p))}) | {cells} | |")  # fmt: skip
    return "\n".join(rows)


def write(r: dict[str, Any], args: argparse.Namespace, path: Path) -> None:
    argv = sys.argv[1:]
    if "--note" in argv:  # the note is printed below, not in the command
        i = argv.index("--note")
        del argv[i : i + 2]
    command = shlex.join([".venv/bin/python", "bench/churn.py", *argv])
    columns = ""
    if args.relay:
        columns += (" Column `bare aiohttp relay (floor)`: bench/relay.py, the cheapest aiohttp"
                    " server-plus-client relay of the same requests (the upstream's events as"
                    " they are: no conversion, limits, logs or metrics), what aiohttp alone"
                    " costs on this machine.")  # fmt: skip
    if args.before:
        columns += f" Columns: `before` is commit {args.before}, `after` this tree."
    section = f"""<!-- churn:start -->
## Churn: short streams back to back on kept-alive connections (`make bench`)

Command: `{command}` (measured {r["date"]}, {r["elapsed"]:.0f} s).

{args.workers} workers, each one kept-alive connection sending its next streaming legacy request
as soon as the previous response ended, {args.rounds} x {args.seconds:g} s per column (the rounds
in alternating order, samples pooled); {args.tokens} tokens per stream; the simulator (its own
process) paces events {PACE * 1000:.0f} ms apart and ends the body {LINGER * 1000:.0f} ms after the
last event. Paired in the same run with the direct path (the simulator asked in 2023-06-01 on its
own endpoint); added = proxy minus direct. TTFT: the request's write to the first event carrying
text. Proxy CPU: /proc/<pid>/stat user + system over the run, divided by the requests answered.
Paced: {args.paced_streams} streams of {args.paced_tokens} tokens at {PACE * 1000:.0f} ms, each on
a new connection, started over 1 s ({args.rounds} rounds, pooled). One at a time: {args.single}
requests on one kept-alive connection. Load average (1/5/15 min)
before the run: {r["load_before"]}; after: {r["load_after"]}.

{textwrap.fill(columns.strip(), 100)}
{args.note}

{table(r)}
<!-- churn:end -->"""
    current = path.read_text() if path.exists() else "# Benchmark results\n\n"
    pattern = re.compile(r"<!-- churn:start -->.*<!-- churn:end -->", re.S)
    if pattern.search(current):
        current = pattern.sub(lambda _: section, current)
    elif "<!-- bench:end -->" in current:
        current = current.replace("<!-- bench:end -->", "<!-- bench:end -->\n\n" + section, 1)
    else:
        current = current.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(current)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=5)
    ap.add_argument("--single", type=int, default=300, help="requests one at a time")
    ap.add_argument("--paced-streams", type=int, default=PACED_STREAMS)
    ap.add_argument("--paced-tokens", type=int, default=PACED_TOKENS)
    ap.add_argument("--before", help="also run the proxy of this commit, side by side")
    ap.add_argument(
        "--no-relay",
        dest="relay",
        action="store_false",
        help="leave out the bare aiohttp relay column (bench/relay.py)",
    )
    ap.add_argument("--write", type=Path, help="replace the churn section of this file")
    ap.add_argument("--note", default="", help="a line for the results (what else was running)")
    # the load process
    ap.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--target", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--requests", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--fresh", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.load:
        import uvloop

        gc.disable()  # one short run, no cycles: a collection would pause every connection
        result = uvloop.run(run_load(args))
        Path(args.out).write_text(json.dumps(result))
        return
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    started = time.monotonic()
    load_before = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    r = run(args)
    r["paced_streams"] = args.paced_streams
    r["load_before"] = load_before
    r["load_after"] = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    r["elapsed"] = time.monotonic() - started
    r["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(table(r))
    if args.write:
        write(r, args, args.write)


if __name__ == "__main__":
    main()
