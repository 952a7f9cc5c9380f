"""Request translation with target profiles (spec section 6, "Request translation")."""

from __future__ import annotations

import json
from typing import Any

import pytest

from proxy.errors import BadRequest
from proxy.modeltable import DEFAULT_PROFILES, DROPPED_FIELDS, RESTRICTIVE, Profile
from proxy.translate.messages import PREFILL_INSTRUCTION, Attempt, plan, translate

H, A = "\n\nHuman:", "\n\nAssistant:"
NEW = "claude-sonnet-5-5"  # 5.x: sampling none, prefill refused, thinking default_on
OLD = "claude-haiku-4-5"  # 4.x: sampling one, prefill accepted, thinking off
ALWAYS = "claude-opus-5-5"  # thinking always_on
ALLOWANCE = 4096


def run(fields: dict[str, Any], model: str) -> tuple[dict[str, Any], Attempt]:
    attempt = translate(fields, model, DEFAULT_PROFILES[model], thinking_allowance=ALLOWANCE)
    assert attempt.model == model
    assert set(attempt.dropped) <= set(DROPPED_FIELDS)
    return json.loads(attempt.body), attempt


def legacy(**extra: Any) -> dict[str, Any]:
    return {"model": "claude-2.1", "prompt": f"{H} Hi{A}", "max_tokens_to_sample": 300, **extra}


def test_exact_bytes_for_a_4x_target() -> None:
    fields = legacy(prompt=f"Be brief.{H} Hi{A} Sure", temperature=0.5, stream=True)
    attempt = translate(fields, OLD, DEFAULT_PROFILES[OLD], thinking_allowance=ALLOWANCE)
    assert attempt.body == (
        b'{"model":"claude-haiku-4-5","max_tokens":300,"messages":[{"role":"user","content":"Hi"},'
        b'{"role":"assistant","content":"Sure"}],"system":"Be brief.","temperature":0.5,'
        b'"stream":true}'
    )
    assert (attempt.prefill, attempt.strip_prefix, attempt.dropped) == ("sent", "", ())


def test_exact_bytes_for_a_5x_target() -> None:
    attempt = translate(legacy(), NEW, DEFAULT_PROFILES[NEW], thinking_allowance=ALLOWANCE)
    assert attempt.body == (
        b'{"model":"claude-sonnet-5-5","max_tokens":300,"messages":[{"role":"user",'
        b'"content":"Hi"}],"thinking":{"type":"disabled"}}'
    )
    assert (attempt.prefill, attempt.strip_prefix, attempt.dropped) == ("none", "", ())


# -- sampling -------------------------------------------------------------------------------------


def test_2023_era_sampling_values() -> None:
    fields = legacy(temperature=1, top_p=0.7, top_k=5)  # what 2023 scripts commonly sent
    body, attempt = run(fields, OLD)  # one: temperature with top_p is a 400; keep temperature
    assert (body["temperature"], body["top_k"]) == (1, 5)
    assert "top_p" not in body
    assert attempt.dropped == ("top_p",)
    body, attempt = run(fields, NEW)  # none: no sampling parameter at all
    assert not {"temperature", "top_p", "top_k"} & body.keys()
    assert attempt.dropped == ("temperature", "top_p", "top_k")
    body, attempt = run(fields, ALWAYS)
    assert attempt.dropped == ("temperature", "top_p", "top_k")


def test_one_keeps_top_p_when_it_is_alone() -> None:
    body, attempt = run(legacy(top_p=0.9), OLD)
    assert body["top_p"] == 0.9 and attempt.dropped == ()
    profile = Profile(1000, "all", "accepted", "off")
    attempt = translate(
        legacy(temperature=0.2, top_p=0.9, top_k=3), "m", profile, thinking_allowance=0
    )
    body = json.loads(attempt.body)
    assert (body["temperature"], body["top_p"], body["top_k"]) == (0.2, 0.9, 3)
    assert attempt.dropped == ()


@pytest.mark.parametrize("model", [OLD, NEW])
def test_minus_one_is_dropped_and_counted(model: str) -> None:
    body, attempt = run(legacy(temperature=-1, top_p=-1, top_k=-1.0), model)
    assert not {"temperature", "top_p", "top_k"} & body.keys()
    assert attempt.dropped == ("temperature", "top_p", "top_k")


def test_null_sampling_values_are_absent_values() -> None:
    body, attempt = run(legacy(temperature=None, top_p=None, top_k=None), OLD)
    assert not {"temperature", "top_p", "top_k"} & body.keys()
    assert attempt.dropped == ()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", 1.5), ("temperature", -0.1), ("temperature", 2), ("temperature", -2),
        ("temperature", "0.5"), ("temperature", True), ("temperature", [0.5]),
        ("temperature", float("nan")), ("top_p", 1.01), ("top_p", -0.5), ("top_p", False),
        ("top_p", {}), ("top_k", -2), ("top_k", -0.5), ("top_k", 2.5), ("top_k", "5"),
        ("top_k", True), ("top_k", float("inf")),
    ],
)  # fmt: skip
def test_out_of_range_sampling_is_refused_whatever_the_target(field: str, value: Any) -> None:
    fields = legacy(**{field: value})
    for model in (OLD, NEW, ALWAYS):
        with pytest.raises(BadRequest) as info:
            translate(fields, model, DEFAULT_PROFILES[model], thinking_allowance=ALLOWANCE)
        assert info.value.message.startswith(f"{field}: ")
        assert info.value.status == 400
    with pytest.raises(BadRequest, match=f"^{field}: "):
        plan(fields, [NEW, OLD], DEFAULT_PROFILES)


