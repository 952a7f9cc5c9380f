"""make demo: the built-in 2023-06-01 simulator, the proxy in front of it, one legacy request.

    python -m proxy.demo [--once] [--tokens N]

Starts ``python -m proxy.simulator`` on 127.0.0.1:8700 and ``python -m proxy`` on 127.0.0.1:8787
(admin on 8788) pointed at it, sends the same streaming /v1/complete request to both, and prints
the bytes each answered: what the upstream says (2023-06-01) and what a legacy client gets
(2023-01-01). No API key is needed: the simulator accepts any. Without ``--once`` both keep
running until Ctrl-C, so you can try your own client against http://127.0.0.1:8787.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys

import aiohttp

SIM_PORT = 8700
PROXY_PORT = 8787
ADMIN_PORT = 8788
REQUEST = {
    "model": "claude-2.0",
    "prompt": "\n\nHuman: Say hello\n\nAssistant:",
    "max_tokens_to_sample": 50,
    "stream": True,
}


async def _wait_ready(url: str, within_s: float = 15.0) -> None:
    async with aiohttp.ClientSession() as session:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while True:
            try:
                async with session.get(url) as resp:
                    if resp.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            if loop.time() > deadline:
                raise SystemExit(f"demo: {url} did not come up within {within_s:.0f} s")
            await asyncio.sleep(0.1)


async def _post(url: str, version: str) -> bytes:
    headers = {"anthropic-version": version, "x-api-key": "demo-key-not-secret"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=REQUEST, headers=headers) as resp,
    ):
        return await resp.read()


def _show(title: str, body: bytes) -> None:
    print(f"\n\033[1m{title}\033[0m")
    print(body.decode("utf-8", "replace").rstrip("\n"))


async def main(once: bool, tokens: int) -> int:
    env = dict(os.environ)
    env.update(
        LEGACY_PROXY_UPSTREAM_URL=f"http://127.0.0.1:{SIM_PORT}",
        LEGACY_PROXY_HOST="127.0.0.1",
        LEGACY_PROXY_PORT=str(PROXY_PORT),
        LEGACY_PROXY_ADMIN_HOST="127.0.0.1",
        LEGACY_PROXY_ADMIN_PORT=str(ADMIN_PORT),
        LEGACY_PROXY_LOG_FORMAT=env.get("LEGACY_PROXY_LOG_FORMAT", "console"),
    )
    if once:  # keep the printed streams readable; the long-running demo logs every request
        env.setdefault("LEGACY_PROXY_LOG_LEVEL", "warning")
    sim = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy.simulator", "--host", "127.0.0.1", "--port", str(SIM_PORT),
        "--tokens", str(tokens), "--pace", "0.02", "--text-completions",
    )  # fmt: skip
    proxy = await asyncio.create_subprocess_exec(sys.executable, "-m", "proxy", env=env)
    try:
        await _wait_ready(f"http://127.0.0.1:{SIM_PORT}/v1/models")
        await _wait_ready(f"http://127.0.0.1:{ADMIN_PORT}/readyz")
        direct = await _post(f"http://127.0.0.1:{SIM_PORT}/v1/complete", "2023-06-01")
        _show("The upstream (simulator, API 2023-06-01) sends:", direct)
        converted = await _post(f"http://127.0.0.1:{PROXY_PORT}/v1/complete", "2023-01-01")
        _show("Through the proxy, a 2023-01-01 client receives:", converted)
        if not converted.endswith(b"data: [DONE]\n\n"):
            print("demo: the converted stream did not end with [DONE]", file=sys.stderr)
            return 1
        if once:
            return 0
        print(
            f"\nThe proxy is listening on http://127.0.0.1:{PROXY_PORT} (metrics on "
            f"http://127.0.0.1:{ADMIN_PORT}/metrics) in front of the simulator. Ctrl-C stops both."
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        return 0
    finally:
        for p in (proxy, sim):
            if p.returncode is None:
                p.send_signal(signal.SIGTERM)
        for p in (proxy, sim):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(p.wait(), 10)


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--once", action="store_true", help="exit after printing the streams")
    parser.add_argument("--tokens", type=int, default=8)
    args = parser.parse_args()
    raise SystemExit(asyncio.run(main(args.once, args.tokens)))


if __name__ == "__main__":
    run()
