"""Real SDKs that nobody here wrote, through the proxy on its defaults, against an upstream as
strict as today's API (the simulator: no model left on /v1/complete, a strict /v1/messages).

Legacy clients (anthropic 0.2.2 and 0.2.10, @anthropic-ai/sdk 0.4.4) must get the full text with
the legacy fields, and 2023-06-01 Text Completions clients (anthropic 0.3.x and 0.49) the 2023-06-01
format, all answered through /v1/messages; pointed at the upstream directly they fail (404 for
every old name, 400 for a live model), which proves these tests can fail. "hostile" runs the
upstream with 3-byte writes, CR LF line ends and comment lines.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import pytest

from proxy.simulator import SIM_STATS_KEY, expected_text
from tests.clients.harness import (
    run_js_legacy,
    run_py_049,
    run_py_current,
    run_py_legacy,
    run_py_modern,
    run_py_oldest,
)
from tests.conftest import TOKENS, StackFactory

pytestmark = pytest.mark.clients
TEXT = expected_text(TOKENS)
UPSTREAMS = {"plain": "", "hostile": "split,crlf,comments"}


def assert_legacy_final(final: dict[str, Any]) -> None:
    assert final["completion"] == TEXT
    assert final["stop_reason"] == "stop_sequence"
    assert final["truncated"] is False
    assert final["exception"] is None


@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("mode", ["sync-stream", "async-stream", "sync", "async"])
async def test_python_0_2_10_through_the_proxy(
    stack: StackFactory, upstream: str, mode: str
) -> None:
    s = await stack(UPSTREAMS[upstream])
    result = await run_py_legacy(s.url, mode)
    assert result.ok, result
    assert_legacy_final(result.out["final"])
    if mode.endswith("stream"):
        texts = [e["completion"] for e in result.out["events"]]
        assert len(texts) == TOKENS + 1
        assert all(b.startswith(a) for a, b in itertools.pairwise(texts))  # cumulative
        assert texts[0] == expected_text(1)


# Pointed at today's API directly, a legacy client fails: this proves the tests above can fail.
# Every name it can send is retired (404), and a live model refuses /v1/complete (400).
DIRECT = {
    "claude-2.0": (404, "not_found_error", "model: claude-2.0"),
    "claude-sonnet-5-5": (400, "invalid_request_error", "Please use the Messages API instead"),
}


@pytest.mark.parametrize(
    ("mode", "model"),
    [("sync-stream", "claude-2.0"), ("async-stream", "claude-2.0"), ("sync", "claude-sonnet-5-5")],
)
async def test_python_0_2_10_directly_fails(stack: StackFactory, mode: str, model: str) -> None:
    s = await stack()
    result = await run_py_legacy(s.sim_url, mode, model=model)
    status, kind, message = DIRECT[model]
    assert not result.ok, result
    assert result.out["error_class"] == "ApiException"
    assert f"status code: {status}" in result.out["error"]
    assert result.out["detail"]["error"]["type"] == kind
    assert message in result.out["detail"]["error"]["message"]
    assert s.sim.app[SIM_STATS_KEY].by_path == {"/v1/complete": 1}


async def test_python_0_2_2_sends_no_version_and_directly_gets_an_error_as_its_answer(
    stack: StackFactory,
) -> None:
    """0.2.2 never checks the status: pointed at today's API it returns the 404 body as if it
    were a completion. And it sends no anthropic-version at all (spec section 1)."""
    s = await stack()
    result = await run_py_oldest(s.sim_url, "sync", model="claude-v1")
    assert not result.ok, result
    assert result.out["final"]["error"]["type"] == "not_found_error"
    seen = s.sim.app[SIM_STATS_KEY].last_requests[-1]
    assert seen["path"] == "/v1/complete" and seen["anthropic_version"] is None
    assert seen["headers"]["Client"] == "anthropic-python/0.2.2"


@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("mode", ["stream", "complete"])
async def test_typescript_0_4_4_through_the_proxy(
    stack: StackFactory, upstream: str, mode: str
) -> None:
    s = await stack(UPSTREAMS[upstream])
    result = await run_js_legacy(s.url, mode)
    assert result.ok, result
    assert_legacy_final(result.out["final"])


@pytest.mark.parametrize("mode", ["stream", "complete"])
async def test_typescript_0_4_4_directly_fails(stack: StackFactory, mode: str) -> None:
    s = await stack()
    result = await run_js_legacy(s.sim_url, mode)
    assert not result.ok and "404" in result.out["error"], result
    assert s.sim.app[SIM_STATS_KEY].by_path == {"/v1/complete": 1}


async def test_python_0_2_10_after_a_mid_stream_error(stack: StackFactory) -> None:
    s = await stack("error-after:3")
    for mode in ("sync-stream", "async-stream"):
        result = await run_py_legacy(s.url, mode)
        assert not result.ok, result  # it raises from its read: the cut is not a clean end
        events = result.out["events"]
        assert events[-1]["exception"] == "overloaded_error: Overloaded"
        assert events[-1]["completion"] == expected_text(3)
    assert s.upstream_requests == 2


async def test_typescript_after_a_mid_stream_error_rejects_and_is_never_paid_twice(
    stack: StackFactory,
) -> None:
    s = await stack("error-after:3")
    result = await run_js_legacy(s.url, "stream", linger=3)  # let its retry loop run
    assert not result.ok and result.out["error"] != "timeout", result
    assert result.out["last"]["exception"] == "overloaded_error: Overloaded"
    assert s.upstream_requests == 1  # its automatic retry was refused, not forwarded
    assert s.metrics.resume_refused._value.get() >= 1


async def test_without_event_ids_the_typescript_retry_would_be_paid_again(
    stack: StackFactory,
) -> None:
    """Why rule 5 gives TypeScript clients an id: line (this test shows the mechanism matters)."""
    s = await stack("error-after:3", legacy_event_ids="never")
    await run_js_legacy(s.url, "stream", linger=2.5)
    assert s.upstream_requests >= 2


async def test_modern_client_gets_the_2023_06_01_format_through_messages(
    stack: StackFactory,
) -> None:
    """anthropic 0.3.x sends 2023-06-01 to /v1/complete, which no live model serves: the proxy
    answers it through /v1/messages, in the format the API itself used to send it (the reference:
    the same client against a simulator that still serves Text Completions)."""
    s = await stack()
    old_api = await stack(text_completions=True)
    through, reference = await asyncio.gather(run_py_modern(s.url), run_py_modern(old_api.sim_url))
    assert through.ok and reference.ok, (through, reference)

    def essence(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        # ids differ per call; "stop" may ride on any event, null until the end (spec section 2)
        keys = ("type", "completion", "stop_reason", "model")
        return [(*(e[k] for k in keys), e.get("stop")) for e in events]

    assert essence(through.out["events"]) == essence(reference.out["events"])  # texts, count
    assert through.out["text"] == TEXT and len(through.out["events"]) == TOKENS + 1
    assert all("truncated" not in e and "exception" not in e for e in through.out["events"])
    stats = s.sim.app[SIM_STATS_KEY]
    assert stats.by_path == {"/v1/messages": 1}
    assert stats.last_requests[-1]["anthropic_version"] == "2023-06-01"
    assert stats.last_requests[-1]["json"]["model"] == "claude-sonnet-5-5"
    assert (
        s.metrics.complete_models.labels("claude-2.0", "claude-sonnet-5-5", "modern")._value.get()
        == 1
    )


# -- a per-name override, and complete mode (spec section 6, "Routing") --------------------------

MAPPED = {"messages_models": "claude-2.1=claude-haiku-4-5"}


@pytest.mark.parametrize("mode", ["sync-stream", "async-stream", "sync", "async"])
async def test_python_0_2_10_with_a_per_name_override(stack: StackFactory, mode: str) -> None:
    s = await stack(**MAPPED)
    result = await run_py_legacy(s.url, mode, model="claude-2.1")
    assert result.ok, result
    final = result.out["final"]
    assert_legacy_final(final)
    assert final["model"] == "claude-2.1" and final["stop"] == "\n\nHuman:"
    stats = s.sim.app[SIM_STATS_KEY]
    assert stats.by_path == {"/v1/messages": 1}  # never /v1/complete
    sent = stats.last_requests[-1]["json"]
    assert sent["model"] == "claude-haiku-4-5"
    assert sent["messages"] == [{"role": "user", "content": "Say hello"}]
    assert sent["max_tokens"] == 100
    assert "thinking" not in sent  # a 4.5 model does not think unless asked
    assert s.metrics.requests.labels("convert", "complete_via_messages", "ok")._value.get() == 1


@pytest.mark.parametrize("mode", ["stream", "complete"])
async def test_typescript_0_4_4_with_a_per_name_override(stack: StackFactory, mode: str) -> None:
    s = await stack(**MAPPED)
    result = await run_js_legacy(s.url, mode, model="claude-2.1")
    assert result.ok, result
    assert_legacy_final(result.out["final"])
    assert result.out["final"]["model"] == "claude-2.1"
    stats = s.sim.app[SIM_STATS_KEY]
    assert stats.by_path == {"/v1/messages": 1}
    assert stats.last_requests[-1]["json"]["model"] == "claude-haiku-4-5"


async def test_complete_mode_keeps_unmapped_models_on_text_completions(
    stack: StackFactory,
) -> None:
    """complete.upstream = complete, against an upstream that still serves /v1/complete: only
    the names [messages] maps go through Messages (the behaviour of 2026-11)."""
    s = await stack(text_completions=True, complete_upstream="complete", **MAPPED)
    unmapped = await run_py_legacy(s.url, "sync-stream", model="claude-2.0")
    assert unmapped.ok and unmapped.out["final"]["completion"] == TEXT, unmapped
    assert s.sim.app[SIM_STATS_KEY].by_path == {"/v1/complete": 1}
    mapped = await run_py_legacy(s.url, "sync-stream", model="claude-2.1")
    assert mapped.ok and mapped.out["final"]["completion"] == TEXT, mapped
    assert s.sim.app[SIM_STATS_KEY].by_path == {"/v1/complete": 1, "/v1/messages": 1}


async def test_untranslatable_prompt_is_a_400_that_says_why(stack: StackFactory) -> None:
    s = await stack()
    result = await run_py_legacy(
        s.url, "sync", model="claude-2.1", prompt="\n\nHuman: a\n\nHuman: b\n\nAssistant:"
    )
    assert not result.ok and "400" in result.out["error"]
    assert "turns out of order" in json.dumps(result.out["detail"])
    assert s.upstream_requests == 0


@pytest.mark.parametrize("stream", [True, False])
async def test_the_official_sdk_parses_the_simulators_messages(
    stack: StackFactory, stream: bool
) -> None:
    """If the current official SDK parses the simulator's Messages answers, it is faithful."""
    s = await stack()
    result = await run_py_current(s.sim_url, stream=stream)
    assert result.ok, result
    assert result.out["text"] == TEXT and result.out["stop_reason"] == "end_turn"
    assert result.out["blocks"] == ["thinking", "text"]  # a 5.x model thinks first


