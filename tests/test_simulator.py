"""The simulator speaks 2023-06-01 faithfully and is as strict as today's API (it is the other
side of every end-to-end test: a request it accepts must be one the real API accepts)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from proxy.simulator import MODELS, RETIRED, SIM_STATS_KEY, SimConfig, create_app, expected_text

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


# -- Strict by default: today's API (spec section 6) ----------------------------------------------

USER = [{"role": "user", "content": "hi"}]
RETIRED_NAMES = [
    "claude-v1", "claude-v1-100k", "claude-v1.3", "claude-1", "claude-1.3-100k",
    "claude-instant-v1", "claude-instant-1.2", "claude-2", "claude-2.0", "claude-2.1",
    "claude-3-opus-20240229", "claude-3-5-sonnet-latest", "claude-3-7-sonnet-20250219",
    "claude-sonnet-4-5", "claude-sonnet-4-5-20250929", "claude-sonnet-4-0",
    "claude-sonnet-4-20250514", "claude-opus-4-0", "claude-opus-4-20250514",
]  # fmt: skip


async def error_of(resp: Any) -> tuple[int, str, str]:
    body = await resp.json()
    assert body["type"] == "error"
    return resp.status, body["error"]["type"], body["error"]["message"]


def test_the_model_table_has_no_retired_name() -> None:
    assert all(RETIRED.fullmatch(name) for name in RETIRED_NAMES)
    assert not [name for name in MODELS if RETIRED.fullmatch(name)]


async def test_text_completions_refuse_every_model_by_default() -> None:
    c = await client()
    for name in [*RETIRED_NAMES, "claude-nonexistent-9"]:
        resp = await c.post("/v1/complete", json={**BODY, "model": name}, headers=KEY)
        assert await error_of(resp) == (404, "not_found_error", f"model: {name}")
    for name in ("claude-haiku-4-5", "claude-sonnet-5", "claude-opus-4-1"):
        resp = await c.post("/v1/complete", json={**BODY, "model": name}, headers=KEY)
        assert await error_of(resp) == (
            400, "invalid_request_error",
            f'"{name}" is not supported on this API. Please use the Messages API instead.',
        )  # fmt: skip
    stats = c.app[SIM_STATS_KEY]
    assert stats.by_path == {"/v1/complete": len(RETIRED_NAMES) + 4}  # seen, counted, refused
    await c.close()


async def test_the_flag_keeps_text_completions_for_any_model() -> None:
    c = await client(tokens=2, text_completions=True)
    for name in ("claude-2.0", "claude-sonnet-5", "anything"):
        resp = await c.post("/v1/complete", json={**BODY, "model": name}, headers=KEY)
        events = parse(await resp.read())
        assert resp.status == 200 and events[-1][1]["model"] == name
        assert "".join(e["completion"] for _, e in events) == expected_text(2)
    models = await (await c.get("/v1/models", headers=KEY)).json()
    assert [m["id"] for m in models["data"]] == ["claude-2.0"]
    await c.close()


def messages_body(model: str = "claude-haiku-4-5", **extra: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 100, "messages": USER, **extra}


PREFILL = "This model does not support assistant message prefill. The conversation must end with a user message."  # noqa: E501
REFUSALS: list[tuple[dict[str, Any], int, str]] = [
    ({"max_tokens": 10, "messages": USER}, 400, "model: Field required"),
    ({"model": "claude-haiku-4-5", "messages": USER}, 400, "max_tokens: Field required"),
    ({"model": "claude-haiku-4-5", "max_tokens": 10}, 400, "messages: Field required"),
    (messages_body(max_tokens=0), 400, "max_tokens: Input should be a positive integer"),
    (messages_body(max_tokens="9"), 400, "max_tokens: Input should be a positive integer"),
    (messages_body(messages=[]), 400, "messages: at least one message is required"),
    (messages_body(prompt="x"), 400, "prompt: Extra inputs are not permitted"),
    (messages_body(tags=["npm 0.4"]), 400, "tags: Extra inputs are not permitted"),
    (messages_body(max_tokens_to_sample=5), 400,
     "max_tokens_to_sample: Extra inputs are not permitted"),
    (messages_body("claude-2.1"), 404, "model: claude-2.1"),
    (messages_body("claude-sonnet-4-5"), 404, "model: claude-sonnet-4-5"),
    (messages_body("gpt-4"), 404, "model: gpt-4"),
    (messages_body(max_tokens=64_001), 400, "max_tokens: 64001 > 64000, which is the maximum "
     "allowed number of output tokens for claude-haiku-4-5"),
    (messages_body("claude-opus-4-1", max_tokens=32_001), 400, "max_tokens: 32001 > 32000, "
     "which is the maximum allowed number of output tokens for claude-opus-4-1"),
    (messages_body("claude-sonnet-5", max_tokens=128_001), 400, "max_tokens: 128001 > 128000, "
     "which is the maximum allowed number of output tokens for claude-sonnet-5"),
    (messages_body(temperature=0.5, top_p=0.9), 400, "`temperature` and `top_p` cannot both be "
     "specified for this model. Please use only one."),
    (messages_body("claude-sonnet-4-6", temperature=0, top_p=1), 400, "`temperature` and "
     "`top_p` cannot both be specified for this model. Please use only one."),
    (messages_body("claude-opus-4-7", temperature=1), 400,
     "`temperature` is not supported for this model."),
    (messages_body("claude-sonnet-5", top_p=0.5), 400,
     "`top_p` is not supported for this model."),
    (messages_body("claude-opus-5-5", top_k=5), 400, "`top_k` is not supported for this model."),
    (messages_body(temperature=1.5), 400, "temperature: Input should be less than or equal to 1"),
    (messages_body(temperature=-1), 400,
     "temperature: Input should be greater than or equal to 0"),
    (messages_body(top_p=2), 400, "top_p: Input should be less than or equal to 1"),
    (messages_body(top_k=-1), 400, "top_k: Input should be greater than or equal to 0"),
    (messages_body(messages=[{"role": "assistant", "content": "a"}]), 400,
     'messages: first message must use the "user" role'),
    (messages_body(messages=[*USER, *USER]), 400, 'messages: roles must alternate between "user" '
     'and "assistant", but found multiple "user" roles in a row'),
    (messages_body(messages=[{"role": "system", "content": "a"}]), 400,
     "messages.0.role: Input should be 'user' or 'assistant'"),
    (messages_body(messages=[{"role": "user", "content": ""}]), 400, "messages.0: all messages "
     "must have non-empty content except for the optional final assistant message"),
    (messages_body(messages=[{"role": "user", "content": [{"type": "text", "text": ""}]}]), 400,
     "messages: text content blocks must be non-empty"),
    (messages_body(messages=[{"role": "user", "content": 5}]), 400,
     "messages.0.content: Input should be a valid string or list"),
    (messages_body("claude-sonnet-4-6", messages=[*USER, {"role": "assistant", "content": "So"}]),
     400, PREFILL),
    (messages_body("claude-sonnet-5", messages=[*USER, {"role": "assistant", "content": "So"}]),
     400, PREFILL),
    (messages_body(messages=[*USER, {"role": "assistant", "content": "So "}]), 400,
     "final assistant content cannot end with trailing whitespace"),
    (messages_body("claude-opus-4-1", messages=[*USER, {"role": "assistant", "content": "So\n"}]),
     400, "final assistant content cannot end with trailing whitespace"),
    (messages_body(stop_sequences=["\n\nHuman:", ""]), 400,
     "stop_sequences.1: stop sequences must contain non-whitespace characters"),
    (messages_body(stop_sequences=[" \n"]), 400,
     "stop_sequences.0: stop sequences must contain non-whitespace characters"),
    (messages_body(metadata={"user_id": "u", "tags": ["a"]}), 400,
     "metadata.tags: Extra inputs are not permitted"),
    (messages_body(thinking={"type": "on"}), 400,
     "thinking.type: Input should be 'enabled', 'disabled' or 'adaptive'"),
    (messages_body(thinking={"type": "enabled"}), 400,
     "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"),
    (messages_body("claude-opus-5-5", thinking={"type": "disabled"}), 400,
     '"thinking.type.disabled" is not supported for this model. '
     'Use "thinking": {"type": "adaptive"} or omit it.'),
    (messages_body("claude-fable-5-1", thinking={"type": "disabled"}), 400,
     '"thinking.type.disabled" is not supported for this model. '
     'Use "thinking": {"type": "adaptive"} or omit it.'),
]  # fmt: skip


@pytest.mark.parametrize("stream", [True, False])
async def test_messages_refuse_like_todays_api(stream: bool) -> None:
    c = await client()
    for body, status, message in REFUSALS:
        resp = await c.post("/v1/messages", json={**body, "stream": stream}, headers=KEY)
        kind = "not_found_error" if status == 404 else "invalid_request_error"
        assert await error_of(resp) == (status, kind, message), body
    await c.close()


ACCEPTED: list[dict[str, Any]] = [
    messages_body(),
    messages_body("claude-haiku-4-5-20251001", max_tokens=64_000, temperature=0.2, top_k=40),
    messages_body("claude-opus-4-5", top_p=0.9, stop_sequences=["\n\nHuman:"],
                  metadata={"user_id": "u1"}, system="be brief"),
    messages_body("claude-opus-4-1", messages=[*USER, {"role": "assistant", "content": "So"}]),
    messages_body("claude-opus-4-1", messages=[*USER, {"role": "assistant", "content": ""}]),
    messages_body("claude-sonnet-4-6", max_tokens=128_000, temperature=0),
    messages_body("claude-opus-4-8"),
    messages_body("claude-sonnet-5-5", thinking={"type": "disabled"}),
    messages_body("claude-haiku-5-5", thinking={"type": "adaptive"}),
    messages_body("claude-opus-5-5", thinking={"type": "enabled", "budget_tokens": 2048},
                  max_tokens=4096),
    messages_body(messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                  service_tier="auto"),
]  # fmt: skip


async def test_valid_messages_requests_are_answered() -> None:
    c = await client(tokens=2)
    for body in ACCEPTED:
        resp = await c.post("/v1/messages", json=body, headers=KEY)
        assert resp.status == 200, (body, await resp.text())
        assert (await resp.json())["content"][-1]["text"] == expected_text(2)
    await c.close()


async def test_permissive_messages_accept_anything_without_thinking() -> None:
    c = await client(tokens=2, strict=False)
    for body, _, _ in REFUSALS:
        resp = await c.post("/v1/messages", json=body, headers=KEY)
        assert resp.status == 200, body
        content = (await resp.json())["content"]
        assert [b["type"] for b in content] == ["text"], body
    await c.close()


# -- Thinking -------------------------------------------------------------------------------------


async def test_a_thinking_model_streams_a_thinking_block_first() -> None:
    c = await client(tokens=3)
    body = messages_body("claude-sonnet-5", stream=True)
    events = parse(await (await c.post("/v1/messages", json=body, headers=KEY)).read())
    names = [n for n, _ in events]
    assert names == [
        "message_start", "content_block_start", "ping", *["content_block_delta"] * 13,
        "content_block_stop", "content_block_start", *["content_block_delta"] * 3,
        "content_block_stop", "message_delta", "message_stop",
    ]  # fmt: skip
    assert events[1][1] == {
        "type": "content_block_start", "index": 0,
        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
    }  # fmt: skip
    deltas = [e["delta"] for n, e in events if n == "content_block_delta" and e["index"] == 0]
    assert [d["type"] for d in deltas] == ["thinking_delta"] * 12 + ["signature_delta"]
    assert deltas[-1]["signature"]
    assert events[17][1]["index"] == 1 and events[17][1]["content_block"]["type"] == "text"
    text = "".join(e["delta"]["text"] for n, e in events if n == "content_block_delta"
                   and e["index"] == 1)  # fmt: skip
    assert text == expected_text(3)
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"
    assert events[-2][1]["usage"] == {"output_tokens": 15}
    await c.close()


async def test_thinking_tokens_count_against_max_tokens() -> None:
    c = await client(tokens=20)
    body = messages_body("claude-opus-5-5", max_tokens=15)
    answer = await (await c.post("/v1/messages", json=body, headers=KEY)).json()
    assert [b["type"] for b in answer["content"]] == ["thinking", "text"]
    assert answer["content"][0]["signature"] and answer["content"][1]["text"] == expected_text(3)
    assert answer["stop_reason"] == "max_tokens" and answer["usage"]["output_tokens"] == 15
    # all of max_tokens spent thinking: no text block at all, like the real API
    small = await (
        await c.post("/v1/messages", json={**body, "max_tokens": 12}, headers=KEY)
    ).json()
    assert [b["type"] for b in small["content"]] == ["thinking"]
    assert small["stop_reason"] == "max_tokens"
    stream = parse(
        await (
            await c.post(
                "/v1/messages", json={**body, "max_tokens": 5, "stream": True}, headers=KEY
            )
        ).read()
    )
    assert [e["content_block"]["type"] for n, e in stream if n == "content_block_start"] == [
        "thinking"]  # fmt: skip
    assert stream[-2][1]["delta"]["stop_reason"] == "max_tokens"
    # the count is a setting and a header
    hdr = {**KEY, "x-sim-thinking-tokens": "2"}
    answer = await (await c.post("/v1/messages", json=body, headers=hdr)).json()
    assert answer["content"][1]["text"] == expected_text(13)
    await c.close()
    c = await client(tokens=20, thinking_tokens=0)
    answer = await (await c.post("/v1/messages", json=body, headers=KEY)).json()
    assert answer["content"][1]["text"] == expected_text(15)
    await c.close()


async def test_thinking_is_off_when_disabled_or_not_a_thinking_model() -> None:
    c = await client(tokens=3)
    for body in (messages_body("claude-sonnet-5", thinking={"type": "disabled"}),
                 messages_body("claude-opus-4-8"), messages_body()):  # fmt: skip
        answer = await (await c.post("/v1/messages", json=body, headers=KEY)).json()
        assert [b["type"] for b in answer["content"]] == ["text"], body
        assert answer["usage"]["output_tokens"] == 3
    await c.close()


async def test_faults_count_text_deltas_only() -> None:
    c = await client(tokens=5)
    for model in ("claude-haiku-4-5", "claude-sonnet-5"):
        body = messages_body(model, stream=True)
        resp = await c.post(
            "/v1/messages", json=body, headers={**KEY, "x-sim-fault": "error-after:2"}
        )
        events = parse(await resp.read())
        assert "".join(e["delta"].get("text", "") for n, e in events
                       if n == "content_block_delta") == expected_text(2)  # fmt: skip
        assert events[-1][0] == "error"
        resp = await c.post("/v1/messages", json=body, headers={**KEY, "x-sim-fault": "status:529"})
        assert await error_of(resp) == (529, "overloaded_error", "simulated 529")
    await c.close()


async def test_prefill_is_continued_and_stop_sequences_end_the_text() -> None:
    c = await client(tokens=6)
    turns = [*USER, {"role": "assistant", "content": "Well,"}]
    answer = await (await c.post(
        "/v1/messages", json=messages_body("claude-opus-4-5", messages=turns), headers=KEY
    )).json()  # fmt: skip
    assert answer["content"][0]["text"] == expected_text(6)  # continues, never repeats "Well,"
    body = messages_body(stop_sequences=[" caf", "\n\nHuman:"], stream=True)
    events = parse(await (await c.post("/v1/messages", json=body, headers=KEY)).read())
    text = "".join(e["delta"]["text"] for n, e in events if n == "content_block_delta")
    assert text == " Hello world,"
    assert events[-2][1]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": " caf"}
    body = messages_body(stop_sequences=["orl"])
    answer = await (await c.post("/v1/messages", json=body, headers=KEY)).json()
    assert answer["content"][0]["text"] == " Hello w" and answer["stop_sequence"] == "orl"
    await c.close()


async def test_stats_see_refused_messages_requests_with_keys_redacted() -> None:
    c = await client()
    await c.post("/v1/messages", json=messages_body("claude-2.0"), headers=KEY)
    stats = await (await c.get("/_sim/stats")).json()
    assert stats["by_path"] == {"/v1/messages": 1}
    assert stats["last_requests"][-1]["headers"]["x-api-key"] == "<redacted>"
    models = await (await c.get("/v1/models", headers=KEY)).json()
    assert [m["id"] for m in models["data"]] == list(MODELS)
    await c.close()


def test_cli_flags() -> None:
    out = subprocess.run([sys.executable, "-m", "proxy.simulator", "--help"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    flat = re.sub(r"\s+", " ", out)
    for flag in ("--text-completions", "--permissive-messages", "--thinking-tokens"):
        assert flag in flat