@pytest.mark.parametrize(("field", "value"), [("temperature", 0), ("top_p", 1), ("top_k", 0)])
def test_range_bounds_are_accepted(field: str, value: Any) -> None:
    profile = Profile(1000, "all", "accepted", "off")
    attempt = translate(legacy(**{field: value}), "m", profile, thinking_allowance=0)
    assert json.loads(attempt.body)[field] == value


def test_integral_float_top_k_is_sent_as_an_integer() -> None:
    body, _ = run(legacy(top_k=5.0), OLD)
    assert body["top_k"] == 5 and isinstance(body["top_k"], int)


# -- max_tokens and thinking ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "asked", "sent", "capped", "thinking"),
    [
        (OLD, 8, 8, False, None),
        (OLD, 200000, 64000, True, None),
        (NEW, 8, 8, False, {"type": "disabled"}),
        (NEW, 200000, 128000, True, {"type": "disabled"}),
        (ALWAYS, 8, 8 + ALLOWANCE, False, None),
        (ALWAYS, 127000, 128000, False, None),  # the allowance is capped too, silently
        (ALWAYS, 200000, 128000, True, None),
    ],
)
def test_max_tokens_capped_and_thinking(
    model: str, asked: int, sent: int, capped: bool, thinking: dict[str, str] | None
) -> None:
    body, attempt = run(legacy(max_tokens_to_sample=asked), model)
    assert body["max_tokens"] == sent
    assert body.get("thinking") == thinking
    assert attempt.dropped == (("max_tokens",) if capped else ())


def test_restrictive_profile_adds_the_allowance() -> None:
    attempt = translate(legacy(max_tokens_to_sample=8), "x", RESTRICTIVE, thinking_allowance=100)
    body = json.loads(attempt.body)
    assert body["max_tokens"] == 108 and "thinking" not in body


@pytest.mark.parametrize("value", [0, -5, 1.5, "300", True, None, [300]])
def test_max_tokens_to_sample_must_be_a_positive_integer(value: Any) -> None:
    with pytest.raises(BadRequest, match=r"^max_tokens_to_sample: "):
        run(legacy(max_tokens_to_sample=value), OLD)
    fields = legacy()
    del fields["max_tokens_to_sample"]
    with pytest.raises(BadRequest, match=r"^max_tokens_to_sample: "):
        run(fields, OLD)


# -- prefill ----------------------------------------------------------------------------------


LANGCHAIN = f"{H} x{A} Sure"  # LangChain's prefill


def test_prefill_sent_where_accepted() -> None:
    body, attempt = run(legacy(prompt=LANGCHAIN + "  \n"), OLD)
    assert body["messages"] == [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": "Sure"},  # trailing whitespace removed
    ]
    assert (attempt.prefill, attempt.strip_prefix) == ("sent", "")


def test_prefill_emulated_where_refused() -> None:
    body, attempt = run(legacy(prompt=LANGCHAIN), NEW)
    instruction = (
        "\n\nBegin your response with exactly the text between <prefill> and </prefill> "
        "(without the tags), then continue it:\n<prefill>Sure</prefill>"
    )
    assert body["messages"] == [{"role": "user", "content": "x" + instruction}]
    assert PREFILL_INSTRUCTION.format(prefill="Sure") == instruction
    assert (attempt.prefill, attempt.strip_prefix) == ("emulated", "Sure")


def test_emulated_prefill_goes_on_the_last_user_turn() -> None:
    prompt = f"{H} one{A} two{H} three{A} The answer is"
    body, attempt = run(legacy(prompt=prompt), NEW)
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][0]["content"] == "one"
    assert body["messages"][2]["content"].startswith("three\n\nBegin your response")
    assert body["messages"][2]["content"].endswith("<prefill>The answer is</prefill>")
    assert attempt.strip_prefix == "The answer is"


def test_no_prefill_is_none() -> None:
    for model in (OLD, NEW):
        _, attempt = run(legacy(prompt=f"{H} Hi{A}   "), model)
        assert (attempt.prefill, attempt.strip_prefix) == ("none", "")


# -- the other fields -----------------------------------------------------------------------------


def test_stop_sequences_keep_strings_and_drop_blank_ones() -> None:
    body, attempt = run(legacy(stop_sequences=["", "END", "  \n", "\n\nHuman:"]), NEW)
    assert body["stop_sequences"] == ["END", "\n\nHuman:"]
    assert attempt.dropped == ("stop_sequences",)
    body, attempt = run(legacy(stop_sequences=[" "]), NEW)
    assert "stop_sequences" not in body and attempt.dropped == ("stop_sequences",)
    body, attempt = run(legacy(stop_sequences=[]), NEW)
    assert "stop_sequences" not in body and attempt.dropped == ()


