"""Converter throughput: upstream events per second and microseconds per event, one core.

    python bench/converter.py [--repeat N] [--write bench/RESULTS.md]

Streams of 1,000 and 10,000 tokens in the 2023-06-01 shape (one token per event, the way the API
sends them), fed to StreamConverter one event per read, with the client keeping up (every snapshot
written) and with the client behind (snapshot skipping, rule 7). Best of N runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from proxy.convert import StreamConverter

WORDS = [
    " the",
    " quick",
    " brown",
    " fox",
    " jumps",
    " over",
    " a",
    " lazy",
    " dog",
    " é",
    " 日本",
]


def upstream_events(tokens: int) -> list[bytes]:
    events = []
    for i in range(tokens):
        obj = {
            "type": "completion",
            "completion": WORDS[i % len(WORDS)],
            "stop_reason": None,
            "model": "claude-2.0",
        }
        events.append(b"event: completion\ndata: " + json.dumps(obj).encode() + b"\n\n")
        if i % 50 == 0:
            events.append(b'event: ping\ndata: {"type": "ping"}\n\n')
    final = {
        "type": "completion",
        "completion": "",
        "stop_reason": "stop_sequence",
        "model": "claude-2.0",
        "stop": "\n\nHuman:",
        "log_id": "compl_bench",
    }
    events.append(b"event: completion\ndata: " + json.dumps(final).encode() + b"\n\n")
    return events


def run_once(events: list[bytes], behind: bool) -> tuple[float, int]:
    conv = StreamConverter()
    conv.behind = behind
    out = 0
    t0 = time.perf_counter()
    for ev in events:
        out += len(conv.feed(ev))
    out += len(conv.close())
    elapsed = time.perf_counter() - t0
    assert conv.outcome == "ok"
    return elapsed, out


def measure(tokens: int, behind: bool, repeat: int) -> dict[str, float]:
    events = upstream_events(tokens)
    best = min(run_once(events, behind) for _ in range(repeat))
    elapsed, out_bytes = best
    return {
        "tokens": tokens,
        "events": len(events),
        "events_per_s": len(events) / elapsed,
        "us_per_event": elapsed / len(events) * 1e6,
        "bytes_out": out_bytes,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--write", type=Path, help="update the converter section of this file")
    ap.add_argument(
        "--stdlib-json",
        action="store_true",
        help="parse events with json.loads instead of orjson (to see what orjson is worth)",
    )
    args = ap.parse_args()
    if args.stdlib_json:
        import proxy.translate.completions as completions

        completions._loads = json.loads
    rows = []
    for tokens in (1000, 10000):
        for behind in (False, True):
            r = measure(tokens, behind, args.repeat if tokens == 1000 else max(2, args.repeat // 3))
            r["mode"] = "client behind (snapshots skipped)" if behind else "client keeps up"
            rows.append(r)
            print(
                f"{tokens:>6} tokens, {r['mode']:<34} {r['events_per_s']:>10,.0f} events/s "
                f"{r['us_per_event']:>7.2f} us/event  {r['bytes_out']:>12,} bytes out"
            )
    if args.write:
        table = [
            "| stream | client | upstream events/s | µs/event | legacy bytes out |",
            "|---|---|---:|---:|---:|",
        ]
        for r in rows:
            table.append(
                f"| {r['tokens']:,} tokens | {r['mode']} | {r['events_per_s']:,.0f} | "
                f"{r['us_per_event']:.2f} | {r['bytes_out']:,} |"
            )
        tag = "converter-stdlib-json" if args.stdlib_json else "converter"
        flag = " --stdlib-json" if args.stdlib_json else ""
        title = (
            "### For comparison: the standard library's json.loads instead of orjson"
            if args.stdlib_json
            else "## Converter core (`make bench-core`)"
        )
        target = (
            ""
            if args.stdlib_json
            else "Target (issue 3): at least 200,000 upstream events/s for the 1,000-token stream."
        )
        section = "\n".join(
            [
                f"<!-- {tag}:start -->",
                title,
                "",
                f"Command: `.venv/bin/python bench/converter.py --repeat {args.repeat}{flag} "
                f"--write bench/RESULTS.md` (best of {args.repeat}; one core; "
                f"Python {platform.python_version()}, {platform.machine()}, "
                f"measured {time.strftime('%Y-%m-%d')}).",
                "",
                *table,
                "",
                target,
                f"<!-- {tag}:end -->",
            ]
        )
        text = args.write.read_text() if args.write.exists() else "# Benchmark results\n\n"
        pattern = re.compile(rf"<!-- {tag}:start -->.*<!-- {tag}:end -->", re.S)
        text = pattern.sub(section, text) if pattern.search(text) else text + section + "\n"
        args.write.write_text(text)


if __name__ == "__main__":
    main()
