"""Load generator: C concurrent streaming /v1/complete requests, every event timestamped.

    python bench/loadgen.py URL --concurrency C --tokens N --pace S [--legacy] [--slow-reader]
                            [--ramp 1.0] [--procs 1]

Runs in its own process (the benchmark starts it), prints one JSON object: per-stream time to the
first event, every gap between events, events received, and whether each stream ended as it
should ([DONE] for legacy streams, the final stop_reason event otherwise, then the chunked body's
terminator). Streams start within --ramp seconds (1 s by default, evenly spread: real traffic does
not arrive in one instant, and a synchronized burst measures the upstream's accept loop more than
the path), and each stream lasts longer than the ramp, so C streams are in flight at once.

It is a measuring instrument sharing two cores with what it measures, so it is built to cost as
little as possible: one raw asyncio Protocol per stream on uvloop (no HTTP client library), a
pre-encoded request, one clock reading per socket read, events counted by scanning the de-chunked
body for the blank line that ends each event, and the cyclic garbage collector off (the process
lives for one run and its data holds no cycles; a full collection over thousands of streams
would pause every stream at once and show up as a stall of the path measured). With --procs N the
streams are dealt round-robin to N processes that share one start time (perf_counter is
CLOCK_MONOTONIC, the same clock in every process).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any
from urllib.parse import urlsplit

from chunked import Dechunker  # bench/chunked.py: the scripts run with bench/ on sys.path

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency of the package
    uvloop = None  # type: ignore[assignment]


class Stream(asyncio.Protocol):
    """One streaming request on its own connection: HTTP/1.1, chunked response body."""

    def __init__(self, request: bytes, legacy: bool, slow: bool, done: asyncio.Future[None]):
        self.request = request
        self.done_marker = b"[DONE]" if legacy else b'"stop_reason": "'
        self.slow = slow
        self.done = done
        self.transport: asyncio.Transport | None = None
        self.head = b""  # response head, until the blank line
        self.status = 0
        self.in_body = False
        self.chunks = Dechunker()
        self.tail = b""  # the body's last bytes, for a blank line or marker cut between reads
        self.stamps: list[float] = []
        self.received = 0
        self.complete = False
        self.error: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self.transport.write(self.request)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self.received += len(data)
        if not self.in_body:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data = self.head[:end], self.head[end + 4 :]
            self.head = b""
            self.in_body = True
            self.status = int(head.split(b" ", 2)[1])
            if self.status != 200:
                self._finish(f"status {self.status}")
                return
            if b"transfer-encoding: chunked" not in head.lower():
                self._finish("response is not chunked")
                return
        body = self.chunks.feed(data)
        if body:
            scan = self.tail + body
            n = scan.count(b"\n\n") - self.tail.count(b"\n\n")
            if n:
                self.stamps.extend([now] * n)
            if self.done_marker in scan:
                self.complete = True
            self.tail = scan[-32:]
        if self.chunks.ended:
            self._finish(None)
        elif self.slow and body and self.transport is not None:
            # a client that reads far slower than events come (its small receive buffer fills)
            self.transport.pause_reading()
            asyncio.get_running_loop().call_later(0.25, self._resume)

    def _resume(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self._finish("connection closed before the end of the body")

    def _finish(self, error: str | None) -> None:
        self.error = error
        if self.transport is not None:
            self.transport.close()
        if not self.done.done():
            self.done.set_result(None)


async def one(
    host: str, port: int, request: bytes, args: argparse.Namespace, at: float
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, at - time.perf_counter()))
    t0 = time.perf_counter()
    done: asyncio.Future[None] = loop.create_future()
    proto = Stream(request, args.legacy, args.slow_reader, done)
    try:
        if args.slow_reader:
            # A slow reader on loopback is not slow enough: the kernel's auto-tuned buffers
            # (several MB each way) would swallow a whole stream before the proxy saw any
            # backpressure. A 16 KiB receive buffer behaves like a slow link.
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            sock.setblocking(False)
            await loop.sock_connect(sock, (host, port))
            await loop.create_connection(lambda: proto, sock=sock)
        else:
            await loop.create_connection(lambda: proto, host, port)
        await asyncio.wait_for(done, 300)
    except (OSError, TimeoutError) as exc:
        return {"error": type(exc).__name__, "events": len(proto.stamps)}
    stamps = proto.stamps
    if proto.error is not None:
        return {"error": proto.error, "events": len(stamps)}
    if not stamps:
        return {"error": "no events"}
    return {
        "ttfe": round(stamps[0] - t0, 6),
        "gaps": [round(b - a, 6) for a, b in itertools.pairwise(stamps)],
        "events": len(stamps),
        "bytes": proto.received,
        "complete": proto.complete,
        "duration": stamps[-1] - t0,
    }


def build_request(args: argparse.Namespace, host: str, port: int, path: str) -> bytes:
    body = json.dumps(
        {
            "model": "claude-2.0",
            "prompt": "\n\nHuman: benchmark\n\nAssistant:",
            "max_tokens_to_sample": args.tokens + 10,
            "stream": True,
        }
    ).encode()
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        f"anthropic-version: {'2023-01-01' if args.legacy else '2023-06-01'}\r\n"
        "x-api-key: bench\r\n"
        f"x-sim-tokens: {args.tokens}\r\n"
        f"x-sim-pace: {args.pace}\r\n"
        "Content-Type: application/json\r\n"
        "Accept: text/event-stream\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode() + body


async def run_part(args: argparse.Namespace, start_at: float) -> dict[str, Any]:
    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    request = build_request(args, host, port, url.path or "/")
    c = args.concurrency
    mine = range(args.part, c, args.parts)
    results = await asyncio.gather(
        *(one(host, port, request, args, start_at + i * args.ramp / c) for i in mine)
    )
    return {"wall": time.perf_counter() - start_at, "streams": results}


def run_procs(args: argparse.Namespace) -> dict[str, Any]:
    """Deal the streams to --procs processes sharing one start time; merge what they print."""
    start_at = time.perf_counter() + 0.3 + 0.1 * args.procs  # time for them all to start
    argv = [sys.executable, __file__, *sys.argv[1:], "--parts", str(args.procs),
            "--start-at", repr(start_at)]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        outs = [os.path.join(tmp, f"part{k}.json") for k in range(args.procs)]
        children = [
            subprocess.Popen([*argv, "--part", str(k), "--out", outs[k]]) for k in range(args.procs)
        ]
        for child in children:
            child.wait()
        parts = []
        for name in outs:
            with open(name) as f:
                parts.append(json.load(f))
    streams: list[Any] = []
    for k, part in enumerate(parts):
        for j, s in enumerate(part["streams"]):
            streams.append((k + j * args.procs, s))
    return {
        "wall": max(p["wall"] for p in parts),
        "streams": [s for _, s in sorted(streams, key=lambda x: x[0])],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--concurrency", type=int, default=100)
    ap.add_argument("--tokens", type=int, default=40)
    ap.add_argument("--pace", type=float, default=0.02)
    ap.add_argument("--legacy", action="store_true", help="send anthropic-version 2023-01-01")
    ap.add_argument("--slow-reader", action="store_true")
    ap.add_argument(
        "--ramp",
        type=float,
        default=1.0,
        help="start the streams evenly over this many seconds (not all in one instant)",
    )
    ap.add_argument("--procs", type=int, default=1, help="load generator processes")
    ap.add_argument("--out", help="write the JSON result to this file instead of stdout")
    ap.add_argument("--part", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--parts", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--start-at", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    gc.disable()
    if args.part is None and args.procs > 1:
        out = run_procs(args)
    else:
        args.part = args.part or 0
        start_at = args.start_at if args.start_at is not None else time.perf_counter() + 0.2
        runner = uvloop.run if uvloop is not None else asyncio.run
        out = runner(run_part(args, start_at))
    if args.out:
        # a file, not a pipe: at 1,500 streams the result (~1 MB) written to a pipe arrived cut
        # short at a 64 KiB boundary now and then
        with open(args.out, "w") as f:
            json.dump(out, f)
    else:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