# -- issue 13: every old client, every Text Completions name, nothing configured -----------------
# The proxy on its defaults (only upstream_url set) in front of the strict simulator. Each client
# runs in its own environment; the five names in each client's streaming mode (the path that
# matters, and no dearer than the others: a run's cost is the interpreter starting), every mode of
# every client on one name.

NAMES = {
    "claude-v1": "claude-sonnet-5-5",
    "claude-instant-v1": "claude-haiku-5-5",
    "claude-2": "claude-sonnet-5-5",
    "claude-2.1": "claude-sonnet-5-5",
    "claude-instant-1.2": "claude-haiku-5-5",
}
ONE_NAME = "claude-2.1"
# client -> (its modes, the format it speaks: legacy 2023-01-01 or modern 2023-06-01)
CLIENTS: dict[str, tuple[tuple[str, ...], str]] = {
    "python-0.2.10": (("sync-stream", "async-stream", "sync", "async"), "legacy"),
    "python-0.2.2": (("sync-stream", "sync"), "legacy"),
    "typescript-0.4.4": (("stream", "complete"), "legacy"),
    "python-0.49": (("stream", "sync"), "modern"),
}
# the client label a legacy client is counted under (none for the 2023-06-01 one)
SDK_LABELS = {
    "python-0.2.10": "anthropic-python/0.2",
    "python-0.2.2": "anthropic-python/0.2",
    "typescript-0.4.4": "anthropic-typescript/0.4",
}
RUNNERS = {
    "python-0.2.10": run_py_legacy,
    "python-0.2.2": run_py_oldest,
    "typescript-0.4.4": run_js_legacy,
    "python-0.49": run_py_049,
}


