"""Real legacy SDKs that nobody here wrote, through the proxy, against a 2023-06-01 upstream.

anthropic==0.2.10 (sync and async, streaming and not) and @anthropic-ai/sdk@0.4.4 must get the full
text with the legacy fields; pointed at the upstream directly they must fail, which proves these
tests can fail. "hostile" runs the upstream with 3-byte writes, CR LF line ends and comment lines.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import pytest

from proxy.simulator import SIM_STATS_KEY, expected_text
from tests.clients.harness import run_js_legacy, run_py_current, run_py_legacy, run_py_modern
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


@pytest.mark.parametrize("mode", ["sync-stream", "async-stream"])
async def test_python_0_2_10_directly_fails(stack: StackFactory, mode: str) -> None:
    s = await stack()
    result = await run_py_legacy(s.sim_url, mode)
    assert not result.ok  # it chokes on "event: completion": the test can fail


async def test_python_0_2_10_non_streaming_directly_lacks_legacy_fields(
    stack: StackFactory,
) -> None:
    s = await stack()
    result = await run_py_legacy(s.sim_url, "sync")
    assert "truncated" not in result.out["final"] and "exception" not in result.out["final"]


@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("mode", ["stream", "complete"])
async def test_typescript_0_4_4_through_the_proxy(
    stack: StackFactory, upstream: str, mode: str
) -> None:
    s = await stack(UPSTREAMS[upstream])
    result = await run_js_legacy(s.url, mode)
    assert result.ok, result
    assert_legacy_final(result.out["final"])


async def test_typescript_0_4_4_directly_returns_an_empty_completion(stack: StackFactory) -> None:
    s = await stack()
    result = await run_js_legacy(s.sim_url, "stream")
    assert result.ok and result.out["final"]["completion"] == ""  # the silent failure


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


async def test_modern_client_sees_the_upstream_stream_unchanged(stack: StackFactory) -> None:
    s = await stack()
    through, direct = await asyncio.gather(run_py_modern(s.url), run_py_modern(s.sim_url))
    assert through.ok and direct.ok, (through, direct)

    def strip(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in e.items() if k not in ("log_id", "id")} for e in events]

    assert strip(through.out["events"]) == strip(direct.out["events"])
    assert through.out["text"] == TEXT
    versions = [r["anthropic_version"] for r in s.sim.app[SIM_STATS_KEY].last_requests]
    assert versions == ["2023-06-01", "2023-06-01"]


# -- Messages-only models (spec section 6, issue 6) -----------------------------------------------

MAPPED = {"messages_models": "claude-2.1=claude-sonnet-4-5"}


@pytest.mark.parametrize("mode", ["sync-stream", "async-stream", "sync", "async"])
async def test_python_0_2_10_on_a_messages_only_model(stack: StackFactory, mode: str) -> None:
    s = await stack(**MAPPED)
    result = await run_py_legacy(s.url, mode, model="claude-2.1")
    assert result.ok, result
    final = result.out["final"]
    assert_legacy_final(final)
    assert final["model"] == "claude-2.1" and final["stop"] == "\n\nHuman:"
    stats = s.sim.app[SIM_STATS_KEY]
    assert stats.by_path == {"/v1/messages": 1}  # never /v1/complete
    sent = stats.last_requests[-1]["json"]
    assert sent["model"] == "claude-sonnet-4-5"
    assert sent["messages"] == [{"role": "user", "content": "Say hello"}]
    assert sent["max_tokens"] == 100
    assert s.metrics.requests.labels("convert", "complete_via_messages", "ok")._value.get() == 1


@pytest.mark.parametrize("mode", ["stream", "complete"])
async def test_typescript_0_4_4_on_a_messages_only_model(stack: StackFactory, mode: str) -> None:
    s = await stack(**MAPPED)
    result = await run_js_legacy(s.url, mode, model="claude-2.1")
    assert result.ok, result
    assert_legacy_final(result.out["final"])
    assert result.out["final"]["model"] == "claude-2.1"
    assert s.sim.app[SIM_STATS_KEY].by_path == {"/v1/messages": 1}


async def test_unmapped_models_keep_using_text_completions(stack: StackFactory) -> None:
    s = await stack(**MAPPED)
    result = await run_py_legacy(s.url, "sync-stream", model="claude-2.0")
    assert result.ok and result.out["final"]["completion"] == TEXT
    assert s.sim.app[SIM_STATS_KEY].by_path == {"/v1/complete": 1}


async def test_untranslatable_prompt_is_a_400_that_says_why(stack: StackFactory) -> None:
    s = await stack(**MAPPED)
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
