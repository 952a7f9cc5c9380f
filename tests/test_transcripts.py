"""Transcripts: raw upstream bytes in, the exact legacy bytes out (tests/transcripts/).

Files named m* are Messages streams (a legacy request served by a Messages-only model, spec
section 6); the rest are Text Completions streams. Each pair is run whole, one byte at a time,
and cut at Hypothesis-chosen points; all three must give the expected bytes. A NAME.json beside a
pair holds converter options, the expected outcome, how the upstream ended ("close" for a clean
end, "abort:<reason>" for a reset or timeout the shell saw), and optionally the expected counts of
what was dropped or mapped ("counts").
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


def run(name: str, chunks: list[bytes]) -> bytes:
    opts_file = HERE / f"{name}.json"
    opts = json.loads(opts_file.read_text()) if opts_file.exists() else {}
    conv = StreamConverter(
        opts.get("kind", "complete"),
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


def load(name: str) -> tuple[bytes, bytes]:
    return (HERE / f"{name}.upstream").read_bytes(), (HERE / f"{name}.legacy").read_bytes()


def test_there_are_enough_transcripts() -> None:
    assert len([n for n in NAMES if not n.startswith("m")]) >= 15  # Text Completions
    assert len([n for n in NAMES if n.startswith("m")]) >= 10  # Messages (kind "messages")
    for name in NAMES:
        assert (HERE / f"{name}.legacy").exists(), name


@pytest.mark.parametrize("name", NAMES)
def test_whole(name: str) -> None:
    upstream, expected = load(name)
    assert run(name, [upstream]) == expected


@pytest.mark.parametrize("name", NAMES)
def test_one_byte_at_a_time(name: str) -> None:
    upstream, expected = load(name)
    assert run(name, [upstream[i : i + 1] for i in range(len(upstream))]) == expected


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_random_splits(name: str, data: st.DataObject) -> None:
    upstream, expected = load(name)
    cuts = sorted(
        data.draw(
            st.sets(st.integers(min_value=1, max_value=max(1, len(upstream) - 1)), max_size=12)
        )
    )
    chunks = [upstream[a:b] for a, b in zip([0, *cuts], [*cuts, len(upstream)], strict=True)]
    assert run(name, chunks) == expected


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
    upstream, _ = load("01_spec_example")
    assert run("01_spec_example", [upstream]) == expected


@pytest.mark.parametrize("name", NAMES)
def test_failure_never_ends_with_done(name: str) -> None:
    _, expected = load(name)
    if b'"exception":null}\n\ndata: [DONE]' not in expected:
        assert b"[DONE]" not in expected
        assert b'"error":{' in expected
