"""The simulator speaks 2023-06-01 faithfully (it is the other side of every end-to-end test)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from proxy.simulator import SIM_STATS_KEY, SimConfig, create_app, expected_text

KEY = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
BODY = {"model": "claude-2.0", "prompt": "\n\nHuman: hi\n\nAssistant:", "stream": True,
        "max_tokens_to_sample": 100}  # fmt: skip


def parse(body: bytes) -> list[tuple[str, Any]]:
    out = []
    for block in body.decode().replace("\r\n", "\n").replace("\r", "\n").split("\n\n"):
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        if data:
            out.append((name, json.loads("\n".join(data))))
    return out


async def client(**config: Any) -> TestClient[Any, Any]:
    c = TestClient(TestServer(create_app(SimConfig(**config)), host="127.0.0.1"))
    await c.start_server()
    return c


async def test_completion_stream_shape() -> None:
    c = await client(tokens=3, text_completions=True)
    resp = await c.post("/v1/complete", json=BODY, headers=KEY)
    body = await resp.read()
    assert resp.headers["Content-Type"] == "text/event-stream"
    assert body.startswith(
        b'event: completion\ndata: {"type": "completion", "completion": " Hello", '
        b'"stop_reason": null, "model": "claude-2.0"}\n\n'
    )
    events = parse(body)
    assert [n for n, _ in events] == ["completion"] * 4
    assert "".join(e["completion"] for _, e in events) == expected_text(3)
    assert events[-1][1]["stop_reason"] == "stop_sequence" and events[-1][1]["stop"] == "\n\nHuman:"
    assert b"[DONE]" not in body
    await c.close()


async def test_faults_and_stats() -> None:
    c = await client(tokens=5, text_completions=True)
    body = await (
        await c.post("/v1/complete", json=BODY, headers={**KEY, "x-sim-fault": "error-after:2"})
    ).read()
    names = [n for n, _ in parse(body)]
    assert names == ["completion", "completion", "error"]
    resp = await c.post("/v1/complete", json=BODY, headers={**KEY, "x-sim-fault": "status:429"})
    assert resp.status == 429 and resp.headers["retry-after"] == "7"
    assert (await resp.json())["error"]["type"] == "rate_limit_error"
    resp = await c.post("/v1/complete", json=BODY, headers={"anthropic-version": "2023-01-01"})
    assert resp.status == 401
    stats = await (await c.get("/_sim/stats")).json()
    assert (
        stats["requests"] == 3 and stats["last_requests"][-1]["anthropic_version"] == "2023-01-01"
    )
    await c.close()


async def test_client_disconnect_is_counted() -> None:
    c = await client(tokens=5, text_completions=True)
    resp = await c.post("/v1/complete", json=BODY, headers={**KEY, "x-sim-fault": "stall-after:1"})
    await resp.content.readuntil(b"\n\n")
    resp.close()
    await c.app[SIM_STATS_KEY].wait_disconnects(1, within_s=1.0)
    await c.close()


async def test_messages_stream_order() -> None:
    c = await client(tokens=2)
    req = {"model": "claude-haiku-4-5", "max_tokens": 50, "stream": True,
           "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
    body = await (await c.post("/v1/messages", json=req, headers=KEY)).read()
    assert [n for n, _ in parse(body)] == [
        "message_start", "content_block_start", "ping", "content_block_delta",
        "content_block_delta", "content_block_stop", "message_delta", "message_stop",
    ]  # fmt: skip
    await c.close()


def test_cli_help() -> None:
    out = subprocess.run([sys.executable, "-m", "proxy.simulator", "--help"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert "--pace" in out.stdout
