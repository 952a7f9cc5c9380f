"""make demo: the built-in 2023-06-01 simulator, the proxy in front of it, one legacy request.

    python -m proxy.demo [--once] [--tokens N] [--port 8787] [--admin-port 8788]
                         [--sim-port 8700]

Starts the simulator on 127.0.0.1:8700 and ``python -m proxy`` on 127.0.0.1:8787 (admin on 8788)
pointed at it through a small recording tap, sends ONE streaming /v1/complete request as a
2023-01-01 client, and prints the bytes of that one exchange on both sides: what the upstream
sent the proxy (as the tap recorded it, whatever route the proxy used) and what the legacy client
received. No API key is needed: the simulator accepts any. Without ``--once`` everything keeps
running until Ctrl-C, so you can try your own client against http://127.0.0.1:8787.

If the proxy cannot start (a port in use, say), its own one-line message is on stderr and the
demo stops at once with the proxy's exit status.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from proxy.simulator import SimConfig
from proxy.simulator import create_app as create_simulator

SIM_PORT = 8700
PROXY_PORT = 8787
ADMIN_PORT = 8788
REQUEST = {
    "model": "claude-2.0",
    "prompt": "\n\nHuman: Say hello\n\nAssistant:",
    "max_tokens_to_sample": 50,
    "stream": True,
}
# headers that belong to one connection, not to the message (RFC 9110 section 7.6.1)
_HOP: frozenset[str] = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "upgrade", "te"}
)


class DemoError(Exception):
    """Something the demo cannot go on without; the message is for the person running it."""


@dataclass
class Exchange:
    method: str
    path: str
    status: int = 0
    body: bytearray = field(default_factory=bytearray)


class Tap:
    """An HTTP relay between the proxy and the simulator that records every response body as the
    upstream sent it. It sits at the HTTP level, so it shows whatever the proxy asked for
    (/v1/complete today, /v1/messages when the proxy serves completions through Messages)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.exchanges: list[Exchange] = []
        self._session: aiohttp.ClientSession | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.relay)
        app.cleanup_ctx.append(self._session_ctx)
        return app

    async def _session_ctx(self, _: web.Application) -> AsyncIterator[None]:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        yield
        await self._session.close()

    async def relay(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        exchange = Exchange(request.method, request.path_qs)
        self.exchanges.append(exchange)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with self._session.request(
            request.method,
            self.upstream + request.path_qs,
            headers=headers,
            data=await request.read(),
            allow_redirects=False,
        ) as upstream:
            exchange.status = upstream.status
            response = web.StreamResponse(status=upstream.status)
            for k, v in upstream.headers.items():
                if k.lower() not in _HOP:
                    response.headers.add(k, v)
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                exchange.body += chunk
                await response.write(chunk)
            await response.write_eof()
            return response


async def _wait_ready(url: str, proxy: asyncio.subprocess.Process, within_s: float = 15.0) -> None:
    """Until ``url`` answers; a proxy that exits meanwhile ends the wait at once."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    async with aiohttp.ClientSession() as session:
        while True:
            if proxy.returncode is not None:
                raise DemoError(
                    f"demo: the proxy exited with status {proxy.returncode} at start-up "
                    "(its own message is the line above)"
                )
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url) as resp:
                    if resp.status < 500:
                        return
            if loop.time() > deadline:
                raise DemoError(f"demo: {url} did not come up within {within_s:.0f} s")
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


async def _serve(app: web.Application, port: int, what: str) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise DemoError(f"demo: the {what} cannot listen on 127.0.0.1:{port}: {reason}") from None
    return runner, int(runner.addresses[0][1])


async def main(
    once: bool, tokens: int, port: int = PROXY_PORT, admin_port: int = ADMIN_PORT,
    sim_port: int = SIM_PORT,
) -> int:  # fmt: skip
    runners: list[web.AppRunner] = []
    proxy: asyncio.subprocess.Process | None = None
    try:
        # a ping every 3 events, so the demo shows what becomes of one
        sim = create_simulator(SimConfig(tokens=tokens, pace=0.02, ping_every=3))
        runner, _ = await _serve(sim, sim_port, "simulator")
        runners.append(runner)
        tap = Tap(f"http://127.0.0.1:{sim_port}")
        runner, tap_port = await _serve(tap.app(), 0, "recording tap")
        runners.append(runner)

        env = dict(os.environ)
        env.update(
            LEGACY_PROXY_UPSTREAM_URL=f"http://127.0.0.1:{tap_port}",
            LEGACY_PROXY_HOST="127.0.0.1",
            LEGACY_PROXY_PORT=str(port),
            LEGACY_PROXY_ADMIN_HOST="127.0.0.1",
            LEGACY_PROXY_ADMIN_PORT=str(admin_port),
            LEGACY_PROXY_LOG_FORMAT=env.get("LEGACY_PROXY_LOG_FORMAT", "console"),
        )
        if once:  # keep the printed streams readable; the long-running demo logs every request
            env.setdefault("LEGACY_PROXY_LOG_LEVEL", "warning")
        proxy = await asyncio.create_subprocess_exec(sys.executable, "-m", "proxy", env=env)
        await _wait_ready(f"http://127.0.0.1:{admin_port}/readyz", proxy)

        converted = await _post(f"http://127.0.0.1:{port}/v1/complete", "2023-01-01")
        print(
            "One streaming request from a 2023-01-01 client: POST /v1/complete, "
            f"model {REQUEST['model']}."
        )
        for ex in tap.exchanges:
            _show(
                f"What the upstream (simulator, API 2023-06-01) sent the proxy, "
                f"{ex.method} {ex.path} -> {ex.status}:",
                bytes(ex.body),
            )
        _show("What the legacy client received from the proxy, for that same request:", converted)
        if not converted.endswith(b"data: [DONE]\n\n"):
            print("demo: the converted stream did not end with [DONE]", file=sys.stderr)
            return 1
        if once:
            return 0
        print(
            f"\nThe proxy is listening on http://127.0.0.1:{port} (metrics on "
            f"http://127.0.0.1:{admin_port}/metrics) in front of the simulator. Ctrl-C stops both."
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        return 0
    except DemoError as exc:
        print(exc, file=sys.stderr)
        return proxy.returncode if proxy is not None and proxy.returncode else 1
    finally:
        if proxy is not None and proxy.returncode is None:
            proxy.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proxy.wait(), 10)
        for runner in reversed(runners):
            await runner.cleanup()


def run() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--once", action="store_true", help="exit after printing the streams")
    parser.add_argument("--tokens", type=int, default=5)
    parser.add_argument("--port", type=int, default=PROXY_PORT, help="the proxy's traffic port")
    parser.add_argument("--admin-port", type=int, default=ADMIN_PORT, help="the proxy's admin port")
    parser.add_argument("--sim-port", type=int, default=SIM_PORT, help="the simulator's port")
    args = parser.parse_args()
    raise SystemExit(
        asyncio.run(main(args.once, args.tokens, args.port, args.admin_port, args.sim_port))
    )


if __name__ == "__main__":
    run()
