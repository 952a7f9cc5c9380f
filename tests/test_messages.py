"""Legacy requests on Messages-only models: request translation tables (spec section 6)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from proxy.convert import StreamConverter
from proxy.errors import BadRequest
from proxy.translate.messages import (
    MAX_LEADING_WHITESPACE,
    map_stop,
    message_to_completion,
    prompt_to_messages,
    strip_prefill,
)

H, A = "\n\nHuman:", "\n\nAssistant:"


@pytest.mark.parametrize(
    ("prompt", "system", "messages"),
    [
        (f"{H} Hello{A}", None, [("user", "Hello")]),
        (f"{H} Hello{A} Hi!{H} How are you?{A}", None,
         [("user", "Hello"), ("assistant", "Hi!"), ("user", "How are you?")]),
        (f"You are terse.{H} Hello{A}", "You are terse.", [("user", "Hello")]),
        (f"{H} Name a colour{A} The colour is", None,
         [("user", "Name a colour"), ("assistant", "The colour is")]),  # prefill
        (f"{H} Hi{A} Sure:  \n", None, [("user", "Hi"), ("assistant", "Sure:")]),  # trailing ws
        (f"{H} line one\nline two{A}", None, [("user", "line one\nline two")]),
    ],
)  # fmt: skip
def test_prompt_to_messages(
    prompt: str, system: str | None, messages: list[tuple[str, str]]
) -> None:
    got_system, got = prompt_to_messages(prompt)
    assert got_system == system
    assert [(m["role"], m["content"]) for m in got] == messages


@pytest.mark.parametrize(
    ("prompt", "why"),
    [
        ("Hello there", "must contain"),
        (f"{A} Hi{H} Hello{A}", "must contain"),
        (f"{H} one{H} two{A}", "turns out of order, two Human turns in a row (turn 2)"),
        (f"{H} Hello", 'must end with an "\\n\\nAssistant:" turn'),
        (f"{H}  {A}", "turn 1 (Human) is empty"),
    ],
)
def test_untranslatable_prompts_say_why(prompt: str, why: str) -> None:
    with pytest.raises(BadRequest) as info:
        prompt_to_messages(prompt)
    assert why in info.value.message
    assert info.value.status == 400 and info.value.error_type == "invalid_request_error"


@pytest.mark.parametrize(
    ("reason", "sequence", "expected"),
    [
        ("end_turn", None, ("stop_sequence", "\n\nHuman:", True)),
        ("stop_sequence", "END", ("stop_sequence", "END", True)),
        ("max_tokens", None, ("max_tokens", None, True)),
        ("tool_use", None, ("stop_sequence", None, False)),
        ("refusal", None, ("stop_sequence", None, False)),
        ("pause_turn", None, ("stop_sequence", None, False)),
    ],
)
def test_stop_reason_table(reason: str, sequence: str | None, expected: tuple[Any, ...]) -> None:
    assert map_stop(reason, sequence) == expected


def test_non_streaming_message_to_completion() -> None:
    message = {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "thinking", "thinking": "x"}, {"type": "text", "text": " Hi"},
                    {"type": "text", "text": " there"}],
        "stop_reason": "end_turn", "stop_sequence": None, "usage": {},
    }  # fmt: skip
    result = message_to_completion(json.dumps(message).encode(), "claude-2.1")
    assert result is not None
    body, counts = result
    assert body == (
        b'{"type":"completion","id":"msg_1","completion":" Hi there","stop_reason":'
        b'"stop_sequence","model":"claude-2.1","stop":"\\n\\nHuman:","log_id":"msg_1",'
        b'"truncated":false,"exception":null}'
    )
    assert counts == {
        "dropped_blocks": 0, "thinking_blocks": 1, "other_stop_reason": 0, "prefill_stripped": 0
    }  # fmt: skip
    assert message_to_completion(b'{"type": "error"}', None) is None


def test_non_streaming_modern_body_has_no_legacy_fields() -> None:
    """Section 3's 2023-06-01 body, in that key order, for a 2023-06-01 client."""
    message = {
        "id": "msg_2", "type": "message", "model": "claude-haiku-5-5",
        "content": [{"type": "redacted_thinking", "data": "x"},
                    {"type": "tool_use", "id": "t", "name": "f", "input": {}},
                    {"type": "text", "text": "\nSure, 4."}],
        "stop_reason": "tool_use", "stop_sequence": None,
    }  # fmt: skip
    result = message_to_completion(
        json.dumps(message).encode(), "claude-instant-1", client_format="modern",
        strip_prefix="Sure,",
    )  # fmt: skip
    assert result is not None
    body, counts = result
    assert body == (
        b'{"type":"completion","id":"msg_2","completion":" 4.","stop_reason":"stop_sequence",'
        b'"model":"claude-instant-1","stop":null,"log_id":"msg_2"}'
    )
    assert counts == {
        "dropped_blocks": 1, "thinking_blocks": 1, "other_stop_reason": 1, "prefill_stripped": 1
    }  # fmt: skip


