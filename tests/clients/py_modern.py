"""Run the real anthropic 0.3.x SDK (API 2023-06-01) once; print the events it parsed as JSON.

Runs inside .venvs/anthropic-0.3 (made by `make clients`).
    python py_modern.py --base-url URL [--no-stream]
"""

import argparse
import json
import sys

import anthropic


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--no-stream", action="store_true")
    ap.add_argument("--api-key", default="test-key-not-a-real-key")
    args = ap.parse_args()
    client = anthropic.Anthropic(
        api_key=args.api_key, base_url=args.base_url, max_retries=0, timeout=30.0
    )
    params = dict(
        prompt=f"{anthropic.HUMAN_PROMPT} Say hello{anthropic.AI_PROMPT}",
        model="claude-2.0",
        max_tokens_to_sample=100,
    )
    try:
        if args.no_stream:
            result = client.completions.create(**params)
            print(json.dumps({"ok": True, "final": result.model_dump()}))
            return 0
        events = [c.model_dump() for c in client.completions.create(**params, stream=True)]
    except Exception as exc:
        print(json.dumps({"ok": False, "error_class": type(exc).__name__, "error": str(exc)[:500]}))
        return 1
    print(
        json.dumps({"ok": True, "events": events, "text": "".join(e["completion"] for e in events)})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