def _streams(mode: str) -> bool:
    return mode in ("sync-stream", "async-stream", "stream")


def _matrix() -> list[Any]:
    cases = [
        pytest.param(client, modes[0], name, id=f"{client}-{modes[0]}-{name}")
        for client, (modes, _) in CLIENTS.items()
        for name in NAMES
    ]
    cases += [
        pytest.param(client, mode, ONE_NAME, id=f"{client}-{mode}-{ONE_NAME}")
        for client, (modes, _) in CLIENTS.items()
        for mode in modes[1:]
    ]
    return cases


def counter(metric: Any, *labels: str) -> float:
    """A counter's value (0 for a label set never seen)."""
    child = metric.labels(*labels) if labels else metric
    return float(child._value.get())


def assert_full_answer(client: str, mode: str, name: str, out: dict[str, Any], text: str) -> None:
    """The client got ``text`` whole, in its own format, under the name it asked for."""
    final = out["final"]
    assert final["completion"] == text or (client == "python-0.49" and _streams(mode))
    assert final["model"] == name and final["stop_reason"] == "stop_sequence"
    assert final["stop"] == "\n\nHuman:"
    if CLIENTS[client][1] == "legacy":
        assert final["truncated"] is False and final["exception"] is None
        if _streams(mode) and client != "typescript-0.4.4":
            texts = [e["completion"] for e in out["events"]]
            assert all(b.startswith(a) for a, b in itertools.pairwise(texts))  # cumulative
            assert texts[-1] == text
    else:  # 2023-06-01: incremental events, parsed by the SDK's own Completion type
        assert "truncated" not in final and "exception" not in final
        assert out["text"] == text
        if _streams(mode):
            assert len(out["events"]) == TOKENS + 1  # one per token, then the stop event
            assert out["events"][-1]["completion"] == ""


