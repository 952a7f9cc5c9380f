"""Soak client (its own process): W workers, each opening legacy streams back to back through the
proxy until the deadline, checking every stream's final text. Prints one JSON line."""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp

from proxy.simulator import expected_text


async def worker(session: aiohttp.ClientSession, url: str, tokens: int, pace: float,
                 deadline: float, stats: dict[str, int]) -> None:  # fmt: skip
    headers = {"anthropic-version": "2023-01-01", "x-api-key": "soak",
               "x-sim-tokens": str(tokens), "x-sim-pace": str(pace)}  # fmt: skip
    body = {"model": "claude-2.0", "prompt": "\n\nHuman: soak\n\nAssistant:", "stream": True,
            "max_tokens_to_sample": tokens + 10}  # fmt: skip
    want = json.dumps(expected_text(tokens), ensure_ascii=False, separators=(",", ":")).encode()
    while time.monotonic() < deadline:
        try:
            async with session.post(url, json=body, headers=headers) as r:
                data = await r.read()
        except aiohttp.ClientError:
            stats["errors"] += 1
            continue
        last = data.rstrip(b"\n").split(b"\n\n")
        final = b'data: {"completion":' + want + b',"stop_reason":"'
        if r.status == 200 and last[-1] == b"data: [DONE]" and last[-2].startswith(final):
            stats["complete"] += 1
        else:
            stats["incomplete"] += 1


async def main(args: argparse.Namespace) -> None:
    stats = {"complete": 0, "incomplete": 0, "errors": 0}
    deadline = time.monotonic() + args.seconds
    timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as s:

        async def staggered(i: int) -> None:
            await asyncio.sleep(i * args.ramp / args.workers)
            await worker(s, args.url, args.tokens, args.pace, deadline, stats)

        await asyncio.gather(*(staggered(i) for i in range(args.workers)))
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--workers", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--tokens", type=int, default=40)
    ap.add_argument("--pace", type=float, default=0.1)
    ap.add_argument("--ramp", type=float, default=2.0)
    asyncio.run(main(ap.parse_args()))
