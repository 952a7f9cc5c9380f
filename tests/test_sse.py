"""The SSE decoder and encoder (proxy.sse): WHATWG rules at the byte level."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.errors import StreamError
from proxy.sse import Decoder, Event, EventTooLarge, encode


def decode(chunks: list[bytes], max_event_bytes: int = 1 << 20) -> list[Event]:
    d = Decoder(max_event_bytes)
    events = [e for c in chunks for e in d.feed(c)]
    return events + d.close()


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


@pytest.mark.parametrize("eol", [b"\n", b"\r", b"\r\n"])
def test_line_ends(eol: bytes) -> None:
    data = b"event: a" + eol + b"data: 1" + eol + eol + b"data: 2" + eol + eol
    expected = [Event("a", "1"), Event("message", "2")]
    assert decode([data]) == expected
    assert decode(bytewise(data)) == expected


def test_crlf_split_across_reads_is_one_line_end() -> None:
    # "data: 1\r" | "\n\r\n": the LF after the CR must not count as an empty line of its own.
    assert decode([b"data: 1\r", b"\n", b"data: 2\r\n\r\n"]) == [Event("message", "1\n2")]


def test_utf8_split_across_reads() -> None:
    data = "data: é日😀\n\n".encode()
    for cut in range(1, len(data)):
        assert decode([data[:cut], data[cut:]]) == [Event("message", "é日😀")]


def test_invalid_utf8_is_replaced() -> None:
    assert decode([b"data: a\xffb\xe2\x82\n\n"]) == [Event("message", "a\ufffdb\ufffd")]


@pytest.mark.parametrize("cut", [1, 2, 3, 4])
def test_bom_stripped_even_when_split(cut: int) -> None:
    data = b"\xef\xbb\xbfdata: x\n\n"
    assert decode([data[:cut], data[cut:]]) == [Event("message", "x")]


def test_only_one_leading_bom_is_stripped() -> None:
    assert decode([b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\n"]) == []  # second BOM starts a field name


def test_fields() -> None:
    data = (
        b": comment\n"
        b"retry: 10\n"
        b"id: 4\n"
        b"unknown: field\n"
        b"data:no space\n"
        b"data:  two spaces\n"
        b"data\n"  # a field with no colon: data with an empty value
        b"event:custom\n"
        b"\n"
    )
    assert decode([data]) == [Event("custom", "no space\n two spaces\n")]


def test_empty_data_dispatches_but_no_data_does_not() -> None:
    assert decode([b"event: x\n\ndata:\n\n"]) == [Event("message", "")]


def test_event_type_resets_after_dispatch() -> None:
    assert decode([b"event: a\ndata: 1\n\ndata: 2\n\n"]) == [Event("a", "1"), Event("message", "2")]


def test_last_event_without_blank_line_dispatched_at_clean_end() -> None:
    assert decode([b"data: 1\n"]) == [Event("message", "1")]
    assert decode([b"data: 1"]) == [Event("message", "1")]


def test_max_event_size() -> None:
    d = Decoder(max_event_bytes=32)
    assert d.feed(b"data: ok\n\n") == [Event("message", "ok")]
    with pytest.raises(StreamError) as info:
        d.feed(b"data: " + b"x" * 40 + b"\n\n")
    assert info.value.reason == "event_too_large"


def test_max_event_size_counts_an_incomplete_line() -> None:
    d = Decoder(max_event_bytes=32)
    with pytest.raises(EventTooLarge):
        for _ in range(10):
            d.feed(b"xxxxxxxx")  # no line end ever: must not grow without bound


def test_events_before_an_oversized_one_are_kept() -> None:
    d = Decoder(max_event_bytes=32)
    with pytest.raises(EventTooLarge) as info:
        d.feed(b"data: a\n\ndata: " + b"x" * 40 + b"\n\n")
    assert info.value.events == [Event("message", "a")]


def test_encode() -> None:
    assert encode("x") == b"data: x\n\n"
    assert encode("a\nb", event="e", id="7") == b"event: e\nid: 7\ndata: a\ndata: b\n\n"


_field_text = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n"), max_size=20
)


@settings(max_examples=200, deadline=None)
@given(
    events=st.lists(
        st.tuples(
            st.from_regex(r"[a-z_]{1,10}", fullmatch=True),
            st.lists(_field_text, min_size=1, max_size=4).map("\n".join),
        ),
        max_size=8,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=10),
    eol=st.sampled_from(["\n", "\r", "\r\n"]),
)
def test_round_trip_any_split(events: list[tuple[str, str]], cuts: list[int], eol: str) -> None:
    data = b"".join(encode(d, event=e) for e, d in events).replace(b"\n", eol.encode())
    cuts = sorted({c for c in cuts if 0 < c < len(data)})
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    # encode() writes " " after the colon and the decoder strips exactly one, so data survives
    assert decode(chunks) == [Event(e, d) for e, d in events]


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=400), cuts=st.lists(st.integers(0, 400), max_size=8))
def test_any_bytes_only_the_cores_error(data: bytes, cuts: list[int]) -> None:
    cuts = sorted({c for c in cuts if 0 < c < len(data)})
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    try:
        whole = decode([data], max_event_bytes=64)
    except StreamError:
        whole = None
    try:
        split = decode(chunks, max_event_bytes=64)
    except StreamError:
        split = None
    assert whole == split  # the same events, or the same error, however the bytes were cut