@pytest.mark.parametrize(("client", "mode", "name"), _matrix())
async def test_every_old_client_and_name_works_with_only_the_upstream_url(
    stack: StackFactory, client: str, mode: str, name: str
) -> None:
    s = await stack()
    result = await RUNNERS[client](s.url, mode, model=name)
    assert result.ok, result
    assert_full_answer(client, mode, name, result.out, TEXT)
    stats = s.sim.app[SIM_STATS_KEY]
    assert stats.by_path == {"/v1/messages": 1}  # exactly one call, never /v1/complete
    seen = stats.last_requests[-1]
    assert seen["anthropic_version"] == "2023-06-01"
    sent = dict(seen["json"])
    assert sent.pop("stream", False) is _streams(mode)  # non-streaming clients may leave it out
    assert sent == {
        "model": NAMES[name],
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "Say hello"}],
        "thinking": {"type": "disabled"},  # 5.x: on by default, and it would eat max_tokens
    }
    client_format = CLIENTS[client][1]
    assert counter(s.metrics.complete_models, name, NAMES[name], client_format) == 1
    sdk = SDK_LABELS.get(client)  # who the proxy took for a legacy client (0.2.2: no version)
    streamed = "true" if _streams(mode) else "false"
    assert sdk is None or counter(s.metrics.legacy_requests, sdk, streamed) == 1
    assert counter(s.metrics.requests, "convert", "complete_via_messages", "ok") == 1


