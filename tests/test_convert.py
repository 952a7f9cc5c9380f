"""StreamConverter: chunking invariance, snapshot skipping (rule 7), stats, and fuzzing."""

from __future__ import annotations

import json
import random
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy import jsonfast
from proxy.convert import StreamConverter
from proxy.jsonfast import escape_str

DONE = b"data: [DONE]\n\n"


def completion(text: str, stop_reason: str | None = None) -> bytes:
    obj = {"type": "completion", "completion": text, "stop_reason": stop_reason, "model": "m"}
    return b"event: completion\ndata: " + json.dumps(obj).encode() + b"\n\n"


PING = b'event: ping\ndata: {"type": "ping"}\n\n'


def legacy_events(out: bytes) -> list[dict[str, object]]:
    """Parse the legacy data events (independently of the core's decoder)."""
    found = []
    for block in out.decode().split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data: ") and line != "data: [DONE]" and line != "data: {}":
                found.append(json.loads(line[6:]))
    return found


def stream(tokens: list[str], final: bool = True) -> bytes:
    body = b"".join(completion(t) for t in tokens)
    return body + (completion("", "stop_sequence") if final else b"")


# -- chunking invariance on generated streams ------------------------------------------------

_tokens = st.lists(st.text(max_size=6), min_size=1, max_size=15)


@settings(max_examples=150, deadline=None)
@given(
    tokens=_tokens,
    eol=st.sampled_from([b"\n", b"\r", b"\r\n"]),
    pings=st.lists(st.integers(0, 15), max_size=3),
    cuts=st.lists(st.integers(0, 5000), max_size=20),
)
def test_any_split_gives_the_same_bytes_and_the_full_text(
    tokens: list[str], eol: bytes, pings: list[int], cuts: list[int]
) -> None:
    events = [completion(t) for t in tokens]
    for at in pings:
        events.insert(min(at, len(events)), PING)
    data = (b"".join(events) + completion("", "stop_sequence")).replace(b"\n", eol)
    whole = StreamConverter()
    expected = whole.feed(data) + whole.close()
    cuts = sorted({c for c in cuts if 0 < c < len(data)})
    conv = StreamConverter()
    out = b"".join(
        conv.feed(data[a:b]) for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)
    )
    out += conv.close()
    assert out == expected
    assert out.endswith(DONE)
    final = legacy_events(out)[-1]
    assert final["completion"] == "".join(tokens)
    assert final["stop_reason"] == "stop_sequence"
    assert conv.outcome == "ok"


@settings(max_examples=300, deadline=None)
@given(text=st.text())
def test_escape_is_json(text: str) -> None:
    assert json.loads(b'"' + escape_str(text) + b'"') == text


_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(value=_JSON_VALUES)
def test_dumps_writes_what_the_json_encoder_writes(value: object) -> None:
    """jsonfast.dumps' shortcuts for null and strings give the encoder's exact bytes."""
    encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    assert jsonfast.dumps(value) == encoder.encode(value).encode("utf-8", "backslashreplace")


# -- snapshot skipping (rule 7) ----------------------------------------------------------------


def test_behind_holds_one_snapshot_and_hands_over_the_latest() -> None:
    conv = StreamConverter()
    assert legacy_events(conv.feed(completion(" a")))[0]["completion"] == " a"
    conv.behind = True
    for t in [" b", " c", " d"]:
        assert conv.feed(completion(t)) == b""
    assert conv.feed(PING) == b""  # pings are not queued behind a slow client
    conv.behind = False
    pending = conv.take_pending()
    assert [e["completion"] for e in legacy_events(pending)] == [" a b c d"]
    assert conv.take_pending() == b""  # handed over once
    stats = conv.stats()
    assert stats.snapshots_skipped == 2  # " a b" and " a b c" were never sent
    assert stats.events_out["snapshot"] == 2


def test_final_event_and_done_are_never_held_back() -> None:
    conv = StreamConverter()
    conv.behind = True
    assert conv.feed(completion(" a") + completion(" b")) == b""
    out = conv.feed(completion("", "max_tokens"))
    assert out.endswith(DONE)
    assert [e["completion"] for e in legacy_events(out)] == [" a b"]
    assert conv.take_pending() == b""  # the pending snapshot was superseded by the final one
    assert conv.stats().snapshots_skipped == 2