@pytest.mark.parametrize("value", ["END", 5, {"a": "b"}, ["END", 5], ["END", None]])
def test_stop_sequences_of_the_wrong_type_are_refused(value: Any) -> None:
    with pytest.raises(BadRequest, match=r"^stop_sequences: "):
        run(legacy(stop_sequences=value), OLD)


def test_metadata_user_id_carries_over_only_as_a_string() -> None:
    body, _ = run(legacy(metadata={"user_id": "u-1", "other": "x"}), NEW)
    assert body["metadata"] == {"user_id": "u-1"}
    for metadata in ({"user_id": 5}, {"other": "x"}, "u-1", None):
        body, attempt = run(legacy(metadata=metadata), NEW)
        assert "metadata" not in body and attempt.dropped == ()


@pytest.mark.parametrize(("value", "sent"), [(True, True), (False, False), ("yes", False)])
def test_stream_carries_over_as_a_boolean(value: Any, sent: bool) -> None:
    body, _ = run(legacy(stream=value), NEW)
    assert body["stream"] is sent
    body, _ = run(legacy(), NEW)
    assert "stream" not in body


def test_extra_fields_are_not_forwarded_and_counted_as_other() -> None:
    fields = legacy(tags={"app": "x"}, anthropic_version="2023-01-01", stream=True)
    body, attempt = run(fields, NEW)
    assert set(body) == {"model", "max_tokens", "messages", "thinking", "stream"}
    assert attempt.dropped == ("other", "other")


def test_npm_sdk_request_on_both_targets() -> None:
    """What @anthropic-ai/sdk 0.4.x sends by default (tags, -1 sampling), end to end."""
    fields = {
        "model": "claude-instant-1", "prompt": f"{H} Hi{A}", "max_tokens_to_sample": 20,
        "stop_sequences": ["\n\nHuman:"], "temperature": 1, "top_k": -1, "top_p": -1,
        "tags": {}, "stream": True,
    }  # fmt: skip
    body, attempt = run(fields, OLD)
    assert body == {
        "model": OLD, "max_tokens": 20, "messages": [{"role": "user", "content": "Hi"}],
        "temperature": 1, "stop_sequences": ["\n\nHuman:"], "stream": True,
    }  # fmt: skip
    assert sorted(attempt.dropped) == ["other", "top_k", "top_p"]
    body, attempt = run(fields, NEW)
    assert "temperature" not in body
    assert sorted(attempt.dropped) == ["other", "temperature", "top_k", "top_p"]


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"prompt": 5, "max_tokens_to_sample": 5}, "prompt: a string is required"),
        ({"max_tokens_to_sample": 5}, "prompt: a string is required"),
        ({"prompt": "Hello", "max_tokens_to_sample": 5}, "must contain"),
        ({"prompt": f"{H} Hi", "max_tokens_to_sample": 5}, "must end with"),
    ],
)
def test_untranslatable_requests_are_refused_by_plan_and_translate(
    fields: dict[str, Any], why: str
) -> None:
    with pytest.raises(BadRequest, match=why):
        plan(fields, [NEW], DEFAULT_PROFILES)
    with pytest.raises(BadRequest, match=why):
        run(fields, NEW)


# -- plan -------------------------------------------------------------------------------------


def test_plan_keeps_the_tier_order_without_a_prefill() -> None:
    got = plan(legacy(), ["claude-sonnet-5-5", "claude-sonnet-4-6"], DEFAULT_PROFILES)
    assert [m for m, _ in got] == ["claude-sonnet-5-5", "claude-sonnet-4-6"]
    assert got[0][1] == DEFAULT_PROFILES["claude-sonnet-5-5"]


def test_plan_puts_prefill_accepting_targets_first() -> None:
    tier = ["claude-haiku-5-5", "claude-x-1", "claude-haiku-4-5", "claude-opus-4-1-20250805"]
    got = plan(legacy(prompt=LANGCHAIN), tier, DEFAULT_PROFILES)
    assert [m for m, _ in got] == [
        "claude-haiku-4-5", "claude-opus-4-1-20250805", "claude-haiku-5-5", "claude-x-1",
    ]  # fmt: skip
    assert got[1][1] == DEFAULT_PROFILES["claude-opus-4-1"]  # the dated ID's alias
    assert got[3][1] == RESTRICTIVE
    got = plan(legacy(prompt=LANGCHAIN), ["claude-haiku-5-5"], DEFAULT_PROFILES)
    assert [m for m, _ in got] == ["claude-haiku-5-5"]  # nothing accepts it: emulated there
    assert plan(legacy(), [], DEFAULT_PROFILES) == []


def test_attempt_is_frozen() -> None:
    _, attempt = run(legacy(), NEW)
    with pytest.raises(AttributeError):
        attempt.model = "x"  # type: ignore[misc]
