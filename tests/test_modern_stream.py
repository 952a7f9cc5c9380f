"""2023-06-01 output for Text Completions through Messages, and prefill stripping on streams."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.convert import StreamConverter
from tests.test_backpressure import messages_stream, split_events, sse, text_received
from tests.test_convert import _KINDED_SEEDS, _replace_a_value


def test_modern_needs_a_messages_upstream() -> None:
    with pytest.raises(ValueError, match="kind 'messages'"):
        StreamConverter("complete", client_format="modern")
    with pytest.raises(ValueError, match="kind 'messages'"):
        StreamConverter("complete", strip_prefix="Sure")


def test_no_id_lines_for_modern_clients() -> None:
    conv = StreamConverter("messages", client_format="modern", event_id="req_1")
    out = conv.feed(messages_stream([" a"], [0], "error")) + conv.close()
    assert b"id: " not in out
    assert out.count(b"event: ") == len(split_events(out))


def test_pings_dropped_by_setting() -> None:
    conv = StreamConverter("messages", client_format="modern", pings=False)
    assert conv.feed(sse("ping", {"type": "ping"})) == b""
    conv = StreamConverter("messages", client_format="modern")
    assert conv.feed(sse("ping", {"type": "ping"})) == b'event: ping\ndata: {"type":"ping"}\n\n'


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("upstream_closed", "upstream closed the stream early"),
        ("upstream_timeout", "upstream sent nothing within the idle timeout"),
        ("drain_deadline", "proxy shut down before the stream finished"),
    ],
)
def test_rule_6_endings_are_api_errors(reason: str, message: str) -> None:
    conv = StreamConverter("messages", client_format="modern")
    conv.feed(messages_stream([" a"], [], "eof"))
    out = conv.abort(reason)  # type: ignore[arg-type]
    error = {"type": "error", "error": {"type": "api_error", "message": message}}
    assert out == b"event: error\ndata: " + json.dumps(error, separators=(",", ":")).encode() + (
        b"\n\n"
    )
    assert conv.failed and conv.outcome == reason and conv.stats().events_out["error"] == 1


def test_an_error_object_that_cannot_be_echoed_is_an_invalid_event() -> None:
    conv = StreamConverter("messages", client_format="modern")
    deep = b"[" * 1010 + b"]" * 1010
    out = conv.feed(b'event: error\ndata: {"error": {"type": "x", "d": ' + deep + b"}}\n\n")
    assert conv.outcome == "invalid_event"
    assert json.loads(split_events(out)[-1].split(b"data: ")[1])["error"] == {
        "type": "api_error",
        "message": "upstream sent an invalid event",
    }


def test_redacted_thinking_counts_as_thinking() -> None:
    conv = StreamConverter("messages", client_format="modern")
    data = (
        sse("content_block_start", {"index": 0, "content_block": {"type": "redacted_thinking"}})
        + sse("content_block_start", {"index": 1, "content_block": {"type": "server_tool_use"}})
        + sse("message_stop", {})
    )
    conv.feed(data)
    assert conv.stats().translator == {
        "dropped_blocks": 1,
        "thinking_blocks": 1,
        "other_stop_reason": 0,
        "prefill_stripped": 0,
    }


@settings(max_examples=300, deadline=None)
@given(
    prefix=st.sampled_from(["Sure", "Sure, here is", "The answer:", "{", "é😀"]),
    lead=st.sampled_from(["", " ", "\n\n", " \t"]),
    present=st.booleans(),
    rest=st.text(max_size=20),
    cuts=st.lists(st.integers(1, 60), max_size=8),
    client_format=st.sampled_from(["legacy", "modern"]),
    end=st.sampled_from(["stop", "error", "eof"]),
)
def test_prefix_stripping_does_not_depend_on_how_the_text_is_split(
    prefix: str,
    lead: str,
    present: bool,
    rest: str,
    cuts: list[int],
    client_format: str,
    end: str,
) -> None:
    answer = lead + (prefix if present else "") + rest
    cuts = sorted({c for c in cuts if c < len(answer)})
    tokens = [answer[a:b] for a, b in zip([0, *cuts], [*cuts, len(answer)], strict=True)]
    tokens = [t for t in tokens if t] or [""]
    conv = StreamConverter(
        "messages",
        client_format=client_format,  # type: ignore[arg-type]
        strip_prefix=prefix,
    )
    out = conv.feed(messages_stream(tokens, [], end)) + conv.close()
    body = answer.lstrip()
    expected = body[len(prefix) :] if body.startswith(prefix) else answer
    assert text_received(out, client_format) == expected
    assert conv.stats().translator["prefill_stripped"] == int(body.startswith(prefix))


@settings(max_examples=200, deadline=None)
@given(
    seed=st.sampled_from([s for s in _KINDED_SEEDS if s[0] == "messages"]),
    rnd=st.randoms(use_true_random=False),
    n_mutations=st.integers(1, 4),
    strip_prefix=st.sampled_from(["", "Sure", " H"]),
    room=st.integers(-1, 400),
)
def test_modern_output_ends_cleanly_or_as_a_failure_with_values_of_the_wrong_type(
    seed: tuple[str, bytes], rnd: random.Random, n_mutations: int, strip_prefix: str, room: int
) -> None:
    _, data = seed
    lines = data.split(b"\n")
    data_lines = [i for i, line in enumerate(lines) if line.startswith(b"data: {")]
    for _ in range(n_mutations):
        i = rnd.choice(data_lines)
        lines[i] = _replace_a_value(lines[i], rnd)
    conv = StreamConverter("messages", client_format="modern", strip_prefix=strip_prefix)
    conv.room = room
    out = conv.feed(b"\n".join(lines)) + conv.take_pending() + conv.close()
    assert conv.finished
    events = split_events(out)
    last = json.loads(events[-1].split(b"data: ", 1)[1])
    if conv.outcome == "ok":
        assert last["type"] == "completion" and last["stop_reason"] is not None
    else:
        assert events[-1].startswith(b"event: error\n") and last["type"] == "error"
    for event in events:
        obj = json.loads(event.split(b"data: ", 1)[1])  # every event is valid JSON
        assert not {"truncated", "exception"} & obj.keys()