def test_errors_are_never_held_back() -> None:
    conv = StreamConverter()
    conv.behind = True
    conv.feed(completion(" a"))
    out = conv.abort("upstream_closed")
    (event,) = legacy_events(out)
    assert event["completion"] == " a"
    assert event["exception"] == "api_error: upstream closed the stream early"
    assert DONE not in out
    assert conv.failed


def test_memory_is_the_text_plus_one_event_while_behind() -> None:
    """Rule 7: O(text) plus one event, never a queue of snapshots, however far behind."""
    token = " word"
    n = 5000
    events = [completion(token) for _ in range(n)]
    conv = StreamConverter()
    conv.behind = True
    tracemalloc.start()
    try:
        for ev in events:
            assert conv.feed(ev) == b""
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    text_bytes = len(token) * n  # 25 kB of text; every skipped snapshot would add that much
    assert current < 2 * text_bytes + 16_384
    assert peak < 3 * text_bytes + 65_536
    out = conv.take_pending()
    assert len(out) < text_bytes + 200
    assert conv.stats().snapshots_skipped == n - 1


def test_stats_count_everything() -> None:
    conv = StreamConverter()
    data = (
        completion(" a") + PING + b"event: future\ndata: {}\n\n" + completion("", "stop_sequence")
    )
    out = conv.feed(data) + conv.close()
    s = conv.stats()
    assert s.events_in == {"completion": 2, "ping": 1, "error": 0, "unknown": 1}
    assert s.events_out == {"snapshot": 2, "ping": 1, "error": 0, "done": 1}
    assert (s.bytes_in, s.bytes_out) == (len(data), len(out))
    assert s.outcome == "ok"


def test_eof_before_stop_reason_is_a_failure() -> None:
    conv = StreamConverter()
    out = conv.feed(stream([" a"], final=False)) + conv.close()
    assert DONE not in out
    assert conv.failed and conv.outcome == "upstream_closed"


def test_event_id_only_on_the_first_event() -> None:
    conv = StreamConverter(event_id="req_1")
    out = conv.feed(stream([" a", " b"])) + conv.close()
    assert out.startswith(b"id: req_1\ndata: ")
    assert out.count(b"id: ") == 1


def test_pings_dropped_by_setting() -> None:
    conv = StreamConverter(pings=False)
    assert conv.feed(PING) == b""


# -- mutation fuzzing: feed/close never raise, and a stream always ends one of two ways ----------

_SEED_FILES = sorted((Path(__file__).parent / "transcripts").glob("*.upstream"))
_SEEDS = [p.read_bytes() for p in _SEED_FILES]
# (kind, upstream bytes): Messages seeds (m*) go through the Messages translator
_KINDED_SEEDS = [
    ("messages" if p.name.startswith("m") else "complete", p.read_bytes()) for p in _SEED_FILES
]


@settings(max_examples=400, deadline=None)
@given(
    seed=st.sampled_from(_SEEDS),
    rnd=st.randoms(use_true_random=False),
    n_mutations=st.integers(1, 8),
    behind=st.booleans(),
)
def test_mutated_streams_end_cleanly_or_as_a_failure(
    seed: bytes, rnd: random.Random, n_mutations: int, behind: bool
) -> None:
    data = bytearray(seed)
    for _ in range(n_mutations):
        op = rnd.randrange(3)
        pos = rnd.randrange(len(data) + 1)
        if op == 0 and data:
            data[min(pos, len(data) - 1)] = rnd.randrange(256)
        elif op == 1:
            data[pos:pos] = bytes([rnd.choice([10, 13, 58, 34, 92, 0xFF, rnd.randrange(256)])])
        elif data:
            del data[min(pos, len(data) - 1)]
    conv = StreamConverter(max_event_bytes=512)
    conv.behind = behind
    out = bytearray()
    pos = 0
    while pos < len(data):
        step = rnd.randrange(1, 64)
        out += conv.feed(bytes(data[pos : pos + step]))
        pos += step
    conv.behind = False
    out += conv.take_pending()
    out += conv.close()
    assert_ends_cleanly_or_as_a_failure(conv, bytes(out))


def assert_ends_cleanly_or_as_a_failure(conv: StreamConverter, out: bytes) -> None:
    assert conv.finished
    if conv.outcome == "ok":
        assert out.endswith(DONE)
        assert out.count(DONE) == 1
    else:
        assert DONE not in out
        assert b'"error":{' in out.rsplit(b"\n\n", 2)[-2]  # the last event is the error event


