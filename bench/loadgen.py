"""Load generator: C concurrent streaming /v1/complete requests, every event timestamped.

    python bench/loadgen.py URL --concurrency C --tokens N --pace S [--legacy] [--slow-reader]

Runs in its own process (the benchmark starts it), prints one JSON object: per-stream time to the
first event, every gap between events, events received, and whether each stream ended as it
should ([DONE] for legacy streams, the final stop_reason event otherwise). Streams start
within --ramp seconds (1 s by default, evenly spread: real traffic does not arrive in one instant,
and a synchronized burst measures the upstream's accept loop more than the path), and each stream
lasts longer than the ramp, so C streams are in flight at once.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import socket
import time
from typing import Any

import aiohttp


async def one(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    body: dict[str, Any],
    start: asyncio.Event,
    slow: bool,
    delay: float,
) -> dict[str, Any]:
    await start.wait()
    await asyncio.sleep(delay)
    t0 = time.perf_counter()
    stamps: list[float] = []
    received = 0
    tail = b""
    complete = False
    try:
        async with session.post(url, json=body, headers=headers) as resp:
            if resp.status != 200:
                return {"error": f"status {resp.status}"}
            async for chunk in resp.content.iter_any():
                now = time.perf_counter()
                received += len(chunk)
                data = tail + chunk
                n = data.count(b"\n\n")
                stamps.extend([now] * n)
                tail = data[data.rfind(b"\n\n") + 2 :] if n else data
                if b"[DONE]" in chunk or b'"stop_reason": "' in chunk:
                    complete = True
                if slow:
                    await asyncio.sleep(0.25)  # a client that reads far slower than events come
    except aiohttp.ClientError as exc:
        return {"error": type(exc).__name__, "events": len(stamps)}
    if not stamps:
        return {"error": "no events"}
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    return {
        "ttfe": stamps[0] - t0,
        "gaps": gaps,
        "events": len(stamps),
        "bytes": received,
        "complete": complete,
        "duration": stamps[-1] - t0,
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    headers = {
        "anthropic-version": "2023-01-01" if args.legacy else "2023-06-01",
        "x-api-key": "bench",
        "x-sim-tokens": str(args.tokens),
        "x-sim-pace": str(args.pace),
    }
    body = {
        "model": "claude-2.0",
        "prompt": "\n\nHuman: benchmark\n\nAssistant:",
        "max_tokens_to_sample": args.tokens + 10,
        "stream": True,
    }

    def small_receive_buffer(addr_info: Any) -> socket.socket:
        # A slow reader on loopback is not slow enough: the kernel's auto-tuned buffers (several
        # MB each way) would swallow a whole stream before the proxy saw any backpressure. A
        # 16 KiB receive buffer behaves like a slow link.
        family, type_, proto, _, _ = addr_info
        sock = socket.socket(family, type_, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        return sock

    connector = aiohttp.TCPConnector(
        limit=0, socket_factory=small_receive_buffer if args.slow_reader else None
    )
    timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
    start = asyncio.Event()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        c = args.concurrency
        tasks = [
            asyncio.create_task(
                one(session, args.url, headers, body, start, args.slow_reader, i * args.ramp / c)
            )
            for i in range(c)
        ]
        await asyncio.sleep(0.2)
        t0 = time.perf_counter()
        start.set()
        results = await asyncio.gather(*tasks)
        wall = time.perf_counter() - t0
    return {"wall": wall, "streams": results}


if __name__ == "__main__":
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
    print(json.dumps(asyncio.run(main(ap.parse_args()))))