# -- retirement fallback through real clients (spec section 6) -----------------------------------

RETIRED_FIRST = {"messages_balanced": "claude-sonnet-4-5,claude-sonnet-5-5"}
ALL_RETIRED = {"messages_balanced": "claude-sonnet-4-5,claude-3-opus-20240229"}


@pytest.mark.parametrize(
    ("client", "mode"),
    [
        ("python-0.2.10", "sync-stream"),
        ("python-0.2.2", "sync"),
        ("typescript-0.4.4", "stream"),
        ("python-0.49", "stream"),
    ],
)
async def test_a_retired_first_target_falls_back_to_the_next(
    stack: StackFactory, client: str, mode: str
) -> None:
    s = await stack(**RETIRED_FIRST)
    result = await RUNNERS[client](s.url, mode, model="claude-2")
    assert result.ok, result
    assert_full_answer(client, mode, "claude-2", result.out, TEXT)
    stats = s.sim.app[SIM_STATS_KEY]
    assert stats.by_path == {"/v1/messages": 2}
    models = [r["json"]["model"] for r in stats.last_requests]
    assert models == ["claude-sonnet-4-5", "claude-sonnet-5-5"]
    assert counter(s.metrics.messages_fallbacks) == 1
    client_format = CLIENTS[client][1]
    assert counter(s.metrics.complete_models, "claude-2", "claude-sonnet-5-5", client_format) == 1


@pytest.mark.parametrize(
    ("client", "mode"),
    [
        ("python-0.2.10", "sync"),
        ("python-0.2.2", "sync"),
        ("typescript-0.4.4", "complete"),
        ("python-0.49", "stream"),
    ],
)
async def test_when_every_target_is_retired_the_404_names_the_setting(
    stack: StackFactory, client: str, mode: str
) -> None:
    s = await stack(**ALL_RETIRED)
    result = await RUNNERS[client](s.url, mode, model="claude-2")
    assert not result.ok, result
    out = result.out
    if client == "python-0.2.10":
        assert "status code: 404" in out["error"]
        error = out["detail"]["error"]
    elif client == "python-0.2.2":  # it never looks at the status: the body is its answer
        error = out["final"]["error"]
    elif client == "python-0.49":
        assert out["error_class"] == "NotFoundError" and out["status"] == 404
        error = out["body"]["error"]
    else:  # the TypeScript SDK reports the status only
        assert "404" in out["error"]
        error = None
    if error is not None:
        assert error["type"] == "not_found_error"
        assert "[messages] balanced" in error["message"]
        assert "claude-sonnet-4-5" in error["message"]
    assert s.sim.app[SIM_STATS_KEY].by_path == {"/v1/messages": 2}
    assert counter(s.metrics.messages_fallbacks) == 1


# -- 2023-era request values (spec section 6, "Request translation") -----------------------------
# What 2023 code sent, through a real client that lets you set it, against the default target
# (claude-sonnet-5-5: no sampling, no prefill, thinking it can switch off) and a 5.x target whose
# thinking cannot be switched off (claude-opus-5-5: the proxy adds the thinking allowance).

