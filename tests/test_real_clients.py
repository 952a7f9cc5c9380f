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