@pytest.mark.parametrize(
    ("text", "prefix", "expected"),
    [
        ("Sure, here", "Sure", (", here", True)),
        ("  \nSure here", "Sure", (" here", True)),
        ("Sure", "Sure", ("", True)),
        ("No. Sure", "Sure", ("No. Sure", False)),
        (" Su", "Sure", (" Su", False)),  # the answer ended before the prefix did
        ("sure", "Sure", ("sure", False)),
        (" x", "", (" x", False)),
    ],
)
def test_strip_prefill(text: str, prefix: str, expected: tuple[str, bool]) -> None:
    assert strip_prefill(text, prefix) == expected
    message = {"id": "m", "content": [{"type": "text", "text": text}], "stop_reason": "end_turn"}
    result = message_to_completion(json.dumps(message).encode(), None, strip_prefix=prefix)
    assert result is not None
    assert json.loads(result[0])["completion"] == expected[0]
    assert result[1]["prefill_stripped"] == int(expected[1])


def test_non_streaming_bodies_with_odd_values_never_raise() -> None:
    body = {
        "id": "msg_1",
        "content": [{"type": "text", "text": None}, {"type": "text", "text": "a"}],
    }
    out = message_to_completion(json.dumps(body).encode(), None)
    assert out is not None and json.loads(out[0])["completion"] == "a"
    out = message_to_completion(b'{"content": [], "stop_reason": ["x"]}', None)
    assert out is not None and out[1]["other_stop_reason"] == 1  # an unknown stop reason
    out = message_to_completion(b'{"content": [{"type": ["x"]}, 5], "id": ["y"]}', None)
    assert out is not None and out[1]["dropped_blocks"] == 2
    assert message_to_completion(b"[" * 3000 + b"]" * 3000, None) is None




def _sse(name: str, obj: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(obj)}\n\n".encode()


def _delta(text: str) -> bytes:
    return _sse(
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
    )


@pytest.mark.parametrize("client_format", ["legacy", "modern"])
def test_the_model_asked_for_is_reported_even_before_message_start(client_format: str) -> None:
    """An overloaded error as the very first event still names the model the client asked for."""
    conv = StreamConverter(
        "messages", client_format=client_format, legacy_model="claude-2.1"  # type: ignore[arg-type]
    )
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    out = conv.feed(_delta("Hi") + _sse("error", error))
    assert b'"model":"claude-2.1"' in out
    assert conv.failed


def test_whitespace_that_runs_on_before_an_emulated_prefill_is_not_held_for_ever() -> None:
    """A degenerate answer of newlines: held text goes out once it passes the bound, so each
    delta does not copy everything held so far (quadratic) and the client sees it."""
    conv = StreamConverter("messages", strip_prefix="Sure")
    out = b"".join(conv.feed(_delta("\n")) for _ in range(MAX_LEADING_WHITESPACE + 10))
    assert out.count(b'"completion"') > 0  # released, not held to the end
    final = conv.feed(_delta("Sure, hi")) + conv.close()
    last = [e for e in final.split(b"\n\n") if e.startswith(b"data: {")][-1]
    text = json.loads(last.removeprefix(b"data: "))["completion"]  # the final snapshot
    assert text == "\n" * (MAX_LEADING_WHITESPACE + 10) + "Sure, hi"
    assert conv.stats().translator["prefill_stripped"] == 0


def test_a_little_whitespace_before_the_prefill_goes_with_it() -> None:
    conv = StreamConverter("messages", strip_prefix="Sure")
    out = conv.feed(_delta("\n\n") + _delta("Su") + _delta("re, hi")) + conv.close()
    assert b'"completion":", hi"' in out
    assert conv.stats().translator["prefill_stripped"] == 1