LANGCHAIN_PROMPT = "\n\nHuman: hi\n\nAssistant: Sure, here is"
# case -> (the client's arguments, the fields the proxy must count as dropped)
ERA: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "temperature-with-top-p": (
        {"extra": {"temperature": 0.7, "top_p": 0.9}},
        ("temperature", "top_p"),
    ),
    # LangChain.js's defaults: -1 meant "disabled" in the 2023 API
    "minus-one": (
        {"extra": {"temperature": 1, "top_k": -1, "top_p": -1}},
        ("temperature", "top_k", "top_p"),
    ),
    "langchain-prefill": ({"prompt": LANGCHAIN_PROMPT}, ()),
    "max-tokens-8": ({"max_tokens": 8}, ()),
    "max-tokens-200000": ({"max_tokens": 200000}, ("max_tokens",)),
}
TARGETS = {"default": {}, "opus-5-5": {"messages_balanced": "claude-opus-5-5"}}
ALLOWANCE = 16000  # [messages] thinking_allowance's default
# one client per target, so each value goes through both client formats without doubling the runs:
# 0.2.10 (legacy, takes any keyword) and 0.49 (2023-06-01, the way LangChain's Anthropic LLM sent)
ERA_CLIENT = {"default": ("python-0.2.10", "sync-stream"), "opus-5-5": ("python-0.49", "stream")}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", ERA)
async def test_2023_era_values_work_and_what_changed_is_counted(
    stack: StackFactory, case: str, target: str
) -> None:
    s = await stack(**TARGETS[target])
    kw, dropped = ERA[case]
    client, mode = ERA_CLIENT[target]
    result = await RUNNERS[client](s.url, mode, model="claude-2", **kw)
    assert result.ok, result
    always_on = target == "opus-5-5"
    final = result.out["final"]
    if case == "max-tokens-8" and not always_on:
        assert final["completion"] == expected_text(8) and final["stop_reason"] == "max_tokens"
    else:  # with the allowance, 8 tokens of thinking budget still leave the text its room
        assert_full_answer(client, mode, "claude-2", result.out, TEXT)

    stats = s.sim.app[SIM_STATS_KEY]
    assert stats.by_path == {"/v1/messages": 1}
    sent = stats.last_requests[-1]["json"]
    asked = kw.get("max_tokens", 100)
    assert sent["model"] == ("claude-opus-5-5" if always_on else "claude-sonnet-5-5")
    if always_on:
        assert "thinking" not in sent  # it cannot be disabled: the allowance pays for it
        assert sent["max_tokens"] == min(asked + ALLOWANCE, 128000)
        assert counter(s.metrics.messages_thinking_blocks) == 1
    else:
        assert sent["thinking"] == {"type": "disabled"}
        assert sent["max_tokens"] == min(asked, 128000)
        assert counter(s.metrics.messages_thinking_blocks) == 0
    assert not {"temperature", "top_p", "top_k"} & set(sent)  # 5.x: no sampling parameter
    for field in ("temperature", "top_p", "top_k", "max_tokens", "other"):
        assert counter(s.metrics.messages_dropped_fields, field) == (field in dropped), field
    if case == "langchain-prefill":  # refused by every 5.x target: emulated, and counted
        assert sent["messages"][-1]["role"] == "user"
        assert "Sure, here is" in sent["messages"][-1]["content"]
        assert counter(s.metrics.messages_prefill, "emulated") == 1
    else:
        assert sent["messages"] == [{"role": "user", "content": "Say hello"}]
        assert counter(s.metrics.messages_prefill, "emulated") == 0


@pytest.mark.parametrize("target", TARGETS)
async def test_typescript_0_4_4_with_langchain_js_defaults_and_tags(
    stack: StackFactory, target: str
) -> None:
    """What LangChain.js sent through the npm SDK: -1 sampling values, a stop sequence, and the
    SDK's ``tags`` field, which the Messages API refuses as an extra input."""
    s = await stack(**TARGETS[target])
    extra = {
        "temperature": 1,
        "top_k": -1,
        "top_p": -1,
        "stop_sequences": ["\n\nHuman:"],
        "tags": {"app": "legacy-app"},
    }
    result = await run_js_legacy(
        s.url, "stream", model="claude-2", extra=extra, prompt=LANGCHAIN_PROMPT
    )
    assert result.ok, result
    assert_full_answer("typescript-0.4.4", "stream", "claude-2", result.out, TEXT)
    sent = s.sim.app[SIM_STATS_KEY].last_requests[-1]["json"]
    assert "tags" not in sent and not {"temperature", "top_p", "top_k"} & set(sent)
    assert sent["stop_sequences"] == ["\n\nHuman:"]
    for field in ("temperature", "top_k", "top_p", "other"):
        assert counter(s.metrics.messages_dropped_fields, field) == 1, field
    assert counter(s.metrics.messages_prefill, "emulated") == 1


