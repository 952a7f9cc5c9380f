"""What every Python compat client shares: arguments, a watchdog, and the one JSON line it prints.

Runs inside each client's own virtualenv (.venvs/compat-*), so it uses the standard library only.
A client prints {"ok": true, "text": ...} when the library handed it the whole completion, or
{"ok": false, "error_class": ..., "error": ..., "text": <the last text it saw>} when the library
raised; the runner (compat/run.py) judges the text.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any

HUMAN, AI = "\n\nHuman:", "\n\nAssistant:"
PROMPT = f"{HUMAN} Say hello{AI}"
API_KEY = "test-key-not-a-real-key"


def parse_args(
    variants: list[str] | None = None, chunk_size: bool = False, read_bufsize: bool = False
) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--scenario", required=True, choices=["stream", "nostream"])
    ap.add_argument("--max-tokens", type=int, default=50)
    ap.add_argument("--model", default="claude-2.1")
    ap.add_argument("--timeout", type=float, default=120.0)
    if chunk_size:
        ap.add_argument("--chunk-size", default="512")
    if read_bufsize:
        ap.add_argument("--read-bufsize", type=int, default=0)
    if variants:
        ap.add_argument("--variant", required=True, choices=variants)
    return ap.parse_args()


def body(args: argparse.Namespace, stream: bool) -> dict[str, Any]:
    return {
        "model": args.model,
        "prompt": PROMPT,
        "max_tokens_to_sample": args.max_tokens,
        "stream": stream,
    }


def headers() -> dict[str, str]:
    # what a hand-written 2023 integration sent; without anthropic-version the proxy treats a
    # request as legacy too (legacy.missing_version = legacy)
    return {
        "x-api-key": API_KEY,
        "anthropic-version": "2023-01-01",
        "content-type": "application/json",
    }


def emit(out: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


def watchdog(seconds: float) -> None:
    """Never hang the run, whatever the library does (a retry loop, a stalled read)."""

    def fire() -> None:
        emit({"ok": False, "error_class": "Timeout", "error": f"no result within {seconds} s"})
        os._exit(3)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()


def run(args: argparse.Namespace, call: Callable[[list[str]], str | None]) -> int:
    """``call(seen)`` returns the completion; it appends each text it sees to ``seen`` so a
    failure can report how far the client got."""
    watchdog(args.timeout)
    seen: list[str] = []
    try:
        text = call(seen)
    except BaseException as exc:  # whatever the library raises is the finding
        emit(
            {
                "ok": False,
                "error_class": type(exc).__name__,
                "error": str(exc)[:300],
                "where": traceback.extract_tb(exc.__traceback__)[-1].filename.rsplit("/", 3)[-3:],
                "text": seen[-1] if seen else None,
            }
        )
        return 1
    emit({"ok": True, "text": text})
    return 0
