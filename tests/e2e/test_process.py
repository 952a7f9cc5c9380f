"""The real `python -m proxy` process: disconnects, SIGTERM drain, and the drain deadline.

pytest-aiohttp's TestServer always turns handler_cancellation on, so a disconnect or shutdown test
run through it would pass even if the real entry point forgot the flag: these start the process.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import socket
import sys
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.scripted import FINAL, ScriptedUpstream, Stream, completion

ROOT = Path(__file__).resolve().parents[2]
LEGACY = {"anthropic-version": "2023-01-01", "x-api-key": "test-key-not-a-real-key"}
BODY = {"model": "claude-2.0", "prompt": "\n\nHuman: hi\n\nAssistant:", "stream": True}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def slow_legacy_stream(
    port: int, body: dict[str, Any]
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Send a legacy streaming request from a client whose receive buffer is 4 KiB, set before it
    connects so the window it offers stays small whatever the kernel's autotuning: a client that
    stops reading is felt by the proxy at once."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=sock)
    data = json.dumps(body).encode()
    head = "".join(f"{k}: {v}\r\n" for k, v in LEGACY.items())
    writer.write(
        f"POST /v1/complete HTTP/1.1\r\nHost: x\r\n{head}Content-Length: {len(data)}\r\n\r\n"
        .encode() + data
    )  # fmt: skip
    return reader, writer


class ProxyProcess:
    def __init__(self, proc: asyncio.subprocess.Process, port: int, admin: int) -> None:
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"
        self.admin = f"http://127.0.0.1:{admin}"

    async def output(self) -> str:
        assert self.proc.stdout is not None
        return (await self.proc.stdout.read()).decode()


async def start_proxy(
    upstream_url: str, *, nofile: tuple[int, int] | None = None, **env: str
) -> ProxyProcess:
    """The real process, settings as LEGACY_PROXY_<KEY>=value; ``nofile``: its (soft, hard)
    RLIMIT_NOFILE. These tests' scripted upstream speaks Text Completions, so /v1/complete stays
    there unless a test says otherwise."""
    env.setdefault("complete_upstream", "complete")
    port, admin = free_port(), free_port()
    environ = {
        **os.environ,
        "LEGACY_PROXY_UPSTREAM_URL": upstream_url,
        "LEGACY_PROXY_PORT": str(port),
        "LEGACY_PROXY_ADMIN_HOST": "127.0.0.1",
        "LEGACY_PROXY_ADMIN_PORT": str(admin),
        "LEGACY_PROXY_LOG_FORMAT": "json",
        **{f"LEGACY_PROXY_{k.upper()}": v for k, v in env.items()},
    }
    limit = None if nofile is None else partial(resource.setrlimit, resource.RLIMIT_NOFILE, nofile)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", cwd=ROOT, env=environ,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, preexec_fn=limit,
    )  # fmt: skip
    p = ProxyProcess(proc, port, admin)
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.get(p.admin + "/readyz") as r:
                    if r.status == 200:
                        return p
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)
    proc.kill()
    raise AssertionError("proxy did not become ready: " + await p.output())


async def stop(p: ProxyProcess) -> int:
    if p.proc.returncode is None:
        p.proc.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(p.proc.wait(), 40)


async def test_client_that_leaves_cancels_the_upstream_request(
    upstream: tuple[ScriptedUpstream, str],
) -> None:
    up, url = upstream
    up.script = Stream([completion(" Hello"), "stall"])
    p = await start_proxy(url)
    try:
        async with aiohttp.ClientSession() as session:
            resp = await session.post(p.url + "/v1/complete", json=BODY, headers=LEGACY)
            await resp.content.readuntil(b"\n\n")
            assert up.open_streams == 1
            resp.close()  # the client leaves mid-stream
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await asyncio.wait_for(up.disconnected.wait(), 1.0)  # within one second
        assert loop.time() - t0 < 1.0
        assert up.disconnects == 1
    finally:
        assert await stop(p) == 0
    log = await p.output()
    assert '"outcome": "client_gone"' in log


async def test_sigterm_drains_streams_in_flight(upstream: tuple[ScriptedUpstream, str]) -> None:
    up, url = upstream
    up.script = Stream([item for _ in range(10) for item in (completion(" w"), 0.1)] + [FINAL])
    p = await start_proxy(url, shutdown_drain_seconds="10")
    n = 20
    async with aiohttp.ClientSession() as session:

        async def one() -> bytes:
            async with session.post(p.url + "/v1/complete", json=BODY, headers=LEGACY) as r:
                return await r.read()

        tasks = [asyncio.create_task(one()) for _ in range(n)]
        while up.open_streams < n:  # noqa: ASYNC110 (a counter in another server)
            await asyncio.sleep(0.01)
        p.proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.2)
        async with session.get(p.admin + "/readyz") as r:
            assert r.status == 503  # draining: taken out of the load balancer
        bodies = await asyncio.gather(*tasks)
    assert await asyncio.wait_for(p.proc.wait(), 20) == 0
    for body in bodies:
        assert body.endswith(b"data: [DONE]\n\n")
        assert b'"completion":" w w w w w w w w w w"' in body


async def test_streams_open_at_the_drain_deadline_end_with_a_legacy_error(
    upstream: tuple[ScriptedUpstream, str],
) -> None:
    up, url = upstream
    up.script = Stream([completion(" Hello"), "stall"])
    p = await start_proxy(url, shutdown_drain_seconds="0.5")
    async with aiohttp.ClientSession() as session:
        resp = await session.post(p.url + "/v1/complete", json=BODY, headers=LEGACY)
        await resp.content.readuntil(b"\n\n")
        p.proc.send_signal(signal.SIGTERM)
        data = b""
        with pytest.raises(aiohttp.ClientPayloadError):  # cut, not a clean end
            async for chunk in resp.content.iter_any():
                data += chunk
        resp.close()
    assert b"[DONE]" not in data
    assert b'"exception":"api_error: proxy shut down before the stream finished"' in data
    assert await asyncio.wait_for(p.proc.wait(), 20) == 0


async def test_at_the_drain_deadline_every_request_ends_and_the_process_exits_0(
    upstream: tuple[ScriptedUpstream, str],
) -> None:
    """Three requests the deadline must end, each its own way: a converted stream whose client
    has stopped reading (the upstream already read to the end, the writer blocked), a request
    still waiting for upstream headers (503), a relayed modern stream (cut)."""
    up, url = upstream
    up.by_path = {
        # a final snapshot (4.8 MB) larger than the kernel send buffer can take (tcp_wmem: 4 MiB)
        "/v1/complete": Stream([completion(" " + "x" * 4000) for _ in range(1200)] + [FINAL]),
        "/v1/messages": Stream([FINAL], delay_headers=60.0),
        "/v1/relayed": Stream([b"event: x\ndata: {}\n\n", "stall"]),
    }
    p = await start_proxy(url, shutdown_drain_seconds="1")
    port = int(p.url.rsplit(":", 1)[1])
    _reader, writer = await slow_legacy_stream(port, BODY)  # and it never reads
    modern = {"anthropic-version": "2023-06-01", "x-api-key": "test-key-not-a-real-key"}
    async with aiohttp.ClientSession() as session:
        waiting = asyncio.create_task(session.post(p.url + "/v1/messages", json={}, headers=modern))
        relayed = await session.get(p.url + "/v1/relayed", headers=modern)
        await relayed.content.readuntil(b"\n\n")
        while len(up.seen) < 3:  # noqa: ASYNC110 (a list in another server)
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)  # the converted stream has read its upstream to the end
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        p.proc.send_signal(signal.SIGTERM)
        answer = await asyncio.wait_for(waiting, 10)
        assert answer.status == 503 and answer.headers.get("Connection") == "close"
        assert (await answer.json())["error"]["type"] == "api_error"
        with pytest.raises(aiohttp.ClientPayloadError):  # cut, not a clean end
            await relayed.read()
        assert await asyncio.wait_for(p.proc.wait(), 10) == 0
        assert loop.time() - t0 < 1 + 4  # the deadline, then moments: not aiohttp's own waits
    writer.close()
    log = await p.output()
    assert "Traceback" not in log and "Unclosed" not in log, log[-3000:]
    done = [json.loads(line) for line in log.splitlines() if '"request.done"' in line]
    assert {(d["route"], d["outcome"], d["error"]) for d in done} == {
        ("complete", "stream_error", "drain_deadline"),
        ("messages", "overloaded", "the proxy shut down before the upstream answered; retry"),
        ("other", "stream_error", "drain_deadline"),
    }