async def test_a_prefill_goes_to_the_tier_target_that_accepts_one(stack: StackFactory) -> None:
    """The fast tier lists claude-haiku-4-5, which accepts a prefill: a LangChain prompt goes
    there as it is, with temperature and top_p reduced to what a 4.5 model takes (spec section 6:
    keep temperature, drop top_p). A 2023-06-01 client, so its format is checked too."""
    s = await stack()
    result = await run_py_049(
        s.url,
        "stream",
        model="claude-instant-1.2",
        prompt=LANGCHAIN_PROMPT,
        extra={"temperature": 0.7, "top_p": 0.9},
    )
    assert result.ok, result
    assert_full_answer("python-0.49", "stream", "claude-instant-1.2", result.out, TEXT)
    sent = s.sim.app[SIM_STATS_KEY].last_requests[-1]["json"]
    assert sent["model"] == "claude-haiku-4-5"
    assert sent["messages"] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Sure, here is"},
    ]
    assert sent["temperature"] == 0.7 and "top_p" not in sent and "thinking" not in sent
    assert counter(s.metrics.messages_prefill, "sent") == 1
    assert counter(s.metrics.messages_dropped_fields, "top_p") == 1
    assert (
        counter(s.metrics.complete_models, "claude-instant-1.2", "claude-haiku-4-5", "modern") == 1
    )


async def test_an_out_of_range_value_is_a_400_that_names_the_field(stack: StackFactory) -> None:
    """Values outside the Messages ranges are refused before anything is sent (spec section 6),
    with the field named: the client's author can see what to change."""
    s = await stack()
    result = await run_py_legacy(s.url, "sync", model="claude-2", extra={"temperature": 1.5})
    assert not result.ok and "status code: 400" in result.out["error"], result
    error = result.out["detail"]["error"]
    assert error["type"] == "invalid_request_error" and error["message"].startswith("temperature")
    assert s.upstream_requests == 0


async def test_python_0_49_sees_a_mid_stream_error_as_an_error(stack: StackFactory) -> None:
    """A 2023-06-01 client gets the error event of its own format and raises: a failed stream
    never looks like a short answer."""
    s = await stack("error-after:3")
    result = await run_py_049(s.url, "stream", model="claude-2")
    assert not result.ok, result
    assert "overloaded_error" in result.out["error"]
    assert "".join(e["completion"] for e in result.out["events"]) == expected_text(3)
    assert s.sim.app[SIM_STATS_KEY].by_path == {"/v1/messages": 1}


# -- an emulated prefill, removed from the answer (spec section 6) --------------------------------

PREFILL_PROMPT = "\n\nHuman: Say hello\n\nAssistant: Sure, here it is:"


@pytest.mark.parametrize(
    ("client", "mode"),
    [(run_py_legacy, "sync-stream"), (run_py_049, "stream"), (run_py_049, "sync")],
)
async def test_an_emulated_prefill_is_removed_from_the_answer(
    stack: StackFactory, client: Any, mode: str
) -> None:
    """No balanced target takes a prefill, so the proxy asks the model to begin with it; a model
    that does (the simulator's answer_prefix) must not repeat it to a Text Completions client,
    which got only what followed its prefill."""
    s = await stack(answer_prefix="Sure, here it is:")
    result = await client(s.url, mode, model="claude-2.1", prompt=PREFILL_PROMPT)
    assert result.ok, result
    # the whole text: 0.2.10's cumulative final event, 0.49's increments joined
    assert result.out.get("text", result.out["final"]["completion"]) == TEXT
    sent = s.sim.app[SIM_STATS_KEY].last_requests[-1]["json"]
    assert sent["messages"][-1]["role"] == "user"  # no assistant turn: the target refuses it
    assert "Sure, here it is:" in sent["messages"][-1]["content"]
    assert s.metrics.messages_prefill.labels("emulated")._value.get() == 1


async def test_without_the_prefix_in_the_answer_nothing_is_removed(stack: StackFactory) -> None:
    s = await stack()
    result = await run_py_legacy(s.url, "sync-stream", model="claude-2.1", prompt=PREFILL_PROMPT)
    assert result.ok and result.out["final"]["completion"] == TEXT
