"""Run the real anthropic==0.2.2 SDK once and print the outcome as one JSON line.

0.2.2 is the oldest official Python SDK: it sends no anthropic-version header at all, only
``Client: anthropic-python/0.2.2`` (the API then applied 2023-01-01, spec section 1), and has no
async client. Runs inside .venvs/anthropic-0.2.2 (made by `make clients`).
    python py_oldest.py --base-url URL --mode sync-stream|sync
        [--model M] [--prompt P] [--max-tokens N] [--extra JSON]

0.2.2 never looks at the HTTP status: an error body comes back as the completion's dict (or, on
a stream, as one parsed event). So "ok" here means what a 2023 caller would have checked: the
answer has a string ``completion`` and no ``error``.
"""

import argparse
import json
import os
import sys
import threading

import anthropic


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--mode", required=True, choices=["sync-stream", "sync"])
    ap.add_argument("--prompt", default=f"{anthropic.HUMAN_PROMPT} Say hello{anthropic.AI_PROMPT}")
    ap.add_argument("--max-tokens", type=int, default=100)
    ap.add_argument("--model", default="claude-v1")
    ap.add_argument("--api-key", default="test-key-not-a-real-key")
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--extra", default="{}", help="a JSON object of more body fields")
    args = ap.parse_args()

    def give_up() -> None:  # never hang a test run, whatever the client does
        print(json.dumps({"ok": False, "error_class": "Timeout", "error": "client timed out"}))
        sys.stdout.flush()
        os._exit(3)

    timer = threading.Timer(args.timeout, give_up)
    timer.daemon = True
    timer.start()

    client = anthropic.Client(args.api_key, api_url=args.base_url)
    params = dict(prompt=args.prompt, model=args.model, max_tokens_to_sample=args.max_tokens)
    params.update(json.loads(args.extra))
    events = []
    try:
        if args.mode == "sync-stream":
            for obj in client.completion_stream(**params):
                events.append(obj)
            final = events[-1] if events else None
        else:
            final = client.completion(**params)
    except Exception as exc:  # its transport and JSON errors surface as whatever they are
        out = {"ok": False, "error_class": type(exc).__name__, "error": str(exc)[:500]}
        print(json.dumps({**out, "events": events}), flush=True)
        return 1
    ok = (
        isinstance(final, dict)
        and isinstance(final.get("completion"), str)
        and "error" not in final
        and not any("error" in e for e in events)
    )
    print(json.dumps({"ok": ok, "events": events, "final": final}), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