# JSON values of every type, and the ones no JSON writer can echo: what a confused or hostile
# upstream may put where a string, an integer or an object belongs
_ODD_VALUES = [
    b"null", b"true", b"0", b"-1", b"1.5", b'""', b'"x"', b"[]", b"[0]", b"{}", b'{"a":[1]}',
    b"NaN", b"Infinity", b"1e400", b"18446744073709551616", b'"\\ud800"',
    b"[" * 1100 + b"]" * 1100, b"[" * 1010 + b"]" * 1010,
]  # fmt: skip


def _replace_a_value(line: bytes, rnd: random.Random) -> bytes:
    """``data: {json}`` with one value (at any depth) replaced by an odd one."""
    try:
        obj = json.loads(line[6:])
    except ValueError:  # the seed's own broken line (invalid JSON or UTF-8): keep it
        return line
    paths: list[list[str]] = []

    def walk(node: object, path: list[str]) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                paths.append([*path, k])
                walk(v, [*path, k])

    walk(obj, [])
    if not paths:
        return line
    path = rnd.choice(paths)
    marker = "\x00odd\x00"
    node = obj
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = marker
    text = json.dumps(obj).encode().replace(json.dumps(marker).encode(), rnd.choice(_ODD_VALUES))
    return b"data: " + text


@settings(max_examples=300, deadline=None)
@given(
    seed=st.sampled_from(_KINDED_SEEDS),
    rnd=st.randoms(use_true_random=False),
    n_mutations=st.integers(1, 4),
)
def test_values_of_the_wrong_type_end_cleanly_or_as_a_failure(
    seed: tuple[str, bytes], rnd: random.Random, n_mutations: int
) -> None:
    """Well-formed events whose values have the wrong type, nest too deep or are not JSON at all:
    both translators end the stream as ok or as the legacy error event, and raise nothing."""
    kind, data = seed
    lines = data.split(b"\n")
    data_lines = [i for i, line in enumerate(lines) if line.startswith(b"data: {")]
    if not data_lines:
        return
    for _ in range(n_mutations):
        i = rnd.choice(data_lines)
        lines[i] = _replace_a_value(lines[i], rnd) if lines[i].startswith(b"data: {") else lines[i]
    conv = StreamConverter(kind, event_id="req_1")  # type: ignore[arg-type]
    out = conv.feed(b"\n".join(lines)) + conv.close()
    assert_ends_cleanly_or_as_a_failure(conv, out)
    for line in out.split(b"\n"):
        if line.startswith(b"data: {"):
            json.loads(line[6:], parse_constant=lambda c: pytest.fail(f"{c} written out"))


def test_error_event_wording_without_a_message_and_with_an_unechoable_error() -> None:
    conv = StreamConverter()
    out = conv.feed(b'event: error\ndata: {"error": {"type": "overloaded_error"}}\n\n')
    assert legacy_events(out)[-1]["exception"] == "overloaded_error"  # no ": None"
    conv = StreamConverter()
    deep = b"[" * 1010 + b"]" * 1010  # orjson reads it; json cannot write it back
    out = conv.feed(b'event: error\ndata: {"error": {"type": "x", "d": ' + deep + b"}}\n\n")
    assert conv.outcome == "invalid_event"
    assert legacy_events(out)[-1]["exception"] == "api_error: upstream sent an invalid event"


def test_a_held_snapshot_superseded_by_a_live_one_counts_as_skipped() -> None:
    conv = StreamConverter()
    conv.feed(completion("a"))
    conv.behind = True
    conv.feed(completion("b"))  # held
    conv.behind = False
    conv.feed(completion("c"))  # sent, superseding the held "ab"
    assert conv.take_pending() == b""
    assert conv.stats().snapshots_skipped == 1
    assert conv.stats().events_out["snapshot"] == 2


def test_a_finished_stream_leaves_no_cyclic_garbage() -> None:
    """Every stream freed by reference counting alone: a reference cycle per stream (a table of
    bound methods did that) left the garbage collector thousands of objects a second to scan,
    pausing every stream at once (issue 18's profile)."""
    import gc

    gc.collect()
    gc.disable()
    try:
        for kind in ("complete", "messages"):
            for _ in range(200):
                conv = StreamConverter(kind, legacy_model="claude-2.1")  # type: ignore[arg-type]
                conv.feed(b"event: ping\ndata: {}\n\n")
                conv.close()
                del conv
        assert gc.collect() == 0
    finally:
        gc.enable()
