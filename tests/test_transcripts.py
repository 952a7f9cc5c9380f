"""Transcripts: raw upstream bytes in, the exact client bytes out (tests/transcripts/).

Files named m* are Messages streams (a Text Completions request served by a Messages-only model,
spec section 6); the rest are Text Completions streams. NAME.upstream is what the upstream sends;
NAME.legacy is what a 2023-01-01 client gets, NAME.modern what a 2023-06-01 client gets
(``client_format="modern"``, Messages streams only); a transcript has one or both. Each pair is
run whole, one byte at a time, and cut at Hypothesis-chosen points; all three must give the
expected bytes. A NAME.json beside it holds converter options (``kind``, ``legacy_model``,
``strip_prefix``, ...), the expected outcome, how the upstream ended ("close" for a clean end,
"abort:<reason>" for a reset or timeout the shell saw), and optionally the expected counts of what
was dropped or mapped ("counts"); they hold for every client format.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.convert import StreamConverter

HERE = Path(__file__).parent / "transcripts"
NAMES = sorted(p.stem for p in HERE.glob("*.upstream"))
FORMATS = ("legacy", "modern")
# (transcript, client format): one case per expected-bytes file
CASES = [f"{n}.{f}" for n in NAMES for f in FORMATS if (HERE / f"{n}.{f}").exists()]


def run(case: str, chunks: list[bytes]) -> bytes:
    name, client_format = case.rsplit(".", 1)
    opts_file = HERE / f"{name}.json"
    opts = json.loads(opts_file.read_text()) if opts_file.exists() else {}
    conv = StreamConverter(
        opts.get("kind", "complete"),
        client_format=client_format,  # type: ignore[arg-type]
        strip_prefix=opts.get("strip_prefix", ""),
        legacy_model=opts.get("legacy_model"),
        pings=opts.get("pings", True),
        event_id=opts.get("event_id"),
        max_event_bytes=opts.get("max_event_bytes", 1 << 20),
    )
    out = b"".join(conv.feed(chunk) for chunk in chunks)
    end = opts.get("end", "close")
    out += conv.close() if end == "close" else conv.abort(end.split(":", 1)[1])
    assert conv.outcome == opts["outcome"], "every transcript states its outcome"
    stats = conv.stats()
    # what was dropped or mapped, counted for the metrics (rule 4; spec section 6)
    counted = {**stats.translator, "unknown_events": stats.events_in["unknown"]}
    for key, expected in opts.get("counts", {}).items():
        assert counted[key] == expected, (key, counted)
    return out


def load(case: str) -> tuple[bytes, bytes]:
    name = case.rsplit(".", 1)[0]
    return (HERE / f"{name}.upstream").read_bytes(), (HERE / case).read_bytes()


def test_there_are_enough_transcripts() -> None:
    assert len([n for n in NAMES if not n.startswith("m")]) >= 15  # Text Completions
    assert len([n for n in NAMES if n.startswith("m")]) >= 10  # Messages (kind "messages")
    assert len([c for c in CASES if c.endswith(".modern")]) >= 10  # 2023-06-01 clients
    for name in NAMES:
        assert (HERE / f"{name}.legacy").exists(), name
        # only a Messages stream is rendered for 2023-06-01 clients (they read /v1/complete as is)
        assert name.startswith("m") or not (HERE / f"{name}.modern").exists(), name


@pytest.mark.parametrize("case", CASES)
def test_whole(case: str) -> None:
    upstream, expected = load(case)
    assert run(case, [upstream]) == expected


@pytest.mark.parametrize("case", CASES)
def test_one_byte_at_a_time(case: str) -> None:
    upstream, expected = load(case)
    assert run(case, [upstream[i : i + 1] for i in range(len(upstream))]) == expected


@pytest.mark.parametrize("case", CASES)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_random_splits(case: str, data: st.DataObject) -> None:
    upstream, expected = load(case)
    cuts = sorted(
        data.draw(
            st.sets(st.integers(min_value=1, max_value=max(1, len(upstream) - 1)), max_size=12)
        )
    )
    chunks = [upstream[a:b] for a, b in zip([0, *cuts], [*cuts, len(upstream)], strict=True)]
    assert run(case, chunks) == expected


def test_spec_example_is_byte_exact() -> None:
    """The spec's own example (section 2), typed in here from the spec, not from a file."""
    expected = (
        b'data: {"completion":" Hello","stop_reason":null,"stop":null,"model":"claude-2.0",'
        b'"log_id":null,"truncated":false,"exception":null}\n\n'
        b'data: {"completion":" Hello!","stop_reason":null,"stop":null,"model":"claude-2.0",'
        b'"log_id":null,"truncated":false,"exception":null}\n\n'
        b"event: ping\ndata: {}\n\n"
        b'data: {"completion":" Hello!","stop_reason":"stop_sequence","stop":"\\n\\nHuman:",'
        b'"model":"claude-2.0","log_id":"compl_01Xy","truncated":false,"exception":null}\n\n'
        b"data: [DONE]\n\n"
    )
    upstream, _ = load("01_spec_example.legacy")
    assert run("01_spec_example.legacy", [upstream]) == expected


@pytest.mark.parametrize("case", [c for c in CASES if c.endswith(".legacy")])
def test_failure_never_ends_with_done(case: str) -> None:
    _, expected = load(case)
    if b'"exception":null}\n\ndata: [DONE]' not in expected:
        assert b"[DONE]" not in expected
        assert b'"error":{' in expected


@pytest.mark.parametrize("case", [c for c in CASES if c.endswith(".modern")])
def test_modern_output_is_the_2023_06_01_format(case: str) -> None:
    """Section 2's upstream format: named events only, no legacy fields, no [DONE], no ids; the
    stream ends with a completion event that has a stop_reason, or with an error event."""
    _, expected = load(case)
    events = expected.split(b"\n\n")
    assert events.pop() == b""
    for event in events:
        name, data = event.split(b"\n")
        assert name in (b"event: completion", b"event: ping", b"event: error")
        obj = json.loads(data.removeprefix(b"data: "))
        assert not {"truncated", "exception"} & obj.keys()
        if name == b"event: completion":
            keys = ["type", "id", "completion", "stop_reason", "model", "stop", "log_id"]
            assert list(obj) == keys
    last = json.loads(events[-1].split(b"\n")[1][6:])
    assert last["type"] == "error" or last["stop_reason"] is not None
    assert b"[DONE]" not in expected
