"""Bounded output under backpressure (issue 14): ``room`` is a byte budget per read.

The guarantee, for both client formats and any chunking: one ``feed`` returns the non-final
events it rendered while it still had room (so all but the last of them fit in ``room``, and none
when ``room <= 0``), plus the ending (final event and [DONE], or the error event; for 2023-06-01
clients the held increment written just before it). A reader whose room never runs out gets
exactly the output of the boolean era, and the client always ends up with the whole text.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.convert import StreamConverter
from proxy.translate.output import UNLIMITED

DONE = b"data: [DONE]\n\n"


def sse(name: str, obj: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(obj)}\n\n".encode()


def messages_stream(tokens: list[str], pings: list[int], end: str) -> bytes:
    events = [
        sse("message_start", {"type": "message_start", "message": {"id": "msg_1", "model": "m"}}),
        sse("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
    ]
    for t in tokens:
        events.append(
            sse("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": t}})
        )
    for at in pings:
        events.insert(min(at + 1, len(events)), sse("ping", {"type": "ping"}))
    if end == "stop":
        events.append(sse("message_delta", {"delta": {"stop_reason": "end_turn"}}))
        events.append(sse("message_stop", {}))
    elif end == "error":
        events.append(sse("error", {"error": {"type": "overloaded_error", "message": "x"}}))
    return b"".join(events)


def completions_stream(tokens: list[str], pings: list[int], end: str) -> bytes:
    def completion(text: str, stop_reason: str | None = None) -> bytes:
        return sse("completion", {"completion": text, "stop_reason": stop_reason, "model": "m"})

    events = [completion(t) for t in tokens]
    for at in pings:
        events.insert(min(at, len(events)), sse("ping", {"type": "ping"}))
    if end == "stop":
        events.append(completion("", "stop_sequence"))
    elif end == "error":
        events.append(sse("error", {"error": {"type": "overloaded_error", "message": "x"}}))
    return b"".join(events)


def split_events(out: bytes) -> list[bytes]:
    """Client events, each with its blank line."""
    return [e + b"\n\n" for e in out.split(b"\n\n")[:-1]]


def is_ending(event: bytes) -> bool:
    if event == DONE or event.startswith(b"event: error\n") or b'"error":{' in event:
        return True
    if event.startswith(b"event: ping") or b"data: " not in event:
        return False
    obj = json.loads(event.split(b"data: ", 1)[1])
    return obj.get("stop_reason") is not None


def non_final(events: list[bytes], client_format: str) -> list[bytes]:
    """The events of one read that are not its ending."""
    for i, event in enumerate(events):
        if is_ending(event):
            cut = i
            # a 2023-06-01 ending writes the held increment first: it belongs to the ending
            if client_format == "modern" and i and events[i - 1].startswith(b"event: completion"):
                cut = i - 1
            return events[:cut]
    return events


def text_received(out: bytes, client_format: str) -> str:
    texts = []
    for event in split_events(out):
        if b"data: {" not in event or event.startswith(b"event: ping"):
            continue
        obj = json.loads(event.split(b"data: ", 1)[1])
        texts.append(obj.get("completion", ""))
    if client_format == "modern":
        return "".join(texts)
    return texts[-1] if texts else ""


_tokens = st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=25)
_kinds = st.sampled_from([("messages", "legacy"), ("messages", "modern"), ("complete", "legacy")])


@settings(max_examples=300, deadline=None)
@given(
    kind=_kinds,
    tokens=_tokens,
    pings=st.lists(st.integers(0, 25), max_size=4),
    end=st.sampled_from(["stop", "error", "eof"]),
    cuts=st.lists(st.integers(1, 4000), max_size=12),
    rooms=st.lists(st.integers(-50, 600) | st.just(UNLIMITED), min_size=1, max_size=13),
    takes=st.lists(st.booleans(), max_size=13),
)
def test_one_feed_returns_at_most_room_plus_one_event_plus_the_ending(
    kind: tuple[str, str],
    tokens: list[str],
    pings: list[int],
    end: str,
    cuts: list[int],
    rooms: list[int],
    takes: list[bool],
) -> None:
    upstream_kind, client_format = kind
    make = messages_stream if upstream_kind == "messages" else completions_stream
    data = make(tokens, pings, end)
    cuts = sorted({c for c in cuts if c < len(data)})
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    conv = StreamConverter(upstream_kind, client_format=client_format, event_id="r1")  # type: ignore[arg-type]
    out = bytearray()
    for i, chunk in enumerate(chunks):
        if i < len(takes) and takes[i]:
            out += conv.take_pending()  # the client drained: what was held goes out
        room = rooms[i % len(rooms)]
        conv.room = room
        got = conv.feed(chunk)
        out += got
        sent = non_final(split_events(got), client_format)
        if room <= 0:
            assert sent == [], "nothing but the ending goes out without room"
        elif sent:
            # every event but the last was rendered with room left, and the last one too
            assert sum(len(e) for e in sent[:-1]) < room
        assert b"".join(sent) == got[: sum(len(e) for e in sent)], "the ending comes last"
    conv.room = UNLIMITED
    out += conv.take_pending()
    out += conv.close()
    assert conv.finished
    if end == "stop":
        assert conv.outcome == "ok"
        assert text_received(bytes(out), client_format) == "".join(tokens)
    else:
        # an error ending carries (legacy) or follows (modern) every character received
        assert text_received(bytes(out), client_format) == "".join(tokens)


@settings(max_examples=150, deadline=None)
@given(
    kind=_kinds,
    tokens=_tokens,
    pings=st.lists(st.integers(0, 25), max_size=4),
    end=st.sampled_from(["stop", "error", "eof"]),
    cuts=st.lists(st.integers(1, 4000), max_size=12),
)
def test_unlimited_room_gives_the_output_of_a_reader_never_behind(
    kind: tuple[str, str], tokens: list[str], pings: list[int], end: str, cuts: list[int]
) -> None:
    upstream_kind, client_format = kind
    make = messages_stream if upstream_kind == "messages" else completions_stream
    data = make(tokens, pings, end)
    cuts = sorted({c for c in cuts if c < len(data)})
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]

    def run(setup: str) -> bytes:
        conv = StreamConverter(upstream_kind, client_format=client_format)  # type: ignore[arg-type]
        if setup == "behind_false":
            conv.behind = False
        out = b""
        for chunk in chunks:
            if setup == "room_each_read":
                conv.room = UNLIMITED
            out += conv.feed(chunk)
            assert conv.take_pending() == b""  # nothing is ever held
        return out + conv.close()

    default = run("default")
    assert run("behind_false") == default
    assert run("room_each_read") == default
    whole = StreamConverter(upstream_kind, client_format=client_format)  # type: ignore[arg-type]
    assert whole.feed(data) + whole.close() == default  # and chunking does not matter


def test_the_issue_14_read_is_bounded() -> None:
    """One read holding a 300 KB event and 3,000 tiny ones: 1.7 GB of snapshots with a flag."""
    big = "x" * 300_000
    tokens = [big] + ["y"] * 3000
    data = completions_stream(tokens, [], "stop")
    conv = StreamConverter()
    conv.room = 64 * 1024
    out = conv.feed(data[: len(data) - 200])  # everything but the final event
    assert len(out) < 64 * 1024 + 310_000
    assert conv.take_pending() != b""  # the latest snapshot was held, not dropped
    conv.room = 0
    out = conv.feed(data[len(data) - 200 :]) + conv.close()
    assert out.endswith(DONE)  # the ending is never held
    assert json.loads(split_events(out)[-2][6:])["completion"] == "".join(tokens)


def test_behind_is_the_boolean_view_of_room() -> None:
    conv = StreamConverter()
    assert conv.room >= UNLIMITED and not conv.behind
    conv.behind = True
    assert conv.room == 0 and conv.behind
    conv.room = 5
    assert not conv.behind
    conv.room = -3
    assert conv.behind
    conv.behind = False
    assert conv.room == UNLIMITED


def test_room_is_charged_for_every_event() -> None:
    conv = StreamConverter()
    conv.room = 1000
    out = conv.feed(completions_stream(["a"], [0], "eof"))
    assert conv.room == 1000 - len(out)
    pending_conv = StreamConverter("messages", client_format="modern")
    pending_conv.room = 0
    assert pending_conv.feed(messages_stream(["a", "b"], [], "eof")) == b""
    pending_conv.room = 500
    taken = pending_conv.take_pending()
    assert pending_conv.room == 500 - len(taken)


def test_modern_increments_merge_into_one_pending_event() -> None:
    conv = StreamConverter("messages", client_format="modern", legacy_model="claude-2.1")
    data = messages_stream([" a", " b", " c"], [1, 2], "eof")
    conv.room = 0
    assert conv.feed(data) == b""  # held, and the pings dropped
    pending = conv.take_pending()
    assert pending == (
        b'event: completion\ndata: {"type":"completion","id":"msg_1","completion":" a b c",'
        b'"stop_reason":null,"model":"claude-2.1","stop":null,"log_id":"msg_1"}\n\n'
    )
    assert conv.take_pending() == b""  # once
    stats = conv.stats()
    assert stats.snapshots_skipped == 2  # three increments, one event
    assert stats.events_out["snapshot"] == 1 and stats.events_out["ping"] == 0


def test_modern_ending_writes_the_held_increment_first() -> None:
    conv = StreamConverter("messages", client_format="modern")
    conv.room = 0
    out = conv.feed(messages_stream([" a", " b"], [], "stop"))
    events = split_events(out)
    assert len(events) == 2
    first, final = (json.loads(e.split(b"data: ", 1)[1]) for e in events)
    assert (first["completion"], first["stop_reason"]) == (" a b", None)  # not marked final
    assert (final["completion"], final["stop_reason"]) == ("", "stop_sequence")
    assert conv.take_pending() == b""


def test_modern_held_text_joined_by_a_live_increment_counts_as_skipped() -> None:
    conv = StreamConverter("messages", client_format="modern")
    conv.feed(messages_stream([" a"], [], "eof"))
    conv.room = 0
    conv.feed(
        sse("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "b"}})
    )
    conv.room = UNLIMITED
    out = conv.feed(
        sse("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "c"}})
    )
    assert json.loads(out.split(b"data: ", 1)[1])["completion"] == "bc"
    assert conv.take_pending() == b""
    assert conv.stats().snapshots_skipped == 1
    assert conv.stats().events_out["snapshot"] == 2
