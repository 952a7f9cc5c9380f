"""Proxy memory: RSS idle, and per open converted stream (issue 7 target: <= 60 MB idle and
<= 64 KiB per open stream beyond the text itself).

    python bench/memory.py [--streams 500] [--write bench/RESULTS.md]

Starts the simulator (paced, so streams stay open) and `python -m proxy` as separate processes on
loopback, opens N streams through the proxy, reads the first event of each and measures the
proxy's RSS from /proc. The text held per stream at that point is a few bytes, so the figure is
the proxy's own cost per stream.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    m = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    assert m
    return int(m.group(1)) * 1024


async def wait_ready(url: str) -> None:
    async with aiohttp.ClientSession() as s:
        for _ in range(300):
            try:
                async with s.get(url) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


async def main(n: int) -> dict[str, float]:
    sim_port, port, admin = free_port(), free_port(), free_port()
    sim = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "proxy.simulator",
        "--text-completions",
        "--port",
        str(sim_port),
        "--tokens",
        "600",
        "--pace",
        "0.1",
        cwd=ROOT,
    )
    env = {
        **os.environ,
        "LEGACY_PROXY_UPSTREAM_URL": f"http://127.0.0.1:{sim_port}",
        "LEGACY_PROXY_PORT": str(port),
        "LEGACY_PROXY_ADMIN_PORT": str(admin),
        "LEGACY_PROXY_ADMIN_HOST": "127.0.0.1",
        "LEGACY_PROXY_LOG_LEVEL": "warning",
    }
    proxy = await asyncio.create_subprocess_exec(sys.executable, "-m", "proxy", cwd=ROOT, env=env)
    try:
        await wait_ready(f"http://127.0.0.1:{admin}/readyz")
        await wait_ready(f"http://127.0.0.1:{sim_port}/v1/models")
        headers = {"anthropic-version": "2023-01-01", "x-api-key": "bench"}
        body = {
            "prompt": "\n\nHuman: hi\n\nAssistant:",
            "model": "claude-2.0",
            "stream": True,
            "max_tokens_to_sample": 600,
        }
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            warm = await session.post(
                f"http://127.0.0.1:{port}/v1/complete",
                json=body,
                headers={**headers, "x-sim-tokens": "3"},
            )
            await warm.read()
            await asyncio.sleep(1.0)
            idle = rss_bytes(proxy.pid)
            responses = []
            for _ in range(n):
                responses.append(
                    await session.post(
                        f"http://127.0.0.1:{port}/v1/complete", json=body, headers=headers
                    )
                )
            for r in responses:
                await r.content.readuntil(b"\n\n")
            await asyncio.sleep(0.5)
            loaded = rss_bytes(proxy.pid)
            for r in responses:
                r.close()
    finally:
        for p in (proxy, sim):
            p.send_signal(signal.SIGTERM)
        for p in (proxy, sim):
            await p.wait()
    return {
        "idle_mb": idle / 1e6,
        "loaded_mb": loaded / 1e6,
        "per_stream_kib": (loaded - idle) / n / 1024,
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, default=500)
    ap.add_argument("--write", type=Path)
    args = ap.parse_args()
    r = asyncio.run(main(args.streams))
    line = (
        f"idle RSS {r['idle_mb']:.1f} MB; with {args.streams} open converted streams "
        f"{r['loaded_mb']:.1f} MB, {r['per_stream_kib']:.1f} KiB per stream"
    )
    print(line)
    if args.write:
        section = "\n".join(
            [
                "<!-- memory:start -->",
                "## Resources (`make bench-memory`)",
                "",
                f"Command: `.venv/bin/python bench/memory.py --streams {args.streams} --write "
                f"bench/RESULTS.md` (measured {time.strftime('%Y-%m-%d')}; RSS of the proxy "
                "process from /proc, simulator and client in other processes).",
                "",
                f"- {line}.",
                "- Targets (issue 7): at most 60 MB idle and at most 64 KiB per open stream beyond "
                "the text itself.",
                "- deploy/kubernetes/deployment.yaml requests 96 Mi (idle plus room for a few "
                "hundred streams) and limits 256 Mi; raise the limit by the per-stream figure "
                "times the streams you expect, plus the longest texts (the core holds each "
                "stream's text once).",
                "<!-- memory:end -->",
            ]
        )
        text = args.write.read_text()
        pattern = re.compile(r"<!-- memory:start -->.*<!-- memory:end -->", re.S)
        text = pattern.sub(section, text) if pattern.search(text) else text + "\n" + section + "\n"
        args.write.write_text(text)
