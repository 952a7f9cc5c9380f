"""The proxy app end to end: real HTTP in, a scripted 2023-06-01 upstream behind it."""

from __future__ import annotations

import asyncio
import gzip
import json
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiohttp_sse_client import client as sse_client  # type: ignore[import-untyped]

from proxy.metrics import Metrics
from proxy.server.app import create_app
from proxy.server.state import ServerState
from tests.conftest import ProxyFactory
from tests.e2e.scripted import (
    FINAL,
    OVERLOADED,
    PING,
    Respond,
    ScriptedUpstream,
    Stream,
    completion,
)

LEGACY = {"anthropic-version": "2023-01-01", "x-api-key": "test-key-not-a-real-key"}
MODERN = {"anthropic-version": "2023-06-01", "x-api-key": "test-key-not-a-real-key"}
STREAM_BODY = {
    "model": "claude-2.0",
    "prompt": "\n\nHuman: hi\n\nAssistant:",
    "stream": True,
    "max_tokens_to_sample": 20,
}
DONE = b"data: [DONE]\n\n"


def events(body: bytes) -> list[dict[str, Any]]:
    out = []
    for block in body.decode().split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data: {") and line != "data: {}":
                out.append(json.loads(line[6:]))
    return out


async def read_all(resp: aiohttp.ClientResponse) -> tuple[bytes, bool]:
    """The body, and whether it ended cleanly (False: the connection was cut)."""
    data = b""
    try:
        async for chunk in resp.content.iter_any():
            data += chunk
    except aiohttp.ClientPayloadError:
        return data, False
    return data, True


async def test_legacy_stream_is_converted_byte_exact(
    make_proxy: ProxyFactory, upstream: tuple[ScriptedUpstream, str]
) -> None:
    scripted, _ = upstream
    scripted.script = Stream([completion(" Hello"), completion("!"), PING, FINAL])
    client, metrics = await make_proxy()
    resp = await client.post("/v1/complete", json=STREAM_BODY, headers=LEGACY)
    body, clean = await read_all(resp)
    assert resp.status == 200 and clean
    assert resp.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert resp.headers["Cache-Control"] == "no-cache"
    assert resp.headers["X-Accel-Buffering"] == "no"
    assert "Content-Length" not in resp.headers and "Content-Encoding" not in resp.headers
    assert resp.headers["request-id"] == "req_up_1"
    assert body == (
        b'data: {"completion":" Hello","stop_reason":null,"stop":null,"model":"claude-2.0",'
        b'"log_id":null,"truncated":false,"exception":null}\n\n'
        b'data: {"completion":" Hello!","stop_reason":null,"stop":null,"model":"claude-2.0",'
        b'"log_id":null,"truncated":false,"exception":null}\n\n'
        b"event: ping\ndata: {}\n\n"
        b'data: {"completion":" Hello!","stop_reason":"stop_sequence","stop":"\\n\\nHuman:",'
        b'"model":"claude-2.0","log_id":"compl_01","truncated":false,"exception":null}\n\n'
        b"data: [DONE]\n\n"
    )
    (seen,) = scripted.seen
    assert seen.headers["anthropic-version"] == "2023-06-01"  # spoken upstream
    assert seen.headers["x-api-key"] == LEGACY["x-api-key"]  # the key goes through untouched
    assert seen.headers["Accept-Encoding"] == "identity"
    assert json.loads(seen.body) == STREAM_BODY
    assert metrics.requests.labels("convert", "complete", "ok")._value.get() == 1


async def test_hostile_chunking_upstream(
    make_proxy: ProxyFactory, upstream: tuple[ScriptedUpstream, str]
) -> None:
    """Every byte its own write, with CR LF line ends and multi-byte characters cut in half."""
    scripted, _ = upstream
    raw = (completion(" caf\u00e9") + completion(" \U0001f600") + FINAL).replace(b"\n", b"\r\n")
    items: list[bytes | float | str] = []
    for i in range(len(raw)):
        items += [raw[i : i + 1], 0.0005]
    scripted.script = Stream(items)
    client, _ = await make_proxy()
    resp = await client.post("/v1/complete", json=STREAM_BODY, headers=LEGACY)
    body, clean = await read_all(resp)
    assert clean and body.endswith(DONE)
    assert events(body)[-1]["completion"] == " café 😀"


async def test_independent_sse_parser_reads_the_legacy_stream(
    make_proxy: ProxyFactory, upstream: tuple[ScriptedUpstream, str]
) -> None:
    scripted, _ = upstream
    scripted.script = Stream([completion(" a"), PING, completion(" b"), FINAL])
    client, _ = await make_proxy()
    seen: list[tuple[str, str]] = []
    async with sse_client.EventSource(
        str(client.make_url("/v1/complete")),
        option={"method": "POST"},
        json=STREAM_BODY,
        headers=LEGACY,
        reconnection_time=__import__("datetime").timedelta(seconds=0),
        max_connect_retry=0,
    ) as source:
        try:
            async for event in source:
                seen.append((event.type, event.data))
                if event.data == "[DONE]":
                    break
        except ConnectionError:
            pass
    names = [t for t, _ in seen]
    assert names == [None, "ping", None, None, None]  # this parser reports unnamed events as None
    assert json.loads(seen[3][1])["completion"] == " a b"
    assert seen[-1][1] == "[DONE]"


async def test_modern_stream_passes_through_byte_for_byte(
    make_proxy: ProxyFactory, upstream: tuple[ScriptedUpstream, str]
) -> None:
    scripted, _ = upstream
    raw = [completion(" Hello"), PING, b": comment\r\n", FINAL]
    scripted.script = Stream(raw)
    client, metrics = await make_proxy()
    resp = await client.post("/v1/complete", json=STREAM_BODY, headers=MODERN)
    body, clean = await read_all(resp)
    assert clean and body == b"".join(raw)
    assert scripted.seen[0].headers["anthropic-version"] == "2023-06-01"
    assert metrics.requests.labels("passthrough", "complete", "ok")._value.get() == 1


async def test_modern_gzip_is_relayed_as_received(
    make_proxy: ProxyFactory, upstream: tuple[ScriptedUpstream, str]
) -> None:
    scripted, _ = upstream
    payload = gzip.compress(b'{"data": []}')
    scripted.script = Respond(
        200, payload, {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    )
    client, _ = await make_proxy()
    resp = await client.get(
        "/v1/models", headers={**MODERN, "Accept-Encoding": "gzip"}, auto_decompress=False
    )
    assert resp.headers["Content-Encoding"] == "gzip"
    assert await resp.read() == payload
    assert scripted.seen[0].headers["Accept-Encoding"] == "gzip"


async def test_gzip_upstream_on_a_converted_stream_is_decompressed(
    make_proxy: ProxyFactory, upstream: tuple[ScriptedUpstream, str]
) -> None:
    scripted, _ = upstream
    scripted.script = Stream(
        [gzip.compress(completion(" zipped") + FINAL)],
        headers={"Content-Type": "text/event-stream", "Content-Encoding": "gzip"},
    )
    client, _ = await make_proxy()
    resp = await client.post("/v1/complete", json=STREAM_BODY, headers=LEGACY)
    body, clean = await read_all(resp)
    assert clean and events(body)[-1]["completion"] == " zipped"
    assert "Content-Encoding" not in resp.headers


async def test_non_streaming_completion_gets_legacy_fields(
    make_proxy: ProxyFactory, upstream: tuple[ScriptedUpstream, str]
) -> None:
    scripted, _ = upstream
    scripted.script = Respond(
        200,
        b'{"type": "completion", "id": "compl_1", "completion": " Hi", "stop_reason": '
        b'"stop_sequence", "model": "claude-2.0", "stop": "\\n\\nHuman:", "log_id": "compl_1"}',
        {"Content-Type": "application/json", "request-id": "req_9"},
    )
    client, _ = await make_proxy()
    resp = await client.post("/v1/complete", json={**STREAM_BODY, "stream": False}, headers=LEGACY)
    assert resp.status == 200
    assert resp.headers["request-id"] == "req_9"
    body = await resp.json()
    assert body["completion"] == " Hi" and body["truncated"] is False and body["exception"] is None


async def test_upstream_error_status_passes_through(
    make_proxy: ProxyFactory, upstream: tuple[ScriptedUpstream, str]
) -> None:
    scripted, _ = upstream
    err = b'{"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}'
    scripted.script = Respond(
        429, err, {"Content-Type": "application/json", "retry-after": "7", "request-id": "r1"}
    )
    client, metrics = await make_proxy()
    resp = await client.post("/v1/complete", json=STREAM_BODY, headers=LEGACY)
    assert resp.status == 429
    assert await resp.read() == err
    assert resp.headers["retry-after"] == "7" and resp.headers["request-id"] == "r1"
    assert metrics.requests.labels("convert", "complete", "upstream_error")._value.get() == 1
    assert metrics.upstream_responses.labels("4xx")._value.get() == 1


async def test_error_event_ends_the_stream_abnormally_without_done(
    make_proxy: ProxyFactory, upstream: tuple[ScriptedUpstream, str]
) -> None:
    scripted, _ = upstream
    scripted.script = Stream([completion(" Hello"), OVERLOADED, completion(" more")])
    client, metrics = await make_proxy()
    resp = await client.post("/v1/complete", json=STREAM_BODY, headers=LEGACY)
    body, clean = await read_all(resp)
    assert not clean, "a failed stream must not end like a complete one"
    assert DONE not in body
    last = events(body)[-1]
    assert last["completion"] == " Hello"
    assert last["exception"] == "overloaded_error: Overloaded"
    assert last["error"] == {"type": "overloaded_error", "message": "Overloaded"}
    assert metrics.stream_errors.labels("upstream_error_event")._value.get() == 1
    assert metrics.requests.labels("convert", "complete", "stream_error")._value.get() == 1


async def test_upstream_reset_mid_stream(
    make_proxy: ProxyFactory, upstream: tuple[ScriptedUpstream, str]
) -> None:
    scripted, _ = upstream
    scripted.script = Stream([completion(" Hello"), completion(" wor")[:30], 0.05, "reset"])
    client, _ = await make_proxy()
    resp = await client.post("/v1/complete", json=STREAM_BODY, headers=LEGACY)
    body, clean = await read_all(resp)
    assert not clean and DONE not in body
    assert events(body)[-1]["exception"] == "api_error: upstream closed the stream early"


async def test_upstream_clean_eof_before_stop_reason(
    make_proxy: ProxyFactory, upstream: tuple[ScriptedUpstream, str]
) -> None:
    scripted, _ = upstream
    scripted.script = Stream([completion(" Hello")])
    client, _ = await make_proxy()
    resp = await client.post("/v1/complete", json=STREAM_BODY, headers=LEGACY)
    body, clean = await read_all(resp)
    assert not clean and DONE not in body
    assert events(body)[-1]["exception"] == "api_error: upstream closed the stream early"


async def test_upstream_silent_past_idle_timeout(
    make_proxy: ProxyFactory, upstream: tuple[ScriptedUpstream, str]
) -> None:
    scripted, _ = upstream
    scripted.script = Stream([completion(" Hello"), "stall"])
    client, metrics = await make_proxy(timeouts_idle="0.3")
    resp = await client.post("/v1/complete", json=STREAM_BODY, headers=LEGACY)
    body, clean = await read_all(resp)
    assert not clean and DONE not in body
    assert "idle timeout" in events(body)[-1]["exception"]
    assert metrics.stream_errors.labels("upstream_timeout")._value.get() == 1
    await asyncio.wait_for(scripted.disconnected.wait(), 2)  # upstream request was closed


async def test_not_an_event_stream_is_502(
    make_proxy: ProxyFactory, upstream: tuple[ScriptedUpstream, str]
) -> None:
    scripted, _ = upstream
    scripted.script = Respond(200, b'{"ok": true}', {"Content-Type": "application/json"})
    client, _ = await make_proxy()
    resp = await client.post("/v1/complete", json=STREAM_BODY, headers=LEGACY)
    assert resp.status == 502
    assert (await resp.json())["error"] == {
        "type": "api_error",
        "message": "upstream did not answer with an event stream",
    }


async def test_unreachable_upstream_is_502(make_proxy: ProxyFactory) -> None:
    client, metrics = await make_proxy(upstream_url="http://127.0.0.1:9")
    resp = await client.post("/v1/complete", json=STREAM_BODY, headers=LEGACY)
    assert resp.status == 502
    assert (await resp.json())["error"]["type"] == "api_error"
    assert metrics.upstream_responses.labels("unreachable")._value.get() == 1


async def test_headers_timeout_is_504(
    make_proxy: ProxyFactory, upstream: tuple[ScriptedUpstream, str]
) -> None:
    scripted, _ = upstream
    scripted.script = Stream([FINAL], delay_headers=2.0)
    client, _ = await make_proxy(timeouts_stream_headers="0.2")
    resp = await client.post("/v1/complete", json=STREAM_BODY, headers=LEGACY)
    assert resp.status == 504
    assert (await resp.json())["error"]["type"] == "api_error"


async def test_bad_json_is_400_and_not_forwarded(
    make_proxy: ProxyFactory, upstream: tuple[ScriptedUpstream, str]
) -> None:
    scripted, _ = upstream
    client, metrics = await make_proxy()
    # truncated JSON, and JSON nested too deep for the parser (once a 500 and a traceback)
    for body in (b'{"prompt": ', b"[" * 3000, b'{"a": ' * 3000):
        resp = await client.post("/v1/complete", data=body, headers=LEGACY)
        assert resp.status == 400
        assert (await resp.json())["error"]["type"] == "invalid_request_error"
    assert scripted.seen == []
    assert metrics.requests.labels("convert", "complete", "bad_request")._value.get() == 3


async def test_body_over_limit_is_413_and_not_forwarded(
    make_proxy: ProxyFactory, upstream: tuple[ScriptedUpstream, str]
) -> None:
    scripted, _ = upstream
    client, _ = await make_proxy(limits_max_body_bytes="100")
    for headers in (LEGACY, MODERN):
        resp = await client.post("/v1/complete", data=b"x" * 1000, headers=headers)
        assert resp.status == 413
        assert (await resp.json())["error"]["type"] == "request_too_large"
    assert scripted.seen == []


async def test_reconnect_with_last_event_id_is_refused_unforwarded(
    make_proxy: ProxyFactory, upstream: tuple[ScriptedUpstream, str]
) -> None:
    scripted, _ = upstream
    client, metrics = await make_proxy()
    resp = await client.post(
        "/v1/complete", json=STREAM_BODY, headers={**LEGACY, "Last-Event-ID": "req_proxy_1"}
    )
    assert resp.status == 400
    assert "cannot be resumed" in (await resp.json())["error"]["message"]
    assert scripted.seen == []
    assert metrics.resume_refused._value.get() == 1


async def test_typescript_clients_get_an_id_line_python_clients_never(
    make_proxy: ProxyFactory, upstream: tuple[ScriptedUpstream, str]
) -> None:
    scripted, _ = upstream
    scripted.script = Stream([completion(" a"), FINAL])
    client, _ = await make_proxy()
    ts = {**LEGACY, "Anthropic-SDK": "anthropic-typescript/0.4.4"}
    body, _ = await read_all(await client.post("/v1/complete", json=STREAM_BODY, headers=ts))
    assert body.startswith(b"id: req_proxy_") and body.count(b"\nid: ") == 0
    py = {**LEGACY, "Anthropic-SDK": "anthropic-python/0.2.10"}
    body, _ = await read_all(await client.post("/v1/complete", json=STREAM_BODY, headers=py))
    assert b"id:" not in body


async def test_missing_version_header(
    make_proxy: ProxyFactory, upstream: tuple[ScriptedUpstream, str]
) -> None:
    scripted, _ = upstream
    scripted.script = Stream([completion(" a"), FINAL])
    client, _ = await make_proxy()
    body, _ = await read_all(
        await client.post("/v1/complete", json=STREAM_BODY, headers={"x-api-key": "k"})
    )
    assert body.endswith(DONE)  # legacy by default: the oldest SDKs sent no version
    client, _ = await make_proxy(legacy_missing_version="reject")
    resp = await client.post("/v1/complete", json=STREAM_BODY, headers={"x-api-key": "k"})
    assert resp.status == 400


async def test_legacy_version_rewritten_on_other_routes(
    make_proxy: ProxyFactory, upstream: tuple[ScriptedUpstream, str]
) -> None:
    scripted, _ = upstream
    scripted.script = Respond(200, b'{"data": []}', {"Content-Type": "application/json"})
    client, _ = await make_proxy()
    resp = await client.get("/v1/models?limit=2", headers={**LEGACY, "Connection": "keep-alive"})
    assert resp.status == 200 and await resp.read() == b'{"data": []}'
    (seen,) = scripted.seen
    assert seen.path_qs == "/v1/models?limit=2"
    assert seen.headers["anthropic-version"] == "2023-06-01"


async def test_overload_cap_answers_529(
    make_proxy: ProxyFactory, upstream: tuple[ScriptedUpstream, str]
) -> None:
    scripted, _ = upstream
    scripted.script = Stream([completion(" a"), "stall"])
    client, metrics = await make_proxy(limits_max_streams="1")
    first = await client.post("/v1/complete", json=STREAM_BODY, headers=LEGACY)
    await first.content.readuntil(b"\n\n")
    second = await client.post("/v1/complete", json=STREAM_BODY, headers=LEGACY)
    assert second.status == 529
    assert (await second.json())["error"]["type"] == "overloaded_error"
    assert metrics.requests.labels("convert", "complete", "overloaded")._value.get() == 1
    first.close()


async def test_slow_reader_gets_skipped_snapshots_and_the_full_text(
    make_proxy: ProxyFactory, upstream: tuple[ScriptedUpstream, str]
) -> None:
    """Rule 7: a client that stops reading does not make the proxy queue every snapshot."""
    scripted, _ = upstream
    token = " " + "w" * 200
    n = 1500
    scripted.script = Stream([completion(token) for _ in range(n)] + [FINAL])
    client, metrics = await make_proxy()
    resp = await client.post("/v1/complete", json=STREAM_BODY, headers=LEGACY)
    await resp.content.readuntil(b"\n\n")
    await asyncio.sleep(1.0)  # stop reading while the upstream sends everything
    body, clean = await read_all(resp)
    assert clean and body.endswith(DONE)
    assert events(body)[-1]["completion"] == token * n
    every_snapshot = sum(len(token) * i for i in range(1, n + 1))  # ~225 MB if nothing skipped
    assert len(body) < every_snapshot / 10
    assert metrics.snapshots_skipped._value.get() > 0


async def test_egress_proxy_from_the_environment_is_used(
    upstream: tuple[ScriptedUpstream, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP(S)_PROXY is honoured: the upstream URL is unreachable, the egress proxy is not."""
    from tests.conftest import settings_for

    scripted, url = upstream
    scripted.script = Respond(200, b'{"data": []}', {"Content-Type": "application/json"})
    monkeypatch.setenv("HTTP_PROXY", url)  # the scripted server plays the egress proxy
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    app = create_app(settings_for("http://upstream.invalid:9"), Metrics(), ServerState())
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        resp = await client.get("/v1/models", headers=MODERN)
        assert resp.status == 200
    assert scripted.seen[0].path_qs == "/v1/models"
    assert scripted.seen[0].headers["Host"] == "upstream.invalid:9"
    monkeypatch.setenv("NO_PROXY", "upstream.invalid")  # exempted: goes direct, and fails
    app = create_app(settings_for("http://upstream.invalid:9"), Metrics(), ServerState())
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        assert (await client.get("/v1/models", headers=MODERN)).status in (502, 504)


async def test_an_unknown_version_on_complete_passes_through_for_the_upstream_to_judge(
    make_proxy: ProxyFactory, upstream: tuple[ScriptedUpstream, str]
) -> None:
    """Under the Messages route only 2023-06-01 and later dates are converted (spec section 9,
    decision 5): "banana" must not be answered as if it were a valid version."""
    scripted, _ = upstream
    scripted.script = Respond(400, b'{"type":"error","error":{"type":"invalid_request_error"}}')
    client, _ = await make_proxy(complete_upstream="messages")
    resp = await client.post(
        "/v1/complete",
        json={"model": "claude-2.1", "prompt": "\n\nHuman: hi\n\nAssistant:"},
        headers={"anthropic-version": "banana", "x-api-key": "k"},
    )
    assert resp.status == 400
    seen = scripted.seen[-1]
    assert seen.path_qs == "/v1/complete" and seen.headers["anthropic-version"] == "banana"
